/* WebAssembly components in the worker (docs/design/jsworker.md, "WebAssembly components"):
 * the check of a module's bytes against the JSON-in/JSON-out ABI (pure C, before the engine
 * sees them), and the calls, folds and batches of a loaded module over jsw_wasm_invoke
 * (shim.h), with JSON text in and out.
 *
 * The ABI: the module imports nothing; it exports its memory as "memory", "alloc" of type
 * (i32) -> i32, optionally "dealloc" of type (i32, i32) -> (), and each entry point as
 * (i32, i32) -> i64. A call of entry with arguments a1..an: the worker writes the JSON array
 * [a1,...,an] (UTF-8) to alloc(len) and calls entry(ptr, len); the entry returns
 * (result_ptr << 32) | result_len, the place of its result's JSON text (UTF-8) in the memory.
 * The result must be valid JSON nesting at most LOGIC_MAX_JSON_DEPTH deep; it is passed on
 * without insignificant whitespace. alloc is called exactly once before each entry call, so a
 * bump allocator may start over there; dealloc, when exported, gets the argument and then the
 * result after the worker has read it.
 *
 * Thread: the engine's (the worker's main thread).
 */
#ifndef LOGIC_JSWORKER_WASM_H
#define LOGIC_JSWORKER_WASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logic/jsworker/text.h"
#include "logic/runtime.h"
#include "util/buf.h"

struct jsw_engine;
struct jsw_module;

/* Checks the module bytes[0..len) against the ABI, with entries[0..n) (names) as entry
 * points. Pure: no engine, no allocation. Returns 0, or ERR_INVALID with err set:
 * LOGIC_E_SYNTAX (not a WebAssembly module, or malformed where the check reads: the header,
 * the sections, the types, imports, functions and exports), LOGIC_E_FORBIDDEN (the module
 * imports something), LOGIC_E_MISSING (memory, alloc or an entry point is not exported, or
 * has another type than the ABI's; the message names it). */
int jsw_wasm_check(const uint8_t *bytes, size_t len, const struct slice *entries, size_t n,
                   struct logic_error *err);

/* Writes to out (reset first) the module bytes[0..len) with its memory's maximum lowered to
 * mem_bytes (in whole 64 KiB pages; a smaller maximum stays), so that memory.grow past the
 * budget returns -1 at once and the engine reserves the memory's room up front; the maximum
 * in bytes goes to *out_max_bytes. Pure. Returns 0, or ERR_INVALID with err set:
 * LOGIC_E_SYNTAX (malformed; not one memory, or a shared or 64-bit one), LOGIC_E_MISSING (no
 * memory), LOGIC_E_MEMORY (its minimum exceeds mem_bytes). */
int jsw_wasm_cap_memory(const uint8_t *bytes, size_t len, size_t mem_bytes, struct buf *out,
                        size_t *out_max_bytes, struct logic_error *err);

/* A loaded WebAssembly component: the engine's module and the worker's buffers for it. */
struct jsw_wasm;

/* Checks bytes (jsw_wasm_check), caps its memory at mem_bytes (jsw_wasm_cap_memory) and
 * loads it (jsw_wasm_new). Returns the component, or NULL with err set as those do. */
struct jsw_wasm *jsw_wasm_load(struct jsw_engine *e, const char *name, const uint8_t *bytes,
                               size_t len, const struct slice *entries, size_t n,
                               size_t mem_bytes, struct logic_error *err);
/* Frees the component (NULL is allowed). */
void jsw_wasm_free(struct jsw_wasm *c);

/* As jsw_call (shim.h): entry([args...]); each result is at most limit bytes (the request's
 * output budget) before its whitespace is dropped. Errors as jsw_wasm_invoke, and
 * LOGIC_E_OUTPUT for a result that is not JSON or nests too deep, LOGIC_E_MEMORY for a trap
 * once the memory holds more than 15/16 of its maximum (a memory.grow was likely refused). */
int jsw_wasm_call(struct jsw_wasm *c, const char *entry, const struct slice *args, size_t nargs,
                  size_t limit, jsw_write_fn *w, void *w_arg, struct logic_error *err);

/* As jsw_fold: state = entry([state, events[i](, extra)]) for each event; *failed_at as
 * there. */
int jsw_wasm_fold(struct jsw_wasm *c, const char *entry, struct slice state,
                  const struct slice *events, size_t n, const struct slice *extra, size_t limit,
                  jsw_write_fn *w, void *w_arg, size_t *failed_at, struct logic_error *err);

/* As jsw_map: entry([events[i]]) for each event, the results comma-separated to w. */
int jsw_wasm_map(struct jsw_wasm *c, const char *entry, const struct slice *events, size_t n,
                 size_t limit, jsw_write_fn *w, void *w_arg, size_t *failed_at,
                 struct logic_error *err);

/* As jsw_fold_keyed: state[keys[i]] = entry([state[keys[i]], events[i]]), the states kept as
 * JSON text; states NULL continues the batch kept by the previous call (keep). */
int jsw_wasm_fold_keyed(struct jsw_wasm *c, const char *entry, const struct slice *states,
                        const struct slice *keys, const struct slice *events, size_t n,
                        bool keep, size_t limit, jsw_write_fn *w, void *w_arg,
                        size_t *failed_at, struct logic_error *err);

/* Drops the states a keyed fold kept (none: nothing happens). */
void jsw_wasm_batch_drop(struct jsw_wasm *c);

#endif
