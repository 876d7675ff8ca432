/* Running j17 sagas (docs/dialects/j17.md, "Running sagas"): what the timer thread (timers.c)
 * does each tick with the instances saga.h rebuilds from J17_TIMER_STREAM. A step's emit and
 * its progress record go in one append on the condition that no record of that step exists
 * (tag J17_SAGA_STEP_TAG<id>:<i>) and the instance has not ended (J17_SAGA_END_TAG<id>); an
 * await completes with a record conditioned on J17_SAGA_DONE_TAG<id>:<i>; a failure writes the
 * compensations with the ended record, conditioned on the end tag and on the failing step's
 * tag. So each step, completion and end happens once, whatever threads, processes or restarts
 * race. After a write that committed, the record is applied to the instance at once (applying
 * it again when the stream is read changes nothing); after a condition failed the stream read
 * of the next tick brings what the other writer did.
 *
 * Records name events by position (saga.h): the trigger and the awaited events are read back
 * when a step's context is built, so no record of the runner grows with the events it names,
 * and an instance in memory keeps no event. An await completes when its event is found: the
 * completion record is small and fixed, and a refusal of it is logged and retried, never
 * taken for a failure of the saga. A timeout fails the saga only after a read that reached
 * the head of the log found nothing.
 *
 * Bounds: J17_SAGAS_LIVE_MAX instances per database (saga.h), J17_SAGA_CHECKS_PER_TICK reads
 * for awaited events per database per tick, each examining at most J17_SAGA_AWAIT_BUDGET
 * events, J17_SAGA_WRITES_PER_TICK appends per database per tick (a move under way finishes:
 * a failure's compensations and its plain end may add one); a step's events are those of one
 * write (J17_IMPLIED_MAX, J17_SAGA_STARTS_MAX). */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/translate.h"
#include "ops/append.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

int j_sagas_on_record(struct j_sagas *s, const struct event_rec *ev, const json_t *data)
{
    char type[32];
    if (ev->type.len >= sizeof type) {
        return 0;
    }
    memcpy(type, ev->type.ptr, ev->type.len);
    type[ev->type.len] = '\0';
    enum j_apply a = j_sagas_apply(s, type, data, ev->position);
    if (a == J_APPLY_DONE && !strcmp(type, J17_SAGA_ENDED)) {
        /* at once, so that rebuilding a long history keeps only the running instances */
        j_sagas_remove_ended(s, json_string_value(json_object_get(data, "instance")));
    }
    if (a != J_APPLY_FULL) {
        return 0;
    }
    return j_sagas_overflow_push(s, json_string_value(json_object_get(data, "instance"))) ? 0
                                                                                           : 1;
}

/* One tick of one database. */
struct run {
    struct j17_ctx *x;       /* borrowed */
    struct db *db;           /* borrowed */
    struct j_sagas *s;       /* borrowed */
    struct j17_spec *spec;   /* a reference: the spec in force (NULL while ending overflow) */
    size_t checks;           /* awaited-event reads made */
    size_t writes;           /* appends tried */
};

/* What a write of the timer thread came to. */
enum wrote {
    WROTE,                   /* committed, and applied to the instance */
    WROTE_CONFLICT,          /* a condition failed: done elsewhere (the next read brings it) */
    WROTE_NOT,               /* not now: an error to retry at the next tick */
    WROTE_REFUSED,           /* the append was refused (ERR_INVALID, ERR_TOOBIG): it never
                                will be written */
};

/* The clock, read for each write (a tick's writes may take a while). */
static int64_t clock_ms(void)
{
    return time_now_us() / 1000;
}

static bool has_budget(const struct run *r)
{
    return r->writes < J17_SAGA_WRITES_PER_TICK;
}

/* ---- writing records ---- */

/* Appends the condition that no record of J17_TIMER_STREAM is tagged kind<id>[:step]. */
static void no_tag(struct buf *out, const char *kind, const char *id, long step)
{
    buf_printf(out, "{\"query\":{\"streams\":[\"%s\"],\"tags\":[\"%s%s", J17_TIMER_STREAM,
               kind, id);
    if (step >= 0) {
        buf_printf(out, ":%ld", step);
    }
    buf_adds(out, "\"]},\"max\":0}");
}

/* Writes the events of b (may be empty) and then the record rec (type; tagged tag_kind and
 * tag_step, see j_saga_tags) of instance id, on the conditions that the instance has not
 * ended and (cond_kind not NULL) that nothing is tagged cond_kind<id>:<cond_step>. Applies
 * rec to the instances once committed. why (cap) says why when refused. */
static enum wrote write_rec(struct run *r, const struct j_batch *b, const char *type,
                            const json_t *rec, const char *id, const char *tag_kind,
                            long tag_step, const char *cond_kind, long cond_step, char *why,
                            size_t cap)
{
    struct buf part, conds, body;
    buf_init(&part);
    buf_init(&conds);
    buf_init(&body);
    buf_printf(&part, "{\"stream\":\"%s\",\"events\":[{\"type\":\"%s\",\"data\":",
               J17_TIMER_STREAM, type);
    j_add_json(&part, rec);
    buf_adds(&part, ",\"tags\":");
    j_saga_tags(&part, id, tag_kind, tag_step);
    buf_adds(&part, "}]}");
    buf_addc(&conds, '[');
    no_tag(&conds, J17_SAGA_END_TAG, id, -1);
    if (cond_kind) {
        buf_addc(&conds, ',');
        no_tag(&conds, cond_kind, id, cond_step);
    }
    buf_addc(&conds, ']');
    j_batch_body(b, NULL, (struct slice){part.ptr, part.len},
                 (struct slice){conds.ptr, conds.len}, &body);
    struct append_outcome out;
    r->writes++;
    int rc = append_multi_wait(r->db, (struct slice){body.ptr, body.len}, &r->x->limits, &out);
    buf_fini(&part);
    buf_fini(&conds);
    buf_fini(&body);
    if (rc == 0) {
        j_sagas_apply(r->s, type, rec, out.position);
        return WROTE;
    }
    if (rc == ERR_INVALID || rc == ERR_TOOBIG) {
        snprintf(why, cap, "%s", out.why[0] ? out.why : "the write was refused");
        return WROTE_REFUSED;
    }
    if (rc == ERR_CONFLICT && out.conflict == CONFLICT_CONDITION) {
        return WROTE_CONFLICT;
    }
    log_warn("j17 saga %s of %s: not written (%s%s%s); retried", id, engine_db_name(r->db),
             err_name(rc), out.why[0] ? ": " : "", out.why);
    return WROTE_NOT;
}

/* Ends instance id with an ended record alone (status, failed_step >= 0 and reason when
 * given), conditioned as write_rec. */
static enum wrote end_plain(struct run *r, const char *id, const char *status, long failed_step,
                            const char *reason, const char *cond_kind, long cond_step)
{
    struct j_batch b;
    j_batch_init(&b, r->spec, clock_ms());
    json_t *rec = json_pack("{s:s,s:s}", "instance", id, "status", status);
    if (failed_step >= 0) {
        json_object_set_new(rec, "failed_step", json_integer(failed_step));
    }
    if (reason) {
        json_object_set_new(rec, "reason", json_string(reason));
    }
    char why[192];
    enum wrote w = write_rec(r, &b, J17_SAGA_ENDED, rec, id, J17_SAGA_END_TAG, -1, cond_kind,
                             cond_step, why, sizeof why);
    json_decref(rec);
    j_batch_fini(&b);
    return w;
}

/* ---- events read back ---- */

/* What reading one event by position gave. */
struct got {
    json_t *ev;              /* owned: the event as Tick sees it */
};

/* A JSON string of s, or null when it is not UTF-8. A new reference. */
static json_t *str_or_null(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    return v ? v : json_null();
}

static int on_event(void *arg, const struct event_rec *ev)
{
    struct got *got = arg;
    struct buf b;
    buf_init(&b);
    j17_event_render(&b, ev);
    got->ev = json_loadb(b.ptr, b.len, JSON_ALLOW_NUL, NULL);
    buf_fini(&b);
    if (!got->ev) {
        /* a native event jansson cannot hold (an integer over 64 bits): its data and
           metadata read as null, the event is still the one found */
        const char *colon = memchr(ev->stream.ptr, ':', ev->stream.len);
        const char *id = colon ? colon + 1 : ev->stream.ptr;
        got->ev = json_pack("{s:o,s:o,s:o,s:n,s:n}", "type",
                            str_or_null(ev->type.ptr, ev->type.len), "key",
                            str_or_null(ev->stream.ptr, ev->stream.len), "id",
                            str_or_null(id, ev->stream.len - (size_t)(id - ev->stream.ptr)),
                            "data", "metadata");
    }
    return 1;
}

/* Reads the event at position as handlers see it into *out (a new reference). Returns 0,
 * ERR_NOTFOUND (gone: retention, a deleted stream, compaction) or the engine's error. */
static int read_event(struct run *r, uint64_t position, json_t **out)
{
    struct got got = {0};
    int rc = engine_read_event(r->db, position, on_event, &got);
    if (rc == 0 && !got.ev) {
        rc = ERR_NOTFOUND; /* not delivered */
    }
    if (rc != 0) {
        json_decref(got.ev);
        got.ev = NULL;
    }
    *out = got.ev;
    return rc;
}

/* The context of step i of g (its trigger loaded) into *out: the event step i - 1 awaited
 * as $prev, null when it awaited none or that event can no longer be read. Returns 0 or an
 * engine error (try again later). */
static int step_ctx(struct run *r, const struct j_saga_inst *g, size_t i, json_t **out)
{
    json_t *prev = NULL;
    uint64_t at = i > 0 && i <= J17_SAGA_STEPS_MAX ? g->awaited[i - 1] : 0;
    int rc = at ? read_event(r, at, &prev) : 0;
    if (rc != 0 && rc != ERR_NOTFOUND) {
        return rc;
    }
    *out = j_saga_ctx(g, prev);
    json_decref(prev);
    return 0;
}

/* ---- the events of steps and compensations ---- */

/* The metadata of an event of step i: the trigger's (without what the server adds:
 * implied_by, timestamp, stream_id) and "saga". */
static json_t *saga_meta(const struct j_saga_inst *g, const struct j17_saga *def, size_t i,
                         bool is_compensation)
{
    json_t *m = json_object_get(g->trigger, "metadata");
    json_t *meta = json_is_object(m) ? json_deep_copy(m) : json_object();
    json_object_del(meta, "implied_by");
    json_object_del(meta, "timestamp");
    json_object_del(meta, "stream_id");
    json_t *sg = json_pack("{s:s,s:s,s:s}", "name", g->saga, "instance", g->id, "step",
                           j17_saga_step_name(def, i));
    if (is_compensation) {
        json_object_set_new(sg, "compensation", json_true());
    }
    json_object_set_new(meta, "saga", sg);
    return meta;
}

/* Adds the resolved event im (its data taken over) with meta (taken over) and its
 * implications to b. Returns 0, or ERR_INVALID / ERR_TOOBIG with why. */
static int add_event(struct j_batch *b, struct j17_implied *im, json_t *meta, char *why,
                     size_t cap)
{
    const struct j17_agg *a = j17_spec_agg(b->spec, (struct slice){im->agg_type,
                                                                   strlen(im->agg_type)});
    const struct j17_evt *e = a ? j17_agg_event(a, (struct slice){im->event_type,
                                                                  strlen(im->event_type)})
                                : NULL;
    json_t *data = j_batch_keep(b, im->data);
    im->data = NULL;
    json_t *m = j_batch_keep(b, meta);
    if (!e) {
        snprintf(why, cap, "%s.%s is not an event type of the spec", im->agg_type,
                 im->event_type);
        return ERR(ERR_INVALID);
    }
    char key[J17_SAGA_STREAM_BYTES];
    snprintf(key, sizeof key, "%s:%s", im->agg_type, im->id);
    int rc = j_batch_imply(b, a, e, key, data, m, why, cap);
    if (rc == 0) {
        j_batch_push(b, j17_agg_name(a), im->id, j17_evt_name(e), data, m, NULL);
    }
    return rc;
}

/* Builds into b (initialised) the compensations of the steps before failed that are done and
 * have one, in reverse order, each in its context ctxs[k], skipping those in *skip (a bit per
 * step). Each one that cannot be built goes to unc ({"step","reason"}) and into *skip; one
 * whose implications fail leaves b unusable: returns false then (build again). done gets the
 * steps compensated. */
static bool build_compensations(struct run *r, const struct j_saga_inst *g,
                                const struct j17_saga *def, size_t failed,
                                json_t *const *ctxs, struct j_batch *b, uint64_t *skip,
                                json_t *done, json_t *unc)
{
    for (size_t k = failed; k-- > 0;) {
        if (!ctxs[k] || (*skip >> k & 1)) {
            continue;
        }
        char why[512];
        struct j17_implied im;
        int rc = j17_saga_step_event(r->spec, def, k, true, ctxs[k], &im, why, sizeof why);
        bool is_built = rc == 0;
        if (rc == 0) {
            rc = add_event(b, &im, saga_meta(g, def, k, true), why, sizeof why);
        }
        json_decref(im.data);
        if (rc != 0) {
            *skip |= 1ULL << k;
            json_array_append_new(unc, json_pack("{s:I,s:s}", "step", (json_int_t)k, "reason",
                                                 why));
            if (is_built) {
                return false; /* its implications left b half built */
            }
            continue;
        }
        json_array_append_new(done, json_integer((json_int_t)k));
    }
    return true;
}

/* The contexts of the steps before failed that completed and have a compensation into ctxs
 * (NULL for the others; the caller frees them). Returns 0 or an engine error. */
static int compensation_ctxs(struct run *r, const struct j_saga_inst *g,
                             const struct j17_saga *def, size_t failed, json_t **ctxs)
{
    int rc = 0;
    for (size_t k = 0; k < failed && rc == 0; k++) {
        if (g->states[k] == J_STEP_DONE && j17_saga_step_has_compensate(def, k)) {
            rc = step_ctx(r, g, k, &ctxs[k]);
        }
    }
    return rc;
}

/* Writes the compensations (contexts ctxs) and the ended record of g failed at step failed;
 * why (cap) says why when refused. */
static enum wrote compensate(struct run *r, struct j_saga_inst *g, const struct j17_saga *def,
                             size_t failed, json_t *const *ctxs, const char *reason,
                             const char *cond_kind, char *why, size_t cap)
{
    uint64_t skip = 0;
    json_t *unc = json_array();
    json_t *done = NULL;
    struct j_batch b;
    bool is_built = false;
    for (int tries = 0; !is_built; tries++) { /* each retry skips one more step */
        json_decref(done);
        done = json_array();
        j_batch_init(&b, r->spec, clock_ms());
        b.saga_depth = g->depth + 1;
        is_built = tries > J17_SAGA_STEPS_MAX ||
                   build_compensations(r, g, def, failed, ctxs, &b, &skip, done, unc);
        if (!is_built) {
            j_batch_fini(&b);
        }
    }
    enum wrote w = WROTE_REFUSED;
    if (j_batch_push_implied(&b, why, cap) == 0) {
        json_t *rec = json_pack("{s:s,s:s,s:I,s:s,s:O}", "instance", g->id, "status",
                                "compensated", "failed_step", (json_int_t)failed, "reason",
                                reason, "compensated", done);
        if (json_array_size(unc)) {
            json_object_set(rec, "uncompensated", unc);
        }
        w = write_rec(r, &b, J17_SAGA_ENDED, rec, g->id, J17_SAGA_END_TAG, -1, cond_kind,
                      (long)failed, why, cap);
        json_decref(rec);
    }
    j_batch_fini(&b);
    json_decref(done);
    json_decref(unc);
    return w;
}

/* Reads g's trigger back, once per advance (advance drops it). False when it cannot be had:
 * then either it can no longer be read and g was ended (*is_ended true when that end was
 * written), or the read is retried at the next tick. */
static bool has_trigger(struct run *r, struct j_saga_inst *g, bool *is_ended)
{
    *is_ended = false;
    if (g->trigger) {
        return true;
    }
    int rc = read_event(r, g->trigger_pos, &g->trigger);
    if (rc == ERR_NOTFOUND) {
        *is_ended = end_plain(r, g->id, "failed", (long)g->step,
                              "the trigger event can no longer be read", NULL, -1) == WROTE;
    } else if (rc) {
        log_warn("j17 saga %s of %s: its trigger could not be read (%s); retried", g->id,
                 engine_db_name(r->db), err_name(rc));
    }
    return rc == 0;
}

/* Fails instance g at step failed for reason: compensates the completed steps and ends it,
 * conditioned also on nothing tagged cond_kind<id>:<failed>. */
static enum wrote fail(struct run *r, struct j_saga_inst *g, const struct j17_saga *def,
                       size_t failed, const char *reason, const char *cond_kind)
{
    bool is_ended;
    if (!has_trigger(r, g, &is_ended)) {
        return is_ended ? WROTE : WROTE_NOT;
    }
    size_t count = j17_saga_step_count(def);
    failed = failed < count ? failed : count;
    json_t *ctxs[J17_SAGA_STEPS_MAX] = {0};
    char why[512];
    int rc = compensation_ctxs(r, g, def, failed, ctxs);
    enum wrote w = rc ? WROTE_NOT
                      : compensate(r, g, def, failed, ctxs, reason, cond_kind, why, sizeof why);
    for (size_t k = 0; k < failed; k++) {
        json_decref(ctxs[k]);
    }
    if (rc) {
        log_warn("j17 saga %s of %s: its contexts could not be read (%s); retried", g->id,
                 engine_db_name(r->db), err_name(rc));
    }
    if (w != WROTE_REFUSED) {
        return w;
    }
    char text[900];
    snprintf(text, sizeof text, "%s; the compensations were refused: %s", reason, why);
    return end_plain(r, g->id, "failed", (long)failed, text, cond_kind, (long)failed);
}

/* ---- steps ---- */

/* The progress record of step i of g after its emit in b: done, or awaiting. */
static json_t *emitted_rec(const struct j_saga_inst *g, const struct j17_saga *def, size_t i,
                           const struct j17_implied *im, const struct j_batch *b)
{
    const char *await_agg;
    const json_t *types;
    if (!j17_saga_step_await(def, i, &await_agg, &types)) {
        return j_saga_step_rec(g->id, i, "done", clock_ms());
    }
    json_t *rec = j_saga_step_rec(g->id, i, "awaiting", clock_ms());
    char stream[J17_SAGA_STREAM_BYTES];
    j_saga_await_stream(await_agg, im->agg_type, im->id, g->trigger, stream);
    json_object_set_new(rec, "events", json_integer((json_int_t)b->count));
    json_object_set_new(rec, "await", json_pack("{s:s,s:O}", "stream", stream, "event_types",
                                                types));
    uint64_t timeout = j17_saga_step_timeout_ms(def, i);
    if (timeout) {
        json_object_set_new(rec, "timeout_ms", json_integer((json_int_t)timeout));
    }
    return rec;
}

/* Builds into b the emit of step i (in ctx) with its implications and start records; its
 * progress record into *rec. Returns 0 or ERR_INVALID / ERR_TOOBIG with why. */
static int build_emit(struct run *r, const struct j_saga_inst *g, const struct j17_saga *def,
                      size_t i, const json_t *ctx, struct j_batch *b, json_t **rec, char *why,
                      size_t cap)
{
    struct j17_implied im;
    int rc = j17_saga_step_event(r->spec, def, i, false, ctx, &im, why, cap);
    if (rc == 0) {
        struct j17_implied target = im; /* the names, for the record */
        rc = add_event(b, &im, saga_meta(g, def, i, false), why, cap);
        rc = rc ? rc : j_batch_push_implied(b, why, cap);
        *rec = rc ? NULL : emitted_rec(g, def, i, &target, b);
    }
    json_decref(im.data);
    return rc;
}

/* Runs step g->step (phase RUN): skips it, or writes its emit with its progress record.
 * True when the instance moved. */
static bool run_step(struct run *r, struct j_saga_inst *g, const struct j17_saga *def)
{
    size_t i = g->step;
    char why[512];
    bool is_on;
    bool is_ended;
    json_t *ctx;
    if (!has_trigger(r, g, &is_ended)) {
        return is_ended;
    }
    if (step_ctx(r, g, i, &ctx) != 0) {
        return false; /* the log could not be read: next tick */
    }
    int rc = j17_saga_step_test(def, i, ctx, &is_on, why, sizeof why);
    struct j_batch b;
    j_batch_init(&b, r->spec, clock_ms());
    b.saga_depth = g->depth + 1;
    json_t *rec = NULL;
    if (rc == 0 && !is_on) {
        rec = j_saga_step_rec(g->id, i, "skipped", clock_ms());
    } else if (rc == 0) {
        rc = build_emit(r, g, def, i, ctx, &b, &rec, why, sizeof why);
    }
    json_decref(ctx);
    enum wrote w = WROTE_REFUSED;
    if (rec) {
        w = write_rec(r, &b, J17_SAGA_STEP, rec, g->id, J17_SAGA_STEP_TAG, (long)i,
                      J17_SAGA_STEP_TAG, (long)i, why, sizeof why);
        json_decref(rec);
    }
    j_batch_fini(&b);
    if (w == WROTE_REFUSED) {
        w = fail(r, g, def, i, why, J17_SAGA_STEP_TAG);
    }
    return w == WROTE;
}

/* What the read for an awaited event came to. */
enum look {
    LOOK_FOUND,              /* found: at *pos */
    LOOK_NONE,               /* the read reached the head of the log: nothing yet */
    LOOK_PARTIAL,            /* the read stopped before the head (its budget, an error) */
};

static int on_awaited(void *arg, const struct event_rec *ev)
{
    *(uint64_t *)arg = ev->position;
    return 1;
}

/* Builds the filter of what g awaits into f. False when it awaits no event type. */
static bool await_filter(const struct j_saga_inst *g, struct filter *f)
{
    struct filter_item *it = filter_add_item(f);
    struct pattern stream = {PAT_EXACT, {g->await_stream, strlen(g->await_stream)}};
    struct pattern types[J17_AWAIT_EVENTS_MAX];
    size_t n = 0;
    size_t i;
    json_t *t;
    json_array_foreach (g->await_types, i, t) {
        if (json_is_string(t) && n < J17_AWAIT_EVENTS_MAX) {
            types[n++] = (struct pattern){PAT_EXACT, {json_string_value(t),
                                                      json_string_length(t)}};
        }
    }
    return it && n > 0 && filter_add_atom(f, it, FF_STREAM, &stream, 1) == 0 &&
           filter_add_atom(f, it, FF_TYPE, types, n) == 0;
}

/* Looks for the event step g->step awaits, from g->scan_from, advancing g->scan_from past
 * what it read. */
static enum look find_awaited(struct run *r, struct j_saga_inst *g, uint64_t *pos)
{
    struct filter f;
    filter_init(&f);
    if (!await_filter(g, &f)) {
        filter_fini(&f);
        return LOOK_NONE; /* nothing can match (a malformed record): only a timeout ends it */
    }
    uint64_t from = g->scan_from ? g->scan_from : g->emit_pos + 1;
    struct engine_query q = {.filter = &f, .has_from = true, .from = from, .limit = 1,
                             .budget = J17_SAGA_AWAIT_BUDGET};
    struct engine_query_result res;
    *pos = 0;
    int rc = engine_query(r->db, &q, on_awaited, pos, &res);
    filter_fini(&f);
    if (rc != 0) {
        log_warn("j17 saga %s of %s: the awaited event could not be looked for (%s)", g->id,
                 engine_db_name(r->db), err_name(rc));
        return LOOK_PARTIAL;
    }
    if (*pos) {
        return LOOK_FOUND;
    }
    uint64_t next = res.next ? res.next : res.head + 1;
    g->scan_from = next > from ? next : from;
    return res.next ? LOOK_PARTIAL : LOOK_NONE; /* next: where the budget ran out */
}

/* Phase AWAIT: completes step g->step when its event came, or fails the saga when its
 * timeout passed and a read up to the head found nothing. True when the instance moved. */
static bool check_await(struct run *r, struct j_saga_inst *g, const struct j17_saga *def)
{
    if (r->checks >= J17_SAGA_CHECKS_PER_TICK) {
        return false;
    }
    r->checks++;
    size_t i = g->step;
    int64_t now_ms = clock_ms(); /* before the read: what was written by then, it sees */
    uint64_t pos;
    enum look l = find_awaited(r, g, &pos);
    if (l == LOOK_NONE && g->timeout_ms &&
        now_ms - g->await_since_ms >= (int64_t)g->timeout_ms) {
        return fail(r, g, def, i, "timeout", J17_SAGA_DONE_TAG) == WROTE;
    }
    if (l != LOOK_FOUND) {
        return false;
    }
    json_t *rec = j_saga_step_rec(g->id, i, "done", clock_ms());
    json_object_set_new(rec, "prev_position", json_integer((json_int_t)pos));
    struct j_batch b;
    j_batch_init(&b, r->spec, clock_ms());
    char why[192];
    enum wrote w = write_rec(r, &b, J17_SAGA_STEP, rec, g->id, J17_SAGA_DONE_TAG, (long)i,
                             J17_SAGA_DONE_TAG, (long)i, why, sizeof why);
    j_batch_fini(&b);
    json_decref(rec);
    if (w == WROTE_REFUSED) {
        /* the event came: the saga has not failed; the record is retried */
        log_error("j17 saga %s of %s: the completion of step %zu was refused (%s); retried",
                  g->id, engine_db_name(r->db), i, why);
    }
    return w == WROTE;
}

/* Moves g on as far as it goes now (and the write budget allows). */
static void advance(struct run *r, struct j_saga_inst *g)
{
    for (size_t guard = 0; guard < 2 * J17_SAGA_STEPS_MAX + 2; guard++) {
        if (g->phase == J_SAGA_ENDED || !has_budget(r)) {
            break;
        }
        const struct j17_saga *def = j17_spec_saga(r->spec, g->saga);
        bool is_moved;
        if (!def) {
            is_moved = end_plain(r, g->id, "failed", (long)g->step,
                                 "the saga is no longer in the spec", NULL, -1) == WROTE;
        } else if (g->phase == J_SAGA_RUN && g->step >= j17_saga_step_count(def)) {
            is_moved = end_plain(r, g->id, "completed", -1, NULL, NULL, -1) == WROTE;
        } else if (g->phase == J_SAGA_RUN) {
            is_moved = run_step(r, g, def);
        } else {
            is_moved = check_await(r, g, def);
        }
        if (!is_moved) {
            break;
        }
    }
    json_decref(g->trigger); /* instances keep no events between ticks */
    g->trigger = NULL;
}

/* Ends the instances kept aside because the table was full, as far as the write budget
 * goes; an id whose end could not be written yet stays for the next tick. */
static void end_overflow(struct run *r)
{
    struct j_sagas *s = r->s;
    char reason[96];
    snprintf(reason, sizeof reason, "more than %zu sagas running in this database", s->max);
    size_t kept = 0;
    for (size_t i = 0; i < s->overflow_count; i++) {
        if (!has_budget(r) ||
            end_plain(r, s->overflow[i], "failed", -1, reason, NULL, -1) == WROTE_NOT) {
            memmove(s->overflow[kept++], s->overflow[i], sizeof s->overflow[i]);
        }
    }
    s->overflow_count = kept;
}

void j_sagas_tick(struct j17_ctx *x, struct db *db, struct j_sagas *s)
{
    struct run r = {.x = x, .db = db, .s = s};
    end_overflow(&r); /* needs no spec */
    if (s->count == 0 || j_spec_get(x, db, &r.spec) != 0 || !r.spec) {
        return;
    }
    size_t count = s->count;
    size_t start = s->next < count ? s->next : 0;
    for (size_t k = 0; k < count; k++) {
        size_t i = (start + k) % count;
        advance(&r, s->items[i]);
        if (r.checks >= J17_SAGA_CHECKS_PER_TICK || !has_budget(&r)) {
            s->next = i; /* where the next tick begins: this one may have more to do */
            break;
        }
    }
    j_sagas_sweep(s);
    j17_spec_unref(r.spec);
}
