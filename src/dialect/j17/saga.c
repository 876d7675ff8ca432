/* The state of running j17 saga instances, rebuilt from their records (saga.h). Invariants:
 * by_id maps the id of every item to its index; an instance's step is at most its saga's
 * J17_SAGA_STEPS_MAX; await_types and the await fields are set only in J_SAGA_AWAIT; ended
 * counts the items in J_SAGA_ENDED; awaited[k] is non-zero only for a step k < step that
 * completed an await; overflow_count <= J17_SAGA_OVERFLOW_MAX. */
#include "dialect/j17/saga.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void j_sagas_init(struct j_sagas *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
    strmap_init(&s->by_id, sizeof(size_t));
}

static void inst_free(struct j_saga_inst *g)
{
    json_decref(g->trigger);
    json_decref(g->await_types);
    free(g);
}

void j_sagas_fini(struct j_sagas *s)
{
    for (size_t i = 0; i < s->count; i++) {
        inst_free(s->items[i]);
    }
    free(s->items);
    free(s->overflow);
    strmap_fini(&s->by_id);
    memset(s, 0, sizeof(*s));
}

struct j_saga_inst *j_sagas_find(const struct j_sagas *s, const char *id)
{
    size_t *at = strmap_get(&s->by_id, id, strlen(id));
    return at ? s->items[*at] : NULL;
}

/* Frees items[i] (ended), moving the last item to its place. */
static void remove_at(struct j_sagas *s, size_t i)
{
    struct j_saga_inst *g = s->items[i];
    strmap_remove(&s->by_id, g->id, strlen(g->id));
    inst_free(g);
    s->ended--;
    s->items[i] = s->items[--s->count];
    if (i < s->count) {
        *(size_t *)strmap_get(&s->by_id, s->items[i]->id, strlen(s->items[i]->id)) = i;
    }
}

void j_sagas_sweep(struct j_sagas *s)
{
    for (size_t i = 0; s->ended && i < s->count;) {
        if (s->items[i]->phase == J_SAGA_ENDED) {
            remove_at(s, i);
        } else {
            i++;
        }
    }
}

void j_sagas_remove_ended(struct j_sagas *s, const char *id)
{
    size_t *at = strmap_get(&s->by_id, id, strlen(id));
    if (at && s->items[*at]->phase == J_SAGA_ENDED) {
        remove_at(s, *at);
    }
}

/* ---- applying records ---- */

static const char *str_of(const json_t *data, const char *member)
{
    return json_string_value(json_object_get(data, member));
}

bool j_sagas_overflow_push(struct j_sagas *s, const char *id)
{
    if (s->overflow_count == J17_SAGA_OVERFLOW_MAX) {
        return false;
    }
    if (s->overflow_count == s->overflow_cap) {
        s->overflow_cap = s->overflow_cap ? s->overflow_cap * 2 : 16;
        s->overflow = xrealloc(s->overflow, s->overflow_cap * sizeof(*s->overflow));
    }
    snprintf(s->overflow[s->overflow_count++], UUID_TEXT_LEN + 1, "%s", id);
    return true;
}

/* The trigger's position of a start record at position (offset and depth checked), or 0. */
static uint64_t trigger_pos(const json_t *data, uint64_t position, unsigned *depth)
{
    json_t *off = json_object_get(data, "trigger_offset");
    json_t *dv = json_object_get(data, "depth");
    if (position == 0 || !json_is_integer(off) || (dv && !json_is_integer(dv))) {
        return 0;
    }
    json_int_t o = json_integer_value(off);
    json_int_t d = dv ? json_integer_value(dv) : 0;
    if (o == 0 || d < 0 || d > J17_SAGA_DEPTH_MAX ||
        (o < 0 ? (uint64_t)-(o + 1) >= position - 1 : (uint64_t)o > UINT64_MAX - position)) {
        return 0; /* the trigger would be at position 0 or less, or past the last one */
    }
    *depth = (unsigned)d;
    return o < 0 ? position - (uint64_t)-(o + 1) - 1 : position + (uint64_t)o;
}

static enum j_apply apply_start(struct j_sagas *s, const json_t *data, uint64_t position)
{
    const char *saga = str_of(data, "saga");
    const char *id = str_of(data, "instance");
    unsigned depth = 0;
    uint64_t tpos = trigger_pos(data, position, &depth);
    uint8_t u[UUID_LEN];
    if (!saga || !id || strlen(id) != UUID_TEXT_LEN || uuid_parse(id, UUID_TEXT_LEN, u) != 0 ||
        strlen(saga) > J17_NAME_BYTES || tpos == 0 || j_sagas_find(s, id)) {
        return J_APPLY_IGNORED;
    }
    if (s->count - s->ended >= s->max) {
        return J_APPLY_FULL;
    }
    struct j_saga_inst *g = xcalloc(1, sizeof(*g));
    snprintf(g->id, sizeof g->id, "%s", id);
    snprintf(g->saga, sizeof g->saga, "%s", saga);
    g->trigger_pos = tpos;
    g->depth = depth;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = xrealloc(s->items, s->cap * sizeof(*s->items));
    }
    *(size_t *)strmap_put(&s->by_id, id, strlen(id), NULL) = s->count;
    s->items[s->count++] = g;
    return J_APPLY_DONE;
}

/* An awaiting record's await members into g; false when they are malformed. */
static bool read_await(struct j_saga_inst *g, const json_t *data, uint64_t position)
{
    json_t *events = json_object_get(data, "events");
    json_t *await = json_object_get(data, "await");
    const char *stream = str_of(await, "stream");
    json_t *types = json_object_get(await, "event_types");
    json_t *at = json_object_get(data, "at_ms");
    json_t *timeout = json_object_get(data, "timeout_ms");
    if (!json_is_integer(events) || json_integer_value(events) < 1 ||
        (uint64_t)json_integer_value(events) >= position || !stream ||
        strlen(stream) >= sizeof g->await_stream || !json_is_array(types) ||
        !json_is_integer(at) || (timeout && !json_is_integer(timeout))) {
        return false;
    }
    g->emit_pos = position - (uint64_t)json_integer_value(events);
    g->await_since_ms = json_integer_value(at);
    g->timeout_ms = timeout && json_integer_value(timeout) > 0
                        ? (uint64_t)json_integer_value(timeout) : 0;
    snprintf(g->await_stream, sizeof g->await_stream, "%s", stream);
    g->await_types = json_incref(types);
    g->scan_from = 0;
    return true;
}

static enum j_apply apply_step(struct j_sagas *s, const json_t *data, uint64_t position)
{
    const char *id = str_of(data, "instance");
    const char *state = str_of(data, "state");
    json_t *stepv = json_object_get(data, "step");
    struct j_saga_inst *g = id ? j_sagas_find(s, id) : NULL;
    if (!g || !state || !json_is_integer(stepv) ||
        json_integer_value(stepv) != (json_int_t)g->step || g->step >= J17_SAGA_STEPS_MAX) {
        return J_APPLY_IGNORED;
    }
    json_t *prev = json_object_get(data, "prev_position");
    bool is_done = !strcmp(state, "done");
    if (g->phase == J_SAGA_AWAIT) {
        if (!is_done || !json_is_integer(prev) || json_integer_value(prev) <= 0 ||
            (uint64_t)json_integer_value(prev) <= g->emit_pos) {
            return J_APPLY_IGNORED;
        }
        g->awaited[g->step] = (uint64_t)json_integer_value(prev);
        json_decref(g->await_types);
        g->await_types = NULL;
        g->phase = J_SAGA_RUN;
        g->states[g->step++] = J_STEP_DONE;
        return J_APPLY_DONE;
    }
    if (g->phase != J_SAGA_RUN) {
        return J_APPLY_IGNORED;
    }
    if (!strcmp(state, "awaiting")) {
        if (!read_await(g, data, position)) {
            return J_APPLY_IGNORED;
        }
        g->phase = J_SAGA_AWAIT;
        return J_APPLY_DONE;
    }
    if ((!is_done && strcmp(state, "skipped")) || prev) {
        return J_APPLY_IGNORED;
    }
    g->states[g->step++] = is_done ? J_STEP_DONE : J_STEP_SKIPPED;
    return J_APPLY_DONE;
}

enum j_apply j_sagas_apply(struct j_sagas *s, const char *type, const json_t *data,
                           uint64_t position)
{
    if (!json_is_object(data)) {
        return J_APPLY_IGNORED;
    }
    if (!strcmp(type, J17_SAGA_START)) {
        return apply_start(s, data, position);
    }
    if (!strcmp(type, J17_SAGA_STEP)) {
        return apply_step(s, data, position);
    }
    if (strcmp(type, J17_SAGA_ENDED) != 0) {
        return J_APPLY_IGNORED;
    }
    const char *id = str_of(data, "instance");
    struct j_saga_inst *g = id ? j_sagas_find(s, id) : NULL;
    if (!g || g->phase == J_SAGA_ENDED) {
        return J_APPLY_IGNORED;
    }
    g->phase = J_SAGA_ENDED;
    s->ended++;
    return J_APPLY_DONE;
}

/* ---- records and contexts ---- */

json_t *j_saga_start_rec(const char *saga, const char *instance, long trigger_offset,
                         unsigned depth)
{
    return json_pack("{s:s,s:s,s:I,s:I}", "saga", saga, "instance", instance, "trigger_offset",
                     (json_int_t)trigger_offset, "depth", (json_int_t)depth);
}

json_t *j_saga_step_rec(const char *instance, size_t step, const char *state, int64_t at_ms)
{
    return json_pack("{s:s,s:I,s:s,s:I}", "instance", instance, "step", (json_int_t)step,
                     "state", state, "at_ms", (json_int_t)at_ms);
}

json_t *j_saga_ctx(const struct j_saga_inst *g, const json_t *prev)
{
    json_t *ctx = json_is_object(g->trigger) ? json_copy(g->trigger) : json_object();
    json_object_set_new(ctx, "prev", prev ? json_deep_copy(prev) : json_null());
    return ctx;
}

void j_saga_tags(struct buf *out, const char *id, const char *kind, long step)
{
    buf_printf(out, "[\"%s%s\"", J17_SAGA_TAG, id);
    if (kind) {
        buf_printf(out, ",\"%s%s", kind, id);
        if (step >= 0) {
            buf_printf(out, ":%ld", step);
        }
        buf_addc(out, '"');
    }
    buf_addc(out, ']');
}

void j_saga_await_stream(const char *await_agg, const char *emit_agg, const char *emit_id,
                         const json_t *trigger, char *out)
{
    const char *id = !strcmp(await_agg, emit_agg) ? emit_id : str_of(trigger, "id");
    snprintf(out, J17_SAGA_STREAM_BYTES, "%s:%s", await_agg, id ? id : "");
}
