/* The `format` assertions of the JSON Schema validator and its regex dialect. Pure
 * functions over decoded UTF-8 strings; which formats assert and how strictly:
 * docs/design/json-schema.md. */
#ifndef JSON_SCHEMA_FORMAT_H
#define JSON_SCHEMA_FORMAT_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

/* The enum schema_format (schema_int.h) value of format name[0..len), or FMT_NONE (0) when
 * the format is not one that asserts (it stays an annotation). */
int schema_format_lookup(const char *name, size_t len);

/* True when s[0..len) is valid for format fmt (FMT_NONE: always). */
bool schema_format_check(int fmt, const char *s, size_t len);

/* A static message for a string that fails format fmt ("not a valid email address"). */
const char *schema_format_message(int fmt);

/* Compiles src[0..len) as an ECMA-262 regex with PCRE2 (UTF, $ at the very end only, \uXXXX
 * escapes), JIT-compiled when the platform allows. Returns the code (owned by the caller:
 * pcre2_code_free), or NULL with PCRE2's error code in *code and offset in *at. */
pcre2_code *schema_regex_compile(const char *src, size_t len, int *code, PCRE2_SIZE *at);

#endif
