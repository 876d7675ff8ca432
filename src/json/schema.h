/* JSON Schema draft 2020-12: compile a schema once into an immutable form, then validate any
 * number of instances against it, from any number of threads at once.
 *
 *   struct schema *s;  struct schema_error e;
 *   if (schema_compile(text, len, &s, &e) < 0) ... e.msg, e.pointer
 *   struct schema_result r;  schema_result_init(&r);          (one per thread, reused)
 *   if (schema_validate(s, inst, inst_len, &r) == ERR_INVALID) ... r.pointer, r.keyword, r.message
 *   schema_result_fini(&r);  schema_free(s);
 *
 * Pure: no I/O and no network. A `$ref` to another document resolves only against documents
 * registered with a struct schema_registry (or embedded in the schema with `$id`); anything
 * else is a compile error. What is supported, the compiled form and the limits:
 * docs/design/json-schema.md. */
#ifndef JSON_SCHEMA_H
#define JSON_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Limits on everything a schema's author or an instance controls. Exceeding one is an error
 * that names it (ERR_TOOBIG). */
enum {
    SCHEMA_MAX_TEXT_BYTES = 1024 * 1024,  /* one schema document's JSON text */
    SCHEMA_MAX_DEPTH = 128,               /* nesting of a schema document's JSON */
    SCHEMA_MAX_SUBSCHEMAS = 20000,        /* compiled subschemas, all documents together */
    SCHEMA_MAX_ENTRIES = 100000,          /* names, values and subschema references (property
                                             names, required names, enum values, ...) */
    SCHEMA_MAX_DOCUMENTS = 64,            /* documents in one compiled schema (registered
                                             remotes that its `$ref`s reach, and itself) */
    SCHEMA_MAX_REGISTERED = 256,          /* documents in one registry */
    SCHEMA_MAX_URI_BYTES = 2048,          /* one `$id`, `$ref`, `$anchor` or resolved URI */
    SCHEMA_MAX_PATTERNS = 1024,           /* `pattern` and `patternProperties` regexes */
    SCHEMA_MAX_PATTERN_BYTES = 1024,      /* one regex's source */
    SCHEMA_REGEX_MATCH_LIMIT = 100000,    /* PCRE2 match limit per match (backtracking) */
    SCHEMA_REGEX_DEPTH_LIMIT = 1000,      /* PCRE2 depth limit per match */
    SCHEMA_REGEX_HEAP_KIB = 1024,         /* PCRE2 heap limit per match */
    SCHEMA_MAX_EVAL_DEPTH = 256,          /* nested subschema evaluations for one instance
                                             ($ref cycles that consume nothing stop here) */
    SCHEMA_EVAL_STEPS_BASE = 1000000,     /* subschema evaluations and uniqueItems comparisons
                                             for one instance: this many, plus */
    SCHEMA_EVAL_STEPS_PER_NODE = 64,      /* ... this many per value of the instance (bounds
                                             exponential anyOf/$ref fan-out, and O(n^2)
                                             uniqueItems) */
    SCHEMA_MAX_INSTANCE_DEPTH = 64,       /* nesting of an instance's JSON */
    SCHEMA_MAX_INSTANCE_BYTES = 16 * 1024 * 1024, /* one instance's JSON text */
    SCHEMA_MAX_MESSAGE_BYTES = 160,       /* an error message, NUL included */
};

/* Compile options (flags). */
enum {
    /* `format` asserts for the formats listed in docs/design/json-schema.md (email, uuid,
     * date-time, ...). Without it, `format` is an annotation only, as the 2020-12 default
     * meta-schema says. schema_compile() sets it: j17 relies on it. */
    SCHEMA_FORMAT_ASSERT = 1 << 0,
};

struct schema;          /* compiled: immutable, shareable across threads */
struct schema_registry; /* documents `$ref` may reach by URI */

/* Why a compile failed. */
struct schema_error {
    const char *keyword;                   /* static: the offending keyword, or "" */
    char pointer[256];                     /* JSON Pointer into the schema (truncated), or "" */
    char msg[SCHEMA_MAX_MESSAGE_BYTES];    /* a short sentence */
};

/* Options of schema_compile_ex. A zeroed struct means: no registry, format annotations only. */
struct schema_options {
    const struct schema_registry *registry; /* borrowed during the call only; may be NULL */
    unsigned flags;                         /* SCHEMA_* flags */
    const char *base_uri;                   /* the root's retrieval URI when it has no `$id`;
                                               NULL means none (relative refs stay relative) */
};

/* A registry of documents by URI, for `$ref`s to other documents (the test suite's remotes,
 * meta-schemas, a user's shared definitions). Not thread-safe while being filled; read-only
 * (so shareable) during compiles. schema_registry_free(NULL) does nothing. */
struct schema_registry *schema_registry_new(void);
void schema_registry_free(struct schema_registry *reg);

/* Registers text[0..len) (copied) as the document at absolute URI uri (NUL-terminated, no
 * fragment). The document is parsed now and compiled only if a schema refers to it. Returns
 * 0; ERR_INVALID (not JSON, or uri not absolute; *err says why); ERR_EXISTS (uri already
 * registered); ERR_TOOBIG (text over SCHEMA_MAX_TEXT_BYTES, more than SCHEMA_MAX_REGISTERED
 * documents, uri over SCHEMA_MAX_URI_BYTES). */
int schema_registry_add(struct schema_registry *reg, const char *uri, const char *text,
                        size_t len, struct schema_error *err);

/* Compiles the schema text[0..len) with format assertions on (SCHEMA_FORMAT_ASSERT) and no
 * registry. text is copied. On success *out is a new schema owned by the caller (free with
 * schema_free). Returns 0; ERR_INVALID (not JSON, not a schema, a keyword with a wrong value,
 * an unresolvable `$ref`, a regex PCRE2 cannot compile); ERR_TOOBIG (a SCHEMA_MAX_* limit).
 * On error *out is NULL and *err says why and where. Any thread. */
int schema_compile(const char *text, size_t len, struct schema **out, struct schema_error *err);

/* schema_compile with options (opt may be NULL: the zeroed defaults). */
int schema_compile_ex(const char *text, size_t len, const struct schema_options *opt,
                      struct schema **out, struct schema_error *err);

/* Frees a compiled schema. No validation may be running on it. NULL does nothing. */
void schema_free(struct schema *s);

/* The outcome of one validation, and memory reused by the next: keep one per thread and
 * validations allocate nothing once it has grown to the largest instance seen. */
struct schema_result {
    const char *keyword;    /* static: keyword that failed ("type", "required", "$ref", ...),
                               or "" when valid */
    struct buf pointer;     /* owned: JSON Pointer (RFC 6901) of the first failing instance
                               location, "" for the root; NUL-terminated */
    char message[SCHEMA_MAX_MESSAGE_BYTES]; /* a short sentence, or "" */
    struct schema_scratch *scratch; /* owned: the instance's tape and evaluation memory */
};

/* schema_result_init prepares r; schema_result_fini frees its memory (a zeroed result is
 * fine). */
void schema_result_init(struct schema_result *r);
void schema_result_fini(struct schema_result *r);

/* Validates the JSON text inst[0..len) against s. Returns 0 when valid (r->keyword is "");
 * ERR_INVALID when the instance does not conform (r says where and why); ERR_PROTOCOL when
 * inst is not JSON (keyword "json"); ERR_TOOBIG when it exceeds SCHEMA_MAX_INSTANCE_BYTES or
 * SCHEMA_MAX_INSTANCE_DEPTH, or evaluation exceeds SCHEMA_MAX_EVAL_DEPTH, the
 * SCHEMA_EVAL_STEPS_* budget or a regex limit
 * (keyword names what). inst is borrowed for the call. s is only read: any number of threads
 * may validate against one schema at once, each with its own r. */
int schema_validate(const struct schema *s, const char *inst, size_t len,
                    struct schema_result *r);

/* Renders JSON Pointer ptr[0..len) in j17's dotted form ("/items/3/name" -> "items.3.name",
 * "" -> "") into out (appended). Returns 0, or ERR_INVALID when ptr is not a pointer (does
 * not start with '/', or a '~' not followed by 0 or 1). */
int schema_pointer_dotted(const char *ptr, size_t len, struct buf *out);

#endif
