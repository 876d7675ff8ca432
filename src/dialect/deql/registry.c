/* DeReg: the registry of DeQL definitions (registry.h). Objects are built from parsed
 * statements with every string copied out of the script, so no span outlives the call.
 *
 * Invariants:
 *   - objs holds every object once, in registration (seq) order; replacing an object swaps the
 *     pointer in its slot, so seq order never changes;
 *   - by_kind[k] holds the objects of kind k sorted by name (byte order), names unique;
 *   - insts holds the USE TEMPLATE instances in order; insts_by_tmpl the same pointers sorted
 *     stably by template name;
 *   - between two public calls the undo log is empty. While a call applies statements, every
 *     change is logged (an object added, an object replaced with the old one kept, an instance
 *     added); a failure undoes the log back to where the call began, a success frees the
 *     replaced objects. This is what makes USE TEMPLATE and deql_reg_apply_script all or
 *     nothing.
 *   - an object made by a template is changed only by template expansions, and an object not
 *     made by one only outside them, so deql_reg_export's order (templates, plain objects,
 *     USE TEMPLATE) always rebuilds the same registry.
 *
 *   (no call) --deql_reg_apply / deql_reg_apply_script--> APPLYING (undo log grows)
 *   APPLYING --success: commit()--> (no call), generation += statements applied
 *   APPLYING --failure: rollback()--> (no call), registry as before */
#include "dialect/deql/registry.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/errors.h"
#include "util/hash.h"

enum { DEQL_KINDS = DEQL_OBJ_EVENTSTORE + 1 };

_Static_assert((int)DEQL_CREATE_AGGREGATE == (int)DEQL_OBJ_AGGREGATE &&
                   (int)DEQL_CREATE_EVENTSTORE == (int)DEQL_OBJ_EVENTSTORE &&
                   (int)DEQL_CREATE_TEMPLATE == (int)DEQL_OBJ_TEMPLATE,
               "CREATE statement kinds follow enum deql_object");

/* One logged change of the call under way. */
struct undo {
    bool is_instance;     /* an instance was appended (else an object change) */
    size_t slot;          /* objs index of the object added or replaced */
    struct deql_obj *old; /* the replaced object (owned by the log), NULL: the object was added */
};

struct deql_reg {
    struct deql_obj **objs;               /* owned objects in seq order */
    size_t nobjs;
    size_t cap_objs;
    struct deql_obj **by_kind[DEQL_KINDS]; /* borrowed from objs, sorted by name */
    size_t nkind[DEQL_KINDS];
    size_t cap_kind[DEQL_KINDS];
    struct deql_instance **insts;         /* owned instances in order */
    struct deql_instance **insts_by_tmpl; /* the same, stably sorted by template name */
    size_t ninsts;
    size_t cap_insts;
    struct undo *undo;                    /* changes of the call under way */
    size_t nundo;
    size_t cap_undo;
    uint64_t next_seq;                    /* seq of the next new object */
    uint64_t generation;                  /* successful applies */
};

/* Where a statement is applied: at top level, or inside the expansion of a template. */
struct apply_ctx {
    const char *tmpl;  /* template being expanded, NULL at top level */
    char **objects;    /* "KIND Name" made by the expansion (owned) */
    size_t nobjects;
    size_t cap_objects;
};

static const char *const kind_words[DEQL_KINDS] = {
    "AGGREGATE", "COMMAND", "EVENT", "DECISION", "PROJECTION", "TEMPLATE", "EVENTSTORE",
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* Makes room for one more element of elem bytes in *arr (count used, *cap allocated). */
static void *grow(void *arr, size_t count, size_t *cap, size_t elem)
{
    if (count < *cap) return arr;
    *cap = *cap ? *cap * 2 : 8;
    return xrealloc(arr, *cap * elem);
}

static char *dup_str(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

/* A copy of text's span, NULL when the span is empty. */
static char *dup_span(const char *text, struct deql_span sp)
{
    return sp.len ? xstrndup(text + sp.off, sp.len) : NULL;
}

static bool name_ok(const char *s)
{
    if (!s || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) {
        return false;
    }
    size_t i = 1;
    for (; s[i]; i++) {
        char c = s[i];
        bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return i < DEQL_NAME_MAX;
}

/* Fills err at st's position with a formatted sentence; returns rc. */
static int fail(struct deql_error *err, const struct deql_stmt *st, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct deql_error *err, const struct deql_stmt *st, int rc, const char *fmt, ...)
{
    err->line = st ? st->line : 1;
    err->column = st ? st->column : 1;
    err->expected[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return rc;
}

static int check_name(struct deql_error *err, const struct deql_stmt *st, const char *what,
                      const char *name)
{
    if (name_ok(name)) return 0;
    return fail(err, st, ERR_INVALID,
                "%s name '%.40s' is not a name of the form [A-Za-z_][A-Za-z0-9_]{0,127}.", what,
                name ? name : "");
}

/* Field names valid and unique, at most one KEY. */
static int check_fields(struct deql_error *err, const struct deql_stmt *st, const char *what,
                        const struct deql_field *f, size_t n)
{
    size_t keys = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = check_name(err, st, what, f[i].name);
        if (rc < 0) return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(f[i].name, f[j].name) == 0) {
                return fail(err, st, ERR_INVALID, "%s '%.60s' is declared twice.", what,
                            f[i].name);
            }
        }
        keys += f[i].is_key;
    }
    if (keys > 1) return fail(err, st, ERR_INVALID, "At most one field may be marked KEY.");
    return 0;
}

static struct deql_field *copy_fields(const struct deql_field *src, size_t n, size_t extra)
{
    if (n + extra == 0) return NULL;
    struct deql_field *f = xcalloc(n + extra, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f[i] = src[i];
        f[i].name = dup_str(src[i].name);
        f[i].type = dup_str(src[i].type);
    }
    return f;
}

static void free_obj(struct deql_obj *o)
{
    if (!o) return;
    for (size_t i = 0; i < o->nfields; i++) {
        free(o->fields[i].name);
        free(o->fields[i].type);
    }
    free(o->fields);
    for (size_t i = 0; i < o->noptions; i++) {
        free(o->option_keys[i]);
        free(o->option_values[i]);
    }
    free(o->option_keys);
    free(o->option_values);
    for (size_t b = 0; b < o->dec.nbranches; b++) {
        struct deql_reg_branch *br = &o->dec.branches[b];
        for (size_t e = 0; e < br->nemits; e++) {
            for (size_t a = 0; a < br->emits[e].nassigns; a++) {
                free(br->emits[e].assigns[a].field);
                free(br->emits[e].assigns[a].expr);
            }
            free(br->emits[e].assigns);
            free(br->emits[e].event);
        }
        free(br->emits);
        free(br->label);
        free(br->guard);
        free(br->text);
    }
    free(o->dec.branches);
    free(o->dec.aggregate);
    free(o->dec.command);
    free(o->dec.state);
    free(o->name);
    free(o->text);
    free(o->body);
    free(o->template_name);
    free(o);
}

static void free_instance(struct deql_instance *in)
{
    if (!in) return;
    for (size_t i = 0; i < in->nobjects; i++) free(in->objects[i]);
    free(in->objects);
    free(in->template_name);
    free(in->params_json);
    free(in->text);
    free(in);
}

/* ---- branch ids ------------------------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Writes the id of branch text s[0..len) (registry.h) into id. */
static void branch_id(const char *s, size_t len, char id[DEQL_BRANCH_ID_BYTES + 1])
{
    struct buf norm;
    buf_init(&norm);
    bool pending = false;
    for (size_t i = 0; i < len; i++) {
        if (is_blank(s[i])) {
            pending = norm.len > 0;
            continue;
        }
        if (pending) buf_addc(&norm, ' ');
        pending = false;
        buf_addc(&norm, s[i]);
    }
    struct hash_part part = {norm.ptr ? norm.ptr : "", norm.len};
    uint8_t digest[HASH_SHA256_LEN];
    hash_sha256(&part, 1, digest);
    id[0] = 'b';
    id[1] = '_';
    hash_hex(digest, 8, id + 2);
    buf_fini(&norm);
}

/* ---- building objects from statements --------------------------------------------------- */

static int build_decision(const char *text, const struct deql_stmt *st, struct deql_obj *o,
                          struct deql_error *err)
{
    int rc = check_name(err, st, "Aggregate", st->decision.aggregate);
    if (rc == 0) rc = check_name(err, st, "Command", st->decision.command);
    if (rc < 0) return rc;
    o->dec.aggregate = dup_str(st->decision.aggregate);
    o->dec.command = dup_str(st->decision.command);
    o->dec.state = dup_span(text, st->decision.state);
    o->dec.nbranches = st->decision.branch_count;
    o->dec.branches = xcalloc(o->dec.nbranches, sizeof(*o->dec.branches));
    for (size_t b = 0; b < o->dec.nbranches; b++) {
        const struct deql_branch *sb = &st->decision.branches[b];
        struct deql_reg_branch *br = &o->dec.branches[b];
        br->label = dup_str(sb->label);
        br->guard = dup_span(text, sb->guard);
        br->text = dup_span(text, sb->text);
        branch_id(text + sb->text.off, sb->text.len, br->id);
        br->emits = xcalloc(sb->emit_count, sizeof(*br->emits));
        for (size_t e = 0; e < sb->emit_count; e++) {
            const struct deql_emit *se = &sb->emits[e];
            struct deql_reg_emit *em = &br->emits[e];
            br->nemits++;
            em->event = dup_str(se->event);
            em->assigns = xcalloc(se->assign_count ? se->assign_count : 1, sizeof(*em->assigns));
            for (size_t a = 0; a < se->assign_count; a++) {
                em->assigns[a].field = dup_str(se->assigns[a].field);
                em->assigns[a].expr = dup_span(text, se->assigns[a].expr);
                em->nassigns++;
                rc = check_name(err, st, "Assigned field", se->assigns[a].field);
                for (size_t k = 0; rc == 0 && k < a; k++) {
                    if (strcmp(se->assigns[a].field, se->assigns[k].field) == 0) {
                        rc = fail(err, st, ERR_INVALID, "SELECT EVENT %.60s assigns '%.60s' twice.",
                                  se->event, se->assigns[a].field);
                    }
                }
                if (rc < 0) return rc;
            }
            rc = check_name(err, st, "Event", se->event);
            if (rc < 0) return rc;
        }
    }
    return 0;
}

static int build_options(const char *text, const struct deql_stmt *st, struct deql_obj *o,
                         struct deql_error *err)
{
    o->option_keys = xcalloc(st->option_count ? st->option_count : 1, sizeof(char *));
    o->option_values = xcalloc(st->option_count ? st->option_count : 1, sizeof(char *));
    for (size_t i = 0; i < st->option_count; i++) {
        o->option_keys[i] = dup_str(st->options[i].key);
        o->option_values[i] = dup_span(text, st->options[i].value);
        o->noptions++;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(st->options[i].key, st->options[j].key) == 0) {
                return fail(err, st, ERR_INVALID, "Option '%.60s' is given twice.",
                            st->options[i].key);
            }
        }
    }
    return 0;
}

static int check_placeholders(const struct deql_obj *tmpl, const char *const *values,
                              struct buf *out, char *why, size_t why_cap);

/* A new object of kind from CREATE statement st of script text (all strings copied). */
static int build_obj(const char *text, const struct deql_stmt *st, enum deql_object kind,
                     struct deql_obj **out, struct deql_error *err)
{
    *out = NULL;
    int rc = check_name(err, st, kind_words[kind], st->name);
    if (rc < 0) return rc;
    struct deql_obj *o = xcalloc(1, sizeof(*o));
    o->kind = kind;
    o->name = dup_str(st->name);
    o->text = dup_span(text, st->text);
    o->fields = copy_fields(st->fields, st->field_count, 0);
    o->nfields = st->field_count;
    rc = check_fields(err, st, kind == DEQL_OBJ_TEMPLATE ? "Parameter" : "Field", st->fields,
                      st->field_count);
    if (rc < 0) goto out_free;
    if (kind == DEQL_OBJ_PROJECTION || kind == DEQL_OBJ_TEMPLATE) {
        o->body = st->body.len ? dup_span(text, st->body) : dup_str("");
    }
    if (kind == DEQL_OBJ_DECISION) rc = build_decision(text, st, o, err);
    if (kind == DEQL_OBJ_EVENTSTORE) rc = build_options(text, st, o, err);
    if (rc < 0) goto out_free;
    if (kind == DEQL_OBJ_TEMPLATE) {
        char why[DEQL_ERROR_MSG_BYTES];
        if (check_placeholders(o, NULL, NULL, why, sizeof why) < 0) {
            rc = fail(err, st, ERR_INVALID, "Template %.60s: %s", o->name, why);
            goto out_free;
        }
    }
    *out = o;
    return 0;
out_free:
    free_obj(o);
    return rc;
}

/* ---- lookup and the sorted indexes ------------------------------------------------------ */

/* Index in sorted array arr[0..n) of the first name >= name (*found: equal). */
static size_t lower_bound(struct deql_obj *const *arr, size_t n, const char *name, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(arr[mid]->name, name) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < n && strcmp(arr[lo]->name, name) == 0;
    return lo;
}

static struct deql_obj *find_obj(const struct deql_reg *r, enum deql_object kind,
                                 const char *name)
{
    if ((unsigned)kind >= DEQL_KINDS || !name) return NULL;
    bool found;
    size_t i = lower_bound(r->by_kind[kind], r->nkind[kind], name, &found);
    return found ? r->by_kind[kind][i] : NULL;
}

static void index_insert(struct deql_reg *r, struct deql_obj *o)
{
    enum deql_object k = o->kind;
    bool found;
    size_t i = lower_bound(r->by_kind[k], r->nkind[k], o->name, &found);
    r->by_kind[k] = grow(r->by_kind[k], r->nkind[k], &r->cap_kind[k], sizeof(*r->by_kind[k]));
    memmove(&r->by_kind[k][i + 1], &r->by_kind[k][i], (r->nkind[k] - i) * sizeof(void *));
    r->by_kind[k][i] = o;
    r->nkind[k]++;
}

/* Puts now where was is in the name index (same kind and name), or removes was (now NULL). */
static void index_swap(struct deql_reg *r, const struct deql_obj *was, struct deql_obj *now)
{
    enum deql_object k = was->kind;
    bool found;
    size_t i = lower_bound(r->by_kind[k], r->nkind[k], was->name, &found);
    if (now) {
        r->by_kind[k][i] = now;
        return;
    }
    memmove(&r->by_kind[k][i], &r->by_kind[k][i + 1], (r->nkind[k] - i - 1) * sizeof(void *));
    r->nkind[k]--;
}

static void log_change(struct deql_reg *r, bool is_instance, size_t slot, struct deql_obj *old)
{
    r->undo = grow(r->undo, r->nundo, &r->cap_undo, sizeof(*r->undo));
    r->undo[r->nundo++] = (struct undo){is_instance, slot, old};
}

static void add_obj(struct deql_reg *r, struct deql_obj *o)
{
    o->seq = r->next_seq++;
    r->objs = grow(r->objs, r->nobjs, &r->cap_objs, sizeof(*r->objs));
    r->objs[r->nobjs] = o;
    index_insert(r, o);
    log_change(r, false, r->nobjs++, NULL);
}

static void replace_obj(struct deql_reg *r, struct deql_obj *old, struct deql_obj *o)
{
    size_t slot = 0;
    while (r->objs[slot] != old) slot++;
    o->seq = old->seq;
    r->objs[slot] = o;
    index_swap(r, old, o);
    log_change(r, false, slot, old);
}

static void add_instance(struct deql_reg *r, struct deql_instance *in)
{
    r->insts = grow(r->insts, r->ninsts, &r->cap_insts, sizeof(*r->insts));
    r->insts_by_tmpl = xrealloc(r->insts_by_tmpl, r->cap_insts * sizeof(*r->insts_by_tmpl));
    r->insts[r->ninsts] = in;
    size_t i = r->ninsts;
    while (i > 0 && strcmp(r->insts_by_tmpl[i - 1]->template_name, in->template_name) > 0) {
        r->insts_by_tmpl[i] = r->insts_by_tmpl[i - 1];
        i--;
    }
    r->insts_by_tmpl[i] = in;
    r->ninsts++;
    log_change(r, true, 0, NULL);
}

static void remove_last_instance(struct deql_reg *r)
{
    struct deql_instance *in = r->insts[--r->ninsts];
    size_t i = 0;
    while (r->insts_by_tmpl[i] != in) i++;
    memmove(&r->insts_by_tmpl[i], &r->insts_by_tmpl[i + 1], (r->ninsts - i) * sizeof(void *));
    free_instance(in);
}

/* Undoes the logged changes back to mark, newest first. */
static void rollback(struct deql_reg *r, size_t mark, uint64_t seq_mark)
{
    while (r->nundo > mark) {
        struct undo u = r->undo[--r->nundo];
        if (u.is_instance) {
            remove_last_instance(r);
            continue;
        }
        struct deql_obj *cur = r->objs[u.slot];
        index_swap(r, cur, u.old);
        if (u.old) {
            r->objs[u.slot] = u.old;
        } else {
            r->nobjs--; /* an added object is always the last: adds are undone newest first */
        }
        free_obj(cur);
    }
    r->next_seq = seq_mark;
}

/* Keeps every logged change: frees the replaced objects and empties the log. */
static void commit(struct deql_reg *r)
{
    for (size_t i = 0; i < r->nundo; i++) free_obj(r->undo[i].old);
    r->nundo = 0;
}

/* ---- applying statements ---------------------------------------------------------------- */

static int apply_one(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                     struct apply_ctx *ctx, struct deql_error *err);

/* Records "KIND Name" as made by the expansion under way (once). */
static void note_made(struct apply_ctx *ctx, const struct deql_obj *o)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s %s", kind_words[o->kind], o->name);
    for (size_t i = 0; i < ctx->nobjects; i++) {
        if (strcmp(ctx->objects[i], b.ptr) == 0) {
            buf_fini(&b);
            return;
        }
    }
    ctx->objects = grow(ctx->objects, ctx->nobjects, &ctx->cap_objects, sizeof(char *));
    ctx->objects[ctx->nobjects++] = buf_steal(&b, NULL);
}

/* Whether an existing object may be changed where ctx is (see the invariants above). */
static int check_changeable(const struct deql_obj *old, const struct apply_ctx *ctx,
                            const struct deql_stmt *st, struct deql_error *err)
{
    if (!ctx->tmpl && old->template_name) {
        return fail(err, st, ERR_INVALID,
                    "%s %.60s was made by template %.60s; only a template can change it.",
                    kind_words[old->kind], old->name, old->template_name);
    }
    if (ctx->tmpl && !old->template_name && st->kind == DEQL_ALTER) {
        return fail(err, st, ERR_INVALID,
                    "%s %.60s was not made by a template; a template cannot alter it.",
                    kind_words[old->kind], old->name);
    }
    return 0;
}

static bool same_fields(const struct deql_obj *a, const struct deql_obj *b)
{
    if (a->nfields != b->nfields) return false;
    for (size_t i = 0; i < a->nfields; i++) {
        const struct deql_field *x = &a->fields[i], *y = &b->fields[i];
        if (strcmp(x->name, y->name) != 0 || !x->type != !y->type ||
            (x->type && strcmp(x->type, y->type) != 0)) {
            return false;
        }
    }
    return true;
}

/* A template that has instances may only be "replaced" by the same parameters and body: its
 * instances must expand to what they made. */
static int check_template_replace(const struct deql_reg *r, const struct deql_obj *old,
                                  const struct deql_obj *o, const struct deql_stmt *st,
                                  struct deql_error *err)
{
    size_t n;
    deql_reg_instances(r, old->name, &n);
    if (n == 0 || (same_fields(old, o) && strcmp(old->body, o->body) == 0)) return 0;
    return fail(err, st, ERR_INVALID,
                "Template %.60s has %zu instance(s); it cannot be replaced by another one.",
                old->name, n);
}

static int apply_create(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                        struct apply_ctx *ctx, struct deql_error *err)
{
    enum deql_object kind = (enum deql_object)st->kind;
    if (ctx->tmpl && kind == DEQL_OBJ_TEMPLATE) {
        return fail(err, st, ERR_INVALID, "A template cannot create a template.");
    }
    struct deql_obj *o;
    int rc = build_obj(text, st, kind, &o, err);
    if (rc < 0) return rc;
    struct deql_obj *old = find_obj(r, kind, o->name);
    if (old && !st->or_replace) {
        rc = fail(err, st, ERR_EXISTS, "%s %.60s already exists (CREATE OR REPLACE replaces it).",
                  kind_words[kind], o->name);
    } else if (old) {
        rc = check_changeable(old, ctx, st, err);
        if (rc == 0 && kind == DEQL_OBJ_TEMPLATE) rc = check_template_replace(r, old, o, st, err);
    } else if (r->nobjs >= DEQL_REG_MAX_OBJECTS) {
        rc = fail(err, st, ERR_TOOBIG, "The registry holds DEQL_REG_MAX_OBJECTS (%d) objects.",
                  DEQL_REG_MAX_OBJECTS);
    }
    const struct deql_obj *d = kind == DEQL_OBJ_DECISION ? deql_reg_decision_for(r, o->dec.command)
                                                         : NULL;
    if (rc == 0 && d && d != old) {
        rc = fail(err, st, ERR_EXISTS, "Command %.60s already has a decision, %.60s.",
                  o->dec.command, d->name);
    }
    if (rc < 0) {
        free_obj(o);
        return rc;
    }
    o->template_name = dup_str(ctx->tmpl);
    if (old) {
        replace_obj(r, old, o);
    } else {
        add_obj(r, o);
    }
    if (ctx->tmpl) note_made(ctx, o);
    return 0;
}

/* Appends the canonical field list " (a TYPE KEY, ...)" of o to b (nothing without fields). */
static void add_field_list(struct buf *b, const struct deql_obj *o)
{
    for (size_t i = 0; i < o->nfields; i++) {
        const struct deql_field *f = &o->fields[i];
        buf_adds(b, i ? ", " : " (");
        buf_adds(b, f->name);
        if (f->type) buf_printf(b, " %s", f->type);
        if (f->is_key) buf_adds(b, " KEY");
        if (f->is_sensitive) buf_adds(b, " SENSITIVE");
        if (f->is_volatile) buf_adds(b, " VOLATILE");
    }
    if (o->nfields) buf_addc(b, ')');
}

static int apply_alter(struct deql_reg *r, const struct deql_stmt *st, struct apply_ctx *ctx,
                       struct deql_error *err)
{
    enum deql_object k = st->object;
    if (!st->is_add || (k != DEQL_OBJ_AGGREGATE && k != DEQL_OBJ_COMMAND && k != DEQL_OBJ_EVENT)) {
        return fail(err, st, ERR_INVALID,
                    "ALTER is not supported except ALTER AGGREGATE|COMMAND|EVENT ... ADD.");
    }
    int rc = check_name(err, st, kind_words[k], st->name);
    if (rc < 0) return rc;
    struct deql_obj *old = find_obj(r, k, st->name);
    if (!old) {
        return fail(err, st, ERR_NOTFOUND, "%s %.60s does not exist.", kind_words[k], st->name);
    }
    rc = check_changeable(old, ctx, st, err);
    for (size_t i = 0; rc == 0 && i < st->field_count; i++) {
        for (size_t j = 0; j < old->nfields; j++) {
            if (strcmp(old->fields[j].name, st->fields[i].name) == 0) {
                return fail(err, st, ERR_EXISTS, "%s %.60s already has field %.60s.",
                            kind_words[k], old->name, st->fields[i].name);
            }
        }
    }
    if (rc < 0) return rc;
    struct deql_obj *o = xcalloc(1, sizeof(*o));
    o->kind = k;
    o->name = dup_str(old->name);
    o->template_name = dup_str(old->template_name);
    o->nfields = old->nfields + st->field_count;
    o->fields = copy_fields(old->fields, old->nfields, st->field_count);
    for (size_t i = 0; i < st->field_count; i++) {
        struct deql_field *f = &o->fields[old->nfields + i];
        *f = st->fields[i];
        f->name = dup_str(st->fields[i].name);
        f->type = dup_str(st->fields[i].type);
    }
    rc = check_fields(err, st, "Field", o->fields, o->nfields);
    if (rc < 0) {
        free_obj(o);
        return rc;
    }
    struct buf t;
    buf_init(&t);
    buf_printf(&t, "CREATE %s %s", kind_words[k], o->name);
    add_field_list(&t, o);
    o->text = buf_steal(&t, NULL);
    replace_obj(r, old, o);
    return 0;
}

int deql_reg_apply(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                   struct deql_error *err)
{
    struct apply_ctx top = {0};
    uint64_t seq_mark = r->next_seq;
    int rc = apply_one(r, text, st, &top, err);
    if (rc < 0) {
        rollback(r, 0, seq_mark);
        return rc;
    }
    commit(r);
    r->generation++;
    return 0;
}

int deql_reg_apply_script(struct deql_reg *r, const char *script, size_t len, size_t *applied,
                          struct deql_error *err)
{
    if (applied) *applied = 0;
    struct deql_script *s;
    int rc = deql_parse(script, len, &s, err);
    if (rc < 0) return rc;
    struct apply_ctx top = {0};
    uint64_t seq_mark = r->next_seq;
    for (size_t i = 0; i < s->count && rc == 0; i++) {
        rc = apply_one(r, script, &s->stmts[i], &top, err);
    }
    if (rc < 0) {
        rollback(r, 0, seq_mark);
    } else {
        commit(r);
        r->generation += s->count;
        if (applied) *applied = s->count;
    }
    deql_script_free(s);
    return rc;
}

/* ---- templates -------------------------------------------------------------------------- */

static size_t param_index(const struct deql_obj *tmpl, const char *name, size_t len)
{
    for (size_t i = 0; i < tmpl->nfields; i++) {
        if (strlen(tmpl->fields[i].name) == len && memcmp(tmpl->fields[i].name, name, len) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

static bool is_name_char(char c)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Checks every `{{ Param }}` of tmpl's body names a parameter; with values (one per parameter)
 * also writes the expansion to out. Returns 0, ERR_INVALID (why says which placeholder) or
 * ERR_TOOBIG (an expansion longer than DEQL_MAX_SCRIPT_BYTES). */
static int check_placeholders(const struct deql_obj *tmpl, const char *const *values,
                              struct buf *out, char *why, size_t why_cap)
{
    const char *s = tmpl->body;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        if (!(s[i] == '{' && i + 1 < len && s[i + 1] == '{')) {
            if (values) buf_addc(out, s[i]);
            i++;
            continue;
        }
        size_t p = i + 2;
        while (p < len && is_blank(s[p])) p++;
        size_t name_at = p;
        while (p < len && is_name_char(s[p])) p++;
        size_t name_len = p - name_at;
        while (p < len && is_blank(s[p])) p++;
        if (name_len == 0 || p + 1 >= len || s[p] != '}' || s[p + 1] != '}') {
            snprintf(why, why_cap, "a '{{' is not a placeholder {{Param}}.");
            return ERR_INVALID;
        }
        size_t k = param_index(tmpl, s + name_at, name_len);
        if (k == SIZE_MAX) {
            snprintf(why, why_cap, "placeholder {{%.*s}} names no parameter.",
                     (int)(name_len > 60 ? 60 : name_len), s + name_at);
            return ERR_INVALID;
        }
        if (values) buf_adds(out, values[k]);
        if (values && out->len > DEQL_MAX_SCRIPT_BYTES) {
            snprintf(why, why_cap, "its expansion is longer than DEQL_MAX_SCRIPT_BYTES.");
            return ERR_TOOBIG;
        }
        i = p + 2;
    }
    return 0;
}

/* The text a parameter value stands for: a quoted string's content ('' -> '), else as written. */
static char *value_text(const char *s, size_t len)
{
    bool quoted = len >= 2 && s[0] == '\'' && s[len - 1] == '\'';
    for (size_t i = 1; quoted && i + 1 < len; i++) {
        if (s[i] != '\'') continue;
        if (i + 2 < len && s[i + 1] == '\'') {
            i++;
        } else {
            quoted = false; /* two strings, or a quote outside one: not one literal */
        }
    }
    if (!quoted) return xstrndup(s, len);
    struct buf b;
    buf_init(&b);
    buf_reserve(&b, len);
    for (size_t i = 1; i + 1 < len; i++) {
        buf_addc(&b, s[i]);
        if (s[i] == '\'') i++;
    }
    return buf_steal(&b, NULL);
}

/* One value per template parameter from USE TEMPLATE's options (values[i] owned, NULL when
 * missing); params_json gets {"Param":"value as written",...} in the statement's order. */
static int bind_params(const char *text, const struct deql_stmt *st, const struct deql_obj *tmpl,
                       char **values, char **params_json, struct deql_error *err)
{
    json_t *obj = json_object();
    int rc = 0;
    for (size_t i = 0; i < st->option_count && rc == 0; i++) {
        const struct deql_option *op = &st->options[i];
        size_t k = param_index(tmpl, op->key, strlen(op->key));
        if (k == SIZE_MAX) {
            rc = fail(err, st, ERR_INVALID, "Template %.60s has no parameter %.60s.", tmpl->name,
                      op->key);
        } else if (values[k]) {
            rc = fail(err, st, ERR_INVALID, "Parameter %.60s is given twice.", op->key);
        } else {
            values[k] = value_text(text + op->value.off, op->value.len);
            json_object_set_new(obj, op->key,
                                json_stringn(text + op->value.off, op->value.len));
        }
    }
    for (size_t k = 0; k < tmpl->nfields && rc == 0; k++) {
        if (!values[k]) {
            rc = fail(err, st, ERR_INVALID, "Template %.60s needs parameter %.60s.", tmpl->name,
                      tmpl->fields[k].name);
        }
    }
    if (rc == 0) *params_json = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return rc;
}

/* Applies the parsed expansion's statements under ctx; err at st's position names the failing
 * statement of the expansion. */
static int apply_expansion(struct deql_reg *r, const struct deql_stmt *st, const char *exp,
                           struct apply_ctx *ctx, struct deql_error *err)
{
    struct deql_script *s;
    struct deql_error inner;
    int rc = deql_parse(exp, strlen(exp), &s, &inner);
    if (rc == 0) {
        for (size_t i = 0; rc == 0 && i < s->count; i++) {
            rc = apply_one(r, exp, &s->stmts[i], ctx, &inner);
        }
        deql_script_free(s);
    }
    if (rc < 0) {
        fail(err, st, rc, "Template %.40s, line %d column %d of its expansion: %.80s", ctx->tmpl,
             inner.line, inner.column, inner.msg);
    }
    return rc;
}

static int apply_use(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                     struct deql_error *err)
{
    int rc = check_name(err, st, "TEMPLATE", st->name);
    if (rc < 0) return rc;
    const struct deql_obj *tmpl = find_obj(r, DEQL_OBJ_TEMPLATE, st->name);
    if (!tmpl) return fail(err, st, ERR_NOTFOUND, "Template %.60s does not exist.", st->name);
    char **values = xcalloc(tmpl->nfields + 1, sizeof(char *));
    char *params_json = NULL;
    struct buf exp;
    buf_init(&exp);
    struct apply_ctx ctx = {.tmpl = tmpl->name};
    rc = bind_params(text, st, tmpl, values, &params_json, err);
    if (rc == 0) {
        char why[DEQL_ERROR_MSG_BYTES];
        rc = check_placeholders(tmpl, (const char *const *)values, &exp, why, sizeof why);
        if (rc < 0) fail(err, st, rc, "Template %.60s: %s", tmpl->name, why);
    }
    if (rc == 0) rc = apply_expansion(r, st, exp.ptr ? exp.ptr : "", &ctx, err);
    if (rc == 0) {
        struct deql_instance *in = xcalloc(1, sizeof(*in));
        in->template_name = dup_str(tmpl->name);
        in->params_json = params_json;
        params_json = NULL;
        in->text = dup_span(text, st->text);
        in->objects = ctx.objects;
        in->nobjects = ctx.nobjects;
        ctx.objects = NULL;
        ctx.nobjects = 0;
        add_instance(r, in);
    }
    for (size_t i = 0; i < ctx.nobjects; i++) free(ctx.objects[i]);
    free(ctx.objects);
    for (size_t k = 0; k < tmpl->nfields; k++) free(values[k]);
    free(values);
    free(params_json);
    buf_fini(&exp);
    return rc;
}

static int apply_one(struct deql_reg *r, const char *text, const struct deql_stmt *st,
                     struct apply_ctx *ctx, struct deql_error *err)
{
    switch (st->kind) {
    case DEQL_CREATE_AGGREGATE:
    case DEQL_CREATE_COMMAND:
    case DEQL_CREATE_EVENT:
    case DEQL_CREATE_DECISION:
    case DEQL_CREATE_PROJECTION:
    case DEQL_CREATE_TEMPLATE:
    case DEQL_CREATE_EVENTSTORE:
        return apply_create(r, text, st, ctx, err);
    case DEQL_ALTER:
        return apply_alter(r, st, ctx, err);
    case DEQL_USE_TEMPLATE:
        if (ctx->tmpl) {
            return fail(err, st, ERR_INVALID, "A template expansion cannot use a template.");
        }
        return apply_use(r, text, st, err);
    default:
        return fail(err, st, ERR_INVALID,
                    "%s is not a definition; the registry takes CREATE, ALTER ... ADD and USE "
                    "TEMPLATE.",
                    deql_stmt_kind_name(st->kind));
    }
}

/* ---- life cycle and lookups ------------------------------------------------------------- */

struct deql_reg *deql_reg_new(void)
{
    return xcalloc(1, sizeof(struct deql_reg));
}

void deql_reg_free(struct deql_reg *r)
{
    if (!r) return;
    commit(r);
    for (size_t i = 0; i < r->nobjs; i++) free_obj(r->objs[i]);
    for (size_t i = 0; i < r->ninsts; i++) free_instance(r->insts[i]);
    for (int k = 0; k < DEQL_KINDS; k++) free(r->by_kind[k]);
    free(r->objs);
    free(r->insts);
    free(r->insts_by_tmpl);
    free(r->undo);
    free(r);
}

uint64_t deql_reg_generation(const struct deql_reg *r)
{
    return r->generation;
}

const struct deql_obj *deql_reg_find(const struct deql_reg *r, enum deql_object kind,
                                     const char *name)
{
    return find_obj(r, kind, name);
}

const struct deql_obj *deql_reg_decision_for(const struct deql_reg *r, const char *command)
{
    for (size_t i = 0; command && i < r->nkind[DEQL_OBJ_DECISION]; i++) {
        const struct deql_obj *d = r->by_kind[DEQL_OBJ_DECISION][i];
        if (strcmp(d->dec.command, command) == 0) return d;
    }
    return NULL;
}

const struct deql_obj *const *deql_reg_list(const struct deql_reg *r, enum deql_object kind,
                                            size_t *n)
{
    if ((unsigned)kind >= DEQL_KINDS) {
        *n = 0;
        return NULL;
    }
    *n = r->nkind[kind];
    return (const struct deql_obj *const *)r->by_kind[kind];
}

const struct deql_instance *const *deql_reg_instances(const struct deql_reg *r,
                                                      const char *template_name, size_t *n)
{
    if (!template_name) {
        *n = r->ninsts;
        return (const struct deql_instance *const *)r->insts;
    }
    size_t lo = 0;
    while (lo < r->ninsts && strcmp(r->insts_by_tmpl[lo]->template_name, template_name) < 0) {
        lo++;
    }
    size_t hi = lo;
    while (hi < r->ninsts && strcmp(r->insts_by_tmpl[hi]->template_name, template_name) == 0) {
        hi++;
    }
    *n = hi - lo;
    return (const struct deql_instance *const *)(r->insts_by_tmpl ? r->insts_by_tmpl + lo : NULL);
}

size_t deql_reg_key_field(const struct deql_obj *command)
{
    for (size_t i = 0; i < command->nfields; i++) {
        if (command->fields[i].is_key) return i;
    }
    return 0;
}

void deql_reg_counts(const struct deql_reg *r, size_t out[DEQL_OBJ_EVENTSTORE + 1])
{
    for (int k = 0; k < DEQL_KINDS; k++) out[k] = r->nkind[k];
}
