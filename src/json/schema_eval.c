/* JSON Schema validation over a compiled schema (schema_int.h): the instance is parsed into
 * a tape once (json/jdoc.h), then each subschema node is evaluated against a tape position.
 * Nothing in the schema is written; per-call state lives in struct vctx (on the stack) and
 * in the result's scratch (reused across calls, so a warmed-up result allocates nothing).
 *
 * Annotations: unevaluatedProperties/Items need to know which members/items the keywords of
 * passing subschemas at the same instance location evaluated. When the schema uses them
 * (schema.has_uneval), evaluation carries a bitset per instance location (struct evald, in
 * scratch memory used as a stack); an applicator whose subschema may fail without failing
 * the parent (anyOf, oneOf, if, not) gives it a fresh set and merges it only on success.
 *
 * Errors: the first failing keyword outside such speculative subschemas is reported, with
 * the instance location as a JSON Pointer. Limits (evaluation depth, regex budgets) are fatal
 * and reported whatever the context. */
#include "json/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jdoc.h"
#include "json/schema_format.h"
#include "json/schema_int.h"
#include "util/errors.h"

/* Memory a result keeps between validations. */
struct schema_scratch {
    struct jdoc inst;       /* the instance's tape */
    pcre2_match_data *md;   /* PCRE2 match data (one pair: matches are yes/no) */
    uint64_t *bits;         /* evaluated-sets stack */
    uint32_t bits_len;      /* words in use */
    uint32_t bits_cap;      /* words allocated */
};

/* A set of evaluated members or items of one instance container: bits[off..] (words). */
struct evald {
    uint32_t off;   /* first word in scratch.bits */
    uint32_t nbits; /* members or items of the container */
};

/* State of one validation. */
struct vctx {
    const struct schema *s;      /* compiled schema */
    const struct jdoc *d;        /* instance tape */
    struct schema_result *r;     /* where the first error goes */
    struct schema_scratch *x;    /* reusable memory */
    int rc;                      /* a fatal error (limit), stops everything */
    int quiet;                   /* > 0: inside a speculative subschema, errors not kept */
    int depth;                   /* nested evaluations */
    int path_len;                /* instance locations on path */
    uint64_t steps;              /* evaluations and comparisons so far */
    uint64_t max_steps;          /* budget (SCHEMA_EVAL_STEPS_*) */
    int scope_len;               /* resources on scope */
    uint32_t path[SCHEMA_MAX_INSTANCE_DEPTH + 2]; /* tape indexes from the root down */
    int32_t scope[SCHEMA_MAX_EVAL_DEPTH + 1];     /* dynamic scope: resources entered */
};

static bool eval(struct vctx *c, int32_t sn, uint32_t i, struct evald *ev);

/* ---------------------------------------------------------------- errors */

static void render_pointer(struct vctx *c)
{
    struct buf *out = &c->r->pointer;
    buf_reset(out);
    buf_reserve(out, 0);
    for (int k = 1; k < c->path_len; k++) {
        uint32_t parent = c->path[k - 1];
        uint32_t child = c->path[k];
        buf_addc(out, '/');
        if (c->d->nodes[parent].kind == JDOC_OBJECT) {
            const struct jdoc_node *key = &c->d->nodes[child - 1];
            for (uint32_t j = 0; j < key->count; j++) {
                char ch = key->str[j];
                buf_adds(out, ch == '~' ? "~0" : ch == '/' ? "~1" : (char[]){ch, 0});
                if (ch == '\0') {
                    buf_addc(out, '\0'); /* a NUL in a name stays in the pointer */
                }
            }
            continue;
        }
        uint32_t at = parent + 1;
        uint64_t idx = 0;
        while (at != child) {
            at = c->d->nodes[at].next;
            idx++;
        }
        buf_add_u64(out, idx);
    }
}

static void record(struct vctx *c, const char *kw, const char *msg)
{
    c->r->keyword = kw;
    snprintf(c->r->message, sizeof c->r->message, "%s", msg);
    render_pointer(c);
}

/* Reports a failed keyword (unless speculative or one is already reported); false. */
static bool fail(struct vctx *c, const char *kw, const char *msg)
{
    if (!c->quiet && c->rc == 0 && !c->r->keyword[0]) {
        record(c, kw, msg);
    }
    return false;
}

/* Reports a limit: stops the validation with rc; false. */
static bool fatal(struct vctx *c, int rc, const char *kw, const char *msg)
{
    if (c->rc == 0) {
        c->rc = rc;
        record(c, kw, msg);
    }
    return false;
}

/* ---------------------------------------------------------------- evaluated sets */

static struct evald set_new(struct vctx *c, uint32_t nbits)
{
    struct schema_scratch *x = c->x;
    uint32_t words = (nbits + 63) / 64;
    if (x->bits_len + words > x->bits_cap) {
        uint32_t cap = x->bits_cap ? x->bits_cap : 64;
        while (cap < x->bits_len + words) {
            cap *= 2;
        }
        x->bits = xrealloc(x->bits, (size_t)cap * sizeof(*x->bits));
        x->bits_cap = cap;
    }
    struct evald e = {x->bits_len, nbits};
    if (words) {
        memset(x->bits + e.off, 0, (size_t)words * sizeof(*x->bits));
    }
    x->bits_len += words;
    return e;
}

static void set_mark(struct vctx *c, struct evald *e, uint32_t k)
{
    if (e) {
        c->x->bits[e->off + k / 64] |= 1ull << (k % 64);
    }
}

static bool set_has(const struct vctx *c, const struct evald *e, uint32_t k)
{
    return (c->x->bits[e->off + k / 64] >> (k % 64)) & 1;
}

static void set_merge(struct vctx *c, struct evald *into, const struct evald *from)
{
    for (uint32_t w = 0; into && w < (into->nbits + 63) / 64; w++) {
        c->x->bits[into->off + w] |= c->x->bits[from->off + w];
    }
}

/* Evaluates sn at i speculatively-or-not with a fresh set merged into ev on success. */
static bool eval_fresh(struct vctx *c, int32_t sn, uint32_t i, struct evald *ev)
{
    if (!ev) {
        return eval(c, sn, i, NULL);
    }
    uint32_t mark = c->x->bits_len;
    struct evald tmp = set_new(c, ev->nbits);
    bool ok = eval(c, sn, i, &tmp);
    if (ok) {
        set_merge(c, ev, &tmp);
    }
    c->x->bits_len = mark;
    return ok;
}

/* Evaluates sn at child instance position ci (a member value or an item). */
static bool eval_child(struct vctx *c, int32_t sn, uint32_t ci)
{
    if (c->path_len > SCHEMA_MAX_INSTANCE_DEPTH) {
        return fatal(c, ERR_TOOBIG, "", "instance deeper than SCHEMA_MAX_INSTANCE_DEPTH");
    }
    c->path[c->path_len++] = ci;
    bool ok = eval(c, sn, ci, NULL);
    c->path_len--;
    return ok;
}

/* ---------------------------------------------------------------- value keywords */

static bool check_type(struct vctx *c, const struct snode *n, const struct jdoc_node *v)
{
    static const uint8_t kind_bits[] = {
        [JDOC_NULL] = 1 << T_NULL,      [JDOC_FALSE] = 1 << T_BOOLEAN,
        [JDOC_TRUE] = 1 << T_BOOLEAN,   [JDOC_NUMBER] = 1 << T_NUMBER,
        [JDOC_STRING] = 1 << T_STRING,  [JDOC_ARRAY] = 1 << T_ARRAY,
        [JDOC_OBJECT] = 1 << T_OBJECT,
    };
    unsigned have = kind_bits[v->kind];
    if (v->kind == JDOC_NUMBER && jdoc_num_is_integer(&v->num)) {
        have |= 1 << T_INTEGER;
    }
    if (n->types & (1 << T_NUMBER) && v->kind == JDOC_NUMBER) {
        return true;
    }
    return (n->types & have) ? true : fail(c, "type", "wrong type");
}

static bool check_enum(struct vctx *c, const struct snode *n, uint32_t i)
{
    if (n->has & (1u << KW_CONST) && !jdoc_equal(c->d, i, n->const_val.doc, n->const_val.node)) {
        return fail(c, "const", "not the constant value");
    }
    if (!(n->has & (1u << KW_ENUM))) {
        return true;
    }
    for (uint32_t k = 0; k < n->enum_vals.count; k++) {
        const struct sval *v = &c->s->vals[n->enum_vals.start + k];
        if (jdoc_equal(c->d, i, v->doc, v->node)) {
            return true;
        }
    }
    return fail(c, "enum", "not one of the allowed values");
}

static bool check_number(struct vctx *c, const struct snode *n, const struct jdoc_num *x)
{
    uint32_t has = n->has;
    if (has & (1u << KW_MAXIMUM) && jdoc_num_cmp(x, &n->maximum) > 0) {
        return fail(c, "maximum", "greater than the maximum");
    }
    if (has & (1u << KW_XMAXIMUM) && jdoc_num_cmp(x, &n->xmaximum) >= 0) {
        return fail(c, "exclusiveMaximum", "not less than the exclusive maximum");
    }
    if (has & (1u << KW_MINIMUM) && jdoc_num_cmp(x, &n->minimum) < 0) {
        return fail(c, "minimum", "less than the minimum");
    }
    if (has & (1u << KW_XMINIMUM) && jdoc_num_cmp(x, &n->xminimum) <= 0) {
        return fail(c, "exclusiveMinimum", "not greater than the exclusive minimum");
    }
    if (has & (1u << KW_MULTIPLE_OF) && !jdoc_num_is_multiple(x, &n->multiple_of)) {
        return fail(c, "multipleOf", "not a multiple of multipleOf");
    }
    return true;
}

/* 1 when regex re matches s[0..len), 0 when not, -1 after a fatal limit. */
static int regex_match(struct vctx *c, uint32_t re, const char *s, uint32_t len)
{
    if (!c->x->md) {
        c->x->md = pcre2_match_data_create(1, NULL);
    }
    int rc = pcre2_match(c->s->regexes[re], (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK,
                         c->x->md, c->s->mctx);
    if (rc >= 0) {
        return 1;
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
        return 0;
    }
    fatal(c, ERR_TOOBIG, "pattern", "regex match over its limits (SCHEMA_REGEX_*)");
    return -1;
}

static bool check_string(struct vctx *c, const struct snode *n, const struct jdoc_node *v)
{
    uint32_t has = n->has;
    if (has & ((1u << KW_MAX_LENGTH) | (1u << KW_MIN_LENGTH))) {
        uint64_t chars = 0;
        for (uint32_t k = 0; k < v->count; k++) {
            chars += ((unsigned char)v->str[k] & 0xc0) != 0x80;
        }
        if (chars > n->max_length) {
            return fail(c, "maxLength", "longer than maxLength");
        }
        if (chars < n->min_length) {
            return fail(c, "minLength", "shorter than minLength");
        }
    }
    if (has & (1u << KW_PATTERN)) {
        int m = regex_match(c, n->pattern, v->str, v->count);
        if (m <= 0) {
            return m < 0 ? false : fail(c, "pattern", "does not match the pattern");
        }
    }
    if (has & (1u << KW_FORMAT) && !schema_format_check(n->format, v->str, v->count)) {
        return fail(c, "format", schema_format_message(n->format));
    }
    return true;
}

/* ---------------------------------------------------------------- arrays */

static bool check_unique(struct vctx *c, uint32_t i)
{
    const struct jdoc *d = c->d;
    for (uint32_t a = i + 1; a < d->nodes[i].next; a = d->nodes[a].next) {
        for (uint32_t b = d->nodes[a].next; b < d->nodes[i].next; b = d->nodes[b].next) {
            if (++c->steps > c->max_steps) {
                return fatal(c, ERR_TOOBIG, "uniqueItems",
                             "evaluation over its budget (SCHEMA_EVAL_STEPS_*)");
            }
            if (jdoc_equal(d, a, d, b)) {
                return fail(c, "uniqueItems", "items are not unique");
            }
        }
    }
    return true;
}

/* contains with min/maxContains; matching items are evaluated. */
static bool check_contains(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    uint64_t matched = 0;
    uint32_t at = i + 1;
    c->quiet++;
    for (uint32_t k = 0; k < c->d->nodes[i].count; k++, at = c->d->nodes[at].next) {
        if (eval_child(c, n->contains, at)) {
            matched++;
            set_mark(c, ev, k);
        }
    }
    c->quiet--;
    if (c->rc) {
        return false;
    }
    if (matched < n->min_contains) {
        return fail(c, n->min_contains == 1 && !(n->has & (1u << KW_MIN_CONTAINS))
                           ? "contains" : "minContains",
                    "too few items match contains");
    }
    if (n->has & (1u << KW_MAX_CONTAINS) && matched > n->max_contains) {
        return fail(c, "maxContains", "too many items match contains");
    }
    return true;
}

static bool check_array(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    const struct jdoc_node *v = &c->d->nodes[i];
    if (v->count > n->max_items) {
        return fail(c, "maxItems", "more items than maxItems");
    }
    if (v->count < n->min_items) {
        return fail(c, "minItems", "fewer items than minItems");
    }
    if (n->unique_items && !check_unique(c, i)) {
        return false;
    }
    uint32_t at = i + 1;
    uint32_t k = 0;
    for (; k < v->count && k < n->prefix_items.count; k++, at = c->d->nodes[at].next) {
        if (!eval_child(c, c->s->subs[n->prefix_items.start + k], at)) {
            return false;
        }
        set_mark(c, ev, k);
    }
    for (; n->items >= 0 && k < v->count; k++, at = c->d->nodes[at].next) {
        if (!eval_child(c, n->items, at)) {
            return false;
        }
        set_mark(c, ev, k);
    }
    return n->contains < 0 || check_contains(c, n, i, ev);
}

/* ---------------------------------------------------------------- objects */

static const struct sprop *find_prop(const struct vctx *c, struct srange r,
                                     const struct jdoc_node *key)
{
    for (uint32_t k = 0; k < r.count; k++) {
        const struct sprop *p = &c->s->props[r.start + k];
        if (p->len == key->count && memcmp(p->name, key->str, key->count) == 0) {
            return p;
        }
    }
    return NULL;
}

static bool check_required(struct vctx *c, const struct snode *n, uint32_t i)
{
    for (uint32_t k = 0; k < n->required.count; k++) {
        const struct sprop *p = &c->s->props[n->required.start + k];
        if (jdoc_member(c->d, i, p->name, p->len) < 0) {
            char msg[SCHEMA_MAX_MESSAGE_BYTES];
            snprintf(msg, sizeof msg, "missing required property \"%.*s\"",
                     (int)(p->len > 100 ? 100 : p->len), p->name);
            return fail(c, "required", msg);
        }
    }
    for (uint32_t k = 0; k < n->dep_required.count; k++) {
        const struct sprop *p = &c->s->props[n->dep_required.start + k];
        if (jdoc_member(c->d, i, p->name, p->len) < 0) {
            continue;
        }
        for (uint32_t j = 0; j < p->names.count; j++) {
            const struct sprop *q = &c->s->props[p->names.start + j];
            if (jdoc_member(c->d, i, q->name, q->len) < 0) {
                return fail(c, "dependentRequired", "missing a dependent required property");
            }
        }
    }
    return true;
}

/* The schemas that apply to one member (properties, patternProperties, else
 * additionalProperties); marks it evaluated when any applies. */
static bool check_member(struct vctx *c, const struct snode *n, uint32_t key, uint32_t m,
                         struct evald *ev)
{
    const struct jdoc_node *kn = &c->d->nodes[key];
    bool applied = false;
    const struct sprop *p = find_prop(c, n->props, kn);
    if (p) {
        if (!eval_child(c, p->node, key + 1)) {
            return false;
        }
        applied = true;
    }
    for (uint32_t k = 0; k < n->pattern_props.count; k++) {
        const struct spat *pt = &c->s->pats[n->pattern_props.start + k];
        int hit = regex_match(c, pt->re, kn->str, kn->count);
        if (hit < 0 || (hit && !eval_child(c, pt->node, key + 1))) {
            return false;
        }
        applied |= hit;
    }
    if (!applied && n->addl_props >= 0) {
        if (!eval_child(c, n->addl_props, key + 1)) {
            return false;
        }
        applied = true;
    }
    if (applied) {
        set_mark(c, ev, m);
    }
    return true;
}

static bool check_prop_names(struct vctx *c, const struct snode *n, uint32_t key)
{
    /* The name is the instance here: evaluate it as a string value on the tape. */
    c->path[c->path_len++] = key + 1; /* report at the member */
    bool ok = eval(c, n->prop_names, key, NULL);
    c->path_len--;
    return ok;
}

static bool check_object(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    const struct jdoc_node *v = &c->d->nodes[i];
    if (v->count > n->max_props) {
        return fail(c, "maxProperties", "more properties than maxProperties");
    }
    if (v->count < n->min_props) {
        return fail(c, "minProperties", "fewer properties than minProperties");
    }
    if (!check_required(c, n, i)) {
        return false;
    }
    bool any = n->props.count || n->pattern_props.count || n->addl_props >= 0;
    uint32_t key = i + 1;
    for (uint32_t m = 0; m < v->count; m++, key = c->d->nodes[key + 1].next) {
        if (n->prop_names >= 0 && !check_prop_names(c, n, key)) {
            return false;
        }
        if (any && !check_member(c, n, key, m, ev)) {
            return false;
        }
        const struct sprop *dep = find_prop(c, n->dep_schemas, &c->d->nodes[key]);
        if (dep && !eval(c, dep->node, i, ev)) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- applicators */

static bool check_any_of(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    bool ok = false;
    c->quiet++;
    for (uint32_t k = 0; k < n->any_of.count && !c->rc; k++) {
        ok |= eval_fresh(c, c->s->subs[n->any_of.start + k], i, ev);
        if (ok && !ev) {
            break;
        }
    }
    c->quiet--;
    return ok || fail(c, "anyOf", "matches none of anyOf");
}

static bool check_one_of(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    uint32_t passed = 0;
    c->quiet++;
    for (uint32_t k = 0; k < n->one_of.count && !c->rc && passed < 2; k++) {
        passed += eval_fresh(c, c->s->subs[n->one_of.start + k], i, ev);
    }
    c->quiet--;
    if (passed == 1) {
        return true;
    }
    return fail(c, "oneOf", passed ? "matches more than one of oneOf" : "matches none of oneOf");
}

static bool check_if(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    c->quiet++;
    bool cond = eval_fresh(c, n->if_s, i, ev);
    c->quiet--;
    if (c->rc) {
        return false;
    }
    int32_t branch = cond ? n->then_s : n->else_s;
    return branch < 0 || eval(c, branch, i, ev);
}

/* The resource-level target of $dynamicRef: the outermost resource in scope with a
 * $dynamicAnchor of that name, else the statically resolved target. */
static int32_t dynamic_target(const struct vctx *c, const struct snode *n)
{
    const struct sprop *name = &c->s->props[n->dynref_name];
    for (int k = 0; k < c->scope_len; k++) {
        for (uint32_t j = 0; j < c->s->dyn_count; j++) {
            const struct sdyn *dy = &c->s->dyns[j];
            if (dy->res == c->scope[k] && dy->len == name->len &&
                memcmp(dy->name, name->name, name->len) == 0) {
                return dy->node;
            }
        }
    }
    return n->dynref;
}

static bool check_in_place(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    if (n->ref >= 0 && !eval(c, n->ref, i, ev)) {
        return false;
    }
    if (n->dynref >= 0) {
        int32_t t = n->dynref_name >= 0 ? dynamic_target(c, n) : n->dynref;
        if (!eval(c, t, i, ev)) {
            return false;
        }
    }
    for (uint32_t k = 0; k < n->all_of.count; k++) {
        if (!eval(c, c->s->subs[n->all_of.start + k], i, ev)) {
            return false;
        }
    }
    if (n->any_of.count && !check_any_of(c, n, i, ev)) {
        return false;
    }
    if (n->one_of.count && !check_one_of(c, n, i, ev)) {
        return false;
    }
    if (n->not_s >= 0) {
        c->quiet++;
        bool sub = eval(c, n->not_s, i, NULL);
        c->quiet--;
        if (sub || c->rc) {
            return fail(c, "not", "matches the schema of not");
        }
    }
    return n->if_s < 0 || check_if(c, n, i, ev);
}

/* unevaluatedItems / unevaluatedProperties over what ev says was not evaluated. */
static bool check_unevaluated(struct vctx *c, const struct snode *n, uint32_t i,
                              struct evald *ev)
{
    const struct jdoc_node *v = &c->d->nodes[i];
    bool is_obj = v->kind == JDOC_OBJECT;
    int32_t sub = is_obj ? n->uneval_props : n->uneval_items;
    if (sub < 0) {
        return true;
    }
    uint32_t at = i + 1;
    for (uint32_t k = 0; k < v->count; k++) {
        uint32_t val = at + is_obj;
        if (!set_has(c, ev, k)) {
            if (!eval_child(c, sub, val)) {
                return false;
            }
            set_mark(c, ev, k);
        }
        at = c->d->nodes[val].next;
    }
    return true;
}

/* ---------------------------------------------------------------- nodes */

static bool eval_keywords(struct vctx *c, const struct snode *n, uint32_t i, struct evald *ev)
{
    const struct jdoc_node *v = &c->d->nodes[i];
    if (n->has & (1u << KW_TYPE) && !check_type(c, n, v)) {
        return false;
    }
    if (!check_enum(c, n, i)) {
        return false;
    }
    bool ok = true;
    if (v->kind == JDOC_NUMBER) {
        ok = check_number(c, n, &v->num);
    } else if (v->kind == JDOC_STRING) {
        ok = check_string(c, n, v);
    } else if (v->kind == JDOC_ARRAY) {
        ok = check_array(c, n, i, ev);
    } else if (v->kind == JDOC_OBJECT) {
        ok = check_object(c, n, i, ev);
    }
    if (!ok || !check_in_place(c, n, i, ev)) {
        return false;
    }
    bool container = v->kind == JDOC_OBJECT || v->kind == JDOC_ARRAY;
    return !container || check_unevaluated(c, n, i, ev);
}

static bool eval(struct vctx *c, int32_t sn, uint32_t i, struct evald *ev)
{
    const struct snode *n = &c->s->nodes[sn];
    if (c->rc) {
        return false;
    }
    if (n->kind != SNODE_OBJECT) {
        return n->kind == SNODE_TRUE || fail(c, "false", "no value is allowed here");
    }
    if (++c->steps > c->max_steps) {
        return fatal(c, ERR_TOOBIG, "", "evaluation over its budget (SCHEMA_EVAL_STEPS_*)");
    }
    if (c->depth >= SCHEMA_MAX_EVAL_DEPTH) {
        return fatal(c, ERR_TOOBIG, "$ref", "evaluation deeper than SCHEMA_MAX_EVAL_DEPTH");
    }
    c->depth++;
    bool pushed = c->scope_len == 0 || c->scope[c->scope_len - 1] != n->resource;
    if (pushed) {
        c->scope[c->scope_len++] = n->resource;
    }
    uint8_t kind = c->d->nodes[i].kind;
    bool needs = n->uneval_props >= 0 || n->uneval_items >= 0;
    bool ok;
    if (needs && (kind == JDOC_OBJECT || kind == JDOC_ARRAY)) {
        /* unevaluated* sees only what this node's own keywords evaluated */
        uint32_t mark = c->x->bits_len;
        struct evald own = set_new(c, c->d->nodes[i].count);
        ok = eval_keywords(c, n, i, &own);
        if (ok && ev) {
            set_merge(c, ev, &own);
        }
        c->x->bits_len = mark;
    } else {
        ok = eval_keywords(c, n, i, ev);
    }
    c->scope_len -= pushed;
    c->depth--;
    return ok;
}

/* ---------------------------------------------------------------- API */

void schema_result_init(struct schema_result *r)
{
    memset(r, 0, sizeof(*r));
    r->keyword = "";
    buf_init(&r->pointer);
}

void schema_result_fini(struct schema_result *r)
{
    if (r->scratch) {
        jdoc_fini(&r->scratch->inst);
        pcre2_match_data_free(r->scratch->md);
        free(r->scratch->bits);
        free(r->scratch);
    }
    buf_fini(&r->pointer);
    memset(r, 0, sizeof(*r));
    r->keyword = "";
}

static void reset_result(struct schema_result *r)
{
    r->keyword = "";
    r->message[0] = '\0';
    buf_reset(&r->pointer);
    buf_reserve(&r->pointer, 0);
    if (!r->scratch) {
        r->scratch = xcalloc(1, sizeof(*r->scratch));
        jdoc_init(&r->scratch->inst);
    }
    r->scratch->bits_len = 0;
}

int schema_validate(const struct schema *s, const char *inst, size_t len,
                    struct schema_result *r)
{
    reset_result(r);
    if (len > SCHEMA_MAX_INSTANCE_BYTES) {
        r->keyword = "json";
        snprintf(r->message, sizeof r->message, "instance over SCHEMA_MAX_INSTANCE_BYTES");
        return ERR(ERR_TOOBIG);
    }
    struct jsonv_error je;
    int rc = jdoc_parse(&r->scratch->inst, inst, len, SCHEMA_MAX_INSTANCE_DEPTH, &je);
    if (rc < 0) {
        r->keyword = "json";
        snprintf(r->message, sizeof r->message, "not JSON at byte %zu: %s", je.offset, je.msg);
        bool deep = rc == ERR_TOOBIG || strcmp(je.msg, "nested too deeply") == 0;
        return deep ? ERR(ERR_TOOBIG) : ERR(ERR_PROTOCOL);
    }
    struct vctx ctx;
    struct vctx *c = &ctx;
    c->s = s;
    c->d = &r->scratch->inst;
    c->r = r;
    c->x = r->scratch;
    c->rc = c->quiet = c->depth = c->scope_len = 0;
    c->steps = 0;
    c->max_steps = SCHEMA_EVAL_STEPS_BASE + (uint64_t)SCHEMA_EVAL_STEPS_PER_NODE * c->d->count;
    c->path[0] = 0;
    c->path_len = 1;
    bool ok = eval(c, s->root, 0, NULL);
    rc = c->rc ? c->rc : ok ? 0 : ERR_INVALID;
    if (rc == ERR_INVALID && !r->keyword[0]) {
        r->keyword = "schema";
        snprintf(r->message, sizeof r->message, "does not match the schema");
    }
    return rc;
}
