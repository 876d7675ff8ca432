/* j17 routes: the table, the three descriptors (one per environment), and the helpers the
 * route files share. The handlers are in writes.c (events), reads.c (aggregates) and
 * admin.c (specs and keys). */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"
#include "ops/out.h"
#include "util/errors.h"

/* ---- the context ---- */

void j17_ctx_init(struct j17_ctx *x)
{
    if (!x->schedule_min_ms) {
        x->schedule_min_ms = J17_SCHEDULE_MIN_MS;
    }
    x->specs = j_specs_new();
    pthread_mutex_init(&x->deploy_mu, NULL);
}

void j17_ctx_fini(struct j17_ctx *x)
{
    j_specs_free(x->specs);
    x->specs = NULL;
    pthread_mutex_destroy(&x->deploy_mu);
}

/* ---- environments ---- */

static const char *const ENV_NAMES[J17_ENVS] = {"prod", "staging", "test"};
static const char *const ENV_PREFIXES[J17_ENVS] = {"j17_0_prod_", "j17_0_staging_",
                                                   "j17_0_test_"};

enum j17_env j_env_of(const struct gate_mount *m)
{
    return m == &j17_mount_staging ? J17_STAGING : m == &j17_mount_test ? J17_TEST : J17_PROD;
}

const char *j_env_name(enum j17_env env)
{
    return ENV_NAMES[env];
}

bool j_env_parse(const char *s, enum j17_env *out)
{
    for (int i = 0; i < J17_ENVS; i++) {
        if (!strcmp(s, ENV_NAMES[i])) {
            *out = (enum j17_env)i;
            return true;
        }
    }
    return false;
}

bool j_env_db(const char *instance, enum j17_env env, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s%s", instance, env == J17_PROD ? "" : "-",
                     env == J17_PROD ? "" : ENV_NAMES[env]);
    return n > 0 && (size_t)n < cap && engine_db_name_ok(out, (size_t)n);
}

const char *j_key_prefix(enum j17_env env)
{
    return ENV_PREFIXES[env];
}

enum j17_env j_db_env(const char *db, char *instance, size_t cap)
{
    size_t n = strlen(db);
    for (int e = J17_STAGING; e < J17_ENVS; e++) {
        size_t k = strlen(ENV_NAMES[e]);
        if (n > k + 1 && db[n - k - 1] == '-' && !strcmp(db + n - k, ENV_NAMES[e])) {
            if (instance) {
                snprintf(instance, cap, "%.*s", (int)(n - k - 1), db);
            }
            return (enum j17_env)e;
        }
    }
    if (instance) {
        snprintf(instance, cap, "%s", db);
    }
    return J17_PROD;
}

bool j_env_ok(const struct gate_call *c)
{
    if (!c->authed) {
        return true; /* development mode: no keys */
    }
    enum j17_env want = j_env_of(c->mount);
    bool ok;
    if (!strncmp(c->key.prefix, "j17_", 4)) {
        ok = !strcmp(c->key.prefix, ENV_PREFIXES[want]);
    } else {
        ok = !c->key.database[0] || j_db_env(c->key.database, NULL, 0) == want;
    }
    if (!ok) {
        j_fail(c, GK_FORBIDDEN, "wrong environment: this key is for another environment of "
               "the instance", "Authorization");
    }
    return ok;
}

/* ---- errors ---- */

void j_fail(const struct gate_call *c, unsigned kind, const char *msg, const char *path)
{
    struct gate_error e = {.kind = kind, .code = "j17", .message = msg, .field = path};
    gate_fail(c, &e);
}

void j_fail_req(const struct gate_mount *m, struct http_req *req, unsigned kind,
                const char *msg, const char *path)
{
    struct gate_error e = {.kind = kind, .code = "j17", .message = msg, .field = path};
    gate_fail_req(m, req, &e);
}

bool j_json_body(const struct gate_call *c)
{
    if (out_is_json(c->req)) {
        return true;
    }
    j_fail(c, GK_INVALID, "Content-Type must be application/json", "Content-Type");
    return false;
}

/* ---- the table ---- */

static const struct route_param P_GET[] = {
    {"synchronous", PARAM_BOOLEAN, "Compute the state from the events (true)", NULL},
    {NULL, 0, NULL, NULL},
};

static const struct route_param P_SPEC[] = {
    {"environment", PARAM_ENUM, "The environment (default prod)", "prod,staging,test"},
    {NULL, 0, NULL, NULL},
};

static const struct route_param P_EVENTS[] = {
    {"start", PARAM_STRING, "After this stream id (exclusive)", NULL},
    {"count", PARAM_LIMIT, "Most events (default 100, at most 1000)", NULL},
    {NULL, 0, NULL, NULL},
};

#define DB ROUTE_DB
#define W (ROUTE_DB | ROUTE_IDEMPOTENT)
static const struct route ROUTES[] = {
    {"POST", "api/instances/{instance}/spec", j_deploy, 0, NEED_ADMIN, "deploySpec",
     "Deploy a spec to an environment of an instance", NULL, NULL, NULL, 200},
    {"GET", "api/instances/{instance}/spec", j_spec_show, 0, NEED_ADMIN, "getSpec",
     "The spec in force in an environment (?environment=)", P_SPEC, NULL, NULL, 200},
    {"GET", "api/instances/{instance}/keys", j_keys_list, 0, NEED_ADMIN, "listKeys",
     "The API keys of an instance", NULL, NULL, NULL, 200},
    {"POST", "api/instances/{instance}/keys", j_keys_create, 0, NEED_ADMIN, "createKey",
     "Create an API key for an environment of an instance", NULL, NULL, NULL, 201},
    {"POST", "api/keys/{key}/rotate", j_key_rotate, ROUTE_BODY_OPTIONAL, NEED_ADMIN,
     "rotateKey", "Replace a key by a new one (the old one stops working)", NULL, NULL, NULL,
     201},
    {"POST", "api/keys/{key}/schedule_revocation", j_key_schedule, 0, NEED_ADMIN,
     "scheduleRevocation", "Revoke a key at a given time", NULL, NULL, NULL, 200},
    {"DELETE", "api/keys/{key}", j_key_delete, 0, NEED_ADMIN, "revokeKey",
     "Revoke a key now", NULL, NULL, NULL, 200},
    {"GET", "projections/{name}/{id}", j_projection, DB, NEED_READ, "getProjection",
     "A projection of the spec for one aggregate of its for_each type", NULL, NULL, NULL, 200},
    {"POST", "{type}/{id}/{event_type}", j_write, W, NEED_WRITE, "writeEvent",
     "Write one event to an aggregate (with its implied events)", NULL, NULL, NULL, 201},
    {"POST", "{type}/{id}", j_write_batch, W, NEED_WRITE, "writeBatch",
     "Write events to one aggregate atomically", NULL, NULL, NULL, 201},
    {"GET", "{type}/{id}", j_get, DB, NEED_READ, "getAggregate",
     "An aggregate's state, folded by its handlers", P_GET, NULL, NULL, 200},
    {"GET", "{type}/{id}/length", j_length, DB, NEED_READ, "getLength",
     "An aggregate's number of events", NULL, NULL, NULL, 200},
    {"GET", "{type}/{id}/events", j_events, DB, NEED_READ, "getEvents",
     "An aggregate's events, oldest first", P_EVENTS, NULL, NULL, 200},
};
#undef W
#undef DB

static const char CORS_ALLOW[] = "Authorization, Content-Type";
static const char CORS_METHODS[] = "GET, POST, OPTIONS";
static const char CORS_EXPOSE[] = "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, "
                                  "X-RateLimit-Scope, X-Idempotency-Replayed";

#define J17_MOUNT(var, label, db)                                                              \
    const struct gate_mount var = {                                                            \
        .name = label,                                                                         \
        .routes = ROUTES,                                                                      \
        .nroutes = sizeof ROUTES / sizeof ROUTES[0],                                           \
        .key_from = GATE_KEY_BEARER,                                                           \
        .db_from = GATE_DB_KEY,                                                                \
        .default_db = db,                                                                      \
        .error = j17_error,                                                                    \
        .rate_window_s = 60,                                                                   \
        .default_rate = J17_RATE_PER_KEY,                                                      \
        .ip_rate = J17_RATE_PER_IP,                                                            \
        .rate_scope = "api-key",                                                               \
        .rate_group = "j17",                                                                   \
        .rate_no_reset = true,                                                                 \
        .cors_allow_headers = CORS_ALLOW,                                                      \
        .cors_allow_methods = CORS_METHODS,                                                    \
        .cors_expose_headers = CORS_EXPOSE,                                                    \
        .cors_any_origin = true,                                                               \
        .idem_namespace = J17_IDEM_NS,                                                         \
    }

J17_MOUNT(j17_mount_prod, "j17", "default");
J17_MOUNT(j17_mount_staging, "j17-staging", "default-staging");
J17_MOUNT(j17_mount_test, "j17-test", "default-test");
