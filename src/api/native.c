/* Native API routes. Each route is a (method, path pattern) pair; the path is split into
 * percent-decoded segments and matched against the table, so a 405 can list what a path
 * allows. Handlers validate input completely before calling the engine. */
#include "api/native.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/append.h"
#include "api/backup_api.h"
#include "api/groups_api.h"
#include "api/live.h"
#include "api/keys_api.h"
#include "api/metrics.h"
#include "api/out.h"
#include "api/parse.h"
#include "api/qparse.h"
#include "api/ratelimit.h"
#include "api/webhooks_api.h"
#include "auth/keys.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

enum { MAX_SEGS = 8 };

/* A request's decoded path and its route context. */
struct call {
    struct api *api;              /* borrowed */
    struct http_req *req;         /* borrowed */
    char *seg[MAX_SEGS];          /* owned decoded segments */
    size_t seg_len[MAX_SEGS];     /* byte lengths (segments may hold any byte but NUL) */
    size_t nseg;                  /* segments used */
    struct db *db;                /* acquired database, or NULL */
    bool authed;                  /* key holds the caller's verified key */
    struct api_key key;           /* valid when authed */
};

typedef void route_fn(struct call *c);

/* What a route asks of the caller's key (each level includes the ones before it). */
enum need { NEED_NONE, NEED_ANY, NEED_READ, NEED_WRITE, NEED_ADMIN };

struct route {
    const char *method;    /* "GET", "POST", ... */
    const char *pattern;   /* segments, '*' = any one segment */
    route_fn *fn;          /* handler */
    bool needs_db;         /* segment 2 names a database to acquire */
    enum need need;        /* scope the key needs (segment 2, when it names a database,
                              must be the key's database unless the key is for all) */
    const char *summary;   /* one line for the OpenAPI document */
};

static void db_list(struct call *c);
static void db_create(struct call *c);
static void db_get(struct call *c);
static void db_delete(struct call *c);
static void log_read(struct call *c);
static void log_query(struct call *c);
static void streams_list(struct call *c);
static void event_get(struct call *c);
static void stream_get(struct call *c);
static void stream_read(struct call *c);
static void stream_append(struct call *c);
static void stream_delete(struct call *c);
static void meta_read(struct call *c);
static void meta_write(struct call *c);
static void multi_append(struct call *c);
static void health(struct call *c);
static void health_detailed(struct call *c);
static void metrics(struct call *c);
static void openapi(struct call *c);
static void whoami(struct call *c);
static void keys_list(struct call *c);
static void keys_create(struct call *c);
static void keys_revoke(struct call *c);
static void keys_rotate(struct call *c);
static void log_live(struct call *c);
static void stream_live(struct call *c);
static void live_conns(struct call *c);
static void live_conn_close(struct call *c);
static void sub_create(struct call *c);
static void sub_list(struct call *c);
static void sub_get(struct call *c);
static void sub_delete(struct call *c);
static void sub_pull(struct call *c);
static void sub_ack(struct call *c);
static void sub_nack(struct call *c);
static void sub_parked(struct call *c);
static void sub_replay(struct call *c);
static void hook_create(struct call *c);
static void hook_list(struct call *c);
static void hook_get(struct call *c);
static void hook_delete(struct call *c);
static void hook_rotate(struct call *c);
static void compact_get(struct call *c);
static void compact_start(struct call *c);
static void compaction_json(struct db *db, struct buf *b);
static void backup(struct call *c);

static const struct route ROUTES[] = {
    {"GET", "health", health, false, NEED_NONE, "Liveness"},
    {"GET", "health/detailed", health_detailed, false, NEED_ANY,
     "Storage status, uptime, each database's head and writer queue"},
    {"GET", "v1/openapi.json", openapi, false, NEED_NONE, "This API as an OpenAPI 3.1 document"},
    {"GET", "metrics", metrics, false, NEED_ANY, "Counters in the Prometheus text format"},
    {"GET", "v1/whoami", whoami, false, NEED_ANY, "The caller's key: scope and database"},
    {"GET", "v1/keys", keys_list, false, NEED_ADMIN, "List API keys"},
    {"POST", "v1/keys", keys_create, false, NEED_ADMIN, "Create an API key"},
    {"DELETE", "v1/keys/*", keys_revoke, false, NEED_ADMIN, "Revoke an API key (now or at)"},
    {"POST", "v1/keys/*/rotate", keys_rotate, false, NEED_ADMIN, "Replace an API key"},
    {"GET", "v1/databases", db_list, false, NEED_ANY, "List databases"},
    {"POST", "v1/databases", db_create, false, NEED_ADMIN, "Create a database"},
    {"GET", "v1/databases/*", db_get, true, NEED_READ, "Database statistics and settings"},
    {"DELETE", "v1/databases/*", db_delete, false, NEED_ADMIN, "Delete a database"},
    {"GET", "v1/databases/*/compaction", compact_get, true, NEED_READ,
     "Compaction status: log generation, space reclaimed, the last run"},
    {"POST", "v1/databases/*/compaction", compact_start, true, NEED_ADMIN,
     "Compact the log now: reclaim the space of deleted and expired events"},
    {"GET", "v1/connections", live_conns, false, NEED_ADMIN, "Open live subscriptions"},
    {"DELETE", "v1/connections/*", live_conn_close, false, NEED_ADMIN,
     "Close a live subscription"},
    {"GET", "v1/databases/*/events", log_read, true, NEED_READ, "Read or query the log"},
    {"GET", "v1/databases/*/events/live", log_live, true, NEED_READ,
     "Subscribe to the log (Server-Sent Events): history, then live"},
    {"POST", "v1/databases/*/events", multi_append, true, NEED_WRITE,
     "Append to several streams, or stream-less events, with conditions"},
    {"POST", "v1/databases/*/query", log_query, true, NEED_READ, "Query the log (JSON body)"},
    {"GET", "v1/databases/*/streams", streams_list, true, NEED_READ, "List streams"},
    {"GET", "v1/databases/*/events/*", event_get, true, NEED_READ, "One event by position"},
    {"GET", "v1/databases/*/streams/*", stream_get, true, NEED_READ, "Stream info"},
    {"DELETE", "v1/databases/*/streams/*", stream_delete, true, NEED_WRITE,
     "Delete a stream (soft, or hard with hard=true)"},
    {"GET", "v1/databases/*/streams/*/metadata", meta_read, true, NEED_READ,
     "A stream's lifecycle settings"},
    {"PUT", "v1/databases/*/streams/*/metadata", meta_write, true, NEED_WRITE,
     "Set a stream's lifecycle settings"},
    {"GET", "v1/databases/*/streams/*/events", stream_read, true, NEED_READ, "Read a stream"},
    {"GET", "v1/databases/*/streams/*/events/live", stream_live, true, NEED_READ,
     "Subscribe to a stream (Server-Sent Events)"},
    {"POST", "v1/databases/*/subscriptions", sub_create, true, NEED_WRITE,
     "Create a durable subscription (consumer group)"},
    {"GET", "v1/databases/*/subscriptions", sub_list, true, NEED_READ,
     "List durable subscriptions"},
    {"GET", "v1/databases/*/subscriptions/*", sub_get, true, NEED_READ,
     "A durable subscription's state"},
    {"DELETE", "v1/databases/*/subscriptions/*", sub_delete, true, NEED_WRITE,
     "Delete a durable subscription"},
    {"POST", "v1/databases/*/subscriptions/*/pull", sub_pull, true, NEED_READ,
     "Lease a batch of events to a consumer"},
    {"POST", "v1/databases/*/subscriptions/*/ack", sub_ack, true, NEED_READ,
     "Acknowledge events"},
    {"POST", "v1/databases/*/subscriptions/*/nack", sub_nack, true, NEED_READ,
     "Reject events (redeliver or park)"},
    {"GET", "v1/databases/*/subscriptions/*/parked", sub_parked, true, NEED_READ,
     "Parked (dead-letter) events"},
    {"POST", "v1/databases/*/subscriptions/*/replay", sub_replay, true, NEED_WRITE,
     "Deliver parked events again"},
    {"POST", "v1/databases/*/webhooks", hook_create, true, NEED_ADMIN,
     "Create a webhook (its secret is shown once)"},
    {"GET", "v1/databases/*/webhooks", hook_list, true, NEED_ADMIN, "List webhooks"},
    {"GET", "v1/databases/*/webhooks/*", hook_get, true, NEED_ADMIN,
     "A webhook with its delivery log and parked batches"},
    {"DELETE", "v1/databases/*/webhooks/*", hook_delete, true, NEED_ADMIN, "Delete a webhook"},
    {"POST", "v1/databases/*/webhooks/*/rotate", hook_rotate, true, NEED_ADMIN,
     "Replace a webhook's secret (the old one signs during a grace period)"},
    {"POST", "v1/databases/*/streams/*/events", stream_append, true, NEED_WRITE,
     "Append to a stream"},
    {"GET", "v1/backup", backup, false, NEED_ADMIN,
     "Stream a consistent backup of every database (application/vnd.annals.backup)"},
};

/* ---- path handling ---- */

static int split_path(struct call *c, struct slice path)
{
    size_t i = 0;
    while (i < path.len && path.ptr[i] == '/') {
        i++;
    }
    while (i < path.len) {
        size_t start = i;
        while (i < path.len && path.ptr[i] != '/') {
            i++;
        }
        if (c->nseg == MAX_SEGS) {
            return ERR_NOTFOUND;
        }
        struct buf b;
        buf_init(&b);
        if (http_url_decode(path.ptr + start, i - start, false, &b) != 0) {
            buf_fini(&b);
            return ERR_INVALID;
        }
        c->seg[c->nseg] = buf_steal(&b, &c->seg_len[c->nseg]);
        c->nseg++;
        if (i < path.len) {
            i++; /* the '/' */
            if (i == path.len) {
                return ERR_NOTFOUND; /* trailing slash */
            }
        }
    }
    return 0;
}

static size_t pattern_segments(const char *pat)
{
    size_t n = 1;
    for (const char *p = pat; *p; p++) {
        n += *p == '/';
    }
    return n;
}

enum { NROUTES = sizeof ROUTES / sizeof ROUTES[0] };
static size_t route_segments[NROUTES]; /* segments of each pattern, set once */
static pthread_once_t routes_once = PTHREAD_ONCE_INIT;

static void count_route_segments(void)
{
    for (size_t i = 0; i < NROUTES; i++) {
        route_segments[i] = pattern_segments(ROUTES[i].pattern);
    }
}

static bool pattern_match(const struct call *c, const char *pat)
{
    size_t k = 0;
    const char *p = pat;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (k >= c->nseg) {
            return false;
        }
        bool any = len == 1 && p[0] == '*';
        if (!any && (c->seg_len[k] != len || memcmp(c->seg[k], p, len) != 0)) {
            return false;
        }
        k++;
        p += len + (end ? 1 : 0);
    }
    return k == c->nseg;
}

static void call_fini(struct call *c)
{
    for (size_t i = 0; i < c->nseg; i++) {
        free(c->seg[i]);
    }
    engine_db_release(c->db);
}

static struct slice seg(const struct call *c, size_t i)
{
    struct slice s = {c->seg[i], c->seg_len[i]};
    return s;
}

static void answer_405(struct call *c)
{
    char allow[64] = "";
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        if (pattern_match(c, ROUTES[i].pattern)) {
            if (allow[0]) {
                strcat(allow, ", ");
            }
            strcat(allow, ROUTES[i].method);
        }
    }
    http_add_header(c->req, "Allow", allow);
    out_error(c->req, 405, "method_not_allowed", "method not allowed on this path", NULL);
}

static const struct route *find_route(struct call *c, bool *path_known)
{
    pthread_once(&routes_once, count_route_segments);
    const char *m = http_req_method(c->req);
    bool head = strcmp(m, "HEAD") == 0;
    *path_known = false;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        if (route_segments[i] == c->nseg && pattern_match(c, ROUTES[i].pattern)) {
            *path_known = true;
            if (strcmp(ROUTES[i].method, m) == 0 || (head && !strcmp(ROUTES[i].method, "GET"))) {
                return &ROUTES[i];
            }
        }
    }
    return NULL;
}

static bool acquire_db(struct call *c)
{
    struct slice name = seg(c, 2);
    if (!engine_db_name_ok(name.ptr, name.len)) {
        out_error(c->req, 400, "invalid_name",
                  "database names match [a-z0-9][a-z0-9-]{0,62}", "database");
        return false;
    }
    if (engine_db_acquire(c->api->engine, name.ptr, name.len, &c->db) != 0) {
        out_error(c->req, 404, "database_not_found", "no such database", "database");
        return false;
    }
    return true;
}

/* The key presented as "Authorization: Bearer <key>" or "X-API-Key: <key>" (or, when
 * in_query, as the api_key query parameter), or NULL. */
static const char *presented_key(struct http_req *req, bool in_query)
{
    const char *q = in_query ? http_req_query(req, "api_key") : NULL;
    if (q) {
        return q;
    }
    const char *a = http_req_header(req, "Authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ') {
            a++;
        }
        return a;
    }
    return http_req_header(req, "X-API-Key");
}

static bool scope_covers(enum key_scope have, enum need need)
{
    return need <= NEED_ANY || (int)have >= (int)need - 1; /* READ=2->1, WRITE->2, ADMIN->3 */
}

/* Checks the caller's key against route r. Answers 401/403/404 and returns false when it may
 * not proceed. A key bound to another database gets 404 for it (no existence leak). */
static bool authorize(struct call *c, const struct route *r)
{
    if (r->need == NEED_NONE || !__atomic_load_n(&c->api->auth_required, __ATOMIC_ACQUIRE)) {
        return true;
    }
    /* browsers' EventSource sends no headers: subscriptions also take ?api_key= */
    const char *k = presented_key(c->req, r->fn == log_live || r->fn == stream_live);
    if (!k || keyring_verify(c->api->keys, k, strlen(k), time_now_us(), &c->key) != 0) {
        http_add_header(c->req, "WWW-Authenticate", "Bearer realm=\"annals\"");
        out_error(c->req, 401, "unauthorized",
                  k ? "unknown, expired or revoked API key" : "an API key is required",
                  "Authorization");
        return false;
    }
    c->authed = true;
    bool db_route = c->nseg >= 3 && strcmp(c->seg[1], "databases") == 0;
    if (db_route && c->key.database[0] && strcmp(c->key.database, c->seg[2]) != 0) {
        out_error(c->req, 404, "database_not_found", "no such database", "database");
        return false;
    }
    bool all_dbs_needed = (!strcmp(r->pattern, "v1/databases") && !strcmp(r->method, "POST")) ||
                          r->fn == backup;
    if (!scope_covers(c->key.scope, r->need) || (all_dbs_needed && c->key.database[0])) {
        out_error(c->req, 403, "forbidden", "this API key's scope does not allow this request",
                  NULL);
        return false;
    }
    return true;
}

/* ---- request ids and CORS ---- */

/* Sets X-Request-Id: the client's (a token of at most 64 characters) or a new one. */
static void request_id(struct http_req *req)
{
    const char *given = http_req_header(req, "X-Request-Id");
    bool ok = given && *given && strlen(given) <= 64;
    for (const char *p = given; ok && *p; p++) {
        ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             *p == '-' || *p == '_' || *p == '.';
    }
    char id[40];
    if (!ok) {
        /* unique per process: a random prefix drawn at the first request, then a counter */
        static uint64_t counter, prefix;
        uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        if (!__atomic_load_n(&prefix, __ATOMIC_RELAXED)) {
            uint8_t u[16];
            uuid_v7(time_now_us(), u);
            uint64_t p = 0;
            memcpy(&p, u + 8, sizeof p);
            __atomic_store_n(&prefix, p | 1, __ATOMIC_RELAXED);
        }
        static const char HEX[] = "0123456789abcdef";
        uint64_t p = __atomic_load_n(&prefix, __ATOMIC_RELAXED);
        for (int i = 0; i < 16; i++) {
            id[i] = HEX[(p >> (60 - 4 * i)) & 15];
        }
        size_t o = 16;
        id[o++] = '-';
        char digits[17];
        int nd = 0;
        do {
            digits[nd++] = HEX[n & 15];
            n >>= 4;
        } while (n);
        while (nd) {
            id[o++] = digits[--nd];
        }
        id[o] = '\0';
        given = id;
    }
    http_set_request_id(req, given);
}

/* The request's Origin when the configuration allows it (dev mode: any), else NULL. */
static const char *allowed_origin(const struct api *api, struct http_req *req)
{
    const char *origin = http_req_header(req, "Origin");
    const char *list = api->cors_origins;
    bool dev = !__atomic_load_n(&api->auth_required, __ATOMIC_ACQUIRE);
    if (!origin || (!list && !dev)) {
        return NULL;
    }
    if (!list) { /* development mode: pages served from this machine only */
        static const char *const LOCAL[] = {"http://localhost", "http://127.0.0.1",
                                            "https://localhost", "https://127.0.0.1"};
        for (size_t i = 0; i < sizeof LOCAL / sizeof LOCAL[0]; i++) {
            size_t n = strlen(LOCAL[i]);
            if (strncmp(origin, LOCAL[i], n) == 0 && (origin[n] == '\0' || origin[n] == ':')) {
                return origin;
            }
        }
        return NULL;
    }
    if (strcmp(list, "*") == 0) {
        return origin;
    }
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, origin, n) == 0) {
            return origin;
        }
        p += len + (comma ? 1 : 0);
    }
    return NULL;
}

static const char CORS_HEADERS[] = "Authorization, Content-Type, X-API-Key, Idempotency-Key, "
                                   "X-Idempotency-Key, X-Request-Id, Last-Event-ID";

/* Adds the CORS answer headers; answers a preflight (OPTIONS) itself and returns true. */
static bool cors(const struct api *api, struct http_req *req)
{
    const char *origin = allowed_origin(api, req);
    bool preflight = strcmp(http_req_method(req), "OPTIONS") == 0;
    if (origin) {
        http_add_header(req, "Access-Control-Allow-Origin", origin);
        http_add_header(req, "Vary", "Origin");
        http_add_header(req, "Access-Control-Expose-Headers",
                        "X-Request-Id, X-Idempotency-Replayed, Location, Allow");
    }
    if (!preflight) {
        return false;
    }
    if (origin) {
        http_add_header(req, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
        http_add_header(req, "Access-Control-Allow-Headers", CORS_HEADERS);
        http_add_header(req, "Access-Control-Max-Age", "600");
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
    return true;
}

/* Applies the caller's rate limit (its key's, else its database's, else the server's) and
 * sets the X-RateLimit-* headers. Answers 429 and returns false when the bucket is empty. */
static bool rate_ok(struct call *c)
{
    uint32_t rate = c->api->rate_limit;
    uint32_t db_rate = c->db ? engine_db_rate_limit(c->db) : 0;
    rate = db_rate ? db_rate : rate;
    rate = c->authed && c->key.rate_limit ? c->key.rate_limit : rate;
    if (!rate || !c->api->limiter) {
        return true;
    }
    char who[160];
    int n = snprintf(who, sizeof who, "%s%s|%s", c->authed ? "key:" : "ip:",
                     c->authed ? c->key.id : http_req_peer(c->req),
                     c->db ? engine_db_name(c->db) : "");
    double burst = c->api->rate_burst ? c->api->rate_burst : rate;
    struct rl_result rr;
    rl_take(c->api->limiter, who, (size_t)n, rate, burst, time_mono_ns(), &rr);
    char v[24];
    snprintf(v, sizeof v, "%u", rr.limit);
    http_add_header(c->req, "X-RateLimit-Limit", v);
    snprintf(v, sizeof v, "%u", rr.remaining);
    http_add_header(c->req, "X-RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%u", rr.reset_s);
    http_add_header(c->req, "X-RateLimit-Reset", v);
    if (rr.limited) {
        snprintf(v, sizeof v, "%u", rr.retry_after_s);
        http_add_header(c->req, "Retry-After", v);
        out_error(c->req, 429, "rate_limited", "too many requests; retry after Retry-After "
                  "seconds", NULL);
        return false;
    }
    return true;
}

/* Idempotency keys are kept by the database writes (need write): an administrative write with
 * one is refused rather than run without the promised protection. */
static bool idem_ok(struct call *c, const struct route *r)
{
    bool keeps = r->need != NEED_ADMIN && !strstr(r->pattern, "subscriptions");
    keeps = keeps && !strstr(r->pattern, "webhooks");
    if (keeps || strcmp(r->method, "GET") == 0 ||
        (!http_req_header(c->req, "Idempotency-Key") &&
         !http_req_header(c->req, "X-Idempotency-Key"))) {
        return true;
    }
    out_error(c->req, 400, "idempotency_not_supported",
              "idempotency keys are kept for database writes (appends, stream metadata and "
              "deletes), not for administrative or subscription requests",
              http_req_header(c->req, "Idempotency-Key") ? "Idempotency-Key"
                                                          : "X-Idempotency-Key");
    return false;
}

void api_handle(void *arg, struct http_req *req)
{
    struct call c = {.api = arg, .req = req};
    request_id(req);
    if (cors(c.api, req)) {
        return;
    }
    int rc = split_path(&c, http_req_path(req));
    bool known = false;
    const struct route *r = rc ? NULL : find_route(&c, &known);
    static const struct route ANY_KEY = {"", "", NULL, false, NEED_ANY, ""};
    if (r) {
        http_set_tag(req, (int)(r - ROUTES));
    }
    if (!r && !authorize(&c, &ANY_KEY)) {
        /* without a valid key, nothing tells which routes exist */
    } else if (rc == ERR_INVALID) {
        out_error(req, 400, "invalid_path", "the path has a bad percent-escape", NULL);
    } else if (!r && known) {
        answer_405(&c);
    } else if (!r) {
        out_error(req, 404, "not_found", "no such route", NULL);
    } else if (authorize(&c, r) && (!r->needs_db || acquire_db(&c)) && rate_ok(&c) &&
               idem_ok(&c, r)) {
        r->fn(&c);
    }
    call_fini(&c);
}

/* ---- helpers ---- */

/* Reads an optional unsigned query parameter. Answers 400 and returns false when bad. */
static bool query_u64(struct call *c, const char *name, uint64_t dflt, uint64_t *out)
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

static bool query_limit(struct call *c, size_t *out)
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

static bool query_direction(struct call *c, bool *backward)
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

static bool stream_name(struct call *c, struct slice *out)
{
    *out = seg(c, 4);
    if (!parse_name_ok(out->ptr, out->len, LIMIT_STREAM_NAME_BYTES)) {
        out_error(c->req, 400, "invalid_name",
                  "stream names are 1 to 256 bytes of UTF-8 without control characters",
                  "stream");
        return false;
    }
    return true;
}

/* stream_name, for the paths that write or configure a stream: names starting with '$' are
 * the server's ($dcb, $$<stream>) and answer 400. */
static bool user_stream_name(struct call *c, struct slice *out)
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

/* ---- health and databases ---- */

static void health(struct call *c)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"ok\",\"version\":\"%s\"}", c->api->version);
    out_json(c->req, 200, &b);
}

static int db_health(struct call *c, const char *name, struct buf *b, bool first)
{
    struct db *db;
    if (engine_db_acquire(c->api->engine, name, strlen(name), &db) != 0) {
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

static void health_detailed(struct call *c)
{
    size_t n;
    char **names = engine_db_names(c->api->engine, &n);
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
               failing ? "degraded" : "ok", c->api->version,
               (double)(time_now_us() - c->api->started_us) / 1e6, live_count(c->api->live),
               __atomic_load_n(&c->api->auth_required, __ATOMIC_ACQUIRE) ? "true" : "false",
               (int)dbs.len, dbs.ptr ? dbs.ptr : "");
    buf_fini(&dbs);
    out_json(c->req, 200, &b);
}

static void db_list(struct call *c)
{
    size_t n;
    char **names = engine_db_names(c->api->engine, &n);
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

static void db_create(struct call *c)
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
    if (parse_db_settings(root, &settings, &pe) != 0) {
        out_parse_error(c->req, &pe);
        json_decref(root);
        return;
    }
    int rc = s && engine_db_name_ok(s, len) ? engine_db_create(c->api->engine, s, len, &settings)
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

static void db_get(struct call *c)
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

static void compact_get(struct call *c)
{
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '{');
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

static void compact_start(struct call *c)
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

static void db_delete(struct call *c)
{
    struct slice name = seg(c, 2);
    if (!engine_db_name_ok(name.ptr, name.len)) {
        out_error(c->req, 400, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
                  "database");
        return;
    }
    http_defer(c->req);
    if (engine_db_delete(c->api->engine, name.ptr, name.len, on_deleted, c->req) != 0) {
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

/* Closes a page: `"],"<key>":<end>,"next":<cursor or null>}`. A full page (full) whose last
 * item (last) is not at the end of the range (first backward, end forward) has a next page. */
static void page_end(struct buf *b, const char *key, uint64_t end, uint64_t first, bool full,
                     uint64_t last, bool backward)
{
    bool more = full && (backward ? last > first : last < end);
    buf_adds(b, "],\"");
    buf_adds(b, key);
    buf_adds(b, "\":");
    buf_add_u64(b, end);
    buf_adds(b, ",\"next\":");
    if (more) {
        buf_add_u64(b, backward ? last - 1 : last + 1);
    } else {
        buf_adds(b, "null");
    }
    buf_addc(b, '}');
}

static const char *get_param(void *arg, const char *name)
{
    return http_req_query(arg, name);
}

/* Runs a parsed query and answers {"events","head","has_more","next"}. */
static void run_query(struct call *c, struct parsed_query *pq)
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
    buf_adds(&pg.b, res.next ? ",\"has_more\":true,\"next\":" : ",\"has_more\":false,\"next\":null");
    if (res.next) {
        buf_add_u64(&pg.b, res.next);
    }
    buf_addc(&pg.b, '}');
    out_json(c->req, 200, &pg.b);
}

static void log_read(struct call *c)
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

static void log_query(struct call *c)
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

/* Parameters of a query that mean nothing to a subscription (it runs forward, unbounded,
 * over the current log). */
static const char *const NOT_LIVE[] = {"to", "direction", "limit", "asOf", "asOfTime",
                                       "recordedFrom", "recordedTo"};

/* get_param without `from` (a subscription reads it itself). */
static const char *get_param_live(void *arg, const char *name)
{
    return strcmp(name, "from") == 0 ? NULL : http_req_query(arg, name);
}

/* The first position to deliver: after Last-Event-ID (a reconnect), else `from` (a position,
 * or "latest": only new events), else 1. Answers 400 and returns false when bad. */
static bool live_first(struct call *c, uint64_t *out)
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
static void live_start(struct call *c, const struct slice *stream)
{
    for (size_t i = 0; i < sizeof NOT_LIVE / sizeof NOT_LIVE[0]; i++) {
        if (http_req_query(c->req, NOT_LIVE[i])) {
            out_error(c->req, 400, "invalid_parameter",
                      "a live subscription reads forward from its start position: this "
                      "parameter does not apply", NOT_LIVE[i]);
            return;
        }
    }
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
    live_sse(c->api->live, c->req, c->db, &pq, first, label);
    c->db = NULL; /* the subscription holds the reference now */
    parsed_query_fini(&pq);
}

/* A WebSocket on a live path: its subscriptions come as messages. Answers 400 when the
 * request asked to upgrade but not as RFC 6455 says. */
static bool live_ws_start(struct call *c, const struct slice *stream)
{
    if (!http_req_header(c->req, "Upgrade")) {
        return false;
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
    live_ws(c->api->live, c->req, c->db, stream, label);
    c->db = NULL; /* the connection holds the reference now */
    return true;
}

static void log_live(struct call *c)
{
    if (!live_ws_start(c, NULL)) {
        live_start(c, NULL);
    }
}

static void stream_live(struct call *c)
{
    struct slice name;
    if (stream_name(c, &name) && !live_ws_start(c, &name)) {
        live_start(c, &name);
    }
}

static void live_conns(struct call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"connections\":");
    live_list(c->api->live, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

static void live_conn_close(struct call *c)
{
    uint64_t id;
    if (parse_u64(c->seg[2], &id) != 0 || live_close(c->api->live, id) != 0) {
        out_error(c->req, 404, "connection_not_found", "no open subscription with this id",
                  "id");
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(c->req, 204, &b, NULL);
}

/* ---- durable subscriptions (api/groups_api.c) ---- */

static void sub_create(struct call *c)
{
    groups_api_create(c->req, c->db);
}

static void sub_list(struct call *c)
{
    groups_api_list(c->req, c->db, NULL);
}

static void sub_get(struct call *c)
{
    groups_api_list(c->req, c->db, c->seg[4]);
}

static void sub_delete(struct call *c)
{
    groups_api_delete(c->req, c->db, c->seg[4]);
}

static void sub_pull(struct call *c)
{
    groups_api_pull(c->req, c->db, c->seg[4]);
}

static void sub_ack(struct call *c)
{
    groups_api_ack(c->req, c->db, c->seg[4], false);
}

static void sub_nack(struct call *c)
{
    groups_api_ack(c->req, c->db, c->seg[4], true);
}

static void sub_parked(struct call *c)
{
    groups_api_parked(c->req, c->db, c->seg[4]);
}

static void sub_replay(struct call *c)
{
    groups_api_replay(c->req, c->db, c->seg[4]);
}

/* ---- webhooks (api/webhooks_api.c) ---- */

static void hook_create(struct call *c)
{
    struct db *db = c->db;
    c->db = NULL; /* the creation holds the reference now */
    webhooks_api_create(c->req, c->api->engine, db);
}

static void hook_list(struct call *c)
{
    webhooks_api_list(c->req, c->db, NULL);
}

static void hook_get(struct call *c)
{
    webhooks_api_list(c->req, c->db, c->seg[4]);
}

static void hook_delete(struct call *c)
{
    webhooks_api_delete(c->req, c->db, c->seg[4]);
}

static void hook_rotate(struct call *c)
{
    webhooks_api_rotate(c->req, c->db, c->seg[4]);
}

static void event_get(struct call *c)
{
    uint64_t pos;
    if (parse_u64(c->seg[4], &pos) != 0 || pos == 0) {
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

static void streams_list(struct call *c)
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
    if (category && !parse_name_ok(category, strlen(category), LIMIT_STREAM_NAME_BYTES)) {
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

static void stream_get(struct call *c)
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

static void stream_read(struct call *c)
{
    struct slice name;
    uint64_t from;
    size_t limit;
    bool backward;
    if (!stream_name(c, &name) || !query_direction(c, &backward) ||
        !query_u64(c, "from", backward ? UINT64_MAX : 1, &from) || !query_limit(c, &limit)) {
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
    page_end(&pg.b, "version", s.version, first_visible, pg.count == limit, pg.last_ver,
             backward);
    out_json(c->req, 200, &pg.b);
}

/* ---- append ---- */

static void stream_append(struct call *c)
{
    struct slice name;
    if (!user_stream_name(c, &name) || !out_require_json(c->req)) {
        return;
    }
    struct db *db = c->db;
    c->db = NULL; /* the append holds the reference now */
    append_stream(c->req, db, name, &c->api->limits);
}

static void multi_append(struct call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_multi(c->req, db, &c->api->limits);
}

/* ---- stream lifecycle ---- */

static void stream_delete(struct call *c)
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

static void meta_read(struct call *c)
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

static void meta_write(struct call *c)
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

static const struct api_key *caller(const struct call *c)
{
    return c->authed ? &c->key : NULL;
}

static void whoami(struct call *c)
{
    keys_api_whoami(c->req, c->api, caller(c));
}

static void keys_list(struct call *c)
{
    keys_api_list(c->req, c->api, caller(c));
}

static void keys_create(struct call *c)
{
    if (out_require_json(c->req)) {
        keys_api_create(c->req, c->api, caller(c));
    }
}

static void keys_revoke(struct call *c)
{
    keys_api_revoke(c->req, c->api, caller(c), c->seg[2]);
}

static void keys_rotate(struct call *c)
{
    if (out_require_json(c->req)) {
        keys_api_rotate(c->req, c->api, caller(c), c->seg[2]);
    }
}

static void backup(struct call *c)
{
    backup_api_start(c->req, c->api->engine, c->api->version);
}

/* ---- the OpenAPI document, generated from the route table ---- */

/* The OpenAPI path of a route pattern: each '*' becomes the parameter named by the segment
 * before it. */
static void openapi_path(const char *pattern, struct buf *out, struct buf *params)
{
    static const struct {
        const char *after, *param;
    } NAMES[] = {{"databases", "db"}, {"streams", "stream"}, {"events", "position"},
                 {"keys", "id"}, {"connections", "id"}, {"subscriptions", "name"},
                 {"webhooks", "name"}};
    const char *prev = "", *p = pattern;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        buf_addc(out, '/');
        if (len == 1 && *p == '*') {
            const char *name = "param";
            for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
                name = strncmp(prev, NAMES[i].after, strlen(NAMES[i].after)) == 0 ? NAMES[i].param
                                                                                 : name;
            }
            buf_printf(out, "{%s}", name);
            buf_printf(params, "%s{\"name\":\"%s\",\"in\":\"path\",\"required\":true,"
                       "\"schema\":{\"type\":\"%s\"}}",
                       params->len ? "," : "", name, strcmp(name, "position") ? "string" : "integer");
        } else {
            buf_add(out, p, len);
        }
        prev = p;
        p += len + (end ? 1 : 0);
    }
}

static void openapi_operation(struct buf *b, const struct route *r)
{
    static const char *const NEED[] = {"none", "any", "read", "write", "admin"};
    struct buf path, params;
    buf_init(&path);
    buf_init(&params);
    openapi_path(r->pattern, &path, &params);
    char op[96];
    snprintf(op, sizeof op, "%s", r->method);
    for (char *q = op; *q; q++) {
        *q = (char)(*q - 'A' + 'a');
    }
    buf_printf(b, "\"%s\":{\"summary\":", op);
    buf_add_json_str(b, r->summary, strlen(r->summary));
    if (r->need == NEED_WRITE) { /* database writes keep idempotency keys */
        buf_adds(&params, params.len ? "," : "");
        buf_adds(&params, "{\"name\":\"Idempotency-Key\",\"in\":\"header\",\"required\":false,"
                          "\"description\":\"Replays the original answer for a retry (also "
                          "X-Idempotency-Key)\",\"schema\":{\"type\":\"string\","
                          "\"minLength\":1,\"maxLength\":255}}");
    }
    buf_printf(b, ",\"x-annals-scope\":\"%s\",\"parameters\":[%.*s]", NEED[r->need],
               (int)params.len, params.ptr ? params.ptr : "");
    if (r->need == NEED_NONE) {
        buf_adds(b, ",\"security\":[]");
    }
    if (!strcmp(r->method, "POST") || !strcmp(r->method, "PUT")) {
        buf_adds(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":"
                    "{\"schema\":{\"type\":\"object\"}}}}");
    }
    buf_adds(b, ",\"responses\":{\"2XX\":{\"description\":\"Success (docs/api.md)\","
                "\"content\":{\"application/json\":{\"schema\":{\"type\":\"object\"}}}},"
                "\"default\":{\"description\":\"An error\",\"content\":{\"application/json\":"
                "{\"schema\":{\"$ref\":\"#/components/schemas/Error\"}}}}}}");
    buf_fini(&path);
    buf_fini(&params);
}

static void openapi(struct call *c)
{
    enum { N = sizeof ROUTES / sizeof ROUTES[0] };
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"Annals native API\","
               "\"version\":\"%s\",\"description\":\"Generated from the server's route table; "
               "semantics in docs/api.md.\"},\"paths\":{", c->api->version);
    bool done[N] = {false};
    for (size_t i = 0, npaths = 0; i < N; i++) {
        if (done[i]) {
            continue;
        }
        struct buf path, params;
        buf_init(&path);
        buf_init(&params);
        openapi_path(ROUTES[i].pattern, &path, &params);
        buf_printf(&b, "%s\"%.*s\":{", npaths++ ? "," : "", (int)path.len, path.ptr);
        for (size_t j = i, nops = 0; j < N; j++) {
            if (!strcmp(ROUTES[j].pattern, ROUTES[i].pattern)) {
                done[j] = true;
                if (nops++) {
                    buf_addc(&b, ',');
                }
                openapi_operation(&b, &ROUTES[j]);
            }
        }
        buf_addc(&b, '}');
        buf_fini(&path);
        buf_fini(&params);
    }
    buf_adds(&b, "},\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\","
                 "\"scheme\":\"bearer\"},\"apiKey\":{\"type\":\"apiKey\",\"in\":\"header\","
                 "\"name\":\"X-API-Key\"}},\"schemas\":{\"Error\":{\"type\":\"object\","
                 "\"required\":[\"error\"],\"properties\":{\"error\":{\"type\":\"object\","
                 "\"required\":[\"code\",\"message\"],\"properties\":{\"code\":{\"type\":"
                 "\"string\"},\"message\":{\"type\":\"string\"},\"field\":{\"type\":\"string\"}"
                 "}}}}}},\"security\":[{\"bearer\":[]},{\"apiKey\":[]}]}");
    out_json(c->req, 200, &b);
}

/* ---- metrics ---- */

static void db_metrics(struct call *c, const char *name, struct buf *b)
{
    struct db *db;
    struct db_info in;
    struct compact_status cs;
    if (engine_db_acquire(c->api->engine, name, strlen(name), &db) != 0) {
        return;
    }
    int rc = engine_db_info(db, &in);
    engine_compact_status(db, &cs);
    engine_db_release(db);
    if (rc) {
        return;
    }
    static const char *const NAMES[] = {
        "annals_appends_total", "annals_commits_total", "annals_events", "annals_streams",
        "annals_fsyncs_total", "annals_bytes_on_disk", "annals_index_lag_events",
        "annals_writer_queue_depth", "annals_index_commits_total", "annals_compactions_total",
        "annals_compaction_reclaimed_bytes_total"};
    uint64_t v[] = {in.appends, in.commits, in.head, in.streams, in.syncs, in.file_bytes,
                    in.head - in.indexed, in.queue_depth, in.index_commits, cs.runs,
                    cs.reclaimed_bytes};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        buf_printf(b, "%s{database=\"%s\"} %llu\n", NAMES[i], name, (unsigned long long)v[i]);
    }
    buf_printf(b, "annals_fsync_seconds_total{database=\"%s\"} %.6f\n", name,
               (double)in.sync_ns / 1e9);
    buf_printf(b, "annals_commit_seconds_total{database=\"%s\"} %.6f\n", name,
               (double)in.commit_ns / 1e9);
}

static void metrics(struct call *c)
{
    const int n_routes = (int)(sizeof ROUTES / sizeof ROUTES[0]);
    char text[sizeof ROUTES / sizeof ROUTES[0]][96];
    const char *labels[sizeof ROUTES / sizeof ROUTES[0]];
    for (int i = 0; i < n_routes; i++) {
        snprintf(text[i], sizeof text[i], "%s /%s", ROUTES[i].method, ROUTES[i].pattern);
        labels[i] = text[i];
    }
    struct buf b;
    buf_init(&b);
    metrics_render_requests(c->api->metrics, labels,
                            n_routes < METRICS_ROUTES ? n_routes : METRICS_ROUTES, &b);
    buf_adds(&b, "# HELP annals_appends_total Acknowledged append requests (a database's "
                 "appends/commits is its group-commit factor); the other per-database series: "
                 "commits, events stored, streams, event-log fsyncs and their time, bytes on "
                 "disk, events not yet indexed, queued appends, index commits, compactions "
                 "that rewrote the log and the bytes they reclaimed.\n");
    size_t n;
    char **names = engine_db_names(c->api->engine, &n);
    for (size_t i = 0; i < n; i++) {
        if (!(c->authed && c->key.database[0] && strcmp(c->key.database, names[i]) != 0)) {
            db_metrics(c, names[i], &b);
        }
    }
    engine_names_free(names, n);
    struct http_server *srv = __atomic_load_n(&c->api->srv, __ATOMIC_ACQUIRE);
    buf_printf(&b, "# HELP annals_open_connections Open client connections.\n"
                   "annals_open_connections %u\n"
                   "# HELP annals_subscribers Live subscribers (SSE, WebSocket).\n"
                   "annals_subscribers %u\n"
                   "annals_uptime_seconds %.3f\n",
               srv ? http_server_connections(srv) : 0, live_count(c->api->live),
               (double)(time_now_us() - c->api->started_us) / 1e6);
    http_respond(c->req, 200, &b, "text/plain; version=0.0.4");
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
