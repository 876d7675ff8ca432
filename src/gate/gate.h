/* The request pipeline every API surface shares (docs/design/architecture.md): mounts of
 * route tables, each with a descriptor saying how its keys are presented, how its database
 * is found, how its errors look and how its rate limits are told. For each request the gate
 * sets the request id, checks Host and Origin (what a browser may do), answers CORS
 * preflights, splits the path, finds the mount and the route (404/405), checks the key and
 * its scope, the query parameters, the database, the rate limit and the idempotency gate,
 * then calls the route's handler with a struct gate_call. Errors it answers itself, and the
 * errors the HTTP layer answers once the path is known, use the mount's envelope.
 *
 * Threads: gate_handle and the handlers run on I/O threads; gate_fail may be called from any
 * thread for a deferred request. The gate and its mounts are set up before serving and not
 * changed after (only auth_required moves, atomically). */
#ifndef GATE_GATE_H
#define GATE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate/route.h"
#include "auth/keys.h"
#include "engine/engine.h"
#include "http/server.h"
#include "util/buf.h"

enum { GATE_MAX_SEGS = 10, GATE_MAX_MOUNTS = 8 };

/* What went wrong, neutral of any API's envelope. The kind is the status the native API
 * answers with; a mount maps kind and code to its own status and code. */
enum gate_kind {
    GK_INVALID = 400,
    GK_UNAUTHORIZED = 401,
    GK_FORBIDDEN = 403,
    GK_NOT_FOUND = 404,
    GK_METHOD = 405,
    GK_CONFLICT = 409,
    GK_GONE = 410,
    GK_TOO_LARGE = 413,
    GK_MEDIA_TYPE = 415,
    GK_UNPROCESSABLE = 422,
    GK_RATE_LIMITED = 429,
    GK_INTERNAL = 500,
    GK_UNAVAILABLE = 503,
    GK_STORAGE_FULL = 507,
};

struct gate_error {
    unsigned kind;         /* enum gate_kind (or another HTTP status the HTTP layer chose) */
    const char *code;      /* the native stable code ("stream_not_found"), static */
    const char *message;   /* human text */
    const char *field;     /* the offending input ("expectedVersion", "Host"), or NULL */
    const char *details;   /* more members of the native error object as JSON text without
                              braces ("\"offset\":3"), or NULL */
    /* what the engine reports with a conflict, each when present: */
    struct slice stream;   /* the stream concerned (ptr NULL: none) */
    bool has_actual_version;
    uint64_t actual_version;        /* the stream's version (native, 1-based count) */
    bool has_last_position;
    uint64_t last_position;         /* a condition's newest matching position (0: none) */
    const uint64_t *conflicts;      /* conflicting positions, ascending */
    size_t nconflicts;
    bool has_after;                 /* a DCB condition's `after` (null when absent) */
    bool after_given;
    uint64_t after;
};

/* Writes e as the mount's error body into out; returns the status to answer with (usually
 * e->kind). Pure: no I/O. */
typedef unsigned gate_error_fn(const struct gate_error *e, struct buf *out);

/* How a mount finds the database of a request. */
enum gate_db_from {
    GATE_DB_PATH,   /* the route's {db_param} path parameter names it (routes with ROUTE_DB) */
    GATE_DB_KEY,    /* the key's database; without keys (development mode) default_db */
};

/* Where a mount reads the API key from (any of). */
enum gate_key_from {
    GATE_KEY_BEARER = 1 << 0,     /* Authorization: Bearer <key> */
    GATE_KEY_HEADER = 1 << 1,     /* X-API-Key: <key> */
};

/* A mount's descriptor: static data, one per API surface. */
struct gate_mount {
    const char *name;              /* "native", "deltabase": names metrics and idempotency */
    const struct route *routes;    /* its route table */
    size_t nroutes;
    unsigned key_from;             /* enum gate_key_from bits */
    const char *key_param;         /* query parameter carrying the key on ROUTE_KEY_IN_QUERY
                                      routes ("api_key", "apiKey") */
    enum gate_db_from db_from;
    const char *db_param;          /* GATE_DB_PATH: the path parameter ("db") */
    const char *default_db;        /* GATE_DB_KEY without keys: this database */
    gate_error_fn *error;          /* its envelope */
    unsigned rate_window_s;        /* rate limits are told per this many seconds (1, 60) */
    uint32_t default_rate;         /* requests per window when nothing else sets one (0 =
                                      the server's --rate-limit) */
    const char *cors_allow_headers;  /* Access-Control-Allow-Headers of its preflights */
    const char *cors_expose_headers; /* Access-Control-Expose-Headers of its answers */
    uint8_t idem_namespace;        /* prefixes its idempotency keys (0 = none: native) */
};

/* The shared configuration and state of the pipeline. Owned by main. */
struct gate {
    struct engine *engine;         /* borrowed */
    struct keyring *keys;          /* borrowed */
    bool auth_required;            /* atomic: keys are checked (sticky) */
    const char *cors_origins;      /* --cors-origins, NULL = the default */
    const char *allowed_hosts;     /* --allowed-hosts, NULL = the default */
    struct ratelimiter *limiter;   /* borrowed; NULL = no rate limits at all */
    uint32_t rate_limit;           /* --rate-limit: requests per second (0 = none) */
    uint32_t rate_burst;           /* --rate-burst (0 = one second's worth) */
    struct {                       /* the mounts, in the order matched */
        const struct gate_mount *desc;
        char prefix[64];           /* "" (root) or "/deltabase" */
        void *ctx;                 /* passed to the handlers (struct api * for native) */
        bool unlisted;             /* not on the main listener (only a port of its own) */
        bool has_rate;             /* rate replaces desc->default_rate (gate_set_rate) */
        uint8_t *route_segs;       /* owned: segments of each route's pattern (a route is
                                      tried only for paths of as many segments) */
        uint32_t rate;
        int tag_base;              /* metrics tag of its first route */
    } mounts[GATE_MAX_MOUNTS];
    size_t nmounts;
};

/* One request on its way to a handler. Handlers read these fields; the gate owns them. */
struct gate_call {
    struct gate *gate;               /* borrowed */
    const struct gate_mount *mount;  /* the mount matched */
    void *ctx;                       /* the mount's context */
    struct http_req *req;            /* borrowed */
    const struct route *route;       /* the route matched, or NULL */
    const uint8_t *route_segs;       /* the mount's route_segs */
    char *seg[GATE_MAX_SEGS];        /* percent-decoded segments after the prefix, each
                                        NUL-terminated, in segbuf (or seg_heap) */
    size_t seg_len[GATE_MAX_SEGS];   /* their byte lengths */
    size_t nseg;
    char segbuf[256];                /* the segments of most paths: no allocation */
    char *seg_heap;                  /* owned: the segments of a longer path */
    struct db *db;                   /* acquired database, or NULL; a handler that hands it
                                        on sets this to NULL */
    bool authed;                     /* key holds the caller's verified key */
    struct api_key key;              /* valid when authed */
};

/* Adds a mount of desc under prefix ("" = the root; otherwise "/name", no trailing '/'; NULL =
 * not on the main listener, only on a gate_port of its own) with ctx for its handlers.
 * Prefixes are matched longest first. Returns 0 or ERR_TOOBIG. */
int gate_mount(struct gate *g, const struct gate_mount *desc, const char *prefix, void *ctx);

/* Replaces the default rate limit of mount desc (requests per its window; 0 = none). */
void gate_set_rate(struct gate *g, const struct gate_mount *desc, uint32_t rate);

/* The http_handler_fn: arg is a struct gate. */
void gate_handle(void *arg, struct http_req *req);

/* A listener of its own for one mount (--dialect-listen): the mount's routes at its root,
 * with the gate's keys, settings and rate limits. desc must be mounted in gate. */
struct gate_port {
    struct gate *gate;               /* borrowed */
    const struct gate_mount *mount;  /* borrowed */
};
/* The http_handler_fn of such a listener: arg is a struct gate_port. */
void gate_handle_port(void *arg, struct http_req *req);
/* Its http_error_body_fn (arg: struct gate_port). */
void gate_http_error_port(void *arg, struct slice path, unsigned status, const char *code,
                          const char *message, struct buf *out);

/* The http_error_fn of the HTTP layer (arg: struct gate): the error body of a request the
 * HTTP layer refuses itself, in the envelope of the mount its path falls under. */
void gate_http_error(void *arg, struct slice path, unsigned status, const char *code,
                     const char *message, struct buf *out);

/* The metrics label of tag (a route, "METHOD /prefix/pattern"), into out. False when tag is
 * no route. */
bool gate_route_label(const struct gate *g, int tag, char *out, size_t cap);
/* Total routes over every mount (the tags are 0..n-1). */
size_t gate_route_count(const struct gate *g);

/* The native envelope (a gate_error_fn): {"error":{"code","message","field"?, the conflict's
 * members (stream, actualVersion, lastPosition, conflictingPositions, after), details}}. */
unsigned gate_native_error(const struct gate_error *e, struct buf *out);

/* Answers the request of c with e in its mount's envelope. */
void gate_fail(const struct gate_call *c, const struct gate_error *e);
/* The same for a request whose call is gone (deferred answers): m's envelope (NULL: the
 * native one). */
void gate_fail_req(const struct gate_mount *m, struct http_req *req, const struct gate_error *e);
/* Answers an engine error (ERR_*) in c's envelope. */
void gate_fail_engine(const struct gate_call *c, int err);
/* The neutral error of an engine error code. */
void gate_engine_error(int err, struct gate_error *out);

/* The path parameter name of c's route ("stream" for "{stream}"), or a slice with ptr NULL. */
struct slice gate_param(const struct gate_call *c, const char *name);
/* The same as a NUL-terminated string owned by the call, or NULL. */
const char *gate_param_str(const struct gate_call *c, const char *name);

#endif
