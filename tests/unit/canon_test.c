/* engine/canon: the event contract engine_append enforces, whoever built the request, and the
 * parser that makes canonical events from native event objects. */
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    struct slice x = {s, strlen(s)};
    return x;
}

static bool same(struct slice a, const char *b)
{
    return a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0;
}

TEST(parser_makes_canonical_events)
{
    struct engine_events evs;
    struct append_fault f;
    const char *arr = "[ {\"type\":\"Opened\", \"data\": { \"n\" : 1.10 , \"k\":[ 1 ,2 ] },"
                      "  \"tags\": [\"a\\u0062\", \"q\\\"\\\\\"], \"subject\":\"s/1\","
                      "  \"id\":\"0b9f9bde-5d5b-4d3e-9a53-3f1c4b3b2a10\"},"
                      " {\"type\":\"T\",\"data\":null} ]";
    ASSERT_EQ(engine_events_parse(S(arr), 2, 0, &evs, &f), 0);
    ASSERT_EQ(evs.count, (size_t)2);
    CHECK(same(evs.events[0].type, "Opened"));
    CHECK(same(evs.events[0].data, "{\"n\":1.10,\"k\":[1,2]}"));
    CHECK(same(evs.events[0].metadata, "{}"));
    CHECK(same(evs.events[0].tags, "[\"ab\",\"q\\\"\\\\\"]"));
    CHECK(same(evs.events[0].subject, "s/1"));
    CHECK(evs.events[0].has_id && evs.events[0].id[0] == 0x0b);
    CHECK(same(evs.events[1].data, "null") && same(evs.events[1].tags, "[]"));
    CHECK(evs.events[1].subject.len == 0 && !evs.events[1].has_id);
    /* what the parser makes passes the engine's own check */
    struct append_part part = {.stream = S("orders-1"), .events = evs.events, .count = 2};
    struct append_req req = {.parts = &part, .nparts = 1};
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    engine_events_fini(&evs);
}

TEST(parser_names_the_fault)
{
    struct engine_events evs;
    struct append_fault f;
    static const struct {
        const char *arr;
        unsigned flags;
        size_t event;
        const char *leaf;
    } cases[] = {
        {"[{\"type\":\"T\",\"data\":1},{\"type\":\"\",\"data\":1}]", 0, 1, "type"},
        {"[{\"type\":\"T\"}]", 0, 0, "data"},
        {"[{\"type\":\"T\",\"data\":1,\"metadata\":[1]}]", 0, 0, "metadata"},
        {"[{\"type\":\"T\",\"data\":1,\"tags\":[1]}]", 0, 0, "tags"},
        {"[{\"type\":\"T\",\"data\":1,\"tags\":[\"a\\u0001\"]}]", 0, 0, "tags"},
        {"[{\"type\":\"T\",\"data\":1,\"tags\":[\"ok\",\"a\\u002cb\"]}]", APPEND_TAGS_NO_COMMA,
         0, "tags"},
        {"[{\"type\":\"T\",\"data\":1,\"id\":\"nope\"}]", 0, 0, "id"},
        {"[{\"type\":\"T\",\"data\":1,\"time\":\"yesterday\"}]", 0, 0, "time"},
        {"[{\"type\":\"T\",\"data\":1,\"subject\":\"\"}]", 0, 0, "subject"},
        {"[{\"type\":\"T\",\"data\":1,\"colour\":2}]", 0, 0, "colour"},
        {"[{\"type\":\"T\",\"data\":1,\"data\":2}]", 0, 0, "data"},
        {"[7]", 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strstr(cases[i].arr, "},{") ? 2 : 1;
        ASSERT_EQ(engine_events_parse(S(cases[i].arr), n, cases[i].flags, &evs, &f), ERR_INVALID);
        CHECK(f.has_event && f.event == cases[i].event);
        CHECK(strcmp(f.leaf, cases[i].leaf) == 0);
        CHECK(strcmp(f.code, "invalid_event") == 0 && f.message[0]);
    }
    /* the comma is fine without the flag */
    ASSERT_EQ(engine_events_parse(S(cases[5].arr), 1, 0, &evs, &f), 0);
    engine_events_fini(&evs);
}

/* An event a caller built by hand, valid unless a test spoils it. */
static struct append_event good(void)
{
    return (struct append_event){.type = S("T"), .data = S("{\"a\":1}"), .metadata = S("{}"),
                                 .tags = S("[\"x\",\"y\\\"z\"]")};
}

static int check_one(struct append_event ev, unsigned flags, struct append_fault *f)
{
    struct append_part part = {.stream = S("s"), .events = &ev, .count = 1};
    struct append_req req = {.parts = &part, .nparts = 1, .flags = flags};
    return engine_append_check(&req, f);
}

TEST(check_refuses_hand_built_events)
{
    struct append_fault f;
    ASSERT_EQ(check_one(good(), 0, &f), 0);
    struct append_event e = good();
    e.data = S("{ \"a\": 1 }"); /* not minified */
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    CHECK(strcmp(f.leaf, "data") == 0);
    e = good();
    e.data = S("{\"a\":"); /* not JSON */
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    e = good();
    e.metadata = S("[]");
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    CHECK(strcmp(f.leaf, "metadata") == 0);
    e = good();
    e.tags = S("[\"a\\u0062\"]"); /* an escape the canonical form does not use */
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    CHECK(strcmp(f.leaf, "tags") == 0);
    e = good();
    e.tags = S("[\"a\" ,\"b\"]");
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    e = good();
    e.tags = S("[\"a,b\"]");
    ASSERT_EQ(check_one(e, 0, &f), 0);
    ASSERT_EQ(check_one(e, APPEND_TAGS_NO_COMMA, &f), ERR_INVALID);
    e = good();
    e.type = S("a\nb");
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    CHECK(strcmp(f.leaf, "type") == 0);
    e = good();
    e.subject = S("\x01");
    ASSERT_EQ(check_one(e, 0, &f), ERR_INVALID);
    CHECK(strcmp(f.leaf, "subject") == 0);
}

TEST(check_refuses_reserved_streams_and_repeated_ids)
{
    struct append_fault f;
    struct append_event ev[2] = {good(), good()};
    struct append_part parts[2] = {{.stream = S("a"), .events = &ev[0], .count = 1},
                                   {.stream = S("b"), .events = &ev[1], .count = 1}};
    struct append_req req = {.parts = parts, .nparts = 2};
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    static const char *const bad[] = {"$$a", "$metadata", ".", "..", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parts[1].stream = S(bad[i]);
        ASSERT_EQ(engine_append_check(&req, &f), ERR_INVALID);
        CHECK(strcmp(f.code, "invalid_name") == 0 && f.part == 1);
    }
    parts[1].stream = S(ENGINE_DCB_STREAM); /* the reserved names callers may use */
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[1].stream = S(ENGINE_LOGIC_STREAM);
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[1].stream = S("b");
    ev[0].has_id = ev[1].has_id = true;
    memset(ev[0].id, 7, sizeof ev[0].id);
    memset(ev[1].id, 7, sizeof ev[1].id);
    ASSERT_EQ(engine_append_check(&req, &f), ERR_INVALID);
    CHECK(f.has_event && f.part == 1 && f.event == 0 && strcmp(f.leaf, "id") == 0);
    ev[1].id[0] = 8;
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[0].count = 0;
    ASSERT_EQ(engine_append_check(&req, &f), ERR_INVALID);
}

/* Does the check refuse req with a fault on part p's expectedVersion? */
static bool refused_expectation(const struct append_req *req, size_t p)
{
    struct append_fault f;
    return engine_append_check(req, &f) == ERR_INVALID && !f.has_event && f.part == p &&
           strcmp(f.code, "invalid_request") == 0 && strcmp(f.leaf, "expectedVersion") == 0 &&
           strstr(f.message, "several parts") != NULL;
}

TEST(check_allows_a_repeated_stream_without_expectations)
{
    struct append_fault f;
    struct append_event ev[3] = {good(), good(), good()};
    struct append_part parts[3] = {{.stream = S("a"), .events = &ev[0], .count = 1},
                                   {.stream = S("b"), .events = &ev[1], .count = 1},
                                   {.stream = S("a"), .events = &ev[2], .count = 1}};
    struct append_req req = {.parts = parts, .nparts = 3};
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[2].expect.kind = EXPECT_ANY; /* "any" explicitly: no expectation */
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[1].expect = (struct expect){EXPECT_VERSION, 4}; /* b appears once: it may expect */
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[2].stream = S(ENGINE_DCB_STREAM); /* reserved names callers use may repeat too */
    parts[0].stream = S(ENGINE_DCB_STREAM);
    ASSERT_EQ(engine_append_check(&req, &f), 0);
    parts[2].count = 0; /* a repeated part still needs an event */
    ASSERT_EQ(engine_append_check(&req, &f), ERR_INVALID);
    CHECK(f.part == 2 && strcmp(f.leaf, "stream") == 0);
}

TEST(check_refuses_a_repeated_stream_with_an_expectation)
{
    struct append_event ev[3] = {good(), good(), good()};
    struct append_part parts[3] = {{.stream = S("a"), .events = &ev[0], .count = 1},
                                   {.stream = S("b"), .events = &ev[1], .count = 1},
                                   {.stream = S("a"), .events = &ev[2], .count = 1}};
    struct append_req req = {.parts = parts, .nparts = 3};
    static const enum expect_kind kinds[] = {EXPECT_NO_STREAM, EXPECT_EXISTS, EXPECT_VERSION};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        parts[0].expect = (struct expect){kinds[k], 0}; /* on the first part: named */
        parts[2].expect = (struct expect){EXPECT_ANY, 0};
        CHECK(refused_expectation(&req, 0));
        parts[0].expect = (struct expect){EXPECT_ANY, 0}; /* on the repeat: named */
        parts[2].expect = (struct expect){kinds[k], 3};
        CHECK(refused_expectation(&req, 2));
    }
    parts[0].expect = (struct expect){EXPECT_VERSION, 0}; /* both carry one: the first */
    CHECK(refused_expectation(&req, 0));
}

TEST(jsonx_members_and_minified)
{
    static const char *const names[] = {"a", "b"};
    struct slice v[2];
    struct buf bad;
    buf_init(&bad);
    bool dup = false;
    ASSERT_EQ(jsonx_members(S("{\"b\":1,\"\\u0061\":[2]}"), names, 2, v, &bad, &dup), 0);
    CHECK(same(v[0], "[2]") && same(v[1], "1"));
    ASSERT_EQ(jsonx_members(S("{\"a\":1,\"c\":2}"), names, 2, v, &bad, &dup), ERR_INVALID);
    CHECK(!dup && strcmp(bad.ptr, "c") == 0);
    ASSERT_EQ(jsonx_members(S("{\"a\":1,\"a\":2}"), names, 2, v, &bad, &dup), ERR_INVALID);
    CHECK(dup && strcmp(bad.ptr, "a") == 0);
    buf_fini(&bad);
    CHECK(jsonx_is_minified(S("{\"a b\":[1,\" \\\" x\"]}")));
    CHECK(!jsonx_is_minified(S("{\"a\": 1}")));
    CHECK(!jsonx_is_minified(S("[1,\n2]")));
}
