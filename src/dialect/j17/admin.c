/* j17's admin API under each mount (docs/dialects/j17.md, "Admin API"): spec deploys and API
 * keys of an instance. j17 authenticates these with a JWT from its control plane; Annals
 * takes an Annals admin key as the Bearer token (for every database, or bound to one of the
 * instance's databases). */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jenc.h"
#include "logic/logic.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- who may administer which instance ---- */

bool j_may_manage(const struct gate_call *c, const char *instance, bool answer)
{
    if (!c->authed || !c->key.database[0]) {
        return true;
    }
    char mine[KEY_DB_BYTES + 1];
    j_db_env(c->key.database, mine, sizeof mine);
    if (!strcmp(mine, instance)) {
        return true;
    }
    if (answer) {
        j_fail(c, GK_FORBIDDEN, "this admin key is bound to another instance", "Authorization");
    }
    return false;
}

bool j_path_instance(const struct gate_call *c, char *out)
{
    struct slice s = gate_param(c, "instance");
    char db[LIMIT_DB_NAME_BYTES + 1];
    if (s.len == 0 || s.len > LIMIT_DB_NAME_BYTES - 8) {
        j_fail(c, GK_INVALID, "an instance id is 1 to 55 of a-z, 0-9 and -", "instance");
        return false;
    }
    memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    if (!j_env_db(out, J17_TEST, db, sizeof db)) {
        j_fail(c, GK_INVALID, "an instance id is 1 to 55 of a-z, 0-9 and -", "instance");
        return false;
    }
    char base[LIMIT_DB_NAME_BYTES + 1];
    j_db_env(out, base, sizeof base);
    if (strcmp(base, out) != 0) { /* "acme-test" is the test database of "acme" */
        j_fail(c, GK_INVALID, "an instance id may not end in -staging or -test (those name "
               "the environments of another instance)", "instance");
        return false;
    }
    return j_may_manage(c, out, true);
}

/* ---- spec deploys ---- */

static char *dup(const char *s)
{
    return xstrndup(s, strlen(s));
}

struct deploy_job {
    struct http_req *req;
    const struct gate_mount *mount;
    struct j17_ctx *x;
    struct engine *engine;
    enum j17_env env;
    bool force;
    char db[LIMIT_DB_NAME_BYTES + 1];
    struct buf text;              /* the spec, minified */
    struct buf stored;            /* ... as kept: without the listeners' secrets (readers of
                                     the database's components must not learn them; each is
                                     kept by its listener's webhook) */
};

static void deploy_free(struct deploy_job *j)
{
    buf_fini(&j->text);
    buf_fini(&j->stored);
    free(j);
}

/* Answers 422 with the problems: {"ok":false,"error","errors":[{"path","message"}]}. */
static void answer_problems(struct deploy_job *j, const char *error,
                            const struct j17_problems *pr)
{
    struct buf d;
    buf_init(&d);
    buf_adds(&d, "\"errors\":[");
    for (size_t i = 0; i < pr->count; i++) {
        buf_adds(&d, i ? ",{\"path\":" : "{\"path\":");
        buf_add_json_str(&d, pr->items[i].path, strlen(pr->items[i].path));
        buf_adds(&d, ",\"message\":");
        buf_add_json_str(&d, pr->items[i].msg, strlen(pr->items[i].msg));
        buf_addc(&d, '}');
    }
    buf_addc(&d, ']');
    if (pr->more) {
        buf_adds(&d, ",\"more\":true");
    }
    struct gate_error e = {.kind = GK_UNPROCESSABLE, .code = "j17", .message = error,
                           .details = d.ptr};
    gate_fail_req(j->mount, j->req, &e);
    buf_fini(&d);
}

static void problem1(struct j17_problems *pr, const char *path, const char *msg)
{
    memset(pr, 0, sizeof *pr);
    snprintf(pr->items[0].path, sizeof pr->items[0].path, "%s", path);
    snprintf(pr->items[0].msg, sizeof pr->items[0].msg, "%.*s",
             (int)sizeof pr->items[0].msg - 1, msg);
    pr->count = 1;
}

/* The components a spec deploys: its document, then one tick reducer per aggregate type;
 * into defs (count returned). */
static size_t spec_defs(const struct j17_spec *s, const struct deploy_job *j,
                        struct comp_def *defs)
{
    struct comp_def *d = &defs[0];
    snprintf(d->name, sizeof d->name, "%s", J17_SPEC_COMPONENT);
    d->kind = COMP_DOCUMENT;
    d->lang = LOGIC_LANG_JSON;
    d->source = xstrndup(j->stored.ptr, j->stored.len);
    d->source_len = j->stored.len;
    char meta[64];
    snprintf(meta, sizeof meta, "{\"environment\":\"%s\"}", j_env_name(j->env));
    d->meta = dup(meta);
    size_t n = j17_spec_agg_count(s);
    for (size_t i = 0; i < n; i++) {
        const struct j17_agg *a = j17_spec_agg_at(s, i);
        d = &defs[1 + i];
        snprintf(d->name, sizeof d->name, "%s%s", J17_REDUCER_PREFIX, j17_agg_name(a));
        d->kind = COMP_REDUCER;
        d->lang = LOGIC_LANG_TICK;
        d->category = dup(j17_agg_name(a));
        d->event_format = dup("j17");
        struct buf h;
        buf_init(&h);
        j17_agg_handlers(a, &h);
        d->source = xstrndup(h.ptr, h.len);
        d->source_len = h.len;
        buf_fini(&h);
    }
    return 1 + n;
}

/* The reducers of the spec in force that the new spec s no longer has, into names (owned
 * strings; count returned). */
static size_t stale_reducers(struct logic *lg, struct db *db, const struct j17_spec *s,
                             char ***names)
{
    struct comp_set *set;
    *names = NULL;
    if (logic_set(lg, db, &set) != 0) {
        return 0;
    }
    size_t n = 0, plen = strlen(J17_REDUCER_PREFIX);
    *names = xcalloc(set->count ? set->count : 1, sizeof(char *));
    for (size_t i = 0; i < set->count; i++) {
        const char *name = set->defs[i].name;
        if (!strncmp(name, J17_REDUCER_PREFIX, plen) &&
            !j17_spec_agg(s, (struct slice){name + plen, strlen(name + plen)})) {
            (*names)[n++] = dup(name);
        }
    }
    comp_set_unref(set);
    return n;
}

/* Refuses aggregate types whose paths the admin API's and projections' routes take
 * ("/api/...", "/projections/..."); false after answering 422. */
static bool names_free(struct deploy_job *j, const struct j17_spec *s)
{
    static const char *const TAKEN[] = {"api", "projections"};
    for (size_t i = 0; i < sizeof TAKEN / sizeof TAKEN[0]; i++) {
        if (j17_spec_agg(s, (struct slice){TAKEN[i], strlen(TAKEN[i])})) {
            struct j17_problems pr;
            char path[64];
            snprintf(path, sizeof path, "aggregate_types.%s", TAKEN[i]);
            problem1(&pr, path, "this name is taken by the API's own routes (/api/..., "
                     "/projections/...): choose another");
            answer_problems(j, "Spec validation failed", &pr);
            return false;
        }
    }
    return true;
}

/* Checks the change from the spec in force; false after answering 422. */
static bool change_allowed(struct deploy_job *j, struct db *db, const struct j17_spec *s)
{
    struct j17_spec *old = NULL;
    struct j17_problems pr;
    if (j_spec_get(j->x, db, &old) != 0 || !old) {
        return true; /* the first deploy (an unreadable old one is replaced) */
    }
    int rc = j17_spec_compat(old, s, &pr);
    j17_spec_unref(old);
    if (!rc) {
        return true;
    }
    if (!j->force) {
        answer_problems(j, "Incompatible spec change (removing types or changing required "
                        "fields): deploy with \"force\": true", &pr);
        return false;
    }
    if (j->env == J17_PROD) {
        answer_problems(j, "force is not allowed on prod: incompatible changes go through "
                        "staging or test", &pr);
        return false;
    }
    return true;
}

/* Opens the environment's database, making it on the first deploy. */
static int open_db(struct deploy_job *j, struct db **db)
{
    int rc = engine_db_acquire(j->engine, j->db, strlen(j->db), db);
    if (rc == ERR_NOTFOUND) {
        rc = engine_db_create(j->engine, j->db, strlen(j->db), NULL);
        rc = rc == ERR_EXISTS ? 0 : rc;
        rc = rc ? rc : engine_db_acquire(j->engine, j->db, strlen(j->db), db);
    }
    return rc;
}

/* Compiles the stored form of the spec just deployed as version and keeps it, so the first
 * request after the deploy finds it compiled (not on its I/O thread). */
static void keep_compiled(struct deploy_job *j, struct db *db, uint64_t version)
{
    struct j17_problems pr;
    struct j17_spec *kept;
    struct j17_spec_options opt = {.schedule_min_ms = 0}; /* as j_spec_get loads it */
    if (j17_spec_compile_ex(j->stored.ptr, j->stored.len, &opt, &kept, &pr) == 0) {
        j_spec_keep(j->x, db, version, kept);
        j17_spec_unref(kept);
    }
}

static void deploy_spec(struct deploy_job *j, struct j17_spec *s, struct db *db)
{
    size_t n = 1 + j17_spec_agg_count(s);
    struct comp_def *defs = xcalloc(n, sizeof(*defs));
    spec_defs(s, j, defs);
    char **gone;
    size_t ngone = stale_reducers(j->x->logic, db, s, &gone);
    struct logic_error le = {0};
    size_t failed = 0;
    int rc = logic_deploy_many(j->x->logic, db, defs, n, (const char *const *)gone, ngone,
                               NULL, &le, &failed);
    if (rc == ERR_INVALID || rc == ERR_EXISTS) {
        struct j17_problems pr;
        problem1(&pr, failed < n ? defs[failed].name : "", le.message);
        answer_problems(j, "Spec validation failed", &pr);
    } else if (rc) {
        struct gate_error ge;
        gate_engine_error(rc, &ge);
        gate_fail_req(j->mount, j->req, &ge);
    } else {
        keep_compiled(j, db, defs[0].version);
        struct buf warn;
        buf_init(&warn);
        size_t nwarn = j_listeners_sync(db, s, &warn);
        struct buf b;
        buf_init(&b);
        buf_printf(&b, "{\"ok\":true,\"environment\":\"%s\",\"version\":%llu,"
                   "\"aggregate_types\":%zu", j_env_name(j->env),
                   (unsigned long long)defs[0].version, n - 1);
        if (nwarn) {
            buf_printf(&b, ",\"warnings\":[%s]", warn.ptr);
        }
        buf_addc(&b, '}');
        buf_fini(&warn);
        out_json(j->req, 200, &b);
    }
    for (size_t i = 0; i < n; i++) {
        comp_def_fini(&defs[i]);
    }
    free(defs);
    for (size_t i = 0; i < ngone; i++) {
        free(gone[i]);
    }
    free(gone);
}

/* Answers an engine error of a deploy. */
static void deploy_failed(struct deploy_job *j, int rc)
{
    struct gate_error ge;
    gate_engine_error(rc, &ge);
    gate_fail_req(j->mount, j->req, &ge);
}

/* Everything is checked before the database is made: a refused deploy changes nothing. */
static void run_deploy(void *arg, bool cancelled)
{
    struct deploy_job *j = arg;
    struct j17_problems pr;
    struct j17_spec *s = NULL;
    struct j17_spec_options opt = {.schedule_min_ms = j->x->schedule_min_ms};
    struct db *db = NULL;
    int rc = cancelled ? ERR_SHUTDOWN
                       : j17_spec_compile_ex(j->text.ptr, j->text.len, &opt, &s, &pr);
    if (rc == ERR_INVALID || rc == ERR_TOOBIG) {
        answer_problems(j, "Spec validation failed", &pr);
    } else if (rc) {
        deploy_failed(j, rc);
    } else if (j_listeners_check(s, j->engine, &pr) != 0) {
        answer_problems(j, "Spec validation failed", &pr);
    } else if (names_free(j, s)) {
        pthread_mutex_lock(&j->x->deploy_mu);
        rc = engine_db_acquire(j->engine, j->db, strlen(j->db), &db);
        if ((rc == 0 || rc == ERR_NOTFOUND) && (!db || change_allowed(j, db, s))) {
            rc = db ? 0 : open_db(j, &db);
            if (rc) {
                deploy_failed(j, rc);
            } else {
                deploy_spec(j, s, db);
            }
        } else if (rc && rc != ERR_NOTFOUND) {
            deploy_failed(j, rc);
        }
        pthread_mutex_unlock(&j->x->deploy_mu);
    }
    j17_spec_unref(s);
    engine_db_release(db);
    deploy_free(j);
}

void j_deploy(struct gate_call *c)
{
    char instance[LIMIT_DB_NAME_BYTES + 1];
    if (!j_json_body(c) || !j_path_instance(c, instance)) {
        return;
    }
    struct slice body = http_req_body(c->req);
    json_error_t je;
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    json_t *spec = json_object_get(root, "spec");
    json_t *env = json_object_get(root, "environment");
    json_t *force = json_object_get(root, "force");
    struct deploy_job *j = xcalloc(1, sizeof(*j));
    buf_init(&j->text);
    buf_init(&j->stored);
    const char *bad = !json_is_object(root) ? "the body must be a JSON object (the spec, or "
                                              "{\"environment\",\"spec\",\"force\"?})"
                      : spec && !json_is_object(spec) ? "spec must be an object"
                      : env && (!json_is_string(env) ||
                                !j_env_parse(json_string_value(env), &j->env))
                          ? "environment must be prod, staging or test"
                      : force && !json_is_boolean(force) ? "force must be true or false"
                                                         : NULL;
    if (bad) {
        j_fail(c, GK_INVALID, bad, NULL);
        json_decref(root);
        deploy_free(j);
        return;
    }
    j->force = json_is_true(force);
    json_t *doc = spec ? spec : root;
    jenc_tree(doc, &j->text, J17_SPEC_BYTES * 2, J17_JSON_DEPTH);
    const char *lname;
    json_t *l;
    json_object_foreach(json_object_get(doc, "listeners"), lname, l) {
        json_object_del(l, "secret");
    }
    jenc_tree(doc, &j->stored, J17_SPEC_BYTES * 2, J17_JSON_DEPTH);
    json_decref(root);
    j_env_db(instance, j->env, j->db, sizeof j->db);
    j->req = c->req;
    j->mount = c->mount;
    j->x = j_ctx_of(c);
    j->engine = c->gate->engine;
    http_defer(c->req);
    if (engine_submit(c->gate->engine, run_deploy, j) != 0) {
        j_fail_req(j->mount, j->req, GK_UNAVAILABLE, "too many requests wait for a worker; "
                   "try again shortly", NULL);
        deploy_free(j);
    }
}

void j_spec_show(struct gate_call *c)
{
    char instance[LIMIT_DB_NAME_BYTES + 1], name[LIMIT_DB_NAME_BYTES + 1];
    enum j17_env env = J17_PROD;
    const char *e = http_req_query(c->req, "environment");
    if (!j_path_instance(c, instance)) {
        return;
    }
    if (e && !j_env_parse(e, &env)) {
        j_fail(c, GK_INVALID, "environment must be prod, staging or test", "environment");
        return;
    }
    j_env_db(instance, env, name, sizeof name);
    struct db *db;
    struct j17_spec *s = NULL;
    if (engine_db_acquire(c->gate->engine, name, strlen(name), &db) != 0) {
        j_fail(c, GK_NOT_FOUND, "No spec deployed to this environment", NULL);
        return;
    }
    int rc = j_spec_get(j_ctx_of(c), db, &s);
    engine_db_release(db);
    if (rc || !s) {
        j_fail(c, rc ? GK_INTERNAL : GK_NOT_FOUND, rc ? "the spec could not be read"
                                                      : "No spec deployed to this environment",
               NULL);
        j17_spec_unref(s);
        return;
    }
    struct slice t = j17_spec_text(s);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"ok\":true,\"environment\":\"%s\",\"spec\":", j_env_name(env));
    buf_add(&b, t.ptr, t.len);
    buf_addc(&b, '}');
    j17_spec_unref(s);
    out_json(c->req, 200, &b);
}
