"""Atomic appends across streams (POST /v1/databases/{db}/events), stream-less DCB events (stored
in the reserved stream `$dcb`), the DCB `condition` (failIfEventsMatch / after), EvidentSource
`conditions` (min / max / range) and idempotent event ids (re-sent events acknowledged with
`duplicate: true`, nothing written).

What a condition's query matches is taken from POST /v1/databases/{db}/query (which already
works and has its own tests), so the condition checks are compared with the server's own query
answers. Every refused request is also checked to have written nothing (head, headHash, event
and stream counts unchanged)."""
import re
import threading
import uuid

from harness import Server, check, expect_error, quote, run_cli, wait_until

DB = "default"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DUP_FIELD_RE = re.compile(r"^(appends\[\d+\]\.)?events\[\d+\]\.id$")
JSON_HDR = {"Content-Type": "application/json"}

# ---------------------------------------------------------------- helpers


def multi_path(db=DB):
    return f"/v1/databases/{db}/events"


def post_multi(s, body, db=DB, conn=None):
    return s.post(multi_path(db), body, conn=conn)


def ev(type_, data=0, **kw):
    e = {"type": type_, "data": data}
    e.update(kw)
    return e


def new_id():
    return str(uuid.uuid4())


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


class Unchanged:
    """Context: asserts head, headHash and the event and stream counts are the same at exit."""

    def __init__(self, s, db=DB):
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
    st, _, ans = s.append("seed", [ev("t")])
    check(st == 201, f"seed append: {st} {ans!r}")
    return s


def refused(resp, status, code=None, field=None):
    """An error answer whose field is `field` or a path below it ('appends[1]' accepts
    'appends[1].stream'). code may be a set of acceptable codes."""
    st, _, body = resp
    codes = code if isinstance(code, (set, frozenset, tuple, list)) else None
    body = expect_error(resp, status, None if codes else code)
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"no error object in {st} {body!r}")
    if codes:
        check(body["error"].get("code") in codes,
              f"expected error.code in {sorted(codes)}, got {body['error'].get('code')!r}")
    if field is not None:
        f = body["error"].get("field")
        check(isinstance(f, str) and (f == field or f.startswith(field + "[") or
                                      f.startswith(field + ".")),
              f"expected error.field {field!r} (or below it), got {f!r} in {body!r}")
    return body


def err_member(body, name):
    """A member of a 409 answer (error.<name>; the top level is accepted too)."""
    err = body.get("error") or {}
    if name in err:
        return err[name]
    return body.get(name)


def conflicting(body, what=""):
    cp = err_member(body, "conflictingPositions")
    check(isinstance(cp, list) and all(is_int(p) for p in cp),
          f"{what}: conflictingPositions {cp!r} in {body!r}")
    check(all(a < b for a, b in zip(cp, cp[1:])), f"{what}: conflictingPositions not ascending: "
                                                  f"{cp}")
    check(len(cp) <= 16, f"{what}: {len(cp)} conflictingPositions > 16")
    return cp


def last_position(body, what=""):
    lp = err_member(body, "lastPosition")
    check(is_int(lp), f"{what}: lastPosition {lp!r} in {body!r}")
    return lp


def condition_failed(resp, field=None, what=""):
    st, _, body = resp
    check(st == 409, f"{what}: expected 409 condition_failed, got {st} {body!r}")
    return expect_error(resp, 409, "condition_failed", field)


def check_multi_answer(ans, what=""):
    """The 201 shape: position, appends[i].{stream,version,position,events[j].{id,position,
    version}}, recorded; positions gap-free and consecutive in part order."""
    check(isinstance(ans, dict), f"{what}: answer {ans!r}")
    check(is_int(ans.get("position")), f"{what}: position {ans.get('position')!r}")
    check(isinstance(ans.get("recorded"), str) and ans["recorded"],
          f"{what}: recorded {ans.get('recorded')!r}")
    parts = ans.get("appends")
    check(isinstance(parts, list) and parts, f"{what}: appends {parts!r}")
    flat = []
    for i, p in enumerate(parts):
        check(isinstance(p, dict) and {"stream", "version", "position", "events"} <= set(p),
              f"{what}: appends[{i}] {p!r}")
        evs = p["events"]
        check(isinstance(evs, list) and evs, f"{what}: appends[{i}].events {evs!r}")
        for j, e in enumerate(evs):
            check({"id", "position", "version"} <= set(e), f"{what}: appends[{i}].events[{j}]"
                                                           f" {e!r}")
            check(isinstance(e["id"], str) and UUID_RE.match(e["id"]),
                  f"{what}: id {e['id']!r} is not a canonical UUID")
            check(e["version"] == evs[0]["version"] + j,
                  f"{what}: appends[{i}] versions not consecutive: {evs!r}")
        check(p["position"] == evs[-1]["position"] and p["version"] == evs[-1]["version"],
              f"{what}: appends[{i}] position/version are not its last event's: {p!r}")
        flat.extend(e["position"] for e in evs)
    check(flat == list(range(flat[0], flat[0] + len(flat))),
          f"{what}: positions not consecutive in part order: {flat}")
    check(ans["position"] == flat[-1], f"{what}: position {ans['position']} != last {flat[-1]}")
    return ans


def multi_ok(s, body, db=DB, what="", conn=None):
    st, _, ans = post_multi(s, body, db, conn=conn)
    check(st == 201, f"{what}: multi append: {st} {ans!r}")
    check(ans.get("duplicate") in (None, False), f"{what}: a new append says duplicate: {ans!r}")
    return check_multi_answer(ans, what)


def append_ok(s, stream, events, expected=None, db=DB):
    st, _, ans = s.append(stream, events, expected=expected, db=db)
    check(st == 201, f"append to {stream}: {st} {ans!r}")
    return ans


def matching(s, query, db=DB):
    """Positions matching a query (POST /query, one page) and the head it ran on."""
    q = dict(query)
    q["limit"] = 1000
    st, _, page = s.post(f"/v1/databases/{db}/query", q)
    check(st == 200, f"query {query!r}: {st} {page!r}")
    check(page["hasMore"] is False, f"query {query!r}: more than one page")
    return [e["position"] for e in page["events"]], page["head"]


def wait_indexed(s, db=DB):
    head = s.head(db)
    wait_until(lambda: (s.db_info(db).get("indexer") or {}).get("indexed", 0) >= head,
               timeout=10)


def run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    check(not any(t.is_alive() for t in ts), "threads did not finish")
    check(not errors, "; ".join(errors[:5]))


def strip_ack(ans):
    """What an acknowledgement must repeat: positions, versions and ids (not recorded)."""
    out = {k: ans[k] for k in ("stream", "version", "position") if k in ans}
    if "events" in ans:
        out["events"] = [{k: e[k] for k in ("id", "position", "version")} for e in ans["events"]]
    if "appends" in ans:
        out["appends"] = [strip_ack(p) for p in ans["appends"]]
    return out


def expect_duplicate_ack(s, resp, first, what=""):
    """A re-sent request: 2xx with duplicate true, the first answer's positions and versions,
    and nothing written."""
    st, _, ans = resp
    check(st in (200, 201), f"{what}: re-sent request answered {st} {ans!r}")
    check(isinstance(ans, dict) and ans.get("duplicate") is True,
          f"{what}: answer lacks duplicate: true: {ans!r}")
    check(strip_ack(ans) == strip_ack(first),
          f"{what}: acknowledgement differs from the first answer:\n  got  {strip_ack(ans)}\n"
          f"  want {strip_ack(first)}")
    return ans

# ---------------------------------------------------------------- multi-stream appends


def test_multi_stream_append_atomic_shape_and_read_back():
    with Server() as s:
        append_ok(s, "order-1", [ev("order.created", 1), ev("order.item", 2)])
        given = new_id()
        body = {"appends": [
            {"stream": "order-1", "expectedVersion": 2,
             "events": [ev("order.item", 3),
                        ev("order.placed", 4, id=given, tags=["customer:7"],
                           metadata={"u": "u1"})]},
            {"stream": "stock-7", "events": [ev("stock.reserved", {"sku": 7})]},
            {"stream": "mail/out", "expectedVersion": "no_stream",
             "events": [ev("mail.queued", "a"), ev("mail.queued", "b"),
                        ev("mail.queued", "c")]}]}
        ans = multi_ok(s, body, what="three parts")
        check(ans["position"] == 8, f"position {ans['position']}, want 8")
        check([p["stream"] for p in ans["appends"]] == ["order-1", "stock-7", "mail/out"],
              f"parts not in request order: {ans!r}")
        want = [[(3, 3), (4, 4)], [(5, 1)], [(6, 1), (7, 2), (8, 3)]]
        for i, (p, w) in enumerate(zip(ans["appends"], want)):
            got = [(e["position"], e["version"]) for e in p["events"]]
            check(got == w, f"appends[{i}] (position, version): {got}, want {w}")
        check([p["version"] for p in ans["appends"]] == [4, 1, 3], f"part versions {ans!r}")
        check(ans["appends"][0]["events"][1]["id"] == given, "client id not echoed")
        ids = [e["id"] for p in ans["appends"] for e in p["events"]]
        check(len(set(ids)) == 6, f"ids not unique: {ids}")
        for i in ids:
            if i != given:
                check(uuid.UUID(i).version == 7, f"default id {i} is not a UUIDv7")

        log = s.read_log()
        check([e["position"] for e in log] == list(range(1, 9)), "log positions")
        got = [(e["stream"], e["version"], e["type"], e["data"]) for e in log[2:]]
        check(got == [("order-1", 3, "order.item", 3), ("order-1", 4, "order.placed", 4),
                      ("stock-7", 1, "stock.reserved", {"sku": 7}),
                      ("mail/out", 1, "mail.queued", "a"), ("mail/out", 2, "mail.queued", "b"),
                      ("mail/out", 3, "mail.queued", "c")], f"log read back {got}")
        check([e["id"] for e in log[2:]] == ids, "ids in the log differ from the answer")
        check(all(e["recorded"] == ans["recorded"] for e in log[2:]),
              "the events of one atomic append have different recorded times (or not the "
              "answer's)")
        check(log[3]["tags"] == ["customer:7"] and log[3]["metadata"] == {"u": "u1"},
              f"tags/metadata {log[3]!r}")
        check([e["data"] for e in s.read_stream("order-1")] == [1, 2, 3, 4], "order-1 read")
        check([e["data"] for e in s.read_stream("stock-7")] == [{"sku": 7}], "stock-7 read")
        check([e["data"] for e in s.read_stream("mail/out")] == ["a", "b", "c"],
              "mail/out read")
        st, _, info = s.get(f"/v1/databases/default/streams/{quote('mail/out')}")
        check(st == 200 and info["version"] == 3 and info["firstPosition"] == 6 and
              info["lastPosition"] == 8, f"stream info {st} {info!r}")
        stats = s.db_info()
        check(stats["head"] == 8 and stats["events"] == 8 and stats["streams"] == 3,
              f"stats {stats!r}")
        # another database has its own positions; an unknown one is 404
        st, _, _ = s.post("/v1/databases", {"name": "other"})
        check(st == 201, "create other")
        ans = multi_ok(s, {"appends": [{"stream": "order-1", "events": [ev("x")],
                                        "expectedVersion": 0},
                                       {"stream": "b", "events": [ev("y")]}]}, db="other")
        check(ans["position"] == 2 and
              [p["position"] for p in ans["appends"]] == [1, 2], f"other database: {ans!r}")
        check(s.head() == 8, "an append to another database moved the default head")
        expect_error(post_multi(s, body, db="nope"), 404, "database_not_found")


def test_multi_stream_concurrent_requests_not_interleaved():
    """8 clients send 15 multi-stream appends each (2-3 parts, 1-3 events per part, one part on
    a stream every client writes): each request's events occupy consecutive positions in part
    order, the positions of all requests are exactly 1..N, and every stream's versions follow
    the log order without gaps."""
    threads, per = 8, 15
    with Server() as s:
        acked = []
        lock = threading.Lock()

        def worker(i):
            c = s.connect()
            try:
                for k in range(per):
                    parts = [{"stream": f"t{i}-a",
                              "events": [ev("a", [i, k, j]) for j in range(1 + k % 3)]},
                             {"stream": "common", "events": [ev("c", [i, k])]}]
                    if k % 2:
                        parts.append({"stream": f"t{i}-b",
                                      "events": [ev("b", [i, k, j]) for j in range(2)]})
                    ans = multi_ok(s, {"appends": parts}, conn=c, what=f"thread {i} #{k}")
                    with lock:
                        acked.append((parts, ans))
            finally:
                c.close()

        run_threads(threads, worker)
        log = s.read_log()
        total = sum(len(p["events"]) for parts, _ in acked for p in parts)
        check(len(log) == total and [e["position"] for e in log] == list(range(1, total + 1)),
              f"log has {len(log)} events, want positions 1..{total}")
        seen = set()
        for parts, ans in acked:
            for p, ap in zip(parts, ans["appends"]):
                check(ap["stream"] == p["stream"], f"part order {ans!r}")
                for e_sent, e_ack in zip(p["events"], ap["events"]):
                    stored = log[e_ack["position"] - 1]
                    check(e_ack["position"] not in seen, f"position {e_ack['position']} twice")
                    seen.add(e_ack["position"])
                    check((stored["stream"], stored["data"], stored["version"], stored["id"]) ==
                          (p["stream"], e_sent["data"], e_ack["version"], e_ack["id"]),
                          f"position {e_ack['position']}: stored {stored!r}, acknowledged "
                          f"{e_ack!r} for {p['stream']} {e_sent!r}")
        versions = {}
        for e in log:
            versions[e["stream"]] = versions.get(e["stream"], 0) + 1
            check(e["version"] == versions[e["stream"]],
                  f"position {e['position']}: {e['stream']} version {e['version']}, want "
                  f"{versions[e['stream']]}")
        check(versions["common"] == threads * per, f"common has {versions['common']} events")


def test_multi_stream_expected_version_per_part():
    with Server() as s:
        append_ok(s, "a", [ev("t"), ev("t")])
        append_ok(s, "b", [ev("t")])
        ans = multi_ok(s, {"appends": [
            {"stream": "a", "events": [ev("t")], "expectedVersion": 2},
            {"stream": "b", "events": [ev("t")], "expectedVersion": "exists"},
            {"stream": "c", "events": [ev("t")], "expectedVersion": "no_stream"},
            {"stream": "d", "events": [ev("t")], "expectedVersion": "any"},
            {"stream": "e", "events": [ev("t")], "expectedVersion": 0},
            {"stream": "f", "events": [ev("t")]}]}, what="every kind of expectedVersion")
        check([p["version"] for p in ans["appends"]] == [3, 2, 1, 1, 1, 1] and
              ans["position"] == 9, f"answer {ans!r}")
        # now a=3, b=2, c..f=1; g and h do not exist
        cases = [([("a", 2), ("b", 2)], 0, 3),
                 ([("a", 3), ("b", 5)], 1, 2),
                 ([("a", 3), ("g", "exists")], 1, 0),
                 ([("g", "no_stream"), ("c", "no_stream")], 1, 1),
                 ([("g", 0), ("h", "any"), ("d", 0)], 2, 1),
                 ([("a", "any"), ("b", 2), ("e", 1), ("f", 7)], 3, 1),
                 ([("g", 1), ("a", 3)], 0, 0)]
        for parts, idx, actual in cases:
            body = {"appends": [{"stream": n, "events": [ev("t", n), ev("t", n)],
                                 "expectedVersion": x} for n, x in parts]}
            with Unchanged(s):
                b = expect_error(post_multi(s, body), 409, "wrong_expected_version",
                                 f"appends[{idx}].expectedVersion")
            check(err_member(b, "actualVersion") == actual,
                  f"{parts}: actualVersion {err_member(b, 'actualVersion')!r}, want {actual}")
        for n in ("g", "h"):
            expect_error(s.get(f"/v1/databases/default/streams/{n}"), 404, "stream_not_found")
        check(len(s.read_stream("a")) == 3 and len(s.read_stream("c")) == 1,
              "a refused request wrote to a stream")
        with Unchanged(s):
            for bad in [-1, 1.5, "4", "maybe", True, {}]:
                refused(post_multi(s, {"appends": [
                    {"stream": "a", "events": [ev("t")]},
                    {"stream": "b", "events": [ev("t")], "expectedVersion": bad}]}),
                    400, "invalid_expected_version", "appends[1].expectedVersion")
        ans = multi_ok(s, {"appends": [{"stream": "a", "events": [ev("t")], "expectedVersion": 3},
                                       {"stream": "g", "events": [ev("t")],
                                        "expectedVersion": "no_stream"}]})
        check([p["version"] for p in ans["appends"]] == [4, 1] and ans["position"] == 11,
              f"after the refusals: {ans!r}")

# ---------------------------------------------------------------- validation


def test_multi_stream_validation_parts():
    with seeded() as s:
        good = {"stream": "x", "events": [ev("t")]}
        with Unchanged(s):
            for appends in ([], {}, "x", 5):
                refused(post_multi(s, {"appends": appends}), 400, "invalid_request", "appends")
            parts = [{"stream": f"s{i}", "events": [ev("t")]} for i in range(101)]
            refused(post_multi(s, {"appends": parts}), 400, "invalid_request", "appends")
            # the same stream twice, with an expectedVersion
            refused(post_multi(s, {"appends": [good, {"stream": "y", "events": [ev("t")]},
                                               {"stream": "x", "events": [ev("u")],
                                                "expectedVersion": 1}]}),
                    400, "invalid_request", "appends[2].expectedVersion")
            # a part without events
            for evs in (None, [], {}, "e"):
                part = {"stream": "y"}
                if evs is not None:
                    part["events"] = evs
                refused(post_multi(s, {"appends": [good, part]}), 400, "invalid_request",
                        "appends[1].events")
            refused(post_multi(s, {"appends": [good, 5]}), 400, "invalid_request", "appends[1]")
            refused(post_multi(s, {"appends": [good, {"events": [ev("t")]}]}), 400,
                    {"invalid_request", "invalid_name"}, "appends[1].stream")
            refused(post_multi(s, {"appends": [good, dict(good, stream="z", colour=1)]}), 400,
                    "invalid_request", "appends[1].colour")
            # a bad event inside a part names its path
            refused(post_multi(s, {"appends": [good, {"stream": "y", "events": [
                ev("t"), {"data": 1}]}]}), 400, "invalid_event", "appends[1].events[1].type")
            refused(post_multi(s, {"appends": [good, {"stream": "y", "events": [
                ev("t", tags="x")]}]}), 400, "invalid_event", "appends[1].events[0].tags")
            # bad stream names
            for name in ["", "a\u0001b", "x\ny", "\u007f", "s" * 257]:
                refused(post_multi(s, {"appends": [good, {"stream": name,
                                                          "events": [ev("t")]}]}),
                        400, "invalid_name", "appends[1].stream")
            for name in [5, None, ["x"]]:
                refused(post_multi(s, {"appends": [good, {"stream": name,
                                                          "events": [ev("t")]}]}),
                        400, {"invalid_name", "invalid_request"}, "appends[1].stream")
        # the limits are inclusive: 100 parts, a 256-byte name
        parts = [{"stream": f"s{i}", "events": [ev("t", i)]} for i in range(100)]
        ans = multi_ok(s, {"appends": parts}, what="100 parts")
        check(ans["position"] == 101 and len(ans["appends"]) == 100, f"100 parts: {ans!r}")
        ans = multi_ok(s, {"appends": [{"stream": "s" * 256, "events": [ev("t")]}]})
        check(ans["appends"][0]["stream"] == "s" * 256, "256-byte stream name")


def test_multi_stream_append_names_a_stream_in_several_parts():
    """A stream may appear in several parts when none of them carries an expectedVersion
    ("any" is none): one answer entry per part in request order, positions consecutive across
    the request, versions consecutive per stream; a re-sent request is a duplicate; a stream's
    size limit holds for all its parts together. An expectedVersion on any of the parts is 400
    naming that part."""
    with seeded() as s:
        append_ok(s, "A", [ev("a", 0)])  # A: version 1, position 2
        ids = [new_id() for _ in range(4)]
        body = {"appends": [
            {"stream": "A", "events": [ev("a", 1, id=ids[0])]},
            {"stream": "B", "events": [ev("b", 2, id=ids[1]), ev("b", 3, id=ids[2])]},
            {"stream": "A", "expectedVersion": "any", "events": [ev("a", 4, id=ids[3])]}]}
        ans = multi_ok(s, body, what="A, B, A")
        check([p["stream"] for p in ans["appends"]] == ["A", "B", "A"],
              f"one entry per part in request order: {ans!r}")
        got = [[(e["position"], e["version"], e["id"]) for e in p["events"]]
               for p in ans["appends"]]
        want = [[(3, 2, ids[0])], [(4, 1, ids[1]), (5, 2, ids[2])], [(6, 3, ids[3])]]
        check(got == want, f"(position, version, id) per part: {got}, want {want}")
        check(ans["position"] == 6, f"position {ans['position']}")
        log = s.read_log()
        check([(e["stream"], e["version"], e["data"]) for e in log[2:]] ==
              [("A", 2, 1), ("B", 1, 2), ("B", 2, 3), ("A", 3, 4)], f"log {log[2:]!r}")
        check([(e["position"], e["version"], e["data"]) for e in s.read_stream("A")] ==
              [(2, 1, 0), (3, 2, 1), (6, 3, 4)], "stream A read back")
        st, _, info = s.get("/v1/databases/default/streams/A")
        check(st == 200 and info["version"] == 3 and info["lastPosition"] == 6,
              f"stream A info {st} {info!r}")
        with Unchanged(s):
            expect_duplicate_ack(s, post_multi(s, body), ans, "A, B, A re-sent")
            for k, expected in ((0, 3), (2, 3), (0, "no_stream"), (2, "exists")):
                parts = [{"stream": p["stream"], "events": [ev("t")]} for p in body["appends"]]
                parts[k]["expectedVersion"] = expected
                err = refused(post_multi(s, {"appends": parts}), 400, "invalid_request",
                              f"appends[{k}].expectedVersion")
                check("several parts" in err["error"].get("message", ""),
                      f"the message says why: {err!r}")
        s.restart()
        check([(e["position"], e["version"]) for e in s.read_stream("A")] ==
              [(2, 1), (3, 2), (6, 3)], "stream A after a restart")
        ans = multi_ok(s, {"appends": [{"stream": "A", "events": [ev("a", 5)],
                                        "expectedVersion": 3},
                                       {"stream": "B", "events": [ev("b", 6)]}]})
        check([p["version"] for p in ans["appends"]] == [4, 3], f"after a restart: {ans!r}")
        # the size limit: parts that each fit, but not together
        st, _, _ = s.post("/v1/databases", {"name": "small",
                                            "settings": {"maxStreamSizeBytes": 1000}})
        check(st == 201, f"create small: {st}")
        big = ev("x", "a" * 200)  # about 320 bytes stored: 3 fit in 1000, 4 do not
        split = {"appends": [{"stream": "s", "events": [big, big]},
                             {"stream": "t", "events": [big]},
                             {"stream": "s", "events": [big, big]}]}
        with Unchanged(s, "small"):
            refused(post_multi(s, split, db="small"), 413, "stream_too_large",
                    "appends[2].events")
        split["appends"][2]["events"] = [big]
        multi_ok(s, split, db="small", what="within the limit")


def test_multi_stream_validation_top_level():
    with seeded() as s, Unchanged(s):
        part = {"stream": "x", "events": [ev("t")]}
        refused(post_multi(s, {"appends": [part], "events": [ev("t")]}), 400, "invalid_request")
        refused(post_multi(s, {}), 400, "invalid_request")
        refused(post_multi(s, {"condition": {"failIfEventsMatch": {"types": ["t"]}}}), 400,
                "invalid_request")
        refused(post_multi(s, {"conditions": [{"query": {"types": ["t"]}, "max": 0}]}), 400,
                "invalid_request")
        for member in ("expectedVersion", "stream", "colour", "Appends"):
            refused(post_multi(s, {"appends": [part], member: 1}), 400, "invalid_request",
                    member)
        for member in ("stream", "colour", "Events"):
            refused(post_multi(s, {"events": [ev("t")], member: 1}), 400, "invalid_request",
                    member)
        # stream-less events: same rules as in a single-stream append
        for evs in ([], {}, "e", 5):
            refused(post_multi(s, {"events": evs}), 400, "invalid_request", "events")
        refused(post_multi(s, {"events": [ev("t"), {"type": "", "data": 1}]}), 400,
                "invalid_event", "events[1].type")
        refused(post_multi(s, {"events": [ev("t", colour="red")]}), 400, "invalid_event",
                "events[0].colour")
        # a member named twice
        raw = ('{"appends": [{"stream": "x", "events": [{"type": "t", "data": 1}]}],'
               ' "appends": [{"stream": "y", "events": [{"type": "t", "data": 1}]}]}')
        refused(s.post(multi_path(), raw, headers=JSON_HDR), 400, "invalid_request", "appends")
        expect_error(s.post(multi_path(), '{"appends": [', headers=JSON_HDR), 400,
                     "invalid_json")


def test_reserved_dollar_stream_names():
    with seeded() as s:
        good = {"stream": "ok", "events": [ev("t")]}
        with Unchanged(s):
            for name in ["$dcb", "$x", "$", "$all", "$dcb-1"]:
                expect_error(s.append(name, [ev("t")]), 400, "invalid_name")
                expect_error(s.post(f"/v1/databases/default/streams/{name}/events",
                                    {"events": [ev("t")]}), 400, "invalid_name")
                refused(post_multi(s, {"appends": [good, {"stream": name,
                                                          "events": [ev("t")]}]}),
                        400, "invalid_name", "appends[1].stream")
            # also when the check would otherwise pass or the stream exists
            refused(post_multi(s, {"appends": [{"stream": "$dcb", "events": [ev("t")],
                                                "expectedVersion": "any"}]}),
                    400, "invalid_name", "appends[0].stream")
        # a '$' elsewhere in a name is an ordinary character
        append_ok(s, "a$b", [ev("t")])
        ans = multi_ok(s, {"appends": [{"stream": "x$", "events": [ev("t")]}]})
        check(ans["appends"][0]["stream"] == "x$", f"{ans!r}")
        # and stream-less events do go to $dcb, which stays closed to direct appends
        multi_ok(s, {"events": [ev("t")]})
        expect_error(s.append("$dcb", [ev("t")]), 400, "invalid_name")


def test_condition_validation():
    with seeded() as s:
        part = {"stream": "x", "events": [ev("t")]}
        q = {"types": ["t"]}
        with Unchanged(s):
            bad_condition = [5, "x", [], {},
                             {"failIfEventsMatch": 5},
                             {"failIfEventsMatch": q, "after": -1},
                             {"failIfEventsMatch": q, "after": "3"},
                             {"failIfEventsMatch": q, "after": 1.5},
                             {"failIfEventsMatch": q, "after": True},
                             {"failIfEventsMatch": q, "colour": 1},
                             {"failIfEventsMatch": {"types": [5]}},
                             {"failIfEventsMatch": {"types": "t"}},
                             {"failIfEventsMatch": {"items": [{"types": ["t"]}],
                                                    "selector": {"type": "equals",
                                                                 "attr": {"stream": "x"}}}},
                             {"failIfEventsMatch": {"items": 5}},
                             {"failIfEventsMatch": {"selector": {"type": "nope",
                                                                 "attr": {"stream": "x"}}}},
                             {"failIfEventsMatch": {"bogus": 1}}]
            for c in bad_condition:
                refused(post_multi(s, {"appends": [part], "condition": c}), 400,
                        "invalid_request", "condition")
                refused(post_multi(s, {"events": [ev("t")], "condition": c}), 400,
                        "invalid_request", "condition")
            bad_conditions = [5, {}, "x",
                              [5], [{}], [{"min": 1}], [{"query": 5, "min": 1}],
                              [{"query": q, "min": -1}], [{"query": q, "max": -1}],
                              [{"query": q, "max": "3"}], [{"query": q, "min": 1.5}],
                              [{"query": q, "max": True}],
                              [{"query": q, "max": 1, "colour": 2}],
                              [{"query": {"types": [7]}, "max": 1}],
                              [{"query": {"items": [{"tags": ""}]}, "max": 1}]]
            for c in bad_conditions:
                refused(post_multi(s, {"appends": [part], "conditions": c}), 400,
                        "invalid_request", "conditions")
            # the failing one is named
            refused(post_multi(s, {"appends": [part], "conditions": [
                {"query": q, "max": 5}, {"query": q, "max": 5}, {"query": q, "min": "x"}]}),
                400, "invalid_request", "conditions[2]")
            many = [{"query": {"types": [f"t{i}"]}, "max": 0} for i in range(17)]
            refused(post_multi(s, {"appends": [part], "conditions": many}), 400,
                    "invalid_request", "conditions")
        ans = multi_ok(s, {"appends": [part], "conditions": many[:16]}, what="16 conditions")
        check(ans["position"] == 2, f"16 conditions: {ans!r}")


def test_batch_event_limit_counts_all_parts():
    with seeded(["--max-batch-events", "10"]) as s:
        with Unchanged(s):
            body = {"appends": [{"stream": f"p{i}", "events": [ev("t", j) for j in range(6)]}
                                for i in range(2)]}
            expect_error(post_multi(s, body), 413, "too_many_events")
            body = {"appends": [{"stream": f"p{i}", "events": [ev("t")]} for i in range(11)]}
            expect_error(post_multi(s, body), 413, "too_many_events")
            expect_error(post_multi(s, {"events": [ev("t", j) for j in range(11)]}), 413,
                         "too_many_events")
            body = {"appends": [{"stream": "p", "events": [ev("t", j) for j in range(11)]}]}
            expect_error(post_multi(s, body), 413, "too_many_events")
        body = {"appends": [{"stream": f"p{i}", "events": [ev("t", j) for j in range(5)]}
                            for i in range(2)]}
        ans = multi_ok(s, body, what="10 events in 2 parts with the limit 10")
        check(ans["position"] == 11, f"{ans!r}")
        ans = multi_ok(s, {"events": [ev("t", j) for j in range(10)]}, what="10 DCB events")
        check(ans["position"] == 21, f"{ans!r}")

# ---------------------------------------------------------------- DCB events and condition


def test_dcb_events_stored_in_dcb_stream_and_queryable():
    with Server() as s:
        append_ok(s, "course-1", [ev("course.created", tags=["course:1"])])
        given = new_id()
        ans = multi_ok(s, {"events": [
            ev("student.subscribed", {"s": 7}, tags=["course:1", "student:7"], id=given),
            ev("student.subscribed", {"s": 8}, tags=["course:1", "student:8"],
               subject="students/8")]}, what="DCB events")
        check(len(ans["appends"]) == 1 and ans["appends"][0]["stream"] == "$dcb",
              f"stream-less events must be one part in $dcb: {ans!r}")
        p = ans["appends"][0]
        check(ans["position"] == 3 and p["version"] == 2 and
              [(e["position"], e["version"]) for e in p["events"]] == [(2, 1), (3, 2)],
              f"answer {ans!r}")
        check(p["events"][0]["id"] == given, "client id not echoed")
        ans = multi_ok(s, {"events": [ev("course.renamed", tags=["course:1"])]})
        check(ans["appends"][0]["stream"] == "$dcb" and ans["appends"][0]["version"] == 3 and
              ans["position"] == 4, f"second DCB append: {ans!r}")
        log = s.read_log()
        got = [(e["stream"], e["version"], e["type"], e["tags"]) for e in log[1:]]
        check(got == [("$dcb", 1, "student.subscribed", ["course:1", "student:7"]),
                      ("$dcb", 2, "student.subscribed", ["course:1", "student:8"]),
                      ("$dcb", 3, "course.renamed", ["course:1"])], f"log {got}")
        check(log[1]["id"] == given and log[1]["data"] == {"s": 7} and
              log[2].get("subject") == "students/8", f"log events {log[1:3]!r}")
        for q, want in [({"types": ["student.subscribed"]}, [2, 3]),
                        ({"tags": ["student:7"]}, [2]),
                        ({"tags": ["course:1"]}, [1, 2, 3, 4]),
                        ({"types": ["course.*"], "tags": ["course:1"]}, [1, 4]),
                        ({"items": [{"types": ["course.created"], "tags": ["course:1"]},
                                    {"tags": ["student:8"]}]}, [1, 3])]:
            got, head = matching(s, q)
            check(got == want and head == 4, f"query {q}: {got} (head {head}), want {want}")
        st, _, page = s.get("/v1/databases/default/events?tags=student:8&types=student.*")
        check(st == 200 and [e["position"] for e in page["events"]] == [3],
              f"GET query of DCB events: {st} {page!r}")


def test_dcb_condition_read_then_append():
    """The DCB decision pattern: read with a query, decide, append with failIfEventsMatch = the
    same query and after = the read's head."""
    with Server() as s:
        append_ok(s, "course-1", [ev("course.created", tags=["course:1"])])
        append_ok(s, "course-2", [ev("student.subscribed", tags=["course:2", "student:1"])])
        query = {"items": [{"types": ["student.subscribed"], "tags": ["course:1"]}]}
        got, head = matching(s, query)
        check(got == [] and head == 2, f"read: {got} head {head}")

        def subscribe(student, after, form=None):
            return {"events": [ev("student.subscribed", {"student": student},
                                  tags=["course:1", f"student:{student}"])],
                    "condition": {"failIfEventsMatch": form or query, "after": after}}

        ans = multi_ok(s, subscribe(1, head), what="first decision")
        check(ans["position"] == 3, f"{ans!r}")
        # a second decision taken on the same (now stale) read fails
        with Unchanged(s):
            b = condition_failed(post_multi(s, subscribe(2, head)), what="stale decision")
        check(conflicting(b) == [3], f"conflictingPositions {conflicting(b)}, want [3]")
        check(err_member(b, "after") == head, f"after {err_member(b, 'after')!r}, want {head}")
        # read again, decide again: succeeds
        got, head = matching(s, query)
        check(got == [3] and head == 3, f"re-read: {got} head {head}")
        ans = multi_ok(s, subscribe(2, head), what="decision on a fresh read")
        check(ans["position"] == 4, f"{ans!r}")
        # events that do not match the query, added after the read, do not fail it
        got, head = matching(s, query)
        check(got == [3, 4] and head == 4, f"read: {got} head {head}")
        append_ok(s, "course-2", [ev("student.subscribed", tags=["course:2", "student:3"])])
        multi_ok(s, {"events": [ev("course.renamed", tags=["course:1"])]})
        append_ok(s, "course-1", [ev("course.renamed", tags=["course:1", "student:3"])])
        ans = multi_ok(s, subscribe(3, head), what="non-matching events since the read")
        check(ans["position"] == 8, f"{ans!r}")
        # the top-level form of the same query
        flat = {"types": ["student.subscribed"], "tags": ["course:1"]}
        with Unchanged(s):
            b = condition_failed(post_multi(s, subscribe(4, head, flat)), what="top-level form")
        check(conflicting(b) == [8], f"conflictingPositions {conflicting(b)}, want [8]")
        ans = multi_ok(s, subscribe(4, 8, flat))
        # the condition also guards a multi-stream append
        with Unchanged(s):
            b = condition_failed(post_multi(s, {
                "appends": [{"stream": "course-1", "events": [ev("student.subscribed",
                                                                 tags=["course:1"])]}],
                "condition": {"failIfEventsMatch": query, "after": 5}}))
        check(conflicting(b) == [8, 9], f"conflictingPositions {conflicting(b)}, want [8, 9]")
        check(err_member(b, "after") == 5, f"after {err_member(b, 'after')!r}")


def test_dcb_condition_without_after_and_conflict_cap():
    with Server() as s:
        q = {"tags": ["seat:9"]}
        cond = {"failIfEventsMatch": q}
        ans = multi_ok(s, {"events": [ev("seat.booked", tags=["seat:8"])], "condition": cond},
                       what="nothing matches at all")
        check(ans["position"] == 1, f"{ans!r}")
        append_ok(s, "seats", [ev("seat.booked", tags=["seat:9"])])          # 2
        with Unchanged(s):
            b = condition_failed(post_multi(s, {"events": [ev("seat.booked", tags=["seat:9"])],
                                                "condition": cond}), what="after absent")
            check(conflicting(b) == [2], f"conflictingPositions {conflicting(b)}")
            b = condition_failed(post_multi(s, {"events": [ev("x")], "condition": dict(
                cond, after=0)}), what="after 0")
            check(conflicting(b) == [2], f"conflictingPositions {conflicting(b)}")
            check(err_member(b, "after") == 0, f"after {err_member(b, 'after')!r}")
            b = condition_failed(post_multi(s, {"events": [ev("x")], "condition": dict(
                cond, after=1)}), what="after 1")
            check(conflicting(b) == [2], f"conflictingPositions {conflicting(b)}")
        multi_ok(s, {"events": [ev("x")], "condition": dict(cond, after=2)}, what="after 2")
        # far after the head is fine too
        multi_ok(s, {"events": [ev("x")], "condition": dict(cond, after=1000)})
        # more than 16 conflicts: 16 of them, ascending, all matching and after `after`
        append_ok(s, "seats", [ev("seat.booked", i, tags=["seat:9", f"n:{i}"])
                               for i in range(20)])
        got, _ = matching(s, q)
        check(len(got) == 21, f"matching {got}")
        for after in (None, 0, 2, 10):
            c = dict(cond) if after is None else dict(cond, after=after)
            with Unchanged(s):
                b = condition_failed(post_multi(s, {"events": [ev("x")], "condition": c}),
                                     what=f"after {after}")
            cp = conflicting(b, f"after {after}")
            later = [p for p in got if p > (after or 0)]
            check(len(cp) == min(16, len(later)) and set(cp) <= set(later),
                  f"after {after}: conflictingPositions {cp}; matching after it: {later}")


def test_conditions_and_ids_are_per_database():
    with Server() as s:
        st, _, _ = s.post("/v1/databases", {"name": "other"})
        check(st == 201, "create other")
        shared_id = new_id()
        append_ok(s, "a", [ev("t", tags=["k:1"], id=shared_id)])
        # matching events of another database do not count
        ans = multi_ok(s, {"events": [ev("t", tags=["k:1"])],
                           "condition": {"failIfEventsMatch": {"tags": ["k:1"]}},
                           "conditions": [{"query": {"streams": ["a"]}, "max": 0}]},
                       db="other", what="conditions in another database")
        check(ans["position"] == 1, f"{ans!r}")
        with Unchanged(s, "other"):
            b = condition_failed(post_multi(s, {"events": [ev("t")], "conditions": [
                {"query": {"tags": ["k:1"]}, "max": 0}]}, db="other"), "conditions[0]")
            check(last_position(b) == 1 and conflicting(b) == [1], f"{b!r}")
        # event ids are unique per database: the same id is new in another one
        st, _, ans = s.append("a", [ev("t", tags=["k:1"], id=shared_id)], db="other")
        check(st == 201 and ans.get("duplicate") in (None, False) and ans["position"] == 2,
              f"an id stored in another database: {st} {ans!r}")

# ---------------------------------------------------------------- conditions (min / max)


def test_conditions_min():
    with Server() as s:
        q = {"types": ["account.opened"], "tags": ["acct:1"]}
        body = {"appends": [{"stream": "acct-1", "events": [ev("deposit", 10)]}],
                "conditions": [{"query": q, "min": 1}]}
        with Unchanged(s):
            b = condition_failed(post_multi(s, body), "conditions[0]", "min 1, empty database")
        check(last_position(b) == 0, f"lastPosition {last_position(b)}, want 0")
        append_ok(s, "noise", [ev("account.opened", tags=["acct:2"])])          # 1
        with Unchanged(s):
            b = condition_failed(post_multi(s, body), "conditions[0]", "min 1, no match")
        check(last_position(b) == 0, f"lastPosition {last_position(b)}, want 0")
        append_ok(s, "acct-1", [ev("account.opened", tags=["acct:1"])])         # 2
        ans = multi_ok(s, body, what="min 1 with a match")                      # 3
        check(ans["position"] == 3, f"{ans!r}")
        multi_ok(s, dict(body, conditions=[{"query": q, "min": 2}]), what="min 2")  # 4
        with Unchanged(s):
            b = condition_failed(post_multi(s, dict(body, conditions=[{"query": q, "min": 3}])),
                                 "conditions[0]", "min 3")
        check(last_position(b) == 2, f"lastPosition {last_position(b)}, want 2")
        # with stream-less events too
        ans = multi_ok(s, {"events": [ev("x")], "conditions": [{"query": q, "min": 1}]})
        check(ans["position"] == 5, f"{ans!r}")
        with Unchanged(s):
            b = condition_failed(post_multi(s, {"events": [ev("x")], "conditions": [
                {"query": {"types": ["never"]}, "min": 1}]}), "conditions[0]")
        check(last_position(b) == 0, f"{b!r}")


def test_conditions_max():
    with Server() as s:
        q = {"streams": ["inv-1"]}

        def body(mx, q=q):
            return {"appends": [{"stream": "other", "events": [ev("o")]}],
                    "conditions": [{"query": q, "max": mx}]}

        multi_ok(s, body(0), what="max 0, nothing matches")                    # 1
        append_ok(s, "inv-1", [ev("item")])                                     # 2
        with Unchanged(s):
            b = condition_failed(post_multi(s, body(0)), "conditions[0]", "max 0")
        check(last_position(b) == 2 and conflicting(b) == [2], f"max 0: {b!r}")
        with Unchanged(s):
            b = condition_failed(post_multi(s, body(1)), "conditions[0]", "max 1")
        check(last_position(b) == 2 and conflicting(b) == [2], f"max 1: {b!r}")
        multi_ok(s, body(2), what="max 2 = newest match")                       # 3
        append_ok(s, "inv-1", [ev("item"), ev("item")])                         # 4, 5
        for mx, cp in [(2, [4, 5]), (3, [4, 5]), (4, [5])]:
            with Unchanged(s):
                b = condition_failed(post_multi(s, body(mx)), "conditions[0]", f"max {mx}")
            check(last_position(b) == 5 and conflicting(b) == cp,
                  f"max {mx}: lastPosition {err_member(b, 'lastPosition')}, conflicting "
                  f"{err_member(b, 'conflictingPositions')}, want 5 and {cp}")
        multi_ok(s, body(5), what="max 5")                                      # 6
        multi_ok(s, body(100), what="max above the head")                       # 7
        # at most 16 conflicting positions, ascending
        append_ok(s, "inv-1", [ev("item", i) for i in range(20)])               # 8..27
        with Unchanged(s):
            b = condition_failed(post_multi(s, body(0)), "conditions[0]", "20+ matches")
        cp = conflicting(b)
        check(last_position(b) == 27, f"lastPosition {last_position(b)}, want 27")
        want = [2, 4, 5] + list(range(8, 28))
        check(len(cp) == 16 and set(cp) <= set(want), f"conflictingPositions {cp}")


def test_conditions_range_and_failing_index():
    with Server() as s:
        q = {"types": ["price.set"]}
        append_ok(s, "p", [ev("other")])                                        # 1
        append_ok(s, "p", [ev("price.set", 10)])                                # 2
        append_ok(s, "p", [ev("other")])                                        # 3
        append_ok(s, "p", [ev("price.set", 11)])                                # 4

        def body(*conds):
            return {"appends": [{"stream": "o", "events": [ev("other")]}],
                    "conditions": list(conds)}

        multi_ok(s, body({"query": q, "min": 3, "max": 5}), what="3 <= 4 <= 5")
        multi_ok(s, body({"query": q, "min": 4, "max": 4}), what="4 <= 4 <= 4")
        with Unchanged(s):
            b = condition_failed(post_multi(s, body({"query": q, "min": 5, "max": 9})),
                                 "conditions[0]", "range above")
            check(last_position(b) == 4, f"{b!r}")
            b = condition_failed(post_multi(s, body({"query": q, "min": 1, "max": 3})),
                                 "conditions[0]", "range below")
            check(last_position(b) == 4 and conflicting(b) == [4], f"{b!r}")
            b = condition_failed(post_multi(s, body({"query": {"types": ["other"]}, "min": 1},
                                                    {"query": q, "max": 2},
                                                    {"query": q, "min": 1})),
                                 "conditions[1]", "second of three fails")
            check(last_position(b) == 4 and conflicting(b) == [4], f"{b!r}")
            b = condition_failed(post_multi(s, body({"query": q, "max": 4},
                                                    {"query": {"types": ["other"]}, "max": 99},
                                                    {"query": {"types": ["nope"]}, "min": 1})),
                                 "conditions[2]", "third of three fails")
            check(last_position(b) == 0, f"{b!r}")
        multi_ok(s, body(*[{"query": q, "min": 1, "max": 4}] * 16), what="16 passing")


def _condition_forms(s, queries, label):
    """For each query: the server's own query answer gives the matching positions W and
    L = max(W); max 0 / max L-1 / min L+1 / failIfEventsMatch fail with the positions from W,
    min 1 + max L and failIfEventsMatch after L pass. Passing probes append an event that
    matches none of the queries."""
    probe = {"appends": [{"stream": "probe", "events": [ev("probe")]}]}
    for q in queries:
        what = f"{label}: {q}"
        want, _ = matching(s, q)
        last = want[-1] if want else 0
        with Unchanged(s):
            b = condition_failed(post_multi(s, dict(probe, conditions=[{"query": q,
                                                                         "min": last + 1}])),
                                 "conditions[0]", what + " min L+1")
            check(last_position(b) == last, f"{what}: min: lastPosition {last_position(b)}, "
                                            f"want {last}")
            if want:
                b = condition_failed(post_multi(s, dict(probe, conditions=[{"query": q,
                                                                             "max": 0}])),
                                     "conditions[0]", what + " max 0")
                check(last_position(b) == last and conflicting(b) == want[:16],
                      f"{what}: max 0: lastPosition {err_member(b, 'lastPosition')}, "
                      f"conflicting {err_member(b, 'conflictingPositions')}; want {last}, "
                      f"{want[:16]}")
                b = condition_failed(post_multi(s, dict(probe, conditions=[{"query": q,
                                                                             "max": last - 1}])),
                                     "conditions[0]", what + " max L-1")
                check(conflicting(b) == [last], f"{what}: max L-1: {b!r}")
                b = condition_failed(post_multi(s, dict(probe, condition={
                    "failIfEventsMatch": q, "after": 0})), what=what + " failIfEventsMatch")
                check(conflicting(b) == want[:16], f"{what}: failIfEventsMatch after 0: "
                                                   f"{conflicting(b)}, want {want[:16]}")
        if want:
            multi_ok(s, dict(probe, conditions=[{"query": q, "min": 1, "max": last}]),
                     what=what + " min 1 max L")
            multi_ok(s, dict(probe, condition={"failIfEventsMatch": q, "after": last}),
                     what=what + " failIfEventsMatch after L")
        else:
            multi_ok(s, dict(probe, conditions=[{"query": q, "max": 0}]), what=what + " max 0")
            multi_ok(s, dict(probe, condition={"failIfEventsMatch": q}),
                     what=what + " failIfEventsMatch")
        again, _ = matching(s, q)
        check(again == want, f"{what}: a probe matched the query: {again} != {want}")


def test_conditions_query_forms_unindexed_indexed_restarted():
    with Server() as s:
        append_ok(s, "order-1", [ev("order.placed", tags=["customer:7"], subject="customers/7"),
                                 ev("order.shipped")])
        append_ok(s, "order-2", [ev("order.placed", tags=["customer:8"], subject="customers/8")])
        append_ok(s, "user-7", [ev("user.created", tags=["customer:7"], subject="users/7")])
        multi_ok(s, {"events": [ev("customer.rated", tags=["customer:7", "stars:5"])]})
        append_ok(s, "order_3", [ev("order.cancelled", tags=["customer:7"])])
        multi_ok(s, {"appends": [{"stream": "order-4", "events": [ev("order.placed",
                                                                     tags=["customer:9"])]},
                                 {"stream": "user-9", "events": [ev("user.created")]}]})
        queries = [
            {"types": ["order.placed"]},
            {"types": ["order.*"]},
            {"types": ["*.created"]},
            {"streams": ["order-1", "user-7"]},
            {"categories": ["order"]},
            {"tags": ["customer:7"]},
            {"tags": ["customer:7", "stars:5"]},
            {"subjects": ["customers/*"]},
            {"types": ["order.placed"], "tags": ["customer:7"]},
            {"items": [{"types": ["order.placed"], "tags": ["customer:8"]},
                       {"types": ["user.created"]}]},
            {"items": [{"tags": ["stars:5"]}]},
            {"items": [{"streams": ["order-4"]}, {"categories": ["user"], "tags": ["customer:7"]}]},
            {"selector": {"type": "starts_with", "attr": {"stream": "order"}}},
            {"selector": {"type": "equals", "attr": {"event_type": "user.created"}}},
            {"selector": {"type": "and", "selectors": [
                {"type": "equals", "attr": {"event_type": "order.placed"}},
                {"type": "starts_with", "attr": {"subject": "customers/"}}]}},
            {"selector": {"type": "or", "selectors": [
                {"type": "equals", "attr": {"stream": "order_3"}},
                {"type": "equals", "attr": {"stream": "user-9"}}]}},
            {"types": ["nope"]},
            {"tags": ["customer:7", "nope"]},
        ]
        _condition_forms(s, queries, "right after appending")
        wait_indexed(s)
        _condition_forms(s, queries, "indexed")
        s.restart()
        _condition_forms(s, queries, "after a restart")


def test_conditions_judge_only_the_events_reads_show():
    """Events hidden by a soft delete or by maxCount do not count for conditions, as they do
    not for the read a client decided on (before, a deleted holder of a key blocked a new
    reservation of it forever, or until a compaction happened to remove the event)."""
    with Server() as s:
        q = {"items": [{"types": ["user.registered"], "tags": ["user:x"]}]}

        def reserve(after=None):
            cond = {"failIfEventsMatch": q}
            if after is not None:
                cond["after"] = after
            return {"events": [ev("user.registered", tags=["user:x"])], "condition": cond}

        p1 = append_ok(s, "acct-1", [ev("user.registered", tags=["user:x"])])["position"]
        with Unchanged(s):
            b = condition_failed(post_multi(s, reserve()), what="the key is held")
        check(conflicting(b) == [p1], f"conflictingPositions {conflicting(b)}")
        st, _, body = s.request("DELETE", f"/v1/databases/{DB}/streams/acct-1")
        check(st == 204, f"soft delete: {st} {body!r}")
        got, head = matching(s, q)
        check(got == [] and head > p1, f"read after the delete: {got} head {head}")
        p2 = multi_ok(s, reserve(), what="the key again, its holder deleted")["position"]
        with Unchanged(s):
            b = condition_failed(post_multi(s, reserve()), what="held again")
        check(conflicting(b) == [p2], f"only the visible holder conflicts: {conflicting(b)}")

        # maxCount 1 hides the older of two events: only the newer one counts
        r = {"items": [{"types": ["user.renamed"], "tags": ["user:y"]}]}
        p3 = append_ok(s, "acct-2", [ev("user.renamed", tags=["user:y"])])["position"]
        p4 = append_ok(s, "acct-2", [ev("user.renamed", tags=["user:y"])])["position"]
        st, _, body = s.request("PUT", f"/v1/databases/{DB}/streams/acct-2/metadata",
                                {"maxCount": 1})
        check(st == 200, f"maxCount: {st} {body!r}")
        got, head = matching(s, r)
        check(got == [p4], f"read with maxCount 1: {got}")
        with Unchanged(s):
            b = condition_failed(post_multi(s, {"events": [ev("user.renamed")],
                                                "condition": {"failIfEventsMatch": r,
                                                              "after": p3 - 1}}))
        check(conflicting(b) == [p4], f"the hidden version does not conflict: {conflicting(b)}")

        # min/max conditions count what reads show too
        one = {"streams": ["acct-1"]}
        multi_ok(s, {"events": [ev("x")], "conditions": [{"query": one, "max": 0}]},
                 what="max 0 on a deleted stream")
        with Unchanged(s):
            b = condition_failed(post_multi(s, {"events": [ev("x")], "conditions": [
                {"query": one, "min": 1}]}), "conditions[0]", "min 1 on a deleted stream")
        check(last_position(b) == 0, f"lastPosition {last_position(b)}, want 0")


def test_conditions_with_multi_stream_append():
    with Server() as s:
        append_ok(s, "stock-7", [ev("stock.added", 10, tags=["sku:7"])])          # 1
        q = {"items": [{"types": ["stock.reserved"], "tags": ["sku:7"]}]}

        def body(order, stock_expected, after, mx):
            return {"appends": [
                {"stream": order, "events": [ev("order.placed", tags=["sku:7"])],
                 "expectedVersion": "no_stream"},
                {"stream": "stock-7", "events": [ev("stock.reserved", 1, tags=["sku:7"])],
                 "expectedVersion": stock_expected}],
                "condition": {"failIfEventsMatch": q, "after": after},
                "conditions": [{"query": {"streams": ["stock-7"]}, "min": 1, "max": mx}]}

        ans = multi_ok(s, body("order-1", 1, 1, 1), what="every check passes")  # 2, 3
        check(ans["position"] == 3 and [p["version"] for p in ans["appends"]] == [1, 2],
              f"{ans!r}")
        with Unchanged(s):
            b = condition_failed(post_multi(s, body("order-2", 2, 1, 3)),
                                 what="failIfEventsMatch fails")
            check(conflicting(b) == [3], f"{b!r}")
            b = condition_failed(post_multi(s, body("order-2", 2, 3, 1)), "conditions[0]",
                                 "max fails")
            check(last_position(b) == 3 and conflicting(b) == [3], f"{b!r}")
            b = expect_error(post_multi(s, body("order-2", 1, 3, 3)), 409,
                             "wrong_expected_version", "appends[1].expectedVersion")
            check(err_member(b, "actualVersion") == 2, f"{b!r}")
            b = expect_error(post_multi(s, body("order-1", 2, 3, 3)), 409,
                             "wrong_expected_version", "appends[0].expectedVersion")
            check(err_member(b, "actualVersion") == 1, f"{b!r}")
        expect_error(s.get("/v1/databases/default/streams/order-2"), 404, "stream_not_found")
        ans = multi_ok(s, body("order-2", 2, 3, 3), what="on a fresh read")
        check(ans["position"] == 5 and [p["version"] for p in ans["appends"]] == [1, 3],
              f"{ans!r}")
        check([e["type"] for e in s.read_stream("stock-7")] ==
              ["stock.added", "stock.reserved", "stock.reserved"], "stock-7 read back")

# ---------------------------------------------------------------- races (group commit)


def _condition_race(s, rounds, threads, make_body):
    """Each round every thread sends make_body(i, r, head) at once; returns the results."""
    barrier = threading.Barrier(threads, timeout=30)
    heads = [None] * rounds
    results = [[None] * threads for _ in range(rounds)]

    def worker(i):
        c = s.connect()
        try:
            for r in range(rounds):
                if i == 0:
                    heads[r] = s.head()
                barrier.wait()
                st, _, b = post_multi(s, make_body(i, r, heads[r]), conn=c)
                results[r][i] = (st, b)
                barrier.wait()
        finally:
            c.close()

    run_threads(threads, worker)
    return heads, results


def _one_winner(results, r, what):
    wins = [(i, b) for i, (st, b) in enumerate(results[r]) if st == 201]
    check(len(wins) == 1, f"{what} round {r}: {len(wins)} winners "
                          f"({[st for st, _ in results[r]]})")
    i, b = wins[0]
    check_multi_answer(b, f"{what} round {r} winner")
    return i, b["position"]


def test_concurrent_fail_if_events_match_one_winner():
    """16 clients at once, each appending an event tagged seat:1 under failIfEventsMatch
    seat:1 after = the head they all read (half stream-less, half multi-stream): the writer
    checks each against the batch before it, so exactly one commits per round."""
    threads, rounds = 16, 6
    tag = "seat:1"
    with Server() as s:
        append_ok(s, "noise", [ev("x", tags=["seat:2"])])

        def make(i, r, head):
            e = ev("seat.booked", {"r": r, "t": i}, tags=[tag, f"by:{i}"])
            cond = {"failIfEventsMatch": {"tags": [tag]}, "after": head}
            if i % 2:
                return {"events": [e], "condition": cond}
            return {"appends": [{"stream": f"booking-{i}", "events": [e]}], "condition": cond}

        heads, results = _condition_race(s, rounds, threads, make)
        winners = []
        for r in range(rounds):
            i, pos = _one_winner(results, r, "failIfEventsMatch")
            winners.append((i, pos))
            for j, (st, b) in enumerate(results[r]):
                if j == i:
                    continue
                check(st == 409 and isinstance(b, dict) and
                      b.get("error", {}).get("code") == "condition_failed",
                      f"round {r} thread {j}: {st} {b!r}")
                check(conflicting(b) == [pos], f"round {r} thread {j}: conflictingPositions "
                                               f"{err_member(b, 'conflictingPositions')}, "
                                               f"want [{pos}]")
                check(err_member(b, "after") == heads[r], f"round {r}: after {b!r}")
        got, head = matching(s, {"tags": [tag]})
        check(got == [p for _, p in winners], f"stored seat:1 events {got}, winners {winners}")
        check(head == rounds + 1, f"head {head}: losers wrote something")
        log = s.read_log()
        for (i, pos), r in zip(winners, range(rounds)):
            check(log[pos - 1]["data"] == {"r": r, "t": i}, f"position {pos} is not the winner's")


def test_concurrent_max_condition_one_winner():
    threads, rounds = 16, 6
    tag = "slot:1"
    with Server() as s:
        append_ok(s, "noise", [ev("x")])

        def make(i, r, head):
            return {"appends": [{"stream": f"slot-{i}",
                                 "events": [ev("slot.taken", {"r": r, "t": i}, tags=[tag])]}],
                    "conditions": [{"query": {"tags": ["other:x"]}, "max": 0},
                                   {"query": {"tags": [tag]}, "max": head}]}

        heads, results = _condition_race(s, rounds, threads, make)
        winners = []
        for r in range(rounds):
            i, pos = _one_winner(results, r, "max")
            winners.append(pos)
            for j, (st, b) in enumerate(results[r]):
                if j == i:
                    continue
                check(st == 409 and isinstance(b, dict) and
                      b.get("error", {}).get("code") == "condition_failed" and
                      b["error"].get("field") == "conditions[1]",
                      f"round {r} thread {j}: {st} {b!r}")
                check(last_position(b) == pos and conflicting(b) == [pos],
                      f"round {r} thread {j}: lastPosition {err_member(b, 'lastPosition')}, "
                      f"conflicting {err_member(b, 'conflictingPositions')}, want {pos}")
        got, head = matching(s, {"tags": [tag]})
        check(got == winners and head == rounds + 1, f"stored {got} head {head}, winners "
                                                     f"{winners}")


def test_concurrent_multi_stream_expected_version_one_winner():
    threads, rounds = 12, 6
    with Server() as s:
        def make(i, r, head):
            return {"appends": [{"stream": f"own-{r}-{i}", "events": [ev("own", [r, i])]},
                                {"stream": "shared", "events": [ev("s", [r, i])],
                                 "expectedVersion": r}]}

        _, results = _condition_race(s, rounds, threads, make)
        for r in range(rounds):
            i, pos = _one_winner(results, r, "expectedVersion")
            check(results[r][i][1]["appends"][1]["version"] == r + 1, f"round {r}: winner "
                                                                      f"{results[r][i][1]!r}")
            for j, (st, b) in enumerate(results[r]):
                if j == i:
                    continue
                check(st == 409 and isinstance(b, dict) and
                      b.get("error", {}).get("code") == "wrong_expected_version" and
                      b["error"].get("field") == "appends[1].expectedVersion",
                      f"round {r} thread {j}: {st} {b!r}")
                check(err_member(b, "actualVersion") == r + 1, f"round {r}: {b!r}")
        st, _, page = s.get("/v1/databases/default/streams?prefix=own-&limit=1000")
        check(st == 200 and len(page["streams"]) == rounds,
              f"{len(page.get('streams', []))} own-* streams, want {rounds} (losers wrote)")
        check(s.head() == 2 * rounds, f"head {s.head()}, want {2 * rounds}")
        check([e["data"][0] for e in s.read_stream("shared")] == list(range(rounds)),
              "shared stream order")

# ---------------------------------------------------------------- idempotent event ids


def test_idempotent_single_stream_retry():
    with Server() as s:
        append_ok(s, "x", [ev("t")])
        evs = [ev("order.placed", {"total": 12.5, "items": [1, 2]}, id=new_id(),
                  tags=["customer:7"], metadata={"u": "u1"}, subject="customers/7"),
               ev("order.paid", 1, id=new_id())]
        first = append_ok(s, "order-1", evs)
        check(first.get("duplicate") in (None, False), f"first answer {first!r}")

        def retry(label):
            with Unchanged(s):
                expect_duplicate_ack(s, s.append("order-1", evs), first, label)

        retry("immediately (unindexed)")
        retry("a second time")
        wait_indexed(s)
        retry("indexed")
        s.restart()
        retry("after a restart")
        nxt = append_ok(s, "order-1", [ev("order.shipped")])
        check(nxt["version"] == 3 and nxt["position"] == 4,
              f"the next append after duplicates: {nxt!r}")
        retry("after a newer event in the stream")
        check(len(s.read_stream("order-1")) == 3, "duplicates were written")


def test_idempotent_multi_stream_and_dcb_retry():
    with Server() as s:
        append_ok(s, "x", [ev("t")])
        body = {"appends": [
            {"stream": "order-1", "expectedVersion": "no_stream",
             "events": [ev("order.placed", {"n": 1}, id=new_id(), tags=["c:1"]),
                        ev("order.paid", {"n": 2}, id=new_id(), metadata={"m": True})]},
            {"stream": "stock-7", "events": [ev("stock.reserved", 7, id=new_id(),
                                                subject="skus/7")]}]}
        first = multi_ok(s, body, what="first multi-stream")
        dcb = {"events": [ev("seat.booked", {"s": 1}, id=new_id(), tags=["seat:1"]),
                          ev("seat.paid", {"s": 1}, id=new_id(), tags=["seat:1"])]}
        first_dcb = multi_ok(s, dcb, what="first DCB")
        check(first_dcb["position"] == 6, f"{first_dcb!r}")

        def retry(label):
            with Unchanged(s):
                expect_duplicate_ack(s, post_multi(s, body), first, label + " multi-stream")
                expect_duplicate_ack(s, post_multi(s, dcb), first_dcb, label + " DCB")

        retry("immediately (unindexed)")
        wait_indexed(s)
        retry("indexed")
        s.restart()
        retry("after a restart")
        # the single-stream endpoint acknowledges events first sent through the multi one
        part = body["appends"][1]
        with Unchanged(s):
            st, _, ans = s.append("stock-7", part["events"])
            check(st in (200, 201) and ans.get("duplicate") is True and
                  ans.get("position") == 4 and
                  [e["position"] for e in ans.get("events", [])] == [4],
                  f"single-stream re-send of a multi-stream part: {st} {ans!r}")
        ans = multi_ok(s, {"appends": [{"stream": "order-1", "events": [ev("t")]}]})
        check(ans["position"] == 7 and ans["appends"][0]["version"] == 3, f"{ans!r}")


def test_idempotent_retry_with_stale_expected_version():
    """The retry of an append that succeeded (its answer lost) carries the expectedVersion of
    the first attempt, which is stale now: it is acknowledged as a duplicate, not refused."""
    with Server() as s:
        evs = [ev("opened", id=new_id()), ev("deposited", 5, id=new_id())]
        first = append_ok(s, "acct-1", evs, expected=0)
        for expected in (0, "no_stream", 1, 2, "exists", "any"):
            with Unchanged(s):
                expect_duplicate_ack(s, s.append("acct-1", evs, expected=expected), first,
                                     f"single-stream retry with expectedVersion {expected!r}")
        body = {"appends": [{"stream": "acct-1", "expectedVersion": 2,
                             "events": [ev("withdrawn", 3, id=new_id())]},
                            {"stream": "ledger", "expectedVersion": "no_stream",
                             "events": [ev("posted", 3, id=new_id())]}]}
        first_multi = multi_ok(s, body)
        check(first_multi["position"] == 4, f"{first_multi!r}")
        with Unchanged(s):
            expect_duplicate_ack(s, post_multi(s, body), first_multi,
                                 "multi-stream retry with stale expectedVersions")
        s.restart()
        with Unchanged(s):
            expect_duplicate_ack(s, post_multi(s, body), first_multi, "after a restart")
            expect_duplicate_ack(s, s.append("acct-1", evs, expected=0), first,
                                 "single-stream after a restart")
        # a genuinely new append with the stale version is still refused
        with Unchanged(s):
            b = expect_error(s.append("acct-1", [ev("x", id=new_id())], expected=2), 409,
                             "wrong_expected_version")
            check(err_member(b, "actualVersion") == 3, f"{b!r}")


def test_duplicate_id_different_content():
    with Server() as s:
        x, y = new_id(), new_id()
        stored = ev("order.placed", {"total": 1}, id=x, tags=["c:1"], metadata={"m": 1},
                    subject="customers/1")
        other = ev("order.paid", 2, id=y)
        append_ok(s, "order-1", [stored, other])
        no_subject = {k: v for k, v in stored.items() if k != "subject"}
        variants = [dict(stored, data={"total": 2}), dict(stored, data={"total": 1, "x": 0}),
                    dict(stored, type="order.other"), dict(stored, metadata={"m": 2}),
                    dict(stored, metadata={}), dict(stored, tags=["c:2"]),
                    dict(stored, tags=[]), dict(stored, subject="customers/2"), no_subject]
        with Unchanged(s):
            for v in variants:
                what = f"changed content {v!r}"
                b = expect_error(s.append("order-1", [v]), 409, "duplicate_event_id",
                                 "events[0].id")
                # the stored event identical first, the changed one second: the second is named
                b = expect_error(s.append("order-1", [other, v]), 409, "duplicate_event_id",
                                 "events[1].id")
                b = refused(post_multi(s, {"appends": [{"stream": "order-1", "events": [v]}]}),
                            409, "duplicate_event_id")
                f = b["error"].get("field")
                check(f in ("appends[0].events[0].id", "events[0].id"), f"{what}: field {f!r}")
            # the same content in another stream is different content
            expect_error(s.append("order-2", [stored]), 409, "duplicate_event_id",
                         "events[0].id")
            b = refused(post_multi(s, {"appends": [{"stream": "order-2", "events": [stored]}]}),
                        409, "duplicate_event_id")
            check(b["error"].get("field") in ("appends[0].events[0].id", "events[0].id"),
                  f"field {b['error'].get('field')!r}")
            expect_error(post_multi(s, {"events": [stored]}), 409, "duplicate_event_id",
                         "events[0].id")
        # the stored events are untouched
        evs = s.read_stream("order-1")
        check([(e["id"], e["data"]) for e in evs] == [(x, {"total": 1}), (y, 2)],
              f"stored events {evs!r}")


def test_duplicate_id_mixed_stored_and_new():
    with Server() as s:
        x = new_id()
        stored = ev("t", 1, id=x)
        append_ok(s, "order-1", [stored])
        y = new_id()
        fresh = ev("t", 2, id=y)
        with Unchanged(s):
            for evs in ([stored, fresh], [fresh, stored]):
                b = refused(s.append("order-1", evs), 409, "duplicate_event_id")
                f = b["error"].get("field")
                check(isinstance(f, str) and DUP_FIELD_RE.match(f), f"field {f!r}")
            for parts in ([{"stream": "order-1", "events": [stored]},
                           {"stream": "other", "events": [fresh]}],
                          [{"stream": "other", "events": [fresh]},
                           {"stream": "order-1", "events": [stored]}],
                          [{"stream": "order-1", "events": [stored, fresh]}]):
                b = refused(post_multi(s, {"appends": parts}), 409, "duplicate_event_id")
                f = b["error"].get("field")
                check(isinstance(f, str) and DUP_FIELD_RE.match(f), f"field {f!r}")
        expect_error(s.get("/v1/databases/default/streams/other"), 404, "stream_not_found")
        # the refused requests did not consume the new id
        ans = append_ok(s, "order-1", [fresh])
        check(ans["position"] == 2 and ans["events"][0]["id"] == y, f"{ans!r}")


def test_duplicate_id_twice_in_one_request():
    with seeded() as s:
        a = new_id()
        cases = [("single-stream, same content",
                  lambda: s.append("x", [ev("t", 1, id=a), ev("t", 1, id=a)])),
                 ("single-stream, different content",
                  lambda: s.append("x", [ev("t", 1, id=a), ev("u", 2, id=a)])),
                 ("two parts",
                  lambda: post_multi(s, {"appends": [{"stream": "x", "events": [ev("t", id=a)]},
                                                     {"stream": "y",
                                                      "events": [ev("t", id=a)]}]})),
                 ("one part",
                  lambda: post_multi(s, {"appends": [{"stream": "x", "events": [
                      ev("t", id=a), ev("t", 2), ev("t", id=a)]}]})),
                 ("stream-less",
                  lambda: post_multi(s, {"events": [ev("t", id=a), ev("t", id=a)]}))]
        for what, send in cases:
            with Unchanged(s):
                st, _, b = send()
                check(st in (400, 409) and isinstance(b, dict) and "error" in b,
                      f"{what}: the same id twice in one request answered {st} {b!r}")
        ans = append_ok(s, "x", [ev("t", id=a)])
        check(ans["position"] == 2 and ans["events"][0]["id"] == a, f"{ans!r}")


def test_server_made_ids_found_while_unindexed_and_after_restart():
    """Re-sending an event with the id the server gave it is a duplicate, also while the event
    is not indexed yet (the writer finds server-made UUIDv7 ids in the tail by their time)
    and after a restart; other content under that id is refused."""
    with Server() as s:
        evs = [{"type": "t", "data": i} for i in range(50)]
        st, _, first = s.append("srv-1", evs)
        check(st == 201, f"append {st}")
        ids = [e["id"] for e in first["events"]]
        check(ids == sorted(ids), "one writer's ids increase (monotonic UUIDv7)")
        for round_ in range(2):
            again = [dict(e, id=i) for e, i in zip(evs, ids)]
            st, _, ans = s.append("srv-1", again)
            check(st == 200 and ans.get("duplicate") is True and
                  [e["position"] for e in ans["events"]] == list(range(1, 51)),
                  f"round {round_}: {st} {ans}")
            st, _, ans = s.append("srv-1", [{"type": "t", "data": "other", "id": ids[7]}])
            check(st == 409 and ans["error"]["code"] == "duplicate_event_id", f"{st} {ans}")
            s.restart()
        check(s.head() == 50, "nothing written twice")


def test_server_ids_of_a_big_batch_are_found_in_the_tail():
    """A big batch's server-made ids run ahead of its commit time (the UUIDv7 counter moves on a
    millisecond every 2048+ ids): re-sending the last one must still be a duplicate."""
    with Server(extra=["--max-batch-events", "20000"]) as s:
        evs = [{"type": "t", "data": i} for i in range(20000)]
        st, _, first = s.append("big", evs)
        check(st == 201, f"append {st}")
        last = first["events"][-1]
        st, _, ans = s.append("big", [{"type": "t", "data": 19999, "id": last["id"]}])
        check(st == 200 and ans.get("duplicate") is True and
              ans["events"][0]["position"] == last["position"], f"{st} {str(ans)[:300]}")
        s.stop()
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0, f"verify: {out}")


def test_condition_too_broad_for_the_index_is_refused():
    """A condition whose query no index narrows cannot scan a large database on the writer:
    it is refused (400 condition_too_broad) and nothing is written; narrow ones still work."""
    with Server() as s:
        batch = [{"type": "bulk", "data": i} for i in range(1000)]
        for i in range(120):
            st, _, _ = s.post("/v1/databases/default/events",
                              {"appends": [{"stream": f"bulk-{i}", "events": batch}]})
            check(st == 201, f"load {st}")
        head = s.head()
        r = s.post("/v1/databases/default/events", {
            "events": [{"type": "t", "data": 1}],
            "conditions": [{"query": {"subjects": ["*"]}, "max": 0}]})
        expect_error(r, 400, "condition_too_broad", "conditions[0]")
        check(s.head() == head, "a refused append wrote")
        st, _, _ = s.post("/v1/databases/default/events", {
            "events": [{"type": "t", "data": 1}],
            "conditions": [{"query": {"types": ["never"]}, "max": 0}]})
        check(st == 201, f"an indexed condition still works: {st}")


def test_retry_racing_its_original_in_a_failed_batch_is_not_acknowledged():
    """Identical requests with the same client id land in one batch; when the batch's write
    fails (here: the database is full), none of them is acknowledged as a duplicate of the
    events that were never written."""
    import threading
    with Server(extra=["--max-db-bytes", "1048576"]) as s:
        big = {"type": "fill", "data": "x" * 60000}
        for _ in range(40):
            st, _, _ = s.append("fill", [big])
            if st == 507:
                break
        check(st == 507, f"database did not fill: {st}")
        head = s.head()
        body = {"events": [{"type": "t", "data": "y" * 30000,
                            "id": "0192f0c0-0000-7000-8000-0000000000aa"}]}
        statuses = []
        lock = threading.Lock()

        def go():
            conn = s.connect()
            st, _, _ = s.request("POST", "/v1/databases/default/streams/r/events", body,
                                 conn=conn)
            with lock:
                statuses.append(st)

        threads = [threading.Thread(target=go) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(200 not in statuses and 201 not in statuses, f"statuses {sorted(statuses)}")
        check(s.head() == head, "something was written")
        expect_error(s.get("/v1/databases/default/streams/r"), 404, "stream_not_found")
