"""j17 listeners over the real server (seed 000, docs/dialects/j17.md "Listeners"): a spec's
listener POSTs each matching event to its URL, signed with X-J17-Signature (hex HMAC-SHA256
of the raw body with the listener's secret); events that do not match are not delivered; a
failed delivery is retried; a redeploy without the listener stops deliveries."""
import hashlib
import hmac
import http.server
import json
import threading
import time

from j17_client import ACTOR, J17, O1, P1, U1, U2, dev_server, sample_spec
from harness import check, wait_until

SECRET = "s3cret"


class Receiver:
    """A local HTTP server that records every POST (path, headers, raw body) and answers with
    the next status of `statuses` (then 200)."""

    def __init__(self, statuses=()):
        self.got = []
        self.statuses = list(statuses)
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    rec.got.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                    body))
                    status = rec.statuses.pop(0) if rec.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def deliveries(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def listener_spec(url, **more):
    spec = sample_spec()
    spec["listeners"] = {"audit": dict({"url": url, "secret": SECRET,
                                        "event_types": ["user.was_created"]}, **more)}
    return spec


def signature_ok(headers, body):
    want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    got = headers.get("x-j17-signature", "")
    return hmac.compare_digest(got, "sha256=" + want)  # docs/dialects/j17.md, "Listeners"


def test_matching_events_are_delivered_signed():
    with Receiver() as rec:
        s, j = dev_server(extra=["--webhook-allow", "127.0.0.1"],
                          spec=listener_spec(rec.url()))
        with s:
            j.ok_write("user", U1, "did_log_in", {})          # not matching: another type
            w1 = j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
            j.ok_write("order", O1, "was_placed", {"items": [{"product_id": P1, "qty": 1}],
                                                   "total": 1})
            w2 = j.ok_write("user", U2, "was_created", {"email": "b@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 2, timeout=15),
                  f"two deliveries: {rec.deliveries()}\n{s.log()[-2000:]}")
            # the writes after the last matching one were not delivered either
            j.ok_write("user", U2, "had_tag_added", {"tag": "x"})
            j.ok_write("user", O1, "was_created", {"email": "c@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 3, timeout=15),
                  f"a third: {rec.deliveries()}")
            time.sleep(0.5)
            got = rec.deliveries()
            check(len(got) == 3, f"only user.was_created is delivered: {got}")
            bodies = []
            for path, headers, raw in got:
                check(path == "/hook", f"{path}")
                check(headers.get("content-type", "").startswith("application/json"),
                      f"{headers}")
                check(signature_ok(headers, raw),
                      f"X-J17-Signature is hex HMAC-SHA256(secret, body): {headers} {raw!r}")
                b = json.loads(raw)
                check({"listener", "instance", "attempt", "event"} <= set(b), f"{b}")
                check(b["listener"] == "audit" and b["instance"] == "default" and
                      b["attempt"] == 1, f"{b}")
                bodies.append(b)
            ev = {b["event"]["key"]: b["event"] for b in bodies}
            e1 = ev.get(f"user:{U1}")
            check(e1 is not None, f"{bodies}")
            check(e1.get("type") == "was_created" and
                  e1.get("data") == {"email": "a@example.com"}, f"{e1}")
            check(e1.get("stream_id") == w1["stream_id"], f"the event's stream id: {e1} {w1}")
            check(e1.get("metadata", {}).get("actor") == ACTOR["actor"], f"{e1}")
            check(ev.get(f"user:{U2}", {}).get("stream_id") == w2["stream_id"], f"{ev}")
            check(all(e["type"] == "was_created" for e in ev.values()), f"{ev}")


def test_filters_by_aggregate_type_and_implied_events_are_delivered():
    with Receiver() as rec:
        spec = sample_spec()
        spec["listeners"] = {"stock": {"url": rec.url("/stock"), "secret": SECRET,
                                       "aggregate_types": ["product", "ledger"]}}
        s, j = dev_server(extra=["--webhook-allow", "127.0.0.1"], spec=spec)
        with s:
            j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
            j.ok_write("order", O1, "was_placed", {"items": [{"product_id": P1, "qty": 1}],
                                                   "total": 1})
            check(wait_until(lambda: len(rec.deliveries()) >= 2, timeout=15),
                  f"{rec.deliveries()}")
            time.sleep(0.5)
            got = [json.loads(raw)["event"] for _, _, raw in rec.deliveries()]
            check(sorted(e["key"] for e in got) == sorted([f"product:{P1}", "ledger:global"]),
                  f"the implied product and ledger events only: {got}")


def test_redeploy_without_the_listener_stops_deliveries():
    with Receiver() as rec:
        s, j = dev_server(extra=["--webhook-allow", "127.0.0.1"],
                          spec=listener_spec(rec.url()))
        with s:
            j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 1, timeout=15), "delivered")
            j.ok_deploy(sample_spec())
            j.ok_write("user", U2, "was_created", {"email": "b@example.com"})
            # a listener deployed to another instance environment proves deliveries still run
            with Receiver() as other:
                J17(s, "staging").ok_deploy(listener_spec(other.url()), environment="staging")
                J17(s, "staging").ok_write("user", U2, "was_created", {"email": "b@example.com"})
                check(wait_until(lambda: len(other.deliveries()) >= 1, timeout=15),
                      "staging's listener")
            time.sleep(0.5)
            check(len(rec.deliveries()) == 1, f"the deleted listener got more: {rec.deliveries()}")


def test_staging_listener_names_the_instance():
    with Receiver() as rec:
        with dev_server(extra=["--webhook-allow", "127.0.0.1"])[0] as s:
            staging = J17(s, "staging")
            staging.ok_deploy(listener_spec(rec.url()), environment="staging")
            staging.ok_write("user", U2, "was_created", {"email": "b@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 1, timeout=15), "delivered")
            _, h, raw = rec.deliveries()[0]
            check(signature_ok(h, raw), f"{h}")
            b = json.loads(raw)
            check(b["listener"] == "audit" and b["event"]["key"] == f"user:{U2}", f"{b}")
            check(b["instance"] == "default" and b.get("environment") == "staging",
                  f"the instance is `default` (its staging database is default-staging): {b}")


def test_listener_to_a_private_address_needs_webhook_allow():
    with Receiver() as rec:
        s, j = dev_server()
        with s:
            st, _, b = j.deploy(listener_spec(rec.url()))
            if st == 200:
                j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
                time.sleep(1.0)
                check(rec.deliveries() == [], f"delivered to loopback without "
                      f"--webhook-allow: {rec.deliveries()}")
            else:
                check(st == 422, f"{st} {b}")


def test_failed_delivery_is_retried():
    with Receiver(statuses=[500]) as rec:
        s, j = dev_server(extra=["--webhook-allow", "127.0.0.1"],
                          spec=listener_spec(rec.url()))
        with s:
            j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 2, timeout=30),
                  f"a retry after the 500: {rec.deliveries()}")
            (_, h1, raw1), (_, h2, raw2) = rec.deliveries()[:2]
            b1, b2 = json.loads(raw1), json.loads(raw2)
            check(b1["attempt"] == 1 and b2["attempt"] == 2, f"{b1} {b2}")
            check(b1["event"] == b2["event"], f"the same event: {b1} {b2}")
            check(signature_ok(h1, raw1) and signature_ok(h2, raw2), "both signed")
            time.sleep(0.5)
            check(len(rec.deliveries()) == 2, f"no more after a 200: {rec.deliveries()}")


def test_a_new_secret_signs_from_the_redeploy_on_and_no_event_is_lost():
    with Receiver() as rec:
        s, j = dev_server(extra=["--webhook-allow", "127.0.0.1"],
                          spec=listener_spec(rec.url()))
        with s:
            j.ok_write("user", U1, "was_created", {"email": "a@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 1, timeout=15), "delivered")
            # the same definition: kept as it is (nothing delivered twice)
            j.ok_deploy(listener_spec(rec.url()))
            j.ok_deploy(listener_spec(rec.url(), secret="n3w-secret"))
            j.ok_write("user", U2, "was_created", {"email": "b@example.com"})
            check(wait_until(lambda: len(rec.deliveries()) >= 2, timeout=15), "delivered")
            time.sleep(0.5)
            got = rec.deliveries()
            check(len(got) == 2, f"one delivery per event: {[json.loads(b) for _, _, b in got]}")
            _, h, raw = got[1]
            want = hmac.new(b"n3w-secret", raw, hashlib.sha256).hexdigest()
            check(h.get("x-j17-signature") == "sha256=" + want, f"signed with the new secret: {h}")
            # the webhook's meta (shown by the native API) holds nothing derived from it
            st, _, b = s.get("/v1/databases/default/webhooks")
            check("n3w-secret" not in json.dumps(b) and "s3cret" not in json.dumps(b) and
                  "secret_sha256" not in json.dumps(b), f"{st} {b}")
