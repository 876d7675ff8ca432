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
#include "gate/ratelimit.h"
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
    bool has_expected_version;      /* the version the request expected, when it named one */
    uint64_t expected_version;
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
    unsigned rate_window_s;        /* rate limits are told per this many seconds (1, 60); a
                                      window over 1 s holds a whole window's requests (the
                                      bucket's burst), a 1 s one holds --rate-burst */
    uint32_t default_rate;         /* requests per window when nothing else sets one (0 =
                                      the server's --rate-limit) */
    uint32_t ip_rate;              /* requests per window from one address (peer IP) over
                                      every key and database of this mount, checked besides
                                      the client's bucket; its bucket holds a whole window's
                                      requests (gate_set_ip_rate replaces it; 0 = no such
                                      limit) */
    const char *rate_scope;        /* when set, each answer that carries X-RateLimit-* also
                                      carries X-RateLimit-Scope: this ("api-key") when the
                                      headers tell the bucket of the caller's key, "ip" when
                                      they tell the address's (ip_rate, or no key); NULL = no
                                      such header; at most 23 bytes */
    bool rate_no_reset;            /* leave out X-RateLimit-Reset (a surface that documents
                                      only Limit and Remaining); 429s keep Retry-After */
    const char *cors_allow_headers;  /* Access-Control-Allow-Headers of its preflights */
    const char *cors_allow_methods;  /* ... and -Allow-Methods (NULL: GET, POST, PUT, PATCH,
                                        DELETE, OPTIONS) */
    const char *cors_expose_headers; /* Access-Control-Expose-Headers of its answers */
    const char *rate_group;        /* mounts with the same rate_group share each address's
                                      bucket (ip_rate); NULL: the name */
    bool cors_any_origin;          /* pages of any origin may use it, answered with
                                      Access-Control-Allow-Origin: * (once keys are on: its
                                      keys travel only in headers; without keys the server's
                                      origin policy applies) */
    uint8_t idem_namespace;        /* prefixes its idempotency keys (0 = none: native) */
    size_t max_body_bytes;         /* its requests' bodies may be this large when the server's
                                      limit is lower (a dialect's documented upload size);
                                      0 = the server's limit */
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
        bool has_ip_rate;          /* ip_rate replaces desc->ip_rate (gate_set_ip_rate) */
        uint8_t *route_segs;       /* owned: segments of each route's pattern (a route is
                                      tried only for paths of as many segments) */
        uint32_t rate;
        uint32_t ip_rate;
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
/* Replaces the per-address rate limit of mount desc (desc->ip_rate: requests per its window;
 * 0 = none). Before serving, as gate_set_rate. */
void gate_set_ip_rate(struct gate *g, const struct gate_mount *desc, uint32_t rate);

/* Tells the gate key k was made: the first key turns authentication on for good (logged). */
void gate_keys_made(struct gate *g, const struct api_key *k);

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

/* The http_body_limit_fn of the main listener (arg: struct gate): the max_body_bytes of the
 * mount path falls under (0: none). */
size_t gate_body_limit(void *arg, struct slice path);
/* ... and of a mount's own port (arg: struct gate_port). */
size_t gate_body_limit_port(void *arg, struct slice path);

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

/* ---- the pipeline's pure steps ----
 *
 * gate_handle runs these on each request; they do no I/O and read no request object, so they
 * are unit-tested alone (tests/unit/gate_test.c). */

/* The index in g->mounts of the mount whose prefix starts path at a segment boundary ("/x"
 * takes "/x" and "/x/...", not "/xy"; the root mount "" takes every path), the longest prefix
 * first, with *rest the path after the prefix ("/" when nothing follows). Mounts not on the
 * main listener (gate_mount with prefix NULL) are never found. -1 when no mount matches. */
int gate_find_mount(const struct gate *g, struct slice path, struct slice *rest);

/* Splits rest (the path after c's mount prefix, still percent-encoded) into c's decoded
 * segments and finds the route of c->mount for method among those of as many segments (a
 * "{name}" segment of the pattern matches any one segment; HEAD is answered by a GET route);
 * sets c->route (NULL when none). c must be zeroed but for gate, mount and route_segs; a path
 * longer than c->segbuf decodes into c->seg_heap, which the caller frees. Returns 0 (a route),
 * ERR_INVALID (a bad percent-escape, an encoded NUL, an empty segment, or a dot segment sent
 * as such or encoded), or ERR_NOTFOUND (no route; *path_known tells whether a route of
 * another method has this path: a 405). */
int gate_match(struct gate_call *c, const char *method, struct slice rest, bool *path_known);

/* The methods of the routes of c's mount that have c's path (after gate_match), joined with
 * ", ", into out (cap > 0 bytes; methods that do not fit are left out): a 405's Allow. */
void gate_allowed_methods(const struct gate_call *c, char *out, size_t cap);

/* Checks query (the text after '?', as sent) against route r's declared parameters: each
 * parameter must be declared (by its name as sent; on a ROUTE_OPEN_QUERY route any other name
 * is the handler's), and one that is not a PARAM_LIST must not be given twice. Returns 0, or
 * ERR_INVALID with *bad the first offending parameter's name (pointing into query) and *twice
 * true when it is allowed but repeated. */
int gate_check_query(const struct route *r, struct slice query, struct slice *bad, bool *twice);

/* Where a request may present an API key, as sent (each NULL when absent; borrowed). */
struct gate_credentials {
    const char *query;          /* the mount's key_param query parameter, decoded */
    const char *authorization;  /* the Authorization header */
    const char *api_key;        /* the X-API-Key header */
};

/* The API key a request presenting cred offers to mount m on route r, in *out (borrowed from
 * cred; NULL when none): the query parameter counts only on ROUTE_KEY_IN_QUERY routes of a
 * mount with a key_param, Authorization only as "Bearer <key>" on a mount with
 * GATE_KEY_BEARER, X-API-Key only on one with GATE_KEY_HEADER. Returns 0, or ERR_INVALID when
 * two of them present different keys. */
int gate_presented_key(const struct gate_mount *m, const struct route *r,
                       const struct gate_credentials *cred, const char **out);

/* Why verified key may not make a request on route r about database db (ptr NULL: its path
 * names none): GK_NOT_FOUND when the key is bound to another database (no existence leak),
 * GK_FORBIDDEN when its scope is below r->need or r is ROUTE_ALL_DBS and the key is bound to
 * one database; 0 when it may. */
unsigned gate_key_refusal(const struct api_key *key, const struct route *r, struct slice db);

/* The name of the database c's request is about (for a ROUTE_DB route, after gate_match): its
 * mount's db_param path segment on a GATE_DB_PATH mount whose route has one, else the key's
 * database when c->authed with a key bound to one, else the mount's default_db; ptr NULL when
 * none (the request needs a key bound to a database). Not checked for validity. */
struct slice gate_db_name(const struct gate_call *c);

/* True when route r takes an Idempotency-Key (or X-Idempotency-Key): a write that keeps its
 * answers (ROUTE_IDEMPOTENT), a read sent as POST (ROUTE_READ_BODY: ignored there) or a GET.
 * On any other route the gate refuses one rather than run without the promised protection. */
bool gate_takes_idempotency_key(const struct route *r);

/* The rate limits of one request, per second, and the sizes of their token buckets. */
struct gate_rates {
    double rate;        /* the client's bucket (its key, or its address without one, and its
                           database): requests per second; 0 = none */
    double burst;       /* its capacity */
    double ip_rate;     /* the address's bucket on the mount (ip_rate): per second; 0 = none */
    double ip_burst;    /* its capacity: a whole window's requests */
};

/* The rate limits of a request on mount k of g made with key (NULL: no verified key) on a
 * database whose rateLimit setting is db_rate (requests per second; 0 = none or no database).
 * The client's rate is the key's own rate_limit (per second), else db_rate, else the mount's
 * (gate_set_rate, else desc->default_rate; per its window), else the server's --rate-limit
 * (per second). Its burst is a whole window's requests when the window is over 1 s, else
 * --rate-burst (0: one second's worth). ip_rate is gate_set_ip_rate's, else desc->ip_rate,
 * per the window. Pure. */
void gate_rate_plan(const struct gate *g, int k, const struct api_key *key, uint32_t db_rate,
                    struct gate_rates *out);

/* What one bucket told a request (gate_rate_answer's input). */
struct gate_bucket {
    const struct rl_result *rr;   /* borrowed: its rl_take answer; NULL = not consulted */
    double rate;                  /* its rate, per second */
};

enum { GATE_RATE_HEADERS_MAX = 5, GATE_RATE_VALUE_BYTES = 24 };

/* The verdict of a request's rate limits and the headers that tell it. */
struct gate_rate_answer {
    bool limited;                 /* answer 429 rate_limited */
    bool by_ip;                   /* the headers tell the address's bucket */
    size_t count;                 /* headers[0..count) */
    struct {
        const char *name;         /* static */
        char value[GATE_RATE_VALUE_BYTES];
    } headers[GATE_RATE_HEADERS_MAX];
};

/* The rate-limit answer of a request on mount m whose client bucket (client->rr NULL: none,
 * or not reached) and address bucket (ip->rr NULL: none) answered as given; keyed tells
 * whether the client is a verified key. The headers tell one bucket: the one that refused the
 * request, else the one with fewer whole requests left (the client's on a tie), else the only
 * one. They are X-RateLimit-Limit (requests per window: the rate times a window over 1 s,
 * rounded; else rl_result.limit), X-RateLimit-Remaining, X-RateLimit-Reset (unless
 * m->rate_no_reset), X-RateLimit-Scope (when m->rate_scope: "ip" for the address's bucket or a
 * client without a key, else m->rate_scope) and, when limited, Retry-After; in that order, so
 * a mount whose new fields are zero answers as before. Pure. */
void gate_rate_answer(const struct gate_mount *m, bool keyed, const struct gate_bucket *client,
                      const struct gate_bucket *ip, struct gate_rate_answer *out);

/* Takes one request's tokens at now_ns from limiter rl as r plans: from the address's bucket
 * ip_who when r->ip_rate > 0, then, unless that refused, from the client's bucket who when
 * r->rate > 0 and the client has a key or there is no address limit (its name says whose: a
 * key or an address, and the database; a client without a key on a mount with an address
 * limit counts in the address's bucket alone), giving the
 * address's token back when the client's bucket refuses (a refused request counts in
 * neither); then gate_rate_answer into *out. Touches nothing but rl; thread-safe as rl is. */
void gate_rate_check(struct ratelimiter *rl, const struct gate_mount *m, bool keyed,
                     const struct gate_rates *r, struct slice who, struct slice ip_who,
                     uint64_t now_ns, struct gate_rate_answer *out);

/* The path parameter name of c's route ("stream" for "{stream}"), or a slice with ptr NULL. */
struct slice gate_param(const struct gate_call *c, const char *name);
/* The same as a NUL-terminated string owned by the call, or NULL. */
const char *gate_param_str(const struct gate_call *c, const char *name);

#endif
