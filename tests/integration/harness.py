"""Black-box harness for the Annals server: starts the real binary on a fresh data directory,
talks HTTP to it (http.client or raw sockets) and stops, kills or restarts it.

Usage in a test:

    with Server(extra=["--max-body-bytes", "2048"]) as s:
        st, hdrs, body = s.request("GET", "/health")
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_TESTDATA = os.path.join(os.path.dirname(REPO), "shared", "testdata")

_LISTEN_RE = re.compile(r"annals \S+ listening on (?:127\.0\.0\.1|\[::1\]):(\d+)")


def binary():
    return os.environ.get("ANNALS_BIN") or os.path.join(REPO, "build", "annals")


def _popen(args, **kw):
    """Popen that waits out a binary being rebuilt (missing, or busy/unreadable for a moment)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return subprocess.Popen(args, **kw)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_cli(args, env=None, timeout=60):
    """Runs the binary with args; returns (exit code, stdout + stderr as text)."""
    p = _popen([binary()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
               env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout} s")
    return p.returncode, out.decode("utf-8", "replace")


def split_head(buf):
    """(status, {lower-case header: value}, the bytes after the head) of the response head at
    the start of buf, which must hold it whole (up to its blank line)."""
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip()
               for ln in lines[1:] if ":" in ln}
    return int(lines[0].split()[1]), headers, rest


def cli_keys(data_dir, *scopes):
    """Creates one API key per scope with `annals keys create` on a stopped data directory;
    returns {scope: key}."""
    os.makedirs(data_dir, exist_ok=True)
    keys = {}
    for scope in scopes:
        rc, out = run_cli(["keys", "create", "--scope", scope, "--data", data_dir])
        if rc != 0:
            raise AssertionError(f"annals keys create --scope {scope}: {out}")
        keys[scope] = next(w for w in out.split() if w.startswith("ak_"))
    return keys


def quote(segment):
    """Percent-encodes one path segment (also '/')."""
    return urllib.parse.quote(segment, safe="")


class ServerError(Exception):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. missing test data); run.py prints SKIP."""


class Server:
    """One server process on its own data directory (a fresh temp dir unless data_dir given)."""

    def __init__(self, extra=None, data_dir=None, env=None, start=True,
                 listen="127.0.0.1:0"):
        self.extra = list(extra or [])
        self.listen = listen  # None: no --listen flag (e.g. to test ANNALS_LISTEN)
        self.env = env
        self.own_dir = data_dir is None
        self.tmp = tempfile.mkdtemp(prefix="annals-it-") if self.own_dir else None
        self.data = data_dir or os.path.join(self.tmp, "data")
        self.proc = None
        self.port = None
        self.log_lines = []
        self._lock = threading.Lock()
        self._conn = None
        if start:
            self.start()

    # ---- process control ----

    def start(self, timeout=10.0, extra=None):
        if extra is not None:
            self.extra = list(extra)
        self.port = None
        self.log_lines = []
        found = threading.Event()
        args = [binary(), "serve", "--data", self.data]
        if self.listen is not None:
            args += ["--listen", self.listen]
        args += self.extra
        self.proc = _popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=self.env)
        proc = self.proc

        def reader():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lock:
                    self.log_lines.append(line)
                if self.port is None:
                    m = _LISTEN_RE.search(line)
                    if m:
                        self.port = int(m.group(1))
                        found.set()
            found.set()

        threading.Thread(target=reader, daemon=True).start()
        if not found.wait(timeout) or self.port is None:
            rc = proc.poll()
            if rc is None:
                proc.kill()
                proc.wait()
            raise ServerError(f"server did not report its port (exit {rc}); log:\n"
                              + "\n".join(self.log_lines[-20:]))
        return self

    def try_start(self, timeout=10.0):
        """Starts; returns True if it came up, False if it exited or never listened."""
        try:
            self.start(timeout)
            return True
        except ServerError:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit code."""
        self.close_conn()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise ServerError("server did not stop within %.0f s of SIGTERM" % timeout)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self):
        self.close_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, extra=None):
        self.stop()
        return self.start(extra=extra)

    def cleanup(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.proc = None
            if self.own_dir and self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def log(self):
        with self._lock:
            return "\n".join(self.log_lines)

    # ---- HTTP ----

    def connect(self, timeout=30.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def close_conn(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, body=None, headers=None, conn=None, timeout=30.0):
        """Sends one request; returns (status, headers dict with lower-case names, body).
        body: dict/list (sent as JSON with Content-Type application/json), str or bytes (sent
        as is). The answer body is parsed JSON when it parses, else raw bytes."""
        hdrs = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if headers:
            hdrs.update(headers)
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        own = conn is None
        if own:
            conn = self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, rh, parse_body(raw)
        finally:
            if own:
                conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)

    # ---- raw sockets ----

    def raw(self, data, timeout=10.0, read_all=True):
        """Sends raw bytes on a new socket, returns every byte received until the server closes
        (or, when read_all is False, until one complete response has arrived)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            return recv_response(s, read_all)
        finally:
            s.close()

    # ---- API helpers ----

    def append(self, stream, events, expected=None, db="default", conn=None):
        body = {"events": events}
        if expected is not None:
            body["expectedVersion"] = expected
        return self.post(f"/v1/databases/{db}/streams/{quote(stream)}/events", body, conn=conn)

    def db_info(self, db="default"):
        st, _, body = self.get(f"/v1/databases/{db}")
        if st != 200:
            raise AssertionError(f"GET /v1/databases/{db}: {st} {body!r}")
        return body

    def head(self, db="default"):
        return self.db_info(db)["head"]

    def read_log(self, db="default", limit=1000):
        """Every event of the log, forward, following next."""
        out = []
        frm = 1
        while True:
            st, _, body = self.get(f"/v1/databases/{db}/events?from={frm}&limit={limit}")
            if st != 200:
                raise AssertionError(f"log read: {st} {body!r}")
            out.extend(body["events"])
            if body["next"] is None:
                return out
            frm = body["next"]

    def read_stream(self, stream, db="default", limit=1000):
        out = []
        frm = 1
        while True:
            st, _, body = self.get(f"/v1/databases/{db}/streams/{quote(stream)}/events"
                                   f"?from={frm}&limit={limit}")
            if st != 200:
                raise AssertionError(f"stream read: {st} {body!r}")
            out.extend(body["events"])
            if body["next"] is None:
                return out
            frm = body["next"]


def parse_body(raw):
    if not raw:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def recv_response(s, read_all=True):
    """Reads from a socket: everything until EOF, or one response (head + Content-Length)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if not read_all and b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if m and len(rest) >= int(m.group(1)):
                break
    return data


def split_raw(data):
    """Splits a raw response into (status, headers dict lower-case, body bytes)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def expect_error(resp, status, code=None, field=None):
    """Asserts an error answer: status, error.code and (optionally) error.field."""
    st, _, body = resp
    check(st == status, f"expected {status} {code}, got {st} {body!r}")
    if code is not None:
        check(isinstance(body, dict) and isinstance(body.get("error"), dict),
              f"no error object in {body!r}")
        check(body["error"].get("code") == code,
              f"expected error.code {code}, got {body['error'].get('code')!r}")
        check(isinstance(body["error"].get("message"), str), f"no error.message in {body!r}")
    if field is not None:
        check(body["error"].get("field") == field,
              f"expected error.field {field!r}, got {body['error'].get('field')!r}")
    return body


def wait_until(fn, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def dialect_port(server, name, timeout=10):
    """The port a dialect's --dialect-listen listener reported in the server's log."""
    pat = re.compile(rf"{name} dialect listening on 127\.0\.0\.1:(\d+)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pat.search(server.log())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no {name} listener in the log:\n{server.log()[-2000:]}")
