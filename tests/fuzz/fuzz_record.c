/* libFuzzer target: the stored event-record and idempotency-record decoders (bytes from disk
 * are untrusted). Property: no crash or sanitizer report, and a record that decodes has all
 * its strings inside the input and re-encodes to the same bytes; its redacted form keeps its
 * header, content digest and chain link. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An idempotency record that decodes re-encodes to the same bytes. */
static void check_idem(const uint8_t *data, size_t size)
{
    struct idem_rec ir;
    if (codec_idem_decode(data, size, &ir) != 0) {
        return;
    }
    if (codec_idem_size(&ir) != size) {
        abort();
    }
    uint8_t *again = malloc(size);
    codec_idem_encode(&ir, again);
    if (memcmp(again, data, size) != 0) {
        abort();
    }
    free(again);
}

/* A redactable record's redacted form decodes to the same header and links exactly when the
 * record did. */
static void check_redact(const uint8_t *data, size_t size, const struct event_rec *ev,
                         const uint8_t prev[HASH_SHA256_LEN], bool linked)
{
    if (!codec_record_redactable(data, size)) {
        return;
    }
    uint8_t stub[REDACTED_RECORD_BYTES];
    codec_record_redact(data, size, stub);
    struct event_rec r;
    if (codec_record_decode(stub, sizeof stub, &r) != 0 || !r.redacted ||
        r.position != ev->position || r.version != ev->version ||
        memcmp(r.hash, ev->hash, HASH_SHA256_LEN) != 0 ||
        codec_record_hash_ok(stub, sizeof stub, prev) != linked) {
        abort();
    }
    uint8_t d[HASH_SHA256_LEN];
    codec_content_digest(ev, d);
    if (memcmp(d, r.digest, sizeof d) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_idem(data, size);
    struct event_rec ev;
    if (codec_record_decode(data, size, &ev) != 0) {
        return 0;
    }
    if (ev.redacted) { /* header and digest only: nothing to re-encode */
        if (size != REDACTED_RECORD_BYTES) {
            abort();
        }
        return 0;
    }
    if (codec_record_size(&ev) != size) {
        abort();
    }
    uint8_t prev[HASH_SHA256_LEN] = {0};
    bool linked = codec_record_hash_ok(data, size, prev);
    uint8_t *again = malloc(size);
    struct event_rec copy = ev;
    codec_record_encode(&copy, prev, again);
    /* Re-encoding (always the current format) with the same predecessor reproduces the
     * record exactly when its stored hash was the right one; a format-4 record, its fields. */
    bool current = data[0] == RECORD_FORMAT;
    if (linked && (current ? memcmp(again, data, size) != 0
                           : memcmp(again + 8, data + 8, 48) != 0 ||
                                 memcmp(again + 88, data + 88, size - 88) != 0)) {
        abort();
    }
    free(again);
    check_redact(data, size, &ev, prev, linked);
    return 0;
}
