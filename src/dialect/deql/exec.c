/* EXECUTE: a command's decision run on SQLite, its events appended.
 *
 * One try: a session on the database's head (one snapshot for every read),
 * STATE AS run once (at most one row; none gives NULLs), then each branch as
 * one query SELECT <assigned exprs...>, CASE WHEN (<guard>) THEN 1 ELSE 0 END
 *     FROM (SELECT :__s0 AS "col0", ...)
 * with the command's fields bound as :field and the state's values as :__sN.
 * Every branch whose guard passes emits; none: rejected. The events go to the
 * stream "<aggregate>-<key>" in one append whose condition is that nothing the
 * try read (the streams or whole aggregates the events tables scanned) changed
 * after the snapshot; when it did, the try is run again on the new head, so of
 * two commands deciding on the same state the second decides again on what the
 * first wrote. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"
#include "json/jenc.h"

void dq_exec_fini(struct dq_exec *e)
{
    json_decref(e->rejection);
    json_decref(e->branches);
    json_decref(e->emitted);
    sql_result_fini(&e->events);
    memset(e, 0, sizeof(*e));
}

static int fail(struct dq_exec *out, int err, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct dq_exec *out, int err, unsigned status, const char *fmt, ...)
{
    out->err = err;
    out->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->msg, sizeof out->msg, fmt, ap);
    va_end(ap);
    return err;
}

/* The JSON of a SQL value; decl (a declared DeQL type's SQL form, may be NULL)
 * turns 0/1 into booleans. */
static json_t *value_json(const struct sql_value *v, const char *decl)
{
    switch (v->type) {
    case SQL_INT:
        if (decl && !strcmp(decl, "BOOLEAN")) {
            return json_boolean(v->i != 0);
        }
        return json_integer(v->i);
    case SQL_REAL:
        return isfinite(v->d) ? json_real(v->d) : json_null();
    case SQL_TEXT:
        return json_stringn_nocheck(v->s, v->len);
    default:
        return json_null();
    }
}

/* The declared field of obj called name, or NULL. */
static const struct deql_field *field_of(const struct deql_obj *obj, const char *name)
{
    for (size_t i = 0; obj && i < obj->nfields; i++) {
        if (!strcmp(obj->fields[i].name, name)) {
            return &obj->fields[i];
        }
    }
    return NULL;
}

bool dq_key_text(const struct sql_value *v, char *out, size_t cap)
{
    switch (v->type) {
    case SQL_INT:
        snprintf(out, cap, "%lld", (long long)v->i);
        return true;
    case SQL_REAL: /* SQLite and we would spell it differently: 3.0 vs 3 */
        return false;
    case SQL_TEXT:
        if (v->len == 0 || v->len >= cap || memchr(v->s, 0, v->len)) {
            return false;
        }
        memcpy(out, v->s, v->len);
        out[v->len] = 0;
        return true;
    default:
        return false;
    }
}

/* What one try needs, shared by its steps. */
struct try_ctx {
    const struct deql_reg *reg;
    const struct deql_obj *cmd, *dec, *agg;
    struct sql_conn *sc;
    struct sql_bind *binds; /* command fields, then the state's :__sN */
    size_t nbinds, ncmd;
    struct sql_result state; /* STATE AS (at most one row) */
    char stream[LIMIT_STREAM_NAME_BYTES + 1];
    char key[LIMIT_STREAM_NAME_BYTES + 1];
};

/* Runs STATE AS and adds its values as binds. */
static int run_state(struct try_ctx *t, struct dq_exec *out)
{
    sql_result_fini(&t->state);
    t->nbinds = t->ncmd;
    if (!t->dec->dec.state) {
        return 0;
    }
    struct sql_error se = {{0}};
    int rc = sql_query(t->sc, t->dec->dec.state, strlen(t->dec->dec.state), t->binds, t->ncmd,
                       &t->state, &se);
    if (rc) {
        return fail(out, rc, dq_sql_status(rc), "STATE AS of decision %s: %s",
                    t->dec->name, se.msg);
    }
    if (t->state.nrows > 1) {
        char n[32];
        snprintf(n, sizeof n, "%zu", t->state.nrows);
        return fail(out, ERR_INVALID, 422,
                    "STATE AS of decision %s returned %s rows; a decision's state "
                    "is one row",
                    t->dec->name, n);
    }
    t->binds = xrealloc(t->binds, (t->ncmd + t->state.ncols + 1) * sizeof(*t->binds));
    for (size_t i = 0; i < t->state.ncols; i++) {
        char *name = xmalloc(32);
        snprintf(name, 32, "__s$%zu", i); /* '$': never a DeQL field name */
        struct sql_value v = {.type = SQL_NULL};
        if (t->state.nrows == 1) {
            v = *sql_cell(&t->state, 0, i);
        }
        t->binds[t->nbinds++] = (struct sql_bind){name, v};
    }
    return 0;
}

/* The query of branch b: its assigned expressions and its guard over the
 * state's values. */
static void branch_sql(const struct try_ctx *t, const struct deql_reg_branch *b, struct buf *q)
{
    buf_adds(q, "SELECT ");
    for (size_t e = 0; e < b->nemits; e++) {
        for (size_t a = 0; a < b->emits[e].nassigns; a++) {
            buf_printf(q, "(%s), ", b->emits[e].assigns[a].expr);
        }
    }
    if (b->guard) {
        buf_printf(q, "CASE WHEN (%s) THEN 1 ELSE 0 END", b->guard);
    } else {
        buf_adds(q, "1");
    }
    if (t->state.ncols == 0) {
        return;
    }
    buf_adds(q, " FROM (SELECT ");
    for (size_t i = 0; i < t->state.ncols; i++) {
        buf_printf(q, "%s:__s$%zu AS ", i ? ", " : "", i);
        sql_quote_ident(t->state.names[i], q);
    }
    buf_adds(q, ")");
}

/* The event's data from the values of one emit (starting at column *col of
 * row); fills stored (without VOLATILE fields) and shown (without SENSITIVE
 * ones). */
static int emit_data(const struct try_ctx *t, const struct deql_reg_emit *em,
                     const struct sql_result *row, size_t *col, json_t *stored, json_t *shown,
                     json_t *visible, struct dq_exec *out)
{
    const struct deql_obj *ev = deql_reg_find(t->reg, DEQL_OBJ_EVENT, em->event);
    if (!ev) {
        return fail(out, ERR_NOTFOUND, 404, "event %s of decision %s is not registered", em->event,
                    t->dec->name);
    }
    for (size_t a = 0; a < em->nassigns; a++) {
        const struct deql_field *f = field_of(ev, em->assigns[a].field);
        if (!f) {
            return fail(out, ERR_INVALID, 422, "event %s declares no field %s", em->event,
                        em->assigns[a].field);
        }
        json_t *v = value_json(sql_cell(row, 0, (*col)++), deql_sql_decl(f->type));
        if (!f->is_volatile) {
            json_object_set(stored, f->name, v);
        }
        if (!f->is_sensitive) {
            json_object_set(shown, f->name, v);
        }
        if (!f->is_sensitive && !f->is_volatile) {
            json_object_set(visible, f->name, v);
        }
        json_decref(v);
    }
    return 0;
}

/* One emitted event until it is appended. */
struct emitted {
    const char *type;
    struct buf data;  /* stored JSON */
    json_t *shown;    /* returned fields (no SENSITIVE ones) */
    json_t *visible;  /* what reads would show of the stored data (an INSPECT's output) */
};

/* Runs every branch; fills ev (cap events) and out->branches. Returns 0 (with
 * *nev events, 0: rejected) or an error. */
static int run_branches(struct try_ctx *t, struct emitted *ev, size_t cap, size_t *nev,
                        struct dq_exec *out)
{
    json_decref(out->branches);
    out->branches = json_array();
    *nev = 0;
    for (size_t i = 0; i < t->dec->dec.nbranches; i++) {
        const struct deql_reg_branch *b = &t->dec->dec.branches[i];
        struct buf q;
        buf_init(&q);
        branch_sql(t, b, &q);
        struct sql_result row;
        struct sql_error se = {{0}};
        int rc = sql_query(t->sc, q.ptr, q.len, t->binds, t->nbinds, &row, &se);
        buf_fini(&q);
        if (rc) {
            return fail(out, rc, dq_sql_status(rc), "decision %s: %s", t->dec->name,
                        se.msg);
        }
        const struct sql_value *g = row.nrows == 1 ? sql_cell(&row, 0, row.ncols - 1) : NULL;
        bool pass = g && g->type == SQL_INT && g->i == 1;
        size_t col = 0;
        json_t *types = json_array();
        for (size_t e = 0; pass && e < b->nemits && !rc; e++) {
            if (*nev == cap) {
                rc = fail(out, ERR_TOOBIG, 422,
                          "decision %s emits more events than one append may hold", t->dec->name);
                break;
            }
            struct emitted *em = &ev[(*nev)++];
            em->type = b->emits[e].event;
            buf_init(&em->data);
            json_t *stored = json_object();
            em->shown = json_object();
            em->visible = json_object();
            rc = emit_data(t, &b->emits[e], &row, &col, stored, em->shown, em->visible, out);
            if (!rc && jenc_tree(stored, &em->data, SIZE_MAX, 64) != 0) {
                rc = fail(out, ERR_INVALID, 422, "an event of decision %s cannot be stored",
                          t->dec->name);
            }
            json_decref(stored);
            json_array_append_new(types, json_string(em->type));
        }
        sql_result_fini(&row);
        json_array_append_new(out->branches,
                              json_pack("{s:s,s:I,s:s?,s:s?,s:s,s:o}", "branch_id", b->id,
                                        "branch_index", (json_int_t)i + 1, "label", b->label,
                                        "guard", b->guard, "status",
                                        pass ? "emitted" : "guard_failed", "event_types",
                                        types));
        if (rc) {
            return rc;
        }
    }
    return 0;
}

/* The rejection: every guard, the state's values and the command's. */
static json_t *rejection(const struct try_ctx *t, const struct sql_result *shown,
                         const struct dq_exec *out)
{
    size_t n = deql_reg_agg_columns(t->reg, t->agg->name, NULL, 0);
    struct deql_column *cols = xcalloc(n ? n : 1, sizeof(*cols));
    deql_reg_agg_columns(t->reg, t->agg->name, cols, n);
    json_t *state = json_object();
    for (size_t i = 0; shown->nrows == 1 && i < shown->ncols; i++) {
        bool hidden = false; /* a column named as a SENSITIVE payload field */
        for (size_t k = 0; k < n && !hidden; k++) {
            hidden = cols[k].sensitive && !strcmp(cols[k].name, shown->names[i]);
        }
        if (!hidden) {
            json_object_set_new(state, shown->names[i],
                                value_json(sql_cell(shown, 0, i), NULL));
        }
    }
    free(cols);
    json_t *values = json_object();
    for (size_t i = 0; i < t->ncmd; i++) {
        const struct deql_field *f = field_of(t->cmd, t->binds[i].name);
        if (!f || !f->is_sensitive) {
            json_object_set_new(values, t->binds[i].name,
                                value_json(&t->binds[i].v, f ? deql_sql_decl(f->type) : NULL));
        }
    }
    return json_pack("{s:s,s:s,s:s,s:O,s:o,s:o}", "status", "rejected", "decision", t->dec->name,
                     "command", t->cmd->name, "branches", out->branches, "state", state, "values",
                     values);
}

/* The append condition: nothing read changed after snapshot. */
static int reads_filter(struct sql_conn *sc, struct filter *f)
{
    size_t n;
    const struct sql_read *r = sql_reads(sc, &n);
    for (size_t i = 0; i < n; i++) {
        if (!r[i].tag) { /* too much was read to tell apart: nothing at all may change */
            filter_fini(f);
            filter_init(f);
            return 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct filter_item *it = filter_add_item(f);
        if (!it) {
            return ERR_TOOBIG;
        }
        const char *text = r[i].whole ? r[i].tag : r[i].stream;
        struct pattern p = {PAT_EXACT, {text, strlen(text)}};
        int rc = filter_add_atom(f, it, r[i].whole ? FF_TAG : FF_STREAM, &p, 1);
        if (rc) {
            return rc;
        }
    }
    return (int)n;
}

static void emitted_free(struct emitted *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_fini(&ev[i].data);
        json_decref(ev[i].shown);
        json_decref(ev[i].visible);
    }
}

/* Appends the events under the condition; *retry when the condition failed. */
static int append_events(struct db *db, struct try_ctx *t, struct emitted *ev, size_t n,
                         uint64_t snapshot, struct append_event *aev, bool *retry,
                         struct dq_exec *out)
{
    char tag[DEQL_NAME_MAX + 16], tags[DEQL_NAME_MAX + 24];
    dq_agg_tag(t->agg->name, tag, sizeof tag);
    snprintf(tags, sizeof tags, "[\"%s\"]", tag);
    for (size_t i = 0; i < n; i++) {
        aev[i] = (struct append_event){
            .type = {ev[i].type, strlen(ev[i].type)},
            .data = {ev[i].data.ptr, ev[i].data.len},
            .metadata = {"{}", 2},
            .tags = {tags, strlen(tags)},
        };
    }
    struct filter f;
    filter_init(&f);
    int nreads = reads_filter(t->sc, &f);
    struct append_cond cond = {.filter = &f, .has_max = true, .max = snapshot};
    struct append_part part = {.stream = {t->stream, strlen(t->stream)}, .events = aev, .count = n};
    struct append_req req = {
        .parts = &part, .nparts = 1, .conds = &cond, .nconds = nreads > 0 ? 1 : 0};
    int rc = nreads < 0 ? nreads : engine_append_wait(db, &req);
    if (!rc) {
        rc = req.err;
    }
    filter_fini(&f);
    *retry = rc == ERR_CONFLICT && req.conflict == CONFLICT_CONDITION;
    if (rc && !*retry) {
        const char *why = rc == ERR_INVALID ? req.fault.message : err_name(rc);
        struct gate_error ge;
        gate_engine_error(rc, &ge); /* 409 deleted stream, 413, 503 stopping, 507 full, ... */
        return fail(out, rc, rc == ERR_INVALID ? 400 : ge.kind,
                    "the events could not be appended: %s", why);
    }
    return rc;
}

/* The answer table of appended events: event_type, stream_id, seq, status,
 * fields. */
static void result_rows(const struct try_ctx *t, const struct emitted *ev,
                        const struct append_event *aev, size_t n, struct sql_result *res)
{
    static const char *const names[] = {"event_type", "stream_id", "seq", "status", "fields"};
    const char *status = aev ? "success" : "dry_run";
    sql_result_init(res, 5, names);
    for (size_t i = 0; i < n; i++) {
        struct buf fields;
        buf_init(&fields);
        jenc_tree(ev[i].shown, &fields, SIZE_MAX, 64);
        struct sql_value row[5] = {
            {.type = SQL_TEXT, .s = ev[i].type, .len = strlen(ev[i].type)},
            {.type = SQL_TEXT, .s = t->key, .len = strlen(t->key)},
            aev ? (struct sql_value){.type = SQL_INT, .i = (int64_t)aev[i].version}
                : (struct sql_value){.type = SQL_NULL},
            {.type = SQL_TEXT, .s = status, .len = strlen(status)},
            {.type = SQL_TEXT, .s = fields.ptr, .len = fields.len},
        };
        sql_result_add_row(res, row);
        buf_fini(&fields);
    }
}

/* The emitted events before any append, for INSPECT: type and stored data per
 * event. */
static void keep_emitted(const struct emitted *ev, size_t n, struct dq_exec *out)
{
    json_decref(out->emitted);
    out->emitted = json_array();
    for (size_t i = 0; i < n; i++) {
        struct buf data;
        buf_init(&data);
        jenc_tree(ev[i].visible, &data, SIZE_MAX, 64);
        json_array_append_new(out->emitted, json_pack("{s:s,s:s%}", "event_type", ev[i].type,
                                                      "data", data.ptr, data.len));
        buf_fini(&data);
    }
}

/* Checks the values against the command and sets up binds and the stream. */
static int prepare(struct try_ctx *t, const struct dq_cmd_value *values, size_t nvalues,
                   struct dq_exec *out)
{
    for (size_t i = 0; i < nvalues; i++) {
        if (!field_of(t->cmd, values[i].field)) {
            return fail(out, ERR_INVALID, 400, "command %s has no field %s", t->cmd->name,
                        values[i].field);
        }
    }
    t->ncmd = t->cmd->nfields;
    t->binds = xcalloc(t->ncmd + 1, sizeof(*t->binds));
    for (size_t i = 0; i < t->ncmd; i++) {
        t->binds[i] = (struct sql_bind){t->cmd->fields[i].name, {.type = SQL_NULL}};
        for (size_t k = 0; k < nvalues; k++) {
            if (!strcmp(values[k].field, t->cmd->fields[i].name)) {
                t->binds[i].v = values[k].v;
            }
        }
    }
    t->nbinds = t->ncmd;
    size_t key = deql_reg_key_field(t->cmd);
    if (!dq_key_text(&t->binds[key].v, t->key, sizeof t->key)) {
        return fail(out, ERR_INVALID, 400,
                    "the key field %s of command %s needs a value that names the stream: "
                    "non-empty text (no NUL, short enough for a stream name) or an integer",
                    t->cmd->fields[key].name, t->cmd->name);
    }
    if (!dq_stream_name(t->agg->name, t->key, t->stream, sizeof t->stream)) {
        return fail(out, ERR_TOOBIG, 400, "the key of command %s is too long", t->cmd->name);
    }
    return 0;
}

static void free_state_binds(struct try_ctx *t)
{
    for (size_t i = t->ncmd; i < t->nbinds; i++) {
        free((char *)t->binds[i].name);
    }
    t->nbinds = t->ncmd;
}

/* One try of the decision. *retry when a concurrent commit changed what it
 * read. */
static int one_try(struct deql_ctx *x, struct db *db, struct try_ctx *t, bool dry, bool *retry,
                   struct dq_exec *out)
{
    size_t cap = x->limits.batch_events ? x->limits.batch_events : 1000;
    struct emitted *ev = xcalloc(cap, sizeof(*ev));
    uint64_t snap = 0;
    sql_begin(t->sc, db, 0, true, &snap);
    size_t n = 0;
    int rc = run_state(t, out);
    if (!rc) {
        rc = run_branches(t, ev, cap, &n, out);
    }
    sql_end(t->sc);
    if (!rc && n == 0) {
        /* the state as reads show it: STATE AS again on the same snapshot, SENSITIVE fields
         * hidden (the decision itself saw them) */
        struct sql_result shown = {0};
        struct sql_error se = {{0}};
        if (t->dec->dec.state) {
            sql_begin(t->sc, db, snap, false, NULL);
            if (sql_query(t->sc, t->dec->dec.state, strlen(t->dec->dec.state), t->binds,
                          t->ncmd, &shown, &se) != 0) {
                memset(&shown, 0, sizeof(shown));
            }
            sql_end(t->sc);
        }
        out->rejected = true;
        out->rejection = rejection(t, &shown, out);
        sql_result_fini(&shown);
        out->status = 422;
        snprintf(out->msg, sizeof out->msg,
                 "command %s rejected: no branch of decision %s "
                 "emitted",
                 t->cmd->name, t->dec->name);
    } else if (!rc && dry) {
        keep_emitted(ev, n, out);
        result_rows(t, ev, NULL, n, &out->events);
    } else if (!rc) {
        struct append_event *aev = xcalloc(n, sizeof(*aev));
        rc = append_events(db, t, ev, n, snap, aev, retry, out);
        if (!rc) {
            result_rows(t, ev, aev, n, &out->events);
        }
        free(aev);
    }
    emitted_free(ev, n);
    free(ev);
    free_state_binds(t);
    return rc;
}

int dq_execute(struct deql_ctx *x, struct db *db, const struct dq_reg *r, struct sql_conn *sc,
               const char *command, const struct dq_cmd_value *values, size_t nvalues, bool dry,
               struct dq_exec *out)
{
    memset(out, 0, sizeof(*out));
    struct try_ctx t = {.reg = r->reg, .sc = sc};
    t.cmd = deql_reg_find(r->reg, DEQL_OBJ_COMMAND, command);
    if (!t.cmd) {
        return fail(out, ERR_NOTFOUND, 404, "command %s is not registered", command);
    }
    t.dec = deql_reg_decision_for(r->reg, command);
    if (!t.dec) {
        return fail(out, ERR_NOTFOUND, 404, "no decision handles command %s", command);
    }
    t.agg = deql_reg_find(r->reg, DEQL_OBJ_AGGREGATE, t.dec->dec.aggregate);
    if (!t.agg) {
        return fail(out, ERR_NOTFOUND, 404, "aggregate %s of decision %s is not registered",
                    t.dec->dec.aggregate, t.dec->name);
    }
    int rc = prepare(&t, values, nvalues, out);
    pthread_mutex_t *stripe = NULL;
    if (!rc && !dry) { /* same-stream commands would only conflict: take turns */
        stripe = &x->stripes[(strmap_hash(t.stream, strlen(t.stream)) ^ r->db_id) % DEQL_STRIPES];
        pthread_mutex_lock(stripe);
    }
    unsigned seed = (unsigned)(uintptr_t)&t ^ (unsigned)time_mono_ns();
    for (unsigned i = 0; !rc && i < DEQL_EXECUTE_TRIES; i++) {
        bool retry = false;
        rc = one_try(x, db, &t, dry, &retry, out);
        if (!retry) {
            break;
        }
        rc = i + 1 < DEQL_EXECUTE_TRIES ? 0 : ERR_CONFLICT;
        if (rc) {
            fail(out, rc, 409, "command %s: what decision %s read kept changing; try again",
                 command, t.dec->name);
        } else { /* another instance's command changed what this one read: back off a little */
            usleep((useconds_t)(rand_r(&seed) % 1000) * (i + 1));
        }
    }
    if (stripe) {
        pthread_mutex_unlock(stripe);
    }
    free(t.binds);
    sql_result_fini(&t.state);
    out->err = rc;
    return rc;
}

int dq_eval_assigns(struct sql_conn *sc, const char *script, const struct deql_stmt *st,
                    struct dq_cmd_value *out, struct sql_result *holder, char *msg, size_t cap)
{
    struct buf q;
    buf_init(&q);
    buf_adds(&q, "SELECT ");
    for (size_t i = 0; i < st->assign_count; i++) {
        buf_printf(&q, "%s(%.*s)", i ? ", " : "", (int)st->assigns[i].expr.len,
                   script + st->assigns[i].expr.off);
    }
    struct sql_error se = {{0}};
    int rc = st->assign_count ? sql_query(sc, q.ptr, q.len, NULL, 0, holder, &se) : 0;
    buf_fini(&q);
    if (rc) {
        snprintf(msg, cap, "EXECUTE %s: %s", st->name, se.msg);
        return rc;
    }
    for (size_t i = 0; i < st->assign_count; i++) {
        out[i].field = st->assigns[i].field;
        out[i].v = *sql_cell(holder, 0, i);
    }
    return 0;
}
