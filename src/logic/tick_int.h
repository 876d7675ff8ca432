/* The layout of a compiled Tick plan, shared by the compiler (tick.c) and the runner
 * (tick_run.c). Not for use outside logic/tick*.c. */
#ifndef LOGIC_TICK_INT_H
#define LOGIC_TICK_INT_H

#include <stdbool.h>

#include "json/jpath.h"
#include "logic/tick.h"

/* What an operation's argument object may hold besides "target". */
enum {
    TICK_ARG_VALUE = 1 << 0, /* "value" (required) */
    TICK_ARG_BY = 1 << 1,    /* "by" (optional; default 1; stored in value) */
    TICK_ARG_WHERE = 1 << 2, /* "where" {element path: value} (required) */
    TICK_ARG_SET = 1 << 3,   /* "set" {element path: value} (required) */
};

/* A value of a handler: a constant, a reference, or a template holding references. */
enum tick_value_kind { TICK_VALUE_CONST, TICK_VALUE_PATH, TICK_VALUE_OBJECT, TICK_VALUE_ARRAY };

struct tick_value {
    enum tick_value_kind kind;
    json_t *konst;             /* CONST: owned reference, never changed or linked into a state */
    struct jpath *path;        /* PATH: owned */
    size_t count;              /* OBJECT, ARRAY: members or elements */
    char **keys;               /* OBJECT: owned member names, count of them */
    struct tick_value *items;  /* OBJECT, ARRAY: owned, count of them */
};

enum tick_pred_kind {
    TICK_PRED_EQUALS, TICK_PRED_NOT_EQUALS, TICK_PRED_GT, TICK_PRED_GTE, TICK_PRED_LT,
    TICK_PRED_LTE, TICK_PRED_IN, TICK_PRED_NOT_IN, TICK_PRED_EXISTS, TICK_PRED_AND,
    TICK_PRED_OR, TICK_PRED_NOT,
};

struct tick_pred {
    enum tick_pred_kind kind;
    struct tick_value lhs;   /* comparisons and exists: the left operand */
    struct tick_value rhs;   /* comparisons: the right operand */
    size_t count;            /* and, or, not: sub-predicates */
    struct tick_pred *subs;  /* owned, count of them */
};

/* A predicate or a value compiled on its own (tick_pred_compile, tick_value_compile). */
struct tick_expr {
    bool is_pred;            /* pred is used, else value */
    struct tick_pred pred;   /* owned */
    struct tick_value value; /* owned */
    struct tick_limits lim;  /* budgets applied when it is evaluated */
};

/* {element path: value} pairs of remove_where (match) and update_where (match, then set). */
struct tick_fields {
    size_t count;               /* pairs */
    struct jpath **paths;       /* owned state-mode paths relative to an element */
    struct tick_value *values;  /* owned */
};

struct tick_op;
struct tick_run;
typedef int tick_op_fn(struct tick_run *r, const struct tick_op *op);

/* One row of the operation table. */
struct tick_op_spec {
    const char *name;  /* the key in the handler */
    unsigned args;     /* TICK_ARG_* */
    tick_op_fn *run;   /* runs it */
};

struct tick_block {
    struct tick_op *ops; /* owned, in order */
    size_t count;        /* operations */
};

struct tick_op {
    const struct tick_op_spec *spec; /* static row */
    char *where_text;                /* owned: its JSON path in the handler, for errors */
    struct jpath *target;            /* owned state path (NULL for if) */
    struct tick_value value;         /* "value", or "by" */
    struct tick_fields where;        /* remove_where, update_where */
    struct tick_fields set;          /* update_where */
    struct tick_pred *cond;          /* if: owned */
    struct tick_block then_ops;      /* if */
    struct tick_block else_ops;      /* if (count 0 when absent) */
};

struct tick_plan {
    struct tick_block root;   /* the handler */
    struct tick_limits lim;   /* budgets applied by tick_apply */
};

/* The if/then/else row (not looked up by name: "if" sits beside "then" and "else"). */
extern const struct tick_op_spec TICK_IF_SPEC;

/* Fills *err (when not NULL) and returns code. */
int tick_fail(struct tick_error *err, const char *path, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

tick_op_fn tick_run_set, tick_run_unset, tick_run_merge, tick_run_set_default,
    tick_run_increment, tick_run_decrement, tick_run_min, tick_run_max, tick_run_toggle,
    tick_run_append, tick_run_prepend, tick_run_append_unique, tick_run_concat, tick_run_remove,
    tick_run_remove_where, tick_run_update_where;

/* Frees what a block owns (not the block itself). */
void tick_block_fini(struct tick_block *b);

#endif
