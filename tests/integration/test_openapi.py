"""The OpenAPI document (GET /v1/openapi.json) against the route list of docs/api.md and the
server itself: every documented route is in the document with its scope, every route in the
document is answered by the server (not 404 not_found, not 405), and nothing else is."""
import os
import re

from harness import REPO, Server, check

SCOPES = {"none": "none", "any key": "any", "read": "read", "write": "write", "admin": "admin",
          "admin (all databases)": "admin"}
SAMPLE = {"db": "default", "stream": "s-1", "position": "1", "id": "0123456789abcdef",
          "name": "sub-1"}


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
