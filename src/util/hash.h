/* Checksums and digests: CRC-32C (Castagnoli) for record checksums, SHA-256 for the hash chain.
 * Pure functions, thread-safe. */
#ifndef UTIL_HASH_H
#define UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

enum { HASH_SHA256_LEN = 32 };

/* CRC-32C of p[0..n), continuing from crc (start with 0). Uses SSE4.2 when the CPU has it. */
uint32_t hash_crc32c(uint32_t crc, const void *p, size_t n);

/* One input part of a digest. */
struct hash_part {
    const void *ptr;
    size_t len;
};

/* SHA-256 over the concatenation of parts[0..count). */
void hash_sha256(const struct hash_part *parts, int count, uint8_t out[HASH_SHA256_LEN]);

/* Writes 2*n lower-case hex digits and a NUL into out. */
void hash_hex(const uint8_t *p, size_t n, char *out);

#endif
