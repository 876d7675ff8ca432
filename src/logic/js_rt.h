/* The JavaScript, TypeScript and WebAssembly runtime (docs/design/jsworker.md).
 *
 * Each loaded module runs in an annals-jsworker process of its own (logic/jsworker/), started
 * at load with the module's memory budget as its address-space limit, and spoken to over a
 * socketpair in the frames of logic/jsworker/proto.h. TypeScript is transpiled by esbuild at
 * load (a child process with a timeout) and then is JavaScript. A WebAssembly component's
 * source is its module in base64, decoded here at load and run by the same worker under a
 * JSON-in/JSON-out ABI. Command handlers (logic_call_ctx) get a ctx object whose calls the
 * worker sends back as host-call frames, answered on the calling thread by host->fn while the
 * worker waits; its CPU budget counts the worker's time only. The server keeps each module's
 * JavaScript, so a worker that dies (out of memory, killed, crashed) is started again and the
 * module reloaded before its next call; the call that was running fails with LOGIC_E_WORKER
 * or LOGIC_E_MEMORY.
 *
 * Threads: a pool serves any number of threads; a module is used by one thread at a time
 * (runtime.h), and different modules never wait for each other (separate processes).
 */
#ifndef LOGIC_JS_RT_H
#define LOGIC_JS_RT_H

#include "logic/runtime.h"

/* The JavaScript side of a logic_env: where the worker and esbuild are, and the modules'
 * ids. Thread-safe. */
struct js_pool;

extern const struct logic_runtime logic_js_runtime; /* LOGIC_LANG_JAVASCRIPT */
extern const struct logic_runtime logic_ts_runtime; /* LOGIC_LANG_TYPESCRIPT */
extern const struct logic_runtime logic_wasm_runtime; /* LOGIC_LANG_WASM: WebAssembly
                                                        components, run by the same worker */

enum {
    JS_RT_START_TIMEOUT_MS = 10000,   /* a worker's start, to its "ready" */
    JS_RT_GRACE_MS = 2000,            /* wall time past the CPU budget before a worker that
                                         does not answer is killed (LOGIC_E_CPU) */
    JS_RT_WALL_FACTOR = 3,            /* ... and the budget counts this many times over, as
                                         CPU time lags the wall clock on a busy machine */
    JS_RT_ESBUILD_TIMEOUT_MS = 10000, /* one TypeScript transpilation */
    JS_RT_ESBUILD_OUT_BYTES = 4 * LOGIC_MAX_SOURCE_BYTES, /* its output, and errors */
};

/* Makes a pool for cfg (the paths are copied; cfg->js_worker_mem_bytes caps every module's
 * memory budget). Starts no process: each load starts its module's worker. Returns 0, or
 * ERR_INVALID when cfg->js_worker_path is NULL (JavaScript unavailable). */
int js_pool_new(const struct logic_env_config *cfg, struct js_pool **out);
/* Frees the pool. Every module loaded through it must have been unloaded. NULL is allowed. */
void js_pool_free(struct js_pool *pool);

/* Loads source as a JavaScript or TypeScript module with pool: what logic_js_runtime.load and
 * logic_ts_runtime.load do once they have the env's pool. Arguments, result and errors as
 * logic_load (runtime.h); a worker that cannot be started gives ERR_IO with LOGIC_E_WORKER,
 * TypeScript without a working esbuild ERR_IO with LOGIC_E_WORKER. lim NULL: defaults. */
int js_rt_load(struct js_pool *pool, enum logic_lang lang, const char *name, const char *source,
               size_t len, const char *const *entries, const struct logic_limits *lim,
               struct logic_module **out, struct logic_error *err);

/* Provided by logic/runtime.c: env's JavaScript pool, or NULL when JavaScript is unavailable
 * (no js_worker_path). The runtimes' load functions call it. */
struct js_pool *logic_env_js_pool(struct logic_env *env);

#endif
