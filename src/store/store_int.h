/* Internals of the embedded store shared by its files (which file holds what: the head of
 * store.c). Not for use outside src/store/. */
#ifndef STORE_STORE_INT_H
#define STORE_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>

#include "store/log.h"
#include "store/store.h"
#include "util/idmap.h"
#include "util/strmap.h"

enum {
    TAIL_CHUNK = 4096,          /* entries per tail chunk */
    TAIL_CHUNKS = 256,          /* chunk slots: the tail holds < (TAIL_CHUNKS - 1) chunks */
    TAIL_BLOCK = 256,           /* positions per Bloom filter of the tail's terms */
    TAIL_BLOOM_BYTES = 2048,    /* bits of one such filter (8 per event: ~1 % false
                                   positives at 4 terms per event, 3 bits per term) */
    INDEX_BATCH = 65536,        /* index as soon as this many events wait */
    INDEX_TXN_MAX = 262144,     /* events one index transaction takes at most */
    INDEX_DELAY_MS = 200,       /* ... or once the oldest has waited this long */
    INDEX_BUSY_EVENTS = 4096,   /* after an index transaction of at least this many events, */
    INDEX_BUSY_DELAY_MS = 1000, /* ... wait this long instead (bigger, fewer transactions) */
    IDEM_PURGE_MAX = 4096,      /* expired idempotency records deleted per index commit */
    IDEM_PURGE_IDLE_S = 60,     /* an idle database purges them this often */
    MAP_EVICT_AT = 65536,       /* writer map size that triggers dropping indexed streams */
    POS_VAL_BYTES = 12,         /* pos table value: offset, length */
    MAX_RECORD_BYTES = 64 << 20 /* larger frames are damage, not records */
};

/* Where one unindexed event is. */
struct tail_entry {
    uint64_t offset;     /* of the record (past the frame header) in the log */
    uint64_t name_hash;  /* strmap_hash of the stream name */
    uint64_t stream_id;  /* stream id */
    uint64_t version;    /* version in the stream */
    uint32_t len;        /* record bytes */
    uint32_t aux_len;    /* bytes of aux frames after the record (a batch's last event) */
};

/* One event's entry in the stream index, gathered during an index transaction and written
 * with the others in key order at its end. */
struct stream_add {
    uint64_t stream_id;
    uint64_t version;
    uint64_t pos;
    int64_t recorded_us;
    struct slice name; /* the stream's name: borrows the log */
    uint32_t len;      /* record bytes */
};

/* Where one unindexed idempotency record is (the writer's map, by key). */
struct idem_loc {
    uint64_t last_pos;   /* the last position of its batch: indexed with it */
    uint64_t offset;     /* of the record (past the frame header) in the log */
    uint32_t len;        /* record bytes */
};

struct store {
    char *dir;                               /* owned */
    uint64_t map_bytes;                      /* log mapping size */
    MDB_env *env;                            /* owned */
    MDB_dbi pos, sindex, streams, meta;      /* index tables; pos is the position table of
                                                the log generation in force (below) */
    MDB_dbi pos_tab[2];                      /* position tables: "pos" for even log
                                                generations, "pos1" for odd ones (a
                                                compaction fills the other one) */
    bool has_pos1;                           /* "pos1" exists (a read-only open of an older
                                                store has none) */
    MDB_dbi terms, postings;                 /* query index tables (query.c) */
    MDB_dbi ids;                             /* event id -> position */
    MDB_dbi idem, idemage;                   /* idempotency records: key -> record; created
                                                us (BE) || key -> empty (expiry order) */
    bool has_idem;                           /* those tables exist (a read-only open of a
                                                format-4 store has none) */
    uint64_t idem_ttl_us;                    /* atomic: idempotency records live this long */
    int64_t purged_us;                       /* indexer: when expired records were last
                                                purged */
    struct log *log;                         /* owned; replaced by a compaction with the
                                                tail lock and append_mu held */
    uint64_t generation;                     /* the log file's generation (head) */
    pthread_mutex_t append_mu;               /* held by store_append while it writes and
                                                publishes; a compaction's switch holds it */
    pthread_mutex_t index_mu;                /* held by whoever writes the index: the
                                                indexer, or a compaction */
    pthread_mutex_t pin_mu;                  /* guards pins and rewriting (snapshot.c) */
    pthread_cond_t pin_cv;                   /* signalled when either falls */
    unsigned pins;                           /* backups holding the log generation: no
                                                compaction may switch it meanwhile */
    bool rewriting;                          /* a compaction that may switch generations
                                                runs (st_compact_enter .. _leave) */
    unsigned env_copies;                     /* atomic: index copies running (snapshot.c);
                                                st_reopen_env leaves the environment open
                                                while there are any */
    int64_t created_us;                      /* database creation time */
    struct slice init_settings;              /* during store_open: settings of a new store */

    pthread_rwlock_t tail_lock;              /* readers shared; trimming exclusive */
    struct tail_entry *chunks[TAIL_CHUNKS];  /* chunk slots, see entry_at */
    uint8_t *blooms[TAIL_CHUNKS];            /* per chunk, TAIL_CHUNK / TAIL_BLOCK Bloom
                                                filters of the terms of its events (see
                                                bloom_at); allocated and freed with it */
    uint64_t published;                      /* atomic: newest readable position */
    uint64_t indexed;                        /* atomic: newest indexed position */
    uint64_t streams_pub;                    /* atomic: stream count as of published */

    /* writer thread only */
    struct store_head head;                  /* durable head */
    struct strmap states;                    /* name -> struct stream_rec, unindexed streams */
    struct idmap tail_ids;                   /* event id -> position, unindexed events */
    struct strmap tail_idem;                 /* key -> struct idem_loc, unindexed records */
    size_t idem_evict_at;                    /* tail_idem size that triggers eviction */
    size_t ids_evict_at;                     /* tail_ids size that triggers eviction */
    uint64_t max_id_lead_ms;                 /* atomic: largest lead of a server id's time
                                                over its commit's */
    struct buf wbuf;                         /* frames of the batch being written */
    bool failed;                             /* a sync failed: appends refused */
    size_t evict_at;                         /* states size that triggers eviction */
    uint64_t syncs;                          /* atomic: log syncs done */
    uint64_t sync_ns;                        /* atomic: time spent in them */
    uint64_t index_commits;                  /* atomic: index transactions committed */
    bool index_failing;                      /* atomic: the last index commit failed */
    bool index_frozen;                       /* atomic: a compaction's head commit failed;
                                                which head is on disk is unknown until a
                                                restart, so nothing more is indexed */
    uint64_t index_ns;                       /* atomic: time spent indexing */

    /* indexer */
    pthread_t indexer;                       /* the indexer thread */
    pthread_mutex_t mu;                      /* guards stopping, wakes */
    pthread_cond_t cv;                       /* wakes the indexer; and the writer for space */
    bool stopping;                           /* close requested */
    bool has_indexer;                        /* indexer thread started */
    bool abandon;                            /* stop without a final index commit */
    uint64_t index_delay_ms;                 /* indexer: INDEX_DELAY_MS, or
                                                INDEX_BUSY_DELAY_MS after a big transaction */
    struct stream_add *ix_adds, *ix_tmp;     /* indexer: a transaction's stream index
                                                entries, and room to sort them (kept while
                                                busy, freed when idle) */
    size_t ix_cap;                           /* entries allocated in each */
};

struct store_reader {
    struct store *st;    /* borrowed */
    MDB_txn *txn;        /* read snapshot */
    uint64_t head;       /* newest position in the view */
    uint64_t indexed;    /* newest position the snapshot's index covers */
};

static inline struct tail_entry *entry_at(struct store *st, uint64_t pos)
{
    uint64_t idx = pos - 1;
    return &st->chunks[(idx / TAIL_CHUNK) % TAIL_CHUNKS][idx % TAIL_CHUNK];
}

/* The Bloom filter of the block of tail positions holding pos (whose chunk exists). Bits are
 * only ever set (by the writer, before it publishes the position) until the chunk is freed:
 * read and set them with atomic byte operations. */
static inline uint8_t *bloom_at(struct store *st, uint64_t pos)
{
    uint64_t idx = pos - 1;
    return st->blooms[(idx / TAIL_CHUNK) % TAIL_CHUNKS] +
           (idx % TAIL_CHUNK) / TAIL_BLOCK * TAIL_BLOOM_BYTES;
}

/* ---- store.c: LMDB helpers, open and close, the writer ---- */

/* Maps an LMDB or errno code to an ERR_* code (0 for MDB_SUCCESS). */
int st_map_err(int rc);
/* The index head in txn. Returns 0, ERR_CORRUPT or an error. */
int st_get_head(MDB_txn *txn, struct store *st, struct head_rec *out);
/* Writes h as the index head in txn (a write transaction). Returns 0 or an error. */
int st_put_head(MDB_txn *txn, struct store *st, const struct head_rec *h);
/* The indexed row of stream name. Returns 0, ERR_NOTFOUND or an error. */
int st_get_row(MDB_txn *txn, struct store *st, struct slice name, struct stream_rec *out);
/* Where the position table of txn puts the record of pos. Returns 0, ERR_NOTFOUND,
 * ERR_CORRUPT (an entry of the wrong size) or an error. */
int st_get_pos(MDB_txn *txn, struct store *st, uint64_t pos, uint64_t *off, uint32_t *len);
/* Bytewise order of two struct slice (LMDB's order of keys), shorter first: a qsort
 * comparator. */
int st_cmp_slices(const void *a, const void *b);
/* Opens st->env and its tables (creating them when create; a new index gets its head and
 * st->init_settings in a synced commit); readonly opens what exists. Returns 0, ERR_CORRUPT
 * (tables or head missing or unreadable) or another error; st->env may be set on failure. */
int st_open_env(struct store *st, bool create, bool readonly);
/* A new, closed store for dir (no environment, no log, no indexer): store_open's start, and
 * store_verify's. Free it with st_free. */
struct store *st_alloc(const char *dir, uint64_t map_bytes);
/* Closes what st has open and frees it (its indexer, if any, has stopped). */
void st_free(struct store *st);
/* Opens log generation gen as st->log and selects its position table. Returns 0,
 * ERR_CORRUPT (an odd generation without "pos1") or log_open's error. */
int st_open_log(struct store *st, uint64_t gen);
/* Records ev (durable at off, len bytes; stream id resolved) in the writer's stream states,
 * the tail (entry, Bloom filter) and its id tracking. Writer, or recovery. */
void st_note_event(struct store *st, const struct event_rec *ev, uint64_t stream_id,
                   uint64_t off, uint32_t len);
/* Records the idempotency record at off (len bytes) of the batch ending at last_pos in the
 * writer's map of unindexed records. Returns 0 or ERR_CORRUPT. */
int st_note_idem(struct store *st, uint64_t last_pos, uint64_t off, uint32_t len);
/* The stream id of ev: the writer's states, fresh (streams new in this batch or recovery,
 * where a new one gets ++*next_id) or the index. Returns 0, ERR_CORRUPT or an error. */
int st_resolve_id(struct store *st, struct strmap *fresh, const struct event_rec *ev,
                  uint64_t *next_id, uint64_t *out);
/* fsyncs directory dir (new or removed entries in it survive a power cut). */
int st_sync_dir(const char *dir);
/* The path of log generation gen of the store in dir: events.log, then events.<gen>.log. */
void st_log_path(const char *dir, uint64_t gen, char *out, size_t n);
/* Drops the writer's idempotency map entries the index has (writer, or with it paused). */
void st_evict_idem(struct store *st);

/* ---- recovery.c: reading the log back; recovery of the tail ---- */

/* Outcome of reading a batch at an offset. */
enum frame_kind { FRAME_OK, FRAME_END, FRAME_BAD };

/* A batch of the log: a 16-byte header (magic, frames length, CRC-32C of the frames, event
 * count, all u32 BE), then its frames (u32 BE record length, record). */
struct batch_view {
    uint64_t frames_at;   /* offset of the first frame */
    uint32_t frames_len;  /* bytes of frames */
    uint32_t count;       /* events */
    uint64_t next;        /* offset just past the batch */
};

/* Called per event of a batch: the record is at rec_off (len bytes). */
typedef int batch_event_fn(void *arg, const struct event_rec *ev, uint64_t rec_off, uint32_t len);

/* Recovery context for st_walk_batch and st_walk_aux callbacks; the writer notes a new
 * batch's idempotency records with one too (st and last_pos only). */
struct recover_ctx {
    struct store *st;      /* the store being opened */
    struct strmap *fresh;  /* streams first seen during recovery */
    uint64_t *next_id;     /* stream id counter */
    uint64_t last_pos;     /* aux frames: the last position of their batch */
};

/* Reads the batch header at off: FRAME_END at zeros or the end of the file; FRAME_BAD when
 * the magic, length or CRC is wrong (a torn or damaged batch); FRAME_OK otherwise. */
enum frame_kind st_read_batch(const struct log *lg, uint64_t off, struct batch_view *b);
/* The record of the frame at off (its u32 length, then the record), lying wholly before end;
 * *len gets its length. NULL when the frame is empty or runs past end. */
const uint8_t *st_frame_at(const struct log *lg, uint64_t off, uint64_t end, uint32_t *len);
/* Walks the events of a batch whose CRC matched: each must decode, carry position *pos (which
 * advances) and link to prev (which advances); then its aux frames, which must be well formed.
 * Returns 0, fn's error or ERR_CORRUPT. */
int st_walk_batch(const struct log *lg, const struct batch_view *b, uint64_t *pos,
                  uint8_t prev[HASH_SHA256_LEN], batch_event_fn *fn, void *arg);
/* Walks the aux frames in [off, end), calling fn (may be NULL) for each. Returns 0, fn's
 * error or ERR_CORRUPT. */
int st_walk_aux(const struct log *lg, uint64_t off, uint64_t end,
                int (*fn)(void *arg, uint64_t rec_off, uint32_t len), void *arg);
/* After the log ends or goes bad at off (next position pos): true when a whole, valid batch
 * of later positions follows (acknowledged events beyond damage). */
bool st_valid_batch_follows(const struct log *lg, uint64_t off, uint64_t pos);
/* True when any byte in [off, end of file) is not zero. */
bool st_nonzero_after(const struct log *lg, uint64_t off);
/* st_walk_aux callback (arg: struct recover_ctx): st_note_idem for the batch ending at
 * last_pos. */
int st_recover_idem(void *arg, uint64_t rec_off, uint32_t len);
/* Rebuilds the writer state and the tail from the log past head h, wiping a torn,
 * unacknowledged last write; publishes the recovered head. Returns 0, ERR_CORRUPT (damage,
 * logged) or an error. */
int st_recover_tail(struct store *st, const struct head_rec *h);

/* ---- indexer.c: the indexer thread ---- */

/* The indexer thread's body (arg: the store). Returns once st->stopping is set, having indexed
 * what was published unless st->abandon (or that commit fails, or indexing is frozen). */
void *st_indexer_main(void *arg);
/* After a failed index commit (LMDB may have marked the environment unusable): closes and
 * reopens it with the tail lock held exclusively; the caller holds index_mu. */
void st_reopen_env(struct store *st);

/* ---- idem.c: idempotency records in the index ---- */

/* An index transaction, for st_walk_aux callbacks. */
struct index_ctx {
    struct store *st;
    MDB_txn *txn;
};

/* st_walk_aux callback (arg: struct index_ctx): puts the idempotency record at rec_off into
 * idem and idemage. Returns 0, ERR_CORRUPT or an error. */
int st_put_idem(void *arg, uint64_t rec_off, uint32_t len);
/* Deletes up to IDEM_PURGE_MAX expired idempotency records in txn; *more: expired ones are
 * left. Returns 0 or an error. */
int st_purge_idem(MDB_txn *txn, struct store *st, bool *more);
/* st_purge_idem in a transaction of its own (an idle database). Returns 0 or an error. */
int st_purge_alone(struct store *st);

/* ---- reader.c: read views ---- */

/* Where the record of pos is in r's view (tail or index). Returns 0, ERR_NOTFOUND, ERR_CORRUPT
 * or ERR_IO. */
int st_locate(struct store_reader *r, uint64_t pos, const uint8_t **rec, uint32_t *len);
/* Decodes the record at pos and calls fn; returns fn's answer (> 0 = stop) or an error. */
int st_emit(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg);
/* Position of version v of stream s from the stream index (versions the snapshot indexed). */
int st_indexed_pos(struct store_reader *r, const struct stream_rec *s, uint64_t v,
                   uint64_t *out);

/* ---- snapshot.c: the pin ---- */

/* A compaction that may switch log generations: enter waits until no backup pins the store
 * (asking cancelled, which may be NULL, between waits: true gives up with ERR_SHUTDOWN), then
 * keeps new pins waiting until leave. Returns 0 or ERR_SHUTDOWN (leave must not follow). */
int st_compact_enter(struct store *st, bool (*cancelled)(void *arg), void *arg);
void st_compact_leave(struct store *st);

/* ---- query.c: query indexes ---- */

enum { TERM_LAST_KINDS = 4 }; /* term kinds whose last term an accumulator remembers */

struct term_val;

/* The last term of one kind an accumulator used (query.c). */
struct term_last {
    char kind;            /* 0: unused */
    struct slice name;    /* borrows the log */
    struct term_val *tv;  /* its entry in terms */
};

/* The terms and postings of one index transaction (query.c). */
struct term_acc {
    struct strmap terms;  /* term key -> struct term_val: id, counts, new positions */
    struct term_last last[TERM_LAST_KINDS];
};

/* Query indexes (query.c), maintained by the indexer inside its transaction: begin an
 * accumulator, add each event's terms and postings (new term ids come from *term_count),
 * flush (the postings, in key order, and the terms' counts) before the commit, end (also
 * after an abort). */
void st_terms_begin(struct term_acc *acc);
int st_index_terms(MDB_txn *txn, struct store *st, struct term_acc *acc,
                   const struct event_rec *ev, uint64_t *term_count);
int st_terms_flush(MDB_txn *txn, struct store *st, struct term_acc *acc);
void st_terms_end(struct term_acc *acc);
/* Sets the bits of ev's terms (type, category, subject, tags, stream) in the Bloom filter of
 * its tail block. Writer only. */
void st_bloom_note(struct store *st, const struct event_rec *ev);
/* ERR_CORRUPT when one of ev's postings (type, category, subject, tags) is missing. */
int st_verify_terms(MDB_txn *txn, struct store *st, const struct event_rec *ev);

#endif
