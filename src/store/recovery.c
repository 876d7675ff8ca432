/* Reading the log back, and recovery of the unindexed tail at open (docs/design/storage.md,
 * "Recovery").
 *
 * A batch is read whole or not at all: its header's magic, length and CRC-32C must match
 * (st_read_batch), then each event record must decode, carry the next position and link to
 * its predecessor's chain hash, and its aux frames must be well-formed idempotency records
 * (st_walk_batch). Recovery, verification and compaction read the log this way.
 *
 * Recovery (st_recover_tail, from store_open) walks the batches past the index head and
 * notes each event and idempotency record in the writer's state and the tail, as an append
 * does. Only the last batch can be torn (each is written after the previous one's sync
 * returned): what follows the last whole batch is wiped, unless a whole, valid batch of
 * later positions lies beyond it, which is damage (ERR_CORRUPT). */
#include "store/store_int.h"

#include <string.h>

#include "store/log.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"

/* ---- log scanning (recovery and verify) ---- */

/* Reads the batch header at off: FRAME_END at zeros or the end of the file; FRAME_BAD when
 * the magic, length or CRC is wrong (a torn or damaged batch); FRAME_OK otherwise. */
enum frame_kind st_read_batch(const struct log *lg, uint64_t off, struct batch_view *b)
{
    const uint8_t *h = log_at(lg, off, LOG_BATCH_HEADER);
    if (!h) {
        return FRAME_END;
    }
    uint32_t magic = be32_get(h), len = be32_get(h + 4);
    if (magic == 0 && len == 0) {
        return FRAME_END;
    }
    const uint8_t *f = log_at(lg, off + LOG_BATCH_HEADER, len);
    if (magic != LOG_BATCH_MAGIC || !f || len == 0 ||
        be32_get(h + 8) != hash_crc32c(0, f, len)) {
        return FRAME_BAD;
    }
    b->frames_at = off + LOG_BATCH_HEADER;
    b->frames_len = len;
    b->count = be32_get(h + 12);
    b->next = b->frames_at + len;
    return FRAME_OK;
}

const uint8_t *st_frame_at(const struct log *lg, uint64_t off, uint64_t end, uint32_t *len)
{
    const uint8_t *h = log_at(lg, off, LOG_FRAME_HEADER);
    *len = h ? be32_get(h) : 0;
    return *len && off + LOG_FRAME_HEADER + *len <= end
               ? log_at(lg, off + LOG_FRAME_HEADER, *len)
               : NULL;
}

/* Walks the aux frames in [off, end): each must be a well-formed idempotency record. Calls fn
 * (may be NULL) for each with the record's offset and length. Returns 0, fn's error or
 * ERR_CORRUPT. */
int st_walk_aux(const struct log *lg, uint64_t off, uint64_t end,
                int (*fn)(void *arg, uint64_t rec_off, uint32_t len), void *arg)
{
    while (off < end) {
        uint32_t n;
        const uint8_t *rec = st_frame_at(lg, off, end, &n);
        struct idem_rec ir;
        if (!rec || codec_idem_decode(rec, n, &ir) != 0) {
            return ERR(ERR_CORRUPT);
        }
        int rc = fn ? fn(arg, off + LOG_FRAME_HEADER, n) : 0;
        if (rc) {
            return rc;
        }
        off += LOG_FRAME_HEADER + n;
    }
    return 0;
}

/* Walks the events of a batch whose CRC matched: each must decode, carry position *pos (which
 * advances) and link to prev (which advances); then its aux frames, which must be well formed.
 * Returns 0, the callback's error, or ERR_CORRUPT (a batch that passed its CRC but is not well
 * formed: damage, not a tear). */
int st_walk_batch(const struct log *lg, const struct batch_view *b, uint64_t *pos,
                  uint8_t prev[HASH_SHA256_LEN], batch_event_fn *fn, void *arg)
{
    uint64_t off = b->frames_at;
    for (uint32_t i = 0; i < b->count; i++) {
        uint32_t n;
        const uint8_t *rec = st_frame_at(lg, off, b->next, &n);
        struct event_rec ev;
        if (!rec || codec_record_decode(rec, n, &ev) != 0 || ev.position != *pos ||
            !codec_record_hash_ok(rec, n, prev)) {
            return ERR(ERR_CORRUPT);
        }
        int rc = fn(arg, &ev, off + LOG_FRAME_HEADER, n);
        if (rc) {
            return rc;
        }
        memcpy(prev, ev.hash, HASH_SHA256_LEN);
        (*pos)++;
        off += LOG_FRAME_HEADER + n;
    }
    return b->count ? st_walk_aux(lg, off, b->next, NULL, NULL) : ERR(ERR_CORRUPT);
}

/* After the log ends or goes bad at off (next position pos): is there a whole, valid batch of
 * later positions further on? Batches are written one after another, each only after the
 * previous one's sync returned, so only the last batch can be torn: a valid later batch means
 * acknowledged events lie beyond damage. */
bool st_valid_batch_follows(const struct log *lg, uint64_t off, uint64_t pos)
{
    uint64_t end = log_file_bytes(lg);
    for (uint64_t o = off + 1; o + LOG_BATCH_HEADER + LOG_FRAME_HEADER + 16 <= end; o++) {
        const uint8_t *h = log_at(lg, o, 4);
        if (!h || be32_get(h) != LOG_BATCH_MAGIC) {
            continue;
        }
        struct batch_view b;
        if (st_read_batch(lg, o, &b) != FRAME_OK) {
            continue;
        }
        const uint8_t *r = log_at(lg, b.frames_at + LOG_FRAME_HEADER, 16);
        if (r && be64_get(r + 8) > pos) {
            return true;
        }
    }
    return false;
}

/* True when any byte in [off, end of file) is not zero. */
bool st_nonzero_after(const struct log *lg, uint64_t off)
{
    uint64_t end = log_file_bytes(lg);
    const uint8_t *p = off < end ? log_at(lg, off, (size_t)(end - off)) : NULL;
    for (uint64_t i = 0; p && i < end - off; i++) {
        if (p[i]) {
            return true;
        }
    }
    return false;
}

/* ---- recovery of the tail ---- */

static int recover_event(void *arg, const struct event_rec *ev, uint64_t rec_off, uint32_t len)
{
    struct recover_ctx *rc = arg;
    uint64_t id;
    int err = st_resolve_id(rc->st, rc->fresh, ev, rc->next_id, &id);
    if (!err) {
        struct event_rec copy = *ev;
        copy.client_id = true; /* who made it is not stored: track every recovered id */
        st_note_event(rc->st, &copy, id, rec_off, len);
    }
    return err;
}

int st_recover_idem(void *arg, uint64_t rec_off, uint32_t len)
{
    struct recover_ctx *rc = arg;
    return st_note_idem(rc->st, rc->last_pos, rec_off, len);
}

/* After recovering the events of batch b (last position last_pos): notes its aux frames. */
static int recover_aux(struct store *st, const struct batch_view *b, uint64_t last_pos)
{
    struct tail_entry *e = entry_at(st, last_pos);
    uint64_t aux_at = e->offset + e->len;
    e->aux_len = (uint32_t)(b->next - aux_at);
    struct recover_ctx ctx = {.st = st, .last_pos = last_pos};
    return st_walk_aux(st->log, aux_at, b->next, st_recover_idem, &ctx);
}

/* Rebuilds the writer state and the tail from the log past the index head, batch by batch
 * (a batch is kept whole or not at all). Whatever follows the last whole batch is the remains
 * of an unacknowledged write: it is wiped, unless a valid later batch shows real damage. */
int st_recover_tail(struct store *st, const struct head_rec *h)
{
    uint64_t off = h->log_end;
    uint64_t pos = h->position + 1;
    uint8_t prev[HASH_SHA256_LEN];
    memcpy(prev, h->hash, sizeof prev);
    struct strmap fresh;
    strmap_init(&fresh, sizeof(uint64_t));
    uint64_t next_id = h->stream_count;
    struct recover_ctx ctx = {st, &fresh, &next_id, 0};
    struct batch_view b;
    enum frame_kind k;
    int rc = 0;
    while (!rc && (k = st_read_batch(st->log, off, &b)) == FRAME_OK) {
        rc = st_walk_batch(st->log, &b, &pos, prev, recover_event, &ctx);
        if (!rc) rc = recover_aux(st, &b, pos - 1);
        off = b.next;
    }
    strmap_fini(&fresh);
    if (rc || (k != FRAME_OK && st_nonzero_after(st->log, off) && st_valid_batch_follows(st->log, off, pos))) {
        log_error("%s: the event log is damaged at position %llu; run annals verify", st->dir,
                  (unsigned long long)pos);
        return rc && rc != ERR_CORRUPT ? rc : ERR(ERR_CORRUPT);
    }
    if (st_nonzero_after(st->log, off)) {
        log_warn("%s: discarding a torn, unacknowledged write after position %llu", st->dir,
                 (unsigned long long)(pos - 1));
        rc = log_zero(st->log, off, log_file_bytes(st->log) - off);
        if (!rc) rc = log_sync(st->log);
        if (rc) {
            return rc;
        }
    }
    log_set_end(st->log, off);
    st->head.position = pos - 1;
    memcpy(st->head.hash, prev, sizeof prev);
    st->head.stream_count = next_id;
    __atomic_store_n(&st->streams_pub, next_id, __ATOMIC_RELEASE);
    __atomic_store_n(&st->published, pos - 1, __ATOMIC_RELEASE);
    if (pos - 1 > h->position) {
        log_info("%s: %llu events past the index recovered from the log", st->dir,
                 (unsigned long long)(pos - 1 - h->position));
    }
    return 0;
}
