"""POST /api/deql/run: JSON answers with Accept: application/json, Arrow for a script ending with
a table otherwise, "completed" in errors, parse errors with line and column, VALIDATE DEREG."""
import re

from deql_client import ARROW, HR, decode_many, error, registry_server
from harness import check


def test_run_answers():
    s, d = registry_server(HR)
    with s:
        st, body = d.run("SELECT 1 AS a;\nEXECUTE HireEmployee(employee_id := 'E1', name := 'A',"
                         " department := 'D', salary := 3);\nCREATE TABLE t AS VALUES (1), (2);"
                         "\nSELECT COUNT(*) AS n FROM DeReg.\"Employee$Events\"")
        check(st == 200 and body.get("status") == "ok", f"json answer: {st} {body}")
        kinds = [r["statement"] for r in body["results"]]
        check(kinds == ["SELECT", "EXECUTE", "CREATE TABLE", "SELECT"], f"results: {kinds}")
        check(body["results"][0]["columns"] == ["a"] and body["results"][0]["rows"] == [[1]],
              f"first table: {body['results'][0]}")
        check(body["results"][3]["rows"] == [[1]], f"last table: {body['results'][3]}")
        # without Accept: the last statement's table as Arrow
        st, h, a = d.post("/api/deql/run", {"deql": "SELECT 5 AS x; SELECT 'y' AS y, 7 AS z"})
        check(st == 200 and h.get("content-type") == ARROW, f"arrow answer: {st} {h}")
        st, h, e = d.post("/api/deql/run", {"deql": "EXECUTE RaiseSalary(employee_id := 'E1',"
                                                    " amount := 2)"})
        check(st == 200 and h.get("content-type") == ARROW, f"EXECUTE's arrow: {st} {e!r}"[:300])
        t, ev = decode_many([a, e])
        check([c["name"] for c in t["columns"]] == ["y", "z"] and t["rows"] == [["y", "7"]],
              f"last table: {t}")
        check(ev["rows"][0][:4] == ["SalaryRaised", "E1", "2", "success"], f"execute: {ev}")
        # a script ending without a table: JSON even without Accept
        st, h, b = d.post("/api/deql/run", {"deql": "SELECT 1; CREATE TABLE u AS VALUES (1)"})
        check(st == 200 and isinstance(b, dict) and b.get("status") == "ok", f"no table: {b!r}")
        st, _, b = d.post("/api/deql/run", {"deql": "DROP TABLE u", },
                          headers={"Accept": "application/vnd.apache.arrow.stream"})
        check(st == 200, f"drop: {st} {b!r}")


def test_run_errors():
    s, d = registry_server(HR)
    with s:
        b = error(d.post("/api/deql/run", {"deql": "SELECT 1;\nSELECT 2;\nSELECT nope FROM x;"
                                                   "\nSELECT 4"}), 400)
        check(b.get("completed") == 2 and "line 3" in b["error"], f"stopped at line 3: {b}")
        b = error(d.post("/api/deql/run", {"deql": "SELECT 1;\nCREATE COMMAND X (a);"}), 400)
        check(b.get("completed") == 0, f"parse errors run nothing: {b}")
        check(re.search(r"line 2, column \d+", b["error"]), f"line and column: {b}")
        b = error(d.post("/api/deql/run", {"deql": "SELECT 1\nFROM (SELECT 2) WHERE ((("}), 400)
        check(re.search(r"line 2, column \d+", b["error"]), f"line and column: {b}")
        b = error(d.post("/api/deql/run", {"deql": "SELECT 'open"}), 400)
        check(re.search(r"line 1, column 8", b["error"]), f"unterminated string's place: {b}")
        for stmt in ["DESCRIBE Employee", "SHOW TABLES", "DELETE FROM x", "INSERT INTO x VALUES (1)"]:
            b = error(d.post("/api/deql/run", {"deql": stmt}), 400)
            check("line 1" in b["error"], f"{stmt}: {b}")
        error(d.post("/api/deql/run", {"script": "SELECT 1"}), 400)
        error(d.post("/api/deql/run", {"deql": 5}), 400)
        st, _, b = d.post("/api/deql/run", "SELECT 1", headers={"Content-Type": "text/plain"})
        check(st in (400, 415) and isinstance(b, dict) and b.get("error"), f"not JSON: {st} {b}")
        error(d.post("/api/deql/run", {"deql": "SELECT 1\u0000"}), 400)
        error(d.post("/api/deql/run", {"deql": "CREATE TABLE DeReg.x AS VALUES (1)"}), 400)
        error(d.post("/api/deql/run", {"deql": "CREATE TABLE a$b AS VALUES (1)"}), 400)


def test_validate_dereg():
    s, d = registry_server(HR)
    with s:
        st, body = d.run("VALIDATE DEREG")
        check(st == 200 and body["results"][0]["status"] == "ok"
              and body["results"][0]["problems"] == [], f"valid: {body}")
        st, body = d.run("CREATE DECISION Fire FOR Employee ON COMMAND FireEmployee "
                         "EMIT AS SELECT EVENT EmployeeFired (why := 'x');\nVALIDATE DEREG")
        check(st == 200, f"order-independent decision: {st} {body}")
        r = body["results"][-1]
        check(r["status"] == "invalid" and
              "Decision Fire: command FireEmployee is not registered." in r["problems"] and
              "Decision Fire: event EmployeeFired is not registered." in r["problems"],
              f"problems: {r}")
