/* Projection webhooks (docs/api.md, "Projection webhooks"): a projection deployed with a
 * webhook member has its changes POSTed to the webhook's URL, in sequence order, at least
 * once, in batches, signed (the Standard Webhooks scheme of delivery/delivery.h, unless its
 * event format's hook style says otherwise) by the database's shared projection secret or by
 * the projection's own (isolateSecret).
 *
 * One delivery thread per running projection version with a webhook, started and stopped
 * with it by the projection runner (logic/projection.c): it reads the changes after its
 * checkpoint from the projection's changes table, POSTs them (retrying with exponential
 * backoff up to the webhook's maxAttempts), parks a batch that keeps failing, then moves its
 * checkpoint. The checkpoint and the parked batches are kept in the projection version's meta
 * table (so a redeploy, which rebuilds the projection and numbers its changes from 1 again,
 * delivers them again from the first), the secrets in the derived store's table "phs"
 * ("shared" and "p:<projection>"): none of it is in a backup; a restored database's webhooks
 * sign with new secrets, made at the first delivery or read.
 *
 * The shape of a POST (body, changes per POST, message id, signing scheme, id and attempt
 * headers) is the projection's event format's hook style (struct logic_hook_style in
 * logic/logic.h) when it has one, else the native one (docs/api.md), itself a built-in style
 * of proj_hooks.c; all the rest is shared. The webhook's own headers follow the style's,
 * except one named like a header the style sets.
 *
 * Threads: phook_secret and phook_rotate write the derived store (worker or delivery
 * threads, not an I/O or writer thread); the rest may be called from any thread. */
#ifndef LOGIC_PROJ_HOOKS_H
#define LOGIC_PROJ_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "delivery/delivery.h"
#include "engine/engine.h"
#include "logic/component.h"
#include "util/buf.h"

enum {
    PHOOK_BATCH = 100,                 /* changes per delivery at most */
    PHOOK_BATCH_BYTES = 1024 * 1024,   /* ... and their bytes (a larger change goes alone) */
    PHOOK_LOG = 50,                    /* attempts kept in the delivery log */
    PHOOK_PARKED_MAX = 100,            /* parked batches kept (oldest dropped) */
    PHOOK_IDLE_MS = 1000,              /* the thread looks for changes this often unwoken */
    PHOOK_GRACE_MAX_S = 7 * 24 * 3600, /* a rotation's grace at most */
    PHOOK_ID_BYTES = COMP_NAME_BYTES + 64, /* a message id with its NUL */
};

struct comp_def;
struct logic_hook_style;

/* What starts a projection's webhook delivery; every pointer is copied or static. */
struct phook_spec {
    struct db *db;                /* the thread takes its own reference */
    const struct comp_def *def;   /* the projection version whose changes it delivers (its
                                     webhook member: comp_webhook_parse); copied */
    const struct logic_hook_style *style; /* its event format's hook style (static data),
                                     NULL: the native shape */
    const char *t_changes;        /* that version's changes table */
    const char *t_meta;           /* ... and meta table (the checkpoint goes there) */
    const char *allow;            /* the operator's allow list (NULL: none) */
};

struct phook;

/* Starts the delivery thread. NULL when the webhook does not parse or no thread starts
 * (logged). */
struct phook *phook_start(const struct phook_spec *spec);
/* New changes were committed: look now. NULL is allowed. */
void phook_kick(struct phook *h);
/* Stops the thread (abandoning an attempt under way: that batch is delivered again after a
 * restart) and frees h. NULL is allowed. */
void phook_stop(struct phook *h);
/* Appends {"url","delivered","pending","parked":[[first,last]...],"deliveries":[...]} (the
 * newest PHOOK_LOG attempts, newest first: id, first, last, attempt, status, error, at). */
void phook_describe(struct phook *h, struct buf *out);

/* The secret projection's webhook signs with (the database's shared one unless isolated),
 * made when there is none yet, into out. Returns 0 or ERR_* (ERR_GONE: database deleted). */
int phook_secret(struct db *db, const char *projection, bool isolated,
                 char out[DELIVERY_SECRET_TEXT]);
/* Replaces that secret by a new one (into out); the old one also signs for grace_s seconds.
 * Returns 0 or ERR_*. */
int phook_rotate(struct db *db, const char *projection, bool isolated, uint32_t grace_s,
                 char out[DELIVERY_SECRET_TEXT]);

#endif
