/* The j17 dialect (seed 000; docs/dialects/j17.md): an instance's environments are Annals
 * databases (instance "shop": "shop", "shop-staging", "shop-test"); a spec deployed through
 * the admin API describes the aggregate types, and each aggregate is the native stream
 * "<type>:<id>". Events are validated against the spec's JSON Schemas, aggregate state is
 * folded by the spec's Tick handlers running as logic-layer reducers (language tick), and
 * implications write derived events atomically with the event that implied them.
 *
 * One mount per environment, sharing one route table: /j17 (prod), /j17-staging and
 * /j17-test by default; each serves the database of the key presented (its instance) and
 * refuses keys of another environment. The admin API (/api/...) sits under each mount. */
#ifndef DIALECT_J17_J17_H
#define DIALECT_J17_J17_H

#include <pthread.h>
#include <stdint.h>

#include "gate/gate.h"
#include "util/limits.h"

enum {
    J17_IDEM_NS = 4,          /* the namespace of the dialect's idempotency keys */
    J17_RATE_PER_KEY = 500,   /* requests per minute per API key (the seed's; settable:
                                 --dialect-rate j17=N) */
    J17_RATE_PER_IP = 2000,   /* requests per minute per address */
};

/* The environments, in the order of j17_mounts. */
enum j17_env { J17_PROD, J17_STAGING, J17_TEST, J17_ENVS };

struct logic;
struct j17_spec_cache;
struct j17_timers;

/* What the dialect's handlers need beyond the gate. Owned by main: set limits, logic and
 * engine, then j17_ctx_init; j17_ctx_fini once no request runs. */
struct j17_ctx {
    struct limits limits;          /* copied: batch and event sizes */
    struct logic *logic;           /* borrowed: reducers, the spec's document */
    struct engine *engine;         /* borrowed: databases made by a first deploy */
    uint64_t schedule_min_ms;      /* a scheduled implication's least delay (0: the j17
                                      minimum, 5 minutes; tests lower it) */
    struct j17_spec_cache *specs;  /* owned: compiled specs by database (specs.c) */
    struct j17_timers *timers;     /* owned: the thread firing scheduled implications */
    pthread_mutex_t deploy_mu;     /* one spec deploy at a time: the check against the spec
                                      in force, the deploy and the listeners' sync */
};

void j17_ctx_init(struct j17_ctx *x);
void j17_ctx_fini(struct j17_ctx *x);

/* Starts the thread that fires scheduled implications (timers.c), once the engine and the
 * logic layer are set. Returns 0 or ERR_IO. */
int j17_timers_start(struct j17_ctx *x);
/* Stops it (before the engine stops); nothing when it is not running. */
void j17_timers_stop(struct j17_ctx *x);

/* The mounts: prod, staging, test (Bearer keys, the key's database, j17's envelope). */
extern const struct gate_mount j17_mount_prod;
extern const struct gate_mount j17_mount_staging;
extern const struct gate_mount j17_mount_test;

/* The j17 event format of the logic layer ("j17"): what Tick handlers see,
 * {"type","key","id","data","metadata"} with metadata.timestamp (Unix seconds) and
 * metadata.stream_id. */
struct logic_event_format;
extern const struct logic_event_format j17_format;

/* The webhook format of j17 listeners ("j17"; listeners.c). */
struct webhook_format;
extern const struct webhook_format j17_webhook_format;

#endif
