/* j17's key administration (admin API): keys "j17_0_<environment>_..." bound to one
 * environment's database of an instance, with scope read or write. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* The environment of a j17 key (by its prefix); false for another key. */
static bool key_env(const struct api_key *k, enum j17_env *env)
{
    for (int e = 0; e < J17_ENVS; e++) {
        if (!strcmp(k->prefix, j_key_prefix((enum j17_env)e))) {
            *env = (enum j17_env)e;
            return true;
        }
    }
    return false;
}

static void add_time(struct buf *b, const char *name, int64_t us)
{
    char when[TIME_RFC3339_LEN];
    time_format(us, when);
    buf_printf(b, ",\"%s\":\"%s\"", name, when);
}

/* Appends a key's public members: {"id","name","scope","environment","created_at",
 * "revoke_at"?, "key"? (text: shown once)}. */
static void key_json(struct buf *b, const struct api_key *k, enum j17_env env,
                     const char *text)
{
    buf_adds(b, "{\"id\":");
    buf_add_json_str(b, k->id, strlen(k->id));
    buf_adds(b, ",\"name\":");
    buf_add_json_str(b, k->name, strlen(k->name));
    if (text) {
        buf_adds(b, ",\"key\":");
        buf_add_json_str(b, text, strlen(text));
    }
    buf_printf(b, ",\"scope\":\"%s\",\"environment\":\"%s\"", key_scope_name(k->scope),
               j_env_name(env));
    add_time(b, "created_at", k->created_us);
    if (k->not_after_us) {
        add_time(b, "revoke_at", k->not_after_us);
    }
    buf_addc(b, '}');
}

/* The keyring, or NULL after answering (no keys file: never, the server always has one). */
static struct keyring *ring(const struct gate_call *c)
{
    return c->gate->keys;
}

void j_keys_create(struct gate_call *c)
{
    char instance[LIMIT_DB_NAME_BYTES + 1], db[LIMIT_DB_NAME_BYTES + 1];
    if (!j_json_body(c) || !j_path_instance(c, instance)) {
        return;
    }
    struct slice body = http_req_body(c->req);
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    const char *name = json_string_value(json_object_get(root, "name"));
    const char *scope = json_string_value(json_object_get(root, "scope"));
    const char *env_s = json_string_value(json_object_get(root, "environment"));
    enum j17_env env = J17_PROD;
    enum key_scope sc = SCOPE_READ;
    const char *bad = !json_is_object(root) ? "the body must be a JSON object"
                      : json_object_get(root, "name") && (!name || strlen(name) > KEY_NAME_BYTES)
                          ? "name must be a string of at most 64 bytes"
                      : !scope || (strcmp(scope, "read") && strcmp(scope, "write"))
                          ? "scope must be read or write"
                      : env_s && !j_env_parse(env_s, &env)
                          ? "environment must be prod, staging or test"
                          : NULL;
    if (bad) {
        j_fail(c, GK_INVALID, bad, NULL);
        json_decref(root);
        return;
    }
    sc = !strcmp(scope, "write") ? SCOPE_WRITE : SCOPE_READ;
    j_env_db(instance, env, db, sizeof db);
    char text[KEY_TEXT_MAX];
    struct api_key k;
    int rc = keyring_create_prefixed(ring(c), j_key_prefix(env), sc, db, name ? name : "", 0,
                                     0, text, &k);
    json_decref(root);
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    gate_keys_made(c->gate, &k);
    struct buf b;
    buf_init(&b);
    key_json(&b, &k, env, text);
    out_json(c->req, 201, &b);
}

void j_keys_list(struct gate_call *c)
{
    char instance[LIMIT_DB_NAME_BYTES + 1];
    if (!j_path_instance(c, instance)) {
        return;
    }
    size_t n;
    struct api_key *all = keyring_list(ring(c), &n);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"ok\":true,\"keys\":[");
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        enum j17_env env;
        char inst[KEY_DB_BYTES + 1];
        if (!key_env(&all[i], &env)) {
            continue;
        }
        j_db_env(all[i].database, inst, sizeof inst);
        if (!strcmp(inst, instance)) {
            buf_adds(&b, shown++ ? "," : "");
            key_json(&b, &all[i], env, NULL);
        }
    }
    buf_adds(&b, "]}");
    free(all);
    out_json(c->req, 200, &b);
}

/* The j17 key the path names, which the caller may manage; false after answering 404/403. */
static bool path_key(const struct gate_call *c, struct api_key *k, enum j17_env *env)
{
    const char *id = gate_param_str(c, "key");
    if (!id || keyring_get(ring(c), id, k) != 0 || !key_env(k, env)) {
        j_fail(c, GK_NOT_FOUND, "no such key", NULL);
        return false;
    }
    char inst[KEY_DB_BYTES + 1];
    j_db_env(k->database, inst, sizeof inst);
    if (!j_may_manage(c, inst, false)) {
        j_fail(c, GK_NOT_FOUND, "no such key", NULL);
        return false;
    }
    return true;
}

void j_key_rotate(struct gate_call *c)
{
    struct api_key old, k;
    enum j17_env env;
    if (!path_key(c, &old, &env)) {
        return;
    }
    char text[KEY_TEXT_MAX];
    int rc = keyring_rotate(ring(c), old.id, time_now_us(), text, &k);
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    key_json(&b, &k, env, text);
    out_json(c->req, 201, &b);
}

void j_key_schedule(struct gate_call *c)
{
    struct api_key k;
    enum j17_env env;
    if (!j_json_body(c) || !path_key(c, &k, &env)) {
        return;
    }
    struct slice body = http_req_body(c->req);
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    json_t *at = json_object_get(root, "revoke_at");
    int64_t us = 0;
    if (!json_is_string(at) ||
        time_parse(json_string_value(at), json_string_length(at), &us) != 0) {
        json_decref(root);
        j_fail(c, GK_INVALID, "revoke_at must be an ISO 8601 date-time", "revoke_at");
        return;
    }
    json_decref(root);
    int rc = keyring_revoke(ring(c), k.id, us);
    if (!rc) {
        rc = keyring_get(ring(c), k.id, &k);
    }
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    key_json(&b, &k, env, NULL);
    out_json(c->req, 200, &b);
}

void j_key_delete(struct gate_call *c)
{
    struct api_key k;
    enum j17_env env;
    if (!path_key(c, &k, &env)) {
        return;
    }
    int rc = keyring_revoke(ring(c), k.id, time_now_us());
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"ok\":true}");
    out_json(c->req, 200, &b);
}
