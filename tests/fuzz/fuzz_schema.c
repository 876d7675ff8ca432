/* libFuzzer target: the JSON Schema compiler and validator (json/schema.h: j17 validates
 * every event against a user's schema). Input: schema text, a NUL byte, instance text (no
 * NUL: the text is both). Property: no crash, sanitizer report, leak or hang (limits bound
 * every loop); a compile fails only with ERR_INVALID or ERR_TOOBIG and a message; a
 * validation returns 0, ERR_INVALID (with a keyword and a JSON Pointer that renders in dotted
 * form), ERR_PROTOCOL or ERR_TOOBIG; validating twice gives the same answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/schema.h"
#include "util/errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result(int rc, const struct schema_result *r)
{
    if (rc != 0 && rc != ERR_INVALID && rc != ERR_PROTOCOL && rc != ERR_TOOBIG) {
        abort();
    }
    if (rc == 0 && r->keyword[0]) {
        abort();
    }
    if (rc == ERR_INVALID) {
        struct buf dotted;
        buf_init(&dotted);
        if (!r->keyword[0] || schema_pointer_dotted(r->pointer.ptr, r->pointer.len, &dotted)) {
            abort();
        }
        buf_fini(&dotted);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t schema_len = nul ? (size_t)(nul - text) : size;
    const char *inst = nul ? nul + 1 : text;
    size_t inst_len = nul ? size - schema_len - 1 : size;
    struct schema *s;
    struct schema_error err;
    struct schema_options opt = {.flags = SCHEMA_FORMAT_ASSERT};
    int rc = schema_compile_ex(text, schema_len, &opt, &s, &err);
    if (rc < 0) {
        if (s || !err.msg[0] || (rc != ERR_INVALID && rc != ERR_TOOBIG)) {
            abort();
        }
        return 0;
    }
    struct schema_result r;
    schema_result_init(&r);
    rc = schema_validate(s, inst, inst_len, &r);
    check_result(rc, &r);
    int again = schema_validate(s, inst, inst_len, &r);
    if (again != rc) {
        abort();
    }
    schema_result_fini(&r);
    schema_free(s);
    return 0;
}
