"""DeReg metadata over HTTP: GET /api/dereg/<group>[/<name>[/<sub>]] as Arrow IPC
(docs/dialects/deql.md "Metadata tables"), and its 400/404 answers."""
import re

from deql_client import HR, columns, error, records, registry_server, tables
from harness import check

EXTRA = """
CREATE AGGREGATE Shelf (shelf_id STRING KEY, label STRING, secret STRING SENSITIVE);
CREATE TEMPLATE Counter (Name, Step) AS (
  CREATE AGGREGATE {{Name}};
  CREATE COMMAND {{Name}}Bump ({{Name}}_id STRING);
  CREATE EVENT {{Name}}Bumped (step INT);
  CREATE DECISION {{Name}}Bumper FOR {{Name}} ON COMMAND {{Name}}Bump
    EMIT AS SELECT EVENT {{Name}}Bumped (step := {{Step}});
);
USE TEMPLATE Counter WITH (Name = Clicks, Step = 3);
CREATE COMMAND Tag (shelf_id STRING, t INT);
CREATE EVENT Tagged (t INT);
CREATE DECISION Tagger FOR Shelf ON COMMAND Tag
  EMIT AS SELECT EVENT Tagged (t := :t) WHERE :t > 0
  UNION ALL SELECT EVENT Tagged (t := 0) WHERE :t < 0;
CREATE EVENTSTORE Main WITH (durable.type = 'parquet', durable.path = '/x');
"""


def test_dereg_groups_and_details():
    s, d = registry_server(HR + EXTRA)
    with s:
        groups = ["aggregates", "commands", "events", "decisions", "projections", "templates",
                  "eventstores"]
        got = tables(d, [f"/api/dereg/{g}" for g in groups] + [
            "/api/dereg/aggregates/Employee", "/api/dereg/decisions/Hire",
            "/api/dereg/commands/HireEmployee/fields", "/api/dereg/aggregates/Shelf/fields",
            "/api/dereg/events/SalaryRaised/fields", "/api/dereg/decisions/Raise/emits",
            "/api/dereg/templates/Counter/params", "/api/dereg/templates/Counter/instances",
            "/api/dereg/eventstores/Main", "/api/dereg/inspections"])
        (aggs, cmds, evs, decs, projs, tpls, stores, emp, hire, hire_f, shelf_f, raised_f,
         emits, params, insts, main, insp) = got
        names = {g: [r["name"] for r in records(t)] for g, t in zip(groups, got)}
        check(names["aggregates"] == ["Clicks", "Employee", "Shelf"], f"aggregates: {names}")
        check(names["commands"] == ["ClicksBump", "HireEmployee", "RaiseSalary", "Tag"],
              f"commands: {names}")
        check(names["events"] == ["ClicksBumped", "EmployeeHired", "SalaryRaised", "Tagged"],
              f"events: {names}")
        check(names["decisions"] == ["ClicksBumper", "Hire", "Raise", "Tagger"], f"decisions: {names}")
        check(names["projections"] == ["Headcount"] and names["templates"] == ["Counter"]
              and names["eventstores"] == ["Main"], f"others: {names}")
        e = records(emp)
        check(len(e) == 1 and str(e[0]["decision_count"]) == "2"
              and e[0]["template_name"] is None, f"Employee row: {e}")
        check(columns(aggs) == ["name", "field_count", "decision_count", "definition",
                                "template_name"], f"aggregates columns: {columns(aggs)}")
        clicks = next(r for r in records(aggs) if r["name"] == "Clicks")
        check(clicks["template_name"] == "Counter", f"made by the template: {clicks}")
        c = {r["name"]: r for r in records(cmds)}
        check(c["HireEmployee"]["aggregate"] == "Employee"
              and c["HireEmployee"]["key_field"] == "employee_id"
              and str(c["HireEmployee"]["field_count"]) == "4", f"command row: {c}")
        h = records(hire)
        check(len(h) == 1 and h[0]["aggregate"] == "Employee"
              and h[0]["command"] == "HireEmployee" and h[0]["has_guard"] is True
              and h[0]["emitted_events"] == "EmployeeHired"
              and "COUNT(*)" in h[0]["state_as_sql"], f"decision row: {h}")
        f = records(hire_f)
        check([(r["field_name"], r["field_type"], int(r["ordinal"])) for r in f] ==
              [("employee_id", "STRING", 1), ("name", "STRING", 2), ("department", "STRING", 3),
               ("salary", "INT", 4)], f"command fields: {f}")
        sf = {r["field_name"]: r for r in records(shelf_f)}
        check(sf["shelf_id"]["is_key"] is True and sf["label"]["is_key"] is False
              and sf["secret"]["is_sensitive"] is True and sf["label"]["is_volatile"] is False,
              f"aggregate fields: {sf}")
        check([r["field_name"] for r in records(raised_f)] == ["salary", "amount"],
              f"event fields: {raised_f}")
        em = records(emits)
        check(len(em) == 1 and em[0]["event_name"] == "SalaryRaised"
              and int(em[0]["branch_index"]) == 1
              and re.fullmatch(r"b_[0-9a-f]{16}", em[0]["branch_id"] or "")
              and "salary := salary + :amount" in em[0]["assignments"], f"emits: {em}")
        check([r["param_name"] for r in records(params)] == ["Name", "Step"], f"params: {params}")
        ins = records(insts)
        check(len(ins) == 1 and "AGGREGATE Clicks" in ins[0]["objects"]
              and "DECISION ClicksBumper" in ins[0]["objects"], f"instances: {ins}")
        m = records(main)
        check(len(m) == 1 and str(m[0]["option_count"]) == "2"
              and "durable.type" in m[0]["options"], f"eventstore: {m}")
        check(insp["rows"] == [], f"no inspections yet: {insp}")
        dec = {r["name"]: r for r in records(decs)}
        check(dec["ClicksBumper"]["guard_sql"] is None and dec["ClicksBumper"]["has_guard"] is False,
              f"no guard: null guard_sql: {dec['ClicksBumper']}")
        check(dec["Tagger"]["guard_sql"] == "(:t > 0) OR (:t < 0)"
              and str(dec["Tagger"]["branch_count"]) == "2", f"two guards: {dec['Tagger']}")
        # one guarded branch: guard_sql is that guard (docs/dialects/deql.md)
        check(h[0]["guard_sql"] == "hired = 0", f"decision Hire's guard_sql: {h[0]['guard_sql']!r}")


def test_dereg_errors():
    s, d = registry_server(HR)
    with s:
        for path in ["/api/dereg/widgets", "/api/dereg/widgets/x",
                     "/api/dereg/commands/NoSuch", "/api/dereg/commands/hireemployee",
                     "/api/dereg/commands/HireEmployee/emits", "/api/dereg/decisions/Hire/nope",
                     "/api/dereg/decisions/NoSuch/emits", "/api/dereg/templates/NoSuch/params",
                     "/api/dereg/inspections/NoSuch", "/api/dereg/inspection/NoSuch"]:
            error(d.get(path), 404)
        for path in ["/api/dereg/commands/a%20b", "/api/dereg/commands/a%27b",
                     "/api/dereg/events/x%22y/fields", "/api/dereg/a%20b",
                     "/api/dereg/commands/HireEmployee/f%20x"]:
            error(d.get(path), 400)
        empty, = tables(d, ["/api/dereg/templates"])
        check(empty["rows"] == [] and "params" in columns(empty), f"no templates: {empty}")
