"""Operations: Prometheus metrics, request ids, CORS, detailed health."""
import re

from harness import Server, check, run_cli, wait_until


def metric(text, name, **labels):
    """The value of one series in a Prometheus text page, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{.*\})? ([0-9.e+-]+)$", line)
        if m and m.group(1) == name and (m.group(2) or "{}") == "{" + want + "}":
            return float(m.group(3))
    return None


def page(s, headers=None):
    st, hdrs, body = s.request("GET", "/metrics", headers=headers)
    check(st == 200 and hdrs.get("content-type", "").startswith("text/plain"), f"{st} {hdrs}")
    return body.decode() if isinstance(body, bytes) else body


def test_metrics_count_requests_and_commits():
    with Server() as s:
        route = "POST /v1/databases/{db}/streams/{stream}/events"
        for i in range(5):
            st, _, _ = s.append(f"m-{i % 2}", [{"type": "t", "data": i}])
            check(st == 201, f"append {st}")
        s.append("m-0", [{"type": "t", "data": 0}], expected=0)  # 409
        s.get("/v1/nope")
        text = page(s)
        check(metric(text, "annals_http_requests_total", route=route, status="201") == 5, text[:800])
        check(metric(text, "annals_http_requests_total", route=route, status="409") == 1, "409")
        check(metric(text, "annals_http_requests_total", route="none", status="404") == 1, "404")
        check(metric(text, "annals_http_request_duration_seconds_count", route=route) == 6,
              "histogram count")
        check(metric(text, "annals_http_request_duration_seconds_bucket", route=route,
                     le="+Inf") == 6, "+Inf bucket")
        check(metric(text, "annals_appends_total", database="default") == 5, "appends")
        check(metric(text, "annals_events", database="default") == 5, "events")
        commits = metric(text, "annals_commits_total", database="default")
        check(1 <= commits <= 5, f"commits {commits}")
        check(metric(text, "annals_fsyncs_total", database="default") >= commits, "fsyncs")
        check(metric(text, "annals_open_connections") >= 1, "connections")
        check(metric(text, "annals_subscribers") == 0, "subscribers")


def test_metrics_need_a_key_when_auth_is_on():
    with Server(start=False) as s:
        rc, out = run_cli(["keys", "create", "--scope", "read", "--database", "default",
                           "--data", s.data])
        key = next(line for line in out.splitlines() if line.startswith("ak_"))
        s.start()
        st, _, _ = s.request("GET", "/metrics")
        check(st == 401, f"no key: {st}")
        st, _, _ = s.post("/v1/databases", {"name": "secret"}, headers={})
        text = page(s, headers={"X-API-Key": key})
        check(metric(text, "annals_events", database="default") == 0, "own database listed")


def test_request_ids():
    with Server() as s:
        st, hdrs, _ = s.request("GET", "/health", headers={"X-Request-Id": "trace-42.a_b"})
        check(hdrs.get("x-request-id") == "trace-42.a_b", f"echo: {hdrs}")
        ids = set()
        for _ in range(3):
            st, hdrs, _ = s.request("GET", "/health")
            ids.add(hdrs.get("x-request-id"))
        check(len(ids) == 3 and None not in ids, f"generated ids: {ids}")
        st, hdrs, _ = s.request("GET", "/health", headers={"X-Request-Id": "bad id!"})
        check(hdrs.get("x-request-id") not in (None, "bad id!"), f"invalid id replaced: {hdrs}")
        st, hdrs, _ = s.request("GET", "/v1/nope")
        check(st == 404 and hdrs.get("x-request-id"), "errors carry an id too")


def test_cors_development_mode_allows_local_pages():
    with Server() as s:
        st, hdrs, _ = s.request("OPTIONS", "/v1/databases/default/events",
                                headers={"Origin": "http://localhost:3000",
                                         "Access-Control-Request-Method": "POST"})
        check(st == 204, f"preflight {st}")
        check(hdrs.get("access-control-allow-origin") == "http://localhost:3000", f"{hdrs}")
        allowed = hdrs.get("access-control-allow-headers", "")
        for h in ("Authorization", "Content-Type", "X-API-Key", "Idempotency-Key",
                  "X-Idempotency-Key"):
            check(h in allowed, f"{h} not in {allowed}")
        check("POST" in hdrs.get("access-control-allow-methods", ""), f"{hdrs}")
        st, hdrs, _ = s.request("GET", "/health", headers={"Origin": "http://127.0.0.1:8080"})
        check(hdrs.get("access-control-allow-origin") == "http://127.0.0.1:8080", f"{hdrs}")
        for other in ("https://x.example", "http://localhost.evil.example"):
            st, hdrs, _ = s.request("GET", "/health", headers={"Origin": other})
            check("access-control-allow-origin" not in hdrs, f"{other} allowed: {hdrs}")


def test_cors_configured_origins_only():
    with Server(extra=["--cors-origins", "https://a.example,https://b.example"]) as s:
        st, hdrs, _ = s.request("GET", "/health", headers={"Origin": "https://b.example"})
        check(hdrs.get("access-control-allow-origin") == "https://b.example", f"{hdrs}")
        st, hdrs, _ = s.request("GET", "/health", headers={"Origin": "https://evil.example"})
        check("access-control-allow-origin" not in hdrs, f"other origin allowed: {hdrs}")
        st, hdrs, _ = s.request("OPTIONS", "/v1/databases",
                                headers={"Origin": "https://evil.example",
                                         "Access-Control-Request-Method": "POST"})
        check(st == 204 and "access-control-allow-origin" not in hdrs, f"{st} {hdrs}")


def test_cors_none_by_default_with_keys():
    with Server(start=False) as s:
        run_cli(["keys", "create", "--scope", "admin", "--data", s.data])
        s.start()
        st, hdrs, _ = s.request("GET", "/health", headers={"Origin": "https://app.example"})
        check(st == 200 and "access-control-allow-origin" not in hdrs, f"{hdrs}")


def test_health_detailed():
    with Server() as s:
        s.post("/v1/databases", {"name": "two"})
        s.append("h", [{"type": "t", "data": 1}, {"type": "t", "data": 2}])
        st, _, h = s.get("/health/detailed")
        check(st == 200 and h["status"] == "ok" and h["version"] and h["uptimeSeconds"] >= 0,
              f"{h}")
        check(h["auth"] is False, f"{h}")
        dbs = {d["name"]: d for d in h["databases"]}
        check(set(dbs) == {"default", "two"} and dbs["default"]["head"] == 2 and
              dbs["default"]["queueDepth"] == 0 and dbs["two"]["head"] == 0, f"{dbs}")


def test_request_log_lines_carry_the_request_id():
    with Server(extra=["--log-level", "debug"]) as s:
        s.request("GET", "/v1/databases/default/streams/none", headers={"X-Request-Id": "rid-77"})
        import json as _json

        def logged():
            for line in s.log().splitlines():
                try:
                    rec = _json.loads(line)
                except ValueError:
                    continue
                if rec.get("msg") == "request" and rec.get("requestId") == "rid-77":
                    return rec
            return None
        import time as _time
        deadline = _time.time() + 5
        while not logged() and _time.time() < deadline:
            _time.sleep(0.05)
        rec = logged()
        check(rec and rec["status"] == 404 and rec["method"] == "GET" and
              rec["path"] == "/v1/databases/default/streams/none" and rec["ms"] >= 0,
              f"request line: {rec}")


def prometheus_parser():
    """Debian's python3-prometheus-client (scripts/deps.sh installs it)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        import sys
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            from harness import Skip
            raise Skip("python3-prometheus-client is not installed")
    return text_string_to_metric_families


def test_metrics_page_is_valid_prometheus_text_with_several_databases():
    parse = prometheus_parser()
    with Server() as s:
        for name in ("alpha", "beta"):
            check(s.post("/v1/databases", {"name": name})[0] == 201, "create")
            s.append("x", [{"type": "t", "data": 1}], db=name)
        text = page(s)
        families = list(parse(text))
        names = [f.name for f in families]
        check(len(names) == len(set(names)), f"families repeated: {sorted(names)}")
        for f in families:
            check(f.type != "unknown", f"{f.name} has no TYPE")
            check(f.documentation, f"{f.name} has no HELP")
        by = {f.name: f for f in families}
        events = {smp.labels["database"]: smp.value for smp in by["annals_events"].samples}
        check(events == {"alpha": 1, "beta": 1, "default": 0}, f"{events}")
        check(by["annals_uptime_seconds"].type == "gauge", "uptime")
        check(by["annals_appends"].type == "counter", "a counter family (its _total dropped)")
        # each family's lines are together: HELP, TYPE, then its series
        seen, current = set(), None
        for line in text.splitlines():
            m = re.match(r"^(?:# (?:HELP|TYPE) )?([a-z_]+)", line)
            base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            if base != current:
                check(base not in seen, f"family {base} is split: line {line!r}")
                seen.add(base)
                current = base


def test_root_points_to_the_api_document():
    with Server() as s:
        st, _, body = s.get("/")
        check(st == 200 and body["openapi"] == "/v1/openapi.json" and body["name"] == "annals",
              f"{st} {body}")
        st, h, body = s.get("/", headers={"Accept": "text/html,*/*"})
        check(st == 200 and h["content-type"].startswith("text/html")
              and b"/v1/openapi.json" in body, f"{st} {h}")


def test_absolute_form_targets_are_served():
    from harness import split_raw
    with Server() as s:
        s.append("s", [{"type": "t", "data": 1}])
        raw = (f"GET http://127.0.0.1:{s.port}/v1/databases/default/events?limit=1 HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{s.port}\r\nConnection: close\r\n\r\n").encode()
        st, _, body = split_raw(s.raw(raw))
        check(st == 200 and b'"position":1' in body, f"{st} {body[:200]!r}")
        st, _, _ = split_raw(s.raw(b"GET HTTP://LOCALHOST HTTP/1.1\r\nHost: localhost\r\n"
                                   b"Connection: close\r\n\r\n"))
        check(st == 200, f"scheme and host in capitals, empty path: {st}")
        st, _, body = split_raw(s.raw(b"GET http://u@localhost/health HTTP/1.1\r\n"
                                      b"Host: localhost\r\nConnection: close\r\n\r\n"))
        check(st == 400, f"user information in the authority: {st} {body!r}")


def test_the_first_key_switches_authentication_on_loudly():
    with Server() as s:
        st, _, body = s.post("/v1/keys", {"scope": "admin"})
        check(st == 201, f"{st} {body}")
        check(wait_until(lambda: "authentication is now ON" in s.log()), s.log())
        st, _, _ = s.post("/v1/keys", {"scope": "read"},
                          headers={"Authorization": f"Bearer {body['key']}"})
        check(st == 201 and s.log().count("authentication is now ON") == 1, "said once")
