"""Concurrent EXECUTEs: the append condition from what the decision read makes exactly one of
several conflicting commands commit (the others decide again and are rejected), while
non-conflicting commands on one stream all commit (retried on the condition)."""
import threading

from deql_client import DeQL, bank_server, records, tables
from harness import check

N = 20


def concurrently(fn, n):
    """Runs fn(i) for i < n on n threads released together; their results in order."""
    out = [None] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported as the result
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_conflicting_commands_exactly_one_commits():
    s, d = bank_server(extra=["--deql-workers", "8"])
    with s:
        for round_ in range(3):
            name = f"taken-{round_}"
            res = concurrently(lambda i: DeQL(s).execute(
                "User", "RegisterName", {"user_id": f"u{round_}-{i}", "username": name}), N)
            statuses = [r[0] if isinstance(r, tuple) else repr(r) for r in res]
            check(statuses.count(200) == 1, f"round {round_}: one commit wanted: {statuses}")
            check(statuses.count(422) == N - 1, f"round {round_}: the rest rejected: {statuses}")
            for r in res:
                if r[0] == 422:
                    check(r[2].get("status") == "rejected" and r[2]["state"] == {"taken": 1},
                          f"rejected on the committed state: {r[2]}")
        evs, = tables(d, ["/api/aggregates/User/events"])
        names = [e["username"] for e in records(evs)]
        check(sorted(names) == ["taken-0", "taken-1", "taken-2"], f"one event per name: {names}")


def test_non_conflicting_deposits_all_commit():
    s, d = bank_server(extra=["--deql-workers", "8"])
    with s:
        st, _, b = d.execute("Account", "OpenAccount",
                             {"account_id": "A1", "owner": "Ann", "pin": "1", "otp": "2"})
        check(st == 200, f"open: {st} {b!r}"[:300])
        res = concurrently(lambda i: DeQL(s).execute(
            "Account", "Deposit", {"account_id": "A1", "amount": i + 1}), N)
        statuses = [r[0] if isinstance(r, tuple) else repr(r) for r in res]
        check(statuses == [200] * N, f"every deposit commits: {statuses}")
        native = s.read_stream("Account-A1")
        check([e["version"] for e in native] == list(range(1, N + 2)), f"versions: {native}")
        amounts = sorted(e["data"]["amount"] for e in native if e["type"] == "Deposited")
        check(amounts == list(range(1, N + 1)), f"each deposit once: {amounts}")
        # the balance guard sees all of them
        st, _, b = d.execute("Account", "Withdraw", {"account_id": "A1", "amount": N * (N + 1) // 2})
        check(st == 200, f"withdraw the sum: {st} {b!r}"[:300])
