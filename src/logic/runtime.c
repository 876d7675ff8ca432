/* The generic side of logic/runtime.h: names, limits, the shared environment, and the
 * dispatch of load, call, fold, map, fold_keyed, logs and unload to the runtime that loaded a
 * module, with the batches' fallbacks (one call per event) for a runtime that has none.
 *
 * Invariants: every module begins with a struct logic_module_base naming its runtime and its
 * complete limits, so the dispatch needs no table; the limits a runtime receives are complete
 * (a zero field of the caller's limits means the default); err is always set on failure and
 * cleared on entry; a batch that fails leaves out as it was.
 */
#include "logic/runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "logic/js_rt.h"
#include "logic/lua_rt.h"
#include "logic/tick_rt.h"
#include "util/errors.h"
#include "util/strmap.h"

static void clear_error(struct logic_error *err)
{
    err->kind = LOGIC_E_NONE;
    err->line = 0;
    err->column = 0;
    err->message[0] = '\0';
}

static int fail(struct logic_error *err, int rc, enum logic_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct logic_error *err, int rc, enum logic_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

enum logic_lang logic_lang_parse(const char *name)
{
    if (!name) {
        return 0;
    }
    if (strcmp(name, "lua") == 0) {
        return LOGIC_LANG_LUA;
    }
    if (strcmp(name, "javascript") == 0 || strcmp(name, "js") == 0) {
        return LOGIC_LANG_JAVASCRIPT;
    }
    if (strcmp(name, "typescript") == 0 || strcmp(name, "ts") == 0) {
        return LOGIC_LANG_TYPESCRIPT;
    }
    if (strcmp(name, "wasm") == 0) {
        return LOGIC_LANG_WASM;
    }
    if (strcmp(name, "tick") == 0) {
        return LOGIC_LANG_TICK;
    }
    if (strcmp(name, "json") == 0) {
        return LOGIC_LANG_JSON;
    }
    return 0;
}

const char *logic_lang_name(enum logic_lang lang)
{
    switch (lang) {
    case LOGIC_LANG_LUA: return "lua";
    case LOGIC_LANG_JAVASCRIPT: return "javascript";
    case LOGIC_LANG_TYPESCRIPT: return "typescript";
    case LOGIC_LANG_WASM: return "wasm";
    case LOGIC_LANG_TICK: return "tick";
    case LOGIC_LANG_JSON: return "json";
    }
    return "unknown";
}

const char *logic_err_name(enum logic_err_kind kind)
{
    switch (kind) {
    case LOGIC_E_NONE: return "none";
    case LOGIC_E_SYNTAX: return "syntax_error";
    case LOGIC_E_MISSING: return "missing_entry";
    case LOGIC_E_RUNTIME: return "runtime_error";
    case LOGIC_E_CPU: return "cpu_limit";
    case LOGIC_E_MEMORY: return "memory_limit";
    case LOGIC_E_OUTPUT: return "output_limit";
    case LOGIC_E_FORBIDDEN: return "forbidden";
    case LOGIC_E_WORKER: return "worker_error";
    case LOGIC_E_INVALID: return "invalid_input";
    }
    return "unknown";
}

void logic_limits_default(struct logic_limits *lim)
{
    lim->cpu_ms = LOGIC_DEFAULT_CPU_MS;
    lim->mem_bytes = LOGIC_DEFAULT_MEM_BYTES;
    lim->output_bytes = LOGIC_DEFAULT_OUTPUT_BYTES;
}

/* The caller's limits with each zero field (or all of them, for NULL) at its default. */
static struct logic_limits complete_limits(const struct logic_limits *lim)
{
    struct logic_limits l;
    logic_limits_default(&l);
    if (lim) {
        l.cpu_ms = lim->cpu_ms ? lim->cpu_ms : l.cpu_ms;
        l.mem_bytes = lim->mem_bytes ? lim->mem_bytes : l.mem_bytes;
        l.output_bytes = lim->output_bytes ? lim->output_bytes : l.output_bytes;
    }
    return l;
}

static char *copy_path(const char *s)
{
    return s ? strcpy(xmalloc(strlen(s) + 1), s) : NULL;
}

/* ===== JavaScript, TypeScript and WebAssembly: the one place logic/js_rt.c plugs in =======
 * The environment holds the JavaScript worker pool (logic/js_rt.h: one sandboxed
 * annals-jsworker process per loaded module, started at load; WebAssembly components run in
 * the same worker); without a worker binary (js_worker_path NULL) their loads fail with
 * LOGIC_E_INVALID "javascript runtime not available" ("wasm runtime ..." for WebAssembly). */

struct logic_env {
    struct logic_env_config cfg; /* a copy; the path strings are owned */
    struct js_pool *js_pool;     /* JavaScript's workers (js_rt.h); NULL without a worker */
};

struct js_pool *logic_env_js_pool(struct logic_env *env)
{
    return env ? env->js_pool : NULL;
}

static const struct logic_runtime *js_runtime(struct logic_env *env, enum logic_lang lang,
                                              struct logic_error *err)
{
    if (!logic_env_js_pool(env)) {
        fail(err, ERR_INVALID, LOGIC_E_INVALID, "%s runtime not available",
             lang == LOGIC_LANG_WASM ? "wasm" : "javascript");
        return NULL;
    }
    if (lang == LOGIC_LANG_WASM) {
        return &logic_wasm_runtime;
    }
    return lang == LOGIC_LANG_TYPESCRIPT ? &logic_ts_runtime : &logic_js_runtime;
}

static void js_env_start(struct logic_env *env) /* starts no process */
{
    if (env->cfg.js_worker_path) {
        (void)js_pool_new(&env->cfg, &env->js_pool);
    }
}

static void js_env_stop(struct logic_env *env)
{
    js_pool_free(env->js_pool);
}

/* ===== end of the JavaScript section ===================================================== */

int logic_env_new(const struct logic_env_config *cfg, struct logic_env **out)
{
    struct logic_env *env = xcalloc(1, sizeof *env);
    if (cfg) {
        env->cfg = *cfg;
    }
    env->cfg.js_worker_path = copy_path(env->cfg.js_worker_path);
    env->cfg.esbuild_path = copy_path(env->cfg.esbuild_path);
    if (env->cfg.js_workers == 0) {
        env->cfg.js_workers = LOGIC_DEFAULT_JS_WORKERS;
    }
    if (env->cfg.js_worker_mem_bytes == 0) {
        env->cfg.js_worker_mem_bytes = LOGIC_DEFAULT_JS_WORKER_MEM;
    }
    js_env_start(env);
    *out = env;
    return 0;
}

void logic_env_free(struct logic_env *env)
{
    if (!env) {
        return;
    }
    js_env_stop(env);
    free((char *)env->cfg.js_worker_path);
    free((char *)env->cfg.esbuild_path);
    free(env);
}

static const struct logic_runtime *runtime_for(struct logic_env *env, enum logic_lang lang,
                                               struct logic_error *err)
{
    switch (lang) {
    case LOGIC_LANG_LUA: return &logic_lua_runtime;
    case LOGIC_LANG_JAVASCRIPT:
    case LOGIC_LANG_TYPESCRIPT:
    case LOGIC_LANG_WASM: return js_runtime(env, lang, err);
    case LOGIC_LANG_TICK: return &logic_tick_runtime;
    case LOGIC_LANG_JSON:
        fail(err, ERR_INVALID, LOGIC_E_INVALID, "json documents are not code");
        return NULL;
    }
    fail(err, ERR_INVALID, LOGIC_E_INVALID, "unknown language %d", (int)lang);
    return NULL;
}

int logic_load(struct logic_env *env, enum logic_lang lang, const char *name,
               const char *source, size_t len, const char *const *entries,
               const struct logic_limits *lim, struct logic_module **out, struct logic_error *err)
{
    struct logic_error spare;
    err = err ? err : &spare;
    clear_error(err);
    *out = NULL;
    if (!source && len > 0) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no source");
    }
    if (len > LOGIC_MAX_SOURCE_BYTES) {
        return fail(err, ERR_TOOBIG, LOGIC_E_INVALID, "source of %zu bytes exceeds the limit of %d",
                    len, LOGIC_MAX_SOURCE_BYTES);
    }
    const struct logic_runtime *rt = runtime_for(env, lang, err);
    if (!rt) {
        return ERR_INVALID;
    }
    struct logic_limits l = complete_limits(lim);
    int rc = rt->load(env, name && *name ? name : "module", source ? source : "", len, entries,
                      &l, out, err);
    if (rc == 0) {
        ((struct logic_module_base *)(void *)*out)->lim = l;
    }
    return rc;
}

static const struct logic_runtime *runtime_of(struct logic_module *m)
{
    return ((const struct logic_module_base *)(const void *)m)->rt;
}

int logic_call(struct logic_module *m, const char *entry, const struct slice *args, size_t nargs,
               struct buf *out, struct logic_error *err)
{
    struct logic_error spare;
    err = err ? err : &spare;
    clear_error(err);
    if (!m || !entry || (nargs > 0 && !args)) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entry or arguments");
    }
    return runtime_of(m)->call(m, entry, args, nargs, out, err);
}

int logic_fold(struct logic_module *m, const char *entry, struct slice state,
               const struct slice *events, size_t n, const struct slice *extra, struct buf *out,
               size_t *out_failed_at, struct logic_error *err)
{
    struct logic_error spare;
    err = err ? err : &spare;
    clear_error(err);
    if (!m || !entry || (n > 0 && !events)) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entry or events");
    }
    return runtime_of(m)->fold(m, entry, state, events, n, extra, out, out_failed_at, err);
}

/* ---- batches ------------------------------------------------------------------------------
 * A runtime's own map and fold_keyed run a batch under one CPU budget. Without them, the
 * fallbacks below make one call per event (each call with its own CPU budget) and build the
 * array here, keeping it within the module's output budget. */

/* Appends item as element count of the array that began at out[start], when the whole array
 * (its closing bracket included) stays within max bytes; false (out unchanged) otherwise. */
static bool add_item(struct buf *out, size_t start, size_t count, struct slice item, size_t max)
{
    size_t need = out->len - start + (count ? 1 : 0) + item.len + 1;
    if (need > max) {
        return false;
    }
    if (count) {
        buf_addc(out, ',');
    }
    buf_add(out, item.ptr, item.len);
    return true;
}

static int fail_output(struct logic_error *err, size_t max)
{
    return fail(err, ERR_INVALID, LOGIC_E_OUTPUT,
                "the results exceed the output limit of %zu bytes", max);
}

/* Ends a batch built in out from start: the closing bracket on success, out as it was on
 * failure (no event to blame unless the code found one: *failed_at is n then). */
static int end_batch(struct buf *out, size_t start, int rc)
{
    if (rc == 0) {
        buf_addc(out, ']');
        return 0;
    }
    out->len = start;
    if (out->cap) {
        out->ptr[start] = '\0';
    }
    return rc;
}

static int map_by_calls(struct logic_module *m, const char *entry, const struct slice *events,
                        size_t n, struct buf *out, size_t *failed_at, struct logic_error *err)
{
    const struct logic_module_base *base = (const struct logic_module_base *)(const void *)m;
    size_t max = complete_limits(&base->lim).output_bytes;
    size_t start = out->len;
    struct buf r;
    int rc = 0;
    buf_init(&r);
    buf_addc(out, '[');
    for (size_t i = 0; i < n && rc == 0; i++) {
        buf_reset(&r);
        *failed_at = i;
        rc = base->rt->call(m, entry, &events[i], 1, &r, err);
        if (rc == 0 && !add_item(out, start, i, (struct slice){r.ptr, r.len}, max)) {
            rc = fail_output(err, max);
        }
    }
    if (rc == 0 && out->len - start + 1 > max) {
        *failed_at = n;
        rc = fail_output(err, max);
    }
    if (rc < 0 && err->kind == LOGIC_E_MISSING) {
        *failed_at = n;
    }
    buf_fini(&r);
    return end_batch(out, start, rc);
}

/* Fills st (key -> struct buf of the state's JSON) from the object states (whose members may
 * nest as deep as any argument, so the object one level more). */
static int load_states(struct strmap *st, struct slice states, struct logic_error *err)
{
    struct jsonv_error je;
    if (jsonv_validate(states.ptr, states.len, LOGIC_MAX_JSON_DEPTH + 1, &je) < 0 ||
        jsonx_kind(states) != '{') {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "states: not a JSON object");
    }
    struct buf key;
    struct slice raw, val;
    int rc = 0;
    buf_init(&key);
    for (size_t pos = 0; rc == 0 && jsonx_next_member(states, &pos, &raw, &val);) {
        rc = jsonx_string(raw, &key);
        if (rc == 0) {
            struct buf *s = strmap_put(st, key.ptr ? key.ptr : "", key.len, NULL);
            buf_reset(s);
            buf_add(s, val.ptr, val.len);
        }
    }
    buf_fini(&key);
    return rc < 0 ? fail(err, ERR_INVALID, LOGIC_E_INVALID, "states: a key is not UTF-8") : 0;
}

static void free_states(struct strmap *st)
{
    const char *k;
    size_t klen;
    void *v;
    for (size_t pos = 0; strmap_next(st, &pos, &k, &klen, &v);) {
        buf_fini(v);
    }
    strmap_fini(st);
}

static int fold_keyed_by_calls(struct logic_module *m, const char *entry, struct slice states,
                               const struct slice *keys, const struct slice *events, size_t n,
                               struct buf *out, size_t *failed_at, struct logic_error *err)
{
    const struct logic_module_base *base = (const struct logic_module_base *)(const void *)m;
    size_t max = complete_limits(&base->lim).output_bytes;
    size_t start = out->len;
    struct strmap st;
    struct buf r;
    strmap_init(&st, sizeof(struct buf)); /* a zeroed value is an empty buf: state null */
    buf_init(&r);
    buf_addc(out, '[');
    int rc = load_states(&st, states, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct buf *s = strmap_put(&st, keys[i].ptr ? keys[i].ptr : "", keys[i].len, NULL);
        struct slice args[2] = {{s->len ? s->ptr : "null", s->len ? s->len : 4}, events[i]};
        buf_reset(&r);
        *failed_at = i;
        rc = base->rt->call(m, entry, args, 2, &r, err);
        if (rc == 0 && !add_item(out, start, i, (struct slice){r.ptr, r.len}, max)) {
            rc = fail_output(err, max);
        }
        if (rc == 0) {
            buf_reset(s);
            buf_add(s, r.ptr, r.len);
        }
    }
    if (rc == 0 && out->len - start + 1 > max) {
        *failed_at = n;
        rc = fail_output(err, max);
    }
    if (rc < 0 && err->kind == LOGIC_E_MISSING) {
        *failed_at = n;
    }
    buf_fini(&r);
    free_states(&st);
    return end_batch(out, start, rc);
}

int logic_map(struct logic_module *m, const char *entry, const struct slice *events, size_t n,
              struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct logic_error spare;
    size_t failed_at = n;
    err = err ? err : &spare;
    clear_error(err);
    if (out_failed_at) {
        *out_failed_at = n;
    }
    if (!m || !entry || !out || (n > 0 && !events)) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entry, events or output");
    }
    const struct logic_runtime *rt = runtime_of(m);
    int rc = rt->map ? rt->map(m, entry, events, n, out, &failed_at, err)
                     : map_by_calls(m, entry, events, n, out, &failed_at, err);
    if (rc < 0 && out_failed_at) {
        *out_failed_at = failed_at;
    }
    return rc;
}

int logic_fold_keyed(struct logic_module *m, const char *entry, struct slice states,
                     const struct slice *keys, const struct slice *events, size_t n,
                     struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct logic_error spare;
    size_t failed_at = n;
    err = err ? err : &spare;
    clear_error(err);
    if (out_failed_at) {
        *out_failed_at = n;
    }
    if (!m || !entry || !out || !states.ptr || (n > 0 && (!events || !keys))) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entry, states, keys, events "
                    "or output");
    }
    const struct logic_runtime *rt = runtime_of(m);
    int rc = rt->fold_keyed
                 ? rt->fold_keyed(m, entry, states, keys, events, n, out, &failed_at, err)
                 : fold_keyed_by_calls(m, entry, states, keys, events, n, out, &failed_at, err);
    if (rc < 0 && out_failed_at) {
        *out_failed_at = failed_at;
    }
    return rc;
}

int logic_project(struct logic_module *m, const char *key_entry, const char *apply_entry,
                  logic_state_fn *state_fn, void *state_arg, const struct slice *events,
                  size_t n, struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct logic_error spare;
    size_t failed_at = n;
    err = err ? err : &spare;
    clear_error(err);
    if (out_failed_at) {
        *out_failed_at = n;
    }
    if (!m || !key_entry || !apply_entry || !out || !state_fn || (n > 0 && !events)) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entries, states, events or "
                    "output");
    }
    const struct logic_runtime *rt = runtime_of(m);
    if (!rt->project) {
        return ERR_NOTFOUND;
    }
    int rc = rt->project(m, key_entry, apply_entry, state_fn, state_arg, events, n, out,
                         &failed_at, err);
    if (rc < 0 && out_failed_at) {
        *out_failed_at = failed_at;
    }
    return rc;
}

int logic_call_ctx(struct logic_module *m, const char *entry, const struct slice *args,
                   size_t nargs, const struct logic_host *host, struct buf *out,
                   struct logic_error *err)
{
    struct logic_error spare;
    err = err ? err : &spare;
    clear_error(err);
    if (!m || !entry || (nargs > 0 && !args) || !host || !host->fn || !host->ops) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "no module, entry, arguments or host");
    }
    if (!runtime_of(m)->call_ctx) {
        return fail(err, ERR_INVALID, LOGIC_E_INVALID, "the %s runtime offers no ctx calls yet",
                    runtime_of(m)->name);
    }
    return runtime_of(m)->call_ctx(m, entry, args, nargs, host, out, err);
}

size_t logic_logs(struct logic_module *m, char **lines, size_t max)
{
    if (!m || !lines || max == 0) {
        return 0;
    }
    return runtime_of(m)->logs(m, lines, max);
}

void logic_unload(struct logic_module *m)
{
    if (m) {
        runtime_of(m)->unload(m);
    }
}
