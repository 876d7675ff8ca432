"""Concurrent writers: optimistic concurrency races and many parallel streams."""
import os
import threading
import time

from harness import Server, check


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
        t.join(50)
    check(not any(t.is_alive() for t in ts), "threads did not finish")
    check(not errors, "; ".join(errors[:5]))


def test_expected_version_race():
    threads, rounds = 20, 30
    with Server() as s:
        barrier = threading.Barrier(threads, timeout=30)
        results = [[None] * threads for _ in range(rounds)]

        def worker(i):
            c = s.connect()
            try:
                for n in range(rounds):
                    barrier.wait()
                    st, _, body = s.append("race", [{"type": "t", "data": {"n": n, "t": i}}],
                                           expected=n, conn=c)
                    results[n][i] = (st, body)
                    barrier.wait()
            finally:
                c.close()

        run_threads(threads, worker)
        for n in range(rounds):
            wins = [(i, b) for i, (st, b) in enumerate(results[n]) if st == 201]
            others = [(st, b) for st, b in results[n] if st != 201]
            check(len(wins) == 1, f"expectedVersion={n}: {len(wins)} winners")
            i, b = wins[0]
            check(b["version"] == n + 1, f"round {n}: winner got version {b['version']}")
            for st, b in others:
                check(st == 409 and b["error"]["code"] == "wrong_expected_version",
                      f"round {n}: loser got {st} {b!r}")
                check(b["error"].get("actualVersion") == n + 1,
                      f"round {n}: actualVersion {b['error'].get('actualVersion')}, want {n + 1}")
        st, _, info = s.get("/v1/databases/default/streams/race")
        check(info["version"] == rounds, f"final version {info['version']}")
        log = s.read_log()
        check([e["position"] for e in log] == list(range(1, rounds + 1)),
              f"positions {[e['position'] for e in log]}")
        check([e["version"] for e in log] == list(range(1, rounds + 1)), "versions")
        check([e["data"]["n"] for e in log] == list(range(rounds)), "round order in the log")
        winners = {n: next(i for i, (st, _) in enumerate(results[n]) if st == 201)
                   for n in range(rounds)}
        check([e["data"]["t"] for e in log] == [winners[n] for n in range(rounds)],
              "the stored event is not the winner's")
        check(s.head() == rounds, "head")


def test_parallel_distinct_streams():
    threads, per = 16, 50
    with Server() as s:
        acked = {}
        lock = threading.Lock()

        def worker(i):
            c = s.connect()
            try:
                for k in range(per):
                    st, _, body = s.append(f"stream-{i}", [{"type": "T", "data": [i, k]}],
                                           conn=c)
                    check(st == 201, f"thread {i} append {k}: {st} {body!r}")
                    check(body["version"] == k + 1, f"thread {i} append {k}: version "
                                                    f"{body['version']}")
                    ev = body["events"][0]
                    with lock:
                        check(ev["position"] not in acked,
                              f"position {ev['position']} acknowledged twice")
                        acked[ev["position"]] = (ev["id"], f"stream-{i}", k + 1, [i, k])
            finally:
                c.close()

        run_threads(threads, worker)
        total = threads * per
        check(sorted(acked) == list(range(1, total + 1)),
              f"acknowledged positions are not exactly 1..{total}")
        log = s.read_log()
        check(len(log) == total, f"log has {len(log)} events, want {total}")
        for e in log:
            want = acked[e["position"]]
            got = (e["id"], e["stream"], e["version"], e["data"])
            check(got == want, f"position {e['position']}: read {got}, acknowledged {want}")
        info = s.db_info()
        check(info["head"] == total and info["events"] == total and info["streams"] == threads,
              f"stats {info!r}")
        for i in range(threads):
            evs = s.read_stream(f"stream-{i}")
            check([e["data"] for e in evs] == [[i, k] for k in range(per)],
                  f"stream-{i} out of order")


def _delete_round(s, name, threads):
    """One DELETE of database name racing threads appenders; returns a list of problems."""
    st, _, _ = s.post("/v1/databases", {"name": name})
    check(st == 201, f"create {name}")
    started = threading.Barrier(threads + 1, timeout=20)
    answers = [[] for _ in range(threads)]
    hung = []

    def worker(i):
        c = s.connect(timeout=10)
        try:
            started.wait()
            for k in range(400):
                try:
                    st, _, body = s.append(f"v{i}", [{"type": "t", "data": k}], db=name, conn=c)
                except OSError as e:
                    hung.append(f"thread {i} append {k}: {type(e).__name__}")
                    return
                answers[i].append((st, body))
                if st != 201:
                    return
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    started.wait()
    time.sleep(0.3)
    problems = []
    try:
        st, _, body = s.request("DELETE", f"/v1/databases/{name}", timeout=10)
        if st != 204:
            problems.append(f"DELETE answered {st} {body!r}")
    except OSError as e:
        problems.append(f"DELETE /v1/databases/{name} got no answer within 10 s "
                        f"({type(e).__name__})")
    for t in ts:
        t.join(15)
    if hung:
        problems.append(f"{len(hung)} of {threads} in-flight appends got no answer within "
                        f"10 s: {hung}")
    for i, ans in enumerate(answers):
        for st, body in ans[:-1]:
            if st != 201:
                problems.append(f"thread {i}: {st} {body!r} before the end")
        if ans and not (ans[-1][0] == 201 or (ans[-1][0] == 404 and
                                              ans[-1][1]["error"]["code"] ==
                                              "database_not_found")):
            problems.append(f"thread {i}: last answer {ans[-1]!r}")
    if os.path.exists(os.path.join(s.data, "dbs", name)):
        problems.append(f"directory dbs/{name} still exists")
    return problems


def test_delete_database_while_appending():
    """DELETE of a database while 8 clients append to it (3 rounds): the DELETE answers 204,
    every queued append is answered (201 before it, 404 database_not_found after), nothing
    hangs, the files go, and the server still stops on SIGTERM."""
    with Server() as s:
        problems = []
        for r in range(3):
            problems = _delete_round(s, "victim", 8)
            if problems:
                problems.insert(0, f"round {r + 1}:")
                break
            st, _, body = s.get("/v1/databases/victim")
            check(st == 404, f"deleted database still answers {st}")
        if not problems:
            st, _, _ = s.post("/v1/databases", {"name": "victim"})
            check(st == 201, "re-create")
            check(s.head("victim") == 0, "re-created database is not empty")
        try:
            rc = s.stop(timeout=10)
            if rc != 0:
                problems.append(f"exit code {rc} after SIGTERM")
        except Exception as e:  # noqa: BLE001
            problems.append(f"SIGTERM: {e}")
        check(not problems, " ".join(problems))
