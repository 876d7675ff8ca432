/* The embedded backend: event log + LMDB index + the readers' tail.
 *
 * Files in the database directory: events.log (log.h), data.mdb and lock.mdb (LMDB) with:
 *   pos      position (u64 BE)          -> log offset (u64 BE) || record length (u32 BE)
 *   sindex   stream id || version (BE)  -> position (u64 BE)
 *   streams  stream name (bytes)        -> stream row (codec.h)
 *   meta     "head"                     -> head record: how far the index reaches
 *   idem     idempotency key            -> idempotency record (codec.h)
 *   idemage  created us (BE) || key     -> empty: the records in expiry order
 *
 * Positions (0, indexed] are in LMDB; (indexed, published] only in the tail, an in-memory
 * array of entries (log offset, name hash, stream id, version) in position order, grown by the
 * writer without locks (entries are written before `published` is advanced with release order)
 * and trimmed by the indexer under the tail lock after each index commit. A reader holds the
 * tail lock (shared) for its whole life and opens its LMDB snapshot while holding it, so the
 * snapshot's indexed position is at least the tail's base: the two together cover every
 * position up to the reader's head.
 *
 * Writer state (writer thread only): head, the stream states of every stream with events past
 * the index (a map; others are current in LMDB), and the failed flag.
 *
 * Life: store_open (recover tail, start indexer) -> appends/reads -> store_close (final index
 * commit, join indexer). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "store/store.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/log.h"
#include "store/store_int.h"
#include "util/errors.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

static const char HEAD_KEY[] = "head";
static const char SETTINGS_KEY[] = "settings";

int st_map_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS: return 0;
    case MDB_NOTFOUND: return ERR_NOTFOUND;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT: return ERR(ERR_NOSPACE);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return ERR(ERR_CORRUPT);
    case ENOMEM: return ERR(ERR_NOMEM);
    }
    return ERR(ERR_IO);
}

/* ---- LMDB helpers ---- */

int st_get_head(MDB_txn *txn, struct store *st, struct head_rec *out)
{
    MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
    MDB_val v;
    int rc = mdb_get(txn, st->meta, &k, &v);
    if (rc) {
        return rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : st_map_err(rc);
    }
    return codec_head_decode(v.mv_data, v.mv_size, out);
}

int st_put_head(MDB_txn *txn, struct store *st, const struct head_rec *h)
{
    uint8_t enc[HEAD_REC_BYTES];
    size_t n = codec_head_encode(h, enc);
    MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
    MDB_val v = {n, enc};
    return st_map_err(mdb_put(txn, st->meta, &k, &v, 0));
}

int st_get_row(MDB_txn *txn, struct store *st, struct slice name, struct stream_rec *out)
{
    MDB_val k = {name.len, (void *)name.ptr};
    MDB_val v;
    int rc = mdb_get(txn, st->streams, &k, &v);
    return rc ? st_map_err(rc) : codec_stream_decode(v.mv_data, v.mv_size, out);
}

static int get_pos(MDB_txn *txn, struct store *st, uint64_t pos, uint64_t *off, uint32_t *len)
{
    uint8_t kb[8];
    be64_put(kb, pos);
    MDB_val k = {8, kb};
    MDB_val v;
    int rc = mdb_get(txn, st->pos, &k, &v);
    if (rc) {
        return st_map_err(rc);
    }
    if (v.mv_size != POS_VAL_BYTES) {
        return ERR(ERR_CORRUPT);
    }
    *off = be64_get(v.mv_data);
    *len = be32_get((const uint8_t *)v.mv_data + 8);
    return 0;
}

/* The idempotency tables, created when missing (a format-4 store gains them on its first
 * writable open); a read-only open of a store without them goes on without. */
static int open_idem_tables(MDB_txn *txn, struct store *st, bool readonly)
{
    unsigned flags = readonly ? 0 : MDB_CREATE;
    int rc = mdb_dbi_open(txn, "idem", flags, &st->idem);
    if (!rc) rc = mdb_dbi_open(txn, "idemage", flags, &st->idemage);
    st->has_idem = rc == 0;
    return readonly && rc == MDB_NOTFOUND ? 0 : rc;
}

static int open_env(struct store *st, bool create, bool readonly)
{
    int rc = mdb_env_create(&st->env);
    if (!rc) rc = mdb_env_set_maxdbs(st->env, 16);
    if (!rc) rc = mdb_env_set_maxreaders(st->env, 1024);
    if (!rc) rc = mdb_env_set_mapsize(st->env, (size_t)st->map_bytes);
    if (!rc) rc = mdb_env_open(st->env, st->dir, MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC | (readonly ? MDB_RDONLY : 0), 0640);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(st->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
    if (rc) {
        return st_map_err(rc);
    }
    unsigned flags = create ? MDB_CREATE : 0;
    rc = mdb_dbi_open(txn, "pos", flags, &st->pos_tab[0]);
    if (!rc) {
        int r1 = mdb_dbi_open(txn, "pos1", readonly ? 0 : MDB_CREATE, &st->pos_tab[1]);
        st->has_pos1 = r1 == 0;
        rc = r1 == MDB_NOTFOUND && readonly ? 0 : r1;
    }
    st->pos = st->pos_tab[st->generation & 1];
    if (!rc) rc = mdb_dbi_open(txn, "sindex", flags, &st->sindex);
    if (!rc) rc = mdb_dbi_open(txn, "streams", flags, &st->streams);
    if (!rc) rc = mdb_dbi_open(txn, "meta", flags, &st->meta);
    if (!rc) rc = mdb_dbi_open(txn, "terms", flags, &st->terms);
    if (!rc) rc = mdb_dbi_open(txn, "postings", flags, &st->postings);
    if (!rc) rc = mdb_dbi_open(txn, "ids", flags, &st->ids);
    if (!rc) rc = open_idem_tables(txn, st, readonly);
    struct head_rec h;
    int err = rc ? (rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : st_map_err(rc)) : st_get_head(txn, st, &h);
    bool made = false;
    if (err == ERR_CORRUPT && create && !rc) {
        MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
        MDB_val v;
        if (mdb_get(txn, st->meta, &k, &v) == MDB_NOTFOUND) {
            memset(&h, 0, sizeof h);
            h.format = STORE_FORMAT_VERSION;
            h.created_us = time_now_us();
            err = st_put_head(txn, st, &h);
            made = true;
            MDB_val sk = {sizeof SETTINGS_KEY - 1, (void *)SETTINGS_KEY};
            MDB_val sv = {st->init_settings.len, (void *)st->init_settings.ptr};
            if (!err && st->init_settings.len) {
                err = st_map_err(mdb_put(txn, st->meta, &sk, &sv, 0));
            }
        }
    }
    if (err) {
        mdb_txn_abort(txn);
        return err;
    }
    st->created_us = h.created_us;
    rc = mdb_txn_commit(txn); /* keeps the table handles, read-only too */
    if (!rc && made) {
        /* MDB_NOMETASYNC leaves a commit's meta page unsynced until the next commit: the
         * creating one must not be lost, or the store could not be opened after a power cut. */
        rc = mdb_env_sync(st->env, 1);
    }
    return st_map_err(rc);
}

/* ---- log scanning (recovery and verify) ---- */

/* Reads the batch header at off: FRAME_END at zeros or the end of the file; FRAME_BAD when
 * the magic, length or CRC is wrong (a torn or damaged batch); FRAME_OK otherwise. */
enum frame_kind st_read_batch(const struct log *lg, uint64_t off, struct batch_view *b)
{
    const uint8_t *h = log_at(lg, off, LOG_BATCH_HEADER);
    if (!h) {
        return FRAME_END;
    }
    uint32_t magic = be32_get(h), len = be32_get(h + 4);
    if (magic == 0 && len == 0) {
        return FRAME_END;
    }
    const uint8_t *f = log_at(lg, off + LOG_BATCH_HEADER, len);
    if (magic != LOG_BATCH_MAGIC || !f || len == 0 ||
        be32_get(h + 8) != hash_crc32c(0, f, len)) {
        return FRAME_BAD;
    }
    b->frames_at = off + LOG_BATCH_HEADER;
    b->frames_len = len;
    b->count = be32_get(h + 12);
    b->next = b->frames_at + len;
    return FRAME_OK;
}

const uint8_t *st_frame_at(const struct log *lg, uint64_t off, uint64_t end, uint32_t *len)
{
    const uint8_t *h = log_at(lg, off, LOG_FRAME_HEADER);
    *len = h ? be32_get(h) : 0;
    return *len && off + LOG_FRAME_HEADER + *len <= end
               ? log_at(lg, off + LOG_FRAME_HEADER, *len)
               : NULL;
}

/* Walks the aux frames in [off, end): each must be a well-formed idempotency record. Calls fn
 * (may be NULL) for each with the record's offset and length. Returns 0, fn's error or
 * ERR_CORRUPT. */
int st_walk_aux(const struct log *lg, uint64_t off, uint64_t end,
                int (*fn)(void *arg, uint64_t rec_off, uint32_t len), void *arg)
{
    while (off < end) {
        uint32_t n;
        const uint8_t *rec = st_frame_at(lg, off, end, &n);
        struct idem_rec ir;
        if (!rec || codec_idem_decode(rec, n, &ir) != 0) {
            return ERR(ERR_CORRUPT);
        }
        int rc = fn ? fn(arg, off + LOG_FRAME_HEADER, n) : 0;
        if (rc) {
            return rc;
        }
        off += LOG_FRAME_HEADER + n;
    }
    return 0;
}

/* Walks the events of a batch whose CRC matched: each must decode, carry position *pos (which
 * advances) and link to prev (which advances); then its aux frames, which must be well formed.
 * Returns 0, the callback's error, or ERR_CORRUPT (a batch that passed its CRC but is not well
 * formed: damage, not a tear). */
int st_walk_batch(const struct log *lg, const struct batch_view *b, uint64_t *pos,
                  uint8_t prev[HASH_SHA256_LEN], batch_event_fn *fn, void *arg)
{
    uint64_t off = b->frames_at;
    for (uint32_t i = 0; i < b->count; i++) {
        uint32_t n;
        const uint8_t *rec = st_frame_at(lg, off, b->next, &n);
        struct event_rec ev;
        if (!rec || codec_record_decode(rec, n, &ev) != 0 || ev.position != *pos ||
            !codec_record_hash_ok(rec, n, prev)) {
            return ERR(ERR_CORRUPT);
        }
        int rc = fn(arg, &ev, off + LOG_FRAME_HEADER, n);
        if (rc) {
            return rc;
        }
        memcpy(prev, ev.hash, HASH_SHA256_LEN);
        (*pos)++;
        off += LOG_FRAME_HEADER + n;
    }
    return b->count ? st_walk_aux(lg, off, b->next, NULL, NULL) : ERR(ERR_CORRUPT);
}

/* After the log ends or goes bad at off (next position pos): is there a whole, valid batch of
 * later positions further on? Batches are written one after another, each only after the
 * previous one's sync returned, so only the last batch can be torn: a valid later batch means
 * acknowledged events lie beyond damage. */
static bool valid_batch_follows(const struct log *lg, uint64_t off, uint64_t pos)
{
    uint64_t end = log_file_bytes(lg);
    for (uint64_t o = off + 1; o + LOG_BATCH_HEADER + LOG_FRAME_HEADER + 16 <= end; o++) {
        const uint8_t *h = log_at(lg, o, 4);
        if (!h || be32_get(h) != LOG_BATCH_MAGIC) {
            continue;
        }
        struct batch_view b;
        if (st_read_batch(lg, o, &b) != FRAME_OK) {
            continue;
        }
        const uint8_t *r = log_at(lg, b.frames_at + LOG_FRAME_HEADER, 16);
        if (r && be64_get(r + 8) > pos) {
            return true;
        }
    }
    return false;
}

/* True when any byte in [off, end of file) is not zero. */
static bool nonzero_after(const struct log *lg, uint64_t off)
{
    uint64_t end = log_file_bytes(lg);
    const uint8_t *p = off < end ? log_at(lg, off, (size_t)(end - off)) : NULL;
    for (uint64_t i = 0; p && i < end - off; i++) {
        if (p[i]) {
            return true;
        }
    }
    return false;
}

/* ---- the writer's stream states ---- */

/* Looks a stream up for the writer: its state map first (streams with unindexed events),
 * else the index. */
static int writer_state(struct store *st, struct store_reader *r, struct slice name,
                        struct stream_rec *out)
{
    const struct stream_rec *s = strmap_get(&st->states, name.ptr, name.len);
    if (s) {
        *out = *s;
        return 0;
    }
    if (r) {
        return st_get_row(r->txn, st, name, out);
    }
    /* The tail lock (shared) keeps the indexer from reopening the environment meanwhile. */
    pthread_rwlock_rdlock(&st->tail_lock);
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) : EIO;
    if (!rc) {
        rc = st_get_row(txn, st, name, out);
        mdb_txn_abort(txn);
    } else {
        rc = st_map_err(rc);
    }
    pthread_rwlock_unlock(&st->tail_lock);
    return rc;
}

int store_stream_state(struct store *st, struct store_reader *r, struct slice name,
                       struct stream_rec *out)
{
    return writer_state(st, r, name, out);
}

/* Records ev (durable at offset off) in the writer state and the tail; stream_id resolved. */
static void note_event(struct store *st, const struct event_rec *ev, uint64_t stream_id,
                       uint64_t off, uint32_t len)
{
    struct stream_rec *s = strmap_put(&st->states, ev->stream.ptr, ev->stream.len, NULL);
    if (ev->version == 1) {
        s->id = stream_id;
        s->first_pos = ev->position;
        s->created_us = ev->recorded_us;
        s->bytes = 0;
    }
    s->bytes += len;
    s->id = stream_id;
    s->version = ev->version;
    s->last_pos = ev->position;
    s->updated_us = ev->recorded_us;
    uint64_t idx = ev->position - 1;
    struct tail_entry **slot = &st->chunks[(idx / TAIL_CHUNK) % TAIL_CHUNKS];
    if (!*slot) {
        st->blooms[(idx / TAIL_CHUNK) % TAIL_CHUNKS] =
            xcalloc(TAIL_CHUNK / TAIL_BLOCK, TAIL_BLOOM_BYTES);
        __atomic_store_n(slot, xcalloc(TAIL_CHUNK, sizeof(struct tail_entry)), __ATOMIC_RELEASE);
    }
    st_bloom_note(st, ev);
    if (ev->client_id) {
        idmap_put(&st->tail_ids, ev->id, ev->position); /* server ids: see find_v7_in_tail */
    } else {
        uint64_t id_ms = 0;
        for (int i = 0; i < 6; i++) {
            id_ms = id_ms << 8 | ev->id[i];
        }
        uint64_t rec_ms = (uint64_t)ev->recorded_us / 1000;
        if (id_ms > rec_ms && id_ms - rec_ms > st->max_id_lead_ms) {
            __atomic_store_n(&st->max_id_lead_ms, id_ms - rec_ms, __ATOMIC_RELAXED);
        }
    }
    struct tail_entry *e = entry_at(st, ev->position);
    e->offset = off;
    e->len = len;
    e->name_hash = strmap_hash(ev->stream.ptr, ev->stream.len);
    e->stream_id = stream_id;
    e->version = ev->version;
    e->aux_len = 0;
}

/* Records an idempotency record (durable at off, len bytes, in the batch ending at last_pos)
 * in the writer's map of unindexed records. */
static int note_idem(struct store *st, uint64_t last_pos, uint64_t off, uint32_t len)
{
    struct idem_rec ir;
    const uint8_t *rec = log_at(st->log, off, len);
    if (!rec || codec_idem_decode(rec, len, &ir) != 0) {
        return ERR(ERR_CORRUPT);
    }
    struct idem_loc *l = strmap_put(&st->tail_idem, ir.key.ptr, ir.key.len, NULL);
    *l = (struct idem_loc){.last_pos = last_pos, .offset = off, .len = len};
    return 0;
}

/* Resolves the stream id of ev: the state map, this batch's new streams, or the index. */
static int resolve_id(struct store *st, struct strmap *fresh, const struct event_rec *ev,
                      uint64_t *next_id, uint64_t *out)
{
    const uint64_t *fid = strmap_get(fresh, ev->stream.ptr, ev->stream.len);
    if (fid) {
        *out = *fid;
        return 0;
    }
    const struct stream_rec *known = strmap_get(&st->states, ev->stream.ptr, ev->stream.len);
    if (known && ev->version > 1) {
        *out = known->id;
        return 0;
    }
    struct stream_rec s;
    int rc = ev->version == 1 ? ERR_NOTFOUND : writer_state(st, NULL, ev->stream, &s);
    if (!rc && !known) {
        /* seed the writer's state with the indexed row, so note_event adds to its size */
        *(struct stream_rec *)strmap_put(&st->states, ev->stream.ptr, ev->stream.len, NULL) = s;
    }
    if (rc == ERR_NOTFOUND && ev->version == 1) {
        *out = ++*next_id;
        *(uint64_t *)strmap_put(fresh, ev->stream.ptr, ev->stream.len, NULL) = *out;
        return 0;
    }
    if (rc) {
        return rc == ERR_NOTFOUND ? ERR(ERR_CORRUPT) : rc;
    }
    *out = s.id;
    return 0;
}

/* Recovery context for walk_batch. */
struct recover_ctx {
    struct store *st;      /* the store being opened */
    struct strmap *fresh;  /* streams first seen during recovery */
    uint64_t *next_id;     /* stream id counter */
    uint64_t last_pos;     /* aux frames: the last position of their batch */
};

static int recover_event(void *arg, const struct event_rec *ev, uint64_t rec_off, uint32_t len)
{
    struct recover_ctx *rc = arg;
    uint64_t id;
    int err = resolve_id(rc->st, rc->fresh, ev, rc->next_id, &id);
    if (!err) {
        struct event_rec copy = *ev;
        copy.client_id = true; /* who made it is not stored: track every recovered id */
        note_event(rc->st, &copy, id, rec_off, len);
    }
    return err;
}

static int recover_idem(void *arg, uint64_t rec_off, uint32_t len)
{
    struct recover_ctx *rc = arg;
    return note_idem(rc->st, rc->last_pos, rec_off, len);
}

/* After recovering the events of batch b (last position last_pos): notes its aux frames. */
static int recover_aux(struct store *st, const struct batch_view *b, uint64_t last_pos)
{
    struct tail_entry *e = entry_at(st, last_pos);
    uint64_t aux_at = e->offset + e->len;
    e->aux_len = (uint32_t)(b->next - aux_at);
    struct recover_ctx ctx = {.st = st, .last_pos = last_pos};
    return st_walk_aux(st->log, aux_at, b->next, recover_idem, &ctx);
}

/* Rebuilds the writer state and the tail from the log past the index head, batch by batch
 * (a batch is kept whole or not at all). Whatever follows the last whole batch is the remains
 * of an unacknowledged write: it is wiped, unless a valid later batch shows real damage. */
static int recover_tail(struct store *st, const struct head_rec *h)
{
    uint64_t off = h->log_end;
    uint64_t pos = h->position + 1;
    uint8_t prev[HASH_SHA256_LEN];
    memcpy(prev, h->hash, sizeof prev);
    struct strmap fresh;
    strmap_init(&fresh, sizeof(uint64_t));
    uint64_t next_id = h->stream_count;
    struct recover_ctx ctx = {st, &fresh, &next_id, 0};
    struct batch_view b;
    enum frame_kind k;
    int rc = 0;
    while (!rc && (k = st_read_batch(st->log, off, &b)) == FRAME_OK) {
        rc = st_walk_batch(st->log, &b, &pos, prev, recover_event, &ctx);
        if (!rc) rc = recover_aux(st, &b, pos - 1);
        off = b.next;
    }
    strmap_fini(&fresh);
    if (rc || (k != FRAME_OK && nonzero_after(st->log, off) && valid_batch_follows(st->log, off, pos))) {
        log_error("%s: the event log is damaged at position %llu; run annals verify", st->dir,
                  (unsigned long long)pos);
        return rc && rc != ERR_CORRUPT ? rc : ERR(ERR_CORRUPT);
    }
    if (nonzero_after(st->log, off)) {
        log_warn("%s: discarding a torn, unacknowledged write after position %llu", st->dir,
                 (unsigned long long)(pos - 1));
        rc = log_zero(st->log, off, log_file_bytes(st->log) - off);
        if (!rc) rc = log_sync(st->log);
        if (rc) {
            return rc;
        }
    }
    log_set_end(st->log, off);
    st->head.position = pos - 1;
    memcpy(st->head.hash, prev, sizeof prev);
    st->head.stream_count = next_id;
    __atomic_store_n(&st->streams_pub, next_id, __ATOMIC_RELEASE);
    __atomic_store_n(&st->published, pos - 1, __ATOMIC_RELEASE);
    if (pos - 1 > h->position) {
        log_info("%s: %llu events past the index recovered from the log", st->dir,
                 (unsigned long long)(pos - 1 - h->position));
    }
    return 0;
}

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

/* Bytewise order of two struct slice (LMDB's order of keys), shorter first on a tie. */
static int cmp_slices(const void *a, const void *b)
{
    const struct slice *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The adds of one stream: its name (first: runs sort with cmp_slices, in the stream table's
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
    qsort(runs, nruns, sizeof(*runs), cmp_slices);
    rc = put_runs(txn, st, adds, runs, nruns, max_id);
    free(runs);
    return rc;
}

/* ---- idempotency records in the index ---- */

/* An index transaction, for walk_aux callbacks. */
struct index_ctx {
    struct store *st;
    MDB_txn *txn;
};

/* Key of the expiry table: created us (BE) || idempotency key. */
static size_t idemage_key(uint8_t *out, int64_t created_us, struct slice key)
{
    be64_put(out, (uint64_t)created_us);
    memcpy(out + 8, key.ptr, key.len);
    return 8 + key.len;
}

static int put_idem(void *arg, uint64_t rec_off, uint32_t len)
{
    struct index_ctx *ix = arg;
    const uint8_t *rec = log_at(ix->st->log, rec_off, len);
    struct idem_rec ir;
    if (!rec || codec_idem_decode(rec, len, &ir) != 0) {
        return ERR(ERR_CORRUPT);
    }
    MDB_val k = {ir.key.len, (void *)ir.key.ptr}, v = {len, (void *)rec};
    uint8_t ak[8 + LIMIT_IDEM_STORED_KEY_BYTES];
    MDB_val k2 = {idemage_key(ak, ir.created_us, ir.key), ak}, v2 = {0, NULL};
    int rc = mdb_put(ix->txn, ix->st->idem, &k, &v, 0);
    if (!rc) rc = mdb_put(ix->txn, ix->st->idemage, &k2, &v2, 0);
    return st_map_err(rc);
}

/* Deletes up to IDEM_PURGE_MAX records created before now - ttl (a record replaced by a newer
 * one under the same key keeps the newer). Sets *more when expired ones are left. */
static int purge_idem(MDB_txn *txn, struct store *st, bool *more)
{
    int64_t cutoff = time_now_us() - (int64_t)__atomic_load_n(&st->idem_ttl_us, __ATOMIC_RELAXED);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->idemage, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k, v;
    size_t n = 0;
    *more = false;
    while ((rc = mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST)) == 0) {
        if (k.mv_size <= 8 || (int64_t)be64_get(k.mv_data) >= cutoff) {
            break;
        }
        if (n++ == IDEM_PURGE_MAX) {
            *more = true;
            break;
        }
        int64_t created = (int64_t)be64_get(k.mv_data);
        MDB_val ik = {k.mv_size - 8, (uint8_t *)k.mv_data + 8}, iv;
        struct idem_rec ir;
        rc = mdb_get(txn, st->idem, &ik, &iv);
        if (!rc && codec_idem_decode(iv.mv_data, iv.mv_size, &ir) == 0 &&
            ir.created_us == created) {
            rc = mdb_del(txn, st->idem, &ik, NULL);
        }
        if (!rc || rc == MDB_NOTFOUND) rc = mdb_cursor_del(c, 0);
        if (rc) {
            break;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : st_map_err(rc);
}

/* One index transaction that only purges expired idempotency records (an idle database).
 * Returns 0 or an error. */
static int purge_alone(struct store *st)
{
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : EIO;
    if (rc) {
        return st_map_err(rc);
    }
    bool more;
    rc = purge_idem(txn, st, &more);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return st_map_err(mdb_txn_commit(txn));
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
                           put_idem, &ix);
        }
    }
    bool more;
    if (!err) err = purge_idem(txn, st, &more);
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
    int rc = open_env(st, false, false);
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

static void *indexer_main(void *arg)
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
            int rc = purge_alone(st);
            pthread_mutex_unlock(&st->index_mu);
            if (rc) {
                log_warn("%s: purging expired idempotency keys failed: %s", st->dir,
                         err_name(rc));
            }
        }
    }
    return NULL;
}

/* ---- open and close ---- */

static void store_free(struct store *st)
{
    if (st->env) {
        mdb_env_close(st->env);
    }
    log_close(st->log);
    for (int i = 0; i < TAIL_CHUNKS; i++) {
        free(st->chunks[i]);
        free(st->blooms[i]);
    }
    free(st->ix_adds);
    free(st->ix_tmp);
    strmap_fini(&st->states);
    idmap_fini(&st->tail_ids);
    strmap_fini(&st->tail_idem);
    buf_fini(&st->wbuf);
    pthread_rwlock_destroy(&st->tail_lock);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->append_mu);
    pthread_mutex_destroy(&st->index_mu);
    pthread_mutex_destroy(&st->pin_mu);
    pthread_cond_destroy(&st->pin_cv);
    pthread_cond_destroy(&st->cv);
    free(st->dir);
    free(st);
}

static struct store *store_alloc(const char *dir, uint64_t map_bytes)
{
    struct store *st = xcalloc(1, sizeof(*st));
    st->dir = xstrndup(dir, strlen(dir));
    st->map_bytes = map_bytes;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Readers come and go all the time; the indexer's trim must not starve behind them. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->tail_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->append_mu, NULL);
    pthread_mutex_init(&st->index_mu, NULL);
    pthread_mutex_init(&st->pin_mu, NULL);
    pthread_cond_init(&st->pin_cv, NULL);
    pthread_cond_init(&st->cv, NULL);
    strmap_init(&st->states, sizeof(struct stream_rec));
    st->evict_at = MAP_EVICT_AT;
    st->index_delay_ms = INDEX_DELAY_MS;
    idmap_init(&st->tail_ids);
    st->ids_evict_at = MAP_EVICT_AT;
    strmap_init(&st->tail_idem, sizeof(struct idem_loc));
    st->idem_evict_at = MAP_EVICT_AT;
    st->idem_ttl_us = (uint64_t)LIMIT_DEFAULT_IDEM_TTL_S * 1000000u;
    st->purged_us = time_now_us();
    buf_init(&st->wbuf);
    return st;
}

void st_log_path(const char *dir, uint64_t gen, char *out, size_t n)
{
    if (gen == 0) {
        snprintf(out, n, "%s/events.log", dir);
    } else {
        snprintf(out, n, "%s/events.%llu.log", dir, (unsigned long long)gen);
    }
}

/* The generation of a log file named name (events.log: 0, events.<g>.log: g), or -1 when
 * name is not a log file's. */
static int64_t log_generation_of(const char *name)
{
    if (strcmp(name, "events.log") == 0) {
        return 0;
    }
    unsigned long long g;
    int used = 0;
    if (sscanf(name, "events.%llu.log%n", &g, &used) != 1 || name[used] != '\0' || g == 0) {
        return -1;
    }
    return (int64_t)g;
}

/* True when dir holds a log file of a generation after the first: a compaction made it, so
 * events were stored (nothing is removed). */
static bool has_later_generation(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return false;
    }
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        found = log_generation_of(de->d_name) > 0;
    }
    closedir(d);
    return found;
}

/* Removes the log files of dir other than generation keep (keep < 0: all of them): what an
 * interrupted compaction left, or the generation a finished one replaced. Returns how many
 * were removed, or ERR_IO. */
static int remove_other_logs(const char *dir, int64_t keep)
{
    DIR *d = opendir(dir);
    if (!d) {
        return errno == ENOENT ? 0 : ERR(ERR_IO);
    }
    int removed = 0;
    struct dirent *de;
    while (removed >= 0 && (de = readdir(d)) != NULL) {
        int64_t g = log_generation_of(de->d_name);
        if (g < 0 || g == keep) {
            continue;
        }
        char path[4096];
        st_log_path(dir, (uint64_t)g, path, sizeof path);
        removed = unlink(path) == 0 || errno == ENOENT ? removed + 1 : ERR(ERR_IO);
    }
    closedir(d);
    return removed;
}

/* Opens log generation gen and selects its position table. */
static int open_log(struct store *st, uint64_t gen)
{
    char path[4096];
    st_log_path(st->dir, gen, path, sizeof path);
    if ((gen & 1) && !st->has_pos1) {
        log_error("%s: log generation %llu without its position table", st->dir,
                  (unsigned long long)gen);
        return ERR(ERR_CORRUPT);
    }
    st->generation = gen;
    st->pos = st->pos_tab[gen & 1];
    return log_open(path, st->map_bytes, &st->log);
}

static int read_index_head(struct store *st, struct head_rec *h)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        return st_map_err(rc);
    }
    rc = st_get_head(txn, st, h);
    mdb_txn_abort(txn);
    return rc;
}

/* Makes a directory's entries durable (new files in it survive a power cut). */
int st_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return ERR(ERR_IO);
    }
    int rc = fsync(fd) == 0 ? 0 : ERR(ERR_IO);
    close(fd);
    return rc;
}

/* After creating a store: its files' directory entries, and its directory's own entry. */
static int sync_new_dirs(const char *dir)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/..", dir);
    int rc = st_sync_dir(dir);
    return rc ? rc : st_sync_dir(parent);
}

static int open_once(const char *dir, uint64_t map_bytes, bool create, struct slice settings,
                     struct store **out)
{
    if (create && mkdir(dir, 0750) != 0 && errno != EEXIST) {
        return errno == ENOSPC ? ERR(ERR_NOSPACE) : ERR(ERR_IO);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (!create && access(path, F_OK) != 0) {
        return ERR_NOTFOUND;
    }
    struct store *st = store_alloc(dir, map_bytes);
    st->init_settings = settings;
    struct head_rec h;
    int rc = open_env(st, create, false);
    if (!rc) rc = read_index_head(st, &h);
    if (!rc && remove_other_logs(dir, (int64_t)h.generation) > 0) {
        log_warn("%s: removed log files of an interrupted or finished compaction", dir);
    }
    if (!rc) rc = open_log(st, h.generation);
    if (!rc && h.log_end > log_file_bytes(st->log)) {
        log_error("%s: the index reaches past the end of the event log", dir);
        rc = ERR(ERR_CORRUPT);
    }
    if (!rc) {
        st->head.created_us = h.created_us;
        __atomic_store_n(&st->indexed, h.position, __ATOMIC_RELEASE);
        rc = recover_tail(st, &h);
    }
    if (!rc && create) {
        rc = sync_new_dirs(dir);
    }
    if (!rc && pthread_create(&st->indexer, NULL, indexer_main, st) != 0) {
        rc = ERR(ERR_IO);
    }
    if (rc) {
        store_free(st);
        return rc;
    }
    st->has_indexer = true;
    *out = st;
    return 0;
}

/* True when the directory's log holds no batch at all: nothing was ever acknowledged there
 * (a compaction's generations only exist once events do). */
static bool log_is_empty(const char *dir)
{
    char path[4096];
    st_log_path(dir, 0, path, sizeof path);
    if (has_later_generation(dir)) {
        return false;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        return errno == ENOENT;
    }
    uint8_t h[LOG_BATCH_HEADER] = {0};
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    return n < 4 || be32_get(h) != LOG_BATCH_MAGIC;
}

int store_open(const char *dir, uint64_t map_bytes, bool create, struct slice settings,
               struct store **out)
{
    int rc = open_once(dir, map_bytes, create, settings, out);
    if (rc != ERR_CORRUPT || !log_is_empty(dir)) {
        return rc;
    }
    /* An index that cannot be read next to a log without a single batch: the creation of this
     * database was cut short (a crash or an I/O error while LMDB made its first pages), and no
     * event was ever acknowledged here. Start it afresh rather than refuse forever. */
    log_warn("%s: discarding an unfinished database creation (no events were ever written)", dir);
    if (store_remove_files(dir) != 0) {
        return rc;
    }
    return create ? open_once(dir, map_bytes, true, settings, out) : ERR_NOTFOUND;
}

static void close_store(struct store *st, bool abandon)
{
    if (!st) {
        return;
    }
    if (st->has_indexer) {
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        st->abandon = abandon;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->indexer, NULL);
    }
    store_free(st);
}

void store_close(struct store *st)
{
    close_store(st, false);
}

void store_abandon(struct store *st)
{
    close_store(st, true);
}

int store_remove_files(const char *dir)
{
    static const char *files[] = {"data.mdb", "lock.mdb"};
    char path[4096];
    if (remove_other_logs(dir, -1) < 0) {
        return ERR(ERR_IO);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            return ERR(ERR_IO);
        }
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : ERR(ERR_IO);
}

int store_settings(struct store *st, struct buf *out)
{
    buf_reset(out);
    pthread_rwlock_rdlock(&st->tail_lock);
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) : EIO;
    if (!rc) {
        MDB_val k = {sizeof SETTINGS_KEY - 1, (void *)SETTINGS_KEY}, v;
        rc = mdb_get(txn, st->meta, &k, &v);
        if (!rc) {
            buf_add(out, v.mv_data, v.mv_size);
        }
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&st->tail_lock);
    return rc == MDB_NOTFOUND ? 0 : st_map_err(rc);
}

int store_set_settings(struct store *st, struct slice settings)
{
    pthread_rwlock_rdlock(&st->tail_lock);
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : EIO;
    if (!rc) {
        MDB_val k = {sizeof SETTINGS_KEY - 1, (void *)SETTINGS_KEY};
        MDB_val v = {settings.len, (void *)settings.ptr};
        rc = mdb_put(txn, st->meta, &k, &v, 0);
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
    }
    if (!rc) {
        rc = mdb_env_sync(st->env, 1); /* MDB_NOMETASYNC: the commit's meta page too */
    }
    pthread_rwlock_unlock(&st->tail_lock);
    return st_map_err(rc);
}

int store_stats(struct store *st, struct store_stats *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", st->dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return ERR(ERR_IO);
    }
    MDB_envinfo info = {0};
    MDB_stat ms = {0};
    out->idem_keys = 0;
    uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
    uint64_t log_used = 0;
    pthread_rwlock_rdlock(&st->tail_lock);
    uint64_t idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
    if (pub > idx) {
        const struct tail_entry *e = entry_at(st, pub);
        log_used = e->offset + e->len + e->aux_len;
    }
    MDB_txn *txn;
    if (st->env) {
        mdb_env_info(st->env, &info);
        mdb_env_stat(st->env, &ms);
        struct head_rec h;
        if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) == 0) {
            if (!log_used && st_get_head(txn, st, &h) == 0) {
                log_used = h.log_end;
            }
            MDB_stat is = {0};
            if (st->has_idem && mdb_stat(txn, st->idem, &is) == 0) {
                out->idem_keys = is.ms_entries;
            }
            mdb_txn_abort(txn);
        }
    }
    out->file_bytes = (uint64_t)sb.st_size + log_file_bytes(st->log);
    pthread_rwlock_unlock(&st->tail_lock);
    out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize + log_used;
    out->indexed = idx;
    out->streams = __atomic_load_n(&st->streams_pub, __ATOMIC_ACQUIRE);
    out->created_us = st->created_us;
    out->syncs = __atomic_load_n(&st->syncs, __ATOMIC_RELAXED);
    out->sync_ns = __atomic_load_n(&st->sync_ns, __ATOMIC_RELAXED);
    out->index_commits = __atomic_load_n(&st->index_commits, __ATOMIC_RELAXED);
    out->index_ns = __atomic_load_n(&st->index_ns, __ATOMIC_RELAXED);
    out->generation = __atomic_load_n(&st->generation, __ATOMIC_RELAXED);
    return 0;
}

/* ---- the writer ---- */

void store_head(const struct store *st, struct store_head *out)
{
    *out = st->head;
}

/* Waits until the tail has room for n more events (the indexer is behind). Returns 0, or
 * ERR_NOSPACE when the indexer cannot commit (disk or index full): appends then fail fast
 * instead of queueing behind it. */
static int await_room(struct store *st, size_t n)
{
    uint64_t cap = (uint64_t)(TAIL_CHUNKS - 2) * TAIL_CHUNK;
    if (st->head.position + n - __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE) <= cap) {
        return 0;
    }
    log_warn("%s: the indexer is %llu events behind; appends wait for it", st->dir,
             (unsigned long long)(st->head.position - st->indexed));
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    while (!rc && st->head.position + n - __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE) > cap) {
        if (__atomic_load_n(&st->index_failing, __ATOMIC_ACQUIRE)) {
            rc = ERR(ERR_NOSPACE);
            break;
        }
        pthread_cond_broadcast(&st->cv);
        pthread_cond_wait(&st->cv, &st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* Drops writer states of streams whose events are all indexed (LMDB has them current). */
static void evict_ids(struct store *st)
{
    idmap_keep_above(&st->tail_ids, __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE));
    st->ids_evict_at = st->tail_ids.count * 2 > MAP_EVICT_AT ? st->tail_ids.count * 2
                                                             : MAP_EVICT_AT;
}

static void evict_states(struct store *st)
{
    uint64_t idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
    struct strmap keep;
    strmap_init(&keep, sizeof(struct stream_rec));
    size_t it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&st->states, &it, &key, &klen, &val)) {
        const struct stream_rec *s = val;
        if (s->last_pos > idx) {
            *(struct stream_rec *)strmap_put(&keep, key, klen, NULL) = *s;
        }
    }
    strmap_fini(&st->states);
    st->states = keep;
    st->evict_at = keep.count * 2 > MAP_EVICT_AT ? keep.count * 2 : MAP_EVICT_AT;
}

/* Drops unindexed idempotency records the index has (LMDB has them). */
void st_evict_idem(struct store *st)
{
    uint64_t idx = __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE);
    struct strmap keep;
    strmap_init(&keep, sizeof(struct idem_loc));
    size_t it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&st->tail_idem, &it, &key, &klen, &val)) {
        const struct idem_loc *l = val;
        if (l->last_pos > idx) {
            *(struct idem_loc *)strmap_put(&keep, key, klen, NULL) = *l;
        }
    }
    strmap_fini(&st->tail_idem);
    st->tail_idem = keep;
    st->idem_evict_at = keep.count * 2 > MAP_EVICT_AT ? keep.count * 2 : MAP_EVICT_AT;
}

/* Appends the aux frames of the batch's idempotency records to wbuf. */
static void encode_aux(struct store *st, const struct idem_rec *idems, size_t nidem)
{
    for (size_t i = 0; i < nidem; i++) {
        size_t len = codec_idem_size(&idems[i]);
        buf_reserve(&st->wbuf, LOG_FRAME_HEADER + len);
        uint8_t *w = (uint8_t *)st->wbuf.ptr + st->wbuf.len;
        be32_put(w, (uint32_t)len);
        codec_idem_encode(&idems[i], w + LOG_FRAME_HEADER);
        st->wbuf.len += LOG_FRAME_HEADER + len;
    }
}

/* Encodes the batch into wbuf (header, event frames, aux frames), chaining hashes from the
 * head. */
static void encode_batch(struct store *st, struct event_rec *evs, size_t n,
                         const struct idem_rec *idems, size_t nidem, uint32_t *lens)
{
    buf_reset(&st->wbuf);
    buf_reserve(&st->wbuf, LOG_BATCH_HEADER);
    st->wbuf.len = LOG_BATCH_HEADER;
    const uint8_t *prev = st->head.hash;
    for (size_t i = 0; i < n; i++) {
        size_t len = codec_record_size(&evs[i]);
        buf_reserve(&st->wbuf, LOG_FRAME_HEADER + len);
        uint8_t *w = (uint8_t *)st->wbuf.ptr + st->wbuf.len;
        be32_put(w, (uint32_t)len);
        codec_record_encode(&evs[i], prev, w + LOG_FRAME_HEADER);
        st->wbuf.len += LOG_FRAME_HEADER + len;
        lens[i] = (uint32_t)len;
        prev = evs[i].hash;
    }
    encode_aux(st, idems, nidem);
    uint8_t *h = (uint8_t *)st->wbuf.ptr;
    uint32_t frames = (uint32_t)(st->wbuf.len - LOG_BATCH_HEADER);
    be32_put(h, LOG_BATCH_MAGIC);
    be32_put(h + 4, frames);
    be32_put(h + 8, hash_crc32c(0, h + LOG_BATCH_HEADER, frames));
    be32_put(h + 12, (uint32_t)n);
}

/* Records the published batch (its records at off, past the header) in the writer state,
 * the tail and the map of unindexed idempotency records. */
static void note_batch(struct store *st, const struct event_rec *evs, size_t n,
                       const uint64_t *ids, const uint32_t *lens, uint64_t frames_at)
{
    uint64_t off = frames_at;
    for (size_t i = 0; i < n; i++) {
        note_event(st, &evs[i], ids[i], off + LOG_FRAME_HEADER, lens[i]);
        off += LOG_FRAME_HEADER + lens[i];
    }
    uint64_t last = evs[n - 1].position;
    uint64_t end = frames_at + (st->wbuf.len - LOG_BATCH_HEADER);
    entry_at(st, last)->aux_len = (uint32_t)(end - off);
    struct recover_ctx ctx = {.st = st, .last_pos = last};
    /* these bytes were just encoded here: they decode (walk_aux cannot fail) */
    (void)st_walk_aux(st->log, off, end, recover_idem, &ctx);
}

int store_append(struct store *st, struct event_rec *evs, size_t n, const struct idem_rec *idems,
                 size_t nidem)
{
    if (st->failed) {
        return ERR(ERR_IO);
    }
    int room = await_room(st, n);
    if (room) {
        return room;
    }
    uint64_t *ids = xmalloc(n * sizeof(*ids));
    uint32_t *lens = xmalloc(n * sizeof(*lens));
    struct strmap fresh;
    strmap_init(&fresh, sizeof(uint64_t));
    uint64_t next_id = st->head.stream_count;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = resolve_id(st, &fresh, &evs[i], &next_id, &ids[i]);
    }
    strmap_fini(&fresh);
    uint64_t off = 0;
    pthread_mutex_lock(&st->append_mu); /* a compaction's switch waits for this write */
    uint64_t end_before = log_end(st->log);
    if (!rc && st->failed) {
        rc = ERR(ERR_IO); /* a compaction's index sync failed while this batch waited */
    }
    if (!rc) {
        encode_batch(st, evs, n, idems, nidem, lens);
        rc = log_write(st->log, st->wbuf.ptr, st->wbuf.len, &off);
    }
    if (!rc) {
        uint64_t t0 = time_mono_ns();
        rc = log_sync(st->log);
        __atomic_add_fetch(&st->sync_ns, time_mono_ns() - t0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&st->syncs, 1, __ATOMIC_RELAXED);
        if (rc) {
            st->failed = true; /* the kernel may have dropped what failed to sync */
            log_set_end(st->log, end_before);
            log_error("%s: fdatasync of the event log failed; appends refused until restart",
                      st->dir);
        }
    }
    if (!rc) {
        note_batch(st, evs, n, ids, lens, off + LOG_BATCH_HEADER);
        st->head.position = evs[n - 1].position;
        memcpy(st->head.hash, evs[n - 1].hash, HASH_SHA256_LEN);
        st->head.stream_count = next_id;
        __atomic_store_n(&st->streams_pub, next_id, __ATOMIC_RELEASE);
        __atomic_store_n(&st->published, st->head.position, __ATOMIC_RELEASE);
        if (st->head.position - __atomic_load_n(&st->indexed, __ATOMIC_ACQUIRE) >= INDEX_BATCH) {
            pthread_mutex_lock(&st->mu);
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
        }
        if (st->states.count > st->evict_at) {
            evict_states(st);
        }
        if (st->tail_ids.count > st->ids_evict_at) {
            evict_ids(st);
        }
        if (st->tail_idem.count > st->idem_evict_at) {
            st_evict_idem(st);
        }
    }
    pthread_mutex_unlock(&st->append_mu);
    free(ids);
    free(lens);
    return rc;
}

/* Bytes at offset `at` of the record at tail position p. */
static const uint8_t *tail_field(struct store_reader *r, uint64_t p, uint32_t at, uint32_t n)
{
    const struct tail_entry *e = entry_at(r->st, p);
    return e->len >= at + n ? log_at(r->st->log, e->offset + at, n) : NULL;
}

/* Server-made ids are UUIDv7 stamped with their commit's recorded time (in ms), and recorded
 * times never decrease along the log: so an unindexed event with a server-made id is found by
 * a binary search of the tail by time, then a look at the events of that millisecond. This
 * keeps the writer from tracking every id it makes. Returns 0 or ERR_NOTFOUND. */
static int find_v7_in_tail(struct store_reader *r, const uint8_t id[UUID_LEN], uint64_t *pos)
{
    if ((id[6] >> 4) != 7 || r->head <= r->indexed) {
        return ERR_NOTFOUND;
    }
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++) {
        ms = ms << 8 | id[i];
    }
    /* an id's time may run ahead of its commit's (uuid_v7 moves on a millisecond every 2048+
     * ids): search from the largest lead the writer has made */
    uint64_t lead = __atomic_load_n(&r->st->max_id_lead_ms, __ATOMIC_RELAXED) + 1;
    uint64_t hi_ms = ms;
    ms = ms > lead ? ms - lead : 0;
    uint64_t a = r->indexed + 1, b = r->head, first = r->head + 1;
    while (a <= b) { /* the first position recorded at or after ms */
        uint64_t mid = a + (b - a) / 2;
        const uint8_t *t = tail_field(r, mid, 32, 8);
        if (!t) {
            return ERR_NOTFOUND;
        }
        if ((uint64_t)be64_get(t) / 1000 >= ms) {
            first = mid;
            b = mid - 1;
        } else {
            a = mid + 1;
        }
    }
    for (uint64_t p = first; p <= r->head; p++) {
        const uint8_t *t = tail_field(r, p, 32, 8 + UUID_LEN);
        if (!t || (uint64_t)be64_get(t) / 1000 > hi_ms) {
            break;
        }
        if (memcmp(t + 8, id, UUID_LEN) == 0) {
            *pos = p;
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

int store_find_id(struct store *st, struct store_reader *r, const uint8_t id[UUID_LEN],
                  uint64_t *pos)
{
    uint64_t p = idmap_get(&st->tail_ids, id);
    if (p) {
        *pos = p;
        return 0;
    }
    MDB_val k = {UUID_LEN, (void *)id}, v;
    int rc = mdb_get(r->txn, st->ids, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return find_v7_in_tail(r, id, pos);
    }
    if (rc) {
        return st_map_err(rc);
    }
    if (v.mv_size != 8) {
        return ERR(ERR_CORRUPT);
    }
    *pos = be64_get(v.mv_data);
    return 0;
}

int store_find_idem(struct store *st, struct store_reader *r, struct slice key, int64_t now_us,
                    struct idem_rec *out)
{
    const struct idem_loc *l = strmap_get(&st->tail_idem, key.ptr, key.len);
    int rc = 0;
    if (l) {
        const uint8_t *rec = log_at(st->log, l->offset, l->len);
        rc = rec ? codec_idem_decode(rec, l->len, out) : ERR(ERR_CORRUPT);
    } else if (!st->has_idem) {
        return ERR_NOTFOUND;
    } else {
        MDB_val k = {key.len, (void *)key.ptr}, v;
        rc = mdb_get(r->txn, st->idem, &k, &v);
        if (rc) {
            return rc == MDB_NOTFOUND ? ERR_NOTFOUND : st_map_err(rc);
        }
        rc = codec_idem_decode(v.mv_data, v.mv_size, out);
    }
    if (rc) {
        return rc;
    }
    uint64_t ttl = __atomic_load_n(&st->idem_ttl_us, __ATOMIC_RELAXED);
    return now_us - out->created_us >= (int64_t)ttl ? ERR_NOTFOUND : 0;
}

void store_set_idem_ttl(struct store *st, uint64_t ttl_us)
{
    __atomic_store_n(&st->idem_ttl_us, ttl_us, __ATOMIC_RELAXED);
}

/* ---- readers ---- */

uint64_t store_published(const struct store *st)
{
    return __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
}

int store_read_begin(struct store *st, struct store_reader **out)
{
    struct store_reader *r = xmalloc(sizeof(*r));
    r->st = st;
    pthread_rwlock_rdlock(&st->tail_lock);
    uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
    int rc = st->env ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, &r->txn) : EIO;
    struct head_rec h;
    int err = rc ? st_map_err(rc) : st_get_head(r->txn, st, &h);
    if (err) {
        if (!rc) {
            mdb_txn_abort(r->txn);
        }
        pthread_rwlock_unlock(&st->tail_lock);
        free(r);
        return err;
    }
    r->indexed = h.position;
    r->head = pub > h.position ? pub : h.position;
    *out = r;
    return 0;
}

void store_read_end(struct store_reader *r)
{
    if (!r) {
        return;
    }
    mdb_txn_abort(r->txn);
    pthread_rwlock_unlock(&r->st->tail_lock);
    free(r);
}

uint64_t store_reader_head(const struct store_reader *r)
{
    return r->head;
}

/* Finds where the record of pos is: the tail past the snapshot's index, else the pos table. */
int st_locate(struct store_reader *r, uint64_t pos, const uint8_t **rec, uint32_t *len)
{
    if (pos < 1 || pos > r->head) {
        return ERR_NOTFOUND;
    }
    uint64_t off;
    if (pos > r->indexed) {
        const struct tail_entry *e = entry_at(r->st, pos);
        off = e->offset;
        *len = e->len;
    } else {
        int rc = get_pos(r->txn, r->st, pos, &off, len);
        if (rc) {
            return rc == ERR_NOTFOUND ? ERR(ERR_CORRUPT) : rc;
        }
    }
    *rec = log_at(r->st->log, off, *len);
    return *rec ? 0 : ERR(ERR_CORRUPT);
}

/* Decodes the record at pos and calls fn, also for a redacted record when redacted_too
 * (else it is skipped: 0). */
static int emit(struct store_reader *r, uint64_t pos, bool redacted_too, store_event_fn *fn,
                void *arg)
{
    const uint8_t *rec;
    uint32_t len;
    int rc = st_locate(r, pos, &rec, &len);
    if (rc) {
        return rc;
    }
    struct event_rec ev;
    rc = codec_record_decode(rec, len, &ev);
    if (!rc && ev.position != pos) {
        rc = ERR(ERR_CORRUPT);
    }
    if (!rc && ev.redacted && !redacted_too) {
        return 0; /* compacted away: no longer an event anyone reads */
    }
    return rc ? rc : fn(arg, &ev);
}

int st_emit(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    return emit(r, pos, false, fn, arg);
}

/* A callback that notes whether it ran (a redacted record is skipped without a call). */
struct noted_call {
    store_event_fn *fn;
    void *arg;
    bool called;
};

static int noted_call(void *arg, const struct event_rec *ev)
{
    struct noted_call *nc = arg;
    nc->called = true;
    return nc->fn(nc->arg, ev);
}

int store_get_event(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    struct noted_call nc = {fn, arg, false};
    int rc = emit(r, pos, false, noted_call, &nc);
    return rc < 0 ? rc : nc.called ? 0 : ERR_NOTFOUND;
}

int store_get_record(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    int rc = emit(r, pos, true, fn, arg);
    return rc > 0 ? 0 : rc;
}

int store_scan_log(struct store_reader *r, uint64_t from, bool backward, size_t limit,
                   store_event_fn *fn, void *arg)
{
    if (backward && from > r->head) {
        from = r->head;
    }
    if (from < 1) {
        from = 1;
        if (backward) {
            return 0;
        }
    }
    uint64_t p = from;
    for (size_t n = 0; n < limit && p >= 1 && p <= r->head; n++) {
        int rc = st_emit(r, p, fn, arg);
        if (rc) {
            return rc > 0 ? 0 : rc;
        }
        p = backward ? p - 1 : p + 1;
    }
    return 0;
}

/* True when the tail entry at pos belongs to the stream called name. */
static bool tail_is(struct store_reader *r, uint64_t pos, uint64_t h, struct slice name,
                    struct event_rec *ev)
{
    const struct tail_entry *e = entry_at(r->st, pos);
    if (e->name_hash != h) {
        return false;
    }
    const uint8_t *rec = log_at(r->st->log, e->offset, e->len);
    return rec && codec_record_decode(rec, e->len, ev) == 0 && ev->stream.len == name.len &&
           memcmp(ev->stream.ptr, name.ptr, name.len) == 0;
}

int store_reader_stream(struct store_reader *r, struct slice name, struct stream_rec *out)
{
    int rc = st_get_row(r->txn, r->st, name, out);
    if (rc && rc != ERR_NOTFOUND) {
        return rc;
    }
    bool found = rc == 0;
    uint64_t h = strmap_hash(name.ptr, name.len);
    struct event_rec ev;
    for (uint64_t p = r->indexed + 1; p <= r->head; p++) {
        if (!tail_is(r, p, h, name, &ev)) {
            continue;
        }
        const struct tail_entry *e = entry_at(r->st, p);
        if (!found) {
            found = true;
            out->id = e->stream_id;
            out->first_pos = p;
            out->created_us = ev.recorded_us;
            out->bytes = 0;
        }
        out->bytes += e->len;
        out->version = e->version;
        out->last_pos = p;
        out->updated_us = ev.recorded_us;
    }
    return found ? 0 : ERR_NOTFOUND;
}

/* Position of version v of stream s from the stream index (versions the snapshot indexed). */
int st_indexed_pos(struct store_reader *r, const struct stream_rec *s, uint64_t v,
                       uint64_t *out)
{
    uint8_t sk[STREAM_KEY_BYTES];
    codec_stream_key(sk, s->id, v);
    MDB_val k = {sizeof sk, sk}, val;
    int rc = mdb_get(r->txn, r->st->sindex, &k, &val);
    if (rc) {
        return rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : st_map_err(rc);
    }
    if (val.mv_size != 8) {
        return ERR(ERR_CORRUPT);
    }
    *out = be64_get(val.mv_data);
    return 0;
}

/* Collects the positions of stream s in the tail (in version order) into *out. */
static size_t tail_positions(struct store_reader *r, const struct stream_rec *s,
                             uint64_t **out, uint64_t *first_version)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    if (s->last_pos <= r->indexed) {
        return 0;
    }
    for (uint64_t p = r->indexed + 1; p <= r->head && p <= s->last_pos; p++) {
        const struct tail_entry *e = entry_at(r->st, p);
        if (e->stream_id != s->id) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        if (n == 0) {
            *first_version = e->version;
        }
        (*out)[n++] = p;
    }
    return n;
}

/* Whether indexed version v of stream s is a redacted record (the tail is never compacted). */
static int version_redacted(struct store_reader *r, const struct stream_rec *s, uint64_t v,
                            bool *out)
{
    uint64_t pos;
    const uint8_t *rec;
    uint32_t len;
    int rc = st_indexed_pos(r, s, v, &pos);
    if (!rc) rc = st_locate(r, pos, &rec, &len);
    *out = !rc && len > 1 && (rec[1] & RECORD_REDACTED);
    return rc;
}

/* The first version from `from` on that compaction left whole (s->version + 1 when none).
 * A stream's redacted versions are one range (compaction redacts below a version or before a
 * recorded time, recorded times follow versions, and only records of format 5, a suffix of
 * the stream, are ever redacted), so from a redacted version a binary search finds its end:
 * a read whose settings were relaxed after a compaction starts past what is gone instead of
 * stepping through it. */
static int first_whole(struct store_reader *r, const struct stream_rec *s, uint64_t from,
                       uint64_t first_tail, uint64_t *out)
{
    uint64_t hi = first_tail <= s->version ? first_tail : s->version + 1; /* whole */
    bool red = false;
    int rc = from < hi ? version_redacted(r, s, from, &red) : 0;
    *out = from;
    if (rc || !red) {
        return rc;
    }
    uint64_t lo = from; /* redacted */
    while (!rc && hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        rc = version_redacted(r, s, mid, &red);
        *(red ? &lo : &hi) = mid;
    }
    *out = hi;
    return rc;
}

int store_scan_stream(struct store_reader *r, struct slice name, const struct stream_rec *s,
                      uint64_t from, uint64_t min_version, bool backward, size_t limit,
                      store_event_fn *fn, void *arg)
{
    (void)name;
    if (backward && from > s->version) {
        from = s->version;
    }
    if (!backward && from < min_version) {
        from = min_version;
    }
    uint64_t *tp;
    uint64_t tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, s, &tp, &tv0);
    uint64_t v = from;
    int rc = backward || from < 1 ? 0 : first_whole(r, s, from, tn ? tv0 : UINT64_MAX, &v);
    struct noted_call sc = {fn, arg, false};
    size_t n = 0; /* delivered: a redacted record met on the way does not count */
    while (!rc && n < limit && v >= 1 && v >= min_version && v <= s->version) {
        uint64_t pos;
        if (v >= tv0 && v - tv0 < tn) {
            pos = tp[v - tv0];
        } else {
            rc = st_indexed_pos(r, s, v, &pos);
        }
        sc.called = false;
        if (!rc) rc = st_emit(r, pos, noted_call, &sc);
        n += sc.called;
        v = backward ? v - 1 : v + 1;
    }
    free(tp);
    return rc > 0 ? 0 : rc;
}

static int recorded_at(struct store_reader *r, uint64_t p, int64_t *out)
{
    const uint8_t *rec;
    uint32_t len;
    struct event_rec ev;
    int rc = st_locate(r, p, &rec, &len);
    if (!rc) rc = codec_record_decode(rec, len, &ev);
    if (!rc && ev.position != p) {
        rc = ERR(ERR_CORRUPT);
    }
    *out = rc ? 0 : ev.recorded_us;
    return rc;
}

int store_position_at_time(struct store_reader *r, int64_t t_us, bool at_or_after,
                           uint64_t *out)
{
    uint64_t a = 1, b = r->head;
    *out = at_or_after ? r->head + 1 : 0;
    while (a <= b) {
        uint64_t mid = a + (b - a) / 2;
        int64_t t;
        int rc = recorded_at(r, mid, &t);
        if (rc) {
            return rc;
        }
        bool fits = at_or_after ? t >= t_us : t <= t_us;
        if (fits) {
            *out = mid;
        }
        if (fits == at_or_after) {
            b = mid - 1; /* an earlier position may fit too (at_or_after), or is too late */
        } else {
            a = mid + 1;
        }
    }
    return 0;
}

int store_reader_stream_at(struct store_reader *r, struct slice name, uint64_t as_of,
                           struct stream_rec *out)
{
    int rc = store_reader_stream(r, name, out);
    if (rc || as_of >= out->last_pos) {
        return rc;
    }
    if (out->first_pos > as_of) {
        return ERR_NOTFOUND;
    }
    uint64_t *tp, tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, out, &tp, &tv0);
    uint64_t a = 1, b = out->version, best = 1, best_pos = out->first_pos;
    while (a <= b && !rc) {
        uint64_t mid = a + (b - a) / 2, p = 0;
        if (mid >= tv0 && mid - tv0 < tn) {
            p = tp[mid - tv0];
        } else {
            rc = st_indexed_pos(r, out, mid, &p);
        }
        if (!rc && p <= as_of) {
            best = mid;
            best_pos = p;
            a = mid + 1;
        } else {
            b = mid - 1;
        }
    }
    free(tp);
    int64_t t = 0;
    if (!rc) rc = recorded_at(r, best_pos, &t);
    if (!rc) {
        out->version = best;
        out->last_pos = best_pos;
        out->updated_us = t;
    }
    return rc;
}

/* Position of version v of stream s (index or the tail positions tp[0..tn) from tv0). */
static int version_pos(struct store_reader *r, const struct stream_rec *s, const uint64_t *tp,
                       size_t tn, uint64_t tv0, uint64_t v, uint64_t *out)
{
    if (v >= tv0 && v - tv0 < tn) {
        *out = tp[v - tv0];
        return 0;
    }
    return st_indexed_pos(r, s, v, out);
}

int store_stream_first_since(struct store_reader *r, const struct stream_rec *s, int64_t t_us,
                             uint64_t *out)
{
    uint64_t *tp, tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, s, &tp, &tv0);
    uint64_t a = 1, b = s->version;
    int rc = 0;
    *out = s->version + 1;
    while (a <= b && !rc) {
        uint64_t mid = a + (b - a) / 2, p;
        int64_t t = 0;
        rc = version_pos(r, s, tp, tn, tv0, mid, &p);
        if (!rc) rc = recorded_at(r, p, &t);
        if (!rc && t >= t_us) {
            *out = mid;
            b = mid - 1;
        } else {
            a = mid + 1;
        }
    }
    free(tp);
    return rc;
}

static bool listed(struct slice name, struct slice prefix, struct slice after)
{
    return name.len >= prefix.len && memcmp(name.ptr, prefix.ptr, prefix.len) == 0 &&
           (!after.ptr || cmp_slices(&name, &after) > 0);
}

/* Names of the streams created in the tail part of r's view (up to as_of) that are listed,
 * sorted. The slices borrow the log mapping. */
static size_t tail_streams(struct store_reader *r, struct slice prefix, struct slice after,
                           uint64_t as_of, struct slice **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    for (uint64_t p = r->indexed + 1; p <= r->head && p <= as_of; p++) {
        const struct tail_entry *e = entry_at(r->st, p);
        const uint8_t *rec = log_at(r->st->log, e->offset, e->len);
        struct event_rec ev;
        if (e->version != 1 || !rec || codec_record_decode(rec, e->len, &ev) != 0 ||
            !listed(ev.stream, prefix, after)) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        (*out)[n++] = ev.stream;
    }
    if (n) {
        qsort(*out, n, sizeof(**out), cmp_slices);
    }
    return n;
}

static int list_one(struct store_reader *r, struct slice name, uint64_t as_of,
                    store_stream_fn *fn, void *arg)
{
    struct stream_rec s;
    int rc = store_reader_stream_at(r, name, as_of, &s);
    if (rc == ERR_NOTFOUND) {
        return 0; /* created after as_of */
    }
    return rc ? rc : fn(arg, name, &s);
}

int store_list_streams(struct store_reader *r, struct slice prefix, struct slice after,
                       uint64_t as_of, store_stream_fn *fn, void *arg)
{
    struct slice *tn;
    size_t nt = tail_streams(r, prefix, after, as_of, &tn), ti = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(r->txn, r->st->streams, &c);
    if (rc) {
        free(tn);
        return st_map_err(rc);
    }
    struct slice start = after.ptr && cmp_slices(&after, &prefix) > 0 ? after : prefix;
    MDB_val k = {start.len, (void *)start.ptr}, v;
    int mrc = mdb_cursor_get(c, &k, &v, start.len ? MDB_SET_RANGE : MDB_FIRST);
    rc = 0;
    while (!rc) {
        struct slice key = {k.mv_data, k.mv_size};
        bool have_key = mrc == 0 && key.len >= prefix.len &&
                        memcmp(key.ptr, prefix.ptr, prefix.len) == 0;
        if (have_key && !listed(key, prefix, after)) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* the `after` name itself */
            continue;
        }
        bool take_tail = ti < nt && (!have_key || cmp_slices(&tn[ti], &key) < 0);
        if (!have_key && !take_tail) {
            break;
        }
        if (take_tail) {
            rc = list_one(r, tn[ti++], as_of, fn, arg);
        } else {
            rc = list_one(r, key, as_of, fn, arg);
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    if (mrc && mrc != MDB_NOTFOUND && rc == 0) {
        rc = st_map_err(mrc);
    }
    mdb_cursor_close(c);
    free(tn);
    return rc > 0 ? 0 : rc;
}

/* ---- verification ---- */

/* State of an offline verification walk. */
struct verify_ctx {
    struct store *st;                  /* opened read-only */
    MDB_txn *txn;                      /* read snapshot of the index */
    struct head_rec h;                 /* index head */
    struct store_verify_report *rep;   /* borrowed */
};

static int verify_fail(struct verify_ctx *vc, uint64_t pos, const char *problem)
{
    vc->rep->first_bad = pos;
    vc->rep->problem = problem;
    return ERR(ERR_CORRUPT);
}

/* Checks the index entries of one indexed event. */
static int verify_indexed(struct verify_ctx *vc, const struct event_rec *ev, uint64_t rec_off,
                          uint32_t len)
{
    uint64_t off;
    uint32_t plen;
    if (get_pos(vc->txn, vc->st, ev->position, &off, &plen) != 0 || off != rec_off ||
        plen != len) {
        return verify_fail(vc, ev->position, "position index entry missing or wrong");
    }
    struct stream_rec s;
    uint64_t at;
    struct store_reader r = {.st = vc->st, .txn = vc->txn};
    /* a redacted record's stream and terms went with its content: its pos and id remain */
    if (!ev->redacted &&
        (st_get_row(vc->txn, vc->st, ev->stream, &s) != 0 || s.version < ev->version ||
         st_indexed_pos(&r, &s, ev->version, &at) != 0 || at != ev->position)) {
        return verify_fail(vc, ev->position, "stream index entry missing or wrong");
    }
    MDB_val ik = {UUID_LEN, (void *)ev->id}, iv;
    if (mdb_get(vc->txn, vc->st->ids, &ik, &iv) != 0 || iv.mv_size != 8 ||
        be64_get(iv.mv_data) != ev->position) {
        return verify_fail(vc, ev->position, "event id index entry missing or wrong");
    }
    if (!ev->redacted && st_verify_terms(vc->txn, vc->st, ev) != 0) {
        return verify_fail(vc, ev->position, "query index entry missing");
    }
    if (ev->position == vc->h.position && memcmp(vc->h.hash, ev->hash, HASH_SHA256_LEN) != 0) {
        return verify_fail(vc, ev->position, "index head does not match the log");
    }
    return 0;
}

static int verify_event(void *arg, const struct event_rec *ev, uint64_t rec_off, uint32_t len)
{
    struct verify_ctx *vc = arg;
    if (ev->position <= vc->h.position) {
        int rc = verify_indexed(vc, ev, rec_off, len);
        if (rc) {
            return rc;
        }
    }
    vc->rep->events_checked++;
    vc->rep->last_position = ev->position;
    memcpy(vc->rep->last_hash, ev->hash, HASH_SHA256_LEN);
    return 0;
}

static int verify_walk(struct verify_ctx *vc)
{
    uint64_t off = 0, pos = 1;
    uint8_t prev[HASH_SHA256_LEN] = {0};
    struct batch_view b;
    enum frame_kind k;
    while ((k = st_read_batch(vc->st->log, off, &b)) == FRAME_OK) {
        int rc = st_walk_batch(vc->st->log, &b, &pos, prev, verify_event, vc);
        if (rc) {
            return vc->rep->problem ? rc : verify_fail(vc, pos, "record checksum, position, hash chain or idempotency record");
        }
        if (pos - 1 == vc->h.position && vc->h.log_end != b.next) {
            return verify_fail(vc, pos - 1, "index head does not match the log");
        }
        off = b.next;
    }
    bool rest = nonzero_after(vc->st->log, off);
    if (rest && (pos <= vc->h.position || valid_batch_follows(vc->st->log, off, pos))) {
        return verify_fail(vc, pos, "batch checksum, length or layout");
    }
    if (pos - 1 < vc->h.position) {
        return verify_fail(vc, pos, "the index covers events missing from the log");
    }
    vc->rep->torn_tail = rest;
    return 0;
}

int store_verify(const char *dir, uint64_t map_bytes, struct store_verify_report *out)
{
    memset(out, 0, sizeof(*out));
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (access(path, F_OK) != 0) {
        return ERR_NOTFOUND;
    }
    struct verify_ctx vc = {.st = store_alloc(dir, map_bytes), .rep = out};
    int rc = open_env(vc.st, false, true);
    if (!rc) rc = st_map_err(mdb_txn_begin(vc.st->env, NULL, MDB_RDONLY, &vc.txn));
    if (!rc) {
        rc = st_get_head(vc.txn, vc.st, &vc.h);
        if (rc) {
            rc = verify_fail(&vc, 0, "index head unreadable");
        } else {
            rc = open_log(vc.st, vc.h.generation);
            rc = rc ? rc : verify_walk(&vc);
        }
        mdb_txn_abort(vc.txn);
    } else if (rc == ERR_CORRUPT) {
        verify_fail(&vc, 0, "index unreadable");
    }
    store_free(vc.st);
    return rc;
}
