"""A real full disk: the server's data directory on a small tmpfs. Appends get 507 quickly once
the disk is full, nothing half-written becomes visible, reads keep working, and appends resume
once space is freed. Needs root (mount); skipped where tmpfs cannot be mounted."""
import os
import subprocess
import tempfile

from harness import Server, Skip, binary, check


def mount_tmpfs(size_mb):
    d = tempfile.mkdtemp(prefix="annals-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        os.rmdir(d)
        raise Skip("cannot mount a tmpfs here (needs root)")
    return d


def umount(d):
    subprocess.run(["umount", "-l", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.rmdir(d)


def test_disk_full_then_space_freed():
    d = mount_tmpfs(40)
    try:
        ballast = os.path.join(d, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (6 << 20))
        s = Server(data_dir=os.path.join(d, "data"))
        try:
            acked, full = 0, None
            for i in range(2000):
                st, _, ans = s.append("big", [{"type": "t", "data": "x" * 20000}] * 5)
                if st == 201:
                    acked += 5
                    continue
                full = (st, ans)
                break
            check(full is not None, "the disk never filled up")
            st, ans = full
            check(st == 507 and ans["error"]["code"] == "storage_full",
                  f"want 507 storage_full on a full disk, got {st} {ans}")
            info = s.db_info()
            check(info["head"] == acked, f"head {info['head']} != acknowledged {acked}")
            st, _, page = s.get("/v1/databases/default/streams/big/events?limit=5")
            check(st == 200 and len(page["events"]) == 5, f"reads on a full disk: {st}")
            st, _, again = s.append("big", [{"type": "t", "data": "x" * 20000}] * 5)
            check(st == 507, f"still full: want 507, got {st}")
            os.remove(ballast)
            st, _, ans = s.append("big", [{"type": "t", "data": "small"}])
            check(st == 201, f"after freeing space: want 201, got {st} {ans}")
            check(ans["position"] == acked + 1, f"positions continue: {ans['position']}")
        finally:
            s.stop()
        r = subprocess.run([binary(), "verify", "--data", os.path.join(d, "data")],
                           stdout=subprocess.PIPE, text=True)
        check(r.returncode == 0 and "hash chain intact" in r.stdout, f"verify: {r.stdout}")
    finally:
        umount(d)
