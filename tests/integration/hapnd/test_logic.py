"""Hapnd reducers and projections over the real server: zips of Lua, JavaScript and TypeScript
uploaded as multipart, compiled on a worker (202, then a status), reducers bound to aggregate
types (automatically and by PUT) with their state in every append answer and by GET, keyed
projections caught up over history (202 while catching up, then 200), polled notifications,
webhooks signed the Hapnd way (checked with Python's hmac) and secret rotation
(docs/dialects/hapnd.md)."""
import hashlib
import hmac
import io
import json
import time
import uuid
import zipfile

from harness import Server, check, split_raw, wait_until
from test_webhooks import Receiver

H = "/hapnd"

ORDER_LUA = """
kind = "reducer"
aggregateType = "order"
stateType = "OrderState"
function apply(state, event)
  state = state or {total = 0, items = {}, itemCount = 0}
  if event.eventType == "ItemAdded" then
    state.total = state.total + event.data.price
    state.items[#state.items + 1] = event.data.item
    state.itemCount = state.itemCount + 1
  end
  state.version = event.version
  state.aggregate = event.aggregateId
  return state
end
"""

CART_JS = """
export const kind = "reducer";
export const aggregateType = "cart";
export function apply(state, event) {
  const s = state ?? { lines: 0 };
  return { lines: s.lines + 1, last: event.eventType, corr: event.correlationId ?? null };
}
"""

COUNTER_TS = """
interface Counter { n: number }
export const className = "Counter";
export function apply(state: Counter | null, event: { eventType: string }): Counter {
  return { n: (state?.n ?? 0) + 1 };
}
"""

SALES_LUA = """
kind = "projection"
function resolveKey(event)
  if event.data.customer == nil then return nil end
  return event.data.customer
end
function apply(state, event)
  state = state or {orders = 0, spend = 0}
  state.orders = state.orders + 1
  state.spend = state.spend + (event.data.amount or 0)
  return state
end
"""


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def multipart(fields):
    """fields: name -> bytes (sent as a file) or str (a plain field)."""
    boundary = "----annals" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, bytes):
            out.write(f'Content-Disposition: form-data; name="{name}"; filename="{name}.zip"\r\n'
                      "Content-Type: application/zip\r\n\r\n".encode())
            out.write(value)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.write(value.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def upload(s, what, files=None, raw_zip=None, config=None):
    fields = {"file": raw_zip if raw_zip is not None else zip_of(files)}
    if config is not None:
        fields["config"] = json.dumps(config)
    body, ctype = multipart(fields)
    return s.request("POST", f"{H}/{what}/upload", body, headers={"Content-Type": ctype})


def status_of(s, what, rid, want=("compiled", "failed")):
    last = {}

    def done():
        nonlocal last
        st, _, last = s.get(f"{H}/{what}/{rid}/status")
        check(st == 200, f"status {st} {last}")
        return last.get("status") in want

    wait_until(done, timeout=30)
    return last


def append(s, agg, etype, data, **kw):
    body = {"aggregateId": agg, "eventType": etype, "data": data, **kw}
    st, _, b = s.post(f"{H}/events", body)
    check(st == 201, f"append {st} {b}")
    return b


def expect(resp, status, code):
    st, _, b = resp
    check(st == status, f"want {status} {code}, got {st} {b}")
    check(isinstance(b, dict) and b.get("errorCode") == code and isinstance(b.get("error"), str),
          f"want errorCode {code}: {b}")


def test_reducer_upload_compiles_binds_and_returns_state():
    with Server() as s:
        st, _, b = upload(s, "reducers", {"OrderReducer.lua": ORDER_LUA, "README.md": "docs"})
        check(st == 202, f"upload {st} {b}")
        check(b["status"] == "pending_compilation" and b["reducerId"].startswith("red_"), b)
        rec = status_of(s, "reducers", b["reducerId"])
        check(rec["status"] == "compiled" and rec["kind"] == "reducer", rec)
        check(rec["discovered"] == [{"className": "OrderReducer", "stateTypeName": "OrderState",
                                     "kind": "reducer", "aggregateType": "order"}], rec)
        check("compiledAt" in rec and "createdAt" in rec and "source" not in json.dumps(rec), rec)
        a = append(s, "order_123", "ItemAdded", {"item": "Widget", "price": 25.0})
        check(a["state"] == {"total": 25.0, "items": ["Widget"], "itemCount": 1, "version": 1,
                             "aggregate": "order_123"}, a)
        st, _, bb = s.post(f"{H}/events/batch", {"aggregateId": "order_123", "events": [
            {"eventType": "ItemAdded", "data": {"item": "Gadget", "price": 15.0}},
            {"eventType": "Noted", "data": {}}]})
        check(st == 201 and bb["state"]["total"] == 40.0 and bb["state"]["itemCount"] == 2
              and bb["state"]["version"] == 3, f"{st} {bb}")
        st, _, g = s.get(f"{H}/aggregate-types/order")
        check(st == 200 and g["reducerId"] == b["reducerId"] and g["aggregateType"] == "order",
              f"{st} {g}")
        st, _, g = s.get(f"{H}/aggregate-types/order/order_123/state")
        check(st == 200 and g["version"] == 3 and g["state"]["items"] == ["Widget", "Gadget"]
              and g["aggregateId"] == "order_123" and g["lastModified"].endswith("Z"),
              f"{st} {g}")
        expect(s.get(f"{H}/aggregate-types/order/order_999/state"), 404, "NOT_FOUND")
        expect(s.get(f"{H}/aggregate-types/cart/cart-1/state"), 404, "NOT_FOUND")
        append(s, "cart-1", "Added", {})
        expect(s.get(f"{H}/aggregate-types/cart/cart-1/state"), 404, "NO_REDUCER_BOUND")
        expect(s.get(f"{H}/aggregate-types/cart"), 404, "NO_REDUCER_BOUND")
        # an aggregate of another type is not this type's
        expect(s.get(f"{H}/aggregate-types/order/cart-1/state"), 404, "NOT_FOUND")
        # no reducer bound: no state member at all
        check("state" not in append(s, "cart-2", "Added", {}), "state without a reducer")


def test_javascript_and_typescript_reducers_and_manual_binding():
    with Server() as s:
        st, _, b = upload(s, "reducers", {"src/CartReducer.js": CART_JS,
                                          "src/Counter.ts": COUNTER_TS})
        check(st == 202, f"{st} {b}")
        rec = status_of(s, "reducers", b["reducerId"])
        check(rec["status"] == "compiled", rec)
        by = {d["className"]: d for d in rec["discovered"]}
        check(by["CartReducer"]["aggregateType"] == "cart", rec)
        check(by["Counter"]["aggregateType"] == "counter", rec)  # from the class name
        a = append(s, "cart-7", "LineAdded", {"sku": "x"}, correlationId="req-1")
        check(a["state"] == {"lines": 1, "last": "LineAdded", "corr": "req-1"}, a)
        # bind the TypeScript class to another type, explicitly
        st, _, p = s.request("PUT", f"{H}/aggregate-types/visit",
                             {"reducerId": b["reducerId"], "className": "Counter"})
        check(st == 200 and p["aggregateType"] == "visit" and "boundAt" in p
              and "catchup" in p["message"], f"{st} {p}")
        for _ in range(3):
            last = append(s, "visit_1", "Seen", {})
        check(last["state"] == {"n": 3}, last)
        # an explicit type on an id that infers nothing uses that type's reducer
        check(append(s, "abc", "Seen", {}, aggregateType="visit")["state"] == {"n": 1}, "abc")
        # binding errors
        expect(s.request("PUT", f"{H}/aggregate-types/visit",
                         {"reducerId": "red_nope"}), 404, "NOT_FOUND")
        expect(s.request("PUT", f"{H}/aggregate-types/visit",
                         {"reducerId": b["reducerId"], "className": "Nope"}), 400,
               "INVALID_REDUCER")
        expect(s.request("PUT", f"{H}/aggregate-types/visit", {"reducerId": b["reducerId"]}),
               400, "INVALID_REDUCER")  # two reducers, none for "visit": name the class
        expect(s.request("PUT", f"{H}/aggregate-types/visit", {}), 400, "VALIDATION_ERROR")


def test_a_failing_reducer_never_loses_the_append():
    src = 'kind = "reducer"\naggregateType = "bad"\nfunction apply(s, e) error("boom") end\n'
    with Server() as s:
        st, _, b = upload(s, "reducers", {"Bad.lua": src})
        check(status_of(s, "reducers", b["reducerId"])["status"] == "compiled", "compiled")
        a = append(s, "bad_1", "X", {})
        check("state" not in a and a["stateError"]["errorCode"] == "REDUCER_FAILED"
              and "boom" in a["stateError"]["error"], a)
        st, _, ev = s.get(f"{H}/events/bad_1")
        check(st == 200 and len(ev["events"]) == 1, f"{st} {ev}")
        st, _, g = s.get(f"{H}/aggregate-types/bad/bad_1/state")
        check(st == 500 and g["errorCode"] == "REDUCER_FAILED", f"{st} {g}")


def stored_zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def head_only(s, path, length):
    """A POST whose head announces length bytes of body, none sent: the answer to the head."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {length}\r\n\r\n").encode()
    return split_raw(s.raw(head, read_all=False))


def test_zips_up_to_5_mb_pass_the_servers_smaller_body_limit():
    # the server's body limit is 4 MiB by default; the Hapnd mount takes Hapnd's 5 MB uploads
    blob = uuid.uuid4().bytes * (900 * 1000 // 16)  # 0.9 MB a file, under the 1 MB file limit
    files = {"OrderReducer.lua": ORDER_LUA, **{f"assets/b{i}.bin": blob for i in range(5)}}
    z = stored_zip(files)
    check(4 * 1024 * 1024 < len(z) < 5 * 1000 * 1000, f"zip of {len(z)} bytes")
    with Server() as s:
        st, _, b = upload(s, "reducers", raw_zip=z)
        check(st == 202, f"{st} {b}")
        check(status_of(s, "reducers", b["reducerId"])["status"] == "compiled", "compiled")
        # the native API keeps the server's limit
        st, _, _ = head_only(s, "/v1/databases/default/streams/x/events", 4 * 1024 * 1024 + 1)
        check(st == 413, f"native body limit: {st}")


def test_bad_uploads_are_refused_with_hapnds_codes():
    with Server() as s:
        expect(s.request("POST", f"{H}/reducers/upload", {"file": "x"}), 400, "INVALID_UPLOAD")
        body, ctype = multipart({"other": zip_of({"a.lua": ORDER_LUA})})
        expect(s.request("POST", f"{H}/reducers/upload", body,
                         headers={"Content-Type": ctype}), 400, "INVALID_UPLOAD")
        expect(upload(s, "reducers", raw_zip=b"PK\x03\x04 not really a zip"), 400, "INVALID_ZIP")
        expect(upload(s, "reducers", {"OrderReducer.cs": "public class X {}"}), 400,
               "INVALID_CONTENTS")
        expect(upload(s, "projections", {"README.md": "nothing"}), 400, "INVALID_CONTENTS")
        big = stored_zip({"a.lua": ORDER_LUA, "blob.bin": uuid.uuid4().bytes * (5000 * 1000 // 16)})
        expect(upload(s, "reducers", raw_zip=big), 400, "FILE_TOO_LARGE")
        # past the mount's body limit too: the HTTP layer refuses it, in Hapnd's envelope
        st, _, body = head_only(s, f"{H}/reducers/upload", 6 * 1000 * 1000)
        b = json.loads(body)
        check(st == 413 and b["errorCode"] == "PAYLOAD_TOO_LARGE", f"{st} {b}")
        st, _, _ = head_only(s, f"{H}/reducers/upload", 5 * 1000 * 1000 + 64 * 1024 + 1)
        check(st == 413, f"one byte past: {st}")
        expect(s.get(f"{H}/reducers/red_unknown/status"), 404, "NOT_FOUND")


def test_compilation_errors_are_on_the_status_route():
    with Server() as s:
        st, _, b = upload(s, "reducers", {"Broken.lua": 'kind = "reducer"\nfunction apply(s, e\n'
                                                        "  return s\nend\n"})
        check(st == 202, f"{st} {b}")
        rec = status_of(s, "reducers", b["reducerId"])
        check(rec["status"] == "failed" and "Broken.lua:3:" in rec["compilationError"]
              and rec.get("discovered", []) == [], rec)
        st, _, b = upload(s, "reducers", {"NoApply.js": "export const kind = 'reducer';"})
        rec = status_of(s, "reducers", b["reducerId"])
        check(rec["status"] == "failed" and "apply" in rec["compilationError"], rec)
        # binding a failed upload
        expect(s.request("PUT", f"{H}/aggregate-types/x", {"reducerId": b["reducerId"]}), 400,
               "INVALID_REDUCER")


def test_projection_catches_up_then_serves_state_and_notifications():
    with Server() as s:
        # a history long enough to be caught up over: 60,000 events in batches
        for i in range(60):
            evs = [{"type": "OrderPlaced", "data": {"customer": f"c{(i * 1000 + j) % 7}",
                                                    "amount": 1}}
                   for j in range(1000)]
            st, _, b = s.append(f"order_{i}", evs)
            check(st == 201, f"history {st} {b}")
        append(s, "order_x", "Noise", {"nobody": True})  # resolveKey nil: skipped
        slow = SALES_LUA.replace("state.orders = state.orders + 1",
                                 "for _ = 1, 300 do end\n  state.orders = state.orders + 1")
        st, _, up = upload(s, "projections", {"Sales.lua": slow})
        check(st == 202 and up["projectionId"] is None and up["status"] == "compiling"
              and up["success"] is True and "notifications" not in up, f"{st} {up}")
        seen = set()

        def state_ready():
            st, _, g = s.get(f"{H}/projections/proj_Sales/state/c3")
            seen.add(st)
            if st == 202:
                check(g == {"projectionId": "proj_Sales", "status": "catching_up"}, g)
            return st == 200

        rec = status_of(s, "projections", up["uploadId"])
        check(rec["status"] == "compiled" and rec["type"] == "runtime"
              and rec["projectionId"] == "proj_Sales" and rec["uploadId"] == up["uploadId"],
              rec)
        wait_until(state_ready, timeout=60, step=0.01)
        check(202 in seen, f"no 202 while catching up: {seen}")
        st, _, g = s.get(f"{H}/projections/proj_Sales/state/c3")
        total = sum(1 for i in range(60000) if i % 7 == 3)
        check(g["state"] == {"orders": total, "spend": total} and g["stateKey"] == "c3"
              and g["updatedAt"].endswith("Z"), g)
        expect(s.get(f"{H}/projections/proj_Sales/state/nobody"), 404, "NOT_FOUND")
        expect(s.get(f"{H}/projections/proj_Nope/state/c3"), 404, "NOT_FOUND")
        st, _, n = s.get(f"{H}/projections/proj_Sales/notifications?afterSequence=0&limit=3")
        check(st == 200 and [x["sequence"] for x in n["notifications"]] == [1, 2, 3], n)
        first = n["notifications"][0]
        check(first["projectionId"] == "proj_Sales" and first["aggregateId"] == "order_0"
              and first["aggregateType"] == "order" and first["stateKey"] == "c0"
              and first["state"] == {"orders": 1, "spend": 1}, first)
        st, _, n2 = s.get(f"{H}/projections/proj_Sales/notifications?afterSequence=2")
        check(n2["notifications"][0]["sequence"] == 3, n2)
        # live: a new event makes the next change
        last = s.get(f"{H}/projections/proj_Sales/notifications?afterSequence=59999")[2]
        check([x["sequence"] for x in last["notifications"]] == [60000], last)
        append(s, "order_new", "OrderPlaced", {"customer": "c3", "amount": 5})
        wait_until(lambda: s.get(f"{H}/projections/proj_Sales/notifications?afterSequence="
                                 "60000")[2]["notifications"], timeout=10)
        st, _, g = s.get(f"{H}/projections/proj_Sales/state/c3")
        check(g["state"]["spend"] == total + 5, g)


def verify(secret, headers, body):
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers.get("X-Hapnd-Signature") == want


def test_webhooks_are_signed_the_hapnd_way_and_secrets_rotate():
    rx = Receiver()
    with Server(extra=["--webhook-allow", "127.0.0.1"]) as s:
        append(s, "order_1", "OrderPlaced", {"customer": "c1", "amount": 3})
        cfg = {"notifications": {"webhook": {"url": rx.url(), "headers": {"X-Team": "a"}}}}
        st, _, up = upload(s, "projections", {"Sales.lua": SALES_LUA}, config=cfg)
        check(st == 202, f"{st} {up}")
        hook = up["notifications"]["webhook"]
        check(hook["enabled"] is True and hook["isolated"] is False
              and hook["secret"].startswith("whsec_") and up["notifications"]["sse"] is False,
              up)
        got = rx.wait(1)
        h, body = got[0]["headers"], got[0]["body"]
        check(verify(hook["secret"], h, body), f"signature {h}")
        check(h.get("X-Hapnd-Delivery-Id") == "proj_Sales-1" and h.get("X-Hapnd-Attempt") == "1"
              and h.get("X-Team") == "a" and h.get("Content-Type") == "application/json", h)
        p = json.loads(body)
        check(p["type"] == "projection.state_changed" and p["sequence"] == 1
              and p["projectionId"] == "proj_Sales" and p["aggregateId"] == "order_1"
              and p["aggregateType"] == "order" and p["version"] == 1
              and p["state"] == {"orders": 1, "spend": 3} and p["triggeredBy"].startswith("evt_")
              and p["timestamp"].endswith("Z"), p)
        # one change per POST, retried with the attempt counted
        rx.plan = [500]
        append(s, "order_2", "OrderPlaced", {"customer": "c2", "amount": 1})
        got = rx.wait(3)
        check([g["headers"].get("X-Hapnd-Attempt") for g in got[1:3]] == ["1", "2"]
              and got[1]["body"] == got[2]["body"], got[1:3])
        # the tenant's shared secret: the projection rotate refuses, the tenant rotate works
        expect(s.post(f"{H}/projections/proj_Sales/webhook/rotate", None), 400,
               "VALIDATION_ERROR")
        st, _, r = s.post(f"{H}/webhooks/rotate", None)
        check(st == 200 and r["webhook"]["secret"].startswith("whsec_")
              and r["webhook"]["secret"] != hook["secret"], f"{st} {r}")
        append(s, "order_3", "OrderPlaced", {"customer": "c3", "amount": 1})
        got = rx.wait(4)
        check(verify(r["webhook"]["secret"], got[3]["headers"], got[3]["body"]),
              "signed with the rotated secret")


def test_isolated_secret_rotates_alone():
    rx = Receiver()
    with Server(extra=["--webhook-allow", "127.0.0.1"]) as s:
        cfg = {"webhook": {"url": rx.url(), "isolateSecret": True}}  # bare config
        st, _, up = upload(s, "projections", {"Sales.lua": SALES_LUA}, config=cfg)
        check(st == 202 and up["notifications"]["webhook"]["isolated"] is True, up)
        secret = up["notifications"]["webhook"]["secret"]
        status_of(s, "projections", up["uploadId"])
        st, _, r = s.post(f"{H}/projections/proj_Sales/webhook/rotate", None)
        check(st == 200 and r["projectionId"] == "proj_Sales" and r["webhook"]["isolated"]
              and r["webhook"]["secret"] != secret, f"{st} {r}")
        append(s, "order_1", "OrderPlaced", {"customer": "c1", "amount": 3})
        got = rx.wait(1)
        check(verify(r["webhook"]["secret"], got[0]["headers"], got[0]["body"]),
              "signed with the projection's new secret")
        expect(s.post(f"{H}/projections/proj_Nope/webhook/rotate", None), 404, "NOT_FOUND")


def test_websocket_stream_sends_state_changes_pings_and_resumes():
    from test_websocket import WS
    with Server(extra=["--webhook-allow", "127.0.0.1"]) as s:
        for i in range(3):
            append(s, f"order_{i}", "OrderPlaced", {"customer": "c1", "amount": i})
        st, _, up = upload(s, "projections", {"Sales.lua": SALES_LUA})
        status_of(s, "projections", up["uploadId"])
        wait_until(lambda: s.get(f"{H}/projections/proj_Sales/state/c1")[0] == 200, timeout=20)
        ws = WS(s.port, f"{H}/projections/proj_Sales/stream")
        check(ws.status == 101, f"upgrade: {ws.status}")
        got = [ws.message() for _ in range(3)]
        check([m["sequence"] for m in got] == [1, 2, 3], got)
        m = got[2]
        check(m["type"] == "state_changed" and m["projectionId"] == "proj_Sales"
              and m["aggregateId"] == "order_2" and m["aggregateType"] == "order"
              and m["version"] == 1 and m["state"] == {"orders": 3, "spend": 3}
              and m["timestamp"].endswith("Z"), m)
        ws.send({"type": "pong"})  # taken without an answer, the stream goes on
        append(s, "order_9", "OrderPlaced", {"customer": "c2", "amount": 7})
        m = ws.message()
        check(m["sequence"] == 4 and m["stateKey"] == "c2" and m["state"]["spend"] == 7, m)
        ws.close()
        # resume after a sequence
        ws = WS(s.port, f"{H}/projections/proj_Sales/stream?afterSequence=3")
        m = ws.message()
        check(m["sequence"] == 4, m)
        ws.close()
        # errors: not an upgrade, an unknown projection, a bad afterSequence
        expect(s.get(f"{H}/projections/proj_Sales/stream"), 400, "VALIDATION_ERROR")
        expect(s.get(f"{H}/projections/proj_Nope/stream"), 404, "NOT_FOUND")
        expect(s.get(f"{H}/projections/proj_Sales/stream?afterSequence=x"), 400,
               "VALIDATION_ERROR")


def test_websocket_keepalive_is_a_ping_text_message():
    """After 15 s without a change the stream sends {"type":"ping"} (a text message, not a
    WebSocket ping frame)."""
    from test_websocket import WS
    with Server() as s:
        st, _, up = upload(s, "projections", {"Sales.lua": SALES_LUA})
        status_of(s, "projections", up["uploadId"])
        wait_until(lambda: s.get(f"{H}/projections/proj_Sales/notifications")[0] == 200
                   and s.request("GET", f"/v1/databases/default/projections/hapnd.p.Sales")[0]
                   == 200, timeout=20)
        ws = WS(s.port, f"{H}/projections/proj_Sales/stream", timeout=25)
        t0 = time.monotonic()
        op, p = ws.frame()
        check(op == 1 and json.loads(p) == {"type": "ping"}, f"a ping text message: {op} {p}")
        check(time.monotonic() - t0 > 10, "not before the keepalive interval")
        ws.close()


# ---- found by review: each fails without its fix ----

def test_a_types_cache_entry_never_crosses_tenants():
    """The aggregate-type cache is keyed by database: an aggregate type made of hex digits once
    spilled into the database id read back from the answer, so one tenant's type landed on
    another tenant's aggregate of the same id."""
    from hapnd_client import Hapnd, create_database, create_key
    from test_auth import keyed_server
    s, admin = keyed_server()
    with s:
        a = Hapnd(s, key=admin)
        st, _, b = a.post("/events", {"aggregateId": "x_1", "aggregateType": "2",
                                      "eventType": "E", "data": {}})
        check(st == 201, f"{st} {b}")
        for i in range(2, 24):  # ids 2.. : "0000000000000001" + "2" read as hex is 0x12
            create_database(s, f"db{i}", admin=admin)
            key, _ = create_key(s, "write", database=f"db{i}", admin=admin)
            st, _, b = Hapnd(s, key=key).post("/events", {"aggregateId": "x_1",
                                                          "eventType": "E", "data": {}})
            check(st == 201 and b["aggregateType"] == "x", f"db{i}: {st} {b}")


def test_concurrent_first_appends_keep_the_first_events_type():
    import threading
    with Server() as s:
        for i in range(30):
            agg = f"race{i}"
            out = []

            def go(t):
                out.append(s.post(f"{H}/events", {"aggregateId": agg, "aggregateType": t,
                                                  "eventType": "E", "data": {}}))

            ts = [threading.Thread(target=go, args=(t,)) for t in ("alpha", "beta")]
            [t.start() for t in ts]
            [t.join() for t in ts]
            st, _, ev = s.get(f"{H}/events/{agg}")
            first = ev["events"][0]["aggregateType"]
            # whatever raced, later appends take the first event's type
            st, _, b = s.post(f"{H}/events", {"aggregateId": agg, "eventType": "E", "data": {}})
            check(st == 201 and b["aggregateType"] == first, f"{agg}: {first} vs {b}")


def test_failing_uploads_deploy_nothing_and_say_why():
    with Server() as s:
        st, _, b = s.request("PUT", "/v1/databases/default/components/native-nat",
                             {"kind": "reducer", "language": "lua", "category": "nat",
                              "source": "function reduce(s, e) return s end"})
        check(st in (200, 201), f"{st} {b}")
        st, _, up = upload(s, "reducers", {"AaReducer.lua": 'kind = "reducer"\n'
                                                            "function apply(s, e) return s end\n",
                                           "NatReducer.lua": 'kind = "reducer"\n'
                                                             "function apply(s, e) return s end\n"})
        rec = status_of(s, "reducers", up["reducerId"])
        check(rec["status"] == "failed" and "nat" in rec["compilationError"], rec)
        expect(s.get(f"{H}/aggregate-types/aa"), 404, "NO_REDUCER_BOUND")
        # two classes of one name, two reducers of one type
        st, _, up = upload(s, "reducers", {"a/X.lua": 'function apply(s, e) return s end',
                                           "b/X.lua": 'function apply(s, e) return s end'})
        check("two classes" in status_of(s, "reducers", up["reducerId"])["compilationError"],
              "duplicate class")


def test_sources_must_be_text_and_errors_stay_valid_json():
    with Server() as s:
        expect(upload(s, "reducers", {"A.lua": b"-- a\x00b\nfunction apply(s, e) return s end"
                                      .decode("latin-1")}), 400, "INVALID_CONTENTS")
        expect(upload(s, "reducers", raw_zip=stored_zip({"A.lua": b"-- \xff\nfunction apply("
                                                                  b"s, e) return s end\n"})),
               400, "INVALID_CONTENTS")
        big = "-- " + "x" * (600 * 1024) + "\nfunction apply(s, e) return s end\n"
        expect(upload(s, "reducers", {"A.lua": big}), 400, "INVALID_CONTENTS")
        # a reducer raising a message that is not UTF-8: the 201 is still valid JSON
        src = ('kind = "reducer"\naggregateType = "bad"\n'
               'function apply(s, e) error("bad " .. string.char(255, 254)) end\n')
        st, _, up = upload(s, "reducers", {"Bad.lua": src})
        status_of(s, "reducers", up["reducerId"])
        st, _, raw = s.request("POST", f"{H}/events", {"aggregateId": "bad_1", "eventType": "E",
                                                       "data": {}})
        check(st == 201 and isinstance(raw, dict) and "\ufffd" in raw["stateError"]["error"],
              f"{st} {raw!r}")
        # a compilation error quoting bytes that are not UTF-8 is kept (as '?')
        st, _, up = upload(s, "reducers", {"C.lua": 'error("bad \\255")\n'})
        rec = status_of(s, "reducers", up["reducerId"])
        check(rec["status"] == "failed" and "bad" in rec["compilationError"], rec)


def test_a_failed_projection_serves_no_partial_state():
    src = """
function resolveKey(e) return "k" end
function apply(s, e)
  if e.version == 4 then error("boom at 4") end
  return {n = (s and s.n or 0) + 1}
end
"""
    with Server() as s:
        for i in range(6):
            append(s, "order_1", "E", {})
        st, _, up = upload(s, "projections", {"Failing.lua": src})
        status_of(s, "projections", up["uploadId"])

        def failed():
            st, _, b = s.get(f"{H}/projections/proj_Failing/state/k")
            return st == 500 and b["errorCode"] == "PROJECTION_FAILED" and "boom" in b["error"]

        wait_until(failed, timeout=20)
        st, _, rec = s.get(f"{H}/projections/{up['uploadId']}/status")
        check(rec["runtimeError"]["position"] == 4 and "boom" in rec["runtimeError"]["error"],
              rec)


def test_webhook_config_is_checked_before_the_202():
    with Server() as s:  # no --webhook-allow: a loopback URL is refused
        cfg = {"webhook": {"url": "http://127.0.0.1:9/hook"}}
        expect(upload(s, "projections", {"Sales.lua": SALES_LUA}, config=cfg), 400,
               "INVALID_UPLOAD")
        expect(upload(s, "projections", {"Sales.lua": SALES_LUA},
                      config={"webhook": {"url": 5}}), 400, "INVALID_UPLOAD")
        expect(s.get(f"{H}/projections/proj_Sales/notifications?limit=0"), 400,
               "VALIDATION_ERROR")


def test_lua_files_may_end_with_a_top_level_return():
    src = 'kind = "reducer"\naggregateType = "ret"\nfunction apply(s, e) return {n = 1} end\n' \
          'return nil\n'
    with Server() as s:
        st, _, up = upload(s, "reducers", {"Ret.lua": src})
        check(status_of(s, "reducers", up["reducerId"])["status"] == "compiled", "compiled")
        check(append(s, "ret_1", "E", {})["state"] == {"n": 1}, "state")


def test_binding_an_upload_still_deploying_is_reducer_not_ready():
    """Between the 202 and the end of the deploy the upload is not ready: a file whose top level
    runs for a while (about 0.3 s, once to compile and once to deploy) holds it there."""
    src = ('kind = "reducer"\naggregateType = "slow"\n'
           'local t = 0 for i = 1, 30000000 do t = t + i end\n'
           'function apply(s, e) return {n = 1} end\n')
    with Server() as s:
        st, _, up = upload(s, "reducers", {"SlowReducer.lua": src})
        check(st == 202, f"{st} {up}")
        expect(s.request("PUT", f"{H}/aggregate-types/other", {"reducerId": up["reducerId"]}),
               400, "REDUCER_NOT_READY")
        check(status_of(s, "reducers", up["reducerId"])["status"] == "compiled", "compiled")
        st, _, b = s.request("PUT", f"{H}/aggregate-types/other", {"reducerId": up["reducerId"]})
        check(st == 200, f"{st} {b}")


def test_upload_records_are_kept_up_to_a_limit():
    """A tenant keeps its 256 newest upload records: a new one forgets the oldest."""
    src = 'function resolveKey(e) return nil end\nfunction apply(s, e) return s end\n'
    z = zip_of({"P.lua": src})  # a projection in a reducer upload: listed, nothing deployed
    with Server() as s:
        ids = []
        for _ in range(260):
            st, _, up = upload(s, "reducers", raw_zip=z)
            check(st == 202, f"{st} {up}")
            ids.append(up["reducerId"])
        for rid in ids[:4]:
            expect(s.get(f"{H}/reducers/{rid}/status"), 404, "NOT_FOUND")
        for rid in (ids[4], ids[-1]):
            st, _, rec = s.get(f"{H}/reducers/{rid}/status")
            check(st == 200 and rec["discovered"][0]["kind"] == "projection", f"{st} {rec}")


def test_uploaded_code_is_held_to_its_cpu_and_memory_budgets():
    """A file whose top level loops or eats memory fails its upload with the budget named,
    and the server goes on serving."""
    with Server() as s:
        for src, word in (("while true do end\nfunction apply(s, e) return s end\n", "cpu"),
                          ("local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 1000000) .. i end\n"
                           "function apply(s, e) return s end\n", "memory"),
                          ("kind = 'reducer'\nfunction apply(s, e) while true do end end\n",
                           None)):
            st, _, up = upload(s, "reducers", {"Hog.lua": src})
            check(st == 202, f"{st} {up}")
            rec = status_of(s, "reducers", up["reducerId"])
            if word:
                check(rec["status"] == "failed" and word in rec["compilationError"].lower(), rec)
        # the reducer that loops on each event: the append commits, its answer names the budget
        st, _, b = s.post(f"{H}/events", {"aggregateId": "hog_1", "eventType": "E", "data": {}})
        check(st == 201 and b["stateError"]["errorCode"] == "REDUCER_FAILED"
              and "cpu" in b["stateError"]["error"].lower(), f"{st} {b}")
        check(s.get(f"{H}/health")[0] == 200, "still serving")
