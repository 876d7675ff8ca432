/* Aggregate types kept in memory (types.h). */
#include "dialect/hapnd/types.h"

#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/hapnd/translate.h"
#include "util/strmap.h"

struct hd_types {
    pthread_mutex_t mu;
    struct strmap map; /* 8 bytes of database id, then the aggregate id -> type text */
};

struct type_ent {
    char type[HAPND_TYPE_BYTES + 1];
};

struct hd_types *hd_types_new(void)
{
    struct hd_types *t = xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    strmap_init(&t->map, sizeof(struct type_ent));
    return t;
}

void hd_types_free(struct hd_types *t)
{
    if (t) {
        strmap_fini(&t->map);
        pthread_mutex_destroy(&t->mu);
        free(t);
    }
}

/* The map's key of (db, id) into key; returns its length. */
static size_t key_of(uint64_t dbid, struct slice id, char *key)
{
    memcpy(key, &dbid, sizeof dbid);
    memcpy(key + sizeof dbid, id.ptr, id.len);
    return sizeof dbid + id.len;
}

bool hd_types_get(struct hd_types *t, uint64_t db_id, struct slice id, char *type)
{
    char key[8 + LIMIT_STREAM_NAME_BYTES];
    if (id.len > LIMIT_STREAM_NAME_BYTES) {
        return false;
    }
    size_t n = key_of(db_id, id, key);
    pthread_mutex_lock(&t->mu);
    const struct type_ent *e = strmap_get(&t->map, key, n);
    if (e) {
        memcpy(type, e->type, sizeof e->type);
    }
    pthread_mutex_unlock(&t->mu);
    return e != NULL;
}

void hd_types_put(struct hd_types *t, uint64_t db_id, struct slice id, const char *type)
{
    char key[8 + LIMIT_STREAM_NAME_BYTES];
    if (id.len > LIMIT_STREAM_NAME_BYTES || strlen(type) > HAPND_TYPE_BYTES) {
        return;
    }
    size_t n = key_of(db_id, id, key);
    pthread_mutex_lock(&t->mu);
    if (t->map.count >= HD_TYPES_MAX) {
        strmap_clear(&t->map); /* rare: start over rather than track recency */
    }
    struct type_ent *e = strmap_put(&t->map, key, n, NULL);
    snprintf(e->type, sizeof e->type, "%s", type);
    pthread_mutex_unlock(&t->mu);
}
