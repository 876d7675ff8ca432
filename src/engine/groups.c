#include "engine/groups.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cursor.h"
#include "engine/engine_int.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

/* One event read and not yet acknowledged. */
struct pend {
    uint64_t pos;
    uint64_t stream_hash;                     /* strmap_hash of its stream */
    char consumer[GROUP_CONSUMER_BYTES + 1];  /* holder of the lease, "" = available */
    int64_t deadline_ms;                      /* lease end (monotonic) */
    uint32_t attempts;                        /* deliveries so far */
};

struct group {
    char name[GROUP_NAME_BYTES + 1];
    char *filter_text;           /* owned */
    struct filter filter;
    uint32_t ack_timeout_s, max_retries;
    uint64_t checkpoint;         /* durable */
    struct engine_cursor *cur;   /* reads the log from the checkpoint on (engine/cursor.h);
                                    its position is the next position to read */
    struct pend *pend;           /* by position */
    size_t npend, pend_cap;
    uint64_t *parked;            /* durable, ascending */
    size_t nparked, parked_cap;
    int64_t created_us;
    bool dirty;                  /* checkpoint changed since the last save */
};

bool group_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > GROUP_NAME_BYTES) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

static void group_free(struct group *g)
{
    engine_cursor_close(g->cur); /* before the filter it borrows */
    filter_fini(&g->filter);
    free(g->filter_text);
    free(g->pend);
    free(g->parked);
    free(g);
}

static struct group *find(struct db *db, const char *name)
{
    for (size_t i = 0; i < db->ngroups; i++) {
        if (strcmp(db->groups[i]->name, name) == 0) {
            return db->groups[i];
        }
    }
    return NULL;
}

/* ---- durability: groups.json ---- */

static json_t *group_json(const struct group *g)
{
    json_t *parked = json_array();
    for (size_t i = 0; i < g->nparked; i++) {
        json_array_append_new(parked, json_integer((json_int_t)g->parked[i]));
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "name", g->name, "filter",
                     g->filter_text, "ackTimeoutSeconds", (json_int_t)g->ack_timeout_s,
                     "maxRetries", (json_int_t)g->max_retries, "checkpoint",
                     (json_int_t)g->checkpoint, "createdUs", (json_int_t)g->created_us,
                     "parked", parked);
}

/* groups.json's document (statefile_render_fn; under groups_mu): every subscription's
 * definition, checkpoint and parked list. Clears the dirty marks: they are in it. */
static json_t *render_groups(void *arg)
{
    struct db *db = arg;
    json_t *arr = json_array();
    for (size_t i = 0; i < db->ngroups; i++) {
        json_array_append_new(arr, group_json(db->groups[i]));
        db->groups[i]->dirty = false;
    }
    return json_pack("{s:o}", "groups", arr);
}

static int save(struct db *db)
{
    return statefile_save(&db->groups_file);
}

static void save_undone(struct db *db)
{
    statefile_save_undone(&db->groups_file);
}

/* Saves moved checkpoints at most every GROUP_SAVE_MS (groups_fini saves the last ones). */
static void save_soon(struct db *db)
{
    statefile_save_soon(&db->groups_file);
}

static int parse_def_filter(struct db *db, const char *text, struct filter *out)
{
    if (!text[0] || !db->e->parse_filter) {
        filter_init(out);
        return text[0] ? ERR_INVALID : 0;
    }
    return db->e->parse_filter((struct slice){text, strlen(text)}, out);
}

static struct group *group_new(const char *name, const char *filter_text)
{
    struct group *g = xcalloc(1, sizeof(*g));
    snprintf(g->name, sizeof g->name, "%s", name);
    g->filter_text = xstrndup(filter_text, strlen(filter_text));
    return g;
}

/* The next position to read into pending. */
static uint64_t scan_of(const struct group *g)
{
    return engine_cursor_position(g->cur);
}

/* Opens g's cursor after its checkpoint (its filter is parsed, its checkpoint set). Returns 0
 * or ERR_GONE (the database is being deleted). */
static int open_cursor(struct db *db, struct group *g)
{
    struct engine_cursor_opts o = {.filter = &g->filter, .from = g->checkpoint + 1};
    return engine_cursor_open(db, &o, &g->cur);
}

static int load_one(void *arg, json_t *o)
{
    struct db *db = arg;
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *ft = json_string_value(json_object_get(o, "filter"));
    if (!name || !ft || !group_name_ok(name, strlen(name))) {
        return ERR(ERR_CORRUPT);
    }
    struct group *g = group_new(name, ft);
    if (parse_def_filter(db, ft, &g->filter) != 0) {
        group_free(g);
        return ERR(ERR_CORRUPT);
    }
    g->ack_timeout_s = (uint32_t)json_integer_value(json_object_get(o, "ackTimeoutSeconds"));
    g->max_retries = (uint32_t)json_integer_value(json_object_get(o, "maxRetries"));
    g->checkpoint = (uint64_t)json_integer_value(json_object_get(o, "checkpoint"));
    g->created_us = json_integer_value(json_object_get(o, "createdUs"));
    if (open_cursor(db, g) != 0) {
        group_free(g);
        return ERR(ERR_CORRUPT);
    }
    json_t *parked = json_object_get(o, "parked");
    size_t i;
    json_t *v;
    json_array_foreach(parked, i, v) {
        if (g->nparked == g->parked_cap) {
            g->parked_cap = g->parked_cap ? g->parked_cap * 2 : 64;
            g->parked = xrealloc(g->parked, g->parked_cap * sizeof(*g->parked));
        }
        g->parked[g->nparked++] = (uint64_t)json_integer_value(v);
    }
    db->groups = xrealloc(db->groups, (db->ngroups + 1) * sizeof(*db->groups));
    db->groups[db->ngroups++] = g;
    return 0;
}

int groups_load(struct db *db)
{
    statefile_init(&db->groups_file, db->dir, "groups.json", db->name, 0640, GROUP_SAVE_MS,
                   render_groups, db);
    return statefile_load(db->dir, "groups.json", "groups", db->name, load_one, db);
}

void groups_fini(struct db *db)
{
    if (db->ngroups && !db->deleted) {
        bool dirty = false;
        for (size_t i = 0; i < db->ngroups; i++) {
            dirty |= db->groups[i]->dirty;
        }
        if (dirty) {
            save(db); /* the last checkpoints */
        }
    }
    for (size_t i = 0; i < db->ngroups; i++) {
        group_free(db->groups[i]);
    }
    free(db->groups);
    db->groups = NULL;
    db->ngroups = 0;
}

/* ---- definitions ---- */

int engine_group_create(struct db *db, const struct group_def *def)
{
    char *text = xstrndup(def->filter.ptr ? def->filter.ptr : "", def->filter.len);
    struct group *g = group_new(def->name, text);
    free(text);
    if (parse_def_filter(db, g->filter_text, &g->filter) != 0) {
        group_free(g);
        return ERR_INVALID;
    }
    g->ack_timeout_s = def->ack_timeout_s;
    g->max_retries = def->max_retries;
    g->checkpoint = def->start ? def->start - 1 : 0;
    g->created_us = time_now_us();
    int rc = open_cursor(db, g);
    if (rc) {
        group_free(g);
        return rc;
    }
    pthread_mutex_lock(&db->groups_mu);
    rc = find(db, def->name) ? ERR_EXISTS : db->ngroups >= GROUPS_MAX ? ERR_TOOBIG : 0;
    if (!rc) {
        db->groups = xrealloc(db->groups, (db->ngroups + 1) * sizeof(*db->groups));
        db->groups[db->ngroups++] = g;
        rc = save(db);
        if (rc) {
            db->ngroups--; /* not durable: not made */
            save_undone(db);
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
    if (rc) {
        group_free(g);
    }
    return rc;
}

int engine_group_delete(struct db *db, const char *name)
{
    pthread_mutex_lock(&db->groups_mu);
    int rc = ERR_NOTFOUND;
    for (size_t i = 0; i < db->ngroups; i++) {
        if (strcmp(db->groups[i]->name, name) == 0) {
            struct group *g = db->groups[i];
            db->groups[i] = db->groups[--db->ngroups];
            rc = save(db);
            if (rc) {
                db->groups[db->ngroups++] = g; /* still on disk: still here */
                save_undone(db);
            } else {
                group_free(g);
            }
            break;
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
    return rc;
}

static int cmp_groups(const void *a, const void *b)
{
    return strcmp((*(struct group *const *)a)->name, (*(struct group *const *)b)->name);
}

int engine_group_list(struct db *db, const char *only, group_info_fn *fn, void *arg)
{
    pthread_mutex_lock(&db->groups_mu);
    if (db->ngroups > 1) {
        qsort(db->groups, db->ngroups, sizeof(*db->groups), cmp_groups);
    }
    int64_t now = (int64_t)(time_mono_ns() / 1000000);
    int rc = only ? ERR_NOTFOUND : 0;
    for (size_t i = 0; i < db->ngroups; i++) {
        struct group *g = db->groups[i];
        if (only && strcmp(g->name, only) != 0) {
            continue;
        }
        struct group_info in = {.filter = g->filter_text, .ack_timeout_s = g->ack_timeout_s,
                                .max_retries = g->max_retries, .checkpoint = g->checkpoint,
                                .read_to = scan_of(g), .pending = g->npend, .parked = g->nparked,
                                .created_us = g->created_us};
        snprintf(in.name, sizeof in.name, "%s", g->name);
        for (size_t k = 0; k < g->npend; k++) {
            in.leased += g->pend[k].consumer[0] && g->pend[k].deadline_ms > now;
        }
        fn(arg, &in);
        rc = 0;
    }
    pthread_mutex_unlock(&db->groups_mu);
    return rc;
}

/* ---- delivery ---- */

static bool is_parked(const struct group *g, uint64_t pos)
{
    size_t lo = 0, hi = g->nparked;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->parked[mid] == pos) {
            return true;
        }
        if (g->parked[mid] < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static void park(struct group *g, uint64_t pos)
{
    if (g->nparked == GROUP_PARKED_MAX) {
        log_warn("subscription %s: more than %d parked events; dropping the oldest", g->name,
                 GROUP_PARKED_MAX);
        memmove(g->parked, g->parked + 1, (g->nparked - 1) * sizeof(*g->parked));
        g->nparked--;
    }
    if (g->nparked == g->parked_cap) {
        g->parked_cap = g->parked_cap ? g->parked_cap * 2 : 64;
        g->parked = xrealloc(g->parked, g->parked_cap * sizeof(*g->parked));
    }
    size_t at = g->nparked;
    while (at > 0 && g->parked[at - 1] > pos) {
        at--;
    }
    memmove(g->parked + at + 1, g->parked + at, (g->nparked - at) * sizeof(*g->parked));
    g->parked[at] = pos;
    g->nparked++;
}

/* The checkpoint: below the first pending event, or below what is still to be read. */
static void advance(struct group *g)
{
    uint64_t cp = (g->npend ? g->pend[0].pos : scan_of(g)) - 1;
    if (cp != g->checkpoint) {
        g->checkpoint = cp;
        g->dirty = true;
    }
}

static void drop_pend(struct group *g, size_t i)
{
    memmove(g->pend + i, g->pend + i + 1, (g->npend - i - 1) * sizeof(*g->pend));
    g->npend--;
}

/* Expired leases: available again, or parked when out of retries. Returns true when
 * something was parked (the parked list must be saved). */
static bool expire(struct group *g, int64_t now)
{
    bool parked = false;
    for (size_t i = 0; i < g->npend;) {
        struct pend *p = &g->pend[i];
        if (p->consumer[0] && p->deadline_ms <= now) {
            p->consumer[0] = '\0';
            if (p->attempts > g->max_retries) {
                park(g, p->pos);
                drop_pend(g, i);
                parked = true;
                continue;
            }
        }
        i++;
    }
    return parked;
}

struct fill_ctx {
    struct group *g;
};

static int on_fill(void *arg, const struct event_rec *ev)
{
    struct group *g = ((struct fill_ctx *)arg)->g;
    if (is_parked(g, ev->position)) {
        return 0;
    }
    if (g->npend == g->pend_cap) {
        g->pend_cap = g->pend_cap ? g->pend_cap * 2 : 256;
        g->pend = xrealloc(g->pend, g->pend_cap * sizeof(*g->pend));
    }
    g->pend[g->npend++] = (struct pend){.pos = ev->position,
                                        .stream_hash = strmap_hash(ev->stream.ptr,
                                                                   ev->stream.len)};
    return 0;
}

/* Reads matching events from the cursor into pending, up to GROUP_PENDING_MAX, examining at
 * most GROUP_FILL_PAGES pages of candidates (a filter no index narrows must not scan a large
 * log in one request: the next pull goes on from where the cursor stopped). Caller holds
 * groups_mu, which serializes the cursor. */
static int fill(struct group *g)
{
    for (int page = 0; page < GROUP_FILL_PAGES && g->npend < GROUP_PENDING_MAX; page++) {
        struct engine_cursor_page pg;
        struct fill_ctx fc = {g};
        int rc = engine_cursor_next(g->cur, GROUP_PENDING_MAX - g->npend, on_fill, &fc, &pg);
        if (rc) {
            return rc;
        }
        if (pg.caught_up) {
            return 0;
        }
    }
    return 0;
}

/* The consumer holding stream h (a live lease on one of its pending events), or NULL. */
static const char *holder(const struct group *g, uint64_t h, int64_t now)
{
    for (size_t i = 0; i < g->npend; i++) {
        const struct pend *p = &g->pend[i];
        if (p->stream_hash == h && p->consumer[0] && p->deadline_ms > now) {
            return p->consumer;
        }
    }
    return NULL;
}

struct lease_out {
    uint64_t pos;
    uint32_t attempt;
};

/* Leases up to max available events to consumer, in order, keeping streams exclusive. */
static size_t assign(struct group *g, const char *consumer, size_t max, int64_t now,
                     struct lease_out *out)
{
    size_t n = 0;
    struct strmap blocked; /* stream hashes held by another consumer */
    strmap_init(&blocked, 1);
    for (size_t i = 0; i < g->npend && n < max; i++) {
        struct pend *p = &g->pend[i];
        if (p->consumer[0] && p->deadline_ms > now) {
            continue;
        }
        if (strmap_get(&blocked, &p->stream_hash, sizeof p->stream_hash)) {
            continue;
        }
        const char *h = holder(g, p->stream_hash, now);
        if (h && strcmp(h, consumer) != 0) {
            strmap_put(&blocked, &p->stream_hash, sizeof p->stream_hash, NULL);
            continue;
        }
        snprintf(p->consumer, sizeof p->consumer, "%s", consumer);
        p->deadline_ms = now + (int64_t)g->ack_timeout_s * 1000;
        p->attempts++;
        out[n++] = (struct lease_out){p->pos, p->attempts};
    }
    strmap_fini(&blocked);
    return n;
}

static size_t find_pend(const struct group *g, uint64_t pos);

/* Gives back consumer's leases that were taken but not delivered. */
static void unlease(struct db *db, const char *name, const char *consumer,
                    const struct lease_out *l, size_t n)
{
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    for (size_t i = 0; g && i < n; i++) {
        size_t at = find_pend(g, l[i].pos);
        struct pend *p = at != SIZE_MAX ? &g->pend[at] : NULL;
        if (p && strcmp(p->consumer, consumer) == 0 && p->attempts == l[i].attempt) {
            p->consumer[0] = '\0';
            p->attempts--;
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
}

/* An event that was leased but is hidden now (its stream was deleted, or it expired): it will
 * never be delivered, so it counts as done. */
static void drop_hidden(struct db *db, const char *name, uint64_t pos)
{
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    size_t at = g ? find_pend(g, pos) : SIZE_MAX;
    if (at != SIZE_MAX) {
        drop_pend(g, at);
        advance(g);
    }
    pthread_mutex_unlock(&db->groups_mu);
}

struct emit_ctx {
    group_event_fn *fn;
    void *arg;
    uint32_t attempt;
    bool stop;          /* fn asked to stop (the store does not pass that on) */
};

static int on_leased(void *arg, const struct event_rec *ev)
{
    struct emit_ctx *ec = arg;
    ec->stop = ec->fn(ec->arg, ev, ec->attempt) > 0;
    return ec->stop ? 1 : 0;
}

int engine_group_pull(struct db *db, const char *name, const char *consumer, size_t max,
                      group_event_fn *fn, void *arg)
{
    max = max > GROUP_PULL_MAX ? GROUP_PULL_MAX : max;
    struct lease_out *out = xmalloc((max ? max : 1) * sizeof(*out));
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    int rc = g ? 0 : ERR_NOTFOUND;
    size_t n = 0;
    if (!rc) {
        int64_t now = (int64_t)(time_mono_ns() / 1000000);
        if (expire(g, now)) {
            advance(g);
            save(db);
        }
        rc = fill(g);
        if (!rc) n = assign(g, consumer, max, now, out);
        advance(g);
    }
    pthread_mutex_unlock(&db->groups_mu);
    size_t i = 0;
    bool stop = false;
    for (; !rc && !stop && i < n; i++) {
        struct emit_ctx ec = {fn, arg, out[i].attempt, false};
        rc = engine_read_event(db, out[i].pos, on_leased, &ec);
        if (rc == ERR_NOTFOUND) {
            drop_hidden(db, name, out[i].pos); /* hidden since: nothing to deliver */
            rc = 0;
        }
        stop = ec.stop;
    }
    if (i < n) {
        unlease(db, name, consumer, out + i, n - i); /* not delivered: not leased either */
    }
    free(out);
    return rc;
}

int engine_group_leased(struct db *db, const char *name, const char *consumer, size_t *out)
{
    *out = 0;
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    int64_t now = (int64_t)(time_mono_ns() / 1000000);
    for (size_t i = 0; g && i < g->npend; i++) {
        const struct pend *p = &g->pend[i];
        *out += p->deadline_ms > now && strcmp(p->consumer, consumer) == 0;
    }
    pthread_mutex_unlock(&db->groups_mu);
    return g ? 0 : ERR_NOTFOUND;
}

static size_t find_pend(const struct group *g, uint64_t pos)
{
    size_t lo = 0, hi = g->npend;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->pend[mid].pos < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < g->npend && g->pend[lo].pos == pos ? lo : SIZE_MAX;
}

int engine_group_ack(struct db *db, const char *name, const uint64_t *pos, size_t n,
                     size_t *done)
{
    *done = 0;
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    if (g) {
        for (size_t i = 0; i < n; i++) {
            size_t at = find_pend(g, pos[i]);
            if (at != SIZE_MAX) {
                drop_pend(g, at);
                (*done)++;
            }
        }
        advance(g);
        if (g->dirty) {
            save_soon(db);
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
    return g ? 0 : ERR_NOTFOUND;
}

int engine_group_nack(struct db *db, const char *name, const uint64_t *pos, size_t n, bool to_park,
                      size_t *done)
{
    *done = 0;
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    bool parked = false;
    if (g) {
        for (size_t i = 0; i < n; i++) {
            size_t at = find_pend(g, pos[i]);
            if (at == SIZE_MAX) {
                continue;
            }
            (*done)++;
            struct pend *p = &g->pend[at];
            p->consumer[0] = '\0';
            if (to_park || p->attempts > g->max_retries) {
                park(g, p->pos);
                drop_pend(g, at);
                parked = true;
            }
        }
        advance(g);
        if (parked) {
            save(db);
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
    return g ? 0 : ERR_NOTFOUND;
}

int engine_group_parked(struct db *db, const char *name, uint64_t from, size_t limit,
                        engine_event_fn *fn, void *arg)
{
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    uint64_t *list = NULL;
    size_t n = 0;
    if (g) {
        list = xmalloc((g->nparked ? g->nparked : 1) * sizeof(*list));
        for (size_t i = 0; i < g->nparked && n < limit; i++) {
            if (g->parked[i] >= from) {
                list[n++] = g->parked[i];
            }
        }
    }
    pthread_mutex_unlock(&db->groups_mu);
    int rc = g ? 0 : ERR_NOTFOUND;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = engine_read_event(db, list[i], fn, arg);
        if (rc == ERR_NOTFOUND) {
            rc = 0;
        }
    }
    free(list);
    return rc;
}

/* Puts one parked position back into pending (position order). */
static void unpark_into_pending(struct group *g, uint64_t pos)
{
    if (g->npend == g->pend_cap) {
        g->pend_cap = g->pend_cap ? g->pend_cap * 2 : 256;
        g->pend = xrealloc(g->pend, g->pend_cap * sizeof(*g->pend));
    }
    size_t at = g->npend;
    while (at > 0 && g->pend[at - 1].pos > pos) {
        at--;
    }
    memmove(g->pend + at + 1, g->pend + at, (g->npend - at) * sizeof(*g->pend));
    g->pend[at] = (struct pend){.pos = pos};
    g->npend++;
}

struct hash_ctx {
    uint64_t h;
};

static int take_hash(void *arg, const struct event_rec *ev)
{
    ((struct hash_ctx *)arg)->h = strmap_hash(ev->stream.ptr, ev->stream.len);
    return 1;
}

int engine_group_replay(struct db *db, const char *name, const uint64_t *pos, size_t n,
                        size_t *done)
{
    *done = 0;
    pthread_mutex_lock(&db->groups_mu);
    struct group *g = find(db, name);
    int rc = g ? 0 : ERR_NOTFOUND;
    for (size_t i = 0; g && i < g->nparked;) {
        bool take = n == 0;
        for (size_t k = 0; !take && k < n; k++) {
            take = pos[k] == g->parked[i];
        }
        if (!take) {
            i++;
            continue;
        }
        uint64_t p = g->parked[i];
        memmove(g->parked + i, g->parked + i + 1, (g->nparked - i - 1) * sizeof(*g->parked));
        g->nparked--;
        struct hash_ctx hc = {0};
        engine_read_event(db, p, take_hash, &hc);
        unpark_into_pending(g, p);
        g->pend[find_pend(g, p)].stream_hash = hc.h;
        (*done)++;
    }
    if (g && *done) {
        advance(g);
        rc = save(db);
    }
    pthread_mutex_unlock(&db->groups_mu);
    return rc;
}
