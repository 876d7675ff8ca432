"""`annals deql`, the DeQL shell (docs/dialects/deql.md, "Shell"): the real binary against a real
server, with -c, -f, piped stdin and a terminal; printed tables, statuses, errors and exit
statuses."""
import os
import pty
import select
import subprocess
import tempfile
import time

from deql.deql_client import HR  # the sample registry the dialect's own tests use
from harness import Server, binary, check, cli_keys

HIRE = """EXECUTE HireEmployee(employee_id := 'EMP-001', name := 'Ann', department := 'R;D',
                     salary := 100);
/* a ';' in a comment */ EXECUTE HireEmployee(employee_id := 'EMP-002', name := 'Bob''s',
                     department := 'Ops', salary := 90);
"""


def url(s):
    return f"http://127.0.0.1:{s.port}/deql"


def shell(s, args, stdin=None, key=None, env_url=False, timeout=60):
    """Runs `annals deql` against server s: (exit code, stdout, stderr). The URL goes as --url
    unless env_url (then as ANNALS_DEQL_URL); key as ANNALS_KEY."""
    env = dict(os.environ)
    env.pop("ANNALS_KEY", None)
    env.pop("ANNALS_DEQL_URL", None)
    if key:
        env["ANNALS_KEY"] = key
    argv = [binary(), "deql"] + ([] if env_url or s is None else ["--url", url(s)]) + list(args)
    if env_url:
        env["ANNALS_DEQL_URL"] = url(s)
    p = subprocess.run(argv, input=(stdin or "").encode(), capture_output=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(s, args, **kw):
    rc, out, err = shell(s, args, **kw)
    check(rc == 0, f"annals deql {args}: exit {rc}\n{out}\n{err}")
    return out


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def test_deql_shell_file_tables_and_statuses():
    with Server() as s, tempfile.TemporaryDirectory() as d:
        long = "x" * 100
        path = write(d, "hr.deql", HR + HIRE + f"""
SELECT aggregate_id, name, salary, NULL AS gone, 1.5 AS r, '{long}' AS long
  FROM DeReg."Employee$Agg" ORDER BY aggregate_id;
CREATE TABLE t AS VALUES (1), (2), (3);
SELECT name FROM DeReg."Employee$Agg" WHERE 0;
VALIDATE DEREG;
DROP TABLE t
""")
        out = ok(s, ["-f", path])
        lines = out.splitlines()
        check(lines[0] == "OK: 8 definitions", f"definitions go together: {lines[:2]}")
        check("| EmployeeHired | EMP-001   |" in out, f"EXECUTE's table:\n{out}")
        check('"department":"R;D"' in out, f"';' inside a string split the statement:\n{out}")
        check("| EMP-002      | Bob's |     90 | NULL | 1.5 |" in out,
              f"row with NULL, a right-aligned number, a real:\n{out}")
        check("x" * 59 + "\u2026 |" in out and long not in out, f"long cell not cut:\n{out}")
        head = next(i for i, ln in enumerate(lines) if ln.startswith("| aggregate_id"))
        rule = lines[head - 1]
        check(rule.startswith("+--") and rule.endswith("+") and lines[head + 1] == rule,
              f"box rule: {rule!r}")
        widths = {len(lines[i]) for i in range(head - 1, head + 5)}
        check(len(widths) == 1, f"lines of the table are not aligned:\n{out}")
        check(lines[head + 4] == rule and lines[head + 5] == "2 rows",
              f"closing rule and row count: {lines[head + 4:head + 6]}")
        check("OK: table t (3 rows)" in lines, f"CREATE TABLE status:\n{out}")
        check("| name |" in out and "0 rows" in lines, f"empty table:\n{out}")
        check("OK: DeReg is valid" in lines and "OK: dropped table t" in lines,
              f"VALIDATE and DROP statuses:\n{out}")


def test_deql_shell_file_stops_at_first_failure():
    with Server() as s, tempfile.TemporaryDirectory() as d:
        path = write(d, "bad.deql", "SELECT 1 AS one;\n\n-- next\nSELECT *\n  FROM nowhere;\n"
                                    "SELECT 2 AS two;\n")
        rc, out, err = shell(s, ["-f", path])
        check(rc == 1, f"exit {rc}: {out} {err}")
        check("| one |" in out and "two" not in out, f"ran on after the failure:\n{out}")
        check(err.startswith("ERROR: line 4 (QUERY): no such table: nowhere"),
              f"error, with the file's line: {err!r}")
        # a syntax error: line and column in the -c text
        rc, out, err = shell(s, ["-c", "SELECT 'a';  SELEC 3; SELECT 4"])
        check(rc == 1 and "| a   |" in out and "4" not in out, f"-c: {rc} {out} {err}")
        check(err.startswith("ERROR: line 1, column 14: "), f"-c error position: {err!r}")


def test_deql_shell_rejection():
    with Server() as s:
        ok(s, ["-c", HR + HIRE])
        rc, out, err = shell(s, ["-c", "EXECUTE RaiseSalary(employee_id := 'EMP-001', "
                                       "amount := -5);\nSELECT 1;"])
        check(rc == 1 and out == "", f"rejection: {rc} {out!r} {err}")
        lines = err.splitlines()
        check(lines[0].startswith("ERROR: line 1 (EXECUTE): command RaiseSalary rejected"),
              f"first line: {lines}")
        check(lines[1].startswith("  branch 1 (b_") and
              lines[1].endswith("guard_failed: WHERE salary IS NOT NULL AND :amount > 0"),
              f"branch and guard: {lines}")
        check('  state: {"salary":100}' in lines, f"state: {lines}")
        check('  values: {"employee_id":"EMP-001","amount":-5}' in lines, f"values: {lines}")


def test_deql_shell_stdin_and_sessions():
    with Server() as s:
        script = ("SELECT 'a;b' AS \"semi;colon\", -- comment ;\n"
                  "       (1 + 2) AS three;\n"
                  "CREATE TABLE kept AS VALUES ('x');\n\\q\nSELECT 'never';\n")
        rc, out, err = shell(s, ["--session", "sess-1"], stdin=script, env_url=True)
        check(rc == 0, f"stdin: {rc} {out} {err}")
        check("| semi;colon | three |" in out and "| a;b        |     3 |" in out,
              f"piped statements:\n{out}")
        check("OK: table kept (1 row)" in out and "never" not in out, f"\\q:\n{out}")
        # the session's table is still there for the same session, not for another one
        rc, out, err = shell(s, ["--session", "sess-2", "-c", "DROP TABLE kept"])
        check(rc == 1 and "ERROR: " in err and "not in the session" in err,
              f"another session sees the table: {rc} {out} {err}")
        out = ok(s, ["--session", "sess-1", "-f", "-"],
                 stdin="SELECT * FROM kept;\nDROP TABLE kept;")
        check(out.endswith("| x       |\n+---------+\n1 row\nOK: dropped table kept\n"),
              f"same session: {out!r}")


def test_deql_shell_key():
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        keys = cli_keys(data, "write")
        with Server(data_dir=data) as s:
            rc, out, err = shell(s, ["-c", "SELECT 1 AS one"])
            check(rc == 1 and err.startswith("ERROR: "), f"no key: {rc} {out} {err}")
            check("| one |" in ok(s, ["-c", "SELECT 1 AS one"], key=keys["write"]),
                  "ANNALS_KEY")
            check("| one |" in ok(s, ["--key", keys["write"], "-c", "SELECT 1 AS one"]),
                  "--key")


def test_deql_shell_usage_and_unreachable():
    rc, out, _ = shell(None, ["--help"])
    check(rc == 0 and "-f FILE" in out and "--session" in out, f"--help: {rc} {out}")
    for args in (["--bogus"], ["-c"], ["-c", "SELECT 1", "-f", "x"], ["--session", "a b"],
                 ["-f", "/nonexistent/file.deql"]):
        rc, out, err = shell(None, args)
        check(rc == 2 and err.strip(), f"{args}: exit {rc} {err!r}")
    rc, out, err = shell(None, ["--url", "http://127.0.0.1:1/deql", "-c", "SELECT 1"])
    check(rc == 2 and "cannot reach" in err, f"unreachable: {rc} {err!r}")
    p = subprocess.run([binary(), "help"], capture_output=True, text=True)
    check(p.returncode == 0 and "deql" in p.stdout, f"annals help does not list deql: {p.stdout}")


def read_until(fd, want, timeout=10.0):
    buf = b""
    deadline = time.monotonic() + timeout
    while want.encode() not in buf:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            raise AssertionError(f"no {want!r} from the shell; got {buf.decode()!r}")
        try:
            buf += os.read(fd, 4096)
        except OSError:
            break
    return buf.decode()


def test_deql_shell_terminal():
    with Server() as s:
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(binary(), ["annals", "deql", "--url", url(s)])
        try:
            read_until(fd, "deql> ")
            os.write(fd, b"SELECT 1 AS x,\n")
            read_until(fd, "   -> ")
            os.write(fd, b"  'y' AS y; -- done\n")
            got = read_until(fd, "deql> ")
            check("| x | y |" in got and "1 row" in got, f"a statement over two lines: {got!r}")
            os.write(fd, b"SELEC 2;\n")
            got = read_until(fd, "deql> ")
            check("ERROR: line 1, column 1:" in got, f"an error, and the shell goes on: {got!r}")
            os.write(fd, b"SELECT 3 AS z;\n")
            check("| 3 |" in read_until(fd, "deql> "), "after an error")
            os.write(fd, b"\\q\n")
            _, st = os.waitpid(pid, 0)
            pid = 0
            check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 1,
                  f"exit status after a failed statement: {st}")
        finally:
            if pid:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            os.close(fd)
