"""The DeltaBase dialect over the real server: event stores, streams (0-based positions,
expectedStreamVersion forms, idempotency), queries, the stream list, the DCB API, errors in
DeltaBase's envelope, rate-limit headers, keys, and the mount options (its own port, another
prefix, off)."""
import json
import time

from dlb import Dlb, dialect_port, dlb_error, events_of
from harness import Server, check, cli_keys, expect_error, split_raw

EV = {"type": "user.created", "data": {"id": "user-123", "email": "john@example.com"},
      "metadata": {"userId": "admin-456"}}


def test_event_stores_create_list_get_delete():
    with Server() as s:
        d = Dlb(s)
        st, _, b = d.post("/event-stores", {
            "name": "my-event-store", "description": "Event store for my application",
            "region": "us-west-1",
            "settings": {"retentionPeriodDays": 365, "maxStreamSizeBytes": 104857600}})
        check(st == 201, f"{st} {b}")
        check(b["id"] == "my-event-store" and b["name"] == "my-event-store" and
              b["description"] == "Event store for my application" and
              b["region"] == "us-west-1" and b["status"] == "active" and
              b["createdAt"] and b["updatedAt"], f"{b}")
        d.store("my-app-two")
        d.append("my-event-store", "user-123", [EV])
        st, _, b = d.get("/event-stores/my-event-store")
        check(st == 200, f"{st}")
        stats = b["statistics"]
        check(stats["totalEvents"] == 1 and stats["databaseSizeBytes"] > 0 and
              stats["oldestEventTimestamp"] and stats["newestEventTimestamp"], f"{b}")
        check(b["settings"] == {"retentionPeriodDays": 365, "maxStreamSizeBytes": 104857600},
              f"{b}")
        st, _, b = d.get("/event-stores?filter=my-&limit=1")
        check(st == 200 and [x["name"] for x in b["eventStores"]] == ["my-app-two"] and
              b["total"] == 2, f"{b}")
        st, _, b = d.get("/event-stores?filter=my-&limit=1&offset=1")
        check([x["name"] for x in b["eventStores"]] == ["my-event-store"], f"{b}")
        dlb_error(d.post("/event-stores", {"name": "my-app-two"}), 409, "ALREADY_EXISTS")
        dlb_error(d.post("/event-stores", {"name": "Bad Name"}), 400, "VALIDATION_ERROR",
                  field="name")
        dlb_error(d.post("/event-stores", {"name": "x", "colour": 1}), 400, "VALIDATION_ERROR",
                  field="colour")
        st, _, _ = d.request("DELETE", "/event-stores/my-app-two")
        check(st == 204, f"{st}")
        dlb_error(d.get("/event-stores/my-app-two"), 404, "NOT_FOUND")
        # the same databases, natively
        st, _, b = s.get("/v1/databases/my-event-store")
        check(st == 200 and b["events"] == 1, f"{b}")


def test_append_positions_and_expected_versions():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        st, _, b = d.append("shop", "user-123", [EV], expected="no_stream")
        check(st == 200 and b == {"streamId": "user-123", "eventsAppended": 1,
                                  "currentStreamVersion": 0, "globalPosition": 1}, f"{st} {b}")
        st, _, b = d.append("shop", "user-123", [EV, EV], expected=0)
        check(st == 200 and b["currentStreamVersion"] == 2 and b["eventsAppended"] == 2 and
              b["globalPosition"] == 3, f"{b}")
        # a wrong expectation writes nothing and says the current version (0-based)
        for exp in (0, 5, "no_stream", -1):
            dlb_error(d.append("shop", "user-123", [EV], expected=exp), 409, "VERSION_CONFLICT",
                      streamId="user-123", currentStreamVersion=2)
        dlb_error(d.append("shop", "order-1", [EV], expected="stream_exists"), 409,
                  "VERSION_CONFLICT")
        st, _, b = d.append("shop", "user-123", [EV], expected="stream_exists")
        check(st == 200 and b["currentStreamVersion"] == 3, f"{b}")
        st, _, b = d.append("shop", "order-1", [EV], expected=-1)
        check(st == 200 and b["currentStreamVersion"] == 0, f"-1 is no stream: {b}")
        st, _, b = d.append("shop", "user-123", [EV], expected="any")
        check(b["currentStreamVersion"] == 4, f"{b}")
        check(s.head("shop") == 6, "refused appends wrote something")
        for exp in ("5", "latest", 1.5, -2, None, True):
            body = {"events": [EV], "expectedStreamVersion": exp}
            dlb_error(d.post("/event-stores/shop/streams/user-123", body), 400,
                      "VALIDATION_ERROR", field="expectedStreamVersion")
        dlb_error(d.post("/event-stores/shop/streams/user-123", {"events": [{"data": 1}]}), 400,
                  "VALIDATION_ERROR", field="events[0].type")
        dlb_error(d.post("/event-stores/shop/streams/user-123", {"evnts": []}), 400,
                  "VALIDATION_ERROR", field="evnts")
        dlb_error(d.post("/event-stores/shop/streams/user-123", "nope",
                         headers={"Content-Type": "application/json"}), 400, "VALIDATION_ERROR")
        dlb_error(d.request("POST", "/event-stores/shop/streams/user-123", raw=b"{}",
                            headers={"Content-Type": "text/plain"}), 415,
                  "UNSUPPORTED_MEDIA_TYPE")
        for reserved in ("__dcb__", "$dcb"):
            dlb_error(d.append("shop", reserved, [EV]), 400, "VALIDATION_ERROR")
        dlb_error(d.append("nope", "user-1", [EV]), 404, "NOT_FOUND")
        check(s.head("shop") == 6, "refused appends wrote something")


def test_idempotent_appends_replay_and_live_in_their_own_namespace():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        key = {"Idempotency-Key": "order-7-placed"}
        st, h1, b1 = d.append("shop", "order-7", [EV], headers=key)
        check(st == 200, f"{st} {b1}")
        st, h2, b2 = d.append("shop", "order-7", [EV], headers=key)
        check(st == 200 and b2 == b1 and h2.get("x-idempotency-replayed") == "true",
              f"a retry replays the original result: {st} {b2} {h2}")
        check(s.head("shop") == 1, "the retry wrote")
        dlb_error(d.append("shop", "order-7", [EV, EV], headers=key), 422,
                  "IDEMPOTENCY_KEY_REUSED")
        # the same key on the native API is another key
        st, _, b = s.post("/v1/databases/shop/streams/order-7/events", {"events": [EV]},
                          headers=key)
        check(st == 201 and b["version"] == 2, f"native, same key string: {st} {b}")
        check(s.head("shop") == 2, "head")


def test_reading_streams():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        for i in range(5):
            d.append("shop", "user-123", [dict(EV, data={"i": i})])
        d.append("shop", "other-1", [EV])
        st, _, b = d.get("/event-stores/shop/streams/user-123")
        check(st == 200 and b["streamId"] == "user-123" and b["streamVersion"] == 4 and
              b["hasMore"] is False and len(b["events"]) == 5, f"{b}")
        e = b["events"][0]
        check(e["streamId"] == "user-123" and e["streamPosition"] == 0 and
              e["globalPosition"] == 1 and e["type"] == "user.created" and
              e["data"] == {"i": 0} and e["metadata"] == {"userId": "admin-456"} and
              e["schemaVersion"] == "1.0" and e["eventId"] and e["transactionId"] and
              e["createdAt"].endswith("Z"), f"{e}")
        st, _, b = d.get("/event-stores/shop/streams/user-123?limit=2&fromStreamPosition=1")
        check([x["streamPosition"] for x in b["events"]] == [1, 2] and b["hasMore"], f"{b}")
        st, _, b = d.get("/event-stores/shop/streams/user-123?fromStreamPosition=1"
                         "&toStreamPosition=3")
        check([x["streamPosition"] for x in b["events"]] == [1, 2, 3] and not b["hasMore"],
              f"{b}")
        st, _, b = d.get("/event-stores/shop/streams/user-123?direction=backward&limit=2")
        check([x["streamPosition"] for x in b["events"]] == [4, 3] and b["hasMore"], f"{b}")
        st, _, b = d.get("/event-stores/shop/streams/user-123?direction=backward"
                         "&fromStreamPosition=2&toStreamPosition=1")
        check([x["streamPosition"] for x in b["events"]] == [2, 1], f"{b}")
        dlb_error(d.get("/event-stores/shop/streams/user-999"), 404, "STREAM_NOT_FOUND",
                  streamId="user-999", eventStoreId="shop")
        dlb_error(d.get("/event-stores/shop/streams/user-123?limit=1001"), 400,
                  "VALIDATION_ERROR", field="limit")
        dlb_error(d.get("/event-stores/shop/streams/user-123?direction=sideways"), 400,
                  "VALIDATION_ERROR", field="direction")
        dlb_error(d.get("/event-stores/shop/streams/user-123?fromPosition=1"), 400,
                  "VALIDATION_ERROR", field="fromPosition")
        dlb_error(d.get("/event-stores/shop/streams/__dcb__"), 400, "VALIDATION_ERROR")


def test_querying_events_and_listing_streams():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        d.append("shop", "user-1", [dict(EV, type="user.created")])
        d.append("shop", "user-2", [dict(EV, type="user.created")])
        d.append("shop", "user-1", [dict(EV, type="user.updated")])
        time.sleep(0.02)
        mid = json.loads(s.get("/v1/databases/shop/events/3")[2]["recorded"].join('""'))
        time.sleep(0.02)
        d.append("shop", "order_9", [dict(EV, type="order.placed")])
        d.append("shop", "cart:7", [dict(EV, type="cart.opened")])
        st, _, b = d.get("/event-stores/shop/events?types=user.created,user.updated")
        check(st == 200 and [e[0] for e in events_of(b)] == ["user-1", "user-2", "user-1"] and
              b["hasMore"] is False, f"{b}")
        st, _, b = d.get("/event-stores/shop/events?streams=user-1&direction=backward")
        check([e[3] for e in events_of(b)] == ["user.updated", "user.created"], f"{b}")
        st, _, b = d.get("/event-stores/shop/events?limit=2&offset=1")
        check([e[2] for e in events_of(b)] == [2, 3] and b["hasMore"], f"{b}")
        st, _, b = d.get("/event-stores/shop/events?fromGlobalPosition=4")
        check([e[2] for e in events_of(b)] == [4, 5], f"{b}")
        st, _, b = d.get(f"/event-stores/shop/events?after={mid}")
        check([e[2] for e in events_of(b)] == [4, 5], f"after is exclusive: {b}")
        st, _, b = d.get(f"/event-stores/shop/events?before={mid}")
        check([e[2] for e in events_of(b)] == [1, 2], f"before is exclusive: {b}")
        dlb_error(d.get("/event-stores/shop/events?after=yesterday"), 400, "VALIDATION_ERROR",
                  field="after")
        dlb_error(d.get("/event-stores/shop/events?type=user.created"), 400, "VALIDATION_ERROR",
                  field="type")
        st, _, b = d.get("/event-stores/shop/streams")
        names = [x["streamId"] for x in b["streams"]]
        check(names == ["cart:7", "order_9", "user-1", "user-2"], f"{b}")
        u1 = b["streams"][2]
        check(u1["streamType"] == "user" and u1["streamVersion"] == 1 and
              u1["eventCount"] == 2, f"{u1}")
        st, _, b = d.get("/event-stores/shop/streams?streamType=user&limit=1&offset=1")
        check([x["streamId"] for x in b["streams"]] == ["user-2"] and not b["hasMore"], f"{b}")
        st, _, b = d.get("/event-stores/shop/streams?streamType=cart&hasEvents=true")
        check([x["streamType"] for x in b["streams"]] == ["cart"], f"{b}")


def test_dcb_append_condition_and_query():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        q = {"items": [{"types": ["UsernameClaimed"], "tags": ["username:alice"]}]}
        st, _, b = d.post("/event-stores/shop/query", {"query": q, "after": 0, "limit": 1000})
        check(st == 200 and b["events"] == [] and b["lastPosition"] == 0, f"{b}")
        claim = {"events": [{"type": "UsernameClaimed", "data": {"u": "alice"},
                             "tags": ["username:alice"]}],
                 "condition": {"failIfEventsMatch": q, "after": b["lastPosition"]}}
        st, _, b = d.post("/event-stores/shop/events", claim)
        check(st == 200 and b == {"lastPosition": 1}, f"{st} {b}")
        st, _, b = d.post("/event-stores/shop/events", claim)
        check(st == 409 and b == {"error": "Append condition failed",
                                  "details": b.get("details"), "conflictingPositions": [1],
                                  "afterPosition": 0} and isinstance(b["details"], str),
              f"the DCB page's own 409 body: {st} {b}")
        st, _, b = d.post("/event-stores/shop/query", {"query": q})
        check(b["lastPosition"] == 1 and len(b["events"]) == 1, f"{b}")
        e = b["events"][0]
        check(e["streamId"] == "__dcb__" and e["tags"] == ["username:alice"] and
              e["globalPosition"] == 1, f"{e}")
        st, _, b = d.post("/event-stores/shop/query", {"query": q, "after": 1})
        check(b["events"] == [] and b["lastPosition"] == 1, f"{b}")
        # a comma in a tag is refused and writes nothing
        bad = {"events": [{"type": "T", "data": 1, "tags": ["a,b"]}]}
        dlb_error(d.post("/event-stores/shop/events", bad), 400, "VALIDATION_ERROR",
                  field="events[0].tags")
        check(s.head("shop") == 1, "a refused DCB append wrote")
        # without a condition, stream-less events just append
        st, _, b = d.post("/event-stores/shop/events",
                          {"events": [{"type": "T", "data": 1, "tags": ["x:1"]}]})
        check(b == {"lastPosition": 2}, f"{b}")


def test_errors_rate_limits_and_http_layer_errors_use_the_envelope():
    with Server(extra=["--max-body-bytes", "2048"]) as s:
        d = Dlb(s)
        d.store("shop")
        st, h, _ = d.get("/event-stores/shop")
        check(h.get("x-ratelimit-limit") == "1000" and
              int(h.get("x-ratelimit-remaining", "-1")) >= 990 and "x-ratelimit-reset" in h,
              f"DeltaBase's documented default, 1,000 a minute: {h}")
        dlb_error(d.get("/event-stores/shop/nothing"), 404, "NOT_FOUND")
        dlb_error(d.request("PUT", "/event-stores/shop"), 405, "METHOD_NOT_ALLOWED")
        big = {"events": [{"type": "T", "data": "x" * 4000}]}
        dlb_error(d.post("/event-stores/shop/streams/s-1", big), 413, "PAYLOAD_TOO_LARGE")
        # the native API keeps its own envelope on the same server
        expect_error(s.get("/v1/databases/nope"), 404, "database_not_found")


def test_rate_limit_is_enforced_per_minute():
    with Server(extra=["--dialect-rate", "deltabase=3"]) as s:
        d = Dlb(s)
        for i in range(3):
            st, h, _ = d.get("/event-stores")
            check(st == 200 and h["x-ratelimit-limit"] == "3", f"{i}: {st} {h}")
        st, h, b = d.get("/event-stores")
        dlb_error((st, h, b), 429, "RATE_LIMITED")
        check(int(h["retry-after"]) >= 1, f"{h}")
        st, _, _ = s.get("/v1/databases")
        check(st == 200, "the native API has its own limits")
    with Server(extra=["--dialect-rate", "deltabase=0"]) as s:
        st, h, _ = Dlb(s).get("/event-stores")
        check(st == 200 and "x-ratelimit-limit" not in h, f"0 = no limit: {h}")


def test_keys():
    with Server(start=False) as s:
        keys = cli_keys(s.data, "admin", "read")
        rc_out = None
        s.start()
        admin = Dlb(s, key=keys["admin"])
        admin.store("shop")
        admin.store("other")
        dlb_error(Dlb(s).get("/event-stores"), 401, "UNAUTHORIZED")
        dlb_error(Dlb(s, key="ak_0000000000000000_wrong").get("/event-stores"), 401,
                  "UNAUTHORIZED")
        # DeltaBase sends Bearer keys only
        dlb_error(Dlb(s).get("/event-stores", headers={"X-API-Key": keys["admin"]}), 401,
                  "UNAUTHORIZED")
        reader = Dlb(s, key=keys["read"])
        st, _, _ = reader.get("/event-stores/shop")
        check(st == 200, f"read: {st}")
        dlb_error(reader.append("shop", "s-1", [EV]), 403, "FORBIDDEN")
        st, _, b = admin.post("/v1/keys".replace("/v1", ""), {})  # not a DeltaBase route
        check(st == 404, f"{st}")
        st, _, made = s.post("/v1/keys", {"scope": "write", "database": "shop"},
                             headers={"Authorization": f"Bearer {keys['admin']}"})
        bound = Dlb(s, key=made["key"])
        st, _, b = bound.append("shop", "s-1", [EV])
        check(st == 200, f"{st} {b}")
        dlb_error(bound.append("other", "s-1", [EV]), 404, "NOT_FOUND")
        st, _, b = bound.get("/event-stores")
        check([x["name"] for x in b["eventStores"]] == ["shop"], f"a bound key lists its own: {b}")
        del rc_out


def test_mount_options():
    with Server(extra=["--dialect-listen", "deltabase=127.0.0.1:0"]) as s:
        port = dialect_port(s)
        root = Dlb(s, base="", port=port)
        root.store("shop")
        st, _, b = root.append("shop", "user-1", [EV])
        check(st == 200 and b["globalPosition"] == 1, f"own port, root paths: {st} {b}")
        st, _, b = Dlb(s).get("/event-stores/shop/streams/user-1")
        check(st == 200 and len(b["events"]) == 1, "and still under /deltabase")
        # the native API is not on the dialect's port
        dlb_error(root.get("/v1/databases"), 404, "NOT_FOUND")
        raw = (b"POST /event-stores/shop/streams/s HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        import socket
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        st, _, body = split_raw(data)
        check(st == 400 and json.loads(body)["error"]["code"] == "VALIDATION_ERROR",
              f"the HTTP layer's own errors in DeltaBase's envelope: {data!r}")
    with Server(extra=["--dialect", "deltabase=/db"]) as s:
        st, _, _ = Dlb(s, base="/db").get("/event-stores")
        check(st == 200, f"/db: {st}")
        expect_error(s.get("/deltabase/event-stores"), 404, "not_found")
    with Server(extra=["--dialect", "deltabase=off"]) as s:
        expect_error(s.get("/deltabase/event-stores"), 404, "not_found")
    with Server(extra=["--dialect", "deltabase=off",
                       "--dialect-listen", "deltabase=127.0.0.1:0"]) as s:
        port = dialect_port(s)
        st, _, _ = Dlb(s, base="", port=port).get("/event-stores")
        check(st == 200, f"only on its port: {st}")
        expect_error(s.get("/deltabase/event-stores"), 404, "not_found")


def ws_client(url, count, msgs, headers=None, timeout_ms=15000):
    """Starts the npm `ws` client (ws_client.mjs); returns the Popen (stdout: JSON lines)."""
    import os
    import shutil
    import subprocess
    from harness import REPO, Skip
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(REPO, "tests", "node_modules", "ws")):
        raise Skip("node and tests/node_modules (scripts/deps.sh) are needed")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_client.mjs")
    env = dict(os.environ, NODE_PATH=os.path.join(REPO, "tests", "node_modules"))
    return subprocess.Popen([node, script, url, str(count), str(timeout_ms),
                             json.dumps(headers or {})] + [json.dumps(m) for m in msgs],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.join(REPO, "tests"), env=env)


def messages(proc, timeout=30):
    out, err = proc.communicate(timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_websocket_with_a_real_client():
    with Server(start=False) as s:
        keys = cli_keys(s.data, "admin", "read")
        s.start()
        d = Dlb(s, key=keys["admin"])
        d.store("shop")
        d.append("shop", "user-1", [dict(EV, type="user.created")])
        d.append("shop", "order-1", [dict(EV, type="order.placed")])
        url = f"ws://127.0.0.1:{s.port}/deltabase/event-stores/shop/events/ws"
        # history from the start, user.* only, key in the query
        p = ws_client(f"{url}?apiKey={keys['read']}", 3,
                      [{"action": "subscribe", "eventFilter": "user.*", "position": "earliest"}])
        time.sleep(1.0)
        d.append("shop", "user-2", [dict(EV, type="user.updated")])
        d.append("shop", "order-2", [dict(EV, type="order.placed")])
        got = messages(p)
        check(got[0]["type"] == "subscribed", f"{got}")
        evs = [m["event"] for m in got if m.get("type") == "event"]
        check([(e["streamId"], e["type"], e["streamPosition"]) for e in evs] ==
              [("user-1", "user.created", 0), ("user-2", "user.updated", 0)], f"{got}")
        # position latest (the default): only new events; Bearer key in the header
        p = ws_client(url, 2, [{"action": "subscribe", "eventFilter": "*.placed"}],
                      headers={"Authorization": f"Bearer {keys['read']}"})
        time.sleep(1.0)
        d.append("shop", "order-3", [dict(EV, type="order.placed")])
        got = messages(p)
        check(got[1]["type"] == "event" and got[1]["event"]["streamId"] == "order-3", f"{got}")
        # a missing or wrong key is 401 on the upgrade too
        for q in ("", "?apiKey=ak_0000000000000000_nope"):
            got = messages(ws_client(url + q, 1, []))
            check(got == [{"upgradeRefused": 401}], f"{q}: {got}")
        # a bad message is answered, the connection stays
        got = messages(ws_client(url + f"?apiKey={keys['read']}", 2,
                                 [{"action": "dance"}, {"action": "ping"}]))
        check(got[0]["type"] == "error" and got[0]["error"]["code"] == "VALIDATION_ERROR" and
              got[1] == {"type": "pong"}, f"{got}")


def test_websocket_connections_listed_and_closed():
    with Server() as s:
        d = Dlb(s)
        d.store("shop")
        d.store("other")
        url = f"ws://127.0.0.1:{s.port}/deltabase/event-stores/shop/events/ws"
        p = ws_client(url, 5, [{"action": "subscribe", "eventFilter": "user.*"}])
        deadline = time.monotonic() + 10
        conns = []
        while time.monotonic() < deadline and not conns:
            st, _, b = d.get("/event-stores/shop/websocket-connections")
            conns = b["connections"]
            time.sleep(0.1)
        check(len(conns) == 1 and conns[0]["clientId"].startswith("ws_") and
              conns[0]["connectedAt"], f"{conns}")
        # another store's list is empty; the native live subscriptions are not listed
        st, _, b = d.get("/event-stores/other/websocket-connections")
        check(b["connections"] == [], f"{b}")
        cid = conns[0]["clientId"]
        dlb_error(d.request("DELETE", f"/event-stores/other/websocket-connections/{cid}"), 404,
                  "NOT_FOUND")
        st, _, _ = d.request("DELETE", f"/event-stores/shop/websocket-connections/{cid}")
        check(st == 204, f"{st}")
        got = messages(p)
        check(any(m.get("type") == "error" for m in got) and got[-1].get("closed"), f"{got}")
        dlb_error(d.request("DELETE", f"/event-stores/shop/websocket-connections/{cid}"), 404,
                  "NOT_FOUND")
        dlb_error(d.get("/event-stores/shop/events/ws"), 400, "VALIDATION_ERROR")


def test_webhook_subscriptions_deliver_each_event():
    import sys
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from test_webhooks import Receiver
    rx = Receiver()
    with Server(extra=["--webhook-allow", "127.0.0.1"]) as s:
        d = Dlb(s)
        d.store("shop")
        d.append("shop", "user-0", [dict(EV, type="user.created")])  # before: not delivered
        conf = {"eventFilter": "user.*", "subscriberType": "webhook",
                "subscriberConfig": {"url": rx.url("/deltabase"),
                                     "headers": {"Authorization": "Bearer webhook-secret"}},
                "retryPolicy": {"maxRetries": 3, "backoffMultiplier": 2,
                                "initialBackoffMs": 50},
                "position": "latest"}
        st, _, sub = d.post("/event-stores/shop/subscribe", conf)
        check(st == 201 and sub["subscriptionId"].startswith("sub_") and
              sub["eventFilter"] == "user.*" and sub["subscriberType"] == "webhook" and
              sub["status"] == "active" and sub["createdAt"] and
              sub["lastDeliveryAttempt"] is None and sub["failedDeliveries"] == 0, f"{st} {sub}")
        st, _, again = d.post("/event-stores/shop/subscribe", conf)
        check(st == 200 and again["subscriptionId"] == sub["subscriptionId"] and
              again["isExistingSubscription"] is True and again["message"], f"{st} {again}")
        d.append("shop", "user-1", [dict(EV, type="user.created")])
        d.append("shop", "order-1", [dict(EV, type="order.placed")])
        d.append("shop", "user-1", [dict(EV, type="user.updated")])
        got = rx.wait(2)
        bodies = [json.loads(g["body"]) for g in got]
        check(len(got) == 2 and all(g["headers"].get("Authorization") == "Bearer webhook-secret"
                                    for g in got), f"{got}")
        check([b["event"]["type"] for b in bodies] == ["user.created", "user.updated"] and
              all(b["eventStoreId"] == "shop" and b["subscriptionId"] == sub["subscriptionId"]
                  for b in bodies) and bodies[1]["event"]["streamPosition"] == 1, f"{bodies}")
        time.sleep(0.3)
        st, _, one = d.get(f"/event-stores/shop/subscriptions/{sub['subscriptionId']}")
        check(st == 200 and one["lastDeliveryAttempt"] and one["failedDeliveries"] == 0, f"{one}")
        st, _, lst = d.get("/event-stores/shop/subscriptions")
        check([x["subscriptionId"] for x in lst["subscriptions"]] == [sub["subscriptionId"]],
              f"{lst}")
        # a websocket subscription is a record; the native webhooks are not DeltaBase's
        st, _, ws = d.post("/event-stores/shop/subscribe",
                           {"eventFilter": "*", "subscriberType": "websocket"})
        check(st == 201 and ws["subscriberType"] == "websocket", f"{st} {ws}")
        s.post("/v1/databases/shop/webhooks", {"name": "native-one", "url": rx.url("/n")})
        st, _, lst = d.get("/event-stores/shop/subscriptions")
        check(len(lst["subscriptions"]) == 2, f"{lst}")
        # bad configurations
        for body, field in (({"eventFilter": "user.*", "subscriberType": "queue"},
                             "subscriberType"),
                            ({"eventFilter": "", "subscriberType": "websocket"}, "eventFilter"),
                            ({"eventFilter": "*", "subscriberType": "webhook"},
                             "subscriberConfig"),
                            ({"eventFilter": "*", "subscriberType": "websocket",
                              "position": "soon"}, "position"),
                            ({"eventFilter": "*", "subscriberType": "websocket", "x": 1}, "x")):
            dlb_error(d.post("/event-stores/shop/subscribe", body), 400, "VALIDATION_ERROR",
                      field=field)
        # survives a restart; delete stops it
        s.restart()
        d.append("shop", "user-2", [dict(EV, type="user.created")])
        deadline = time.monotonic() + 20
        mine = []
        while time.monotonic() < deadline and len(mine) < 3:
            mine = [g for g in rx.wait(1) if g["path"] == "/deltabase"]
            time.sleep(0.05)
        check(len(mine) == 3 and json.loads(mine[2]["body"])["event"]["streamId"] == "user-2",
              f"after a restart: {mine}")
        st, _, _ = d.request("DELETE", f"/event-stores/shop/subscriptions/{sub['subscriptionId']}")
        check(st == 204, f"{st}")
        dlb_error(d.get(f"/event-stores/shop/subscriptions/{sub['subscriptionId']}"), 404,
                  "NOT_FOUND")
        dlb_error(d.get("/event-stores/shop/subscriptions/native-one"), 404, "NOT_FOUND")
