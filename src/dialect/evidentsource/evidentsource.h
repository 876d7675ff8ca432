/* The EvidentSource dialect (seed 001; docs/dialects/evidentsource.md): databases are Annals
 * databases, CloudEvents are native events (translate.h says how), selectors and constraints
 * map onto the shared query filter and append conditions, state views and state changes onto
 * the logic layer's views and command handlers. Mounted at /evidentsource by default, and at
 * the root of its own port with --dialect-listen evidentsource=HOST:PORT. */
#ifndef DIALECT_EVIDENTSOURCE_EVIDENTSOURCE_H
#define DIALECT_EVIDENTSOURCE_EVIDENTSOURCE_H

#include <stdint.h>

#include "gate/gate.h"
#include "util/limits.h"

/* The namespace of the dialect's idempotency keys (the mount's and its appends'). */
enum { ES_IDEM_NS = 2 };

struct live_registry;
struct logic;

/* What the dialect's handlers need beyond the gate. Owned by main. */
struct es_ctx {
    struct limits limits;        /* copied: batch and event sizes */
    struct logic *logic;         /* borrowed: state views and state changes */
    struct live_registry *live;  /* borrowed: subscriptions */
    const char *version;         /* the server's version (health) */
    int64_t started_us;          /* when it started (health) */
};

/* The mount: route table and descriptor (X-API-Key or Bearer keys, the database in the path,
 * EvidentSource's error envelope). */
extern const struct gate_mount evidentsource_mount;

#endif
