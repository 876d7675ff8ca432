/* HTTP/1.1 request parsing (RFC 9112): the request head and chunked bodies. Pure functions over
 * buffers: no I/O, no allocation; results point into the input. Strict where leniency enables
 * request smuggling: obs-fold, Content-Length together with Transfer-Encoding, conflicting
 * Content-Lengths and malformed chunk sizes are errors. */
#ifndef HTTP_PARSE_H
#define HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

enum {
    HTTP_MAX_HEADERS = 64,   /* header fields per request */
    HTTP_INCOMPLETE = 0,     /* parse result: more input needed */
};

/* Why a head was refused: the status to answer with. */
enum http_parse_error {
    HTTP_ERR_BAD = -400,        /* malformed */
    HTTP_ERR_HOST = -1400,      /* 400: no Host in HTTP/1.1, two Hosts, or a bad Host value */
    HTTP_ERR_TOO_LARGE = -431,  /* head over the limit, or too many fields */
    HTTP_ERR_TE = -501,         /* a transfer coding other than chunked */
    HTTP_ERR_VERSION = -505,    /* not HTTP/1.x */
};

struct http_header {
    struct slice name;   /* field name as sent */
    struct slice value;  /* value without surrounding whitespace */
};

struct http_head {
    struct slice method;                           /* token */
    struct slice target;                           /* request-target as sent */
    struct slice path;                             /* target's path, still percent-encoded:
                                                      origin-form up to '?', the path of an
                                                      absolute-form target ("/" when empty),
                                                      or the target as sent (asterisk- and
                                                      authority-form) */
    struct slice query;                            /* after '?', empty when none */
    struct slice authority;                        /* the host the request is for: an
                                                      absolute-form target's authority (RFC
                                                      9112 3.2.2: it overrides Host), else the
                                                      Host value; empty when neither */
    bool absolute_form;                            /* the target was "http[s]://authority..." */
    int minor;                                     /* HTTP/1.minor */
    struct http_header headers[HTTP_MAX_HEADERS];  /* fields */
    size_t nheaders;                               /* fields used */
    int64_t content_length;                        /* -1 when absent */
    bool chunked;                                  /* Transfer-Encoding: chunked */
    bool keep_alive;                               /* connection persists after the answer */
    bool expect_continue;                          /* Expect: 100-continue */
};

/* Parses one request head from buf[0..len). Returns the head's length in bytes (> 0),
 * HTTP_INCOMPLETE, or a negative enum http_parse_error. A head longer than max_bytes is
 * HTTP_ERR_TOO_LARGE even while incomplete. Leading empty lines are skipped (counted).
 * An absolute-form target (RFC 9112 3.2.2) is split into its authority, path and query; its
 * scheme must be http or https and its authority a valid host (else HTTP_ERR_HOST); a Host
 * field is then still required in HTTP/1.1 but its value is ignored. */
ssize_t http_parse_head(const char *buf, size_t len, size_t max_bytes, struct http_head *out);

/* Case-insensitive lookup of a field; NULL when absent. */
const struct http_header *http_head_find(const struct http_head *h, const char *name);

/* Iterates the parameters of a query (the text after '?', as sent): start with *pos = 0; each
 * call sets *name and *value to the next parameter's name (up to the first '=') and value
 * (after it; empty for a parameter without '='), both as sent (not decoded) and pointing into
 * query, and returns true, or returns false at the end. Empty pairs ("a=1&&b=2") are skipped.
 * Pure. */
bool http_query_next(struct slice query, size_t *pos, struct slice *name, struct slice *value);

/* Incremental chunked-body decoder state; zero it to start. */
struct http_chunked {
    int state;           /* internal */
    uint64_t remaining;  /* bytes left in the current chunk */
    size_t line;         /* bytes of the current size/trailer line seen */
    bool done;           /* the last chunk and trailers were read */
};

/* Decodes chunked data from in[0..len), appending payload to body. Returns bytes consumed
 * (stops after the end of the body: *done), or HTTP_ERR_BAD, or HTTP_ERR_TOO_LARGE when body
 * would exceed max_body. */
ssize_t http_chunked_decode(struct http_chunked *c, const char *in, size_t len, struct buf *body,
                            size_t max_body);

#endif
