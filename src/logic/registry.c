/* The components in force in a database, read from its logic stream (logic/registry.h). */
#include "logic/registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "util/assert.h"
#include "util/errors.h"

/* What reading the stream gathers: every name's newest deploy or removal. */
struct reading {
    struct comp_def *defs;   /* by name; a removed name has kind 0 */
    struct comp_seen *seen;
    size_t count;
    int err;
};

static size_t find_name(const struct reading *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++) {
        if (strcmp(r->seen[i].name, name) == 0) {
            return i;
        }
    }
    return r->count;
}

/* The slot of name, appended when new; r->count when the database has too many names. */
static size_t slot(struct reading *r, const char *name)
{
    size_t i = find_name(r, name);
    if (i < r->count) {
        return i;
    }
    if (r->count == COMP_MAX_PER_DB) {
        return r->count;
    }
    if ((r->count & (r->count - 1)) == 0) { /* grow at powers of two */
        size_t cap = r->count ? r->count * 2 : 4;
        r->defs = xrealloc(r->defs, cap * sizeof(*r->defs));
        r->seen = xrealloc(r->seen, cap * sizeof(*r->seen));
    }
    memset(&r->defs[r->count], 0, sizeof(r->defs[0]));
    memset(&r->seen[r->count], 0, sizeof(r->seen[0]));
    snprintf(r->seen[r->count].name, sizeof r->seen[0].name, "%s", name);
    return r->count++;
}

static bool type_is(const struct event_rec *ev, const char *t)
{
    return ev->type.len == strlen(t) && memcmp(ev->type.ptr, t, ev->type.len) == 0;
}

static int take_removal(struct reading *r, struct slice data)
{
    struct slice name;
    struct buf n;
    buf_init(&n);
    int rc = ERR_CORRUPT;
    if (jsonx_kind(data) == '{' && jsonx_member(data, "name", &name) &&
        jsonx_kind(name) == '"' && jsonx_string(name, &n) == 0 && n.len <= COMP_NAME_BYTES) {
        size_t i = find_name(r, n.ptr);
        if (i < r->count) {
            comp_def_fini(&r->defs[i]);
            r->defs[i].kind = 0;
        }
        rc = 0;
    }
    buf_fini(&n);
    return rc;
}

static int on_event(void *arg, const struct event_rec *ev)
{
    struct reading *r = arg;
    if (type_is(ev, COMP_EVENT_REMOVED)) {
        r->err = take_removal(r, ev->data);
        return r->err ? 1 : 0;
    }
    struct comp_def def;
    if (!type_is(ev, COMP_EVENT_DEPLOYED) || comp_from_json(ev->data, &def) != 0) {
        r->err = ERR_CORRUPT;
        return 1;
    }
    def.deployed_us = ev->recorded_us;
    size_t i = slot(r, def.name);
    if (i == r->count) {
        comp_def_fini(&def);
        r->err = ERR_CORRUPT;
        return 1;
    }
    comp_def_fini(&r->defs[i]);
    r->defs[i] = def;
    if (def.version > r->seen[i].version) {
        r->seen[i].version = def.version;
    }
    return 0;
}

static int cmp_defs(const void *a, const void *b)
{
    return strcmp(((const struct comp_def *)a)->name, ((const struct comp_def *)b)->name);
}

/* Makes the set from what was read: the names in force, sorted. */
static struct comp_set *make_set(struct reading *r, const struct stream_rec *s)
{
    struct comp_set *set = xcalloc(1, sizeof(*set));
    set->defs = xcalloc(r->count ? r->count : 1, sizeof(*set->defs));
    for (size_t i = 0; i < r->count; i++) {
        if (r->defs[i].kind) {
            set->defs[set->count++] = r->defs[i];
        }
    }
    qsort(set->defs, set->count, sizeof(*set->defs), cmp_defs);
    free(r->defs);
    set->seen = r->seen;
    set->nseen = r->count;
    set->stream_version = s->version;
    set->stream_updated_us = s->updated_us;
    set->refs = 1;
    return set;
}

static void reading_fini(struct reading *r)
{
    for (size_t i = 0; i < r->count; i++) {
        comp_def_fini(&r->defs[i]);
    }
    free(r->defs);
    free(r->seen);
}

int comp_set_read(struct db *db, struct comp_set **out)
{
    struct reading r = {0};
    struct stream_rec s = {0};
    struct slice name = {ENGINE_LOGIC_STREAM, sizeof ENGINE_LOGIC_STREAM - 1};
    uint64_t from = 1;
    int rc = 0;
    for (;;) { /* pages of the stream, each in its own snapshot, until its end */
        struct stream_rec page = {0};
        rc = engine_read_stream(db, name, NULL, from, false, LIMIT_READ_MAX, on_event, &r,
                                &page, NULL);
        if (rc == ERR_NOTFOUND) {
            rc = 0; /* nothing deployed yet */
            break;
        }
        if (rc || r.err || page.version < from + LIMIT_READ_MAX) {
            s = page;
            break;
        }
        from += LIMIT_READ_MAX;
    }
    rc = rc ? rc : r.err;
    if (rc) {
        reading_fini(&r);
        return rc;
    }
    *out = make_set(&r, &s);
    return 0;
}

void comp_set_ref(struct comp_set *set)
{
    __atomic_add_fetch(&set->refs, 1, __ATOMIC_RELAXED);
}

void comp_set_unref(struct comp_set *set)
{
    if (!set || __atomic_sub_fetch(&set->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    for (size_t i = 0; i < set->count; i++) {
        comp_def_fini(&set->defs[i]);
    }
    free(set->defs);
    free(set->seen);
    free(set);
}

const struct comp_def *comp_set_find(const struct comp_set *set, const char *name)
{
    struct comp_def key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, set->defs, set->count, sizeof(*set->defs), cmp_defs);
}

const struct comp_def *comp_set_reducer_for(const struct comp_set *set, struct slice stream)
{
    return comp_set_reducer_of(set, comp_category_of(stream));
}

const struct comp_def *comp_set_reducer_of(const struct comp_set *set, struct slice cat)
{
    for (size_t i = 0; i < set->count; i++) {
        const struct comp_def *d = &set->defs[i];
        if (d->kind == COMP_REDUCER && strlen(d->category) == cat.len &&
            memcmp(d->category, cat.ptr, cat.len) == 0) {
            return d;
        }
    }
    return NULL;
}

uint64_t comp_set_next_version(const struct comp_set *set, const char *name)
{
    for (size_t i = 0; i < set->nseen; i++) {
        if (strcmp(set->seen[i].name, name) == 0) {
            return set->seen[i].version + 1;
        }
    }
    return 1;
}

/* ---- writing ---- */

/* The data of a removal event. */
static void removal_json(const char *name, struct buf *out)
{
    buf_adds(out, "{\"name\":");
    buf_add_json_str(out, name, strlen(name));
    buf_addc(out, '}');
}

/* Appends the n events evs to the logic stream at version at, in one append, and waits for
 * the outcome; *out_us (may be NULL) gets their commit time. */
static int append_wait(struct db *db, struct append_event *evs, size_t n, uint64_t at,
                       int64_t *out_us)
{
    struct append_part part = {.stream = {ENGINE_LOGIC_STREAM, sizeof ENGINE_LOGIC_STREAM - 1},
                               .events = evs, .count = n,
                               .expect = {EXPECT_VERSION, at}};
    struct append_req req = {.parts = &part, .nparts = 1};
    buf_init(&req.answer);
    int rc = engine_append_wait(db, &req);
    rc = rc ? rc : req.err;
    if (!rc && out_us) {
        *out_us = req.recorded_us;
    }
    buf_fini(&req.answer);
    return rc;
}

static struct append_event logic_event(const char *type, const struct buf *data)
{
    return (struct append_event){.type = {type, strlen(type)}, .data = {data->ptr, data->len},
                                 .metadata = {"{}", 2}, .tags = {"[]", 2}};
}

int comp_deploy(struct db *db, struct comp_def *def, uint64_t at)
{
    struct comp_change ch = {.def = def};
    return comp_deploy_many(db, &ch, 1, at, NULL);
}

int comp_remove(struct db *db, const char *name, uint64_t at)
{
    struct comp_change ch = {.removed = name};
    return comp_deploy_many(db, &ch, 1, at, NULL);
}

int comp_deploy_many(struct db *db, struct comp_change *changes, size_t n, uint64_t at,
                     int64_t *out_us)
{
    if (n == 0) {
        return ERR_INVALID;
    }
    struct buf *data = xcalloc(n, sizeof(*data));
    struct append_event *evs = xcalloc(n, sizeof(*evs));
    for (size_t i = 0; i < n; i++) {
        buf_init(&data[i]);
        if (changes[i].def) {
            comp_to_json(changes[i].def, &data[i]);
        } else {
            removal_json(changes[i].removed, &data[i]);
        }
        evs[i] = logic_event(changes[i].def ? COMP_EVENT_DEPLOYED : COMP_EVENT_REMOVED,
                             &data[i]);
    }
    int64_t us = 0;
    int rc = append_wait(db, evs, n, at, &us);
    for (size_t i = 0; i < n; i++) {
        if (!rc && changes[i].def) {
            changes[i].def->deployed_us = us;
        }
        buf_fini(&data[i]);
    }
    free(evs);
    free(data);
    if (!rc && out_us) {
        *out_us = us;
    }
    return rc;
}

/* ---- the set after a deploy or removal, without reading the stream again ---- */

struct comp_set *comp_set_next(const struct comp_set *old, const struct comp_def *deployed,
                               const char *removed, int64_t updated_us)
{
    const char *name = deployed ? deployed->name : removed;
    struct comp_set *set = xcalloc(1, sizeof(*set));
    set->defs = xcalloc(old->count + 1, sizeof(*set->defs));
    for (size_t i = 0; i < old->count; i++) {
        if (strcmp(old->defs[i].name, name) != 0) {
            comp_def_copy(&set->defs[set->count++], &old->defs[i]);
        }
    }
    if (deployed) {
        comp_def_copy(&set->defs[set->count++], deployed);
    }
    qsort(set->defs, set->count, sizeof(*set->defs), cmp_defs);
    set->seen = xcalloc(old->nseen + 1, sizeof(*set->seen));
    if (old->nseen) { /* a set read from an empty stream has no array */
        memcpy(set->seen, old->seen, old->nseen * sizeof(*set->seen));
    }
    set->nseen = old->nseen;
    size_t i = 0;
    while (i < set->nseen && strcmp(set->seen[i].name, name) != 0) {
        i++;
    }
    if (i == set->nseen) {
        snprintf(set->seen[set->nseen++].name, sizeof set->seen[0].name, "%s", name);
    }
    if (deployed && deployed->version > set->seen[i].version) {
        set->seen[i].version = deployed->version;
    }
    set->stream_version = old->stream_version + 1;
    set->stream_updated_us = updated_us;
    set->refs = 1;
    return set;
}

struct comp_set *comp_set_apply(const struct comp_set *old, const struct comp_change *changes,
                                size_t n, int64_t updated_us)
{
    ASSERT(n >= 1);
    struct comp_set *set = comp_set_next(old, changes[0].def, changes[0].removed, updated_us);
    for (size_t i = 1; i < n; i++) {
        struct comp_set *next = comp_set_next(set, changes[i].def, changes[i].removed,
                                              updated_us);
        comp_set_unref(set);
        set = next;
    }
    return set;
}
