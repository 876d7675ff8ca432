/* Consistent copies of a live store, for online backups (docs/design/backup.md, "Consistency").
 *
 * A backup of one database pins the store (no compaction switches its log generation
 * meanwhile), copies the index with its own read transaction (consistent at some indexed
 * position I), then takes the durable head P >= I with the end of its batch in the log, and
 * copies the log file's bytes [0, that end): bytes below the published end of a generation
 * never change, and the pin keeps the generation and its file. Opened elsewhere, the copies
 * are a store whose index reaches I and whose log holds exactly 1..P: recovery indexes the
 * rest, as after a crash.
 *
 * Threads: any thread, while the store is open; the copies block the calling thread. */
#ifndef STORE_SNAPSHOT_H
#define STORE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Where a snapshot of the log ends. */
struct store_snapshot_point {
    uint64_t position;             /* the newest durable position (0 = none) */
    uint8_t hash[HASH_SHA256_LEN]; /* its chain hash (zeros when none) */
    uint64_t log_end;              /* log offset just past its batch */
    uint64_t generation;           /* the log generation in force */
};

/* Called with the next n bytes of a copy. Returns 0 to go on, or a negative ERR_* that stops
 * the copy (and is returned by it). */
typedef int store_copy_fn(void *arg, const void *p, size_t n);

/* Pins st's log generation until store_unpin: compactions that would switch it wait (they
 * check their cancellation meanwhile). Waits first for a compaction already rewriting to
 * finish. Pins nest; each store_pin needs one store_unpin before the store closes. */
void store_pin(struct store *st);
void store_unpin(struct store *st);

/* Copies the LMDB environment as of one read transaction (mdb_env_copyfd2 through a pipe, on
 * a thread of its own), calling fn with its bytes in order; *out_bytes gets how many. The
 * index keeps the pages of that transaction meanwhile, and a failed index commit waits for
 * the copy to end before reopening the environment. Returns 0, fn's error or ERR_IO. */
int store_snapshot_index(struct store *st, store_copy_fn *fn, void *arg, uint64_t *out_bytes);

/* The durable head now, with the end of its batch and the log generation. Call with st
 * pinned, after store_snapshot_index: then position >= the copied index's. Returns 0,
 * ERR_CORRUPT or ERR_IO. */
int store_snapshot_point(struct store *st, struct store_snapshot_point *out);

/* Copies the log file of pt->generation, bytes [0, pt->log_end), calling fn (chunks of at most
 * 256 KiB). st must have stayed pinned since store_snapshot_point. Returns 0, fn's error or
 * ERR_IO. */
int store_snapshot_log(struct store *st, const struct store_snapshot_point *pt,
                       store_copy_fn *fn, void *arg);

/* The file name (no directory) of log generation gen: events.log, events.<gen>.log. */
void store_log_name(uint64_t gen, char *out, size_t n);

#endif
