/* The derived-state store (store/kv.h): one LMDB environment, one database whose keys are
 * "<table>\0<key>", so a table is a key range. */
#include "store/kv.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/errors.h"

struct kv {
    MDB_env *env;
    MDB_dbi dbi;
};

struct kv_txn {
    struct kv *kv;
    MDB_txn *txn;
    bool write;
    char key[KV_TABLE_BYTES + 1 + KV_KEY_BYTES]; /* the composed key of the last call */
};

int kv_open(const char *dir, uint64_t max_bytes, struct kv **out)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        return ERR(ERR_IO);
    }
    struct kv *kv = xcalloc(1, sizeof(*kv));
    int rc = mdb_env_create(&kv->env);
    if (!rc) rc = mdb_env_set_maxreaders(kv->env, 1024);
    if (!rc) rc = mdb_env_set_mapsize(kv->env, (size_t)max_bytes);
    if (!rc) rc = mdb_env_open(kv->env, dir, MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC, 0640);
    MDB_txn *txn = NULL;
    if (!rc) rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, NULL, 0, &kv->dbi);
    if (!rc) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc) {
        if (txn) {
            mdb_txn_abort(txn);
        }
        mdb_env_close(kv->env);
        free(kv);
        return st_map_err(rc);
    }
    *out = kv;
    return 0;
}

void kv_close(struct kv *kv)
{
    if (!kv) {
        return;
    }
    mdb_env_close(kv->env);
    free(kv);
}

int kv_remove(const char *dir)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char path[4200];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            return ERR(ERR_IO);
        }
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : ERR(ERR_IO);
}

int kv_begin(struct kv *kv, bool write, struct kv_txn **out)
{
    struct kv_txn *t = xcalloc(1, sizeof(*t));
    int rc = mdb_txn_begin(kv->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc) {
        free(t);
        return st_map_err(rc);
    }
    t->kv = kv;
    t->write = write;
    *out = t;
    return 0;
}

int kv_commit(struct kv_txn *t)
{
    int rc = mdb_txn_commit(t->txn);
    free(t);
    return rc ? st_map_err(rc) : 0;
}

void kv_abort(struct kv_txn *t)
{
    if (!t) {
        return;
    }
    mdb_txn_abort(t->txn);
    free(t);
}

/* The table's prefix "<table>\0" in t->key; returns its length, or 0 for a bad name. */
static size_t table_prefix(struct kv_txn *t, const char *table)
{
    size_t n = strnlen(table, KV_TABLE_BYTES + 1);
    if (n == 0 || n > KV_TABLE_BYTES) {
        return 0;
    }
    memcpy(t->key, table, n);
    t->key[n] = '\0';
    return n + 1;
}

/* Composes table and key into t->key as an LMDB key; false when either is out of bounds. */
static bool compose(struct kv_txn *t, const char *table, struct slice key, MDB_val *out)
{
    size_t n = table_prefix(t, table);
    if (n == 0 || key.len == 0 || key.len > KV_KEY_BYTES) {
        return false;
    }
    memcpy(t->key + n, key.ptr, key.len);
    *out = (MDB_val){n + key.len, t->key};
    return true;
}

int kv_get(struct kv_txn *t, const char *table, struct slice key, struct slice *val)
{
    MDB_val k, v;
    if (!compose(t, table, key, &k)) {
        return ERR_INVALID;
    }
    int rc = mdb_get(t->txn, t->kv->dbi, &k, &v);
    if (rc) {
        return rc == MDB_NOTFOUND ? ERR_NOTFOUND : st_map_err(rc);
    }
    *val = (struct slice){v.mv_data, v.mv_size};
    return 0;
}

int kv_put(struct kv_txn *t, const char *table, struct slice key, struct slice val)
{
    MDB_val k, v = {val.len, (void *)val.ptr};
    if (!t->write || !compose(t, table, key, &k)) {
        return ERR_INVALID;
    }
    if (val.len > KV_VALUE_BYTES) {
        return ERR_TOOBIG;
    }
    int rc = mdb_put(t->txn, t->kv->dbi, &k, &v, 0);
    return rc ? st_map_err(rc) : 0;
}

int kv_del(struct kv_txn *t, const char *table, struct slice key)
{
    MDB_val k;
    if (!t->write || !compose(t, table, key, &k)) {
        return ERR_INVALID;
    }
    int rc = mdb_del(t->txn, t->kv->dbi, &k, NULL);
    return rc && rc != MDB_NOTFOUND ? st_map_err(rc) : 0;
}

/* Positions cursor c at the first key >= start; rc of the LMDB call. */
static int seek(MDB_cursor *c, const char *start, size_t len, MDB_val *k, MDB_val *v)
{
    *k = (MDB_val){len, (void *)start};
    return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

static bool has_prefix(const MDB_val *k, const char *p, size_t n)
{
    return k->mv_size >= n && memcmp(k->mv_data, p, n) == 0;
}

int kv_drop(struct kv_txn *t, const char *table)
{
    size_t n = table_prefix(t, table);
    if (!t->write || n == 0) {
        return ERR_INVALID;
    }
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->kv->dbi, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k, v;
    rc = seek(c, t->key, n, &k, &v);
    while (!rc && has_prefix(&k, t->key, n)) {
        rc = mdb_cursor_del(c, 0);
        if (!rc) rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL) {
            rc = MDB_NOTFOUND; /* deleted the last entry */
        }
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? st_map_err(rc) : 0;
}

/* Lexicographic order of byte strings (a shorter prefix first). */
static int slice_cmp(struct slice a, struct slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

int kv_scan(struct kv_txn *t, const char *table, struct slice prefix, struct slice after,
            size_t limit, kv_entry_fn *fn, void *arg)
{
    size_t n = table_prefix(t, table);
    if (n == 0 || prefix.len > KV_KEY_BYTES || after.len > KV_KEY_BYTES) {
        return ERR_INVALID;
    }
    char start[sizeof t->key];
    memcpy(start, t->key, n);
    if (prefix.len) { /* an empty slice may carry no pointer */
        memcpy(t->key + n, prefix.ptr, prefix.len);
    }
    size_t plen = n + prefix.len; /* t->key[0..plen): every key shown starts so */
    bool skip_after = after.len > 0 && slice_cmp(after, prefix) > 0;
    struct slice from = skip_after ? after : prefix;
    if (from.len) {
        memcpy(start + n, from.ptr, from.len);
    }
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->kv->dbi, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k, v;
    size_t shown = 0;
    rc = seek(c, start, n + from.len, &k, &v);
    while (!rc && has_prefix(&k, t->key, plen) && (!limit || shown < limit)) {
        bool equal_after = skip_after && k.mv_size == n + after.len &&
                           memcmp((char *)k.mv_data + n, after.ptr, after.len) == 0;
        if (!equal_after) {
            shown++;
            struct slice key = {(char *)k.mv_data + n, k.mv_size - n};
            if (fn(arg, key, (struct slice){v.mv_data, v.mv_size}) != 0) {
                break;
            }
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? st_map_err(rc) : 0;
}
