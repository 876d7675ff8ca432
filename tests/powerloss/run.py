#!/usr/bin/env python3
"""Power-loss test: record the server's file I/O under a concurrent append load, then rebuild
many states a power cut could have left on disk and check recovery on each.

1. Record: the server runs on an empty data directory with tests/powerloss/trace.c preloaded,
   which logs every write and sync to files under the data directory, and every file creation,
   unlink, rename and directory fsync there. 8 client threads append batches of 1-3 events
   (client-chosen ids) to 10 streams; every 201 is stamped with CLOCK_MONOTONIC when it arrived
   (the trace uses the same clock). Meanwhile a compaction thread, --compactions times, appends
   a few events to a throwaway stream del-<r>, waits until they are indexed, soft-deletes the
   stream (DELETE, 204 stamped too), requests a compaction (POST .../compaction) and waits for
   it to end, so the log is rewritten into events.1.log, events.2.log, ... while the appenders
   go on. The server then stops.
2. Crash states: a cut point k in the trace (the power fails after record k-1).
   Directory entries: a creation, unlink or rename recorded before the SYNC_BEGIN of an fsync
   of its directory that returned 0 before k is on disk; any later one before k is pending and
   per state either all lost, all kept, or each kept or lost at random (so a new log generation
   may be missing, and an unlinked one still there). Contents, per file (inode) that exists:
   the writes recorded before the SYNC_BEGIN of its last sync that returned 0 before k are on
   disk; every later write before k is pending. Each 512-byte sector a pending write touched
   holds the content it had at some moment between the sync and the cut, chosen per sector
   (so pending writes are dropped, torn at sector boundaries or persisted out of order), with
   per-state strategies: all pending lost, all kept, an in-order prefix ending in a torn write,
   independent random per sector. Files kept: every log generation and data.mdb; lock.mdb and
   LOCK are left out (rebuilt at start).
3. Checks per state: the server starts on it; the log read over HTTP has increasing positions
   1..n whose only holes are the events of deleted streams whose delete survived (and those
   are never served); every event is one that was written, at the position, stream and version
   it was written with; every event acknowledged (201 received) before the cut is there unless
   its stream's delete survived, every delete acknowledged (204) before the cut survived, and
   every event whose frame was covered by a completed log sync is there (or deleted); every
   request is all-or-nothing; exactly one log file is left in the database directory, the
   generation in force, at least the generation of every compaction seen finished before the
   cut; an append after recovery gets position n+1; SIGTERM exits 0 (still one log file);
   `annals verify` then exits 0 with "hash chain intact"; the server starts again with head n+1.

--broken-sync runs the recording with PL_SKIP_SYNC=1 (fdatasync of every log generation is a
no-op that returns 0, as in a build that forgot it): the run must then report failures.

Prints one PASS/FAIL line per state and `N passed, M failed` last; exit 1 if any failed.
"""
import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

(T_OPEN, T_WRITE, T_ZERO, T_SYNC_BEGIN, T_SYNC_END, T_TRUNC, T_SKIP, T_CREATE, T_UNLINK,
 T_RENAME, T_DIR) = range(1, 12)
SECTOR = 512   # --sector
SERVER_FLAGS = ["--compact-interval", "0"]   # compactions only when the load asks for them
DB_REL = os.path.join("dbs", "default")
# what a crash state contains, per database: every log generation (events.log = generation 0,
# events.<g>.log) and data.mdb
KEEP_FILES = ("events.log", "events.<g>.log", "data.mdb")
LOG_NAME = re.compile(r"^events(?:\.([1-9][0-9]*))?\.log$")


def is_log_name(name):
    return LOG_NAME.match(name) is not None


def kept(name):
    return name == "data.mdb" or is_log_name(name)


def log_name(gen):
    return "events.log" if gen == 0 else f"events.{gen}.log"


# ---------------------------------------------------------------- trace

class Rec:
    __slots__ = ("i", "type", "ts", "file", "off", "len", "data", "res", "path", "path2")

    def __init__(self, i, typ, ts, file):
        self.i, self.type, self.ts, self.file = i, typ, ts, file
        self.off = self.len = self.res = 0
        self.data = self.path = self.path2 = None


def parse_trace(path):
    """[Rec], {file id: path when first opened}, {ids of directories}."""
    raw = open(path, "rb").read()
    mv = memoryview(raw)
    recs, paths, dirs = [], {}, set()
    p = 0

    def take_path():
        nonlocal p
        (n,) = struct.unpack_from("<I", raw, p)
        p += 4
        v = raw[p:p + n].decode()
        p += n
        return v

    while p < len(raw):
        typ, ts, fid = struct.unpack_from("<BQI", raw, p)
        p += 13
        r = Rec(len(recs), typ, ts, fid)
        if typ == T_OPEN:
            p += 4   # open flags
            r.path = take_path()
            paths.setdefault(fid, r.path)
        elif typ == T_DIR:
            r.path = take_path()
            paths.setdefault(fid, r.path)
            dirs.add(fid)
        elif typ == T_UNLINK:
            r.path = take_path()
        elif typ == T_RENAME:
            r.path = take_path()
            r.path2 = take_path()
        elif typ in (T_WRITE, T_ZERO):
            r.off, r.len = struct.unpack_from("<QI", raw, p)
            p += 12
            if typ == T_WRITE:
                r.data = mv[p:p + r.len]
                p += r.len
        elif typ == T_SYNC_END:
            (r.res,) = struct.unpack_from("<i", raw, p)
            p += 4
        elif typ == T_TRUNC:
            (r.len,) = struct.unpack_from("<Q", raw, p)
            p += 8
        elif typ not in (T_SYNC_BEGIN, T_SKIP, T_CREATE):
            raise ValueError(f"bad trace record type {typ} at byte {p - 13}")
        recs.append(r)
    return recs, paths, dirs


BATCH_MAGIC = 0xA11A1504
BATCH_HEADER = 16


def parse_frames(data, off):
    """Event frames in the bytes of one log write at file offset off: the write is one batch
    (16-byte header: magic, frames length, CRC, count; then frames) or, for the zero-filled
    growth of the file, nothing. A compaction's writes to a new generation are batches too
    (rebuilt, or copied verbatim: then only the first batch of the write is parsed); redacted
    records (flag 1, 120 bytes) are skipped. [(frame offset, position, version, id, stream)]."""
    out = []
    if len(data) < BATCH_HEADER or struct.unpack_from(">I", data, 0)[0] != BATCH_MAGIC:
        return out
    (count,) = struct.unpack_from(">I", data, 12)  # event frames; aux frames follow them
    p = BATCH_HEADER
    seen = 0
    while p + 4 <= len(data) and seen < count:
        (n,) = struct.unpack_from(">I", data, p)
        if n == 0 or p + 4 + n > len(data):
            break
        seen += 1
        rec = bytes(data[p + 4:p + 4 + n])
        if n >= 112 and not rec[1] & 1:   # 112: RECORD_HEADER_BYTES; flag 1: redacted
            pos, ver = struct.unpack_from(">QQ", rec, 8)
            eid = str(uuid.UUID(bytes=rec[40:56]))
            slen = struct.unpack_from(">I", rec, 88)[0]
            stream = rec[112:112 + slen].decode("utf-8", "replace")
            out.append((off + p, pos, ver, eid, stream))
        p += 4 + n
    return out


class Model:
    """The trace: per file (inode) its writes and completed syncs; the directory entries of the
    kept files (created, unlinked, renamed) and the completed fsyncs of each directory; what
    the log writes contained."""

    def __init__(self, recs, paths, dirs, data_dir):
        self.recs = recs
        rel = lambda p: os.path.relpath(p, data_dir)  # noqa: E731
        self.rel = {fid: rel(p) for fid, p in paths.items()}
        self.files = {}   # fid -> {"ops": [rec], "syncs": [(begin_i, end_i)]}
        for fid, r in self.rel.items():
            if fid not in dirs and kept(os.path.basename(r)):
                self.files[fid] = {"ops": [], "syncs": []}
        self.dir_syncs = collections.defaultdict(list)   # rel dir -> [(begin_i, end_i)]
        # directory entry changes of kept files, in trace order: (i, kind, rel, rel2, fid),
        # kind "create" (rel now names fid), "unlink" (rel names nothing), "rename" (rel2 now
        # names what rel named); files never created in the trace exist from the start
        self.ns = []
        created = set()
        begun = collections.defaultdict(list)
        for r in recs:
            if r.type == T_CREATE and r.file in self.files:
                created.add(r.file)
                self.ns.append((r.i, "create", self.rel[r.file], None, r.file))
            elif r.type == T_UNLINK and kept(os.path.basename(r.path)):
                self.ns.append((r.i, "unlink", rel(r.path), None, r.file))
            elif r.type == T_RENAME and (kept(os.path.basename(r.path or "")) or
                                         kept(os.path.basename(r.path2 or ""))):
                self.ns.append((r.i, "rename", rel(r.path) if r.path else None,
                                rel(r.path2) if r.path2 else None, r.file))
            elif r.type == T_SYNC_BEGIN:
                begun[r.file].append(r.i)
            elif r.type == T_SYNC_END:
                b = begun[r.file].pop(0) if begun[r.file] else None
                if b is None or r.res != 0:
                    continue
                if r.file in self.files:
                    self.files[r.file]["syncs"].append((b, r.i))
                elif r.file in dirs:
                    self.dir_syncs[self.rel[r.file]].append((b, r.i))
            elif r.type in (T_WRITE, T_ZERO, T_TRUNC) and r.file in self.files:
                self.files[r.file]["ops"].append(r)
        self.initial = {self.rel[fid]: fid for fid in self.files if fid not in created}
        self.log_fids = {fid for fid in self.files
                         if os.path.dirname(self.rel[fid]) == DB_REL
                         and is_log_name(os.path.basename(self.rel[fid]))}
        # every frame ever written to a log: position -> (id, stream, version), from its first
        # write (the append; a compaction only copies it later)
        self.written = {}
        self.frame_write = {}   # position -> (file id, index of the trace record that wrote it)
        for r in recs:
            if r.type == T_WRITE and r.file in self.log_fids:
                for _off, pos, ver, eid, stream in parse_frames(r.data, r.off):
                    if pos not in self.written:
                        self.written[pos] = (eid, stream, ver)
                        self.frame_write[pos] = (r.file, r.i)
        # compactions: from the creation of a log generation >= 1 to the first completed
        # fsync of the directory after the unlink of the generation it replaced (or of itself)
        self.windows = []
        for i, kind, r, _r2, fid in self.ns:
            if kind != "create" or fid not in self.log_fids or \
                    os.path.basename(r) == "events.log":
                continue
            end = len(recs)
            unl = [j for j, k2, r2, _x, _f in self.ns if k2 == "unlink" and j > i
                   and os.path.dirname(r2) == DB_REL]
            if unl:
                ends = [e for b, e in self.dir_syncs[DB_REL] if b > unl[0]]
                end = min(ends) + 1 if ends else len(recs)
            self.windows.append((i, end))
        # while an entry change is pending: from just after it to the end of the first fsync
        # of its directory that covers it (cuts there may lose it or not)
        self.ns_pending = []
        for i, _kind, r, r2, _fid in self.ns:
            for d in {os.path.dirname(x) for x in (r, r2) if x}:
                ends = [e for b, e in self.dir_syncs.get(d, ()) if b > i]
                self.ns_pending.append((i + 1, min(ends) if ends else len(recs)))

    def durable_mark(self, fid, k):
        """Trace index before which this file's writes are durable for a cut at k."""
        mark = 0
        for b, e in self.files[fid]["syncs"]:
            if e < k:
                mark = max(mark, b)
        return mark

    def dir_mark(self, rel_dir, k):
        """Trace index before which the entry changes in this directory are durable."""
        mark = -1
        for b, e in self.dir_syncs.get(rel_dir, ()):
            if e < k:
                mark = max(mark, b)
        return mark

    def synced_positions(self, k):
        marks = {fid: self.durable_mark(fid, k) for fid in self.log_fids}
        return {p for p, (fid, i) in self.frame_write.items() if i < marks[fid]}

    def names(self, k, mode, rng):
        """Which file each kept path names after a cut at k: {rel path: fid}, and a description
        of the pending entry changes. mode: "ns-durable" (all pending lost), "ns-all" (all kept),
        "ns-random" (each kept or lost at random)."""
        names = dict(self.initial)
        desc = []
        for i, kind, r, r2, fid in self.ns:
            if i >= k:
                break
            dirs = {os.path.dirname(x) for x in (r, r2) if x}
            durable = all(i < self.dir_mark(d, k) for d in dirs)
            if not durable:
                apply = mode == "ns-all" or (mode == "ns-random" and rng.random() < 0.5)
                what = {"create": "+", "unlink": "-", "rename": "~"}[kind] + \
                    os.path.basename(r or "?") + (f">{os.path.basename(r2)}" if r2 else "")
                desc.append(what + ("" if apply else " lost"))
                if not apply:
                    continue
            if kind == "create":
                names[r] = fid
            elif kind == "unlink":
                names.pop(r, None)
            else:
                f = names.pop(r, None) if r else None
                if r2:
                    if f is None and fid in self.files:
                        f = fid
                    if f is not None and kept(os.path.basename(r2)):
                        names[r2] = f
                    else:
                        names.pop(r2, None)
        return names, desc


class File:
    def __init__(self):
        self.buf = bytearray()
        self.size = 0

    def write(self, off, data, length, zero):
        end = off + length
        if zero:
            if off < len(self.buf):
                z = min(end, len(self.buf)) - off
                self.buf[off:off + z] = bytes(z)
        else:
            if len(self.buf) < off:
                self.buf.extend(bytes(off - len(self.buf)))
            self.buf[off:end] = data
        self.size = max(self.size, end)

    def truncate(self, n):
        del self.buf[n:]
        self.size = n


def apply_op(f, r, lo=None, hi=None):
    """Applies write r to f, or only its bytes in file range [lo, hi)."""
    if r.type == T_TRUNC:
        f.truncate(r.len)
        return
    a, b = r.off, r.off + r.len
    if lo is not None:
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            return
    f.write(a, None if r.type == T_ZERO else r.data[a - r.off:b - r.off], b - a,
            r.type == T_ZERO)


def sectors(r):
    return range(r.off // SECTOR, (r.off + r.len + SECTOR - 1) // SECTOR)


def category(problem):
    """A short name for a kind of failure (for the summary)."""
    for key, name in (("acknowledged before the crash are lost", "acked events lost"),
                      ("covered by a completed log sync", "synced events lost"),
                      ("acknowledged events follow", "refuses to start: torn write taken for damage"),
                      ("cannot open: corrupt", "refuses to start: corrupt"),
                      ("did not start", "refuses to start: other"),
                      ("partly recovered", "request partly recovered"),
                      ("gap-free", "gap in positions"),
                      ("deletes answered 204", "acked delete lost"),
                      ("deleted streams are served", "deleted events served"),
                      ("log files after", "not exactly one log file after recovery"),
                      ("had finished before the cut", "finished compaction undone"),
                      ("never written", "event never written"),
                      ("append after recovery", "append after recovery"),
                      ("annals verify", "verify fails after recovery + one append"),
                      ("again after recovery", "no second start after recovery + one append"),
                      ("exit code", "bad exit code")):
        if key in problem:
            return name
    return "other"


def crash_state(model, k, rng, out_dir):
    """Writes the files of a crash at cut k into out_dir; returns a description."""
    strategy = rng.choice(["lose-all", "keep-all", "prefix-torn", "sectors", "sectors"])
    ns_mode = rng.choice(["ns-durable", "ns-all", "ns-random"])
    names, ns_desc = model.names(k, ns_mode, rng)
    os.makedirs(os.path.join(out_dir, DB_REL), exist_ok=True)
    desc = []
    for rel, fid in sorted(names.items()):
        info = model.files[fid]
        mark = model.durable_mark(fid, k)
        f = File()
        pending = []
        for r in info["ops"]:
            if r.i >= k:
                break
            if r.i < mark:
                apply_op(f, r)
            else:
                pending.append(r)
        base_size = f.size
        if strategy == "keep-all":
            for r in pending:
                apply_op(f, r)
        elif strategy == "prefix-torn" and pending:
            m = rng.randrange(len(pending) + 1)
            for r in pending[:m]:
                apply_op(f, r)
            if m < len(pending):
                r = pending[m]
                if r.type == T_TRUNC:
                    pass
                else:
                    secs = list(sectors(r))
                    cut = rng.randrange(len(secs) + 1)
                    if secs[:cut]:
                        apply_op(f, r, r.off, (secs[cut - 1] + 1) * SECTOR)
        elif strategy == "sectors" and pending:
            # per sector: the content after j of the pending writes touching it, j random
            touch = collections.defaultdict(list)
            for r in pending:
                if r.type == T_TRUNC:
                    continue
                if r.type == T_ZERO and r.len > 64 * SECTOR:
                    # large zero fills (log growth): all or nothing
                    touch[("z", r.i)].append(r)
                    continue
                for s in sectors(r):
                    touch[s].append(r)
            mode = rng.random()
            for s, rs in touch.items():
                j = rng.randrange(len(rs) + 1) if mode < 0.8 else rng.choice([0, len(rs)])
                for r in rs[:j]:
                    if isinstance(s, tuple):
                        apply_op(f, r)
                    else:
                        apply_op(f, r, s * SECTOR, (s + 1) * SECTOR)
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(bytes(f.buf[:f.size]).rstrip(b"\0"))
            fh.truncate(f.size)
        desc.append(f"{os.path.basename(path)}: {len(pending)} pending, {base_size}->{f.size}B")
    ns = f"{ns_mode}" + (f" ({' '.join(ns_desc)})" if ns_desc else "")
    return f"{strategy}; {ns}; " + ", ".join(desc)


# ---------------------------------------------------------------- load

class Load:
    def __init__(self, port, threads, streams, seed, compactions=0):
        self.port = port
        self.threads = threads
        self.streams = streams
        self.seed = seed
        self.compactions = compactions
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = []    # (stream, [ids])
        self.keyed = []   # (stream, [ids], idempotency key, body) of requests that had one
        self.acked = []   # (t_recv_ns, stream, [{"id","position","version"}])
        self.other = []
        self.deleted = set()   # throwaway streams a DELETE was sent for
        self.deletes = []      # (t_recv_ns, stream) of DELETEs answered 204
        self.compacted = []    # (t_seen_ns, compaction status) once each requested one ended

    def worker(self, i):
        rng = random.Random(self.seed * 1000 + i)
        c = None
        while not self.stop.is_set():
            stream = rng.choice(self.streams)
            n = rng.randint(1, 3)
            ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]
            evs = [{"type": "PL", "id": ids[j],
                    "data": {"t": i, "j": j, "pad": "p" * rng.randint(0, 300)}}
                   for j in range(n)]
            body = json.dumps({"events": evs})
            key = f"pl-{i}-{ids[0]}" if rng.random() < 0.5 else None
            hdrs = {"Content-Type": "application/json"}
            if key:
                hdrs["Idempotency-Key"] = key
            with self.lock:
                self.sent.append((stream, ids))
                if key:
                    self.keyed.append((stream, ids, key, body))
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                c.request("POST", f"/v1/databases/default/streams/{stream}/events", body=body,
                          headers=hdrs)
                resp = c.getresponse()
                raw = resp.read()
                t = time.monotonic_ns()
            except Exception as ex:  # noqa: BLE001
                with self.lock:
                    self.other.append(("exception", repr(ex)))
                if c is not None:
                    c.close()
                c = None
                continue
            with self.lock:
                if resp.status == 201:
                    self.acked.append((t, stream, json.loads(raw)["events"]))
                else:
                    self.other.append((resp.status, raw[:200]))
        if c is not None:
            c.close()

    def call(self, c, method, path, body=None):
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=hdrs)
        resp = c.getresponse()
        raw = resp.read()
        return resp.status, raw, time.monotonic_ns()

    def compaction_round(self, c, rng, r):
        """Throwaway events in del-<r>, indexed, then deleted, then a compaction, waited for.
        Returns False when something went wrong (noted in other)."""
        db = "/v1/databases/default"
        stream = f"del-{r}"
        last = 0
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(1, 4)
            ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]
            body = json.dumps({"events": [{"type": "PL", "id": ids[j], "data": {
                "del": r, "j": j, "pad": "d" * rng.randint(100, 3000)}} for j in range(n)]})
            with self.lock:
                self.sent.append((stream, ids))
            st, raw, t = self.call(c, "POST", f"{db}/streams/{stream}/events", body)
            if st != 201:
                with self.lock:
                    self.other.append((st, raw[:200]))
                return False
            evs = json.loads(raw)["events"]
            last = max(last, evs[-1]["position"])
            with self.lock:
                self.acked.append((t, stream, evs))
        deadline = time.monotonic() + 10
        while True:   # a compaction only rewrites the indexed part of the log
            st, raw, _t = self.call(c, "GET", db)
            if st == 200 and json.loads(raw)["indexer"]["indexed"] >= last:
                break
            if time.monotonic() > deadline:
                with self.lock:
                    self.other.append(("not indexed in 10 s", raw[:200]))
                return False
            time.sleep(0.02)
        with self.lock:
            self.deleted.add(stream)
        st, raw, t = self.call(c, "DELETE", f"{db}/streams/{stream}")
        if st != 204:
            with self.lock:
                self.other.append((st, raw[:200]))
            return False
        with self.lock:
            self.deletes.append((t, stream))
        st, raw, _t = self.call(c, "GET", f"{db}/compaction")
        before = json.loads(raw)["compaction"]["checks"]
        st, raw, _t = self.call(c, "POST", f"{db}/compaction", "{}")
        if st != 202:
            with self.lock:
                self.other.append((st, raw[:200]))
            return False
        deadline = time.monotonic() + 60
        while True:
            st, raw, t = self.call(c, "GET", f"{db}/compaction")
            cs = json.loads(raw)["compaction"]
            if cs["checks"] > before and not cs["running"]:
                with self.lock:
                    self.compacted.append((t, cs))
                return True
            if time.monotonic() > deadline:
                with self.lock:
                    self.other.append(("compaction did not end in 60 s", cs))
                return False
            time.sleep(0.01)

    def compactor(self, seconds):
        """--compactions rounds, spread over the run (each takes at least an index delay)."""
        rng = random.Random(self.seed * 1000 + 999)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        t0 = time.monotonic()
        try:
            for r in range(self.compactions):
                slot = t0 + 0.1 + seconds * r / self.compactions
                if time.monotonic() < slot:
                    time.sleep(slot - time.monotonic())
                if not self.compaction_round(c, rng, r):
                    break
        except Exception as ex:  # noqa: BLE001
            with self.lock:
                self.other.append(("compactor exception", repr(ex)))
        finally:
            c.close()

    def run(self, seconds):
        ts = [threading.Thread(target=self.worker, args=(i,), daemon=True)
              for i in range(self.threads)]
        for t in ts:
            t.start()
        comp = None
        if self.compactions:
            comp = threading.Thread(target=self.compactor, args=(seconds,), daemon=True)
            comp.start()
        time.sleep(seconds)
        if comp is not None:   # the appenders go on until the last compaction ended
            comp.join(120)
        self.stop.set()
        for t in ts:
            t.join(60)


def record(args, work):
    """Runs the server under the interposer with the load; returns (model, load)."""
    import harness
    data = os.path.join(work, "rec")
    os.makedirs(data)
    trace = os.path.join(work, "trace.bin")
    env = dict(os.environ, LD_PRELOAD=os.path.abspath(args.preload), PL_DIR=data,
               PL_TRACE=trace)
    if args.broken_sync:
        env["PL_SKIP_SYNC"] = "1"
    s = harness.Server(data_dir=data, env=env, extra=SERVER_FLAGS)
    try:
        load = Load(s.port, args.threads, [f"s{i}" for i in range(10)], args.seed,
                    args.compactions)
        load.run(args.seconds)
        rc = s.stop()
        if rc != 0:
            raise SystemExit(f"recording server exited {rc}:\n{s.log()[-2000:]}")
    finally:
        s.cleanup()
    recs, paths, dirs = parse_trace(trace)
    model = Model(recs, paths, dirs, os.path.realpath(data))
    return model, load


# ---------------------------------------------------------------- checks

def read_log(conn):
    out, frm = [], 1
    while True:
        conn.request("GET", f"/v1/databases/default/events?from={frm}&limit=1000")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise AssertionError(f"log read from {frm}: {resp.status} {body[:300]!r}")
        page = json.loads(body)
        out.extend(page["events"])
        if page["next"] is None:
            return out
        frm = page["next"]


def check_replays(conn, load, by_id, k):
    """Idempotency records are written in the same batch as their events: every keyed request
    whose events survived must replay (the same ids, X-Idempotency-Replayed). Checks the last
    25 and 25 others of those."""
    present = [x for x in load.keyed if x[1][0] in by_id]
    rng = random.Random(k)
    sample = present[-25:] + rng.sample(present[:-25], min(25, max(0, len(present) - 25)))
    for stream, ids, key, body in sample:
        conn.request("POST", f"/v1/databases/default/streams/{stream}/events", body=body,
                     headers={"Content-Type": "application/json", "Idempotency-Key": key})
        resp = conn.getresponse()
        ans = resp.read()
        got = json.loads(ans).get("events") if resp.status == 201 else None
        if resp.getheader("X-Idempotency-Replayed") != "true" or \
                [e["id"] for e in got or []] != ids:
            return [f"request with idempotency key {key} (events recovered) did not replay: "
                    f"{resp.status} {ans[:200]!r}"]
    return []


def log_files(state_dir):
    return sorted(f for f in os.listdir(os.path.join(state_dir, DB_REL)) if is_log_name(f))


def check_state(model, load, k, state_dir):
    """Starts the server on a crash state and checks it; returns a list of problems."""
    import harness
    problems = []
    n_log = -1
    cut_ts = model.recs[k - 1].ts if k > 0 else 0
    synced_set = model.synced_positions(k)
    synced = max(synced_set, default=0)
    acked = max((a["position"] for t, _st, evs in load.acked if t < cut_ts for a in evs),
                default=0)
    # the newest generation a compaction was seen to have finished with before the cut: its
    # head was synced and the log it replaced removed, so recovery cannot go back past it
    min_gen = max((cs["generation"] for t, cs in load.compacted if t < cut_ts), default=0)
    context = (f"(at the cut: log synced through position {synced}, acked through {acked}, "
               f"generation >= {min_gen}; files {log_files(state_dir)})")
    s = harness.Server(data_dir=state_dir, start=False, extra=SERVER_FLAGS)
    if not s.try_start(timeout=20):
        return ["server did not start on the crash state: "
                + " | ".join(json.loads(ln).get("msg", ln) if ln.startswith("{") else ln
                             for ln in s.log().splitlines()[-3:]), context]
    try:
        conn = s.connect()
        log = read_log(conn)
        positions = [e["position"] for e in log]
        n_log = max(positions, default=0)
        present = set(positions)
        # deleted streams whose delete survived: their events are hidden (a delete is a
        # $metadata event in $$<stream>, after all of the stream's events)
        hidden_streams = {e["stream"][2:] for e in log
                          if e["stream"].startswith("$$") and e["stream"][2:] in load.deleted}
        hidden = {p for p, w in model.written.items() if w[1] in hidden_streams}
        holes = set(range(1, n_log + 1)) - present
        if positions != sorted(present) or not holes <= hidden:
            problems.append(f"positions not gap-free 1..{n_log} (holes other than deleted "
                            f"events: {sorted(holes - hidden)[:5]})")
        if present & hidden:
            problems.append(f"events of deleted streams are served: positions "
                            f"{sorted(present & hidden)[:5]}")
        by_id = {}
        for e in log:
            w = model.written.get(e["position"])
            if w is None or w != (e["id"], e["stream"], e["version"]):
                problems.append(f"position {e['position']}: {e['id']} {e['stream']} "
                                f"v{e['version']} was never written there (wrote {w})")
                break
            by_id[e["id"]] = e
        # acknowledged before the cut => present (unless deleted by a delete that survived)
        lost = [a for t, st, evs in load.acked if t < cut_ts and st not in hidden_streams
                for a in evs if a["id"] not in by_id]
        if lost:
            problems.append(f"{len(lost)} events acknowledged before the crash are lost, "
                            f"first at position {min(a['position'] for a in lost)}")
        lost_del = [st for t, st in load.deletes if t < cut_ts and st not in hidden_streams]
        if lost_del:
            problems.append(f"deletes answered 204 before the crash did not survive: {lost_del}")
        missing = sorted(p for p in synced_set if p not in present and p not in hidden)
        if missing:
            problems.append(f"{len(missing)} events covered by a completed log sync are lost, "
                            f"first position {missing[0]}")
        for stream, ids in load.sent:
            n = sum(1 for i in ids if i in by_id)
            if n not in (0, len(ids)):
                problems.append(f"request to {stream} partly recovered: {n} of {len(ids)} "
                                f"events (positions "
                                f"{[by_id[i]['position'] for i in ids if i in by_id]})")
        problems += check_replays(conn, load, by_id, k)
        conn.request("GET", "/v1/databases/default/compaction")
        resp = conn.getresponse()
        gen = json.loads(resp.read())["compaction"]["generation"]
        files = log_files(state_dir)
        if files != [log_name(gen)]:
            problems.append(f"log files after recovery: {files}, generation in force {gen}")
        if gen < min_gen:
            problems.append(f"generation {gen} in force after recovery, but a compaction to "
                            f"generation {min_gen} had finished before the cut")
        body = json.dumps({"events": [{"type": "after", "data": {"k": k}}]})
        conn.request("POST", "/v1/databases/default/streams/after/events", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        ans = resp.read()
        if resp.status != 201 or json.loads(ans)["position"] != n_log + 1:
            problems.append(f"append after recovery: {resp.status} {ans[:200]!r}")
        conn.close()
    except Exception as ex:  # noqa: BLE001
        problems.append(f"{type(ex).__name__}: {ex}")
    try:
        rc = s.stop()
        if rc != 0:
            problems.append(f"server exit code {rc} after SIGTERM")
    except Exception as ex:  # noqa: BLE001
        problems.append(f"stop: {ex}")
        s.cleanup()
    files = log_files(state_dir)
    if len(files) != 1:
        problems.append(f"log files after recovery and stop: {files}")
    rc, out = harness.run_cli(["verify", "--data", state_dir])
    if rc != 0 or "hash chain intact" not in out:
        problems.append(f"annals verify exit {rc}: {out.strip()[:300]}")
    if not problems:
        # a second start on the recovered and appended-to data
        if not s.try_start(timeout=20):
            problems.append("server did not start again after recovery and one append: "
                            + " | ".join(s.log().splitlines()[-2:]))
        else:
            try:
                head = s.db_info()["head"]
                if head != n_log + 1:
                    problems.append(f"second start: head {head}, want {n_log + 1}")
            except Exception as ex:  # noqa: BLE001
                problems.append(f"second start: {ex}")
            s.cleanup()
    return problems + [context] if problems else []


def pick_cuts(model, n, rng):
    """Cut points: half uniform over the whole trace, a quarter around log writes and syncs
    (where acknowledged data is at stake), a quarter inside compactions (from the creation of
    a new generation to the directory fsync after the old one's unlink): 40 % of those while a
    directory entry change is pending (not yet covered by a directory fsync), 30 % right at an
    entry change, a directory fsync or a sync of data.mdb (the head naming the new
    generation), 30 % anywhere in a compaction; always the end of the trace."""
    total = len(model.recs)
    logk = [r.i + d for r in model.recs if r.file in model.log_fids
            and r.type in (T_WRITE, T_SYNC_BEGIN, T_SYNC_END, T_SKIP) for d in (0, 1)]
    inside, key = [], []
    mdb = {fid for fid in model.files if os.path.basename(model.rel[fid]) == "data.mdb"}
    for b, e in model.windows:
        inside.append((b, e))
        for r in model.recs[b:e]:
            if r.type in (T_CREATE, T_UNLINK, T_RENAME) or \
                    (r.type in (T_SYNC_BEGIN, T_SYNC_END) and
                     (r.file not in model.files or r.file in mdb)):
                key += [r.i, r.i + 1]
    cuts = [total]
    while len(cuts) < n:
        m = len(cuts) % 4
        if logk and m == 1:
            cuts.append(min(rng.choice(logk), total))
        elif inside and m == 3:
            x = rng.random()
            if model.ns_pending and x < 0.4:
                b, e = rng.choice(model.ns_pending)
                cuts.append(rng.randint(b, min(e, total)))
            elif key and x < 0.7:
                cuts.append(min(rng.choice(key), total))
            else:
                b, e = rng.choice(inside)
                cuts.append(rng.randint(b, min(e, total)))
        else:
            cuts.append(rng.randint(0, total))
    return cuts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "annals"))
    ap.add_argument("--preload", default=os.path.join(REPO, "build", "pl_trace.so"))
    ap.add_argument("--states", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of the recorded load")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--compactions", type=int, default=4,
                    help="delete-and-compact rounds during the recorded load (0: none)")
    ap.add_argument("--jobs", type=int, default=2, help="crash states checked in parallel")
    ap.add_argument("--broken-sync", action="store_true",
                    help="record with PL_SKIP_SYNC=1 (fdatasync of the log skipped)")
    ap.add_argument("--sector", type=int, default=512,
                    help="bytes a device writes atomically (torn writes split at these)")
    ap.add_argument("--keep", action="store_true", help="keep failing crash states")
    args = ap.parse_args()
    os.environ["ANNALS_BIN"] = os.path.abspath(args.bin)
    global SECTOR
    SECTOR = args.sector
    if not os.path.exists(args.preload):
        src = os.path.join(HERE, "trace.c")
        os.makedirs(os.path.dirname(args.preload), exist_ok=True)
        subprocess.check_call(["gcc", "-shared", "-fPIC", "-O2", "-o", args.preload, src,
                               "-ldl", "-pthread"])
    work = tempfile.mkdtemp(prefix="annals-pl-")
    rng = random.Random(args.seed)
    try:
        model, load = record(args, work)
        nsync = sum(len(model.files[fid]["syncs"]) for fid in model.log_fids)
        nskip = sum(1 for r in model.recs if r.type == T_SKIP)
        runs = sum(1 for _t, cs in load.compacted if cs["last"] and cs["last"]["rewrote"])
        gens = sorted({os.path.basename(model.rel[f]) for f in model.log_fids},
                      key=lambda n: int(LOG_NAME.match(n).group(1) or 0))
        print(f"recorded {len(model.recs)} trace records, {len(model.written)} events written,"
              f" {sum(len(e) for _t, _s, e in load.acked)} acknowledged in {len(load.acked)}"
              f" requests ({len(load.other)} other answers), {nsync} log syncs"
              + (f", {nskip} log syncs SKIPPED (--broken-sync)" if args.broken_sync else "")
              + f"; {len(load.deletes)} streams deleted, {len(load.compacted)} compactions "
              f"requested and finished, {runs} rewrote the log (log files {', '.join(gens)})",
              flush=True)
        for o in load.other[:5]:
            print(f"  other answer: {o}", flush=True)
        if not load.acked:
            raise SystemExit("no append was acknowledged during the recording")
        if args.compactions and runs == 0:
            raise SystemExit("no compaction rewrote the log during the recording")
        cuts = pick_cuts(model, args.states, rng)
        jobs = [(n, k, rng.random()) for n, k in enumerate(cuts)]
        passed = failed = 0
        cats = collections.Counter()
        lock = threading.Lock()

        def one(job):
            n, k, seed = job
            d = os.path.join(work, f"state{n:04d}")
            os.makedirs(d)
            desc = crash_state(model, k, random.Random(seed), d)
            if args.keep:   # a pristine copy: the server modifies d when it recovers
                subprocess.check_call(["cp", "-a", "--sparse=always", d, d + ".crash"])
            try:
                problems = check_state(model, load, k, d)
            except Exception as ex:  # noqa: BLE001
                problems = [f"harness error: {ex!r}"]
            return n, k, d, desc, problems

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
            for n, k, d, desc, problems in ex.map(one, jobs):
                with lock:
                    if problems:
                        failed += 1
                        for c in sorted({category(p) for p in problems[:-1]}):
                            cats[c] += 1
                        print(f"FAIL state {n} cut {k}/{len(model.recs)} [{desc}]: "
                              + "; ".join(problems), flush=True)
                        if args.keep:
                            print(f"     kept: {d}.crash (as the crash left it), {d} (after)")
                    else:
                        passed += 1
                        print(f"PASS state {n} cut {k}/{len(model.recs)} [{desc}]", flush=True)
                if not (problems and args.keep):
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.rmtree(d + ".crash", ignore_errors=True)
        for c, n in cats.most_common():
            print(f"failures: {n} states: {c}")
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
