/* The backup stream format (docs/design/backup.md): what GET /v1/backup answers and
 * `annals backup` reads. A stream is a sequence of frames, each an 8-byte header (type, three
 * zero bytes, payload length as u32 big-endian) followed by its payload:
 *
 *   stream = HEADER item* MANIFEST KEEPALIVE* END       a complete backup
 *          | HEADER ... ERROR                           a failed one (ERROR may come anywhere)
 *   item   = file | DB_BEGIN file* DB_END | KEEPALIVE
 *   file   = FILE (DATA | KEEPALIVE)* FILE_END
 *
 * A file outside a database has a one-segment path (keys.json); a file of database X is
 * dbs/X/<name>. FILE_END carries the file's size and SHA-256; END the number of files and
 * their total bytes. A stream without its END frame is a failed backup, whatever it held.
 *
 * Three parts, none doing I/O: backup_frame_decode (pure: one frame from bytes), struct
 * backup_reader (checks the order of frames, each file's size and digest and the totals) and
 * struct backup_writer (makes the frames and hands each whole frame to a sink). */
#ifndef BACKUP_FRAME_H
#define BACKUP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/limits.h"

#define BACKUP_MAGIC "ANNALSBK" /* the first 8 bytes of the HEADER payload */

enum {
    BACKUP_FORMAT_VERSION = 1,     /* of this format, in the HEADER frame */
    BACKUP_FRAME_HEADER = 8,       /* type, 3 reserved zero bytes, payload length (u32 BE) */
    BACKUP_MAGIC_LEN = 8,
    BACKUP_HEADER_PAYLOAD = 12,    /* magic, format version (u32 BE) */
    BACKUP_FILE_END_PAYLOAD = 40,  /* size (u64 BE), SHA-256 of the file's bytes */
    BACKUP_END_PAYLOAD = 16,       /* files (u64 BE), their total bytes (u64 BE) */
    BACKUP_MODE_BYTES = 4,         /* FILE: permission bits (u32 BE), then the path */
    BACKUP_WRITE_CHUNK = 64 * 1024, /* data bytes per DATA frame the writer makes */
    BACKUP_INCOMPLETE = 0,         /* backup_frame_decode: more bytes needed */
};

enum backup_frame_type {
    BACKUP_HEADER = 1,    /* magic and format version: the first frame */
    BACKUP_FILE = 2,      /* a file begins: mode, relative path */
    BACKUP_DATA = 3,      /* the next bytes of the open file (1..LIMIT_BACKUP_CHUNK_BYTES) */
    BACKUP_FILE_END = 4,  /* the open file ends: its size and SHA-256 */
    BACKUP_DB_BEGIN = 5,  /* a database's files follow: its name */
    BACKUP_DB_END = 6,    /* they ended: the database's summary (JSON object) */
    BACKUP_MANIFEST = 7,  /* what the backup holds (JSON object, BACKUP.json) */
    BACKUP_ERROR = 8,     /* the server failed: {"code", "message"}; the stream ends */
    BACKUP_KEEPALIVE = 9, /* nothing (keeps an idle connection from timing out) */
    BACKUP_END = 10,      /* the backup is complete: files and total bytes */
};

/* One decoded frame. Slices and sha256 borrow the bytes given to backup_frame_decode. */
struct backup_frame {
    uint8_t type;            /* enum backup_frame_type */
    struct slice payload;    /* the whole payload */
    uint32_t mode;           /* FILE: permission bits (<= 0777) */
    struct slice path;       /* FILE: relative path (backup_path_ok) */
    uint64_t size;           /* FILE_END: the file's bytes; END: all files' bytes */
    uint64_t count;          /* HEADER: format version; END: files */
    const uint8_t *sha256;   /* FILE_END: HASH_SHA256_LEN bytes */
};

/* Decodes the frame at the start of buf[0..len). Returns its size (header and payload, > 0),
 * BACKUP_INCOMPLETE when buf holds only part of it, or ERR_PROTOCOL: an unknown type, nonzero
 * reserved bytes, a payload too long or short for its type (limits in util/limits.h), a
 * HEADER without the magic, a FILE with a bad mode or path, a DB_BEGIN with a bad name. Pure:
 * no allocation; *out's slices point into buf. */
ssize_t backup_frame_decode(const uint8_t *buf, size_t len, struct backup_frame *out);

/* Appends one frame (header, then payload[0..n)) to out. n must respect the type's limit. */
void backup_frame_encode(struct buf *out, enum backup_frame_type type, const void *payload,
                         size_t n);

/* True for a relative path of 1..LIMIT_BACKUP_PATH_BYTES bytes made of '/'-separated
 * segments of [A-Za-z0-9._-], none empty or starting with '.'. */
bool backup_path_ok(const char *p, size_t n);
/* True for a database name: [a-z0-9][a-z0-9-]{0,62} (the engine's rule). */
bool backup_db_name_ok(const char *p, size_t n);

/* Checks a decoded stream frame by frame. Single owner; no I/O. */
struct backup_reader {
    int state;                     /* where in the grammar (frame.c) */
    char db[LIMIT_DB_NAME_BYTES + 1]; /* the open database, "" outside one */
    struct hash_sha256_ctx sha;    /* of the open file */
    uint64_t file_bytes;           /* bytes of the open file so far */
    uint64_t files;                /* files ended so far */
    uint64_t bytes;                /* their total bytes */
};

void backup_reader_init(struct backup_reader *r);
void backup_reader_fini(struct backup_reader *r);
/* Takes the next frame f. Returns 0, ERR_PROTOCOL (out of order, a file outside its
 * database's directory, anything after END or ERROR) or ERR_CORRUPT (a file whose size or
 * SHA-256 is not what its FILE_END says, or an END whose totals are not what came). After
 * an error the reader refuses everything. */
int backup_reader_next(struct backup_reader *r, const struct backup_frame *f);
/* True once the END frame was taken: the backup is complete. */
bool backup_reader_done(const struct backup_reader *r);

/* Takes one whole frame (frame[0..n)). Returns 0, or a negative ERR_* that stops the writer. */
typedef int backup_sink_fn(void *arg, const uint8_t *frame, size_t n);

/* Makes a stream's frames in order and hands each to a sink. Single owner; no I/O itself. */
struct backup_writer {
    backup_sink_fn *sink;          /* borrowed */
    void *arg;                     /* sink's argument */
    struct buf frame;              /* the frame being made */
    struct hash_sha256_ctx sha;    /* of the open file */
    bool in_file;                  /* a FILE frame was sent and its FILE_END not yet */
    uint64_t file_bytes;           /* bytes of the open (or last ended) file */
    uint8_t file_sha[HASH_SHA256_LEN]; /* SHA-256 of the last file ended */
    uint64_t files;                /* files ended */
    uint64_t bytes;                /* their total bytes */
};

void backup_writer_init(struct backup_writer *w, backup_sink_fn *sink, void *arg);
void backup_writer_fini(struct backup_writer *w);
/* Each sends its frame(s) and returns 0 or the sink's error. */
int backup_writer_header(struct backup_writer *w);
/* Begins a file (path: backup_path_ok; mode: permission bits). */
int backup_writer_file(struct backup_writer *w, const char *path, uint32_t mode);
/* Adds bytes to the open file, in DATA frames of at most BACKUP_WRITE_CHUNK bytes. */
int backup_writer_data(struct backup_writer *w, const void *p, size_t n);
/* Ends the open file; file_bytes and file_sha then describe it. */
int backup_writer_file_end(struct backup_writer *w);
/* A frame whose payload is text: DB_BEGIN (a name), DB_END, MANIFEST, ERROR (JSON). */
int backup_writer_text(struct backup_writer *w, enum backup_frame_type type, const char *text,
                       size_t n);
int backup_writer_end(struct backup_writer *w);

#endif
