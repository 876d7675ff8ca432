/* The DeltaBase dialect (seed 004; docs/dialects/deltabase.md): event stores are Annals
 * databases, streams and the DCB API map onto the shared append and query operations, and
 * subscriptions onto webhooks and live delivery. Mounted at /deltabase by default, and at the
 * root of its own port with --dialect-listen deltabase=HOST:PORT. */
#ifndef DIALECT_DELTABASE_DELTABASE_H
#define DIALECT_DELTABASE_DELTABASE_H

#include "gate/gate.h"
#include "util/limits.h"

struct live_registry;

/* What the dialect's handlers need beyond the gate. Owned by main. */
struct dlb_ctx {
    struct limits limits;        /* copied: batch and event sizes */
    struct live_registry *live;  /* borrowed: its WebSocket connections */
};

/* The mount: route table and descriptor (Bearer keys, ?apiKey= on the WebSocket, the store
 * in the path, DeltaBase's error envelope, 1,000 requests per minute per key). */
extern const struct gate_mount deltabase_mount;

#endif
