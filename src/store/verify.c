/* Offline verification of a stopped store (annals verify; docs/design/storage.md,
 * "Verification"): opens the index read-only and the log of the generation in force, walks
 * every batch from the start (CRCs, positions 1..n without gaps, the hash chain through
 * redacted records) and checks every indexed event's index entries (pos, stream row and
 * sindex, ids, postings) and the index head against the log. Stops at the first failure and
 * reports it. */
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/log.h"
#include "util/errors.h"

/* ---- verification ---- */

/* State of an offline verification walk. */
struct verify_ctx {
    struct store *st;                  /* opened read-only */
    MDB_txn *txn;                      /* read snapshot of the index */
    struct head_rec h;                 /* index head */
    struct store_verify_report *rep;   /* borrowed */
};

static int verify_fail(struct verify_ctx *vc, uint64_t pos, const char *problem)
{
    vc->rep->first_bad = pos;
    vc->rep->problem = problem;
    return ERR(ERR_CORRUPT);
}

/* Checks the index entries of one indexed event. */
static int verify_indexed(struct verify_ctx *vc, const struct event_rec *ev, uint64_t rec_off,
                          uint32_t len)
{
    uint64_t off;
    uint32_t plen;
    if (st_get_pos(vc->txn, vc->st, ev->position, &off, &plen) != 0 || off != rec_off ||
        plen != len) {
        return verify_fail(vc, ev->position, "position index entry missing or wrong");
    }
    struct stream_rec s;
    uint64_t at;
    struct store_reader r = {.st = vc->st, .txn = vc->txn};
    /* a redacted record's stream and terms went with its content: its pos and id remain */
    if (!ev->redacted &&
        (st_get_row(vc->txn, vc->st, ev->stream, &s) != 0 || s.version < ev->version ||
         st_indexed_pos(&r, &s, ev->version, &at) != 0 || at != ev->position)) {
        return verify_fail(vc, ev->position, "stream index entry missing or wrong");
    }
    MDB_val ik = {UUID_LEN, (void *)ev->id}, iv;
    if (mdb_get(vc->txn, vc->st->ids, &ik, &iv) != 0 || iv.mv_size != 8 ||
        be64_get(iv.mv_data) != ev->position) {
        return verify_fail(vc, ev->position, "event id index entry missing or wrong");
    }
    if (!ev->redacted && st_verify_terms(vc->txn, vc->st, ev) != 0) {
        return verify_fail(vc, ev->position, "query index entry missing");
    }
    if (ev->position == vc->h.position && memcmp(vc->h.hash, ev->hash, HASH_SHA256_LEN) != 0) {
        return verify_fail(vc, ev->position, "index head does not match the log");
    }
    return 0;
}

static int verify_event(void *arg, const struct event_rec *ev, uint64_t rec_off, uint32_t len)
{
    struct verify_ctx *vc = arg;
    if (ev->position <= vc->h.position) {
        int rc = verify_indexed(vc, ev, rec_off, len);
        if (rc) {
            return rc;
        }
    }
    vc->rep->events_checked++;
    vc->rep->last_position = ev->position;
    memcpy(vc->rep->last_hash, ev->hash, HASH_SHA256_LEN);
    return 0;
}

static int verify_walk(struct verify_ctx *vc)
{
    uint64_t off = 0, pos = 1;
    uint8_t prev[HASH_SHA256_LEN] = {0};
    struct batch_view b;
    enum frame_kind k;
    while ((k = st_read_batch(vc->st->log, off, &b)) == FRAME_OK) {
        int rc = st_walk_batch(vc->st->log, &b, &pos, prev, verify_event, vc);
        if (rc) {
            return vc->rep->problem ? rc : verify_fail(vc, pos, "record checksum, position, hash chain or idempotency record");
        }
        if (pos - 1 == vc->h.position && vc->h.log_end != b.next) {
            return verify_fail(vc, pos - 1, "index head does not match the log");
        }
        off = b.next;
    }
    bool rest = st_nonzero_after(vc->st->log, off);
    if (rest && (pos <= vc->h.position || st_valid_batch_follows(vc->st->log, off, pos))) {
        return verify_fail(vc, pos, "batch checksum, length or layout");
    }
    if (pos - 1 < vc->h.position) {
        return verify_fail(vc, pos, "the index covers events missing from the log");
    }
    vc->rep->torn_tail = rest;
    return 0;
}

int store_verify(const char *dir, uint64_t map_bytes, struct store_verify_report *out)
{
    memset(out, 0, sizeof(*out));
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (access(path, F_OK) != 0) {
        return ERR_NOTFOUND;
    }
    struct verify_ctx vc = {.st = st_alloc(dir, map_bytes), .rep = out};
    int rc = st_open_env(vc.st, false, true);
    if (!rc) rc = st_map_err(mdb_txn_begin(vc.st->env, NULL, MDB_RDONLY, &vc.txn));
    if (!rc) {
        rc = st_get_head(vc.txn, vc.st, &vc.h);
        if (rc) {
            rc = verify_fail(&vc, 0, "index head unreadable");
        } else {
            rc = st_open_log(vc.st, vc.h.generation);
            rc = rc ? rc : verify_walk(&vc);
        }
        mdb_txn_abort(vc.txn);
    } else if (rc == ERR_CORRUPT) {
        verify_fail(&vc, 0, "index unreadable");
    }
    st_free(vc.st);
    return rc;
}
