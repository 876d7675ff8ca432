"""j17 writes over the real server (seed 000, docs/dialects/j17.md "Writing" and
"Identifiers"): the 201 and its stream ids, content type, unknown types, schema failures with
their path, actor and target checks, identifiers and their canonical form, singletons, OCC
with previous_length and skip_occ, and batches (one aggregate, all or nothing)."""
from j17_client import (ACTOR, ALICE, J17, O1, P1, U1, U2, U3, dev_server, j17_error,
                        stream_seq)
from harness import Server, check

EMAIL = {"email": "ann@example.com", "name": "Ann"}


def test_write_answers_201_with_a_stream_id_per_aggregate_seq():
    s, j = dev_server()
    with s:
        st, hdrs, b = j.write("user", U1, "was_created", EMAIL)
        check(st == 201, f"{st} {b}")
        check(hdrs.get("content-type", "").startswith("application/json"), f"{hdrs}")
        check(set(b) == {"ok", "stream_id"} and b["ok"] is True,
              f"no implied_count when nothing is implied: {b}")
        ids = [b["stream_id"]]
        ids.append(j.ok_write("user", U1, "did_log_in", {"method": "sso"})["stream_id"])
        ids.append(j.ok_write("user", U1, "had_tag_added", {"tag": "vip"})["stream_id"])
        parsed = [stream_seq(i) for i in ids]
        check([p[1] for p in parsed] == [0, 1, 2], f"seq 0, 1, 2: {ids}")
        check(parsed[0][0] <= parsed[1][0] <= parsed[2][0], f"ms never goes back: {ids}")
        # another aggregate counts from 0
        other = j.ok_write("user", U2, "was_created", EMAIL)["stream_id"]
        check(stream_seq(other)[1] == 0, f"{other}")
        # the ids are the ones the events route shows
        got = [e["stream_id"] for e in j.events("user", U1)["events"]]
        check(got == ids, f"{got} vs {ids}")


def test_implied_count_is_there_only_when_not_zero():
    s, j = dev_server()
    with s:
        b = j.ok_write("order", O1, "was_placed",
                       {"items": [{"product_id": P1, "qty": 1}], "total": 10})
        check(b.get("implied_count") == 2, f"a reservation and its ledger entry: {b}")
        b = j.ok_write("order", O1, "was_shipped", {})
        check("implied_count" not in b, f"{b}")


def test_content_type_must_be_json():
    s, j = dev_server()
    with s:
        body = '{"data": {"email": "ann@example.com"}, "metadata": {"actor": {"type": "user", "id": "%s"}}}' % ALICE
        for ct in ("text/plain", "application/x-www-form-urlencoded", None):
            j17_error(j.post(f"/user/{U1}/was_created", body, headers={"Content-Type": ct}), 400)
            j17_error(j.post(f"/user/{U1}", '{"events": []}', headers={"Content-Type": ct}), 400)
        check(j.length("user", U1) == 0, "nothing written")
        st, _, b = j.post(f"/user/{U1}/was_created", body,
                          headers={"Content-Type": "application/json; charset=utf-8"})
        check(st == 201, f"application/json with a charset: {st} {b}")
        j17_error(j.post(f"/user/{U2}/was_created", "{not json",
                         headers={"Content-Type": "application/json"}), 400)
        j17_error(j.post(f"/user/{U2}/was_created", '{"data": {"n": 123456789012345678901234567890}, "metadata": {"actor": {"type": "user", "id": "%s"}}}' % ALICE,
                         headers={"Content-Type": "application/json"}), 400)
        check(j.length("user", U2) == 0, "nothing written")


def test_unknown_types_are_404():
    with Server() as s:
        j = J17(s)
        j17_error(j.write("user", U1, "was_created", EMAIL), 404, "Aggregate type not in spec")
        j.ok_deploy(__import__("j17_client").sample_spec())
        j17_error(j.write("account", U1, "was_created", EMAIL), 404, "Aggregate type not in spec")
        j17_error(j.write("user", U1, "was_deleted", EMAIL), 404, "Event type not in spec")
        j17_error(j.write("user", U1, "was_placed", EMAIL), 404, "Event type not in spec")
        check(j.length("user", U1) == 0, "nothing written")


def test_schema_failure_is_400_with_the_path():
    s, j = dev_server()
    with s:
        b = j17_error(j.write("user", U1, "was_created", {"email": "not-an-email"}), 400,
                      "Event data failed schema validation", "data.email")
        check(set(b) <= {"ok", "error", "path", "detail"}, f"{b}")
        j17_error(j.write("user", U1, "was_created", {"email": 17}), 400,
                  "Event data failed schema validation", "data.email")
        j17_error(j.write("user", U1, "was_created",
                          {"email": "a@example.com", "address": {"zip": "ABCDE"}}), 400,
                  "Event data failed schema validation", "data.address.zip")
        j17_error(j.write("order", O1, "was_placed",
                          {"items": [{"product_id": P1, "qty": 1},
                                     {"product_id": P1, "qty": "two"}], "total": 3}), 400,
                  "Event data failed schema validation", "data.items.1.qty")
        b = j17_error(j.write("user", U1, "was_created", {"name": "no email"}), 400,
                      "Event data failed schema validation")
        check(b.get("path") in ("data", "data.email"), f"a missing required member: {b}")
        # data is required: absent data validates as null against an object schema
        st, _, b = j.post(f"/user/{U1}/was_created", {"metadata": ACTOR})
        j17_error((st, None, b), 400, path="data")
        check(j.length("user", U1) == 0, "nothing written")
        j.ok_write("user", U1, "was_created", {"email": "a@example.com",
                                               "address": {"zip": "12345"}})


def test_actor_is_required_and_checked():
    s, j = dev_server()
    with s:
        j17_error(j.write("user", U1, "was_created", EMAIL, metadata={}), 400)
        b = j17_error(j.post(f"/user/{U1}/was_created", {"data": EMAIL}), 400)
        check(str(b.get("path", "")).startswith("metadata"), f"{b}")
        j17_error(j.write("user", U1, "was_created", EMAIL,
                          metadata={"actor": {"type": "robot", "id": ALICE}}), 400,
                  path="metadata.actor.type")
        j17_error(j.write("user", U1, "was_created", EMAIL,
                          metadata={"actor": {"type": "user", "id": "not an id"}}), 400,
                  path="metadata.actor.id")
        j17_error(j.write("user", U1, "was_created", EMAIL,
                          metadata={"actor": {"type": "user"}}), 400, path="metadata.actor.id")
        check(j.length("user", U1) == 0, "nothing written")
        # system actors with a humane code id are fine
        j.ok_write("user", U1, "was_created", EMAIL,
                   metadata={"actor": {"type": "system", "id": "ABCDEFGH1"}})


def test_target_is_checked_against_target_types():
    s, j = dev_server()
    with s:
        j17_error(j.write("user", U1, "was_created", EMAIL,
                          metadata={"actor": ACTOR["actor"], "target": {"type": "order", "id": O1}}),
                  400, path="metadata.target.type")
        j17_error(j.write("user", U1, "was_created", EMAIL,
                          metadata={"actor": ACTOR["actor"],
                                    "target": {"type": "product", "id": "nope"}}),
                  400, path="metadata.target.id")
        check(j.length("user", U1) == 0, "nothing written")
        j.ok_write("user", U1, "was_created", EMAIL,
                   metadata={"actor": ACTOR["actor"], "target": {"type": "product", "id": P1},
                             "source": "web"})
        md = j.events("user", U1)["events"][0]["metadata"]
        check(md.get("target") == {"type": "product", "id": P1}, f"{md}")
        check(md.get("source") == "web", f"other metadata members are kept: {md}")
        check(md.get("actor") == ACTOR["actor"], f"{md}")


def test_invalid_aggregate_id_is_400():
    s, j = dev_server()
    with s:
        for bad in ("not-an-id", "12345", "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # v1
                    "0f8fad5b-d9cb-469f-c165-70867728950e",  # variant c
                    "ABCDEFGHI", "ABCDEFGH", "ABCDEFGH12", "my_singleton",
                    U1 + ":Upper", U1 + ":" + "x" * 33):
            j17_error(j.write("user", bad, "was_created", EMAIL), 400, path="id")
            j17_error(j.batch("user", bad, [{"type": "was_created", "data": EMAIL}]), 400,
                      path="id")
            j17_error(j.get(f"/user/{bad}"), 422)


def test_uuid_and_humane_ids_are_canonical():
    s, j = dev_server()
    with s:
        upper = U1.upper()
        j.ok_write("user", upper, "was_created", EMAIL)
        j.ok_write("user", U1, "did_log_in", {})
        for agg_id in (U1, upper):
            b = j.ok_state("user", agg_id)
            check(b["metadata"]["length"] == 2, f"GET {agg_id}: one aggregate: {b}")
        check(j.length("user", upper) == 2, "length via upper case")
        keys = {e["key"] for e in j.events("user", upper)["events"]}
        check(keys == {f"user:{U1}"}, f"the key holds the lower-case uuid: {keys}")
        # humane codes: upper case
        j.ok_write("user", "abcdefgh1", "was_created", EMAIL)
        j.ok_write("user", "ABCDEFGH1", "did_log_in", {})
        check(j.length("user", "AbCdEfGh1") == 2, "one aggregate for every case")
        check(j.events("user", "abcdefgh1")["events"][0]["key"] == "user:ABCDEFGH1",
              "the key holds the upper-case code")


def test_tagged_uuid_is_its_own_aggregate():
    s, j = dev_server()
    with s:
        tagged = f"{U1}:2026"
        b = j.ok_write("user", tagged, "was_created", EMAIL)
        check(stream_seq(b["stream_id"])[1] == 0, f"{b}")
        j.ok_write("user", f"{U1.upper()}:2026", "did_log_in", {})
        check(j.length("user", tagged) == 2, "the uuid part is canonical, the tag kept")
        j17_error(j.get(f"/user/{U1}"), 404, "Aggregate not found")
        check(j.events("user", tagged)["events"][0]["key"] == f"user:{U1}:2026", "key")
        j.ok_write("user", f"{U1}:q1-x_2", "was_created", EMAIL)
        check(j.length("user", f"{U1}:q1-x_2") == 1, "tag of [a-z0-9_-]")


def test_global_and_declared_singletons():
    s, j = dev_server()
    with s:
        b = j.ok_write("settings", "global", "were_changed", {"theme": "dark"})
        check(stream_seq(b["stream_id"])[1] == 0, f"{b}")
        j.ok_write("settings", "shop_settings", "were_changed", {"theme": "light"})
        j.ok_write("user", "global", "was_noted", {})
        check(j.ok_state("settings", "global")["data"] == {"theme": "dark"}, "global")
        check(j.ok_state("settings", "shop_settings")["data"] == {"theme": "light"}, "declared")
        # case-sensitive, and an undeclared name is not an id
        j17_error(j.write("settings", "Global", "were_changed", {}), 400, path="id")
        j17_error(j.write("settings", "other_settings", "were_changed", {}), 400, path="id")


def test_occ_with_previous_length():
    s, j = dev_server()
    with s:
        md = lambda n, **kw: dict(ACTOR, previous_length=n, **kw)  # noqa: E731
        j.ok_write("user", U1, "was_created", EMAIL, metadata=md(0))
        j.ok_write("user", U1, "did_log_in", {}, metadata=md(1))
        b = j17_error(j.write("user", U1, "did_log_in", {}, metadata=md(0)), 409)
        check(b["error"] == "Concurrent write detected. Stream has 2 events, expected 0.",
              f"{b}")
        b = j17_error(j.write("user", U1, "did_log_in", {}, metadata=md(5)), 409)
        check(b["error"] == "Concurrent write detected. Stream has 2 events, expected 5.",
              f"{b}")
        check(j.length("user", U1) == 2, "nothing written by a conflict")
        # a new aggregate with previous_length 0
        j.ok_write("user", U2, "was_created", EMAIL, metadata=md(0))
        j17_error(j.write("user", U2, "was_created", EMAIL, metadata=md(0)), 409)
        # skip_occ drops the check
        b = j.ok_write("user", U1, "did_log_in", {}, metadata=md(0, skip_occ=True))
        check(stream_seq(b["stream_id"])[1] == 2, f"{b}")
        check(j.length("user", U1) == 3, "skip_occ wrote")
        # previous_length and skip_occ steer the write, they are not stored
        for e in j.events("user", U1)["events"]:
            check("previous_length" not in e["metadata"] and "skip_occ" not in e["metadata"],
                  f"{e}")
        # without previous_length: no check at all
        j.ok_write("user", U1, "did_log_in", {})
        check(j.ok_state("user", U1)["data"]["logins"] == 3, "state")


def test_batch_writes_every_event_with_shared_metadata():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        st, _, b = j.batch("user", U1, [
            {"type": "did_log_in", "data": {"method": "sso"}},
            {"type": "had_tag_added", "data": {"tag": "a"}},
            {"type": "had_tag_added", "data": {"tag": "b"}},
        ], metadata=dict(ACTOR, source="import"))
        check(st == 201, f"{st} {b}")
        check(b.get("ok") is True and b.get("count") == 3 and "implied_count" not in b,
              f"{b}")
        check(isinstance(b.get("stream_ids"), list) and len(b["stream_ids"]) == 3, f"{b}")
        check([stream_seq(i)[1] for i in b["stream_ids"]] == [1, 2, 3], f"{b}")
        evs = j.events("user", U1)["events"]
        check([e["stream_id"] for e in evs[1:]] == b["stream_ids"], f"{evs}")
        for e in evs[1:]:
            check(e["metadata"].get("actor") == ACTOR["actor"] and
                  e["metadata"].get("source") == "import", f"shared metadata: {e}")
        state = j.ok_state("user", U1)["data"]
        check(state.get("tags") == ["a", "b"] and state.get("logins") == 1, f"{state}")
        # a new aggregate written whole by a batch
        st, _, b = j.batch("user", U2, [{"type": "was_created", "data": EMAIL},
                                        {"type": "was_noted", "data": {}}])
        check(st == 201 and b["count"] == 2, f"{st} {b}")


def test_batch_is_all_or_nothing():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        j17_error(j.batch("user", U1, [
            {"type": "had_email_updated", "data": {"email": "b@example.com"}},
            {"type": "had_email_updated", "data": {"email": "broken"}},
        ]), 400, "Event data failed schema validation", "events[1].data.email")
        j17_error(j.batch("user", U1, [
            {"type": "had_tag_added", "data": {"tag": "x"}},
            {"type": "had_tag_added", "data": {"tag": "y"}},
            {"type": "had_tag_added", "data": {"tag": 3}},
        ]), 400, "Event data failed schema validation", "events[2].data.tag")
        j17_error(j.batch("user", U1, [
            {"type": "had_tag_added", "data": {"tag": "x"}},
            {"type": "was_shipped", "data": {}},
        ]), 404, "Event type not in spec", "events[1].type")
        check(j.length("user", U1) == 1, "nothing written by a refused batch")
        check(j.ok_state("user", U1)["data"]["email"] == "ann@example.com", "state unchanged")
        # a batch whose implied event fails its schema writes nothing either
        j17_error(j.batch("order", O1, [
            {"type": "was_placed", "data": {"items": [{"product_id": P1, "qty": 1}],
                                            "total": 1}},
            {"type": "was_placed", "data": {"items": [{"product_id": P1, "qty": 0}],
                                            "total": 1}},
        ]), 400)
        check(j.length("order", O1) == 0 and j.length("product", P1) == 0 and
              j.length("ledger", "global") == 0, "nothing of the batch or its implications")


def test_batch_has_one_occ_check():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", EMAIL)
        evs = [{"type": "did_log_in", "data": {}}, {"type": "did_log_in", "data": {}}]
        b = j17_error(j.batch("user", U1, evs, metadata=dict(ACTOR, previous_length=0)), 409)
        check(b["error"] == "Concurrent write detected. Stream has 1 events, expected 0.",
              f"{b}")
        check(j.length("user", U1) == 1, "nothing written")
        st, _, b = j.batch("user", U1, evs, metadata=dict(ACTOR, previous_length=1))
        check(st == 201 and b["count"] == 2, f"{st} {b}")
        # the next batch sees 3 events: previous_length 1 is stale now
        j17_error(j.batch("user", U1, evs, metadata=dict(ACTOR, previous_length=1)), 409)
        st, _, b = j.batch("user", U1, evs, metadata=dict(ACTOR, previous_length=3))
        check(st == 201, f"{st} {b}")
        check(j.length("user", U1) == 5, "length")
        # the batch's actor is checked too
        j17_error(j.batch("user", U3, evs, metadata={"actor": {"type": "robot", "id": ALICE}}),
                  400, path="metadata.actor.type")


def test_event_over_max_event_bytes_is_413():
    s, j = dev_server(extra=["--max-event-bytes", "4096"])
    with s:
        j17_error(j.write("user", U1, "was_created",
                          {"email": "a@example.com", "name": "x" * 8000}), 413)
        check(j.length("user", U1) == 0, "nothing written")
        j.ok_write("user", U1, "was_created", {"email": "a@example.com", "name": "x" * 100})


def small_spec():
    """One aggregate type: a deploy of it writes two components (the spec and a reducer)."""
    return {"aggregate_types": {"user": {"events": {"had_tag_added": {
        "schema": {"type": "object"},
        "handler": {"append": {"target": "tags", "value": "$.data.tag"}}}}}},
        "agent_types": ["user"]}


def test_batch_over_max_batch_events_is_refused():
    s, j = dev_server(extra=["--max-batch-events", "3"], spec=small_spec())
    with s:
        evs = [{"type": "had_tag_added", "data": {"tag": str(i)}} for i in range(4)]
        st, _, b = j.batch("user", U1, evs)
        check(400 <= st < 500 and isinstance(b, dict) and b.get("ok") is False, f"{st} {b}")
        check(j.length("user", U1) == 0, "nothing written")
        st, _, b = j.batch("user", U1, evs[:3])
        check(st == 201 and b["count"] == 3, f"{st} {b}")
        check(j.ok_state("user", U1)["data"] == {"tags": ["0", "1", "2"]}, "state")


def test_deploy_is_not_bounded_by_max_batch_events():
    """A spec of five aggregate types is six components; --max-batch-events bounds clients'
    batches, not a deploy (and a deploy never answers 500)."""
    with Server(extra=["--max-batch-events", "3"]) as s:
        j = J17(s)
        st, _, b = j.deploy(__import__("j17_client").sample_spec())
        check(st == 200, f"{st} {b}")
        j.ok_write("order", U1, "was_shipped", {})


def test_data_numbers_are_stored_as_sent():
    s, j = dev_server()
    with s:
        st, _, _ = j.raw("POST", f"/user/{U1}/was_created",
                         b'{"data":{"email":"a@example.com","price":0.1,"n":1e2,"big":12345678901234567890123},'
                         b'"metadata":{"actor":{"type":"user","id":"' + ALICE.encode() + b'"}}}',
                         headers={"Content-Type": "application/json"})
        check(st in (201, 400), f"{st}")
        if st == 400:  # integers past 64 bits are refused by the reader (documented)
            st, _, _ = j.raw("POST", f"/user/{U1}/was_created",
                             b'{"data":{"email":"a@example.com","price":0.1,"n":1e2},'
                             b'"metadata":{"actor":{"type":"user","id":"' + ALICE.encode() +
                             b'"}}}', headers={"Content-Type": "application/json"})
            check(st == 201, f"{st}")
        _, _, raw = j.raw("GET", f"/user/{U1}/events")
        check(b'"price":0.1,' in raw and b'"n":1e2' in raw, f"numbers as sent: {raw!r}")


def test_metadata_members_the_server_sets_are_refused():
    s, j = dev_server()
    with s:
        for member in ("timestamp", "stream_id", "implied_by", "saga"):
            meta = dict(ACTOR)
            meta[member] = 5
            j17_error(j.write("user", U1, "was_created", {"email": "a@example.com"}, meta),
                      400, path=f"metadata.{member}")
        check(j.length("user", U1) == 0, "nothing written")
