/* json/jsonx span scanning and minifying, and api/parse request parsing. */
#include <string.h>

#include "engine/canon.h"
#include "ops/parse.h"
#include "engine/expect.h"
#include "http/server.h"
#include "json/jsonx.h"
#include "json/validate.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    struct slice x = {s, strlen(s)};
    return x;
}

TEST(member_spans_and_minify)
{
    const char *doc = " { \"a\" : \"x}\\\"\" , \"data\" : { \"n\" : [ 1.10 , 2e5 ] , \"s\":\" a b \" } } ";
    struct slice v;
    CHECK(jsonx_member(S(doc), "data", &v));
    struct buf b;
    buf_init(&b);
    jsonx_minify(v, &b);
    ASSERT_STR(b.ptr, "{\"n\":[1.10,2e5],\"s\":\" a b \"}");
    CHECK(jsonx_member(S(doc), "a", &v));
    CHECK(v.len == 6 && memcmp(v.ptr, "\"x}\\\"\"", 6) == 0);
    CHECK(!jsonx_member(S(doc), "nope", &v));
    buf_fini(&b);
}

TEST(string_spans_end_at_the_first_unescaped_quote)
{
    /* runs of backslashes before a quote: odd escapes it, even does not */
    static const struct {
        const char *doc, *want;
    } cases[] = {
        {"{\"a\":\"\\\\\",\"b\":1}", "\"\\\\\""},               /* "\\" then "b" */
        {"{\"a\":\"x\\\"y\",\"b\":1}", "\"x\\\"y\""},             /* an escaped quote */
        {"{\"a\":\"\\\\\\\"\",\"b\":1}", "\"\\\\\\\"\""},   /* \\ then \" */
        {"{\"a\":\"\\\\\\\\\",\"b\":1}", "\"\\\\\\\\\""}, /* two escaped backslashes */
        {"{\"a\":\"\",\"b\":1}", "\"\""},                                 /* empty */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct slice v;
        CHECK(jsonx_member(S(cases[i].doc), "a", &v));
        CHECK(v.len == strlen(cases[i].want) && memcmp(v.ptr, cases[i].want, v.len) == 0);
        CHECK(jsonx_member(S(cases[i].doc), "b", &v) && v.len == 1 && v.ptr[0] == '1');
    }
    struct slice v;
    CHECK(!jsonx_member(S("{\"a\":\"never ends\\\"}"), "b", &v)); /* unterminated */
}

TEST(whole_numbers)
{
    uint64_t v = 7;
    CHECK(jsonx_u64(S("0"), &v) && v == 0);
    CHECK(jsonx_u64(S(" 42 "), &v) && v == 42);
    CHECK(jsonx_u64(S("18446744073709551615"), &v) && v == UINT64_MAX);
    static const char *const bad[] = {"18446744073709551616", "99999999999999999999",
                                      "000000000000000000001", "-1", "1.0", "1e3", "\"1\"",
                                      "", " ", "null", "12a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!jsonx_u64(S(bad[i]), &v));
    }
}

TEST(array_items)
{
    struct slice arr = S("[ {\"a\":[1,2]} , \"x,y\" ,3 ]");
    size_t pos = 0;
    struct slice it;
    CHECK(jsonx_next_item(arr, &pos, &it));
    CHECK(it.len == 11);
    CHECK(jsonx_next_item(arr, &pos, &it));
    CHECK(it.len == 5);
    CHECK(jsonx_next_item(arr, &pos, &it));
    CHECK(it.len == 1 && it.ptr[0] == '3');
    CHECK(!jsonx_next_item(arr, &pos, &it));
    pos = 0;
    CHECK(!jsonx_next_item(S("[ ]"), &pos, &it));
}

TEST(validator_offsets)
{
    struct jsonv_error e;
    ASSERT_EQ(jsonv_validate("{\"a\":[1,2,]}", 12, 64, &e), ERR_INVALID);
    ASSERT_EQ(e.offset, 10);
    ASSERT_EQ(jsonv_validate(" [1e5, -0.5, \"\\u00e9\", true, null] ", 35, 64, &e), 0);
    ASSERT_EQ(jsonv_validate("[1] x", 5, 64, &e), ERR_INVALID);
    ASSERT_EQ(e.offset, 4);
    char deep[200];
    memset(deep, '[', sizeof deep);
    ASSERT_EQ(jsonv_validate(deep, sizeof deep, 64, &e), ERR_INVALID);
    ASSERT_EQ(e.offset, 64);
    ASSERT_EQ(jsonv_validate("\"\xed\xa0\x80\"", 5, 64, &e), ERR_INVALID);
    ASSERT_EQ(jsonv_validate("\"a\tb\"", 5, 64, &e), ERR_INVALID);
    ASSERT_EQ(jsonv_validate("", 0, 64, &e), ERR_INVALID);
}

TEST(string_decoding)
{
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(jsonx_string(S("\"a\\n\\u00e9\\ud83c\\udf00\\/\""), &b), 0);
    ASSERT_STR(b.ptr, "a\n\xc3\xa9\xf0\x9f\x8c\x80/");
    ASSERT_EQ(jsonx_string(S("\"\\udc00\""), &b), ERR_INVALID);
    ASSERT_EQ(jsonx_string(S("\"\\ud800x\""), &b), ERR_INVALID);
    buf_fini(&b);
}

static const struct limits LIM = {.body_bytes = 1 << 20, .batch_events = 3,
                                  .event_bytes = 400};

TEST(parse_append_valid)
{
    const char *body = "{\"expectedVersion\":4,\"events\":[{\"type\":\"A\",\"data\":{\"x\": 1.50},"
                       "\"tags\":[\"t1\"],\"id\":\"0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5f6\","
                       "\"time\":\"2023-11-14T22:13:20Z\"},{\"type\":\"B\",\"data\":null,"
                       "\"metadata\":{\"u\":1}}]}";
    struct parsed_append p;
    struct parse_error pe;
    ASSERT_EQ(parse_append(S(body), S("s-1"), &LIM, 0, &p, &pe), 0);
    ASSERT_EQ(p.count, 2);
    ASSERT_EQ(p.expect.kind, EXPECT_VERSION);
    ASSERT_EQ(p.expect.version, 4);
    CHECK(p.events[0].data.len == 10 && !memcmp(p.events[0].data.ptr, "{\"x\":1.50}", 10));
    CHECK(p.events[0].has_id && p.events[0].has_time);
    CHECK(p.events[0].tags.len == 6);
    CHECK(p.events[1].metadata.len == 7);
    CHECK(p.events[1].tags.len == 2 && !memcmp(p.events[1].tags.ptr, "[]", 2));
    CHECK(!p.events[1].has_id);
    parse_append_fini(&p);
}

static void expect_fail(const char *body, unsigned status, const char *code, const char *field)
{
    struct parsed_append p;
    struct parse_error pe;
    CHECK(parse_append(S(body), S("s"), &LIM, 0, &p, &pe) != 0);
    if (pe.status != status || strcmp(pe.code, code) != 0 || strcmp(pe.field, field) != 0) {
        fprintf(stderr, "  %s -> %u %s %s\n", body, pe.status, pe.code, pe.field);
        exit(1);
    }
}

TEST(parse_append_keeps_duplicate_keys_and_nul_in_data)
{
    const char *body = "{\"events\":[{\"type\":\"A\",\"data\":{\"a\":1,\"a\":2,\"s\":\"\\u0000\"}}]}";
    struct parsed_append p;
    struct parse_error pe;
    ASSERT_EQ(parse_append(S(body), S("s"), &LIM, 0, &p, &pe), 0);
    static const char want[] = "{\"a\":1,\"a\":2,\"s\":\"\\u0000\"}";
    CHECK(p.events[0].data.len == sizeof want - 1);
    CHECK(!memcmp(p.events[0].data.ptr, want, sizeof want - 1));
    parse_append_fini(&p);
}

TEST(parse_append_keeps_big_numbers_as_text)
{
    const char *body = "{\"events\":[{\"type\":\"\\u00e9t\\u00e9\",\"data\":[18446744073709551616,1e400,-0.0]}],"
                       "\"expectedVersion\":\"no_stream\"}";
    struct parsed_append p;
    struct parse_error pe;
    ASSERT_EQ(parse_append(S(body), S("s"), &LIM, 0, &p, &pe), 0);
    static const char want[] = "[18446744073709551616,1e400,-0.0]";
    CHECK(p.events[0].data.len == sizeof want - 1);
    CHECK(!memcmp(p.events[0].data.ptr, want, sizeof want - 1));
    CHECK(p.events[0].type.len == 5 && !memcmp(p.events[0].type.ptr, "\xc3\xa9t\xc3\xa9", 5));
    ASSERT_EQ(p.expect.kind, EXPECT_NO_STREAM);
    parse_append_fini(&p);
}

TEST(parse_append_rejects)
{
    expect_fail("{\"events\":[", 400, "invalid_json", "");
    expect_fail("[]", 400, "invalid_request", "");
    expect_fail("{\"events\":[]}", 400, "invalid_request", "events");
    expect_fail("{\"events\":[{\"type\":\"A\"}]}", 400, "invalid_event", "events[0].data");
    expect_fail("{\"events\":[{\"data\":1}]}", 400, "invalid_event", "events[0].type");
    expect_fail("{\"events\":[{\"type\":\"\",\"data\":1}]}", 400, "invalid_event",
                "events[0].type");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"x\":2}]}", 400, "invalid_event",
                "events[0].x");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"id\":\"nope\"}]}", 400,
                "invalid_event", "events[0].id");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"time\":\"yesterday\"}]}", 400,
                "invalid_event", "events[0].time");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"tags\":[1]}]}", 400,
                "invalid_event", "events[0].tags");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"metadata\":[]}]}", 400,
                "invalid_event", "events[0].metadata");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1}],\"expectedVersion\":-1}", 400,
                "invalid_expected_version", "expectedVersion");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1}],\"expectedVersion\":\"maybe\"}", 400,
                "invalid_expected_version", "expectedVersion");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1}],\"other\":1}", 400,
                "invalid_request", "other");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1},{\"type\":\"A\",\"data\":1},"
                "{\"type\":\"A\",\"data\":1},{\"type\":\"A\",\"data\":1}]}",
                413, "too_many_events", "events");
    char big[600];
    snprintf(big, sizeof big, "{\"events\":[{\"type\":\"A\",\"data\":\"%0400d\"}]}", 0);
    expect_fail(big, 413, "event_too_large", "events[0]");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1}],\"events\":[]}", 400,
                "invalid_request", "events");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1}],\"ev\\u0065nts\":[{\"x\":1}]}",
                400, "invalid_request", "events");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":1,\"d\\u0061ta\":2}]}", 400,
                "invalid_event", "events[0].data");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":01}]}", 400, "invalid_json", "");
    expect_fail("{\"events\":[{\"type\":\"A\",\"data\":\"\xc0\xaf\"}]}", 400, "invalid_json", "");
    expect_fail("{\"events\":[{\"type\":\"\\ud800\",\"data\":1}]}", 400, "invalid_event",
                "events[0].type");
    struct parsed_append p;
    struct parse_error pe;
    static const char nul_body[] = "{\"events\":[{\"type\":\"A\",\"data\":1\0}]}";
    struct slice nb = {nul_body, sizeof nul_body - 1};
    CHECK(parse_append(nb, S("s"), &LIM, 0, &p, &pe) != 0);
    ASSERT_STR(pe.code, "invalid_json");
    ASSERT_EQ(pe.offset, 31);
    static const char esc_body[] = "{\"events\":[{\"type\":\"t\",\"data\":[\"\\\xf0\x9f\x8c\x80\"]}]}";
    CHECK(parse_append(S(esc_body), S("s"), &LIM, 0, &p, &pe) != 0);
    for (const char *c = pe.message; *c; c++) {
        CHECK((unsigned char)*c < 0x80);
    }
}

TEST(expected_version_logic)
{
    struct expect any = {EXPECT_ANY, 0}, none = {EXPECT_NO_STREAM, 0},
                  exists = {EXPECT_EXISTS, 0}, v0 = {EXPECT_VERSION, 0}, v3 = {EXPECT_VERSION, 3};
    CHECK(expect_ok(&any, 0) && expect_ok(&any, 9));
    CHECK(expect_ok(&none, 0) && !expect_ok(&none, 1));
    CHECK(!expect_ok(&exists, 0) && expect_ok(&exists, 1));
    CHECK(expect_ok(&v0, 0) && !expect_ok(&v0, 1));
    CHECK(expect_ok(&v3, 3) && !expect_ok(&v3, 2) && !expect_ok(&v3, 4));
}

TEST(names_and_numbers)
{
    CHECK(engine_name_ok("order-1", 7, 256));
    CHECK(engine_name_ok("caf\xc3\xa9", 5, 256));
    CHECK(!engine_name_ok("", 0, 256));
    CHECK(!engine_name_ok("a\x01", 2, 256));
    CHECK(!engine_name_ok("\xc3", 1, 256));
    CHECK(!engine_name_ok("\xed\xa0\x80", 3, 256)); /* surrogate */
    CHECK(!engine_name_ok("\xc0\xaf", 2, 256));     /* overlong */
    uint64_t v;
    ASSERT_EQ(parse_u64("18446744073709551615", &v), 0);
    ASSERT_EQ(parse_u64("18446744073709551616", &v), ERR_INVALID);
    ASSERT_EQ(parse_u64("-1", &v), ERR_INVALID);
    ASSERT_EQ(parse_u64("", &v), ERR_INVALID);
    ASSERT_EQ(parse_u64("1 ", &v), ERR_INVALID);
}

TEST(url_decoding)
{
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(http_url_decode("a%2Fb+c", 7, false, &b), 0);
    ASSERT_STR(b.ptr, "a/b+c");
    ASSERT_EQ(http_url_decode("a%2fb+c", 7, true, &b), 0);
    ASSERT_STR(b.ptr, "a/b c");
    buf_fini(&b);
    ASSERT_EQ(http_url_decode("", 0, true, &b), 0); /* empty value: still a C string */
    ASSERT_EQ(strlen(b.ptr), 0);
    ASSERT_EQ(http_url_decode("a%2", 3, false, &b), ERR_INVALID);
    ASSERT_EQ(http_url_decode("a%zz", 4, false, &b), ERR_INVALID);
    ASSERT_EQ(http_url_decode("a%00", 4, false, &b), ERR_INVALID);
    buf_fini(&b);
}
