"""Database settings given at creation (DeltaBase's event store settings): description,
retentionPeriodDays (older events are hidden everywhere) and maxStreamSizeBytes (appends that
would grow a stream past it are refused with 413 and change nothing)."""
import os

from harness import Server, Skip, check, expect_error

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def create(s, body):
    return s.post("/v1/databases", body)


def test_settings_round_trip_and_restart():
    with Server() as s:
        st, _, _ = create(s, {"name": "shop", "description": "orders of the shop",
                              "settings": {"retentionPeriodDays": 365,
                                           "maxStreamSizeBytes": 104857600,
                                           "idempotencyTtlSeconds": 3600}})
        check(st == 201, f"create {st}")
        for _ in range(2):
            st, _, info = s.get("/v1/databases/shop")
            check(st == 200 and info["description"] == "orders of the shop", f"{info}")
            check(info["settings"] == {"retentionPeriodDays": 365,
                                       "maxStreamSizeBytes": 104857600, "rateLimit": None,
                                       "idempotencyTtlSeconds": 3600},
              f"{info}")
            s.restart()
        st, _, info = s.get("/v1/databases/default")
        check(info["description"] == "" and info["settings"] == {
            "retentionPeriodDays": None, "maxStreamSizeBytes": None, "rateLimit": None,
            "idempotencyTtlSeconds": None},
            f"default {info}")
        st, _, _ = create(s, {"name": "plain"})
        st, _, info = s.get("/v1/databases/plain")
        check(info["settings"]["retentionPeriodDays"] is None, f"{info}")


def test_settings_validation_changes_nothing():
    bad = [
        ({"name": "a", "settings": {"retentionPeriodDays": 0}}, "settings.retentionPeriodDays"),
        ({"name": "a", "settings": {"retentionPeriodDays": -1}}, "settings.retentionPeriodDays"),
        ({"name": "a", "settings": {"retentionPeriodDays": 36501}},
         "settings.retentionPeriodDays"),
        ({"name": "a", "settings": {"retentionPeriodDays": 1.5}}, "settings.retentionPeriodDays"),
        ({"name": "a", "settings": {"maxStreamSizeBytes": "big"}}, "settings.maxStreamSizeBytes"),
        ({"name": "a", "settings": {"maxStreamSizeBytes": 0}}, "settings.maxStreamSizeBytes"),
        ({"name": "a", "settings": {"other": 1}}, "settings.other"),
        ({"name": "a", "settings": []}, "settings"),
        ({"name": "a", "description": 7}, "description"),
        ({"name": "a", "description": "x" * 1025}, "description"),
        ({"name": "a", "region": "us-west-1"}, "region"),
    ]
    with Server() as s:
        for body, field in bad:
            expect_error(create(s, body), 400, "invalid_request", field)
        st, _, page = s.get("/v1/databases")
        check([d["name"] for d in page["databases"]] == ["default"], f"created anyway: {page}")
        st, _, _ = create(s, {"name": "a", "description": None, "settings": None})
        check(st == 201, f"nulls are defaults: {st}")


def test_max_stream_size_refuses_and_changes_nothing():
    with Server() as s:
        create(s, {"name": "small", "settings": {"maxStreamSizeBytes": 1000}})
        base = "/v1/databases/small"
        ev = {"type": "x", "data": "a" * 100}
        acked = 0
        while True:
            st, _, body = s.post(f"{base}/streams/s-1/events", {"events": [ev]})
            if st != 201:
                break
            acked += 1
        expect_error((st, {}, body), 413, "stream_too_large", "events")
        check(4 <= acked <= 8, f"{acked} events of ~130 bytes fit in 1000 bytes")
        st, _, info = s.get(f"{base}/streams/s-1")
        check(info["version"] == acked, f"refused append changed the stream: {info}")
        # another stream is not affected; a multi-stream append fails as a whole
        st, _, _ = s.post(f"{base}/streams/s-2/events", {"events": [ev]})
        check(st == 201, f"s-2: {st}")
        head = s.db_info("small")["head"]
        r = s.post(f"{base}/events", {"appends": [{"stream": "s-2", "events": [ev]},
                                                  {"stream": "s-1", "events": [ev]}]})
        expect_error(r, 413, "stream_too_large", "appends[1].events")
        check(s.db_info("small")["head"] == head, "a part of a refused request was written")
        # stream-less (DCB) events are not a stream: not limited
        for _ in range(12):
            st, _, _ = s.post(f"{base}/events", {"events": [ev]})
            check(st == 201, f"dcb append: {st}")
        # the size survives a restart (rebuilt from the index and the log)
        s.restart()
        r = s.post(f"{base}/streams/s-1/events", {"events": [ev]})
        expect_error(r, 413, "stream_too_large")
        st, _, row = s.get(f"{base}/streams/s-1")
        check(row["bytes"] <= 1000 and row["bytes"] > 1000 - 200, f"bytes {row}")


def test_retention_hides_old_events():
    if not os.path.exists(FAKETIME):
        raise Skip("libfaketime is not installed")
    with Server() as s:
        create(s, {"name": "ret", "settings": {"retentionPeriodDays": 30}})
        base = "/v1/databases/ret"
        s.post(f"{base}/streams/old-1/events", {"events": [{"type": "t", "data": 1},
                                                            {"type": "t", "data": 2}]})
        s.stop()
        # 31 days later: the old events are past the retention period
        env = dict(os.environ, LD_PRELOAD=FAKETIME, FAKETIME="+31d",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        later = Server(data_dir=s.data, env=env)
        try:
            expect_error(later.get(f"{base}/streams/old-1/events"), 404, "stream_not_found")
            expect_error(later.get(f"{base}/streams/old-1"), 404, "stream_not_found")
            st, _, page = later.get(f"{base}/events")
            check(st == 200 and page["events"] == [], f"log read: {page}")
            st, _, page = later.get(f"{base}/events?types=t")
            check(page["events"] == [], f"query: {page}")
            st, _, page = later.get(f"{base}/streams")
            check(page["streams"] == [], f"list: {page}")
            st, _, _ = later.post(f"{base}/streams/old-1/events", {"events": [{"type": "t",
                                                                              "data": 3}]})
            check(st == 201, f"append {st}")
            st, _, page = later.get(f"{base}/streams/old-1/events")
            check([e["version"] for e in page["events"]] == [3], f"only the new one: {page}")
            st, _, page = later.get(f"{base}/events")
            check([e["position"] for e in page["events"]] == [3], f"log: {page}")
            # the default database has no retention: nothing hidden there
            later.post("/v1/databases/default/streams/d/events", {"events": [{"type": "t",
                                                                              "data": 1}]})
        finally:
            later.stop()
            later.cleanup()


def test_max_stream_size_holds_across_restart():
    """The writer's idea of a stream's size is seeded from the index after a restart (it used
    to restart from zero and let the stream grow past the limit)."""
    with Server() as s:
        create(s, {"name": "lim", "settings": {"maxStreamSizeBytes": 2000}})
        ev = {"type": "x", "data": "a" * 100}
        for _ in range(8):
            s.post("/v1/databases/lim/streams/st/events", {"events": [ev]})
        s.restart()
        for _ in range(8):
            s.post("/v1/databases/lim/streams/st/events", {"events": [ev]})
        st, _, row = s.get("/v1/databases/lim/streams/st")
        check(row["bytes"] <= 2000, f"stream grew past its limit: {row}")


def test_settings_can_be_changed_after_creation():
    with Server() as s:
        create(s, {"name": "shop", "description": "first",
                   "settings": {"maxStreamSizeBytes": 1000, "idempotencyTtlSeconds": 60}})
        base = "/v1/databases/shop"
        ev = {"type": "x", "data": "a" * 400}
        check(s.post(f"{base}/streams/s/events", {"events": [ev]})[0] == 201, "first")
        expect_error(s.post(f"{base}/streams/s/events", {"events": [ev]}), 413,
                     "stream_too_large")
        # raise the limit, set a rate limit, clear the TTL, keep the rest
        st, _, info = s.request("PATCH", base, {"description": "second",
                                                "settings": {"maxStreamSizeBytes": 100000,
                                                             "rateLimit": 50,
                                                             "idempotencyTtlSeconds": None}})
        check(st == 200 and info["description"] == "second" and info["settings"] == {
            "retentionPeriodDays": None, "maxStreamSizeBytes": 100000, "rateLimit": 50,
            "idempotencyTtlSeconds": None}, f"PATCH: {st} {info}")
        st, h, _ = s.post(f"{base}/streams/s/events", {"events": [ev]})
        check(st == 201, f"the new limit is in force at once: {st}")
        check(h.get("x-ratelimit-limit") == "50", f"the new rate limit: {h}")
        # only the members given change
        st, _, info = s.request("PATCH", base, {"settings": {"retentionPeriodDays": 7}})
        check(info["description"] == "second" and info["settings"]["maxStreamSizeBytes"] == 100000
              and info["settings"]["retentionPeriodDays"] == 7, f"{info}")
        s.restart()
        st, _, info = s.get(base)
        check(info["description"] == "second" and info["settings"] == {
            "retentionPeriodDays": 7, "maxStreamSizeBytes": 100000, "rateLimit": 50,
            "idempotencyTtlSeconds": None}, f"after a restart: {info}")
        # bad changes change nothing
        for body, field in (({"name": "other"}, "name"),
                            ({"settings": {"maxStreamSizeBytes": 0}}, "settings.maxStreamSizeBytes"),
                            ({"settings": {"bogus": 1}}, "settings.bogus"),
                            ({"settings": 5}, "settings"),
                            ({"description": 7}, "description")):
            expect_error(s.request("PATCH", base, body), 400, "invalid_request", field)
        expect_error(s.request("PATCH", base, "not json",
                               headers={"Content-Type": "application/json"}), 400, "invalid_json")
        expect_error(s.request("PATCH", "/v1/databases/nope", {"description": "x"}), 404,
                     "database_not_found")
        st, _, after = s.get(base)
        check(after["settings"] == info["settings"] and after["description"] == "second",
              f"a refused change changed something: {after}")


def test_retention_set_later_hides_old_events():
    if not os.path.exists(FAKETIME):
        raise Skip("libfaketime is not installed")
    with Server() as s:
        create(s, {"name": "ret"})
        base = "/v1/databases/ret"
        s.post(f"{base}/streams/old-1/events", {"events": [{"type": "t", "data": 1}]})
        s.stop()
        env = dict(os.environ, LD_PRELOAD=FAKETIME, FAKETIME="+31d",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        s.env = env
        s.start()
        st, _, page = s.get(f"{base}/events")
        check(len(page["events"]) == 1, f"no retention yet: {page}")
        st, _, _ = s.request("PATCH", base, {"settings": {"retentionPeriodDays": 30}})
        check(st == 200, f"PATCH {st}")
        st, _, page = s.get(f"{base}/events")
        check(page["events"] == [], f"older than the new retention: {page}")
        st, _, _ = s.request("PATCH", base, {"settings": {"retentionPeriodDays": None}})
        st, _, page = s.get(f"{base}/events")
        check(len(page["events"]) == 1, f"retention lifted before any compaction: {page}")
