"""Helpers for the Hapnd dialect's tests: a client for its paths (under /hapnd, or at the root
of the dialect's own port), checks of Hapnd's shapes (event ids, times, the error envelope
{"error","errorCode"}) and native set-up (databases, keys, reducers) done over /v1."""
import datetime
import http.client
import json
import re

from harness import check, parse_body, quote

EVENT_ID = re.compile(r"^evt_[0-9a-f]{32}$")
TIME_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Hapnd:
    """Speaks Hapnd to a harness Server: base is "/hapnd", or "" with port set to the dialect's
    own listener. key goes as X-API-Key (the only header Hapnd reads a key from)."""

    def __init__(self, server, base="/hapnd", key=None, port=None):
        self.s = server
        self.base = base
        self.key = key
        self.port = port

    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port or self.s.port, timeout=30)

    def raw(self, method, path, body=None, headers=None):
        """One request; (status, headers with lower-case names, the answer's bytes). body: a
        dict/list (sent as JSON with Content-Type application/json), str or bytes (as is)."""
        hdrs = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if self.key:
            hdrs["X-API-Key"] = self.key
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        conn = self._conn()
        try:
            conn.request(method, self.base + path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def request(self, method, path, body=None, headers=None):
        """As raw, with the answer parsed as JSON when it parses."""
        st, h, data = self.raw(method, path, body, headers)
        return st, h, parse_body(data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    # ---- Hapnd calls ----

    def append(self, aggregate_id, event_type="ItemAdded", data=None, **extra):
        """POST /events; extra: aggregateType, expectedVersion, correlationId, ... (a value
        None leaves the member out)."""
        body = {"aggregateId": aggregate_id, "eventType": event_type,
                "data": data if data is not None else {"item": "Widget", "price": 25.0}}
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        return self.post("/events", body)

    def ok_append(self, aggregate_id, event_type="ItemAdded", data=None, **extra):
        st, _, b = self.append(aggregate_id, event_type, data, **extra)
        check(st == 201, f"append to {aggregate_id!r}: {st} {b!r}")
        return b

    def batch(self, aggregate_id, events, **extra):
        body = {"aggregateId": aggregate_id, "events": events}
        body.update(extra)
        return self.post("/events/batch", body)

    def ok_batch(self, aggregate_id, events, **extra):
        st, _, b = self.batch(aggregate_id, events, **extra)
        check(st == 201, f"batch to {aggregate_id!r}: {st} {b!r}")
        return b

    def events(self, aggregate_id, query=""):
        """GET /events/{aggregateId} (the id percent-encoded): the answer's body, after
        checking 200."""
        st, _, b = self.get(f"/events/{quote(aggregate_id)}{query}")
        check(st == 200, f"GET /events/{aggregate_id}{query}: {st} {b!r}")
        check(isinstance(b, dict) and isinstance(b.get("events"), list), f"{b!r}")
        return b

    def versions(self, aggregate_id):
        return [e["version"] for e in self.events(aggregate_id)["events"]]


def ev(event_type="ItemAdded", data=None, **extra):
    """One event of a batch."""
    e = {"eventType": event_type, "data": data if data is not None else {"n": 1}}
    e.update(extra)
    return e


def hapnd_error(resp, status, code, field=None):
    """Asserts Hapnd's envelope {"error": "<text>", "errorCode": code} with status."""
    st, _, body = resp
    check(st == status, f"expected {status} {code}, got {st} {body!r}")
    check(isinstance(body, dict), f"not a JSON object: {body!r}")
    check(isinstance(body.get("error"), str) and body["error"],
          f"no error text (a non-empty string) in {body!r}")
    check(body.get("errorCode") == code, f"expected errorCode {code}, got {body!r}")
    if field is not None:
        check(body.get("field") == field, f"expected field {field!r}: {body!r}")
    return body


def check_time(t, what="timestamp", near_now=True):
    """A time as Hapnd writes it (milliseconds, Z), and, unless near_now is False, within a
    minute of now."""
    check(isinstance(t, str) and TIME_MS.match(t), f"{what} {t!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ")
    if near_now:
        when = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
        now = datetime.datetime.now(datetime.timezone.utc)
        check(abs((now - when).total_seconds()) < 60, f"{what} {t} is not now ({now})")


def check_event_id(i):
    check(isinstance(i, str) and EVENT_ID.match(i), f"eventId {i!r} is not evt_ + 32 hex")


# ---- native set-up ----

def bearer(key):
    return {"Authorization": f"Bearer {key}"} if key else {}


def create_database(s, name, description=None, admin=None):
    body = {"name": name}
    if description is not None:
        body["description"] = description
    st, _, b = s.post("/v1/databases", body, headers=bearer(admin))
    check(st == 201, f"create database {name}: {st} {b!r}")


def create_key(s, scope, database=None, admin=None):
    """A key made with POST /v1/keys: (key, its id)."""
    body = {"scope": scope}
    if database is not None:
        body["database"] = database
    st, _, b = s.post("/v1/keys", body, headers=bearer(admin))
    check(st == 201, f"create key {scope} {database}: {st} {b!r}")
    return b["key"], b["apiKey"]["id"]


def deploy_reducer(s, name, category, source, db="default", admin=None, event_format="hapnd"):
    body = {"kind": "reducer", "language": "lua", "category": category, "source": source}
    if event_format:
        body["eventFormat"] = event_format
    st, _, b = s.request("PUT", f"/v1/databases/{db}/components/{name}", body,
                         headers=bearer(admin))
    check(st in (200, 201), f"deploy reducer {name}: {st} {b!r}")
    return b
