/* The DeQL dialect (seed 003; docs/dialects/deql.md): DeQL scripts define
 * aggregates, commands, events, decisions and projections in a registry (DeReg)
 * kept durable as a logic-layer document ("deql.dereg"); commands are executed by
 * decisions written in SQL, which SQLite runs (src/sql/sql.h) over the
 * database's events; tables come back as Apache Arrow IPC streams. Mounted at
 * /deql by default, and at the root of its own port with
 * --dialect-listen deql=HOST:PORT. The database is the key's (without keys:
 * "default").
 *
 * Threads: handlers run on I/O threads and only parse, check and queue; every
 * SQL statement runs on the dialect's own worker pool (user code: never on an
 * I/O or writer thread). */
#ifndef DIALECT_DEQL_DEQL_H
#define DIALECT_DEQL_DEQL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "sql/sql.h"
#include "util/limits.h"
#include "util/strmap.h"

enum {
    DEQL_WORKERS = 8,             /* SQL worker threads (--deql-workers) */
    DEQL_QUEUE = 1024,            /* jobs waiting for a SQL worker at most (then 503) */
    DEQL_PAGE_DEFAULT = 1000,     /* limit of the paged routes when not given */
    DEQL_PAGE_MAX = 100000,       /* ... at most */
    DEQL_EXECUTE_TRIES = 8,       /* a decision is run again when a concurrent commit changed
            what it read, at most this many times (then 409) */
    DEQL_SESSIONS_MAX = 256,      /* sessions kept at once (the idlest is dropped) */
    DEQL_SESSION_TABLES_MAX = 64, /* tables of one session */
    DEQL_SESSION_IDLE_S = 3600,   /* a session unused this long is dropped with its tables */
    DEQL_SESSION_ID_MAX = 64,     /* bytes of an X-DeQL-Session value: [A-Za-z0-9_.-]+ */
    DEQL_SESSION_BYTES_MAX = 64 << 20, /* bytes of the rows of one session's tables */
    DEQL_INSPECT_ROWS_MAX = 100000,    /* rows of an INSPECT DECISION's input (and branch
                                          rows of its output) */
    DEQL_SCRIPT_RESULT_BYTES = 64 << 20, /* JSON results of one script's statements */
    DEQL_STRIPES = 64,            /* locks serializing the decisions of one stream */
};

/* The logic-layer document holding a database's DeReg (its export, logic/component.h). */
#define DEQL_DEREG_COMPONENT "deql.dereg"

struct logic;
struct workq;
struct deql_dbs;
struct dq_cache;
struct deql_sessions;

/* What the dialect's handlers need beyond the gate. Owned by main: set the
 * members marked "set", then deql_ctx_init; deql_ctx_fini once no request runs.
 */
struct deql_ctx {
    struct limits limits;           /* set: event and batch sizes */
    const char *version;            /* set: the server's version (GET /info) */
    struct logic *logic;            /* set: keeps each database's DeReg as a document */
    struct sql_limits sql;          /* set: every SQL connection's budgets */
    bool readonly;                  /* set: --deql-readonly: every write answers 403 */
    unsigned workers;               /* set: SQL threads (0: DEQL_WORKERS) */
    struct workq *pool;             /* owned: the SQL worker pool */
    struct deql_dbs *dbs;           /* owned: each database's DeReg (dereg.c) */
    struct dq_cache *cache;         /* owned: state answers by what they depend on (cache.c) */
    struct deql_sessions *sessions; /* owned: inspection sessions (session.c) */
    pthread_mutex_t stripes[DEQL_STRIPES]; /* a decision holds its stream's stripe from its
                                              first read to its commit: commands of one
                                              instance run one at a time in this process */
};

/* Starts the worker pool. Returns 0 or ERR_IO. */
int deql_ctx_init(struct deql_ctx *x);
/* Lets the queued jobs run and answer, then stops the pool's threads (before
 * the engine stops: the jobs append). Idempotent. */
void deql_ctx_stop(struct deql_ctx *x);
/* Stops the pool (queued jobs, if any are left, are answered 503) and frees
 * everything. */
void deql_ctx_fini(struct deql_ctx *x);

/* The mount: route table and descriptor ({"error":"..."} envelope, Bearer or
 * X-API-Key keys, the key's database). */
extern const struct gate_mount deql_mount;

#endif
