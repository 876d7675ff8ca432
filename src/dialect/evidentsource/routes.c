/* EvidentSource routes: the table, the descriptor, and the handlers of databases and health.
 * The other handlers are in events.c (appends, queries, reads), views.c (state views, state
 * changes, components) and page.c (the query builder). */
#include "dialect/evidentsource/es_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- shared helpers (es_int.h) ---- */

void es_fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg,
             const char *field)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg, .field = field};
    gate_fail(c, &e);
}

void es_fail_parse(const struct gate_call *c, const struct parse_error *pe)
{
    out_parse_error_as(c->mount, c->req, pe);
}

bool es_json_body(const struct gate_call *c)
{
    if (out_is_json(c->req)) {
        return true;
    }
    es_fail(c, GK_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json",
            "Content-Type");
    return false;
}

bool es_acquire_named_db(struct gate_call *c, const char *name, struct db **out)
{
    if (!name || !*name || !engine_db_name_ok(name, strlen(name))) {
        es_fail(c, GK_INVALID, "invalid_parameter", "database is required: a database name "
                "([a-z0-9][a-z0-9-]{0,62})", "database");
        return false;
    }
    size_t n = strlen(name);
    /* the gate's own rule for a database named in the path, applied to this one */
    unsigned refused = c->authed ? gate_key_refusal(&c->key, c->route, (struct slice){name, n})
                                 : 0;
    if (refused == GK_FORBIDDEN) {
        es_fail(c, GK_FORBIDDEN, "forbidden", "this key may not do that", NULL);
        return false;
    }
    if (!refused && engine_db_acquire(c->gate->engine, name, n, out) == 0) {
        return true;
    }
    es_fail(c, GK_NOT_FOUND, "database_not_found", "database not found", "database");
    return false;
}

/* ---- health ---- */

void es_health(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "OK");
    http_respond(c->req, 200, &b, "text/plain");
}

void es_health_detailed(struct gate_call *c)
{
    const struct es_ctx *x = es_ctx_of(c);
    size_t n;
    char **names = engine_db_names(c->gate->engine, &n);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        struct db *db;
        struct db_info in;
        if (engine_db_acquire(c->gate->engine, names[i], strlen(names[i]), &db) == 0) {
            ok = ok && engine_db_info(db, &in) == 0;
            engine_db_release(db);
        }
    }
    engine_names_free(names, n);
    struct buf b;
    buf_init(&b);
    int64_t up = (time_now_us() - x->started_us) / 1000000;
    buf_printf(&b, "{\"status\":\"%s\",\"version\":\"%s\",\"storage\":{\"adapter\":\"annals\","
               "\"status\":\"%s\",\"databases\":%zu},\"uptime_seconds\":%lld}",
               ok ? "healthy" : "unhealthy", x->version ? x->version : "", ok ? "connected"
               : "failing", n, (long long)(up > 0 ? up : 0));
    out_json(c->req, ok ? 200 : 503, &b);
}

/* ---- databases ---- */

/* The CloudEvents a database holds: every event but those of the server's own streams
 * (ENGINE_LOGIC_STREAM holds the published state views and changes; ENGINE_DCB_STREAM the
 * stream-less events of the native API), which no EvidentSource read shows either. */
static uint64_t event_count(struct db *db, const struct db_info *in)
{
    static const char *const OWN[] = {ENGINE_LOGIC_STREAM, ENGINE_DCB_STREAM};
    uint64_t own = 0;
    for (size_t i = 0; i < sizeof OWN / sizeof OWN[0]; i++) {
        struct stream_rec s;
        if (engine_stream_info(db, (struct slice){OWN[i], strlen(OWN[i])}, NULL, &s) == 0) {
            own += s.version;
        }
    }
    return in->events > own ? in->events - own : 0;
}

/* {"name","created_at","latest_revision","event_count"}, or with camel (the newer
 * generation) {"name","createdAt","latestRevision","eventCount"}; open: without the '}'. */
static void db_json(struct buf *b, struct db *db, bool camel, bool open)
{
    struct db_info in;
    memset(&in, 0, sizeof in);
    engine_db_info(db, &in);
    char when[TIME_RFC3339_LEN];
    time_format(in.created_us, when);
    const char *name = engine_db_name(db);
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, name, strlen(name));
    buf_printf(b, camel ? ",\"createdAt\":\"%s\",\"latestRevision\":%llu,\"eventCount\":%llu"
                        : ",\"created_at\":\"%s\",\"latest_revision\":%llu,\"event_count\":%llu",
               when, (unsigned long long)in.head, (unsigned long long)event_count(db, &in));
    if (!open) {
        buf_addc(b, '}');
    }
}

static void list_dbs(struct gate_call *c, bool camel)
{
    size_t n;
    char **names = engine_db_names(c->gate->engine, &n);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"databases\":[");
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        bool visible = !(c->authed && c->key.database[0] && strcmp(c->key.database, names[i]));
        struct db *db;
        if (visible && engine_db_acquire(c->gate->engine, names[i], strlen(names[i]), &db) == 0) {
            buf_adds(&b, shown++ ? "," : "");
            db_json(&b, db, camel, false);
            engine_db_release(db);
        }
    }
    engine_names_free(names, n);
    buf_adds(&b, "]}");
    out_json(c->req, 200, &b);
}

void es_db_list(struct gate_call *c)
{
    list_dbs(c, false);
}

void es_v1_db_list(struct gate_call *c)
{
    list_dbs(c, true);
}

/* Reads {"name": ...} into name; answers 400 (with the value) when it is not a valid name. */
static bool create_name(struct gate_call *c, char *name, size_t cap)
{
    struct parse_error pe;
    void *rootp;
    if (!es_json_body(c)) {
        return false;
    }
    if (parse_json_object(http_req_body(c->req), &rootp, &pe) != 0) {
        es_fail_parse(c, &pe);
        return false;
    }
    json_t *root = rootp;
    json_t *v = json_object_get(root, "name");
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    bool ok = s && engine_db_name_ok(s, strlen(s)) && strlen(s) < cap;
    if (ok) {
        snprintf(name, cap, "%s", s);
    } else {
        struct buf d;
        buf_init(&d);
        buf_adds(&d, "\"value\":");
        if (s) {
            buf_add_json_str(&d, s, strlen(s));
        } else {
            buf_adds(&d, "null");
        }
        struct gate_error e = {.kind = GK_INVALID, .code = "invalid_name",
                               .message = "database names are lowercase letters, digits and "
                                          "hyphens ([a-z0-9][a-z0-9-]{0,62})",
                               .field = "name", .details = d.ptr};
        gate_fail(c, &e);
        buf_fini(&d);
    }
    json_decref(root);
    return ok;
}

static void create_db(struct gate_call *c, bool camel)
{
    char name[LIMIT_DB_NAME_BYTES + 1];
    if (!create_name(c, name, sizeof name)) {
        return;
    }
    struct db_settings set;
    memset(&set, 0, sizeof set);
    int rc = engine_db_create(c->gate->engine, name, strlen(name), &set);
    struct db *db = NULL;
    if (rc == ERR_EXISTS) {
        es_fail(c, GK_CONFLICT, "database_exists", "a database with this name exists", "name");
    } else if (rc == ERR_TOOBIG) {
        es_fail(c, GK_STORAGE_FULL, "too_many_databases", "the database limit is reached",
                NULL);
    } else if (rc || engine_db_acquire(c->gate->engine, name, strlen(name), &db) != 0) {
        gate_fail_engine(c, rc ? rc : ERR_GONE);
    } else {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"database\":");
        db_json(&b, db, camel, false);
        buf_addc(&b, '}');
        engine_db_release(db);
        out_json(c->req, 201, &b);
    }
}

void es_db_create(struct gate_call *c)
{
    create_db(c, false);
}

void es_v1_db_create(struct gate_call *c)
{
    create_db(c, true);
}

void es_db_get(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    db_json(&b, c->db, false, true);
    buf_adds(&b, ",\"state_views\":");
    es_component_names(c, c->db, false, &b);
    buf_adds(&b, ",\"state_changes\":");
    es_component_names(c, c->db, true, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

/* DELETE /databases/{database} and /v1/databases/{database} alike. */
void es_db_delete(struct gate_call *c)
{
    out_delete_database(c, gate_param(c, "database"), "database not found", "database");
}

/* ---- the table ---- */

#define P_AS_OF                                                                             \
    {"asOfTransactionTime", PARAM_TIME, "Read as of this recorded time", NULL},               \
    {"asOfEffectiveTime", PARAM_TIME, "Only events effective at or before this time", NULL},  \
    {"asOfRevision", PARAM_POSITIVE, "Read as of this revision", NULL}
static const struct route_param P_PAGE[] = {
    {"limit", PARAM_INTEGER, "Most events (default 100, at most 1000)", NULL},
    {"after", PARAM_INTEGER, "Only events after this revision (the last page's next_cursor)",
     NULL},
    P_AS_OF,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_EVENT[] = {
    P_AS_OF,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_QB[] = {
    {"stream", PARAM_STRING, "Only events of this stream (CloudEvents source)", NULL},
    {"event_type", PARAM_STRING, "Only events of this type", NULL},
    {"subject", PARAM_STRING, "Only events with this subject", NULL},
    {"start", PARAM_STRING, "From this revision (inclusive)", NULL},
    {"end", PARAM_STRING, "To this revision (inclusive)", NULL},
    {"direction", PARAM_ENUM, "forward or backward", "forward,backward"},
    {"limit", PARAM_STRING, "Most events (default 50, at most 1000)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_V1_EVENTS[] = {
    {"database", PARAM_STRING, "The database", NULL},
    {"stream", PARAM_STRING, "Only events of this stream (CloudEvents source)", NULL},
    {"subject", PARAM_STRING, "Only events with this subject", NULL},
    {"type", PARAM_STRING, "Only events of this type", NULL},
    {"asOfTransactionTime", PARAM_TIME, "Read as of this recorded time", NULL},
    {"asOfEffectiveTime", PARAM_TIME, "Only events effective at or before this time", NULL},
    {"asOfRevision", PARAM_POSITIVE, "Read as of this revision", NULL},
    {"after", PARAM_INTEGER, "Only events after this revision", NULL},
    {"limit", PARAM_INTEGER, "Most events (default 100, at most 1000)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_VIEW[] = {
    {"revision", PARAM_POSITIVE, "The state as of this revision", NULL},
    {"asOfTransactionTime", PARAM_TIME, "The state as of this recorded time", NULL},
    {"asOfEffectiveTime", PARAM_TIME, "Only events effective at or before this time", NULL},
    {"version", PARAM_POSITIVE, "Only this version of the view (404 when another is in "
     "force)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_V1_VIEW[] = {
    {"database", PARAM_STRING, "The database", NULL},
    {"revision", PARAM_POSITIVE, "The state as of this revision", NULL},
    {"asOfTransactionTime", PARAM_TIME, "The state as of this recorded time", NULL},
    {"asOfEffectiveTime", PARAM_TIME, "Only events effective at or before this time", NULL},
    {"version", PARAM_POSITIVE, "Only this version of the view (404 when another is in "
     "force)", NULL},
    {NULL, 0, NULL, NULL},
};

#define DB ROUTE_DB
static const struct route ROUTES[] = {
    {"GET", "health", es_health, 0, NEED_NONE, "health", "Liveness: text OK", NULL, NULL, NULL,
     200},
    {"GET", "health/detailed", es_health_detailed, 0, NEED_NONE, "healthDetailed",
     "Status, version, storage and uptime", NULL, NULL, "EsHealth", 200},
    {"GET", "databases", es_db_list, 0, NEED_ANY, "listDatabases", "List databases", NULL, NULL,
     "EsDatabaseList", 200},
    {"POST", "databases", es_db_create, ROUTE_ALL_DBS, NEED_ADMIN, "createDatabase",
     "Create a database", NULL, "EsCreateDatabase", "EsDatabaseCreated", 201},
    {"GET", "databases/{database}", es_db_get, DB, NEED_READ, "getDatabase",
     "A database with its state views and state changes", NULL, NULL, "EsDatabaseDetail", 200},
    {"DELETE", "databases/{database}", es_db_delete, DB, NEED_ADMIN, "deleteDatabase",
     "Delete a database", NULL, NULL, NULL, 204},
    {"POST", "databases/{database}/events", es_append, DB | ROUTE_IDEMPOTENT, NEED_WRITE,
     "appendEvents",
     "Append CloudEvents atomically, with constraints", NULL, "EsAppend", "EsAppended", 200},
    {"POST", "databases/{database}/query", es_query, DB | ROUTE_READ_BODY, NEED_READ,
     "queryEvents", "Events matching selectors and ranges", NULL, "EsQuery", "EsEvents", 200},
    {"GET", "databases/{database}/events/{revision}", es_event_get, DB, NEED_READ,
     "getEvent", "The event at a revision", P_EVENT, NULL, "EsEvent", 200},
    {"GET", "databases/{database}/events", es_events_page, DB, NEED_READ, "listEvents",
     "Events by revision, a page at a time", P_PAGE, NULL, "EsEventPage", 200},
    {"GET", "databases/{database}/state-views", es_views_list, DB, NEED_READ, "listStateViews",
     "The published state views", NULL, NULL, "EsStateViewList", 200},
    {"GET", "databases/{database}/state-views/{view}", es_view_get, DB | ROUTE_OPEN_QUERY,
     NEED_READ, "getStateView", "A state view's state (every other query parameter is one of "
     "the view's)", P_VIEW, NULL, NULL, 200},
    {"DELETE", "databases/{database}/state-views/{view}", es_view_delete, DB, NEED_ADMIN,
     "deleteStateView", "Remove a state view", NULL, NULL, NULL, 204},
    {"GET", "databases/{database}/state-changes", es_changes_list, DB, NEED_READ,
     "listStateChanges", "The published state changes", NULL, NULL, "EsStateChangeList", 200},
    {"POST", "databases/{database}/state-changes/{change}/process", es_change_process, DB,
     NEED_WRITE, "processCommand", "Run a state change's decide on a command", NULL,
     "EsCommand", "EsCommandResult", 200},
    {"POST", "api/v1/db/{database}/state-views", es_view_publish, DB, NEED_ADMIN,
     "publishStateView", "Publish a state view (multipart: metadata and code)", NULL, NULL,
     "EsPublished", 201},
    {"POST", "api/v1/db/{database}/state-changes", es_change_publish, DB, NEED_ADMIN,
     "publishStateChange", "Publish a state change (multipart: metadata and code)", NULL, NULL,
     "EsPublished", 201},
    {"GET", "databases/{database}/query-builder", es_query_builder, 0, NEED_NONE,
     "queryBuilder", "An HTML page to build and run queries (it holds no data)", NULL, NULL,
     NULL, 200},
    {"GET", "databases/{database}/query-builder/results", es_query_results, DB, NEED_READ,
     "queryBuilderResults", "The query builder's results: an HTML table of the events",
     P_QB, NULL, NULL, 200},
    {"GET", "static/{file}", es_asset, 0, NEED_NONE, "asset",
     "The query builder's scripts: htmx.min.js, query-builder.js", NULL, NULL, NULL, 200},
    {"GET", "v1/databases", es_v1_db_list, 0, NEED_ANY, "v1ListDatabases", "List databases",
     NULL, NULL, "EsV1DatabaseList", 200},
    {"POST", "v1/databases", es_v1_db_create, ROUTE_ALL_DBS, NEED_ADMIN, "v1CreateDatabase",
     "Create a database", NULL, "EsCreateDatabase", "EsV1DatabaseCreated", 201},
    {"DELETE", "v1/databases/{database}", es_db_delete, DB, NEED_ADMIN, "v1DeleteDatabase",
     "Delete a database", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{database}/components", es_v1_components, DB, NEED_READ,
     "v1ListComponents", "The database's state views and state changes", NULL, NULL,
     "EsV1Components", 200},
    {"POST", "v1/databases/{database}/components", es_v1_component_add, DB, NEED_ADMIN,
     "v1RegisterComponent", "Register a state view or state change", NULL, "EsV1Component",
     "EsV1Registered", 201},
    {"GET", "v1/events", es_v1_events, ROUTE_STREAMING, NEED_READ, "v1Events",
     "Events of a database by stream, subject and type, bi-temporal (JSON, or Server-Sent "
     "Events: the snapshot, then new events)", P_V1_EVENTS, NULL, "EsV1Events", 200},
    {"GET", "v1/state-views/{view}", es_v1_view_get, ROUTE_OPEN_QUERY, NEED_READ,
     "v1GetStateView", "A state view's state", P_V1_VIEW, NULL, NULL, 200},
    {"POST", "v1/commands", es_v1_command, 0, NEED_WRITE, "v1Command",
     "Run a command through the state change that handles its type", NULL, "EsV1Command",
     "EsCommandResult", 200},
};
#undef DB

static const char CORS_ALLOW[] = "Content-Type, X-API-Key, Authorization";
static const char CORS_EXPOSE[] = "X-Request-Id, Location, X-RateLimit-Limit, "
                                  "X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";

const struct gate_mount evidentsource_mount = {
    .name = "evidentsource",
    .routes = ROUTES,
    .nroutes = sizeof ROUTES / sizeof ROUTES[0],
    .key_from = GATE_KEY_HEADER | GATE_KEY_BEARER,
    .db_from = GATE_DB_PATH,
    .db_param = "database",
    .error = es_error,
    .rate_window_s = 1,
    .default_rate = 0,
    .cors_allow_headers = CORS_ALLOW,
    .cors_allow_methods = "GET, POST, PUT, DELETE, OPTIONS",
    .cors_expose_headers = CORS_EXPOSE,
    .idem_namespace = ES_IDEM_NS,
};
