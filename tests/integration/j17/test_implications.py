"""j17 implications over the real server (docs/dialects/j17.md "Implications"): emit with
JSONPath ids and data written with the trigger, conditions, map over an array, chaining,
pipelines, all or nothing when an implied event is refused, implied_count in batches, the
implied_by metadata, and the depth limit."""
from j17_client import (ACTOR, ALICE, BOB, J17, O1, P1, P2, U1, U2, U3, dev_server, j17_error,
                        sample_spec, stream_seq)
from harness import Server, check, wait_until

ITEMS = [{"product_id": P1, "qty": 2}, {"product_id": P2, "qty": 3}]


def test_emit_writes_the_implied_event_with_the_trigger():
    s, j = dev_server()
    with s:
        b = j.ok_write("order", O1, "was_placed", {"items": [], "total": 250})
        check(b.get("implied_count") == 1, f"the big-order notice only: {b}")
        user = j.ok_state("user", ALICE)
        check(user["data"] == {"big_orders": [O1]} and user["metadata"]["length"] == 1,
              f"id from $.metadata.actor.id, data from $.id: {user}")
        ev = j.events("user", ALICE)["events"][0]
        check(ev["type"] == "had_big_order" and ev["data"] == {"order_id": O1, "total": 250},
              f"{ev}")
        md = ev["metadata"]
        check(md.get("actor") == ACTOR["actor"], f"the trigger's metadata: {md}")
        check(md.get("implied_by") == {"key": f"order:{O1}", "event_type": "was_placed"},
              f"implied_by: {md}")
        # the trigger's own event does not carry implied_by
        check("implied_by" not in j.events("order", O1)["events"][0]["metadata"], "trigger")
        # both in one commit: same ms in their stream ids
        check(stream_seq(ev["stream_id"])[0] == stream_seq(b["stream_id"])[0],
              f"{ev['stream_id']} vs {b['stream_id']}")


def test_condition_false_implies_nothing():
    s, j = dev_server()
    with s:
        b = j.ok_write("order", O1, "was_placed", {"items": [], "total": 100})
        check("implied_count" not in b, f"total 100 is not > 100: {b}")
        j17_error(j.get(f"/user/{ALICE}"), 404, "Aggregate not found")
        # another actor's big order goes to that actor
        b = j.ok_write("order", U1, "was_placed", {"items": [], "total": 101},
                       metadata={"actor": {"type": "user", "id": BOB}})
        check(b.get("implied_count") == 1, f"{b}")
        check(j.length("user", BOB) == 1 and j.length("user", ALICE) == 0, "per actor")


def test_map_implies_one_event_per_element_and_chains():
    s, j = dev_server()
    with s:
        items = ITEMS + [{"product_id": P1, "qty": 1}]
        b = j.ok_write("order", O1, "was_placed", {"items": items, "total": 20})
        check(b.get("implied_count") == 6, f"3 reservations + 3 ledger entries: {b}")
        p1 = j.ok_state("product", P1)
        check(p1["data"] == {"reserved": 3, "orders": [O1, O1]} and
              p1["metadata"]["length"] == 2, f"{p1}")
        p2 = j.ok_state("product", P2)
        check(p2["data"] == {"reserved": 3, "orders": [O1]}, f"{p2}")
        ledger = j.ok_state("ledger", "global")
        check(ledger["data"]["count"] == 3, f"chained: {ledger}")
        check(ledger["data"]["entries"] == [{"product": P1, "qty": 2}, {"product": P2, "qty": 3},
                                            {"product": P1, "qty": 1}],
              f"in element order, $.id of the implied product: {ledger}")
        # a chained event is implied by the trigger's key... and by its own parent? either
        # way it carries the trigger's metadata
        le = j.events("ledger", "global")["events"][0]
        check(le["metadata"].get("actor") == ACTOR["actor"], f"{le}")
        check(isinstance(le["metadata"].get("implied_by"), dict), f"{le}")
        # an empty array implies nothing
        b = j.ok_write("order", U1, "was_placed", {"items": [], "total": 1})
        check("implied_count" not in b, f"{b}")


def test_refused_implied_event_refuses_the_trigger_and_writes_nothing():
    s, j = dev_server()
    with s:
        items = [{"product_id": P1, "qty": 2}, {"product_id": P2, "qty": 0}]
        st, _, b = j.write("order", O1, "was_placed", {"items": items, "total": 500})
        check(400 <= st < 500, f"refused: {st} {b}")
        check(isinstance(b, dict) and b.get("ok") is False and b.get("error"), f"{b}")
        check("was_reserved" in b["error"] or "implications" in b["error"] or
              "implications" in str(b.get("path")), f"names the implication: {b}")
        for agg_type, agg_id in (("order", O1), ("product", P1), ("product", P2),
                                 ("ledger", "global"), ("user", ALICE)):
            check(j.length(agg_type, agg_id) == 0, f"{agg_type}/{agg_id} written")
        # an implied id that is not an identifier refuses it too
        st, _, b = j.write("order", O1, "was_placed",
                           {"items": [{"product_id": "not-an-id", "qty": 1}], "total": 1})
        check(400 <= st < 500, f"{st} {b}")
        check(j.length("order", O1) == 0 and j.length("ledger", "global") == 0, "nothing")
        # and the same order with valid items goes through
        b = j.ok_write("order", O1, "was_placed", {"items": ITEMS, "total": 500})
        check(b.get("implied_count") == 5, f"{b}")


def test_implied_count_in_a_batch():
    s, j = dev_server()
    with s:
        st, _, b = j.batch("order", O1, [
            {"type": "was_placed", "data": {"items": ITEMS, "total": 10}},
            {"type": "was_shipped", "data": {}},
            {"type": "was_placed", "data": {"items": ITEMS[:1], "total": 1000}},
        ])
        check(st == 201, f"{st} {b}")
        check(b.get("count") == 3 and len(b["stream_ids"]) == 3, f"{b}")
        check(b.get("implied_count") == 4 + 2 + 1, f"{b}")
        check([stream_seq(i)[1] for i in b["stream_ids"]] == [0, 1, 2],
              f"the aggregate's own events come first: {b}")
        check(j.length("product", P1) == 2 and j.length("ledger", "global") == 3 and
              j.length("user", ALICE) == 1, "all implied events written")
        # implied_by of a batch's implied event names the event of the batch that implied it
        ib = j.events("user", ALICE)["events"][0]["metadata"].get("implied_by")
        check(ib is not None and ib.get("key") == f"order:{O1}" and ib.get("event_type"),
              f"implied_by of a batch: {ib}")


def pipeline_spec():
    ev = lambda handler, imps=None: dict(  # noqa: E731
        {"schema": {"type": "object"}, "handler": handler},
        **({"implications": imps} if imps else {}))
    count = [{"increment": {"target": "n"}}, {"append": {"target": "seen", "value": "$.data"}}]
    return {
        "aggregate_types": {
            "step": {"events": {
                "was_started": ev(count, [{"pipeline": [
                    {"emit": {"aggregate_type": "step", "id": "$.data.next",
                              "event_type": "was_reached", "data": {"from": "$.id",
                                                                    "next": "$.data.after"}}},
                    {"condition": {"exists": "$.data.next"},
                     "emit": {"aggregate_type": "step", "id": "$.data.next",
                              "event_type": "was_reached", "data": {"from": "$.id"}}},
                ]}]),
                "was_reached": ev(count),
                "did_loop": ev(count, [{"emit": {"aggregate_type": "step", "id": "$.id",
                                                 "event_type": "did_loop", "data": {}}}]),
            }},
        },
        "agent_types": ["user"],
    }


def test_pipeline_steps_read_the_previous_event():
    s, j = dev_server(spec=pipeline_spec())
    with s:
        b = j.ok_write("step", U1, "was_started", {"next": U2, "after": U3})
        check(b.get("implied_count") == 2, f"{b}")
        check(j.ok_state("step", U2)["data"]["seen"] == [{"from": U1, "next": U3}], "step 0")
        check(j.ok_state("step", U3)["data"]["seen"] == [{"from": U2}],
              "step 1 reads the event of step 0 as $")
        # a step that implies nothing ends the pipeline
        b = j.ok_write("step", O1, "was_started", {"next": P1})
        check(b.get("implied_count") == 1, f"{b}")


def test_chain_deeper_than_the_limit_is_refused():
    s, j = dev_server(spec=pipeline_spec())
    with s:
        st, _, b = j.write("step", U1, "did_loop", {})
        check(400 <= st < 500 and isinstance(b, dict) and b.get("ok") is False,
              f"an endless chain is refused: {st} {b}")
        check(j.length("step", U1) == 0, "nothing written")


def schedule_spec():
    """Placing an order schedules a reminder 2 s later (the server started with
    --j17-schedule-min-ms 1000), cancelled by the order's shipping."""
    from j17_client import sample_spec
    spec = sample_spec()
    spec["aggregate_types"]["order"]["events"]["had_reminder"] = {
        "schema": {"type": "object", "properties": {"total": {"type": "number"}},
                   "required": ["total"]},
        "handler": {"increment": {"target": "reminders"}}}
    spec["aggregate_types"]["order"]["events"]["was_placed"]["implications"].append(
        {"schedule": {"delay": "2s",
                      "emit": {"aggregate_type": "order", "id": "$.id",
                               "event_type": "had_reminder",
                               "data": {"total": "$.data.total"}},
                      "cancel_on": [{"aggregate_type": "order", "id": "$.id",
                                     "event_type": "was_shipped"}]}})
    return spec


def test_scheduled_implication_fires_later_unless_cancelled():
    s, j = dev_server(extra=["--j17-schedule-min-ms", "1000"], spec=schedule_spec())
    with s:
        j.ok_write("order", O1, "was_placed", {"items": [], "total": 7})
        j.ok_write("order", U1, "was_placed", {"items": [], "total": 8})
        check(j.length("order", O1) == 1, "the scheduled event is not written with the trigger")
        j.ok_write("order", U1, "was_shipped", {})
        check(wait_until(lambda: j.length("order", O1) == 2, timeout=20),
              f"the reminder came: {j.events('order', O1)}\n{s.log()[-1500:]}")
        evs = j.events("order", O1)["events"]
        check(evs[1]["type"] == "had_reminder" and evs[1]["data"] == {"total": 7}, f"{evs}")
        check(evs[1]["metadata"].get("actor") == ACTOR["actor"], f"trigger's metadata: {evs}")
        check(j.ok_state("order", O1)["data"].get("reminders") == 1, "handler ran")
        # U1's was cancelled by its shipping: give its timer (due at the same time) a moment
        wait_until(lambda: False, timeout=1.5)
        check([e["type"] for e in j.events("order", U1)["events"]] ==
              ["was_placed", "was_shipped"], f"cancelled: {j.events('order', U1)}")
        # and it fires once only, restarts included
        s.restart()
        wait_until(lambda: False, timeout=2.5)
        check(j.length("order", O1) == 2 and j.length("order", U1) == 2, "once")


def test_implied_event_type_resolved_at_run_time_must_exist():
    ev = {"schema": {"type": "object"}, "handler": []}
    spec = {"aggregate_types": {"task": {"events": {
        "was_routed": dict(ev, implications=[{"emit": {
            "aggregate_type": "task", "id": "$.id", "event_type": "$.data.next"}}]),
        "was_done": ev}}}, "agent_types": ["user"]}
    s, j = dev_server(spec=spec)
    with s:
        b = j.ok_write("task", U1, "was_routed", {"next": "was_done"})
        check(b.get("implied_count") == 1, f"{b}")
        evs = j.events("task", U1)["events"]
        check([e["type"] for e in evs] == ["was_routed", "was_done"],
              f"implied events of the same aggregate follow the trigger's: {evs}")
        st, _, b = j.write("task", U2, "was_routed", {"next": "was_lost"})
        check(400 <= st < 500, f"{st} {b}")
        check(j.length("task", U2) == 0, "nothing written")


def test_a_spec_deployed_under_a_lower_minimum_loads_after_a_restart_without_it():
    spec = sample_spec()
    spec["aggregate_types"]["order"]["events"]["was_placed"].setdefault("implications", []).append(
        {"schedule": {"delay": "2s", "emit": {"aggregate_type": "order", "id": "$.id",
                                               "event_type": "was_shipped", "data": {}}}})
    s = Server(extra=["--j17-schedule-min-ms", "1000"])
    with s:
        J17(s).ok_deploy(spec)
        s.stop()
        s.start(extra=[])  # the default 5-minute minimum from now on
        st, _, b = J17(s).get(f"/order/{O1}")
        check(st == 404 and b.get("error") == "Aggregate not found",
              f"the spec in force still loads (not a 500): {st} {b}")
