/* Each database's DeReg, durable as the scripts applied to it: one event per
 * script in the database's stream DEQL_DEREG_STREAM, read back and applied
 * again in order at first use after a start. A registry in force is never
 * changed: applying a script builds a new one (every stored script again, then
 * the new one), checks that it builds on SQLite, appends the script with the
 * stream's version expected, and swaps it in. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "util/errors.h"
#include "util/log.h"
#include "json/jenc.h"

/* One database's registry and the scripts it was built from. */
struct entry {
    uint64_t db_id;
    struct dq_reg *cur; /* in force, or NULL before the first load */
    char **scripts;     /* every applied script, in order */
    size_t nscripts;
};

struct deql_dbs {
    pthread_mutex_t mu;       /* the map and each entry's cur */
    pthread_mutex_t apply_mu; /* one apply at a time (then the stream's version is ours) */
    struct strmap map;        /* database name -> struct entry */
};

static const char EVENT_TYPE[] = "deql.script";

struct deql_dbs *dq_dbs_new(void)
{
    struct deql_dbs *d = xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->apply_mu, NULL);
    strmap_init(&d->map, sizeof(struct entry));
    return d;
}

static void entry_clear(struct entry *e)
{
    if (e->cur) {
        dq_reg_unref(e->cur);
    }
    for (size_t i = 0; i < e->nscripts; i++) {
        free(e->scripts[i]);
    }
    free(e->scripts);
    memset(e, 0, sizeof(*e));
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
        entry_clear(v);
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

static struct dq_reg *reg_wrap(struct deql_reg *reg, uint64_t version, uint64_t db_id)
{
    struct dq_reg *r = xcalloc(1, sizeof(*r));
    r->refs = 1;
    r->reg = reg;
    r->version = version;
    r->db_id = db_id;
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

/* ---- loading ---- */

struct load {
    char **scripts;
    size_t n, cap;
    int err;
};

static int load_one(void *arg, const struct event_rec *ev)
{
    struct load *l = arg;
    json_t *doc = json_loadb(ev->data.ptr, ev->data.len, 0, NULL);
    const char *s = json_string_value(json_object_get(doc, "deql"));
    if (!s) {
        json_decref(doc);
        l->err = ERR_CORRUPT;
        return 1;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->scripts = xrealloc(l->scripts, l->cap * sizeof(char *));
    }
    l->scripts[l->n++] = xstrndup(s, json_string_length(json_object_get(doc, "deql")));
    json_decref(doc);
    return 0;
}

/* Reads every stored script of db from version `from` on, appending to *l. */
static int read_scripts(struct db *db, uint64_t from, struct load *l)
{
    static const struct slice stream = {DEQL_DEREG_STREAM, sizeof DEQL_DEREG_STREAM - 1};
    for (;;) {
        size_t before = l->n;
        struct stream_rec s;
        int rc = engine_read_stream(db, stream, NULL, from, false, 256, load_one, l, &s, NULL);
        if (rc == ERR_NOTFOUND) {
            return 0;
        }
        if (rc || l->err) {
            return rc ? rc : l->err;
        }
        from += l->n - before;
        if (l->n == before || from > s.version) {
            return 0;
        }
    }
}

/* A registry from scripts[0..n); *bad gets the index of a script that fails. */
static int build_reg(char *const *scripts, size_t n, struct deql_reg **out, size_t *bad,
                     struct deql_error *err)
{
    struct deql_reg *reg = deql_reg_new();
    for (size_t i = 0; i < n; i++) {
        int rc = deql_reg_apply_script(reg, scripts[i], strlen(scripts[i]), NULL, err);
        if (rc) {
            deql_reg_free(reg);
            *bad = i;
            return rc;
        }
    }
    *out = reg;
    return 0;
}

/* The entry of db, made when missing (under d->mu). */
static struct entry *entry_of(struct deql_dbs *d, struct db *db)
{
    const char *name = engine_db_name(db);
    bool is_new;
    struct entry *e = strmap_put(&d->map, name, strlen(name), &is_new);
    if (!is_new && e->db_id != engine_db_id(db)) {
        entry_clear(e); /* the database was deleted and made again */
        is_new = true;
    }
    if (is_new) {
        memset(e, 0, sizeof(*e));
        e->db_id = engine_db_id(db);
    }
    return e;
}

/* Loads db's registry into its entry when not loaded (under apply_mu). */
static int ensure_loaded(struct deql_ctx *x, struct db *db)
{
    pthread_mutex_lock(&x->dbs->mu);
    struct entry *e = entry_of(x->dbs, db);
    bool loaded = e->cur != NULL;
    pthread_mutex_unlock(&x->dbs->mu);
    if (loaded) {
        return 0;
    }
    struct load l = {0};
    int rc = read_scripts(db, 1, &l);
    struct deql_reg *reg = NULL;
    size_t bad = 0;
    struct deql_error perr = {0};
    if (!rc) {
        rc = build_reg(l.scripts, l.n, &reg, &bad, &perr);
        if (rc) {
            log_error("deql: database %s: stored script %zu no longer applies: %s",
                      engine_db_name(db), bad + 1, perr.msg);
            rc = ERR_INVALID;
        }
    }
    if (rc) {
        for (size_t i = 0; i < l.n; i++) {
            free(l.scripts[i]);
        }
        free(l.scripts);
        return rc;
    }
    pthread_mutex_lock(&x->dbs->mu);
    struct entry *e2 = entry_of(x->dbs, db);
    if (!e2->cur) {
        e2->scripts = l.scripts;
        e2->nscripts = l.n;
        e2->cur = reg_wrap(reg, l.n, e2->db_id);
        reg = NULL;
        l.scripts = NULL;
        l.n = 0;
    }
    pthread_mutex_unlock(&x->dbs->mu);
    if (reg) {
        deql_reg_free(reg);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.scripts[i]);
    }
    free(l.scripts);
    return 0;
}

int dq_reg_get(struct deql_ctx *x, struct db *db, struct dq_reg **out)
{
    for (;;) {
        pthread_mutex_lock(&x->dbs->mu);
        struct entry *e = entry_of(x->dbs, db);
        struct dq_reg *r = e->cur;
        if (r) {
            __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
        }
        pthread_mutex_unlock(&x->dbs->mu);
        if (r) {
            *out = r;
            return 0;
        }
        pthread_mutex_lock(&x->dbs->apply_mu);
        int rc = ensure_loaded(x, db);
        pthread_mutex_unlock(&x->dbs->apply_mu);
        if (rc) {
            return rc;
        }
    }
}

/* ---- applying ---- */

/* Checks that every statement of script is a definition; sets out->msg
 * otherwise. */
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

/* Appends script to db's DeReg stream, expecting it at version. */
static int append_script(struct db *db, const char *script, size_t len, uint64_t version)
{
    json_t *doc = json_pack("{s:s%}", "deql", script, len);
    struct buf data;
    buf_init(&data);
    int rc = jenc_tree(doc, &data, SIZE_MAX, 4) ? ERR_INVALID : 0;
    json_decref(doc);
    struct append_event ev = {
        .type = {EVENT_TYPE, sizeof EVENT_TYPE - 1},
        .data = {data.ptr, data.len},
        .metadata = {"{}", 2},
        .tags = {"[]", 2},
    };
    struct append_part part = {
        .stream = {DEQL_DEREG_STREAM, sizeof DEQL_DEREG_STREAM - 1},
        .events = &ev,
        .count = 1,
        .expect = {.kind = EXPECT_VERSION, .version = version},
    };
    struct append_req req = {.parts = &part, .nparts = 1};
    if (!rc) {
        rc = engine_append_wait(db, &req);
        if (!rc) {
            rc = req.err;
        }
    }
    buf_fini(&data);
    return rc;
}

static void set_reg_error(struct dq_apply *out, const struct deql_error *e)
{
    if (e->line > 0) {
        snprintf(out->msg, sizeof out->msg, "line %d, column %d: %s", e->line, e->column, e->msg);
    } else {
        snprintf(out->msg, sizeof out->msg, "%s", e->msg);
    }
}

/* The apply, under apply_mu with the registry loaded. */
static int apply_locked(struct deql_ctx *x, struct db *db, const char *script, size_t len,
                        struct dq_apply *out)
{
    pthread_mutex_lock(&x->dbs->mu);
    struct entry *e = entry_of(x->dbs, db);
    struct dq_reg *cur = e->cur;
    __atomic_add_fetch(&cur->refs, 1, __ATOMIC_ACQ_REL);
    char **scripts = xcalloc(e->nscripts + 1, sizeof(char *));
    size_t n = e->nscripts;
    for (size_t i = 0; i < n; i++) {
        scripts[i] = e->scripts[i]; /* borrowed: only apply_mu's holder changes the list */
    }
    pthread_mutex_unlock(&x->dbs->mu);
    scripts[n] = xstrndup(script, len);
    struct deql_reg *reg = NULL;
    size_t bad = 0;
    int rc = build_reg(scripts, n + 1, &reg, &bad, &out->perr);
    if (rc) {
        set_reg_error(out, &out->perr);
        if (bad < n) {
            snprintf(out->msg, sizeof out->msg, "the stored registry does not rebuild");
            rc = ERR_INVALID;
        }
    }
    struct sql_error se = {{0}};
    if (!rc && dq_conn_check(x, reg, &se) != 0) {
        snprintf(out->msg, sizeof out->msg, "the registry does not build on SQL: %s", se.msg);
        rc = ERR_INVALID;
    }
    if (!rc) {
        rc = append_script(db, script, len, cur->version);
        if (rc) {
            snprintf(out->msg, sizeof out->msg, "the registry could not be stored: %s",
                     err_name(rc));
        }
    }
    if (rc) {
        deql_reg_free(reg);
        free(scripts[n]);
        free(scripts);
        dq_reg_unref(cur);
        return rc;
    }
    pthread_mutex_lock(&x->dbs->mu);
    struct entry *e2 = entry_of(x->dbs, db);
    free(e2->scripts);
    e2->scripts = scripts;
    e2->nscripts = n + 1;
    struct dq_reg *old = e2->cur;
    e2->cur = reg_wrap(reg, cur->version + 1, e2->db_id);
    pthread_mutex_unlock(&x->dbs->mu);
    dq_reg_unref(old);
    dq_reg_unref(cur);
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
    rc = ensure_loaded(x, db);
    if (rc) {
        snprintf(out->msg, sizeof out->msg, "the registry could not be read: %s", err_name(rc));
    } else {
        rc = apply_locked(x, db, script, len, out);
    }
    pthread_mutex_unlock(&x->dbs->apply_mu);
    return rc;
}
