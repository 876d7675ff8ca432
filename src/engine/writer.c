/* The group-commit write path of a database (one writer thread each).
 *
 * The writer takes every queued append, and for each request in order, against the database
 * as the batch leaves it (stored events plus the events laid out earlier in this batch):
 *   1. client event ids: all already stored with the same content -> acknowledged as a
 *      duplicate, nothing written; some stored, or stored with other content -> conflict;
 *   2. each part's expected version and its stream's size limit (against the stream as the
 *      earlier parts of the request leave it: a stream may appear in several parts);
 *   3. each condition (the newest matching position against min/max);
 * then lays out the events of the requests that pass, part by part in request order (a part
 * continues its stream's versions where an earlier part of the request left them), hands them
 * to the store as one durable write (one fdatasync), and only then runs every request's done
 * callback. A request that fails a check fails alone; a storage error or failed sync fails
 * every request of the batch, and nothing of it is visible. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <stdlib.h>
#include <string.h>

#include "engine/canon.h"
#include "engine/engine_int.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* What the checks of one batch share: a read view opened on first need (the writer is the
 * only appender, so it sees every stored event), closed before the batch is written. */
struct checks {
    struct db *db;
    struct store_reader *r; /* NULL until needed */
    size_t count;           /* events laid out so far in this batch (db->evs) */
    int64_t now_us;         /* the batch's commit time */
};

static int view(struct checks *cx, struct store_reader **out)
{
    if (!cx->r) {
        int rc = store_read_begin(cx->db->st, &cx->r);
        if (rc) {
            return rc;
        }
    }
    *out = cx->r;
    return 0;
}

static void view_end(struct checks *cx)
{
    store_read_end(cx->r);
    cx->r = NULL;
}

/* ---- stream states ---- */

/* The stream's state as this batch sees it: changed earlier in the batch, or stored (through
 * the batch's view when it is open: a second read lock on the tail could wait behind the
 * indexer, which waits for the first). */
static int batch_state(struct checks *cx, struct slice name, struct stream_rec *out)
{
    const struct stream_rec *s = strmap_get(&cx->db->batch_states, name.ptr, name.len);
    if (s) {
        *out = *s;
        return 0;
    }
    int rc = store_stream_state(cx->db->st, cx->r, name, out);
    if (rc == ERR_NOTFOUND) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    return rc;
}

/* ---- duplicate event ids ---- */

static bool same_slice(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* True when stored event ev has the content of ae appended to stream. */
static bool same_content(struct slice stream, const struct append_event *ae,
                         const struct event_rec *ev)
{
    return same_slice(stream, ev->stream) && same_slice(ae->type, ev->type) &&
           same_slice(ae->data, ev->data) && same_slice(ae->metadata, ev->metadata) &&
           same_slice(ae->tags, ev->tags) && same_slice(ae->subject, ev->subject) &&
           (!ae->has_time || ae->time_us == ev->time_us);
}

/* A stored event fetched by position. */
struct stored {
    struct slice stream;
    const struct append_event *ae;
    bool same;
    uint64_t position, version;
    int64_t recorded_us;
    bool in_batch;        /* laid out earlier in this batch, not yet written */
};

/* True when redacted record ev (header and body digest) held the content of ae. */
static bool same_digest(struct slice stream, const struct append_event *ae,
                        const struct event_rec *ev)
{
    struct event_rec c = {.stream = stream, .type = ae->type, .data = ae->data,
                          .metadata = ae->metadata, .tags = ae->tags, .subject = ae->subject};
    uint8_t d[HASH_SHA256_LEN];
    codec_content_digest(&c, d);
    return memcmp(d, ev->digest, sizeof d) == 0 && (!ae->has_time || ae->time_us == ev->time_us);
}

static int compare_stored(void *arg, const struct event_rec *ev)
{
    struct stored *s = arg;
    s->same = ev->redacted ? same_digest(s->stream, s->ae, ev) /* compacted away */
                           : same_content(s->stream, s->ae, ev);
    s->position = ev->position;
    s->version = ev->version;
    s->recorded_us = ev->recorded_us;
    return 1;
}

/* Looks event ae (of stream) up by id. Returns 0 with *found false (new), or with the stored
 * copy compared in *out; or an error. */
static int find_stored(struct checks *cx, struct slice stream, const struct append_event *ae,
                       bool *found, struct stored *out)
{
    *out = (struct stored){.stream = stream, .ae = ae};
    const size_t *idx = strmap_get(&cx->db->batch_ids, ae->id, UUID_LEN);
    if (idx) {
        const struct event_rec *ev = &cx->db->evs[*idx];
        *found = true;
        out->in_batch = true; /* not stored yet: only as good as this batch's write */
        compare_stored(out, ev);
        return 0;
    }
    struct store_reader *r;
    uint64_t pos;
    int rc = view(cx, &r);
    if (!rc) rc = store_find_id(cx->db->st, r, ae->id, &pos);
    *found = rc == 0;
    if (rc == ERR_NOTFOUND) {
        return 0;
    }
    return rc ? rc : store_get_record(r, pos, compare_stored, out);
}

/* Step 1. Returns 0 (no client id is stored yet), 1 (every event is stored identically: the
 * results are filled in and req->duplicate set), ERR_CONFLICT (req->conflict and failed
 * set), or an error. */
static int check_ids(struct checks *cx, struct append_req *req)
{
    size_t total = 0, stored = 0, first_stored = SIZE_MAX;
    int64_t recorded = 0;
    for (size_t p = 0; p < req->nparts; p++) {
        struct append_part *part = &req->parts[p];
        for (size_t i = 0; i < part->count; i++, total++) {
            struct append_event *ae = &part->events[i];
            if (!ae->has_id) {
                continue;
            }
            bool found;
            struct stored s;
            int rc = find_stored(cx, part->stream, ae, &found, &s);
            if (rc) {
                return rc;
            }
            if (found && !s.same) {
                req->conflict = CONFLICT_DUPLICATE_ID;
                req->failed = total;
                return ERR_CONFLICT;
            }
            if (found) {
                req->dup_in_batch |= s.in_batch;
                ae->position = s.position;
                ae->version = s.version;
                recorded = stored++ ? recorded : s.recorded_us;
                first_stored = first_stored == SIZE_MAX ? total : first_stored;
            }
        }
    }
    if (stored == 0) {
        return 0;
    }
    if (stored < total) {
        req->conflict = CONFLICT_DUPLICATE_ID; /* a retry must carry exactly what was stored */
        req->failed = first_stored;
        return ERR_CONFLICT;
    }
    req->duplicate = true;
    req->recorded_us = recorded;
    return 1;
}

/* ---- conditions ---- */

enum { CONDITION_BUDGET = 100000 }; /* candidate events one condition may examine */

static int take_position(void *arg, const struct event_rec *ev)
{
    uint64_t *out = arg;
    *out = ev->position;
    return 1; /* the newest is all a condition needs */
}

static int take_conflict(void *arg, const struct event_rec *ev)
{
    struct append_cond *c = arg;
    if (c->nconflicts < APPEND_CONFLICTS_MAX) {
        c->conflicts[c->nconflicts++] = ev->position;
    }
    return 0;
}

/* Runs query q (its filter, range and limit set) over the events reads would show as of the
 * batch: events of deleted or expired streams and events past the database's retention
 * period do not count for a condition, as they do not for the reads its client made. */
static int query_visible(struct checks *cx, struct store_reader *r, struct store_query *q,
                         store_event_fn *fn, void *arg, struct store_query_result *res)
{
    return vis_query(cx->db, r, store_reader_head(r), cx->now_us, q, fn, arg, res);
}

/* The newest stored event matching c->filter, or 0 (for a condition with a max alone: 0 also
 * when the newest is at or before max, which is all it needs). Returns ERR_TOOBIG when CONDITION_BUDGET
 * candidates did not settle it (a filter no index narrows, on a large database): the writer
 * must not stall every append, nor the readers waiting behind the indexer, on one scan. */
static int newest_stored(struct checks *cx, struct store_reader *r, const struct append_cond *c,
                         uint64_t *out)
{
    *out = 0;
    /* a condition with a max alone asks whether anything newer than max exists: the search
     * stops at max + 1, so it costs what was written since (a DCB `after`, a j17 timer's
     * cancel_on), not the whole history of what it names; nothing found there holds */
    bool max_only = c->has_max && !c->has_min;
    if (max_only && c->max == UINT64_MAX) {
        return 0;
    }
    struct store_query q = {.filter = c->filter, .from = UINT64_MAX,
                            .to = max_only ? c->max + 1 : 1, .backward = true, .limit = 1,
                            .budget = CONDITION_BUDGET};
    struct store_query_result res;
    int rc = query_visible(cx, r, &q, take_position, out, &res);
    return !rc && !*out && res.next ? ERR_TOOBIG : rc;
}

/* The first matching positions after c->max: stored ones, then this batch's. */
static int collect_conflicts(struct checks *cx, struct store_reader *r, struct append_cond *c)
{
    struct store_query q = {.filter = c->filter, .from = c->max + 1, .to = UINT64_MAX,
                            .limit = APPEND_CONFLICTS_MAX, .budget = CONDITION_BUDGET};
    struct store_query_result res;
    int rc = query_visible(cx, r, &q, take_conflict, c, &res);
    for (size_t i = 0; !rc && i < cx->count; i++) {
        if (cx->db->evs[i].position > c->max && filter_match(c->filter, &cx->db->evs[i])) {
            take_conflict(c, &cx->db->evs[i]);
        }
    }
    return rc;
}

/* Step 3 for one condition. Returns 0 (holds), ERR_CONFLICT or an error. */
static int check_cond(struct checks *cx, struct append_cond *c)
{
    c->last_position = 0;
    c->nconflicts = 0;
    for (size_t i = cx->count; i-- > 0;) {
        if (filter_match(c->filter, &cx->db->evs[i])) {
            c->last_position = cx->db->evs[i].position;
            break;
        }
    }
    struct store_reader *r;
    int rc = view(cx, &r);
    if (!rc && !c->last_position) {
        rc = newest_stored(cx, r, c, &c->last_position);
    }
    if (rc) {
        return rc;
    }
    uint64_t l = c->last_position;
    if ((c->has_min && l < c->min) || (c->has_max && l > c->max)) {
        rc = c->has_max && l > c->max ? collect_conflicts(cx, r, c) : 0;
        return rc ? rc : ERR_CONFLICT;
    }
    return 0;
}

/* ---- lifecycle ---- */

/* The settings of stream as this batch sees them (changed earlier in it, or published). */
static bool batch_meta(struct checks *cx, struct slice stream, struct stream_meta *out)
{
    const struct stream_meta *m = strmap_get(&cx->db->batch_metas, stream.ptr, stream.len);
    if (m) {
        *out = *m;
        return true;
    }
    return meta_get(cx->db, stream, out);
}

static bool tombstoned(struct checks *cx, struct slice stream)
{
    struct stream_meta m;
    return batch_meta(cx, stream, &m) && m.tombstone;
}

/* Computes the new settings of a lifecycle request and writes its event's data. Returns 0 or
 * ERR_CONFLICT (req->conflict set). */
static int apply_meta_op(struct checks *cx, struct append_req *req)
{
    struct stream_meta m = {0};
    batch_meta(cx, req->target, &m); /* none: all zero */
    if (req->op == META_SET) {
        m = req->meta;
        m.tombstone = false;
    } else if (req->op == META_HARD_DELETE) {
        m.tombstone = true;
    } else {
        struct stream_rec s;
        int rc = batch_state(cx, req->target, &s);
        if (rc) {
            return rc;
        }
        if (s.version == 0) {
            req->conflict = CONFLICT_NO_STREAM;
            req->failed = 0;
            return ERR_CONFLICT;
        }
        if (m.truncate_before < s.version + 1) {
            m.truncate_before = s.version + 1; /* never lower what was already hidden */
        }
    }
    req->meta = m;
    buf_reset(&req->meta_text);
    meta_format(&m, &req->meta_text);
    req->parts[0].events[0].data = (struct slice){req->meta_text.ptr, req->meta_text.len};
    return 0;
}

/* ---- laying out ---- */

/* The next record of the batch, laid out for ae (whose hash is filled in once written). */
static struct event_rec *next_event(struct db *db, size_t *count, struct append_event *ae)
{
    if (*count == db->evs_cap) {
        db->evs_cap = db->evs_cap ? db->evs_cap * 2 : 256;
        db->evs = xrealloc(db->evs, db->evs_cap * sizeof(*db->evs));
        db->evs_src = xrealloc(db->evs_src, db->evs_cap * sizeof(*db->evs_src));
    }
    db->evs_src[*count] = ae;
    return &db->evs[(*count)++];
}

static void lay_out_part(struct db *db, struct append_part *part, struct stream_rec *s,
                         uint64_t *next_pos, size_t *count, int64_t now)
{
    for (size_t i = 0; i < part->count; i++) {
        struct append_event *ae = &part->events[i];
        if (!ae->has_id) {
            uuid_v7(now, ae->id);
        } else {
            *(size_t *)strmap_put(&db->batch_ids, ae->id, UUID_LEN, NULL) = *count;
        }
        ae->position = *next_pos;
        ae->version = s->version + 1;
        struct event_rec *ev = next_event(db, count, ae);
        *ev = (struct event_rec){
            .position = (*next_pos)++,
            .version = ++s->version,
            .time_us = ae->has_time ? ae->time_us : now,
            .recorded_us = now,
            .stream = part->stream,
            .type = ae->type,
            .data = ae->data,
            .metadata = ae->metadata,
            .tags = ae->tags,
            .subject = ae->subject,
        };
        memcpy(ev->id, ae->id, sizeof ev->id);
        ev->client_id = ae->has_id;
        s->bytes += codec_record_size(ev);
    }
    *(struct stream_rec *)strmap_put(&db->batch_states, part->stream.ptr, part->stream.len,
                                     NULL) = *s;
}

/* Advances s (part's stream as the earlier parts of the request leave it) past part's events:
 * its version, and its bytes when they are limited. Returns true when the stream then holds
 * more than max bytes (0: no limit). Metadata streams are not limited. */
static bool grows_too_large(uint64_t max, const struct append_part *part, struct stream_rec *s)
{
    s->version += part->count;
    if (!max || part->stream.ptr[0] == '$') {
        return false;
    }
    for (size_t i = 0; i < part->count; i++) {
        s->bytes += engine_event_bytes(part->stream, &part->events[i]);
    }
    return s->bytes > max;
}

/* The index of the first part of req that names part p's stream (p when no earlier one). */
static size_t first_part(const struct append_req *req, size_t p)
{
    for (size_t q = 0; q < p; q++) {
        if (same_slice(req->parts[q].stream, req->parts[p].stream)) {
            return q;
        }
    }
    return p;
}

/* Step 2 and the size limit. A stream may appear in several parts (engine/canon.h): reads each
 * stream's state once, into states[f] with f the first part naming it (first[p] = f), and
 * checks each part against its stream as the earlier parts of the request leave it, so a
 * stream split into parts is held to its size limit as a whole. Returns 0, ERR_CONFLICT
 * (req->conflict and failed set) or a storage error. */
static int check_parts(struct checks *cx, struct append_req *req, struct stream_rec *states,
                       size_t *first)
{
    struct stream_rec after[LIMIT_APPEND_PARTS]; /* at [f]: as the parts so far leave it */
    uint64_t max = __atomic_load_n(&cx->db->settings.max_stream_bytes, __ATOMIC_ACQUIRE);
    for (size_t p = 0; p < req->nparts; p++) {
        struct append_part *part = &req->parts[p];
        first[p] = first_part(req, p);
        if (first[p] == p) {
            int rc = batch_state(cx, part->stream, &states[p]);
            if (rc) {
                return rc;
            }
            after[p] = states[p];
        }
        struct stream_rec *s = &after[first[p]];
        part->actual_version = s->version;
        bool expected = expect_ok(&part->expect, s->version);
        if (!expected || grows_too_large(max, part, s)) {
            req->conflict = expected ? CONFLICT_TOO_LARGE : CONFLICT_VERSION;
            req->failed = p;
            return ERR_CONFLICT;
        }
    }
    return 0;
}

/* Checks one request against the batch's view and lays out its events after cx->count.
 * Returns 0 (laid out), 1 (a duplicate: acknowledged, nothing laid out), ERR_CONFLICT
 * (nothing laid out), or a storage error. */
static int apply_request(struct checks *cx, struct append_req *req, uint64_t *next_pos,
                         int64_t now)
{
    struct db *db = cx->db;
    int rc = check_ids(cx, req);
    if (rc) {
        return rc;
    }
    for (size_t p = 0; p < req->nparts; p++) {
        struct slice name = req->op == META_NONE ? req->parts[p].stream : req->target;
        if (tombstoned(cx, name)) {
            req->conflict = CONFLICT_DELETED;
            req->failed = p;
            return ERR_CONFLICT;
        }
    }
    if (req->op != META_NONE) {
        rc = apply_meta_op(cx, req);
        if (rc) {
            return rc;
        }
    }
    struct stream_rec states[LIMIT_APPEND_PARTS]; /* at [first[p]]: before the request */
    size_t first[LIMIT_APPEND_PARTS];
    rc = check_parts(cx, req, states, first);
    if (rc) {
        return rc;
    }
    for (size_t i = 0; i < req->nconds; i++) {
        rc = check_cond(cx, &req->conds[i]);
        if (rc == ERR_CONFLICT || rc == ERR_TOOBIG) {
            req->conflict = rc == ERR_TOOBIG ? CONFLICT_TOO_BROAD : CONFLICT_CONDITION;
            req->failed = i;
            return ERR_CONFLICT; /* this request fails alone */
        }
        if (rc) {
            return rc;
        }
    }
    req->recorded_us = now;
    if (req->op != META_NONE) {
        *(struct stream_meta *)strmap_put(&db->batch_metas, req->target.ptr, req->target.len,
                                          NULL) = req->meta;
        /* before the write: a compaction planned under the old settings gives up */
        __atomic_add_fetch(&db->meta_changes, 1, __ATOMIC_ACQ_REL);
    }
    for (size_t p = 0; p < req->nparts; p++) { /* a repeat continues its stream's state */
        lay_out_part(db, &req->parts[p], &states[first[p]], next_pos, &cx->count, now);
    }
    return 0;
}

/* ---- idempotency keys ---- */

/* Answers req from an idempotency record (or conflicts when it asked something else). */
static int replay(struct append_req *req, const uint8_t hash[32], uint16_t status,
                  struct slice answer)
{
    if (memcmp(hash, req->idem_hash, sizeof req->idem_hash) != 0) {
        req->conflict = CONFLICT_IDEM_MISMATCH;
        req->failed = 0;
        return ERR_CONFLICT;
    }
    req->replayed = true;
    req->answer_status = status;
    buf_reset(&req->answer);
    buf_add(&req->answer, answer.ptr, answer.len);
    return 1;
}

/* Step 0, for a request with an idempotency key. Returns 0 (the key is new: run it), 1 (an
 * earlier request with this key succeeded: its answer is replayed), ERR_CONFLICT (the key
 * was used by another request) or a storage error. */
static int check_idem(struct checks *cx, struct append_req *req, int64_t now)
{
    struct append_req *const *earlier =
        strmap_get(&cx->db->batch_idem, req->idem_key.ptr, req->idem_key.len);
    if (earlier) {
        struct append_req *e = *earlier;
        int rc = replay(req, e->idem_hash, e->answer_status,
                        (struct slice){e->answer.ptr, e->answer.len});
        req->dup_in_batch = rc == 1; /* only as good as this batch's write */
        return rc;
    }
    struct store_reader *r;
    struct idem_rec ir;
    int rc = view(cx, &r);
    if (!rc) rc = store_find_idem(cx->db->st, r, req->idem_key, now, &ir);
    if (rc == ERR_NOTFOUND) {
        return 0;
    }
    return rc ? rc : replay(req, ir.hash, ir.status, ir.answer);
}

/* After req's events were laid out: has its answer rendered and queues its record. */
static void keep_idem(struct db *db, struct append_req *req, size_t *nidem, int64_t now)
{
    req->render(req);
    if (*nidem == db->idems_cap) {
        db->idems_cap = db->idems_cap ? db->idems_cap * 2 : 16;
        db->idems = xrealloc(db->idems, db->idems_cap * sizeof(*db->idems));
    }
    struct idem_rec *ir = &db->idems[(*nidem)++];
    *ir = (struct idem_rec){.key = req->idem_key, .status = req->answer_status,
                            .created_us = now,
                            .answer = {req->answer.ptr, req->answer.len}};
    memcpy(ir->hash, req->idem_hash, sizeof ir->hash);
    *(struct append_req **)strmap_put(&db->batch_idem, req->idem_key.ptr, req->idem_key.len,
                                      NULL) = req;
}

/* Checks the idempotency key (if any), then the request. Returns as apply_request. */
static int run_request(struct checks *cx, struct append_req *req, uint64_t *next_pos,
                       size_t *nidem, int64_t now)
{
    req->duplicate = false;
    req->dup_in_batch = false;
    req->replayed = false;
    bool keyed = req->idem_key.len > 0;
    int rc = keyed ? check_idem(cx, req, now) : 0;
    if (rc) {
        return rc;
    }
    rc = apply_request(cx, req, next_pos, now);
    if (rc == 0 && keyed) {
        keep_idem(cx->db, req, nidem, now);
    }
    return rc;
}

/* Runs one batch: checks every request in order, writes the passing ones with one durable
 * log write, and sets each request's err. Returns true when events were written. */
static bool commit_batch(struct db *db, struct append_req *batch)
{
    struct store_head head;
    store_head(db->st, &head);
    uint64_t next_pos = head.position + 1;
    size_t written = 0;
    int fatal = 0;
    int64_t now = time_now_us();
    if (now < db->last_recorded_us) {
        now = db->last_recorded_us; /* recorded times never go back along the log */
    }
    strmap_clear(&db->batch_states);
    strmap_clear(&db->batch_ids);
    strmap_clear(&db->batch_metas);
    strmap_clear(&db->batch_idem);
    struct checks cx = {.db = db, .now_us = now};
    size_t nidem = 0;
    for (struct append_req *r = batch; r && !fatal; r = r->next) {
        r->err = run_request(&cx, r, &next_pos, &nidem, now);
        if (r->err == 0) {
            written++;
        } else if (r->err == 1) {
            r->err = 0; /* a duplicate: acknowledged, nothing to write */
        } else if (r->err != ERR_CONFLICT) {
            fatal = r->err;
        }
    }
    view_end(&cx); /* before writing: the store may wait for the indexer, which needs it */
    if (!fatal && cx.count) {
        uint64_t t0 = time_mono_ns();
        fatal = store_append(db->st, db->evs, cx.count, db->idems, nidem);
        __atomic_add_fetch(&db->commit_ns, time_mono_ns() - t0, __ATOMIC_RELAXED);
        for (size_t i = 0; !fatal && i < cx.count; i++) { /* the chain hashes, for answers */
            memcpy(db->evs_src[i]->hash, db->evs[i].hash, sizeof db->evs[i].hash);
        }
    }
    if (fatal) {
        log_error("database %s: commit failed: %s", db->name, err_name(fatal));
        for (struct append_req *r = batch; r; r = r->next) {
            if (r->err != ERR_CONFLICT && (!(r->duplicate || r->replayed) || r->dup_in_batch)) {
                r->err = fatal; /* a duplicate of this batch's events was not written either */
            }
        }
        return false;
    }
    for (struct append_req *r = batch; r; r = r->next) {
        if (r->op != META_NONE && r->err == 0 && !r->duplicate && !r->replayed) {
            meta_publish(db, r->target, &r->meta); /* durable now: readers may see it */
            /* and once more: a compaction that read the count before this publication
               planned with the old settings */
            __atomic_add_fetch(&db->meta_changes, 1, __ATOMIC_ACQ_REL);
        }
    }
    if (written) {
        db->last_recorded_us = now;
        __atomic_add_fetch(&db->commits, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&db->appends, written, __ATOMIC_RELAXED);
    }
    return cx.count > 0;
}

static struct append_req *reverse(struct append_req *r)
{
    struct append_req *out = NULL;
    while (r) {
        struct append_req *next = r->next;
        r->next = out;
        out = r;
        r = next;
    }
    return out;
}

void *writer_main(void *arg)
{
    struct db *db = arg;
    pthread_setname_np(pthread_self(), "annals-writer");
    for (;;) {
        pthread_mutex_lock(&db->mu);
        while (!db->queue && !db->stopping) {
            pthread_cond_wait(&db->cv, &db->mu);
        }
        struct append_req *batch = reverse(db->queue);
        db->queue = NULL;
        db->queue_len = 0;
        bool stop = db->stopping;
        pthread_mutex_unlock(&db->mu);
        if (!batch) {
            if (stop) {
                break;
            }
            continue;
        }
        bool wrote = commit_batch(db, batch);
        while (batch) {
            struct append_req *next = batch->next;
            batch->next = NULL;
            batch->done(batch);
            batch = next;
        }
        if (wrote) {
            watch_notify(db, false); /* after the answers: live readers read what is durable */
        }
    }
    return NULL;
}

size_t engine_event_bytes(struct slice stream, const struct append_event *ae)
{
    struct event_rec ev = {.stream = stream, .type = ae->type, .data = ae->data,
                           .metadata = ae->metadata, .tags = ae->tags, .subject = ae->subject};
    return codec_record_size(&ev);
}

/* Makes a lifecycle operation's part: one settings event in target's metadata stream. */
static int meta_part(struct append_req *req)
{
    size_t n = sizeof META_STREAM_PREFIX - 1;
    if (req->target.len == 0 || req->target.len > LIMIT_STREAM_NAME_BYTES) {
        return ERR_INVALID;
    }
    memcpy(req->meta_stream, META_STREAM_PREFIX, n);
    memcpy(req->meta_stream + n, req->target.ptr, req->target.len);
    req->meta_stream[n + req->target.len] = '\0';
    req->target = (struct slice){req->meta_stream + n, req->target.len};
    req->meta_event = (struct append_event){.type = {META_EVENT_TYPE, sizeof META_EVENT_TYPE - 1},
                                            .data = {"{}", 2}, .metadata = {"{}", 2},
                                            .tags = {"[]", 2}};
    req->meta_part = (struct append_part){.stream = {req->meta_stream, n + req->target.len},
                                          .events = &req->meta_event, .count = 1};
    req->parts = &req->meta_part;
    req->nparts = 1;
    return 0;
}

int engine_append(struct db *db, struct append_req *req)
{
    if (req->op != META_NONE) {
        if (!engine_stream_writable(req->target.ptr, req->target.len) || meta_part(req) != 0) {
            return ERR_INVALID;
        }
    } else if (engine_append_check(req, &req->fault) != 0) {
        return ERR_INVALID;
    }
    size_t total = 0, logic = 0; /* the logic stream's events: deploys, not the client's */
    for (size_t p = 0; p < req->nparts; p++) {
        const struct append_part *part = &req->parts[p];
        bool is_logic = part->stream.len == sizeof ENGINE_LOGIC_STREAM - 1 &&
                        !memcmp(part->stream.ptr, ENGINE_LOGIC_STREAM, part->stream.len);
        *(is_logic ? &logic : &total) += part->count;
        for (size_t i = 0; i < part->count; i++) {
            if (engine_event_bytes(part->stream, &part->events[i]) > db->limits->event_bytes) {
                return ERR_TOOBIG;
            }
        }
        if (part->count == 0) {
            return ERR_TOOBIG;
        }
    }
    if (req->nparts == 0 || req->nparts > LIMIT_APPEND_PARTS || total > db->limits->batch_events ||
        logic > LIMIT_APPEND_LOGIC_EVENTS ||
        req->nconds > LIMIT_APPEND_CONDS_ALL) {
        return ERR_TOOBIG;
    }
    req->err = 0;
    pthread_mutex_lock(&db->mu);
    int rc = db->deleted ? ERR_GONE : db->stopping ? ERR_SHUTDOWN : 0;
    if (!rc) {
        req->next = db->queue;
        db->queue = req;
        db->queue_len++;
        pthread_cond_broadcast(&db->cv);
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* ---- a waiting append (workers) ---- */

struct append_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void on_waited(struct append_req *req)
{
    struct append_waiter *w = req->arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int engine_append_wait(struct db *db, struct append_req *req)
{
    struct append_waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    req->done = on_waited;
    req->arg = &w;
    int rc = engine_append(db, req);
    if (rc) {
        return rc;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done) {
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    return 0;
}
