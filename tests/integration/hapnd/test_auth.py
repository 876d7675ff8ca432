"""The Hapnd dialect's keys and tenants over the real server (seed 002, docs/dialects/hapnd.md):
X-API-Key on every route but /health (never Authorization), 401 UNAUTHORIZED and 403 FORBIDDEN
in Hapnd's envelope, a key's database as its tenant (isolated from the others), and whoami."""
import datetime

from hapnd_client import (Hapnd, bearer, check_time, create_database, create_key, deploy_reducer, ev,
                          hapnd_error)
from harness import Server, check, cli_keys, dialect_port


def keyed_server(extra=None):
    """A server with keys: (server, admin key for every database)."""
    s = Server(start=False, extra=extra)
    admin = cli_keys(s.data, "admin")["admin"]
    s.start()
    return s, admin


def test_health_needs_no_key():
    s, admin = keyed_server(["--dialect-listen", "hapnd=127.0.0.1:0"])
    with s:
        st, _, b = Hapnd(s).get("/health")
        check(st == 200 and b == {"status": "ok"}, f"{st} {b}")
        port = dialect_port(s, "hapnd")
        st, _, b = Hapnd(s, base="", port=port).get("/health")
        check(st == 200 and b == {"status": "ok"}, f"own port: {st} {b}")
        # and the rest does need one, on both
        hapnd_error(Hapnd(s, base="", port=port).get("/events/order_1"), 401, "UNAUTHORIZED")
        st, _, b = Hapnd(s, base="", port=port, key=admin).get("/events/order_1")
        check(st == 200 and b == {"events": []}, f"{st} {b}")


def test_no_key_or_unknown_key_is_401():
    s, admin = keyed_server()
    with s:
        for key in (None, "ak_0000000000000000_wrong", "hpnd_live_nope", "sk_live_your_api_key"):
            h = Hapnd(s, key=key)
            for resp in (h.append("order_1"), h.batch("order_1", [ev()]),
                         h.get("/events/order_1"), h.get("/auth/whoami")):
                b = hapnd_error(resp, 401, "UNAUTHORIZED")
                check(set(b) <= {"error", "errorCode"}, f"Hapnd's envelope only: {b}")
        st, _, b = Hapnd(s, key=admin).get("/events/order_1")
        check(st == 200 and b == {"events": []}, f"nothing was written: {st} {b}")


def test_authorization_bearer_is_not_a_key():
    s, admin = keyed_server()
    with s:
        h = Hapnd(s)
        hapnd_error(h.post("/events", {"aggregateId": "order_1", "eventType": "A", "data": {}},
                           headers=bearer(admin)), 401, "UNAUTHORIZED")
        hapnd_error(h.get("/auth/whoami", headers=bearer(admin)), 401, "UNAUTHORIZED")
        # X-API-Key is read, whatever Authorization holds
        k = Hapnd(s, key=admin)
        st, _, b = k.get("/auth/whoami", headers={"Authorization": "Bearer something-else"})
        check(st == 200 and b.get("tenantId") == "default", f"{st} {b}")
        st, _, b = k.post("/events", {"aggregateId": "order_1", "eventType": "A", "data": {}},
                          headers={"Authorization": "Basic dXNlcjpwYXNz"})
        check(st == 201, f"{st} {b}")


def test_a_keys_database_is_its_tenant():
    s, admin = keyed_server()
    with s:
        create_database(s, "shop", "Shop Inc", admin=admin)
        create_database(s, "other", admin=admin)
        shop_key, _ = create_key(s, "write", "shop", admin=admin)
        other_key, _ = create_key(s, "write", "other", admin=admin)
        shop, other, root = Hapnd(s, key=shop_key), Hapnd(s, key=other_key), Hapnd(s, key=admin)
        b = shop.ok_append("order_1", data={"t": "shop"})
        check(b["version"] == 1, f"{b}")
        shop.ok_batch("order_1", [ev(), ev()])
        check(shop.versions("order_1") == [1, 2, 3], "shop reads its own")
        # written to the database shop, natively
        st, _, nat = s.get("/v1/databases/shop/streams/order_1/events", headers=bearer(admin))
        check(st == 200 and len(nat["events"]) == 3, f"{st} {nat}")
        st, _, nat = s.get("/v1/databases/default/streams/order_1/events", headers=bearer(admin))
        check(st == 404, f"not in default: {st} {nat}")
        # another tenant sees none of it, and has its own aggregate of that id
        check(other.events("order_1") == {"events": []}, "other tenant saw shop's events")
        check(root.events("order_1") == {"events": []}, "an all-databases key is default's")
        b = other.ok_append("order_1", aggregateType="cart", expectedVersion=0)
        check(b["version"] == 1 and b["aggregateType"] == "cart", f"own aggregate: {b}")
        check([e["aggregateType"] for e in shop.events("order_1")["events"]] == ["order"] * 3,
              "shop's aggregate unchanged")
        # an all-databases (admin) key writes to default
        check(root.ok_append("order_1")["version"] == 1, "default")
        st, _, nat = s.get("/v1/databases/default/streams/order_1/events", headers=bearer(admin))
        check(st == 200 and len(nat["events"]) == 1, f"{st} {nat}")


def test_whoami_answers_the_tenant():
    s, admin = keyed_server()
    with s:
        before = datetime.datetime.now(datetime.timezone.utc)
        create_database(s, "shop", "My Company", admin=admin)
        create_database(s, "other", admin=admin)
        shop_key, shop_id = create_key(s, "read", "shop", admin=admin)
        other_key, other_id = create_key(s, "admin", "other", admin=admin)
        st, _, b = Hapnd(s, key=shop_key).get("/auth/whoami")
        check(st == 200, f"{st} {b}")
        check(b.get("tenantId") == "shop" and b.get("name") == "My Company", f"{b}")
        check_time(b.get("createdAt"), "createdAt")
        created = datetime.datetime.fromisoformat(b["createdAt"].replace("Z", "+00:00"))
        check(created >= before.replace(microsecond=before.microsecond // 1000 * 1000) -
              datetime.timedelta(seconds=1), f"createdAt {b['createdAt']} before {before}")
        check(b.get("keyId") == shop_id, f"keyId: {b} vs {shop_id}")
        st, _, b = Hapnd(s, key=other_key).get("/auth/whoami")
        check(st == 200 and b.get("tenantId") == "other" and b.get("name") == "other" and
              b.get("keyId") == other_id, f"no description: the name: {b}")
        check_time(b.get("createdAt"), "createdAt")
        created_other = b["createdAt"]
        # the name follows the database's description
        st, _, p = s.request("PATCH", "/v1/databases/other", {"description": "Other Ltd"},
                             headers=bearer(admin))
        check(st == 200, f"PATCH: {st} {p}")
        st, _, b = Hapnd(s, key=other_key).get("/auth/whoami")
        check(st == 200 and b.get("name") == "Other Ltd" and b.get("tenantId") == "other" and
              b.get("createdAt") == created_other, f"after PATCH: {b}")
        st, _, b = Hapnd(s, key=admin).get("/auth/whoami")
        check(st == 200 and b.get("tenantId") == "default", f"all databases: default: {b}")
        check_time(b.get("createdAt"), "createdAt", near_now=False)


def test_read_key_cannot_append():
    s, admin = keyed_server()
    with s:
        create_database(s, "shop", admin=admin)
        read_key, _ = create_key(s, "read", "shop", admin=admin)
        write_key, _ = create_key(s, "write", "shop", admin=admin)
        reader, writer = Hapnd(s, key=read_key), Hapnd(s, key=write_key)
        writer.ok_append("order_1")
        b = hapnd_error(reader.append("order_1"), 403, "FORBIDDEN")
        check(set(b) <= {"error", "errorCode"}, f"{b}")
        hapnd_error(reader.batch("order_1", [ev()]), 403, "FORBIDDEN")
        hapnd_error(reader.append("order_2"), 403, "FORBIDDEN")
        check(reader.versions("order_1") == [1], "a read key wrote")
        check(reader.events("order_2") == {"events": []}, "a read key wrote")
        st, _, b = reader.get("/auth/whoami")
        check(st == 200 and b["tenantId"] == "shop", f"{st} {b}")
        # a read key for every database: the same
        all_read = cli_read_key(s, admin)
        hapnd_error(Hapnd(s, key=all_read).append("order_1"), 403, "FORBIDDEN")


def cli_read_key(s, admin):
    key, _ = create_key(s, "read", admin=admin)
    return key


def test_revoked_key_is_401():
    s, admin = keyed_server()
    with s:
        key, kid = create_key(s, "write", "default", admin=admin)
        h = Hapnd(s, key=key)
        h.ok_append("order_1")
        st, _, b = s.request("DELETE", f"/v1/keys/{kid}", headers=bearer(admin))
        check(st == 204, f"revoke: {st} {b}")
        hapnd_error(h.append("order_1"), 401, "UNAUTHORIZED")
        hapnd_error(h.get("/auth/whoami"), 401, "UNAUTHORIZED")


def test_without_keys_the_default_database_is_open():
    with Server() as s:
        h = Hapnd(s)
        st, _, b = h.get("/auth/whoami")
        check(st == 200 and b.get("tenantId") == "default" and b.get("name") == "default",
              f"{st} {b}")
        check_time(b.get("createdAt"), "createdAt")
        check(h.ok_append("order_1")["version"] == 1, "append")
        st, _, nat = s.get("/v1/databases/default/streams/order_1/events")
        check(st == 200 and len(nat["events"]) == 1, f"{st} {nat}")


def test_reducer_states_are_per_tenant():
    counter = "function reduce(s, e) return {n = ((s and s.n) or 0) + 1, db = '%s'} end"
    s, admin = keyed_server()
    with s:
        create_database(s, "shop", admin=admin)
        create_database(s, "other", admin=admin)
        deploy_reducer(s, "orders", "order", counter % "shop", db="shop", admin=admin)
        deploy_reducer(s, "orders", "order", counter % "other", db="other", admin=admin)
        shop = Hapnd(s, key=create_key(s, "write", "shop", admin=admin)[0])
        other = Hapnd(s, key=create_key(s, "write", "other", admin=admin)[0])
        check(shop.ok_batch("order_1", [ev()] * 20)["state"] == {"n": 20, "db": "shop"}, "shop")
        check(other.ok_append("order_1")["state"] == {"n": 1, "db": "other"}, "other")
        check(shop.ok_append("order_1")["state"] == {"n": 21, "db": "shop"}, "shop again")
        check(other.ok_append("order_1")["state"] == {"n": 2, "db": "other"}, "other again")
        # default has no reducer
        b = Hapnd(s, key=admin).ok_append("order_1")
        check("state" not in b, f"{b}")
