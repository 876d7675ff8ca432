/* LMDB backend. One environment per database directory with four named tables:
 *   events   position (u64 BE)            -> event record (codec.h)
 *   sindex   stream id || version (BE)    -> position (u64 BE)
 *   streams  stream name (bytes)          -> stream row
 *   meta     "head"                       -> head record
 * The head record is rewritten by every write transaction, so a committed transaction always
 * leaves events, indexes and head consistent (LMDB commits atomically). */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/errors.h"
#include "util/timeutil.h"

struct store {
    MDB_env *env;      /* owned */
    MDB_dbi events;    /* position -> record */
    MDB_dbi sindex;    /* (stream id, version) -> position */
    MDB_dbi streams;   /* name -> stream row */
    MDB_dbi meta;      /* "head" -> head record */
    char *dir;         /* owned copy of the directory path */
};

struct store_txn {
    struct store *st; /* borrowed */
    MDB_txn *txn;     /* owned until commit/abort */
    bool is_write;    /* write transaction */
};

static const char HEAD_KEY[] = "head";

static int map_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS: return 0;
    case MDB_NOTFOUND: return ERR_NOTFOUND;
    case MDB_MAP_FULL: return ERR(ERR_NOSPACE);
    case ENOSPC: return ERR(ERR_NOSPACE);
    case EDQUOT: return ERR(ERR_NOSPACE);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return ERR(ERR_CORRUPT);
    case ENOMEM: return ERR(ERR_NOMEM);
    }
    return ERR(ERR_IO);
}

static int open_tables(struct store *st, bool create)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc) {
        return map_err(rc);
    }
    unsigned flags = create ? MDB_CREATE : 0;
    rc = mdb_dbi_open(txn, "events", flags, &st->events);
    if (!rc) rc = mdb_dbi_open(txn, "sindex", flags, &st->sindex);
    if (!rc) rc = mdb_dbi_open(txn, "streams", flags, &st->streams);
    if (!rc) rc = mdb_dbi_open(txn, "meta", flags, &st->meta);
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? ERR_NOTFOUND : map_err(rc);
    }
    MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
    MDB_val v;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (rc == MDB_NOTFOUND && create) {
        struct head_rec h = {.format = STORE_FORMAT_VERSION, .created_us = time_now_us()};
        uint8_t enc[HEAD_REC_BYTES];
        codec_head_encode(&h, enc);
        v.mv_size = sizeof enc;
        v.mv_data = enc;
        rc = mdb_put(txn, st->meta, &k, &v, 0);
    } else if (rc == 0) {
        struct head_rec h;
        if (codec_head_decode(v.mv_data, v.mv_size, &h)) {
            mdb_txn_abort(txn);
            return ERR(ERR_CORRUPT);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return map_err(rc);
    }
    return map_err(mdb_txn_commit(txn));
}

int store_open(const char *dir, uint64_t map_bytes, bool create, struct store **out)
{
    if (create && mkdir(dir, 0750) != 0 && errno != EEXIST) {
        return errno == ENOSPC ? ERR(ERR_NOSPACE) : ERR(ERR_IO);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (!create && access(path, F_OK) != 0) {
        return ERR_NOTFOUND;
    }
    struct store *st = xcalloc(1, sizeof(*st));
    int rc = mdb_env_create(&st->env);
    if (!rc) rc = mdb_env_set_maxdbs(st->env, 8);
    if (!rc) rc = mdb_env_set_maxreaders(st->env, 1024);
    if (!rc) rc = mdb_env_set_mapsize(st->env, (size_t)map_bytes);
    if (!rc) rc = mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0640);
    int err = rc ? map_err(rc) : open_tables(st, create);
    if (err) {
        mdb_env_close(st->env);
        free(st);
        return err;
    }
    st->dir = xstrndup(dir, strlen(dir));
    *out = st;
    return 0;
}

void store_close(struct store *st)
{
    if (!st) {
        return;
    }
    mdb_env_close(st->env);
    free(st->dir);
    free(st);
}

int store_remove_files(const char *dir)
{
    static const char *files[] = {"data.mdb", "lock.mdb"};
    char path[4096];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            return ERR(ERR_IO);
        }
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : ERR(ERR_IO);
}

int store_stats(struct store *st, struct store_stats *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", st->dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return ERR(ERR_IO);
    }
    MDB_envinfo info;
    MDB_stat ms;
    mdb_env_info(st->env, &info);
    mdb_env_stat(st->env, &ms);
    out->file_bytes = (uint64_t)sb.st_size;
    out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
    return 0;
}

int store_txn_begin(struct store *st, bool is_write, struct store_txn **out)
{
    MDB_txn *t;
    int rc = mdb_txn_begin(st->env, NULL, is_write ? 0 : MDB_RDONLY, &t);
    if (rc) {
        return map_err(rc);
    }
    struct store_txn *txn = xmalloc(sizeof(*txn));
    txn->st = st;
    txn->txn = t;
    txn->is_write = is_write;
    *out = txn;
    return 0;
}

int store_txn_commit(struct store_txn *txn)
{
    int rc = mdb_txn_commit(txn->txn);
    free(txn);
    return map_err(rc);
}

void store_txn_abort(struct store_txn *txn)
{
    if (txn) {
        mdb_txn_abort(txn->txn);
        free(txn);
    }
}

int store_get_head(struct store_txn *txn, struct head_rec *out)
{
    MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
    MDB_val v;
    int rc = mdb_get(txn->txn, txn->st->meta, &k, &v);
    if (rc) {
        return rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : map_err(rc);
    }
    return codec_head_decode(v.mv_data, v.mv_size, out);
}

int store_get_stream(struct store_txn *txn, struct slice name, struct stream_rec *out)
{
    MDB_val k = {name.len, (void *)name.ptr};
    MDB_val v;
    int rc = mdb_get(txn->txn, txn->st->streams, &k, &v);
    if (rc) {
        return map_err(rc);
    }
    return codec_stream_decode(v.mv_data, v.mv_size, out);
}

static int emit(MDB_val *v, store_event_fn *fn, void *arg)
{
    struct event_rec ev;
    int rc = codec_record_decode(v->mv_data, v->mv_size, &ev);
    return rc ? rc : fn(arg, &ev);
}

int store_get_event(struct store_txn *txn, uint64_t pos, store_event_fn *fn, void *arg)
{
    uint8_t kb[8];
    be64_put(kb, pos);
    MDB_val k = {8, kb};
    MDB_val v;
    int rc = mdb_get(txn->txn, txn->st->events, &k, &v);
    if (rc) {
        return map_err(rc);
    }
    rc = emit(&v, fn, arg);
    return rc > 0 ? 0 : rc;
}

int store_scan_log(struct store_txn *txn, uint64_t from, bool backward, size_t limit,
                   store_event_fn *fn, void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->st->events, &cur);
    if (rc) {
        return map_err(rc);
    }
    uint8_t kb[8];
    be64_put(kb, from);
    MDB_val k = {8, kb};
    MDB_val v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (backward) {
        if (rc == MDB_NOTFOUND) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        } else if (rc == 0 && be64_get(k.mv_data) > from) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        }
    }
    size_t n = 0;
    int err = 0;
    while (rc == 0 && n < limit) {
        err = emit(&v, fn, arg);
        if (err) {
            break;
        }
        n++;
        rc = mdb_cursor_get(cur, &k, &v, backward ? MDB_PREV : MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (err) {
        return err > 0 ? 0 : err;
    }
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int store_scan_stream(struct store_txn *txn, const struct stream_rec *s, uint64_t from,
                      bool backward, size_t limit, store_event_fn *fn, void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn->txn, txn->st->sindex, &cur);
    if (rc) {
        return map_err(rc);
    }
    uint64_t v_at = from;
    int err = 0;
    for (size_t n = 0; n < limit && v_at >= 1 && v_at <= s->version; n++) {
        uint8_t kb[STREAM_KEY_BYTES];
        codec_stream_key(kb, s->id, v_at);
        MDB_val k = {sizeof kb, kb};
        MDB_val pv;
        rc = mdb_cursor_get(cur, &k, &pv, MDB_SET_KEY);
        if (rc || pv.mv_size != 8) {
            err = rc == 0 || rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : map_err(rc);
            break;
        }
        MDB_val ek = {8, pv.mv_data};
        MDB_val ev;
        rc = mdb_get(txn->txn, txn->st->events, &ek, &ev);
        if (rc) {
            err = rc == MDB_NOTFOUND ? ERR(ERR_CORRUPT) : map_err(rc);
            break;
        }
        err = emit(&ev, fn, arg);
        if (err) {
            err = err > 0 ? 0 : err;
            break;
        }
        v_at = backward ? v_at - 1 : v_at + 1;
    }
    mdb_cursor_close(cur);
    return err;
}

int store_put_stream(struct store_txn *txn, struct slice name, const struct stream_rec *s)
{
    uint8_t enc[STREAM_REC_BYTES];
    codec_stream_encode(s, enc);
    MDB_val k = {name.len, (void *)name.ptr};
    MDB_val v = {sizeof enc, enc};
    return map_err(mdb_put(txn->txn, txn->st->streams, &k, &v, 0));
}

int store_put_event(struct store_txn *txn, const uint8_t *rec, size_t n, uint64_t position,
                    uint64_t stream_id, uint64_t version)
{
    uint8_t kb[8];
    be64_put(kb, position);
    MDB_val k = {8, kb};
    MDB_val v = {n, (void *)rec};
    int rc = mdb_put(txn->txn, txn->st->events, &k, &v, MDB_APPEND);
    if (rc) {
        return rc == MDB_KEYEXIST ? ERR(ERR_CORRUPT) : map_err(rc);
    }
    uint8_t sk[STREAM_KEY_BYTES];
    codec_stream_key(sk, stream_id, version);
    MDB_val k2 = {sizeof sk, sk};
    MDB_val v2 = {8, kb};
    return map_err(mdb_put(txn->txn, txn->st->sindex, &k2, &v2, 0));
}

int store_put_head(struct store_txn *txn, const struct head_rec *h)
{
    uint8_t enc[HEAD_REC_BYTES];
    codec_head_encode(h, enc);
    MDB_val k = {sizeof HEAD_KEY - 1, (void *)HEAD_KEY};
    MDB_val v = {sizeof enc, enc};
    return map_err(mdb_put(txn->txn, txn->st->meta, &k, &v, 0));
}

/* State carried through a verification walk. */
struct verify_ctx {
    struct store_txn *txn;              /* borrowed read transaction */
    struct store_verify_report *rep;    /* borrowed report */
    uint8_t prev[HASH_SHA256_LEN];      /* hash of the previous event */
    uint64_t expect_pos;                /* next position the walk expects */
};

static int verify_fail(struct verify_ctx *vc, uint64_t pos, const char *problem)
{
    vc->rep->first_bad = pos;
    vc->rep->problem = problem;
    return ERR(ERR_CORRUPT);
}

static int verify_index(struct verify_ctx *vc, const struct event_rec *ev)
{
    struct stream_rec s;
    if (store_get_stream(vc->txn, ev->stream, &s) != 0 || ev->version > s.version) {
        return verify_fail(vc, ev->position, "stream row missing or behind its events");
    }
    uint8_t sk[STREAM_KEY_BYTES];
    codec_stream_key(sk, s.id, ev->version);
    MDB_val k = {sizeof sk, sk};
    MDB_val v;
    if (mdb_get(vc->txn->txn, vc->txn->st->sindex, &k, &v) != 0 || v.mv_size != 8 ||
        be64_get(v.mv_data) != ev->position) {
        return verify_fail(vc, ev->position, "stream index entry missing or wrong");
    }
    return 0;
}

static int verify_walk(struct verify_ctx *vc)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(vc->txn->txn, vc->txn->st->events, &cur);
    if (rc) {
        return map_err(rc);
    }
    MDB_val k, v;
    int err = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !err;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t pos = k.mv_size == 8 ? be64_get(k.mv_data) : 0;
        struct event_rec ev;
        if (pos != vc->expect_pos) {
            err = verify_fail(vc, vc->expect_pos, "gap or disorder in positions");
        } else if (codec_record_decode(v.mv_data, v.mv_size, &ev) != 0) {
            err = verify_fail(vc, pos, "record checksum or layout");
        } else if (ev.position != pos) {
            err = verify_fail(vc, pos, "record position differs from its key");
        } else if (!codec_record_hash_ok(v.mv_data, v.mv_size, vc->prev)) {
            err = verify_fail(vc, pos, "hash chain broken");
        } else {
            err = verify_index(vc, &ev);
            memcpy(vc->prev, ev.hash, HASH_SHA256_LEN);
            vc->expect_pos++;
            vc->rep->events_checked++;
        }
    }
    mdb_cursor_close(cur);
    if (err) {
        return err;
    }
    return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int store_verify(struct store *st, struct store_verify_report *out)
{
    memset(out, 0, sizeof(*out));
    struct verify_ctx vc = {.rep = out, .expect_pos = 1};
    int rc = store_txn_begin(st, false, &vc.txn);
    if (rc) {
        return rc;
    }
    struct head_rec h;
    rc = store_get_head(vc.txn, &h);
    if (rc) {
        verify_fail(&vc, 0, "head record unreadable");
    } else {
        rc = verify_walk(&vc);
    }
    if (!rc && (h.position != vc.expect_pos - 1 || h.event_count != out->events_checked ||
                memcmp(h.hash, vc.prev, HASH_SHA256_LEN) != 0)) {
        rc = verify_fail(&vc, h.position, "head record does not match the log");
    }
    store_txn_abort(vc.txn);
    return rc;
}
