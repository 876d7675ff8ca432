"""EXECUTE over REST (POST /api/aggregates/{agg}/execute/{command}) and over scripts: events in
the stream "<Agg>-<key>" (checked with the native API too), the answer table, rejections (422),
several branches emitting atomically, STATE AS with two rows, the request errors, SENSITIVE and
VOLATILE fields."""
import json

from deql_client import (ARROW, arrow_answer, bank_server, decode_many, error, records,
                         tables)
from harness import check


def rejected(resp, decision, command):
    """A 422 rejection body, checked."""
    b = error(resp, 422)
    check(b.get("status") == "rejected" and b.get("decision") == decision
          and b.get("command") == command, f"rejection: {b}")
    check(isinstance(b.get("branches"), list) and b["branches"]
          and isinstance(b.get("state"), dict) and isinstance(b.get("values"), dict),
          f"rejection members: {b}")
    return b


def open_account(d, acc, pin="1234", otp="otp-1"):
    return arrow_answer(d.execute("Account", "OpenAccount",
                                  {"account_id": acc, "owner": "Ann", "pin": pin, "otp": otp}),
                        f"open {acc}")


def test_execute_appends_and_answers():
    s, d = bank_server()
    with s:
        opened = open_account(d, "A1")
        dep = arrow_answer(d.execute("Account", "Deposit", {"account_id": "A1", "amount": 50}),
                           "deposit 50")
        both = arrow_answer(d.execute("Account", "Deposit", {"account_id": "A1", "amount": 2000}),
                            "deposit 2000")
        t_open, t_dep, t_both = decode_many([opened, dep, both])
        check([c["name"] for c in t_open["columns"]] ==
              ["event_type", "stream_id", "seq", "status", "fields"], f"columns: {t_open}")
        o = records(t_open)
        check(len(o) == 1 and o[0]["event_type"] == "AccountOpened" and o[0]["stream_id"] == "A1"
              and str(o[0]["seq"]) == "1" and o[0]["status"] == "success", f"open row: {o}")
        check(json.loads(o[0]["fields"]).get("owner") == "Ann", f"fields: {o}")
        check([(r["event_type"], str(r["seq"])) for r in records(t_dep)] == [("Deposited", "2")],
              f"deposit row: {t_dep}")
        b = records(t_both)
        check([r["event_type"] for r in b] == ["Deposited", "LargeDepositFlagged"]
              and [str(r["seq"]) for r in b] == ["3", "4"]
              and all(r["status"] == "success" for r in b), f"both branches emit: {b}")
        check(json.loads(b[1]["fields"]) == {"flagged": 2000}, f"second event's fields: {b}")
        # the native API sees the stream "Account-A1", the two events atomically appended
        native = s.read_stream("Account-A1")
        check([e["type"] for e in native] ==
              ["AccountOpened", "Deposited", "Deposited", "LargeDepositFlagged"],
              f"native stream: {native}")
        check([e["version"] for e in native] == [1, 2, 3, 4], f"versions: {native}")
        check(native[3]["position"] == native[2]["position"] + 1,
              f"one append, adjacent positions: {native}")
        check(native[1]["data"] == {"amount": 50}, f"payload: {native[1]}")
        # through a script: the same decision, a JSON answer with the table
        st, body = d.run("EXECUTE Deposit(account_id := 'A1', amount := 7)")
        check(st == 200 and body["status"] == "ok", f"run EXECUTE: {st} {body}")
        r = body["results"][-1]
        check(r["statement"] == "EXECUTE" and r["rows"] == [["Deposited", "A1", 5, "success",
                                                              '{"amount":7}']], f"run: {r}")
        check(len(s.read_stream("Account-A1")) == 5, "the script's event is stored")


def test_rejections_and_state():
    s, d = bank_server()
    with s:
        open_account(d, "A1")
        d.execute("Account", "Deposit", {"account_id": "A1", "amount": 30})
        head = s.head()
        b = rejected(d.execute("Account", "Deposit", {"account_id": "A1", "amount": -5}),
                     "Dep", "Deposit")
        check([br["status"] for br in b["branches"]] == ["guard_failed", "guard_failed"],
              f"every branch failed: {b}")
        check([br["label"] for br in b["branches"]] == ["Normal", "Large"]
              and b["branches"][0]["guard"] == "n > 0 AND :amount > 0", f"guards: {b}")
        check(b["state"] == {"n": 1}, f"state values: {b}")
        check(b["values"] == {"account_id": "A1", "amount": -5}, f"command values: {b}")
        b = rejected(d.execute("Account", "Withdraw", {"account_id": "A1", "amount": 31}),
                     "Wd", "Withdraw")
        check(b["state"] == {"balance": 30} and b["branches"][0]["guard"] ==
              "balance >= :amount", f"balance rejection: {b}")
        rejected(d.execute("Account", "Deposit", {"account_id": "NOPE", "amount": 5}),
                 "Dep", "Deposit")
        rejected(d.execute("Account", "OpenAccount",
                           {"account_id": "A1", "owner": "X", "pin": "1", "otp": "2"}),
                 "Open", "OpenAccount")
        check(s.head() == head, "rejections append nothing")
        arrow_answer(d.execute("Account", "Withdraw", {"account_id": "A1", "amount": 30}),
                     "withdraw the whole balance")
        # a rejection through a script: 422 with the same members and what completed
        st, body = d.run("SELECT 1; EXECUTE Withdraw(account_id := 'A1', amount := 1)")
        check(st == 422 and body.get("status") == "rejected" and body.get("completed") == 1
              and body["state"] == {"balance": 0} and "error" in body, f"run rejection: {body}")
        # STATE AS with two rows: an error, nothing appended
        head = s.head()
        b = error(d.execute("Account", "Probe", {"account_id": "A1"}), 422)
        check(s.head() == head, "a STATE AS of two rows appends nothing")
        # no row: NULLs, and the branch without a guard emits
        t, = decode_many([arrow_answer(d.execute("Account", "Probe", {"account_id": "Fresh"}),
                                       "probe of a stream without events")])
        check([r["event_type"] for r in records(t)] == ["Probed"], f"probe: {t}")


def test_execute_request_errors():
    s, d = bank_server()
    with s:
        open_account(d, "A1")
        head = s.head()
        error(d.execute("Account", "NoSuch", {"account_id": "A1"}), 404)
        error(d.execute("Nope", "Deposit", {"account_id": "A1", "amount": 1}), 404)
        error(d.execute("User", "Deposit", {"account_id": "A1", "amount": 1}), 403)
        error(d.execute("Account", "RegisterName", {"user_id": "u", "username": "n"}), 403)
        error(d.execute("Account", "Deposit", {"account_id": "A1", "bad key": 1}), 400)
        error(d.execute("Account", "Deposit", {"account_id": "A1", "it's": 1}), 400)
        error(d.execute("Account", "Deposit", {"account_id": "A1", "nope": 1}), 400)
        error(d.execute("Account", "Deposit", {"amount": 1}), 400, "account_id")
        error(d.execute("Account", "Deposit", {"account_id": None, "amount": 1}), 400)
        error(d.execute("Acc%20ount", "Deposit", {"account_id": "A1"}), 400)
        error(d.execute("Account", "Dep%27osit", {"account_id": "A1"}), 400)
        error(d.post("/api/aggregates/Account/execute/Deposit", [1, 2]), 400)
        error(d.post("/api/aggregates/Account/execute/Deposit", {"params": [1]}), 400)
        error(d.post("/api/aggregates/Account/execute/Deposit", "{not json",
                     headers={"Content-Type": "application/json"}), 400)
        check(s.head() == head, "failed requests append nothing")
        # run: an unknown command is 404 too
        st, body = d.run("EXECUTE NoSuch(account_id := 'A1')")
        check(st == 404 and body.get("completed") == 0, f"run unknown command: {st} {body}")


def test_sensitive_and_volatile_fields():
    s, d = bank_server()
    with s:
        t, = decode_many([open_account(d, "A1", pin="PIN-7391", otp="OTP-5522")])
        fields = json.loads(records(t)[0]["fields"])
        check("pin" not in fields and "PIN-7391" not in records(t)[0]["fields"],
              f"SENSITIVE in EXECUTE's fields: {fields}")
        check(fields.get("otp") == "OTP-5522", f"VOLATILE returned by EXECUTE: {fields}")
        evs, agg = tables(d, ["/api/aggregates/Account/events", "/api/aggregates/Account/A1"])
        ev, ag = records(evs)[0], records(agg)[0]
        check("otp" not in ev and "otp" not in ag, f"no VOLATILE column: {ev} {ag}")
        check("OTP-5522" not in json.dumps(ev), f"VOLATILE never stored: {ev}")
        check("PIN-7391" not in json.dumps(ev) and "PIN-7391" not in json.dumps(ag),
              f"SENSITIVE never shown: {ev} {ag}")
        check(ev.get("pin") is None and ag.get("pin") is None, f"pin column null: {ev} {ag}")
        st, h, q = d.post("/api/query", {"sql": "SELECT pin, data FROM DeReg.\"Account$Events\""})
        check(st == 200 and h.get("content-type") == ARROW, f"query: {st} {q!r}"[:300])
        check(b"PIN-7391" not in q and b"OTP-5522" not in q, "SENSITIVE shown through /api/query")
        st, body = d.run("SELECT * FROM DeReg.\"Account$Agg\"")
        check(st == 200 and "PIN-7391" not in json.dumps(body), f"run shows the pin: {body}")
        native = s.read_stream("Account-A1")
        check(native[0]["data"].get("pin") == "PIN-7391", f"SENSITIVE is stored: {native}")
        check("otp" not in native[0]["data"] and "OTP-5522" not in json.dumps(native),
              f"VOLATILE stored: {native}")
        # a rejection of a command holding a SENSITIVE value shows neither it nor the state's
        st, body = d.run("""
CREATE COMMAND CheckPin (account_id STRING, pin STRING SENSITIVE);
CREATE EVENT PinChecked ();
CREATE DECISION Chk FOR Account ON COMMAND CheckPin
  STATE AS SELECT pin FROM DeReg."Account$Agg" WHERE aggregate_id = :account_id
  EMIT AS SELECT EVENT PinChecked () WHERE pin = :pin;""")
        check(st == 200, f"CheckPin: {st} {body}")
        # the decision sees the stored pin (decisions read SENSITIVE values)
        arrow_answer(d.execute("Account", "CheckPin", {"account_id": "A1", "pin": "PIN-7391"}),
                     "the right pin passes")
        b = rejected(d.execute("Account", "CheckPin", {"account_id": "A1", "pin": "WRONG-1"}),
                     "Chk", "CheckPin")
        text = json.dumps(b)
        check("WRONG-1" not in text, f"the command's SENSITIVE value shown: {b}")
        check("PIN-7391" not in text, f"the stored SENSITIVE value shown in the state: {b}")
