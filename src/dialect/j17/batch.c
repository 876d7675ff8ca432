/* The events of one j17 write, and the native append body that writes them (j_int.h,
 * "batch.c"): the aggregate's own events first, then the events their implications imply
 * now, and the timer records of those they imply later (scheduled implications), each kept
 * as an event of the stream J17_TIMER_STREAM, and the start record of each saga an event of
 * the write triggers (saga.h), in the same stream: it names its trigger by position (the
 * events of one write are in one commit), never copies it. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jenc.h"
#include "json/jpath.h"
#include "util/errors.h"
#include "util/uuid.h"

void j_batch_init(struct j_batch *b, const struct j17_spec *spec, int64_t now_ms)
{
    memset(b, 0, sizeof *b);
    b->spec = spec;
    b->now_ms = now_ms;
    b->owned = json_array();
}

void j_batch_fini(struct j_batch *b)
{
    free(b->evs);
    free(b->from);
    j17_implied_list_fini(&b->implied);
    json_decref(b->owned);
    memset(b, 0, sizeof *b);
}

void j_batch_push(struct j_batch *b, const char *type, const char *id, const char *event_type,
                  json_t *data, json_t *metadata, const char *tags)
{
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->evs = xrealloc(b->evs, b->cap * sizeof(*b->evs));
    }
    struct j_out_event *e = &b->evs[b->count++];
    if (id) {
        snprintf(e->stream, sizeof e->stream, "%s:%s", type, id);
    } else {
        snprintf(e->stream, sizeof e->stream, "%s", type);
    }
    e->type = event_type;
    e->data = data;
    e->raw_data = (struct slice){NULL, 0};
    e->metadata = metadata;
    e->tags = tags;
}

json_t *j_batch_keep(struct j_batch *b, json_t *v)
{
    json_array_append_new(b->owned, v);
    return v;
}

int j_batch_imply(struct j_batch *b, const struct j17_agg *a, const struct j17_evt *e,
                  const char *key, json_t *data, json_t *metadata, char *why, size_t cap)
{
    json_t *ctx = jpath_event_new(j17_evt_name(e), key, data, metadata);
    size_t before = b->implied.count;
    int rc = j17_imply(b->spec, a, e, ctx, &b->implied, why, cap);
    json_decref(ctx);
    if (!rc && b->implied.count > J17_IMPLIED_MAX) {
        snprintf(why, cap, "more than %d implied events in one write", J17_IMPLIED_MAX);
        rc = ERR_TOOBIG;
    }
    b->from = xrealloc(b->from, (b->implied.count ? b->implied.count : 1) * sizeof(*b->from));
    json_t *meta = j_batch_keep(b, json_deep_copy(metadata));
    json_object_set_new(meta, "implied_by", json_pack("{s:s,s:s}", "key", key, "event_type",
                                                      j17_evt_name(e)));
    for (size_t i = before; i < b->implied.count; i++) {
        b->from[i] = meta;
    }
    return rc;
}

/* The timer record of scheduled implied event im: its data, tags into tags (cap). */
static json_t *timer_record(struct j_batch *b, const struct j17_implied *im, json_t *meta,
                            char *tags, size_t cap)
{
    uint8_t u[UUID_LEN];
    char id[UUID_TEXT_LEN + 1];
    uuid_v7(b->now_ms * 1000, u);
    uuid_format(u, id);
    snprintf(tags, cap, "[\"%s%s\"]", J17_TIMER_TAG, id);
    json_t *r = json_pack("{s:s,s:I,s:s,s:s,s:s,s:O,s:O}", "timer", id, "fire_at_ms",
                          (json_int_t)(b->now_ms + (int64_t)im->delay_ms), "aggregate_type",
                          im->agg_type, "id", im->id, "event_type", im->event_type, "data",
                          im->data ? im->data : json_null(), "metadata", meta);
    if (im->cancel_on) {
        json_object_set(r, "cancel_on", im->cancel_on);
    }
    if (b->saga_depth) { /* a saga step scheduled it: what it starts keeps counting */
        json_object_set_new(r, "saga_depth", json_integer(b->saga_depth));
    }
    return r;
}

/* Adds the start record of saga g (its trigger_offset set by set_trigger_offsets). */
static void push_saga_start(struct j_batch *b, const struct j17_saga *g)
{
    uint8_t u[UUID_LEN];
    char id[UUID_TEXT_LEN + 1];
    uuid_v7(b->now_ms * 1000, u);
    uuid_format(u, id);
    json_t *r = j_batch_keep(b, j_saga_start_rec(j17_saga_name(g), id, 0, b->saga_depth));
    struct buf tags;
    buf_init(&tags);
    j_saga_tags(&tags, id, NULL, -1);
    json_t *t = j_batch_keep(b, json_string(tags.ptr));
    buf_fini(&tags);
    j_batch_push(b, J17_TIMER_STREAM, NULL, J17_SAGA_START, r, NULL, json_string_value(t));
    b->sagas++;
}

/* The index each event of b has in the append j_batch_body writes (streams in the order they
 * first appear, each stream's events together, in order) into at (b->count). Mirrors
 * add_part. */
static void body_order(const struct j_batch *b, size_t *at)
{
    bool *done = xcalloc(b->count ? b->count : 1, sizeof(bool));
    size_t next = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (done[i]) {
            continue;
        }
        for (size_t k = i; k < b->count; k++) {
            if (!done[k] && !strcmp(b->evs[k].stream, b->evs[i].stream)) {
                done[k] = true;
                at[k] = next++;
            }
        }
    }
    free(done);
}

/* Sets the trigger_offset of the start records evs[first..] (triggered by evs[trig[k]]) now
 * that every event of the batch is in place: positions follow the body's order. */
static void set_trigger_offsets(struct j_batch *b, size_t first, const size_t *trig)
{
    size_t *at = xcalloc(b->count, sizeof(*at));
    body_order(b, at);
    for (size_t k = first; k < b->count; k++) {
        long offset = (long)at[trig[k - first]] - (long)at[k];
        json_object_set_new(b->evs[k].data, "trigger_offset", json_integer(offset));
    }
    free(at);
}

/* Adds a start record for each saga an aggregate event of the batch triggers (none when the
 * batch is a step of an instance J17_SAGA_DEPTH_MAX deep). */
static int push_saga_starts(struct j_batch *b, char *why, size_t cap)
{
    size_t n = b->count;
    size_t sagas = b->saga_depth <= J17_SAGA_DEPTH_MAX ? j17_spec_saga_count(b->spec) : 0;
    size_t trig[J17_SAGA_STARTS_MAX];
    for (size_t i = 0; i < n && sagas; i++) {
        const char *colon = strchr(b->evs[i].stream, ':');
        if (!colon) {
            continue; /* a record, not an aggregate's event */
        }
        size_t type_len = (size_t)(colon - b->evs[i].stream);
        for (size_t k = 0; k < sagas; k++) {
            const struct j17_saga *g = j17_spec_saga_at(b->spec, k);
            const char *agg = j17_saga_trigger_agg(g);
            if (strlen(agg) != type_len || memcmp(agg, b->evs[i].stream, type_len) != 0 ||
                strcmp(j17_saga_trigger_event(g), b->evs[i].type) != 0) {
                continue;
            }
            if (b->count - n >= J17_SAGA_STARTS_MAX) {
                snprintf(why, cap, "more than %d sagas started by one write",
                         J17_SAGA_STARTS_MAX);
                return ERR(ERR_TOOBIG);
            }
            trig[b->count - n] = i;
            push_saga_start(b, g);
        }
    }
    if (b->count > n) {
        set_trigger_offsets(b, n, trig);
    }
    return 0;
}

int j_batch_push_implied(struct j_batch *b, char *why, size_t cap)
{
    for (size_t i = 0; i < b->implied.count; i++) {
        const struct j17_implied *im = &b->implied.items[i];
        if (!im->delay_ms) {
            j_batch_push(b, im->agg_type, im->id, im->event_type, im->data, b->from[i], NULL);
            continue;
        }
        char tags[64 + UUID_TEXT_LEN];
        json_t *r = j_batch_keep(b, timer_record(b, im, b->from[i], tags, sizeof tags));
        json_t *t = j_batch_keep(b, json_string(tags));
        j_batch_push(b, J17_TIMER_STREAM, NULL, J17_TIMER_SCHEDULED, r, NULL,
                     json_string_value(t));
        b->scheduled++;
    }
    return push_saga_starts(b, why, cap);
}

void j_add_json(struct buf *out, const json_t *v)
{
    if (!v || jenc_tree(v, out, SIZE_MAX, J17_JSON_DEPTH) != 0) {
        buf_adds(out, "null"); /* deeper than any request or state the server takes */
    }
}

static void add_event(struct buf *out, const struct j_out_event *e, bool first)
{
    buf_adds(out, first ? "{\"type\":" : ",{\"type\":");
    buf_add_json_str(out, e->type, strlen(e->type));
    buf_adds(out, ",\"data\":");
    if (e->raw_data.ptr) {
        buf_add(out, e->raw_data.ptr, e->raw_data.len); /* as the client sent it, minified */
    } else {
        j_add_json(out, e->data);
    }
    if (e->metadata) {
        buf_adds(out, ",\"metadata\":");
        j_add_json(out, e->metadata);
    }
    if (e->tags) {
        buf_printf(out, ",\"tags\":%s", e->tags);
    }
    buf_addc(out, '}');
}

/* Appends the part of stream evs[i] (every event of that stream not done yet). */
static void add_part(const struct j_batch *b, size_t i, bool *done, struct buf *out)
{
    buf_adds(out, "{\"stream\":");
    buf_add_json_str(out, b->evs[i].stream, strlen(b->evs[i].stream));
    buf_adds(out, ",\"events\":[");
    size_t n = 0;
    for (size_t k = i; k < b->count; k++) {
        if (!done[k] && !strcmp(b->evs[k].stream, b->evs[i].stream)) {
            done[k] = true;
            add_event(out, &b->evs[k], n++ == 0);
        }
    }
    buf_addc(out, ']');
}

void j_batch_body(const struct j_batch *b, const uint64_t *expected, struct slice extra_part,
                  struct slice conditions, struct buf *out)
{
    bool *done = xcalloc(b->count ? b->count : 1, sizeof(bool));
    buf_adds(out, "{\"appends\":[");
    size_t parts = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (done[i]) {
            continue;
        }
        buf_adds(out, parts++ ? "," : "");
        add_part(b, i, done, out);
        if (i == 0 && expected) {
            buf_printf(out, ",\"expectedVersion\":%llu", (unsigned long long)*expected);
        }
        buf_addc(out, '}');
    }
    if (extra_part.ptr) {
        buf_adds(out, parts++ ? "," : "");
        buf_add(out, extra_part.ptr, extra_part.len);
    }
    buf_addc(out, ']');
    if (conditions.ptr) {
        buf_adds(out, ",\"conditions\":");
        buf_add(out, conditions.ptr, conditions.len);
    }
    buf_addc(out, '}');
    free(done);
}
