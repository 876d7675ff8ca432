/* Hapnd dialect translators (translate.h). */
#include "dialect/hapnd/translate.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "json/jsonx.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- errors ---- */

/* Hapnd's code for a native error: the dialect's own codes (upper case) as they are. */
static const char *hapnd_code(const struct gate_error *e)
{
    if (e->code && e->code[0] >= 'A' && e->code[0] <= 'Z') {
        return e->code;
    }
    if (e->code && !strcmp(e->code, "invalid_json")) {
        return "INVALID_REQUEST";
    }
    if (e->code && !strcmp(e->code, "wrong_expected_version")) {
        return "CONCURRENCY_CONFLICT";
    }
    switch (e->kind) {
    case GK_INVALID: return "VALIDATION_ERROR";
    case GK_UNAUTHORIZED: return "UNAUTHORIZED";
    case GK_FORBIDDEN: return "FORBIDDEN";
    case GK_NOT_FOUND: return "NOT_FOUND";
    case GK_METHOD: return "METHOD_NOT_ALLOWED";
    case GK_CONFLICT: return "CONFLICT";
    case GK_GONE: return "NOT_FOUND";
    case GK_TOO_LARGE: return "PAYLOAD_TOO_LARGE";
    case GK_MEDIA_TYPE: return "INVALID_REQUEST";
    case GK_UNPROCESSABLE: return "VALIDATION_ERROR";
    case GK_RATE_LIMITED: return "RATE_LIMITED";
    case GK_UNAVAILABLE: return "SERVICE_UNAVAILABLE";
    case GK_STORAGE_FULL: return "STORAGE_FULL";
    default: return e->kind >= 500 ? "INTERNAL_ERROR" : "INVALID_REQUEST";
    }
}

unsigned hapnd_error(const struct gate_error *e, struct buf *out)
{
    const char *code = hapnd_code(e);
    bool conflict = !strcmp(code, "CONCURRENCY_CONFLICT");
    const char *msg = conflict ? "Concurrency conflict" : e->message ? e->message : code;
    buf_adds(out, "{\"error\":");
    buf_add_json_str(out, msg, strlen(msg));
    buf_adds(out, ",\"errorCode\":");
    buf_add_json_str(out, code, strlen(code));
    if (conflict && e->has_expected_version) {
        buf_printf(out, ",\"expectedVersion\":%llu", (unsigned long long)e->expected_version);
    }
    if (conflict && e->has_actual_version) {
        buf_printf(out, ",\"actualVersion\":%llu", (unsigned long long)e->actual_version);
    }
    if (e->field && e->kind == GK_INVALID) {
        buf_adds(out, ",\"field\":");
        buf_add_json_str(out, e->field, strlen(e->field));
    }
    buf_addc(out, '}');
    return e->kind;
}

/* ---- aggregate types ---- */

bool hapnd_infer_type(struct slice id, struct slice *type)
{
    for (size_t i = 0; i < id.len; i++) {
        if (id.ptr[i] == '_' || id.ptr[i] == '-') {
            *type = (struct slice){id.ptr, i};
            return i > 0;
        }
    }
    return false;
}

bool hapnd_type_ok(struct slice type)
{
    if (type.len == 0 || type.len > HAPND_TYPE_BYTES) {
        return false;
    }
    for (size_t i = 0; i < type.len; i++) {
        char ch = type.ptr[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '-' || ch == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* ---- appends in ---- */

void hapnd_append_init(struct hapnd_append *a)
{
    memset(a, 0, sizeof(*a));
    buf_init(&a->text);
    buf_init(&a->events);
}

void hapnd_append_fini(struct hapnd_append *a)
{
    buf_fini(&a->text);
    buf_fini(&a->events);
}

/* Where the aggregate type goes in a.events (a byte JSON text never holds unescaped). */
#define TYPE_MARK '\x01'

static int invalid(struct parse_error *pe, const char *field, const char *msg)
{
    return parse_fail(pe, 400, "VALIDATION_ERROR", field, "%s", msg);
}

/* A string member of obj that may be absent (or null): true with *out (ptr NULL when absent),
 * false after invalid() when it is another kind or longer than max. */
static bool opt_string(json_t *obj, const char *name, size_t max, const char *field,
                       const char **out, struct parse_error *pe)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be a non-empty string of at most %zu bytes", name,
                 max);
        invalid(pe, field, msg);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* What one event of the request holds: its members, and the request's as defaults. */
struct ev_in {
    const char *event_type;
    struct slice data;           /* raw JSON span */
    struct slice metadata;       /* raw JSON span of an object; ptr NULL: none */
    const char *correlation, *causation;
};

/* Appends the native event of in to out, the aggregate type left as TYPE_MARK. */
static void native_event(const struct ev_in *in, struct buf *out)
{
    buf_adds(out, "{\"type\":");
    buf_add_json_str(out, in->event_type, strlen(in->event_type));
    buf_adds(out, ",\"data\":");
    jsonx_minify(in->data, out);
    buf_adds(out, ",\"metadata\":{\"" HAPND_MEMBER "\":{\"aggregateType\":");
    buf_addc(out, TYPE_MARK);
    if (in->correlation) {
        buf_adds(out, ",\"correlationId\":");
        buf_add_json_str(out, in->correlation, strlen(in->correlation));
    }
    if (in->causation) {
        buf_adds(out, ",\"causationId\":");
        buf_add_json_str(out, in->causation, strlen(in->causation));
    }
    if (in->metadata.ptr) {
        buf_adds(out, ",\"metadata\":");
        jsonx_minify(in->metadata, out);
    }
    buf_adds(out, "}}}");
}

/* The members of one event object ev (jansson) whose raw text is raw, over the defaults. */
static bool read_event(json_t *ev, struct slice raw, const char *prefix, struct ev_in *in,
                       struct parse_error *pe)
{
    char field[64];
    json_t *t = json_object_get(ev, "eventType");
    snprintf(field, sizeof field, "%seventType", prefix);
    if (!json_is_string(t) || json_string_length(t) == 0 ||
        json_string_length(t) > LIMIT_TYPE_BYTES) {
        invalid(pe, field, "eventType is required: a non-empty string");
        return false;
    }
    in->event_type = json_string_value(t);
    snprintf(field, sizeof field, "%sdata", prefix);
    json_t *d = json_object_get(ev, "data");
    if (!d || json_is_null(d) || !jsonx_member(raw, "data", &in->data)) {
        invalid(pe, field, "data is required");
        return false;
    }
    json_t *m = json_object_get(ev, "metadata");
    struct slice mraw;
    snprintf(field, sizeof field, "%smetadata", prefix);
    if (m && !json_is_null(m)) {
        if (!json_is_object(m) || !jsonx_member(raw, "metadata", &mraw)) {
            invalid(pe, field, "metadata must be an object");
            return false;
        }
        in->metadata = mraw;
    }
    const char *s;
    snprintf(field, sizeof field, "%scorrelationId", prefix);
    if (!opt_string(ev, "correlationId", HAPND_CORRELATION_BYTES, field, &s, pe)) {
        return false;
    }
    in->correlation = s ? s : in->correlation;
    snprintf(field, sizeof field, "%scausationId", prefix);
    if (!opt_string(ev, "causationId", HAPND_CORRELATION_BYTES, field, &s, pe)) {
        return false;
    }
    in->causation = s ? s : in->causation;
    return true;
}

static bool read_top(json_t *root, struct hapnd_append *out, struct parse_error *pe)
{
    json_t *id = json_object_get(root, "aggregateId");
    if (!json_is_string(id) || json_string_length(id) == 0) {
        invalid(pe, "aggregateId", "aggregateId is required: a non-empty string");
        return false;
    }
    size_t n = json_string_length(id);
    const char *s = json_string_value(id);
    if (n > LIMIT_STREAM_NAME_BYTES || s[0] == '$' || memchr(s, '\0', n)) {
        invalid(pe, "aggregateId", "aggregateId must be at most 256 bytes, without NUL, and "
                "not start with '$'");
        return false;
    }
    buf_add(&out->text, s, n);
    const char *type;
    if (!opt_string(root, "aggregateType", HAPND_TYPE_BYTES, "aggregateType", &type, pe)) {
        return false;
    }
    if (type && !hapnd_type_ok((struct slice){type, strlen(type)})) {
        invalid(pe, "aggregateType", "aggregateType is letters, digits, '_', '-' and '.'");
        return false;
    }
    out->aggregate_type = type ? (struct slice){type, strlen(type)} : (struct slice){NULL, 0};
    json_t *ev = json_object_get(root, "expectedVersion");
    if (ev && !json_is_null(ev)) {
        if (!json_is_integer(ev) || json_integer_value(ev) < 0) {
            invalid(pe, "expectedVersion", "expectedVersion must be a whole number from 0");
            return false;
        }
        out->has_expected = true;
        out->expected = (uint64_t)json_integer_value(ev);
    }
    return true;
}

static bool read_batch(json_t *root, struct slice body, size_t max_events, struct ev_in *dflt,
                       struct hapnd_append *out, struct parse_error *pe)
{
    json_t *evs = json_object_get(root, "events");
    struct slice raw;
    if (!json_is_array(evs) || json_array_size(evs) == 0 || !jsonx_member(body, "events", &raw)) {
        invalid(pe, "events", "events is required: a non-empty array");
        return false;
    }
    if (json_array_size(evs) > max_events) {
        parse_fail(pe, 400, "VALIDATION_ERROR", "events", "at most %zu events in one batch",
                   max_events);
        return false;
    }
    size_t pos = 0;
    struct slice item;
    for (size_t i = 0; jsonx_next_item(raw, &pos, &item); i++) {
        json_t *ev = json_array_get(evs, i);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "events[%zu].", i);
        if (!json_is_object(ev)) {
            invalid(pe, prefix, "each event is an object");
            return false;
        }
        struct ev_in in = *dflt;
        if (!read_event(ev, item, prefix, &in, pe)) {
            return false;
        }
        buf_adds(&out->events, out->count++ ? "," : "");
        native_event(&in, &out->events);
    }
    return true;
}

int hapnd_append_parse(struct slice body, bool batch, size_t max_events,
                       struct hapnd_append *out, struct parse_error *pe)
{
    void *rootp;
    if (parse_json_object(body, &rootp, pe) != 0) {
        if (pe->status == 400) {
            pe->code = "INVALID_REQUEST";
        }
        return ERR_INVALID;
    }
    json_t *root = rootp;
    bool ok = read_top(root, out, pe);
    struct ev_in dflt = {0};
    if (ok && batch) {
        json_t *m = json_object_get(root, "metadata");
        struct slice mraw;
        if (m && !json_is_null(m)) {
            ok = json_is_object(m) && jsonx_member(body, "metadata", &mraw);
            if (!ok) {
                invalid(pe, "metadata", "metadata must be an object");
            }
            dflt.metadata = ok ? mraw : dflt.metadata;
        }
        ok = ok &&
             opt_string(root, "correlationId", HAPND_CORRELATION_BYTES, "correlationId",
                        &dflt.correlation, pe) &&
             opt_string(root, "causationId", HAPND_CORRELATION_BYTES, "causationId",
                        &dflt.causation, pe) &&
             read_batch(root, body, max_events, &dflt, out, pe);
    } else if (ok) {
        ok = read_event(root, body, "", &dflt, pe);
        if (ok) {
            out->count = 1;
            native_event(&dflt, &out->events);
        }
    }
    if (ok) { /* the strings the slices point at outlive root: copy them into text */
        size_t id_len = out->text.len;
        if (out->aggregate_type.ptr) {
            buf_add(&out->text, out->aggregate_type.ptr, out->aggregate_type.len);
        }
        out->aggregate_id = (struct slice){out->text.ptr, id_len};
        if (out->aggregate_type.ptr) {
            out->aggregate_type = (struct slice){out->text.ptr + id_len, out->aggregate_type.len};
        }
    }
    json_decref(root);
    return ok ? 0 : ERR_INVALID;
}

void hapnd_native_body(const struct hapnd_append *a, struct slice type, struct buf *out)
{
    buf_adds(out, "{\"events\":[");
    const char *p = a->events.ptr ? a->events.ptr : "";
    const char *end = p + a->events.len;
    while (p < end) {
        const char *mark = memchr(p, TYPE_MARK, (size_t)(end - p));
        size_t run = mark ? (size_t)(mark - p) : (size_t)(end - p);
        buf_add(out, p, run);
        p += run;
        if (mark) {
            buf_add_json_str(out, type.ptr, type.len);
            p++;
        }
    }
    buf_addc(out, ']');
    if (a->has_expected) {
        buf_printf(out, ",\"expectedVersion\":%llu", (unsigned long long)a->expected);
    }
    buf_addc(out, '}');
}

/* ---- events out ---- */

/* The raw span of member name of the event's "hapnd" metadata object (false when none). */
static bool hapnd_meta(const struct event_rec *ev, const char *name, struct slice *out)
{
    struct slice h;
    return ev->metadata.len && jsonx_kind(ev->metadata) == '{' &&
           jsonx_member(ev->metadata, HAPND_MEMBER, &h) && jsonx_kind(h) == '{' &&
           jsonx_member(h, name, out);
}

bool hapnd_event_type(const struct event_rec *ev, struct slice *out)
{
    struct slice t;
    if (hapnd_meta(ev, "aggregateType", &t) && jsonx_kind(t) == '"' && t.len >= 2) {
        /* written by this dialect: a type of [A-Za-z0-9_.-], so the token has no escapes */
        *out = (struct slice){t.ptr + 1, t.len - 2};
        return true;
    }
    return hapnd_infer_type(ev->stream, out);
}

void hapnd_event_id(const uint8_t id[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "evt_", 4);
    for (int i = 0; i < 16; i++) {
        out[4 + 2 * i] = hex[id[i] >> 4];
        out[5 + 2 * i] = hex[id[i] & 15];
    }
    out[HAPND_ID_TEXT_BYTES] = '\0';
}

void hapnd_time(int64_t us, char out[HAPND_TIME_BYTES])
{
    char full[TIME_RFC3339_LEN];
    time_format(us, full); /* "YYYY-MM-DDTHH:MM:SS.ffffffZ" */
    memcpy(out, full, 23);
    out[23] = 'Z';
    out[24] = '\0';
}

void hapnd_event_json(struct buf *out, const struct event_rec *ev)
{
    char id[HAPND_ID_TEXT_BYTES + 1], when[HAPND_TIME_BYTES];
    hapnd_event_id(ev->id, id);
    hapnd_time(ev->recorded_us, when);
    buf_reserve(out, 200 + ev->stream.len + ev->type.len + ev->data.len + ev->metadata.len);
    buf_adds(out, "{\"eventId\":\"");
    buf_adds(out, id);
    buf_adds(out, "\",\"aggregateId\":");
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    struct slice v;
    if (hapnd_event_type(ev, &v)) {
        buf_adds(out, ",\"aggregateType\":");
        buf_add_json_str(out, v.ptr, v.len);
    }
    buf_adds(out, ",\"eventType\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"data\":");
    buf_add(out, ev->data.len ? ev->data.ptr : "null", ev->data.len ? ev->data.len : 4);
    buf_printf(out, ",\"version\":%llu,\"position\":%llu,\"timestamp\":\"%s\"",
               (unsigned long long)ev->version, (unsigned long long)ev->position, when);
    static const char *const EXTRA[] = {"metadata", "correlationId", "causationId"};
    for (size_t i = 0; i < sizeof EXTRA / sizeof EXTRA[0]; i++) {
        if (hapnd_meta(ev, EXTRA[i], &v)) {
            buf_printf(out, ",\"%s\":", EXTRA[i]);
            buf_add(out, v.ptr, v.len);
        }
    }
    buf_addc(out, '}');
}

/* ---- answers ---- */

/* Appends the eventId of a native event id's JSON string token (a UUID's text). */
static bool add_event_id(struct buf *out, struct slice tok)
{
    uint8_t u[16];
    char id[HAPND_ID_TEXT_BYTES + 1];
    if (tok.len != 38 || uuid_parse(tok.ptr + 1, 36, u) != 0) {
        return false;
    }
    hapnd_event_id(u, id);
    buf_addc(out, '"');
    buf_adds(out, id);
    buf_addc(out, '"');
    return true;
}

/* Appends ",\"state\":..." or ",\"stateError\":{...}" from the native answer's members. */
static void add_state(struct buf *out, struct slice native)
{
    struct slice st, se, code, msg;
    if (jsonx_member(native, "stateError", &se) && jsonx_kind(se) == '{') {
        if (jsonx_member(se, "code", &code) && code.len == 12 &&
            !memcmp(code.ptr, "\"no_reducer\"", 12)) {
            return; /* no reducer bound: no state member */
        }
        buf_adds(out, ",\"stateError\":{\"errorCode\":\"REDUCER_FAILED\",\"error\":");
        if (jsonx_member(se, "message", &msg) && jsonx_kind(msg) == '"') {
            buf_add(out, msg.ptr, msg.len);
        } else {
            buf_adds(out, "\"the reducer failed\"");
        }
        buf_addc(out, '}');
        return;
    }
    if (jsonx_member(native, "state", &st)) {
        buf_adds(out, ",\"state\":");
        buf_add(out, st.ptr, st.len);
    }
}

int hapnd_append_answer(struct slice native, struct slice type, bool batch, struct buf *out)
{
    struct slice stream, events, recorded, item, id, ver;
    if (!jsonx_member(native, "stream", &stream) || !jsonx_member(native, "events", &events) ||
        !jsonx_member(native, "recorded", &recorded) || jsonx_kind(recorded) != '"') {
        return ERR_INVALID;
    }
    int64_t us = 0;
    char when[HAPND_TIME_BYTES];
    if (time_parse(recorded.ptr + 1, recorded.len - 2, &us) != 0) {
        return ERR_INVALID;
    }
    hapnd_time(us, when);
    size_t pos = 0;
    uint64_t first = 0, last = 0;
    struct buf ids;
    buf_init(&ids);
    for (size_t i = 0; jsonx_next_item(events, &pos, &item); i++) {
        uint64_t v;
        if (!jsonx_member(item, "id", &id) || !jsonx_member(item, "version", &ver) ||
            !jsonx_u64(ver, &v) || (i && !batch)) {
            buf_fini(&ids);
            return ERR_INVALID;
        }
        first = i ? first : v;
        last = v;
        buf_adds(&ids, i ? "," : "");
        if (!add_event_id(&ids, id)) {
            buf_fini(&ids);
            return ERR_INVALID;
        }
    }
    if (batch) {
        buf_adds(out, "{\"aggregateId\":");
    } else {
        buf_adds(out, "{\"eventId\":");
        buf_add(out, ids.ptr, ids.len);
        buf_adds(out, ",\"aggregateId\":");
    }
    buf_add(out, stream.ptr, stream.len);
    buf_adds(out, ",\"aggregateType\":");
    buf_add_json_str(out, type.ptr, type.len);
    if (batch) {
        buf_printf(out, ",\"startVersion\":%llu,\"endVersion\":%llu,\"eventIds\":[",
                   (unsigned long long)first, (unsigned long long)last);
        buf_add(out, ids.ptr, ids.len);
        buf_addc(out, ']');
    } else {
        buf_printf(out, ",\"version\":%llu", (unsigned long long)last);
    }
    buf_printf(out, ",\"timestamp\":\"%s\"", when);
    add_state(out, native);
    buf_addc(out, '}');
    buf_fini(&ids);
    return 0;
}
