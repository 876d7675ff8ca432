/* Scheduled implications (docs/dialects/j17.md, "Scheduled events"): a write that schedules
 * an event also writes, in the same commit, a timer record to the stream J17_TIMER_STREAM
 * (J17_TIMER_SCHEDULED, tagged "j17timer:<id>"). One thread per server reads those streams
 * and fires each timer once due: it appends the event (with its own implications, under the
 * spec then in force) together with a J17_TIMER_FIRED marker, on the conditions that no
 * marker of that timer exists yet (so a timer fires once, across restarts and processes) and
 * that no cancel_on event came after the timer was written (then a J17_TIMER_CANCELLED
 * marker is written instead). Pending timers are rebuilt from the streams after a restart.
 * The same thread runs sagas: it applies the saga records of the same stream (saga.h) and
 * advances the running instances each tick (sagas.c). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "dialect/j17/j_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/append.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

enum {
    TIMERS_TICK_MS = 1000,        /* how often due timers are looked for */
    TIMERS_READ_PAGE = 1000,      /* timer stream events read per call */
    TIMERS_PENDING_MAX = 1000000, /* pending timers kept in memory per database (56 bytes
                                     each: the record is read back when it fires); past it
                                     the stream is read on once some have fired */
    TIMERS_FIRES_PER_TICK = 256,  /* timers one database fires per tick at most (each is a
                                     commit): no database starves the others or a shutdown */
};

/* A pending timer: what the thread keeps of it (its record is read back when it fires). */
struct timer {
    char id[40];                  /* a UUID's text */
    int64_t fire_at_ms;
    uint64_t position;            /* of its record */
};

struct tdb {                      /* what is known of one database's timers */
    uint64_t db_id;
    uint64_t read_version;        /* timer stream events read */
    struct timer *heap;           /* pending timers, a min-heap by fire_at_ms (entries whose
                                     id left `live` are stale: skipped when they surface) */
    size_t n, cap;
    struct strmap live;           /* ids of the pending timers (no value) */
    bool seen;                    /* its database was there at this scan */
    struct j_sagas sagas;         /* its running saga instances (sagas.c) */
};

struct j17_timers {
    struct j17_ctx *x;            /* borrowed */
    pthread_t thread;
    bool running;
    bool stop;                    /* under mu; read atomically between writes */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct tdb *dbs;              /* the thread's own */
    size_t ndbs;
};

/* ---- what a database's timer stream says ---- */

static struct tdb *tdb_of(struct j17_timers *t, uint64_t id)
{
    for (size_t i = 0; i < t->ndbs; i++) {
        if (t->dbs[i].db_id == id) {
            return &t->dbs[i];
        }
    }
    t->dbs = xrealloc(t->dbs, (t->ndbs + 1) * sizeof(*t->dbs));
    t->dbs[t->ndbs] = (struct tdb){.db_id = id};
    strmap_init(&t->dbs[t->ndbs].live, 0);
    j_sagas_init(&t->dbs[t->ndbs].sagas, J17_SAGAS_LIVE_MAX);
    return &t->dbs[t->ndbs++];
}

static void tdb_fini(struct tdb *d)
{
    free(d->heap);
    strmap_fini(&d->live);
    j_sagas_fini(&d->sagas);
}

static bool earlier(const struct timer *a, const struct timer *b)
{
    return a->fire_at_ms < b->fire_at_ms;
}

static void heap_push(struct tdb *d, const struct timer *tm)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->heap = xrealloc(d->heap, d->cap * sizeof(*d->heap));
    }
    size_t i = d->n++;
    while (i > 0 && earlier(tm, &d->heap[(i - 1) / 2])) {
        d->heap[i] = d->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->heap[i] = *tm;
}

static void heap_pop(struct tdb *d)
{
    struct timer last = d->heap[--d->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= d->n) {
            break;
        }
        if (c + 1 < d->n && earlier(&d->heap[c + 1], &d->heap[c])) {
            c++;
        }
        if (!earlier(&d->heap[c], &last)) {
            break;
        }
        d->heap[i] = d->heap[c];
        i = c;
    }
    if (d->n) {
        d->heap[i] = last;
    }
}

static int on_timer_event(void *arg, const struct event_rec *ev)
{
    struct tdb *d = arg;
    json_t *data = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, NULL);
    static const char SAGA[] = "j17.saga";
    if (ev->type.len >= sizeof SAGA - 1 && !memcmp(ev->type.ptr, SAGA, sizeof SAGA - 1)) {
        int stop = j_sagas_on_record(&d->sagas, ev, data);
        json_decref(data);
        if (!stop) {
            d->read_version = ev->version;
        }
        return stop;
    }
    const char *id = json_string_value(json_object_get(data, "timer"));
    bool scheduled = ev->type.len == strlen(J17_TIMER_SCHEDULED) &&
                     !memcmp(ev->type.ptr, J17_TIMER_SCHEDULED, ev->type.len);
    json_t *at = json_object_get(data, "fire_at_ms");
    size_t idlen = id ? strlen(id) : 0;
    if (scheduled && d->live.count >= TIMERS_PENDING_MAX) {
        json_decref(data);
        return 1; /* full: read on once some have fired (nothing is skipped) */
    }
    d->read_version = ev->version;
    if (id && idlen < sizeof d->heap[0].id && scheduled && json_is_integer(at)) {
        struct timer tm = {.fire_at_ms = json_integer_value(at), .position = ev->position};
        memcpy(tm.id, id, idlen + 1);
        bool fresh;
        strmap_put(&d->live, id, idlen, &fresh);
        if (fresh) {
            heap_push(d, &tm);
        }
    } else if (id && !scheduled) {
        strmap_remove(&d->live, id, idlen); /* fired or cancelled */
    }
    json_decref(data);
    return 0;
}

/* Reads the timer stream events of db after those read. */
static void read_new(struct db *db, struct tdb *d)
{
    struct slice stream = {J17_TIMER_STREAM, strlen(J17_TIMER_STREAM)};
    for (;;) {
        uint64_t before = d->read_version;
        struct stream_rec s;
        int rc = engine_read_stream(db, stream, NULL, d->read_version + 1, false,
                                    TIMERS_READ_PAGE, on_timer_event, d, &s, NULL);
        if (rc || d->read_version == before || d->read_version >= s.version) {
            return;
        }
    }
}

/* ---- firing ---- */

/* A timer being fired: its id, record (read back) and the record's position. */
struct fired {
    const char *id;
    json_t *record;
    uint64_t position;
};

static int take_record(void *arg, const struct event_rec *ev)
{
    json_t **out = arg;
    *out = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, NULL);
    return 1;
}

/* The marker part of timer id: {"stream","events":[{"type":kind,"data","tags"}]}. */
static void marker(struct buf *out, const char *kind, const char *id, const char *reason)
{
    buf_printf(out, "{\"stream\":\"%s\",\"events\":[{\"type\":\"%s\",\"data\":{\"timer\":",
               J17_TIMER_STREAM, kind);
    buf_add_json_str(out, id, strlen(id));
    if (reason) {
        buf_adds(out, ",\"reason\":");
        buf_add_json_str(out, reason, strlen(reason));
    }
    buf_printf(out, "},\"tags\":[\"%s", J17_TIMER_TAG);
    buf_add(out, id, strlen(id)); /* a UUID: nothing to escape */
    buf_adds(out, "\"]}]}");
}

/* The condition that timer id has no marker yet. */
static void unmarked(struct buf *out, const char *id)
{
    buf_printf(out, "{\"query\":{\"streams\":[\"%s\"],\"types\":[\"%s\",\"%s\"],\"tags\":[\"%s",
               J17_TIMER_STREAM, J17_TIMER_FIRED, J17_TIMER_CANCELLED, J17_TIMER_TAG);
    buf_add(out, id, strlen(id));
    buf_adds(out, "\"]},\"max\":0}");
}

/* Writes timer tm's cancelled marker (once). */
static void cancel(struct j17_ctx *x, struct db *db, const struct fired *tm, const char *why)
{
    struct buf body;
    buf_init(&body);
    buf_adds(&body, "{\"appends\":[");
    marker(&body, J17_TIMER_CANCELLED, tm->id, why);
    buf_adds(&body, "],\"conditions\":[");
    unmarked(&body, tm->id);
    buf_adds(&body, "]}");
    struct append_outcome out;
    append_multi_wait(db, (struct slice){body.ptr, body.len}, &x->limits, &out);
    buf_fini(&body);
}

/* The conditions of firing tm: unmarked, and no cancel_on event after its record. */
static void fire_conditions(const struct fired *tm, struct buf *out)
{
    buf_addc(out, '[');
    unmarked(out, tm->id);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(tm->record, "cancel_on"), i, c) {
        const char *t = json_string_value(json_object_get(c, "aggregate_type"));
        const char *id = json_string_value(json_object_get(c, "id"));
        const char *et = json_string_value(json_object_get(c, "event_type"));
        if (!t || !id || !et) {
            continue;
        }
        char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
        snprintf(stream, sizeof stream, "%s:%s", t, id);
        buf_adds(out, ",{\"query\":{\"streams\":[");
        buf_add_json_str(out, stream, strlen(stream));
        buf_adds(out, "],\"types\":[");
        buf_add_json_str(out, et, strlen(et));
        buf_printf(out, "]},\"max\":%llu}", (unsigned long long)tm->position);
    }
    buf_addc(out, ']');
}

/* Builds the events of firing tm under spec into b; NULL, or why it cannot fire. */
static const char *fire_events(struct j_batch *b, const struct j17_spec *spec,
                               const struct fired *tm, char *why, size_t cap)
{
    json_t *r = tm->record;
    const char *type = json_string_value(json_object_get(r, "aggregate_type"));
    const char *id = json_string_value(json_object_get(r, "id"));
    const char *et = json_string_value(json_object_get(r, "event_type"));
    json_t *data = json_object_get(r, "data");
    json_t *meta = json_object_get(r, "metadata");
    const struct j17_agg *a = spec && type ? j17_spec_agg(spec, (struct slice){type, strlen(type)})
                                           : NULL;
    const struct j17_evt *e = a && et ? j17_agg_event(a, (struct slice){et, strlen(et)}) : NULL;
    char path[J17_PROBLEM_PATH_BYTES], msg[J17_PROBLEM_MSG_BYTES], key[200];
    if (!e || !id) {
        return "its aggregate or event type is no longer in the spec";
    }
    if (j17_evt_validate(e, json_is_null(data) ? NULL : data, path, sizeof path, msg,
                         sizeof msg) != 0) {
        snprintf(why, cap, "its data fails the event's schema at %s: %s", path, msg);
        return why;
    }
    snprintf(key, sizeof key, "%s:%s", type, id);
    if (j_batch_imply(b, a, e, key, data, meta, why, cap) != 0) {
        return why;
    }
    j_batch_push(b, type, id, et, data, meta, NULL);
    b->own = 1;
    return j_batch_push_implied(b, why, cap) == 0 ? NULL : why;
}

/* Fires tm (due) in db; true when it is settled (fired, cancelled, or done elsewhere). */
static bool fire(struct j17_ctx *x, struct db *db, const struct fired *tm)
{
    struct j17_spec *spec = NULL;
    if (j_spec_get(x, db, &spec) != 0) {
        return false; /* try again */
    }
    struct j_batch b;
    j_batch_init(&b, spec, time_now_us() / 1000);
    json_t *depth = json_object_get(tm->record, "saga_depth");
    if (json_is_integer(depth) && json_integer_value(depth) > 0 &&
        json_integer_value(depth) <= J17_SAGA_DEPTH_MAX + 1) {
        b.saga_depth = (unsigned)json_integer_value(depth);
    }
    char why[512];
    const char *no = fire_events(&b, spec, tm, why, sizeof why);
    bool settled = true;
    if (no) {
        cancel(x, db, tm, no);
    } else {
        struct buf part, conds, body;
        buf_init(&part);
        buf_init(&conds);
        buf_init(&body);
        marker(&part, J17_TIMER_FIRED, tm->id, NULL);
        fire_conditions(tm, &conds);
        j_batch_body(&b, NULL, (struct slice){part.ptr, part.len},
                     (struct slice){conds.ptr, conds.len}, &body);
        struct append_outcome out;
        int rc = append_multi_wait(db, (struct slice){body.ptr, body.len}, &x->limits, &out);
        if (rc == ERR_CONFLICT && out.conflict == CONFLICT_CONDITION && out.failed > 0) {
            cancel(x, db, tm, "a cancel_on event came first");
        } else if (rc && !(rc == ERR_CONFLICT && out.conflict == CONFLICT_CONDITION)) {
            log_warn("j17 timer %s of %s: not fired (%s%s%s); retried", tm->id,
                     engine_db_name(db), err_name(rc), out.why[0] ? ": " : "", out.why);
            settled = rc == ERR_INVALID || rc == ERR_TOOBIG; /* it never will */
            if (settled) {
                cancel(x, db, tm, out.why[0] ? out.why : "the write was refused");
            }
        }
        buf_fini(&part);
        buf_fini(&conds);
        buf_fini(&body);
    }
    j_batch_fini(&b);
    j17_spec_unref(spec);
    return settled;
}

static bool stopping(struct j17_timers *t)
{
    return __atomic_load_n(&t->stop, __ATOMIC_ACQUIRE);
}

/* Fires up to TIMERS_FIRES_PER_TICK due timers of one database, earliest first; a timer that
 * could not be settled goes back for the next tick. */
static void fire_due(struct j17_timers *t, struct db *db, struct tdb *d)
{
    int64_t now = time_now_us() / 1000;
    struct timer *retry = NULL;
    size_t nretry = 0;
    for (unsigned k = 0; d->n && d->heap[0].fire_at_ms <= now && k < TIMERS_FIRES_PER_TICK &&
                         !stopping(t); k++) {
        struct timer tm = d->heap[0];
        heap_pop(d);
        size_t idlen = strlen(tm.id);
        if (!strmap_get(&d->live, tm.id, idlen)) {
            continue; /* fired or cancelled already */
        }
        struct fired f = {.id = tm.id, .position = tm.position};
        bool settled = false;
        if (engine_read_event(db, tm.position, take_record, &f.record) == 0 && f.record) {
            settled = fire(t->x, db, &f);
        }
        json_decref(f.record);
        if (settled) {
            strmap_remove(&d->live, tm.id, idlen); /* its marker will say so too */
        } else {
            retry = xrealloc(retry, (nretry + 1) * sizeof(*retry));
            retry[nretry++] = tm;
        }
    }
    for (size_t i = 0; i < nretry; i++) {
        heap_push(d, &retry[i]);
    }
    free(retry);
}

static void scan_db(struct j17_timers *t, struct db *db)
{
    struct tdb *d = tdb_of(t, engine_db_id(db));
    d->seen = true;
    read_new(db, d);
    fire_due(t, db, d);
    j_sagas_tick(t->x, db, &d->sagas);
}

/* Forgets the databases that are gone (deleted: their ids are never used again). */
static void prune(struct j17_timers *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->ndbs; i++) {
        if (t->dbs[i].seen) {
            t->dbs[i].seen = false;
            t->dbs[k++] = t->dbs[i];
        } else {
            tdb_fini(&t->dbs[i]);
        }
    }
    t->ndbs = k;
}

static void scan(struct j17_timers *t)
{
    size_t n;
    char **names = engine_db_names(t->x->engine, &n);
    for (size_t i = 0; i < n && !stopping(t); i++) {
        struct db *db;
        if (engine_db_acquire(t->x->engine, names[i], strlen(names[i]), &db) == 0) {
            scan_db(t, db);
            engine_db_release(db);
        }
    }
    engine_names_free(names, n);
    if (!stopping(t)) {
        prune(t);
    }
}

static void *timers_main(void *arg)
{
    struct j17_timers *t = arg;
    pthread_setname_np(pthread_self(), "annals-j17time");
    for (;;) {
        pthread_mutex_lock(&t->mu);
        if (!t->stop) {
            struct timespec ts = time_deadline_ms(TIMERS_TICK_MS);
            pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        }
        bool stop = t->stop;
        pthread_mutex_unlock(&t->mu);
        if (stop || !engine_job_begin(t->x->engine)) {
            break;
        }
        scan(t);
        engine_job_end(t->x->engine);
    }
    return NULL;
}

/* ---- lifecycle ---- */

int j17_timers_start(struct j17_ctx *x)
{
    struct j17_timers *t = xcalloc(1, sizeof(*t));
    t->x = x;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->thread, NULL, timers_main, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return ERR_IO;
    }
    t->running = true;
    x->timers = t;
    return 0;
}

void j17_timers_stop(struct j17_ctx *x)
{
    struct j17_timers *t = x->timers;
    if (!t) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    __atomic_store_n(&t->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    for (size_t i = 0; i < t->ndbs; i++) {
        tdb_fini(&t->dbs[i]);
    }
    free(t->dbs);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
    x->timers = NULL;
}
