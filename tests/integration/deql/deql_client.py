"""Helpers for the DeQL dialect's tests (docs/dialects/deql.md, seed 003): a client for the
/deql mount that runs scripts (POST /api/deql/run), reads tables (Arrow IPC answers, decoded
by the independent apache-arrow reader through tests/integration/decode_arrow.mjs) and checks
the {"error": "..."} envelope; and a sample registry (an HR domain)."""
import http.client
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

    def __init__(self, s, prefix="/deql", key=None, session=None, port=None):
        self.s = s
        self.prefix = prefix
        self.key = key
        self.session = session
        self.port = port  # another port of the server (a --dialect-listen listener)

    def with_session(self, session):
        return DeQL(self.s, self.prefix, self.key, session, self.port)

    def headers(self, extra=None):
        h = {}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        if self.session:
            h["X-DeQL-Session"] = self.session
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30) \
            if self.port else None
        try:
            return self.s.request(method, self.prefix + path, body=body,
                                  headers=self.headers(headers), conn=conn)
        finally:
            if conn:
                conn.close()

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
    st, h, b = resp
    check(st == status, f"want {status}, got {st} {b!r}"[:400])
    check(h.get("content-type", "").startswith("application/json"),
          f"error content type: {h.get('content-type')}")
    check(isinstance(b, dict) and isinstance(b.get("error"), str) and b["error"],
          f"not a DeQL error: {b!r}"[:300])
    if contains:
        check(contains.lower() in b["error"].lower(), f"{b['error']!r} lacks {contains!r}")
    return b


def registry_server(script, extra=None):
    """A server without keys (extra: more flags) with script applied: (server, DeQL client)."""
    s = Server(extra=extra)
    d = DeQL(s)
    try:
        d.ok_run(script)
    except BaseException:
        s.cleanup()
        raise
    return s, d


def hr_server(extra=None):
    """A server without keys with the HR registry: (server, DeQL client)."""
    return registry_server(HR, extra)


def decode_many(bodies):
    """Decodes several Arrow IPC streams in one run of the reader: a list of tables."""
    for b in bodies:
        check(isinstance(b, bytes), f"not an Arrow stream: {b!r}"[:300])
    if not bodies:
        return []
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, body in enumerate(bodies):
            paths.append(os.path.join(d, f"t{i}.arrows"))
            with open(paths[-1], "wb") as f:
                f.write(body)
        p = subprocess.run(["node", DECODER] + paths, capture_output=True, timeout=120,
                           cwd=os.path.join(REPO, "tests"))
    check(p.returncode == 0, f"apache-arrow could not decode:\n{p.stderr.decode()[-2000:]}")
    out = json.loads(p.stdout)
    return [out[f"t{i}"] for i in range(len(bodies))]


def tables(d, paths):
    """GET every path of DeQL client d (each must answer 200 Arrow): their decoded tables,
    decoded together."""
    bodies = []
    for path in paths:
        st, h, b = d.get(path)
        check(st == 200, f"GET {path}: {st} {b!r}"[:400])
        check(h.get("content-type") == ARROW, f"GET {path}: content type {h.get('content-type')}")
        bodies.append(b)
    return decode_many(bodies)


def columns(table):
    return [c["name"] for c in table["columns"]]


def arrow_answer(resp, what=""):
    """The Arrow body of a 200 answer (status and content type checked)."""
    st, h, b = resp
    check(st == 200, f"{what}: want 200, got {st} {b!r}"[:400])
    check(h.get("content-type") == ARROW, f"{what}: content type {h.get('content-type')}")
    return b


# A bank: SENSITIVE and VOLATILE fields, a two-branch decision, a balance guard, a STATE AS
# that can return several rows, and a globally unique user name (User).
BANK = """
CREATE AGGREGATE Account;
CREATE COMMAND OpenAccount (account_id STRING, owner STRING, pin STRING SENSITIVE,
                            otp STRING VOLATILE);
CREATE COMMAND Deposit (account_id STRING, amount INT);
CREATE COMMAND Withdraw (account_id STRING, amount INT);
CREATE COMMAND Probe (account_id STRING);
CREATE EVENT AccountOpened (owner STRING, pin STRING SENSITIVE, otp STRING VOLATILE);
CREATE EVENT Deposited (amount INT);
CREATE EVENT LargeDepositFlagged (flagged INT);
CREATE EVENT Withdrawn (amount INT);
CREATE EVENT Probed ();
CREATE DECISION Open FOR Account ON COMMAND OpenAccount
  STATE AS SELECT COUNT(*) AS opened FROM DeReg."Account$Events" WHERE stream_id = :account_id
  EMIT AS SELECT EVENT AccountOpened (owner := :owner, pin := :pin, otp := :otp)
  WHERE opened = 0;
CREATE DECISION Dep FOR Account ON COMMAND Deposit
  STATE AS SELECT COUNT(*) AS n FROM DeReg."Account$Events"
           WHERE stream_id = :account_id AND event_type = 'AccountOpened'
  EMIT AS BRANCH Normal SELECT EVENT Deposited (amount := :amount) WHERE n > 0 AND :amount > 0
  UNION ALL
  BRANCH Large SELECT EVENT LargeDepositFlagged (flagged := :amount)
  WHERE n > 0 AND :amount >= 1000;
CREATE DECISION Wd FOR Account ON COMMAND Withdraw
  STATE AS SELECT COALESCE(SUM(CASE event_type WHEN 'Deposited' THEN amount
                                               WHEN 'Withdrawn' THEN -amount ELSE 0 END), 0)
                  AS balance
           FROM DeReg."Account$Events" WHERE stream_id = :account_id
  EMIT AS SELECT EVENT Withdrawn (amount := :amount) WHERE balance >= :amount;
CREATE DECISION Pr FOR Account ON COMMAND Probe
  STATE AS SELECT event_type FROM DeReg."Account$Events" WHERE stream_id = :account_id
  EMIT AS SELECT EVENT Probed ();
CREATE AGGREGATE User;
CREATE COMMAND RegisterName (user_id STRING, username STRING);
CREATE EVENT NameRegistered (username STRING);
CREATE DECISION Reg FOR User ON COMMAND RegisterName
  STATE AS SELECT COUNT(*) AS taken FROM DeReg."User$Events"
           WHERE event_type = 'NameRegistered' AND username = :username
  EMIT AS SELECT EVENT NameRegistered (username := :username) WHERE taken = 0;
"""


def bank_server(extra=None):
    """A server without keys with the BANK registry: (server, DeQL client)."""
    return registry_server(BANK, extra)


def event_count(s):
    """Events in the default database (the native API's head)."""
    return s.head()
