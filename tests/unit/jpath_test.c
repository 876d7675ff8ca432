/* json/jpath: compiling the j17 JSONPath subset, reading events and states, writing states. */
#include <string.h>

#include "json/jpath.h"
#include "unit.h"
#include "util/errors.h"
#include "util/limits.h"

static struct jpath *compile_ok(const char *text, enum jpath_mode mode)
{
    struct jpath *p = NULL;
    struct jpath_error err;
    int rc = jpath_compile(text, strlen(text), mode, &p, &err);
    if (rc != 0) {
        fprintf(stderr, "  compile %s: %s at %zu\n", text, err.msg, err.pos);
    }
    ASSERT_EQ(rc, 0);
    return p;
}

static int compile_err(const char *text, enum jpath_mode mode, size_t *pos)
{
    struct jpath *p = (struct jpath *)1;
    struct jpath_error err;
    int rc = jpath_compile(text, strlen(text), mode, &p, &err);
    CHECK(p == NULL);
    *pos = err.pos;
    return rc;
}

/* The dump of what path reads in ctx, or "<missing>". Caller frees. */
static char *read_dump(const char *text, const struct jpath_ctx *ctx)
{
    struct jpath *p = compile_ok(text, JPATH_VALUE);
    json_t *v = jpath_get(p, ctx);
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("<missing>");
    jpath_free(p);
    return s;
}

static void check_read(const char *text, const struct jpath_ctx *ctx, const char *want)
{
    char *got = read_dump(text, ctx);
    ASSERT_STR(got, want);
    free(got);
}

TEST(reads_event_members_and_state)
{
    json_t *data = json_loads("{\"items\":[{\"price\":5},{\"price\":7}],\"n\":1}", 0, NULL);
    json_t *meta = json_loads("{\"actor\":{\"type\":\"user\",\"id\":\"u1\"},\"timestamp\":9}", 0,
                              NULL);
    json_t *ev = jpath_event_new("was_placed", "order:abc", data, meta);
    json_t *state = json_loads("{\"count\":3,\"tags\":[\"a\",\"b\"]}", 0, NULL);
    struct jpath_ctx ctx = {ev, state};
    check_read("$.data.items[0].price", &ctx, "5");
    check_read("$.data.items[-1].price", &ctx, "7");
    check_read("$.data.items[2]", &ctx, "<missing>");
    check_read("$.data.items[-3]", &ctx, "<missing>");
    check_read("$.data.n.deeper", &ctx, "<missing>");
    check_read("$.data.n[0]", &ctx, "<missing>");
    check_read("$.metadata.actor.id", &ctx, "\"u1\"");
    check_read("$.metadata.timestamp", &ctx, "9");
    check_read("$.key", &ctx, "\"order:abc\"");
    check_read("$.id", &ctx, "\"abc\"");
    check_read("$.type", &ctx, "\"was_placed\"");
    check_read("@.count", &ctx, "3");
    check_read("@.tags[-1]", &ctx, "\"b\"");
    check_read("@", &ctx, "{\"count\":3,\"tags\":[\"a\",\"b\"]}");
    struct jpath_ctx empty = {NULL, NULL};
    check_read("$.data", &empty, "<missing>");
    check_read("@.count", &empty, "<missing>");
    json_decref(ev);
    json_decref(data);
    json_decref(meta);
    json_decref(state);
}

TEST(event_id_without_colon_is_the_key)
{
    json_t *ev = jpath_event_new("t", "global", NULL, NULL);
    struct jpath_ctx ctx = {ev, NULL};
    check_read("$.id", &ctx, "\"global\"");
    check_read("$.data", &ctx, "null");
    check_read("$", &ctx,
               "{\"type\":\"t\",\"key\":\"global\",\"id\":\"global\",\"data\":null,"
               "\"metadata\":null}");
    json_decref(ev);
}

TEST(compile_errors_have_positions)
{
    size_t pos;
    ASSERT_EQ(compile_err("data.x", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 0);
    ASSERT_EQ(compile_err("$.nope", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 2);
    ASSERT_EQ(compile_err("$.data..x", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 7);
    ASSERT_EQ(compile_err("$.data[x]", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 7);
    ASSERT_EQ(compile_err("$.data[1", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 8);
    ASSERT_EQ(compile_err("$.data[\"a\"]", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(compile_err("$.data[*]", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(compile_err("$.data x", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 6);
    ASSERT_EQ(compile_err("$.data[1234567890]", JPATH_VALUE, &pos), ERR_INVALID);
    ASSERT_EQ(compile_err("$.data", JPATH_TARGET, &pos), ERR_INVALID);
    ASSERT_EQ(compile_err("a.", JPATH_TARGET, &pos), ERR_INVALID);
    ASSERT_EQ(pos, 2);
    ASSERT_EQ(compile_err(".a", JPATH_TARGET, &pos), ERR_INVALID);
}

TEST(limits_on_length_and_segments)
{
    char text[LIMIT_JPATH_BYTES + 8];
    size_t pos;
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    ASSERT_EQ(compile_err(text, JPATH_TARGET, &pos), ERR_TOOBIG);
    size_t n = 0;
    for (int i = 0; i <= LIMIT_JPATH_SEGMENTS; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "%sa", i ? "." : "");
    }
    ASSERT_EQ(compile_err(text, JPATH_TARGET, &pos), ERR_TOOBIG);
    text[n - 2] = '\0'; /* exactly LIMIT_JPATH_SEGMENTS */
    struct jpath *p = compile_ok(text, JPATH_TARGET);
    ASSERT_EQ(jpath_segment_count(p), LIMIT_JPATH_SEGMENTS);
    jpath_free(p);
}

TEST(target_paths)
{
    struct jpath *root = compile_ok("", JPATH_TARGET);
    ASSERT_EQ(jpath_segment_count(root), 0);
    ASSERT_EQ(jpath_root_of(root), JPATH_ROOT_STATE);
    struct jpath *at = compile_ok("@.profile.name", JPATH_TARGET);
    struct jpath *plain = compile_ok("profile.name", JPATH_TARGET);
    ASSERT_EQ(jpath_segment_count(at), 2);
    ASSERT_EQ(jpath_segment_count(plain), 2);
    struct jpath *idx = compile_ok("[0].x", JPATH_TARGET);
    ASSERT_EQ(jpath_segment_count(idx), 2);
    jpath_free(root);
    jpath_free(at);
    jpath_free(plain);
    jpath_free(idx);
}

TEST(is_ref)
{
    CHECK(jpath_is_ref("$", 1));
    CHECK(jpath_is_ref("@", 1));
    CHECK(jpath_is_ref("$.data", 6));
    CHECK(jpath_is_ref("@[0]", 4));
    CHECK(!jpath_is_ref("$5.00", 5));
    CHECK(!jpath_is_ref("@home", 5));
    CHECK(!jpath_is_ref("", 0));
    CHECK(!jpath_is_ref("data", 4));
}

static void check_set(const char *state, const char *target, const char *value, int want_rc,
                      const char *want)
{
    json_t *root = json_loads(state, JSON_DECODE_ANY, NULL);
    struct jpath *p = compile_ok(target, JPATH_TARGET);
    struct jpath_error err;
    ASSERT_EQ(jpath_set(p, &root, json_loads(value, JSON_DECODE_ANY, NULL), &err), want_rc);
    char *got = json_dumps(root, JSON_ENCODE_ANY | JSON_COMPACT);
    ASSERT_STR(got, want);
    free(got);
    json_decref(root);
    jpath_free(p);
}

TEST(set_creates_objects_and_checks_types)
{
    check_set("{}", "a.b.c", "1", 0, "{\"a\":{\"b\":{\"c\":1}}}");
    check_set("{\"a\":null}", "a.b", "1", 0, "{\"a\":{\"b\":1}}");
    check_set("{\"a\":[1,2]}", "a[-1]", "9", 0, "{\"a\":[1,9]}");
    check_set("{\"a\":[{}]}", "a[0].x", "9", 0, "{\"a\":[{\"x\":9}]}");
    check_set("{\"a\":1}", "", "{\"z\":2}", 0, "{\"z\":2}");
    check_set("{\"a\":1}", "a.b", "2", ERR_INVALID, "{\"a\":1}");
    check_set("{\"a\":[1]}", "a[1]", "2", ERR_INVALID, "{\"a\":[1]}");
    check_set("{\"a\":{}}", "a[0]", "2", ERR_INVALID, "{\"a\":{}}");
    check_set("{}", "a[0]", "2", ERR_INVALID, "{\"a\":{}}"); /* created on the way */
}

static void check_unset(const char *state, const char *target, const char *want)
{
    json_t *root = json_loads(state, 0, NULL);
    struct jpath *p = compile_ok(target, JPATH_TARGET);
    ASSERT_EQ(jpath_unset(p, root), 0);
    char *got = json_dumps(root, JSON_COMPACT);
    ASSERT_STR(got, want);
    free(got);
    json_decref(root);
    jpath_free(p);
}

TEST(unset_removes_members_and_elements)
{
    check_unset("{\"a\":1,\"b\":2}", "a", "{\"b\":2}");
    check_unset("{\"a\":[1,2,3]}", "a[-1]", "{\"a\":[1,2]}");
    check_unset("{\"a\":[1,2,3]}", "a[5]", "{\"a\":[1,2,3]}");
    check_unset("{\"a\":1}", "x.y", "{\"a\":1}");
    check_unset("{\"a\":1}", "", "{}");
}
