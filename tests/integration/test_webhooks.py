"""Webhooks (docs/api.md, "Webhooks"): signed POSTs of matching events, in order, at least once,
with retries and exponential backoff, parking of what keeps failing, a delivery log, secret
rotation with a grace period, a durable checkpoint across restarts, and refusal of loopback,
private and link-local targets unless the operator allows them. Signatures are checked here
with Python's hmac, following the Standard Webhooks scheme, independently of the server."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time

from harness import Server, binary, check, cli_keys, expect_error

DB = "default"
HOOKS = f"/v1/databases/{DB}/webhooks"


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; `plan` is a list of statuses to answer
    in turn (then 200)."""

    def __init__(self):
        self.got = []
        self.plan = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                with outer.lock:
                    status = outer.plan.pop(0) if outer.plan else 200
                    outer.got.append({"t": time.monotonic(), "headers": dict(self.headers),
                                      "body": body, "status": status, "path": self.path})
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/x")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return list(self.got)
            time.sleep(0.05)
        with self.lock:
            return list(self.got)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def verify(secret, req):
    """True when one of the webhook-signature entries is the HMAC of id.timestamp.body."""
    h = {k.lower(): v for k, v in req["headers"].items()}
    key = base64.b64decode(secret[len("whsec_"):])
    msg = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + req["body"]
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(s.split(",", 1) == ["v1", want] for s in h["webhook-signature"].split())


def append(s, stream, n, type_="T"):
    st, _, b = s.append(stream, [{"type": type_, "data": {"i": i}} for i in range(n)])
    check(st == 201, f"append {st} {b}")


def create(s, **kw):
    st, _, b = s.post(HOOKS, kw)
    check(st == 201, f"create: {st} {b}")
    check(b["secret"].startswith("whsec_"), f"{b}")
    return b


ALLOW = ["--webhook-allow", "127.0.0.1"]


def test_signed_deliveries_in_order():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            append(s, "order-1", 2, "OrderPlaced")
            append(s, "user-1", 1, "UserJoined")
            h = create(s, name="orders", url=r.url(), filter={"types": ["Order*"]},
                       headers={"X-Team": "billing"})
            append(s, "order-2", 1, "OrderPlaced")
            got = r.wait(2)
            events = [e for g in got for e in json.loads(g["body"])["events"]]
            check([e["position"] for e in events] == [1, 2, 4], f"{[e['position'] for e in events]}")
            for g in got:
                check(verify(h["secret"], g), "signature")
                hd = {k.lower(): v for k, v in g["headers"].items()}
                check(hd["x-team"] == "billing" and hd["x-annals-attempt"] == "1", f"{hd}")
                check(hd["content-type"] == "application/json", "json")
                body = json.loads(g["body"])
                check(body["webhook"] == "orders" and body["attempt"] == 1 and
                      body["deliveryId"] == hd["webhook-id"], f"{body}")
            tampered = dict(got[0], body=got[0]["body"].replace(b"Order", b"Xrder"))
            check(not verify(h["secret"], tampered), "a changed body fails the check")
            st, _, info = s.get(f"{HOOKS}/orders")
            check(st == 200 and info["checkpoint"] >= 4 and "secret" not in info, f"{info}")
            check(info["deliveries"][0]["status"] == 200, f"{info['deliveries']}")
            st, _, lst = s.get(HOOKS)
            check([w["name"] for w in lst["webhooks"]] == ["orders"], f"{lst}")
    finally:
        r.close()


def test_retries_back_off_then_park_and_go_on():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            r.plan = [500, 503]  # the first two attempts fail
            create(s, name="h", url=r.url(), retry={"maxAttempts": 3, "backoffMs": 200})
            append(s, "a", 1)
            got = r.wait(3)
            check([g["status"] for g in got[:3]] == [500, 503, 200], f"{[g['status'] for g in got]}")
            ids = {g["headers"].get("webhook-id") for g in got[:3]}
            check(len(ids) == 1, "one delivery id for every attempt of a batch")
            atts = [g["headers"].get("X-Annals-Attempt") for g in got[:3]]
            check(atts == ["1", "2", "3"], f"{atts}")
            check(got[1]["t"] - got[0]["t"] >= 0.19, "waited the backoff before attempt 2")
            check(got[2]["t"] - got[1]["t"] >= 0.39, "the backoff doubled before attempt 3")
            # now a batch that keeps failing: parked after 3 attempts, then delivery goes on
            r.plan = [500, 500, 500]
            append(s, "b", 1)
            r.wait(4)  # b's batch is formed (and failing) before c exists: c is its own batch
            append(s, "c", 1)
            got = r.wait(7)
            bodies = [json.loads(g["body"]) for g in got[3:]]
            check([b["events"][0]["position"] for b in bodies][:3] == [2, 2, 2], "3 tries of 2")
            delivered = [e["position"] for g, b in zip(got[3:], bodies) if g["status"] == 200
                         for e in b["events"]]
            check(delivered == [3], f"then 3: {delivered}")
            st, _, info = s.get(f"{HOOKS}/h")
            check(info["parked"] == 1 and info["parkedBatches"] == [{"first": 2, "last": 2}],
                  f"{info}")
            errs = [d for d in info["deliveries"] if d["status"] == 500]
            check(errs and errs[0]["error"] == "HTTP 500", f"{info['deliveries']}")
    finally:
        r.close()


def test_targets_that_are_not_public_are_refused():
    r = Receiver()
    try:
        with Server() as s:
            for url in ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.0.0.1/x",
                        "http://192.168.1.1/x", "http://169.254.169.254/latest",
                        "http://[::1]:9/x", "http://0.0.0.0/x", "http://172.16.0.1/x"]:
                expect_error(s.post(HOOKS, {"name": "x", "url": url}), 400, "url_not_allowed",
                             "url")
            for url in ["ftp://example.com/x", "not a url", "http:///nohost"]:
                expect_error(s.post(HOOKS, {"name": "x", "url": url}), 400, None, "url")
            check(s.get(HOOKS)[2]["webhooks"] == [], "nothing made")
        with Server(extra=ALLOW) as s:
            # allowed, but a redirect is not followed (it counts as a failure)
            r.plan = [302, 302]
            create(s, name="h", url=r.url(), retry={"maxAttempts": 2, "backoffMs": 10})
            append(s, "a", 1)
            got = r.wait(2)
            time.sleep(0.3)
            check([g["path"] for g in r.got] == ["/hook", "/hook"], f"{[g['path'] for g in r.got]}")
            check(s.get(f"{HOOKS}/h")[2]["parked"] == 1, "redirects are failures")
    finally:
        r.close()


def test_a_slow_resolver_holds_up_only_its_own_creation():
    """Creating a webhook resolves its host. With a resolver that takes 2 s (an LD_PRELOAD
    shim for *.slow.test), requests on every other connection are answered meanwhile: the
    creation runs off the I/O threads (it held one of them, and every connection it serves,
    for as long as the resolver took)."""
    shim = os.path.join(os.path.dirname(binary()), "slow_dns.so")
    if not os.path.exists(shim):  # the sanitizer build has none (ASan must load first)
        return
    with Server(env=dict(os.environ, LD_PRELOAD=shim)) as s:
        answered = []

        def create_slow():
            answered.append(s.post(HOOKS, {"name": "h", "url": "http://a.slow.test/hook"}))

        t = threading.Thread(target=create_slow)
        t.start()
        time.sleep(0.3)  # the creation is waiting for the resolver now
        for i in range(8):  # fresh connections: the server deals them to all its I/O threads
            st, _, body = s.get("/health")
            check(st == 200, f"health {i}: {st} {body!r}")
            st, _, body = s.get(HOOKS)
            check(st == 200 and body["webhooks"] == [], f"list {i}: {st} {body!r}")
        check(not answered, "the other requests waited for the slow creation")
        t.join(15)
        check(answered, "the creation was never answered")
        expect_error(answered[0], 400, "invalid_url", "url")
        check("does not resolve" in answered[0][2]["error"]["message"], f"{answered[0]!r}")
        refused = s.post(HOOKS, {"name": "h2", "url": "http://10.0.0.1/x"})
        expect_error(refused, 400, "url_not_allowed", "url")  # no lookup: a literal address


def test_shutdown_waits_for_a_creation_that_is_resolving():
    """SIGTERM while a webhook creation waits 6 s for its resolver (longer than the 5 s the
    shutdown gives in-flight requests): the server waits for it, answers it, and exits
    cleanly (the creation's thread used to outlive the database it was creating in)."""
    shim = os.path.join(os.path.dirname(binary()), "slow_dns.so")
    if not os.path.exists(shim):
        return
    with Server(env=dict(os.environ, LD_PRELOAD=shim, SLOW_DNS_SECONDS="6")) as s:
        answered = []

        def create_slow():
            answered.append(s.post(HOOKS, {"name": "h", "url": "http://b.slow.test/hook"}))

        t = threading.Thread(target=create_slow)
        t.start()
        time.sleep(0.5)
        rc = s.stop()
        t.join(15)
        check(rc == 0, f"exit code {rc}")
        check(answered, "the creation was never answered")
        expect_error(answered[0], 400, "invalid_url", "url")


def test_secret_rotation_signs_with_both_during_the_grace():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            h = create(s, name="h", url=r.url())
            st, _, rot = s.post(f"{HOOKS}/h/rotate", {"graceSeconds": 3600})
            check(st == 200 and rot["secret"] != h["secret"], f"{rot}")
            append(s, "a", 1)
            g = r.wait(1)[0]
            check(verify(h["secret"], g) and verify(rot["secret"], g), "both sign")
            check(len(g["headers"]["webhook-signature"].split()) == 2, "two signatures")
            st, _, rot2 = s.post(f"{HOOKS}/h/rotate", {"graceSeconds": 0})
            append(s, "a", 1)
            g = r.wait(2)[1]
            check(verify(rot2["secret"], g) and not verify(rot["secret"], g), "only the newest")
            expect_error(s.post(f"{HOOKS}/nope/rotate", {}), 404, "webhook_not_found")
    finally:
        r.close()


def test_delivery_resumes_after_a_restart():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            create(s, name="h", url=r.url(), retry={"maxAttempts": 20, "backoffMs": 100})
            append(s, "a", 1)
            r.wait(1)
            time.sleep(0.3)
            r.plan = [500] * 1000  # the receiver breaks
            append(s, "a", 2)
            r.wait(2)
            s.kill9()
            r.plan = []
            s.start()
            got = r.wait(3)
            time.sleep(0.5)
            ok = [e["position"] for g in r.got if g["status"] == 200
                  for e in json.loads(g["body"])["events"]]
            check(ok[0] == 1 and sorted(set(ok)) == [1, 2, 3], f"all delivered: {ok}")
            check(ok.count(1) == 1, "the batch acknowledged before the crash is not sent again")
            check(s.get(f"{HOOKS}/h")[2]["checkpoint"] >= 3, "checkpoint")
    finally:
        r.close()


def test_validation_scope_and_deletion():
    r = Receiver()
    try:
        with Server(extra=ALLOW) as s:
            u = r.url()
            bad = [({"name": "x", "url": u, "headers": {"Content-Type": "x"}}, "headers.Content-Type"),
                   ({"name": "x", "url": u, "headers": {"X-A": "a\r\nb"}}, "headers.X-A"),
                   ({"name": "x", "url": u, "headers": {f"X-{i}": "v" for i in range(11)}}, "headers"),
                   ({"name": "x", "url": u, "retry": {"maxAttempts": 0}}, "retry.maxAttempts"),
                   ({"name": "x", "url": u, "retry": {"other": 1}}, "retry.other"),
                   ({"name": "x", "url": u, "extra": 1}, "extra"),
                   ({"name": "bad name", "url": u}, "name"),
                   ({"name": "x", "url": u, "from": 0}, "from"),
                   ({"name": "x"}, "url")]
            for body, field in bad:
                expect_error(s.post(HOOKS, body), 400, None, field)
            create(s, name="h", url=u)
            expect_error(s.post(HOOKS, {"name": "h", "url": u}), 409, "webhook_exists")
            check(s.request("DELETE", f"{HOOKS}/h")[0] == 204, "delete")
            expect_error(s.get(f"{HOOKS}/h"), 404, "webhook_not_found")
            append(s, "a", 1)
            time.sleep(0.3)
            check(r.got == [], "a deleted webhook sends nothing")
            s.restart()
            check(s.get(HOOKS)[2]["webhooks"] == [], "deleted for good")
        s = Server(start=False, extra=ALLOW)
        try:
            key = cli_keys(s.data, "write")["write"]
            s.start()
            st, _, _ = s.request("POST", HOOKS, {"name": "h", "url": u},
                                 headers={"Authorization": f"Bearer {key}"})
            check(st == 403, f"webhooks need an admin key: {st}")
        finally:
            s.cleanup()
    finally:
        r.close()


def test_damaged_state_is_never_rewritten_and_allowed_names_reach_their_host():
    """Regressions: a webhooks.json that failed to load was saved back with only the webhooks
    read before the damage (secrets of the others lost); and a host name allowed with
    --webhook-allow passed at creation but its address was refused at connect time."""
    r = Receiver()
    try:
        with Server(extra=["--webhook-allow", "localhost"]) as s:
            h = create(s, name="h1", url=f"http://localhost:{r.port}/hook")
            create(s, name="h2", url=f"http://localhost:{r.port}/hook")
            append(s, "a", 1)
            got = r.wait(2)
            check(any(verify(h["secret"], g) for g in got), "delivered to the allowed name")
            s.stop()
            path = f"{s.data}/dbs/{DB}/webhooks.json"
            doc = json.load(open(path))
            doc["webhooks"][1]["secret"] = 7  # damage the second one
            damaged = json.dumps(doc).encode()
            open(path, "wb").write(damaged)
            check(not s.try_start(timeout=10), "a damaged state file stops the start")
            check(open(path, "rb").read() == damaged, "the file was left as it was")
    finally:
        r.close()
