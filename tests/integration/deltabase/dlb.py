"""Helpers for the DeltaBase dialect's tests: a client for its paths (under /deltabase, or at
the root of the dialect's own port) and checks of its error envelope."""
import json

import harness
from harness import check


class Dlb:
    """Speaks DeltaBase to a harness Server: base is "/deltabase", or "" with port set to the
    dialect's own listener."""

    def __init__(self, server, base="/deltabase", key=None, port=None):
        self.s = server
        self.base = base
        self.key = key
        self.port = port

    def request(self, method, path, body=None, headers=None, raw=None):
        hdrs = {}
        if self.key:
            hdrs["Authorization"] = f"Bearer {self.key}"
        hdrs.update(headers or {})
        conn = None
        if self.port:
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            return self.s.request(method, self.base + path,
                                  raw if raw is not None else body, headers=hdrs, conn=conn)
        finally:
            if conn:
                conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def store(self, name, **extra):
        st, _, b = self.post("/event-stores", dict({"name": name}, **extra))
        check(st == 201, f"create store {name}: {st} {b}")
        return b

    def append(self, store, stream, events, expected=None, headers=None):
        body = {"events": events}
        if expected is not None:
            body["expectedStreamVersion"] = expected
        return self.post(f"/event-stores/{store}/streams/{stream}", body, headers=headers)


def dlb_error(resp, status, code, **details):
    """Asserts DeltaBase's envelope {"error":{"code","message","details"}}."""
    st, hdrs, body = resp
    check(st == status, f"expected {status} {code}, got {st} {body!r}")
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"not DeltaBase's error envelope: {body!r}")
    err = body["error"]
    check(err.get("code") == code, f"expected code {code}: {body!r}")
    check(isinstance(err.get("message"), str) and err["message"], f"no message: {body!r}")
    check(isinstance(err.get("details"), dict), f"no details object: {body!r}")
    for k, v in details.items():
        check(err["details"].get(k) == v, f"details.{k} {err['details'].get(k)!r} != {v!r}")
    return body


def dialect_port(server, name="deltabase", timeout=10):
    return harness.dialect_port(server, name, timeout)

def events_of(body):
    return [(e["streamId"], e["streamPosition"], e["globalPosition"], e["type"], e["data"])
            for e in body["events"]]


def dumps(x):
    return json.dumps(x, separators=(",", ":"))
