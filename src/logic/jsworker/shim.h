/* The JavaScript engine (SpiderMonkey 102) behind a small C API: the only C++ in Annals
 * (logic/jsworker/shim.cc). The worker (main.c) owns one engine on its main thread and one
 * module per loaded component; this API compiles, calls, folds and maps with JSON text in and
 * JSON text out, and turns every failure into a struct logic_error.
 *
 * Threads: everything runs on the thread that called jsw_engine_new, except
 * jsw_engine_interrupt, which any thread may call (the watchdog does).
 *
 * What user code sees: the ECMAScript standard library of SpiderMonkey 102 (ES2022), plus
 * console.log/info/warn/error/debug (lines go to the module's log function) and nothing of
 * the host: no require, import, fetch, timers, process or file access. Removed: eval and the
 * Function constructors (EvalError), WeakRef and FinalizationRegistry (their results depend
 * on garbage-collection timing), WebAssembly (compiled only for WebAssembly components,
 * jsw_wasm_new, never from JavaScript). Date.now() and new Date() are JSW_FIXED_TIME_MS;
 * Math.random() restarts the same sequence (seed JSW_RANDOM_SEED) at every entry-point call
 * and every event of a fold or batch. docs/design/jsworker.md has the reasons.
 */
#ifndef LOGIC_JSWORKER_SHIM_H
#define LOGIC_JSWORKER_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logic/jsworker/text.h"
#include "logic/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What Date.now() answers (milliseconds since 1970-01-01T00:00:00Z). */
#define JSW_FIXED_TIME_MS 0.0
/* The state Math.random() restarts from at each invocation (splitmix64). */
#define JSW_RANDOM_SEED 0x414e4e414c53ull /* "ANNALS" */

struct jsw_engine;
struct jsw_module;

/* Receives one console line (UTF-8, at most LOGIC_LOG_LINE_BYTES bytes, not NUL-terminated). */
typedef void jsw_log_fn(void *arg, const char *line, size_t n);

/* The reason the engine gave for crashing on purpose, or NULL. Async-signal-safe. */
const char *jsw_crash_reason(void);

/* Starts the engine library (JS_Init) once per process. Returns 0 or ERR_NOMEM. */
int jsw_init(void);
/* Ends the library (JS_ShutDown) after every engine is freed. */
void jsw_shutdown(void);

/* Makes the engine on the calling thread: gc_max_bytes caps the garbage-collected heap,
 * stack_bytes the native stack JavaScript may use (deep recursion then throws
 * "too much recursion"). Returns NULL when the engine cannot start. */
struct jsw_engine *jsw_engine_new(size_t gc_max_bytes, size_t stack_bytes);
/* Frees every module's remains and the engine; the engine's thread only. NULL is allowed. */
void jsw_engine_free(struct jsw_engine *e);
/* Stops the running code at its next interrupt check; it fails with LOGIC_E_CPU, uncatchable
 * by try/catch, and so does any code run until jsw_engine_rearm. Thread-safe. */
void jsw_engine_interrupt(struct jsw_engine *e);
/* Clears the interrupt before the next request. Engine thread. */
void jsw_engine_rearm(struct jsw_engine *e);
/* Collects garbage now (after an unload or a failed call). */
void jsw_engine_gc(struct jsw_engine *e);

/* Compiles and runs source[0..len) (UTF-8) in a new global of its own, as a classic script or,
 * when it uses import/export, as an ES module (whose exports are then the entry points; its
 * imports fail with LOGIC_E_FORBIDDEN). name labels errors. log receives console lines from
 * now on (log_arg is borrowed until jsw_module_free). Returns the module, or NULL with err
 * set (LOGIC_E_SYNTAX with line and column, LOGIC_E_RUNTIME, LOGIC_E_CPU, LOGIC_E_MEMORY,
 * LOGIC_E_FORBIDDEN). */
struct jsw_module *jsw_module_new(struct jsw_engine *e, const char *name, const char *source,
                                  size_t len, jsw_log_fn *log, void *log_arg,
                                  struct logic_error *err);
/* True when the module exports, or its global holds, a function called entry. May run user
 * code (a getter): call it under a CPU budget. */
bool jsw_module_has(struct jsw_module *m, const char *entry);
/* Drops the module's global (the memory returns at the next collection). NULL is allowed. */
void jsw_module_free(struct jsw_module *m);

/* Calls entry with nargs JSON texts as arguments and writes the JSON of its result (a promise
 * is settled first; undefined gives null) to w. Returns 0, or ERR_INVALID with err set
 * (LOGIC_E_MISSING, LOGIC_E_INVALID for an argument that is not JSON, LOGIC_E_RUNTIME,
 * LOGIC_E_CPU, LOGIC_E_MEMORY, LOGIC_E_OUTPUT when w stops or the result cannot be JSON,
 * LOGIC_E_FORBIDDEN). */
int jsw_call(struct jsw_module *m, const char *entry, const struct slice *args, size_t nargs,
             jsw_write_fn *w, void *w_arg, struct logic_error *err);

/* state = entry(state, events[i][, extra]) for i in [0, n), the state staying an engine value
 * between events; writes the final state's JSON to w. Errors as jsw_call; *failed_at is the
 * failing event's index, or n when the failure is no event's (the entry, the state, extra,
 * or the final state's JSON). */
int jsw_fold(struct jsw_module *m, const char *entry, struct slice state,
             const struct slice *events, size_t n, const struct slice *extra, jsw_write_fn *w,
             void *w_arg, size_t *failed_at, struct logic_error *err);

/* entry(events[i]) for i in [0, n); writes the n results' JSON to w, separated by commas
 * (the caller writes the brackets). Errors as jsw_call; *failed_at is the failing event's
 * index (the one whose call failed, or whose result w refused), or n when the failure is no
 * event's (the entry). */
int jsw_map(struct jsw_module *m, const char *entry, const struct slice *events, size_t n,
            jsw_write_fn *w, void *w_arg, size_t *failed_at, struct logic_error *err);

/* For i in [0, n): state[keys[i]] = entry(state[keys[i]], events[i]), the states held in a
 * Map (engine values) during the batch; writes the n new states' JSON to w, separated by
 * commas (the caller writes the brackets). A key's state starts as the own member of the
 * object states (JSON text) of that name, else null; states NULL: go on from the states the
 * previous jsw_fold_keyed kept (LOGIC_E_INVALID when there are none). keys are UTF-8. keep:
 * keep the states for such a next call (until jsw_batch_drop, any failure, or a jsw_fold_keyed
 * that starts afresh). Errors and *failed_at as jsw_map (n also for states that are not a
 * JSON object). */
int jsw_fold_keyed(struct jsw_module *m, const char *entry, const struct slice *states,
                   const struct slice *keys, const struct slice *events, size_t n, bool keep,
                   jsw_write_fn *w, void *w_arg, size_t *failed_at, struct logic_error *err);

/* Drops the states a jsw_fold_keyed kept (none: nothing happens). */
void jsw_batch_drop(struct jsw_module *m);

/* ---- ctx: host calls (jsw_call_ctx) ---- */

/* Answers ctx.<op>(...): args is the JSON array of the call's arguments (UTF-8). Returns 0
 * with *answer the JSON text of the result (borrowed until the next host call), or a
 * negative ERR_* with the reason in why (the JavaScript call then throws
 * Error("ctx.<op>: <why>")). May block (the worker asks the server). */
typedef int jsw_host_call_fn(void *arg, const char *op, struct slice args,
                             struct slice *answer, char *why, size_t why_cap);

/* What the ctx object of jsw_call_ctx offers. */
struct jsw_host {
    const struct slice *ops; /* the names of ctx's functions (borrowed for the call) */
    size_t nops;
    size_t args_cap;         /* bytes the JSON of one host call's arguments may take */
    jsw_host_call_fn *fn;
    void *arg;
};

/* jsw_call with one more argument after args: an object whose functions, one per name in
 * host->ops, call host->fn synchronously (at most JSW_MAX_HOST_CALLS times per call; more
 * throw). The functions throw if called after the call returned (code that kept ctx). Errors
 * as jsw_call. */
int jsw_call_ctx(struct jsw_module *m, const char *entry, const struct slice *args,
                 size_t nargs, const struct jsw_host *host, jsw_write_fn *w, void *w_arg,
                 struct logic_error *err);

/* ---- WebAssembly modules (docs/design/jsworker.md, "WebAssembly components") ---- */

/* Compiles bytes[0..len) as a WebAssembly module and instantiates it with no imports, in a
 * global of its own (the only kind where the engine's WebAssembly support is reachable; no
 * JavaScript runs there). The module should have passed jsw_wasm_check (wasm.h). Returns the
 * module, or NULL with err set (LOGIC_E_SYNTAX when the engine refuses the bytes,
 * LOGIC_E_RUNTIME for a failing instantiation or start function, LOGIC_E_CPU,
 * LOGIC_E_MEMORY). Its entry points are its function exports (jsw_module_has). name is unused
 * (a module has no source positions). */
struct jsw_module *jsw_wasm_new(struct jsw_engine *e, const char *name, const uint8_t *bytes,
                                size_t len, struct logic_error *err);

/* One call of the ABI: ptr = alloc(len); arg[0..len) copied to the memory at ptr;
 * r = entry(ptr, len); the result's bytes, memory[r >> 32, + (r & 0xffffffff)), written to w
 * as they are; then dealloc(ptr, len) and dealloc(result) when the module exports dealloc.
 * Returns 0 or ERR_INVALID with err set: LOGIC_E_MISSING (entry), LOGIC_E_RUNTIME (a trap,
 * alloc's place outside the memory), LOGIC_E_CPU, LOGIC_E_MEMORY, LOGIC_E_OUTPUT (the result
 * lies outside the memory, or w refused it). */
int jsw_wasm_invoke(struct jsw_module *m, const char *entry, const char *arg, size_t len,
                    jsw_write_fn *w, void *w_arg, struct logic_error *err);

/* The size of the module's memory now, in bytes (0 when it cannot be read). */
size_t jsw_wasm_memory_bytes(struct jsw_module *m);

/* Replaces the module's instance by a new one of the same compiled module (fresh memory and
 * globals), after a call that failed midway left the old one in an unknown state; its start
 * function runs under the current request's budget. Returns 0, or ERR_INVALID with err set
 * (the old instance is gone: call it again before the next call). */
int jsw_wasm_reset(struct jsw_module *m, struct logic_error *err);

#ifdef __cplusplus
}
#endif

#endif
