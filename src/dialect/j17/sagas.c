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
 * Bounds: J17_SAGAS_LIVE_MAX instances per database (saga.h), J17_SAGA_CHECKS_PER_TICK reads
 * for awaited events per database per tick, each examining at most J17_SAGA_AWAIT_BUDGET
 * events; a step's events are those of one write (J17_IMPLIED_MAX, J17_SAGA_STARTS_MAX). */
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
    if (s->overflow_count == J17_SAGA_OVERFLOW_MAX) {
        return 1;
    }
    snprintf(s->overflow[s->overflow_count++], UUID_TEXT_LEN + 1, "%s",
             json_string_value(json_object_get(data, "instance")));
    return 0;
}

/* One tick of one database. */
struct run {
    struct j17_ctx *x;       /* borrowed */
    struct db *db;           /* borrowed */
    struct j_sagas *s;       /* borrowed */
    struct j17_spec *spec;   /* a reference: the spec in force */
    int64_t now_ms;
    size_t checks;           /* awaited-event reads made */
};

/* What a write of the timer thread came to. */
enum wrote {
    WROTE,                   /* committed, and applied to the instance */
    WROTE_NOT,               /* not now: a condition failed (done elsewhere) or an error to
                                retry at the next tick */
    WROTE_REFUSED,           /* the append was refused (ERR_INVALID, ERR_TOOBIG): it never
                                will be written */
};

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
    if (!(rc == ERR_CONFLICT && out.conflict == CONFLICT_CONDITION)) {
        log_warn("j17 saga %s of %s: not written (%s%s%s); retried", id,
                 engine_db_name(r->db), err_name(rc), out.why[0] ? ": " : "", out.why);
    }
    return WROTE_NOT;
}

/* Ends instance id with an ended record alone (status, failed_step >= 0 and reason when
 * given), conditioned as write_rec. */
static enum wrote end_plain(struct run *r, const char *id, const char *status, long failed_step,
                            const char *reason, const char *cond_kind, long cond_step)
{
    struct j_batch b;
    j_batch_init(&b, r->spec, r->now_ms);
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

/* ---- the events of steps and compensations ---- */

/* The metadata of an event of step i: the trigger's (without implied_by) and "saga". */
static json_t *saga_meta(const struct j_saga_inst *g, const struct j17_saga *def, size_t i,
                         bool is_compensation)
{
    json_t *m = json_object_get(g->trigger, "metadata");
    json_t *meta = json_is_object(m) ? json_deep_copy(m) : json_object();
    json_object_del(meta, "implied_by");
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
 * have one, in reverse order, skipping those in *skip (a bit per step). Each one that cannot
 * be built goes to unc ({"step","reason"}) and into *skip; one whose implications fail leaves
 * b unusable: returns false then (build again). done gets the steps compensated. */
static bool build_compensations(struct run *r, const struct j_saga_inst *g,
                                const struct j17_saga *def, size_t failed, struct j_batch *b,
                                uint64_t *skip, json_t *done, json_t *unc)
{
    size_t count = j17_saga_step_count(def);
    for (size_t k = failed < count ? failed : count; k-- > 0;) {
        if (g->states[k] != J_STEP_DONE || !j17_saga_step_has_compensate(def, k) ||
            (*skip >> k & 1)) {
            continue;
        }
        char why[512];
        json_t *ctx = j_saga_ctx(g, k);
        struct j17_implied im;
        int rc = j17_saga_step_event(r->spec, def, k, true, ctx, &im, why, sizeof why);
        json_decref(ctx);
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

/* Fails instance g at step failed for reason: compensates the completed steps and ends it,
 * conditioned also on nothing tagged cond_kind<id>:<failed>. */
static enum wrote fail(struct run *r, struct j_saga_inst *g, const struct j17_saga *def,
                       size_t failed, const char *reason, const char *cond_kind)
{
    uint64_t skip = 0;
    json_t *unc = json_array();
    json_t *done = NULL;
    struct j_batch b;
    char why[512];
    bool is_built = false;
    for (int tries = 0; !is_built; tries++) { /* each retry skips one more step */
        json_decref(done);
        done = json_array();
        j_batch_init(&b, r->spec, r->now_ms);
        is_built = tries > J17_SAGA_STEPS_MAX ||
                   build_compensations(r, g, def, failed, &b, &skip, done, unc);
        if (!is_built) {
            j_batch_fini(&b);
        }
    }
    enum wrote w = WROTE_REFUSED;
    if (j_batch_push_implied(&b, why, sizeof why) == 0) {
        json_t *rec = json_pack("{s:s,s:s,s:I,s:s,s:O}", "instance", g->id, "status",
                                "compensated", "failed_step", (json_int_t)failed, "reason",
                                reason, "compensated", done);
        if (json_array_size(unc)) {
            json_object_set(rec, "uncompensated", unc);
        }
        w = write_rec(r, &b, J17_SAGA_ENDED, rec, g->id, J17_SAGA_END_TAG, -1, cond_kind,
                      (long)failed, why, sizeof why);
        json_decref(rec);
    }
    j_batch_fini(&b);
    json_decref(done);
    json_decref(unc);
    if (w != WROTE_REFUSED) {
        return w;
    }
    char text[900];
    snprintf(text, sizeof text, "%s; the compensations were refused: %s", reason, why);
    return end_plain(r, g->id, "failed", (long)failed, text, cond_kind, (long)failed);
}

/* ---- steps ---- */

/* The progress record of step i of g after its emit in b: done, or awaiting. */
static json_t *emitted_rec(struct run *r, const struct j_saga_inst *g,
                           const struct j17_saga *def, size_t i, const struct j17_implied *im,
                           const struct j_batch *b)
{
    const char *await_agg;
    const json_t *types;
    if (!j17_saga_step_await(def, i, &await_agg, &types)) {
        return j_saga_step_rec(g->id, i, "done", r->now_ms);
    }
    json_t *rec = j_saga_step_rec(g->id, i, "awaiting", r->now_ms);
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

/* Runs step g->step (phase RUN): skips it, or writes its emit with its progress record.
 * True when the instance moved. */
static bool run_step(struct run *r, struct j_saga_inst *g, const struct j17_saga *def)
{
    size_t i = g->step;
    char why[512];
    bool is_on;
    json_t *ctx = j_saga_ctx(g, i);
    int rc = j17_saga_step_test(def, i, ctx, &is_on, why, sizeof why);
    struct j_batch b;
    j_batch_init(&b, r->spec, r->now_ms);
    json_t *rec = NULL;
    if (rc == 0 && !is_on) {
        rec = j_saga_step_rec(g->id, i, "skipped", r->now_ms);
    } else if (rc == 0) {
        struct j17_implied im;
        rc = j17_saga_step_event(r->spec, def, i, false, ctx, &im, why, sizeof why);
        if (rc == 0) {
            struct j17_implied target = im; /* the names, for the record */
            rc = add_event(&b, &im, saga_meta(g, def, i, false), why, sizeof why);
            rc = rc ? rc : j_batch_push_implied(&b, why, sizeof why);
            rec = rc ? NULL : emitted_rec(r, g, def, i, &target, &b);
        }
        json_decref(im.data);
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

/* What the read for an awaited event found. */
struct found {
    json_t *prev;            /* owned: the event as Tick sees it, or NULL */
};

static int on_awaited(void *arg, const struct event_rec *ev)
{
    struct found *f = arg;
    struct buf b;
    buf_init(&b);
    j17_event_render(&b, ev);
    f->prev = json_loadb(b.ptr, b.len, 0, NULL);
    buf_fini(&b);
    return 1;
}

/* Looks for the event step g->step awaits, after g->scan_from. Returns the event (a new
 * reference) or NULL; advances g->scan_from past what it read. */
static json_t *find_awaited(struct run *r, struct j_saga_inst *g)
{
    struct filter f;
    filter_init(&f);
    struct filter_item *it = filter_add_item(&f);
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
    uint64_t from = g->scan_from ? g->scan_from : g->emit_pos + 1;
    struct found fd = {0};
    if (!it || n == 0 || filter_add_atom(&f, it, FF_STREAM, &stream, 1) != 0 ||
        filter_add_atom(&f, it, FF_TYPE, types, n) != 0) {
        filter_fini(&f);
        return NULL;
    }
    struct engine_query q = {.filter = &f, .has_from = true, .from = from, .limit = 1,
                             .budget = J17_SAGA_AWAIT_BUDGET};
    struct engine_query_result res;
    int rc = engine_query(r->db, &q, on_awaited, &fd, &res);
    filter_fini(&f);
    if (rc == 0 && !fd.prev) {
        uint64_t next = res.next ? res.next : res.head + 1;
        g->scan_from = next > from ? next : from;
    }
    return fd.prev;
}

/* Phase AWAIT: completes step g->step when its event came, or fails the saga when its
 * timeout passed. True when the instance moved. */
static bool check_await(struct run *r, struct j_saga_inst *g, const struct j17_saga *def)
{
    if (r->checks >= J17_SAGA_CHECKS_PER_TICK) {
        return false;
    }
    r->checks++;
    size_t i = g->step;
    json_t *prev = find_awaited(r, g);
    if (!prev) {
        if (g->timeout_ms && r->now_ms - g->await_since_ms >= (int64_t)g->timeout_ms) {
            return fail(r, g, def, i, "timeout", J17_SAGA_DONE_TAG) == WROTE;
        }
        return false;
    }
    json_t *rec = j_saga_step_rec(g->id, i, "done", r->now_ms);
    json_object_set_new(rec, "prev", prev);
    struct j_batch b;
    j_batch_init(&b, r->spec, r->now_ms);
    char why[192];
    enum wrote w = write_rec(r, &b, J17_SAGA_STEP, rec, g->id, J17_SAGA_DONE_TAG, (long)i,
                             J17_SAGA_DONE_TAG, (long)i, why, sizeof why);
    j_batch_fini(&b);
    json_decref(rec);
    if (w == WROTE_REFUSED) {
        w = fail(r, g, def, i, why, J17_SAGA_DONE_TAG);
    }
    return w == WROTE;
}

/* Moves g on as far as it goes now. */
static void advance(struct run *r, struct j_saga_inst *g)
{
    for (size_t guard = 0; guard < 2 * J17_SAGA_STEPS_MAX + 2; guard++) {
        if (g->phase == J_SAGA_ENDED) {
            return;
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
            return;
        }
    }
}

void j_sagas_tick(struct j17_ctx *x, struct db *db, struct j_sagas *s)
{
    if (s->count == 0 && s->overflow_count == 0) {
        return;
    }
    struct run r = {.x = x, .db = db, .s = s, .now_ms = time_now_us() / 1000};
    if (j_spec_get(x, db, &r.spec) != 0 || !r.spec) {
        return;
    }
    for (size_t i = 0; i < s->overflow_count; i++) {
        char reason[96];
        snprintf(reason, sizeof reason, "more than %zu sagas running in this database",
                 s->max);
        end_plain(&r, s->overflow[i], "failed", -1, reason, NULL, -1);
    }
    s->overflow_count = 0;
    size_t count = s->count;
    size_t start = s->next < count ? s->next : 0;
    for (size_t k = 0; k < count; k++) {
        size_t i = (start + k) % count;
        if (r.checks == J17_SAGA_CHECKS_PER_TICK) {
            s->next = i; /* where the next tick begins */
            break;
        }
        advance(&r, s->items[i]);
    }
    j_sagas_sweep(s);
    j17_spec_unref(r.spec);
}
