"""Stream lifecycle (docs/api.md, "Stream lifecycle"): the settings maxAge / maxCount /
truncateBefore (PUT / GET .../streams/{stream}/metadata), soft delete (DELETE .../streams/{s})
and hard delete (?hard=true, a tombstone), and the `$metadata` events in `$$<stream>` that
store every change.

Hidden events must disappear from stream reads, stream info, log reads, queries (GET and POST)
and the stream list at once, while positions are never reused and versions continue. Every
visible result is compared with what the appends acknowledged (ids, positions, versions), and
the changes are checked right after they are made (the index does not cover them yet), after
the indexer caught up, and after a restart."""
import threading
import time
import uuid

from harness import Server, check, expect_error, quote, run_cli, wait_until

DB = "default"
KEYS = ("maxAge", "maxCount", "truncateBefore")
UNSET = {"maxAge": None, "maxCount": None, "truncateBefore": None}
JSON_HDR = {"Content-Type": "application/json"}
TEN_YEARS = 10 * 365 * 86400  # 315360000: the largest maxAge

# ---------------------------------------------------------------- helpers


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def spath(stream, db=DB):
    return f"/v1/databases/{db}/streams/{quote(stream)}"


def ev(type_="t", data=0, **kw):
    e = {"type": type_, "data": data}
    e.update(kw)
    return e


def append_ok(s, stream, events, expected=None, db=DB):
    """Appends; events may be a count (events of type t with data 0..n-1). Returns the 201
    answer."""
    if isinstance(events, int):
        events = [ev("t", i) for i in range(events)]
    st, _, ans = s.append(stream, events, expected=expected, db=db)
    check(st == 201, f"append to {stream}: {st} {ans!r}")
    return ans


def multi_ok(s, body, db=DB):
    st, _, ans = s.post(f"/v1/databases/{db}/events", body)
    check(st == 201, f"multi-stream append: {st} {ans!r}")
    return ans


def put_meta(s, stream, body, db=DB):
    """PUT .../metadata: dict/list bodies as JSON, str bodies sent as is (as JSON)."""
    if isinstance(body, (dict, list)):
        return s.request("PUT", spath(stream, db) + "/metadata", body)
    return s.request("PUT", spath(stream, db) + "/metadata", body, headers=JSON_HDR)


def set_meta(s, stream, body, db=DB):
    """PUT that must succeed: 200 {stream, metadata, metadataVersion}; metadata holds what was
    sent (members left out of the answer count as null). Returns metadataVersion."""
    st, _, ans = put_meta(s, stream, body, db)
    check(st == 200, f"PUT metadata {stream} {body!r}: {st} {ans!r}")
    check(isinstance(ans, dict) and set(ans) == {"stream", "metadata", "metadataVersion"},
          f"PUT metadata answer members: {ans!r}")
    check(ans["stream"] == stream, f"PUT metadata answer stream: {ans!r}")
    meta = ans["metadata"]
    check(isinstance(meta, dict) and set(meta) <= set(KEYS), f"PUT answer metadata: {ans!r}")
    want = {k: body.get(k) for k in KEYS}
    check({k: meta.get(k) for k in KEYS} == want,
          f"PUT metadata {body!r} answered {meta!r}, want {want!r}")
    check(is_int(ans["metadataVersion"]) and ans["metadataVersion"] >= 1,
          f"metadataVersion {ans['metadataVersion']!r}")
    return ans["metadataVersion"]


def get_meta(s, stream, db=DB):
    """GET .../metadata: 200 {stream, metadata:{maxAge,maxCount,truncateBefore}}; returns the
    metadata."""
    st, _, ans = s.get(spath(stream, db) + "/metadata")
    check(st == 200, f"GET metadata {stream}: {st} {ans!r}")
    check(isinstance(ans, dict) and set(ans) == {"stream", "metadata"} and ans["stream"] == stream,
          f"GET metadata {stream} answer: {ans!r}")
    check(isinstance(ans["metadata"], dict) and set(ans["metadata"]) == set(KEYS),
          f"GET metadata {stream}: members {ans['metadata']!r}")
    return ans["metadata"]


def delete(s, stream, hard=False, db=DB):
    return s.request("DELETE", spath(stream, db) + ("?hard=true" if hard else ""))


def delete_ok(s, stream, hard=False, db=DB):
    st, _, body = delete(s, stream, hard, db)
    check(st == 204, f"DELETE {stream} hard={hard}: {st} {body!r}")
    check(body == b"", f"DELETE {stream}: 204 with a body {body!r}")


def not_found(resp, what):
    st, _, body = resp
    check(st == 404, f"{what}: expected 404 stream_not_found, got {st} {body!r}")
    expect_error(resp, 404, "stream_not_found")


def gone(resp, what):
    st, _, body = resp
    check(st == 410, f"{what}: expected 410 stream_deleted, got {st} {body!r}")
    expect_error(resp, 410, "stream_deleted")


def stream_pages(s, stream, direction="forward", limit=100, frm=None, db=DB):
    """Reads a stream page by page following next; returns ([[version, ...] per page], version,
    events). Each page's events must be in the direction of travel."""
    pages, events, ver = [], [], None
    cur = frm
    for _ in range(1000):
        q = f"?direction={direction}&limit={limit}" + (f"&from={cur}" if cur is not None else "")
        st, _, body = s.get(spath(stream, db) + "/events" + q)
        check(st == 200, f"read {stream}{q}: {st} {body!r}")
        check(set(body) == {"stream", "events", "version", "hasMore", "next"},
              f"read answer {body!r}")
        check(body["hasMore"] == (body["next"] is not None), f"hasMore vs next: {body!r}")
        check(body["stream"] == stream, f"read {stream}: stream {body['stream']!r}")
        check(ver is None or body["version"] == ver, f"read {stream}: version moved")
        ver = body["version"]
        vs = [e["version"] for e in body["events"]]
        check(len(vs) <= limit, f"read {stream}{q}: {len(vs)} events > limit {limit}")
        for e in body["events"]:
            check(e["stream"] == stream, f"read {stream}: event of {e['stream']!r}")
        pages.append(vs)
        events.extend(body["events"])
        if body["next"] is None:
            return pages, ver, events
        check(vs, f"read {stream}{q}: empty page with next {body['next']!r}")
        cur = body["next"]
    raise AssertionError(f"read {stream}: paging did not end")


def versions(s, stream, direction="forward", limit=1000, frm=None, db=DB):
    pages, _, _ = stream_pages(s, stream, direction, limit, frm, db)
    return [v for p in pages for v in p]


def stream_info(s, stream, db=DB):
    st, _, body = s.get(spath(stream, db))
    check(st == 200, f"stream info {stream}: {st} {body!r}")
    return body


def listed(s, db=DB, **params):
    """The stream list, every page: {name: version}."""
    out = {}
    after = None
    for _ in range(1000):
        q = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
        if after is not None:
            q += ("&" if q else "") + f"after={quote(after)}"
        st, _, body = s.get(f"/v1/databases/{db}/streams" + (f"?{q}" if q else ""))
        check(st == 200, f"stream list: {st} {body!r}")
        for row in body["streams"]:
            check(row["stream"] not in out, f"stream list repeats {row['stream']!r}")
            out[row["stream"]] = row["version"]
        if body["next"] is None:
            return out
        after = body["next"]
    raise AssertionError("stream list paging did not end")


def log_read(s, limit=1000, db=DB):
    """The unfiltered log read (GET .../events?from=&limit=), every page, as (stream, version,
    position) triples; checks positions ascend."""
    out = []
    frm = 1
    for _ in range(10000):
        st, _, body = s.get(f"/v1/databases/{db}/events?from={frm}&limit={limit}")
        check(st == 200, f"log read: {st} {body!r}")
        out.extend((e["stream"], e["version"], e["position"]) for e in body["events"])
        if body["next"] is None:
            break
        frm = body["next"]
    pos = [p for _, _, p in out]
    check(pos == sorted(set(pos)), f"log read positions not ascending: {pos}")
    return out


def query_get(s, params, db=DB):
    """GET .../events with filters, every page: (stream, version, position) triples."""
    out = []
    frm = None
    for _ in range(10000):
        q = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
        if frm is not None:
            q += f"&from={frm}"
        st, _, body = s.get(f"/v1/databases/{db}/events?{q}")
        check(st == 200, f"query ?{q}: {st} {body!r}")
        out.extend((e["stream"], e["version"], e["position"]) for e in body["events"])
        if not body.get("hasMore"):
            check(body["next"] is None, f"query ?{q}: hasMore false with next {body['next']}")
            return out
        frm = body["next"]
    raise AssertionError("query paging did not end")


def query_post(s, body, db=DB):
    out = []
    q = dict(body)
    for _ in range(10000):
        st, _, page = s.post(f"/v1/databases/{db}/query", q)
        check(st == 200, f"POST query {q!r}: {st} {page!r}")
        out.extend((e["stream"], e["version"], e["position"]) for e in page["events"])
        if not page["hasMore"]:
            check(page["next"] is None, f"POST query: hasMore false with next {page['next']}")
            return out
        q["from"] = page["next"]
    raise AssertionError("POST query paging did not end")


def user_events(triples):
    """Drops the $metadata events (streams $$...)."""
    return [t for t in triples if not t[0].startswith("$$")]


class Book:
    """What the appends acknowledged: per stream, version -> (position, id)."""

    def __init__(self):
        self.by_stream = {}

    def add(self, ans):
        parts = ans["appends"] if "appends" in ans else [ans]
        for p in parts:
            for e in p["events"]:
                d = self.by_stream.setdefault(p["stream"], {})
                check(e["version"] not in d, f"version {e['version']} of {p['stream']} twice")
                d[e["version"]] = (e["position"], e["id"])
        return ans

    def triples(self, stream, vs):
        return [(stream, v, self.by_stream[stream][v][0]) for v in vs]

    def log(self, visible):
        """The expected user part of the log: visible maps stream -> visible versions."""
        out = []
        for stream, vs in visible.items():
            out.extend(self.triples(stream, vs))
        return sorted(out, key=lambda t: t[2])


def wait_indexed(s, db=DB):
    head = s.head(db)
    ok = wait_until(lambda: (s.db_info(db).get("indexer") or {}).get("indexed", 0) >= head,
                    timeout=15)
    check(ok, f"the indexer did not reach the head {head}: {s.db_info(db).get('indexer')}")


def verify_ok(data_dir):
    rc, out = run_cli(["verify", "--data", data_dir])
    check(rc == 0, f"annals verify exit {rc}: {out}")
    check("hash chain intact" in out, f"annals verify output: {out}")
    return out


def unchanged(s, before, what):
    info = s.db_info()
    for k in ("head", "headHash", "events"):
        check(info[k] == before[k], f"{what}: {k} changed {before[k]} -> {info[k]}")

# ---------------------------------------------------------------- settings


def test_metadata_round_trip_replace_and_versions():
    with Server() as s:
        append_ok(s, "acct-1", 3)
        check(get_meta(s, "acct-1") == UNSET, "settings of a fresh stream are not all null")
        mvs = [set_meta(s, "acct-1", {"maxCount": 5})]
        check(get_meta(s, "acct-1") == {"maxAge": None, "maxCount": 5, "truncateBefore": None},
              f"after PUT maxCount 5: {get_meta(s, 'acct-1')}")
        # a PUT replaces all settings: maxCount, absent here, is cleared
        mvs.append(set_meta(s, "acct-1", {"maxAge": 3600, "truncateBefore": 2}))
        check(get_meta(s, "acct-1") == {"maxAge": 3600, "maxCount": None, "truncateBefore": 2},
              f"after replacing: {get_meta(s, 'acct-1')}")
        mvs.append(set_meta(s, "acct-1", {"maxAge": TEN_YEARS, "maxCount": 9,
                                          "truncateBefore": 1}))
        check(get_meta(s, "acct-1") == {"maxAge": TEN_YEARS, "maxCount": 9, "truncateBefore": 1},
              f"all three: {get_meta(s, 'acct-1')}")
        # explicit nulls clear, as does an empty object
        mvs.append(set_meta(s, "acct-1", {"maxAge": None, "maxCount": 2, "truncateBefore": None}))
        check(get_meta(s, "acct-1") == {"maxAge": None, "maxCount": 2, "truncateBefore": None},
              f"nulls: {get_meta(s, 'acct-1')}")
        mvs.append(set_meta(s, "acct-1", {}))
        check(get_meta(s, "acct-1") == UNSET, f"PUT {{}}: {get_meta(s, 'acct-1')}")
        check(versions(s, "acct-1") == [1, 2, 3], "all events visible again after PUT {}")
        check(all(b > a for a, b in zip(mvs, mvs[1:])), f"metadataVersion not increasing: {mvs}")
        # each change is one $metadata event of $$acct-1: metadataVersion is its version
        check(mvs == list(range(mvs[0], mvs[0] + len(mvs))), f"metadataVersion gaps: {mvs}")
        check(stream_info(s, "$$acct-1")["version"] == mvs[-1],
              f"$$acct-1 version {stream_info(s, '$$acct-1')['version']} != {mvs[-1]}")
        # a soft delete is a change too
        delete_ok(s, "acct-1")
        check(set_meta(s, "acct-1", {"maxCount": 1}) == mvs[-1] + 2,
              "metadataVersion after a soft delete and a PUT")
        # settings are per stream and per database
        check(get_meta(s, "acct-2") == UNSET, "another stream")
        st, _, _ = s.post("/v1/databases", {"name": "other"})
        check(st == 201, "create database other")
        append_ok(s, "acct-1", 2, db="other")
        check(get_meta(s, "acct-1", db="other") == UNSET, "same name in another database")
        check(versions(s, "acct-1", db="other") == [1, 2], "other database's stream affected")


def test_metadata_before_first_event_applies():
    with Server() as s:
        check(set_meta(s, "pre", {"maxCount": 2}) >= 1, "PUT before any event")
        check(get_meta(s, "pre") == {"maxAge": None, "maxCount": 2, "truncateBefore": None},
              "settings of a stream without events")
        not_found(s.get(spath("pre")), "info of a stream that only has settings")
        not_found(s.get(spath("pre") + "/events"), "read of a stream that only has settings")
        check("pre" not in listed(s), "a stream with only settings is listed")
        book = Book()
        book.add(append_ok(s, "pre", 4, expected="no_stream"))
        check(versions(s, "pre") == [3, 4], f"maxCount set beforehand: {versions(s, 'pre')}")


def test_metadata_validation():
    with Server() as s:
        append_ok(s, "v", 3)
        set_meta(s, "v", {"maxCount": 7})
        before = s.db_info()
        bad = [
            ({"maxCount": 0}, "maxCount"), ({"maxAge": 0}, "maxAge"),
            ({"truncateBefore": 0}, "truncateBefore"),
            ({"maxCount": -1}, "maxCount"), ({"maxAge": -5}, "maxAge"),
            ({"truncateBefore": -2}, "truncateBefore"),
            ({"maxCount": 1.5}, "maxCount"), ({"maxAge": 2.5}, "maxAge"),
            ({"truncateBefore": 0.5}, "truncateBefore"),
            ({"maxCount": "2"}, "maxCount"), ({"maxAge": True}, "maxAge"),
            ({"truncateBefore": [3]}, "truncateBefore"), ({"maxCount": {}}, "maxCount"),
            ({"maxAge": TEN_YEARS + 1}, "maxAge"), ({"maxAge": 10 ** 12}, "maxAge"),
            ({"bogus": 1}, "bogus"), ({"maxCount": 2, "maxcount": 2}, "maxcount"),
            ({"maxCount": 3, "maxAge": 0}, "maxAge"),  # one bad member: nothing applied
        ]
        for body, field in bad:
            expect_error(put_meta(s, "v", body), 400, "invalid_request", field)
        for raw in ["[]", '"x"', "5", "null", '[{"maxCount": 1}]', "true"]:
            expect_error(put_meta(s, "v", raw), 400, "invalid_request")
        for raw in ["{", "", '{"maxCount": 2} x', '{"maxCount": 01}', "{'maxCount': 2}"]:
            body = expect_error(put_meta(s, "v", raw), 400, "invalid_json")
            check(is_int(body["error"].get("offset")), f"invalid_json without offset: {body!r}")
        # a member named twice
        expect_error(put_meta(s, "v", '{"maxCount": 1, "maxCount": 2}'), 400, "invalid_request")
        unchanged(s, before, "refused PUTs")
        check(get_meta(s, "v") == {"maxAge": None, "maxCount": 7, "truncateBefore": None},
              f"a refused PUT changed the settings: {get_meta(s, 'v')}")
        check(versions(s, "v") == [1, 2, 3], "refused PUTs changed what is visible")
        # the largest maxAge is accepted
        set_meta(s, "v", {"maxAge": TEN_YEARS})
        check(versions(s, "v") == [1, 2, 3], "maxAge ten years hides fresh events")


def test_metadata_reserved_names_and_unknown_database():
    with Server() as s:
        append_ok(s, "a", 1)
        set_meta(s, "a", {"maxCount": 3})
        multi = s.post("/v1/databases/default/events", {"events": [ev("dcb.t")]})
        check(multi[0] == 201, f"DCB append: {multi}")
        before = s.db_info()
        for name in ["$x", "$dcb", "$$a", "$", "$$nothing"]:
            for body in ({"maxCount": 1}, {}):
                expect_error(put_meta(s, name, body), 400, "invalid_name")
            expect_error(delete(s, name), 400, "invalid_name")
            expect_error(delete(s, name, hard=True), 400, "invalid_name")
            # appending to them directly stays refused too
            expect_error(s.append(name, [ev()]), 400, "invalid_name")
        unchanged(s, before, "reserved names")
        check(versions(s, "$dcb") == [1], "$dcb changed")
        check(get_meta(s, "a") == {"maxAge": None, "maxCount": 3, "truncateBefore": None},
              "settings of a changed")
        # '$' elsewhere in a name is an ordinary character
        append_ok(s, "a$b", 2)
        set_meta(s, "a$b", {"maxCount": 1})
        check(versions(s, "a$b") == [2], "a$b with maxCount 1")
        delete_ok(s, "a$b")
        not_found(s.get(spath("a$b")), "a$b after soft delete")
        # unknown database
        for resp in (s.get(spath("a", "nodb") + "/metadata"),
                     put_meta(s, "a", {"maxCount": 1}, db="nodb"),
                     delete(s, "a", db="nodb"), delete(s, "a", hard=True, db="nodb")):
            expect_error(resp, 404, "database_not_found")
        # hard must be true or false
        expect_error(s.request("DELETE", spath("a") + "?hard=yes"), 400, "invalid_parameter",
                     "hard")
        check(versions(s, "a") == [1], "DELETE ?hard=yes changed the stream")

# ---------------------------------------------------------------- maxCount


def test_max_count_stream_reads_and_paging():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "mc", 10))
        set_meta(s, "mc", {"maxCount": 3})
        check(versions(s, "mc") == [8, 9, 10], f"forward: {versions(s, 'mc')}")
        check(versions(s, "mc", "backward") == [10, 9, 8], "backward")
        pages, ver, evs = stream_pages(s, "mc", limit=2)
        check(pages == [[8, 9], [10]] and ver == 10, f"forward pages of 2: {pages} {ver}")
        check([(e["position"], e["id"]) for e in evs] ==
              [book.by_stream["mc"][v] for v in (8, 9, 10)], "positions/ids of visible events")
        pages, ver, _ = stream_pages(s, "mc", "backward", limit=2)
        check(pages == [[10, 9], [8]] and ver == 10, f"backward pages of 2: {pages}")
        check(versions(s, "mc", "backward", limit=1, frm=9) == [9, 8], "backward from 9 by 1")
        pages, _, _ = stream_pages(s, "mc", limit=1)
        check(pages == [[8], [9], [10]], f"forward by 1: {pages}")
        # an explicit from below the window starts at the window
        check(versions(s, "mc", frm=1) == [8, 9, 10], "forward from 1")
        check(versions(s, "mc", frm=7) == [8, 9, 10], "forward from 7")
        check(versions(s, "mc", frm=9) == [9, 10], "forward from 9")
        check(versions(s, "mc", "backward", frm=5) == [], "backward from below the window")
        # stream info and the stream list report the real version
        info = stream_info(s, "mc")
        check(info["version"] == 10 and info["lastPosition"] == book.by_stream["mc"][10][0],
              f"stream info: {info}")
        check(listed(s) == {"mc": 10}, f"stream list: {listed(s)}")
        # maxCount larger than the stream: everything
        set_meta(s, "mc", {"maxCount": 1000})
        check(versions(s, "mc") == list(range(1, 11)), "maxCount 1000")
        set_meta(s, "mc", {"maxCount": 1})
        check(versions(s, "mc") == [10], "maxCount 1")
        check(versions(s, "mc", "backward") == [10], "maxCount 1 backward")


def test_max_count_log_reads_and_queries():
    with Server() as s:
        book = Book()
        for i in range(6):  # interleaved: order-1 and cart-1, then a multi-stream append
            book.add(append_ok(s, "order-1", [ev("order.placed", i, tags=["k"])]))
            book.add(append_ok(s, "cart-1", [ev("cart.added", i, tags=["k"])]))
        book.add(multi_ok(s, {"appends": [
            {"stream": "order-1", "events": [ev("order.shipped", 6, tags=["k"])]},
            {"stream": "cart-1", "events": [ev("cart.added", 6, tags=["k"])]}]}))
        set_meta(s, "order-1", {"maxCount": 2})
        order_vis = [6, 7]
        cart_vis = list(range(1, 8))
        want = book.log({"order-1": order_vis, "cart-1": cart_vis})

        def check_all(what):
            log = log_read(s)
            check(user_events(log) == want, f"{what}: unfiltered log read\n got  {log}\n"
                                            f" want {want}")
            check(user_events(log_read(s, limit=1)) == want, f"{what}: log read by 1")
            st, _, back = s.get("/v1/databases/default/events?direction=backward&limit=1000")
            check(st == 200 and user_events([(e["stream"], e["version"], e["position"])
                                             for e in back["events"]]) == want[::-1],
                  f"{what}: backward log read")
            check(query_get(s, {"streams": "order-1"}) == book.triples("order-1", order_vis),
                  f"{what}: streams=order-1: {query_get(s, {'streams': 'order-1'})}")
            check(query_get(s, {"streams": "order-1", "limit": 1}) ==
                  book.triples("order-1", order_vis), f"{what}: streams=order-1 by 1")
            check(query_get(s, {"types": "order.*"}) == book.triples("order-1", order_vis),
                  f"{what}: types=order.*")
            check(query_get(s, {"types": "order.placed"}) == book.triples("order-1", [6]),
                  f"{what}: types=order.placed")
            check(query_get(s, {"category": "order,cart"}) == want, f"{what}: category=")
            check(query_get(s, {"tags": "k"}) == want, f"{what}: tags=k")
            back = query_get(s, {"streams": "order-1", "direction": "backward"})
            check(back == book.triples("order-1", [7, 6]), f"{what}: backward: {back}")
            check(query_post(s, {"streams": ["order-1"]}) == book.triples("order-1", order_vis),
                  f"{what}: POST streams")
            check(query_post(s, {"types": ["order.placed", "order.shipped"], "limit": 1}) ==
                  book.triples("order-1", order_vis), f"{what}: POST types")
            check(query_post(s, {"items": [{"types": ["order.placed"]},
                                           {"types": ["cart.added"], "tags": ["k"]}]}) ==
                  sorted(book.triples("order-1", [6]) + book.triples("cart-1", cart_vis),
                         key=lambda t: t[2]), f"{what}: POST items")
            check(query_post(s, {"selector": {"type": "starts_with",
                                              "attr": {"stream": "order"}}}) ==
                  book.triples("order-1", order_vis), f"{what}: POST selector")
            check(listed(s) == {"order-1": 7, "cart-1": 7}, f"{what}: stream list {listed(s)}")

        check_all("right after the PUT")
        wait_indexed(s)
        check_all("indexed")


def test_max_count_window_moves_with_appends():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "w", 5))
        set_meta(s, "w", {"maxCount": 3})
        check(versions(s, "w") == [3, 4, 5], "before")
        book.add(append_ok(s, "w", 2, expected=5))
        check(versions(s, "w") == [5, 6, 7], f"after two more: {versions(s, 'w')}")
        book.add(multi_ok(s, {"appends": [{"stream": "w", "events": [ev()],
                                           "expectedVersion": 7},
                                          {"stream": "x", "events": [ev()]}]}))
        check(versions(s, "w") == [6, 7, 8], f"after a multi-stream append: {versions(s, 'w')}")
        check(user_events(log_read(s)) == book.log({"w": [6, 7, 8], "x": [1]}), "log read")
        check(query_get(s, {"streams": "w"}) == book.triples("w", [6, 7, 8]), "query")
        info = stream_info(s, "w")
        check(info["version"] == 8 and info["lastPosition"] == book.by_stream["w"][8][0],
              f"stream info {info}")

def test_paging_next_is_null_at_the_first_visible_version():
    """A page that reaches the first visible version has reached the end: `next` is null, as it
    is for a page that reaches version 1 of a stream without settings."""
    with Server() as s:
        append_ok(s, "plain", 5)
        pages, _, _ = stream_pages(s, "plain", "backward", limit=5)
        check(pages == [[5, 4, 3, 2, 1]], f"no settings, backward by 5: {pages}")
        for name, meta, vis in (("mc", {"maxCount": 3}, [10, 9, 8]),
                                ("tb", {"truncateBefore": 8}, [10, 9, 8])):
            append_ok(s, name, 10)
            set_meta(s, name, meta)
            for limit in (1, 3):
                pages, _, _ = stream_pages(s, name, "backward", limit=limit)
                want = [vis[i:i + limit] for i in range(0, len(vis), limit)]
                check(pages == want, f"{name} {meta}, backward by {limit}: pages {pages}, "
                                     f"want {want} (the last page's next must be null)")
        append_ok(s, "sd", 3)
        delete_ok(s, "sd")
        append_ok(s, "sd", 2)
        pages, _, _ = stream_pages(s, "sd", "backward", limit=2)
        check(pages == [[5, 4]], f"soft-deleted and rewritten, backward by 2: {pages}")

# ---------------------------------------------------------------- truncateBefore and maxAge


def test_truncate_before():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "tb", 6))
        book.add(append_ok(s, "keep", 2))
        set_meta(s, "tb", {"truncateBefore": 4})
        check(versions(s, "tb") == [4, 5, 6], "forward")
        check(versions(s, "tb", frm=1) == [4, 5, 6], "from 1 starts at truncateBefore")
        check(versions(s, "tb", frm=3) == [4, 5, 6], "from 3 starts at truncateBefore")
        check(versions(s, "tb", frm=5) == [5, 6], "from 5")
        check(versions(s, "tb", "backward") == [6, 5, 4], "backward")
        check(versions(s, "tb", "backward", limit=2) == [6, 5, 4], "backward by 2")
        check(versions(s, "tb", "backward", frm=3) == [], "backward from below")
        check(stream_info(s, "tb")["version"] == 6, "stream info version")
        check(user_events(log_read(s)) == book.log({"tb": [4, 5, 6], "keep": [1, 2]}),
              "log read")
        check(query_get(s, {"streams": "tb,keep"}) ==
              book.log({"tb": [4, 5, 6], "keep": [1, 2]}), "query streams=")
        check(query_post(s, {"types": ["t"]}) == book.log({"tb": [4, 5, 6], "keep": [1, 2]}),
              "POST query types")
        # together with maxCount: both apply
        set_meta(s, "tb", {"truncateBefore": 3, "maxCount": 2})
        check(versions(s, "tb") == [5, 6], "truncateBefore 3 + maxCount 2")
        set_meta(s, "tb", {"truncateBefore": 5, "maxCount": 4})
        check(versions(s, "tb") == [5, 6], "truncateBefore 5 + maxCount 4")
        # truncateBefore exactly the next version: nothing visible, the stream reads as absent
        set_meta(s, "tb", {"truncateBefore": 7})
        not_found(s.get(spath("tb") + "/events"), "read with everything truncated")
        not_found(s.get(spath("tb")), "info with everything truncated")
        check(listed(s) == {"keep": 2}, f"list with everything truncated: {listed(s)}")
        check(query_get(s, {"streams": "tb"}) == [], "query with everything truncated")
        # truncateBefore may point past the version: later appends below it stay hidden
        set_meta(s, "tb", {"truncateBefore": 9})
        book.add(append_ok(s, "tb", 2, expected=6))
        not_found(s.get(spath("tb") + "/events"), "v7, v8 are below truncateBefore 9")
        book.add(append_ok(s, "tb", 1, expected=8))
        check(versions(s, "tb") == [9], f"v9 visible: {versions(s, 'tb')}")
        check(query_get(s, {"streams": "tb"}) == book.triples("tb", [9]), "query v9")


def test_max_age_hides_old_events():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "age", 2))
        # effective time long ago, recorded now: maxAge looks at the recorded time
        book.add(append_ok(s, "old-time", [ev("t", 0, time="2001-01-01T00:00:00Z")]))
        set_meta(s, "age", {"maxAge": 1})
        set_meta(s, "old-time", {"maxAge": 3600})
        time.sleep(2.5)
        not_found(s.get(spath("age") + "/events"), "read after maxAge passed")
        not_found(s.get(spath("age")), "info after maxAge passed")
        check(listed(s) == {"old-time": 1}, f"stream list: {listed(s)}")
        check(query_get(s, {"streams": "age"}) == [], "query streams=age")
        check(query_post(s, {"types": ["t"]}) == book.triples("old-time", [1]), "POST query")
        check(user_events(log_read(s)) == book.triples("old-time", [1]), "log read")
        check(versions(s, "old-time") == [1], "recorded now, effective 2001: visible")
        check(get_meta(s, "age") == {"maxAge": 1, "maxCount": None, "truncateBefore": None},
              "settings")
        # a new event is visible, the old ones stay hidden
        book.add(append_ok(s, "age", [ev("t", "new")], expected=2))
        check(versions(s, "age") == [3], f"after a new append: {versions(s, 'age')}")
        check(query_get(s, {"streams": "age"}) == book.triples("age", [3]), "query after")
        check(stream_info(s, "age")["version"] == 3, "stream info version")
        # after a restart the expired events are still hidden
        s.restart()
        check(set(versions(s, "age") if s.get(spath("age"))[0] == 200 else []) <= {3},
              "expired events visible after a restart")
        check(versions(s, "old-time") == [1], "old-time after restart")
        # raising maxAge shows them again: hiding does not remove anything
        set_meta(s, "age", {"maxAge": 3600})
        check(versions(s, "age") == [1, 2, 3], f"maxAge 3600: {versions(s, 'age')}")

# ---------------------------------------------------------------- soft delete


def test_soft_delete_hides_everything():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "sd-1", 3))
        book.add(append_ok(s, "other-1", 2))
        book.add(append_ok(s, "zz-1", 1))
        set_meta(s, "sd-1", {"maxCount": 50})
        delete_ok(s, "sd-1")
        not_found(s.get(spath("sd-1")), "info after soft delete")
        not_found(s.get(spath("sd-1") + "/events"), "read after soft delete")
        not_found(s.get(spath("sd-1") + "/events?direction=backward"), "backward read")
        not_found(s.get(spath("sd-1") + "/events?from=2"), "read from 2")
        rest = book.log({"other-1": [1, 2], "zz-1": [1]})
        check(listed(s) == {"other-1": 2, "zz-1": 1}, f"stream list: {listed(s)}")
        check(listed(s, limit=1) == {"other-1": 2, "zz-1": 1}, "stream list by 1")
        check(listed(s, prefix="sd") == {}, "stream list prefix=sd")
        check(listed(s, category="sd") == {}, "stream list category=sd")
        check(query_get(s, {"streams": "sd-1"}) == [], "query streams=")
        check(query_get(s, {"category": "sd"}) == [], "query category=")
        check(query_post(s, {"types": ["t"]}) == rest, "POST query")
        check(user_events(log_read(s)) == rest, "log read")
        check(versions(s, "other-1") == [1, 2], "the other stream")
        # the soft delete set truncateBefore to the version after the current one and kept the
        # other settings
        check(get_meta(s, "sd-1") == {"maxAge": None, "maxCount": 50, "truncateBefore": 4},
              f"settings after soft delete: {get_meta(s, 'sd-1')}")
        # positions are kept: every event is still counted, none reused
        info = s.db_info()
        check(info["events"] == info["head"], f"events {info['events']} != head {info['head']}")
        ans = append_ok(s, "other-1", 1)
        check(ans["position"] == info["head"] + 1, f"position after soft delete: {ans}")
        # DELETE of a stream that never existed
        not_found(delete(s, "never"), "soft delete of a stream that never existed")
        not_found(s.get(spath("never") + "/events"), "never")
        check(get_meta(s, "never") == UNSET, "a failed delete left settings")


def test_soft_delete_then_append_continues_versions():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "re", 3))
        delete_ok(s, "re")
        head = s.head()
        # expectedVersion sees the real version
        for exp in (0, "no_stream", 2, 4):
            body = expect_error(s.append("re", [ev()], expected=exp), 409,
                                "wrong_expected_version")
            check(body["error"].get("actualVersion") == 3, f"actualVersion: {body!r}")
        st, _, body = s.post("/v1/databases/default/events", {"appends": [
            {"stream": "fresh", "events": [ev()]},
            {"stream": "re", "events": [ev()], "expectedVersion": "no_stream"}]})
        expect_error((st, None, body), 409, "wrong_expected_version",
                     "appends[1].expectedVersion")
        check(body["error"].get("actualVersion") == 3, f"multi actualVersion: {body!r}")
        check(s.head() == head, "refused appends wrote something")
        ans = book.add(append_ok(s, "re", [ev("t", "a"), ev("t", "b")], expected=3))
        check([e["version"] for e in ans["events"]] == [4, 5], f"versions continue: {ans}")
        check(versions(s, "re") == [4, 5], f"only the new events: {versions(s, 're')}")
        check(versions(s, "re", frm=1) == [4, 5], "from 1")
        check(versions(s, "re", "backward") == [5, 4], "backward")
        info = stream_info(s, "re")
        check(info["version"] == 5 and info["lastPosition"] == book.by_stream["re"][5][0],
              f"stream info {info}")
        check(listed(s) == {"re": 5}, f"stream list {listed(s)}")
        check(query_get(s, {"streams": "re"}) == book.triples("re", [4, 5]), "query")
        check(user_events(log_read(s)) == book.triples("re", [4, 5]), "log read")
        book.add(append_ok(s, "re", 1, expected="exists"))
        book.add(multi_ok(s, {"appends": [{"stream": "re", "events": [ev()],
                                           "expectedVersion": 6}]}))
        check(versions(s, "re") == [4, 5, 6, 7], "after more appends")
        # a second soft delete hides those too
        delete_ok(s, "re")
        not_found(s.get(spath("re") + "/events"), "read after a second soft delete")
        check(get_meta(s, "re")["truncateBefore"] == 8, f"second delete: {get_meta(s, 're')}")
        # deleting again (nothing visible; the spec leaves 204 or 404 open) changes nothing
        st, _, body = delete(s, "re")
        check(st in (204, 404), f"soft delete again: {st} {body!r}")
        check(get_meta(s, "re")["truncateBefore"] == 8,
              f"after deleting again: {get_meta(s, 're')}")
        book.add(append_ok(s, "re", 1, expected=7))
        check(versions(s, "re") == [8], "v8 after the second delete")


def test_put_after_soft_delete_replaces_truncate_before():
    with Server() as s:
        append_ok(s, "un", 3)
        set_meta(s, "un", {"maxCount": 2})
        delete_ok(s, "un")
        not_found(s.get(spath("un") + "/events"), "after soft delete")
        # the PUT replaces truncateBefore (and all other settings)
        set_meta(s, "un", {"maxCount": 2})
        check(versions(s, "un") == [2, 3], f"after PUT maxCount 2: {versions(s, 'un')}")
        check(listed(s) == {"un": 3}, "listed again")
        set_meta(s, "un", {})
        check(versions(s, "un") == [1, 2, 3], "after PUT {}")

# ---------------------------------------------------------------- hard delete


def assert_tombstoned(s, name, what):
    gone(s.get(spath(name)), f"{what}: info")
    gone(s.get(spath(name) + "/events"), f"{what}: read")
    gone(s.get(spath(name) + "/events?direction=backward&from=1"), f"{what}: backward read")
    gone(s.get(spath(name) + "/metadata"), f"{what}: GET metadata")
    gone(put_meta(s, name, {"maxCount": 1}), f"{what}: PUT metadata")
    gone(put_meta(s, name, {}), f"{what}: PUT metadata {{}}")
    gone(delete(s, name), f"{what}: soft delete")
    gone(delete(s, name, hard=True), f"{what}: hard delete again")
    for exp in (None, "any", "no_stream", "exists", 0, 3, 99):
        gone(s.append(name, [ev()], expected=exp), f"{what}: append expectedVersion {exp}")
    check(name not in listed(s), f"{what}: listed")
    check(query_get(s, {"streams": name}) == [], f"{what}: query streams=")
    check(query_post(s, {"streams": [name]}) == [], f"{what}: POST query")
    check(all(t[0] != name for t in log_read(s)), f"{what}: in the log read")


def test_hard_delete_refuses_everything():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "hd", 3))
        book.add(append_ok(s, "live", 1))
        set_meta(s, "hd", {"maxCount": 10})
        delete_ok(s, "hd", hard=True)
        before = s.db_info()
        assert_tombstoned(s, "hd", "hard-deleted")
        # as one part of a multi-stream append: the whole request fails, nothing is written
        for parts in ([{"stream": "newcomer", "events": [ev()]},
                       {"stream": "hd", "events": [ev()]}],
                      [{"stream": "hd", "events": [ev()]}, {"stream": "live", "events": [ev()]}],
                      [{"stream": "live", "events": [ev()], "expectedVersion": 1},
                       {"stream": "hd", "events": [ev()], "expectedVersion": 3}]):
            gone(s.post("/v1/databases/default/events", {"appends": parts}),
                 f"multi-stream append {[p['stream'] for p in parts]}")
        unchanged(s, before, "refused requests on a tombstone")
        not_found(s.get(spath("newcomer")), "a refused multi-stream append created newcomer")
        check(versions(s, "live") == [1], "live changed")
        check(user_events(log_read(s)) == book.triples("live", [1]), "log read")
        check(listed(s) == {"live": 1}, f"stream list {listed(s)}")
        # other streams keep working
        book.add(append_ok(s, "live", 1, expected=1))
        check(versions(s, "live") == [1, 2], "live after")


def test_hard_delete_of_unknown_name_and_after_soft_delete():
    with Server() as s:
        append_ok(s, "x", 1)
        delete_ok(s, "ghost", hard=True)  # never had events: the name becomes unusable
        assert_tombstoned(s, "ghost", "hard-deleted unknown name")
        st, _, body = s.post("/v1/databases/default/events",
                             {"appends": [{"stream": "ghost", "events": [ev()],
                                           "expectedVersion": "no_stream"}]})
        gone((st, None, body), "multi-stream append to a tombstoned unknown name")
        # soft, then hard
        append_ok(s, "sh", 3)
        delete_ok(s, "sh")
        append_ok(s, "sh", 1, expected=3)
        delete_ok(s, "sh")
        delete_ok(s, "sh", hard=True)
        assert_tombstoned(s, "sh", "soft then hard")
        # a name with settings only, then hard
        set_meta(s, "conf", {"maxAge": 60})
        delete_ok(s, "conf", hard=True)
        assert_tombstoned(s, "conf", "settings only, then hard")
        check(versions(s, "x") == [1], "x")
        check(listed(s) == {"x": 1}, f"stream list {listed(s)}")

# ---------------------------------------------------------------- durability


def observe(s, names):
    """Everything a lifecycle change decides, for the given stream names."""
    out = {}
    for n in names:
        st, _, body = s.get(spath(n) + "/events?limit=1000")
        code = body["error"]["code"] if st >= 400 else None
        vers = ([(e["version"], e["position"], e["id"]) for e in body["events"]]
                if st == 200 else None)
        st2, _, info = s.get(spath(n))
        st3, _, meta = s.get(spath(n) + "/metadata")
        out[n] = {"read": (st, code, vers),
                  "info": (st2, info.get("version") if st2 == 200 else info["error"]["code"]),
                  "meta": (st3, meta.get("metadata") if st3 == 200 else meta["error"]["code"]),
                  "query": query_get(s, {"streams": n})}
    out["$list"] = listed(s)
    out["$log"] = log_read(s)
    out["$post"] = query_post(s, {"types": ["t", "$metadata"]})
    info = s.db_info()
    out["$db"] = {k: info[k] for k in ("head", "headHash", "events")}
    return out


def test_lifecycle_durable_across_restart():
    with Server() as s:
        book = Book()
        for n in ("cnt", "trunc", "soft", "soft-re", "hard", "plain", "aged"):
            book.add(append_ok(s, n, 4))
        set_meta(s, "cnt", {"maxCount": 2})
        set_meta(s, "trunc", {"truncateBefore": 3})
        set_meta(s, "aged", {"maxAge": TEN_YEARS, "maxCount": 3})
        delete_ok(s, "soft")
        delete_ok(s, "soft-re")
        book.add(append_ok(s, "soft-re", 2, expected=4))
        delete_ok(s, "hard", hard=True)
        delete_ok(s, "tomb", hard=True)
        names = ["cnt", "trunc", "soft", "soft-re", "hard", "plain", "aged", "tomb"]
        want_vis = {"cnt": [3, 4], "trunc": [3, 4], "soft-re": [5, 6], "plain": [1, 2, 3, 4],
                    "aged": [2, 3, 4]}
        want_meta = {"cnt": {"maxAge": None, "maxCount": 2, "truncateBefore": None},
                     "trunc": {"maxAge": None, "maxCount": None, "truncateBefore": 3},
                     "soft": {"maxAge": None, "maxCount": None, "truncateBefore": 5},
                     "soft-re": {"maxAge": None, "maxCount": None, "truncateBefore": 5},
                     "plain": UNSET,
                     "aged": {"maxAge": TEN_YEARS, "maxCount": 3, "truncateBefore": None}}

        def expect(o, what):
            for n, vs in want_vis.items():
                got = o[n]["read"]
                check(got[0] == 200 and [v for v, _, _ in got[2]] == vs,
                      f"{what}: {n} read {got}, want {vs}")
                check([(p, i) for _, p, i in got[2]] == [book.by_stream[n][v] for v in vs],
                      f"{what}: {n} positions/ids")
                check(o[n]["query"] == book.triples(n, vs), f"{what}: {n} query {o[n]['query']}")
            check(o["soft"]["read"][:2] == (404, "stream_not_found"), f"{what}: soft {o['soft']}")
            check(o["soft"]["info"] == (404, "stream_not_found"), f"{what}: soft info")
            for n in ("hard", "tomb"):
                check(o[n]["read"][:2] == (410, "stream_deleted") and
                      o[n]["info"] == (410, "stream_deleted") and
                      o[n]["meta"] == (410, "stream_deleted") and o[n]["query"] == [],
                      f"{what}: {n} {o[n]}")
            for n, m in want_meta.items():
                check(o[n]["meta"] == (200, m), f"{what}: {n} settings {o[n]['meta']}, want {m}")
            check(o["$list"] == {"cnt": 4, "trunc": 4, "soft-re": 6, "plain": 4, "aged": 4},
                  f"{what}: stream list {o['$list']}")
            check(user_events(o["$log"]) == book.log(want_vis), f"{what}: log read")
            check([t for t in o["$post"] if not t[0].startswith("$$")] == book.log(want_vis),
                  f"{what}: POST query")
            check(o["$db"]["events"] == o["$db"]["head"], f"{what}: events != head")

        first = observe(s, names)
        expect(first, "right after the changes (unindexed)")
        wait_indexed(s)
        check(observe(s, names) == first, "results changed once the indexer caught up")
        s.restart()
        again = observe(s, names)
        expect(again, "after a restart")
        check(again == first, "results changed across the restart")
        # writing goes on from the real versions, and tombstones stay
        book.add(append_ok(s, "soft", 1, expected=4))
        check(versions(s, "soft") == [5], "soft after restart")
        book.add(append_ok(s, "cnt", 1, expected=4))
        check(versions(s, "cnt") == [4, 5], "cnt after restart")
        gone(s.append("hard", [ev()]), "hard after restart")
        gone(s.append("tomb", [ev()]), "tomb after restart")
        # changes made after a restart, then a kill -9: acknowledged means durable
        set_meta(s, "plain", {"maxCount": 1})
        delete_ok(s, "trunc")
        delete_ok(s, "aged", hard=True)
        s.kill9()
        s.start()
        check(versions(s, "plain") == [4], "maxCount after kill -9")
        not_found(s.get(spath("trunc") + "/events"), "soft delete after kill -9")
        gone(s.get(spath("aged") + "/events"), "hard delete after kill -9")
        check(versions(s, "soft") == [5] and versions(s, "cnt") == [4, 5], "appends after kill -9")

# ---------------------------------------------------------------- $metadata events


def test_metadata_events_in_log_and_verify():
    with Server() as s:
        book = Book()
        book.add(append_ok(s, "m", 3))
        changes = []  # (stream, position) of each change, in order
        set_meta(s, "m", {"maxCount": 2})
        changes.append(("$$m", s.head()))
        book.add(append_ok(s, "m", 1))
        delete_ok(s, "m")
        changes.append(("$$m", s.head()))
        book.add(append_ok(s, "n", 2))
        delete_ok(s, "n", hard=True)
        changes.append(("$$n", s.head()))
        delete_ok(s, "q", hard=True)
        changes.append(("$$q", s.head()))
        book.add(append_ok(s, "m", 1))
        head = s.head()
        log = log_read(s)
        meta = [t for t in log if t[0].startswith("$$")]
        check([(st, p) for st, _, p in meta] == changes,
              f"$metadata events: {meta}, want {changes}")
        check([v for st, v, _ in meta if st == "$$m"] == [1, 2], f"$$m versions: {meta}")
        # every position is accounted for exactly once: visible events, $metadata events and
        # the hidden events the appends acknowledged
        hidden = book.triples("m", [1, 2, 3, 4]) + book.triples("n", [1, 2])
        all_pos = sorted([p for _, _, p in log] + [p for _, _, p in hidden])
        check(all_pos == list(range(1, head + 1)), f"positions not gap-free: {all_pos}")
        check(user_events(log) == book.triples("m", [5]), f"user events in the log: {log}")
        # the $metadata events carry their type and are readable, not writable
        st, _, page = s.get("/v1/databases/default/events?types=%24metadata")
        check(st == 200 and [(e["stream"], e["position"]) for e in page["events"]] == changes,
              f"types=$metadata: {st} {page!r}")
        check(all(e["type"] == "$metadata" for e in page["events"]), "type $metadata")
        check(versions(s, "$$m") == [1, 2], "$$m stream read")
        expect_error(s.append("$$m", [ev()]), 400, "invalid_name")
        expect_error(s.post("/v1/databases/default/events",
                            {"appends": [{"stream": "$$m", "events": [ev()]}]}), 400,
                     "invalid_name")
        info = s.db_info()
        check(info["events"] == head and info["head"] == head, f"db info {info}")
        # the chain covers the $metadata events: verify on the stopped server
        check(s.stop() == 0, "stop")
        out = verify_ok(s.data)
        check("default" in out, f"verify output does not name the database: {out}")
        s.start()
        check(log_read(s) == log, "log changed after verify and restart")
        check(s.db_info()["headHash"] == info["headHash"], "headHash changed")

# ---------------------------------------------------------------- concurrency


def test_concurrent_appends_and_soft_deletes():
    with Server() as s:
        lock = threading.Lock()
        acked = []  # (stream, id, position, version)
        errors = []
        deletes = []  # statuses
        book = Book()
        book.add(append_ok(s, "race", 1))
        acked.append(("race", book.by_stream["race"][1][1], book.by_stream["race"][1][0], 1))
        done = threading.Event()

        def appender(i):
            conn = s.connect()
            try:
                for j in range(15):
                    stream = "race" if (i + j) % 4 else "bystander"
                    evs = [ev("t", [i, j, k], id=str(uuid.uuid4())) for k in range(1 + (i + j) % 3)]
                    st, _, ans = s.append(stream, evs, conn=conn)
                    if st != 201:
                        with lock:
                            errors.append(f"append {stream}: {st} {ans!r}")
                        return
                    with lock:
                        if [e["id"] for e in ans["events"]] != [e["id"] for e in evs]:
                            errors.append(f"append {stream}: ids {ans!r}")
                        for e in ans["events"]:
                            acked.append((stream, e["id"], e["position"], e["version"]))
            finally:
                conn.close()

        def deleter():
            conn = s.connect()
            try:
                while not done.is_set():
                    st, _, body = s.request("DELETE", spath("race"), conn=conn)
                    with lock:
                        deletes.append(st)
                    if st not in (204, 404):
                        with lock:
                            errors.append(f"delete: {st} {body!r}")
                        return
                    time.sleep(0.005)
            finally:
                conn.close()

        ts = [threading.Thread(target=appender, args=(i,), daemon=True) for i in range(6)]
        dt = threading.Thread(target=deleter, daemon=True)
        dt.start()
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        done.set()
        dt.join(30)
        check(not any(t.is_alive() for t in ts + [dt]), "threads did not finish")
        check(not errors, "; ".join(errors[:5]))
        check(204 in deletes, f"no soft delete succeeded: {deletes}")

        def verify_state(what):
            head = s.head()
            tb = get_meta(s, "race")["truncateBefore"]
            by_stream = {}
            for stream, eid, pos, ver in acked:
                by_stream.setdefault(stream, []).append((ver, pos, eid))
            for stream, lst in by_stream.items():
                vs = sorted(v for v, _, _ in lst)
                check(vs == list(range(1, len(vs) + 1)),
                      f"{what}: {stream} acknowledged versions not gap-free/unique: {vs}")
            top = len(by_stream["race"])
            check(is_int(tb) and 2 <= tb <= top + 1, f"{what}: truncateBefore {tb}, top {top}")
            log = log_read(s)
            meta = [t for t in log if t[0] == "$$race"]
            check(len(meta) == deletes.count(204),
                  f"{what}: {len(meta)} $metadata events for {deletes.count(204)} deletes")
            check(all(t[0] in ("race", "bystander", "$$race") for t in log),
                  f"{what}: unexpected streams in the log")
            # positions gap-free: visible + hidden acknowledged = 1..head, each once
            hidden = [(st, v, p) for st, _, p, v in acked if st == "race" and v < tb]
            visible = sorted([(st, v, p) for st, _, p, v in acked
                              if not (st == "race" and v < tb)], key=lambda t: t[2])
            check(user_events(log) == visible, f"{what}: visible events differ from the "
                                               f"acknowledged ones at or above {tb}")
            allpos = sorted([p for _, _, p in log] + [p for _, _, p in hidden])
            check(allpos == list(range(1, head + 1)), f"{what}: positions not gap-free")
            # the last delete hid exactly what was committed before it
            last = meta[-1][2]
            before = [v for st, _, p, v in acked if st == "race" and p < last]
            check(tb == max(before) + 1, f"{what}: truncateBefore {tb}, but the last delete at "
                                         f"position {last} came after version {max(before)}")
            race = {v: (p, eid) for v, p, eid in by_stream["race"]}
            if tb <= top:
                pages, ver, evs = stream_pages(s, "race", limit=7)
                check(ver == top, f"{what}: race version {ver} != {top}")
                check([(e["version"], e["position"], e["id"]) for e in evs] ==
                      [(v,) + race[v] for v in range(tb, top + 1)], f"{what}: race read")
                check(listed(s).get("race") == top, f"{what}: race in the list")
            else:
                not_found(s.get(spath("race") + "/events"), f"{what}: race fully deleted")
                check("race" not in listed(s), f"{what}: race listed")
            check(versions(s, "bystander") == list(range(1, len(by_stream["bystander"]) + 1)),
                  f"{what}: bystander")
            check(s.db_info()["events"] == head, f"{what}: events != head")

        verify_state("after the race")
        s.restart()
        verify_state("after a restart")
        check(s.stop() == 0, "stop")
        verify_ok(s.data)


def test_hidden_events_by_position_and_soft_delete_never_lowers():
    """GET /events/{position} of a hidden event is 404 like every other read; a soft delete
    never lowers a truncateBefore already set higher; the PUT answer lists every setting;
    the multi-stream 410 names the part."""
    with Server() as s:
        append_ok(s, "h-1", 5)
        st, _, ans = put_meta(s, "h-1", {"maxCount": 2})
        check(st == 200 and ans["metadata"] == {"maxAge": None, "maxCount": 2,
                                               "truncateBefore": None}, f"PUT answer {ans}")
        expect_error(s.get(f"/v1/databases/{DB}/events/1"), 404, "event_not_found")
        st, _, e5 = s.get(f"/v1/databases/{DB}/events/5")
        check(st == 200 and e5["version"] == 5, f"visible event {st} {e5}")
        put_meta(s, "h-1", {"truncateBefore": 99})
        st, _, _ = s.request("DELETE", spath("h-1"))
        check(st == 204, f"soft delete {st}")
        st, _, m = s.get(spath("h-1") + "/metadata")
        check(m["metadata"]["truncateBefore"] == 99, f"lowered: {m}")
        expect_error(s.get(spath("$x") + "/metadata"), 400, "invalid_name")
        s.request("DELETE", spath("h-2") + "?hard=true")
        r = s.post(f"/v1/databases/{DB}/events", {"appends": [
            {"stream": "h-3", "events": [ev()]}, {"stream": "h-2", "events": [ev()]}]})
        expect_error(r, 410, "stream_deleted", "appends[1].stream")


def test_as_of_reads_agree_between_stream_reads_and_queries():
    """Visibility is judged as of the read's point in time in stream reads and queries alike."""
    with Server() as s:
        append_ok(s, "ao", 5)
        put_meta(s, "ao", {"maxCount": 1})
        st, _, page = s.get(spath("ao") + "/events?asOf=1")
        check(st == 200 and [e["version"] for e in page["events"]] == [1], f"stream read {page}")
        st, _, page = s.get(f"/v1/databases/{DB}/events?streams=ao&asOf=1")
        check([e["version"] for e in page["events"]] == [1], f"query {page}")
