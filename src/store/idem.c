/* What makes a retried write safe to repeat: idempotency records (docs/design/storage.md,
 * "Idempotency record") and event ids.
 *
 * The indexer copies each idempotency record of a batch into `idem` (key -> record) and
 * `idemage` (created us || key: expiry order) in the batch's index transaction
 * (st_put_idem), and purges expired ones from the oldest (st_purge_idem, st_purge_alone).
 * The writer looks keys up in its map of unindexed records first, then in `idem`; event ids
 * in its map of unindexed client ids, then in `ids`, then (server-made UUIDv7s) in the tail
 * by time. A record is alive while now - created < the TTL. */
#include "store/store_int.h"

#include <errno.h>
#include <string.h>

#include "store/log.h"
#include "util/errors.h"
#include "util/idmap.h"
#include "util/limits.h"
#include "util/strmap.h"
#include "util/timeutil.h"

/* ---- idempotency records in the index ---- */

/* Key of the expiry table: created us (BE) || idempotency key. */
static size_t idemage_key(uint8_t *out, int64_t created_us, struct slice key)
{
    be64_put(out, (uint64_t)created_us);
    memcpy(out + 8, key.ptr, key.len);
    return 8 + key.len;
}

int st_put_idem(void *arg, uint64_t rec_off, uint32_t len)
{
    struct index_ctx *ix = arg;
    const uint8_t *rec = log_at(ix->st->log, rec_off, len);
    struct idem_rec ir;
    if (!rec || codec_idem_decode(rec, len, &ir) != 0) {
        return ERR(ERR_CORRUPT);
    }
    MDB_val k = {ir.key.len, (void *)ir.key.ptr}, v = {len, (void *)rec};
    uint8_t ak[8 + LIMIT_IDEM_STORED_KEY_BYTES];
    MDB_val k2 = {idemage_key(ak, ir.created_us, ir.key), ak}, v2 = {0, NULL};
    int rc = mdb_put(ix->txn, ix->st->idem, &k, &v, 0);
    if (!rc) rc = mdb_put(ix->txn, ix->st->idemage, &k2, &v2, 0);
    return st_map_err(rc);
}

/* Deletes up to IDEM_PURGE_MAX records created before now - ttl (a record replaced by a newer
 * one under the same key keeps the newer). Sets *more when expired ones are left. */
int st_purge_idem(MDB_txn *txn, struct store *st, bool *more)
{
    int64_t cutoff = time_now_us() - (int64_t)__atomic_load_n(&st->idem_ttl_us, __ATOMIC_RELAXED);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->idemage, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k, v;
    size_t n = 0;
    *more = false;
    while ((rc = mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST)) == 0) {
        if (k.mv_size <= 8 || (int64_t)be64_get(k.mv_data) >= cutoff) {
            break;
        }
        if (n++ == IDEM_PURGE_MAX) {
            *more = true;
            break;
        }
        int64_t created = (int64_t)be64_get(k.mv_data);
        MDB_val ik = {k.mv_size - 8, (uint8_t *)k.mv_data + 8}, iv;
        struct idem_rec ir;
        rc = mdb_get(txn, st->idem, &ik, &iv);
        if (!rc && codec_idem_decode(iv.mv_data, iv.mv_size, &ir) == 0 &&
            ir.created_us == created) {
            rc = mdb_del(txn, st->idem, &ik, NULL);
        }
        if (!rc || rc == MDB_NOTFOUND) rc = mdb_cursor_del(c, 0);
        if (rc) {
            break;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : st_map_err(rc);
}

/* One index transaction that only purges expired idempotency records (an idle database).
 * Returns 0 or an error. */
int st_purge_alone(struct store *st)
{
    MDB_txn *txn;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : EIO;
    if (rc) {
        return st_map_err(rc);
    }
    bool more;
    rc = st_purge_idem(txn, st, &more);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return st_map_err(mdb_txn_commit(txn));
}

/* ---- lookups (writer thread) ---- */

/* Bytes at offset `at` of the record at tail position p. */
static const uint8_t *tail_field(struct store_reader *r, uint64_t p, uint32_t at, uint32_t n)
{
    const struct tail_entry *e = entry_at(r->st, p);
    return e->len >= at + n ? log_at(r->st->log, e->offset + at, n) : NULL;
}

/* Server-made ids are UUIDv7 stamped with their commit's recorded time (in ms), and recorded
 * times never decrease along the log: so an unindexed event with a server-made id is found by
 * a binary search of the tail by time, then a look at the events of that millisecond. This
 * keeps the writer from tracking every id it makes. Returns 0 or ERR_NOTFOUND. */
static int find_v7_in_tail(struct store_reader *r, const uint8_t id[UUID_LEN], uint64_t *pos)
{
    if ((id[6] >> 4) != 7 || r->head <= r->indexed) {
        return ERR_NOTFOUND;
    }
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++) {
        ms = ms << 8 | id[i];
    }
    /* an id's time may run ahead of its commit's (uuid_v7 moves on a millisecond every 2048+
     * ids): search from the largest lead the writer has made */
    uint64_t lead = __atomic_load_n(&r->st->max_id_lead_ms, __ATOMIC_RELAXED) + 1;
    uint64_t hi_ms = ms;
    ms = ms > lead ? ms - lead : 0;
    uint64_t a = r->indexed + 1, b = r->head, first = r->head + 1;
    while (a <= b) { /* the first position recorded at or after ms */
        uint64_t mid = a + (b - a) / 2;
        const uint8_t *t = tail_field(r, mid, 32, 8);
        if (!t) {
            return ERR_NOTFOUND;
        }
        if ((uint64_t)be64_get(t) / 1000 >= ms) {
            first = mid;
            b = mid - 1;
        } else {
            a = mid + 1;
        }
    }
    for (uint64_t p = first; p <= r->head; p++) {
        const uint8_t *t = tail_field(r, p, 32, 8 + UUID_LEN);
        if (!t || (uint64_t)be64_get(t) / 1000 > hi_ms) {
            break;
        }
        if (memcmp(t + 8, id, UUID_LEN) == 0) {
            *pos = p;
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

int store_find_id(struct store *st, struct store_reader *r, const uint8_t id[UUID_LEN],
                  uint64_t *pos)
{
    uint64_t p = idmap_get(&st->tail_ids, id);
    if (p) {
        *pos = p;
        return 0;
    }
    MDB_val k = {UUID_LEN, (void *)id}, v;
    int rc = mdb_get(r->txn, st->ids, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return find_v7_in_tail(r, id, pos);
    }
    if (rc) {
        return st_map_err(rc);
    }
    if (v.mv_size != 8) {
        return ERR(ERR_CORRUPT);
    }
    *pos = be64_get(v.mv_data);
    return 0;
}

int store_find_idem(struct store *st, struct store_reader *r, struct slice key, int64_t now_us,
                    struct idem_rec *out)
{
    const struct idem_loc *l = strmap_get(&st->tail_idem, key.ptr, key.len);
    int rc = 0;
    if (l) {
        const uint8_t *rec = log_at(st->log, l->offset, l->len);
        rc = rec ? codec_idem_decode(rec, l->len, out) : ERR(ERR_CORRUPT);
    } else if (!st->has_idem) {
        return ERR_NOTFOUND;
    } else {
        MDB_val k = {key.len, (void *)key.ptr}, v;
        rc = mdb_get(r->txn, st->idem, &k, &v);
        if (rc) {
            return rc == MDB_NOTFOUND ? ERR_NOTFOUND : st_map_err(rc);
        }
        rc = codec_idem_decode(v.mv_data, v.mv_size, out);
    }
    if (rc) {
        return rc;
    }
    uint64_t ttl = __atomic_load_n(&st->idem_ttl_us, __ATOMIC_RELAXED);
    return now_us - out->created_us >= (int64_t)ttl ? ERR_NOTFOUND : 0;
}

void store_set_idem_ttl(struct store *st, uint64_t ttl_us)
{
    __atomic_store_n(&st->idem_ttl_us, ttl_us, __ATOMIC_RELAXED);
}
