/* Each database's DeReg, durable as a document component of the logic layer
 * (DEQL_DEREG_COMPONENT in the database's `$logic` stream: versioned, kept whatever the
 * database's retention, in every backup). Its source is {"deql": "<script>"}, the registry's
 * export (deql_reg_export), which rebuilds it exactly; each change deploys the next version.
 * A registry in force is never changed: applying a script builds a new one (the stored
 * script, then the new one), checks that it builds on SQLite, deploys its export, and keeps
 * it for that version. Registries are cached per database id (a database deleted and made
 * again under its name has another id). */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "json/jenc.h"
#include "logic/component.h"
#include "logic/logic.h"
#include "logic/registry.h"
#include "util/errors.h"
#include "util/log.h"

/* One database's registry in force (as of a version of its document). */
struct entry {
    struct dq_reg *cur; /* NULL before the first load */
};

struct deql_dbs {
    pthread_mutex_t mu;       /* the map and each entry's cur */
    pthread_mutex_t apply_mu; /* one apply at a time */
    struct strmap map;        /* engine_db_id (8 bytes) -> struct entry */
};

struct deql_dbs *dq_dbs_new(void)
{
    struct deql_dbs *d = xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->apply_mu, NULL);
    strmap_init(&d->map, sizeof(struct entry));
    return d;
}

void dq_dbs_free(struct deql_dbs *d)
{
    if (!d) {
        return;
    }
    size_t pos = 0;
    const char *k;
    size_t kl;
    void *v;
    while (strmap_next(&d->map, &pos, &k, &kl, &v)) {
        dq_reg_unref(((struct entry *)v)->cur);
    }
    strmap_fini(&d->map);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->apply_mu);
    free(d);
}

void dq_reg_unref(struct dq_reg *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        deql_reg_free(r->reg);
        free(r);
    }
}

static struct dq_reg *reg_ref(struct dq_reg *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
    return r;
}

bool dq_is_definition(enum deql_stmt_kind kind)
{
    switch (kind) {
    case DEQL_CREATE_AGGREGATE:
    case DEQL_CREATE_COMMAND:
    case DEQL_CREATE_EVENT:
    case DEQL_CREATE_DECISION:
    case DEQL_CREATE_PROJECTION:
    case DEQL_CREATE_TEMPLATE:
    case DEQL_CREATE_EVENTSTORE:
    case DEQL_USE_TEMPLATE:
    case DEQL_ALTER:
        return true;
    default:
        return false;
    }
}

/* ---- the cache ---- */

/* The cached registry of db when it is of version (referenced), else NULL. */
static struct dq_reg *cached(struct deql_dbs *d, uint64_t db_id, uint64_t version)
{
    pthread_mutex_lock(&d->mu);
    struct entry *e = strmap_get(&d->map, &db_id, sizeof db_id);
    struct dq_reg *r = e && e->cur && e->cur->version == version ? reg_ref(e->cur) : NULL;
    pthread_mutex_unlock(&d->mu);
    return r;
}

/* Keeps r (referenced by the cache) as db's registry unless a newer one is kept. */
static void keep(struct deql_dbs *d, struct dq_reg *r)
{
    pthread_mutex_lock(&d->mu);
    bool is_new;
    struct entry *e = strmap_put(&d->map, &r->db_id, sizeof r->db_id, &is_new);
    if (is_new) {
        e->cur = NULL;
    }
    if (!e->cur || e->cur->version <= r->version) {
        dq_reg_unref(e->cur);
        e->cur = reg_ref(r);
    }
    pthread_mutex_unlock(&d->mu);
}

static struct dq_reg *reg_wrap(struct deql_reg *reg, uint64_t version, uint64_t db_id)
{
    struct dq_reg *r = xcalloc(1, sizeof(*r));
    r->refs = 1;
    r->reg = reg;
    r->version = version;
    r->db_id = db_id;
    return r;
}

/* ---- the stored document ---- */

/* The script of a stored document's source ({"deql": "..."}) into *out (malloc'd). */
static int source_script(const char *source, size_t len, char **out, size_t *out_len)
{
    json_t *doc = json_loadb(source, len, 0, NULL);
    json_t *s = json_object_get(doc, "deql");
    int rc = json_is_string(s) ? 0 : ERR_CORRUPT;
    if (!rc) {
        *out_len = json_string_length(s);
        *out = xstrndup(json_string_value(s), *out_len);
    }
    json_decref(doc);
    return rc;
}

/* The stored script of db and its version (0 and "" when nothing is stored). */
static int stored_script(struct deql_ctx *x, struct db *db, char **script, size_t *len,
                         uint64_t *version)
{
    struct comp_set *set;
    int rc = logic_set(x->logic, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *d = comp_set_find(set, DEQL_DEREG_COMPONENT);
    *version = d && d->kind == COMP_DOCUMENT ? d->version : 0;
    *script = NULL;
    *len = 0;
    if (*version) {
        rc = source_script(d->source, d->source_len, script, len);
    }
    comp_set_unref(set);
    return rc;
}

/* A registry from script (NULL: empty). */
static int build_reg(const char *script, size_t len, struct deql_reg **out,
                     struct deql_error *err)
{
    struct deql_reg *reg = deql_reg_new();
    int rc = script && len ? deql_reg_apply_script(reg, script, len, NULL, err) : 0;
    if (rc) {
        deql_reg_free(reg);
        return rc;
    }
    *out = reg;
    return 0;
}

int dq_reg_get(struct deql_ctx *x, struct db *db, struct dq_reg **out)
{
    char *script;
    size_t len;
    uint64_t version;
    int rc = stored_script(x, db, &script, &len, &version);
    if (rc) {
        return rc;
    }
    uint64_t id = engine_db_id(db);
    *out = cached(x->dbs, id, version);
    if (!*out) {
        struct deql_reg *reg = NULL;
        struct deql_error perr = {0};
        rc = build_reg(script, len, &reg, &perr);
        if (rc) {
            log_error("deql: database %s: the stored registry (version %llu) does not apply: "
                      "%s", engine_db_name(db), (unsigned long long)version, perr.msg);
            rc = ERR_CORRUPT;
        } else {
            *out = reg_wrap(reg, version, id);
            keep(x->dbs, *out);
        }
    }
    free(script);
    return rc;
}

/* ---- applying ---- */

/* Checks that every statement of script is a definition; sets out->msg otherwise. */
static int only_definitions(const char *script, size_t len, struct dq_apply *out)
{
    struct deql_script *s = NULL;
    int rc = deql_parse(script, len, &s, &out->perr);
    if (rc) {
        snprintf(out->msg, sizeof out->msg, "line %d, column %d: %s", out->perr.line,
                 out->perr.column, out->perr.msg);
        return rc;
    }
    for (size_t i = 0; i < s->count; i++) {
        if (!dq_is_definition(s->stmts[i].kind)) {
            snprintf(out->msg, sizeof out->msg,
                     "line %d: %s is not a definition (only CREATE, ALTER ... ADD and USE "
                     "TEMPLATE are)",
                     s->stmts[i].line, deql_stmt_kind_name(s->stmts[i].kind));
            deql_script_free(s);
            return ERR_INVALID;
        }
    }
    if (s->count == 0) {
        snprintf(out->msg, sizeof out->msg, "the script holds no statement");
        deql_script_free(s);
        return ERR_INVALID;
    }
    out->applied = s->count;
    deql_script_free(s);
    return 0;
}

static void set_reg_error(struct dq_apply *out, const struct deql_error *e)
{
    if (e->line > 0) {
        snprintf(out->msg, sizeof out->msg, "line %d, column %d: %s", e->line, e->column,
                 e->msg);
    } else {
        snprintf(out->msg, sizeof out->msg, "%s", e->msg);
    }
}

/* Deploys reg's export as the next version of db's DeReg document; *version gets it. */
static int deploy(struct deql_ctx *x, struct db *db, const struct deql_reg *reg,
                  uint64_t *version, struct dq_apply *out)
{
    struct buf script, source;
    buf_init(&script);
    buf_init(&source);
    deql_reg_export(reg, &script);
    json_t *doc = json_pack("{s:s%}", "deql", script.ptr ? script.ptr : "", script.len);
    jenc_tree(doc, &source, SIZE_MAX, 4);
    json_decref(doc);
    struct comp_def def = {.kind = COMP_DOCUMENT, .lang = LOGIC_LANG_JSON};
    snprintf(def.name, sizeof def.name, "%s", DEQL_DEREG_COMPONENT);
    def.source = buf_steal(&source, &def.source_len);
    struct logic_guard guard = {.kind = COMP_DOCUMENT};
    struct logic_error le = {0};
    int rc = logic_deploy_as(x->logic, db, &def, &guard, &le);
    if (rc == ERR_TOOBIG) {
        snprintf(out->msg, sizeof out->msg,
                 "the registry would be larger than one event of this database may be");
    } else if (rc) {
        snprintf(out->msg, sizeof out->msg, "the registry could not be stored: %s%s%.200s",
                 err_name(rc), le.message[0] ? ": " : "", le.message);
    }
    *version = def.version;
    comp_def_fini(&def);
    buf_fini(&script);
    return rc;
}

/* The apply, under apply_mu. */
static int apply_locked(struct deql_ctx *x, struct db *db, const char *script, size_t len,
                        struct dq_apply *out)
{
    char *stored;
    size_t stored_len;
    uint64_t version;
    int rc = stored_script(x, db, &stored, &stored_len, &version);
    if (rc) {
        snprintf(out->msg, sizeof out->msg, "the registry could not be read: %s", err_name(rc));
        return rc;
    }
    struct deql_reg *reg = NULL;
    rc = build_reg(stored, stored_len, &reg, &out->perr);
    free(stored);
    if (rc) {
        snprintf(out->msg, sizeof out->msg, "the stored registry does not rebuild");
        return ERR_CORRUPT;
    }
    rc = deql_reg_apply_script(reg, script, len, NULL, &out->perr);
    if (rc) {
        set_reg_error(out, &out->perr);
    }
    struct sql_error se = {{0}};
    if (!rc && dq_conn_check(x, reg, &se) != 0) {
        snprintf(out->msg, sizeof out->msg, "the registry does not build on SQL: %s", se.msg);
        rc = ERR_INVALID;
    }
    uint64_t next = 0;
    if (!rc) {
        rc = deploy(x, db, reg, &next, out);
    }
    if (rc) {
        deql_reg_free(reg);
        return rc;
    }
    struct dq_reg *r = reg_wrap(reg, next, engine_db_id(db));
    keep(x->dbs, r);
    dq_reg_unref(r);
    return 0;
}

int dq_reg_apply(struct deql_ctx *x, struct db *db, const char *script, size_t len,
                 struct dq_apply *out)
{
    memset(out, 0, sizeof(*out));
    int rc = only_definitions(script, len, out);
    if (rc) {
        return rc;
    }
    pthread_mutex_lock(&x->dbs->apply_mu);
    rc = apply_locked(x, db, script, len, out);
    pthread_mutex_unlock(&x->dbs->apply_mu);
    return rc;
}
