/* Event record layout, all integers big-endian:
 *
 *   0  u8  format (RECORD_FORMAT, 5; 4 read)  1 u8 flags (0 or RECORD_REDACTED)
 *   2  u16 reserved (0)
 *   4  u32 crc32c of bytes [8, end)
 *   8  u64 position           16 u64 version
 *  24  i64 effective time us  32 i64 recorded time us
 *  40  u8[16] event id        56 u8[32] chain hash
 *  88  u32 lengths: stream, type, data, metadata, tags, subject
 * 112  the six byte strings, in that order
 *
 * Format 5: chain hash = SHA-256(previous hash || bytes [8,56) || D), D = SHA-256(bytes
 * [88, end)) (the body digest). A redacted record (flags RECORD_REDACTED, what compaction
 * leaves of a deleted event) is bytes [0,88) then D: the chain still verifies through it.
 * Format 4: chain hash = SHA-256(previous hash || bytes [8,56) || bytes [88, end)); never
 * redacted. Either way the hash covers every field but itself and the CRC, and the CRC covers
 * the hash too, so one bit flip anywhere is seen.
 */
#include "store/codec.h"

#include "util/limits.h"

#include <string.h>

#include "util/errors.h"

static_assert(RECORD_HEADER_BYTES == 88 + RECORD_FIELDS * 4, "record header layout");
static_assert(RECORD_HASH_AT + HASH_SHA256_LEN == 88, "hash field position");

void codec_stream_key(uint8_t out[STREAM_KEY_BYTES], uint64_t stream_id, uint64_t version)
{
    be64_put(out, stream_id);
    be64_put(out + 8, version);
}

size_t codec_record_size(const struct event_rec *ev)
{
    return RECORD_HEADER_BYTES + ev->stream.len + ev->type.len + ev->data.len +
           ev->metadata.len + ev->tags.len + ev->subject.len;
}

void codec_body_digest(const uint8_t *body, size_t n, uint8_t out[HASH_SHA256_LEN])
{
    struct hash_part part = {body, n};
    hash_sha256(&part, 1, out);
}

/* The chain hash of record p[0..n) (n >= RECORD_BODY_AT; a redacted one is exactly
 * REDACTED_RECORD_BYTES) given its predecessor's. */
static void chain_hash(const uint8_t *p, size_t n, const uint8_t prev[HASH_SHA256_LEN],
                       uint8_t out[HASH_SHA256_LEN])
{
    uint8_t digest[HASH_SHA256_LEN];
    struct hash_part parts[3] = {
        {prev, HASH_SHA256_LEN},
        {p + RECORD_CRC_FROM, RECORD_HASH_AT - RECORD_CRC_FROM},
        {p + RECORD_BODY_AT, n - RECORD_BODY_AT},
    };
    if (p[0] != RECORD_FORMAT_4) {
        if (p[1] & RECORD_REDACTED) {
            memcpy(digest, p + RECORD_BODY_AT, HASH_SHA256_LEN);
        } else {
            codec_body_digest(p + RECORD_BODY_AT, n - RECORD_BODY_AT, digest);
        }
        parts[2] = (struct hash_part){digest, HASH_SHA256_LEN};
    }
    hash_sha256(parts, 3, out);
}

void codec_record_encode(struct event_rec *ev, const uint8_t prev_hash[HASH_SHA256_LEN],
                         uint8_t *out)
{
    size_t n = codec_record_size(ev);
    out[0] = RECORD_FORMAT;
    out[1] = 0;
    out[2] = 0;
    out[3] = 0;
    be64_put(out + 8, ev->position);
    be64_put(out + 16, ev->version);
    be64_put(out + 24, (uint64_t)ev->time_us);
    be64_put(out + 32, (uint64_t)ev->recorded_us);
    memcpy(out + 40, ev->id, UUID_LEN);
    const struct slice *fields[RECORD_FIELDS] = {&ev->stream,   &ev->type, &ev->data,
                                                 &ev->metadata, &ev->tags, &ev->subject};
    uint8_t *w = out + RECORD_HEADER_BYTES;
    for (int i = 0; i < RECORD_FIELDS; i++) {
        be32_put(out + 88 + 4 * i, (uint32_t)fields[i]->len);
        if (fields[i]->len) {
            memcpy(w, fields[i]->ptr, fields[i]->len);
        }
        w += fields[i]->len;
    }
    chain_hash(out, n, prev_hash, ev->hash);
    memcpy(out + RECORD_HASH_AT, ev->hash, HASH_SHA256_LEN);
    be32_put(out + 4, hash_crc32c(0, out + RECORD_CRC_FROM, n - RECORD_CRC_FROM));
}

int codec_record_decode(const uint8_t *p, size_t n, struct event_rec *out)
{
    if (n < RECORD_BODY_AT ||
        be32_get(p + 4) != hash_crc32c(0, p + RECORD_CRC_FROM, n - RECORD_CRC_FROM)) {
        return ERR(ERR_CORRUPT);
    }
    return codec_record_parse(p, n, out);
}

int codec_record_parse(const uint8_t *p, size_t n, struct event_rec *out)
{
    if (n < RECORD_BODY_AT || (p[0] != RECORD_FORMAT && p[0] != RECORD_FORMAT_4) ||
        (p[1] & ~RECORD_REDACTED) || p[2] || p[3]) {
        return ERR(ERR_CORRUPT);
    }
    out->client_id = false;
    out->redacted = (p[1] & RECORD_REDACTED) != 0;
    out->position = be64_get(p + 8);
    out->version = be64_get(p + 16);
    out->time_us = (int64_t)be64_get(p + 24);
    out->recorded_us = (int64_t)be64_get(p + 32);
    memcpy(out->id, p + 40, UUID_LEN);
    memcpy(out->hash, p + RECORD_HASH_AT, HASH_SHA256_LEN);
    struct slice *fields[RECORD_FIELDS] = {&out->stream,   &out->type, &out->data,
                                           &out->metadata, &out->tags, &out->subject};
    if (out->redacted) { /* header and body digest only: the content is gone */
        for (int i = 0; i < RECORD_FIELDS; i++) {
            *fields[i] = (struct slice){"", 0};
        }
        if (p[0] != RECORD_FORMAT || n != REDACTED_RECORD_BYTES) {
            return ERR(ERR_CORRUPT);
        }
        memcpy(out->digest, p + RECORD_BODY_AT, HASH_SHA256_LEN);
        return 0;
    }
    if (n < RECORD_HEADER_BYTES) {
        return ERR(ERR_CORRUPT);
    }
    size_t off = RECORD_HEADER_BYTES;
    for (int i = 0; i < RECORD_FIELDS; i++) {
        size_t len = be32_get(p + 88 + 4 * i);
        if (len > n - off) {
            return ERR(ERR_CORRUPT);
        }
        fields[i]->ptr = (const char *)p + off;
        fields[i]->len = len;
        off += len;
    }
    return off == n ? 0 : ERR(ERR_CORRUPT);
}

bool codec_record_hash_ok(const uint8_t *p, size_t n, const uint8_t prev_hash[HASH_SHA256_LEN])
{
    if (n < RECORD_BODY_AT || ((p[1] & RECORD_REDACTED) && n != REDACTED_RECORD_BYTES)) {
        return false;
    }
    uint8_t h[HASH_SHA256_LEN];
    chain_hash(p, n, prev_hash, h);
    return memcmp(h, p + RECORD_HASH_AT, HASH_SHA256_LEN) == 0;
}

bool codec_record_redactable(const uint8_t *p, size_t n)
{
    return n > REDACTED_RECORD_BYTES && p[0] == RECORD_FORMAT && !(p[1] & RECORD_REDACTED);
}

void codec_record_redact(const uint8_t *p, size_t n, uint8_t out[REDACTED_RECORD_BYTES])
{
    memcpy(out, p, RECORD_BODY_AT);
    out[1] |= RECORD_REDACTED;
    codec_body_digest(p + RECORD_BODY_AT, n - RECORD_BODY_AT, out + RECORD_BODY_AT);
    be32_put(out + 4, hash_crc32c(0, out + RECORD_CRC_FROM,
                                  REDACTED_RECORD_BYTES - RECORD_CRC_FROM));
}

void codec_content_digest(const struct event_rec *ev, uint8_t out[HASH_SHA256_LEN])
{
    const struct slice *fields[RECORD_FIELDS] = {&ev->stream,   &ev->type, &ev->data,
                                                 &ev->metadata, &ev->tags, &ev->subject};
    uint8_t lens[RECORD_FIELDS * 4];
    struct hash_part parts[1 + RECORD_FIELDS];
    parts[0] = (struct hash_part){lens, sizeof lens};
    for (int i = 0; i < RECORD_FIELDS; i++) {
        be32_put(lens + 4 * i, (uint32_t)fields[i]->len);
        parts[1 + i] = (struct hash_part){fields[i]->ptr, fields[i]->len};
    }
    hash_sha256(parts, 1 + RECORD_FIELDS, out);
}

/* Idempotency record layout: u8 kind (AUX_IDEM), u8 reserved (0), u16 status, u32 key
 * length k, i64 created us, u8[32] request hash, u32 answer length a, then the key and the
 * answer. */
size_t codec_idem_size(const struct idem_rec *r)
{
    return IDEM_HEADER_BYTES + r->key.len + r->answer.len;
}

void codec_idem_encode(const struct idem_rec *r, uint8_t *out)
{
    out[0] = AUX_IDEM;
    out[1] = 0;
    out[2] = (uint8_t)(r->status >> 8);
    out[3] = (uint8_t)r->status;
    be32_put(out + 4, (uint32_t)r->key.len);
    be64_put(out + 8, (uint64_t)r->created_us);
    memcpy(out + 16, r->hash, HASH_SHA256_LEN);
    be32_put(out + 48, (uint32_t)r->answer.len);
    memcpy(out + IDEM_HEADER_BYTES, r->key.ptr, r->key.len);
    if (r->answer.len) {
        memcpy(out + IDEM_HEADER_BYTES + r->key.len, r->answer.ptr, r->answer.len);
    }
}

int codec_idem_decode(const uint8_t *p, size_t n, struct idem_rec *out)
{
    if (n < IDEM_HEADER_BYTES || p[0] != AUX_IDEM || p[1]) {
        return ERR(ERR_CORRUPT);
    }
    size_t k = be32_get(p + 4), a = be32_get(p + 48);
    if (k == 0 || k > LIMIT_IDEM_STORED_KEY_BYTES || k > n - IDEM_HEADER_BYTES ||
        a != n - IDEM_HEADER_BYTES - k) {
        return ERR(ERR_CORRUPT);
    }
    out->status = (uint16_t)(p[2] << 8 | p[3]);
    out->created_us = (int64_t)be64_get(p + 8);
    memcpy(out->hash, p + 16, HASH_SHA256_LEN);
    out->key = (struct slice){(const char *)p + IDEM_HEADER_BYTES, k};
    out->answer = (struct slice){(const char *)p + IDEM_HEADER_BYTES + k, a};
    return 0;
}

void codec_stream_encode(const struct stream_rec *s, uint8_t out[STREAM_REC_BYTES])
{
    be64_put(out, s->id);
    be64_put(out + 8, s->version);
    be64_put(out + 16, s->first_pos);
    be64_put(out + 24, s->last_pos);
    be64_put(out + 32, (uint64_t)s->created_us);
    be64_put(out + 40, (uint64_t)s->updated_us);
    be64_put(out + 48, s->bytes);
}

int codec_stream_decode(const uint8_t *p, size_t n, struct stream_rec *out)
{
    if (n != STREAM_REC_BYTES) {
        return ERR(ERR_CORRUPT);
    }
    out->id = be64_get(p);
    out->version = be64_get(p + 8);
    out->first_pos = be64_get(p + 16);
    out->last_pos = be64_get(p + 24);
    out->created_us = (int64_t)be64_get(p + 32);
    out->updated_us = (int64_t)be64_get(p + 40);
    out->bytes = be64_get(p + 48);
    return 0;
}

/* Head layout: u32 format, u32 crc32c of [8,end), u64 position, u8[32] hash, u64 log end,
 * u64 streams, i64 created, u64 terms; from format 6, u64 log generation (end = 88; formats
 * 4 and 5 end at 80, generation 0). */
size_t codec_head_encode(const struct head_rec *h, uint8_t out[HEAD_REC_BYTES])
{
    size_t n = h->format >= 6 ? HEAD_REC_BYTES : HEAD_REC_BYTES_5;
    be32_put(out, h->format);
    be64_put(out + 8, h->position);
    memcpy(out + 16, h->hash, HASH_SHA256_LEN);
    be64_put(out + 48, h->log_end);
    be64_put(out + 56, h->stream_count);
    be64_put(out + 64, (uint64_t)h->created_us);
    be64_put(out + 72, h->term_count);
    if (n == HEAD_REC_BYTES) {
        be64_put(out + 80, h->generation);
    }
    be32_put(out + 4, hash_crc32c(0, out + 8, n - 8));
    return n;
}

int codec_head_decode(const uint8_t *p, size_t n, struct head_rec *out)
{
    uint32_t format = n >= HEAD_REC_BYTES_5 ? be32_get(p) : 0;
    size_t want = format >= 6 ? HEAD_REC_BYTES : HEAD_REC_BYTES_5;
    if (format < STORE_FORMAT_OLDEST || format > STORE_FORMAT_VERSION || n != want ||
        be32_get(p + 4) != hash_crc32c(0, p + 8, want - 8)) {
        return ERR(ERR_CORRUPT);
    }
    out->format = be32_get(p);
    out->position = be64_get(p + 8);
    memcpy(out->hash, p + 16, HASH_SHA256_LEN);
    out->log_end = be64_get(p + 48);
    out->stream_count = be64_get(p + 56);
    out->created_us = (int64_t)be64_get(p + 64);
    out->term_count = be64_get(p + 72);
    out->generation = want == HEAD_REC_BYTES ? be64_get(p + 80) : 0;
    return 0;
}
