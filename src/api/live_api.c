/* Live subscriptions: GET .../events/live and .../streams/{stream}/events/live answer with
 * Server-Sent Events (history, then every new event; resumable with Last-Event-ID) or, on an
 * upgrade, a WebSocket whose subscriptions come as messages (ops/live.c delivers both); the
 * open ones are listed and closed under /v1/connections. The subscription takes the call's
 * database reference. */
#include "api/native_int.h"

#include <stdio.h>
#include <string.h>

#include "http/server.h"
#include "ops/live.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "query/filter.h"
#include "util/buf.h"

enum { LIVE_LABEL_BYTES = 256 }; /* a subscription's label: its path, cut at 250 bytes */

/* The subscription's label (in GET /v1/connections): the request path, cut at 250 bytes. */
static void live_label(const struct gate_call *c, char label[LIVE_LABEL_BYTES])
{
    struct slice path = http_req_path(c->req);
    snprintf(label, LIVE_LABEL_BYTES, "%.*s", (int)(path.len < 250 ? path.len : 250), path.ptr);
}

/* The query parameters, without `from` (a subscription reads it itself). */
static const char *get_param_live(void *arg, const char *name, size_t nth)
{
    return strcmp(name, "from") == 0 ? NULL : http_req_query_nth(arg, name, nth);
}

/* The first position to deliver: after Last-Event-ID (a reconnect), else `from` (a position,
 * or "latest": only new events), else 1. Answers 400 and returns false when bad. */
static bool live_first(struct gate_call *c, uint64_t *out)
{
    const char *last = http_req_header(c->req, "Last-Event-ID");
    const char *from = http_req_query(c->req, "from");
    uint64_t v;
    if (last) {
        if (parse_u64(last, &v) != 0 || v == UINT64_MAX) {
            out_error(c->req, 400, "invalid_parameter", "Last-Event-ID is a position",
                      "Last-Event-ID");
            return false;
        }
        *out = v + 1;
    } else if (!from) {
        *out = 1;
    } else if (strcmp(from, "latest") == 0) {
        *out = engine_db_head(c->db) + 1;
    } else if (parse_u64(from, &v) != 0 || v == 0) {
        out_error(c->req, 400, "invalid_parameter", "from is a position (from 1) or latest",
                  "from");
        return false;
    } else {
        *out = v;
    }
    return true;
}

/* Subscribes to the events of c->db matching the query parameters (and stream, when given). */
static void live_start(struct gate_call *c, const struct slice *stream)
{
    uint64_t first;
    if (!live_first(c, &first)) {
        return;
    }
    struct parsed_query pq;
    struct parse_error pe;
    int rc = parse_query_params(get_param_live, c->req, &pq, &pe);
    if (!rc && stream) {
        struct filter only;
        filter_init(&only);
        struct pattern p = {PAT_EXACT, *stream};
        struct filter_item *it = filter_add_item(&only);
        rc = filter_add_atom(&only, it, FF_STREAM, &p, 1);
        if (!rc) rc = filter_and(&pq.filter, &only);
        filter_fini(&only);
        if (rc) {
            rc = parse_fail(&pe, 400, "invalid_parameter", "streams", "filter too large");
        }
    }
    if (rc) {
        out_parse_error(c->req, &pe);
        parsed_query_fini(&pq);
        return;
    }
    char label[LIVE_LABEL_BYTES];
    live_label(c, label);
    live_sse(api_of(c)->live, c->req, c->db, &pq, first, label);
    c->db = NULL; /* the subscription holds the reference now */
    parsed_query_fini(&pq);
}

/* A WebSocket on a live path: its subscriptions come as messages. Answers 400 when the
 * request asked to upgrade but not as RFC 6455 says. */
static bool live_ws_start(struct gate_call *c, const struct slice *stream)
{
    if (!http_req_header(c->req, "Upgrade")) {
        return false;
    }
    size_t pos = 0;
    const char *name;
    while (http_req_query_next(c->req, &pos, &name, NULL)) {
        if (strcmp(name, "api_key") != 0) {
            out_error(c->req, 400, "invalid_parameter", "a WebSocket takes its filters and "
                      "start positions in subscribe messages, not in the URL", name);
            return true;
        }
    }
    if (!http_ws_requested(c->req)) {
        out_error(c->req, 400, "invalid_upgrade",
                  "a WebSocket upgrade needs Upgrade: websocket, Connection: Upgrade, "
                  "Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
                  "Upgrade");
        return true;
    }
    char label[LIVE_LABEL_BYTES];
    live_label(c, label);
    live_ws(api_of(c)->live, c->req, c->db, stream, label);
    c->db = NULL; /* the connection holds the reference now */
    return true;
}

void api_log_live(struct gate_call *c)
{
    if (!live_ws_start(c, NULL)) {
        live_start(c, NULL);
    }
}

void api_stream_live(struct gate_call *c)
{
    struct slice name;
    if (api_stream_name(c, &name) && !live_ws_start(c, &name)) {
        live_start(c, &name);
    }
}

void api_live_conns(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"connections\":");
    live_list(api_of(c)->live, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

void api_live_conn_close(struct gate_call *c)
{
    uint64_t id;
    if (parse_u64(gate_param_str(c, "id"), &id) != 0 || live_close(api_of(c)->live, id) != 0) {
        out_error(c->req, 404, "connection_not_found", "no open subscription with this id",
                  "id");
        return;
    }
    api_respond_no_content(c->req);
}
