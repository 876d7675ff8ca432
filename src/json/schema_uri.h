/* URI references for JSON Schema identifiers: RFC 3986 section 5 resolution of a reference
 * against a base, and percent-decoding of fragments. Pure string functions. */
#ifndef JSON_SCHEMA_URI_H
#define JSON_SCHEMA_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Resolves reference ref[0..ref_len) against base (NUL-terminated; "" for none, which leaves
 * a relative reference as it is, dot segments removed) into out (reset first). */
void schema_uri_resolve(const char *base, const char *ref, size_t ref_len, struct buf *out);

/* True when uri (NUL-terminated) has a scheme ("http:", "urn:", ...). */
bool schema_uri_is_absolute(const char *uri);

/* Percent-decodes s[0..len) into out (reset first). Returns false for a malformed escape. */
bool schema_uri_unescape(const char *s, size_t len, struct buf *out);

#endif
