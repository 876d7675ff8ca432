#!/usr/bin/env python3
"""Runs every test tier: each unit-test binary given on the command line, then the integration
suite against the real server binary. Prints each tier's result and ends with one line
'N passed, M failed' over all tiers; exits non-zero when anything failed."""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tier(name, cmd, env=None):
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)
    out = proc.stdout
    for line in out.splitlines():
        if line.startswith("FAIL") or line.startswith("  "):
            print(line)
    m = None
    for line in out.splitlines():
        mm = re.match(r"^(\d+) passed, (\d+) failed$", line.strip())
        if mm:
            m = mm
    if not m:
        print(out[-4000:])
        print(f"{name}: no summary line (exit {proc.returncode}); counted as 1 failure")
        return 0, 1
    passed, failed = int(m.group(1)), int(m.group(2))
    if proc.returncode != 0 and failed == 0:
        failed = 1
    print(f"{name}: {passed} passed, {failed} failed", flush=True)
    return passed, failed


def run_group(label, binary, units):
    """Unit binaries, then the integration suite against binary."""
    total_p = total_f = 0
    for u in units:
        p, f = run_tier(f"{label}{os.path.basename(u)}", [u])
        total_p += p
        total_f += f
    env = dict(os.environ, ANNALS_BIN=os.path.abspath(binary))
    p, f = run_tier(f"{label}integration", [sys.executable, "tests/integration/run.py", "--bin",
                                            os.path.abspath(binary)], env)
    return total_p + p, total_f + f


def run_fuzz_replay():
    """Each fuzz target once over its corpus: PASS/FAIL lines from make fuzz-replay."""
    print("== fuzz corpora replay (ASan+UBSan, libFuzzer)", flush=True)
    proc = subprocess.run(["make", "-s", "--no-print-directory", "fuzz-replay"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = proc.stdout.splitlines()
    passed = sum(1 for l in lines if l.startswith("PASS"))
    failed = sum(1 for l in lines if l.startswith("FAIL"))
    if proc.returncode != 0 and failed == 0:
        print(proc.stdout[-3000:])
        failed = 1
    for l in lines:
        if l.startswith("FAIL"):
            print(l)
    print(f"fuzz replay: {passed} passed, {failed} failed", flush=True)
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--san-bin", help="the same server built with ASan+UBSan")
    ap.add_argument("--san-units", nargs="*", default=[])
    ap.add_argument("--fuzz-replay", action="store_true",
                    help="also replay the fuzzing corpora (make fuzz-replay)")
    ap.add_argument("--fuzz-seconds", type=int, default=0, metavar="S",
                    help="also fuzz each target for S seconds (make fuzz-ci)")
    ap.add_argument("--powerloss", type=int, default=0, metavar="STATES",
                    help="also check this many simulated power-loss crash states")
    ap.add_argument("--faults", action="store_true",
                    help="also run the disk-fault injection cases (tests/faults, --quick)")
    ap.add_argument("units", nargs="*")
    args = ap.parse_args()
    total_p, total_f = run_tier("layers", [sys.executable, "scripts/check_layers.py"])
    p, f = run_tier("layer check self-test", [sys.executable, "tests/check_layers_test.py"])
    total_p += p
    total_f += f
    p, f = run_group("", args.bin, args.units)
    total_p += p
    total_f += f
    if args.fuzz_replay:
        p, f = run_fuzz_replay()
        total_p += p
        total_f += f
    if args.fuzz_seconds:
        p, f = run_tier("fuzzing", ["make", "-s", "--no-print-directory", "fuzz-ci",
                                    f"FUZZ_CI_SECONDS={args.fuzz_seconds}"])
        total_p += p
        total_f += f
    if args.faults:
        p, f = run_tier("disk faults", [sys.executable, "tests/faults/run.py", "--bin",
                                        os.path.abspath(args.bin), "--quick"])
        total_p += p
        total_f += f
    if args.powerloss:
        p, f = run_tier("power loss", [sys.executable, "tests/powerloss/run.py", "--bin",
                                       os.path.abspath(args.bin), "--states",
                                       str(args.powerloss)])
        total_p += p
        total_f += f
    if args.san_bin:
        os.environ["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
        os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        p, f = run_group("asan+ubsan ", args.san_bin, args.san_units)
        total_p += p
        total_f += f
    print(f"{total_p} passed, {total_f} failed")
    sys.exit(1 if total_f else 0)


if __name__ == "__main__":
    main()
