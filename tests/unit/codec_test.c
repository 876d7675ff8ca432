/* Record, stream-row and head codecs: round trips, CRC and hash-chain checks, key order. */
#include <string.h>

#include "store/codec.h"
#include "unit.h"
#include "util/limits.h"
#include "util/errors.h"

static struct event_rec sample(void)
{
    struct event_rec ev = {
        .position = 42, .version = 7, .time_us = 1700000000123456, .recorded_us = 1700000000999999,
        .stream = {"order-1", 7}, .type = {"OrderPlaced", 11}, .data = {"{\"a\":1.10}", 10},
        .metadata = {"{}", 2}, .tags = {"[\"t\"]", 5}, .subject = {"orders/1", 8},
    };
    for (int i = 0; i < 16; i++) {
        ev.id[i] = (uint8_t)i;
    }
    return ev;
}

TEST(record_round_trip)
{
    struct event_rec ev = sample();
    uint8_t prev[32] = {1};
    size_t n = codec_record_size(&ev);
    uint8_t *buf = malloc(n);
    codec_record_encode(&ev, prev, buf);
    struct event_rec out;
    ASSERT_EQ(codec_record_decode(buf, n, &out), 0);
    ASSERT_EQ(out.position, 42);
    ASSERT_EQ(out.version, 7);
    ASSERT_EQ(out.time_us, 1700000000123456);
    ASSERT_EQ(out.recorded_us, 1700000000999999);
    CHECK(memcmp(out.id, ev.id, 16) == 0);
    CHECK(memcmp(out.hash, ev.hash, 32) == 0);
    CHECK(out.stream.len == 7 && memcmp(out.stream.ptr, "order-1", 7) == 0);
    CHECK(out.data.len == 10 && memcmp(out.data.ptr, "{\"a\":1.10}", 10) == 0);
    CHECK(out.tags.len == 5);
    CHECK(out.subject.len == 8 && memcmp(out.subject.ptr, "orders/1", 8) == 0);
    CHECK(codec_record_hash_ok(buf, n, prev));
    free(buf);
}

TEST(record_detects_every_bit_flip)
{
    struct event_rec ev = sample();
    uint8_t prev[32] = {0};
    size_t n = codec_record_size(&ev);
    uint8_t *buf = malloc(n);
    codec_record_encode(&ev, prev, buf);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1 << bit);
            struct event_rec out;
            int rc = codec_record_decode(buf, n, &out);
            bool hash_ok = codec_record_hash_ok(buf, n, prev);
            CHECK(rc == ERR_CORRUPT || !hash_ok);
            buf[i] ^= (uint8_t)(1 << bit);
        }
    }
    free(buf);
}

TEST(record_rejects_truncation_and_bad_lengths)
{
    struct event_rec ev = sample();
    uint8_t prev[32] = {0};
    size_t n = codec_record_size(&ev);
    uint8_t *buf = malloc(n);
    codec_record_encode(&ev, prev, buf);
    struct event_rec out;
    for (size_t cut = 0; cut < n; cut++) {
        ASSERT_EQ(codec_record_decode(buf, cut, &out), ERR_CORRUPT);
    }
    free(buf);
}

TEST(hash_chain_links_to_predecessor)
{
    struct event_rec a = sample();
    struct event_rec b = sample();
    uint8_t zero[32] = {0};
    size_t n = codec_record_size(&a);
    uint8_t *ba = malloc(n);
    uint8_t *bb = malloc(n);
    codec_record_encode(&a, zero, ba);
    b.position = 43;
    codec_record_encode(&b, a.hash, bb);
    CHECK(codec_record_hash_ok(bb, n, a.hash));
    CHECK(!codec_record_hash_ok(bb, n, zero));
    CHECK(memcmp(a.hash, b.hash, 32) != 0);
    free(ba);
    free(bb);
}

TEST(stream_key_orders_by_stream_then_version)
{
    uint8_t k1[16], k2[16], k3[16];
    codec_stream_key(k1, 1, 255);
    codec_stream_key(k2, 1, 256);
    codec_stream_key(k3, 2, 1);
    CHECK(memcmp(k1, k2, 16) < 0);
    CHECK(memcmp(k2, k3, 16) < 0);
    uint8_t p[8];
    be64_put(p, 0x0102030405060708ull);
    ASSERT_EQ(p[0], 1);
    ASSERT_EQ(p[7], 8);
    ASSERT_EQ(be64_get(p), 0x0102030405060708ll);
}

TEST(stream_and_head_round_trip)
{
    struct stream_rec s = {3, 9, 10, 50, 111, 222, 4096};
    uint8_t enc[STREAM_REC_BYTES];
    codec_stream_encode(&s, enc);
    struct stream_rec o;
    ASSERT_EQ(codec_stream_decode(enc, sizeof enc, &o), 0);
    ASSERT_EQ(o.id, 3);
    ASSERT_EQ(o.last_pos, 50);
    ASSERT_EQ(o.updated_us, 222);
    ASSERT_EQ(o.bytes, 4096);
    ASSERT_EQ(codec_stream_decode(enc, STREAM_REC_BYTES - 1, &o), ERR_CORRUPT);
    struct head_rec h = {.format = STORE_FORMAT_VERSION, .position = 77, .log_end = 777,
                         .stream_count = 5, .created_us = 99, .term_count = 12,
                         .generation = 3};
    h.hash[0] = 0xab;
    uint8_t he[HEAD_REC_BYTES];
    ASSERT_EQ(codec_head_encode(&h, he), HEAD_REC_BYTES);
    struct head_rec ho;
    ASSERT_EQ(codec_head_decode(he, sizeof he, &ho), 0);
    ASSERT_EQ(ho.position, 77);
    ASSERT_EQ(ho.hash[0], 0xab);
    ASSERT_EQ(ho.term_count, 12);
    ASSERT_EQ(ho.generation, 3);
    ASSERT_EQ(codec_head_decode(he, HEAD_REC_BYTES_5, &ho), ERR_CORRUPT);
    he[20] ^= 1;
    ASSERT_EQ(codec_head_decode(he, sizeof he, &ho), ERR_CORRUPT);
}

TEST(head_formats_older_than_4_or_newer_than_this_are_refused)
{
    struct head_rec h = {.format = 3};
    uint8_t he[HEAD_REC_BYTES];
    struct head_rec ho;
    codec_head_encode(&h, he);
    ASSERT_EQ(codec_head_decode(he, sizeof he, &ho), ERR_CORRUPT);
    h.format = STORE_FORMAT_VERSION + 1;
    codec_head_encode(&h, he);
    ASSERT_EQ(codec_head_decode(he, sizeof he, &ho), ERR_CORRUPT);
    h.format = STORE_FORMAT_OLDEST;
    h.generation = 9;
    ASSERT_EQ(codec_head_encode(&h, he), HEAD_REC_BYTES_5); /* formats 4, 5: 80 bytes */
    ASSERT_EQ(codec_head_decode(he, HEAD_REC_BYTES_5, &ho), 0);
    ASSERT_EQ(ho.generation, 0); /* they had one log file */
    ASSERT_EQ(codec_head_decode(he, HEAD_REC_BYTES, &ho), ERR_CORRUPT);
}

TEST(redacted_record_keeps_header_and_chain)
{
    struct event_rec a = sample(), b = sample();
    b.position = 43;
    uint8_t prev[32] = {7};
    size_t na = codec_record_size(&a), nb = codec_record_size(&b);
    uint8_t *ra = malloc(na), *rb = malloc(nb);
    codec_record_encode(&a, prev, ra);
    codec_record_encode(&b, a.hash, rb);
    CHECK(codec_record_redactable(ra, na));
    uint8_t stub[REDACTED_RECORD_BYTES];
    codec_record_redact(ra, na, stub);
    CHECK(!codec_record_redactable(stub, sizeof stub));
    struct event_rec out;
    ASSERT_EQ(codec_record_decode(stub, sizeof stub, &out), 0);
    CHECK(out.redacted);
    ASSERT_EQ(out.position, 42);
    ASSERT_EQ(out.version, 7);
    ASSERT_EQ(out.recorded_us, 1700000000999999);
    CHECK(memcmp(out.id, a.id, 16) == 0);
    CHECK(memcmp(out.hash, a.hash, 32) == 0);
    ASSERT_EQ(out.stream.len + out.type.len + out.data.len, 0);
    uint8_t d[32];
    codec_content_digest(&a, d); /* the content compares without being stored */
    CHECK(memcmp(d, out.digest, 32) == 0);
    b.data = (struct slice){"{\"a\":2}", 7};
    codec_content_digest(&b, d);
    CHECK(memcmp(d, out.digest, 32) != 0);
    CHECK(codec_record_hash_ok(stub, sizeof stub, prev)); /* verifies from its predecessor */
    CHECK(codec_record_hash_ok(rb, nb, out.hash));       /* and its successor still links */
    uint8_t other[32] = {8};
    CHECK(!codec_record_hash_ok(stub, sizeof stub, other));
    for (size_t i = 0; i < sizeof stub; i++) { /* every bit of a stub is covered */
        for (int bit = 0; bit < 8; bit++) {
            stub[i] ^= (uint8_t)(1 << bit);
            CHECK(codec_record_decode(stub, sizeof stub, &out) == ERR_CORRUPT ||
                  !codec_record_hash_ok(stub, sizeof stub, prev));
            stub[i] ^= (uint8_t)(1 << bit);
        }
    }
    ASSERT_EQ(codec_record_decode(stub, sizeof stub - 1, &out), ERR_CORRUPT);
    free(ra);
    free(rb);
}

TEST(format_4_records_still_verify)
{
    struct event_rec a = sample();
    uint8_t prev[32] = {1};
    size_t n = codec_record_size(&a);
    uint8_t *r = malloc(n);
    codec_record_encode(&a, prev, r);
    /* what format 4 wrote: hash over the body bytes themselves */
    r[0] = RECORD_FORMAT_4;
    struct hash_part parts[3] = {{prev, 32}, {r + 8, 48}, {r + 88, n - 88}};
    uint8_t h[32];
    hash_sha256(parts, 3, h);
    memcpy(r + RECORD_HASH_AT, h, 32);
    be32_put(r + 4, hash_crc32c(0, r + 8, n - 8));
    struct event_rec out;
    ASSERT_EQ(codec_record_decode(r, n, &out), 0);
    CHECK(!out.redacted);
    CHECK(codec_record_hash_ok(r, n, prev));
    CHECK(!codec_record_redactable(r, n)); /* its hash needs the body: kept whole */
    free(r);
}

TEST(idempotency_record_round_trip_and_damage)
{
    struct idem_rec r = {.key = {"order-7", 7}, .status = 201, .created_us = -5,
                         .answer = {"{\"a\":1}", 7}};
    memset(r.hash, 0x5a, sizeof r.hash);
    size_t n = codec_idem_size(&r);
    ASSERT_EQ(n, IDEM_HEADER_BYTES + 14);
    uint8_t buf[128];
    codec_idem_encode(&r, buf);
    struct idem_rec o;
    ASSERT_EQ(codec_idem_decode(buf, n, &o), 0);
    ASSERT_EQ(o.status, 201);
    ASSERT_EQ(o.created_us, -5);
    CHECK(o.key.len == 7 && memcmp(o.key.ptr, "order-7", 7) == 0);
    CHECK(o.answer.len == 7 && memcmp(o.answer.ptr, "{\"a\":1}", 7) == 0);
    CHECK(memcmp(o.hash, r.hash, sizeof r.hash) == 0);
    ASSERT_EQ(codec_idem_decode(buf, n - 1, &o), ERR_CORRUPT);  /* lengths disagree */
    ASSERT_EQ(codec_idem_decode(buf, 10, &o), ERR_CORRUPT);     /* shorter than a header */
    buf[0] = 2;                                                 /* unknown kind */
    ASSERT_EQ(codec_idem_decode(buf, n, &o), ERR_CORRUPT);
    buf[0] = AUX_IDEM;
    r.key.len = 0;                                              /* keys are never empty */
    codec_idem_encode(&r, buf);
    ASSERT_EQ(codec_idem_decode(buf, codec_idem_size(&r), &o), ERR_CORRUPT);
    /* a stored key is at most a namespace byte and 255 bytes: longer is damage (the indexer
     * copies keys into a buffer of that size) */
    static char longkey[LIMIT_IDEM_STORED_KEY_BYTES + 1];
    memset(longkey, 'k', sizeof longkey);
    static uint8_t big[IDEM_HEADER_BYTES + sizeof longkey + 8];
    r.key = (struct slice){longkey, LIMIT_IDEM_STORED_KEY_BYTES};
    codec_idem_encode(&r, big);
    ASSERT_EQ(codec_idem_decode(big, codec_idem_size(&r), &o), 0);
    r.key.len = LIMIT_IDEM_STORED_KEY_BYTES + 1;
    codec_idem_encode(&r, big);
    ASSERT_EQ(codec_idem_decode(big, codec_idem_size(&r), &o), ERR_CORRUPT);
}
