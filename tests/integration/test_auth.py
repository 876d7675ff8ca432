"""Authentication and authorization (docs/api.md, "Authentication"): API keys with the scopes
read / write / admin, bound to one database or to all; 401 for a missing, unknown, expired or
revoked key (with WWW-Authenticate), 403 for a scope too small, 404 database_not_found for a key
bound to another database; /v1/whoami; the /v1/keys admin API; the `annals keys` command line
on a stopped data directory; development mode (loopback, no keys) and the refusal to listen on
a non-loopback address without keys.

The authorization matrix is built from a table of every route of docs/api.md and tries every
kind of key on each one; destructive routes act on throwaway targets made just before each
attempt, and a refused attempt is checked to have changed nothing."""
import base64
import datetime
import json
import os
import re
import time

import harness
from harness import Server, check, expect_error, run_cli

KEY_RE = re.compile(r"^ak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
KEY_IN_TEXT = re.compile(r"\bak_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
RANK = {"read": 1, "write": 2, "admin": 3}
KEY_FIELDS = {"id", "scope", "database", "name", "created", "notAfter", "rateLimit", "active"}
UNKNOWN_KEY = "ak_0123456789abcdef_" + "A" * 43


# ---------------------------------------------------------------- helpers


def bearer(key):
    return {"Authorization": "Bearer " + key} if key is not None else None


def xkey(key):
    return {"X-API-Key": key} if key is not None else None


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    check(isinstance(s, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", s),
          f"not an RFC 3339 UTC time: {s!r}")
    base, _, frac = s[:-1].partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return dt + datetime.timedelta(microseconds=int((frac + "000000")[:6]) if frac else 0)


def key_id(key):
    m = KEY_RE.match(key)
    check(m, f"not a well-formed key: {key!r}")
    return m.group(1)


def cli_create(data, scope, database=None, name=None, not_after=None):
    """`annals keys create` on a stopped data dir; returns the key printed once."""
    args = ["keys", "create", "--scope", scope, "--data", data]
    if database is not None:
        args += ["--database", database]
    if name is not None:
        args += ["--name", name]
    if not_after is not None:
        args += ["--not-after", not_after]
    rc, out = run_cli(args, timeout=20)
    check(rc == 0, f"annals {' '.join(args)}: exit {rc}: {out}")
    keys = [ln.strip() for ln in out.splitlines() if KEY_RE.match(ln.strip())]
    check(len(keys) == 1, f"annals keys create must print the key once on a line: {out!r}")
    return keys[0]


def api_create(s, admin, body, status=201):
    st, _, b = s.post("/v1/keys", body, headers=bearer(admin))
    check(st == status, f"POST /v1/keys {body!r}: expected {status}, got {st} {b!r}")
    if status != 201:
        return b
    check(isinstance(b, dict) and isinstance(b.get("key"), str) and KEY_RE.match(b["key"]),
          f"POST /v1/keys answer without a well-formed key: {b!r}")
    check(isinstance(b.get("apiKey"), dict) and b["apiKey"].get("id") == key_id(b["key"]),
          f"apiKey.id does not match the key: {b!r}")
    return b


def list_keys(s, admin):
    st, _, b = s.get("/v1/keys", headers=bearer(admin))
    check(st == 200, f"GET /v1/keys: {st} {b!r}")
    check(isinstance(b, dict) and isinstance(b.get("keys"), list), f"GET /v1/keys: {b!r}")
    return b["keys"]


def whoami(s, key, hdr=bearer):
    return s.get("/v1/whoami", headers=hdr(key))


def expect_401(resp, what=""):
    st, h, b = resp
    check(st == 401, f"{what}: expected 401 unauthorized, got {st} {b!r}")
    check(isinstance(b, dict) and b.get("error", {}).get("code") == "unauthorized",
          f"{what}: 401 without error.code unauthorized: {b!r}")
    check(h.get("www-authenticate", "").lower().startswith("bearer"),
          f"{what}: 401 without 'WWW-Authenticate: Bearer': {h!r}")


def works(s, key, hdr=bearer):
    st, _, b = whoami(s, key, hdr)
    return st == 200


# ---------------------------------------------------------------- the route table


class Ctx:
    """One server with an admin key (all databases) and the databases main and other."""

    def __init__(self, s, admin):
        self.s = s
        self.admin = admin  # None in development mode
        self.n = 0

    def uniq(self, prefix):
        self.n += 1
        return f"{prefix}-{self.n}"

    def req(self, method, path, body=None):
        return self.s.request(method, path, body, headers=bearer(self.admin))

    def must(self, method, path, body=None, status=(200, 201, 204)):
        st, _, b = self.req(method, path, body)
        check(st in status, f"setup {method} {path}: {st} {b!r}")
        return b

    def head(self, db="main"):
        return self.must("GET", f"/v1/databases/{db}")["head"]

    def fresh_stream(self):
        name = self.uniq("doomed")
        self.must("POST", f"/v1/databases/main/streams/{name}/events",
                  {"events": [{"type": "t", "data": 0}]})
        return name

    def fresh_db(self):
        name = self.uniq("gone")
        self.must("POST", "/v1/databases", {"name": name})
        return name

    def fresh_sub(self):
        name = self.uniq("sub")
        self.must("POST", "/v1/databases/main/subscriptions", {"name": name})
        return name

    def fresh_key(self):
        return self.must("POST", "/v1/keys", {"scope": "read", "database": "main",
                                              "name": self.uniq("victim")})["key"]


def setup_data(ctx):
    ctx.must("POST", "/v1/databases", {"name": "main"})
    ctx.must("POST", "/v1/databases", {"name": "other"})
    ctx.must("POST", "/v1/databases/main/streams/s1/events",
             {"events": [{"type": "t", "data": 1, "tags": ["k:1"]},
                         {"type": "t", "data": 2, "tags": ["k:1"]}]})
    ctx.must("POST", "/v1/databases/other/streams/s1/events",
             {"events": [{"type": "t", "data": 1}]})
    ctx.must("POST", "/v1/databases/main/streams/meta-s/events",
             {"events": [{"type": "t", "data": 3}]})
    ctx.must("POST", "/v1/databases/main/subscriptions", {"name": "g"})


class Route:
    """method, path template, needed scope ('none', 'any', 'read', 'write', 'admin',
    'admin-all': admin for all databases) and a prepare(ctx) -> (path, body, target db or None,
    key database or None, thing) making a fresh target; unchanged(ctx, thing, before) checks
    that a refused attempt changed nothing."""

    def __init__(self, method, template, scope, prepare=None, body=None, db=None,
                 key_route=None, unchanged=None):
        self.method, self.template, self.scope = method, template, scope
        self._prepare, self.body, self.db = prepare, body, db
        self.key_route = key_route  # 'create' or 'manage' for /v1/keys/{id}...
        self.unchanged = unchanged

    @property
    def name(self):
        return f"{self.method} {self.template}"

    def prepare(self, ctx):
        if self._prepare:
            return self._prepare(ctx)
        return self.template, self.body, self.db, None


def _stream_gone_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/main/streams/{thing}")
    check(st == 200, f"stream {thing} must still be readable after a refused delete: {st} {b!r}")


def _db_exists_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/{thing}")
    check(st == 200, f"database {thing} must still exist after a refused delete: {st} {b!r}")


def _db_absent_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/{thing}")
    check(st == 404, f"database {thing} was created by a refused request: {st} {b!r}")


def _key_alive_check(ctx, thing, before):
    check(works(ctx.s, thing), f"key {key_id(thing)} stopped working after a refused "
                               "revoke/rotate")
    # no new key (a rotation) was made either
    if before is not None:
        check(len(list_keys(ctx.s, ctx.admin)) == before, "a refused request added a key")


def _head_check(ctx, thing, before):
    check(ctx.head() == before, f"a refused request wrote to main (head {before} -> "
                                f"{ctx.head()})")


def _sub_exists_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/main/subscriptions/{thing}")
    check(st == 200, f"subscription {thing} must still exist after a refused delete: {st}")


def _sub_absent_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/main/subscriptions/{thing}")
    check(st == 404, f"subscription {thing} was created by a refused request: {st}")


def _hook_absent_check(ctx, thing, before):
    st, _, b = ctx.req("GET", f"/v1/databases/main/webhooks/{thing}")
    check(st == 404, f"webhook {thing} was created by a refused request: {st}")


def _key_count_check(ctx, thing, before):
    check(len(list_keys(ctx.s, ctx.admin)) == before, "a refused POST /v1/keys added a key")


def _future():
    return rfc3339(utc_now() + datetime.timedelta(hours=1))


EV = {"events": [{"type": "t", "data": {"x": 1}}]}

ROUTES = [
    Route("GET", "/health", "none"),
    Route("GET", "/v1/whoami", "any"),
    Route("GET", "/v1/databases", "any"),
    Route("POST", "/v1/databases", "admin-all",
          prepare=lambda c: (lambda n: ("/v1/databases", {"name": n}, None, None, n))(
              c.uniq("new")),
          unchanged=_db_absent_check),
    Route("GET", "/v1/databases/main", "read", db="main"),
    Route("DELETE", "/v1/databases/{throwaway}", "admin",
          prepare=lambda c: (lambda n: (f"/v1/databases/{n}", None, n, None, n))(c.fresh_db()),
          unchanged=_db_exists_check),
    Route("POST", "/v1/databases/main/streams/w/events", "write", body=EV, db="main",
          unchanged=_head_check),
    Route("POST", "/v1/databases/main/events (appends)", "write", db="main",
          prepare=lambda c: ("/v1/databases/main/events",
                             {"appends": [{"stream": "m1", "events": EV["events"]},
                                          {"stream": "m2", "events": EV["events"]}]},
                             "main", None, None),
          unchanged=_head_check),
    Route("POST", "/v1/databases/main/events (DCB events)", "write", db="main",
          prepare=lambda c: ("/v1/databases/main/events",
                             {"events": [{"type": "d", "data": 1, "tags": ["k:2"]}]},
                             "main", None, None),
          unchanged=_head_check),
    Route("GET", "/v1/databases/main/events?from=1&limit=10", "read", db="main"),
    Route("GET", "/v1/databases/main/events?direction=backward&limit=5", "read", db="main"),
    Route("GET", "/v1/databases/main/events?types=t&tags=k:1", "read", db="main"),
    Route("GET", "/v1/databases/main/events/1", "read", db="main"),
    Route("POST", "/v1/databases/main/query", "read", body={"types": ["t"], "limit": 5},
          db="main"),
    Route("GET", "/v1/databases/main/streams?limit=10", "read", db="main"),
    Route("GET", "/v1/databases/main/streams/s1", "read", db="main"),
    Route("GET", "/v1/databases/main/streams/s1/events?from=1", "read", db="main"),
    Route("GET", "/v1/databases/main/streams/s1/metadata", "read", db="main"),
    Route("PUT", "/v1/databases/main/streams/meta-s/metadata", "write",
          body={"maxAge": None, "maxCount": 1000, "truncateBefore": None}, db="main",
          unchanged=_head_check),
    Route("DELETE", "/v1/databases/main/streams/{throwaway}", "write",
          prepare=lambda c: (lambda n: (f"/v1/databases/main/streams/{n}", None, "main", None,
                                        n))(c.fresh_stream()),
          unchanged=_stream_gone_check),
    Route("DELETE", "/v1/databases/main/streams/{throwaway}?hard=true", "write",
          prepare=lambda c: (lambda n: (f"/v1/databases/main/streams/{n}?hard=true", None,
                                        "main", None, n))(c.fresh_stream()),
          unchanged=_stream_gone_check),
    # a subscription never ends: these carry a parameter the handler refuses (400), which it
    # only gets to once the key passed (see classify)
    Route("GET", "/v1/databases/main/events/live?limit=1", "read", db="main"),
    Route("GET", "/v1/databases/main/streams/s1/events/live?limit=1", "read", db="main"),
    Route("GET", "/v1/connections", "admin"),
    Route("POST", "/v1/databases/main/subscriptions", "write",
          prepare=lambda c: (lambda n: ("/v1/databases/main/subscriptions", {"name": n}, "main",
                                        None, n))(c.uniq("newsub")),
          unchanged=_sub_absent_check),
    Route("GET", "/v1/databases/main/subscriptions", "read", db="main"),
    Route("GET", "/v1/databases/main/subscriptions/g", "read", db="main"),
    Route("DELETE", "/v1/databases/main/subscriptions/{throwaway}", "write",
          prepare=lambda c: (lambda n: (f"/v1/databases/main/subscriptions/{n}", None, "main",
                                        None, n))(c.fresh_sub()),
          unchanged=_sub_exists_check),
    Route("POST", "/v1/databases/main/subscriptions/g/pull", "read",
          body={"consumer": "c", "max": 1}, db="main"),
    Route("POST", "/v1/databases/main/subscriptions/g/ack", "read", body={"positions": [1]},
          db="main"),
    Route("POST", "/v1/databases/main/subscriptions/g/nack", "read", body={"positions": [1]},
          db="main"),
    Route("GET", "/v1/databases/main/subscriptions/g/parked", "read", db="main"),
    Route("POST", "/v1/databases/main/subscriptions/g/replay", "write", body={}, db="main"),
    Route("DELETE", "/v1/connections/999999", "admin"),
    Route("GET", "/v1/databases/main/compaction", "read", db="main"),
    Route("POST", "/v1/databases/main/compaction", "admin", body={}, db="main"),
    Route("GET", "/v1/databases/main/webhooks", "admin", db="main"),
    Route("POST", "/v1/databases/main/webhooks", "admin",
          prepare=lambda c: (lambda n: ("/v1/databases/main/webhooks",
                                        {"name": n, "url": "http://93.184.216.34/hook",
                                         "from": "latest"}, "main", None, n))(c.uniq("hook")),
          unchanged=_hook_absent_check),
    Route("GET", "/v1/keys", "admin"),
    Route("POST", "/v1/keys", "admin", key_route="create",
          prepare=lambda c: ("/v1/keys", {"scope": "read", "database": "main",
                                          "name": c.uniq("made")}, None, "main", None),
          unchanged=_key_count_check),
    Route("DELETE", "/v1/keys/{throwaway}", "admin", key_route="manage",
          prepare=lambda c: (lambda k: (f"/v1/keys/{key_id(k)}", None, None, "main", k))(
              c.fresh_key()),
          unchanged=_key_alive_check),
    Route("DELETE", "/v1/keys/{throwaway}?at=<in an hour>", "admin", key_route="manage",
          prepare=lambda c: (lambda k: (f"/v1/keys/{key_id(k)}?at={_future()}", None, None,
                                        "main", k))(c.fresh_key()),
          unchanged=_key_alive_check),
    Route("POST", "/v1/keys/{throwaway}/rotate", "admin", key_route="manage",
          prepare=lambda c: (lambda k: (f"/v1/keys/{key_id(k)}/rotate", {"graceSeconds": 0},
                                        None, "main", k))(c.fresh_key()),
          unchanged=_key_alive_check),
]


def _fix_prepare():
    """Routes without their own prepare return (path, body, db, key db, thing=None)."""
    for r in ROUTES:
        if r._prepare is None:
            r._prepare = (lambda r: lambda c: (r.template, r.body, r.db, None, None))(r)


_fix_prepare()


class Kind:
    def __init__(self, name, key, scope=None, db=None, valid=True):
        self.name, self.key, self.scope, self.db, self.valid = name, key, scope, db, valid


def expected(route, kind, target_db, key_db):
    """'ok' (2xx), '401', '403', '404db' (database_not_found) or '404key' (key_not_found)."""
    if route.scope == "none":
        return "ok"
    if not kind.valid:
        return "401"
    if target_db is not None and kind.db is not None and kind.db != target_db:
        return "404db"
    if route.scope == "any":
        return "ok"
    need = "admin" if route.scope == "admin-all" else route.scope
    if RANK[kind.scope] < RANK[need]:
        return "403"
    if route.scope == "admin-all" and kind.db is not None:
        return "403"
    if route.key_route and kind.db is not None and kind.db != key_db:
        return "403" if route.key_route == "create" else "404key"
    return "ok"


def classify(st, b, path=""):
    code = b.get("error", {}).get("code") if isinstance(b, dict) else None
    if 200 <= st < 300:
        return "ok"
    if (st == 400 and code == "invalid_parameter" and "/live?" in path) or \
            (st == 404 and code == "connection_not_found"):
        return "ok"  # the live routes above: refused by their handler, after authorization
    if st == 401 and code == "unauthorized":
        return "401"
    if st == 403 and code == "forbidden":
        return "403"
    if st == 404 and code == "database_not_found":
        return "404db"
    if st == 404 and code == "key_not_found":
        return "404key"
    return f"{st} {code}"


def make_kinds(ctx):
    s, admin = ctx.s, ctx.admin

    def mk(scope, db=None, **extra):
        body = {"scope": scope, "database": db, "name": ctx.uniq(f"{scope}-{db}")}
        body.update(extra)
        return ctx.must("POST", "/v1/keys", body)["key"]

    revoked = mk("admin")
    ctx.must("DELETE", f"/v1/keys/{key_id(revoked)}")
    expired = mk("admin", notAfter="2020-01-01T00:00:00Z")
    wrong_secret = admin[:-43] + ("B" if admin[-1] != "B" else "C") * 43
    kinds = [
        Kind("none", None, valid=False),
        Kind("garbage", "not-a-key at all", valid=False),
        Kind("unknown ak_ key", UNKNOWN_KEY, valid=False),
        Kind("known id, wrong secret", wrong_secret, valid=False),
        Kind("revoked admin", revoked, valid=False),
        Kind("expired admin", expired, valid=False),
        Kind("read", mk("read"), "read"),
        Kind("write", mk("write"), "write"),
        Kind("admin", admin, "admin"),
        Kind("read@main", mk("read", "main"), "read", "main"),
        Kind("write@main", mk("write", "main"), "write", "main"),
        Kind("admin@main", mk("admin", "main"), "admin", "main"),
        Kind("read@other", mk("read", "other"), "read", "other"),
        Kind("write@other", mk("write", "other"), "write", "other"),
        Kind("admin@other", mk("admin", "other"), "admin", "other"),
    ]
    return kinds


# ---------------------------------------------------------------- tests


def test_auth_matrix_every_route_every_kind_of_key():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin", name="boot")
        s.start()
        ctx = Ctx(s, admin)
        setup_data(ctx)
        kinds = make_kinds(ctx)
        failures = []
        tried = 0
        for ri, route in enumerate(ROUTES):
            for ki, kind in enumerate(kinds):
                path, body, target_db, key_db, thing = route.prepare(ctx)
                want = expected(route, kind, target_db, key_db)
                before = None
                if route.unchanged is _head_check:
                    before = ctx.head()
                elif route.unchanged in (_key_count_check, _key_alive_check):
                    before = len(list_keys(s, admin))
                # both header forms, alternately
                hdr = bearer(kind.key) if (ri + ki) % 2 == 0 else xkey(kind.key)
                st, h, b = s.request(route.method, path, body, headers=hdr)
                tried += 1
                got = classify(st, b, path)
                where = f"{route.name} with {kind.name} key ({path})"
                if got != want:
                    failures.append(f"{where}: expected {want}, got {st} {b!r}")
                    continue
                if got == "401" and not h.get("www-authenticate", "").lower().startswith(
                        "bearer"):
                    failures.append(f"{where}: 401 without WWW-Authenticate: Bearer ({h!r})")
                if got != "ok" and route.unchanged is not None:
                    try:
                        route.unchanged(ctx, thing, before)
                    except AssertionError as e:
                        failures.append(f"{where}: {e}")
        check(tried == len(ROUTES) * len(kinds), "not every combination was tried")
        check(not failures, f"{len(failures)} of {tried} combinations wrong:\n"
              + "\n".join(failures[:40]))


def test_auth_header_forms_and_www_authenticate():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        for hdr in (bearer, xkey):
            st, _, b = whoami(s, admin, hdr)
            check(st == 200 and b.get("mode") == "keys", f"{hdr.__name__}: {st} {b!r}")
            st, _, b = s.get("/v1/databases/default/events", headers=hdr(admin))
            check(st == 200, f"log read with {hdr.__name__}: {st} {b!r}")
        basic_kv = base64.b64encode(f"user:{admin}".encode()).decode()
        for value in (f"Basic {basic_kv}", f"Basic {admin}", "Bearer", "Bearer ",
                      f"Token {admin}", admin):
            expect_401(s.get("/v1/whoami", headers={"Authorization": value}),
                       f"Authorization: {value[:30]}...")
            expect_401(s.get("/v1/databases/default", headers={"Authorization": value}),
                       f"Authorization: {value[:30]}... on a database path")
        expect_401(s.get("/v1/whoami", headers={"X-API-Key": ""}), "empty X-API-Key")
        expect_401(s.get("/v1/whoami"), "no key")
        expect_401(s.post("/v1/databases/default/streams/x/events", EV), "append without key")
        # /health needs no key, with or without a bad one
        for hdr in (None, {"Authorization": "Bearer junk"}, {"X-API-Key": UNKNOWN_KEY}):
            st, _, b = s.get("/health", headers=hdr)
            check(st == 200 and b.get("status") == "ok", f"/health with {hdr}: {st} {b!r}")


def test_auth_unknown_routes_need_a_key():
    """'every request but GET /health needs a key': without one, an unknown route or a wrong
    method is 401 too (it must not tell an anonymous client which routes exist)."""
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        # with a key: the ordinary 404 / 405
        expect_error(s.get("/v1/nope", headers=bearer(admin)), 404, "not_found")
        expect_error(s.request("PUT", "/v1/databases/default", headers=bearer(admin)), 405,
                     "method_not_allowed")
        for method, path in (("GET", "/v1/nope"), ("DELETE", "/v1/nope"),
                             ("GET", "/v1/databases/default/bogus"),
                             ("PUT", "/v1/databases/default"), ("PUT", "/v1/keys"),
                             ("GET", "/v1/keys/0123456789abcdef")):
            expect_401(s.request(method, path), f"{method} {path} without a key")


def test_auth_whoami_reflects_key():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin", name="root")
        s.start()
        st, _, b = whoami(s, admin)
        check(st == 200, f"whoami: {st} {b!r}")
        check(b.get("mode") == "keys" and b.get("scope") == "admin" and b.get("database") is None,
              f"whoami of the CLI admin key: {b!r}")
        k = b.get("key")
        check(isinstance(k, dict) and set(k) == KEY_FIELDS, f"whoami key fields: {b!r}")
        check(k["id"] == key_id(admin) and k["name"] == "root" and k["active"] is True
              and k["notAfter"] is None, f"whoami key: {k!r}")
        parse_time(k["created"])
        check(admin not in json.dumps(b) and admin[-43:] not in json.dumps(b),
              f"whoami shows the secret: {b!r}")
        na = rfc3339(utc_now() + datetime.timedelta(days=2))
        made = api_create(s, admin, {"scope": "write", "database": "main", "name": "w1",
                                     "notAfter": na})
        st, _, b = whoami(s, made["key"], xkey)
        check(st == 200 and b["scope"] == "write" and b["database"] == "main"
              and b["key"]["name"] == "w1" and b["key"]["id"] == made["apiKey"]["id"],
              f"whoami of a write@main key: {st} {b!r}")
        check(parse_time(b["key"]["notAfter"]) == parse_time(na),
              f"whoami notAfter {b['key']['notAfter']!r} != {na}")


def test_auth_development_mode():
    with Server() as s:
        check("development" in s.log().lower() or "off" in s.log().lower(),
              f"the log does not say that authentication is off:\n{s.log()}")
        st, _, b = s.get("/v1/whoami")
        check(st == 200 and b.get("mode") == "development", f"whoami in development: {st} {b!r}")
        ctx = Ctx(s, None)
        setup_data(ctx)
        failures = []
        for route in ROUTES:
            if route.key_route or route.template == "/v1/keys":
                continue
            path, body, _, _, _ = route.prepare(ctx)
            st, _, b = s.request(route.method, path, body)
            if classify(st, b, path) != "ok":
                failures.append(f"{route.name} ({path}) without a key: {st} {b!r}")
        check(not failures, "development mode refused:\n" + "\n".join(failures))
        # the key routes too, as long as they create nothing
        st, _, b = s.get("/v1/keys")
        check(st == 200 and b == {"keys": []}, f"GET /v1/keys in development: {st} {b!r}")
        expect_error(s.request("DELETE", "/v1/keys/0123456789abcdef"), 404, "key_not_found")
        expect_error(s.post("/v1/keys/0123456789abcdef/rotate", {}), 404, "key_not_found")
        expect_error(s.post("/v1/keys", {"scope": "superuser"}), 400, "invalid_request",
                     "scope")
        st, _, _ = s.get("/v1/whoami")
        check(st == 200, "a refused POST /v1/keys must not switch authentication on")

        # a key created through the API switches authentication on at once, also on a
        # connection that is already open
        conn = s.connect()
        try:
            st, _, _ = s.get("/v1/databases", conn=conn)
            check(st == 200, "keep-alive request before the first key")
            st, _, b = s.post("/v1/keys", {"scope": "admin", "name": "first"})
            check(st == 201, f"first key in development mode: {st} {b!r}")
            k1 = b["key"]
            expect_401(s.get("/v1/databases", conn=conn), "same connection after the first key")
        finally:
            conn.close()
        expect_401(s.get("/v1/whoami"), "whoami without a key after the first key")
        expect_401(s.get("/v1/databases/main/events"), "log read without a key")
        st, _, b = whoami(s, k1)
        check(st == 200 and b["mode"] == "keys" and b["scope"] == "admin",
              f"whoami with the first key: {st} {b!r}")
        st, _, _ = s.get("/health")
        check(st == 200, "/health without key after auth switched on")

        k2 = api_create(s, k1, {"scope": "admin", "name": "second"})["key"]
        st, _, _ = s.request("DELETE", f"/v1/keys/{key_id(k1)}", headers=bearer(k2))
        check(st == 204, f"revoke first key: {st}")
        expect_401(whoami(s, k1), "revoked first key")
        expect_401(s.get("/v1/whoami"), "no key after a revoke (auth stays on)")
        expect_401(s.get("/v1/databases"), "no key after a revoke (auth stays on)")

        s.restart()
        check("development" not in s.log().lower(), f"development mode after restart with a "
                                                     f"key:\n{s.log()}")
        expect_401(s.get("/v1/whoami"), "no key after a restart with a key")
        check(works(s, k2), "second key after restart")
        expect_401(whoami(s, k1), "revoked key after restart")

        # revoking every key in a running server keeps authentication on
        st, _, _ = s.request("DELETE", f"/v1/keys/{key_id(k2)}", headers=bearer(k2))
        check(st == 204, f"revoke the last key: {st}")
        expect_401(s.get("/v1/whoami"), "no key after the last key was revoked")
        expect_401(s.get("/v1/databases/default/events"), "no key after the last revoke")


def test_auth_non_loopback_refusal():
    old = harness._LISTEN_RE
    harness._LISTEN_RE = re.compile(r"listening on (?:127\.0\.0\.1|0\.0\.0\.0):(\d+)")
    try:
        with Server(listen="0.0.0.0:0", start=False) as s:
            t0 = time.monotonic()
            check(not s.try_start(), "server on 0.0.0.0 without keys started")
            check(time.monotonic() - t0 < 8, "the refusal must be immediate, not a hang")
            rc = s.proc.poll() if s.proc is not None else None
            check(rc is not None and rc > 0, f"refusal exit code {rc}")
            log = s.log().lower()
            check("key" in log and ("0.0.0.0" in log or "loopback" in log),
                  f"the log does not name the reason:\n{s.log()}")
            s.proc = None
            admin = cli_create(s.data, "admin")
            check(s.try_start(), f"server on 0.0.0.0 with a key did not start:\n{s.log()}")
            expect_401(s.get("/v1/whoami"), "0.0.0.0 server without a key")
            check(works(s, admin), "admin key on the 0.0.0.0 server")
            check(s.stop() == 0, "stop")
        # loopback without keys is development mode
        with Server(listen="127.0.0.1:0") as s:
            st, _, b = s.get("/v1/whoami")
            check(st == 200 and b["mode"] == "development", f"loopback without keys: {b!r}")
    finally:
        harness._LISTEN_RE = old


def test_auth_key_create_list_never_shows_secret():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin", name="boot")
        s.start()
        made = api_create(s, admin, {"scope": "read", "database": "main", "name": "reader"})
        key, api = made["key"], made["apiKey"]
        check(set(api) == KEY_FIELDS, f"apiKey fields: {api!r}")
        check(api["scope"] == "read" and api["database"] == "main" and api["name"] == "reader"
              and api["notAfter"] is None and api["active"] is True, f"apiKey: {api!r}")
        parse_time(api["created"])
        secret = KEY_RE.match(key).group(2)
        check(secret not in json.dumps(api), "apiKey holds the secret")
        keys = list_keys(s, admin)
        text = json.dumps(keys)
        for k in keys:
            check(set(k) == KEY_FIELDS, f"listing fields (no secret, no hash): {k!r}")
        check(key not in text and secret not in text and admin[-43:] not in text,
              "listing shows a key's secret")
        check(not re.search(r"[0-9a-f]{64}", text), f"listing shows something like a hash: "
                                                   f"{text}")
        by_id = {k["id"]: k for k in keys}
        check(set(by_id) == {key_id(admin), api["id"]}, f"listing ids: {list(by_id)}")
        check(by_id[api["id"]] == api, f"listing {by_id[api['id']]!r} != created {api!r}")
        check(by_id[key_id(admin)]["name"] == "boot", "CLI key name in listing")
        # defaults: database absent means all databases, name absent means ""
        b = api_create(s, admin, {"scope": "write"})
        check(b["apiKey"]["database"] is None and b["apiKey"]["scope"] == "write",
              f"defaults: {b!r}")
        # two keys are different
        b2 = api_create(s, admin, {"scope": "write"})
        check(b2["key"] != b["key"] and b2["apiKey"]["id"] != b["apiKey"]["id"],
              "two created keys are equal")


def test_auth_key_revoke_now_and_later():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        k = api_create(s, admin, {"scope": "write", "name": "temp"})["key"]
        conn = s.connect()
        try:
            st, _, _ = s.get("/v1/databases/default/events", headers=bearer(k), conn=conn)
            check(st == 200, f"key before revoke: {st}")
            st, _, b = s.request("DELETE", f"/v1/keys/{key_id(k)}", headers=bearer(admin))
            check(st == 204 and b == b"", f"revoke: {st} {b!r}")
            expect_401(s.get("/v1/databases/default/events", headers=bearer(k), conn=conn),
                       "revoked key on an open keep-alive connection")
        finally:
            conn.close()
        expect_401(whoami(s, k), "revoked key")
        expect_401(s.post("/v1/databases/default/streams/a/events", EV, headers=xkey(k)),
                   "append with a revoked key")
        listed = {x["id"]: x for x in list_keys(s, admin)}
        check(listed[key_id(k)]["active"] is False, f"revoked key listed active: "
                                                    f"{listed[key_id(k)]!r}")
        check(listed[key_id(k)]["notAfter"] is not None, "revoked key without notAfter")

        # revoke at a future time: valid until then, and the listing shows when
        k2 = api_create(s, admin, {"scope": "read"})["key"]
        at = utc_now() + datetime.timedelta(hours=3)
        st, _, b = s.request("DELETE", f"/v1/keys/{key_id(k2)}?at={rfc3339(at)}",
                             headers=bearer(admin))
        check(st == 204, f"revoke at {rfc3339(at)}: {st} {b!r}")
        check(works(s, k2), "a key revoked in 3 hours must work now")
        e = {x["id"]: x for x in list_keys(s, admin)}[key_id(k2)]
        check(e["active"] is True and e["notAfter"] is not None
              and abs((parse_time(e["notAfter"]) - at).total_seconds()) < 1,
              f"listing after revoke at {rfc3339(at)}: {e!r}")

        # revoke in 2 seconds: it works, then it does not
        k3 = api_create(s, admin, {"scope": "read"})["key"]
        at = utc_now() + datetime.timedelta(seconds=2)
        st, _, b = s.request("DELETE", f"/v1/keys/{key_id(k3)}?at={rfc3339(at)}",
                             headers=bearer(admin))
        check(st == 204, f"revoke at +2 s: {st} {b!r}")
        wait = (at - utc_now()).total_seconds() + 0.3
        if wait > 0.4:
            check(works(s, k3), "a key revoked in 2 s must work now")
        time.sleep(max(wait, 0))
        expect_401(whoami(s, k3), "key after its revocation time")

        # expired at creation, and expiring by time
        k4 = api_create(s, admin, {"scope": "admin", "notAfter": "2020-01-01T00:00:00Z"})
        check(k4["apiKey"]["active"] is False, f"a key created expired is active: {k4!r}")
        expect_401(whoami(s, k4["key"]), "expired key")

        # a bad `at`
        k5 = api_create(s, admin, {"scope": "read"})["key"]
        st, _, b = s.request("DELETE", f"/v1/keys/{key_id(k5)}?at=tomorrow",
                             headers=bearer(admin))
        check(st == 400, f"DELETE ?at=tomorrow: expected 400, got {st} {b!r}")
        check(works(s, k5), "a refused revoke revoked the key")
        expect_error(s.request("DELETE", "/v1/keys/0123456789abcdef", headers=bearer(admin)),
                     404, "key_not_found")
        expect_error(s.request("DELETE", "/v1/keys/ffffffffffffffff?at=2030-01-01T00:00:00Z",
                               headers=bearer(admin)), 404, "key_not_found")


def test_auth_key_rotate():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        old = api_create(s, admin, {"scope": "write", "database": "main", "name": "svc"})
        st, _, b = s.post(f"/v1/keys/{old['apiKey']['id']}/rotate", {"graceSeconds": 0},
                          headers=bearer(admin))
        check(st == 201, f"rotate grace 0: {st} {b!r}")
        check(KEY_RE.match(b.get("key", "")) and b["key"] != old["key"], f"rotate answer {b!r}")
        new = b
        check(new["apiKey"]["id"] != old["apiKey"]["id"], "rotation kept the id")
        for f in ("scope", "database", "name"):
            check(new["apiKey"][f] == old["apiKey"][f], f"rotated key {f}: {new['apiKey']!r}")
        expect_401(whoami(s, old["key"]), "old key after rotate with grace 0")
        st, _, w = whoami(s, new["key"])
        check(st == 200 and w["scope"] == "write" and w["database"] == "main"
              and w["key"]["name"] == "svc", f"whoami of the rotated key: {st} {w!r}")
        expect_error(s.get("/v1/databases/default", headers=bearer(new["key"])), 404,
                     "database_not_found")

        # grace 5: both work now; the old one's notAfter is about 5 s away
        st, _, b = s.post(f"/v1/keys/{new['apiKey']['id']}/rotate", {"graceSeconds": 5},
                          headers=bearer(admin))
        check(st == 201, f"rotate grace 5: {st} {b!r}")
        newer = b["key"]
        t = utc_now()
        check(works(s, new["key"]) and works(s, newer, xkey), "both keys during the grace")
        e = {x["id"]: x for x in list_keys(s, admin)}[new["apiKey"]["id"]]
        check(e["active"] is True and e["notAfter"] is not None
              and 2 <= (parse_time(e["notAfter"]) - t).total_seconds() <= 7,
              f"old key's notAfter after a 5 s grace: {e!r} (now {rfc3339(t)})")
        # no body at all means the default grace 0 (if the server takes a body-less POST)
        k = api_create(s, admin, {"scope": "read", "name": "nb"})
        st, _, b = s.post(f"/v1/keys/{k['apiKey']['id']}/rotate", {}, headers=bearer(admin))
        check(st == 201, f"rotate with {{}}: {st} {b!r}")
        expect_401(whoami(s, k["key"]), "old key after rotate with the default grace")
        check(works(s, b["key"]), "new key after rotate with the default grace")

        # invalid graces and unknown ids; a revoked key cannot be rotated back to life
        k = api_create(s, admin, {"scope": "read"})
        for bad in (-1, 2592001, "5", 1.5, None):
            expect_error(s.post(f"/v1/keys/{k['apiKey']['id']}/rotate", {"graceSeconds": bad},
                                headers=bearer(admin)), 400, "invalid_request", "graceSeconds")
        b = expect_error(s.post(f"/v1/keys/{k['apiKey']['id']}/rotate", {"grace": 1},
                                headers=bearer(admin)), 400, "invalid_request")
        # POST /v1/keys names an unknown member itself; rotate names graceSeconds (accepted)
        check(b["error"].get("field") in ("grace", "graceSeconds"),
              f"unknown member in a rotate body: field {b['error'].get('field')!r}")
        check(works(s, k["key"]), "a refused rotation changed the key")
        st, _, b = s.post(f"/v1/keys/{k['apiKey']['id']}/rotate", {"graceSeconds": 2592000},
                          headers=bearer(admin))
        check(st == 201, f"rotate with the largest grace (30 days): {st} {b!r}")
        expect_error(s.post("/v1/keys/0123456789abcdef/rotate", {"graceSeconds": 0},
                            headers=bearer(admin)), 404, "key_not_found")


def test_auth_key_create_invalid_bodies():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        before = len(list_keys(s, admin))
        cases = [
            ({}, "scope"),
            ({"scope": "superuser"}, "scope"),
            ({"scope": "READ"}, "scope"),
            ({"scope": 3}, "scope"),
            ({"scope": "read", "bogus": 1}, "bogus"),
            ({"scope": "read", "database": "Bad Name!"}, "database"),
            ({"scope": "read", "database": 7}, "database"),
            ({"scope": "read", "database": "a" * 64}, "database"),
            ({"scope": "read", "notAfter": "yesterday"}, "notAfter"),
            ({"scope": "read", "notAfter": 1700000000}, "notAfter"),
            ({"scope": "read", "notAfter": "2030-13-01T00:00:00Z"}, "notAfter"),
            ({"scope": "read", "name": 5}, "name"),
        ]
        for body, field in cases:
            expect_error(s.post("/v1/keys", body, headers=bearer(admin)), 400,
                         "invalid_request", field)
        b = expect_error(s.post("/v1/keys", '{"scope":"read","scope":"admin"}',
                                headers={**bearer(admin), "Content-Type": "application/json"}),
                         400, "invalid_request")
        check(b["error"].get("field") in (None, "scope"), f"duplicate member: {b!r}")
        st, _, b = s.post("/v1/keys", '["read"]',
                          headers={**bearer(admin), "Content-Type": "application/json"})
        check(st == 400, f"a body that is not an object: {st} {b!r}")
        check(len(list_keys(s, admin)) == before, "an invalid body created a key")
        # a key may be made for a database that does not exist (yet)
        b = api_create(s, admin, {"scope": "read", "database": "later"})
        check(b["apiKey"]["database"] == "later", f"{b!r}")


def test_auth_key_empty_database_name_refused():
    """`database` is a database name ([a-z0-9][a-z0-9-]{0,62}) or null: "" is not a name and
    must not silently become "all databases"."""
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin")
        s.start()
        dba = api_create(s, admin, {"scope": "admin", "database": "main"})["key"]
        expect_error(s.post("/v1/keys", {"scope": "read", "database": ""},
                            headers=bearer(dba)), 400, "invalid_request", "database")
        before = len(list_keys(s, admin))
        st, _, b = s.post("/v1/keys", {"scope": "read", "database": ""}, headers=bearer(admin))
        check(st == 400 and b.get("error", {}).get("code") == "invalid_request"
              and b["error"].get("field") == "database",
              f'POST /v1/keys {{"scope":"read","database":""}}: expected 400 invalid_request '
              f'(field database), got {st} {b!r}')
        check(len(list_keys(s, admin)) == before, "a refused body created a key")


def test_auth_database_bound_admin():
    with Server(start=False) as s:
        root = cli_create(s.data, "admin", name="root")
        s.start()
        ctx = Ctx(s, root)
        setup_data(ctx)
        dba = api_create(s, root, {"scope": "admin", "database": "main", "name": "dba"})["key"]
        main_r = api_create(s, root, {"scope": "read", "database": "main", "name": "mr"})
        other_r = api_create(s, root, {"scope": "read", "database": "other", "name": "or"})
        all_r = api_create(s, root, {"scope": "read", "name": "ar"})

        st, _, w = whoami(s, dba)
        check(st == 200 and w["scope"] == "admin" and w["database"] == "main", f"{w!r}")
        listed = list_keys(s, dba)
        check(all(k["database"] == "main" for k in listed),
              f"a main admin sees keys of other databases: {listed!r}")
        ids = {k["id"] for k in listed}
        check(main_r["apiKey"]["id"] in ids and key_id(dba) in ids, f"main keys missing: {ids}")

        for victim in (other_r, all_r, {"apiKey": {"id": key_id(root)}}):
            vid = victim["apiKey"]["id"]
            expect_error(s.request("DELETE", f"/v1/keys/{vid}", headers=bearer(dba)), 404,
                         "key_not_found")
            expect_error(s.post(f"/v1/keys/{vid}/rotate", {"graceSeconds": 0},
                                headers=bearer(dba)), 404, "key_not_found")
        check(works(s, other_r["key"]) and works(s, all_r["key"]) and works(s, root),
              "a refused revoke/rotate touched a key")

        # creating keys: its own database only
        before = len(list_keys(s, root))
        expect_error(s.post("/v1/keys", {"scope": "read", "database": "other"},
                            headers=bearer(dba)), 403, "forbidden")
        expect_error(s.post("/v1/keys", {"scope": "read", "database": None},
                            headers=bearer(dba)), 403, "forbidden")
        expect_error(s.post("/v1/keys", {"scope": "admin", "database": None},
                            headers=bearer(dba)), 403, "forbidden")
        check(len(list_keys(s, root)) == before, "a refused POST /v1/keys created a key")
        w_main = api_create(s, dba, {"scope": "write", "database": "main", "name": "w"})
        check(w_main["apiKey"]["database"] == "main", f"{w_main!r}")
        st, _, b = s.post("/v1/databases/main/streams/x/events", EV,
                          headers=bearer(w_main["key"]))
        check(st == 201, f"append with the key made by the main admin: {st} {b!r}")
        # and manage its own database's keys
        st, _, b = s.post(f"/v1/keys/{main_r['apiKey']['id']}/rotate", {"graceSeconds": 0},
                          headers=bearer(dba))
        check(st == 201 and b["apiKey"]["database"] == "main", f"rotate own key: {st} {b!r}")
        st, _, _ = s.request("DELETE", f"/v1/keys/{b['apiKey']['id']}", headers=bearer(dba))
        check(st == 204, f"revoke own database's key: {st}")
        expect_401(whoami(s, b["key"]), "key revoked by the main admin")

        # databases: cannot create; sees only its own
        expect_error(s.post("/v1/databases", {"name": "dba-made"}, headers=bearer(dba)), 403,
                     "forbidden")
        st, _, b = s.get("/v1/databases", headers=bearer(root))
        check("dba-made" not in [d["name"] for d in b["databases"]], "database made anyway")
        st, _, b = s.get("/v1/databases", headers=bearer(dba))
        check(st == 200 and b == {"databases": [{"name": "main"}]},
              f"GET /v1/databases for a main admin: {st} {b!r}")
        st, _, b = s.get("/v1/databases", headers=bearer(other_r["key"]))
        check(st == 200 and b == {"databases": [{"name": "other"}]},
              f"GET /v1/databases for a read@other key: {st} {b!r}")
        st, _, b = s.get("/v1/databases", headers=bearer(root))
        check([d["name"] for d in b["databases"]] == ["default", "main", "other"],
              f"GET /v1/databases for the root admin: {b!r}")

        # other databases are invisible: same 404 whether they exist or not
        e1 = expect_error(s.get("/v1/databases/other", headers=bearer(dba)), 404,
                          "database_not_found")
        e2 = expect_error(s.get("/v1/databases/nowhere", headers=bearer(dba)), 404,
                          "database_not_found")
        e3 = expect_error(s.get("/v1/databases/default/events", headers=bearer(dba)), 404,
                          "database_not_found")
        check(e1["error"].get("field") == e2["error"].get("field"),
              f"existing and missing databases answer differently: {e1!r} / {e2!r}")
        expect_error(s.post("/v1/databases/other/streams/s1/events", EV, headers=bearer(dba)),
                     404, "database_not_found")
        expect_error(s.request("DELETE", "/v1/databases/other", headers=bearer(dba)), 404,
                     "database_not_found")
        check(ctx.head("other") == 1, "a refused append changed the database other")
        # a key bound to a database that does not exist yet gets 404 there
        later = api_create(s, root, {"scope": "read", "database": "later"})["key"]
        expect_error(s.get("/v1/databases/later", headers=bearer(later)), 404,
                     "database_not_found")
        st, _, b = s.get("/v1/databases", headers=bearer(later))
        check(st == 200 and b == {"databases": []}, f"listing for a key of a missing db: {b!r}")


def test_auth_keys_survive_restart_and_cli():
    with Server(start=False) as s:
        admin = cli_create(s.data, "admin", name="boot")
        cli_r = cli_create(s.data, "read", database="default", name="cli-reader",
                           not_after=rfc3339(utc_now() + datetime.timedelta(days=30)))
        s.start()
        expect_401(s.get("/v1/whoami"), "no key")
        st, _, w = whoami(s, cli_r)
        check(st == 200 and w["scope"] == "read" and w["database"] == "default"
              and w["key"]["name"] == "cli-reader" and w["key"]["notAfter"] is not None,
              f"whoami of a CLI key: {st} {w!r}")
        w_key = api_create(s, admin, {"scope": "write", "name": "api-writer"})["key"]
        gone = api_create(s, admin, {"scope": "read", "name": "api-gone"})["key"]
        st, _, _ = s.request("DELETE", f"/v1/keys/{key_id(gone)}", headers=bearer(admin))
        check(st == 204, "revoke")

        # the command line refuses while the server runs
        for args in (["keys", "list"], ["keys", "create", "--scope", "read"],
                     ["keys", "revoke", key_id(w_key)], ["keys", "rotate", key_id(w_key)]):
            rc, out = run_cli(args + ["--data", s.data], timeout=20)
            check(rc != 0, f"annals {' '.join(args)} ran against a running server: {out}")
            check("running" in out.lower() or "in use" in out.lower(),
                  f"annals {' '.join(args)}: the message does not name the running server: "
                  f"{out!r}")
            check(not KEY_IN_TEXT.search(out), f"a key was printed anyway: {out!r}")
        check(works(s, w_key), "a refused CLI revoke revoked the key")

        s.restart()
        expect_401(s.get("/v1/whoami"), "no key after restart")
        check(works(s, admin) and works(s, cli_r) and works(s, w_key, xkey),
              "keys after restart")
        expect_401(whoami(s, gone), "revoked key after restart")
        st, _, w = whoami(s, w_key)
        check(w["scope"] == "write" and w["database"] is None and w["key"]["name"] ==
              "api-writer", f"key after restart: {w!r}")
        check(s.stop() == 0, "stop")

        rc, out = run_cli(["keys", "list", "--data", s.data], timeout=20)
        check(rc == 0, f"annals keys list: {rc} {out}")
        for k in (admin, cli_r, w_key, gone):
            check(key_id(k) in out, f"annals keys list misses {key_id(k)}:\n{out}")
        for name in ("boot", "cli-reader", "api-writer", "api-gone"):
            check(name in out, f"annals keys list misses the name {name}:\n{out}")
        check(not KEY_IN_TEXT.search(out), f"annals keys list shows a key:\n{out}")
        for k in (admin, cli_r, w_key):
            check(k[-43:] not in out, "annals keys list shows a secret")

        rc, out = run_cli(["keys", "revoke", key_id(w_key), "--data", s.data], timeout=20)
        check(rc == 0, f"annals keys revoke: {rc} {out}")
        rc, out = run_cli(["keys", "revoke", "0123456789abcdef", "--data", s.data], timeout=20)
        check(rc != 0, f"annals keys revoke of an unknown id exited 0: {out}")
        rc, out = run_cli(["keys", "rotate", key_id(cli_r), "--data", s.data], timeout=20)
        check(rc == 0, f"annals keys rotate: {rc} {out}")
        rotated = [ln.strip() for ln in out.splitlines() if KEY_RE.match(ln.strip())]
        check(len(rotated) == 1 and rotated[0] != cli_r, f"annals keys rotate output: {out!r}")
        later = rfc3339(utc_now() + datetime.timedelta(hours=5))
        rc, out = run_cli(["keys", "revoke", key_id(admin), "--at", later, "--data", s.data],
                          timeout=20)
        check(rc == 0, f"annals keys revoke --at: {rc} {out}")
        rc, out = run_cli(["keys", "create", "--scope", "owner", "--data", s.data], timeout=20)
        check(rc != 0 and not KEY_IN_TEXT.search(out), f"keys create --scope owner: {rc} {out}")

        s.start()
        expect_401(whoami(s, w_key), "key revoked by the CLI")
        expect_401(whoami(s, cli_r), "key rotated by the CLI (grace 0)")
        st, _, w = whoami(s, rotated[0])
        check(st == 200 and w["scope"] == "read" and w["database"] == "default"
              and w["key"]["name"] == "cli-reader", f"CLI-rotated key: {st} {w!r}")
        st, _, w = whoami(s, admin)
        check(st == 200 and w["key"]["notAfter"] is not None
              and abs((parse_time(w["key"]["notAfter"]) - parse_time(later)).total_seconds())
              < 1, f"admin revoked at {later} by the CLI: {st} {w!r}")


def test_auth_keys_file_holds_no_key():
    with Server(start=False) as s:
        made = [cli_create(s.data, "admin", name="boot"),
                cli_create(s.data, "read", database="default")]
        s.start()
        admin = made[0]
        made.append(api_create(s, admin, {"scope": "write", "name": "w"})["key"])
        made.append(api_create(s, admin, {"scope": "read", "database": "default",
                                          "notAfter": "2031-01-01T00:00:00Z"})["key"])
        st, _, b = s.post(f"/v1/keys/{key_id(made[2])}/rotate", {"graceSeconds": 60},
                          headers=bearer(admin))
        check(st == 201, f"rotate: {st} {b!r}")
        made.append(b["key"])
        path = os.path.join(s.data, "keys.json")
        check(os.path.isfile(path), f"{path} missing")
        for when in ("running", "stopped"):
            with open(path, "rb") as f:
                raw = f.read()
            text = raw.decode("utf-8", "replace")
            check(not KEY_IN_TEXT.search(text), f"keys.json ({when}) holds a key")
            for k in made:
                secret = KEY_RE.match(k).group(2)
                check(k.encode() not in raw and secret.encode() not in raw,
                      f"keys.json ({when}) holds the key or secret of {key_id(k)}")
                check(key_id(k) in text, f"keys.json ({when}) does not hold id {key_id(k)}")
            s.stop()


def test_auth_stays_on_when_every_key_is_expired_or_revoked():
    """Revoking every key (say after a leak) and restarting must not reopen the server."""
    with Server(start=False) as s:
        rc, out = run_cli(["keys", "create", "--scope", "admin", "--data", s.data])
        check(rc == 0, out)
        key = next(w for w in out.split() if w.startswith("ak_"))
        run_cli(["keys", "revoke", key.split("_")[1], "--data", s.data])
        s.start()
        st, _, _ = s.request("GET", "/v1/databases")
        check(st == 401, f"anonymous request with only an expired key on file: {st}")
        st, _, _ = s.post("/v1/keys", {"scope": "admin"})
        check(st == 401, f"anonymous key creation: {st}")
