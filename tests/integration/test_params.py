"""Query parameters: every route refuses what it does not take (a typo must not silently widen
a read), the OpenAPI document lists exactly what each route takes, list values can carry
commas, and positions read the same way everywhere."""
import re
import urllib.parse

from harness import Server, check, expect_error, quote

# A value each kind of documented parameter accepts (by schema), for probing.
SAMPLE_BY_NAME = {"direction": "forward", "from": "1", "hard": "false", "at": "2099-01-01T00:00:00Z",
                  "api_key": "", "after": "a", "prefix": "s", "category": "s"}


def sample(param):
    name, schema = param["name"], param["schema"]
    if name in SAMPLE_BY_NAME:
        return SAMPLE_BY_NAME[name]
    if schema.get("format") == "date-time":
        return "2020-01-01T00:00:00Z"
    if schema.get("type") == "integer":
        return str(max(1, schema.get("minimum", 1)))
    if schema.get("type") == "boolean":
        return "false"
    if "enum" in schema:
        return schema["enum"][0]
    return "s"


def concrete(path):
    return re.sub(r"\{(\w+)\}", lambda m: {"db": "default", "stream": "s", "position": "1",
                                           "id": "0123456789abcdef", "name": "sub",
                                           "key": "k"}[m.group(1)], path)


def test_every_route_refuses_unknown_parameters_and_takes_its_documented_ones():
    with Server() as s:
        st, _, _ = s.append("s", [{"type": "t", "data": 1}])
        check(st == 201, "seed")
        st, _, doc = s.get("/v1/openapi.json")
        ops = [(path, method, op) for path, o in doc["paths"].items() for method, op in o.items()]
        for path, method, op in ops:
            body = {} if "requestBody" in op else None
            free = any(p["in"] == "query" and p.get("explode") for p in op.get("parameters", []))
            st, _, ans = s.request(method.upper(), concrete(path) + "?bogusParam=1", body)
            if free:
                # a route whose other parameters are the handler's (a view's): taken
                check(not (st == 400 and ans["error"]["code"] == "invalid_parameter"),
                      f"{method} {path}: a free parameter refused: {ans}")
                continue
            # an undocumented parameter: 400 naming it, before anything happens
            expect_error((st, _, ans), 400, "invalid_parameter", "bogusParam")
        check(s.head() == 1, "a refused request wrote something")
        probed = 0
        for path, method, op in ops:
            if path.endswith("/live"):
                continue  # subscriptions never end; test_live covers their parameters
            body = {} if "requestBody" in op else None
            for p in op.get("parameters", []):
                if p["in"] != "query":
                    continue
                q = urllib.parse.urlencode({p["name"]: sample(p)})
                st, _, ans = s.request(method.upper(), f"{concrete(path)}?{q}", body)
                unknown = (st == 400 and isinstance(ans, dict) and
                           "unknown query parameter" in ans["error"]["message"])
                check(not unknown, f"{method} {path}?{q}: documented yet refused: {ans}")
                probed += 1
        check(probed >= 25, f"only {probed} documented parameters probed")


def test_the_typo_of_the_report():
    with Server() as s:
        s.append("a", [{"type": "t", "data": 1}])
        s.append("b", [{"type": "t", "data": 2}])
        expect_error(s.get("/v1/databases/default/events?stream=a"), 400, "invalid_parameter",
                     "stream")
        st, _, body = s.get("/v1/databases/default/events?streams=a")
        check(st == 200 and [e["stream"] for e in body["events"]] == ["a"], f"{st} {body}")


def test_single_parameters_given_twice_are_refused_lists_add_up():
    with Server() as s:
        for name in ("a", "b", "c"):
            s.append(name, [{"type": "t", "data": name}])
        expect_error(s.get("/v1/databases/default/events?limit=1&limit=2"), 400,
                     "invalid_parameter", "limit")
        expect_error(s.get("/v1/databases/default/streams/a/events?from=1&from=1"), 400,
                     "invalid_parameter", "from")
        st, _, body = s.get("/v1/databases/default/events?streams=a&streams=c")
        check(st == 200 and [e["stream"] for e in body["events"]] == ["a", "c"], f"{body}")
        st, _, body = s.get("/v1/databases/default/events?streams=a,b&streams=c")
        check(st == 200 and len(body["events"]) == 3, f"{body}")


def test_names_with_commas_and_backslashes_can_be_asked_for():
    with Server() as s:
        for name in ("x,y", "x", "y", "a\\b"):
            st, _, _ = s.append(name, [{"type": "t", "data": name}])
            check(st == 201, f"append {name}")
        def streams(q):
            st, _, body = s.get("/v1/databases/default/events?streams=" + quote(q))
            check(st == 200, f"streams={q}: {st} {body}")
            return sorted(e["stream"] for e in body["events"])
        check(streams("x\\,y") == ["x,y"], "escaped comma")
        check(streams("x,y") == ["x", "y"], "plain comma separates")
        check(streams("a\\\\b") == ["a\\b"], "escaped backslash")
        check(streams("x\\,y,a\\\\b") == ["a\\b", "x,y"], "both")
        expect_error(s.get("/v1/databases/default/events?streams=" + quote("a\\b")), 400,
                     "invalid_parameter", "streams")
        # tags and types take the same escapes
        st, _, _ = s.append("t", [{"type": "t", "data": 0, "tags": ["k:1,2"]}])
        st, _, body = s.get("/v1/databases/default/events?tags=" + quote("k:1\\,2"))
        check(st == 200 and len(body["events"]) == 1, f"tag with a comma: {body}")


def test_positions_from_one_everywhere_and_has_more_on_every_read():
    with Server() as s:
        for i in range(3):
            s.append("s", [{"type": "t", "data": i}])
        expect_error(s.get("/v1/databases/default/events/0"), 400, "invalid_parameter")
        expect_error(s.get("/v1/databases/default/events?from=0"), 400, "invalid_parameter",
                     "from")
        expect_error(s.get("/v1/databases/default/events?to=0"), 400, "invalid_parameter", "to")
        expect_error(s.post("/v1/databases/default/query", {"from": 0}), 400, "invalid_request",
                     "from")
        expect_error(s.get("/v1/databases/default/streams/s/events?from=0"), 400,
                     "invalid_parameter", "from")
        st, _, page = s.get("/v1/databases/default/events?limit=2")
        check(page["hasMore"] is True and page["next"] == 3 and "has_more" not in page, f"{page}")
        st, _, page = s.get("/v1/databases/default/streams/s/events?limit=2")
        check(page["hasMore"] is True and page["next"] == 3, f"stream page: {page}")
        st, _, page = s.get("/v1/databases/default/streams/s/events?from=3")
        check(page["hasMore"] is False and page["next"] is None, f"last stream page: {page}")
