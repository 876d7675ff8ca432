"""The command line: help texts, environment variables, bad flags."""
import http.client
import json
import os
import socket
import tempfile

from harness import Server, Skip, check, run_cli

FLAGS = ["--data", "--listen", "--threads", "--max-body-bytes", "--max-batch-events",
         "--max-event-bytes", "--max-header-bytes", "--max-connections", "--timeout",
         "--max-db-bytes", "--log-level"]


def test_help():
    rc, out = run_cli(["--help"])
    check(rc == 0, f"annals --help exit {rc}")
    for cmd in ["serve", "verify"]:
        check(cmd in out, f"annals --help does not mention {cmd}: {out}")
    rc, out = run_cli(["serve", "--help"])
    check(rc == 0, f"annals serve --help exit {rc}")
    missing = [f for f in FLAGS if f not in out]
    check(not missing, f"annals serve --help does not mention {missing}:\n{out}")
    rc, out = run_cli(["help"])
    check(rc == 0, f"annals help exit {rc}")
    rc, out = run_cli(["version"])
    check(rc == 0 and "0.1.0" in out, f"annals version: {rc} {out}")


def test_env_listen():
    env = dict(os.environ, ANNALS_LISTEN="127.0.0.1:0")
    with Server(env=env, listen=None) as s:  # no --listen flag: the variable alone
        check(s.port and s.port != 7070, f"port {s.port}")
        st, _, body = s.get("/health")
        check(st == 200 and body["status"] == "ok", f"health via ANNALS_LISTEN: {st} {body!r}")
        check(s.stop() == 0, "exit code after SIGTERM")


def test_env_limits_and_flags_win():
    env = dict(os.environ, ANNALS_MAX_BATCH_EVENTS="2", ANNALS_DATA="/nonexistent/ignored")
    with Server(env=env) as s:  # --data given as a flag: the flag wins
        st, _, body = s.append("e", [{"type": "t", "data": i} for i in range(3)])
        check(st == 413 and body["error"]["code"] == "too_many_events",
              f"ANNALS_MAX_BATCH_EVENTS=2 not applied: {st} {body!r}")
        check(os.path.isdir(os.path.join(s.data, "dbs")), "--data flag did not win over ANNALS_DATA")
    with Server(env=env, extra=["--max-batch-events", "3"]) as s:
        st, _, body = s.append("e", [{"type": "t", "data": i} for i in range(3)])
        check(st == 201, f"--max-batch-events 3 must win over the variable: {st} {body!r}")


def test_bad_flags():
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        for args in (["serve", "--data", data, "--no-such-flag"],
                     ["serve", "--data", data, "--listen"],
                     ["serve", "--data", data, "--threads", "0"],
                     ["serve", "--data", data, "--max-body-bytes", "abc"],
                     ["serve", "--data", data, "--max-header-bytes", "-5"],
                     ["serve", "--data", data, "--log-level", "loud"],
                     ["serve", "--data", data, "--listen", "nohost"],
                     ["verify", "--bogus"],
                     ["frobnicate"]):
            rc, out = run_cli(args, timeout=20)
            check(rc != 0, f"annals {' '.join(args[2:] if args[0] == 'serve' else args)} "
                           f"exited 0: {out}")
            check(out.strip(), f"no message for {args}")
        rc, out = run_cli(["serve", "--data", data, "--listen=127.0.0.1:0", "--bogus=1"])
        check(rc != 0, f"--bogus=1 exited 0: {out}")
        check("--bogus" in out, f"the message does not name the flag: {out}")


def test_verify_empty_and_missing():
    with tempfile.TemporaryDirectory() as d:
        rc, out = run_cli(["verify", "--data", os.path.join(d, "nothing-here")])
        check(rc != 0, f"verify of a missing directory exited 0: {out}")
    with Server() as s:
        check(s.stop() == 0, "stop")
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0 and "default" in out and "hash chain intact" in out,
              f"verify of a fresh data dir: {rc} {out}")


def test_verify_help_and_exit_codes():
    rc, out = run_cli(["verify", "--help"])
    check(rc == 0 and "usage: annals verify" in out and "exit status" in out, f"{rc} {out}")
    check("--listen" not in out, f"verify --help lists serve's flags: {out}")
    rc, out = run_cli(["verify", "--listen", "127.0.0.1:1"])
    check(rc == 2 and "--listen" in out, f"a serve flag given to verify: {rc} {out}")
    with tempfile.TemporaryDirectory() as d:
        rc, out = run_cli(["verify", "--data", os.path.join(d, "none")])
        check(rc == 2, f"no databases: exit {rc} {out}")
    with Server() as s:
        s.append("s", [{"type": "t", "data": f"payload-{i}"} for i in range(3)])
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 2 and "running" in out, f"a running server's directory: {rc} {out}")
        check(s.stop() == 0, "stop")
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0, f"intact: {rc} {out}")
        log = os.path.join(s.data, "dbs", "default", "events.log")
        with open(log, "r+b") as f:
            data = f.read(4096)
            i = data.index(b"payload-1")
            f.seek(i + 1)
            f.write(b"X")
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 1 and "DAMAGED" in out, f"damaged: {rc} {out}")


def test_unknown_flags_are_named():
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        rc, out = run_cli(["serve", "--data", data, "--lisen", "127.0.0.1:0"])
        check(rc == 2 and "unknown flag --lisen" in out, f"{rc} {out}")
        rc, out = run_cli(["serve", "--data", data, "--no-such=1"])
        check(rc == 2 and "--no-such" in out, f"{rc} {out}")
        rc, out = run_cli(["serve", "--data", data, "--threads"])
        check(rc == 2 and "--threads needs a value" in out, f"{rc} {out}")
        check(not os.path.exists(data), "a refused start created the data directory")


def test_keys_create_refuses_typos_and_list_says_none():
    with Server() as s:
        check(s.stop() == 0, "stop")
        rc, out = run_cli(["keys", "list", "--data", s.data])
        check(rc == 0 and "no API keys" in out, f"empty list: {rc} {out}")
        rc, out = run_cli(["keys", "list", "--json", "--data", s.data])
        check(rc == 0 and json.loads(out) == {"keys": []}, f"empty --json: {rc} {out}")
        rc, out = run_cli(["keys", "create", "--scope", "read", "--database", "defualt",
                           "--data", s.data])
        check(rc == 2 and "no database defualt" in out, f"unknown database: {rc} {out}")
        rc, out = run_cli(["keys", "create", "--scope", "read", "--not-after",
                           "2001-01-01T00:00:00Z", "--data", s.data])
        check(rc == 2 and "past" in out, f"not-after in the past: {rc} {out}")
        rc, out = run_cli(["keys", "create", "--scope", "read", "--rate-limit", "fast",
                           "--data", s.data])
        check(rc == 2 and "--rate-limit" in out, f"bad rate: {rc} {out}")
        rc, out = run_cli(["keys", "list", "--json", "--data", s.data])
        check(json.loads(out) == {"keys": []}, f"a refused create made a key: {out}")
        rc, out = run_cli(["keys", "create", "--scope", "read", "--database", "default",
                           "--name", "reader", "--data", s.data])
        check(rc == 0, f"create: {rc} {out}")
        rc, out = run_cli(["keys", "list", "--json", "--data", s.data])
        keys = json.loads(out)["keys"]
        check(len(keys) == 1 and keys[0]["database"] == "default" and keys[0]["name"] == "reader"
              and keys[0]["scope"] == "read" and "ak_" not in out, f"--json: {out}")


def test_refused_starts_create_nothing():
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        rc, out = run_cli(["serve", "--data", data, "--listen", "0.0.0.0:0"], timeout=20)
        check(rc != 0 and "without API keys" in out, f"open address without keys: {rc} {out}")
        check(not os.path.exists(data), f"refused start left {os.listdir(d)}")
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            rc, out = run_cli(["serve", "--data", data, "--listen", f"127.0.0.1:{port}"],
                              timeout=20)
            check(rc != 0 and "cannot listen" in out, f"port in use: {rc} {out}")
            check(not os.path.exists(data), f"refused start left {os.listdir(d)}")


def test_ipv6_listen_address():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        raise Skip("no IPv6 loopback here")
    with Server(listen="[::1]:0") as s:
        c = http.client.HTTPConnection("::1", s.port, timeout=10)
        c.request("GET", "/health")
        r = c.getresponse()
        check(r.status == 200 and json.loads(r.read())["status"] == "ok", f"{r.status}")
        check(f"listening on [::1]:{s.port}" in s.log(), s.log())


def test_a_deleted_default_database_stays_deleted():
    with Server() as s:
        st, _, _ = s.request("DELETE", "/v1/databases/default")
        check(st == 204, f"delete {st}")
        s.restart()
        st, _, body = s.get("/v1/databases")
        check(body["databases"] == [], f"default came back: {body}")
        st, _, _ = s.post("/v1/databases", {"name": "default"})
        check(st == 201, "it can be made again")


def test_make_install_places_the_binary_and_the_unit():
    from harness import REPO
    import subprocess
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(["make", "-s", "-o", "all", "install", f"DESTDIR={d}",
                            "PREFIX=/opt/annals"], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        check(p.returncode == 0, f"make install: {p.stdout}")
        binary = os.path.join(d, "opt/annals/bin/annals")
        unit = os.path.join(d, "etc/systemd/system/annals.service")
        check(os.access(binary, os.X_OK), f"no binary: {os.listdir(d)}")
        out = subprocess.run([binary, "version"], stdout=subprocess.PIPE, text=True).stdout
        check(out.startswith("annals "), out)
        text = open(unit).read()
        check("ExecStart=/opt/annals/bin/annals serve" in text and "[Install]" in text, text)
