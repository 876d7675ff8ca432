/* libFuzzer target: the JSON validator and the append-body parser. Properties: no crash or
 * sanitizer report; whatever the parser accepts, each stored data/metadata/tags text is itself
 * valid JSON (it is served back verbatim), and every type is valid UTF-8 without control
 * characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/canon.h"
#include "ops/parse.h"
#include "json/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_json(struct slice s)
{
    struct jsonv_error e;
    if (jsonv_validate(s.ptr, s.len, 1000, &e) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jsonv_error e;
    int v = jsonv_validate((const char *)data, size, 64, &e);
    if (v != 0 && e.offset > size) {
        abort();
    }
    static const struct limits lim = {.body_bytes = 1 << 20, .batch_events = 100,
                                      .event_bytes = 1 << 16};
    struct parsed_append p;
    struct parse_error pe;
    struct slice body = {(const char *)data, size};
    if (parse_append(body, (struct slice){"s", 1}, &lim, 0, &p, &pe) == 0) {
        if (v != 0) {
            abort(); /* accepted text the validator refuses */
        }
        for (size_t i = 0; i < p.count; i++) {
            must_be_json(p.events[i].data);
            must_be_json(p.events[i].metadata);
            must_be_json(p.events[i].tags);
            if (!engine_name_ok(p.events[i].type.ptr, p.events[i].type.len, 256)) {
                abort();
            }
        }
        parse_append_fini(&p);
    }
    return 0;
}
