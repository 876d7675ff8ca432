/* The compiled form of a JSON Schema, shared by the compiler (schema.c) and the validator
 * (schema_eval.c); nothing outside src/json/schema*.c includes this. A compiled schema is a
 * flat array of subschema nodes that refer to each other by index (so `$ref` cycles are
 * plain edges) and to flat side tables by ranges. It is written only by schema_compile and
 * read-only afterwards. docs/design/json-schema.md draws it. */
#ifndef JSON_SCHEMA_INT_H
#define JSON_SCHEMA_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>

#include "json/jdoc.h"
#include "json/schema.h"

/* Keywords a node holds: bit (1 << KW_x) of snode.has. Value keywords only; applicators are
 * present when their index is >= 0 or their range is non-empty. */
enum schema_kw {
    KW_TYPE,
    KW_ENUM,
    KW_CONST,
    KW_MULTIPLE_OF,
    KW_MAXIMUM,
    KW_XMAXIMUM,
    KW_MINIMUM,
    KW_XMINIMUM,
    KW_MAX_LENGTH,
    KW_MIN_LENGTH,
    KW_PATTERN,
    KW_MAX_ITEMS,
    KW_MIN_ITEMS,
    KW_UNIQUE_ITEMS,
    KW_MAX_CONTAINS,
    KW_MIN_CONTAINS,
    KW_MAX_PROPS,
    KW_MIN_PROPS,
    KW_REQUIRED,
    KW_DEP_REQUIRED,
    KW_FORMAT,
    KW_COUNT,
};

/* Instance types: bit (1 << T_x) of snode.types. */
enum schema_type {
    T_NULL,
    T_BOOLEAN,
    T_OBJECT,
    T_ARRAY,
    T_NUMBER,
    T_STRING,
    T_INTEGER,
};

/* What a node is: a boolean schema or an object of keywords. */
enum snode_kind {
    SNODE_OBJECT,
    SNODE_TRUE,
    SNODE_FALSE,
};

/* A run of entries in one of struct schema's side tables. */
struct srange {
    uint32_t start; /* first entry */
    uint32_t count; /* entries */
};

/* A name and what it maps to: properties, dependentSchemas (node), dependentRequired
 * (names), required (name only). */
struct sprop {
    const char *name;     /* borrowed from a document of the schema */
    uint32_t len;         /* bytes of name */
    int32_t node;         /* subschema, or -1 */
    struct srange names;  /* dependentRequired: names in schema.props */
};

/* A patternProperties entry. */
struct spat {
    uint32_t re;  /* index in schema.regexes */
    int32_t node; /* subschema */
};

/* A JSON value inside one of the schema's documents (enum, const). */
struct sval {
    const struct jdoc *doc; /* the document's tape */
    uint32_t node;          /* value's index in it */
};

/* A `$dynamicAnchor` of a resource. */
struct sdyn {
    int32_t res;      /* resource index */
    const char *name; /* anchor name, borrowed */
    uint32_t len;     /* its bytes */
    int32_t node;     /* subschema it names */
};

/* One compiled subschema. Index fields are -1 when the keyword is absent. */
struct snode {
    uint8_t kind;        /* enum snode_kind */
    uint8_t types;       /* T_* bits (KW_TYPE) */
    uint8_t format;      /* enum schema_format (KW_FORMAT, asserted formats only) */
    bool unique_items;   /* uniqueItems: true */
    uint32_t has;        /* KW_* bits */
    int32_t resource;    /* resource this node belongs to (dynamic scope) */
    int32_t ref;         /* $ref target */
    int32_t dynref;      /* $dynamicRef initial target */
    int32_t dynref_name; /* index in schema.props of the anchor name when the target is a
                            $dynamicAnchor (dynamic lookup), else -1 */
    int32_t items, contains, addl_props, prop_names; /* applicators */
    int32_t if_s, then_s, else_s, not_s;
    int32_t uneval_items, uneval_props;
    uint32_t pattern;    /* KW_PATTERN: index in schema.regexes */
    uint64_t min_length, max_length, min_items, max_items; /* saturated at UINT64_MAX */
    uint64_t min_contains, max_contains, min_props, max_props;
    struct jdoc_num minimum, maximum, xminimum, xmaximum, multiple_of;
    struct srange props;        /* properties: schema.props */
    struct srange pattern_props; /* patternProperties: schema.pats */
    struct srange required;     /* required: schema.props (names only) */
    struct srange dep_required; /* dependentRequired: schema.props (names) */
    struct srange dep_schemas;  /* dependentSchemas: schema.props (node) */
    struct srange prefix_items; /* prefixItems: schema.subs */
    struct srange all_of, any_of, one_of; /* schema.subs */
    struct srange enum_vals;    /* enum: schema.vals */
    struct sval const_val;      /* const */
};

/* One JSON document of the schema (the root and each registered remote it reaches). */
struct sdoc {
    char *text;      /* owned copy of the JSON text (the tape's strings point into it) */
    size_t len;      /* its bytes */
    struct jdoc doc; /* owned tape */
    char *uri;       /* owned retrieval URI ("" for a root without one) */
};

/* A compiled schema. Immutable after schema_compile returns. */
struct schema {
    struct sdoc *docs;      /* owned documents */
    uint32_t doc_count;
    struct snode *nodes;    /* owned subschemas; the root is nodes[root] */
    uint32_t node_count;
    int32_t root;
    struct sprop *props;    /* owned side tables (see struct snode) */
    uint32_t prop_count;
    struct spat *pats;
    uint32_t pat_count;
    int32_t *subs;
    uint32_t sub_count;
    struct sval *vals;
    uint32_t val_count;
    struct sdyn *dyns;      /* every $dynamicAnchor */
    uint32_t dyn_count;
    pcre2_code **regexes;   /* owned compiled regexes (pattern, patternProperties) */
    uint32_t regex_count;
    pcre2_match_context *mctx; /* owned: match limits; shared read-only by validations */
    bool has_uneval;        /* some node has unevaluatedItems/Properties (track annotations) */
};

/* Formats that can assert (SCHEMA_FORMAT_ASSERT). */
enum schema_format {
    FMT_NONE,
    FMT_EMAIL,
    FMT_UUID,
    FMT_DATE_TIME,
    FMT_DATE,
    FMT_TIME,
    FMT_IPV4,
    FMT_IPV6,
    FMT_HOSTNAME,
    FMT_URI,
    FMT_URI_REFERENCE,
    FMT_JSON_POINTER,
    FMT_DURATION,
    FMT_REGEX,
};

#endif
