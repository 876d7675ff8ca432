/* The DeltaBase dialect's pure translators (dialect/deltabase/translate.c) and the neutral
 * error rendering of the gate: request and answer shapes, 0-based positions, error codes. */
#include <string.h>

#include "dialect/deltabase/translate.h"
#include "gate/gate.h"
#include "unit.h"
#include "util/errors.h"
#include "util/timeutil.h"

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static bool eq(const struct buf *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(b->ptr, want, b->len) != 0) {
        fprintf(stderr, "  got  %.*s\n  want %s\n", (int)b->len, b->ptr ? b->ptr : "", want);
        return false;
    }
    return true;
}

TEST(append_request_maps_versions_and_keeps_event_bytes)
{
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"{\"events\":[{\"type\":\"a\",\"data\":1.50}],\"expectedStreamVersion\":5}",
         "{\"events\":[{\"type\":\"a\",\"data\":1.50}],\"expectedVersion\":6}"},
        {"{\"events\":[],\"expectedStreamVersion\":0}", "{\"events\":[],\"expectedVersion\":1}"},
        {"{\"events\":[],\"expectedStreamVersion\":-1}", "{\"events\":[],\"expectedVersion\":0}"},
        {"{\"events\":[],\"expectedStreamVersion\":\"any\"}",
         "{\"events\":[],\"expectedVersion\":\"any\"}"},
        {"{\"events\":[],\"expectedStreamVersion\":\"no_stream\"}",
         "{\"events\":[],\"expectedVersion\":\"no_stream\"}"},
        {"{\"events\":[],\"expectedStreamVersion\":\"stream_exists\"}",
         "{\"events\":[],\"expectedVersion\":\"exists\"}"},
        {" { \"events\" : [ {\"data\" : {\"k\":\"\\u00e9\"}} ] } ",
         "{\"events\":[ {\"data\" : {\"k\":\"\\u00e9\"}} ]}"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        ASSERT_EQ(dlb_append_request(S(CASES[i].in), &out, &pe), 0);
        CHECK(eq(&out, CASES[i].out));
        buf_fini(&out);
    }
}

TEST(append_request_refusals_name_the_deltabase_member)
{
    static const struct {
        const char *in, *field;
    } CASES[] = {
        {"{\"events\":[],\"expectedStreamVersion\":\"5\"}", "expectedStreamVersion"},
        {"{\"events\":[],\"expectedStreamVersion\":-2}", "expectedStreamVersion"},
        {"{\"events\":[],\"expectedStreamVersion\":1.5}", "expectedStreamVersion"},
        {"{\"events\":[],\"expectedStreamVersion\":null}", "expectedStreamVersion"},
        {"{\"events\":[],\"expectedStreamVersion\":\"exists\"}", "expectedStreamVersion"},
        {"{\"events\":{}}", "events"},
        {"{\"evnts\":[]}", "evnts"},
        {"[]", ""},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        ASSERT_EQ(dlb_append_request(S(CASES[i].in), &out, &pe), ERR_INVALID);
        CHECK(strcmp(pe.field, CASES[i].field) == 0);
        CHECK(pe.status == 400);
        buf_fini(&out);
    }
    struct buf out;
    buf_init(&out);
    struct parse_error pe;
    ASSERT_EQ(dlb_append_request(S("{\"events\":[}"), &out, &pe), ERR_INVALID);
    CHECK(strcmp(pe.code, "invalid_json") == 0 && pe.offset >= 0);
    buf_fini(&out);
}

TEST(answers_count_positions_from_zero)
{
    struct buf out;
    buf_init(&out);
    const char *native = "{\"stream\":\"user-1\",\"version\":3,\"position\":12,\"events\":["
                         "{\"id\":\"x\",\"position\":11,\"version\":2},{\"id\":\"y\","
                         "\"position\":12,\"version\":3}],\"recorded\":\"t\"}";
    ASSERT_EQ(dlb_append_answer(S(native), &out), 0);
    CHECK(eq(&out, "{\"streamId\":\"user-1\",\"eventsAppended\":2,\"currentStreamVersion\":2,"
                   "\"globalPosition\":12}"));
    buf_reset(&out);
    ASSERT_EQ(dlb_dcb_answer(S("{\"position\":456,\"appends\":[]}"), &out), 0);
    CHECK(eq(&out, "{\"lastPosition\":456}"));
    ASSERT_EQ(dlb_append_answer(S("{\"error\":1}"), &out), ERR_INVALID);
    buf_fini(&out);
}

TEST(dcb_requests_and_queries)
{
    struct buf out;
    buf_init(&out);
    struct parse_error pe;
    ASSERT_EQ(dlb_dcb_request(S("{\"events\":[{\"type\":\"T\",\"data\":1,\"tags\":[\"u:a\"]}],"
                                "\"condition\":{\"failIfEventsMatch\":{\"items\":[]},\"after\":3}}"),
                              &out, &pe), 0);
    CHECK(eq(&out, "{\"events\":[{\"type\":\"T\",\"data\":1,\"tags\":[\"u:a\"]}],\"condition\":"
                   "{\"failIfEventsMatch\":{\"items\":[]},\"after\":3}}"));
    buf_reset(&out);
    /* a comma in a tag passes the translator: the engine refuses it (APPEND_TAGS_NO_COMMA,
     * tests/unit/canon_test.c; over HTTP in tests/integration/deltabase/) */
    ASSERT_EQ(dlb_dcb_query(S("{\"query\":{\"items\":[{\"types\":[\"T\"]}]},\"after\":7,"
                              "\"limit\":10}"), &out, &pe), 0);
    CHECK(eq(&out, "{\"items\":[{\"types\":[\"T\"]}],\"from\":8,\"limit\":10}"));
    buf_reset(&out);
    ASSERT_EQ(dlb_dcb_query(S("{\"query\":{}}"), &out, &pe), 0);
    CHECK(eq(&out, "{\"from\":1}"));
    ASSERT_EQ(dlb_dcb_query(S("{\"query\":{},\"after\":-1}"), &out, &pe), ERR_INVALID);
    CHECK(strcmp(pe.field, "after") == 0);
    buf_fini(&out);
}

TEST(events_in_deltabase_shape)
{
    struct event_rec ev = {.position = 12, .version = 1, .recorded_us = 1700000000000000LL,
                           .stream = S("user-1"), .type = S("user.created"),
                           .data = S("{\"a\":1}"), .metadata = S("{}"), .tags = S("[]")};
    memset(ev.id, 0x11, sizeof ev.id);
    struct buf out;
    buf_init(&out);
    dlb_event(&out, &ev);
    CHECK(eq(&out, "{\"streamId\":\"user-1\",\"streamPosition\":0,\"globalPosition\":12,"
                   "\"eventId\":\"11111111-1111-1111-1111-111111111111\",\"type\":"
                   "\"user.created\",\"data\":{\"a\":1},\"metadata\":{},\"schemaVersion\":"
                   "\"1.0\",\"transactionId\":\"txn_60a24181e4000\",\"createdAt\":"
                   "\"2023-11-14T22:13:20.000000Z\"}"));
    buf_reset(&out);
    ev.stream = S("$dcb");
    ev.tags = S("[\"u:a\"]");
    dlb_event(&out, &ev);
    CHECK(strstr(out.ptr, "\"streamId\":\"__dcb__\"") && strstr(out.ptr, "\"tags\":[\"u:a\"]"));
    buf_fini(&out);
}

TEST(errors_use_deltabase_codes_and_envelope)
{
    static const struct {
        unsigned kind;
        const char *native, *code;
        unsigned status;
    } CASES[] = {
        {401, "unauthorized", "UNAUTHORIZED", 401},
        {403, "forbidden", "FORBIDDEN", 403},
        {404, "database_not_found", "NOT_FOUND", 404},
        {404, "stream_not_found", "STREAM_NOT_FOUND", 404},
        {409, "wrong_expected_version", "VERSION_CONFLICT", 409},
        {429, "rate_limited", "RATE_LIMITED", 429},
        {400, "invalid_parameter", "VALIDATION_ERROR", 400},
        {500, "storage_error", "INTERNAL_ERROR", 500},
        {413, "body_too_large", "PAYLOAD_TOO_LARGE", 413},
        {410, "stream_deleted", "STREAM_DELETED", 410},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct gate_error e = {.kind = CASES[i].kind, .code = CASES[i].native, .message = "m"};
        struct buf out;
        buf_init(&out);
        ASSERT_EQ(dlb_error(&e, &out), CASES[i].status);
        char want[96];
        snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",", CASES[i].code);
        CHECK(strncmp(out.ptr, want, strlen(want)) == 0);
        buf_fini(&out);
    }
    struct gate_error v = {.kind = 409, .code = "wrong_expected_version", .message = "m",
                           .field = "expectedVersion", .stream = S("s-1"),
                           .has_actual_version = true, .actual_version = 3};
    struct buf out;
    buf_init(&out);
    dlb_error(&v, &out);
    CHECK(strstr(out.ptr, "\"details\":{\"field\":\"expectedStreamVersion\",\"streamId\":\"s-1\","
                          "\"currentStreamVersion\":2}"));
    buf_reset(&out);
    uint64_t pos[] = {4, 9};
    struct gate_error c = {.kind = 409, .code = "condition_failed", .message = "no",
                           .has_last_position = true, .conflicts = pos, .nconflicts = 2,
                           .has_after = true, .after_given = true, .after = 3};
    ASSERT_EQ(dlb_error(&c, &out), 409);
    CHECK(eq(&out, "{\"error\":\"Append condition failed\",\"details\":\"no\","
                   "\"conflictingPositions\":[4,9],\"afterPosition\":3}"));
    buf_reset(&out);
    /* the same error in the native envelope */
    ASSERT_EQ(gate_native_error(&c, &out), 409);
    CHECK(eq(&out, "{\"error\":{\"code\":\"condition_failed\",\"message\":\"no\","
                   "\"lastPosition\":0,\"conflictingPositions\":[4,9],\"after\":3}}"));
    buf_fini(&out);
}

TEST(stream_types_and_times)
{
    struct slice t = dlb_stream_type(S("user-123"));
    CHECK(t.len == 4);
    t = dlb_stream_type(S("order_9"));
    CHECK(t.len == 5);
    t = dlb_stream_type(S("cart:7-x"));
    CHECK(t.len == 4);
    t = dlb_stream_type(S("plain"));
    CHECK(t.len == 5);
    char out[TIME_RFC3339_LEN];
    ASSERT_EQ(dlb_shift_time("2024-01-01T00:00:00Z", 1, out), 0);
    CHECK(strcmp(out, "2024-01-01T00:00:00.000001Z") == 0);
    ASSERT_EQ(dlb_shift_time("yesterday", 1, out), ERR_INVALID);
}

TEST(websocket_messages)
{
    struct filter f;
    uint64_t first = 0;
    char desc[64];
    const char *why;
    ASSERT_EQ(dlb_ws_read(S("{\"action\":\"subscribe\",\"eventFilter\":\"user.*\","
                            "\"position\":\"latest\"}"), 41, &f, &first, desc, sizeof desc,
                          &why), LIVE_MSG_SUBSCRIBE);
    ASSERT_EQ(first, 42);
    CHECK(strcmp(desc, "user.*") == 0);
    filter_fini(&f);
    ASSERT_EQ(dlb_ws_read(S("{\"action\":\"subscribe\",\"position\":7}"), 41, &f, &first, desc,
                          sizeof desc, &why), LIVE_MSG_SUBSCRIBE);
    ASSERT_EQ(first, 8);
    filter_fini(&f);
    ASSERT_EQ(dlb_ws_read(S("{\"action\":\"ping\"}"), 0, &f, &first, desc, sizeof desc, &why),
              LIVE_MSG_PING);
    ASSERT_EQ(dlb_ws_read(S("{\"action\":\"subscribe\",\"position\":\"soon\"}"), 0, &f, &first,
                          desc, sizeof desc, &why), LIVE_MSG_BAD);
    ASSERT_EQ(dlb_ws_read(S("{\"action\":\"\"}"), 0, &f, &first, desc, sizeof desc, &why),
              LIVE_MSG_BAD);
    ASSERT_EQ(dlb_ws_read(S("{}"), 0, &f, &first, desc, sizeof desc, &why), LIVE_MSG_BAD);
}
