"""Helpers for the DeQL dialect's tests (docs/dialects/deql.md, seed 003): a client for the
/deql mount that runs scripts (POST /api/deql/run), reads tables (Arrow IPC answers, decoded
by the independent apache-arrow reader through tests/integration/decode_arrow.mjs) and checks
the {"error": "..."} envelope; and a sample registry (an HR domain)."""
import json
import os
import subprocess
import tempfile

from harness import REPO, Server, check

DECODER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "decode_arrow.mjs")
ARROW = "application/vnd.apache.arrow.stream"

HR = """
CREATE AGGREGATE Employee;
CREATE COMMAND HireEmployee (employee_id STRING, name STRING, department STRING, salary INT);
CREATE COMMAND RaiseSalary (employee_id STRING, amount INT);
CREATE EVENT EmployeeHired (name STRING, department STRING, salary INT);
CREATE EVENT SalaryRaised (salary INT, amount INT);
CREATE DECISION Hire FOR Employee ON COMMAND HireEmployee
  STATE AS SELECT COUNT(*) AS hired FROM DeReg."Employee$Events"
           WHERE stream_id = :employee_id AND event_type = 'EmployeeHired'
  EMIT AS SELECT EVENT EmployeeHired (name := :name, department := :department,
                                      salary := :salary)
  WHERE hired = 0;
CREATE DECISION Raise FOR Employee ON COMMAND RaiseSalary
  STATE AS SELECT salary FROM DeReg."Employee$Agg" WHERE aggregate_id = :employee_id
  EMIT AS SELECT EVENT SalaryRaised (salary := salary + :amount, amount := :amount)
  WHERE salary IS NOT NULL AND :amount > 0;
CREATE PROJECTION Headcount AS
  SELECT department, COUNT(*) AS employees, SUM(salary) AS payroll
  FROM DeReg."Employee$Agg" GROUP BY department;
"""


def decode_arrow(body):
    """The table of an Arrow IPC stream: {"columns": [{"name","type"}], "rows": [[...]],
    "batches": n}; int64 and timestamps come as decimal strings."""
    check(isinstance(body, bytes), f"not an Arrow stream: {body!r}"[:300])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.arrows")
        with open(path, "wb") as f:
            f.write(body)
        p = subprocess.run(["node", DECODER, path], capture_output=True, timeout=120,
                           cwd=os.path.join(REPO, "tests"))
    check(p.returncode == 0, f"apache-arrow could not decode:\n{p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)["t"]


def records(table):
    """The rows of a decoded table as dicts by column name."""
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, r)) for r in table["rows"]]


class DeQL:
    """The /deql mount of server s (prefix: where it is mounted; key: a Bearer key)."""

    def __init__(self, s, prefix="/deql", key=None, session=None):
        self.s = s
        self.prefix = prefix
        self.key = key
        self.session = session

    def headers(self, extra=None):
        h = {}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        if self.session:
            h["X-DeQL-Session"] = self.session
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None):
        return self.s.request(method, self.prefix + path, body=body,
                              headers=self.headers(headers))

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post(self, path, body, headers=None):
        return self.request("POST", path, body=body, headers=headers)

    def run(self, script, arrow=False):
        """POST /api/deql/run: (status, body); JSON answers unless arrow."""
        h = {} if arrow else {"Accept": "application/json"}
        st, _, b = self.post("/api/deql/run", {"deql": script}, headers=h)
        return st, b

    def ok_run(self, script):
        st, b = self.run(script)
        check(st == 200, f"run: {st} {b}")
        return b

    def table(self, path):
        """GET path: the decoded Arrow table (checks 200 and the content type)."""
        st, h, b = self.get(path)
        check(st == 200, f"GET {path}: {st} {b!r}"[:400])
        check(h.get("content-type") == ARROW, f"GET {path}: content type {h.get('content-type')}")
        return decode_arrow(b)

    def rows(self, path):
        return records(self.table(path))

    def execute(self, agg, command, params):
        return self.post(f"/api/aggregates/{agg}/execute/{command}", {"params": params})


def error(resp, status, contains=None):
    """Checks a DeQL error answer: status and {"error": "..."}."""
    st, _, b = resp
    check(st == status, f"want {status}, got {st} {b!r}"[:400])
    check(isinstance(b, dict) and isinstance(b.get("error"), str) and b["error"],
          f"not a DeQL error: {b!r}"[:300])
    if contains:
        check(contains.lower() in b["error"].lower(), f"{b['error']!r} lacks {contains!r}")
    return b


def hr_server(extra=None):
    """A server without keys with the HR registry: (server, DeQL client)."""
    s = Server(extra=extra)
    d = DeQL(s)
    try:
        d.ok_run(HR)
    except BaseException:
        s.cleanup()
        raise
    return s, d
