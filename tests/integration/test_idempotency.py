"""Idempotency keys (docs/api.md, "Idempotency keys"): `Idempotency-Key` or
`X-Idempotency-Key` on a database write stores the key, a hash of the request and its answer in
the same durable write as the events. The same key with the same request replays the original
answer (`X-Idempotency-Replayed: true`) and writes nothing; with another request it is 422.
Keys are per database, live 24 hours by default (a database setting and a server flag), survive
restarts and crashes, and are purged in the background once expired. Concurrent requests with
one key write once."""
import json
import threading
import time

from harness import Server, check, expect_error, quote, run_cli

DB = "default"


def spath(stream, db=DB):
    return f"/v1/databases/{db}/streams/{quote(stream)}"


def body_of(n=1, tag="a"):
    return {"events": [{"type": "T", "data": {"tag": tag, "i": i}} for i in range(n)]}


def keyed(s, method, path, body, key, header="Idempotency-Key", conn=None):
    return s.request(method, path, body=body, headers={header: key}, conn=conn)


def raw_post(s, path, body, key):
    """POST returning (status, headers, raw body bytes): replays must be byte-identical."""
    c = s.connect()
    try:
        c.request("POST", path, body=json.dumps(body).encode(),
                  headers={"Content-Type": "application/json", "Idempotency-Key": key})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def count_events(s, db=DB):
    return len(s.read_log(db))


# ---------------------------------------------------------------- replay and conflict


def test_same_key_same_request_replays_the_answer():
    with Server() as s:
        path = spath("orders-1") + "/events"
        st1, h1, b1 = raw_post(s, path, body_of(3), "order-1-create")
        check(st1 == 201, f"first: {st1} {b1!r}")
        check("x-idempotency-replayed" not in h1, "a first answer is not a replay")
        for _ in range(2):
            st2, h2, b2 = raw_post(s, path, body_of(3), "order-1-create")
            check(st2 == 201 and b2 == b1, f"replay differs: {st2} {b2!r} vs {b1!r}")
            check(h2.get("x-idempotency-replayed") == "true", f"no replay header: {h2}")
        check(count_events(s) == 3, "a replay wrote events")
        # the other header name is the same key space
        st, h, b = keyed(s, "POST", path, body_of(3), "order-1-create", "X-Idempotency-Key")
        check(st == 201 and h.get("x-idempotency-replayed") == "true", f"{st} {h} {b}")
        check(b == json.loads(b1), "X-Idempotency-Key replays the same answer")
        # both headers, agreeing, are fine
        st, h, _ = s.request("POST", path, body=body_of(3),
                             headers={"Idempotency-Key": "order-1-create",
                                      "X-Idempotency-Key": "order-1-create"})
        check(st == 201 and h.get("x-idempotency-replayed") == "true", f"both headers: {st}")
        check(count_events(s) == 3, "still one write")


def test_same_key_other_request_is_422_and_writes_nothing():
    with Server() as s:
        path = spath("acct-1") + "/events"
        st, _, first = keyed(s, "POST", path, body_of(1, "x"), "k-1")
        check(st == 201, f"{st} {first}")
        expect_error(keyed(s, "POST", path, body_of(1, "y"), "k-1"), 422,
                     "idempotency_key_reused", "Idempotency-Key")
        expect_error(keyed(s, "POST", spath("acct-2") + "/events", body_of(1, "x"), "k-1",
                           "X-Idempotency-Key"),
                     422, "idempotency_key_reused", "X-Idempotency-Key")
        expect_error(keyed(s, "POST", f"/v1/databases/{DB}/events",
                           {"appends": [{"stream": "acct-1", "events": body_of()["events"]}]},
                           "k-1"),
                     422, "idempotency_key_reused")
        check(count_events(s) == 1, "a refused request wrote events")
        check(s.get(spath("acct-2"))[0] == 404, "acct-2 was created")
        # the original still replays
        st, h, again = keyed(s, "POST", path, body_of(1, "x"), "k-1")
        check(st == 201 and again == first and h.get("x-idempotency-replayed") == "true",
              f"{st} {again}")


def test_keys_belong_to_one_database():
    with Server() as s:
        check(s.post("/v1/databases", {"name": "other"})[0] == 201, "create db")
        a = keyed(s, "POST", spath("s") + "/events", body_of(), "shared")
        b = keyed(s, "POST", spath("s", "other") + "/events", body_of(), "shared")
        check(a[0] == 201 and b[0] == 201, f"{a} {b}")
        check("x-idempotency-replayed" not in b[1], "another database's key replayed")
        check(count_events(s) == 1 and count_events(s, "other") == 1, "one write each")


def test_every_database_write_form_replays():
    with Server() as s:
        # multi-stream append
        multi = {"appends": [{"stream": "a-1", "events": body_of(2)["events"]},
                             {"stream": "b-1", "events": body_of(1)["events"],
                              "expectedVersion": "no_stream"}]}
        r1 = keyed(s, "POST", f"/v1/databases/{DB}/events", multi, "m")
        r2 = keyed(s, "POST", f"/v1/databases/{DB}/events", multi, "m")
        check(r1[0] == 201 and r2[0] == 201 and r1[2] == r2[2], f"multi: {r1} {r2}")
        check(r2[1].get("x-idempotency-replayed") == "true", "multi replay header")
        # stream-less (DCB) append with a condition
        dcb = {"events": [{"type": "Reg", "data": {}, "tags": ["user:1"]}],
               "condition": {"failIfEventsMatch": {"items": [{"types": ["Reg"],
                                                              "tags": ["user:1"]}]}}}
        d1 = keyed(s, "POST", f"/v1/databases/{DB}/events", dcb, "d")
        d2 = keyed(s, "POST", f"/v1/databases/{DB}/events", dcb, "d")
        check(d1[0] == 201, f"dcb: {d1}")
        check(d2[0] == 201 and d2[2] == d1[2] and d2[1].get("x-idempotency-replayed") == "true",
              f"a replayed DCB append is not refused by its own condition: {d2}")
        # stream metadata
        m1 = keyed(s, "PUT", spath("a-1") + "/metadata", {"maxCount": 5}, "meta")
        m2 = keyed(s, "PUT", spath("a-1") + "/metadata", {"maxCount": 5}, "meta")
        check(m1[0] == 200 and m2[0] == 200 and m1[2] == m2[2], f"metadata: {m1} {m2}")
        check(m2[1].get("x-idempotency-replayed") == "true", "metadata replay header")
        check(s.get(spath("$$a-1"))[2]["version"] == 1, "one $metadata event")
        # soft delete, then the same delete again: replayed, not 404
        x1 = keyed(s, "DELETE", spath("b-1"), None, "del")
        x2 = keyed(s, "DELETE", spath("b-1"), None, "del")
        check(x1[0] == 204 and x2[0] == 204, f"delete: {x1} {x2}")
        check(x2[1].get("x-idempotency-replayed") == "true", "delete replay header")
        check(s.get(spath("$$b-1"))[2]["version"] == 1, "one delete event")
        check(s.head() == 6, f"positions used: {s.head()}")


def test_a_refused_request_keeps_no_key():
    with Server() as s:
        path = spath("s") + "/events"
        check(s.append("s", body_of()["events"])[0] == 201, "seed")
        conflict = dict(body_of(), expectedVersion=0)
        expect_error(keyed(s, "POST", path, conflict, "retry-me"), 409, "wrong_expected_version")
        # not stored: the same request is checked again (409 again, not a replay) ...
        expect_error(keyed(s, "POST", path, conflict, "retry-me"), 409, "wrong_expected_version")
        # ... and the key is free for a corrected request
        st, h, _ = keyed(s, "POST", path, dict(body_of(), expectedVersion=1), "retry-me")
        check(st == 201 and "x-idempotency-replayed" not in h, f"{st} {h}")
        st, h, _ = keyed(s, "POST", path, dict(body_of(), expectedVersion=1), "retry-me")
        check(st == 201 and h.get("x-idempotency-replayed") == "true", "now it replays")
        check(count_events(s) == 2, "two writes")


def test_concurrent_requests_with_one_key_write_once():
    with Server() as s:
        path = spath("race") + "/events"
        n = 24
        results = [None] * n
        gate = threading.Barrier(n)

        def one(i):
            c = s.connect()
            try:
                gate.wait()
                results[i] = raw_post_on(c, path, body_of(2), "same-key")
            finally:
                c.close()

        def raw_post_on(c, p, body, key):
            c.request("POST", p, body=json.dumps(body).encode(),
                      headers={"Content-Type": "application/json", "Idempotency-Key": key})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()

        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        check(all(r and r[0] == 201 for r in results), f"statuses: {[r and r[0] for r in results]}")
        check(len({r[2] for r in results}) == 1, "every request got the same answer")
        fresh = [r for r in results if "x-idempotency-replayed" not in r[1]]
        check(len(fresh) == 1, f"{len(fresh)} requests were not replays")
        check(count_events(s) == 2, f"{count_events(s)} events written")


# ---------------------------------------------------------------- durability and expiry


def test_keys_survive_a_crash_and_a_restart():
    with Server() as s:
        path = spath("dur") + "/events"
        st, _, before = raw_post(s, path, body_of(2), "before-crash")
        check(st == 201, f"{st}")
        s.kill9()  # at once: the record is in the log, not yet in the index
        s.start()
        st, h, again = raw_post(s, path, body_of(2), "before-crash")
        check(st == 201 and again == before, f"after kill -9: {st} {again!r}")
        check(h.get("x-idempotency-replayed") == "true", "replayed after a crash")
        expect_error(keyed(s, "POST", path, body_of(2, "z"), "before-crash"), 422,
                     "idempotency_key_reused")
        s.stop()
        s.start()  # a clean stop indexed it: now it comes from the index
        check(s.db_info()["idempotencyKeys"] == 1, f"{s.db_info()['idempotencyKeys']}")
        st, h, again = raw_post(s, path, body_of(2), "before-crash")
        check(st == 201 and again == before and h.get("x-idempotency-replayed") == "true",
              f"after restart: {st} {again!r}")
        check(count_events(s) == 2, "one write in all")
        s.stop()
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0, f"verify: {rc} {out}")


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return fn()


def test_keys_expire_per_database_setting_and_are_purged():
    with Server() as s:
        st, _, body = s.post("/v1/databases", {"name": "short",
                                               "settings": {"idempotencyTtlSeconds": 2}})
        check(st == 201, f"{st} {body}")
        info = s.db_info("short")
        check(info["settings"]["idempotencyTtlSeconds"] == 2, f"{info['settings']}")
        path = spath("s", "short") + "/events"
        first = keyed(s, "POST", path, body_of(), "k1")
        check(keyed(s, "POST", path, body_of(), "k2")[0] == 201, "k2")
        check(keyed(s, "POST", path, body_of(), "k1")[1].get("x-idempotency-replayed") == "true",
              "replayed while alive")
        check(wait_for(lambda: s.db_info("short")["idempotencyKeys"] == 2), "indexed: 2 keys")
        time.sleep(2.3)
        # expired: the same key is a new request (even with another body)
        st, h, again = keyed(s, "POST", path, body_of(1, "new"), "k1")
        check(st == 201 and "x-idempotency-replayed" not in h, f"{st} {h}")
        check(again["position"] > first[2]["position"], "written anew")
        # the background purge drops k2 (expired) and keeps the new k1
        check(wait_for(lambda: s.db_info("short")["idempotencyKeys"] == 1),
              f"purged: {s.db_info('short')['idempotencyKeys']}")
        check(keyed(s, "POST", path, body_of(1, "new"), "k1")[1].get("x-idempotency-replayed")
              == "true", "the new k1 replays")
        # the default database keeps the server's default (24 h)
        check(s.db_info()["settings"]["idempotencyTtlSeconds"] is None, "default unset")
        expect_error(s.post("/v1/databases", {"name": "bad", "settings":
                                              {"idempotencyTtlSeconds": -1}}),
                     400, None, "settings.idempotencyTtlSeconds")
        expect_error(s.post("/v1/databases", {"name": "bad", "settings":
                                              {"idempotencyTtlSeconds": 10 ** 9}}),
                     400, None, "settings.idempotencyTtlSeconds")


def test_server_flag_sets_the_default_lifetime():
    with Server(extra=["--idempotency-ttl", "1"]) as s:
        path = spath("s") + "/events"
        check(keyed(s, "POST", path, body_of(), "k")[0] == 201, "first")
        check(keyed(s, "POST", path, body_of(), "k")[1].get("x-idempotency-replayed") == "true",
              "replayed")
        time.sleep(1.2)
        st, h, _ = keyed(s, "POST", path, body_of(), "k")
        check(st == 201 and "x-idempotency-replayed" not in h, "expired after 1 s")
        check(count_events(s) == 2, "written twice")


# ---------------------------------------------------------------- bad keys


def test_bad_keys_and_unsupported_routes():
    with Server() as s:
        path = spath("s") + "/events"
        for bad in ["x" * 256, "tab\there", "caf\u00e9"]:
            hdr = bad.encode("utf-8").decode("latin-1")
            expect_error(keyed(s, "POST", path, body_of(), hdr), 400, "invalid_idempotency_key",
                         "Idempotency-Key")
        expect_error(s.request("POST", path, body=body_of(),
                               headers={"Idempotency-Key": "a", "X-Idempotency-Key": "b"}),
                     400, "invalid_idempotency_key")
        check(keyed(s, "POST", path, body_of(), "x" * 255)[0] == 201, "255 bytes is fine")
        check(count_events(s) == 1, "refused keys wrote nothing")
        # administrative writes keep no keys: refused, not silently unprotected
        expect_error(keyed(s, "POST", "/v1/databases", {"name": "n"}, "a"), 400,
                     "idempotency_not_supported", "Idempotency-Key")
        expect_error(keyed(s, "DELETE", "/v1/databases/default", None, "a", "X-Idempotency-Key"),
                     400, "idempotency_not_supported", "X-Idempotency-Key")
        check(s.get("/v1/databases/n")[0] == 404, "not created")
        # reads ignore the header
        check(keyed(s, "GET", path, None, "a")[0] == 200, "read with a key")
        check(keyed(s, "POST", f"/v1/databases/{DB}/query", {}, "a")[0] == 200, "query")


def test_cors_preflight_allows_the_idempotency_headers():
    with Server(extra=["--cors-origins", "https://app.example"]) as s:
        st, h, _ = s.request("OPTIONS", spath("s") + "/events",
                             headers={"Origin": "https://app.example",
                                      "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "idempotency-key"})
        check(st in (200, 204), f"preflight {st}")
        allowed = h.get("access-control-allow-headers", "").lower()
        check("idempotency-key" in allowed and "x-idempotency-key" in allowed, allowed)
        exposed = h.get("access-control-expose-headers", "").lower()
        st, h, _ = s.request("POST", spath("s") + "/events", body=body_of(),
                             headers={"Origin": "https://app.example", "Idempotency-Key": "c"})
        exposed = h.get("access-control-expose-headers", "").lower()
        check("x-idempotency-replayed" in exposed, f"exposed: {exposed}")


def test_the_query_string_is_part_of_the_request():
    """Regression: the request hash left out the query string, so a hard delete
    (?hard=true) with the key of an earlier soft delete was answered as its replay and the
    stream was never tombstoned."""
    with Server() as s:
        check(s.append("s1", body_of()["events"])[0] == 201, "seed")
        st, h, _ = keyed(s, "DELETE", spath("s1"), None, "del-1")
        check(st == 204 and "x-idempotency-replayed" not in h, f"soft delete {st}")
        expect_error(keyed(s, "DELETE", spath("s1") + "?hard=true", None, "del-1"), 422,
                     "idempotency_key_reused")
        check(s.append("s1", body_of()["events"])[0] == 201, "not tombstoned")
