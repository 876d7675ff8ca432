/* Hapnd routes: the table, the descriptor, health and whoami, and the helpers the route files
 * share. The other handlers are in events.c (appends and reads), reducers.c (uploads,
 * aggregate types, state) and projections.c (uploads, state, notifications, streams). */
#include "dialect/hapnd/hd_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops/out.h"
#include "util/errors.h"

/* ---- shared helpers (hd_int.h) ---- */

void hd_fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg};
    gate_fail(c, &e);
}

void hd_fail_req(struct http_req *req, unsigned kind, const char *code, const char *msg)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg};
    gate_fail_req(&hapnd_mount, req, &e);
}

void hd_fail_parse(const struct gate_call *c, const struct parse_error *pe)
{
    struct gate_error e = {.kind = pe->status, .code = pe->code, .message = pe->message,
                           .field = pe->field[0] ? pe->field : NULL};
    gate_fail(c, &e);
}

bool hd_json_body(const struct gate_call *c)
{
    const char *ct = http_req_header(c->req, "Content-Type");
    static const char want[] = "application/json";
    size_t n = sizeof want - 1;
    if (ct && !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ')) {
        return true;
    }
    hd_fail(c, GK_INVALID, "INVALID_REQUEST", "send the body as application/json");
    return false;
}

struct first_event {
    bool found;
    char *type;
};

static int on_first(void *arg, const struct event_rec *ev)
{
    struct first_event *f = arg;
    struct slice t;
    f->found = true;
    if (hapnd_event_type(ev, &t) && t.len <= HAPND_TYPE_BYTES) {
        memcpy(f->type, t.ptr, t.len);
        f->type[t.len] = '\0';
    }
    return 1;
}

int hd_aggregate_type(struct db *db, struct slice id, bool *found, char *type)
{
    struct first_event f = {.type = type};
    type[0] = '\0';
    struct stream_rec s;
    int rc = engine_read_stream(db, id, NULL, 1, false, 1, on_first, &f, &s, NULL);
    *found = rc == 0 && f.found;
    return rc == ERR_NOTFOUND ? 0 : rc;
}

/* ---- health and whoami ---- */

void hd_health(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"status\":\"ok\"}");
    out_json(c->req, 200, &b);
}

void hd_whoami(struct gate_call *c)
{
    struct db_info in;
    memset(&in, 0, sizeof in);
    engine_db_info(c->db, &in);
    struct db_settings set;
    engine_db_settings(c->db, &set);
    const char *tenant = engine_db_name(c->db);
    const char *name = set.description[0] ? set.description : tenant;
    char when[HAPND_TIME_BYTES];
    hapnd_time(in.created_us, when);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"tenantId\":");
    buf_add_json_str(&b, tenant, strlen(tenant));
    buf_adds(&b, ",\"name\":");
    buf_add_json_str(&b, name, strlen(name));
    buf_printf(&b, ",\"createdAt\":\"%s\"", when);
    if (c->authed) {
        buf_adds(&b, ",\"keyId\":");
        buf_add_json_str(&b, c->key.id, strlen(c->key.id));
    }
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

/* ---- the table ---- */

static const struct route_param P_EVENTS[] = {
    {"fromVersion", PARAM_POSITIVE, "From this version (default 1)", NULL},
    {"limit", PARAM_LIMIT, "Most events (default and at most 1000)", NULL},
    {NULL, 0, NULL, NULL},
};

#define DB ROUTE_DB
static const struct route ROUTES[] = {
    {"GET", "health", hd_health, 0, NEED_NONE, "health", "Health check", NULL, NULL, NULL, 200},
    {"GET", "auth/whoami", hd_whoami, DB, NEED_ANY, "whoami",
     "The tenant of the key presented", NULL, NULL, NULL, 200},
    {"POST", "events", hd_append, DB | ROUTE_IDEMPOTENT, NEED_WRITE, "appendEvent",
     "Append one event to an aggregate", NULL, NULL, NULL, 201},
    {"POST", "events/batch", hd_append_batch, DB | ROUTE_IDEMPOTENT, NEED_WRITE,
     "appendEvents", "Append events to one aggregate atomically", NULL, NULL, NULL, 201},
    {"GET", "events/{aggregateId}", hd_events, DB, NEED_READ, "getEvents",
     "An aggregate's events, ascending versions", P_EVENTS, NULL, NULL, 200},
};
#undef DB

static const char CORS_ALLOW[] = "Content-Type, X-API-Key";
static const char CORS_EXPOSE[] = "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, "
                                  "X-RateLimit-Reset, Retry-After";

const struct gate_mount hapnd_mount = {
    .name = "hapnd",
    .routes = ROUTES,
    .nroutes = sizeof ROUTES / sizeof ROUTES[0],
    .key_from = GATE_KEY_HEADER,
    .db_from = GATE_DB_KEY,
    .default_db = "default",
    .error = hapnd_error,
    .rate_window_s = 1,
    .default_rate = 0,
    .cors_allow_headers = CORS_ALLOW,
    .cors_allow_methods = "GET, POST, PUT, OPTIONS",
    .cors_expose_headers = CORS_EXPOSE,
    .idem_namespace = HAPND_IDEM_NS,
};
