"""User code over the native API: deploying components (validated, versioned, durable,
listed, removable) and stream state from a Lua reducer (snapshots, asOf, redeploys, failures
that never lose an append, budgets that stop hostile code with the server still serving)."""
import datetime
import json

from harness import Server, binary, check, expect_error

DB = "/v1/databases/default"

COUNTER = """
function reduce(state, event)
  state = state or {count = 0, total = 0}
  state.count = state.count + 1
  state.total = state.total + (event.data.amount or 0)
  state.last = event.type
  return state
end
"""


def put(s, name, body):
    return s.request("PUT", f"{DB}/components/{name}", body)


def reducer(source=COUNTER, category="order", language="lua"):
    return {"kind": "reducer", "language": language, "source": source, "category": category}


def append_n(s, stream, n, amount=1, start=0):
    for i in range(n):
        st, _, b = s.append(stream, [{"type": "Added", "data": {"amount": amount, "i": start + i}}])
        check(st == 201, f"append: {st} {b}")


def state(s, stream, query=""):
    return s.get(f"{DB}/streams/{stream}/state{query}")


def test_deploy_list_get_redeploy_remove():
    with Server() as s:
        st, _, b = s.get(f"{DB}/components")
        check(st == 200 and b == {"components": []}, f"fresh: {st} {b}")
        st, _, b = put(s, "orders", reducer())
        check(st == 201, f"deploy: {st} {b}")
        check(b["name"] == "orders" and b["kind"] == "reducer" and b["language"] == "lua" and
              b["version"] == 1 and b["category"] == "order" and b["status"] == "active" and
              "source" not in b, f"{b}")
        deployed = datetime.datetime.fromisoformat(b["deployedAt"].replace("Z", "+00:00"))
        now = datetime.datetime.now(datetime.timezone.utc)
        check(abs((now - deployed).total_seconds()) < 60, f"deployedAt: {b}")
        put_answer = b
        st, _, b = s.get(f"{DB}/components/orders")
        check(st == 200 and b["source"] == COUNTER and b["version"] == 1 and
              b["deployedAt"] == put_answer["deployedAt"], f"get: {st} {b}")
        st, _, b = put(s, "orders", reducer(COUNTER + "\n-- v2\n"))
        check(st == 200 and b["version"] == 2, f"redeploy: {st} {b}")
        st, _, b = put(s, "totals", {"kind": "projection", "language": "lua",
                                     "source": "function key(e) return e.stream end\n"
                                               "function apply(s, e) return s end",
                                     "filter": {"types": ["Added"]}})
        check(st == 201 and b["filter"] == {"types": ["Added"]}, f"projection: {st} {b}")
        st, _, b = s.get(f"{DB}/components")
        check([c["name"] for c in b["components"]] == ["orders", "totals"], f"list: {b}")
        st, _, b = s.request("DELETE", f"{DB}/components/totals")
        check(st == 204, f"remove: {st} {b}")
        expect_error(s.request("DELETE", f"{DB}/components/totals"), 404, "component_not_found")
        expect_error(s.get(f"{DB}/components/totals"), 404, "component_not_found")
        # versions are never reused: a name deployed again after removal goes on counting
        st, _, b = put(s, "totals", {"kind": "command", "language": "lua",
                                     "source": "function decide(c, ctx) return {} end"})
        check(st == 200 and b["version"] == 2, f"after removal: {st} {b}")
        # durable: a restart keeps everything
        s.restart()
        st, _, b = s.get(f"{DB}/components")
        check([(c["name"], c["version"]) for c in b["components"]] ==
              [("orders", 2), ("totals", 2)], f"after restart: {b}")
        # the deploys are events of a reserved stream no client can write
        expect_error(s.append("$logic", [{"type": "ComponentDeployed", "data": {}}]), 400,
                     "invalid_name")


def test_deploy_refuses_bad_code_and_definitions():
    with Server() as s:
        st, _, b = put(s, "bad", reducer("function reduce(state, event)\n  return state +\nend"))
        check(st == 400 and b["error"]["code"] == "syntax_error", f"syntax: {st} {b}")
        check(b["error"]["line"] == 3 or b["error"]["line"] == 2, f"line: {b}")
        st, _, b = put(s, "bad", reducer("function fold(s, e) return s end"))
        check(st == 400 and b["error"]["code"] == "missing_entry_point" and
              "reduce" in b["error"]["message"], f"missing entry: {st} {b}")
        expect_error(put(s, "bad", {"kind": "reducer", "language": "lua", "source": "x"}), 400,
                     "invalid_component", field="category")
        expect_error(put(s, "bad", {"kind": "saga", "language": "lua", "source": "x"}), 400,
                     "invalid_component", field="kind")
        expect_error(put(s, "bad", {"kind": "view", "language": "cobol", "source": "x"}), 400,
                     "invalid_component", field="language")
        expect_error(put(s, "9bad", reducer()), 400, "invalid_component", field="name")
        st, _, b = s.request("PUT", f"{DB}/components/bad", b'{"kind": ',
                             headers={"Content-Type": "application/json"})
        check(st == 400 and b["error"]["code"] == "invalid_json" and "offset" in b["error"],
              f"malformed JSON: {st} {b}")
        expect_error(s.request("PUT", f"{DB}/components/bad", b'x'), 415,
                     "unsupported_media_type")
        expect_error(put(s, "bad", {"kind": "projection", "language": "lua",
                                    "source": "function key(e) end function apply(s,e) end",
                                    "filter": {"types": 7}}), 400, "invalid_component")
        # nothing of it was kept
        st, _, b = s.get(f"{DB}/components")
        check(b == {"components": []}, f"{b}")


def test_reducer_state_snapshots_as_of_and_redeploy():
    with Server() as s:
        expect_error(state(s, "order-1"), 404, "no_reducer")
        check(put(s, "orders", reducer())[0] == 201, "deploy")
        expect_error(state(s, "order-1"), 404, "stream_not_found")
        expect_error(state(s, "user-1"), 404, "no_reducer")
        append_n(s, "order-1", 40, amount=2)
        st, _, b = state(s, "order-1")
        check(st == 200, f"state: {st} {b}")
        check(b["state"] == {"count": 40, "total": 80, "last": "Added"}, f"{b}")
        check(b["version"] == 40 and b["stream"] == "order-1" and
              b["reducer"] == {"name": "orders", "version": 1}, f"{b}")
        first_pos = s.read_stream("order-1")[0]["position"]
        # again (from the snapshot), then after more events
        st, _, b2 = state(s, "order-1")
        check(b2 == b, f"second read differs: {b2} {b}")
        append_n(s, "order-1", 5, amount=10)
        st, _, b = state(s, "order-1")
        check(b["state"]["count"] == 45 and b["state"]["total"] == 130 and b["version"] == 45,
              f"{b}")
        # as of a position: the state then
        st, _, b = state(s, "order-1", f"?asOf={first_pos + 9}")
        check(st == 200 and b["state"]["count"] == 10 and b["version"] == 10, f"asOf: {b}")
        # a redeploy computes with the new code (the old snapshots do not count)
        doubled = COUNTER.replace("state.count + 1", "state.count + 2")
        check(put(s, "orders", reducer(doubled))[0] == 200, "redeploy")
        st, _, b = state(s, "order-1")
        check(b["state"]["count"] == 90 and b["reducer"]["version"] == 2, f"{b}")
        # survives a restart (snapshot files and all)
        s.restart()
        st, _, b = state(s, "order-1")
        check(b["state"]["count"] == 90 and b["state"]["total"] == 130, f"restart: {b}")


def test_component_stats_and_logs():
    src = COUNTER.replace("state.last = event.type", "state.last = event.type\n"
                          "  log('seen', event.version, {x = 1})")
    with Server() as s:
        check(put(s, "orders", reducer(src))[0] == 201, "deploy")
        append_n(s, "order-1", 3)
        check(state(s, "order-1")[0] == 200, "state")
        st, _, b = s.get(f"{DB}/components/orders")
        check(b["stats"]["calls"] >= 1 and b["stats"]["errors"] == 0, f"{b}")
        check(b["logs"][-3:] == ['seen 1 {"x":1}', 'seen 2 {"x":1}', 'seen 3 {"x":1}'],
              f"logs: {b['logs']}")
        check(put(s, "orders", reducer("function reduce(s, e) error('x') end"))[0] == 200, "")
        check(state(s, "order-1")[0] == 422, "fails")
        st, _, b = s.get(f"{DB}/components/orders")
        check(b["stats"]["errors"] >= 1, f"{b}")


def test_failing_reducer_never_loses_an_append():
    with Server() as s:
        src = """
function reduce(state, event)
  if event.data.boom then error("no booms here") end
  return (state or 0) + 1
end
"""
        check(put(s, "orders", reducer(src))[0] == 201, "deploy")
        append_n(s, "order-7", 3)
        st, _, b = s.append("order-7", [{"type": "Boom", "data": {"boom": True}}])
        check(st == 201, f"the append commits whatever the reducer does: {st} {b}")
        st, _, b = state(s, "order-7")
        check(st == 422 and b["error"]["code"] == "reducer_failed", f"{st} {b}")
        check("no booms here" in b["error"]["message"] and b["error"]["kind"] == "runtime_error",
              f"{b}")
        check(b["error"]["position"] == s.read_stream("order-7")[-1]["position"], f"{b}")
        check(len(s.read_stream("order-7")) == 4, "the events are all there")


def test_hostile_reducers_are_stopped_and_the_server_serves_on():
    cases = {
        "loop": ("function reduce(s, e) while true do end end", "cpu_limit"),
        "pcall_loop": ("function reduce(s, e) pcall(function() while true do end end) "
                       "return 1 end", "cpu_limit"),
        "memory": ("function reduce(s, e) local t = {} for i = 1, 1e9 do t[i] = i end end",
                   "memory_limit"),
        "strings": ("function reduce(s, e) local x = 'x' for i = 1, 64 do x = x .. x end end",
                    "memory_limit"),
        "files": ("function reduce(s, e) return io.open('/etc/passwd'):read('a') end", None),
        "process": ("function reduce(s, e) return os.execute('id') end", None),
        "require": ("function reduce(s, e) return require('socket') end", None),
        "load": ("function reduce(s, e) return load('return 1')() end", None),
        "recursion": ("local function f(n) return f(n + 1) + 1 end\n"
                      "function reduce(s, e) return f(1) end", None),
        "gc": ("function reduce(s, e) setmetatable({}, {__gc = function() while true do end "
               "end}) return 1 end", None),
        "pattern": ("function reduce(s, e) return string.find(string.rep('a', 400), "
                    "'.-.-.-.-b') end", "cpu_limit"),
        "output": ("function reduce(s, e) return string.rep('x', 8 * 1024 * 1024) end",
                   None),
    }
    with Server(extra=["--logic-cpu-ms", "300", "--logic-memory-bytes", "33554432",
                       "--logic-output-bytes", "1048576"]) as s:
        for i, (name, (src, kind)) in enumerate(cases.items()):
            cat = f"c{i}"
            st, _, b = put(s, name, reducer(src, category=cat))
            check(st == 201, f"{name}: deploy {st} {b}")
            st, _, b = s.append(f"{cat}-1", [{"type": "T", "data": {}}])
            check(st == 201, f"{name}: append {st} {b}")
            st, _, b = state(s, f"{cat}-1")
            check(st == 422 and b["error"]["code"] == "reducer_failed", f"{name}: {st} {b}")
            if kind:
                check(b["error"]["kind"] == kind, f"{name}: {b}")
            st, _, h = s.get("/health")
            check(st == 200, f"{name}: the server stopped serving")
        # a good reducer still works next to them
        check(put(s, "fine", reducer(COUNTER, category="fine"))[0] == 201, "deploy")
        append_n(s, "fine-1", 2)
        st, _, b = state(s, "fine-1")
        check(st == 200 and b["state"]["count"] == 2, f"{st} {b}")


def test_append_returns_the_new_state():
    with Server() as s:
        events = [{"type": "Added", "data": {"amount": 5}}]
        path = f"{DB}/streams/order-3/events?returnState=true"
        st, _, b = s.post(path, {"events": events})
        check(st == 201 and b["state"] is None and b["stateError"]["code"] == "no_reducer",
              f"no reducer yet: {st} {b}")
        check(put(s, "orders", reducer())[0] == 201, "deploy")
        st, _, b = s.post(path, {"events": events * 2})
        check(st == 201 and b["version"] == 3, f"{st} {b}")
        check(b["state"] == {"count": 3, "total": 15, "last": "Added"}, f"state: {b}")
        # the state is the one right after this append's events
        st, _, b2 = s.post(path, {"events": events})
        check(b2["state"]["count"] == 4, f"{b2}")
        # without the parameter the answer is as before
        st, _, b3 = s.post(f"{DB}/streams/order-3/events", {"events": events})
        check(st == 201 and "state" not in b3, f"{b3}")
        expect_error(s.post(f"{DB}/streams/order-3/events?returnState=yes", {"events": events}),
                     400, "invalid_parameter", field="returnState")
        # a failing reducer: the append commits, the answer carries the error
        bad = reducer("function reduce(s, e) error('nope') end")
        check(put(s, "orders", bad)[0] == 200, "redeploy")
        st, _, b = s.post(path, {"events": events})
        check(st == 201 and b["state"] is None and
              b["stateError"]["code"] == "reducer_failed" and
              "nope" in b["stateError"]["message"], f"{st} {b}")
        check(s.read_stream("order-3")[-1]["version"] == 6, "the append committed")


def test_views_with_parameters_and_as_of():
    src = """
function evolve(state, event, params)
  state = state or {count = 0, total = 0}
  if event.data.region == params.region and event.data.amount >= tonumber(params.min or "0") then
    state.count = state.count + 1
    state.total = state.total + event.data.amount
  end
  return state
end
"""
    with Server() as s:
        st, _, b = put(s, "sales", {"kind": "view", "language": "lua", "source": src,
                                    "filter": {"types": ["Sold"]}})
        check(st == 201, f"deploy: {st} {b}")
        st, _, b = s.get(f"{DB}/views/sales?region=eu")
        check(st == 200 and b["state"] is None and b["position"] == 0 and
              b["params"] == {"region": "eu"}, f"empty: {st} {b}")
        for i in range(30):
            region = "eu" if i % 3 else "us"
            s.append(f"shop-{i % 4}", [{"type": "Sold", "data": {"region": region, "amount": i}},
                                       {"type": "Viewed", "data": {"region": region, "amount": 1000}}])
        st, _, b = s.get(f"{DB}/views/sales?region=eu")
        eu = [i for i in range(30) if i % 3]
        check(b["state"] == {"count": len(eu), "total": sum(eu)}, f"eu: {b}")
        st, _, b = s.get(f"{DB}/views/sales?min=20&region=eu")
        big = [i for i in eu if i >= 20]
        check(b["state"] == {"count": len(big), "total": sum(big)} and
              b["params"] == {"min": "20", "region": "eu"}, f"eu min 20: {b}")
        head = s.head()
        # as of a point: only the events up to it
        early = [e["data"]["amount"] for e in s.read_log()
                 if e["position"] <= 20 and e["type"] == "Sold" and e["data"]["region"] == "us"]
        st, _, b = s.get(f"{DB}/views/sales?region=us&asOf=20")
        check(b["state"] == {"count": len(early), "total": sum(early)} and b["position"] <= 20,
              f"asOf: {b} {early}")
        # more events: the cached result is extended, not recomputed wrongly
        s.append("shop-9", [{"type": "Sold", "data": {"region": "eu", "amount": 1}}])
        st, _, b = s.get(f"{DB}/views/sales?region=eu")
        check(b["state"] == {"count": len(eu) + 1, "total": sum(eu) + 1} and
              b["position"] == head + 1, f"after one more: {b}")
        expect_error(s.get(f"{DB}/views/nope"), 404, "view_not_found")
        expect_error(s.get(f"{DB}/views/sales?region=eu&region=us"), 400, "invalid_parameter")


# ---- projections ----

PROJ = """
function key(e)
  if e.type ~= "Placed" then return nil end
  return e.stream
end
function apply(s, e)
  s = s or {n = 0, sum = 0, seen = json.array()}
  s.n = s.n + 1
  s.sum = s.sum + e.data.amount
  s.seen[#s.seen + 1] = e.position
  return s
end
"""


def projection(source=PROJ, filt=None):
    body = {"kind": "projection", "language": "lua", "source": source}
    if filt is not None:
        body["filter"] = filt
    return body


def wait_live(s, name, timeout=30.0, version=None):
    import time
    end = time.time() + timeout
    while time.time() < end:
        st, _, b = s.get(f"{DB}/projections/{name}")
        now = st == 200 and (version is None or b["version"] == version)
        if now and b["status"] == "live" and b["lag"] == 0:
            return b
        if now and b["status"] == "failed":
            return b
        time.sleep(0.05)
    raise AssertionError(f"projection {name} never caught up: {st} {b}")


def expected_states(s):
    """What PROJ must hold, computed from the log itself."""
    want = {}
    for e in s.read_log(limit=1000):
        if e["type"] != "Placed":
            continue
        st = want.setdefault(e["stream"], {"n": 0, "sum": 0, "seen": []})
        st["n"] += 1
        st["sum"] += e["data"]["amount"]
        st["seen"].append(e["position"])
    return want


def check_states(s, name, want):
    for stream, st in want.items():
        code, _, b = s.get(f"{DB}/projections/{name}/state/{stream}")
        check(code == 200 and b["state"] == st, f"{stream}: {code} {b} want {st}")


def test_projection_catches_up_goes_live_and_serves_keys_and_changes():
    import threading
    with Server() as s:
        for i in range(60):
            s.append(f"shop-{i % 5}", [{"type": "Placed", "data": {"amount": i}},
                                       {"type": "Noise", "data": {"amount": 1}}])
        st, _, b = put(s, "totals", projection())
        check(st == 201, f"deploy: {st} {b}")
        wait_live(s, "totals")
        check_states(s, "totals", expected_states(s))
        # live, with appends racing on four connections
        def writer(k):
            for i in range(40):
                s.append(f"shop-{(i + k) % 5}", [{"type": "Placed", "data": {"amount": 1000 + i}}],
                         conn=s.connect())
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        info = wait_live(s, "totals")
        want = expected_states(s)
        check_states(s, "totals", want)  # each event once, in log order (seen lists)
        check(info["sequence"] == sum(st["n"] for st in want.values()), f"{info}")
        st, _, b = s.get(f"{DB}/projections/totals/keys?prefix=shop-&limit=2")
        check(b == {"keys": ["shop-0", "shop-1"], "next": "shop-1"}, f"keys: {b}")
        st, _, b = s.get(f"{DB}/projections/totals/keys?after=shop-1&limit=10")
        check(b["keys"] == ["shop-2", "shop-3", "shop-4"] and b["next"] is None, f"{b}")
        st, _, b = s.get(f"{DB}/projections/totals/changes?after=3&limit=2")
        check([c["sequence"] for c in b["changes"]] == [4, 5] and b["next"] == 5, f"{b}")
        check(b["changes"][0]["state"]["n"] >= 1 and b["changes"][0]["key"].startswith("shop-"),
              f"{b}")
        expect_error(s.get(f"{DB}/projections/totals/state/nope"), 404, "key_not_found")
        expect_error(s.get(f"{DB}/projections/nope"), 404, "projection_not_found")


def test_projection_is_exactly_once_across_kill9():
    with Server() as s:
        for i in range(300):
            s.append(f"shop-{i % 7}", [{"type": "Placed", "data": {"amount": i}}])
        check(put(s, "totals", projection())[0] == 201, "deploy")
        s.kill9()  # somewhere in the catch-up (or just after)
        s.start()
        wait_live(s, "totals")
        check_states(s, "totals", expected_states(s))
        for i in range(50):
            s.append(f"shop-{i % 7}", [{"type": "Placed", "data": {"amount": 5}}])
        s.kill9()  # during live
        s.start()
        info = wait_live(s, "totals")
        want = expected_states(s)
        check_states(s, "totals", want)
        check(info["sequence"] == 350, f"one change per event, none twice: {info}")


def test_projection_failure_stops_it_and_a_fix_rebuilds():
    bad = PROJ.replace("s.n = s.n + 1", "if e.data.amount == 13 then error('unlucky') end\n"
                                        "  s.n = s.n + 1")
    with Server() as s:
        for i in range(20):
            s.append(f"shop-{i % 2}", [{"type": "Placed", "data": {"amount": i}}])
        check(put(s, "totals", projection(bad))[0] == 201, "deploy")
        info = wait_live(s, "totals")
        check(info["status"] == "failed" and "unlucky" in info["error"]["message"] and
              info["error"]["kind"] == "runtime_error", f"{info}")
        failing = [e for e in s.read_log() if e["type"] == "Placed" and
                   e["data"]["amount"] == 13][0]
        check(info["error"]["position"] == failing["position"] and
              info["position"] == failing["position"] - 1, f"stopped at the failing event: {info}")
        # the states before the failure are there
        st, _, b = s.get(f"{DB}/projections/totals/state/shop-0")
        check(st == 200 and b["state"]["n"] == 7, f"{st} {b}")
        # appends go on; a fixed version starts over from the first event
        s.append("shop-0", [{"type": "Placed", "data": {"amount": 1}}])
        check(put(s, "totals", projection(PROJ))[0] == 200, "redeploy")
        info = wait_live(s, "totals", version=2)
        check(info["status"] == "live" and info["version"] == 2, f"{info}")
        check_states(s, "totals", expected_states(s))


def test_projection_over_a_filter_and_removal():
    src = "function key(e) return e.data.sku end\n" \
          "function apply(s, e) return (s or 0) + e.data.qty end"
    with Server() as s:
        check(put(s, "stock", projection(src, {"types": ["Received"]}))[0] == 201, "deploy")
        s.append("wh-1", [{"type": "Received", "data": {"sku": "a", "qty": 5}},
                          {"type": "Shipped", "data": {"sku": "a", "qty": 2}},
                          {"type": "Received", "data": {"sku": "b", "qty": 1}}])
        wait_live(s, "stock")
        st, _, b = s.get(f"{DB}/projections/stock/state/a")
        check(b["state"] == 5, f"only the filter's events: {b}")
        check(s.request("DELETE", f"{DB}/components/stock")[0] == 204, "remove")
        import time
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, b = s.get(f"{DB}/projections/stock")
            if st == 404:
                break
            time.sleep(0.05)
        check(st == 404 and b["error"]["code"] == "projection_not_found", f"{st} {b}")


# ---- command handlers ----

ACCOUNTS = """
function reduce(s, e)
  s = s or {balance = 0}
  if e.type == "Deposited" then s.balance = s.balance + e.data.amount
  else s.balance = s.balance - e.data.amount end
  return s
end
"""

WITHDRAW = """
function decide(c, ctx)
  local s = ctx.state("acct-" .. c.id)
  local bal = s and s.balance or 0
  if bal < c.amount then
    return {error = {code = "insufficient_funds", message = "balance " .. bal,
                     details = {balance = bal}}}
  end
  return {events = {{stream = "acct-" .. c.id, type = "Withdrawn", data = {amount = c.amount}}}}
end
"""


def command(s, name, cmd, dry=False):
    q = "?dryRun=true" if dry else ""
    return s.post(f"{DB}/commands/{name}{q}", {"command": cmd})


def setup_accounts(s):
    check(put(s, "accounts", reducer(ACCOUNTS, category="acct"))[0] == 201, "reducer")
    check(put(s, "withdraw", {"kind": "command", "language": "lua", "source": WITHDRAW})[0]
          == 201, "command")
    s.append("acct-1", [{"type": "Deposited", "data": {"amount": 100}}])


def test_command_decides_appends_rejects_and_dry_runs():
    with Server() as s:
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
        expect_error(command(s, "nope", {}), 404, "command_not_found")
        expect_error(s.post(f"{DB}/commands/withdraw", {"cmd": {}}), 400, "invalid_request")
        # a handler that fails, or returns what is not a decision
        bad = (("boom", "function decide(c, ctx) error('kaput') end"),
               ("junk", "function decide(c, ctx) return 7 end"),
               ("badev", "function decide(c, ctx) return {events = {{type = 'x'}}} end"))
        for name, src in bad:
            check(put(s, name, {"kind": "command", "language": "lua", "source": src})[0] == 201,
                  name)
        head = s.head()  # (each deploy is an event of the $logic stream)
        for name, _ in bad:
            st, _, b = command(s, name, {})
            check(st == 422 and b["error"]["code"] == "command_failed", f"{name}: {st} {b}")
        check(s.head() == head, "a failed command wrote")


def test_concurrent_commands_over_one_state_exactly_one_commits():
    import threading
    with Server() as s:
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


def test_command_reads_queries_projections_views_and_its_own_conditions():
    src = """
function decide(c, ctx)
  local seen = ctx.query({types = {"Registered"}, tags = {"email:" .. c.email}}, 10)
  if #seen > 0 then return {error = {code = "taken", message = "email taken"}} end
  local count = ctx.projection("users", "all") or 0
  local v = ctx.view("names", {prefix = "a"})
  return {events = {{stream = "user-" .. c.id, type = "Registered", data = {n = count, v = v},
                     tags = {"email:" .. c.email}}},
          conditions = {{stream = "user-" .. c.id, expectedVersion = "no_stream"}}}
end
"""
    with Server() as s:
        check(put(s, "users", projection("function key(e) return 'all' end\n"
                                         "function apply(s, e) return (s or 0) + 1 end",
                                         {"types": ["Registered"]}))[0] == 201, "projection")
        check(put(s, "names", {"kind": "view", "language": "lua", "filter": {"types": ["Registered"]},
                               "source": "function evolve(s, e, p) return (s or 0) + 1 end"})[0]
              == 201, "view")
        check(put(s, "register", {"kind": "command", "language": "lua", "source": src})[0] == 201,
              "command")
        wait_live(s, "users")
        st, _, b = command(s, "register", {"id": 1, "email": "a@x"})
        check(st == 201 and b["events"][0]["data"] == {"n": 0}, f"{st} {b}")  # v: nil
        wait_live(s, "users")
        st, _, b = command(s, "register", {"id": 2, "email": "b@x"})
        check(st == 201 and b["events"][0]["data"] == {"n": 1, "v": 1}, f"{st} {b}")
        st, _, b = command(s, "register", {"id": 3, "email": "a@x"})
        check(st == 422 and b["error"]["rejection"]["code"] == "taken", f"{st} {b}")
        # its own expectedVersion: the stream exists already, so it never holds
        st, _, b = command(s, "register", {"id": 1, "email": "c@x"})
        check(st == 409 and b["error"]["code"] == "command_conflict", f"{st} {b}")
        s.restart(extra=["--logic-command-tries", "1"])
        wait_live(s, "users")
        st, _, b = command(s, "register", {"id": 1, "email": "d@x"})
        check(st == 409, f"one try: {st} {b}")
        check(len(s.read_stream("user-1")) == 1, "a conflict wrote")


def test_projection_changes_live_over_sse_with_resume():
    from test_live import SSE
    with Server() as s:
        for i in range(5):
            s.append(f"shop-{i % 2}", [{"type": "Placed", "data": {"amount": i}}])
        check(put(s, "totals", projection())[0] == 201, "deploy")
        wait_live(s, "totals")
        sub = SSE(s.port, f"{DB}/projections/totals/changes/live?after=2")
        check(sub.status == 200 and sub.headers.get("content-type") == "text/event-stream",
              f"{sub.status} {sub.headers}")

        def changes(n):
            out = []
            while len(out) < n:
                m = sub.message()
                if m["event"] == "change":
                    c = json.loads(m["data"])
                    check(m["id"] == str(c["sequence"]), f"{m}")
                    out.append(c)
            return out
        got = changes(3)  # history after 2: 3, 4, 5
        check([c["sequence"] for c in got] == [3, 4, 5], f"{got}")
        s.append("shop-0", [{"type": "Placed", "data": {"amount": 100}}])
        live = changes(1)[0]  # then live
        check(live["sequence"] == 6 and live["key"] == "shop-0" and
              live["state"]["sum"] == 0 + 2 + 4 + 100, f"{live}")
        sub.close()
        # an EventSource that reconnects sends Last-Event-ID
        sub = SSE(s.port, f"{DB}/projections/totals/changes/live",
                  headers={"Last-Event-ID": "5"})
        got = changes(1)
        check(got[0]["sequence"] == 6, f"resumed after 5: {got}")
        # a new version starts its sequences over: the stream ends
        check(put(s, "totals", projection(PROJ + "\n-- v2"))[0] == 200, "redeploy")
        try:
            while True:
                sub.message()
        except EOFError:
            pass
        sub.close()
        # a projection that is not there
        sub = SSE(s.port, f"{DB}/projections/nope/changes/live")
        check(sub.status == 404 and sub.body()["error"]["code"] == "projection_not_found",
              f"{sub.status}")
        sub.close()


def test_projection_changes_live_sends_a_change_larger_than_the_stream_buffer():
    """A change whose message is past the stream's output cap (256 KiB) goes out alone, on
    both transports, instead of waiting for room that never comes."""
    from test_live import SSE
    from test_websocket import WS
    big = "function key(e) return e.stream end\n" \
          "function apply(s, e) return {blob = string.rep('x', 300000), n = e.data.n} end"
    with Server() as s:
        s.append("a", [{"type": "T", "data": {"n": 1}}])
        s.append("b", [{"type": "T", "data": {"n": 2}}])
        check(put(s, "big", projection(big))[0] == 201, "deploy")
        wait_live(s, "big")
        sub = SSE(s.port, f"{DB}/projections/big/changes/live")
        got = []
        while len(got) < 2:
            m = sub.message()
            if m["event"] == "change":
                got.append(json.loads(m["data"]))
        check([(c["sequence"], c["state"]["n"], len(c["state"]["blob"])) for c in got] ==
              [(1, 1, 300000), (2, 2, 300000)], f"{[c['sequence'] for c in got]}")
        sub.close()
        ws = WS(s.port, f"{DB}/projections/big/changes/live?after=1")
        check(ws.status == 101, f"{ws.status}")
        while True:
            op, payload = ws.frame()
            if op == 1:
                break
        c = json.loads(payload)
        check(c["sequence"] == 2 and len(c["state"]["blob"]) == 300000, f"{c['sequence']}")
        ws.sock.close()


def test_projection_changes_live_catches_up_page_after_page():
    from test_live import SSE
    with Server() as s:
        for i in range(250):  # one change each: more than a page (100)
            s.append(f"shop-{i}", [{"type": "Placed", "data": {"amount": i}}])
        check(put(s, "totals", projection())[0] == 201, "deploy")
        wait_live(s, "totals")
        sub = SSE(s.port, f"{DB}/projections/totals/changes/live?after=20")
        got = []
        while len(got) < 230:
            m = sub.message()
            if m["event"] == "change":
                got.append(int(m["id"]))
        check(got == list(range(21, 251)), f"{got}")
        sub.close()


# ---- JavaScript and TypeScript ----

def test_javascript_and_typescript_reducers_and_projections():
    import os
    with Server() as s:
        if not os.path.exists(os.path.join(os.path.dirname(binary()), "annals-jsworker")):
            from harness import Skip
            raise Skip("no annals-jsworker beside the binary")
        js = "export function reduce(s, e) { s = s ?? {n: 0, total: 0}; s.n += 1; " \
             "s.total += e.data.amount; return s; }"
        check(put(s, "jsr", reducer(js, category="jsa", language="javascript"))[0] == 201, "js")
        ts = "type S = {n: number};\nexport function reduce(s: S | null, e: any): S {\n" \
             "  return {n: (s?.n ?? 0) + e.data.amount};\n}"
        check(put(s, "tsr", reducer(ts, category="tsa", language="typescript"))[0] == 201, "ts")
        append_n(s, "jsa-1", 3, amount=2)
        append_n(s, "tsa-1", 3, amount=5)
        st, _, b = state(s, "jsa-1")
        check(st == 200 and b["state"] == {"n": 3, "total": 6}, f"{st} {b}")
        st, _, b = state(s, "tsa-1")
        check(st == 200 and b["state"] == {"n": 15}, f"{st} {b}")
        st, _, b = put(s, "bad", reducer("export function reduce(s, e) {\n  return s +;\n}",
                                         category="x", language="javascript"))
        check(st == 400 and b["error"]["code"] == "syntax_error" and b["error"]["line"] == 2,
              f"{st} {b}")
        st, _, b = put(s, "badts", reducer("let x: number = ;\nexport function reduce() {}",
                                           category="y", language="typescript"))
        check(st == 400 and b["error"]["code"] == "syntax_error" and b["error"]["line"] == 1,
              f"{st} {b}")
        # a projection and a command handler in JavaScript
        pj = "export function key(e) { return e.stream; }\n" \
             "export function apply(s, e) { return (s ?? 0) + 1; }"
        check(put(s, "jsp", {"kind": "projection", "language": "javascript", "source": pj,
                             "filter": {"categories": ["jsa"]}})[0] == 201, "projection")
        wait_live(s, "jsp")
        st, _, b = s.get(f"{DB}/projections/jsp/state/jsa-1")
        check(st == 200 and b["state"] == 3, f"{st} {b}")


def test_hostile_javascript_is_stopped_and_the_server_serves_on():
    import os
    cases = {
        "loop": ("export function reduce(s, e) { for (;;) {} }", "cpu_limit"),
        "catch_loop": ("export function reduce(s, e) { for (;;) { try { for (;;) {} } "
                       "catch (x) {} } }", "cpu_limit"),
        "memory": ("export function reduce(s, e) { const a = []; for (;;) a.push(new "
                   "Array(1e6).fill(1)); }", "memory_limit"),
        "require": ("export function reduce(s, e) { return require('fs').readFileSync("
                    "'/etc/passwd', 'utf8'); }", None),
        "fetch": ("export function reduce(s, e) { return fetch('http://127.0.0.1/'); }", None),
        "process": ("export function reduce(s, e) { return process.env; }", None),
        "eval": ("export function reduce(s, e) { return eval('1 + 1'); }", None),
        "recursion": ("function f(n) { return f(n + 1) + 1; }\n"
                      "export function reduce(s, e) { return f(1); }", None),
        "output": ("export function reduce(s, e) { return 'x'.repeat(8 * 1024 * 1024); }", None),
    }
    # the CPU budget leaves the memory bomb time to reach its budget first on a busy machine
    with Server(extra=["--logic-cpu-ms", "1500", "--logic-memory-bytes", "67108864"]) as s:
        if not os.path.exists(os.path.join(os.path.dirname(binary()), "annals-jsworker")):
            from harness import Skip
            raise Skip("no annals-jsworker beside the binary")
        for i, (name, (src, kind)) in enumerate(cases.items()):
            cat = f"h{i}"
            st, _, b = put(s, name, reducer(src, category=cat, language="javascript"))
            check(st == 201, f"{name}: deploy {st} {b}")
            s.append(f"{cat}-1", [{"type": "T", "data": {}}])
            st, _, b = state(s, f"{cat}-1")
            check(st == 422 and b["error"]["code"] == "reducer_failed", f"{name}: {st} {b}")
            if kind:
                check(b["error"]["kind"] == kind, f"{name}: {b}")
            check(s.get("/health")[0] == 200, f"{name}: the server stopped serving")
        # a killed worker: the next call gets a fresh one
        good = "export function reduce(s, e) { return (s ?? 0) + 1; }"
        check(put(s, "good", reducer(good, category="ok", language="javascript"))[0] == 201, "")
        append_n(s, "ok-1", 2)
        check(state(s, "ok-1")[2]["state"] == 2, "before the kill")
        os.system(f"pkill -9 -P {s.proc.pid} -f annals-jsworker")  # this server's workers
        append_n(s, "ok-1", 1)
        st, _, b = state(s, "ok-1")
        if st != 200:  # the call that found the worker dead fails cleanly; the next works
            check(st == 422 and b["error"]["code"] == "reducer_failed", f"{st} {b}")
            st, _, b = state(s, "ok-1")
        check(st == 200 and b["state"] == 3, f"after the kill: {st} {b}")


def test_projection_state_waits_for_a_position():
    import time
    with Server() as s:
        check(put(s, "totals", projection())[0] == 201, "deploy")
        wait_live(s, "totals")
        for i in range(20):
            st, _, b = s.append("shop-1", [{"type": "Placed", "data": {"amount": 1}}])
            pos = b["position"]
            # read your own write: the answer waits until the projection has applied it
            st, _, b = s.get(f"{DB}/projections/totals/state/shop-1?minPosition={pos}")
            check(st == 200 and b["state"]["n"] == i + 1 and b["position"] == pos, f"{st} {b}")
        t0 = time.time()
        st, _, b = s.get(f"{DB}/projections/totals/state/shop-1?minPosition={pos + 100}"
                         "&timeoutMs=300")
        waited = time.time() - t0
        check(st == 202 and b["status"] == "catching_up" and waited >= 0.29, f"{st} {b} {waited}")
        expect_error(s.get(f"{DB}/projections/totals/state/shop-1?minPosition=0"), 400,
                     "invalid_parameter", field="minPosition")
        expect_error(s.get(f"{DB}/projections/totals/state/shop-1?minPosition=1&timeoutMs=99999"),
                     400, "invalid_parameter", field="timeoutMs")


def test_component_metrics():
    import sys
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families
    with Server() as s:
        check(put(s, "orders", reducer())[0] == 201, "deploy")
        check(put(s, "totals", projection())[0] == 201, "projection")
        append_n(s, "order-1", 2)
        check(state(s, "order-1")[0] == 200, "state")
        wait_live(s, "totals")
        st, _, text = s.get("/metrics")
        text = text.decode() if isinstance(text, bytes) else text
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        calls = [x for x in fams["annals_component_calls"].samples
                 if x.labels.get("component") == "orders"]
        check(calls and calls[0].value >= 1 and calls[0].labels["kind"] == "reducer", f"{calls}")
        lag = [x for x in fams["annals_projection_lag_events"].samples
               if x.labels.get("component") == "totals"]
        check(lag and lag[0].value == 0, f"{lag}")


def test_projection_changes_live_over_a_websocket():
    from test_websocket import WS
    with Server() as s:
        for i in range(3):
            s.append("shop-1", [{"type": "Placed", "data": {"amount": i}}])
        check(put(s, "totals", projection())[0] == 201, "deploy")
        wait_live(s, "totals")
        ws = WS(s.port, f"{DB}/projections/totals/changes/live?after=1")
        check(ws.status == 101, f"{ws.status}")

        def change():
            while True:
                op, payload = ws.frame()
                if op == 1:
                    return json.loads(payload)
        check([change()["sequence"] for _ in range(2)] == [2, 3], "history after 1")
        s.append("shop-1", [{"type": "Placed", "data": {"amount": 10}}])
        c = change()
        check(c["sequence"] == 4 and c["state"]["sum"] == 0 + 1 + 2 + 10, f"{c}")
        ws.sock.close()


def test_javascript_prototype_pollution_does_not_cross_databases():
    import os
    with Server() as s:
        if not os.path.exists(os.path.join(os.path.dirname(binary()), "annals-jsworker")):
            from harness import Skip
            raise Skip("no annals-jsworker beside the binary")
        check(s.post("/v1/databases", {"name": "other"})[0] == 201, "db")
        evil = "export function reduce(s, e) { Object.prototype.pwned = 'yes'; " \
               "Array.prototype.push = () => 0; return 1; }"
        probe = "export function reduce(s, e) { return {pwned: ({}).pwned ?? null, " \
                "len: [1].push(2)}; }"
        check(put(s, "evil", reducer(evil, category="ev", language="javascript"))[0] == 201, "")
        st, _, b = s.request("PUT", "/v1/databases/other/components/probe",
                             reducer(probe, category="pr", language="javascript"))
        check(st == 201, f"{st} {b}")
        s.append("ev-1", [{"type": "T", "data": {}}])
        check(state(s, "ev-1")[0] == 200, "the polluter ran")
        s.append("pr-1", [{"type": "T", "data": {}}], db="other")
        st, _, b = s.get("/v1/databases/other/streams/pr-1/state")
        check(st == 200 and b["state"] == {"pwned": None, "len": 2}, f"{st} {b}")


def test_reducer_state_follows_what_reads_show_after_lifecycle_changes():
    with Server() as s:
        check(put(s, "orders", reducer())[0] == 201, "deploy")
        append_n(s, "order-5", 20, amount=1)
        st, _, b = state(s, "order-5")
        check(b["state"]["count"] == 20, f"{b}")  # a snapshot is kept now
        st, _, _ = s.request("DELETE", f"{DB}/streams/order-5")
        check(st == 204, f"soft delete: {st}")
        append_n(s, "order-5", 2, amount=5)
        st, _, b = state(s, "order-5")
        check(st == 200 and b["state"]["count"] == 2 and b["state"]["total"] == 10,
              f"only the events a read shows: {b}")
        st, _, b = s.post(f"{DB}/streams/order-5/events?returnState=true",
                          {"events": [{"type": "Added", "data": {"amount": 1}}]})
        check(b["state"]["count"] == 3, f"{b}")
        # max count: the newest 2 only
        st, _, _ = s.request("PUT", f"{DB}/streams/order-6/metadata", {"maxCount": 2})
        check(st == 200, f"{st}")
        append_n(s, "order-6", 30, amount=1)
        st, _, b = state(s, "order-6")
        check(b["state"]["count"] == 2, f"{b}")


def test_view_results_follow_deletions():
    src = "function evolve(s, e, p) return (s or 0) + e.data.amount end"
    with Server() as s:
        check(put(s, "sum", {"kind": "view", "language": "lua", "source": src,
                             "filter": {"types": ["Added"]}})[0] == 201, "deploy")
        append_n(s, "cart-1", 20, amount=1)
        append_n(s, "cart-2", 20, amount=10)
        st, _, b = s.get(f"{DB}/views/sum")
        check(b["state"] == 220, f"{b}")  # a cached result now
        check(s.request("DELETE", f"{DB}/streams/cart-2")[0] == 204, "soft delete")
        st, _, b = s.get(f"{DB}/views/sum")
        check(b["state"] == 20, f"the deleted stream's events no longer count: {b}")
        append_n(s, "cart-1", 20, amount=1)
        st, _, b = s.get(f"{DB}/views/sum")
        check(b["state"] == 40, f"{b}")


def test_deployed_code_outlives_retention_and_compaction():
    import os
    from harness import Skip
    faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
    if not os.path.exists(faketime):
        raise Skip("libfaketime is not installed")
    with Server() as s:
        st, _, _ = s.post("/v1/databases", {"name": "ret", "settings": {"retentionPeriodDays": 1}})
        check(st == 201, "db")
        base = "/v1/databases/ret"
        st, _, b = s.request("PUT", f"{base}/components/orders", reducer())
        check(st == 201, f"{st} {b}")
        s.stop()
        env = dict(os.environ, LD_PRELOAD=faketime, FAKETIME="+3d",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        later = Server(data_dir=s.data, env=env)
        try:
            st, _, b = later.get(f"{base}/components")
            check([c["name"] for c in b["components"]] == ["orders"], f"kept: {b}")
            from test_compaction import compact
            c = compact(later, "ret")
            check(c["last"] is not None, f"{c}")
            st, _, b = later.get(f"{base}/components")
            check([c["name"] for c in b["components"]] == ["orders"], f"after compaction: {b}")
            st, _, b = later.request("PUT", f"{base}/components/orders", reducer(COUNTER + "--"))
            check(st == 200 and b["version"] == 2, f"redeploy: {st} {b}")
        finally:
            later.cleanup()


def test_a_read_waiting_on_a_projection_is_answered_at_shutdown():
    import threading
    import time
    with Server() as s:
        check(put(s, "totals", projection())[0] == 201, "deploy")
        wait_live(s, "totals")
        got = []

        def wait():
            got.append(s.request("GET", f"{DB}/projections/totals/state/x?minPosition=999999"
                                        "&timeoutMs=30000", conn=s.connect()))
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        rc = s.stop()
        t.join(10)
        check(got and got[0][0] == 202, f"answered while stopping: {got}")
        check(rc == 0, f"the server stopped cleanly: {rc}")


def test_append_state_sees_the_whole_event_as_a_read_does():
    src = "function reduce(s, e) return {id = e.id, hash = e.hash, position = e.position, " \
          "version = e.version, time = e.time, recorded = e.recorded, stream = e.stream} end"
    with Server() as s:
        check(put(s, "whole", reducer(src, category="w"))[0] == 201, "deploy")
        for i in range(3):
            st, _, a = s.post(f"{DB}/streams/w-1/events?returnState=true",
                              {"events": [{"type": "T", "data": {"i": i}}]})
            st, _, b = state(s, "w-1")
            check(a["state"] == b["state"], f"append {a['state']} vs read {b['state']}")
            check(a["state"]["hash"] and set(a["state"]["hash"]) != {"0"}, f"{a}")


def test_review_findings_on_names_categories_commands_and_parameters():
    with Server() as s:
        check(put(s, "orders", reducer())[0] == 201, "deploy")
        # a second reducer may not take the category
        st, _, b = put(s, "orders2", reducer())
        check(st == 409 and b["error"]["code"] == "category_taken", f"{st} {b}")
        # a name longer than a component's never acts on the one it starts with
        long = "o" + "a" * 63
        check(put(s, long, reducer(category="long"))[0] == 201, "the longest name")
        for path in (f"{DB}/components/{long}zzz", f"{DB}/views/{long}zzz",
                     f"{DB}/projections/{long}zzz"):
            st, _, b = s.request("DELETE" if "/components/" in path else "GET", path)
            check(st == 404, f"{path}: {st} {b}")
        check(s.get(f"{DB}/components/{long}")[0] == 200, "still there")
        # ctx.state of a stream with events but no reducer: nil, and the command commits
        cmd = "function decide(c, ctx) local s = ctx.state('misc-1') return {events = {{" \
              "stream = 'misc-1', type = 'Seen', data = {had = s ~= nil}}}} end"
        check(put(s, "see", {"kind": "command", "language": "lua", "source": cmd})[0] == 201, "")
        s.append("misc-1", [{"type": "T", "data": {}}])
        st, _, b = command(s, "see", {})
        check(st == 201 and b["events"][0]["data"] == {"had": False}, f"{st} {b}")
        # a stream member that is not a string
        bad = "function decide(c, ctx) return {events = {{stream = 12345, type = 'x', " \
              "data = {}}}} end"
        check(put(s, "badstream", {"kind": "command", "language": "lua", "source": bad})[0]
              == 201, "")
        st, _, b = command(s, "badstream", {})
        check(st == 422 and b["error"]["code"] == "command_failed", f"{st} {b}")
        # writing to a stream deleted for good: 410 at once, not five decisions and a 409
        s.append("gone-1", [{"type": "T", "data": {}}])
        check(s.request("DELETE", f"{DB}/streams/gone-1?hard=true")[0] == 204, "hard delete")
        tomb = "function decide(c, ctx) return {events = {{stream = 'gone-1', type = 'x', " \
               "data = {}}}} end"
        check(put(s, "tomb", {"kind": "command", "language": "lua", "source": tomb})[0] == 201, "")
        st, _, b = command(s, "tomb", {})
        check(st == 410 and b["error"]["code"] == "stream_deleted", f"{st} {b}")
        # projection key parameters past a key's size, view parameters past their count
        check(put(s, "p", projection())[0] == 201, "projection")
        wait_live(s, "p")
        expect_error(s.get(f"{DB}/projections/p/keys?prefix=" + "k" * 300), 400,
                     "invalid_parameter", field="prefix")
        check(put(s, "v", {"kind": "view", "language": "lua",
                           "source": "function evolve(s, e, p) return 1 end"})[0] == 201, "view")
        many = "&".join(f"p{i}=1" for i in range(65))
        expect_error(s.get(f"{DB}/views/v?{many}"), 400, "invalid_parameter")
        expect_error(s.get(f"{DB}/views/v?a=%ZZ"), 400, "invalid_parameter")


def test_too_many_component_names():
    with Server() as s:
        src = "function decide(c, ctx) return {} end"
        import threading
        def deploy(lo, hi):
            for i in range(lo, hi):
                st, _, b = s.request("PUT", f"{DB}/components/c{i}",
                                     {"kind": "command", "language": "lua", "source": src},
                                     conn=s.connect())
                check(st == 201, f"c{i}: {st} {b}")
        ts = [threading.Thread(target=deploy, args=(k * 250, k * 250 + 250)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        st, _, b = put(s, "one_more", {"kind": "command", "language": "lua", "source": src})
        check(st == 422 and b["error"]["code"] == "too_many_components", f"{st} {b}")
        st, _, b = s.get(f"{DB}/components")
        check(st == 200 and len(b["components"]) == 1000, f"{st}")
        check(put(s, "c7", {"kind": "command", "language": "lua", "source": src})[0] == 200,
              "a redeploy of a name it holds")


def test_views_are_not_kept_where_events_age_out():
    import time
    src = "function evolve(s, e, p) return (s or 0) + 1 end"
    with Server() as s:
        check(put(s, "n", {"kind": "view", "language": "lua", "source": src,
                           "filter": {"types": ["Added"]}})[0] == 201, "deploy")
        check(s.request("PUT", f"{DB}/streams/old-1/metadata", {"maxAge": 2})[0] == 200, "maxAge")
        append_n(s, "old-1", 20)
        st, _, b = s.get(f"{DB}/views/n")
        check(b["state"] == 20, f"{b}")
        time.sleep(2.5)
        append_n(s, "old-1", 1)
        st, _, b = s.get(f"{DB}/views/n")
        check(b["state"] == 1, f"the aged-out events left the view: {b}")


def test_a_command_reading_a_projection_waits_for_it_to_start():
    """Right after a deploy or a restart the runner has not started the projection yet; a
    command reading it waits for the start rather than failing."""
    src = ("function decide(c, ctx)\n"
           "  local n = ctx.projection('counts', 'all') or 0\n"
           "  return {events = {{stream = 'seen-' .. c.id, type = 'Seen', data = {n = n}}}}\n"
           "end\n")
    with Server() as s:
        append_n(s, "order-1", 3)
        check(put(s, "counts", projection("function key(e) return 'all' end\n"
                                          "function apply(s, e) return (s or 0) + 1 end",
                                          {"categories": ["order"]}))[0] == 201, "projection")
        check(put(s, "see", {"kind": "command", "language": "lua", "source": src})[0] == 201,
              "command")
        st, _, b = command(s, "see", {"id": 1})  # no wait: the runner may not have started it
        check(st == 201, f"right after the deploy: {st} {b}")
        s.restart()
        st, _, b = command(s, "see", {"id": 2})
        check(st == 201 and b["events"][0]["data"]["n"] == 3, f"right after a restart: {st} {b}")


def test_a_decision_commits_its_events_in_the_order_it_returned_them():
    src = ("function decide(c, ctx)\n"
           "  local p = c.prefix\n"
           "  local ev = {{stream = p .. 'a-1', type = 'One', data = 1},\n"
           "              {stream = p .. 'b-1', type = 'Two', data = 2},\n"
           "              {stream = p .. 'a-1', type = 'Three', data = 3}}\n"
           "  local conds = {}\n"
           "  if c.expect then conds = {{stream = p .. 'a-1', expectedVersion = 'no_stream'}} end\n"
           "  return {events = ev, conditions = conds}\n"
           "end\n")
    with Server() as s:
        check(put(s, "order", {"kind": "command", "language": "lua", "source": src})[0] == 201,
              "deploy")
        st, _, b = command(s, "order", {"prefix": ""})
        check(st == 201, f"{st} {b}")
        got = [(e["stream"], e["type"], e["version"]) for e in b["events"]]
        check(got == [("a-1", "One", 1), ("b-1", "Two", 1), ("a-1", "Three", 2)],
              f"in the order decide returned them: {b['events']}")
        pos = [e["position"] for e in b["events"]]
        check(pos == sorted(pos) and pos[2] - pos[0] == 2, f"consecutive: {pos}")
        # a stream with an expected version is one part: its events stay together, first
        st, _, b = command(s, "order", {"prefix": "n", "expect": True})
        check(st == 201, f"{st} {b}")
        got = [(e["stream"], e["type"]) for e in b["events"]]
        check(got == [("na-1", "One"), ("na-1", "Three"), ("nb-1", "Two")], f"{got}")
        st, _, b = command(s, "order", {"prefix": "n", "expect": True})
        check(st == 409, f"na-1 exists now: {st} {b}")


def test_tick_reducer_and_documents_over_the_native_api():
    spec = {"Added": [{"increment": {"target": "count"}},
                      {"increment": {"target": "total", "by": "$.data.amount"}},
                      {"set": {"target": "last", "value": "$.type"}}]}
    with Server() as s:
        st, _, b = put(s, "orders", reducer(json.dumps(spec), language="tick"))
        check(st == 201 and b["language"] == "tick", f"deploy: {st} {b}")
        append_n(s, "order-1", 3, amount=5)
        st, _, b = s.append("order-1", [{"type": "Unknown", "data": {}}])
        check(st == 201, f"append: {st} {b}")
        st, _, b = state(s, "order-1")
        check(st == 200 and b["state"] == {"count": 3, "total": 15, "last": "Added"} and
              b["version"] == 4, f"state: {st} {b}")
        # a handler that does not compile names the event type
        st, _, b = put(s, "bad", reducer(json.dumps({"Added": {"frob": {}}}), category="x",
                                         language="tick"))
        check(st == 400 and b["error"]["code"] == "syntax_error" and
              b["error"]["message"].startswith("Added: $"), f"syntax: {st} {b}")
        # documents belong to the surface that owns them: not deployed here
        st, _, b = put(s, "spec", {"kind": "document", "language": "json", "source": "{}"})
        check(st == 400 and b["error"]["code"] == "invalid_component", f"document: {st} {b}")
        st, _, b = put(s, "spec", {"kind": "reducer", "language": "json", "source": "{}",
                                   "category": "y"})
        check(st == 400 and b["error"]["code"] == "invalid_component", f"json code: {st} {b}")
