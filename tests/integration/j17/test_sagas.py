"""j17 sagas (modules.sagas) run by the server (docs/dialects/j17.md, "Running sagas"): a saga
without awaits completes, each step once and in order; a step that awaits an event goes on when
it is written, the next step reading it as $prev; a timeout compensates the completed steps in
reverse order and the saga stays ended; an instance survives a restart and each step happens
exactly once; records name events by position, so a trigger or an awaited event as large as
--max-event-bytes allows (or nested as deep as an event may be) still runs the saga; an awaited
native event jansson reads only with \\u0000, or not at all (an integer over 64 bits), is found;
a saga whose step triggers it again stops at J17_SAGA_DEPTH_MAX. The timer thread ticks every
second: every wait is a poll with a generous deadline."""
import time
import uuid

from harness import Server, check

SAGA_ACTOR = {"type": "user", "id": "0f8fad5b-d9cb-469f-a165-70867728950e"}
SAGA_DEADLINE = 20.0


def saga_obj(*events):
    """An aggregate type whose events take any object and change nothing."""
    return {"events": {e: {"schema": {"type": "object"}, "handler": []} for e in events}}


def saga_spec(sagas):
    return {"aggregate_types": {
                "order": saga_obj("was_placed", "was_confirmed", "was_cancelled", "was_paid"),
                "product": saga_obj("reservation_requested", "was_reserved",
                                    "reservation_released"),
                "payment": saga_obj("was_charged", "was_refunded")},
            "agent_types": ["user"],
            "modules": {"sagas": sagas}}


def saga_deploy(s, sagas, spec=None):
    st, _, b = s.post("/j17/api/instances/default/spec",
                      {"environment": "prod", "spec": spec or saga_spec(sagas)})
    check(st == 200, f"deploy: {st} {b}")


def saga_write(s, agg, agg_id, event_type, data):
    st, _, b = s.post(f"/j17/{agg}/{agg_id}/{event_type}",
                      {"data": data, "metadata": {"actor": SAGA_ACTOR}})
    check(st == 201, f"write {agg}/{agg_id}/{event_type}: {st} {b}")
    return b


def saga_events(s, agg, agg_id):
    """The aggregate's events as GET .../events shows them (none: [])."""
    st, _, b = s.get(f"/j17/{agg}/{agg_id}/events?count=1000")
    if st == 404:
        return []
    check(st == 200, f"events of {agg}/{agg_id}: {st} {b}")
    return b["events"]


def saga_types(s, agg, agg_id):
    return [e["type"] for e in saga_events(s, agg, agg_id)]


def saga_records(s, type_=None):
    """The data of the records of the stream j17.timers (of one type)."""
    try:
        evs = s.read_stream("j17.timers")
    except AssertionError:
        return []
    return [e["data"] for e in evs if type_ is None or e["type"] == type_]


def saga_wait(what, fn, timeout=SAGA_DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    v = fn()
    check(v, f"timed out waiting for {what}")
    return v


def saga_log_types(s):
    """(stream, type) of every event of the log, in position order."""
    return [(e["stream"], e["type"]) for e in s.read_log()]


def saga_ended(s):
    return saga_records(s, "j17.saga_ended")


CHECKOUT = {
    "trigger": {"aggregate_type": "order", "event_type": "was_placed"},
    "steps": [
        {"name": "reserve",
         "emit": {"aggregate_type": "product", "id": "$.data.product",
                  "event_type": "reservation_requested", "data": {"order": "$.id"}},
         "await": {"aggregate_type": "product", "event_types": ["was_reserved"]}},
        {"name": "pay", "condition": {"equals": ["$prev.type", "was_reserved"]},
         "emit": {"aggregate_type": "payment", "id": "$.id", "event_type": "was_charged",
                  "data": {"qty": "$prev.data.qty", "order": "$.key"}}},
        {"name": "skipped", "condition": {"equals": ["$prev.type", "never"]},
         "emit": {"aggregate_type": "order", "id": "$.id", "event_type": "was_cancelled"}},
    ]}


def test_saga_without_await_completes_each_step_once_in_order():
    with Server() as s:
        saga_deploy(s, {"two_steps": {
            "trigger": {"aggregate_type": "order", "event_type": "was_placed"},
            "steps": [
                {"name": "charge",
                 "emit": {"aggregate_type": "payment", "id": "$.id", "event_type": "was_charged",
                          "data": {"total": "$.data.total"}}},
                {"name": "confirm",
                 "emit": {"aggregate_type": "order", "id": "$.id",
                          "event_type": "was_confirmed"}}]}})
        oid = str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"total": 42})
        saga_wait("the saga's end", lambda: saga_ended(s))
        time.sleep(2.5)  # a few more ticks: nothing runs twice
        check(saga_types(s, "order", oid) == ["was_placed", "was_confirmed"],
              f"order: {saga_types(s, 'order', oid)}")
        pay = saga_events(s, "payment", oid)
        check([e["type"] for e in pay] == ["was_charged"], f"payment: {pay}")
        check(pay[0]["data"] == {"total": 42}, f"data from the trigger: {pay[0]}")
        check(pay[0]["metadata"]["saga"]["name"] == "two_steps", f"metadata: {pay[0]}")
        log = saga_log_types(s)
        check(log.index((f"payment:{oid}", "was_charged")) <
              log.index((f"order:{oid}", "was_confirmed")), f"steps in order: {log}")
        ended = saga_ended(s)
        check(len(ended) == 1 and ended[0]["status"] == "completed", f"ended: {ended}")
        starts = [e for e in s.read_stream("j17.timers") if e["type"] == "j17.saga"]
        check(len(starts) == 1 and starts[0]["data"]["saga"] == "two_steps" and
              starts[0]["data"]["depth"] == 0 and "trigger" not in starts[0]["data"],
              f"start record: {starts}")
        at = starts[0]["position"] + starts[0]["data"]["trigger_offset"]
        trig = [e for e in s.read_log() if e["position"] == at]
        check(len(trig) == 1 and trig[0]["stream"] == f"order:{oid}" and
              trig[0]["type"] == "was_placed", f"the trigger by position: {trig}")


def test_saga_await_goes_on_when_the_event_comes_with_prev():
    with Server() as s:
        saga_deploy(s, {"checkout": CHECKOUT})
        oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"product": pid})
        saga_wait("the reservation request",
                  lambda: saga_types(s, "product", pid) == ["reservation_requested"])
        time.sleep(2.5)
        check(saga_types(s, "payment", oid) == [], "the next step waits for the await")
        check(saga_ended(s) == [], "not ended while awaiting")
        saga_write(s, "product", pid, "was_reserved", {"qty": 3})
        pay = saga_wait("the payment", lambda: saga_events(s, "payment", oid))
        check(pay[0]["type"] == "was_charged" and pay[0]["data"] == {"qty": 3,
              "order": f"order:{oid}"}, f"the step read $prev: {pay}")
        ended = saga_wait("the end", lambda: saga_ended(s))
        time.sleep(2.5)
        check(len(ended) == 1 and ended[0]["status"] == "completed", f"ended: {ended}")
        check(saga_types(s, "order", oid) == ["was_placed"],
              "the step whose condition is false is skipped")
        check(len(saga_events(s, "payment", oid)) == 1, "paid once")
        steps = saga_records(s, "j17.saga_step")
        check([(r["step"], r["state"]) for r in steps] ==
              [(0, "awaiting"), (0, "done"), (1, "done"), (2, "skipped")], f"steps: {steps}")


def test_saga_timeout_compensates_in_reverse_and_stays_ended():
    with Server() as s:
        saga_deploy(s, {"fragile": {
            "trigger": {"aggregate_type": "order", "event_type": "was_placed"},
            "steps": [
                {"name": "charge",
                 "emit": {"aggregate_type": "payment", "id": "$.id", "event_type": "was_charged"},
                 "compensate": {"aggregate_type": "payment", "id": "$.id",
                                "event_type": "was_refunded", "data": {"why": "saga"}}},
                {"name": "confirm",
                 "emit": {"aggregate_type": "order", "id": "$.id", "event_type": "was_confirmed"},
                 "compensate": {"aggregate_type": "order", "id": "$.id",
                                "event_type": "was_cancelled"}},
                {"name": "reserve",
                 "emit": {"aggregate_type": "product", "id": "$.data.product",
                          "event_type": "reservation_requested"},
                 "await": {"aggregate_type": "product", "event_types": ["was_reserved"]},
                 "timeout_ms": 1500,
                 "compensate": {"aggregate_type": "product", "id": "$.data.product",
                                "event_type": "reservation_released"}},
                {"name": "pay",
                 "emit": {"aggregate_type": "order", "id": "$.id", "event_type": "was_paid"}}]}})
        oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"product": pid})
        ended = saga_wait("the saga's end", lambda: saga_ended(s))
        check(len(ended) == 1 and ended[0]["status"] == "compensated" and
              ended[0]["failed_step"] == 2 and ended[0]["reason"] == "timeout" and
              ended[0]["compensated"] == [1, 0], f"ended: {ended}")
        check(saga_types(s, "payment", oid) == ["was_charged", "was_refunded"],
              f"payment: {saga_types(s, 'payment', oid)}")
        check(saga_types(s, "order", oid) == ["was_placed", "was_confirmed", "was_cancelled"],
              f"order: {saga_types(s, 'order', oid)}")
        check(saga_types(s, "product", pid) == ["reservation_requested"],
              "the step that timed out is not compensated (it did not complete)")
        log = saga_log_types(s)
        check(log.index((f"order:{oid}", "was_cancelled")) <
              log.index((f"payment:{oid}", "was_refunded")), f"reverse order: {log}")
        # the awaited event, too late: nothing resumes
        saga_write(s, "product", pid, "was_reserved", {})
        time.sleep(3)
        check("was_paid" not in saga_types(s, "order", oid), "an ended saga does not resume")
        check(len(saga_ended(s)) == 1, "ended once")
        check([r for r in saga_records(s, "j17.saga_step") if r["state"] == "done" and
               "prev" in r] == [], "no completion after the end")


def test_saga_survives_a_restart_each_step_once():
    with Server() as s:
        saga_deploy(s, {"checkout": CHECKOUT})
        oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"product": pid})
        saga_wait("the reservation request",
                  lambda: saga_types(s, "product", pid) == ["reservation_requested"])
        s.restart()
        time.sleep(2.5)  # the rebuilt instance awaits: no step is run again
        check(saga_types(s, "product", pid) == ["reservation_requested"],
              f"product after the restart: {saga_types(s, 'product', pid)}")
        check(saga_types(s, "payment", oid) == [], "still awaiting")
        saga_write(s, "product", pid, "was_reserved", {"qty": 1})
        saga_wait("the end", lambda: saga_ended(s))
        time.sleep(2.5)
        check(saga_types(s, "payment", oid) == ["was_charged"],
              f"paid exactly once: {saga_types(s, 'payment', oid)}")
        check(saga_types(s, "product", pid) == ["reservation_requested", "was_reserved"],
              f"reserved once: {saga_types(s, 'product', pid)}")
        ended = saga_ended(s)
        check(len(ended) == 1 and ended[0]["status"] == "completed", f"ended: {ended}")
        # and once more: an ended instance is not rebuilt
        s.restart()
        time.sleep(2.5)
        check(saga_types(s, "payment", oid) == ["was_charged"], "nothing after a second restart")
        check(len(saga_ended(s)) == 1, "ended once")


def test_saga_emit_refused_by_its_schema_compensates():
    with Server() as s:
        spec = saga_spec({"strict": {
            "trigger": {"aggregate_type": "order", "event_type": "was_placed"},
            "steps": [
                {"name": "confirm",
                 "emit": {"aggregate_type": "order", "id": "$.id", "event_type": "was_confirmed"},
                 "compensate": {"aggregate_type": "order", "id": "$.id",
                                "event_type": "was_cancelled"}},
                {"name": "charge",
                 "emit": {"aggregate_type": "payment", "id": "$.id", "event_type": "was_charged",
                          "data": {"amount": "$.data.amount"}}}]}})
        spec["aggregate_types"]["payment"]["events"]["was_charged"]["schema"] = {
            "type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer"}}}
        saga_deploy(s, None, spec)
        oid = str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"amount": "ten"})
        ended = saga_wait("the saga's end", lambda: saga_ended(s))
        check(ended[0]["status"] == "compensated" and ended[0]["failed_step"] == 1 and
              "data.amount" in ended[0]["reason"], f"ended: {ended}")
        check(saga_types(s, "order", oid) == ["was_placed", "was_confirmed", "was_cancelled"],
              f"order: {saga_types(s, 'order', oid)}")
        check(saga_types(s, "payment", oid) == [], "nothing charged")


def nested(depth, leaf):
    """A JSON value nested depth objects deep."""
    v = leaf
    for _ in range(depth):
        v = {"n": v}
    return v


def test_saga_runs_with_a_trigger_and_an_awaited_event_as_large_as_allowed():
    """The start and completion records name events by position: a trigger or an awaited
    event near --max-event-bytes no longer makes them too large (the write was refused, or
    the saga compensated although its event came)."""
    with Server(extra=["--max-event-bytes", "4096"]) as s:
        saga_deploy(s, {"checkout": CHECKOUT})
        oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"product": pid, "note": "x" * 3700})
        saga_wait("the reservation request",
                  lambda: saga_types(s, "product", pid) == ["reservation_requested"])
        saga_write(s, "product", pid, "was_reserved", {"qty": 2, "note": "y" * 3800})
        ended = saga_wait("the end", lambda: saga_ended(s))
        check(ended[0]["status"] == "completed", f"ended: {ended}")
        pay = saga_events(s, "payment", oid)
        check([e["data"]["qty"] for e in pay] == [2], f"the step read $prev: {pay}")
        done = [r for r in saga_records(s, "j17.saga_step") if r["state"] == "done"]
        check(isinstance(done[0].get("prev_position"), int) and "prev" not in done[0],
              f"done record: {done}")


def test_saga_runs_with_an_awaited_event_nested_as_deep_as_allowed():
    with Server() as s:
        saga_deploy(s, {"checkout": CHECKOUT})
        oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {"product": pid})
        saga_wait("the reservation request",
                  lambda: saga_types(s, "product", pid) == ["reservation_requested"])
        deepest = None
        for depth in range(62, 40, -1):  # the deepest data the server takes
            st, _, _ = s.post(f"/j17/product/{pid}/was_reserved",
                              {"data": {"qty": 5, "deep": nested(depth, 1)},
                               "metadata": {"actor": SAGA_ACTOR}})
            if st == 201:
                deepest = depth
                break
        check(deepest is not None, "no nesting was accepted")
        ended = saga_wait("the end", lambda: saga_ended(s))
        check(ended[0]["status"] == "completed", f"ended at depth {deepest}: {ended}")
        check([e["data"]["qty"] for e in saga_events(s, "payment", oid)] == [5], "paid")


def test_saga_awaited_native_event_with_nul_or_a_huge_integer_is_found():
    """An awaited event written with the native API that jansson reads only with
    JSON_ALLOW_NUL (a \\u0000), or cannot read (an integer over 64 bits, then its data reads
    as null), completes the await: it is never skipped."""
    with Server() as s:
        saga_deploy(s, {"checkout": CHECKOUT})
        cases = [('{"qty":7,"note":"a\\u0000b"}', 7),
                 ('{"qty":123456789012345678901234567890}', None)]
        for text, qty in cases:
            oid, pid = str(uuid.uuid4()), str(uuid.uuid4())
            saga_write(s, "order", oid, "was_placed", {"product": pid})
            saga_wait("the reservation request",
                      lambda: saga_types(s, "product", pid) == ["reservation_requested"])
            body = '{"events":[{"type":"was_reserved","data":%s}]}' % text
            st, _, b = s.post(f"/v1/databases/default/streams/product:{pid}/events", body,
                              headers={"Content-Type": "application/json"})
            check(st in (200, 201), f"native write: {st} {b}")
            pay = saga_wait("the payment", lambda: saga_events(s, "payment", oid))
            check(pay[0]["data"].get("qty") == qty, f"$prev.data.qty ({text}): {pay}")
        ended = saga_wait("both ends", lambda: len(saga_ended(s)) == 2 and saga_ended(s))
        check([e["status"] for e in ended] == ["completed", "completed"], f"ended: {ended}")


def test_saga_that_triggers_itself_stops_at_the_depth_limit():
    with Server() as s:
        saga_deploy(s, {"echo": {
            "trigger": {"aggregate_type": "order", "event_type": "was_placed"},
            "steps": [{"name": "again",
                       "emit": {"aggregate_type": "order", "id": "$.id",
                                "event_type": "was_placed"}}]}})
        oid = str(uuid.uuid4())
        saga_write(s, "order", oid, "was_placed", {})
        saga_wait("five ends", lambda: len(saga_ended(s)) >= 5)
        time.sleep(3)  # a few more ticks: nothing more starts
        starts = saga_records(s, "j17.saga")
        check(sorted(r["depth"] for r in starts) == [0, 1, 2, 3, 4], f"starts: {starts}")
        check(len(saga_ended(s)) == 5 and all(e["status"] == "completed" for e in saga_ended(s)),
              f"ended: {saga_ended(s)}")
        check(saga_types(s, "order", oid) == ["was_placed"] * 6,
              f"the trigger and one event per instance: {saga_types(s, 'order', oid)}")
