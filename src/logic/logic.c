/* The logic layer (logic/logic.h): component sets per database, loaded modules, reducer state
 * with snapshots. */
#include "logic/logic.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/delivery.h"
#include "engine/derived.h"
#include "json/validate.h"
#include "logic/command.h"
#include "logic/projection.h"
#include "query/filter.h"
#include "util/assert.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/timeutil.h"
#include "util/uuid.h"
#include "util/strmap.h"

/* A database's cached set. */
struct set_ent {
    struct comp_set *set;        /* NULL: read it again */
    uint64_t db_id;              /* the database it was read from (engine_db_id) */
    uint64_t gen;                /* bumped by each invalidation (a deploy or removal) */
};

/* One loaded instance of a component's code (a module serves one thread at a time). */
struct mod_ent {
    pthread_mutex_t mu;          /* held while the module is used or replaced */
    struct mod_set *set;         /* the instances it is one of */
    uint64_t since_ns;           /* when it was taken (time_mono_ns) */
    struct logic_module *m;      /* NULL until loaded */
    uint64_t version;            /* the component version it holds */
    int64_t deployed_us;         /* ... and its deploy time (identifies it across databases
                                    deleted and made again under one name) */
};

/* The instances of one component of one database (entries live until logic_free): calls on
 * several workers at once each take a free one. */
struct mod_set {
    struct mod_ent inst[LOGIC_INSTANCES];
    uint64_t calls;              /* atomic: uses of an instance (calls, folds, decisions) */
    uint64_t errors;             /* atomic: ... that failed */
    uint64_t busy_ns;            /* atomic: time instances were held */
};

struct logic {
    struct logic_config cfg;
    uint64_t nonce;              /* random, per process: caches of an earlier process are
                                    not trusted for lifecycle changes (views) */
    struct projections *projections; /* the runner (logic/projection.h) */
    pthread_mutex_t mu;          /* guards sets and mods (the maps, not what entries hold) */
    struct strmap sets;          /* db name -> struct set_ent */
    struct strmap mods;          /* "db\0component" -> struct mod_set * */
    pthread_mutex_t deploy_mu;   /* deploys and removals one at a time (they would only race
                                    for the logic stream's next version) */
    pthread_mutex_t states_mu;   /* guards states, states_bytes */
    struct strmap states;        /* state_key() -> struct state_ent (in the map's block) */
    size_t states_bytes;
};

enum { STATE_INLINE_BYTES = 64 }; /* states this short are kept in their entry */

/* A reducer state kept in memory: the newest known of one stream. It lives in the map's own
 * block next to its key, with a short state's text too: a lookup touches the slot and that
 * block, not two more allocations. */
struct state_ent {
    uint64_t version, position;
    int64_t updated_us;
    size_t len;                    /* the state's bytes */
    char *big;                     /* owned; the text when len > STATE_INLINE_BYTES */
    char small[STATE_INLINE_BYTES]; /* the text otherwise */
};

static const char *state_text(const struct state_ent *se)
{
    return se->len > STATE_INLINE_BYTES ? se->big : se->small;
}

/* ---- reducer states in memory ---- */

static void states_clear(struct logic *lg)
{
    const char *k;
    size_t klen;
    void *v;
    for (size_t i = 0; strmap_next(&lg->states, &i, &k, &klen, &v);) {
        free(((struct state_ent *)v)->big);
    }
    strmap_clear(&lg->states);
    lg->states_bytes = 0;
}

enum { STATE_KEY_BYTES = 24 + COMP_NAME_BYTES + 24 + LIMIT_STREAM_NAME_BYTES };

/* The key of a stream's state under one reducer version of one database: the database's id
 * and the reducer's version as 8 raw bytes each around its name and a NUL, then the stream
 * (not text: only compared whole; snprintf would cost more than the lookup). */
static size_t state_key(char *out, size_t cap, struct db *db, const struct comp_def *def,
                        struct slice stream)
{
    uint64_t id = engine_db_id(db);
    uint64_t version = def->version;
    size_t name = strlen(def->name);
    ASSERT(cap >= 2 * sizeof id + name + 1);
    size_t len = 0;
    memcpy(out, &id, sizeof id);
    len += sizeof id;
    memcpy(out + len, def->name, name + 1);
    len += name + 1;
    memcpy(out + len, &version, sizeof version);
    len += sizeof version;
    size_t take = stream.len < cap - len ? stream.len : cap - len;
    memcpy(out + len, stream.ptr, take);
    return len + take;
}

/* Copies the kept state of key into out when it is at version (0: any); true when it was. */
static bool states_get(struct logic *lg, const char *key, size_t klen, uint64_t version,
                       struct logic_state *out)
{
    pthread_mutex_lock(&lg->states_mu);
    struct state_ent *se = strmap_get(&lg->states, key, klen);
    bool hit = se && (!version || se->version == version);
    if (hit) {
        out->version = se->version;
        out->position = se->position;
        out->updated_us = se->updated_us;
        buf_reset(&out->state);
        buf_add(&out->state, state_text(se), se->len);
    }
    pthread_mutex_unlock(&lg->states_mu);
    return hit;
}

/* Keeps s as key's state unless a newer one is kept. */
static void states_put(struct logic *lg, const char *key, size_t klen, const struct logic_state *s)
{
    pthread_mutex_lock(&lg->states_mu);
    if (lg->states.count >= LOGIC_STATE_CACHE ||
        lg->states_bytes + s->state.len > LOGIC_STATE_CACHE_BYTES) {
        states_clear(lg); /* rare: start over rather than track recency */
    }
    bool is_new;
    struct state_ent *se = strmap_put(&lg->states, key, klen, &is_new); /* new: zeroed */
    if (is_new || se->version < s->version) {
        lg->states_bytes -= se->len;
        free(se->big);
        se->big = NULL;
        se->len = s->state.len;
        if (se->len > STATE_INLINE_BYTES) {
            se->big = xmalloc(se->len);
            memcpy(se->big, s->state.ptr, se->len);
        } else if (se->len) {
            memcpy(se->small, s->state.ptr, se->len);
        }
        lg->states_bytes += se->len;
        se->version = s->version;
        se->position = s->position;
        se->updated_us = s->updated_us;
    }
    pthread_mutex_unlock(&lg->states_mu);
}

int logic_new(const struct logic_config *cfg, struct logic **out)
{
    struct logic *lg = xcalloc(1, sizeof(*lg));
    lg->cfg = *cfg;
    pthread_mutex_init(&lg->mu, NULL);
    strmap_init(&lg->sets, sizeof(struct set_ent));
    strmap_init(&lg->mods, sizeof(struct mod_set *));
    uint8_t u[UUID_LEN];
    uuid_v7(time_now_us(), u); /* its last 8 bytes are random */
    memcpy(&lg->nonce, u + 8, sizeof lg->nonce);
    pthread_mutex_init(&lg->states_mu, NULL);
    pthread_mutex_init(&lg->deploy_mu, NULL);
    strmap_init(&lg->states, sizeof(struct state_ent));
    int rc = proj_start(lg, cfg->engine, &lg->projections);
    if (rc) {
        logic_free(lg);
        return rc;
    }
    *out = lg;
    return 0;
}

struct logic_env *logic_runtimes(struct logic *lg)
{
    return lg->cfg.env;
}

const struct logic_limits *logic_budgets(struct logic *lg)
{
    return &lg->cfg.limits;
}

engine_filter_parse_fn *logic_filter_parser(struct logic *lg)
{
    return lg->cfg.parse_filter;
}

const struct logic_event_format *logic_event_format(struct logic *lg, const char *name)
{
    for (size_t i = 0; name && lg->cfg.event_formats && lg->cfg.event_formats[i]; i++) {
        if (!strcmp(lg->cfg.event_formats[i]->name, name)) {
            return lg->cfg.event_formats[i];
        }
    }
    return NULL;
}

engine_event_json_fn *logic_renderer(struct logic *lg, const struct comp_def *def)
{
    const struct logic_event_format *f = logic_event_format(lg, def->event_format);
    return f ? f->render : lg->cfg.format_event;
}

struct projections *logic_projections(struct logic *lg)
{
    return lg->projections;
}

const char *logic_webhook_allow(struct logic *lg)
{
    return lg->cfg.webhook_allow;
}

unsigned logic_command_tries(struct logic *lg)
{
    return lg->cfg.command_tries ? lg->cfg.command_tries : COMMAND_TRIES;
}

void logic_stop(struct logic *lg)
{
    if (lg && lg->projections) {
        proj_halt(lg->projections); /* freed by logic_free: readers may still hold it */
    }
}

void logic_free(struct logic *lg)
{
    if (!lg) {
        return;
    }
    proj_stop(lg->projections); /* first: it uses the sets and the runtimes */
    const char *k;
    size_t klen;
    void *v;
    for (size_t i = 0; strmap_next(&lg->sets, &i, &k, &klen, &v);) {
        comp_set_unref(((struct set_ent *)v)->set);
    }
    for (size_t i = 0; strmap_next(&lg->mods, &i, &k, &klen, &v);) {
        struct mod_set *ms = *(struct mod_set **)v;
        for (int j = 0; j < LOGIC_INSTANCES; j++) {
            logic_unload(ms->inst[j].m);
            pthread_mutex_destroy(&ms->inst[j].mu);
        }
        free(ms);
    }
    states_clear(lg);
    strmap_fini(&lg->states);
    pthread_mutex_destroy(&lg->states_mu);
    pthread_mutex_destroy(&lg->deploy_mu);
    strmap_fini(&lg->sets);
    strmap_fini(&lg->mods);
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

/* ---- component sets ---- */

/* The set is cached per database; only this layer writes the logic stream, and it drops the
 * cached set after each deploy or removal (logic_set_changed), so a cached set read from the
 * same database (engine_db_id: not one deleted and made again under its name) is current. */
int logic_set(struct logic *lg, struct db *db, struct comp_set **out)
{
    const char *name = engine_db_name(db);
    size_t n = strlen(name);
    uint64_t id = engine_db_id(db);
    pthread_mutex_lock(&lg->mu);
    bool is_new;
    struct set_ent *se = strmap_put(&lg->sets, name, n, &is_new);
    struct comp_set *set = se->set && se->db_id == id ? se->set : NULL;
    uint64_t gen = se->gen;
    if (set) {
        comp_set_ref(set);
    }
    pthread_mutex_unlock(&lg->mu);
    if (set) {
        *out = set;
        return 0;
    }
    int rc = comp_set_read(db, &set);
    if (rc) {
        return rc;
    }
    pthread_mutex_lock(&lg->mu);
    se = strmap_put(&lg->sets, name, n, &is_new);
    if (se->gen == gen) { /* no deploy or removal since the read began: it is current */
        comp_set_unref(se->set);
        se->set = set;
        se->db_id = id;
        comp_set_ref(set);
    }
    pthread_mutex_unlock(&lg->mu);
    *out = set;
    return 0;
}

/* Caches set (the caller's reference stays the caller's) as db's, in place of whatever is
 * cached: the deploy or removal that made it was this layer's, under deploy_mu. */
static void logic_set_advance(struct logic *lg, struct db *db, struct comp_set *set)
{
    const char *name = engine_db_name(db);
    pthread_mutex_lock(&lg->mu);
    bool is_new;
    struct set_ent *se = strmap_put(&lg->sets, name, strlen(name), &is_new);
    comp_set_unref(se->set);
    comp_set_ref(set);
    se->set = set;
    se->db_id = engine_db_id(db);
    se->gen++; /* a read that began before it does not replace it */
    pthread_mutex_unlock(&lg->mu);
}

/* Drops db's cached set: its logic stream changed (or may have). */
static void logic_set_changed(struct logic *lg, struct db *db)
{
    const char *name = engine_db_name(db);
    pthread_mutex_lock(&lg->mu);
    bool is_new;
    struct set_ent *se = strmap_put(&lg->sets, name, strlen(name), &is_new);
    comp_set_unref(se->set);
    se->set = NULL;
    se->gen++;
    pthread_mutex_unlock(&lg->mu);
}

/* ---- modules ---- */

static struct mod_set *mod_entry(struct logic *lg, struct db *db, const char *comp)
{
    char key[LIMIT_DB_NAME_BYTES + 1 + COMP_NAME_BYTES + 1];
    int n = snprintf(key, sizeof key, "%s%c%s", engine_db_name(db), '\0', comp);
    pthread_mutex_lock(&lg->mu);
    bool is_new;
    struct mod_set **slot = strmap_put(&lg->mods, key, (size_t)n, &is_new);
    if (is_new) {
        *slot = xcalloc(1, sizeof(**slot));
        for (int k = 0; k < LOGIC_INSTANCES; k++) {
            pthread_mutex_init(&(*slot)->inst[k].mu, NULL);
            (*slot)->inst[k].set = *slot;
        }
    }
    struct mod_set *ms = *slot;
    pthread_mutex_unlock(&lg->mu);
    return ms;
}

/* Locks and returns an instance of def's module in db (a free one if any, else the first),
 * loading it (or its new version) first. Returns NULL with *err and *rc set when it does not
 * load (nothing locked then). */
static struct mod_ent *mod_acquire(struct logic *lg, struct db *db, const struct comp_def *def,
                                   struct logic_error *err, int *rc)
{
    struct mod_set *ms = mod_entry(lg, db, def->name);
    struct mod_ent *me = NULL;
    for (int k = 0; k < LOGIC_INSTANCES && !me; k++) {
        me = pthread_mutex_trylock(&ms->inst[k].mu) == 0 ? &ms->inst[k] : NULL;
    }
    if (!me) {
        me = &ms->inst[0];
        pthread_mutex_lock(&me->mu);
    }
    me->since_ns = time_mono_ns();
    __atomic_add_fetch(&ms->calls, 1, __ATOMIC_RELAXED);
    if (me->m && me->version == def->version && me->deployed_us == def->deployed_us) {
        return me;
    }
    logic_unload(me->m);
    me->m = NULL;
    *rc = logic_load(lg->cfg.env, def->lang, def->name, def->source, def->source_len,
                     comp_entries(def->kind), &lg->cfg.limits, &me->m, err);
    if (*rc) {
        me->m = NULL;
        __atomic_add_fetch(&ms->errors, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&me->mu);
        return NULL;
    }
    me->version = def->version;
    me->deployed_us = def->deployed_us;
    return me;
}

static void mod_release(struct mod_ent *me)
{
    __atomic_add_fetch(&me->set->busy_ns, time_mono_ns() - me->since_ns, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&me->mu);
}

/* Unloads every loaded instance of component name of db (it was removed). */
static void mod_unload_all(struct logic *lg, struct db *db, const char *name)
{
    struct mod_set *ms = mod_entry(lg, db, name);
    for (int k = 0; k < LOGIC_INSTANCES; k++) {
        pthread_mutex_lock(&ms->inst[k].mu);
        logic_unload(ms->inst[k].m);
        ms->inst[k].m = NULL;
        pthread_mutex_unlock(&ms->inst[k].mu);
    }
}

/* Counts a failed use of an instance (its code failed). */
static void mod_failed(struct mod_ent *me)
{
    __atomic_add_fetch(&me->set->errors, 1, __ATOMIC_RELAXED);
}

void logic_component_stats(struct logic *lg, struct db *db, const char *name,
                           struct logic_stats *out, struct buf *logs)
{
    memset(out, 0, sizeof(*out));
    struct mod_set *ms = mod_entry(lg, db, name);
    out->calls = __atomic_load_n(&ms->calls, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&ms->errors, __ATOMIC_RELAXED);
    out->busy_ns = __atomic_load_n(&ms->busy_ns, __ATOMIC_RELAXED);
    size_t shown = 0;
    for (int k = 0; k < LOGIC_INSTANCES && logs; k++) {
        struct mod_ent *me = &ms->inst[k];
        char *lines[LOGIC_LOG_LINES];
        if (pthread_mutex_trylock(&me->mu) != 0) {
            continue; /* busy running code: an I/O thread does not wait for it */
        }
        size_t n = me->m ? logic_logs(me->m, lines, LOGIC_LOG_LINES) : 0;
        pthread_mutex_unlock(&me->mu);
        for (size_t i = 0; i < n; i++) {
            buf_adds(logs, shown++ ? "," : "");
            buf_add_json_str(logs, lines[i], strlen(lines[i]));
            free(lines[i]);
        }
    }
}

struct logic_module *logic_acquire(struct logic *lg, struct db *db, const struct comp_def *def,
                                   struct logic_instance **out, struct logic_error *err,
                                   int *rc)
{
    struct mod_ent *me = mod_acquire(lg, db, def, err, rc);
    *out = (struct logic_instance *)me;
    return me ? me->m : NULL;
}

void logic_release(struct logic_instance *inst, bool failed)
{
    if (inst) {
        if (failed) {
            mod_failed((struct mod_ent *)inst);
        }
        mod_release((struct mod_ent *)inst);
    }
}

/* ---- deploys ---- */

/* The derived table of a reducer version's snapshots. */
static void snap_table(char *out, size_t n, const char *name, uint64_t version)
{
    snprintf(out, n, "r:%s:%llu", name, (unsigned long long)version);
}

static void drop_snapshots(struct db *db, const char *name, uint64_t version)
{
    struct derived_txn *t;
    char table[DERIVED_TABLE_BYTES + 1];
    snap_table(table, sizeof table, name, version);
    if (derived_begin(db, true, &t) == 0) {
        if (derived_drop(t, table) == 0) {
            derived_commit(t);
        } else {
            derived_abort(t);
        }
    }
}

enum { DEPLOY_TRIES = 8 }; /* a deploy racing others re-reads the set this often */

/* Drops what a version of component name computed in the derived store (reducer snapshots,
 * view results; a projection's tables go with the runner's copy of it). */
static void drop_derived(struct db *db, const char *name, uint64_t version)
{
    char table[DERIVED_TABLE_BYTES + 1];
    snprintf(table, sizeof table, "v:%s:%llu", name, (unsigned long long)version);
    struct derived_txn *t;
    if (derived_begin(db, true, &t) == 0) {
        if (derived_drop(t, table) == 0) {
            derived_commit(t);
        } else {
            derived_abort(t);
        }
    }
    drop_snapshots(db, name, version);
}

/* Checks a projection's or view's filter as queries take it. */
static int check_filter(struct logic *lg, const struct comp_def *def, struct logic_error *err)
{
    if (!def->filter || !lg->cfg.parse_filter) {
        return 0;
    }
    struct filter f;
    if (lg->cfg.parse_filter((struct slice){def->filter, strlen(def->filter)}, &f) != 0) {
        err->kind = LOGIC_E_INVALID;
        snprintf(err->message, sizeof err->message, "filter: not a valid query filter");
        return ERR_INVALID;
    }
    filter_fini(&f);
    return 0;
}

/* A component's eventFormat must be one registered in this process. */
static int check_format(struct logic *lg, const struct comp_def *def, struct logic_error *err)
{
    if (!def->event_format || logic_event_format(lg, def->event_format)) {
        return 0;
    }
    err->kind = LOGIC_E_INVALID;
    int n = snprintf(err->message, sizeof err->message, "eventFormat: no event format called "
                     "\"%s\" (known:", def->event_format);
    for (size_t i = 0; lg->cfg.event_formats && lg->cfg.event_formats[i] && n > 0 &&
                       (size_t)n < sizeof err->message; i++) {
        n += snprintf(err->message + n, sizeof err->message - (size_t)n, " %s",
                      lg->cfg.event_formats[i]->name);
    }
    if (n > 0 && (size_t)n < sizeof err->message) {
        snprintf(err->message + n, sizeof err->message - (size_t)n, ")");
    }
    return ERR_INVALID;
}

/* A projection's webhook URL must reach an address the operator allows (resolves its host:
 * worker). ERR_DENIED with err->kind LOGIC_E_FORBIDDEN (a refused address) or
 * LOGIC_E_INVALID (the host does not resolve). */
static int check_webhook(struct logic *lg, const struct comp_def *def, struct logic_error *err)
{
    if (!def->webhook) {
        return 0;
    }
    struct comp_webhook *hook = xcalloc(1, sizeof(*hook));
    struct comp_error ce;
    int rc = comp_webhook_parse((struct slice){def->webhook, strlen(def->webhook)}, hook, &ce);
    if (!rc) {
        rc = delivery_check_url(lg->cfg.webhook_allow, hook->url, err->message,
                                sizeof err->message);
    } else {
        snprintf(err->message, sizeof err->message, "%s", ce.message);
    }
    free(hook);
    if (rc) {
        err->kind = rc == ERR_DENIED ? LOGIC_E_FORBIDDEN : LOGIC_E_INVALID;
        return ERR_DENIED;
    }
    return 0;
}

/* True when the component in force, old, may be replaced by a component of kind (0: it is
 * removed) under guard g: old has the guard's kind (a guard of kind 0: the new component's
 * own kind, any kind for a removal) and the guard's event format. */
static bool guard_ok(const struct comp_def *old, const struct logic_guard *g,
                     enum comp_kind kind)
{
    if (!g || !old) {
        return true;
    }
    bool same_format = g->event_format ? old->event_format &&
                                         !strcmp(old->event_format, g->event_format)
                                       : !old->event_format;
    enum comp_kind want = g->kind ? g->kind : kind;
    return (!want || old->kind == want) && same_format;
}

static int refuse(struct logic_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct logic_error *err, int rc, const char *fmt, ...)
{
    va_list ap;
    err->kind = LOGIC_E_INVALID;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

/* Checks def before it is deployed: a document's source is a JSON text; code loads, with the
 * entry points its kind needs; a filter, event format and webhook hold. */
static int check_def(struct logic *lg, const struct comp_def *def, struct logic_error *err)
{
    if (check_format(lg, def, err)) {
        return ERR_INVALID;
    }
    if (def->kind == COMP_DOCUMENT) {
        struct jsonv_error je;
        if (def->lang != LOGIC_LANG_JSON) {
            return refuse(err, ERR_INVALID, "a document's language is json");
        }
        if (jsonv_validate(def->source, def->source_len, LIMIT_JSON_DEPTH, &je) != 0) {
            return refuse(err, ERR_INVALID, "source: not a JSON document (byte %zu: %s)",
                          je.offset, je.msg);
        }
        return 0;
    }
    if (check_filter(lg, def, err)) {
        return ERR_INVALID;
    }
    if (check_webhook(lg, def, err)) {
        return ERR_DENIED;
    }
    struct logic_module *m;
    int rc = logic_load(lg->cfg.env, def->lang, def->name, def->source, def->source_len,
                        comp_entries(def->kind), &lg->cfg.limits, &m, err);
    if (!rc) {
        logic_unload(m);
    }
    return rc;
}

/* Each name of a batch valid and named once: else ERR_INVALID with *failed at the second. */
static int check_names(const struct comp_def *defs, size_t n, const char *const *removals,
                       size_t nremovals, struct logic_error *err, size_t *failed)
{
    for (size_t i = 0; i < n + nremovals; i++) {
        const char *name = i < n ? defs[i].name : removals[i - n];
        *failed = i;
        if (!name || !comp_name_ok(name, strlen(name))) {
            return refuse(err, ERR_INVALID, "not a component name: %.80s", name ? name : "");
        }
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(name, j < n ? defs[j].name : removals[j - n])) {
                return refuse(err, ERR_INVALID, "%s appears twice in one deploy", name);
            }
        }
    }
    return 0;
}

/* The events of one batch as planned against a set, and what each replaces. */
struct batch {
    struct comp_change *changes; /* count: the removals that apply, then every deploy */
    uint64_t *replaced;          /* per change: the version whose derived data goes (0: none) */
    size_t count;
};

/* True when name leaves the set or is replaced in batch b. */
static bool in_batch(const struct batch *b, const char *name)
{
    for (size_t i = 0; i < b->count; i++) {
        const char *c = b->changes[i].def ? b->changes[i].def->name : b->changes[i].removed;
        if (!strcmp(c, name)) {
            return true;
        }
    }
    return false;
}

/* ERR_EXISTS (err set) when reducer def would share its category, after the batch b (def's
 * own change included), with another reducer: one staying in force, or another of b. */
static int category_free(const struct comp_set *set, const struct batch *b,
                         const struct comp_def *def, struct logic_error *err)
{
    const char *holder = NULL;
    for (size_t i = 0; def->kind == COMP_REDUCER && i < b->count && !holder; i++) {
        const struct comp_def *o = b->changes[i].def;
        bool same = o && o != def && o->kind == COMP_REDUCER;
        holder = same && !strcmp(o->category, def->category) ? o->name : NULL;
    }
    for (size_t i = 0; def->kind == COMP_REDUCER && i < set->count && !holder; i++) {
        const struct comp_def *o = &set->defs[i];
        bool same = o->kind == COMP_REDUCER && !in_batch(b, o->name);
        holder = same && !strcmp(o->category, def->category) ? o->name : NULL;
    }
    if (holder) {
        return refuse(err, ERR_EXISTS, "reducer %s already holds category %.100s", holder,
                      def->category);
    }
    return 0;
}

/* Plans the batch against set: the removals of names in force that the guard covers (others
 * are skipped), then each deploy with its version, checked against the guard, the names a
 * database may hold and the reducers' categories. Returns 0, or ERR_EXISTS / ERR_TOOBIG with
 * err and *failed set. */
static int plan_batch(const struct comp_set *set, struct comp_def *defs, size_t n,
                      const char *const *removals, size_t nremovals,
                      const struct logic_guard *guard, struct batch *b, struct logic_error *err,
                      size_t *failed)
{
    b->count = 0;
    for (size_t j = 0; j < nremovals; j++) {
        const struct comp_def *old = comp_set_find(set, removals[j]);
        if (old && guard_ok(old, guard, 0)) {
            b->changes[b->count] = (struct comp_change){.removed = removals[j]};
            b->replaced[b->count++] = old->version;
        }
    }
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++) {
        const struct comp_def *old = comp_set_find(set, defs[i].name);
        *failed = i;
        if (!guard_ok(old, guard, defs[i].kind)) {
            return refuse(err, ERR_EXISTS, "another kind of component has this name");
        }
        defs[i].version = comp_set_next_version(set, defs[i].name);
        fresh += defs[i].version == 1;
        if (defs[i].version == 1 && set->nseen + fresh > COMP_MAX_PER_DB) {
            return refuse(err, ERR_TOOBIG, "a database holds at most %d component names",
                          COMP_MAX_PER_DB);
        }
        bool has_derived = old && old->kind != COMP_COMMAND && old->kind != COMP_DOCUMENT;
        b->changes[b->count] = (struct comp_change){.def = &defs[i]};
        b->replaced[b->count++] = has_derived ? old->version : 0;
    }
    for (size_t i = 0; i < n; i++) {
        *failed = i;
        int rc = category_free(set, b, &defs[i], err);
        if (rc) {
            return rc;
        }
    }
    *failed = n + nremovals;
    return 0;
}

/* One try of a batch under deploy_mu: plan it against the set in force, append it at that
 * set's version, and cache the set it makes. ERR_CONFLICT: another process came first. */
static int deploy_batch_once(struct logic *lg, struct db *db, struct comp_def *defs, size_t n,
                             const char *const *removals, size_t nremovals,
                             const struct logic_guard *guard, struct batch *b,
                             struct logic_error *err, size_t *failed)
{
    struct comp_set *set;
    int rc = logic_set(lg, db, &set);
    if (rc) {
        return rc;
    }
    rc = plan_batch(set, defs, n, removals, nremovals, guard, b, err, failed);
    int64_t us = 0;
    if (!rc && b->count) {
        rc = comp_deploy_many(db, b->changes, b->count, set->stream_version, &us);
    }
    if (!rc && b->count) { /* the set it made, without reading the whole logic stream again */
        struct comp_set *next = comp_set_apply(set, b->changes, b->count, us);
        logic_set_advance(lg, db, next);
        comp_set_unref(next);
    } else if (rc == ERR_CONFLICT) {
        logic_set_changed(lg, db); /* another process came first: read it again */
    }
    comp_set_unref(set);
    return rc;
}

int logic_deploy_many(struct logic *lg, struct db *db, struct comp_def *defs, size_t n,
                      const char *const *removals, size_t nremovals,
                      const struct logic_guard *guard, struct logic_error *err, size_t *failed)
{
    size_t spare;
    failed = failed ? failed : &spare;
    int rc = check_names(defs, n, removals, nremovals, err, failed);
    for (size_t i = 0; i < n && !rc; i++) {
        *failed = i;
        rc = check_def(lg, &defs[i], err);
    }
    if (rc) {
        return rc;
    }
    *failed = n + nremovals;
    struct batch b = {.changes = xcalloc(n + nremovals + 1, sizeof(*b.changes)),
                      .replaced = xcalloc(n + nremovals + 1, sizeof(*b.replaced))};
    rc = ERR_CONFLICT;
    pthread_mutex_lock(&lg->deploy_mu);
    for (int i = 0; i < DEPLOY_TRIES && rc == ERR_CONFLICT; i++) {
        rc = deploy_batch_once(lg, db, defs, n, removals, nremovals, guard, &b, err, failed);
    }
    pthread_mutex_unlock(&lg->deploy_mu);
    for (size_t i = 0; !rc && i < b.count; i++) { /* what the replaced versions computed */
        const struct comp_change *c = &b.changes[i];
        if (b.replaced[i]) {
            drop_derived(db, c->def ? c->def->name : c->removed, b.replaced[i]);
        }
        if (!c->def) {
            mod_unload_all(lg, db, c->removed); /* its loaded code (a worker process each) */
        }
    }
    if (!rc && b.count) {
        proj_kick(lg->projections);
    }
    free(b.changes);
    free(b.replaced);
    return rc; /* ERR_CONFLICT: others kept deploying */
}

int logic_deploy(struct logic *lg, struct db *db, struct comp_def *def,
                 struct logic_error *err)
{
    return logic_deploy_as(lg, db, def, NULL, err);
}

int logic_deploy_as(struct logic *lg, struct db *db, struct comp_def *def,
                    const struct logic_guard *guard, struct logic_error *err)
{
    return logic_deploy_many(lg, db, def, 1, NULL, 0, guard, err, NULL);
}

int logic_remove(struct logic *lg, struct db *db, const char *name)
{
    return logic_remove_as(lg, db, name, NULL);
}

int logic_remove_as(struct logic *lg, struct db *db, const char *name,
                    const struct logic_guard *guard)
{
    int rc = ERR_CONFLICT;
    pthread_mutex_lock(&lg->deploy_mu);
    for (int i = 0; i < DEPLOY_TRIES && rc == ERR_CONFLICT; i++) {
        struct comp_set *set;
        rc = logic_set(lg, db, &set);
        if (rc) {
            break;
        }
        const struct comp_def *old = comp_set_find(set, name);
        old = guard_ok(old, guard, 0) ? old : NULL; /* not one the caller may remove */
        uint64_t version = old ? old->version : 0;
        bool existed = old != NULL; /* its derived tables go (reducer, view) */
        rc = old ? comp_remove(db, name, set->stream_version) : ERR_NOTFOUND;
        if (!rc) {
            struct comp_set *next = comp_set_next(set, NULL, name, 0);
            logic_set_advance(lg, db, next);
            comp_set_unref(next);
        } else if (rc == ERR_CONFLICT) {
            logic_set_changed(lg, db);
        }
        comp_set_unref(set);
        if (!rc && existed) {
            drop_derived(db, name, version);
            mod_unload_all(lg, db, name); /* its loaded code (a worker process each) */
        }
    }
    pthread_mutex_unlock(&lg->deploy_mu);
    if (!rc) {
        proj_kick(lg->projections);
    }
    return rc;
}

/* ---- reducer state ---- */

/* True when what a read of stream shows can only grow by appends: no lifecycle settings
 * (truncation, max count or age, deletion) and no database retention. Only then is a state
 * kept (snapshot or memory) valid for later reads; otherwise every read folds what is visible
 * now. */
static bool stable_stream(struct db *db, struct slice stream)
{
    struct stream_meta sm;
    struct db_settings ds;
    engine_stream_settings(db, stream, &sm);
    engine_db_settings(db, &ds);
    return !sm.tombstone && !sm.truncate_before && !sm.max_count && !sm.max_age_us &&
           !ds.retention_days;
}

void logic_state_init(struct logic_state *s)
{
    memset(s, 0, sizeof(*s));
    buf_init(&s->state);
}

void logic_state_fini(struct logic_state *s)
{
    buf_fini(&s->state);
}

/* version, position (u64), updated (i64), then a stamp (two u64: 0 0 for none), little
 * endian */
enum { SNAP_HEADER = 40 };

/* What a kept result must match to be used (views: the process and its lifecycle changes). */
struct snap_stamp {
    uint64_t a, b;
};

static void put_u64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (char)(v >> (8 * i));
    }
}

static uint64_t get_u64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    }
    return v;
}

/* Loads the snapshot of stream into out (state, version, position, updated) when there is one
 * usable for at. */
static void snap_load(struct db *db, const char *table, struct slice stream,
                      const struct as_of *at, const struct snap_stamp *stamp,
                      struct logic_state *out)
{
    struct derived_txn *t;
    if (derived_begin(db, false, &t) != 0) {
        return;
    }
    struct slice v;
    if (derived_get(t, table, stream, &v) == 0 && v.len > SNAP_HEADER) {
        uint64_t pos = get_u64(v.ptr + 8);
        bool usable = !at || (!at->has_time && at->has_pos && pos <= at->pos);
        usable = usable && get_u64(v.ptr + 24) == (stamp ? stamp->a : 0) &&
                 get_u64(v.ptr + 32) == (stamp ? stamp->b : 0);
        if (usable) {
            out->version = get_u64(v.ptr);
            out->position = pos;
            out->updated_us = (int64_t)get_u64(v.ptr + 16);
            buf_reset(&out->state);
            buf_add(&out->state, v.ptr + SNAP_HEADER, v.len - SNAP_HEADER);
        }
    }
    derived_abort(t);
}

static void snap_store(struct db *db, const char *table, struct slice stream,
                       const struct snap_stamp *stamp, const struct logic_state *s)
{
    struct derived_txn *t;
    if (derived_begin(db, true, &t) != 0) {
        return;
    }
    struct slice old = {NULL, 0};
    bool found = derived_get(t, table, stream, &old) == 0 && old.len >= SNAP_HEADER;
    bool same_stamp = found && get_u64(old.ptr + 24) == (stamp ? stamp->a : 0) &&
                      get_u64(old.ptr + 32) == (stamp ? stamp->b : 0);
    if (same_stamp && get_u64(old.ptr + 8) >= s->position) {
        derived_abort(t); /* a read as of an earlier point: the newer one stays */
        return;
    }
    struct buf v;
    buf_init(&v);
    buf_reserve(&v, SNAP_HEADER + s->state.len);
    put_u64(v.ptr, s->version);
    put_u64(v.ptr + 8, s->position);
    put_u64(v.ptr + 16, (uint64_t)s->updated_us);
    put_u64(v.ptr + 24, stamp ? stamp->a : 0);
    put_u64(v.ptr + 32, stamp ? stamp->b : 0);
    v.len = SNAP_HEADER;
    buf_add(&v, s->state.ptr, s->state.len);
    if (derived_put(t, table, stream, (struct slice){v.ptr, v.len}) == 0) {
        derived_commit(t); /* a snapshot that cannot be kept only costs the next read */
    } else {
        derived_abort(t);
    }
    buf_fini(&v);
}

/* One page of a stream's events as JSON texts, for a fold. */
struct page {
    engine_event_json_fn *render; /* the component's view of an event */
    struct buf text;             /* the events' JSON, one after the other */
    size_t at[LOGIC_FOLD_PAGE];  /* where each starts in text */
    uint64_t pos[LOGIC_FOLD_PAGE];
    uint64_t ver[LOGIC_FOLD_PAGE];
    int64_t rec[LOGIC_FOLD_PAGE];
    size_t count;
    uint64_t last_pos;           /* views: the newest position read, shown or not */
};

static int on_page_event(void *arg, const struct event_rec *ev)
{
    struct page *pg = arg;
    pg->at[pg->count] = pg->text.len;
    pg->pos[pg->count] = ev->position;
    pg->ver[pg->count] = ev->version;
    pg->rec[pg->count] = ev->recorded_us;
    pg->render(&pg->text, ev);
    pg->count++;
    return 0;
}

/* Folds one page into out->state with entry's extra argument (NULL: none). */
static int fold_events(struct logic_module *m, struct page *pg, const struct slice *extra,
                       struct logic_state *out, struct logic_error *err)
{
    struct slice evs[LOGIC_FOLD_PAGE];
    for (size_t i = 0; i < pg->count; i++) {
        size_t end = i + 1 < pg->count ? pg->at[i + 1] : pg->text.len;
        evs[i] = (struct slice){pg->text.ptr + pg->at[i], end - pg->at[i]};
    }
    struct buf next;
    buf_init(&next);
    size_t failed = 0;
    struct slice state = {out->state.ptr, out->state.len};
    int rc = logic_fold(m, extra ? "evolve" : "reduce", state, evs, pg->count, extra, &next,
                        &failed, err);
    if (rc) {
        out->failed_position = failed < pg->count ? pg->pos[failed] : 0;
        buf_fini(&next);
        return rc;
    }
    buf_fini(&out->state);
    out->state = next;
    out->version = pg->ver[pg->count - 1];
    out->position = pg->pos[pg->count - 1];
    out->updated_us = pg->rec[pg->count - 1];
    out->folded += pg->count;
    return 0;
}

/* Folds stream's events after out->version (as of at) into out->state. */
/* This thread's CPU time, ns. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One CPU budget covers a whole read, however many pages it folds: true (err set) once the
 * thread has spent more than the budget since start_ns. */
static bool read_budget_spent(struct logic *lg, uint64_t start_ns, struct logic_error *err)
{
    uint64_t budget = lg->cfg.limits.cpu_ms ? lg->cfg.limits.cpu_ms : LOGIC_DEFAULT_CPU_MS;
    if (thread_cpu_ns() - start_ns <= budget * 1000000ull) {
        return false;
    }
    err->kind = LOGIC_E_CPU;
    snprintf(err->message, sizeof err->message, "cpu_limit: the read's CPU budget of %llu ms "
             "ran out", (unsigned long long)budget);
    return true;
}

static int fold_stream(struct logic *lg, struct db *db, struct logic_module *m,
                       engine_event_json_fn *render, struct slice stream,
                       const struct as_of *at, struct logic_state *out, struct logic_error *err)
{
    struct page *pg = xmalloc(sizeof(*pg));
    pg->render = render;
    buf_init(&pg->text);
    int rc = 0;
    uint64_t start_ns = thread_cpu_ns();
    for (;;) {
        pg->count = 0;
        buf_reset(&pg->text);
        if (read_budget_spent(lg, start_ns, err)) {
            rc = ERR_INVALID;
            break;
        }
        struct stream_rec s;
        rc = engine_read_stream(db, stream, at, out->version + 1, false, LOGIC_FOLD_PAGE,
                                on_page_event, pg, &s, NULL);
        if (rc == ERR_NOTFOUND && out->version > 0) {
            rc = 0; /* the snapshot covers the view */
        }
        if (rc || pg->count == 0) {
            break;
        }
        rc = fold_events(m, pg, NULL, out, err);
        if (rc || pg->count < LOGIC_FOLD_PAGE) {
            break;
        }
    }
    buf_fini(&pg->text);
    free(pg);
    return rc;
}

/* The reducer of category, or of stream's own category when category.ptr is NULL. */
static const struct comp_def *reducer_for(const struct comp_set *set, struct slice stream,
                                          struct slice category)
{
    return category.ptr ? comp_set_reducer_of(set, category) : comp_set_reducer_for(set, stream);
}

bool logic_has_reducer(struct logic *lg, struct db *db, struct slice category)
{
    struct comp_set *set;
    if (logic_set(lg, db, &set) != 0) {
        return false;
    }
    bool has = comp_set_reducer_of(set, category) != NULL;
    comp_set_unref(set);
    return has;
}

int logic_stream_state(struct logic *lg, struct db *db, struct slice stream,
                       const struct as_of *at, struct logic_state *out, bool *no_reducer,
                       struct logic_error *err)
{
    return logic_stream_state_as(lg, db, stream, (struct slice){NULL, 0}, at, out, no_reducer,
                                 err);
}

int logic_stream_state_as(struct logic *lg, struct db *db, struct slice stream,
                          struct slice category, const struct as_of *at,
                          struct logic_state *out, bool *no_reducer, struct logic_error *err)
{
    struct comp_set *set;
    *no_reducer = false;
    int rc = logic_set(lg, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *def = reducer_for(set, stream, category);
    if (!def) {
        comp_set_unref(set);
        *no_reducer = true;
        return ERR_NOTFOUND;
    }
    snprintf(out->reducer, sizeof out->reducer, "%s", def->name);
    out->reducer_version = def->version;
    char table[DERIVED_TABLE_BYTES + 1];
    snap_table(table, sizeof table, def->name, def->version);
    buf_reset(&out->state);
    buf_adds(&out->state, "null");
    bool stable = stable_stream(db, stream);
    if (stable) {
        snap_load(db, table, stream, at, NULL, out);
    }
    struct mod_ent *me = mod_acquire(lg, db, def, err, &rc);
    if (me) {
        rc = fold_stream(lg, db, me->m, logic_renderer(lg, def), stream, at, out, err);
        if (rc == ERR_INVALID && err->kind) {
            mod_failed(me);
        }
        mod_release(me);
    }
    if (!rc && out->version == 0) {
        rc = ERR_NOTFOUND; /* no events in this view */
    }
    if (!rc && stable && out->folded >= LOGIC_SNAPSHOT_MIN_EVENTS) { /* a state at a version
                                                                          holds */
        snap_store(db, table, stream, NULL, out);
    }
    if (!rc && stable) {
        char key[STATE_KEY_BYTES];
        size_t klen = state_key(key, sizeof key, db, def, stream);
        states_put(lg, key, klen, out);
    }
    comp_set_unref(set);
    return rc;
}

/* Folds the n events of evs (one stream's, in order) into out->state with def's module. */
static int fold_records(struct logic *lg, struct db *db, const struct comp_def *def,
                        const struct event_rec *evs, size_t n, struct logic_state *out,
                        struct logic_error *err)
{
    struct buf text;
    buf_init(&text);
    size_t *at = xcalloc(n + 1, sizeof(*at));
    engine_event_json_fn *render = logic_renderer(lg, def);
    for (size_t i = 0; i < n; i++) {
        at[i] = text.len;
        render(&text, &evs[i]);
    }
    at[n] = text.len;
    struct slice *sl = xcalloc(n, sizeof(*sl));
    for (size_t i = 0; i < n; i++) {
        sl[i] = (struct slice){text.ptr + at[i], at[i + 1] - at[i]};
    }
    int rc = 0;
    struct mod_ent *me = mod_acquire(lg, db, def, err, &rc);
    if (me) {
        struct buf next;
        buf_init(&next);
        size_t failed = 0;
        rc = logic_fold(me->m, "reduce", (struct slice){out->state.ptr, out->state.len}, sl, n,
                        NULL, &next, &failed, err);
        if (rc) {
            mod_failed(me);
        }
        mod_release(me);
        if (rc) {
            out->failed_position = failed < n ? evs[failed].position : 0;
            buf_fini(&next);
        } else {
            buf_fini(&out->state);
            out->state = next;
            out->version = evs[n - 1].version;
            out->position = evs[n - 1].position;
            out->updated_us = evs[n - 1].recorded_us;
            out->folded += n;
        }
    }
    free(sl);
    free(at);
    buf_fini(&text);
    return rc;
}

int logic_state_after(struct logic *lg, struct db *db, struct slice stream,
                      const struct event_rec *evs, size_t n, struct logic_state *out,
                      bool *no_reducer, struct logic_error *err)
{
    return logic_state_after_as(lg, db, stream, (struct slice){NULL, 0}, evs, n, out,
                                no_reducer, err);
}

int logic_state_after_as(struct logic *lg, struct db *db, struct slice stream,
                         struct slice category, const struct event_rec *evs, size_t n,
                         struct logic_state *out, bool *no_reducer, struct logic_error *err)
{
    struct comp_set *set;
    *no_reducer = false;
    int rc = logic_set(lg, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *def = n ? reducer_for(set, stream, category) : NULL;
    if (!def) {
        comp_set_unref(set);
        *no_reducer = true;
        return ERR_NOTFOUND;
    }
    snprintf(out->reducer, sizeof out->reducer, "%s", def->name);
    out->reducer_version = def->version;
    char key[STATE_KEY_BYTES];
    size_t klen = state_key(key, sizeof key, db, def, stream);
    bool have = evs[0].version == 1 && stable_stream(db, stream); /* first events: from null */
    if (have) {
        buf_reset(&out->state);
        buf_adds(&out->state, "null");
    } else if (stable_stream(db, stream)) {
        have = states_get(lg, key, klen, evs[0].version - 1, out);
    }
    if (have) {
        rc = fold_records(lg, db, def, evs, n, out, err);
        if (!rc) {
            states_put(lg, key, klen, out);
        }
        comp_set_unref(set);
        return rc;
    }
    comp_set_unref(set);
    struct as_of at = {.has_pos = true, .pos = evs[n - 1].position};
    return logic_stream_state_as(lg, db, stream, category, &at, out, no_reducer, err);
}

/* ---- views ---- */

/* The view's cache key for params: the SHA-256 of their JSON text, in hex. */
static void view_key(struct slice params, char out[65])
{
    struct hash_part part = {params.ptr, params.len};
    uint8_t h[32];
    hash_sha256(&part, 1, h);
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", h[i]);
    }
}

bool logic_user_event(const struct event_rec *ev)
{
    return ev->stream.len == 0 || ev->stream.ptr[0] != '$' ||
           (ev->stream.len == sizeof ENGINE_DCB_STREAM - 1 &&
            !memcmp(ev->stream.ptr, ENGINE_DCB_STREAM, ev->stream.len));
}

static int on_view_event(void *arg, const struct event_rec *ev)
{
    struct page *pg = arg;
    pg->last_pos = ev->position;
    return logic_user_event(ev) ? on_page_event(arg, ev) : 0;
}

/* Folds the events of filter after out->position (as of at) into out->state with params. */
static int fold_view(struct logic *lg, struct db *db, struct logic_module *m,
                     engine_event_json_fn *render, const struct filter *filter,
                     struct slice params, const struct as_of *at, struct logic_state *out,
                     struct logic_error *err)
{
    struct page *pg = xmalloc(sizeof(*pg));
    pg->render = render;
    buf_init(&pg->text);
    int rc = 0;
    uint64_t from = out->position + 1;
    uint64_t start_ns = thread_cpu_ns();
    for (;;) {
        pg->count = 0;
        pg->last_pos = 0;
        buf_reset(&pg->text);
        if (read_budget_spent(lg, start_ns, err)) {
            rc = ERR_INVALID;
            break;
        }
        struct engine_query q = {.filter = filter, .has_from = true, .from = from,
                                 .limit = LOGIC_FOLD_PAGE, .budget = 64 * LOGIC_FOLD_PAGE};
        if (at) {
            q.at = *at;
        }
        struct engine_query_result res;
        rc = engine_query(db, &q, on_view_event, pg, &res);
        if (!rc && pg->count) {
            rc = fold_events(m, pg, &params, out, err);
        }
        if (!rc && pg->last_pos) {
            out->position = pg->last_pos; /* skipped '$' events are covered too */
        }
        if (rc || res.next == 0) {
            break;
        }
        from = res.next;
    }
    buf_fini(&pg->text);
    free(pg);
    return rc;
}

static int view_filter(struct logic *lg, const struct comp_def *def, struct filter *f)
{
    filter_init(f);
    if (!def->filter || !lg->cfg.parse_filter) {
        return 0;
    }
    filter_fini(f);
    return lg->cfg.parse_filter((struct slice){def->filter, strlen(def->filter)}, f);
}

/* Folds def's events for params into out: from the cached result when cache (then stored
 * again when the read folded enough), else from the start. */
static int view_fold_def(struct logic *lg, struct db *db, const struct comp_def *def,
                         struct filter *f, struct slice params, const struct as_of *at,
                         bool cache, struct logic_state *out, struct logic_error *err)
{
    char table[DERIVED_TABLE_BYTES + 1], key[65];
    snprintf(table, sizeof table, "v:%s:%llu", def->name, (unsigned long long)def->version);
    view_key(params, key);
    struct slice k = {key, 64};
    /* a cached result holds while no lifecycle change (deletion, truncation, settings) came
       since it was stored, in this process */
    struct snap_stamp stamp = {lg->nonce, engine_db_lifecycle_changes(db)};
    cache = cache && !engine_db_ages_out(db); /* events leaving as time passes: no cache */
    if (cache) {
        snap_load(db, table, k, at, &stamp, out);
    }
    int rc = 0;
    struct mod_ent *me = mod_acquire(lg, db, def, err, &rc);
    if (me) {
        rc = fold_view(lg, db, me->m, logic_renderer(lg, def), f, params, at, out, err);
        if (rc == ERR_INVALID && err->kind) {
            mod_failed(me);
        }
        mod_release(me);
    }
    if (!rc && cache && out->folded >= LOGIC_SNAPSHOT_MIN_EVENTS) {
        snap_store(db, table, k, &stamp, out);
    }
    return rc;
}

int logic_view_at(struct logic *lg, struct db *db, const char *name, struct slice params,
                  const struct logic_view_read *rd, struct logic_state *out,
                  struct logic_error *err)
{
    struct comp_set *set;
    int rc = logic_set(lg, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *def = comp_set_find(set, name);
    if (!def || def->kind != COMP_VIEW) {
        comp_set_unref(set);
        return ERR_NOTFOUND;
    }
    snprintf(out->reducer, sizeof out->reducer, "%s", def->name);
    out->reducer_version = def->version;
    buf_reset(&out->state);
    buf_adds(&out->state, "null");
    struct filter f;
    rc = view_filter(lg, def, &f);
    bool effective = rd && rd->has_effective;
    if (!rc && effective && (!f.has_time_to || f.time_to_us > rd->effective_us)) {
        f.has_time_to = true; /* as of effective time: events effective later are not seen */
        f.time_to_us = rd->effective_us;
    }
    if (!rc) {
        rc = view_fold_def(lg, db, def, &f, params, rd ? rd->at : NULL, !effective, out, err);
        filter_fini(&f);
    }
    comp_set_unref(set);
    return rc;
}

int logic_view(struct logic *lg, struct db *db, const char *name, struct slice params,
               const struct as_of *at, struct logic_state *out, struct logic_error *err)
{
    struct logic_view_read rd = {.at = at};
    return logic_view_at(lg, db, name, params, &rd, out, err);
}
