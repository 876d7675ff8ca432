"""The native API's happy paths: health, databases, append and every way of reading back."""
import datetime
import json
import os
import re
import time
import uuid

from harness import Server, check, expect_error, quote

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def parse_time(s):
    check(isinstance(s, str) and RFC3339_Z.match(s), f"not an RFC 3339 UTC time: {s!r}")
    base, _, frac = s[:-1].partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    us = int((frac + "000000")[:6]) if frac else 0
    return dt + datetime.timedelta(microseconds=us)


def raw_get(s, path):
    """GET returning (status, raw body text)."""
    c = s.connect()
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8")
    finally:
        c.close()


def test_health():
    with Server() as s:
        st, h, body = s.get("/health")
        check(st == 200, f"health: {st} {body!r}")
        check(h.get("content-type", "").startswith("application/json"), f"content-type {h}")
        check(body.get("status") == "ok", f"health body {body!r}")
        check(isinstance(body.get("version"), str) and body["version"], f"version {body!r}")


def test_databases_create_list_get_delete():
    with Server() as s:
        st, _, body = s.get("/v1/databases")
        check(st == 200, f"list: {st} {body!r}")
        check(body == {"databases": [{"name": "default"}]}, f"first start: {body!r}")

        for name in ["zeta", "orders", "a1-b2", "0db"]:
            st, h, body = s.post("/v1/databases", {"name": name})
            check(st == 201, f"create {name}: {st} {body!r}")
            check(body == {"name": name}, f"create body {body!r}")
            check(h.get("location") == f"/v1/databases/{name}", f"Location: {h.get('location')!r}")
        expect_error(s.post("/v1/databases", {"name": "orders"}), 409, "database_exists")

        st, _, body = s.get("/v1/databases")
        names = [d["name"] for d in body["databases"]]
        check(names == sorted(["default", "zeta", "orders", "a1-b2", "0db"]),
              f"list not sorted or incomplete: {names}")

        st, _, info = s.get("/v1/databases/orders")
        check(st == 200, f"stats: {st} {info!r}")
        check(info["name"] == "orders", f"name {info!r}")
        check(info["streams"] == 0 and info["events"] == 0 and info["head"] == 0,
              f"empty stats {info!r}")
        check(isinstance(info["headHash"], str) and HEX64.match(info["headHash"]),
              f"headHash {info['headHash']!r}")
        check(isinstance(info["bytesOnDisk"], int) and info["bytesOnDisk"] >= 0,
              f"bytesOnDisk {info!r}")
        check(info["oldestEvent"] is None and info["newestEvent"] is None,
              f"oldest/newest must be null when empty: {info!r}")
        parse_time(info["created"])
        check(set(info["writer"]) >= {"commits", "appends", "queueDepth"}, f"writer {info!r}")

        # databases are isolated: an append to orders is not in default
        st, _, _ = s.append("s1", [{"type": "t", "data": 1}], db="orders")
        check(st == 201, "append to orders")
        check(s.head("default") == 0, "default must not see orders' events")
        check(s.head("orders") == 1, "orders head")

        dbdir = os.path.join(s.data, "dbs", "orders")
        check(os.path.isdir(dbdir), f"{dbdir} should exist")
        st, _, body = s.request("DELETE", "/v1/databases/orders")
        check(st == 204, f"delete: {st} {body!r}")
        check(body == b"", f"204 with a body: {body!r}")
        expect_error(s.get("/v1/databases/orders"), 404, "database_not_found")
        expect_error(s.request("DELETE", "/v1/databases/orders"), 404, "database_not_found")
        expect_error(s.get("/v1/databases/orders/events"), 404, "database_not_found")
        check(not os.path.exists(dbdir), f"{dbdir} still exists after DELETE")
        st, _, body = s.get("/v1/databases")
        check([d["name"] for d in body["databases"]] == ["0db", "a1-b2", "default", "zeta"],
              f"after delete: {body!r}")

        # the name can be used again, and starts empty
        st, _, _ = s.post("/v1/databases", {"name": "orders"})
        check(st == 201, f"re-create: {st}")
        info = s.db_info("orders")
        check(info["head"] == 0 and info["events"] == 0, f"re-created db not empty: {info!r}")

        # databases survive a restart
        s.restart()
        st, _, body = s.get("/v1/databases")
        check([d["name"] for d in body["databases"]] == ["0db", "a1-b2", "default", "orders",
                                                         "zeta"], f"after restart: {body!r}")


def test_database_stats_after_appends():
    with Server() as s:
        s.append("a", [{"type": "t", "data": 1}, {"type": "t", "data": 2}])
        s.append("b", [{"type": "t", "data": 3}])
        info = s.db_info()
        check(info["streams"] == 2, f"streams {info!r}")
        check(info["events"] == 3, f"events {info!r}")
        check(info["head"] == 3, f"head {info!r}")
        st, _, ev = s.get("/v1/databases/default/events/3")
        check(info["headHash"] == ev["hash"], f"headHash {info['headHash']} != hash of head "
                                              f"event {ev['hash']}")
        oldest, newest = parse_time(info["oldestEvent"]), parse_time(info["newestEvent"])
        check(oldest <= newest, f"oldest {oldest} > newest {newest}")
        check(info["bytesOnDisk"] > 0, f"bytesOnDisk {info!r}")
        check(info["writer"]["appends"] >= 2, f"writer.appends {info!r}")


def test_append_and_read_back_every_field():
    with Server() as s:
        # sent with whitespace; numbers, key order and nesting must come back exactly, minified
        data_text = ('{ "zeta" : 1.10, "alpha": [1, [2, [3, [4, {"k": null}]]], "x"],'
                     ' "mid": {"b": true, "a": false}, "big": 9007199254740993,'
                     ' "exp": 1E+2, "neg": -0.0, "small": 1e-7 }')
        data_min = ('{"zeta":1.10,"alpha":[1,[2,[3,[4,{"k":null}]]],"x"],'
                    '"mid":{"b":true,"a":false},"big":9007199254740993,'
                    '"exp":1E+2,"neg":-0.0,"small":1e-7}')
        given_id = str(uuid.uuid4())
        body = ('{"events": [{"type": "OrderPlaced", "data": ' + data_text + ','
                ' "metadata": {"user": "u1", "n": 2.50}, "id": "' + given_id + '",'
                ' "tags": ["customer:7", "region:eu"], "time": "2026-11-28T12:00:00+02:00"},'
                ' {"type": "Second", "data": "just a string", "time":'
                ' "2026-01-02T03:04:05.123456Z"},'
                ' {"type": "Third", "data": [1, 2.0, "\\u00e9t\\u00e9"]}]}')
        before = datetime.datetime.now(datetime.timezone.utc)
        st, _, ans = s.post("/v1/databases/default/streams/order-1/events", body,
                            headers={"Content-Type": "application/json"})
        check(st == 201, f"append: {st} {ans!r}")
        check(ans["stream"] == "order-1", f"stream {ans!r}")
        check(ans["version"] == 3 and ans["position"] == 3, f"version/position {ans!r}")
        check([e["position"] for e in ans["events"]] == [1, 2, 3], f"positions {ans!r}")
        check([e["version"] for e in ans["events"]] == [1, 2, 3], f"versions {ans!r}")
        check(ans["events"][0]["id"] == given_id, f"client id not echoed: {ans!r}")
        for e in ans["events"][1:]:
            u = uuid.UUID(e["id"])
            check(str(u) == e["id"], f"id not canonical: {e['id']}")
            check(u.version == 7, f"default id is not a UUIDv7: {e['id']}")
        check(len({e["id"] for e in ans["events"]}) == 3, "ids not unique")
        recorded = parse_time(ans["recorded"])
        check(abs((recorded - before).total_seconds()) < 3600, f"recorded {recorded} far from now")

        st, raw = raw_get(s, "/v1/databases/default/streams/order-1/events")
        check(st == 200, f"read: {st} {raw}")
        check('"data":' + data_min + ',' in raw,
              f"data not stored exactly as sent (minified).\nwant {data_min}\nin   {raw}")
        check('"metadata":{"user":"u1","n":2.50}' in raw, f"metadata not exact: {raw}")
        page = json.loads(raw)
        check(page["stream"] == "order-1" and page["version"] == 3 and page["next"] is None,
              f"page {page!r}")
        evs = page["events"]
        check(len(evs) == 3, f"{len(evs)} events")
        want_keys = {"id", "stream", "type", "data", "metadata", "tags", "time", "recorded",
                     "position", "version", "hash"}
        for e in evs:
            check(set(e) == want_keys, f"event keys {sorted(e)}")
            check(HEX64.match(e["hash"]), f"hash {e['hash']!r}")
            check(e["stream"] == "order-1", f"stream {e!r}")
            check(e["recorded"] == ans["recorded"], f"recorded {e['recorded']} != {ans['recorded']}")
        e0, e1, e2 = evs
        check(e0["id"] == given_id and e0["type"] == "OrderPlaced", f"e0 {e0!r}")
        check(e0["data"]["zeta"] == 1.1 and e0["data"]["big"] == 9007199254740993,
              f"data {e0['data']!r}")
        check(list(e0["data"]) == ["zeta", "alpha", "mid", "big", "exp", "neg", "small"],
              f"key order {list(e0['data'])}")
        check(e0["metadata"] == {"user": "u1", "n": 2.5}, f"metadata {e0['metadata']!r}")
        check(e0["tags"] == ["customer:7", "region:eu"], f"tags {e0['tags']!r}")
        check(parse_time(e0["time"]) == datetime.datetime(2026, 11, 28, 10, 0, 0,
                                                          tzinfo=datetime.timezone.utc),
              f"time +02:00 not converted to UTC: {e0['time']}")
        check(parse_time(e1["time"]) == datetime.datetime(2026, 1, 2, 3, 4, 5, 123456,
                                                          tzinfo=datetime.timezone.utc),
              f"fractional time: {e1['time']}")
        check(e1["data"] == "just a string" and e1["metadata"] == {} and e1["tags"] == [],
              f"defaults {e1!r}")
        check(e2["data"] == [1, 2.0, "été"], f"e2 data {e2['data']!r}")
        check(e2["time"] == e2["recorded"], f"default time must be the commit time: {e2!r}")
        check([e["position"] for e in evs] == [1, 2, 3] and [e["version"] for e in evs] ==
              [1, 2, 3], "positions/versions")
        check(len({e["hash"] for e in evs}) == 3, "hashes not distinct")

        # the same events through the log and by position
        st, _, log = s.get("/v1/databases/default/events")
        check(st == 200 and log["events"] == evs and log["head"] == 3 and log["next"] is None,
              f"log read differs: {log!r}")
        for e in evs:
            st, _, one = s.get(f"/v1/databases/default/events/{e['position']}")
            check(st == 200 and one == e, f"event {e['position']}: {st} {one!r}")
        expect_error(s.get("/v1/databases/default/events/4"), 404, "event_not_found")
        expect_error(s.get("/v1/databases/default/events/0"), 400, "invalid_parameter")
        expect_error(s.get("/v1/databases/default/events/x"), 400, "invalid_parameter")

        # stream info
        st, _, info = s.get("/v1/databases/default/streams/order-1")
        check(st == 200, f"stream info {st} {info!r}")
        check(info["stream"] == "order-1" and info["version"] == 3 and
              info["firstPosition"] == 1 and info["lastPosition"] == 3, f"info {info!r}")
        parse_time(info["created"])
        parse_time(info["updated"])

        # a second append moves updated/lastPosition, keeps created/firstPosition
        s.append("other", [{"type": "t", "data": 0}])
        st, _, ans2 = s.append("order-1", [{"type": "t", "data": 0}])
        check(st == 201 and ans2["position"] == 5 and ans2["version"] == 4, f"ans2 {ans2!r}")
        st, _, info2 = s.get("/v1/databases/default/streams/order-1")
        check(info2["version"] == 4 and info2["firstPosition"] == 1 and
              info2["lastPosition"] == 5 and info2["created"] == info["created"],
              f"info after second append {info2!r}")
        check(parse_time(info2["updated"]) >= parse_time(info["updated"]), "updated went back")


def test_number_edge_cases():
    """Numbers are kept exactly as sent, or (when the parser cannot hold them) refused with
    400 invalid_json; never altered."""
    with Server() as s:
        for v in ["1e400", "-1e400", "1e-400", "12345678901234567890123", "9223372036854775807",
                  "-9223372036854775808", "1.0000000000000000000000001", "1E22", "-0",
                  "0.1e-999999", "[1.10, 2.000, -3e+0]"]:
            body = '{"events":[{"type":"t","data":' + v + '}]}'
            st, _, ans = s.post("/v1/databases/default/streams/n/events", body,
                                headers={"Content-Type": "application/json"})
            if st == 400:
                expect_error((st, None, ans), 400, "invalid_json")
                continue
            check(st == 201, f"data {v}: {st} {ans!r}")
            st, raw = raw_get(s, f"/v1/databases/default/events/{ans['position']}")
            want = '"data":' + v.replace(" ", "") + ',"metadata"'
            check(want in raw, f"number altered: sent {v}, read back {raw}")


def test_epoch_and_offset_times():
    with Server() as s:
        cases = [("1970-01-01T00:00:00Z", datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)),
                 ("2000-02-29T23:30:00-01:30", datetime.datetime(2000, 3, 1, 1, 0,
                                                                 tzinfo=datetime.timezone.utc)),
                 ("2026-11-28t10:00:00.5z", datetime.datetime(2026, 11, 28, 10, 0, 0, 500000,
                                                              tzinfo=datetime.timezone.utc))]
        for i, (given, want) in enumerate(cases):
            st, _, ans = s.append("times", [{"type": "t", "data": i, "time": given}])
            if st != 201:
                # lower-case t/z is allowed by RFC 3339 but optional; anything else must be 201
                check(i == 2 and st == 400, f"time {given}: {st} {ans!r}")
                continue
            st, _, ev = s.get(f"/v1/databases/default/events/{ans['position']}")
            check(parse_time(ev["time"]) == want, f"time {given} read back as {ev['time']}")


def _fill_two_streams(s, n):
    """Appends n events to 'main' interleaved with 'noise'; returns main's positions."""
    positions = []
    for i in range(n):
        st, _, ans = s.append("main", [{"type": "t", "data": {"i": i}}])
        check(st == 201, f"append {i}: {st} {ans!r}")
        positions.append(ans["position"])
        if i % 3 == 0:
            s.append("noise", [{"type": "n", "data": i}])
    return positions


def _page_all(s, path, frm, limit, direction):
    seen = []
    pages = 0
    q = f"limit={limit}&direction={direction}" + (f"&from={frm}" if frm is not None else "")
    while True:
        st, _, page = s.get(f"{path}?{q}")
        check(st == 200, f"{path}?{q}: {st} {page!r}")
        check(len(page["events"]) <= limit, f"page larger than limit {limit}")
        seen.extend(page["events"])
        pages += 1
        check(pages < 1000, "paging does not end")
        if page["next"] is None:
            return seen
        q = f"limit={limit}&direction={direction}&from={page['next']}"


def test_stream_read_paging():
    with Server() as s:
        n = 23
        positions = _fill_two_streams(s, n)
        path = "/v1/databases/default/streams/main/events"
        for limit in (1, 4, 5, 23, 100):
            fwd = _page_all(s, path, None, limit, "forward")
            check([e["version"] for e in fwd] == list(range(1, n + 1)),
                  f"forward limit={limit}: versions {[e['version'] for e in fwd]}")
            check([e["position"] for e in fwd] == positions, f"forward positions limit={limit}")
            check([e["data"]["i"] for e in fwd] == list(range(n)), "forward data")
            bwd = _page_all(s, path, None, limit, "backward")
            check([e["version"] for e in bwd] == list(range(n, 0, -1)),
                  f"backward limit={limit}: {[e['version'] for e in bwd]}")
        # from in the middle
        mid = _page_all(s, path, 10, 4, "forward")
        check([e["version"] for e in mid] == list(range(10, n + 1)), "forward from=10")
        midb = _page_all(s, path, 10, 4, "backward")
        check([e["version"] for e in midb] == list(range(10, 0, -1)), "backward from=10")
        st, _, page = s.get(path + "?from=5&limit=3")
        check([e["version"] for e in page["events"]] == [5, 6, 7] and page["next"] == 8 and
              page["version"] == n, f"from=5&limit=3: {page!r}")
        st, _, page = s.get(path + "?from=5&limit=3&direction=backward")
        check([e["version"] for e in page["events"]] == [5, 4, 3] and page["next"] == 2,
              f"backward from=5&limit=3: {page!r}")
        st, _, page = s.get(path + f"?from={n}&limit=1")
        check(len(page["events"]) == 1 and page["next"] is None, f"last page {page!r}")
        # default limit is 100
        for i in range(0, 120 - n, 40):
            s.append("main", [{"type": "t", "data": {"i": j}} for j in range(i, i + 40)])
        st, _, page = s.get(path)
        check(len(page["events"]) == 100 and page["next"] == 101, f"default limit: "
              f"{len(page['events'])} events, next {page['next']}")


def test_log_read_paging():
    with Server() as s:
        total = 0
        for k in range(12):
            st, _, _ = s.append(f"s{k % 4}", [{"type": "t", "data": [k, j]} for j in range(k % 3 + 1)])
            check(st == 201, "append")
            total += k % 3 + 1
        path = "/v1/databases/default/events"
        for limit in (1, 3, 7, total, 1000):
            fwd = _page_all(s, path, None, limit, "forward")
            check([e["position"] for e in fwd] == list(range(1, total + 1)),
                  f"log forward limit={limit}: {[e['position'] for e in fwd]}")
            bwd = _page_all(s, path, None, limit, "backward")
            check([e["position"] for e in bwd] == list(range(total, 0, -1)),
                  f"log backward limit={limit}")
            check(bwd == list(reversed(fwd)), "backward is not forward reversed")
        st, _, page = s.get(path + "?from=4&limit=2")
        check([e["position"] for e in page["events"]] == [4, 5] and page["next"] == 6 and
              page["head"] == total, f"from=4&limit=2: {page!r}")
        st, _, page = s.get(path + f"?from={total + 5}")
        check(st == 200 and page["events"] == [] and page["next"] is None,
              f"from past the head: {st} {page!r}")
        # versions within each stream are 1..n in log order
        seen = {}
        for e in fwd:
            seen[e["stream"]] = seen.get(e["stream"], 0) + 1
            check(e["version"] == seen[e["stream"]], f"version {e!r}")
        st, _, page = s.get(path)
        check(st == 200 and page["head"] == total, "head")


def test_empty_log_read():
    with Server() as s:
        st, _, page = s.get("/v1/databases/default/events")
        check(st == 200 and page == {"events": [], "head": 0, "hasMore": False, "next": None},
              f"{st} {page!r}")
        st, _, page = s.get("/v1/databases/default/events?direction=backward")
        check(st == 200 and page["events"] == [] and page["next"] is None, f"{st} {page!r}")


def test_stream_names_encoded():
    with Server() as s:
        names = ["orders/2026/eu", "café-☕", "日本語 stream", "a%b?c#d&e=f", "x+y", "🙂"]
        for i, name in enumerate(names):
            st, _, ans = s.append(name, [{"type": "t", "data": i}])
            check(st == 201, f"append to {name!r}: {st} {ans!r}")
            check(ans["stream"] == name, f"answer stream {ans['stream']!r} != {name!r}")
        for i, name in enumerate(names):
            st, _, info = s.get(f"/v1/databases/default/streams/{quote(name)}")
            check(st == 200 and info["stream"] == name and info["version"] == 1,
                  f"info {name!r}: {st} {info!r}")
            evs = s.read_stream(name)
            check(len(evs) == 1 and evs[0]["stream"] == name and evs[0]["data"] == i,
                  f"read {name!r}: {evs!r}")
        # '/' must be %2F: the unencoded path is another route
        st, _, _ = s.get("/v1/databases/default/streams/orders/2026/eu")
        check(st == 404, f"unencoded slash: {st}")
        expect_error(s.get("/v1/databases/default/streams/orders"), 404, "stream_not_found")
        log = s.read_log()
        check([e["stream"] for e in log] == names, f"log streams {[e['stream'] for e in log]}")
        # lower-case and upper-case escapes are the same name
        st, _, info = s.get("/v1/databases/default/streams/orders%2f2026%2Feu")
        check(st == 200 and info["stream"] == "orders/2026/eu", f"%2f: {st} {info!r}")


def test_keep_alive_and_head_method():
    with Server() as s:
        c = s.connect()
        try:
            for i in range(20):
                st, _, ans = s.append("ka", [{"type": "t", "data": i}], conn=c)
                check(st == 201 and ans["version"] == i + 1, f"keep-alive append {i}: {st}")
                st, _, info = s.get("/v1/databases/default/streams/ka", conn=c)
                check(st == 200 and info["version"] == i + 1, "keep-alive read")
        finally:
            c.close()
        st, h, body = s.request("HEAD", "/health")
        check(st == 200 and body == b"", f"HEAD /health: {st} {body!r}")
