"""j17 projections over the real server (docs/dialects/j17.md, "Projections"): GET
/projections/{name}/{id} composes the spec's projection for one aggregate of its for_each type
from the current states of the aggregates its sources and includes name, with $map and
$lookup; it follows every write at once; unknown names and aggregates are 404, malformed ids
422."""
from j17_client import J17, O1, P1, P2, U1, j17_error
from harness import Server, check

SPEC = {
    "agent_types": ["user"],
    "aggregate_types": {
        "customer": {"events": {"was_registered": {
            "schema": {"type": "object", "required": ["name"]},
            "handler": [{"set": {"target": "name", "value": "$.data.name"}}]}}},
        "product": {"events": {"was_listed": {
            "schema": {"type": "object", "required": ["name", "price"]},
            "handler": [{"merge": {"target": "", "value": "$.data"}}]}}},
        "pricing_rules": {"events": {"were_set": {
            "schema": {"type": "object"},
            "handler": [{"set": {"target": "discount", "value": "$.data.discount"}}]}}},
        "order": {"events": {
            "was_placed": {
                "schema": {"type": "object", "required": ["customer_id", "line_items"]},
                "handler": [{"merge": {"target": "", "value": "$.data"}},
                            {"set": {"target": "status", "value": "placed"}}]},
            "was_shipped": {"schema": {"type": "object"},
                            "handler": [{"set": {"target": "status", "value": "shipped"}}]}}},
    },
    "projections": [{
        "name": "order_summary",
        "for_each": "order",
        "sources": {
            "order": "$key",
            "customer": {"type": "customer", "id": "$.order.customer_id"},
            "products": {"type": "product", "id": "$.order.line_items[*].product_id",
                         "mode": "array"},
        },
        "include": {"pricing": "pricing_rules:global"},
        "select": {
            "status": "$.order.status",
            "customer": "$.customer.name",
            "discount": "$.pricing.discount",
            "lines": {"$map": "$.order.line_items", "as": "item",
                      "to": {"qty": "$item.qty",
                             "name": {"$lookup": "$.products",
                                      "where": {"id": "$item.product_id"},
                                      "select": "$match.name"}}},
        },
    }],
}


def test_projection_composes_sources_includes_map_and_lookup():
    with Server() as s:
        j = J17(s)
        j.ok_deploy(SPEC)
        j.ok_write("customer", U1, "was_registered", {"name": "Ann"})
        j.ok_write("product", P1, "was_listed", {"name": "Widget", "price": 5})
        j.ok_write("product", P2, "was_listed", {"name": "Gadget", "price": 7})
        j.ok_write("pricing_rules", "global", "were_set", {"discount": 10})
        j.ok_write("order", O1, "was_placed",
                   {"customer_id": U1, "line_items": [{"product_id": P1, "qty": 2},
                                                     {"product_id": P2, "qty": 1}]})
        st, _, b = j.get(f"/projections/order_summary/{O1}")
        check(st == 200 and b.get("ok") is True, f"{st} {b}")
        check(b["data"] == {"status": "placed", "customer": "Ann", "discount": 10,
                            "lines": [{"qty": 2, "name": "Widget"},
                                      {"qty": 1, "name": "Gadget"}]}, f"{b}")
        check(b["metadata"] == {"projection": "order_summary", "id": O1}, f"{b}")
        # it follows every write at once: a source's and the for_each aggregate's
        j.ok_write("customer", U1, "was_registered", {"name": "Annabel"})
        j.ok_write("order", O1, "was_shipped", {})
        b = j.get(f"/projections/order_summary/{O1}")[2]
        check(b["data"]["customer"] == "Annabel" and b["data"]["status"] == "shipped", f"{b}")


def test_missing_sources_read_as_null_and_errors():
    with Server() as s:
        j = J17(s)
        j.ok_deploy(SPEC)
        j.ok_write("order", O1, "was_placed",
                   {"customer_id": U1, "line_items": [{"product_id": P1, "qty": 3}]})
        b = j.get(f"/projections/order_summary/{O1}")[2]
        check(b.get("ok") is True and b["data"]["customer"] is None and
              b["data"]["discount"] is None and
              b["data"]["lines"] == [{"qty": 3, "name": None}], f"{b}")
        j17_error(j.get(f"/projections/nope/{O1}"), 404, "Projection not found")
        j17_error(j.get(f"/projections/order_summary/{P1}"), 404, "Aggregate not found")
        j17_error(j.get("/projections/order_summary/not-an-id"), 422)
        j17_error(j.get(f"/projections/order_summary/{O1}:2026"), 422)  # no include_substreams


def test_a_source_id_may_read_an_include():
    spec = {
        "agent_types": ["user"],
        "aggregate_types": {
            "store": {"events": {"was_set": {"schema": {"type": "object"},
                                             "handler": [{"merge": {"target": "",
                                                                    "value": "$.data"}}]}}},
            "manager": {"events": {"was_named": {"schema": {"type": "object"},
                                                 "handler": [{"merge": {"target": "",
                                                                        "value": "$.data"}}]}}},
            "ticket": {"events": {"was_opened": {"schema": {"type": "object"},
                                                 "handler": [{"merge": {"target": "",
                                                                        "value": "$.data"}}]}}},
        },
        "projections": [{
            "name": "ticket_view", "for_each": "ticket",
            "sources": {"ticket": "$key",
                        "manager": {"type": "manager", "id": "$.store.manager_id"}},
            "include": {"store": "store:global"},
            "select": {"title": "$.ticket.title", "manager": "$.manager.name"},
        }],
    }
    with Server() as s:
        j = J17(s)
        j.ok_deploy(spec)
        j.ok_write("manager", U1, "was_named", {"name": "Mo"})
        j.ok_write("store", "global", "was_set", {"manager_id": U1})
        j.ok_write("ticket", O1, "was_opened", {"title": "Broken"})
        b = j.get(f"/projections/ticket_view/{O1}")[2]
        check(b.get("data") == {"title": "Broken", "manager": "Mo"},
              f"the include is read before the source that names it: {b}")
