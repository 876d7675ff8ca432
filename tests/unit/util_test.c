/* util: buffers and JSON string escaping, CRC-32C, SHA-256, UUIDs, RFC 3339 time. */
#include <string.h>

#include "unit.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/idmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"

TEST(json_string_escaping)
{
    struct buf b;
    buf_init(&b);
    buf_add_json_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
    ASSERT_STR(b.ptr, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
    buf_reset(&b);
    buf_add_u64(&b, 18446744073709551615ull);
    buf_addc(&b, ' ');
    buf_add_i64(&b, -9223372036854775807ll - 1);
    ASSERT_STR(b.ptr, "18446744073709551615 -9223372036854775808");
    buf_fini(&b);
}

TEST(crc32c_known_vectors)
{
    /* RFC 3720 B.4: 32 bytes of zeros -> 0x8a9136aa; "123456789" -> 0xe3069283. */
    uint8_t zeros[32] = {0};
    ASSERT_EQ(hash_crc32c(0, zeros, 32), 0x8a9136aa);
    ASSERT_EQ(hash_crc32c(0, "123456789", 9), 0xe3069283);
    uint32_t part = hash_crc32c(0, "1234", 4);
    ASSERT_EQ(hash_crc32c(part, "56789", 5), 0xe3069283);
}

TEST(sha256_known_vector)
{
    struct hash_part p[2] = {{"a", 1}, {"bc", 2}};
    uint8_t out[32];
    hash_sha256(p, 2, out);
    char hex[65];
    hash_hex(out, 32, hex);
    ASSERT_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(uuid_parse_format_and_v7)
{
    uint8_t u[16];
    ASSERT_EQ(uuid_parse("0192F3A0-1b2c-7d4e-8f90-a1b2c3d4e5f6", 36, u), 0);
    char s[37];
    uuid_format(u, s);
    ASSERT_STR(s, "0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5f6");
    ASSERT_EQ(uuid_parse("0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5f", 35, u), ERR_INVALID);
    ASSERT_EQ(uuid_parse("0192f3a0x1b2c-7d4e-8f90-a1b2c3d4e5f6", 36, u), ERR_INVALID);
    ASSERT_EQ(uuid_parse("0192f3a0-1b2c-7d4e-8f90-a1b2c3d4e5g6", 36, u), ERR_INVALID);
    uint8_t a[16], b[16];
    uuid_v7(1700000000000000, a);
    uuid_v7(1700000000001000, b);
    ASSERT_EQ(a[6] >> 4, 7);
    ASSERT_EQ(a[8] >> 6, 2);
    CHECK(memcmp(a, b, 6) < 0);
}

TEST(time_format_and_parse)
{
    char s[TIME_RFC3339_LEN];
    time_format(0, s);
    ASSERT_STR(s, "1970-01-01T00:00:00.000000Z");
    time_format(1700000000123456, s);
    ASSERT_STR(s, "2023-11-14T22:13:20.123456Z");
    int64_t us;
    ASSERT_EQ(time_parse("2023-11-14T22:13:20.123456Z", 27, &us), 0);
    ASSERT_EQ(us, 1700000000123456);
    ASSERT_EQ(time_parse("2023-11-14T23:13:20+01:00", 25, &us), 0);
    ASSERT_EQ(us, 1700000000000000);
    ASSERT_EQ(time_parse("2024-02-29T00:00:00Z", 20, &us), 0);
    ASSERT_EQ(time_parse("2023-02-29T00:00:00Z", 20, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14 22:13", 16, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14T22:13:20", 19, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-13-14T22:13:20Z", 20, &us), ERR_INVALID);
    ASSERT_EQ(time_parse("2023-11-14T22:13:20.Z", 21, &us), ERR_INVALID);
    time_format(-1, s);
    ASSERT_STR(s, "1969-12-31T23:59:59.999999Z");
}

TEST(uuid_v7_is_monotonic_per_thread)
{
    uint8_t prev[UUID_LEN] = {0}, cur[UUID_LEN];
    int64_t t = 1700000000000000;
    for (int i = 0; i < 10000; i++) {
        uuid_v7(t + (i % 3 == 0 ? 1000 : 0) * (i / 3000), cur); /* same ms, and steps */
        CHECK(memcmp(prev, cur, UUID_LEN) < 0);
        CHECK((cur[6] >> 4) == 7 && (cur[8] >> 6) == 2);
        memcpy(prev, cur, UUID_LEN);
    }
    uuid_v7(t - 5000000, cur); /* the clock went back: still after the last one */
    CHECK(memcmp(prev, cur, UUID_LEN) < 0);
}

TEST(idmap_put_get_keep_above)
{
    struct idmap m;
    idmap_init(&m);
    uint8_t id[16] = {0};
    for (uint64_t i = 1; i <= 5000; i++) {
        memcpy(id + 8, &i, sizeof i); /* ids alike but for their low bytes */
        idmap_put(&m, id, i);
    }
    ASSERT_EQ(m.count, 5000);
    uint64_t k = 1234;
    memcpy(id + 8, &k, sizeof k);
    ASSERT_EQ(idmap_get(&m, id), 1234);
    idmap_put(&m, id, 99999); /* replace */
    ASSERT_EQ(idmap_get(&m, id), 99999);
    ASSERT_EQ(m.count, 5000);
    idmap_keep_above(&m, 4000);
    ASSERT_EQ(m.count, 1001); /* 4001..5000 and the replaced one */
    ASSERT_EQ(idmap_get(&m, id), 99999);
    k = 17;
    memcpy(id + 8, &k, sizeof k);
    ASSERT_EQ(idmap_get(&m, id), 0);
    idmap_fini(&m);
}

TEST(deadline_carries_into_seconds)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec d = time_deadline_ms(2500);
    CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    double dt = (double)(d.tv_sec - now.tv_sec) + (double)(d.tv_nsec - now.tv_nsec) / 1e9;
    CHECK(dt >= 2.49 && dt < 2.6);
    d = time_deadline_ms(3600000ull << 16); /* a long webhook backoff does not overflow */
    CHECK(d.tv_sec - now.tv_sec >= (time_t)(3600ull << 16) - 1);
}
