/* The data model every layer shares: an event as it is stored and read, and the state of a
 * stream. The store encodes and decodes them (store/codec.h), the engine hands them to
 * readers, filters (query/filter.h) judge them and API surfaces render them, so none of those
 * layers needs a storage header. */
#ifndef MODEL_EVENT_H
#define MODEL_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/uuid.h"

/* An event. Read back, its slices borrow from the stored record (valid during the callback that
 * hands it out); when appending they borrow from the caller. */
struct event_rec {
    uint64_t position;               /* global, 1-based, gap-free per database */
    uint64_t version;                /* 1-based within the stream */
    int64_t time_us;                 /* effective time */
    int64_t recorded_us;             /* commit time */
    uint8_t id[UUID_LEN];            /* event id */
    uint8_t hash[HASH_SHA256_LEN];   /* chain hash (output of encode, read by decode) */
    struct slice stream;             /* stream name */
    struct slice type;               /* event type */
    struct slice data;               /* minified JSON value */
    struct slice metadata;           /* minified JSON object */
    struct slice tags;               /* JSON array of strings, canonical (query/filter.h) */
    struct slice subject;            /* subject, empty when none */
    bool client_id;                  /* not stored: the id came from the client (appends) */
    bool redacted;                   /* decoded from a redacted record: the six fields are
                                        empty, digest holds their body digest */
    uint8_t digest[HASH_SHA256_LEN]; /* body digest of a redacted record */
};

/* A stream's state (the stream table row of the store). */
struct stream_rec {
    uint64_t id;          /* dense id, used in index keys */
    uint64_t version;     /* current version (events appended) */
    uint64_t first_pos;   /* position of version 1 */
    uint64_t last_pos;    /* position of the newest event */
    int64_t created_us;   /* recorded time of version 1 */
    int64_t updated_us;   /* recorded time of the newest event */
    uint64_t bytes;       /* stored record bytes of all its events */
};

#endif
