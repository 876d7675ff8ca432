/* j17 specs: parses and checks a spec document, reporting every problem with its dotted path,
 * and builds the immutable struct j17_spec the dialect reads (aggregate and event types with
 * compiled schemas, agent and target types, singletons, the cache module), plus compat and
 * event data validation. Implications live in spec_imply.c; sagas, projections and listeners
 * in spec_more.c; identifiers in ident.c.
 * Invariants: a spec exists only when it compiled without a problem; it never changes after
 * that; aggs and each aggregate's evts are sorted by name (binary search); every borrowed
 * pointer points into s->doc, which lives as long as the spec. */
#include "dialect/j17/spec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/spec_int.h"
#include "util/errors.h"

static const char *const TOP_MEMBERS[] = {
    "aggregate_types", "agent_types", "target_types", "singletons", "modules",
    "geo_types",       "projections", "listeners",    NULL,
};

/* ---- problems and paths ---- */

void j17_problem(struct j17_problems *pr, const char *path, const char *fmt, ...)
{
    if (pr->count == J17_PROBLEMS_MAX) {
        pr->more = true;
        return;
    }
    struct j17_problem *p = &pr->items[pr->count++];
    snprintf(p->path, sizeof p->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
}

void j17_path_cat(char *dst, const char *a, const char *b, const char *c)
{
    const char *parts[] = {a, b, c};
    size_t len = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(parts[i]);
        if (n > J17_PATH - 1 - len) n = J17_PATH - 1 - len;
        memmove(dst + len, parts[i], n);
        len += n;
    }
    dst[len] = '\0';
}

void j17_path_member(char *dst, const char *base, const char *member)
{
    j17_path_cat(dst, base, *base ? "." : "", member);
}

void j17_path_index(char *dst, const char *base, size_t i)
{
    char index[24];
    snprintf(index, sizeof index, "[%zu]", i);
    j17_path_cat(dst, base, index, "");
}

void j17_check_members(struct j17_cc *c, const json_t *obj, const char *path,
                       const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)obj, key, v) {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0) i++;
        if (known[i]) continue;
        char at[J17_PATH];
        j17_path_member(at, path, key);
        j17_problem(c->pr, at, "unknown member");
    }
}

/* ---- aggregate and event types ---- */

static int cmp_agg(const void *a, const void *b)
{
    return strcmp(((const struct j17_agg *)a)->name, ((const struct j17_agg *)b)->name);
}

static int cmp_evt(const void *a, const void *b)
{
    return strcmp(((const struct j17_evt *)a)->name, ((const struct j17_evt *)b)->name);
}

/* Checks a name used as a key at path; false (with a problem) when it is not one. */
static bool check_name(struct j17_cc *c, const char *name, const char *path)
{
    if (j17_name_ok(name, strlen(name))) return true;
    j17_problem(c->pr, path, "not a name: [a-z][a-z0-9_]{0,63}");
    return false;
}

static void compile_schema(struct j17_cc *c, struct j17_evt *e, const json_t *j, const char *path)
{
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    struct schema_error err;
    int rc = schema_compile(text, strlen(text), &e->schema, &err);
    free(text);
    if (rc == 0) return;
    struct buf dotted;
    buf_init(&dotted);
    schema_pointer_dotted(err.pointer, strlen(err.pointer), &dotted);
    char at[J17_PATH];
    j17_path_member(at, path, dotted.len ? dotted.ptr : "");
    if (!dotted.len) snprintf(at, sizeof at, "%s", path);
    buf_fini(&dotted);
    j17_problem(c->pr, at, "%s", err.msg);
}

static void compile_handler(struct j17_cc *c, const json_t *j, const char *path)
{
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    struct tick_plan *plan;
    struct tick_error err;
    int rc = tick_compile(text, strlen(text), NULL, &plan, &err);
    free(text);
    tick_plan_free(plan);
    if (rc == 0) return;
    char at[J17_PATH];
    j17_path_cat(at, path, err.path + 1, "");
    j17_problem(c->pr, at, "%s", err.msg);
}

static void compile_evt(struct j17_cc *c, struct j17_evt *e, const char *path)
{
    static const char *const known[] = {"schema", "handler", "implications", NULL};
    char at[J17_PATH];
    if (!json_is_object(e->def)) {
        j17_problem(c->pr, path, "an event type is an object {schema, handler, implications?}");
        return;
    }
    j17_check_members(c, e->def, path, known);
    json_t *schema = json_object_get(e->def, "schema");
    j17_path_member(at, path, "schema");
    if (!schema) {
        j17_problem(c->pr, at, "missing: every event type has a JSON Schema for its data");
    } else {
        compile_schema(c, e, schema, at);
    }
    json_t *handler = json_object_get(e->def, "handler");
    j17_path_member(at, path, "handler");
    if (!handler) {
        j17_problem(c->pr, at, "missing: an array of Tick operations ([] changes nothing)");
    } else {
        compile_handler(c, handler, at);
    }
}

static void compile_agg(struct j17_cc *c, struct j17_agg *a, const json_t *def, const char *path)
{
    static const char *const known[] = {"events", NULL};
    char at[J17_PATH];
    json_t *events = json_object_get(def, "events");
    if (!json_is_object(def) || !json_is_object(events)) {
        j17_problem(c->pr, path, "an aggregate type is an object {\"events\": {...}}");
        return;
    }
    j17_check_members(c, def, path, known);
    j17_path_member(at, path, "events");
    if (json_object_size(events) > J17_EVENT_TYPES_MAX) {
        j17_problem(c->pr, at, "more than %d event types", J17_EVENT_TYPES_MAX);
        return;
    }
    a->evts = xcalloc(json_object_size(events) + 1, sizeof(*a->evts));
    const char *key;
    json_t *v;
    json_object_foreach (events, key, v) {
        char epath[J17_PATH];
        j17_path_member(epath, at, key);
        if (!check_name(c, key, epath)) continue;
        struct j17_evt *e = &a->evts[a->evt_count++];
        snprintf(e->name, sizeof e->name, "%s", key);
        e->agg = a;
        e->def = v;
        compile_evt(c, e, epath);
    }
    qsort(a->evts, a->evt_count, sizeof(*a->evts), cmp_evt);
}

static void compile_aggs(struct j17_cc *c, const json_t *j)
{
    if (!j) {
        j17_problem(c->pr, "aggregate_types", "missing: the spec's aggregate types");
        return;
    }
    if (!json_is_object(j)) {
        j17_problem(c->pr, "aggregate_types", "an object {type: {\"events\": {...}}}");
        return;
    }
    if (json_object_size(j) > J17_AGG_TYPES_MAX) {
        j17_problem(c->pr, "aggregate_types", "more than %d aggregate types", J17_AGG_TYPES_MAX);
        return;
    }
    struct j17_spec *s = c->s;
    s->aggs = xcalloc(json_object_size(j) + 1, sizeof(*s->aggs));
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)j, key, v) {
        char at[J17_PATH];
        j17_path_member(at, "aggregate_types", key);
        if (!check_name(c, key, at)) continue;
        struct j17_agg *a = &s->aggs[s->agg_count++];
        snprintf(a->name, sizeof a->name, "%s", key);
        compile_agg(c, a, v, at);
    }
    qsort(s->aggs, s->agg_count, sizeof(*s->aggs), cmp_agg);
    /* evts point back at their aggregate: fix them up after the sort moved it */
    for (size_t i = 0; i < s->agg_count; i++) {
        for (size_t k = 0; k < s->aggs[i].evt_count; k++) s->aggs[i].evts[k].agg = &s->aggs[i];
    }
}

/* Pass 2: implications, once every type is known. */
static void compile_all_imps(struct j17_cc *c)
{
    for (size_t i = 0; i < c->s->agg_count; i++) {
        struct j17_agg *a = &c->s->aggs[i];
        for (size_t k = 0; k < a->evt_count; k++) {
            struct j17_evt *e = &a->evts[k];
            json_t *imps = json_is_object(e->def) ? json_object_get(e->def, "implications") : NULL;
            if (!imps) continue;
            char at[J17_PATH];
            snprintf(at, sizeof at, "aggregate_types.%s.events.%s.implications", a->name,
                     e->name);
            j17_imps_compile(c, e, imps, at);
        }
    }
}

/* ---- names lists, modules ---- */

/* An optional (or required) array of distinct names, at most max. Returns it, or NULL. */
static json_t *compile_names(struct j17_cc *c, json_t *j, const char *path, size_t max,
                             bool is_required)
{
    if (!j) {
        if (is_required) j17_problem(c->pr, path, "missing: an array of type names");
        return NULL;
    }
    if (!json_is_array(j)) {
        j17_problem(c->pr, path, "an array of names");
        return NULL;
    }
    if (json_array_size(j) > max) {
        j17_problem(c->pr, path, "more than %zu names", max);
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach (j, i, v) {
        char at[J17_PATH];
        j17_path_index(at, path, i);
        if (!json_is_string(v) || !j17_name_ok(json_string_value(v), json_string_length(v))) {
            j17_problem(c->pr, at, "not a name: [a-z][a-z0-9_]{0,63}");
            continue;
        }
        for (size_t k = 0; k < i; k++) {
            if (json_equal(v, json_array_get(j, k))) j17_problem(c->pr, at, "listed twice");
        }
    }
    return j;
}

static void compile_cache(struct j17_cc *c, const json_t *j)
{
    const char *path = "modules.cache";
    if (!json_is_array(j)) {
        j17_problem(c->pr, path, "an array of aggregate types");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach (j, i, v) {
        struct j17_agg *a = NULL;
        if (json_is_string(v)) {
            struct slice name = {json_string_value(v), json_string_length(v)};
            a = (struct j17_agg *)j17_spec_agg(c->s, name);
        }
        char at[J17_PATH];
        j17_path_index(at, path, i);
        if (!a) {
            j17_problem(c->pr, at, "not an aggregate type of this spec");
            continue;
        }
        a->is_cached = true;
    }
}

static void compile_modules(struct j17_cc *c, const json_t *j)
{
    static const char *const known[] = {"cache", "sagas", NULL};
    if (!j) return;
    if (!json_is_object(j)) {
        j17_problem(c->pr, "modules", "an object {cache?, sagas?}");
        return;
    }
    j17_check_members(c, j, "modules", known);
    json_t *cache = json_object_get(j, "cache");
    if (cache) compile_cache(c, cache);
    json_t *sagas = json_object_get(j, "sagas");
    if (sagas) j17_sagas_compile(c, sagas, "modules.sagas");
}

static void compile_doc(struct j17_cc *c)
{
    json_t *doc = c->s->doc;
    if (json_object_get(doc, "spec") && json_object_size(doc) == 1) {
        j17_problem(c->pr, "spec", "send the spec itself, not wrapped in {\"spec\": ...}");
        return;
    }
    j17_check_members(c, doc, "", TOP_MEMBERS);
    compile_aggs(c, json_object_get(doc, "aggregate_types"));
    c->s->agents = compile_names(c, json_object_get(doc, "agent_types"), "agent_types",
                                 J17_AGENT_TYPES_MAX, true);
    c->s->targets = compile_names(c, json_object_get(doc, "target_types"), "target_types",
                                  J17_TARGET_TYPES_MAX, false);
    c->s->singletons = compile_names(c, json_object_get(doc, "singletons"), "singletons",
                                     J17_SINGLETONS_MAX, false);
    compile_modules(c, json_object_get(doc, "modules"));
    json_t *geo = json_object_get(doc, "geo_types");
    if (geo && !json_is_object(geo)) j17_problem(c->pr, "geo_types", "an object");
    compile_all_imps(c);
    json_t *projs = json_object_get(doc, "projections");
    if (projs) j17_projections_compile(c, projs, "projections");
    json_t *listeners = json_object_get(doc, "listeners");
    if (listeners) j17_listeners_compile(c, listeners, "listeners");
}

/* ---- compile, references ---- */

void j17_spec_options_default(struct j17_spec_options *opt)
{
    opt->schedule_min_ms = J17_SCHEDULE_MIN_MS;
}

static void spec_free(struct j17_spec *s)
{
    for (size_t i = 0; i < s->agg_count; i++) {
        struct j17_agg *a = &s->aggs[i];
        for (size_t k = 0; k < a->evt_count; k++) {
            schema_free(a->evts[k].schema);
            j17_imps_free(a->evts[k].imps, a->evts[k].imp_count);
            free(a->evts[k].imps);
        }
        free(a->evts);
    }
    free(s->aggs);
    j17_more_free(s);
    free(s->text);
    json_decref(s->doc);
    free(s);
}

int j17_spec_compile_ex(const char *text, size_t len, const struct j17_spec_options *opt,
                        struct j17_spec **out, struct j17_problems *pr)
{
    struct j17_problems scratch;
    struct j17_spec_options defaults;
    j17_spec_options_default(&defaults);
    if (!pr) pr = &scratch;
    memset(pr, 0, sizeof(*pr));
    *out = NULL;
    if (len > J17_SPEC_BYTES) {
        j17_problem(pr, "", "spec longer than %d bytes", J17_SPEC_BYTES);
        return ERR(ERR_TOOBIG);
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        j17_problem(pr, "", "not JSON (line %d, column %d): %s", jerr.line, jerr.column,
                    jerr.text);
        return ERR(ERR_INVALID);
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        j17_problem(pr, "", "a spec is a JSON object {aggregate_types, agent_types, ...}");
        return ERR(ERR_INVALID);
    }
    struct j17_spec *s = xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->doc = doc;
    struct j17_cc c = {.s = s, .pr = pr, .opt = opt ? opt : &defaults};
    compile_doc(&c);
    if (pr->count > 0) {
        spec_free(s);
        return ERR(ERR_INVALID);
    }
    s->text = json_dumps(doc, JSON_COMPACT);
    s->text_len = strlen(s->text);
    *out = s;
    return 0;
}

int j17_spec_compile(const char *text, size_t len, struct j17_spec **out,
                     struct j17_problems *pr)
{
    return j17_spec_compile_ex(text, len, NULL, out, pr);
}

void j17_spec_ref(struct j17_spec *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void j17_spec_unref(struct j17_spec *s)
{
    if (!s) return;
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) spec_free(s);
}

struct slice j17_spec_text(const struct j17_spec *s)
{
    return (struct slice){s->text, s->text_len};
}

/* ---- lookups ---- */

/* strcmp of a slice with a NUL-terminated name. */
static int cmp_slice(struct slice a, const char *name)
{
    size_t n = strlen(name);
    if (a.len == 0) return n ? -1 : 0;
    int r = memcmp(a.ptr, name, a.len < n ? a.len : n);
    if (r) return r;
    return (a.len > n) - (a.len < n);
}

const struct j17_agg *j17_spec_agg(const struct j17_spec *s, struct slice type)
{
    size_t lo = 0;
    size_t hi = s->agg_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_slice(type, s->aggs[mid].name);
        if (r == 0) return &s->aggs[mid];
        if (r < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

size_t j17_spec_agg_count(const struct j17_spec *s)
{
    return s->agg_count;
}

const struct j17_agg *j17_spec_agg_at(const struct j17_spec *s, size_t i)
{
    return i < s->agg_count ? &s->aggs[i] : NULL;
}

const char *j17_agg_name(const struct j17_agg *a)
{
    return a->name;
}

bool j17_agg_cached(const struct j17_agg *a)
{
    return a->is_cached;
}

const struct j17_evt *j17_agg_event(const struct j17_agg *a, struct slice event_type)
{
    size_t lo = 0;
    size_t hi = a->evt_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_slice(event_type, a->evts[mid].name);
        if (r == 0) return &a->evts[mid];
        if (r < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

const struct j17_evt *j17_spec_evt(const struct j17_spec *s, const char *agg, const char *evt)
{
    const struct j17_agg *a = j17_spec_agg(s, (struct slice){agg, strlen(agg)});
    return a ? j17_agg_event(a, (struct slice){evt, strlen(evt)}) : NULL;
}

const char *j17_evt_name(const struct j17_evt *e)
{
    return e->name;
}

static bool in_names(const json_t *arr, struct slice name)
{
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        if (json_string_length(v) == name.len &&
            memcmp(json_string_value(v), name.ptr, name.len) == 0) {
            return true;
        }
    }
    return false;
}

bool j17_spec_agent_type(const struct j17_spec *s, struct slice type)
{
    return in_names(s->agents, type);
}

bool j17_spec_target_type(const struct j17_spec *s, struct slice type)
{
    return in_names(s->targets, type);
}

bool j17_spec_singleton(const struct j17_spec *s, struct slice id)
{
    if (id.len == 6 && memcmp(id.ptr, "global", 6) == 0) return true;
    return s && in_names(s->singletons, id);
}

void j17_agg_handlers(const struct j17_agg *a, struct buf *out)
{
    buf_addc(out, '{');
    for (size_t i = 0; i < a->evt_count; i++) {
        if (i) buf_addc(out, ',');
        buf_add_json_str(out, a->evts[i].name, strlen(a->evts[i].name));
        buf_addc(out, ':');
        char *h = json_dumps(json_object_get(a->evts[i].def, "handler"),
                             JSON_ENCODE_ANY | JSON_COMPACT);
        buf_adds(out, h);
        free(h);
    }
    buf_addc(out, '}');
}

/* ---- compat ---- */

static void compat_required(const json_t *o, const json_t *n, const char *path,
                            struct j17_problems *pr)
{
    json_t *oreq = json_object_get(o, "required");
    size_t i;
    json_t *v;
    json_array_foreach (json_object_get(n, "required"), i, v) {
        size_t k;
        json_t *w;
        bool was = false;
        json_array_foreach (oreq, k, w) {
            was = was || json_equal(v, w);
        }
        if (!was && json_is_string(v)) {
            j17_problem(pr, path, "\"%.64s\" added to required: events written before lack it",
                        json_string_value(v));
        }
    }
}

static void compat_properties(const json_t *o, const json_t *n, const char *path,
                              struct j17_problems *pr)
{
    json_t *nprops = json_object_get(n, "properties");
    const char *key;
    json_t *oprop;
    json_object_foreach (json_object_get(o, "properties"), key, oprop) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        json_t *nprop = json_object_get(nprops, key);
        if (!nprop) {
            j17_problem(pr, at, "property removed");
            continue;
        }
        json_t *ot = json_object_get(oprop, "type");
        json_t *nt = json_object_get(nprop, "type");
        if (ot && !json_equal(ot, nt)) {
            char *a = json_dumps(ot, JSON_ENCODE_ANY | JSON_COMPACT);
            char *b = nt ? json_dumps(nt, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            j17_path_member(at, at, "type");
            j17_problem(pr, at, "type changed from %.48s to %.48s", a, b ? b : "(none)");
            free(a);
            free(b);
        }
    }
}

static void compat_evt(const struct j17_evt *o, const struct j17_evt *n, const char *path,
                       struct j17_problems *pr)
{
    json_t *os = json_object_get(o->def, "schema");
    json_t *ns = json_object_get(n->def, "schema");
    char at[J17_PATH];
    j17_path_member(at, path, "schema.required");
    compat_required(os, ns, at, pr);
    j17_path_member(at, path, "schema.properties");
    compat_properties(os, ns, at, pr);
}

int j17_spec_compat(const struct j17_spec *old, const struct j17_spec *new,
                    struct j17_problems *pr)
{
    memset(pr, 0, sizeof(*pr));
    for (size_t i = 0; i < old->agg_count; i++) {
        const struct j17_agg *oa = &old->aggs[i];
        char at[J17_PATH];
        j17_path_member(at, "aggregate_types", oa->name);
        const struct j17_agg *na = j17_spec_agg(new, (struct slice){oa->name, strlen(oa->name)});
        if (!na) {
            j17_problem(pr, at, "aggregate type removed");
            continue;
        }
        for (size_t k = 0; k < oa->evt_count; k++) {
            const struct j17_evt *oe = &oa->evts[k];
            char epath[J17_PATH];
            j17_path_cat(epath, at, ".events.", oe->name);
            const struct j17_evt *ne =
                j17_agg_event(na, (struct slice){oe->name, strlen(oe->name)});
            if (!ne) {
                j17_problem(pr, epath, "event type removed");
                continue;
            }
            compat_evt(oe, ne, epath, pr);
        }
    }
    return pr->count ? ERR(ERR_CONFLICT) : 0;
}

/* ---- validation ---- */

int j17_evt_validate(const struct j17_evt *e, const json_t *data, char *path, size_t path_cap,
                     char *msg, size_t msg_cap)
{
    char *text = data ? json_dumps(data, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    struct schema_result r;
    schema_result_init(&r);
    int rc = schema_validate(e->schema, text ? text : "null", text ? strlen(text) : 4, &r);
    free(text);
    if (rc < 0) {
        struct buf dotted;
        buf_init(&dotted);
        buf_adds(&dotted, "data");
        const char *ptr = r.pointer.len ? r.pointer.ptr : "";
        if (*ptr) buf_addc(&dotted, '.');
        if (schema_pointer_dotted(ptr, strlen(ptr), &dotted) < 0) buf_reset(&dotted);
        snprintf(path, path_cap, "%s", dotted.len ? dotted.ptr : "data");
        snprintf(msg, msg_cap, "%s", r.message);
        buf_fini(&dotted);
        rc = ERR(ERR_INVALID);
    }
    schema_result_fini(&r);
    return rc;
}
