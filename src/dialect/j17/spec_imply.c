/* j17 implications (docs/dialects/j17.md, "Implications"): compiles each event type's
 * implications (emit, map, schedule, pipeline; wasm and the container kinds are refused) and
 * runs them for a written event, depth first through the implications of implied events.
 * Invariants: a run appends at most J17_IMPLIED_MAX events, none deeper than J17_IMPLY_DEPTH;
 * every appended event names a type of the spec, has a canonical id and data valid against its
 * schema; scheduled events do not chain (their implications run when they are written). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/spec.h"
#include "dialect/j17/spec_int.h"
#include "util/errors.h"

static const char *const REFUSED[] = {"wasm", "binary_container", "runtime_container", NULL};

/* ---- compile ---- */

static struct tick_expr *compile_expr(struct j17_cc *c, const json_t *j, const char *path,
                                      unsigned jpath_flags, bool is_pred)
{
    struct tick_expr *x;
    struct tick_error err;
    int rc = is_pred ? tick_pred_compile(j, NULL, jpath_flags, &x, &err)
                     : tick_value_compile(j, NULL, jpath_flags, &x, &err);
    if (rc == 0) return x;
    char at[J17_PATH];
    j17_path_cat(at, path, err.path + 1, "");
    j17_problem(c->pr, at, "%s", err.msg);
    return NULL;
}

struct tick_expr *j17_pred_compile(struct j17_cc *c, const json_t *j, const char *path,
                                   unsigned jpath_flags)
{
    return compile_expr(c, j, path, jpath_flags, true);
}

struct tick_expr *j17_value_compile(struct j17_cc *c, const json_t *j, const char *path,
                                    unsigned jpath_flags)
{
    return compile_expr(c, j, path, jpath_flags, false);
}

/* The literal string a constant value holds, or NULL (a reference, or not a string). */
static const char *literal_string(const struct tick_expr *x)
{
    if (!x || !tick_expr_is_const(x)) return NULL;
    json_t *v;
    struct jpath_ctx none = {0};
    if (tick_expr_eval(x, &none, &v, NULL) < 0) return NULL;
    static _Thread_local char buf[J17_ID_BYTES + 2];
    const char *s = json_is_string(v) && json_string_length(v) <= J17_ID_BYTES
                        ? json_string_value(v) : NULL;
    if (s) snprintf(buf, sizeof buf, "%s", s);
    json_decref(v);
    return s ? buf : NULL;
}

/* Checks the literal types and id of a compiled emit against the spec. */
static void check_emit_literals(struct j17_cc *c, const struct j17_emit *em, const char *path)
{
    char at[J17_PATH];
    char agg[J17_NAME_BYTES + 2] = "";
    const char *lit = literal_string(em->agg_type);
    if (lit) {
        snprintf(agg, sizeof agg, "%s", lit);
        if (!j17_spec_agg(c->s, (struct slice){agg, strlen(agg)})) {
            j17_path_member(at, path, "aggregate_type");
            j17_problem(c->pr, at, "\"%.64s\" is not an aggregate type of this spec", agg);
            agg[0] = '\0';
        }
    }
    lit = literal_string(em->event_type);
    if (lit && agg[0] && !j17_spec_evt(c->s, agg, lit)) {
        j17_path_member(at, path, "event_type");
        j17_problem(c->pr, at, "\"%.64s\" is not an event type of %s", lit, agg);
    }
    lit = literal_string(em->id);
    char canon[J17_ID_BYTES + 1];
    if (em->id && tick_expr_is_const(em->id) &&
        (!lit || j17_id_check(c->s, (struct slice){lit, strlen(lit)}, canon) < 0)) {
        j17_path_member(at, path, "id");
        j17_problem(c->pr, at, "not a valid id (UUID v4/v5, humane code, singleton, "
                               "UUID:tag) nor a reference");
    }
}

bool j17_emit_compile(struct j17_cc *c, const json_t *j, const char *path, unsigned jpath_flags,
                      bool is_cancel, struct j17_emit *out)
{
    static const char *const known[] = {"aggregate_type", "id", "event_type", "data", NULL};
    static const char *const known_cancel[] = {"aggregate_type", "id", "event_type", NULL};
    size_t before = c->pr->count;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(j)) {
        j17_problem(c->pr, path, "an object {aggregate_type, id, event_type%s}",
                    is_cancel ? "" : ", data?");
        return false;
    }
    j17_check_members(c, j, path, is_cancel ? known_cancel : known);
    static const char *const required[] = {"aggregate_type", "id", "event_type"};
    struct tick_expr **slots[] = {&out->agg_type, &out->id, &out->event_type};
    for (size_t i = 0; i < 3; i++) {
        char at[J17_PATH];
        j17_path_member(at, path, required[i]);
        json_t *v = json_object_get(j, required[i]);
        if (!v) {
            j17_problem(c->pr, at, "missing");
            continue;
        }
        *slots[i] = j17_value_compile(c, v, at, jpath_flags);
    }
    json_t *data = is_cancel ? NULL : json_object_get(j, "data");
    if (data) {
        char at[J17_PATH];
        j17_path_member(at, path, "data");
        out->data = j17_value_compile(c, data, at, jpath_flags);
    }
    if (c->pr->count == before) check_emit_literals(c, out, path);
    return c->pr->count == before && !c->pr->more;
}

void j17_emit_fini(struct j17_emit *em)
{
    tick_expr_free(em->agg_type);
    tick_expr_free(em->event_type);
    tick_expr_free(em->id);
    tick_expr_free(em->data);
    memset(em, 0, sizeof(*em));
}

/* "24h", "30m", "90s", "2d" into milliseconds; false when it is not one. */
static bool parse_delay(const char *s, uint64_t *out_ms)
{
    size_t n = strlen(s);
    if (n < 2 || n > 13) return false;
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    static const struct {
        char unit;
        uint64_t ms;
    } UNITS[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    for (size_t i = 0; i < 4; i++) {
        if (s[n - 1] == UNITS[i].unit) {
            *out_ms = v * UNITS[i].ms;
            return true;
        }
    }
    return false;
}

static void compile_delay(struct j17_cc *c, const json_t *j, const char *path,
                          struct j17_imp *out)
{
    json_t *delay = json_object_get(j, "delay");
    json_t *delay_ms = json_object_get(j, "delay_ms");
    char at[J17_PATH];
    j17_path_member(at, path, delay ? "delay" : "delay_ms");
    if (!delay == !delay_ms) {
        j17_problem(c->pr, path, "give one of delay (\"30m\") or delay_ms");
        return;
    }
    bool is_ok = delay ? json_is_string(delay) &&
                             parse_delay(json_string_value(delay), &out->delay_ms)
                       : json_is_integer(delay_ms) && json_integer_value(delay_ms) > 0;
    if (delay_ms && is_ok) out->delay_ms = (uint64_t)json_integer_value(delay_ms);
    if (!is_ok) {
        j17_problem(c->pr, at, delay ? "a delay is digits then s, m, h or d (\"24h\")"
                                     : "a positive integer of milliseconds");
    } else if (out->delay_ms < c->opt->schedule_min_ms) {
        j17_problem(c->pr, at, "delay under the minimum of %llu ms",
                    (unsigned long long)c->opt->schedule_min_ms);
    } else if (out->delay_ms > J17_SCHEDULE_MAX_MS) {
        j17_problem(c->pr, at, "delay over the maximum of %llu ms",
                    (unsigned long long)J17_SCHEDULE_MAX_MS);
    }
}

static void compile_schedule(struct j17_cc *c, const json_t *j, const char *path,
                             struct j17_imp *out)
{
    static const char *const known[] = {"delay", "delay_ms", "emit", "cancel_on", NULL};
    if (!json_is_object(j)) {
        j17_problem(c->pr, path, "an object {delay | delay_ms, emit, cancel_on?}");
        return;
    }
    j17_check_members(c, j, path, known);
    compile_delay(c, j, path, out);
    char at[J17_PATH];
    j17_path_member(at, path, "emit");
    j17_emit_compile(c, json_object_get(j, "emit"), at, 0, false, &out->emit);
    json_t *cancel = json_object_get(j, "cancel_on");
    if (!cancel) return;
    j17_path_member(at, path, "cancel_on");
    if (!json_is_array(cancel) || json_array_size(cancel) > J17_CANCEL_ON_MAX) {
        j17_problem(c->pr, at, "an array of at most %d {aggregate_type, id, event_type}",
                    J17_CANCEL_ON_MAX);
        return;
    }
    out->cancel_on = xcalloc(json_array_size(cancel) + 1, sizeof(*out->cancel_on));
    out->cancel_count = json_array_size(cancel);
    for (size_t i = 0; i < out->cancel_count; i++) {
        char ipath[J17_PATH];
        j17_path_index(ipath, at, i);
        j17_emit_compile(c, json_array_get(cancel, i), ipath, 0, true, &out->cancel_on[i]);
    }
}

static void compile_map(struct j17_cc *c, const json_t *j, const char *path,
                        struct j17_imp *out)
{
    static const char *const known[] = {"over", "emit", "condition", NULL};
    if (!json_is_object(j)) {
        j17_problem(c->pr, path, "an object {over, emit, condition?}");
        return;
    }
    j17_check_members(c, j, path, known);
    char at[J17_PATH];
    j17_path_member(at, path, "over");
    json_t *over = json_object_get(j, "over");
    if (!json_is_string(over) || !jpath_is_ref(json_string_value(over), json_string_length(over))) {
        j17_problem(c->pr, at, "a JSONPath to an array (\"$.data.items\")");
    } else {
        out->over = j17_value_compile(c, over, at, 0);
    }
    j17_path_member(at, path, "emit");
    j17_emit_compile(c, json_object_get(j, "emit"), at, JPATH_ALLOW_ITEM, false, &out->emit);
    json_t *cond = json_object_get(j, "condition");
    if (!cond) return;
    j17_path_member(at, path, "condition");
    out->item_cond = j17_pred_compile(c, cond, at, JPATH_ALLOW_ITEM);
}

static void compile_imp(struct j17_cc *c, const json_t *j, const char *path, bool is_step,
                        struct j17_imp *out);

static void compile_pipeline(struct j17_cc *c, const json_t *j, const char *path,
                             struct j17_imp *out)
{
    size_t n = json_array_size(j);
    if (!json_is_array(j) || n == 0 || n > J17_PIPELINE_STEPS_MAX) {
        j17_problem(c->pr, path, "an array of 1 to %d steps (emit or map implications)",
                    J17_PIPELINE_STEPS_MAX);
        return;
    }
    out->steps = xcalloc(n, sizeof(*out->steps));
    out->step_count = n;
    for (size_t i = 0; i < n; i++) {
        char at[J17_PATH];
        j17_path_index(at, path, i);
        compile_imp(c, json_array_get(j, i), at, true, &out->steps[i]);
    }
}

/* Finds the kind member of an implication; reports refused, unknown and extra members. */
static const char *find_kind(struct j17_cc *c, const json_t *j, const char *path, bool is_step)
{
    static const char *const KINDS[] = {"emit", "map", "schedule", "pipeline"};
    const char *kind = NULL;
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)j, key, v) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        size_t k = 0;
        while (k < 4 && strcmp(KINDS[k], key) != 0) k++;
        bool is_refused = false;
        for (size_t r = 0; REFUSED[r]; r++) is_refused = is_refused || !strcmp(REFUSED[r], key);
        if (strcmp(key, "condition") == 0) continue;
        if (is_refused) {
            j17_problem(c->pr, at, "%s runs code j17 hosts in WebAssembly or containers; "
                                   "Annals runs declarative implications only (emit, map, "
                                   "schedule, pipeline)", key);
        } else if (k == 4) {
            j17_problem(c->pr, at, "unknown member");
        } else if (is_step && k >= 2) {
            j17_problem(c->pr, at, "a pipeline step is an emit or a map implication");
        } else if (kind) {
            j17_problem(c->pr, at, "an implication has one kind; \"%s\" is here too", kind);
        } else {
            kind = key;
        }
    }
    return kind;
}

static void compile_imp(struct j17_cc *c, const json_t *j, const char *path, bool is_step,
                        struct j17_imp *out)
{
    out->where = xstrndup(path, strlen(path));
    if (!json_is_object(j)) {
        j17_problem(c->pr, path, "an implication is an object: one of emit, map, schedule, "
                                 "pipeline, and an optional condition");
        return;
    }
    size_t before = c->pr->count;
    const char *kind = find_kind(c, j, path, is_step);
    if (!kind) {
        if (c->pr->count == before) {
            j17_problem(c->pr, path, "no kind: emit, map, schedule or pipeline");
        }
        return;
    }
    char at[J17_PATH];
    json_t *cond = json_object_get(j, "condition");
    if (cond) {
        j17_path_member(at, path, "condition");
        out->cond = j17_pred_compile(c, cond, at, 0);
    }
    json_t *v = json_object_get(j, kind);
    j17_path_member(at, path, kind);
    if (strcmp(kind, "emit") == 0) {
        out->kind = J17_IMP_EMIT;
        j17_emit_compile(c, v, at, 0, false, &out->emit);
    } else if (strcmp(kind, "map") == 0) {
        out->kind = J17_IMP_MAP;
        compile_map(c, v, at, out);
    } else if (strcmp(kind, "schedule") == 0) {
        out->kind = J17_IMP_SCHEDULE;
        compile_schedule(c, v, at, out);
    } else {
        out->kind = J17_IMP_PIPELINE;
        compile_pipeline(c, v, at, out);
    }
}

void j17_imps_compile(struct j17_cc *c, struct j17_evt *e, const json_t *arr, const char *path)
{
    if (!json_is_array(arr)) {
        j17_problem(c->pr, path, "an array of implications");
        return;
    }
    size_t n = json_array_size(arr);
    if (n > J17_IMPLICATIONS_MAX) {
        j17_problem(c->pr, path, "more than %d implications", J17_IMPLICATIONS_MAX);
        return;
    }
    e->imps = xcalloc(n + 1, sizeof(*e->imps));
    e->imp_count = n;
    for (size_t i = 0; i < n; i++) {
        char at[J17_PATH];
        j17_path_index(at, path, i);
        compile_imp(c, json_array_get(arr, i), at, false, &e->imps[i]);
    }
}

void j17_imps_free(struct j17_imp *imps, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct j17_imp *m = &imps[i];
        free(m->where);
        tick_expr_free(m->cond);
        j17_emit_fini(&m->emit);
        tick_expr_free(m->over);
        tick_expr_free(m->item_cond);
        for (size_t k = 0; k < m->cancel_count; k++) j17_emit_fini(&m->cancel_on[k]);
        free(m->cancel_on);
        j17_imps_free(m->steps, m->step_count);
        free(m->steps);
    }
}

/* ---- run ---- */

/* One j17_imply call. */
struct imply_run {
    const struct j17_spec *s;
    json_t *metadata;                 /* borrowed: the trigger's metadata, for every ctx */
    struct j17_implied_list *out;     /* appended to */
    char *why;                        /* the caller's message buffer */
    size_t why_cap;
};

static int fail(struct imply_run *r, const struct j17_imp *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct imply_run *r, const struct j17_imp *m, int code, const char *fmt, ...)
{
    if (r->why && r->why_cap) {
        int n = snprintf(r->why, r->why_cap, "%s: ", m->where);
        if (n >= 0 && (size_t)n < r->why_cap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->why + n, r->why_cap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return ERR(code);
}

/* Evaluates a value that must be a string of at most cap - 1 bytes into buf. */
static int eval_string(struct imply_run *r, const struct j17_imp *m, const struct tick_expr *x,
                       const json_t *ctx, const char *what, char *buf, size_t cap)
{
    struct jpath_ctx jc = {.event = ctx};
    json_t *v;
    struct tick_error err;
    int rc = tick_expr_eval(x, &jc, &v, &err);
    if (rc < 0) return fail(r, m, rc, "%s: %s", what, err.msg);
    bool is_ok = json_is_string(v) && json_string_length(v) < cap &&
                 strlen(json_string_value(v)) == json_string_length(v);
    if (is_ok) snprintf(buf, cap, "%s", json_string_value(v));
    json_decref(v);
    if (!is_ok) return fail(r, m, ERR_INVALID, "%s is not a string of at most %zu bytes", what,
                            cap - 1);
    return 0;
}

/* The type, event type and canonical id an emit names in ctx. */
static int resolve_target(struct imply_run *r, const struct j17_imp *m,
                          const struct j17_emit *em, const json_t *ctx,
                          struct j17_implied *ev, const struct j17_evt **out_evt)
{
    char id[J17_ID_BYTES + 1];
    int rc = eval_string(r, m, em->agg_type, ctx, "aggregate_type", ev->agg_type,
                         sizeof ev->agg_type);
    if (rc == 0) {
        rc = eval_string(r, m, em->event_type, ctx, "event_type", ev->event_type,
                         sizeof ev->event_type);
    }
    if (rc == 0) rc = eval_string(r, m, em->id, ctx, "id", id, sizeof id);
    if (rc < 0) return rc;
    *out_evt = j17_spec_evt(r->s, ev->agg_type, ev->event_type);
    if (!*out_evt) {
        return fail(r, m, ERR_INVALID, "%.64s.%.64s is not an event type of this spec",
                    ev->agg_type, ev->event_type);
    }
    if (j17_id_check(r->s, (struct slice){id, strlen(id)}, ev->id) < 0) {
        return fail(r, m, ERR_INVALID, "id \"%.64s\" is not a valid id", id);
    }
    return 0;
}

/* Builds the implied event of em in ctx into *ev (data owned by it on success). */
static int build_event(struct imply_run *r, const struct j17_imp *m, const struct j17_emit *em,
                       const json_t *ctx, struct j17_implied *ev, const struct j17_evt **out_evt)
{
    memset(ev, 0, sizeof(*ev));
    int rc = resolve_target(r, m, em, ctx, ev, out_evt);
    if (rc < 0) return rc;
    struct jpath_ctx jc = {.event = ctx};
    struct tick_error err;
    if (em->data) {
        rc = tick_expr_eval(em->data, &jc, &ev->data, &err);
        if (rc < 0) return fail(r, m, rc, "data: %s", err.msg);
    } else {
        ev->data = json_object();
    }
    char path[J17_PATH];
    char msg[J17_PROBLEM_MSG_BYTES];
    if (j17_evt_validate(*out_evt, ev->data, path, sizeof path, msg, sizeof msg) < 0) {
        json_decref(ev->data);
        ev->data = NULL;
        return fail(r, m, ERR_INVALID, "%s.%s: %s at %s: %s", ev->agg_type, ev->event_type,
                    "implied data fails its schema", path, msg);
    }
    return 0;
}

/* The cancel_on entries of a scheduled implication, resolved in ctx: a new array, or NULL. */
static int resolve_cancel(struct imply_run *r, const struct j17_imp *m, const json_t *ctx,
                          json_t **out)
{
    *out = NULL;
    if (m->cancel_count == 0) return 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < m->cancel_count; i++) {
        struct j17_implied one = {0};
        const struct j17_evt *evt;
        int rc = resolve_target(r, m, &m->cancel_on[i], ctx, &one, &evt);
        if (rc < 0) {
            json_decref(arr);
            return rc;
        }
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "aggregate_type", one.agg_type,
                                             "id", one.id, "event_type", one.event_type));
    }
    *out = arr;
    return 0;
}

static void push(struct j17_implied_list *l, struct j17_implied *ev)
{
    l->items = xrealloc(l->items, (l->count + 1) * sizeof(*l->items));
    l->items[l->count++] = *ev;
}

static int run_imps(struct imply_run *r, const struct j17_evt *e, const json_t *ctx,
                    unsigned depth);

/* Implies one event of em in ctx at depth (delay_ms > 0: scheduled, no chaining). On success
 * *out_ctx (when not NULL) is the new event's context (a new reference), for pipelines. */
static int emit_one(struct imply_run *r, const struct j17_imp *m, const struct j17_emit *em,
                    const json_t *ctx, unsigned depth, json_t **out_ctx)
{
    if (depth > J17_IMPLY_DEPTH) {
        return fail(r, m, ERR_TOOBIG, "implications chain deeper than %d levels",
                    J17_IMPLY_DEPTH);
    }
    if (r->out->count >= J17_IMPLIED_MAX) {
        return fail(r, m, ERR_TOOBIG, "more than %d implied events", J17_IMPLIED_MAX);
    }
    struct j17_implied ev;
    const struct j17_evt *evt;
    int rc = build_event(r, m, em, ctx, &ev, &evt);
    if (rc < 0) return rc;
    ev.depth = depth;
    ev.delay_ms = m->kind == J17_IMP_SCHEDULE ? m->delay_ms : 0;
    if (m->kind == J17_IMP_SCHEDULE) rc = resolve_cancel(r, m, ctx, &ev.cancel_on);
    if (rc < 0) {
        json_decref(ev.data);
        return rc;
    }
    char key[2 * J17_ID_BYTES + 2];
    snprintf(key, sizeof key, "%s:%s", ev.agg_type, ev.id);
    json_t *data = json_incref(ev.data);
    push(r->out, &ev);
    if (m->kind == J17_IMP_SCHEDULE) {
        json_decref(data);
        return 0;
    }
    json_t *evctx = jpath_event_new(evt->name, key, data, r->metadata);
    json_decref(data);
    rc = run_imps(r, evt, evctx, depth);
    if (rc == 0 && out_ctx) {
        *out_ctx = evctx;
    } else {
        json_decref(evctx);
    }
    return rc;
}

static int test(struct imply_run *r, const struct j17_imp *m, const struct tick_expr *cond,
                const json_t *ctx, bool *out)
{
    *out = true;
    if (!cond) return 0;
    struct jpath_ctx jc = {.event = ctx};
    struct tick_error err;
    int rc = tick_expr_test(cond, &jc, out, &err);
    return rc < 0 ? fail(r, m, rc, "condition: %s", err.msg) : 0;
}

static int run_map(struct imply_run *r, const struct j17_imp *m, const json_t *ctx,
                   unsigned depth, json_t **out_ctx)
{
    struct jpath_ctx jc = {.event = ctx};
    json_t *over;
    struct tick_error err;
    int rc = tick_expr_eval(m->over, &jc, &over, &err);
    if (rc < 0) return fail(r, m, rc, "over: %s", err.msg);
    if (!json_is_array(over) && !json_is_null(over)) {
        json_decref(over);
        return fail(r, m, ERR_INVALID, "over does not name an array");
    }
    size_t i;
    json_t *item;
    json_array_foreach (over, i, item) {
        json_t *ictx = json_copy((json_t *)ctx);
        json_object_set(ictx, "item", item);
        bool is_on;
        rc = test(r, m, m->item_cond, ictx, &is_on);
        if (rc == 0 && is_on) {
            json_t *next = NULL;
            rc = emit_one(r, m, &m->emit, ictx, depth + 1, out_ctx ? &next : NULL);
            if (next) {
                json_decref(*out_ctx);
                *out_ctx = next;
            }
        }
        json_decref(ictx);
        if (rc < 0) break;
    }
    json_decref(over);
    return rc;
}

static int run_imp(struct imply_run *r, const struct j17_imp *m, const json_t *ctx,
                   unsigned depth, json_t **out_ctx);

/* Steps in order; each later step reads the event the previous step implied last. */
static int run_pipeline(struct imply_run *r, const struct j17_imp *m, const json_t *ctx,
                        unsigned depth)
{
    json_t *cur = json_incref((json_t *)ctx);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->step_count; i++) {
        json_t *next = NULL;
        rc = run_imp(r, &m->steps[i], cur, depth, &next);
        json_decref(cur);
        cur = next;
        if (!cur) break;
    }
    json_decref(cur);
    return rc;
}

static int run_imp(struct imply_run *r, const struct j17_imp *m, const json_t *ctx,
                   unsigned depth, json_t **out_ctx)
{
    bool is_on;
    int rc = test(r, m, m->cond, ctx, &is_on);
    if (rc < 0 || !is_on) return rc;
    switch (m->kind) {
    case J17_IMP_EMIT:
    case J17_IMP_SCHEDULE: rc = emit_one(r, m, &m->emit, ctx, depth + 1, out_ctx); break;
    case J17_IMP_MAP: rc = run_map(r, m, ctx, depth, out_ctx); break;
    case J17_IMP_PIPELINE: rc = run_pipeline(r, m, ctx, depth); break;
    }
    return rc;
}

static int run_imps(struct imply_run *r, const struct j17_evt *e, const json_t *ctx,
                    unsigned depth)
{
    for (size_t i = 0; i < e->imp_count; i++) {
        int rc = run_imp(r, &e->imps[i], ctx, depth, NULL);
        if (rc < 0) return rc;
    }
    return 0;
}

void j17_implied_list_fini(struct j17_implied_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        json_decref(l->items[i].data);
        json_decref(l->items[i].cancel_on);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

int j17_saga_step_event(const struct j17_spec *s, const struct j17_saga *g, size_t i,
                        bool compensate, const json_t *ctx, struct j17_implied *out, char *why,
                        size_t cap)
{
    const struct j17_emit *em = compensate ? &g->steps[i].compensate : &g->steps[i].emit;
    memset(out, 0, sizeof(*out));
    if (why && cap) why[0] = '\0';
    if (!em->agg_type || !em->event_type || !em->id) {
        if (compensate) return ERR_NOTFOUND;
        snprintf(why, cap, "modules.sagas.%s.steps[%zu].emit: not compiled", g->name, i);
        return ERR(ERR_INVALID);
    }
    char where[J17_PATH];
    snprintf(where, sizeof where, "modules.sagas.%s.steps[%zu].%s", g->name, i,
             compensate ? "compensate" : "emit");
    struct j17_imp m = {.kind = J17_IMP_EMIT, .where = where};
    struct imply_run r = {.s = s, .why = why, .why_cap = cap};
    const struct j17_evt *evt;
    int rc = build_event(&r, &m, em, ctx, out, &evt);
    out->depth = 1;
    return rc;
}

int j17_imply(const struct j17_spec *s, const struct j17_agg *a, const struct j17_evt *e,
              const json_t *ctx, struct j17_implied_list *out, char *why, size_t why_cap)
{
    (void)a;
    if (why && why_cap) why[0] = '\0';
    struct imply_run r = {.s = s, .out = out, .why = why, .why_cap = why_cap};
    r.metadata = json_object_get(ctx, "metadata");
    return run_imps(&r, e, ctx, 0);
}
