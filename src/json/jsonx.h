/* Raw-text helpers over JSON that json/validate has already accepted: walk objects and arrays
 * by byte spans (so stored data keeps its exact text), decode strings, minify a span. Pure
 * functions over buffers; no allocation except into out buffers. */
#ifndef JSON_JSONX_H
#define JSON_JSONX_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "util/buf.h"

/* Finds the value of member key in the object spanned by obj (which must be valid JSON text
 * starting, after whitespace, with '{'). Keys are compared by raw bytes; a key written with
 * escapes does not match. Returns true and sets *out to the value's span, or false. */
bool jsonx_member(struct slice obj, const char *key, struct slice *out);

/* Iterates the items of a valid JSON array span. Start with *pos = 0; each call sets *out to
 * the next item's span and returns true, or returns false at the end. */
bool jsonx_next_item(struct slice arr, size_t *pos, struct slice *out);

/* Iterates the members of a valid JSON object span. Start with *pos = 0; each call sets *key
 * to the member name's raw string token (quotes included) and *val to its value's span, and
 * returns true, or returns false at the end. */
bool jsonx_next_member(struct slice obj, size_t *pos, struct slice *key, struct slice *val);

/* Decodes a valid raw string token (quotes included) into UTF-8 in out (reset first,
 * NUL-terminated; the text itself may hold NUL from \u0000). Returns 0, or ERR_INVALID for an
 * escaped lone surrogate (not representable in UTF-8). */
int jsonx_string(struct slice raw, struct buf *out);

/* The first byte of a value span after whitespace: '{', '[', '"', 't', 'f', 'n', or a digit
 * or '-' for numbers; 0 for an empty span. */
char jsonx_kind(struct slice v);

/* Appends span without insignificant whitespace to out. Span must be valid JSON. */
void jsonx_minify(struct slice span, struct buf *out);

/* True when span (valid JSON) holds no insignificant whitespace, as jsonx_minify writes it. */
bool jsonx_is_minified(struct slice span);

/* Reads v (a JSON value span) as a whole number from 0 to UINT64_MAX written with digits
 * only (no sign, fraction or exponent) into *out. False for anything else, overflow included.
 */
bool jsonx_u64(struct slice v, uint64_t *out);

/* Reads the members of object obj (valid JSON) whose decoded names are names[0..count) into
 * vals[i] (span of the value; ptr NULL when absent). Returns 0, or ERR_INVALID when a member
 * is not one of names (*out_dup false) or one of them appears twice (*out_dup true); its
 * decoded name is then in bad (reset first). */
int jsonx_members(struct slice obj, const char *const *names, int count, struct slice *vals,
                  struct buf *bad, bool *out_dup);


#endif
