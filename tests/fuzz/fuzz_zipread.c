/* libFuzzer target: the zip reader (util/zipread.h: the Hapnd dialect opens zips clients
 * upload). Property: no crash, sanitizer report or leak; an archive that opens holds at most
 * ZIPREAD_MAX_ENTRIES files within the size limits, each NUL-terminated, with a non-empty
 * name; a failure leaves the result empty and gives a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/errors.h"
#include "util/zipread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zipread z;
    memset(&z, 0, sizeof z);
    char why[128] = "";
    int rc = zipread_open(data, size, &z, why, sizeof why);
    if (rc) {
        if (z.count || z.files || !why[0] ||
            (rc != ERR_INVALID && rc != ERR_TOOBIG && rc != ERR_NOMEM)) {
            abort();
        }
        return 0;
    }
    size_t total = 0;
    if (z.count > ZIPREAD_MAX_ENTRIES) {
        abort();
    }
    for (size_t i = 0; i < z.count; i++) {
        const struct zipread_file *f = &z.files[i];
        total += f->len;
        if (!f->name[0] || f->len > ZIPREAD_MAX_FILE_BYTES || f->data[f->len] != '\0') {
            abort();
        }
    }
    if (total > ZIPREAD_MAX_TOTAL_BYTES) {
        abort();
    }
    zipread_fini(&z);
    return 0;
}
