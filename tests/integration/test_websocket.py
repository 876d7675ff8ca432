"""Live subscriptions over WebSocket (docs/api.md, "Live subscriptions", WebSocket): the same
paths as SSE upgrade to RFC 6455; the client sends `subscribe` (filter, from / after),
`unsubscribe` and `ping`; the server sends `subscribed`, `event`, `caught_up`, `unsubscribed`,
`pong` and `error`. The client here is written from RFC 6455 in the test (masking,
fragmentation, control frames), independent of the server's library."""
import base64
import hashlib
import json
import os
import socket
import struct
import time

from harness import Server, check, cli_keys, split_head, quote, run_cli

DB = "default"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WS:
    def __init__(self, port, path, headers=None, timeout=15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": self.key}
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        self.status, self.headers, self.buf = split_head(self.buf)

    def _recv(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("closed")
        self.buf += d

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, obj):
        self.send_frame(1, json.dumps(obj).encode() if not isinstance(obj, bytes) else obj)

    def frame(self):
        """(opcode, payload) of the next frame; server frames are never masked."""
        while len(self.buf) < 2:
            self._recv()
        b0, b1 = self.buf[0], self.buf[1]
        check(not b1 & 0x80, "a server frame was masked")
        n, off = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._recv()
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._recv()
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        while len(self.buf) < off + n:
            self._recv()
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        check(b0 & 0x80, "fragmented server frames are not expected")
        return b0 & 0x0F, payload

    def message(self):
        """The next text message as JSON (skipping pings from the server)."""
        while True:
            op, p = self.frame()
            if op == 1:
                return json.loads(p)
            if op == 8:
                raise EOFError(f"close {p[:2].hex()} {p[2:]!r}")

    def until(self, type_):
        while True:
            m = self.message()
            if m["type"] == type_:
                return m

    def events(self, n):
        out = []
        while len(out) < n:
            m = self.message()
            if m["type"] == "event":
                out.append(m["event"])
        return out

    def close(self):
        self.sock.close()


def append(s, stream, n, type_="T", db=DB):
    st, _, body = s.append(stream, [{"type": type_, "data": {"i": i}} for i in range(n)], db=db)
    check(st == 201, f"append {st} {body}")
    return body


def path(db=DB, stream=None, query=""):
    p = f"/v1/databases/{db}" + (f"/streams/{quote(stream)}" if stream else "") + "/events/live"
    return p + (f"?{query}" if query else "")


def test_handshake_subscribe_history_then_live():
    with Server() as s:
        append(s, "order-1", 3, "OrderPlaced")
        append(s, "user-1", 2, "UserJoined")
        ws = WS(s.port, path())
        check(ws.status == 101, f"status {ws.status}")
        want = base64.b64encode(hashlib.sha1((ws.key + GUID).encode()).digest()).decode()
        check(ws.headers.get("sec-websocket-accept") == want, f"{ws.headers}")
        check(ws.headers.get("upgrade", "").lower() == "websocket", f"{ws.headers}")
        ws.send({"type": "subscribe", "filter": {"types": ["Order*"]}, "from": 2})
        check(ws.message() == {"type": "subscribed", "from": 2}, "subscribed")
        check([e["position"] for e in ws.events(2)] == [2, 3], "history from 2, filtered")
        check(ws.until("caught_up")["position"] == 5, "caught up at the head")
        append(s, "order-2", 2, "OrderPlaced")
        append(s, "user-2", 1, "UserJoined")
        append(s, "order-3", 1, "OrderShipped")
        check([e["position"] for e in ws.events(3)] == [6, 7, 9], "live, filtered")
        ws.send({"type": "ping"})
        check(ws.until("pong") == {"type": "pong"}, "pong")
        ws.send_frame(9, b"hi")  # a protocol ping
        op, p = ws.frame()
        check(op == 10 and p == b"hi", f"pong frame {op} {p!r}")
        ws.close()


def test_unsubscribe_resubscribe_after_and_the_stream_path():
    with Server() as s:
        append(s, "a-1", 4)
        append(s, "b-1", 2)
        ws = WS(s.port, path(stream="a-1"))
        ws.send({"type": "subscribe"})
        check([e["position"] for e in ws.events(4)] == [1, 2, 3, 4], "only a-1")
        ws.until("caught_up")
        ws.send({"type": "unsubscribe"})
        check(ws.until("unsubscribed") == {"type": "unsubscribed"}, "unsubscribed")
        append(s, "a-1", 1)  # position 7: not delivered while unsubscribed
        ws.send({"type": "ping"})
        check(ws.message() == {"type": "pong"}, "nothing but the pong after unsubscribing")
        ws.send({"type": "subscribe", "after": 4})
        check(ws.message()["from"] == 5, "after 4 = from 5")
        check([e["position"] for e in ws.events(1)] == [7], "continues, stream only")
        ws.send({"type": "subscribe", "from": "latest"})
        check(ws.until("caught_up")["position"] == 7, "latest")
        append(s, "a-1", 1)
        check(ws.events(1)[0]["position"] == 8, "latest: new ones")
        ws.close()


def test_bad_messages_keep_the_connection():
    with Server() as s:
        ws = WS(s.port, path())
        for bad, field in [(b"not json", None), (b"[1]", None), ({"type": "dance"}, "type"),
                           ({"type": "subscribe", "from": 0}, "from"),
                           ({"type": "subscribe", "from": "x"}, "from"),
                           ({"type": "subscribe", "filter": {"types": ["a*b"]}}, None),
                           ({"type": "subscribe", "filter": {"nope": 1}}, None)]:
            ws.send(bad)
            m = ws.message()
            check(m["type"] == "error" and m["code"] == "invalid_message", f"{bad}: {m}")
            if field:
                check(m.get("field") == field, f"{bad}: field {m}")
        # a message in two fragments is one message
        ws.send_frame(1, b'{"type":', fin=False)
        ws.send_frame(0, b'"ping"}')
        check(ws.message() == {"type": "pong"}, "fragmented message")
        ws.close()


def test_close_handshake_and_oversized_messages():
    with Server() as s:
        ws = WS(s.port, path())
        ws.send_frame(8, struct.pack(">H", 1000) + b"bye")
        op, p = ws.frame()
        check(op == 8 and struct.unpack(">H", p[:2])[0] == 1000, f"close echoed: {op} {p!r}")
        try:
            ws._recv()
            check(False, "still open after the close handshake")
        except (EOFError, ConnectionResetError):
            pass
        ws = WS(s.port, path())
        ws.send_frame(1, b" " * (64 * 1024 + 1))
        op, p = ws.frame()
        check(op == 8 and struct.unpack(">H", p[:2])[0] == 1009, f"1009 for > 64 KiB: {op} {p!r}")


def test_bad_upgrades_are_refused():
    with Server() as s:
        ws = WS(s.port, path(), {"Sec-WebSocket-Version": "8"})
        check(ws.status == 400, f"version 8: {ws.status}")
        ws = WS(s.port, path(), {"Sec-WebSocket-Key": "short"})
        check(ws.status == 400, f"bad key: {ws.status}")
        ws = WS(s.port, path(db="nope"))
        check(ws.status == 404, f"unknown database: {ws.status}")


def test_admin_list_and_close_and_keys_in_the_query():
    s = Server(start=False)
    try:
        keys = cli_keys(s.data, "admin", "read")
        s.start()
        check(WS(s.port, path()).status == 401, "no key")
        ws = WS(s.port, path(query=f"api_key={keys['read']}"))
        check(ws.status == 101, f"key in the query: {ws.status}")
        ws.send({"type": "subscribe"})
        ws.until("caught_up")
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        st, _, body = s.request("GET", "/v1/connections", headers=admin)
        conns = body["connections"]
        check(st == 200 and len(conns) == 1 and conns[0]["kind"] == "websocket", f"{body}")
        st, _, _ = s.request("DELETE", f"/v1/connections/{conns[0]['id']}", headers=admin)
        check(st == 204, f"close {st}")
        m = ws.message()
        check(m["type"] == "error" and m["code"] == "closed", f"{m}")
        op, p = ws.frame()
        check(op == 8 and struct.unpack(">H", p[:2])[0] == 1001, f"close frame {op} {p!r}")
    finally:
        s.cleanup()


def test_slow_websocket_reader_is_disconnected():
    with Server(extra=["--live-max-lag", "2000"]) as s:
        sock_buf = 4096
        ws = WS.__new__(WS)
        ws.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sock_buf)
        ws.sock.settimeout(15)
        ws.sock.connect(("127.0.0.1", s.port))
        ws.key = base64.b64encode(os.urandom(16)).decode()
        ws.sock.sendall((f"GET {path()} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         f"Sec-WebSocket-Key: {ws.key}\r\n\r\n").encode())
        ws.buf = b""
        while b"\r\n\r\n" not in ws.buf:
            ws._recv()
        ws.buf = ws.buf.split(b"\r\n\r\n", 1)[1]
        ws.send({"type": "subscribe"})
        ws.until("caught_up")
        big = "x" * 2000
        for i in range(100):
            evs = [{"type": "T", "data": {"pad": big, "i": i}} for _ in range(100)]
            check(s.post(f"/v1/databases/{DB}/streams/slow/events", {"events": evs})[0] == 201,
                  "append")
        time.sleep(2.5)
        conns = s.get("/v1/connections")[2]["connections"]
        check(conns[0]["buffered"] <= 256 * 1024 + 8192, f"{conns}")
        m = ws.until("error")
        check(m["code"] == "too_far_behind", f"{m}")
        op, p = ws.frame()
        check(op == 8 and struct.unpack(">H", p[:2])[0] == 1008, f"close {op} {p!r}")


def test_consumer_groups_over_websocket():
    with Server() as s:
        append(s, "a-1", 3)
        append(s, "b-1", 2)
        st, _, _ = s.post(f"/v1/databases/{DB}/subscriptions",
                          {"name": "g", "ackTimeoutSeconds": 1, "maxRetries": 1})
        check(st == 201, "create subscription")
        ws = WS(s.port, path())
        ws.send({"type": "consume", "subscription": "nope", "consumer": "w1"})
        check(ws.message()["code"] == "subscription_not_found", "unknown subscription")
        ws.send({"type": "ack", "positions": [1]})
        check(ws.message()["code"] == "invalid_message", "ack before consume")
        ws.send({"type": "consume", "subscription": "g", "consumer": "w1", "max": 3})
        check(ws.message() == {"type": "consuming", "subscription": "g", "max": 3}, "consuming")
        m = ws.until("leased")
        got = [(e["event"]["position"], e["attempt"]) for e in m["events"]]
        check(got == [(1, 1), (2, 1), (3, 1)], f"at most max held at once: {got}")
        ws.send({"type": "ack", "positions": [1, 2]})
        check(ws.until("acked") == {"type": "acked", "acknowledged": 2}, "acked")
        m = ws.until("leased")
        check([e["event"]["position"] for e in m["events"]] == [4, 5], f"room for more: {m}")
        ws.send({"type": "nack", "positions": [4], "park": True})
        check(ws.until("nacked")["rejected"] == 1, "nacked")
        # 3 and 5 are not acknowledged: after the timeout they come again (attempt 2)
        m = ws.until("leased")
        check(sorted((e["event"]["position"], e["attempt"]) for e in m["events"]) ==
              [(3, 2), (5, 2)], f"redelivered: {m}")
        ws.send({"type": "ack", "positions": [3, 5]})
        ws.until("acked")
        append(s, "c-1", 1)
        m = ws.until("leased")
        check([e["event"]["position"] for e in m["events"]] == [6], "new events are pushed")
        ws.send({"type": "ack", "positions": [6]})
        ws.until("acked")
        st, _, g = s.get(f"/v1/databases/{DB}/subscriptions/g")
        check(g["checkpoint"] == 6 and g["parked"] == 1, f"{g}")
        ws.close()


def test_a_client_that_sends_without_reading_is_pushed_back():
    """Regression: every message a client sent was read and answered into an unbounded output
    buffer, so a client sending pings and never reading grew the server without limit. Now
    the server stops reading while its answers wait, and TCP pushes back on the client."""
    with Server() as s:
        ws = WS(s.port, path())
        mask = b"\x01\x02\x03\x04"
        frame = bytes([0x89, 0x80]) + mask  # a masked, empty ping
        chunk = frame * (1 << 17)           # 768 KiB of pings, each answered with a pong
        ws.sock.settimeout(3)
        sent = 0
        try:
            for _ in range(80):             # 60 MiB: far more than socket buffers hold
                ws.sock.sendall(chunk)
                sent += len(chunk)
            blocked = False
        except (socket.timeout, TimeoutError):
            blocked = True
        check(blocked, f"the server kept reading: {sent} bytes sent without reading an answer")
        st, _, _ = s.get("/health")
        check(st == 200, "the server is fine")
        ws.close()
