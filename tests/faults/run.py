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
PAUSE_AFTER = (26,)     # after these appends, wait (up to 1 s) until the indexer has committed
                        # them: its LMDB writes/syncs land mid-workload and get faults too
DELETE_AFTER = 13       # after this append: soft-delete DELETED (hides its 6 events), then
DELETED = "s1"          # wait likewise, so the compaction finds them in the indexed part
COMPACT_AFTER = 14      # after this append (left unindexed, in the tail): compact, and wait
COMPACT_WAIT = 10.0     # seconds a compaction may take before the case fails
LOG_RE = re.compile(r"events(\.(\d+))?\.log$")


class CaseFail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFail(msg)


def event_id(i, j):
    return str(uuid.UUID(int=(0xFA << 120) | (i << 16) | j))


def read_counts(path):
    """(writes, syncs) the interposer counted so far (FI_COUNT_FILE), or None."""
    for _ in range(20):
        try:
            m = re.match(r"write=(\d+) sync=(\d+)", open(path).read())
        except OSError:
            m = None
        if m:
            return int(m.group(1)), int(m.group(2))
        time.sleep(0.005)
    return None


# ---------------------------------------------------------------------------------------------
# workload

def wait_indexed(s, timeout=1.0):
    """Waits until the indexer has committed everything appended (it waits 200-400 ms), or
    reported a failed commit, or timeout."""
    failures = s.log().count("indexing positions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, _, body = s.get("/v1/databases/default")
        check(st == 200, f"GET database: {st} {body!r}")
        if body["indexer"]["indexed"] >= body["head"]:
            return True
        if s.log().count("indexing positions") > failures:
            return False
        time.sleep(0.02)
    return False


def compaction_status(s):
    st, _, body = s.get("/v1/databases/default/compaction")
    check(st == 200 and isinstance(body, dict) and "compaction" in body,
          f"GET compaction: {st} {body!r}")
    return body["compaction"]


def compact(s):
    """Requests a compaction and waits (bounded) until it ended; returns its status."""
    before = compaction_status(s)["checks"]
    try:
        st, _, body = s.post("/v1/databases/default/compaction", None)
    except Exception as e:
        raise CaseFail(f"POST compaction: no answer ({type(e).__name__}: {e})")
    check(st == 202, f"POST compaction: {st} {body!r}")
    deadline = time.monotonic() + COMPACT_WAIT
    while True:
        c = compaction_status(s)
        if c["checks"] > before and not c["running"] and not c["requested"]:
            return c
        check(time.monotonic() < deadline, f"compaction not ended after {COMPACT_WAIT} s: {c}")
        time.sleep(0.01)


def workload(s, persist_sync, count_file=None):
    """Runs the fixed workload; returns (requests, info). Raises CaseFail on a violation seen
    while the faulted server runs. requests: list of dicts (kind append|delete, stream, ids,
    status, body, expected), in order. info: the compaction's status when it ended
    ("compaction"), and with count_file the interposer's (writes, syncs) counts just before
    the compaction was requested and just after it ended ("window")."""
    versions = {st: 0 for st in STREAMS}  # acknowledged versions
    reqs = []
    info = {}
    first_5xx = None

    def failed(what, st, body):
        nonlocal first_5xx
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        want = "storage_error" if st == 500 else "storage_full"
        check(code == want, f"{what}: {st} with code {code!r}, want {want}")
        if first_5xx is None:
            first_5xx = what

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
        reqs.append({"kind": "append", "i": i, "stream": stream, "ids": ids, "status": st,
                     "body": body, "expected": versions[stream]})
        if i in PAUSE_AFTER:
            wait_indexed(s)
        if st == 201:
            check(not (persist_sync and first_5xx is not None),
                  f"append #{i} answered 201 after {first_5xx} failed with a "
                  f"persistent sync fault")
            check(body.get("version") == versions[stream] + n,
                  f"append #{i}: 201 with version {body.get('version')}, want "
                  f"{versions[stream] + n}")
            pos = [e["position"] for e in body["events"]]
            check(pos == list(range(pos[0], pos[0] + n)), f"append #{i}: positions {pos}")
            versions[stream] += n
        elif st in (500, 507):
            failed(f"append #{i}", st, body)
        elif st == 409:
            raise CaseFail(f"append #{i}: 409 {body!r}: a failed append became visible "
                           f"(expectedVersion {versions[stream]} from acknowledged appends)")
        else:
            raise CaseFail(f"append #{i}: unexpected {st} {body!r}")
        if i == DELETE_AFTER:
            # soft delete: one $metadata event in $$<stream>, hiding the versions before
            try:
                st, _, body = s.request("DELETE", f"/v1/databases/default/streams/{DELETED}")
            except Exception as e:
                rc = s.proc.poll() if s.proc else None
                raise CaseFail(f"DELETE {DELETED}: no answer ({type(e).__name__}: {e}); "
                               f"server exit {rc}")
            reqs.append({"kind": "delete", "i": i, "stream": DELETED, "ids": [], "status": st,
                         "body": body, "expected": versions[DELETED]})
            if st == 204:
                check(not (persist_sync and first_5xx is not None),
                      f"DELETE answered 204 after {first_5xx} failed with a "
                      f"persistent sync fault")
            elif st in (500, 507):
                failed(f"DELETE {DELETED}", st, body)
            elif st == 404 and versions[DELETED] == 0:
                pass  # no acknowledged event: stream_not_found, nothing written
            else:
                raise CaseFail(f"DELETE {DELETED}: unexpected {st} {body!r}")
            wait_indexed(s)  # the hidden events are in the indexed part
        if i == COMPACT_AFTER:
            if count_file:
                w0 = read_counts(count_file)
            info["compaction"] = c = compact(s)
            if count_file:
                info["window"] = (w0, read_counts(count_file))
            last = c.get("last") or {}
            check(last.get("outcome") in ("ok", "failed"), f"compaction ended: {c}")
            # straight after it, even a failed one: reads answer
            st, _, body = s.get("/v1/databases/default/events?from=1")
            check(st == 200, f"log read after the compaction: {st} {body!r}")
    # reads: every one must answer 200 while the faulted server runs
    hidden = delete_effective(reqs)
    for r in range(READS):
        if r % 2 == 0:
            stream = STREAMS[r // 2 % len(STREAMS)]
            path = f"/v1/databases/default/streams/{stream}/events"
            visible = versions[stream] >= (hidden.get(stream, 1))
            ok = (200,) if visible else (200, 404)
        else:
            path = "/v1/databases/default/events?from=1"
            ok = (200,)
        try:
            st, _, body = s.get(path)
        except Exception as e:
            raise CaseFail(f"read {path}: no answer ({e})")
        check(st in ok, f"read {path}: {st} {body!r}")
    return reqs, info


def delete_effective(reqs):
    """{stream: truncateBefore} of the soft delete if it was acknowledged."""
    out = {}
    for r in reqs:
        if r["kind"] == "delete" and r["status"] == 204:
            out[r["stream"]] = r["expected"] + 1
    return out


def acked_events(reqs):
    """id -> (stream, version, position) of every acknowledged event."""
    out = {}
    for r in reqs:
        if r["kind"] == "append" and r["status"] == 201:
            for eid, e in zip(r["ids"], r["body"]["events"]):
                out[eid] = (r["stream"], e["version"], e["position"])
    return out


def check_log(events, head, reqs, where, exact):
    """The log read back (events, and head: the database's head position): well-formed, every
    acknowledged event present at its place unless the soft delete hides it, hidden ones
    absent, positions 1..head each either read back or hidden, the delete's $metadata event
    there if acknowledged and in place, failed requests absent or whole at consistent
    positions. exact (under the fault): nothing of a failed request is there.
    Returns the number of failed requests found present."""
    pos = [e["position"] for e in events]
    check(pos == sorted(set(pos)), f"{where}: positions not increasing: {pos[:50]}")
    hashes = [e.get("hash") for e in events]
    check(all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes),
          f"{where}: malformed hash")
    check(len(set(hashes)) == len(hashes), f"{where}: repeated hash")
    by_id = {e["id"]: e for e in events}
    check(len(by_id) == len(events), f"{where}: repeated event id")
    # the soft delete: its $metadata event (server-chosen id) in $$<stream>
    dreq = next(r for r in reqs if r["kind"] == "delete")
    di = reqs.index(dreq)
    metas = [e for e in events if e["stream"].startswith("$$")]
    present_failed = 0
    if dreq["status"] == 204 or (metas and not exact and dreq["status"] != 404):
        tb = dreq["expected"] + 1
        check(len(metas) == 1, f"{where}: {len(metas)} $$ events, want the delete's 1: "
                               f"{[(e['stream'], e['position']) for e in metas]}")
        m = metas[0]
        check((m["stream"], m["type"], m["version"]) == (f"$${dreq['stream']}", "$metadata", 1)
              and m.get("data") == {"truncateBefore": tb},
              f"{where}: the delete's event is {m!r}, want $${dreq['stream']} v1 "
              f"truncateBefore {tb}")
        acked_before = [e["position"] for r in reqs[:di] if r["status"] == 201
                        for e in r["body"]["events"]]
        acked_after = [e["position"] for r in reqs[di + 1:] if r["status"] == 201
                       for e in r["body"]["events"]]
        check(all(p < m["position"] for p in acked_before) and
              all(p > m["position"] for p in acked_after),
              f"{where}: the delete's event at position {m['position']}, out of order")
        if dreq["status"] != 204:
            present_failed += 1
        hidden = {dreq["stream"]: tb}
    else:
        check(not metas, f"{where}: $$ events though the delete failed: "
                         f"{[(e['stream'], e['position']) for e in metas]}")
        hidden = {}
    known = {eid for r in reqs for eid in r["ids"]}
    stray = [e["id"] for e in events if e["id"] not in known and not e["stream"].startswith("$$")]
    check(not stray, f"{where}: events never written: {stray[:3]}")
    hidden_pos = set()
    for eid, (stream, ver, p) in acked_events(reqs).items():
        e = by_id.get(eid)
        if ver < hidden.get(stream, 0):
            check(e is None, f"{where}: acknowledged event {eid} ({stream} v{ver}, position {p})"
                             f" visible though the soft delete hides it")
            hidden_pos.add(p)
            continue
        check(e is not None, f"{where}: acknowledged event {eid} (position {p}) lost")
        check((e["stream"], e["version"], e["position"]) == (stream, ver, p),
              f"{where}: acknowledged event {eid} moved: {(stream, ver, p)} -> "
              f"{(e['stream'], e['version'], e['position'])}")
    check(sorted(set(pos) | hidden_pos) == list(range(1, head + 1)),
          f"{where}: positions read back and hidden are not 1..{head} (head): read {pos[:50]}, "
          f"hidden {sorted(hidden_pos)}")
    for r in reqs:
        if r["status"] in (201, 204) or r["kind"] != "append":
            continue
        got = [by_id.get(eid) for eid in r["ids"]]
        have = [g for g in got if g is not None]
        if not have:
            continue
        check(not exact, f"{where}: failed append #{r['i']} visible in the running server")
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
    # per stream: versions consecutive in log order, from 1 (from truncateBefore if deleted)
    per = {}
    for e in events:
        per.setdefault(e["stream"], []).append(e["version"])
    for st, vs in per.items():
        v0 = hidden.get(st, 1)
        check(vs == list(range(v0, v0 + len(vs))), f"{where}: stream {st} versions {vs}")
    if exact:
        want = len(acked_events(reqs)) - len(hidden_pos) + (1 if hidden else 0)
        check(len(events) == want, f"{where}: {len(events)} events visible, want {want} "
                                   f"(acknowledged and not hidden)")
    return present_failed


def check_streams(s, events, where):
    """Every workload stream reads back as its events in the log read (404 without any)."""
    for stream in STREAMS + [f"$${DELETED}"]:
        want = [e["id"] for e in events if e["stream"] == stream]
        st, _, body = s.get(f"/v1/databases/default/streams/{harness.quote(stream)}/events"
                            f"?limit=1000")
        if not want:
            check(st == 404, f"{where}: stream {stream} (no visible event) read: {st} {body!r}")
            continue
        check(st == 200, f"{where}: stream {stream} read: {st} {body!r}")
        got = [e["id"] for e in body["events"]]
        check(got == want, f"{where}: stream {stream} reads {got}, the log has {want}")


def db_state(s, where):
    """(head, compaction status) of the default database."""
    try:
        st, _, body = s.get("/v1/databases/default")
    except Exception as e:
        raise CaseFail(f"{where}: GET database: no answer ({e})")
    check(st == 200, f"{where}: GET database: {st} {body!r}")
    return body["head"], body["compaction"]


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


def log_files(data):
    """The event log files of the default database: {generation: name}."""
    d = os.path.join(data, "dbs", "default")
    out = {}
    for name in os.listdir(d):
        m = LOG_RE.match(name)
        if m:
            out[int(m.group(2) or 0)] = name
    return out


def recover(binary, data, reqs, info, notes):
    """Restart without the interposer on data and check recovery. Raises CaseFail."""
    s = Server(data_dir=data, start=False)  # env None: no LD_PRELOAD
    try:
        try:
            s.start()
        except ServerError as e:
            raise CaseFail(f"restart without faults refused to start: {e}")
        events = s.read_log()
        head, comp = db_state(s, "after restart")
        if reqs:
            present = check_log(events, head, reqs, "after restart", exact=False)
            if present:
                notes.append(f"{present} unacknowledged request(s) present after restart "
                             f"(whole)")
            check_streams(s, events, "after restart")
        else:  # refused to start under the fault: nothing was written
            check(not events and head == 0, f"after restart: {len(events)} events, head {head}")
        files = log_files(data)
        check(len(files) == 1, f"after restart: log files {sorted(files.values())}")
        gen = next(iter(files))
        check(comp["generation"] == gen, f"after restart: compaction generation "
                                         f"{comp['generation']}, log file {files[gen]}")
        c = info.get("compaction") or {}
        last = c.get("last") or {}
        if last.get("outcome") == "failed" or (c and not last.get("rewrote")):
            check(gen == 0, f"after restart: {files[gen]} in force, the compaction did not "
                            f"rewrite ({last.get('outcome')})")
        elif last.get("rewrote") and not info.get("index_sync_failed"):
            check(gen == 1, f"after restart: {files[gen]} in force, the compaction rewrote "
                            f"(generation 1, index synced)")
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


def check_compaction(s, data, reqs, info, notes):
    """The compaction under the fault: ended ok or failed, consistent with the files."""
    c = info["compaction"]
    last = c["last"]
    log = s.log()
    files = log_files(data)
    info["index_sync_failed"] = "syncing the index after a compaction failed" in log
    if last["outcome"] == "failed":
        check("compaction failed" in log, "compaction failed without an error log line")
        check(not last["rewrote"] and c["generation"] == 0 and c["runs"] == 0,
              f"failed compaction: {c}")
        if "the index commit switching to log generation" in log:
            # the head's commit failed: which head is on disk is unknown until a restart,
            # so both generations stay (and appends are refused meanwhile)
            check(sorted(files) == [0, 1], f"failed head commit: log files "
                                           f"{sorted(files.values())}, want both kept")
            notes.append("compaction's head commit failed, both generations kept")
            return
        check(sorted(files) == [0], f"failed compaction: log files {sorted(files.values())}")
        notes.append("compaction failed")
        return
    hidden = sum(1 for eid, (st, v, p) in acked_events(reqs).items()
                 if v < delete_effective(reqs).get(st, 0))
    if not last["rewrote"]:
        check(c["generation"] == 0 and sorted(files) == [0],
              f"compaction did not rewrite: {c}, log files {sorted(files.values())}")
        notes.append("compaction had nothing to rewrite")
        return
    check(c["generation"] == 1 and c["runs"] == 1, f"compaction rewrote: {c}")
    check(0 < last["redactedEvents"] <= hidden,
          f"compaction redacted {last['redactedEvents']} events, {hidden} hidden")
    if info["index_sync_failed"]:
        check(sorted(files) == [0, 1], f"compaction's index sync failed: log files "
                                       f"{sorted(files.values())}, want both kept")
        notes.append("compaction switched, index sync failed")
    else:
        check(sorted(files) == [1], f"compaction rewrote: log files {sorted(files.values())}")
        notes.append("compaction ok")


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
            recover(binary, data, [], {}, notes)
            ok = True
            return True, "; ".join(notes)
        try:
            reqs, info = workload(s, persist_sync=(op == "sync" and mode == "persist"))
            check(s.running(), f"server exited during the workload (exit {s.proc.poll()})")
            st, _, body = s.get("/health")
            check(st == 200, f"/health after the workload: {st} {body!r}")
            # while running under the fault: exactly the acknowledged, visible events
            events = s.read_log()
            head, _ = db_state(s, "under the fault")
            check_log(events, head, reqs, "under the fault", exact=True)
            check_streams(s, events, "under the fault")
            check_compaction(s, data, reqs, info, notes)
            log = s.log()
            if "appends refused until restart" in log:
                # after a failed log sync (or index sync of a compaction's switch), every
                # later request must have failed
                first = next((k for k, r in enumerate(reqs) if r["status"] in (500, 507)),
                             None)
                later = [f"{r['kind']} #{r['i']}" for k, r in enumerate(reqs)
                         if first is not None and k > first and r["status"] in (201, 204)]
                check(first is not None and not later,
                      f"appends refused until restart, but {later} succeeded afterwards")
                notes.append(f"appends refused from {reqs[first]['kind']} #{reqs[first]['i']}")
        except CaseFail as e:
            raise CaseFail(f"{e}\n--- server log (last 15 lines) ---\n" +
                           "\n".join(s.log().splitlines()[-15:]))
        injected = "fi_inject: failing" in s.log()
        failed = sum(1 for r in reqs if r["status"] in (500, 507))
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
            notes.append(f"{failed} request(s) refused")
        recover(binary, data, reqs, info, notes)
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
            with open(os.path.join(tmp, "server.log"), "w") as f:
                f.write(s.log() + "\n")  # the server's log under the fault
            print(f"  kept {tmp}", flush=True)


# ---------------------------------------------------------------------------------------------
# dry run and choice of N

def dry_run(binary, preload):
    """Runs the workload without faults; returns ({op: [(k, signature)]} from the trace, the
    counts, {op: (first, last)}: the calls made while the compaction ran)."""
    tmp = tempfile.mkdtemp(prefix="annals-fi-dry-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    trace = os.path.join(tmp, "trace")
    count = os.path.join(tmp, "count")
    s = Server(data_dir=data, env=fi_env(preload, data, count_file=count, trace_file=trace),
               start=False)
    try:
        s.start()
        reqs, info = workload(s, False, count_file=count)
        check(all(r["status"] in (201, 204) for r in reqs), "dry run: a request failed")
        c = info["compaction"]
        check(c["last"]["outcome"] == "ok" and c["last"]["rewrote"] and c["generation"] == 1,
              f"dry run: the compaction did not rewrite the log: {c}")
        rc = s.stop()
        check(rc == 0, f"dry run: exit {rc}")
        calls = {"write": [], "sync": []}
        with open(trace) as f:
            for line in f:
                op, k, call, path, nbytes = line.split()
                calls[op].append((int(k), (call, os.path.basename(path), nbytes)))
        counts = open(count).read().strip()
        (w0, s0), (w1, s1) = info["window"]
        window = {"write": (w0 + 1, w1), "sync": (s0 + 1, s1)}
        # the compaction's calls were traced: the new log's writes and fdatasyncs, LMDB's
        seen = {(op, sig[0], sig[1]) for op in calls for k, sig in calls[op]
                if window[op][0] <= k <= window[op][1]}
        for want in (("write", "pwrite", "events.1.log"), ("sync", "fdatasync", "events.1.log"),
                     ("sync", "fdatasync", "data.mdb")):
            check(want in seen, f"dry run: no {want[1]} of {want[2]} while the compaction ran")
        check(any(op == "write" and f == "data.mdb" for op, _, f in seen),
              "dry run: no LMDB write while the compaction ran")
        return calls, counts, window
    finally:
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def spread(calls, cap):
    """Picks at most cap values of N: first every call whose kind (call, file, size) differs
    from its neighbour's (the boundaries of runs such as the log's 64 KiB zero-fill writes),
    then evenly spread over the rest."""
    k = len(calls)
    if k <= cap:
        return [n for n, _ in calls]
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


def run_ends(calls, key):
    """The calls that start or end a run of calls with the same key(signature)."""
    out = []
    for idx, (n, sig) in enumerate(calls):
        prev = key(calls[idx - 1][1]) if idx else None
        nxt = key(calls[idx + 1][1]) if idx + 1 < len(calls) else None
        if key(sig) != prev or key(sig) != nxt:
            out.append(n)
    return out


def spread_window(calls, cap):
    """Picks at most cap values of N among the compaction's calls: all of them if they are
    few (its syncs), else first the ends of each run of one call on one file (the new log's
    first zero-fill write and last batch write, each LMDB page and meta write), then the ends
    of each run of one size (the last zero-fill write, batch writes), evenly spread."""
    if len(calls) <= cap:
        return [n for n, _ in calls]
    chosen = []
    for level in (run_ends(calls, lambda s: s[:2]), run_ends(calls, lambda s: s),
                  [n for n, _ in calls]):
        level = [n for n in level if n not in chosen]
        need = cap - len(chosen)
        if need <= 0:
            break
        if len(level) > need:
            level = sorted({level[round(i * (len(level) - 1) / max(need - 1, 1))]
                            for i in range(need)})
        chosen += level
    return sorted(chosen)


def choose(calls, cap, window):
    """At most cap values of N: max(8, cap/3) among the calls made while the compaction ran
    (window: first, last; spread_window), the rest over the other calls (spread)."""
    lo, hi = window
    inside = [c for c in calls if lo <= c[0] <= hi]
    outside = [c for c in calls if not lo <= c[0] <= hi]
    picked = spread_window(inside, min(max(8, cap // 3), cap))
    return sorted(set(picked) | set(spread(outside, cap - len(picked))))


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
    calls, counts, window = dry_run(binary, preload)
    print(f"dry run: {counts} (calls on files under the data dir); the compaction made "
          f"writes {window['write'][0]}..{window['write'][1]}, "
          f"syncs {window['sync'][0]}..{window['sync'][1]}", flush=True)
    cases = []
    for op in a.ops.split(","):
        if a.n:
            ns = [int(x) for x in a.n.split(",")]
        elif a.all:
            ns = list(range(1, len(calls[op]) + 1))
        else:
            ns = choose(calls[op], cap, window[op])
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
