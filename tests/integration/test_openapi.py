"""The OpenAPI document (GET /v1/openapi.json) against the route list of docs/api.md and the
server itself: every documented route is in the document with its scope, every route in the
document is answered by the server (not 404 not_found, not 405), and nothing else is; the
document passes an OpenAPI 3.1 validator from npm (tests/package.json); every operation, run
once with realistic requests, answers what its schemas say, its request bodies match its
request schemas, and bodies the server refuses are refused by those schemas too."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

from harness import REPO, Server, check, quote, split_head, wait_until

SCOPES = {"none": "none", "any key": "any", "read": "read", "write": "write", "admin": "admin",
          "admin (all databases)": "admin"}
SAMPLE = {"db": "default", "stream": "s-1", "position": "1", "id": "0123456789abcdef",
          "name": "sub-1", "key": "k"}


def documented_routes():
    """{(METHOD, path template): scope} from the routes table of docs/api.md."""
    text = open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8").read()
    block = text.split("<!-- routes:begin -->")[1].split("<!-- routes:end -->")[0]
    out = {}
    for m in re.finditer(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| ([^|]+) \|$", block, re.M):
        out[(m.group(1), m.group(2))] = SCOPES[m.group(3).strip()]
    check(len(out) >= 20, f"routes table not found or too short: {len(out)}")
    return out


def test_document_matches_docs_and_server():
    with Server() as s:
        st, hdrs, doc = s.get("/v1/openapi.json")
        check(st == 200 and doc["openapi"].startswith("3.1"), f"{st} {str(doc)[:200]}")
        check(doc["info"]["version"] and doc["paths"], "info and paths")
        in_doc = {}
        for path, ops in doc["paths"].items():
            params = set(re.findall(r"\{(\w+)\}", path))
            for method, op in ops.items():
                check("responses" in op and op["summary"], f"{method} {path}: summary/responses")
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                check(declared == params, f"{method} {path}: path parameters {declared}")
                in_doc[(method.upper(), path)] = op["x-annals-scope"]
        docs = documented_routes()
        check(set(in_doc) == set(docs),
              f"document vs docs/api.md: only in document {sorted(set(in_doc) - set(docs))}, "
              f"only in docs {sorted(set(docs) - set(in_doc))}")
        for route, scope in docs.items():
            check(in_doc[route] == scope, f"{route}: scope {in_doc[route]} vs docs {scope}")
        # every route in the document is answered (a real handler, not the router's 404/405)
        for (method, path) in sorted(in_doc):
            if method == "DELETE" and path == "/v1/databases/{db}":
                continue  # would delete the database the other requests use; checked below
            url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)
            if url.endswith("/live"):
                url += "?from=0"  # a subscription never ends: a refused one proves the route
            body = {} if method in ("POST", "PUT", "PATCH") else None
            st, _, ans = s.request(method, url, body)
            routed = not (st == 405 or (st == 404 and isinstance(ans, dict) and
                                        ans.get("error", {}).get("code") == "not_found"))
            check(routed, f"{method} {url}: not routed ({st} {ans})")
        st, _, _ = s.post("/v1/databases", {"name": "gone"})
        st, _, _ = s.request("DELETE", "/v1/databases/gone")
        check(st == 204, f"DELETE database: {st}")
        # and a path outside the document is not answered
        st, _, ans = s.get("/v1/databases/default/nothing-here")
        check(st == 404 and ans["error"]["code"] == "not_found", f"unknown path: {st} {ans}")


# ---- the document against an OpenAPI validator, and the answers against the document ----

DOC_URI = "https://annals.invalid/openapi.json"  # where $refs of the served document resolve
VALIDATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate_openapi.mjs")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def run_validator(doc):
    """(exit code, output) of tests/integration/validate_openapi.mjs on doc (the npm packages
    of tests/package.json, installed by scripts/deps.sh)."""
    modules = os.path.join(REPO, "tests", "node_modules", "@seriousme", "openapi-schema-validator")
    check(os.path.isdir(modules), "tests/node_modules is not installed: run bash scripts/deps.sh")
    p = subprocess.run(["node", VALIDATOR], input=json.dumps(doc).encode(), capture_output=True,
                       timeout=120)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_document_passes_an_openapi_validator():
    with Server() as s:
        st, _, doc = s.get("/v1/openapi.json")
        check(st == 200, f"{st}")
    rc, out = run_validator(doc)
    check(rc == 0 and out.strip() == "valid", f"the served document is refused:\n{out[:4000]}")
    # the validator is not a rubber stamp: a broken structure, a dangling $ref and a schema
    # keyword with a typo are each refused
    broken = json.loads(json.dumps(doc))
    del broken["info"]
    dangling = json.loads(json.dumps(doc))
    dangling["components"]["schemas"]["Event"]["properties"]["hash"] = {
        "$ref": "#/components/schemas/NoSuchSchema"}
    typo = json.loads(json.dumps(doc))
    typo["components"]["schemas"]["Event"]["requird"] = ["id"]
    for what, bad in (("no info", broken), ("a dangling $ref", dangling), ("a typo", typo)):
        rc, out = run_validator(bad)
        check(rc == 1, f"a document with {what} passed the validator ({rc}): {out[:500]}")


def import_jsonschema():
    try:
        import jsonschema
    except ImportError:  # the python3 running the tests may be another build than Debian's
        sys.path.append("/usr/lib/python3/dist-packages")
        import jsonschema
    return jsonschema


def pointer(*parts):
    """A JSON pointer fragment of the document ("#/paths/~1v1~1.../get/...")."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The served document as a checker. call() sends one request of an operation of the
    document: its query parameters must be declared and their values match their schemas, its
    body must match the request schema; the answer's status must be declared and its body match
    the schema declared for that status and media type (an error: the default, Error).
    Draft 2020-12 with every $ref resolved against the served document; formats date-time and
    uuid are checked."""

    def __init__(self, server, doc):
        js = import_jsonschema()
        self.s = server
        self.doc = doc
        self.headers = {}
        self.used = set()
        self.formats = js.FormatChecker(formats=())
        self.formats.checks("date-time")(lambda v: not isinstance(v, str) or bool(RFC3339.match(v)))
        self.formats.checks("uuid")(lambda v: not isinstance(v, str) or bool(UUID.match(v)))
        try:
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012
            registry = Registry().with_resource(
                DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
            self.validator = lambda schema: js.Draft202012Validator(
                schema, registry=registry, format_checker=self.formats)
        except ImportError:  # jsonschema before 4.18 (Debian 12's 4.10)
            resolver = js.RefResolver(DOC_URI, doc)
            self.validator = lambda schema: js.Draft202012Validator(
                schema, resolver=resolver, format_checker=self.formats)

    # ---- schemas ----

    def errors(self, at, instance):
        """What is wrong with instance against the schema at pointer at ([] when valid)."""
        v = self.validator({"$ref": DOC_URI + at})
        return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
                for e in v.iter_errors(instance)]

    def valid(self, at, instance, what):
        errs = self.errors(at, instance)
        check(not errs, f"{what} does not match {at}: {errs[:5]}\n{json.dumps(instance)[:1500]}")

    def schema(self, name, instance, what):
        self.valid(pointer("components", "schemas", name), instance, what)

    def op(self, method, template, exercised=True):
        ops = self.doc["paths"].get(template)
        check(ops is not None and method.lower() in ops, f"{method} {template} not in the document")
        if exercised:
            self.used.add((method, template))
        return ops[method.lower()]

    def param(self, op, at, name, value):
        """Checks a query parameter value (as sent) against its declared schema."""
        declared = [i for i, p in enumerate(op.get("parameters", []))
                    if p["in"] == "query" and p["name"] == name]
        free = [p for p in op.get("parameters", []) if p["in"] == "query" and p.get("explode")
                and p["schema"].get("type") == "object"]
        if not declared and free:  # a free-form parameter object (a view's parameters)
            check(free[0]["schema"]["additionalProperties"] == {"type": "string"} and
                  isinstance(value, str), f"{at} parameter {name}: {value!r}")
            return
        check(declared, f"{at}: query parameter {name} is not declared")
        i = declared[0]
        schema = op["parameters"][i]["schema"]
        typed = value
        if schema.get("type") == "array":
            typed = value.split(",")
        elif schema.get("type") == "integer" or (schema.get("oneOf") and value.isdigit()):
            typed = int(value) if value.isdigit() else value
        elif schema.get("type") == "boolean":
            typed = {"true": True, "false": False}.get(value, value)
        self.valid(at + "/parameters/" + str(i) + "/schema", typed, f"{at} parameter {name}")

    def url(self, op, at, template, args, query):
        path = re.sub(r"\{(\w+)\}", lambda m: quote(str(args[m.group(1)])), template)
        for name, value in (query or {}).items():
            self.param(op, at, name, value)
        return path + ("?" + urllib.parse.urlencode(query) if query else "")

    # ---- requests ----

    def call(self, method, template, args=None, query=None, body=None, status=None,
             headers=None):
        """Sends a request the server must accept; returns (status, headers, body)."""
        op = self.op(method, template)
        at = pointer("paths", template, method.lower())
        if body is not None:
            check("requestBody" in op, f"{method} {template} takes no body")
            self.valid(at + "/requestBody/content/application~1json/schema", body,
                       f"{method} {template} request body")
        else:
            check(not op.get("requestBody", {}).get("required"),
                  f"{method} {template}: sent without the body the document requires")
        url = self.url(op, at, template, args or {}, query)
        st, hdrs, ans = self.s.request(method, url, body, headers=dict(self.headers,
                                                                       **(headers or {})))
        check(st < 300 and (status is None or st == status),
              f"{method} {url}: {st} (wanted {status}) {ans!r:.600}")
        self.answer(op, at, f"{method} {url}", st, hdrs, ans)
        return st, hdrs, ans

    def answer(self, op, at, what, st, hdrs, ans):
        declared = op["responses"].get(str(st))
        check(declared is not None, f"{what}: answered {st}, the document declares "
                                    f"{sorted(op['responses'])}")
        content = declared.get("content")
        if not content:
            check(ans in (b"", ""), f"{what}: {st} has a body the document does not declare")
            return
        media = hdrs.get("content-type", "").split(";")[0].strip()
        check(media in content, f"{what}: answered {media}, the document declares {list(content)}")
        sat = at + "/responses/" + str(st) + "/content/" + media.replace("/", "~1") + "/schema"
        if media == "application/json":
            check(not isinstance(ans, bytes), f"{what}: not JSON: {ans!r:.200}")
            self.valid(sat, ans, f"{what} answer {st}")
        elif media == "application/vnd.annals.backup":
            # binary frames (docs/design/backup.md), checked by test_backup; here: its magic
            check(isinstance(ans, bytes) and len(ans) > 64, f"{what}: {ans!r:.100}")
        else:
            self.valid(sat, ans.decode() if isinstance(ans, bytes) else ans, f"{what} answer")

    def fails(self, method, template, args=None, query=None, body=None, status=None, code=None,
              headers=None, bad_request=False):
        """Sends a request the server must refuse with status and code; the answer must match
        the operation's error answer (default: Error). bad_request: the body is one the request
        schema must refuse too (schema and server agree on what is acceptable)."""
        op = self.op(method, template, exercised=False)
        at = pointer("paths", template, method.lower())
        if bad_request:
            check(self.errors(at + "/requestBody/content/application~1json/schema", body),
                  f"{method} {template}: the request schema accepts {json.dumps(body)[:300]}, "
                  f"which the server refuses")
        path = re.sub(r"\{(\w+)\}", lambda m: quote(str((args or {})[m.group(1)])), template)
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        st, rh, ans = self.s.request(method, url, body, headers=dict(self.headers,
                                                                     **(headers or {})))
        check(st == status, f"{method} {url}: {st} (wanted {status} {code}) {ans!r:.600}")
        check(str(st) not in op["responses"], f"{method} {url}: error {st} declared a success")
        check(rh.get("content-type", "").startswith("application/json"), f"{method} {url}: {rh}")
        self.valid(at + "/responses/default/content/application~1json/schema", ans,
                   f"{method} {url} error {st}")
        check(code is None or ans["error"]["code"] == code, f"{method} {url}: {ans}")
        return ans


def open_live(s, contract, template, args, query):
    """Opens a Server-Sent Events subscription of the document's operation; checks the head
    (status and media type declared) and returns (socket, bytes after the head)."""
    op = contract.op("GET", template)
    at = pointer("paths", template, "get")
    url = contract.url(op, at, template, args, query)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        check(chunk, f"GET {url}: closed before the head: {data!r}")
        data += chunk
    st, hdrs, rest = split_head(data)
    check(str(st) in op["responses"] and
          hdrs.get("content-type", "").split(";")[0] in op["responses"][str(st)]["content"],
          f"GET {url}: {st} {hdrs}")
    return sock, rest


def sse_events(contract, sock, rest, until=b"event: caught_up"):
    """Reads a subscription up to the message until; checks each event's data against Event."""
    data = rest
    deadline = time.monotonic() + 10
    while until not in data and time.monotonic() < deadline:
        data += sock.recv(65536)
    check(until in data, f"no {until!r} in {data[:500]!r}")
    n = 0
    for message in data.decode().split("\n\n"):
        lines = message.split("\n")
        if any(ln.startswith("id: ") for ln in lines):
            event = json.loads("".join(ln[6:] for ln in lines if ln.startswith("data: ")))
            contract.schema("Event", event, "a Server-Sent event")
            n += 1
    return n


DB = "shop"
STREAM_EVENTS = "/v1/databases/{db}/streams/{stream}/events"


def exercise_databases(c):
    c.call("GET", "/v1/openapi.json", status=200)
    c.call("GET", "/", status=200)
    c.call("GET", "/", status=200, headers={"Accept": "text/html"})
    c.call("GET", "/health", status=200)
    c.call("GET", "/metrics", status=200)
    c.call("GET", "/v1/whoami", status=200)
    c.call("POST", "/v1/databases", status=201, body={
        "name": DB, "description": "The shop",
        "settings": {"retentionPeriodDays": None, "maxStreamSizeBytes": 1048576,
                     "rateLimit": None, "idempotencyTtlSeconds": 3600}})
    c.fails("POST", "/v1/databases", body={"name": DB}, status=409, code="database_exists")
    c.fails("POST", "/v1/databases", body={"name": "Bad Name"}, status=400, code="invalid_name",
            bad_request=True)
    c.fails("POST", "/v1/databases", body={"name": "x", "settings": {"retention": 1}},
            status=400, code="invalid_request", bad_request=True)
    c.call("GET", "/v1/databases", status=200)
    c.call("PATCH", "/v1/databases/{db}", {"db": DB}, status=200,
           body={"description": "Orders and stock", "settings": {"retentionPeriodDays": 3650}})
    for bad in ({"settings": {"rateLimit": 0}}, {"settings": {"retentionPeriodDays": 36501}},
                {"settings": {"idempotencyTtlSeconds": 31536001}}, {"name": DB},
                {"description": "x" * 1025}):
        c.fails("PATCH", "/v1/databases/{db}", {"db": DB}, body=bad, status=400,
                code="invalid_request", bad_request=True)
    c.fails("GET", "/v1/databases/{db}", {"db": "nope"}, status=404, code="database_not_found")


def exercise_appends(c):
    """Appends of every shape; returns the positions of order-1's events."""
    ev = {"type": "order.placed", "data": {"total": 12.5}, "metadata": {"user": "u1"},
          "id": "0192f0c4-5e6a-7b3c-8d4e-0123456789ab", "tags": ["customer:7"],
          "time": "2026-01-02T03:04:05Z", "subject": "orders/1"}
    args = {"db": DB, "stream": "order-1"}
    body = {"events": [ev, {"type": "order.paid", "data": 12.5}], "expectedVersion": "no_stream"}
    _, _, ans = c.call("POST", STREAM_EVENTS, args, body=body, status=201,
                       headers={"Idempotency-Key": "order-1-placed"})
    _, hdrs, again = c.call("POST", STREAM_EVENTS, args, body=body, status=201,
                            headers={"Idempotency-Key": "order-1-placed"})
    check(hdrs.get("x-idempotency-replayed") == "true" and again == ans, "idempotent replay")
    _, _, dup = c.call("POST", STREAM_EVENTS, args, body={"events": [ev]}, status=200)
    check(dup.get("duplicate") is True, f"duplicate: {dup}")
    c.fails("POST", STREAM_EVENTS, args, status=409, code="wrong_expected_version",
            body={"events": [{"type": "order.shipped", "data": {}}], "expectedVersion": 1})
    for bad, code in (({"events": []}, "invalid_request"),
                      ({"events": [{"type": "t", "data": 1}], "expected": 1}, "invalid_request"),
                      ({"events": [{"type": "t"}]}, "invalid_event"),
                      ({"events": [{"type": "t", "data": 1, "id": "nope"}]}, "invalid_event"),
                      ({"events": [{"type": "t", "data": 1, "time": "yesterday"}]}, "invalid_event"),
                      ({"events": [{"type": "t", "data": 1, "tags": [""]}]}, "invalid_event"),
                      ({"events": [{"type": "t", "data": 1}], "expectedVersion": -1},
                       "invalid_expected_version"),
                      ({"events": [{"type": "t", "data": 1}], "expectedVersion": "some"},
                       "invalid_expected_version")):
        c.fails("POST", STREAM_EVENTS, args, body=bad, status=400, code=code, bad_request=True)
    c.fails("POST", STREAM_EVENTS, args, body='{"events": [', status=400, code="invalid_json",
            headers={"Content-Type": "application/json"})
    c.fails("POST", STREAM_EVENTS, args, body='{"events": []}', status=415,
            code="unsupported_media_type")
    multi = {"appends": [{"stream": "order-2", "expectedVersion": 0, "events": [
                 {"type": "order.placed", "data": {"total": 3}, "tags": ["customer:8"]}]},
             {"stream": "stock-7", "events": [
                 {"type": "stock.reserved", "data": {"sku": 7}, "tags": ["sku:7"]}]}],
             "condition": {"failIfEventsMatch": {"items": [{"types": ["stock.reserved"],
                                                            "tags": ["sku:7"]}]}},
             "conditions": [{"query": {"streams": ["order-1"]}, "min": 1}]}
    c.call("POST", "/v1/databases/{db}/events", {"db": DB}, body=multi, status=201,
           headers={"Idempotency-Key": "order-2"})
    ans = c.fails("POST", "/v1/databases/{db}/events", {"db": DB}, body=dict(multi, appends=[
        {"stream": "stock-8", "events": [{"type": "stock.reserved", "data": {}}]}]),
        status=409, code="condition_failed")
    check(ans["error"]["conflictingPositions"], f"{ans}")
    course = {"type": "course.defined", "data": {"id": "c1"}, "tags": ["course:c1"],
              "id": "0192f0c4-5e6a-7b3c-8d4e-0123456789ac"}
    dcb = {"events": [course], "condition": {"failIfEventsMatch": {
        "types": ["course.defined"], "tags": ["course:c1"]}, "after": 0}}
    c.call("POST", "/v1/databases/{db}/events", {"db": DB}, body=dcb, status=201)
    _, _, dup = c.call("POST", "/v1/databases/{db}/events", {"db": DB},
                       body={"events": [course]}, status=200)
    check(dup.get("duplicate") is True, f"duplicate: {dup}")
    for bad in ({"appends": [], "events": []},
                {"events": [{"type": "t", "data": 1}], "conditions": [{"query": {}}]},
                {"appends": [{"stream": "$x", "events": [{"type": "t", "data": 1}]}]},
                {"events": [{"type": "t", "data": 1}],
                 "condition": {"failIfEventsMatch": {"kinds": ["t"]}}}):
        c.fails("POST", "/v1/databases/{db}/events", {"db": DB}, body=bad, status=400,
                bad_request=True)


def exercise_reads(c):
    c.call("GET", "/v1/databases/{db}", {"db": DB}, status=200)
    c.call("GET", "/health/detailed", status=200)
    _, _, page = c.call("GET", "/v1/databases/{db}/events", {"db": DB}, status=200,
                        query={"from": "1", "limit": "1", "direction": "forward"})
    check(page["hasMore"] and page["next"] == 2, f"{page}")
    c.call("GET", "/v1/databases/{db}/events", {"db": DB}, status=200, query={
        "types": "order.*,stock.reserved", "tags": "customer:7", "category": "order",
        "subject": "orders/*", "timeFrom": "2026-01-01T00:00:00Z", "limit": "10",
        "recordedTo": "2999-01-01T00:00:00Z", "asOf": "100"})
    c.fails("GET", "/v1/databases/{db}/events", {"db": DB}, query={"limit": "0"}, status=400,
            code="invalid_parameter")
    query = "/v1/databases/{db}/query"
    c.call("POST", query, {"db": DB}, status=200, body={
        "items": [{"types": ["order.*"], "tags": ["customer:7"]}, {"streams": ["stock-7"]}],
        "limit": 10, "from": 1, "direction": "forward", "timeTo": "2999-01-01T00:00:00Z"})
    c.call("POST", query, {"db": DB}, status=200, body={
        "selector": {"type": "or", "selectors": [
            {"type": "equals", "attr": {"stream": "order-1"}},
            {"type": "and", "selectors": [{"type": "starts_with", "attr": {"event_type": "stock."}},
                                          {"type": "equals", "attr": {"subject": None}}]}]},
        "direction": "backward", "asOfTime": "2999-01-01T00:00:00Z"})
    for bad in ({"items": []}, {"typs": ["a"]}, {"limit": 1001}, {"from": 0},
                {"items": [{"types": ["a"]}], "selector": {"type": "equals",
                                                           "attr": {"stream": "s"}}},
                {"direction": "sideways"}, {"items": [{"types": ["a"], "kind": 1}]}):
        c.fails("POST", query, {"db": DB}, body=bad, status=400, code="invalid_request",
                bad_request=True)
    c.call("GET", "/v1/databases/{db}/events/{position}", {"db": DB, "position": 1}, status=200)
    c.fails("GET", "/v1/databases/{db}/events/{position}", {"db": DB, "position": 999},
            status=404, code="event_not_found")
    _, _, streams = c.call("GET", "/v1/databases/{db}/streams", {"db": DB}, status=200,
                           query={"prefix": "order", "limit": "1"})
    check(streams["next"] == "order-1", f"{streams}")
    c.call("GET", "/v1/databases/{db}/streams", {"db": DB}, status=200,
           query={"category": "order", "after": "order-1", "asOfTime": "2999-01-01T00:00:00Z"})
    one = {"db": DB, "stream": "order-1"}
    c.call("GET", "/v1/databases/{db}/streams/{stream}", one, status=200, query={"asOf": "2"})
    c.call("GET", STREAM_EVENTS, one, status=200, query={"direction": "backward", "limit": "1"})
    c.fails("GET", STREAM_EVENTS, {"db": DB, "stream": "nope"}, status=404,
            code="stream_not_found")
    meta = "/v1/databases/{db}/streams/{stream}/metadata"
    c.call("PUT", meta, one, status=200, headers={"Idempotency-Key": "meta-1"},
           body={"maxCount": 10, "maxAge": None, "truncateBefore": None})
    c.call("GET", meta, one, status=200)
    c.fails("PUT", meta, one, body={"maxCount": 0}, status=400, code="invalid_request",
            bad_request=True)
    c.fails("PUT", meta, one, body={"maxAge": 315360001}, status=400, code="invalid_request",
            bad_request=True)


def exercise_subscriptions(c):
    subs = "/v1/databases/{db}/subscriptions"
    one = {"db": DB, "name": "billing"}
    c.call("POST", subs, {"db": DB}, status=201, body={
        "name": "billing", "filter": {"types": ["order.*"], "tags": ["customer:7"]}, "from": 1,
        "ackTimeoutSeconds": 30, "maxRetries": 0})
    c.call("POST", subs, {"db": DB}, status=201, body={"name": "all", "filter": None,
                                                        "from": "latest"})
    c.fails("POST", subs, {"db": DB}, body={"name": "billing"}, status=409,
            code="subscription_exists")
    for bad in ({"name": "bad name"}, {"name": "x", "ackTimeoutSeconds": 0},
                {"name": "x", "ackTimeoutSeconds": 3601}, {"name": "x", "from": 0},
                {"name": "x", "maxRetries": 101}, {"name": "x", "from": "soon"},
                {"name": "x", "filter": {"type": ["a"]}}, {"name": "x", "group": "y"}):
        c.fails("POST", subs, {"db": DB}, body=bad, status=400, bad_request=True)
    c.call("GET", subs, {"db": DB}, status=200)
    c.call("GET", subs + "/{name}", one, status=200)
    _, _, pulled = c.call("POST", subs + "/{name}/pull", one, status=200,
                          body={"consumer": "worker-1", "max": 10})
    positions = [e["event"]["position"] for e in pulled["events"]]
    check(len(positions) >= 1, f"pulled {pulled}")
    for bad in ({"consumer": "w", "max": 0}, {"consumer": "w", "max": 1001}, {"max": 1},
                {"consumer": "a b"}):
        c.fails("POST", subs + "/{name}/pull", one, body=bad, status=400, bad_request=True)
    c.call("POST", subs + "/{name}/ack", one, status=200, body={"positions": positions[:1]})
    for bad in ({"positions": []}, {"positions": list(range(1, 1002))}, {"positions": [0]},
                {"positions": [1], "park": True}):
        c.fails("POST", subs + "/{name}/ack", one, body=bad, status=400, bad_request=True)
    c.call("POST", subs + "/{name}/nack", one, status=200,
           body={"positions": positions[1:] or positions, "park": True})
    c.fails("POST", subs + "/{name}/nack", one, body={"positions": [1], "park": "yes"},
            status=400, bad_request=True)
    c.call("GET", subs + "/{name}/parked", one, status=200, query={"from": "1", "limit": "10"})
    c.call("POST", subs + "/{name}/replay", one, status=200, body={"positions": positions[:1]})
    c.call("POST", subs + "/{name}/replay", one, status=200, body={})
    c.call("DELETE", subs + "/{name}", one, status=204)
    c.fails("GET", subs + "/{name}", one, status=404, code="subscription_not_found")


def exercise_webhooks(c, good, failing):
    hooks = "/v1/databases/{db}/webhooks"
    c.call("POST", hooks, {"db": DB}, status=201, body={
        "name": "audit", "url": good.url(), "filter": {"types": ["order.*"]},
        "headers": {"X-Tenant": "shop"}, "retry": {"maxAttempts": 2, "backoffMs": 10}, "from": 1})
    c.call("POST", hooks, {"db": DB}, status=201, body={
        "name": "broken", "url": failing.url(), "retry": {"maxAttempts": 1, "backoffMs": 10}})
    for bad in ({"name": "x", "url": "ftp://127.0.0.1/"}, {"name": "x"},
                {"name": "x", "url": "http://127.0.0.1/", "retry": {"maxAttempts": 21}},
                {"name": "x", "url": "http://127.0.0.1/", "retry": {"backoffMs": 9}},
                {"name": "x", "url": "http://127.0.0.1/", "from": 0},
                {"name": "x", "url": "http://127.0.0.1/", "headers": {"Host": 1}},
                {"name": "x", "url": "http://127.0.0.1/", "secret": "s"}):
        c.fails("POST", hooks, {"db": DB}, body=bad, status=400, bad_request=True)
    one = {"db": DB, "name": "audit"}
    wait_until(lambda: good.got, timeout=20)
    wait_until(lambda: c.s.get(f"/v1/databases/{DB}/webhooks/audit")[2]["deliveries"])
    wait_until(lambda: c.s.get(f"/v1/databases/{DB}/webhooks/broken")[2]["parkedBatches"])
    c.call("GET", hooks, {"db": DB}, status=200)
    _, _, audit = c.call("GET", hooks + "/{name}", one, status=200)
    check(audit["deliveries"], f"no delivery logged: {audit}")
    _, _, broken = c.call("GET", hooks + "/{name}", {"db": DB, "name": "broken"}, status=200)
    check(broken["parkedBatches"] and broken["deliveries"][0]["error"], f"{broken}")
    c.call("POST", hooks + "/{name}/rotate", one, status=200, body={"graceSeconds": 60})
    c.fails("POST", hooks + "/{name}/rotate", one, body={"graceSeconds": 604801}, status=400,
            bad_request=True)
    c.call("DELETE", hooks + "/{name}", one, status=204)
    c.fails("GET", hooks + "/{name}", one, status=404, code="webhook_not_found")


def exercise_live_and_compaction(c):
    sock, rest = open_live(c.s, c, "/v1/databases/{db}/events/live", {"db": DB},
                           {"types": "order.*,stock.*", "from": "1"})
    try:
        check(sse_events(c, sock, rest) >= 3, "too few events delivered")
        _, _, conns = c.call("GET", "/v1/connections", status=200)
        check(len(conns["connections"]) == 1, f"{conns}")
        c.call("DELETE", "/v1/connections/{id}", {"id": conns["connections"][0]["id"]},
               status=204)
    finally:
        sock.close()
    c.fails("DELETE", "/v1/connections/{id}", {"id": "999"}, status=404,
            code="connection_not_found")
    sock, _ = open_live(c.s, c, "/v1/databases/{db}/streams/{stream}/events/live",
                        {"db": DB, "stream": "order-1"}, {"from": "latest"})
    sock.close()
    c.fails("GET", "/v1/databases/{db}/events/live", {"db": DB}, query={"from": "0"},
            status=400, code="invalid_parameter")
    comp = "/v1/databases/{db}/compaction"
    c.call("GET", comp, {"db": DB}, status=200)
    c.call("POST", comp, {"db": DB}, status=202)
    c.call("POST", comp, {"db": DB}, status=202, body={})
    c.fails("POST", comp, {"db": DB}, body={"force": True}, status=400, code="invalid_request",
            bad_request=True)
    wait_until(lambda: c.s.get(f"/v1/databases/{DB}/compaction")[2]["compaction"]["last"])
    _, _, status = c.call("GET", comp, {"db": DB}, status=200)
    check(status["compaction"]["last"], f"no compaction ran: {status}")
    one = "/v1/databases/{db}/streams/{stream}"
    c.call("DELETE", one, {"db": DB, "stream": "order-2"}, status=204,
           headers={"Idempotency-Key": "delete-order-2"})
    c.call("DELETE", one, {"db": DB, "stream": "stock-7"}, status=204, query={"hard": "true"})
    c.fails("GET", one, {"db": DB, "stream": "stock-7"}, status=410, code="stream_deleted")


def exercise_backup(c):
    c.call("GET", "/v1/backup", status=200)


def exercise_keys(c):
    keys = "/v1/keys"
    _, _, admin = c.call("POST", keys, status=201, body={"scope": "admin", "name": "ops",
                                                         "notAfter": None, "rateLimit": None})
    c.fails("GET", "/v1/whoami", status=401, code="unauthorized")
    c.headers = {"Authorization": "Bearer " + admin["key"]}
    c.call("GET", "/v1/whoami", status=200)
    _, _, reader = c.call("POST", keys, status=201, body={
        "scope": "read", "database": DB, "name": "reader", "notAfter": "2099-01-01T00:00:00Z",
        "rateLimit": 100})
    for bad in ({"scope": "root"}, {"scope": "read", "database": "Shop"},
                {"scope": "read", "rateLimit": 0}, {"scope": "read", "notAfter": "soon"},
                {"scope": "read", "label": "x"}):
        c.fails("POST", keys, body=bad, status=400, code="invalid_request", bad_request=True)
    c.call("GET", keys, status=200)
    key_id = reader["apiKey"]["id"]
    c.call("POST", keys + "/{id}/rotate", {"id": key_id}, status=201, body={"graceSeconds": 60})
    for bad in ({"graceSeconds": -1}, {"graceSeconds": 2592001}, {"grace": 1}):
        c.fails("POST", keys + "/{id}/rotate", {"id": key_id}, body=bad, status=400,
                code="invalid_request", bad_request=True)
    c.call("DELETE", keys + "/{id}", {"id": key_id}, status=204,
           query={"at": "2099-01-01T00:00:00Z"})
    c.fails("DELETE", keys + "/{id}", {"id": "0123456789abcdef"}, status=404,
            code="key_not_found")
    c.call("DELETE", "/v1/databases/{db}", {"db": DB}, status=204)


def exercise_logic(c):
    comp = "/v1/databases/{db}/components/{name}"
    reducer = {"kind": "reducer", "language": "lua", "category": "order",
               "source": "function reduce(s, e) return (s or 0) + 1 end"}
    c.call("PUT", comp, {"db": DB, "name": "orders"}, body=reducer, status=201)
    c.call("PUT", comp, {"db": DB, "name": "orders"}, body=reducer, status=200)
    view = {"kind": "view", "language": "lua", "filter": {"categories": ["order"]},
            "source": "function evolve(s, e, p) return {n = ((s or {}).n or 0) + 1, "
                      "who = p.who} end"}
    c.call("PUT", comp, {"db": DB, "name": "counts"}, body=view, status=201)
    c.call("PUT", comp, {"db": DB, "name": "later"}, status=201, body={
        "kind": "projection", "language": "lua", "filter": None,
        "source": "function key(e) return e.stream end function apply(s, e) return s end"})
    c.fails("PUT", comp, {"db": DB, "name": "bad"}, status=400, code="syntax_error",
            body={"kind": "command", "language": "lua", "source": "function decide("})
    c.fails("PUT", comp, {"db": DB, "name": "bad"}, status=400, code="invalid_component",
            body={"kind": "reducer", "language": "lua", "source": "x"}, bad_request=True)
    _, _, lst = c.call("GET", "/v1/databases/{db}/components", {"db": DB}, status=200)
    check([x["name"] for x in lst["components"]] == ["counts", "later", "orders"], f"{lst}")
    c.call("GET", comp, {"db": DB, "name": "counts"}, status=200)
    c.fails("GET", comp, {"db": DB, "name": "nope"}, status=404, code="component_not_found")
    state = "/v1/databases/{db}/streams/{stream}/state"
    c.call("GET", state, {"db": DB, "stream": "order-1"}, status=200)
    c.call("GET", state, {"db": DB, "stream": "order-1"}, status=200, query={"asOf": "3"})
    c.fails("GET", state, {"db": DB, "stream": "stock-7"}, status=404, code="no_reducer")
    c.call("GET", "/v1/databases/{db}/views/{name}", {"db": DB, "name": "counts"}, status=200,
           query={"who": "me", "asOfTime": "2999-01-01T00:00:00Z"})
    proj = "/v1/databases/{db}/projections/{name}"
    for _ in range(200):
        _, _, info = c.call("GET", proj, {"db": DB, "name": "later"})
        if info.get("status") == "live" and info["lag"] == 0:
            break
        time.sleep(0.05)
    check(info["status"] == "live", f"{info}")
    c.call("GET", proj + "/state/{key}", {"db": DB, "name": "later", "key": "order-1"},
           status=200)
    c.fails("GET", proj + "/state/{key}", {"db": DB, "name": "later", "key": "nope"},
            status=404, code="key_not_found")
    c.call("GET", proj + "/keys", {"db": DB, "name": "later"}, status=200,
           query={"prefix": "order", "limit": "2"})
    c.call("GET", proj + "/changes", {"db": DB, "name": "later"}, status=200,
           query={"after": "1", "limit": "5"})
    c.fails("GET", proj, {"db": DB, "name": "nope"}, status=404, code="projection_not_found")
    hooked = {"kind": "projection", "language": "lua", "webhook": {
        "url": "http://127.0.0.1:9/hook", "headers": {"X-A": "b"}, "maxAttempts": 1,
        "backoffMs": 10, "isolateSecret": True},
        "source": "function key(e) return e.stream end function apply(s, e) return s end"}
    c.call("PUT", comp, {"db": DB, "name": "hooked"}, body=hooked, status=201)
    for _ in range(200):
        _, _, info = c.call("GET", proj, {"db": DB, "name": "hooked"})
        if info.get("webhook", {}).get("deliveries"):
            break
        time.sleep(0.05)
    check(info["webhook"]["deliveries"], f"{info}")
    c.call("POST", proj + "/webhook/rotate", {"db": DB, "name": "hooked"}, status=200,
           body={"graceSeconds": 5})
    c.fails("POST", proj + "/webhook/rotate", {"db": DB, "name": "later"}, status=404,
            code="webhook_not_found")
    c.call("POST", "/v1/databases/{db}/projection-webhooks/rotate", {"db": DB}, status=200,
           body={})
    c.call("DELETE", comp, {"db": DB, "name": "hooked"}, status=204)
    sock, rest = open_live(c.s, c, proj + "/changes/live", {"db": DB, "name": "later"},
                           {"after": "0"})
    deadline = time.monotonic() + 10
    while b"event: change" not in rest and time.monotonic() < deadline:
        rest += sock.recv(65536)
    sock.close()
    check(b"event: change" in rest, f"no change over the live feed: {rest[:300]!r}")
    c.call("PUT", comp, {"db": DB, "name": "act"}, status=201, body={
        "kind": "command", "language": "lua",
        "source": "function decide(c, ctx) if c.no then return {error = {code = 'no'}} end "
                  "local s = ctx.state('order-1') return {events = {{stream = 'order-9', "
                  "type = 'Acted', data = {seen = s}}}} end"})
    cmd = "/v1/databases/{db}/commands/{name}"
    c.call("POST", cmd, {"db": DB, "name": "act"}, body={"command": {}}, status=201)
    c.call("POST", cmd, {"db": DB, "name": "act"}, body={"command": {}}, status=200,
           query={"dryRun": "true"})
    c.fails("POST", cmd, {"db": DB, "name": "act"}, body={"command": {"no": True}}, status=422,
            code="command_rejected")
    c.fails("POST", cmd, {"db": DB, "name": "act"}, body={"order": {}}, status=400,
            code="invalid_request", bad_request=True)
    c.call("DELETE", comp, {"db": DB, "name": "later"}, status=204)


def test_every_answer_matches_its_schema():
    """Every operation of the document, run with realistic requests (a database with streams
    and events, a subscription, webhooks to local receivers, a live subscription, keys): each
    success answer matches the schema the document declares for its status and media type,
    each request body the one declared for it, and typical errors match Error. Bodies the
    server refuses as malformed are refused by the request schemas too."""
    from test_webhooks import Receiver
    good, failing = Receiver(), Receiver()
    failing.plan = [500] * 100
    try:
        with Server(extra=["--webhook-allow", "127.0.0.1", "--compact-interval", "0"]) as s:
            st, _, doc = s.get("/v1/openapi.json")
            check(st == 200, f"{st}")
            c = Contract(s, doc)
            exercise_databases(c)
            exercise_appends(c)
            exercise_reads(c)
            exercise_logic(c)
            exercise_subscriptions(c)
            exercise_webhooks(c, good, failing)
            exercise_live_and_compaction(c)
            exercise_backup(c)
            exercise_keys(c)
            every = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
            check(c.used == every, f"operations not exercised: {sorted(every - c.used)}")
            # errors outside any operation have the same shape
            st, _, ans = s.request("PUT", "/v1/databases", {}, headers=c.headers)
            check(st == 405, f"{st}")
            c.schema("Error", ans, "405")
            st, _, ans = s.get("/v1/nothing", headers=c.headers)
            check(st == 404, f"{st}")
            c.schema("Error", ans, "404")
    finally:
        good.close()
        failing.close()
