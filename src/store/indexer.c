/* The indexer: one thread per store (st_indexer_main) that brings the LMDB indexes up to the
 * published position in large transactions (docs/design/storage.md, "The unindexed tail and
 * readers").
 *
 * One transaction indexes positions (indexed, target]: their pos and ids entries as they are
 * read (MDB_APPEND where keys increase), their postings (query.c) and idempotency records
 * (idem.c); it purges expired idempotency records, writes the stream index entries and stream
 * rows sorted so that each table is written in key order through one cursor, and last the
 * head, so the indexes and the head move together. After the commit the tail is trimmed
 * under the tail lock and `indexed` published. An idle store purges expired idempotency
 * records in a transaction of their own once a minute.
 *
 * The indexer holds index_mu while it writes (a compaction takes it instead). After a failed
 * commit it reopens the environment (st_reopen_env) and retries from the tail; after a
 * compaction's failed head commit (index_frozen) it indexes nothing more until a restart. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/log.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

/* ---- the indexer ---- */

/* Indexes the event at p by position and id, and notes its stream index entry in *out. */
static int index_event(MDB_txn *txn, struct store *st, uint64_t p, const struct tail_entry *e,
                       struct event_rec *ev, struct stream_add *out)
{
    const uint8_t *rec = log_at(st->log, e->offset, e->len);
    /* the writer made these bytes (or recovery checked their CRC): parse, do not re-check */
    if (!rec || codec_record_parse(rec, e->len, ev) != 0) {
        return ERR(ERR_CORRUPT);
    }
    uint8_t kb[8], vb[POS_VAL_BYTES];
    be64_put(kb, p);
    be64_put(vb, e->offset);
    be32_put(vb + 8, e->len);
    MDB_val k = {8, kb}, v = {sizeof vb, vb};
    int rc = mdb_put(txn, st->pos, &k, &v, MDB_APPEND);
    MDB_val k3 = {UUID_LEN, ev->id}, v3 = {8, kb};
    if (!rc) rc = mdb_put(txn, st->ids, &k3, &v3, MDB_APPEND); /* server ids increase */
    if (rc == MDB_KEYEXIST) rc = mdb_put(txn, st->ids, &k3, &v3, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) { /* the writer refuses repeated ids: this should never happen */
        log_error("%s: event id at position %llu was already stored; the index keeps the first",
                  st->dir, (unsigned long long)p);
        rc = 0;
    }
    *out = (struct stream_add){.stream_id = e->stream_id, .version = e->version, .pos = p,
                               .recorded_us = ev->recorded_us, .name = ev->stream,
                               .len = e->len};
    return st_map_err(rc);
}

enum { RADIX_BITS = 11 }; /* bits of the key sorted per pass */

/* Sorts adds (in position order) by stream id, keeping each stream's adds in position order,
 * which is their version order: a stable LSD radix sort, as many passes as the highest id
 * needs (two up to 4 million streams). */
static void sort_adds(struct stream_add *adds, struct stream_add *tmp, size_t n)
{
    uint64_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        bits |= adds[i].stream_id;
    }
    struct stream_add *src = adds, *dst = tmp;
    for (unsigned shift = 0; shift < 64 && bits >> shift; shift += RADIX_BITS) {
        size_t at[1u << RADIX_BITS] = {0};
        for (size_t i = 0; i < n; i++) {
            at[(src[i].stream_id >> shift) & ((1u << RADIX_BITS) - 1)]++;
        }
        size_t sum = 0;
        for (size_t d = 0; d < (1u << RADIX_BITS); d++) {
            size_t c = at[d];
            at[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            dst[at[(src[i].stream_id >> shift) & ((1u << RADIX_BITS) - 1)]++] = src[i];
        }
        struct stream_add *t = src;
        src = dst;
        dst = t;
    }
    if (src != adds) {
        memcpy(adds, src, n * sizeof(*adds));
    }
}

/* Writes the stream index entries of adds (sorted by sort_adds) in key order through one
 * cursor: LMDB then finds most keys on the page it is on, instead of searching from the
 * root for each (with many streams, each entry lands somewhere else in the tree). */
static int put_sindex(MDB_txn *txn, struct store *st, const struct stream_add *adds, size_t n)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->sindex, &c);
    if (rc) {
        return st_map_err(rc);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        uint8_t sk[STREAM_KEY_BYTES], pb[8];
        codec_stream_key(sk, adds[i].stream_id, adds[i].version);
        be64_put(pb, adds[i].pos);
        MDB_val k = {sizeof sk, sk}, v = {sizeof pb, pb};
        rc = mdb_cursor_put(c, &k, &v, 0);
    }
    mdb_cursor_close(c);
    return st_map_err(rc);
}

/* The adds of one stream: its name (first: runs sort with st_cmp_slices, in the stream table's
 * key order), adds[first..last]. */
struct stream_run {
    struct slice name;
    size_t first, last;
};

/* The new row of the stream of adds[r], from its stored row (or none: new). */
static void apply_run(const struct stream_add *adds, struct stream_run r, struct stream_rec *row)
{
    for (size_t i = r.first; i <= r.last; i++) {
        const struct stream_add *a = &adds[i];
        if (a->version == 1) {
            row->first_pos = a->pos;
            row->created_us = a->recorded_us;
            row->bytes = 0;
        }
        row->id = a->stream_id;
        row->bytes += a->len;
        row->version = a->version;
        row->last_pos = a->pos;
        row->updated_us = a->recorded_us;
    }
}

/* Reads, updates and writes back the row of each stream of runs (in name order), through
 * one cursor. *max_id gets the highest stream id seen. */
static int put_runs(MDB_txn *txn, struct store *st, const struct stream_add *adds,
                    const struct stream_run *runs, size_t nruns, uint64_t *max_id)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->streams, &c);
    if (rc) {
        return st_map_err(rc);
    }
    int err = 0;
    for (size_t i = 0; !err && i < nruns; i++) {
        const struct stream_add *a = &adds[runs[i].first];
        MDB_val k = {runs[i].name.len, (void *)runs[i].name.ptr}, v;
        struct stream_rec row = {0};
        bool stored = false;
        if (a->version > 1) {
            rc = mdb_cursor_get(c, &k, &v, MDB_SET);
            err = rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) /* events of a stream with no row */
                  : rc ? st_map_err(rc)
                       : codec_stream_decode(v.mv_data, v.mv_size, &row);
            stored = true;
        }
        if (err) {
            break;
        }
        apply_run(adds, runs[i], &row);
        uint8_t enc[STREAM_REC_BYTES];
        codec_stream_encode(&row, enc);
        MDB_val nv = {sizeof enc, enc};
        err = st_map_err(mdb_cursor_put(c, &k, &nv, stored ? MDB_CURRENT : 0));
        if (row.id > *max_id) {
            *max_id = row.id;
        }
    }
    mdb_cursor_close(c);
    return err;
}

/* Writes the stream index entries and the stream rows of the n adds in st->ix_adds. */
static int put_streams(MDB_txn *txn, struct store *st, size_t n, uint64_t *max_id)
{
    struct stream_add *adds = st->ix_adds;
    sort_adds(adds, st->ix_tmp, n);
    int rc = put_sindex(txn, st, adds, n);
    if (rc || n == 0) {
        return rc;
    }
    struct stream_run *runs = xmalloc(n * sizeof(*runs));
    size_t nruns = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || adds[i].stream_id != adds[i - 1].stream_id) {
            runs[nruns++] = (struct stream_run){adds[i].name, i, i};
        } else {
            runs[nruns - 1].last = i;
        }
    }
    qsort(runs, nruns, sizeof(*runs), st_cmp_slices);
    rc = put_runs(txn, st, adds, runs, nruns, max_id);
    free(runs);
    return rc;
}

/* Indexes positions [from, to] in one durable LMDB transaction. */
static int index_range(struct store *st, uint64_t from, uint64_t to)
{
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : EIO;
    if (rc) {
        return st_map_err(rc);
    }
    size_t n = (size_t)(to - from + 1);
    if (n > st->ix_cap) { /* kept from one transaction to the next: no page faults */
        free(st->ix_adds);
        free(st->ix_tmp);
        st->ix_cap = n;
        st->ix_adds = xmalloc(n * sizeof(*st->ix_adds));
        st->ix_tmp = xmalloc(n * sizeof(*st->ix_tmp));
    }
    struct stream_add *adds = st->ix_adds;
    struct term_acc terms;
    st_terms_begin(&terms);
    struct head_rec h;
    int err = st_get_head(txn, st, &h);
    struct event_rec ev;
    struct index_ctx ix = {st, txn};
    for (uint64_t p = from; !err && p <= to; p++) {
        const struct tail_entry *e = entry_at(st, p);
        err = index_event(txn, st, p, e, &ev, &adds[p - from]);
        if (!err) err = st_index_terms(txn, st, &terms, &ev, &h.term_count);
        if (!err && e->aux_len) {
            err = st_walk_aux(st->log, e->offset + e->len, e->offset + e->len + e->aux_len,
                           st_put_idem, &ix);
        }
    }
    bool more;
    if (!err) err = st_purge_idem(txn, st, &more);
    if (!err) err = st_terms_flush(txn, st, &terms);
    st_terms_end(&terms);
    if (!err) {
        const struct tail_entry *last = entry_at(st, to);
        h.format = STORE_FORMAT_VERSION; /* a format-4 store is one from here on */
        h.position = to;
        memcpy(h.hash, ev.hash, sizeof h.hash);
        h.log_end = last->offset + last->len + last->aux_len;
        err = put_streams(txn, st, n, &h.stream_count);
    }
    if (!err) err = st_put_head(txn, st, &h);
    if (err) {
        mdb_txn_abort(txn);
        return err;
    }
    return st_map_err(mdb_txn_commit(txn));
}

/* Frees tail chunks wholly at or below upto and publishes the new indexed position. */
static void trim_tail(struct store *st, uint64_t upto)
{
    pthread_rwlock_wrlock(&st->tail_lock);
    uint64_t old = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
    for (uint64_t c = old / TAIL_CHUNK; (c + 1) * TAIL_CHUNK <= upto; c++) {
        struct tail_entry **slot = &st->chunks[c % TAIL_CHUNKS];
        free(*slot);
        *slot = NULL;
        free(st->blooms[c % TAIL_CHUNKS]);
        st->blooms[c % TAIL_CHUNKS] = NULL;
    }
    __atomic_store_n(&st->indexed, upto, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&st->tail_lock);
}

/* Waits until there is work: enough events, old enough events, or stopping. Returns the
 * position to index up to (== indexed when there is nothing to do). */
static uint64_t await_work(struct store *st, bool *stop)
{
    pthread_mutex_lock(&st->mu);
    uint64_t waited_ms = 0;
    for (;;) {
        uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
        uint64_t idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
        *stop = st->stopping;
        if (st->abandon) {
            pthread_mutex_unlock(&st->mu);
            return idx;
        }
        if (*stop || pub - idx >= INDEX_BATCH || (pub > idx && waited_ms >= st->index_delay_ms)) {
            pthread_mutex_unlock(&st->mu);
            return pub;
        }
        struct timespec ts = time_deadline_ms(INDEX_DELAY_MS);
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        waited_ms = pub > idx ? waited_ms + INDEX_DELAY_MS : 0;
        if (pub == idx && st->ix_cap) { /* idle: the buffers of a busy spell go */
            free(st->ix_adds);
            free(st->ix_tmp);
            st->ix_adds = st->ix_tmp = NULL;
            st->ix_cap = 0;
        }
    }
}

/* After a failed index commit: LMDB may have marked the environment unusable (a failed
 * meta-page write is fatal to it until reopened), so close and reopen it, with every reader
 * and the writer's lookups kept out by the tail lock. The reopened index is the last good
 * commit; what failed is indexed again from the tail. */
void st_reopen_env(struct store *st)
{
    pthread_rwlock_wrlock(&st->tail_lock);
    if (__atomic_load_n(&st->env_copies, __ATOMIC_ACQUIRE)) {
        /* a backup copies the environment (snapshot.c): closing it now would pull it from
           under the copy; the indexer retries, and reopens it after the copy */
        pthread_rwlock_unlock(&st->tail_lock);
        log_warn("%s: the index is being copied by a backup; reopening it waits", st->dir);
        return;
    }
    if (st->env) {
        mdb_env_close(st->env);
        st->env = NULL;
    }
    int rc = st_open_env(st, false, false);
    if (rc) {
        if (st->env) {
            mdb_env_close(st->env);
            st->env = NULL;
        }
        log_error("%s: cannot reopen the index: %s; reads answer 500 until it works",
                  st->dir, err_name(rc));
    }
    pthread_rwlock_unlock(&st->tail_lock);
}

void *st_indexer_main(void *arg)
{
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "annals-index");
    for (;;) {
        bool stop;
        uint64_t target = await_work(st, &stop);
        uint64_t idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
        if (target > idx && __atomic_load_n(&st->index_frozen, __ATOMIC_ACQUIRE)) {
            if (stop) {
                break; /* the tail stays in the log: recovery indexes it */
            }
            usleep(200000);
            continue;
        }
        if (target > idx) {
            pthread_mutex_lock(&st->index_mu); /* a compaction may hold it for a while */
            uint64_t t0 = time_mono_ns();
            idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
            if (target - idx > INDEX_TXN_MAX) {
                target = idx + INDEX_TXN_MAX; /* the rest in the next transaction */
            }
            int rc = index_range(st, idx + 1, target);
            if (!rc) {
                trim_tail(st, target);
                /* Under a heavy load, bigger transactions: with many streams written, each
                   transaction rewrites a page of the stream index per stream it touches, so
                   five times the events cost about the same pages (and syncs) as one. */
                st->index_delay_ms = target - idx >= INDEX_BUSY_EVENTS ? INDEX_BUSY_DELAY_MS
                                                                       : INDEX_DELAY_MS;
            }
            pthread_mutex_unlock(&st->index_mu);
            __atomic_add_fetch(&st->index_ns, time_mono_ns() - t0, __ATOMIC_RELAXED);
            if (!rc) {
                __atomic_add_fetch(&st->index_commits, 1, __ATOMIC_RELAXED);
            }
            __atomic_store_n(&st->index_failing, rc != 0, __ATOMIC_RELEASE);
            if (rc) {
                pthread_mutex_lock(&st->mu);
                pthread_cond_broadcast(&st->cv); /* a writer waiting for room gives up */
                pthread_mutex_unlock(&st->mu);
                log_error("%s: indexing positions %llu..%llu failed: %s; will retry", st->dir,
                          (unsigned long long)idx + 1, (unsigned long long)target, err_name(rc));
                if (stop) {
                    break;
                }
                pthread_mutex_lock(&st->index_mu); /* a compaction may want the index next */
                st_reopen_env(st);
                pthread_mutex_unlock(&st->index_mu);
                usleep(200000);
                continue;
            }
            pthread_mutex_lock(&st->mu);
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
        } else if (stop) {
            break;
        } else if (time_now_us() - st->purged_us >= (int64_t)IDEM_PURGE_IDLE_S * 1000000) {
            st->purged_us = time_now_us();
            pthread_mutex_lock(&st->index_mu);
            int rc = st_purge_alone(st);
            pthread_mutex_unlock(&st->index_mu);
            if (rc) {
                log_warn("%s: purging expired idempotency keys failed: %s", st->dir,
                         err_name(rc));
            }
        }
    }
    return NULL;
}
