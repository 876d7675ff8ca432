/* Projections: the runner thread and the reads of what it wrote (logic/projection.h). */
#include "logic/projection.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cursor.h"
#include "engine/derived.h"
#include "json/jsonx.h"
#include "logic/logic.h"
#include "logic/proj_hooks.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

/* One running projection (one version of one component of one database). */
struct proj {
    char db_name[LIMIT_DB_NAME_BYTES + 1];
    struct db *db;                 /* a reference, the runner's */
    struct comp_def def;           /* a copy */
    struct logic_module *m;        /* the runner's own instance */
    struct filter filter;
    struct engine_cursor *cursor;
    struct phook *hook;            /* its webhook's delivery, NULL: none */
    char t_state[DERIVED_TABLE_BYTES + 1];
    char t_changes[DERIVED_TABLE_BYTES + 1];
    char t_meta[DERIVED_TABLE_BYTES + 1];
    bool seen;                     /* rescans: still deployed */
    unsigned storage_failures;     /* batches in a row the derived store refused */
    /* guarded by projections.mu: */
    enum proj_status status;
    uint64_t position;             /* checkpoint: the next position to read */
    uint64_t sequence;             /* newest change */
    uint64_t failed_position;
    char error[512];
    char error_kind[32];
};

struct proj_watch {
    struct proj_watch *next;
    uint64_t db_id;
    char name[COMP_NAME_BYTES + 1];
    proj_watch_fn *fn;
    void *arg;
};

struct proj_waiter {
    struct proj_waiter *next;
    uint64_t db_id;
    char name[COMP_NAME_BYTES + 1];
    uint64_t min_position;
    uint64_t deadline_ns;          /* time_mono_ns */
    proj_wait_fn *fn;
    void *arg;
};

struct projections {
    struct proj_watch *watches;    /* guarded by mu */
    struct proj_waiter *waiters;   /* guarded by mu */
    struct logic *lg;
    struct engine *e;
    pthread_t thread;
    pthread_mutex_t mu;            /* guards what follows and each proj's status fields */
    pthread_cond_t cv;
    bool stop;
    bool halted;                   /* proj_halt ran: the runner is gone */
    bool kicked;                   /* a deploy or removal: rescan now */
    bool woken;                    /* a commit: read again */
    struct proj **list;
    size_t n;
};

static const char META_KEY[] = "checkpoint";

/* ---- tables ---- */

static void tables(struct proj *pr)
{
    unsigned long long v = (unsigned long long)pr->def.version;
    snprintf(pr->t_state, sizeof pr->t_state, "p:%s:%llu", pr->def.name, v);
    snprintf(pr->t_changes, sizeof pr->t_changes, "pc:%s:%llu", pr->def.name, v);
    snprintf(pr->t_meta, sizeof pr->t_meta, "pm:%s:%llu", pr->def.name, v);
}

static void put_be64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (char)(v >> (56 - 8 * i));
    }
}

static uint64_t get_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | (unsigned char)p[i];
    }
    return v;
}

/* Reads the checkpoint (position, sequence) of pr; zeros when it never ran. */
static void read_checkpoint(struct proj *pr)
{
    pr->position = 1;
    pr->sequence = 0;
    struct derived_txn *t;
    if (derived_begin(pr->db, false, &t) != 0) {
        return;
    }
    struct slice v;
    if (derived_get(t, pr->t_meta, (struct slice){META_KEY, sizeof META_KEY - 1}, &v) == 0 &&
        v.len == 16) {
        pr->position = get_be64(v.ptr);
        pr->sequence = get_be64(v.ptr + 8);
    }
    derived_abort(t);
}

/* Drops the tables of every other version of pr's name (a redeploy starts over). */
static void drop_old_versions(struct proj *pr)
{
    struct derived_txn *t;
    if (derived_begin(pr->db, true, &t) != 0) {
        return;
    }
    char name[DERIVED_TABLE_BYTES + 1];
    int rc = 0;
    for (uint64_t v = 1; v < pr->def.version && !rc; v++) {
        static const char *const prefix[] = {"p", "pc", "pm"};
        for (int i = 0; i < 3 && !rc; i++) {
            snprintf(name, sizeof name, "%s:%s:%llu", prefix[i], pr->def.name,
                     (unsigned long long)v);
            rc = derived_drop(t, name);
        }
    }
    if (rc || derived_commit(t) != 0) {
        if (rc) {
            derived_abort(t);
        }
    }
}

/* Drops the tables of pr's own version. */
static void drop_tables(struct proj *pr)
{
    struct derived_txn *t;
    if (derived_begin(pr->db, true, &t) != 0) {
        return;
    }
    int rc = derived_drop(t, pr->t_state);
    if (!rc) rc = derived_drop(t, pr->t_changes);
    if (!rc) rc = derived_drop(t, pr->t_meta);
    if (!rc) {
        derived_commit(t);
    } else {
        derived_abort(t);
    }
}

/* ---- starting and stopping one ---- */

static void on_commit(void *arg, bool gone)
{
    struct projections *p = arg;
    pthread_mutex_lock(&p->mu);
    p->woken = true;
    p->kicked = p->kicked || gone; /* let the deleted database go at once */
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void proj_free(struct proj *pr)
{
    phook_stop(pr->hook); /* before the tables it reads may go */
    engine_cursor_close(pr->cursor);
    logic_unload(pr->m);
    filter_fini(&pr->filter);
    comp_def_fini(&pr->def);
    engine_db_release(pr->db);
    free(pr);
}

static void fail(struct projections *p, struct proj *pr, const char *kind, const char *msg,
                 uint64_t position)
{
    pthread_mutex_lock(&p->mu);
    pr->status = PROJ_FAILED;
    pr->failed_position = position;
    snprintf(pr->error_kind, sizeof pr->error_kind, "%s", kind);
    snprintf(pr->error, sizeof pr->error, "%s", msg);
    pthread_mutex_unlock(&p->mu);
    log_warn("projection %s of %s stopped at position %llu: %s", pr->def.name, pr->db_name,
             (unsigned long long)position, msg);
}

/* Makes a running projection of def in db (takes a new reference on db). */
static struct proj *proj_new(struct projections *p, struct db *db, const struct comp_def *def,
                             engine_filter_parse_fn *parse)
{
    struct proj *pr = xcalloc(1, sizeof(*pr));
    snprintf(pr->db_name, sizeof pr->db_name, "%s", engine_db_name(db));
    if (engine_db_acquire(p->e, pr->db_name, strlen(pr->db_name), &pr->db) != 0) {
        free(pr);
        return NULL;
    }
    comp_def_copy(&pr->def, def);
    pr->status = PROJ_CATCHING_UP;
    tables(pr);
    filter_init(&pr->filter);
    if (def->filter && parse) {
        filter_fini(&pr->filter);
        if (parse((struct slice){def->filter, strlen(def->filter)}, &pr->filter) != 0) {
            filter_init(&pr->filter);
            fail(p, pr, "invalid_input", "the filter is not a valid query filter", 0);
        }
    }
    struct logic_error le = {0};
    if (pr->status != PROJ_FAILED &&
        logic_load(logic_runtimes(p->lg), def->lang, def->name, def->source, def->source_len,
                   comp_entries(def->kind), logic_budgets(p->lg), &pr->m, &le) != 0) {
        pr->m = NULL;
        fail(p, pr, logic_err_name(le.kind), le.message, 0);
    }
    drop_old_versions(pr);
    read_checkpoint(pr);
    struct engine_cursor_opts o = {.filter = &pr->filter, .from = pr->position,
                                   .on_commit = on_commit, .on_commit_arg = p};
    if (engine_cursor_open(pr->db, &o, &pr->cursor) != 0) {
        proj_free(pr);
        return NULL;
    }
    if (def->webhook) {
        const struct logic_event_format *f = logic_event_format(p->lg, def->event_format);
        struct phook_spec hs = {.db = pr->db, .def = def, .style = f ? f->hook_style : NULL,
                                .t_changes = pr->t_changes, .t_meta = pr->t_meta,
                                .allow = logic_webhook_allow(p->lg)};
        pr->hook = phook_start(&hs);
    }
    return pr;
}

/* ---- applying a batch ---- */

/* The events of one batch, as JSON texts, and the states they changed. */
struct batch {
    struct projections *p;
    engine_event_json_fn *render;  /* the projection's view of an event */
    struct buf text;               /* every event's JSON, one after the other */
    size_t at[PROJ_BATCH_EVENTS + 1];
    uint64_t pos[PROJ_BATCH_EVENTS];
    size_t count;
    struct strmap keys;            /* key -> index into states */
    struct buf *states;            /* the batch's newest state per key */
    char **key_of;                 /* each state's key (owned) */
    uint64_t *state_pos;           /* the position that last changed it */
    size_t nstates, cap;
    struct buf changes;            /* change records: u64 seq, u32 key len, key, state */
    size_t nchanges;
};

static int on_event(void *arg, const struct event_rec *ev)
{
    struct batch *b = arg;
    if (!logic_user_event(ev)) {
        return 0;
    }
    b->at[b->count] = b->text.len;
    b->pos[b->count] = ev->position;
    b->render(&b->text, ev);
    b->count++;
    return 0;
}

static struct slice event_at(const struct batch *b, size_t i)
{
    size_t end = i + 1 < b->count ? b->at[i + 1] : b->text.len;
    return (struct slice){b->text.ptr + b->at[i], end - b->at[i]};
}

/* The state of key: this batch's, or the stored one ("null" when none). */
static size_t state_slot(struct batch *b, struct proj *pr, struct derived_txn *t,
                         struct slice key)
{
    bool is_new;
    size_t *idx = strmap_put(&b->keys, key.ptr, key.len, &is_new);
    if (!is_new) {
        return *idx;
    }
    if (b->nstates == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->states = xrealloc(b->states, b->cap * sizeof(*b->states));
        b->key_of = xrealloc(b->key_of, b->cap * sizeof(*b->key_of));
        b->state_pos = xrealloc(b->state_pos, b->cap * sizeof(*b->state_pos));
    }
    size_t i = b->nstates++;
    *idx = i;
    buf_init(&b->states[i]);
    b->key_of[i] = xstrndup(key.ptr, key.len);
    b->state_pos[i] = 0;
    struct slice v;
    if (derived_get(t, pr->t_state, key, &v) == 0 && v.len > 8) {
        buf_add(&b->states[i], v.ptr + 8, v.len - 8);
    } else {
        buf_adds(&b->states[i], "null");
    }
    return i;
}

/* key(event): a string key (decoded into *key), or false for null (the event is skipped).
 * Returns <0 on failure (le set). */
static int event_key(struct proj *pr, struct slice ev, struct buf *scratch, struct buf *key,
                     struct logic_error *le)
{
    buf_reset(scratch);
    int rc = logic_call(pr->m, "key", &ev, 1, scratch, le);
    if (rc) {
        return rc;
    }
    struct slice k = {scratch->ptr, scratch->len};
    if (jsonx_kind(k) == 'n') {
        return 0;
    }
    if (jsonx_kind(k) != '"' || jsonx_string(k, key) != 0 || key->len == 0 ||
        key->len > PROJ_KEY_BYTES || memchr(key->ptr, '\0', key->len)) {
        le->kind = LOGIC_E_OUTPUT;
        snprintf(le->message, sizeof le->message, "key must return a string of 1 to %d "
                 "bytes, or nil", PROJ_KEY_BYTES);
        return ERR_INVALID;
    }
    return 1;
}

static void add_change(struct batch *b, uint64_t seq, struct slice key, const struct buf *state,
                       uint64_t pos)
{
    char head[20];
    put_be64(head, seq);
    put_be64(head + 8, pos);
    uint32_t kl = (uint32_t)key.len;
    memcpy(head + 16, &kl, 4);
    buf_add(&b->changes, head, sizeof head);
    buf_add(&b->changes, key.ptr, key.len);
    uint32_t sl = (uint32_t)state->len;
    buf_add(&b->changes, &sl, 4);
    buf_add(&b->changes, state->ptr, state->len);
    b->nchanges++;
}

/* Applies events [0, n) of b; stops at the first failure (*failed_at, le). */
static int apply_events(struct batch *b, struct proj *pr, struct derived_txn *t, uint64_t *seq,
                        size_t *failed_at, struct logic_error *le)
{
    struct buf scratch, key, next;
    buf_init(&scratch);
    buf_init(&key);
    buf_init(&next);
    int rc = 0;
    size_t i = 0;
    for (; i < b->count && !rc; i++) {
        struct slice ev = event_at(b, i);
        int k = event_key(pr, ev, &scratch, &key, le);
        if (k <= 0) {
            rc = k;
            continue;
        }
        struct slice ks = {key.ptr, key.len};
        size_t s = state_slot(b, pr, t, ks);
        struct slice args[2] = {{b->states[s].ptr, b->states[s].len}, ev};
        buf_reset(&next);
        rc = logic_call(pr->m, "apply", args, 2, &next, le);
        if (!rc) {
            buf_reset(&b->states[s]);
            buf_add(&b->states[s], next.ptr, next.len);
            b->state_pos[s] = b->pos[i];
            add_change(b, ++*seq, ks, &next, b->pos[i]);
        }
    }
    *failed_at = rc ? i - 1 : b->count;
    buf_fini(&scratch);
    buf_fini(&key);
    buf_fini(&next);
    return rc;
}

/* The decoded keys of a batch's events (key(event) in one call). */
struct batch_keys {
    struct buf text;     /* the keys, one after the other */
    size_t *at, *len;    /* per selected event */
    size_t *idx;         /* selected event -> event of the batch */
    size_t n;            /* events with a key (the others returned nil) */
};

/* Reads logic_map's answer: false when an item is neither nil nor a valid key. */
static bool take_keys(struct slice arr, size_t count, struct batch_keys *k)
{
    k->at = xcalloc(count ? count : 1, sizeof(*k->at));
    k->len = xcalloc(count ? count : 1, sizeof(*k->len));
    k->idx = xcalloc(count ? count : 1, sizeof(*k->idx));
    struct buf one;
    buf_init(&one);
    size_t pos = 0, i = 0;
    struct slice it;
    bool ok = true;
    for (; ok && jsonx_next_item(arr, &pos, &it); i++) {
        if (jsonx_kind(it) == 'n') {
            continue;
        }
        ok = i < count && jsonx_kind(it) == '"' && jsonx_string(it, &one) == 0 &&
             one.len > 0 && one.len <= PROJ_KEY_BYTES && !memchr(one.ptr, '\0', one.len);
        if (ok) {
            k->at[k->n] = k->text.len;
            k->len[k->n] = one.len;
            k->idx[k->n++] = i;
            buf_add(&k->text, one.ptr, one.len);
        }
    }
    buf_fini(&one);
    return ok && i == count;
}

static void batch_keys_fini(struct batch_keys *k)
{
    buf_fini(&k->text);
    free(k->at);
    free(k->len);
    free(k->idx);
}

/* The states object a keyed fold starts from: each key of k with its state (read into b). */
static void start_states(struct batch *b, struct proj *pr, struct derived_txn *t,
                         const struct batch_keys *k, struct slice *keys, struct buf *out)
{
    buf_addc(out, '{');
    size_t shown = 0;
    for (size_t j = 0; j < k->n; j++) {
        keys[j] = (struct slice){k->text.ptr + k->at[j], k->len[j]};
        size_t before = b->nstates;
        size_t s = state_slot(b, pr, t, keys[j]);
        if (s >= before) { /* first time in this batch: once in the object */
            buf_adds(out, shown++ ? "," : "");
            buf_add_json_str(out, keys[j].ptr, keys[j].len);
            buf_addc(out, ':');
            buf_add(out, b->states[s].ptr, b->states[s].len);
        }
    }
    buf_addc(out, '}');
}

/* logic_project's state source: the batch's reads of stored states. */
struct stored_states {
    struct batch *b;
    struct proj *pr;
    struct derived_txn *t;
};

static int stored_state(void *arg, struct slice key, struct buf *out)
{
    struct stored_states *ss = arg;
    if (key.len == 0 || key.len > PROJ_KEY_BYTES) {
        buf_adds(out, "null"); /* refused below: the per-event path names it */
        return 0;
    }
    size_t s = state_slot(ss->b, ss->pr, ss->t, key);
    buf_add(out, ss->b->states[s].ptr, ss->b->states[s].len);
    return 0;
}

/* The one-call path (logic_project): returns 0 with the batch applied, 1 when anything failed
 * (the caller then takes the per-event path, nothing of b having changed but the stored states
 * read into it), or ERR_NOTFOUND when the runtime has no such call. */
static int apply_projected(struct batch *b, struct proj *pr, struct derived_txn *t,
                           const struct slice *evs, uint64_t *seq)
{
    struct buf results, key;
    buf_init(&results);
    buf_init(&key);
    struct stored_states ss = {b, pr, t};
    struct logic_error le;
    size_t failed;
    int rc = logic_project(pr->m, "key", "apply", stored_state, &ss, evs, b->count, &results,
                           &failed, &le);
    if (rc == ERR_NOTFOUND) {
        buf_fini(&results);
        buf_fini(&key);
        return rc;
    }
    rc = rc != 0;
    /* check every item first: the batch applies whole or not at all */
    struct slice arr = {results.ptr, results.len}, it, k, st;
    size_t pos = 0, i = 0;
    while (!rc && jsonx_next_item(arr, &pos, &it)) {
        size_t p2 = 0;
        rc = i >= b->count ||
             (jsonx_kind(it) != 'n' &&
              (!jsonx_next_item(it, &p2, &k) || jsonx_string(k, &key) != 0 || key.len == 0 ||
               key.len > PROJ_KEY_BYTES || memchr(key.ptr, '\0', key.len)));
        i++;
    }
    rc = rc || i != b->count;
    pos = 0;
    for (i = 0; !rc && jsonx_next_item(arr, &pos, &it); i++) {
        if (jsonx_kind(it) == 'n') {
            continue;
        }
        size_t p2 = 0;
        jsonx_next_item(it, &p2, &k);
        jsonx_next_item(it, &p2, &st);
        jsonx_string(k, &key);
        struct slice ks = {key.ptr, key.len};
        size_t s = state_slot(b, pr, t, ks);
        buf_reset(&b->states[s]);
        buf_add(&b->states[s], st.ptr, st.len);
        b->state_pos[s] = b->pos[i];
        add_change(b, ++*seq, ks, &b->states[s], b->pos[i]);
    }
    buf_fini(&results);
    buf_fini(&key);
    return rc;
}

/* The batched path: key(event) for the whole batch in one call, apply over the keyed events in
 * a second. Returns 0, or 1 when anything failed: then nothing of b changed and the caller
 * takes the per-event path, which stops at (and names) the failing event. */
static int apply_batched(struct batch *b, struct proj *pr, struct derived_txn *t, uint64_t *seq)
{
    struct slice *evs = xcalloc(b->count ? b->count : 1, sizeof(*evs));
    for (size_t i = 0; i < b->count; i++) {
        evs[i] = event_at(b, i);
    }
    int prc = apply_projected(b, pr, t, evs, seq);
    if (prc != ERR_NOTFOUND) {
        free(evs);
        return prc;
    }
    struct buf answer, states, results;
    buf_init(&answer);
    buf_init(&states);
    buf_init(&results);
    struct batch_keys k = {0};
    buf_init(&k.text);
    struct logic_error le;
    size_t failed;
    int rc = logic_map(pr->m, "key", evs, b->count, &answer, &failed, &le) != 0 ||
             !take_keys((struct slice){answer.ptr, answer.len}, b->count, &k);
    struct slice *keys = xcalloc(k.n ? k.n : 1, sizeof(*keys));
    struct slice *sel = xcalloc(k.n ? k.n : 1, sizeof(*sel));
    if (!rc && k.n) {
        start_states(b, pr, t, &k, keys, &states);
        for (size_t j = 0; j < k.n; j++) {
            sel[j] = evs[k.idx[j]];
        }
        rc = logic_fold_keyed(pr->m, "apply", (struct slice){states.ptr, states.len}, keys, sel,
                              k.n, &results, &failed, &le) != 0;
    }
    size_t pos = 0, j = 0, items = 0;
    struct slice st;
    while (!rc && k.n && jsonx_next_item((struct slice){results.ptr, results.len}, &pos, &st)) {
        items++;
    }
    rc = rc || items != k.n; /* one state per keyed event, or the per-event path decides */
    pos = 0;
    while (!rc && j < k.n && jsonx_next_item((struct slice){results.ptr, results.len}, &pos,
                                              &st)) {
        size_t s = state_slot(b, pr, t, keys[j]);
        buf_reset(&b->states[s]);
        buf_add(&b->states[s], st.ptr, st.len);
        b->state_pos[s] = b->pos[k.idx[j]];
        add_change(b, ++*seq, keys[j], &b->states[s], b->state_pos[s]);
        j++;
    }
    free(keys);
    free(sel);
    free(evs);
    batch_keys_fini(&k);
    buf_fini(&answer);
    buf_fini(&states);
    buf_fini(&results);
    return rc;
}

/* Writes the batch's states and changes and the checkpoint (position, seq) into t. */
static int write_batch(struct batch *b, struct proj *pr, struct derived_txn *t,
                       uint64_t position, uint64_t seq)
{
    int rc = 0;
    struct buf v;
    buf_init(&v);
    for (size_t i = 0; i < b->nstates && !rc; i++) {
        if (!b->state_pos[i]) {
            continue; /* read, never changed */
        }
        buf_reset(&v);
        char head[8];
        put_be64(head, b->state_pos[i]);
        buf_add(&v, head, 8);
        buf_add(&v, b->states[i].ptr, b->states[i].len);
        rc = derived_put(t, pr->t_state, (struct slice){b->key_of[i], strlen(b->key_of[i])},
                         (struct slice){v.ptr, v.len});
    }
    for (size_t off = 0, i = 0; i < b->nchanges && !rc; i++) {
        const char *c = b->changes.ptr + off;
        uint32_t kl, sl;
        memcpy(&kl, c + 16, 4);
        memcpy(&sl, c + 20 + kl, 4);
        size_t len = 24 + kl + sl;
        rc = derived_put(t, pr->t_changes, (struct slice){c, 8},
                         (struct slice){c + 8, len - 8});
        off += len;
    }
    char meta[16];
    put_be64(meta, position);
    put_be64(meta + 8, seq);
    if (!rc) {
        rc = derived_put(t, pr->t_meta, (struct slice){META_KEY, sizeof META_KEY - 1},
                         (struct slice){meta, 16});
    }
    buf_fini(&v);
    return rc;
}

static void batch_fini(struct batch *b)
{
    for (size_t i = 0; i < b->nstates; i++) {
        buf_fini(&b->states[i]);
        free(b->key_of[i]);
    }
    free(b->states);
    free(b->key_of);
    free(b->state_pos);
    strmap_fini(&b->keys);
    buf_fini(&b->text);
    buf_fini(&b->changes);
}

/* Applies and commits one batch of pr. Returns true when it did work (or more is waiting). */
static bool step(struct projections *p, struct proj *pr)
{
    struct batch *b = xcalloc(1, sizeof(*b));
    b->p = p;
    b->render = logic_renderer(p->lg, &pr->def);
    buf_init(&b->text);
    buf_init(&b->changes);
    strmap_init(&b->keys, sizeof(size_t));
    struct engine_cursor_page page;
    int rc = engine_cursor_next(pr->cursor, PROJ_BATCH_EVENTS, on_event, b, &page);
    bool busy = !rc && (!page.caught_up || page.delivered > 0);
    struct derived_txn *t = NULL;
    struct logic_error le = {0};
    size_t failed_at = 0;
    uint64_t seq = pr->sequence;
    int urc = 0;
    if (!rc && page.position > pr->position) {
        /* user code runs under a read transaction: the store's one write transaction is taken
           only to write the batch (only this thread writes these tables) */
        rc = derived_begin(pr->db, false, &t);
        if (!rc && apply_batched(b, pr, t, &seq) != 0) {
            urc = apply_events(b, pr, t, &seq, &failed_at, &le); /* names the failing event */
        }
        derived_abort(t);
        t = NULL;
        uint64_t upto = urc ? b->pos[failed_at] : page.position; /* stop at the failing one */
        if (!rc) rc = derived_begin(pr->db, true, &t);
        if (!rc) rc = write_batch(b, pr, t, upto, seq);
        if (!rc) {
            rc = derived_commit(t);
            t = NULL;
        }
        if (!rc) {
            pr->storage_failures = 0;
            pthread_mutex_lock(&p->mu);
            bool changed = seq != pr->sequence;
            pr->position = upto;
            pr->sequence = seq;
            if (changed) {
                phook_kick(pr->hook);
            }
            for (struct proj_watch *w = p->watches; changed && w; w = w->next) {
                if (w->db_id == engine_db_id(pr->db) && !strcmp(w->name, pr->def.name)) {
                    w->fn(w->arg);
                }
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
    derived_abort(t);
    if (rc == ERR_GONE) {
        busy = false; /* the rescan lets it go */
    } else if (rc && ++pr->storage_failures >= PROJ_STORAGE_TRIES) {
        fail(p, pr, "storage", rc == ERR_TOOBIG ? "a state is larger than the store takes "
             "(16 MiB)" : "its state could not be stored", pr->position);
        busy = false;
    } else if (rc) {
        /* storage: read the batch again from the checkpoint later */
        engine_cursor_reset(pr->cursor, &pr->filter, pr->position);
        busy = false;
    } else if (urc) {
        fail(p, pr, logic_err_name(le.kind), le.message, b->pos[failed_at]);
        busy = false;
    } else if (page.caught_up && pr->status == PROJ_CATCHING_UP) {
        pthread_mutex_lock(&p->mu);
        pr->status = PROJ_LIVE;
        pthread_mutex_unlock(&p->mu);
    }
    batch_fini(b);
    free(b);
    return busy;
}

/* ---- the runner ---- */

static struct proj *find(struct projections *p, const char *db, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!strcmp(p->list[i]->db_name, db) && !strcmp(p->list[i]->def.name, name)) {
            return p->list[i];
        }
    }
    return NULL;
}

static void add(struct projections *p, struct proj *pr)
{
    pthread_mutex_lock(&p->mu);
    p->list = xrealloc(p->list, (p->n + 1) * sizeof(*p->list));
    p->list[p->n++] = pr;
    pthread_mutex_unlock(&p->mu);
}

/* Starts the projections of db's set that do not run yet (or run an older version). */
static void scan_db(struct projections *p, struct db *db)
{
    struct comp_set *set;
    if (logic_set(p->lg, db, &set) != 0) {
        for (size_t i = 0; i < p->n; i++) { /* unknown now: keep what runs */
            p->list[i]->seen = p->list[i]->seen || p->list[i]->db == db;
        }
        return;
    }
    for (size_t i = 0; i < set->count; i++) {
        const struct comp_def *d = &set->defs[i];
        if (d->kind != COMP_PROJECTION) {
            continue;
        }
        struct proj *pr = find(p, engine_db_name(db), d->name);
        if (pr && pr->db == db && pr->def.version == d->version &&
            pr->def.deployed_us == d->deployed_us && !engine_cursor_gone(pr->cursor)) {
            pr->seen = true;
            continue;
        }
        struct proj *fresh = proj_new(p, db, d, logic_filter_parser(p->lg));
        if (fresh) {
            fresh->seen = true;
            add(p, fresh);
        }
    }
    comp_set_unref(set);
}

/* Drops the projections no longer deployed (or replaced, or of deleted databases). */
static void sweep(struct projections *p)
{
    pthread_mutex_lock(&p->mu);
    size_t kept = 0;
    struct proj **gone = xcalloc(p->n ? p->n : 1, sizeof(*gone));
    size_t ngone = 0;
    for (size_t i = 0; i < p->n; i++) {
        struct proj *pr = p->list[i];
        bool newer = false;
        for (size_t k = 0; k < p->n; k++) {
            struct proj *o = p->list[k];
            newer = newer || (o != pr && o->seen && !strcmp(o->db_name, pr->db_name) &&
                              !strcmp(o->def.name, pr->def.name) && k > i);
        }
        if (pr->seen && !newer) {
            p->list[kept++] = pr;
        } else {
            gone[ngone++] = pr;
        }
    }
    p->n = kept;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < ngone; i++) {
        if (!engine_cursor_gone(gone[i]->cursor)) {
            drop_tables(gone[i]); /* removed or replaced: what it computed goes */
        }
        proj_free(gone[i]);
    }
    free(gone);
}

static void rescan(struct projections *p)
{
    for (size_t i = 0; i < p->n; i++) {
        p->list[i]->seen = false;
    }
    size_t count;
    char **names = engine_db_names(p->e, &count);
    for (size_t i = 0; i < count; i++) {
        struct db *db;
        if (engine_db_acquire(p->e, names[i], strlen(names[i]), &db) == 0) {
            scan_db(p, db);
            engine_db_release(db);
        }
    }
    engine_names_free(names, count);
    sweep(p);
}

/* Whether waiter w's projection has applied its position: 1 yes, 0 not yet, -1 never (it
 * is not running, or failed before it). Under mu. */
static int waiter_state(struct projections *p, const struct proj_waiter *w)
{
    for (size_t i = 0; i < p->n; i++) {
        struct proj *pr = p->list[i];
        if (engine_db_id(pr->db) == w->db_id && !strcmp(pr->def.name, w->name)) {
            if (pr->position > w->min_position) {
                return 1;
            }
            return pr->status == PROJ_FAILED ? -1 : 0;
        }
    }
    return 0; /* deployed a moment ago, perhaps: wait for the deadline */
}

/* Calls the waiters that are done (all of them when stopping), outside the lock. */
static void settle_waiters(struct projections *p, bool stopping)
{
    struct proj_waiter *done = NULL;
    uint64_t now = time_mono_ns();
    pthread_mutex_lock(&p->mu);
    for (struct proj_waiter **pp = &p->waiters; *pp;) {
        struct proj_waiter *w = *pp;
        int st = waiter_state(p, w);
        if (stopping || st != 0 || now >= w->deadline_ns) {
            *pp = w->next;
            w->next = done;
            w->min_position = st > 0; /* reached, for the call below */
            done = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&p->mu);
    while (done) {
        struct proj_waiter *w = done;
        done = w->next;
        w->fn(w->arg, w->min_position != 0);
        free(w);
    }
}

void proj_wait(struct projections *p, struct db *db, const char *name, uint64_t min_position,
               uint64_t timeout_ms, proj_wait_fn *fn, void *arg)
{
    struct proj_waiter *w = xcalloc(1, sizeof(*w));
    w->db_id = engine_db_id(db);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->min_position = min_position;
    w->deadline_ns = time_mono_ns() + timeout_ms * 1000000ull;
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&p->mu);
    bool halted = p->halted;
    if (!halted) {
        w->next = p->waiters;
        p->waiters = w;
        p->woken = true; /* let the runner look at it now */
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (halted) { /* the server stops: no position will be reached */
        fn(arg, false);
        free(w);
    }
}

struct await {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, reached;
};

static void on_await(void *arg, bool reached)
{
    struct await *a = arg;
    pthread_mutex_lock(&a->mu);
    a->done = true;
    a->reached = reached;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

bool proj_await(struct projections *p, struct db *db, const char *name, uint64_t min_position,
                uint64_t timeout_ms)
{
    struct await a = {.done = false};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    proj_wait(p, db, name, min_position, timeout_ms, on_await, &a);
    pthread_mutex_lock(&a.mu);
    while (!a.done) { /* proj_wait answers exactly once, at the deadline at the latest */
        pthread_cond_wait(&a.cv, &a.mu);
    }
    pthread_mutex_unlock(&a.mu);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
    return a.reached;
}

static void *runner_main(void *arg)
{
    struct projections *p = arg;
    int64_t last_scan = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop, kicked = p->kicked;
        p->kicked = false;
        p->woken = false;
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            break;
        }
        int64_t now = time_mono_ns() / 1000000;
        if (kicked || now - last_scan >= PROJ_RESCAN_MS) {
            rescan(p);
            last_scan = now;
        }
        bool busy = false;
        for (size_t i = 0; i < p->n; i++) {
            struct proj *pr = p->list[i];
            if (pr->status != PROJ_FAILED) {
                busy = step(p, pr) || busy;
            }
        }
        settle_waiters(p, false);
        if (!busy) {
            pthread_mutex_lock(&p->mu);
            uint64_t nap_ms = PROJ_RESCAN_MS, now_ns = time_mono_ns();
            for (struct proj_waiter *w = p->waiters; w; w = w->next) { /* the next deadline */
                uint64_t left = w->deadline_ns > now_ns ? (w->deadline_ns - now_ns) / 1000000 : 0;
                nap_ms = left + 1 < nap_ms ? left + 1 : nap_ms;
            }
            struct timespec until = time_deadline_ms(nap_ms);
            while (!p->stop && !p->kicked && !p->woken &&
                   pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int proj_start(struct logic *lg, struct engine *e, struct projections **out)
{
    struct projections *p = xcalloc(1, sizeof(*p));
    p->lg = lg;
    p->e = e;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL); /* time_deadline_ms gives wall-clock deadlines */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 8u << 20); /* user code and the Lua runtime's C stack */
    int rc = pthread_create(&p->thread, &attr, runner_main, p);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return ERR_IO;
    }
    *out = p;
    return 0;
}

void proj_halt(struct projections *p)
{
    pthread_mutex_lock(&p->mu);
    bool joined = p->halted;
    p->stop = true;
    p->halted = true; /* waits from now on are answered at once */
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (!joined) {
        pthread_join(p->thread, NULL);
    }
    settle_waiters(p, true);
}

void proj_stop(struct projections *p)
{
    if (!p) {
        return;
    }
    proj_halt(p);
    for (size_t i = 0; i < p->n; i++) {
        proj_free(p->list[i]);
    }
    free(p->list);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void proj_kick(struct projections *p)
{
    pthread_mutex_lock(&p->mu);
    p->kicked = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- reads ---- */

/* Copies the status of the projection called name of db into out (and its tables). */
static int lookup(struct projections *p, struct db *db, const char *name, struct proj_info *out,
                  char *t_state, char *t_changes)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->mu);
    struct proj *pr = NULL;
    for (size_t i = 0; i < p->n && !pr; i++) {
        struct proj *o = p->list[i];
        pr = o->db == db && !strcmp(o->def.name, name) ? o : NULL;
    }
    if (pr) {
        out->status = pr->status;
        out->version = pr->def.version;
        out->position = pr->position;
        out->sequence = pr->sequence;
        out->failed_position = pr->failed_position;
        snprintf(out->error, sizeof out->error, "%s", pr->error);
        snprintf(out->error_kind, sizeof out->error_kind, "%s", pr->error_kind);
        if (t_state) {
            memcpy(t_state, pr->t_state, sizeof pr->t_state);
        }
        if (t_changes) {
            memcpy(t_changes, pr->t_changes, sizeof pr->t_changes);
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (!pr) {
        return ERR_NOTFOUND;
    }
    struct db_info di;
    if (engine_db_info(db, &di) == 0) {
        out->head = di.head;
    }
    return 0;
}

/* lookup, then a read transaction on db's derived store (*t, the caller ends it). */
static int lookup_read(struct projections *p, struct db *db, const char *name,
                       struct proj_info *out, char *t_state, char *t_changes,
                       struct derived_txn **t)
{
    int rc = lookup(p, db, name, out, t_state, t_changes);
    return rc ? rc : derived_begin(db, false, t);
}

int proj_info(struct projections *p, struct db *db, const char *name, struct proj_info *out)
{
    return lookup(p, db, name, out, NULL, NULL);
}

int proj_state(struct projections *p, struct db *db, const char *name, struct slice key,
               struct buf *out, uint64_t *out_position, struct proj_info *info)
{
    char table[DERIVED_TABLE_BYTES + 1];
    int rc = lookup(p, db, name, info, table, NULL);
    if (rc) {
        return rc;
    }
    if (key.len == 0 || key.len > PROJ_KEY_BYTES) {
        return ERR_NOTFOUND;
    }
    struct derived_txn *t;
    rc = derived_begin(db, false, &t);
    if (rc) {
        return rc;
    }
    struct slice v;
    rc = derived_get(t, table, key, &v);
    if (!rc && v.len > 8) {
        *out_position = get_be64(v.ptr);
        buf_add(out, v.ptr + 8, v.len - 8);
    } else if (!rc) {
        rc = ERR_CORRUPT;
    }
    derived_abort(t);
    return rc;
}

struct key_page {
    struct buf *out;
    size_t count;
    struct buf last;
};

static int on_key(void *arg, struct slice key, struct slice val)
{
    struct key_page *kp = arg;
    (void)val;
    buf_adds(kp->out, kp->count++ ? "," : "");
    buf_add_json_str(kp->out, key.ptr, key.len);
    buf_reset(&kp->last);
    buf_add(&kp->last, key.ptr, key.len);
    return 0;
}

int proj_keys(struct projections *p, struct db *db, const char *name, struct slice prefix,
              struct slice after, size_t limit, struct buf *out)
{
    char table[DERIVED_TABLE_BYTES + 1];
    struct proj_info info;
    struct derived_txn *t;
    int rc = lookup_read(p, db, name, &info, table, NULL, &t);
    if (rc) {
        return rc;
    }
    struct key_page kp = {.out = out};
    buf_init(&kp.last);
    buf_adds(out, "{\"keys\":[");
    rc = derived_scan(t, table, prefix, after, limit, on_key, &kp);
    derived_abort(t);
    buf_adds(out, "],\"next\":"); /* a full page: go on after its last key */
    if (kp.count == limit && kp.count > 0) {
        buf_add_json_str(out, kp.last.ptr, kp.last.len);
    } else {
        buf_adds(out, "null");
    }
    buf_addc(out, '}');
    buf_fini(&kp.last);
    return rc;
}

struct change_page {
    struct buf *out;
    size_t count;
    uint64_t last;
};

bool proj_change_decode(struct slice key, struct slice val, struct proj_change *out)
{
    if (key.len != 8 || val.len < 16) {
        return false;
    }
    uint32_t kl, sl;
    memcpy(&kl, val.ptr + 8, 4);
    if (12 + (size_t)kl + 4 > val.len) {
        return false;
    }
    memcpy(&sl, val.ptr + 12 + kl, 4);
    if (16 + (size_t)kl + sl != val.len) {
        return false;
    }
    out->sequence = get_be64(key.ptr);
    out->position = get_be64(val.ptr);
    out->key = (struct slice){val.ptr + 12, kl};
    out->state = (struct slice){val.ptr + 16 + kl, sl};
    return true;
}

void proj_change_json(struct buf *out, const struct proj_change *ch)
{
    buf_adds(out, "{\"sequence\":");
    buf_add_u64(out, ch->sequence);
    buf_adds(out, ",\"key\":");
    buf_add_json_str(out, ch->key.ptr, ch->key.len);
    buf_adds(out, ",\"state\":");
    buf_add(out, ch->state.ptr, ch->state.len);
    buf_adds(out, ",\"position\":");
    buf_add_u64(out, ch->position);
    buf_addc(out, '}');
}

void proj_change_list_init(struct proj_change_list *l, size_t max, size_t max_bytes)
{
    l->max = max ? max : 1;
    l->max_bytes = max_bytes;
    l->ch = xcalloc(l->max, sizeof(*l->ch));
    l->n = 0;
    buf_init(&l->bytes);
}

void proj_change_list_fini(struct proj_change_list *l)
{
    free(l->ch);
    buf_fini(&l->bytes);
    memset(l, 0, sizeof(*l));
}

/* Copies one change into the list (its slices are set once the scan is over: bytes may
 * move while it grows). Stops the scan when the list is full. */
static int on_list_change(void *arg, struct slice key, struct slice val)
{
    struct proj_change_list *l = arg;
    struct proj_change ch;
    if (l->n == l->max || !proj_change_decode(key, val, &ch) ||
        (l->n && l->bytes.len + ch.key.len + ch.state.len > l->max_bytes)) {
        return 1;
    }
    buf_add(&l->bytes, ch.key.ptr, ch.key.len);
    buf_add(&l->bytes, ch.state.ptr, ch.state.len);
    l->ch[l->n++] = ch;
    return 0;
}

int proj_change_list_read(struct derived_txn *t, const char *table, uint64_t after,
                          struct proj_change_list *l)
{
    l->n = 0;
    buf_reset(&l->bytes);
    char from[8];
    put_be64(from, after);
    int rc = derived_scan(t, table, (struct slice){NULL, 0},
                          after ? (struct slice){from, 8} : (struct slice){NULL, 0}, l->max,
                          on_list_change, l);
    size_t at = 0;
    for (size_t i = 0; i < l->n; i++) {
        l->ch[i].key.ptr = l->bytes.ptr + at;
        at += l->ch[i].key.len;
        l->ch[i].state.ptr = l->bytes.ptr + at;
        at += l->ch[i].state.len;
    }
    return rc;
}

static int on_change(void *arg, struct slice key, struct slice val)
{
    struct change_page *cp = arg;
    struct proj_change ch;
    if ((cp->count && cp->out->len > PROJ_CHANGES_PAGE_BYTES) ||
        !proj_change_decode(key, val, &ch)) {
        return 1; /* (a page stops once past its bytes: the next one goes on after it) */
    }
    buf_adds(cp->out, cp->count++ ? "," : "");
    proj_change_json(cp->out, &ch);
    cp->last = ch.sequence;
    return 0;
}

int proj_changes(struct projections *p, struct db *db, const char *name, uint64_t after,
                 size_t limit, struct buf *out)
{
    char table[DERIVED_TABLE_BYTES + 1];
    struct proj_info info;
    struct derived_txn *t;
    int rc = lookup_read(p, db, name, &info, NULL, table, &t);
    if (rc) {
        return rc;
    }
    char from[8];
    put_be64(from, after);
    struct change_page cp = {.out = out, .last = after};
    buf_adds(out, "{\"changes\":[");
    rc = derived_scan(t, table, (struct slice){NULL, 0},
                      after ? (struct slice){from, 8} : (struct slice){NULL, 0}, limit,
                      on_change, &cp);
    derived_abort(t);
    buf_adds(out, "],\"next\":");
    buf_add_u64(out, cp.last);
    buf_adds(out, ",\"sequence\":");
    buf_add_u64(out, info.sequence);
    buf_addc(out, '}');
    return rc;
}

int proj_changes_list(struct projections *p, struct db *db, const char *name, uint64_t after,
                      struct proj_change_list *l, struct proj_info *info)
{
    char table[DERIVED_TABLE_BYTES + 1];
    struct derived_txn *t;
    l->n = 0;
    int rc = lookup_read(p, db, name, info, NULL, table, &t);
    if (rc) {
        return rc;
    }
    rc = proj_change_list_read(t, table, after, l);
    derived_abort(t);
    return rc;
}

int proj_webhook(struct projections *p, struct db *db, const char *name, struct buf *out)
{
    int rc = ERR_NOTFOUND;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n && rc; i++) {
        struct proj *pr = p->list[i];
        if (pr->db == db && pr->hook && !strcmp(pr->def.name, name)) {
            phook_describe(pr->hook, out);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

struct proj_watch *proj_watch(struct projections *p, struct db *db, const char *name,
                              proj_watch_fn *fn, void *arg)
{
    struct proj_watch *w = xcalloc(1, sizeof(*w));
    w->db_id = engine_db_id(db);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&p->mu);
    w->next = p->watches;
    p->watches = w;
    pthread_mutex_unlock(&p->mu);
    return w;
}

void proj_unwatch(struct projections *p, struct proj_watch *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    for (struct proj_watch **pp = &p->watches; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    free(w);
}
