/* The SQL engine's connection (sql.h): opening a locked-down SQLite connection, definitions
 * before sealing, sessions, running one statement into a buffered result, LAST/FIRST, and
 * writing results as Arrow or JSON. Choices and defaults: docs/design/sql.md.
 *
 * Connection:  sql_open --> DEFINING --sql_define_events/view--> DEFINING
 *              DEFINING --sql_seal--> SEALED (only SELECT, READ, FUNCTION, RECURSIVE)
 *              SEALED --sql_begin--> SESSION --sql_query...--> SESSION --sql_end--> SEALED
 *              any --sql_close--> freed
 * Invariants: the progress handler and the authorizer are always installed; before sealing
 * the authorizer allows more only while one of our own definitions runs (c->defining); a
 * statement's failure recorded by us (c->vt_err, c->out_of_steps) wins over SQLite's code. */
#include "sql/sql_int.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"
#include "json/jenc.h"
#include "util/arrow.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

enum {
    SQL_DEFINE_SQL_BYTES = 1000000, /* statement length while defining (a table of
                                       SQL_MAX_FIELDS columns, a long view) */
};

void sql_limits_default(struct sql_limits *l)
{
    *l = (struct sql_limits){
        .sql_bytes = 100 * 1000,
        .value_bytes = 16 * 1024 * 1024,
        .expr_depth = 100,
        .compound_select = 32,
        .vdbe_ops = 50000,
        .steps = 100000,
        .heap_bytes = (int64_t)512 * 1024 * 1024,
        .rows = 100000,
        .result_bytes = 64 * 1024 * 1024,
        .scan_events = 10 * 1000 * 1000,
    };
}

static void set_error(struct sql_error *err, const char *msg)
{
    if (err) {
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
}

int sql_conn_fail(struct sql_conn *c, int err, const char *msg)
{
    if (!c->vt_err) {
        c->vt_err = err;
        snprintf(c->vt_msg, sizeof c->vt_msg, "%s", msg);
    }
    return SQLITE_ERROR;
}

/* ---------------------------------------------------------------- lock-down */

/* Functions no statement may call, even where SQLite would let it (files, pointers). */
static bool function_banned(const char *name)
{
    static const char *const BANNED[] = {"load_extension", "readfile", "writefile", "edit",
                                         "fts3_tokenizer"};
    for (size_t i = 0; name && i < sizeof BANNED / sizeof BANNED[0]; i++) {
        if (!strcasecmp(name, BANNED[i])) {
            return true;
        }
    }
    return false;
}

static int on_authorize(void *arg, int action, const char *a, const char *b, const char *db,
                        const char *trigger)
{
    (void)b;
    (void)db;
    (void)trigger;
    struct sql_conn *c = arg;
    bool ok;
    switch (action) {
    case SQLITE_FUNCTION: ok = !function_banned(b); break;
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE: ok = true; break;
    default: (void)a; ok = (c->defining && !c->sealed) || c->loading; break;
    }
    c->denied |= !ok; /* (SQLite reports some denials as SQLITE_ERROR) */
    return ok ? SQLITE_OK : SQLITE_DENY;
}

/* Stops the running statement once it has taken limits.steps ticks. */
static int on_progress(void *arg)
{
    struct sql_conn *c = arg;
    if (c->loading) { /* our own statements (loading tables) are not the user's budget */
        return 0;
    }
    if (++c->ticks > c->lim.steps) {
        c->out_of_steps = true;
        return 1;
    }
    return 0;
}

static void set_limits(struct sql_conn *c)
{
    sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH, c->lim.sql_bytes);
    sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, c->lim.value_bytes);
    sqlite3_limit(c->db, SQLITE_LIMIT_EXPR_DEPTH, c->lim.expr_depth);
    sqlite3_limit(c->db, SQLITE_LIMIT_COMPOUND_SELECT, c->lim.compound_select);
    sqlite3_limit(c->db, SQLITE_LIMIT_VDBE_OP, c->lim.vdbe_ops);
    sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(c->db, SQLITE_LIMIT_TRIGGER_DEPTH, 1);
    sqlite3_limit(c->db, SQLITE_LIMIT_WORKER_THREADS, 0);
}

/* The connection's settings: defensive, no extensions, untrusted schema, no triggers, no
 * double-quoted string literals (a quoted name is always a name). */
static int configure(sqlite3 *db)
{
    static const int OFF[] = {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
                              SQLITE_DBCONFIG_TRUSTED_SCHEMA, SQLITE_DBCONFIG_ENABLE_TRIGGER,
                              SQLITE_DBCONFIG_DQS_DML, SQLITE_DBCONFIG_DQS_DDL,
                              SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER};
    int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof OFF / sizeof OFF[0]; i++) {
        rc = sqlite3_db_config(db, OFF[i], 0, (int *)NULL);
    }
    if (rc == SQLITE_OK) rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 1, (int *)NULL);
    if (rc == SQLITE_OK) rc = sqlite3_enable_load_extension(db, 0);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "PRAGMA temp_store=MEMORY; ATTACH ':memory:' AS DeReg", NULL,
                          NULL, NULL);
    }
    return rc;
}

/* SQLite's memory: our allocator, counting every byte in one atomic counter against the
 * process-wide cap (the first sql_open's heap_bytes). SQLite's own accounting
 * (SQLITE_CONFIG_MEMSTATUS, which sqlite3_hard_heap_limit64 needs) takes a global mutex on every
 * allocation: with a connection per worker thread, that mutex was most of the CPU of a state
 * read. Each block carries its size in a 16-byte header (alignment kept). */
enum { HEAP_HDR = 16 };
static int64_t heap_cap;  /* bytes; 0 = no cap */
static int64_t heap_used; /* atomic */

static bool heap_take(int64_t n)
{
    int64_t after = __atomic_add_fetch(&heap_used, n, __ATOMIC_RELAXED);
    if (heap_cap && n > 0 && after > heap_cap) {
        __atomic_sub_fetch(&heap_used, n, __ATOMIC_RELAXED);
        return false;
    }
    return true;
}

static void *heap_malloc(int n)
{
    if (n <= 0 || !heap_take(n)) {
        return NULL;
    }
    char *p = malloc((size_t)n + HEAP_HDR);
    if (!p) {
        heap_take(-(int64_t)n);
        return NULL;
    }
    *(size_t *)p = (size_t)n;
    return p + HEAP_HDR;
}

static int heap_size(void *p)
{
    return p ? (int)*(size_t *)((char *)p - HEAP_HDR) : 0;
}

static void heap_free(void *p)
{
    if (p) {
        heap_take(-(int64_t)heap_size(p));
        free((char *)p - HEAP_HDR);
    }
}

static void *heap_realloc(void *p, int n)
{
    if (!p) {
        return heap_malloc(n);
    }
    int64_t old = heap_size(p);
    if (n <= 0 || !heap_take((int64_t)n - old)) {
        return NULL;
    }
    char *q = realloc((char *)p - HEAP_HDR, (size_t)n + HEAP_HDR);
    if (!q) {
        heap_take(old - (int64_t)n);
        return NULL;
    }
    *(size_t *)q = (size_t)n;
    return q + HEAP_HDR;
}

static int heap_roundup(int n)
{
    return (n + 7) & ~7;
}

static int heap_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void heap_shutdown(void *arg)
{
    (void)arg;
}

static int64_t first_cap;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

static void heap_configure(void)
{
    static const sqlite3_mem_methods methods = {heap_malloc, heap_free, heap_realloc,
                                                heap_size,   heap_roundup, heap_init,
                                                heap_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK) {
        /* SQLite started before us: its own allocator, without a cap */
        log_error("sql: SQLite was initialized before its allocator was set; no heap cap");
    }
    heap_cap = first_cap > 0 ? first_cap : 0;
}

/* The process-wide heap limit, set once (the first sql_open's), before SQLite starts. */
static void set_heap_limit(int64_t bytes)
{
    int64_t none = 0; /* the first caller's cap wins (-1: no cap) */
    __atomic_compare_exchange_n(&first_cap, &none, bytes > 0 ? bytes : -1, false,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    pthread_once(&heap_once, heap_configure);
}

/* ---------------------------------------------------------------- LAST and FIRST */

/* The state of one LAST or FIRST group. */
struct pick {
    sqlite3_value *v;     /* the value kept (owned, sqlite3_value_dup) */
    sqlite3_value *pos;   /* its position (2-argument form) */
};

/* SQLite's order of two non-null values: numbers before text before blobs. */
static int value_cmp(sqlite3_value *a, sqlite3_value *b)
{
    int ta = sqlite3_value_numeric_type(a), tb = sqlite3_value_numeric_type(b);
    bool na = ta == SQLITE_INTEGER || ta == SQLITE_FLOAT;
    bool nb = tb == SQLITE_INTEGER || tb == SQLITE_FLOAT;
    if (na && nb) {
        if (ta == SQLITE_INTEGER && tb == SQLITE_INTEGER) {
            sqlite3_int64 x = sqlite3_value_int64(a), y = sqlite3_value_int64(b);
            return (x > y) - (x < y);
        }
        double x = sqlite3_value_double(a), y = sqlite3_value_double(b);
        return (x > y) - (x < y);
    }
    if (na != nb) {
        return na ? -1 : 1;
    }
    if (ta != tb) {
        return ta < tb ? -1 : 1; /* SQLITE_TEXT (3) before SQLITE_BLOB (4) */
    }
    int la = sqlite3_value_bytes(a), lb = sqlite3_value_bytes(b);
    const void *pa = sqlite3_value_blob(a), *pb = sqlite3_value_blob(b);
    int r = memcmp(pa ? pa : "", pb ? pb : "", (size_t)(la < lb ? la : lb));
    return r ? r : (la > lb) - (la < lb);
}

/* Keeps x (and pos) in p; false when out of memory. */
static bool keep(struct pick *p, sqlite3_value *x, sqlite3_value *pos)
{
    sqlite3_value *nv = sqlite3_value_dup(x);
    sqlite3_value *np = pos ? sqlite3_value_dup(pos) : NULL;
    if (!nv || (pos && !np)) {
        sqlite3_value_free(nv);
        sqlite3_value_free(np);
        return false;
    }
    sqlite3_value_free(p->v);
    sqlite3_value_free(p->pos);
    p->v = nv;
    p->pos = np;
    return true;
}

/* One step of LAST (is_last) or FIRST. */
static void pick_step(sqlite3_context *ctx, int argc, sqlite3_value **argv, bool is_last)
{
    sqlite3_value *pos = argc == 2 ? argv[1] : NULL;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL ||
        (pos && sqlite3_value_type(pos) == SQLITE_NULL)) {
        return;
    }
    struct pick *p = sqlite3_aggregate_context(ctx, sizeof(*p));
    if (!p) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    bool take = !p->v || (pos ? (is_last ? value_cmp(pos, p->pos) >= 0
                                         : value_cmp(pos, p->pos) < 0)
                              : is_last);
    if (take && !keep(p, argv[0], pos)) {
        sqlite3_result_error_nomem(ctx);
    }
}

static void last_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    pick_step(ctx, argc, argv, true);
}

static void first_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    pick_step(ctx, argc, argv, false);
}

static void pick_final(sqlite3_context *ctx)
{
    struct pick *p = sqlite3_aggregate_context(ctx, 0);
    if (!p || !p->v) {
        sqlite3_result_null(ctx);
    } else {
        sqlite3_result_value(ctx, p->v);
    }
    if (p) {
        sqlite3_value_free(p->v);
        sqlite3_value_free(p->pos);
        p->v = p->pos = NULL;
    }
}

static int register_functions(sqlite3 *db)
{
    static const struct {
        const char *name;
        void (*step)(sqlite3_context *, int, sqlite3_value **);
    } AGGS[] = {{"last", last_step}, {"first", first_step}};
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < 2; i++) {
        for (int nargs = 1; rc == SQLITE_OK && nargs <= 2; nargs++) {
            rc = sqlite3_create_function_v2(db, AGGS[i].name, nargs,
                                            SQLITE_UTF8 | SQLITE_INNOCUOUS, NULL, NULL,
                                            AGGS[i].step, pick_final, NULL);
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- open, define, close */

int sql_open(const struct sql_limits *lim, struct sql_conn **out, struct sql_error *err)
{
    *out = NULL;
    struct sql_conn *c = xcalloc(1, sizeof(*c));
    c->lim = *lim;
    set_heap_limit(lim->heap_bytes);
    int rc = sqlite3_open_v2(":memory:", &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc == SQLITE_OK) rc = configure(c->db);
    if (rc == SQLITE_OK) rc = register_functions(c->db);
    if (rc == SQLITE_OK) rc = sql_events_register(c);
    if (rc != SQLITE_OK) {
        set_error(err, c->db ? sqlite3_errmsg(c->db) : "cannot open a SQLite connection");
        sql_close(c);
        return rc == SQLITE_NOMEM ? ERR_NOMEM : ERR_IO;
    }
    set_limits(c);
    sqlite3_set_authorizer(c->db, on_authorize, c);
    sqlite3_progress_handler(c->db, SQL_PROGRESS_OPS, on_progress, c);
    *out = c;
    return 0;
}

static void def_free(struct events_def *d)
{
    if (!d) {
        return;
    }
    for (size_t i = 0; i < d->nfields; i++) {
        free((char *)d->fields[i].name);
        free((char *)d->fields[i].decl);
    }
    free(d->fields);
    free(d->table);
    free(d->stream_type);
    free(d->tag);
    free(d->prefix);
    free(d);
}

static void clear_reads(struct sql_conn *c)
{
    for (size_t i = 0; i < c->nreads; i++) {
        free(c->reads[i].stream);
    }
    c->nreads = 0;
}

void sql_close(struct sql_conn *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < SQL_STMT_CACHE; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
    }
    sqlite3_close_v2(c->db);
    for (size_t i = 0; i < c->ndefs; i++) {
        def_free(c->defs[i]);
    }
    free(c->defs);
    clear_reads(c);
    for (size_t i = 0; i < c->nloaded; i++) {
        free(c->loaded[i]);
    }
    free(c->loaded);
    free(c);
}

/* Our own statements may be longer than a user's, and compile to larger programs: a table
 * of SQL_MAX_FIELDS columns, a long view (SQLite caps the VDBE limit at its own maximum). */
static void set_sql_length(struct sql_conn *c, bool defining)
{
    c->ticks = 0;
    sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH,
                  defining ? SQL_DEFINE_SQL_BYTES : c->lim.sql_bytes);
    sqlite3_limit(c->db, SQLITE_LIMIT_VDBE_OP, defining ? INT32_MAX : c->lim.vdbe_ops);
}

/* Runs one of our own definition statements (authorized while defining). */
static int define(struct sql_conn *c, const char *sql, struct sql_error *err)
{
    c->defining = true;
    set_sql_length(c, true);
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    set_sql_length(c, false);
    c->defining = false;
    if (rc != SQLITE_OK) {
        set_error(err, msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : ERR_INVALID;
}

static bool decl_ok(const char *decl)
{
    static const char *const DECLS[] = {"INTEGER", "REAL", "TEXT", "BOOLEAN", "TIMESTAMP"};
    for (size_t i = 0; decl && i < sizeof DECLS / sizeof DECLS[0]; i++) {
        if (!strcmp(decl, DECLS[i])) {
            return true;
        }
    }
    return false;
}

/* Why def cannot be a table (NULL: it can). */
static const char *def_fault(const struct sql_events_def *def)
{
    static const char *const BASE[] = {"event_id", "stream_type", "stream_id", "seq",
                                       "event_type", "occurred_at", "data"};
    if (!def->table || !def->table[0] || !def->stream_type || !def->tag || !def->tag[0] ||
        !def->stream_prefix) {
        return "a table needs a name, a stream type, a tag and a stream prefix";
    }
    if (def->nfields > SQL_MAX_FIELDS || (def->nfields && !def->fields)) {
        return "too many fields";
    }
    for (size_t i = 0; i < def->nfields; i++) {
        const struct sql_field *f = &def->fields[i];
        if (!f->name || !f->name[0] || !decl_ok(f->decl)) {
            return "a field needs a name and a declared type of INTEGER, REAL, TEXT, BOOLEAN "
                   "or TIMESTAMP";
        }
        for (size_t j = 0; j < sizeof BASE / sizeof BASE[0]; j++) {
            if (!strcasecmp(f->name, BASE[j])) return "a field has the name of a column";
        }
        for (size_t j = 0; j < i; j++) {
            if (!strcasecmp(f->name, def->fields[j].name)) return "two fields have one name";
        }
    }
    return NULL;
}

static struct events_def *def_copy(const struct sql_events_def *def)
{
    struct events_def *d = xcalloc(1, sizeof(*d));
    d->table = xstrndup(def->table, strlen(def->table));
    d->stream_type = xstrndup(def->stream_type, strlen(def->stream_type));
    d->tag = xstrndup(def->tag, strlen(def->tag));
    d->prefix_len = strlen(def->stream_prefix);
    d->prefix = xstrndup(def->stream_prefix, d->prefix_len);
    d->fields = xcalloc(def->nfields ? def->nfields : 1, sizeof(*d->fields));
    d->nfields = def->nfields;
    for (size_t i = 0; i < def->nfields; i++) {
        const struct sql_field *f = &def->fields[i];
        d->fields[i] = (struct sql_field){.name = xstrndup(f->name, strlen(f->name)),
                                          .decl = xstrndup(f->decl, strlen(f->decl)),
                                          .sensitive = f->sensitive};
        d->has_sensitive |= f->sensitive;
    }
    return d;
}

int sql_define_events(struct sql_conn *c, const struct sql_events_def *def,
                      struct sql_error *err)
{
    const char *fault = c->sealed ? "definitions are sealed" : def_fault(def);
    if (fault) {
        set_error(err, fault);
        return ERR_INVALID;
    }
    c->defs = xrealloc(c->defs, (c->ndefs + 1) * sizeof(*c->defs));
    c->defs[c->ndefs++] = def_copy(def); /* (xCreate looks it up) */
    struct buf sql;
    buf_init(&sql);
    buf_adds(&sql, "CREATE VIRTUAL TABLE DeReg.");
    sql_quote_ident(def->table, &sql);
    buf_printf(&sql, " USING annals_events(%zu)", c->ndefs - 1);
    int rc = define(c, sql.ptr, err);
    buf_fini(&sql);
    if (rc) {
        def_free(c->defs[--c->ndefs]);
    }
    return rc;
}

/* True when s[0..len) holds only blanks and SQL comments. */
static bool only_blanks(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (strchr(" \t\r\n\f\v", s[i]) && s[i]) {
            i++;
        } else if (len - i >= 2 && s[i] == '-' && s[i + 1] == '-') {
            while (i < len && s[i] != '\n') i++;
        } else if (len - i >= 2 && s[i] == '/' && s[i + 1] == '*') {
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < len && !end; j++) {
                if (s[j] == '*' && s[j + 1] == '/') end = s + j + 2;
            }
            i = end ? (size_t)(end - s) : len; /* an unclosed comment ends the text */
        } else {
            return false;
        }
    }
    return true;
}

/* Prepares exactly one statement of sql[0..len) (ERR_INVALID otherwise). */
static int prepare_one(struct sql_conn *c, const char *sql, size_t len, sqlite3_stmt **out,
                       struct sql_error *err);

int sql_define_view(struct sql_conn *c, const char *name, const char *select_sql,
                    struct sql_error *err)
{
    if (c->sealed || !name || !name[0] || !select_sql) {
        set_error(err, c->sealed ? "definitions are sealed" : "a view needs a name and SQL");
        return ERR_INVALID;
    }
    sqlite3_stmt *st;
    set_sql_length(c, true); /* the select alone compiles as a read, and is one statement */
    int rc = prepare_one(c, select_sql, strlen(select_sql), &st, err);
    set_sql_length(c, false);
    if (rc) {
        return rc == ERR_DENIED ? ERR_INVALID : rc;
    }
    bool is_read = sqlite3_stmt_readonly(st);
    sqlite3_finalize(st);
    if (!is_read) {
        set_error(err, "a view is one SELECT");
        return ERR_INVALID;
    }
    struct buf sql;
    buf_init(&sql);
    buf_adds(&sql, "CREATE VIEW DeReg.");
    sql_quote_ident(name, &sql);
    buf_adds(&sql, " AS ");
    buf_adds(&sql, select_sql);
    rc = define(c, sql.ptr, err);
    buf_fini(&sql);
    return rc;
}

void sql_seal(struct sql_conn *c)
{
    c->sealed = true;
}

/* ---------------------------------------------------------------- sessions */

void sql_begin(struct sql_conn *c, struct db *db, uint64_t snapshot, bool reveal,
               uint64_t *out_snapshot)
{
    clear_reads(c);
    c->edb = db;
    c->snapshot = snapshot ? snapshot : db ? engine_db_head(db) : 0;
    c->reveal = reveal;
    if (out_snapshot) {
        *out_snapshot = c->snapshot;
    }
}

void sql_end(struct sql_conn *c)
{
    c->edb = NULL;
    c->reveal = false;
}

const struct sql_read *sql_reads(const struct sql_conn *c, size_t *n)
{
    *n = c->nreads;
    return c->reads;
}

void sql_quote_ident(const char *name, struct buf *out)
{
    buf_addc(out, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"') {
            buf_addc(out, '"');
        }
        buf_addc(out, *p);
    }
    buf_addc(out, '"');
}

/* ---------------------------------------------------------------- running a statement */

/* The ERR_* of a failed statement (preparing: while it compiled), with *err saying why: our
 * own record first, then SQLite's code. */
static int statement_error(struct sql_conn *c, int rc, bool preparing, struct sql_error *err)
{
    if (c->vt_err) {
        set_error(err, c->vt_msg);
        return c->vt_err;
    }
    if (c->out_of_steps) {
        set_error(err, "the query ran past its step budget (sql steps)");
        return ERR_TOOBIG;
    }
    if (c->denied || (rc & 0xff) == SQLITE_AUTH) {
        set_error(err, sqlite3_errmsg(c->db));
        return ERR_DENIED;
    }
    switch (rc & 0xff) {
    case SQLITE_NOMEM: /* SQLite reports a program past SQLITE_LIMIT_VDBE_OP as NOMEM too */
        set_error(err, preparing ? "the statement compiles to too large a program or ran out "
                                   "of memory (vdbe ops, heap)"
                                 : "the query ran out of memory (heap)");
        return ERR_TOOBIG;
    case SQLITE_TOOBIG:
        set_error(err, "a string or blob is too long (value bytes)");
        return ERR_TOOBIG;
    default:
        set_error(err, sqlite3_errmsg(c->db));
        /* a write to an events table is refused before the authorizer is asked */
        return strstr(err ? err->msg : "", "may not be modified") ? ERR_DENIED : ERR_INVALID;
    }
}

static int prepare_one(struct sql_conn *c, const char *sql, size_t len, sqlite3_stmt **out,
                       struct sql_error *err)
{
    *out = NULL;
    c->vt_err = 0;
    c->out_of_steps = false;
    c->denied = false;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, out, &tail);
    if (rc != SQLITE_OK) {
        return statement_error(c, rc, true, err);
    }
    if (!*out) {
        set_error(err, "no statement");
        return ERR_INVALID;
    }
    if (!only_blanks(tail, len - (size_t)(tail - sql))) {
        sqlite3_finalize(*out);
        *out = NULL;
        set_error(err, "only one statement may be given");
        return ERR_INVALID;
    }
    return 0;
}

/* Binds v (NULL: SQL NULL) as parameter i of st; a SQLite code. */
static int bind_value(sqlite3_stmt *st, int i, const struct sql_value *v)
{
    switch (v ? v->type : SQL_NULL) {
    case SQL_INT: return sqlite3_bind_int64(st, i, v->i);
    case SQL_REAL: return sqlite3_bind_double(st, i, v->d);
    case SQL_TEXT:
        return sqlite3_bind_text64(st, i, v->s ? v->s : "", v->len, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    default: return sqlite3_bind_null(st, i);
    }
}

/* Binds every :name of st that binds give (the others stay NULL). */
static int bind_all(sqlite3_stmt *st, const struct sql_bind *binds, size_t nbinds)
{
    int rc = SQLITE_OK;
    for (int i = 1; rc == SQLITE_OK && i <= sqlite3_bind_parameter_count(st); i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        const struct sql_value *v = NULL;
        for (size_t k = 0; name && name[0] != '?' && k < nbinds && !v; k++) {
            if (!strcmp(name + 1, binds[k].name)) v = &binds[k].v;
        }
        rc = bind_value(st, i, v);
    }
    return rc;
}

/* The result while it is built: text goes to `text`, and a text cell's i holds its offset
 * there until finish_result points s at it. */
struct builder {
    struct sql_result *r;
    struct buf text;
    size_t cap;          /* cells allocated */
};

static char *dup_or_null(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

static void start_result(struct builder *b, sqlite3_stmt *st)
{
    struct sql_result *r = b->r;
    memset(r, 0, sizeof(*r));
    buf_init(&b->text);
    b->cap = 0;
    r->ncols = (size_t)sqlite3_column_count(st);
    r->names = xcalloc(r->ncols ? r->ncols : 1, sizeof(*r->names));
    r->decls = xcalloc(r->ncols ? r->ncols : 1, sizeof(*r->decls));
    for (size_t i = 0; i < r->ncols; i++) {
        const char *name = sqlite3_column_name(st, (int)i);
        r->names[i] = dup_or_null(name ? name : "");
        r->decls[i] = dup_or_null(sqlite3_column_decltype(st, (int)i));
    }
}

/* Copies the current row of st; ERR_TOOBIG (*err set) past limits.rows or result_bytes. */
static int add_row(struct sql_conn *c, struct builder *b, sqlite3_stmt *st,
                   struct sql_error *err)
{
    struct sql_result *r = b->r;
    if (r->nrows == c->lim.rows) {
        set_error(err, "the result has too many rows (result rows)");
        return ERR_TOOBIG;
    }
    if ((r->nrows + 1) * r->ncols > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16 * (r->ncols ? r->ncols : 1);
        r->cells = xrealloc(r->cells, b->cap * sizeof(*r->cells));
    }
    for (size_t k = 0; k < r->ncols; k++) {
        struct sql_value *v = &r->cells[r->nrows * r->ncols + k];
        *v = (struct sql_value){.type = SQL_NULL};
        r->bytes += sizeof(*v);
        switch (sqlite3_column_type(st, (int)k)) {
        case SQLITE_INTEGER:
            *v = (struct sql_value){SQL_INT, .i = sqlite3_column_int64(st, (int)k)};
            break;
        case SQLITE_FLOAT:
            *v = (struct sql_value){SQL_REAL, .d = sqlite3_column_double(st, (int)k)};
            break;
        case SQLITE_NULL: break;
        default: { /* text, and blobs as their bytes */
            const unsigned char *s = sqlite3_column_text(st, (int)k);
            size_t len = (size_t)sqlite3_column_bytes(st, (int)k);
            *v = (struct sql_value){SQL_TEXT, .i = (int64_t)b->text.len, .len = len};
            buf_add(&b->text, s ? (const char *)s : "", len);
            buf_addc(&b->text, '\0');
            r->bytes += len + 1;
        }
        }
    }
    r->nrows++;
    if (r->bytes > c->lim.result_bytes) {
        set_error(err, "the result is too large (result bytes)");
        return ERR_TOOBIG;
    }
    return 0;
}

/* Points the text cells at the text buffer, which the result then owns. */
static void finish_result(struct builder *b)
{
    struct sql_result *r = b->r;
    r->mem = buf_steal(&b->text, NULL);
    for (size_t k = 0; k < r->nrows * r->ncols; k++) {
        struct sql_value *v = &r->cells[k];
        if (v->type == SQL_TEXT) {
            v->s = (const char *)r->mem + v->i;
            v->i = 0;
        }
    }
}

/* The cached statement of sql[0..len), or NULL. */
static struct cached_stmt *cache_find(struct sql_conn *c, const char *sql, size_t len)
{
    for (size_t i = 0; i < SQL_STMT_CACHE; i++) {
        struct cached_stmt *e = &c->cache[i];
        if (e->st && e->len == len && !memcmp(e->sql, sql, len)) {
            e->used = ++c->cache_clock;
            return e;
        }
    }
    return NULL;
}

/* Keeps st (prepared from sql) in the cache, in place of the least recently used one. */
static void cache_put(struct sql_conn *c, const char *sql, size_t len, sqlite3_stmt *st)
{
    struct cached_stmt *victim = &c->cache[0];
    for (size_t i = 0; i < SQL_STMT_CACHE; i++) {
        if (!c->cache[i].st) {
            victim = &c->cache[i];
            break;
        }
        if (c->cache[i].used < victim->used) {
            victim = &c->cache[i];
        }
    }
    sqlite3_finalize(victim->st);
    free(victim->sql);
    *victim = (struct cached_stmt){xstrndup(sql, len), len, st, ++c->cache_clock};
}

/* A statement for sql: the cached one (its last run reset), or a new one, kept when it is a
 * read. Returns 0 or prepare_one's error. */
static int statement_for(struct sql_conn *c, const char *sql, size_t len, sqlite3_stmt **out,
                         struct sql_error *err)
{
    c->vt_err = 0;
    c->out_of_steps = false;
    c->denied = false;
    struct cached_stmt *e = cache_find(c, sql, len);
    if (e) {
        *out = e->st;
        return 0;
    }
    int rc = prepare_one(c, sql, len, out, err);
    if (!rc && (!c->sealed || sqlite3_stmt_readonly(*out))) {
        cache_put(c, sql, len, *out);
    }
    return rc;
}

/* Ends a statement's run: a cached one is reset for its next, another finalized. */
static void statement_done(struct sql_conn *c, sqlite3_stmt *st)
{
    for (size_t i = 0; i < SQL_STMT_CACHE; i++) {
        if (c->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

int sql_query(struct sql_conn *c, const char *sql, size_t len, const struct sql_bind *binds,
              size_t nbinds, struct sql_result *out, struct sql_error *err)
{
    memset(out, 0, sizeof(*out));
    if (len > (size_t)c->lim.sql_bytes) {
        set_error(err, "the statement is too long (sql bytes)");
        return ERR_TOOBIG;
    }
    c->ticks = 0;
    c->scanned = 0;
    sqlite3_stmt *st;
    int rc = statement_for(c, sql, len, &st, err);
    if (rc) {
        return rc;
    }
    if (c->sealed && !sqlite3_stmt_readonly(st)) { /* (a REINDEX with nothing to do) */
        set_error(err, "only reads are allowed");
        rc = ERR_DENIED;
        goto out_done;
    }
    if (bind_all(st, binds, nbinds) != SQLITE_OK) {
        rc = statement_error(c, sqlite3_errcode(c->db), false, err);
        goto out_done;
    }
    struct builder b = {.r = out};
    start_result(&b, st);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        rc = add_row(c, &b, st, err);
        if (rc) break;
    }
    if (!rc && step != SQLITE_DONE) {
        rc = statement_error(c, step, false, err);
    }
    finish_result(&b);
    if (rc) {
        sql_result_fini(out);
    }
out_done:
    statement_done(c, st);
    return rc;
}

void sql_result_fini(struct sql_result *r)
{
    for (size_t i = 0; i < r->ncols && r->names; i++) {
        free(r->names[i]);
        free(r->decls[i]);
    }
    free(r->names);
    free(r->decls);
    free(r->cells);
    free(r->mem);
    memset(r, 0, sizeof(*r));
}

const struct sql_value *sql_cell(const struct sql_result *r, size_t row, size_t col)
{
    return &r->cells[row * r->ncols + col];
}

/* ---------------------------------------------------------------- output */

/* Appends a real as JSON text: the shortest form that reads back, null when not finite. */
static void add_real(struct buf *out, double d)
{
    json_t *j = isfinite(d) ? json_real(d) : NULL;
    if (!j || jenc_tree(j, out, 64, 1) != 0) {
        buf_adds(out, "null");
    }
    json_decref(j);
}

void sql_result_json(const struct sql_result *r, struct buf *out)
{
    buf_adds(out, "{\"columns\":[");
    for (size_t k = 0; k < r->ncols; k++) {
        buf_adds(out, k ? "," : "");
        buf_add_json_str(out, r->names[k], strlen(r->names[k]));
    }
    buf_adds(out, "],\"rows\":[");
    for (size_t i = 0; i < r->nrows; i++) {
        buf_adds(out, i ? ",[" : "[");
        for (size_t k = 0; k < r->ncols; k++) {
            const struct sql_value *v = sql_cell(r, i, k);
            buf_adds(out, k ? "," : "");
            switch (v->type) {
            case SQL_INT: buf_add_i64(out, v->i); break;
            case SQL_REAL: add_real(out, v->d); break;
            case SQL_TEXT: buf_add_json_str(out, v->s, v->len); break;
            default: buf_adds(out, "null"); break;
            }
        }
        buf_addc(out, ']');
    }
    buf_adds(out, "]}");
}

static bool decl_is(const char *decl, const char *want)
{
    return decl && !strcasecmp(decl, want);
}

/* The Arrow type of column k (sql.h: declared TIMESTAMP and BOOLEAN, else inferred). */
static enum arrow_type column_type(const struct sql_result *r, size_t k)
{
    bool is_ts = decl_is(r->decls[k], "TIMESTAMP"), is_bool = decl_is(r->decls[k], "BOOLEAN");
    enum arrow_type t = ARROW_NULL;
    for (size_t i = 0; i < r->nrows; i++) {
        const struct sql_value *v = sql_cell(r, i, k);
        int64_t us;
        is_ts &= v->type == SQL_NULL ||
                 (v->type == SQL_TEXT && time_parse(v->s, v->len, &us) == 0);
        is_bool &= v->type == SQL_NULL || (v->type == SQL_INT && (v->i == 0 || v->i == 1));
        t = arrow_type_join(t, v->type == SQL_INT    ? ARROW_INT64
                               : v->type == SQL_REAL ? ARROW_FLOAT64
                               : v->type == SQL_TEXT ? ARROW_UTF8
                                                     : ARROW_NULL);
    }
    return is_ts ? ARROW_TIMESTAMP_US : is_bool ? ARROW_BOOL : t;
}

/* Appends cell v to column k of type t. */
static int add_cell(struct arrow_table *t, size_t k, enum arrow_type type,
                    const struct sql_value *v)
{
    int64_t us;
    char num[32];
    switch (v->type == SQL_NULL ? ARROW_NULL : type) {
    case ARROW_NULL: return arrow_table_add_null(t, k);
    case ARROW_BOOL: return arrow_table_add_bool(t, k, v->i != 0);
    case ARROW_INT64: return arrow_table_add_int64(t, k, v->i);
    case ARROW_FLOAT64:
        return arrow_table_add_float64(t, k, v->type == SQL_INT ? (double)v->i : v->d);
    case ARROW_TIMESTAMP_US:
        time_parse(v->s, v->len, &us);
        return arrow_table_add_timestamp_us(t, k, us);
    default:
        if (v->type == SQL_TEXT) {
            return arrow_table_add_utf8(t, k, v->s, v->len);
        }
        if (v->type == SQL_INT) {
            snprintf(num, sizeof num, "%lld", (long long)v->i);
            return arrow_table_add_utf8(t, k, num, strlen(num));
        }
        struct buf b;
        buf_init(&b);
        add_real(&b, v->d);
        int rc = arrow_table_add_utf8(t, k, b.ptr, b.len);
        buf_fini(&b);
        return rc;
    }
}

const char *sql_result_arrow_type(const struct sql_result *r, size_t col)
{
    enum arrow_type t = column_type(r, col);
    return arrow_type_name(t == ARROW_NULL ? ARROW_UTF8 : t);
}

int sql_result_arrow(const struct sql_result *r, struct buf *out)
{
    if (r->ncols == 0 || r->ncols > ARROW_MAX_COLUMNS) {
        return r->ncols ? ERR_TOOBIG : ERR_INVALID;
    }
    enum arrow_type *types = xcalloc(r->ncols, sizeof(*types));
    for (size_t k = 0; k < r->ncols; k++) {
        types[k] = column_type(r, k);
    }
    struct arrow_table t;
    int rc = arrow_table_init(&t, r->ncols, (const char *const *)r->names, types);
    for (size_t i = 0; !rc && i < r->nrows; i++) {
        for (size_t k = 0; !rc && k < r->ncols; k++) {
            rc = add_cell(&t, k, types[k], sql_cell(r, i, k));
        }
    }
    if (!rc) {
        rc = arrow_table_write(&t, out);
    }
    arrow_table_fini(&t);
    free(types);
    return rc == ERR_INVALID && r->nrows ? ERR_TOOBIG : rc;
}

/* ---------------------------------------------------------------- loaded tables */

/* Runs one of our own statements on loaded tables (authorized while loading). */
static int load_exec(struct sql_conn *c, const char *sql, struct sql_error *err)
{
    c->ticks = 0;
    c->loading = true;
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    c->loading = false;
    if (rc != SQLITE_OK) {
        set_error(err, msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : ERR_INVALID;
}

/* Inserts every row of rows into the loaded table `quoted` (an identifier, quoted). */
static int load_rows(struct sql_conn *c, const char *quoted, const struct sql_result *rows,
                     struct sql_error *err)
{
    struct buf q;
    buf_init(&q);
    buf_printf(&q, "INSERT INTO temp.%s VALUES (", quoted);
    for (size_t k = 0; k < rows->ncols; k++) {
        buf_adds(&q, k ? ", ?" : "?");
    }
    buf_addc(&q, ')');
    c->ticks = 0;
    c->loading = true;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, q.ptr, (int)q.len, &st, NULL);
    for (size_t row = 0; rc == SQLITE_OK && row < rows->nrows; row++) {
        for (size_t k = 0; rc == SQLITE_OK && k < rows->ncols; k++) {
            rc = bind_value(st, (int)k + 1, sql_cell(rows, row, k));
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : sqlite3_errcode(c->db);
        }
    }
    if (rc != SQLITE_OK) {
        set_error(err, sqlite3_errmsg(c->db));
    }
    sqlite3_finalize(st);
    c->loading = false;
    buf_fini(&q);
    return rc == SQLITE_OK ? 0 : ERR_INVALID;
}

int sql_load_table(struct sql_conn *c, const char *name, const struct sql_result *rows,
                   struct sql_error *err)
{
    if (!name || !name[0] || rows->ncols == 0) {
        set_error(err, "a loaded table needs a name and columns");
        return ERR_INVALID;
    }
    struct buf quoted, q;
    buf_init(&quoted);
    buf_init(&q);
    sql_quote_ident(name, &quoted);
    buf_printf(&q, "DROP TABLE IF EXISTS temp.%s; CREATE TEMP TABLE %s (", quoted.ptr,
               quoted.ptr);
    for (size_t k = 0; k < rows->ncols; k++) {
        if (k) {
            buf_adds(&q, ", ");
        }
        sql_quote_ident(rows->names[k], &q);
    }
    buf_addc(&q, ')');
    int rc = load_exec(c, q.ptr, err);
    if (!rc) { /* made: dropped by sql_drop_loaded even when its rows do not all load */
        c->loaded = xrealloc(c->loaded, (c->nloaded + 1) * sizeof(*c->loaded));
        c->loaded[c->nloaded++] = xstrndup(name, strlen(name));
        rc = load_rows(c, quoted.ptr, rows, err);
    }
    buf_fini(&quoted);
    buf_fini(&q);
    return rc;
}

void sql_drop_loaded(struct sql_conn *c)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->nloaded; i++) {
        struct buf q;
        buf_init(&q);
        buf_adds(&q, "DROP TABLE IF EXISTS temp.");
        sql_quote_ident(c->loaded[i], &q);
        struct sql_error err;
        if (load_exec(c, q.ptr, &err) != 0) { /* kept for the next try */
            c->loaded[kept++] = c->loaded[i];
        } else {
            free(c->loaded[i]);
        }
        buf_fini(&q);
    }
    c->nloaded = kept;
}
