/* The layout of a compiled j17 spec, shared by the files of the module: spec.c (the document,
 * aggregate and event types, lookups, compat, validation), spec_imply.c (implications),
 * spec_more.c (sagas, projections, listeners), projection.c (projection evaluation) and ident.c
 * (identifiers and names). Not for use outside src/dialect/j17/. */
#ifndef DIALECT_J17_SPEC_INT_H
#define DIALECT_J17_SPEC_INT_H

#include "dialect/j17/spec.h"
#include "json/schema.h"
#include "logic/tick.h"

/* An "emit" object: where an implied (or saga) event goes and what it carries. Each member is a
 * compiled Tick value: a literal, a reference or a template. */
struct j17_emit {
    struct tick_expr *agg_type;   /* owned: "aggregate_type" */
    struct tick_expr *event_type; /* owned: "event_type" */
    struct tick_expr *id;         /* owned: "id" */
    struct tick_expr *data;       /* owned: "data", or NULL (the event carries {}) */
};

enum j17_imp_kind { J17_IMP_EMIT, J17_IMP_MAP, J17_IMP_SCHEDULE, J17_IMP_PIPELINE };

/* One implication of an event type (or one step of a pipeline). */
struct j17_imp {
    enum j17_imp_kind kind;
    char *where;                 /* owned: its path in the spec, for errors */
    struct tick_expr *cond;      /* owned: "condition" beside the kind, or NULL */
    struct j17_emit emit;        /* EMIT, SCHEDULE; MAP: for each element ($.item) */
    struct tick_expr *over;      /* MAP: owned, the array mapped over */
    struct tick_expr *item_cond; /* MAP: owned "condition" inside map (per element), or NULL */
    uint64_t delay_ms;           /* SCHEDULE */
    struct j17_emit *cancel_on;  /* SCHEDULE: owned, cancel_count of them (data unused) */
    size_t cancel_count;
    struct j17_imp *steps;       /* PIPELINE: owned, step_count of them */
    size_t step_count;
};

struct j17_evt {
    char name[J17_NAME_BYTES + 1];
    const struct j17_agg *agg;   /* the aggregate type it belongs to */
    json_t *def;                 /* borrowed from the spec's document: the event's object */
    struct schema *schema;       /* owned, compiled "schema" */
    struct j17_imp *imps;        /* owned, imp_count of them */
    size_t imp_count;
};

struct j17_agg {
    char name[J17_NAME_BYTES + 1];
    bool is_cached;              /* named in modules.cache */
    struct j17_evt *evts;        /* owned, sorted by name */
    size_t evt_count;
};

struct j17_saga_step {
    const char *name;            /* borrowed from the document */
    struct j17_emit emit;        /* $.prev allowed */
    struct j17_emit compensate;  /* all NULL when absent */
    struct tick_expr *cond;      /* owned or NULL; $.prev allowed */
    uint64_t timeout_ms;         /* 0 when absent */
    const char *await_agg;       /* borrowed: await.aggregate_type, NULL without await */
    const json_t *await_types;   /* borrowed: await.event_types, NULL without await */
};

struct j17_saga {
    const char *name;            /* borrowed from the document */
    const char *trigger_agg;     /* borrowed */
    const char *trigger_evt;     /* borrowed */
    json_t *def;                 /* borrowed */
    struct j17_saga_step *steps; /* owned, step_count of them */
    size_t step_count;
};

/* A select path, parsed once (projection.c): "$.<root>" (a source or include), "$<root>" (a
 * variable) or, for a $lookup "where" field, no root; then its segments. */
enum j17_seg_kind {
    J17_SEG_MEMBER, /* .name */
    J17_SEG_INDEX,  /* [n], [-n] */
    J17_SEG_ALL,    /* [*] */
};

struct j17_seg {
    enum j17_seg_kind kind;
    const char *name;            /* MEMBER: borrowed from the path's text, len bytes */
    size_t len;
    long index;                  /* INDEX: negative counts from the end */
};

struct j17_sel_path {
    bool is_var;                 /* "$name...": a variable; else "$.name..." or relative */
    char root[J17_NAME_BYTES + 1]; /* the source, include or variable; "" when relative */
    struct j17_seg *segs;        /* owned, seg_count of them */
    size_t seg_count;
    bool has_all;                /* a [*] among segs */
};

/* One source of a projection, in definition order. */
struct j17_proj_source {
    const char *name;            /* borrowed from the document */
    const char *type;            /* borrowed aggregate type; NULL for "$key" */
    bool is_array;               /* mode "array" */
    struct j17_sel_path id;      /* its "id" path (unused for "$key") */
};

/* One include of a projection: "type:id" split, the id canonical. */
struct j17_proj_include {
    const char *name;            /* borrowed from the document */
    char type[J17_NAME_BYTES + 1];
    char id[J17_ID_BYTES + 1];
};

struct j17_sel; /* a compiled select template (projection.c) */

struct j17_projection {
    const char *name;            /* borrowed from the document */
    const char *for_each;        /* borrowed */
    bool has_substreams;         /* include_substreams */
    json_t *def;                 /* borrowed */
    const struct j17_spec *spec; /* the spec that holds it (for ids) */
    struct j17_proj_source *sources; /* owned, source_count of them; NULL until prepared */
    size_t source_count;
    struct j17_proj_include *includes; /* owned, include_count of them */
    size_t include_count;
    struct j17_sel *select;      /* owned compiled "select"; NULL until prepared */
};

struct j17_listener {
    const char *name;            /* borrowed from the document */
    const char *url;             /* borrowed */
    const char *secret;          /* borrowed, or NULL */
    json_t *agg_types;           /* borrowed array, or NULL (any) */
    json_t *event_types;         /* borrowed array, or NULL (any) */
};

struct j17_spec {
    int refs;                    /* references held (atomic) */
    json_t *doc;                 /* owned: the parsed spec */
    char *text;                  /* owned: minified text of doc */
    size_t text_len;
    struct j17_agg *aggs;        /* owned, sorted by name */
    size_t agg_count;
    json_t *agents;              /* borrowed from doc: agent_types, or NULL */
    json_t *targets;             /* borrowed: target_types, or NULL */
    json_t *singletons;          /* borrowed: singletons, or NULL */
    struct j17_saga *sagas;      /* owned, saga_count of them, in spec order */
    size_t saga_count;
    struct j17_projection *projs; /* owned */
    size_t proj_count;
    struct j17_listener *listeners; /* owned */
    size_t listener_count;
};

/* Compiler state shared by the files. */
struct j17_cc {
    struct j17_spec *s;                  /* the spec being built */
    struct j17_problems *pr;             /* where problems go */
    const struct j17_spec_options *opt;  /* borrowed */
};

/* Room for a dotted path in the spec. */
enum { J17_PATH = J17_PROBLEM_PATH_BYTES };

/* Records a problem at path (cut to fit); past J17_PROBLEMS_MAX sets pr->more. */
void j17_problem(struct j17_problems *pr, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* dst = a b c, cut to fit J17_PATH (dst may be a). */
void j17_path_cat(char *dst, const char *a, const char *b, const char *c);
/* dst = base "." member (member alone when base is ""), cut to fit J17_PATH. */
void j17_path_member(char *dst, const char *base, const char *member);
/* dst = base "[" i "]". */
void j17_path_index(char *dst, const char *base, size_t i);

/* Reports each member of obj not in the NULL-terminated list known, at path.member. */
void j17_check_members(struct j17_cc *c, const json_t *obj, const char *path,
                       const char *const *known);

/* True for [a-z][a-z0-9_]{0,63}. */
bool j17_name_ok(const char *s, size_t len);

/* Looks an event type up by aggregate and event names (NUL-terminated); NULL when absent. */
const struct j17_evt *j17_spec_evt(const struct j17_spec *s, const char *agg, const char *evt);

/* Compiles the emit object j at path (checking literal types against the spec; jpath_flags
 * for its references) into *out. is_cancel: a cancel_on entry (no "data"). Problems go to c;
 * returns false when there was one. */
bool j17_emit_compile(struct j17_cc *c, const json_t *j, const char *path, unsigned jpath_flags,
                      bool is_cancel, struct j17_emit *out);
void j17_emit_fini(struct j17_emit *em);

/* Compiles a Tick predicate or value at path, reporting the tick error under it. */
struct tick_expr *j17_pred_compile(struct j17_cc *c, const json_t *j, const char *path,
                                   unsigned jpath_flags);
struct tick_expr *j17_value_compile(struct j17_cc *c, const json_t *j, const char *path,
                                    unsigned jpath_flags);

/* Compiles e's "implications" (json array arr) at path. */
void j17_imps_compile(struct j17_cc *c, struct j17_evt *e, const json_t *arr, const char *path);
void j17_imps_free(struct j17_imp *imps, size_t count);

/* modules.sagas, projections and listeners (spec_more.c). */
void j17_sagas_compile(struct j17_cc *c, const json_t *j, const char *path);
void j17_projections_compile(struct j17_cc *c, const json_t *j, const char *path);
void j17_listeners_compile(struct j17_cc *c, const json_t *j, const char *path);
void j17_more_free(struct j17_spec *s);

/* ---- projection evaluation (projection.c) ---- */

/* Parses a select path s: "$.<name>" or "$<name>" (a name of [A-Za-z0-9_-] or non-ASCII bytes,
 * at most J17_NAME_BYTES), then .name, [n] (strtol's syntax) and [*], at most LIMIT_JPATH_BYTES
 * in all. Returns NULL with *out filled (segment names borrowed from s; free with
 * j17_sel_path_fini), or why it is not a path (*out then needs no fini). */
const char *j17_sel_path_parse(const char *s, struct j17_sel_path *out);
void j17_sel_path_fini(struct j17_sel_path *p);

/* Prepares a projection that j17_spec_compile checked without a problem: its sources, includes
 * and select compiled for evaluation. Returns false (with a problem at path) if something does
 * not compile, which the checks should have caught. */
bool j17_projection_prepare(struct j17_cc *c, struct j17_projection *p, const char *path);
/* Frees what j17_projection_prepare made; an unprepared projection is fine. */
void j17_projection_fini(struct j17_projection *p);

#endif
