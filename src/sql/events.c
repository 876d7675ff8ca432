/* The annals_events virtual table module: a database's events that carry a tag, read-only,
 * as the rows of DeReg."<table>" (columns in sql.h). The module argument is the index of the
 * table's definition in its connection (struct sql_conn.defs), never a string to parse.
 *
 * Plans (xBestIndex):
 *   1  an EQ constraint on stream_id: engine_read_stream of prefix + value, in pages of
 *      EV_PAGE versions;
 *   2  ordered (or grouped) by stream_id alone: every stream of the prefix in name order
 *      (engine_list_streams), each read as plan 1, so GROUP BY stream_id needs no sort and
 *      the events of each group come in seq order (LAST(x) is then the stream's newest);
 *   0  anything else: engine_query on the tag, in pages of EV_PAGE events.
 * Both read as of the session's snapshot, so every scan of a session sees one database. A
 * page's events are copied into the cursor (the engine's slices die with its callback).
 * Invariants: every xFilter records its read in the connection's read set before reading;
 * every event handed to the cursor counts against limits.scan_events; an error of the store
 * or of a limit is kept in the connection (sql_conn_fail) so sql_query returns it as it was.
 *
 * Cursor:  xOpen -> EMPTY --xFilter--> ROWS --xNext (page used up)--> fetch_page --> ROWS
 *          ROWS --xNext (last row, no more pages)--> EOF --xFilter--> ROWS ... --xClose */
#include "sql/sql_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "json/jenc.h"
#include "json/jsonx.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/timeutil.h"

enum {
    EV_PAGE = 512,             /* events read per engine call */
    EV_PAGE_BYTES = 8 << 20,   /* ... and text bytes copied per page at most (large events) */
    EV_BUDGET = 64 * EV_PAGE,  /* candidates engine_query examines per page at most */
    EV_JSON_DEPTH = 4096,      /* nesting jenc_tree writes back (jansson parses less) */
    EV_NCOLS = 7,              /* columns before the fields */
    EV_COL_EVENT_ID = 0,
    EV_COL_STREAM_TYPE,
    EV_COL_STREAM_ID,
    EV_COL_SEQ,
    EV_COL_EVENT_TYPE,
    EV_COL_OCCURRED_AT,
    EV_COL_DATA,
};

static const char *const BASE_COLS[EV_NCOLS] = {
    "event_id INTEGER", "stream_type TEXT", "stream_id TEXT", "seq INTEGER",
    "event_type TEXT", "occurred_at TIMESTAMP", "data TEXT",
};

struct ev_vtab {
    sqlite3_vtab base;
    struct sql_conn *c;           /* the connection (the module's pAux) */
    const struct events_def *def; /* borrowed from c->defs */
};

/* One copied event; offsets into the cursor's text buffer. */
struct ev_row {
    uint64_t position;
    uint64_t version;
    int64_t time_us;
    size_t id_off, id_len;        /* stream_id: the name without the prefix */
    size_t type_off, type_len;
    size_t data_off, data_len;
};

struct ev_cursor {
    sqlite3_vtab_cursor base;
    struct ev_row *rows;          /* the current page, count rows */
    size_t count, cap;
    size_t at;                    /* current row */
    struct buf text;              /* the page's strings */
    bool more;                    /* a further page may exist */
    bool full;                    /* the page being fetched stopped at EV_PAGE_BYTES */
    uint64_t next;                /* plan 0: position, plan 1: version the next page starts at */
    char *stream;                 /* plans 1, 2: the stream's full name (owned) */
    bool by_stream;               /* plan 2: stream after stream */
    size_t stream_len;
    json_t *doc;                  /* the current row's data, parsed on first use (owned) */
    bool parsed;                  /* doc is this row's (NULL: not an object or unparsable) */
    size_t delivered;             /* events of the page being fetched */
};

/* ---------------------------------------------------------------- the read set */

/* Drops every single-stream read of tag. */
static void drop_stream_reads(struct sql_conn *c, const char *tag)
{
    size_t k = 0;
    for (size_t i = 0; i < c->nreads; i++) {
        if (c->reads[i].tag == tag && !c->reads[i].whole) {
            free(c->reads[i].stream);
            continue;
        }
        c->reads[k++] = c->reads[i];
    }
    c->nreads = k;
}

/* The tag with the most single-stream reads, and how many (0: none). */
static const char *busiest_tag(const struct sql_conn *c, size_t *count)
{
    const char *best = NULL;
    *count = 0;
    for (size_t i = 0; i < c->nreads; i++) {
        if (c->reads[i].whole) {
            continue;
        }
        size_t n = 0;
        for (size_t k = 0; k < c->nreads; k++) {
            n += !c->reads[k].whole && c->reads[k].tag == c->reads[i].tag;
        }
        if (n > *count) {
            best = c->reads[i].tag;
            *count = n;
        }
    }
    return best;
}

/* Makes room for one more read when the set is full: the tag with the most stream reads
 * becomes one whole read; when no tag has two, the set becomes "everything" (one read with
 * tag NULL), which a condition turns into "nothing at all changed". */
static void make_room(struct sql_conn *c)
{
    while (c->nreads >= SQL_MAX_READS) {
        size_t n;
        const char *tag = busiest_tag(c, &n);
        if (n < 2) {
            for (size_t i = 0; i < c->nreads; i++) {
                free(c->reads[i].stream);
            }
            c->nreads = 0;
            c->reads[c->nreads++] = (struct sql_read){.tag = NULL, .whole = true};
            return;
        }
        drop_stream_reads(c, tag);
        c->reads[c->nreads++] = (struct sql_read){.tag = tag, .whole = true};
    }
}

/* Records a read of the whole tag (stream NULL) or of one stream, deduplicated; past
 * SQL_MAX_READS reads collapse (make_room). */
/* True when the reads already cover this one. */
static bool covered(const struct sql_conn *c, const char *tag, const char *stream, size_t len)
{
    for (size_t i = 0; i < c->nreads; i++) {
        const struct sql_read *r = &c->reads[i];
        if (!r->tag || (r->tag == tag && (r->whole || (stream && strlen(r->stream) == len &&
                                                       !memcmp(r->stream, stream, len))))) {
            return true;
        }
    }
    return false;
}

static void note_read(struct sql_conn *c, const char *tag, const char *stream, size_t len)
{
    if (covered(c, tag, stream, len)) {
        return;
    }
    if (!stream) {
        drop_stream_reads(c, tag);
    }
    make_room(c);
    if (covered(c, tag, stream, len)) {
        return; /* a collapse made room by covering it */
    }
    c->reads[c->nreads++] = stream ? (struct sql_read){.tag = tag, .stream = xstrndup(stream, len)}
                                   : (struct sql_read){.tag = tag, .whole = true};
}

/* ---------------------------------------------------------------- schema */

static int ev_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                      sqlite3_vtab **out, char **err)
{
    struct sql_conn *c = aux;
    char *end = NULL;
    unsigned long idx = argc == 4 ? strtoul(argv[3], &end, 10) : (unsigned long)-1;
    if (!end || *end || idx >= c->ndefs) {
        *err = sqlite3_mprintf("annals_events takes the index of a definition");
        return SQLITE_ERROR;
    }
    const struct events_def *def = c->defs[idx];
    struct buf sql;
    buf_init(&sql);
    buf_adds(&sql, "CREATE TABLE x(");
    for (size_t i = 0; i < EV_NCOLS; i++) {
        buf_adds(&sql, i ? ", " : "");
        buf_adds(&sql, BASE_COLS[i]);
    }
    for (size_t i = 0; i < def->nfields; i++) {
        buf_adds(&sql, ", ");
        sql_quote_ident(def->fields[i].name, &sql);
        buf_printf(&sql, " %s", def->fields[i].decl);
    }
    buf_addc(&sql, ')');
    int rc = sqlite3_declare_vtab(db, sql.ptr);
    buf_fini(&sql);
    if (rc != SQLITE_OK) {
        return rc;
    }
    sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS); /* usable in views (trusted_schema off) */
    struct ev_vtab *vt = sqlite3_malloc(sizeof(*vt));
    if (!vt) {
        return SQLITE_NOMEM;
    }
    memset(vt, 0, sizeof(*vt));
    vt->c = c;
    vt->def = def;
    *out = &vt->base;
    return SQLITE_OK;
}

static int ev_disconnect(sqlite3_vtab *vtab)
{
    sqlite3_free(vtab);
    return SQLITE_OK;
}

/* Plan 1 when stream_id = value is usable (SQLite checks the constraint again: omit stays
 * 0, so a value of another type compares as SQL says); else plan 0, in position order. */
static int ev_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info)
{
    (void)vtab;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *k = &info->aConstraint[i];
        const char *coll = k->usable ? sqlite3_vtab_collation(info, i) : NULL;
        if (k->usable && k->iColumn == EV_COL_STREAM_ID && k->op == SQLITE_INDEX_CONSTRAINT_EQ &&
            (!coll || !strcmp(coll, "BINARY"))) { /* (NOCASE would match other streams) */
            info->aConstraintUsage[i].argvIndex = 1;
            info->idxNum = 1;
            info->estimatedCost = 10;
            info->estimatedRows = 10;
            return SQLITE_OK;
        }
    }
    info->idxNum = 0;
    info->estimatedCost = 1e6;
    info->estimatedRows = 1000000;
    if (info->nOrderBy == 1 && info->aOrderBy[0].iColumn == EV_COL_EVENT_ID &&
        !info->aOrderBy[0].desc) {
        info->orderByConsumed = 1;
    } else if (info->nOrderBy == 1 && info->aOrderBy[0].iColumn == EV_COL_STREAM_ID &&
               !info->aOrderBy[0].desc) { /* (SQLite passes no term with a COLLATE here) */
        info->idxNum = 2;
        info->orderByConsumed = 1;
    }
    return SQLITE_OK;
}

/* ---------------------------------------------------------------- cursor */

static int ev_open(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out)
{
    (void)vtab;
    struct ev_cursor *cur = sqlite3_malloc(sizeof(*cur));
    if (!cur) {
        return SQLITE_NOMEM;
    }
    memset(cur, 0, sizeof(*cur));
    buf_init(&cur->text);
    *out = &cur->base;
    return SQLITE_OK;
}

static void forget_doc(struct ev_cursor *cur)
{
    json_decref(cur->doc);
    cur->doc = NULL;
    cur->parsed = false;
}

static int ev_close(sqlite3_vtab_cursor *base)
{
    struct ev_cursor *cur = (struct ev_cursor *)base;
    forget_doc(cur);
    free(cur->rows);
    free(cur->stream);
    buf_fini(&cur->text);
    sqlite3_free(cur);
    return SQLITE_OK;
}

static struct sql_conn *cursor_conn(const struct ev_cursor *cur)
{
    return ((const struct ev_vtab *)cur->base.pVtab)->c;
}

static const struct events_def *cursor_def(const struct ev_cursor *cur)
{
    return ((const struct ev_vtab *)cur->base.pVtab)->def;
}

/* engine_event_fn: copies ev into the page when its stream has the prefix. */
/* True when the stored tags array carries tag. */
static bool has_tag(struct slice tags, const char *tag)
{
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0, n = strlen(tag);
    struct slice t;
    while (filter_next_tag(tags, &pos, scratch, &t)) {
        if (t.len == n && !memcmp(t.ptr, tag, n)) {
            return true;
        }
    }
    return false;
}

static int on_event(void *arg, const struct event_rec *ev)
{
    struct ev_cursor *cur = arg;
    struct sql_conn *c = cursor_conn(cur);
    const struct events_def *def = cursor_def(cur);
    cur->delivered++;
    cur->next = (cur->stream ? ev->version : ev->position) + 1;
    if (++c->scanned > c->lim.scan_events) {
        sql_conn_fail(c, ERR_TOOBIG, "the query read too many events (scanned events)");
        return 1;
    }
    if (ev->stream.len < def->prefix_len ||
        memcmp(ev->stream.ptr, def->prefix, def->prefix_len) != 0 ||
        (cur->stream && !has_tag(ev->tags, def->tag))) { /* a stream read sees the tag's
                                                            events only, as a scan does */
        return 0;
    }
    if (cur->count == cur->cap) {
        cur->cap = cur->cap ? 2 * cur->cap : EV_PAGE;
        cur->rows = xrealloc(cur->rows, cur->cap * sizeof(*cur->rows));
    }
    struct ev_row *r = &cur->rows[cur->count++];
    *r = (struct ev_row){.position = ev->position, .version = ev->version,
                         .time_us = ev->time_us};
    r->id_off = cur->text.len;
    r->id_len = ev->stream.len - def->prefix_len;
    buf_add(&cur->text, ev->stream.ptr + def->prefix_len, r->id_len);
    r->type_off = cur->text.len;
    r->type_len = ev->type.len;
    buf_add(&cur->text, ev->type.ptr, ev->type.len);
    r->data_off = cur->text.len;
    r->data_len = ev->data.len;
    buf_add(&cur->text, ev->data.ptr, ev->data.len);
    if (cur->text.len >= EV_PAGE_BYTES) { /* the page is full: the next starts at cur->next */
        cur->full = true;
        return 1;
    }
    return 0;
}

/* Maps an engine error to the statement's failure. */
static int read_failed(struct ev_cursor *cur, int rc)
{
    char msg[96];
    snprintf(msg, sizeof msg, "reading the events failed (%s)", err_name(rc));
    return sql_conn_fail(cursor_conn(cur), rc, msg);
}

/* Reads the next page into the cursor: engine_query on the tag (plan 0) or
 * engine_read_stream (plan 1), as of the session's snapshot. */
/* engine_stream_fn: takes the first stream listed (plan 2). */
static int first_stream(void *arg, struct slice name, const struct stream_rec *st)
{
    (void)st;
    struct ev_cursor *cur = arg;
    free(cur->stream);
    cur->stream = xstrndup(name.ptr, name.len);
    cur->stream_len = name.len;
    return 1;
}

/* Plan 2: moves to the stream after the current one (the first when none); false at the end
 * (or on an error: *rc). */
static bool next_stream(struct ev_cursor *cur, const struct as_of *at, int *rc)
{
    struct sql_conn *c = cursor_conn(cur);
    const struct events_def *def = cursor_def(cur);
    char *prev = cur->stream;
    size_t prev_len = cur->stream_len;
    cur->stream = NULL;
    *rc = engine_list_streams(c->edb, (struct slice){def->prefix, def->prefix_len},
                              (struct slice){prev, prev ? prev_len : 0}, at, first_stream, cur);
    free(prev);
    cur->next = 1;
    return *rc == 0 && cur->stream;
}

static int read_page(struct ev_cursor *cur)
{
    struct sql_conn *c = cursor_conn(cur);
    struct as_of at = {.has_pos = true, .pos = c->snapshot};
    cur->delivered = 0;
    cur->full = false;
    int rc = 0;
    if (cur->by_stream && !cur->stream && !next_stream(cur, &at, &rc)) {
        cur->more = false;
        return rc < 0 ? read_failed(cur, rc) : SQLITE_OK;
    }
    if (cur->stream) {
        rc = engine_read_stream(c->edb, (struct slice){cur->stream, cur->stream_len}, &at,
                                cur->next, false, EV_PAGE, on_event, cur, &(struct stream_rec){0},
                                NULL);
        if (rc == ERR_NOTFOUND || rc == ERR_DELETED) {
            rc = 0;
        }
        cur->more = rc == 0 && (cur->delivered == EV_PAGE || cur->full);
        if (rc == 0 && cur->by_stream && !cur->more) { /* this stream is done: the next */
            cur->more = next_stream(cur, &at, &rc);
        }
    } else {
        const char *tag = cursor_def(cur)->tag;
        struct pattern pat = {.kind = PAT_EXACT, .text = {tag, strlen(tag)}};
        struct filter f;
        filter_init(&f);
        filter_add_atom(&f, filter_add_item(&f), FF_TAG, &pat, 1);
        struct engine_query q = {.filter = &f, .has_from = true, .from = cur->next,
                                 .limit = EV_PAGE, .budget = EV_BUDGET, .at = at};
        struct engine_query_result res = {0};
        rc = engine_query(c->edb, &q, on_event, cur, &res);
        filter_fini(&f);
        if (!cur->full) { /* (when full, on_event has set next past the last event kept) */
            cur->next = rc == 0 ? res.next : 0;
        }
        cur->more = rc == 0 && (cur->full || res.next != 0);
    }
    if (c->vt_err) {
        return SQLITE_ERROR;
    }
    return rc < 0 ? read_failed(cur, rc) : SQLITE_OK;
}

/* Fetches pages until one has a row of the table or none is left. */
static int fill(struct ev_cursor *cur)
{
    forget_doc(cur);
    while (cur->at >= cur->count && cur->more) {
        cur->count = 0;
        cur->at = 0;
        buf_reset(&cur->text);
        int rc = read_page(cur);
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    return SQLITE_OK;
}

static int ev_filter(sqlite3_vtab_cursor *base, int plan, const char *plan_str, int argc,
                     sqlite3_value **argv)
{
    (void)plan_str;
    struct ev_cursor *cur = (struct ev_cursor *)base;
    struct sql_conn *c = cursor_conn(cur);
    const struct events_def *def = cursor_def(cur);
    free(cur->stream);
    cur->stream = NULL;
    cur->by_stream = plan == 2;
    cur->count = cur->at = 0;
    cur->more = false;
    if (!c->edb) {
        return sql_conn_fail(c, ERR_INVALID, "no session: the events tables need sql_begin");
    }
    if (plan == 1 && argc == 1) {
        const unsigned char *id = sqlite3_value_text(argv[0]);
        if (!id) {
            return sqlite3_value_type(argv[0]) == SQLITE_NULL ? SQLITE_OK : SQLITE_NOMEM;
        }
        size_t len = (size_t)sqlite3_value_bytes(argv[0]);
        cur->stream_len = def->prefix_len + len;
        cur->stream = xmalloc(cur->stream_len + 1);
        memcpy(cur->stream, def->prefix, def->prefix_len);
        memcpy(cur->stream + def->prefix_len, id, len);
        cur->stream[cur->stream_len] = '\0';
        note_read(c, def->tag, cur->stream, cur->stream_len);
    } else {
        note_read(c, def->tag, NULL, 0);
    }
    cur->next = 1;
    cur->more = true;
    return fill(cur);
}

static int ev_next(sqlite3_vtab_cursor *base)
{
    struct ev_cursor *cur = (struct ev_cursor *)base;
    cur->at++;
    return fill(cur);
}

static int ev_eof(sqlite3_vtab_cursor *base)
{
    const struct ev_cursor *cur = (const struct ev_cursor *)base;
    return cur->at >= cur->count;
}

static int ev_rowid(sqlite3_vtab_cursor *base, sqlite3_int64 *out)
{
    const struct ev_cursor *cur = (const struct ev_cursor *)base;
    *out = (sqlite3_int64)cur->rows[cur->at].position;
    return SQLITE_OK;
}

/* ---------------------------------------------------------------- column values */

/* The row's data as a tree (parsed once per row); NULL when it is no JSON object. */
static json_t *row_doc(struct ev_cursor *cur)
{
    if (!cur->parsed) {
        const struct ev_row *r = &cur->rows[cur->at];
        cur->doc = json_loadb(cur->text.ptr + r->data_off, r->data_len, JSON_DECODE_ANY, NULL);
        if (cur->doc && !json_is_object(cur->doc)) {
            forget_doc(cur);
        }
        cur->parsed = true;
    }
    return cur->doc;
}

/* Sets the result to v's JSON text (NULL when it cannot be written). */
static void result_json(sqlite3_context *ctx, const json_t *v)
{
    struct buf b;
    buf_init(&b);
    if (jenc_tree(v, &b, SIZE_MAX, EV_JSON_DEPTH) == 0) {
        sqlite3_result_text64(ctx, b.ptr, b.len, SQLITE_TRANSIENT, SQLITE_UTF8);
    } else {
        sqlite3_result_null(ctx);
    }
    buf_fini(&b);
}

/* data: as stored when nothing is hidden, else the object without its sensitive members. */
static void column_data(struct ev_cursor *cur, sqlite3_context *ctx)
{
    const struct events_def *def = cursor_def(cur);
    const struct ev_row *r = &cur->rows[cur->at];
    if (!def->has_sensitive || cursor_conn(cur)->reveal) {
        sqlite3_result_text64(ctx, cur->text.ptr + r->data_off, r->data_len, SQLITE_TRANSIENT,
                              SQLITE_UTF8);
        return;
    }
    json_t *doc = row_doc(cur);
    if (!doc) {
        sqlite3_result_null(ctx); /* not an object: nothing can be shown safely */
        return;
    }
    for (size_t i = 0; i < def->nfields; i++) {
        if (def->fields[i].sensitive) {
            json_object_del(doc, def->fields[i].name); /* hidden for this row anyway */
        }
    }
    result_json(ctx, doc);
}

/* Sets the result to the JSON number span v: an integer when it is written as one and fits,
 * else a real. */
static void result_number(sqlite3_context *ctx, struct slice v)
{
    char small[64];
    char *text = v.len < sizeof small ? small : xmalloc(v.len + 1);
    memcpy(text, v.ptr, v.len);
    text[v.len] = 0;
    bool integral = !memchr(v.ptr, '.', v.len) && !memchr(v.ptr, 'e', v.len) &&
                    !memchr(v.ptr, 'E', v.len);
    errno = 0;
    long long i = integral ? strtoll(text, NULL, 10) : 0;
    if (integral && errno == 0) {
        sqlite3_result_int64(ctx, i);
    } else {
        sqlite3_result_double(ctx, strtod(text, NULL));
    }
    if (text != small) {
        free(text);
    }
}

/* Field column k: data's member of that name, read from the stored text without building a
 * tree (the stored data is valid, minified JSON; field names need no escapes). */
static void column_field(struct ev_cursor *cur, sqlite3_context *ctx, size_t k)
{
    const struct sql_field *f = &cursor_def(cur)->fields[k];
    const struct ev_row *r = &cur->rows[cur->at];
    struct slice data = {cur->text.ptr + r->data_off, r->data_len};
    struct slice v = {0};
    if ((f->sensitive && !cursor_conn(cur)->reveal) || jsonx_kind(data) != '{' ||
        !jsonx_member(data, f->name, &v)) {
        sqlite3_result_null(ctx);
        return;
    }
    switch (jsonx_kind(v)) {
    case 't': sqlite3_result_int(ctx, 1); break;
    case 'f': sqlite3_result_int(ctx, 0); break;
    case 'n': sqlite3_result_null(ctx); break;
    case '"': {
        struct buf b;
        buf_init(&b);
        if (jsonx_string(v, &b) == 0) {
            sqlite3_result_text64(ctx, b.ptr ? b.ptr : "", b.len, SQLITE_TRANSIENT, SQLITE_UTF8);
        } else {
            sqlite3_result_null(ctx);
        }
        buf_fini(&b);
        break;
    }
    case '{':
    case '[': sqlite3_result_text64(ctx, v.ptr, v.len, SQLITE_TRANSIENT, SQLITE_UTF8); break;
    default: result_number(ctx, v); break;
    }
}

static int ev_column(sqlite3_vtab_cursor *base, sqlite3_context *ctx, int col)
{
    struct ev_cursor *cur = (struct ev_cursor *)base;
    const struct ev_row *r = &cur->rows[cur->at];
    char when[TIME_RFC3339_LEN];
    switch (col) {
    case EV_COL_EVENT_ID: sqlite3_result_int64(ctx, (sqlite3_int64)r->position); break;
    case EV_COL_STREAM_TYPE:
        sqlite3_result_text(ctx, cursor_def(cur)->stream_type, -1, SQLITE_STATIC);
        break;
    case EV_COL_STREAM_ID:
        sqlite3_result_text64(ctx, cur->text.ptr + r->id_off, r->id_len, SQLITE_TRANSIENT,
                              SQLITE_UTF8);
        break;
    case EV_COL_SEQ: sqlite3_result_int64(ctx, (sqlite3_int64)r->version); break;
    case EV_COL_EVENT_TYPE:
        sqlite3_result_text64(ctx, cur->text.ptr + r->type_off, r->type_len, SQLITE_TRANSIENT,
                              SQLITE_UTF8);
        break;
    case EV_COL_OCCURRED_AT:
        time_format(r->time_us, when);
        sqlite3_result_text(ctx, when, -1, SQLITE_TRANSIENT);
        break;
    case EV_COL_DATA: column_data(cur, ctx); break;
    default: column_field(cur, ctx, (size_t)(col - EV_NCOLS)); break;
    }
    return SQLITE_OK;
}

static const sqlite3_module EVENTS_MODULE = {
    .iVersion = 1,
    .xCreate = ev_connect,
    .xConnect = ev_connect,
    .xBestIndex = ev_best_index,
    .xDisconnect = ev_disconnect,
    .xDestroy = ev_disconnect,
    .xOpen = ev_open,
    .xClose = ev_close,
    .xFilter = ev_filter,
    .xNext = ev_next,
    .xEof = ev_eof,
    .xColumn = ev_column,
    .xRowid = ev_rowid,
    /* no xUpdate: read-only */
};

int sql_events_register(struct sql_conn *c)
{
    return sqlite3_create_module_v2(c->db, "annals_events", &EVENTS_MODULE, c, NULL);
}
