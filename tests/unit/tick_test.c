/* logic/tick: golden cases (tests/unit/golden/tick/, one JSON array of cases a file: handler, state, event -> expected
 * state or error) for every operation and predicate, and the limits. */
#include <dirent.h>
#include <string.h>

#include "json/jpath.h"
#include "logic/tick.h"
#include "unit.h"
#include "util/errors.h"
#include "util/limits.h"

#ifndef TICK_TEST_GOLDEN
#define TICK_TEST_GOLDEN "tests/unit/golden/tick"
#endif

/* Compiles a handler given as a JSON tree. */
static int compile_tree(json_t *handler, struct tick_plan **plan, struct tick_error *err)
{
    char *text = json_dumps(handler, JSON_ENCODE_ANY | JSON_COMPACT);
    int rc = tick_compile(text, strlen(text), NULL, plan, err);
    free(text);
    return rc;
}

static json_t *event_of(json_t *c)
{
    json_t *e = json_object_get(c, "event");
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *key = json_string_value(json_object_get(e, "key"));
    return jpath_event_new(type ? type : "was_tested", key ? key : "thing:abc",
                           json_object_get(e, "data"), json_object_get(e, "metadata"));
}

/* Runs one case; returns true when it gives what it expects (prints why not). */
static bool run_case(const char *file, json_t *c)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *want_err = json_object_get(c, "error");
    struct tick_plan *plan = NULL;
    struct tick_error err = {0};
    json_t *ev = event_of(c);
    json_t *got = NULL;
    int rc = compile_tree(json_object_get(c, "handler"), &plan, &err);
    if (rc == 0) rc = tick_apply(plan, json_object_get(c, "state"), ev, &got, &err);
    bool ok;
    if (want_err) {
        const char *code = json_string_value(json_object_get(want_err, "code"));
        const char *path = json_string_value(json_object_get(want_err, "path"));
        ok = rc < 0 && strcmp(err_name(rc), code) == 0 && (!path || strcmp(path, err.path) == 0);
    } else {
        ok = rc == 0 && json_equal(got, json_object_get(c, "expect"));
    }
    if (!ok) {
        char *g = got ? json_dumps(got, JSON_COMPACT) : NULL;
        fprintf(stderr, "  %s: %s: rc %d (%s) path %s msg %s got %s\n", file, name, rc,
                rc ? err_name(rc) : "ok", err.path, err.msg, g ? g : "-");
        free(g);
    }
    json_decref(got);
    json_decref(ev);
    tick_plan_free(plan);
    return ok;
}

TEST(golden)
{
    DIR *d = opendir(TICK_TEST_GOLDEN);
    CHECK(d);
    struct dirent *de;
    int cases = 0, failed = 0, files = 0;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", TICK_TEST_GOLDEN, de->d_name);
        json_error_t jerr;
        json_t *doc = json_load_file(path, 0, &jerr);
        if (!doc) fprintf(stderr, "  %s: %s line %d\n", path, jerr.text, jerr.line);
        CHECK(doc && json_is_array(doc));
        files++;
        size_t i;
        json_t *c;
        json_array_foreach (doc, i, c) {
            cases++;
            failed += !run_case(de->d_name, c);
        }
        json_decref(doc);
    }
    closedir(d);
    printf("  %d golden cases in %d files\n", cases, files);
    CHECK(files > 0);
    ASSERT_EQ(failed, 0);
}

static int compile_text(const char *text, struct tick_error *err)
{
    struct tick_plan *plan = NULL;
    int rc = tick_compile(text, strlen(text), NULL, &plan, err);
    tick_plan_free(plan);
    return rc;
}

TEST(limit_operations_per_handler)
{
    size_t cap = (size_t)LIMIT_TICK_OPS + 2;
    char *text = malloc(cap * 40);
    size_t n = 0;
    text[n++] = '[';
    for (size_t i = 0; i <= LIMIT_TICK_OPS; i++) {
        n += (size_t)sprintf(text + n, "%s{\"unset\":{\"target\":\"a\"}}", i ? "," : "");
    }
    text[n++] = ']';
    text[n] = '\0';
    struct tick_error err;
    ASSERT_EQ(compile_text(text, &err), ERR_TOOBIG);
    char want[32];
    snprintf(want, sizeof want, "$[%d]", LIMIT_TICK_OPS);
    ASSERT_STR(err.path, want);
    /* one fewer fits */
    char *last = strrchr(text, ',');
    strcpy(last, "]");
    ASSERT_EQ(compile_text(text, &err), 0);
    free(text);
}

/* levels nested ifs around one operation. */
static int compile_nested_ifs(int levels, struct tick_error *err)
{
    char text[4096];
    size_t n = 0;
    for (int i = 0; i < levels; i++) {
        n += (size_t)sprintf(text + n, "{\"if\":{\"exists\":\"@\"},\"then\":");
    }
    n += (size_t)sprintf(text + n, "{\"unset\":{\"target\":\"a\"}}");
    for (int i = 0; i < levels; i++) text[n++] = '}';
    text[n] = '\0';
    return compile_text(text, err);
}

TEST(limit_if_nesting)
{
    struct tick_error err;
    ASSERT_EQ(compile_nested_ifs(LIMIT_TICK_DEPTH, &err), 0);
    ASSERT_EQ(compile_nested_ifs(LIMIT_TICK_DEPTH + 1, &err), ERR_TOOBIG);
    CHECK(strstr(err.path, ".then.then") != NULL);
    CHECK(strstr(err.msg, "nested") != NULL);
}

TEST(limit_handler_bytes)
{
    size_t n = (size_t)LIMIT_TICK_HANDLER_BYTES + 1;
    char *text = malloc(n + 1);
    memset(text, ' ', n);
    text[0] = '[';
    text[n - 1] = ']';
    text[n] = '\0';
    struct tick_error err;
    ASSERT_EQ(compile_text(text, &err), ERR_TOOBIG);
    free(text);
}

/* Applies the handler to state until it fails; returns the error. */
static int apply_until_error(const char *handler, struct tick_error *err, int *rounds)
{
    struct tick_plan *plan;
    ASSERT_EQ(tick_compile(handler, strlen(handler), NULL, &plan, err), 0);
    json_t *ev = jpath_event_new("t", "a:b", NULL, NULL);
    json_t *state = json_object();
    int rc = 0;
    for (*rounds = 0; rc == 0 && *rounds < 100000; (*rounds)++) {
        json_t *next;
        rc = tick_apply(plan, state, ev, &next, err);
        if (rc == 0) {
            json_decref(state);
            state = next;
        }
    }
    json_decref(state);
    json_decref(ev);
    tick_plan_free(plan);
    return rc;
}

TEST(limit_array_items)
{
    struct tick_error err;
    int rounds;
    ASSERT_EQ(apply_until_error("{\"append\":{\"target\":\"a\",\"value\":1}}", &err, &rounds),
              ERR_TOOBIG);
    ASSERT_EQ(rounds, LIMIT_TICK_ARRAY_ITEMS + 1);
    ASSERT_STR(err.path, "$");
    CHECK(strstr(err.msg, "array") != NULL);
}

TEST(limit_steps_and_state_size_stop_doubling)
{
    /* each op doubles the state: the budget or the state limits stop it */
    char text[LIMIT_TICK_OPS * 40];
    size_t n = (size_t)sprintf(text, "[{\"set\":{\"target\":\"x\",\"value\":[1,2,3,4]}}");
    for (int i = 0; i < 40; i++) {
        n += (size_t)sprintf(text + n, ",{\"set\":{\"target\":\"s%d\",\"value\":\"@\"}}", i);
    }
    strcpy(text + n, "]");
    struct tick_error err;
    int rounds;
    ASSERT_EQ(apply_until_error(text, &err, &rounds), ERR_TOOBIG);
    ASSERT_EQ(rounds, 1);
    CHECK(strstr(err.msg, "step budget") != NULL);
}

TEST(limit_state_depth)
{
    struct tick_error err;
    int rounds;
    ASSERT_EQ(apply_until_error("{\"set\":{\"target\":\"a\",\"value\":\"@\"}}", &err, &rounds),
              ERR_TOOBIG);
    CHECK(rounds >= LIMIT_TICK_STATE_DEPTH - 1 && rounds <= LIMIT_TICK_STATE_DEPTH + 2);
}

TEST(input_state_is_not_changed)
{
    const char *h = "[{\"increment\":{\"target\":\"n\"}},{\"append\":{\"target\":\"l\",\"value\":1}}]";
    struct tick_plan *plan;
    struct tick_error err;
    ASSERT_EQ(tick_compile(h, strlen(h), NULL, &plan, &err), 0);
    json_t *state = json_loads("{\"n\":1,\"l\":[]}", 0, NULL);
    json_t *ev = jpath_event_new("t", "a:b", NULL, NULL);
    json_t *next;
    ASSERT_EQ(tick_apply(plan, state, ev, &next, &err), 0);
    char *s = json_dumps(state, JSON_COMPACT);
    char *t = json_dumps(next, JSON_COMPACT);
    ASSERT_STR(s, "{\"n\":1,\"l\":[]}");
    ASSERT_STR(t, "{\"n\":2,\"l\":[1]}");
    free(s);
    free(t);
    json_decref(state);
    json_decref(next);
    json_decref(ev);
    tick_plan_free(plan);
}
