"""The seed's REST routes over the real server (seed 003, docs/dialects/deql.md): aggregate
state and events as Arrow IPC (decoded by apache-arrow), paging, inspection tables, the error
statuses and the {"error": "..."} envelope; /health, /info, /api/deql/create, /api/deql/export,
/api/query."""
from deql_client import (ARROW, DeQL, columns, decode_many, error, hr_server, records,
                         tables)
from harness import Server, check


def hire(d, emp, name, dept, salary):
    st, h, b = d.execute("Employee", "HireEmployee", {"employee_id": emp, "name": name,
                                                       "department": dept, "salary": salary})
    check(st == 200 and h.get("content-type") == ARROW, f"hire {emp}: {st} {b!r}"[:300])


def test_aggregate_and_event_routes():
    s, d = hr_server()
    with s:
        hire(d, "E2", "Bob", "Ops", 90)
        hire(d, "E1", "Ann", "R&D", 100)
        hire(d, "E3", "Cid", "Ops", 80)
        st, _, b = d.execute("Employee", "RaiseSalary", {"employee_id": "E1", "amount": 5})
        check(st == 200, f"raise: {st} {b!r}"[:300])
        paths = ["/api/aggregates/Employee",
                 "/api/aggregates/Employee?limit=2",
                 "/api/aggregates/Employee?limit=2&offset=2",
                 "/api/aggregates/Employee?offset=7",
                 "/api/aggregates/Employee/E1",
                 "/api/aggregates/Employee/E9",
                 "/api/aggregates/Employee/events",
                 "/api/aggregates/Employee/events?limit=1&offset=3",
                 "/api/aggregates/Employee/events/E1",
                 "/api/aggregates/Employee/events/E9",
                 "/api/projections/Headcount/query"]
        (agg, agg2, agg_off, agg_past, one, none, evs, ev_page, stream, no_stream,
         proj) = tables(d, paths)
        rows = records(agg)
        check(columns(agg)[0] == "aggregate_id", f"$Agg columns: {columns(agg)}")
        check([r["aggregate_id"] for r in rows] == ["E1", "E2", "E3"], f"instances: {rows}")
        check([r["aggregate_id"] for r in records(agg2)] == ["E1", "E2"], "limit=2")
        check([r["aggregate_id"] for r in records(agg_off)] == ["E3"], "limit=2&offset=2")
        check(agg_past["rows"] == [] and columns(agg_past) == columns(agg),
              f"offset past the end: {agg_past}")
        r1 = records(one)
        check(len(r1) == 1 and r1[0]["name"] == "Ann" and str(r1[0]["salary"]) == "105"
              and r1[0]["department"] == "R&D", f"E1's state: {r1}")
        check(none["rows"] == [] and columns(none) == columns(agg),
              f"an instance without events: 200 with zero rows: {none}")
        ev = records(evs)
        check([(e["stream_id"], e["event_type"]) for e in ev] ==
              [("E2", "EmployeeHired"), ("E1", "EmployeeHired"), ("E3", "EmployeeHired"),
               ("E1", "SalaryRaised")], f"events in ingest order: {ev}")
        ids = [int(e["event_id"]) for e in ev]
        check(ids == sorted(ids) and len(set(ids)) == 4, f"event ids ascending: {ids}")
        check(all(e["stream_type"] == "Employee" for e in ev), "stream_type is the aggregate")
        check([e["event_type"] for e in records(ev_page)] == ["SalaryRaised"],
              f"events limit=1&offset=3: {ev_page}")
        st_rows = records(stream)
        check([(int(e["seq"]), e["event_type"]) for e in st_rows] ==
              [(1, "EmployeeHired"), (2, "SalaryRaised")], f"stream E1 in seq order: {st_rows}")
        check(no_stream["rows"] == [] and columns(no_stream) == columns(evs),
              f"a stream without events: zero rows: {no_stream}")
        pr = {r["department"]: r for r in records(proj)}
        check(set(pr) == {"Ops", "R&D"} and str(pr["Ops"]["employees"]) == "2"
              and str(pr["Ops"]["payroll"]) == "170", f"projection rows: {pr}")


def test_default_page_is_1000_rows():
    s, d = hr_server()
    with s:
        script = "".join(f"EXECUTE HireEmployee(employee_id := 'E{i:04d}', name := 'n{i}', "
                         f"department := 'D', salary := {i});\n" for i in range(1001))
        st, b = d.run(script)
        check(st == 200, f"1001 hires: {st} {str(b)[:300]}")
        full, more, evs, evs_more = tables(d, [
            "/api/aggregates/Employee", "/api/aggregates/Employee?limit=1001",
            "/api/aggregates/Employee/events", "/api/aggregates/Employee/events?offset=1000"])
        check(len(full["rows"]) == 1000, f"default limit: {len(full['rows'])} rows")
        check(len(more["rows"]) == 1001, f"limit=1001: {len(more['rows'])} rows")
        check(len(evs["rows"]) == 1000, f"events default limit: {len(evs['rows'])} rows")
        check([r["stream_id"] for r in records(evs_more)] == ["E1000"],
              f"events offset=1000: {evs_more['rows']}")


def test_route_errors():
    s, d = hr_server()
    with s:
        for path in ["/api/aggregates/Nope", "/api/aggregates/Nope/E1",
                     "/api/aggregates/Nope/events", "/api/aggregates/Nope/events/E1",
                     "/api/aggregates/employee",  # names are case-sensitive
                     "/api/aggregates/Nope/inspect/input/t",
                     "/api/aggregates/Nope/inspect/output/t",
                     "/api/projections/Nope/query"]:
            error(d.get(path), 404)
        for path in ["/api/aggregates/Emp%20loyee", "/api/aggregates/Emp%27loyee",
                     "/api/aggregates/Emp%22loyee/events", "/api/aggregates/a%20b/E1",
                     "/api/aggregates/a%27b/events/E1",
                     "/api/aggregates/Employee/inspect/input/a%20b",
                     "/api/aggregates/Employee/inspect/output/a%27b",
                     "/api/aggregates/Employee?limit=x", "/api/aggregates/Employee?offset=-1",
                     "/api/aggregates/Employee/events?limit=100001"]:
            error(d.get(path), 400)
        for kind in ("input", "output"):
            error(d.get(f"/api/aggregates/Employee/inspect/{kind}/t$x"), 403, "schema-like")
            error(d.get(f"/api/aggregates/Employee/inspect/{kind}/Employee%24Events"), 403)
            error(d.get(f"/api/aggregates/Employee/inspect/{kind}/absent"), 404)
        # the mount's unknown paths answer the envelope too
        st, _, b = d.get("/api/nothing/here")
        check(st == 404, f"unknown path: {st} {b!r}")


def test_health_info_create_export():
    s, d = hr_server()
    with s:
        for path in ("/health", "/api/health"):
            st, _, b = d.get(path)
            check(st == 200 and b == {"status": "ok"}, f"{path}: {st} {b!r}")
        st, h, b = d.get("/info")
        check(st == 200 and h.get("content-type", "").startswith("application/json"),
              f"/info: {st} {h}")
        check(isinstance(b.get("version"), str) and b["version"], f"version: {b}")
        check(b.get("readonly") is False, f"readonly: {b}")
        check(b.get("concept_counts") == {"aggregates": 1, "commands": 2, "events": 2,
                                          "decisions": 2, "projections": 1, "templates": 0,
                                          "eventstores": 0}, f"concept counts: {b}")
        st, _, b2 = d.get("/api/info")
        check(st == 200 and b2 == b, f"/api/info: {st} {b2}")

        st, _, b = d.post("/api/deql/create", {"deql": "CREATE EVENT Fired (reason STRING);"})
        check(st == 200 and b.get("status") == "ok", f"create: {st} {b}")
        error(d.post("/api/deql/create", {"deql": "CREATE EVENT Fired (reason STRING);"}), 409)
        st, _, b = d.post("/api/deql/create",
                          {"deql": "CREATE OR REPLACE EVENT Fired (reason STRING, at INT);"})
        check(st == 200, f"create or replace: {st} {b}")
        for text in ["EXECUTE HireEmployee(employee_id := 'X', name := 'x', department := 'd',"
                     " salary := 1);",
                     "SELECT 1;", "CREATE TABLE t AS VALUES (1);", "INSPECT DECISION Hire FROM t"
                     " INTO o;", "DROP TABLE t;", "CREATE EVENT (;"]:
            error(d.post("/api/deql/create", {"deql": text}), 400)
        error(d.post("/api/deql/create", {"sql": "CREATE EVENT Y ();"}), 400)
        st, _, b = d.get("/info")
        check(b["concept_counts"]["events"] == 3, f"one event more: {b}")

        st, h, export = d.get("/api/deql/export")
        check(st == 200 and h.get("content-type", "").startswith("text/plain"),
              f"export: {st} {h}")
        export = export.decode() if isinstance(export, bytes) else export
        check("CREATE OR REPLACE EVENT Fired (reason STRING, at INT)" in export
              and "CREATE DECISION Hire" in export and "CREATE PROJECTION Headcount" in export,
              f"export text: {export}")
        with Server() as fresh:
            f = DeQL(fresh)
            st, _, b = f.post("/api/deql/create", {"deql": export})
            check(st == 200, f"re-applying the export: {st} {b}")
            st, _, again = f.get("/api/deql/export")
            again = again.decode() if isinstance(again, bytes) else again
            check(st == 200 and again == export, f"export of the copy differs:\n{again}")
            st, _, b = f.get("/info")
            check(b["concept_counts"]["events"] == 3 and b["concept_counts"]["decisions"] == 2,
                  f"the copy's counts: {b}")


def test_query_route():
    s, d = hr_server()
    with s:
        hire(d, "E1", "Ann", "R&D", 100)
        ok = []
        for sql in ["SELECT 1 AS x, 'a' AS y",
                    "WITH t(v) AS (SELECT 2) SELECT v FROM t",
                    "select name from DeReg.\"Employee$Agg\"",
                    "SELECT * FROM DeReg.\"Headcount\"",
                    "SELECT replace('abc', 'b', 'x') AS r"]:  # the function, not REPLACE INTO
            st, h, b = d.post("/api/query", {"sql": sql})
            check(st == 200 and h.get("content-type") == ARROW, f"{sql}: {st} {b!r}"[:300])
            ok.append(b)
        one, two, names, head, rep = decode_many(ok)
        check(rep["rows"] == [["axc"]], f"replace(): {rep}")
        check(one["rows"] == [["1", "a"]] and columns(one) == ["x", "y"], f"SELECT 1: {one}")
        check(two["rows"] == [["2"]], f"WITH: {two}")
        check(names["rows"] == [["Ann"]], f"$Agg: {names}")
        check(records(head)[0]["department"] == "R&D", f"projection: {head}")
        for sql in ["DELETE FROM DeReg.\"Employee$Events\"",
                    "INSERT INTO x VALUES (1)",
                    "CREATE TABLE x (a)",
                    "DROP TABLE x",
                    "UPDATE x SET a = 1",
                    "WITH t AS (SELECT 1) DELETE FROM DeReg.\"Employee$Events\"",
                    "WITH t AS (SELECT 1) INSERT INTO x SELECT * FROM t",
                    "WITH t AS (SELECT 1) UPDATE x SET a = 1",
                    "VALUES (1)",
                    "WITH t AS (SELECT 1) REPLACE INTO x SELECT * FROM t",
                    "EXPLAIN SELECT 1"]:
            error(d.post("/api/query", {"sql": sql}), 403)
        for sql in ["SELECT FROM WHERE", "SELECT * FROM no_such_table",
                    "SELECT nope FROM DeReg.\"Employee$Agg\"", "SELECT 'unterminated"]:
            error(d.post("/api/query", {"sql": sql}), 400)
        error(d.post("/api/query", {"deql": "SELECT 1"}), 400)
        # a mutating word only inside a string or a quoted name is fine
        st, _, b = d.post("/api/query", {"sql": "SELECT 'DELETE' AS \"drop\""})
        check(st == 200, f"keyword in a string: {st} {b!r}"[:300])
        # nothing changed
        check(len(d.rows("/api/aggregates/Employee/events")) == 1, "the events are intact")

