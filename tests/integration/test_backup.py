"""Online backup and restore (docs/api.md, "Backup and restore"; docs/design/backup.md):
`annals backup` copies every database of a running server under a concurrent append load,
`annals restore` brings it back, `annals verify` passes on both copies, and every event
acknowledged before the snapshot's position is there with an intact chain; keys,
subscriptions and webhooks come back; a compaction during a backup waits and breaks nothing;
refusals, an unreachable server, a damaged and a cut-off stream all fail cleanly and leave
nothing that looks like a backup."""
import json
import os
import socket
import threading
import time
import uuid

from harness import Server, check, cli_keys, expect_error, run_cli, wait_until

PAD = "p" * 900  # ~1 KB of data per event


def backup(s_or_url, to, key=None, timeout=120):
    url = s_or_url if isinstance(s_or_url, str) else f"http://127.0.0.1:{s_or_url.port}"
    args = ["backup", "--to", to, "--server", url]
    if key:
        args += ["--key", key]
    return run_cli(args, timeout=timeout)


def backup_ok(s, to, key=None):
    rc, out = backup(s, to, key)
    check(rc == 0, f"annals backup exit {rc}: {out}")
    check(os.path.isfile(os.path.join(to, "BACKUP.json")), f"no BACKUP.json in {to}")
    check(not os.path.exists(to + ".partial"), "DIR.partial left behind")
    return rc, out


def manifest(to):
    with open(os.path.join(to, "BACKUP.json"), encoding="utf-8") as f:
        return json.load(f)


def positions(man):
    return {d["name"]: d["position"] for d in man["databases"]}


def restore_ok(frm, dest):
    rc, out = run_cli(["restore", "--from", frm, "--data", dest], timeout=120)
    check(rc == 0, f"annals restore exit {rc}: {out}")
    return out


def verify_ok(data_dir):
    rc, out = run_cli(["verify", "--data", data_dir], timeout=120)
    check(rc == 0 and "hash chain intact" in out, f"annals verify of {data_dir}: {rc} {out}")
    return out


def no_backup_left(to):
    check(not os.path.exists(to), f"{to} exists after a failed backup")
    check(not os.path.exists(to + ".partial"), f"{to}.partial left after a failed backup")


def fill(s, db, n, stream_prefix="bulk", per=100):
    """Appends n events of ~1 KB in batches (some megabytes of log, so a backup takes a
    while and fills the connection's buffers)."""
    conn = s.connect()
    try:
        for i in range(0, n, per):
            evs = [{"type": "Bulk", "data": {"i": j, "pad": PAD}} for j in range(i, min(n, i + per))]
            st, _, b = s.append(f"{stream_prefix}-{i // per % 7}", evs, db=db, conn=conn)
            check(st == 201, f"fill {db}: {st} {b}")
    finally:
        conn.close()


def make_db(s, name, headers=None):
    st, _, b = s.post("/v1/databases", {"name": name}, headers=headers)
    check(st == 201, f"create database {name}: {st} {b}")


class Load:
    """Appending threads: each appends single events with client ids to a few streams of one
    database and records every acknowledgement: (db, position, id, monotonic time of the ack)."""

    def __init__(self, s, dbs, per_db=2):
        self.s = s
        self.stop = threading.Event()
        self.acks = []
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(db, t), daemon=True)
                        for db in dbs for t in range(per_db)]

    def run(self, db, t):
        conn = self.s.connect()
        k = 0
        try:
            while not self.stop.is_set():
                eid = str(uuid.uuid4())
                ev = {"id": eid, "type": "Loaded", "data": {"t": t, "k": k}}
                st, _, b = self.s.append(f"load-{t}-{k % 5}", [ev], db=db, conn=conn)
                if st != 201:
                    with self.lock:
                        self.errors.append((st, b))
                    return
                with self.lock:
                    self.acks.append((db, b["events"][0]["position"], eid, time.monotonic()))
                k += 1
        finally:
            conn.close()

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(30)
        return False


def read_range(s, db, last, headers=None):
    """Events 1..last of db's log, by position, as the read API shows them."""
    out = {}
    frm = 1
    while frm <= last:
        st, _, b = s.get(f"/v1/databases/{db}/events?from={frm}&limit=1000", headers=headers)
        check(st == 200, f"read {db}: {st} {b}")
        for e in b["events"]:
            if e["position"] <= last:
                out[e["position"]] = e
        if b["next"] is None:
            break
        frm = b["next"]
    return out


def test_backup_under_concurrent_appends_restores_every_acknowledged_event():
    with Server() as s:
        make_db(s, "second")
        fill(s, "default", 3000)
        fill(s, "second", 2000)
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "backup")
        with Load(s, ["default", "second"]) as load:
            wait_until(lambda: len(load.acks) >= 50, 10)
            began = time.monotonic()
            rc, out = backup(s, to)
            time.sleep(0.3)  # the load goes on past the snapshot
        check(not load.errors, f"appends failed during the backup: {load.errors[:3]}")
        check(rc == 0, f"annals backup exit {rc}: {out}")
        for db in ("default", "second"):
            check(f"database {db}: started" in out and f"database {db}: done, position" in out,
                  f"per-database progress for {db} missing: {out}")
        check("received" in out, f"no byte counter: {out}")
        man = manifest(to)
        p = positions(man)
        check(set(p) == {"default", "second"}, f"databases in the manifest: {p}")
        check(man["format"] == 1 and man["totals"]["files"] >= 4, f"manifest: {man}")
        after = {db: s.head(db) for db in p}
        for db in p:
            check(p[db] < after[db], f"{db}: the load did not go on past the snapshot "
                                     f"({p[db]} vs {after[db]}); the test proves nothing")
        original = {db: read_range(s, db, p[db]) for db in p}
        verify_ok(to)  # the backup directory is a data directory itself
        dest = os.path.join(tmp, "restored")
        out = restore_ok(to, dest)
        for db in p:
            check(f"{db}: restored, {p[db]} events, position {p[db]}, hash chain intact" in out,
                  f"restore report for {db}: {out}")
        verify_ok(dest)
        with Server(data_dir=dest) as r:
            for db in p:
                info = r.db_info(db)
                check(info["head"] == p[db], f"{db}: restored head {info['head']} != {p[db]}")
                check(info["headHash"] == original[db][p[db]]["hash"],
                      f"{db}: headHash differs from the original's event {p[db]}")
                check(man["databases"][sorted(p).index(db)]["headHash"] == info["headHash"],
                      f"{db}: manifest headHash")
                got = read_range(r, db, p[db])
                check(sorted(got) == list(range(1, p[db] + 1)), f"{db}: positions not 1..P")
                for pos in range(1, p[db] + 1):
                    check(got[pos] == original[db][pos],
                          f"{db}@{pos}: {got[pos]} != {original[db][pos]}")
            acked_before = 0
            for db, pos, eid, t in load.acks:
                if t < began:
                    acked_before += 1
                    check(pos <= p[db], f"{db}: event {pos} acknowledged before the backup "
                                        f"began is past its position {p[db]}")
                if pos <= p[db]:
                    check(got_id(r, db, pos) == eid, f"{db}@{pos}: acknowledged id {eid} lost")
            check(acked_before >= 50, f"only {acked_before} acks before the backup")
            # the restored server takes appends after P
            st, _, b = r.append("after-restore", [{"type": "T", "data": 1}])
            check(st == 201 and b["position"] == p["default"] + 1, f"append: {st} {b}")
            r.stop()
        verify_ok(dest)


_ids = {}


def got_id(s, db, pos):
    key = (s.port, db)
    if key not in _ids:
        _ids[key] = {e["position"]: e["id"] for e in read_range(s, db, s.head(db)).values()}
    return _ids[key].get(pos)


def test_keys_subscriptions_and_webhooks_come_back():
    s = Server(start=False, extra=["--webhook-allow", "127.0.0.1"])
    try:
        admin = cli_keys(s.data, "admin")["admin"]
        s.start()
        auth = {"Authorization": f"Bearer {admin}"}
        for i in range(10):
            st, _, b = s.post("/v1/databases/default/streams/orders-1/events",
                              {"events": [{"type": "OrderPlaced", "data": {"i": i}}]}, headers=auth)
            check(st == 201, f"append {st} {b}")
        subs = "/v1/databases/default/subscriptions"
        st, _, b = s.post(subs, {"name": "g"}, headers=auth)
        check(st == 201, f"subscription: {st} {b}")
        st, _, b = s.post(f"{subs}/g/pull", {"consumer": "c", "max": 5}, headers=auth)
        pos = [e["event"]["position"] for e in b["events"]]
        st, _, b = s.post(f"{subs}/g/ack", {"positions": pos}, headers=auth)
        check(st == 200, f"ack {st} {b}")
        gfile = os.path.join(s.data, "dbs", "default", "groups.json")
        check(wait_until(lambda: '"checkpoint":5' in open(gfile).read(), 5),
              f"checkpoint not saved: {open(gfile).read()}")
        hooks = "/v1/databases/default/webhooks"
        st, _, b = s.post(hooks, {"name": "h", "url": "http://127.0.0.1:9/hook"}, headers=auth)
        check(st == 201, f"webhook: {st} {b}")
        make_db(s, "empty", headers=auth)  # a database without events: an empty log
        to = os.path.join(os.path.dirname(s.data), "backup")
        rc, out = backup(s, to)  # no key: refused
        check(rc == 1 and "401" in out and "unauthorized" in out, f"keyless backup: {rc} {out}")
        no_backup_left(to)
        env_key = dict(os.environ, ANNALS_KEY=admin)
        rc, out = run_cli(["backup", "--to", to, "--server", f"http://127.0.0.1:{s.port}"],
                          env=env_key)
        check(rc == 0, f"backup with ANNALS_KEY: {rc} {out}")
        p = positions(manifest(to))["default"]
        check(any(f["path"] == "keys.json" for f in manifest(to)["files"]), "keys.json listed")
        dest = os.path.join(os.path.dirname(s.data), "restored")
        restore_ok(to, dest)
        with Server(data_dir=dest, extra=["--webhook-allow", "127.0.0.1"]) as r:
            check(r.get("/v1/databases/default")[0] == 401, "the restored server needs a key")
            st, _, b = r.get("/v1/keys", headers=auth)
            check(st == 200 and len(b["keys"]) == 1, f"the admin key works: {st} {b}")
            st, _, g = r.get(f"{subs}/g", headers=auth)
            check(st == 200 and 5 <= g["checkpoint"] <= p, f"subscription: {st} {g} (P {p})")
            st, _, h = r.get(f"{hooks}/h", headers=auth)
            check(st == 200 and h["url"] == "http://127.0.0.1:9/hook" and h["checkpoint"] <= p,
                  f"webhook: {st} {h}")
            st, _, e = r.get("/v1/databases/empty", headers=auth)
            check(st == 200 and e["head"] == 0, f"the empty database: {st} {e}")
            st, _, b = r.post("/v1/databases/empty/streams/x/events",
                              {"events": [{"type": "T", "data": 1}]}, headers=auth)
            check(st == 201 and b["position"] == 1, f"append to the empty database: {st} {b}")
        mode = os.stat(os.path.join(dest, "dbs", "default", "webhooks.json")).st_mode & 0o777
        check(mode == 0o600, f"webhooks.json (secrets) restored with mode {oct(mode)}")
    finally:
        s.cleanup()


def test_refusals_and_an_unreachable_server():
    s = Server(start=False)
    try:
        keys = cli_keys(s.data, "write", "admin")
        rc, out = run_cli(["keys", "create", "--scope", "admin", "--database", "default",
                           "--data", s.data])
        one_db = next(w for w in out.split() if w.startswith("ak_"))
        s.start()
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "b")
        for key, why in ((keys["write"], "a write key"), (one_db, "an admin key for one database")):
            rc, out = backup(s, to, key)
            check(rc == 1 and "HTTP 403" in out and "forbidden" in out, f"{why}: {rc} {out}")
            no_backup_left(to)
            expect_error(s.get("/v1/backup", headers={"Authorization": f"Bearer {key}"}), 403,
                         "forbidden")
        port = s.port
        s.stop()
        rc, out = backup(f"http://127.0.0.1:{port}", to, keys["admin"])
        check(rc == 1 and "cannot reach the server" in out, f"stopped server: {rc} {out}")
        no_backup_left(to)
        os.makedirs(to)
        open(os.path.join(to, "x"), "w").close()
        rc, out = backup(f"http://127.0.0.1:{port}", to)
        check(rc == 2 and "not an empty directory" in out, f"non-empty --to: {rc} {out}")
        rc, out = run_cli(["backup"])
        check(rc == 2 and "--to" in out, f"no --to: {rc} {out}")
        rc, out = run_cli(["backup", "--help"])
        check(rc == 0 and "--server" in out and "ANNALS_KEY" in out, f"backup --help: {out}")
        rc, out = run_cli(["restore", "--help"])
        check(rc == 0 and "--from" in out and "--data" in out, f"restore --help: {out}")
        rc, out = run_cli(["restore", "--from", tmp, "--data", os.path.join(tmp, "r")])
        check(rc == 2 and "not a complete backup" in out, f"restore of a non-backup: {rc} {out}")
    finally:
        s.cleanup()


def test_restore_refuses_a_used_or_locked_data_directory():
    with Server() as s:
        s.append("a", [{"type": "T", "data": 1}])
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "b")
        backup_ok(s, to)
        rc, out = run_cli(["restore", "--from", to, "--data", s.data])
        check(rc == 2 and "in use" in out, f"restore into a running server's dir: {rc} {out}")
        dest = os.path.join(tmp, "r")
        restore_ok(to, dest)
        rc, out = run_cli(["restore", "--from", to, "--data", dest])
        check(rc == 2 and "already holds" in out, f"restore into a non-empty dir: {rc} {out}")
        # a damaged backup file is found before anything is moved into place
        log = os.path.join(to, "dbs", "default", "events.log")
        with open(log, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 1]))
        dest2 = os.path.join(tmp, "r2")
        rc, out = run_cli(["restore", "--from", to, "--data", dest2])
        check(rc == 1 and "damaged" in out, f"restore of a damaged backup: {rc} {out}")
        check(not os.path.exists(os.path.join(dest2, "dbs", "default")) and
              not [n for n in os.listdir(os.path.join(dest2, "dbs")) if n.startswith(".")],
              f"a failed restore left files: {os.listdir(os.path.join(dest2, 'dbs'))}")


class Proxy:
    """A TCP relay in front of the server for one connection. Of the answer's body it forwards
    at most cut_after bytes (then closes), flips the byte at flip_at, or, after hold_after
    bytes, stops reading from the server (TCP pushes back) until release()."""

    def __init__(self, port, cut_after=None, flip_at=None, hold_after=None):
        self.port, self.cut_after, self.flip_at, self.hold_after = port, cut_after, flip_at, hold_after
        self.held = threading.Event()
        self.go = threading.Event()
        self.aborted = False
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.url = f"http://127.0.0.1:{self.ls.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def release(self):
        self.go.set()

    def abort(self):
        """Drops both connections while holding: the client went away."""
        self.aborted = True
        self.go.set()

    def serve(self):
        c, _ = self.ls.accept()
        up = socket.create_connection(("127.0.0.1", self.port))
        up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        threading.Thread(target=self.pipe_up, args=(c, up), daemon=True).start()
        head, body = b"", 0
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                if b"\r\n\r\n" not in head:
                    head += data
                    if b"\r\n\r\n" not in head:
                        continue
                    h, _, data = head.partition(b"\r\n\r\n")
                    c.sendall(h + b"\r\n\r\n")
                data = bytearray(data)
                if self.flip_at is not None and body <= self.flip_at < body + len(data):
                    data[self.flip_at - body] ^= 0xFF
                if self.cut_after is not None and body + len(data) >= self.cut_after:
                    c.sendall(data[:self.cut_after - body])
                    break
                c.sendall(data)
                body += len(data)
                if self.hold_after is not None and body >= self.hold_after and not self.held.is_set():
                    self.held.set()
                    self.go.wait(60)
                    if self.aborted:
                        break
        except OSError:
            pass
        finally:
            for sk in (c, up, self.ls):  # shutdown: pipe_up may be blocked in recv on c
                try:
                    if sk is not self.ls:
                        sk.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sk.close()

    @staticmethod
    def pipe_up(c, up):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                up.sendall(data)
        except OSError:
            pass


def raw_backup_len(s):
    st, _, body = s.get("/v1/backup")
    check(st == 200 and isinstance(body, bytes), f"GET /v1/backup: {st}")
    return len(body)


def test_a_damaged_or_cut_off_stream_leaves_nothing():
    with Server() as s:
        fill(s, "default", 300)
        wait_until(lambda: s.db_info()["indexer"]["indexed"] == s.head(), 10)
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "b")
        total = raw_backup_len(s)
        cases = [(Proxy(s.port, flip_at=5000), "checksum mismatch"),
                 (Proxy(s.port, cut_after=total // 2), "cut off"),
                 (Proxy(s.port, cut_after=total - 10), "cut off")]  # inside the END frame
        for proxy, why in cases:
            rc, out = backup(proxy.url, to)
            check(rc == 1 and why in out, f"expected '{why}': {rc} {out}")
            no_backup_left(to)
        backup_ok(s, to)  # and a whole one still works


def test_killing_the_server_mid_backup_fails_the_backup():
    with Server() as s:
        fill(s, "default", 24000)  # ~24 MB: more than the socket buffers hold
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "b")
        proxy = Proxy(s.port, hold_after=1 << 20)
        result = {}
        th = threading.Thread(target=lambda: result.update(r=backup(proxy.url, to)), daemon=True)
        th.start()
        check(proxy.held.wait(30), "the backup did not start")
        s.kill9()
        proxy.release()
        th.join(60)
        rc, out = result["r"]
        check(rc == 1 and "cut off" in out, f"backup across a killed server: {rc} {out}")
        no_backup_left(to)


def test_a_compaction_during_a_backup_waits_and_breaks_nothing():
    with Server() as s:
        fill(s, "default", 20000)
        s.append("doomed", [{"type": "T", "data": {"pad": PAD}} for _ in range(500)])
        st, _, _ = s.request("DELETE", "/v1/databases/default/streams/doomed")
        check(st in (200, 204), f"delete stream: {st}")
        wait_until(lambda: s.db_info()["indexer"]["indexed"] == s.head(), 10)
        tmp = os.path.dirname(s.data)
        to = os.path.join(tmp, "b")
        proxy = Proxy(s.port, hold_after=1 << 20)
        result = {}
        th = threading.Thread(target=lambda: result.update(r=backup(proxy.url, to)), daemon=True)
        th.start()
        check(proxy.held.wait(30), "the backup did not start")
        st, _, b = s.post("/v1/databases/default/compaction", {})
        check(st == 202, f"compaction request: {st} {b}")
        check(wait_until(lambda: "compaction waits for a backup" in s.log(), 10),
              "the compaction did not wait for the backup")
        for i in range(20):  # appends go on meanwhile
            st, _, b = s.append("during", [{"type": "T", "data": i}])
            check(st == 201, f"append during the backup: {st} {b}")
        st, _, c = s.get("/v1/databases/default/compaction")
        check(c["compaction"]["generation"] == 0, f"switched under the backup: {c}")
        proxy.release()
        th.join(120)
        rc, out = result["r"]
        check(rc == 0, f"backup: {rc} {out}")
        check(wait_until(lambda: s.get("/v1/databases/default/compaction")[2]["compaction"]
                         ["generation"] == 1, 30), "the compaction did not run after the backup")
        db = manifest(to)["databases"][0]
        check(db["logGeneration"] == 0 and
              any(f["path"] == "dbs/default/events.log" for f in db["files"]), f"{db}")
        # a backup right after a compaction request: either generation, always whole
        st, _, _ = s.post("/v1/databases/default/compaction", {})
        to2 = os.path.join(tmp, "b2")
        backup_ok(s, to2)
        for n, frm in enumerate((to, to2)):
            dest = os.path.join(tmp, f"r{n}")
            restore_ok(frm, dest)
            verify_ok(dest)
            with Server(data_dir=dest) as r:
                check(r.head() == positions(manifest(frm))["default"], "restored head")
                st, _, b = r.get("/v1/databases/default/streams/doomed/events")
                check(st == 404, f"the deleted stream stays deleted: {st}")
        s.stop()
        verify_ok(s.data)


def held_backup(s, to, fill_events=24000):
    """Starts `annals backup` through a proxy that stops reading after 1 MiB of the answer (the
    server then waits with the database pinned). Returns (proxy, thread, result dict)."""
    fill(s, "default", fill_events)
    proxy = Proxy(s.port, hold_after=1 << 20)
    result = {}
    th = threading.Thread(target=lambda: result.update(r=backup(proxy.url, to)), daemon=True)
    th.start()
    check(proxy.held.wait(30), "the backup did not start")
    return proxy, th, result


def test_a_client_that_goes_away_releases_the_database():
    with Server() as s:
        s.append("doomed", [{"type": "T", "data": {"pad": PAD}} for _ in range(200)])
        s.request("DELETE", "/v1/databases/default/streams/doomed")
        to = os.path.join(os.path.dirname(s.data), "b")
        proxy, th, result = held_backup(s, to)
        proxy.abort()
        th.join(60)
        rc, out = result["r"]
        check(rc == 1 and "cut off" in out, f"client side: {rc} {out}")
        no_backup_left(to)
        check(wait_until(lambda: "backup failed" in s.log(), 10),
              f"the server did not stop the backup: {s.log()[-1500:]}")
        st, _, _ = s.post("/v1/databases/default/compaction", {})
        check(wait_until(lambda: s.get("/v1/databases/default/compaction")[2]["compaction"]
                         ["generation"] == 1, 30), "the pin was not released: no compaction")
        backup_ok(s, to)  # the next one works


def test_a_server_stopping_mid_backup_stops_promptly_and_fails_it():
    with Server() as s:
        to = os.path.join(os.path.dirname(s.data), "b")
        proxy, th, result = held_backup(s, to)
        t0 = time.monotonic()
        check(s.stop() == 0, "the server's exit code")
        check(time.monotonic() - t0 < 10, f"stopping took {time.monotonic() - t0:.1f} s")
        proxy.release()
        th.join(60)
        rc, out = result["r"]
        check(rc == 1 and ("cut off" in out or "shutting" in out), f"client side: {rc} {out}")
        no_backup_left(to)
        verify_ok(s.data)
