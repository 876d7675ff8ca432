/* Route tables: what an API surface answers, as data. A route is a method, a path pattern with
 * named parameters, a handler, flags and a scope, plus what its OpenAPI operation says: the
 * query parameters it accepts (every other one is refused), its body and answer schemas.
 * The router (native.c), the OpenAPI document (openapi.c) and the metrics labels all read the
 * same table, so none of them can disagree with what the server does. */
#ifndef GATE_ROUTE_H
#define GATE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct gate_call;
typedef void route_fn(struct gate_call *c);

/* What a route asks of the caller's key (each level includes the ones before it). */
enum need { NEED_NONE, NEED_ANY, NEED_READ, NEED_WRITE, NEED_ADMIN };

enum route_flag {
    ROUTE_DB = 1 << 0,           /* the {db} segment names a database, acquired first */
    ROUTE_ALL_DBS = 1 << 1,      /* the key must be for all databases */
    ROUTE_KEY_IN_QUERY = 1 << 2, /* the key may come as ?api_key= (EventSource sends no
                                    headers) */
    ROUTE_IDEMPOTENT = 1 << 3,   /* a database write: keeps Idempotency-Key answers */
    ROUTE_STREAMING = 1 << 4,    /* answers with Server-Sent Events or a WebSocket */
    ROUTE_READ_BODY = 1 << 5,    /* a read sent as POST (its body is the question): changes
                                    nothing, so an Idempotency-Key is ignored as on GET */
    ROUTE_BODY_OPTIONAL = 1 << 6, /* the request body may be left out (and then needs no
                                     Content-Type) */
    ROUTE_DUPLICATE_200 = 1 << 7, /* an append: a re-sent one, acknowledged as a duplicate
                                     without writing, answers 200 with the same schema */
    ROUTE_REPLACE_200 = 1 << 9,  /* a PUT that creates (its status) or replaces: 200 then,
                                    with the same schema */
    ROUTE_PENDING_202 = 1 << 10, /* may answer 202 Pending (not caught up yet) instead */
    ROUTE_OPEN_QUERY = 1 << 8,   /* query parameters the route does not declare are the
                                    handler's (a view's parameters), each at most once */
};

/* How a query parameter reads (for the OpenAPI document; handlers validate values). */
enum param_kind {
    PARAM_STRING,   /* any text */
    PARAM_INTEGER,  /* an unsigned decimal integer */
    PARAM_POSITIVE, /* an integer from 1 (positions, versions) */
    PARAM_LIMIT,    /* a page size: an integer from 1 to LIMIT_READ_MAX */
    PARAM_BOOLEAN,  /* true or false */
    PARAM_TIME,     /* an RFC 3339 date-time */
    PARAM_LIST,     /* comma-separated values (`\,` is a comma in a value, `\\` a backslash);
                       may be repeated, adding values */
    PARAM_ENUM,     /* one of `values` */
    PARAM_FROM,     /* a position from 1, or "latest" */
};

/* A query parameter a route accepts. */
struct route_param {
    const char *name;      /* as sent; NULL ends a list */
    enum param_kind kind;
    const char *doc;       /* one line */
    const char *values;    /* PARAM_ENUM: the values, comma-separated */
};

struct route {
    const char *method;    /* "GET", "POST", ... */
    const char *pattern;   /* segments without the leading '/'; "{name}" = any one segment */
    route_fn *fn;          /* handler */
    unsigned flags;        /* enum route_flag */
    enum need need;        /* scope the key needs ({db}, when there is one, must be the key's
                              database unless the key is for all) */
    const char *op_id;     /* OpenAPI operationId */
    const char *summary;   /* one line */
    const struct route_param *params; /* accepted query parameters, {NULL}-ended; NULL: none */
    const char *request;   /* body schema (components/schemas name); NULL: no body */
    const char *response;  /* success answer schema; NULL: no body */
    unsigned status;       /* success status */
};

/* The parameter of r named name (n bytes), or NULL. */
const struct route_param *route_param_find(const struct route *r, const char *name, size_t n);

/* Appends to out the OpenAPI 3.1 document of routes[0..n) (openapi.c). */
void openapi_render(const struct route *routes, size_t n, const char *version, struct buf *out);

#endif
