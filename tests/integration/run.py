#!/usr/bin/env python3
"""Runs the integration tests: every function test_* in tests/integration/test_*.py, each in its
own Python process (so a hung test can be killed with the servers it started) with a 180 s
timeout. Prints 'PASS name' or 'FAIL name: reason' per test ('SKIP name: reason' for a test
that cannot run here; counted in neither number) and, as the last line, 'N passed, M failed'.
Exit code 1 when anything failed.

    python3 tests/integration/run.py [-k SUBSTRING] [--bin PATH] [--timeout SECONDS]
"""
import argparse
import ast
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP_EXIT = 77


def test_files():
    """Module names of the test files: test_*.py here, and dir.test_*.py in subdirectories
    (a dialect's tests, e.g. deltabase/test_streams.py)."""
    out = []
    for fn in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, fn)
        if fn.startswith("test_") and fn.endswith(".py"):
            out.append(fn[:-3])
        elif os.path.isdir(path) and not fn.startswith((".", "_")):
            out.extend(f"{fn}.{sub[:-3]}" for sub in sorted(os.listdir(path))
                       if sub.startswith("test_") and sub.endswith(".py"))
    return out


def discover():
    """(module, function) pairs in file order, found without importing the modules."""
    out = []
    for mod in test_files():
        fn = os.path.join(HERE, *mod.split(".")) + ".py"
        with open(fn, encoding="utf-8") as f:
            tree = ast.parse(f.read(), fn)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out.append((mod, node.name))
    return out


def worker(spec):
    """Runs one test in this process: exit 0 on success, 1 with the reason on stderr."""
    mod, func = spec.split(":")
    sys.path.insert(0, HERE)
    if "." in mod:  # a subdirectory's test: its own helpers import as top-level modules
        sys.path.insert(0, os.path.join(HERE, mod.split(".")[0]))
    try:
        m = importlib.import_module(mod)
        getattr(m, func)()
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        if type(e).__name__ == "Skip":
            sys.stderr.write("REASON " + (str(e).splitlines() or ["skipped"])[0] + "\n")
            sys.stderr.flush()
            os._exit(SKIP_EXIT)
        reason = f"{type(e).__name__}: {e}".strip().splitlines() or [type(e).__name__]
        sys.stderr.write("REASON " + reason[0] + "\n")
        sys.stderr.write("".join(traceback.format_exception(e)))
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


def run_one(mod, func, timeout):
    tmp = tempfile.mkdtemp(prefix="annals-run-")
    env = dict(os.environ, TMPDIR=tmp, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"{mod}:{func}"]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # the test's servers share its process group: end them all
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if timed_out:
        out, err = p.communicate()
    elapsed = time.monotonic() - start
    shutil.rmtree(tmp, ignore_errors=True)
    err = err.decode("utf-8", "replace")
    if timed_out:
        return False, f"timed out after {timeout:.0f} s", err, elapsed
    if p.returncode == 0:
        return True, "", err, elapsed
    reason = f"exit code {p.returncode}"
    for line in err.splitlines():
        if line.startswith("REASON "):
            reason = line[len("REASON "):]
            break
    if p.returncode == SKIP_EXIT:
        return None, reason, err, elapsed
    return False, reason, err, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", dest="substr", default=None, help="run tests whose name contains this")
    ap.add_argument("--bin", default=None, help="annals binary (sets ANNALS_BIN)")
    ap.add_argument("--timeout", type=float, default=180.0, help="per-test timeout in seconds")
    ap.add_argument("-v", action="store_true", help="print the traceback of failures")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bin:
        os.environ["ANNALS_BIN"] = os.path.abspath(args.bin)
    if args.worker:
        worker(args.worker)
        return
    passed = failed = 0
    t0 = time.monotonic()
    for mod, func in discover():
        name = f"{mod}.{func}"
        if args.substr and args.substr not in name:
            continue
        ok, reason, err, elapsed = run_one(mod, func, args.timeout)
        if ok is None:
            print(f"SKIP {name}: {reason}", flush=True)
        elif ok:
            passed += 1
            print(f"PASS {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {reason}", flush=True)
            lines = [ln for ln in err.splitlines() if not ln.startswith("REASON ")]
            if not args.v:
                lines = lines[-12:]
            for ln in lines:
                print("  " + ln, flush=True)
    print(f"# total {time.monotonic() - t0:.1f}s", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
