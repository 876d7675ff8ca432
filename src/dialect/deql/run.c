/* POST /api/deql/run: a DeQL script, statement by statement, on a SQL worker.
 * Consecutive definitions are applied together (all or nothing, one DeReg
 * change); EXECUTE runs a decision and appends; SELECT/WITH answer tables;
 * CREATE TABLE ... AS, DROP TABLE and INSPECT work on the session's tables;
 * VALIDATE DEREG reports problems. The script stops at the first statement that
 * fails (what ran before it stays done: each statement is atomic, the script is
 * not). docs/dialects/deql.md ("Scripts") has the answer shapes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "util/errors.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"
#include "json/jenc.h"

struct runner {
    struct dq_job *j;
    struct dq_reg *r; /* referenced: the registry in force for the next statement */
    struct sql_conn *sc;
    const char *text;
    struct deql_script *script;
    struct buf results;     /* what each statement did: JSON items, comma-separated */
    size_t nresults;
    struct sql_result last; /* the last statement's table, when it made one */
    bool has_last;
    unsigned status; /* failure: its HTTP status (0: none) */
    char msg[600];
    json_t *extra; /* failure: members added to the error (a rejection) */
};

static int failf(struct runner *u, unsigned status, const char *msg)
{
    u->status = status;
    snprintf(u->msg, sizeof u->msg, "%s", msg);
    return ERR_INVALID;
}

/* Adds one item (JSON text of an object, without its braces when inner) to the results;
 * false past DEQL_SCRIPT_RESULT_BYTES. */
static bool add_result(struct runner *u, const char *kind, const char *inner, size_t len)
{
    if (u->results.len + len > DEQL_SCRIPT_RESULT_BYTES) {
        failf(u, 422, "the script's results would pass 64 MiB; run fewer statements at once");
        return false;
    }
    buf_adds(&u->results, u->nresults++ ? ",{\"statement\":" : "{\"statement\":");
    buf_add_json_str(&u->results, kind, strlen(kind));
    if (len) {
        buf_addc(&u->results, ',');
        buf_add(&u->results, inner, len);
    }
    buf_addc(&u->results, '}');
    return true;
}

/* A statement's table: the answer when it is the script's last; in the JSON results. */
static int set_table(struct runner *u, struct sql_result *res, const char *kind)
{
    if (u->has_last) {
        sql_result_fini(&u->last);
    }
    u->last = *res;
    u->has_last = true;
    memset(res, 0, sizeof(*res));
    if (!u->j->json_answer) {
        return 0;
    }
    struct buf b;
    buf_init(&b);
    sql_result_json(&u->last, &b); /* {"columns":...,"rows":...} */
    bool ok = add_result(u, kind, b.ptr + 1, b.len - 2);
    buf_fini(&b);
    return ok ? 0 : ERR_TOOBIG;
}

/* A statement's status (st taken: its members other than "statement"). */
static void set_status(struct runner *u, json_t *st)
{
    if (u->has_last) {
        sql_result_fini(&u->last);
        u->has_last = false;
    }
    char kind[64];
    snprintf(kind, sizeof kind, "%s", json_string_value(json_object_get(st, "statement")));
    json_object_del(st, "statement");
    struct buf b;
    buf_init(&b);
    jenc_tree(st, &b, SIZE_MAX, 64);
    json_decref(st);
    add_result(u, kind, b.ptr + 1, b.len - 2);
    buf_fini(&b);
}

/* Takes the registry in force now (after a change) and its connection. */
static int refresh(struct runner *u)
{
    dq_reg_unref(u->r);
    u->r = NULL;
    u->sc = NULL;
    int rc = dq_reg_get(u->j->x, u->j->db, &u->r);
    struct sql_error se = {{0}};
    if (!rc && !(u->sc = dq_conn(u->j->x, u->r, &se))) {
        char m[400];
        snprintf(m, sizeof m, "the registry does not build on SQL: %s", se.msg);
        return failf(u, 500, m);
    }
    return rc ? failf(u, 500, "the registry could not be read") : 0;
}

/* Statements [from, to) are definitions: applied as one script. */
static int run_definitions(struct runner *u, size_t from, size_t to)
{
    if (u->j->x->readonly) {
        return failf(u, 403, "the server is read-only");
    }
    struct buf s;
    buf_init(&s);
    for (size_t i = from; i < to; i++) {
        const struct deql_stmt *st = &u->script->stmts[i];
        buf_add(&s, u->text + st->text.off, st->text.len);
        buf_adds(&s, ";\n");
    }
    struct dq_apply a;
    int rc = dq_reg_apply(u->j->x, u->j->db, s.ptr, s.len, &a);
    buf_fini(&s);
    if (rc) {
        unsigned st = rc == ERR_EXISTS                        ? 409
                      : rc == ERR_NOTFOUND                    ? 404
                      : rc == ERR_INVALID || rc == ERR_TOOBIG ? 400
                                                              : 500;
        return failf(u, st, a.msg);
    }
    set_status(u, json_pack("{s:s,s:s,s:I}", "statement", "definitions", "status", "ok", "count",
                            (json_int_t)(to - from)));
    return refresh(u);
}

/* Runs a query on the head of the database, with the session's tables loaded. */
static int query(struct runner *u, const char *sql, size_t len, struct sql_result *res)
{
    struct sql_error se = {{0}};
    if (dq_session_load(u->j->x, u->r->db_id, u->j->session, u->sc, &se) != 0) {
        memset(res, 0, sizeof(*res));
        return failf(u, 500, se.msg);
    }
    sql_begin(u->sc, u->j->db, 0, false, NULL);
    int rc = sql_query(u->sc, sql, len, NULL, 0, res, &se);
    sql_end(u->sc);
    if (rc) {
        failf(u, dq_sql_status(rc), se.msg);
    }
    return rc;
}

static int run_execute(struct runner *u, const struct deql_stmt *st)
{
    if (u->j->x->readonly) {
        return failf(u, 403, "the server is read-only");
    }
    struct dq_cmd_value *vals = xcalloc(st->assign_count + 1, sizeof(*vals));
    struct sql_result hold = {0};
    char m[400];
    sql_drop_loaded(u->sc); /* a decision reads the registry's tables, not the session's */
    sql_begin(u->sc, u->j->db, 0, false, NULL);
    int rc = dq_eval_assigns(u->sc, u->text, st, vals, &hold, m, sizeof m);
    sql_end(u->sc);
    if (rc) {
        failf(u, 400, m);
    } else {
        struct dq_exec e;
        rc =
            dq_execute(u->j->x, u->j->db, u->r, u->sc, st->name, vals, st->assign_count, false, &e);
        if (e.rejected) {
            u->extra = json_incref(e.rejection);
            rc = failf(u, 422, e.msg);
        } else if (rc) {
            failf(u, e.status ? e.status : 500, e.msg);
        } else {
            rc = set_table(u, &e.events, "EXECUTE");
        }
        dq_exec_fini(&e);
    }
    sql_result_fini(&hold);
    free(vals);
    return rc;
}

/* Keeps res as the session's table name; answers the failure. */
static int put_table(struct runner *u, const char *name, const struct sql_result *res)
{
    int rc = dq_session_put(u->j->x, u->r->db_id, u->j->session, name, res);
    if (rc == ERR_INVALID) {
        char m[300];
        snprintf(m, sizeof m, "table %s cannot be kept: a table name is an identifier not "
                 "starting with sqlite_, and its columns need distinct names", name);
        return failf(u, 400, m);
    }
    if (rc) {
        return failf(u, 422, "the session would hold more than 64 tables or 64 MiB of rows; "
                             "drop some tables first");
    }
    return 0;
}

static int run_create_table(struct runner *u, const struct deql_stmt *st)
{
    if (st->table.schema) {
        return failf(u, 400, "session tables are unqualified names");
    }
    if (!dq_table_name_ok(st->table.name)) {
        return failf(u, 400, "invalid table name");
    }
    struct sql_result res;
    int rc = query(u, u->text + st->body.off, st->body.len, &res);
    if (rc) {
        return rc;
    }
    if (put_table(u, st->table.name, &res) != 0) {
        sql_result_fini(&res);
        return ERR_INVALID;
    }
    set_status(u, json_pack("{s:s,s:s,s:s,s:I}", "statement", "CREATE TABLE", "status", "ok",
                            "table", st->table.name, "rows", (json_int_t)res.nrows));
    sql_result_fini(&res);
    return 0;
}

static int run_drop_table(struct runner *u, const struct deql_stmt *st)
{
    int rc = st->table.schema
                 ? ERR_NOTFOUND
                 : dq_session_drop(u->j->x, u->r->db_id, u->j->session, st->table.name);
    if (rc && !st->if_exists) {
        char m[200];
        snprintf(m, sizeof m, "table %s is not in the session", st->table.name);
        return failf(u, 404, m);
    }
    set_status(u, json_pack("{s:s,s:s,s:s}", "statement", "DROP TABLE", "status", "ok", "table",
                            st->table.name));
    return 0;
}

/* ---- INSPECT DECISION ---- */

static struct sql_value text_value(const char *s)
{
    return (struct sql_value){.type = s ? SQL_TEXT : SQL_NULL, .s = s, .len = s ? strlen(s) : 0};
}

/* The next seq of stream in this inspection (its version now, plus what earlier
 * rows of the inspection emitted to it). */
static uint64_t next_seq(struct runner *u, struct strmap *seqs, const char *stream)
{
    bool is_new;
    uint64_t *v = strmap_put(seqs, stream, strlen(stream), &is_new);
    if (is_new) {
        struct stream_rec s;
        *v = engine_stream_info(u->j->db, (struct slice){stream, strlen(stream)}, NULL, &s) == 0
                 ? s.version
                 : 0;
    }
    return ++*v;
}

/* Adds the rows of one input row's dry run to the output and branches tables.
 */
static void inspect_rows(struct runner *u, const struct deql_obj *dec, size_t row, const char *key,
                         struct dq_exec *e, struct strmap *seqs, struct sql_result *out,
                         struct sql_result *br)
{
    char stream[LIMIT_STREAM_NAME_BYTES + 1];
    dq_stream_name(dec->dec.aggregate, key, stream, sizeof stream);
    char when[TIME_RFC3339_LEN];
    time_format(time_now_us(), when);
    size_t i;
    json_t *ev;
    json_array_foreach(e->emitted, i, ev)
    {
        uint8_t id[UUID_LEN];
        char idt[UUID_TEXT_LEN + 1];
        uuid_v7(time_now_us(), id);
        uuid_format(id, idt);
        struct sql_value cells[7] = {
            text_value(idt),
            text_value(dec->dec.aggregate),
            text_value(key),
            {.type = SQL_INT, .i = (int64_t)next_seq(u, seqs, stream)},
            text_value(json_string_value(json_object_get(ev, "event_type"))),
            text_value(when),
            text_value(json_string_value(json_object_get(ev, "data"))),
        };
        sql_result_add_row(out, cells);
    }
    json_t *b;
    json_array_foreach(e->branches, i, b)
    {
        json_t *types = json_object_get(b, "event_types");
        const char *first = json_string_value(json_array_get(types, 0));
        struct sql_value cells[9] = {
            {.type = SQL_INT, .i = (int64_t)row},
            text_value(dec->name),
            text_value(json_string_value(json_object_get(b, "branch_id"))),
            {.type = SQL_INT, .i = json_integer_value(json_object_get(b, "branch_index"))},
            text_value(json_string_value(json_object_get(b, "label"))),
            text_value(json_string_value(json_object_get(b, "guard"))),
            text_value(json_string_value(json_object_get(b, "status"))),
            text_value(first),
            text_value(key),
        };
        sql_result_add_row(br, cells);
    }
}

/* The input table of an INSPECT: a session table, else a query of the named
 * table. */
static int inspect_input(struct runner *u, const struct deql_qname *from, struct sql_result *in)
{
    if (!from->schema && dq_session_get(u->j->x, u->r->db_id, u->j->session, from->name, in) == 0) {
        return 0;
    }
    struct buf q;
    buf_init(&q);
    buf_adds(&q, "SELECT * FROM ");
    if (from->schema) {
        sql_quote_ident(from->schema, &q);
        buf_addc(&q, '.');
    }
    sql_quote_ident(from->name, &q);
    int rc = query(u, q.ptr, q.len, in);
    buf_fini(&q);
    return rc;
}

static int store_outputs(struct runner *u, const char *into, struct sql_result *out,
                         struct sql_result *br)
{
    char brname[DEQL_NAME_MAX * 2];
    snprintf(brname, sizeof brname, "%s__branches", into);
    return put_table(u, into, out) ? ERR_INVALID : put_table(u, brname, br) ? ERR_INVALID : 0;
}

static int run_inspect_decision(struct runner *u, const struct deql_stmt *st)
{
    char m[400];
    const struct deql_obj *dec = deql_reg_find(u->r->reg, DEQL_OBJ_DECISION, st->name);
    const struct deql_obj *cmd =
        dec ? deql_reg_find(u->r->reg, DEQL_OBJ_COMMAND, dec->dec.command) : NULL;
    if (!cmd) {
        snprintf(m, sizeof m, "decision %s (or its command) is not registered", st->name);
        return failf(u, 404, m);
    }
    if (st->inspect.into.schema || !dq_table_name_ok(st->inspect.into.name)) {
        return failf(u, 400, "INTO names a session table (an unqualified identifier)");
    }
    struct sql_result in;
    int rc = inspect_input(u, &st->inspect.from, &in);
    if (rc) {
        return rc;
    }
    sql_drop_loaded(u->sc); /* the decision reads the registry's tables, not the session's */
    if (in.nrows > DEQL_INSPECT_ROWS_MAX) {
        sql_result_fini(&in);
        return failf(u, 422, "INSPECT DECISION takes at most 100000 input rows");
    }
    if (in.ncols > cmd->nfields) {
        sql_result_fini(&in);
        snprintf(m, sizeof m, "the input has %zu columns; command %s has %zu fields", in.ncols,
                 cmd->name, cmd->nfields);
        return failf(u, 400, m);
    }
    static const char *const ocols[] = {"event_id",   "stream_type", "stream_id", "seq",
                                        "event_type", "occurred_at", "data"};
    static const char *const bcols[] = {"inspect_row_index", "decision_name",    "branch_id",
                                        "branch_index",      "branch_rule_name", "branch_guard",
                                        "branch_status",     "event_type",       "stream_id"};
    struct sql_result out, br;
    sql_result_init(&out, 7, ocols);
    sql_result_init(&br, 9, bcols);
    struct strmap seqs;
    strmap_init(&seqs, sizeof(uint64_t));
    struct dq_cmd_value *vals = xcalloc(in.ncols + 1, sizeof(*vals));
    size_t keyf = deql_reg_key_field(cmd);
    for (size_t row = 0; !rc && row < in.nrows; row++) {
        for (size_t k = 0; k < in.ncols; k++) {
            vals[k] = (struct dq_cmd_value){cmd->fields[k].name, *sql_cell(&in, row, k)};
        }
        char key[LIMIT_STREAM_NAME_BYTES + 1] = "";
        if (keyf < in.ncols) {
            dq_key_text(&vals[keyf].v, key, sizeof key);
        }
        struct dq_exec e;
        rc = dq_execute(u->j->x, u->j->db, u->r, u->sc, cmd->name, vals, in.ncols, true, &e);
        if (e.rejected) {
            rc = 0;
        } else if (rc) {
            snprintf(m, sizeof m, "input row %zu: %.340s", row, e.msg);
            failf(u, e.status ? e.status : 500, m);
        }
        if (!rc) {
            inspect_rows(u, dec, row, key, &e, &seqs, &out, &br);
        }
        if (!rc && (out.nrows > DEQL_INSPECT_ROWS_MAX || br.nrows > DEQL_INSPECT_ROWS_MAX)) {
            rc = failf(u, 422, "INSPECT DECISION would make more than 100000 rows");
        }
        dq_exec_fini(&e);
    }
    free(vals);
    strmap_fini(&seqs);
    sql_result_fini(&in);
    if (!rc) {
        rc = store_outputs(u, st->inspect.into.name, &out, &br);
    }
    if (!rc) {
        char input[DEQL_NAME_MAX * 2 + 2];
        snprintf(input, sizeof input, "%s%s%s",
                 st->inspect.from.schema ? st->inspect.from.schema : "",
                 st->inspect.from.schema ? "." : "", st->inspect.from.name);
        char *full = xstrndup(u->text + st->text.off, st->text.len);
        dq_session_record(u->j->x, u->r->db_id, u->j->session, st->name, "Decision", input,
                          st->inspect.into.name, full);
        free(full);
        set_status(u, json_pack("{s:s,s:s,s:s,s:I,s:I}", "statement", "INSPECT DECISION", "status",
                                "ok", "table", st->inspect.into.name, "rows", (json_int_t)out.nrows,
                                "branch_rows", (json_int_t)br.nrows));
    }
    sql_result_fini(&out);
    sql_result_fini(&br);
    return rc;
}

/* The source table of an INSPECT PROJECTION: its SQL text and columns (in *cols). */
static int projection_source(struct runner *u, const struct deql_qname *from, struct buf *table,
                             struct sql_result *cols)
{
    struct sql_result probe;
    bool session = !from->schema && dq_session_get(u->j->x, u->r->db_id, u->j->session,
                                                   from->name, &probe) == 0;
    if (session) {
        sql_result_fini(&probe);
        buf_adds(table, "temp.");
    } else if (from->schema) {
        sql_quote_ident(from->schema, table);
        buf_addc(table, '.');
    }
    sql_quote_ident(from->name, table);
    struct buf q;
    buf_init(&q);
    buf_printf(&q, "SELECT * FROM %s LIMIT 0", table->ptr);
    int rc = query(u, q.ptr, q.len, cols);
    buf_fini(&q);
    return rc;
}

/* INSPECT PROJECTION P FROM t INTO o [OFFSET n] [WHERE g] [LIMIT m]: the projection computed
 * over t's events (those after position n), filtered and limited, into o. */
static int run_inspect_projection(struct runner *u, const struct deql_stmt *st)
{
    char m[400];
    const struct deql_obj *p = deql_reg_find(u->r->reg, DEQL_OBJ_PROJECTION, st->name);
    if (!p) {
        snprintf(m, sizeof m, "projection %s is not registered", st->name);
        return failf(u, 404, m);
    }
    if (st->inspect.into.schema || !dq_table_name_ok(st->inspect.into.name)) {
        return failf(u, 400, "INTO names a session table (an unqualified identifier)");
    }
    struct buf table, q;
    buf_init(&table);
    buf_init(&q);
    struct sql_result cols = {0}, res = {0};
    int rc = projection_source(u, &st->inspect.from, &table, &cols);
    if (!rc) {
        struct dq_source src = {table.ptr, (const char *const *)cols.names, cols.ncols,
                                st->inspect.has_offset, st->inspect.offset};
        buf_adds(&q, "SELECT * FROM (");
        dq_rewrite_sources(u->r->reg, p->body, &src, &q);
        buf_addc(&q, ')');
        if (st->inspect.where.len) {
            buf_printf(&q, " WHERE (%.*s)", (int)st->inspect.where.len,
                       u->text + st->inspect.where.off);
        }
        if (st->inspect.has_limit) {
            buf_printf(&q, " LIMIT %llu", (unsigned long long)st->inspect.limit);
        }
        rc = query(u, q.ptr, q.len, &res);
    }
    buf_fini(&table);
    buf_fini(&q);
    sql_result_fini(&cols);
    if (rc) {
        return rc;
    }
    if (put_table(u, st->inspect.into.name, &res) != 0) {
        sql_result_fini(&res);
        return ERR_INVALID;
    }
    char *full = xstrndup(u->text + st->text.off, st->text.len);
    dq_session_record(u->j->x, u->r->db_id, u->j->session, st->name, "Projection",
                      st->inspect.from.name, st->inspect.into.name, full);
    free(full);
    set_status(u, json_pack("{s:s,s:s,s:s,s:I}", "statement", "INSPECT PROJECTION", "status", "ok",
                            "table", st->inspect.into.name, "rows", (json_int_t)res.nrows));
    sql_result_fini(&res);
    return 0;
}

static int run_validate(struct runner *u)
{
    struct buf b;
    buf_init(&b);
    size_t n = deql_reg_validate(u->r->reg, &b);
    json_t *problems = json_array();
    for (char *line = b.ptr, *end; n && line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        json_array_append_new(problems,
                              json_stringn(line, end ? (size_t)(end - line) : strlen(line)));
    }
    buf_fini(&b);
    set_status(u, json_pack("{s:s,s:s,s:o}", "statement", "VALIDATE DEREG", "status",
                            n ? "invalid" : "ok", "problems", problems));
    return 0;
}

static int run_one(struct runner *u, size_t *i)
{
    const struct deql_stmt *st = &u->script->stmts[*i];
    if (dq_is_definition(st->kind)) {
        size_t to = *i + 1;
        while (to < u->script->count && dq_is_definition(u->script->stmts[to].kind)) {
            to++;
        }
        int rc = run_definitions(u, *i, to);
        *i = to;
        return rc;
    }
    (*i)++;
    switch (st->kind) {
    case DEQL_EXECUTE:
        return run_execute(u, st);
    case DEQL_QUERY: {
        struct sql_result res;
        int rc = query(u, u->text + st->body.off, st->body.len, &res);
        return rc ? rc : set_table(u, &res, "SELECT");
    }
    case DEQL_CREATE_TABLE:
        return run_create_table(u, st);
    case DEQL_DROP_TABLE:
        return run_drop_table(u, st);
    case DEQL_INSPECT_DECISION:
        return run_inspect_decision(u, st);
    case DEQL_INSPECT_PROJECTION:
        return run_inspect_projection(u, st);
    case DEQL_VALIDATE_DEREG:
        return run_validate(u);
    default:
        return failf(u, 400, "this statement cannot be run here");
    }
}

static void answer(struct runner *u, size_t done)
{
    struct http_req *req = u->j->req;
    if (u->status) {
        json_t *body = u->extra ? json_deep_copy(u->extra) : json_object();
        json_object_set_new(body, "error", json_string(u->msg));
        json_object_set_new(body, "completed", json_integer((json_int_t)done));
        struct buf b;
        buf_init(&b);
        jenc_tree(body, &b, SIZE_MAX, 64);
        json_decref(body);
        http_respond(req, u->status, &b, NULL);
        return;
    }
    if (u->has_last && !u->j->json_answer) {
        dq_answer_table(req, &u->last);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"status\":\"ok\",\"results\":[");
    buf_add(&b, u->results.ptr ? u->results.ptr : "", u->results.len);
    buf_adds(&b, "]}");
    http_respond(req, 200, &b, NULL);
}

void dq_run_job(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    struct runner u = {.j = j, .sc = sc, .text = j->arg};
    buf_init(&u.results);
    u.r = (struct dq_reg *)r;
    __atomic_add_fetch(&u.r->refs, 1, __ATOMIC_ACQ_REL);
    struct deql_error pe = {0};
    size_t done = 0;
    if (deql_parse(j->arg, j->arg_len, &u.script, &pe) != 0) {
        char m[400];
        snprintf(m, sizeof m, "line %d, column %d: %s%s%s", pe.line, pe.column, pe.msg,
                 pe.expected[0] ? "; expected " : "", pe.expected);
        failf(&u, 400, m);
    } else {
        for (size_t i = 0; i < u.script->count && !u.status;) {
            size_t before = i;
            if (run_one(&u, &i) == 0) {
                done = i;
            } else if (!u.status) {
                failf(&u, 500, "the statement failed");
            }
            if (u.status) {
                char m[sizeof u.msg];
                const struct deql_stmt *st = &u.script->stmts[before];
                snprintf(m, sizeof m, "line %d (%s): %.500s", st->line,
                         deql_stmt_kind_name(st->kind), u.msg);
                memcpy(u.msg, m, sizeof m);
            }
        }
    }
    answer(&u, done);
    if (u.sc) {
        sql_drop_loaded(u.sc);
    }
    deql_script_free(u.script);
    buf_fini(&u.results);
    json_decref(u.extra);
    if (u.has_last) {
        sql_result_fini(&u.last);
    }
    dq_reg_unref(u.r);
}
