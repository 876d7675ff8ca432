/* A database's derived-state store (engine/derived.h): opened lazily under the database's
 * lock, closed and removed with the database. */
#include "engine/derived.h"

#include <stdio.h>

#include "engine/engine_int.h"
#include "store/kv.h"
#include "util/errors.h"

_Static_assert((int)DERIVED_TABLE_BYTES == (int)KV_TABLE_BYTES &&
                   (int)DERIVED_KEY_BYTES == (int)KV_KEY_BYTES,
               "derived.h repeats store/kv.h's bounds");

/* kv_txn is the derived transaction: the names differ only for the layers' sake. */
static struct kv_txn *kt(struct derived_txn *t)
{
    return (struct kv_txn *)t;
}

int derived_begin(struct db *db, bool write, struct derived_txn **out)
{
    pthread_mutex_lock(&db->derived_mu);
    int rc = __atomic_load_n(&db->deleted, __ATOMIC_ACQUIRE) ? ERR_GONE : 0;
    if (!rc && !db->derived) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/derived", db->dir);
        rc = kv_open(dir, db->limits->map_bytes, &db->derived);
    }
    struct kv *kv = db->derived;
    pthread_mutex_unlock(&db->derived_mu);
    if (rc) {
        return rc;
    }
    struct kv_txn *t;
    rc = kv_begin(kv, write, &t);
    if (!rc) {
        *out = (struct derived_txn *)t;
    }
    return rc;
}

int derived_commit(struct derived_txn *t)
{
    return kv_commit(kt(t));
}

void derived_abort(struct derived_txn *t)
{
    kv_abort(kt(t));
}

int derived_get(struct derived_txn *t, const char *table, struct slice key, struct slice *val)
{
    return kv_get(kt(t), table, key, val);
}

int derived_put(struct derived_txn *t, const char *table, struct slice key, struct slice val)
{
    return kv_put(kt(t), table, key, val);
}

int derived_del(struct derived_txn *t, const char *table, struct slice key)
{
    return kv_del(kt(t), table, key);
}

int derived_drop(struct derived_txn *t, const char *table)
{
    return kv_drop(kt(t), table);
}

int derived_scan(struct derived_txn *t, const char *table, struct slice prefix,
                 struct slice after, size_t limit, derived_entry_fn *fn, void *arg)
{
    return kv_scan(kt(t), table, prefix, after, limit, fn, arg);
}

void derived_close(struct db *db, bool remove)
{
    kv_close(db->derived);
    db->derived = NULL;
    if (remove) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/derived", db->dir);
        kv_remove(dir);
    }
}
