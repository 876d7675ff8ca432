"""Helpers for the EvidentSource dialect's tests: a client for its paths (under /evidentsource,
or at the root of the dialect's own port), CloudEvents and checks of its error envelope."""
import http.client
import json
import uuid

from harness import check


class Es:
    """Speaks EvidentSource to a harness Server: base is "/evidentsource", or "" with port set
    to the dialect's own listener. key goes as X-API-Key (bearer=True: Authorization)."""

    def __init__(self, server, base="/evidentsource", key=None, port=None, bearer=False):
        self.s = server
        self.base = base
        self.key = key
        self.port = port
        self.bearer = bearer

    def request(self, method, path, body=None, headers=None, raw=None):
        hdrs = {}
        if self.key:
            if self.bearer:
                hdrs["Authorization"] = f"Bearer {self.key}"
            else:
                hdrs["X-API-Key"] = self.key
        hdrs.update(headers or {})
        conn = None
        if self.port:
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

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def database(self, name):
        st, _, b = self.post("/databases", {"name": name})
        check(st == 201, f"create database {name}: {st} {b}")
        return b["database"]

    def append(self, db, events, constraints=None):
        body = {"events": events}
        if constraints is not None:
            body["constraints"] = constraints
        return self.post(f"/databases/{db}/events", body)


def ce(type_="TestEvent", source="test-app", data=None, **attrs):
    """A CloudEvent with a fresh id."""
    ev = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": type_,
          "data": data if data is not None else {"message": "hello"}}
    ev.update(attrs)
    return ev


def es_error(resp, status, code, **details):
    """Asserts EvidentSource's envelope {"error":{"code","message","details"}}."""
    st, hdrs, body = resp
    check(st == status, f"expected {status} {code}, got {st} {body!r}")
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"not EvidentSource's error envelope: {body!r}")
    err = body["error"]
    check(err.get("code") == code, f"expected code {code}: {body!r}")
    check(isinstance(err.get("message"), str) and err["message"], f"no message: {body!r}")
    check(isinstance(err.get("details"), dict), f"no details object: {body!r}")
    for k, v in details.items():
        check(err["details"].get(k) == v, f"details.{k} {err['details'].get(k)!r} != {v!r}")
    return body


def dumps(x):
    return json.dumps(x, separators=(",", ":"))
