"""Server modes: --deql-readonly (403 to writes, reads fine), --dialect-listen deql=... (the
mount at the root of its own port) and API keys (401 without a key, 403 for a read key's
writes)."""
from deql_client import HR, DeQL, error, records, tables
from harness import Server, check, cli_keys, dialect_port

HIRE = {"employee_id": "E1", "name": "Ann", "department": "R&D", "salary": 100}


def test_readonly_mode():
    s = Server()
    with s:
        d = DeQL(s)
        d.ok_run(HR)
        st, _, b = d.execute("Employee", "HireEmployee", HIRE)
        check(st == 200, f"hire: {st}")
        s.restart(extra=["--deql-readonly", "true"])
        head = s.head()
        error(d.execute("Employee", "RaiseSalary", {"employee_id": "E1", "amount": 1}), 403,
              "read-only")
        error(d.post("/api/deql/create", {"deql": "CREATE EVENT X (a INT);"}), 403)
        for script in ["CREATE EVENT X (a INT);",
                       "EXECUTE RaiseSalary(employee_id := 'E1', amount := 1)",
                       "SELECT 1; EXECUTE RaiseSalary(employee_id := 'E1', amount := 1)"]:
            st, body = d.run(script)
            check(st == 403 and "error" in body, f"read-only run {script}: {st} {body}")
        check(s.head() == head, "nothing written in read-only mode")
        st, _, info = d.get("/info")
        check(st == 200 and info["readonly"] is True, f"/info: {info}")
        st, body = d.run("SELECT name FROM DeReg.\"Employee$Agg\"")
        check(st == 200 and body["results"][0]["rows"] == [["Ann"]], f"read run: {st} {body}")
        agg, cmds = tables(d, ["/api/aggregates/Employee", "/api/dereg/commands"])
        check(len(agg["rows"]) == 1 and len(cmds["rows"]) == 2, "reads work")
        st, _, b = d.post("/api/query", {"sql": "SELECT 1"})
        check(st == 200, f"query in read-only mode: {st}")
        st, _, b = d.get("/api/deql/export")
        check(st == 200 and b"HireEmployee" in b, f"export: {st}")


def test_own_port():
    s = Server(extra=["--dialect-listen", "deql=127.0.0.1:0"])
    with s:
        root = DeQL(s, prefix="", port=dialect_port(s, "deql"))
        st, _, b = root.get("/health")
        check(st == 200 and b == {"status": "ok"}, f"root /health: {st} {b}")
        root.ok_run(HR)
        st, _, b = root.execute("Employee", "HireEmployee", HIRE)
        check(st == 200, f"execute on the own port: {st} {b!r}"[:300])
        mine, = tables(root, ["/api/aggregates/Employee"])
        mounted, = tables(DeQL(s), ["/api/aggregates/Employee"])
        check(records(mine) == records(mounted) and len(mine["rows"]) == 1,
              f"same data at /deql: {mine} {mounted}")
        st, _, b = root.get("/v1/databases")
        check(st == 404, f"the native API is not on the dialect's port: {st}")
        error(root.get("/api/aggregates/Nope"), 404)


def test_api_keys():
    s = Server(start=False)
    keys = cli_keys(s.data, "read", "write", "admin")
    s.start()
    with s:
        admin = DeQL(s, key=keys["admin"])
        admin.ok_run(HR)
        anon, reader, writer = DeQL(s), DeQL(s, key=keys["read"]), DeQL(s, key=keys["write"])
        st, _, b = anon.get("/health")
        check(st == 200, f"health needs no key: {st}")
        for resp in [anon.get("/info"), anon.get("/api/aggregates/Employee"),
                     anon.execute("Employee", "HireEmployee", HIRE),
                     anon.post("/api/deql/run", {"deql": "SELECT 1"}),
                     anon.get("/api/dereg/commands"),
                     DeQL(s, key="ak_not_a_key").get("/info")]:
            error(resp, 401)
        error(reader.execute("Employee", "HireEmployee", HIRE), 403)
        error(reader.post("/api/deql/create", {"deql": "CREATE EVENT X ();"}), 403)
        error(reader.post("/api/deql/run", {"deql": "SELECT 1"}), 403)
        st, _, b = writer.execute("Employee", "HireEmployee", HIRE)
        check(st == 200, f"write key executes: {st} {b!r}"[:300])
        agg, = tables(reader, ["/api/aggregates/Employee"])
        check(len(agg["rows"]) == 1, f"read key reads: {agg}")
        st, _, b = reader.post("/api/query", {"sql": "SELECT 1"})
        check(st == 200, f"read key queries: {st} {b!r}"[:200])
        # the key may come as X-API-Key too
        st, _, b = s.request("GET", "/deql/info", headers={"X-API-Key": keys["read"]})
        check(st == 200, f"X-API-Key: {st} {b}")
