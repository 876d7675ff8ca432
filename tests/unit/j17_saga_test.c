/* dialect/j17/saga and the spec's saga API: start and step records, the instance state they
 * give (applied in order, applied twice, out of place, past the table's size, ended and swept),
 * records that name events by position (the trigger, the awaited event) and the saga depth,
 * a step's context ($prev), the await target rule, tags; a step's condition and emit against
 * a context, a compensation, and an emit whose data fails its schema; the start records a
 * batch makes (the trigger's offset in the body's order, the depth limit). */
#include <string.h>

#include "dialect/j17/j_int.h"
#include "dialect/j17/saga.h"
#include "json/jpath.h"
#include "unit.h"
#include "util/errors.h"

static const char *U1 = "0f8fad5b-d9cb-469f-a165-70867728950e";
static const char *U2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
static const char *I1 = "01890a5d-ac96-774b-bcce-b302099a8057";

static json_t *trigger(void)
{
    json_t *data = json_pack("{s:s}", "product", U2);
    json_t *meta = json_pack("{s:{s:s,s:s}}", "actor", "type", "user", "id", U1);
    char key[80];
    snprintf(key, sizeof key, "order:%s", U1);
    json_t *t = jpath_event_new("was_placed", key, data, meta);
    json_decref(data);
    json_decref(meta);
    return t;
}

/* A state with instance I1 started (position 10, its trigger at 9). */
static void started(struct j_sagas *s, size_t max)
{
    j_sagas_init(s, max);
    json_t *rec = j_saga_start_rec("checkout", I1, -1, 0);
    ASSERT_EQ(j_sagas_apply(s, J17_SAGA_START, rec, 10), J_APPLY_DONE);
    ASSERT_EQ(j_sagas_apply(s, J17_SAGA_START, rec, 10), J_APPLY_IGNORED); /* twice */
    json_decref(rec);
}

TEST(start_record_shape_and_instance)
{
    json_t *rec = j_saga_start_rec("checkout", I1, -3, 2);
    ASSERT_STR(json_string_value(json_object_get(rec, "saga")), "checkout");
    ASSERT_STR(json_string_value(json_object_get(rec, "instance")), I1);
    ASSERT_EQ(json_integer_value(json_object_get(rec, "trigger_offset")), -3);
    ASSERT_EQ(json_integer_value(json_object_get(rec, "depth")), 2);
    CHECK(json_object_get(rec, "trigger") == NULL); /* a position, never a copy */
    struct j_sagas s;
    j_sagas_init(&s, 10);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, rec, 20), J_APPLY_DONE);
    struct j_saga_inst *g = j_sagas_find(&s, I1);
    CHECK(g != NULL);
    ASSERT_STR(g->saga, "checkout");
    ASSERT_EQ(g->phase, J_SAGA_RUN);
    ASSERT_EQ(g->step, 0);
    ASSERT_EQ(g->trigger_pos, 17);
    ASSERT_EQ(g->depth, 2);
    CHECK(g->trigger == NULL); /* read back by the timer thread when it runs a step */
    g->trigger = trigger();
    json_t *ctx = j_saga_ctx(g, NULL);
    CHECK(json_is_null(json_object_get(ctx, "prev")));
    ASSERT_STR(json_string_value(json_object_get(ctx, "id")), U1);
    ASSERT_STR(json_string_value(json_object_get(ctx, "type")), "was_placed");
    json_decref(ctx);
    json_decref(rec);
    j_sagas_fini(&s);
}

TEST(start_record_offsets_and_depths_are_checked)
{
    struct j_sagas s;
    j_sagas_init(&s, 10);
    json_t *zero = j_saga_start_rec("checkout", I1, 0, 0);       /* names itself */
    json_t *before = j_saga_start_rec("checkout", I1, -10, 0);   /* position 0 */
    json_t *deep = j_saga_start_rec("checkout", I1, -1, J17_SAGA_DEPTH_MAX + 1);
    json_t *legacy = json_pack("{s:s,s:s,s:{}}", "saga", "checkout", "instance", I1,
                               "trigger");                       /* a copy: not read */
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, zero, 10), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, before, 10), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, deep, 10), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, legacy, 10), J_APPLY_IGNORED);
    ASSERT_EQ(s.count, 0);
    json_t *after = j_saga_start_rec("checkout", I1, 2, J17_SAGA_DEPTH_MAX);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, after, 10), J_APPLY_DONE);
    ASSERT_EQ(j_sagas_find(&s, I1)->trigger_pos, 12); /* a later part of the same commit */
    ASSERT_EQ(j_sagas_find(&s, I1)->depth, J17_SAGA_DEPTH_MAX);
    json_decref(zero);
    json_decref(before);
    json_decref(deep);
    json_decref(legacy);
    json_decref(after);
    j_sagas_fini(&s);
}

TEST(malformed_records_are_ignored)
{
    struct j_sagas s;
    j_sagas_init(&s, 10);
    json_t *bad_id = j_saga_start_rec("checkout", "not-a-uuid", -1, 0);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, bad_id, 2), J_APPLY_IGNORED);
    json_t *no_trigger = json_pack("{s:s,s:s}", "saga", "checkout", "instance", I1);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, no_trigger, 1), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_apply(&s, "j17.other", no_trigger, 1), J_APPLY_IGNORED);
    ASSERT_EQ(s.count, 0);
    json_t *step = j_saga_step_rec(I1, 0, "done", 5);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, step, 2), J_APPLY_IGNORED); /* no instance */
    json_decref(step);
    json_decref(bad_id);
    json_decref(no_trigger);
    j_sagas_fini(&s);
}

TEST(steps_advance_once_and_in_place)
{
    struct j_sagas s;
    started(&s, 10);
    struct j_saga_inst *g = j_sagas_find(&s, I1);
    json_t *skip1 = j_saga_step_rec(I1, 1, "skipped", 5);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, skip1, 11), J_APPLY_IGNORED); /* not its turn */
    json_t *done0 = j_saga_step_rec(I1, 0, "done", 5);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, done0, 12), J_APPLY_DONE);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, done0, 12), J_APPLY_IGNORED); /* again */
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, skip1, 13), J_APPLY_DONE);
    ASSERT_EQ(g->step, 2);
    ASSERT_EQ(g->states[0], J_STEP_DONE);
    ASSERT_EQ(g->states[1], J_STEP_SKIPPED);
    json_t *bogus = j_saga_step_rec(I1, 2, "whatever", 5);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, bogus, 14), J_APPLY_IGNORED);
    json_decref(bogus);
    json_decref(skip1);
    json_decref(done0);
    j_sagas_fini(&s);
}

TEST(await_position_prev_and_context)
{
    struct j_sagas s;
    started(&s, 10);
    struct j_saga_inst *g = j_sagas_find(&s, I1);
    json_t *aw = j_saga_step_rec(I1, 0, "awaiting", 1000);
    json_object_set_new(aw, "events", json_integer(3));
    json_object_set_new(aw, "await", json_pack("{s:s,s:[s]}", "stream", "product:x",
                                               "event_types", "was_reserved"));
    json_object_set_new(aw, "timeout_ms", json_integer(30000));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, aw, 24), J_APPLY_DONE);
    ASSERT_EQ(g->phase, J_SAGA_AWAIT);
    ASSERT_EQ(g->emit_pos, 21);   /* the first event of the record's append */
    ASSERT_EQ(g->await_since_ms, 1000);
    ASSERT_EQ(g->timeout_ms, 30000);
    ASSERT_STR(g->await_stream, "product:x");
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, aw, 24), J_APPLY_IGNORED);
    json_t *plain = j_saga_step_rec(I1, 0, "done", 5); /* a done without prev: not an await's */
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, plain, 25), J_APPLY_IGNORED);
    json_t *copy = j_saga_step_rec(I1, 0, "done", 5); /* the event copied: not read */
    json_object_set_new(copy, "prev", json_pack("{s:s}", "type", "was_reserved"));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, copy, 25), J_APPLY_IGNORED);
    json_t *early = j_saga_step_rec(I1, 0, "done", 5); /* not after the emitted event */
    json_object_set_new(early, "prev_position", json_integer(21));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, early, 25), J_APPLY_IGNORED);
    json_t *done = j_saga_step_rec(I1, 0, "done", 5);
    json_object_set_new(done, "prev_position", json_integer(27));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, done, 30), J_APPLY_DONE);
    ASSERT_EQ(g->phase, J_SAGA_RUN);
    ASSERT_EQ(g->step, 1);
    ASSERT_EQ(g->awaited[0], 27);
    CHECK(g->await_types == NULL);
    json_t *prev = json_pack("{s:s,s:{s:i}}", "type", "was_reserved", "data", "qty", 3);
    json_t *ctx = j_saga_ctx(g, prev); /* g->trigger not loaded: an empty object */
    ASSERT_STR(json_string_value(json_object_get(json_object_get(ctx, "prev"), "type")),
               "was_reserved");
    ASSERT_EQ(json_object_size(ctx), 1);
    json_decref(ctx);
    json_decref(prev);
    json_decref(aw);
    json_decref(plain);
    json_decref(copy);
    json_decref(early);
    json_decref(done);
    j_sagas_fini(&s);
}

TEST(awaiting_record_with_a_bad_count_is_ignored)
{
    struct j_sagas s;
    started(&s, 10);
    json_t *aw = j_saga_step_rec(I1, 0, "awaiting", 1000);
    json_object_set_new(aw, "events", json_integer(30)); /* more than its position */
    json_object_set_new(aw, "await", json_pack("{s:s,s:[s]}", "stream", "p:x", "event_types",
                                               "e"));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, aw, 24), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_find(&s, I1)->phase, J_SAGA_RUN);
    json_decref(aw);
    j_sagas_fini(&s);
}

TEST(ended_instances_are_swept_and_the_table_is_bounded)
{
    struct j_sagas s;
    started(&s, 1);
    json_t *other = j_saga_start_rec("checkout", U2, -1, 0); /* a v4 UUID is a UUID too */
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, other, 11), J_APPLY_FULL);
    json_t *end = json_pack("{s:s,s:s}", "instance", I1, "status", "completed");
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_ENDED, end, 12), J_APPLY_DONE);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_ENDED, end, 12), J_APPLY_IGNORED);
    ASSERT_EQ(s.ended, 1);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, other, 13), J_APPLY_DONE); /* room again */
    j_sagas_remove_ended(&s, U2); /* running: kept */
    ASSERT_EQ(s.count, 2);
    j_sagas_sweep(&s);
    ASSERT_EQ(s.count, 1);
    CHECK(j_sagas_find(&s, I1) == NULL);
    CHECK(j_sagas_find(&s, U2) != NULL);
    json_object_set_new(end, "instance", json_string(U2));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_ENDED, end, 14), J_APPLY_DONE);
    j_sagas_remove_ended(&s, U2);
    ASSERT_EQ(s.count, 0);
    ASSERT_EQ(s.ended, 0);
    CHECK(j_sagas_find(&s, U2) == NULL);
    json_decref(end);
    json_decref(other);
    j_sagas_fini(&s);
}

TEST(overflow_grows_up_to_its_limit)
{
    struct j_sagas s;
    j_sagas_init(&s, 1);
    for (size_t i = 0; i < J17_SAGA_OVERFLOW_MAX; i++) {
        CHECK(j_sagas_overflow_push(&s, I1));
    }
    CHECK(!j_sagas_overflow_push(&s, U2)); /* full: the caller reads the record again */
    ASSERT_EQ(s.overflow_count, J17_SAGA_OVERFLOW_MAX);
    ASSERT_STR(s.overflow[J17_SAGA_OVERFLOW_MAX - 1], I1);
    j_sagas_fini(&s);
}

TEST(tags_and_await_target)
{
    struct buf b;
    buf_init(&b);
    j_saga_tags(&b, I1, J17_SAGA_STEP_TAG, 3);
    char want[200];
    snprintf(want, sizeof want, "[\"j17saga:%s\",\"j17step:%s:3\"]", I1, I1);
    ASSERT_STR(b.ptr, want);
    b.len = 0;
    j_saga_tags(&b, I1, J17_SAGA_END_TAG, -1);
    snprintf(want, sizeof want, "[\"j17saga:%s\",\"j17end:%s\"]", I1, I1);
    ASSERT_STR(b.ptr, want);
    buf_fini(&b);
    json_t *t = trigger();
    char out[J17_SAGA_STREAM_BYTES];
    j_saga_await_stream("product", "product", U2, t, out);
    snprintf(want, sizeof want, "product:%s", U2);
    ASSERT_STR(out, want); /* the aggregate the step emitted to */
    j_saga_await_stream("order", "product", U2, t, out);
    snprintf(want, sizeof want, "order:%s", U1);
    ASSERT_STR(out, want); /* else the trigger's */
    json_decref(t);
}

/* ---- the spec's saga API ---- */

static const char *SPEC =
    "{\"agent_types\": [\"user\"], \"aggregate_types\": {"
    " \"order\": {\"events\": {\"was_placed\": {\"schema\": {}, \"handler\": []},"
    "   \"was_cancelled\": {\"schema\": {}, \"handler\": []}}},"
    " \"product\": {\"events\": {\"reserve\": {\"schema\": {\"type\": \"object\","
    "    \"required\": [\"qty\"], \"properties\": {\"qty\": {\"type\": \"integer\"}}}, "
    "    \"handler\": []}, \"was_reserved\": {\"schema\": {}, \"handler\": []}}}},"
    " \"modules\": {\"sagas\": {\"checkout\": {"
    "  \"trigger\": {\"aggregate_type\": \"order\", \"event_type\": \"was_placed\"},"
    "  \"steps\": [{\"name\": \"reserve\", \"emit\": {\"aggregate_type\": \"product\","
    "     \"id\": \"$.data.product\", \"event_type\": \"reserve\", \"data\": {\"qty\": \"$.data.qty\"}},"
    "     \"await\": {\"aggregate_type\": \"product\", \"event_types\": [\"was_reserved\"]},"
    "     \"timeout_ms\": 500},"
    "    {\"name\": \"cancel\", \"condition\": {\"equals\": [\"$prev.type\", \"was_reserved\"]},"
    "     \"emit\": {\"aggregate_type\": \"order\", \"id\": \"$.id\", \"event_type\": \"was_cancelled\","
    "       \"data\": {\"n\": \"$prev.data.n\"}},"
    "     \"compensate\": {\"aggregate_type\": \"order\", \"id\": \"$.id\","
    "       \"event_type\": \"was_placed\"}}]}}}}";

TEST(step_condition_and_emit_read_the_context)
{
    struct j17_spec *sp;
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compile(SPEC, strlen(SPEC), &sp, &pr), 0);
    const struct j17_saga *g = j17_spec_saga(sp, "checkout");
    CHECK(g != NULL && j17_spec_saga(sp, "nope") == NULL);
    ASSERT_EQ(j17_saga_step_count(g), 2);
    ASSERT_STR(j17_saga_step_name(g, 1), "cancel");
    const char *agg;
    const json_t *types;
    CHECK(j17_saga_step_await(g, 0, &agg, &types));
    ASSERT_STR(agg, "product");
    ASSERT_EQ(json_array_size(types), 1);
    CHECK(!j17_saga_step_await(g, 1, &agg, &types));
    ASSERT_EQ(j17_saga_step_timeout_ms(g, 0), 500);
    ASSERT_EQ(j17_saga_step_timeout_ms(g, 1), 0);
    CHECK(!j17_saga_step_has_compensate(g, 0) && j17_saga_step_has_compensate(g, 1));

    json_t *ctx = trigger();
    json_object_set_new(json_object_get(ctx, "data"), "qty", json_integer(2));
    json_object_set_new(ctx, "prev", json_null());
    char why[512];
    bool is_on;
    ASSERT_EQ(j17_saga_step_test(g, 0, ctx, &is_on, why, sizeof why), 0);
    CHECK(is_on); /* no condition */
    ASSERT_EQ(j17_saga_step_test(g, 1, ctx, &is_on, why, sizeof why), 0);
    CHECK(!is_on); /* $prev is null */
    struct j17_implied im;
    ASSERT_EQ(j17_saga_step_event(sp, g, 0, false, ctx, &im, why, sizeof why), 0);
    ASSERT_STR(im.agg_type, "product");
    ASSERT_STR(im.id, U2);
    ASSERT_STR(im.event_type, "reserve");
    ASSERT_EQ(json_integer_value(json_object_get(im.data, "qty")), 2);
    json_decref(im.data);
    ASSERT_EQ(j17_saga_step_event(sp, g, 0, true, ctx, &im, why, sizeof why), ERR_NOTFOUND);

    json_object_set_new(ctx, "prev", json_pack("{s:s,s:{s:i}}", "type", "was_reserved", "data",
                                               "n", 7));
    ASSERT_EQ(j17_saga_step_test(g, 1, ctx, &is_on, why, sizeof why), 0);
    CHECK(is_on);
    ASSERT_EQ(j17_saga_step_event(sp, g, 1, false, ctx, &im, why, sizeof why), 0);
    ASSERT_EQ(json_integer_value(json_object_get(im.data, "n")), 7);
    ASSERT_STR(im.id, U1);
    json_decref(im.data);
    ASSERT_EQ(j17_saga_step_event(sp, g, 1, true, ctx, &im, why, sizeof why), 0);
    ASSERT_STR(im.event_type, "was_placed");
    json_decref(im.data);

    json_object_set_new(json_object_get(ctx, "data"), "qty", json_string("two"));
    ASSERT_EQ(j17_saga_step_event(sp, g, 0, false, ctx, &im, why, sizeof why), ERR_INVALID);
    CHECK(im.data == NULL);
    CHECK(strstr(why, "modules.sagas.checkout.steps[0].emit") != NULL);
    CHECK(strstr(why, "data.qty") != NULL);
    json_decref(ctx);
    j17_spec_unref(sp);
}

TEST(starts_past_a_full_table_never_stall_the_read_before_the_overflow_limit)
{
    struct j_sagas s;
    j_sagas_init(&s, 1);
    static const char type[] = J17_SAGA_START;
    for (size_t i = 0; i < 200; i++) { /* the list held 64 once: the 65th stopped the read */
        uint8_t u[UUID_LEN];
        char id[UUID_TEXT_LEN + 1];
        uuid_v7((int64_t)i * 1000, u);
        uuid_format(u, id);
        json_t *rec = j_saga_start_rec("checkout", id, -1, 0);
        struct event_rec ev = {.position = 10 + i, .type = {type, sizeof type - 1}};
        ASSERT_EQ(j_sagas_on_record(&s, &ev, rec), 0);
        json_decref(rec);
    }
    ASSERT_EQ(s.count, 1);
    ASSERT_EQ(s.overflow_count, 199);
    j_sagas_fini(&s);
}

/* ---- start records of a batch ---- */

/* The batch of a write whose events are, in order: product:U2 reserve, a record of
 * J17_TIMER_STREAM, order:U1 was_placed (the trigger), made at saga depth depth. */
static void mixed_batch(struct j_batch *b, const struct j17_spec *sp, unsigned depth)
{
    j_batch_init(b, sp, 1000);
    b->saga_depth = depth;
    json_t *data = j_batch_keep(b, json_pack("{s:i}", "qty", 1));
    json_t *meta = j_batch_keep(b, json_object());
    j_batch_push(b, "product", U2, "reserve", data, meta, NULL);
    j_batch_push(b, J17_TIMER_STREAM, NULL, "j17.scheduled", data, NULL, NULL);
    j_batch_push(b, "order", U1, "was_placed", data, meta, NULL);
    b->own = 1;
}

TEST(batch_start_record_names_its_trigger_in_the_body_order)
{
    struct j17_spec *sp;
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compile(SPEC, strlen(SPEC), &sp, &pr), 0);
    struct j_batch b;
    mixed_batch(&b, sp, 0);
    char why[160];
    ASSERT_EQ(j_batch_push_implied(&b, why, sizeof why), 0);
    ASSERT_EQ(b.count, 4);
    ASSERT_EQ(b.sagas, 1);
    ASSERT_STR(b.evs[3].type, J17_SAGA_START);
    /* the body: product (1), j17.timers (the record, then the start record), order */
    struct buf body;
    buf_init(&body);
    j_batch_body(&b, NULL, (struct slice){NULL, 0}, (struct slice){NULL, 0}, &body);
    json_t *doc = json_loadb(body.ptr, body.len, 0, NULL);
    CHECK(doc != NULL);
    json_t *parts = json_object_get(doc, "appends");
    ASSERT_EQ(json_array_size(parts), 3);
    json_t *timers = json_array_get(parts, 1);
    ASSERT_STR(json_string_value(json_object_get(timers, "stream")), J17_TIMER_STREAM);
    json_t *start = json_object_get(json_array_get(json_object_get(timers, "events"), 1), "data");
    /* positions p+0 (product), p+1 (record), p+2 (start), p+3 (order: the trigger) */
    ASSERT_EQ(json_integer_value(json_object_get(start, "trigger_offset")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(start, "depth")), 0);
    struct j_sagas s;
    j_sagas_init(&s, 10);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, start, 102), J_APPLY_DONE);
    ASSERT_EQ(s.items[0]->trigger_pos, 103);
    j_sagas_fini(&s);
    json_decref(doc);
    buf_fini(&body);
    j_batch_fini(&b);
    j17_spec_unref(sp);
}

TEST(batch_of_a_step_too_deep_starts_no_saga)
{
    struct j17_spec *sp;
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compile(SPEC, strlen(SPEC), &sp, &pr), 0);
    struct j_batch b;
    char why[160];
    mixed_batch(&b, sp, J17_SAGA_DEPTH_MAX);
    ASSERT_EQ(j_batch_push_implied(&b, why, sizeof why), 0);
    ASSERT_EQ(b.sagas, 1); /* the deepest allowed */
    ASSERT_EQ(json_integer_value(json_object_get(b.evs[3].data, "depth")), J17_SAGA_DEPTH_MAX);
    j_batch_fini(&b);
    mixed_batch(&b, sp, J17_SAGA_DEPTH_MAX + 1);
    ASSERT_EQ(j_batch_push_implied(&b, why, sizeof why), 0);
    ASSERT_EQ(b.sagas, 0); /* the start is not made; the write goes on */
    ASSERT_EQ(b.count, 3);
    j_batch_fini(&b);
    j17_spec_unref(sp);
}
