"""Durability: restarts, graceful shutdown under load, and kill -9 crashes."""
import os
import random
import threading
import time
import uuid

from harness import Server, check, quote, run_cli


def snapshot(s, db="default"):
    """Everything a restart must keep: the log, every stream's info, the chain head."""
    log = s.read_log(db)
    streams = {}
    for name in sorted({e["stream"] for e in log}):
        st, _, info = s.get(f"/v1/databases/{db}/streams/{quote(name)}")
        check(st == 200, f"stream info {name}: {st}")
        streams[name] = info
    info = s.db_info(db)
    keep = {k: info[k] for k in ("name", "streams", "events", "head", "headHash", "created",
                                 "oldestEvent", "newestEvent")}
    return {"log": log, "streams": streams, "info": keep}


def verify_ok(data_dir):
    rc, out = run_cli(["verify", "--data", data_dir])
    check(rc == 0, f"annals verify exit {rc}: {out}")
    check("hash chain intact" in out, f"annals verify output: {out}")
    return out


def test_restart_persistence():
    with Server() as s:
        s.post("/v1/databases", {"name": "second"})
        for i in range(40):
            st, _, _ = s.append(f"s{i % 5}", [{"type": f"T{i}", "data": {"i": i, "f": 1.10},
                                               "metadata": {"m": i}, "tags": [f"tag{i}"]}] *
                                (i % 3 + 1))
            check(st == 201, "append")
        s.append("x/y", [{"type": "t", "data": None}], db="second")
        before = snapshot(s)
        before2 = snapshot(s, "second")
        rc = s.stop()
        check(rc == 0, f"SIGTERM exit code {rc}")
        s.start()
        after = snapshot(s)
        check(after["log"] == before["log"], "log differs after restart")
        check(after["streams"] == before["streams"], "stream info differs after restart")
        check(after["info"] == before["info"], f"stats differ: {before['info']} vs {after['info']}")
        check(snapshot(s, "second") == before2, "second database differs after restart")
        head = before["info"]["head"]
        st, _, ans = s.append("s0", [{"type": "t", "data": "new"}])
        check(st == 201 and ans["position"] == head + 1, f"position after restart: {ans!r}")
        check(ans["version"] == before["streams"]["s0"]["version"] + 1, "version after restart")
        st, _, ans = s.append("brand-new", [{"type": "t", "data": "new"}], expected="no_stream")
        check(st == 201 and ans["position"] == head + 2, f"new stream after restart: {ans!r}")
        check(s.db_info()["headHash"] != before["info"]["headHash"], "head hash did not move")
        s.stop()
        verify_ok(s.data)
        s.start()
        log = s.read_log()
        check(log[:head] == before["log"], "old events changed after a second restart")
        check([e["position"] for e in log] == list(range(1, head + 3)), "positions not gap-free")


class Load:
    """Threads appending batches with client-chosen ids; records every request and every 201."""

    def __init__(self, s, threads, streams, max_batch, seed):
        self.s = s
        self.threads = threads
        self.streams = streams
        self.max_batch = max_batch
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = []      # (stream, [ids])
        self.acked = []     # (stream, [{"id","position","version"}])
        self.other = []     # (status, body) of answers that were not 201
        self.ts = []

    def worker(self, i):
        rng = random.Random(self.rng.random())
        c = None
        while not self.stop.is_set():
            stream = rng.choice(self.streams)
            n = rng.randint(1, self.max_batch)
            ids = [str(uuid.uuid4()) for _ in range(n)]
            evs = [{"type": "Load", "id": ids[k], "data": {"t": i, "k": k, "pad": "p" * rng.randint(0, 200)}}
                   for k in range(n)]
            with self.lock:
                self.sent.append((stream, ids))
            try:
                if c is None:
                    c = self.s.connect(timeout=10)
                st, _, body = self.s.append(stream, evs, conn=c)
            except Exception:  # noqa: BLE001 - the server went away; the outcome is unknown
                if c is not None:
                    c.close()
                c = None
                if self.stop.is_set():
                    break
                time.sleep(0.05)
                continue
            with self.lock:
                if st == 201:
                    self.acked.append((stream, body["events"]))
                    check([e["id"] for e in body["events"]] == ids, "ids not echoed")
                else:
                    self.other.append((st, body))
        if c is not None:
            c.close()

    def start(self):
        self.ts = [threading.Thread(target=self.worker, args=(i,), daemon=True)
                   for i in range(self.threads)]
        for t in self.ts:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.ts:
            t.join(30)
        check(not any(t.is_alive() for t in self.ts), "load threads did not finish")


def check_log_against(log, sent, acked):
    """After a restart: every acknowledged event at its position with its id and version;
    positions gap-free; each request all-or-nothing; nothing that was never sent."""
    positions = [e["position"] for e in log]
    check(positions == list(range(1, len(log) + 1)),
          f"positions not gap-free 1..{len(log)}: first bad at "
          f"{next((i + 1 for i, p in enumerate(positions) if p != i + 1), None)}")
    by_id = {e["id"]: e for e in log}
    check(len(by_id) == len(log), "an id appears twice in the log")
    lost = []
    for stream, evs in acked:
        for a in evs:
            e = by_id.get(a["id"])
            if e is None:
                lost.append(f"{a['id']} (position {a['position']})")
                continue
            check((e["position"], e["version"], e["stream"]) == (a["position"], a["version"],
                                                                 stream),
                  f"acknowledged {a} in {stream} read back as position {e['position']} "
                  f"version {e['version']} in {e['stream']}")
    check(not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}")
    sent_ids = set()
    for stream, ids in sent:
        sent_ids.update(ids)
        present = [i for i in ids if i in by_id]
        check(len(present) in (0, len(ids)),
              f"request to {stream} partly written: {len(present)} of {len(ids)} events")
        if present:
            ps = [by_id[i]["position"] for i in ids]
            vs = [by_id[i]["version"] for i in ids]
            check(ps == list(range(ps[0], ps[0] + len(ps))), f"batch not contiguous: {ps}")
            check(vs == list(range(vs[0], vs[0] + len(vs))), f"batch versions: {vs}")
            check(all(by_id[i]["stream"] == stream for i in ids), "batch in the wrong stream")
    unknown = [e["id"] for e in log if e["id"] not in sent_ids]
    check(not unknown, f"{len(unknown)} events in the log that were never sent: {unknown[:3]}")
    versions = {}
    for e in log:
        versions[e["stream"]] = versions.get(e["stream"], 0) + 1
        check(e["version"] == versions[e["stream"]],
              f"stream {e['stream']}: version {e['version']} at position {e['position']}, "
              f"want {versions[e['stream']]}")


def test_graceful_shutdown_under_load():
    with Server() as s:
        load = Load(s, threads=8, streams=[f"g{i}" for i in range(6)], max_batch=3, seed=1)
        load.start()
        time.sleep(0.8)
        rc = s.stop()
        load.finish()
        check(rc == 0, f"exit code after SIGTERM: {rc}\n{s.log()[-2000:]}")
        check(len(load.acked) > 0, "no append succeeded before the shutdown")
        for st, body in load.other:
            check(st == 503 and body["error"]["code"] == "shutting_down",
                  f"unexpected answer during shutdown: {st} {body!r}")
        s.start()
        log = s.read_log()
        check_log_against(log, load.sent, load.acked)
        s.stop()
        verify_ok(s.data)


def test_kill9_crash_cycles():
    """kill -9 at a random moment of a 16-thread append load, ANNALS_CRASH_CYCLES times (20 by
    default; the long tier runs more), restarting on the same data each time."""
    cycles = int(os.environ.get("ANNALS_CRASH_CYCLES", "20"))
    rng = random.Random(4242)
    with Server() as s:
        sent, acked = [], []
        streams = [f"c{i}" for i in range(24)]
        for cycle in range(cycles):
            if cycle:
                s.start()
            load = Load(s, threads=16, streams=streams, max_batch=5, seed=100 + cycle)
            load.start()
            time.sleep(rng.uniform(0.2, 1.2))
            s.kill9()
            load.finish()
            check(len(load.acked) > 0, f"cycle {cycle}: no append succeeded")
            for st, body in load.other:
                check(False, f"cycle {cycle}: unexpected answer {st} {body!r}")
            sent += load.sent
            acked += load.acked
            s.start()
            log = s.read_log()
            check_log_against(log, sent, acked)
            info = s.db_info()
            check(info["head"] == len(log) and info["events"] == len(log),
                  f"cycle {cycle}: stats {info['head']}/{info['events']} vs {len(log)} events")
            if log:
                check(info["headHash"] == log[-1]["hash"], "headHash is not the last event's")
            # the server keeps working after recovery
            st, _, ans = s.append("after-crash", [{"type": "t", "data": cycle}])
            check(st == 201 and ans["position"] == len(log) + 1,
                  f"cycle {cycle}: append after recovery: {st} {ans!r}")
            sent.append(("after-crash", [ans["events"][0]["id"]]))
            acked.append(("after-crash", ans["events"]))
            rc = s.stop()
            check(rc == 0, f"cycle {cycle}: exit code {rc}")
            verify_ok(s.data)
