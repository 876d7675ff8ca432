"""Compaction (docs/api.md, "Compaction"; docs/design/storage.md, "Compaction"): the log space of
deleted and expired events is reclaimed, on request (POST /v1/databases/{db}/compaction) and in
the background (--compact-interval), while every visible read answers exactly as before,
positions and versions go on, the hash chain verifies (annals verify) and appends made during
a compaction are all kept."""
import json
import os
import threading
import time
import uuid

from harness import Server, check, expect_error, run_cli, wait_until

DB = "default"
PAD = "x" * 4000  # ~4 KB of data per event: the space a compaction gives back


def ev(i, **kw):
    e = {"type": "t", "data": {"i": i, "pad": PAD}}
    e.update(kw)
    return e


def append_ok(s, stream, events):
    st, _, ans = s.append(stream, events)
    check(st == 201, f"append to {stream}: {st} {ans!r}")
    return ans


def fill(s, stream, n):
    for i in range(0, n, 10):
        append_ok(s, stream, [ev(j) for j in range(i, min(n, i + 10))])


def compaction(s, db=DB):
    st, _, body = s.get(f"/v1/databases/{db}/compaction")
    check(st == 200, f"GET compaction: {st} {body!r}")
    return body["compaction"]


def wait_indexed(s, db=DB):
    wait_until(lambda: s.db_info(db)["indexer"]["indexed"] == s.head(db), 10)


def compact(s, db=DB, runs_before=None):
    """Requests a compaction and waits for it to end; returns the status."""
    before = compaction(s, db)["checks"] if runs_before is None else runs_before
    st, _, body = s.post(f"/v1/databases/{db}/compaction", {})
    check(st == 202, f"POST compaction: {st} {body!r}")
    c = body["compaction"]
    check(c["requested"] or c["running"] or c["checks"] > before, f"request not noted: {body}")
    wait_until(lambda: compaction(s, db)["checks"] > before and
               not compaction(s, db)["running"], 30)
    return compaction(s, db)


def visible_state(s):
    """Everything a client can read: the log, each stream, a query, the stream list."""
    streams = sorted(x["stream"] for x in s.get(f"/v1/databases/{DB}/streams?limit=1000")[2]
                     ["streams"])
    st, _, q = s.get(f"/v1/databases/{DB}/events?types=t&limit=1000")
    check(st == 200, f"query {st} {q!r}")
    return {"log": s.read_log(), "streams": streams,
            "per_stream": {n: s.read_stream(n) for n in streams},
            "query": q["events"]}


def log_files(s, db=DB):
    return sorted(f for f in os.listdir(os.path.join(s.data, "dbs", db)) if f.startswith("events"))


def verify_ok(data_dir):
    rc, out = run_cli(["verify", "--data", data_dir])
    check(rc == 0 and "hash chain intact" in out, f"annals verify exit {rc}: {out}")


def test_compaction_reclaims_deleted_and_expired_events():
    """Soft and hard deletes, maxCount, truncateBefore and maxAge: their events' space comes
    back, every visible read is unchanged, hidden events stay hidden, versions continue, event
    ids keep their meaning, and it all survives a restart and verifies."""
    with Server() as s:
        fill(s, "gone-1", 40)          # soft-deleted: 40 redacted
        fill(s, "trim", 40)            # maxCount 5: 35 redacted
        fill(s, "tb", 20)              # truncateBefore 11: 10 redacted
        fill(s, "hard", 10)            # hard-deleted: 10 redacted
        fill(s, "old", 6)              # maxAge 1 s: 6 redacted
        first_id = str(uuid.uuid4())
        append_ok(s, "keep", [ev(-1, id=first_id)])
        keyed = ("POST", f"/v1/databases/{DB}/streams/keep/events", {"events": [ev(-2)]})
        st, _, keyed_ans = s.request(*keyed, headers={"Idempotency-Key": "before-compaction"})
        check(st == 201, f"keyed append {st} {keyed_ans}")
        fill(s, "keep", 30)            # nothing hidden
        check(s.request("DELETE", f"/v1/databases/{DB}/streams/gone-1")[0] == 204, "delete")
        check(s.request("DELETE", f"/v1/databases/{DB}/streams/hard?hard=true")[0] == 204,
              "hard delete")
        for stream, meta in (("trim", {"maxCount": 5}), ("tb", {"truncateBefore": 11}),
                             ("old", {"maxAge": 1})):
            st, _, b = s.request("PUT", f"/v1/databases/{DB}/streams/{stream}/metadata", meta)
            check(st == 200, f"metadata {stream}: {st} {b}")
        time.sleep(1.5)  # "old" expires
        wait_indexed(s)
        before = visible_state(s)
        trim_asof = f"/v1/databases/{DB}/streams/trim/events?asOf=50"  # trim's version 10
        st, _, page = s.get(trim_asof)
        check(st == 200 and [e["version"] for e in page["events"]] == [6, 7, 8, 9, 10],
              f"asOf read before compaction {st} {page}")
        info0 = s.db_info()
        check(len(before["per_stream"]["trim"]) == 5 and len(before["per_stream"]["tb"]) == 10,
              f"lifecycle hides before compaction: {[len(v) for v in before['per_stream'].values()]}")
        check(compaction(s)["generation"] == 0 and log_files(s) == ["events.log"], "gen 0")

        c = compact(s)
        last = c["last"]
        check(last["outcome"] == "ok" and last["rewrote"] and c["runs"] == 1,
              f"compaction status {c}")
        check(last["redactedEvents"] == 40 + 35 + 10 + 10 + 6, f"redacted {last}")
        check(last["reclaimedBytes"] > 101 * 3900, f"reclaimed {last}")
        check(last["logBytesBefore"] - last["logBytesAfter"] == last["reclaimedBytes"],
              f"log sizes {last}")
        check(c["generation"] == 1 and log_files(s) == ["events.1.log"],
              f"generation {c} files {log_files(s)}")
        info1 = s.db_info()
        check(info1["bytesUsed"] <= info0["bytesUsed"] - last["reclaimedBytes"] + 65536,
              f"bytesUsed {info0['bytesUsed']} -> {info1['bytesUsed']}")
        for k in ("head", "headHash", "events", "streams"):
            check(info1[k] == info0[k], f"{k} changed {info0[k]} -> {info1[k]}")
        check(info1["compaction"]["runs"] == 1, f"db stats carry the compaction: {info1}")
        st, _, text = s.get("/metrics")
        text = text.decode() if isinstance(text, bytes) else text
        check(f'annals_compactions_total{{database="{DB}"}} 1' in text and
              f'annals_compaction_reclaimed_bytes_total{{database="{DB}"}} '
              f'{last["reclaimedBytes"]}' in text, "metrics carry the compaction")
        after = visible_state(s)
        check(after == before, "visible reads changed by the compaction")

        # hidden positions stay hidden; a redacted event is not served even as of the past
        expect_error(s.get(f"/v1/databases/{DB}/events/1"), 404, "event_not_found")
        st, _, page = s.get(trim_asof)
        check(st == 200 and page["events"] == [], f"asOf read of redacted events {st} {page}")
        # versions continue; the hard-deleted stream stays closed
        ans = append_ok(s, "gone-1", [ev(99)])
        check(ans["version"] == 41, f"soft-deleted stream continues: {ans}")
        expect_error(s.append("hard", [ev(1)]), 410, "stream_deleted")
        # the id of a redacted event: same content is a duplicate, other content a conflict
        dup_id = str(uuid.uuid4())
        append_ok(s, "trim", [ev(500, id=dup_id)])
        fill(s, "trim", 10)  # pushes the event with dup_id out (maxCount 5)
        wait_indexed(s)
        c = compact(s)
        check(c["last"]["redactedEvents"] == 11, f"second compaction {c}")
        st, _, ans = s.append("trim", [ev(500, id=dup_id)])
        check(st == 200 and ans.get("duplicate") is True, f"re-sent redacted event: {st} {ans}")
        r = s.append("trim", [ev(501, id=dup_id)])
        expect_error(r, 409, "duplicate_event_id")
        st, _, ans = s.append("keep", [ev(-1, id=first_id)])
        check(st == 200 and ans.get("duplicate") is True, f"kept duplicate {st} {ans}")
        # the log's copy of an indexed idempotency record is dropped; the key still replays
        st, h, ans = s.request(*keyed, headers={"Idempotency-Key": "before-compaction"})
        check(st == 201 and h.get("x-idempotency-replayed") == "true" and ans == keyed_ans,
              f"keyed request after compaction: {st} {h} {ans}")

        final = visible_state(s)
        s.restart()
        check(visible_state(s) == final, "reads changed across a restart")
        check(compaction(s)["generation"] == 2, "generation survives a restart")
        check(s.stop() == 0, "stop")
        verify_ok(s.data)


def test_appends_during_a_compaction_are_all_kept():
    """Appends and reads go on while a compaction rewrites the log: every acknowledged event is
    there afterwards, at its position, and the chain verifies."""
    with Server() as s:
        big = "y" * 16000
        for i in range(0, 600, 20):
            append_ok(s, "bulk", [{"type": "b", "data": {"p": big}} for _ in range(20)])
        check(s.request("DELETE", f"/v1/databases/{DB}/streams/bulk")[0] == 204, "delete")
        wait_indexed(s)
        acked = []
        stop = threading.Event()
        errors = []

        def writer(n):
            i = 0
            while not stop.is_set() or i < 20:
                st, _, ans = s.append(f"w{n}", [{"type": "w", "data": {"n": n, "i": i}}])
                if st != 201:
                    errors.append((st, ans))
                    return
                acked.append((ans["events"][0]["position"], f"w{n}", i))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        c = compact(s)
        stop.set()
        for t in threads:
            t.join(60)
        check(not errors, f"appends failed during compaction: {errors[:3]}")
        check(c["last"]["redactedEvents"] == 600, f"compaction {c}")
        log = {e["position"]: e for e in s.read_log() if e["stream"][0] == "w"}
        for pos, stream, i in acked:
            e = log.get(pos)
            check(e is not None and e["stream"] == stream and e["data"]["i"] == i,
                  f"acknowledged event at {pos} ({stream} #{i}) missing or wrong: {e}")
        check(len(log) == len(acked), f"{len(log)} events read, {len(acked)} acknowledged")
        s.restart()
        check(len([e for e in s.read_log() if e["stream"][0] == "w"]) == len(acked),
              "after a restart")
        check(s.stop() == 0, "stop")
        verify_ok(s.data)


def test_background_compaction_runs_when_worth_it():
    """With --compact-interval, a database whose deleted events hold enough of the log is
    compacted without being asked; one with little to reclaim is only checked."""
    with Server(extra=["--compact-interval", "1"]) as s:
        st, _, _ = s.post("/v1/databases", {"name": "little"})
        check(st == 201, "create db")
        fill(s, "big", 400)  # ~1.6 MB
        for i in range(0, 100, 10):
            st, _, _ = s.append("keep", [ev(j) for j in range(10)], db="little")
            check(st == 201, "append little")
        st, _, _ = s.append("small", [ev(1)], db="little")
        check(s.request("DELETE", f"/v1/databases/{DB}/streams/big")[0] == 204, "delete big")
        check(s.request("DELETE", "/v1/databases/little/streams/small")[0] == 204, "delete small")
        wait_until(lambda: compaction(s)["runs"] >= 1, 20)
        c = compaction(s)
        check(c["last"]["redactedEvents"] == 400 and c["generation"] == 1, f"background {c}")
        wait_until(lambda: compaction(s, "little")["checks"] >= 2, 20)
        c = compaction(s, "little")
        check(c["runs"] == 0 and c["generation"] == 0 and c["last"]["redactedEvents"] == 1
              and not c["last"]["rewrote"], f"not worth it: {c}")
        check(len(s.read_stream("keep", db="little")) == 100, "little's events")
        check(s.stop() == 0, "stop")
        verify_ok(s.data)


def test_compaction_requests_and_errors():
    """Nothing to reclaim: the log is left as it is. Unknown databases 404; the request is an
    administrative one (idempotency keys refused); a deleted database's compactor stops."""
    with Server() as s:
        fill(s, "a", 10)
        wait_indexed(s)
        c = compact(s)
        check(c["runs"] == 0 and c["last"]["redactedEvents"] == 0 and not c["last"]["rewrote"]
              and c["generation"] == 0, f"nothing to do: {c}")
        check(log_files(s) == ["events.log"], f"files {log_files(s)}")
        expect_error(s.get("/v1/databases/nope/compaction"), 404, "database_not_found")
        expect_error(s.post("/v1/databases/nope/compaction", {}), 404, "database_not_found")
        expect_error(s.post(f"/v1/databases/{DB}/compaction", {},
                            headers={"Idempotency-Key": "k1"}), 400,
                     "idempotency_not_supported")
        # a body is nothing or an empty object: no options exist, none is silently ignored
        runs = compaction(s)["checks"]
        expect_error(s.post(f"/v1/databases/{DB}/compaction", {"dryRun": True}), 400,
                     "invalid_request", "dryRun")
        expect_error(s.post(f"/v1/databases/{DB}/compaction", "{nope",
                            headers={"Content-Type": "application/json"}), 400, None)
        check(compaction(s)["checks"] == runs, "a refused request started nothing")
        st, _, _ = s.post(f"/v1/databases/{DB}/compaction", b"")
        check(st == 202, f"no body: {st}")
        st, _, _ = s.post("/v1/databases", {"name": "doomed"})
        for i in range(5):
            s.append("d", [ev(i)], db="doomed")
        s.request("DELETE", "/v1/databases/doomed/streams/d")
        s.post("/v1/databases/doomed/compaction", {})
        st, _, _ = s.request("DELETE", "/v1/databases/doomed")
        check(st == 204, f"delete database during compaction: {st}")
        check(not os.path.exists(os.path.join(s.data, "dbs", "doomed")), "files gone")
        check(s.stop() == 0, "stop")


def test_relaxed_settings_after_a_compaction_page_past_what_is_gone():
    """Settings relaxed after a compaction show nothing of what it removed, and stream pages
    (forward, backward, from the start, asOf) skip the removed versions without ending early."""
    with Server() as s:
        fill(s, "relax", 40)
        st, _, _ = s.request("PUT", f"/v1/databases/{DB}/streams/relax/metadata",
                             {"maxCount": 5})
        check(st == 200, "maxCount")
        wait_indexed(s)
        c = compact(s)
        check(c["last"]["redactedEvents"] == 35, f"compaction {c}")
        st, _, _ = s.request("PUT", f"/v1/databases/{DB}/streams/relax/metadata", {})
        check(st == 200, "settings removed")
        base = f"/v1/databases/{DB}/streams/relax/events"
        st, _, page = s.get(base + "?from=1&limit=3")
        check(st == 200 and [e["version"] for e in page["events"]] == [36, 37, 38]
              and page["next"] == 39, f"forward page from 1: {st} {page}")
        check([e["version"] for e in s.read_stream("relax")] == list(range(36, 41)),
              "whole stream read")
        st, _, page = s.get(base + "?direction=backward&limit=10")
        check(st == 200 and [e["version"] for e in page["events"]] == [40, 39, 38, 37, 36],
              f"backward page: {st} {page}")
        st, _, page = s.get(base + "?from=1&limit=3&asOf=38")  # versions 1..38 then
        check(st == 200 and [e["version"] for e in page["events"]] == [36, 37, 38],
              f"asOf page: {st} {page}")
        st, _, info = s.get(f"/v1/databases/{DB}/streams/relax")
        check(st == 200 and info["version"] == 40, f"stream info {info}")
        check(s.stop() == 0, "stop")
        verify_ok(s.data)


def test_a_compaction_asked_right_after_a_deletion_reclaims_it():
    """Only indexed events are compacted: a compaction asked for the moment a stream is
    deleted waits for the indexer instead of finding the events unindexed and reclaiming
    nothing."""
    with Server() as s:
        st, _, _ = s.append("doomed", [{"type": "T", "data": {"pad": PAD}} for _ in range(200)])
        check(st == 201, "append")
        check(s.request("DELETE", "/v1/databases/default/streams/doomed")[0] == 204, "delete")
        st, _, _ = s.post("/v1/databases/default/compaction", {})
        check(st == 202, f"{st}")
        check(wait_until(lambda: s.get("/v1/databases/default/compaction")[2]["compaction"]
                         ["runs"] == 1, 30), "one compaction ran")
        c = s.get("/v1/databases/default/compaction")[2]["compaction"]
        check(c["generation"] == 1 and c["redactedEvents"] == 200, f"{c}")
