"""j17 conventions over the real server (seed 000, docs/dialects/j17.md "Conventions" and
"Writing"): rate-limit headers and 429 per minute, CORS preflights and origins, idempotency
keys replayed byte for byte, the error envelope, the dialect on its own port and moved or
dropped mounts."""
import json

from j17_client import (ACTOR, J17, U1, U2, dev_server, j17_error, keyed_server, sample_spec)
from harness import Server, check, dialect_port

EMAIL = {"email": "ann@example.com"}


def keyed_shop(extra=None):
    """(server, admin key, a J17 client with a prod write key for instance shop)."""
    s, admin = keyed_server(extra)
    try:
        a = J17(s, key=admin)
        a.ok_deploy(sample_spec(), instance="shop")
        return s, admin, J17(s, key=a.create_key("shop", "w", "write")["key"])
    except BaseException:
        s.cleanup()
        raise


def test_rate_limit_headers_on_every_response():
    s, admin, j = keyed_shop()
    with s:
        seen = []
        for resp in (j.write("user", U1, "was_created", EMAIL), j.get(f"/user/{U1}"),
                     j.get(f"/user/{U1}/length"), j.get(f"/user/{U2}"),
                     j.write("user", U1, "nope", {})):
            st, h, b = resp
            for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-scope"):
                check(name in h, f"{name} on a {st}: {h}")
            check(h["x-ratelimit-limit"] == "500", f"500 a minute per key: {h}")
            check(h["x-ratelimit-scope"] == "api-key", f"{h}")
            seen.append(int(h["x-ratelimit-remaining"]))
        check(seen == sorted(seen, reverse=True) and seen[0] > seen[-1] and seen[0] < 500,
              f"remaining goes down: {seen}")


def test_rate_limit_headers_without_a_key_are_the_addresses():
    s, admin, j = keyed_shop()
    with s:
        # keys on, none presented: 401 before any bucket is counted (docs: the key is
        # checked first)
        st, h, _ = J17(s).get(f"/user/{U1}")
        check(st == 401, f"{st} {h}")
    s, j = dev_server()
    with s:
        # development mode: no keys at all
        st, h, _ = j.get(f"/user/{U1}")
        check(st == 404 and h.get("x-ratelimit-scope") == "ip", f"{st} {h}")
        check(h.get("x-ratelimit-limit") == "2000", f"2000 a minute per address: {h}")


def test_rate_limit_429_after_the_limit():
    s, admin, j = keyed_shop(["--dialect-rate", "j17=3"])
    with s:
        answers = [j.write("user", U1, "was_created", EMAIL)]
        answers.append(j.get(f"/user/{U1}"))
        answers.append(j.batch("user", U1, [{"type": "did_log_in", "data": {}}] * 5))
        for st, h, b in answers:
            check(st in (200, 201), f"within the limit: {st} {b}")
            check(h.get("x-ratelimit-limit") == "3", f"{h}")
        check([int(h["x-ratelimit-remaining"]) for _, h, _ in answers] == [2, 1, 0],
              f"a batch is one request: {[h for _, h, _ in answers]}")
        st, h, b = j.write("user", U1, "did_log_in", {})
        check(st == 429, f"{st} {b}")
        check(b == {"ok": False, "error": "Rate limit exceeded"}, f"{b}")
        check(h.get("x-ratelimit-remaining") == "0" and h.get("retry-after"), f"{h}")
        check(h.get("x-ratelimit-scope") == "api-key", f"{h}")
        st, _, b = j.get(f"/user/{U1}")
        check(st == 429, f"reads too: {st} {b}")
        # another key has its own budget, and nothing more was written
        other = J17(s, key=J17(s, key=admin).create_key("shop", "r", "read")["key"])
        check(other.length("user", U1) == 6, "the 429 wrote nothing")


def test_dialect_rate_zero_turns_limits_off():
    s, admin, j = keyed_shop(["--dialect-rate", "j17=0"])
    with s:
        for _ in range(5):
            st, h, b = j.get(f"/user/{U1}")
            check(st == 404, f"{st} {b}")


def test_cors_preflight_and_origin():
    s, admin, j = keyed_shop()
    with s:
        pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "Authorization, Content-Type"}
        for path in (f"/user/{U1}/was_created", f"/user/{U1}", "/api/instances/shop/spec"):
            st, h, b = J17(s).request("OPTIONS", path, headers=pre)
            check(st in (200, 204), f"OPTIONS {path}: {st} {b}")
            check(h.get("access-control-allow-origin") == "*", f"{path}: {h}")
            check(h.get("access-control-allow-methods") == "GET, POST, OPTIONS", f"{h}")
            check(h.get("access-control-allow-headers") == "Authorization, Content-Type", f"{h}")
        st, h, b = j.write("user", U1, "was_created", EMAIL,
                           headers={"Origin": "https://app.example.com"})
        check(st == 201 and h.get("access-control-allow-origin") == "*", f"{st} {h}")
        st, h, b = j.get(f"/user/{U1}", headers={"Origin": "https://other.example"})
        check(st == 200 and h.get("access-control-allow-origin") == "*", f"{st} {h}")
        expose = h.get("access-control-expose-headers", "").lower()
        check("x-ratelimit-remaining" in expose, f"rate headers readable by pages: {h}")


def test_cors_follows_cors_origins():
    with Server(extra=["--cors-origins", "*"]) as s:
        pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
        st, h, b = J17(s).request("OPTIONS", f"/user/{U1}", headers=pre)
        # development mode: the server's policy, which allows every origin here
        check(st in (200, 204) and h.get("access-control-allow-origin") in
              ("*", "https://app.example.com"), f"{st} {h}")
        check(h.get("access-control-allow-methods") == "GET, POST, OPTIONS", f"{h}")


def test_idempotency_key_replays_the_answer():
    s, j = dev_server()
    with s:
        hk = {"X-Idempotency-Key": "user-1-created"}
        body = {"data": EMAIL, "metadata": ACTOR}
        st1, h1, raw1 = j.raw("POST", f"/user/{U1}/was_created", body, headers=hk)
        check(st1 == 201, f"{st1} {raw1}")
        check(h1.get("x-idempotency-replayed") in (None, "false"), f"first: {h1}")
        st2, h2, raw2 = j.raw("POST", f"/user/{U1}/was_created", body, headers=hk)
        check(st2 == 201 and raw2 == raw1, f"byte for byte: {raw1} vs {raw2}")
        check(h2.get("x-idempotency-replayed") == "true", f"{h2}")
        check(j.length("user", U1) == 1, "one event written")
        # the same key with another body
        b = j17_error(j.post(f"/user/{U1}/was_created",
                             {"data": {"email": "other@example.com"}, "metadata": ACTOR},
                             headers=hk), 422)
        check(j.length("user", U1) == 1, f"nothing written: {b}")
        # another key is another request
        st, _, b = j.post(f"/user/{U1}/was_created", body,
                          headers={"X-Idempotency-Key": "another"})
        check(st == 201 and j.length("user", U1) == 2, f"{st} {b}")


def test_idempotency_key_on_batches_and_implications():
    s, j = dev_server()
    with s:
        hk = {"X-Idempotency-Key": "order-batch-1"}
        from j17_client import O1, P1
        evs = [{"type": "was_placed", "data": {"items": [{"product_id": P1, "qty": 1}],
                                               "total": 5}}]
        st1, _, raw1 = j.raw("POST", f"/order/{O1}", {"events": evs, "metadata": ACTOR},
                             headers=hk)
        check(st1 == 201, f"{st1} {raw1}")
        st2, h2, raw2 = j.raw("POST", f"/order/{O1}", {"events": evs, "metadata": ACTOR},
                              headers=hk)
        check(st2 == 201 and raw2 == raw1 and h2.get("x-idempotency-replayed") == "true",
              f"{st2} {h2} {raw2}")
        check(j.length("order", O1) == 1 and j.length("product", P1) == 1 and
              j.length("ledger", "global") == 1, "implied events written once")
        check(json.loads(raw1).get("implied_count") == 2, f"{raw1}")


def test_error_envelope():
    s, j = dev_server()
    with s:
        for resp in (j.get(f"/user/{U1}"), j.write("nope", U1, "x", {}),
                     j.write("user", "bad", "was_created", EMAIL),
                     j.get("/api/instances/default/nothing")):
            st, h, b = resp
            check(st >= 400 and isinstance(b, dict) and b.get("ok") is False and
                  isinstance(b.get("error"), str), f"{st} {b}")
            check(h.get("content-type", "").startswith("application/json"), f"{h}")


def test_own_port_and_moved_mounts():
    with Server(extra=["--dialect-listen", "j17=127.0.0.1:0",
                       "--dialect", "j17-staging=off,j17-test=/qa"]) as s:
        port = dialect_port(s, "j17")
        root = J17(s, base="", port=port)
        root.ok_deploy(sample_spec())
        root.ok_write("user", U1, "was_created", EMAIL)
        check(J17(s).length("user", U1) == 1, "the same prod instance under /j17")
        st, _, b = J17(s, "staging").get(f"/user/{U1}")
        check(st == 404, f"/j17-staging is off: {st} {b}")
        qa = J17(s, base="/qa")
        qa.ok_deploy(sample_spec(), environment="test")
        qa.ok_write("user", U1, "was_created", EMAIL)
        check(qa.length("user", U1) == 1, "the test environment under /qa")
        st, _, b = s.get(f"/v1/databases/default-test/streams/user:{U1}/events")
        check(st == 200 and len(b["events"]) == 1, f"{st} {b}")


def test_development_mode_keeps_other_pages_off():
    # without keys the mounts would let any page write as anyone: the server's origin policy
    # applies (pages of this machine only), and no `*` is answered
    s, j = dev_server()
    with s:
        st, h, b = j.write("user", U1, "was_created", EMAIL,
                           headers={"Origin": "https://evil.example"})
        check(st == 403 and h.get("access-control-allow-origin") is None, f"{st} {h} {b}")
        check(j.length("user", U1) == 0, "nothing written")
        st, h, _ = j.write("user", U1, "was_created", EMAIL,
                           headers={"Origin": "http://localhost:3000"})
        check(st == 201 and h.get("access-control-allow-origin") == "http://localhost:3000",
              f"{st} {h}")
