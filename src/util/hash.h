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

/* An incremental SHA-256 (a whole file's digest, fed piece by piece). Single owner. */
struct hash_sha256_ctx {
    void *md; /* owned OpenSSL EVP_MD_CTX, NULL when not started */
};

/* Starts a digest in *c (its previous one, if any, is dropped). */
void hash_sha256_begin(struct hash_sha256_ctx *c);
/* Adds p[0..n) to the digest begun in *c. */
void hash_sha256_add(struct hash_sha256_ctx *c, const void *p, size_t n);
/* Writes the digest of everything added and ends it (c may be begun again). */
void hash_sha256_end(struct hash_sha256_ctx *c, uint8_t out[HASH_SHA256_LEN]);
/* Ends a digest without a result; on a zeroed or ended *c, does nothing. */
void hash_sha256_drop(struct hash_sha256_ctx *c);

/* Writes 2*n lower-case hex digits and a NUL into out. */
void hash_hex(const uint8_t *p, size_t n, char *out);

#endif
