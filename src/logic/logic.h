/* The logic layer: user code deployed to databases and run on the server (docs/design/
 * logic.md). It keeps each database's components in force (logic/registry.h), loaded modules
 * (logic/runtime.h), and reducer state with snapshots in the database's derived store.
 *
 * Threads: calls marked "worker" run user code or wait for commits and must run on the
 * engine's worker pool (engine_submit), never on an I/O or writer thread. The others only
 * read and may run anywhere. A struct logic is shared by every thread. */
#ifndef LOGIC_LOGIC_H
#define LOGIC_LOGIC_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "logic/registry.h"
#include "logic/runtime.h"

enum {
    LOGIC_SNAPSHOT_MIN_EVENTS = 16, /* a state read that folded this many events stores a
                                       snapshot (unless one of a later version is stored), so
                                       the next read starts from it */
    LOGIC_FOLD_PAGE = 1000,         /* events converted and folded per runtime call */
    LOGIC_STATE_CACHE = 65536,      /* reducer states kept in memory (the newest of recently
                                       appended streams), and their bytes at most: */
    LOGIC_STATE_CACHE_BYTES = 64 * 1024 * 1024,
    LOGIC_INSTANCES = 4,            /* loaded instances of one component at most (calls on
                                       several workers at once run side by side) */
};

/* How a surface's projection webhooks look (docs/design/logic-layer.md, "Projections",
 * "Webhooks"): for a surface whose receivers expect their own body, headers and signature
 * rather than the native batches ({"type":"projection.changes",...}, Standard Webhooks).
 * Only the shape is the surface's: order, retries (the webhook's maxAttempts and backoffMs),
 * parking, the checkpoint and the secrets (shared or isolated, rotation) are
 * logic/proj_hooks.c's as for the native shape. Static data of the surface; its functions
 * run on the projection's delivery thread. */
struct proj_change;
struct logic_hook_style {
    unsigned batch_max;             /* changes per POST at most: 1 for one change per POST;
                                       0 or past PHOOK_BATCH means PHOOK_BATCH */
    enum delivery_signing signing;  /* the scheme (delivery/delivery.h), keyed by the secret */
    const char *signature_header;   /* DELIVERY_HMAC_HEX: the header carrying the signature */
    const char *id_header;          /* NULL, or a header sent with the message id */
    const char *attempt_header;     /* NULL, or a header sent with the attempt number (1..) */
    /* Appends the body of one POST of changes[0..n) (n >= 1, in sequence order; borrowed for
     * the call) of projection def (its name, version, meta; borrowed) of db to out. id: the
     * message's id; attempt: 1 for the first. May read db (the event that made a change:
     * engine_read_event at its position). Returns 0, or ERR_* for a failure that may pass
     * (the attempt fails and is retried, then parked, as a refused POST is). */
    int (*payload)(struct db *db, const struct comp_def *def, const struct proj_change *changes,
                   size_t n, const char *id, uint32_t attempt, struct buf *out);
    /* The id of the message of changes[0..n) into out (cap = PHOOK_ID_BYTES, NUL-terminated):
     * the same for each of its attempts, what receivers drop repeats by. */
    void (*message_id)(const struct comp_def *def, const struct proj_change *changes, size_t n,
                       char *out, size_t cap);
};

/* How the components of an API surface see events: a dialect's shape of an event (CloudEvents
 * for EvidentSource), chosen per component by its eventFormat member (logic/component.h);
 * components without one see the native JSON (logic_config.format_event) and return native
 * event objects. Static data of the surface, handed in by main (logic_config.event_formats),
 * so this layer includes no dialect header. Its functions are pure: any thread. */
struct logic_event_format {
    const char *name;  /* what eventFormat names: [a-z0-9_-]{1,32} */
    /* Appends one stored event as the code sees it: what reducers, projections and views
     * fold and what a command handler's ctx.query answers. */
    engine_event_json_fn *render;
    /* Turns one event object a command handler returned (JSON text) into a native event
     * object with its "stream" member (docs/api.md, "Command handlers"), appended to native.
     * index: its place among the decision's events; component: the handler's name (for
     * defaults such as a source). Returns 0, or ERR_INVALID with a reason in why. */
    int (*parse)(struct slice event, size_t index, const char *component, struct buf *native,
                 char *why, size_t why_cap);
    /* Optional (NULL: the native forms only). Turns what the code gives ctx.query into a
     * native query filter object, and one condition the handler returned into a native
     * condition ({"failIfEventsMatch", "after"} or {"stream", "expectedVersion"}), appended
     * to out. A native form may be passed through. Returns 0, or ERR_INVALID with why. */
    int (*filter)(struct slice arg, struct buf *out, char *why, size_t why_cap);
    int (*condition)(struct slice cond, size_t index, struct buf *out, char *why,
                     size_t why_cap); /* index: its place among the decision's conditions */
    /* Optional (NULL: the native shape): how webhooks of projections in this format look. */
    const struct logic_hook_style *hook_style;
};

struct logic_config {
    struct engine *engine;               /* borrowed */
    struct logic_env *env;               /* borrowed: the runtimes */
    struct logic_limits limits;          /* every module's budgets */
    engine_event_json_fn *format_event;  /* an event's JSON as user code sees it (native) */
    const struct logic_event_format *const *event_formats; /* the surfaces' formats,
                                            NULL-terminated (NULL: none); borrowed, static */
    engine_filter_parse_fn *parse_filter; /* checks projection and view filters */
    unsigned command_tries;              /* decisions per command at most (0: COMMAND_TRIES) */
    const char *webhook_allow;           /* hosts or addresses projection webhooks may reach
                                            though private (delivery/delivery.h); NULL: none */
};

struct logic;

int logic_new(const struct logic_config *cfg, struct logic **out);
/* Stops the projection runner, answering every request that waits on it (a state read with
 * minPosition: 202), while the listeners still run. Idempotent; logic_free does it too. */
void logic_stop(struct logic *lg);
/* Unloads every module and stops the projection runner. No call may be running. NULL is
 * allowed. */
void logic_free(struct logic *lg);

/* True for the events views and projections see: every stream's but the server's own '$'
 * streams (the DCB stream's are users' events, so they are seen). */
bool logic_user_event(const struct event_rec *ev);

/* What the logic layer's parts share (logic/projection.c). */
struct logic_env *logic_runtimes(struct logic *lg);
const struct logic_limits *logic_budgets(struct logic *lg);
engine_filter_parse_fn *logic_filter_parser(struct logic *lg);
/* The registered event format called name, or NULL (NULL name: NULL). */
const struct logic_event_format *logic_event_format(struct logic *lg, const char *name);
/* How def's code sees events: its format's render, or the native JSON (also when its format
 * is not registered in this process). */
engine_event_json_fn *logic_renderer(struct logic *lg, const struct comp_def *def);
struct projections *logic_projections(struct logic *lg);
unsigned logic_command_tries(struct logic *lg);
const char *logic_webhook_allow(struct logic *lg);

/* A loaded instance of def's code in db, for the caller's thread alone until released (loaded
 * or reloaded for def's version first). Returns the module, or NULL with *err and *rc set. */
struct logic_instance;
struct logic_module *logic_acquire(struct logic *lg, struct db *db, const struct comp_def *def,
                                   struct logic_instance **out, struct logic_error *err,
                                   int *rc);
/* Gives the instance back; failed: the use failed (counted in its component's errors). */
void logic_release(struct logic_instance *inst, bool failed);

/* What a component's code has done in this process (reducer states, views, decisions; a
 * projection's runner keeps its own instance, not counted here). */
struct logic_stats {
    uint64_t calls;     /* uses of a loaded instance */
    uint64_t errors;    /* ... in which the code failed or did not load */
    uint64_t busy_ns;   /* time spent in them */
};
/* Fills *out for component name of db and appends the log lines of its loaded instances that
 * are not running code now (JSON strings, comma-separated; logs may be NULL). Never waits for
 * user code: any thread. */
void logic_component_stats(struct logic *lg, struct db *db, const char *name,
                           struct logic_stats *out, struct buf *logs);

/* The components in force in db (one reference for the caller: comp_set_unref). Cached per
 * database and re-read when its logic stream moved. Returns 0 or ERR_*. */
int logic_set(struct logic *lg, struct db *db, struct comp_set **out);

/* Worker. Checks def by loading it (its syntax, the entry points its kind needs; a document
 * (COMP_DOCUMENT) is not loaded: its source must be a JSON text, else ERR_INVALID with
 * LOGIC_E_INVALID), then deploys it as the next version of its name (def->version and
 * deployed_us are set). A
 * reducer's snapshots of earlier versions are dropped. Returns 0; ERR_INVALID with *err (the
 * code does not load, its filter is not a valid query filter, or its eventFormat is no
 * registered format: kind LOGIC_E_INVALID); ERR_EXISTS with *err
 * (another reducer holds the category); ERR_DENIED with *err (a projection's webhook URL:
 * kind LOGIC_E_FORBIDDEN, an address the operator does not allow; LOGIC_E_INVALID, its host
 * does not resolve); ERR_TOOBIG with err->kind set (a new name past
 * COMP_MAX_PER_DB); ERR_CONFLICT (other deploys kept coming first); ERR_TOOBIG (larger than the database takes in one event); ERR_*. */
int logic_deploy(struct logic *lg, struct db *db, struct comp_def *def,
                 struct logic_error *err);
/* Worker. Removes the component called name. Returns 0, ERR_NOTFOUND or ERR_*. */
int logic_remove(struct logic *lg, struct db *db, const char *name);

/* What a deploy may replace and a removal remove (an API surface that owns only some
 * components: a dialect's state views): the component in force under the name must be of
 * kind, with event_format (NULL: without one). kind 0: of the deployed component's own kind
 * (any kind, for a removal), for a surface that owns components of several kinds (j17: its
 * spec document and its reducers). Checked under the deploy lock, against the components as
 * they are then. */
struct logic_guard {
    enum comp_kind kind;
    const char *event_format;
};
/* logic_deploy that refuses, ERR_EXISTS with *err, to replace a component the guard does
 * not cover (guard NULL: any). */
int logic_deploy_as(struct logic *lg, struct db *db, struct comp_def *def,
                    const struct logic_guard *guard, struct logic_error *err);
/* Worker. Deploys defs[0..n) and removes the components called removals[0..nremovals) in
 * one append to the logic stream, hence one commit: all of it or nothing, one version step of
 * the stream per event (removals first, then the deploys in order). Every def is checked
 * first as logic_deploy checks it (code loads, a document's source is JSON, filter, format,
 * webhook); then, under the deploy lock and against the components in force, each def gets
 * the next version of its name and is held to guard (NULL: any) and to the rules of
 * logic_deploy (names per database, one reducer per category, counting the batch's own
 * deploys and removals). A removal of a name not in force, or in force but not covered by
 * guard, is skipped (nothing to remove: not an error). Each name appears once in a batch.
 * On success each def's version and deployed_us are set, the cached set moves past every
 * event, and what replaced or removed versions computed (reducer snapshots, view results) is
 * dropped; states kept in memory are keyed by reducer version, so none of a replaced
 * version is served again. A batch with nothing left to write (n 0, every removal skipped)
 * returns 0 and writes nothing.
 * Returns 0 or, with nothing written: ERR_INVALID with *err (a def that does not check, a
 * name that is invalid or appears twice), ERR_DENIED, ERR_EXISTS (the guard, a category
 * taken), ERR_TOOBIG with err->kind set (names past COMP_MAX_PER_DB), as logic_deploy_as
 * for one def; ERR_CONFLICT (other deploys kept coming first); ERR_TOOBIG (an event larger
 * than the database takes, or more events than one append takes); ERR_*. *failed (may be
 * NULL) is the index of the item to blame: i < n for defs[i], n + j for removals[j], n +
 * nremovals when none is. defs and removals are borrowed; defs' versions and deployed_us are
 * written. */
int logic_deploy_many(struct logic *lg, struct db *db, struct comp_def *defs, size_t n,
                      const char *const *removals, size_t nremovals,
                      const struct logic_guard *guard, struct logic_error *err, size_t *failed);
/* logic_remove that answers ERR_NOTFOUND for a component the guard does not cover. */
int logic_remove_as(struct logic *lg, struct db *db, const char *name,
                    const struct logic_guard *guard);

/* A stream's state as its reducer computes it. */
struct logic_state {
    struct buf state;            /* JSON text of the state ("null" before any event) */
    uint64_t version;            /* the stream version it covers (0: no events) */
    uint64_t position;           /* that event's position */
    int64_t updated_us;          /* that event's commit time */
    char reducer[COMP_NAME_BYTES + 1]; /* the reducer's name */
    uint64_t reducer_version;
    uint64_t failed_position;    /* with a failure: the event the reducer failed on */
    size_t folded;               /* events folded for this answer (not from the snapshot) */
};

void logic_state_init(struct logic_state *s);
void logic_state_fini(struct logic_state *s);

/* Worker. The state of stream as of at (NULL = now), folded from the newest usable snapshot.
 * Returns 0; ERR_NOTFOUND (*no_reducer tells whether no reducer is bound to the stream's
 * category, else the stream has no events in that view); ERR_INVALID with *err when the
 * reducer failed (out->failed_position says on which event); ERR_*. */
int logic_stream_state(struct logic *lg, struct db *db, struct slice stream,
                       const struct as_of *at, struct logic_state *out, bool *no_reducer,
                       struct logic_error *err);
/* logic_stream_state with the reducer bound to category (ptr NULL: the stream's own
 * category), for an API surface whose streams name their category otherwise (Hapnd's
 * aggregate types). */
int logic_stream_state_as(struct logic *lg, struct db *db, struct slice stream,
                          struct slice category, const struct as_of *at,
                          struct logic_state *out, bool *no_reducer, struct logic_error *err);

/* Worker. The state of stream right after an append whose events are evs[0..n) (committed,
 * in version order): folded from the state before them when it is in memory (the common case
 * for a stream appended to through this server), else as logic_stream_state as of the last
 * one. Returns as logic_stream_state. */
int logic_state_after(struct logic *lg, struct db *db, struct slice stream,
                      const struct event_rec *evs, size_t n, struct logic_state *out,
                      bool *no_reducer, struct logic_error *err);
/* logic_state_after with the reducer bound to category (ptr NULL: the stream's own). */
int logic_state_after_as(struct logic *lg, struct db *db, struct slice stream,
                         struct slice category, const struct event_rec *evs, size_t n,
                         struct logic_state *out, bool *no_reducer, struct logic_error *err);
/* True when a reducer is bound to category in db now. Reads only (any thread). */
bool logic_has_reducer(struct logic *lg, struct db *db, struct slice category);

/* Worker. The view called name computed for params (a JSON object: the view's parameters) as
 * of at (NULL = now): evolve(state, event, params) over every event of its filter in log
 * order (events of the server's own '$' streams other than the DCB stream are not shown),
 * from the newest cached result for these parameters that is not past at. out->position is
 * the newest position the result covers (0: no events yet, state null); out->reducer names
 * the view. Returns 0; ERR_NOTFOUND (no view of that name); ERR_INVALID with *err (the code
 * failed; out->failed_position) or ERR_*. */
int logic_view(struct logic *lg, struct db *db, const char *name, struct slice params,
               const struct as_of *at, struct logic_state *out, struct logic_error *err);

/* Where a view read stands (logic_view_at). */
struct logic_view_read {
    const struct as_of *at;     /* the database as of this point (NULL = now) */
    bool has_effective;         /* fold only the events whose effective time is at or before
                                   effective_us (as of effective time); such reads are folded
                                   from the start, without the cache (effective times do not
                                   follow the log's order) */
    int64_t effective_us;
};

/* Worker. logic_view with a read point: rd (NULL: now, every event). */
int logic_view_at(struct logic *lg, struct db *db, const char *name, struct slice params,
                  const struct logic_view_read *rd, struct logic_state *out,
                  struct logic_error *err);

#endif
