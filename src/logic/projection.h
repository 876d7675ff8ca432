/* Projections (docs/design/logic.md, "Projections"): key(event) -> key | null and
 * apply(state, event) -> state over a filter of a database's log, run in the background by
 * one runner thread of the logic layer: catch-up from the start, then live.
 *
 * Exactly once: each batch's new states, their change records and the checkpoint (the next
 * position to read) are committed in one transaction of the database's derived store, so
 * after a crash the projection resumes from its last checkpoint and no event is applied
 * twice or skipped. Every state change gets the next sequence number of its projection
 * (1, 2, ...), readable as a feed of changes.
 *
 * A projection whose code fails stops at that event (status failed, with the error and the
 * event's position) and stays there; a redeploy (a new version) starts it over from the first
 * event. Events of the server's own '$' streams are not shown, except stream-less DCB events.
 *
 * Tables (the derived store, per projection version): "p:<name>:<v>" key -> state,
 * "pc:<name>:<v>" sequence (8 bytes big-endian) -> change, "pm:<name>:<v>" "checkpoint" ->
 * position and sequence. Older versions' tables are dropped when a new one starts.
 *
 * Threads: the runner is its own thread (user code runs there, never on an I/O or writer
 * thread); the read calls below read the derived store and may run on any thread. */
#ifndef LOGIC_PROJECTION_H
#define LOGIC_PROJECTION_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "logic/registry.h"
#include "logic/runtime.h"
#include "util/buf.h"

enum {
    PROJ_BATCH_EVENTS = 1000,     /* events applied per derived-store transaction */
    PROJ_KEY_BYTES = 256,         /* a state's key (what key(event) returns) */
    PROJ_RESCAN_MS = 1000,        /* the runner looks for new or removed projections this
                                     often when nothing wakes it */
    PROJ_CHANGES_MAX = 1000,      /* changes per page of the feed */
    PROJ_CHANGES_PAGE_BYTES = 4 * 1024 * 1024, /* ... and its bytes (past them it stops) */
    PROJ_WAIT_MAX_MS = 30000,     /* a state read waits for a position this long at most */
    PROJ_START_WAIT_MS = 3000,    /* a command reading a projection that has not started yet
                                     (just deployed, or the server just started) or is
                                     catching up waits this long for it to reach the head */
    PROJ_STORAGE_TRIES = 5,       /* batches in a row the derived store may refuse before the
                                     projection is marked failed (a state too large) */
};

enum proj_status { PROJ_CATCHING_UP = 1, PROJ_LIVE, PROJ_FAILED };

struct projections;
struct logic;

/* Starts the runner for every database of e (it finds projections as they are deployed). */
int proj_start(struct logic *lg, struct engine *e, struct projections **out);
/* Stops the runner thread and answers every waiter (reached false); reads keep working, later
 * waits are answered at once. Idempotent. */
void proj_halt(struct projections *p);
/* proj_halt, then frees everything (every cursor, its databases). NULL is allowed. */
void proj_stop(struct projections *p);
/* Wakes the runner: a deploy or removal happened. Any thread. */
void proj_kick(struct projections *p);

/* What a projection is doing. */
struct proj_info {
    enum proj_status status;
    uint64_t version;        /* the component version running */
    uint64_t position;       /* the next position it will read (its checkpoint) */
    uint64_t head;           /* the database's head when asked */
    uint64_t sequence;       /* its newest change's sequence (0: none) */
    uint64_t failed_position;
    char error[512];         /* with PROJ_FAILED */
    char error_kind[32];
};

/* The status of projection name of db. Returns 0, ERR_NOTFOUND (no such projection running:
 * not deployed, or deployed a moment ago and not started yet) or ERR_*. */
int proj_info(struct projections *p, struct db *db, const char *name, struct proj_info *out);

/* The state under key (JSON text appended to out) and the position of the event that last
 * changed it. Returns 0, ERR_NOTFOUND (no state for key) or ERR_*; *info as proj_info. */
int proj_state(struct projections *p, struct db *db, const char *name, struct slice key,
               struct buf *out, uint64_t *out_position, struct proj_info *info);

/* Appends {"keys":[...],"next":...} for keys starting with prefix after `after`, at most
 * limit. Returns 0, ERR_NOTFOUND or ERR_*. */
int proj_keys(struct projections *p, struct db *db, const char *name, struct slice prefix,
              struct slice after, size_t limit, struct buf *out);

/* Appends {"changes":[{"sequence","key","state","position"}...],"next"} after sequence after,
 * at most limit. Returns 0, ERR_NOTFOUND or ERR_*. */
int proj_changes(struct projections *p, struct db *db, const char *name, uint64_t after,
                 size_t limit, struct buf *out);

/* Appends the state of projection name's webhook delivery (logic/proj_hooks.h,
 * phook_describe) to out. Returns 0, or ERR_NOTFOUND when it has none running. */
int proj_webhook(struct projections *p, struct db *db, const char *name, struct buf *out);

/* One change record of a projection's changes table ("pc:<name>:<v>"). */
struct proj_change {
    uint64_t sequence;
    struct slice key;        /* the state's key */
    struct slice state;      /* its new state, JSON text */
    uint64_t position;       /* the event that changed it */
};
/* Reads the entry (key, val) of a changes table into *out (slices into val). Returns false
 * when it is not a change record. Pure. */
bool proj_change_decode(struct slice key, struct slice val, struct proj_change *out);
/* Appends ch as the API shows a change record, {"sequence","key","state","position"}: what a
 * proj_changes page lists, what the native live feed sends and what native webhooks carry.
 * Pure. */
void proj_change_json(struct buf *out, const struct proj_change *ch);

/* Changes copied out of a changes table, in sequence order: ch[0..n), each one's key and state
 * pointing into bytes (valid until the list is read into again or finished). What a reader
 * that works on changes after its read transaction has ended holds (a webhook's batch, a live
 * feed's page). */
struct proj_change_list {
    struct proj_change *ch;  /* owned: room for max */
    size_t n;
    size_t max;              /* changes one read takes at most (>= 1) */
    size_t max_bytes;        /* ... and key and state bytes: a read stops before the change
                                that would pass them (the first one is taken whatever its
                                size) */
    struct buf bytes;        /* owned: the keys and states */
};
void proj_change_list_init(struct proj_change_list *l, size_t max, size_t max_bytes);
/* Frees what l owns. On zeroed memory: nothing. */
void proj_change_list_fini(struct proj_change_list *l);
/* Reads into l (emptied first) the changes of changes table `table` after sequence after, in
 * t. Returns 0 or ERR_*. Any thread. */
struct derived_txn;
int proj_change_list_read(struct derived_txn *t, const char *table, uint64_t after,
                          struct proj_change_list *l);
/* proj_change_list_read of the running version of projection name of db, in a read
 * transaction of its own; *info as proj_info for that same version (its version tells which
 * changes these are). Returns 0, ERR_NOTFOUND (no such projection running) or ERR_*. */
int proj_changes_list(struct projections *p, struct db *db, const char *name, uint64_t after,
                      struct proj_change_list *l, struct proj_info *info);

/* Calls fn(arg, reached) exactly once, on the runner thread (not under its lock): reached true
 * as soon as projection name of db has applied every event up to position min_position,
 * false when timeout_ms pass first (checked at least every PROJ_RESCAN_MS) or the runner
 * stops. fn may read the derived store and answer a request; no user code. */
typedef void proj_wait_fn(void *arg, bool reached);
void proj_wait(struct projections *p, struct db *db, const char *name, uint64_t min_position,
               uint64_t timeout_ms, proj_wait_fn *fn, void *arg);

/* proj_wait that blocks the calling thread (a worker's, never an I/O or writer thread) until
 * the answer: true when projection name of db has applied every event up to min_position
 * within timeout_ms (min_position 0: as soon as it runs at all). */
bool proj_await(struct projections *p, struct db *db, const char *name, uint64_t min_position,
                uint64_t timeout_ms);

/* Tells fn(arg) (on the runner thread, under the runner's lock: quick, no logic or engine
 * calls) each time projection name of db commits new changes, until proj_unwatch. Returns a
 * handle (never NULL). */
struct proj_watch;
typedef void proj_watch_fn(void *arg);
struct proj_watch *proj_watch(struct projections *p, struct db *db, const char *name,
                              proj_watch_fn *fn, void *arg);
/* On return fn is not running and will not run again. NULL is allowed. */
void proj_unwatch(struct projections *p, struct proj_watch *w);

#endif
