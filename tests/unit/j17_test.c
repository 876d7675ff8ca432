/* The j17 dialect's pure translators (dialect/j17/translate.c): the error envelope, stream
 * ids, metadata, events as reads and handlers see them, and write answers. */
#include <string.h>

#include "dialect/j17/translate.h"
#include "gate/gate.h"
#include "unit.h"
#include "util/errors.h"

static bool eq(const struct buf *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(b->ptr, want, b->len) != 0) {
        fprintf(stderr, "  got  %.*s\n  want %s\n", (int)b->len, b->ptr ? b->ptr : "", want);
        return false;
    }
    return true;
}

TEST(errors_use_the_ok_false_envelope_with_the_path)
{
    struct buf b;
    buf_init(&b);
    struct gate_error e = {.kind = GK_INVALID, .code = "j17",
                           .message = "Event data failed schema validation",
                           .field = "data.email"};
    ASSERT_EQ(j17_error(&e, &b), 400u);
    ASSERT_EQ(eq(&b, "{\"ok\":false,\"error\":\"Event data failed schema validation\","
                     "\"path\":\"data.email\"}"), true);
    buf_reset(&b);
    struct gate_error media = {.kind = GK_MEDIA_TYPE, .message = "send JSON"};
    ASSERT_EQ(j17_error(&media, &b), 400u); /* j17 answers 400 for a wrong content type */
    buf_reset(&b);
    struct gate_error conflict = {.kind = GK_CONFLICT, .code = "wrong_expected_version",
                                  .message = "x", .field = "appends[0].expectedVersion",
                                  .has_actual_version = true, .actual_version = 6,
                                  .has_expected_version = true, .expected_version = 5};
    ASSERT_EQ(j17_error(&conflict, &b), 409u);
    ASSERT_EQ(eq(&b, "{\"ok\":false,\"error\":\"Concurrent write detected. Stream has 6 "
                     "events, expected 5.\"}"), true);
    buf_fini(&b);
}

TEST(stream_ids_are_commit_milliseconds_and_the_version_less_one)
{
    char sid[J17_STREAM_ID_BYTES];
    j17_stream_id(1705312800123456, 1, sid);
    ASSERT_STR(sid, "1705312800123-0");
    j17_stream_id(1705312800123456, 7, sid);
    ASSERT_STR(sid, "1705312800123-6");
    uint64_t v = 0;
    ASSERT_EQ(j17_stream_id_version("1705312800123-6", &v), true);
    ASSERT_EQ(v, 7u);
    ASSERT_EQ(j17_stream_id_version("0-0", &v), true);
    ASSERT_EQ(v, 1u);
    ASSERT_EQ(j17_stream_id_version("17053", &v), false);
    ASSERT_EQ(j17_stream_id_version("-1", &v), false);
    ASSERT_EQ(j17_stream_id_version("1-", &v), false);
    ASSERT_EQ(j17_stream_id_version("1-x", &v), false);
    ASSERT_EQ(j17_stream_id_version("1-18446744073709551615", &v), false);
}

static int meta(const char *text, struct j17_meta *m, struct j17_fault *f)
{
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    int rc = j17_meta_read(j, m, f);
    json_decref(j);
    return rc;
}

TEST(metadata_needs_an_actor_and_keeps_other_members)
{
    struct j17_meta m;
    struct j17_fault f;
    ASSERT_EQ(meta(NULL, &m, &f), ERR_INVALID);
    ASSERT_STR(f.path, "metadata");
    ASSERT_EQ(meta("{}", &m, &f), ERR_INVALID);
    ASSERT_STR(f.path, "metadata.actor");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"user\"}}", &m, &f), ERR_INVALID);
    ASSERT_STR(f.path, "metadata.actor.id");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"user\",\"id\":\"x\"},\"target\":3}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.target");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"previous_length\":-1}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.previous_length");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"skip_occ\":1}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.skip_occ");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"previous_length\":5,"
                   "\"skip_occ\":false,\"trace\":\"t1\"}", &m, &f), 0);
    ASSERT_EQ(m.has_previous, true);
    ASSERT_EQ(m.previous_length, 5u);
    ASSERT_EQ(m.skip_occ, false);
    char *s = json_dumps(m.stored, JSON_COMPACT);
    ASSERT_STR(s, "{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"trace\":\"t1\"}");
    free(s);
    j17_meta_fini(&m);
}

static struct event_rec event(const char *stream, uint64_t version, const char *meta)
{
    struct event_rec ev = {.position = 9, .version = version, .recorded_us = 1705312800123456};
    ev.stream = (struct slice){stream, strlen(stream)};
    ev.type = (struct slice){"was_created", 11};
    ev.data = (struct slice){"{\"name\":\"Al\"}", 13};
    ev.metadata = (struct slice){meta, strlen(meta)};
    return ev;
}

TEST(events_as_reads_and_handlers_see_them)
{
    struct buf b;
    buf_init(&b);
    struct event_rec ev = event("user:abc:2026", 2, "{\"actor\":{\"type\":\"u\",\"id\":\"x\"}}");
    j17_event_json(&b, &ev);
    ASSERT_EQ(eq(&b, "{\"stream_id\":\"1705312800123-1\",\"key\":\"user:abc:2026\",\"type\":"
                     "\"was_created\",\"data\":{\"name\":\"Al\"},\"metadata\":{\"actor\":"
                     "{\"type\":\"u\",\"id\":\"x\"},\"timestamp\":1705312800}}"), true);
    buf_reset(&b);
    j17_event_render(&b, &ev);
    ASSERT_EQ(eq(&b, "{\"type\":\"was_created\",\"key\":\"user:abc:2026\",\"id\":\"abc:2026\","
                     "\"data\":{\"name\":\"Al\"},\"metadata\":{\"actor\":{\"type\":\"u\","
                     "\"id\":\"x\"},\"timestamp\":1705312800,\"stream_id\":"
                     "\"1705312800123-1\"}}"), true);
    buf_reset(&b);
    struct event_rec bare = event("user:abc", 1, "{}");
    j17_event_render(&b, &bare);
    ASSERT_EQ(eq(&b, "{\"type\":\"was_created\",\"key\":\"user:abc\",\"id\":\"abc\",\"data\":"
                     "{\"name\":\"Al\"},\"metadata\":{\"timestamp\":1705312800,\"stream_id\":"
                     "\"1705312800123-0\"}}"), true);
    buf_fini(&b);
}

TEST(write_answers_name_the_aggregates_own_events_and_count_implied_ones)
{
    const char *native =
        "{\"position\":12,\"appends\":[{\"stream\":\"order:a\",\"version\":4,\"position\":11,"
        "\"events\":[{\"id\":\"x\",\"position\":10,\"version\":3},{\"id\":\"y\",\"position\":11,"
        "\"version\":4}]},{\"stream\":\"user:b\",\"version\":1,\"position\":12,\"events\":"
        "[{\"id\":\"z\",\"position\":12,\"version\":1}]}],\"recorded\":"
        "\"2024-01-15T10:00:00.123456Z\"}";
    struct slice n = {native, strlen(native)};
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(j17_write_answer(n, 1, 2, false, &b), 0);
    ASSERT_EQ(eq(&b, "{\"ok\":true,\"stream_id\":\"1705312800123-2\",\"implied_count\":2}"),
              true);
    buf_reset(&b);
    ASSERT_EQ(j17_write_answer(n, 2, 0, true, &b), 0);
    ASSERT_EQ(eq(&b, "{\"ok\":true,\"stream_ids\":[\"1705312800123-2\",\"1705312800123-3\"],"
                     "\"count\":2}"), true);
    buf_reset(&b);
    ASSERT_EQ(j17_write_answer((struct slice){"{}", 2}, 1, 0, false, &b), ERR_CORRUPT);
    buf_fini(&b);
}

TEST(metadata_members_the_server_sets_are_refused)
{
    struct j17_meta m;
    struct j17_fault f;
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"timestamp\":5}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.timestamp");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"stream_id\":\"1-0\"}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.stream_id");
    ASSERT_EQ(meta("{\"actor\":{\"type\":\"u\",\"id\":\"x\"},\"implied_by\":{}}", &m, &f),
              ERR_INVALID);
    ASSERT_STR(f.path, "metadata.implied_by");
}
