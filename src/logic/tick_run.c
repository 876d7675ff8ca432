/* Runs a compiled Tick plan (tick_int.h) on a private copy of a state. Invariants: every
 * value inserted into the state is a fresh copy counted against the step budget; r->ctx.state
 * always points at r->state; the input state is never written. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logic/tick_int.h"
#include "util/buf.h"
#include "util/errors.h"

/* One apply in progress. */
struct tick_run {
    const struct tick_limits *lim; /* the plan's budgets */
    json_t *state;                 /* owned working copy */
    struct jpath_ctx ctx;          /* event (borrowed) and state (= state) for paths */
    size_t steps;                  /* steps spent */
    const char *where;             /* the running operation's place in the handler */
    struct tick_error *err;        /* where failures go */
};

static int run_if(struct tick_run *r, const struct tick_op *op);
const struct tick_op_spec TICK_IF_SPEC = {"if", 0, run_if};

#define RUN_FAIL(r, code, ...) tick_fail((r)->err, (r)->where, (code), __VA_ARGS__)

static int spend(struct tick_run *r, size_t n)
{
    r->steps += n;
    if (r->steps > r->lim->steps) {
        return RUN_FAIL(r, ERR_TOOBIG, "step budget of %zu exhausted", r->lim->steps);
    }
    return 0;
}

/* Deep-copies v into *out, one step per node, refusing nesting over the state limit. */
static int copy_counted(struct tick_run *r, const json_t *v, size_t depth, json_t **out)
{
    *out = NULL;
    if (depth > r->lim->state_depth) return RUN_FAIL(r, ERR_TOOBIG, "value nested too deep");
    int rc = spend(r, 1);
    if (rc < 0) return rc;
    if (!json_is_object(v) && !json_is_array(v)) {
        *out = json_deep_copy(v);
        return 0;
    }
    json_t *copy = json_is_object(v) ? json_object() : json_array();
    const char *key;
    json_t *child;
    size_t i;
    json_object_foreach ((json_t *)v, key, child) {
        json_t *c;
        rc = copy_counted(r, child, depth + 1, &c);
        if (rc < 0) break;
        json_object_set_new(copy, key, c);
    }
    json_array_foreach (v, i, child) {
        json_t *c;
        if (rc < 0) break;
        rc = copy_counted(r, child, depth + 1, &c);
        if (rc == 0) json_array_append_new(copy, c);
    }
    if (rc < 0) {
        json_decref(copy);
        return rc;
    }
    *out = copy;
    return 0;
}

/* Resolves a value into a new reference: a fresh copy when is_copy (it goes into the state),
 * else possibly shared (it is only read). A missing reference is null. */
static int resolve(struct tick_run *r, const struct tick_value *v, bool is_copy, json_t **out)
{
    *out = NULL;
    const json_t *src = v->kind == TICK_VALUE_CONST ? v->konst : NULL;
    if (v->kind == TICK_VALUE_PATH) {
        src = jpath_get(v->path, &r->ctx);
        if (!src) src = json_null();
    }
    if (src) {
        if (is_copy) return copy_counted(r, src, 0, out);
        *out = json_incref((json_t *)src);
        return spend(r, 1);
    }
    bool is_object = v->kind == TICK_VALUE_OBJECT;
    json_t *built = is_object ? json_object() : json_array();
    int rc = spend(r, 1);
    for (size_t i = 0; rc == 0 && i < v->count; i++) {
        json_t *item;
        rc = resolve(r, &v->items[i], true, &item);
        if (rc == 0 && is_object) json_object_set_new(built, v->keys[i], item);
        if (rc == 0 && !is_object) json_array_append_new(built, item);
    }
    if (rc < 0) {
        json_decref(built);
        return rc;
    }
    *out = built;
    return 0;
}

/* ---- predicates ---- */

/* Equality of JSON values, except that numbers compare by value (1 equals 1.0). */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        return json_number_value(a) == json_number_value(b);
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* Orders two numbers or two strings: sets *cmp and returns true; other pairs are unordered. */
static bool order(const json_t *a, const json_t *b, int *cmp)
{
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a);
        double y = json_number_value(b);
        *cmp = (x > y) - (x < y);
        return true;
    }
    if (json_is_string(a) && json_is_string(b)) {
        *cmp = strcmp(json_string_value(a), json_string_value(b));
        return true;
    }
    return false;
}

static int pred_in(struct tick_run *r, const json_t *needle, const json_t *hay, bool *out)
{
    *out = false;
    size_t i;
    json_t *v;
    json_array_foreach (hay, i, v) {
        int rc = spend(r, 1);
        if (rc < 0) return rc;
        if (values_equal(needle, v)) {
            *out = true;
            return 0;
        }
    }
    return 0;
}

static int compare(struct tick_run *r, const struct tick_pred *p, const json_t *a,
                   const json_t *b, bool *out)
{
    int cmp = 0;
    bool is_ordered = order(a, b, &cmp);
    switch (p->kind) {
    case TICK_PRED_EQUALS: *out = values_equal(a, b); return 0;
    case TICK_PRED_NOT_EQUALS: *out = !values_equal(a, b); return 0;
    case TICK_PRED_GT: *out = is_ordered && cmp > 0; return 0;
    case TICK_PRED_GTE: *out = is_ordered && cmp >= 0; return 0;
    case TICK_PRED_LT: *out = is_ordered && cmp < 0; return 0;
    case TICK_PRED_LTE: *out = is_ordered && cmp <= 0; return 0;
    case TICK_PRED_NOT_IN: {
        int rc = pred_in(r, a, b, out);
        *out = !*out;
        return rc;
    }
    default: return pred_in(r, a, b, out);
    }
}

static int eval_pred(struct tick_run *r, const struct tick_pred *p, bool *out);

static int eval_logic(struct tick_run *r, const struct tick_pred *p, bool *out)
{
    bool is_and = p->kind != TICK_PRED_OR;
    for (size_t i = 0; i < p->count; i++) {
        bool v;
        int rc = eval_pred(r, &p->subs[i], &v);
        if (rc < 0) return rc;
        if (p->kind == TICK_PRED_NOT) v = !v;
        if (v != is_and) {
            *out = v;
            return 0;
        }
    }
    *out = is_and;
    return 0;
}

static int eval_pred(struct tick_run *r, const struct tick_pred *p, bool *out)
{
    *out = false;
    int rc = spend(r, 1);
    if (rc < 0) return rc;
    if (p->kind == TICK_PRED_AND || p->kind == TICK_PRED_OR || p->kind == TICK_PRED_NOT) {
        return eval_logic(r, p, out);
    }
    json_t *a;
    rc = resolve(r, &p->lhs, false, &a);
    if (rc < 0) return rc;
    if (p->kind == TICK_PRED_EXISTS) {
        *out = !json_is_null(a);
        json_decref(a);
        return 0;
    }
    json_t *b;
    rc = resolve(r, &p->rhs, false, &b);
    if (rc == 0) rc = compare(r, p, a, b, out);
    json_decref(a);
    json_decref(b);
    return rc;
}

/* ---- the operations ---- */

static int run_block(struct tick_run *r, const struct tick_block *b);

static int run_if(struct tick_run *r, const struct tick_op *op)
{
    bool is_true;
    int rc = eval_pred(r, op->cond, &is_true);
    if (rc < 0) return rc;
    return run_block(r, is_true ? &op->then_ops : &op->else_ops);
}

/* Stores v (transferred) at the op's target. */
static int put(struct tick_run *r, const struct tick_op *op, json_t *v)
{
    struct jpath_error perr;
    int rc = jpath_set(op->target, &r->state, v, &perr);
    r->ctx.state = r->state;
    if (rc < 0) return RUN_FAIL(r, rc, "target: %s at offset %zu", perr.msg, perr.pos);
    return 0;
}

/* The value at the op's target, or NULL when missing or null. Borrowed from the state. */
static json_t *current(struct tick_run *r, const struct tick_op *op)
{
    json_t *v = jpath_get_in(op->target, r->state);
    return json_is_null(v) ? NULL : v;
}

int tick_run_set(struct tick_run *r, const struct tick_op *op)
{
    json_t *v;
    int rc = resolve(r, &op->value, true, &v);
    return rc < 0 ? rc : put(r, op, v);
}

int tick_run_set_default(struct tick_run *r, const struct tick_op *op)
{
    return current(r, op) ? 0 : tick_run_set(r, op);
}

int tick_run_unset(struct tick_run *r, const struct tick_op *op)
{
    return jpath_unset(op->target, r->state);
}

int tick_run_toggle(struct tick_run *r, const struct tick_op *op)
{
    json_t *cur = current(r, op);
    if (cur && !json_is_boolean(cur)) return RUN_FAIL(r, ERR_INVALID, "target is not a boolean");
    return put(r, op, json_boolean(!cur || json_is_false(cur)));
}

int tick_run_merge(struct tick_run *r, const struct tick_op *op)
{
    json_t *cur = current(r, op);
    if (cur && !json_is_object(cur)) return RUN_FAIL(r, ERR_INVALID, "target is not an object");
    json_t *v;
    int rc = resolve(r, &op->value, true, &v);
    if (rc < 0) return rc;
    if (!json_is_object(v)) {
        json_decref(v);
        return RUN_FAIL(r, ERR_INVALID, "value is not an object");
    }
    if (!cur) return put(r, op, v);
    json_object_update(cur, v);
    json_decref(v);
    return 0;
}

/* The number at the target (0 when missing or null) and the number of the op's value. */
static int numbers(struct tick_run *r, const struct tick_op *op, json_t **cur, json_t **v)
{
    *cur = current(r, op);
    if (*cur && !json_is_number(*cur)) return RUN_FAIL(r, ERR_INVALID, "target is not a number");
    int rc = resolve(r, &op->value, false, v);
    if (rc < 0) return rc;
    if (!json_is_number(*v)) {
        json_decref(*v);
        return RUN_FAIL(r, ERR_INVALID, "value is not a number");
    }
    return 0;
}

/* Adds sign * v to the target; integers stay integers unless they would overflow. */
static int add(struct tick_run *r, const struct tick_op *op, int sign)
{
    json_t *cur;
    json_t *v;
    int rc = numbers(r, op, &cur, &v);
    if (rc < 0) return rc;
    json_int_t a = cur && json_is_integer(cur) ? json_integer_value(cur) : 0;
    json_int_t b = json_is_integer(v) ? json_integer_value(v) : 0;
    json_int_t sum;
    bool is_int = (!cur || json_is_integer(cur)) && json_is_integer(v);
    if (is_int && !(sign > 0 ? __builtin_add_overflow(a, b, &sum)
                             : __builtin_sub_overflow(a, b, &sum))) {
        json_decref(v);
        return put(r, op, json_integer(sum));
    }
    double x = (cur ? json_number_value(cur) : 0) + sign * json_number_value(v);
    json_decref(v);
    if (!isfinite(x)) return RUN_FAIL(r, ERR_INVALID, "result is not a finite number");
    return put(r, op, json_real(x));
}

int tick_run_increment(struct tick_run *r, const struct tick_op *op)
{
    return add(r, op, 1);
}

int tick_run_decrement(struct tick_run *r, const struct tick_op *op)
{
    return add(r, op, -1);
}

/* min (want < 0) or max (want > 0): keeps the smaller or larger of target and value. */
static int extreme(struct tick_run *r, const struct tick_op *op, int want)
{
    json_t *cur;
    json_t *v;
    int rc = numbers(r, op, &cur, &v);
    if (rc < 0) return rc;
    double x = json_number_value(v);
    bool is_better = !cur || (want < 0 ? x < json_number_value(cur) : x > json_number_value(cur));
    json_t *copy = is_better ? json_deep_copy(v) : NULL;
    json_decref(v);
    return is_better ? put(r, op, copy) : 0;
}

int tick_run_min(struct tick_run *r, const struct tick_op *op)
{
    return extreme(r, op, -1);
}

int tick_run_max(struct tick_run *r, const struct tick_op *op)
{
    return extreme(r, op, 1);
}

/* The array at the target, created empty when missing or null. Borrowed from the state. */
static int target_array(struct tick_run *r, const struct tick_op *op, json_t **out)
{
    *out = current(r, op);
    if (*out && !json_is_array(*out)) return RUN_FAIL(r, ERR_INVALID, "target is not an array");
    if (*out) return 0;
    *out = json_array();
    return put(r, op, *out);
}

/* Inserts v (transferred) at the end (or the front) of the target array, within limits. */
static int insert(struct tick_run *r, const struct tick_op *op, json_t *v, bool is_front)
{
    json_t *arr;
    int rc = target_array(r, op, &arr);
    if (rc == 0 && json_array_size(arr) >= r->lim->array_items) {
        rc = RUN_FAIL(r, ERR_TOOBIG, "array over %zu elements", r->lim->array_items);
    }
    if (rc < 0) {
        json_decref(v);
        return rc;
    }
    if (is_front) return json_array_insert_new(arr, 0, v) == 0 ? 0 : ERR(ERR_NOMEM);
    return json_array_append_new(arr, v) == 0 ? 0 : ERR(ERR_NOMEM);
}

static int append_or_prepend(struct tick_run *r, const struct tick_op *op, bool is_front)
{
    json_t *v;
    int rc = resolve(r, &op->value, true, &v);
    return rc < 0 ? rc : insert(r, op, v, is_front);
}

int tick_run_append(struct tick_run *r, const struct tick_op *op)
{
    return append_or_prepend(r, op, false);
}

int tick_run_prepend(struct tick_run *r, const struct tick_op *op)
{
    return append_or_prepend(r, op, true);
}

int tick_run_append_unique(struct tick_run *r, const struct tick_op *op)
{
    json_t *arr;
    int rc = target_array(r, op, &arr);
    json_t *v;
    if (rc == 0) rc = resolve(r, &op->value, true, &v);
    if (rc < 0) return rc;
    bool is_present = false;
    rc = pred_in(r, v, arr, &is_present);
    if (rc < 0 || is_present) {
        json_decref(v);
        return rc;
    }
    return insert(r, op, v, false);
}

int tick_run_concat(struct tick_run *r, const struct tick_op *op)
{
    json_t *v;
    int rc = resolve(r, &op->value, true, &v);
    if (rc < 0) return rc;
    if (!json_is_array(v)) {
        json_decref(v);
        return RUN_FAIL(r, ERR_INVALID, "value is not an array");
    }
    size_t i;
    json_t *item;
    json_array_foreach (v, i, item) {
        rc = insert(r, op, json_incref(item), false);
        if (rc < 0) break;
    }
    json_decref(v);
    return rc;
}

/* The array at the target for a removal or update, or NULL (nothing to do). */
static int existing_array(struct tick_run *r, const struct tick_op *op, json_t **out)
{
    *out = current(r, op);
    if (*out && !json_is_array(*out)) return RUN_FAIL(r, ERR_INVALID, "target is not an array");
    return 0;
}

int tick_run_remove(struct tick_run *r, const struct tick_op *op)
{
    json_t *arr;
    json_t *v = NULL;
    int rc = existing_array(r, op, &arr);
    if (rc == 0 && arr) rc = resolve(r, &op->value, false, &v);
    for (size_t i = json_array_size(arr); rc == 0 && i-- > 0;) {
        rc = spend(r, 1);
        if (rc == 0 && values_equal(json_array_get(arr, i), v)) json_array_remove(arr, i);
    }
    json_decref(v);
    return rc;
}

/* Resolves the values of fields into vals[0..count) (new references; the caller frees). */
static int resolve_fields(struct tick_run *r, const struct tick_fields *f, json_t **vals)
{
    for (size_t i = 0; i < f->count; i++) {
        int rc = resolve(r, &f->values[i], false, &vals[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

static void release(json_t **vals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(vals[i]);
    }
    free(vals);
}

static bool matches(const struct tick_fields *where, json_t *const *vals, const json_t *elem)
{
    for (size_t i = 0; i < where->count; i++) {
        json_t *got = jpath_get_in(where->paths[i], elem);
        if (!values_equal(got ? got : json_null(), vals[i])) return false;
    }
    return true;
}

int tick_run_remove_where(struct tick_run *r, const struct tick_op *op)
{
    json_t *arr;
    int rc = existing_array(r, op, &arr);
    if (rc < 0 || !arr) return rc;
    json_t **vals = xcalloc(op->where.count, sizeof(*vals));
    rc = resolve_fields(r, &op->where, vals);
    for (size_t i = json_array_size(arr); rc == 0 && i-- > 0;) {
        rc = spend(r, 1);
        if (rc == 0 && matches(&op->where, vals, json_array_get(arr, i))) {
            json_array_remove(arr, i);
        }
    }
    release(vals, op->where.count);
    return rc;
}

/* Writes every "set" pair of op into elem. */
static int update_element(struct tick_run *r, const struct tick_op *op, json_t *const *vals,
                          json_t *elem)
{
    for (size_t i = 0; i < op->set.count; i++) {
        json_t *copy;
        int rc = copy_counted(r, vals[i], 0, &copy);
        struct jpath_error perr;
        if (rc == 0) rc = jpath_set(op->set.paths[i], &elem, copy, &perr);
        if (rc == ERR_INVALID) return RUN_FAIL(r, rc, "set: element %s", perr.msg);
        if (rc < 0) return rc;
    }
    return 0;
}

int tick_run_update_where(struct tick_run *r, const struct tick_op *op)
{
    json_t *arr;
    int rc = existing_array(r, op, &arr);
    if (rc < 0 || !arr) return rc;
    size_t n = op->where.count + op->set.count;
    json_t **vals = xcalloc(n, sizeof(*vals));
    rc = resolve_fields(r, &op->where, vals);
    if (rc == 0) rc = resolve_fields(r, &op->set, vals + op->where.count);
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        rc = spend(r, 1);
        json_t *elem = json_array_get(arr, i);
        if (rc == 0 && matches(&op->where, vals, elem)) {
            rc = update_element(r, op, vals + op->where.count, elem);
        }
    }
    release(vals, n);
    return rc;
}

static int run_block(struct tick_run *r, const struct tick_block *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const struct tick_op *op = &b->ops[i];
        r->where = op->where_text;
        int rc = spend(r, 1);
        if (rc == 0) rc = op->spec->run(r, op);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- the state ---- */

/* Counts the nodes of v into *nodes; ERR_TOOBIG past the state limits. */
static int measure(const struct tick_limits *lim, const json_t *v, size_t depth, size_t *nodes)
{
    if (depth > lim->state_depth || ++*nodes > lim->state_nodes) return ERR(ERR_TOOBIG);
    const char *key;
    json_t *child;
    size_t i;
    json_object_foreach ((json_t *)v, key, child) {
        if (measure(lim, child, depth + 1, nodes) < 0) return ERR(ERR_TOOBIG);
    }
    json_array_foreach (v, i, child) {
        if (measure(lim, child, depth + 1, nodes) < 0) return ERR(ERR_TOOBIG);
    }
    return 0;
}

static int check_state(const struct tick_plan *plan, const json_t *s, const char *when,
                       struct tick_error *err)
{
    size_t nodes = 0;
    if (!json_is_object(s)) {
        return tick_fail(err, "$", ERR_INVALID, "the state %s is not an object", when);
    }
    if (measure(&plan->lim, s, 0, &nodes) < 0) {
        return tick_fail(err, "$", ERR_TOOBIG, "the state %s is over %zu values or %zu deep",
                         when, plan->lim.state_nodes, plan->lim.state_depth);
    }
    return 0;
}

int tick_apply(const struct tick_plan *plan, const json_t *state, const json_t *event,
               json_t **out_state, struct tick_error *err)
{
    *out_state = NULL;
    bool is_empty = !state || json_is_null(state);
    int rc = is_empty ? 0 : check_state(plan, state, "before", err);
    if (rc < 0) return rc;
    struct tick_run r = {.lim = &plan->lim, .where = "$", .err = err};
    r.state = is_empty ? json_object() : json_deep_copy(state);
    r.ctx.event = event;
    r.ctx.state = r.state;
    rc = run_block(&r, &plan->root);
    if (rc == 0) rc = check_state(plan, r.state, "after", err);
    if (rc < 0) {
        json_decref(r.state);
        return rc;
    }
    *out_state = r.state;
    return 0;
}

/* ---- predicates and values on their own ---- */

int tick_expr_test(const struct tick_expr *x, const struct jpath_ctx *ctx, bool *out,
                   struct tick_error *err)
{
    *out = false;
    if (!x->is_pred) return tick_fail(err, "$", ERR_INVALID, "not a predicate");
    struct tick_run r = {.lim = &x->lim, .where = "$", .err = err, .ctx = *ctx};
    return eval_pred(&r, &x->pred, out);
}

int tick_expr_eval(const struct tick_expr *x, const struct jpath_ctx *ctx, json_t **out,
                   struct tick_error *err)
{
    *out = NULL;
    if (x->is_pred) return tick_fail(err, "$", ERR_INVALID, "not a value");
    struct tick_run r = {.lim = &x->lim, .where = "$", .err = err, .ctx = *ctx};
    return resolve(&r, &x->value, true, out);
}
