/* logic/tick_rt: the Tick runtime behind logic/runtime.h (load, call, fold, budgets). */
#include <string.h>

#include "logic/runtime.h"
#include "logic/tick_rt.h"
#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"

static const char *const REDUCE[] = {"reduce", NULL};

/* A user aggregate: Created sets the profile and a counter, Renamed changes the name and
 * counts, Tagged appends a tag once. */
static const char SPEC[] =
    "{\"Created\": [{\"set\": {\"target\": \"\", \"value\": {\"name\": \"$.data.name\", "
    "\"id\": \"$.id\"}}}, {\"set\": {\"target\": \"n\", \"value\": 1}}],"
    " \"Renamed\": [{\"set\": {\"target\": \"name\", \"value\": \"$.data.name\"}}, "
    "{\"increment\": {\"target\": \"n\"}}],"
    " \"Tagged\": {\"append_unique\": {\"target\": \"tags\", \"value\": \"$.data.tag\"}},"
    " \"Priced\": {\"set\": {\"target\": \"price\", \"value\": \"$.data.p\"}}}";

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static struct logic_module *load(const char *src, const struct logic_limits *lim)
{
    struct logic_module *m = NULL;
    struct logic_error err;
    int rc = logic_load(NULL, LOGIC_LANG_TICK, "t", src, strlen(src), REDUCE, lim, &m, &err);
    if (rc) {
        fprintf(stderr, "  load: %s %s\n", logic_err_name(err.kind), err.message);
    }
    ASSERT_EQ(rc, 0);
    return m;
}

/* Folds events from state and checks the result text. */
static void fold_is(struct logic_module *m, const char *state, const char *const *evs, size_t n,
                    const char *want)
{
    struct slice sl[16];
    for (size_t i = 0; i < n; i++) {
        sl[i] = S(evs[i]);
    }
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed = 99;
    int rc = logic_fold(m, "reduce", S(state), sl, n, NULL, &out, &failed, &err);
    if (rc) {
        fprintf(stderr, "  fold: %s %s\n", logic_err_name(err.kind), err.message);
    }
    ASSERT_EQ(rc, 0);
    ASSERT_STR(out.ptr ? out.ptr : "", want);
    buf_fini(&out);
}

static int no_host(void *arg, const char *op, struct slice args, struct buf *out, char *why,
                   size_t why_cap)
{
    (void)arg, (void)op, (void)args, (void)out;
    snprintf(why, why_cap, "never called");
    return ERR_INVALID;
}

static const char *const EVENTS[] = {
    "{\"type\":\"Created\",\"key\":\"user:1\",\"id\":\"1\",\"data\":{\"name\":\"Ada\"},"
    "\"metadata\":{}}",
    "{\"type\":\"Renamed\",\"key\":\"user:1\",\"id\":\"1\",\"data\":{\"name\":\"Ada L\"},"
    "\"metadata\":{}}",
    "{\"type\":\"Unknown\",\"key\":\"user:1\",\"id\":\"1\",\"data\":{},\"metadata\":{}}",
    "{\"type\":\"Tagged\",\"key\":\"user:1\",\"id\":\"1\",\"data\":{\"tag\":\"x\"},"
    "\"metadata\":{}}",
    "{\"type\":\"Tagged\",\"key\":\"user:1\",\"id\":\"1\",\"data\":{\"tag\":\"x\"},"
    "\"metadata\":{}}",
};

TEST(names)
{
    ASSERT_EQ(logic_lang_parse("tick"), LOGIC_LANG_TICK);
    ASSERT_EQ(logic_lang_parse("json"), LOGIC_LANG_JSON);
    ASSERT_STR(logic_lang_name(LOGIC_LANG_TICK), "tick");
    ASSERT_STR(logic_lang_name(LOGIC_LANG_JSON), "json");
    struct logic_module *m = NULL;
    struct logic_error err;
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_JSON, "doc", "{}", 2, NULL, NULL, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_STR(err.message, "json documents are not code");
    CHECK(m == NULL);
}

TEST(fold_applies_each_type_s_handler_and_leaves_unknown_types_alone)
{
    struct logic_module *m = load(SPEC, NULL);
    fold_is(m, "null", EVENTS, 5, "{\"name\":\"Ada L\",\"id\":\"1\",\"n\":2,\"tags\":[\"x\"]}");
    fold_is(m, "null", EVENTS + 2, 1, "{}");                  /* no handler, from null: {} */
    fold_is(m, "{\"a\":[1,2.5]}", EVENTS + 2, 1, "{\"a\":[1,2.5]}"); /* unchanged */
    fold_is(m, "null", EVENTS, 0, "null");                     /* nothing folded */
    /* an event without a type, or whose type is not a string, has no handler */
    const char *untyped[] = {"{\"data\":{}}", "{\"type\":7}"};
    fold_is(m, "{\"k\":1}", untyped, 2, "{\"k\":1}");
    /* the fold equals the per-event calls, each state crossing as JSON */
    struct buf state, next;
    buf_init(&state);
    buf_init(&next);
    buf_adds(&state, "null");
    struct logic_error err;
    for (size_t i = 0; i < 5; i++) {
        struct slice args[2] = {{state.ptr, state.len}, S(EVENTS[i])};
        buf_reset(&next);
        ASSERT_EQ(logic_call(m, "reduce", args, 2, &next, &err), 0);
        buf_reset(&state);
        buf_add(&state, next.ptr, next.len);
    }
    ASSERT_STR(state.ptr, "{\"name\":\"Ada L\",\"id\":\"1\",\"n\":2,\"tags\":[\"x\"]}");
    /* other entries are not defined; reduce needs both arguments */
    struct slice one = S("null");
    ASSERT_EQ(logic_call(m, "apply", &one, 1, &next, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    ASSERT_EQ(logic_call(m, "reduce", &one, 1, &next, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    struct logic_host host = {.ops = REDUCE, .fn = no_host, .arg = NULL};
    ASSERT_EQ(logic_call_ctx(m, "reduce", &one, 1, &host, &next, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    CHECK(strstr(err.message, "no ctx calls"));
    buf_fini(&state);
    buf_fini(&next);
    logic_unload(m);
}

TEST(numbers_and_strings_round_trip)
{
    struct logic_module *m = load(SPEC, NULL);
    const char *evs[] = {
        "{\"type\":\"Priced\",\"data\":{\"p\":0.1}}",
    };
    fold_is(m, "{}", evs, 1, "{\"price\":0.1}");
    evs[0] = "{\"type\":\"Priced\",\"data\":{\"p\":2.0}}";
    fold_is(m, "{}", evs, 1, "{\"price\":2.0}");
    evs[0] = "{\"type\":\"Priced\",\"data\":{\"p\":-1e300}}";
    fold_is(m, "{}", evs, 1, "{\"price\":-1e+300}");
    evs[0] = "{\"type\":\"Priced\",\"data\":{\"p\":123456789012345678901234}}";
    fold_is(m, "{}", evs, 1, "{\"price\":1.2345678901234569e+23}"); /* past int64: a real */
    evs[0] = "{\"type\":\"Priced\",\"data\":{\"p\":\"\\u00e9\\n\\\"\"}}";
    fold_is(m, "{}", evs, 1, "{\"price\":\"\xc3\xa9\\n\\\"\"}");
    logic_unload(m);
}

TEST(load_errors)
{
    struct logic_module *m = NULL;
    struct logic_error err;
    static const char *const not_object[] = {"[]", "\"x\"", "{", "{\"a\":[],\"a\":[]}", ""};
    for (size_t i = 0; i < sizeof not_object / sizeof not_object[0]; i++) {
        const char *src = not_object[i];
        ASSERT_EQ(logic_load(NULL, LOGIC_LANG_TICK, "t", src, strlen(src), REDUCE, NULL, &m,
                             &err), ERR_INVALID);
        ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    }
    const char *bad = "{\"Ok\": [], \"Broken\": [{\"set\": {\"target\": \"a\"}}]}";
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_TICK, "t", bad, strlen(bad), REDUCE, NULL, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    CHECK(strncmp(err.message, "Broken: $[0]", 12) == 0);
    bad = "{\"X\": {\"frobnicate\": {}}}";
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_TICK, "t", bad, strlen(bad), REDUCE, NULL, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_SYNTAX);
    CHECK(strstr(err.message, "X: $"));
    /* a projection's or a view's entries are not there */
    static const char *const proj[] = {"key", "apply", NULL};
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_TICK, "t", "{}", 2, proj, NULL, &m, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MISSING);
    CHECK(strstr(err.message, "key, apply"));
    ASSERT_EQ(logic_load(NULL, LOGIC_LANG_TICK, "t", "{}", 2, NULL, NULL, &m, &err), 0);
    logic_unload(m);
}

TEST(runtime_errors_name_the_type_and_the_operation)
{
    struct logic_module *m = load("{\"Inc\": [{\"set\": {\"target\": \"a\", \"value\": 1}}, "
                                  "{\"increment\": {\"target\": \"s\"}}]}", NULL);
    struct slice ev[3] = {S("{\"type\":\"Inc\"}"), S("{\"type\":\"Inc\"}"),
                          S("{\"type\":\"Inc\"}")};
    struct buf out;
    buf_init(&out);
    buf_adds(&out, "keep");
    struct logic_error err;
    size_t failed = 0;
    ASSERT_EQ(logic_fold(m, "reduce", S("{\"s\":\"text\"}"), ev, 3, NULL, &out, &failed, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_RUNTIME);
    ASSERT_EQ(failed, 0);
    CHECK(strncmp(err.message, "Inc: $[1]: ", 11) == 0);
    ASSERT_STR(out.ptr, "keep"); /* out unchanged */
    /* arguments that are not JSON, not objects, or too deep */
    ASSERT_EQ(logic_fold(m, "reduce", S("{\"s\":"), ev, 3, NULL, &out, &failed, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed, 3);
    struct slice bad[2] = {S("{\"type\":\"Inc\"}"), S("[1]")};
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), bad, 2, NULL, &out, &failed, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    ASSERT_EQ(failed, 1);
    struct buf deep;
    buf_init(&deep);
    for (int i = 0; i < LOGIC_MAX_JSON_DEPTH + 1; i++) {
        buf_adds(&deep, "{\"a\":");
    }
    buf_adds(&deep, "1");
    for (int i = 0; i < LOGIC_MAX_JSON_DEPTH + 1; i++) {
        buf_addc(&deep, '}');
    }
    ASSERT_EQ(logic_fold(m, "reduce", (struct slice){deep.ptr, deep.len}, ev, 1, NULL, &out,
                         &failed, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_INVALID);
    CHECK(strstr(err.message, "deeper"));
    ASSERT_STR(out.ptr, "keep");
    buf_fini(&deep);
    buf_fini(&out);
    logic_unload(m);
}

/* Each op sets one member to a copy of the whole state, so the state (and the work of each
 * copy) grows geometrically: Tick's step budget runs out within one event. */
static void exploding_spec(struct buf *b, int ops)
{
    buf_adds(b, "{\"Boom\": [");
    for (int i = 0; i < ops; i++) {
        buf_printf(b, "%s{\"set\": {\"target\": \"%c\", \"value\": \"@\"}}", i ? "," : "",
                   i % 2 ? 'a' : 'b');
    }
    buf_adds(b, "]}");
}

TEST(step_budget_is_the_cpu_budget_of_an_event)
{
    struct buf src;
    buf_init(&src);
    exploding_spec(&src, 40);
    struct logic_module *m = load(src.ptr, NULL);
    struct slice ev = S("{\"type\":\"Boom\"}");
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed = 9;
    ASSERT_EQ(logic_fold(m, "reduce", S("{}"), &ev, 1, NULL, &out, &failed, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    ASSERT_EQ(failed, 0);
    CHECK(strstr(err.message, "Boom: $[") && strstr(err.message, "step budget"));
    struct slice args[2] = {S("{}"), ev};
    ASSERT_EQ(logic_call(m, "reduce", args, 2, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    ASSERT_EQ(out.len, 0);
    buf_fini(&out);
    buf_fini(&src);
    logic_unload(m);
}

TEST(fold_cpu_budget_covers_the_whole_fold)
{
    /* every event copies a 5,000-element state: 2,000 events take far more than 1 ms */
    struct logic_module *m = load("{\"Inc\": {\"increment\": {\"target\": \"n\"}}}",
                                  &(struct logic_limits){.cpu_ms = 1});
    struct buf state;
    buf_init(&state);
    buf_adds(&state, "{\"big\":[");
    for (int i = 0; i < 5000; i++) {
        buf_printf(&state, "%s%d", i ? "," : "", i);
    }
    buf_adds(&state, "]}");
    enum { N = 2000 };
    struct slice *ev = xcalloc(N, sizeof(*ev));
    for (size_t i = 0; i < N; i++) {
        ev[i] = S("{\"type\":\"Inc\"}");
    }
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed = N;
    ASSERT_EQ(logic_fold(m, "reduce", (struct slice){state.ptr, state.len}, ev, N, NULL, &out,
                         &failed, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_CPU);
    CHECK(strstr(err.message, "CPU budget of 1 ms"));
    CHECK(failed < N && failed % TICK_RT_CPU_CHECK_EVENTS == TICK_RT_CPU_CHECK_EVENTS - 1);
    ASSERT_EQ(out.len, 0);
    free(ev);
    buf_fini(&out);
    buf_fini(&state);
    logic_unload(m);
}

TEST(memory_budget_bounds_the_state)
{
    /* 100 values at most (6,400 / TICK_RT_NODE_BYTES) */
    struct logic_limits lim = {.mem_bytes = 100 * TICK_RT_NODE_BYTES};
    struct logic_module *m = load("{\"Add\": {\"concat\": {\"target\": \"xs\", "
                                  "\"value\": \"$.data.xs\"}}}", &lim);
    struct slice ev = S("{\"type\":\"Add\",\"data\":{\"xs\":[1,2,3,4,5,6,7,8,9,10]}}");
    struct slice evs[20];
    for (int i = 0; i < 20; i++) {
        evs[i] = ev;
    }
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed = 0;
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), evs, 20, NULL, &out, &failed, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_MEMORY);
    ASSERT_EQ(failed, 9); /* the 10th event takes the state past 100 values */
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), evs, 9, NULL, &out, &failed, &err), 0);
    buf_fini(&out);
    logic_unload(m);
}

TEST(output_budget_covers_the_encoded_state)
{
    struct logic_limits lim = {.output_bytes = 64};
    struct logic_module *m = load(SPEC, &lim);
    struct slice ok = S("{\"type\":\"Priced\",\"data\":{\"p\":\"short\"}}");
    struct slice big = S("{\"type\":\"Priced\",\"data\":{\"p\":\"0123456789012345678901234567890"
                         "1234567890123456789012345678901234567890\"}}");
    struct buf out;
    buf_init(&out);
    struct logic_error err;
    size_t failed = 0;
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), &ok, 1, NULL, &out, &failed, &err), 0);
    buf_reset(&out);
    struct slice both[2] = {big, ok}; /* only the final state counts */
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), both, 2, NULL, &out, &failed, &err), 0);
    buf_reset(&out);
    ASSERT_EQ(logic_fold(m, "reduce", S("null"), &big, 1, NULL, &out, &failed, &err),
              ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_OUTPUT);
    ASSERT_EQ(failed, 1); /* no event to blame: the final state */
    ASSERT_EQ(out.len, 0);
    struct slice args[2] = {S("null"), big};
    ASSERT_EQ(logic_call(m, "reduce", args, 2, &out, &err), ERR_INVALID);
    ASSERT_EQ(err.kind, LOGIC_E_OUTPUT);
    /* a projection-style batch through runtime.c's fallback works too */
    struct slice keys[2] = {S("a"), S("b")};
    struct slice evs[2] = {ok, ok};
    ASSERT_EQ(logic_fold_keyed(m, "reduce", S("{}"), keys, evs, 2, &out, &failed, &err), 0);
    ASSERT_STR(out.ptr, "[{\"price\":\"short\"},{\"price\":\"short\"}]");
    buf_fini(&out);
    logic_unload(m);
}
