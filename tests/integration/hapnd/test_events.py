"""The Hapnd dialect's event routes over the real server, written from Hapnd's API document
(seed 002) and the choices of docs/dialects/hapnd.md: POST /events (its 201, aggregate types
inferred, given or kept, expectedVersion, what is kept of an event), POST /events/batch
(atomic, defaults at the top, the batch limit), GET /events/{aggregateId} (all fields, paging,
ids that need encoding), the reducer's state in the 201 (a Lua reducer deployed natively with
eventFormat "hapnd"), the dialect on its own port, and errors in Hapnd's envelope."""
import json
import socket
import threading

from hapnd_client import (Hapnd, check_event_id, check_time, deploy_reducer, ev, hapnd_error)
from harness import Server, check, dialect_port, quote, split_raw

JSON = {"Content-Type": "application/json"}


def count(h, aggregate_id):
    return len(h.events(aggregate_id)["events"])


# ---- POST /events: the 201 ----

def test_append_answers_201_with_hapnds_shape():
    with Server() as s:
        h = Hapnd(s)
        st, hdrs, b = h.append("order_123", "ItemAdded", {"item": "Widget", "price": 25.0})
        check(st == 201, f"{st} {b}")
        check(hdrs.get("content-type", "").startswith("application/json"), f"{hdrs}")
        check(set(b) == {"eventId", "aggregateId", "aggregateType", "version", "timestamp"},
              f"members of the 201 (no state without a reducer): {b}")
        check_event_id(b["eventId"])
        check(b["aggregateId"] == "order_123" and b["aggregateType"] == "order", f"{b}")
        check(b["version"] == 1, f"first event is version 1: {b}")
        check_time(b["timestamp"])
        b2 = h.ok_append("order_123", "ItemAdded", {"item": "Gadget", "price": 15.0})
        check(b2["version"] == 2 and b2["eventId"] != b["eventId"], f"{b2}")
        check("state" not in b2 and "stateError" not in b2, f"{b2}")
        b3 = h.ok_append("order_123", "OrderPlaced", {})
        check(b3["version"] == 3, f"{b3}")
        # the 201 describes what GET shows
        got = h.events("order_123")["events"]
        check([e["eventId"] for e in got] == [b["eventId"], b2["eventId"], b3["eventId"]],
              f"{got}")
        check([e["timestamp"] for e in got] == [b["timestamp"], b2["timestamp"],
                                                  b3["timestamp"]], f"{got}")


def test_aggregate_type_is_inferred_from_the_id():
    with Server() as s:
        h = Hapnd(s)
        for agg, want in [("order_123", "order"), ("cart-abc", "cart"),
                          ("user_profile_456", "user"), ("inventory-item-789", "inventory"),
                          ("a-b_c", "a"), ("x_y-z", "x"), ("Order.V2_1", "Order.V2")]:
            b = h.ok_append(agg)
            check(b["aggregateType"] == want, f"{agg}: expected {want}, got {b}")
            got = h.events(agg)["events"]
            check(got[0]["aggregateType"] == want, f"GET {agg}: {got}")


def test_explicit_aggregate_type_overrides_inference():
    with Server() as s:
        h = Hapnd(s)
        b = h.ok_append("order_1", aggregateType="invoice")
        check(b["aggregateType"] == "invoice", f"{b}")
        check(h.events("order_1")["events"][0]["aggregateType"] == "invoice", "GET")
        b = h.ok_append("abc", aggregateType="order")
        check(b["aggregateType"] == "order" and b["version"] == 1, f"{b}")
        # 48 bytes of [A-Za-z0-9_.-] is a type (it names a reducer binding), 49 are not
        long_type = "T" * 47 + "."
        b = h.ok_append("x9", aggregateType=long_type)
        check(b["aggregateType"] == long_type, f"{b}")
        hapnd_error(h.append("x10", aggregateType="T" * 49), 400, "VALIDATION_ERROR")


def test_id_without_delimiter_and_no_type_is_400():
    with Server() as s:
        h = Hapnd(s)
        for agg in ("abc", "order123", "_abc", "-abc"):
            hapnd_error(h.append(agg), 400, "VALIDATION_ERROR")
            check(h.events(agg) == {"events": []}, f"{agg}: nothing written")


def test_existing_aggregate_keeps_its_type_when_none_is_given():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("abc", aggregateType="order")
        b = h.ok_append("abc")  # no delimiter, no type: the aggregate's type
        check(b["aggregateType"] == "order" and b["version"] == 2, f"{b}")
        # an id whose inferred type differs from the type it was created with
        h.ok_append("order_9", aggregateType="cart")
        b = h.ok_append("order_9")
        check(b["aggregateType"] == "cart" and b["version"] == 2,
              f"kept the aggregate's type, not the inferred one: {b}")
        got = h.events("order_9")["events"]
        check([e["aggregateType"] for e in got] == ["cart", "cart"], f"{got}")
        # the same type given again is fine
        check(h.ok_append("order_9", aggregateType="cart")["version"] == 3, "same type")


def test_a_different_type_is_aggregate_type_mismatch_and_writes_nothing():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("order_1")
        hapnd_error(h.append("order_1", aggregateType="cart"), 400, "AGGREGATE_TYPE_MISMATCH")
        st, _, b = h.batch("order_1", [ev(), ev()], aggregateType="cart")
        hapnd_error((st, _, b), 400, "AGGREGATE_TYPE_MISMATCH")
        check(count(h, "order_1") == 1, "a mismatch wrote")
        # created with an explicit type: the inferred one is now the "other" type
        h.ok_append("order_2", aggregateType="cart")
        hapnd_error(h.append("order_2", aggregateType="order"), 400, "AGGREGATE_TYPE_MISMATCH")
        check(count(h, "order_2") == 1, "a mismatch wrote")
        # with a matching expectedVersion the mismatch still wins
        hapnd_error(h.append("order_1", aggregateType="cart", expectedVersion=1), 400,
                    "AGGREGATE_TYPE_MISMATCH")
        check(h.ok_append("order_1")["version"] == 2, "the aggregate still takes its own type")


def test_missing_or_bad_required_members_are_validation_errors():
    with Server() as s:
        h = Hapnd(s)
        good = {"aggregateId": "order_1", "eventType": "ItemAdded", "data": {"a": 1}}
        cases = [
            ("no aggregateId", {k: v for k, v in good.items() if k != "aggregateId"}),
            ("empty aggregateId", dict(good, aggregateId="")),
            ("numeric aggregateId", dict(good, aggregateId=5)),
            ("null aggregateId", dict(good, aggregateId=None)),
            ("no eventType", {k: v for k, v in good.items() if k != "eventType"}),
            ("empty eventType", dict(good, eventType="")),
            ("numeric eventType", dict(good, eventType=7)),
            ("no data", {k: v for k, v in good.items() if k != "data"}),
            ("null data", dict(good, data=None)),
            ("metadata not an object", dict(good, metadata="x")),
            ("correlationId not a string", dict(good, correlationId=5)),
            ("causationId not a string", dict(good, causationId=["x"])),
            ("expectedVersion negative", dict(good, expectedVersion=-1)),
            ("expectedVersion a string", dict(good, expectedVersion="1")),
            ("expectedVersion fractional", dict(good, expectedVersion=1.5)),
            ("aggregateType with a space", dict(good, aggregateType="or der")),
            ("aggregateType empty", dict(good, aggregateType="")),
            ("aggregateType of 129 bytes", dict(good, aggregateType="t" * 129)),
            ("aggregateId of 257 bytes", dict(good, aggregateId="order_" + "x" * 251)),
            ("aggregateId with NUL", dict(good, aggregateId="order_\u0000x")),
            ("inferred type not a type", dict(good, aggregateId="or der_1")),
        ]
        for what, body in cases:
            st, _, b = h.post("/events", body)
            check(st == 400 and isinstance(b, dict) and b.get("errorCode") == "VALIDATION_ERROR",
                  f"{what}: expected 400 VALIDATION_ERROR, got {st} {b}")
            hapnd_error((st, None, b), 400, "VALIDATION_ERROR")
        check(h.events("order_1") == {"events": []}, "a refused append wrote")
        # 256 bytes is an aggregate id
        agg = "order_" + "x" * 250
        check(h.ok_append(agg)["aggregateId"] == agg, "256 bytes")


def test_validation_errors_name_their_field():
    """docs/dialects/hapnd.md: errors carry `field` for validation errors."""
    with Server() as s:
        h = Hapnd(s)
        good = {"aggregateId": "order_1", "eventType": "ItemAdded", "data": {"a": 1}}
        cases = [
            ({k: v for k, v in good.items() if k != "aggregateId"}, {"aggregateId"}),
            ({k: v for k, v in good.items() if k != "eventType"}, {"eventType"}),
            ({k: v for k, v in good.items() if k != "data"}, {"data"}),
            (dict(good, expectedVersion=-1), {"expectedVersion"}),
            (dict(good, aggregateType="or der"), {"aggregateType"}),
            (dict(good, aggregateId="abc"), {"aggregateId", "aggregateType"}),
            (dict(good, aggregateId="or der_1"), {"aggregateId", "aggregateType"}),
        ]
        wrong = []
        for body, fields in cases:
            st, _, b = h.post("/events", body)
            check(st == 400 and b.get("errorCode") == "VALIDATION_ERROR", f"{body}: {st} {b}")
            if b.get("field") not in fields:
                wrong.append(f"POST /events {json.dumps(body)} -> {b} (field not in {fields})")
        for query, field in [("?limit=0", "limit"), ("?fromVersion=0", "fromVersion")]:
            st, _, b = h.get(f"/events/order_1{query}")
            check(st == 400 and b.get("errorCode") == "VALIDATION_ERROR", f"{query}: {st} {b}")
            if b.get("field") != field:
                wrong.append(f"GET /events/order_1{query} -> {b} (field {field!r})")
        check(not wrong, "validation errors without their field:\n  " + "\n  ".join(wrong))


def test_refusals_name_hapnds_members_not_native_ones():
    """What the store itself refuses (control characters in an eventType, aggregate ids it
    cannot name a stream with) is 400 VALIDATION_ERROR naming the member the Hapnd client
    sent, not the native request the dialect made of it (events[0].type, stream)."""
    with Server() as s:
        h = Hapnd(s)
        wrong = []
        cases = [
            ("/events", {"aggregateId": "order_1", "eventType": "Item\u0001Added", "data": {}},
             "eventType"),
            ("/events", {"aggregateId": "order_\u0001x", "eventType": "A", "data": {}},
             "aggregateId"),
            ("/events", {"aggregateId": "..", "aggregateType": "t", "eventType": "A",
                         "data": {}}, "aggregateId"),
            ("/events/batch", {"aggregateId": "order_1",
                               "events": [ev("A"), ev("B\u0007")]}, "events[1].eventType"),
        ]
        for path, body, field in cases:
            st, _, b = h.post(path, body)
            check(st == 400 and isinstance(b, dict) and b.get("errorCode") == "VALIDATION_ERROR",
                  f"POST {path} {json.dumps(body)}: {st} {b}")
            if b.get("field") != field:
                wrong.append(f"POST {path} {json.dumps(body)} -> {b} (expected field {field!r})")
        check(h.events("order_1") == {"events": []}, "nothing written")
        check(not wrong, "native member names in Hapnd errors:\n  " + "\n  ".join(wrong))


def test_unparseable_json_is_invalid_request():
    with Server() as s:
        h = Hapnd(s)
        for raw in (b'{"aggregateId": "order_1",', b"", b"not json", b"{'a': 1}",
                    b'{"aggregateId":"order_1","eventType":"A","data":{}}}'):
            hapnd_error(h.request("POST", "/events", raw, headers=JSON), 400, "INVALID_REQUEST")
            hapnd_error(h.request("POST", "/events/batch", raw, headers=JSON), 400,
                        "INVALID_REQUEST")
        # JSON, but not an object
        for raw in (b"[]", b"null", b'"order_1"'):
            st, _, b = h.request("POST", "/events", raw, headers=JSON)
            check(st == 400 and b.get("errorCode") in ("INVALID_REQUEST", "VALIDATION_ERROR"),
                  f"{raw!r}: {st} {b}")
        check(h.events("order_1") == {"events": []}, "nothing written")


def test_content_type_must_be_application_json():
    with Server() as s:
        h = Hapnd(s)
        body = json.dumps({"aggregateId": "order_1", "eventType": "A", "data": {}})
        for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                   None):
            hdrs = {"Content-Type": ct} if ct else {}
            hapnd_error(h.request("POST", "/events", body, headers=hdrs), 400,
                        "INVALID_REQUEST")
            batch = json.dumps({"aggregateId": "order_1", "events": [ev()]})
            hapnd_error(h.request("POST", "/events/batch", batch, headers=hdrs), 400,
                        "INVALID_REQUEST")
        check(h.events("order_1") == {"events": []}, "nothing written")
        for ct in ("application/json; charset=utf-8", "Application/JSON"):
            st, _, b = h.request("POST", "/events", body, headers={"Content-Type": ct})
            check(st == 201, f"{ct}: {st} {b}")
        check(count(h, "order_1") == 2, "both written")


def test_aggregate_ids_starting_with_dollar_are_refused():
    with Server() as s:
        h = Hapnd(s)
        for agg in ("$order_1", "$logic", "$$order_1"):
            hapnd_error(h.append(agg, aggregateType="order"), 400, "VALIDATION_ERROR")
            hapnd_error(h.batch(agg, [ev()], aggregateType="order"), 400, "VALIDATION_ERROR")
        deploy_reducer(s, "r", "order", "function reduce(s, e) return s end")
        # the server's own streams are not readable as aggregates
        for agg in ("$logic", "$order_1"):
            check(h.events(agg) == {"events": []}, f"GET {agg}")


def test_unknown_members_are_ignored():
    with Server() as s:
        h = Hapnd(s)
        b = h.ok_append("order_1", extra={"a": 1}, tenantId="someone-else")
        check(b["version"] == 1, f"{b}")
        got = h.events("order_1")["events"][0]
        check("extra" not in got and "tenantId" not in got, f"{got}")


# ---- expectedVersion ----

def test_expected_version_matching_appends():
    with Server() as s:
        h = Hapnd(s)
        check(h.ok_append("order_1", expectedVersion=0)["version"] == 1, "0 for a new aggregate")
        check(h.ok_append("order_1", expectedVersion=1)["version"] == 2, "1")
        check(h.ok_append("order_1", expectedVersion=2)["version"] == 3, "2")
        check(h.ok_append("order_1", expectedVersion=None)["version"] == 4, "null: no check")
        b = h.ok_batch("order_1", [ev(), ev()], expectedVersion=4)
        check((b["startVersion"], b["endVersion"]) == (5, 6), f"{b}")
        b = h.ok_batch("cart_1", [ev()], expectedVersion=0)
        check((b["startVersion"], b["endVersion"]) == (1, 1), f"{b}")


def test_expected_version_mismatch_is_409_and_writes_nothing():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("order_1")
        h.ok_append("order_1")
        for expected in (0, 1, 5):
            b = hapnd_error(h.append("order_1", expectedVersion=expected), 409,
                            "CONCURRENCY_CONFLICT")
            check(b.get("expectedVersion") == expected and b.get("actualVersion") == 2,
                  f"expectedVersion {expected}: {b}")
        b = hapnd_error(h.batch("order_1", [ev(), ev()], expectedVersion=1), 409,
                        "CONCURRENCY_CONFLICT")
        check(b.get("expectedVersion") == 1 and b.get("actualVersion") == 2, f"batch: {b}")
        check(h.versions("order_1") == [1, 2], "a conflict wrote")
        # a new aggregate is at version 0
        b = hapnd_error(h.append("order_new", expectedVersion=3), 409, "CONCURRENCY_CONFLICT")
        check(b.get("expectedVersion") == 3 and b.get("actualVersion") == 0, f"new: {b}")
        check(h.events("order_new") == {"events": []}, "a conflict wrote")


def test_concurrent_appends_with_the_same_expected_version_commit_once():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("order_1")
        results = []
        lock = threading.Lock()

        def one(i):
            r = Hapnd(s).append("order_1", data={"i": i}, expectedVersion=1)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [r for r in results if r[0] == 201]
        lost = [r for r in results if r[0] == 409]
        check(len(won) == 1 and len(lost) == 7, f"{[(r[0], r[2]) for r in results]}")
        for r in lost:
            hapnd_error(r, 409, "CONCURRENCY_CONFLICT")
            check(r[2].get("actualVersion") == 2, f"{r[2]}")
        check(h.versions("order_1") == [1, 2], "one commit")
        # without expectedVersion every one commits, each with its own version
        results.clear()
        threads = [threading.Thread(target=lambda i=i: results.append(
            Hapnd(s).append("order_2", data={"i": i}))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(all(r[0] == 201 for r in results), f"{results}")
        check(sorted(r[2]["version"] for r in results) == list(range(1, 9)), f"{results}")


# ---- what is kept ----

def test_correlation_causation_and_metadata_are_kept():
    with Server() as s:
        h = Hapnd(s)
        meta = {"userId": "user_456", "tags": ["a", "b"], "n": {"deep": 1.5}}
        b = h.ok_append("order_123", "ItemAdded", {"item": "Widget"}, correlationId="req_abc123",
                        causationId="evt_xyz789", metadata=meta)
        check(set(b) == {"eventId", "aggregateId", "aggregateType", "version", "timestamp"},
              f"{b}")
        h.ok_append("order_123", "Plain", {"x": 1})
        got = h.events("order_123")["events"]
        e = got[0]
        check(e["correlationId"] == "req_abc123" and e["causationId"] == "evt_xyz789" and
              e["metadata"] == meta, f"{e}")
        # absent when not given
        check(not {"correlationId", "causationId", "metadata"} & set(got[1]), f"{got[1]}")
        # natively, what Hapnd adds sits under metadata.hapnd
        st, _, nat = s.get("/v1/databases/default/streams/order_123/events")
        check(st == 200, f"{st} {nat}")
        m = nat["events"][0]["metadata"]["hapnd"]
        check(m == {"aggregateType": "order", "correlationId": "req_abc123",
                    "causationId": "evt_xyz789", "metadata": meta}, f"{nat['events'][0]}")
        check(nat["events"][0]["type"] == "ItemAdded" and nat["events"][0]["version"] == 1,
              f"{nat}")


def test_data_is_kept_as_sent():
    with Server() as s:
        h = Hapnd(s)
        data = ('{"item":"Widget","price":25.0,"tax":0.1,"small":1.5e-7,"negzero":-0.0,'
                '"nested":{"b":[1,2.50,{"c":null}],"a":true,"z":false},"empty":{},"list":[],'
                '"u":"é☃😀 日本","esc":"q\\"b\\\\n\\n\\t"}')
        body = ('{"aggregateId":"order_1","eventType":"ItemAdded","data":' + data + '}')
        st, _, b = h.request("POST", "/events", body.encode(), headers=JSON)
        check(st == 201, f"{st} {b}")
        st, _, raw = h.raw("GET", "/events/order_1")
        text = raw.decode("utf-8")
        check('"data":' + data + ',' in text, f"data not as sent:\n  sent {data}\n  got  {text}")
        got = json.loads(text)["events"][0]["data"]
        check(got == json.loads(data), f"{got}")
        # other JSON values are data too
        for d in ("[1,2]", '"text"', "7", "true"):
            st, _, b = h.request("POST", "/events", ('{"aggregateId":"order_2","eventType":"T",'
                                                     '"data":' + d + '}').encode(), headers=JSON)
            check(st == 201, f"data {d}: {st} {b}")
        check([e["data"] for e in h.events("order_2")["events"]] == [[1, 2], "text", 7, True],
              "values")


def test_integers_beyond_64_bits_in_data_are_kept():
    """Valid JSON numbers outside int64: the native API keeps them (and Hapnd's GET shows them
    as sent); a Hapnd append must not refuse them as unparseable."""
    with Server() as s:
        h = Hapnd(s)
        data = '{"big":12345678901234567890,"neg":-98765432109876543210}'
        body = '{"aggregateId":"order_1","eventType":"T","data":' + data + '}'
        st, _, b = h.request("POST", "/events", body.encode(), headers=JSON)
        check(st == 201, f"POST /events {body} -> {st} {b}")
        text = h.raw("GET", "/events/order_1")[2].decode()
        check('"data":' + data in text, f"{text}")


def test_escaped_member_names_are_the_same_members():
    """JSON names compare after unescaping: "d\\u0061ta" is "data"."""
    with Server() as s:
        h = Hapnd(s)
        body = ('{"aggregateId":"order_1","eventType":"T","d\\u0061ta":{"q":1},'
                '"metad\\u0061ta":{"m":1}}')
        st, _, b = h.request("POST", "/events", body.encode(), headers=JSON)
        check(st == 201, f"POST /events {body} -> {st} {b}")
        e = h.events("order_1")["events"][0]
        check(e["data"] == {"q": 1} and e["metadata"] == {"m": 1}, f"{e}")


# ---- POST /events/batch ----

def test_batch_answers_versions_and_event_ids():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("order_123")
        st, _, b = h.batch("order_123", [ev("ItemAdded", {"item": "Widget", "price": 25.0}),
                                         ev("ItemAdded", {"item": "Gadget", "price": 15.0}),
                                         ev("OrderPlaced", {})])
        check(st == 201, f"{st} {b}")
        check(set(b) == {"aggregateId", "aggregateType", "startVersion", "endVersion",
                         "eventIds", "timestamp"}, f"members (no state without a reducer): {b}")
        check(b["aggregateId"] == "order_123" and b["aggregateType"] == "order", f"{b}")
        check((b["startVersion"], b["endVersion"]) == (2, 4), f"{b}")
        check(len(b["eventIds"]) == 3 and len(set(b["eventIds"])) == 3, f"{b}")
        for i in b["eventIds"]:
            check_event_id(i)
        check_time(b["timestamp"])
        got = h.events("order_123")["events"]
        check([e["version"] for e in got] == [1, 2, 3, 4], f"{got}")
        check([e["eventId"] for e in got[1:]] == b["eventIds"], f"ids in order: {got}")
        check([e["eventType"] for e in got[1:]] == ["ItemAdded", "ItemAdded", "OrderPlaced"],
              f"{got}")
        check(all(e["timestamp"] == b["timestamp"] for e in got[1:]), f"one commit: {got}")
        check(got[2]["data"] == {"item": "Gadget", "price": 15.0}, f"{got[2]}")
        # a new aggregate, type inferred or given
        b = h.ok_batch("cart-9", [ev()])
        check(b["aggregateType"] == "cart" and (b["startVersion"], b["endVersion"]) == (1, 1),
              f"{b}")
        b = h.ok_batch("abc", [ev(), ev()], aggregateType="order")
        check(b["aggregateType"] == "order" and b["endVersion"] == 2, f"{b}")
        hapnd_error(h.batch("xyz", [ev()]), 400, "VALIDATION_ERROR")


def test_batch_is_atomic():
    with Server() as s:
        h = Hapnd(s)
        h.ok_append("order_1")
        # a conflict: none written
        hapnd_error(h.batch("order_1", [ev(), ev(), ev()], expectedVersion=0), 409,
                    "CONCURRENCY_CONFLICT")
        check(h.versions("order_1") == [1], "a conflicting batch wrote")
        # one bad event: none written
        for bad, field in [({"data": {}}, "events[1].eventType"),
                           ({"eventType": "A"}, "events[1].data"),
                           ({"eventType": "", "data": {}}, "events[1].eventType"),
                           ({"eventType": "A", "data": {}, "metadata": 3}, "events[1].metadata"),
                           ("not an event", None)]:
            b = hapnd_error(h.batch("order_1", [ev(), bad, ev()]), 400, "VALIDATION_ERROR")
            check(field is None or b.get("field") == field, f"{bad}: {b}")
        check(h.versions("order_1") == [1], "a bad batch wrote")
        b = h.ok_batch("order_1", [ev(), ev()], expectedVersion=1)
        check((b["startVersion"], b["endVersion"]) == (2, 3), f"{b}")


def test_batch_defaults_at_the_top_and_per_event_overrides():
    with Server() as s:
        h = Hapnd(s)
        top = {"userId": "user_456"}
        h.ok_batch("order_1", [
            ev("A"),
            ev("B", correlationId="corr-own"),
            ev("C", causationId="cause-own", metadata={"own": True}),
        ], correlationId="corr-top", causationId="cause-top", metadata=top)
        got = h.events("order_1")["events"]
        check([(e["correlationId"], e["causationId"], e["metadata"]) for e in got] == [
            ("corr-top", "cause-top", top),
            ("corr-own", "cause-top", top),
            ("corr-top", "cause-own", {"own": True}),
        ], f"{got}")
        # no defaults: only what each event gives
        h.ok_batch("order_2", [ev("A"), ev("B", correlationId="c")])
        got = h.events("order_2")["events"]
        check(not {"correlationId", "causationId", "metadata"} & set(got[0]), f"{got[0]}")
        check(got[1]["correlationId"] == "c" and "metadata" not in got[1], f"{got[1]}")


def test_batch_needs_events():
    with Server() as s:
        h = Hapnd(s)
        for body in ({"aggregateId": "order_1", "events": []},
                     {"aggregateId": "order_1"},
                     {"aggregateId": "order_1", "events": {"eventType": "A", "data": {}}},
                     {"aggregateId": "order_1", "events": None},
                     {"events": [ev()]}):
            hapnd_error(h.post("/events/batch", body), 400, "VALIDATION_ERROR")
        check(h.events("order_1") == {"events": []}, "nothing written")


def test_batch_limit():
    with Server(extra=["--max-batch-events", "3"]) as s:
        h = Hapnd(s)
        b = h.ok_batch("order_1", [ev(), ev(), ev()])
        check(b["endVersion"] == 3, f"3 events at the limit: {b}")
        hapnd_error(h.batch("order_1", [ev()] * 4), 400, "VALIDATION_ERROR")
        check(h.versions("order_1") == [1, 2, 3], "an over-limit batch wrote")
    with Server() as s:  # the default limit is 1,000
        h = Hapnd(s)
        b = h.ok_batch("order_1", [ev(data={"i": i}) for i in range(1000)])
        check((b["startVersion"], b["endVersion"]) == (1, 1000) and len(b["eventIds"]) == 1000,
              f"{ {k: v for k, v in b.items() if k != 'eventIds'} }")
        hapnd_error(h.batch("order_2", [ev()] * 1001), 400, "VALIDATION_ERROR")


def test_idempotency_key_replays_the_answer():
    with Server() as s:
        h = Hapnd(s)
        key = {"Idempotency-Key": "k-1"}
        body = {"aggregateId": "order_1", "eventType": "A", "data": {"x": 1}}
        st, _, first = h.post("/events", body, headers=key)
        check(st == 201, f"{st} {first}")
        st, _, again = h.post("/events", body, headers=key)
        check(st == 201 and again == first, f"replayed: {st} {again} vs {first}")
        check(h.versions("order_1") == [1], "a replay wrote")
        bk = {"Idempotency-Key": "k-2"}
        st, _, first = h.post("/events/batch", {"aggregateId": "order_1",
                                                "events": [ev(), ev()]}, headers=bk)
        st2, _, again = h.post("/events/batch", {"aggregateId": "order_1",
                                                  "events": [ev(), ev()]}, headers=bk)
        check(st == st2 == 201 and again == first, f"{first} {again}")
        check(h.versions("order_1") == [1, 2, 3], "a batch replay wrote")


def test_idempotent_replay_answers_the_original_state():
    """A retried append (same Idempotency-Key, same body) gets the original answer again
    (docs/api.md: "the original answer is sent again, byte for byte"): its state is the state
    after that append, matching its version, not the aggregate's state now."""
    with Server() as s:
        deploy_reducer(s, "orders", "order", "function reduce(s, e) "
                       "return {n = ((s and s.n) or 0) + 1, v = e.version} end")
        h = Hapnd(s)
        h.ok_append("order_1")
        key = {"Idempotency-Key": "retry-1"}
        body = {"aggregateId": "order_1", "eventType": "A", "data": {}}
        st, _, first = h.raw("POST", "/events", body, headers=key)
        check(st == 201 and json.loads(first)["state"] == {"n": 2, "v": 2}, f"{st} {first}")
        h.ok_append("order_1")  # someone else appends in between
        st, hdrs, again = h.raw("POST", "/events", body, headers=key)
        check(st == 201 and hdrs.get("x-idempotency-replayed") == "true", f"{st} {hdrs}")
        check(again == first, f"replay differs from the original answer:\n  first  {first}\n"
                              f"  replay {again}")
        bkey = {"Idempotency-Key": "retry-2"}
        bbody = {"aggregateId": "order_1", "events": [ev(), ev()]}
        st, _, first = h.raw("POST", "/events/batch", bbody, headers=bkey)
        check(st == 201, f"{st} {first}")
        h.ok_append("order_1")
        st, _, again = h.raw("POST", "/events/batch", bbody, headers=bkey)
        check(again == first, f"batch replay differs:\n  first  {first}\n  replay {again}")


# ---- GET /events/{aggregateId} ----

def test_get_events_ascending_with_every_field():
    with Server() as s:
        h = Hapnd(s)
        a = h.ok_append("order_123", "OrderPlaced", {"customerId": "cust_456"},
                        correlationId="c1")
        h.ok_append("cart_1")  # another aggregate in between
        b = h.ok_batch("order_123", [ev("ItemAdded", {"i": 1}), ev("ItemAdded", {"i": 2})])
        got = h.events("order_123")
        check(set(got) == {"events"}, f"no paging members when all fit: {got}")
        evs = got["events"]
        check([e["version"] for e in evs] == [1, 2, 3], f"{evs}")
        first = evs[0]
        check(set(first) == {"eventId", "aggregateId", "aggregateType", "eventType", "data",
                             "version", "position", "timestamp", "correlationId"}, f"{first}")
        check(first["eventId"] == a["eventId"] and first["aggregateId"] == "order_123" and
              first["aggregateType"] == "order" and first["eventType"] == "OrderPlaced" and
              first["data"] == {"customerId": "cust_456"} and first["timestamp"] == a["timestamp"],
              f"{first}")
        for e in evs:
            check_event_id(e["eventId"])
            check_time(e["timestamp"])
        # position is the tenant-wide global position: increasing, with cart_1's in between
        pos = [e["position"] for e in evs]
        check(all(isinstance(p, int) for p in pos) and pos[0] < pos[1] < pos[2] and
              pos[1] - pos[0] >= 2, f"positions {pos}")
        check([e["eventId"] for e in evs[1:]] == b["eventIds"], "batch ids")


def test_unknown_aggregate_is_an_empty_list():
    with Server() as s:
        h = Hapnd(s)
        st, _, b = h.get("/events/order_nothing")
        check(st == 200 and b == {"events": []}, f"{st} {b}")
        st, _, b = h.get("/events/nodelimiter")
        check(st == 200 and b == {"events": []}, f"{st} {b}")
        h.ok_append("order_1")
        st, _, b = h.get("/events/order_1?fromVersion=5")
        check(st == 200 and b == {"events": []}, f"past the end: {st} {b}")


def test_paging_with_limit_and_from_version():
    with Server() as s:
        h = Hapnd(s)
        h.ok_batch("order_1", [ev(data={"i": i}) for i in range(5)])
        b = h.events("order_1", "?limit=2")
        check([e["version"] for e in b["events"]] == [1, 2] and b.get("hasMore") is True and
              b.get("nextFromVersion") == 3, f"{b}")
        b = h.events("order_1", "?limit=2&fromVersion=3")
        check([e["version"] for e in b["events"]] == [3, 4] and b.get("hasMore") is True and
              b.get("nextFromVersion") == 5, f"{b}")
        b = h.events("order_1", "?limit=2&fromVersion=5")
        check([e["version"] for e in b["events"]] == [5] and "hasMore" not in b and
              "nextFromVersion" not in b, f"last page: {b}")
        b = h.events("order_1", "?limit=5")
        check(len(b["events"]) == 5 and "hasMore" not in b, f"exactly all: {b}")
        b = h.events("order_1", "?fromVersion=4")
        check([e["version"] for e in b["events"]] == [4, 5] and "hasMore" not in b, f"{b}")
        # following nextFromVersion visits every event once
        seen, frm = [], 1
        while True:
            b = h.events("order_1", f"?limit=1&fromVersion={frm}")
            seen += [e["data"]["i"] for e in b["events"]]
            if not b.get("hasMore"):
                break
            frm = b["nextFromVersion"]
        check(seen == [0, 1, 2, 3, 4], f"{seen}")
        for q in ("?limit=0", "?limit=1001", "?limit=x", "?fromVersion=0", "?fromVersion=-1",
                  "?fromVersion=abc"):
            hapnd_error(h.get(f"/events/order_1{q}"), 400, "VALIDATION_ERROR")


def test_at_most_1000_events_per_read():
    with Server() as s:
        h = Hapnd(s)
        h.ok_batch("order_1", [ev(data={"i": i}) for i in range(1000)])
        h.ok_batch("order_1", [ev(data={"i": 1000 + i}) for i in range(5)])
        b = h.events("order_1")
        check(len(b["events"]) == 1000 and b["events"][-1]["version"] == 1000, "1000")
        check(b.get("hasMore") is True and b.get("nextFromVersion") == 1001, f"{b.keys()}")
        b = h.events("order_1", "?fromVersion=1001")
        check([e["version"] for e in b["events"]] == [1001, 1002, 1003, 1004, 1005] and
              "hasMore" not in b, f"{b}")


def test_aggregate_ids_needing_url_encoding_round_trip():
    with Server() as s:
        h = Hapnd(s)
        for agg in ("order_a/b", "order_a b", "order_ü日本", "order_a%2Fb", "order_a?b#c",
                    "order_a+b", "order_a&limit=1", "order_..", "order_a\\b"):
            b = h.ok_append(agg, data={"id": agg})
            check(b["aggregateId"] == agg and b["aggregateType"] == "order", f"{agg!r}: {b}")
            h.ok_append(agg, data={"id": agg})
            st, _, got = h.get(f"/events/{quote(agg)}")
            check(st == 200, f"GET {agg!r}: {st} {got}")
            check([e["aggregateId"] for e in got["events"]] == [agg, agg] and
                  [e["data"]["id"] for e in got["events"]] == [agg, agg],
                  f"{agg!r}: {got}")


def test_events_written_natively_read_as_hapnd_events():
    with Server() as s:
        h = Hapnd(s)
        st, _, b = s.append("order_7", [{"type": "Placed", "data": {"n": 1}}])
        check(st == 201, f"{st} {b}")
        got = h.events("order_7")["events"]
        check(len(got) == 1 and got[0]["aggregateType"] == "order" and
              got[0]["eventType"] == "Placed" and got[0]["version"] == 1 and
              got[0]["data"] == {"n": 1}, f"{got}")
        check_event_id(got[0]["eventId"])
        check(got[0]["eventId"] == "evt_" + b["events"][0]["id"].replace("-", ""), f"{got} {b}")
        b = h.ok_append("order_7")
        check(b["version"] == 2 and b["aggregateType"] == "order", f"{b}")
        hapnd_error(h.append("order_7", aggregateType="cart"), 400, "AGGREGATE_TYPE_MISMATCH")


# ---- reducer state in the 201 ----

RECORDER = """
function reduce(state, e)
  state = state or {count = 0, total = 0, types = {}}
  state.count = state.count + 1
  state.total = state.total + (e.data.price or 0)
  state.types[#state.types + 1] = e.eventType
  state.aggregateId = e.aggregateId
  state.aggregateType = e.aggregateType
  state.version = e.version
  state.eventId = e.eventId
  state.correlationId = e.correlationId
  state.nativeType = e.type
  return state
end
"""


def test_reducer_state_is_in_the_201():
    with Server() as s:
        deploy_reducer(s, "orders", "order", RECORDER)
        h = Hapnd(s)
        b = h.ok_append("order_123", "ItemAdded", {"item": "Widget", "price": 25.0},
                        correlationId="req_1")
        check("state" in b and "stateError" not in b, f"{b}")
        st = b["state"]
        check(st["count"] == 1 and st["total"] == 25 and st["types"] == ["ItemAdded"], f"{st}")
        # the reducer saw a Hapnd-shaped event
        check(st["aggregateId"] == "order_123" and st["aggregateType"] == "order" and
              st["version"] == 1 and st["eventId"] == b["eventId"] and
              st["correlationId"] == "req_1" and "nativeType" not in st, f"{st}")
        b = h.ok_append("order_123", "ItemAdded", {"item": "Gadget", "price": 25.0})
        check(b["state"]["count"] == 2 and b["state"]["total"] == 50 and
              b["state"]["version"] == 2 and b["state"]["eventId"] == b["eventId"], f"{b}")
        # another type without a reducer: no state member
        b = h.ok_append("cart_1")
        check("state" not in b and "stateError" not in b, f"{b}")


def test_batch_answers_the_state_after_the_whole_batch():
    with Server() as s:
        deploy_reducer(s, "orders", "order", RECORDER)
        h = Hapnd(s)
        h.ok_append("order_1", data={"price": 1})
        b = h.ok_batch("order_1", [ev("ItemAdded", {"price": 10}), ev("ItemAdded", {"price": 5}),
                                   ev("OrderPlaced", {})])
        st = b["state"]
        check(st["count"] == 4 and st["total"] == 16 and st["version"] == 4 and
              st["types"] == ["ItemAdded", "ItemAdded", "ItemAdded", "OrderPlaced"] and
              st["eventId"] == b["eventIds"][-1], f"{b}")


def test_reducer_that_raises_still_commits_with_state_error():
    src = """
function reduce(s, e)
  if e.eventType == "Boom" then error("boom on purpose") end
  s = s or {n = 0}
  s.n = s.n + 1
  return s
end
"""
    with Server() as s:
        deploy_reducer(s, "orders", "order", src)
        h = Hapnd(s)
        check(h.ok_append("order_1", "Fine")["state"] == {"n": 1}, "before")
        st, _, b = h.append("order_1", "Boom")
        check(st == 201, f"a failing reducer does not fail the append: {st} {b}")
        check("state" not in b, f"{b}")
        se = b.get("stateError")
        check(isinstance(se, dict) and se.get("errorCode") == "REDUCER_FAILED" and
              isinstance(se.get("error"), str) and "boom on purpose" in se["error"], f"{b}")
        check(b["version"] == 2, f"{b}")
        st, _, b = h.batch("order_1", [ev("Fine"), ev("Boom")])
        check(st == 201 and b.get("stateError", {}).get("errorCode") == "REDUCER_FAILED" and
              b["endVersion"] == 4, f"batch: {st} {b}")
        check([e["eventType"] for e in h.events("order_1")["events"]] ==
              ["Fine", "Boom", "Fine", "Boom"], "every event committed")


def test_explicit_type_uses_that_types_reducer():
    with Server() as s:
        deploy_reducer(s, "orders", "order", RECORDER)
        deploy_reducer(s, "carts", "cart", "function reduce(s, e) "
                       "return {cart = true, n = ((s and s.n) or 0) + 1} end")
        h = Hapnd(s)
        b = h.ok_append("abc", aggregateType="order", data={"price": 3})
        check(b.get("state", {}).get("count") == 1 and b["state"]["aggregateType"] == "order",
              f"{b}")
        b = h.ok_append("abc", data={"price": 4})  # type kept: still the order reducer
        check(b.get("state", {}).get("count") == 2 and b["state"]["total"] == 7, f"{b}")
        # an id that infers "order", written as a cart: the cart reducer
        b = h.ok_append("order_5", aggregateType="cart")
        check(b.get("state") == {"cart": True, "n": 1}, f"{b}")
        b = h.ok_append("order_5")
        check(b.get("state") == {"cart": True, "n": 2}, f"{b}")
        # a type with no reducer on an id whose inferred type has one: no state
        b = h.ok_append("order_6", aggregateType="invoice")
        check("state" not in b and "stateError" not in b, f"{b}")


def test_each_concurrent_append_answers_its_own_state():
    """The state in a 201 is the state after that append: with appends racing, each answer's
    state covers exactly the events up to its own version."""
    src = """
function reduce(s, e)
  s = s or {n = 0}
  s.n = s.n + 1
  s.version = e.version
  s.eventId = e.eventId
  return s
end
"""
    with Server() as s:
        deploy_reducer(s, "orders", "order", src)
        bad, lock = [], threading.Lock()

        def worker(t):
            h = Hapnd(s)
            for i in range(20):
                st, _, b = h.append("order_1", data={"t": t, "i": i})
                state = b.get("state") if isinstance(b, dict) else None
                if st != 201 or not state or state.get("version") != b["version"] or \
                        state.get("n") != b["version"] or state.get("eventId") != b["eventId"]:
                    with lock:
                        bad.append((st, b))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not bad, f"{len(bad)} answers with another append's state, e.g. {bad[:2]}")
        check(Hapnd(s).versions("order_1") == list(range(1, 121)), "120 events")


def test_reducer_over_its_cpu_budget_still_commits():
    src = """
function reduce(s, e)
  if e.eventType == "Loop" then while true do end end
  return {n = ((s and s.n) or 0) + 1}
end
"""
    with Server(extra=["--logic-cpu-ms", "100"]) as s:
        deploy_reducer(s, "orders", "order", src)
        h = Hapnd(s)
        h.ok_append("order_1", "Fine")
        b = h.ok_append("order_1", "Loop")
        check(b.get("stateError", {}).get("errorCode") == "REDUCER_FAILED" and
              "state" not in b and b["version"] == 2, f"{b}")
        check(h.versions("order_1") == [1, 2], "committed")
        check(h.ok_append("cart_1")["version"] == 1, "the server serves on")


def test_state_follows_redeploys_and_removal():
    with Server() as s:
        deploy_reducer(s, "orders", "order", "function reduce(s, e) "
                       "return {v = 1, n = ((s and s.n) or 0) + 1} end")
        h = Hapnd(s)
        h.ok_batch("order_1", [ev()] * 20)
        check(h.ok_append("order_1")["state"] == {"v": 1, "n": 21}, "v1")
        deploy_reducer(s, "orders", "order", "function reduce(s, e) "
                       "return {v = 2, n = ((s and s.n) or 0) + 1} end")
        b = h.ok_append("order_1")
        check(b.get("state") == {"v": 2, "n": 22}, f"the new version over every event: {b}")
        st, _, _ = s.request("DELETE", "/v1/databases/default/components/orders")
        check(st == 204, f"remove: {st}")
        b = h.ok_append("order_1")
        check("state" not in b and "stateError" not in b, f"no reducer any more: {b}")


def test_the_aggregate_types_reducer_not_the_native_categorys():
    """order_5 written as a cart: Hapnd answers the cart reducer's state, while the native
    state route (category of the stream name) uses the order reducer; neither's snapshots
    leak into the other."""
    with Server() as s:
        deploy_reducer(s, "o", "order", "function reduce(s, e) "
                       "return {k = 'order', n = ((s and s.n) or 0) + 1} end")
        deploy_reducer(s, "c", "cart", "function reduce(s, e) "
                       "return {k = 'cart', n = ((s and s.n) or 0) + 1} end")
        h = Hapnd(s)
        b = h.ok_batch("order_5", [ev()] * 20, aggregateType="cart")
        check(b.get("state") == {"k": "cart", "n": 20}, f"{b}")
        st, _, nat = s.get("/v1/databases/default/streams/order_5/state")
        check(st == 200 and nat["state"] == {"k": "order", "n": 20}, f"native: {st} {nat}")
        check(h.ok_append("order_5").get("state") == {"k": "cart", "n": 21}, "cart again")
        st, _, nat = s.get("/v1/databases/default/streams/order_5/state")
        check(nat["state"] == {"k": "order", "n": 21}, f"native again: {nat}")
        check(h.ok_append("order_5").get("state") == {"k": "cart", "n": 22}, "cart again")


# ---- mounts and routes ----

def test_the_dialect_on_its_own_port_at_root_paths():
    with Server(extra=["--dialect-listen", "hapnd=127.0.0.1:0"]) as s:
        port = dialect_port(s, "hapnd")
        root = Hapnd(s, base="", port=port)
        st, _, b = root.get("/health")
        check(st == 200 and b == {"status": "ok"}, f"{st} {b}")
        b = root.ok_append("order_1")
        check(b["version"] == 1, f"{b}")
        b = root.ok_batch("order_1", [ev(), ev()])
        check(b["endVersion"] == 3, f"{b}")
        check([e["version"] for e in root.events("order_1")["events"]] == [1, 2, 3], "GET")
        st, _, b = root.get("/auth/whoami")
        check(st == 200 and b["tenantId"] == "default", f"{st} {b}")
        # the same database under /hapnd on the main port
        check(Hapnd(s).versions("order_1") == [1, 2, 3], "shared with /hapnd")
        # only Hapnd's routes there
        hapnd_error(root.get("/hapnd/events/order_1"), 404, "NOT_FOUND")
        hapnd_error(root.get("/v1/databases/default"), 404, "NOT_FOUND")
        # the HTTP layer's own errors in Hapnd's envelope
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                     b"application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        st, _, body = split_raw(data)
        check(st == 400 and json.loads(body).get("errorCode") and
              isinstance(json.loads(body).get("error"), str), f"{data!r}")


def test_mount_options():
    with Server(extra=["--dialect", "hapnd=/hd"]) as s:
        st, _, b = Hapnd(s, base="/hd").get("/health")
        check(st == 200 and b == {"status": "ok"}, f"/hd: {st} {b}")
        st, _, _ = s.get("/hapnd/health")
        check(st == 404, f"/hapnd moved: {st}")
    with Server(extra=["--dialect", "hapnd=off"]) as s:
        st, _, _ = s.get("/hapnd/health")
        check(st == 404, f"off: {st}")


def test_unknown_route_is_404_and_wrong_method_405():
    with Server() as s:
        h = Hapnd(s)
        for path in ("/nope", "/events/order_1/extra", "/event", "/auth", "/auth/whoami/x"):
            hapnd_error(h.get(path), 404, "NOT_FOUND")
        for method, path in [("GET", "/events"), ("PUT", "/events"), ("DELETE", "/events"),
                             ("PUT", "/events/batch"), ("DELETE", "/events/batch"),
                             ("POST", "/events/order_1"), ("DELETE", "/events/order_1"),
                             ("POST", "/health"), ("POST", "/auth/whoami")]:
            body = {"aggregateId": "order_1", "eventType": "A", "data": {}} \
                if method in ("POST", "PUT") else None
            st, hdrs, b = h.request(method, path, body)
            check(st == 405, f"{method} {path}: expected 405, got {st} {b}")
            hapnd_error((st, hdrs, b), 405, "METHOD_NOT_ALLOWED")
        check(h.events("order_1") == {"events": []}, "nothing written")
        # GET /events/batch is the aggregate "batch"
        h.ok_append("batch", aggregateType="b")
        check(h.versions("batch") == [1], "GET /events/batch reads the aggregate batch")


def test_too_large_bodies_and_rate_limits_use_the_envelope():
    with Server(extra=["--max-body-bytes", "2048", "--dialect-rate", "hapnd=5"]) as s:
        h = Hapnd(s)
        # the Hapnd mount takes bodies up to 5 MB and 64 KiB (its uploads) whatever the
        # server's limit: a head announcing more is refused at once, in Hapnd's envelope
        head = (b"POST /hapnd/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\nContent-Length: 6000000\r\n\r\n")
        st, hdrs, raw = split_raw(s.raw(head, read_all=False))
        hapnd_error((st, hdrs, json.loads(raw)), 413, "PAYLOAD_TOO_LARGE")
        for _ in range(10):
            st, hdrs, b = h.get("/events/order_1")
            if st == 429:
                hapnd_error((st, hdrs, b), 429, "RATE_LIMITED")
                check(int(hdrs.get("retry-after", "0")) >= 1, f"{hdrs}")
                break
        else:
            check(False, "no 429 after 10 requests at 5 per second")
