/* logic/runtime.h with the Lua runtime: reducers folding events, byte-exact JSON mapping,
 * and one test per sandbox hole, each of which must fail cleanly with the right error kind
 * while the test process (standing in for the server) stays healthy and the module usable. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "json/jsonx.h"
#include "logic/runtime.h"
#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"

static const char *const NO_ENTRIES[] = {NULL};

static struct slice S(const char *s)
{
    struct slice x = {s, strlen(s)};
    return x;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct logic_limits limits(uint32_t cpu_ms, size_t mem_bytes, size_t output_bytes)
{
    struct logic_limits l = {cpu_ms, mem_bytes, output_bytes};
    return l;
}

static struct logic_module *load_with(const char *src, const char *const *entries,
                                      const struct logic_limits *lim)
{
    struct logic_module *m = NULL;
    struct logic_error err;
    int rc = logic_load(NULL, LOGIC_LANG_LUA, "test", src, strlen(src), entries, lim, &m, &err);
    if (rc != 0) {
        fprintf(stderr, "  load failed: %s at %d:%d: %s\n", logic_err_name(err.kind), err.line,
                err.column, err.message);
        exit(1);
    }
    return m;
}

static struct logic_module *load(const char *src)
{
    return load_with(src, NO_ENTRIES, NULL);
}

/* Calls entry with the JSON arguments (NULL-terminated) and returns its result (static). */
static const char *call(struct logic_module *m, const char *entry, ...)
{
    static struct buf out;
    struct slice args[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, entry);
    for (const char *a; n < 8 && (a = va_arg(ap, const char *));) {
        args[n++] = S(a);
    }
    va_end(ap);
    struct logic_error err;
    buf_reset(&out);
    int rc = logic_call(m, entry, args, n, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "  call %s failed: %s at line %d: %s\n", entry, logic_err_name(err.kind),
                err.line, err.message);
        exit(1);
    }
    return out.ptr ? out.ptr : "";
}

/* Calls entry with no arguments, expects it to fail with kind; returns the error (static). */
static const struct logic_error *call_fails(struct logic_module *m, const char *entry,
                                            enum logic_err_kind kind)
{
    static struct logic_error err;
    struct buf out;
    buf_init(&out);
    buf_adds(&out, "kept");
    double t0 = now_ms();
    int rc = logic_call(m, entry, NULL, 0, &out, &err);
    double ms = now_ms() - t0;
    printf("    %s -> %s (line %d, %.0f ms): %s\n", entry, logic_err_name(err.kind), err.line, ms,
           err.message);
    if (rc != ERR_INVALID || err.kind != kind) {
        fprintf(stderr, "  %s: expected %s, got rc %d %s: %s\n", entry, logic_err_name(kind), rc,
                logic_err_name(err.kind), err.message);
        exit(1);
    }
    ASSERT_STR(out.ptr, "kept"); /* out unchanged on failure */
    buf_fini(&out);
    return &err;
}

/* The module still answers after a failure. */
static void check_usable(struct logic_module *m)
{
    ASSERT_STR(call(m, "ok", NULL), "\"ok\"");
}

TEST(names_and_defaults)
{
    ASSERT_EQ(logic_lang_parse("lua"), LOGIC_LANG_LUA);
    ASSERT_EQ(logic_lang_parse("js"), LOGIC_LANG_JAVASCRIPT);
    ASSERT_EQ(logic_lang_parse("javascript"), LOGIC_LANG_JAVASCRIPT);
    ASSERT_EQ(logic_lang_parse("ts"), LOGIC_LANG_TYPESCRIPT);
    ASSERT_EQ(logic_lang_parse("typescript"), LOGIC_LANG_TYPESCRIPT);
    ASSERT_EQ(logic_lang_parse("cobol"), 0);
    ASSERT_STR(logic_lang_name(LOGIC_LANG_TYPESCRIPT), "typescript");
    ASSERT_STR(logic_err_name(LOGIC_E_CPU), "cpu_limit");
    ASSERT_STR(logic_err_name(LOGIC_E_SYNTAX), "syntax_error");
    ASSERT_STR(logic_err_name(LOGIC_E_OUTPUT), "output_limit");
    struct logic_limits l;
    logic_limits_default(&l);
    ASSERT_EQ(l.cpu_ms, LOGIC_DEFAULT_CPU_MS);
    ASSERT_EQ(l.mem_bytes, LOGIC_DEFAULT_MEM_BYTES);
    ASSERT_EQ(l.output_bytes, LOGIC_DEFAULT_OUTPUT_BYTES);
}

TEST(javascript_not_available_without_a_worker)
{
    struct logic_env *env;
    struct logic_env_config cfg = {.js_worker_path = NULL}; /* no annals-jsworker beside us */
    ASSERT_EQ(logic_env_new(&cfg, &env), 0);
    struct logic_module *m = (struct logic_module *)1;
    struct logic_error err;
    const char *src = "function reduce(s, e) { return s }";
    ASSERT_EQ(logic_load(env, LOGIC_LANG_JAVASCRIPT, "js", src, strlen(src), NO_ENTRIES, NULL, &m,
                         &err),
              ERR_INVALID);
    CHECK(m == NULL);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_STR(err.message, "javascript runtime not available");
    ASSERT_EQ(logic_load(env, LOGIC_LANG_TYPESCRIPT, "ts", src, strlen(src), NO_ENTRIES, NULL, &m,
                         &err),
              ERR_INVALID);
    logic_env_free(env);
    logic_env_free(NULL);
}

static const char REDUCER[] =
    "function reduce(state, event)\n"
    "  state = state or { count = 0, total = 0, items = json.array() }\n"
    "  state.count = state.count + 1\n"
    "  state.total = state.total + event.data.amount\n"
    "  state.status = event.type\n"
    "  state.lastId = event.id\n"
    "  table.insert(state.items, event.data.sku)\n"
    "  if #state.items > 5 then table.remove(state.items, 1) end\n"
    "  return state\n"
    "end\n";

static const char *const EVENTS[] = {
    "{\"id\":\"e1\",\"type\":\"OrderPlaced\",\"data\":{\"amount\":12.5,\"sku\":\"A\",\"qty\":1,\"note\":null,\"tags\":[]}}",
    "{\"id\":\"e2\",\"type\":\"ItemAdded\",\"data\":{\"amount\":20,\"sku\":\"B\",\"qty\":2,\"note\":\"x\",\"tags\":[\"a\"]}}",
    "{\"id\":\"e3\",\"type\":\"ItemAdded\",\"data\":{\"amount\":27.47,\"sku\":\"C\",\"qty\":3,\"note\":\"y\",\"tags\":[]}}",
};

TEST(reducer_fold_is_byte_exact_and_matches_call_form)
{
    const char *const entries[] = {"reduce", NULL};
    struct logic_module *m = load_with(REDUCER, entries, NULL);
    struct slice ev[3] = {S(EVENTS[0]), S(EVENTS[1]), S(EVENTS[2])};
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed_at = 99;
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), ev, 3, NULL, &out, &failed_at, &err), 0);
    const char *want = "{\"count\":3,\"items\":[\"A\",\"B\",\"C\"],\"lastId\":\"e3\","
                       "\"status\":\"ItemAdded\",\"total\":59.97}";
    ASSERT_STR(out.ptr, want);
    /* the same events one call at a time, the state crossing as JSON each time */
    char state[512] = "null";
    for (int i = 0; i < 3; i++) {
        snprintf(state, sizeof state, "%s", call(m, "reduce", state, EVENTS[i], NULL));
    }
    ASSERT_STR(state, want);
    /* folding on from a state, and an empty fold giving the state back */
    buf_reset(&out);
    ASSERT_EQ(logic_fold(m, "reduce", S(want), ev, 1, NULL, &out, NULL, &err), 0);
    CHECK(strstr(out.ptr, "\"count\":4") && strstr(out.ptr, "[\"A\",\"B\",\"C\",\"A\"]"));
    buf_reset(&out);
    ASSERT_EQ(logic_fold(m, "reduce", S(want), ev, 0, NULL, &out, NULL, &err), 0);
    ASSERT_STR(out.ptr, want);
    buf_fini(&out);
    logic_unload(m);
}

TEST(fold_passes_view_parameters_and_reports_the_failing_event)
{
    struct logic_module *m = load(
        "function evolve(state, event, params)\n"
        "  if event.boom then error('bad event ' .. event.n) end\n"
        "  return (state or 0) + event.n * params.factor\n"
        "end\n"
        "function ok() return 'ok' end\n");
    struct slice ev[4] = {S("{\"n\":1}"), S("{\"n\":2}"), S("{\"n\":3,\"boom\":true}"), S("{\"n\":4}")};
    struct slice params = S("{\"factor\":10}");
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed_at = 99;
    ASSERT_EQ(logic_fold(m, "evolve", S("null"), ev, 2, &params, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr, "30");
    buf_reset(&out);
    ASSERT_EQ(logic_fold(m, "evolve", S("null"), ev, 4, &params, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(failed_at, 2);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_EQ(err.line, 2);
    ASSERT_STR(err.message, "bad event 3");
    ASSERT_EQ(out.len, 0);
    /* an event that is not JSON */
    struct slice bad[2] = {S("{\"n\":1}"), S("{\"n\":")};
    ASSERT_EQ(logic_fold(m, "evolve", S("null"), bad, 2, &params, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed_at, 1);
    printf("    %s\n", err.message);
    /* a failure that is no event's: failed_at is n */
    ASSERT_EQ(logic_fold(m, "evolve", S("{bad"), ev, 2, &params, &out, &failed_at, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed_at, 2);
    check_usable(m);
    buf_fini(&out);
    logic_unload(m);
}

struct round_trip {
    const char *in;
    const char *out;
};

TEST(json_round_trips)
{
    static const struct round_trip cases[] = {
        {"[]", "[]"},
        {"{}", "{}"},
        {" { \"b\" : [ ] , \"a\" : { } } ", "{\"a\":{},\"b\":[]}"},
        {"[1,2,3]", "[1,2,3]"},
        {"{\"b\":1,\"a\":2,\"ab\":3,\"B\":4}", "{\"B\":4,\"a\":2,\"ab\":3,\"b\":1}"},
        {"[[[]],[{}]]", "[[[]],[{}]]"},
        {"1.5", "1.5"},
        {"59.97", "59.97"},
        {"0.1", "0.1"},
        {"1e300", "1e+300"},
        {"1E2", "100.0"},
        {"1.0", "1.0"},
        {"-0.0", "-0.0"},
        {"12e-1", "1.2"},
        {"100", "100"},
        {"-7", "-7"},
        {"9007199254740993", "9007199254740993"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"9223372036854775807", "9223372036854775807"},
        {"9223372036854775808", "9.223372036854776e+18"},
        {"\"h\\u00e9llo \\ud83d\\ude00\"", "\"h\xc3\xa9llo \xf0\x9f\x98\x80\""},
        {"\"h\xc3\xa9llo\"", "\"h\xc3\xa9llo\""},
        {"\"a\\\"b\\\\c\\n\\t\\u0001\\/\"", "\"a\\\"b\\\\c\\n\\t\\u0001/\""},
        {"\"nul\\u0000byte\"", "\"nul\\u0000byte\""},
        {"[1,null,3]", "[1,null,3]"},
        {"{\"a\":null,\"b\":false}", "{\"b\":false}"},
        {"null", "null"},
        {"true", "true"},
        {"{\"deep\":{\"er\":[{\"x\":[1,{\"y\":\"z\"}]}]}}", "{\"deep\":{\"er\":[{\"x\":[1,{\"y\":\"z\"}]}]}}"},
    };
    struct logic_module *m = load("function id(x) return x end");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_STR(call(m, "id", cases[i].in, NULL), cases[i].out);
    }
    logic_unload(m);
}

/* Objects are decoded with their members on the Lua stack, moved into the table in batches:
 * more members than a batch, nulls left out, and a repeated name (the last one wins) across a
 * batch's end and within one. */
TEST(json_objects_past_a_batch_of_members)
{
    struct logic_module *m = load("function id(x) return x end");
    struct buf in, want;
    buf_init(&in);
    buf_init(&want);
    buf_addc(&in, '{');
    buf_addc(&want, '{');
    for (int i = 0; i < 70; i++) {
        char member[32];
        snprintf(member, sizeof member, "%s\"k%02d\":%s", i ? "," : "", i,
                 i % 10 == 3 ? "null" : i == 5 ? "0" : "-1");
        buf_adds(&in, member);
    }
    buf_adds(&in, ",\"k05\":5,\"k40\":40,\"k40\":41}"); /* k05 repeated after a batch */
    for (int i = 0, n = 0; i < 70; i++) {
        if (i % 10 == 3) {
            continue;
        }
        char member[32];
        snprintf(member, sizeof member, "%s\"k%02d\":%d", n++ ? "," : "", i,
                 i == 5 ? 5 : i == 40 ? 41 : -1);
        buf_adds(&want, member);
    }
    buf_addc(&want, '}');
    ASSERT_STR(call(m, "id", in.ptr, NULL), want.ptr);
    ASSERT_STR(call(m, "id", "{\"a\":1,\"a\":2,\"b\":{\"c\":[{\"d\":1,\"d\":null}]}}", NULL),
               "{\"a\":2,\"b\":{\"c\":[{}]}}");
    buf_fini(&in);
    buf_fini(&want);
    logic_unload(m);
}

TEST(json_numbers_from_lua)
{
    struct logic_module *m = load(
        "function f(n)\n"
        "  local v = { 0.1 + 0.2, 59.97, 1/3, 2^53, 1e21, 3, 3.0, -1.5e-7, 7 // 2, 7 / 2,\n"
        "              math.maxinteger, math.mininteger, 1e15, 123456789012.0 }\n"
        "  return v[n]\n"
        "end\n");
    static const char *const want[] = {
        "0.30000000000000004", "59.97", "0.3333333333333333", "9007199254740992.0", "1e+21",
        "3", "3.0", "-1.5e-07", "3", "3.5", "9223372036854775807", "-9223372036854775808",
        "1e+15", "123456789012.0",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char arg[8];
        snprintf(arg, sizeof arg, "%zu", i + 1);
        ASSERT_STR(call(m, "f", arg, NULL), want[i]);
    }
    logic_unload(m);
}

TEST(json_helpers_and_ordered_iteration)
{
    struct logic_module *m = load(
        "function arrays() return { a = json.array(), o = json.object(), e = {},\n"
        "  l = json.array({1, 2}), n = json.null, t = { json.null, 2 } } end\n"
        "function keys(t)\n"
        "  local out = {}\n"
        "  for k, v in spairs(t) do out[#out + 1] = tostring(k) .. '=' .. tostring(v) end\n"
        "  return table.concat(out, ' ')\n"
        "end\n"
        "function codec(t) return json.decode(json.encode(t)) end\n"
        "function marker(t) return getmetatable(t) end\n"
        "function ok() return 'ok' end\n");
    ASSERT_STR(call(m, "arrays", NULL),
               "{\"a\":[],\"e\":{},\"l\":[1,2],\"n\":null,\"o\":{},\"t\":[null,2]}");
    ASSERT_STR(call(m, "keys", "{\"b\":1,\"a\":2,\"c\":3,\"B\":0}", NULL), "\"B=0 a=2 b=1 c=3\"");
    ASSERT_STR(call(m, "keys", "[\"x\",\"y\"]", NULL), "\"1=x 2=y\"");
    ASSERT_STR(call(m, "codec", "{\"z\":[],\"a\":[1.5,{\"k\":\"v\"}]}", NULL),
               "{\"a\":[1.5,{\"k\":\"v\"}],\"z\":[]}");
    ASSERT_STR(call(m, "marker", "[1]", NULL), "\"json.array\"");
    ASSERT_STR(call(m, "marker", "{\"a\":1}", NULL), "null");
    logic_unload(m);
}

TEST(results_that_cannot_be_json)
{
    struct logic_module *m = load(
        "function fn() return { f = function() end } end\n"
        "function nan() return { x = { 0/0 } } end\n"
        "function inf() return 1/0 end\n"
        "function mixed() return { 1, 2, x = 3 } end\n"
        "function sparse() return { [1] = 1, [3] = 3 } end\n"
        "function boolkey() return { [true] = 1 } end\n"
        "function cycle() local t = { a = {} } t.a.b = t return t end\n"
        "function deep() local t = {} for i = 1, 70 do t = { t } end return t end\n"
        "function utf8bad() return { s = 'ok\\255' } end\n"
        "function arrstr() local a = json.array() a.x = 1 return a end\n"
        "function ok() return 'ok' end\n");
    static const char *const bad[] = {"fn", "nan", "inf", "mixed", "sparse", "boolkey", "cycle",
                                      "deep", "utf8bad", "arrstr"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_fails(m, bad[i], LOGIC_E_OUTPUT);
        check_usable(m);
    }
    CHECK(strstr(call_fails(m, "cycle", LOGIC_E_OUTPUT)->message, "cycle"));
    CHECK(strstr(call_fails(m, "fn", LOGIC_E_OUTPUT)->message, "$.f: a function value"));
    logic_unload(m);
}

TEST(invalid_arguments)
{
    struct logic_module *m = load("function id(x) return x end\nfunction ok() return 'ok' end");
    static const char *const bad[] = {"{bad", "[1,]", "01", "\"\\ud800\"", "1 2", "", "nul",
                                      "\"tab\there\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct logic_error err;
        struct slice a = S(bad[i]);
        ASSERT_EQ(logic_call(m, "id", &a, 1, &out, &err), ERR_INVALID);
        ASSERT_EQ(err.kind, LOGIC_E_INVALID);
        buf_fini(&out);
    }
    /* nesting: 64 levels pass, 65 do not */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    CHECK(strlen(call(m, "id", deep, NULL)) == 128);
    char deeper[200];
    memset(deeper, '[', 65);
    memset(deeper + 65, ']', 65);
    deeper[130] = '\0';
    struct slice a = S(deeper);
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    ASSERT_EQ(logic_call(m, "id", &a, 1, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    buf_fini(&out);
    check_usable(m);
    logic_unload(m);
}

TEST(sandbox_refuses_what_it_does_not_offer)
{
    struct logic_module *m = load(
        "function t_io() return io.open('/etc/passwd') end\n"
        "function t_os() os.exit(1) end\n"
        "function t_require() return require('os') end\n"
        "function t_load() return load('return 1')() end\n"
        "function t_dofile() return dofile('/etc/passwd') end\n"
        "function t_loadfile() return loadfile('/etc/passwd') end\n"
        "function t_dump() return string.dump(ok) end\n"
        "function t_dump_method() return ('x').dump(ok) end\n"
        "function t_debug() return debug.getinfo(1) end\n"
        "function t_gc() return collectgarbage('count') end\n"
        "function t_random() return math.random() end\n"
        "function t_print() print('x') end\n"
        "function t_package() return package.loaded end\n"
        "function t_coroutine() return coroutine.create(ok) end\n"
        "function t_rawset() rawset(_G, 'x', 1) end\n"
        "function t_global() counter = 1 end\n"
        "function t_finalizer() setmetatable({}, { __gc = function() while true do end end }) end\n"
        "function t_weak() setmetatable({}, { __mode = 'k' }) end\n"
        "function ok() return 'ok' end\n");
    static const char *const probes[] = {
        "t_io", "t_os", "t_require", "t_load", "t_dofile", "t_loadfile", "t_dump",
        "t_dump_method", "t_debug", "t_gc", "t_random", "t_print", "t_package", "t_coroutine",
        "t_rawset", "t_global", "t_finalizer", "t_weak",
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        const struct logic_error *e = call_fails(m, probes[i], LOGIC_E_FORBIDDEN);
        CHECK(e->line > 0);
        check_usable(m);
    }
    logic_unload(m);
}

TEST(finalizer_added_after_setmetatable_never_runs)
{
    /* Lua only marks an object for finalization if __gc is present at setmetatable time */
    struct logic_module *m = load(
        "function f()\n"
        "  for i = 1, 2000 do\n"
        "    local mt = {}\n"
        "    setmetatable({}, mt)\n"
        "    mt.__gc = function() while true do end end\n"
        "  end\n"
        "  local junk = {}\n"
        "  for i = 1, 200000 do junk[i % 100 + 1] = { i } end\n"
        "  return 'done'\n"
        "end\n"
        "function ok() return 'ok' end\n");
    ASSERT_STR(call(m, "f", NULL), "\"done\"");
    logic_unload(m); /* lua_close runs no finalizer either */
}

TEST(protected_metatables)
{
    struct logic_module *m = load(
        "function replace(t) setmetatable(t, {}) end\n"
        "function globals_mt() return getmetatable(_G) end\n"
        "function ok() return 'ok' end\n");
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    struct slice a = S("[1]");
    ASSERT_EQ(logic_call(m, "replace", &a, 1, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    CHECK(strstr(err.message, "protected metatable"));
    ASSERT_STR(call(m, "globals_mt", NULL), "false");
    buf_fini(&out);
    logic_unload(m);
}

TEST(cpu_limit_stops_loops_even_inside_pcall)
{
    struct logic_limits lim = limits(100, 0, 0);
    struct logic_module *m = load_with(
        "function spin() while true do end end\n"
        "function in_pcall() pcall(function() while true do end end) return 'escaped' end\n"
        "function retry() while true do pcall(function() while true do end end) end end\n"
        "function handler() xpcall(function() while true do end end,\n"
        "                          function() while true do end end) return 'escaped' end\n"
        "function closing()\n"
        "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
        "  while true do end\n"
        "end\n"
        "function ok() return 'ok' end\n",
        NO_ENTRIES, &lim);
    static const char *const probes[] = {"spin", "in_pcall", "retry", "handler", "closing"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        double t0 = now_ms();
        call_fails(m, probes[i], LOGIC_E_CPU);
        CHECK(now_ms() - t0 < 2000);
        check_usable(m);
    }
    logic_unload(m);
}

/* Work done by one instruction or one library call between two count hooks: the allocator
 * and the sandbox's C functions look at the budget too, so the overshoot stays small (before
 * they did, json.encode in a loop ran 25 times past its limit). */
TEST(cpu_limit_covers_long_library_calls)
{
    struct logic_limits lim = limits(100, 32u << 20, 0);
    struct logic_module *m = load_with(
        "local a = string.rep('x', 4e6)\n"
        "function upper() while true do local _ = a:upper() end end\n"
        "function cat() while true do local _ = a .. 'y' end end\n"
        "function enc() local t = {} for i = 1, 5e4 do t['k' .. i] = i end\n"
        "  while true do pcall(json.encode, t) end end\n"
        "function u8() while true do local _ = utf8.len(a) end end\n"
        "function plain() while true do local _ = a:find('y', 1, true) end end\n"
        "function ok() return 'ok' end\n",
        NO_ENTRIES, &lim);
    static const char *const probes[] = {"upper", "cat", "enc", "u8", "plain"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        double t0 = now_ms();
        call_fails(m, probes[i], LOGIC_E_CPU);
        CHECK(now_ms() - t0 < 1000);
        check_usable(m);
    }
    logic_unload(m);
}

TEST(cpu_limit_at_load)
{
    struct logic_limits lim = limits(100, 0, 0);
    struct logic_module *m = NULL;
    struct logic_error err;
    const char *src = "while true do end";
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_LUA, "t", src, strlen(src), NO_ENTRIES, &lim, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    CHECK(m == NULL);
}

/* Burns ms of this thread's CPU time outside any call. */
static void burn_cpu_ms(unsigned ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 100000; i++) {
            x += (unsigned long)i;
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < (long)ms);
}

TEST(cpu_budget_does_not_charge_time_spent_between_calls)
{
    /* the CPU clock is read at most once per window (1 ms here): what the thread did between
       two calls, longer than that, is not the second call's */
    struct logic_limits lim = limits(100, 0, 0);
    struct logic_module *m = load_with("function ok() local n = 0 for i = 1, 100000 do n = n + i "
                                       "end return 'ok' end\n", NO_ENTRIES, &lim);
    ASSERT_STR(call(m, "ok", NULL), "\"ok\"");
    burn_cpu_ms(150);
    ASSERT_STR(call(m, "ok", NULL), "\"ok\"");
    logic_unload(m);
}

TEST(catastrophic_pattern_is_stopped)
{
    struct logic_limits lim = limits(200, 0, 0);
    struct logic_module *m = load_with(
        "function bomb() return string.find(string.rep('a', 400), '.-.-.-b') end\n"
        "function bomb_gsub() return (string.rep('a', 3000):gsub('a*a*a*b', 'x')) end\n"
        "function balance() return (string.rep('(', 40000):gsub('%b()', 'x')) end\n"
        "function ok() return 'ok' end\n",
        NO_ENTRIES, &lim);
    call_fails(m, "bomb", LOGIC_E_CPU);
    check_usable(m);
    call_fails(m, "bomb_gsub", LOGIC_E_CPU);
    check_usable(m);
    call_fails(m, "balance", LOGIC_E_CPU);
    check_usable(m);
    logic_unload(m);
}

TEST(c_loops_of_the_table_library_are_bounded)
{
    struct logic_limits lim = limits(100, 0, 0);
    struct logic_module *m = load_with(
        "local huge = { __len = function() return 1 << 40 end, __index = type, __newindex = type }\n"
        "function insert() table.insert(setmetatable({}, huge), 1, 'x') end\n"
        "function remove() table.remove(setmetatable({}, huge), 1) end\n"
        "function move() table.move(setmetatable({}, huge), 1, 1 << 40, 2) end\n"
        "local lens = { __len = function() return 1 << 40 end, __index = rawlen }\n"
        "function concat() return #table.concat(setmetatable({}, lens)) end\n"
        "local wide = { __len = function() return (1 << 31) - 2 end, __index = type }\n"
        "function sort() table.sort(setmetatable({}, wide)) end\n"
        "function rep() return #string.rep('', 1e15) + #string.rep('', 1e15, '') end\n"
        "function ok() return 'ok' end\n",
        NO_ENTRIES, &lim);
    static const char *const probes[] = {"insert", "remove", "move", "concat"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        call_fails(m, probes[i], LOGIC_E_CPU);
        check_usable(m);
    }
    call_fails(m, "sort", LOGIC_E_MEMORY); /* its copy of 2^31 items cannot be made */
    check_usable(m);
    double t0 = now_ms();
    ASSERT_STR(call(m, "rep", NULL), "0");
    CHECK(now_ms() - t0 < 100);
    logic_unload(m);
}

TEST(table_library_still_behaves)
{
    struct logic_module *m = load(
        "function f()\n"
        "  local t = {}\n"
        "  table.insert(t, 'b') table.insert(t, 1, 'a') table.insert(t, 'd') table.insert(t, 3, 'c')\n"
        "  local r = table.remove(t, 1) .. table.remove(t)\n"
        "  local m = table.move({1, 2, 3, 4, 5}, 2, 4, 1)\n"
        "  local m2 = table.move({1, 2, 3}, 1, 3, 2)\n"
        "  local words = { 'pear', 'Apple', 'fig', 'apple', 'banana' }\n"
        "  table.sort(words)\n"
        "  local byLen = { 'ccc', 'a', 'bb', 'dd', 'e' }\n"
        "  table.sort(byLen, function(x, y) return #x < #y end)\n"
        "  local nums = {} for i = 1, 500 do nums[i] = (i * 7919) % 503 end\n"
        "  table.sort(nums, function(x, y) return x > y end)\n"
        "  local sorted = true for i = 2, #nums do sorted = sorted and nums[i - 1] >= nums[i] end\n"
        "  return { t = t, r = r, m = m, m2 = m2, words = words, byLen = byLen, sorted = sorted,\n"
        "           c = table.concat({ 1, 'x', 2.5 }, '-'), c2 = table.concat({ 'a', 'b', 'c' }, ',', 2, 3),\n"
        "           u = { table.unpack({ 1, 2, 3 }) } }\n"
        "end\n");
    ASSERT_STR(call(m, "f", NULL),
               "{\"byLen\":[\"a\",\"e\",\"bb\",\"dd\",\"ccc\"],\"c\":\"1-x-2.5\",\"c2\":\"b,c\","
               "\"m\":[2,3,4,4,5],\"m2\":[1,1,2,3],\"r\":\"ad\",\"sorted\":true,\"t\":[\"b\",\"c\"],"
               "\"u\":[1,2,3],\"words\":[\"Apple\",\"apple\",\"banana\",\"fig\",\"pear\"]}");
    logic_unload(m);
}

TEST(pcall_and_xpcall_still_behave)
{
    struct logic_module *m = load(
        "function f()\n"
        "  local ok1, e1 = pcall(error, 'x', 0)\n"
        "  local ok2, e2 = xpcall(function() error('y', 0) end, function(e) return 'handled ' .. e end)\n"
        "  local ok3, a, b = xpcall(function(p, q) return p + q, p * q end, error, 2, 3)\n"
        "  local ok4, e4 = xpcall(error, function(e) error('again', 0) end, 'z', 0)\n"
        "  return { ok1, e1, ok2, e2, ok3, a, b, ok4, e4 }\n"
        "end\n");
    ASSERT_STR(call(m, "f", NULL), "[false,\"x\",false,\"handled y\",true,5,6,false,\"again\"]");
    logic_unload(m);
}

/* The same pattern cases through the sandbox's matcher and through stock Lua. */
static const char PATTERN_CASES[] =
    "CASES = {\n"
    "  { 'find', 'hello world', 'o w' }, { 'find', 'hello', 'l+' }, { 'find', 'hello', '(h)(e)' },\n"
    "  { 'find', 'hello', '()ll()' }, { 'find', 'abc', '', 10 }, { 'find', 'abc', '', 4 },\n"
    "  { 'find', 'a.b', '.', 1, true }, { 'find', 'a+b', '+', 1, true }, { 'find', 'hello', '^h' },\n"
    "  { 'find', 'hello', '^e' }, { 'find', 'hello', 'o$' }, { 'find', 'a$b', '$b' },\n"
    "  { 'find', 'THE (quick) fox', '%((%a+)%)' }, { 'find', 'f(a(b)c)d', '%b()' },\n"
    "  { 'find', 'THE (quick) fox', '%f[%a]%a+', 5 }, { 'find', 'hello hello', '(l+)o h%a+%1' },\n"
    "  { 'find', 'aaa', 'a-b' }, { 'find', 'aaab', 'a-b' }, { 'find', 'abc', 'b', -1 },\n"
    "  { 'find', 'abc', 'b', -2 }, { 'find', 'abc', 'x?b?c' }, { 'find', 'a\\0b', '%z' },\n"
    "  { 'find', 'a\\0b', '\\0' }, { 'find', 'a\\0b', '[\\0]' }, { 'find', 'x]y', '[]]' },\n"
    "  { 'find', 'x^y', '[%^]' }, { 'find', 'x^y', '[^^x]' }, { 'find', 'a-z', '[a%-]+' },\n"
    "  { 'find', 'aXb', '[^%l]' }, { 'find', 'b-a', '[]-a]+' }, { 'find', 'ab12', '%x+$' },\n"
    "  { 'match', 'key = value', '(%w+)%s*=%s*(%w+)' }, { 'match', '  trim me  ', '^%s*(.-)%s*$' },\n"
    "  { 'match', 'date 2024-01-02', '(%d+)-(%d+)-(%d+)' }, { 'match', 'hello', 'l', -2 },\n"
    "  { 'match', 'hello', '()' }, { 'match', 'hello', '(h)(.)()' }, { 'match', 'x', '(x)%1?' },\n"
    "  { 'match', '[[nested]]', '%[(%b[])%]' }, { 'match', 'THE END', '%u+$' },\n"
    "  { 'match', 'a1!', '%A%D%P' }, { 'match', '\\t x', '%s+(%S)' }, { 'match', 'abc', '.-$' },\n"
    "  { 'match', 'abc', '((a)(b))' }, { 'match', '', '^$' }, { 'match', 'abc', '^(a?)(a?)b' },\n"
    "  { 'match', 'abc', '%' }, { 'match', 'abc', '[a' }, { 'match', 'abc', '(a' },\n"
    "  { 'match', 'abc', 'a)' }, { 'match', 'abc', '%1' }, { 'match', 'abc', '%f' },\n"
    "  { 'match', 'abc', '%bx' }, { 'match', 'abc', '[%' }, { 'match', 'abc', '(()' },\n"
    "  { 'gmatch', 'one two  three', '%a+' }, { 'gmatch', 'k1=v1, k2=v2', '(%w+)=(%w+)' },\n"
    "  { 'gmatch', 'abc', '' }, { 'gmatch', 'hello', 'l*' }, { 'gmatch', 'a,b,,c', '([^,]*)' },\n"
    "  { 'gmatch', 'h\\195\\169llo', utf8.charpattern }, { 'gmatch', 'abc', '()' },\n"
    "  { 'gsub', 'hello world', 'o', '0' }, { 'gsub', 'hello world', '(%w+)', '<%1>' },\n"
    "  { 'gsub', 'hello', '', '-' }, { 'gsub', 'abc', '%w', '%0%0' }, { 'gsub', 'hello world', 'o', '0', 1 },\n"
    "  { 'gsub', 'abc', '^a', 'X' }, { 'gsub', '  x  ', '^%s+', '' }, { 'gsub', 'abc', 'b', '%%' },\n"
    "  { 'gsub', 'abc', 'b', '%2' }, { 'gsub', 'x = 1', '%s*=%s*', '=' }, { 'gsub', 'abc', 'b', '%' },\n"
    "  { 'gsub', 'abc', '()', '%1' }, { 'gsub', 'hello world', 'l+', 'L', 0 },\n"
    "  { 'gsub_fn', 'hello world', '%w+' }, { 'gsub_fn', 'a=1, b=2', '(%w+)=(%w+)' },\n"
    "  { 'gsub_tbl', 'hello world', '%w+' }, { 'gsub', 'abc', '.', { a = 1, b = true } },\n"
    "}\n"
    "local function show(v) return (tostring(v):gsub('[^%w ]', function(c) return '<' .. c:byte() .. '>' end)) end\n"
    "local function one(c)\n"
    "  local op, s, p, a, b = c[1], c[2], c[3], c[4], c[5]\n"
    "  if op == 'gmatch' then\n"
    "    local out = {}\n"
    "    for x, y in string.gmatch(s, p) do out[#out + 1] = show(x) .. '/' .. show(y) end\n"
    "    return table.concat(out, ',')\n"
    "  end\n"
    "  local r\n"
    "  if op == 'gsub_fn' then r = table.pack(string.gsub(s, p, function(x, y) return y and (y .. x) or x:upper() end))\n"
    "  elseif op == 'gsub_tbl' then r = table.pack(string.gsub(s, p, { hello = 'HI', world = false }))\n"
    "  else r = table.pack(string[op](s, p, a, b)) end\n"
    "  for i = 1, r.n do r[i] = show(r[i]) end\n"
    "  return table.concat(r, ',', 1, r.n)\n"
    "end\n"
    "function all()\n"
    "  local out = {}\n"
    "  for i, c in ipairs(CASES) do\n"
    "    local ok, r = pcall(one, c)\n"
    "    out[i] = i .. ':' .. (ok and r or 'error')\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n";

TEST(patterns_behave_like_stock_lua)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    CHECK(luaL_dostring(L, PATTERN_CASES) == LUA_OK);
    lua_getglobal(L, "all");
    CHECK(lua_pcall(L, 0, 1, 0) == LUA_OK);
    char want[8192];
    snprintf(want, sizeof want, "\"%s\"", lua_tostring(L, -1));
    lua_close(L);
    struct logic_module *m = load(PATTERN_CASES);
    const char *got = call(m, "all", NULL);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "  stock:   %s\n  sandbox: %s\n", want, got);
        exit(1);
    }
    printf("    %zu bytes of results agree\n", strlen(want));
    logic_unload(m);
}

TEST(deep_recursion_is_an_error_not_a_crash)
{
    struct logic_module *m = load(
        "function lua_stack() local function f(n) return 1 + f(n + 1) end return f(1) end\n"
        "function c_stack() return setmetatable({}, { __index = function(t, k) return t[k] end }).x end\n"
        "function gsub_stack() local function g(s) return (s:gsub('.', g)) end return g('ab') end\n"
        "function sort_stack() local function s(a, b) table.sort({ 2, 1 }, s) return a < b end\n"
        "  table.sort({ 2, 1 }, s) end\n"
        "function ok() return 'ok' end\n");
    static const char *const probes[] = {"lua_stack", "c_stack", "gsub_stack", "sort_stack"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        const struct logic_error *e = call_fails(m, probes[i], LOGIC_E_RUNTIME);
        CHECK(strstr(e->message, "stack overflow"));
        check_usable(m);
    }
    logic_unload(m);
}

TEST(memory_bombs)
{
    struct logic_limits lim = limits(5000, 16u << 20, 0);
    struct logic_module *m = load_with(
        "function grow() local t = {} for i = 1, 1e9 do t[i] = i end end\n"
        "function wide() local t = {} for i = 1, 1e9 do t['k' .. i] = true end end\n"
        "function rep() return #string.rep('x', 1e9) end\n"
        "function rep_sep() return #string.rep('x', 1e7, 'yy') end\n"
        "function double() local s = 'x' while true do s = s .. s end end\n"
        "function caught() local ok = pcall(function() local s = 'x' while true do s = s .. s end end)\n"
        "  local t = {} for i = 1, 1e9 do t[i] = i end end\n"
        "function concat() local t = {} for i = 1, 1e6 do t[i] = 'abcdefgh' end\n"
        "  local s = table.concat(t) return #(s .. s .. s .. s) end\n"
        "function ok() local t = {} for i = 1, 1e5 do t[i] = i end return 'ok' end\n",
        NO_ENTRIES, &lim);
    static const char *const probes[] = {"grow", "wide", "rep", "rep_sep", "double", "caught",
                                         "concat"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        call_fails(m, probes[i], LOGIC_E_MEMORY);
        check_usable(m);
    }
    logic_unload(m);
}

TEST(memory_limit_at_load)
{
    struct logic_limits tiny = limits(0, 4096, 0);
    struct logic_module *m = NULL;
    struct logic_error err;
    const char *src = "function f() end";
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_LUA, "t", src, strlen(src), NO_ENTRIES, &tiny, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MEMORY);
    struct logic_limits small = limits(0, 1u << 20, 0);
    src = "big = {} for i = 1, 1e7 do big[i] = i end";
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_LUA, "t", src, strlen(src), NO_ENTRIES, &small, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MEMORY);
}

TEST(output_limit)
{
    struct logic_limits lim = limits(0, 0, 64 * 1024);
    struct logic_module *m = load_with(
        "function big() return string.rep('a', 100000) end\n"
        "function many() local t = {} for i = 1, 100000 do t[i] = i end return t end\n"
        "function keys() local t = {} for i = 1, 100000 do t['k' .. i] = i end return t end\n"
        "function dag() local t = {} for i = 1, 60 do t = { t, t } end return t end\n"
        "function escapes() return string.rep('\\1', 20000) end\n"
        "function encode() return #json.encode(string.rep('a', 100000)) end\n"
        "function fits() return string.rep('a', 60000) end\n"
        "function ok() return 'ok' end\n",
        NO_ENTRIES, &lim);
    static const char *const probes[] = {"big", "many", "keys", "dag", "escapes"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        double t0 = now_ms();
        call_fails(m, probes[i], LOGIC_E_OUTPUT);
        CHECK(now_ms() - t0 < 1000);
        check_usable(m);
    }
    call_fails(m, "encode", LOGIC_E_RUNTIME);
    ASSERT_EQ(strlen(call(m, "fits", NULL)), 60002);
    logic_unload(m);
}

static void expect_syntax(const char *src, int line, int column, const char *needle)
{
    struct logic_module *m = NULL;
    struct logic_error err;
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_LUA, "orders", src, strlen(src), NO_ENTRIES, NULL, &m,
                         &err),
              ERR_INVALID);
    printf("    %d:%d %s\n", err.line, err.column, err.message);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    ASSERT_EQ(err.line, line);
    ASSERT_EQ(err.column, column);
    CHECK(strstr(err.message, needle));
    CHECK(m == NULL);
}

TEST(syntax_errors_with_line_and_column)
{
    expect_syntax("function reduce(s, e)\n  local x = = 1\nend\n", 2, 13, "near '='");
    expect_syntax("function f()\n  return 1\n", 3, 1, "near <eof>");
    expect_syntax("x = 1\ny = 2 2\n", 2, 7, "near '2'");
    expect_syntax("a = 'open\n", 1, 5, "unfinished string");
    expect_syntax("\r\nx = = 1", 2, 5, "near '='");
    expect_syntax("\x1bLua\x54\x00", 0, 0, "binary chunk");
}

TEST(missing_entry_points)
{
    const char *const entries[] = {"key", "apply", "reduce", NULL};
    const char *src = "function key(e) return e.id end\napply = 5\nlocal function reduce() end\n";
    struct logic_module *m = NULL;
    struct logic_error err;
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_LUA, "p", src, strlen(src), entries, NULL, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    ASSERT_STR(err.message, "not defined as a global function: apply, reduce");
    CHECK(m == NULL);
    /* calling an entry the module does not define */
    m = load("function ok() return 'ok' end");
    call_fails(m, "nope", LOGIC_E_MISSING);
    check_usable(m);
    logic_unload(m);
}

TEST(runtime_errors_carry_their_line)
{
    struct logic_module *m = load(
        "function f()\n"
        "  local t = nil\n"
        "  return t.x\n"
        "end\n"
        "function g() error({ code = 'E1', detail = { 1, 2 } }) end\n"
        "function h() error('plain', 0) end\n"
        "function ok() return 'ok' end\n");
    const struct logic_error *e = call_fails(m, "f", LOGIC_E_RUNTIME);
    ASSERT_EQ(e->line, 3);
    CHECK(strstr(e->message, "attempt to index a nil value"));
    e = call_fails(m, "g", LOGIC_E_RUNTIME);
    ASSERT_STR(e->message, "{\"code\":\"E1\",\"detail\":[1,2]}");
    ASSERT_EQ(e->line, 5);
    e = call_fails(m, "h", LOGIC_E_RUNTIME);
    ASSERT_STR(e->message, "plain");
    logic_unload(m);
}

TEST(log_ring_keeps_the_latest_lines)
{
    struct logic_module *m = load(
        "function many(n) for i = 1, n do log('line', i) end end\n"
        "function long() log(string.rep('\\195\\169', 2000)) end\n"
        "function shapes() log({ b = 1, a = { true } }, nil, 1.5, setmetatable({}, { __tostring = function() return 'T' end })) end\n");
    char *lines[LOGIC_LOG_LINES + 10];
    ASSERT_EQ(logic_logs(m, lines, 10), 0);
    call(m, "many", "250", NULL);
    size_t n = logic_logs(m, lines, LOGIC_LOG_LINES + 10);
    ASSERT_EQ(n, LOGIC_LOG_LINES);
    ASSERT_STR(lines[0], "line 151");
    ASSERT_STR(lines[n - 1], "line 250");
    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
    }
    ASSERT_EQ(logic_logs(m, lines, 3), 3);
    ASSERT_STR(lines[2], "line 250");
    for (size_t i = 0; i < 3; i++) {
        free(lines[i]);
    }
    call(m, "long", NULL);
    ASSERT_EQ(logic_logs(m, lines, 1), 1);
    ASSERT_EQ(strlen(lines[0]), LOGIC_LOG_LINE_BYTES - 2); /* cut before a split character */
    free(lines[0]);
    call(m, "shapes", NULL);
    ASSERT_EQ(logic_logs(m, lines, 1), 1);
    ASSERT_STR(lines[0], "{\"a\":[true],\"b\":1} nil 1.5 T");
    free(lines[0]);
    logic_unload(m);
}

TEST(modules_do_not_share_globals)
{
    struct logic_module *a = load("shared = 'from a'\nfunction get() return shared end\n"
                                  "function patch() string.upper = nil return 'patched' end\n");
    struct logic_module *b = load("function get() return shared end\n"
                                  "function up() return string.upper('b') end\n");
    ASSERT_STR(call(a, "get", NULL), "\"from a\"");
    ASSERT_STR(call(b, "get", NULL), "null");
    ASSERT_STR(call(a, "patch", NULL), "\"patched\"");
    ASSERT_STR(call(b, "up", NULL), "\"B\"");
    logic_unload(a);
    logic_unload(b);
}

/* Timing figures (printed, not asserted): one reduce call in fold and in call form. */
TEST(timing_of_reduce)
{
    const char *const entries[] = {"reduce", NULL};
    struct logic_module *m = load_with(REDUCER, entries, NULL);
    enum { N = 20000 };
    struct slice *ev = xmalloc(N * sizeof *ev);
    for (int i = 0; i < N; i++) {
        ev[i] = S(EVENTS[i % 3]);
    }
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    double t0 = now_ms();
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), ev, N, NULL, &out, NULL, &err), 0);
    double fold_us = (now_ms() - t0) * 1e3 / N;
    char state[512];
    snprintf(state, sizeof state, "%s", "null");
    t0 = now_ms();
    for (int i = 0; i < N; i++) {
        struct slice args[2] = {S(state), ev[i]};
        buf_reset(&out);
        ASSERT_EQ(logic_call(m, "reduce", args, 2, &out, &err), 0);
        snprintf(state, sizeof state, "%s", out.ptr);
    }
    double call_us = (now_ms() - t0) * 1e3 / N;
    t0 = now_ms();
    for (int i = 0; i < 200; i++) {
        struct logic_module *x = load_with(REDUCER, entries, NULL);
        logic_unload(x);
    }
    double load_us = (now_ms() - t0) * 1e3 / 200;
    printf("    reduce: %.2f us per event in a fold, %.2f us per call with state JSON in and "
           "out; load %.0f us\n",
           fold_us, call_us, load_us);
    buf_fini(&out);
    free(ev);
    logic_unload(m);
}

/* ---- ctx calls (command handlers) ---- */

struct host_log {
    char ops[256];
};

static int test_host(void *arg, const char *op, struct slice args, struct buf *out, char *why,
                     size_t cap)
{
    struct host_log *h = arg;
    size_t n = strlen(h->ops);
    snprintf(h->ops + n, sizeof h->ops - n, "%s%.*s;", op, (int)args.len, args.ptr);
    if (!strcmp(op, "fail")) {
        snprintf(why, cap, "no such thing");
        return ERR_NOTFOUND;
    }
    buf_adds(out, "{\"got\":");
    buf_add(out, args.ptr, args.len);
    buf_addc(out, '}');
    return 0;
}

TEST(ctx_calls_reach_the_host_with_json_and_back)
{
    struct logic_module *m = load("function decide(c, ctx)\n"
                                  "  local a = ctx.state('s-1')\n"
                                  "  local b = ctx.projection('p', c.key)\n"
                                  "  return {a = a, b = b, n = c.n}\n"
                                  "end\n"
                                  "function bad(c, ctx) return ctx.fail(1) end\n"
                                  "function sneaky(c, ctx) return ctx.other() end\n");
    static const char *const ops[] = {"state", "projection", "fail", NULL};
    struct host_log h = {""};
    struct logic_host host = {ops, test_host, &h};
    struct slice cmd = S("{\"key\":\"k\",\"n\":2}");
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    ASSERT_EQ(logic_call_ctx(m, "decide", &cmd, 1, &host, &out, &err), 0);
    ASSERT_STR(out.ptr, "{\"a\":{\"got\":[\"s-1\"]},\"b\":{\"got\":[\"p\",\"k\"]},\"n\":2}");
    ASSERT_STR(h.ops, "state[\"s-1\"];projection[\"p\",\"k\"];");
    buf_reset(&out);
    ASSERT_EQ(logic_call_ctx(m, "bad", &cmd, 1, &host, &out, &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_RUNTIME && strstr(err.message, "ctx.fail: no such thing"));
    ASSERT_EQ(logic_call_ctx(m, "sneaky", &cmd, 1, &host, &out, &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_RUNTIME); /* only the offered functions exist */
    buf_fini(&out);
    logic_unload(m);
}

/* ---- batches: logic_map and logic_fold_keyed (projections' key and apply) ---- */

static const char PROJECTION[] =
    "function key(e)\n"
    "  if e.skip then return nil end\n"
    "  return e.k\n"
    "end\n"
    "function apply(s, e)\n"
    "  if e.boom then error('bad event ' .. e.id) end\n"
    "  while e.spin do end\n"
    "  for _ = 1, (e.work or 0) do end\n"
    "  s = s or { n = 0, total = 0, ids = json.array() }\n"
    "  s.n = s.n + 1\n"
    "  s.total = s.total + e.amount\n"
    "  table.insert(s.ids, e.id)\n"
    "  if #s.ids > 3 then table.remove(s.ids, 1) end\n"
    "  return s\n"
    "end\n"
    "function nothing(e) end\n"
    "function keep(s, e) return s end\n"
    "function deep(e) local o = {} for _ = 2, e.d do o = { o = o } end return o end\n"
    "function big(e) return string.rep('x', e.size) end\n"
    "function ok() return 'ok' end\n";

/* Keys repeated and interleaved, a key of two-byte characters and an empty key, a skipped
 * event, floats. */
static const char *const PROJ_EVENTS[] = {
    "{\"id\":1,\"k\":\"a\",\"amount\":1.5}",  "{\"id\":2,\"k\":\"b\",\"amount\":2}",
    "{\"id\":3,\"k\":\"a\",\"amount\":0.25}", "{\"id\":4,\"k\":\"\xc3\xa9t\xc3\xa9\",\"amount\":7}",
    "{\"id\":5,\"k\":\"b\",\"amount\":-1}",   "{\"id\":6,\"k\":\"\",\"amount\":3}",
    "{\"id\":7,\"skip\":true,\"amount\":0}",  "{\"id\":8,\"k\":\"a\",\"amount\":1e2}",
    "{\"id\":9,\"k\":\"a\",\"amount\":2}",    "{\"id\":10,\"k\":\"b\",\"amount\":0.1}",
};
static const char *const PROJ_KEYS[] = {"a", "b", "a", "\xc3\xa9t\xc3\xa9", "b", "", "x", "a",
                                        "a", "b"};
enum { PROJ_N = sizeof PROJ_EVENTS / sizeof PROJ_EVENTS[0] };
static const char PROJ_STATES[] =
    "{\"b\":{\"n\":5,\"total\":10.5,\"ids\":[\"x\",\"y\"]},\"x\":null,\"zz\":{\"n\":1}}";

/* What the batches must give: the per-event calls, states crossing as JSON each time. */
static void expected_by_calls(struct logic_module *m, struct buf *keys_out, struct buf *states_out)
{
    char state[PROJ_N][512];
    buf_reset(keys_out);
    buf_reset(states_out);
    buf_addc(keys_out, '[');
    buf_addc(states_out, '[');
    for (int i = 0; i < PROJ_N; i++) {
        buf_adds(keys_out, i ? "," : "");
        buf_adds(keys_out, call(m, "key", PROJ_EVENTS[i], NULL));
        const char *prev = "null"; /* the latest state of this key, else the starting one */
        for (int j = i - 1; j >= 0 && !strcmp(prev, "null"); j--) {
            prev = strcmp(PROJ_KEYS[j], PROJ_KEYS[i]) ? "null" : state[j];
        }
        if (!strcmp(prev, "null") && !strcmp(PROJ_KEYS[i], "b")) {
            prev = "{\"n\":5,\"total\":10.5,\"ids\":[\"x\",\"y\"]}";
        }
        snprintf(state[i], sizeof state[i], "%s", call(m, "apply", prev, PROJ_EVENTS[i], NULL));
        buf_adds(states_out, i ? "," : "");
        buf_adds(states_out, state[i]);
    }
    buf_addc(keys_out, ']');
    buf_addc(states_out, ']');
}

static void slices_of(const char *const *texts, struct slice *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = S(texts[i]);
    }
}

/* Runs both batches on m and checks them against want_keys and want_states (out appended to
 * after a prefix that must stay). */
static void check_batches(struct logic_module *m, const char *want_keys, const char *want_states)
{
    struct slice ev[PROJ_N], keys[PROJ_N];
    slices_of(PROJ_EVENTS, ev, PROJ_N);
    slices_of(PROJ_KEYS, keys, PROJ_N);
    struct buf out;
    struct logic_error err;
    size_t failed_at = 99;
    buf_init(&out);
    buf_adds(&out, "prefix:");
    ASSERT_EQ(logic_map(m, "key", ev, PROJ_N, &out, &failed_at, &err), 0);
    ASSERT_STR(out.ptr + 7, want_keys);
    buf_reset(&out);
    buf_adds(&out, "prefix:");
    ASSERT_EQ(logic_fold_keyed(m, "apply", S(PROJ_STATES), keys, ev, PROJ_N, &out, &failed_at,
                               &err), 0);
    ASSERT_STR(out.ptr + 7, want_states);
    buf_reset(&out);
    ASSERT_EQ(logic_map(m, "nothing", ev, 2, &out, NULL, &err), 0);
    ASSERT_STR(out.ptr, "[null,null]");
    buf_reset(&out);
    ASSERT_EQ(logic_map(m, "key", ev, 0, &out, NULL, &err), 0);
    ASSERT_STR(out.ptr, "[]");
    buf_reset(&out);
    ASSERT_EQ(logic_fold_keyed(m, "apply", S(" {} "), keys, ev, 0, &out, NULL, &err), 0);
    ASSERT_STR(out.ptr, "[]");
    buf_fini(&out);
}

/* The module with its runtime's batches hidden, so runtime.c falls back to calls. */
static struct logic_runtime without_batches;

static void hide_batches(struct logic_module *m)
{
    struct logic_module_base *base = (struct logic_module_base *)(void *)m;
    without_batches = *base->rt;
    without_batches.map = NULL;
    without_batches.fold_keyed = NULL;
    base->rt = &without_batches;
}

TEST(batches_equal_the_per_event_calls_byte_for_byte)
{
    const char *const entries[] = {"key", "apply", NULL};
    struct logic_module *m = load_with(PROJECTION, entries, NULL);
    struct buf want_keys, want_states;
    buf_init(&want_keys);
    buf_init(&want_states);
    expected_by_calls(m, &want_keys, &want_states);
    ASSERT_STR(want_keys.ptr, "[\"a\",\"b\",\"a\",\"\xc3\xa9t\xc3\xa9\",\"b\",\"\",null,\"a\","
                              "\"a\",\"b\"]");
    CHECK(strstr(want_states.ptr, "{\"ids\":[\"x\",\"y\",2],\"n\":6,\"total\":12.5}"));
    CHECK(strstr(want_states.ptr, "{\"ids\":[1,3,8],\"n\":3,\"total\":101.75}"));
    CHECK(strstr(want_states.ptr, "{\"ids\":[4],\"n\":1,\"total\":7}"));
    printf("    %s\n", want_states.ptr);
    check_batches(m, want_keys.ptr, want_states.ptr);
    hide_batches(m); /* the fallback gives the same bytes */
    check_batches(m, want_keys.ptr, want_states.ptr);
    buf_fini(&want_keys);
    buf_fini(&want_states);
    logic_unload(m);
}

/* logic_project's state source in tests: PROJ_STATES's states, counting the asks per key. */
struct asked {
    char keys[16][16];
    int n;
    bool refuse;
};

static int test_state(void *arg, struct slice key, struct buf *out)
{
    struct asked *a = arg;
    for (int i = 0; i < a->n; i++) {
        CHECK(strlen(a->keys[i]) != key.len || memcmp(a->keys[i], key.ptr, key.len) != 0);
    }
    if (a->n < 16) {
        snprintf(a->keys[a->n++], sizeof a->keys[0], "%.*s", (int)key.len, key.ptr);
    }
    if (a->refuse) {
        return ERR_IO;
    }
    bool b = key.len == 1 && key.ptr[0] == 'b';
    buf_adds(out, b ? "{\"n\":5,\"total\":10.5,\"ids\":[\"x\",\"y\"]}" : "null");
    return 0;
}

TEST(project_equals_key_then_apply_and_asks_each_key_once)
{
    struct logic_module *m = load(PROJECTION);
    struct buf want_keys, want_states, want, out;
    buf_init(&want_keys);
    buf_init(&want_states);
    buf_init(&want);
    buf_init(&out);
    expected_by_calls(m, &want_keys, &want_states);
    /* the pairs the one call must give, built from the two-call answers */
    struct slice ks = {want_keys.ptr, want_keys.len}, ss = {want_states.ptr, want_states.len};
    struct slice k, st;
    size_t kp = 0, sp = 0;
    buf_addc(&want, '[');
    for (int i = 0; jsonx_next_item(ks, &kp, &k) && jsonx_next_item(ss, &sp, &st); i++) {
        buf_adds(&want, i ? "," : "");
        if (jsonx_kind(k) == 'n') {
            buf_adds(&want, "null");
            continue;
        }
        buf_addc(&want, '[');
        buf_add(&want, k.ptr, k.len);
        buf_addc(&want, ',');
        buf_add(&want, st.ptr, st.len);
        buf_addc(&want, ']');
    }
    buf_addc(&want, ']');
    struct slice ev[PROJ_N];
    slices_of(PROJ_EVENTS, ev, PROJ_N);
    struct asked a = {.n = 0};
    struct logic_error err;
    size_t failed_at = 99;
    buf_adds(&out, "prefix:");
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), 0);
    ASSERT_STR(out.ptr + 7, want.ptr);
    ASSERT_EQ(a.n, 4); /* a, b, été and "": once each */
    /* failures: the event to blame, nothing appended */
    buf_reset(&out);
    buf_adds(&out, "kept");
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":1,\"boom\":true}");
    a.n = 0;
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_RUNTIME && failed_at == 4);
    ev[4] = S("{\"id\":5,\"k\":7,\"amount\":1}"); /* a key that is not a string */
    a.n = 0;
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_OUTPUT && failed_at == 4);
    slices_of(PROJ_EVENTS, ev, PROJ_N);
    a.n = 0;
    a.refuse = true; /* the store cannot give a state */
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_INVALID && failed_at == 0);
    a.refuse = false;
    a.n = 0;
    ASSERT_EQ(logic_project(m, "key", "nope", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), ERR_INVALID);
    CHECK(err.kind == LOGIC_E_MISSING && failed_at == PROJ_N);
    ASSERT_STR(out.ptr, "kept");
    check_usable(m);
    hide_batches(m); /* a runtime without it says so and does nothing */
    struct logic_module_base *base = (struct logic_module_base *)(void *)m;
    without_batches.project = NULL;
    base->rt = &without_batches;
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, PROJ_N, &out, &failed_at,
                            &err), ERR_NOTFOUND);
    ASSERT_STR(out.ptr, "kept");
    buf_fini(&want_keys);
    buf_fini(&want_states);
    buf_fini(&want);
    buf_fini(&out);
    logic_unload(m);
}

TEST(project_keeps_the_cpu_and_output_budgets)
{
    /* one call covers the whole batch: a loop in apply stops at the CPU budget, results past
       the output budget fail the call, and the module serves on after both */
    struct logic_limits lim = limits(200, 0, 0);
    struct logic_module *m = load_with(PROJECTION, NO_ENTRIES, &lim);
    struct slice ev[3] = {S("{\"id\":1,\"k\":\"a\",\"amount\":1}"),
                          S("{\"id\":2,\"k\":\"a\",\"amount\":1,\"spin\":true}"),
                          S("{\"id\":3,\"k\":\"a\",\"amount\":1}")};
    struct asked a = {.n = 0};
    struct buf out;
    struct logic_error err;
    size_t failed_at = 99;
    buf_init(&out);
    buf_adds(&out, "kept");
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, 3, &out, &failed_at, &err),
              ERR_INVALID);
    CHECK(err.kind == LOGIC_E_CPU && failed_at == 1);
    ASSERT_STR(out.ptr, "kept");
    check_usable(m);
    logic_unload(m);
    lim = limits(0, 0, 60);
    m = load_with(PROJECTION, NO_ENTRIES, &lim);
    ev[1] = ev[0];
    a.n = 0;
    ASSERT_EQ(logic_project(m, "key", "apply", test_state, &a, ev, 3, &out, &failed_at, &err),
              ERR_INVALID);
    CHECK(err.kind == LOGIC_E_OUTPUT && failed_at < 3);
    ASSERT_STR(out.ptr, "kept");
    check_usable(m);
    buf_fini(&out);
    logic_unload(m);
}


/* Runs a batch expected to fail with kind at failed_at; out must stay "kept". */
static void batch_fails(struct logic_module *m, bool is_keyed, const char *entry,
                        struct slice states, const struct slice *keys, const struct slice *ev,
                        size_t n, enum logic_err_kind kind, size_t want_failed_at)
{
    struct buf out;
    struct logic_error err;
    size_t failed_at = 12345;
    buf_init(&out);
    buf_adds(&out, "kept");
    int rc = is_keyed ? logic_fold_keyed(m, entry, states, keys, ev, n, &out, &failed_at, &err)
                      : logic_map(m, entry, ev, n, &out, &failed_at, &err);
    printf("    %s -> %s at %zu: %s\n", entry, logic_err_name(err.kind), failed_at, err.message);
    ASSERT_EQ(rc, ERR_INVALID);
    ASSERT_EQ(err.kind, kind);
    ASSERT_EQ(failed_at, want_failed_at);
    ASSERT_STR(out.ptr, "kept");
    buf_fini(&out);
}

static void check_batch_failures(struct logic_module *m)
{
    struct slice ev[PROJ_N], keys[PROJ_N];
    slices_of(PROJ_EVENTS, ev, PROJ_N);
    slices_of(PROJ_KEYS, keys, PROJ_N);
    struct slice states = S(PROJ_STATES);
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":1,\"boom\":true}");
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_RUNTIME, 4);
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":1,\"boom\"");
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_INVALID, 4);
    batch_fails(m, false, "key", states, keys, ev, PROJ_N, LOGIC_E_INVALID, 4);
    ev[4] = S("{\"id\":5,\"k\":\"b\",\"amount\":\"x\"}"); /* arithmetic on a string */
    batch_fails(m, true, "apply", states, keys, ev, PROJ_N, LOGIC_E_RUNTIME, 4);
    batch_fails(m, true, "nope", states, keys, ev, PROJ_N, LOGIC_E_MISSING, PROJ_N);
    batch_fails(m, false, "nope", states, keys, ev, PROJ_N, LOGIC_E_MISSING, PROJ_N);
    batch_fails(m, true, "apply", S("[]"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    batch_fails(m, true, "apply", S("null"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    batch_fails(m, true, "apply", S("{\"a\":"), keys, ev, PROJ_N, LOGIC_E_INVALID, PROJ_N);
    check_usable(m);
}

TEST(batch_failure_names_the_event_and_leaves_out_unchanged)
{
    struct logic_module *m = load(PROJECTION);
    check_batch_failures(m);
    hide_batches(m);
    check_batch_failures(m);
    logic_unload(m);
}

/* A state may nest as deep as any argument (64), so the object of the states one level more. */
static void check_deep_states(struct logic_module *m)
{
    enum { D = LOGIC_MAX_JSON_DEPTH };
    char deep[2 * D + 1], states[2 * D + 32], want[2 * D + 8];
    memset(deep, '[', D);
    memset(deep + D, ']', D);
    deep[2 * D] = '\0';
    snprintf(states, sizeof states, "{\"a\":%s}", deep);
    snprintf(want, sizeof want, "[%s]", deep);
    struct slice ev = S("{}"), key = S("a");
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    ASSERT_EQ(logic_fold_keyed(m, "keep", S(states), &key, &ev, 1, &out, NULL, &err), 0);
    ASSERT_STR(out.ptr, want);
    snprintf(states, sizeof states, "{\"a\":[%s]}", deep);
    batch_fails(m, true, "keep", S(states), &key, &ev, 1, LOGIC_E_INVALID, 1);
    struct slice evs[3] = {S("{\"d\":64}"), S("{\"d\":1}"), S("{\"d\":65}")};
    buf_reset(&out);
    ASSERT_EQ(logic_map(m, "deep", evs, 2, &out, NULL, &err), 0); /* results nest 64 deep */
    batch_fails(m, false, "deep", S("{}"), NULL, evs, 3, LOGIC_E_OUTPUT, 2);
    buf_fini(&out);
}

TEST(batch_states_as_deep_as_arguments)
{
    struct logic_module *m = load(PROJECTION);
    check_deep_states(m);
    hide_batches(m);
    check_deep_states(m);
    logic_unload(m);
}

TEST(batch_cpu_budget_covers_the_whole_batch)
{
    enum { N = 1000 };
    struct logic_limits lim = limits(200, 0, 0);
    struct logic_module *m = load_with(PROJECTION, NO_ENTRIES, &lim);
    struct slice *ev = xmalloc(N * sizeof *ev);
    struct slice *keys = xmalloc(N * sizeof *keys);
    for (int i = 0; i < N; i++) {
        ev[i] = S("{\"id\":1,\"k\":\"a\",\"amount\":1}");
        keys[i] = S(i % 2 ? "a" : "b");
    }
    /* an infinite loop in event 500 of 1000 stops at the budget */
    ev[500] = S("{\"id\":1,\"k\":\"a\",\"amount\":1,\"spin\":true}");
    double t0 = now_ms();
    batch_fails(m, true, "apply", S("{}"), keys, ev, N, LOGIC_E_CPU, 500);
    double ms = now_ms() - t0;
    printf("    loop in event 500 of %d stopped after %.0f ms (budget 200)\n", N, ms);
    CHECK(ms < 1000);
    /* events of a few ms each: none exceeds the budget, the batch does */
    char heavy[128];
    snprintf(heavy, sizeof heavy, "{\"id\":1,\"k\":\"a\",\"amount\":1,\"work\":%d}", 300000);
    for (int i = 0; i < N; i++) {
        ev[i] = S(heavy);
    }
    struct buf out;
    struct logic_error err;
    size_t failed_at = 0;
    buf_init(&out);
    t0 = now_ms();
    ASSERT_EQ(logic_fold_keyed(m, "apply", S("{}"), keys, ev, N, &out, &failed_at, &err),
              ERR_INVALID);
    ms = now_ms() - t0;
    printf("    %d events of ~%.2f ms: cpu_limit at event %zu after %.0f ms\n", N,
           ms / (double)(failed_at + 1), failed_at, ms);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    CHECK(failed_at > 0 && failed_at < N);
    ASSERT_EQ(out.len, 0);
    check_usable(m);
    buf_fini(&out);
    free(ev);
    free(keys);
    logic_unload(m);
}

TEST(batch_output_budget_covers_the_whole_array)
{
    struct logic_limits lim = limits(0, 0, 1000);
    struct logic_module *m = load_with(PROJECTION, NO_ENTRIES, &lim);
    struct slice ev[20], keys[20];
    for (int i = 0; i < 20; i++) {
        ev[i] = S("{\"size\":100}"); /* 102 bytes of JSON each, a comma between */
        keys[i] = S("k");
    }
    /* 9 results take 1 + 9 * 103 = 928 bytes, a tenth would take 1031 */
    struct buf out;
    struct logic_error err;
    buf_init(&out);
    ASSERT_EQ(logic_map(m, "big", ev, 9, &out, NULL, &err), 0);
    ASSERT_EQ(out.len, 928);
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 9);
    ev[3] = S("{\"size\":5000}"); /* one result alone over the budget */
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 3);
    hide_batches(m);
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 3);
    ev[3] = ev[4];
    batch_fails(m, false, "big", S("{}"), keys, ev, 20, LOGIC_E_OUTPUT, 9);
    buf_fini(&out);
    logic_unload(m);
    /* a huge result with the default budget */
    m = load(PROJECTION);
    ev[1] = S("{\"size\":2000000}");
    batch_fails(m, false, "big", S("{}"), keys, ev, 3, LOGIC_E_OUTPUT, 1);
    check_usable(m);
    logic_unload(m);
}

/* Figures (printed, not asserted): a projection's key and apply over 10,000 events of 100
 * keys, as batches and as the per-event calls with the state crossing as JSON. */
TEST(timing_of_batches)
{
    enum { N = 10000, KEYS = 100 };
    const char *const entries[] = {"key", "apply", NULL};
    struct logic_module *m = load_with(PROJECTION, entries, NULL);
    char(*texts)[128] = xmalloc(N * sizeof *texts);
    char(*names)[16] = xmalloc(KEYS * sizeof *names);
    struct slice *ev = xmalloc(N * sizeof *ev);
    struct slice *keys = xmalloc(N * sizeof *keys);
    for (int i = 0; i < KEYS; i++) {
        snprintf(names[i], sizeof names[i], "order-%d", i);
    }
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "{\"id\":%d,\"k\":\"%s\",\"amount\":%d.25}", i,
                 names[(i * 7) % KEYS], i % 50);
        ev[i] = S(texts[i]);
        keys[i] = S(names[(i * 7) % KEYS]);
    }
    struct buf mapped, folded, by_calls, out;
    struct logic_error err;
    buf_init(&mapped);
    buf_init(&folded);
    buf_init(&by_calls);
    buf_init(&out);
    double t0 = now_ms();
    ASSERT_EQ(logic_map(m, "key", ev, N, &mapped, NULL, &err), 0);
    ASSERT_EQ(logic_fold_keyed(m, "apply", S("{}"), keys, ev, N, &folded, NULL, &err), 0);
    double batch_ms = now_ms() - t0;
    struct buf *state = xcalloc(KEYS, sizeof *state);
    t0 = now_ms();
    buf_addc(&by_calls, '[');
    for (int i = 0; i < N; i++) {
        buf_reset(&out);
        ASSERT_EQ(logic_call(m, "key", &ev[i], 1, &out, &err), 0);
        struct buf *s = &state[(i * 7) % KEYS];
        struct slice args[2] = {{s->len ? s->ptr : "null", s->len ? s->len : 4}, ev[i]};
        buf_reset(&out);
        ASSERT_EQ(logic_call(m, "apply", args, 2, &out, &err), 0);
        buf_reset(s);
        buf_add(s, out.ptr, out.len);
        buf_adds(&by_calls, i ? "," : "");
        buf_add(&by_calls, out.ptr, out.len);
    }
    buf_addc(&by_calls, ']');
    double calls_ms = now_ms() - t0;
    ASSERT_STR(folded.ptr, by_calls.ptr); /* the same 10,000 states, byte for byte */
    printf("  figure: Lua key+apply over %d events of %d keys: %.0f events/s batched "
           "(map + fold_keyed), %.0f events/s per-event calls\n",
           N, KEYS, N / batch_ms * 1e3, N / calls_ms * 1e3);
    for (int i = 0; i < KEYS; i++) {
        buf_fini(&state[i]);
    }
    free(state);
    buf_fini(&mapped);
    buf_fini(&folded);
    buf_fini(&by_calls);
    buf_fini(&out);
    free(texts);
    free(names);
    free(ev);
    free(keys);
    logic_unload(m);
}
