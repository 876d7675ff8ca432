"""The query builder (GET /evidentsource/databases/{db}/query-builder) in headless Chromium:
the page loads htmx from this server only (a Content-Security-Policy forbids anything else), a
query typed into its form shows the matching events as a table, event data is shown as text
(never as markup), and with keys on the page sends the key typed into it."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from harness import Server, Skip, check, cli_keys

HERE = os.path.dirname(os.path.abspath(__file__))


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise Skip("no Chromium (scripts/deps.sh installs the chromium package)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive(url, fields, click="#run", wait="#results", result="#results"):
    """Opens url in a fresh headless Chromium, fills fields, clicks, returns the results."""
    port = free_port()
    profile = tempfile.mkdtemp(prefix="annals-chromium-")
    browser = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run(["node", os.path.join(HERE, "cdp_page.mjs"), str(port), url,
                              json.dumps(fields), click, wait, result],
                             capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, f"driver failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout)
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def append(s, stream, type_, data, db="default", headers=None):
    st, _, b = s.request("POST", f"/v1/databases/{db}/streams/{stream}/events",
                         {"events": [{"type": type_, "data": data}]}, headers=headers)
    check(st == 201, f"append {st} {b}")


def test_a_query_typed_into_the_page_shows_its_events():
    with Server() as s:
        append(s, "order-service", "OrderCreated", {"n": 1})
        append(s, "order-service", "OrderShipped", {"n": 2})
        append(s, "billing", "OrderCreated", {"n": 3})
        append(s, "order-service", "OrderCreated",
               {"note": "<img src=x onerror=alert(1)>"})
        st, hdrs, page = s.request("GET", "/evidentsource/databases/default/query-builder")
        check(st == 200, f"page {st}")
        h = {k.lower(): v for k, v in hdrs.items()}
        check("script-src 'self'" in h.get("content-security-policy", ""), f"{h}")
        check(b"cdn" not in (page if isinstance(page, bytes) else str(page).encode()).lower(),
              "nothing from a CDN")
        st, hdrs, js = s.request("GET", "/evidentsource/static/htmx.min.js")
        check(st == 200 and "javascript" in dict((k.lower(), v) for k, v in
                                                  hdrs.items())["content-type"], f"htmx {st}")
        url = f"http://127.0.0.1:{s.port}/evidentsource/databases/default/query-builder"
        got = drive(url, {"input[name=stream]": "order-service",
                          "input[name=event_type]": "OrderCreated"}, wait="#summary")
        text = got["text"]
        check("2 events" in text, f"two events match: {text}")
        check("OrderShipped" not in text and "billing" not in text, f"only matches: {text}")
        check('"n":1' in text.replace(" ", "") and "<img src=x onerror=alert(1)>" in text,
              f"data shown as text: {text}")
        check(got["images"] == 0, "event data never becomes markup")
        got = drive(url, {"input[name=stream]": "order-service", "input[name=start]": "2",
                          "select[name=direction]": "backward", "input[name=limit]": "1"},
                    wait="#summary")
        check("1 events" in got["text"] and "more match" in got["text"], f"{got['text']}")
        check("onerror" in got["text"] and "OrderShipped" not in got["text"],
              f"backward from the newest of revisions 2 and up: {got['text']}")


def test_with_keys_the_page_sends_the_key_typed_into_it():
    with Server(start=False) as s:
        key = cli_keys(s.data, "read")["read"]
        s.start()
        url = f"http://127.0.0.1:{s.port}/evidentsource/databases/default/query-builder"
        got = drive(url, {"input[name=stream]": "x"}, wait="#results")
        check("401" in got["text"], f"without a key the page shows the refusal: {got['text']}")
        got = drive(url, {"#key": key, "input[name=stream]": "x"}, wait="#summary")
        check("0 events" in got["text"], f"with the key: {got['text']}")
