"""Durable subscriptions with consumer groups (docs/api.md, "Durable subscriptions"): named
subscriptions with a filter and a start, pull / ack / nack with leases, redelivery after the
ack timeout up to maxRetries, parked (dead-letter) events that can be listed and replayed,
events of one stream to one consumer at a time and in order, several consumers sharing the
work, and a checkpoint, definitions and parked lists that survive restarts and crashes."""
import os
import threading
import time

from harness import Server, binary, check, expect_error, run_cli

DB = "default"
SUBS = f"/v1/databases/{DB}/subscriptions"


def append(s, stream, n, type_="T"):
    st, _, body = s.append(stream, [{"type": type_, "data": {"i": i}} for i in range(n)])
    check(st == 201, f"append {st} {body}")
    return [e["position"] for e in body["events"]]


def create(s, name, **kw):
    body = {"name": name}
    body.update(kw)
    st, _, b = s.post(SUBS, body)
    check(st == 201, f"create {name}: {st} {b}")
    return b


def pull(s, name, consumer, max_=100):
    st, _, b = s.post(f"{SUBS}/{name}/pull", {"consumer": consumer, "max": max_})
    check(st == 200, f"pull: {st} {b}")
    return [(e["event"]["position"], e["attempt"], e["event"]["stream"]) for e in b["events"]]


def ack(s, name, positions, verb="ack", **kw):
    body = {"positions": positions}
    body.update(kw)
    st, _, b = s.post(f"{SUBS}/{name}/{verb}", body)
    check(st == 200, f"{verb}: {st} {b}")
    return b


def info(s, name):
    st, _, b = s.get(f"{SUBS}/{name}")
    check(st == 200, f"get {name}: {st} {b}")
    return b


def test_definitions_and_validation():
    with Server() as s:
        append(s, "a-1", 3)
        g = create(s, "orders", filter={"types": ["T"]}, ackTimeoutSeconds=5, maxRetries=2)
        check(g["name"] == "orders" and g["filter"] == {"types": ["T"]} and
              g["ackTimeoutSeconds"] == 5 and g["maxRetries"] == 2 and g["checkpoint"] == 0, f"{g}")
        latest = create(s, "new-only", **{"from": "latest"})
        check(latest["checkpoint"] == 3, f"latest starts after the head: {latest}")
        d = create(s, "defaults")
        check(d["ackTimeoutSeconds"] == 30 and d["maxRetries"] == 5 and d["filter"] == {}, f"{d}")
        names = [x["name"] for x in s.get(SUBS)[2]["subscriptions"]]
        check(names == ["defaults", "new-only", "orders"], f"{names}")
        expect_error(s.post(SUBS, {"name": "orders"}), 409, "subscription_exists", "name")
        expect_error(s.post(SUBS, {"name": "bad name"}), 400, "invalid_name", "name")
        expect_error(s.post(SUBS, {"name": "x", "filter": {"types": ["a*b"]}}), 400)
        expect_error(s.post(SUBS, {"name": "x", "filter": [1]}), 400, None, "filter")
        expect_error(s.post(SUBS, {"name": "x", "ackTimeoutSeconds": 0}), 400, None,
                     "ackTimeoutSeconds")
        expect_error(s.post(SUBS, {"name": "x", "maxRetries": 101}), 400, None, "maxRetries")
        expect_error(s.post(SUBS, {"name": "x", "from": 0}), 400, None, "from")
        expect_error(s.post(SUBS, {"name": "x", "extra": 1}), 400, "invalid_request", "extra")
        expect_error(s.get(f"{SUBS}/nope"), 404, "subscription_not_found")
        expect_error(s.post(f"{SUBS}/nope/pull", {"consumer": "c"}), 404, "subscription_not_found")
        expect_error(s.post(f"{SUBS}/orders/pull", {"consumer": "bad id"}), 400, None, "consumer")
        expect_error(s.post(f"{SUBS}/orders/pull", {"consumer": "c", "max": 0}), 400, None, "max")
        expect_error(s.post(f"{SUBS}/orders/ack", {"positions": []}), 400, None, "positions")
        expect_error(s.post(f"{SUBS}/orders/ack", {"positions": [0]}), 400, None, "positions[0]")
        expect_error(s.post(f"{SUBS}/orders", {}), 405, "method_not_allowed")
        expect_error(s.post(SUBS, {"name": "x"}, headers={"Idempotency-Key": "k"}), 400,
                     "idempotency_not_supported")
        check(s.request("DELETE", f"{SUBS}/defaults")[0] == 204, "delete")
        expect_error(s.request("DELETE", f"{SUBS}/defaults"), 404, "subscription_not_found")
        check(len(s.get(SUBS)[2]["subscriptions"]) == 2, "deleted")
        s.restart()
        names = [x["name"] for x in s.get(SUBS)[2]["subscriptions"]]
        check(names == ["new-only", "orders"], f"definitions survive a restart: {names}")


def test_pull_ack_and_the_checkpoint():
    with Server() as s:
        append(s, "a-1", 2, "T")
        append(s, "b-1", 2, "Other")
        append(s, "c-1", 2, "T")
        create(s, "g", filter={"types": ["T"]})
        got = pull(s, "g", "c1", 3)
        check([p for p, _, _ in got] == [1, 2, 5], f"filtered, in order: {got}")
        check(all(a == 1 for _, a, _ in got), "first attempts")
        check(pull(s, "g", "c1", 10) == [(6, 1, "c-1")], "the rest (leased ones are not re-sent)")
        check(ack(s, "g", [1, 2, 99]) == {"acknowledged": 2}, "unknown positions are ignored")
        check(info(s, "g")["checkpoint"] == 4, "below the first unacknowledged (5)")
        ack(s, "g", [6])
        check(info(s, "g")["checkpoint"] == 4, "5 still pending")
        ack(s, "g", [5])
        g = info(s, "g")
        check(g["checkpoint"] == 6 and g["pending"] == 0, f"all done: {g}")
        append(s, "a-1", 1, "T")
        check([p for p, _, _ in pull(s, "g", "c2")] == [7], "new events")


def test_redelivery_retries_parking_and_replay():
    with Server() as s:
        append(s, "a-1", 1)
        append(s, "b-1", 1)
        create(s, "g", ackTimeoutSeconds=1, maxRetries=1)
        check([(p, a) for p, a, _ in pull(s, "g", "c1")] == [(1, 1), (2, 1)], "first delivery")
        ack(s, "g", [2])
        check(pull(s, "g", "c1") == [], "leased: nothing more for now")
        time.sleep(1.2)
        check([(p, a) for p, a, _ in pull(s, "g", "c2")] == [(1, 2)], "redelivered, attempt 2")
        time.sleep(1.2)
        check(pull(s, "g", "c2") == [], "out of retries: parked, not delivered")
        g = info(s, "g")
        check(g["parked"] == 1 and g["pending"] == 0 and g["checkpoint"] == 2, f"{g}")
        st, _, b = s.get(f"{SUBS}/g/parked")
        check(st == 200 and [e["position"] for e in b["events"]] == [1], f"parked list: {b}")
        # nack: at once again, or parked on request
        append(s, "c-1", 2)
        got = pull(s, "g", "c1")
        check([p for p, _, _ in got] == [3, 4], f"{got}")
        check(ack(s, "g", [3], "nack") == {"rejected": 1}, "nack")
        check([(p, a) for p, a, _ in pull(s, "g", "c1")] == [(3, 2)], "rejected: delivered again")
        ack(s, "g", [4], "nack", park=True)
        check(info(s, "g")["parked"] == 2, "nack with park")
        # replay one, then the rest
        check(s.post(f"{SUBS}/g/replay", {"positions": [1]})[2] == {"replayed": 1}, "replay 1")
        got = pull(s, "g", "c1")
        check((1, 1, "a-1") in got, f"replayed, attempts reset: {got}")
        check(s.post(f"{SUBS}/g/replay", {})[2] == {"replayed": 1}, "replay all")
        check(info(s, "g")["parked"] == 0, "none parked")


def test_one_stream_goes_to_one_consumer_at_a_time_in_order():
    with Server() as s:
        for i in range(3):
            append(s, "order-1", 1)
            append(s, "order-2", 1)
        # positions: order-1 = 1, 3, 5; order-2 = 2, 4, 6
        create(s, "g")
        a = pull(s, "g", "A", 1)
        check(a == [(1, 1, "order-1")], f"{a}")
        b = pull(s, "g", "B", 10)
        check([p for p, _, _ in b] == [2, 4, 6], f"B gets only order-2 while A holds order-1: {b}")
        check([p for p, _, _ in pull(s, "g", "A", 10)] == [3, 5], "A gets the rest of order-1")
        ack(s, "g", [1, 3, 5])
        append(s, "order-1", 1)  # 7: order-1 is free again
        check([p for p, _, _ in pull(s, "g", "B", 10)] == [7], "B may take order-1 now")
        append(s, "order-2", 1)  # 8: order-2 is still B's (2, 4, 6 unacknowledged)
        check(pull(s, "g", "A", 10) == [], "A may not take order-2 while B holds it")
        check([p for p, _, _ in pull(s, "g", "B", 10)] == [8], "B gets it, in order")


def test_consumers_share_the_work_without_duplicates():
    with Server() as s:
        for i in range(40):
            append(s, f"s-{i}", 5)  # 200 events, 40 streams
        create(s, "g", ackTimeoutSeconds=60)
        seen = {}
        lock = threading.Lock()

        def consumer(name):
            while True:
                got = pull(s, "g", name, 7)
                if not got:
                    return
                with lock:
                    for p, _, _ in got:
                        check(p not in seen, f"{p} delivered twice")
                        seen[p] = name
                ack(s, "g", [p for p, _, _ in got])

        ts = [threading.Thread(target=consumer, args=(f"c{i}",)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        check(sorted(seen) == list(range(1, 201)), f"every event once: {len(seen)}")
        check(len(set(seen.values())) > 1, "the work was shared")
        check(info(s, "g")["checkpoint"] == 200, "checkpoint at the head")


def test_state_survives_restart_and_crash():
    with Server() as s:
        append(s, "a-1", 10)
        create(s, "g", ackTimeoutSeconds=1, maxRetries=0)
        got = pull(s, "g", "c", 4)  # 1..4
        ack(s, "g", [1, 2])
        time.sleep(1.2)
        check(pull(s, "g", "c", 1) == [(5, 1, "a-1")], "3, 4 expired with no retries left: parked")
        time.sleep(0.15)
        ack(s, "g", [5])  # written: more than 100 ms since the last save
        s.kill9()
        s.start()
        g = info(s, "g")
        check(g["checkpoint"] == 5 and g["parked"] == 2, f"after kill -9: {g}")
        check([p for p, _, _ in pull(s, "g", "c", 10)] == [6, 7, 8, 9, 10], "resumes after 5")
        ack(s, "g", [6, 7])
        s.stop()  # a clean stop writes the last checkpoint whatever its age
        s.start()
        check(info(s, "g")["checkpoint"] == 7, "clean stop keeps the newest checkpoint")
        check([p for p, _, _ in pull(s, "g", "c", 10)] == [8, 9, 10], "at least once: unacked again")
        st, _, b = s.get(f"{SUBS}/g/parked")
        check([e["position"] for e in b["events"]] == [3, 4], f"parked survive: {b}")
        del got


def test_deleting_the_database_removes_its_subscriptions():
    with Server() as s:
        check(s.post("/v1/databases", {"name": "tmp"})[0] == 201, "create db")
        st, _, _ = s.post("/v1/databases/tmp/subscriptions", {"name": "g"})
        check(st == 201, "create sub")
        check(os.path.exists(os.path.join(s.data, "dbs", "tmp", "groups.json")), "file written")
        check(s.request("DELETE", "/v1/databases/tmp")[0] == 204, "delete db")
        check(not os.path.exists(os.path.join(s.data, "dbs", "tmp")), "directory removed")
        check(s.post("/v1/databases", {"name": "tmp"})[0] == 201, "create again")
        check(s.get("/v1/databases/tmp/subscriptions")[2]["subscriptions"] == [], "fresh")
        s.stop()
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0, out)


def test_a_pull_answer_is_bounded_and_the_rest_stays_unleased():
    with Server() as s:
        big = "x" * 900_000
        for i in range(8):
            st, _, b = s.append(f"big-{i}", [{"type": "T", "data": {"pad": big}}])
            check(st == 201, f"{st}")
        create(s, "g")
        first = pull(s, "g", "a", 8)
        check(4 <= len(first) < 8, f"the answer stops near 4 MiB: {len(first)} events")
        rest = pull(s, "g", "b", 8)
        check(sorted(p for p, _, _ in first + rest) == list(range(1, 9)),
              "what did not fit was not leased: another consumer gets it")
        check(all(a == 1 for _, a, _ in rest), "first attempts")


def _db_syncs(count_file):
    """The sync calls the fault interposer counted so far (its FI_COUNT_FILE)."""
    with open(count_file) as f:
        fields = dict(kv.split("=") for kv in f.read().split())
    return int(fields["sync"])


def test_a_creation_whose_save_failed_is_not_brought_back_by_a_restart():
    """groups.json is renamed into place, then the fsync of its directory fails (the fault
    interposer of tests/faults/, on the data directory): the creation is answered as
    failed and undone in memory, and the file is written again without it, so a restart does
    not bring back a subscription its client was told was not made."""
    inject = os.path.join(os.path.dirname(binary()), "fi_inject.so")
    if not os.path.exists(inject):  # the sanitizer build has none (ASan must load first)
        return
    # a dry run: the syncs under the data directory until the server is up and idle (the
    # interposer resolves FI_DIR when it loads: the directory must exist by then)
    dry = Server(start=False)
    os.makedirs(dry.data)
    count = os.path.join(dry.tmp, "fi-count")
    dry.env = dict(os.environ, LD_PRELOAD=inject, FI_DIR=dry.data, FI_OP="sync",
                   FI_N="1000000", FI_COUNT_FILE=count)
    with dry:
        dry.start()
        time.sleep(0.5)
        before = _db_syncs(count)
    # the run: the second sync of the creation (the directory's, after the rename) fails
    s = Server(start=False)
    os.makedirs(s.data)
    count = os.path.join(s.tmp, "fi-count")
    s.env = dict(os.environ, LD_PRELOAD=inject, FI_DIR=s.data, FI_OP="sync",
                 FI_N=str(before + 2), FI_MODE="once", FI_COUNT_FILE=count)
    with s:
        s.start()
        time.sleep(0.5)
        check(_db_syncs(count) == before, f"the start is not repeatable: {_db_syncs(count)} "
              f"syncs, {before} in the dry run")
        st, _, b = s.post(SUBS, {"name": "ghost"})
        check(st == 500, f"a creation whose directory sync failed: {st} {b}")
        failed = [ln for ln in s.log_lines if "fi_inject: failing" in ln]
        check(len(failed) == 1 and f"dbs/{DB} (" in failed[0],
              f"the failed call is the directory's fsync: {failed}")
        check(s.get(SUBS)[2]["subscriptions"] == [], "undone in memory")
        s.stop()
        s.env = None
        s.start()
        names = [x["name"] for x in s.get(SUBS)[2]["subscriptions"]]
        check(names == [], f"a restart brings back the failed creation: {names}")
