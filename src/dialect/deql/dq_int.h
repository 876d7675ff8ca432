/* Internal interfaces of the DeQL dialect's files (not for other folders). */
#ifndef DIALECT_DEQL_DQ_INT_H
#define DIALECT_DEQL_DQ_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect/deql/deql.h"
#include "dialect/deql/parse.h"
#include "dialect/deql/registry.h"
#include "gate/gate.h"
#include "sql/sql.h"
#include "util/buf.h"

/* ---- dereg.c: each database's registry, durable as the document DEQL_DEREG_COMPONENT ---- */

/* A registry as of one version of its stream, shared by the jobs that use it.
 */
struct dq_reg {
    int refs;             /* atomic */
    struct deql_reg *reg; /* owned; never changed once shared */
    uint64_t version;     /* the version of the DeReg document it was built from (0: none) */
    uint64_t db_id;       /* engine_db_id of its database */
};
void dq_reg_unref(struct dq_reg *r);

/* The registry of db in force now (loaded from its stream at first use). Worker
 * threads. Returns 0 with *out referenced (dq_reg_unref it), ERR_IO,
 * ERR_CORRUPT or ERR_INVALID (a stored script no longer applies: logged). */
int dq_reg_get(struct deql_ctx *x, struct db *db, struct dq_reg **out);

/* The outcome of applying a script of definitions. */
struct dq_apply {
    size_t applied;         /* statements applied */
    struct deql_error perr; /* parse or registry error (rc ERR_INVALID/EXISTS/NOTFOUND) */
    char msg[320];          /* the message to answer with on failure */
};
/* Applies script (only definition statements: CREATE ..., ALTER ... ADD, USE TEMPLATE) to db's
 * registry, all or nothing: the new registry must build (every projection compiles), then its
 * export is deployed as the next version of the document (durable before this returns) and
 * the new registry is in force. One at a time per process. Worker threads. Returns 0 or
 * ERR_INVALID, ERR_EXISTS, ERR_NOTFOUND, ERR_TOOBIG (out->msg says why), or an engine error. */
int dq_reg_apply(struct deql_ctx *x, struct db *db, const char *script, size_t len,
                 struct dq_apply *out);

/* True for the statements dq_reg_apply takes. */
bool dq_is_definition(enum deql_stmt_kind kind);

struct deql_dbs *dq_dbs_new(void);
void dq_dbs_free(struct deql_dbs *d);

/* ---- conn.c: the worker thread's SQL connection, built for one registry ----
 */

/* This thread's connection for r, (re)built when it was built for another
 * registry, with every aggregate's $Events table and $Agg view and every
 * projection's view. Returns NULL with *err when the registry does not build.
 * Worker threads only. */
struct sql_conn *dq_conn(struct deql_ctx *x, const struct dq_reg *r, struct sql_error *err);
/* Builds a throwaway connection for reg (to check that it builds); closes it.
 */
int dq_conn_check(struct deql_ctx *x, const struct deql_reg *reg, struct sql_error *err);
/* Closes this thread's connection (at the worker's end). */
void dq_conn_drop(void);

/* ---- names ---- */

/* True when s is a DeQL identifier as the REST routes take it:
 * [A-Za-z_][A-Za-z0-9_]{0,127}. */
bool dq_ident_ok(const char *s);
/* The stream of an aggregate instance: "<agg>-<id>" into out (cap bytes); false
 * when too long. */
bool dq_stream_name(const char *agg, const char *id, char *out, size_t cap);
/* The tag every event of agg carries: "deql:<agg>". */
void dq_agg_tag(const char *agg, char *out, size_t cap);

/* ---- exec.c: EXECUTE ---- */

/* The text of a key value into out (false for NULL, empty text, NUL bytes, too
 * long). */
bool dq_key_text(const struct sql_value *v, char *out, size_t cap);

/* A command's values: each field's SQL value (text owned by the caller). */
struct dq_cmd_value {
    const char *field;
    struct sql_value v;
};

/* The result of running a decision. */
struct dq_exec {
    bool rejected;            /* no branch emitted: `rejection` says why */
    json_t *rejection;        /* {"status","decision","command","branches":[...],"state":{},
                     "values":{}} */
    json_t *branches;         /* per branch: branch_id, branch_index, label, guard, status
                       (emitted|guard_failed), event_types */
    json_t *emitted;          /* dry runs: [{"event_type","data"}] as they would be stored */
    struct sql_result events; /* emitted: event_type, stream_id, seq, status, fields */
    int err;                  /* 0 or the error (msg says why) */
    unsigned status;          /* HTTP status for err */
    char msg[400];
};
void dq_exec_fini(struct dq_exec *e);

/* Runs command's decision on db with values (as EXECUTE assigns them) and
 * appends what it emits under the condition that nothing it read changed (run
 * again on a conflict, at most DEQL_EXECUTE_TRIES times). dry: run the
 * decision, append nothing (INSPECT). Worker threads. Fills *out; returns
 * out->err. */
int dq_execute(struct deql_ctx *x, struct db *db, const struct dq_reg *r, struct sql_conn *sc,
               const char *command, const struct dq_cmd_value *values, size_t nvalues, bool dry,
               struct dq_exec *out);

/* Evaluates EXECUTE's assignment expressions (text of st in script) to values:
 * one SQL query `SELECT e1, e2, ...` on sc. The values' text lives in *holder
 * (fini it after use). Returns 0 or ERR_INVALID (msg). */
int dq_eval_assigns(struct sql_conn *sc, const char *script, const struct deql_stmt *st,
                    struct dq_cmd_value *out, struct sql_result *holder, char *msg, size_t cap);

/* ---- answers ---- */

/* The status of a failed SQL query: 400 (ERR_INVALID), 403 (ERR_DENIED), 422 (ERR_TOOBIG: a
 * budget), else 500. */
unsigned dq_sql_status(int err);

/* Answers {"error": msg} with status (the dialect's envelope). Any thread. */
void dq_fail_req(struct http_req *req, unsigned status, const char *msg);
/* Answers r as an Arrow IPC stream (or 500 when it cannot be written). */
void dq_answer_table(struct http_req *req, const struct sql_result *r);
/* Answers an arrow table built elsewhere (taken: fini'd). */
struct arrow_table;
void dq_answer_arrow(struct http_req *req, struct arrow_table *t);

/* ---- jobs: work for the SQL pool ---- */

struct dq_job;
typedef void dq_job_fn(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc);
/* A request's work on the SQL pool: the database (taken from the call), the
 * request, the route's parameters copied. */
struct dq_job {
    struct deql_ctx *x;
    struct http_req *req;
    struct db *db;
    dq_job_fn *fn;
    bool no_conn; /* fn needs no SQL connection (sc NULL) */
    char session[DEQL_SESSION_ID_MAX + 1];
    char agg[DEQL_NAME_MAX + 1];
    char name[DEQL_NAME_MAX + 1];
    char *arg; /* owned: a path parameter or body text */
    size_t arg_len;
    char *arg2; /* owned */
    uint64_t limit, offset;
    bool json_answer; /* Accept: application/json (run) */
    char *cache_key;  /* owned: keep the answer in the cache under this key */
};
/* Defers c's request and queues fn with j (taken; its db is c's, taken from c).
 * On a full queue answers 503 and frees j. */
void dq_submit(struct gate_call *c, struct dq_job *j);
struct dq_job *dq_job_new(struct gate_call *c, dq_job_fn *fn);

/* ---- session.c: inspection tables ---- */

/* The session named by the request's X-DeQL-Session (or "default") into out;
 * false (after answering 400) when the header is not a valid session id. */
bool dq_session_of(struct gate_call *c, char out[DEQL_SESSION_ID_MAX + 1]);
/* True for a session table's name: an identifier not starting with "sqlite_". */
bool dq_table_name_ok(const char *name);
/* Stores a copy of table res as name in session (of database db_id), replacing one of that
 * name. Returns 0, ERR_INVALID (a bad name, no columns, two columns whose names differ only
 * in case: SQLite could not load it) or ERR_TOOBIG (too many tables, or rows or bytes past
 * the session's limits). */
int dq_session_put(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                   const struct sql_result *res);
/* A copy of table name of session into *out; ERR_NOTFOUND when absent. */
int dq_session_get(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                   struct sql_result *out);
/* Drops table name; ERR_NOTFOUND when absent. */
int dq_session_drop(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name);
/* Records an inspection (meta_inspections) in session. */
void dq_session_record(struct deql_ctx *x, uint64_t db_id, const char *session, const char *name,
                       const char *kind, const char *input, const char *output,
                       const char *full_sql);
/* The inspections of session as a table (name, kind, input_table, output_table,
 * full_sql); only name's row when name is not NULL. */
void dq_session_inspections(struct deql_ctx *x, uint64_t db_id, const char *session,
                            const char *name, struct sql_result *out);
/* Loads every table of session into sc (sql_load_table), so queries read them by name; the
 * tables loaded before are dropped first. The caller drops them (sql_drop_loaded) before the
 * connection serves another request. Returns 0 or ERR_INVALID (err). */
int dq_session_load(struct deql_ctx *x, uint64_t db_id, const char *session,
                    struct sql_conn *sc, struct sql_error *err);
struct deql_sessions *dq_sessions_new(void);
void dq_sessions_free(struct deql_sessions *s);

/* ---- cache.c: state answers ---- */

struct dq_cache *dq_cache_new(void);
void dq_cache_free(struct dq_cache *c);
/* The cache key of the state of agg's instance id in db: database id, registry version,
 * lifecycle counter, stream version (appended to key). False when the answer may not be
 * cached (the database ages events out, a read failed). Any thread. */
bool dq_state_key(struct deql_ctx *x, struct db *db, const char *agg, const char *id,
                  struct buf *key);
/* The answer kept for key, appended to out; false when none. */
bool dq_cache_get(struct dq_cache *c, const char *key, struct buf *out);
/* Keeps bytes[0..len) for key (not when larger than 64 KiB). */
void dq_cache_put(struct dq_cache *c, const char *key, const char *bytes, size_t len);

/* ---- rewrite.c: INSPECT PROJECTION's source ---- */

/* A table of events a projection is computed over instead of the live ones. */
struct dq_source {
    const char *table;        /* SQL table expression: temp."t", DeReg."A$Events" */
    const char *const *cols;  /* its columns */
    size_t ncols;
    bool has_offset;
    uint64_t offset;          /* only its events with event_id > offset (when it has one) */
};
/* Appends sql with every DeReg."<A>$Events" of a registered aggregate replaced by a subquery
 * of s's events of A (stream_type = A when s has that column; a column per payload field,
 * from `data` when s lacks it) and every DeReg."<A>$Agg" by the $Agg view over that. */
void dq_rewrite_sources(const struct deql_reg *reg, const char *sql, const struct dq_source *s,
                        struct buf *out);

/* ---- run.c: scripts ---- */

/* POST /api/deql/run and /api/deql/create (create_only) on the pool. */
void dq_run_job(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc);

#endif
