"""Live subscriptions over Server-Sent Events (docs/api.md, "Live subscriptions"):
GET /v1/databases/{db}/events/live and .../streams/{stream}/events/live, with the query
filters, a start position (`from`, `from=latest`, `Last-Event-ID`), history first and live
events after it with no gap and no repeat at the seam, heartbeats, a bounded buffer for slow
readers and a disconnect once one is too far behind, the admin list/close of connections, and
the end of a stream when its database is deleted or the server stops."""
import os
import socket
import threading
import time

from harness import Server, check, cli_keys, split_head, expect_error, quote, run_cli
from harness import binary as harness_binary

DB = "default"


class SSE:
    """A raw-socket SSE client: reads the head, then messages one at a time."""

    def __init__(self, port, path, headers=None, timeout=15.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        hdrs = {"Host": "localhost", "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        self.eof = False
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        self.status, self.headers, self.buf = split_head(self.buf)
        self.seen = []  # every message, in order

    def _recv(self):
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            raise EOFError("stream closed")
        self.buf += d

    def body(self):
        """The rest of a non-stream answer (an error)."""
        n = int(self.headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._recv()
        import json
        return json.loads(self.buf[:n])

    def message(self):
        """The next message: {"id", "event", "data", "comment", "retry"} (absent = None)."""
        while b"\n\n" not in self.buf:
            self._recv()
        block, self.buf = self.buf.split(b"\n\n", 1)
        m = {"id": None, "event": None, "data": None, "comment": None, "retry": None}
        for ln in block.decode("utf-8").split("\n"):
            if ln.startswith(":"):
                m["comment"] = ln[1:].strip()
            else:
                k, _, v = ln.partition(":")
                m[k] = v[1:] if v.startswith(" ") else v
        self.seen.append(m)
        return m

    def events(self, n):
        """The next n events (messages with data and no event name), as parsed JSON."""
        import json
        out = []
        while len(out) < n:
            m = self.message()
            if m["data"] is not None and m["event"] is None:
                ev = json.loads(m["data"])
                check(m["id"] == str(ev["position"]), f"id {m['id']} vs {ev['position']}")
                out.append(ev)
        return out

    def until(self, event):
        """Reads messages until one named event; returns it."""
        while True:
            m = self.message()
            if m["event"] == event:
                return m

    def close(self):
        self.sock.close()


def append(s, stream, n, type_="T", tags=None, db=DB):
    evs = [{"type": type_, "data": {"i": i}} for i in range(n)]
    if tags:
        for e in evs:
            e["tags"] = tags
    st, _, body = s.append(stream, evs, db=db)
    check(st == 201, f"append {st} {body}")
    return body


def live_path(query="", db=DB, stream=None):
    base = f"/v1/databases/{db}" + (f"/streams/{quote(stream)}" if stream else "")
    return base + "/events/live" + (f"?{query}" if query else "")


# ---------------------------------------------------------------- history and live


def test_history_then_live_with_no_gap_and_no_repeat_at_the_seam():
    with Server() as s:
        for i in range(20):
            append(s, f"h-{i}", 10)  # 200 events of history
        sub = SSE(s.port, live_path())
        check(sub.status == 200, f"status {sub.status}")
        check(sub.headers.get("content-type") == "text/event-stream", f"{sub.headers}")
        check(sub.headers.get("cache-control") == "no-cache", f"{sub.headers}")
        stop = threading.Event()
        written = []

        def writer(k):
            for i in range(30):
                body = append(s, f"w{k}-{i}", 2)
                written.extend(e["position"] for e in body["events"])
            stop.set()

        ts = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()  # appends race the catch-up
        got = sub.events(200 + 180)
        for t in ts:
            t.join()
        positions = [e["position"] for e in got]
        check(positions == list(range(1, 381)), f"gap or repeat: {positions[:5]}..")
        check(sorted(written) == list(range(201, 381)), "every acknowledged event came")
        caught = [m for m in sub.seen if m["event"] == "caught_up"]
        check(len(caught) == 1, f"caught_up {len(caught)} times")
        check(sub.seen[0]["retry"] == "2000", f"first message {sub.seen[0]}")
        # later appends keep coming, in order
        append(s, "late", 3)
        check([e["position"] for e in sub.events(3)] == [381, 382, 383], "live after the seam")
        sub.close()


def test_filters_and_the_stream_endpoint():
    with Server() as s:
        append(s, "order-1", 2, "OrderPlaced", ["customer:1"])
        append(s, "order-2", 1, "OrderShipped", ["customer:2"])
        append(s, "user-1", 1, "UserJoined")
        by_type = SSE(s.port, live_path("types=Order*"))
        by_stream = SSE(s.port, live_path(stream="order-2"))
        by_cat = SSE(s.port, live_path("category=user"))
        by_tag = SSE(s.port, live_path("tags=customer:1"))
        check([e["position"] for e in by_type.events(3)] == [1, 2, 3], "types")
        check([e["stream"] for e in by_stream.events(1)] == ["order-2"], "stream endpoint")
        check([e["type"] for e in by_cat.events(1)] == ["UserJoined"], "category")
        check([e["position"] for e in by_tag.events(2)] == [1, 2], "tags")
        append(s, "order-2", 1, "OrderPlaced")
        append(s, "user-2", 1, "UserJoined")
        check(by_type.events(1)[0]["position"] == 5, "types live")
        check(by_stream.events(1)[0]["position"] == 5, "stream live")
        check(by_cat.events(1)[0]["position"] == 6, "category live")
        append(s, "order-9", 1, "OrderPlaced", ["customer:1"])
        check(by_tag.events(1)[0]["position"] == 7, "tags live (6 had no tag)")
        for c in (by_type, by_stream, by_cat, by_tag):
            c.close()


def test_start_positions_and_reconnect_with_last_event_id():
    with Server() as s:
        append(s, "a", 10)
        latest = SSE(s.port, live_path("from=latest"))
        latest.until("caught_up")
        mid = SSE(s.port, live_path("from=4"))
        check(mid.events(1)[0]["position"] == 4, "from=4")
        first = SSE(s.port, live_path())
        got = first.events(6)
        first.close()  # a dropped connection ...
        again = SSE(s.port, live_path("from=1"), {"Last-Event-ID": str(got[-1]["position"])})
        check([e["position"] for e in again.events(4)] == [7, 8, 9, 10],
              "Last-Event-ID continues after it (and wins over from)")
        append(s, "a", 1)
        check(latest.events(1)[0]["position"] == 11, "latest: only new events")
        check(again.events(1)[0]["position"] == 11, "reconnected one is live")
        for c in (latest, mid, again):
            c.close()


def test_reconnect_after_a_restart_resumes_without_gaps():
    with Server() as s:
        append(s, "r", 5)
        sub = SSE(s.port, live_path())
        got = sub.events(5)
        s.restart()  # the subscription ends with the server
        try:
            while True:
                sub.message()
        except (EOFError, OSError):
            pass
        append(s, "r", 3)
        sub = SSE(s.port, live_path(), {"Last-Event-ID": str(got[-1]["position"])})
        check([e["position"] for e in sub.events(3)] == [6, 7, 8], "resumed after restart")
        sub.close()


def test_heartbeats_keep_an_idle_stream_alive():
    with Server(extra=["--live-heartbeat", "1"]) as s:
        sub = SSE(s.port, live_path())
        sub.until("caught_up")
        m = sub.message()
        check(m["comment"] == "heartbeat", f"expected a heartbeat, got {m}")
        sub.close()


# ---------------------------------------------------------------- slow readers


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("RssAnon:"):
                return int(ln.split()[1])
    return 0


def test_a_slow_reader_is_bounded_then_disconnected_with_a_reason():
    with Server(extra=["--live-max-lag", "2000"]) as s:
        sub = SSE(s.port, live_path(), rcvbuf=4096)
        sub.until("caught_up")
        before = rss_anon_kib(s.proc.pid)
        big = "x" * 2000
        # 100 x 100 events x ~2.3 KiB = ~23 MiB the reader does not read: more than the
        # kernel's socket buffers hold, so the server's side fills up and the lag grows
        for i in range(100):
            evs = [{"type": "T", "data": {"pad": big, "i": i}} for _ in range(100)]
            st, _, _ = s.post(f"/v1/databases/{DB}/streams/slow/events", {"events": evs})
            check(st == 201, f"append {st}")
        time.sleep(2.5)  # a tick or two: the lag check runs at least once a second
        conns = s.get("/v1/connections")[2]["connections"]
        check(conns and conns[0]["buffered"] <= 256 * 1024 + 4096,
              f"output queued for one stalled reader: {conns}")
        if "san" not in os.path.basename(os.path.dirname(harness_binary())):
            # (sanitizers keep freed memory). Well under the 23 MiB not read; the allocator
            # keeps some freed request memory cached until its periodic release, more so
            # when the machine is busy (6.2 MiB seen under the full suite), hence the margin
            grew = rss_anon_kib(s.proc.pid) - before
            check(grew < 10 * 1024, f"server memory grew {grew} KiB for one stalled reader")
        # now read: the events that were buffered, then the reason, then the end
        err = sub.until("error")
        check('"too_far_behind"' in err["data"], f"{err}")
        try:
            while True:
                sub.message()
        except EOFError:
            pass
        check(sub.eof, "disconnected")
        # a fresh subscriber catches up from storage at its own pace
        fresh = SSE(s.port, live_path())
        check(len(fresh.events(10000)) == 10000, "catch-up")
        fresh.close()


# ---------------------------------------------------------------- administration and endings


def test_connections_are_listed_and_closed_by_an_admin():
    with Server() as s:
        sub = SSE(s.port, live_path("types=T"))
        sub.until("caught_up")
        st, _, body = s.get("/v1/connections")
        check(st == 200 and len(body["connections"]) == 1, f"{st} {body}")
        st, _, text = s.get("/metrics")
        text = text.decode() if isinstance(text, bytes) else str(text)
        check("\nannals_subscribers 1\n" in text, "the subscribers gauge counts it")
        check(s.get("/health/detailed")[2]["subscribers"] == 1, "health/detailed counts it")
        c = body["connections"][0]
        check(c["database"] == DB and c["kind"] == "sse" and c["path"].endswith("/events/live"),
              f"{c}")
        expect_error(s.request("DELETE", "/v1/connections/999"), 404, "connection_not_found")
        st, _, _ = s.request("DELETE", f"/v1/connections/{c['id']}")
        check(st == 204, f"close {st}")
        err = sub.until("error")
        check('"closed"' in err["data"], f"{err}")
        try:
            sub.message()
            check(False, "still open")
        except EOFError:
            pass

        def listed():
            return s.get("/v1/connections")[2]["connections"]
        deadline = time.monotonic() + 5
        while listed() and time.monotonic() < deadline:
            time.sleep(0.05)
        check(listed() == [], "closed connections leave the list")


def test_deleting_the_database_ends_its_streams():
    with Server() as s:
        check(s.post("/v1/databases", {"name": "temp"})[0] == 201, "create")
        append(s, "x", 2, db="temp")
        sub = SSE(s.port, live_path(db="temp"))
        sub.events(2)
        st, _, _ = s.request("DELETE", "/v1/databases/temp")
        check(st == 204, f"delete {st}")
        err = sub.until("error")
        check('"database_deleted"' in err["data"], f"{err}")
        check(s.get("/v1/databases/temp")[0] == 404, "gone")
        check(not os.path.exists(os.path.join(s.data, "dbs", "temp")), "files removed")
        check(s.post("/v1/databases", {"name": "temp"})[0] == 201, "the name is free again")


def test_the_server_stops_cleanly_with_open_streams():
    with Server() as s:
        subs = [SSE(s.port, live_path()) for _ in range(5)]
        for c in subs:
            c.until("caught_up")
        t0 = time.monotonic()
        rc = s.stop()
        check(rc == 0, f"exit {rc}")
        check(time.monotonic() - t0 < 10, "stop did not wait for the streams")
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0, out)


def test_many_subscribers_each_get_every_event_in_order():
    with Server() as s:
        subs = [SSE(s.port, live_path()) for _ in range(40)]
        for c in subs:
            c.until("caught_up")
        for i in range(25):
            append(s, f"m-{i % 5}", 4)
        for c in subs:
            check([e["position"] for e in c.events(100)] == list(range(1, 101)), "fan-out")
            c.close()


# ---------------------------------------------------------------- bad requests and keys


def test_bad_subscriptions_are_refused():
    with Server() as s:
        for q, field in [("direction=backward", "direction"), ("limit=5", "limit"),
                         ("to=9", "to"), ("asOf=3", "asOf"), ("from=0", "from"),
                         ("from=abc", "from"), ("types=a*b", "types")]:
            c = SSE(s.port, live_path(q))
            check(c.status == 400, f"{q}: {c.status}")
            check(c.body()["error"]["field"] == field, f"{q}: field")
            c.close()
        c = SSE(s.port, live_path(), {"Last-Event-ID": "x"})
        check(c.status == 400 and c.body()["error"]["field"] == "Last-Event-ID", "Last-Event-ID")
        c = SSE(s.port, live_path(db="nope"))
        check(c.status == 404, f"unknown db {c.status}")


def test_keys_in_a_header_or_the_query():
    s = Server(start=False)  # keys are made with the CLI before the server starts
    try:
        keys = cli_keys(s.data, "admin", "read")
        s.start()
        c = SSE(s.port, live_path())
        check(c.status == 401, f"no key: {c.status}")
        c = SSE(s.port, live_path(), {"Authorization": f"Bearer {keys['read']}"})
        check(c.status == 200, f"header key: {c.status}")
        c.until("caught_up")
        c2 = SSE(s.port, live_path(f"api_key={keys['read']}"))
        check(c2.status == 200, f"query key: {c2.status}")
        c2.until("caught_up")
        st, _, _ = s.get(f"/v1/databases/{DB}/events?api_key={keys['read']}")
        check(st == 401, "api_key in the query is only for subscriptions")
        st, _, _ = s.request("GET", "/v1/connections",
                             headers={"Authorization": f"Bearer {keys['read']}"})
        check(st == 403, f"listing needs admin: {st}")
        st, _, body = s.request("GET", "/v1/connections",
                                headers={"Authorization": f"Bearer {keys['admin']}"})
        check(st == 200 and len(body["connections"]) == 2, f"{st} {body}")
        c.close()
        c2.close()
    finally:
        s.cleanup()


def test_wakes_racing_deferred_answers_on_one_loop():
    """Regression: a stream woken by a commit while the I/O loop was running its completion
    queue was relinked onto the next queue mid-walk, and the walk then answered a request that
    had no answer yet (the server crashed). Many subscribers plus keep-alive appends on the
    same loops make that interleaving common."""
    with Server(extra=["--threads", "1"]) as s:
        subs = [SSE(s.port, live_path("from=latest")) for _ in range(300)]
        for c in subs:
            c.until("caught_up")
        stop = threading.Event()
        errors = []

        def appender(k):
            conn = s.connect()
            try:
                for i in range(100):
                    st, _, b = s.request("POST", f"/v1/databases/{DB}/streams/race-{k}/events",
                                         {"events": [{"type": "T", "data": i}]}, conn=conn)
                    if st != 201:
                        errors.append((st, b))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            finally:
                conn.close()

        ts = [threading.Thread(target=appender, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        stop.set()
        check(not errors, f"appends failed: {errors[:3]}")
        check(s.proc.poll() is None, "the server died")
        for c in subs[:20]:
            check(len(c.events(400)) == 400, "every event")
        for c in subs:
            c.close()


def test_a_start_past_the_head_waits_instead_of_failing():
    """Regression: a subscription starting after head + 1 (from=50 on a short log, or an old
    Last-Event-ID after the database was made again) counted as billions of events behind and
    was cut off with too_far_behind within a second."""
    with Server(extra=["--live-heartbeat", "1"]) as s:
        append(s, "a", 1)
        sub = SSE(s.port, live_path("from=50"))
        sub.until("caught_up")
        for _ in range(3):  # three ticks, each checking the lag
            m = sub.message()
            check(m["event"] != "error", f"cut off: {m}")
        sub.close()
