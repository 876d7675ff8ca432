/* The SQL engine: SQLite (libsqlite3, Debian's 3.40) connections locked down for user-written
 * queries, with a database's events exposed as read-only virtual tables in a schema named
 * DeReg, views over them, and LAST/FIRST aggregates. Measurements and the lock-down recipe:
 * ../shared/research/deql.md; choices: docs/design/sql.md. Knows nothing of HTTP or of DeQL's
 * language: a caller (the DeQL dialect) defines tables and views and runs queries.
 *
 * Lifecycle of a connection:
 *     sql_open -> sql_define_events / sql_define_view (any number) -> sql_seal
 *       -> { sql_begin -> sql_query ... -> sql_end } ... -> sql_close
 * Definitions are made before sql_seal; after it the authorizer allows only reads (SELECT,
 * READ, FUNCTION, RECURSIVE) for the rest of the connection's life. To change definitions,
 * close the connection and open another.
 *
 * Threads: a connection is used by one thread at a time (SQLITE_OPEN_NOMUTEX). It never runs
 * on an I/O or writer thread (user SQL is user code: docs/design/architecture.md). Reads go
 * through the engine's read functions (engine/engine.h); nothing here writes to the store. */
#ifndef SQL_SQL_H
#define SQL_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct db;
struct sql_conn;

/* Budgets of one connection; every one is enforced (each has a test that breaks it). */
struct sql_limits {
    int sql_bytes;         /* SQLITE_LIMIT_SQL_LENGTH: bytes of one statement's text */
    int value_bytes;       /* SQLITE_LIMIT_LENGTH: bytes of one string or blob value */
    int expr_depth;        /* SQLITE_LIMIT_EXPR_DEPTH */
    int compound_select;   /* SQLITE_LIMIT_COMPOUND_SELECT */
    int vdbe_ops;          /* SQLITE_LIMIT_VDBE_OP: instructions of one prepared statement */
    uint64_t steps;        /* progress-handler ticks (each SQL_PROGRESS_OPS VM instructions)
                              one sql_query may take before it is stopped with ERR_TOOBIG */
    int64_t heap_bytes;    /* sqlite3_hard_heap_limit64 (process-wide, set by the first
                              sql_open; later calls leave it) */
    size_t rows;           /* rows of one buffered result */
    size_t result_bytes;   /* bytes of one buffered result (cell values and text) */
    size_t scan_events;    /* events one sql_query may read through the virtual tables */
};
enum { SQL_PROGRESS_OPS = 1000 };
/* Aggregates every connection has: LAST(x) and FIRST(x): the last (first) non-null x in input
 * order; LAST(x, pos) and FIRST(x, pos): the non-null x with the greatest (least) pos, which
 * does not depend on the order SQLite feeds rows (the $Agg views use event_id). NULL when
 * every x is NULL. */

/* The defaults (docs/design/sql.md lists them). */
void sql_limits_default(struct sql_limits *l);

/* A payload column of an events table. */
struct sql_field {
    const char *name;      /* column name, also the member of the event's data object */
    const char *decl;      /* declared SQL type of the column: "INTEGER", "REAL", "TEXT",
                              "BOOLEAN", "TIMESTAMP" (result typing reads it back) */
    bool sensitive;        /* its values are hidden (NULL, and left out of `data`) unless
                              the running session reveals them (sql_begin) */
};

/* An events table: DeReg."<table>", read-only, over the events of the session's database
 * that carry tag `tag`, in position order. Columns, in order:
 *   event_id    INTEGER   the event's position (global, 1-based)
 *   stream_type TEXT      stream_type below
 *   stream_id   TEXT      the stream name without stream_prefix
 *   seq         INTEGER   the event's version in its stream (1-based)
 *   event_type  TEXT      the event type
 *   occurred_at TIMESTAMP its effective time as text "YYYY-MM-DDTHH:MM:SS.ffffffZ"
 *   data        TEXT      the payload object as JSON (sensitive members left out unless
 *                         revealed)
 *   then one column per field, in the order given: data's member of that name (integer,
 *   real, text; true/false as 1/0; objects and arrays as JSON text; absent or null: NULL).
 * A `stream_id = value` constraint reads just that stream (engine_read_stream of
 * stream_prefix + value); other scans read every event with the tag (engine_query on the tag
 * index) in pages. Events of other streams that carry the tag are skipped when their name
 * does not start with stream_prefix. */
struct sql_events_def {
    const char *table;          /* "Employee$Events" */
    const char *stream_type;    /* "Employee" */
    const char *tag;            /* "deql:Employee" */
    const char *stream_prefix;  /* "Employee-" */
    const struct sql_field *fields;
    size_t nfields;             /* 0..SQL_MAX_FIELDS */
};
enum { SQL_MAX_FIELDS = 512 };

/* What went wrong, for the caller's error text. */
struct sql_error {
    char msg[256]; /* SQLite's message or ours, NUL-terminated */
};

/* Opens an in-memory connection with schema DeReg attached, LAST and FIRST registered (below),
 * the events module registered, defensive mode on, extension loading and trusted schema off,
 * temp_store MEMORY, and the limits of lim (copied) applied; SQLITE_LIMIT_ATTACHED is 0 after
 * DeReg is attached. Returns 0, ERR_NOMEM or ERR_IO (*err says why). */
int sql_open(const struct sql_limits *lim, struct sql_conn **out, struct sql_error *err);
/* Closes c. NULL does nothing. */
void sql_close(struct sql_conn *c);

/* Defines an events table (before sql_seal). Returns 0, ERR_INVALID (bad name, duplicate,
 * sealed) with *err. */
int sql_define_events(struct sql_conn *c, const struct sql_events_def *def,
                      struct sql_error *err);
/* Defines DeReg."<name>" as a view of select_sql (before sql_seal). The view may use the
 * events tables and views defined before it. Returns 0 or ERR_INVALID (the SQL does not
 * compile: *err has SQLite's message). */
int sql_define_view(struct sql_conn *c, const char *name, const char *select_sql,
                    struct sql_error *err);
/* Ends definitions: from now on only reads are authorized. */
void sql_seal(struct sql_conn *c);

/* Starts a session of queries on db (borrowed for the session) that all see the database as
 * of position `snapshot` (0: its head now; the position used is in *out_snapshot), and
 * clears the read set. reveal: sensitive fields are shown (a decision's own queries). */
void sql_begin(struct sql_conn *c, struct db *db, uint64_t snapshot, bool reveal,
               uint64_t *out_snapshot);
/* Ends the session (the read set stays readable until the next sql_begin). */
void sql_end(struct sql_conn *c);

/* One read of the session: what the events tables read, for an append condition. */
struct sql_read {
    const char *tag;       /* the table's tag (borrowed from the connection); NULL: too many
                              reads to keep apart, take every event as read */
    bool whole;            /* every stream of the tag was read */
    char *stream;          /* else this stream's full name (prefix + id), owned by c */
};
/* The reads since sql_begin, deduplicated (*n of them; borrowed, valid until the next
 * sql_begin or sql_close). At most SQL_MAX_READS: beyond that the tag with the most stream
 * reads becomes one whole read, and when no tag has two, the set becomes one read of
 * everything (tag NULL). */
const struct sql_read *sql_reads(const struct sql_conn *c, size_t *n);
enum { SQL_MAX_READS = 64 };

/* A value in or out of SQL. */
enum sql_type { SQL_NULL, SQL_INT, SQL_REAL, SQL_TEXT };
struct sql_value {
    enum sql_type type;
    int64_t i;            /* SQL_INT */
    double d;             /* SQL_REAL */
    const char *s;        /* SQL_TEXT: s[0..len), not necessarily NUL-terminated */
    size_t len;
};

/* A named parameter: `:name` in the SQL (name given without the colon). Parameters the SQL
 * names but binds do not give are NULL; binds the SQL does not name are ignored. */
struct sql_bind {
    const char *name;
    struct sql_value v;
};

/* A buffered result: every cell copied, owned by the result. */
struct sql_result {
    size_t ncols;
    char **names;          /* column names */
    char **decls;          /* declared type of each column (sqlite3_column_decltype), or NULL */
    size_t nrows;
    struct sql_value *cells; /* nrows * ncols, row-major; text owned by the result */
    size_t bytes;          /* bytes held (counted against result_bytes) */
    void *mem;             /* (internal) */
};
void sql_result_fini(struct sql_result *r);
/* Results built by hand (result.c): an empty table of ncols columns named names[i] (copied;
 * no declared types). */
void sql_result_init(struct sql_result *r, size_t ncols, const char *const *names);
/* Appends a row of ncols cells (text copied). Only on a result made by sql_result_init or
 * sql_result_copy, never on a query's. */
void sql_result_add_row(struct sql_result *r, const struct sql_value *cells);
/* dst := a copy of src (any result), which may then take more rows. */
void sql_result_copy(struct sql_result *dst, const struct sql_result *src);
/* The cell of row, col. */
const struct sql_value *sql_cell(const struct sql_result *r, size_t row, size_t col);

/* Runs one statement (sql[0..len), exactly one: trailing text other than blanks, comments
 * and one ';' is ERR_INVALID) in the current session with binds, buffering every row into
 * *out (initialized by the call). Only reads are authorized after sql_seal: a write, ATTACH,
 * PRAGMA, or any other action fails with ERR_DENIED. Returns 0; ERR_INVALID (syntax, no
 * such table or column: *err has SQLite's message); ERR_DENIED; ERR_TOOBIG (a limit of
 * struct sql_limits: *err names it: "the query ran past its step budget (sql steps)",
 * "result rows", "result bytes", "scanned events", "heap"); ERR_IO or ERR_CORRUPT (a store
 * read failed). On error *out is empty (fini is harmless). */
int sql_query(struct sql_conn *c, const char *sql, size_t len, const struct sql_bind *binds,
              size_t nbinds, struct sql_result *out, struct sql_error *err);

/* Appends r as an Apache Arrow IPC stream (util/arrow.h) to out. Column types: declared
 * "TIMESTAMP" columns whose every value is such text -> Timestamp(us, UTC); declared
 * "BOOLEAN" columns of 0/1 integers -> Bool; otherwise inferred from the values
 * (arrow_type_join: integers Int64, reals or a mix Float64, text or any other mix Utf8, only
 * nulls Utf8). Returns 0 or ERR_TOOBIG (util/arrow.h's limits). */
int sql_result_arrow(const struct sql_result *r, struct buf *out);
/* Appends r as JSON: {"columns":[names],"rows":[[cells]]} (integers and reals as numbers,
 * non-finite reals null, text as strings). */
void sql_result_json(const struct sql_result *r, struct buf *out);
/* The Arrow type sql_result_arrow gives column col of r, by its readable name (util/arrow.h's
 * arrow_type_name: "int64", "float64", "bool", "utf8", "timestamp_us"); static text. */
const char *sql_result_arrow_type(const struct sql_result *r, size_t col);

/* Loads rows as the temporary table temp."<name>" (replacing one of that name): a table a
 * query may read by its bare name (a session's inspection tables). Our own statement, so it
 * works after sql_seal; the tables are the caller's to drop. Returns 0 or ERR_INVALID. */
int sql_load_table(struct sql_conn *c, const char *name, const struct sql_result *rows,
                   struct sql_error *err);
/* Drops every table sql_load_table made on c. */
void sql_drop_loaded(struct sql_conn *c);

/* Quotes an identifier for SQL text ("a""b"), appending to out. */
void sql_quote_ident(const char *name, struct buf *out);

#endif
