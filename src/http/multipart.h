/* multipart/form-data bodies (RFC 7578 over RFC 2046's multipart syntax): the boundary of a
 * Content-Type value, and a body split into its parts, each with its form field name, its
 * filename and Content-Type when given, and its bytes. Pure: no I/O, no allocation; every
 * slice points into the input, and the names (which may need unescaping) are copied into the
 * part. Strict: lines end with CRLF, the final delimiter must be there, a part must say
 * `Content-Disposition: form-data; name=...`, and every size a client controls is capped
 * (struct multipart_limits). Any thread.
 *
 * Used by the dialects that take uploads (EvidentSource's state views and changes, Hapnd's
 * archives); the caller has the whole body in memory already (the HTTP layer's body limit). */
#ifndef HTTP_MULTIPART_H
#define HTTP_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

enum {
    MULTIPART_BOUNDARY_BYTES = 70,        /* a boundary: 1 to 70 characters (RFC 2046) */
    MULTIPART_NAME_BYTES = 128,           /* a part's form field name */
    MULTIPART_FILENAME_BYTES = 255,       /* a part's filename */
    MULTIPART_DEFAULT_PARTS = 16,         /* parts per body, by default */
    MULTIPART_DEFAULT_HEADER_BYTES = 4096, /* one part's header block, by default */
    MULTIPART_DEFAULT_BODY_BYTES = 16 * 1024 * 1024, /* the whole body, by default */
};

/* What one parse may take; a zero member takes its default. */
struct multipart_limits {
    size_t max_parts;        /* MULTIPART_DEFAULT_PARTS */
    size_t max_header_bytes; /* MULTIPART_DEFAULT_HEADER_BYTES: a part's header lines with
                                their CRLFs, the blank line not counted */
    size_t max_body_bytes;   /* MULTIPART_DEFAULT_BODY_BYTES */
};

struct multipart_part {
    char name[MULTIPART_NAME_BYTES + 1];         /* the form field name, unescaped */
    bool has_filename;
    char filename[MULTIPART_FILENAME_BYTES + 1]; /* with has_filename: unescaped (may be "") */
    struct slice content_type; /* the part's Content-Type value, trimmed (ptr NULL: none) */
    struct slice body;         /* its bytes, borrowed from the input */
};

/* Why a body was refused. */
struct multipart_error {
    char message[128];
};

/* Reads the boundary parameter of a Content-Type value that must be multipart/form-data
 * (case-insensitive; the boundary as a token or a quoted string) into out. Returns 0, or
 * ERR_INVALID with *err (not multipart/form-data, no boundary, or one that is empty, longer
 * than MULTIPART_BOUNDARY_BYTES or has characters RFC 2046 does not allow). content_type may
 * be NULL (ERR_INVALID). */
int multipart_boundary(const char *content_type, char out[MULTIPART_BOUNDARY_BYTES + 1],
                       struct multipart_error *err);

/* Splits body into its parts (at most cap, and at most lim->max_parts) in order; *count gets
 * how many. A preamble before the first delimiter and an epilogue after the last are skipped.
 * lim may be NULL (the defaults). Returns 0; ERR_TOOBIG with *err (the body, a part's
 * headers, or the number of parts is over its limit); ERR_INVALID with *err (no delimiter,
 * a part cut short or without the final delimiter, a header line that is malformed, a part
 * without Content-Disposition form-data and a name, a name or filename too long). On failure
 * *count and parts are unspecified. */
int multipart_parse(struct slice body, const char *boundary, const struct multipart_limits *lim,
                    struct multipart_part *parts, size_t cap, size_t *count,
                    struct multipart_error *err);

/* The first part called name, or NULL. */
const struct multipart_part *multipart_find(const struct multipart_part *parts, size_t count,
                                            const char *name);

#endif
