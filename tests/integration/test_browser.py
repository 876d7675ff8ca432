"""A real browser against a server in development mode: headless Chromium loads a page that
opens a WebSocket to the server and subscribes to the log, and that POSTs an event with fetch.
Served from a foreign origin (evil.example, resolved to this machine by Chromium itself) the
page gets nothing and writes nothing; served from localhost it gets the events and writes."""
import functools
import http.server
import os
import re
import shutil
import subprocess
import threading

from harness import Server, Skip, check

PAGE = """<!doctype html><html><body><pre id="out">waiting</pre><script>
const port = new URLSearchParams(location.search).get('port');
const out = document.getElementById('out');
const seen = [];
function show() { out.textContent = seen.join('|'); }
const ws = new WebSocket('ws://127.0.0.1:' + port + '/v1/databases/default/events/live');
ws.onopen = () => { seen.push('open'); ws.send(JSON.stringify({type: 'subscribe'})); show(); };
ws.onmessage = (m) => { const d = JSON.parse(m.data); seen.push(d.type === 'event' ?
  'event:' + JSON.stringify(d.event.data) : d.type); show(); };
ws.onclose = (e) => { seen.push('closed:' + e.code); show(); };
fetch('http://127.0.0.1:' + port + '/v1/databases/default/streams/from-page/events', {
  method: 'POST', headers: {'Content-Type': 'application/json'},
  body: JSON.stringify({events: [{type: 'page', data: 'written by the page'}]})})
  .then(r => { seen.push('post:' + r.status); show(); })
  .catch(() => { seen.push('post:blocked'); show(); });
</script></body></html>
"""


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise Skip("no Chromium (scripts/deps.sh installs the chromium package)")


def serve_page(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run_page(url, profile):
    """Loads url in headless Chromium and returns what the page wrote into #out."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP evil.example 127.0.0.1",
           "--virtual-time-budget=5000", "--dump-dom", url]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=90)
    m = re.search(r'<pre id="out">([^<]*)</pre>', p.stdout.decode("utf-8", "replace"))
    check(m, f"no result in the page: {p.stdout[:400]!r}")
    return m.group(1).replace("&quot;", '"').split("|")


def test_pages_of_foreign_origins_get_nothing_over_websocket_or_fetch():
    with Server() as s:
        st, _, _ = s.append("s", [{"type": "t", "data": "secret"}])
        check(st == 201, "seed")
        site = os.path.join(s.tmp, "site")
        os.makedirs(site)
        with open(os.path.join(site, "page.html"), "w") as f:
            f.write(PAGE)
        httpd = serve_page(site)
        try:
            port = httpd.server_address[1]
            evil = run_page(f"http://evil.example:{port}/page.html?port={s.port}",
                            os.path.join(s.tmp, "profile-evil"))
            check(not any(x.startswith("event:") for x in evil), f"foreign page read: {evil}")
            check("open" not in evil and any(x.startswith("closed:") for x in evil),
                  f"the WebSocket opened for a foreign page: {evil}")
            check("post:201" not in evil, f"foreign page wrote: {evil}")
            st, _, body = s.get("/v1/databases/default/streams/from-page")
            check(st == 404, f"the foreign page's event was stored: {st} {body}")
            local = run_page(f"http://localhost:{port}/page.html?port={s.port}",
                             os.path.join(s.tmp, "profile-local"))
            check('event:"secret"' in local, f"a local page gets the events: {local}")
            check("post:201" in local, f"a local page writes: {local}")
        finally:
            httpd.shutdown()
