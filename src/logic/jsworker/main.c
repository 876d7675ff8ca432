/* annals-jsworker: runs one JavaScript module or WebAssembly component (wasm.h) for the
 * server (logic/js_rt.c) in a process of its own, confined (sandbox.h), with a CPU budget per
 * request (watchdog.h), speaking the frames of proto.h on fd JSW_SOCKET_FD; during a CALL_CTX
 * its ctx functions ask the server through host-call frames and wait for the answers.
 * docs/design/jsworker.md describes the whole.
 *
 *   annals-jsworker --mem-bytes N           serve (N: the module's memory budget)
 *   annals-jsworker --mem-bytes N --probe S  confine, then try system call S (tests)
 *
 * Life: prepare the sandbox -> start the engine and warm it up -> lock the sandbox -> answer
 * "ready" -> one request, one answer, until the socket closes (then exit 0). A frame that
 * breaks the format ends the process (exit 3); the server restarts it.
 *
 * The worker's state lives in main's struct worker (no globals).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "logic/jsworker/proto.h"
#include "logic/jsworker/sandbox.h"
#include "logic/jsworker/shim.h"
#include "logic/jsworker/wasm.h"
#include "logic/jsworker/watchdog.h"
#include "logic/runtime.h"
#include "util/errors.h"

enum {
    JSW_STACK_BYTES = 2 * 1024 * 1024,   /* native stack JavaScript may use */
    JSW_MIN_MEM_BYTES = 16 * 1024 * 1024, /* a smaller budget is raised to this */
    JSW_WARMUP_CPU_MS = 5000,            /* budget of the start-up self-check */
    /* The garbage-collected heap may take this share of the memory budget: the engine then
     * throws "out of memory" before the address space runs out in the programs measured (at
     * 50 % a Map of objects made the engine crash for want of a chunk during a collection;
     * docs/design/jsworker.md). */
    JSW_GC_SHARE_PERCENT = 30,
    JSW_ALT_STACK_BYTES = 64 * 1024, /* where the crash handler runs */
    EXIT_START_FAILED = 2,
    EXIT_BAD_FRAME = 3,
    EXIT_CRASHED = 4,
};

/* The one piece of process-wide state: whether a request is being served, for the crash
 * handler (a signal handler has no other way to know). */
static volatile sig_atomic_t serving_request;

/* The latest console lines of the current request. */
struct log_ring {
    char lines[LOGIC_LOG_LINES][LOGIC_LOG_LINE_BYTES];
    uint32_t lens[LOGIC_LOG_LINES];
    uint32_t count; /* lines kept, at most LOGIC_LOG_LINES */
    uint32_t next;  /* slot of the next line */
};

/* The result JSON of the current request, within its output budget. */
struct result {
    char *ptr;
    size_t len;
    size_t cap;
    size_t limit; /* the request's output budget */
};

struct worker {
    struct jsw_engine *engine;
    struct jsw_watchdog watchdog;
    struct jsw_module *module; /* the loaded JavaScript module, or NULL */
    struct jsw_wasm *wasm;     /* the loaded WebAssembly component, or NULL (one of the two) */
    uint32_t module_id;        /* the server's id for it */
    size_t mem_bytes;          /* the module's memory budget */
    char *frame;               /* the request being served */
    size_t frame_cap;
    struct slice *parts; /* the request's parts, pointing into frame */
    size_t parts_cap;
    struct result result;
    struct log_ring logs;
};

/* ---- I/O ---------------------------------------------------------------------------------- */

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t got = read(fd, c, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return ERR_IO;
        c += got;
        n -= (size_t)got;
    }
    return 0;
}

static int write_full(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t put = writev(fd, iov, count);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return ERR_IO;
        while (count > 0 && (size_t)put >= iov->iov_len) {
            put -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + put;
            iov->iov_len -= (size_t)put;
        }
    }
    return 0;
}

/* Sends one answer: the head, part 0 (p0) and the request's console lines. */
static int send_reply(struct worker *w, struct jsw_reply_head *h, const char *p0, size_t n0)
{
    enum { IOV_MAX_USED = 2 + 2 * (1 + LOGIC_LOG_LINES) };
    struct iovec iov[IOV_MAX_USED];
    uint32_t lens[1 + LOGIC_LOG_LINES];
    int count = 1;
    size_t total = sizeof *h - sizeof h->len;
    h->nparts = p0 ? 1 + w->logs.count : 0;
    for (uint32_t i = 0; i < h->nparts; i++) {
        uint32_t slot = (w->logs.next + LOGIC_LOG_LINES - w->logs.count + i - 1) % LOGIC_LOG_LINES;
        const char *p = i == 0 ? p0 : w->logs.lines[slot];
        lens[i] = i == 0 ? (uint32_t)n0 : w->logs.lens[slot];
        iov[count++] = (struct iovec){&lens[i], sizeof lens[i]};
        iov[count++] = (struct iovec){(void *)p, lens[i]};
        total += sizeof lens[i] + lens[i];
    }
    h->len = (uint32_t)total;
    iov[0] = (struct iovec){h, sizeof *h};
    return write_full(JSW_SOCKET_FD, iov, count);
}

/* Reads one request frame into w->frame and its parts into w->parts. Returns 0, ERR_IO (the
 * socket closed) or ERR_PROTOCOL. */
static int read_request(struct worker *w, struct jsw_request_head *h)
{
    uint32_t len;
    if (read_full(JSW_SOCKET_FD, &len, sizeof len) < 0) return ERR_IO;
    if (len < sizeof *h - sizeof len || len > JSW_MAX_FRAME_BYTES) return ERR_PROTOCOL;
    if (len > w->frame_cap) {
        free(w->frame);
        w->frame = malloc(len);
        w->frame_cap = w->frame ? len : 0;
        if (!w->frame) return ERR_PROTOCOL;
    }
    if (read_full(JSW_SOCKET_FD, w->frame, len) < 0) return ERR_IO;
    h->len = len;
    memcpy((char *)h + sizeof len, w->frame, sizeof *h - sizeof len);
    if (h->nparts > JSW_MAX_PARTS) return ERR_PROTOCOL;
    if (h->nparts > w->parts_cap) {
        free(w->parts);
        w->parts = calloc(h->nparts, sizeof *w->parts);
        w->parts_cap = w->parts ? h->nparts : 0;
        if (!w->parts) return ERR_PROTOCOL;
    }
    size_t pos = sizeof *h - sizeof len;
    for (uint32_t i = 0; i < h->nparts; i++) {
        uint32_t n;
        if (jsw_part_next(w->frame, len, &pos, &w->parts[i].ptr, &n) < 0) return ERR_PROTOCOL;
        w->parts[i].len = n;
    }
    return pos == len ? 0 : ERR_PROTOCOL;
}

/* ---- sinks -------------------------------------------------------------------------------- */

static bool on_result(void *arg, const char *p, size_t n)
{
    struct result *r = arg;
    if (n > r->limit - r->len) return false;
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) cap *= 2;
        char *grown = realloc(r->ptr, cap);
        if (!grown) return false;
        r->ptr = grown;
        r->cap = cap;
    }
    memcpy(r->ptr + r->len, p, n);
    r->len += n;
    return true;
}

static void on_log(void *arg, const char *line, size_t n)
{
    struct log_ring *l = arg;
    if (n > LOGIC_LOG_LINE_BYTES) n = LOGIC_LOG_LINE_BYTES;
    memcpy(l->lines[l->next], line, n);
    l->lens[l->next] = (uint32_t)n;
    l->next = (l->next + 1) % LOGIC_LOG_LINES;
    if (l->count < LOGIC_LOG_LINES) l->count++;
}

/* ---- requests ----------------------------------------------------------------------------- */

static int set_error(struct logic_error *err, enum logic_err_kind kind, const char *what,
                     const char *detail)
{
    memset(err, 0, sizeof *err);
    err->kind = kind;
    snprintf(err->message, sizeof err->message, "%s%s", what, detail);
    return ERR_INVALID;
}

/* Copies an entry name from a part; false when it is empty, too long or holds a NUL. */
static bool entry_name(struct slice s, char out[JSW_ENTRY_NAME_BYTES])
{
    if (s.len == 0 || s.len >= JSW_ENTRY_NAME_BYTES || memchr(s.ptr, 0, s.len)) return false;
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return true;
}

static bool depth_ok(struct slice s)
{
    return jsw_json_depth_ok(s.ptr, s.len, LOGIC_MAX_JSON_DEPTH);
}

static int check_inputs(const struct slice *texts, size_t n, size_t *bad, struct logic_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (depth_ok(texts[i])) continue;
        *bad = i;
        return set_error(err, LOGIC_E_INVALID, "a JSON argument nests too deep", "");
    }
    return 0;
}

static void unload(struct worker *w)
{
    jsw_module_free(w->module);
    w->module = NULL;
    jsw_wasm_free(w->wasm);
    w->wasm = NULL;
}

static bool has_module(const struct worker *w)
{
    return w->module || w->wasm;
}

static void batch_drop(struct worker *w)
{
    if (w->module) jsw_batch_drop(w->module);
    if (w->wasm) jsw_wasm_batch_drop(w->wasm);
}

static int do_load(struct worker *w, const struct jsw_request_head *h, struct logic_error *err)
{
    char name[JSW_ENTRY_NAME_BYTES], entry[JSW_ENTRY_NAME_BYTES];
    if (h->nparts < 2 || !entry_name(w->parts[0], name))
        return set_error(err, LOGIC_E_INVALID, "bad load request", "");
    unload(w);
    if (h->flags & JSW_FLAG_WASM) {
        w->wasm = jsw_wasm_load(w->engine, name, (const uint8_t *)w->parts[1].ptr,
                                w->parts[1].len, w->parts + 2, h->nparts - 2, w->mem_bytes, err);
        if (!w->wasm) return ERR_INVALID;
        w->module_id = h->module;
        return 0; /* jsw_wasm_load checked the entry points */
    }
    w->module = jsw_module_new(w->engine, name, w->parts[1].ptr, w->parts[1].len, on_log,
                               &w->logs, err);
    if (!w->module) return ERR_INVALID;
    w->module_id = h->module;
    for (uint32_t i = 2; i < h->nparts; i++) {
        if (!entry_name(w->parts[i], entry) || !jsw_module_has(w->module, entry)) {
            bool named = entry_name(w->parts[i], entry);
            unload(w);
            return set_error(err, LOGIC_E_MISSING, "missing entry point: ", named ? entry : "?");
        }
    }
    return 0;
}

static int do_call(struct worker *w, const struct jsw_request_head *h, struct logic_error *err)
{
    char entry[JSW_ENTRY_NAME_BYTES];
    size_t bad;
    if (h->nparts < 1 || !entry_name(w->parts[0], entry))
        return set_error(err, LOGIC_E_INVALID, "bad call request", "");
    if (check_inputs(w->parts + 1, h->nparts - 1, &bad, err) < 0) return ERR_INVALID;
    if (w->wasm)
        return jsw_wasm_call(w->wasm, entry, w->parts + 1, h->nparts - 1, w->result.limit,
                             on_result, &w->result, err);
    return jsw_call(w->module, entry, w->parts + 1, h->nparts - 1, on_result, &w->result, err);
}

/* ---- host calls (CALL_CTX) ---------------------------------------------------------------- */

/* Sends a host-call frame (parts op and args) and reads the server's HOST_REPLY into w->frame:
 * *answer is its part. The request being served needs its frame no more (jsw_call_ctx read
 * its parts before the entry point ran). A server that closed the socket ends the worker
 * (exit 0), one that broke the format too (EXIT_BAD_FRAME). */
static int host_call(void *arg, const char *op, struct slice args, struct slice *answer,
                     char *why, size_t why_cap)
{
    struct worker *w = arg;
    uint32_t lens[2] = {(uint32_t)strlen(op), (uint32_t)args.len};
    struct jsw_reply_head r = {.flags = JSW_REPLY_HOST_CALL, .nparts = 2};
    r.len = (uint32_t)(sizeof r - sizeof r.len + 2 * sizeof lens[0] + lens[0] + lens[1]);
    struct iovec iov[5] = {{&r, sizeof r}, {&lens[0], sizeof lens[0]}, {(void *)op, lens[0]},
                           {&lens[1], sizeof lens[1]}, {(void *)args.ptr, lens[1]}};
    struct jsw_request_head h;
    if (args.len > JSW_MAX_FRAME_BYTES / 2) {
        snprintf(why, why_cap, "the arguments exceed %d bytes", JSW_MAX_FRAME_BYTES / 2);
        return ERR_INVALID;
    }
    if (write_full(JSW_SOCKET_FD, iov, 5) < 0) _exit(0);
    int rc = read_request(w, &h);
    if (rc == ERR_IO) _exit(0);
    if (rc < 0 || h.op != JSW_OP_HOST_REPLY || h.nparts != 1) _exit(EXIT_BAD_FRAME);
    if (h.flags & JSW_FLAG_HOST_FAILED) {
        snprintf(why, why_cap, "%.*s", (int)w->parts[0].len, w->parts[0].ptr);
        return ERR_INVALID;
    }
    *answer = w->parts[0];
    return 0;
}

/* Splits the part of NUL-separated names into ops; false when there are too many or one is
 * empty or too long. */
static bool split_ops(struct slice part, struct slice *ops, size_t *nops)
{
    *nops = 0;
    for (size_t at = 0; at < part.len;) {
        const char *end = memchr(part.ptr + at, 0, part.len - at);
        size_t n = end ? (size_t)(end - (part.ptr + at)) : part.len - at;
        if (n == 0 || n >= JSW_ENTRY_NAME_BYTES || *nops == JSW_MAX_CTX_OPS) return false;
        ops[(*nops)++] = (struct slice){part.ptr + at, n};
        at += n + 1;
    }
    return true;
}

/* CALL_CTX: parts entry, the ctx names, the arguments. A WebAssembly component has no ctx (it
 * imports nothing): its entry gets the arguments alone. */
static int do_call_ctx(struct worker *w, const struct jsw_request_head *h,
                       struct logic_error *err)
{
    char entry[JSW_ENTRY_NAME_BYTES];
    struct slice ops[JSW_MAX_CTX_OPS];
    size_t bad;
    struct jsw_host host = {.ops = ops, .args_cap = w->result.limit, .fn = host_call, .arg = w};
    if (h->nparts < 2 || !entry_name(w->parts[0], entry) ||
        !split_ops(w->parts[1], ops, &host.nops))
        return set_error(err, LOGIC_E_INVALID, "bad call_ctx request", "");
    if (check_inputs(w->parts + 2, h->nparts - 2, &bad, err) < 0) return ERR_INVALID;
    if (w->wasm)
        return jsw_wasm_call(w->wasm, entry, w->parts + 2, h->nparts - 2, w->result.limit,
                             on_result, &w->result, err);
    return jsw_call_ctx(w->module, entry, w->parts + 2, h->nparts - 2, &host, on_result,
                        &w->result, err);
}

static int do_fold(struct worker *w, const struct jsw_request_head *h, size_t *failed_at,
                   struct logic_error *err)
{
    char entry[JSW_ENTRY_NAME_BYTES];
    size_t first = (h->flags & JSW_FLAG_EXTRA) ? 3 : 2; /* first event's part */
    if (h->nparts < first || !entry_name(w->parts[0], entry))
        return set_error(err, LOGIC_E_INVALID, "bad fold request", "");
    size_t n = h->nparts - first, bad;
    *failed_at = n; /* no event's failure */
    if (check_inputs(w->parts + 1, first - 1, &bad, err) < 0) return ERR_INVALID;
    if (check_inputs(w->parts + first, n, failed_at, err) < 0) return ERR_INVALID;
    if (w->wasm)
        return jsw_wasm_fold(w->wasm, entry, w->parts[1], w->parts + first, n,
                             first == 3 ? &w->parts[2] : NULL, w->result.limit, on_result,
                             &w->result, failed_at, err);
    return jsw_fold(w->module, entry, w->parts[1], w->parts + first, n,
                    first == 3 ? &w->parts[2] : NULL, on_result, &w->result, failed_at, err);
}

/* The brackets of a batch's array, written around the shim's items: '[' now, and the byte of
 * the closing ']' kept out of the output budget until batch_close. */
static bool batch_open(struct worker *w)
{
    if (w->result.limit < 2 || !on_result(&w->result, "[", 1)) return false;
    w->result.limit--;
    return true;
}

static int batch_close(struct worker *w, int rc, struct logic_error *err)
{
    w->result.limit++;
    if (rc == 0 && !on_result(&w->result, "]", 1))
        return set_error(err, LOGIC_E_OUTPUT, "output_limit: the results exceed the output budget",
                         "");
    return rc;
}

static int do_map(struct worker *w, const struct jsw_request_head *h, size_t *failed_at,
                  struct logic_error *err)
{
    char entry[JSW_ENTRY_NAME_BYTES];
    if (h->nparts < 1 || !entry_name(w->parts[0], entry))
        return set_error(err, LOGIC_E_INVALID, "bad map request", "");
    size_t n = h->nparts - 1;
    *failed_at = n; /* no event's failure */
    if (check_inputs(w->parts + 1, n, failed_at, err) < 0) return ERR_INVALID;
    if (!batch_open(w))
        return set_error(err, LOGIC_E_OUTPUT, "output_limit: the results exceed the output budget",
                         "");
    int rc = w->wasm ? jsw_wasm_map(w->wasm, entry, w->parts + 1, n, w->result.limit, on_result,
                                    &w->result, failed_at, err)
                     : jsw_map(w->module, entry, w->parts + 1, n, on_result, &w->result,
                               failed_at, err);
    return batch_close(w, rc, err);
}

static int do_fold_keyed(struct worker *w, const struct jsw_request_head *h, size_t *failed_at,
                         struct logic_error *err)
{
    char entry[JSW_ENTRY_NAME_BYTES];
    if (h->nparts < 2 || h->nparts % 2 != 0 || !entry_name(w->parts[0], entry))
        return set_error(err, LOGIC_E_INVALID, "bad fold_keyed request", "");
    size_t n = (h->nparts - 2) / 2;
    const struct slice *states = (h->flags & JSW_FLAG_CONTINUE) ? NULL : &w->parts[1];
    const struct slice *keys = w->parts + 2;
    *failed_at = n; /* no event's failure */
    if (states && !jsw_json_depth_ok(states->ptr, states->len, LOGIC_MAX_JSON_DEPTH + 1))
        return set_error(err, LOGIC_E_INVALID, "the states nest too deep", "");
    if (check_inputs(keys + n, n, failed_at, err) < 0) return ERR_INVALID;
    if (!batch_open(w))
        return set_error(err, LOGIC_E_OUTPUT, "output_limit: the results exceed the output budget",
                         "");
    bool keep = (h->flags & JSW_FLAG_MORE) != 0;
    int rc = w->wasm ? jsw_wasm_fold_keyed(w->wasm, entry, states, keys, keys + n, n, keep,
                                           w->result.limit, on_result, &w->result, failed_at,
                                           err)
                     : jsw_fold_keyed(w->module, entry, states, keys, keys + n, n, keep,
                                      on_result, &w->result, failed_at, err);
    return batch_close(w, rc, err);
}

/* The result's nesting: at most LOGIC_MAX_JSON_DEPTH, or for a batch's array, each item. */
static void check_depth(struct worker *w, const struct jsw_request_head *h, size_t *failed_at,
                        struct logic_error *err)
{
    if (h->op == JSW_OP_MAP || h->op == JSW_OP_FOLD_KEYED) {
        size_t deep = jsw_json_deep_item(w->result.ptr, w->result.len, LOGIC_MAX_JSON_DEPTH);
        if (deep == SIZE_MAX) return;
        *failed_at = deep;
    } else if (depth_ok((struct slice){w->result.ptr, w->result.len})) {
        return;
    }
    set_error(err, LOGIC_E_OUTPUT, "output_limit: the result nests deeper than ", "64");
}

/* Runs one request under its CPU budget; fills err (kind 0 on success) and *failed_at. */
static void run_request(struct worker *w, const struct jsw_request_head *h, size_t *failed_at,
                        uint32_t *cpu_us, struct logic_error *err)
{
    int rc = 0;
    memset(err, 0, sizeof *err);
    *failed_at = 0;
    w->result.len = 0;
    w->result.limit = h->output_bytes;
    w->logs.count = w->logs.next = 0;
    if (h->op != JSW_OP_LOAD && (!has_module(w) || h->module != w->module_id)) {
        set_error(err, LOGIC_E_INVALID, "no such module in this worker", "");
        return;
    }
    if (!(h->op == JSW_OP_FOLD_KEYED && (h->flags & JSW_FLAG_CONTINUE)))
        batch_drop(w); /* only a continuing keyed fold uses the kept states */
    jsw_watchdog_arm(&w->watchdog, h->cpu_ms);
    if (h->op == JSW_OP_LOAD) rc = do_load(w, h, err);
    else if (h->op == JSW_OP_CALL) rc = do_call(w, h, err);
    else if (h->op == JSW_OP_CALL_CTX) rc = do_call_ctx(w, h, err);
    else if (h->op == JSW_OP_FOLD) rc = do_fold(w, h, failed_at, err);
    else if (h->op == JSW_OP_MAP) rc = do_map(w, h, failed_at, err);
    else if (h->op == JSW_OP_FOLD_KEYED) rc = do_fold_keyed(w, h, failed_at, err);
    else if (h->op == JSW_OP_UNLOAD) unload(w);
    else rc = set_error(err, LOGIC_E_INVALID, "unknown request", "");
    *cpu_us = jsw_watchdog_disarm(&w->watchdog);
    if (rc == 0) check_depth(w, h, failed_at, err);
    if (err->kind != LOGIC_E_NONE) batch_drop(w);
    if (h->op == JSW_OP_UNLOAD || err->kind == LOGIC_E_MEMORY) jsw_engine_gc(w->engine);
}

static int serve(struct worker *w)
{
    for (;;) {
        struct jsw_request_head h;
        struct logic_error err;
        size_t failed_at = 0;
        uint32_t cpu_us = 0;
        int rc = read_request(w, &h);
        if (rc == ERR_IO) return 0;
        if (rc < 0) return EXIT_BAD_FRAME;
        serving_request = 1;
        run_request(w, &h, &failed_at, &cpu_us, &err);
        serving_request = 0;
        struct jsw_reply_head r = {.kind = (uint8_t)err.kind, .line = err.line,
                                   .column = err.column, .failed_at = (uint32_t)failed_at,
                                   .cpu_us = cpu_us};
        rc = err.kind ? send_reply(w, &r, err.message, strlen(err.message))
                      : send_reply(w, &r, w->result.ptr ? w->result.ptr : "", w->result.len);
        if (rc < 0) return 0;
    }
}

/* ---- start -------------------------------------------------------------------------------- */

/* A fatal signal while a request runs (the engine crashes on purpose when it cannot get memory
 * it must have, "[unhandlable oom]"): answers that request with LOGIC_E_MEMORY or
 * LOGIC_E_WORKER and JSW_REPLY_EXITING, then exits. Async-signal-safe: stack, write, _exit. */
static void on_crash(int sig)
{
    const char *reason = jsw_crash_reason();
    bool is_oom = reason && strstr(reason, "[unhandlable oom]");
    const char *msg = is_oom ? "memory_limit: the engine ran out of memory (worker restarted)"
                             : "worker_crashed: the worker stopped on a fatal signal";
    uint32_t n = (uint32_t)strlen(msg);
    struct jsw_reply_head h = {.len = (uint32_t)(sizeof h - sizeof h.len + sizeof n + n),
                               .kind = is_oom ? LOGIC_E_MEMORY : LOGIC_E_WORKER,
                               .flags = JSW_REPLY_EXITING, .nparts = 1};
    struct iovec iov[3] = {{&h, sizeof h}, {&n, sizeof n}, {(void *)msg, n}};
    if (serving_request) (void)!writev(JSW_SOCKET_FD, iov, 3);
    _exit(EXIT_CRASHED + 0 * sig);
}

static int catch_crashes(void)
{
    static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
    stack_t ss = {.ss_sp = malloc(JSW_ALT_STACK_BYTES), .ss_size = JSW_ALT_STACK_BYTES};
    struct sigaction sa = {.sa_handler = on_crash, .sa_flags = SA_ONSTACK};
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) return ERR_IO;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        if (sigaction(fatal_signals[i], &sa, NULL) != 0) return ERR_IO;
    }
    return 0;
}

/* Runs one module through load, call, fold, map and keyed fold before the sandbox locks, so
 * the engine's lazy start-up (helper threads, JIT regions, the local time zone that glibc reads
 * from a file, ICU's locale data) happens while it still may. */
static int warm_up(struct worker *w)
{
    static const char src[] =
        "function f(s, e) { const d = new Date(0);"
        "  return {n: (s ? s.n : 0) + e.n, t: d.toISOString() + d.toString() + d.getHours() +"
        "  d.toLocaleString() + (1234.5).toLocaleString() + 'a'.localeCompare('b') +"
        "  new Intl.DateTimeFormat().format(d) + 'I'.toLocaleLowerCase() +"
        "  /\\p{L}/u.test('x'), r: Math.random()}; }"
        "function g(e) { return e.n }";
    struct slice args[2] = {{"null", 4}, {"{\"n\":1}", 7}};
    struct slice states = {"{}", 2}, key = {"k", 1};
    struct logic_error err;
    size_t failed_at;
    struct jsw_module *m = jsw_module_new(w->engine, "warm-up", src, sizeof src - 1, on_log,
                                          &w->logs, &err);
    int rc = m ? 0 : ERR_INVALID;
    w->result.limit = LOGIC_DEFAULT_OUTPUT_BYTES;
    jsw_watchdog_arm(&w->watchdog, JSW_WARMUP_CPU_MS);
    if (rc == 0) rc = jsw_call(m, "f", args, 2, on_result, &w->result, &err);
    if (rc == 0) rc = jsw_fold(m, "f", args[0], args + 1, 1, NULL, on_result, &w->result,
                               &failed_at, &err);
    if (rc == 0) rc = jsw_map(m, "g", args + 1, 1, on_result, &w->result, &failed_at, &err);
    if (rc == 0) rc = jsw_fold_keyed(m, "f", &states, &key, args + 1, 1, false, on_result,
                                     &w->result, &failed_at, &err);
    jsw_watchdog_disarm(&w->watchdog);
    jsw_module_free(m);
    jsw_engine_gc(w->engine);
    return rc;
}

static int parse_args(int argc, char **argv, size_t *mem_bytes, const char **probe)
{
    *mem_bytes = 0;
    *probe = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mem-bytes")) *mem_bytes = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--probe")) *probe = argv[i + 1];
        else return ERR_INVALID;
    }
    if (argc % 2 == 0 || *mem_bytes == 0) return ERR_INVALID;
    if (*mem_bytes < JSW_MIN_MEM_BYTES) *mem_bytes = JSW_MIN_MEM_BYTES;
    return 0;
}

static void finish(struct worker *w)
{
    unload(w);
    jsw_watchdog_stop(&w->watchdog);
    jsw_engine_free(w->engine);
    jsw_shutdown();
    free(w->frame);
    free(w->parts);
    free(w->result.ptr);
    free(w);
}

int main(int argc, char **argv)
{
    size_t mem_bytes;
    const char *probe;
    if (parse_args(argc, argv, &mem_bytes, &probe) < 0) {
        fprintf(stderr, "usage: annals-jsworker --mem-bytes N [--probe SYSCALL]\n");
        return EXIT_START_FAILED;
    }
    struct worker *w = calloc(1, sizeof *w);
    mallopt(M_ARENA_MAX, 1);
    /* The crash handlers go first: the engine installs its WebAssembly trap handlers (SIGSEGV,
     * SIGBUS, SIGILL) after, and passes faults outside WebAssembly code on to ours. */
    if (!w || jsw_sandbox_prepare(mem_bytes) < 0 || catch_crashes() < 0 || jsw_init() < 0)
        return EXIT_START_FAILED;
    w->mem_bytes = mem_bytes;
    w->engine = jsw_engine_new(mem_bytes / 100 * JSW_GC_SHARE_PERCENT, JSW_STACK_BYTES);
    if (!w->engine || jsw_watchdog_start(&w->watchdog, w->engine) < 0 || warm_up(w) < 0 ||
        jsw_sandbox_lock(mem_bytes + JSW_IO_BYTES) < 0) {
        fprintf(stderr, "annals-jsworker: the engine did not start\n");
        return EXIT_START_FAILED;
    }
    if (probe) _exit(jsw_sandbox_probe(probe)); /* no teardown: the engine still runs */
    struct jsw_reply_head ready = {0};
    int rc = send_reply(w, &ready, NULL, 0) < 0 ? 0 : serve(w);
    finish(w);
    return rc;
}
