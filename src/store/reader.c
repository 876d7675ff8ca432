/* Read views (struct store_reader): one LMDB snapshot plus the tail, seeing every event up
 * to one head position; events by position, by stream and by time, stream states and stream
 * lists (docs/design/storage.md, "The unindexed tail and readers").
 *
 * A reader holds the tail lock (shared) from store_read_begin to store_read_end and opens its
 * snapshot while holding it, so positions (0, indexed] are in the snapshot's index and
 * (indexed, head] in the tail, whose entries nobody frees meanwhile. Every record read is
 * checked (CRC and position) before it is returned; redacted records are skipped except by
 * store_get_record. Readers never wait for the writer. Any thread. */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/log.h"
#include "util/errors.h"
#include "util/strmap.h"

/* ---- readers ---- */

uint64_t store_published(const struct store *st)
{
    return __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
}

int store_read_begin(struct store *st, struct store_reader **out)
{
    struct store_reader *r = xmalloc(sizeof(*r));
    r->st = st;
    pthread_rwlock_rdlock(&st->tail_lock);
    uint64_t pub = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
    int rc = st->env ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, &r->txn) : EIO;
    struct head_rec h;
    int err = rc ? st_map_err(rc) : st_get_head(r->txn, st, &h);
    if (err) {
        if (!rc) {
            mdb_txn_abort(r->txn);
        }
        pthread_rwlock_unlock(&st->tail_lock);
        free(r);
        return err;
    }
    r->indexed = h.position;
    r->head = pub > h.position ? pub : h.position;
    *out = r;
    return 0;
}

void store_read_end(struct store_reader *r)
{
    if (!r) {
        return;
    }
    mdb_txn_abort(r->txn);
    pthread_rwlock_unlock(&r->st->tail_lock);
    free(r);
}

uint64_t store_reader_head(const struct store_reader *r)
{
    return r->head;
}

/* Finds where the record of pos is: the tail past the snapshot's index, else the pos table. */
int st_locate(struct store_reader *r, uint64_t pos, const uint8_t **rec, uint32_t *len)
{
    if (pos < 1 || pos > r->head) {
        return ERR_NOTFOUND;
    }
    uint64_t off;
    if (pos > r->indexed) {
        const struct tail_entry *e = entry_at(r->st, pos);
        off = e->offset;
        *len = e->len;
    } else {
        int rc = st_get_pos(r->txn, r->st, pos, &off, len);
        if (rc) {
            return rc == ERR_NOTFOUND ? ERR(ERR_CORRUPT) : rc;
        }
    }
    *rec = log_at(r->st->log, off, *len);
    return *rec ? 0 : ERR(ERR_CORRUPT);
}

/* Decodes the record at pos and calls fn, also for a redacted record when redacted_too
 * (else it is skipped: 0). */
static int emit(struct store_reader *r, uint64_t pos, bool redacted_too, store_event_fn *fn,
                void *arg)
{
    const uint8_t *rec;
    uint32_t len;
    int rc = st_locate(r, pos, &rec, &len);
    if (rc) {
        return rc;
    }
    struct event_rec ev;
    rc = codec_record_decode(rec, len, &ev);
    if (!rc && ev.position != pos) {
        rc = ERR(ERR_CORRUPT);
    }
    if (!rc && ev.redacted && !redacted_too) {
        return 0; /* compacted away: no longer an event anyone reads */
    }
    return rc ? rc : fn(arg, &ev);
}

int st_emit(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    return emit(r, pos, false, fn, arg);
}

/* A callback that notes whether it ran (a redacted record is skipped without a call). */
struct noted_call {
    store_event_fn *fn;
    void *arg;
    bool called;
};

static int noted_call(void *arg, const struct event_rec *ev)
{
    struct noted_call *nc = arg;
    nc->called = true;
    return nc->fn(nc->arg, ev);
}

int store_get_event(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    struct noted_call nc = {fn, arg, false};
    int rc = emit(r, pos, false, noted_call, &nc);
    return rc < 0 ? rc : nc.called ? 0 : ERR_NOTFOUND;
}

int store_get_record(struct store_reader *r, uint64_t pos, store_event_fn *fn, void *arg)
{
    int rc = emit(r, pos, true, fn, arg);
    return rc > 0 ? 0 : rc;
}

int store_scan_log(struct store_reader *r, uint64_t from, bool backward, size_t limit,
                   store_event_fn *fn, void *arg)
{
    if (backward && from > r->head) {
        from = r->head;
    }
    if (from < 1) {
        from = 1;
        if (backward) {
            return 0;
        }
    }
    uint64_t p = from;
    for (size_t n = 0; n < limit && p >= 1 && p <= r->head; n++) {
        int rc = st_emit(r, p, fn, arg);
        if (rc) {
            return rc > 0 ? 0 : rc;
        }
        p = backward ? p - 1 : p + 1;
    }
    return 0;
}

/* True when the tail entry at pos belongs to the stream called name. */
static bool tail_is(struct store_reader *r, uint64_t pos, uint64_t h, struct slice name,
                    struct event_rec *ev)
{
    const struct tail_entry *e = entry_at(r->st, pos);
    if (e->name_hash != h) {
        return false;
    }
    const uint8_t *rec = log_at(r->st->log, e->offset, e->len);
    return rec && codec_record_decode(rec, e->len, ev) == 0 && ev->stream.len == name.len &&
           memcmp(ev->stream.ptr, name.ptr, name.len) == 0;
}

int store_reader_stream(struct store_reader *r, struct slice name, struct stream_rec *out)
{
    int rc = st_get_row(r->txn, r->st, name, out);
    if (rc && rc != ERR_NOTFOUND) {
        return rc;
    }
    bool found = rc == 0;
    uint64_t h = strmap_hash(name.ptr, name.len);
    struct event_rec ev;
    for (uint64_t p = r->indexed + 1; p <= r->head; p++) {
        if (!tail_is(r, p, h, name, &ev)) {
            continue;
        }
        const struct tail_entry *e = entry_at(r->st, p);
        if (!found) {
            found = true;
            out->id = e->stream_id;
            out->first_pos = p;
            out->created_us = ev.recorded_us;
            out->bytes = 0;
        }
        out->bytes += e->len;
        out->version = e->version;
        out->last_pos = p;
        out->updated_us = ev.recorded_us;
    }
    return found ? 0 : ERR_NOTFOUND;
}

/* Position of version v of stream s from the stream index (versions the snapshot indexed). */
int st_indexed_pos(struct store_reader *r, const struct stream_rec *s, uint64_t v,
                       uint64_t *out)
{
    uint8_t sk[STREAM_KEY_BYTES];
    codec_stream_key(sk, s->id, v);
    MDB_val k = {sizeof sk, sk}, val;
    int rc = mdb_get(r->txn, r->st->sindex, &k, &val);
    if (rc) {
        return rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : st_map_err(rc);
    }
    if (val.mv_size != 8) {
        return ERR(ERR_CORRUPT);
    }
    *out = be64_get(val.mv_data);
    return 0;
}

/* Collects the positions of stream s in the tail (in version order) into *out. */
static size_t tail_positions(struct store_reader *r, const struct stream_rec *s,
                             uint64_t **out, uint64_t *first_version)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    if (s->last_pos <= r->indexed) {
        return 0;
    }
    for (uint64_t p = r->indexed + 1; p <= r->head && p <= s->last_pos; p++) {
        const struct tail_entry *e = entry_at(r->st, p);
        if (e->stream_id != s->id) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        if (n == 0) {
            *first_version = e->version;
        }
        (*out)[n++] = p;
    }
    return n;
}

/* Whether indexed version v of stream s is a redacted record (the tail is never compacted). */
static int version_redacted(struct store_reader *r, const struct stream_rec *s, uint64_t v,
                            bool *out)
{
    uint64_t pos;
    const uint8_t *rec;
    uint32_t len;
    int rc = st_indexed_pos(r, s, v, &pos);
    if (!rc) rc = st_locate(r, pos, &rec, &len);
    *out = !rc && len > 1 && (rec[1] & RECORD_REDACTED);
    return rc;
}

/* The first version from `from` on that compaction left whole (s->version + 1 when none).
 * A stream's redacted versions are one range (compaction redacts below a version or before a
 * recorded time, recorded times follow versions, and only records of format 5, a suffix of
 * the stream, are ever redacted), so from a redacted version a binary search finds its end:
 * a read whose settings were relaxed after a compaction starts past what is gone instead of
 * stepping through it. */
static int first_whole(struct store_reader *r, const struct stream_rec *s, uint64_t from,
                       uint64_t first_tail, uint64_t *out)
{
    uint64_t hi = first_tail <= s->version ? first_tail : s->version + 1; /* whole */
    bool red = false;
    int rc = from < hi ? version_redacted(r, s, from, &red) : 0;
    *out = from;
    if (rc || !red) {
        return rc;
    }
    uint64_t lo = from; /* redacted */
    while (!rc && hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        rc = version_redacted(r, s, mid, &red);
        *(red ? &lo : &hi) = mid;
    }
    *out = hi;
    return rc;
}

int store_scan_stream(struct store_reader *r, struct slice name, const struct stream_rec *s,
                      uint64_t from, uint64_t min_version, bool backward, size_t limit,
                      store_event_fn *fn, void *arg)
{
    (void)name;
    if (backward && from > s->version) {
        from = s->version;
    }
    if (!backward && from < min_version) {
        from = min_version;
    }
    uint64_t *tp;
    uint64_t tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, s, &tp, &tv0);
    uint64_t v = from;
    int rc = backward || from < 1 ? 0 : first_whole(r, s, from, tn ? tv0 : UINT64_MAX, &v);
    struct noted_call sc = {fn, arg, false};
    size_t n = 0; /* delivered: a redacted record met on the way does not count */
    while (!rc && n < limit && v >= 1 && v >= min_version && v <= s->version) {
        uint64_t pos;
        if (v >= tv0 && v - tv0 < tn) {
            pos = tp[v - tv0];
        } else {
            rc = st_indexed_pos(r, s, v, &pos);
        }
        sc.called = false;
        if (!rc) rc = st_emit(r, pos, noted_call, &sc);
        n += sc.called;
        v = backward ? v - 1 : v + 1;
    }
    free(tp);
    return rc > 0 ? 0 : rc;
}

static int recorded_at(struct store_reader *r, uint64_t p, int64_t *out)
{
    const uint8_t *rec;
    uint32_t len;
    struct event_rec ev;
    int rc = st_locate(r, p, &rec, &len);
    if (!rc) rc = codec_record_decode(rec, len, &ev);
    if (!rc && ev.position != p) {
        rc = ERR(ERR_CORRUPT);
    }
    *out = rc ? 0 : ev.recorded_us;
    return rc;
}

int store_position_at_time(struct store_reader *r, int64_t t_us, bool at_or_after,
                           uint64_t *out)
{
    uint64_t a = 1, b = r->head;
    *out = at_or_after ? r->head + 1 : 0;
    while (a <= b) {
        uint64_t mid = a + (b - a) / 2;
        int64_t t;
        int rc = recorded_at(r, mid, &t);
        if (rc) {
            return rc;
        }
        bool fits = at_or_after ? t >= t_us : t <= t_us;
        if (fits) {
            *out = mid;
        }
        if (fits == at_or_after) {
            b = mid - 1; /* an earlier position may fit too (at_or_after), or is too late */
        } else {
            a = mid + 1;
        }
    }
    return 0;
}

int store_reader_stream_at(struct store_reader *r, struct slice name, uint64_t as_of,
                           struct stream_rec *out)
{
    int rc = store_reader_stream(r, name, out);
    if (rc || as_of >= out->last_pos) {
        return rc;
    }
    if (out->first_pos > as_of) {
        return ERR_NOTFOUND;
    }
    uint64_t *tp, tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, out, &tp, &tv0);
    uint64_t a = 1, b = out->version, best = 1, best_pos = out->first_pos;
    while (a <= b && !rc) {
        uint64_t mid = a + (b - a) / 2, p = 0;
        if (mid >= tv0 && mid - tv0 < tn) {
            p = tp[mid - tv0];
        } else {
            rc = st_indexed_pos(r, out, mid, &p);
        }
        if (!rc && p <= as_of) {
            best = mid;
            best_pos = p;
            a = mid + 1;
        } else {
            b = mid - 1;
        }
    }
    free(tp);
    int64_t t = 0;
    if (!rc) rc = recorded_at(r, best_pos, &t);
    if (!rc) {
        out->version = best;
        out->last_pos = best_pos;
        out->updated_us = t;
    }
    return rc;
}

/* Position of version v of stream s (index or the tail positions tp[0..tn) from tv0). */
static int version_pos(struct store_reader *r, const struct stream_rec *s, const uint64_t *tp,
                       size_t tn, uint64_t tv0, uint64_t v, uint64_t *out)
{
    if (v >= tv0 && v - tv0 < tn) {
        *out = tp[v - tv0];
        return 0;
    }
    return st_indexed_pos(r, s, v, out);
}

int store_stream_first_since(struct store_reader *r, const struct stream_rec *s, int64_t t_us,
                             uint64_t *out)
{
    uint64_t *tp, tv0 = UINT64_MAX;
    size_t tn = tail_positions(r, s, &tp, &tv0);
    uint64_t a = 1, b = s->version;
    int rc = 0;
    *out = s->version + 1;
    while (a <= b && !rc) {
        uint64_t mid = a + (b - a) / 2, p;
        int64_t t = 0;
        rc = version_pos(r, s, tp, tn, tv0, mid, &p);
        if (!rc) rc = recorded_at(r, p, &t);
        if (!rc && t >= t_us) {
            *out = mid;
            b = mid - 1;
        } else {
            a = mid + 1;
        }
    }
    free(tp);
    return rc;
}

static bool listed(struct slice name, struct slice prefix, struct slice after)
{
    return name.len >= prefix.len && memcmp(name.ptr, prefix.ptr, prefix.len) == 0 &&
           (!after.ptr || st_cmp_slices(&name, &after) > 0);
}

/* Names of the streams created in the tail part of r's view (up to as_of) that are listed,
 * sorted. The slices borrow the log mapping. */
static size_t tail_streams(struct store_reader *r, struct slice prefix, struct slice after,
                           uint64_t as_of, struct slice **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    for (uint64_t p = r->indexed + 1; p <= r->head && p <= as_of; p++) {
        const struct tail_entry *e = entry_at(r->st, p);
        const uint8_t *rec = log_at(r->st->log, e->offset, e->len);
        struct event_rec ev;
        if (e->version != 1 || !rec || codec_record_decode(rec, e->len, &ev) != 0 ||
            !listed(ev.stream, prefix, after)) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        (*out)[n++] = ev.stream;
    }
    if (n) {
        qsort(*out, n, sizeof(**out), st_cmp_slices);
    }
    return n;
}

static int list_one(struct store_reader *r, struct slice name, uint64_t as_of,
                    store_stream_fn *fn, void *arg)
{
    struct stream_rec s;
    int rc = store_reader_stream_at(r, name, as_of, &s);
    if (rc == ERR_NOTFOUND) {
        return 0; /* created after as_of */
    }
    return rc ? rc : fn(arg, name, &s);
}

int store_list_streams(struct store_reader *r, struct slice prefix, struct slice after,
                       uint64_t as_of, store_stream_fn *fn, void *arg)
{
    struct slice *tn;
    size_t nt = tail_streams(r, prefix, after, as_of, &tn), ti = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(r->txn, r->st->streams, &c);
    if (rc) {
        free(tn);
        return st_map_err(rc);
    }
    struct slice start = after.ptr && st_cmp_slices(&after, &prefix) > 0 ? after : prefix;
    MDB_val k = {start.len, (void *)start.ptr}, v;
    int mrc = mdb_cursor_get(c, &k, &v, start.len ? MDB_SET_RANGE : MDB_FIRST);
    rc = 0;
    while (!rc) {
        struct slice key = {k.mv_data, k.mv_size};
        bool have_key = mrc == 0 && key.len >= prefix.len &&
                        memcmp(key.ptr, prefix.ptr, prefix.len) == 0;
        if (have_key && !listed(key, prefix, after)) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* the `after` name itself */
            continue;
        }
        bool take_tail = ti < nt && (!have_key || st_cmp_slices(&tn[ti], &key) < 0);
        if (!have_key && !take_tail) {
            break;
        }
        if (take_tail) {
            rc = list_one(r, tn[ti++], as_of, fn, arg);
        } else {
            rc = list_one(r, key, as_of, fn, arg);
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    if (mrc && mrc != MDB_NOTFOUND && rc == 0) {
        rc = st_map_err(mrc);
    }
    mdb_cursor_close(c);
    free(tn);
    return rc > 0 ? 0 : rc;
}
