/* Command handlers: decide, read through ctx, append with the implied conditions, retry
 * (logic/command.h). */
#include "logic/command.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "logic/logic.h"
#include "logic/projection.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/uuid.h"

void command_result_init(struct command_result *r)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->rejection);
    buf_init(&r->events);
    buf_init(&r->conditions);
}

void command_result_fini(struct command_result *r)
{
    buf_fini(&r->rejection);
    buf_fini(&r->events);
    buf_fini(&r->conditions);
}

/* ---- what one decision read (each read becomes a condition) ---- */

struct decision {
    struct logic *lg;
    struct db *db;
    const struct comp_set *set;
    const struct comp_def *def;          /* the command handler */
    const struct logic_event_format *fmt; /* its event format, NULL = native */
    engine_event_json_fn *render;        /* how its code sees events */
    struct slice metadata;               /* what ctx.metadata() answers, a JSON object */
    struct filter filters[COMMAND_READS_MAX + LIMIT_APPEND_CONDS]; /* reads, then the
                                                                    handler's conditions */
    uint64_t max[COMMAND_READS_MAX + LIMIT_APPEND_CONDS];
    uint64_t min[COMMAND_READS_MAX + LIMIT_APPEND_CONDS];  /* with has_min */
    bool has_min[COMMAND_READS_MAX + LIMIT_APPEND_CONDS];  /* a {query, min} condition */
    bool no_max[COMMAND_READS_MAX + LIMIT_APPEND_CONDS];   /* a {query, min} without max */
    bool used[COMMAND_READS_MAX + LIMIT_APPEND_CONDS];
    size_t nreads;
};

static int why(char *w, size_t cap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why(char *w, size_t cap, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* Adds a condition: no event of the filter in text (parsed) after position max. */
static int add_read(struct decision *d, struct slice filter_text, uint64_t max, char *w,
                    size_t cap)
{
    if (d->nreads >= COMMAND_READS_MAX) {
        return why(w, cap, ERR_TOOBIG, "at most %s reads in one decision", "64");
    }
    struct filter *f = &d->filters[d->nreads];
    if (!filter_text.len) {
        filter_init(f);
    } else if (logic_filter_parser(d->lg)(filter_text, f) != 0) {
        return why(w, cap, ERR_INVALID, "%s", "not a valid query filter");
    }
    d->used[d->nreads] = true;
    d->max[d->nreads++] = max;
    return 0;
}

/* The i-th item of a JSON array as a decoded string into out; false when it is not one. */
static bool arg_string(struct slice args, size_t i, struct buf *out)
{
    size_t pos = 0;
    struct slice it;
    for (size_t k = 0; jsonx_next_item(args, &pos, &it); k++) {
        if (k == i) {
            return jsonx_kind(it) == '"' && jsonx_string(it, out) == 0 && out->len > 0;
        }
    }
    return false;
}

static bool arg_value(struct slice args, size_t i, struct slice *out)
{
    size_t pos = 0;
    for (size_t k = 0; jsonx_next_item(args, &pos, out); k++) {
        if (k == i) {
            return true;
        }
    }
    return false;
}

/* ctx.state(stream) */
static int read_state(struct decision *d, struct slice args, struct buf *out, char *w, size_t cap)
{
    struct buf stream;
    buf_init(&stream);
    if (!arg_string(args, 0, &stream) || !engine_stream_name_ok(stream.ptr, stream.len)) {
        buf_fini(&stream);
        return why(w, cap, ERR_INVALID, "%s", "state takes a stream name");
    }
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    bool no_reducer = false;
    int rc = logic_stream_state(d->lg, d->db, (struct slice){stream.ptr, stream.len}, NULL, &st,
                                &no_reducer, &le);
    uint64_t seen = st.position; /* what the read covered: the stream's last position */
    if (rc == ERR_NOTFOUND && no_reducer) { /* nil, but the stream's events count all the same */
        struct stream_rec sr;
        seen = engine_stream_info(d->db, (struct slice){stream.ptr, stream.len}, NULL, &sr) == 0
                   ? sr.last_pos : 0;
    }
    if (rc == ERR_NOTFOUND || rc == 0) {
        buf_add(out, rc ? "null" : st.state.ptr, rc ? 4 : st.state.len);
        struct buf f;
        buf_init(&f);
        buf_adds(&f, "{\"streams\":[");
        buf_add_json_str(&f, stream.ptr, stream.len);
        buf_adds(&f, "]}");
        rc = add_read(d, (struct slice){f.ptr, f.len}, rc && !no_reducer ? 0 : seen, w, cap);
        buf_fini(&f);
    } else if (rc == ERR_INVALID) {
        snprintf(w, cap, "the reducer failed: %.150s", le.message);
    }
    logic_state_fini(&st);
    buf_fini(&stream);
    return rc;
}

/* Waits (at most PROJ_START_WAIT_MS) until projection name has applied the database's head
 * as of now: one not started yet (just deployed, or the server just started) or catching up
 * would answer a state older than the log, and the decision's read condition would then fail
 * on every try. */
static void catch_up(struct projections *p, struct db *db, const char *name)
{
    uint64_t head = engine_db_head(db);
    struct proj_info info;
    if (proj_info(p, db, name, &info) == 0 && info.position > head) {
        return; /* live at the head already: no round trip through the runner */
    }
    proj_await(p, db, name, head, PROJ_START_WAIT_MS);
}

/* ctx.projection(name, key) */
static int read_projection(struct decision *d, struct slice args, struct buf *out, char *w,
                           size_t cap)
{
    struct buf name, key;
    buf_init(&name);
    buf_init(&key);
    int rc = 0;
    const struct comp_def *def = NULL;
    if (!arg_string(args, 0, &name) || !arg_string(args, 1, &key)) {
        rc = why(w, cap, ERR_INVALID, "%s", "projection takes a name and a key");
    } else {
        def = comp_set_find(d->set, name.ptr);
        rc = def && def->kind == COMP_PROJECTION
                 ? 0 : why(w, cap, ERR_NOTFOUND, "no projection %.80s", name.ptr);
    }
    struct proj_info info;
    uint64_t pos = 0;
    if (!rc) {
        size_t before = out->len;
        struct projections *p = logic_projections(d->lg);
        catch_up(p, d->db, name.ptr);
        rc = proj_state(p, d->db, name.ptr, (struct slice){key.ptr, key.len}, out, &pos, &info);
        if (rc == ERR_NOTFOUND && info.status) {
            out->len = before;
            buf_adds(out, "null");
            rc = 0;
        } else if (rc) {
            why(w, cap, rc, "projection %.80s is not running yet", name.ptr);
        }
    }
    if (!rc) {
        const char *f = def->filter ? def->filter : "";
        rc = add_read(d, (struct slice){f, strlen(f)}, info.position ? info.position - 1 : 0, w,
                      cap);
    }
    buf_fini(&name);
    buf_fini(&key);
    return rc;
}

/* ctx.view(name, params) */
static int read_view(struct decision *d, struct slice args, struct buf *out, char *w, size_t cap)
{
    struct buf name;
    buf_init(&name);
    struct slice params = {"{}", 2};
    int rc = 0;
    const struct comp_def *def = NULL;
    if (!arg_string(args, 0, &name) ||
        (arg_value(args, 1, &params) && jsonx_kind(params) != '{')) {
        rc = why(w, cap, ERR_INVALID, "%s", "view takes a name and a table of parameters");
    } else {
        def = comp_set_find(d->set, name.ptr);
        rc = def && def->kind == COMP_VIEW ? 0 : why(w, cap, ERR_NOTFOUND, "no view %.80s",
                                                     name.ptr);
    }
    struct logic_state st;
    logic_state_init(&st);
    if (!rc) {
        struct logic_error le = {0};
        rc = logic_view(d->lg, d->db, name.ptr, params, NULL, &st, &le);
        if (rc == ERR_INVALID) {
            snprintf(w, cap, "the view failed: %.150s", le.message);
        }
    }
    if (!rc) {
        buf_add(out, st.state.ptr, st.state.len);
        const char *f = def->filter ? def->filter : "";
        rc = add_read(d, (struct slice){f, strlen(f)}, st.position, w, cap);
    }
    logic_state_fini(&st);
    buf_fini(&name);
    return rc;
}

struct query_out {
    engine_event_json_fn *render;
    struct buf *out;
    size_t count;
};

static int on_query_event(void *arg, const struct event_rec *ev)
{
    struct query_out *q = arg;
    buf_adds(q->out, q->count++ ? "," : "");
    q->render(q->out, ev);
    return 0;
}

/* The native filter text of what the code gave ctx.query (its format may translate it). */
static int query_filter(struct decision *d, struct slice f, struct buf *text, char *w,
                        size_t cap)
{
    if (!d->fmt || !d->fmt->filter) {
        jsonx_minify(f, text);
        return 0;
    }
    char why_f[160];
    if (d->fmt->filter(f, text, why_f, sizeof why_f) != 0) {
        return why(w, cap, ERR_INVALID, "%s", why_f);
    }
    return 0;
}

/* ctx.query(filter[, limit]) */
static int read_query(struct decision *d, struct slice args, struct buf *out, char *w, size_t cap)
{
    struct slice f, lim;
    uint64_t limit = COMMAND_QUERY_MAX;
    if (!arg_value(args, 0, &f) || jsonx_kind(f) != '{') {
        return why(w, cap, ERR_INVALID, "%s", "query takes a filter table");
    }
    if (arg_value(args, 1, &lim)) {
        uint64_t v;
        if (!jsonx_u64(lim, &v) || v < 1 || v > COMMAND_QUERY_MAX) {
            return why(w, cap, ERR_INVALID, "%s", "query's limit is 1 to 1000");
        }
        limit = v;
    }
    struct buf text;
    buf_init(&text);
    size_t idx = d->nreads;
    int rc = query_filter(d, f, &text, w, cap);
    if (!rc) rc = add_read(d, (struct slice){text.ptr, text.len}, 0, w, cap);
    buf_fini(&text);
    if (rc) {
        return rc;
    }
    struct engine_query q = {.filter = &d->filters[idx], .limit = limit,
                             .budget = 64 * COMMAND_QUERY_MAX};
    struct engine_query_result res = {0};
    struct query_out qo = {d->render, out, 0};
    buf_addc(out, '[');
    rc = engine_query(d->db, &q, on_query_event, &qo, &res);
    buf_addc(out, ']');
    d->max[idx] = res.head; /* the snapshot it read: nothing of the filter may come after */
    if (rc) { /* no read to stand on: the decision fails (a pcall cannot keep a false one) */
        filter_fini(&d->filters[idx]);
        d->used[idx] = false;
        d->nreads--;
        return why(w, cap, rc, "%s", "the query failed");
    }
    return 0;
}

/* ctx.metadata(): what the caller passed, with the database's newest revision now */
static int read_metadata(struct decision *d, struct buf *out)
{
    struct slice m = d->metadata.ptr ? d->metadata : (struct slice){"{}", 2};
    buf_adds(out, "{\"revision\":");
    buf_add_u64(out, engine_db_head(d->db));
    size_t pos = 0;
    struct slice k, v;
    while (jsonx_next_member(m, &pos, &k, &v)) {
        if (k.len == 10 && !memcmp(k.ptr, "\"revision\"", 10)) {
            continue;
        }
        buf_addc(out, ',');
        buf_add(out, k.ptr, k.len);
        buf_addc(out, ':');
        buf_add(out, v.ptr, v.len);
    }
    buf_addc(out, '}');
    return 0;
}

static int on_host(void *arg, const char *op, struct slice args, struct buf *out, char *w,
                   size_t cap)
{
    struct decision *d = arg;
    if (!strcmp(op, "metadata")) return read_metadata(d, out);
    if (!strcmp(op, "state")) return read_state(d, args, out, w, cap);
    if (!strcmp(op, "projection")) return read_projection(d, args, out, w, cap);
    if (!strcmp(op, "view")) return read_view(d, args, out, w, cap);
    if (!strcmp(op, "query")) return read_query(d, args, out, w, cap);
    return why(w, cap, ERR_INVALID, "no such function: %s", op);
}

static const char *const CTX_OPS[] = {"state", "projection", "view", "query", "metadata",
                                      NULL};

static void decision_fini(struct decision *d)
{
    for (size_t i = 0; i < COMMAND_READS_MAX + LIMIT_APPEND_CONDS; i++) {
        if (d->used[i]) {
            filter_fini(&d->filters[i]);
        }
    }
}

/* ---- the decision's events and conditions ---- */

/* One stream's events of a decision. */
struct part {
    struct buf stream;
    struct buf events;          /* a JSON array of event objects without "stream" */
    struct engine_events parsed;
    struct expect expect;
};

struct plan {
    struct part parts[LIMIT_APPEND_PARTS];
    size_t nparts;
    size_t nevents;
};

static int bad(struct logic_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int bad(struct logic_error *err, const char *fmt, ...)
{
    err->kind = LOGIC_E_OUTPUT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

static bool part_is(const struct part *p, struct slice stream)
{
    return p->stream.len == stream.len && !memcmp(p->stream.ptr, stream.ptr, stream.len);
}

/* The part an event of stream goes to: the last one when it is that stream's, else a new one,
 * so that events are committed in the order decide returned them (A, B, A: three parts). */
static struct part *part_for(struct plan *pl, struct slice stream)
{
    if (pl->nparts && part_is(&pl->parts[pl->nparts - 1], stream)) {
        return &pl->parts[pl->nparts - 1];
    }
    if (pl->nparts == LIMIT_APPEND_PARTS) {
        return NULL;
    }
    struct part *p = &pl->parts[pl->nparts++];
    memset(p, 0, sizeof(*p));
    buf_init(&p->stream);
    buf_init(&p->events);
    buf_add(&p->stream, stream.ptr, stream.len);
    buf_addc(&p->events, '[');
    p->expect.kind = EXPECT_ANY;
    return p;
}

/* Sorts one native event object of the decision into its stream's part. */
static int sort_event(struct plan *pl, struct slice ev, struct logic_error *err)
{
    if (jsonx_kind(ev) != '{') {
        return bad(err, "decide: each event is a table with a stream");
    }
    struct slice stream_v = {NULL, 0};
    struct buf stream;
    buf_init(&stream);
    if (!jsonx_member(ev, "stream", &stream_v) || jsonx_kind(stream_v) != '"' ||
        jsonx_string(stream_v, &stream) != 0 ||
        !engine_stream_writable(stream.ptr, stream.len)) {
        buf_fini(&stream);
        return bad(err, "decide: an event needs a stream (a name not starting with $)");
    }
    struct part *p = part_for(pl, (struct slice){stream.ptr, stream.len});
    buf_fini(&stream);
    if (!p) {
        return bad(err, "decide: events for at most 100 streams");
    }
    buf_adds(&p->events, p->events.len > 1 ? ",{" : "{");
    size_t pos = 0, n = 0;
    struct slice k, v;
    while (jsonx_next_member(ev, &pos, &k, &v)) {
        if (k.len == 8 && !memcmp(k.ptr, "\"stream\"", 8)) {
            continue;
        }
        buf_adds(&p->events, n++ ? "," : "");
        buf_add(&p->events, k.ptr, k.len);
        buf_addc(&p->events, ':');
        buf_add(&p->events, v.ptr, v.len);
    }
    buf_addc(&p->events, '}');
    pl->nevents++;
    return 0;
}

/* One event the handler returned: in its format, made native first. */
static int take_event(struct decision *d, struct plan *pl, struct slice ev,
                      struct logic_error *err)
{
    if (!d->fmt) {
        return sort_event(pl, ev, err);
    }
    struct buf native;
    buf_init(&native);
    char w[160];
    int rc = d->fmt->parse(ev, pl->nevents, d->def->name, &native, w, sizeof w);
    if (rc) {
        rc = bad(err, "decide: event %zu: %s", pl->nevents, w);
    } else {
        rc = sort_event(pl, (struct slice){native.ptr, native.len}, err);
    }
    buf_fini(&native);
    return rc;
}

/* Moves the events of every later part of part `first`'s stream into it (in their order):
 * a stream with an expected version must be one part (the engine refuses a repeat then). */
static void gather_stream(struct plan *pl, size_t first)
{
    struct part *f = &pl->parts[first];
    size_t kept = first + 1;
    for (size_t i = first + 1; i < pl->nparts; i++) {
        struct part *q = &pl->parts[i];
        if (!part_is(q, (struct slice){f->stream.ptr, f->stream.len})) {
            pl->parts[kept++] = *q;
            continue;
        }
        buf_addc(&f->events, ',');
        buf_add(&f->events, q->events.ptr + 1, q->events.len - 1); /* without its '[' */
        buf_fini(&q->stream);
        buf_fini(&q->events);
    }
    pl->nparts = kept;
}

/* {"stream", "expectedVersion"} of the decision's conditions. */
static int take_expect(struct plan *pl, struct slice c, struct logic_error *err)
{
    struct slice s = {NULL, 0}, e = {NULL, 0};
    struct buf name;
    buf_init(&name);
    jsonx_member(c, "expectedVersion", &e);
    int rc = jsonx_member(c, "stream", &s) && jsonx_kind(s) == '"' ? jsonx_string(s, &name)
                                                                  : ERR_INVALID;
    size_t at = pl->nparts;
    for (size_t i = 0; !rc && i < pl->nparts && at == pl->nparts; i++) {
        at = part_is(&pl->parts[i], (struct slice){name.ptr, name.len}) ? i : at;
    }
    buf_fini(&name);
    if (rc || at == pl->nparts) {
        return bad(err, "decide: an expectedVersion condition names a stream it writes to");
    }
    struct part *p = &pl->parts[at];
    char t[24];
    snprintf(t, sizeof t, "%.*s", (int)(e.len < 23 ? e.len : 23), e.ptr);
    uint64_t v;
    if (!strcmp(t, "\"any\"")) p->expect.kind = EXPECT_ANY;
    else if (!strcmp(t, "\"no_stream\"")) p->expect.kind = EXPECT_NO_STREAM;
    else if (!strcmp(t, "\"exists\"")) p->expect.kind = EXPECT_EXISTS;
    else if (jsonx_u64(e, &v)) p->expect = (struct expect){EXPECT_VERSION, v};
    else {
        return bad(err, "decide: expectedVersion is a number, \"any\", \"no_stream\" or "
                        "\"exists\"");
    }
    if (p->expect.kind != EXPECT_ANY) {
        gather_stream(pl, at);
    }
    return 0;
}

/* A position member of a condition: false when present and not a whole number; *has tells
 * whether it was given (null counts as absent). */
static bool position_member(struct slice c, const char *name, bool *has, uint64_t *out)
{
    struct slice v;
    *has = jsonx_member(c, name, &v) && jsonx_kind(v) != 'n';
    *out = 0;
    return !*has || jsonx_u64(v, out);
}

/* Adds the condition of filter f with the bounds given (a max always, a min when has_min). */
static int add_condition(struct decision *d, struct slice f, bool has_min, uint64_t min,
                         bool has_max, uint64_t max, struct logic_error *err)
{
    struct buf text;
    buf_init(&text);
    jsonx_minify(f, &text);
    char w[160];
    size_t idx = d->nreads;
    int rc = add_read(d, (struct slice){text.ptr, text.len}, max, w, sizeof w);
    buf_fini(&text);
    if (rc) {
        return bad(err, "decide: condition: %s", w);
    }
    d->has_min[idx] = has_min;
    d->min[idx] = min;
    d->no_max[idx] = !has_max;
    return 0;
}

/* {"failIfEventsMatch": filter, "after": position}, or as an append's conditions take them
 * {"query": filter, "min"?, "max"?} (L, the newest matching position, min <= L <= max) */
static int take_native_condition(struct decision *d, struct plan *pl, struct slice c,
                                 struct logic_error *err)
{
    struct slice f;
    if (jsonx_kind(c) != '{') {
        return bad(err, "decide: each condition is a table");
    }
    if (jsonx_member(c, "expectedVersion", &f)) {
        return take_expect(pl, c, err);
    }
    bool has_min = false, has_max = false;
    uint64_t min = 0, max = 0;
    if (jsonx_member(c, "query", &f) && jsonx_kind(f) == '{') {
        if (!position_member(c, "min", &has_min, &min) ||
            !position_member(c, "max", &has_max, &max) || (!has_min && !has_max)) {
            return bad(err, "decide: a {query} condition has min and/or max, positions");
        }
        return add_condition(d, f, has_min, min, has_max, max, err);
    }
    if (!jsonx_member(c, "failIfEventsMatch", &f) || jsonx_kind(f) != '{') {
        return bad(err, "decide: a condition is {failIfEventsMatch, after}, {query, min, "
                        "max} or {stream, expectedVersion}");
    }
    if (!position_member(c, "after", &has_max, &max)) {
        return bad(err, "decide: a condition's after is a position");
    }
    return add_condition(d, f, false, 0, true, max, err);
}

/* One condition the handler returned: in its format's form, made native first. */
static int take_condition(struct decision *d, struct plan *pl, struct slice c, size_t index,
                          struct logic_error *err)
{
    if (!d->fmt || !d->fmt->condition) {
        return take_native_condition(d, pl, c, err);
    }
    struct buf native;
    buf_init(&native);
    char w[160];
    int rc = d->fmt->condition(c, index, &native, w, sizeof w);
    rc = rc ? bad(err, "decide: condition: %s", w)
            : take_native_condition(d, pl, (struct slice){native.ptr, native.len}, err);
    buf_fini(&native);
    return rc;
}

static void plan_fini(struct plan *pl)
{
    for (size_t i = 0; i < pl->nparts; i++) {
        buf_fini(&pl->parts[i].stream);
        buf_fini(&pl->parts[i].events);
        engine_events_fini(&pl->parts[i].parsed);
    }
    pl->nparts = 0;
}

/* Reads decide's answer: {events, conditions?} into pl and d, or a rejection into out. */
static int take_decision(struct decision *d, struct plan *pl, struct slice answer,
                         struct command_result *out, struct logic_error *err)
{
    struct slice events, conds, e;
    if (jsonx_kind(answer) != '{') {
        return bad(err, "decide must return {events = ..., conditions = ...} or "
                        "{error = ...}");
    }
    if (jsonx_member(answer, "error", &e) && jsonx_kind(e) != 'n') {
        out->rejected = true;
        buf_add(&out->rejection, e.ptr, e.len);
        return 0;
    }
    if (!jsonx_member(answer, "events", &events) ||
        (jsonx_kind(events) != '[' && !(jsonx_kind(events) == '{' && events.len == 2))) {
        return bad(err, "decide must return {events = ..., conditions = ...} or "
                        "{error = ...}");
    }
    size_t pos = 0;
    int rc = 0;
    while (!rc && jsonx_kind(events) == '[' && jsonx_next_item(events, &pos, &e)) {
        rc = pl->nevents >= COMMAND_EVENTS_MAX
                 ? bad(err, "decide: at most 1000 events") : take_event(d, pl, e, err);
    }
    pos = 0;
    bool has_conds = jsonx_member(answer, "conditions", &conds);
    if (!has_conds && d->fmt) { /* a dialect's word for them (EvidentSource's) */
        has_conds = jsonx_member(answer, "constraints", &conds);
    }
    if (!rc && has_conds && jsonx_kind(conds) == '[') {
        for (size_t n = 0; !rc && jsonx_next_item(conds, &pos, &e); n++) {
            rc = n >= LIMIT_APPEND_CONDS ? bad(err, "decide: at most 16 conditions")
                                          : take_condition(d, pl, e, n, err);
        }
    }
    for (size_t i = 0; !rc && i < pl->nparts; i++) {
        struct part *p = &pl->parts[i];
        buf_addc(&p->events, ']');
        struct append_fault f;
        size_t n = 0, at = 0;
        struct slice it;
        while (jsonx_next_item((struct slice){p->events.ptr, p->events.len}, &at, &it)) {
            n++;
        }
        if (engine_events_parse((struct slice){p->events.ptr, p->events.len}, n, 0, &p->parsed,
                                &f) != 0) {
            err->kind = LOGIC_E_OUTPUT;
            snprintf(err->message, sizeof err->message, "decide: an event of %.60s: %.30s: %s",
                     p->stream.ptr, f.leaf, f.message);
            rc = ERR_INVALID;
        }
    }
    return rc;
}

/* ---- appending ---- */

static void answer_events(struct command_result *out, const struct append_part *parts,
                          size_t nparts, bool written)
{
    buf_reset(&out->events);
    buf_addc(&out->events, '[');
    size_t n = 0;
    for (size_t p = 0; p < nparts; p++) {
        for (size_t i = 0; i < parts[p].count; i++) {
            const struct append_event *e = &parts[p].events[i];
            buf_adds(&out->events, n++ ? ",{\"stream\":" : "{\"stream\":");
            buf_add_json_str(&out->events, parts[p].stream.ptr, parts[p].stream.len);
            buf_adds(&out->events, ",\"type\":");
            buf_add_json_str(&out->events, e->type.ptr, e->type.len);
            buf_adds(&out->events, ",\"data\":");
            buf_add(&out->events, e->data.ptr, e->data.len);
            if (written) {
                char id[UUID_TEXT_LEN + 1];
                uuid_format(e->id, id);
                buf_adds(&out->events, ",\"id\":\"");
                buf_adds(&out->events, id);
                buf_adds(&out->events, "\",\"position\":");
                buf_add_u64(&out->events, e->position);
                buf_adds(&out->events, ",\"version\":");
                buf_add_u64(&out->events, e->version);
                out->last_position = e->position;
            }
            buf_addc(&out->events, '}');
        }
    }
    buf_addc(&out->events, ']');
}

static void answer_conditions(struct command_result *out, const struct decision *d)
{
    buf_reset(&out->conditions);
    buf_addc(&out->conditions, '[');
    for (size_t i = 0; i < d->nreads; i++) {
        buf_adds(&out->conditions, i ? ",{" : "{");
        if (d->has_min[i]) {
            buf_adds(&out->conditions, "\"min\":");
            buf_add_u64(&out->conditions, d->min[i]);
            buf_adds(&out->conditions, d->no_max[i] ? "" : ",");
        }
        if (!d->no_max[i]) {
            buf_adds(&out->conditions, d->has_min[i] ? "\"max\":" : "\"after\":");
            buf_add_u64(&out->conditions, d->max[i]);
        }
        buf_addc(&out->conditions, '}');
    }
    buf_addc(&out->conditions, ']');
}

/* Appends the plan with every condition; waits for the outcome. */
static int append_plan(struct decision *d, struct plan *pl, struct command_result *out,
                       struct logic_error *err)
{
    struct append_part parts[LIMIT_APPEND_PARTS];
    for (size_t i = 0; i < pl->nparts; i++) {
        parts[i] = (struct append_part){.stream = {pl->parts[i].stream.ptr,
                                                   pl->parts[i].stream.len},
                                        .events = pl->parts[i].parsed.events,
                                        .count = pl->parts[i].parsed.count,
                                        .expect = pl->parts[i].expect};
    }
    if (d->nreads > LIMIT_APPEND_CONDS_ALL) {
        err->kind = LOGIC_E_OUTPUT;
        snprintf(err->message, sizeof err->message, "a decision that read %zu times and "
                 "writes: at most %d reads and conditions together", d->nreads,
                 LIMIT_APPEND_CONDS_ALL);
        return ERR_INVALID;
    }
    struct append_cond conds[LIMIT_APPEND_CONDS_ALL];
    for (size_t i = 0; i < d->nreads; i++) {
        conds[i] = (struct append_cond){.filter = &d->filters[i], .has_min = d->has_min[i],
                                        .min = d->min[i], .has_max = !d->no_max[i],
                                        .max = d->max[i]};
    }
    struct append_req req = {.parts = parts, .nparts = pl->nparts, .conds = conds,
                             .nconds = d->nreads};
    buf_init(&req.answer);
    int rc = engine_append_wait(d->db, &req);
    if (rc == ERR_INVALID) {
        err->kind = LOGIC_E_OUTPUT;
        snprintf(err->message, sizeof err->message, "decide: an event: %s", req.fault.message);
    }
    rc = rc ? rc : req.err;
    if (rc == ERR_CONFLICT && req.conflict != CONFLICT_CONDITION &&
        req.conflict != CONFLICT_VERSION) { /* deciding again would not help */
        out->refusal = req.conflict;
        rc = ERR_DENIED;
    }
    if (!rc) {
        answer_events(out, parts, pl->nparts, true);
    }
    buf_fini(&req.answer);
    return rc;
}

/* ---- the command ---- */

/* One decision: runs decide with a fresh ctx, then writes (or, dry, describes) it. */
static int decide_once(struct decision *d, struct logic_module *m, struct slice command,
                       bool dry_run, struct command_result *out, struct logic_error *err)
{
    struct buf answer;
    buf_init(&answer);
    struct logic_host host = {CTX_OPS, on_host, d};
    int rc = logic_call_ctx(m, "decide", &command, 1, &host, &answer, err);
    struct plan *pl = xcalloc(1, sizeof(*pl));
    if (!rc) rc = take_decision(d, pl, (struct slice){answer.ptr, answer.len}, out, err);
    if (!rc && !out->rejected) {
        if (dry_run || pl->nparts == 0) {
            struct append_part parts[LIMIT_APPEND_PARTS];
            for (size_t i = 0; i < pl->nparts; i++) {
                parts[i] = (struct append_part){
                    .stream = {pl->parts[i].stream.ptr, pl->parts[i].stream.len},
                    .events = pl->parts[i].parsed.events, .count = pl->parts[i].parsed.count};
            }
            answer_events(out, parts, pl->nparts, false);
            answer_conditions(out, d);
        } else {
            rc = append_plan(d, pl, out, err);
        }
    }
    plan_fini(pl);
    free(pl);
    buf_fini(&answer);
    return rc;
}

int logic_command_with(struct logic *lg, struct db *db, const char *name, struct slice command,
                       const struct command_opts *opts, struct command_result *out,
                       struct logic_error *err)
{
    struct comp_set *set;
    int rc = logic_set(lg, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *def = comp_set_find(set, name);
    if (!def || def->kind != COMP_COMMAND) {
        comp_set_unref(set);
        return ERR_NOTFOUND;
    }
    struct logic_instance *inst;
    struct logic_module *m = logic_acquire(lg, db, def, &inst, err, &rc);
    rc = m ? ERR_CONFLICT : rc;
    unsigned tries = logic_command_tries(lg);
    for (unsigned i = 0; i < tries && rc == ERR_CONFLICT; i++) {
        struct decision *d = xcalloc(1, sizeof(*d));
        *d = (struct decision){.lg = lg, .db = db, .set = set, .def = def,
                               .fmt = logic_event_format(lg, def->event_format),
                               .render = logic_renderer(lg, def), .metadata = opts->metadata};
        out->attempts = i + 1;
        out->rejected = false;
        buf_reset(&out->rejection);
        rc = decide_once(d, m, command, opts->dry_run, out, err);
        decision_fini(d);
        free(d);
    }
    logic_release(inst, rc == ERR_INVALID && err->kind != LOGIC_E_NONE);
    comp_set_unref(set);
    return rc;
}

int logic_command(struct logic *lg, struct db *db, const char *name, struct slice command,
                  bool dry_run, struct command_result *out, struct logic_error *err)
{
    struct command_opts o = {.dry_run = dry_run};
    return logic_command_with(lg, db, name, command, &o, out, err);
}
