"""Slow clients and connection limits: a head or body that trickles in is cut off after
--header-timeout / --body-timeout with 408 (trickling bytes keeps a client from being idle,
not from being slow), an idle keep-alive connection is governed by --timeout alone, and one
address may hold at most --max-client-connections connections (503 for more)."""
import json
import socket
import threading
import time

from harness import Server, check, split_raw


def trickle(port, first, byte, stop_after):
    """Sends `first`, then `byte` every 0.2 s until the server closes or stop_after seconds;
    returns (everything received, seconds until the answer came)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
    s.sendall(first)
    got = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < stop_after:
        try:
            s.sendall(byte)
        except OSError:
            break
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            continue
        except OSError:
            break
    took = time.monotonic() - t0
    s.close()
    return got, took


def test_slow_head_is_cut_off_and_others_are_served():
    with Server(extra=["--header-timeout", "1", "--timeout", "30"]) as s:
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=trickle(s.port, b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", b"a", 10)))
        t.start()
        time.sleep(0.3)
        st, _, _ = s.get("/health")  # another client is served meanwhile
        check(st == 200, f"other client {st}")
        t.join()
        got, took = result["r"]
        status, _, body = split_raw(got)
        check(status == 408 and json.loads(body)["error"]["code"] == "request_timeout",
              f"{got[:200]!r}")
        check(took < 8, f"cut off after {took:.1f} s")


def test_slow_body_is_cut_off():
    with Server(extra=["--body-timeout", "1", "--timeout", "30"]) as s:
        head = (b"POST /v1/databases/default/streams/s/events HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        got, took = trickle(s.port, head, b" ", 10)
        status, _, body = split_raw(got)
        check(status == 408 and took < 8, f"{status} after {took:.1f} s: {got[:200]!r}")
        check(s.head() == 0, "nothing written")


def test_idle_keep_alive_is_not_a_slow_head():
    with Server(extra=["--header-timeout", "1", "--timeout", "30"]) as s:
        conn = s.connect()
        st, _, _ = s.request("GET", "/health", conn=conn)
        time.sleep(2.5)  # idle between requests: longer than the head timeout
        st2, _, _ = s.request("GET", "/health", conn=conn)
        check(st == 200 and st2 == 200, f"{st} {st2}")


def test_connections_per_address():
    with Server(extra=["--max-client-connections", "3"]) as s:
        held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        data = b""
        try:
            while True:
                chunk = extra.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        extra.close()
        status, _, body = split_raw(data)
        check(status == 503 and json.loads(body)["error"]["code"] == "too_many_connections",
              f"{data[:200]!r}")
        held.pop().close()
        time.sleep(0.3)
        st, _, _ = s.get("/health", conn=s.connect())
        check(st == 200, f"a slot came back: {st}")
        for h in held:
            h.close()
