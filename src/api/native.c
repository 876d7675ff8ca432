/* Native API routes. Each route is a (method, path pattern) pair; the path is split into
 * percent-decoded segments and matched against the table, so a 405 can list what a path
 * allows. Handlers validate input completely before calling the engine. */
#include "engine/canon.h"
#include "api/native.h"

#include "gate/gate.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/append.h"
#include "api/backup_api.h"
#include "api/groups_api.h"
#include "ops/live.h"
#include "api/keys_api.h"
#include "api/metrics.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "gate/ratelimit.h"
#include "gate/route.h"
#include "api/webhooks_api.h"
#include "auth/keys.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* The native API's context (struct api), as its handlers see it. */
static struct api *api_of(const struct gate_call *c)
{
    return c->ctx;
}

static void root(struct gate_call *c);
static void db_list(struct gate_call *c);
static void db_create(struct gate_call *c);
static void db_get(struct gate_call *c);
static void db_update(struct gate_call *c);
static void db_delete(struct gate_call *c);
static void log_read(struct gate_call *c);
static void log_query(struct gate_call *c);
static void streams_list(struct gate_call *c);
static void event_get(struct gate_call *c);
static void stream_get(struct gate_call *c);
static void stream_read(struct gate_call *c);
static void stream_append(struct gate_call *c);
static void stream_delete(struct gate_call *c);
static void meta_read(struct gate_call *c);
static void meta_write(struct gate_call *c);
static void multi_append(struct gate_call *c);
static void health(struct gate_call *c);
static void health_detailed(struct gate_call *c);
static void metrics(struct gate_call *c);
static void openapi(struct gate_call *c);
static void whoami(struct gate_call *c);
static void keys_list(struct gate_call *c);
static void keys_create(struct gate_call *c);
static void keys_revoke(struct gate_call *c);
static void keys_rotate(struct gate_call *c);
static void log_live(struct gate_call *c);
static void stream_live(struct gate_call *c);
static void live_conns(struct gate_call *c);
static void live_conn_close(struct gate_call *c);
static void sub_create(struct gate_call *c);
static void sub_list(struct gate_call *c);
static void sub_get(struct gate_call *c);
static void sub_delete(struct gate_call *c);
static void sub_pull(struct gate_call *c);
static void sub_ack(struct gate_call *c);
static void sub_nack(struct gate_call *c);
static void sub_parked(struct gate_call *c);
static void sub_replay(struct gate_call *c);
static void hook_create(struct gate_call *c);
static void hook_list(struct gate_call *c);
static void hook_get(struct gate_call *c);
static void hook_delete(struct gate_call *c);
static void hook_rotate(struct gate_call *c);
static void compact_get(struct gate_call *c);
static void compact_start(struct gate_call *c);
static void compaction_json(struct db *db, struct buf *b);
static void backup(struct gate_call *c);

/* ---- the query parameters of each route ---- */

#define P_FILTERS                                                                              \
    {"types", PARAM_LIST, "Event types: exact, prefix.*, *.suffix or *", NULL},                \
    {"streams", PARAM_LIST, "Stream names (exact)", NULL},                                     \
    {"category", PARAM_LIST, "Stream categories (the name before the first - _ : or /)", NULL},\
    {"tags", PARAM_LIST, "Tags, all of which an event must carry", NULL},                      \
    {"subject", PARAM_LIST, "Subjects: exact, or a prefix ending in *", NULL},                 \
    {"timeFrom", PARAM_TIME, "Effective time from (inclusive)", NULL},                         \
    {"timeTo", PARAM_TIME, "Effective time to (inclusive)", NULL}
#define P_AS_OF                                                                                \
    {"asOf", PARAM_INTEGER, "Read as of this position (point in time; 0: before any)", NULL},   \
    {"asOfTime", PARAM_TIME, "Read as of this recorded time", NULL}
#define P_LIMIT {"limit", PARAM_LIMIT, "Most items in the answer, 1 to 1000 (default 100)", NULL}
#define P_DIRECTION {"direction", PARAM_ENUM, "Read order (default forward)", "forward,backward"}

static const struct route_param P_LOG[] = {
    P_FILTERS,
    {"from", PARAM_POSITIVE, "First position (inclusive; default: 1, or the newest backward)",
     NULL},
    {"to", PARAM_POSITIVE, "Last position (inclusive)", NULL},
    P_DIRECTION,
    P_LIMIT,
    {"recordedFrom", PARAM_TIME, "Recorded (commit) time from (inclusive)", NULL},
    {"recordedTo", PARAM_TIME, "Recorded (commit) time to (inclusive)", NULL},
    P_AS_OF,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_LIVE[] = {
    P_FILTERS,
    {"from", PARAM_FROM, "First position to deliver, or latest (only new events); default 1. "
     "A Last-Event-ID header wins", NULL},
    {"api_key", PARAM_STRING, "The API key (browsers' EventSource cannot send headers)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_STREAM_READ[] = {
    {"from", PARAM_POSITIVE, "First version (inclusive; default: 1, or the newest backward)",
     NULL},
    P_DIRECTION,
    P_LIMIT,
    P_AS_OF,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_STREAM_LIST[] = {
    {"prefix", PARAM_STRING, "Only streams whose name starts with this", NULL},
    {"category", PARAM_STRING, "Only streams of this category", NULL},
    {"after", PARAM_STRING, "The name to continue after (the previous page's next)", NULL},
    P_LIMIT,
    P_AS_OF,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_AS_OF_ONLY[] = {P_AS_OF, {NULL, 0, NULL, NULL}};
static const struct route_param P_HARD[] = {
    {"hard", PARAM_BOOLEAN, "Hard delete (a tombstone: the name stays unusable)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_AT[] = {
    {"at", PARAM_TIME, "Revoke at this time instead of now", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_PARKED[] = {
    {"from", PARAM_POSITIVE, "First position (default 1)", NULL},
    P_LIMIT,
    {NULL, 0, NULL, NULL},
};

/* ---- the route table ---- */

#define DB ROUTE_DB
#define IDEM ROUTE_IDEMPOTENT
#define DUP ROUTE_DUPLICATE_200
#define LIVE (ROUTE_DB | ROUTE_KEY_IN_QUERY | ROUTE_STREAMING)

static const struct route ROUTES[] = {
    {"GET", "", root, 0, NEED_NONE, "getIndex", "What this server is, and where its API "
     "document is", NULL, NULL, "Index", 200},
    {"GET", "health", health, 0, NEED_NONE, "getHealth", "Liveness", NULL, NULL, "Health", 200},
    {"GET", "health/detailed", health_detailed, 0, NEED_ANY, "getHealthDetailed",
     "Storage status, uptime, each database's head and writer queue", NULL, NULL,
     "HealthDetailed", 200},
    {"GET", "v1/openapi.json", openapi, 0, NEED_NONE, "getOpenApi",
     "This API as an OpenAPI 3.1 document", NULL, NULL, "OpenApiDocument", 200},
    {"GET", "metrics", metrics, 0, NEED_ANY, "getMetrics",
     "Counters in the Prometheus text format", NULL, NULL, "PrometheusText", 200},
    {"GET", "v1/whoami", whoami, 0, NEED_ANY, "whoAmI", "The caller's key: scope and database",
     NULL, NULL, "WhoAmI", 200},
    {"GET", "v1/keys", keys_list, 0, NEED_ADMIN, "listKeys", "List API keys", NULL, NULL,
     "KeyList", 200},
    {"POST", "v1/keys", keys_create, 0, NEED_ADMIN, "createKey", "Create an API key", NULL,
     "KeyCreate", "NewKey", 201},
    {"DELETE", "v1/keys/{id}", keys_revoke, 0, NEED_ADMIN, "revokeKey",
     "Revoke an API key (now or at)", P_AT, NULL, NULL, 204},
    {"POST", "v1/keys/{id}/rotate", keys_rotate, 0, NEED_ADMIN, "rotateKey",
     "Replace an API key", NULL, "KeyRotate", "NewKey", 201},
    {"GET", "v1/databases", db_list, 0, NEED_ANY, "listDatabases", "List databases", NULL, NULL,
     "DatabaseList", 200},
    {"POST", "v1/databases", db_create, ROUTE_ALL_DBS, NEED_ADMIN, "createDatabase",
     "Create a database", NULL, "DatabaseCreate", "DatabaseName", 201},
    {"GET", "v1/databases/{db}", db_get, DB, NEED_READ, "getDatabase",
     "Database statistics and settings", NULL, NULL, "Database", 200},
    {"PATCH", "v1/databases/{db}", db_update, DB, NEED_ADMIN, "updateDatabase",
     "Change a database's description and settings", NULL, "DatabaseUpdate", "Database", 200},
    {"DELETE", "v1/databases/{db}", db_delete, 0, NEED_ADMIN, "deleteDatabase",
     "Delete a database", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/compaction", compact_get, DB, NEED_READ, "getCompaction",
     "Compaction status: log generation, space reclaimed, the last run", NULL, NULL,
     "CompactionStatus", 200},
    {"POST", "v1/databases/{db}/compaction", compact_start, DB | ROUTE_BODY_OPTIONAL, NEED_ADMIN,
     "startCompaction",
     "Compact the log now: reclaim the space of deleted and expired events", NULL,
     "CompactionRequest", "CompactionStatus", 202},
    {"GET", "v1/connections", live_conns, 0, NEED_ADMIN, "listConnections",
     "Open live subscriptions", NULL, NULL, "ConnectionList", 200},
    {"DELETE", "v1/connections/{id}", live_conn_close, 0, NEED_ADMIN, "closeConnection",
     "Close a live subscription", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/events", log_read, DB, NEED_READ, "readLog",
     "Read or query the log", P_LOG, NULL, "EventPage", 200},
    {"GET", "v1/databases/{db}/events/live", log_live, LIVE, NEED_READ, "subscribeLog",
     "Subscribe to the log (Server-Sent Events, or a WebSocket): history, then live", P_LIVE,
     NULL, "EventStream", 200},
    {"POST", "v1/databases/{db}/events", multi_append, DB | IDEM | DUP, NEED_WRITE, "appendMulti",
     "Append to several streams, or stream-less events, with conditions", NULL, "MultiAppend",
     "MultiAppendResult", 201},
    {"POST", "v1/databases/{db}/query", log_query, DB | ROUTE_READ_BODY, NEED_READ, "queryLog",
     "Query the log (JSON body)", NULL, "Query", "EventPage", 200},
    {"GET", "v1/databases/{db}/streams", streams_list, DB, NEED_READ, "listStreams",
     "List streams", P_STREAM_LIST, NULL, "StreamList", 200},
    {"GET", "v1/databases/{db}/events/{position}", event_get, DB, NEED_READ, "getEvent",
     "One event by position", NULL, NULL, "Event", 200},
    {"GET", "v1/databases/{db}/streams/{stream}", stream_get, DB, NEED_READ, "getStream",
     "Stream info", P_AS_OF_ONLY, NULL, "Stream", 200},
    {"DELETE", "v1/databases/{db}/streams/{stream}", stream_delete, DB | IDEM, NEED_WRITE,
     "deleteStream", "Delete a stream (soft, or hard with hard=true)", P_HARD, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/streams/{stream}/metadata", meta_read, DB, NEED_READ,
     "getStreamMetadata", "A stream's lifecycle settings", NULL, NULL, "StreamMetadata", 200},
    {"PUT", "v1/databases/{db}/streams/{stream}/metadata", meta_write, DB | IDEM, NEED_WRITE,
     "setStreamMetadata", "Set a stream's lifecycle settings", NULL, "StreamSettings",
     "StreamMetadataWritten", 200},
    {"GET", "v1/databases/{db}/streams/{stream}/events", stream_read, DB, NEED_READ,
     "readStream", "Read a stream", P_STREAM_READ, NULL, "StreamPage", 200},
    {"GET", "v1/databases/{db}/streams/{stream}/events/live", stream_live, LIVE, NEED_READ,
     "subscribeStream", "Subscribe to a stream (Server-Sent Events, or a WebSocket)", P_LIVE,
     NULL, "EventStream", 200},
    {"POST", "v1/databases/{db}/subscriptions", sub_create, DB, NEED_WRITE,
     "createSubscription", "Create a durable subscription (consumer group)", NULL,
     "SubscriptionCreate", "Subscription", 201},
    {"GET", "v1/databases/{db}/subscriptions", sub_list, DB, NEED_READ, "listSubscriptions",
     "List durable subscriptions", NULL, NULL, "SubscriptionList", 200},
    {"GET", "v1/databases/{db}/subscriptions/{name}", sub_get, DB, NEED_READ,
     "getSubscription", "A durable subscription's state", NULL, NULL, "Subscription", 200},
    {"DELETE", "v1/databases/{db}/subscriptions/{name}", sub_delete, DB, NEED_WRITE,
     "deleteSubscription", "Delete a durable subscription", NULL, NULL, NULL, 204},
    {"POST", "v1/databases/{db}/subscriptions/{name}/pull", sub_pull, DB, NEED_READ,
     "pullSubscription", "Lease a batch of events to a consumer", NULL, "Pull", "PulledEvents",
     200},
    {"POST", "v1/databases/{db}/subscriptions/{name}/ack", sub_ack, DB, NEED_READ,
     "ackSubscription", "Acknowledge events", NULL, "Ack", "Acknowledged", 200},
    {"POST", "v1/databases/{db}/subscriptions/{name}/nack", sub_nack, DB, NEED_READ,
     "nackSubscription", "Reject events (redeliver or park)", NULL, "Nack", "Rejected", 200},
    {"GET", "v1/databases/{db}/subscriptions/{name}/parked", sub_parked, DB, NEED_READ,
     "listParked", "Parked (dead-letter) events", P_PARKED, NULL, "ParkedEvents", 200},
    {"POST", "v1/databases/{db}/subscriptions/{name}/replay", sub_replay, DB, NEED_WRITE,
     "replayParked", "Deliver parked events again", NULL, "Replay", "Replayed", 200},
    {"POST", "v1/databases/{db}/webhooks", hook_create, DB, NEED_ADMIN, "createWebhook",
     "Create a webhook (its secret is shown once)", NULL, "WebhookCreate", "WebhookWithSecret",
     201},
    {"GET", "v1/databases/{db}/webhooks", hook_list, DB, NEED_ADMIN, "listWebhooks",
     "List webhooks", NULL, NULL, "WebhookList", 200},
    {"GET", "v1/databases/{db}/webhooks/{name}", hook_get, DB, NEED_ADMIN, "getWebhook",
     "A webhook with its delivery log and parked batches", NULL, NULL, "WebhookDetail", 200},
    {"DELETE", "v1/databases/{db}/webhooks/{name}", hook_delete, DB, NEED_ADMIN,
     "deleteWebhook", "Delete a webhook", NULL, NULL, NULL, 204},
    {"POST", "v1/databases/{db}/webhooks/{name}/rotate", hook_rotate, DB, NEED_ADMIN,
     "rotateWebhookSecret", "Replace a webhook's secret (the old one signs during a grace "
     "period)", NULL, "WebhookRotate", "WebhookWithSecret", 200},
    {"POST", "v1/databases/{db}/streams/{stream}/events", stream_append, DB | IDEM | DUP,
     NEED_WRITE,
     "appendStream", "Append to a stream", NULL, "Append", "AppendResult", 201},
    {"GET", "v1/backup", backup, ROUTE_ALL_DBS | ROUTE_STREAMING, NEED_ADMIN, "backup",
     "Stream a consistent backup of every database (application/vnd.annals.backup)", NULL,
     NULL, "BackupStream", 200},
};

#undef DB
#undef IDEM
#undef DUP
#undef LIVE

enum { NROUTES = sizeof ROUTES / sizeof ROUTES[0] };

static const char CORS_ALLOW[] = "Authorization, Content-Type, X-API-Key, Idempotency-Key, "
                                 "X-Idempotency-Key, X-Request-Id, Last-Event-ID";
static const char CORS_EXPOSE[] = "X-Request-Id, X-Idempotency-Replayed, Location, Allow, "
                                  "X-RateLimit-Limit, X-RateLimit-Remaining, "
                                  "X-RateLimit-Reset, Retry-After";

const struct gate_mount api_native_mount = {
    .name = "native",
    .routes = ROUTES,
    .nroutes = NROUTES,
    .key_from = GATE_KEY_BEARER | GATE_KEY_HEADER,
    .key_param = "api_key",
    .db_from = GATE_DB_PATH,
    .db_param = "db",
    .error = gate_native_error,
    .rate_window_s = 1,
    .cors_allow_headers = CORS_ALLOW,
    .cors_expose_headers = CORS_EXPOSE,
};

/* ---- helpers ---- */

/* Reads an optional unsigned query parameter. Answers 400 and returns false when bad. */
static bool query_u64(struct gate_call *c, const char *name, uint64_t dflt, uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    *out = dflt;
    if (!s) {
        return true;
    }
    if (parse_u64(s, out) != 0) {
        out_error(c->req, 400, "invalid_parameter", "must be an unsigned decimal integer", name);
        return false;
    }
    return true;
}

static bool query_limit(struct gate_call *c, size_t *out)
{
    uint64_t v;
    if (!query_u64(c, "limit", LIMIT_READ_DEFAULT, &v)) {
        return false;
    }
    if (v < 1 || v > LIMIT_READ_MAX) {
        out_error(c->req, 400, "invalid_parameter", "limit must be between 1 and 1000",
                  "limit");
        return false;
    }
    *out = (size_t)v;
    return true;
}

static bool query_direction(struct gate_call *c, bool *backward)
{
    const char *s = http_req_query(c->req, "direction");
    *backward = false;
    if (!s || strcmp(s, "forward") == 0) {
        return true;
    }
    if (strcmp(s, "backward") == 0) {
        *backward = true;
        return true;
    }
    out_error(c->req, 400, "invalid_parameter", "direction is forward or backward",
              "direction");
    return false;
}

static bool stream_name(struct gate_call *c, struct slice *out)
{
    *out = gate_param(c, "stream");
    if (!engine_stream_name_ok(out->ptr, out->len)) {
        out_error(c->req, 400, "invalid_name",
                  "stream names are 1 to 256 bytes of UTF-8 without control characters, "
                  "other than . and ..", "stream");
        return false;
    }
    return true;
}

/* stream_name, for the paths that write or configure a stream: names starting with '$' are
 * the server's ($dcb, $$<stream>) and answer 400. */
static bool user_stream_name(struct gate_call *c, struct slice *out)
{
    if (!stream_name(c, out)) {
        return false;
    }
    if (out->ptr[0] == '$') {
        out_error(c->req, 400, "invalid_name", "stream names starting with $ are reserved",
                  "stream");
        return false;
    }
    return true;
}

/* ---- the root, health and databases ---- */

/* GET /: what this is and where to read on: a short page for browsers, else JSON. */
static void root(struct gate_call *c)
{
    const char *accept = http_req_header(c->req, "Accept");
    struct buf b;
    buf_init(&b);
    if (accept && strstr(accept, "text/html")) {
        buf_printf(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>Annals</title>"
                   "</head><body><h1>Annals %s</h1><p>A self-hosted event-sourcing database "
                   "server.</p><ul><li><a href=\"/v1/openapi.json\">The API as an OpenAPI "
                   "document</a></li><li><a href=\"/health\">Health</a></li><li>The manual: "
                   "docs/api.md in the source tree</li></ul></body></html>\n",
                   api_of(c)->version);
        http_respond(c->req, 200, &b, "text/html; charset=utf-8");
        return;
    }
    buf_printf(&b, "{\"name\":\"annals\",\"version\":\"%s\",\"openapi\":\"/v1/openapi.json\","
               "\"health\":\"/health\",\"docs\":\"docs/api.md in the source tree\"}",
               api_of(c)->version);
    out_json(c->req, 200, &b);
}

static void health(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"ok\",\"version\":\"%s\"}", api_of(c)->version);
    out_json(c->req, 200, &b);
}

static int db_health(struct gate_call *c, const char *name, struct buf *b, bool first)
{
    struct db *db;
    if (engine_db_acquire(api_of(c)->engine, name, strlen(name), &db) != 0) {
        return 0; /* deleted meanwhile */
    }
    struct db_info in;
    int rc = engine_db_info(db, &in);
    engine_db_release(db);
    buf_adds(b, first ? "{\"name\":" : ",{\"name\":");
    buf_add_json_str(b, name, strlen(name));
    buf_printf(b, ",\"status\":\"%s\",\"head\":%llu,\"indexed\":%llu,\"queueDepth\":%llu}",
               rc ? "failing" : "ok", (unsigned long long)in.head,
               (unsigned long long)in.indexed, (unsigned long long)in.queue_depth);
    return rc;
}

static void health_detailed(struct gate_call *c)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    struct buf dbs;
    buf_init(&dbs);
    bool failing = false;
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (c->authed && c->key.database[0] && strcmp(c->key.database, names[i]) != 0) {
            continue;
        }
        failing |= db_health(c, names[i], &dbs, shown++ == 0) != 0;
    }
    engine_names_free(names, n);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"%s\",\"version\":\"%s\",\"uptimeSeconds\":%.3f,"
               "\"subscribers\":%u,\"auth\":%s,\"databases\":[%.*s]}",
               failing ? "degraded" : "ok", api_of(c)->version,
               (double)(time_now_us() - api_of(c)->started_us) / 1e6, live_count(api_of(c)->live),
               __atomic_load_n(&c->gate->auth_required, __ATOMIC_ACQUIRE) ? "true" : "false",
               (int)dbs.len, dbs.ptr ? dbs.ptr : "");
    buf_fini(&dbs);
    out_json(c->req, 200, &b);
}

static void db_list(struct gate_call *c)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"databases\":[");
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (c->authed && c->key.database[0] && strcmp(c->key.database, names[i]) != 0) {
            continue; /* a key for one database sees only that one */
        }
        buf_adds(&b, shown++ ? ",{\"name\":" : "{\"name\":");
        buf_add_json_str(&b, names[i], strlen(names[i]));
        buf_addc(&b, '}');
    }
    buf_adds(&b, "]}");
    engine_names_free(names, n);
    out_json(c->req, 200, &b);
}

static void db_create(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct parse_error pe;
    void *rootp;
    if (parse_json_object(http_req_body(c->req), &rootp, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    json_t *root = rootp;
    json_t *name = json_object_get(root, "name");
    const char *s = json_string_value(name);
    size_t len = s ? json_string_length(name) : 0;
    struct db_settings settings;
    if (parse_db_settings(root, false, &settings, &pe) != 0) {
        out_parse_error(c->req, &pe);
        json_decref(root);
        return;
    }
    int rc = s && engine_db_name_ok(s, len) ? engine_db_create(api_of(c)->engine, s, len, &settings)
                                             : ERR_INVALID;
    if (rc == ERR_INVALID) {
        out_error(c->req, 400, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
                  "name");
    } else if (rc == ERR_EXISTS) {
        out_error(c->req, 409, "database_exists", "a database with this name exists", "name");
    } else if (rc == ERR_TOOBIG) {
        out_error(c->req, 507, "too_many_databases", "the database limit is reached", NULL);
    } else if (rc) {
        out_engine_error(c->req, rc);
    } else {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"name\":");
        buf_add_json_str(&b, s, len);
        buf_addc(&b, '}');
        char loc[128];
        snprintf(loc, sizeof loc, "/v1/databases/%s", s);
        http_add_header(c->req, "Location", loc);
        out_json(c->req, 201, &b);
    }
    json_decref(root);
}

static void db_get(struct gate_call *c)
{
    struct db_info in;
    int rc = engine_db_info(c->db, &in);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    char hash[2 * HASH_SHA256_LEN + 1];
    hash_hex(in.head_hash, HASH_SHA256_LEN, hash);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"name\":");
    buf_add_json_str(&b, engine_db_name(c->db), strlen(engine_db_name(c->db)));
    buf_printf(&b, ",\"streams\":%llu,\"events\":%llu,\"head\":%llu,\"headHash\":\"%s\","
               "\"bytesOnDisk\":%llu,\"bytesUsed\":%llu,",
               (unsigned long long)in.streams, (unsigned long long)in.events,
               (unsigned long long)in.head, hash, (unsigned long long)in.file_bytes,
               (unsigned long long)in.used_bytes);
    out_time_field(&b, "created", in.created_us, false);
    buf_addc(&b, ',');
    out_time_field(&b, "oldestEvent", in.oldest_us, true);
    buf_addc(&b, ',');
    out_time_field(&b, "newestEvent", in.newest_us, true);
    struct db_settings set;
    engine_db_settings(c->db, &set);
    buf_adds(&b, ",\"description\":");
    buf_add_json_str(&b, set.description, strlen(set.description));
    buf_adds(&b, ",\"settings\":{\"retentionPeriodDays\":");
    set.retention_days ? buf_add_u64(&b, set.retention_days) : buf_adds(&b, "null");
    buf_adds(&b, ",\"maxStreamSizeBytes\":");
    set.max_stream_bytes ? buf_add_u64(&b, set.max_stream_bytes) : buf_adds(&b, "null");
    buf_adds(&b, ",\"rateLimit\":");
    set.rate_limit ? buf_add_u64(&b, set.rate_limit) : buf_adds(&b, "null");
    buf_adds(&b, ",\"idempotencyTtlSeconds\":");
    set.idem_ttl_s ? buf_add_u64(&b, set.idem_ttl_s) : buf_adds(&b, "null");
    buf_printf(&b, "},\"idempotencyKeys\":%llu", (unsigned long long)in.idem_keys);
    buf_printf(&b, ",\"writer\":{\"commits\":%llu,\"appends\":%llu,\"queueDepth\":%llu,"
               "\"commitSeconds\":%.6f,\"syncs\":%llu,\"syncSeconds\":%.6f},"
               "\"indexer\":{\"indexed\":%llu,\"commits\":%llu,\"seconds\":%.6f},",
               (unsigned long long)in.commits, (unsigned long long)in.appends,
               (unsigned long long)in.queue_depth, (double)in.commit_ns / 1e9,
               (unsigned long long)in.syncs, (double)in.sync_ns / 1e9,
               (unsigned long long)in.indexed, (unsigned long long)in.index_commits,
               (double)in.index_ns / 1e9);
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

/* The "compaction" object of a database (docs/api.md, "Compaction"). */
static void compaction_json(struct db *db, struct buf *b)
{
    struct compact_status cs;
    engine_compact_status(db, &cs);
    buf_printf(b, "\"compaction\":{\"running\":%s,\"requested\":%s,\"generation\":%llu,"
               "\"runs\":%llu,\"checks\":%llu,\"reclaimedBytes\":%llu,"
               "\"redactedEvents\":%llu,\"last\":",
               cs.running ? "true" : "false", cs.asked ? "true" : "false",
               (unsigned long long)cs.generation, (unsigned long long)cs.runs,
               (unsigned long long)cs.checks, (unsigned long long)cs.reclaimed_bytes,
               (unsigned long long)cs.redacted_events);
    if (!cs.last_us) {
        buf_adds(b, "null}");
        return;
    }
    buf_addc(b, '{');
    out_time_field(b, "at", cs.last_us, false);
    buf_printf(b, ",\"outcome\":\"%s\",\"rewrote\":%s,\"redactedEvents\":%llu,"
               "\"reclaimedBytes\":%llu,\"logBytesBefore\":%llu,\"logBytesAfter\":%llu}}",
               cs.last_err == 0 ? "ok" : cs.last_err == ERR_SHUTDOWN ? "abandoned" : "failed",
               cs.last_rewrote ? "true" : "false", (unsigned long long)cs.last_redacted,
               (unsigned long long)cs.last_reclaimed, (unsigned long long)cs.last_log_before,
               (unsigned long long)cs.last_log_after);
}

static void compact_get(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '{');
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

static void compact_start(struct gate_call *c)
{
    if (http_req_body(c->req).len) { /* no options yet: nothing, or an empty object */
        json_t *root = out_body_object(c->req);
        bool ok = root && out_only_members(c->req, root, NULL, 0, "");
        json_decref(root);
        if (!ok) {
            return;
        }
    }
    engine_compact_request(c->db);
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '{');
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, 202, &b);
}

/* PATCH /v1/databases/{db}: changes the description and settings given (null clears one);
 * answers the database as GET does. */
static void db_update(struct gate_call *c)
{
    json_t *root = out_body_object(c->req);
    if (!root) {
        return;
    }
    struct db_settings settings;
    engine_db_settings(c->db, &settings);
    struct parse_error pe;
    int rc = parse_db_settings(root, true, &settings, &pe);
    json_decref(root);
    if (rc) {
        out_parse_error(c->req, &pe);
        return;
    }
    rc = engine_db_set_settings(c->db, &settings);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    db_get(c);
}

/* A deleted database is gone: answer the DELETE (any thread). */
static void on_deleted(void *arg, int err)
{
    struct http_req *req = arg;
    if (err) {
        out_engine_error(req, err);
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
}

static void db_delete(struct gate_call *c)
{
    struct slice name = gate_param(c, "db");
    if (!engine_db_name_ok(name.ptr, name.len)) {
        out_error(c->req, 400, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
                  "database");
        return;
    }
    http_defer(c->req);
    if (engine_db_delete(api_of(c)->engine, name.ptr, name.len, on_deleted, c->req) != 0) {
        out_error(c->req, 404, "database_not_found", "no such database", "database");
    }
}

/* ---- reads ---- */

/* Collects events into a JSON array while reading. */
struct page {
    struct buf b;        /* response being built */
    size_t count;        /* events written */
    uint64_t last_pos;   /* position of the last event written */
    uint64_t last_ver;   /* version of the last event written */
};

static int on_page_event(void *arg, const struct event_rec *ev)
{
    struct page *pg = arg;
    if (pg->count++) {
        buf_addc(&pg->b, ',');
    }
    out_event(&pg->b, ev);
    pg->last_pos = ev->position;
    pg->last_ver = ev->version;
    return 0;
}

/* Closes a stream page: `"],"version":<end>,"hasMore":..,"next":<from of the next page or
 * null>}`. A full page (full) whose last item (last) is not at the end of the range (first
 * backward, end forward) has a next page. */
static void page_end(struct buf *b, uint64_t end, uint64_t first, bool full, uint64_t last,
                     bool backward)
{
    bool more = full && (backward ? last > first : last < end);
    buf_adds(b, "],\"version\":");
    buf_add_u64(b, end);
    buf_adds(b, more ? ",\"hasMore\":true,\"next\":" : ",\"hasMore\":false,\"next\":null");
    if (more) {
        buf_add_u64(b, backward ? last - 1 : last + 1);
    }
    buf_addc(b, '}');
}

static const char *get_param(void *arg, const char *name, size_t nth)
{
    return http_req_query_nth(arg, name, nth);
}

/* Runs a parsed query and answers {"events","head","hasMore","next"}. */
static void run_query(struct gate_call *c, struct parsed_query *pq)
{
    struct page pg = {0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    struct engine_query_result res;
    int rc = engine_query(c->db, &pq->q, on_page_event, &pg, &res);
    if (rc) {
        buf_fini(&pg.b);
        out_engine_error(c->req, rc);
        return;
    }
    buf_adds(&pg.b, "],\"head\":");
    buf_add_u64(&pg.b, res.head);
    buf_adds(&pg.b, res.next ? ",\"hasMore\":true,\"next\":" : ",\"hasMore\":false,\"next\":null");
    if (res.next) {
        buf_add_u64(&pg.b, res.next);
    }
    buf_addc(&pg.b, '}');
    out_json(c->req, 200, &pg.b);
}

static void log_read(struct gate_call *c)
{
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_params(get_param, c->req, &pq, &pe) != 0) {
        out_parse_error(c->req, &pe);
    } else {
        run_query(c, &pq);
    }
    parsed_query_fini(&pq);
}

static void log_query(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_body(http_req_body(c->req), &pq, &pe) != 0) {
        out_parse_error(c->req, &pe);
    } else {
        run_query(c, &pq);
    }
    parsed_query_fini(&pq);
}

/* ---- live subscriptions ---- */

/* get_param without `from` (a subscription reads it itself). */
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
    struct slice path = http_req_path(c->req);
    char label[256];
    snprintf(label, sizeof label, "%.*s", (int)(path.len < 250 ? path.len : 250), path.ptr);
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
    struct slice path = http_req_path(c->req);
    char label[256];
    snprintf(label, sizeof label, "%.*s", (int)(path.len < 250 ? path.len : 250), path.ptr);
    live_ws(api_of(c)->live, c->req, c->db, stream, label);
    c->db = NULL; /* the connection holds the reference now */
    return true;
}

static void log_live(struct gate_call *c)
{
    if (!live_ws_start(c, NULL)) {
        live_start(c, NULL);
    }
}

static void stream_live(struct gate_call *c)
{
    struct slice name;
    if (stream_name(c, &name) && !live_ws_start(c, &name)) {
        live_start(c, &name);
    }
}

static void live_conns(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"connections\":");
    live_list(api_of(c)->live, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

static void live_conn_close(struct gate_call *c)
{
    uint64_t id;
    if (parse_u64(gate_param_str(c, "id"), &id) != 0 || live_close(api_of(c)->live, id) != 0) {
        out_error(c->req, 404, "connection_not_found", "no open subscription with this id",
                  "id");
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(c->req, 204, &b, NULL);
}

/* ---- durable subscriptions (api/groups_api.c) ---- */

static void sub_create(struct gate_call *c)
{
    groups_api_create(c->req, c->db);
}

static void sub_list(struct gate_call *c)
{
    groups_api_list(c->req, c->db, NULL);
}

static void sub_get(struct gate_call *c)
{
    groups_api_list(c->req, c->db, gate_param_str(c, "name"));
}

static void sub_delete(struct gate_call *c)
{
    groups_api_delete(c->req, c->db, gate_param_str(c, "name"));
}

static void sub_pull(struct gate_call *c)
{
    groups_api_pull(c->req, c->db, gate_param_str(c, "name"));
}

static void sub_ack(struct gate_call *c)
{
    groups_api_ack(c->req, c->db, gate_param_str(c, "name"), false);
}

static void sub_nack(struct gate_call *c)
{
    groups_api_ack(c->req, c->db, gate_param_str(c, "name"), true);
}

static void sub_parked(struct gate_call *c)
{
    groups_api_parked(c->req, c->db, gate_param_str(c, "name"));
}

static void sub_replay(struct gate_call *c)
{
    groups_api_replay(c->req, c->db, gate_param_str(c, "name"));
}

/* ---- webhooks (api/webhooks_api.c) ---- */

static void hook_create(struct gate_call *c)
{
    struct db *db = c->db;
    c->db = NULL; /* the creation holds the reference now */
    webhooks_api_create(c->req, api_of(c)->engine, db);
}

static void hook_list(struct gate_call *c)
{
    webhooks_api_list(c->req, c->db, NULL);
}

static void hook_get(struct gate_call *c)
{
    webhooks_api_list(c->req, c->db, gate_param_str(c, "name"));
}

static void hook_delete(struct gate_call *c)
{
    webhooks_api_delete(c->req, c->db, gate_param_str(c, "name"));
}

static void hook_rotate(struct gate_call *c)
{
    webhooks_api_rotate(c->req, c->db, gate_param_str(c, "name"));
}

static void event_get(struct gate_call *c)
{
    uint64_t pos;
    if (parse_u64(gate_param_str(c, "position"), &pos) != 0 || pos == 0) {
        out_error(c->req, 400, "invalid_parameter", "positions are integers from 1", "position");
        return;
    }
    struct page pg = {0};
    buf_init(&pg.b);
    int rc = engine_read_event(c->db, pos, on_page_event, &pg);
    if (rc == ERR_NOTFOUND) {
        buf_fini(&pg.b);
        out_error(c->req, 404, "event_not_found", "no event at this position", "position");
        return;
    }
    if (rc) {
        buf_fini(&pg.b);
        out_engine_error(c->req, rc);
        return;
    }
    out_json(c->req, 200, &pg.b);
}

static void stream_json(struct buf *b, struct slice name, const struct stream_rec *s)
{
    buf_adds(b, "{\"stream\":");
    buf_add_json_str(b, name.ptr, name.len);
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, s->version);
    buf_adds(b, ",\"firstPosition\":");
    buf_add_u64(b, s->first_pos);
    buf_adds(b, ",\"lastPosition\":");
    buf_add_u64(b, s->last_pos);
    buf_adds(b, ",\"bytes\":");
    buf_add_u64(b, s->bytes);
    buf_addc(b, ',');
    out_time_field(b, "created", s->created_us, false);
    buf_addc(b, ',');
    out_time_field(b, "updated", s->updated_us, false);
    buf_addc(b, '}');
}

/* Collects a page of the stream list. */
struct stream_page {
    struct buf b;          /* answer being built */
    size_t count, limit;   /* rows written, rows wanted */
    size_t examined;       /* names looked at (category filtering skips some) */
    struct slice category; /* wanted category, or ptr NULL */
    struct buf last;       /* name to continue after, when the page ends early */
    bool more;             /* a next page exists */
};

static int on_stream(void *arg, struct slice name, const struct stream_rec *s)
{
    struct stream_page *sp = arg;
    if (sp->examined++ == QUERY_BUDGET) {
        sp->more = true; /* continue after the last name looked at */
        return 1;
    }
    struct slice cat = filter_category(name);
    bool match = !sp->category.ptr || (cat.len == sp->category.len &&
                                       memcmp(cat.ptr, sp->category.ptr, cat.len) == 0);
    if (sp->count == sp->limit) {
        sp->more = match; /* a next page exists: continue after the last name written */
        return match;
    }
    buf_reset(&sp->last);
    buf_add(&sp->last, name.ptr, name.len);
    if (!match) {
        return 0;
    }
    if (sp->count++) {
        buf_addc(&sp->b, ',');
    }
    stream_json(&sp->b, name, s);
    return 0;
}

static void streams_list(struct gate_call *c)
{
    size_t limit;
    struct as_of at;
    struct parse_error pe;
    if (!query_limit(c, &limit)) {
        return;
    }
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    const char *prefix = http_req_query(c->req, "prefix");
    const char *category = http_req_query(c->req, "category");
    const char *after = http_req_query(c->req, "after");
    if (category && !engine_name_ok(category, strlen(category), LIMIT_STREAM_NAME_BYTES)) {
        out_error(c->req, 400, "invalid_parameter", "a category is a non-empty name",
                  "category");
        return;
    }
    struct stream_page sp = {.limit = limit};
    buf_init(&sp.b);
    buf_init(&sp.last);
    if (category) {
        sp.category = (struct slice){category, strlen(category)};
    }
    /* a category's streams all start with it; a prefix narrows further */
    struct slice pfx = {"", 0};
    if (prefix) {
        pfx = (struct slice){prefix, strlen(prefix)};
    } else if (category) {
        pfx = sp.category;
    }
    struct slice aft = {after, after ? strlen(after) : 0};
    buf_adds(&sp.b, "{\"streams\":[");
    int rc = engine_list_streams(c->db, pfx, aft, &at, on_stream, &sp);
    if (rc) {
        buf_fini(&sp.b);
        buf_fini(&sp.last);
        out_engine_error(c->req, rc);
        return;
    }
    buf_adds(&sp.b, "],\"next\":");
    if (sp.more) {
        buf_add_json_str(&sp.b, sp.last.ptr, sp.last.len);
    } else {
        buf_adds(&sp.b, "null");
    }
    buf_addc(&sp.b, '}');
    buf_fini(&sp.last);
    out_json(c->req, 200, &sp.b);
}

static void stream_get(struct gate_call *c)
{
    struct slice name;
    if (!stream_name(c, &name)) {
        return;
    }
    struct as_of at;
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct stream_rec s;
    int rc = engine_stream_info(c->db, name, &at, &s);
    if (rc == ERR_NOTFOUND) {
        out_error(c->req, 404, "stream_not_found", "no such stream", "stream");
        return;
    }
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    stream_json(&b, name, &s);
    out_json(c->req, 200, &b);
}

static void stream_read(struct gate_call *c)
{
    struct slice name;
    uint64_t from;
    size_t limit;
    bool backward;
    if (!stream_name(c, &name) || !query_direction(c, &backward) ||
        !query_u64(c, "from", backward ? UINT64_MAX : 1, &from) || !query_limit(c, &limit)) {
        return;
    }
    if (from == 0) {
        out_error(c->req, 400, "invalid_parameter", "versions are integers from 1", "from");
        return;
    }
    struct as_of at;
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct page pg = {0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"stream\":");
    buf_add_json_str(&pg.b, name.ptr, name.len);
    buf_adds(&pg.b, ",\"events\":[");
    struct stream_rec s;
    uint64_t first_visible = 1;
    int rc = engine_read_stream(c->db, name, &at, from, backward, limit, on_page_event, &pg,
                                &s, &first_visible);
    if (rc) {
        buf_fini(&pg.b);
        if (rc == ERR_NOTFOUND) {
            out_error(c->req, 404, "stream_not_found", "no such stream", "stream");
        } else {
            out_engine_error(c->req, rc);
        }
        return;
    }
    page_end(&pg.b, s.version, first_visible, pg.count == limit, pg.last_ver, backward);
    out_json(c->req, 200, &pg.b);
}

/* ---- append ---- */

static void stream_append(struct gate_call *c)
{
    struct slice name;
    if (!user_stream_name(c, &name) || !out_require_json(c->req)) {
        return;
    }
    struct db *db = c->db;
    c->db = NULL; /* the append holds the reference now */
    append_stream(c->req, db, name, http_req_body(c->req), &api_of(c)->limits, NULL);
}

static void multi_append(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_multi(c->req, db, http_req_body(c->req), &api_of(c)->limits, NULL);
}

/* ---- stream lifecycle ---- */

static void stream_delete(struct gate_call *c)
{
    struct slice name;
    if (!user_stream_name(c, &name)) {
        return;
    }
    const char *hard = http_req_query(c->req, "hard");
    if (hard && strcmp(hard, "true") != 0 && strcmp(hard, "false") != 0) {
        out_error(c->req, 400, "invalid_parameter", "hard is true or false", "hard");
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_meta_op(c->req, db, name,
                   hard && strcmp(hard, "true") == 0 ? META_HARD_DELETE : META_SOFT_DELETE, NULL);
}

static void meta_read(struct gate_call *c)
{
    struct slice name;
    if (!user_stream_name(c, &name)) {
        return;
    }
    struct stream_meta m;
    engine_stream_settings(c->db, name, &m);
    if (m.tombstone) {
        out_engine_error(c->req, ERR_DELETED);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"stream\":");
    buf_add_json_str(&b, name.ptr, name.len);
    buf_adds(&b, ",\"metadata\":");
    out_stream_meta(&b, &m);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

static void meta_write(struct gate_call *c)
{
    struct slice name;
    if (!user_stream_name(c, &name) || !out_require_json(c->req)) {
        return;
    }
    struct stream_meta m;
    struct parse_error pe;
    if (parse_stream_meta(http_req_body(c->req), &m, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_meta_op(c->req, db, name, META_SET, &m);
}

/* ---- keys and identity ---- */

static const struct api_key *caller(const struct gate_call *c)
{
    return c->authed ? &c->key : NULL;
}

static void whoami(struct gate_call *c)
{
    keys_api_whoami(c->req, api_of(c), caller(c));
}

static void keys_list(struct gate_call *c)
{
    keys_api_list(c->req, api_of(c), caller(c));
}

static void keys_create(struct gate_call *c)
{
    if (out_require_json(c->req)) {
        keys_api_create(c->req, api_of(c), caller(c));
    }
}

static void keys_revoke(struct gate_call *c)
{
    keys_api_revoke(c->req, api_of(c), caller(c), gate_param_str(c, "id"));
}

static void keys_rotate(struct gate_call *c)
{
    if (out_require_json(c->req)) {
        keys_api_rotate(c->req, api_of(c), caller(c), gate_param_str(c, "id"));
    }
}

static void backup(struct gate_call *c)
{
    backup_api_start(c->req, api_of(c)->engine, api_of(c)->version);
}

/* ---- the OpenAPI document, generated from the route table (openapi.c) ---- */

static void openapi(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    openapi_render(ROUTES, NROUTES, api_of(c)->version, &b);
    out_json(c->req, 200, &b);
}

/* ---- metrics ---- */

/* The per-database metric families: name, type, help. */
static const struct {
    const char *name, *type, *help;
} DB_METRICS[] = {
    {"annals_appends_total", "counter",
     "Acknowledged append requests since start (appends/commits is the group-commit factor)."},
    {"annals_commits_total", "counter", "Durable write commits (one log fdatasync each)."},
    {"annals_events", "gauge", "Events stored (the head position)."},
    {"annals_streams", "gauge", "Streams."},
    {"annals_fsyncs_total", "counter", "Event-log fsyncs since start."},
    {"annals_fsync_seconds_total", "counter", "Time spent in event-log fsyncs."},
    {"annals_commit_seconds_total", "counter", "Time spent in durable commits."},
    {"annals_bytes_on_disk", "gauge", "Bytes of the database's index file."},
    {"annals_index_lag_events", "gauge", "Events not indexed yet."},
    {"annals_writer_queue_depth", "gauge", "Appends queued for the writer."},
    {"annals_index_commits_total", "counter", "Index transactions since start."},
    {"annals_compactions_total", "counter", "Compactions that rewrote the log since start."},
    {"annals_compaction_reclaimed_bytes_total", "counter",
     "Log bytes reclaimed by compactions since start."},
};
enum { NDB_METRICS = sizeof DB_METRICS / sizeof DB_METRICS[0] };

/* One database's values, in DB_METRICS order. Returns false when it is gone. */
static bool db_metric_values(struct gate_call *c, const char *name, double v[NDB_METRICS])
{
    struct db *db;
    struct db_info in;
    struct compact_status cs;
    if (engine_db_acquire(api_of(c)->engine, name, strlen(name), &db) != 0) {
        return false;
    }
    int rc = engine_db_info(db, &in);
    engine_compact_status(db, &cs);
    engine_db_release(db);
    double vals[NDB_METRICS] = {
        (double)in.appends, (double)in.commits, (double)in.head, (double)in.streams,
        (double)in.syncs, (double)in.sync_ns / 1e9, (double)in.commit_ns / 1e9,
        (double)in.file_bytes, (double)(in.head - in.indexed), (double)in.queue_depth,
        (double)in.index_commits, (double)cs.runs, (double)cs.reclaimed_bytes};
    memcpy(v, vals, sizeof vals);
    return rc == 0;
}

/* Appends every per-database family once (HELP, TYPE, then one series per database). */
static void db_metrics(struct gate_call *c, struct buf *b)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    double(*vals)[NDB_METRICS] = xcalloc(n ? n : 1, sizeof(*vals));
    bool *shown = xcalloc(n ? n : 1, sizeof(*shown));
    for (size_t i = 0; i < n; i++) {
        bool visible = !(c->authed && c->key.database[0] && strcmp(c->key.database, names[i]));
        shown[i] = visible && db_metric_values(c, names[i], vals[i]);
    }
    for (size_t m = 0; m < NDB_METRICS; m++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", DB_METRICS[m].name, DB_METRICS[m].help,
                   DB_METRICS[m].name, DB_METRICS[m].type);
        for (size_t i = 0; i < n; i++) {
            if (shown[i]) {
                buf_printf(b, "%s{database=\"%s\"} %.17g\n", DB_METRICS[m].name, names[i],
                           vals[i][m]);
            }
        }
    }
    free(shown);
    free(vals);
    engine_names_free(names, n);
}

static void metrics(struct gate_call *c)
{
    size_t nroutes = gate_route_count(c->gate);
    nroutes = nroutes < METRICS_ROUTES ? nroutes : METRICS_ROUTES;
    char(*text)[112] = xcalloc(nroutes ? nroutes : 1, sizeof(*text));
    const char **labels = xcalloc(nroutes ? nroutes : 1, sizeof(*labels));
    for (size_t i = 0; i < nroutes; i++) {
        gate_route_label(c->gate, (int)i, text[i], sizeof text[i]);
        labels[i] = text[i];
    }
    struct buf b;
    buf_init(&b);
    metrics_render_requests(api_of(c)->metrics, labels, (int)nroutes, &b);
    free(labels);
    free(text);
    db_metrics(c, &b);
    struct http_server *srv = __atomic_load_n(&api_of(c)->srv, __ATOMIC_ACQUIRE);
    buf_printf(&b, "# HELP annals_open_connections Open client connections.\n"
                   "# TYPE annals_open_connections gauge\n"
                   "annals_open_connections %u\n"
                   "# HELP annals_subscribers Live subscribers (SSE, WebSocket).\n"
                   "# TYPE annals_subscribers gauge\n"
                   "annals_subscribers %u\n"
                   "# HELP annals_uptime_seconds Seconds since the server started.\n"
                   "# TYPE annals_uptime_seconds gauge\n"
                   "annals_uptime_seconds %.3f\n",
               srv ? http_server_connections(srv) : 0, live_count(api_of(c)->live),
               (double)(time_now_us() - api_of(c)->started_us) / 1e6);
    http_respond(c->req, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}

void api_observe(void *arg, struct http_req *req, int tag, unsigned status, uint64_t ns)
{
    struct api *api = arg;
    metrics_observe(api->metrics, tag, status, ns);
    enum log_level lvl = status >= 500 ? LOG_WARN : LOG_DEBUG;
    if (log_enabled(lvl) && !req) {
        log_request(lvl, "", "", "", 0, status, 0); /* framing or limit errors of the HTTP layer */
    } else if (log_enabled(lvl)) {
        struct slice path = http_req_path(req);
        log_request(lvl, http_req_request_id(req), http_req_method(req), path.ptr, path.len,
                    status, (double)ns / 1e6);
    }
}
