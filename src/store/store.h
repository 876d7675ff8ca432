/* The embedded storage backend: one LMDB environment per database directory. The only module
 * that includes lmdb.h. Layout and formats: docs/design/storage.md.
 *
 * Threads: a struct store is shared by all threads. Read transactions may be opened on any
 * thread (MDB_NOTLS) and never wait for the writer; a write transaction belongs to the single
 * writer thread of its database. After any error inside a write transaction, only
 * store_txn_abort() is legal. */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/codec.h"
#include "util/buf.h"

struct store;
struct store_txn;

/* Sizes of a database on disk. */
struct store_stats {
    uint64_t file_bytes; /* size of the data file */
    uint64_t used_bytes; /* pages in use times page size */
};

/* Opens (creating when create is true) the store in directory dir, with a map of at most
 * map_bytes. Returns 0, ERR_NOTFOUND (no such store and !create), ERR_CORRUPT (head record
 * damaged or other format) or ERR_IO. *out is owned by the caller: store_close() it. */
int store_open(const char *dir, uint64_t map_bytes, bool create, struct store **out);
/* Closes the environment. No transaction may be open. NULL is a no-op. */
void store_close(struct store *st);
/* Removes the store's files and its directory. The store must be closed. Returns 0 or ERR_IO. */
int store_remove_files(const char *dir);
int store_stats(struct store *st, struct store_stats *out);

/* Begins a transaction. Read transactions see one consistent snapshot. Returns 0, ERR_IO. */
int store_txn_begin(struct store *st, bool is_write, struct store_txn **out);
/* Commits (write) or ends (read) txn; txn is gone afterwards either way. A write commit is
 * durable (fsync) when it returns 0. Returns 0, ERR_NOSPACE or ERR_IO. */
int store_txn_commit(struct store_txn *txn);
void store_txn_abort(struct store_txn *txn);

/* Reads the head record. Returns 0 or ERR_CORRUPT/ERR_IO. */
int store_get_head(struct store_txn *txn, struct head_rec *out);
/* Looks a stream up by name. Returns 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int store_get_stream(struct store_txn *txn, struct slice name, struct stream_rec *out);

/* Called once per event during a scan. ev borrows from the store: valid only during the call.
 * Return 0 to continue, 1 to stop, or a negative ERR_* to stop and fail the scan. */
typedef int store_event_fn(void *arg, const struct event_rec *ev);

/* Calls fn for up to limit events of the stream, from version from (inclusive) towards newer
 * (or older when backward). Returns 0, or the callback's or a storage error. */
int store_scan_stream(struct store_txn *txn, const struct stream_rec *s, uint64_t from,
                      bool backward, size_t limit, store_event_fn *fn, void *arg);
/* Same over the whole log in position order, from position from (inclusive). */
int store_scan_log(struct store_txn *txn, uint64_t from, bool backward, size_t limit,
                   store_event_fn *fn, void *arg);
/* Calls fn for the event at position pos. Returns 0, ERR_NOTFOUND, ERR_CORRUPT or ERR_IO. */
int store_get_event(struct store_txn *txn, uint64_t pos, store_event_fn *fn, void *arg);

/* Write transaction only. Writes/overwrites a stream row. Returns 0, ERR_NOSPACE or ERR_IO. */
int store_put_stream(struct store_txn *txn, struct slice name, const struct stream_rec *s);
/* Writes an encoded event record at its position and its stream index entry. Positions must
 * increase across calls. Returns 0, ERR_NOSPACE or ERR_IO. */
int store_put_event(struct store_txn *txn, const uint8_t *rec, size_t n, uint64_t position,
                    uint64_t stream_id, uint64_t version);
int store_put_head(struct store_txn *txn, const struct head_rec *h);

/* Result of store_verify. */
struct store_verify_report {
    uint64_t events_checked;  /* records read */
    uint64_t first_bad;       /* first position that failed (0 = none) */
    const char *problem;      /* static text naming the first failure, or NULL */
};

/* Walks the whole log: every record's CRC, the hash chain, gap-free positions, each event's
 * stream index entry, and the head record. Returns 0 when intact, ERR_CORRUPT (report filled)
 * or ERR_IO. */
int store_verify(struct store *st, struct store_verify_report *out);

#endif
