"""What a web page may do to a server on the same machine (development mode, no keys): DNS
rebinding (Host), state-changing requests and WebSockets from foreign origins (Origin),
dot segments that clients collapse, and requests that present two keys."""
import base64
import os
import socket

from harness import Server, check, cli_keys, expect_error, split_raw

EVENT = {"events": [{"type": "t", "data": 1}]}


def ws_upgrade(s, path, origin=None, host=None):
    """Sends a WebSocket upgrade; returns (status, headers, rest)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{s.port}'}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n")
    if origin:
        head += f"Origin: {origin}\r\n"
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall((head + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return split_raw(data)
    finally:
        sock.close()


def test_rebinding_host_is_refused_without_keys():
    with Server() as s:
        for host in ("evil.example", f"evil.example:{s.port}", "192.168.1.20", "10.0.0.1:80",
                     "localhost.evil.example", "[::2]"):
            expect_error(s.get("/health", headers={"Host": host}), 403, "host_not_allowed",
                         "Host")
        # the attack of the report: an admin key made through a rebound name
        expect_error(s.post("/v1/keys", {"scope": "admin"},
                            headers={"Host": f"evil.example:{s.port}",
                                     "Origin": f"http://evil.example:{s.port}"}),
                     403, "host_not_allowed")
        st, _, body = s.get("/v1/keys")
        check(st == 200 and body["keys"] == [], f"a key was made: {st} {body}")
        for host in ("localhost", f"localhost:{s.port}", f"127.0.0.1:{s.port}", "127.1.2.3",
                     f"[::1]:{s.port}", "app.localhost:3000", "LOCALHOST.", "[::ffff:127.0.0.1]"):
            st, _, body = s.get("/health", headers={"Host": host})
            check(st == 200, f"Host {host}: {st} {body}")
        # HTTP/1.0 without Host: no browser sends that
        st, _, _ = split_raw(s.raw(b"GET /health HTTP/1.0\r\n\r\n"))
        check(st == 200, f"HTTP/1.0 without Host: {st}")
        # an absolute-form target names the host instead of Host (RFC 9112 3.2.2)
        st, _, _ = split_raw(s.raw(f"GET http://evil.example:{s.port}/health HTTP/1.1\r\n"
                                   f"Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()))
        check(st == 403, f"absolute-form to a foreign host: {st}")


def test_allowed_hosts_flag():
    with Server(extra=["--allowed-hosts", "annals.test,Box.Lan"]) as s:
        for host in ("annals.test", "annals.test:7070", "box.lan:1"):
            st, _, _ = s.get("/health", headers={"Host": host})
            check(st == 200, f"listed host {host}: {st}")
        expect_error(s.get("/health", headers={"Host": "other.test"}), 403, "host_not_allowed")
        # once listed, only the list: loopback names too must be listed
        expect_error(s.get("/health", headers={"Host": "localhost"}), 403, "host_not_allowed")


def test_hosts_with_keys():
    with Server(start=False) as s:
        keys = cli_keys(s.data, "admin")
        s.start()
        auth = {"Authorization": f"Bearer {keys['admin']}"}
        st, _, _ = s.get("/v1/databases", headers={**auth, "Host": "events.example.com"})
        check(st == 200, f"with keys any Host is served: {st}")
        s.restart(extra=["--allowed-hosts", "events.example.com"])
        st, _, _ = s.get("/v1/databases", headers={**auth, "Host": "events.example.com"})
        check(st == 200, f"listed: {st}")
        expect_error(s.get("/v1/databases", headers={**auth, "Host": "other.example.com"}),
                     403, "host_not_allowed")


def test_state_changing_requests_from_foreign_origins_are_refused():
    with Server() as s:
        evil = {"Origin": "http://evil.example"}
        for method, path, body in (
                ("POST", "/v1/databases/default/streams/s/events", EVENT),
                ("POST", "/v1/databases", {"name": "x"}),
                ("PUT", "/v1/databases/default/streams/s/metadata", {"maxCount": 1}),
                ("PATCH", "/v1/databases/default", {"description": "x"}),
                ("DELETE", "/v1/databases/default", None),
                ("POST", "/v1/keys", {"scope": "admin"})):
            resp = s.request(method, path, body, headers=evil)
            expect_error(resp, 403, "origin_not_allowed", "Origin")
            check("access-control-allow-origin" not in resp[1], f"{method} {path}: CORS header")
        check(s.head() == 0, "something was written")
        st, _, body = s.get("/v1/databases")
        check([d["name"] for d in body["databases"]] == ["default"], f"databases: {body}")
        # reads stay readable by the server (the browser withholds the answer: no CORS header)
        st, h, _ = s.get("/v1/databases/default/events", headers=evil)
        check(st == 200 and "access-control-allow-origin" not in h, f"read: {st} {h}")
        # pages of this machine (development default) and the server's own origin may write
        for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000",
                       f"http://127.0.0.1:{s.port}"):
            st, h, body = s.post("/v1/databases/default/streams/s/events", EVENT,
                                 headers={"Origin": origin})
            check(st == 201, f"Origin {origin}: {st} {body}")
        # "null" (sandboxed frames, files) is no page of this machine
        expect_error(s.post("/v1/databases/default/streams/s/events", EVENT,
                            headers={"Origin": "null"}), 403, "origin_not_allowed")


def test_configured_origins_decide():
    with Server(extra=["--cors-origins", "https://app.example,https://admin.example"]) as s:
        st, h, _ = s.post("/v1/databases/default/streams/s/events", EVENT,
                          headers={"Origin": "https://app.example"})
        check(st == 201 and h.get("access-control-allow-origin") == "https://app.example",
              f"listed origin: {st} {h}")
        expose = h.get("access-control-expose-headers", "")
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                     "Retry-After", "X-Request-Id", "Location"):
            check(name in expose, f"{name} not exposed: {expose}")
        # the list replaces the development default
        expect_error(s.post("/v1/databases/default/streams/s/events", EVENT,
                            headers={"Origin": "http://localhost:3000"}), 403,
                     "origin_not_allowed")


def test_websocket_upgrades_check_the_origin():
    with Server() as s:
        s.append("s", [{"type": "t", "data": 1}])
        path = "/v1/databases/default/events/live"
        st, _, rest = ws_upgrade(s, path, origin="http://evil.example")
        check(st == 403 and b"origin_not_allowed" in rest, f"foreign page: {st} {rest!r}")
        st, _, _ = ws_upgrade(s, "/v1/databases/default/streams/s/events/live",
                              origin="https://evil.example:8443")
        check(st == 403, f"stream path, foreign page: {st}")
        st, _, _ = ws_upgrade(s, path, origin="http://localhost:5173")
        check(st == 101, f"local page: {st}")
        st, _, _ = ws_upgrade(s, path)
        check(st == 101, f"no Origin (not a browser): {st}")
        st, _, _ = ws_upgrade(s, path, host="evil.example", origin="http://evil.example")
        check(st == 403, f"rebound name: {st}")
        st, _, rest = ws_upgrade(s, path + "?types=t")
        check(st == 400 and b"invalid_parameter" in rest, f"filters in the URL: {st} {rest!r}")


def test_dot_and_empty_segments_are_refused():
    with Server() as s:
        for path in ("/v1/databases/default/streams/../events",
                     "/v1/databases/default/streams/./events",
                     "/v1/databases/default/streams/%2e%2E/events",
                     "/v1/databases/default/streams/%2E/events",
                     "/v1/databases/default/streams//events",
                     "/v1/databases/default/streams/s/events/",
                     "/v1/databases/default/./streams/s/events"):
            expect_error(s.post(path, EVENT), 400, "invalid_path")
        check(s.head() == 0, "a dot path wrote something")
        for name in (".", ".."):
            expect_error(s.post("/v1/databases/default/events",
                                {"appends": [{"stream": name, "events": EVENT["events"]}]}),
                         400, "invalid_name", "appends[0].stream")
        check(s.head() == 0, "a dot stream was written")
        # names that merely contain dots are fine
        for name in ("...", ".a", "a..b"):
            st, _, body = s.append(name, EVENT["events"])
            check(st == 201 and body["stream"] == name, f"{name}: {st} {body}")


def test_two_different_keys_are_refused():
    with Server(start=False) as s:
        keys = cli_keys(s.data, "admin", "read")
        s.start()
        both = {"Authorization": f"Bearer {keys['admin']}", "X-API-Key": keys["read"]}
        expect_error(s.get("/v1/databases", headers=both), 400, "conflicting_credentials")
        same = {"Authorization": f"Bearer {keys['read']}", "X-API-Key": keys["read"]}
        st, _, _ = s.get("/v1/databases", headers=same)
        check(st == 200, f"the same key twice: {st}")
        expect_error(s.get(f"/v1/databases/default/events/live?api_key={keys['read']}",
                           headers={"X-API-Key": keys["admin"]}), 400,
                     "conflicting_credentials")
