/* Raw-text helpers over JSON that jansson has already validated: find the byte span of a value
 * (so stored data keeps its exact numbers and key order), minify a span, and bound nesting
 * depth before parsing. Pure functions over buffers; no allocation except into out buffers. */
#ifndef JSON_JSONX_H
#define JSON_JSONX_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Returns the largest nesting depth of [ and { outside strings in p[0..n), stopping early once
 * it exceeds max_depth (then returns max_depth + 1). Works on any bytes, valid JSON or not. */
int jsonx_depth(const char *p, size_t n, int max_depth);

/* Finds the value of member key in the object spanned by obj (which must be valid JSON text
 * starting, after whitespace, with '{'). Keys are compared by raw bytes; a key written with
 * escapes does not match. Returns true and sets *out to the value's span, or false. */
bool jsonx_member(struct slice obj, const char *key, struct slice *out);

/* Iterates the items of a valid JSON array span. Start with *pos = 0; each call sets *out to
 * the next item's span and returns true, or returns false at the end. */
bool jsonx_next_item(struct slice arr, size_t *pos, struct slice *out);

/* Appends span without insignificant whitespace to out. Span must be valid JSON. */
void jsonx_minify(struct slice span, struct buf *out);

/* True when the raw key bytes of some member of obj contain a backslash (then jsonx_member
 * may miss a member that jansson sees). */
bool jsonx_has_escaped_key(struct slice obj);

#endif
