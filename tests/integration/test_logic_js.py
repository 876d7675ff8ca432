"""User code in the JavaScript worker over HTTP: JavaScript command handlers whose ctx reads
the server's state (host calls from the worker), and WebAssembly components (the module's
bytes in base64, the JSON-in/JSON-out ABI of docs/design/jsworker.md)."""
import base64
import os
import shutil
import subprocess
import tempfile
import threading

from harness import Server, Skip, binary, check, expect_error

DB = "/v1/databases/default"
HERE = os.path.dirname(os.path.abspath(__file__))

ACCOUNTS = """
function reduce(s, e)
  s = s or {balance = 0}
  if e.type == "Deposited" then s.balance = s.balance + e.data.amount
  else s.balance = s.balance - e.data.amount end
  return s
end
"""

WITHDRAW = """
export function decide(c, ctx) {
  const s = ctx.state("acct-" + c.id);
  const bal = s ? s.balance : 0;
  if (bal < c.amount) {
    return {error: {code: "insufficient_funds", message: "balance " + bal,
                    details: {balance: bal}}};
  }
  return {events: [{stream: "acct-" + c.id, type: "Withdrawn", data: {amount: c.amount}}]};
}
"""


def need_worker():
    if not os.path.exists(os.path.join(os.path.dirname(binary()), "annals-jsworker")):
        raise Skip("no annals-jsworker beside the binary")


def put(s, name, body):
    return s.request("PUT", f"{DB}/components/{name}", body)


def command(s, name, cmd, dry=False):
    q = "?dryRun=true" if dry else ""
    return s.post(f"{DB}/commands/{name}{q}", {"command": cmd})


def setup_accounts(s):
    check(put(s, "accounts", {"kind": "reducer", "language": "lua", "source": ACCOUNTS,
                              "category": "acct"})[0] == 201, "reducer")
    st, _, b = put(s, "withdraw", {"kind": "command", "language": "javascript",
                                   "source": WITHDRAW})
    check(st == 201, f"command: {st} {b}")
    s.append("acct-1", [{"type": "Deposited", "data": {"amount": 100}}])


def test_javascript_command_decides_appends_rejects_and_dry_runs():
    with Server() as s:
        need_worker()
        setup_accounts(s)
        head = s.head()
        st, _, b = command(s, "withdraw", {"id": 1, "amount": 30}, dry=True)
        check(st == 200 and b["dryRun"] is True and b["events"] == [
            {"stream": "acct-1", "type": "Withdrawn", "data": {"amount": 30}}] and
            b["conditions"] == [{"after": head}], f"dry run: {st} {b}")
        check(s.head() == head, "a dry run wrote")
        st, _, b = command(s, "withdraw", {"id": 1, "amount": 30})
        check(st == 201 and b["events"][0]["position"] == head + 1 and
              b["events"][0]["version"] == 2 and b["position"] == head + 1, f"{st} {b}")
        st, _, b = command(s, "withdraw", {"id": 1, "amount": 300})
        check(st == 422 and b["error"]["code"] == "command_rejected" and
              b["error"]["rejection"] == {"code": "insufficient_funds", "message": "balance 70",
                                          "details": {"balance": 70}}, f"{st} {b}")
        check(s.head() == head + 1, "a rejection wrote")
        expect_error(s.post(f"{DB}/commands/withdraw", {"cmd": {}}), 400, "invalid_request")
        # a handler that fails, returns what is not a decision, or whose read fails
        bad = (("boom", "export function decide(c, ctx) { throw new Error('kaput') }"),
               ("junk", "export function decide(c, ctx) { return 7 }"),
               ("badev", "export function decide(c, ctx) { return {events: [{type: 'x'}]} }"),
               ("badread", "export function decide(c, ctx) { return ctx.projection('none', 'k') }"))
        for name, src in bad:
            st, _, b = put(s, name, {"kind": "command", "language": "javascript", "source": src})
            check(st == 201, f"{name}: {st} {b}")
        head = s.head()  # (each deploy is an event of the $logic stream)
        for name, _ in bad:
            st, _, b = command(s, name, {})
            check(st == 422 and b["error"]["code"] == "command_failed", f"{name}: {st} {b}")
        st, _, b = command(s, "badread", {})
        check("ctx.projection: " in b["error"]["message"], f"the host's reason: {b}")
        check(s.head() == head, "a failed command wrote")
        # a read error caught by the handler becomes its rejection
        src = ("export function decide(c, ctx) {\n"
               "  try { ctx.view('none', {}) } catch (e) {\n"
               "    return {error: {code: 'unreadable', message: e.message}} }\n"
               "  return {events: []} }")
        check(put(s, "catcher", {"kind": "command", "language": "javascript",
                                 "source": src})[0] == 201, "catcher")
        st, _, b = command(s, "catcher", {})
        check(st == 422 and b["error"]["rejection"]["code"] == "unreadable" and
              b["error"]["rejection"]["message"].startswith("ctx.view: "), f"{st} {b}")


def test_javascript_concurrent_commands_over_one_state_exactly_one_commits():
    with Server() as s:
        need_worker()
        setup_accounts(s)
        answers = []

        def go():
            answers.append(command(s, "withdraw", {"id": 1, "amount": 60}))
        threads = [threading.Thread(target=go) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [b for st, _, b in answers if st == 201]
        rejected = [b for st, _, b in answers if st == 422]
        check(len(ok) == 1 and len(rejected) == 5, f"{[(st, b) for st, _, b in answers]}")
        check(all(b["error"]["rejection"]["details"]["balance"] == 40 for b in rejected),
              f"the losers decided again on the new state: {rejected}")
        withdrawn = [e for e in s.read_stream("acct-1") if e["type"] == "Withdrawn"]
        check(len(withdrawn) == 1, f"{withdrawn}")


def wasm_module(name):
    """The bytes of tests/wasm/<name>.wat, converted by wabt's wat2wasm."""
    tool = shutil.which("wat2wasm")
    if not tool:
        raise Skip("no wat2wasm (scripts/deps.sh installs wabt)")
    src = os.path.join(HERE, "..", "wasm", f"{name}.wat")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, f"{name}.wasm")
        subprocess.run([tool, src, "-o", out], check=True)
        with open(out, "rb") as f:
            return f.read()


def test_wasm_reducer_over_http():
    counter = base64.b64encode(wasm_module("counter")).decode()
    imports = base64.b64encode(wasm_module("imports")).decode()
    # the same count in JavaScript: events of ASCII text, so characters are bytes
    js = ("export function reduce(s, e) { s = s ?? {n: 0, bytes: 0};"
          " return {n: s.n + 1, bytes: s.bytes + JSON.stringify(e).length} }")
    with Server() as s:
        need_worker()
        st, _, b = put(s, "wc", {"kind": "reducer", "language": "wasm", "source": counter,
                                 "category": "wc"})
        check(st == 201 and b["language"] == "wasm", f"deploy: {st} {b}")
        st, _, b = s.get(f"{DB}/components/wc")
        check(st == 200 and b["source"] == counter, f"the source is kept as deployed: {st}")
        check(put(s, "jc", {"kind": "reducer", "language": "javascript", "source": js,
                            "category": "jc"})[0] == 201, "js twin")
        for i in range(3):
            for cat in ("wc", "jc"):
                st, _, b = s.append(f"{cat}-1", [{"type": "Added", "data": {"i": i}}])
                check(st == 201, f"append: {st} {b}")
        st, _, wasm_state = s.get(f"{DB}/streams/wc-1/state")
        check(st == 200 and wasm_state["state"]["n"] == 3, f"{st} {wasm_state}")
        st, _, js_state = s.get(f"{DB}/streams/jc-1/state")
        check(st == 200 and js_state["state"]["n"] == 3, f"{st} {js_state}")
        # the stream names differ by no byte count, so the JSON the reducers saw is as long
        check(wasm_state["state"]["bytes"] == js_state["state"]["bytes"] > 100,
              f"{wasm_state} {js_state}")
        # refused at deploy: not base64, not a module, a module that imports
        for name, src, code in (("b1", "AGFz*bQ", "syntax_error"),
                                ("b2", base64.b64encode(b"hello").decode(), "syntax_error"),
                                ("b3", imports, None)):
            st, _, b = put(s, name, {"kind": "reducer", "language": "wasm", "source": src,
                                     "category": name})
            check(st == 400, f"{name}: {st} {b}")
            if code:
                check(b["error"]["code"] == code, f"{name}: {b}")
        st, _, b = put(s, "b3", {"kind": "reducer", "language": "wasm", "source": imports,
                                 "category": "b3"})
        check("imports env.log" in b["error"]["message"], f"{b}")
        # durable: a restart loads the module again from its stored source
        s.restart()
        st, _, b = s.get(f"{DB}/streams/wc-1/state")
        check(st == 200 and b["state"] == wasm_state["state"], f"after restart: {st} {b}")
