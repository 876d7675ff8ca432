/* The Tick runtime (logic/tick_rt.h): a table of compiled Tick plans by event type, run as a
 * reducer.
 *
 * Invariants: a loaded module holds one immutable plan per event type of its source, compiled
 * with the module's limits (the step budget of logic/tick.h per event, the state's node limit
 * from the memory budget); a fold keeps its state as one jansson tree from the first event to
 * the last and encodes it once; every failure leaves out as it was and sets err; a state or
 * argument deeper than LOGIC_MAX_JSON_DEPTH never crosses the boundary.
 *
 * Error mapping of tick_apply: ERR_INVALID (a type mismatch in a handler) is runtime_error,
 * "<event type>: <path>: <msg>"; ERR_TOOBIG is cpu_limit when Tick's step budget ran out (the
 * step budget is the per-event share of the CPU budget), else memory_limit (the state's size,
 * depth or an array's length: what the memory budget bounds).
 */
#include "logic/tick_rt.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json/jenc.h"
#include "logic/tick.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/limits.h"
#include "util/strmap.h"

struct tick_module {
    struct logic_module_base base; /* first: runtime.c's dispatch */
    struct strmap handlers;        /* event type -> struct tick_plan * (owned) */
    struct logic_limits lim;       /* the complete limits it was loaded with */
};

static int fail(struct logic_error *err, enum logic_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct logic_error *err, enum logic_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void free_handlers(struct strmap *h)
{
    const char *k;
    size_t klen;
    void *v;
    for (size_t pos = 0; strmap_next(h, &pos, &k, &klen, &v);) {
        tick_plan_free(*(struct tick_plan **)v);
    }
    strmap_fini(h);
}

/* ---- JSON in and out ---- */

/* True when v nests at most max levels (a scalar is level 0's value, [] one level). */
static bool depth_ok(const json_t *v, int max)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        return true;
    }
    if (max <= 0) {
        return false;
    }
    const char *key;
    json_t *child;
    size_t i;
    json_object_foreach ((json_t *)v, key, child) {
        if (!depth_ok(child, max - 1)) {
            return false;
        }
    }
    json_array_foreach (v, i, child) {
        if (!depth_ok(child, max - 1)) {
            return false;
        }
    }
    return true;
}

/* Parses one argument: a new reference, or NULL with err set (what names it). An integer
 * past int64 makes every number of that value a real (as a Lua literal beyond int64 becomes
 * a float). */
static json_t *parse_arg(struct slice text, const char *what, struct logic_error *err)
{
    json_error_t je;
    json_t *v = json_loadb(text.ptr, text.len, JSON_DECODE_ANY, &je);
    if (!v && json_error_code(&je) == json_error_numeric_overflow) {
        v = json_loadb(text.ptr, text.len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    }
    if (!v) {
        fail(err, LOGIC_E_INVALID, "%s: not JSON (column %d): %s", what, je.column, je.text);
        return NULL;
    }
    if (!depth_ok(v, LOGIC_MAX_JSON_DEPTH)) {
        json_decref(v);
        fail(err, LOGIC_E_INVALID, "%s: nested deeper than %d levels", what,
             LOGIC_MAX_JSON_DEPTH);
        return NULL;
    }
    return v;
}

/* Appends state's JSON to out within the module's output budget and depth; out unchanged on
 * failure (LOGIC_E_OUTPUT). */
static int encode_state(const struct tick_module *m, const json_t *state, struct buf *out,
                        struct logic_error *err)
{
    size_t start = out->len;
    if (jenc_tree(state, out, m->lim.output_bytes, LOGIC_MAX_JSON_DEPTH) == 0) {
        return 0;
    }
    out->len = start;
    if (out->cap) {
        out->ptr[start] = '\0';
    }
    return fail(err, LOGIC_E_OUTPUT, "result: the state exceeds the output limit of %zu bytes "
                "or nests deeper than %d levels", m->lim.output_bytes, LOGIC_MAX_JSON_DEPTH);
}

/* ---- loading ---- */

/* Tick's limits for a module: the defaults, the state's nodes bounded by the memory budget. */
static void plan_limits(const struct logic_limits *lim, struct tick_limits *tl)
{
    tick_limits_default(tl);
    size_t nodes = lim->mem_bytes / TICK_RT_NODE_BYTES;
    if (nodes < tl->state_nodes) {
        tl->state_nodes = nodes ? nodes : 1;
    }
}

/* Compiles every member of the source object into m->handlers. */
static int compile_handlers(struct tick_module *m, json_t *src, const struct logic_limits *lim,
                            struct logic_error *err)
{
    struct tick_limits tl;
    plan_limits(lim, &tl);
    const char *type;
    json_t *handler;
    json_object_foreach (src, type, handler) {
        char *text = json_dumps(handler, JSON_ENCODE_ANY | JSON_COMPACT);
        struct tick_error te = {0};
        struct tick_plan *plan = NULL;
        int rc = text ? tick_compile(text, strlen(text), &tl, &plan, &te) : ERR_INVALID;
        free(text);
        if (rc < 0) {
            return fail(err, LOGIC_E_SYNTAX, "%.100s: %s: %s", type, te.path, te.msg);
        }
        bool is_new;
        *(struct tick_plan **)strmap_put(&m->handlers, type, strlen(type), &is_new) = plan;
    }
    return 0;
}

/* LOGIC_E_MISSING naming every entry but reduce. */
static int check_entries(const char *const *entries, struct logic_error *err)
{
    char missing[256] = "";
    size_t n = 0;
    for (size_t i = 0; entries && entries[i]; i++) {
        if (strcmp(entries[i], "reduce") != 0 && n < sizeof missing) {
            n += (size_t)snprintf(missing + n, sizeof missing - n, "%s%s", n ? ", " : "",
                                  entries[i]);
        }
    }
    if (!missing[0]) {
        return 0;
    }
    return fail(err, LOGIC_E_MISSING, "not defined: %s (a tick module defines reduce only)",
                missing);
}

static int load_module(struct logic_env *env, const char *name, const char *source, size_t len,
                       const char *const *entries, const struct logic_limits *lim,
                       struct logic_module **out, struct logic_error *err)
{
    (void)env;
    (void)name; /* messages name the event type, the caller names the component */
    json_error_t je;
    json_t *src = json_loadb(source, len, JSON_REJECT_DUPLICATES, &je);
    if (!src || !json_is_object(src)) {
        err->line = src ? 1 : je.line;
        err->column = src ? 1 : je.column;
        fail(err, LOGIC_E_SYNTAX, "a tick module is a JSON object of event type: handler%s%s",
             src ? "" : ": ", src ? "" : je.text);
        json_decref(src);
        return ERR_INVALID;
    }
    struct tick_module *m = xcalloc(1, sizeof(*m));
    m->base.rt = &logic_tick_runtime;
    m->lim = *lim;
    strmap_init(&m->handlers, sizeof(struct tick_plan *));
    int rc = compile_handlers(m, src, lim, err);
    json_decref(src);
    if (!rc) {
        rc = check_entries(entries, err);
    }
    if (rc) {
        free_handlers(&m->handlers);
        free(m);
        return rc;
    }
    *out = (struct logic_module *)(void *)m;
    return 0;
}

/* ---- running ---- */

static int apply_failed(const char *type, int rc, const struct tick_error *te,
                        struct logic_error *err)
{
    bool is_steps = rc == ERR_TOOBIG && strstr(te->msg, "step budget");
    enum logic_err_kind kind = rc != ERR_TOOBIG ? LOGIC_E_RUNTIME
                               : is_steps       ? LOGIC_E_CPU
                                                : LOGIC_E_MEMORY;
    return fail(err, kind, "%.100s: %s: %s", type, te->path, te->msg);
}

/* *state = reduce(*state, event) in place (the old tree released on success). */
static int apply_event(const struct tick_module *m, json_t **state, struct slice ev,
                       struct logic_error *err)
{
    json_t *event = parse_arg(ev, "event", err);
    if (!event) {
        return ERR_INVALID;
    }
    if (!json_is_object(event)) {
        json_decref(event);
        return fail(err, LOGIC_E_INVALID, "event: not a JSON object");
    }
    json_t *t = json_object_get(event, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    struct tick_plan **plan =
        type ? strmap_get(&m->handlers, type, json_string_length(t)) : NULL;
    int rc = 0;
    if (plan) {
        struct tick_error te = {0};
        json_t *next = NULL;
        rc = tick_apply(*plan, *state, event, &next, &te);
        if (rc < 0) {
            rc = apply_failed(type, rc, &te, err);
        } else {
            json_decref(*state);
            *state = next;
        }
    } else if (!*state || json_is_null(*state)) { /* no handler: unchanged, {} for null */
        json_decref(*state);
        *state = json_object();
    }
    json_decref(event);
    return rc;
}

static bool is_reduce(const char *entry, struct logic_error *err)
{
    if (strcmp(entry, "reduce") == 0) {
        return true;
    }
    fail(err, LOGIC_E_MISSING, "%s is not defined (a tick module defines reduce only)", entry);
    return false;
}

static int call_module(struct logic_module *mod, const char *entry, const struct slice *args,
                       size_t nargs, struct buf *out, struct logic_error *err)
{
    const struct tick_module *m = (const struct tick_module *)(const void *)mod;
    if (!is_reduce(entry, err)) {
        return ERR_INVALID;
    }
    if (nargs < 2) {
        return fail(err, LOGIC_E_INVALID, "reduce takes (state, event)");
    }
    json_t *state = parse_arg(args[0], "state", err);
    if (!state) {
        return ERR_INVALID;
    }
    int rc = apply_event(m, &state, args[1], err);
    if (!rc) {
        rc = encode_state(m, state, out, err);
    }
    json_decref(state);
    return rc;
}

/* True (err set) once the thread has spent more than the module's CPU budget since start. */
static bool cpu_spent(const struct tick_module *m, uint64_t start_ns, struct logic_error *err)
{
    if (thread_cpu_ns() - start_ns <= (uint64_t)m->lim.cpu_ms * 1000000ull) {
        return false;
    }
    fail(err, LOGIC_E_CPU, "the fold's CPU budget of %u ms ran out", m->lim.cpu_ms);
    return true;
}

static int fold_module(struct logic_module *mod, const char *entry, struct slice state_text,
                       const struct slice *events, size_t n, const struct slice *extra,
                       struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    (void)extra; /* reduce takes no parameters */
    const struct tick_module *m = (const struct tick_module *)(const void *)mod;
    size_t failed_at = n;
    uint64_t start_ns = thread_cpu_ns();
    int rc = is_reduce(entry, err) ? 0 : ERR_INVALID;
    json_t *state = NULL;
    if (!rc) {
        state = parse_arg(state_text.ptr ? state_text : (struct slice){"null", 4}, "state",
                          err);
        rc = state ? 0 : ERR_INVALID;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = apply_event(m, &state, events[i], err);
        bool check = (i + 1) % TICK_RT_CPU_CHECK_EVENTS == 0 || i + 1 == n;
        if (!rc && check && cpu_spent(m, start_ns, err)) {
            rc = ERR_INVALID;
        }
        failed_at = rc ? i : n;
    }
    if (!rc) {
        rc = encode_state(m, state, out, err);
    }
    json_decref(state);
    if (rc && out_failed_at) {
        *out_failed_at = failed_at;
    }
    return rc;
}

static size_t copy_logs(struct logic_module *m, char **lines, size_t max)
{
    (void)m;
    (void)lines;
    (void)max;
    return 0; /* Tick has no log operation */
}

static void unload_module(struct logic_module *mod)
{
    struct tick_module *m = (struct tick_module *)(void *)mod;
    free_handlers(&m->handlers);
    free(m);
}

const struct logic_runtime logic_tick_runtime = {
    .name = "tick",
    .load = load_module,
    .call = call_module,
    .fold = fold_module,
    .logs = copy_logs,
    .unload = unload_module,
};
