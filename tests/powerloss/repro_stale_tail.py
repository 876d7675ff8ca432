#!/usr/bin/env python3
"""Deterministic reproduction of a bug found by run.py: a torn, unacknowledged write whose
first sector was lost (zeros) but whose later sectors reached the disk is not wiped at
recovery; after the next append, `annals verify` reports DAMAGED and the server refuses to
start ("the event log is damaged ... and acknowledged events follow").

The crash state is built by hand: one request of 4 large events (positions 2-5, one pwrite:
one batch), then the first 512-byte sector of that write (which holds the batch header and the
frame header of position 2) is zeroed, as a power cut during that write can leave it. Exit 0
when the bug is present.
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
from harness import Server, run_cli  # noqa: E402

with Server() as s:
    log = os.path.join(s.data, "dbs", "default", "events.log")
    st, _, _ = s.append("a", [{"type": "t", "data": "first"}])
    assert st == 201
    st, _, _ = s.append("a", [{"type": "t", "data": "x" * 1500} for _ in range(4)])
    assert st == 201
    s.kill9()   # within 200 ms: nothing indexed yet, recovery reads the log from the start
    b = bytearray(open(log, "rb").read())
    # the first batch (position 1): 16-byte header (magic, frames length L, CRC, count), then
    # L bytes of frames; the write of positions 2-5 (the second batch) starts right after it
    magic, n1 = struct.unpack_from(">II", b, 0)
    assert magic == 0xA11A1504, f"no batch at offset 0 (format changed?): {magic:#x}"
    off = 16 + n1
    magic2, n2, _crc, count2 = struct.unpack_from(">IIII", b, off)
    assert magic2 == 0xA11A1504 and count2 == 4 and off + 16 + n2 > (off // 512 + 1) * 512, \
        "the second batch is not where expected, or fits in one sector"
    sec_end = (off // 512 + 1) * 512          # end of the sector holding its first bytes
    b[off:sec_end] = bytes(sec_end - off)     # that sector never reached the disk
    open(log, "r+b").write(b[:sec_end])
    print(f"crash state: position 1 intact, write of 2-5 at offset {off} lost its first "
          f"sector (bytes {off}..{sec_end}), the rest of it is on disk")
    rc, out = run_cli(["verify", "--data", s.data])
    print("verify on the crash state:", rc, out.strip())
    s.start()
    print("recovered head:", s.head())
    st, _, ans = s.append("b", [{"type": "t", "data": "y" * 700}])  # ends past the zeroed sector
    print("append after recovery:", st, ans["events"])
    s.stop()
    rc, out = run_cli(["verify", "--data", s.data])
    print("verify after one append:", rc, out.strip())
    ok = s.try_start()
    print("server restarts:", ok)
    if not ok:
        print("  " + s.log().splitlines()[0])
    bug = rc != 0 or not ok
    print("BUG PRESENT" if bug else "bug not present")
    sys.exit(0 if bug else 1)
