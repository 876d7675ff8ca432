/* CRC-32C (software table, or the SSE4.2 crc32 instruction) and SHA-256 via OpenSSL. */
#include "util/hash.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "util/assert.h"

static uint32_t crc_table[256];

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        crc_table[i] = c;
    }
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n)
{
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        build_table();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    for (size_t i = 0; i < n; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return c32;
}
#endif

uint32_t hash_crc32c(uint32_t crc, const void *p, size_t n)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return ~crc_hw(crc, p, n);
    }
#endif
    return ~crc_soft(crc, p, n);
}

static EVP_MD *sha256_md;
static pthread_key_t sha256_ctx_key;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

/* Fetches the SHA-256 implementation once (OpenSSL 3 otherwise looks it up on every init) and
 * makes the key for the per-thread digest context, freed when its thread exits. */
static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    ASSERT(sha256_md != NULL);
    ASSERT(pthread_key_create(&sha256_ctx_key, free_ctx) == 0);
}

void hash_sha256(const struct hash_part *parts, int count, uint8_t out[HASH_SHA256_LEN])
{
    pthread_once(&sha256_once, fetch_sha256);
    EVP_MD_CTX *ctx = pthread_getspecific(sha256_ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        ASSERT(ctx != NULL);
        pthread_setspecific(sha256_ctx_key, ctx);
    }
    unsigned int olen = 0;
    int ok = EVP_DigestInit_ex(ctx, sha256_md, NULL);
    for (int i = 0; ok && i < count; i++) {
        ok = EVP_DigestUpdate(ctx, parts[i].ptr, parts[i].len);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, out, &olen);
    ASSERT(ok && olen == HASH_SHA256_LEN);
}

void hash_sha256_begin(struct hash_sha256_ctx *c)
{
    pthread_once(&sha256_once, fetch_sha256);
    if (!c->md) {
        c->md = EVP_MD_CTX_new();
        ASSERT(c->md != NULL);
    }
    ASSERT(EVP_DigestInit_ex(c->md, sha256_md, NULL));
}

void hash_sha256_add(struct hash_sha256_ctx *c, const void *p, size_t n)
{
    ASSERT(EVP_DigestUpdate(c->md, p, n));
}

void hash_sha256_end(struct hash_sha256_ctx *c, uint8_t out[HASH_SHA256_LEN])
{
    unsigned int olen = 0;
    ASSERT(EVP_DigestFinal_ex(c->md, out, &olen) && olen == HASH_SHA256_LEN);
    hash_sha256_drop(c);
}

void hash_sha256_drop(struct hash_sha256_ctx *c)
{
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
}

void hash_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}
