#include "api/webhooks_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "engine/groups.h"
#include "delivery/delivery.h"
#include "engine/webhooks.h"
#include "util/errors.h"

enum {
    HOOK_ATTEMPTS_DEFAULT = 5,
    HOOK_BACKOFF_DEFAULT_MS = 1000,
    HOOK_BACKOFF_MAX_MS = 3600 * 1000,
    HOOK_GRACE_DEFAULT_S = 24 * 3600,
    HOOK_GRACE_MAX_S = 7 * 24 * 3600,
};

static bool bad(struct http_req *req, const char *field, const char *message)
{
    out_error(req, 400, "invalid_request", message, field);
    return false;
}

/* Fills def's headers (lines stored in lines) from the headers object. */
static bool take_headers(struct http_req *req, json_t *h, struct webhook_def *def,
                         char lines[WEBHOOK_HEADERS_MAX][WEBHOOK_HEADER_BYTES + 1])
{
    if (!h) {
        return true;
    }
    if (!json_is_object(h) || json_object_size(h) > WEBHOOK_HEADERS_MAX) {
        return bad(req, "headers", "headers is an object of at most 10 name: value strings");
    }
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) {
        if (!json_is_string(v) || !delivery_header_ok(k, json_string_value(v))) {
            char f[80];
            snprintf(f, sizeof f, "headers.%.60s", k);
            return bad(req, f, "a header name (token, not one the server sets) and a value "
                               "without line breaks, at most 1 KiB");
        }
        snprintf(lines[def->nheaders], WEBHOOK_HEADER_BYTES + 1, "%s: %s", k,
                 json_string_value(v));
        def->headers[def->nheaders] = lines[def->nheaders];
        def->nheaders++;
    }
    return true;
}

static bool take_u32(struct http_req *req, json_t *o, const char *name, const char *field,
                     uint32_t min, uint32_t max, uint32_t dflt, uint32_t *out)
{
    json_t *v = o ? json_object_get(o, name) : NULL;
    *out = dflt;
    if (!v) {
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char msg[80];
        snprintf(msg, sizeof msg, "a whole number from %u to %u", min, max);
        return bad(req, field, msg);
    }
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/* The filter member as validated JSON text (malloc'd; "" when absent), or NULL (answered). */
static char *take_filter(struct http_req *req, json_t *root)
{
    json_t *f = json_object_get(root, "filter");
    if (!f || json_is_null(f)) {
        return xstrndup("", 0);
    }
    char *text = json_is_object(f) ? json_dumps(f, JSON_COMPACT) : NULL;
    struct filter parsed;
    struct parse_error pe;
    if (!text || strlen(text) > GROUP_FILTER_BYTES) {
        free(text);
        bad(req, "filter", "filter is an object as in POST /query");
        return NULL;
    }
    if (parse_filter_text((struct slice){text, strlen(text)}, "filter", &parsed, &pe) != 0) {
        free(text);
        out_parse_error(req, &pe);
        return NULL;
    }
    filter_fini(&parsed);
    return text;
}

static void answer_hook_error(struct http_req *req, int rc, const char *why)
{
    if (rc == ERR_NOTFOUND) {
        out_error(req, 404, "webhook_not_found", "no such webhook", "webhook");
    } else if (rc == ERR_EXISTS) {
        out_error(req, 409, "webhook_exists", "a webhook with this name exists", "name");
    } else if (rc == ERR_TOOBIG) {
        out_error(req, 507, "too_many_webhooks", "at most 20 webhooks per database", NULL);
    } else if (rc == ERR_DENIED || rc == ERR_INVALID) {
        out_error(req, 400, rc == ERR_DENIED ? "url_not_allowed" : "invalid_url",
                  why && why[0] ? why : "the url is refused", "url");
    } else {
        out_engine_error(req, rc);
    }
}

/* Answers {"...webhook...", "secret": s} with status. */
static void answer_with_secret(struct http_req *req, struct db *db, const char *name,
                               const char *secret, unsigned status)
{
    struct buf b;
    buf_init(&b);
    engine_webhook_describe(db, name, false, &b);
    if (b.len && b.ptr[b.len - 1] == '}') {
        b.len--;
        buf_adds(&b, ",\"secret\":");
        buf_add_json_str(&b, secret, strlen(secret));
        buf_addc(&b, '}');
    }
    out_json(req, status, &b);
}

/* A webhook creation, run on the engine's worker pool (engine_submit): checking the URL
 * resolves its host (a slow resolver can take seconds) and saving webhooks.json syncs the
 * disk; meanwhile the I/O thread serves its other connections. */
struct create_job {
    struct http_req *req;    /* deferred; answered by the job */
    struct db *db;           /* a reference, the job's */
    struct webhook_def def;  /* url, filter and headers point into the fields below */
    char *url, *filter;      /* owned */
    char lines[WEBHOOK_HEADERS_MAX][WEBHOOK_HEADER_BYTES + 1];
};

/* Worker thread. */
static void run_create(void *arg, bool cancelled)
{
    struct create_job *j = arg;
    char why[160] = "", secret[64];
    int rc = cancelled ? ERR_SHUTDOWN
                       : engine_webhook_create(j->db, &j->def, secret, why, sizeof why);
    if (rc) {
        answer_hook_error(j->req, rc, why);
    } else {
        answer_with_secret(j->req, j->db, j->def.name, secret, 201);
    }
    engine_db_release(j->db);
    free(j->url);
    free(j->filter);
    free(j);
}

/* Answers req from the engine's worker pool (503 at once when it cannot take the job). Takes
 * db's reference and filter. */
static void start_create(struct http_req *req, struct engine *e, struct db *db,
                         const struct webhook_def *def, char *filter)
{
    struct create_job *j = xcalloc(1, sizeof(*j));
    j->req = req;
    j->db = db;
    j->def = *def;
    j->url = xstrndup(def->url, strlen(def->url));
    j->filter = filter;
    j->def.url = j->url;
    j->def.filter = (struct slice){filter, strlen(filter)};
    for (size_t i = 0; i < def->nheaders; i++) {
        snprintf(j->lines[i], sizeof j->lines[i], "%s", def->headers[i]);
        j->def.headers[i] = j->lines[i];
    }
    http_defer(req); /* before the job may answer it */
    int rc = engine_submit(e, run_create, j);
    if (rc == ERR_TOOBIG) {
        out_error(req, 503, "server_busy", "too many webhook creations are waiting; try "
                  "again shortly", NULL);
    } else if (rc) {
        out_engine_error(req, rc);
    }
    if (rc) {
        engine_db_release(db);
        free(j->url);
        free(filter);
        free(j);
    }
}

void webhooks_api_create(struct http_req *req, struct engine *e, struct db *db)
{
    static const char *const ALLOWED[] = {"name", "url", "filter", "headers", "retry", "from"};
    static const char *const RETRY[] = {"maxAttempts", "backoffMs"};
    json_t *root = out_body_object(req);
    if (!root) {
        engine_db_release(db);
        return;
    }
    struct webhook_def def = {0};
    char lines[WEBHOOK_HEADERS_MAX][WEBHOOK_HEADER_BYTES + 1];
    const char *name = json_string_value(json_object_get(root, "name"));
    const char *url = json_string_value(json_object_get(root, "url"));
    json_t *retry = json_object_get(root, "retry"), *from = json_object_get(root, "from");
    char *filter = NULL;
    bool ok = out_only_members(req, root, ALLOWED, 6, "");
    if (ok && (!name || !group_name_ok(name, strlen(name)))) {
        ok = false;
        out_error(req, 400, "invalid_name", "webhook names are 1 to 64 of A-Z a-z 0-9 _ - .",
                  "name");
    }
    if (ok && (!url || strlen(url) > WEBHOOK_URL_BYTES)) {
        ok = bad(req, "url", "url is an http(s) URL of at most 2048 bytes");
    }
    if (ok && retry && !json_is_object(retry)) {
        ok = bad(req, "retry", "retry is {\"maxAttempts\", \"backoffMs\"}");
    }
    ok = ok && (!retry || out_only_members(req, retry, RETRY, 2, "retry.")) &&
         take_u32(req, retry, "maxAttempts", "retry.maxAttempts", 1, WEBHOOK_ATTEMPTS_MAX,
                  HOOK_ATTEMPTS_DEFAULT, &def.max_attempts) &&
         take_u32(req, retry, "backoffMs", "retry.backoffMs", 10, HOOK_BACKOFF_MAX_MS,
                  HOOK_BACKOFF_DEFAULT_MS, &def.backoff_ms) &&
         take_headers(req, json_object_get(root, "headers"), &def, lines);
    if (ok && from && !(json_is_string(from) && strcmp(json_string_value(from), "latest") == 0) &&
        !(json_is_integer(from) && json_integer_value(from) >= 1)) {
        ok = bad(req, "from", "from is a position from 1 or \"latest\"");
    }
    if (ok && !(filter = take_filter(req, root))) {
        ok = false;
    }
    if (ok) {
        snprintf(def.name, sizeof def.name, "%s", name);
        def.url = url;
        def.filter = (struct slice){filter, strlen(filter)};
        def.start = !from ? 1 : json_is_string(from) ? engine_db_head(db) + 1
                                                     : (uint64_t)json_integer_value(from);
        start_create(req, e, db, &def, filter);
    } else {
        free(filter);
        engine_db_release(db);
    }
    json_decref(root);
}

void webhooks_api_list(struct http_req *req, struct db *db, const char *name)
{
    struct buf b;
    buf_init(&b);
    if (!name) {
        buf_adds(&b, "{\"webhooks\":[");
    }
    int rc = engine_webhook_describe(db, name, name != NULL, &b);
    if (rc) {
        buf_fini(&b);
        answer_hook_error(req, rc, NULL);
        return;
    }
    if (!name) {
        buf_adds(&b, "]}");
    }
    out_json(req, 200, &b);
}

void webhooks_api_delete(struct http_req *req, struct db *db, const char *name)
{
    int rc = engine_webhook_delete(db, name);
    if (rc) {
        answer_hook_error(req, rc, NULL);
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
}

void webhooks_api_rotate(struct http_req *req, struct db *db, const char *name)
{
    static const char *const ALLOWED[] = {"graceSeconds"};
    json_t *root = out_body_object(req);
    if (!root) {
        return;
    }
    uint32_t grace;
    if (out_only_members(req, root, ALLOWED, 1, "") &&
        take_u32(req, root, "graceSeconds", "graceSeconds", 0, HOOK_GRACE_MAX_S,
                 HOOK_GRACE_DEFAULT_S, &grace)) {
        char secret[64];
        int rc = engine_webhook_rotate(db, name, grace, secret);
        if (rc) {
            answer_hook_error(req, rc, NULL);
        } else {
            answer_with_secret(req, db, name, secret, 200);
        }
    }
    json_decref(root);
}
