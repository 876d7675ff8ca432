/* The native API's routes: the query parameters of each route, the one route table (which
 * the router, the parameter check, /metrics and the OpenAPI document all read), the mount
 * descriptor, the request helpers the handlers share, and the handlers that only hand a
 * request to another module of api/ (keys, durable subscriptions, webhooks, backup, the
 * OpenAPI document). The other handlers live in status.c, databases.c, reads.c, live_api.c
 * and writes.c (native_int.h). Handlers validate input completely before calling the
 * engine. */
#include "api/native_int.h"

#include <string.h>

#include "api/backup_api.h"
#include "api/groups_api.h"
#include "api/keys_api.h"
#include "api/webhooks_api.h"
#include "auth/keys.h"
#include "engine/canon.h"
#include "gate/route.h"
#include "http/server.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "util/buf.h"

static void openapi(struct gate_call *c);
static void whoami(struct gate_call *c);
static void keys_list(struct gate_call *c);
static void keys_create(struct gate_call *c);
static void keys_revoke(struct gate_call *c);
static void keys_rotate(struct gate_call *c);
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
static const struct route_param P_PROJ_STATE[] = {
    {"minPosition", PARAM_POSITIVE, "Answer once the projection has applied this position "
     "(read your own writes): it waits up to timeoutMs, then answers 202", NULL},
    {"timeoutMs", PARAM_INTEGER, "How long to wait for minPosition, 0 to 30000 (default 5000)",
     NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_PROJ_KEYS[] = {
    {"prefix", PARAM_STRING, "Only keys that start so", NULL},
    {"after", PARAM_STRING, "Keys after this one (the previous page's next)", NULL},
    P_LIMIT,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_PROJ_CHANGES[] = {
    {"after", PARAM_INTEGER, "Changes after this sequence (0: from the first)", NULL},
    P_LIMIT,
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_PROJ_LIVE[] = {
    {"after", PARAM_INTEGER, "Changes after this sequence (0: from the first)", NULL},
    {"api_key", PARAM_STRING, "The API key (EventSource sends no headers)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_DRY_RUN[] = {
    {"dryRun", PARAM_BOOLEAN, "Decide, write nothing: answer the events and conditions", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_RETURN_STATE[] = {
    {"returnState", PARAM_BOOLEAN, "Answer the stream's state too, from its category's reducer",
     NULL},
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
    {"GET", "", api_root, 0, NEED_NONE, "getIndex", "What this server is, and where its API "
     "document is", NULL, NULL, "Index", 200},
    {"GET", "health", api_health, 0, NEED_NONE, "getHealth", "Liveness", NULL, NULL, "Health", 200},
    {"GET", "health/detailed", api_health_detailed, 0, NEED_ANY, "getHealthDetailed",
     "Storage status, uptime, each database's head and writer queue", NULL, NULL,
     "HealthDetailed", 200},
    {"GET", "v1/openapi.json", openapi, 0, NEED_NONE, "getOpenApi",
     "This API as an OpenAPI 3.1 document", NULL, NULL, "OpenApiDocument", 200},
    {"GET", "metrics", api_metrics_get, 0, NEED_ANY, "getMetrics",
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
    {"GET", "v1/databases", api_db_list, 0, NEED_ANY, "listDatabases", "List databases", NULL, NULL,
     "DatabaseList", 200},
    {"POST", "v1/databases", api_db_create, ROUTE_ALL_DBS, NEED_ADMIN, "createDatabase",
     "Create a database", NULL, "DatabaseCreate", "DatabaseName", 201},
    {"GET", "v1/databases/{db}", api_db_get, DB, NEED_READ, "getDatabase",
     "Database statistics and settings", NULL, NULL, "Database", 200},
    {"PATCH", "v1/databases/{db}", api_db_update, DB, NEED_ADMIN, "updateDatabase",
     "Change a database's description and settings", NULL, "DatabaseUpdate", "Database", 200},
    {"DELETE", "v1/databases/{db}", api_db_delete, 0, NEED_ADMIN, "deleteDatabase",
     "Delete a database", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/compaction", api_compact_get, DB, NEED_READ, "getCompaction",
     "Compaction status: log generation, space reclaimed, the last run", NULL, NULL,
     "CompactionStatus", 200},
    {"POST", "v1/databases/{db}/compaction", api_compact_start, DB | ROUTE_BODY_OPTIONAL,
     NEED_ADMIN, "startCompaction",
     "Compact the log now: reclaim the space of deleted and expired events", NULL,
     "CompactionRequest", "CompactionStatus", 202},
    {"GET", "v1/connections", api_live_conns, 0, NEED_ADMIN, "listConnections",
     "Open live subscriptions", NULL, NULL, "ConnectionList", 200},
    {"DELETE", "v1/connections/{id}", api_live_conn_close, 0, NEED_ADMIN, "closeConnection",
     "Close a live subscription", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/events", api_log_read, DB, NEED_READ, "readLog",
     "Read or query the log", P_LOG, NULL, "EventPage", 200},
    {"GET", "v1/databases/{db}/events/live", api_log_live, LIVE, NEED_READ, "subscribeLog",
     "Subscribe to the log (Server-Sent Events, or a WebSocket): history, then live", P_LIVE,
     NULL, "EventStream", 200},
    {"POST", "v1/databases/{db}/events", api_multi_append, DB | IDEM | DUP, NEED_WRITE,
     "appendMulti",
     "Append to several streams, or stream-less events, with conditions", NULL, "MultiAppend",
     "MultiAppendResult", 201},
    {"POST", "v1/databases/{db}/query", api_log_query, DB | ROUTE_READ_BODY, NEED_READ, "queryLog",
     "Query the log (JSON body)", NULL, "Query", "EventPage", 200},
    {"GET", "v1/databases/{db}/streams", api_streams_list, DB, NEED_READ, "listStreams",
     "List streams", P_STREAM_LIST, NULL, "StreamList", 200},
    {"GET", "v1/databases/{db}/events/{position}", api_event_get, DB, NEED_READ, "getEvent",
     "One event by position", NULL, NULL, "Event", 200},
    {"GET", "v1/databases/{db}/streams/{stream}", api_stream_get, DB, NEED_READ, "getStream",
     "Stream info", P_AS_OF_ONLY, NULL, "Stream", 200},
    {"DELETE", "v1/databases/{db}/streams/{stream}", api_stream_delete, DB | IDEM, NEED_WRITE,
     "deleteStream", "Delete a stream (soft, or hard with hard=true)", P_HARD, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/streams/{stream}/metadata", api_meta_read, DB, NEED_READ,
     "getStreamMetadata", "A stream's lifecycle settings", NULL, NULL, "StreamMetadata", 200},
    {"PUT", "v1/databases/{db}/streams/{stream}/metadata", api_meta_write, DB | IDEM, NEED_WRITE,
     "setStreamMetadata", "Set a stream's lifecycle settings", NULL, "StreamSettings",
     "StreamMetadataWritten", 200},
    {"GET", "v1/databases/{db}/streams/{stream}/events", api_stream_read, DB, NEED_READ,
     "readStream", "Read a stream", P_STREAM_READ, NULL, "StreamPage", 200},
    {"GET", "v1/databases/{db}/streams/{stream}/events/live", api_stream_live, LIVE, NEED_READ,
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
    {"POST", "v1/databases/{db}/streams/{stream}/events", api_stream_append, DB | IDEM | DUP,
     NEED_WRITE,
     "appendStream", "Append to a stream", P_RETURN_STATE, "Append", "AppendResult", 201},
    {"GET", "v1/databases/{db}/components", api_comp_list, DB, NEED_READ, "listComponents",
     "List the user code deployed to a database", NULL, NULL, "ComponentList", 200},
    {"GET", "v1/databases/{db}/components/{name}", api_comp_get, DB, NEED_READ, "getComponent",
     "A deployed component with its source", NULL, NULL, "ComponentWithSource", 200},
    {"PUT", "v1/databases/{db}/components/{name}", api_comp_put, DB | ROUTE_REPLACE_200,
     NEED_ADMIN,
     "deployComponent", "Deploy a component (reducer, projection, view or command handler); "
     "a new version of an existing name replaces it", NULL, "ComponentDeploy", "Component",
     201},
    {"DELETE", "v1/databases/{db}/components/{name}", api_comp_delete, DB, NEED_ADMIN,
     "removeComponent", "Remove a component", NULL, NULL, NULL, 204},
    {"GET", "v1/databases/{db}/streams/{stream}/state", api_stream_state, DB, NEED_READ,
     "getStreamState", "A stream's state, computed by the reducer of its category",
     P_AS_OF_ONLY, NULL, "StreamState", 200},
    {"GET", "v1/databases/{db}/views/{name}", api_view_get, DB | ROUTE_OPEN_QUERY, NEED_READ,
     "getView", "A view computed for the given parameters (every query parameter but asOf and "
     "asOfTime is one, as a string)", P_AS_OF_ONLY, NULL, "ViewResult", 200},
    {"GET", "v1/databases/{db}/projections/{name}", api_proj_get, DB | ROUTE_PENDING_202,
     NEED_READ,
     "getProjection", "A projection's status: catching_up, live or failed (with the error "
     "and the event), its checkpoint and lag", NULL, NULL, "ProjectionStatus", 200},
    {"GET", "v1/databases/{db}/projections/{name}/state/{key}", api_proj_state,
     DB | ROUTE_PENDING_202, NEED_READ,
     "getProjectionState", "The state a projection holds under a key (202 while it catches "
     "up; with minPosition, once it has applied that position)", P_PROJ_STATE, NULL,
     "ProjectionState", 200},
    {"GET", "v1/databases/{db}/projections/{name}/keys", api_proj_keys, DB | ROUTE_PENDING_202,
     NEED_READ,
     "listProjectionKeys", "The keys a projection holds state under, in order", P_PROJ_KEYS,
     NULL, "ProjectionKeys", 200},
    {"GET", "v1/databases/{db}/projections/{name}/changes", api_proj_changes,
     DB | ROUTE_PENDING_202, NEED_READ,
     "listProjectionChanges", "A projection's state changes, by sequence", P_PROJ_CHANGES,
     NULL, "ProjectionChanges", 200},
    {"GET", "v1/databases/{db}/projections/{name}/changes/live", api_proj_live,
     LIVE | ROUTE_PENDING_202, NEED_READ, "subscribeProjectionChanges",
     "A projection's state changes as they happen (Server-Sent Events, or a WebSocket), "
     "after a sequence", P_PROJ_LIVE, NULL, "EventStream", 200},
    {"POST", "v1/databases/{db}/projections/{name}/webhook/rotate", api_proj_hook_rotate,
     DB | ROUTE_BODY_OPTIONAL, NEED_ADMIN, "rotateProjectionWebhookSecret",
     "Replace the own secret of a projection's webhook (isolateSecret; the old one signs "
     "during a grace period)", NULL, "WebhookRotate", "ProjectionSecret", 200},
    {"POST", "v1/databases/{db}/projection-webhooks/rotate", api_proj_hooks_rotate,
     DB | ROUTE_BODY_OPTIONAL, NEED_ADMIN, "rotateProjectionWebhooksSecret",
     "Replace the database's shared secret of projection webhooks (the old one signs during a "
     "grace period)", NULL, "WebhookRotate", "ProjectionSecret", 200},
    {"POST", "v1/databases/{db}/commands/{name}", api_command, DB | ROUTE_REPLACE_200,
     NEED_WRITE, "runCommand", "Run a command handler: append what it decides (with the "
     "conditions its reads imply), or with dryRun=true say what it would", P_DRY_RUN,
     "CommandRequest", "CommandResult", 201},
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

/* ---- request helpers (native_int.h) ---- */

bool api_stream_name(struct gate_call *c, struct slice *out)
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

bool api_user_stream_name(struct gate_call *c, struct slice *out)
{
    if (!api_stream_name(c, out)) {
        return false;
    }
    if (out->ptr[0] == '$') {
        out_error(c->req, 400, "invalid_name", "stream names starting with $ are reserved",
                  "stream");
        return false;
    }
    return true;
}

bool api_key_sees_db(const struct gate_call *c, const char *name)
{
    return !(c->authed && c->key.database[0] && strcmp(c->key.database, name) != 0);
}

void api_respond_no_content(struct http_req *req)
{
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
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
