"""The command line: help texts, environment variables, bad flags."""
import os
import tempfile

from harness import Server, check, run_cli

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
