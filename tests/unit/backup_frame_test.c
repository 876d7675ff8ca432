/* backup/frame: the backup stream's frames, the reader's grammar and checks, the writer. */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "backup/frame.h"
#include "unit.h"
#include "util/errors.h"

/* A sink that collects the frames it is given. */
static int collect(void *arg, const uint8_t *frame, size_t n)
{
    buf_add(arg, frame, n);
    return 0;
}

/* A whole backup: keys.json, one database with two files (one empty), manifest, end. */
static void make_stream(struct buf *out)
{
    struct backup_writer w;
    backup_writer_init(&w, collect, out);
    CHECK(backup_writer_header(&w) == 0);
    CHECK(backup_writer_file(&w, "keys.json", 0600) == 0);
    CHECK(backup_writer_data(&w, "{\"keys\":[]}", 11) == 0);
    CHECK(backup_writer_file_end(&w) == 0);
    CHECK(backup_writer_text(&w, BACKUP_DB_BEGIN, "default", 7) == 0);
    CHECK(backup_writer_file(&w, "dbs/default/data.mdb", 0640) == 0);
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++) {
        big[i] = (uint8_t)(i * 7);
    }
    CHECK(backup_writer_data(&w, big, sizeof big) == 0); /* several DATA frames */
    CHECK(backup_writer_file_end(&w) == 0);
    CHECK(backup_writer_file(&w, "dbs/default/events.log", 0640) == 0);
    CHECK(backup_writer_file_end(&w) == 0); /* an empty log */
    CHECK(backup_writer_text(&w, BACKUP_DB_END, "{\"name\":\"default\"}", 18) == 0);
    CHECK(backup_writer_text(&w, BACKUP_MANIFEST, "{}", 2) == 0);
    CHECK(backup_writer_end(&w) == 0);
    ASSERT_EQ(w.files, 3);
    ASSERT_EQ(w.bytes, 11 + sizeof big);
    backup_writer_fini(&w);
}

/* Feeds p[0..n) through the decoder and a reader. Returns the first error, or 0; *done tells
 * whether the reader reached END; *frames counts frames taken. */
static int read_all(const uint8_t *p, size_t n, bool *done, size_t *frames)
{
    struct backup_reader r;
    backup_reader_init(&r);
    size_t off = 0;
    int rc = 0;
    *frames = 0;
    while (!rc && off < n) {
        struct backup_frame f;
        ssize_t k = backup_frame_decode(p + off, n - off, &f);
        if (k == BACKUP_INCOMPLETE) {
            break;
        }
        rc = k < 0 ? (int)k : backup_reader_next(&r, &f);
        off += k > 0 ? (size_t)k : 0;
        *frames += rc == 0;
    }
    *done = backup_reader_done(&r);
    backup_reader_fini(&r);
    return rc;
}

TEST(backup_stream_round_trip)
{
    struct buf s;
    buf_init(&s);
    make_stream(&s);
    bool done;
    size_t frames;
    ASSERT_EQ(read_all((const uint8_t *)s.ptr, s.len, &done, &frames), 0);
    CHECK(done);
    ASSERT_EQ(frames, 1 + 3 + 1 + 1 + 4 + 1 + 1 + 1 + 1 + 1 + 1);
    /* each frame re-encodes to its own bytes */
    size_t off = 0;
    while (off < s.len) {
        struct backup_frame f;
        ssize_t k = backup_frame_decode((const uint8_t *)s.ptr + off, s.len - off, &f);
        CHECK(k > 0);
        struct buf again;
        buf_init(&again);
        backup_frame_encode(&again, f.type, f.payload.ptr, f.payload.len);
        ASSERT_EQ(again.len, k);
        CHECK(memcmp(again.ptr, s.ptr + off, (size_t)k) == 0);
        buf_fini(&again);
        off += (size_t)k;
    }
    buf_fini(&s);
}

TEST(backup_truncated_stream_is_never_complete)
{
    struct buf s;
    buf_init(&s);
    make_stream(&s);
    for (size_t cut = 0; cut < s.len; cut += cut < 64 ? 1 : 997) {
        bool done;
        size_t frames;
        ASSERT_EQ(read_all((const uint8_t *)s.ptr, cut, &done, &frames), 0);
        CHECK(!done);
    }
    /* the last byte missing: still not complete */
    bool done;
    size_t frames;
    ASSERT_EQ(read_all((const uint8_t *)s.ptr, s.len - 1, &done, &frames), 0);
    CHECK(!done);
    buf_fini(&s);
}

TEST(backup_changed_byte_fails_its_checksum)
{
    struct buf s;
    buf_init(&s);
    make_stream(&s);
    /* a byte of data.mdb's content, far from any frame header */
    const char *at = memmem(s.ptr, s.len, "dbs/default/data.mdb", 20);
    CHECK(at != NULL);
    size_t pos = (size_t)(at - s.ptr) + 20 + BACKUP_FRAME_HEADER + 1000;
    s.ptr[pos] ^= 1;
    bool done;
    size_t frames;
    ASSERT_EQ(read_all((const uint8_t *)s.ptr, s.len, &done, &frames), ERR_CORRUPT);
    CHECK(!done);
    buf_fini(&s);
}

/* Decodes one frame made of type and payload. */
static ssize_t decode_one(uint8_t type, const void *payload, size_t n, struct backup_frame *f)
{
    static uint8_t b[BACKUP_FRAME_HEADER + 1024];
    struct buf tmp;
    buf_init(&tmp);
    backup_frame_encode(&tmp, type, payload, n);
    memcpy(b, tmp.ptr, tmp.len);
    size_t len = tmp.len;
    buf_fini(&tmp);
    return backup_frame_decode(b, len, f);
}

TEST(backup_bad_frames_are_refused)
{
    struct backup_frame f;
    uint8_t h[BACKUP_FRAME_HEADER] = {BACKUP_KEEPALIVE, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_EQ(backup_frame_decode(h, sizeof h, &f), BACKUP_FRAME_HEADER);
    ASSERT_EQ(backup_frame_decode(h, 7, &f), BACKUP_INCOMPLETE);
    h[2] = 1; /* reserved byte */
    ASSERT_EQ(backup_frame_decode(h, sizeof h, &f), ERR_PROTOCOL);
    uint8_t t[BACKUP_FRAME_HEADER] = {99, 0, 0, 0, 0, 0, 0, 0}; /* unknown type */
    ASSERT_EQ(backup_frame_decode(t, sizeof t, &f), ERR_PROTOCOL);
    uint8_t big[BACKUP_FRAME_HEADER] = {BACKUP_DATA, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff};
    ASSERT_EQ(backup_frame_decode(big, sizeof big, &f), ERR_PROTOCOL); /* past the limit */
    uint8_t ka[BACKUP_FRAME_HEADER] = {BACKUP_KEEPALIVE, 0, 0, 0, 0, 0, 0, 1};
    ASSERT_EQ(backup_frame_decode(ka, sizeof ka, &f), ERR_PROTOCOL); /* wrong fixed size */
    ASSERT_EQ(decode_one(BACKUP_HEADER, "ANNALSBX\0\0\0\1", 12, &f), ERR_PROTOCOL);
    ASSERT_EQ(decode_one(BACKUP_DATA, "", 0, &f), ERR_PROTOCOL); /* empty DATA */
    ASSERT_EQ(decode_one(BACKUP_DB_BEGIN, "Bad", 3, &f), ERR_PROTOCOL);
    static const char *const BAD[] = {"../x", "/abs", "a//b", ".hidden", "a/../b", "a/", "sp ace",
                                      "a/./b"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        uint8_t p[300] = {0, 0, 1, 0xa0};
        memcpy(p + 4, BAD[i], strlen(BAD[i]));
        ASSERT_EQ(decode_one(BACKUP_FILE, p, 4 + strlen(BAD[i]), &f), ERR_PROTOCOL);
    }
    uint8_t mode[] = {0, 0, 0x10, 0, 'k'}; /* mode 010000: not permission bits */
    ASSERT_EQ(decode_one(BACKUP_FILE, mode, sizeof mode, &f), ERR_PROTOCOL);
    uint8_t ok[] = {0, 0, 1, 0xa0, 'k', '.', 'j'};
    ASSERT_EQ(decode_one(BACKUP_FILE, ok, sizeof ok, &f), BACKUP_FRAME_HEADER + sizeof ok);
    ASSERT_EQ(f.mode, 0640);
    ASSERT_EQ(f.path.len, 3);
}

/* Runs the frames of make_frames-style steps through a reader: returns the result of the last. */
struct step {
    uint8_t type;
    const char *payload;
    size_t len;
};

static int run_steps(const struct step *steps, size_t n)
{
    struct backup_reader r;
    backup_reader_init(&r);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct backup_frame f;
        ssize_t k = decode_one(steps[i].type, steps[i].payload, steps[i].len, &f);
        CHECK(k > 0);
        rc = backup_reader_next(&r, &f);
    }
    backup_reader_fini(&r);
    return rc;
}

#define HDR {BACKUP_HEADER, "ANNALSBK\0\0\0\1", 12}

TEST(backup_reader_grammar)
{
    struct step data_outside[] = {HDR, {BACKUP_DATA, "x", 1}};
    ASSERT_EQ(run_steps(data_outside, 2), ERR_PROTOCOL);
    struct step no_header[] = {{BACKUP_KEEPALIVE, "", 0}};
    ASSERT_EQ(run_steps(no_header, 1), ERR_PROTOCOL);
    struct step old_version[] = {{BACKUP_HEADER, "ANNALSBK\0\0\0\2", 12}};
    ASSERT_EQ(run_steps(old_version, 1), ERR_PROTOCOL);
    struct step slash_at_top[] = {HDR, {BACKUP_FILE, "\0\0\1\xa0" "a/b", 7}};
    ASSERT_EQ(run_steps(slash_at_top, 2), ERR_PROTOCOL);
    struct step other_db[] = {HDR, {BACKUP_DB_BEGIN, "one", 3},
                              {BACKUP_FILE, "\0\0\1\xa0" "dbs/two/x", 13}};
    ASSERT_EQ(run_steps(other_db, 3), ERR_PROTOCOL);
    struct step deep[] = {HDR, {BACKUP_DB_BEGIN, "one", 3},
                          {BACKUP_FILE, "\0\0\1\xa0" "dbs/one/x/y", 15}};
    ASSERT_EQ(run_steps(deep, 3), ERR_PROTOCOL);
    struct step in_db[] = {HDR, {BACKUP_DB_BEGIN, "one", 3},
                           {BACKUP_FILE, "\0\0\1\xa0" "dbs/one/x", 13}};
    ASSERT_EQ(run_steps(in_db, 3), 0);
    struct step nested[] = {HDR, {BACKUP_DB_BEGIN, "one", 3}, {BACKUP_DB_BEGIN, "two", 3}};
    ASSERT_EQ(run_steps(nested, 3), ERR_PROTOCOL);
    struct step manifest_in_db[] = {HDR, {BACKUP_DB_BEGIN, "one", 3}, {BACKUP_MANIFEST, "{}", 2}};
    ASSERT_EQ(run_steps(manifest_in_db, 3), ERR_PROTOCOL);
    struct step end_early[] = {HDR, {BACKUP_END, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16}};
    ASSERT_EQ(run_steps(end_early, 2), ERR_PROTOCOL);
    struct step end_wrong[] = {HDR, {BACKUP_MANIFEST, "{}", 2},
                               {BACKUP_END, "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0", 16}};
    ASSERT_EQ(run_steps(end_wrong, 3), ERR_CORRUPT);
    struct step end_ok[] = {HDR, {BACKUP_MANIFEST, "{}", 2}, {BACKUP_KEEPALIVE, "", 0},
                            {BACKUP_END, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16}};
    ASSERT_EQ(run_steps(end_ok, 4), 0);
    struct step after_end[] = {HDR, {BACKUP_MANIFEST, "{}", 2},
                               {BACKUP_END, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16},
                               {BACKUP_KEEPALIVE, "", 0}};
    ASSERT_EQ(run_steps(after_end, 4), ERR_PROTOCOL);
    struct step error[] = {HDR, {BACKUP_ERROR, "{}", 2}};
    ASSERT_EQ(run_steps(error, 2), ERR_PROTOCOL);
    struct step wrong_size[] = {HDR, {BACKUP_FILE, "\0\0\1\xa0" "k", 5}, {BACKUP_DATA, "ab", 2},
                                {BACKUP_FILE_END, "\0\0\0\0\0\0\0\3" "01234567890123456789012345678901", 40}};
    ASSERT_EQ(run_steps(wrong_size, 4), ERR_CORRUPT);
}

TEST(backup_names_and_paths)
{
    CHECK(backup_path_ok("keys.json", 9));
    CHECK(backup_path_ok("dbs/a-1/events.12.log", 21));
    CHECK(!backup_path_ok("", 0));
    char longp[LIMIT_BACKUP_PATH_BYTES + 2];
    memset(longp, 'a', sizeof longp);
    CHECK(backup_path_ok(longp, LIMIT_BACKUP_PATH_BYTES));
    CHECK(!backup_path_ok(longp, LIMIT_BACKUP_PATH_BYTES + 1));
    CHECK(backup_db_name_ok("default", 7));
    CHECK(backup_db_name_ok("a-b-0", 5));
    CHECK(!backup_db_name_ok("-a", 2));
    CHECK(!backup_db_name_ok("A", 1));
    CHECK(!backup_db_name_ok(".restore-a", 10));
}

TEST(backup_writer_refuses_misuse)
{
    struct buf out;
    buf_init(&out);
    struct backup_writer w;
    backup_writer_init(&w, collect, &out);
    ASSERT_EQ(backup_writer_data(&w, "x", 1), ERR_INVALID);  /* no file open */
    ASSERT_EQ(backup_writer_file_end(&w), ERR_INVALID);
    ASSERT_EQ(backup_writer_file(&w, "../x", 0600), ERR_INVALID);
    ASSERT_EQ(backup_writer_file(&w, "x", 0600), 0);
    ASSERT_EQ(backup_writer_file(&w, "y", 0600), ERR_INVALID); /* one at a time */
    ASSERT_EQ(backup_writer_text(&w, BACKUP_DB_BEGIN, "", 0), ERR_INVALID);
    backup_writer_fini(&w); /* drops the open file's digest */
    buf_fini(&out);
}
