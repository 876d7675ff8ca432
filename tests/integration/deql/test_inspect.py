"""INSPECT DECISION and INSPECT PROJECTION: side-effect-free dry runs into session tables (the
output and <out>__branches), readable through /inspect/output and /inspect/input, recorded in
/api/dereg/inspections; sessions (X-DeQL-Session) isolate tables; DROP TABLE."""
from deql_client import columns, error, records, registry_server, tables, BANK
from harness import check

PROJ = """
CREATE PROJECTION Balances AS
  SELECT stream_id, SUM(amount) AS total FROM DeReg."Account$Events"
  WHERE event_type = 'Deposited' GROUP BY stream_id;
"""


def setup(d):
    for acc, amount in (("A1", 50), ("A2", 5), ("A3", 100)):
        st, _, b = d.execute("Account", "OpenAccount",
                             {"account_id": acc, "owner": "o", "pin": "p", "otp": "t"})
        check(st == 200, f"open {acc}: {st}")
        st, _, b = d.execute("Account", "Deposit", {"account_id": acc, "amount": amount})
        check(st == 200, f"deposit {acc}: {st}")


def test_inspect_decision():
    s, d = registry_server(BANK + PROJ)
    with s:
        setup(d)
        s1 = d.with_session("s1")
        head = s.head()
        st, body = s1.run("""
CREATE TABLE deps AS VALUES ('A1', 50), ('A1', 5000), ('A1', -1), ('NOPE', 10);
INSPECT DECISION Dep FROM deps INTO out;""")
        check(st == 200, f"inspect: {st} {body}")
        r = body["results"]
        check(r[0]["statement"] == "CREATE TABLE" and r[0]["rows"] == 4, f"create table: {r}")
        check(r[1]["statement"] == "INSPECT DECISION" and r[1]["rows"] == 3
              and r[1]["branch_rows"] == 8, f"inspect result: {r}")
        check(s.head() == head, "INSPECT appends nothing")
        out, br, inp, insp, one = tables(s1, [
            "/api/aggregates/Account/inspect/output/out",
            "/api/aggregates/Account/inspect/output/out__branches",
            "/api/aggregates/Account/inspect/input/deps",
            "/api/dereg/inspections", "/api/dereg/inspections/Dep"])
        check(columns(out) == ["event_id", "stream_type", "stream_id", "seq", "event_type",
                               "occurred_at", "data"], f"output columns: {columns(out)}")
        o = records(out)
        check([(e["stream_type"], e["stream_id"], str(e["seq"]), e["event_type"]) for e in o] ==
              [("Account", "A1", "3", "Deposited"), ("Account", "A1", "4", "Deposited"),
               ("Account", "A1", "5", "LargeDepositFlagged")], f"output rows: {o}")
        check(len({e["event_id"] for e in o}) == 3, f"distinct event ids: {o}")
        b = records(br)
        check(len(b) == 8 and all(x["decision_name"] == "Dep" for x in b), f"branches: {b}")
        got = [(int(x["inspect_row_index"]), x["branch_rule_name"], x["branch_status"])
               for x in b]
        check(got == [(0, "Normal", "emitted"), (0, "Large", "guard_failed"),
                      (1, "Normal", "emitted"), (1, "Large", "emitted"),
                      (2, "Normal", "guard_failed"), (2, "Large", "guard_failed"),
                      (3, "Normal", "guard_failed"), (3, "Large", "guard_failed")],
              f"branch statuses: {got}")
        check(b[3]["event_type"] == "LargeDepositFlagged" and b[6]["stream_id"] == "NOPE",
              f"branch rows' event type and stream: {b}")
        check(len(inp["rows"]) == 4, f"input table: {inp}")
        i = records(insp)
        check(len(i) == 1 and i[0]["name"] == "Dep" and i[0]["kind"] == "Decision"
              and i[0]["input_table"] == "deps" and i[0]["output_table"] == "out"
              and "INSPECT DECISION Dep" in i[0]["full_sql"], f"meta_inspections: {i}")
        check(len(one["rows"]) == 1, f"/inspections/Dep: {one}")
        # other sessions see none of it
        for other in (d, d.with_session("s2")):
            error(other.get("/api/aggregates/Account/inspect/output/out"), 404)
            error(other.get("/api/aggregates/Account/inspect/input/deps"), 404)
            error(other.get("/api/dereg/inspections/Dep"), 404)
        error(s1.get("/api/aggregates/Account/inspect/output/nothing"), 404)
        error(s1.get("/api/aggregates/Nope/inspect/output/out"), 404)
        error(d.with_session("bad session!").get("/api/dereg/inspections"), 400)
        # re-running overwrites INTO; DROP TABLE
        st, body = s1.run("CREATE TABLE deps AS VALUES ('A2', 1);"
                          "INSPECT DECISION Dep FROM deps INTO out; DROP TABLE deps")
        check(st == 200, f"second inspect: {st} {body}")
        out2, = tables(s1, ["/api/aggregates/Account/inspect/output/out"])
        check([(e["stream_id"], str(e["seq"])) for e in records(out2)] == [("A2", "3")],
              f"overwritten output: {out2}")
        error(s1.get("/api/aggregates/Account/inspect/input/deps"), 404)
        st, body = s1.run("DROP TABLE deps")
        check(st == 404, f"dropping a table twice: {st} {body}")
        st, body = s1.run("DROP TABLE IF EXISTS deps")
        check(st == 200, f"DROP TABLE IF EXISTS: {st} {body}")
        # errors: too many input columns, an unknown decision, a qualified INTO
        st, body = s1.run("CREATE TABLE wide AS VALUES ('A1', 1, 2);"
                          "INSPECT DECISION Dep FROM wide INTO o2")
        check(st == 400 and body.get("completed") == 1, f"wide input: {st} {body}")
        st, body = s1.run("INSPECT DECISION Nope FROM out INTO o3")
        check(st == 404, f"unknown decision: {st} {body}")
        check(s.head() == head, "still nothing appended")


def test_inspect_projection():
    s, d = registry_server(BANK + PROJ)
    with s:
        setup(d)
        s1 = d.with_session("p1")
        st, body = s1.run("""
INSPECT PROJECTION Balances FROM DeReg."Account$Events" INTO big WHERE total > 10;
INSPECT PROJECTION Balances FROM DeReg."Account$Events" INTO top WHERE total > 10 LIMIT 1;
INSPECT PROJECTION Balances FROM DeReg."Account$Events" INTO every""")
        check(st == 200, f"inspect projection: {st} {body}")
        check([r.get("rows") for r in body["results"]] == [2, 1, 3], f"row counts: {body}")
        big, top, every, insp = tables(s1, ["/api/aggregates/Account/inspect/output/big",
                                            "/api/aggregates/Account/inspect/output/top",
                                            "/api/aggregates/Account/inspect/output/every",
                                            "/api/dereg/inspections"])
        check(sorted(r["stream_id"] for r in records(big)) == ["A1", "A3"], f"WHERE: {big}")
        t = records(top)
        check(len(t) == 1 and int(t[0]["total"]) > 10, f"LIMIT 1: {t}")
        check(sorted((r["stream_id"], int(r["total"])) for r in records(every)) ==
              [("A1", 50), ("A2", 5), ("A3", 100)], f"whole projection: {every}")
        check({r["kind"] for r in records(insp)} == {"Projection"} and len(insp["rows"]) >= 1,
              f"recorded: {insp}")
        st, body = s1.run("INSPECT PROJECTION Nope FROM DeReg.\"Account$Events\" INTO x")
        check(st == 404, f"unknown projection: {st} {body}")
        error(d.get("/api/aggregates/Account/inspect/output/big"), 404)


def test_inspect_output_never_shows_sensitive_nor_volatile():
    s, d = registry_server(BANK)
    with s:
        st, body = d.run("CREATE TABLE o AS VALUES ('B1', 'Ann', 'PIN-4471', 'OTP-8832');"
                         "INSPECT DECISION Open FROM o INTO out")
        check(st == 200 and body["results"][1]["rows"] == 1, f"inspect Open: {st} {body}")
        out, br = tables(d, ["/api/aggregates/Account/inspect/output/out",
                             "/api/aggregates/Account/inspect/output/out__branches"])
        o = records(out)
        check(len(o) == 1 and '"owner":"Ann"' in o[0]["data"], f"output: {o}")
        check("OTP-8832" not in o[0]["data"], f"VOLATILE in the would-be stored data: {o}")
        check("PIN-4471" not in str(o) and "PIN-4471" not in str(br),
              f"SENSITIVE shown in the inspection output: {o}")
