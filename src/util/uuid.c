/* UUID text codec and v7 generation (RFC 9562): 48-bit ms timestamp, random rest. */
#include "util/uuid.h"

#include <string.h>
#include <sys/random.h>

#include "util/errors.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int uuid_parse(const char *s, size_t n, uint8_t out[UUID_LEN])
{
    if (n != UUID_TEXT_LEN) {
        return ERR_INVALID;
    }
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return ERR_INVALID;
            }
            i++;
            continue;
        }
        int hi = hexval(s[i]);
        int lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return ERR_INVALID;
        }
        out[j++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

void uuid_format(const uint8_t u[UUID_LEN], char out[UUID_TEXT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < UUID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
    out[o] = '\0';
}

void uuid_v7(int64_t now_us, uint8_t out[UUID_LEN])
{
    uint64_t ms = (uint64_t)(now_us / 1000);
    /* Random bytes come from a per-thread pool refilled 4 KiB at a time (one syscall per
     * ~400 ids instead of one per id). */
    static __thread uint8_t pool[4096];
    static __thread size_t avail;
    if (avail < 10) {
        size_t got = 0;
        while (got < sizeof pool) {
            ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
            if (r > 0) {
                got += (size_t)r;
            }
        }
        avail = sizeof pool;
    }
    const uint8_t *rnd = pool + sizeof pool - avail;
    avail -= 10;
    /* Monotonic per thread (RFC 9562, method 1): within one millisecond the 12-bit rand_a field
     * is a counter started at a random value below 2048, so the ids a thread makes increase
     * (an index appends them in order); on overflow the time moves on by a millisecond. */
    static __thread uint64_t last_ms;
    static __thread unsigned seq;
    if (ms <= last_ms) {
        ms = last_ms;
        if (++seq > 0xfff) {
            ms++;
            seq = (unsigned)(rnd[0] << 8 | rnd[1]) & 0x7ff;
        }
    } else {
        seq = (unsigned)(rnd[0] << 8 | rnd[1]) & 0x7ff;
    }
    last_ms = ms;
    for (int i = 0; i < 6; i++) {
        out[i] = (uint8_t)(ms >> (40 - 8 * i));
    }
    memcpy(out + 6, rnd, 10);
    out[6] = (uint8_t)(0x70 | (seq >> 8));
    out[7] = (uint8_t)seq;
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}
