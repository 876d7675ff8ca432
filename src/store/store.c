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
 * commit, join indexer).
 *
 * This file is the core: the LMDB helpers the other files share, opening (index environment,
 * log generation in force, recovery, indexer start) and closing, settings and sizes, the
 * writer's stream states and the append path. The rest of src/store/:
 *   log.c       the log file: mapping, writes, syncs, growth
 *   codec.c     on-disk layouts: event record, stream row, index head, idempotency record
 *   recovery.c  reading batches back (CRC, positions, hash chain); the tail rebuilt at open
 *   indexer.c   the indexer thread: tail -> LMDB in large transactions, then the tail trimmed
 *   idem.c      idempotency records in the index (put, purge); the writer's lookups of
 *               idempotency keys and event ids
 *   reader.c    read views: events by position, by stream, by time; stream states and lists
 *   query.c     query indexes (terms, postings) and filtered reads
 *   verify.c    annals verify: the whole log and index of a stopped store
 *   compact.c   a compaction's rewrite of the log into a new generation
 *   snapshot.c  consistent copies for backups, and the pin that holds the generation */
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

/* Bytewise order of two struct slice (LMDB's order of keys), shorter first on a tie. */
int st_cmp_slices(const void *a, const void *b)
{
    const struct slice *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int st_get_pos(MDB_txn *txn, struct store *st, uint64_t pos, uint64_t *off, uint32_t *len)
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

int st_open_env(struct store *st, bool create, bool readonly)
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
void st_note_event(struct store *st, const struct event_rec *ev, uint64_t stream_id,
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
int st_note_idem(struct store *st, uint64_t last_pos, uint64_t off, uint32_t len)
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
int st_resolve_id(struct store *st, struct strmap *fresh, const struct event_rec *ev,
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
        /* seed the writer's state with the indexed row, so st_note_event adds to its size */
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

/* ---- open and close ---- */

void st_free(struct store *st)
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

struct store *st_alloc(const char *dir, uint64_t map_bytes)
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
int st_open_log(struct store *st, uint64_t gen)
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
    struct store *st = st_alloc(dir, map_bytes);
    st->init_settings = settings;
    struct head_rec h;
    int rc = st_open_env(st, create, false);
    if (!rc) rc = read_index_head(st, &h);
    if (!rc && remove_other_logs(dir, (int64_t)h.generation) > 0) {
        log_warn("%s: removed log files of an interrupted or finished compaction", dir);
    }
    if (!rc) rc = st_open_log(st, h.generation);
    if (!rc && h.log_end > log_file_bytes(st->log)) {
        log_error("%s: the index reaches past the end of the event log", dir);
        rc = ERR(ERR_CORRUPT);
    }
    if (!rc) {
        st->head.created_us = h.created_us;
        __atomic_store_n(&st->indexed, h.position, __ATOMIC_RELEASE);
        rc = st_recover_tail(st, &h);
    }
    if (!rc && create) {
        rc = sync_new_dirs(dir);
    }
    if (!rc && pthread_create(&st->indexer, NULL, st_indexer_main, st) != 0) {
        rc = ERR(ERR_IO);
    }
    if (rc) {
        st_free(st);
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
    st_free(st);
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
        st_note_event(st, &evs[i], ids[i], off + LOG_FRAME_HEADER, lens[i]);
        off += LOG_FRAME_HEADER + lens[i];
    }
    uint64_t last = evs[n - 1].position;
    uint64_t end = frames_at + (st->wbuf.len - LOG_BATCH_HEADER);
    entry_at(st, last)->aux_len = (uint32_t)(end - off);
    struct recover_ctx ctx = {.st = st, .last_pos = last};
    /* these bytes were just encoded here: they decode (walk_aux cannot fail) */
    (void)st_walk_aux(st->log, off, end, st_recover_idem, &ctx);
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
        rc = st_resolve_id(st, &fresh, &evs[i], &next_id, &ids[i]);
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
