/* dialect/evidentsource/format: the CloudEvents event format of the logic layer: what a state
 * change's returned CloudEvents, ctx.query selectors and constraints become natively. */
#include <string.h>

#include "dialect/evidentsource/format.h"
#include "unit.h"
#include "util/errors.h"

static const struct logic_event_format *F = &es_cloudevents_format;

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

/* Runs fn-like translations into a NUL-terminated buffer. */
static int parse(const char *ev, struct buf *out, char *why)
{
    buf_reset(out);
    int rc = F->parse(S(ev), 0, "place-order", out, why, 160);
    buf_addc(out, '\0');
    return rc;
}

TEST(events_get_the_attributes_a_change_may_leave_out)
{
    struct buf b;
    buf_init(&b);
    char why[160];
    ASSERT_STR(F->name, "cloudevents");
    ASSERT_EQ(parse("{\"type\":\"OrderPlaced\",\"subject\":\"o-1\",\"data\":{\"n\":1}}", &b, why),
              0);
    CHECK(!strncmp(b.ptr, "{\"stream\":\"place-order\",\"id\":\"", 30)); /* source: the change */
    CHECK(strstr(b.ptr, "\"type\":\"OrderPlaced\"") && strstr(b.ptr, "\"subject\":\"o-1\""));
    CHECK(strstr(b.ptr, "\"data\":{\"n\":1}") && strstr(b.ptr, "\"specversion\":\"1.0\""));
    CHECK(strstr(b.ptr, "\"metadata\":{\"cloudevents\":{"));
    /* given attributes are kept; the stream is the source */
    ASSERT_EQ(parse("{ \"specversion\" : \"1.0\", \"id\":\"e-1\",\"source\":\"orders\","
                    "\"type\":\"T\",\"time\":\"2024-01-15T10:30:00Z\"}", &b, why), 0);
    CHECK(!strncmp(b.ptr, "{\"stream\":\"orders\",", 19));
    CHECK(strstr(b.ptr, "\"time\":\"2024-01-15T10:30:00Z\"") && strstr(b.ptr, "\"e-1\""));
    /* the same (source, id) is the same native id: a decision sent again is idempotent */
    struct buf again;
    buf_init(&again);
    buf_add(&again, b.ptr, b.len);
    ASSERT_EQ(parse("{\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"orders\","
                    "\"type\":\"T\",\"time\":\"2024-01-15T10:30:00Z\"}", &b, why), 0);
    CHECK(!strncmp(b.ptr, again.ptr, 80));
    buf_fini(&again);
    /* empty object: every default, and still no type */
    ASSERT_EQ(parse("{}", &b, why), ERR_INVALID);
    CHECK(strstr(why, "type"));
    ASSERT_EQ(parse("[1]", &b, why), ERR_INVALID);
    ASSERT_EQ(parse("{\"type\":\"T\",\"specversion\":\"0.3\"}", &b, why), ERR_INVALID);
    CHECK(strstr(why, "specversion"));
    ASSERT_EQ(parse("{\"type\":\"T\",\"time\":\"then\"}", &b, why), ERR_INVALID);
    CHECK(strstr(why, "time"));
    ASSERT_EQ(parse("{\"type\":\"T\",\"source\":\"$logic\"}", &b, why), ERR_INVALID);
    buf_fini(&b);
}

static int translate(int (*fn)(struct slice, struct buf *, char *, size_t), const char *in,
                     struct buf *out)
{
    char why[160];
    buf_reset(out);
    int rc = fn(S(in), out, why, sizeof why);
    buf_addc(out, '\0');
    return rc;
}

static int constraint(const char *in, struct buf *out)
{
    char why[160];
    buf_reset(out);
    int rc = F->condition(S(in), 2, out, why, sizeof why);
    buf_addc(out, '\0');
    if (rc) {
        CHECK(strstr(why, "constraints[2]")); /* named by its place in the decision */
    }
    return rc;
}

TEST(selectors_for_ctx_query)
{
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(translate(F->filter, "{\"stream\":\"orders\",\"event_type\":\"T\"}", &b), 0);
    ASSERT_STR(b.ptr, "{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
                      "\"attr\":{\"stream\":\"orders\"}},{\"type\":\"equals\",\"attr\":"
                      "{\"event_type\":\"T\"}}]}}");
    ASSERT_EQ(translate(F->filter, "[{\"source\":\"a\"},{\"type\":\"starts_with\",\"attr\":"
                                   "{\"subject\":\"o-\"}}]", &b), 0);
    ASSERT_STR(b.ptr, "{\"selector\":{\"type\":\"or\",\"selectors\":[{\"type\":\"and\","
                      "\"selectors\":[{\"type\":\"equals\",\"attr\":{\"stream\":\"a\"}}]},"
                      "{\"type\":\"starts_with\",\"attr\":{\"subject\":\"o-\"}}]}}");
    ASSERT_EQ(translate(F->filter, "[]", &b), ERR_INVALID);
    ASSERT_EQ(translate(F->filter, "{}", &b), ERR_INVALID);
    ASSERT_EQ(translate(F->filter, "\"orders\"", &b), ERR_INVALID);
    buf_fini(&b);
}

TEST(constraints_become_native_conditions)
{
    static const char *const cases[][2] = {
        {"{\"type\":\"min_revision\",\"revision\":12344}", "{\"query\":{},\"min\":12344}"},
        {"{\"type\":\"max\",\"selector\":{\"subject\":\"o-1\"},\"revision\":0}",
         "{\"query\":{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
         "\"attr\":{\"subject\":\"o-1\"}}]}},\"max\":0}"},
        {"{\"type\":\"range\",\"selector\":{\"stream\":\"s\"},\"min\":2,\"max\":5}",
         "{\"query\":{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
         "\"attr\":{\"stream\":\"s\"}}]}},\"min\":2,\"max\":5}"},
        {"{\"type\":\"fail_if_events_match\",\"selector\":{\"stream\":\"s\"}}",
         "{\"query\":{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
         "\"attr\":{\"stream\":\"s\"}}]}},\"max\":0}"},
        {"{\"type\":\"stream_exists\",\"stream\":\"s\"}",
         "{\"query\":{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
         "\"attr\":{\"stream\":\"s\"}}]}},\"min\":1}"},
        {"{\"type\":\"subject_max_revision_on_stream\",\"stream\":\"s\",\"subject\":\"x\","
         "\"revision\":9}",
         "{\"query\":{\"selector\":{\"type\":\"and\",\"selectors\":[{\"type\":\"equals\","
         "\"attr\":{\"stream\":\"s\"}},{\"type\":\"equals\",\"attr\":{\"subject\":\"x\"}}]}},"
         "\"max\":9}"},
        {"{ \"failIfEventsMatch\" : {\"types\":[\"T\"]}, \"after\": 3 }",
         "{\"failIfEventsMatch\":{\"types\":[\"T\"]},\"after\":3}"},
    };
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_EQ(constraint(cases[i][0], &b), 0);
        ASSERT_STR(b.ptr, cases[i][1]);
    }
    static const char *const bad[] = {
        "{\"type\":\"max\",\"revision\":1}",                      /* no selector */
        "{\"type\":\"max\",\"selector\":{\"stream\":\"s\"}}",     /* no revision */
        "{\"type\":\"max\",\"selector\":{\"stream\":\"s\"},\"revision\":-1}",
        "{\"type\":\"min_revision\",\"revision\":\"12\"}",
        "{\"type\":\"stream_max_revision\",\"revision\":1}",      /* no stream */
        "{\"type\":\"subject_exists\",\"subject\":3}",
        "{\"type\":\"eventually\"}",
        "{\"type\":7}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(constraint(bad[i], &b), ERR_INVALID);
    }
    buf_fini(&b);
}
