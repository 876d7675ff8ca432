/* j17 translators (translate.h). */
#include "dialect/j17/translate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- errors ---- */

/* j17 answers 400 for every malformed request (a wrong content type included). */
static unsigned j17_status(unsigned kind)
{
    return kind == GK_MEDIA_TYPE ? GK_INVALID : kind;
}

/* The message of a conflict as j17 words it. */
static void conflict_text(const struct gate_error *e, char *out, size_t cap)
{
    if (e->has_actual_version && e->has_expected_version) {
        snprintf(out, cap, "Concurrent write detected. Stream has %" PRIu64
                 " events, expected %" PRIu64 ".", e->actual_version, e->expected_version);
    } else {
        snprintf(out, cap, "%s", e->message ? e->message : "Concurrent write detected.");
    }
}

unsigned j17_error(const struct gate_error *e, struct buf *out)
{
    char text[256];
    const char *msg = e->message ? e->message : e->code ? e->code : "error";
    if (e->kind == GK_CONFLICT && e->code && !strcmp(e->code, "wrong_expected_version")) {
        conflict_text(e, text, sizeof text);
        msg = text;
    } else if (e->kind == GK_RATE_LIMITED) {
        msg = "Rate limit exceeded";
    }
    buf_adds(out, "{\"ok\":false,\"error\":");
    buf_add_json_str(out, msg, strlen(msg));
    if (e->field && e->kind != GK_CONFLICT) {
        buf_adds(out, ",\"path\":");
        buf_add_json_str(out, e->field, strlen(e->field));
    }
    if (e->details) {
        buf_printf(out, ",%s", e->details);
    }
    buf_addc(out, '}');
    return j17_status(e->kind);
}

/* ---- stream ids ---- */

void j17_stream_id(int64_t recorded_us, uint64_t version, char *out)
{
    snprintf(out, J17_STREAM_ID_BYTES, "%" PRId64 "-%" PRIu64, recorded_us / 1000,
             version ? version - 1 : 0);
}

static bool digits(const char *s, size_t n)
{
    if (n == 0 || n > 19) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

bool j17_stream_id_version(const char *text, uint64_t *version)
{
    const char *dash = strchr(text, '-');
    if (!dash || !digits(text, (size_t)(dash - text)) || !digits(dash + 1, strlen(dash + 1))) {
        return false;
    }
    uint64_t seq = strtoull(dash + 1, NULL, 10);
    if (seq == UINT64_MAX) {
        return false;
    }
    *version = seq + 1;
    return true;
}

/* ---- metadata ---- */

static int fault(struct j17_fault *f, const char *path, const char *msg)
{
    f->kind = GK_INVALID;
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    return ERR_INVALID;
}

/* Checks that who (the metadata member name) is an object with string type and id. */
static int party(const json_t *v, const char *who, struct j17_fault *f)
{
    char path[64];
    if (!json_is_object(v)) {
        snprintf(path, sizeof path, "metadata.%s", who);
        return fault(f, path, "must be an object {\"type\",\"id\"}");
    }
    const char *member[] = {"type", "id"};
    for (int i = 0; i < 2; i++) {
        if (!json_is_string(json_object_get(v, member[i]))) {
            snprintf(path, sizeof path, "metadata.%s.%s", who, member[i]);
            return fault(f, path, "is required and must be a string");
        }
    }
    return 0;
}

int j17_meta_read(const json_t *metadata, struct j17_meta *out, struct j17_fault *f)
{
    memset(out, 0, sizeof *out);
    if (!metadata) {
        return fault(f, "metadata", "is required (metadata.actor names who wrote the event)");
    }
    if (!json_is_object(metadata)) {
        return fault(f, "metadata", "must be an object");
    }
    const json_t *actor = json_object_get(metadata, "actor");
    if (!actor) {
        return fault(f, "metadata.actor", "is required");
    }
    const json_t *target = json_object_get(metadata, "target");
    const json_t *prev = json_object_get(metadata, "previous_length");
    const json_t *skip = json_object_get(metadata, "skip_occ");
    static const char *const SERVERS[] = {"timestamp", "stream_id", "implied_by", "saga"};
    for (size_t i = 0; i < sizeof SERVERS / sizeof SERVERS[0]; i++) {
        if (json_object_get(metadata, SERVERS[i])) {
            char path[48];
            snprintf(path, sizeof path, "metadata.%s", SERVERS[i]);
            return fault(f, path, "is set by the server; leave it out");
        }
    }
    if (party(actor, "actor", f) || (target && !json_is_null(target) &&
                                     party(target, "target", f))) {
        return ERR_INVALID;
    }
    if (prev && !json_is_null(prev)) {
        if (!json_is_integer(prev) || json_integer_value(prev) < 0) {
            return fault(f, "metadata.previous_length", "must be a whole number from 0");
        }
        out->has_previous = true;
        out->previous_length = (uint64_t)json_integer_value(prev);
    }
    if (skip && !json_is_null(skip)) {
        if (!json_is_boolean(skip)) {
            return fault(f, "metadata.skip_occ", "must be true or false");
        }
        out->skip_occ = json_is_true(skip);
    }
    out->stored = json_deep_copy(metadata);
    json_object_del(out->stored, "previous_length");
    json_object_del(out->stored, "skip_occ");
    if (target && json_is_null(target)) {
        json_object_del(out->stored, "target");
    }
    return 0;
}

void j17_meta_fini(struct j17_meta *m)
{
    json_decref(m->stored);
    m->stored = NULL;
}

/* ---- events ---- */

/* The id part of a key "<type>:<id>": after the first ':'. */
static struct slice key_id(struct slice key)
{
    const char *colon = memchr(key.ptr, ':', key.len);
    if (!colon) {
        return key;
    }
    return (struct slice){colon + 1, key.len - (size_t)(colon + 1 - key.ptr)};
}

/* Appends metadata with "timestamp" (and "stream_id" when sid) added to the stored object. */
static void add_metadata(struct buf *out, const struct event_rec *ev, const char *sid)
{
    struct slice m = ev->metadata;
    size_t open = out->len;
    if (m.len >= 2 && m.ptr[0] == '{') {
        buf_add(out, m.ptr, m.len - 1); /* without its '}' */
    } else {
        buf_addc(out, '{');
    }
    bool empty = out->len == open + 1;
    buf_printf(out, "%s\"timestamp\":%" PRId64, empty ? "" : ",", ev->recorded_us / 1000000);
    if (sid) {
        buf_printf(out, ",\"stream_id\":\"%s\"", sid);
    }
    buf_addc(out, '}');
}

void j17_event_json(struct buf *out, const struct event_rec *ev)
{
    char sid[J17_STREAM_ID_BYTES];
    j17_stream_id(ev->recorded_us, ev->version, sid);
    buf_printf(out, "{\"stream_id\":\"%s\",\"key\":", sid);
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    buf_adds(out, ",\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"data\":");
    if (ev->data.len) {
        buf_add(out, ev->data.ptr, ev->data.len);
    } else {
        buf_adds(out, "null");
    }
    buf_adds(out, ",\"metadata\":");
    add_metadata(out, ev, NULL);
    buf_addc(out, '}');
}

void j17_event_render(struct buf *out, const struct event_rec *ev)
{
    char sid[J17_STREAM_ID_BYTES];
    j17_stream_id(ev->recorded_us, ev->version, sid);
    struct slice id = key_id(ev->stream);
    buf_adds(out, "{\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"key\":");
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    buf_adds(out, ",\"id\":");
    buf_add_json_str(out, id.ptr, id.len);
    buf_adds(out, ",\"data\":");
    if (ev->data.len) {
        buf_add(out, ev->data.ptr, ev->data.len);
    } else {
        buf_adds(out, "null");
    }
    buf_adds(out, ",\"metadata\":");
    add_metadata(out, ev, sid);
    buf_addc(out, '}');
}

/* ---- answers ---- */

int j17_write_answer(struct slice native, size_t count, size_t implied, bool batch,
                     struct buf *out)
{
    struct slice appends, part, events, rec, item, ver;
    size_t pos = 0, epos = 0;
    struct buf when;
    buf_init(&when);
    int64_t recorded_us = 0;
    bool ok = jsonx_member(native, "appends", &appends) &&
              jsonx_next_item(appends, &pos, &part) && jsonx_member(part, "events", &events) &&
              jsonx_member(native, "recorded", &rec) && jsonx_string(rec, &when) == 0 &&
              time_parse(when.ptr, when.len, &recorded_us) == 0;
    buf_fini(&when);
    if (!ok) {
        return ERR_CORRUPT;
    }
    buf_adds(out, batch ? "{\"ok\":true,\"stream_ids\":[" : "{\"ok\":true,\"stream_id\":");
    for (size_t i = 0; i < count; i++) {
        uint64_t v;
        if (!jsonx_next_item(events, &epos, &item) || !jsonx_member(item, "version", &ver) ||
            !jsonx_u64(ver, &v)) {
            return ERR_CORRUPT;
        }
        char sid[J17_STREAM_ID_BYTES];
        j17_stream_id(recorded_us, v, sid);
        buf_printf(out, "%s\"%s\"", i ? "," : "", sid);
    }
    if (batch) {
        buf_printf(out, "],\"count\":%zu", count);
    }
    if (implied) {
        buf_printf(out, ",\"implied_count\":%zu", implied);
    }
    buf_addc(out, '}');
    return 0;
}
