#!/usr/bin/env python3
"""Disk-fault injection tests: fail the Nth write or sync call (once or persistently) the server
makes to files under its data directory, then check that no failed commit was acknowledged, the
server stays up for reads, and it recovers cleanly after a restart without faults.

See tests/faults/README.md. Stdlib only; uses tests/integration/harness.py.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import harness  # noqa: E402
from harness import Server, ServerError  # noqa: E402

STREAMS = [f"s{i}" for i in range(5)]
APPENDS = 40
READS = 10
PAUSE_AFTER = (13, 26)  # pause 0.3 s after these appends so the indexer (200 ms) commits
                        # mid-workload, between appends: its LMDB writes/syncs get faults too


class CaseFail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFail(msg)


def event_id(i, j):
    return str(uuid.UUID(int=(0xFA << 120) | (i << 16) | j))


# ---------------------------------------------------------------------------------------------
# workload

def workload(s, persist_sync):
    """Runs the fixed workload; returns (requests, notes). Raises CaseFail on a violation seen
    while the faulted server runs. requests: list of dicts (stream, ids, status, body)."""
    versions = {st: 0 for st in STREAMS}  # acknowledged versions
    reqs = []
    first_5xx = None
    for i in range(APPENDS):
        stream = STREAMS[i % len(STREAMS)]
        n = 1 + i % 3
        ids = [event_id(i, j) for j in range(n)]
        events = [{"type": "T", "data": {"i": i, "j": j}, "id": ids[j]} for j in range(n)]
        try:
            st, _, body = s.append(stream, events, expected=versions[stream])
        except Exception as e:  # connection refused/reset: the server died
            rc = s.proc.poll() if s.proc else None
            raise CaseFail(f"append #{i}: no answer ({type(e).__name__}: {e}); server exit {rc}")
        reqs.append({"i": i, "stream": stream, "ids": ids, "status": st, "body": body,
                     "expected": versions[stream]})
        if i in PAUSE_AFTER:
            time.sleep(0.3)
        if st == 201:
            check(not (persist_sync and first_5xx is not None),
                  f"append #{i} answered 201 after append #{first_5xx} failed with a "
                  f"persistent sync fault")
            check(body.get("version") == versions[stream] + n,
                  f"append #{i}: 201 with version {body.get('version')}, want "
                  f"{versions[stream] + n}")
            pos = [e["position"] for e in body["events"]]
            check(pos == list(range(pos[0], pos[0] + n)), f"append #{i}: positions {pos}")
            versions[stream] += n
        elif st in (500, 507):
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            want = "storage_error" if st == 500 else "storage_full"
            check(code == want, f"append #{i}: {st} with code {code!r}, want {want}")
            if first_5xx is None:
                first_5xx = i
        elif st == 409:
            raise CaseFail(f"append #{i}: 409 {body!r}: a failed append became visible "
                           f"(expectedVersion {versions[stream]} from acknowledged appends)")
        else:
            raise CaseFail(f"append #{i}: unexpected {st} {body!r}")
    # reads: every one must answer 200 while the faulted server runs
    for r in range(READS):
        if r % 2 == 0:
            stream = STREAMS[r // 2 % len(STREAMS)]
            path = f"/v1/databases/default/streams/{stream}/events"
            ok = (200, 404) if versions[stream] == 0 else (200,)
        else:
            path = "/v1/databases/default/events?from=1"
            ok = (200,)
        try:
            st, _, body = s.get(path)
        except Exception as e:
            raise CaseFail(f"read {path}: no answer ({e})")
        check(st in ok, f"read {path}: {st} {body!r}")
    return reqs


def acked_events(reqs):
    """id -> (stream, version, position) of every acknowledged event."""
    out = {}
    for r in reqs:
        if r["status"] == 201:
            for eid, e in zip(r["ids"], r["body"]["events"]):
                out[eid] = (r["stream"], e["version"], e["position"])
    return out


def check_log(events, reqs, where):
    """The log read back: gap-free, well-formed, every acknowledged event present at its place,
    failed requests absent or whole at consistent positions."""
    pos = [e["position"] for e in events]
    check(pos == list(range(1, len(pos) + 1)), f"{where}: positions not 1..{len(pos)}: {pos[:50]}")
    hashes = [e.get("hash") for e in events]
    check(all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes),
          f"{where}: malformed hash")
    check(len(set(hashes)) == len(hashes), f"{where}: repeated hash")
    by_id = {e["id"]: e for e in events}
    check(len(by_id) == len(events), f"{where}: repeated event id")
    known = {eid for r in reqs for eid in r["ids"]}
    stray = [e["id"] for e in events if e["id"] not in known]
    check(not stray, f"{where}: events never written: {stray[:3]}")
    for eid, (stream, ver, p) in acked_events(reqs).items():
        e = by_id.get(eid)
        check(e is not None, f"{where}: acknowledged event {eid} (position {p}) lost")
        check((e["stream"], e["version"], e["position"]) == (stream, ver, p),
              f"{where}: acknowledged event {eid} moved: {(stream, ver, p)} -> "
              f"{(e['stream'], e['version'], e['position'])}")
    present_failed = 0
    for r in reqs:
        if r["status"] == 201:
            continue
        got = [by_id.get(eid) for eid in r["ids"]]
        have = [g for g in got if g is not None]
        if not have:
            continue
        present_failed += 1
        check(len(have) == len(got), f"{where}: failed append #{r['i']} partly present "
                                     f"({len(have)} of {len(got)} events)")
        p = [g["position"] for g in got]
        v = [g["version"] for g in got]
        check(p == list(range(p[0], p[0] + len(p))), f"{where}: failed append #{r['i']} "
                                                     f"at positions {p}")
        check(all(g["stream"] == r["stream"] for g in got) and
              v == list(range(r["expected"] + 1, r["expected"] + 1 + len(v))),
              f"{where}: failed append #{r['i']} present with versions {v}, expected "
              f"{r['expected']}")
    # per stream: versions 1..n in log order
    per = {}
    for e in events:
        per.setdefault(e["stream"], []).append(e["version"])
    for st, vs in per.items():
        check(vs == list(range(1, len(vs) + 1)), f"{where}: stream {st} versions {vs}")
    return present_failed


# ---------------------------------------------------------------------------------------------
# one case

def fi_env(preload, data, op=None, n=0, mode="once", errno_name="EIO", count_file=None,
           trace_file=None):
    env = dict(os.environ)
    env["LD_PRELOAD"] = preload
    env["FI_DIR"] = data
    env["FI_OP"] = op or "none"
    env["FI_N"] = str(n)
    env["FI_MODE"] = mode
    env["FI_ERRNO"] = errno_name
    if count_file:
        env["FI_COUNT_FILE"] = count_file
    if trace_file:
        env["FI_TRACE"] = trace_file
    return env


def verify(binary, data):
    r = subprocess.run([binary, "verify", "--data", data], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.returncode, r.stdout


def recover(binary, data, reqs, notes):
    """Restart without the interposer on data and check recovery. Raises CaseFail."""
    s = Server(data_dir=data, start=False)  # env None: no LD_PRELOAD
    try:
        try:
            s.start()
        except ServerError as e:
            raise CaseFail(f"restart without faults refused to start: {e}")
        events = s.read_log()
        present = check_log(events, reqs, "after restart")
        if present:
            notes.append(f"{present} unacknowledged append(s) present after restart (whole)")
        head = len(events)
        st, _, body = s.append("after", [{"type": "T", "data": {"after": True}}])
        check(st == 201, f"append after restart: {st} {body!r}")
        check(body["position"] == head + 1, f"append after restart at {body['position']}, "
                                            f"want {head + 1}")
        rc = s.stop()
        check(rc == 0, f"SIGTERM after restart: exit {rc}; log:\n{s.log()}")
    finally:
        s.cleanup()
    rc, out = verify(binary, data)
    check(rc == 0 and "hash chain intact" in out, f"annals verify: exit {rc}: {out.strip()}")


def run_case(binary, preload, op, mode, n, errno_name, keep):
    tmp = tempfile.mkdtemp(prefix=f"annals-fi-{op}-{mode}-{n}-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    notes = []
    s = Server(data_dir=data, env=fi_env(preload, data, op, n, mode, errno_name), start=False)
    ok = False
    try:
        try:
            s.start()
        except ServerError as e:
            # A fault during startup: acceptable only with a clear error and a non-zero exit,
            # and if a later start without faults works.
            log = str(e)
            injected = "fi_inject: failing" in log
            rc = s.proc.poll() if s.proc else None
            check(rc is not None and rc != 0,
                  f"server neither started nor exited with an error (exit {rc}); log:\n{log}")
            check('"level":"error"' in log or '"level":"fatal"' in log,
                  f"server exited {rc} without an error log line; log:\n{log}")
            check(injected, f"server failed to start without an injected fault; log:\n{log}")
            notes.append(f"refused to start under the fault (exit {rc}, clean error)")
            recover(binary, data, [], notes)
            ok = True
            return True, "; ".join(notes)
        try:
            reqs = workload(s, persist_sync=(op == "sync" and mode == "persist"))
            check(s.running(), f"server exited during the workload (exit {s.proc.poll()})")
            st, _, body = s.get("/health")
            check(st == 200, f"/health after the workload: {st} {body!r}")
            # while running under the fault: exactly the acknowledged events are visible
            events = s.read_log()
            check_log(events, reqs, "under the fault")
            check(len(events) == len(acked_events(reqs)),
                  f"under the fault: {len(events)} events visible, "
                  f"{len(acked_events(reqs))} acknowledged")
            log = s.log()
            refused = "appends refused until restart" in log
            if refused:
                # after a failed log sync, every later append must have failed
                first = next((r["i"] for r in reqs if r["status"] != 201), None)
                later = [r["i"] for r in reqs if first is not None and r["i"] > first and
                         r["status"] == 201]
                check(first is not None and not later,
                      f"log sync failed but appends {later} answered 201 afterwards")
                notes.append(f"log sync failed: appends refused from #{first}")
        except CaseFail as e:
            raise CaseFail(f"{e}\n--- server log (last 15 lines) ---\n" +
                           "\n".join(s.log().splitlines()[-15:]))
        injected = "fi_inject: failing" in s.log()
        failed = sum(1 for r in reqs if r["status"] != 201)
        try:
            rc = s.stop()
        except ServerError as e:
            raise CaseFail(f"faulted server: {e}")
        check(rc is not None and rc >= 0, f"faulted server killed by signal {-rc} on SIGTERM")
        if rc != 0:
            notes.append(f"faulted server exited {rc} on SIGTERM")
        if not injected:
            notes.append("fault not reached")
        else:
            notes.append(f"{failed} append(s) refused")
        recover(binary, data, reqs, notes)
        ok = True
        return True, "; ".join(notes)
    except CaseFail as e:
        return False, str(e)
    except Exception as e:  # a harness problem is still a failure of the case
        return False, f"{type(e).__name__}: {e}"
    finally:
        s.cleanup()
        if ok or not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  kept {tmp}", flush=True)


# ---------------------------------------------------------------------------------------------
# dry run and choice of N

def dry_run(binary, preload):
    """Runs the workload without faults; returns {op: [(k, signature)]} from the trace."""
    tmp = tempfile.mkdtemp(prefix="annals-fi-dry-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    trace = os.path.join(tmp, "trace")
    count = os.path.join(tmp, "count")
    s = Server(data_dir=data, env=fi_env(preload, data, count_file=count, trace_file=trace),
               start=False)
    try:
        s.start()
        reqs = workload(s, False)
        check(all(r["status"] == 201 for r in reqs), "dry run: an append failed")
        rc = s.stop()
        check(rc == 0, f"dry run: exit {rc}")
        calls = {"write": [], "sync": []}
        with open(trace) as f:
            for line in f:
                op, k, call, path, nbytes = line.split()
                calls[op].append((int(k), (call, os.path.basename(path), nbytes)))
        counts = open(count).read().strip()
        return calls, counts
    finally:
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def choose(calls, cap):
    """Picks at most cap values of N: first every call whose kind (call, file, size) differs
    from its neighbour's (the boundaries of runs such as the log's 64 KiB zero-fill writes),
    then evenly spread over the rest."""
    k = len(calls)
    if k <= cap:
        return list(range(1, k + 1))
    prio = []
    for idx, (n, sig) in enumerate(calls):
        prev = calls[idx - 1][1] if idx else None
        nxt = calls[idx + 1][1] if idx + 1 < k else None
        if sig != prev or sig != nxt:
            prio.append(n)
    if len(prio) >= cap:
        return sorted({prio[round(i * (len(prio) - 1) / (cap - 1))] for i in range(cap)})
    chosen = set(prio)
    rest = [n for n, _ in calls if n not in chosen]
    need = cap - len(chosen)
    for i in range(need):
        chosen.add(rest[round(i * (len(rest) - 1) / max(need - 1, 1))])
    return sorted(chosen)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=harness.binary())
    ap.add_argument("--preload", default=os.path.join(REPO, "build", "fi_inject.so"))
    ap.add_argument("--quick", action="store_true", help="15 values of N per op/mode")
    ap.add_argument("--all", action="store_true", help="every N from 1 to the dry run's count")
    ap.add_argument("--cap", type=int, default=60, help="values of N per op/mode (60)")
    ap.add_argument("--jobs", type=int, default=4, help="cases run in parallel (4)")
    ap.add_argument("--ops", default="write,sync")
    ap.add_argument("--modes", default="once,persist")
    ap.add_argument("--n", default=None, help="only these N (comma-separated)")
    ap.add_argument("--errno", default="EIO", choices=["EIO", "ENOSPC"])
    ap.add_argument("--keep", action="store_true", help="keep data dirs of failing cases")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    os.environ["ANNALS_BIN"] = binary
    preload = os.path.abspath(a.preload)
    if not os.path.exists(preload):
        os.makedirs(os.path.dirname(preload), exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", preload,
                        os.path.join(HERE, "inject.c"), "-ldl", "-pthread"], check=True)
    cap = 15 if a.quick else a.cap
    t0 = time.monotonic()
    calls, counts = dry_run(binary, preload)
    print(f"dry run: {counts} (calls on files under the data dir)", flush=True)
    cases = []
    for op in a.ops.split(","):
        if a.n:
            ns = [int(x) for x in a.n.split(",")]
        elif a.all:
            ns = list(range(1, len(calls[op]) + 1))
        else:
            ns = choose(calls[op], cap)
        for mode in a.modes.split(","):
            cases += [(op, mode, n) for n in ns]
    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
        futs = [ex.submit(run_case, binary, preload, op, mode, n, a.errno, a.keep)
                for op, mode, n in cases]
        for (op, mode, n), fut in zip(cases, futs):
            ok, why = fut.result()
            if ok:
                passed += 1
            else:
                failed += 1
            print(f"{'PASS' if ok else 'FAIL'} {op} {mode} {n}: {why}", flush=True)
    print(f"({time.monotonic() - t0:.0f} s, errno {a.errno})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
