"""The Arrow IPC stream writer (src/util/arrow.c) against an independent reader: the unit test
build/tests/arrow_test (built by `make`) writes each of its streams with the rows it expects
($ARROW_DUMP_DIR/<name>.arrows and <name>.json); tests/integration/decode_arrow.mjs decodes the
streams with the apache-arrow npm package (tests/package.json) and this test compares schema
(names, types), rows (values and nulls), row counts and batch counts."""
import glob
import json
import os
import subprocess
import tempfile

from harness import REPO, check

UNIT = os.path.join(REPO, "build", "tests", "arrow_test")
DECODER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_arrow.mjs")
# streams the unit test writes; each must come back
NAMES = {"empty", "nulls", "plain", "nulbyte", "many", "textsplit", "rowlimit"}


def dump_streams(out_dir):
    """Runs the unit test with ARROW_DUMP_DIR=out_dir; returns {name: expected}."""
    check(os.path.exists(UNIT), f"{UNIT} missing: run make build/tests/arrow_test")
    env = dict(os.environ, ARROW_DUMP_DIR=out_dir)
    p = subprocess.run([UNIT], env=env, capture_output=True, timeout=120)
    check(p.returncode == 0, f"arrow_test failed:\n{p.stdout.decode()}{p.stderr.decode()}")
    expected = {}
    for path in glob.glob(os.path.join(out_dir, "*.json")):
        with open(path, encoding="utf-8") as f:
            expected[os.path.basename(path)[:-5]] = json.load(f)
    check(set(expected) == NAMES, f"dumped streams: {sorted(expected)}")
    return expected


def decode(paths):
    p = subprocess.run(["node", DECODER, *paths], capture_output=True, timeout=120,
                       cwd=os.path.join(REPO, "tests"))
    check(p.returncode == 0, f"apache-arrow could not decode:\n{p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def first_difference(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"row {i}: got {g!r}, want {w!r}"
    return f"{len(got)} rows, want {len(want)}"


def test_apache_arrow_decodes_every_stream():
    with tempfile.TemporaryDirectory() as d:
        expected = dump_streams(d)
        decoded = decode(sorted(glob.glob(os.path.join(d, "*.arrows"))))
    check(set(decoded) == NAMES, f"decoded: {sorted(decoded)}")
    for name, want in sorted(expected.items()):
        got = decoded[name]
        check(got["columns"] == want["columns"],
              f"{name}: schema {got['columns']} != {want['columns']}")
        check(len(got["rows"]) == len(want["rows"]),
              f"{name}: {len(got['rows'])} rows, want {len(want['rows'])}")
        check(got["rows"] == want["rows"], f"{name}: {first_difference(got['rows'], want['rows'])}")
        # a stream of 0 rows has no batch; the reader shows one empty batch for it
        if want["batches"] > 0:
            check(got["batches"] == want["batches"],
                  f"{name}: {got['batches']} batches, want {want['batches']}")
    # the cases cover what they claim to
    check(expected["many"]["batches"] == 4 and len(expected["many"]["rows"]) > 3 * 65536,
          "many: 4 batches")
    check(any(v is None for row in expected["nulls"]["rows"] for v in row), "nulls has nulls")
    types = {c["type"] for c in expected["nulls"]["columns"]}
    check(types == {"int64", "float64", "bool", "utf8", "timestamp_us"}, f"types {types}")
