"""HTTP framing robustness of the own HTTP/1.1 server (src/http/parse.c, src/http/server.c),
black-box over raw sockets: request smuggling vectors, chunked bodies, pipelining, oversized
heads and bodies, slow / idle / abrupt clients, the connection limit, Expect: 100-continue,
HEAD and HTTP/1.0.

After every hostile case the server must still answer GET /health (200) on a fresh connection,
and a refused request must not have appended anything (head and headHash of the default
database unchanged). Errors of the HTTP layer are JSON {"error":{"code","message"}} followed by
Connection: close and the server closing the connection."""
import json
import re
import socket
import struct
import threading
import time

from harness import Server, check

STREAM_PATH = "/v1/databases/default/streams/%s/events"
_STATUS_RE = re.compile(r"^HTTP/1\.1 (\d{3}) [^\r\n]*$")


# ---- raw HTTP plumbing ----

class Resp:
    def __init__(self, status, headers, body, raw_head):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.status} body is not JSON: {self.body[:200]!r}")

    def __repr__(self):
        return f"<{self.status} {self.raw_head[:160]!r} body {self.body[:160]!r}>"


def parse_one(buf, head_only=False):
    """Parses one response from the start of buf: (Resp, rest), or (None, buf) if incomplete.
    Raises AssertionError on a malformed response."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None, buf
    head = buf[:i].decode("latin-1")
    rest = buf[i + 4:]
    lines = head.split("\r\n")
    m = _STATUS_RE.match(lines[0])
    check(m, f"bad status line {lines[0]!r} in {buf[:200]!r}")
    status = int(m.group(1))
    hdrs = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        check(sep and k and k == k.strip(), f"bad response header line {ln!r}")
        check(k.lower() not in hdrs, f"response header {k} twice: {head!r}")
        hdrs[k.lower()] = v.strip()
    if 100 <= status < 200 or status in (204, 304) or head_only:
        n = 0
    else:
        check("content-length" in hdrs, f"{status} answer without Content-Length: {head!r}")
        n = int(hdrs["content-length"])
    if len(rest) < n:
        return None, buf
    return Resp(status, hdrs, rest[:n], buf[:i]), rest[n:]


class Conn:
    """One raw client connection with a receive buffer."""

    def __init__(self, s, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", s.port))
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def send_quietly(self, data):
        """Sends, ignoring the server having closed (it may refuse before reading it all)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _recv(self, deadline):
        """One recv into buf; False on EOF/reset. Raises socket.timeout past deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def response(self, timeout=10.0, head_only=False, what="response"):
        """Reads exactly one response (a 1xx counts as one)."""
        deadline = time.monotonic() + timeout
        while True:
            r, rest = parse_one(self.buf, head_only)
            if r is not None:
                self.buf = rest
                return r
            if self.eof:
                raise AssertionError(f"connection closed before a complete {what}; "
                                     f"received {self.buf[:300]!r} ({len(self.buf)} bytes)")
            try:
                self._recv(deadline)
            except socket.timeout:
                raise AssertionError(f"no complete {what} within {timeout} s; "
                                     f"received {self.buf[:300]!r}")

    def wait_closed(self, timeout=5.0):
        """True when the server closes (EOF or reset) within timeout; extra bytes kept in buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._recv(deadline)
            except socket.timeout:
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def append_req(stream="s", data=1, close=False, extra=b""):
    body = json.dumps({"events": [{"type": "t", "data": data}]}).encode()
    return (b"POST " + (STREAM_PATH % stream).encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n" + extra + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


def get_req(path, close=False, method=b"GET", version=b"HTTP/1.1", extra=b""):
    return (method + b" " + path.encode() + b" " + version + b"\r\nHost: localhost\r\n" + extra +
            (b"Connection: close\r\n" if close else b"") + b"\r\n")


def chunked(body, sizes):
    """Chunked encoding of body cut into pieces of the given sizes (last repeats)."""
    out, i, k = b"", 0, 0
    while i < len(body):
        n = sizes[min(k, len(sizes) - 1)]
        out += b"%x\r\n%s\r\n" % (n if i + n <= len(body) else len(body) - i, body[i:i + n])
        i += n
        k += 1
    return out


def one_exchange(s, req, timeout=10.0):
    c = Conn(s, timeout)
    try:
        c.send(req)
        r = c.response(timeout)
        if r.headers.get("connection", "").lower() == "close":
            c.wait_closed(timeout)  # the server has let go of this connection
        return r
    finally:
        c.close()


def db_state(s):
    r = one_exchange(s, get_req("/v1/databases/default", close=True))
    check(r.status == 200, f"GET /v1/databases/default: {r!r}")
    b = r.json()
    return b["head"], b["headHash"]


def stream_events(s, stream):
    r = one_exchange(s, get_req(STREAM_PATH % stream + "?limit=1000", close=True))
    if r.status == 404:
        return []
    check(r.status == 200, f"stream read {stream}: {r!r}")
    return r.json()["events"]


def healthy(s, timeout=5.0):
    """The server answers GET /health with 200 on a fresh connection."""
    check(s.running(), "server process died; log:\n" + s.log()[-2000:])
    r = one_exchange(s, get_req("/health", close=True), timeout)
    check(r.status == 200, f"GET /health after a hostile case: {r!r}")
    check(r.json().get("status") == "ok", f"health body {r.body!r}")


def after_case(s, before, delta=0, label=""):
    """Server still serves, and the head moved by exactly delta (0: nothing appended)."""
    healthy(s)
    after = db_state(s)
    if delta == 0:
        check(after == before, f"{label}: refused request changed the database "
                               f"(head {before[0]} -> {after[0]})")
    else:
        check(after[0] == before[0] + delta,
              f"{label}: head {before[0]} -> {after[0]}, want +{delta}")


def check_error(r, status, code, label):
    check(r.status == status, f"{label}: want {status} {code}, got {r!r}")
    check(r.headers.get("content-type", "").startswith("application/json"),
          f"{label}: error Content-Type {r.headers.get('content-type')!r}")
    b = r.json()
    check(isinstance(b, dict) and isinstance(b.get("error"), dict), f"{label}: body {b!r}")
    check(b["error"].get("code") == code,
          f"{label}: want error.code {code}, got {b['error'].get('code')!r}")
    check(isinstance(b["error"].get("message"), str) and b["error"]["message"],
          f"{label}: no error.message in {b!r}")


def refused(s, req, status, code, label, timeout=10.0):
    """Sends req on a fresh connection; asserts one JSON error answer with Connection: close,
    the connection then closed, nothing appended and the server still healthy."""
    before = db_state(s)
    c = Conn(s, timeout)
    try:
        c.send_quietly(req)
        r = c.response(timeout, what=f"answer to {label}")
        check_error(r, status, code, label)
        check(r.headers.get("connection", "").lower() == "close",
              f"{label}: error answer without Connection: close: {r.raw_head!r}")
        check(c.wait_closed(5.0), f"{label}: connection still open 5 s after the error answer")
        check(c.buf == b"", f"{label}: bytes after the error answer: {c.buf[:200]!r}")
    finally:
        c.close()
    after_case(s, before, 0, label)


def run_cases(s, cases):
    """cases: (label, request bytes, status, code); every case is run, failures are listed."""
    wrong = []
    for label, req, status, code in cases:
        try:
            refused(s, req, status, code, label)
        except AssertionError as e:
            wrong.append(str(e))
    check(not wrong, f"{len(wrong)} of {len(cases)} cases wrong:\n  " + "\n  ".join(wrong))


def seeded(extra=None):
    s = Server(extra=extra)
    r = one_exchange(s, append_req("seed", 0, close=True))
    check(r.status == 201, f"seed append: {r!r}")
    return s


# ---- 1. smuggling vectors and malformed heads ----

BODY = json.dumps({"events": [{"type": "t", "data": "smuggled"}]}).encode()
POST_HEAD = (b"POST " + (STREAM_PATH % "s").encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Type: application/json\r\n")
CL = b"Content-Length: %d\r\n" % len(BODY)


def test_smuggling_length_and_coding():
    cases = [
        ("CL + TE chunked", POST_HEAD + CL + b"Transfer-Encoding: chunked\r\n\r\n" +
         chunked(BODY, [10]) + b"0\r\n\r\n", 400, "bad_request"),
        ("TE chunked + CL", POST_HEAD + b"Transfer-Encoding: chunked\r\n" + CL + b"\r\n" +
         chunked(BODY, [10]) + b"0\r\n\r\n", 400, "bad_request"),
        ("two different CL", POST_HEAD + CL + b"Content-Length: %d\r\n\r\n" % (len(BODY) + 1) +
         BODY + b"x", 400, "bad_request"),
        ("two different CL (smaller second)", POST_HEAD + CL + b"Content-Length: 5\r\n\r\n" +
         BODY, 400, "bad_request"),
        ("CL with +", POST_HEAD + b"Content-Length: +%d\r\n\r\n" % len(BODY) + BODY,
         400, "bad_request"),
        ("CL negative", POST_HEAD + b"Content-Length: -1\r\n\r\n" + BODY, 400, "bad_request"),
        ("CL with a space inside", POST_HEAD + b"Content-Length: %d %d\r\n\r\n"
         % (len(BODY) // 10, len(BODY) % 10) + BODY, 400, "bad_request"),
        ("CL hex", POST_HEAD + b"Content-Length: 0x%x\r\n\r\n" % len(BODY) + BODY,
         400, "bad_request"),
        ("CL empty", POST_HEAD + b"Content-Length: \r\n\r\n" + BODY, 400, "bad_request"),
        ("TE gzip", POST_HEAD + b"Transfer-Encoding: gzip\r\n\r\n" + BODY, 501,
         "not_implemented"),
        ("TE identity", POST_HEAD + b"Transfer-Encoding: identity\r\n\r\n" + BODY, 501,
         "not_implemented"),
        ("TE chunked, gzip", POST_HEAD + b"Transfer-Encoding: chunked, gzip\r\n\r\n" +
         chunked(BODY, [10]) + b"0\r\n\r\n", 400, "bad_request"),
        ("TE chunked twice (two fields)", POST_HEAD + b"Transfer-Encoding: chunked\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY, [10]) + b"0\r\n\r\n",
         400, "bad_request"),
        ("TE chunked, chunked", POST_HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n" +
         chunked(BODY, [10]) + b"0\r\n\r\n", 400, "bad_request"),
    ]
    with seeded() as s:
        run_cases(s, cases)


def test_duplicate_identical_content_length_accepted():
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(POST_HEAD + CL + CL + b"\r\n" + BODY)
            r = c.response()
            check(r.status == 201, f"two identical Content-Length fields: {r!r}")
            check(r.headers.get("connection", "").lower() != "close",
                  "keep-alive connection closed after an accepted request")
            c.send(get_req("/health"))  # the connection is still in sync
            r = c.response()
            check(r.status == 200, f"request after it on the same connection: {r!r}")
        finally:
            c.close()
        after_case(s, before, 1, "duplicate identical Content-Length")
        check([e["data"] for e in stream_events(s, "s")] == ["smuggled"], "event not stored")


def test_body_of_get_not_executed():
    """A body sent with GET (Content-Length or chunked) that looks like a request is skipped as
    body, never run as a second request."""
    with seeded() as s:
        before = db_state(s)
        inner = append_req("smug", "inner")
        for label, req in [
                ("GET with Content-Length body", b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(inner) + inner),
                ("GET with chunked body", b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + chunked(inner, [50]) + b"0\r\n\r\n")]:
            c = Conn(s)
            try:
                c.send(req + get_req("/health", close=True))
                r1, r2 = c.response(), c.response()
                check(r1.status == 200 and r2.status == 200, f"{label}: {r1!r} {r2!r}")
                check(c.wait_closed(5.0) and c.buf == b"",
                      f"{label}: more answers than requests: {c.buf[:200]!r}")
            finally:
                c.close()
        check(stream_events(s, "smug") == [], "the body of a GET was run as a request")
        after_case(s, before, 0, "GET with a body")


def test_http10_transfer_encoding_closes():
    """RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the server
    MUST close the connection after processing it (even with Connection: keep-alive), so a
    request pipelined behind it is not run. Refusing it (400, close) is fine too."""
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(b"POST " + (STREAM_PATH % "te10").encode() + b" HTTP/1.0\r\nHost: localhost\r\n"
                   b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: keep-alive\r\n\r\n" + chunked(BODY, [10]) + b"0\r\n\r\n" +
                   append_req("te10", "behind"))
            r = c.response()
            check(r.status in (201, 400), f"HTTP/1.0 with Transfer-Encoding: {r!r}")
            if r.status == 400:
                check_error(r, 400, "bad_request", "HTTP/1.0 with Transfer-Encoding")
            closed = c.wait_closed(3.0)
            check(closed and c.buf == b"",
                  f"connection not closed after an HTTP/1.0 request with Transfer-Encoding "
                  f"(Connection: keep-alive): "
                  + (f"the pipelined request behind it was answered: {c.buf[:120]!r}"
                     if c.buf else "still open 3 s later"))
        finally:
            c.close()
        after_case(s, before, 1 if r.status == 201 else 0, "HTTP/1.0 Transfer-Encoding")
        check([e["data"] for e in stream_events(s, "te10")] ==
              (["smuggled"] if r.status == 201 else []), "events of te10")


def test_malformed_heads():
    g = b"GET /health HTTP/1.1\r\n"
    cases = [
        ("obs-fold (space)", g + b"Host: localhost\r\nX-A: 1\r\n continued\r\n\r\n", 400, "bad_request"),
        ("obs-fold (tab)", g + b"Host: localhost\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400, "bad_request"),
        ("obs-fold on Content-Length", POST_HEAD + b"Content-Length:\r\n %d\r\n\r\n"
         % len(BODY) + BODY, 400, "bad_request"),
        ("bare LF everywhere", b"GET /health HTTP/1.1\nHost: localhost\n\n", 400, "bad_request"),
        ("bare LF after one field", g + b"Host: localhost\nX-A: 1\r\n\r\n", 400, "bad_request"),
        ("bare LF ending the head", g + b"Host: localhost\r\n\n", 400, "bad_request"),
        ("bare CR in a value", g + b"Host: localhost\r\nX-A: a\rb\r\n\r\n", 400, "bad_request"),
        ("space before colon", g + b"Host : t\r\n\r\n", 400, "bad_request"),
        ("space before colon in Content-Length", POST_HEAD + b"Content-Length : %d\r\n\r\n"
         % len(BODY) + BODY, 400, "bad_request"),
        ("space inside a name", g + b"Host: localhost\r\nX A: t\r\n\r\n", 400, "bad_request"),
        ("field without colon", g + b"Host t\r\n\r\n", 400, "bad_request"),
        ("empty field name", g + b"Host: localhost\r\n: t\r\n\r\n", 400, "bad_request"),
        ("NUL in a value", g + b"Host: localhost\r\nX-A: a\x00b\r\n\r\n", 400, "bad_request"),
        ("0x01 in a value", g + b"Host: localhost\r\nX-A: a\x01b\r\n\r\n", 400, "bad_request"),
        ("0x1f in a value", g + b"Host: localhost\r\nX-A: a\x1fb\r\n\r\n", 400, "bad_request"),
        ("DEL in a value", g + b"Host: localhost\r\nX-A: a\x7fb\r\n\r\n", 400, "bad_request"),
        ("NUL in a name", g + b"Host: localhost\r\nX-\x00A: b\r\n\r\n", 400, "bad_request"),
        ("HTTP/2.0", b"GET /health HTTP/2.0\r\nHost: localhost\r\n\r\n", 505,
         "http_version_not_supported"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505,
         "http_version_not_supported"),
        ("HTTP/3.0", b"GET /health HTTP/3.0\r\n\r\n", 505, "http_version_not_supported"),
        ("HTTP/0.9 style", b"GET /health\r\n\r\n", 400, "bad_request"),
        ("garbage line", b"HELLO WORLD\r\n\r\n", 400, "bad_request"),
        ("binary garbage", b"\x01\x02\x03\xff\xfe garbage\r\n\r\n", 400, "bad_request"),
        ("lower-case version", b"GET /health http/1.1\r\n\r\n", 400, "bad_request"),
        ("version HTTP/1.10", b"GET /health HTTP/1.10\r\n\r\n", 400, "bad_request"),
        ("two spaces", b"GET  /health HTTP/1.1\r\n\r\n", 400, "bad_request"),
        ("extra token", b"GET /health HTTP/1.1 x\r\n\r\n", 400, "bad_request"),
        ("bad method char", b"G@T /health HTTP/1.1\r\n\r\n", 400, "bad_request"),
        ("NUL in target", b"GET /hea\x00lth HTTP/1.1\r\n\r\n", 400, "bad_request"),
        ("method of 40 chars", b"A" * 40 + b" /health HTTP/1.1\r\n\r\n", 400, "bad_request"),
        # RFC 9112 3.2: exactly one Host, an authority; HTTP/1.0 may leave it out
        ("HTTP/1.1 without Host", g + b"X-A: 1\r\n\r\n", 400, "bad_request"),
        ("two Host fields", g + b"Host: localhost\r\nHost: localhost\r\n\r\n", 400, "bad_request"),
        ("Host with user information", g + b"Host: u@t\r\n\r\n", 400, "bad_request"),
        ("Host with a path", g + b"Host: t/x\r\n\r\n", 400, "bad_request"),
    ]
    with seeded() as s:
        run_cases(s, cases)


# ---- 2. chunked bodies ----

def test_chunked_valid_append():
    with seeded() as s:
        before = db_state(s)
        body = json.dumps({"events": [{"type": "Chunked", "data": {"s": "z" * 700, "n": [1, 2]}},
                                      {"type": "Chunked", "data": 2}]}).encode()
        # upper- and lower-case hex, leading zeros, chunk extensions, one-byte chunks, trailers
        parts = [body[:26], body[26:27], body[27:300], body[300:]]
        enc = (b"%X\r\n%s\r\n" % (len(parts[0]), parts[0]) +
               b"0001;ext\r\n%s\r\n" % parts[1] +
               b"%x;a=b;c=\"q d\"\r\n%s\r\n" % (len(parts[2]), parts[2]) +
               b"%x\r\n%s\r\n" % (len(parts[3]), parts[3]) +
               b"0;last=1\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n")
        c = Conn(s)
        try:
            c.send(POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + enc)
            r = c.response()
            check(r.status == 201, f"chunked append: {r!r}")
            ans = r.json()
            check(ans["version"] == 2 and ans["position"] == before[0] + 2, f"answer {ans!r}")
            c.send(get_req("/health"))  # the decoder stopped exactly at the end of the body
            r = c.response()
            check(r.status == 200, f"request after the chunked body: {r!r}")
        finally:
            c.close()
        evs = stream_events(s, "s")
        check([e["data"] for e in evs] == [{"s": "z" * 700, "n": [1, 2]}, 2],
              f"chunked events read back: {evs!r}")
        after_case(s, before, 2, "valid chunked append")


def test_chunked_malformed_sizes():
    te = POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    cases = [
        ("non-hex size", te + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n", 400, "bad_request"),
        ("0x prefix", te + b"0x%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", 400,
         "bad_request"),
        ("negative size", te + b"-%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", 400,
         "bad_request"),
        ("empty size line", te + b"\r\n" + BODY + b"\r\n0\r\n\r\n", 400, "bad_request"),
        ("missing CRLF after data", te + b"%x\r\n" % len(BODY) + BODY + b"0\r\n\r\n", 400,
         "bad_request"),
        ("data longer than size", te + b"%x\r\n" % (len(BODY) - 3) + BODY + b"\r\n0\r\n\r\n",
         400, "bad_request"),
        ("LF only after data", te + b"%x\r\n" % len(BODY) + BODY + b"\n0\r\n\r\n", 400,
         "bad_request"),
        ("bare LF after size", te + b"%x\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", 400,
         "bad_request"),
        ("overflow ffffffffffffffffff", te + b"ffffffffffffffffff\r\n" + BODY +
         b"\r\n0\r\n\r\n", 400, "bad_request"),
        ("overflow 1 followed by 16 zeros", te + b"10000000000000000\r\n" + BODY +
         b"\r\n0\r\n\r\n", 400, "bad_request"),
        ("control char in extension", te + b"%x;a\x01b\r\n" % len(BODY) + BODY +
         b"\r\n0\r\n\r\n", 400, "bad_request"),
        ("bare LF in trailer", te + chunked(BODY, [16]) + b"0\r\nX-T: 1\n\r\n", 400,
         "bad_request"),
    ]
    with seeded(["--max-body-bytes", "2048"]) as s:
        run_cases(s, cases)


def test_chunked_body_too_large_prompt():
    """A chunked body over --max-body-bytes 2048 is answered 413 as soon as the limit is
    passed, while the client still has the rest (and the last chunk) to send."""
    with seeded(["--max-body-bytes", "2048"]) as s:
        before = db_state(s)
        big = json.dumps({"events": [{"type": "t", "data": "x" * 9000}]}).encode()
        enc = chunked(big, [1000])
        c = Conn(s)
        try:
            c.send(POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + enc[:3200])
            r = c.response(5.0, what="413 before the body was finished")
            check_error(r, 413, "body_too_large", "chunked body over the limit")
            check(r.headers.get("connection", "").lower() == "close", f"no close: {r!r}")
            check(c.wait_closed(5.0), "connection still open after the 413")
            c.send_quietly(enc[3200:] + b"0\r\n\r\n")
        finally:
            c.close()
        after_case(s, before, 0, "chunked 413")
        # exactly at the limit is fine
        body = json.dumps({"events": [{"type": "t", "data": "x"}]}).encode()
        body = body[:-3] + b" " * (2048 - len(body)) + body[-3:]
        check(len(body) == 2048, "test setup")
        r = one_exchange(s, POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" +
                         chunked(body, [700]) + b"0\r\n\r\n")
        check(r.status == 201, f"chunked body of exactly --max-body-bytes: {r!r}")


# ---- 3. pipelining ----

def test_pipelined_appends():
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(b"".join(append_req("p", i) for i in range(20)))
            positions = []
            for i in range(20):
                r = c.response(what=f"pipelined answer {i + 1}")
                check(r.status == 201, f"pipelined append {i + 1}: {r!r}")
                ans = r.json()
                check(ans["version"] == i + 1, f"answer {i + 1} out of order: {ans!r}")
                positions.append(ans["position"])
            check(positions == list(range(before[0] + 1, before[0] + 21)),
                  f"positions {positions}")
            c.send(get_req("/health"))
            r = c.response()
            check(r.status == 200, f"connection after 20 pipelined appends: {r!r}")
        finally:
            c.close()
        check([e["data"] for e in stream_events(s, "p")] == list(range(20)), "events stored")
        after_case(s, before, 20, "pipelined appends")


def test_pipelined_get_after_post():
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(append_req("g", "first") + get_req(STREAM_PATH % "g") +
                   append_req("g", "second") + get_req(STREAM_PATH % "g", close=True))
            r1, r2, r3, r4 = (c.response() for _ in range(4))
            check(r1.status == 201 and r3.status == 201, f"appends: {r1!r} {r3!r}")
            check(r2.status == 200 and [e["data"] for e in r2.json()["events"]] == ["first"],
                  f"GET pipelined after a POST must see it: {r2!r}")
            check(r4.status == 200 and
                  [e["data"] for e in r4.json()["events"]] == ["first", "second"],
                  f"second GET: {r4!r}")
            check(r4.headers.get("connection", "").lower() == "close", "Connection: close")
            check(c.wait_closed(5.0) and c.buf == b"", "closed after Connection: close")
        finally:
            c.close()
        after_case(s, before, 2, "pipelined GET after POST")


def test_pipelined_malformed_third():
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(append_req("m", 1) + append_req("m", 2) +
                   b"POST /x HTTP/1.1\nHost: localhost\n\n" +  # bare LF: malformed
                   append_req("m", 4) + append_req("m", 5))
            r1, r2 = c.response(), c.response()
            check(r1.status == 201 and r2.status == 201, f"first two: {r1!r} {r2!r}")
            r3 = c.response()
            check_error(r3, 400, "bad_request", "malformed third request")
            check(r3.headers.get("connection", "").lower() == "close", f"no close: {r3!r}")
            check(c.wait_closed(5.0), "connection open after the 400")
            check(c.buf == b"", f"answers after the 400: {c.buf[:200]!r}")
        finally:
            c.close()
        check([e["data"] for e in stream_events(s, "m")] == [1, 2],
              "requests after the malformed one must not be processed")
        after_case(s, before, 2, "pipelined malformed third")


def test_pipelined_many_small():
    """1000 pipelined GETs in one write (more than the server reads at a time)."""
    with seeded() as s:
        c = Conn(s, timeout=20)
        try:
            reqs = [get_req("/health") for _ in range(999)] + [get_req("/health", close=True)]
            t = threading.Thread(target=c.send_quietly, args=(b"".join(reqs),))
            t.start()
            for i in range(1000):
                r = c.response(20, what=f"answer {i + 1} of 1000")
                check(r.status == 200, f"answer {i + 1}: {r!r}")
            t.join()
            check(c.wait_closed(5.0) and c.buf == b"", "closed after the last")
        finally:
            c.close()
        healthy(s)


# ---- 4. oversized heads and bodies ----

def test_head_too_large():
    with seeded(["--max-header-bytes", "1024", "--max-body-bytes", "2048"]) as s:
        base = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: \r\n\r\n"
        pad = 1024 - len(base)
        exact = base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * pad)
        check(len(exact) == 1024, "test setup")
        r = one_exchange(s, exact)
        check(r.status == 200, f"head of exactly --max-header-bytes 1024: {r!r}")
        over = base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (pad + 1))
        run_cases(s, [
            ("head of 1025 bytes", over, 431, "header_too_large"),
            ("head of 1100 bytes", base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * 1100), 431,
             "header_too_large"),
            ("head of 1100 bytes, no end yet", b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 1100,
             431, "header_too_large"),
            ("many small fields over 1024 bytes",
             b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 30)
                                                    for i in range(40)) + b"\r\n",
             431, "header_too_large"),
        ])


def test_request_line_100k():
    with seeded(["--max-header-bytes", "1024"]) as s:
        before = db_state(s)
        c = Conn(s)
        try:
            req = b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
            t = threading.Thread(target=c.send_quietly, args=(req,), daemon=True)
            t.start()
            r = c.response(10.0, what="answer to a 100 KB request line")
            check_error(r, 431, "header_too_large", "100 KB request line")
            check(r.headers.get("connection", "").lower() == "close", f"no close: {r!r}")
            check(c.wait_closed(5.0), "connection open after the 431")
            t.join(5)
        finally:
            c.close()
        after_case(s, before, 0, "100 KB request line")


def test_host_header():
    """RFC 9112 3.2: HTTP/1.1 needs one Host (the answer says so); HTTP/1.0 may omit it."""
    with seeded() as s:
        r = one_exchange(s, b"GET /health HTTP/1.1\r\nAccept: */*\r\n\r\n")
        check(r.status == 400 and b"Host" in r.body, f"HTTP/1.1 without Host: {r!r}")
        r = one_exchange(s, b"GET /health HTTP/1.0\r\n\r\n")
        check(r.status == 200, f"HTTP/1.0 without Host: {r!r}")
        r = one_exchange(s, b"GET /health HTTP/1.1\r\nHost: [::1]:7070\r\n\r\n")
        check(r.status == 200, f"IPv6 literal and port: {r!r}")


def test_too_many_header_fields():
    def head(n):
        return (b"GET /health HTTP/1.1\r\nHost: localhost\r\n" +
                b"".join(b"H%02d: v\r\n" % i for i in range(n - 1)) + b"\r\n")
    with seeded() as s:
        r = one_exchange(s, head(64))
        check(r.status == 200, f"64 header fields (the limit): {r!r}")
        run_cases(s, [("65 header fields", head(65), 431, "header_too_large"),
                      ("70 header fields", head(70), 431, "header_too_large")])


def test_content_length_over_limit_not_read():
    """413 is answered from the head alone: the client never sends the body."""
    with seeded(["--max-body-bytes", "2048"]) as s:
        cases = [("CL 2049, body not sent", POST_HEAD + b"Content-Length: 2049\r\n\r\n", 413,
                  "body_too_large"),
                 ("CL 10^17, body not sent", POST_HEAD + b"Content-Length: " + b"1" + b"0" * 17 +
                  b"\r\n\r\n", 413, "body_too_large"),
                 ("CL 10^9 with Expect, body not sent", POST_HEAD +
                  b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n", 413,
                  "body_too_large")]
        run_cases(s, cases)


def test_leading_empty_lines():
    """Empty lines before a request line are ignored (RFC 9112 2.2); a flood of them (80 KB,
    far over the 16 KiB head limit) must be answered promptly -- served, or refused with 400 or
    431 and closed -- never left hanging until the idle timeout (here 30 s)."""
    with seeded(["--timeout", "30"]) as s:
        for n in (1, 10):
            r = one_exchange(s, b"\r\n" * n + get_req("/health", close=True))
            check(r.status == 200, f"{n} empty lines before the request: {r!r}")
        before = db_state(s)
        c = Conn(s)
        try:
            t = threading.Thread(target=c.send_quietly,
                                 args=(b"\r\n" * 40000 + get_req("/health", close=True),),
                                 daemon=True)
            t.start()
            r = c.response(5.0, what="answer to a request after 80 KB of empty lines")
            if r.status != 200:
                check(r.status in (400, 431), f"80 KB of empty lines: {r!r}")
                check_error(r, r.status, {400: "bad_request", 431: "header_too_large"}[r.status],
                            "80 KB of empty lines")
            check(c.wait_closed(5.0), "connection open after the answer")
        finally:
            c.close()
        after_case(s, before, 0, "80 KB of empty lines")


# ---- 5. slow and idle clients (--timeout 2) ----

def test_slow_head_idle_and_half_head_timeouts():
    with seeded(["--timeout", "2"]) as s:
        before = db_state(s)
        # an idle keep-alive connection (after one request) and one with half a head
        idle = Conn(s)
        idle.send(get_req("/health"))
        check(idle.response().status == 200, "first request on the idle connection")
        t_idle = time.monotonic()
        half = Conn(s)
        half.send(b"GET /health HTTP/1.1\r\nHo")
        t_half = time.monotonic()
        results = {}

        def watch(name, c, t0):
            closed = c.wait_closed(6.0)
            results[name] = (closed, time.monotonic() - t0, c.buf)

        watchers = [threading.Thread(target=watch, args=("idle", idle, t_idle)),
                    threading.Thread(target=watch, args=("half", half, t_half))]
        for w in watchers:
            w.start()
        # a head sent one byte every 100 ms (3.3 s in all: the timeout is an idle timeout)
        slow = Conn(s)
        try:
            for b in b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n":
                slow.send(bytes([b]))
                time.sleep(0.1)
            r = slow.response(5.0, what="answer to a head sent byte by byte")
            check(r.status == 200, f"byte-by-byte head: {r!r}")
        finally:
            slow.close()
        for w in watchers:
            w.join()
        idle.close()
        half.close()
        closed, took, extra = results["idle"]
        check(closed, "idle keep-alive connection not closed within 6 s of --timeout 2")
        check(took >= 1.5, f"idle connection closed after {took:.2f} s, before --timeout 2")
        check(extra == b"", f"bytes sent on the idle connection: {extra[:200]!r}")
        closed, took, extra = results["half"]
        check(closed, "connection with half a head not closed within 6 s of --timeout 2")
        check(took >= 1.5, f"half-head connection closed after {took:.2f} s, before the timeout")
        check(extra == b"" or extra.startswith(b"HTTP/1.1 408 "),
              f"answer to a timed-out half head: {extra[:200]!r}")
        after_case(s, before, 0, "slow/idle clients")


def test_many_idle_connections():
    """200 held connections (idle, or with half a head) do not delay other clients."""
    with seeded() as s:
        before = db_state(s)
        held = []
        try:
            for i in range(200):
                c = Conn(s)
                if i % 2:
                    c.send(b"POST /v1/databases/default/streams/s/events HTTP/1.1\r\nHost:")
                held.append(c)
            for i in range(10):
                t0 = time.monotonic()
                r = one_exchange(s, get_req("/health", close=True), timeout=2.0)
                took = time.monotonic() - t0
                check(r.status == 200, f"health with 200 idle connections: {r!r}")
                check(took < 2.0, f"health took {took:.2f} s with 200 idle connections")
            r = one_exchange(s, append_req("busy", 1, close=True), timeout=5.0)
            check(r.status == 201, f"append with 200 idle connections: {r!r}")
            for c in held[:5]:  # still open (default --timeout 60)
                c.sock.setblocking(False)
                try:
                    d = c.sock.recv(1)
                    check(False, f"held connection got {d!r}")
                except BlockingIOError:
                    pass
        finally:
            for c in held:
                c.close()
        after_case(s, before, 1, "200 idle connections")


def test_slow_reader_pipelined():
    """50 pipelined GETs of a large stream read, nothing read for 1 s, then everything."""
    with seeded(["--timeout", "2"]) as s:
        for k in range(2):
            body = json.dumps({"events": [{"type": "t", "data": {"i": k * 50 + i,
                                                                 "pad": "p" * 2000}}
                                          for i in range(50)]}).encode()
            r = one_exchange(s, POST_HEAD.replace(b"/s/", b"/big/") +
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            check(r.status == 201, f"seeding the big stream: {r!r}")
        before = db_state(s)
        c = Conn(s, timeout=20)
        try:
            path = STREAM_PATH % "big" + "?limit=1000"
            c.send(b"".join(get_req(path) for _ in range(49)) + get_req(path, close=True))
            time.sleep(1.0)
            first = None
            for i in range(50):
                r = c.response(20, what=f"answer {i + 1} of 50")
                check(r.status == 200, f"answer {i + 1}: {r!r}")
                if first is None:
                    first = r.body
                    evs = r.json()["events"]
                    check([e["data"]["i"] for e in evs] == list(range(100)), "events")
                check(r.body == first, f"answer {i + 1} differs from the first")
            check(c.wait_closed(5.0) and c.buf == b"", "closed after the last answer")
        finally:
            c.close()
        after_case(s, before, 0, "slow reader")


def test_slow_reader_making_progress_not_timed_out():
    """--timeout 2 is an idle timeout: a client that keeps reading a large answer (about 4 s
    at a steady pace) must get all of it; the connection is never idle for 2 s."""
    with seeded(["--timeout", "2"]) as s:
        data = "d" * 16000
        for k in range(4):
            body = json.dumps({"events": [{"type": "t", "data": data}] * 250}).encode()
            r = one_exchange(s, POST_HEAD.replace(b"/s/", b"/huge/") +
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            check(r.status == 201, f"seeding: {r!r}")
        c = Conn(s, timeout=30, rcvbuf=65536)
        try:
            c.send(get_req(STREAM_PATH % "huge" + "?limit=1000"))
            got = 0
            t0 = time.monotonic()
            deadline = t0 + 30
            head_len = want = None
            while True:
                if head_len is None and b"\r\n\r\n" in c.buf:
                    head_len = c.buf.index(b"\r\n\r\n") + 4
                    m = re.search(rb"(?im)^content-length: *(\d+)", c.buf[:head_len])
                    want = int(m.group(1))
                if want is not None and len(c.buf) >= head_len + want:
                    break
                try:
                    if not c._recv(deadline):
                        break
                except socket.timeout:
                    break
                time.sleep(0.02)  # about 3 MB/s
            took = time.monotonic() - t0
            got = len(c.buf) - (head_len or 0)
            check(want is not None and got >= want,
                  f"answer of {want} bytes cut off after {got} bytes and {took:.1f} s "
                  f"({'closed by the server' if c.eof else 'stalled'}) although the client "
                  f"kept reading all along")
        finally:
            c.close()
        healthy(s)


# ---- 6. connection limit ----

def test_connection_limit():
    with seeded(["--max-connections", "20"]) as s:
        before = db_state(s)
        held = []
        try:
            for i in range(20):
                c = Conn(s)
                c.send(get_req("/health"))
                check(c.response().status == 200, f"connection {i + 1} of 20")
                held.append(c)
            extra = Conn(s)
            try:
                extra.send_quietly(get_req("/health"))
                closed = extra.wait_closed(5.0)
                check(closed, "21st connection neither refused nor closed within 5 s")
                if extra.buf:
                    r, rest = parse_one(extra.buf)
                    check(r is not None,
                          f"21st connection: incomplete answer {extra.buf!r} (Content-Length "
                          f"does not match the body that was sent before the close)")
                    check_error(r, 503, "too_many_connections", "21st connection")
                    check(rest == b"", f"bytes after the 503: {rest!r}")
            finally:
                extra.close()
            for c in held[:5]:
                c.close()
            held = held[5:]

            def works():
                try:
                    return one_exchange(s, get_req("/health", close=True), 2.0).status == 200
                except (AssertionError, OSError):
                    return False
            deadline = time.monotonic() + 5
            while not works():
                check(time.monotonic() < deadline, "no new connection accepted 5 s after "
                                                   "closing 5 of 20")
                time.sleep(0.1)
            more = []
            try:
                for i in range(4):  # 15 held + 4 + the check above (closed): under the limit
                    c = Conn(s)
                    c.send(get_req("/health"))
                    check(c.response().status == 200, f"new connection {i + 1} after closing")
                    more.append(c)
            finally:
                for c in more:
                    c.close()
            for c in held:  # the held ones still work
                c.send(get_req("/health"))
                check(c.response().status == 200, "held connection")
        finally:
            for c in held:
                c.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                healthy(s, 2.0)
                break
            except (AssertionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        after_case(s, before, 0, "connection limit")


# ---- 7. Expect: 100-continue ----

def test_expect_continue():
    with seeded() as s:
        before = db_state(s)
        body = json.dumps({"events": [{"type": "t", "data": "after-continue"}]}).encode()
        c = Conn(s)
        try:
            c.send(POST_HEAD.replace(b"/s/", b"/ex/") + b"Content-Length: %d\r\n"
                   b"Expect: 100-continue\r\n\r\n" % len(body))
            r = c.response(5.0, what="100 Continue")
            check(r.status == 100 and r.raw_head == b"HTTP/1.1 100 Continue",
                  f"want HTTP/1.1 100 Continue before the body, got {r!r}")
            check(c.buf == b"", f"bytes after 100 Continue before the body: {c.buf!r}")
            c.send(body)
            r = c.response()
            check(r.status == 201, f"final answer after 100 Continue: {r!r}")
            # chunked with Expect, on the same connection
            c.send(POST_HEAD.replace(b"/s/", b"/ex/") + b"Transfer-Encoding: chunked\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            r = c.response(5.0, what="100 Continue (chunked)")
            check(r.status == 100, f"chunked with Expect: {r!r}")
            c.send(chunked(body, [9]) + b"0\r\n\r\n")
            r = c.response()
            check(r.status == 201, f"chunked after 100 Continue: {r!r}")
        finally:
            c.close()
        check([e["data"] for e in stream_events(s, "ex")] == ["after-continue"] * 2,
              "events after 100 Continue")
        after_case(s, before, 2, "Expect: 100-continue")


def test_expect_continue_ignored_for_http10():
    """RFC 9110 10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0
    request (an HTTP/1.0 client cannot parse interim answers)."""
    with seeded() as s:
        before = db_state(s)
        body = json.dumps({"events": [{"type": "t", "data": "h10"}]}).encode()
        c = Conn(s)
        try:
            c.send(b"POST " + (STREAM_PATH % "ex10").encode() + b" HTTP/1.0\r\nHost: localhost\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                   b"Expect: 100-continue\r\n\r\n" % len(body) + body)
            r = c.response()
            check(r.status == 201, f"HTTP/1.0 POST with Expect: 100-continue: first answer "
                                   f"{r!r}, want the final 201 and no interim 100")
            check(c.wait_closed(5.0) and c.buf == b"", f"after the answer: {c.buf[:100]!r}")
        finally:
            c.close()
        after_case(s, before, 1, "HTTP/1.0 Expect")


# ---- 8. HEAD and HTTP/1.0 ----

def test_head_request_and_http10():
    with seeded() as s:
        before = db_state(s)
        c = Conn(s)
        try:
            c.send(get_req("/health", method=b"HEAD") + get_req("/health", close=True))
            h = c.response(head_only=True, what="answer to HEAD")
            check(h.status == 200, f"HEAD /health: {h!r}")
            check(int(h.headers.get("content-length", "0")) > 0,
                  f"HEAD answer without Content-Length: {h.raw_head!r}")
            check(c.buf.startswith(b"HTTP/1.1 ") or c.buf == b"",
                  f"HEAD answer carried a body: {c.buf[:100]!r}")
            g = c.response(what="GET after HEAD")
            check(g.status == 200, f"GET after HEAD: {g!r}")
            check(int(h.headers["content-length"]) == len(g.body),
                  f"HEAD Content-Length {h.headers['content-length']} vs GET body {len(g.body)}")
            check(c.wait_closed(5.0) and c.buf == b"", "closed after Connection: close")
        finally:
            c.close()

        c = Conn(s)
        try:
            c.send(get_req("/health", version=b"HTTP/1.0"))
            r = c.response()
            check(r.status == 200, f"HTTP/1.0 GET: {r!r}")
            check(c.wait_closed(5.0), "HTTP/1.0 connection without keep-alive left open")
            check(c.buf == b"", f"bytes after the HTTP/1.0 answer: {c.buf!r}")
        finally:
            c.close()

        c = Conn(s)
        try:
            c.send(get_req("/health", version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
            check(c.response().status == 200, "HTTP/1.0 keep-alive, first")
            c.send(get_req("/health", version=b"HTTP/1.0"))
            check(c.response().status == 200, "HTTP/1.0 keep-alive, second")
            check(c.wait_closed(5.0), "HTTP/1.0 connection left open after a request "
                                      "without keep-alive")
        finally:
            c.close()
        after_case(s, before, 0, "HEAD and HTTP/1.0")


# ---- 9. half-closed and abrupt clients ----

def test_abrupt_clients():
    with seeded() as s:
        before = db_state(s)
        # a head promising 100 bytes, 10 sent, then closed
        for _ in range(3):
            c = Conn(s)
            c.send(POST_HEAD + b"Content-Length: 100\r\n\r\n" + BODY[:10])
            c.close()
        # a chunked body cut off mid-chunk
        c = Conn(s)
        c.send(POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY, [20])[:40])
        c.close()
        time.sleep(0.3)
        after_case(s, before, 0, "truncated bodies")

        # a full append, then closed without reading: written or not, never half
        before = db_state(s)
        c = Conn(s)
        c.send(append_req("gone", "x"))
        c.close()
        time.sleep(0.5)
        healthy(s)
        after = db_state(s)
        check(after[0] in (before[0], before[0] + 1), f"head {before[0]} -> {after[0]}")
        check(len(stream_events(s, "gone")) == after[0] - before[0], "stream vs head")

        # 200 connections reset at once (SO_LINGER 0), some mid-head or mid-body
        before = db_state(s)
        for i in range(200):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if i % 3 == 1:
                c.sendall(b"GET /health HTTP/1.1\r\nHo")
            elif i % 3 == 2:
                c.sendall(POST_HEAD + b"Content-Length: 100\r\n\r\n" + BODY[:10])
            c.close()
        time.sleep(0.3)
        after_case(s, before, 0, "200 reset connections")


def padded_append(stream, total):
    """An append request of exactly total bytes (head + body)."""
    req = append_req(stream, "")
    pad = total - len(req)
    req = append_req(stream, "p" * pad)
    while len(req) > total:  # the Content-Length digits may have grown
        pad -= len(req) - total
        req = append_req(stream, "p" * pad)
    check(len(req) == total, f"test setup: {len(req)} != {total}")
    return req


def test_half_close_after_request():
    """A client may half-close (shutdown SHUT_WR) right after sending its request(s): they are
    complete and must still be answered (RFC 9112 9.6: the server closes once it has answered
    what it received). Requests of several sizes (around read-buffer powers of two), and
    pipelined ones; each request and its FIN leave together (TCP_CORK)."""
    with seeded() as s:
        before = db_state(s)
        cases = [("GET /health", get_req("/health"), [200]),
                 ("append", append_req("hc", "half"), [201]),
                 ("3 pipelined", get_req("/health") + append_req("hc", "p1") +
                  append_req("hc", "p2"), [200, 201, 201])]
        for total in (4095, 4096, 16383, 16384, 32767, 32768, 65535, 65536):
            cases.append((f"append of exactly {total} bytes", padded_append("hc", total), [201]))
        wrong = []
        for label, req, statuses in cases:
            c = Conn(s)
            try:
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                c.send(req)
                c.sock.shutdown(socket.SHUT_WR)
                try:
                    for k, status in enumerate(statuses):
                        r = c.response(5.0, what=f"answer {k + 1} to a half-closed {label}")
                        if r.status != status:
                            wrong.append(f"{label}: {r!r}")
                    if not c.wait_closed(5.0):
                        wrong.append(f"{label}: connection not closed after the answers")
                except AssertionError as e:
                    wrong.append(f"{label} then SHUT_WR: {e}")
            finally:
                c.close()
        healthy(s)
        after = db_state(s)
        want = 1 + 2 + 8
        check(not wrong, f"{len(wrong)} of {len(cases)} half-closed clients not answered:\n  "
              + "\n  ".join(wrong) + f"\n(head {before[0]} -> {after[0]}, want +{want})")
        check(after[0] == before[0] + want, f"half-closed appends: head {before[0]} -> "
                                            f"{after[0]}, want +{want}")
