#!/usr/bin/env python3
"""Repro of bug 3 (README; fixed in ae2ee44): one failed write of LMDB's meta page in a
compaction's commit (the head commit naming the new log, or, with --empty-table, the commit
that empties the replaced position table after a successful switch) left the index
environment fatal (MDB_PANIC). Nothing reopened it but the indexer's next failed commit, so
with no unindexed event left every read answered 500 and every append carrying a client event
id failed, until a restart. (run.py's workload leaves one event unindexed at the compaction:
there reads answered 500 for ~0.3 s, until the indexer failed and reopened it.)

    python3 tests/faults/repro_compact_meta.py [--empty-table] [--bin build/annals]

Exit 1 when the bug shows (reads still 500 after 3 s and appends with ids refused), else 0.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)
import run  # noqa: E402  (tests/faults/run.py)
from harness import Server  # noqa: E402


def scenario(env, data):
    """12 events in a and b, soft-delete a, wait until indexed, compact (nothing unindexed)."""
    s = Server(data_dir=data, env=env)
    for i in range(6):
        s.append("a", [{"type": "T", "data": {"i": i}}])
        s.append("b", [{"type": "T", "data": {"i": i}}])
    st = s.request("DELETE", "/v1/databases/default/streams/a")[0]
    assert st == 204, st
    run.wait_indexed(s)
    return s, run.compact(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "annals"))
    ap.add_argument("--preload", default=os.path.join(REPO, "build", "fi_inject.so"))
    ap.add_argument("--empty-table", action="store_true",
                    help="fail the meta write of the commit emptying the replaced table")
    a = ap.parse_args()
    os.environ["ANNALS_BIN"] = os.path.abspath(a.bin)
    preload = os.path.abspath(a.preload)
    tmp = tempfile.mkdtemp(prefix="annals-fi-repro-")
    try:
        dry = os.path.join(tmp, "dry")
        os.makedirs(dry)
        trace = os.path.join(tmp, "trace")
        s, _ = scenario(run.fi_env(preload, dry, trace_file=trace), dry)
        s.stop()
        s.cleanup()
        writes = [ln.split() for ln in open(trace) if ln.startswith("write ")]
        first_new = next(int(w[1]) for w in writes if w[3].endswith("events.1.log"))
        metas = [int(w[1]) for w in writes if int(w[1]) > first_new and
                 w[3].endswith("data.mdb") and w[4] == "120"]
        n = metas[1] if a.empty_table else metas[0]
        print(f"LMDB meta-page writes during the compaction: {metas}; failing write #{n} once")
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        s, c = scenario(run.fi_env(preload, data, "write", n, "once"), data)
        print(f"compaction: outcome {c['last']['outcome']}, generation {c['generation']}")
        t0 = time.monotonic()
        st = None
        while time.monotonic() - t0 < 3:
            st, _, body = s.get("/v1/databases/default/events?from=1")
            if st == 200:
                break
            time.sleep(0.1)
        print(f"log read {time.monotonic() - t0:.1f} s after the compaction: {st}")
        refused = 0
        for k in range(3):
            st_a, _, _ = s.append("b", [{"type": "T", "data": {"k": k},
                                         "id": f"00000000-0000-4000-8000-00000000000{k}"}])
            refused += st_a != 201
            time.sleep(0.3)
        print(f"appends with a client id: {3 - refused} of 3 answered 201")
        st2, _, _ = s.get("/v1/databases/default/events?from=1")
        print(f"log read after them: {st2}")
        for line in s.log().splitlines():
            if line.startswith("fi_inject") or '"error"' in line or "position table" in line:
                print("  " + line)
        s.stop()
        s.cleanup()
        bug = st != 200 and st2 != 200 and refused == 3
        print("BUG: the index environment stays fatal until restart" if bug else "not reproduced")
        return 1 if bug else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
