/* The event log file: an append-only sequence of batches, each a 16-byte header (magic, frames
 * length, CRC-32C of the frames, event count) followed by frames (u32 big-endian length, then
 * one event record, see codec.h); then zeros. A batch is one group commit: whole or absent. Bytes are written with pwrite and read back
 * through one read-only shared mapping. The file is grown in zero-filled steps ahead of the
 * writes, so a data sync does not also have to commit a file-size change.
 *
 * Threads: log_write/log_sync/log_set_end belong to the database's writer; log_at may be
 * called from any thread for bytes below an offset the writer has published. */
#ifndef STORE_LOG_H
#define STORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#define LOG_BATCH_MAGIC 0xA11A1504u /* not a plausible length: tells batches from garbage */

enum {
    LOG_FRAME_HEADER = 4,              /* u32 length before each record */
    LOG_BATCH_HEADER = 16,             /* magic, frames length, frames CRC, count */
    LOG_GROW_BYTES = 16 * 1024 * 1024, /* zero-filled growth step */
};

struct log;

/* Opens or creates the log at path, mapping up to map_bytes. Returns 0, ERR_IO or ERR_NOMEM. */
int log_open(const char *path, uint64_t map_bytes, struct log **out);
void log_close(struct log *lg);

/* Offset just past the last frame written (the logical end). */
uint64_t log_end(const struct log *lg);
/* Sets the logical end (after recovery, or to drop a failed write). */
void log_set_end(struct log *lg, uint64_t end);
/* Bytes of the file (allocated, including zeros). */
uint64_t log_file_bytes(const struct log *lg);

/* Writes p[0..n) at the logical end and advances it; *out_offset gets where it went. Not yet
 * durable. Returns 0, ERR_NOSPACE (map or disk full) or ERR_IO. On error the end is unchanged. */
int log_write(struct log *lg, const void *p, size_t n, uint64_t *out_offset);
/* Makes everything written so far durable (fdatasync). Returns 0 or ERR_IO. */
int log_sync(struct log *lg);
/* Overwrites [from, from + n) with zeros, within the file (used to wipe a torn tail). */
int log_zero(struct log *lg, uint64_t from, uint64_t n);

/* Pointer to the mapped bytes at offset off; NULL when off + n lies beyond the file. */
const uint8_t *log_at(const struct log *lg, uint64_t off, size_t n);

#endif
