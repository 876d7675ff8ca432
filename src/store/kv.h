/* The derived-state store: state computed from a database's log (projection states and their
 * checkpoints, reducer snapshots), kept beside the log in an LMDB environment of its own
 * (<db dir>/derived/). Everything in it can be rebuilt from the log: a backup does not carry
 * it, and a table may be dropped at any time (a redeploy does).
 *
 * Data model: named tables (1..KV_TABLE_BYTES), each an ordered map of byte keys
 * (1..KV_KEY_BYTES) to byte values (up to KV_VALUE_BYTES). Tables are prefixes of one LMDB
 * database, so there is no limit on their number.
 *
 * Transactions: one writer at a time (a second kv_begin(write) waits), any number of
 * readers, each seeing one snapshot. A commit is atomic and durable (fsync of the data; the
 * meta page is synced lazily, MDB_NOMETASYNC, so a crash may lose the last commits but never
 * leaves a half commit): a checkpoint committed with the states it covers is exactly once.
 *
 * Threads: a struct kv is shared by every thread; a transaction belongs to the thread that
 * began it. Values returned by kv_get and kv_scan point into the map and are valid until the
 * transaction ends (or, in a write transaction, the next change). */
#ifndef STORE_KV_H
#define STORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum {
    KV_TABLE_BYTES = 96,              /* a table's name */
    KV_KEY_BYTES = 384,               /* a key (LMDB keys are at most 511 bytes, table
                                         included) */
    KV_VALUE_BYTES = 16 * 1024 * 1024, /* one value */
};

struct kv;
struct kv_txn;

/* Opens (creating it and dir when missing) the store in dir, growing its map up to
 * max_bytes. Returns 0, ERR_IO, ERR_CORRUPT or ERR_NOSPACE. */
int kv_open(const char *dir, uint64_t max_bytes, struct kv **out);
/* Closes it; every transaction must have ended. NULL is allowed. */
void kv_close(struct kv *kv);

/* Removes a closed store's files and its directory. Returns 0 or ERR_IO. */
int kv_remove(const char *dir);

/* Begins a transaction (write: the only writer until it ends). Returns 0 or ERR_*. */
int kv_begin(struct kv *kv, bool write, struct kv_txn **out);
/* Commits a write transaction (ends it in every case). Returns 0, ERR_NOSPACE or ERR_IO:
 * then nothing of it is kept. A read transaction just ends. */
int kv_commit(struct kv_txn *t);
/* Ends a transaction, dropping its changes. NULL is allowed. */
void kv_abort(struct kv_txn *t);

/* Reads key of table. Returns 0 with *val set, ERR_NOTFOUND, ERR_INVALID (a name or key out
 * of bounds) or ERR_*. */
int kv_get(struct kv_txn *t, const char *table, struct slice key, struct slice *val);
/* Writes key of table (write transactions). Returns 0, ERR_INVALID, ERR_TOOBIG (value),
 * ERR_NOSPACE or ERR_IO. */
int kv_put(struct kv_txn *t, const char *table, struct slice key, struct slice val);
/* Deletes key (absent is not an error). Returns 0 or ERR_*. */
int kv_del(struct kv_txn *t, const char *table, struct slice key);
/* Deletes every key of table. Returns 0 or ERR_*. */
int kv_drop(struct kv_txn *t, const char *table);

/* Called per entry in key order; return 0 to go on, 1 to stop. */
typedef int kv_entry_fn(void *arg, struct slice key, struct slice val);
/* Calls fn for the keys of table that start with prefix and are greater than after (after.len
 * 0: from the first), in order, at most limit of them (0: no limit). Returns 0 or ERR_*. */
int kv_scan(struct kv_txn *t, const char *table, struct slice prefix, struct slice after,
            size_t limit, kv_entry_fn *fn, void *arg);

#endif
