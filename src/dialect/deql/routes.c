/* DeQL routes: the REST API of the seed (aggregates, events, inspection tables,
 * execute, DeReg metadata, projections) and the optional routes of its
 * documentation (run, create, export, query, health, info). Handlers check
 * names and parameters on the I/O thread, then queue a job on the dialect's SQL
 * pool, which answers. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/workq.h"
#include "json/jenc.h"

static const char ARROW_TYPE[] = "application/vnd.apache.arrow.stream";

static struct deql_ctx *ctx_of(const struct gate_call *c)
{
    return c->ctx;
}

/* The envelope: {"error": "..."}. */
static unsigned deql_error(const struct gate_error *e, struct buf *out)
{
    const char *msg = e->message ? e->message : e->code ? e->code : "error";
    buf_adds(out, "{\"error\":");
    buf_add_json_str(out, msg, strlen(msg));
    buf_addc(out, '}');
    return e->kind;
}

static void fail(const struct gate_call *c, unsigned status, const char *msg)
{
    struct gate_error e = {.kind = status, .message = msg};
    gate_fail(c, &e);
}

unsigned dq_sql_status(int err)
{
    return err == ERR_INVALID ? 400 : err == ERR_DENIED ? 403 : err == ERR_TOOBIG ? 422 : 500;
}

void dq_fail_req(struct http_req *req, unsigned status, const char *msg)
{
    struct gate_error e = {.kind = status, .message = msg};
    gate_fail_req(&deql_mount, req, &e);
}

void dq_answer_table(struct http_req *req, const struct sql_result *r)
{
    struct buf b;
    buf_init(&b);
    if (sql_result_arrow(r, &b) != 0) {
        buf_fini(&b);
        dq_fail_req(req, 500, "the result could not be written as Arrow IPC");
        return;
    }
    http_respond(req, 200, &b, ARROW_TYPE);
}

void dq_answer_arrow(struct http_req *req, struct arrow_table *t)
{
    struct buf b;
    buf_init(&b);
    int rc = arrow_table_write(t, &b);
    arrow_table_fini(t);
    if (rc) {
        buf_fini(&b);
        dq_fail_req(req, 500, "the result could not be written as Arrow IPC");
        return;
    }
    http_respond(req, 200, &b, ARROW_TYPE);
}

/* ---- jobs ---- */

static void job_free(struct dq_job *j)
{
    if (j->db) {
        engine_db_release(j->db);
    }
    free(j->arg);
    free(j->arg2);
    free(j->cache_key);
    free(j);
}

static void job_run(void *arg, bool cancelled)
{
    struct dq_job *j = arg;
    if (cancelled) {
        dq_fail_req(j->req, 503, "the server is stopping");
        job_free(j);
        return;
    }
    struct dq_reg *r = NULL;
    int rc = dq_reg_get(j->x, j->db, &r);
    if (rc) {
        char msg[160];
        snprintf(msg, sizeof msg, "the registry could not be read: %s", err_name(rc));
        dq_fail_req(j->req, 500, msg);
        job_free(j);
        return;
    }
    struct sql_conn *sc = NULL;
    struct sql_error se = {{0}};
    if (!j->no_conn && !(sc = dq_conn(j->x, r, &se))) {
        char msg[400];
        snprintf(msg, sizeof msg, "the registry does not build on SQL: %s", se.msg);
        dq_fail_req(j->req, 500, msg);
    } else {
        if (sc) {
            sql_drop_loaded(sc); /* another request's session tables must not be seen */
        }
        j->fn(j, r, sc);
    }
    dq_reg_unref(r);
    job_free(j);
}

struct dq_job *dq_job_new(struct gate_call *c, dq_job_fn *fn)
{
    struct dq_job *j = xcalloc(1, sizeof(*j));
    j->x = ctx_of(c);
    j->req = c->req;
    j->fn = fn;
    return j;
}

void dq_submit(struct gate_call *c, struct dq_job *j)
{
    j->db = c->db;
    c->db = NULL;
    http_defer(c->req);
    if (workq_submit(j->x->pool, job_run, j) != 0) {
        dq_fail_req(j->req, 503, "too many requests wait for a SQL worker; try again shortly");
        job_free(j);
    }
}

/* ---- parameters ---- */

/* A path parameter that must be a DeQL identifier into out; answers 400 when it
 * is not. */
static bool ident_param(struct gate_call *c, const char *name, char *out)
{
    const char *s = gate_param_str(c, name);
    if (!s || !dq_ident_ok(s)) {
        char msg[160];
        snprintf(msg, sizeof msg, "invalid identifier: %s", name);
        fail(c, 400, msg);
        return false;
    }
    snprintf(out, DEQL_NAME_MAX + 1, "%s", s);
    return true;
}

/* limit (default DEQL_PAGE_DEFAULT) and offset (default 0); answers 400 when
 * bad. */
static bool page_params(struct gate_call *c, struct dq_job *j)
{
    const char *l = http_req_query(c->req, "limit");
    const char *o = http_req_query(c->req, "offset");
    j->limit = DEQL_PAGE_DEFAULT;
    j->offset = 0;
    if (l && (parse_u64(l, &j->limit) != 0 || j->limit > DEQL_PAGE_MAX)) {
        fail(c, 400, "limit is a whole number from 0 to 100000");
        return false;
    }
    if (o && (parse_u64(o, &j->offset) != 0 || j->offset > INT64_MAX)) {
        fail(c, 400, "offset is a whole number from 0");
        return false;
    }
    return true;
}

static bool writable(struct gate_call *c)
{
    if (ctx_of(c)->readonly) {
        fail(c, 403, "the server is read-only");
        return false;
    }
    return true;
}

/* ---- table reads: a query over DeReg with binds ---- */

/* Runs j->arg (SQL) with :id = j->arg2 (when set) and paging, answering the
 * table. The aggregate j->agg (when set) must be registered; j->name: the
 * projection. */
static void run_table(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    char msg[400];
    if (j->agg[0] && !deql_reg_find(r->reg, DEQL_OBJ_AGGREGATE, j->agg)) {
        snprintf(msg, sizeof msg, "aggregate %s is not registered", j->agg);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    if (j->name[0] && !deql_reg_find(r->reg, DEQL_OBJ_PROJECTION, j->name)) {
        snprintf(msg, sizeof msg, "projection %s is not registered", j->name);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    struct sql_bind binds[3] = {
        {"__limit", {.type = SQL_INT, .i = (int64_t)j->limit}},
        {"__offset", {.type = SQL_INT, .i = (int64_t)j->offset}},
        {"__id",
         {.type = SQL_TEXT, .s = j->arg2 ? j->arg2 : "", .len = j->arg2 ? strlen(j->arg2) : 0}},
    };
    struct sql_result res;
    struct sql_error se = {{0}};
    sql_begin(sc, j->db, 0, false, NULL);
    int rc = sql_query(sc, j->arg, strlen(j->arg), binds, 3, &res, &se);
    sql_end(sc);
    if (rc) {
        snprintf(msg, sizeof msg, "%s", se.msg);
        dq_fail_req(j->req, dq_sql_status(rc), msg);
        return;
    }
    if (j->cache_key) { /* a state answer: kept for the next read of the same state */
        struct buf b;
        buf_init(&b);
        if (sql_result_arrow(&res, &b) == 0) {
            dq_cache_put(j->x->cache, j->cache_key, b.ptr, b.len);
            http_respond(j->req, 200, &b, ARROW_TYPE);
        } else {
            buf_fini(&b);
            dq_fail_req(j->req, 500, "the result could not be written as Arrow IPC");
        }
    } else {
        dq_answer_table(j->req, &res);
    }
    sql_result_fini(&res);
}

/* Queues run_table for the SQL in q (taken). */
static void submit_table(struct gate_call *c, struct dq_job *j, struct buf *q)
{
    j->arg = buf_steal(q, NULL);
    dq_submit(c, j);
}

/* FROM DeReg."<agg><suffix>" */
static void from_table(struct buf *q, const char *agg, const char *suffix)
{
    char t[DEQL_NAME_MAX + 16];
    snprintf(t, sizeof t, "%s%s", agg, suffix);
    buf_adds(q, " FROM DeReg.");
    sql_quote_ident(t, q);
}

/* Queues `SELECT * FROM DeReg."<agg><suffix>" <tail>` for the route's {agg}, with paging
 * parameters when paged and :__id bound to path parameter id_param (when not NULL). */
static void table_route(struct gate_call *c, const char *suffix, const char *tail, bool paged,
                        const char *id_param)
{
    struct dq_job *j = dq_job_new(c, run_table);
    if (!ident_param(c, "agg", j->agg) || (paged && !page_params(c, j))) {
        free(j);
        return;
    }
    if (id_param) {
        j->arg2 = strdup(gate_param_str(c, id_param));
    }
    struct buf q;
    buf_init(&q);
    buf_adds(&q, "SELECT *");
    from_table(&q, j->agg, suffix);
    buf_adds(&q, tail);
    submit_table(c, j, &q);
}

static void h_aggregates(struct gate_call *c)
{
    table_route(c, "$Agg", " ORDER BY aggregate_id LIMIT :__limit OFFSET :__offset", true, NULL);
}

static void h_aggregate(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_table);
    if (!ident_param(c, "agg", j->agg)) {
        free(j);
        return;
    }
    j->arg2 = strdup(gate_param_str(c, "id"));
    struct buf key, hit;
    buf_init(&key);
    buf_init(&hit);
    if (dq_state_key(ctx_of(c), c->db, j->agg, j->arg2, &key)) {
        if (dq_cache_get(ctx_of(c)->cache, key.ptr, &hit)) { /* nothing changed since */
            buf_fini(&key);
            free(j->arg2);
            free(j);
            http_respond(c->req, 200, &hit, ARROW_TYPE);
            return;
        }
        j->cache_key = buf_steal(&key, NULL);
    }
    buf_fini(&key);
    buf_fini(&hit);
    struct buf q;
    buf_init(&q);
    buf_adds(&q, "SELECT *");
    from_table(&q, j->agg, "$Agg");
    buf_adds(&q, " WHERE aggregate_id = :__id");
    submit_table(c, j, &q);
}

static void h_events(struct gate_call *c)
{
    table_route(c, "$Events", " ORDER BY event_id LIMIT :__limit OFFSET :__offset", true, NULL);
}

static void h_stream_events(struct gate_call *c)
{
    table_route(c, "$Events", " WHERE stream_id = :__id ORDER BY seq", false, "stream_id");
}

static void h_projection_query(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_table);
    if (!ident_param(c, "name", j->name) || !page_params(c, j)) {
        free(j);
        return;
    }
    struct buf q;
    buf_init(&q);
    buf_adds(&q, "SELECT * FROM DeReg.");
    sql_quote_ident(j->name, &q);
    buf_adds(&q, " LIMIT :__limit OFFSET :__offset");
    submit_table(c, j, &q);
}

/* ---- inspection tables of the session ---- */

static void run_inspect_table(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    (void)sc;
    char msg[300];
    if (!deql_reg_find(r->reg, DEQL_OBJ_AGGREGATE, j->agg)) {
        snprintf(msg, sizeof msg, "aggregate %s is not registered", j->agg);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    struct sql_result t, page;
    if (dq_session_get(j->x, r->db_id, j->session, j->name, &t) != 0) {
        snprintf(msg, sizeof msg, "table %s is not in session %s", j->name, j->session);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    sql_result_init(&page, t.ncols, (const char *const *)t.names);
    for (uint64_t i = j->offset; i < t.nrows && i < j->offset + j->limit; i++) {
        sql_result_add_row(&page, sql_cell(&t, i, 0));
    }
    dq_answer_table(j->req, &page);
    sql_result_fini(&page);
    sql_result_fini(&t);
}

static void h_inspect_table(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_inspect_table);
    j->no_conn = true;
    const char *t = gate_param_str(c, "table");
    if (!ident_param(c, "agg", j->agg)) {
        free(j);
        return;
    }
    if (t && strchr(t, '$')) {
        free(j);
        fail(c, 403,
             "forbidden: schema-like tables (a '$' in the name) cannot be "
             "inspected");
        return;
    }
    if (!ident_param(c, "table", j->name) || !page_params(c, j) || !dq_session_of(c, j->session)) {
        free(j);
        return;
    }
    dq_submit(c, j);
}

/* ---- execute ---- */

/* The JSON params of a REST execute as command values (text in *hold). */
static int params_values(json_t *params, struct dq_cmd_value *out, size_t *n, struct buf *hold,
                         char *msg, size_t cap)
{
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(params, k, v)
    {
        if (!dq_ident_ok(k)) {
            snprintf(msg, cap, "invalid parameter name: %.100s", k);
            return ERR_INVALID;
        }
        out[i].field = k;
        switch (json_typeof(v)) {
        case JSON_STRING:
            out[i].v = (struct sql_value){
                .type = SQL_TEXT, .s = json_string_value(v), .len = json_string_length(v)};
            break;
        case JSON_INTEGER:
            out[i].v = (struct sql_value){.type = SQL_INT, .i = json_integer_value(v)};
            break;
        case JSON_REAL:
            out[i].v = (struct sql_value){.type = SQL_REAL, .d = json_real_value(v)};
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            out[i].v = (struct sql_value){.type = SQL_INT, .i = json_is_true(v)};
            break;
        case JSON_NULL:
            out[i].v = (struct sql_value){.type = SQL_NULL};
            break;
        default: {
            size_t at = hold->len;
            jenc_tree(v, hold, SIZE_MAX, 64);
            buf_addc(hold, 0);
            out[i].v = (struct sql_value){.type = SQL_TEXT, .len = hold->len - at - 1};
            out[i].v.i = (int64_t)at; /* resolved below, once hold stops moving */
            out[i].v.d = -1;
        }
        }
        i++;
    }
    for (size_t m = 0; m < i; m++) {
        if (out[m].v.type == SQL_TEXT && out[m].v.d == -1) {
            out[m].v.s = hold->ptr + out[m].v.i;
        }
    }
    *n = i;
    return 0;
}

/* Answers an execution's outcome: the events as a table, a rejection (422) or
 * an error. */
static void answer_exec(struct http_req *req, struct dq_exec *e)
{
    if (e->rejected) {
        json_t *body = json_deep_copy(e->rejection);
        json_object_set_new(body, "error", json_string(e->msg));
        struct buf b;
        buf_init(&b);
        jenc_tree(body, &b, SIZE_MAX, 64);
        json_decref(body);
        http_respond(req, 422, &b, NULL);
    } else if (e->err) {
        dq_fail_req(req, e->status ? e->status : 500, e->msg);
    } else {
        dq_answer_table(req, &e->events);
    }
}

static void run_execute(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    char msg[400];
    if (!deql_reg_find(r->reg, DEQL_OBJ_AGGREGATE, j->agg)) {
        snprintf(msg, sizeof msg, "aggregate %s is not registered", j->agg);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    if (!deql_reg_find(r->reg, DEQL_OBJ_COMMAND, j->name)) {
        snprintf(msg, sizeof msg, "command %s is not registered", j->name);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    const struct deql_obj *dec = deql_reg_decision_for(r->reg, j->name);
    if (!dec) {
        snprintf(msg, sizeof msg, "no decision handles command %s", j->name);
        dq_fail_req(j->req, 404, msg);
        return;
    }
    if (strcmp(dec->dec.aggregate, j->agg) != 0) {
        snprintf(msg, sizeof msg, "command %s belongs to aggregate %s, not %s", j->name,
                 dec->dec.aggregate, j->agg);
        dq_fail_req(j->req, 403, msg);
        return;
    }
    json_t *body = json_loadb(j->arg, j->arg_len, 0, NULL);
    json_t *params = json_object_get(body, "params");
    size_t n = json_object_size(params);
    struct dq_cmd_value *vals = xcalloc(n + 1, sizeof(*vals));
    struct buf hold;
    buf_init(&hold);
    int rc = params_values(params, vals, &n, &hold, msg, sizeof msg);
    if (rc) {
        dq_fail_req(j->req, 400, msg);
    } else {
        struct dq_exec e;
        dq_execute(j->x, j->db, r, sc, j->name, vals, n, false, &e);
        answer_exec(j->req, &e);
        dq_exec_fini(&e);
    }
    buf_fini(&hold);
    free(vals);
    json_decref(body);
}

static void h_execute(struct gate_call *c)
{
    if (!writable(c)) {
        return;
    }
    struct dq_job *j = dq_job_new(c, run_execute);
    if (!ident_param(c, "agg", j->agg) || !ident_param(c, "command", j->name)) {
        free(j);
        return;
    }
    if (!out_is_json(c->req)) {
        free(j);
        fail(c, 415, "send the body as application/json");
        return;
    }
    struct slice body = http_req_body(c->req);
    json_error_t je;
    json_t *doc = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    json_t *params = json_object_get(doc, "params");
    bool ok = json_is_object(doc) && (!json_object_get(doc, "params") || json_is_object(params));
    json_decref(doc);
    if (!ok) {
        free(j);
        fail(c, 400, "the body is a JSON object {\"params\": {...}}");
        return;
    }
    j->arg = xstrndup(body.ptr, body.len);
    j->arg_len = body.len;
    dq_submit(c, j);
}

/* ---- scripts: run, create, export, query ---- */

/* The "deql" (or key) member of the JSON body as j->arg; answers 400/415 when
 * missing. */
static bool body_text(struct gate_call *c, struct dq_job *j, const char *key)
{
    if (!out_is_json(c->req)) {
        fail(c, 415, "send the body as application/json");
        return false;
    }
    struct slice body = http_req_body(c->req);
    json_t *doc = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    json_t *s = json_object_get(doc, key);
    if (!json_is_string(s)) {
        json_decref(doc);
        char msg[96];
        snprintf(msg, sizeof msg, "the body is a JSON object {\"%s\": \"...\"}", key);
        fail(c, 400, msg);
        return false;
    }
    j->arg = xstrndup(json_string_value(s), json_string_length(s));
    j->arg_len = json_string_length(s);
    json_decref(doc);
    if (strlen(j->arg) != j->arg_len) {
        fail(c, 400, "the text holds a NUL character");
        return false;
    }
    return true;
}

static bool wants_json(struct http_req *req)
{
    const char *a = http_req_header(req, "Accept");
    return a && strstr(a, "application/json") && !strstr(a, "vnd.apache.arrow");
}

static void h_run(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, dq_run_job);
    if (!body_text(c, j, "deql") || !dq_session_of(c, j->session)) {
        free(j->arg);
        free(j);
        return;
    }
    j->json_answer = wants_json(c->req);
    dq_submit(c, j);
}

static void run_create(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    (void)r;
    (void)sc;
    struct dq_apply a;
    int rc = dq_reg_apply(j->x, j->db, j->arg, j->arg_len, &a);
    if (rc) {
        unsigned st = rc == ERR_EXISTS                        ? 409
                      : rc == ERR_NOTFOUND                    ? 404
                      : rc == ERR_INVALID || rc == ERR_TOOBIG ? 400
                                                              : 500;
        dq_fail_req(j->req, st, a.msg);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"status\":\"ok\",\"statements\":%zu}", a.applied);
    http_respond(j->req, 200, &b, NULL);
}

static void h_create(struct gate_call *c)
{
    if (!writable(c)) {
        return;
    }
    struct dq_job *j = dq_job_new(c, run_create);
    j->no_conn = true;
    if (!body_text(c, j, "deql")) {
        free(j->arg);
        free(j);
        return;
    }
    dq_submit(c, j);
}

static void run_export(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    (void)sc;
    struct buf b;
    buf_init(&b);
    deql_reg_export(r->reg, &b);
    http_respond(j->req, 200, &b, "text/plain; charset=utf-8");
}

static void h_export(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_export);
    j->no_conn = true;
    dq_submit(c, j);
}

/* True when the word at s[0..n) is one that changes something. */
static bool mutating_word(const char *s, size_t n)
{
    static const char *const words[] = {"INSERT", "UPDATE",  "DELETE",   "DROP",    "CREATE",
                                        "ALTER",  "ATTACH",  "DETACH",   "PRAGMA",  "REPLACE",
                                        "VACUUM", "REINDEX", "TRUNCATE", "EXECUTE", "INSPECT"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strlen(words[i]) == n && !strncasecmp(words[i], s, n)) {
            return true;
        }
    }
    return false;
}

/* The query route's check: starts with SELECT or WITH, no mutating keyword
 * outside strings, quoted names and comments. The SQL engine's authorizer
 * refuses writes anyway. */
static bool read_only_sql(const char *s, size_t len)
{
    bool first = true;
    for (size_t i = 0; i < len;) {
        char ch = s[i];
        if (ch == '\'' || ch == '"' || ch == '`' || ch == '[') {
            char end = ch == '[' ? ']' : ch;
            for (i++; i < len && s[i] != end; i++) {
            }
            i++;
        } else if (ch == '-' && i + 1 < len && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
        } else if (ch == '/' && i + 1 < len && s[i + 1] == '*') {
            const char *e = strstr(s + i + 2, "*/");
            i = e ? (size_t)(e - s) + 2 : len;
        } else if ((ch | 32) >= 'a' && (ch | 32) <= 'z') {
            size_t b = i;
            while (i < len &&
                   (s[i] == '_' || s[i] == '$' || ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z') ||
                    (s[i] >= '0' && s[i] <= '9'))) {
                i++;
            }
            if (first && !((i - b == 6 && !strncasecmp(s + b, "SELECT", 6)) ||
                           (i - b == 4 && !strncasecmp(s + b, "WITH", 4)))) {
                return false;
            }
            first = false;
            size_t k = i;
            while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r')) {
                k++;
            }
            bool call = k < len && s[k] == '('; /* replace(x, y, z) is a function */
            bool is_replace = i - b == 7 && !strncasecmp(s + b, "REPLACE", 7);
            if (mutating_word(s + b, i - b) && !(call && is_replace)) {
                return false;
            }
        } else {
            i++;
        }
    }
    return !first;
}

static void run_query(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    struct sql_result res = {0};
    struct sql_error se = {{0}};
    int rc = dq_session_load(j->x, r->db_id, j->session, sc, &se);
    if (!rc) {
        sql_begin(sc, j->db, 0, false, NULL);
        rc = sql_query(sc, j->arg, j->arg_len, NULL, 0, &res, &se);
        sql_end(sc);
    }
    sql_drop_loaded(sc);
    if (rc) {
        dq_fail_req(j->req, dq_sql_status(rc), se.msg);
        return;
    }
    dq_answer_table(j->req, &res);
    sql_result_fini(&res);
}

static void h_query(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_query);
    if (!body_text(c, j, "sql")) {
        free(j->arg);
        free(j);
        return;
    }
    if (!read_only_sql(j->arg, j->arg_len)) {
        free(j->arg);
        free(j);
        fail(c, 403, "only SELECT or WITH queries may be run here");
        return;
    }
    if (!dq_session_of(c, j->session)) {
        free(j->arg);
        free(j);
        return;
    }
    dq_submit(c, j);
}

/* ---- DeReg metadata ---- */

static void run_dereg(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    (void)sc;
    const char *group = j->arg;
    const char *name = j->name[0] ? j->name : NULL;
    const char *sub = j->arg2;
    if (!strcmp(group, "inspections") || !strcmp(group, "inspection")) {
        struct sql_result res;
        dq_session_inspections(j->x, r->db_id, j->session, name, &res);
        if (name && res.nrows == 0) {
            dq_fail_req(j->req, 404, "no such inspection");
        } else if (sub) {
            dq_fail_req(j->req, 404, "inspections have no sub-tables");
        } else {
            dq_answer_table(j->req, &res);
        }
        sql_result_fini(&res);
        return;
    }
    struct arrow_table t;
    const char *what = NULL;
    int rc = deql_reg_table(r->reg, group, name, sub, &t, &what);
    if (rc) {
        char msg[200];
        snprintf(msg, sizeof msg, "not found: no such %s", what ? what : "table");
        dq_fail_req(j->req, 404, msg);
        return;
    }
    dq_answer_arrow(j->req, &t);
}

static void h_dereg(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_dereg);
    j->no_conn = true;
    const char *group = gate_param_str(c, "group");
    const char *name = gate_param_str(c, "name");
    const char *sub = gate_param_str(c, "sub");
    if (!group || !dq_ident_ok(group) || (name && !dq_ident_ok(name)) ||
        (sub && !dq_ident_ok(sub))) {
        free(j);
        fail(c, 400, "invalid identifier");
        return;
    }
    if (!dq_session_of(c, j->session)) {
        free(j);
        return;
    }
    j->arg = strdup(group);
    if (name) {
        snprintf(j->name, sizeof j->name, "%s", name);
    }
    j->arg2 = sub ? strdup(sub) : NULL;
    dq_submit(c, j);
}

/* ---- health, info ---- */

static void h_health(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"status\":\"ok\"}");
    out_json(c->req, 200, &b);
}

static void run_info(struct dq_job *j, const struct dq_reg *r, struct sql_conn *sc)
{
    (void)sc;
    size_t n[DEQL_OBJ_EVENTSTORE + 1];
    deql_reg_counts(r->reg, n);
    struct buf b;
    buf_init(&b);
    buf_printf(&b,
               "{\"version\":\"%s\",\"readonly\":%s,\"concept_counts\":{\"aggregates\":%"
               "zu,"
               "\"commands\":%zu,\"events\":%zu,\"decisions\":%zu,\"projections\":%zu,"
               "\"templates\":%zu,\"eventstores\":%zu}}",
               j->x->version ? j->x->version : "", j->x->readonly ? "true" : "false",
               n[DEQL_OBJ_AGGREGATE], n[DEQL_OBJ_COMMAND], n[DEQL_OBJ_EVENT], n[DEQL_OBJ_DECISION],
               n[DEQL_OBJ_PROJECTION], n[DEQL_OBJ_TEMPLATE], n[DEQL_OBJ_EVENTSTORE]);
    http_respond(j->req, 200, &b, NULL);
}

static void h_info(struct gate_call *c)
{
    struct dq_job *j = dq_job_new(c, run_info);
    j->no_conn = true;
    dq_submit(c, j);
}

/* ---- the table ---- */

static const struct route_param P_PAGE[] = {
    {"limit", PARAM_INTEGER, "rows at most (default 1000, at most 100000)", NULL},
    {"offset", PARAM_INTEGER, "rows to skip (default 0)", NULL},
    {NULL, 0, NULL, NULL},
};

#define DB ROUTE_DB
static const struct route ROUTES[] = {
    {"GET", "health", h_health, 0, NEED_NONE, "health", "Liveness", NULL, NULL, NULL, 200},
    {"GET", "api/health", h_health, 0, NEED_NONE, "apiHealth", "Liveness", NULL, NULL, NULL, 200},
    {"GET", "info", h_info, DB, NEED_READ, "info", "Version, read-only mode, concept counts", NULL,
     NULL, NULL, 200},
    {"GET", "api/info", h_info, DB, NEED_READ, "apiInfo", "Version, read-only mode, concept counts",
     NULL, NULL, NULL, 200},
    {"GET", "api/aggregates/{agg}", h_aggregates, DB, NEED_READ, "listAggregateState",
     "Every instance's state ($Agg) as Arrow IPC", P_PAGE, NULL, NULL, 200},
    {"GET", "api/aggregates/{agg}/events", h_events, DB, NEED_READ, "listAggregateEvents",
     "The aggregate's events in ingest order as Arrow IPC", P_PAGE, NULL, NULL, 200},
    {"GET", "api/aggregates/{agg}/{id}", h_aggregate, DB, NEED_READ, "getAggregate",
     "One instance's state as Arrow IPC", NULL, NULL, NULL, 200},
    {"GET", "api/aggregates/{agg}/events/{stream_id}", h_stream_events, DB, NEED_READ,
     "listStreamEvents", "One stream's events in sequence order as Arrow IPC", NULL, NULL, NULL,
     200},
    {"GET", "api/aggregates/{agg}/inspect/input/{table}", h_inspect_table, DB, NEED_READ,
     "inspectInput", "An inspection input table of the session", P_PAGE, NULL, NULL, 200},
    {"GET", "api/aggregates/{agg}/inspect/output/{table}", h_inspect_table, DB, NEED_READ,
     "inspectOutput", "An inspection output table of the session", P_PAGE, NULL, NULL, 200},
    {"POST", "api/aggregates/{agg}/execute/{command}", h_execute, DB, NEED_WRITE, "executeCommand",
     "Execute a command: its decision emits events", NULL, NULL, NULL, 200},
    {"GET", "api/dereg/{group}", h_dereg, DB, NEED_READ, "deregList",
     "Registered concepts of a kind as Arrow IPC", NULL, NULL, NULL, 200},
    {"GET", "api/dereg/{group}/{name}", h_dereg, DB, NEED_READ, "deregGet",
     "One registered concept as Arrow IPC", NULL, NULL, NULL, 200},
    {"GET", "api/dereg/{group}/{name}/{sub}", h_dereg, DB, NEED_READ, "deregDetail",
     "A concept's fields, emits, params or instances as Arrow IPC", NULL, NULL, NULL, 200},
    {"GET", "api/projections/{name}/query", h_projection_query, DB, NEED_READ, "queryProjection",
     "A projection's rows as Arrow IPC", P_PAGE, NULL, NULL, 200},
    {"POST", "api/deql/run", h_run, DB, NEED_WRITE, "runDeql",
     "Run a DeQL script: definitions, EXECUTE, INSPECT, tables, queries", NULL, NULL, NULL, 200},
    {"POST", "api/deql/create", h_create, DB, NEED_WRITE, "createDeql",
     "Register CREATE statements", NULL, NULL, NULL, 200},
    {"GET", "api/deql/export", h_export, DB, NEED_READ, "exportDeql",
     "Every definition as a DeQL script", NULL, NULL, NULL, 200},
    {"POST", "api/query", h_query, DB | ROUTE_READ_BODY, NEED_READ, "query",
     "Run a SELECT or WITH query as Arrow IPC", NULL, NULL, NULL, 200},
};
#undef DB

const struct gate_mount deql_mount = {
    .name = "deql",
    .routes = ROUTES,
    .nroutes = sizeof ROUTES / sizeof ROUTES[0],
    .key_from = GATE_KEY_BEARER | GATE_KEY_HEADER,
    .db_from = GATE_DB_KEY,
    .default_db = "default",
    .error = deql_error,
    .rate_window_s = 1,
    .cors_allow_headers = "Authorization, Content-Type, X-API-Key, X-DeQL-Session",
    .cors_expose_headers = "X-Request-Id",
};

/* ---- context ---- */

int deql_ctx_init(struct deql_ctx *x)
{
    for (int i = 0; i < DEQL_STRIPES; i++) {
        pthread_mutex_init(&x->stripes[i], NULL);
    }
    x->dbs = dq_dbs_new();
    x->cache = dq_cache_new();
    x->sessions = dq_sessions_new();
    int rc = workq_new("annals-deql", x->workers ? x->workers : DEQL_WORKERS, DEQL_QUEUE, &x->pool);
    if (rc) {
        dq_dbs_free(x->dbs);
        dq_cache_free(x->cache);
        x->cache = NULL;
        dq_sessions_free(x->sessions);
        x->dbs = NULL;
        x->sessions = NULL;
    }
    return rc;
}

void deql_ctx_stop(struct deql_ctx *x)
{
    if (x->pool) {
        workq_stop(x->pool, WORKQ_DRAIN);
    }
}

void deql_ctx_fini(struct deql_ctx *x)
{
    if (x->pool) {
        workq_stop(x->pool, WORKQ_CANCEL);
        workq_free(x->pool);
        x->pool = NULL;
    }
    dq_dbs_free(x->dbs);
    dq_cache_free(x->cache);
    x->cache = NULL;
    dq_sessions_free(x->sessions);
    x->dbs = NULL;
    x->sessions = NULL;
    for (int i = 0; i < DEQL_STRIPES; i++) {
        pthread_mutex_destroy(&x->stripes[i]);
    }
}
