"""Projection webhooks (docs/api.md, "Projection webhooks"): a projection deployed with a
webhook has its state changes POSTed in sequence order, signed (Standard Webhooks, checked here
with Python's hmac), retried with backoff, parked when they keep failing, resumed from a durable
checkpoint after a crash, and delivered again from the first change after a redeploy. Secrets
are the database's shared one or the projection's own, each rotatable with a grace period."""
import json
import time

from harness import Server, check, expect_error
from test_webhooks import Receiver, verify

DB = "/v1/databases/default"
ALLOW = ["--webhook-allow", "127.0.0.1"]

PROJ = """
function key(e) return e.stream end
function apply(s, e)
  s = s or {n = 0}
  s.n = s.n + 1
  return s
end
"""


def deploy(s, name, hook, source=PROJ, status=None):
    body = {"kind": "projection", "language": "lua", "source": source, "webhook": hook}
    st, _, b = s.request("PUT", f"{DB}/components/{name}", body)
    check(st in ((200, 201) if status is None else (status,)), f"deploy: {st} {b}")
    return b


def append(s, stream, n):
    st, _, b = s.append(stream, [{"type": "T", "data": {"i": i}} for i in range(n)])
    check(st == 201, f"append {st} {b}")


def changes_of(got, only_ok=True):
    return [c for g in got if g["status"] == 200 or not only_ok
            for c in json.loads(g["body"])["changes"]]


def hook_status(s, name):
    st, _, b = s.get(f"{DB}/projections/{name}")
    check(st == 200, f"status {st} {b}")
    return b.get("webhook")


def wait_for(pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def test_changes_are_delivered_signed_and_in_order():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            append(s, "a", 2)
            append(s, "b", 1)
            b = deploy(s, "counts", {"url": r.url(), "headers": {"X-Team": "ops"}})
            sec = b["webhookSecret"]
            check(sec["secret"].startswith("whsec_") and sec["isolated"] is False, f"{b}")
            check(b["webhook"] == {"url": r.url(), "headers": {"X-Team": "ops"}}, f"{b}")
            got = r.wait(1)
            append(s, "a", 1)
            want = 4
            wait_for(lambda: len(changes_of(r.got)) >= want)
            ch = changes_of(r.got)
            check([c["sequence"] for c in ch] == [1, 2, 3, 4], f"{ch}")
            check([(c["key"], c["state"]["n"]) for c in ch] ==
                  [("a", 1), ("a", 2), ("b", 1), ("a", 3)], f"{ch}")
            check([c["position"] for c in ch] == [1, 2, 3, 5], f"{ch}")  # 4: the deploy
            got = list(r.got)
            for g in got:
                check(verify(sec["secret"], g), "signed with the shared secret")
                hd = {k.lower(): v for k, v in g["headers"].items()}
                body = json.loads(g["body"])
                check(hd["x-team"] == "ops" and hd["x-annals-attempt"] == "1", f"{hd}")
                check(body["type"] == "projection.changes" and body["database"] == "default" and
                      body["projection"] == "counts" and body["version"] == 1 and
                      body["attempt"] == 1 and body["deliveryId"] == hd["webhook-id"], f"{body}")
            tampered = dict(got[0], body=got[0]["body"].replace(b'"n":', b'"m":'))
            check(not verify(sec["secret"], tampered), "a changed body fails the check")
            w = wait_for(lambda: (hook_status(s, "counts") or {}).get("delivered") == 4 and
                         hook_status(s, "counts"))
            check(w and w["url"] == r.url() and w["parked"] == [] and
                  w["deliveries"][0]["status"] == 200 and w["deliveries"][0]["error"] is None and
                  w["deliveries"][0]["last"] == 4, f"{w}")
            st, _, comp = s.get(f"{DB}/components/counts")
            check("webhookSecret" not in comp and "secret" not in json.dumps(comp["webhook"]),
                  f"the secret is shown only on deploys: {comp}")
            # a projection without a webhook shows none
            st, _, b = s.request("PUT", f"{DB}/components/plain",
                                 {"kind": "projection", "language": "lua", "source": PROJ})
            check(st == 201 and "webhookSecret" not in b and "webhook" not in b, f"{b}")
            check(wait_for(lambda: s.get(f"{DB}/projections/plain")[0] == 200), "plain runs")
            check(hook_status(s, "plain") is None, "no webhook member without a webhook")
    finally:
        r.close()


def test_retries_then_park_and_go_on():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            r.plan = [500, 200]
            deploy(s, "p", {"url": r.url(), "maxAttempts": 2, "backoffMs": 200})
            append(s, "a", 1)
            got = r.wait(2)
            check([g["status"] for g in got[:2]] == [500, 200], f"{[g['status'] for g in got]}")
            check(got[1]["t"] - got[0]["t"] >= 0.19, "waited the backoff")
            ids = {g["headers"]["webhook-id"] for g in got[:2]}
            check(len(ids) == 1, "one id for every attempt of a batch")
            check([json.loads(g["body"])["attempt"] for g in got[:2]] == [1, 2], "attempts")
            r.plan = [503, 503]  # the next batch keeps failing: parked after 2 attempts
            append(s, "b", 1)
            r.wait(4)
            append(s, "c", 1)
            r.wait(5)
            seqs = [c["sequence"] for c in changes_of(r.got)]
            check(seqs == [1, 3], f"delivered after the parked one: {seqs}")
            w = wait_for(lambda: (hook_status(s, "p") or {}).get("delivered") == 3 and
                         hook_status(s, "p"))
            check(w and w["parked"] == [[2, 2]], f"{w}")
            check(any(d["status"] == 503 and d["error"] == "HTTP 503" for d in w["deliveries"]),
                  f"{w['deliveries']}")
    finally:
        r.close()


def test_delivery_resumes_after_a_crash_and_restarts_after_a_redeploy():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            deploy(s, "p", {"url": r.url(), "maxAttempts": 20, "backoffMs": 100})
            append(s, "a", 1)
            r.wait(1)
            wait_for(lambda: (hook_status(s, "p") or {}).get("delivered") == 1)
            r.plan = [500] * 1000  # the receiver breaks
            append(s, "a", 2)
            r.wait(2)
            s.kill9()
            r.plan = []
            s.start()
            wait_for(lambda: sorted({c["sequence"] for c in changes_of(r.got)}) == [1, 2, 3])
            ok = [c["sequence"] for c in changes_of(r.got)]
            check(sorted(set(ok)) == [1, 2, 3], f"all delivered: {ok}")
            check(ok.count(1) == 1, "what was acknowledged before the crash is not sent again")
            # a redeploy rebuilds the projection: its changes come again, from 1, version 2
            n = len(r.got)
            deploy(s, "p", {"url": r.url()}, source=PROJ + "\n-- v2\n", status=200)
            wait_for(lambda: len(changes_of(r.got[n:])) >= 3)
            again = [json.loads(g["body"]) for g in r.got[n:]]
            check(all(b["version"] == 2 for b in again), f"{again}")
            check([c["sequence"] for b in again for c in b["changes"]] == [1, 2, 3], f"{again}")
    finally:
        r.close()


def test_shared_and_isolated_secrets_rotate_with_a_grace():
    r1, r2 = Receiver(), Receiver()
    try:
        with Server(extra=ALLOW) as s:
            shared = deploy(s, "one", {"url": r1.url()})["webhookSecret"]
            iso = deploy(s, "two", {"url": r2.url(), "isolateSecret": True})["webhookSecret"]
            check(iso["isolated"] is True and iso["secret"] != shared["secret"], f"{iso}")
            again = deploy(s, "three", {"url": r1.url()})["webhookSecret"]
            check(again == shared, "every projection without isolateSecret shares one secret")
            expect_error(s.post(f"{DB}/projections/one/webhook/rotate", {}), 400,
                         "shared_secret")
            expect_error(s.post(f"{DB}/projections/nope/webhook/rotate", {}), 404,
                         "webhook_not_found")
            expect_error(s.post(f"{DB}/projections/two/webhook/rotate", {"graceSeconds": -1}),
                         400, "invalid_request")
            st, _, rot = s.post(f"{DB}/projection-webhooks/rotate", {"graceSeconds": 600})
            check(st == 200 and rot["secret"] != shared["secret"] and rot["isolated"] is False
                  and rot["graceSeconds"] == 600, f"{st} {rot}")
            st, _, rot2 = s.post(f"{DB}/projections/two/webhook/rotate", {"graceSeconds": 0})
            check(st == 200 and rot2["projection"] == "two" and rot2["isolated"] is True and
                  rot2["secret"] != iso["secret"], f"{st} {rot2}")
            n1 = len(r1.got)
            n2 = len(r2.got)
            append(s, "z", 1)
            got1 = r1.wait(n1 + 2)[n1:]
            got2 = r2.wait(n2 + 1)[n2:]
            check(got1 and all(verify(rot["secret"], g) and verify(shared["secret"], g)
                               for g in got1), "the shared one signs with both in its grace")
            check(got2 and verify(rot2["secret"], got2[0]) and
                  not verify(iso["secret"], got2[0]), "no grace: only the new one signs")
            # the secret shown on a redeploy is the current one
            check(deploy(s, "one", {"url": r1.url()})["webhookSecret"]["secret"] ==
                  rot["secret"], "redeploy shows the rotated secret")
    finally:
        r1.close()
        r2.close()


def test_webhook_definitions_are_checked():
    with Server() as s:
        def bad(body, code, field):
            b = {"kind": "projection", "language": "lua", "source": PROJ}
            b.update(body)
            st, _, ans = s.request("PUT", f"{DB}/components/x", b)
            check(st == 400 and ans["error"]["code"] == code and
                  ans["error"].get("field") == field, f"{body}: {st} {ans}")
        bad({"webhook": {"url": "ftp://example.com/"}}, "invalid_component", "webhook.url")
        bad({"webhook": {}}, "invalid_component", "webhook.url")
        bad({"webhook": "http://example.com/"}, "invalid_component", "webhook")
        bad({"webhook": {"url": "http://example.com/", "extra": 1}}, "invalid_component",
            "webhook")
        bad({"webhook": {"url": "http://example.com/", "maxAttempts": 0}}, "invalid_component",
            "webhook.maxAttempts")
        bad({"webhook": {"url": "http://example.com/", "maxAttempts": 1.5}},
            "invalid_component", "webhook.maxAttempts")
        bad({"webhook": {"url": "http://example.com/", "headers": {"Host": "x"}}},
            "invalid_component", "webhook.headers")
        bad({"webhook": {"url": "http://example.com/", "headers": {"X-A": "a\r\nb"}}},
            "invalid_component", "webhook.headers")
        bad({"webhook": {"url": "http://example.com/", "isolateSecret": 1}},
            "invalid_component", "webhook.isolateSecret")
        bad({"webhook": {"url": "http://127.0.0.1:9/"}}, "url_not_allowed", "webhook.url")
        bad({"webhook": {"url": "http://10.1.2.3/"}}, "url_not_allowed", "webhook.url")
        st, _, ans = s.request("PUT", f"{DB}/components/r", {
            "kind": "reducer", "language": "lua", "category": "a",
            "source": "function reduce(s, e) return s end",
            "webhook": {"url": "http://example.com/"}})
        check(st == 400 and ans["error"]["field"] == "webhook", f"{st} {ans}")
        st, _, lst = s.get(f"{DB}/components")
        check(lst == {"components": []}, f"nothing was deployed: {lst}")
