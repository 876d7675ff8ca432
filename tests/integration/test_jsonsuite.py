"""JSONTestSuite (test_parsing) through the append endpoint: each file becomes one event's data,
{"events":[{"type":"t","data":<file bytes>}]}. y_* must be accepted (201) and read back equal,
n_* refused with 400 invalid_json/invalid_request, i_* either 201 or 400 (never 5xx, no hang)."""
import json
import os
import socket

from harness import SHARED_TESTDATA, Server, Skip, check

SUITE = os.path.join(SHARED_TESTDATA, "JSONTestSuite", "test_parsing")
PATH = "/v1/databases/default/streams/suite/events"
PREFIX = b'{"events":[{"type":"t","data":'
SUFFIX = b'}]}'


def files():
    if not os.path.isdir(SUITE):
        raise Skip(f"JSONTestSuite not found at {SUITE} (expected beside the repo in "
                   f"../shared/testdata); suite skipped")
    names = sorted(f for f in os.listdir(SUITE) if f.endswith(".json"))
    check(names, f"no .json files in {SUITE}")
    return names


class Client:
    """Keep-alive client that reconnects after the server closes a connection."""

    def __init__(self, s):
        self.s, self.c = s, None

    def post(self, body):
        for attempt in range(2):
            if self.c is None:
                self.c = self.s.connect(timeout=20)
            try:
                return self.s.request("POST", PATH, body=body,
                                      headers={"Content-Type": "application/json"}, conn=self.c)
            except (ConnectionError, OSError) as e:
                if isinstance(e, socket.timeout):
                    raise AssertionError("no answer within 20 s")
                self.c.close()
                self.c = None
                if attempt:
                    raise
        return None

    def close(self):
        if self.c is not None:
            self.c.close()


def strict_load(raw):
    def no_const(c):
        raise ValueError(f"non-JSON constant {c}")
    return json.loads(raw.decode("utf-8"), parse_constant=no_const)


def test_json_test_suite():
    names = files()
    mismatches = []
    with Server() as s:
        cl = Client(s)
        accepted = []  # (name, position, raw)
        for name in names:
            with open(os.path.join(SUITE, name), "rb") as f:
                raw = f.read()
            try:
                st, _, body = cl.post(PREFIX + raw + SUFFIX)
            except AssertionError as e:
                mismatches.append(f"{name}: {e}")
                cl.close()
                cl = Client(s)
                continue
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            kind = name[0]
            if not isinstance(body, dict):
                mismatches.append(f"{name}: {st} with a body that is not valid UTF-8 JSON: "
                                  f"{body[:160]!r}")
            elif st >= 500 or st not in (201, 400):
                mismatches.append(f"{name}: {st} {str(body)[:160]}")
            elif kind == "y" and st != 201:
                mismatches.append(f"{name} (must be accepted): 400 {code}: "
                                  f"{body['error'].get('message', '')[:120]}")
            elif kind == "n" and st != 400:
                mismatches.append(f"{name} (must be refused): {st}")
            elif st == 400 and code not in ("invalid_json", "invalid_request", "invalid_event"):
                mismatches.append(f"{name}: 400 with code {code!r}")
            if st == 201:
                accepted.append((name, body["position"], raw))
        cl.close()
        # what was accepted reads back as the same JSON value
        for name, pos, raw in accepted:
            st, _, ev = s.get(f"/v1/databases/default/events/{pos}")
            if st != 200 or not isinstance(ev, dict):
                mismatches.append(f"{name}: read back {st}, not valid JSON: {ev[:160]!r}"
                                  if isinstance(ev, bytes) else
                                  f"{name}: read back {st} {str(ev)[:160]}")
                continue
            try:
                want = strict_load(raw)
            except (ValueError, UnicodeDecodeError):
                continue  # an i_* file Python will not parse; the server's choice stands
            if ev["data"] != want and not (want != want):
                mismatches.append(f"{name}: read back {ev['data']!r}, sent {want!r}")
        st, _, _ = s.get("/health")
        check(st == 200, "server unhealthy after the suite")
    check(not mismatches, f"{len(mismatches)} JSONTestSuite mismatches:\n  " +
          "\n  ".join(mismatches))


def test_deep_nesting():
    with Server() as s:
        for depth in (100000, 10000, 1000, 65):
            body = PREFIX + b"[" * depth + SUFFIX
            st, _, ans = s.post(PATH, body, headers={"Content-Type": "application/json"})
            check(st == 400 and ans["error"]["code"] == "invalid_json",
                  f"{depth} '[': {st} {str(ans)[:200]}")
            body = PREFIX + b"[" * depth + b"]" * depth + SUFFIX
            st, _, ans = s.post(PATH, body, headers={"Content-Type": "application/json"})
            check(st == 400 and ans["error"]["code"] == "invalid_json",
                  f"{depth} balanced '[]': {st} {str(ans)[:200]}")
        # the wrapper takes 3 levels ({ [ {); 64 in all is allowed, 65 is not
        ok = PREFIX + b"[" * 61 + b"]" * 61 + SUFFIX
        st, _, ans = s.post(PATH, ok, headers={"Content-Type": "application/json"})
        check(st == 201, f"depth 64 in all: {st} {ans!r}")
        too = PREFIX + b"[" * 62 + b"]" * 62 + SUFFIX
        st, _, ans = s.post(PATH, too, headers={"Content-Type": "application/json"})
        check(st == 400 and ans["error"]["code"] == "invalid_json", f"depth 65: {st} {ans!r}")
        deep_obj = PREFIX + b'{"a":' * 61 + b"1" + b"}" * 61 + SUFFIX
        st, _, ans = s.post(PATH, deep_obj, headers={"Content-Type": "application/json"})
        check(st == 201, f"objects, depth 64 in all: {st} {ans!r}")
        check(s.head() == 2, f"head {s.head()}")
        st, _, _ = s.get("/health")
        check(st == 200, "health")
