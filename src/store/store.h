/* The embedded storage backend of one database: an append-only event log file (the durable
 * record of every event, log.h) plus an LMDB index (the only code that includes lmdb.h) that a
 * background indexer brings up to date. Layout and formats: docs/design/storage.md.
 *
 * Write path (one writer thread): store_append() writes the batch's frames to the log and
 * fdatasyncs it once; on return the events are durable and visible to readers. They are
 * indexed into LMDB later, in bigger transactions, by the store's indexer thread; until then a
 * readers' tail (in memory) covers them, and recovery rebuilds the tail from the log.
 *
 * Readers (any thread) take a struct store_reader: one LMDB snapshot plus the tail, so a read
 * sees every event up to one head position. Readers never wait for the writer. */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/codec.h"
#include "util/buf.h"

struct store;
struct store_reader;

/* Sizes of a database on disk. */
struct store_stats {
    uint64_t file_bytes;  /* log file + index file sizes */
    uint64_t used_bytes;  /* log bytes in use + index pages in use */
    uint64_t indexed;     /* position the LMDB index covers */
    uint64_t streams;     /* streams created */
    int64_t created_us;   /* database creation time */
    uint64_t syncs;       /* log syncs (one per appended batch) since open */
    uint64_t sync_ns;     /* time spent in them */
    uint64_t index_commits; /* index transactions committed since open (one sync each) */
    uint64_t index_ns;    /* time spent indexing */
    uint64_t idem_keys;   /* idempotency records in the index (expired ones until purged) */
    uint64_t generation;  /* log file generation: compactions done over the store's life */
};

/* The writer's view of the database head. */
struct store_head {
    uint64_t position;                /* newest durable position (0 = empty) */
    uint8_t hash[HASH_SHA256_LEN];    /* chain hash at position */
    uint64_t stream_count;            /* streams created */
    int64_t created_us;               /* database creation time */
};

/* Opens (creating when create is true, with settings, an opaque text kept with it) the store
 * in directory dir; the log may grow to map_bytes. Recovers the tail of the log past the index, wiping a torn, unacknowledged last
 * write, and starts the indexer. A store whose creation was cut short (index unreadable, no
 * batch in the log) is discarded: re-created when create, else ERR_NOTFOUND. Returns 0,
 * ERR_NOTFOUND (no store and !create), ERR_CORRUPT (the log or index is damaged) or ERR_IO. */
int store_open(const char *dir, uint64_t map_bytes, bool create, struct slice settings,
               struct store **out);
/* The settings text given when the store was created (settings of store_open; recorded in
 * the creating index commit), empty when none. Returns 0 or ERR_IO. */
int store_settings(struct store *st, struct buf *out);
/* Replaces the settings text durably (an index commit, synced). Returns 0, ERR_IO or
 * ERR_NOSPACE. Any thread but the indexer's. */
int store_set_settings(struct store *st, struct slice settings);
/* Indexes what is left, stops the indexer and closes. No reader may be open. NULL is a no-op. */
void store_close(struct store *st);
/* Closes without indexing what is left (the store is about to be removed). */
void store_abandon(struct store *st);
/* Removes the store's files and directory. The store must be closed. Returns 0 or ERR_IO. */
int store_remove_files(const char *dir);
int store_stats(struct store *st, struct store_stats *out);

/* ---- writer thread only ---- */

void store_head(const struct store *st, struct store_head *out);
/* The current state of a stream, including events not yet indexed; r (may be NULL) is a view
 * the writer opened after its last append, used instead of a new one. Returns 0,
 * ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int store_stream_state(struct store *st, struct store_reader *r, struct slice name,
                       struct stream_rec *out);
/* Appends events (n >= 1; positions head+1.., versions and every field set; hash is filled
 * in) and the nidem idempotency records (keys distinct) to the log in one batch and syncs once.
 * On 0 they are durable and readable. On error nothing is visible; after a failed sync the
 * store refuses further appends (ERR_IO) until reopened, since the kernel may have dropped the
 * unsynced pages. Returns 0, ERR_NOSPACE or ERR_IO. */
int store_append(struct store *st, struct event_rec *evs, size_t n, const struct idem_rec *idems,
                 size_t nidem);

/* Finds the idempotency record of key as of now_us: the unindexed records, else the idem index
 * in r's snapshot (r opened by the writer thread after its last append). *out borrows the log
 * or r: valid until r ends. Returns 0, ERR_NOTFOUND (never stored, or expired: created at
 * least the TTL before now_us), ERR_CORRUPT or ERR_IO. */
int store_find_idem(struct store *st, struct store_reader *r, struct slice key, int64_t now_us,
                    struct idem_rec *out);
/* How long idempotency records live (lookups and the background purge); any thread. */
void store_set_idem_ttl(struct store *st, uint64_t ttl_us);

/* Finds the position of the event with this id: the unindexed events (client-given ids in the
 * writer's map, server-made UUIDv7s by their time), else the id index in r's snapshot (r
 * opened by the writer thread after its last append). Returns
 * 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int store_find_id(struct store *st, struct store_reader *r, const uint8_t id[UUID_LEN],
                  uint64_t *pos);

/* ---- readers, any thread ---- */

/* The newest durable position (0 = empty): what a reader opened now would see. */
uint64_t store_published(const struct store *st);

/* Opens a consistent view. Returns 0 or ERR_IO. End it with store_read_end. */
int store_read_begin(struct store *st, struct store_reader **out);
void store_read_end(struct store_reader *r);
/* The newest position in this view (0 = empty). */
uint64_t store_reader_head(const struct store_reader *r);
/* A stream's state in this view. Returns 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int store_reader_stream(struct store_reader *r, struct slice name, struct stream_rec *out);

/* Called once per event. ev borrows from the store: valid until store_read_end.
 * Return 0 to continue, 1 to stop, or a negative ERR_* to fail the scan. */
typedef int store_event_fn(void *arg, const struct event_rec *ev);

/* Calls fn for up to limit events of stream s (as returned by store_reader_stream for name),
 * from version from (inclusive) towards newer, or older when backward, never below
 * min_version. */
int store_scan_stream(struct store_reader *r, struct slice name, const struct stream_rec *s,
                      uint64_t from, uint64_t min_version, bool backward, size_t limit,
                      store_event_fn *fn, void *arg);
/* Same over the whole log in position order, from position from (inclusive). */
int store_scan_log(struct store_reader *r, uint64_t from, bool backward, size_t limit,
                   store_event_fn *fn, void *arg);
/* The first position recorded at or after t_us (at_or_after; head + 1 when none), or the last
 * recorded at or before it (0 when none), by binary search: recorded times never decrease
 * along the log. Returns 0, ERR_CORRUPT or ERR_IO. */
int store_position_at_time(struct store_reader *r, int64_t t_us, bool at_or_after,
                           uint64_t *out);
/* A stream's state as of position as_of (its newest version at or before it). Returns 0,
 * ERR_NOTFOUND (no such stream then), ERR_CORRUPT or ERR_IO. */
int store_reader_stream_at(struct store_reader *r, struct slice name, uint64_t as_of,
                           struct stream_rec *out);
/* The first version of stream s (a row of r's view) recorded at or after t_us (s->version + 1
 * when none), by binary search. Returns 0, ERR_CORRUPT or ERR_IO. */
int store_stream_first_since(struct store_reader *r, const struct stream_rec *s, int64_t t_us,
                             uint64_t *out);
/* Called per listed stream; return 0 to go on, 1 to stop, or a negative ERR_*. */
typedef int store_stream_fn(void *arg, struct slice name, const struct stream_rec *s);
/* Calls fn for every stream whose name starts with prefix and sorts (bytewise) after `after`
 * (after.ptr NULL: from the start), in name order, as of position as_of. */
int store_list_streams(struct store_reader *r, struct slice prefix, struct slice after,
                       uint64_t as_of, store_stream_fn *fn, void *arg);

struct filter;

/* A filtered read of the log (query/filter.h). */
struct store_query {
    const struct filter *filter; /* borrowed */
    uint64_t from, to;           /* positions, inclusive, in the direction of travel */
    bool backward;               /* newest first */
    size_t limit;                /* matching events to deliver */
    size_t budget;               /* candidate events to examine at most */
    /* Optional: a matching event is delivered only when accept says so (hidden events are
     * neither delivered nor counted against the limit). */
    bool (*accept)(void *arg, const struct event_rec *ev);
    void *accept_arg;
};

struct store_query_result {
    size_t delivered; /* events passed to fn */
    size_t examined;  /* candidates decoded and checked */
    uint64_t next;    /* where a next page starts (the next match, or where the budget ran
                         out), 0 when the range holds no more matches */
};

/* Calls fn for each event of the reader's view that matches q->filter, in position order,
 * within [from, to] (clipped to the view), until limit events or budget candidates. Uses the
 * query indexes for the indexed part and checks the tail event by event. Returns 0,
 * ERR_CORRUPT or ERR_IO. */
int store_query(struct store_reader *r, const struct store_query *q, store_event_fn *fn,
                void *arg, struct store_query_result *out);

/* Calls fn for the event at pos. Returns 0, ERR_NOTFOUND (also when compaction redacted it),
 * ERR_CORRUPT or ERR_IO. Scans and queries skip redacted records too. */
int store_get_event(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg);
/* The same, also for a redacted record (ev->redacted: header and body digest only), for
 * checks that must know what was stored there (duplicate event ids). */
int store_get_record(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg);

/* What store_compact rewrites. */
struct store_compact_spec {
    /* Whether an event stays readable (false: its record is redacted, its space reclaimed).
     * Called on the compacting thread for every indexed event whose record can be redacted;
     * ev borrows the log. Deciding false for an event readers may still see is the caller's
     * error: redaction cannot be undone. */
    bool (*keep)(void *arg, const struct event_rec *ev);
    /* Optional: asked between batches and, with appends paused, just before the switch;
     * true abandons the compaction (ERR_SHUTDOWN, nothing changed). */
    bool (*cancelled)(void *arg);
    void *arg;
    bool dry_run; /* only count what would be reclaimed */
};

struct store_compact_result {
    uint64_t examined;        /* indexed records looked at */
    uint64_t redacted;        /* records redacted (or that would be, dry run) */
    uint64_t reclaimed_bytes; /* log bytes that freed (redactions, idempotency records) */
    uint64_t log_before;      /* log bytes in use before */
    uint64_t log_after;       /* ... and after */
    uint64_t generation;      /* the log generation now */
};

/* Rewrites the indexed part of the log into a new generation with the records of events
 * spec->keep refuses redacted (their header and body digest stay, so positions, versions,
 * ids and the hash chain stay verifiable) and its idempotency records dropped (the index
 * holds them), and switches to it; the unindexed rest is copied as is. Reads go on meanwhile; appends go on too, pausing only for the switch (a copy of what
 * they wrote during the rewrite, one sync, one index commit); indexing waits for it, and
 * appends with it once the tail is full. Nothing to reclaim: nothing changes. Blocks the
 * calling thread for the whole rewrite; one at a time per store (the caller's duty). Returns 0,
 * ERR_SHUTDOWN (cancelled), ERR_CORRUPT (the log does not read back: nothing changed),
 * ERR_NOSPACE or ERR_IO. */
int store_compact(struct store *st, const struct store_compact_spec *spec,
                  struct store_compact_result *out);

/* Result of store_verify. */
struct store_verify_report {
    uint64_t events_checked;  /* records that passed */
    uint64_t first_bad;       /* first position that failed (0 = none) */
    const char *problem;      /* static text naming the first failure, or NULL */
    bool torn_tail;           /* an unacknowledged partial write follows the last event */
    uint64_t last_position;   /* the last record that passed (0 = none) */
    uint8_t last_hash[HASH_SHA256_LEN]; /* its chain hash */
};

/* Walks the whole log: frames, CRCs, gap-free positions, the hash chain; and the index: every
 * indexed event's position and stream entries, and the index head. Works on a closed store
 * directory (the server stopped). Returns 0 when intact, ERR_CORRUPT (report filled),
 * ERR_NOTFOUND or ERR_IO. */
int store_verify(const char *dir, uint64_t map_bytes, struct store_verify_report *out);

#endif
