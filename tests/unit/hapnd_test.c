/* The Hapnd dialect's pure translators (dialect/hapnd/translate.c): type inference, append
 * bodies in, the native body, events and answers out, changes and the error envelope. */
#include <string.h>

#include "dialect/hapnd/translate.h"
#include "gate/gate.h"
#include "unit.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

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

static bool type_is(const char *id, const char *want)
{
    struct slice t;
    bool ok = hapnd_infer_type(S(id), &t);
    if (!want) {
        return !ok;
    }
    return ok && t.len == strlen(want) && memcmp(t.ptr, want, t.len) == 0;
}

TEST(aggregate_type_is_everything_before_the_first_underscore_or_hyphen)
{
    ASSERT_EQ(type_is("order_123", "order"), true);
    ASSERT_EQ(type_is("cart-abc", "cart"), true);
    ASSERT_EQ(type_is("user_profile_456", "user"), true);
    ASSERT_EQ(type_is("inventory-item-789", "inventory"), true);
    ASSERT_EQ(type_is("a-b_c", "a"), true);
    ASSERT_EQ(type_is("order123", NULL), true);
    ASSERT_EQ(type_is("_123", NULL), true);
    ASSERT_EQ(type_is("-x", NULL), true);
    ASSERT_EQ(type_is("", NULL), true);
    ASSERT_EQ(hapnd_type_ok(S("order.v2-x_y")), true);
    ASSERT_EQ(hapnd_type_ok(S("or der")), false);
    ASSERT_EQ(hapnd_type_ok(S("")), false);
    ASSERT_EQ(hapnd_type_ok(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")), false); /* 49 */
}

static int parse(const char *body, bool batch, struct hapnd_append *a, struct parse_error *pe)
{
    hapnd_append_init(a);
    return hapnd_append_parse(S(body), batch, 3, a, pe);
}

TEST(one_event_becomes_a_native_body_with_the_hapnd_member)
{
    struct hapnd_append a;
    struct parse_error pe;
    ASSERT_EQ(parse("{\"aggregateId\":\"order_1\",\"eventType\":\"ItemAdded\",\"data\":"
                    "{ \"price\": 25.0, \"x\": 0.1 },\"expectedVersion\":5,\"correlationId\":"
                    "\"c\",\"causationId\":\"d\",\"metadata\":{\"u\":1},\"extra\":true}",
                    false, &a, &pe),
              0);
    ASSERT_EQ(a.aggregate_id.len, 7);
    ASSERT_EQ(a.aggregate_type.ptr == NULL, true);
    ASSERT_EQ(a.has_expected, true);
    ASSERT_EQ(a.expected, 5);
    struct buf b;
    buf_init(&b);
    hapnd_native_body(&a, S("order"), &b);
    ASSERT_EQ(eq(&b, "{\"events\":[{\"type\":\"ItemAdded\",\"data\":{\"price\":25.0,\"x\":0.1},"
                     "\"metadata\":{\"hapnd\":{\"aggregateType\":\"order\",\"correlationId\":"
                     "\"c\",\"causationId\":\"d\",\"metadata\":{\"u\":1}}}}],"
                     "\"expectedVersion\":5}"),
              true);
    buf_fini(&b);
    hapnd_append_fini(&a);
}

TEST(a_batch_takes_its_defaults_and_each_event_may_override_them)
{
    struct hapnd_append a;
    struct parse_error pe;
    ASSERT_EQ(parse("{\"aggregateId\":\"x\",\"aggregateType\":\"cart\",\"correlationId\":\"c\","
                    "\"metadata\":{\"m\":1},\"events\":[{\"eventType\":\"A\",\"data\":1},"
                    "{\"eventType\":\"B\",\"data\":[2],\"correlationId\":\"e\"}]}",
                    true, &a, &pe),
              0);
    ASSERT_EQ(a.count, 2);
    ASSERT_EQ(a.aggregate_type.len, 4);
    struct buf b;
    buf_init(&b);
    hapnd_native_body(&a, a.aggregate_type, &b);
    ASSERT_EQ(eq(&b, "{\"events\":[{\"type\":\"A\",\"data\":1,\"metadata\":{\"hapnd\":{"
                     "\"aggregateType\":\"cart\",\"correlationId\":\"c\",\"metadata\":{\"m\":1}"
                     "}}},{\"type\":\"B\",\"data\":[2],\"metadata\":{\"hapnd\":{\"aggregateType\""
                     ":\"cart\",\"correlationId\":\"e\",\"metadata\":{\"m\":1}}}}]}"),
              true);
    buf_fini(&b);
    hapnd_append_fini(&a);
}

static const char *refusal(const char *body, bool batch)
{
    static char code[192];
    struct hapnd_append a;
    struct parse_error pe;
    int rc = parse(body, batch, &a, &pe);
    hapnd_append_fini(&a);
    snprintf(code, sizeof code, "%s %s", rc ? pe.code : "accepted", rc ? pe.field : "");
    return code;
}

TEST(bad_appends_are_refused_naming_the_field)
{
    ASSERT_STR(refusal("{\"eventType\":\"A\",\"data\":1}", false), "VALIDATION_ERROR aggregateId");
    ASSERT_STR(refusal("{\"aggregateId\":\"\",\"eventType\":\"A\",\"data\":1}", false),
               "VALIDATION_ERROR aggregateId");
    ASSERT_STR(refusal("{\"aggregateId\":\"$x_1\",\"eventType\":\"A\",\"data\":1}", false),
               "VALIDATION_ERROR aggregateId");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"data\":1}", false),
               "VALIDATION_ERROR eventType");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\"}", false),
               "VALIDATION_ERROR data");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\",\"data\":null}", false),
               "VALIDATION_ERROR data");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\",\"data\":1,"
                       "\"expectedVersion\":-1}", false),
               "VALIDATION_ERROR expectedVersion");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\",\"data\":1,"
                       "\"metadata\":[1]}", false),
               "VALIDATION_ERROR metadata");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"aggregateType\":\"a b\",\"eventType\":\"A\","
                       "\"data\":1}", false),
               "VALIDATION_ERROR aggregateType");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",", false), "INVALID_REQUEST ");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"events\":[]}", true),
               "VALIDATION_ERROR events");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"events\":[{\"eventType\":\"A\",\"data\":1},"
                       "{\"eventType\":\"A\",\"data\":1},{\"eventType\":\"A\",\"data\":1},"
                       "{\"eventType\":\"A\",\"data\":1}]}", true),
               "VALIDATION_ERROR events");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"events\":[{\"eventType\":\"A\"}]}", true),
               "VALIDATION_ERROR events[0].data");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"events\":[3]}", true),
               "VALIDATION_ERROR events[0]");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\\u0001\",\"data\":1}",
                       false),
               "VALIDATION_ERROR eventType");
    ASSERT_STR(refusal("{\"aggregateId\":\"o_1\",\"eventType\":\"A\",\"data\":1,"
                       "\"data\":2}", false),
               "VALIDATION_ERROR data");
    ASSERT_STR(refusal("{\"aggregateId\":\"..\",\"eventType\":\"A\",\"data\":1}", false),
               "VALIDATION_ERROR aggregateId");
    ASSERT_STR(refusal("[1]", false), "INVALID_REQUEST ");
}

TEST(escaped_names_and_numbers_of_any_size_are_kept)
{
    struct hapnd_append a;
    struct parse_error pe;
    ASSERT_EQ(parse("{\"aggregate\\u0049d\":\"o_1\",\"eventType\":\"T\",\"d\\u0061ta\":"
                    "{\"big\":12345678901234567890123,\"f\":1e400}}", false, &a, &pe),
              0);
    struct buf b;
    buf_init(&b);
    hapnd_native_body(&a, S("o"), &b);
    ASSERT_EQ(eq(&b, "{\"events\":[{\"type\":\"T\",\"data\":{\"big\":12345678901234567890123,"
                     "\"f\":1e400},\"metadata\":{\"hapnd\":{\"aggregateType\":\"o\"}}}]}"),
              true);
    buf_fini(&b);
    hapnd_append_fini(&a);
}

static struct event_rec event(const char *stream, const char *meta)
{
    struct event_rec ev;
    memset(&ev, 0, sizeof ev);
    ev.position = 7;
    ev.version = 2;
    ev.recorded_us = 1773599400123456; /* 2026-03-15T18:30:00.123456Z */
    for (int i = 0; i < 16; i++) {
        ev.id[i] = (uint8_t)(0x10 + i);
    }
    ev.stream = S(stream);
    ev.type = S("ItemAdded");
    ev.data = S("{\"a\":1}");
    ev.metadata = S(meta);
    return ev;
}

TEST(events_read_back_in_hapnd_shape)
{
    struct event_rec ev = event("abc", "{\"hapnd\":{\"aggregateType\":\"order\",\"correlationId\""
                                       ":\"c\",\"metadata\":{\"u\":1}}}");
    struct buf b;
    buf_init(&b);
    hapnd_event_json(&b, &ev);
    ASSERT_EQ(eq(&b, "{\"eventId\":\"evt_101112131415161718191a1b1c1d1e1f\",\"aggregateId\":"
                     "\"abc\",\"aggregateType\":\"order\",\"eventType\":\"ItemAdded\",\"data\":"
                     "{\"a\":1},\"version\":2,\"position\":7,\"timestamp\":"
                     "\"2026-03-15T18:30:00.123Z\",\"metadata\":{\"u\":1},\"correlationId\":"
                     "\"c\"}"),
              true);
    /* written natively: the type is inferred from the stream, no hapnd member */
    struct event_rec nat = event("cart-9", "{}");
    buf_reset(&b);
    hapnd_event_json(&b, &nat);
    ASSERT_EQ(strstr(b.ptr, "\"aggregateType\":\"cart\"") != NULL, true);
    struct event_rec none = event("plain", "{}");
    buf_reset(&b);
    hapnd_event_json(&b, &none);
    ASSERT_EQ(strstr(b.ptr, "aggregateType") == NULL, true);
    buf_fini(&b);
}

TEST(append_answers_in_hapnd_shape_with_state_only_when_a_reducer_is_bound)
{
    const char *one = "{\"stream\":\"order_1\",\"version\":6,\"position\":9,\"events\":[{\"id\":"
                      "\"01020304-0506-0708-090a-0b0c0d0e0f10\",\"position\":9,\"version\":6}],"
                      "\"recorded\":\"2026-03-15T18:30:00.123456Z\"";
    struct buf native, b;
    buf_init(&native);
    buf_init(&b);
    buf_printf(&native, "%s,\"state\":{\"n\":6}}", one);
    ASSERT_EQ(hapnd_append_answer(S(native.ptr), S("order"), false, &b), 0);
    ASSERT_EQ(eq(&b, "{\"eventId\":\"evt_0102030405060708090a0b0c0d0e0f10\",\"aggregateId\":"
                     "\"order_1\",\"aggregateType\":\"order\",\"version\":6,\"timestamp\":"
                     "\"2026-03-15T18:30:00.123Z\",\"state\":{\"n\":6}}"),
              true);
    buf_reset(&native);
    buf_reset(&b);
    buf_printf(&native, "%s,\"state\":null,\"stateError\":{\"code\":\"no_reducer\","
               "\"message\":\"x\"}}", one);
    ASSERT_EQ(hapnd_append_answer(S(native.ptr), S("order"), false, &b), 0);
    ASSERT_EQ(strstr(b.ptr, "state") == NULL, true);
    buf_reset(&native);
    buf_reset(&b);
    buf_printf(&native, "%s,\"state\":null,\"stateError\":{\"code\":\"reducer_failed\","
               "\"message\":\"boom\"}}", one);
    ASSERT_EQ(hapnd_append_answer(S(native.ptr), S("order"), false, &b), 0);
    ASSERT_EQ(strstr(b.ptr, "\"stateError\":{\"errorCode\":\"REDUCER_FAILED\",\"error\":\"boom\"}")
                  != NULL,
              true);
    const char *two = "{\"stream\":\"o_1\",\"version\":7,\"position\":9,\"events\":[{\"id\":"
                      "\"01020304-0506-0708-090a-0b0c0d0e0f10\",\"position\":8,\"version\":6},"
                      "{\"id\":\"01020304-0506-0708-090a-0b0c0d0e0f11\",\"position\":9,"
                      "\"version\":7}],\"recorded\":\"2026-03-15T18:30:00Z\"}";
    buf_reset(&b);
    ASSERT_EQ(hapnd_append_answer(S(two), S("o"), true, &b), 0);
    ASSERT_EQ(eq(&b, "{\"aggregateId\":\"o_1\",\"aggregateType\":\"o\",\"startVersion\":6,"
                     "\"endVersion\":7,\"eventIds\":[\"evt_0102030405060708090a0b0c0d0e0f10\","
                     "\"evt_0102030405060708090a0b0c0d0e0f11\"],\"timestamp\":"
                     "\"2026-03-15T18:30:00.000Z\"}"),
              true);
    buf_reset(&b);
    ASSERT_EQ(hapnd_append_answer(S("{\"x\":1}"), S("o"), true, &b), ERR_INVALID);
    buf_fini(&native);
    buf_fini(&b);
}

TEST(errors_use_hapnd_codes_and_envelope)
{
    struct buf b;
    buf_init(&b);
    struct gate_error e = {.kind = GK_CONFLICT, .code = "wrong_expected_version",
                           .message = "x", .has_actual_version = true, .actual_version = 7,
                           .has_expected_version = true, .expected_version = 5};
    ASSERT_EQ(hapnd_error(&e, &b), 409);
    ASSERT_EQ(eq(&b, "{\"error\":\"Concurrency conflict\",\"errorCode\":\"CONCURRENCY_CONFLICT\","
                     "\"expectedVersion\":5,\"actualVersion\":7}"),
              true);
    buf_reset(&b);
    e = (struct gate_error){.kind = GK_UNAUTHORIZED, .code = "unauthorized", .message = "no key"};
    ASSERT_EQ(hapnd_error(&e, &b), 401);
    ASSERT_EQ(eq(&b, "{\"error\":\"no key\",\"errorCode\":\"UNAUTHORIZED\"}"), true);
    buf_reset(&b);
    e = (struct gate_error){.kind = GK_INVALID, .code = "AGGREGATE_TYPE_MISMATCH",
                            .message = "m"};
    ASSERT_EQ(hapnd_error(&e, &b), 400);
    ASSERT_EQ(eq(&b, "{\"error\":\"m\",\"errorCode\":\"AGGREGATE_TYPE_MISMATCH\"}"), true);
    buf_reset(&b);
    e = (struct gate_error){.kind = GK_INVALID, .code = "invalid_json", .message = "bad"};
    hapnd_error(&e, &b);
    ASSERT_EQ(eq(&b, "{\"error\":\"bad\",\"errorCode\":\"INVALID_REQUEST\"}"), true);
    buf_reset(&b);
    e = (struct gate_error){.kind = GK_INTERNAL, .code = "storage_error", .message = "s"};
    hapnd_error(&e, &b);
    ASSERT_EQ(eq(&b, "{\"error\":\"s\",\"errorCode\":\"INTERNAL_ERROR\"}"), true);
    buf_fini(&b);
}

TEST(state_changes_in_hapnd_shape)
{
    struct event_rec ev = event("order_1", "{\"hapnd\":{\"aggregateType\":\"order\"}}");
    struct buf b;
    buf_init(&b);
    hapnd_change_json(&b, "projection.state_changed", S("proj_Sales"), 3, S("customer-1"),
                      S("{\"n\":2}"), &ev);
    ASSERT_EQ(eq(&b, "{\"type\":\"projection.state_changed\",\"sequence\":3,\"projectionId\":"
                     "\"proj_Sales\",\"stateKey\":\"customer-1\",\"aggregateId\":\"order_1\","
                     "\"aggregateType\":\"order\",\"version\":2,\"triggeredBy\":"
                     "\"evt_101112131415161718191a1b1c1d1e1f\",\"timestamp\":"
                     "\"2026-03-15T18:30:00.123Z\",\"state\":{\"n\":2}}"),
              true);
    buf_reset(&b);
    hapnd_change_json(&b, NULL, S("proj_S"), 1, S("k"), S("1"), NULL);
    ASSERT_EQ(eq(&b, "{\"sequence\":1,\"projectionId\":\"proj_S\",\"stateKey\":\"k\","
                     "\"state\":1}"),
              true);
    buf_fini(&b);
}
