"""j17 reads over the real server (docs/dialects/j17.md "Reading" and "Handlers"): the state
answer and its metadata, 404 and 422, singletons before any event, ?synchronous, length, the
events route with start and count, and the state each Tick operation gives."""
import time

from j17_client import (ACTOR, ALICE, J17, O1, P1, U1, U2, dev_server, j17_error, stream_seq)
from harness import Server, check

EMAIL = {"email": "ann@example.com", "name": "Ann"}


def check_unix_seconds(t, what):
    check(isinstance(t, int) and not isinstance(t, bool), f"{what} {t!r} is not an integer")
    check(abs(t - time.time()) < 86400, f"{what} {t} is not Unix seconds of today")


def test_state_answer_shape():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        j.ok_write("user", U1, "did_log_in", {"method": "password"})
        st, hdrs, b = j.get(f"/user/{U1}")
        check(st == 200, f"{st} {b}")
        check(hdrs.get("content-type", "").startswith("application/json"), f"{hdrs}")
        check(set(b) == {"ok", "data", "metadata"} and b["ok"] is True, f"{b}")
        check(set(b["metadata"]) == {"length", "created_at", "updated_at"}, f"{b}")
        md = b["metadata"]
        check(md["length"] == 2, f"{b}")
        check_unix_seconds(md["created_at"], "created_at")
        check_unix_seconds(md["updated_at"], "updated_at")
        check(md["created_at"] <= md["updated_at"], f"{md}")
        data = b["data"]
        check(data == {"email": "ann@example.com", "name": "Ann", "created_at": md["created_at"],
                       "logins": 1, "last_login": "password"}, f"{data}")
        # metadata.timestamp of the first event is the state's created_at
        first = j.events("user", U1)["events"][0]
        check(first["metadata"]["timestamp"] == md["created_at"], f"{first} vs {md}")


def test_unknown_aggregate_is_404_and_malformed_id_422():
    s, j = dev_server()
    with s:
        j17_error(j.get(f"/user/{U1}"), 404, "Aggregate not found")
        for bad in ("nope", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "ABCDEFGHI", "Global"):
            j17_error(j.get(f"/user/{bad}"), 422)
            j17_error(j.get(f"/user/{bad}/length"), 422)
            j17_error(j.get(f"/user/{bad}/events"), 422)
        j17_error(j.get(f"/account/{U1}"), 404)


def test_singletons_are_200_before_any_event():
    s, j = dev_server()
    with s:
        for agg_id in ("global", "shop_settings"):
            b = j.ok_state("settings", agg_id)
            check(b["ok"] is True and b["data"] == {}, f"{agg_id}: {b}")
            check(b["metadata"]["length"] == 0, f"{agg_id}: {b}")
            check(b["metadata"].get("created_at") is None and
                  b["metadata"].get("updated_at") is None, f"{agg_id}: null times: {b}")
            check(j.length("settings", agg_id) == 0, "length 0")
        j.ok_write("settings", "global", "were_changed", {"a": 1})
        b = j.ok_state("settings", "global")
        check(b["data"] == {"a": 1} and b["metadata"]["length"] == 1, f"{b}")
        check_unix_seconds(b["metadata"]["created_at"], "created_at")


def test_synchronous_gives_the_same_answer():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        plain = j.ok_state("user", U1)
        check(j.ok_state("user", U1, "?synchronous=true") == plain, "true")
        check(j.ok_state("user", U1, "?synchronous=false") == plain, "false")
        # every read is current, cached type or not
        j.ok_write("user", U1, "had_tag_added", {"tag": "t"})
        check(j.ok_state("user", U1)["data"]["tags"] == ["t"], "a cached type is current")
        j.ok_write("order", O1, "was_placed", {"items": [], "total": 1})
        j.ok_write("order", O1, "was_shipped", {})
        check(j.ok_state("order", O1)["data"]["status"] == "shipped", "uncached")
        j17_error(j.get(f"/user/{U1}?synchronous=maybe"), 400)
        j17_error(j.get(f"/user/{U1}?cache=no"), 400)


def test_length_route():
    s, j = dev_server()
    with s:
        st, _, b = j.get(f"/user/{U1}/length")
        check(st == 200 and b == {"ok": True, "length": 0}, f"{st} {b}")
        j.ok_write("user", U1, "was_created", EMAIL)
        j.ok_write("user", U1, "did_log_in", {})
        st, _, b = j.get(f"/user/{U1}/length")
        check(st == 200 and b == {"ok": True, "length": 2}, f"{st} {b}")
        check(j.length("user", U2) == 0, "another aggregate")


def test_events_route():
    s, j = dev_server()
    with s:
        ids = [j.ok_write("user", U1, "was_created", EMAIL)["stream_id"]]
        for i in range(4):
            ids.append(j.ok_write("user", U1, "had_tag_added", {"tag": f"t{i}"})["stream_id"])
        b = j.events("user", U1)
        check(b.get("ok") is True and b.get("count") == 5, f"{b}")
        evs = b["events"]
        check([e["stream_id"] for e in evs] == ids, f"oldest first: {evs}")
        for e in evs:
            check({"stream_id", "key", "type", "data", "metadata"} <= set(e), f"{e}")
            check(e["key"] == f"user:{U1}", f"{e}")
            check(e["metadata"].get("actor") == {"type": "user", "id": ALICE}, f"{e}")
            check_unix_seconds(e["metadata"].get("timestamp"), "metadata.timestamp")
        check(evs[0]["type"] == "was_created" and evs[0]["data"] == EMAIL, f"{evs[0]}")
        check([e["data"]["tag"] for e in evs[1:]] == ["t0", "t1", "t2", "t3"], f"{evs}")
        # start is exclusive
        after = j.events("user", U1, f"?start={ids[1]}")
        check([e["stream_id"] for e in after["events"]] == ids[2:] and after["count"] == 3,
              f"after {ids[1]}: {after}")
        check(j.events("user", U1, f"?start={ids[4]}")["events"] == [], "after the last")
        for zero in ("0", "0-0"):
            got = j.events("user", U1, f"?start={zero}")["events"]
            check([e["stream_id"] for e in got] == ids, f"start={zero}: {got}")
        # "0-1" is an id like any other: after seq 1 (not "from the first")
        got = j.events("user", U1, "?start=0-1")["events"]
        check([e["stream_id"] for e in got] == ids[2:], f"start=0-1: {got}")
        # count
        two = j.events("user", U1, "?count=2")
        check([e["stream_id"] for e in two["events"]] == ids[:2] and two["count"] == 2,
              f"{two}")
        page = j.events("user", U1, f"?start={ids[0]}&count=2")
        check([e["stream_id"] for e in page["events"]] == ids[1:3], f"{page}")
        for bad in ("0", "1001", "x", "-1"):
            j17_error(j.get(f"/user/{U1}/events?count={bad}"), 400)
        # an aggregate without events has none
        st, _, b = j.get(f"/user/{U2}/events")
        check(st in (200, 404), f"{st} {b}")
        if st == 200:
            check(b["events"] == [] and b["count"] == 0, f"{b}")


def test_events_count_defaults_to_100():
    s, j = dev_server()
    with s:
        for n in range(3):
            st, _, b = j.batch("user", U1, [{"type": "had_tag_added", "data": {"tag": f"{n}-{i}"}}
                                            for i in range(40)])
            check(st == 201, f"{st} {b}")
        check(j.length("user", U1) == 120, "120 events")
        b = j.events("user", U1)
        check(len(b["events"]) == 100 and b["count"] == 100, f"default 100: {b['count']}")
        last = b["events"][-1]["stream_id"]
        check(stream_seq(last)[1] == 99, f"{last}")
        rest = j.events("user", U1, f"?start={last}")
        check(len(rest["events"]) == 20, f"{rest['count']}")
        check(rest["events"][0]["data"]["tag"] == "2-20", f"{rest['events'][0]}")
        check(len(j.events("user", U1, "?count=1000")["events"]) == 120, "count=1000")


def handler_spec():
    """A spec whose events each exercise Tick operations (docs/dialects/j17.md, Handlers)."""
    ev = lambda handler: {"schema": {"type": "object"}, "handler": handler}  # noqa: E731
    return {
        "aggregate_types": {"box": {"events": {
            "was_made": ev([
                {"set": {"target": "", "value": "$.data"}},
                {"set": {"target": "who", "value": {"key": "$.key", "id": "$.id",
                                                    "type": "$.type",
                                                    "actor": "$.metadata.actor.id"}}},
                {"set_default": {"target": "count", "value": 0}},
                {"set_default": {"target": "label", "value": "unset"}},
                {"set": {"target": "price", "value": "$5.00"}},
                {"set": {"target": "profile.name", "value": "$.data.name"}},
            ]),
            "was_merged": ev({"merge": {"target": "", "value": "$.data"}}),
            "was_counted": ev([{"increment": {"target": "count"}},
                               {"increment": {"target": "total", "by": "$.data.n"}},
                               {"decrement": {"target": "stock", "by": 2}},
                               {"min": {"target": "low", "value": "$.data.n"}},
                               {"max": {"target": "high", "value": "$.data.n"}}]),
            "was_toggled": ev({"toggle": {"target": "archived"}}),
            "had_item": ev([{"append": {"target": "items", "value": "$.data"}},
                            {"prepend": {"target": "history", "value": "$.type"}},
                            {"append_unique": {"target": "tags", "value": "$.data.tag"}},
                            {"set": {"target": "last_sku", "value": "@.items[-1].sku"}}]),
            "had_items": ev({"concat": {"target": "items", "value": "$.data.items"}}),
            "lost_tag": ev({"remove": {"target": "tags", "value": "$.data.tag"}}),
            "lost_item": ev({"remove_where": {"target": "items",
                                              "where": {"sku": "$.data.sku"}}}),
            "had_qty": ev({"update_where": {"target": "items", "where": {"sku": "$.data.sku"},
                                            "set": {"qty": "$.data.qty"}}}),
            "was_cleared": ev([{"unset": {"target": "label"}},
                               {"unset": {"target": "nothing_here"}}]),
            "was_judged": ev([
                {"if": {"and": [{"exists": "$.data.score"}, {"gte": ["$.data.score", 50]}]},
                 "then": [{"set": {"target": "grade", "value": "pass"}}],
                 "else": {"set": {"target": "grade", "value": "fail"}}},
                {"if": {"in": ["$.data.role", ["admin", "owner"]]},
                 "then": [{"set": {"target": "staff", "value": True}}]},
                {"if": {"not": {"equals": ["@.grade", "pass"]}},
                 "then": [{"increment": {"target": "fails"}}]},
            ]),
            "was_audited": ev([]),
        }}},
        "agent_types": ["user"],
    }


def test_handlers_produce_the_documented_state():
    s, j = dev_server(spec=handler_spec())
    with s:
        w = lambda et, data: j.ok_write("box", U1, et, data)  # noqa: E731
        w("was_made", {"name": "Box", "color": "red"})
        st = j.ok_state("box", U1)["data"]
        check(st == {"name": "Box", "color": "red",
                     "who": {"key": f"box:{U1}", "id": U1, "type": "was_made", "actor": ALICE},
                     "count": 0, "label": "unset", "price": "$5.00",
                     "profile": {"name": "Box"}}, f"set, set_default, templates: {st}")
        w("was_merged", {"color": "blue", "size": 3})
        st = j.ok_state("box", U1)["data"]
        check(st["color"] == "blue" and st["size"] == 3 and st["name"] == "Box", f"merge: {st}")
        w("was_counted", {"n": 5})
        w("was_counted", {"n": 2})
        st = j.ok_state("box", U1)["data"]
        check((st["count"], st["total"], st["stock"], st["low"], st["high"]) == (2, 7, -4, 2, 5),
              f"increment, decrement, min, max: {st}")
        w("was_toggled", {})
        check(j.ok_state("box", U1)["data"]["archived"] is True, "toggle of missing: true")
        w("was_toggled", {})
        check(j.ok_state("box", U1)["data"]["archived"] is False, "toggle")
        w("had_item", {"sku": "a", "qty": 1, "tag": "x"})
        w("had_item", {"sku": "b", "qty": 2, "tag": "x"})
        w("had_items", {"items": [{"sku": "c", "qty": 3}, {"sku": "d", "qty": 4}]})
        st = j.ok_state("box", U1)["data"]
        check([i["sku"] for i in st["items"]] == ["a", "b", "c", "d"], f"append/concat: {st}")
        check(st["history"] == ["had_item", "had_item"], f"prepend: {st}")
        check(st["tags"] == ["x"], f"append_unique: {st}")
        check(st["last_sku"] == "b", f"@.items[-1]: {st}")
        w("lost_item", {"sku": "b"})
        w("had_qty", {"sku": "c", "qty": 30})
        w("lost_tag", {"tag": "x"})
        st = j.ok_state("box", U1)["data"]
        check(st["items"] == [{"sku": "a", "qty": 1, "tag": "x"}, {"sku": "c", "qty": 30},
                              {"sku": "d", "qty": 4}], f"remove_where, update_where: {st}")
        check(st["tags"] == [], f"remove: {st}")
        w("was_cleared", {})
        check("label" not in j.ok_state("box", U1)["data"], "unset")
        w("was_judged", {"score": 70, "role": "owner"})
        st = j.ok_state("box", U1)["data"]
        check(st["grade"] == "pass" and st["staff"] is True and "fails" not in st,
              f"if/then: {st}")
        w("was_judged", {"score": 10, "role": "guest"})
        st = j.ok_state("box", U1)["data"]
        check(st["grade"] == "fail" and st["fails"] == 1, f"if/else, @ reads this state: {st}")
        w("was_judged", {})
        check(j.ok_state("box", U1)["data"]["fails"] == 2, "exists is false for a missing path")
        before = j.ok_state("box", U1)
        w("was_audited", {"anything": 1})
        after = j.ok_state("box", U1)
        check(after["data"] == before["data"] and
              after["metadata"]["length"] == before["metadata"]["length"] + 1,
              f"[] changes nothing: {after}")


def test_sample_handlers_set_merge_append_increment_if():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        j.ok_write("user", U1, "had_email_updated", {"email": "new@example.com"})
        j.ok_write("user", U1, "had_tag_added", {"tag": "a"})
        j.ok_write("user", U1, "had_tag_added", {"tag": "a"})
        j.ok_write("user", U1, "did_log_in", {"method": "sso"})
        st = j.ok_state("user", U1)["data"]
        check(st["email"] == "new@example.com" and st["name"] == "Ann", f"merge: {st}")
        check(st["tags"] == ["a", "a"], f"append: {st}")
        check(st["logins"] == 1 and st["last_login"] == "sso", f"increment, if/then: {st}")
        j.ok_write("user", U1, "did_log_in", {})
        st = j.ok_state("user", U1)["data"]
        check(st["logins"] == 2 and st["last_login"] == "password", f"else: {st}")
