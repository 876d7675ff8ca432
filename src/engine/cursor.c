/* The catch-up cursor (cursor.h): a position, a filter and, when asked, a commit watch. Each
 * engine_cursor_next is one engine_query from the position (one snapshot, the readers'
 * visibility), after which the position moves to where that query stopped.
 *
 *   OPEN --engine_cursor_next (events)--> OPEN (position moved)
 *   OPEN --the database is deleted (watch, or db->deleted)--> GONE: next and wait fail
 *        with ERR_GONE
 *   any --engine_cursor_close--> freed (the watch is removed first)
 *
 * Invariant: position only grows between resets; woken is cleared only by next, before it
 * reads, so a commit is never lost between a read and the wait that follows it. */
#include "engine/cursor.h"

#include <pthread.h>
#include <stdlib.h>

#include "engine/engine_int.h"
#include "query/filter.h"
#include "util/assert.h"
#include "util/errors.h"
#include "util/timeutil.h"

struct engine_cursor {
    struct db *db;                /* borrowed (cursor.h, "Deletion") */
    const struct filter *filter;  /* borrowed; every_event when the owner gave none */
    struct filter every_event;    /* the empty filter */
    size_t budget;                /* candidates per next */
    uint64_t position;            /* atomic (read by engine_cursor_position): next to read */
    struct engine_watch *watch;   /* commit notifications, NULL without wait or on_commit */
    engine_commit_fn *on_commit;  /* the owner's, or NULL */
    void *on_commit_arg;
    pthread_mutex_t mu;           /* with cv: guards woken, gone, interrupted for waits */
    pthread_cond_t cv;
    bool woken;                   /* a commit since next last began */
    bool gone;                    /* atomic: the watch said the database was deleted */
    bool interrupted;             /* engine_cursor_interrupt was called */
};

/* Writer thread: a commit, or the database's deletion. */
static void on_commit(void *arg, bool gone)
{
    struct engine_cursor *c = arg;
    pthread_mutex_lock(&c->mu);
    c->woken = true;
    if (gone) {
        __atomic_store_n(&c->gone, true, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->on_commit) {
        c->on_commit(c->on_commit_arg, gone);
    }
}

int engine_cursor_open(struct db *db, const struct engine_cursor_opts *opts,
                       struct engine_cursor **out)
{
    struct engine_cursor *c = xcalloc(1, sizeof(*c));
    c->db = db;
    filter_init(&c->every_event);
    c->filter = opts->filter ? opts->filter : &c->every_event;
    c->budget = opts->budget ? opts->budget : ENGINE_CURSOR_BUDGET;
    c->position = opts->from ? opts->from : 1;
    c->on_commit = opts->on_commit;
    c->on_commit_arg = opts->on_commit_arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    int rc = 0;
    if (opts->wait || opts->on_commit) {
        rc = engine_watch(db, on_commit, c, &c->watch);
    } else if (engine_cursor_gone(c)) {
        rc = ERR_GONE;
    }
    if (rc) {
        engine_cursor_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

bool engine_cursor_gone(const struct engine_cursor *c)
{
    if (c->watch || __atomic_load_n(&c->gone, __ATOMIC_ACQUIRE)) {
        return __atomic_load_n(&c->gone, __ATOMIC_ACQUIRE); /* the watch tells */
    }
    struct db *db = c->db; /* no watch: ask the database (its lock is held briefly) */
    pthread_mutex_lock(&db->mu);
    bool deleted = db->deleted;
    pthread_mutex_unlock(&db->mu);
    return deleted;
}

uint64_t engine_cursor_position(const struct engine_cursor *c)
{
    return __atomic_load_n(&c->position, __ATOMIC_ACQUIRE);
}

/* Passes events on to the owner's fn and remembers the last one it got. */
struct relay {
    engine_event_fn *fn;
    void *arg;
    size_t n;            /* events passed on */
    uint64_t last;       /* position of the last one */
    bool stopped;        /* fn returned 1 (the store does not say so) */
};

static int relay_event(void *arg, const struct event_rec *ev)
{
    struct relay *r = arg;
    r->n++;
    r->last = ev->position;
    r->stopped = r->fn(r->arg, ev) > 0;
    return r->stopped ? 1 : 0;
}

int engine_cursor_next(struct engine_cursor *c, size_t max, engine_event_fn *fn, void *arg,
                       struct engine_cursor_page *out)
{
    ASSERT(max > 0);
    uint64_t from = engine_cursor_position(c);
    *out = (struct engine_cursor_page){.position = from};
    if (engine_cursor_gone(c)) {
        return ERR_GONE;
    }
    pthread_mutex_lock(&c->mu);
    c->woken = false; /* a commit from here on counts for the next wait */
    pthread_mutex_unlock(&c->mu);
    struct engine_query q = {.filter = c->filter, .has_from = true, .from = from, .limit = max,
                             .budget = c->budget};
    struct engine_query_result res;
    struct relay r = {.fn = fn, .arg = arg};
    int rc = engine_query(c->db, &q, relay_event, &r, &res);
    if (rc) {
        return rc;
    }
    uint64_t next = r.stopped ? r.last + 1 : res.next ? res.next : res.head + 1;
    if (next > from) {
        __atomic_store_n(&c->position, next, __ATOMIC_RELEASE);
    }
    *out = (struct engine_cursor_page){.delivered = r.n, .stopped = r.stopped,
                                       .caught_up = !r.stopped && !res.next, .head = res.head,
                                       .position = engine_cursor_position(c)};
    return 0;
}

int engine_cursor_wait(struct engine_cursor *c, uint64_t timeout_ms)
{
    if (!c->watch) {
        return ERR_INVALID;
    }
    struct timespec ts = time_deadline_ms(timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!c->woken && !c->gone && !c->interrupted) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0) {
            break;
        }
    }
    int rc = c->gone ? ERR_GONE : c->interrupted ? ERR_SHUTDOWN : 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void engine_cursor_interrupt(struct engine_cursor *c)
{
    pthread_mutex_lock(&c->mu);
    c->interrupted = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void engine_cursor_reset(struct engine_cursor *c, const struct filter *filter, uint64_t from)
{
    c->filter = filter ? filter : &c->every_event;
    __atomic_store_n(&c->position, from ? from : 1, __ATOMIC_RELEASE);
}

void engine_cursor_close(struct engine_cursor *c)
{
    if (!c) {
        return;
    }
    engine_unwatch(c->watch);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    filter_fini(&c->every_event);
    free(c);
}
