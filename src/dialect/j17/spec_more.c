/* j17 specs, the parts beside the aggregate types (docs/dialects/j17.md, "Sagas (spec
 * syntax)", "Projections (spec syntax)", "Listeners (spec syntax)"): checks modules.sagas,
 * projections and listeners against the spec's types and keeps them, with a small read API;
 * projection.c prepares each projection for evaluation once its checks pass.
 * Invariants: everything kept refers only to types the spec has; strings are borrowed from
 * the spec's document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/spec.h"
#include "dialect/j17/spec_int.h"
#include "util/errors.h"

/* ---- sagas ---- */

/* A deep copy of j where "$prev", "$prev.x" and "$prev[n]" read "$.prev...". */
static json_t *rewrite_prev(const json_t *j)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        bool is_prev = strncmp(s, "$prev", 5) == 0 && (s[5] == '\0' || s[5] == '.' || s[5] == '[');
        if (!is_prev) return json_incref((json_t *)j);
        return json_sprintf("$.prev%s", s + 5);
    }
    if (!json_is_object(j) && !json_is_array(j)) return json_incref((json_t *)j);
    json_t *copy = json_is_object(j) ? json_object() : json_array();
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach ((json_t *)j, key, v) json_object_set_new(copy, key, rewrite_prev(v));
    json_array_foreach (j, i, v) json_array_append_new(copy, rewrite_prev(v));
    return copy;
}

/* {"aggregate_type", "event_type"} naming an event type of the spec; false with a problem. */
static bool check_event_ref(struct j17_cc *c, const json_t *j, const char *path,
                            const char **agg, const char **evt)
{
    *agg = json_string_value(json_object_get(j, "aggregate_type"));
    *evt = json_string_value(json_object_get(j, "event_type"));
    if (!json_is_object(j) || !*agg || !*evt) {
        j17_problem(c->pr, path, "an object {aggregate_type, event_type}");
        return false;
    }
    if (!j17_spec_evt(c->s, *agg, *evt)) {
        j17_problem(c->pr, path, "%.64s.%.64s is not an event type of this spec", *agg, *evt);
        return false;
    }
    return true;
}

static void check_await(struct j17_cc *c, const json_t *j, const char *path)
{
    static const char *const known[] = {"aggregate_type", "event_types", NULL};
    const char *agg = json_string_value(json_object_get(j, "aggregate_type"));
    json_t *evts = json_object_get(j, "event_types");
    size_t n = json_array_size(evts);
    if (!json_is_object(j) || !agg || !json_is_array(evts) || n == 0 ||
        n > J17_AWAIT_EVENTS_MAX) {
        j17_problem(c->pr, path, "an object {aggregate_type, event_types: [1 to %d names]}",
                    J17_AWAIT_EVENTS_MAX);
        return;
    }
    j17_check_members(c, j, path, known);
    size_t i;
    json_t *v;
    json_array_foreach (evts, i, v) {
        if (json_is_string(v) && j17_spec_evt(c->s, agg, json_string_value(v))) continue;
        char at[J17_PATH];
        snprintf(at, sizeof at, "%.200s.event_types[%zu]", path, i);
        j17_problem(c->pr, at, "not an event type of %.64s", agg);
    }
}

static void compile_step_parts(struct j17_cc *c, const json_t *j, const char *path,
                               struct j17_saga_step *st)
{
    char at[J17_PATH];
    json_t *rw = rewrite_prev(j);
    j17_path_member(at, path, "emit");
    j17_emit_compile(c, json_object_get(rw, "emit"), at, JPATH_ALLOW_PREV, false, &st->emit);
    json_t *comp = json_object_get(rw, "compensate");
    j17_path_member(at, path, "compensate");
    if (comp) j17_emit_compile(c, comp, at, JPATH_ALLOW_PREV, false, &st->compensate);
    json_t *cond = json_object_get(rw, "condition");
    j17_path_member(at, path, "condition");
    if (cond) st->cond = j17_pred_compile(c, cond, at, JPATH_ALLOW_PREV);
    json_decref(rw);
    json_t *await = json_object_get(j, "await");
    j17_path_member(at, path, "await");
    if (await) {
        check_await(c, await, at);
        st->await_agg = json_string_value(json_object_get(await, "aggregate_type"));
        st->await_types = json_object_get(await, "event_types");
    }
    json_t *timeout = json_object_get(j, "timeout_ms");
    j17_path_member(at, path, "timeout_ms");
    if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) <= 0)) {
        j17_problem(c->pr, at, "a positive integer of milliseconds");
    } else if (timeout) {
        st->timeout_ms = (uint64_t)json_integer_value(timeout);
    }
}

static void compile_steps(struct j17_cc *c, struct j17_saga *g, const json_t *steps,
                          const char *path)
{
    static const char *const known[] = {"name",       "emit",       "await", "compensate",
                                        "timeout_ms", "condition", NULL};
    size_t n = json_array_size(steps);
    if (!json_is_array(steps) || n == 0 || n > J17_SAGA_STEPS_MAX) {
        j17_problem(c->pr, path, "an array of 1 to %d steps", J17_SAGA_STEPS_MAX);
        return;
    }
    g->steps = xcalloc(n, sizeof(*g->steps));
    g->step_count = n;
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_array_get(steps, i);
        char at[J17_PATH];
        j17_path_index(at, path, i);
        if (!json_is_object(j)) {
            j17_problem(c->pr, at, "a step is an object {name, emit, await?, compensate?, "
                                   "timeout_ms?, condition?}");
            continue;
        }
        j17_check_members(c, j, at, known);
        struct j17_saga_step *st = &g->steps[i];
        st->name = json_string_value(json_object_get(j, "name"));
        char npath[J17_PATH];
        j17_path_member(npath, at, "name");
        if (!st->name || !j17_name_ok(st->name, strlen(st->name))) {
            j17_problem(c->pr, npath, "a step's name: [a-z][a-z0-9_]{0,63}");
        }
        for (size_t k = 0; st->name && k < i; k++) {
            if (g->steps[k].name && !strcmp(g->steps[k].name, st->name)) {
                j17_problem(c->pr, npath, "two steps are named %s", st->name);
            }
        }
        compile_step_parts(c, j, at, st);
    }
}

void j17_sagas_compile(struct j17_cc *c, const json_t *j, const char *path)
{
    static const char *const known[] = {"trigger", "steps", NULL};
    if (!json_is_object(j) || json_object_size(j) > J17_SAGAS_MAX) {
        j17_problem(c->pr, path, "an object of at most %d sagas {name: {trigger, steps}}",
                    J17_SAGAS_MAX);
        return;
    }
    struct j17_spec *s = c->s;
    s->sagas = xcalloc(json_object_size(j) + 1, sizeof(*s->sagas));
    const char *key;
    json_t *def;
    json_object_foreach ((json_t *)j, key, def) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        if (!j17_name_ok(key, strlen(key))) {
            j17_problem(c->pr, at, "not a name: [a-z][a-z0-9_]{0,63}");
            continue;
        }
        if (!json_is_object(def)) {
            j17_problem(c->pr, at, "a saga is an object {trigger, steps}");
            continue;
        }
        struct j17_saga *g = &s->sagas[s->saga_count++];
        g->name = key;
        g->def = def;
        j17_check_members(c, def, at, known);
        char tpath[J17_PATH];
        j17_path_member(tpath, at, "trigger");
        check_event_ref(c, json_object_get(def, "trigger"), tpath, &g->trigger_agg,
                        &g->trigger_evt);
        j17_path_member(tpath, at, "steps");
        compile_steps(c, g, json_object_get(def, "steps"), tpath);
    }
}

/* ---- projections ---- */

/* Names a select path may start from: sources and includes ($.name), variables ($name). */
struct select_scope {
    const json_t *sources;                 /* borrowed object, or NULL */
    const json_t *include;                 /* borrowed object, or NULL */
    const char *vars[J17_SELECT_DEPTH + 1]; /* bound by $map "as" and $lookup "as" */
    size_t var_count;
    size_t nodes;                          /* values checked so far */
};

static bool is_proj_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > J17_NAME_BYTES) return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

/* Checks a select path (j17_sel_path_parse: "$.source..." or "$var...", then .name, [n], [*])
 * and that it starts from a source, include or variable in scope. Returns NULL or why it is
 * wrong. */
static const char *check_select_path(const struct select_scope *sc, const char *s)
{
    struct j17_sel_path p;
    const char *why = j17_sel_path_parse(s, &p);
    if (why) return why;
    j17_sel_path_fini(&p);
    bool is_known = false;
    if (!p.is_var) {
        is_known = json_object_get(sc->sources, p.root) || json_object_get(sc->include, p.root);
    }
    for (size_t i = 0; p.is_var && i < sc->var_count; i++) {
        is_known = is_known || !strcmp(sc->vars[i], p.root);
    }
    if (is_known) return NULL;
    return p.is_var ? "no variable of that name" : "no source or include of that name";
}

static void check_select(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                         const char *path, size_t depth);

static void check_path_member(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                              const char *name, const char *path)
{
    char at[J17_PATH];
    j17_path_member(at, path, name);
    const char *s = json_string_value(json_object_get(j, name));
    const char *why = s && s[0] == '$' ? check_select_path(sc, s) : "a path ($.source...)";
    if (why) j17_problem(c->pr, at, "%s", why);
}

/* Binds "as" (default dflt) for the duration of a nested check; false with a problem. */
static bool bind_var(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                     const char *path, const char *dflt)
{
    json_t *as = json_object_get(j, "as");
    const char *name = as ? json_string_value(as) : dflt;
    if (!name || !j17_name_ok(name, strlen(name))) {
        char at[J17_PATH];
        j17_path_member(at, path, "as");
        j17_problem(c->pr, at, "a variable name: [a-z][a-z0-9_]{0,63}");
        return false;
    }
    sc->vars[sc->var_count++] = name;
    return true;
}

static void check_map(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                      const char *path, size_t depth)
{
    static const char *const known[] = {"$map", "as", "to", NULL};
    j17_check_members(c, j, path, known);
    check_path_member(c, sc, j, "$map", path);
    char at[J17_PATH];
    j17_path_member(at, path, "to");
    json_t *to = json_object_get(j, "to");
    if (!to) j17_problem(c->pr, at, "missing: what each element becomes");
    if (!to || !bind_var(c, sc, j, path, "item")) return;
    check_select(c, sc, to, at, depth + 1);
    sc->var_count--;
}

static void check_lookup(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                         const char *path, size_t depth)
{
    static const char *const known[] = {"$lookup", "where", "as", "select", NULL};
    j17_check_members(c, j, path, known);
    check_path_member(c, sc, j, "$lookup", path);
    char at[J17_PATH];
    j17_path_member(at, path, "where");
    json_t *where = json_object_get(j, "where");
    if (!json_is_object(where) || json_object_size(where) == 0) {
        j17_problem(c->pr, at, "a non-empty object {element field: value}");
    } else {
        check_select(c, sc, where, at, depth + 1);
    }
    json_t *sel = json_object_get(j, "select");
    if (!sel || !bind_var(c, sc, j, path, "match")) return;
    j17_path_member(at, path, "select");
    check_select(c, sc, sel, at, depth + 1);
    sc->var_count--;
}

static void check_select(struct j17_cc *c, struct select_scope *sc, const json_t *j,
                         const char *path, size_t depth)
{
    if (depth > J17_SELECT_DEPTH || ++sc->nodes > J17_SELECT_NODES) {
        if (sc->nodes != J17_SELECT_NODES + 2) {
            j17_problem(c->pr, path, "select nested deeper than %d or over %d values",
                        J17_SELECT_DEPTH, J17_SELECT_NODES);
        }
        sc->nodes = J17_SELECT_NODES + 2;
        return;
    }
    if (json_is_string(j) && json_string_value(j)[0] == '$') {
        const char *why = check_select_path(sc, json_string_value(j));
        if (why) j17_problem(c->pr, path, "%s", why);
        return;
    }
    char at[J17_PATH];
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach (j, i, v) {
            j17_path_index(at, path, i);
            check_select(c, sc, v, at, depth + 1);
        }
        return;
    }
    if (!json_is_object(j)) return;
    if (json_object_get(j, "$map")) {
        check_map(c, sc, j, path, depth);
        return;
    }
    if (json_object_get(j, "$lookup")) {
        check_lookup(c, sc, j, path, depth);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)j, key, v) {
        j17_path_member(at, path, key);
        if (key[0] == '$') {
            j17_problem(c->pr, at, "unknown operator (select knows $map and $lookup)");
            continue;
        }
        check_select(c, sc, v, at, depth + 1);
    }
}

/* True when name is a source defined before the source key. */
static bool is_earlier_source(const json_t *src, const char *key, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)src, k, v) {
        if (!strcmp(k, key)) return false;
        if (!strcmp(k, name)) return true;
    }
    return false;
}

/* A source's id path: from an include or an earlier source, [*] only in mode array. */
static void check_source_id(struct j17_cc *c, const json_t *src, const json_t *inc,
                            const char *key, bool is_array, const char *path)
{
    const char *id = json_string_value(json_object_get(json_object_get(src, key), "id"));
    char at[J17_PATH];
    j17_path_member(at, path, "id");
    struct j17_sel_path p;
    const char *why = j17_sel_path_parse(id, &p);
    if (why) {
        j17_problem(c->pr, at, "%s", why);
        return;
    }
    j17_sel_path_fini(&p);
    if (p.is_var || (!json_object_get(inc, p.root) && !is_earlier_source(src, key, p.root))) {
        j17_problem(c->pr, at, "a path $.<include or source defined before this one>...");
    } else if (p.has_all && !is_array) {
        j17_problem(c->pr, at, "[*] gives several ids: mode \"array\"");
    }
}

static void check_sources(struct j17_cc *c, const json_t *src, const json_t *inc,
                          const char *path)
{
    static const char *const known[] = {"type", "id", "mode", NULL};
    if (!json_is_object(src) || json_object_size(src) == 0) {
        j17_problem(c->pr, path, "a non-empty object {name: \"$key\" | {type, id, mode?}}");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)src, key, v) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        if (!j17_name_ok(key, strlen(key))) j17_problem(c->pr, at, "not a name");
        if (json_is_string(v) && !strcmp(json_string_value(v), "$key")) continue;
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *mode = json_object_get(v, "mode");
        if (!json_is_object(v) || !type || !id || id[0] != '$') {
            j17_problem(c->pr, at, "\"$key\" or {type, id: JSONPath, mode?: \"array\"}");
            continue;
        }
        j17_check_members(c, v, at, known);
        if (!j17_spec_agg(c->s, (struct slice){type, strlen(type)})) {
            j17_problem(c->pr, at, "type \"%.64s\" is not an aggregate type of this spec", type);
        }
        if (mode && !(json_is_string(mode) && !strcmp(json_string_value(mode), "array"))) {
            j17_problem(c->pr, at, "mode is \"array\" when given");
        }
        check_source_id(c, src, inc, key, mode != NULL, at);
    }
}

static void check_include(struct j17_cc *c, const json_t *inc, const char *path)
{
    if (!json_is_object(inc)) {
        j17_problem(c->pr, path, "an object {name: \"type:id\"}");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)inc, key, v) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        const char *s = json_string_value(v);
        const char *colon = s ? strchr(s, ':') : NULL;
        char canon[J17_ID_BYTES + 1];
        bool is_ok = colon && j17_spec_agg(c->s, (struct slice){s, (size_t)(colon - s)}) &&
                     j17_id_check(c->s, (struct slice){colon + 1, strlen(colon + 1)}, canon) == 0;
        if (!j17_name_ok(key, strlen(key)) || !is_ok) {
            j17_problem(c->pr, at, "\"type:id\" naming an aggregate of this spec");
        }
    }
}

static void compile_projection(struct j17_cc *c, struct j17_projection *p, const char *path)
{
    static const char *const known[] = {"name",    "for_each", "include_substreams",
                                        "sources", "include",  "select", NULL};
    char at[J17_PATH];
    j17_check_members(c, p->def, path, known);
    p->for_each = json_string_value(json_object_get(p->def, "for_each"));
    j17_path_member(at, path, "for_each");
    if (!p->for_each || !j17_spec_agg(c->s, (struct slice){p->for_each, strlen(p->for_each)})) {
        j17_problem(c->pr, at, "an aggregate type of this spec");
    }
    json_t *subs = json_object_get(p->def, "include_substreams");
    j17_path_member(at, path, "include_substreams");
    if (subs && !json_is_boolean(subs)) j17_problem(c->pr, at, "true or false");
    p->has_substreams = json_is_true(subs);
    struct select_scope sc = {.sources = json_object_get(p->def, "sources"),
                              .include = json_object_get(p->def, "include")};
    j17_path_member(at, path, "sources");
    check_sources(c, sc.sources, sc.include, at);
    j17_path_member(at, path, "include");
    if (sc.include) check_include(c, sc.include, at);
    if (json_object_size(sc.sources) + json_object_size(sc.include) > J17_PROJ_SOURCES_MAX) {
        j17_problem(c->pr, path, "more than %d sources and includes", J17_PROJ_SOURCES_MAX);
    }
    json_t *select = json_object_get(p->def, "select");
    j17_path_member(at, path, "select");
    if (!json_is_object(select)) {
        j17_problem(c->pr, at, "an object: the projection's shape");
        return;
    }
    check_select(c, &sc, select, at, 0);
}

/* The i-th projection definition of j (array or object) and its name; false with a problem. */
static bool projection_at(struct j17_cc *c, const json_t *j, size_t i, void **it,
                          struct j17_projection *p, char *at, const char *path)
{
    const char *key = json_is_object(j) ? json_object_iter_key(*it) : NULL;
    p->def = key ? json_object_iter_value(*it) : json_array_get(j, i);
    if (key) {
        j17_path_member(at, path, key);
        *it = json_object_iter_next((json_t *)j, *it);
    } else {
        j17_path_index(at, path, i);
    }
    if (!json_is_object(p->def)) {
        j17_problem(c->pr, at, "a projection is an object {name, for_each, sources, select}");
        return false;
    }
    p->name = json_string_value(json_object_get(p->def, "name"));
    if (key && p->name && strcmp(key, p->name) != 0) {
        j17_problem(c->pr, at, "name differs from its key");
        return false;
    }
    if (key) p->name = key;
    if (!p->name || !is_proj_name(p->name)) {
        j17_problem(c->pr, at, "a projection's name: lower-case letters, digits and _");
        return false;
    }
    return true;
}

void j17_projections_compile(struct j17_cc *c, const json_t *j, const char *path)
{
    size_t n = json_is_object(j) ? json_object_size(j) : json_array_size(j);
    if ((!json_is_object(j) && !json_is_array(j)) || n > J17_PROJECTIONS_MAX) {
        j17_problem(c->pr, path, "an array or object of at most %d projections",
                    J17_PROJECTIONS_MAX);
        return;
    }
    struct j17_spec *s = c->s;
    s->projs = xcalloc(n + 1, sizeof(*s->projs));
    void *it = json_is_object(j) ? json_object_iter((json_t *)j) : NULL;
    for (size_t i = 0; i < n; i++) {
        char at[J17_PATH];
        struct j17_projection p = {0};
        if (!projection_at(c, j, i, &it, &p, at, path)) continue;
        if (j17_spec_projection(s, (struct slice){p.name, strlen(p.name)})) {
            j17_problem(c->pr, at, "two projections are named %s", p.name);
            continue;
        }
        compile_projection(c, &p, at);
        struct j17_projection *kept = &s->projs[s->proj_count++];
        *kept = p;
        /* Evaluation needs a projection without problems; a spec with any is not kept. */
        if (c->pr->count == 0) j17_projection_prepare(c, kept, at);
    }
}

/* ---- listeners ---- */

static void check_filters(struct j17_cc *c, const json_t *arr, const char *path, bool is_events)
{
    if (!json_is_array(arr)) {
        j17_problem(c->pr, path, is_events ? "an array of \"aggregate_type.event_type\""
                                           : "an array of aggregate types");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        const char *s = json_string_value(v);
        const char *dot = s && is_events ? strchr(s, '.') : NULL;
        bool is_ok = false;
        if (s && !is_events) is_ok = j17_spec_agg(c->s, (struct slice){s, strlen(s)}) != NULL;
        if (dot && (size_t)(dot - s) <= J17_NAME_BYTES) {
            char agg[J17_NAME_BYTES + 1];
            snprintf(agg, sizeof agg, "%.*s", (int)(dot - s), s);
            is_ok = j17_spec_evt(c->s, agg, dot + 1) != NULL;
        }
        if (is_ok) continue;
        char at[J17_PATH];
        j17_path_index(at, path, i);
        j17_problem(c->pr, at, is_events ? "not an event type of this spec (\"user.was_created\")"
                                         : "not an aggregate type of this spec");
    }
}

static void compile_listener(struct j17_cc *c, struct j17_listener *l, const json_t *def,
                             const char *path)
{
    static const char *const known[] = {"url", "secret", "aggregate_types", "event_types",
                                        NULL};
    char at[J17_PATH];
    j17_check_members(c, def, path, known);
    l->url = json_string_value(json_object_get(def, "url"));
    j17_path_member(at, path, "url");
    size_t ulen = l->url ? strlen(l->url) : 0;
    bool is_http = l->url && ((!strncmp(l->url, "http://", 7) && ulen > 7) ||
                              (!strncmp(l->url, "https://", 8) && ulen > 8));
    if (!is_http || ulen > J17_URL_BYTES) {
        j17_problem(c->pr, at, "an http:// or https:// URL of at most %d bytes", J17_URL_BYTES);
    }
    json_t *secret = json_object_get(def, "secret");
    j17_path_member(at, path, "secret");
    l->secret = json_string_value(secret);
    if (secret && (!l->secret || !*l->secret || strlen(l->secret) > J17_SECRET_BYTES)) {
        j17_problem(c->pr, at, "a string of 1 to %d bytes", J17_SECRET_BYTES);
    }
    l->agg_types = json_object_get(def, "aggregate_types");
    l->event_types = json_object_get(def, "event_types");
    j17_path_member(at, path, "aggregate_types");
    if (l->agg_types) check_filters(c, l->agg_types, at, false);
    j17_path_member(at, path, "event_types");
    if (l->event_types) check_filters(c, l->event_types, at, true);
    if (json_array_size(l->agg_types) + json_array_size(l->event_types) >
        J17_LISTENER_FILTERS_MAX) {
        j17_problem(c->pr, path, "more than %d filters", J17_LISTENER_FILTERS_MAX);
    }
}

void j17_listeners_compile(struct j17_cc *c, const json_t *j, const char *path)
{
    if (!json_is_object(j) || json_object_size(j) > J17_LISTENERS_MAX) {
        j17_problem(c->pr, path, "an object of at most %d listeners {name: {url, ...}}",
                    J17_LISTENERS_MAX);
        return;
    }
    struct j17_spec *s = c->s;
    s->listeners = xcalloc(json_object_size(j) + 1, sizeof(*s->listeners));
    const char *key;
    json_t *def;
    json_object_foreach ((json_t *)j, key, def) {
        char at[J17_PATH];
        j17_path_member(at, path, key);
        if (!j17_name_ok(key, strlen(key)) || !json_is_object(def)) {
            j17_problem(c->pr, at, "a listener is name: {url, secret?, aggregate_types?, "
                                   "event_types?}");
            continue;
        }
        struct j17_listener *l = &s->listeners[s->listener_count++];
        l->name = key;
        compile_listener(c, l, def, at);
    }
}

void j17_more_free(struct j17_spec *s)
{
    for (size_t i = 0; i < s->saga_count; i++) {
        struct j17_saga *g = &s->sagas[i];
        for (size_t k = 0; k < g->step_count; k++) {
            j17_emit_fini(&g->steps[k].emit);
            j17_emit_fini(&g->steps[k].compensate);
            tick_expr_free(g->steps[k].cond);
        }
        free(g->steps);
    }
    free(s->sagas);
    for (size_t i = 0; i < s->proj_count; i++) j17_projection_fini(&s->projs[i]);
    free(s->projs);
    free(s->listeners);
}

/* ---- read API ---- */

size_t j17_spec_saga_count(const struct j17_spec *s) { return s->saga_count; }

const struct j17_saga *j17_spec_saga_at(const struct j17_spec *s, size_t i)
{
    return i < s->saga_count ? &s->sagas[i] : NULL;
}

const char *j17_saga_name(const struct j17_saga *g) { return g->name; }
const char *j17_saga_trigger_agg(const struct j17_saga *g) { return g->trigger_agg; }
const char *j17_saga_trigger_event(const struct j17_saga *g) { return g->trigger_evt; }
const json_t *j17_saga_json(const struct j17_saga *g) { return g->def; }

const struct j17_saga *j17_spec_saga(const struct j17_spec *s, const char *name)
{
    for (size_t i = 0; i < s->saga_count; i++) {
        if (!strcmp(s->sagas[i].name, name)) return &s->sagas[i];
    }
    return NULL;
}

size_t j17_saga_step_count(const struct j17_saga *g) { return g->step_count; }
const char *j17_saga_step_name(const struct j17_saga *g, size_t i) { return g->steps[i].name; }
uint64_t j17_saga_step_timeout_ms(const struct j17_saga *g, size_t i)
{
    return g->steps[i].timeout_ms;
}

bool j17_saga_step_has_compensate(const struct j17_saga *g, size_t i)
{
    return g->steps[i].compensate.agg_type != NULL;
}

bool j17_saga_step_await(const struct j17_saga *g, size_t i, const char **agg_type,
                         const json_t **event_types)
{
    const struct j17_saga_step *st = &g->steps[i];
    *agg_type = st->await_agg;
    *event_types = st->await_types;
    return st->await_agg && json_array_size(st->await_types) > 0;
}

int j17_saga_step_test(const struct j17_saga *g, size_t i, const json_t *ctx, bool *out,
                       char *why, size_t cap)
{
    *out = true;
    if (!g->steps[i].cond) return 0;
    struct jpath_ctx jc = {.event = ctx};
    struct tick_error err;
    int rc = tick_expr_test(g->steps[i].cond, &jc, out, &err);
    if (rc < 0) {
        snprintf(why, cap, "modules.sagas.%s.steps[%zu].condition: %s", g->name, i, err.msg);
    }
    return rc;
}

size_t j17_spec_projection_count(const struct j17_spec *s) { return s->proj_count; }

const struct j17_projection *j17_spec_projection_at(const struct j17_spec *s, size_t i)
{
    return i < s->proj_count ? &s->projs[i] : NULL;
}

const struct j17_projection *j17_spec_projection(const struct j17_spec *s, struct slice name)
{
    for (size_t i = 0; i < s->proj_count; i++) {
        const char *n = s->projs[i].name;
        if (strlen(n) == name.len && memcmp(n, name.ptr, name.len) == 0) return &s->projs[i];
    }
    return NULL;
}

const char *j17_projection_name(const struct j17_projection *p) { return p->name; }
const char *j17_projection_for_each(const struct j17_projection *p) { return p->for_each; }
bool j17_projection_substreams(const struct j17_projection *p) { return p->has_substreams; }
const json_t *j17_projection_json(const struct j17_projection *p) { return p->def; }

size_t j17_spec_listener_count(const struct j17_spec *s) { return s->listener_count; }

const struct j17_listener *j17_spec_listener_at(const struct j17_spec *s, size_t i)
{
    return i < s->listener_count ? &s->listeners[i] : NULL;
}

const char *j17_listener_name(const struct j17_listener *l) { return l->name; }
const char *j17_listener_url(const struct j17_listener *l) { return l->url; }
const char *j17_listener_secret(const struct j17_listener *l) { return l->secret; }

const json_t *j17_listener_aggregate_types(const struct j17_listener *l)
{
    return l->agg_types;
}

const json_t *j17_listener_event_types(const struct j17_listener *l)
{
    return l->event_types;
}

const struct j17_listener *j17_spec_listener(const struct j17_spec *s, struct slice name)
{
    for (size_t i = 0; i < j17_spec_listener_count(s); i++) {
        const struct j17_listener *l = j17_spec_listener_at(s, i);
        if (strlen(l->name) == name.len && !memcmp(l->name, name.ptr, name.len)) {
            return l;
        }
    }
    return NULL;
}

bool j17_listener_matches(const struct j17_listener *l, const char *agg_type,
                          const char *event_type)
{
    bool is_agg = !l->agg_types;
    size_t i;
    json_t *v;
    json_array_foreach (l->agg_types, i, v) {
        is_agg = is_agg || !strcmp(json_string_value(v), agg_type);
    }
    if (!is_agg) return false;
    if (!l->event_types) return true;
    size_t alen = strlen(agg_type);
    json_array_foreach (l->event_types, i, v) {
        const char *s = json_string_value(v);
        if (!strncmp(s, agg_type, alen) && s[alen] == '.' && !strcmp(s + alen + 1, event_type)) {
            return true;
        }
    }
    return false;
}
