/* Tick handlers: compiles a j17 handler into a tree of operations whose paths are compiled
 * (json/jpath) and whose values are constants or templates, then runs the tree against a copy
 * of a state. Invariants: a plan never changes after tick_compile; no value of a plan or an
 * event is ever linked into a state (everything inserted is a fresh copy), so states never
 * share nodes with plans or events; every apply is bounded by the plan's step budget.
 * The run half lives in tick_run.c (tick_int.h is the shared plan layout). */
#include "logic/tick.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/tick_int.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/limits.h"

/* The operation table: name, what it needs, and the function that runs it. */
static const struct tick_op_spec OPS[] = {
    {"set", TICK_ARG_VALUE, tick_run_set},
    {"unset", 0, tick_run_unset},
    {"merge", TICK_ARG_VALUE, tick_run_merge},
    {"set_default", TICK_ARG_VALUE, tick_run_set_default},
    {"increment", TICK_ARG_BY, tick_run_increment},
    {"decrement", TICK_ARG_BY, tick_run_decrement},
    {"min", TICK_ARG_VALUE, tick_run_min},
    {"max", TICK_ARG_VALUE, tick_run_max},
    {"toggle", 0, tick_run_toggle},
    {"append", TICK_ARG_VALUE, tick_run_append},
    {"prepend", TICK_ARG_VALUE, tick_run_prepend},
    {"append_unique", TICK_ARG_VALUE, tick_run_append_unique},
    {"concat", TICK_ARG_VALUE, tick_run_concat},
    {"remove", TICK_ARG_VALUE, tick_run_remove},
    {"remove_where", TICK_ARG_WHERE, tick_run_remove_where},
    {"update_where", TICK_ARG_WHERE | TICK_ARG_SET, tick_run_update_where},
};

/* The predicate table: name and operand shape. */
static const struct {
    const char *name;
    enum tick_pred_kind kind;
} PREDS[] = {
    {"equals", TICK_PRED_EQUALS}, {"not_equals", TICK_PRED_NOT_EQUALS}, {"gt", TICK_PRED_GT},
    {"gte", TICK_PRED_GTE},       {"lt", TICK_PRED_LT},                 {"lte", TICK_PRED_LTE},
    {"in", TICK_PRED_IN},         {"not_in", TICK_PRED_NOT_IN},         {"exists", TICK_PRED_EXISTS},
    {"and", TICK_PRED_AND},       {"or", TICK_PRED_OR},                 {"not", TICK_PRED_NOT},
};

/* Compiler state: the limits, the operation count and where in the handler we are. */
struct cc {
    const struct tick_limits *lim; /* borrowed from the plan */
    size_t ops;                    /* operations compiled so far */
    char path[TICK_ERROR_PATH_BYTES]; /* JSON path of the member being compiled */
    size_t path_len;               /* bytes of path used */
    struct tick_error *err;        /* where failures go */
    unsigned jpath_flags;          /* JPATH_ALLOW_*: extra $ members (0 in handlers) */
};

void tick_limits_default(struct tick_limits *lim)
{
    lim->ops = LIMIT_TICK_OPS;
    lim->depth = LIMIT_TICK_DEPTH;
    lim->value_depth = LIMIT_TICK_VALUE_DEPTH;
    lim->steps = LIMIT_TICK_STEPS;
    lim->array_items = LIMIT_TICK_ARRAY_ITEMS;
    lim->state_nodes = LIMIT_TICK_STATE_NODES;
    lim->state_depth = LIMIT_TICK_STATE_DEPTH;
}

int tick_fail(struct tick_error *err, const char *path, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        snprintf(err->path, sizeof err->path, "%s", path);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return ERR(code);
}

#define CC_FAIL(c, code, ...) tick_fail((c)->err, (c)->path, (code), __VA_ARGS__)

/* Appends a member (".name") or an index ("[i]") to the error path; returns the old length
 * for pop_path. A path too long for the buffer is cut (it stays a prefix). */
static size_t push_path(struct cc *c, const char *name, size_t index)
{
    size_t old = c->path_len;
    size_t room = sizeof c->path - c->path_len;
    int n = name ? snprintf(c->path + c->path_len, room, ".%s", name)
                 : snprintf(c->path + c->path_len, room, "[%zu]", index);
    c->path_len = n < 0 || (size_t)n >= room ? sizeof c->path - 1 : c->path_len + (size_t)n;
    return old;
}

static void pop_path(struct cc *c, size_t old)
{
    c->path_len = old;
    c->path[old] = '\0';
}

static int compile_path(struct cc *c, json_t *j, enum jpath_mode mode, struct jpath **out)
{
    if (!json_is_string(j)) return CC_FAIL(c, ERR_INVALID, "expected a path string");
    struct jpath_error perr;
    int rc = jpath_compile_ex(json_string_value(j), json_string_length(j), mode,
                              c->jpath_flags, out, &perr);
    if (rc < 0) {
        return CC_FAIL(c, rc, "bad path \"%.64s\" at offset %zu: %s", json_string_value(j),
                       perr.pos, perr.msg);
    }
    return 0;
}

static bool has_ref(json_t *j)
{
    if (json_is_string(j)) return jpath_is_ref(json_string_value(j), json_string_length(j));
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach (j, key, v) {
        if (has_ref(v)) return true;
    }
    json_array_foreach (j, i, v) {
        if (has_ref(v)) return true;
    }
    return false;
}

static int compile_value_at(struct cc *c, json_t *j, size_t depth, struct tick_value *out);

/* A template: an object or array with references somewhere inside. */
static int compile_template(struct cc *c, json_t *j, size_t depth, struct tick_value *out)
{
    bool is_object = json_is_object(j);
    out->kind = is_object ? TICK_VALUE_OBJECT : TICK_VALUE_ARRAY;
    out->count = is_object ? json_object_size(j) : json_array_size(j);
    out->items = xcalloc(out->count ? out->count : 1, sizeof(*out->items));
    out->keys = is_object ? xcalloc(out->count ? out->count : 1, sizeof(*out->keys)) : NULL;
    void *it = is_object ? json_object_iter(j) : NULL;
    for (size_t i = 0; i < out->count; i++) {
        const char *key = is_object ? json_object_iter_key(it) : NULL;
        json_t *v = is_object ? json_object_iter_value(it) : json_array_get(j, i);
        if (is_object) {
            out->keys[i] = xstrndup(key, strlen(key));
            it = json_object_iter_next(j, it);
        }
        size_t old = push_path(c, key, i);
        int rc = compile_value_at(c, v, depth + 1, &out->items[i]);
        if (rc < 0) return rc;
        pop_path(c, old);
    }
    return 0;
}

static int compile_value_at(struct cc *c, json_t *j, size_t depth, struct tick_value *out)
{
    if (depth > c->lim->value_depth) return CC_FAIL(c, ERR_TOOBIG, "value nested too deep");
    if (json_is_string(j) && has_ref(j)) {
        out->kind = TICK_VALUE_PATH;
        return compile_path(c, j, JPATH_VALUE, &out->path);
    }
    if ((json_is_object(j) || json_is_array(j)) && has_ref(j)) {
        return compile_template(c, j, depth, out);
    }
    out->kind = TICK_VALUE_CONST;
    out->konst = json_incref(j);
    return 0;
}

/* Compiles member name of args (required or not) as a value. */
static int compile_member_value(struct cc *c, json_t *args, const char *name,
                                struct tick_value *out)
{
    json_t *j = json_object_get(args, name);
    if (!j) return CC_FAIL(c, ERR_INVALID, "missing \"%s\"", name);
    size_t old = push_path(c, name, 0);
    int rc = compile_value_at(c, j, 0, out);
    if (rc < 0) return rc;
    pop_path(c, old);
    return 0;
}

static int compile_pred(struct cc *c, json_t *j, size_t depth, struct tick_pred *out);

/* and/or: an array of predicates; not: a predicate or an array of one. */
static int compile_pred_list(struct cc *c, json_t *j, size_t depth, struct tick_pred *out)
{
    if (out->kind == TICK_PRED_NOT && json_is_object(j)) {
        out->count = 1;
        out->subs = xcalloc(1, sizeof(*out->subs));
        return compile_pred(c, j, depth + 1, &out->subs[0]);
    }
    size_t n = json_array_size(j);
    if (!json_is_array(j) || n == 0 || (out->kind == TICK_PRED_NOT && n != 1)) {
        return CC_FAIL(c, ERR_INVALID, "expected %s", out->kind == TICK_PRED_NOT
                                                          ? "a predicate"
                                                          : "a non-empty array of predicates");
    }
    out->count = n;
    out->subs = xcalloc(n, sizeof(*out->subs));
    for (size_t i = 0; i < n; i++) {
        size_t old = push_path(c, NULL, i);
        int rc = compile_pred(c, json_array_get(j, i), depth + 1, &out->subs[i]);
        if (rc < 0) return rc;
        pop_path(c, old);
    }
    return 0;
}

/* Comparisons: [lhs, rhs]; exists: a value or an array of one. */
static int compile_operands(struct cc *c, json_t *j, struct tick_pred *out)
{
    bool is_exists = out->kind == TICK_PRED_EXISTS;
    if (is_exists && !json_is_array(j)) return compile_value_at(c, j, 0, &out->lhs);
    if (!json_is_array(j) || json_array_size(j) != (is_exists ? 1u : 2u)) {
        return CC_FAIL(c, ERR_INVALID, is_exists ? "expected a path or [path]"
                                                 : "expected [left, right]");
    }
    size_t old = push_path(c, NULL, 0);
    int rc = compile_value_at(c, json_array_get(j, 0), 0, &out->lhs);
    if (rc < 0) return rc;
    pop_path(c, old);
    if (is_exists) return 0;
    old = push_path(c, NULL, 1);
    rc = compile_value_at(c, json_array_get(j, 1), 0, &out->rhs);
    if (rc < 0) return rc;
    pop_path(c, old);
    return 0;
}

static int compile_pred(struct cc *c, json_t *j, size_t depth, struct tick_pred *out)
{
    if (depth > c->lim->depth) return CC_FAIL(c, ERR_TOOBIG, "conditions nested too deep");
    if (!json_is_object(j) || json_object_size(j) != 1) {
        return CC_FAIL(c, ERR_INVALID, "a predicate is an object with one member");
    }
    const char *name = json_object_iter_key(json_object_iter(j));
    json_t *arg = json_object_iter_value(json_object_iter(j));
    size_t i = 0;
    while (i < sizeof PREDS / sizeof *PREDS && strcmp(PREDS[i].name, name) != 0) i++;
    if (i == sizeof PREDS / sizeof *PREDS) {
        return CC_FAIL(c, ERR_INVALID, "unknown predicate \"%.40s\"", name);
    }
    out->kind = PREDS[i].kind;
    size_t old = push_path(c, name, 0);
    bool is_logic = out->kind == TICK_PRED_AND || out->kind == TICK_PRED_OR ||
                    out->kind == TICK_PRED_NOT;
    int rc = is_logic ? compile_pred_list(c, arg, depth, out) : compile_operands(c, arg, out);
    if (rc < 0) return rc;
    pop_path(c, old);
    return 0;
}

/* "where" or "set" of remove_where / update_where: {element path: value, ...}. */
static int compile_fields(struct cc *c, json_t *args, const char *name, struct tick_fields *out)
{
    json_t *j = json_object_get(args, name);
    if (!json_is_object(j) || json_object_size(j) == 0) {
        return CC_FAIL(c, ERR_INVALID, "\"%s\" must be a non-empty object", name);
    }
    size_t old = push_path(c, name, 0);
    out->count = json_object_size(j);
    out->paths = xcalloc(out->count, sizeof(*out->paths));
    out->values = xcalloc(out->count, sizeof(*out->values));
    void *it = json_object_iter(j);
    for (size_t i = 0; i < out->count; i++, it = json_object_iter_next(j, it)) {
        const char *key = json_object_iter_key(it);
        size_t inner = push_path(c, key, 0);
        struct jpath_error perr;
        int rc = jpath_compile(key, strlen(key), JPATH_TARGET, &out->paths[i], &perr);
        if (rc < 0) return CC_FAIL(c, rc, "bad element path: %s", perr.msg);
        if (jpath_segment_count(out->paths[i]) == 0) {
            return CC_FAIL(c, ERR_INVALID, "an element path names a member");
        }
        rc = compile_value_at(c, json_object_iter_value(it), 0, &out->values[i]);
        if (rc < 0) return rc;
        pop_path(c, inner);
    }
    pop_path(c, old);
    return 0;
}

static bool is_known_arg(const char *key, unsigned args)
{
    return strcmp(key, "target") == 0 || (strcmp(key, "value") == 0 && (args & TICK_ARG_VALUE)) ||
           (strcmp(key, "by") == 0 && (args & TICK_ARG_BY)) ||
           (strcmp(key, "where") == 0 && (args & TICK_ARG_WHERE)) ||
           (strcmp(key, "set") == 0 && (args & TICK_ARG_SET));
}

static int compile_args(struct cc *c, json_t *args, struct tick_op *op)
{
    unsigned want = op->spec->args;
    const char *key;
    json_t *v;
    if (!json_is_object(args)) return CC_FAIL(c, ERR_INVALID, "arguments must be an object");
    json_object_foreach (args, key, v) {
        if (!is_known_arg(key, want)) return CC_FAIL(c, ERR_INVALID, "unknown member \"%.40s\"", key);
    }
    json_t *target = json_object_get(args, "target");
    if (!target) return CC_FAIL(c, ERR_INVALID, "missing \"target\"");
    size_t old = push_path(c, "target", 0);
    int rc = compile_path(c, target, JPATH_TARGET, &op->target);
    if (rc < 0) return rc;
    pop_path(c, old);
    if (want & TICK_ARG_VALUE) rc = compile_member_value(c, args, "value", &op->value);
    if (rc == 0 && (want & TICK_ARG_BY) && json_object_get(args, "by")) {
        rc = compile_member_value(c, args, "by", &op->value);
    } else if (rc == 0 && (want & TICK_ARG_BY)) {
        op->value.kind = TICK_VALUE_CONST;
        op->value.konst = json_integer(1);
    }
    if (rc == 0 && (want & TICK_ARG_WHERE)) rc = compile_fields(c, args, "where", &op->where);
    if (rc == 0 && (want & TICK_ARG_SET)) rc = compile_fields(c, args, "set", &op->set);
    return rc;
}

static int compile_block(struct cc *c, json_t *j, size_t depth, struct tick_block *out);

static int compile_if(struct cc *c, json_t *j, size_t depth, struct tick_op *op)
{
    const char *key;
    json_t *v;
    json_object_foreach (j, key, v) {
        if (strcmp(key, "if") && strcmp(key, "then") && strcmp(key, "else")) {
            return CC_FAIL(c, ERR_INVALID, "unknown member \"%.40s\" beside \"if\"", key);
        }
    }
    if (!json_object_get(j, "then")) return CC_FAIL(c, ERR_INVALID, "\"if\" without \"then\"");
    op->cond = xcalloc(1, sizeof(*op->cond));
    size_t old = push_path(c, "if", 0);
    int rc = compile_pred(c, json_object_get(j, "if"), depth + 1, op->cond);
    if (rc < 0) return rc;
    pop_path(c, old);
    push_path(c, "then", 0);
    rc = compile_block(c, json_object_get(j, "then"), depth + 1, &op->then_ops);
    if (rc < 0) return rc;
    pop_path(c, old);
    if (!json_object_get(j, "else")) return 0;
    push_path(c, "else", 0);
    rc = compile_block(c, json_object_get(j, "else"), depth + 1, &op->else_ops);
    if (rc < 0) return rc;
    pop_path(c, old);
    return 0;
}

static int compile_op(struct cc *c, json_t *j, size_t depth, struct tick_op *op)
{
    if (++c->ops > c->lim->ops) return CC_FAIL(c, ERR_TOOBIG, "more than %zu operations", c->lim->ops);
    op->where_text = xstrndup(c->path, c->path_len);
    if (!json_is_object(j)) return CC_FAIL(c, ERR_INVALID, "an operation is an object");
    if (json_object_get(j, "if")) {
        if (depth + 1 > c->lim->depth) return CC_FAIL(c, ERR_TOOBIG, "if nested too deep");
        op->spec = &TICK_IF_SPEC;
        return compile_if(c, j, depth, op);
    }
    if (json_object_size(j) != 1) {
        return CC_FAIL(c, ERR_INVALID, "an operation is an object with one member");
    }
    const char *name = json_object_iter_key(json_object_iter(j));
    for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++) {
        if (strcmp(OPS[i].name, name) == 0) op->spec = &OPS[i];
    }
    if (!op->spec) return CC_FAIL(c, ERR_INVALID, "unknown operation \"%.40s\"", name);
    size_t old = push_path(c, name, 0);
    int rc = compile_args(c, json_object_iter_value(json_object_iter(j)), op);
    if (rc < 0) return rc;
    pop_path(c, old);
    return 0;
}

/* A block: an array of operations, or one operation object. */
static int compile_block(struct cc *c, json_t *j, size_t depth, struct tick_block *out)
{
    if (json_is_object(j)) {
        out->count = 1;
        out->ops = xcalloc(1, sizeof(*out->ops));
        return compile_op(c, j, depth, &out->ops[0]);
    }
    if (!json_is_array(j)) return CC_FAIL(c, ERR_INVALID, "expected an array of operations");
    out->count = json_array_size(j);
    out->ops = xcalloc(out->count ? out->count : 1, sizeof(*out->ops));
    for (size_t i = 0; i < out->count; i++) {
        size_t old = push_path(c, NULL, i);
        int rc = compile_op(c, json_array_get(j, i), depth, &out->ops[i]);
        if (rc < 0) return rc;
        pop_path(c, old);
    }
    return 0;
}

int tick_compile(const char *text, size_t len, const struct tick_limits *lim,
                 struct tick_plan **out, struct tick_error *err)
{
    *out = NULL;
    if (len > LIMIT_TICK_HANDLER_BYTES) {
        return tick_fail(err, "$", ERR_TOOBIG, "handler longer than %d bytes",
                         LIMIT_TICK_HANDLER_BYTES);
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc) {
        return tick_fail(err, "$", ERR_INVALID, "not JSON (line %d, column %d): %s", jerr.line,
                         jerr.column, jerr.text);
    }
    struct tick_plan *plan = xcalloc(1, sizeof(*plan));
    if (lim) {
        plan->lim = *lim;
    } else {
        tick_limits_default(&plan->lim);
    }
    struct cc c = {.lim = &plan->lim, .path = "$", .path_len = 1, .err = err};
    int rc = compile_block(&c, doc, 0, &plan->root);
    json_decref(doc);
    if (rc < 0) {
        tick_plan_free(plan);
        return rc;
    }
    *out = plan;
    return 0;
}

static void value_fini(struct tick_value *v)
{
    json_decref(v->konst);
    jpath_free(v->path);
    for (size_t i = 0; i < v->count && v->items; i++) {
        value_fini(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

static void pred_fini(struct tick_pred *p)
{
    value_fini(&p->lhs);
    value_fini(&p->rhs);
    for (size_t i = 0; i < p->count; i++) {
        pred_fini(&p->subs[i]);
    }
    free(p->subs);
}

static void fields_fini(struct tick_fields *f)
{
    for (size_t i = 0; i < f->count; i++) {
        if (f->paths) jpath_free(f->paths[i]);
        if (f->values) value_fini(&f->values[i]);
    }
    free(f->paths);
    free(f->values);
}

void tick_block_fini(struct tick_block *b)
{
    for (size_t i = 0; i < b->count; i++) {
        struct tick_op *op = &b->ops[i];
        free(op->where_text);
        jpath_free(op->target);
        value_fini(&op->value);
        fields_fini(&op->where);
        fields_fini(&op->set);
        if (op->cond) pred_fini(op->cond);
        free(op->cond);
        tick_block_fini(&op->then_ops);
        tick_block_fini(&op->else_ops);
    }
    free(b->ops);
}

void tick_plan_free(struct tick_plan *plan)
{
    if (!plan) return;
    tick_block_fini(&plan->root);
    free(plan);
}

/* ---- predicates and values on their own ---- */

static int compile_expr(const json_t *j, const struct tick_limits *lim, unsigned jpath_flags,
                        bool is_pred, struct tick_expr **out, struct tick_error *err)
{
    *out = NULL;
    struct tick_expr *x = xcalloc(1, sizeof(*x));
    x->is_pred = is_pred;
    if (lim) {
        x->lim = *lim;
    } else {
        tick_limits_default(&x->lim);
    }
    struct cc c = {.lim = &x->lim, .path = "$", .path_len = 1, .err = err,
                   .jpath_flags = jpath_flags};
    int rc = is_pred ? compile_pred(&c, (json_t *)j, 0, &x->pred)
                     : compile_value_at(&c, (json_t *)j, 0, &x->value);
    if (rc < 0) {
        tick_expr_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int tick_pred_compile(const json_t *j, const struct tick_limits *lim, unsigned jpath_flags,
                      struct tick_expr **out, struct tick_error *err)
{
    return compile_expr(j, lim, jpath_flags, true, out, err);
}

int tick_value_compile(const json_t *j, const struct tick_limits *lim, unsigned jpath_flags,
                       struct tick_expr **out, struct tick_error *err)
{
    return compile_expr(j, lim, jpath_flags, false, out, err);
}

bool tick_expr_is_const(const struct tick_expr *x)
{
    return !x->is_pred && x->value.kind == TICK_VALUE_CONST;
}

void tick_expr_free(struct tick_expr *x)
{
    if (!x) return;
    pred_fini(&x->pred);
    value_fini(&x->value);
    free(x);
}
