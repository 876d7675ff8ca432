#!/usr/bin/env python3
"""scripts/check_layers.py has teeth: a source tree where the native API includes a storage
header, or a dialect includes the native API, fails; a clean one passes."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "check_layers.py")


def run(tree):
    with tempfile.TemporaryDirectory() as d:
        for rel, text in tree.items():
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
            with open(os.path.join(d, rel), "w") as f:
                f.write(text)
        p = subprocess.run([sys.executable, SCRIPT, d], stdout=subprocess.PIPE, text=True)
        return p.returncode, p.stdout


CASES = [
    ("clean tree passes", {"api/a.c": '#include "engine/engine.h"\n',
                           "dialect/x/r.c": '#include "gate/gate.h"\n#include "dialect/x/r.h"\n',
                           "main.c": '#include "store/store.h"\n'}, 0),
    ("api including store fails", {"api/a.c": '#include "store/codec.h"\n'}, 1),
    ("engine including http fails", {"engine/e.c": '#include "http/server.h"\n'}, 1),
    ("dialect including api fails", {"dialect/x/r.c": '#include "api/native.h"\n'}, 1),
    ("ops including api fails", {"ops/a.c": '#include "api/native.h"\n'}, 1),
    ("dialect using ops passes", {"dialect/x/r.c": '#include "ops/append.h"\n'}, 0),
    ("dialect including another dialect fails", {"dialect/x/r.c": '#include "dialect/y/t.h"\n'}, 1),
    ("unknown folder fails", {"weird/w.c": '#include "util/buf.h"\n'}, 1),
]

passed = failed = 0
for name, tree, want in CASES:
    rc, out = run(tree)
    if rc == want:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: exit {rc}, want {want}: {out.strip()}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
