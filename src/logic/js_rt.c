/* JavaScript and TypeScript modules and WebAssembly components, each in a worker process of
 * its own (js_rt.h, docs/design/jsworker.md). This file is the server's side: it starts
 * workers, speaks the frames of logic/jsworker/proto.h with deadlines (answering a command
 * handler's host calls on the way), restarts a worker that died and reloads its module from
 * the code kept here, runs esbuild for TypeScript and decodes WebAssembly's base64.
 *
 * A module's worker:
 *
 *   (none) --js_rt_load: worker_start + LOAD--> RUNNING
 *   RUNNING --CALL_CTX: each host-call frame answered by exchange_host--> RUNNING
 *   RUNNING --exchange fails, times out, or answers JSW_REPLY_EXITING: worker_stop--> DEAD
 *   RUNNING --found closed before a request (killed while idle)--> DEAD
 *   DEAD --ensure_worker (the next call): worker_start + LOAD--> RUNNING
 *   any --js_unload: worker_stop--> freed
 *
 * Invariants: RUNNING means worker.fd >= 0 and worker.pid > 0, and the worker waits for a
 * request (each request's answer was read whole, or the worker was stopped); DEAD means
 * fd == -1 and pid == 0 (reaped).
 */
#define _GNU_SOURCE
#include "logic/js_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logic/jsworker/proto.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

extern char **environ;

enum {
    NS_PER_MS = 1000000,
    ESBUILD_PIPE_CHUNK = 64 * 1024, /* bytes moved per read or write to esbuild */
};

struct js_pool {
    char *worker_path;       /* owned: the annals-jsworker binary */
    char *esbuild_path;      /* owned: esbuild, or "esbuild" (looked up on PATH) */
    size_t worker_mem_bytes; /* the largest memory budget a module may have */
    pthread_mutex_t mu;      /* guards next_id and modules */
    uint32_t next_id;        /* the next module's id */
    size_t modules;          /* modules loaded and not yet unloaded */
};

struct js_worker {
    pid_t pid; /* the process, 0 when none */
    int fd;    /* the server's end of its socketpair, -1 when none */
};

/* One mapping of a source map: a place in the generated JavaScript and its TypeScript origin,
 * all counted from 0. */
struct js_seg {
    uint32_t gen_col;
    uint32_t src_line;
    uint32_t src_col;
};

/* esbuild's source map of a TypeScript module, to report positions in the TypeScript. */
struct js_srcmap {
    struct js_seg *segs;  /* owned: every mapping, by generated line then column */
    size_t nsegs;
    uint32_t *line_start; /* owned: line_start[l] is generated line l's first mapping */
    size_t lines;         /* generated lines; 0 when there is no map (JavaScript) */
};

struct js_module {
    struct logic_module_base base; /* first: the generic functions find the runtime here */
    struct js_pool *pool;          /* borrowed; outlives the module */
    uint32_t id;                   /* the module's id in its worker's frames */
    char *name;                    /* owned */
    char *js;                      /* owned: the JavaScript (or, is_wasm, the WebAssembly
                                      module's bytes), kept for restarts */
    size_t js_len;
    bool is_wasm;                  /* a WebAssembly component (LOAD with JSW_FLAG_WASM) */
    char **entries; /* owned, NULL-terminated: the entry points load checked */
    struct logic_limits lim;
    struct js_worker worker;
    struct buf frame;                  /* the request being sent */
    struct buf reply;                  /* the answer being read */
    char *logs[LOGIC_LOG_LINES];       /* owned ring of the latest console lines */
    size_t log_count;                  /* lines in the ring */
    size_t log_next;                   /* the slot of the next line */
    struct js_srcmap map;              /* TypeScript: the positions' origins */
};

static void srcmap_to_origin(const struct js_srcmap *map, int *line, int *column);

/* ---- errors ------------------------------------------------------------------------------- */

static int fail(struct logic_error *err, enum logic_err_kind kind, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct logic_error *err, enum logic_err_kind kind, int rc, const char *fmt, ...)
{
    va_list ap;
    memset(err, 0, sizeof *err);
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- I/O with deadlines ------------------------------------------------------------------- */

/* Waits until fd is ready for events or deadline_ns (monotonic) passes. Returns 0, or
 * ERR_IO on a timeout, a hang-up without data, or a poll failure. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = time_mono_ns();
        if (now >= deadline_ns) return ERR_IO;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)((deadline_ns - now + NS_PER_MS - 1) / NS_PER_MS));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ERR_IO;
        if (n > 0) return (p.revents & (events | POLLHUP | POLLERR)) ? 0 : ERR_IO;
    }
}

static int send_all(int fd, const char *p, size_t n, uint64_t deadline_ns)
{
    while (n > 0) {
        if (wait_fd(fd, POLLOUT, deadline_ns) < 0) return ERR_IO;
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (put <= 0) return ERR_IO;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

static int recv_all(int fd, char *p, size_t n, uint64_t deadline_ns)
{
    while (n > 0) {
        if (wait_fd(fd, POLLIN, deadline_ns) < 0) return ERR_IO;
        ssize_t got = recv(fd, p, n, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) return ERR_IO;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* ---- worker processes --------------------------------------------------------------------- */

/* Kills and reaps the worker (any state), leaving it DEAD. */
static void worker_stop(struct js_worker *w)
{
    if (w->fd >= 0) close(w->fd);
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    w->fd = -1;
    w->pid = 0;
}

/* The worker's file descriptors and signals: the socket as JSW_SOCKET_FD, /dev/null as stdin
 * and stdout, stderr shared (the engine's crash reports), nothing else; default signal
 * actions, none blocked. */
static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr, int child_fd)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (posix_spawn_file_actions_init(fa) != 0) return ERR_IO;
    if (posix_spawnattr_init(attr) != 0) {
        posix_spawn_file_actions_destroy(fa);
        return ERR_IO;
    }
    int rc = posix_spawn_file_actions_adddup2(fa, child_fd, JSW_SOCKET_FD);
    rc = rc ? rc : posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    rc = rc ? rc : posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(fa, JSW_SOCKET_FD + 1);
    rc = rc ? rc : posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawnattr_setsigmask(attr, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(attr, &all);
    if (rc == 0) return 0;
    posix_spawn_file_actions_destroy(fa);
    posix_spawnattr_destroy(attr);
    return ERR_IO;
}

/* Reads one answer (head and body) into reply. Returns 0, ERR_IO or ERR_PROTOCOL. */
static int read_reply(int fd, struct buf *reply, struct jsw_reply_head *h, uint64_t deadline_ns)
{
    if (recv_all(fd, (char *)h, sizeof *h, deadline_ns) < 0) return ERR_IO;
    size_t body = h->len + sizeof h->len;
    if (body < sizeof *h || body > JSW_MAX_FRAME_BYTES || h->nparts > JSW_MAX_PARTS)
        return ERR_PROTOCOL;
    body -= sizeof *h;
    buf_reset(reply);
    buf_reserve(reply, body);
    if (recv_all(fd, reply->ptr, body, deadline_ns) < 0) return ERR_IO;
    reply->len = body;
    return 0;
}

/* Starts a worker with a memory budget of mem_bytes and waits for its "ready". */
static int worker_start(const struct js_pool *pool, size_t mem_bytes, struct js_worker *w,
                        struct buf *scratch)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return ERR_IO;
    int child = sv[1];
    if (child == JSW_SOCKET_FD) child = fcntl(sv[1], F_DUPFD_CLOEXEC, JSW_SOCKET_FD + 1);
    char mem[24];
    snprintf(mem, sizeof mem, "%zu", mem_bytes);
    char *argv[] = {pool->worker_path, "--mem-bytes", mem, NULL};
    char *envp[] = {"TZ=UTC", "LC_ALL=C", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = child < 0 ? ERR_IO : spawn_setup(&fa, &attr, child);
    if (rc == 0) {
        rc = posix_spawn(&w->pid, pool->worker_path, &fa, &attr, argv, envp) ? ERR_IO : 0;
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    if (child != sv[1] && child >= 0) close(child);
    close(sv[1]);
    w->fd = sv[0];
    if (rc < 0) w->pid = 0;
    struct jsw_reply_head h;
    uint64_t deadline = time_mono_ns() + (uint64_t)JS_RT_START_TIMEOUT_MS * NS_PER_MS;
    if (rc == 0) rc = read_reply(w->fd, scratch, &h, deadline);
    if (rc == 0 && (h.kind != 0 || h.nparts != 0)) rc = ERR_PROTOCOL;
    if (rc < 0) worker_stop(w);
    return rc < 0 ? ERR_IO : 0;
}

/* True when the idle worker's socket shows nothing: a worker that died (or wrote out of
 * turn) while no request ran shows a hang-up or bytes. */
static bool worker_is_idle(const struct js_worker *w)
{
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    return w->fd >= 0 && poll(&p, 1, 0) == 0;
}

/* ---- frames ------------------------------------------------------------------------------- */

static void frame_begin(struct js_module *m, uint8_t op, uint8_t flags, uint32_t cpu_ms,
                        size_t output_bytes)
{
    struct jsw_request_head h = {.op = op, .flags = flags, .module = m->id, .cpu_ms = cpu_ms,
                                 .output_bytes = (uint32_t)output_bytes};
    buf_reset(&m->frame);
    buf_add(&m->frame, &h, sizeof h);
}

static void frame_part(struct js_module *m, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    buf_add(&m->frame, &len, sizeof len);
    buf_add(&m->frame, p, n);
}

/* Would a part of n bytes still fit in the frame? */
static bool frame_has_room(const struct js_module *m, size_t n)
{
    return n <= JSW_MAX_FRAME_BYTES && m->frame.len + JSW_PART_HEAD_BYTES + n <= JSW_MAX_FRAME_BYTES;
}

/* Seals the frame with its length and part count. */
static void frame_end(struct js_module *m, uint32_t nparts)
{
    struct jsw_request_head *h = (struct jsw_request_head *)m->frame.ptr;
    h->len = (uint32_t)(m->frame.len - sizeof h->len);
    h->nparts = nparts;
}

/* ---- answers ------------------------------------------------------------------------------ */

static void keep_log(struct js_module *m, const char *p, size_t n)
{
    if (n > LOGIC_LOG_LINE_BYTES) n = LOGIC_LOG_LINE_BYTES; /* the worker cuts them already */
    free(m->logs[m->log_next]);
    m->logs[m->log_next] = xstrndup(p, n);
    m->log_next = (m->log_next + 1) % LOGIC_LOG_LINES;
    if (m->log_count < LOGIC_LOG_LINES) m->log_count++;
}

/* Reads the answer in m->reply: keeps its console lines, sets *result to part 0 and, when the
 * answer is an error, err. Returns 0, ERR_INVALID (the code's error), ERR_IO (a worker error)
 * or ERR_PROTOCOL (a malformed answer). */
static int take_reply(struct js_module *m, const struct jsw_reply_head *h, struct slice *result,
                      struct logic_error *err)
{
    size_t pos = 0;
    *result = (struct slice){"", 0};
    for (uint32_t i = 0; i < h->nparts; i++) {
        const char *p;
        uint32_t n;
        if (jsw_part_next(m->reply.ptr, m->reply.len, &pos, &p, &n) < 0) return ERR_PROTOCOL;
        if (i == 0) *result = (struct slice){p, n};
        else keep_log(m, p, n);
    }
    if (h->kind == LOGIC_E_NONE && result->len > m->lim.output_bytes) return ERR_PROTOCOL;
    if (h->kind == LOGIC_E_NONE) return 0;
    if (h->kind > LOGIC_E_INVALID) return ERR_PROTOCOL;
    fail(err, (enum logic_err_kind)h->kind, h->kind == LOGIC_E_WORKER ? ERR_IO : ERR_INVALID,
         "%.*s", (int)result->len, result->ptr);
    err->line = h->line;
    err->column = h->column;
    srcmap_to_origin(&m->map, &err->line, &err->column);
    return h->kind == LOGIC_E_WORKER ? ERR_IO : ERR_INVALID;
}

/* Answers the host call in m->reply (parts: op, the arguments' JSON array) by calling
 * host->fn, and sends its answer as a HOST_REPLY frame (in m->frame: the request was sent).
 * Returns 0, ERR_PROTOCOL (not a host call of this request) or ERR_IO (the send failed). */
static int serve_host_call(struct js_module *m, const struct jsw_reply_head *h,
                           const struct logic_host *host, uint64_t wall_ms)
{
    const char *p[2];
    uint32_t n[2];
    size_t pos = 0;
    char op[JSW_ENTRY_NAME_BYTES];
    if (!host || h->nparts != 2 || jsw_part_next(m->reply.ptr, m->reply.len, &pos, &p[0], &n[0]) ||
        jsw_part_next(m->reply.ptr, m->reply.len, &pos, &p[1], &n[1]) || n[0] == 0 ||
        n[0] >= sizeof op)
        return ERR_PROTOCOL;
    memcpy(op, p[0], n[0]);
    op[n[0]] = 0;
    const char *const *o = host->ops;
    while (*o && strcmp(*o, op) != 0) o++;
    if (!*o) return ERR_PROTOCOL;
    struct buf answer;
    char why[256] = "";
    buf_init(&answer);
    int rc = host->fn(host->arg, op, (struct slice){p[1], n[1]}, &answer, why, sizeof why);
    if (rc == 0 && answer.len > JSW_MAX_FRAME_BYTES - sizeof(struct jsw_request_head) -
                                    JSW_PART_HEAD_BYTES) {
        snprintf(why, sizeof why, "the answer exceeds %d bytes", JSW_MAX_FRAME_BYTES);
        rc = ERR_TOOBIG;
    }
    frame_begin(m, JSW_OP_HOST_REPLY, rc ? JSW_FLAG_HOST_FAILED : 0, 0, 0);
    if (rc == 0) frame_part(m, answer.len ? answer.ptr : "null", answer.len ? answer.len : 4);
    else frame_part(m, why[0] ? why : "failed", strlen(why[0] ? why : "failed"));
    frame_end(m, 1);
    buf_fini(&answer);
    uint64_t deadline = time_mono_ns() + wall_ms * NS_PER_MS;
    return send_all(m->worker.fd, m->frame.ptr, m->frame.len, deadline);
}

/* Sends m->frame to a RUNNING worker and reads its answer, under a wall deadline derived from
 * cpu_ms; host calls the worker makes meanwhile (CALL_CTX, host not NULL) are served, each
 * restarting the deadline (the host's time is not the worker's). On failure the worker is
 * stopped (DEAD) and err says why: LOGIC_E_CPU when it did not answer in time,
 * LOGIC_E_WORKER when it died or broke the format. */
static int exchange_host(struct js_module *m, uint32_t cpu_ms, const struct logic_host *host,
                         struct jsw_reply_head *h, struct slice *result, struct logic_error *err)
{
    uint64_t wall_ms = (uint64_t)cpu_ms * JS_RT_WALL_FACTOR + JS_RT_GRACE_MS;
    uint64_t deadline = time_mono_ns() + wall_ms * NS_PER_MS;
    int rc = send_all(m->worker.fd, m->frame.ptr, m->frame.len, deadline);
    for (unsigned calls = 0; rc == 0;) {
        rc = read_reply(m->worker.fd, &m->reply, h, deadline);
        if (rc < 0 || !(h->flags & JSW_REPLY_HOST_CALL)) break;
        if (++calls > JSW_MAX_HOST_CALLS) rc = ERR_PROTOCOL;
        else rc = serve_host_call(m, h, host, wall_ms);
        deadline = time_mono_ns() + wall_ms * NS_PER_MS;
    }
    if (rc == 0) {
        rc = take_reply(m, h, result, err);
        if (rc != ERR_PROTOCOL) {
            if (h->flags & JSW_REPLY_EXITING) worker_stop(&m->worker);
            return rc;
        }
    }
    bool timed_out = time_mono_ns() >= deadline;
    worker_stop(&m->worker);
    if (timed_out)
        return fail(err, LOGIC_E_CPU, ERR_INVALID,
                    "cpu_limit: the worker did not answer within %llu ms and was stopped",
                    (unsigned long long)wall_ms);
    return fail(err, LOGIC_E_WORKER, ERR_IO,
                "worker_died: the JavaScript worker of %s stopped during the call (restarted "
                "at the next call)", m->name);
}

static int exchange(struct js_module *m, uint32_t cpu_ms, struct jsw_reply_head *h,
                    struct slice *result, struct logic_error *err)
{
    return exchange_host(m, cpu_ms, NULL, h, result, err);
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Starts the module's worker and loads its JavaScript: RUNNING, or DEAD with err set. */
static int worker_load(struct js_module *m, struct logic_error *err)
{
    struct jsw_reply_head h;
    struct slice result;
    uint32_t nparts = 2;
    if (worker_start(m->pool, m->lim.mem_bytes, &m->worker, &m->reply) < 0)
        return fail(err, LOGIC_E_WORKER, ERR_IO, "worker_unavailable: %s did not start",
                    m->pool->worker_path);
    frame_begin(m, JSW_OP_LOAD, m->is_wasm ? JSW_FLAG_WASM : 0, m->lim.cpu_ms,
                m->lim.output_bytes);
    frame_part(m, m->name, strlen(m->name));
    frame_part(m, m->js, m->js_len);
    for (char **e = m->entries; *e; e++, nparts++) frame_part(m, *e, strlen(*e));
    frame_end(m, nparts);
    int rc = exchange(m, m->lim.cpu_ms, &h, &result, err);
    if (rc < 0) worker_stop(&m->worker);
    return rc;
}

/* Makes the worker RUNNING before a request: one that died is started and reloaded. */
static int ensure_worker(struct js_module *m, struct logic_error *err)
{
    if (worker_is_idle(&m->worker)) return 0;
    worker_stop(&m->worker);
    log_warn("logic: restarting the JavaScript worker of module %s", m->name);
    int rc = worker_load(m, err);
    if (rc == ERR_INVALID)
        return fail(err, LOGIC_E_WORKER, ERR_IO, "worker_restart_failed: %s", err->message);
    return rc;
}

static void module_free(struct js_module *m)
{
    worker_stop(&m->worker);
    for (char **e = m->entries; e && *e; e++) free(*e);
    free(m->entries);
    for (size_t i = 0; i < LOGIC_LOG_LINES; i++) free(m->logs[i]);
    buf_fini(&m->frame);
    buf_fini(&m->reply);
    free(m->name);
    free(m->js);
    free(m->map.segs);
    free(m->map.line_start);
    free(m);
}

static void fill_limits(const struct js_pool *pool, const struct logic_limits *lim,
                        struct logic_limits *out)
{
    out->cpu_ms = lim && lim->cpu_ms ? lim->cpu_ms : LOGIC_DEFAULT_CPU_MS;
    out->mem_bytes = lim && lim->mem_bytes ? lim->mem_bytes : LOGIC_DEFAULT_MEM_BYTES;
    out->output_bytes = lim && lim->output_bytes ? lim->output_bytes : LOGIC_DEFAULT_OUTPUT_BYTES;
    if (out->mem_bytes > pool->worker_mem_bytes) out->mem_bytes = pool->worker_mem_bytes;
    if (out->output_bytes > JSW_MAX_FRAME_BYTES / 2) out->output_bytes = JSW_MAX_FRAME_BYTES / 2;
}

/* Checks a name as the worker will: 1 to JSW_ENTRY_NAME_BYTES - 1 bytes, no NUL. */
static bool name_ok(const char *s)
{
    return s && s[0] && strlen(s) < JSW_ENTRY_NAME_BYTES;
}

static struct js_module *module_new(struct js_pool *pool, const char *name,
                                    const char *const *entries, const struct logic_limits *lim)
{
    size_t count = 0;
    while (entries && entries[count]) count++;
    struct js_module *m = xcalloc(1, sizeof *m);
    m->pool = pool;
    m->name = xstrndup(name, strlen(name));
    m->entries = xcalloc(count + 1, sizeof *m->entries);
    for (size_t i = 0; i < count; i++) m->entries[i] = xstrndup(entries[i], strlen(entries[i]));
    fill_limits(pool, lim, &m->lim);
    m->worker = (struct js_worker){.pid = 0, .fd = -1};
    buf_init(&m->frame);
    buf_init(&m->reply);
    pthread_mutex_lock(&pool->mu);
    m->id = ++pool->next_id;
    pool->modules++;
    pthread_mutex_unlock(&pool->mu);
    return m;
}

static int ts_transpile(const struct js_pool *pool, const char *name, const char *src,
                        size_t len, struct buf *js, struct logic_error *err);
static void srcmap_take(struct buf *js, struct js_srcmap *map);
static int wasm_decode(const char *src, size_t len, struct buf *bytes, struct logic_error *err);

/* The code the worker loads for source: esbuild's JavaScript for TypeScript, the module's
 * bytes for WebAssembly (decoded from base64), the source itself for JavaScript. */
static int worker_code(struct js_pool *pool, enum logic_lang lang, const char *name,
                       const char *source, size_t len, struct buf *code, struct logic_error *err)
{
    if (lang == LOGIC_LANG_TYPESCRIPT) return ts_transpile(pool, name, source, len, code, err);
    if (lang == LOGIC_LANG_WASM) return wasm_decode(source, len, code, err);
    buf_add(code, source, len);
    return 0;
}

int js_rt_load(struct js_pool *pool, enum logic_lang lang, const char *name, const char *source,
               size_t len, const char *const *entries, const struct logic_limits *lim,
               struct logic_module **out, struct logic_error *err)
{
    struct buf js;
    if (len > LOGIC_MAX_SOURCE_BYTES)
        return fail(err, LOGIC_E_INVALID, ERR_TOOBIG, "the source exceeds %d bytes",
                    LOGIC_MAX_SOURCE_BYTES);
    if (!name_ok(name)) return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad module name");
    for (size_t i = 0; entries && entries[i]; i++) {
        if (!name_ok(entries[i]))
            return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad entry point name");
    }
    buf_init(&js);
    int rc = worker_code(pool, lang, name, source, len, &js, err);
    if (rc < 0) {
        buf_fini(&js);
        return rc;
    }
    struct js_module *m = module_new(pool, name, entries, lim);
    m->base.rt = lang == LOGIC_LANG_TYPESCRIPT ? &logic_ts_runtime
                 : lang == LOGIC_LANG_WASM     ? &logic_wasm_runtime
                                               : &logic_js_runtime;
    m->is_wasm = lang == LOGIC_LANG_WASM;
    if (lang == LOGIC_LANG_TYPESCRIPT) srcmap_take(&js, &m->map);
    m->js = buf_steal(&js, &m->js_len);
    rc = worker_load(m, err);
    if (rc < 0) {
        logic_js_runtime.unload((struct logic_module *)m);
        return rc;
    }
    *out = (struct logic_module *)m;
    return 0;
}

/* ---- calls -------------------------------------------------------------------------------- */

/* A CALL, or with host a CALL_CTX whose ctx offers host->ops (joined by NULs into one part). */
static int call_request(struct js_module *m, const char *entry, const struct slice *args,
                        size_t nargs, const struct logic_host *host, struct buf *out,
                        struct logic_error *err)
{
    struct jsw_reply_head h;
    struct slice result;
    struct buf ops;
    uint32_t fixed = host ? 2 : 1; /* parts before the arguments */
    if (!name_ok(entry) || nargs + fixed >= JSW_MAX_PARTS)
        return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad entry point or arguments");
    buf_init(&ops);
    for (size_t i = 0; host && host->ops[i]; i++) {
        if (!name_ok(host->ops[i]) || i == JSW_MAX_CTX_OPS) {
            buf_fini(&ops);
            return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad ctx function names");
        }
        buf_add(&ops, host->ops[i], strlen(host->ops[i]) + (host->ops[i + 1] ? 1 : 0));
    }
    int rc = ensure_worker(m, err); /* before the frame: a restart uses m->frame */
    if (rc < 0) {
        buf_fini(&ops);
        return rc;
    }
    frame_begin(m, host ? JSW_OP_CALL_CTX : JSW_OP_CALL, 0, m->lim.cpu_ms, m->lim.output_bytes);
    frame_part(m, entry, strlen(entry));
    if (host) frame_part(m, ops.ptr ? ops.ptr : "", ops.len);
    buf_fini(&ops);
    for (size_t i = 0; i < nargs; i++) {
        if (!frame_has_room(m, args[i].len))
            return fail(err, LOGIC_E_INVALID, ERR_TOOBIG, "the arguments exceed %d bytes",
                        JSW_MAX_FRAME_BYTES);
        frame_part(m, args[i].ptr, args[i].len);
    }
    frame_end(m, (uint32_t)(nargs + fixed));
    rc = exchange_host(m, m->lim.cpu_ms, host, &h, &result, err);
    if (rc == 0) buf_add(out, result.ptr, result.len);
    return rc;
}

static int js_call(struct logic_module *lm, const char *entry, const struct slice *args,
                   size_t nargs, struct buf *out, struct logic_error *err)
{
    return call_request((struct js_module *)lm, entry, args, nargs, NULL, out, err);
}

/* ctx.<op>(...) in the worker becomes a host-call frame that exchange_host answers with
 * host->fn on this thread, while the worker waits (its CPU clock stands still meanwhile). A
 * WebAssembly component's entry gets the arguments alone (it imports nothing). */
static int js_call_ctx(struct logic_module *lm, const char *entry, const struct slice *args,
                       size_t nargs, const struct logic_host *host, struct buf *out,
                       struct logic_error *err)
{
    return call_request((struct js_module *)lm, entry, args, nargs, host, out, err);
}

/* Builds one FOLD frame from state and as many of events[0..n) as fit; *count says how many
 * (0 when even the first does not fit). */
static void fold_frame(struct js_module *m, const char *entry, struct slice state,
                       const struct slice *events, size_t n, const struct slice *extra,
                       uint32_t cpu_ms, size_t *count)
{
    size_t first = extra ? 3 : 2;
    frame_begin(m, JSW_OP_FOLD, extra ? JSW_FLAG_EXTRA : 0, cpu_ms, m->lim.output_bytes);
    frame_part(m, entry, strlen(entry));
    frame_part(m, state.ptr, state.len);
    if (extra) frame_part(m, extra->ptr, extra->len);
    *count = 0;
    while (*count < n && first + *count < JSW_MAX_PARTS &&
           frame_has_room(m, events[*count].len)) {
        frame_part(m, events[*count].ptr, events[*count].len);
        (*count)++;
    }
    frame_end(m, (uint32_t)(first + *count));
}

/* Folds in frames of at most JSW_MAX_FRAME_BYTES; between frames the state crosses as JSON
 * and the CPU budget left goes with the next frame. */
static int js_fold(struct logic_module *lm, const char *entry, struct slice state,
                   const struct slice *events, size_t n, const struct slice *extra,
                   struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct js_module *m = (struct js_module *)lm;
    struct buf st;
    size_t done = 0;
    uint64_t used_us = 0;
    if (out_failed_at) *out_failed_at = n; /* until an event is to blame */
    if (!name_ok(entry) || (extra && !frame_has_room(m, extra->len)))
        return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad entry point or argument");
    buf_init(&st);
    buf_add(&st, state.ptr, state.len);
    int rc = 0;
    do {
        struct jsw_reply_head h = {0};
        struct slice result;
        size_t count;
        uint64_t left_ms = m->lim.cpu_ms - used_us / 1000;
        if (used_us / 1000 >= m->lim.cpu_ms) {
            rc = fail(err, LOGIC_E_CPU, ERR_INVALID, "cpu_limit: the fold's CPU budget ran out");
            break;
        }
        if ((rc = ensure_worker(m, err)) < 0) break;
        fold_frame(m, entry, (struct slice){st.ptr, st.len}, events + done, n - done, extra,
                   (uint32_t)left_ms, &count);
        if (count == 0 && n > done) {
            rc = fail(err, LOGIC_E_INVALID, ERR_TOOBIG, "an event exceeds the frame size");
            if (out_failed_at) *out_failed_at = done;
            break;
        }
        rc = exchange(m, (uint32_t)left_ms, &h, &result, err);
        bool answered = h.len != 0; /* else the worker died: no event is to blame */
        if (rc < 0 && out_failed_at && answered && h.failed_at < count)
            *out_failed_at = done + h.failed_at;
        if (rc < 0) break;
        buf_reset(&st);
        buf_add(&st, result.ptr, result.len);
        done += count;
        used_us += h.cpu_us;
    } while (done < n);
    if (rc == 0) buf_add(out, st.ptr, st.len);
    buf_fini(&st);
    return rc;
}

/* ---- batches (map, fold_keyed) ------------------------------------------------------------
 * A batch goes in frames of at most JSW_MAX_FRAME_BYTES, each answered by the JSON array of
 * its events' results, which are joined here into one array. Each frame gets the CPU budget
 * left and the output budget left. The frames of a keyed fold form one batch in the worker:
 * the first carries the states, the next ones continue from the states the worker kept. */

struct js_batch {
    const char *entry;
    struct slice states;        /* fold_keyed: the starting states (a JSON object) */
    const struct slice *keys;   /* fold_keyed: the key of each event; NULL for map */
    const struct slice *events;
    size_t n;
};

/* How many of b's events from first on fit a frame that has used bytes and fixed parts. */
static size_t batch_fit(const struct js_batch *b, size_t first, size_t used, size_t fixed)
{
    size_t per = b->keys ? 2 : 1;
    size_t count = 0;
    while (first + count < b->n && fixed + per * (count + 1) <= JSW_MAX_PARTS) {
        size_t more = JSW_PART_HEAD_BYTES + b->events[first + count].len;
        if (b->keys) more += JSW_PART_HEAD_BYTES + b->keys[first + count].len;
        if (more > JSW_MAX_FRAME_BYTES - used) break;
        used += more;
        count++;
    }
    return count;
}

/* Builds the frame of b's events from first on, as many as fit (*count; 0 when even the
 * first does not), with budgets cpu_ms and output_bytes. */
static void batch_frame(struct js_module *m, const struct js_batch *b, size_t first,
                        uint32_t cpu_ms, size_t output_bytes, size_t *count)
{
    bool is_keyed = b->keys != NULL;
    size_t states_len = is_keyed && first == 0 ? b->states.len : 0;
    size_t fixed = is_keyed ? 2 : 1;
    size_t used = sizeof(struct jsw_request_head) + fixed * JSW_PART_HEAD_BYTES +
                  strlen(b->entry) + states_len;
    *count = batch_fit(b, first, used, fixed);
    uint8_t flags = 0;
    if (is_keyed && first > 0) flags |= JSW_FLAG_CONTINUE;
    if (is_keyed && first + *count < b->n) flags |= JSW_FLAG_MORE;
    frame_begin(m, is_keyed ? JSW_OP_FOLD_KEYED : JSW_OP_MAP, flags, cpu_ms, output_bytes);
    frame_part(m, b->entry, strlen(b->entry));
    if (is_keyed) frame_part(m, b->states.ptr, states_len);
    for (size_t i = 0; is_keyed && i < *count; i++)
        frame_part(m, b->keys[first + i].ptr, b->keys[first + i].len);
    for (size_t i = 0; i < *count; i++)
        frame_part(m, b->events[first + i].ptr, b->events[first + i].len);
    frame_end(m, (uint32_t)(fixed + (is_keyed ? 2 : 1) * *count));
}

/* Before a frame that continues a keyed fold: the worker must still be the one that keeps
 * the batch's states (one that died since cannot be restarted into the middle of it). */
static int still_running(struct js_module *m, struct logic_error *err)
{
    if (worker_is_idle(&m->worker)) return 0;
    worker_stop(&m->worker);
    return fail(err, LOGIC_E_WORKER, ERR_IO, "worker_died: the JavaScript worker of %s stopped "
                "between frames of a batch (restarted at the next call)", m->name);
}

/* Adds a frame's answer (a JSON array) to the batch's array in out, begun at start. */
static int batch_join(struct js_module *m, struct slice result, struct buf *out, size_t start,
                      struct logic_error *err)
{
    if (result.len < 2 || result.ptr[0] != '[' || result.ptr[result.len - 1] != ']') {
        worker_stop(&m->worker);
        return fail(err, LOGIC_E_WORKER, ERR_IO, "worker_broken: a batch's answer is not an "
                    "array (restarted at the next call)");
    }
    if (result.len == 2) return 0;
    if (out->len - start > 1) buf_addc(out, ',');
    buf_add(out, result.ptr + 1, result.len - 2);
    return 0;
}

/* One frame of a batch from done on: sends it and adds its results to out (begun at start);
 * *count is the number of its events, *cpu_us the CPU time it took. */
static int batch_step(struct js_module *m, const struct js_batch *b, size_t done,
                      uint32_t cpu_ms, struct buf *out, size_t start, size_t *count,
                      uint32_t *cpu_us, size_t *failed_at, struct logic_error *err)
{
    struct jsw_reply_head h = {0};
    struct slice result;
    size_t so_far = out->len - start; /* "[" and the results so far */
    size_t output_bytes = m->lim.output_bytes - (so_far > 1 ? so_far : 0);
    int rc = b->keys && done > 0 ? still_running(m, err) : ensure_worker(m, err);
    if (rc < 0) return rc;
    batch_frame(m, b, done, cpu_ms, output_bytes, count);
    if (*count == 0 && b->n > done) {
        *failed_at = done;
        return fail(err, LOGIC_E_INVALID, ERR_TOOBIG, "an event exceeds the frame size");
    }
    rc = exchange(m, cpu_ms, &h, &result, err);
    if (rc < 0) {
        bool answered = h.len != 0; /* else the worker died: no event is to blame */
        if (answered && h.failed_at < *count) *failed_at = done + h.failed_at;
        return rc;
    }
    *cpu_us = h.cpu_us;
    return batch_join(m, result, out, start, err);
}

static int js_batch(struct js_module *m, const struct js_batch *b, struct buf *out,
                    size_t *failed_at, struct logic_error *err)
{
    size_t start = out->len;
    size_t done = 0;
    uint64_t used_us = 0;
    *failed_at = b->n; /* until an event is to blame */
    if (!name_ok(b->entry))
        return fail(err, LOGIC_E_INVALID, ERR_INVALID, "bad entry point");
    if (b->keys && b->states.len > JSW_MAX_FRAME_BYTES / 2)
        return fail(err, LOGIC_E_INVALID, ERR_TOOBIG, "the states exceed %d bytes",
                    JSW_MAX_FRAME_BYTES / 2);
    int rc = 0;
    buf_addc(out, '[');
    do {
        size_t count = 0;
        uint32_t cpu_us = 0;
        if (used_us / 1000 >= m->lim.cpu_ms) {
            rc = fail(err, LOGIC_E_CPU, ERR_INVALID, "cpu_limit: the batch's CPU budget ran out");
            break;
        }
        uint32_t left_ms = (uint32_t)(m->lim.cpu_ms - used_us / 1000);
        rc = batch_step(m, b, done, left_ms, out, start, &count, &cpu_us, failed_at, err);
        done += count;
        used_us += cpu_us;
    } while (rc == 0 && done < b->n);
    if (rc == 0) {
        buf_addc(out, ']');
        return 0;
    }
    out->len = start;
    out->ptr[start] = '\0';
    return rc;
}

static int js_map(struct logic_module *lm, const char *entry, const struct slice *events,
                  size_t n, struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct js_batch b = {.entry = entry, .events = events, .n = n};
    return js_batch((struct js_module *)lm, &b, out, out_failed_at, err);
}

static int js_fold_keyed(struct logic_module *lm, const char *entry, struct slice states,
                         const struct slice *keys, const struct slice *events, size_t n,
                         struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct js_batch b = {.entry = entry, .states = states, .keys = keys, .events = events,
                         .n = n};
    return js_batch((struct js_module *)lm, &b, out, out_failed_at, err);
}

static size_t js_logs(struct logic_module *lm, char **lines, size_t max)
{
    struct js_module *m = (struct js_module *)lm;
    size_t n = m->log_count < max ? m->log_count : max;
    for (size_t i = 0; i < n; i++) {
        size_t slot = (m->log_next + LOGIC_LOG_LINES - n + i) % LOGIC_LOG_LINES;
        lines[i] = xstrndup(m->logs[slot], strlen(m->logs[slot]));
    }
    return n;
}

static void js_unload(struct logic_module *lm)
{
    struct js_module *m = (struct js_module *)lm;
    if (!m) return;
    pthread_mutex_lock(&m->pool->mu);
    m->pool->modules--;
    pthread_mutex_unlock(&m->pool->mu);
    module_free(m);
}

/* ---- TypeScript --------------------------------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Moves the source into esbuild's stdin and its stdout and stderr into out and errors until
 * both close; closes the three. Returns 0, or ERR_IO when the deadline passed or the output
 * grew over JS_RT_ESBUILD_OUT_BYTES. */
static int pump_esbuild(int in, int outfd, int errfd, const char *src, size_t len,
                        struct buf *out, struct buf *errors)
{
    uint64_t deadline = time_mono_ns() + (uint64_t)JS_RT_ESBUILD_TIMEOUT_MS * NS_PER_MS;
    size_t sent = 0;
    int fds[3] = {in, outfd, errfd};
    struct buf *sinks[3] = {NULL, out, errors};
    while (fds[1] >= 0 || fds[2] >= 0) {
        struct pollfd p[3];
        for (int i = 0; i < 3; i++) p[i] = (struct pollfd){fds[i], i ? POLLIN : POLLOUT, 0};
        uint64_t now = time_mono_ns();
        if (now >= deadline) break;
        if (poll(p, 3, (int)((deadline - now) / NS_PER_MS) + 1) < 0 && errno != EINTR) break;
        if (p[0].revents) {
            size_t n = len - sent < ESBUILD_PIPE_CHUNK ? len - sent : ESBUILD_PIPE_CHUNK;
            ssize_t put = n ? write(in, src + sent, n) : 0;
            if (put > 0) sent += (size_t)put;
            if (put < 0 || sent == len) close_fd(&fds[0]);
        }
        for (int i = 1; i < 3; i++) {
            if (!p[i].revents) continue;
            buf_reserve(sinks[i], ESBUILD_PIPE_CHUNK);
            ssize_t got = read(fds[i], sinks[i]->ptr + sinks[i]->len, ESBUILD_PIPE_CHUNK);
            if (got > 0) sinks[i]->len += (size_t)got;
            if (got <= 0) close_fd(&fds[i]);
            if (sinks[i]->len > JS_RT_ESBUILD_OUT_BYTES) break;
        }
        if (out->len > JS_RT_ESBUILD_OUT_BYTES || errors->len > JS_RT_ESBUILD_OUT_BYTES) break;
    }
    bool is_whole = fds[1] < 0 && fds[2] < 0;
    for (int i = 0; i < 3; i++) close_fd(&fds[i]);
    return is_whole ? 0 : ERR_IO;
}

/* Reads "...:line:column:" at the end of line[0..n), esbuild's location line. */
static bool parse_location(const char *line, size_t n, int *out_line, int *out_column)
{
    int nums[2];
    size_t i = n;
    if (n < 4 || line[n - 1] != ':') return false;
    i--;
    for (int k = 1; k >= 0; k--) {
        size_t end = i;
        while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9' && end - i < 9) i--;
        if (i == end || i == 0 || line[i - 1] != ':') return false;
        nums[k] = atoi(line + i);
        i--;
    }
    *out_line = nums[0];
    *out_column = nums[1];
    return true;
}

/* Turns esbuild's first error ("[ERROR] message", then a line "    name:line:column:" whose
 * column counts from 0) into err. */
static void esbuild_error(const struct buf *errors, struct logic_error *err)
{
    const char *text = errors->len ? errors->ptr : "";
    const char *msg = strstr(text, "[ERROR] ");
    msg = msg ? msg + 8 : text;
    fail(err, LOGIC_E_SYNTAX, ERR_INVALID, "SyntaxError: %.*s", (int)strcspn(msg, "\n"), msg);
    for (const char *line = strchr(msg, '\n'); line; line = strchr(line + 1, '\n')) {
        int l, c;
        if (parse_location(line + 1, strcspn(line + 1, "\n"), &l, &c)) {
            err->line = l;
            err->column = c + 1;
            return;
        }
    }
}

static int ts_transpile(const struct js_pool *pool, const char *name, const char *src,
                        size_t len, struct buf *js, struct logic_error *err)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    char sourcefile[JSW_ENTRY_NAME_BYTES + 16];
    snprintf(sourcefile, sizeof sourcefile, "--sourcefile=%s", name);
    char *argv[] = {pool->esbuild_path, "--loader=ts", "--target=es2022", "--log-level=error",
                    "--color=false", "--sourcemap=inline", "--sources-content=false",
                    sourcefile, NULL};
    posix_spawn_file_actions_t fa;
    struct buf errors;
    pid_t pid = 0;
    int rc = ERR_IO;
    buf_init(&errors);
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
        posix_spawn_file_actions_init(&fa))
        goto out_close;
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    rc = posix_spawnp(&pid, pool->esbuild_path, &fa, NULL, argv, environ) ? ERR_IO : 0;
    posix_spawn_file_actions_destroy(&fa);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&errp[1]);
    if (rc == 0) {
        rc = pump_esbuild(in[1], out[0], errp[0], src, len, js, &errors);
        in[1] = out[0] = errp[0] = -1; /* closed by pump_esbuild */
    }
    int status = 0;
    if (pid > 0) {
        if (rc < 0) kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (rc < 0 || !WIFEXITED(status) || (WEXITSTATUS(status) != 0 && errors.len == 0))
        rc = fail(err, LOGIC_E_WORKER, ERR_IO, "typescript_unavailable: %s could not transpile "
                  "(missing, failed or over %d ms)", pool->esbuild_path, JS_RT_ESBUILD_TIMEOUT_MS);
    else if (WEXITSTATUS(status) != 0) {
        esbuild_error(&errors, err);
        rc = ERR_INVALID;
    }
out_close:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&errp[i]);
    }
    buf_fini(&errors);
    return rc;
}

/* ---- source maps (TypeScript positions) -------------------------------------------------- */

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes base64 text s[0..n) into out (padding and other bytes end it). */
static void base64_decode(const char *s, size_t n, struct buf *out)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = base64_value(s[i]);
        if (v < 0) break;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_addc(out, (char)((acc >> bits) & 0xff));
        }
    }
}

/* Reads one base64 VLQ number at *p (advancing it); false at a separator or the end. */
static bool vlq_next(const char **p, const char *end, int64_t *out)
{
    uint64_t value = 0;
    int shift = 0, v;
    do {
        if (*p >= end || shift > 60 || (v = base64_value(**p)) < 0) return false;
        (*p)++;
        value |= (uint64_t)(v & 31) << shift;
        shift += 5;
    } while (v & 32);
    *out = (value & 1) ? -(int64_t)(value >> 1) : (int64_t)(value >> 1);
    return true;
}

/* Parses a source map's "mappings" (p[0..n)) into map: segments ';'-separated by generated
 * line, ','-separated within one, each 1, 4 or 5 VLQ fields relative to the one before. */
static void srcmap_parse(const char *p, size_t n, struct js_srcmap *map)
{
    const char *end = p + n;
    int64_t f[5] = {0}, src_line = 0, src_col = 0;
    size_t cap_lines = 16, cap_segs = 64;
    map->line_start = xcalloc(cap_lines, sizeof *map->line_start);
    map->segs = xcalloc(cap_segs, sizeof *map->segs);
    map->lines = 1;
    for (int64_t gen_col = 0; p < end; p++) {
        if (*p == ';') {
            if (map->lines + 1 >= cap_lines)
                map->line_start = xrealloc(map->line_start, (cap_lines *= 2) * sizeof(uint32_t));
            map->line_start[map->lines++] = (uint32_t)map->nsegs;
            gen_col = 0;
            continue;
        }
        if (*p == ',') continue;
        int k = 0;
        while (k < 5 && vlq_next(&p, end, &f[k])) k++;
        if (k == 0) continue; /* not base64: skipped */
        p--; /* the loop's p++ passes the separator */
        gen_col += f[0];
        if (k < 4) continue;
        src_line += f[2];
        src_col += f[3];
        if (map->nsegs == cap_segs) map->segs = xrealloc(map->segs, (cap_segs *= 2) * sizeof *map->segs);
        map->segs[map->nsegs++] = (struct js_seg){(uint32_t)gen_col, (uint32_t)src_line,
                                                  (uint32_t)src_col};
    }
    map->line_start[map->lines] = (uint32_t)map->nsegs;
}

/* Takes esbuild's inline source map off the end of js and keeps its mappings in map. */
static void srcmap_take(struct buf *js, struct js_srcmap *map)
{
    static const char tag[] = "//# sourceMappingURL=data:application/json;base64,";
    static const char key[] = "\"mappings\": \"";
    char *at = js->len ? strstr(js->ptr, tag) : NULL;
    if (!at) return;
    struct buf json;
    buf_init(&json);
    base64_decode(at + sizeof tag - 1, js->len - (size_t)(at - js->ptr) - (sizeof tag - 1), &json);
    const char *mappings = json.len ? strstr(json.ptr, key) : NULL;
    if (mappings) {
        mappings += sizeof key - 1;
        srcmap_parse(mappings, strcspn(mappings, "\""), map);
    }
    buf_fini(&json);
    js->len = (size_t)(at - js->ptr);
    js->ptr[js->len] = 0;
}

/* Moves a 1-based position in the generated JavaScript to its TypeScript origin: the last
 * mapping at or before it on its line (the first of the line when none is). */
static void srcmap_to_origin(const struct js_srcmap *map, int *line, int *column)
{
    if (map->lines == 0 || *line < 1 || (size_t)*line > map->lines) return;
    uint32_t first = map->line_start[*line - 1], last = map->line_start[*line];
    if (first == last) return;
    uint32_t col = *column > 0 ? (uint32_t)*column - 1 : 0;
    const struct js_seg *best = &map->segs[first];
    for (uint32_t i = first; i < last && map->segs[i].gen_col <= col; i++) best = &map->segs[i];
    *line = (int)best->src_line + 1;
    *column = (int)(best->src_col + (col - (best->gen_col <= col ? best->gen_col : col))) + 1;
}

/* ---- WebAssembly sources ----------------------------------------------------------------- */

/* The value of a base64 character of the standard alphabet, -1 for '=', -2 for whitespace,
 * -3 for anything else. */
static int base64_class(unsigned char c)
{
    int v = base64_value((char)c);
    if (v >= 0) return v;
    if (c == '=') return -1;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return -2;
    return -3;
}

/* Fails a WebAssembly source at byte i of src: line and column of i. */
static int base64_error(const char *src, size_t i, const char *why, struct logic_error *err)
{
    int line = 1, column = 1;
    for (size_t k = 0; k < i; k++) {
        column = src[k] == '\n' ? 1 : column + 1;
        line += src[k] == '\n';
    }
    fail(err, LOGIC_E_SYNTAX, ERR_INVALID, "a WebAssembly component's source is its module in "
         "base64: %s at line %d, column %d", why, line, column);
    err->line = line;
    err->column = column;
    return ERR_INVALID;
}

/* Decodes src[0..len), the module in standard base64 (RFC 4648 section 4; whitespace between
 * characters is skipped, the padding may be left out), into bytes. Anything else is
 * LOGIC_E_SYNTAX naming the first bad character's place. */
static int wasm_decode(const char *src, size_t len, struct buf *bytes, struct logic_error *err)
{
    uint32_t acc = 0;
    size_t count = 0, pad = 0; /* characters of the alphabet, padding characters */
    for (size_t i = 0; i < len; i++) {
        int v = base64_class((unsigned char)src[i]);
        if (v == -2) continue;
        if (v == -3) return base64_error(src, i, "a character outside the base64 alphabet", err);
        if (v == -1) {
            if (count % 4 < 2 || (count + pad) % 4 == 0)
                return base64_error(src, i, "padding out of place", err);
            pad++;
            continue;
        }
        if (pad) return base64_error(src, i, "text after the padding", err);
        acc = (acc << 6) | (uint32_t)v;
        if (++count % 4 == 0) {
            char out[3] = {(char)(acc >> 16), (char)(acc >> 8), (char)acc};
            buf_add(bytes, out, 3);
        }
    }
    if (count % 4 == 1 || (pad && (count + pad) % 4 != 0))
        return base64_error(src, len, "it ends in the middle of a group", err);
    if (count % 4 == 2) buf_addc(bytes, (char)(acc >> 4));
    if (count % 4 == 3) {
        char out[2] = {(char)(acc >> 10), (char)(acc >> 2)};
        buf_add(bytes, out, 2);
    }
    if (bytes->len == 0)
        return fail(err, LOGIC_E_SYNTAX, ERR_INVALID, "a WebAssembly component's source is its "
                    "module in base64: the source is empty");
    return 0;
}

/* ---- the runtimes and the pool ------------------------------------------------------------ */

static int load_js(struct logic_env *env, const char *name, const char *source, size_t len,
                   const char *const *entries, const struct logic_limits *lim,
                   struct logic_module **out, struct logic_error *err)
{
    struct js_pool *pool = logic_env_js_pool(env);
    if (!pool) return fail(err, LOGIC_E_WORKER, ERR_IO, "javascript_unavailable: no worker");
    return js_rt_load(pool, LOGIC_LANG_JAVASCRIPT, name, source, len, entries, lim, out, err);
}

static int load_ts(struct logic_env *env, const char *name, const char *source, size_t len,
                   const char *const *entries, const struct logic_limits *lim,
                   struct logic_module **out, struct logic_error *err)
{
    struct js_pool *pool = logic_env_js_pool(env);
    if (!pool) return fail(err, LOGIC_E_WORKER, ERR_IO, "javascript_unavailable: no worker");
    return js_rt_load(pool, LOGIC_LANG_TYPESCRIPT, name, source, len, entries, lim, out, err);
}

static int load_wasm(struct logic_env *env, const char *name, const char *source, size_t len,
                     const char *const *entries, const struct logic_limits *lim,
                     struct logic_module **out, struct logic_error *err)
{
    struct js_pool *pool = logic_env_js_pool(env);
    if (!pool) return fail(err, LOGIC_E_WORKER, ERR_IO, "wasm_unavailable: no worker");
    return js_rt_load(pool, LOGIC_LANG_WASM, name, source, len, entries, lim, out, err);
}

const struct logic_runtime logic_js_runtime = {
    .name = "javascript", .load = load_js, .call = js_call, .fold = js_fold,
    .call_ctx = js_call_ctx, .logs = js_logs, .unload = js_unload, .map = js_map,
    .fold_keyed = js_fold_keyed,
};

const struct logic_runtime logic_ts_runtime = {
    .name = "typescript", .load = load_ts, .call = js_call, .fold = js_fold,
    .call_ctx = js_call_ctx, .logs = js_logs, .unload = js_unload, .map = js_map,
    .fold_keyed = js_fold_keyed,
};

const struct logic_runtime logic_wasm_runtime = {
    .name = "wasm", .load = load_wasm, .call = js_call, .fold = js_fold,
    .call_ctx = js_call_ctx, .logs = js_logs, .unload = js_unload, .map = js_map,
    .fold_keyed = js_fold_keyed,
};

int js_pool_new(const struct logic_env_config *cfg, struct js_pool **out)
{
    if (!cfg || !cfg->js_worker_path) return ERR_INVALID;
    struct js_pool *pool = xcalloc(1, sizeof *pool);
    const char *esbuild = cfg->esbuild_path ? cfg->esbuild_path : "esbuild";
    pool->worker_path = xstrndup(cfg->js_worker_path, strlen(cfg->js_worker_path));
    pool->esbuild_path = xstrndup(esbuild, strlen(esbuild));
    pool->worker_mem_bytes = cfg->js_worker_mem_bytes ? cfg->js_worker_mem_bytes
                                                      : (size_t)LOGIC_DEFAULT_JS_WORKER_MEM;
    pthread_mutex_init(&pool->mu, NULL);
    *out = pool;
    return 0;
}

void js_pool_free(struct js_pool *pool)
{
    if (!pool) return;
    if (pool->modules) log_error("logic: %zu JavaScript modules still loaded", pool->modules);
    pthread_mutex_destroy(&pool->mu);
    free(pool->worker_path);
    free(pool->esbuild_path);
    free(pool);
}
