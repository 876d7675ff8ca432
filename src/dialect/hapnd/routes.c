/* Hapnd routes: the table, the descriptor, health and whoami, and the helpers the route files
 * share. The other handlers are in events.c (appends and reads), reducers.c (uploads,
 * aggregate types, state) and projections.c (uploads, state, notifications, streams). */
#include "dialect/hapnd/hd_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dialect/hapnd/types.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* ---- the context ---- */

void hapnd_ctx_init(struct hapnd_ctx *x)
{
    uint8_t u[UUID_LEN];
    uuid_v7(time_now_us(), u);
    uuid_format(u, x->run);
    x->types = hd_types_new();
}

void hapnd_ctx_fini(struct hapnd_ctx *x)
{
    hd_types_free(x->types);
    x->types = NULL;
}

/* ---- shared helpers (hd_int.h) ---- */

void hd_fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg)
{
    hd_fail_at(c, kind, code, msg, NULL);
}

void hd_fail_at(const struct gate_call *c, unsigned kind, const char *code, const char *msg,
                const char *field)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg, .field = field};
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
    if (out_is_json(c->req)) {
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

int hd_aggregate_type(const struct hapnd_ctx *x, struct db *db, struct slice id, bool *found,
                      char *type)
{
    if (hd_types_get(x->types, engine_db_id(db), id, type)) {
        *found = true;
        return 0;
    }
    struct first_event f = {.type = type};
    type[0] = '\0';
    struct stream_rec s;
    int rc = engine_read_stream(db, id, NULL, 1, false, 1, on_first, &f, &s, NULL);
    *found = rc == 0 && f.found;
    if (*found && type[0]) {
        hd_types_put(x->types, engine_db_id(db), id, type);
    }
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

static const struct route_param P_NOTIFY[] = {
    {"afterSequence", PARAM_INTEGER, "Changes after this sequence (0: from the first)", NULL},
    {"limit", PARAM_LIMIT, "Most changes (default 100, at most 1000)", NULL},
    {NULL, 0, NULL, NULL},
};

static const struct route_param P_STREAM[] = {
    {"afterSequence", PARAM_INTEGER, "Changes after this sequence (0: from the first)", NULL},
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
    {"POST", "reducers/upload", hd_reducer_upload, DB, NEED_ADMIN, "uploadReducer",
     "Upload reducers: a zip of .lua, .js or .ts files (multipart field file)", NULL, NULL,
     NULL, 202},
    {"GET", "reducers/{id}/status", hd_reducer_status, DB, NEED_READ, "reducerStatus",
     "A reducer upload's compilation status and discovered classes", NULL, NULL, NULL, 200},
    {"PUT", "aggregate-types/{type}", hd_bind, DB, NEED_ADMIN, "bindReducer",
     "Bind a reducer of an upload to an aggregate type", NULL, NULL, NULL, 200},
    {"GET", "aggregate-types/{type}", hd_binding_get, DB, NEED_READ, "getBinding",
     "The reducer bound to an aggregate type", NULL, NULL, NULL, 200},
    {"GET", "aggregate-types/{type}/{id}/state", hd_state, DB, NEED_READ, "aggregateState",
     "An aggregate's state, computed by its type's reducer", NULL, NULL, NULL, 200},
    {"POST", "projections/upload", hd_projection_upload, DB, NEED_ADMIN, "uploadProjection",
     "Upload projections: a zip of .lua, .js or .ts files (multipart field file, optional "
     "config)", NULL, NULL, NULL, 202},
    {"GET", "projections/{id}/status", hd_projection_status, DB, NEED_READ,
     "projectionStatus", "A projection upload's status and stable projectionId", NULL, NULL,
     NULL, 200},
    {"GET", "projections/{id}/state/{key}", hd_projection_state, DB | ROUTE_PENDING_202,
     NEED_READ, "projectionState", "A projection's state by key (202 while catching up)",
     NULL, NULL, NULL, 200},
    {"GET", "projections/{id}/notifications", hd_projection_notifications, DB, NEED_READ,
     "projectionNotifications", "A projection's state changes after a sequence",
     P_NOTIFY, NULL, NULL, 200},
    {"GET", "projections/{id}/stream", hd_projection_stream, DB | ROUTE_STREAMING, NEED_READ,
     "projectionStream", "A projection's state changes over a WebSocket (afterSequence to "
     "resume)", P_STREAM, NULL, NULL, 101},
    {"POST", "projections/{id}/webhook/rotate", hd_projection_rotate, DB | ROUTE_BODY_OPTIONAL,
     NEED_ADMIN, "rotateProjectionSecret", "Rotate an isolated projection's webhook secret",
     NULL, NULL, NULL, 200},
    {"POST", "webhooks/rotate", hd_webhooks_rotate, DB | ROUTE_BODY_OPTIONAL, NEED_ADMIN,
     "rotateTenantSecret", "Rotate the tenant's shared webhook secret", NULL, NULL, NULL, 200},
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
    .max_body_bytes = HAPND_BODY_BYTES,
};
