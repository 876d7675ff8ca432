/* Parsing of native API request bodies and query values into engine requests. Pure: bytes in,
 * structures out (jansson for validation, json/jsonx for exact value spans). */
#ifndef OPS_PARSE_H
#define OPS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "util/buf.h"
#include "util/limits.h"

/* Why a request was refused: the HTTP status, a stable code, a message and the field. */
struct parse_error {
    unsigned status;      /* 400, 413, 415 */
    const char *code;     /* stable machine-readable code, static */
    char message[192];    /* human text */
    char field[96];       /* offending field path, "" when none */
    long offset;          /* byte offset for invalid_json, -1 otherwise */
};

/* A parsed append body. Owns its storage: free with parse_append_fini. */
struct parsed_append {
    struct append_event *events; /* count entries; slices point into text */
    size_t count;                /* events */
    struct expect expect;        /* expectedVersion */
    struct buf text;             /* minified data, metadata and tags of every event */
    char *stream;                /* parts of a multi-stream append: the stream (owned) */
    size_t stream_len;
};


/* A parsed multi-stream (or stream-less) append body. Owns its parts; the condition spans
 * point into the body (validated JSON) and are parsed separately (api/qparse.h). */
struct parsed_multi {
    struct parsed_append *parts; /* nparts, each with its stream */
    size_t nparts;
    struct slice condition;      /* "condition" value span, ptr NULL when absent */
    struct slice conditions;     /* "conditions" value span, ptr NULL when absent */
};

/* Parses {"events":[...], "expectedVersion"?} for stream; flags (APPEND_*) go to the engine's
 * event parser (engine/canon.h), which makes every event canonical. Returns 0, or ERR_INVALID /
 * ERR_TOOBIG with *err filled (nothing to free then). */
int parse_append(struct slice body, struct slice stream, const struct limits *lim,
                 unsigned flags, struct parsed_append *out, struct parse_error *err);
void parse_append_fini(struct parsed_append *p);
/* Parses {"appends":[{"stream","events","expectedVersion"?}, ...] | "events":[...],
 * "condition"?, "conditions"?} (the conditions are only located here). Returns 0, or
 * ERR_INVALID / ERR_TOOBIG with *err filled (nothing to free then). */
int parse_multi_append(struct slice body, const struct limits *lim, unsigned flags,
                       struct parsed_multi *out, struct parse_error *err);
void parse_multi_fini(struct parsed_multi *pm);

/* Parses a JSON body that must be an object, returning the jansson value through out (a
 * json_t *, to be json_decref'd). Returns 0 or ERR_INVALID with *err filled. */
int parse_json_object(struct slice body, void **out, struct parse_error *err);

/* Parses a stream settings body {"maxAge"?, "maxCount"?, "truncateBefore"?} (each a whole
 * number from 1, or null). Returns 0 or ERR_INVALID with *err filled. */
int parse_stream_meta(struct slice body, struct stream_meta *out, struct parse_error *err);
/* Reads the optional "description" and "settings" {"retentionPeriodDays",
 * "maxStreamSizeBytes", "rateLimit", "idempotencyTtlSeconds"} of a database body (a json_t *
 * object). A creation (patch false) starts from no settings and allows "name" too; a change
 * (patch true, PATCH /v1/databases/{db}) starts from *out and changes only the members given
 * (null clears one). Other members are refused. Returns 0 or ERR_INVALID with *err filled. */
int parse_db_settings(const void *root, bool patch, struct db_settings *out,
                      struct parse_error *err);
/* Fills *err (status, code, field or NULL, printf-style message) and returns ERR_TOOBIG for
 * 413, else ERR_INVALID. */
int parse_fail(struct parse_error *err, unsigned status, const char *code, const char *field,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Parses a decimal unsigned integer (no sign, no spaces, at most UINT64_MAX). */
int parse_u64(const char *s, uint64_t *out);


#endif
