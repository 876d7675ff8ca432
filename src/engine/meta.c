/* Stream lifecycle metadata (docs/api.md, "Stream lifecycle").
 *
 * A stream's settings live in the log, as events of type "$metadata" in its metadata stream
 * "$$<name>" (so they are durable, ordered with the events and covered by the hash chain);
 * the newest one holds the current settings. Each database keeps the settings of the streams
 * that have any in a map (loaded at open, published by the writer after each commit that
 * changes them), which reads consult to hide deleted and expired events. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/engine_int.h"
#include "util/errors.h"
#include "util/timeutil.h"

int meta_parse(struct slice data, struct stream_meta *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = json_loadb(data.ptr, data.len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return ERR(ERR_CORRUPT);
    }
    json_t *v;
    if ((v = json_object_get(root, "maxAge")) && json_is_integer(v)) {
        out->max_age_us = (uint64_t)json_integer_value(v) * 1000000u;
    }
    if ((v = json_object_get(root, "maxCount")) && json_is_integer(v)) {
        out->max_count = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(root, "truncateBefore")) && json_is_integer(v)) {
        out->truncate_before = (uint64_t)json_integer_value(v);
    }
    out->tombstone = json_is_true(json_object_get(root, "tombstone"));
    json_decref(root);
    return 0;
}

void meta_format(const struct stream_meta *m, struct buf *out)
{
    buf_addc(out, '{');
    const char *sep = "";
    if (m->max_age_us) {
        buf_printf(out, "\"maxAge\":%llu", (unsigned long long)(m->max_age_us / 1000000u));
        sep = ",";
    }
    if (m->max_count) {
        buf_printf(out, "%s\"maxCount\":%llu", sep, (unsigned long long)m->max_count);
        sep = ",";
    }
    if (m->truncate_before) {
        buf_printf(out, "%s\"truncateBefore\":%llu", sep, (unsigned long long)m->truncate_before);
        sep = ",";
    }
    if (m->tombstone) {
        buf_printf(out, "%s\"tombstone\":true", sep);
    }
    buf_addc(out, '}');
}

bool meta_get(struct db *db, struct slice stream, struct stream_meta *out)
{
    if (__atomic_load_n(&db->nmetas, __ATOMIC_ACQUIRE) == 0) {
        return false;
    }
    pthread_rwlock_rdlock(&db->meta_lock);
    const struct stream_meta *m = strmap_get(&db->metas, stream.ptr, stream.len);
    if (m) {
        *out = *m;
    }
    pthread_rwlock_unlock(&db->meta_lock);
    return m != NULL;
}

void meta_publish(struct db *db, struct slice stream, const struct stream_meta *m)
{
    pthread_rwlock_wrlock(&db->meta_lock);
    *(struct stream_meta *)strmap_put(&db->metas, stream.ptr, stream.len, NULL) = *m;
    __atomic_store_n(&db->nmetas, db->metas.count, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&db->meta_lock);
}

/* ---- loading ---- */

struct load {
    struct db *db;
    struct store_reader *r;
};

static int take_meta(void *arg, const struct event_rec *ev)
{
    return meta_parse(ev->data, arg) ? ERR(ERR_CORRUPT) : 1;
}

static int load_one(void *arg, struct slice name, const struct stream_rec *s)
{
    struct load *ld = arg;
    if (name.len < 3 || name.ptr[1] != '$') {
        return 0; /* another reserved stream ($dcb) */
    }
    struct stream_meta m;
    int rc = store_get_event(ld->r, s->last_pos, take_meta, &m);
    if (!rc) {
        meta_publish(ld->db, (struct slice){name.ptr + 2, name.len - 2}, &m);
    }
    return rc;
}

int meta_load(struct db *db)
{
    pthread_rwlock_wrlock(&db->meta_lock);
    strmap_clear(&db->metas);
    __atomic_store_n(&db->nmetas, 0, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&db->meta_lock);
    struct load ld = {.db = db};
    int rc = store_read_begin(db->st, &ld.r);
    if (rc) {
        return rc;
    }
    rc = store_list_streams(ld.r, (struct slice){"$$", 2}, (struct slice){NULL, 0}, UINT64_MAX,
                            load_one, &ld);
    store_read_end(ld.r);
    return rc;
}

/* ---- visibility ---- */

int meta_min_version(struct store_reader *r, const struct stream_meta *m,
                     const struct stream_rec *s, int64_t now_us, uint64_t *out)
{
    uint64_t v = m->truncate_before > 1 ? m->truncate_before : 1;
    if (m->max_count && s->version > m->max_count && s->version - m->max_count + 1 > v) {
        v = s->version - m->max_count + 1;
    }
    if (m->max_age_us && v <= s->version) {
        uint64_t first;
        int rc = store_stream_first_since(r, s, now_us - (int64_t)m->max_age_us, &first);
        if (rc) {
            return rc;
        }
        v = first > v ? first : v;
    }
    *out = v;
    return 0;
}

bool engine_db_ages_out(struct db *db)
{
    struct db_settings ds;
    engine_db_settings(db, &ds);
    if (ds.retention_days) {
        return true;
    }
    if (__atomic_load_n(&db->nmetas, __ATOMIC_ACQUIRE) == 0) {
        return false;
    }
    bool ages = false;
    pthread_rwlock_rdlock(&db->meta_lock);
    const char *k;
    size_t klen;
    void *v;
    for (size_t i = 0; !ages && strmap_next(&db->metas, &i, &k, &klen, &v);) {
        ages = ((const struct stream_meta *)v)->max_age_us != 0;
    }
    pthread_rwlock_unlock(&db->meta_lock);
    return ages;
}
