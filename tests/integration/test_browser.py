"""A real browser against a server in development mode: headless Chromium loads a page that
opens a WebSocket to the server and subscribes to the log, and that POSTs an event with fetch.
Served from a foreign origin (evil.example, resolved to this machine by Chromium itself) the
page gets nothing and writes nothing; served from localhost it gets the events and writes."""
import http.server
import os
import queue
import shutil
import subprocess
import threading

from harness import Server, Skip, check

PAGE = """<!doctype html><html><body><script>
const port = new URLSearchParams(location.search).get('port');
const seen = [];
let sent = false;
function report() {  /* to the page's own server, which hands it to the test */
  if (sent) return;
  sent = true;
  fetch('/report', {method: 'POST', body: seen.join('|')});
}
function show() {
  const done = seen.some(x => x.startsWith('event:')) && seen.some(x => x.startsWith('post:'));
  const refused = seen.some(x => x.startsWith('closed:')) && seen.some(x => x.startsWith('post:'));
  if (done || refused) report();
}
setTimeout(report, 8000);
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


class PageServer(http.server.ThreadingHTTPServer):
    """Serves the page's directory and takes its report (POST /report)."""

    def __init__(self, directory):
        self.reports = queue.Queue()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                server.reports.put(self.rfile.read(n).decode())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def run_page(httpd, url, profile):
    """Opens url in headless Chromium and returns what the page reported."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP evil.example 127.0.0.1",
           url]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = httpd.reports.get(timeout=60)
    except queue.Empty:
        raise AssertionError(f"the page never reported: {url}")
    finally:
        p.kill()
        p.wait()
    return report.split("|")


def test_pages_of_foreign_origins_get_nothing_over_websocket_or_fetch():
    with Server() as s:
        st, _, _ = s.append("s", [{"type": "t", "data": "secret"}])
        check(st == 201, "seed")
        site = os.path.join(s.tmp, "site")
        os.makedirs(site)
        with open(os.path.join(site, "page.html"), "w") as f:
            f.write(PAGE)
        httpd = PageServer(site)
        try:
            port = httpd.server_address[1]
            evil = run_page(httpd, f"http://evil.example:{port}/page.html?port={s.port}",
                            os.path.join(s.tmp, "profile-evil"))
            check(not any(x.startswith("event:") for x in evil), f"foreign page read: {evil}")
            check("open" not in evil and any(x.startswith("closed:") for x in evil),
                  f"the WebSocket opened for a foreign page: {evil}")
            check("post:201" not in evil, f"foreign page wrote: {evil}")
            st, _, body = s.get("/v1/databases/default/streams/from-page")
            check(st == 404, f"the foreign page's event was stored: {st} {body}")
            local = run_page(httpd, f"http://localhost:{port}/page.html?port={s.port}",
                             os.path.join(s.tmp, "profile-local"))
            check('event:"secret"' in local, f"a local page gets the events: {local}")
            check("post:201" in local, f"a local page writes: {local}")
        finally:
            httpd.shutdown()
