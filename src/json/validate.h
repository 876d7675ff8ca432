/* A strict RFC 8259 validator: grammar, UTF-8 (no overlongs, no encoded surrogates, nothing
 * above U+10FFFF), escapes, and a nesting limit. Numbers of any length are valid (they are kept
 * as text, never converted). Pure: no allocation. */
#ifndef JSON_VALIDATE_H
#define JSON_VALIDATE_H

#include <stddef.h>

/* Where and why a text is not JSON. */
struct jsonv_error {
    size_t offset;    /* byte offset of the first offending byte */
    const char *msg;  /* static text */
};

/* Validates p[0..n) as one JSON text (a value with optional surrounding whitespace) nested
 * at most max_depth deep. Returns 0, or ERR_INVALID with *err filled. */
int jsonv_validate(const char *p, size_t n, int max_depth, struct jsonv_error *err);

#endif
