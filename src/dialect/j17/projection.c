/* j17 projections, evaluated (docs/dialects/j17.md, "Projections (spec syntax)", "Evaluation"):
 * the parse of select paths that the checks in spec_more.c share, the preparation of a checked
 * projection (sources, includes and select compiled once, with the spec), and two pure
 * evaluators over the states the caller fetched: the ids a source names, and the document that
 * select builds.
 * Invariants: a prepared projection's paths all parse and start from a source, include or
 * variable in scope (spec_more.c checked them); evaluation only reads ctx and the spec, and every
 * value it returns is built anew within the J17_SELECT_STEPS and J17_PROJECTION_OUT_* budgets. */
#include "dialect/j17/spec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/spec_int.h"
#include "util/errors.h"
#include "util/limits.h"

/* Segments one path can hold: each takes at least two bytes of the text. */
enum { SEL_PATH_SEGS = LIMIT_JPATH_BYTES / 2 + 1 };

enum sel_kind {
    SEL_LITERAL, /* any JSON that is not a path, copied */
    SEL_PATH,    /* "$.source..." or "$var..." */
    SEL_OBJECT,  /* built member by member */
    SEL_ARRAY,   /* built element by element */
    SEL_MAP,     /* {"$map": path, "as"?, "to"} */
    SEL_LOOKUP,  /* {"$lookup": path, "where", "select"?, "as"?} */
};

/* A compiled select template. */
struct j17_sel {
    enum sel_kind kind;
    const json_t *literal;       /* LITERAL: borrowed from the spec's document */
    struct j17_sel_path path;    /* PATH; MAP, LOOKUP: the array */
    const char **keys;           /* OBJECT: owned array of member names borrowed from the doc */
    struct j17_sel *kids;        /* owned: OBJECT, ARRAY: the members; MAP: [0] is "to";
                                    LOOKUP: the where values, then "select" if has_select */
    size_t kid_count;
    struct j17_sel_path *fields; /* LOOKUP: owned, the where fields (relative paths) */
    size_t field_count;
    const char *var;             /* MAP, LOOKUP: the variable bound (borrowed) */
    bool has_select;             /* LOOKUP */
};

/* ---- paths ---- */

/* Length of the name at s ([A-Za-z0-9_-] and bytes >= 0x80). */
static size_t name_len(const char *s)
{
    size_t n = 0;
    while (s[n] && (strchr("_-", s[n]) || (s[n] >= 'a' && s[n] <= 'z') ||
                    (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') ||
                    (unsigned char)s[n] >= 0x80)) {
        n++;
    }
    return n;
}

/* Parses .name, [n] and [*] from s on into segs (room for SEL_PATH_SEGS, at most *count
 * already used). Returns NULL or why. */
static const char *parse_segs(const char *s, struct j17_seg *segs, size_t *count, bool *has_all)
{
    size_t n = *count;
    for (const char *p = s; *p; n++) {
        if (n == SEL_PATH_SEGS) return "too many segments";
        struct j17_seg *g = &segs[n];
        if (*p == '.' && name_len(p + 1) > 0) {
            *g = (struct j17_seg){.kind = J17_SEG_MEMBER, .name = p + 1, .len = name_len(p + 1)};
            p += 1 + g->len;
        } else if (!strncmp(p, "[*]", 3)) {
            *g = (struct j17_seg){.kind = J17_SEG_ALL};
            *has_all = true;
            p += 3;
        } else if (*p == '[') {
            char *end;
            long v = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end != ']') return "expected [n] or [*]";
            *g = (struct j17_seg){.kind = J17_SEG_INDEX, .index = v};
            p = end + 1;
        } else {
            return "expected .name, [n] or [*]";
        }
    }
    *count = n;
    return NULL;
}

static void keep_segs(struct j17_sel_path *out, const struct j17_seg *segs, size_t count)
{
    out->seg_count = count;
    out->segs = xcalloc(count + 1, sizeof(*out->segs));
    memcpy(out->segs, segs, count * sizeof(*segs));
}

const char *j17_sel_path_parse(const char *s, struct j17_sel_path *out)
{
    memset(out, 0, sizeof(*out));
    if (strlen(s) > LIMIT_JPATH_BYTES) return "path longer than its limit";
    if (s[0] != '$') return "a path starts $.<source> or $<variable>";
    out->is_var = s[1] != '.';
    const char *root = s + (out->is_var ? 1 : 2);
    size_t n = name_len(root);
    if (n == 0) return "a path starts $.<source> or $<variable>";
    if (n > J17_NAME_BYTES) {
        return out->is_var ? "no variable of that name" : "no source or include of that name";
    }
    memcpy(out->root, root, n);
    out->root[n] = '\0';
    struct j17_seg segs[SEL_PATH_SEGS];
    size_t count = 0;
    const char *why = parse_segs(root + n, segs, &count, &out->has_all);
    if (why) return why;
    keep_segs(out, segs, count);
    return NULL;
}

void j17_sel_path_fini(struct j17_sel_path *p)
{
    free(p->segs);
    p->segs = NULL;
    p->seg_count = 0;
}

/* A $lookup "where" field: "id", "a.b", "a[0].b" or "[1]" (no [*]); any other key is one member
 * name as written ("a b"). Names are borrowed from key. */
static void parse_field(const char *key, struct j17_sel_path *out)
{
    memset(out, 0, sizeof(*out));
    struct j17_seg segs[SEL_PATH_SEGS];
    size_t count = 0;
    size_t n = key[0] == '[' ? 0 : name_len(key);
    if (n > 0) segs[count++] = (struct j17_seg){.kind = J17_SEG_MEMBER, .name = key, .len = n};
    bool is_path = (n > 0 || key[0] == '[') && strlen(key) <= LIMIT_JPATH_BYTES &&
                   !parse_segs(key + n, segs, &count, &out->has_all) && !out->has_all;
    if (!is_path) {
        out->has_all = false;
        count = 1;
        segs[0] = (struct j17_seg){.kind = J17_SEG_MEMBER, .name = key, .len = strlen(key)};
    }
    keep_segs(out, segs, count);
}

/* ---- preparation ---- */

static void sel_fini(struct j17_sel *n)
{
    for (size_t i = 0; i < n->kid_count; i++) sel_fini(&n->kids[i]);
    free(n->kids);
    free(n->keys);
    for (size_t i = 0; i < n->field_count; i++) j17_sel_path_fini(&n->fields[i]);
    free(n->fields);
    j17_sel_path_fini(&n->path);
}

static const char *compile_sel(const json_t *j, struct j17_sel *n);

/* The path in member name of j (a $map or $lookup), into n->path. */
static const char *compile_op_path(const json_t *j, const char *name, struct j17_sel *n)
{
    const char *s = json_string_value(json_object_get(j, name));
    return s ? j17_sel_path_parse(s, &n->path) : "not a path";
}

static const char *compile_map(const json_t *j, struct j17_sel *n)
{
    n->kind = SEL_MAP;
    const char *as = json_string_value(json_object_get(j, "as"));
    n->var = as ? as : "item";
    const char *why = compile_op_path(j, "$map", n);
    if (why) return why;
    n->kids = xcalloc(1, sizeof(*n->kids));
    n->kid_count = 1;
    json_t *to = json_object_get(j, "to");
    return to ? compile_sel(to, &n->kids[0]) : "no \"to\"";
}

static const char *compile_lookup(const json_t *j, struct j17_sel *n)
{
    n->kind = SEL_LOOKUP;
    const char *as = json_string_value(json_object_get(j, "as"));
    n->var = as ? as : "match";
    const char *why = compile_op_path(j, "$lookup", n);
    json_t *where = json_object_get(j, "where");
    json_t *sel = json_object_get(j, "select");
    if (why || !json_is_object(where)) return why ? why : "no \"where\"";
    n->field_count = json_object_size(where);
    n->fields = xcalloc(n->field_count + 1, sizeof(*n->fields));
    n->has_select = sel != NULL;
    n->kids = xcalloc(n->field_count + 1, sizeof(*n->kids));
    const char *key;
    json_t *v;
    json_object_foreach (where, key, v) {
        parse_field(key, &n->fields[n->kid_count]);
        why = compile_sel(v, &n->kids[n->kid_count++]);
        if (why) return why;
    }
    return sel ? compile_sel(sel, &n->kids[n->kid_count++]) : NULL;
}

static const char *compile_members(const json_t *j, struct j17_sel *n)
{
    size_t count = json_is_array(j) ? json_array_size(j) : json_object_size(j);
    n->kids = xcalloc(count + 1, sizeof(*n->kids));
    if (json_is_array(j)) {
        n->kind = SEL_ARRAY;
        for (; n->kid_count < count; n->kid_count++) {
            const char *why = compile_sel(json_array_get(j, n->kid_count), &n->kids[n->kid_count]);
            if (why) return why;
        }
        return NULL;
    }
    n->kind = SEL_OBJECT;
    n->keys = xcalloc(count + 1, sizeof(*n->keys));
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)j, key, v) {
        n->keys[n->kid_count] = key;
        const char *why = compile_sel(v, &n->kids[n->kid_count++]);
        if (why) return why;
    }
    return NULL;
}

/* Compiles the select template j into n (zeroed). Returns NULL or why (n then holds what was
 * made: sel_fini it). */
static const char *compile_sel(const json_t *j, struct j17_sel *n)
{
    if (json_is_string(j) && json_string_value(j)[0] == '$') {
        n->kind = SEL_PATH;
        return j17_sel_path_parse(json_string_value(j), &n->path);
    }
    if (json_is_object(j) && json_object_get(j, "$map")) return compile_map(j, n);
    if (json_is_object(j) && json_object_get(j, "$lookup")) return compile_lookup(j, n);
    if (json_is_object(j) || json_is_array(j)) return compile_members(j, n);
    n->kind = SEL_LITERAL;
    n->literal = j;
    return NULL;
}

static const char *prepare_sources(struct j17_projection *p)
{
    const json_t *src = json_object_get(p->def, "sources");
    p->sources = xcalloc(json_object_size(src) + 1, sizeof(*p->sources));
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)src, key, v) {
        struct j17_proj_source *s = &p->sources[p->source_count++];
        s->name = key;
        if (json_is_string(v)) continue; /* "$key" */
        s->type = json_string_value(json_object_get(v, "type"));
        s->is_array = json_object_get(v, "mode") != NULL;
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *why = id ? j17_sel_path_parse(id, &s->id) : "no id";
        if (why) return why;
    }
    return NULL;
}

static const char *prepare_includes(struct j17_projection *p)
{
    const json_t *inc = json_object_get(p->def, "include");
    p->includes = xcalloc(json_object_size(inc) + 1, sizeof(*p->includes));
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)inc, key, v) {
        struct j17_proj_include *in = &p->includes[p->include_count++];
        in->name = key;
        const char *s = json_string_value(v);
        const char *colon = s ? strchr(s, ':') : NULL;
        if (!colon || colon - s > J17_NAME_BYTES) return "an include is \"type:id\"";
        memcpy(in->type, s, (size_t)(colon - s));
        struct slice id = {colon + 1, strlen(colon + 1)};
        if (j17_id_check(p->spec, id, in->id) != 0) return "an include's id is not valid";
    }
    return NULL;
}

bool j17_projection_prepare(struct j17_cc *c, struct j17_projection *p, const char *path)
{
    p->spec = c->s;
    const char *why = prepare_sources(p);
    if (!why) why = prepare_includes(p);
    if (!why) {
        p->select = xcalloc(1, sizeof(*p->select));
        why = compile_sel(json_object_get(p->def, "select"), p->select);
    }
    if (!why) return true;
    j17_problem(c->pr, path, "cannot prepare the projection: %s", why);
    return false;
}

void j17_projection_fini(struct j17_projection *p)
{
    for (size_t i = 0; i < p->source_count; i++) j17_sel_path_fini(&p->sources[i].id);
    free(p->sources);
    free(p->includes);
    if (p->select) sel_fini(p->select);
    free(p->select);
    p->sources = NULL;
    p->includes = NULL;
    p->select = NULL;
    p->source_count = 0;
    p->include_count = 0;
}

/* ---- read API ---- */

size_t j17_projection_source_count(const struct j17_projection *p) { return p->source_count; }

const char *j17_projection_source_name(const struct j17_projection *p, size_t i)
{
    return i < p->source_count ? p->sources[i].name : NULL;
}

const char *j17_projection_source_type(const struct j17_projection *p, size_t i)
{
    return i < p->source_count ? p->sources[i].type : NULL;
}

bool j17_projection_source_array(const struct j17_projection *p, size_t i)
{
    return i < p->source_count && p->sources[i].is_array;
}

size_t j17_projection_include_count(const struct j17_projection *p) { return p->include_count; }

const char *j17_projection_include_name(const struct j17_projection *p, size_t i)
{
    return i < p->include_count ? p->includes[i].name : NULL;
}

const char *j17_projection_include_type(const struct j17_projection *p, size_t i)
{
    return i < p->include_count ? p->includes[i].type : NULL;
}

const char *j17_projection_include_id(const struct j17_projection *p, size_t i)
{
    return i < p->include_count ? p->includes[i].id : NULL;
}

/* ---- evaluation ---- */

/* Follows segs[from..to) (members and indexes only) from v. Borrowed; NULL when missing. */
static const json_t *walk(const json_t *v, const struct j17_seg *segs, size_t from, size_t to)
{
    for (size_t k = from; v && k < to; k++) {
        const struct j17_seg *g = &segs[k];
        if (g->kind == J17_SEG_MEMBER) {
            v = json_is_object(v) ? json_object_getn(v, g->name, g->len) : NULL;
            continue;
        }
        if (!json_is_array(v)) return NULL;
        long size = (long)json_array_size(v);
        long at = g->index < 0 ? size + g->index : g->index;
        v = at >= 0 && at < size ? json_array_get(v, (size_t)at) : NULL;
    }
    return v;
}

/* The first [*] of path at or after from, or seg_count. */
static size_t next_all(const struct j17_sel_path *path, size_t from)
{
    while (from < path->seg_count && path->segs[from].kind != J17_SEG_ALL) from++;
    return from;
}

static void set_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* ids of one source, gathered. */
struct id_walk {
    const struct j17_projection *p;
    const struct j17_proj_source *src;
    json_t *ids;                 /* owned: the array being built */
    int rc;                      /* 0, or the first error */
    char *why;                   /* the caller's, cap bytes */
    size_t cap;
};

static void add_id(struct id_walk *w, const json_t *v)
{
    char canon[J17_ID_BYTES + 1];
    if (w->rc || !json_is_string(v)) return;
    struct slice id = {json_string_value(v), json_string_length(v)};
    if (j17_id_check(w->p->spec, id, canon) != 0) return;
    if (!w->src->is_array && json_array_size(w->ids) > 0) return;
    if (json_array_size(w->ids) == J17_PROJ_SOURCE_IDS_MAX) {
        set_why(w->why, w->cap, "source %s names more than %d aggregates", w->src->name,
                J17_PROJ_SOURCE_IDS_MAX);
        w->rc = ERR(ERR_TOOBIG);
        return;
    }
    json_array_append_new(w->ids, json_string(canon));
}

/* Follows the source's id path from segment from on, at v, adding each id it reaches. */
static void collect_ids(struct id_walk *w, const json_t *v, size_t from)
{
    const struct j17_sel_path *path = &w->src->id;
    size_t k = next_all(path, from);
    v = walk(v, path->segs, from, k);
    size_t i;
    const json_t *e;
    if (k < path->seg_count) {
        json_array_foreach (v, i, e) collect_ids(w, e, k + 1);
    } else if (w->src->is_array && json_is_array(v)) {
        json_array_foreach (v, i, e) add_id(w, e);
    } else {
        add_id(w, v);
    }
}

int j17_projection_source_ids(const struct j17_projection *p, size_t i, const json_t *ctx,
                              json_t **ids, char *why, size_t cap)
{
    *ids = NULL;
    set_why(why, cap, "%s", "");
    if (i >= p->source_count || !json_is_object(ctx)) {
        set_why(why, cap, "no source %zu, or the context is not an object", i);
        return ERR(ERR_INVALID);
    }
    const struct j17_proj_source *src = &p->sources[i];
    if (!src->type) {
        set_why(why, cap, "source %s is the for_each aggregate itself ($key)", src->name);
        return ERR(ERR_INVALID);
    }
    struct id_walk w = {.p = p, .src = src, .ids = json_array(), .why = why, .cap = cap};
    collect_ids(&w, json_object_get(ctx, src->id.root), 0);
    if (w.rc < 0) {
        json_decref(w.ids);
        return w.rc;
    }
    *ids = w.ids;
    return 0;
}

/* A variable in scope: $map's element or $lookup's match. */
struct sel_var {
    const char *name;            /* borrowed from the spec */
    const json_t *value;         /* borrowed from ctx (or a temporary of the evaluation) */
};

/* One evaluation of a select. */
struct sel_eval {
    const json_t *ctx;           /* borrowed: {source or include name: state} */
    struct sel_var vars[J17_SELECT_DEPTH + 2]; /* innermost last */
    size_t var_count;
    size_t steps;                /* elements visited plus values built */
    size_t nodes;                /* values built */
    size_t bytes;                /* bytes of strings and member names built */
    int rc;                      /* 0, or the first error */
    char *why;                   /* the caller's, cap bytes */
    size_t cap;
};

/* Records the first failure (a budget exceeded); returns false. */
static bool fail(struct sel_eval *ev, const char *what, long limit)
{
    if (ev->rc == 0) set_why(ev->why, ev->cap, "projection %s over its limit of %ld", what, limit);
    ev->rc = ERR(ERR_TOOBIG);
    return false;
}

/* Spends n steps; false once over the budget. */
static bool spend(struct sel_eval *ev, size_t n)
{
    ev->steps += n;
    return ev->rc == 0 && (ev->steps <= J17_SELECT_STEPS ||
                           fail(ev, "select steps", J17_SELECT_STEPS));
}

/* Counts one value built holding bytes of text; false once over a budget. */
static bool build(struct sel_eval *ev, size_t bytes)
{
    if (!spend(ev, 1)) return false;
    ev->nodes++;
    ev->bytes += bytes;
    if (ev->nodes > J17_PROJECTION_OUT_NODES) {
        return fail(ev, "output values", J17_PROJECTION_OUT_NODES);
    }
    return ev->bytes <= J17_PROJECTION_OUT_BYTES ||
           fail(ev, "output bytes", J17_PROJECTION_OUT_BYTES);
}

static json_t *copy_value(struct sel_eval *ev, const json_t *v);

static json_t *copy_object(struct sel_eval *ev, const json_t *v)
{
    json_t *out = json_object();
    json_t *obj = (json_t *)v; /* iterating only reads */
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        size_t len = json_object_iter_key_len(it);
        ev->bytes += len;
        json_t *m = copy_value(ev, json_object_iter_value(it));
        if (!m) {
            json_decref(out);
            return NULL;
        }
        json_object_setn_new_nocheck(out, json_object_iter_key(it), len, m);
    }
    return out;
}

/* A copy of v (NULL: null), counted against the budgets; NULL when over one. */
static json_t *copy_value(struct sel_eval *ev, const json_t *v)
{
    size_t bytes = json_is_string(v) ? json_string_length(v) : 0;
    if (!build(ev, bytes)) return NULL;
    if (!v) return json_null();
    if (json_is_string(v)) return json_stringn_nocheck(json_string_value(v), bytes);
    if (json_is_object(v)) return copy_object(ev, v);
    if (!json_is_array(v)) return json_deep_copy(v);
    json_t *out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach (v, i, e) {
        json_t *c = copy_value(ev, e);
        if (!c) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, c);
    }
    return out;
}

/* Where a path starts: a source or include of ctx, or the innermost variable of its name. */
static const json_t *path_root(const struct sel_eval *ev, const struct j17_sel_path *path)
{
    if (!path->is_var) return json_object_get(ev->ctx, path->root);
    for (size_t i = ev->var_count; i > 0; i--) {
        if (!strcmp(ev->vars[i - 1].name, path->root)) return ev->vars[i - 1].value;
    }
    return NULL;
}

/* A copy of what path gives from segment from on, at v: [*] maps the rest over an array. */
static json_t *eval_path_from(struct sel_eval *ev, const json_t *v,
                              const struct j17_sel_path *path, size_t from)
{
    size_t k = next_all(path, from);
    v = walk(v, path->segs, from, k);
    if (k == path->seg_count || !json_is_array(v)) {
        return copy_value(ev, k == path->seg_count ? v : NULL);
    }
    if (!build(ev, 0)) return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach (v, i, e) {
        json_t *m = spend(ev, 1) ? eval_path_from(ev, e, path, k + 1) : NULL;
        if (!m) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, m);
    }
    return out;
}

/* What path names, without a copy when it has no [*] (else built into *tmp, owned by the
 * caller). NULL when missing or on error (ev->rc). */
static const json_t *view_path(struct sel_eval *ev, const struct j17_sel_path *path,
                               json_t **tmp)
{
    *tmp = NULL;
    const json_t *root = path_root(ev, path);
    if (!path->has_all) return walk(root, path->segs, 0, path->seg_count);
    *tmp = eval_path_from(ev, root, path, 0);
    return *tmp;
}

static json_t *eval(struct sel_eval *ev, const struct j17_sel *n);

/* Evaluates n with name bound to value. */
static json_t *eval_bound(struct sel_eval *ev, const struct j17_sel *n, const char *name,
                          const json_t *value)
{
    if (ev->var_count == sizeof(ev->vars) / sizeof(ev->vars[0])) {
        fail(ev, "select nesting", J17_SELECT_DEPTH);
        return NULL;
    }
    ev->vars[ev->var_count++] = (struct sel_var){name, value};
    json_t *out = eval(ev, n);
    ev->var_count--;
    return out;
}

static json_t *eval_map(struct sel_eval *ev, const struct j17_sel *n)
{
    json_t *tmp;
    const json_t *arr = view_path(ev, &n->path, &tmp);
    json_t *out = NULL;
    if (ev->rc == 0 && !json_is_array(arr)) out = copy_value(ev, NULL);
    if (ev->rc == 0 && json_is_array(arr) && build(ev, 0)) out = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach (json_is_array(out) ? arr : NULL, i, e) {
        json_t *m = spend(ev, 1) ? eval_bound(ev, &n->kids[0], n->var, e) : NULL;
        if (!m) {
            json_decref(out);
            out = NULL;
            break;
        }
        json_array_append_new(out, m);
    }
    json_decref(tmp);
    return out;
}

/* Numbers equal by value (1 and 1.0); anything else as JSON. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        return json_integer_value(a) == json_integer_value(b);
    }
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

/* The first element of arr whose where fields all equal vals; NULL for none (or ev->rc). */
static const json_t *find_match(struct sel_eval *ev, const struct j17_sel *n, const json_t *arr,
                                const json_t *vals)
{
    size_t i;
    const json_t *e;
    json_array_foreach (arr, i, e) {
        if (!spend(ev, 1)) return NULL;
        bool is_match = true;
        for (size_t k = 0; is_match && k < n->field_count; k++) {
            const struct j17_sel_path *f = &n->fields[k];
            const json_t *v = walk(e, f->segs, 0, f->seg_count);
            is_match = v && values_equal(v, json_array_get(vals, k));
        }
        if (is_match) return e;
    }
    return NULL;
}

static json_t *eval_lookup(struct sel_eval *ev, const struct j17_sel *n)
{
    json_t *vals = json_array();
    for (size_t k = 0; k < n->field_count; k++) {
        json_t *v = eval(ev, &n->kids[k]);
        if (!v) {
            json_decref(vals);
            return NULL;
        }
        json_array_append_new(vals, v);
    }
    json_t *tmp;
    const json_t *arr = view_path(ev, &n->path, &tmp);
    const json_t *match = ev->rc == 0 ? find_match(ev, n, arr, vals) : NULL;
    json_t *out = NULL;
    if (ev->rc == 0 && match && n->has_select) {
        out = eval_bound(ev, &n->kids[n->field_count], n->var, match);
    } else if (ev->rc == 0) {
        out = copy_value(ev, match);
    }
    json_decref(tmp);
    json_decref(vals);
    return out;
}

static json_t *eval_members(struct sel_eval *ev, const struct j17_sel *n)
{
    bool is_object = n->kind == SEL_OBJECT;
    if (!build(ev, 0)) return NULL;
    json_t *out = is_object ? json_object() : json_array();
    for (size_t i = 0; i < n->kid_count; i++) {
        if (is_object) ev->bytes += strlen(n->keys[i]);
        json_t *v = eval(ev, &n->kids[i]);
        if (!v) {
            json_decref(out);
            return NULL;
        }
        if (is_object) {
            json_object_set_new_nocheck(out, n->keys[i], v);
        } else {
            json_array_append_new(out, v);
        }
    }
    return out;
}

/* The value n gives: a new reference, or NULL with ev->rc set. */
static json_t *eval(struct sel_eval *ev, const struct j17_sel *n)
{
    switch (n->kind) {
    case SEL_LITERAL:
        return copy_value(ev, n->literal);
    case SEL_PATH:
        return eval_path_from(ev, path_root(ev, &n->path), &n->path, 0);
    case SEL_OBJECT:
    case SEL_ARRAY:
        return eval_members(ev, n);
    case SEL_MAP:
        return eval_map(ev, n);
    case SEL_LOOKUP:
        return eval_lookup(ev, n);
    }
    return NULL;
}

int j17_projection_select(const struct j17_projection *p, const json_t *ctx, json_t **out,
                          char *why, size_t cap)
{
    *out = NULL;
    set_why(why, cap, "%s", "");
    if (!json_is_object(ctx) || !p->select) {
        set_why(why, cap, "the context is not an object");
        return ERR(ERR_INVALID);
    }
    struct sel_eval ev = {.ctx = ctx, .why = why, .cap = cap};
    json_t *doc = eval(&ev, p->select);
    if (!doc) return ev.rc < 0 ? ev.rc : ERR(ERR_NOMEM);
    *out = doc;
    return 0;
}
