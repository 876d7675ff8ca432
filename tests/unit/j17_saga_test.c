/* dialect/j17/saga and the spec's saga API: start and step records, the instance state they
 * give (applied in order, applied twice, out of place, past the table's size, ended and swept),
 * a step's context ($prev), the await target rule, tags; a step's condition and emit against
 * a context, a compensation, and an emit whose data fails its schema. */
#include <string.h>

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

/* A state with instance I1 started (position 10). */
static void started(struct j_sagas *s, size_t max)
{
    j_sagas_init(s, max);
    json_t *t = trigger();
    json_t *rec = j_saga_start_rec("checkout", I1, t);
    json_decref(t);
    ASSERT_EQ(j_sagas_apply(s, J17_SAGA_START, rec, 10), J_APPLY_DONE);
    ASSERT_EQ(j_sagas_apply(s, J17_SAGA_START, rec, 10), J_APPLY_IGNORED); /* twice */
    json_decref(rec);
}

TEST(start_record_shape_and_instance)
{
    json_t *t = trigger();
    json_t *rec = j_saga_start_rec("checkout", I1, t);
    ASSERT_STR(json_string_value(json_object_get(rec, "saga")), "checkout");
    ASSERT_STR(json_string_value(json_object_get(rec, "instance")), I1);
    CHECK(json_equal(json_object_get(rec, "trigger"), t));
    json_decref(t);
    json_decref(rec);
    struct j_sagas s;
    started(&s, 10);
    struct j_saga_inst *g = j_sagas_find(&s, I1);
    CHECK(g != NULL);
    ASSERT_STR(g->saga, "checkout");
    ASSERT_EQ(g->phase, J_SAGA_RUN);
    ASSERT_EQ(g->step, 0);
    json_t *ctx = j_saga_ctx(g, 0);
    CHECK(json_is_null(json_object_get(ctx, "prev")));
    ASSERT_STR(json_string_value(json_object_get(ctx, "id")), U1);
    ASSERT_STR(json_string_value(json_object_get(ctx, "type")), "was_placed");
    json_decref(ctx);
    j_sagas_fini(&s);
}

TEST(malformed_records_are_ignored)
{
    struct j_sagas s;
    j_sagas_init(&s, 10);
    json_t *t = trigger();
    json_t *bad_id = j_saga_start_rec("checkout", "not-a-uuid", t);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, bad_id, 1), J_APPLY_IGNORED);
    json_t *no_trigger = json_pack("{s:s,s:s}", "saga", "checkout", "instance", I1);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_START, no_trigger, 1), J_APPLY_IGNORED);
    ASSERT_EQ(j_sagas_apply(&s, "j17.other", no_trigger, 1), J_APPLY_IGNORED);
    ASSERT_EQ(s.count, 0);
    json_t *step = j_saga_step_rec(I1, 0, "done", 5);
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, step, 2), J_APPLY_IGNORED); /* no instance */
    json_decref(step);
    json_decref(bad_id);
    json_decref(no_trigger);
    json_decref(t);
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
    json_t *done = j_saga_step_rec(I1, 0, "done", 5);
    json_object_set_new(done, "prev", json_pack("{s:s,s:{s:i}}", "type", "was_reserved",
                                                "data", "qty", 3));
    ASSERT_EQ(j_sagas_apply(&s, J17_SAGA_STEP, done, 30), J_APPLY_DONE);
    ASSERT_EQ(g->phase, J_SAGA_RUN);
    ASSERT_EQ(g->step, 1);
    CHECK(g->await_types == NULL);
    json_t *ctx = j_saga_ctx(g, 1);
    ASSERT_STR(json_string_value(json_object_get(json_object_get(ctx, "prev"), "type")),
               "was_reserved");
    json_decref(ctx);
    json_decref(aw);
    json_decref(plain);
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
    json_t *t = trigger();
    json_t *other = j_saga_start_rec("checkout", U2, t); /* a v4 UUID is a UUID too */
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
    json_decref(t);
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
