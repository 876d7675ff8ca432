"""j17 spec deploys over the real server (docs/dialects/j17.md "Admin API" and "Specs"):
POST /api/instances/{id}/spec wrapped and raw, 422 with every problem named by its path,
compatibility checks and `force` (refused on prod), GET of the spec in force, and a redeploy
that changes what the aggregates' state is."""
import copy

from j17_client import (ACTOR, ALICE, J17, U1, U2, dev_server, j17_error, sample_spec)
from harness import Server, check


def test_deploy_answers_200_and_get_shows_the_spec():
    with Server() as s:
        j = J17(s)
        j17_error(j.get("/api/instances/default/spec"), 404)
        spec = sample_spec()
        st, hdrs, b = j.deploy(spec)
        check(st == 200, f"{st} {b}")
        check(hdrs.get("content-type", "").startswith("application/json"), f"{hdrs}")
        check(b.get("ok") is True and b.get("environment") == "prod", f"{b}")
        check(isinstance(b.get("version"), int) and b["version"] >= 1, f"version: {b}")
        check("aggregate_types" in b, f"aggregate_types: {b}")
        v1 = b["version"]
        st, _, got = j.get("/api/instances/default/spec")
        check(st == 200 and got.get("ok") is True, f"{st} {got}")
        check(got.get("environment") == "prod", f"{got}")
        check(got.get("spec") == spec, f"the spec in force is the one sent: {got}")
        # it is in force: a write of one of its events works
        j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
        # the raw (older) form deploys to prod too, as a new version
        spec2 = sample_spec()
        spec2["aggregate_types"]["invoice"] = {"events": {"was_issued": {
            "schema": {"type": "object"}, "handler": {"set": {"target": "", "value": "$.data"}}}}}
        st, _, b = j.deploy(spec2, raw=True)
        check(st == 200 and b.get("environment") == "prod", f"raw: {st} {b}")
        check(b["version"] > v1, f"a new version: {b} after {v1}")
        st, _, got = j.get("/api/instances/default/spec")
        check(st == 200 and got.get("spec") == spec2, f"{st} {got}")
        j.ok_write("invoice", U2, "was_issued", {"n": 1})
        # earlier data is still there
        check(j.length("user", U1) == 1, "user kept")


def test_get_spec_takes_an_environment():
    with Server() as s:
        j = J17(s)
        spec = sample_spec()
        staging = sample_spec()
        del staging["aggregate_types"]["ledger"]
        staging["aggregate_types"]["product"]["events"]["was_reserved"]["implications"] = []
        j.ok_deploy(spec)
        j.ok_deploy(staging, environment="staging")
        st, _, got = j.get("/api/instances/default/spec?environment=staging")
        check(st == 200 and got.get("environment") == "staging" and got.get("spec") == staging,
              f"GET ?environment=staging: {st} {got}")
        st, _, got = j.get("/api/instances/default/spec?environment=prod")
        check(st == 200 and got.get("spec") == spec, f"GET ?environment=prod: {st} {got}")
        j17_error(j.get("/api/instances/default/spec?environment=test"), 404)


def test_environments_have_their_own_spec_and_data():
    with Server() as s:
        prod, staging, test = J17(s), J17(s, "staging"), J17(s, "test")
        st, _, b = staging.deploy(sample_spec(), environment="staging")
        check(st == 200 and b.get("environment") == "staging", f"{st} {b}")
        # nothing deployed to prod or test yet: their types are unknown
        j17_error(prod.write("user", U1, "was_created", {"email": "a@example.com"}), 404,
                  "Aggregate type not in spec")
        staging.ok_write("user", U1, "was_created", {"email": "a@example.com"})
        prod.ok_deploy(sample_spec())
        j17_error(prod.get(f"/user/{U1}"), 404, "Aggregate not found")
        check(staging.length("user", U1) == 1 and prod.length("user", U1) == 0, "isolated")
        # test has had no deploy (and so no database yet): 404, its database does not exist
        st, _, b = test.write("user", U1, "was_created", {"email": "a@example.com"})
        check(st == 404 and b.get("ok") is False, f"{st} {b}")


def bad_spec():
    """A spec with seven problems at once."""
    spec = sample_spec()
    ev = spec["aggregate_types"]["user"]["events"]
    ev["was_created"]["schema"]["properties"]["email"]["type"] = 17
    ev["had_tag_added"]["handler"] = [{"frobnicate": {"target": "tags"}}]
    spec["colour"] = "blue"
    del spec["agent_types"]
    order = spec["aggregate_types"]["order"]["events"]["was_placed"]
    order["implications"].append({"wasm": {"module": "abc", "function": "run"}})
    order["implications"].append({"schedule": {"delay": "2m", "emit": {
        "aggregate_type": "order", "id": "$.id", "event_type": "was_shipped"}}})
    spec["modules"]["cache"] = ["user", "warehouse"]
    return spec


def test_invalid_spec_is_422_with_every_problem():
    with Server() as s:
        j = J17(s)
        b = j17_error(j.deploy(bad_spec()), 422, "Spec validation failed")
        errs = b.get("errors")
        check(isinstance(errs, list) and errs, f"errors[]: {b}")
        for e in errs:
            check(isinstance(e.get("path"), str) and isinstance(e.get("message"), str)
                  and e["message"], f"each error has a path and a message: {e}")
        paths = [e["path"] for e in errs]

        def has(prefix, what):
            check(any(p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "[")
                      for p in paths), f"{what}: no error at {prefix}: {errs}")

        has("aggregate_types.user.events.was_created.schema", "bad schema")
        has("aggregate_types.user.events.had_tag_added.handler", "bad handler op")
        has("colour", "unknown top-level member")
        has("agent_types", "missing agent_types")
        has("aggregate_types.order.events.was_placed.implications[2]", "wasm implication")
        has("modules.cache", "cache naming an unknown type")
        # nothing was deployed
        j17_error(j.get("/api/instances/default/spec"), 404)
        # the raw form reports them the same way
        b = j17_error(j.deploy(bad_spec(), raw=True), 422, "Spec validation failed")
        check(len(b.get("errors", [])) == len(errs), f"raw: {b}")
        has("aggregate_types.order.events.was_placed.implications[3]", "schedule delay < 5 min")
        check(len(errs) >= 7, f"seven problems: {errs}")


def test_schedule_of_five_minutes_is_accepted():
    with Server() as s:
        j = J17(s)
        spec = sample_spec()
        spec["aggregate_types"]["order"]["events"]["was_placed"]["implications"].append(
            {"schedule": {"delay": "5m", "emit": {"aggregate_type": "order", "id": "$.id",
                                                   "event_type": "was_shipped"}}})
        st, _, b = j.deploy(spec)
        check(st == 200, f"5m is the minimum, allowed: {st} {b}")
        spec["aggregate_types"]["order"]["events"]["was_placed"]["implications"][-1][
            "schedule"]["delay"] = "299s"
        b = j17_error(j.deploy(spec), 422)
        check(any("implications[2]" in e["path"] for e in b["errors"]), f"{b}")


def incompatible_specs():
    """(what, spec) pairs that are incompatible with sample_spec()."""
    removed = sample_spec()
    del removed["aggregate_types"]["user"]["events"]["was_noted"]
    required = sample_spec()
    required["aggregate_types"]["user"]["events"]["was_created"]["schema"]["required"].append(
        "name")
    return [("required field added", required,
             "aggregate_types.user.events.was_created.schema.required"),
            ("event type removed", removed, "aggregate_types.user.events.was_noted")]


def test_incompatible_change_needs_force_and_force_is_not_for_prod():
    with Server() as s:
        prod, staging = J17(s), J17(s, "staging")
        prod.ok_deploy(sample_spec())
        staging.ok_deploy(sample_spec(), environment="staging")
        for what, spec, path in incompatible_specs():
            b = j17_error(prod.deploy(spec), 422)
            check(any(e["path"] == path for e in b.get("errors", [])),
                  f"{what}: the problem names {path}: {b}")
            j17_error(prod.deploy(spec, force=True), 422)
            b = j17_error(staging.deploy(spec, environment="staging"), 422)
            check(any(e["path"] == path for e in b.get("errors", [])), f"{what}: {b}")
        # prod still runs the first spec
        st, _, got = prod.get("/api/instances/default/spec")
        check(st == 200 and got["spec"] == sample_spec(), f"prod unchanged: {got}")
        prod.ok_write("user", U1, "was_noted", {})
        # staging takes them with force (the last one removes was_noted)
        for what, spec, _ in incompatible_specs():
            st, _, b = staging.deploy(spec, environment="staging", force=True)
            check(st == 200 and b.get("environment") == "staging", f"{what} forced: {st} {b}")
        j17_error(staging.write("user", U1, "was_noted", {}), 404, "Event type not in spec")
        # the compatible additions need no force
        more = sample_spec()
        more["aggregate_types"]["user"]["events"]["was_created"]["schema"]["properties"][
            "nick"] = {"type": "string"}
        more["aggregate_types"]["coupon"] = {"events": {"was_issued": {
            "schema": {"type": "object"}, "handler": []}}}
        prod.ok_deploy(more)


def test_removing_an_aggregate_type_or_property_is_incompatible():
    with Server() as s:
        j = J17(s)
        spec = sample_spec()
        j.ok_deploy(spec)
        gone = sample_spec()
        del gone["aggregate_types"]["settings"]
        b = j17_error(j.deploy(gone), 422)
        check(any(e["path"] == "aggregate_types.settings" for e in b["errors"]), f"{b}")
        prop = sample_spec()
        del prop["aggregate_types"]["user"]["events"]["was_created"]["schema"]["properties"][
            "name"]
        b = j17_error(j.deploy(prop), 422)
        check(any(e["path"].endswith("schema.properties.name") for e in b["errors"]), f"{b}")
        typed = sample_spec()
        typed["aggregate_types"]["user"]["events"]["was_created"]["schema"]["properties"][
            "name"]["type"] = "integer"
        b = j17_error(j.deploy(typed), 422)
        check(any(e["path"].endswith("schema.properties.name.type") for e in b["errors"]),
              f"{b}")


def test_redeploy_with_a_changed_handler_changes_the_state():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", {"email": "a@example.com", "name": "Ann"})
        j.ok_write("user", U1, "did_log_in", {"method": "sso"})
        before = j.ok_state("user", U1)
        check(before["data"].get("email") == "a@example.com" and before["data"]["logins"] == 1,
              f"{before}")
        spec = sample_spec()
        ev = spec["aggregate_types"]["user"]["events"]
        ev["was_created"]["handler"] = [{"set": {"target": "profile", "value": "$.data"}}]
        ev["did_log_in"]["handler"] = [{"increment": {"target": "logins", "by": 10}}]
        j.ok_deploy(spec)
        after = j.ok_state("user", U1)
        check(after["data"] == {"profile": {"email": "a@example.com", "name": "Ann"},
                                "logins": 10},
              f"the state is recomputed with the new handlers (user is cached): {after}")
        check(after["metadata"]["length"] == 2, f"{after}")
        sync = j.ok_state("user", U1, "?synchronous=true")
        check(sync["data"] == after["data"], f"{sync}")
        # and new events go through the new handler too
        j.ok_write("user", U1, "did_log_in", {})
        check(j.ok_state("user", U1)["data"]["logins"] == 20, "new handler on new events")


def test_spec_needs_aggregate_and_agent_types():
    with Server() as s:
        j = J17(s)
        b = j17_error(j.deploy({}), 422, "Spec validation failed")
        paths = {e["path"] for e in b["errors"]}
        check({"aggregate_types", "agent_types"} <= paths, f"{b}")
        j17_error(j.post("/api/instances/default/spec", "not json",
                         headers={"Content-Type": "application/json"}), 400)
        j17_error(j.deploy(sample_spec(), environment="production"), 400)
        j17_error(j.get("/api/instances/default/spec"), 404)


def test_problems_stop_at_64_with_more():
    with Server() as s:
        j = J17(s)
        spec = sample_spec()
        for i in range(70):
            spec["aggregate_types"]["user"]["events"][f"bad{i}"] = {"schema": {"type": "object"}}
        b = j17_error(j.deploy(spec), 422, "Spec validation failed")
        check(len(b["errors"]) == 64 and b.get("more") is True, f"{len(b['errors'])} {b.get('more')}")
        check(all(e["path"].startswith("aggregate_types.user.events.bad") for e in b["errors"]),
              f"{b['errors'][:3]}")


def test_sagas_projections_and_listeners_are_checked_at_deploy():
    with Server(extra=["--webhook-allow", "127.0.0.1"]) as s:
        j = J17(s)
        spec = sample_spec()
        spec["modules"]["sagas"] = {"checkout": {
            "trigger": {"aggregate_type": "order", "event_type": "was_lost"},
            "steps": [{"name": "reserve", "emit": {"aggregate_type": "product", "id": "$.id",
                                                    "event_type": "was_reserved"},
                       "await": {"aggregate_type": "product", "event_types": ["was_reserved"]},
                       "timeout_ms": 30000}]}}
        spec["projections"] = [{"name": "order_summary", "for_each": "invoice",
                                "select": {"total": "$.order.total"}}]
        spec["listeners"] = {"crm": {"url": "ftp://crm.example.com/hook", "secret": "x",
                                     "event_types": ["user.was_renamed"]}}
        b = j17_error(j.deploy(spec), 422, "Spec validation failed")
        paths = [e["path"] for e in b["errors"]]
        for prefix in ("modules.sagas.checkout.trigger", "projections", "listeners.crm.url",
                       "listeners.crm.event_types"):
            check(any(p.startswith(prefix) for p in paths), f"{prefix}: {b['errors']}")
        # the good forms deploy
        spec["modules"]["sagas"]["checkout"]["trigger"]["event_type"] = "was_placed"
        spec["projections"][0]["for_each"] = "order"
        spec["projections"][0]["sources"] = {"order": "$key"}
        spec["listeners"]["crm"]["url"] = "http://127.0.0.1:9/hook"
        spec["listeners"]["crm"]["event_types"] = ["user.was_created"]
        st, _, b = j.deploy(spec)
        check(st == 200, f"{st} {b}")


def test_spec_survives_a_restart():
    s, j = dev_server()
    with s:
        j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
        j.ok_write("user", U1, "did_log_in", {"method": "sso"})
        before = j.ok_state("user", U1)
        s.restart()
        check(j.ok_state("user", U1) == before, "the same state after a restart")
        st, _, got = j.get("/api/instances/default/spec")
        check(st == 200 and got["spec"] == sample_spec(), f"{st} {got}")
        j17_error(j.write("user", U2, "was_created", {"email": "nope"}), 400,
                  path="data.email")
        j.ok_write("user", U1, "had_tag_added", {"tag": "t"})
        check(j.ok_state("user", U1)["data"]["tags"] == ["t"], "handlers after a restart")
