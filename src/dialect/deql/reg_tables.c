/* DeReg's read side (registry.h): aggregate payload columns, validation, export and the
 * metadata tables of GET /api/dereg/... Built only on the registry's public lookups, so it
 * cannot break the registry's invariants; registry.c owns every change. Pure: no I/O. */
#include "dialect/deql/registry.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/errors.h"

static const enum deql_object all_kinds[] = {
    DEQL_OBJ_AGGREGATE, DEQL_OBJ_COMMAND,  DEQL_OBJ_EVENT,      DEQL_OBJ_DECISION,
    DEQL_OBJ_PROJECTION, DEQL_OBJ_TEMPLATE, DEQL_OBJ_EVENTSTORE,
};
enum { KIND_COUNT = sizeof(all_kinds) / sizeof(all_kinds[0]) };

static int cmp_seq(const void *a, const void *b)
{
    const struct deql_obj *x = *(const struct deql_obj *const *)a;
    const struct deql_obj *y = *(const struct deql_obj *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every object (of kind only, unless kind is -1) in registration order: a new array (free it)
 * of *n. */
static const struct deql_obj **objs_by_seq(const struct deql_reg *r, int kind, size_t *n)
{
    size_t counts[KIND_COUNT];
    deql_reg_counts(r, counts);
    size_t total = 0;
    for (size_t k = 0; k < KIND_COUNT; k++) total += counts[k];
    const struct deql_obj **arr = xcalloc(total + 1, sizeof(*arr));
    *n = 0;
    for (size_t k = 0; k < KIND_COUNT; k++) {
        if (kind >= 0 && (int)k != kind) continue;
        size_t m;
        const struct deql_obj *const *list = deql_reg_list(r, all_kinds[k], &m);
        for (size_t i = 0; i < m; i++) arr[(*n)++] = list[i];
    }
    if (*n) qsort(arr, *n, sizeof(*arr), cmp_seq);
    return arr;
}

/* ---- aggregate columns ------------------------------------------------------------------ */

/* A declaration of a payload column, in declaration order (order). */
struct col_decl {
    const struct deql_field *f;
    size_t order;
};

static int cmp_col_decl(const void *a, const void *b)
{
    const struct col_decl *x = a, *y = b;
    int c = strcmp(x->f->name, y->f->name);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends o's stored (not VOLATILE) fields to decls, a buffer of struct col_decl. */
static void add_decls(struct buf *decls, const struct deql_obj *o)
{
    for (size_t i = 0; o && i < o->nfields; i++) {
        if (o->fields[i].is_volatile) continue;
        struct col_decl d = {&o->fields[i], decls->len / sizeof(d)};
        buf_add(decls, &d, sizeof(d));
    }
}

size_t deql_reg_agg_columns(const struct deql_reg *r, const char *agg, struct deql_column *out,
                            size_t cap)
{
    struct buf b;
    buf_init(&b);
    add_decls(&b, deql_reg_find(r, DEQL_OBJ_AGGREGATE, agg));
    size_t nd;
    const struct deql_obj **decs = objs_by_seq(r, DEQL_OBJ_DECISION, &nd);
    for (size_t i = 0; agg && i < nd; i++) {
        const struct deql_obj *d = decs[i];
        if (strcmp(d->dec.aggregate, agg) != 0) continue;
        for (size_t br = 0; br < d->dec.nbranches; br++) {
            for (size_t e = 0; e < d->dec.branches[br].nemits; e++) {
                const char *ev = d->dec.branches[br].emits[e].event;
                add_decls(&b, deql_reg_find(r, DEQL_OBJ_EVENT, ev));
            }
        }
    }
    free(decs);
    struct col_decl *decls = (struct col_decl *)b.ptr;
    size_t n = b.len / sizeof(*decls);
    if (n) qsort(decls, n, sizeof(*decls), cmp_col_decl);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_first = i == 0 || strcmp(decls[i - 1].f->name, decls[i].f->name) != 0;
        if (is_first && count < cap) {
            out[count] = (struct deql_column){decls[i].f->name, decls[i].f->type,
                                              deql_sql_decl(decls[i].f->type), false};
        }
        count += is_first;
        if (count - 1 < cap && decls[i].f->is_sensitive) out[count - 1].sensitive = true;
    }
    buf_fini(&b);
    return count;
}

/* Whether type's leading word (before any '(') is one of words (NULL-terminated). */
static bool type_is(const char *type, const char *const *words)
{
    size_t len = strcspn(type, "(");
    for (; *words; words++) {
        if (strlen(*words) == len && strncasecmp(type, *words, len) == 0) return true;
    }
    return false;
}

const char *deql_sql_decl(const char *deql_type)
{
    static const char *const ints[] = {"INT", "INTEGER", "BIGINT", "SMALLINT", NULL};
    static const char *const reals[] = {"DECIMAL", "NUMERIC", "FLOAT", "DOUBLE", "REAL", NULL};
    static const char *const bools[] = {"BOOL", "BOOLEAN", NULL};
    static const char *const times[] = {"TIMESTAMP", "DATETIME", "DATE", NULL};
    if (!deql_type) return "TEXT";
    if (type_is(deql_type, ints)) return "INTEGER";
    if (type_is(deql_type, reals)) return "REAL";
    if (type_is(deql_type, bools)) return "BOOLEAN";
    if (type_is(deql_type, times)) return "TIMESTAMP";
    return "TEXT";
}

/* ---- validate and export ---------------------------------------------------------------- */

static bool has_field(const struct deql_obj *o, const char *name)
{
    for (size_t i = 0; i < o->nfields; i++) {
        if (strcmp(o->fields[i].name, name) == 0) return true;
    }
    return false;
}

/* Whether emit (b, e) of d names an event an earlier emit of d names (reported once). */
static bool event_seen_before(const struct deql_obj *d, size_t b, size_t e)
{
    const char *ev = d->dec.branches[b].emits[e].event;
    for (size_t pb = 0; pb <= b; pb++) {
        size_t end = pb == b ? e : d->dec.branches[pb].nemits;
        for (size_t pe = 0; pe < end; pe++) {
            if (strcmp(d->dec.branches[pb].emits[pe].event, ev) == 0) return true;
        }
    }
    return false;
}

static size_t validate_decision(const struct deql_reg *r, const struct deql_obj *d,
                                struct buf *out)
{
    size_t problems = 0;
    if (!deql_reg_find(r, DEQL_OBJ_AGGREGATE, d->dec.aggregate)) {
        buf_printf(out, "Decision %s: aggregate %s is not registered.\n", d->name,
                   d->dec.aggregate);
        problems++;
    }
    if (!deql_reg_find(r, DEQL_OBJ_COMMAND, d->dec.command)) {
        buf_printf(out, "Decision %s: command %s is not registered.\n", d->name, d->dec.command);
        problems++;
    }
    for (size_t b = 0; b < d->dec.nbranches; b++) {
        for (size_t e = 0; e < d->dec.branches[b].nemits; e++) {
            const struct deql_reg_emit *em = &d->dec.branches[b].emits[e];
            const struct deql_obj *ev = deql_reg_find(r, DEQL_OBJ_EVENT, em->event);
            if (!ev && !event_seen_before(d, b, e)) {
                buf_printf(out, "Decision %s: event %s is not registered.\n", d->name,
                           em->event);
                problems++;
            }
            for (size_t a = 0; ev && a < em->nassigns; a++) {
                if (has_field(ev, em->assigns[a].field)) continue;
                buf_printf(out,
                           "Decision %s: SELECT EVENT %s assigns field %s, which event %s does "
                           "not declare.\n",
                           d->name, em->event, em->assigns[a].field, em->event);
                problems++;
            }
        }
    }
    return problems;
}

size_t deql_reg_validate(const struct deql_reg *r, struct buf *out)
{
    size_t problems = 0;
    size_t n;
    const struct deql_obj *const *decs = deql_reg_list(r, DEQL_OBJ_DECISION, &n);
    for (size_t i = 0; i < n; i++) problems += validate_decision(r, decs[i], out);
    const struct deql_instance *const *insts = deql_reg_instances(r, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        if (deql_reg_find(r, DEQL_OBJ_TEMPLATE, insts[i]->template_name)) continue;
        buf_printf(out, "Template instance %zu (%s): template %s is not registered.\n", i + 1,
                   insts[i]->text, insts[i]->template_name);
        problems++;
    }
    return problems;
}

void deql_reg_export(const struct deql_reg *r, struct buf *out)
{
    size_t n;
    const struct deql_obj **objs = objs_by_seq(r, -1, &n);
    for (int pass = 0; pass < 2; pass++) { /* templates, then plain objects */
        for (size_t i = 0; i < n; i++) {
            const struct deql_obj *o = objs[i];
            if ((o->kind == DEQL_OBJ_TEMPLATE) != (pass == 0) || o->template_name) continue;
            buf_adds(out, o->text);
            buf_adds(out, ";\n");
        }
    }
    free(objs);
    const struct deql_instance *const *insts = deql_reg_instances(r, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        buf_adds(out, insts[i]->text);
        buf_adds(out, ";\n");
    }
}

/* ---- metadata tables -------------------------------------------------------------------- */

/* The row being written: the next column and the first error. */
struct row {
    struct arrow_table *t;
    size_t col;
    int rc;
};

/* Appends text s (NULL: a null cell), a byte that is not UTF-8 written as U+FFFD. */
static void put_text(struct row *w, const char *s)
{
    size_t col = w->col++;
    if (w->rc < 0) return;
    if (!s) {
        w->rc = arrow_table_add_null(w->t, col);
        return;
    }
    size_t len = strlen(s);
    if (utf8_text_ok(s, len)) {
        w->rc = arrow_table_add_utf8(w->t, col, s, len);
        return;
    }
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < len; i++) {
        size_t n = (unsigned char)s[i] < 0x80 ? 1 : utf8_seq_len((const unsigned char *)s + i,
                                                                 len - i);
        buf_add(&b, n ? s + i : "\xEF\xBF\xBD", n ? n : 3);
        i += n ? n - 1 : 0;
    }
    w->rc = arrow_table_add_utf8(w->t, col, b.ptr, b.len);
    buf_fini(&b);
}

static void put_i64(struct row *w, int64_t v)
{
    size_t col = w->col++;
    if (w->rc == 0) w->rc = arrow_table_add_int64(w->t, col, v);
}

static void put_bool(struct row *w, bool v)
{
    size_t col = w->col++;
    if (w->rc == 0) w->rc = arrow_table_add_bool(w->t, col, v);
}

/* Writes s, a buffer that may be empty (then ""), as text; frees it. */
static void put_buf(struct row *w, struct buf *b)
{
    put_text(w, b->ptr ? b->ptr : "");
    buf_fini(b);
}

static size_t decision_count(const struct deql_reg *r, const char *agg)
{
    size_t n, count = 0;
    const struct deql_obj *const *decs = deql_reg_list(r, DEQL_OBJ_DECISION, &n);
    for (size_t i = 0; i < n; i++) count += strcmp(decs[i]->dec.aggregate, agg) == 0;
    return count;
}

static void row_aggregate(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    put_text(w, o->name);
    put_i64(w, (int64_t)o->nfields);
    put_i64(w, (int64_t)decision_count(r, o->name));
    put_text(w, o->text);
    put_text(w, o->template_name);
}

static void row_command(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    const struct deql_obj *d = deql_reg_decision_for(r, o->name);
    put_text(w, o->name);
    put_text(w, d ? d->dec.aggregate : NULL);
    put_text(w, o->nfields ? o->fields[deql_reg_key_field(o)].name : NULL);
    put_i64(w, (int64_t)o->nfields);
    put_text(w, o->text);
    put_text(w, o->template_name);
}

static void row_event(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    put_text(w, o->name);
    put_i64(w, (int64_t)o->nfields);
    put_text(w, o->text);
    put_text(w, o->template_name);
}

/* The distinct events d emits, in order, joined by ','. */
static void emitted_events(const struct deql_obj *d, struct buf *b)
{
    for (size_t br = 0; br < d->dec.nbranches; br++) {
        for (size_t e = 0; e < d->dec.branches[br].nemits; e++) {
            const char *ev = d->dec.branches[br].emits[e].event;
            bool seen = false;
            for (size_t p = 0; p < br && !seen; p++) {
                for (size_t q = 0; q < d->dec.branches[p].nemits && !seen; q++) {
                    seen = strcmp(d->dec.branches[p].emits[q].event, ev) == 0;
                }
            }
            for (size_t q = 0; q < e && !seen; q++) {
                seen = strcmp(d->dec.branches[br].emits[q].event, ev) == 0;
            }
            if (seen) continue;
            if (b->len) buf_addc(b, ',');
            buf_adds(b, ev);
        }
    }
}

static void row_decision(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    size_t guards = 0;
    struct buf g, ev;
    buf_init(&g);
    buf_init(&ev);
    for (size_t br = 0; br < o->dec.nbranches; br++) guards += o->dec.branches[br].guard != NULL;
    for (size_t br = 0, k = 0; br < o->dec.nbranches; br++) {
        const char *guard = o->dec.branches[br].guard;
        if (!guard) continue;
        buf_printf(&g, guards == 1 ? "%s%s" : "%s(%s)", k++ ? " OR " : "", guard);
    }
    emitted_events(o, &ev);
    put_text(w, o->name);
    put_text(w, o->dec.aggregate);
    put_text(w, o->dec.command);
    put_bool(w, guards > 0);
    put_buf(w, &ev);
    if (guards) {
        put_buf(w, &g);
    } else {
        put_text(w, NULL);
    }
    put_text(w, o->dec.state);
    put_i64(w, (int64_t)o->dec.nbranches);
    put_text(w, o->text);
    put_text(w, o->template_name);
}

static void row_projection(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    put_text(w, o->name);
    put_text(w, o->body);
    put_text(w, o->text);
    put_text(w, o->template_name);
}

static void row_template(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    struct buf p;
    buf_init(&p);
    for (size_t i = 0; i < o->nfields; i++) {
        if (i) buf_addc(&p, ',');
        buf_adds(&p, o->fields[i].name);
    }
    size_t n;
    deql_reg_instances(r, o->name, &n);
    put_text(w, o->name);
    put_buf(w, &p);
    put_i64(w, (int64_t)n);
    put_text(w, o->text);
}

static void row_eventstore(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    json_t *opts = json_object();
    for (size_t i = 0; i < o->noptions; i++) {
        json_object_set_new(opts, o->option_keys[i], json_string(o->option_values[i]));
    }
    char *js = json_dumps(opts, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(opts);
    put_text(w, o->name);
    put_text(w, js ? js : "{}");
    put_i64(w, (int64_t)o->noptions);
    put_text(w, o->text);
    put_text(w, o->template_name);
    free(js);
}

/* Sub-table rows of one object. */
static void sub_fields(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    for (size_t i = 0; i < o->nfields; i++, w->col = 0) {
        const struct deql_field *f = &o->fields[i];
        put_text(w, o->name);
        put_text(w, f->name);
        put_text(w, f->type);
        /* a command's key is the field marked KEY, else its first */
        put_bool(w, o->kind == DEQL_OBJ_COMMAND ? i == deql_reg_key_field(o) : f->is_key);
        put_bool(w, f->is_sensitive);
        put_bool(w, f->is_volatile);
        put_i64(w, (int64_t)i + 1);
    }
}

static void sub_params(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    for (size_t i = 0; i < o->nfields; i++, w->col = 0) {
        put_text(w, o->name);
        put_text(w, o->fields[i].name);
        put_text(w, o->fields[i].type);
        put_i64(w, (int64_t)i + 1);
    }
}

static void sub_emits(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    (void)r;
    for (size_t b = 0; b < o->dec.nbranches; b++) {
        const struct deql_reg_branch *br = &o->dec.branches[b];
        for (size_t e = 0; e < br->nemits; e++, w->col = 0) {
            struct buf a;
            buf_init(&a);
            for (size_t k = 0; k < br->emits[e].nassigns; k++) {
                buf_printf(&a, "%s%s := %s", k ? ", " : "", br->emits[e].assigns[k].field,
                           br->emits[e].assigns[k].expr);
            }
            put_text(w, o->name);
            put_i64(w, (int64_t)b + 1);
            put_text(w, br->id);
            put_text(w, br->label);
            put_text(w, br->guard);
            put_text(w, br->emits[e].event);
            put_buf(w, &a);
        }
    }
}

static void sub_instances(const struct deql_reg *r, const struct deql_obj *o, struct row *w)
{
    size_t n;
    const struct deql_instance *const *in = deql_reg_instances(r, o->name, &n);
    for (size_t i = 0; i < n; i++, w->col = 0) {
        struct buf objs;
        buf_init(&objs);
        for (size_t k = 0; k < in[i]->nobjects; k++) {
            if (k) buf_addc(&objs, ',');
            buf_adds(&objs, in[i]->objects[k]);
        }
        put_text(w, in[i]->template_name);
        put_i64(w, (int64_t)i + 1);
        put_text(w, in[i]->params_json);
        put_text(w, in[i]->text);
        put_buf(w, &objs);
    }
}

typedef void row_fn(const struct deql_reg *r, const struct deql_obj *o, struct row *w);

enum { MAX_TABLE_COLS = 10 };

/* A table: its columns (names and types, in order) and what writes an object's rows. */
struct table_spec {
    const char *group;  /* "aggregates", ... */
    const char *sub;    /* NULL: the group's own table (a row per object) */
    enum deql_object kind;
    row_fn *rows;
    const char *names[MAX_TABLE_COLS];
    enum arrow_type types[MAX_TABLE_COLS];
};

#define T ARROW_UTF8
#define I ARROW_INT64
#define B ARROW_BOOL
/* The fields sub-table of a kind whose owner column is owner. */
#define FIELD_COLS(owner)                                                                      \
    {owner, "field_name", "field_type", "is_key", "is_sensitive", "is_volatile", "ordinal"},   \
        {T, T, T, B, B, B, I}
static const struct table_spec tables[] = {
    {"aggregates", NULL, DEQL_OBJ_AGGREGATE, row_aggregate,
     {"name", "field_count", "decision_count", "definition", "template_name"}, {T, I, I, T, T}},
    {"commands", NULL, DEQL_OBJ_COMMAND, row_command,
     {"name", "aggregate", "key_field", "field_count", "definition", "template_name"},
     {T, T, T, I, T, T}},
    {"events", NULL, DEQL_OBJ_EVENT, row_event,
     {"name", "field_count", "definition", "template_name"}, {T, I, T, T}},
    {"decisions", NULL, DEQL_OBJ_DECISION, row_decision,
     {"name", "aggregate", "command", "has_guard", "emitted_events", "guard_sql", "state_as_sql",
      "branch_count", "definition", "template_name"},
     {T, T, T, B, T, T, T, I, T, T}},
    {"projections", NULL, DEQL_OBJ_PROJECTION, row_projection,
     {"name", "query_sql", "definition", "template_name"}, {T, T, T, T}},
    {"templates", NULL, DEQL_OBJ_TEMPLATE, row_template,
     {"name", "params", "instance_count", "definition"}, {T, T, I, T}},
    {"eventstores", NULL, DEQL_OBJ_EVENTSTORE, row_eventstore,
     {"name", "options", "option_count", "definition", "template_name"}, {T, T, I, T, T}},
    {"aggregates", "fields", DEQL_OBJ_AGGREGATE, sub_fields, FIELD_COLS("aggregate_name")},
    {"commands", "fields", DEQL_OBJ_COMMAND, sub_fields, FIELD_COLS("command_name")},
    {"events", "fields", DEQL_OBJ_EVENT, sub_fields, FIELD_COLS("event_name")},
    {"decisions", "emits", DEQL_OBJ_DECISION, sub_emits,
     {"decision_name", "branch_index", "branch_id", "branch_label", "branch_guard", "event_name",
      "assignments"},
     {T, I, T, T, T, T, T}},
    {"templates", "params", DEQL_OBJ_TEMPLATE, sub_params,
     {"template_name", "param_name", "param_type", "ordinal"}, {T, T, T, I}},
    {"templates", "instances", DEQL_OBJ_TEMPLATE, sub_instances,
     {"template_name", "ordinal", "params", "definition", "objects"}, {T, I, T, T, T}},
};
#undef T
#undef I
#undef B
#undef FIELD_COLS

/* The spec of group (and sub, NULL for the group's own table), or NULL. */
static const struct table_spec *find_table(const char *group, const char *sub)
{
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const struct table_spec *s = &tables[i];
        if (strcmp(s->group, group) != 0) continue;
        if (!sub ? !s->sub : s->sub && strcmp(s->sub, sub) == 0) return s;
    }
    return NULL;
}

static int not_found(struct arrow_table *out, const char **what, const char *which)
{
    memset(out, 0, sizeof(*out));
    if (what) *what = which;
    return ERR_NOTFOUND;
}

int deql_reg_table(const struct deql_reg *r, const char *group, const char *name,
                   const char *sub, struct arrow_table *out, const char **what)
{
    if (what) *what = NULL;
    const struct table_spec *spec = group ? find_table(group, NULL) : NULL;
    if (!spec) return not_found(out, what, "group");
    const struct deql_obj *o = name ? deql_reg_find(r, spec->kind, name) : NULL;
    if (name && !o) return not_found(out, what, "name");
    if (sub) spec = o ? find_table(group, sub) : NULL;
    if (!spec) return not_found(out, what, "sub");
    size_t ncols = 0;
    while (ncols < MAX_TABLE_COLS && spec->names[ncols]) ncols++;
    int rc = arrow_table_init(out, ncols, spec->names, spec->types);
    if (rc < 0) return rc;
    struct row w = {out, 0, 0};
    size_t n = 1;
    const struct deql_obj *const *list = name ? &o : deql_reg_list(r, spec->kind, &n);
    for (size_t i = 0; i < n && w.rc == 0; i++, w.col = 0) spec->rows(r, list[i], &w);
    if (w.rc < 0) {
        arrow_table_fini(out);
        memset(out, 0, sizeof(*out));
    }
    return w.rc;
}
