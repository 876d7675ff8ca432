/* The EvidentSource dialect's pure translators (dialect/evidentsource/translate.c): CloudEvents
 * in and out, the native id of (source, id), selectors, append bodies and constraints, the
 * append answer, query bodies, /v1/events parameters and the error envelope. */
#include <string.h>

#include "dialect/evidentsource/translate.h"
#include "gate/gate.h"
#include "json/jsonx.h"
#include "json/validate.h"
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

static bool field_is(const struct parse_error *pe, const char *want)
{
    if (strcmp(pe->field, want) != 0) {
        fprintf(stderr, "  field %s (%s), want %s\n", pe->field, pe->message, want);
        return false;
    }
    return true;
}

/* ---- CloudEvents in ---- */

TEST(event_id_is_uuid_v8_of_sha256_of_source_and_id)
{
    uint8_t u[16], v[16];
    char text[UUID_TEXT_LEN + 1];
    es_event_id(S("order-service"), S("550e8400-e29b-41d4-a716-446655440000"), u);
    uuid_format(u, text);
    /* sha256("cloudevents\0order-service\0550e8400-...")[0..16), version 8, RFC variant */
    ASSERT_STR(text, "e2ae59d5-4c5c-8eca-84ec-49bdc3d9cd7b");
    es_event_id(S("order-service"), S("550e8400-e29b-41d4-a716-446655440000"), v);
    CHECK(memcmp(u, v, 16) == 0);
    /* the separator keeps (source, id) pairs apart whose concatenations are equal */
    es_event_id(S("ab"), S("c"), u);
    es_event_id(S("a"), S("bc"), v);
    CHECK(memcmp(u, v, 16) != 0);
    es_event_id(S("other"), S("550e8400-e29b-41d4-a716-446655440000"), v);
    CHECK((v[6] & 0xf0) == 0x80 && (v[8] & 0xc0) == 0x80);
}

TEST(cloudevent_becomes_a_native_event_of_its_source)
{
    const char *in = "{ \"specversion\":\"1.0\", \"id\":\"e-1\", \"source\":\"orders\", "
                     "\"type\":\"OrderCreated\", \"subject\":\"o-1\", \"time\":"
                     "\"2024-01-15T10:30:00+01:00\", \"ext1\": 7, \"data\": {\"total\": 99.990} }";
    struct buf out, stream;
    buf_init(&out);
    buf_init(&stream);
    struct parse_error pe;
    ASSERT_EQ(es_ce_to_native(S(in), 0, &out, &stream, &pe), 0);
    ASSERT_STR(stream.ptr, "orders");
    uint8_t u[16];
    char id[UUID_TEXT_LEN + 1], want[1024];
    es_event_id(S("orders"), S("e-1"), u);
    uuid_format(u, id);
    snprintf(want, sizeof want,
             "{\"id\":\"%s\",\"type\":\"OrderCreated\",\"data\":{\"total\":99.990},"
             "\"subject\":\"o-1\",\"time\":\"2024-01-15T10:30:00+01:00\",\"metadata\":"
             "{\"cloudevents\":{\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"orders\","
             "\"type\":\"OrderCreated\",\"subject\":\"o-1\",\"time\":"
             "\"2024-01-15T10:30:00+01:00\",\"ext1\":7}}}",
             id);
    CHECK(eq(&out, want));
    /* without data: marked, so that it comes back without data */
    buf_reset(&out);
    ASSERT_EQ(es_ce_to_native(S("{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"s\","
                                "\"type\":\"t\"}"), 0, &out, &stream, &pe), 0);
    CHECK(strstr(out.ptr, "\"data\":null") && strstr(out.ptr, ",\"cloudevents_no_data\":true}"));
    buf_fini(&out);
    buf_fini(&stream);
}

TEST(invalid_cloudevents_name_the_event_and_attribute)
{
    static const struct {
        const char *in, *field;
    } CASES[] = {
        {"{\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}", "events[3].specversion"},
        {"{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}",
         "events[3].specversion"},
        {"{\"specversion\":1.0,\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}",
         "events[3].specversion"},
        {"{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"t\"}", "events[3].id"},
        {"{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"s\",\"type\":\"t\"}", "events[3].id"},
        {"{\"specversion\":\"1.0\",\"id\":7,\"source\":\"s\",\"type\":\"t\"}", "events[3].id"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"t\"}", "events[3].source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"stream\":\"s\",\"type\":\"t\"}",
         "events[3].source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"$logic\",\"type\":\"t\"}",
         "events[3].source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\"}", "events[3].type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"time\":"
         "\"yesterday\"}", "events[3].time"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"time\":"
         "\"2024-13-01T00:00:00Z\"}", "events[3].time"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"\"}",
         "events[3].subject"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data\":1,"
         "\"data_base64\":\"AA==\"}", "events[3].data_base64"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data_base64\":"
         "\"not base64!\"}", "events[3].data_base64"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"Ext\":1}",
         "events[3].Ext"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"ext\":{}}",
         "events[3].ext"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"id\":\"2\",\"source\":\"s\",\"type\":\"t\"}",
         "events[3].id"},
        {"[1]", "events[3]"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out, stream;
        buf_init(&out);
        buf_init(&stream);
        struct parse_error pe;
        ASSERT_EQ(es_ce_to_native(S(CASES[i].in), 3, &out, &stream, &pe), ERR_INVALID);
        ASSERT_EQ(pe.status, 400);
        ASSERT_STR(pe.code, "invalid_event");
        CHECK(field_is(&pe, CASES[i].field));
        buf_fini(&out);
        buf_fini(&stream);
    }
}

/* ---- CloudEvents out ---- */

/* Stores ce as the engine would (metadata and data of its native event) and reads it back. */
static void round_trip(const char *ce, struct buf *out)
{
    struct buf native, stream;
    buf_init(&native);
    buf_init(&stream);
    struct parse_error pe;
    ASSERT_EQ(es_ce_to_native(S(ce), 0, &native, &stream, &pe), 0);
    struct slice nat = {native.ptr, native.len}, meta, data;
    CHECK(jsonx_member(nat, "metadata", &meta) && jsonx_member(nat, "data", &data));
    struct event_rec ev = {.position = 42, .version = 1, .recorded_us = 1700000000000000,
                           .stream = {stream.ptr, stream.len}, .type = S("t"), .data = data,
                           .metadata = meta};
    struct slice id;
    CHECK(jsonx_member(nat, "id", &id) && id.len == UUID_TEXT_LEN + 2);
    CHECK(uuid_parse(id.ptr + 1, UUID_TEXT_LEN, ev.id) == 0); /* the stored event's id */
    es_event(out, &ev);
    buf_fini(&native);
    buf_fini(&stream);
}

TEST(cloudevents_come_back_as_sent_with_revision_and_recorded_time)
{
    static const char *const CASES[] = {
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"time\":"
        "\"2024-01-15T10:30:00.5+02:00\",\"ext\":true,\"data\":{\"a\":[1,2.50]}",
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\","
        "\"datacontenttype\":\"application/octet-stream\",\"data_base64\":\"aGVsbG8=\"",
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"",
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data\":null",
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out, want;
        buf_init(&out);
        buf_init(&want);
        char ce[512];
        snprintf(ce, sizeof ce, "%s}", CASES[i]);
        round_trip(ce, &out);
        buf_printf(&want, "%s,\"revision\":42,\"recordedtime\":\"2023-11-14T22:13:20.000000Z\"}",
                   CASES[i]);
        CHECK(eq(&out, want.ptr));
        buf_fini(&out);
        buf_fini(&want);
    }
}

TEST(cloudevent_attributes_count_only_on_the_events_they_made)
{
    /* metadata written natively may hold a "cloudevents" member: without the id derived from
       it, the event reads as any native event (never an empty or forged object) */
    static const char *const META[] = {
        "{\"cloudevents\":{}}", "{\"cloudevents\":{\"id\":\"x\",\"revision\":1}}",
        "{\"cloudevents\":[1]}", "{\"cloudevents\":{\"id\":7}}"};
    for (size_t i = 0; i < sizeof META / sizeof META[0]; i++) {
        struct event_rec ev = {.position = 3, .stream = S("acct"), .type = S("Opened"),
                               .data = S("1"), .metadata = S(META[i])};
        struct buf out;
        buf_init(&out);
        es_event(&out, &ev);
        CHECK(strncmp(out.ptr, "{\"specversion\":\"1.0\",\"id\":\"00000000-", 35) == 0);
        struct jsonv_error ve;
        CHECK(jsonv_validate(out.ptr, out.len, 64, &ve) == 0);
        buf_fini(&out);
    }
}

TEST(events_appended_natively_get_cloudevent_attributes)
{
    uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct event_rec ev = {.position = 3, .time_us = 0, .recorded_us = 0, .stream = S("acct"),
                           .type = S("Opened"), .data = S("{\"x\":1}"), .metadata = S("{}"),
                           .subject = S("s1")};
    memcpy(ev.id, id, 16);
    struct buf out;
    buf_init(&out);
    es_event(&out, &ev);
    CHECK(eq(&out, "{\"specversion\":\"1.0\",\"id\":\"01020304-0506-0708-090a-0b0c0d0e0f10\","
                   "\"source\":\"acct\",\"type\":\"Opened\",\"subject\":\"s1\",\"time\":"
                   "\"1970-01-01T00:00:00.000000Z\",\"datacontenttype\":\"application/json\","
                   "\"data\":{\"x\":1},\"revision\":3,\"recordedtime\":"
                   "\"1970-01-01T00:00:00.000000Z\"}"));
    buf_fini(&out);
}

/* ---- selectors ---- */

TEST(selectors_flat_and_nested_become_native_selectors)
{
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"{\"stream\":\"orders\"}",
         "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":"
         "\"orders\"}}]}"},
        {"{\"source\":\"o\",\"event_type\":\"A\",\"subject\":null}",
         "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":\"o\"}},"
         "{\"type\":\"equals\",\"attr\":{\"event_type\":\"A\"}},{\"type\":\"equals\",\"attr\":"
         "{\"subject\":null}}]}"},
        {"{\"type\":\"or\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"event_type\":\"A\"}},"
         "{\"type\":\"and\",\"selectors\":[{\"type\":\"starts_with\",\"attr\":{\"source\":"
         "\"ord\"}},{\"type\":\"equals\",\"attr\":{\"subject\":\"\\u00e9\"}}]}]}",
         "{\"type\":\"or\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"event_type\":\"A\"}},"
         "{\"type\":\"and\",\"selectors\":[{\"type\":\"starts_with\",\"attr\":{\"stream\":"
         "\"ord\"}},{\"type\":\"equals\",\"attr\":{\"subject\":\"\xc3\xa9\"}}]}]}"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        ASSERT_EQ(es_selector(S(CASES[i].in), "selectors[0]", &out, &pe), 0);
        CHECK(eq(&out, CASES[i].out));
        buf_fini(&out);
    }
}

TEST(bad_selectors_name_their_place)
{
    static const struct {
        const char *in, *field;
    } CASES[] = {
        {"[]", "sel"},
        {"{}", "sel"},
        {"{\"stream\":\"a\",\"source\":\"b\"}", "sel"},
        {"{\"stream\":\"a\",\"colour\":\"b\"}", "sel"},
        {"{\"stream\":\"\"}", "sel"},
        {"{\"stream\":null}", "sel"},
        {"{\"event_type\":5}", "sel"},
        {"{\"type\":\"xor\",\"selectors\":[]}", "sel"},
        {"{\"type\":\"or\",\"selectors\":[]}", "sel"},
        {"{\"type\":\"or\",\"attr\":{\"stream\":\"a\"}}", "sel"},
        {"{\"type\":\"or\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":\"a\","
         "\"subject\":\"b\"}}]}", "sel.selectors[0]"},
        {"{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"x\":\"a\"}}]}",
         "sel.selectors[0]"},
        {"{\"type\":\"and\",\"selectors\":[{\"stream\":\"a\"}]}", "sel.selectors[0]"},
        {"{\"type\":\"starts_with\",\"attr\":{\"subject\":null}}", "sel"},
        {"{\"type\":\"or\",\"selectors\":[{\"type\":\"or\",\"selectors\":[{\"type\":\"or\","
         "\"selectors\":[{\"type\":\"or\",\"selectors\":[{\"type\":\"or\",\"selectors\":[{"
         "\"type\":\"or\",\"selectors\":[{\"type\":\"or\",\"selectors\":[{\"type\":\"or\","
         "\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":\"a\"}}]}]}]}]}]}]}]}]}",
         "sel.selectors[0].selectors[0].selectors[0].selectors[0].selectors[0].selectors[0]."
         "selectors[0]."}, /* cut to fit 96 bytes */
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        ASSERT_EQ(es_selector(S(CASES[i].in), "sel", &out, &pe), ERR_INVALID);
        ASSERT_EQ(pe.status, 400);
        CHECK(field_is(&pe, CASES[i].field));
        buf_fini(&out);
    }
}

/* ---- appends ---- */

static const char CE_A1[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"A\",\"type\":\"t\"}";
static const char CE_A2[] = "{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"A\",\"type\":\"t\"}";
static const char CE_B1[] = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"B\",\"type\":\"t\"}";

/* The streams of the parts of a native append body, joined with ','. */
static void part_streams(const struct buf *native, struct buf *out)
{
    struct slice appends, part, stream;
    size_t pos = 0;
    CHECK(jsonx_member((struct slice){native->ptr, native->len}, "appends", &appends));
    while (jsonx_next_item(appends, &pos, &part)) {
        CHECK(jsonx_member(part, "stream", &stream));
        buf_add(out, stream.ptr + 1, stream.len - 2);
        buf_addc(out, ',');
    }
}

TEST(append_parts_are_runs_of_one_source_in_request_order)
{
    static const struct {
        const char *a, *b, *c, *parts;
    } CASES[] = {
        {CE_A1, CE_A2, CE_B1, "A,B,"},
        {CE_A1, CE_B1, CE_A2, "A,B,A,"},
        {CE_B1, CE_A1, CE_A2, "B,A,"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"events\":[%s,%s,%s]}", CASES[i].a, CASES[i].b,
                 CASES[i].c);
        struct buf native, parts;
        buf_init(&native);
        buf_init(&parts);
        struct parse_error pe;
        ASSERT_EQ(es_append_request(S(body), 1000, &native, &pe), 0);
        part_streams(&native, &parts);
        CHECK(eq(&parts, CASES[i].parts));
        CHECK(!strstr(native.ptr, "conditions"));
        buf_fini(&native);
        buf_fini(&parts);
    }
}

TEST(append_refusals_name_the_request_member)
{
    char dup[512], many[512];
    snprintf(dup, sizeof dup, "{\"events\":[%s,%s,%s]}", CE_A1, CE_B1, CE_A1);
    snprintf(many, sizeof many, "{\"events\":[%s,%s,%s,%s]}", CE_A1, CE_A2, CE_B1, CE_B1);
    static const char BAD_TIME[] = "{\"events\":[{\"specversion\":\"1.0\",\"id\":\"1\","
                                   "\"source\":\"A\",\"type\":\"t\",\"time\":\"x\"}]}";
    const struct {
        const char *in, *field;
        unsigned status;
    } CASES[] = {
        {"{\"events\":", "", 400},
        {"[]", "", 400},
        {"{\"events\":{}}", "events", 400},
        {"{\"events\":[]}", "events", 400},
        {"{}", "events", 400},
        {"{\"events\":[1],\"extra\":1}", "extra", 400},
        {BAD_TIME, "events[0].time", 400},
        {dup, "events[2].id", 400},
        {many, "events", 413},
        {"{\"events\":[{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"A\",\"type\":\"t\"}],"
         "\"constraints\":{}}", "constraints", 400},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf native;
        buf_init(&native);
        struct parse_error pe;
        CHECK(es_append_request(S(CASES[i].in), 3, &native, &pe) != 0);
        ASSERT_EQ(pe.status, CASES[i].status);
        CHECK(field_is(&pe, CASES[i].field));
        buf_fini(&native);
    }
}

TEST(constraints_become_native_conditions)
{
    static const char SEL_A[] = "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":"
                                "{\"stream\":\"a\"}}]}";
    static const char SEL_AS[] = "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":"
                                 "{\"stream\":\"a\"}},{\"type\":\"equals\",\"attr\":{\"subject\":"
                                 "\"s\"}}]}";
    static const char SEL_S[] = "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":"
                                "{\"subject\":\"s\"}}]}";
    static const struct {
        const char *in, *sel, *bounds;
    } CASES[] = {
        {"{\"type\":\"min_revision\",\"revision\":12344}", NULL, "\"min\":12344"},
        {"{\"type\":\"min_revision\",\"revision\":3,\"selector\":{\"stream\":\"a\"}}", SEL_A,
         "\"min\":3"},
        {"{\"type\":\"min\",\"selector\":{\"stream\":\"a\"},\"revision\":1}", SEL_A, "\"min\":1"},
        {"{\"type\":\"max\",\"selector\":{\"stream\":\"a\"},\"revision\":0}", SEL_A, "\"max\":0"},
        {"{\"type\":\"range\",\"selector\":{\"stream\":\"a\"},\"min\":2,\"max\":9}", SEL_A,
         "\"min\":2,\"max\":9"},
        {"{\"type\":\"max_revision\",\"selector\":{\"stream\":\"a\"},\"revision\":6}", SEL_A,
         "\"max\":6"},
        {"{\"type\":\"fail_if_events_match\",\"selector\":{\"stream\":\"a\"}}", SEL_A,
         "\"max\":0"},
        {"{\"type\":\"fail_if_events_match\",\"selector\":{\"stream\":\"a\"},\"after\":8}",
         SEL_A, "\"max\":8"},
        {"{\"type\":\"stream_exists\",\"stream\":\"a\"}", SEL_A, "\"min\":1"},
        {"{\"type\":\"stream_does_not_exist\",\"stream\":\"a\"}", SEL_A, "\"max\":0"},
        {"{\"type\":\"stream_max_revision\",\"stream\":\"a\",\"revision\":7}", SEL_A,
         "\"max\":7"},
        {"{\"type\":\"subject_exists\",\"subject\":\"s\"}", SEL_S, "\"min\":1"},
        {"{\"type\":\"subject_does_not_exist\",\"subject\":\"s\"}", SEL_S, "\"max\":0"},
        {"{\"type\":\"subject_max_revision\",\"subject\":\"s\",\"revision\":5}", SEL_S,
         "\"max\":5"},
        {"{\"type\":\"subject_exists_on_stream\",\"stream\":\"a\",\"subject\":\"s\"}", SEL_AS,
         "\"min\":1"},
        {"{\"type\":\"subject_does_not_exist_on_stream\",\"stream\":\"a\",\"subject\":\"s\"}",
         SEL_AS, "\"max\":0"},
        {"{\"type\":\"subject_max_revision_on_stream\",\"stream\":\"a\",\"subject\":\"s\","
         "\"revision\":4}", SEL_AS, "\"max\":4"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out, want;
        buf_init(&out);
        buf_init(&want);
        struct parse_error pe;
        ASSERT_EQ(es_constraint(S(CASES[i].in), 0, &out, &pe), 0);
        if (CASES[i].sel) {
            buf_printf(&want, "{\"query\":{\"selector\":%s},%s}", CASES[i].sel, CASES[i].bounds);
        } else {
            buf_printf(&want, "{\"query\":{},%s}", CASES[i].bounds);
        }
        CHECK(eq(&out, want.ptr));
        buf_fini(&out);
        buf_fini(&want);
    }
}

TEST(bad_constraints_are_refused_naming_the_member)
{
    static const struct {
        const char *in, *field;
    } CASES[] = {
        {"{\"type\":\"sometimes\"}", "constraints[1].type"},
        {"{\"revision\":1}", "constraints[1].type"},
        {"{\"type\":\"min_revision\"}", "constraints[1].revision"},
        {"{\"type\":\"min_revision\",\"revision\":-1}", "constraints[1].revision"},
        {"{\"type\":\"min_revision\",\"revision\":1.5}", "constraints[1].revision"},
        {"{\"type\":\"min_revision\",\"revision\":\"1\"}", "constraints[1].revision"},
        {"{\"type\":\"max\",\"revision\":1}", "constraints[1].selector"},
        {"{\"type\":\"max\",\"revision\":1,\"selector\":{\"stream\":\"\"}}",
         "constraints[1].selector"},
        {"{\"type\":\"range\",\"selector\":{\"stream\":\"a\"},\"min\":5,\"max\":2}",
         "constraints[1]"},
        {"{\"type\":\"stream_exists\",\"stream\":\"a\",\"revision\":1}",
         "constraints[1].revision"},
        {"{\"type\":\"stream_exists\"}", "constraints[1].stream"},
        {"{\"type\":\"fail_if_events_match\",\"selector\":{\"stream\":\"a\"},\"after\":-1}",
         "constraints[1].after"},
        {"{\"type\":\"max\",\"selector\":{\"stream\":\"a\"},\"revision\":1,\"after\":1}",
         "constraints[1].after"},
        {"{\"type\":\"min_revision\",\"revision\":1,\"colour\":1}", "constraints[1].colour"},
        {"[]", "constraints[1]"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        ASSERT_EQ(es_constraint(S(CASES[i].in), 1, &out, &pe), ERR_INVALID);
        ASSERT_EQ(pe.status, 400);
        CHECK(field_is(&pe, CASES[i].field));
        buf_fini(&out);
    }
}

TEST(append_answer_is_the_last_revision_and_the_count)
{
    struct buf out;
    buf_init(&out);
    ASSERT_EQ(es_append_answer(S("{\"position\":9,\"appends\":[{\"stream\":\"a\",\"version\":2,"
                                 "\"position\":9,\"events\":[{\"id\":\"x\",\"position\":8,"
                                 "\"version\":1},{\"id\":\"y\",\"position\":9,\"version\":2}]},"
                                 "{\"stream\":\"b\",\"version\":1,\"position\":4,\"events\":["
                                 "{\"id\":\"z\",\"position\":4,\"version\":1}]}],\"duplicate\":"
                                 "true,\"recorded\":\"t\"}"),
                               &out),
              0);
    CHECK(eq(&out, "{\"revision\":4,\"events_count\":3}"));
    buf_reset(&out);
    ASSERT_EQ(es_append_answer(S("{\"stream\":\"a\"}"), &out), ERR_INVALID);
    buf_fini(&out);
}

/* ---- queries ---- */

TEST(query_bodies_become_native_queries)
{
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"{}", "{\"direction\":\"forward\",\"limit\":100}"},
        {"{\"selectors\":[{\"stream\":\"a\"}],\"revision_range\":{\"start\":2,\"end\":9},"
         "\"limit\":5}",
         "{\"direction\":\"forward\",\"limit\":5,\"selector\":{\"type\":\"and\",\"selectors\":["
         "{\"type\":\"equals\",\"attr\":{\"stream\":\"a\"}}]},\"from\":2,\"to\":9}"},
        {"{\"selectors\":[{\"stream\":\"a\"},{\"event_type\":\"T\"}],\"direction\":\"backward\","
         "\"revision_range\":{\"start\":0,\"end\":9}}",
         "{\"direction\":\"backward\",\"limit\":100,\"selector\":{\"type\":\"or\",\"selectors\":"
         "[{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":\"a\"}}]},"
         "{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\",\"attr\":{\"event_type\":\"T\"}}"
         "]}]},\"from\":9}"},
        {"{\"effective_time_range\":{\"start\":\"2024-01-01T00:00:00Z\",\"end\":"
         "\"2024-01-31T23:59:59Z\"},\"as_of_effective_time\":\"2024-01-10T00:00:00Z\","
         "\"as_of_transaction_time\":\"2025-01-01T00:00:00Z\",\"as_of_revision\":3}",
         "{\"direction\":\"forward\",\"limit\":100,\"timeFrom\":\"2024-01-01T00:00:00Z\","
         "\"timeTo\":\"2024-01-10T00:00:00Z\",\"asOf\":3,\"asOfTime\":\"2025-01-01T00:00:00Z\"}"},
        {"{\"effective_time_range\":{\"end\":\"2024-01-31T23:59:59Z\"},\"as_of_effective_time\":"
         "\"2024-02-10T00:00:00Z\"}",
         "{\"direction\":\"forward\",\"limit\":100,\"timeTo\":\"2024-01-31T23:59:59Z\"}"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        bool nothing = true;
        ASSERT_EQ(es_query_request(S(CASES[i].in), &out, &nothing, &pe), 0);
        CHECK(eq(&out, CASES[i].out));
        CHECK(!nothing);
        buf_fini(&out);
    }
    struct buf out;
    buf_init(&out);
    struct parse_error pe;
    bool nothing = false;
    ASSERT_EQ(es_query_request(S("{\"revision_range\":{\"end\":0}}"), &out, &nothing, &pe), 0);
    CHECK(nothing);
    buf_fini(&out);
}

TEST(bad_query_bodies_name_the_member)
{
    static const struct {
        const char *in, *field;
    } CASES[] = {
        {"nope", ""},
        {"{\"limit\":0}", "limit"},
        {"{\"limit\":1001}", "limit"},
        {"{\"direction\":\"sideways\"}", "direction"},
        {"{\"selectors\":{}}", "selectors"},
        {"{\"selectors\":[{\"stream\":1}]}", "selectors[0]"},
        {"{\"selectors\":[{}, {\"colour\":\"red\"}]}", "selectors[0]"},
        {"{\"revision_range\":{\"start\":-1}}", "revision_range.start"},
        {"{\"revision_range\":{\"start\":5,\"end\":2}}", "revision_range"},
        {"{\"revision_range\":{\"from\":5}}", "revision_range.from"},
        {"{\"effective_time_range\":{\"start\":\"soon\"}}", "effective_time_range.start"},
        {"{\"effective_time_range\":{\"start\":\"2024-02-01T00:00:00Z\",\"end\":"
         "\"2024-01-01T00:00:00Z\"}}", "effective_time_range"},
        {"{\"as_of_transaction_time\":5}", "as_of_transaction_time"},
        {"{\"as_of_revision\":0}", "as_of_revision"},
        {"{\"cursor\":\"x\"}", "cursor"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct buf out;
        buf_init(&out);
        struct parse_error pe;
        bool nothing;
        ASSERT_EQ(es_query_request(S(CASES[i].in), &out, &nothing, &pe), ERR_INVALID);
        ASSERT_EQ(pe.status, 400);
        CHECK(field_is(&pe, CASES[i].field));
        buf_fini(&out);
    }
}

TEST(v1_event_parameters_become_native_queries)
{
    struct es_v1_params p = {.stream = "orders", .type = "Order*", .subject = "o-1",
                             .as_of_effective_time = "2024-01-01T00:00:00Z",
                             .as_of_revision = "9", .after = "4", .limit = "2"};
    struct buf out;
    buf_init(&out);
    struct parse_error pe;
    ASSERT_EQ(es_v1_query(&p, &out, &pe), 0);
    CHECK(eq(&out, "{\"direction\":\"forward\",\"selector\":{\"type\":\"and\",\"selectors\":["
                   "{\"type\":\"equals\",\"attr\":{\"stream\":\"orders\"}},{\"type\":\"equals\","
                   "\"attr\":{\"event_type\":\"Order*\"}},{\"type\":\"equals\",\"attr\":"
                   "{\"subject\":\"o-1\"}}]},\"timeTo\":\"2024-01-01T00:00:00Z\",\"asOf\":9,"
                   "\"from\":5,\"limit\":2}"));
    buf_reset(&out);
    struct es_v1_params live = {.stream = "orders", .after = "4", .limit = "2", .live = true};
    ASSERT_EQ(es_v1_query(&live, &out, &pe), 0);
    CHECK(eq(&out, "{\"direction\":\"forward\",\"selector\":{\"type\":\"and\",\"selectors\":["
                   "{\"type\":\"equals\",\"attr\":{\"stream\":\"orders\"}}]}}"));
    const struct {
        struct es_v1_params p;
        const char *field;
    } BAD[] = {
        {{.limit = "0"}, "limit"},
        {{.limit = "1001"}, "limit"},
        {{.after = "-1"}, "after"},
        {{.stream = ""}, "stream"},
        {{.as_of_transaction_time = "later"}, "asOfTransactionTime"},
        {{.as_of_revision = "0"}, "asOfRevision"},
        {{.as_of_transaction_time = "2024-01-01T00:00:00Z", .live = true}, "asOfTransactionTime"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        buf_reset(&out);
        ASSERT_EQ(es_v1_query(&BAD[i].p, &out, &pe), ERR_INVALID);
        CHECK(field_is(&pe, BAD[i].field));
    }
    buf_fini(&out);
}

/* ---- errors ---- */

TEST(errors_use_evidentsource_codes_and_request_fields)
{
    uint64_t conflicts[] = {5, 8};
    struct gate_error e = {.kind = GK_CONFLICT, .code = "condition_failed",
                           .message = "an append condition does not hold",
                           .field = "conditions[2]", .has_last_position = true,
                           .last_position = 8, .conflicts = conflicts, .nconflicts = 2};
    struct buf out;
    buf_init(&out);
    ASSERT_EQ(es_error(&e, &out), 409);
    CHECK(eq(&out, "{\"error\":{\"code\":\"FAILED_PRECONDITION\",\"message\":\"an append "
                   "condition does not hold\",\"details\":{\"reason\":\"condition_failed\","
                   "\"field\":\"constraints[2]\",\"latest_matching_revision\":8,"
                   "\"conflicting_revisions\":[5,8]}}}"));
    buf_reset(&out);
    struct gate_error d = {.kind = GK_CONFLICT, .code = "duplicate_event_id", .message = "m"};
    ASSERT_EQ(es_error(&d, &out), 409);
    CHECK(strstr(out.ptr, "\"ALREADY_EXISTS\""));
    buf_reset(&out);
    struct gate_error n = {.kind = GK_NOT_FOUND, .code = "event_not_found", .message = "m"};
    ASSERT_EQ(es_error(&n, &out), 404);
    CHECK(strstr(out.ptr, "\"NOT_FOUND\""));
    buf_fini(&out);
}

TEST(revision_parameters)
{
    uint64_t v;
    ASSERT_EQ(es_parse_revision("12", true, &v), 0);
    ASSERT_EQ(v, 12);
    ASSERT_EQ(es_parse_revision("0", false, &v), 0);
    ASSERT_EQ(es_parse_revision("0", true, &v), ERR_INVALID);
    ASSERT_EQ(es_parse_revision("-1", false, &v), ERR_INVALID);
    ASSERT_EQ(es_parse_revision("1x", false, &v), ERR_INVALID);
    ASSERT_EQ(es_parse_revision("", false, &v), ERR_INVALID);
    ASSERT_EQ(es_parse_revision(NULL, false, &v), ERR_INVALID);
    ASSERT_EQ(es_parse_revision("99999999999999999999", false, &v), ERR_INVALID);
}
