/* libFuzzer target: the backup stream decoder and reader (`annals backup` reads bytes from a
 * server it does not control). Property: no crash or sanitizer report; every frame that
 * decodes lies inside the input and re-encodes to the same bytes; a reader that reached END
 * took only well-formed frames in order (it refuses anything after). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backup/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct backup_reader r;
    backup_reader_init(&r);
    struct buf again;
    buf_init(&again);
    size_t off = 0;
    bool failed = false;
    while (off < size) {
        struct backup_frame f;
        ssize_t n = backup_frame_decode(data + off, size - off, &f);
        if (n <= 0) {
            break;
        }
        if ((size_t)n > size - off || (const uint8_t *)f.payload.ptr < data + off ||
            (const uint8_t *)f.payload.ptr + f.payload.len > data + off + (size_t)n) {
            abort();
        }
        buf_reset(&again);
        backup_frame_encode(&again, f.type, f.payload.ptr, f.payload.len);
        if (again.len != (size_t)n || memcmp(again.ptr, data + off, (size_t)n) != 0) {
            abort();
        }
        bool was_done = backup_reader_done(&r);
        int rc = backup_reader_next(&r, &f);
        if (was_done && rc == 0) {
            abort(); /* nothing may follow END */
        }
        failed = failed || rc != 0;
        if (failed && rc == 0) {
            abort(); /* a failed reader refuses everything */
        }
        off += (size_t)n;
    }
    buf_fini(&again);
    backup_reader_fini(&r);
    return 0;
}
