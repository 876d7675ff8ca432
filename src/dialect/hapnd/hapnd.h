/* The Hapnd dialect (seed 002; docs/dialects/hapnd.md): a tenant is the Annals database its
 * key is bound to, aggregates are native streams, reducers and projections uploaded as zips of
 * Lua, JavaScript or TypeScript files run on the logic layer (reducers on the write path, their
 * state in the append answer; projections in the background, their state changes polled,
 * streamed over WebSocket and pushed by signed webhooks). Mounted at /hapnd by default, and at
 * the root of its own port with --dialect-listen hapnd=HOST:PORT. */
#ifndef DIALECT_HAPND_HAPND_H
#define DIALECT_HAPND_HAPND_H

#include <stdint.h>

#include "gate/gate.h"
#include "util/limits.h"

enum {
    HAPND_IDEM_NS = 3, /* the namespace of the dialect's idempotency keys */
    HAPND_BODY_BYTES = 5 * 1000 * 1000 + 64 * 1024, /* a request body at least (a 5 MB zip
                                                       and the multipart around it) */
};

struct live_registry;
struct logic;

struct hd_types;

enum { HAPND_RUN_BYTES = 36 }; /* a server run's id: a UUID's text */

/* What the dialect's handlers need beyond the gate. Owned by main: set limits, logic, live and
 * started_us, then hapnd_ctx_init; hapnd_ctx_fini once no request runs. */
struct hapnd_ctx {
    struct limits limits;        /* copied: batch and event sizes */
    struct logic *logic;         /* borrowed: reducers and projections */
    struct live_registry *live;  /* borrowed: WebSocket streams */
    int64_t started_us;          /* when the server started */
    char run[HAPND_RUN_BYTES + 1]; /* this server run (upload records name the run that
                                      compiles them) */
    struct hd_types *types;      /* owned: aggregate types known (types.c) */
};

void hapnd_ctx_init(struct hapnd_ctx *x);
void hapnd_ctx_fini(struct hapnd_ctx *x);

/* The mount: route table and descriptor (X-API-Key keys, the key's database as the tenant,
 * Hapnd's error envelope). */
extern const struct gate_mount hapnd_mount;

#endif
