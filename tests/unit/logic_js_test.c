/* logic/js_rt.c with the real annals-jsworker (built beside this test, LOGIC_JS_TEST_WORKER,
 * or ANNALS_JSWORKER): results byte for byte, TypeScript, errors with positions, and one test
 * per attack, each a clean error after which the module still works. Prints (does not
 * assert) the cost of an event in a 10,000-event fold and of a call's round trip.
 *
 * runtime.c (logic_env) is not needed: a test-local env hands out a pool of its own. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "logic/js_rt.h"
#include "logic/jsworker/proto.h"
#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"

#ifndef LOGIC_JS_TEST_WORKER
#define LOGIC_JS_TEST_WORKER "build/annals-jsworker"
#endif

struct logic_env {
    struct js_pool *pool;
};

struct js_pool *logic_env_js_pool(struct logic_env *env)
{
    return env->pool;
}

static const char *worker_path(void)
{
    const char *p = getenv("ANNALS_JSWORKER");
    return p ? p : LOGIC_JS_TEST_WORKER;
}

static struct logic_env *env_new(void)
{
    struct logic_env_config cfg = {.js_worker_path = worker_path()};
    struct logic_env *env = calloc(1, sizeof *env);
    CHECK(env && js_pool_new(&cfg, &env->pool) == 0);
    return env;
}

static const struct logic_runtime *rt_of(struct logic_module *m)
{
    return ((struct logic_module_base *)m)->rt;
}

/* Loads source (JavaScript unless is_ts) with entries (NULL-terminated), cpu_ms (0: default);
 * returns the load's status, *m and err. */
static int load(struct logic_env *env, bool is_ts, const char *src, const char *const *entries,
                uint32_t cpu_ms, struct logic_module **m, struct logic_error *err)
{
    struct logic_limits lim = {.cpu_ms = cpu_ms};
    const struct logic_runtime *rt = is_ts ? &logic_ts_runtime : &logic_js_runtime;
    *m = NULL;
    return rt->load(env, "test", src, strlen(src), entries, &lim, m, err);
}

static struct logic_module *load_ok(struct logic_env *env, const char *src, uint32_t cpu_ms)
{
    struct logic_module *m;
    struct logic_error err;
    int rc = load(env, false, src, NULL, cpu_ms, &m, &err);
    if (rc != 0) fprintf(stderr, "  load: %s (%d:%d)\n", err.message, err.line, err.column);
    CHECK(rc == 0);
    return m;
}

/* Calls entry with up to 3 JSON arguments; returns the status, the result in out. */
static int call(struct logic_module *m, const char *entry, const char *a0, const char *a1,
                struct buf *out, struct logic_error *err)
{
    struct slice args[2] = {{a0, a0 ? strlen(a0) : 0}, {a1, a1 ? strlen(a1) : 0}};
    size_t nargs = a1 ? 2 : a0 ? 1 : 0;
    buf_reset(out);
    return rt_of(m)->call(m, entry, args, nargs, out, err);
}

/* Calls entry() and checks its result is expect. */
static void expect_call(struct logic_module *m, const char *entry, const char *expect)
{
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    int rc = call(m, entry, NULL, NULL, &out, &err);
    if (rc != 0) fprintf(stderr, "  %s: %s\n", entry, err.message);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(out.ptr ? out.ptr : "", expect);
    buf_fini(&out);
}

/* Calls entry() and checks it fails with kind; then checks ok() answers 1 (still usable). */
static void expect_fail(struct logic_module *m, const char *entry, enum logic_err_kind kind)
{
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    int rc = call(m, entry, NULL, NULL, &out, &err);
    if ((int)err.kind != (int)kind || rc >= 0)
        fprintf(stderr, "  %s: rc %d kind %d: %s\n", entry, rc, err.kind, err.message);
    CHECK(rc < 0);
    ASSERT_EQ(err.kind, kind);
    ASSERT_EQ(out.len, 0);
    buf_fini(&out);
    expect_call(m, "ok", "1");
}

static void done(struct logic_env *env, struct logic_module *m)
{
    if (m) rt_of(m)->unload(m);
    js_pool_free(env->pool);
    free(env);
}

/* A slice of a string literal. */
#define S(lit) ((struct slice){(lit), sizeof(lit) - 1})

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static const char reducer[] =
    "function reduce(state, event) {\n"
    "  state = state || {count: 0, total: 0, items: []};\n"
    "  state.count += 1;\n"
    "  state.total += event.data.amount;\n"
    "  state.items.push(event.id);\n"
    "  if (state.items.length > 5) state.items.shift();\n"
    "  console.log('event', event.id);\n"
    "  return state;\n"
    "}\n"
    "function view(state, event, params) {\n"
    "  return {n: (state ? state.n : 0) + event.data.amount * params.factor, q: 'a\\u00e9\\ud83d\\ude00'};\n"
    "}\n"
    "function ok() { return 1; }\n";

TEST(reducer_call_and_fold_byte_exact)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, reducer, 0);
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    ASSERT_EQ(call(m, "reduce", "null", "{\"id\":\"e1\",\"data\":{\"amount\":2.5}}", &out, &err), 0);
    ASSERT_STR(out.ptr, "{\"count\":1,\"total\":2.5,\"items\":[\"e1\"]}");
    struct slice events[3] = {S("{\"id\":\"a\",\"data\":{\"amount\":1}}"),
                              S("{\"id\":\"b\",\"data\":{\"amount\":2}}"),
                              S("{\"id\":\"c\",\"data\":{\"amount\":0.1}}")};
    buf_reset(&out);
    size_t failed_at = 99;
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), events, 3, NULL, &out,
                             &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "{\"count\":3,\"total\":3.1,\"items\":[\"a\",\"b\",\"c\"]}");
    struct slice params = S("{\"factor\":10}");
    buf_reset(&out);
    ASSERT_EQ(rt_of(m)->fold(m, "view", S("null"), events, 2, &params, &out,
                             NULL, &err), 0);
    ASSERT_STR(out.ptr, "{\"n\":30,\"q\":\"a\xc3\xa9\xf0\x9f\x98\x80\"}");
    char *lines[10];
    size_t n = rt_of(m)->logs(m, lines, 10);
    ASSERT_EQ(n, 4);
    ASSERT_STR(lines[0], "event e1");
    ASSERT_STR(lines[3], "event c");
    for (size_t i = 0; i < n; i++) free(lines[i]);
    buf_fini(&out);
    done(env, m);
}

TEST(fold_reports_the_failing_event)
{
    struct logic_env *env = env_new();
    struct logic_module *m =
        load_ok(env, "function reduce(s, e) { if (e.bad) throw new TypeError('bad event ' + e.i);"
                     " return (s || 0) + 1; }", 0);
    struct slice events[4] = {S("{\"i\":0}"), S("{\"i\":1}"), S("{\"i\":2,\"bad\":1}"),
                              S("{\"i\":3}")};
    struct buf out;
    struct logic_error err;
    size_t failed_at = 0;
    buf_init(&out);
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), events, 4, NULL, &out,
                             &failed_at, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_EQ(failed_at, 2);
    ASSERT_EQ(err.line, 1);
    ASSERT_STR(err.message, "TypeError: bad event 2");
    ASSERT_EQ(out.len, 0);
    struct slice bad = S("{\"i\":");
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), &bad, 1, NULL, &out,
                             &failed_at, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed_at, 0);
    ASSERT_EQ(rt_of(m)->fold(m, "nope", S("null"), events, 4, NULL, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    ASSERT_EQ(failed_at, 4); /* no event's failure */
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("{"), events, 4, NULL, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed_at, 4);
    buf_fini(&out);
    done(env, m);
}

TEST(fold_larger_than_a_frame)
{
    enum { EVENTS = 40000, EVENT_BYTES = 1000 }; /* 40 MB: three frames of 16 MiB */
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(
        env, "function reduce(s, e) { s = s || {n: 0, sum: 0}; s.n++; s.sum += e.v; return s }"
             "\nfunction ok() { return 1 }", 0);
    char *ev = malloc(EVENT_BYTES + 1);
    int head = snprintf(ev, EVENT_BYTES, "{\"v\":2,\"pad\":\"");
    memset(ev + head, 'x', EVENT_BYTES - head - 2);
    memcpy(ev + EVENT_BYTES - 2, "\"}", 3);
    struct slice *events = calloc(EVENTS, sizeof *events);
    for (size_t i = 0; i < EVENTS; i++) events[i] = (struct slice){ev, EVENT_BYTES};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    int rc = rt_of(m)->fold(m, "reduce", S("null"), events, EVENTS, NULL, &out, NULL, &err);
    if (rc) fprintf(stderr, "  fold: %s\n", err.message);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(out.ptr, "{\"n\":40000,\"sum\":80000}");
    events[30000] = S("{\"v\":");
    size_t failed_at = 0;
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), events, EVENTS, NULL, &out, &failed_at,
                             &err), ERR_INVALID);
    ASSERT_EQ(failed_at, 30000); /* counted across frames */
    expect_call(m, "ok", "1");
    buf_fini(&out);
    free(events);
    free(ev);
    done(env, m);
}

TEST(typescript_with_types)
{
    struct logic_env *env = env_new();
    static const char ts[] =
        "interface Ev { id: string; data: { amount: number } }\n"
        "type State = { count: number; total: number } | null;\n"
        "enum Kind { A = 'a' }\n"
        "export function reduce(state: State, event: Ev): State {\n"
        "  const s = state ?? { count: 0, total: 0 };\n"
        "  return { count: s.count + 1, total: s.total + event.data.amount };\n"
        "}\n"
        "export const kind = (): Kind => Kind.A;\n"
        "export function boom(n: number): number {\n"
        "  // a comment, then a type: neither is in the JavaScript\n"
        "  type Local = { x: number };\n"
        "  const v: Local = { x: n };\n"
        "  throw new RangeError('boom ' + v.x);\n"
        "}\n";
    const char *entries[] = {"reduce", "kind", NULL};
    struct logic_module *m;
    struct logic_error err;
    ASSERT_EQ(load(env, true, ts, entries, 0, &m, &err), 0);
    struct slice events[2] = {S("{\"id\":\"a\",\"data\":{\"amount\":1}}"),
                              S("{\"id\":\"b\",\"data\":{\"amount\":2}}")};
    struct buf out;
    buf_init(&out);
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), events, 2, NULL, &out,
                             NULL, &err), 0);
    ASSERT_STR(out.ptr, "{\"count\":2,\"total\":3}");
    buf_fini(&out);
    expect_call(m, "kind", "\"a\"");
    buf_init(&out);
    ASSERT_EQ(call(m, "boom", "7", NULL, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_STR(err.message, "RangeError: boom 7");
    ASSERT_EQ(err.line, 13); /* the TypeScript's line, through esbuild's source map */
    CHECK(err.column > 0);    /* the engine's runtime columns are approximate */
    buf_fini(&out);
    done(env, m);
}

TEST(syntax_errors_have_line_and_column)
{
    struct logic_env *env = env_new();
    struct logic_module *m;
    struct logic_error err;
    ASSERT_EQ(load(env, false, "function f() {\n  let x = ;\n}\n", NULL, 0, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    ASSERT_EQ(err.line, 2);
    ASSERT_EQ(err.column, 11);
    ASSERT_EQ(load(env, false, "export function f() {}\nexport const = 1;\n", NULL, 0, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    ASSERT_EQ(err.line, 2);
    ASSERT_EQ(err.column, 14);
    ASSERT_EQ(load(env, true, "type T = number;\nfunction f(x: T) {\n  let y = x x;\n}\n", NULL,
                   0, &m, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    ASSERT_EQ(err.line, 3);
    ASSERT_EQ(err.column, 13);
    CHECK(strstr(err.message, "Expected \";\""));
    done(env, NULL);
}

TEST(missing_entries)
{
    struct logic_env *env = env_new();
    struct logic_module *m;
    struct logic_error err;
    const char *entries[] = {"key", "apply", NULL};
    ASSERT_EQ(load(env, false, "function key(e) { return e.id } var apply = 3;", entries, 0, &m,
                   &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    ASSERT_STR(err.message, "missing entry point: apply");
    m = load_ok(env, "function ok() { return 1 }", 0);
    expect_fail(m, "nope", LOGIC_E_MISSING);
    done(env, m);
}

TEST(es_module_exports_and_forbidden_imports)
{
    struct logic_env *env = env_new();
    struct logic_module *m;
    struct logic_error err;
    ASSERT_EQ(load(env, false, "import fs from 'fs';\nexport function ok() { return 1 }", NULL, 0,
                   &m, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_FORBIDDEN);
    m = load_ok(env, "const k = 41;\nexport function ok() { return 1 }\n"
                     "export async function later() { await null; return k + 1 }\n"
                     "function hidden() { return 0 }", 0);
    expect_call(m, "later", "42");
    expect_fail(m, "hidden", LOGIC_E_MISSING);
    rt_of(m)->unload(m);
    ASSERT_EQ(load(env, false, "await null;\nexport function ok() { return 1 }\n"
                               "await Promise.reject(new RangeError('top level'));", NULL, 0, &m,
                   &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_STR(err.message, "RangeError: top level");
    ASSERT_EQ(err.line, 3);
    m = load_ok(env, "const base = await Promise.resolve(1);\n"
                     "export function ok() { return base }", 0);
    expect_call(m, "ok", "1");
    done(env, m);
}

static const char attacks[] =
    "function ok() { return 1 }\n"
    "function spin() { while (true) {} }\n"
    "function spin_caught() { for (;;) { try { while (true) {} } catch (e) {} finally { continue } } }\n"
    "function recurse(n) { return recurse((n || 0) + 1) + 1 }\n"
    "function grow_array() { const a = []; for (;;) a.push(a.length) }\n"
    "function double_string() { let s = 'x'; for (;;) { s = s + s; s.charCodeAt(s.length - 1) } }\n"
    "function buffers() { const k = []; for (let i = 0; i < 100; i++) k.push(new ArrayBuffer(64 << 20)); return k.length }\n"
    "function huge_output() { return 'x'.repeat(2 << 20) }\n"
    "function deep_output() { let o = {}; for (let i = 0; i < 100; i++) o = {o}; return o }\n"
    "function cyclic_output() { const o = {}; o.o = o; return o }\n"
    "function use_eval() { return eval('1 + 1') }\n"
    "function use_function() { return new Function('return 1')() }\n"
    "function use_require() { return require('fs') }\n"
    "function use_import() { return import('fs') }\n"
    "function use_fetch() { return fetch('http://127.0.0.1/') }\n"
    "function use_process() { return process.env }\n"
    "function use_xhr() { return new XMLHttpRequest() }\n"
    "function absent() { return [typeof require, typeof fetch, typeof process, typeof XMLHttpRequest,\n"
    "  typeof setTimeout, typeof WebAssembly, typeof WeakRef, typeof FinalizationRegistry] }\n";

static struct logic_module *attack_module(struct logic_env *env)
{
    return load_ok(env, attacks, 300);
}

TEST(attack_infinite_loop)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    double t0 = now_us();
    expect_fail(m, "spin", LOGIC_E_CPU);
    CHECK(now_us() - t0 < 3e6);
    done(env, m);
}

TEST(attack_loop_inside_try_catch_finally)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "spin_caught", LOGIC_E_CPU);
    done(env, m);
}

TEST(attack_deep_recursion)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "recurse", LOGIC_E_RUNTIME);
    done(env, m);
}

TEST(attack_memory_array_growth)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "grow_array", LOGIC_E_MEMORY);
    done(env, m);
}

TEST(attack_memory_string_doubling)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "double_string", LOGIC_E_MEMORY);
    done(env, m);
}

TEST(attack_memory_array_buffers)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "buffers", LOGIC_E_MEMORY);
    done(env, m);
}

TEST(attack_huge_deep_and_cyclic_output)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_fail(m, "huge_output", LOGIC_E_OUTPUT);
    expect_fail(m, "deep_output", LOGIC_E_OUTPUT);
    expect_fail(m, "cyclic_output", LOGIC_E_OUTPUT);
    done(env, m);
}

TEST(attack_host_objects_and_eval_absent)
{
    struct logic_env *env = env_new();
    struct logic_module *m = attack_module(env);
    expect_call(m, "absent", "[\"undefined\",\"undefined\",\"undefined\",\"undefined\","
                             "\"undefined\",\"undefined\",\"undefined\",\"undefined\"]");
    const char *names[] = {"use_eval", "use_function", "use_require", "use_import",
                           "use_fetch", "use_process", "use_xhr"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        expect_fail(m, names[i], LOGIC_E_FORBIDDEN);
    done(env, m);
}

TEST(prototype_pollution_does_not_cross_modules)
{
    struct logic_env *env = env_new();
    struct logic_module *a = load_ok(
        env, "Object.prototype.polluted = 'yes'; Array.prototype.push = function () { return -1 };"
             "JSON.stringify = function () { return '\"hijacked\"' };"
             "function ok() { return [({}).polluted, [].push(1)] }", 0);
    struct logic_module *b = load_ok(
        env, "function ok() { const a = []; a.push(1); return [({}).polluted === undefined, a] }", 0);
    expect_call(a, "ok", "[\"yes\",-1]");
    expect_call(b, "ok", "[true,[1]]");
    rt_of(a)->unload(a);
    done(env, b);
}

TEST(deterministic_clock_and_random)
{
    struct logic_env *env = env_new();
    static const char src[] =
        "function ok() { return [Date.now(), new Date().toISOString(), Date(), Math.random(),"
        "  Math.random(), new Date(86400000).getHours()] }";
    struct logic_module *a = load_ok(env, src, 0);
    struct logic_module *b = load_ok(env, src, 0);
    struct buf x, y;
    struct logic_error err;
    buf_init(&x);
    buf_init(&y);
    ASSERT_EQ(call(a, "ok", NULL, NULL, &x, &err), 0);
    ASSERT_EQ(call(b, "ok", NULL, NULL, &y, &err), 0);
    ASSERT_STR(x.ptr, y.ptr);
    static const char start[] = "[0,\"1970-01-01T00:00:00.000Z\",\"Thu Jan 01 1970 00:00:00 GMT";
    CHECK(!strncmp(x.ptr, start, sizeof start - 1));
    ASSERT_EQ(call(a, "ok", NULL, NULL, &y, &err), 0); /* the sequence restarts per call */
    ASSERT_STR(x.ptr, y.ptr);
    CHECK(strstr(x.ptr, ",0]"));
    buf_fini(&x);
    buf_fini(&y);
    rt_of(a)->unload(a);
    done(env, b);
}

/* Kills every child process of this test after delay_ms (the module's worker). */
static void *kill_children(void *arg)
{
    usleep((useconds_t)(intptr_t)arg * 1000);
    char path[300], pids[4096];
    DIR *d = opendir("/proc/self/task");
    struct dirent *t;
    while (d && (t = readdir(d))) {
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(pids, 1, sizeof pids - 1, f) : 0;
        if (f) fclose(f);
        pids[n] = 0;
        for (char *p = strtok(pids, " "); p; p = strtok(NULL, " ")) kill(atoi(p), SIGKILL);
    }
    if (d) closedir(d);
    return NULL;
}

TEST(worker_killed_mid_call_and_while_idle)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, "var calls = 0; function ok() { return 1 }\n"
                                          "function spin() { while (true) {} }\n"
                                          "function count() { return ++calls }", 5000);
    pthread_t killer;
    pthread_create(&killer, NULL, kill_children, (void *)(intptr_t)300);
    double t0 = now_us();
    expect_fail(m, "spin", LOGIC_E_WORKER); /* the next call restarts the worker */
    CHECK(now_us() - t0 < 3e6);
    pthread_join(killer, NULL);
    expect_call(m, "count", "1"); /* reloaded from the kept source: fresh state */
    kill_children((void *)(intptr_t)0);
    usleep(100 * 1000);
    expect_call(m, "count", "1"); /* killed while idle: restarted before the call */
    expect_call(m, "count", "2");
    done(env, m);
}

struct parallel_arg {
    struct logic_env *env;
    int index;
    bool is_ok;
};

/* One thread's module: loaded, called 100 times and folded while other threads do the same. */
static void *parallel_module(void *arg)
{
    struct parallel_arg *a = arg;
    char src[128], want[32];
    snprintf(src, sizeof src, "function who() { return %d }\n"
                              "function add(s, e) { return (s || 0) + e + %d }", a->index, a->index);
    struct logic_module *m;
    struct logic_error err;
    struct buf out;
    buf_init(&out);
    a->is_ok = load(a->env, a->index % 2, src, NULL, 0, &m, &err) == 0;
    snprintf(want, sizeof want, "%d", a->index);
    for (int i = 0; a->is_ok && i < 100; i++)
        a->is_ok = call(m, "who", NULL, NULL, &out, &err) == 0 && !strcmp(out.ptr, want);
    struct slice ev[3] = {S("1"), S("2"), S("3")};
    buf_reset(&out);
    a->is_ok = a->is_ok && rt_of(m)->fold(m, "add", S("0"), ev, 3, NULL, &out, NULL, &err) == 0;
    snprintf(want, sizeof want, "%d", 6 + 3 * a->index);
    a->is_ok = a->is_ok && !strcmp(out.ptr, want);
    if (m) rt_of(m)->unload(m);
    buf_fini(&out);
    return NULL;
}

TEST(modules_in_parallel_threads)
{
    enum { THREADS = 4 };
    struct logic_env *env = env_new();
    pthread_t t[THREADS];
    struct parallel_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct parallel_arg){env, i + 1, false};
        pthread_create(&t[i], NULL, parallel_module, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK(args[i].is_ok);
    }
    done(env, NULL);
}

/* Runs the worker with --probe name; returns its wait status. */
static int probe(const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(worker_path(), worker_path(), "--mem-bytes", "67108864", "--probe", name,
              (char *)NULL);
        _exit(100);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

TEST(sandbox_kills_open_socket_execve_fork_and_kill)
{
    const char *fatal[] = {"open", "socket", "execve", "fork", "kill"};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        int status = probe(fatal[i]);
        if (!WIFSIGNALED(status)) fprintf(stderr, "  probe %s: status %d\n", fatal[i], status);
        CHECK(WIFSIGNALED(status));
        ASSERT_EQ(WTERMSIG(status), SIGSYS);
    }
    int status = probe("write"); /* stdout is not the socket: EPERM, the worker lives */
    CHECK(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST(bad_arguments_are_invalid)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, "function ok(x) { return 1 }", 0);
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    ASSERT_EQ(call(m, "ok", "{nope", NULL, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    char deep[201];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = 0;
    ASSERT_EQ(call(m, "ok", deep, NULL, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    expect_call(m, "ok", "1");
    buf_fini(&out);
    done(env, m);
}

TEST(figures_fold_and_round_trip)
{
    enum { EVENTS = 10000, CALLS = 2000, LOADS = 5 };
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, reducer, 0);
    static const char ev[] = "{\"id\":\"00000000-0000-4000-8000-000000000000\",\"type\":"
                             "\"OrderPlaced\",\"stream\":\"order-1\",\"data\":{\"amount\":12.5,"
                             "\"currency\":\"EUR\",\"customer\":\"c-42\",\"lines\":3,"
                             "\"note\":\"deliver after 5pm\"},\"position\":1234}";
    struct slice *events = calloc(EVENTS, sizeof *events);
    for (size_t i = 0; i < EVENTS; i++) events[i] = (struct slice){ev, sizeof ev - 1};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    static const char quiet[] =
        "function reduce(state, event) {\n"
        "  state = state || {count: 0, total: 0, status: 'new', lastId: null, items: []};\n"
        "  state.count++; state.total += event.data.amount; state.lastId = event.id;\n"
        "  state.items.push(event.data.lines); if (state.items.length > 5) state.items.shift();\n"
        "  return state;\n}\n";
    rt_of(m)->unload(m);
    double t0 = now_us();
    for (int i = 0; i < LOADS; i++) {
        m = load_ok(env, quiet, 0);
        if (i + 1 < LOADS) rt_of(m)->unload(m);
    }
    double load_ms = (now_us() - t0) / LOADS / 1000;
    t0 = now_us();
    ASSERT_EQ(rt_of(m)->fold(m, "reduce", S("null"), events, EVENTS, NULL, &out,
                             NULL, &err), 0);
    double fold_us = (now_us() - t0) / EVENTS;
    CHECK(strstr(out.ptr, "\"count\":10000"));
    t0 = now_us();
    for (int i = 0; i < CALLS; i++)
        ASSERT_EQ(call(m, "reduce", "null", ev, &out, &err), 0);
    double call_us = (now_us() - t0) / CALLS;
    printf("  figure: %.2f us per event in a %d-event fold, %.1f us per call round trip, "
           "%.1f ms per load (worker start included)\n", fold_us, EVENTS, call_us, load_ms);
    buf_fini(&out);
    free(events);
    done(env, m);
}

/* ---- batches: map and fold_keyed (projections' key and apply) ---------------------------- */

static const char projection[] =
    "function key(e) { return e.skip ? null : e.k }\n"
    "function apply(s, e) {\n"
    "  if (e.boom) throw new TypeError('bad event ' + e.id);\n"
    "  while (e.spin) {}\n"
    "  for (let i = 0; i < (e.work || 0); i++) {}\n"
    "  s = s || {n: 0, total: 0, ids: []};\n"
    "  s.n++; s.total += e.amount; s.ids.push(e.id);\n"
    "  if (s.ids.length > 3) s.ids.shift();\n"
    "  return s;\n"
    "}\n"
    "function nothing(e) {}\n"
    "function keep(s, e) { return s }\n"
    "function deep(e) { let o = {}; for (let i = 1; i < e.d; i++) o = {o}; return o }\n"
    "function big(e) { return 'x'.repeat(e.size) }\n"
    "function count(s, e) { return (s || 0) + e.v }\n"
    "function ok() { return 1 }\n";

/* Keys repeated and interleaved, two-byte characters, an empty key, keys that name members of
 * Object.prototype (only the states' own members count), floats. */
static const struct slice proj_events[] = {
    S("{\"id\":1,\"k\":\"a\",\"amount\":1.5}"),  S("{\"id\":2,\"k\":\"b\",\"amount\":2}"),
    S("{\"id\":3,\"k\":\"a\",\"amount\":0.25}"),
    S("{\"id\":4,\"k\":\"\xc3\xa9t\xc3\xa9\",\"amount\":7}"),
    S("{\"id\":5,\"k\":\"b\",\"amount\":-1}"),   S("{\"id\":6,\"k\":\"\",\"amount\":3}"),
    S("{\"id\":7,\"skip\":true,\"amount\":0}"),  S("{\"id\":8,\"k\":\"a\",\"amount\":1e2}"),
    S("{\"id\":9,\"k\":\"toString\",\"amount\":2}"),
    S("{\"id\":10,\"k\":\"__proto__\",\"amount\":0.1}"),
    S("{\"id\":11,\"k\":\"b\",\"amount\":0.1}"),
};
static const struct slice proj_keys[] = {
    S("a"), S("b"), S("a"), S("\xc3\xa9t\xc3\xa9"), S("b"), S(""), S("x"), S("a"), S("toString"),
    S("__proto__"), S("b")};
enum { PROJ_N = sizeof proj_events / sizeof proj_events[0] };
static const char proj_states[] =
    "{\"b\":{\"n\":5,\"total\":10.5,\"ids\":[\"x\",\"y\"]},\"x\":null,"
    "\"__proto__\":{\"n\":1,\"total\":1,\"ids\":[]}}";

/* The starting state of key in proj_states. */
static const char *proj_start(struct slice key)
{
    if (key.len == 1 && key.ptr[0] == 'b') return "{\"n\":5,\"total\":10.5,\"ids\":[\"x\",\"y\"]}";
    if (key.len == 9 && !memcmp(key.ptr, "__proto__", 9)) return "{\"n\":1,\"total\":1,\"ids\":[]}";
    return "null";
}

/* What the batches must give: per-event calls, the states crossing as JSON each time. */
static void expected_by_calls(struct logic_module *m, struct buf *keys_out, struct buf *states_out)
{
    struct buf state[PROJ_N], out;
    struct logic_error err;
    buf_init(&out);
    buf_adds(keys_out, "[");
    buf_adds(states_out, "[");
    for (int i = 0; i < PROJ_N; i++) {
        const char *prev = proj_start(proj_keys[i]);
        for (int j = i - 1; j >= 0; j--) {
            if (proj_keys[j].len == proj_keys[i].len &&
                !memcmp(proj_keys[j].ptr, proj_keys[i].ptr, proj_keys[i].len)) {
                prev = state[j].ptr;
                break;
            }
        }
        ASSERT_EQ(rt_of(m)->call(m, "key", &proj_events[i], 1, &out, &err), 0);
        buf_adds(keys_out, i ? "," : "");
        buf_add(keys_out, out.ptr, out.len);
        buf_reset(&out);
        struct slice args[2] = {{prev, strlen(prev)}, proj_events[i]};
        buf_init(&state[i]);
        ASSERT_EQ(rt_of(m)->call(m, "apply", args, 2, &state[i], &err), 0);
        buf_adds(states_out, i ? "," : "");
        buf_add(states_out, state[i].ptr, state[i].len);
    }
    buf_adds(keys_out, "]");
    buf_adds(states_out, "]");
    for (int i = 0; i < PROJ_N; i++) buf_fini(&state[i]);
    buf_fini(&out);
}

TEST(batches_equal_the_per_event_calls_byte_for_byte)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 0);
    const struct logic_runtime *rt = rt_of(m);
    struct buf want_keys, want_states, out;
    struct logic_error err;
    size_t failed_at = 99;
    buf_init(&want_keys);
    buf_init(&want_states);
    buf_init(&out);
    expected_by_calls(m, &want_keys, &want_states);
    ASSERT_STR(want_keys.ptr, "[\"a\",\"b\",\"a\",\"\xc3\xa9t\xc3\xa9\",\"b\",\"\",null,\"a\","
                              "\"toString\",\"__proto__\",\"b\"]");
    CHECK(strstr(want_states.ptr, "{\"n\":6,\"total\":12.5,\"ids\":[\"x\",\"y\",2]}"));
    CHECK(strstr(want_states.ptr, "{\"n\":1,\"total\":2,\"ids\":[9]}"));       /* toString */
    CHECK(strstr(want_states.ptr, "{\"n\":2,\"total\":1.1,\"ids\":[10]}"));    /* __proto__ */
    printf("    %s\n", want_states.ptr);
    buf_adds(&out, "prefix:");
    ASSERT_EQ(rt->map(m, "key", proj_events, PROJ_N, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr + 7, want_keys.ptr);
    buf_reset(&out);
    buf_adds(&out, "prefix:");
    ASSERT_EQ(rt->fold_keyed(m, "apply", S(proj_states), proj_keys, proj_events, PROJ_N, &out,
                             &failed_at, &err), 0);
    ASSERT_STR(out.ptr + 7, want_states.ptr);
    buf_reset(&out);
    ASSERT_EQ(rt->map(m, "nothing", proj_events, 2, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "[null,null]");
    buf_reset(&out);
    ASSERT_EQ(rt->map(m, "key", proj_events, 0, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "[]");
    buf_reset(&out);
    ASSERT_EQ(rt->fold_keyed(m, "apply", S(" {} "), proj_keys, proj_events, 0, &out, &failed_at,
                             &err), 0);
    ASSERT_STR(out.ptr, "[]");
    buf_fini(&want_keys);
    buf_fini(&want_states);
    buf_fini(&out);
    done(env, m);
}

/* Runs a batch expected to fail with kind at want_failed_at; out must stay "kept". */
static void batch_fails(struct logic_module *m, bool is_keyed, const char *entry,
                        struct slice states, const struct slice *keys, const struct slice *ev,
                        size_t n, enum logic_err_kind kind, size_t want_failed_at)
{
    struct buf out;
    struct logic_error err;
    size_t failed_at = 12345;
    buf_init(&out);
    buf_adds(&out, "kept");
    int rc = is_keyed ? rt_of(m)->fold_keyed(m, entry, states, keys, ev, n, &out, &failed_at, &err)
                      : rt_of(m)->map(m, entry, ev, n, &out, &failed_at, &err);
    printf("    %s -> %d at %zu: %s\n", entry, err.kind, failed_at, err.message);
    CHECK(rc < 0);
    ASSERT_EQ(err.kind, kind);
    ASSERT_EQ(failed_at, want_failed_at);
    ASSERT_STR(out.ptr, "kept");
    buf_fini(&out);
}

TEST(batch_failure_names_the_event_and_leaves_out_unchanged)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 0);
    struct slice ev[PROJ_N], keys[PROJ_N];
    memcpy(ev, proj_events, sizeof ev);
    memcpy(keys, proj_keys, sizeof keys);
    struct slice states = S(proj_states);
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":1,\"boom\":true}");
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_RUNTIME, 4);
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":1,\"boom\"");
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_INVALID, 4);
    batch_fails(m, false, "key", states, keys, ev, PROJ_N, LOGIC_E_INVALID, 4);
    ev[4] = proj_events[4];
    keys[6] = S("\xff\xfe"); /* not UTF-8 */
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_INVALID, 6);
    batch_fails(m, true, "nope", states, keys, ev, PROJ_N, LOGIC_E_MISSING, PROJ_N);
    batch_fails(m, false, "nope", states, keys, ev, PROJ_N, LOGIC_E_MISSING, PROJ_N);
    batch_fails(m, true, "apply", S("[]"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    batch_fails(m, true, "apply", S("null"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    batch_fails(m, true, "apply", S("{\"a\":"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    expect_call(m, "ok", "1");
    done(env, m);
}

TEST(batch_states_as_deep_as_arguments)
{
    enum { D = LOGIC_MAX_JSON_DEPTH };
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 0);
    char deep[2 * D + 1], states[2 * D + 32], want[2 * D + 8];
    memset(deep, '[', D);
    memset(deep + D, ']', D);
    deep[2 * D] = '\0';
    snprintf(states, sizeof states, "{\"a\":%s}", deep);
    snprintf(want, sizeof want, "[%s]", deep);
    struct slice ev = S("{}"), key = S("a");
    struct buf out;
    struct logic_error err;
    size_t failed_at;
    buf_init(&out);
    ASSERT_EQ(rt_of(m)->fold_keyed(m, "keep", (struct slice){states, strlen(states)}, &key, &ev,
                                   1, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, want);
    snprintf(states, sizeof states, "{\"a\":[%s]}", deep);
    batch_fails(m, true, "keep", (struct slice){states, strlen(states)}, &key, &ev, 1,
                LOGIC_E_INVALID, 1);
    struct slice evs[3] = {S("{\"d\":64}"), S("{\"d\":1}"), S("{\"d\":65}")};
    buf_reset(&out);
    ASSERT_EQ(rt_of(m)->map(m, "deep", evs, 2, &out, &failed_at, &err), 0); /* 64 deep */
    batch_fails(m, false, "deep", S("{}"), NULL, evs, 3, LOGIC_E_OUTPUT, 2);
    buf_fini(&out);
    done(env, m);
}

TEST(batch_cpu_budget_covers_the_whole_batch)
{
    enum { N = 1000 };
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 300);
    struct slice *ev = calloc(N, sizeof *ev), *keys = calloc(N, sizeof *keys);
    for (int i = 0; i < N; i++) {
        ev[i] = S("{\"id\":1,\"k\":\"a\",\"amount\":1}");
        keys[i] = i % 2 ? S("a") : S("b");
    }
    ev[500] = S("{\"id\":1,\"k\":\"a\",\"amount\":1,\"spin\":true}");
    double t0 = now_us();
    batch_fails(m, true, "apply", S("{}"), keys, ev, N, LOGIC_E_CPU, 500);
    printf("    loop in event 500 of %d stopped after %.0f ms (budget 300)\n", N,
           (now_us() - t0) / 1e3);
    CHECK(now_us() - t0 < 3e6);
    /* events of about a millisecond each: none exceeds the budget, the batch does */
    for (int i = 0; i < N; i++) ev[i] = S("{\"id\":1,\"k\":\"a\",\"amount\":1,\"work\":1000000}");
    struct buf out;
    struct logic_error err;
    size_t failed_at = 0;
    buf_init(&out);
    t0 = now_us();
    CHECK(rt_of(m)->fold_keyed(m, "apply", S("{}"), keys, ev, N, &out, &failed_at, &err) < 0);
    printf("    %d events of ~%.2f ms: kind %d at event %zu after %.0f ms\n", N,
           (now_us() - t0) / 1e3 / (double)(failed_at + 1), err.kind, failed_at,
           (now_us() - t0) / 1e3);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    CHECK(failed_at > 0 && failed_at < N);
    ASSERT_EQ(out.len, 0);
    expect_call(m, "ok", "1");
    buf_fini(&out);
    free(ev);
    free(keys);
    done(env, m);
}

TEST(batch_output_budget_covers_the_whole_array)
{
    struct logic_env *env = env_new();
    struct logic_module *m;
    struct logic_error err;
    struct logic_limits lim = {.output_bytes = 1000};
    ASSERT_EQ(logic_js_runtime.load(env, "test", projection, strlen(projection), NULL, &lim, &m,
                                    &err), 0);
    struct slice ev[20], keys[20];
    for (int i = 0; i < 20; i++) {
        ev[i] = S("{\"size\":100}"); /* 102 bytes of JSON each, a comma between */
        keys[i] = S("k");
    }
    struct buf out;
    size_t failed_at;
    buf_init(&out);
    ASSERT_EQ(rt_of(m)->map(m, "big", ev, 9, &out, &failed_at, &err), 0);
    ASSERT_EQ(out.len, 928); /* 1 + 9 * 103; a tenth result would make it 1031 */
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 9);
    ev[3] = S("{\"size\":5000}"); /* one result alone over the budget */
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 3);
    rt_of(m)->unload(m);
    m = load_ok(env, projection, 0); /* a huge result with the default budget */
    ev[1] = S("{\"size\":2000000}");
    batch_fails(m, false, "big", S("{}"), keys, ev, 3, LOGIC_E_OUTPUT, 1);
    expect_call(m, "ok", "1");
    buf_fini(&out);
    done(env, m);
}

TEST(batches_larger_than_a_frame)
{
    enum { EVENTS = 40000, EVENT_BYTES = 1000, KEYS = 7 }; /* 40 MB: three frames */
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 0), *small;
    struct logic_error err;
    struct logic_limits lim = {.output_bytes = 5 * 25000 + 1}; /* 25,000 keys "k3" of map */
    ASSERT_EQ(logic_js_runtime.load(env, "small", projection, strlen(projection), NULL, &lim,
                                    &small, &err), 0);
    char (*ev)[EVENT_BYTES + 1] = calloc(KEYS, sizeof *ev);
    static const char *const names[KEYS] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6"};
    for (int k = 0; k < KEYS; k++) {
        int head = snprintf(ev[k], EVENT_BYTES, "{\"v\":%d,\"k\":\"%s\",\"pad\":\"", k + 1,
                            names[k]);
        memset(ev[k] + head, 'x', EVENT_BYTES - head - 2);
        memcpy(ev[k] + EVENT_BYTES - 2, "\"}", 3);
    }
    struct slice *events = calloc(EVENTS, sizeof *events), *keys = calloc(EVENTS, sizeof *keys);
    for (size_t i = 0; i < EVENTS; i++) {
        events[i] = (struct slice){ev[i % KEYS], EVENT_BYTES};
        keys[i] = (struct slice){names[i % KEYS], 2};
    }
    struct buf out;
    size_t failed_at = 0;
    buf_init(&out);
    double t0 = now_us();
    int rc = rt_of(m)->fold_keyed(m, "count", S("{\"k6\":1000000}"), keys, events, EVENTS, &out,
                                  &failed_at, &err);
    if (rc) fprintf(stderr, "  fold_keyed: %s\n", err.message);
    ASSERT_EQ(rc, 0);
    printf("    fold_keyed of %d events of %d bytes: %.0f ms\n", EVENTS, EVENT_BYTES,
           (now_us() - t0) / 1e3);
    /* the states went on across frames: event 39997 is k6's 5714th (v 7, from 1000000), 39998
     * k0's 5715th (v 1), 39999 k1's 5715th (v 2) */
    static const char tail[] = ",1039998,5715,11430]";
    ASSERT_EQ(out.len, 228513);
    ASSERT_STR(out.ptr + out.len - strlen(tail), tail);
    buf_reset(&out);
    ASSERT_EQ(rt_of(small)->map(small, "key", events, 24000, &out, &failed_at, &err), 0);
    ASSERT_EQ(out.len, 5 * 24000 + 1);
    /* the output budget counted across frames: result 25000 is the first that does not fit */
    batch_fails(small, false, "key", S("{}"), keys, events, EVENTS, LOGIC_E_OUTPUT, 25000);
    rt_of(small)->unload(small);
    events[30000] = S("{\"v\":");
    batch_fails(m, false, "key", S("{}"), keys, events, EVENTS, LOGIC_E_INVALID, 30000);
    batch_fails(m, true, "count", S("{}"), keys, events, EVENTS, LOGIC_E_INVALID, 30000);
    expect_call(m, "ok", "1");
    buf_fini(&out);
    free(events);
    free(keys);
    free(ev);
    done(env, m);
}

TEST(figures_batches_against_per_event_calls)
{
    enum { N = 10000, KEYS = 100 };
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, projection, 0);
    const struct logic_runtime *rt = rt_of(m);
    char (*texts)[128] = calloc(N, sizeof *texts);
    char (*names)[16] = calloc(KEYS, sizeof *names);
    struct slice *ev = calloc(N, sizeof *ev), *keys = calloc(N, sizeof *keys);
    for (int i = 0; i < KEYS; i++) snprintf(names[i], sizeof names[i], "order-%d", i);
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "{\"id\":%d,\"k\":\"%s\",\"amount\":%d.25}", i,
                 names[(i * 7) % KEYS], i % 50);
        ev[i] = (struct slice){texts[i], strlen(texts[i])};
        keys[i] = (struct slice){names[(i * 7) % KEYS], strlen(names[(i * 7) % KEYS])};
    }
    struct buf mapped, folded, by_calls, out;
    struct logic_error err;
    size_t failed_at;
    buf_init(&mapped);
    buf_init(&folded);
    buf_init(&by_calls);
    buf_init(&out);
    double t0 = now_us();
    ASSERT_EQ(rt->map(m, "key", ev, N, &mapped, &failed_at, &err), 0);
    ASSERT_EQ(rt->fold_keyed(m, "apply", S("{}"), keys, ev, N, &folded, &failed_at, &err), 0);
    double batch_us = now_us() - t0;
    struct buf *state = calloc(KEYS, sizeof *state);
    t0 = now_us();
    buf_addc(&by_calls, '[');
    for (int i = 0; i < N; i++) {
        buf_reset(&out);
        ASSERT_EQ(rt->call(m, "key", &ev[i], 1, &out, &err), 0);
        struct buf *s = &state[(i * 7) % KEYS];
        struct slice args[2] = {{s->len ? s->ptr : "null", s->len ? s->len : 4}, ev[i]};
        buf_reset(&out);
        ASSERT_EQ(rt->call(m, "apply", args, 2, &out, &err), 0);
        buf_reset(s);
        buf_add(s, out.ptr, out.len);
        buf_adds(&by_calls, i ? "," : "");
        buf_add(&by_calls, out.ptr, out.len);
    }
    buf_addc(&by_calls, ']');
    double calls_us = now_us() - t0;
    ASSERT_STR(folded.ptr, by_calls.ptr); /* the same 10,000 states, byte for byte */
    printf("  figure: JavaScript key+apply over %d events of %d keys: %.0f events/s batched "
           "(map + fold_keyed), %.0f events/s per-event calls\n",
           N, KEYS, N / batch_us * 1e6, N / calls_us * 1e6);
    for (int i = 0; i < KEYS; i++) buf_fini(&state[i]);
    free(state);
    buf_fini(&mapped);
    buf_fini(&folded);
    buf_fini(&by_calls);
    buf_fini(&out);
    free(texts);
    free(names);
    free(ev);
    free(keys);
    done(env, m);
}

/* ---- WebAssembly components ----------------------------------------------------------------
 * The modules are the .wat files of tests/wasm/, converted to binary by wat2wasm at build time
 * (LOGIC_JS_TEST_WASM is where). */

#ifndef LOGIC_JS_TEST_WASM
#define LOGIC_JS_TEST_WASM "build/tests/wasm"
#endif

/* Appends the standard base64 of p[0..n) to out. */
static void base64_encode(const unsigned char *p, size_t n, struct buf *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {abc[v >> 18], abc[(v >> 12) & 63], i + 1 < n ? abc[(v >> 6) & 63] : '=',
                     i + 2 < n ? abc[v & 63] : '='};
        buf_add(out, q, 4);
    }
}

/* The base64 source of tests/wasm/<name>.wat (out reset first). */
static void wasm_source(const char *name, struct buf *out)
{
    char path[512];
    unsigned char bytes[65536];
    snprintf(path, sizeof path, "%s/%s.wasm", LOGIC_JS_TEST_WASM, name);
    FILE *f = fopen(path, "rb");
    if (!f) fprintf(stderr, "  %s: not found (make builds it with wat2wasm)\n", path);
    CHECK(f);
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    buf_reset(out);
    base64_encode(bytes, n, out);
}

/* Loads the base64 text src as a WebAssembly component with entries and budgets. */
static int load_wasm_src(struct logic_env *env, const char *src, size_t len,
                         const char *const *entries, uint32_t cpu_ms, size_t mem_bytes,
                         struct logic_module **m, struct logic_error *err)
{
    struct logic_limits lim = {.cpu_ms = cpu_ms, .mem_bytes = mem_bytes};
    *m = NULL;
    return logic_wasm_runtime.load(env, "wasm-test", src, len, entries, &lim, m, err);
}

static struct logic_module *load_wasm_ok(struct logic_env *env, const char *name,
                                         const char *const *entries, uint32_t cpu_ms,
                                         size_t mem_bytes)
{
    struct buf src;
    struct logic_module *m;
    struct logic_error err;
    buf_init(&src);
    wasm_source(name, &src);
    int rc = load_wasm_src(env, src.ptr, src.len, entries, cpu_ms, mem_bytes, &m, &err);
    if (rc != 0) fprintf(stderr, "  load %s: %s\n", name, err.message);
    CHECK(rc == 0);
    buf_fini(&src);
    return m;
}

TEST(wasm_reducer_call_byte_exact)
{
    static const char *const entries[] = {"reduce", "key", NULL};
    struct logic_env *env = env_new();
    struct logic_module *m = load_wasm_ok(env, "counter", entries, 0, 0);
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    int rc = call(m, "reduce", "null", "{\"id\":\"e1\",\"data\":{\"amount\":2.5}}", &out, &err);
    if (rc) fprintf(stderr, "  reduce: %s\n", err.message);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(out.ptr, "{\"n\":1,\"bytes\":33}");
    ASSERT_EQ(call(m, "reduce", "{\"n\":1,\"bytes\":33}", "{\"id\":\"e2\"}", &out, &err), 0);
    ASSERT_STR(out.ptr, "{\"n\":2,\"bytes\":44}");
    buf_fini(&out);
    done(env, m);
}


static const struct slice wasm_events[3] = {
    {"{\"id\":\"a\"}", 10}, {"{\"id\":\"bb\"}", 11}, {"{\"id\":\"ccc\"}", 12}};

TEST(wasm_reducer_fold_map_and_keyed_fold_byte_exact)
{
    static const char *const entries[] = {"reduce", "key", NULL};
    struct logic_env *env = env_new();
    struct logic_module *m = load_wasm_ok(env, "counter", entries, 0, 0);
    const struct logic_runtime *rt = rt_of(m);
    struct buf out;
    struct logic_error err;
    size_t failed_at = 99;
    buf_init(&out);
    ASSERT_EQ(rt->fold(m, "reduce", S("null"), wasm_events, 3, NULL, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "{\"n\":3,\"bytes\":33}");
    struct slice extra = S("{\"f\":1}"); /* [state, event, extra]: 8 more bytes per event */
    buf_reset(&out);
    ASSERT_EQ(rt->fold(m, "reduce", S("{\"n\":10,\"bytes\":0}"), wasm_events, 3, &extra, &out,
                       NULL, &err), 0);
    ASSERT_STR(out.ptr, "{\"n\":13,\"bytes\":57}");
    /* key answers its argument as it came: insignificant whitespace goes, nothing else */
    struct slice texts[4] = {S("{ \"k\" : \"\xc3\xa9\\u0041\" }"), S("[1, 2.50, -0]"), S("\"x\""),
                             S("12345678901234567890")};
    buf_reset(&out);
    ASSERT_EQ(rt->map(m, "key", texts, 4, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "[{\"k\":\"\xc3\xa9\\u0041\"},[1,2.50,-0],\"x\",12345678901234567890]");
    struct slice keys[3] = {S("a"), S("b"), S("a")};
    buf_reset(&out);
    ASSERT_EQ(rt->fold_keyed(m, "reduce", S("{\"a\":{\"n\":5,\"bytes\":100},\"c\":null}"), keys,
                             wasm_events, 3, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "[{\"n\":6,\"bytes\":110},{\"n\":1,\"bytes\":11},{\"n\":7,\"bytes\":122}]");
    /* a command handler's call: the entry gets its arguments alone (no ctx) */
    static const char *const ops[] = {"state", NULL};
    struct logic_host host = {.ops = ops, .fn = NULL, .arg = NULL};
    struct slice args[2] = {S("null"), wasm_events[0]};
    buf_reset(&out);
    ASSERT_EQ(rt->call_ctx(m, "reduce", args, 2, &host, &out, &err), 0);
    ASSERT_STR(out.ptr, "{\"n\":1,\"bytes\":10}");
    /* an event that is not JSON is named */
    struct slice bad[3] = {wasm_events[0], S("{\"id\":"), wasm_events[2]};
    buf_reset(&out);
    ASSERT_EQ(rt->fold(m, "reduce", S("null"), bad, 3, NULL, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed_at, 1);
    ASSERT_EQ(rt->map(m, "nope", wasm_events, 3, &out, &failed_at, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    ASSERT_EQ(failed_at, 3);
    ASSERT_EQ(out.len, 0);
    /* figure: a fold of 10,000 events (the state crosses as JSON through memory per event) */
    enum { N = 10000 };
    struct slice *many = calloc(N, sizeof *many);
    for (size_t i = 0; i < N; i++) many[i] = wasm_events[i % 3];
    double t0 = now_us();
    ASSERT_EQ(rt->fold(m, "reduce", S("null"), many, N, NULL, &out, NULL, &err), 0);
    printf("  figure: WebAssembly fold: %.2f us per event over %d events\n",
           (now_us() - t0) / N, N);
    ASSERT_STR(out.ptr, "{\"n\":10000,\"bytes\":109999}");
    free(many);
    buf_fini(&out);
    done(env, m);
}

/* Loads base64 text src and checks that the load fails with kind and a message holding want. */
static void expect_wasm_refused(struct logic_env *env, const char *src, size_t len,
                                const char *const *entries, int rc, enum logic_err_kind kind,
                                const char *want)
{
    struct logic_module *m;
    struct logic_error err;
    int got = load_wasm_src(env, src, len, entries, 0, 64 << 20, &m, &err);
    if (got != rc || err.kind != kind || !strstr(err.message, want))
        fprintf(stderr, "  rc %d kind %d: %s (want %s)\n", got, err.kind, err.message, want);
    ASSERT_EQ(got, rc);
    ASSERT_EQ(err.kind, kind);
    CHECK(strstr(err.message, want));
    CHECK(m == NULL);
}

/* The base64 of tests/wasm/<name>.wat with the count of its code section's bodies raised by
 * one: a module that only the engine's compiler refuses. */
static void wasm_source_corrupt(const char *name, struct buf *out)
{
    char path[512];
    unsigned char b[65536];
    snprintf(path, sizeof path, "%s/%s.wasm", LOGIC_JS_TEST_WASM, name);
    FILE *f = fopen(path, "rb");
    CHECK(f);
    size_t n = fread(b, 1, sizeof b, f), at = 8;
    fclose(f);
    while (at < n) {
        unsigned id = b[at++];
        size_t size = 0;
        unsigned char byte;
        int shift = 0;
        do {
            byte = b[at++];
            size |= (size_t)(byte & 0x7f) << shift;
            shift += 7;
        } while (byte & 0x80);
        if (id == 10) {
            b[at]++;
            break;
        }
        at += size;
    }
    buf_reset(out);
    base64_encode(b, n, out);
}

TEST(wasm_modules_refused_at_load)
{
    static const char *const reduce[] = {"reduce", NULL};
    static const char *const apply[] = {"apply", NULL};
    struct logic_env *env = env_new();
    struct buf src;
    buf_init(&src);
    wasm_source("imports", &src);
    expect_wasm_refused(env, src.ptr, src.len, reduce, ERR_INVALID, LOGIC_E_FORBIDDEN,
                        "the module imports env.log: a WebAssembly component imports nothing");
    wasm_source("wrong_abi", &src);
    expect_wasm_refused(env, src.ptr, src.len, reduce, ERR_INVALID, LOGIC_E_MISSING,
                        "reduce must be (i32, i32) -> (i64), not (i32) -> (i64)");
    wasm_source("counter", &src);
    expect_wasm_refused(env, src.ptr, src.len, apply, ERR_INVALID, LOGIC_E_MISSING,
                        "missing entry point: apply");
    wasm_source("big_memory", &src);
    expect_wasm_refused(env, src.ptr, src.len, reduce, ERR_INVALID, LOGIC_E_MEMORY,
                        "memory starts at 131072000 bytes, over its budget of 67108864");
    wasm_source_corrupt("counter", &src);
    expect_wasm_refused(env, src.ptr, src.len, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "CompileError");
    /* the source is base64 of the module's bytes */
    expect_wasm_refused(env, "AGFzbQ$", 7, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "a character outside the base64 alphabet at line 1, column 7");
    expect_wasm_refused(env, "AGFz\nbQ!=", 9, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "at line 2, column 3");
    expect_wasm_refused(env, "AGFzbQ==AA", 10, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "text after the padding");
    expect_wasm_refused(env, "AGFzb", 5, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "it ends in the middle of a group");
    expect_wasm_refused(env, "", 0, reduce, ERR_INVALID, LOGIC_E_SYNTAX, "the source is empty");
    expect_wasm_refused(env, "aGVsbG8gd29ybGQ=", 16, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "not a WebAssembly module");
    expect_wasm_refused(env, "AGFzbQIAAAA=", 12, reduce, ERR_INVALID, LOGIC_E_SYNTAX,
                        "WebAssembly binary version 2 is not supported");
    size_t big = LOGIC_MAX_SOURCE_BYTES + 4;
    char *huge = malloc(big);
    memset(huge, 'A', big);
    expect_wasm_refused(env, huge, big, reduce, ERR_TOOBIG, LOGIC_E_INVALID, "exceeds");
    free(huge);
    /* whitespace between the characters and a missing padding are fine */
    wasm_source("counter", &src);
    struct buf spaced;
    buf_init(&spaced);
    for (size_t i = 0; i < src.len; i++) {
        buf_addc(&spaced, src.ptr[i]);
        if (i % 60 == 59) buf_adds(&spaced, "\r\n");
    }
    while (spaced.len && spaced.ptr[spaced.len - 1] == '=') spaced.len--;
    struct logic_module *m;
    struct logic_error err;
    ASSERT_EQ(load_wasm_src(env, spaced.ptr, spaced.len, reduce, 0, 0, &m, &err), 0);
    expect_call(m, "ok", "1");
    buf_fini(&spaced);
    buf_fini(&src);
    done(env, m);
}

TEST(wasm_budgets_stop_loops_growth_bad_output_and_traps)
{
    static const char *const entries[] = {"ok", NULL};
    struct logic_env *env = env_new();
    struct logic_module *m = load_wasm_ok(env, "hostile", entries, 300, 64 << 20);
    double t0 = now_us();
    expect_fail(m, "spin", LOGIC_E_CPU);
    printf("    wasm infinite loop stopped after %.0f ms (budget 300)\n", (now_us() - t0) / 1e3);
    CHECK(now_us() - t0 < 3e6);
    t0 = now_us();
    expect_fail(m, "grow", LOGIC_E_MEMORY);
    printf("    wasm memory growth to its 64 MiB budget stopped after %.0f ms\n",
           (now_us() - t0) / 1e3);
    expect_fail(m, "grow", LOGIC_E_MEMORY); /* a new instance each time: the memory starts over */
    expect_fail(m, "grow_at_once", LOGIC_E_RUNTIME); /* refused at once, far from the budget */
    expect_fail(m, "trap", LOGIC_E_RUNTIME);
    expect_fail(m, "bad_json", LOGIC_E_OUTPUT);
    expect_fail(m, "out_of_bounds", LOGIC_E_OUTPUT);
    expect_call(m, "spaces", "[1,\"a\",{\"b\":null}]");
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    ASSERT_EQ(call(m, "trap", NULL, NULL, &out, &err), ERR_INVALID);
    ASSERT_STR(err.message, "RuntimeError: unreachable executed");
    ASSERT_EQ(call(m, "grow", NULL, NULL, &out, &err), ERR_INVALID);
    CHECK(strstr(err.message, "memory_limit: the module's memory reached"));
    ASSERT_EQ(call(m, "out_of_bounds", NULL, NULL, &out, &err), ERR_INVALID);
    ASSERT_STR(err.message, "the result (256 bytes at 65520) lies outside the memory of 65536 "
                            "bytes");
    ASSERT_EQ(call(m, "bad_json", NULL, NULL, &out, &err), ERR_INVALID);
    ASSERT_STR(err.message, "the result of bad_json is not JSON: object member name expected at "
                            "byte 1");
    rt_of(m)->unload(m);
    /* the output budget counts the result as the module wrote it */
    struct buf src;
    struct logic_limits lim = {.output_bytes = 10};
    buf_init(&src);
    wasm_source("hostile", &src);
    ASSERT_EQ(logic_wasm_runtime.load(env, "small", src.ptr, src.len, entries, &lim, &m, &err), 0);
    ASSERT_EQ(call(m, "spaces", NULL, NULL, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_OUTPUT);
    expect_call(m, "ok", "1");
    buf_fini(&src);
    buf_fini(&out);
    done(env, m);
}

/* ---- ctx: host calls of JavaScript command handlers ---------------------------------------- */

static const char *const ctx_ops[] = {"state", "projection", "view", "query", NULL};

/* The host of the ctx tests: records each call ("op args" lines), answers by op, and can
 * fail, sleep or kill the worker. */
struct host_rec {
    int calls;
    struct buf log;
    int fail_at;    /* the call (from 1) that fails; 0: none */
    int sleep_ms;   /* each call takes this long */
    bool is_killer; /* each call kills the worker first */
};

static int on_host(void *arg, const char *op, struct slice args, struct buf *out, char *why,
                   size_t why_cap)
{
    struct host_rec *h = arg;
    h->calls++;
    buf_printf(&h->log, "%s %.*s\n", op, (int)args.len, args.ptr);
    if (h->sleep_ms) usleep((useconds_t)h->sleep_ms * 1000);
    if (h->is_killer) kill_children((void *)(intptr_t)0);
    if (h->calls == h->fail_at) {
        snprintf(why, why_cap, "no stream %.*s", (int)args.len, args.ptr);
        return ERR_NOTFOUND;
    }
    if (!strcmp(op, "state")) buf_adds(out, "{\"balance\":100,\"name\":\"Zo\xc3\xab\"}");
    else if (!strcmp(op, "query")) buf_adds(out, "[{\"type\":\"X\",\"n\":1.5}]");
    else buf_adds(out, "null");
    return 0;
}

static const char ctx_source[] =
    "export function decide(c, ctx) {\n"
    "  const s = ctx.state('acct-' + c.id);\n"
    "  const q = ctx.query({types: ['X'], gone: undefined}, 10);\n"
    "  return {s, q, c, v: ctx.view('v', {p: '\\u00e9'})};\n"
    "}\n"
    "export function many(c, ctx) { let n = 0; for (let i = 0; i < c.n; i++) { ctx.state('s' + i); n++ } return n }\n"
    "export function caught(c, ctx) { try { ctx.state('gone') } catch (e) { return e.message } }\n"
    "export function uncaught(c, ctx) { return ctx.state('gone') }\n"
    "export async function later_in_a_job(c, ctx) { await null; return ctx.state('x') }\n"
    "let kept;\n"
    "export function keep(c, ctx) { kept = ctx; return 1 }\n"
    "export function use_kept() { return kept.state('x') }\n"
    "export function burn(c, ctx) { for (;;) { ctx.state('x'); let x = 0; for (let i = 0; i < 3e7; i++) x += i } }\n"
    "export function slow(c, ctx) { return [ctx.state('a'), ctx.state('b'), ctx.state('c')].length }\n"
    "export function ok() { return 1 }\n";

/* call_ctx of entry with one argument (the command) and host h; the result in out. */
static int call_ctx(struct logic_module *m, const char *entry, const char *command,
                    struct host_rec *h, struct buf *out, struct logic_error *err)
{
    struct logic_host host = {.ops = ctx_ops, .fn = on_host, .arg = h};
    struct slice arg = {command, strlen(command)};
    buf_reset(out);
    buf_reset(&h->log);
    h->calls = 0;
    return rt_of(m)->call_ctx(m, entry, &arg, 1, &host, out, err);
}

TEST(ctx_host_calls_byte_exact)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, ctx_source, 0);
    struct host_rec h = {0};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    buf_init(&h.log);
    int rc = call_ctx(m, "decide", "{\"id\":1}", &h, &out, &err);
    if (rc) fprintf(stderr, "  decide: %s\n", err.message);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(h.log.ptr, "state [\"acct-1\"]\nquery [{\"types\":[\"X\"]},10]\n"
                          "view [\"v\",{\"p\":\"\xc3\xa9\"}]\n");
    ASSERT_STR(out.ptr, "{\"s\":{\"balance\":100,\"name\":\"Zo\xc3\xab\"},\"q\":[{\"type\":\"X\","
                        "\"n\":1.5}],\"c\":{\"id\":1},\"v\":null}");
    /* async handlers reach ctx too, in a promise job of the same request */
    ASSERT_EQ(call_ctx(m, "later_in_a_job", "{}", &h, &out, &err), 0);
    ASSERT_STR(out.ptr, "{\"balance\":100,\"name\":\"Zo\xc3\xab\"}");
    buf_fini(&h.log);
    buf_fini(&out);
    done(env, m);
}

TEST(ctx_host_errors_are_thrown_errors)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, ctx_source, 0);
    struct host_rec h = {.fail_at = 1};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    buf_init(&h.log);
    ASSERT_EQ(call_ctx(m, "caught", "{}", &h, &out, &err), 0);
    ASSERT_STR(out.ptr, "\"ctx.state: no stream [\\\"gone\\\"]\"");
    ASSERT_EQ(call_ctx(m, "uncaught", "{}", &h, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_STR(err.message, "Error: ctx.state: no stream [\"gone\"]");
    ASSERT_EQ(err.line, 8);
    ASSERT_EQ(out.len, 0);
    /* a ctx kept past its call throws */
    h.fail_at = 0;
    ASSERT_EQ(call_ctx(m, "keep", "{}", &h, &out, &err), 0);
    ASSERT_EQ(call(m, "use_kept", NULL, NULL, &out, &err), ERR_INVALID);
    ASSERT_STR(err.message, "Error: ctx.state: the call that received ctx has ended");
    ASSERT_EQ(h.calls, 0);
    expect_call(m, "ok", "1");
    buf_fini(&h.log);
    buf_fini(&out);
    done(env, m);
}

TEST(ctx_many_host_calls_up_to_the_limit)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, ctx_source, 0);
    struct host_rec h = {0};
    struct buf out;
    struct logic_error err;
    char cmd[32];
    buf_init(&out);
    buf_init(&h.log);
    snprintf(cmd, sizeof cmd, "{\"n\":%d}", JSW_MAX_HOST_CALLS);
    double t0 = now_us();
    ASSERT_EQ(call_ctx(m, "many", cmd, &h, &out, &err), 0);
    printf("    %d host calls in one call: %.0f us each\n", JSW_MAX_HOST_CALLS,
           (now_us() - t0) / JSW_MAX_HOST_CALLS);
    ASSERT_STR(out.ptr, "64");
    ASSERT_EQ(h.calls, JSW_MAX_HOST_CALLS);
    snprintf(cmd, sizeof cmd, "{\"n\":%d}", JSW_MAX_HOST_CALLS + 1);
    ASSERT_EQ(call_ctx(m, "many", cmd, &h, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_STR(err.message, "Error: ctx.state: more than 64 host calls in one call");
    ASSERT_EQ(h.calls, JSW_MAX_HOST_CALLS);
    ASSERT_EQ(call_ctx(m, "many", "{\"n\":3}", &h, &out, &err), 0); /* counted per call */
    ASSERT_STR(out.ptr, "3");
    buf_fini(&h.log);
    buf_fini(&out);
    done(env, m);
}

TEST(ctx_cpu_budget_counts_the_worker_only)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, ctx_source, 200);
    struct host_rec h = {.sleep_ms = 1000};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    buf_init(&h.log);
    /* 3 s in the host: past the worker's wall deadline (3 x 200 ms + 2 s), within its CPU */
    double t0 = now_us();
    int rc = call_ctx(m, "slow", "{}", &h, &out, &err);
    if (rc) fprintf(stderr, "  slow: %s\n", err.message);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(out.ptr, "3");
    CHECK(now_us() - t0 >= 3e6);
    /* code that burns its budget between host calls is stopped */
    h.sleep_ms = 0;
    t0 = now_us();
    ASSERT_EQ(call_ctx(m, "burn", "{}", &h, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    printf("    burning between %d host calls: stopped after %.0f ms (budget 200)\n", h.calls,
           (now_us() - t0) / 1e3);
    CHECK(h.calls >= 1 && h.calls < JSW_MAX_HOST_CALLS);
    expect_call(m, "ok", "1");
    buf_fini(&h.log);
    buf_fini(&out);
    done(env, m);
}

TEST(ctx_worker_killed_during_a_host_call)
{
    struct logic_env *env = env_new();
    struct logic_module *m = load_ok(env, ctx_source, 0);
    struct host_rec h = {.is_killer = true};
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    buf_init(&h.log);
    ASSERT_EQ(call_ctx(m, "decide", "{\"id\":1}", &h, &out, &err), ERR_IO);
    ASSERT_EQ(err.kind, LOGIC_E_WORKER);
    ASSERT_EQ(h.calls, 1);
    ASSERT_EQ(out.len, 0);
    h.is_killer = false; /* the next call restarts the worker */
    ASSERT_EQ(call_ctx(m, "decide", "{\"id\":2}", &h, &out, &err), 0);
    CHECK(strstr(out.ptr, "\"c\":{\"id\":2}"));
    buf_fini(&h.log);
    buf_fini(&out);
    done(env, m);
}
