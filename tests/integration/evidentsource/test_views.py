"""EvidentSource state views and state changes over the real server: publishing (multipart with
a metadata part and a wasm or source part, in Lua, JavaScript, TypeScript and WebAssembly; the
newer generation's JSON registration), versions and their Location, the lists, reads of a
state view (parameters, as of a revision, a transaction time and an effective time, content
types), removal, processing commands (success with CloudEvents, a business error that writes
nothing, constraints, ctx.view, ctx.query and ctx.metadata), /v1/commands, /v1/state-views,
/v1/databases/{db}/components, 404s and bad publications."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

from es import Es, ce, es_error
from harness import Server, Skip, check, expect_error, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDARY = "----es-test-7MA4YWxkTrZu0gW"

COUNTER_LUA = """
function evolve(state, event, params)
  state = state or {count = 0, total = 0}
  state.count = state.count + 1
  state.total = state.total + (event.data.amount or 0)
  state.last = event.type
  state.source = event.source
  state.revision = event.revision
  return state
end
"""
COUNTER_JS = """
function evolve(state, event, params) {
  state = state || {count: 0, total: 0};
  state.count += 1;
  state.total += event.data.amount || 0;
  state.last = event.type;
  state.source = event.source;
  state.revision = event.revision;
  return state;
}
"""
COUNTER_TS = """
interface Counter { count: number; total: number; last?: string; source?: string;
                    revision?: number }
function evolve(state: Counter | null, event: any, params: Record<string, string>): Counter {
  const s: Counter = state ?? {count: 0, total: 0};
  s.count += 1;
  s.total += event.data.amount ?? 0;
  s.last = event.type;
  s.source = event.source;
  s.revision = event.revision;
  return s;
}
"""
ORDERS = {"type": "equals", "attr": {"stream": "orders"}}


def multipart(parts):
    """(body, headers) of a multipart/form-data body: parts is a list of (name, value,
    filename or None, content type or None)."""
    out = b""
    for name, value, filename, ctype in parts:
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\n{disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def view_meta(name, selector=None, **more):
    m = {"state_view_name": name, "description": f"the {name} view",
         "content_type": "application/json", "event_selector": selector or ORDERS,
         "query_temporality": "revision"}
    m.update(more)
    return m


def publish(e, db, what, meta, code, filename=None, part="source"):
    """POSTs a state view (what="state-views") or change ("state-changes") as multipart."""
    body, hdrs = multipart([("metadata", json.dumps(meta), None, "application/json"),
                            (part, code, filename, None)])
    return e.request("POST", f"/api/v1/db/{db}/{what}", raw=body, headers=hdrs)


def published(resp, name, version):
    st, hdrs, b = resp
    check(st == 201, f"publish {name}: {st} {b}")
    check(b == {"name": name, "version": version}, f"{b}")
    check(hdrs.get("location", "").endswith(f"/{name}?version={version}"), f"{hdrs}")
    return hdrs["location"]


def wasm_module(name):
    """The bytes of tests/wasm/<name>.wat, converted by wabt's wat2wasm."""
    tool = shutil.which("wat2wasm")
    if not tool:
        raise Skip("no wat2wasm (scripts/deps.sh installs wabt)")
    src = os.path.join(HERE, "..", "..", "wasm", f"{name}.wat")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, f"{name}.wasm")
        subprocess.run([tool, src, "-o", out], check=True)
        with open(out, "rb") as f:
            return f.read()


def native_append(s, db, stream, events):
    """Appends events natively (the view sees them as CloudEvents the server makes up)."""
    st, _, b = s.post(f"/v1/databases/{db}/streams/{stream}/events", {"events": events})
    check(st == 201, f"append: {st} {b}")
    return b["position"]


def js_available(s):
    st, _, b = s.request("PUT", "/v1/databases/default/components/probe",
                         {"kind": "view", "language": "javascript",
                          "source": "function evolve(s, e) { return s; }"})
    if st == 503:
        raise Skip("no JavaScript worker beside the binary")
    check(st in (200, 201), f"probe: {st} {b}")


def test_publish_views_in_every_language_read_and_list():
    with Server() as s:
        js_available(s)
        e = Es(s)
        e.database("shop")
        st, _, b = e.get("/databases/shop")
        check(b["state_views"] == [] and b["state_changes"] == [], f"fresh: {b}")
        check(e.get("/databases/shop/state-views")[2] == {"state_views": []}, "empty list")
        check(e.get("/databases/shop/state-changes")[2] == {"state_changes": []}, "empty list")
        loc = published(publish(e, "shop", "state-views", view_meta("lua-counter"),
                                COUNTER_LUA, "counter.lua"), "lua-counter", 1)
        check(loc == "/evidentsource/databases/shop/state-views/lua-counter?version=1", loc)
        published(publish(e, "shop", "state-views", view_meta("js-counter"), COUNTER_JS,
                          "counter.js"), "js-counter", 1)
        published(publish(e, "shop", "state-views", view_meta("ts-counter"), COUNTER_TS,
                          "counter.ts"), "ts-counter", 1)
        published(publish(e, "shop", "state-views", view_meta("wasm-counter"),
                          wasm_module("es_view"), part="wasm"), "wasm-counter", 1)
        # before any event: null
        st, hdrs, b = e.get("/databases/shop/state-views/lua-counter")
        check(st == 200 and b is None and hdrs["content-type"] == "application/json",
              f"{st} {hdrs} {b}")
        native_append(s, "shop", "orders", [{"type": "OrderCreated", "data": {"amount": 5}},
                                            {"type": "OrderPaid", "data": {"amount": 7}}])
        native_append(s, "shop", "other", [{"type": "OrderCreated", "data": {"amount": 100}}])
        head = s.head("shop")
        for name in ("lua-counter", "js-counter", "ts-counter"):
            st, _, b = e.get(f"/databases/shop/state-views/{name}")
            check(st == 200 and b["count"] == 2 and b["total"] == 12 and
                  b["last"] == "OrderPaid" and b["source"] == "orders" and
                  b["revision"] == head - 1, f"{name}: {st} {b}")
        st, _, b = e.get("/databases/shop/state-views/wasm-counter")
        check(st == 200 and b == {"n": 2}, f"wasm: {st} {b}")
        st, _, b = e.get("/databases/shop/state-views")
        names = [v["name"] for v in b["state_views"]]
        check(names == ["js-counter", "lua-counter", "ts-counter", "wasm-counter"], f"{b}")
        check(b["state_views"][1] == {"name": "lua-counter", "description": "the lua-counter "
                                      "view", "content_type": "application/json",
                                      "priority": "normal", "parameterized": False,
                                      "version": 1}, f"{b}")
        st, _, b = e.get("/databases/shop")
        check(b["state_views"] == names and b["state_changes"] == [], f"{b}")
        # a view the native API deployed is not a state view
        st, _, b = e.get("/databases/shop/state-views/probe")
        es_error((st, _, b), 404, "NOT_FOUND")


def test_versions_location_and_removal():
    with Server() as s:
        e = Es(s)
        e.database("shop")
        published(publish(e, "shop", "state-views", view_meta("v", priority="high"),
                          COUNTER_LUA, "v.lua"), "v", 1)
        native_append(s, "shop", "orders", [{"type": "OrderCreated", "data": {"amount": 1}}])
        check(e.get("/databases/shop/state-views/v?version=1")[2]["count"] == 1, "v1 read")
        doubled = COUNTER_LUA.replace("state.count + 1", "state.count + 2")
        loc = published(publish(e, "shop", "state-views", view_meta("v", priority="high"),
                                doubled, "v.lua"), "v", 2)
        st, _, b = e.get(loc.replace("/evidentsource", ""))
        check(st == 200 and b["count"] == 2, f"the new version computes: {st} {b}")
        es_error(e.get("/databases/shop/state-views/v?version=1"), 404, "NOT_FOUND",
                 reason="version_not_found")
        st, _, b = e.get("/databases/shop/state-views")
        check(b["state_views"][0]["version"] == 2 and b["state_views"][0]["priority"] == "high",
              f"{b}")
        # the native view of the same component: its format and metadata
        st, _, b = s.get("/v1/databases/shop/components/v")
        check(b["eventFormat"] == "cloudevents" and b["meta"]["priority"] == "high" and
              b["kind"] == "view" and b["filter"] == {"selector": {"type": "equals",
                                                                   "attr": {"stream": "orders"}}},
              f"{b}")
        st, _, b = e.delete("/databases/shop/state-views/v")
        check(st == 204, f"delete: {st} {b}")
        es_error(e.get("/databases/shop/state-views/v"), 404, "NOT_FOUND")
        es_error(e.delete("/databases/shop/state-views/v"), 404, "NOT_FOUND")
        check(e.get("/databases/shop/state-views")[2] == {"state_views": []}, "gone")
        # published again after its removal: versions go on
        published(publish(e, "shop", "state-views", view_meta("v"), COUNTER_LUA, "v.lua"),
                  "v", 3)
        es_error(e.get("/databases/shop/state-views/nope"), 404, "NOT_FOUND")
        es_error(e.get("/databases/nope/state-views/v"), 404, "NOT_FOUND")
        es_error(e.delete("/databases/shop/state-views/9bad"), 404, "NOT_FOUND")


PARAM_VIEW = """
function evolve(state, event, params)
  state = state or {orders = 0, customer = params.customer_id}
  if event.data.customer_id == params.customer_id then state.orders = state.orders + 1 end
  return state
end
"""
TEXT_VIEW = """
function evolve(state, event, params)
  return (state or "") .. event.type .. ";"
end
"""


def test_parameters_as_of_reads_and_content_types():
    with Server() as s:
        e = Es(s)
        e.database("shop")
        published(publish(e, "shop", "state-views",
                          view_meta("by-customer", parameters=[{"name": "customer_id"}]),
                          PARAM_VIEW, "p.lua"), "by-customer", 1)
        published(publish(e, "shop", "state-views",
                          view_meta("types", content_type="text/plain; charset=utf-8"),
                          TEXT_VIEW, "t.lua"), "types", 1)
        published(publish(e, "shop", "state-views",
                          view_meta("effective", query_temporality="effective_timestamp"),
                          COUNTER_LUA, "e.lua"), "effective", 1)
        views = {v["name"]: v for v in e.get("/databases/shop/state-views")[2]["state_views"]}
        check(views["by-customer"]["parameterized"] and not views["types"]["parameterized"],
              f"{views}")
        check(views["types"]["content_type"] == "text/plain; charset=utf-8", f"{views}")
        p1 = native_append(s, "shop", "orders", [
            {"type": "OrderCreated", "data": {"customer_id": "CUST-1", "amount": 1},
             "time": "2020-01-01T00:00:00Z"}])
        time.sleep(0.01)
        mid = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
            ".%06dZ" % int((time.time() % 1) * 1e6)
        time.sleep(0.01)
        native_append(s, "shop", "orders", [
            {"type": "OrderCreated", "data": {"customer_id": "CUST-2", "amount": 2},
             "time": "2030-01-01T00:00:00Z"},
            {"type": "OrderPaid", "data": {"customer_id": "CUST-1", "amount": 4},
             "time": "2021-06-01T00:00:00Z"}])
        st, _, b = e.get("/databases/shop/state-views/by-customer?customer_id=CUST-1")
        check(st == 200 and b == {"orders": 2, "customer": "CUST-1"}, f"{st} {b}")
        st, _, b = e.get("/databases/shop/state-views/by-customer?customer_id=CUST-2")
        check(b == {"orders": 1, "customer": "CUST-2"}, f"{b}")
        st, _, b = e.get(f"/databases/shop/state-views/by-customer?customer_id=CUST-1&"
                         f"revision={p1}")
        check(b == {"orders": 1, "customer": "CUST-1"}, f"as of a revision: {b}")
        st, _, b = e.get(f"/databases/shop/state-views/by-customer?customer_id=CUST-1&"
                         f"asOfTransactionTime={mid}")
        check(b == {"orders": 1, "customer": "CUST-1"}, f"as of a transaction time: {b}")
        st, _, b = e.get("/databases/shop/state-views/by-customer?customer_id=CUST-1&"
                         "asOfEffectiveTime=2020-12-31T00:00:00Z")
        check(b == {"orders": 1, "customer": "CUST-1"}, f"as of an effective time: {b}")
        # a text content type: the string state raw
        st, hdrs, b = e.get("/databases/shop/state-views/types")
        check(st == 200 and hdrs["content-type"] == "text/plain; charset=utf-8" and
              b == b"OrderCreated;OrderCreated;OrderPaid;", f"{st} {hdrs} {b!r}")
        check(hdrs.get("x-content-type-options") == "nosniff" and
              "sandbox" in hdrs.get("content-security-policy", ""),
              f"a view's answer is never run by a browser: {hdrs}")
        # effective_timestamp: as of now by effective time (the 2030 event is not yet)
        st, _, b = e.get("/databases/shop/state-views/effective")
        check(b["count"] == 2 and b["total"] == 5, f"effective now: {b}")
        st, _, b = e.get("/databases/shop/state-views/effective?"
                         "asOfEffectiveTime=2031-01-01T00:00:00Z")
        check(b["count"] == 3 and b["total"] == 7, f"effective 2031: {b}")
        st, _, b = e.get("/databases/shop/state-views/effective?"
                         "asOfEffectiveTime=2020-06-01T00:00:00Z&revision=" + str(p1))
        check(b["count"] == 1, f"both: {b}")
        for q in ("revision=0", "revision=x", "asOfTransactionTime=yesterday",
                  "asOfEffectiveTime=2020-13-01T00:00:00Z"):
            es_error(e.get(f"/databases/shop/state-views/types?{q}"), 400, "INVALID_ARGUMENT")
        es_error(e.get("/databases/shop/state-views/types?a=1&a=2"), 400, "INVALID_ARGUMENT")
        # the newer generation
        st, _, b = e.get("/v1/state-views/by-customer?database=shop&customer_id=CUST-1")
        check(st == 200 and b == {"orders": 2, "customer": "CUST-1"}, f"v1: {st} {b}")
        st, _, b = e.get(f"/v1/state-views/by-customer?database=shop&customer_id=CUST-1&"
                         f"revision={p1}")
        check(b == {"orders": 1, "customer": "CUST-1"}, f"v1 as of: {b}")
        es_error(e.get("/v1/state-views/by-customer?database=nope"), 404, "NOT_FOUND")
        es_error(e.get("/v1/state-views/by-customer"), 400, "INVALID_ARGUMENT")
        es_error(e.get("/v1/state-views/nope?database=shop"), 404, "NOT_FOUND")


def change_meta(name, **more):
    m = {"state_change_name": name, "description": f"the {name} change"}
    m.update(more)
    return m


DECIDE_LUA = """
function decide(command, ctx)
  local meta = ctx.metadata()
  local seen = ctx.view('totals', {})
  if command.amount > 100 then
    return {error = {code = 'INSUFFICIENT_CREDIT', message = 'Customer credit limit exceeded',
                     details = {available_credit = 100, order_total = command.amount}}}
  end
  local before = ctx.query({stream = 'orders', event_type = 'OrderCreated'})
  return {
    events = {{type = 'OrderCreated', source = 'orders', subject = command.order_id,
               data = {amount = command.amount, seen = seen and seen.count or 0,
                       earlier = #before, revision = meta.revision,
                       customer = meta.parameters.customer_id,
                       view = meta.state_view_name, effective = meta.effective_time}}},
    constraints = command.only_first and
      {{type = 'max', selector = {stream = 'orders'}, revision = 0}} or nil
  }
end
"""
DECIDE_JS = """
function decide(command, ctx) {
  const seen = ctx.view('totals', {});
  return {events: [{specversion: '1.0', id: 'js-' + command.order_id, source: 'orders',
                    type: 'OrderCreated', subject: command.order_id,
                    data: {amount: command.amount, seen: seen ? seen.count : 0}}]};
}
"""
DECIDE_TS = """
type Cmd = {order_id: string; amount: number};
function decide(command: Cmd, ctx: any) {
  return {events: [{source: 'orders', type: 'OrderCreated', subject: command.order_id,
                    data: {amount: command.amount, lang: 'ts'}}]};
}
"""


def test_state_changes_process_commands():
    with Server() as s:
        js_available(s)
        e = Es(s)
        e.database("shop")
        published(publish(e, "shop", "state-views", view_meta("totals"), COUNTER_LUA, "t.lua"),
                  "totals", 1)
        published(publish(e, "shop", "state-changes",
                          change_meta("create-order", state_view_name="totals"), DECIDE_LUA,
                          "create.lua"), "create-order", 1)
        published(publish(e, "shop", "state-changes", change_meta("js-order"), DECIDE_JS,
                          "order.js"), "js-order", 1)
        published(publish(e, "shop", "state-changes", change_meta("ts-order"), DECIDE_TS,
                          "order.ts"), "ts-order", 1)
        published(publish(e, "shop", "state-changes", change_meta("wasm-order"),
                          wasm_module("es_change"), part="wasm"), "wasm-order", 1)
        st, _, b = e.get("/databases/shop/state-changes")
        check([c["name"] for c in b["state_changes"]] ==
              ["create-order", "js-order", "ts-order", "wasm-order"], f"{b}")
        check(b["state_changes"][0] == {"name": "create-order", "description": "the "
                                        "create-order change", "state_view_name": "totals",
                                        "version": 1}, f"{b}")
        check(b["state_changes"][1]["state_view_name"] is None, f"{b}")
        head = s.head("shop")
        st, _, b = e.post("/databases/shop/state-changes/create-order/process",
                          {"command": {"type": "CreateOrder", "order_id": "o-1", "amount": 20},
                           "parameters": {"customer_id": "CUST-123"}})
        check(st == 200 and b["success"] is True and b["revision"] == head + 1, f"{st} {b}")
        ev = b["events"][0]
        check(ev["specversion"] == "1.0" and ev["source"] == "orders" and
              ev["type"] == "OrderCreated" and ev["subject"] == "o-1" and ev["id"] and
              ev["revision"] == head + 1 and ev["recordedtime"], f"{ev}")
        check(ev["data"]["amount"] == 20 and ev["data"]["seen"] == 0 and
              ev["data"]["earlier"] == 0 and ev["data"]["revision"] == head and
              ev["data"]["customer"] == "CUST-123" and ev["data"]["view"] == "totals" and
              ev["data"]["effective"].endswith("Z"), f"{ev}")
        # the event is a CloudEvent of the database, and the view saw it
        st, _, b = e.get("/databases/shop/state-views/totals")
        check(b["count"] == 1 and b["total"] == 20, f"{b}")
        st, _, b = e.post("/databases/shop/state-changes/create-order/process",
                          {"command": {"order_id": "o-2", "amount": 30}})
        check(st == 200 and b["events"][0]["data"]["seen"] == 1 and
              b["events"][0]["data"]["earlier"] == 1, f"ctx reads: {b}")
        # a business error writes nothing
        head = s.head("shop")
        st, _, b = e.post("/databases/shop/state-changes/create-order/process",
                          {"command": {"order_id": "o-3", "amount": 159.99}})
        check(st == 422 and b == {"success": False, "error": {
            "code": "INSUFFICIENT_CREDIT", "message": "Customer credit limit exceeded",
            "details": {"available_credit": 100, "order_total": 159.99}}}, f"{st} {b}")
        check(s.head("shop") == head, "a rejection wrote something")
        # a constraint that fails (no event of orders may exist): 409, nothing written
        es_error(e.post("/databases/shop/state-changes/create-order/process",
                        {"command": {"order_id": "o-4", "amount": 1, "only_first": True}}),
                 409, "FAILED_PRECONDITION")
        check(s.head("shop") == head, "a failed constraint wrote something")
        # the other languages
        st, _, b = e.post("/databases/shop/state-changes/js-order/process",
                          {"command": {"order_id": "o-5", "amount": 2}})
        check(st == 200 and b["events"][0]["id"] == "js-o-5" and
              b["events"][0]["data"] == {"amount": 2, "seen": 2}, f"js: {st} {b}")
        st, _, b = e.post("/databases/shop/state-changes/ts-order/process",
                          {"command": {"order_id": "o-6", "amount": 3}})
        check(st == 200 and b["events"][0]["data"] == {"amount": 3, "lang": "ts"}, f"ts: {b}")
        st, _, b = e.post("/databases/shop/state-changes/wasm-order/process",
                          {"command": {"order_id": "o-7"}})
        ev = b["events"][0]
        check(st == 200 and ev["type"] == "WasmDecided" and ev["source"] == "wasm-order" and
              ev["subject"] == "wasm" and ev["data"] == {"by": "wasm"} and
              b["revision"] == ev["revision"], f"wasm: {st} {b}")
        # 404s and bad bodies
        es_error(e.post("/databases/shop/state-changes/nope/process", {"command": {}}), 404,
                 "NOT_FOUND")
        es_error(e.post("/databases/shop/state-changes/totals/process", {"command": {}}), 404,
                 "NOT_FOUND")
        es_error(e.post("/databases/nope/state-changes/create-order/process", {"command": {}}),
                 404, "NOT_FOUND")
        es_error(e.post("/databases/shop/state-changes/create-order/process", {"cmd": {}}), 400,
                 "INVALID_ARGUMENT", field="command")
        es_error(e.post("/databases/shop/state-changes/create-order/process",
                        {"command": {}, "parameters": 1}), 400, "INVALID_ARGUMENT",
                 field="parameters")
        es_error(e.post("/databases/shop/state-changes/create-order/process",
                        {"command": {}, "parameters": [1]}), 400, "INVALID_ARGUMENT")
        es_error(e.request("POST", "/databases/shop/state-changes/create-order/process",
                           raw=b"{", headers={"Content-Type": "application/json"}), 400,
                 "INVALID_ARGUMENT")
        # code that fails
        published(publish(e, "shop", "state-changes", change_meta("broken"),
                          "function decide(c, ctx) error('boom') end", "b.lua"), "broken", 1)
        es_error(e.post("/databases/shop/state-changes/broken/process", {"command": {}}), 422,
                 "FAILED_PRECONDITION", reason="command_failed")
        published(publish(e, "shop", "state-changes", change_meta("bad-event"),
                          "function decide(c, ctx) return {events = {{type = 'x', time = 'then'}}} end",
                          "b.lua"), "bad-event", 1)
        es_error(e.post("/databases/shop/state-changes/bad-event/process", {"command": {}}),
                 422, "FAILED_PRECONDITION", reason="command_failed")


def test_v1_commands_components_and_registration():
    with Server() as s:
        e = Es(s)
        e.database("shop")
        published(publish(e, "shop", "state-changes",
                          change_meta("orders", command_types=["CreateOrder", "AmendOrder"]),
                          "function decide(c, ctx) return {events = {{type = c.type .. 'd', "
                          "source = 'orders', subject = c.subject, data = c.data}}} end",
                          "o.lua"), "orders", 1)
        published(publish(e, "shop", "state-changes", change_meta("CancelOrder"),
                          "function decide(c, ctx) return {events = {}} end", "c.lua"),
                  "CancelOrder", 1)
        st, _, b = e.post("/v1/commands", {"database": "shop", "command": {
            "type": "CreateOrder", "subject": "o-1", "data": {"n": 1}}})
        check(st == 200 and b["success"] and b["events"][0]["type"] == "CreateOrderd" and
              b["events"][0]["subject"] == "o-1" and b["events"][0]["data"] == {"n": 1},
              f"{st} {b}")
        st, _, b = e.post("/v1/commands", {"database": "shop", "command": {
            "type": "AmendOrder", "subject": "o-1"}})
        check(st == 200 and b["events"][0]["type"] == "AmendOrderd", f"{st} {b}")
        head = s.head("shop")
        st, _, b = e.post("/v1/commands", {"database": "shop",
                                           "command": {"type": "CancelOrder"}})
        check(st == 200 and b == {"success": True, "events": [], "revision": head},
              f"by name, nothing to write: {st} {b}")
        es_error(e.post("/v1/commands", {"database": "shop", "command": {"type": "Nope"}}),
                 404, "NOT_FOUND")
        es_error(e.post("/v1/commands", {"database": "nope", "command": {"type": "x"}}), 404,
                 "NOT_FOUND")
        es_error(e.post("/v1/commands", {"command": {"type": "x"}}), 400, "INVALID_ARGUMENT")
        es_error(e.post("/v1/commands", {"database": "shop", "command": {"data": 1}}), 400,
                 "INVALID_ARGUMENT")
        # registration as JSON: a view in Lua, a change in WebAssembly (base64)
        st, hdrs, b = e.post("/v1/databases/shop/components", {
            "kind": "state_view", "name": "count", "language": "lua", "source": COUNTER_LUA,
            "metadata": view_meta("count", {"type": "starts_with",
                                            "attr": {"event_type": "CreateOrder"}})})
        check(st == 201 and b == {"kind": "state_view", "name": "count", "version": 1} and
              hdrs["location"].endswith("/databases/shop/state-views/count?version=1"),
              f"{st} {hdrs} {b}")
        st, _, b = e.get("/v1/state-views/count?database=shop")
        check(st == 200 and b["count"] == 1, f"{b}")
        try:
            module = base64.b64encode(wasm_module("es_change")).decode()
        except Skip:
            module = None
        if module:
            meta = change_meta("wasm-change")
            del meta["state_change_name"]
            st, _, b = e.post("/v1/databases/shop/components", {
                "kind": "state_change", "name": "wasm-change", "wasm": module,
                "metadata": meta})
            check(st == 201 and b["version"] == 1, f"{st} {b}")
        st, _, b = e.get("/v1/databases/shop/components")
        comps = {c["name"]: c for c in b["components"]}
        check(comps["count"]["kind"] == "state_view" and comps["count"]["language"] == "lua" and
              comps["count"]["metadata"]["state_view_name"] == "count" and
              comps["orders"]["kind"] == "state_change" and
              comps["orders"]["metadata"]["command_types"] == ["CreateOrder", "AmendOrder"] and
              comps["count"]["deployedAt"], f"{b}")
        if module:
            check(comps["wasm-change"]["language"] == "wasm", f"{b}")
        for bad in ({"kind": "saga", "name": "x", "language": "lua", "source": "x",
                     "metadata": {}},
                    {"kind": "state_view", "name": "x", "language": "lua", "source": "x"},
                    {"kind": "state_view", "name": "x", "language": "cobol", "source": "x",
                     "metadata": view_meta("x")},
                    {"kind": "state_view", "name": "x", "source": "x", "wasm": "AAA=",
                     "metadata": view_meta("x")},
                    {"kind": "state_view", "name": "y", "language": "lua", "source": "x",
                     "metadata": view_meta("x")},
                    {"kind": "state_view", "name": "x", "language": "lua", "source": "x",
                     "metadata": view_meta("x"), "extra": 1}):
            es_error(e.post("/v1/databases/shop/components", bad), 400, "INVALID_ARGUMENT")
        es_error(e.get("/v1/databases/nope/components"), 404, "NOT_FOUND")


def test_bad_publications():
    with Server() as s:
        e = Es(s)
        e.database("shop")
        path = "/api/v1/db/shop/state-views"

        def bad(resp, status=400, code="INVALID_ARGUMENT", **details):
            return es_error(resp, status, code, **details)

        bad(e.post(path, {"metadata": view_meta("v")}), 415)
        body, hdrs = multipart([("metadata", json.dumps(view_meta("v")), None, None),
                                ("source", COUNTER_LUA, "v.lua", None)])
        bad(e.request("POST", path, raw=body[:-10], headers=hdrs), reason="invalid_multipart")
        bad(e.request("POST", path, raw=body.replace(b"--" + BOUNDARY.encode() + b"--", b""),
                      headers=hdrs), reason="invalid_multipart")
        bad(e.request("POST", path, raw=b"no parts here", headers=hdrs),
            reason="invalid_multipart")
        bad(e.request("POST", path, raw=body,
                      headers={"Content-Type": "multipart/form-data"}), 415)
        body, hdrs = multipart([("source", COUNTER_LUA, "v.lua", None)])
        bad(e.request("POST", path, raw=body, headers=hdrs), field="metadata")
        body, hdrs = multipart([("metadata", "{not json", None, None),
                                ("source", COUNTER_LUA, "v.lua", None)])
        bad(e.request("POST", path, raw=body, headers=hdrs), field="metadata")
        for member in ("state_view_name", "content_type", "event_selector",
                       "query_temporality"):
            m = view_meta("v")
            del m[member]
            bad(publish(e, "shop", "state-views", m, COUNTER_LUA, "v.lua"),
                field=f"metadata.{member}")
        for member, value in (("state_view_name", "9lives"), ("state_view_name", 7),
                              ("content_type", "json"), ("content_type", "text/plain\u0001"),
                              ("content_type", "text/plain\r\nX-Injected: 1"),
                              ("content_type", "text/plain; a=\r\nX-Injected: 1"),
                              ("content_type", "text/" + "p" * 130),
                              ("query_temporality", "bitemporal"),
                              ("event_selector", {"type": "xor"}), ("description", 5),
                              ("parameters", "customer_id")):
            bad(publish(e, "shop", "state-views", view_meta("v", **{member: value}),
                        COUNTER_LUA, "v.lua"), field=f"metadata.{member}")
        bad(publish(e, "shop", "state-views", view_meta("v", description="d" * 5000),
                    COUNTER_LUA, "v.lua"), field="metadata")
        body, hdrs = multipart([("metadata", json.dumps(view_meta("v")), None, None)])
        bad(e.request("POST", path, raw=body, headers=hdrs), reason="invalid_code")
        body, hdrs = multipart([("metadata", json.dumps(view_meta("v")), None, None),
                                ("source", COUNTER_LUA, "v.lua", None),
                                ("wasm", b"\0asm", "v.wasm", None)])
        bad(e.request("POST", path, raw=body, headers=hdrs), reason="invalid_code")
        bad(publish(e, "shop", "state-views", view_meta("v"), COUNTER_LUA, "v.py"),
            reason="invalid_code", field="source")
        bad(publish(e, "shop", "state-views", view_meta("v"), COUNTER_LUA, None),
            reason="invalid_code", field="source")
        bad(publish(e, "shop", "state-views", view_meta("v"), b"\xff\xfe", "v.lua"),
            reason="invalid_code")
        # code that does not load: a syntax error with its line and column
        b = bad(publish(e, "shop", "state-views", view_meta("v"),
                        "function evolve(s, e)\n  return s +\nend\n", "v.lua"),
                reason="syntax_error", field="source")
        check(b["error"]["details"]["line"] == 3, f"{b}")
        b = bad(publish(e, "shop", "state-views", view_meta("v"),
                        "function evolve(s, e) {\n  return s +;\n}\n", "v.js"),
                reason="syntax_error")
        if b["error"]["details"].get("kind") != "worker_error":
            check(b["error"]["details"]["line"] == 2 and b["error"]["details"]["column"] > 0,
                  f"{b}")
        bad(publish(e, "shop", "state-views", view_meta("v"), "function reduce(s, e) end",
                    "v.lua"), reason="missing_entry_point")
        bad(publish(e, "shop", "state-changes", change_meta("c"), "x = 1", "c.lua"),
            reason="missing_entry_point")
        bad(publish(e, "shop", "state-changes", change_meta("c", command_types="CreateOrder"),
                    "function decide() end", "c.lua"), field="metadata.command_types")
        # nothing was published
        check(e.get("/databases/shop/state-views")[2] == {"state_views": []}, "published")
        check(s.get("/v1/databases/shop/components")[2] == {"components": []}, "deployed")
        # one namespace for views and changes
        published(publish(e, "shop", "state-views", view_meta("both"), COUNTER_LUA, "b.lua"),
                  "both", 1)
        bad(publish(e, "shop", "state-changes", change_meta("both"), "function decide() end",
                    "b.lua"), 409, "ALREADY_EXISTS")
        es_error(publish(e, "nope", "state-views", view_meta("v"), COUNTER_LUA, "v.lua"), 404,
                 "NOT_FOUND")


def test_native_event_formats_and_meta():
    """The logic layer's eventFormat and meta members, natively."""
    with Server() as s:
        db = "/v1/databases/default"
        st, _, b = s.request("PUT", f"{db}/components/v", {
            "kind": "view", "language": "lua", "eventFormat": "cloudevents",
            "meta": {"content_type": "application/json", "query_temporality": "revision"},
            "source": "function evolve(s, e) return {e.specversion, e.source, e.revision} "
                      "end"})
        check(st == 201 and b["eventFormat"] == "cloudevents" and
              b["meta"]["query_temporality"] == "revision", f"{st} {b}")
        s.append("st-1", [{"type": "t", "data": {}}])
        event_pos = s.head()
        st, _, b = s.get(f"{db}/views/v")
        check(st == 200 and b["state"] == ["1.0", "st-1", event_pos], f"{st} {b}")
        expect_error(s.request("PUT", f"{db}/components/w", {
            "kind": "view", "language": "lua", "eventFormat": "avro",
            "source": "function evolve(s, e) return s end"}), 400, "invalid_component")
        expect_error(s.request("PUT", f"{db}/components/w", {
            "kind": "view", "language": "lua", "eventFormat": "Cloud Events",
            "source": "function evolve(s, e) return s end"}), 400, "invalid_component",
            "eventFormat")
        expect_error(s.request("PUT", f"{db}/components/w", {
            "kind": "view", "language": "lua", "meta": {"x": "y" * 5000},
            "source": "function evolve(s, e) return s end"}), 400, "invalid_component", "meta")
        # reducers and projections see CloudEvents too
        st, _, b = s.request("PUT", f"{db}/components/r", {
            "kind": "reducer", "language": "lua", "category": "st", "eventFormat": "cloudevents",
            "source": "function reduce(s, e) return {e.specversion, e.source, e.type} end"})
        check(st == 201, f"{st} {b}")
        st, _, b = s.get(f"{db}/streams/st-1/state")
        check(st == 200 and b["state"] == ["1.0", "st-1", "t"], f"reducer: {st} {b}")
        st, _, b = s.request("PUT", f"{db}/components/p", {
            "kind": "projection", "language": "lua", "eventFormat": "cloudevents",
            "source": "function key(e) return e.source end "
                      "function apply(s, e) return {e.specversion, e.revision} end"})
        check(st == 201, f"{st} {b}")

        def projected():
            st, _, b = s.get(f"{db}/projections/p/state/st-1")
            return b if st == 200 else None
        wait_until(projected)
        check(projected()["state"] == ["1.0", event_pos], f"projection: {projected()}")
        # a native view that the dialect does not list (no eventFormat)
        st, _, b = s.request("PUT", f"{db}/components/plain", {
            "kind": "view", "language": "lua", "source": "function evolve(s, e) return s end"})
        check(st == 201 and "eventFormat" not in b and "meta" not in b, f"{b}")
        st, _, b = Es(s).get("/databases/default/state-views")
        check([v["name"] for v in b["state_views"]] == ["v"], f"{b}")
        # metadata deployed natively is not checked: a content type that is none is not sent
        st, _, b = s.request("PUT", f"{db}/components/inj", {
            "kind": "view", "language": "lua", "eventFormat": "cloudevents",
            "meta": {"content_type": "text/plain\r\nX-Injected: 1"},
            "source": "function evolve(s, e) return 'x' end"})
        check(st == 201, f"{st} {b}")
        st, hdrs, b = Es(s).get("/databases/default/state-views/inj")
        check(st == 200 and hdrs["content-type"] == "application/json" and b == "x" and
              "x-injected" not in hdrs, f"{st} {hdrs} {b}")
        # the component survives a restart with its format and meta
        s.restart()
        st, _, b = s.get(f"{db}/components/v")
        check(b["eventFormat"] == "cloudevents" and b["meta"]["content_type"] ==
              "application/json", f"{b}")


def test_publish_with_curl_and_on_the_dialects_own_port():
    """The seed's curl -F form (a metadata field with ;type=application/json and a file part),
    on the dialect's own port: the Location has no /evidentsource prefix there."""
    curl = shutil.which("curl")
    if not curl:
        raise Skip("no curl")
    from harness import dialect_port
    with Server(extra=["--dialect-listen", "evidentsource=127.0.0.1:0"]) as s:
        port = dialect_port(s, "evidentsource")
        root = Es(s, base="", port=port)
        root.database("my-events")
        meta = json.dumps(view_meta("order-summary", {
            "type": "or", "selectors": [
                {"type": "equals", "attr": {"event_type": "OrderCreated"}},
                {"type": "equals", "attr": {"event_type": "OrderCompleted"}}]}))
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "order_summary.lua")
            with open(src, "w") as f:
                f.write(COUNTER_LUA)
            out = subprocess.run(
                [curl, "-s", "-i", "-X", "POST",
                 f"http://127.0.0.1:{port}/api/v1/db/my-events/state-views",
                 "-F", f"metadata={meta};type=application/json",
                 "-F", f"source=@{src};type=text/x-lua"],
                capture_output=True, timeout=30, check=True).stdout.decode()
        check(out.startswith("HTTP/1.1 201") and
              "location: /databases/my-events/state-views/order-summary?version=1" in
              out.lower(), out)
        native_append(s, "my-events", "shop", [{"type": "OrderCreated", "data": {"amount": 2}},
                                               {"type": "Other", "data": {}},
                                               {"type": "OrderCompleted", "data": {}}])
        st, _, b = root.get("/databases/my-events/state-views/order-summary")
        check(st == 200 and b["count"] == 2 and b["last"] == "OrderCompleted", f"{st} {b}")


def test_views_and_changes_see_cloudevents_as_appended():
    """Events appended through the dialect reach the code with their attributes as sent; a
    state change's min_revision constraint is the seed's."""
    with Server() as s:
        e = Es(s)
        e.database("shop")
        published(publish(e, "shop", "state-views", view_meta("seen", {"source": "orders"}),
                          "function evolve(s, e) s = s or {} s[#s + 1] = {e.id, e.time or '', "
                          "e.traceparent or '', e.revision, e.data} return s end", "s.lua"),
                  "seen", 1)
        evs = [ce("OrderCreated", "orders", {"n": 1}, id="a-1", time="2024-01-15T10:30:00+01:00",
                  traceparent="00-abc-01"),
               ce("OrderCreated", "orders", {"n": 2}, id="a-2")]
        st, _, b = e.append("shop", evs)
        check(st == 200 and b["events_count"] == 2, f"{st} {b}")
        last = b["revision"]
        st, _, b = e.get("/databases/shop/state-views/seen")
        check(st == 200 and b[0] == ["a-1", "2024-01-15T10:30:00+01:00", "00-abc-01", last - 1,
                                     {"n": 1}] and b[1][0] == "a-2" and b[1][3] == last,
              f"{st} {b}")
        published(publish(e, "shop", "state-changes", change_meta("guarded"),
                          "function decide(c, ctx) return {events = {{type = 'G', source = "
                          "'orders', data = {}}}, constraints = {{type = 'min_revision', "
                          "revision = c.at_least}}} end", "g.lua"), "guarded", 1)
        head = s.head("shop")
        es_error(e.post("/databases/shop/state-changes/guarded/process",
                        {"command": {"at_least": head + 10}}), 409, "FAILED_PRECONDITION")
        check(s.head("shop") == head, "a failed min_revision wrote something")
        st, _, b = e.post("/databases/shop/state-changes/guarded/process",
                          {"command": {"at_least": head}})
        check(st == 200 and b["revision"] == head + 1, f"{st} {b}")
        # a constraint that is no constraint fails the command, naming it
        b = es_error(e.post("/databases/shop/state-changes/guarded/process",
                            {"command": {"at_least": "x"}}), 422, "FAILED_PRECONDITION")
        check("constraints[0]" in b["error"]["message"], f"{b}")
        # and the events a change wrote read back through the event routes alike
        st, _, got = e.get(f"/databases/shop/events/{head + 1}")
        check(st == 200 and got["type"] == "G" and got["source"] == "orders", f"{st} {got}")
