/* The EvidentSource query builder: an HTML page whose htmx form asks this server for the
 * events matching a selector and a revision range, shown as an HTML table fragment. htmx and
 * the page's own small script are linked into the binary (the Makefile embeds htmx from
 * assets/, installed by npm from its lockfile), so no page loads anything from elsewhere; the
 * page sends a Content-Security-Policy that allows scripts from this server only.
 *
 * The page holds no data (anyone may load it); the results need a read key, which the page's
 * script sends as X-API-Key from the key field (kept in the tab's sessionStorage). */
#include "dialect/evidentsource/es_int.h"

#include <stdio.h>
#include <string.h>

#include "ops/qparse.h"
#include "util/errors.h"
#include "util/timeutil.h"

__asm__(".section .rodata\n"
        ".global es_htmx_js\n"
        ".type es_htmx_js, @object\n"
        "es_htmx_js:\n"
        ".incbin \"assets/node_modules/htmx.org/dist/htmx.min.js\"\n"
        ".global es_htmx_js_end\n"
        "es_htmx_js_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char es_htmx_js[], es_htmx_js_end[];

enum {
    QB_LIMIT_MAX = 1000,      /* events per results page at most */
    QB_LIMIT_DEFAULT = 50,
    QB_DATA_SHOWN = 2000,     /* bytes of an event's data shown in a cell */
};

static const char CSP[] = "default-src 'none'; script-src 'self'; connect-src 'self'; "
                          "style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
                          "frame-ancestors 'none'";

/* The page's own script: sends the key field as X-API-Key with every htmx request. */
static const char QB_JS[] =
    "(function () {\n"
    "  var key = document.getElementById('key');\n"
    "  key.value = sessionStorage.getItem('evidentsource-key') || '';\n"
    "  key.addEventListener('change', function () {\n"
    "    sessionStorage.setItem('evidentsource-key', key.value);\n"
    "  });\n"
    "  document.body.addEventListener('htmx:configRequest', function (e) {\n"
    "    if (key.value) { e.detail.headers['X-API-Key'] = key.value; }\n"
    "  });\n"
    "  document.body.addEventListener('htmx:responseError', function (e) {\n"
    "    var out = document.getElementById('results');\n"
    "    out.textContent = 'The server answered ' + e.detail.xhr.status + ': ' +\n"
    "      e.detail.xhr.responseText;\n"
    "  });\n"
    "})();\n";

/* Appends s (n bytes) HTML-escaped. */
static void html(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '<': buf_adds(out, "&lt;"); break;
        case '>': buf_adds(out, "&gt;"); break;
        case '&': buf_adds(out, "&amp;"); break;
        case '"': buf_adds(out, "&quot;"); break;
        case '\'': buf_adds(out, "&#39;"); break;
        default: buf_addc(out, s[i]);
        }
    }
}

static void send_html(struct gate_call *c, unsigned status, struct buf *b)
{
    http_add_header(c->req, "Content-Security-Policy", CSP);
    http_add_header(c->req, "X-Content-Type-Options", "nosniff");
    http_add_header(c->req, "Cache-Control", "no-store");
    http_respond(c->req, status, b, "text/html; charset=utf-8");
}

void es_query_builder(struct gate_call *c)
{
    struct slice db = gate_param(c, "database");
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"htmx-config\" content='{\"includeIndicatorStyles\":false,"
                 "\"selfRequestsOnly\":true}'>"
                 "<title>Query builder: ");
    html(&b, db.ptr, db.len);
    buf_adds(&b, "</title><style>body{font-family:sans-serif;margin:2em}label{display:inline-"
                 "block;margin:0 1em .5em 0}table{border-collapse:collapse;margin-top:1em}"
                 "td,th{border:1px solid #ccc;padding:.3em;vertical-align:top;text-align:"
                 "left}pre{margin:0;white-space:pre-wrap}</style></head><body>"
                 "<h1>Events of ");
    html(&b, db.ptr, db.len);
    buf_adds(&b, "</h1><form id=\"query\" hx-get=\"query-builder/results\" "
                 "hx-target=\"#results\" hx-swap=\"innerHTML\">"
                 "<label>API key <input id=\"key\" type=\"password\" autocomplete=\"off\">"
                 "</label><br>"
                 "<label>Stream (source) <input name=\"stream\"></label>"
                 "<label>Event type <input name=\"event_type\"></label>"
                 "<label>Subject <input name=\"subject\"></label><br>"
                 "<label>From revision <input name=\"start\" inputmode=\"numeric\"></label>"
                 "<label>To revision <input name=\"end\" inputmode=\"numeric\"></label>"
                 "<label>Direction <select name=\"direction\"><option>forward</option>"
                 "<option>backward</option></select></label>"
                 "<label>Limit <input name=\"limit\" value=\"50\" inputmode=\"numeric\">"
                 "</label><br><button type=\"submit\" id=\"run\">Run query</button></form>"
                 "<div id=\"results\"></div>"
                 "<script src=\"../../static/htmx.min.js\"></script>"
                 "<script src=\"../../static/query-builder.js\"></script></body></html>\n");
    send_html(c, 200, &b);
}

void es_asset(struct gate_call *c)
{
    const char *file = gate_param_str(c, "file");
    struct buf b;
    buf_init(&b);
    if (file && !strcmp(file, "htmx.min.js")) {
        buf_add(&b, es_htmx_js, (size_t)(es_htmx_js_end - es_htmx_js));
    } else if (file && !strcmp(file, "query-builder.js")) {
        buf_adds(&b, QB_JS);
    } else {
        es_fail(c, GK_NOT_FOUND, "not_found", "no such file", "file");
        return;
    }
    http_add_header(c->req, "Cache-Control", "public, max-age=3600");
    http_add_header(c->req, "X-Content-Type-Options", "nosniff");
    http_respond(c->req, 200, &b, "text/javascript; charset=utf-8");
}

/* ---- results ---- */

struct rows {
    struct buf *b;
    size_t shown;
};

/* One event as a table row (every value escaped). */
static int on_row(void *arg, const struct event_rec *ev)
{
    struct rows *r = arg;
    struct buf *b = r->b;
    if (ev->stream.len && ev->stream.ptr[0] == '$') {
        return 0; /* the server's own events */
    }
    r->shown++;
    char when[TIME_RFC3339_LEN];
    time_format(ev->time_us, when);
    buf_printf(b, "<tr><td>%llu</td><td>", (unsigned long long)ev->position);
    html(b, ev->stream.ptr, ev->stream.len);
    buf_adds(b, "</td><td>");
    html(b, ev->type.ptr, ev->type.len);
    buf_adds(b, "</td><td>");
    html(b, ev->subject.ptr, ev->subject.len);
    buf_printf(b, "</td><td>%s</td><td><pre>", when);
    size_t n = ev->data.len < QB_DATA_SHOWN ? ev->data.len : QB_DATA_SHOWN;
    html(b, ev->data.ptr, n);
    buf_adds(b, n < ev->data.len ? "…</pre></td></tr>" : "</pre></td></tr>");
    return 0;
}

/* The native query body for the form's fields (query parameters). */
static int query_body(struct gate_call *c, struct buf *q, struct parse_error *pe)
{
    static const char *const ATTRS[] = {"stream", "event_type", "subject"};
    struct buf sel;
    buf_init(&sel);
    buf_addc(&sel, '{');
    for (int i = 0; i < 3; i++) {
        const char *v = http_req_query(c->req, ATTRS[i]);
        if (v && *v) {
            buf_adds(&sel, sel.len > 1 ? ",\"" : "\"");
            buf_adds(&sel, ATTRS[i]);
            buf_adds(&sel, "\":");
            buf_add_json_str(&sel, v, strlen(v));
        }
    }
    buf_addc(&sel, '}');
    buf_addc(q, '{');
    int rc = 0;
    if (sel.len > 2) {
        buf_adds(q, "\"selector\":");
        rc = es_selector((struct slice){sel.ptr, sel.len}, "selector", q, pe);
        buf_addc(q, ',');
    }
    buf_fini(&sel);
    static const char *const NUMS[] = {"start", "end", "limit"};
    uint64_t v[3] = {0, 0, 0};
    for (int i = 0; i < 3 && !rc; i++) {
        const char *t = http_req_query(c->req, NUMS[i]);
        if (t && *t && (parse_u64(t, &v[i]) != 0 || v[i] == 0 ||
                        (i == 2 && v[i] > QB_LIMIT_MAX))) {
            rc = parse_fail(pe, 400, "invalid_parameter", NUMS[i], "%s is a whole number "
                            "from 1%s", NUMS[i], i == 2 ? " to 1000" : "");
        }
    }
    const char *dir = http_req_query(c->req, "direction");
    bool back = dir && !strcmp(dir, "backward");
    /* the range is inclusive at both ends whatever the direction; the native from is where
       the reading starts */
    uint64_t from = back ? v[1] : v[0], to = back ? v[0] : v[1];
    if (from) {
        buf_printf(q, "\"from\":%llu,", (unsigned long long)from);
    }
    if (to) {
        buf_printf(q, "\"to\":%llu,", (unsigned long long)to);
    }
    buf_printf(q, "\"limit\":%llu,\"direction\":\"%s\"}",
               (unsigned long long)(v[2] ? v[2] : QB_LIMIT_DEFAULT), back ? "backward" : "forward");
    return rc;
}

void es_query_results(struct gate_call *c)
{
    struct buf q;
    buf_init(&q);
    struct parse_error pe;
    struct parsed_query pq;
    memset(&pq, 0, sizeof pq);
    int rc = query_body(c, &q, &pe);
    if (!rc) rc = parse_query_body((struct slice){q.ptr, q.len}, &pq, &pe);
    buf_fini(&q);
    if (rc) {
        parsed_query_fini(&pq);
        es_fail_parse(c, &pe);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "<table id=\"events\"><thead><tr><th>Revision</th><th>Source</th><th>Type"
                 "</th><th>Subject</th><th>Time</th><th>Data</th></tr></thead><tbody>");
    struct engine_query_result res;
    struct rows rows = {&b, 0};
    rc = engine_query(c->db, &pq.q, on_row, &rows, &res);
    parsed_query_fini(&pq);
    if (rc) {
        buf_fini(&b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_printf(&b, "</tbody></table><p id=\"summary\">%zu events%s</p>", rows.shown,
               res.next ? "; more match (raise the limit or move the range)" : "");
    send_html(c, 200, &b);
}
