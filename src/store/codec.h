/* On-disk encodings of the embedded store (docs/design/storage.md): big-endian integers, key
 * layouts, the event record (with CRC-32C and hash-chain link), stream and head records.
 * Pure functions over buffers: no I/O, no LMDB. */
#ifndef STORE_CODEC_H
#define STORE_CODEC_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/event.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/uuid.h"

enum {
    STORE_FORMAT_VERSION = 6,  /* bump on any change to a layout (here or in log.h) */
    STORE_FORMAT_OLDEST = 4,   /* oldest format opened (and upgraded): 4 lacks idempotency
                                  frames and tables, 5 log generations and format-5 records */
    RECORD_FORMAT = 5,         /* first byte of an event record (its layout's version) */
    RECORD_FORMAT_4 = 4,       /* the previous record format: read, never written */
    RECORD_REDACTED = 1,       /* flags bit: content removed, body digest kept */
    RECORD_FIELDS = 6,         /* variable-length fields of a record */
    RECORD_HEADER_BYTES = 112, /* fixed part of an event record */
    RECORD_BODY_AT = 88,       /* the lengths and fields: what the body digest covers */
    REDACTED_RECORD_BYTES = RECORD_BODY_AT + 32, /* header, then the body digest */
    RECORD_CRC_FROM = 8,       /* the CRC covers bytes [8, end) */
    RECORD_HASH_AT = 56,       /* offset of the 32-byte chain hash */
    STREAM_KEY_BYTES = 16,     /* stream index key: stream id, version */
    STREAM_REC_BYTES = 56,     /* stream table value */
    HEAD_REC_BYTES = 88,       /* head record in the meta table */
    HEAD_REC_BYTES_5 = 80,     /* ... as formats 4 and 5 wrote it (no generation) */
};

/* An idempotency record (an aux frame of a log batch, and the value of the idem table): what
 * a write that carried an idempotency key answered. Slices borrow. */
struct idem_rec {
    struct slice key;                /* the stored key, 1..LIMIT_IDEM_STORED_KEY_BYTES */
    uint8_t hash[HASH_SHA256_LEN];   /* of the request (method, path, query, body) */
    uint16_t status;                 /* HTTP status of the answer */
    int64_t created_us;              /* commit time of the write */
    struct slice answer;             /* the answer's body */
};

enum {
    AUX_IDEM = 1,            /* aux frame kind: an idempotency record */
    IDEM_HEADER_BYTES = 52,  /* fixed part of an encoded idempotency record */
};


/* The index head: kept in the index's meta table, rewritten by every index commit. */
struct head_rec {
    uint32_t format;                   /* STORE_FORMAT_VERSION of the files */
    uint64_t position;                 /* newest indexed position (0 = none) */
    uint8_t hash[HASH_SHA256_LEN];     /* chain hash of that event (zeros when none) */
    uint64_t log_end;                  /* log offset just past that event's frame */
    uint64_t stream_count;             /* streams indexed (highest stream id) */
    int64_t created_us;                /* when the database was created */
    uint64_t term_count;               /* query index terms (highest term id) */
    uint64_t generation;               /* log file generation (compactions done) */
};

static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static inline void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Stream index key = stream id || version, both big-endian: memcmp order is (stream, version). */
void codec_stream_key(uint8_t out[STREAM_KEY_BYTES], uint64_t stream_id, uint64_t version);

/* Bytes an encoded record of ev takes. */
size_t codec_record_size(const struct event_rec *ev);

/* Encodes ev into out (codec_record_size bytes), links it to prev_hash, computes its chain
 * hash (also written to ev->hash) and its CRC. */
void codec_record_encode(struct event_rec *ev, const uint8_t prev_hash[HASH_SHA256_LEN],
                         uint8_t *out);

/* Decodes p[0..n) into *out (slices borrow p). Checks the format byte, lengths and CRC.
 * Returns 0 or ERR_CORRUPT. */
int codec_record_decode(const uint8_t *p, size_t n, struct event_rec *out);
/* The same without the CRC check, for bytes this process wrote or already checked. */
int codec_record_parse(const uint8_t *p, size_t n, struct event_rec *out);

/* Recomputes the chain hash of the record p[0..n) given its predecessor's hash and compares it
 * with the stored one. Returns true when they match. */
bool codec_record_hash_ok(const uint8_t *p, size_t n, const uint8_t prev_hash[HASH_SHA256_LEN]);

/* SHA-256 of a record body (bytes [RECORD_BODY_AT, end)): lengths, then the fields. */
void codec_body_digest(const uint8_t *body, size_t n, uint8_t out[HASH_SHA256_LEN]);
/* The body digest a record of ev's content would have (its six fields): compares an event
 * with a redacted record without the stored content. */
void codec_content_digest(const struct event_rec *ev, uint8_t out[HASH_SHA256_LEN]);
/* True when record p[0..n) (already checked) may be redacted: current format, not redacted
 * yet, and longer than what would be left of it. */
bool codec_record_redactable(const uint8_t *p, size_t n);
/* Writes the redacted form of record p[0..n) (codec_record_redactable) to out: its header
 * with RECORD_REDACTED set and the body digest, CRC recomputed. Its chain hash is unchanged,
 * so the chain verifies through it (codec_record_hash_ok). */
void codec_record_redact(const uint8_t *p, size_t n, uint8_t out[REDACTED_RECORD_BYTES]);

/* Bytes the encoded idempotency record r takes. */
size_t codec_idem_size(const struct idem_rec *r);
/* Encodes r into out (codec_idem_size bytes). */
void codec_idem_encode(const struct idem_rec *r, uint8_t *out);
/* Decodes p[0..n) (slices borrow p). Returns 0 or ERR_CORRUPT (wrong kind or lengths). */
int codec_idem_decode(const uint8_t *p, size_t n, struct idem_rec *out);

void codec_stream_encode(const struct stream_rec *s, uint8_t out[STREAM_REC_BYTES]);
/* Returns 0 or ERR_CORRUPT when n is wrong. */
int codec_stream_decode(const uint8_t *p, size_t n, struct stream_rec *out);

/* Encodes h as its format lays it out (88 bytes; 80 before format 6). Returns the size. */
size_t codec_head_encode(const struct head_rec *h, uint8_t out[HEAD_REC_BYTES]);
/* Returns 0, or ERR_CORRUPT when n is wrong or the format is not between STORE_FORMAT_OLDEST
 * and STORE_FORMAT_VERSION. */
int codec_head_decode(const uint8_t *p, size_t n, struct head_rec *out);

#endif
