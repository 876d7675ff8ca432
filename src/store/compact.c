/* Compaction: gives back the log space of events nobody may read any more (deleted, expired),
 * docs/design/storage.md "Compaction".
 *
 * The indexed part of the log is rewritten into a new generation file, batch by batch: every
 * record the caller does not keep becomes its redacted form (header and body digest, so the
 * hash chain still verifies), the others are copied, and aux frames (idempotency records,
 * whose copies the index holds once their batch is indexed) are dropped. The place of every
 * record goes into the position table of the new generation, filled in bounded transactions
 * (the indexer waits on index_mu meanwhile). The unindexed rest of the log is copied verbatim: first what is published,
 * without stopping anyone, then, with readers drained (tail lock) and the writer paused
 * (append_mu), whatever was appended since. Then the new file is synced, the transaction
 * commits with a head naming the new generation and is synced, the tail's offsets shift by
 * the difference, and the old file is removed. A crash before the head's sync leaves the old
 * generation in force (the new file is removed at open); after it, the new one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/errors.h"
#include "util/log.h"

enum {
    COMPACT_COPY_STEP = 4 << 20, /* bytes copied per write when copying verbatim */
    COMPACT_TXN_ENTRIES = 65536, /* position entries per transaction filling the table */
    COMPACT_CHECK_EVERY = 64,    /* batches between cancellation checks */
    COMPACT_CATCH_UP = 1 << 20,  /* copy published bytes until fewer than this remain */
};

/* One record of the batch being rebuilt. */
struct moved {
    uint64_t position;
    uint32_t rel;      /* record offset within the rebuilt batch */
    uint32_t len;      /* record bytes now */
};

struct compaction {
    struct store *st;
    const struct store_compact_spec *spec;
    struct store_compact_result *res;
    struct log *nl;         /* the new generation (NULL in a dry run) */
    MDB_dbi fresh;          /* the position table of the new generation */
    bool filling;           /* fresh is being filled (emptied again unless switched to) */
    MDB_txn *txn;           /* filling it, then the head (NULL in a dry run) */
    size_t in_txn;          /* entries put in txn */
    bool commit_failed;     /* an index commit failed: LMDB may need reopening */
    bool head_unknown;      /* the head's commit failed: both generations are kept */
    struct buf batch;       /* the batch being rebuilt */
    struct moved *moved;    /* its records */
    size_t nmoved, cap;
};

/* Takes the record at rec_off (len bytes, parsed into ev) into the rebuilt batch, redacted
 * when the caller does not keep it. */
static void take(struct compaction *c, const struct event_rec *ev, uint64_t rec_off,
                 uint32_t len)
{
    const uint8_t *rec = log_at(c->st->log, rec_off, len);
    bool redact = codec_record_redactable(rec, len) && !c->spec->keep(c->spec->arg, ev);
    uint32_t nlen = redact ? REDACTED_RECORD_BYTES : len;
    if (redact) {
        c->res->redacted++;
        c->res->reclaimed_bytes += len - nlen;
    }
    c->res->examined++;
    if (!c->nl) {
        return;
    }
    buf_reserve(&c->batch, LOG_FRAME_HEADER + nlen);
    uint8_t *w = (uint8_t *)c->batch.ptr + c->batch.len;
    be32_put(w, nlen);
    if (redact) {
        codec_record_redact(rec, len, w + LOG_FRAME_HEADER);
    } else {
        memcpy(w + LOG_FRAME_HEADER, rec, len);
    }
    if (c->nmoved == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->moved = xrealloc(c->moved, c->cap * sizeof(*c->moved));
    }
    c->moved[c->nmoved++] = (struct moved){ev->position,
                                           (uint32_t)(c->batch.len + LOG_FRAME_HEADER), nlen};
    c->batch.len += LOG_FRAME_HEADER + nlen;
}

/* Commits the entries put so far and opens the next transaction: a table of millions of
 * entries is filled a bounded number of pages at a time. Nothing reads it until the head
 * names its generation. */
static int next_txn(struct compaction *c)
{
    int rc = st_map_err(mdb_txn_commit(c->txn));
    c->txn = NULL;
    c->in_txn = 0;
    c->commit_failed = rc != 0;
    return rc ? rc : st_map_err(mdb_txn_begin(c->st->env, NULL, 0, &c->txn));
}

/* Writes the rebuilt batch to the new log and enters the new places of its records in the new
 * position table. */
static int put_batch(struct compaction *c, uint32_t count)
{
    uint8_t *h = (uint8_t *)c->batch.ptr;
    uint32_t frames = (uint32_t)(c->batch.len - LOG_BATCH_HEADER);
    be32_put(h, LOG_BATCH_MAGIC);
    be32_put(h + 4, frames);
    be32_put(h + 8, hash_crc32c(0, h + LOG_BATCH_HEADER, frames));
    be32_put(h + 12, count);
    uint64_t at;
    int rc = log_write(c->nl, c->batch.ptr, c->batch.len, &at);
    for (size_t i = 0; !rc && i < c->nmoved; i++) {
        const struct moved *m = &c->moved[i];
        uint8_t key[8], val[POS_VAL_BYTES];
        be64_put(key, m->position);
        be64_put(val, at + m->rel);
        be32_put(val + 8, m->len);
        MDB_val k = {sizeof key, key}, v = {sizeof val, val};
        rc = st_map_err(mdb_put(c->txn, c->fresh, &k, &v, MDB_APPEND));
    }
    c->in_txn += c->nmoved;
    return rc || c->in_txn < COMPACT_TXN_ENTRIES ? rc : next_txn(c);
}

/* Rebuilds the batch b of the old log (positions from *pos on, which advances). */
static int rebuild(struct compaction *c, const struct batch_view *b, uint64_t *pos)
{
    const struct log *lg = c->st->log;
    buf_reset(&c->batch);
    buf_reserve(&c->batch, LOG_BATCH_HEADER);
    c->batch.len = LOG_BATCH_HEADER;
    c->nmoved = 0;
    uint64_t off = b->frames_at;
    for (uint32_t i = 0; i < b->count; i++) {
        uint32_t n;
        const uint8_t *rec = st_frame_at(lg, off, b->next, &n);
        struct event_rec ev;
        if (!rec || codec_record_parse(rec, n, &ev) != 0 || ev.position != *pos) {
            return ERR(ERR_CORRUPT);
        }
        take(c, &ev, off + LOG_FRAME_HEADER, n);
        (*pos)++;
        off += LOG_FRAME_HEADER + n;
    }
    /* idempotency records: the idem table has them since this batch was indexed */
    c->res->reclaimed_bytes += b->next - off;
    return c->nl ? put_batch(c, b->count) : 0;
}

/* Copies the old log's bytes [from, to) verbatim to the end of the new one. */
static int copy_range(struct compaction *c, uint64_t from, uint64_t to)
{
    int rc = 0;
    while (!rc && from < to) {
        size_t n = to - from < COMPACT_COPY_STEP ? (size_t)(to - from) : COMPACT_COPY_STEP;
        uint64_t at;
        rc = log_write(c->nl, log_at(c->st->log, from, n), n, &at);
        from += n;
    }
    return rc;
}

/* The old log's offset just past the published events (the writer may be writing beyond). */
static uint64_t published_end(struct store *st, uint64_t indexed, uint64_t indexed_end)
{
    uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
    if (pub <= indexed) {
        return indexed_end;
    }
    const struct tail_entry *e = entry_at(st, pub); /* kept: the indexer waits on index_mu */
    return e->offset + e->len + e->aux_len;
}

static bool cancelled(const struct compaction *c)
{
    return c->spec->cancelled && c->spec->cancelled(c->spec->arg);
}

/* Rewrites the indexed part [0, h->log_end) of the log (into the new log unless dry). */
static int rewrite_indexed(struct compaction *c, const struct head_rec *h)
{
    uint64_t off = 0, pos = 1;
    struct batch_view b;
    for (unsigned k = 1; off < h->log_end; k++) {
        if (st_read_batch(c->st->log, off, &b) != FRAME_OK || b.next > h->log_end) {
            return ERR(ERR_CORRUPT);
        }
        int rc = rebuild(c, &b, &pos);
        if (rc) {
            return rc;
        }
        if (k % COMPACT_CHECK_EVERY == 0 && cancelled(c)) {
            return ERR_SHUTDOWN;
        }
        off = b.next;
    }
    return pos - 1 == h->position ? 0 : ERR(ERR_CORRUPT);
}

/* Shifts the places of unindexed records (tail entries, the writer's idempotency map) by
 * delta, the difference between where the unindexed part of the log starts now and before. */
static void shift_tail(struct store *st, uint64_t indexed, int64_t delta)
{
    uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
    for (uint64_t p = indexed + 1; p <= pub; p++) {
        entry_at(st, p)->offset += (uint64_t)delta;
    }
    st_evict_idem(st); /* those left are unindexed, so past indexed: all shift */
    size_t it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&st->tail_idem, &it, &key, &klen, &val)) {
        ((struct idem_loc *)val)->offset += (uint64_t)delta;
    }
}

/* With readers drained and the writer paused: copies what was appended since, syncs the new
 * log, commits the index naming it, and puts it in place. */
static int switch_logs(struct compaction *c, struct head_rec *h, uint64_t copied,
                       bool *head_synced)
{
    struct store *st = c->st;
    uint64_t old_end = log_end(st->log);
    c->res->log_before = old_end;
    int rc = cancelled(c) ? ERR_SHUTDOWN : copy_range(c, copied, old_end);
    if (!rc) rc = log_sync(c->nl);
    uint64_t new_indexed_end = log_end(c->nl) - (old_end - h->log_end);
    int64_t delta = (int64_t)new_indexed_end - (int64_t)h->log_end;
    if (!rc) {
        h->format = STORE_FORMAT_VERSION;
        h->generation++;
        h->log_end = new_indexed_end;
        rc = st_put_head(c->txn, st, h);
    }
    if (rc) {
        return rc;
    }
    rc = st_map_err(mdb_txn_commit(c->txn));
    c->txn = NULL;
    if (rc) {
        /* LMDB may have failed while writing the meta page: the head on disk may name either
         * generation. Both files and both position tables stay whole and in place, reads go on
         * from the old ones (which agree with either head up to the indexed position), and
         * nothing more is appended or indexed until a restart settles it. */
        c->commit_failed = true;
        c->head_unknown = true;
        st->failed = true;
        __atomic_store_n(&st->index_frozen, true, __ATOMIC_RELEASE);
        log_error("%s: the index commit switching to log generation %llu failed; appends "
                  "refused until restart", st->dir, (unsigned long long)h->generation);
        return rc;
    }
    *head_synced = mdb_env_sync(st->env, 1) == 0;
    if (!*head_synced) {
        /* which head survives a crash is unknown: both files are whole, and no append may
         * go to either until a restart settles it */
        st->failed = true;
        log_error("%s: syncing the index after a compaction failed; appends refused until "
                  "restart", st->dir);
    }
    shift_tail(st, h->position, delta);
    st->pos = c->fresh;
    struct log *old = st->log;
    st->log = c->nl;
    c->nl = old; /* closed by the caller */
    __atomic_store_n(&st->generation, h->generation, __ATOMIC_RELEASE);
    c->res->log_after = log_end(st->log);
    return 0;
}

/* Copies the published unindexed bytes, then switches with everyone paused. */
static int finish(struct compaction *c, struct head_rec *h, bool *switched, bool *head_synced)
{
    struct store *st = c->st;
    uint64_t copied = h->log_end;
    int rc = 0;
    for (int i = 0; !rc && i < 4; i++) {
        if (cancelled(c)) {
            return ERR_SHUTDOWN; /* a delete or a stop waits for us: the copy may be long */
        }
        uint64_t to = published_end(st, h->position, h->log_end);
        rc = copy_range(c, copied, to);
        copied = to;
        if (published_end(st, h->position, h->log_end) - copied < COMPACT_CATCH_UP) {
            break;
        }
    }
    if (!rc) rc = log_sync(c->nl); /* most bytes synced before the writer is paused */
    if (rc) {
        return rc;
    }
    pthread_rwlock_wrlock(&st->tail_lock);
    pthread_mutex_lock(&st->append_mu);
    rc = st->failed ? ERR(ERR_IO) : switch_logs(c, h, copied, head_synced);
    *switched = rc == 0;
    pthread_mutex_unlock(&st->append_mu);
    pthread_rwlock_unlock(&st->tail_lock);
    return rc;
}

/* Reads the head; unless dry, opens the next generation's file (empty) and the transaction
 * that starts its position table afresh (what an abandoned compaction left in it goes). */
static int start(struct compaction *c, struct head_rec *h, char *path, size_t pathlen)
{
    struct store *st = c->st;
    unsigned flags = c->spec->dry_run ? MDB_RDONLY : 0;
    int rc = st->env ? st_map_err(mdb_txn_begin(st->env, NULL, flags, &c->txn)) : ERR(ERR_IO);
    if (!rc) rc = st_get_head(c->txn, st, h);
    if (!rc && !st->has_pos1) {
        rc = ERR(ERR_IO); /* a store opened without it cannot change generation */
    }
    if (!rc && c->spec->dry_run) {
        mdb_txn_abort(c->txn); /* the indexed part of the log does not change: read it free */
        c->txn = NULL;
    }
    if (rc || c->spec->dry_run) {
        return rc;
    }
    c->fresh = st->pos_tab[(h->generation + 1) & 1];
    c->filling = true;
    rc = st_map_err(mdb_drop(c->txn, c->fresh, 0));
    if (rc) {
        return rc;
    }
    st_log_path(st->dir, h->generation + 1, path, pathlen);
    if (unlink(path) != 0 && errno != ENOENT) {
        return ERR(ERR_IO);
    }
    rc = log_open(path, st->map_bytes, &c->nl);
    return rc ? rc : st_sync_dir(st->dir); /* the head may name it: its entry must last */
}

/* Empties a position table no generation uses (the replaced one, or one left half filled),
 * giving its pages back to the index. Best effort: the next compaction empties it anyway.
 * Returns false when its commit failed. */
static bool empty_table(struct store *st, MDB_dbi dbi)
{
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : EIO;
    if (!rc) {
        rc = mdb_drop(txn, dbi, 0);
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
    }
    if (rc) {
        log_warn("%s: cannot empty an unused position table: %s", st->dir, mdb_strerror(rc));
    }
    return rc == 0;
}

int store_compact(struct store *st, const struct store_compact_spec *spec,
                  struct store_compact_result *out)
{
    memset(out, 0, sizeof(*out));
    struct compaction c = {.st = st, .spec = spec, .res = out};
    buf_init(&c.batch);
    char path[4096] = "";
    struct head_rec h;
    bool switched = false, head_synced = false;
    /* a dry run only reads the indexed part of the log, which never changes (and only this
       caller switches logs): the indexer goes on meanwhile. A real one may switch, so it
       waits for backups that pin the generation first (snapshot.c) */
    if (!spec->dry_run) {
        int erc = st_compact_enter(st, spec->cancelled, spec->arg);
        if (erc) {
            free(c.moved);
            buf_fini(&c.batch);
            out->generation = st->generation;
            return erc;
        }
        pthread_mutex_lock(&st->index_mu);
    }
    int rc = start(&c, &h, path, sizeof path);
    out->log_before = rc               ? 0
                      : spec->dry_run ? h.log_end
                                      : published_end(st, h.position, h.log_end);
    if (!rc) rc = rewrite_indexed(&c, &h);
    if (!rc && !spec->dry_run && out->reclaimed_bytes) {
        rc = finish(&c, &h, &switched, &head_synced);
    }
    if (c.txn) {
        mdb_txn_abort(c.txn);
    }
    /* after a switch the replaced table (once the head naming the new one is durable), else
       the one filled in vain */
    if (c.filling && (!switched || head_synced) && !c.head_unknown &&
        !empty_table(st, switched ? st->pos_tab[(h.generation + 1) & 1] : c.fresh)) {
        c.commit_failed = true;
    }
    if (c.commit_failed) {
        /* a failed commit can leave LMDB unusable (a failed meta page write is fatal to the
           environment): reopen it now rather than wait for the indexer's next failure,
           which may never come while nothing waits to be indexed */
        st_reopen_env(st);
    }
    if (!spec->dry_run) {
        pthread_mutex_unlock(&st->index_mu);
    }
    log_close(c.nl); /* the old log after a switch, else the unused new one */
    if (switched) {
        st_log_path(st->dir, h.generation - 1, path, sizeof path);
    }
    if (path[0] && (!switched || head_synced) && !c.head_unknown && unlink(path) != 0 &&
        errno != ENOENT) {
        log_warn("%s: cannot remove %s: %s", st->dir, path, strerror(errno));
    }
    if (switched) {
        st_sync_dir(st->dir);
        out->generation = h.generation;
    } else {
        out->log_after = out->log_before;
        out->generation = st->generation;
    }
    free(c.moved);
    buf_fini(&c.batch);
    if (!spec->dry_run) {
        st_compact_leave(st);
    }
    return rc;
}
