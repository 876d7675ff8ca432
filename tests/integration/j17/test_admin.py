"""j17 keys, environments and authentication over the real server (seed 000,
docs/dialects/j17.md "Instances, environments, mounts" and "Admin API"): an Annals admin key
deploys specs and makes j17 keys (j17_0_{env}_...), keys work only on their environment's
mount and instance, read keys cannot write, 401 without a known key, list, rotate,
scheduled revocation and DELETE, and admin routes refuse data keys."""
import datetime
import json
import re

from j17_client import (ALICE, J17, U1, U2, j17_error, keyed_server, sample_spec)
from harness import check

EMAIL = {"email": "ann@example.com"}


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def shop(s, admin, *envs):
    """Deploys the sample spec to instance shop in each environment (prod by default)."""
    for env in envs or ("prod",):
        J17(s, env, key=admin).ok_deploy(sample_spec(), instance="shop", environment=env)


def test_create_key_answers_201_with_the_key_once():
    s, admin = keyed_server()
    with s:
        a = J17(s, key=admin)
        shop(s, admin)
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        st, _, b = a.post("/api/instances/shop/keys",
                          {"name": "backend", "scope": "write", "environment": "prod"})
        check(st == 201, f"{st} {b}")
        check({"id", "name", "key", "scope", "environment", "created_at"} <= set(b), f"{b}")
        check(b["name"] == "backend" and b["scope"] == "write" and b["environment"] == "prod",
              f"{b}")
        check(re.match(r"^j17_0_prod_[A-Za-z0-9_-]+$", b["key"]), f"key prefix: {b['key']}")
        created = datetime.datetime.fromisoformat(b["created_at"].replace("Z", "+00:00"))
        check(created >= before - datetime.timedelta(seconds=1), f"{b['created_at']}")
        # it works on prod for instance shop
        k = J17(s, key=b["key"])
        k.ok_write("user", U1, "was_created", EMAIL)
        check(k.ok_state("user", U1)["metadata"]["length"] == 1, "read back")
        for env in ("staging", "test"):
            st, _, e = a.post("/api/instances/shop/keys",
                              {"name": env, "scope": "read", "environment": env})
            check(st == 201 and e["key"].startswith(f"j17_0_{env}_") and
                  e["environment"] == env and e["scope"] == "read", f"{env}: {st} {e}")
        # bad requests
        j17_error(a.post("/api/instances/shop/keys",
                         {"name": "x", "scope": "admin", "environment": "prod"}), 400)
        j17_error(a.post("/api/instances/shop/keys",
                         {"name": "x", "scope": "read", "environment": "dev"}), 400)
        j17_error(a.post("/api/instances/Shop!/keys",
                         {"name": "x", "scope": "read", "environment": "prod"}), 400)


def test_list_keys_never_shows_the_key():
    s, admin = keyed_server()
    with s:
        a = J17(s, key=admin)
        made = [a.create_key("shop", "one", "write", "prod"),
                a.create_key("shop", "two", "read", "staging")]
        a.create_key("other", "elsewhere", "write", "prod")
        st, _, b = a.get("/api/instances/shop/keys")
        check(st == 200 and b.get("ok") is True and isinstance(b.get("keys"), list), f"{st} {b}")
        by_id = {k["id"]: k for k in b["keys"]}
        for m in made:
            check(m["id"] in by_id, f"{m['id']} listed: {b}")
            got = by_id[m["id"]]
            check("key" not in got, f"the key is shown once: {got}")
            check(got["name"] == m["name"] and got["scope"] == m["scope"] and
                  got["environment"] == m["environment"], f"{got} vs {m}")
            check(m["key"] not in str(b), "the key text is not in the list")
        check(all(k["name"] != "elsewhere" for k in b["keys"]), f"another instance's: {b}")


def test_key_works_only_on_its_environment():
    s, admin = keyed_server()
    with s:
        shop(s, admin, "prod", "staging")
        a = J17(s, key=admin)
        prod_key = a.create_key("shop", "p", "write", "prod")["key"]
        staging_key = a.create_key("shop", "s", "write", "staging")["key"]
        j17_error(J17(s, "prod", key=staging_key).write("user", U1, "was_created", EMAIL), 403,
                  "wrong environment")
        j17_error(J17(s, "prod", key=staging_key).get(f"/user/{U1}"), 403, "wrong environment")
        j17_error(J17(s, "staging", key=prod_key).write("user", U1, "was_created", EMAIL), 403,
                  "wrong environment")
        j17_error(J17(s, "test", key=prod_key).get(f"/user/{U1}"), 403, "wrong environment")
        st = J17(s, "staging", key=staging_key)
        st.ok_write("user", U1, "was_created", EMAIL)
        check(st.length("user", U1) == 1, "staging wrote")
        pr = J17(s, "prod", key=prod_key)
        check(pr.length("user", U1) == 0, "isolated data")
        pr.ok_write("user", U1, "was_created", EMAIL)
        pr.ok_write("user", U1, "did_log_in", {})
        check(st.length("user", U1) == 1 and pr.length("user", U1) == 2, "isolated")


def test_keys_are_bound_to_their_instance():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        a.ok_deploy(sample_spec(), instance="acme")
        shop_key = a.create_key("shop", "s", "write")["key"]
        acme_key = a.create_key("acme", "a", "write")["key"]
        J17(s, key=shop_key).ok_write("user", U1, "was_created", EMAIL)
        j17_error(J17(s, key=acme_key).get(f"/user/{U1}"), 404, "Aggregate not found")
        J17(s, key=acme_key).ok_write("user", U1, "was_created", {"email": "acme@example.com"})
        check(J17(s, key=shop_key).ok_state("user", U1)["data"]["email"] == EMAIL["email"],
              "shop's own")
        # native view: the instances' prod databases
        st, _, b = s.get(f"/v1/databases/shop/streams/user:{U1}/events",
                         headers={"Authorization": f"Bearer {admin}"})
        check(st == 200 and len(b["events"]) == 1, f"native: {st} {b}")


def test_read_key_cannot_write():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        w = J17(s, key=a.create_key("shop", "w", "write")["key"])
        r = J17(s, key=a.create_key("shop", "r", "read")["key"])
        w.ok_write("user", U1, "was_created", EMAIL)
        j17_error(r.write("user", U1, "did_log_in", {}), 403)
        j17_error(r.batch("user", U1, [{"type": "did_log_in", "data": {}}]), 403)
        check(r.length("user", U1) == 1, "nothing written")
        check(r.ok_state("user", U1)["metadata"]["length"] == 1, "reads")
        check(len(r.events("user", U1)["events"]) == 1, "events")


def test_missing_or_unknown_key_is_401():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        good = J17(s, key=J17(s, key=admin).create_key("shop", "w", "write")["key"])
        good.ok_write("user", U1, "was_created", EMAIL)
        for key in (None, "j17_0_prod_doesnotexist", "nonsense", good.key + "x"):
            j = J17(s, key=key)
            j17_error(j.write("user", U1, "did_log_in", {}), 401)
            j17_error(j.get(f"/user/{U1}"), 401)
            j17_error(j.get(f"/user/{U1}/length"), 401)
            j17_error(j.deploy(sample_spec(), instance="shop"), 401)
            j17_error(j.get("/api/instances/shop/keys"), 401)
        st, _, b = J17(s).raw("GET", f"/user/{U1}", headers={"Authorization": "Basic eDp5"})
        check(st == 401, f"{st} {b}")
        check(good.length("user", U1) == 1, "nothing written")


def test_rotate_replaces_the_key_at_once():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        old = a.create_key("shop", "rot", "write")
        J17(s, key=old["key"]).ok_write("user", U1, "was_created", EMAIL)
        st, _, new = a.post(f"/api/keys/{old['id']}/rotate", {})
        check(st == 201, f"{st} {new}")
        check(new["key"] != old["key"] and new["key"].startswith("j17_0_prod_"), f"{new}")
        check(new.get("scope") == "write" and new.get("environment") == "prod", f"{new}")
        j17_error(J17(s, key=old["key"]).get(f"/user/{U1}"), 401)
        j17_error(J17(s, key=old["key"]).write("user", U1, "did_log_in", {}), 401)
        n = J17(s, key=new["key"])
        n.ok_write("user", U1, "did_log_in", {})
        check(n.length("user", U1) == 2, "the new key reads the same aggregate")
        # rotating without a body works too
        st, _, newer = a.request("POST", f"/api/keys/{new['id']}/rotate")
        check(st == 201 and newer["key"] != new["key"], f"{st} {newer}")
        j17_error(n.get(f"/user/{U1}"), 401)
        j17_error(a.post("/api/keys/nosuchkey/rotate", {}), 404)


def test_schedule_revocation():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        soon = a.create_key("shop", "past", "write")
        later = a.create_key("shop", "future", "write")
        now = datetime.datetime.now(datetime.timezone.utc)
        st, _, b = a.post(f"/api/keys/{later['id']}/schedule_revocation",
                          {"revoke_at": rfc3339(now + datetime.timedelta(days=2))})
        check(st == 200 and b.get("id") == later["id"] and b.get("revoke_at"), f"{st} {b}")
        check("key" not in b or b["key"] != later["key"], f"{b}")
        J17(s, key=later["key"]).ok_write("user", U1, "was_created", EMAIL)
        st, _, b = a.post(f"/api/keys/{soon['id']}/schedule_revocation",
                          {"revoke_at": rfc3339(now - datetime.timedelta(minutes=1))})
        check(st == 200, f"{st} {b}")
        j17_error(J17(s, key=soon["key"]).get(f"/user/{U1}"), 401)
        keys = {k["id"]: k for k in a.get("/api/instances/shop/keys")[2]["keys"]}
        check(keys.get(later["id"], {}).get("revoke_at"), f"revoke_at listed: {keys}")
        j17_error(a.post(f"/api/keys/{later['id']}/schedule_revocation",
                         {"revoke_at": "tomorrow"}), 400)
        j17_error(a.post(f"/api/keys/{later['id']}/schedule_revocation", {}), 400)


def test_delete_revokes():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        k = a.create_key("shop", "del", "write")
        J17(s, key=k["key"]).ok_write("user", U1, "was_created", EMAIL)
        st, _, b = a.request("DELETE", f"/api/keys/{k['id']}")
        check(st == 200 and b == {"ok": True}, f"{st} {b}")
        j17_error(J17(s, key=k["key"]).get(f"/user/{U1}"), 401)
        listed = [x for x in a.get("/api/instances/shop/keys")[2]["keys"] if x["id"] == k["id"]]
        check(not listed or listed[0].get("revoke_at"),
              f"a revoked key is gone from the list or shows its revoke_at: {listed}")
        j17_error(a.request("DELETE", "/api/keys/nosuchkey"), 404)


def test_admin_routes_refuse_data_keys():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        a = J17(s, key=admin)
        w = a.create_key("shop", "w", "write")
        r = a.create_key("shop", "r", "read")
        for key in (w["key"], r["key"]):
            j = J17(s, key=key)
            j17_error(j.deploy(sample_spec(), instance="shop"), 403)
            j17_error(j.get("/api/instances/shop/spec"), 403)
            j17_error(j.get("/api/instances/shop/keys"), 403)
            j17_error(j.post("/api/instances/shop/keys",
                             {"name": "x", "scope": "write", "environment": "prod"}), 403)
            j17_error(j.post(f"/api/keys/{w['id']}/rotate", {}), 403)
            j17_error(j.request("DELETE", f"/api/keys/{r['id']}"), 403)
        # both still work
        J17(s, key=w["key"]).ok_write("user", U1, "was_created", EMAIL)
        check(J17(s, key=r["key"]).length("user", U1) == 1, "read key still works")


def test_admin_key_bound_to_one_instance():
    s, admin = keyed_server()
    with s:
        shop(s, admin)
        J17(s, key=admin).ok_deploy(sample_spec(), instance="acme")
        st, _, b = s.post("/v1/keys", {"scope": "admin", "database": "shop"},
                          headers={"Authorization": f"Bearer {admin}"})
        check(st == 201, f"{st} {b}")
        bound = J17(s, key=b["key"])
        bound.ok_deploy(sample_spec(), instance="shop", environment="staging")
        bound.create_key("shop", "ok", "write", "test")
        j17_error(bound.deploy(sample_spec(), instance="acme"), 403)
        j17_error(bound.get("/api/instances/acme/keys"), 403)


def test_development_mode_serves_instance_default():
    from harness import Server
    with Server() as s:
        j = J17(s)
        j.ok_deploy(sample_spec(), instance="default")
        j.ok_write("user", U2, "was_created", EMAIL)
        st, _, b = s.get(f"/v1/databases/default/streams/user:{U2}/events")
        check(st == 200 and len(b["events"]) == 1, f"{st} {b}")
        b = b["events"][0]
        check(b.get("type") == "was_created", f"a j17 event is a native event: {b}")
        J17(s, "test").ok_deploy(sample_spec(), environment="test")
        J17(s, "test").ok_write("user", U2, "was_created", EMAIL)
        st, _, b = s.get(f"/v1/databases/default-test/streams/user:{U2}/events")
        check(st == 200 and len(b["events"]) == 1, f"default-test: {st} {b}")
        check(ALICE in str(b["events"][0]), "the actor is in the native metadata")


def test_an_instance_id_may_not_name_another_instances_environment():
    # "acme-test" is the test database of "acme": as an instance of its own, its prod data
    # would be acme's test data, and keys bound to one would manage the other
    s, admin = keyed_server()
    with s:
        a = J17(s, key=admin)
        for bad in ("acme-test", "acme-staging"):
            j17_error(a.deploy(sample_spec(), instance=bad), 400, path="instance")
            j17_error(a.post(f"/api/instances/{bad}/keys",
                             {"name": "k", "scope": "write", "environment": "prod"}),
                      400, path="instance")
        st, _, b = s.get("/v1/databases", headers={"Authorization": f"Bearer {admin}"})
        names = [d.get("name") for d in b.get("databases", [])] if isinstance(b, dict) else []
        check("acme-test" not in names and "acme-staging" not in names,
              f"a refused deploy makes no database: {names}")
        # a key bound to acme's test database manages acme only
        a.ok_deploy(sample_spec(), instance="acme", environment="test")
        st, _, b = s.post("/v1/keys", {"scope": "admin", "database": "acme-test"},
                          headers={"Authorization": f"Bearer {admin}"})
        check(st == 201, f"{st} {b}")
        bound = J17(s, key=b["key"])
        check(bound.get("/api/instances/acme/keys")[0] == 200, "it manages acme")
        j17_error(bound.get("/api/instances/acme-test/keys"), 400, path="instance")


def test_listener_secrets_are_not_readable_with_a_read_key():
    s, admin = keyed_server(["--webhook-allow", "127.0.0.1"])
    with s:
        spec = sample_spec()
        spec["listeners"] = {"audit": {"url": "http://127.0.0.1:9/hook",
                                       "secret": "topsecret-value"}}
        a = J17(s, key=admin)
        a.ok_deploy(spec, instance="shop")
        read = a.create_key("shop", "reader", "read")["key"]
        st, _, b = s.get("/v1/databases/shop/components/j17.spec",
                         headers={"Authorization": f"Bearer {read}"})
        check(st in (200, 403, 404), f"{st} {b}")
        check("topsecret-value" not in json.dumps(b), f"the secret leaked: {b}")
        st, _, b = a.get("/api/instances/shop/spec")
        check(st == 200 and "topsecret-value" not in json.dumps(b), f"{st} {b}")
        check(b["spec"]["listeners"]["audit"].get("url") == "http://127.0.0.1:9/hook", f"{b}")
        # a listener without a secret could never be verified: a 422 problem
        del spec["listeners"]["audit"]["secret"]
        st, _, b = a.deploy(spec, instance="shop")
        check(st == 422 and any(e["path"] == "listeners.audit.secret" for e in b["errors"]),
              f"{st} {b}")
