/* A JSON text as a flat tape of nodes (a read-only DOM without per-node allocation), for code
 * that must look at values more than once: the JSON Schema compiler and validator. Strings are
 * decoded; numbers are kept exactly, as a decimal (digits and a power of ten), so they compare
 * mathematically (1.0 == 1, integers past 64 bits, 0.1 + nothing lost). Pure: no I/O.
 *
 * Tape layout: node 0 is the root. An array's items follow it in order; an object's members
 * follow it as a key node (a string) then the value's nodes. Every node records `next`, the
 * index just past its subtree, so a value is skipped in O(1). */
#ifndef JSON_JDOC_H
#define JSON_JDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json/validate.h"

enum jdoc_kind {
    JDOC_NULL,
    JDOC_FALSE,
    JDOC_TRUE,
    JDOC_NUMBER,
    JDOC_STRING,
    JDOC_ARRAY,
    JDOC_OBJECT,
};

enum {
    JDOC_MAX_TEXT_BYTES = 0x7fffffff, /* texts larger than this are refused (32-bit indexes) */
    JDOC_MAX_EXP = 1000000000,        /* decimal exponents saturate here (1e2000000000 is
                                         taken as 1e1000000000: both far past any double) */
};

/* An exact decimal: (neg ? -1 : 1) * digits * 10^exp. digits has no leading or trailing
 * zeros; zero is ndigits == 0 (never negative). */
struct jdoc_num {
    const char *digits; /* borrowed from the doc's arena ('0'..'9' bytes, not NUL-terminated) */
    uint32_t ndigits;   /* count of digits */
    bool neg;           /* sign */
    int64_t exp;        /* power of ten, |exp| <= about JDOC_MAX_EXP + text length */
};

/* One value on the tape. */
struct jdoc_node {
    uint8_t kind;   /* enum jdoc_kind */
    uint32_t next;  /* index just past this node's subtree */
    uint32_t count; /* items (array), members (object) or bytes (string) */
    union {
        const char *str;     /* JDOC_STRING: decoded UTF-8 (may hold NUL), borrowed */
        struct jdoc_num num; /* JDOC_NUMBER */
    };
};

/* A parsed text. Strings that need no decoding point into the parsed text, so the text must
 * outlive the doc (borrowed); the rest lives in the doc's arena (owned). */
struct jdoc {
    struct jdoc_node *nodes; /* owned tape */
    uint32_t count;          /* nodes in use */
    uint32_t cap;            /* nodes allocated */
    char *arena;             /* owned: decoded strings and number digits */
    size_t arena_cap;        /* bytes allocated (the arena never moves during a parse) */
};

/* jdoc_init: an empty doc. jdoc_fini frees it (a zeroed doc is fine). */
void jdoc_init(struct jdoc *d);
void jdoc_fini(struct jdoc *d);

/* Parses text[0..len) (strict RFC 8259, json/validate.h) nested at most max_depth deep into
 * d, reusing d's memory. Returns 0; ERR_INVALID with *err filled when the text is not JSON or
 * holds an escaped lone surrogate; ERR_TOOBIG when len > JDOC_MAX_TEXT_BYTES. The text is
 * borrowed: it must stay unchanged while d is used. One thread at a time per doc. */
int jdoc_parse(struct jdoc *d, const char *text, size_t len, int max_depth,
               struct jsonv_error *err);

/* The index of the value of member name[0..len) in object node obj, or -1 (first match). */
int64_t jdoc_member(const struct jdoc *d, uint32_t obj, const char *name, size_t len);

/* True when a and b are equal JSON values (numbers compared mathematically, object members
 * in any order). */
bool jdoc_equal(const struct jdoc *da, uint32_t a, const struct jdoc *db, uint32_t b);

/* -1, 0 or 1 as a < b, a == b or a > b, mathematically. */
int jdoc_num_cmp(const struct jdoc_num *a, const struct jdoc_num *b);

/* True when n is a whole number (1.0 and 1e3 are). */
bool jdoc_num_is_integer(const struct jdoc_num *n);

/* True when n / m is a whole number, for m > 0. Exact when m has at most 18 digits (else
 * approximated with doubles). */
bool jdoc_num_is_multiple(const struct jdoc_num *n, const struct jdoc_num *m);

/* n as a non-negative integer, saturating at UINT64_MAX; 0 for negative or fractional n
 * (callers check jdoc_num_is_integer and the sign first). */
uint64_t jdoc_num_u64(const struct jdoc_num *n);

/* n as the nearest double (infinities for overflow). */
double jdoc_num_double(const struct jdoc_num *n);

#endif
