/* Answers of GET /api/aggregates/{agg}/{id} kept in memory, keyed by everything they depend
 * on: the database (its id), the registry's version, the database's lifecycle counter (stream
 * deletions and settings), and the stream's version. A hit answers on the I/O thread without
 * SQL; anything that changes the answer changes the key, so an entry is never stale, only
 * unused (and dropped when the cache fills). Databases whose events age out (retention, a
 * stream's maxAge) are not cached: time alone changes what they show. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/deql/dq_int.h"
#include "engine/engine.h"
#include "logic/logic.h"
#include "logic/registry.h"
#include "util/errors.h"

enum {
    CACHE_ENTRIES_MAX = 8192,     /* answers kept; a full cache starts again empty */
    CACHE_ANSWER_BYTES = 64 << 10, /* larger answers are not kept */
};

struct cached_answer {
    char *bytes;
    size_t len;
};

struct dq_cache {
    pthread_mutex_t mu;
    struct strmap map; /* key -> struct cached_answer */
};

struct dq_cache *dq_cache_new(void)
{
    struct dq_cache *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    strmap_init(&c->map, sizeof(struct cached_answer));
    return c;
}

static void clear(struct dq_cache *c)
{
    size_t pos = 0;
    const char *k;
    size_t kl;
    void *v;
    while (strmap_next(&c->map, &pos, &k, &kl, &v)) {
        free(((struct cached_answer *)v)->bytes);
    }
    strmap_clear(&c->map);
}

void dq_cache_free(struct dq_cache *c)
{
    if (!c) {
        return;
    }
    clear(c);
    strmap_fini(&c->map);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool dq_state_key(struct deql_ctx *x, struct db *db, const char *agg, const char *id,
                  struct buf *key)
{
    char stream[LIMIT_STREAM_NAME_BYTES + 1];
    if (engine_db_ages_out(db) || !dq_stream_name(agg, id, stream, sizeof stream)) {
        return false;
    }
    struct comp_set *set;
    if (logic_set(x->logic, db, &set) != 0) {
        return false;
    }
    const struct comp_def *d = comp_set_find(set, DEQL_DEREG_COMPONENT);
    uint64_t reg_version = d && d->kind == COMP_DOCUMENT ? d->version : 0;
    comp_set_unref(set);
    uint64_t lifecycle = engine_db_lifecycle_changes(db);
    struct stream_rec s = {0};
    int rc = engine_stream_info(db, (struct slice){stream, strlen(stream)}, NULL, &s);
    if (rc && rc != ERR_NOTFOUND) {
        return false;
    }
    buf_printf(key, "%llu:%llu:%llu:%llu:", (unsigned long long)engine_db_id(db),
               (unsigned long long)reg_version, (unsigned long long)lifecycle,
               (unsigned long long)(rc ? 0 : s.version));
    buf_adds(key, stream);
    return true;
}

bool dq_cache_get(struct dq_cache *c, const char *key, struct buf *out)
{
    pthread_mutex_lock(&c->mu);
    const struct cached_answer *a = strmap_get(&c->map, key, strlen(key));
    if (a) {
        buf_add(out, a->bytes, a->len);
    }
    pthread_mutex_unlock(&c->mu);
    return a != NULL;
}

void dq_cache_put(struct dq_cache *c, const char *key, const char *bytes, size_t len)
{
    if (len > CACHE_ANSWER_BYTES) {
        return;
    }
    char *copy = xmalloc(len ? len : 1);
    memcpy(copy, bytes, len);
    pthread_mutex_lock(&c->mu);
    if (c->map.count >= CACHE_ENTRIES_MAX) {
        clear(c);
    }
    bool is_new;
    struct cached_answer *a = strmap_put(&c->map, key, strlen(key), &is_new);
    if (!is_new) {
        free(a->bytes);
    }
    *a = (struct cached_answer){copy, len};
    pthread_mutex_unlock(&c->mu);
}
