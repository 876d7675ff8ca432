"""Optimistic concurrency: expectedVersion as a number, 0, "any", "no_stream", "exists"."""
from harness import Server, check, expect_error

EV = [{"type": "t", "data": {"x": 1}}]


def conflict(s, stream, expected, actual):
    """Asserts a 409 wrong_expected_version with actualVersion, and that nothing was written."""
    before = s.db_info()
    body = expect_error(s.append(stream, EV + EV, expected=expected), 409,
                        "wrong_expected_version")
    check(body["error"].get("actualVersion") == actual,
          f"expectedVersion {expected!r} on {stream}: actualVersion "
          f"{body['error'].get('actualVersion')!r}, want {actual}")
    after = s.db_info()
    check(after["head"] == before["head"] and after["headHash"] == before["headHash"] and
          after["events"] == before["events"] and after["streams"] == before["streams"],
          f"a refused append changed the database: {before} -> {after}")


def ok(s, stream, expected, version, n=1):
    st, _, ans = s.append(stream, EV * n, expected=expected)
    check(st == 201, f"expectedVersion {expected!r} on {stream}: {st} {ans!r}")
    check(ans["version"] == version, f"version {ans['version']}, want {version}")
    return ans


def test_expected_version_number():
    with Server() as s:
        conflict(s, "a", 1, 0)          # stream does not exist: actual 0
        conflict(s, "a", 5, 0)
        ok(s, "a", 0, 1)                 # 0 = must not exist
        conflict(s, "a", 0, 1)
        conflict(s, "a", 2, 1)
        ok(s, "a", 1, 3, n=2)
        conflict(s, "a", 1, 3)
        conflict(s, "a", 4, 3)
        conflict(s, "a", 2**62, 3)
        ok(s, "a", 3, 4)
        expect_error(s.append("a", EV, expected=-1), 400, "invalid_expected_version",
                     "expectedVersion")
        expect_error(s.append("a", EV, expected=1.5), 400, "invalid_expected_version")
        expect_error(s.append("a", EV, expected="4"), 400, "invalid_expected_version")
        expect_error(s.append("a", EV, expected="maybe"), 400, "invalid_expected_version")
        expect_error(s.append("a", EV, expected=True), 400, "invalid_expected_version")
        check(s.head() == 4, f"head {s.head()}")
        st, _, info = s.get("/v1/databases/default/streams/a")
        check(info["version"] == 4, f"stream a version {info['version']}")


def test_expected_version_keywords():
    with Server() as s:
        conflict(s, "k", "exists", 0)
        ok(s, "k", "no_stream", 1)
        conflict(s, "k", "no_stream", 1)
        ok(s, "k", "exists", 2)
        ok(s, "k", "any", 3)
        ok(s, "k", None, 4)              # omitted = any
        st, _, ans = s.post("/v1/databases/default/streams/k/events",
                            {"events": EV, "expectedVersion": None})
        check(st == 201 and ans["version"] == 5, f"expectedVersion null: {st} {ans!r}")
        ok(s, "fresh", "any", 1)
        conflict(s, "fresh", "no_stream", 1)
        # a stream in another database does not count
        s.post("/v1/databases", {"name": "other"})
        st, _, ans = s.append("k", EV, expected="no_stream", db="other")
        check(st == 201, f"no_stream in another database: {st} {ans!r}")
        check(s.head() == 6, f"head {s.head()}")


def test_conflict_in_batch_writes_nothing():
    with Server() as s:
        ok(s, "b", 0, 3, n=3)
        big = [{"type": "t", "data": i} for i in range(50)]
        body = expect_error(s.append("b", big, expected=2), 409, "wrong_expected_version")
        check(body["error"]["actualVersion"] == 3, f"{body!r}")
        check(s.head() == 3, "refused batch was partly written")
        evs = s.read_stream("b")
        check(len(evs) == 3, f"stream b has {len(evs)} events")
        st, _, ans = s.append("b", big, expected=3)
        check(st == 201 and ans["version"] == 53 and ans["position"] == 53, f"{st} {ans!r}")
