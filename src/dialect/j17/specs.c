/* The spec in force in each database: the newest deploy of the document component
 * J17_SPEC_COMPONENT (logic/registry.h), compiled once per version and kept in memory. */
#include "dialect/j17/j_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "logic/logic.h"
#include "util/errors.h"

enum { SPEC_CACHE_MAX = 1024 }; /* databases whose compiled spec is kept */

struct spec_entry {
    uint64_t db_id;
    uint64_t version;           /* the document's component version */
    struct j17_spec *spec;      /* one reference */
};

struct j17_spec_cache {
    pthread_mutex_t mu;
    struct spec_entry *items;
    size_t count, cap;
};

struct j17_spec_cache *j_specs_new(void)
{
    struct j17_spec_cache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void j_specs_free(struct j17_spec_cache *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->count; i++) {
        j17_spec_unref(c->items[i].spec);
    }
    free(c->items);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The cached spec of db at version (a new reference), or NULL. */
static struct j17_spec *cached(struct j17_spec_cache *c, uint64_t db_id, uint64_t version)
{
    struct j17_spec *s = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->count; i++) {
        if (c->items[i].db_id == db_id && c->items[i].version == version) {
            s = c->items[i].spec;
            j17_spec_ref(s);
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* Keeps s (a reference of its own) as db's spec at version, replacing the older one. */
static void keep(struct j17_spec_cache *c, uint64_t db_id, uint64_t version,
                 struct j17_spec *s)
{
    j17_spec_ref(s);
    pthread_mutex_lock(&c->mu);
    size_t i = 0;
    while (i < c->count && c->items[i].db_id != db_id) {
        i++;
    }
    if (i == c->count && c->count == SPEC_CACHE_MAX) {
        i = (size_t)(db_id % SPEC_CACHE_MAX); /* full: replace one */
    } else if (i == c->count) {
        if (c->count == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 8;
            c->items = xrealloc(c->items, c->cap * sizeof(*c->items));
        }
        c->items[c->count++] = (struct spec_entry){0};
    }
    if (c->items[i].version <= version || c->items[i].db_id != db_id) {
        j17_spec_unref(c->items[i].spec);
        c->items[i] = (struct spec_entry){db_id, version, s};
    } else {
        j17_spec_unref(s); /* a newer one is kept already */
    }
    pthread_mutex_unlock(&c->mu);
}

void j_spec_keep(struct j17_ctx *x, struct db *db, uint64_t version, struct j17_spec *s)
{
    keep(x->specs, engine_db_id(db), version, s);
}

int j_spec_get(struct j17_ctx *x, struct db *db, struct j17_spec **out)
{
    *out = NULL;
    struct comp_set *set;
    int rc = logic_set(x->logic, db, &set);
    if (rc) {
        return rc;
    }
    const struct comp_def *d = comp_set_find(set, J17_SPEC_COMPONENT);
    if (d && d->kind == COMP_DOCUMENT) {
        *out = cached(x->specs, engine_db_id(db), d->version);
        if (!*out) {
            struct j17_problems pr;
            /* the minimum delay was checked when it was deployed (under that server's
             * setting): a stored spec loads whatever this server's is */
            struct j17_spec_options opt = {.schedule_min_ms = 0};
            rc = j17_spec_compile_ex(d->source, d->source_len, &opt, out, &pr);
            if (!rc) {
                keep(x->specs, engine_db_id(db), d->version, *out);
            } else {
                rc = ERR_CORRUPT; /* it compiled when deployed */
            }
        }
    }
    comp_set_unref(set);
    return rc;
}

bool j_spec_find(const struct gate_call *c, struct slice type, struct slice event_type,
                 struct j17_spec **spec, const struct j17_agg **agg,
                 const struct j17_evt **evt)
{
    int rc = j_spec_get(j_ctx_of(c), c->db, spec);
    if (rc) {
        gate_fail_engine(c, rc);
        return false;
    }
    *agg = *spec ? j17_spec_agg(*spec, type) : NULL;
    if (!*agg) {
        j_fail(c, GK_NOT_FOUND, "Aggregate type not in spec", NULL);
    } else if (event_type.ptr && !(*evt = j17_agg_event(*agg, event_type))) {
        j_fail(c, GK_NOT_FOUND, "Event type not in spec", NULL);
    } else {
        return true;
    }
    j17_spec_unref(*spec);
    *spec = NULL;
    return false;
}
