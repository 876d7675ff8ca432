"""The EvidentSource dialect's databases (both API generations), health, keys (X-API-Key, and
Bearer for the newer generation), CORS, rate limits, the error envelope (also for errors the
HTTP layer answers) and its mount options (its own port, another prefix, off)."""
import json
import socket

from es import Es, ce, es_error
from harness import Server, check, cli_keys, dialect_port, expect_error, split_raw


def test_databases_create_list_get_delete():
    with Server() as s:
        e = Es(s)
        st, _, b = e.post("/databases", {"name": "my-events"})
        check(st == 201, f"{st} {b}")
        d = b["database"]
        check(d["name"] == "my-events" and d["latest_revision"] == 0 and
              d["event_count"] == 0 and d["created_at"].endswith("Z"), f"{b}")
        es_error(e.post("/databases", {"name": "my-events"}), 409, "ALREADY_EXISTS")
        for bad in ("My-Database", "bad name!", "", "-x", "a" * 64):
            body = es_error(e.post("/databases", {"name": bad}), 400, "INVALID_ARGUMENT",
                            field="name")
            check(body["error"]["details"]["value"] == bad, f"the value is named: {body}")
        es_error(e.post("/databases", {}), 400, "INVALID_ARGUMENT", field="name")
        es_error(e.post("/databases", {"name": 7}), 400, "INVALID_ARGUMENT", field="name")
        es_error(e.post("/databases", None, raw=b"{not json",
                        headers={"Content-Type": "application/json"}), 400, "INVALID_ARGUMENT")
        st, _, b = e.get("/databases/my-events")
        check(st == 200 and b["state_views"] == [] and b["state_changes"] == [] and
              b["name"] == "my-events" and b["latest_revision"] == 0, f"{st} {b}")
        # events appended natively count, as CloudEvents made up from them
        st, _, _ = s.post("/v1/databases/my-events/streams/order-service/events",
                          {"events": [{"type": "T", "data": 1}, {"type": "T", "data": 2}]})
        st, _, b = e.get("/databases")
        mine = [d for d in b["databases"] if d["name"] == "my-events"]
        check(len(mine) == 1 and mine[0]["latest_revision"] == 2 and
              mine[0]["event_count"] == 2, f"{b}")
        es_error(e.get("/databases/nope"), 404, "NOT_FOUND")
        st, _, _ = e.delete("/databases/my-events")
        check(st == 204, f"delete {st}")
        es_error(e.delete("/databases/my-events"), 404, "NOT_FOUND")
        es_error(e.get("/databases/my-events"), 404, "NOT_FOUND")


def test_newer_generation_databases_in_camel_case():
    with Server() as s:
        e = Es(s)
        st, _, b = e.post("/v1/databases", {"name": "orders"})
        check(st == 201 and b["database"]["name"] == "orders" and
              b["database"]["latestRevision"] == 0 and b["database"]["eventCount"] == 0 and
              "createdAt" in b["database"], f"{st} {b}")
        st, _, b = e.get("/v1/databases")
        check(st == 200 and "orders" in [d["name"] for d in b["databases"]] and
              "latestRevision" in b["databases"][0], f"{b}")
        st, _, _ = e.delete("/v1/databases/orders")
        check(st == 204, f"{st}")
        es_error(e.delete("/v1/databases/orders"), 404, "NOT_FOUND")


def test_health():
    with Server(start=False) as s:
        cli_keys(s.data, "admin")
        s.start()
        e = Es(s)  # no key: health needs none
        st, h, b = e.get("/health")
        check(st == 200 and h["content-type"].startswith("text/plain") and b in ("OK", b"OK"),
              f"{st} {h} {b!r}")
        st, _, b = e.get("/health/detailed")
        check(st == 200 and b["status"] == "healthy" and b["version"] and
              b["storage"]["status"] == "connected" and b["uptime_seconds"] >= 0, f"{b}")


def test_keys_x_api_key_and_bearer():
    with Server(start=False) as s:
        keys = cli_keys(s.data, "admin", "read")
        s.start()
        admin = Es(s, key=keys["admin"])
        admin.database("shop")
        es_error(Es(s).get("/databases"), 401, "UNAUTHENTICATED")
        es_error(Es(s, key="ak_0000000000000000_wrong").get("/databases"), 401,
                 "UNAUTHENTICATED")
        st, _, b = Es(s, key=keys["read"], bearer=True).get("/v1/databases")
        check(st == 200 and "shop" in [d["name"] for d in b["databases"]], f"bearer: {st} {b}")
        reader = Es(s, key=keys["read"])
        st, _, _ = reader.get("/databases/shop")
        check(st == 200, f"read: {st}")
        es_error(reader.post("/databases", {"name": "x"}), 403, "PERMISSION_DENIED")
        es_error(reader.delete("/databases/shop"), 403, "PERMISSION_DENIED")
        # a key bound to one database sees that one only
        st, _, made = s.post("/v1/keys", {"scope": "read", "database": "shop"},
                             headers={"Authorization": f"Bearer {keys['admin']}"})
        admin.database("other")
        bound = Es(s, key=made["key"])
        st, _, b = bound.get("/databases")
        check([d["name"] for d in b["databases"]] == ["shop"], f"{b}")
        es_error(bound.get("/databases/other"), 404, "NOT_FOUND")
        # two different keys in one request
        st, _, b = Es(s, key=keys["read"]).get(
            "/databases", headers={"Authorization": f"Bearer {keys['admin']}"})
        check(st == 400 and b["error"]["code"] == "INVALID_ARGUMENT", f"{st} {b}")


def test_cors_preflight_and_headers_on_errors():
    with Server() as s:
        e = Es(s)
        origin = {"Origin": "http://localhost:3000"}
        st, h, _ = e.request("OPTIONS", "/databases", headers=dict(
            origin, **{"Access-Control-Request-Method": "POST",
                       "Access-Control-Request-Headers": "Content-Type, X-API-Key"}))
        check(st == 204 and h.get("access-control-allow-origin") == "http://localhost:3000",
              f"{st} {h}")
        check(h.get("access-control-allow-methods") == "GET, POST, PUT, DELETE, OPTIONS" and
              "X-API-Key" in h.get("access-control-allow-headers", "") and
              "Content-Type" in h.get("access-control-allow-headers", ""), f"{h}")
        resp = e.get("/databases/nope", headers=origin)
        es_error(resp, 404, "NOT_FOUND")
        check(resp[1].get("access-control-allow-origin") == "http://localhost:3000",
              f"also on errors: {resp[1]}")


def test_rate_limit_headers_and_429():
    with Server(extra=["--dialect-rate", "evidentsource=3"]) as s:
        e = Es(s)
        for i in range(3):
            st, h, _ = e.get("/databases")
            check(st == 200 and h["x-ratelimit-limit"] == "3" and
                  "x-ratelimit-remaining" in h and "x-ratelimit-reset" in h, f"{i}: {st} {h}")
        resp = e.get("/databases")
        es_error(resp, 429, "RESOURCE_EXHAUSTED")
        check(int(resp[1]["retry-after"]) >= 1, f"{resp[1]}")


def test_errors_of_the_http_layer_and_unknown_routes_use_the_envelope():
    with Server(extra=["--max-body-bytes", "2048"]) as s:
        e = Es(s)
        e.database("shop")
        es_error(e.get("/databases/shop/nothing/here"), 404, "NOT_FOUND")
        es_error(e.request("PUT", "/databases/shop"), 405, "UNIMPLEMENTED")
        big = {"events": [ce(data="x" * 4000)]}
        es_error(e.post("/databases/shop/events", big), 413, "INVALID_ARGUMENT")
        es_error(e.post("/databases", None, raw=b"name=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
                 415, "INVALID_ARGUMENT")
        expect_error(s.get("/v1/databases/nope"), 404, "database_not_found")


def test_mount_options():
    with Server(extra=["--dialect-listen", "evidentsource=127.0.0.1:0"]) as s:
        port = dialect_port(s, "evidentsource")
        root = Es(s, base="", port=port)
        root.database("shop")
        st, _, b = Es(s).get("/databases/shop")
        check(st == 200, "and still under /evidentsource")
        st, _, b = root.get("/health")
        check(st == 200, f"health at the root of its port: {st}")
        es_error(root.get("/v1/databases/shop/streams"), 404, "NOT_FOUND")
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /databases HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                     b"application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        st, _, body = split_raw(data)
        check(st == 400 and json.loads(body)["error"]["code"] == "INVALID_ARGUMENT",
              f"the HTTP layer's own errors in the envelope: {data!r}")
    with Server(extra=["--dialect", "evidentsource=/es"]) as s:
        st, _, _ = Es(s, base="/es").get("/databases")
        check(st == 200, f"/es: {st}")
        expect_error(s.get("/evidentsource/databases"), 404, "not_found")
    with Server(extra=["--dialect", "evidentsource=off"]) as s:
        expect_error(s.get("/evidentsource/databases"), 404, "not_found")
