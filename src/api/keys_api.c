#include "api/keys_api.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/canon.h"
#include "ops/out.h"
#include "gate/gate.h"
#include "ops/parse.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

void keys_api_key_json(struct buf *b, const struct api_key *k, int64_t now_us)
{
    buf_adds(b, "{\"id\":\"");
    buf_adds(b, k->id);
    buf_adds(b, "\",\"scope\":\"");
    buf_adds(b, key_scope_name(k->scope));
    buf_adds(b, "\",\"database\":");
    if (k->database[0]) {
        buf_add_json_str(b, k->database, strlen(k->database));
    } else {
        buf_adds(b, "null");
    }
    buf_adds(b, ",\"name\":");
    buf_add_json_str(b, k->name, strlen(k->name));
    buf_addc(b, ',');
    out_time_field(b, "created", k->created_us, false);
    buf_addc(b, ',');
    out_time_field(b, "notAfter", k->not_after_us, true);
    buf_adds(b, ",\"rateLimit\":");
    k->rate_limit ? buf_add_u64(b, k->rate_limit) : buf_adds(b, "null");
    buf_adds(b, (k->not_after_us == 0 || now_us < k->not_after_us) ? ",\"active\":true}"
                                                                     : ",\"active\":false}");
}

/* True when caller (NULL: development mode) may manage keys of database db ("" = all). */
static bool may_manage(const struct api_key *caller, const char *db)
{
    return !caller || !caller->database[0] || strcmp(caller->database, db) == 0;
}

void keys_api_whoami(struct http_req *req, struct api *api, const struct api_key *caller)
{
    (void)api;
    struct buf b;
    buf_init(&b);
    if (!caller) {
        buf_adds(&b, "{\"mode\":\"development\",\"scope\":\"admin\",\"database\":null}");
    } else {
        buf_adds(&b, "{\"mode\":\"keys\",\"key\":");
        keys_api_key_json(&b, caller, time_now_us());
        buf_adds(&b, ",\"scope\":\"");
        buf_adds(&b, key_scope_name(caller->scope));
        buf_adds(&b, "\",\"database\":");
        if (caller->database[0]) {
            buf_add_json_str(&b, caller->database, strlen(caller->database));
        } else {
            buf_adds(&b, "null");
        }
        buf_addc(&b, '}');
    }
    out_json(req, 200, &b);
}

void keys_api_list(struct http_req *req, struct api *api, const struct api_key *caller)
{
    size_t n;
    struct api_key *all = keyring_list(api->gate->keys, &n);
    int64_t now = time_now_us();
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"keys\":[");
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (!may_manage(caller, all[i].database)) {
            continue;
        }
        if (shown++) {
            buf_addc(&b, ',');
        }
        keys_api_key_json(&b, &all[i], now);
    }
    buf_adds(&b, "]}");
    free(all);
    out_json(req, 200, &b);
}

/* Answers the making of a key (rc from keyring_create/rotate): 201 with its text (shown this
 * once), or the error. */
static void answer_new_key(struct http_req *req, struct api *api, int rc,
                           const struct api_key *k, const char *text)
{
    if (rc == ERR_TOOBIG) {
        out_error(req, 507, "too_many_keys", "the key limit is reached", NULL);
        return;
    }
    if (rc) {
        out_engine_error(req, rc);
        return;
    }
    gate_keys_made(api->gate, k);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"key\":\"");
    buf_adds(&b, text);
    buf_adds(&b, "\",\"apiKey\":");
    keys_api_key_json(&b, k, time_now_us());
    buf_addc(&b, '}');
    out_json(req, 201, &b);
}

static int time_member(json_t *root, const char *name, int64_t *out, struct parse_error *pe)
{
    json_t *v = json_object_get(root, name);
    *out = 0;
    if (v && !json_is_null(v) &&
        (!json_is_string(v) ||
         time_parse(json_string_value(v), json_string_length(v), out) != 0)) {
        return parse_fail(pe, 400, "invalid_request", name, "must be an RFC 3339 date-time");
    }
    return 0;
}

/* Reads {"scope", "database"?, "name"?, "notAfter"?}. */
static int parse_new_key(json_t *root, enum key_scope *scope, const char **db,
                         const char **name, int64_t *not_after, uint32_t *rate,
                         struct parse_error *pe)
{
    json_t *r = json_object_get(root, "rateLimit");
    *rate = 0;
    if (r && !json_is_null(r)) {
        if (!json_is_integer(r) || json_integer_value(r) < 1 ||
            json_integer_value(r) > LIMIT_RATE_MAX) {
            return parse_fail(pe, 400, "invalid_request", "rateLimit",
                              "requests per second: a whole number from 1 to %d, or null",
                              LIMIT_RATE_MAX);
        }
        *rate = (uint32_t)json_integer_value(r);
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "scope") && strcmp(key, "database") && strcmp(key, "name") &&
            strcmp(key, "notAfter") && strcmp(key, "rateLimit")) {
            char f[64];
            snprintf(f, sizeof f, "%.60s", key);
            return parse_fail(pe, 400, "invalid_request", f, "unknown member");
        }
    }
    if (key_scope_parse(json_string_value(json_object_get(root, "scope")), scope)) {
        return parse_fail(pe, 400, "invalid_request", "scope", "scope is read, write or admin");
    }
    json_t *d = json_object_get(root, "database");
    *db = d && !json_is_null(d) ? json_string_value(d) : "";
    if (!*db || (d && !json_is_null(d) && !engine_db_name_ok(*db, strlen(*db)))) {
        return parse_fail(pe, 400, "invalid_request", "database",
                          "a database name, or null for every database");
    }
    json_t *n = json_object_get(root, "name");
    *name = n && !json_is_null(n) ? json_string_value(n) : "";
    if (!*name || strlen(*name) > KEY_NAME_BYTES ||
        (**name && !engine_name_ok(*name, strlen(*name), KEY_NAME_BYTES))) {
        return parse_fail(pe, 400, "invalid_request", "name",
                          "a label of at most 64 bytes without control characters");
    }
    return time_member(root, "notAfter", not_after, pe);
}

void keys_api_create(struct http_req *req, struct api *api, const struct api_key *caller)
{
    struct parse_error pe;
    void *rootp;
    if (parse_json_object(http_req_body(req), &rootp, &pe) != 0) {
        out_parse_error(req, &pe);
        return;
    }
    json_t *root = rootp;
    enum key_scope scope;
    const char *db = "", *name = "";
    int64_t not_after = 0;
    uint32_t rate = 0;
    if (parse_new_key(root, &scope, &db, &name, &not_after, &rate, &pe) != 0) {
        out_parse_error(req, &pe);
    } else if (!may_manage(caller, db)) {
        out_error(req, 403, "forbidden", "this key may only make keys for its own database",
                  "database");
    } else {
        char text[KEY_TEXT_MAX];
        struct api_key k;
        answer_new_key(req, api,
                       keyring_create(api->gate->keys, scope, db, name, not_after, rate, text, &k),
                       &k, text);
    }
    json_decref(root);
}

/* Finds key id for caller; answers 404 (also for keys of other databases) when not. */
static bool find_managed(struct http_req *req, struct api *api, const struct api_key *caller,
                         const char *id, struct api_key *out)
{
    if (keyring_get(api->gate->keys, id, out) != 0 || !may_manage(caller, out->database)) {
        out_error(req, 404, "key_not_found", "no such API key", "id");
        return false;
    }
    return true;
}

void keys_api_revoke(struct http_req *req, struct api *api, const struct api_key *caller,
                     const char *id)
{
    struct api_key k;
    if (!find_managed(req, api, caller, id, &k)) {
        return;
    }
    const char *at = http_req_query(req, "at");
    int64_t when = time_now_us();
    if (at && time_parse(at, strlen(at), &when) != 0) {
        out_error(req, 400, "invalid_parameter", "at must be an RFC 3339 date-time", "at");
        return;
    }
    int rc = keyring_revoke(api->gate->keys, id, when);
    if (rc) {
        out_engine_error(req, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
}

void keys_api_rotate(struct http_req *req, struct api *api, const struct api_key *caller,
                     const char *id)
{
    struct api_key old;
    if (!find_managed(req, api, caller, id, &old)) {
        return;
    }
    struct parse_error pe;
    void *rootp;
    struct slice body = http_req_body(req);
    if (body.len == 0) {
        body = (struct slice){"{}", 2};
    }
    if (parse_json_object(body, &rootp, &pe) != 0) {
        out_parse_error(req, &pe);
        return;
    }
    json_t *root = rootp;
    json_t *g = json_object_get(root, "graceSeconds");
    const char *key;
    json_t *val;
    int bad = 0;
    json_object_foreach(root, key, val) {
        bad = bad || strcmp(key, "graceSeconds") != 0;
    }
    if (bad || (g && (!json_is_integer(g) || json_integer_value(g) < 0 ||
                      json_integer_value(g) > 30 * 86400))) {
        json_decref(root);
        out_error(req, 400, "invalid_request",
                  "the body may hold graceSeconds: 0 to 2592000 (the old key's remaining life)",
                  "graceSeconds");
        return;
    }
    int64_t until = time_now_us() + (g ? (int64_t)json_integer_value(g) * 1000000 : 0);
    json_decref(root);
    char text[KEY_TEXT_MAX];
    struct api_key k;
    answer_new_key(req, api, keyring_rotate(api->gate->keys, id, until, text, &k), &k, text);
}
