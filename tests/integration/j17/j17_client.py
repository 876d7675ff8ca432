"""Helpers for the j17 dialect's tests (docs/dialects/j17.md, seed 000): a client for the three
mounts (/j17, /j17-staging, /j17-test) that sends keys as `Authorization: Bearer`, spec deploys
through the admin API, a realistic sample spec, and checks of j17's shapes (stream ids, the
error envelope {"ok":false,"error","path"?})."""
import copy
import http.client
import json
import re

from harness import Server, check, cli_keys, parse_body

STREAM_ID = re.compile(r"^(\d+)-(\d+)$")

# Identifiers that pass j17's rule (UUID v4/v5, humane codes).
ALICE = "550e8400-e29b-41d4-a716-446655440000"
BOB = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
U1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
U2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
U3 = "3b241101-e2bb-4255-8caf-4136c566a962"
P1 = "a3bb189e-8bf9-4888-9912-ace4e6543002"
P2 = "c56a4180-65aa-42ec-a945-5fd21dec0538"
O1 = "9b2e4d8a-3c1f-4e6b-8a7d-2f5c9e1b0a34"

ACTOR = {"actor": {"type": "user", "id": ALICE}}

MOUNTS = {"prod": "/j17", "staging": "/j17-staging", "test": "/j17-test"}


def sample_spec():
    """A shop: users (schemas with format email and nested objects; handlers set, merge,
    append, increment, if/then/else), orders whose placement implies product reservations
    (map), a big-order notice on the user (emit with a condition) and ledger entries (a chained
    implication of the reservation), settings as a declared singleton."""
    return copy.deepcopy({
        "aggregate_types": {
            "user": {"events": {
                "was_created": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "email": {"type": "string", "format": "email"},
                            "name": {"type": "string"},
                            "address": {
                                "type": "object",
                                "properties": {"zip": {"type": "string",
                                                       "pattern": "^[0-9]{5}$"}},
                            },
                        },
                        "required": ["email"],
                    },
                    "handler": [
                        {"set": {"target": "", "value": "$.data"}},
                        {"set": {"target": "created_at", "value": "$.metadata.timestamp"}},
                    ],
                },
                "had_email_updated": {
                    "schema": {"type": "object",
                               "properties": {"email": {"type": "string", "format": "email"}},
                               "required": ["email"]},
                    "handler": {"merge": {"target": "", "value": {"email": "$.data.email"}}},
                },
                "had_tag_added": {
                    "schema": {"type": "object",
                               "properties": {"tag": {"type": "string"}},
                               "required": ["tag"]},
                    "handler": [{"append": {"target": "tags", "value": "$.data.tag"}}],
                },
                "did_log_in": {
                    "schema": {"type": "object",
                               "properties": {"method": {"type": "string"}}},
                    "handler": [
                        {"increment": {"target": "logins"}},
                        {"if": {"equals": ["$.data.method", "sso"]},
                         "then": [{"set": {"target": "last_login", "value": "sso"}}],
                         "else": [{"set": {"target": "last_login", "value": "password"}}]},
                    ],
                },
                "had_big_order": {
                    "schema": {"type": "object",
                               "properties": {"order_id": {"type": "string"},
                                              "total": {"type": "number"}},
                               "required": ["order_id", "total"]},
                    "handler": [{"append": {"target": "big_orders", "value": "$.data.order_id"}}],
                },
                "was_noted": {
                    "schema": {"type": "object"},
                    "handler": [],
                },
            }},
            "order": {"events": {
                "was_placed": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": {
                                "type": "object",
                                "properties": {"product_id": {"type": "string"},
                                               "qty": {"type": "integer"}},
                                "required": ["product_id", "qty"]}},
                            "total": {"type": "number"},
                        },
                        "required": ["items", "total"],
                    },
                    "handler": [{"set": {"target": "", "value": "$.data"}},
                                {"set": {"target": "status", "value": "placed"}}],
                    "implications": [
                        {"map": {"over": "$.data.items",
                                 "emit": {"aggregate_type": "product",
                                          "id": "$.item.product_id",
                                          "event_type": "was_reserved",
                                          "data": {"qty": "$.item.qty", "order_id": "$.id"}}}},
                        {"condition": {"gt": ["$.data.total", 100]},
                         "emit": {"aggregate_type": "user", "id": "$.metadata.actor.id",
                                  "event_type": "had_big_order",
                                  "data": {"order_id": "$.id", "total": "$.data.total"}}},
                    ],
                },
                "was_shipped": {
                    "schema": {"type": "object"},
                    "handler": {"set": {"target": "status", "value": "shipped"}},
                },
            }},
            "product": {"events": {
                "was_stocked": {
                    "schema": {"type": "object", "properties": {"qty": {"type": "integer"}},
                               "required": ["qty"]},
                    "handler": {"increment": {"target": "stock", "by": "$.data.qty"}},
                },
                "was_reserved": {
                    "schema": {"type": "object",
                               "properties": {"qty": {"type": "integer", "minimum": 1},
                                              "order_id": {"type": "string"}},
                               "required": ["qty"]},
                    "handler": [{"increment": {"target": "reserved", "by": "$.data.qty"}},
                                {"append": {"target": "orders", "value": "$.data.order_id"}}],
                    "implications": [
                        {"emit": {"aggregate_type": "ledger", "id": "global",
                                  "event_type": "had_entry",
                                  "data": {"product": "$.id", "qty": "$.data.qty"}}},
                    ],
                },
            }},
            "ledger": {"events": {
                "had_entry": {
                    "schema": {"type": "object"},
                    "handler": [{"append": {"target": "entries", "value": "$.data"}},
                                {"increment": {"target": "count"}}],
                },
            }},
            "settings": {"events": {
                "were_changed": {
                    "schema": {"type": "object"},
                    "handler": {"merge": {"target": "", "value": "$.data"}},
                },
            }},
        },
        "agent_types": ["user", "system"],
        "target_types": ["product"],
        "singletons": ["shop_settings"],
        "modules": {"cache": ["user"]},
    })


class J17:
    """Speaks j17 to a harness Server: env picks the mount (/j17, /j17-staging, /j17-test),
    or base gives it ("" with port set for a dialect's own listener). key goes as
    `Authorization: Bearer`."""

    def __init__(self, server, env="prod", key=None, base=None, port=None):
        self.s = server
        self.base = MOUNTS[env] if base is None else base
        self.key = key
        self.port = port

    def with_key(self, key):
        return J17(self.s, key=key, base=self.base, port=self.port)

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
            hdrs["Authorization"] = f"Bearer {self.key}"
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        conn = http.client.HTTPConnection("127.0.0.1", self.port or self.s.port, timeout=30)
        try:
            conn.request(method, self.base + path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def request(self, method, path, body=None, headers=None):
        st, h, data = self.raw(method, path, body, headers)
        return st, h, parse_body(data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    # ---- data plane ----

    def write(self, agg_type, agg_id, event_type, data=None, metadata=None, headers=None):
        """POST /{type}/{id}/{event_type}; metadata defaults to an actor user ALICE."""
        body = {"data": data if data is not None else {},
                "metadata": metadata if metadata is not None else ACTOR}
        return self.post(f"/{agg_type}/{agg_id}/{event_type}", body, headers=headers)

    def ok_write(self, agg_type, agg_id, event_type, data=None, metadata=None):
        st, _, b = self.write(agg_type, agg_id, event_type, data, metadata)
        check(st == 201, f"write {agg_type}/{agg_id}/{event_type}: {st} {b!r}")
        return b

    def batch(self, agg_type, agg_id, events, metadata=None, headers=None):
        body = {"events": events, "metadata": metadata if metadata is not None else ACTOR}
        return self.post(f"/{agg_type}/{agg_id}", body, headers=headers)

    def state(self, agg_type, agg_id, query=""):
        """GET /{type}/{id}: (status, body)."""
        st, _, b = self.get(f"/{agg_type}/{agg_id}{query}")
        return st, b

    def ok_state(self, agg_type, agg_id, query=""):
        st, b = self.state(agg_type, agg_id, query)
        check(st == 200, f"GET {agg_type}/{agg_id}{query}: {st} {b!r}")
        return b

    def length(self, agg_type, agg_id):
        st, _, b = self.get(f"/{agg_type}/{agg_id}/length")
        check(st == 200 and isinstance(b, dict) and b.get("ok") is True,
              f"GET {agg_type}/{agg_id}/length: {st} {b!r}")
        return b["length"]

    def events(self, agg_type, agg_id, query=""):
        st, _, b = self.get(f"/{agg_type}/{agg_id}/events{query}")
        check(st == 200 and isinstance(b, dict) and isinstance(b.get("events"), list),
              f"GET {agg_type}/{agg_id}/events{query}: {st} {b!r}")
        return b

    # ---- admin API ----

    def deploy(self, spec, instance="default", environment=None, force=None, raw=False):
        """POST /api/instances/{instance}/spec: the wrapped form {"environment","spec",
        "force"?} unless raw (the spec itself, for prod)."""
        if raw:
            body = spec
        else:
            body = {"environment": environment or "prod", "spec": spec}
            if force is not None:
                body["force"] = force
        return self.post(f"/api/instances/{instance}/spec", body)

    def ok_deploy(self, spec, instance="default", environment=None, force=None):
        st, _, b = self.deploy(spec, instance, environment, force)
        check(st == 200, f"deploy to {instance}/{environment or 'prod'}: {st} {b!r}")
        return b

    def create_key(self, instance, name="k", scope="write", environment="prod"):
        st, _, b = self.post(f"/api/instances/{instance}/keys",
                             {"name": name, "scope": scope, "environment": environment})
        check(st == 201, f"create key {scope}/{environment}: {st} {b!r}")
        return b


def j17_error(resp, status, error=None, path=None):
    """Asserts j17's error envelope {"ok":false,"error":"<text>"} with status; error, when
    given, must be a substring of the text (case-insensitive); path, when given, must equal
    the answer's path."""
    st, _, body = resp
    check(st == status, f"expected {status}, got {st} {body!r}")
    check(isinstance(body, dict), f"not a JSON object: {body!r}")
    check(body.get("ok") is False, f"ok is not false: {body!r}")
    check(isinstance(body.get("error"), str) and body["error"], f"no error text: {body!r}")
    if error is not None:
        check(error.lower() in body["error"].lower(), f"expected error {error!r}: {body!r}")
    if path is not None:
        check(body.get("path") == path, f"expected path {path!r}: {body!r}")
    return body


def stream_seq(stream_id):
    """(ms, seq) of a stream id "<ms>-<seq>", after checking its shape."""
    m = STREAM_ID.match(stream_id) if isinstance(stream_id, str) else None
    check(m is not None, f"stream id {stream_id!r} is not <ms>-<seq>")
    return int(m.group(1)), int(m.group(2))


def dev_server(extra=None, spec=None):
    """A server without keys (development mode: the mounts serve instance `default`), with
    the sample spec (or spec) deployed to prod: (server, J17 client)."""
    s = Server(extra=extra)
    j = J17(s)
    try:
        j.ok_deploy(spec if spec is not None else sample_spec())
    except BaseException:
        s.cleanup()
        raise
    return s, j


def keyed_server(extra=None):
    """A server with keys on: (server, an Annals admin key for every database)."""
    s = Server(start=False, extra=extra)
    admin = cli_keys(s.data, "admin")["admin"]
    s.start()
    return s, admin
