/* The compactor of a database: decides which events nobody may read any more and has the store
 * reclaim their log space (store_compact; docs/design/storage.md, "Compaction").
 *
 * One thread per database. It wakes when asked (engine_compact_request) and every
 * limits.compact_interval_s; a periodic wake of a database with no lifecycle settings and no
 * retention does nothing. Otherwise it plans: for each stream with settings, the oldest
 * version its readers may see (meta_min_version, as reads judge it), tombstoned streams
 * wholly, and the database's retention cutoff. A periodic wake first counts what the plan
 * would reclaim (a dry run) and goes on only when that is at least COMPACT_MIN_BYTES and a
 * COMPACT_MIN_SHARE-th of the log. Everything the plan hides is hidden from reads already and
 * stays hidden as time passes; a lifecycle change laid out while the compaction runs could
 * make some visible again, so it abandons the compaction (the next wake plans afresh). The
 * metadata streams ("$$...") are always kept: the settings are read from them. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_int.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

enum {
    COMPACT_MIN_BYTES = 1 << 20, /* a periodic compaction reclaims at least this ... */
    COMPACT_INDEX_WAIT_MS = 3000,  /* a compaction waits this long at most for the indexer to
                                      cover what was committed when it began ... */
    COMPACT_INDEX_STALL_MS = 500,  /* ... and this long for it to move at all */
    COMPACT_MIN_SHARE = 4,       /* ... and at least this fraction (1/n) of the log */
};

/* What a compaction keeps. */
struct plan {
    struct db *db;
    struct strmap vmin;     /* stream name -> uint64_t oldest version kept */
    int64_t cutoff_us;      /* retention: events recorded before are not kept (0 = none) */
    uint64_t meta_changes;  /* db->meta_changes when planned */
};

static bool is_meta_stream(struct slice s)
{
    return s.len >= 2 && s.ptr[0] == '$' && s.ptr[1] == '$';
}

static bool plan_keep(void *arg, const struct event_rec *ev)
{
    const struct plan *p = arg;
    if (is_meta_stream(ev->stream) || !engine_retained(ev->stream)) {
        return true;
    }
    if (p->cutoff_us && ev->recorded_us < p->cutoff_us) {
        return false;
    }
    const uint64_t *v = strmap_get(&p->vmin, ev->stream.ptr, ev->stream.len);
    return !v || ev->version >= *v;
}

static bool plan_cancelled(void *arg)
{
    const struct plan *p = arg;
    return __atomic_load_n(&p->db->compact_stop, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&p->db->meta_changes, __ATOMIC_ACQUIRE) != p->meta_changes;
}

/* One stream's settings, copied out of the map. */
struct named_meta {
    char *name;
    size_t len;
    struct stream_meta m;
};

static struct named_meta *copy_metas(struct db *db, size_t *n)
{
    pthread_rwlock_rdlock(&db->meta_lock);
    struct named_meta *out = xcalloc(db->metas.count + 1, sizeof(*out));
    size_t k = 0, it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&db->metas, &it, &key, &klen, &val)) {
        out[k++] = (struct named_meta){xstrndup(key, klen), klen, *(struct stream_meta *)val};
    }
    pthread_rwlock_unlock(&db->meta_lock);
    *n = k;
    return out;
}

/* Fills p from the current settings. Returns 0 or a storage error. */
static int plan_build(struct db *db, struct plan *p)
{
    p->db = db;
    strmap_init(&p->vmin, sizeof(uint64_t));
    p->meta_changes = __atomic_load_n(&db->meta_changes, __ATOMIC_ACQUIRE);
    int64_t now = time_now_us();
    uint64_t retention_us = db_retention_us(db);
    p->cutoff_us = retention_us ? now - (int64_t)retention_us : 0;
    size_t n;
    struct named_meta *metas = copy_metas(db, &n);
    struct store_reader *r = NULL;
    int rc = store_read_begin(db->st, &r);
    for (size_t i = 0; !rc && i < n; i++) {
        struct slice name = {metas[i].name, metas[i].len};
        struct stream_rec s;
        uint64_t v = UINT64_MAX; /* a tombstone hides every version */
        if (!metas[i].m.tombstone) {
            int src = store_reader_stream(r, name, &s);
            if (src == ERR_NOTFOUND) {
                continue;
            }
            rc = src ? src : meta_min_version(r, &metas[i].m, &s, now, &v);
        }
        if (!rc && v > 1) {
            *(uint64_t *)strmap_put(&p->vmin, name.ptr, name.len, NULL) = v;
        }
    }
    store_read_end(r);
    for (size_t i = 0; i < n; i++) {
        free(metas[i].name);
    }
    free(metas);
    return rc;
}

/* Records the outcome of a check or run. */
static void note(struct db *db, int rc, const struct store_compact_result *res, bool rewrote)
{
    pthread_mutex_lock(&db->compact_mu);
    struct compact_status *cs = &db->compact;
    cs->checks++;
    cs->last_us = time_now_us();
    cs->last_err = rc;
    cs->last_redacted = res->redacted;
    cs->last_reclaimed = res->reclaimed_bytes;
    cs->last_log_before = res->log_before;
    cs->last_log_after = res->log_after;
    cs->last_rewrote = rewrote;
    if (rewrote) {
        cs->generation = res->generation;
        cs->runs++;
        cs->reclaimed_bytes += res->reclaimed_bytes;
        cs->redacted_events += res->redacted;
    }
    pthread_mutex_unlock(&db->compact_mu);
}

/* One wake: plans, checks when periodic, compacts. Returns the outcome. */
/* Waits until the index covers what was committed when the compaction began: only indexed
 * events are compacted, so one asked for right after a deletion would otherwise find the
 * deleted events not yet indexed and reclaim nothing. Gives up after COMPACT_INDEX_WAIT_MS, or
 * once the indexer has not moved for COMPACT_INDEX_STALL_MS (it cannot write: the compaction
 * then works on what is indexed, as before). */
static void await_indexed(struct db *db)
{
    uint64_t head = engine_db_head(db), seen = 0;
    int still = 0;
    for (int waited = 0; waited < COMPACT_INDEX_WAIT_MS && still < COMPACT_INDEX_STALL_MS;
         waited += 10) {
        struct store_stats ss;
        if (store_stats(db->st, &ss) != 0 || ss.indexed >= head ||
            __atomic_load_n(&db->compact_stop, __ATOMIC_ACQUIRE)) {
            return;
        }
        still = ss.indexed == seen ? still + 10 : 0;
        seen = ss.indexed;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int compact_once(struct db *db, bool asked)
{
    struct store_compact_result res = {0};
    struct plan p;
    await_indexed(db);
    int rc = plan_build(db, &p);
    struct store_compact_spec spec = {.keep = plan_keep, .cancelled = plan_cancelled,
                                      .arg = &p, .dry_run = !asked};
    if (!rc && !asked) {
        rc = store_compact(db->st, &spec, &res);
        bool worth = res.reclaimed_bytes >= COMPACT_MIN_BYTES &&
                     res.reclaimed_bytes >= res.log_before / COMPACT_MIN_SHARE;
        if (rc || !worth) {
            strmap_fini(&p.vmin);
            note(db, rc, &res, false);
            return rc;
        }
        spec.dry_run = false;
    }
    uint64_t t0 = time_mono_ns();
    if (!rc) rc = store_compact(db->st, &spec, &res);
    bool rewrote = !rc && res.reclaimed_bytes > 0;
    strmap_fini(&p.vmin);
    note(db, rc, &res, rewrote);
    if (rewrote) {
        log_info("database %s: compaction redacted %llu events, reclaimed %llu of %llu log "
                 "bytes in %.3f s (generation %llu)", db->name,
                 (unsigned long long)res.redacted, (unsigned long long)res.reclaimed_bytes,
                 (unsigned long long)res.log_before, (double)(time_mono_ns() - t0) / 1e9,
                 (unsigned long long)res.generation);
    } else if (rc && rc != ERR_SHUTDOWN) {
        log_error("database %s: compaction failed: %s", db->name, err_name(rc));
    }
    return rc;
}

/* Waits for a request, the interval or the stop. Returns false on stop; *asked tells why. */
static bool await_wake(struct db *db, bool *asked)
{
    unsigned interval = db->limits->compact_interval_s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += interval ? (time_t)interval : 86400;
    pthread_mutex_lock(&db->compact_mu);
    int rc = 0;
    while (!db->compact_asked && !db->compact_stop && rc == 0) {
        rc = pthread_cond_timedwait(&db->compact_cv, &db->compact_mu, &ts);
    }
    bool stop = db->compact_stop;
    *asked = db->compact_asked;
    db->compact_asked = false;
    bool periodic = !*asked && interval;
    db->compact.asked = false;
    db->compact.running = !stop && (*asked || periodic);
    pthread_mutex_unlock(&db->compact_mu);
    return !stop;
}

static void *compactor_main(void *arg)
{
    struct db *db = arg;
    pthread_setname_np(pthread_self(), "annals-compact");
    bool asked;
    while (await_wake(db, &asked)) {
        bool lifecycle = __atomic_load_n(&db->nmetas, __ATOMIC_ACQUIRE) > 0 ||
                         db_retention_us(db) > 0;
        int rc = asked || (db->limits->compact_interval_s && lifecycle) ? compact_once(db, asked)
                                                                        : 0;
        pthread_mutex_lock(&db->compact_mu);
        if (asked && rc == ERR_SHUTDOWN && !db->compact_stop) {
            db->compact_asked = true; /* abandoned for a settings change: plan again */
            db->compact.asked = true;
        }
        db->compact.running = false;
        pthread_mutex_unlock(&db->compact_mu);
    }
    return NULL;
}

int compactor_start(struct db *db)
{
    pthread_mutex_init(&db->compact_mu, NULL);
    pthread_cond_init(&db->compact_cv, NULL);
    struct store_stats ss;
    if (store_stats(db->st, &ss) == 0) {
        db->compact.generation = ss.generation;
    }
    if (pthread_create(&db->compactor, NULL, compactor_main, db) != 0) {
        pthread_mutex_destroy(&db->compact_mu);
        pthread_cond_destroy(&db->compact_cv);
        return ERR(ERR_IO);
    }
    db->has_compactor = true;
    return 0;
}

void compactor_stop(struct db *db)
{
    if (!db->has_compactor) {
        return;
    }
    pthread_mutex_lock(&db->compact_mu);
    __atomic_store_n(&db->compact_stop, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&db->compact_cv);
    pthread_mutex_unlock(&db->compact_mu);
    pthread_join(db->compactor, NULL);
    db->has_compactor = false;
    pthread_mutex_destroy(&db->compact_mu);
    pthread_cond_destroy(&db->compact_cv);
}

void engine_compact_request(struct db *db)
{
    pthread_mutex_lock(&db->compact_mu);
    db->compact_asked = true;
    db->compact.asked = true;
    pthread_cond_broadcast(&db->compact_cv);
    pthread_mutex_unlock(&db->compact_mu);
}

void engine_compact_status(struct db *db, struct compact_status *out)
{
    pthread_mutex_lock(&db->compact_mu);
    *out = db->compact;
    pthread_mutex_unlock(&db->compact_mu);
}
