/* One interface for every user-code runtime (docs/design/logic.md).
 *
 * A runtime turns a component's source into a loaded module and calls its entry points with
 * JSON in and JSON out. Lua 5.4 runs in process (logic/lua_rt.c); JavaScript and TypeScript
 * run in sandboxed worker processes (logic/js_rt.c, the worker itself in logic/jsworker/);
 * j17's Tick handlers run in process (logic/tick_rt.c). A runtime plugs in by providing a
 * struct logic_runtime.
 *
 * Threads: a module is used by one thread at a time (the caller serialises); different modules
 * may be used from different threads at once. No call here may run on an I/O thread or the
 * writer thread (docs/design/architecture.md, threading rules): logic runs on the logic
 * worker pool.
 *
 * Hostile code: every call is bounded by the module's limits (CPU time, memory, output size,
 * nesting depth). Exceeding one fails that call with LOGIC_E_CPU, LOGIC_E_MEMORY or
 * LOGIC_E_OUTPUT and leaves the server and every other module undisturbed. A module whose
 * call failed on a limit stays usable: the next call starts from a clean stack (its resident
 * state, if any, is dropped).
 */
#ifndef LOGIC_RUNTIME_H
#define LOGIC_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum logic_lang {
    LOGIC_LANG_LUA = 1,
    LOGIC_LANG_JAVASCRIPT = 2,
    LOGIC_LANG_TYPESCRIPT = 3, /* transpiled to JavaScript at load (esbuild) */
    LOGIC_LANG_WASM = 4,       /* a WebAssembly core module, its bytes in base64 as the source,
                                  run in the JavaScript worker (docs/design/jsworker.md) */
    LOGIC_LANG_TICK = 5,       /* j17's declarative handlers: a JSON object of event type:
                                  Tick handler, a reducer only (logic/tick_rt.h) */
    LOGIC_LANG_JSON = 6,       /* not code: a JSON document kept as a component
                                  (COMP_DOCUMENT); logic_load refuses it */
};

/* Returns the language for "lua", "javascript"/"js", "typescript"/"ts", "wasm", "tick",
 * "json"; 0 when unknown. */
enum logic_lang logic_lang_parse(const char *name);
const char *logic_lang_name(enum logic_lang lang);

/* Named defaults; each is also a setting (logic_limits). */
enum {
    LOGIC_DEFAULT_CPU_MS = 1000,                 /* one call (a fold counts as one call) */
    LOGIC_DEFAULT_MEM_BYTES = 64 * 1024 * 1024,  /* one module's heap */
    LOGIC_DEFAULT_OUTPUT_BYTES = 1024 * 1024,    /* one call's JSON result */
    LOGIC_MAX_SOURCE_BYTES = 5 * 1024 * 1024,    /* one component's source */
    LOGIC_MAX_JSON_DEPTH = 64,                   /* nesting of values crossing the boundary */
    LOGIC_LOG_LINES = 100,                       /* log lines kept per module */
    LOGIC_LOG_LINE_BYTES = 1024,                 /* one log line (longer ones are cut) */
    LOGIC_DEFAULT_JS_WORKERS = 2,                /* JavaScript worker processes */
    LOGIC_DEFAULT_JS_WORKER_MEM = 1024u * 1024 * 1024, /* address space of one worker */
};

struct logic_limits {
    uint32_t cpu_ms;
    size_t mem_bytes;
    size_t output_bytes;
};

/* Fills the defaults above. */
void logic_limits_default(struct logic_limits *lim);

enum logic_err_kind {
    LOGIC_E_NONE = 0,
    LOGIC_E_SYNTAX,    /* source does not compile: line and column set */
    LOGIC_E_MISSING,   /* an entry point the component's kind needs is not defined */
    LOGIC_E_RUNTIME,   /* the code raised an error (message, line when known) */
    LOGIC_E_CPU,       /* the CPU budget of the call ran out */
    LOGIC_E_MEMORY,    /* the module's memory budget ran out */
    LOGIC_E_OUTPUT,    /* the result exceeded the output budget or cannot be JSON */
    LOGIC_E_FORBIDDEN, /* the code reached for something the sandbox does not offer */
    LOGIC_E_WORKER,    /* the worker process died or could not be reached (restarted) */
    LOGIC_E_INVALID,   /* the caller's input was not valid (bad JSON argument) */
};

struct logic_error {
    enum logic_err_kind kind;
    int line;   /* 1-based, 0 when unknown */
    int column; /* 1-based, 0 when unknown */
    char message[512];
};

/* Stable lower-case name of a kind ("syntax_error", "cpu_limit", ...). */
const char *logic_err_name(enum logic_err_kind kind);

struct logic_module;

/* What the runtimes share for one server: the JavaScript worker pool (started lazily, at the
 * first JavaScript load). One per server, made by main; thread-safe. */
struct logic_env;

struct logic_env_config {
    const char *js_worker_path; /* the annals-jsworker binary; NULL: JavaScript unavailable */
    const char *esbuild_path;   /* NULL: "esbuild" on PATH; TypeScript unavailable if absent */
    unsigned js_workers;        /* worker processes (0: LOGIC_DEFAULT_JS_WORKERS) */
    size_t js_worker_mem_bytes; /* RLIMIT_AS of one worker (0: LOGIC_DEFAULT_JS_WORKER_MEM) */
};

int logic_env_new(const struct logic_env_config *cfg, struct logic_env **out);
/* Stops the workers. Every module must have been unloaded. NULL is allowed. */
void logic_env_free(struct logic_env *env);

/* Loads source (len bytes, need not be NUL-terminated) as a module and checks that each name in
 * entries (NULL-terminated list) is a function it defines. name labels logs and errors.
 * Returns 0 and *out, or a negative ERR_* with err filled (ERR_INVALID for syntax and missing
 * entries, and with LOGIC_E_INVALID for LOGIC_LANG_JSON, which is no code; ERR_TOOBIG for a source over LOGIC_MAX_SOURCE_BYTES, ERR_IO when a worker cannot
 * be started). */
int logic_load(struct logic_env *env, enum logic_lang lang, const char *name,
               const char *source, size_t len, const char *const *entries, const struct logic_limits *lim,
               struct logic_module **out, struct logic_error *err);

/* Calls entry with nargs JSON texts as its arguments and appends the JSON text of its result to
 * out (a function returning nothing gives "null"). Returns 0, or a negative ERR_* with err set
 * (ERR_INVALID for errors of the code or its limits). out is unchanged on failure. */
int logic_call(struct logic_module *m, const char *entry, const struct slice *args, size_t nargs,
               struct buf *out, struct logic_error *err);

/* The hot path of reducers and views: state = entry(state, event[, extra]) for each of the n
 * events in order, the state staying inside the runtime between events. state is a JSON text
 * ("null" before the first event); extra (may be NULL) is passed as a third argument to every
 * call (a view's parameters). Appends the final state's JSON text to out. One CPU budget covers
 * the whole fold. On failure *out_failed_at (if not NULL) is the index of the failing event. */
int logic_fold(struct logic_module *m, const char *entry, struct slice state,
               const struct slice *events, size_t n, const struct slice *extra,
               struct buf *out, size_t *out_failed_at, struct logic_error *err);

/* The hot path of projections' key(event): calls entry(events[i]) for i in 0..n-1 in order and
 * appends to out the JSON array of the n results, element i being what logic_call(m, entry,
 * &events[i], 1, ...) would give (a function returning nothing gives null). One CPU budget
 * (cpu_ms) covers the whole batch; the output budget (output_bytes) covers the whole array,
 * brackets and commas included. n may be 0 (out gets "[]").
 * Returns 0, or a negative ERR_* with err set as logic_call (ERR_INVALID for errors of the code
 * or its limits; ERR_TOOBIG when one event does not fit a JavaScript frame; ERR_IO for a worker
 * error). On failure out is unchanged and *out_failed_at (if not NULL) is the index of the
 * failing event: the one whose call failed, whose JSON was refused, or whose result would take
 * the array past the output budget (the results before it fit); it is n when no single event is
 * to blame (the entry is missing, the CPU budget ran out between events, the worker died).
 * A runtime without a batch of its own falls back to one logic_call per event (runtime.c):
 * then each call has its own CPU budget. events and the strings they point to are borrowed for
 * the call. */
int logic_map(struct logic_module *m, const char *entry, const struct slice *events, size_t n,
              struct buf *out, size_t *out_failed_at, struct logic_error *err);

/* The hot path of projections' apply(state, event): keyed folds over one batch. states is the
 * JSON text of an object mapping keys to their states at the start of the batch (a key not in
 * it, or whose value is null, starts at null); keys[i] is the key of events[i], its raw text
 * (UTF-8, decoded, not JSON-quoted; it may be any byte string in Lua). For i in order:
 *     state[keys[i]] = entry(state[keys[i]], events[i])
 * and out gets the JSON array of the n new states, element i being the state after event i.
 * Keys may repeat and interleave; the states stay runtime values during the batch (no JSON
 * round trip per event, only the result's encoding), as in logic_fold, so an element equals
 * what the per-event logic_call with the previous element's JSON gives for every state that
 * survives a JSON round trip unchanged (logic.md, "JSON mapping"). One CPU budget covers the
 * batch; the output budget covers the whole array. states must be a JSON object (else
 * LOGIC_E_INVALID, failed at n). Returns and fails as logic_map; out is unchanged on failure.
 * Borrowed: states, keys, events and their bytes, for the call. */
int logic_fold_keyed(struct logic_module *m, const char *entry, struct slice states,
                     const struct slice *keys, const struct slice *events, size_t n,
                     struct buf *out, size_t *out_failed_at, struct logic_error *err);

/* Where logic_project finds a key's state at the start of a batch: fn appends its JSON text
 * (or "null" when it has none) to out and returns 0, or returns a negative ERR_* (the batch
 * then fails with LOGIC_E_INVALID). Called on the calling thread, at most once per key. */
typedef int logic_state_fn(void *arg, struct slice key, struct buf *out);

/* Projections' whole batch in one call, each event decoded once: for i in order,
 *     k = key_entry(events[i]); if k ~= nil then state[k] = apply_entry(state[k], events[i])
 * where a key's first state comes from state_fn. out gets the JSON array of n items: null when
 * key_entry returned nil, else [k, the new state] (k a JSON string). key_entry must return a
 * string or nil (else LOGIC_E_OUTPUT at that event); budgets and failures as
 * logic_fold_keyed. Both entries see the same decoded event, so a key_entry that changes it
 * changes what apply_entry sees. Returns ERR_NOTFOUND, with nothing done, when the module's
 * runtime has no such batch (the caller then uses logic_map and logic_fold_keyed). */
int logic_project(struct logic_module *m, const char *key_entry, const char *apply_entry,
                  logic_state_fn *state_fn, void *state_arg, const struct slice *events,
                  size_t n, struct buf *out, size_t *out_failed_at, struct logic_error *err);

/* A host function user code reaches through its ctx object during logic_call_ctx: ctx.<op>(...)
 * calls fn with op and the JSON array of the arguments; fn appends the JSON text of the result
 * to out and returns 0, or returns a negative ERR_* with a reason in why (the call then raises
 * an error "ctx.<op>: <why>" in the user's code). Runs on the calling thread, inside the call
 * (its time counts against the call's CPU budget). JavaScript and TypeScript: the call runs in
 * a worker process, whose CPU budget counts the worker's time only (not fn's, during which it
 * waits), and which allows at most 64 host calls per call (JSW_MAX_HOST_CALLS; the next
 * throws). WebAssembly: no ctx (a module imports nothing); the entry gets args alone. */
typedef int logic_host_fn(void *arg, const char *op, struct slice args_json, struct buf *out,
                          char *why, size_t why_cap);

struct logic_host {
    const char *const *ops; /* the ctx functions offered, NULL-terminated */
    logic_host_fn *fn;
    void *arg;
};

/* logic_call with one more argument after args: a ctx object whose functions are host->ops.
 * Returns as logic_call; LOGIC_E_INVALID when the runtime offers no ctx calls. */
int logic_call_ctx(struct logic_module *m, const char *entry, const struct slice *args,
                   size_t nargs, const struct logic_host *host, struct buf *out,
                   struct logic_error *err);

/* Copies up to max of the module's latest log lines (oldest first), each a malloc'd string
 * the caller frees; returns how many. */
size_t logic_logs(struct logic_module *m, char **lines, size_t max);

/* Frees the module (NULL is allowed). */
void logic_unload(struct logic_module *m);

/* What a runtime provides (one per language family). */
struct logic_runtime {
    const char *name;
    int (*load)(struct logic_env *env, const char *name, const char *source, size_t len,
                const char *const *entries, const struct logic_limits *lim, struct logic_module **out,
                struct logic_error *err);
    int (*call)(struct logic_module *m, const char *entry, const struct slice *args,
                size_t nargs, struct buf *out, struct logic_error *err);
    int (*fold)(struct logic_module *m, const char *entry, struct slice state,
                const struct slice *events, size_t n, const struct slice *extra,
                struct buf *out, size_t *out_failed_at, struct logic_error *err);
    int (*call_ctx)(struct logic_module *m, const char *entry, const struct slice *args,
                    size_t nargs, const struct logic_host *host, struct buf *out,
                    struct logic_error *err); /* NULL: no ctx calls in this runtime */
    size_t (*logs)(struct logic_module *m, char **lines, size_t max);
    void (*unload)(struct logic_module *m);
    /* Batches (logic_map, logic_fold_keyed); NULL: runtime.c loops over call instead. Called
     * with err cleared, m, entry and the arrays checked, out_failed_at never NULL. */
    int (*map)(struct logic_module *m, const char *entry, const struct slice *events, size_t n,
               struct buf *out, size_t *out_failed_at, struct logic_error *err);
    int (*fold_keyed)(struct logic_module *m, const char *entry, struct slice states,
                      const struct slice *keys, const struct slice *events, size_t n,
                      struct buf *out, size_t *out_failed_at, struct logic_error *err);
    /* logic_project; NULL: not offered. */
    int (*project)(struct logic_module *m, const char *key_entry, const char *apply_entry,
                   logic_state_fn *state_fn, void *state_arg, const struct slice *events,
                   size_t n, struct buf *out, size_t *out_failed_at, struct logic_error *err);
};

/* Every module starts with this header so the generic functions find their runtime. */
struct logic_module_base {
    const struct logic_runtime *rt;
    struct logic_limits lim; /* the module's complete limits, set by logic_load after the
                                runtime's load (the batch fallbacks' output budget) */
};

#endif
