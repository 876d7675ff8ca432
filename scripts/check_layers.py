#!/usr/bin/env python3
"""Fails when a source file includes a header of a layer it may not use (docs/design/
architecture.md). Each folder of src/ lists the folders it may include from; main.c may
include anything. Prints one PASS or FAIL line per folder and a last line 'N passed, M failed'.

    python3 scripts/check_layers.py [SRC_DIR]
"""
import os
import re
import sys

BASE = {"util"}
ALLOWED = {
    "util": BASE,
    "json": BASE | {"json"},
    "model": BASE | {"model"},
    "backup": BASE | {"backup"},
    "query": BASE | {"json", "model", "query"},
    "store": BASE | {"json", "model", "query", "store"},
    # outbound HTTP deliveries (webhooks): the transport under the engine
    "delivery": BASE | {"json", "delivery"},
    "engine": BASE | {"json", "model", "query", "store", "engine", "backup", "delivery"},
    "http": BASE | {"json", "http"},
    "auth": BASE | {"auth"},
    "gate": BASE | {"json", "model", "query", "engine", "http", "auth", "gate"},
    "ops": BASE | {"json", "model", "query", "engine", "logic", "http", "auth", "gate", "ops"},
    # (delivery: the one rule of which headers a subscriber may set, checked at creation)
    "api": BASE | {"json", "model", "query", "engine", "logic", "http", "auth", "gate", "ops", "api",
                   "backup", "delivery"},
    # user code: the runtimes (util, json only) and, above the engine, what runs on them
    # (delivery: projection webhooks post through it, as the engine's webhooks do)
    "logic": BASE | {"json", "model", "query", "engine", "logic", "delivery"},
    # the SQL engine (SQLite, locked down) with the store's events as read-only virtual tables
    "sql": BASE | {"json", "model", "query", "engine", "sql"},
    # the command-line tools beside the server (annals backup, restore): main's level
    "cli": BASE | {"json", "model", "query", "store", "engine", "http", "auth", "backup", "cli"},
}
# every dialect: what the native API may use, except the native API itself (and storage)
DIALECT = BASE | {"json", "model", "query", "engine", "logic", "sql", "http", "auth", "gate", "ops"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z0-9_]+)/([^"]+)"', re.M)


def allowed_for(rel):
    parts = rel.split(os.sep)
    if len(parts) == 1:
        return None  # main.c wires everything together
    if parts[0] == "dialect" and len(parts) >= 3:
        return DIALECT | {f"dialect/{parts[1]}"}, f"dialect/{parts[1]}"
    return ALLOWED.get(parts[0]), parts[0]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    problems = {}
    folders = set()
    for root, _, files in os.walk(src):
        for fn in sorted(files):
            if not fn.endswith((".c", ".h", ".cc")):
                continue
            path = os.path.join(root, fn)
            rel = os.path.relpath(path, src)
            got = allowed_for(rel)
            if got is None:
                continue
            allowed, folder = got
            folders.add(folder)
            if allowed is None:
                problems.setdefault(folder, []).append(f"{rel}: folder not in the layer table")
                continue
            text = open(path, encoding="utf-8").read()
            for m in INCLUDE.finditer(text):
                inc = m.group(1)
                if inc == "dialect":
                    inc = "dialect/" + m.group(2).split("/")[0]
                if inc not in allowed:
                    problems.setdefault(folder, []).append(f"{rel} includes {m.group(0).strip()}")
    passed = failed = 0
    for folder in sorted(folders):
        if folder in problems:
            failed += 1
            print(f"FAIL layers {folder}: " + "; ".join(problems[folder]))
        else:
            passed += 1
            print(f"PASS layers {folder}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
