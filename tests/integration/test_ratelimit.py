"""Rate limits: token buckets per client (API key, or address) and database, with the
X-RateLimit-* headers and 429 + Retry-After; the key's own limit wins over the database's,
which wins over the server's default. Counts are compared with the rate times the measured
elapsed time plus the burst (within 10 %)."""
import http.client
import time

from harness import Server, check, run_cli


def hammer(s, path, seconds, headers=None):
    """Requests on one connection for `seconds`: (2xx count, 429 count, elapsed, a 429's
    headers, the first answer's headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    ok = limited = 0
    seen = first = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        r.read()
        h = {k.lower(): v for k, v in r.getheaders()}
        first = first or h
        if 200 <= r.status < 300:
            ok += 1
        elif r.status == 429:
            limited += 1
            seen = seen or h
        else:
            raise AssertionError(f"unexpected {r.status}")
    elapsed = time.monotonic() - t0
    conn.close()
    return ok, limited, elapsed, seen, first


def within(ok, rate, burst, elapsed):
    want = burst + rate * elapsed
    return abs(ok - want) <= 0.10 * want, want


def test_default_limit_per_address():
    with Server(extra=["--rate-limit", "50", "--rate-burst", "5"]) as s:
        ok, limited, el, h429, first = hammer(s, "/v1/databases/default/events?limit=1", 2.0)
        good, want = within(ok, 50, 5, el)
        check(good and limited > 0, f"{ok} answered in {el:.2f} s, want ~{want:.0f}")
        check(first["x-ratelimit-limit"] == "50" and "x-ratelimit-remaining" in first and
              "x-ratelimit-reset" in first, f"headers {first}")
        check(h429["x-ratelimit-remaining"] == "0" and int(h429["retry-after"]) >= 1,
              f"429 headers {h429}")


def test_key_limit_wins_and_buckets_are_separate():
    with Server(start=False, extra=["--rate-limit", "100", "--rate-burst", "5"]) as s:
        slow = run_cli(["keys", "create", "--scope", "read", "--rate-limit", "20", "--data",
                        s.data])[1]
        fast = run_cli(["keys", "create", "--scope", "read", "--data", s.data])[1]
        slow = next(line for line in slow.splitlines() if line.startswith("ak_"))
        fast = next(line for line in fast.splitlines() if line.startswith("ak_"))
        s.start()
        path = "/v1/databases/default/events?limit=1"
        ok, _, el, _, first = hammer(s, path, 2.0, {"X-API-Key": slow})
        good, want = within(ok, 20, 5, el)
        check(good and first["x-ratelimit-limit"] == "20", f"slow key: {ok} vs ~{want:.0f}")
        # another key has its own, untouched bucket with the default rate
        ok, _, el, _, first = hammer(s, path, 1.0, {"X-API-Key": fast})
        good, want = within(ok, 100, 5, el)
        check(good and first["x-ratelimit-limit"] == "100", f"fast key: {ok} vs ~{want:.0f}")
        st, _, ans = s.post("/v1/keys", {"scope": "read", "rateLimit": 0},
                            headers={"X-API-Key": fast})
        check(st in (400, 403), f"bad rateLimit or scope: {st}")


def test_database_setting():
    with Server(extra=["--rate-burst", "5"]) as s:
        st, _, _ = s.post("/v1/databases", {"name": "slow", "settings": {"rateLimit": 30}})
        check(st == 201, f"create {st}")
        st, _, info = s.get("/v1/databases/slow")
        check(info["settings"]["rateLimit"] == 30, f"{info['settings']}")
        ok, limited, el, _, first = hammer(s, "/v1/databases/slow/events?limit=1", 2.0)
        good, want = within(ok, 30, 5, el)
        check(good and limited > 0 and first["x-ratelimit-limit"] == "30",
              f"{ok} vs ~{want:.0f}")
        # the default database has no limit (none configured): no headers, no 429
        ok, limited, el, _, first = hammer(s, "/v1/databases/default/events?limit=1", 0.5)
        check(limited == 0 and "x-ratelimit-limit" not in first, f"default db {first}")
        st, _, _ = s.post("/v1/databases", {"name": "bad", "settings": {"rateLimit": 0}})
        check(st == 400, f"rateLimit 0 refused: {st}")
