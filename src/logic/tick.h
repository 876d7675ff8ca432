/* Tick: j17's declarative handlers (docs/dialects/j17.md, "Handlers (Tick)"). A handler, the
 * JSON array of operations (or one operation) an event type names in a spec, is compiled once
 * into a plan; applying a plan to a state and an event gives the next state. Pure: no I/O, no
 * clock. A plan is immutable once compiled: any thread may apply it concurrently; its owner
 * frees it.
 *
 * Operations (17): set, unset, merge, set_default, increment, decrement, min, max, toggle,
 * append, prepend, append_unique, concat, remove, remove_where, update_where, if/then/else.
 * Predicates: equals, not_equals, gt, gte, lt, lte, in, not_in, exists, and, or, not.
 */
#ifndef LOGIC_TICK_H
#define LOGIC_TICK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "json/jpath.h"

/* Room for the location of an error inside a handler ("$[2].then[0].set.value"). */
enum { TICK_ERROR_PATH_BYTES = 128, TICK_ERROR_MSG_BYTES = 160 };

/* The budgets of one handler; tick_limits_default fills the LIMIT_TICK_* defaults of
 * util/limits.h. A plan keeps the limits it was compiled with and applies them. */
struct tick_limits {
    size_t ops;         /* operations in a handler, nested branches included */
    size_t depth;       /* nesting of if/then/else plus and/or/not */
    size_t value_depth; /* nesting of a literal or template value */
    size_t steps;       /* work units of one tick_apply (see tick_apply) */
    size_t array_items; /* elements in an array an operation grows */
    size_t state_nodes; /* JSON values in a state, before and after an apply */
    size_t state_depth; /* nesting of a state, before and after an apply */
};

/* Why a handler did not compile or apply. */
struct tick_error {
    int code;                          /* the returned ERR_* */
    char path[TICK_ERROR_PATH_BYTES];  /* where in the handler: "$" is the handler itself,
                                          "$[1].set.value" a member inside; NUL-terminated */
    char msg[TICK_ERROR_MSG_BYTES];    /* English text, NUL-terminated */
};

struct tick_plan;

/* Fills *lim with the defaults. */
void tick_limits_default(struct tick_limits *lim);

/* Compiles the handler text[0..len) (a JSON array of operations, or one operation object)
 * under lim (NULL: the defaults; copied into the plan). On success *out is a new plan owned by
 * the caller (tick_plan_free). Returns 0; ERR_INVALID (not JSON, unknown operation or
 * predicate, missing or extra member, bad JSONPath); ERR_TOOBIG (text over
 * LIMIT_TICK_HANDLER_BYTES, too many operations, nesting or a path over its limit). On error
 * *out is NULL and *err names the place in the handler. */
int tick_compile(const char *text, size_t len, const struct tick_limits *lim,
                 struct tick_plan **out, struct tick_error *err);

/* Frees a plan; NULL does nothing. */
void tick_plan_free(struct tick_plan *plan);

/* Applies plan to state for one event. state is borrowed and never changed; NULL or JSON null
 * means "no event yet" and starts from {} (j17 aggregates are objects). event is borrowed: the
 * object of json/jpath.h's jpath_event_new, read by $ paths. On success *out_state is a new
 * reference owned by the caller: always an object. Operations run in order, each seeing the
 * state the previous ones left (@ reads it).
 * Returns 0; ERR_INVALID (a type mismatch: e.g. increment of a string, append to an object, a
 * state root that is not an object); ERR_TOOBIG (the step budget, an array, the state's size
 * or depth over its limit). On error *out_state is NULL, state is unchanged, and *err names
 * the operation. A step is one operation run, one value built or copied, or one array element
 * visited. */
int tick_apply(const struct tick_plan *plan, const json_t *state, const json_t *event,
               json_t **out_state, struct tick_error *err);

/* ---- predicates and values on their own (j17 implication conditions, emitted data) ----
 *
 * A struct tick_expr is one compiled predicate or one compiled value (literal, reference or
 * template), with the syntax and the limits of a handler's. Immutable once compiled: any
 * thread may evaluate it concurrently; its owner frees it. */
struct tick_expr;

/* Compiles the predicate j (borrowed for the call) under lim (NULL: the defaults) into *out
 * (owned by the caller: tick_expr_free). jpath_flags (JPATH_ALLOW_*) lets its $ paths name
 * extra context members. Returns 0, ERR_INVALID or ERR_TOOBIG (*err names the place: "$" is
 * the predicate, "$.and[1].equals[0]" a member inside); on error *out is NULL. */
int tick_pred_compile(const json_t *j, const struct tick_limits *lim, unsigned jpath_flags,
                      struct tick_expr **out, struct tick_error *err);

/* Compiles the value j (a literal, a reference, or a template holding references) like
 * tick_pred_compile. */
int tick_value_compile(const json_t *j, const struct tick_limits *lim, unsigned jpath_flags,
                       struct tick_expr **out, struct tick_error *err);

/* True when x is a value without references (a literal): it evaluates the same every time. */
bool tick_expr_is_const(const struct tick_expr *x);

/* Evaluates the predicate x against ctx (borrowed; the state may be NULL). Returns 0 with *out,
 * or ERR_TOOBIG (the step budget of x's limits). */
int tick_expr_test(const struct tick_expr *x, const struct jpath_ctx *ctx, bool *out,
                   struct tick_error *err);

/* Evaluates the value x against ctx into *out (a new reference owned by the caller, a fresh
 * tree; a reference that names nothing is null). Returns 0, or ERR_TOOBIG (the step budget,
 * or a value nested deeper than the state limit); on error *out is NULL. */
int tick_expr_eval(const struct tick_expr *x, const struct jpath_ctx *ctx, json_t **out,
                   struct tick_error *err);

/* Frees x; NULL does nothing. */
void tick_expr_free(struct tick_expr *x);

#endif
