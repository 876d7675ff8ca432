"""The SQL lock-down over HTTP: a runaway query is stopped by the step budget
(--deql-sql-steps), extensions, ATTACH and PRAGMA are refused, and a projection whose SQL does
not compile is refused at CREATE without changing anything."""
from deql_client import HR, error, registry_server
from harness import check

RUNAWAY = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"


def test_runaway_and_forbidden_sql():
    s, d = registry_server(HR + """
CREATE COMMAND Spin (spin_id STRING);
CREATE EVENT Spun ();
CREATE DECISION Spinner FOR Spinning ON COMMAND Spin
  STATE AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)
           SELECT COUNT(*) AS n FROM r
  EMIT AS SELECT EVENT Spun ();
CREATE AGGREGATE Spinning;
""", extra=["--deql-sql-steps", "1000"])
    with s:
        error(d.post("/api/query", {"sql": RUNAWAY}), 422, "step")
        st, body = d.run(RUNAWAY)
        check(st == 422 and body.get("completed") == 0 and body.get("error"),
              f"runaway in a script: {st} {body}")
        head = s.head()
        b = error(d.execute("Spinning", "Spin", {"spin_id": "x"}), 422, "step")
        check(b.get("status") != "rejected", f"a stopped decision is not a rejection: {b}")
        check(s.head() == head, "a stopped decision appends nothing")
        st, _, b = d.get("/health")
        check(st == 200, "the server still answers")
        for sql in ["SELECT load_extension('x')", "SELECT load_extension('/tmp/x.so', 'f')"]:
            error(d.post("/api/query", {"sql": sql}), 403)
            st, body = d.run(sql)
            check(st == 403, f"run {sql}: {st} {body}")
        for sql in ["ATTACH DATABASE '/tmp/x.db' AS x", "PRAGMA table_info('x')",
                    "SELECT 1; ATTACH DATABASE ':memory:' AS m", "PRAGMA writable_schema = 1"]:
            error(d.post("/api/query", {"sql": sql}), 403)
        for script in ["SELECT * FROM pragma_table_info('Employee$Events')",
                       "WITH a AS (SELECT 1) SELECT * FROM pragma_database_list"]:
            st, body = d.run(script)
            check(st == 403, f"pragma function in a script: {st} {body}")


def test_uncompilable_projection_refused():
    s, d = registry_server(HR)
    with s:
        st, _, before = d.get("/api/deql/export")
        for text in ['CREATE PROJECTION Bad AS SELECT nope FROM DeReg."Employee$Events";',
                     'CREATE PROJECTION Bad AS SELECT * FROM DeReg."Missing$Events";',
                     'CREATE PROJECTION Bad AS SELECT FROM WHERE;',
                     "CREATE PROJECTION Bad AS SELECT load_extension('x');",
                     "CREATE EVENT Fresh (a INT);\nCREATE PROJECTION Bad AS SELECT nope;"]:
            error(d.post("/api/deql/create", {"deql": text}), 400)
            st, body = d.run(text)
            check(st == 400, f"run {text}: {st} {body}")
        error(d.get("/api/dereg/projections/Bad"), 404)
        error(d.get("/api/dereg/events/Fresh"), 404)
        st, _, after = d.get("/api/deql/export")
        check(after == before, "a refused projection changed the registry")
        st, _, b = d.execute("Employee", "HireEmployee", {"employee_id": "E1", "name": "A",
                                                          "department": "D", "salary": 1})
        check(st == 200, f"the registry still works: {st} {b!r}"[:300])
