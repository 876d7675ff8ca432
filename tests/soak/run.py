#!/usr/bin/env python3
"""Soak: mixed load (appends, some with idempotency keys, stream and log reads, catch-up readers
of the whole log; SSE and WebSocket subscribers that connect, read and leave over and over; a
consumer group pulling and acknowledging; a webhook delivering to a local receiver; streams
given maxCount or deleted, compacted every 10 s when worth it) against
the real server for --minutes, printing the server's RSS (and its anonymous part), open file
descriptors and threads every --every seconds. After the warm-up (the first fifth of the run)
RSS may grow at most 5 % and descriptors must not drift. Prints the figures and, last,
`N passed, M failed` (one check each: RSS growth, descriptor drift, no failed request)."""
import argparse
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Server  # noqa: E402
from test_live import SSE  # noqa: E402
from test_webhooks import Receiver  # noqa: E402
from test_websocket import WS  # noqa: E402


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    rss = int(out["VmRSS"].split()[0]) / 1024
    anon = int(out.get("RssAnon", "0 kB").split()[0]) / 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, anon, fds, int(out["Threads"])


class Mixed:
    """Worker threads doing a random mix of requests until stopped."""

    def __init__(self, s, threads):
        self.s, self.stop, self.fail, self.ok = s, threading.Event(), [], 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.work, args=(i,), daemon=True)
                        for i in range(threads)]

    def work(self, i):
        rng = random.Random(i)
        conn = self.s.new_conn() if hasattr(self.s, "new_conn") else None
        while not self.stop.is_set():
            r = rng.random()
            stream = f"soak-{rng.randrange(500)}"
            try:
                if r < 0.06:  # keyed: the same key always carries the same request
                    k = rng.randrange(2000)
                    st, _, _ = self.s.request(
                        "POST", f"/v1/databases/default/streams/keyed-{k % 50}/events",
                        {"events": [{"type": "soak.t", "data": {"k": k}}]},
                        headers={"Idempotency-Key": f"soak-{i}-{k}"})
                    good = st == 201
                elif r < 0.07:  # lifecycle churn: hidden events for the compactor
                    st, _, _ = self.s.request(
                        "PUT", f"/v1/databases/default/streams/{stream}/metadata",
                        {"maxCount": 20})
                    good = st == 200
                elif r < 0.075:
                    st, _, _ = self.s.request("DELETE", f"/v1/databases/default/streams/{stream}")
                    good = st in (204, 404)
                elif r < 0.6:
                    n = rng.randrange(1, 6)
                    st, _, _ = self.s.append(stream, [{"type": "soak.t", "data": {"i": i,
                                             "pad": "x" * rng.randrange(10, 400)}}] * n)
                    good = st == 201
                elif r < 0.85:
                    st, _, _ = self.s.get(f"/v1/databases/default/streams/{stream}/events"
                                          f"?limit={rng.randrange(1, 200)}")
                    good = st in (200, 404)
                else:
                    st, _, _ = self.s.get(f"/v1/databases/default/events?from="
                                          f"{rng.randrange(1, 100000)}&limit=500")
                    good = st == 200
            except Exception as e:  # noqa: BLE001
                st, good = repr(e), False
            with self.lock:
                if good:
                    self.ok += 1
                elif len(self.fail) < 20:
                    self.fail.append(st)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


class Live:
    """Live delivery under churn: SSE and WebSocket subscribers that come and go, a consumer
    group consumer, and a webhook receiver. Counts cycles and failures."""

    def __init__(self, s, receiver):
        self.s, self.rcv = s, receiver
        self.stop = threading.Event()
        self.counts = {"sse": 0, "ws": 0, "acked": 0}
        self.fail = []
        self.reasons = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self.sse, self.ws, self.consume)]

    def _run(self, name, fn):
        # (client threads share one interpreter lock: generous timeouts and a short pause per
        # cycle keep the appending threads from being starved into false alarms)
        while not self.stop.is_set():
            time.sleep(0.02)
            try:
                n = fn()
                with self.lock:
                    self.counts[name] += n
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    if len(self.fail) < 20:
                        self.fail.append(f"{name}: {e!r}")
                time.sleep(0.5)

    def sse(self):
        def once():
            c = SSE(self.s.port, "/v1/databases/default/events/live?from=latest&types=soak.t",
                    timeout=60)
            try:
                got = 0
                while got < 5:
                    m = c.message()
                    if m["event"] == "error":
                        return self.dropped(m["data"])
                    got += m["data"] is not None and m["event"] is None
            finally:
                c.close()
            return 1
        self._run("sse", once)

    def ws(self):
        def once():
            c = WS(self.s.port, "/v1/databases/default/events/live", timeout=60)
            try:
                c.send({"type": "subscribe", "from": "latest", "filter": {"types": ["soak.t"]}})
                got = 0
                while got < 3:
                    m = c.message()
                    if m["type"] == "error":
                        return self.dropped(json.dumps(m))
                    got += m["type"] == "event"
                c.send({"type": "unsubscribe"})
                c.until("unsubscribed")
            finally:
                c.close()
            return 1
        self._run("ws", once)

    def dropped(self, why):
        """The server ended a subscription with a reason (a client thread starved by the
        interpreter lock fell too far behind): its policy at work, counted, not a failure."""
        with self.lock:
            self.reasons.append(why[:120])
        return 0

    def consume(self):
        def once():
            st, _, b = self.s.post("/v1/databases/default/subscriptions/soak-g/pull",
                                   {"consumer": "c1", "max": 50})
            if st != 200:
                raise AssertionError(f"pull {st} {b}")
            pos = [e["event"]["position"] for e in b["events"]]
            if pos:
                st, _, b = self.s.post("/v1/databases/default/subscriptions/soak-g/ack",
                                       {"positions": pos})
                if st != 200:
                    raise AssertionError(f"ack {st} {b}")
            else:
                time.sleep(0.1)
            return len(pos)
        self._run("acked", once)

    def start(self):
        st, _, b = self.s.post("/v1/databases/default/subscriptions",
                               {"name": "soak-g", "from": "latest", "ackTimeoutSeconds": 30})
        assert st == 201, (st, b)
        st, _, b = self.s.post("/v1/databases/default/webhooks",
                               {"name": "soak-h", "url": self.rcv.url(), "from": "latest",
                                "filter": {"types": ["soak.t"]}})
        assert st == 201, (st, b)
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "annals"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    os.environ["ANNALS_BIN"] = os.path.abspath(args.bin)
    samples = []
    receiver = Receiver()
    with Server(extra=["--webhook-allow", "127.0.0.1", "--compact-interval", "10"]) as s:
        pid = s.proc.pid
        idle_fds = proc_status(pid)[2]
        load = Mixed(s, args.threads)
        load.start()
        live = Live(s, receiver)
        live.start()
        t0 = time.time()
        end = t0 + args.minutes * 60
        print(f"{'min':>6} {'rss MiB':>8} {'anon MiB':>9} {'fds':>5} {'threads':>7} {'requests':>9}")
        while time.time() < end:
            time.sleep(min(args.every, max(0.1, end - time.time())))
            rss, anon, fds, thr = proc_status(pid)
            samples.append((time.time() - t0, rss, anon, fds, thr))
            print(f"{(time.time() - t0) / 60:6.1f} {rss:8.1f} {anon:9.1f} {fds:5d} {thr:7d} "
                  f"{load.ok:9d}", flush=True)
        live.finish()  # first: its subscribers wait for events the load appends
        load.finish()
        time.sleep(2)  # clients gone: the server's descriptors are back to its own
        end_fds = proc_status(pid)[2]
        info = s.db_info()
        s.post("/v1/databases/default/compaction", {})  # one more, at rest
        time.sleep(1)
        comp = s.get("/v1/databases/default/compaction")[2]["compaction"]
        hook = s.get("/v1/databases/default/webhooks/soak-h")[2]
    hooks_got = len(receiver.got)
    receiver.close()
    # Compare the first and last thirds after the warm-up by their medians: per-request
    # buffers and connections come and go, a leak or a descriptor drift shows as a trend.
    warm = [x for x in samples if x[0] >= args.minutes * 60 / 5] or samples
    third = max(1, len(warm) // 3)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    a0, a1 = med([x[2] for x in warm[:third]]), med([x[2] for x in warm[-third:]])
    f0, f1 = med([x[3] for x in warm[:third]]), med([x[3] for x in warm[-third:]])
    growth = (a1 - a0) / a0 * 100 if a0 else 0.0
    print(f"events stored: {info['events']}, requests answered: {load.ok}, failures: "
          f"{len(load.fail)} {load.fail[:5]}")
    print(f"server's own memory (RssAnon, medians) after warm-up: {a0:.1f} -> {a1:.1f} MiB "
          f"({growth:+.1f} %); descriptors {f0} -> {f1} under load, {idle_fds} idle before and "
          f"{end_fds} after; RSS with the mapped files "
          f"{warm[0][1]:.0f} -> {warm[-1][1]:.0f} MiB (page cache of data written)")
    print(f"live: {live.counts['sse']} SSE and {live.counts['ws']} WebSocket subscriptions "
          f"opened, read and closed; {live.counts['acked']} events pulled and acknowledged; "
          f"{hooks_got} webhook deliveries ({hook.get('delivered')} events, "
          f"{hook.get('parked')} parked); ended by the server with a reason: "
          f"{len(live.reasons)} {live.reasons[:3]}; failures: {live.fail[:5]}")
    print(f"compaction: {comp['runs']} runs, {comp['checks']} checks, "
          f"{comp['reclaimedBytes']} bytes reclaimed, {comp['redactedEvents']} events redacted; "
          f"last {comp['last']}")
    checks = [("own memory growth after warm-up <= 5 % (or 1 MiB)", growth <= 5.0 or a1 - a0 <= 1.0),
              ("no descriptor drift (<= 2 under load; idle again at the end)",
               f1 - f0 <= 2 or end_fds <= idle_fds + 1),
              ("no failed request", not load.fail),
              ("live delivery kept going without failures",
               not live.fail and all(live.counts.values()) and hooks_got > 0),
              ("compaction under load: checked, never failed",
               comp["checks"] > 0 and comp["last"] and comp["last"]["outcome"] != "failed")]
    for name, good in checks:
        print(f"{'PASS' if good else 'FAIL'} soak: {name}")
    passed = sum(1 for _, g in checks if g)
    print(f"{passed} passed, {len(checks) - passed} failed")
    sys.exit(0 if passed == len(checks) else 1)


if __name__ == "__main__":
    main()
