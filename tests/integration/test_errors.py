"""Refused requests: each checks the status, error.code (and field where one is to blame), and
that the database did not change."""
import json
import socket

from harness import Server, check, expect_error, split_raw

APPEND = "/v1/databases/default/streams/s/events"
JSON = {"Content-Type": "application/json"}
GOOD = {"events": [{"type": "t", "data": 1}]}


class Unchanged:
    """Context: asserts head, headHash and event count of a database are the same at exit."""

    def __init__(self, s, db="default"):
        self.s, self.db = s, db

    def __enter__(self):
        self.before = self.s.db_info(self.db)
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            after = self.s.db_info(self.db)
            for k in ("head", "headHash", "events", "streams"):
                check(after[k] == self.before[k],
                      f"refused request changed {k}: {self.before[k]} -> {after[k]}")
        return False


def seeded(extra=None):
    s = Server(extra=extra)
    st, _, _ = s.append("seed", [{"type": "t", "data": 0}])
    check(st == 201, "seed append")
    return s


def post_raw(s, body, path=APPEND, headers=JSON):
    return s.post(path, body, headers=headers)


def chunked_request(path, body, chunk=64, content_type=b"application/json"):
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                      for i in range(0, len(body), chunk))
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: " + content_type +
            b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")


def test_malformed_json():
    with seeded() as s, Unchanged(s):
        cases = ['{"events": [', '{"events": [{"type": "t", "data": 1},]}', "{'events': []}",
                 '{"events": [{"type": "t", "data": 1}]} trailing', "", "nul", "[1, 2",
                 '{"events": [{"type": "t", "data": tru}]}', '{"events": [{"type": "t", "data": 01}]}',
                 b'{"events": [{"type": "t", "data": "\xff\xfe"}]}',
                 '{"events": [{"type": "t", "data": "a\x01b"}]}']
        for body in cases:
            blen = len(body)
            resp = post_raw(s, body)
            err = expect_error(resp, 400, "invalid_json")["error"]
            off = err.get("offset")
            check(isinstance(off, int) and not isinstance(off, bool) and 0 <= off <= blen,
                  f"{body!r}: offset {off!r} is not an integer within the body")
        # the offset points at the problem
        body = '{"events": [{"type": "t", "data": @}]}'
        err = expect_error(post_raw(s, body), 400, "invalid_json")["error"]
        check(abs(err["offset"] - body.index("@")) <= 1, f"offset {err['offset']} for '@' at "
                                                         f"{body.index('@')}")
        # database create has the same rule
        expect_error(s.post("/v1/databases", '{"name": ', headers=JSON), 400, "invalid_json")


def test_nul_byte_after_number_refused():
    """A raw NUL byte is not JSON: '{"events":[{"type":"t","data":1<NUL>}]}' must be refused,
    and no read may ever answer malformed JSON."""
    with seeded() as s:
        before = s.db_info()
        body = b'{"events":[{"type":"t","data":1\x00}]}'
        st, _, ans = post_raw(s, body)
        problems = []
        if not (st == 400 and isinstance(ans, dict) and ans["error"]["code"] == "invalid_json"):
            problems.append(f"POST {body!r}: {st} {ans!r}, want 400 invalid_json")
        if s.db_info()["head"] != before["head"]:
            problems.append(f"head moved {before['head']} -> {s.db_info()['head']}")
        st, _, log = s.get("/v1/databases/default/events")
        if not isinstance(log, dict):
            problems.append(f"GET /v1/databases/default/events now answers {st} with invalid "
                            f"JSON: {log[-200:]!r}")
        check(not problems, "; ".join(problems))


def test_error_body_valid_json_for_bad_escape():
    """A parse error next to a multi-byte character must still answer valid UTF-8 JSON."""
    with seeded() as s, Unchanged(s):
        body = '{"events":[{"type":"t","data":["\\🌀"]}]}'.encode()
        st, h, ans = post_raw(s, body)
        check(st == 400, f"status {st}")
        check(isinstance(ans, dict), f"POST {body!r}: 400 body is not valid UTF-8 JSON: {ans!r}")
        check(ans["error"]["code"] == "invalid_json", f"{ans!r}")


def test_body_not_an_object():
    with seeded() as s, Unchanged(s):
        expect_error(post_raw(s, "[]"), 400, "invalid_request")
        # a scalar body is valid JSON but not an object; either code is accepted here
        for body in ["1", '"events"', "null"]:
            st, _, b = post_raw(s, body)
            check(st == 400 and b["error"]["code"] in ("invalid_request", "invalid_json"),
                  f"{body!r}: {st} {b!r}")


def test_content_type():
    with seeded() as s:
        body = json.dumps(GOOD)
        with Unchanged(s):
            expect_error(post_raw(s, body, headers={}), 415, "unsupported_media_type")
            for ct in ["text/plain", "application/jsonx", "application/x-www-form-urlencoded",
                       "json", "application/xml"]:
                expect_error(post_raw(s, body, headers={"Content-Type": ct}), 415,
                             "unsupported_media_type")
            expect_error(s.post("/v1/databases", '{"name":"x"}', headers={"Content-Type":
                                                                          "text/plain"}),
                         415, "unsupported_media_type")
            expect_error(s.post("/v1/databases", '{"name":"x"}'), 415, "unsupported_media_type")
        for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON"]:
            st, _, ans = post_raw(s, body, headers={"Content-Type": ct})
            check(st == 201, f"Content-Type {ct!r}: {st} {ans!r}")


def test_body_too_large():
    with seeded(["--max-body-bytes", "2048"]) as s:
        with Unchanged(s):
            big = json.dumps({"events": [{"type": "t", "data": "x" * 3000}]})
            expect_error(post_raw(s, big), 413, "body_too_large")
            huge = json.dumps({"events": [{"type": "t", "data": "x" * 300000}]})
            expect_error(post_raw(s, huge), 413, "body_too_large")
            # exactly at the limit is fine as far as the size goes
        pad = 2048 - len(json.dumps({"events": [{"type": "t", "data": ""}]}))
        exact = json.dumps({"events": [{"type": "t", "data": "y" * pad}]})
        check(len(exact) == 2048, "test setup")
        st, _, ans = post_raw(s, exact)
        check(st == 201, f"body of exactly --max-body-bytes: {st} {ans!r}")
        st, _, _ = s.get("/health")
        check(st == 200, "server unhealthy after 413")


def test_chunked_body_too_large():
    """A chunked body over --max-body-bytes must be answered 413 body_too_large too."""
    with seeded(["--max-body-bytes", "2048"]) as s, Unchanged(s):
        body = json.dumps({"events": [{"type": "t", "data": "x" * 3000}]}).encode()
        raw = s.raw(chunked_request(APPEND, body, chunk=500), read_all=False)
        st, _, rb = split_raw(raw)
        check(st == 413, f"chunked body of {len(body)} bytes over --max-body-bytes 2048: "
                         f"got {raw[:200]!r} (status {st}), want 413 body_too_large")
        check(json.loads(rb)["error"]["code"] == "body_too_large", f"body {rb!r}")


def test_chunked_append_accepted():
    with seeded() as s:
        body = json.dumps({"events": [{"type": "Chunked", "data": {"k": [1, 2, 3], "s": "z" * 500}},
                                      {"type": "Chunked", "data": 2}]}).encode()
        raw = s.raw(chunked_request(APPEND, body, chunk=37), read_all=False)
        st, _, rb = split_raw(raw)
        check(st == 201, f"chunked append: {raw[:300]!r}")
        ans = json.loads(rb)
        check(ans["position"] == 3 and ans["version"] == 2, f"answer {ans!r}")
        evs = s.read_stream("s")
        check([e["data"] for e in evs] == [{"k": [1, 2, 3], "s": "z" * 500}, 2],
              f"chunked events read back {evs!r}")


def test_too_many_events():
    with seeded(["--max-batch-events", "5"]) as s:
        with Unchanged(s):
            body = {"events": [{"type": "t", "data": i} for i in range(6)]}
            expect_error(s.post(APPEND, body), 413, "too_many_events")
            body = {"events": [{"type": "t", "data": i} for i in range(500)]}
            expect_error(s.post(APPEND, body), 413, "too_many_events")
        st, _, ans = s.post(APPEND, {"events": [{"type": "t", "data": i} for i in range(5)]})
        check(st == 201 and ans["position"] == 6, f"5 events with the limit 5: {st} {ans!r}")


def test_event_too_large():
    with seeded(["--max-event-bytes", "2048"]) as s:
        with Unchanged(s):
            body = {"events": [{"type": "t", "data": "x" * 3000}]}
            expect_error(s.post(APPEND, body), 413, "event_too_large")
            # one large event among small ones: the whole request is refused
            body = {"events": [{"type": "t", "data": 1}, {"type": "t", "data": 2},
                               {"type": "t", "data": "x" * 2100}]}
            err = expect_error(s.post(APPEND, body), 413, "event_too_large")["error"]
            check(err.get("field") == "events[2]", f"field {err.get('field')!r}")
            body = {"events": [{"type": "t", "data": 1, "metadata": {"m": "y" * 2500}}]}
            expect_error(s.post(APPEND, body), 413, "event_too_large")
        st, _, ans = s.post(APPEND, {"events": [{"type": "t", "data": "x" * 1000}]})
        check(st == 201, f"1000-byte event with --max-event-bytes 2048: {st} {ans!r}")


def test_unknown_database():
    with seeded() as s, Unchanged(s):
        for method, path, body in [
                ("POST", "/v1/databases/nope/streams/s/events", GOOD),
                ("GET", "/v1/databases/nope", None),
                ("GET", "/v1/databases/nope/events", None),
                ("GET", "/v1/databases/nope/events/1", None),
                ("GET", "/v1/databases/nope/streams/s", None),
                ("GET", "/v1/databases/nope/streams/s/events", None),
                ("DELETE", "/v1/databases/nope", None)]:
            resp = s.request(method, path, body=body)
            expect_error(resp, 404, "database_not_found")
        st, _, body = s.get("/v1/databases")
        check([d["name"] for d in body["databases"]] == ["default"], "a database appeared")


def test_unknown_stream():
    with seeded() as s, Unchanged(s):
        expect_error(s.get("/v1/databases/default/streams/missing/events"), 404,
                     "stream_not_found")
        expect_error(s.get("/v1/databases/default/streams/missing/events?direction=backward"),
                     404, "stream_not_found")
        expect_error(s.get("/v1/databases/default/streams/missing"), 404, "stream_not_found")
        expect_error(s.get("/v1/databases/default/streams/Seed"), 404, "stream_not_found")


def test_bad_database_name():
    with seeded() as s, Unchanged(s):
        bad = ["Orders", "-x", "a_b", "a.b", "", "a" * 64, "é", "a b", "../x", "default/"]
        for name in bad:
            expect_error(s.post("/v1/databases", {"name": name}), 400, "invalid_name", "name")
        for body in [{"name": 5}, {"name": None}, {}]:
            expect_error(s.post("/v1/databases", body), 400, "invalid_name")
        for name in ["Orders", "a_b", "a%2Fb", "a" * 64]:
            expect_error(s.get(f"/v1/databases/{name}/events"), 400, "invalid_name")
            expect_error(s.post(f"/v1/databases/{name}/streams/s/events", GOOD), 400,
                         "invalid_name")
        st, _, body = s.get("/v1/databases")
        check([d["name"] for d in body["databases"]] == ["default"], f"databases {body!r}")
        # the longest valid name is fine
        st, _, _ = s.post("/v1/databases", {"name": "a" * 63})
        check(st == 201, f"63-character name: {st}")
        expect_error(s.get("/v1/databases/%zz"), 400, "invalid_path")


def test_bad_stream_name():
    with seeded() as s, Unchanged(s):
        for enc in ["bad%01name", "%7F", "x%0Ay", "%FF", "%C3%28", "%ED%A0%80", "s" * 257]:
            expect_error(s.post(f"/v1/databases/default/streams/{enc}/events", GOOD), 400,
                         "invalid_name")
            expect_error(s.get(f"/v1/databases/default/streams/{enc}/events"), 400,
                         "invalid_name")
            expect_error(s.get(f"/v1/databases/default/streams/{enc}"), 400, "invalid_name")
        expect_error(s.post("/v1/databases/default/streams/%00/events", GOOD), 400)
        expect_error(s.post("/v1/databases/default/streams/a%2/events", GOOD), 400,
                     "invalid_path")
    with seeded() as s:
        st, _, _ = s.post("/v1/databases/default/streams/" + "s" * 256 + "/events", GOOD)
        check(st == 201, f"256-byte stream name: {st}")


def bad_event(s, event, field, code="invalid_event", status=400):
    expect_error(s.post(APPEND, {"events": [{"type": "ok", "data": 0}, event]}), status, code,
                 field)


def test_bad_event_fields():
    with seeded() as s, Unchanged(s):
        for bad_id in ["not-a-uuid", "", "0192", 123, "0192d0c0-0000-7000-8000-00000000000g",
                       "0192d0c0-0000-7000-8000-0000000000001", ["x"]]:
            bad_event(s, {"type": "t", "data": 1, "id": bad_id}, "events[1].id")
        for bad_time in ["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                         "2026-11-28", "2026-11-28T25:00:00Z", "2026-11-28T10:00:00",
                         "2026-11-28T10:00:00+25:00", 1764324000, "", "2026-11-28T10:00:00.Z"]:
            bad_event(s, {"type": "t", "data": 1, "time": bad_time}, "events[1].time")
        bad_event(s, {"type": "t", "data": 1, "colour": "red"}, "events[1].colour")
        bad_event(s, {"type": "t", "data": 1, "Type": "x"}, "events[1].Type")
        bad_event(s, {"type": "t", "data": 1, "position": 3}, "events[1].position")
        bad_event(s, {"data": 1}, "events[1].type")
        bad_event(s, {"type": "", "data": 1}, "events[1].type")
        bad_event(s, {"type": "a\u0001b", "data": 1}, "events[1].type")
        bad_event(s, {"type": "t" * 257, "data": 1}, "events[1].type")
        bad_event(s, {"type": 7, "data": 1}, "events[1].type")
        bad_event(s, {"type": "t"}, "events[1].data")
        bad_event(s, {"type": "t", "data": 1, "metadata": [1]}, "events[1].metadata")
        bad_event(s, {"type": "t", "data": 1, "metadata": "m"}, "events[1].metadata")
        bad_event(s, {"type": "t", "data": 1, "tags": "x"}, "events[1].tags")
        bad_event(s, {"type": "t", "data": 1, "tags": [""]}, "events[1].tags")
        bad_event(s, {"type": "t", "data": 1, "tags": [1]}, "events[1].tags")
        bad_event(s, {"type": "t", "data": 1, "tags": ["x" * 257]}, "events[1].tags")
        bad_event(s, {"type": "t", "data": 1, "tags": [f"t{i}" for i in range(65)]},
                  "events[1].tags")
        expect_error(s.post(APPEND, {"events": [1]}), 400, "invalid_event", "events[0]")
        # limits are inclusive
    with seeded() as s:
        st, _, ans = s.post(APPEND, {"events": [{"type": "t" * 256, "data": 1,
                                                 "tags": ["x" * 256] + [f"t{i}" for i in range(63)]}]})
        check(st == 201, f"256-byte type, 64 tags of up to 256 bytes: {st} {ans!r}")


def test_bad_request_shape():
    with seeded() as s, Unchanged(s):
        expect_error(s.post(APPEND, {"events": []}), 400, "invalid_request", "events")
        expect_error(s.post(APPEND, {}), 400, "invalid_request", "events")
        expect_error(s.post(APPEND, {"events": {"type": "t", "data": 1}}), 400, "invalid_request",
                     "events")
        expect_error(s.post(APPEND, {"events": None}), 400, "invalid_request", "events")
        expect_error(s.post(APPEND, {"events": [{"type": "t", "data": 1}], "extra": 1}), 400,
                     "invalid_request", "extra")


def test_header_section_too_large():
    """--max-header-bytes 1024: every request head larger than 1024 bytes gets 431."""
    with Server(extra=["--max-header-bytes", "1024"]) as s:
        st, _, _ = s.get("/health")
        check(st == 200, "health")
        wrong = []
        for pad in [1500, 4000, 8500, 9000, 9100, 12000, 40000]:
            req = (b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * pad + b"\r\n\r\n")
            raw = s.raw(req, read_all=False)
            st, _, _ = split_raw(raw)
            if st != 431:
                wrong.append(f"head of {len(req)} bytes: "
                             + (f"status {st}" if st else "connection closed with no answer"))
        st, _, _ = s.get("/health")
        check(st == 200, "server unhealthy after oversized heads")
        check(not wrong, "want 431 for heads over --max-header-bytes 1024, got: " + "; ".join(wrong))


def test_unknown_route():
    with seeded() as s, Unchanged(s):
        for path in ["/v2/databases", "/v1", "/v1/databases/default/streamz",
                     "/v1/databases/default/streams/s/events/1",
                     "/v1/databases/default/events/1/x", "/v1/databases/default/other"]:
            expect_error(s.get(path), 404, "not_found")
        for path in ["/health/", "/v1/databases/", "//health", "/v1/./databases"]:
            expect_error(s.get(path), 400, "invalid_path")  # empty and dot segments
        expect_error(s.post("/v1/databases/default/streams/s/evnts", GOOD), 404, "not_found")


def test_wrong_method():
    with seeded() as s, Unchanged(s):
        cases = [("PUT", "/v1/databases", {"GET", "POST"}),
                 ("DELETE", "/health", {"GET"}),
                 ("POST", "/health", {"GET"}),
                 ("PUT", "/v1/databases/default/events", {"GET", "POST"}),
                 ("PUT", "/v1/databases/default", {"GET", "PATCH", "DELETE"}),
                 ("DELETE", "/v1/databases/default/streams/s/events", {"GET", "POST"}),
                 ("PATCH", "/v1/databases/default/streams/s", {"GET", "DELETE"}),
                 ("DELETE", "/v1/databases/default/events/1", {"GET"})]
        for method, path, allowed in cases:
            body = GOOD if method in ("PUT", "POST", "PATCH") else None
            st, h, b = s.request(method, path, body=body)
            expect_error((st, h, b), 405, "method_not_allowed")
            got = {m.strip() for m in h.get("allow", "").split(",") if m.strip()}
            check(got >= allowed and got <= allowed | {"HEAD"},
                  f"{method} {path}: Allow {h.get('allow')!r}, want {sorted(allowed)}")


def test_bad_query_parameters():
    with seeded() as s, Unchanged(s):
        paths = ["/v1/databases/default/events", "/v1/databases/default/streams/seed/events"]
        for p in paths:
            for q, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"),
                             ("limit=abc", "limit"), ("limit=", "limit"), ("from=abc", "from"),
                             ("from=-1", "from"), ("from=1.5", "from"),
                             ("from=99999999999999999999999", "from"),
                             ("direction=sideways", "direction"), ("direction=", "direction"),
                             ("direction=BACKWARD", "direction"), ("limit=%zz", "limit"),
                             ("from=%2", "from"), ("direction=%zz", "direction")]:
                expect_error(s.get(f"{p}?{q}"), 400, "invalid_parameter", field)
            for q in ["limit=1", "limit=1000", "direction=backward", "from=1", "direction=forward"]:
                st, _, body = s.get(f"{p}?{q}")
                check(st == 200, f"{p}?{q}: {st} {body!r}")


def test_storage_full():
    with Server(extra=["--max-db-bytes", str(1 << 20)]) as s:
        acked = 0
        for _ in range(40):
            before = s.db_info()
            st, _, ans = s.append("big", [{"type": "t", "data": "x" * 50000}] * 5)
            if st == 201:
                acked += 5
                continue
            expect_error((st, None, ans), 507, "storage_full")
            after = s.db_info()
            check(after["head"] == before["head"] and after["headHash"] == before["headHash"],
                  f"a 507 append changed the database: {before['head']} -> {after['head']}")
            break
        else:
            check(False, "1 MiB database never answered 507 storage_full")
        check(acked > 0 and s.head() == acked, f"head {s.head()} != acknowledged {acked}")
        st, _, _ = s.get("/v1/databases/default/streams/big/events?limit=3")
        check(st == 200, f"reads fail after 507: {st}")
        check(s.stop() == 0, "stop after 507")
        s.start()
        check(s.head() == acked, f"after restart head {s.head()} != {acked}")
