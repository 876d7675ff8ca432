/* libFuzzer target: the HTTP request head parser and the chunked-body decoder. Properties: no
 * crash or sanitizer report; a parsed head's length never exceeds the input; every parsed
 * slice lies inside the input (the path may also be the parser's "/"); the chunked decoder never consumes more than it was given nor
 * produces more body than the limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parse.h"

static void check_inside(const uint8_t *data, size_t size, struct slice s)
{
    if (s.len && ((const uint8_t *)s.ptr < data || (const uint8_t *)s.ptr + s.len > data + size)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_head h;
    ssize_t n = http_parse_head((const char *)data, size, 8192, &h);
    if (n > 0 || n == HTTP_ERR_HOST) { /* a Host refusal comes after the whole head was read */
        if (n > 0 && (size_t)n > size) {
            abort();
        }
        check_inside(data, size, h.method);
        check_inside(data, size, h.target);
        check_inside(data, size, h.query);
        check_inside(data, size, h.authority);
        if (!(h.path.len == 1 && h.path.ptr[0] == '/')) { /* or the parser's constant "/" */
            check_inside(data, size, h.path);
        }
        for (size_t i = 0; i < h.nheaders; i++) {
            check_inside(data, size, h.headers[i].name);
            check_inside(data, size, h.headers[i].value);
        }
    }
    struct http_chunked c;
    memset(&c, 0, sizeof c);
    struct buf body;
    buf_init(&body);
    size_t half = size / 2;
    ssize_t a = http_chunked_decode(&c, (const char *)data, half, &body, 4096);
    if (a >= 0 && !c.done) {
        ssize_t b = http_chunked_decode(&c, (const char *)data + a, size - (size_t)a, &body, 4096);
        if (b > (ssize_t)(size - (size_t)a)) {
            abort();
        }
    }
    if (a > (ssize_t)half || body.len > 4096) {
        abort();
    }
    buf_fini(&body);
    return 0;
}
