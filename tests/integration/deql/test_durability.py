"""The registry and the events survive a restart; a script's definitions are applied all or
nothing."""
from deql_client import HR, error, records, registry_server, tables
from harness import check

BAD = "CREATE EVENT Fresh1 (x INT);\nCREATE EVENT EmployeeHired (y INT);\nCREATE EVENT Fresh2 (x INT);"


def snapshot(d):
    st, _, export = d.get("/api/deql/export")
    check(st == 200, f"export: {st}")
    st, _, info = d.get("/info")
    return export, info["concept_counts"]


def test_registry_and_events_survive_restart():
    s, d = registry_server(HR)
    with s:
        st, _, b = d.execute("Employee", "HireEmployee", {"employee_id": "E1", "name": "Ann",
                                                          "department": "R&D", "salary": 100})
        check(st == 200, f"hire: {st} {b!r}"[:300])
        st, _, b = d.post("/api/deql/create", {"deql": "CREATE EVENT Fired (reason STRING);"})
        check(st == 200, f"create: {st} {b}")
        before = snapshot(d)
        s.restart()
        check(snapshot(d) == before, "the registry after a restart")
        agg, cmds = tables(d, ["/api/aggregates/Employee/E1", "/api/dereg/commands"])
        check([r["name"] for r in records(agg)] == ["Ann"], f"state after restart: {agg}")
        check([r["name"] for r in records(cmds)] == ["HireEmployee", "RaiseSalary"],
              f"commands after restart: {cmds}")
        b = error(d.execute("Employee", "HireEmployee", {"employee_id": "E1", "name": "Ann",
                                                         "department": "R&D", "salary": 100}),
                  422)
        check(b["state"] == {"hired": 1}, f"the decision sees the old event: {b}")
        st, _, b = d.execute("Employee", "RaiseSalary", {"employee_id": "E1", "amount": 1})
        check(st == 200, f"raise after restart: {st} {b!r}"[:300])
        error(d.post("/api/deql/create", {"deql": "CREATE EVENT Fired (reason STRING);"}), 409)


def test_scripts_apply_all_or_nothing():
    s, d = registry_server(HR)
    with s:
        before = snapshot(d)
        error(d.post("/api/deql/create", {"deql": BAD}), 409)
        check(snapshot(d) == before, "a failing create changed the registry")
        st, body = d.run(BAD)
        check(st == 409 and body.get("completed") == 0, f"run: {st} {body}")
        check(snapshot(d) == before, "a failing run changed the registry")
        bad_syntax = "CREATE EVENT Fresh1 (x INT);\nCREATE EVENT Fresh2 (x INT"
        error(d.post("/api/deql/create", {"deql": bad_syntax}), 400)
        bad_name = "CREATE EVENT Fresh1 (x INT); CREATE EVENT Fresh2 (x INT, x INT);"
        error(d.post("/api/deql/create", {"deql": bad_name}), 400)
        check(snapshot(d) == before, "a refused script changed the registry")
        for path in ["/api/dereg/events/Fresh1", "/api/dereg/events/Fresh2"]:
            error(d.get(path), 404)
        # statements before a failing one in a run stay done (each is atomic)
        st, body = d.run("CREATE EVENT Kept (x INT);\nSELECT nope FROM nowhere;")
        check(st == 400 and body.get("completed") == 1, f"run stops: {st} {body}")
        s.restart()
        export, counts = snapshot(d)
        check(counts["events"] == before[1]["events"] + 1 and b"Kept" in export
              and b"Fresh1" not in export, f"after restart: {counts} {export!r}")
