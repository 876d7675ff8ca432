"""Damaged data files: annals verify reports them, and the server never serves altered data."""
import os
import uuid

from harness import Server, check, run_cli


def flip_marker(dbdir, marker):
    """Flips one byte (the last character) of every stored copy of marker under dbdir.
    Returns the altered marker and the files touched."""
    altered = marker[:-1] + bytes([marker[-1] ^ 0x01])
    touched = []
    for root, _, files in os.walk(dbdir):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                data = fh.read()
            n = data.count(marker)
            if n:
                with open(p, "wb") as fh:
                    fh.write(data.replace(marker, altered))
                    fh.flush()
                    os.fsync(fh.fileno())
                touched.append(f"{os.path.relpath(p, dbdir)} ({n}x)")
    check(touched, f"marker {marker!r} not found in any file under {dbdir}")
    return altered, touched


def corrupt_and_check(total, bad_index):
    """Appends total events (one per request) to stream 'c'; event bad_index (0-based) holds a
    unique marker. Damages it, then checks verify and the restarted server."""
    marker = ("MARKER-" + uuid.uuid4().hex).encode()
    with Server() as s:
        bad_pos = None
        for i in range(total):
            data = {"i": i, "m": marker.decode() if i == bad_index else "plain-%d" % i}
            st, _, ans = s.append("c", [{"type": "t", "data": data}])
            check(st == 201, "append")
            if i == bad_index:
                bad_pos = ans["position"]
        good = s.read_log()
        check(s.stop() == 0, "stop")
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc == 0 and "hash chain intact" in out, f"verify before damage: {rc} {out}")

        altered, touched = flip_marker(os.path.join(s.data, "dbs", "default"), marker)
        rc, out = run_cli(["verify", "--data", s.data])
        check(rc != 0, f"verify exit 0 on damaged data ({touched}): {out}")
        check("DAMAGED" in out, f"verify output lacks DAMAGED: {out}")

        if not s.try_start():
            return  # refusing to start is an accepted answer
        problems = []
        reads = [f"/v1/databases/default/events/{bad_pos}",
                 f"/v1/databases/default/events?from={bad_pos}&limit=1",
                 "/v1/databases/default/events",
                 "/v1/databases/default/events?direction=backward",
                 "/v1/databases/default/streams/c/events",
                 "/v1/databases/default/streams/c/events?direction=backward"]
        for path in reads:
            st, _, body = s.get(path)
            text = body if isinstance(body, bytes) else repr(body).encode()
            if altered.decode() in text.decode("utf-8", "replace"):
                problems.append(f"GET {path}: {st} served the altered data")
            elif st != 500 or not isinstance(body, dict) or \
                    body.get("error", {}).get("code") != "data_corrupt":
                problems.append(f"GET {path}: {st} {str(body)[:200]}, want 500 data_corrupt")
        # events before the damaged one are still readable and unchanged
        if bad_pos > 1:
            st, _, ev = s.get("/v1/databases/default/events/1")
            if st != 200 or ev != good[0]:
                problems.append(f"GET event 1 (intact): {st} {str(ev)[:200]}")
        check(not problems, f"after flipping a byte in {touched}:\n  " + "\n  ".join(problems))


def test_corrupt_last_event():
    corrupt_and_check(total=6, bad_index=5)


def test_corrupt_middle_event():
    corrupt_and_check(total=12, bad_index=4)
