/* Hapnd dialect translators (translate.h). */
#include "dialect/hapnd/translate.h"

#include <stdio.h>
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "json/validate.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

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
    buf_init(&a->events);
}

void hapnd_append_fini(struct hapnd_append *a)
{
    buf_fini(&a->events);
}

/* Where the aggregate type goes in a.events (a byte JSON text never holds unescaped). */
#define TYPE_MARK '\x01'

static int invalid(struct parse_error *pe, const char *field, const char *msg)
{
    return parse_fail(pe, 400, "VALIDATION_ERROR", field, "%s", msg);
}

/* The members of an object this dialect reads, by decoded name (unknown ones ignored). */
enum { M_ID, M_TYPE, M_EVENT_TYPE, M_DATA, M_META, M_CORR, M_CAUSE, M_EXPECTED, M_EVENTS, M_N };
static const char *const MEMBERS[M_N] = {"aggregateId", "aggregateType", "eventType", "data",
                                         "metadata", "correlationId", "causationId",
                                         "expectedVersion", "events"};

/* Finds the members of obj (a valid JSON object span) into vals (ptr NULL: absent; a null
 * value counts as absent). False after invalid() when one is given twice. */
static bool members(struct slice obj, const char *prefix, struct slice vals[M_N],
                    struct parse_error *pe)
{
    struct buf name;
    buf_init(&name);
    memset(vals, 0, M_N * sizeof(*vals));
    size_t pos = 0;
    struct slice k, v;
    bool ok = true;
    while (ok && jsonx_next_member(obj, &pos, &k, &v)) {
        if (jsonx_string(k, &name) != 0) {
            continue; /* a name no member of ours has */
        }
        for (int i = 0; i < M_N; i++) {
            if (name.len == strlen(MEMBERS[i]) && !memcmp(name.ptr, MEMBERS[i], name.len)) {
                if (vals[i].ptr) {
                    char field[64];
                    snprintf(field, sizeof field, "%s%s", prefix, MEMBERS[i]);
                    ok = invalid(pe, field, "a member is given twice") == 0;
                }
                vals[i] = jsonx_kind(v) == 'n' ? (struct slice){NULL, 0} : v;
            }
        }
    }
    buf_fini(&name);
    return ok;
}

/* A string member (v: its span, ptr NULL when absent) decoded into out (reset), checked with
 * engine_name_ok up to max bytes. False after invalid() when it is not such a string. */
static bool name_member(struct slice v, size_t max, const char *field, const char *what,
                        struct buf *out, struct parse_error *pe)
{
    buf_reset(out);
    if (!v.ptr || jsonx_kind(v) != '"' || jsonx_string(v, out) != 0 ||
        !engine_name_ok(out->ptr ? out->ptr : "", out->len, max)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s is required: a string of 1 to %zu bytes without control "
                 "characters", what, max);
        invalid(pe, field, msg);
        return false;
    }
    return true;
}

/* What one event of the request holds: raw spans, the request's as defaults. */
struct ev_in {
    struct slice event_type;     /* the raw string token */
    struct slice data;
    struct slice metadata;       /* ptr NULL: none */
    struct slice correlation, causation; /* raw string tokens, ptr NULL: none */
};

/* Appends the native event of in to out, the aggregate type left as TYPE_MARK. */
static void native_event(const struct ev_in *in, struct buf *out)
{
    buf_adds(out, "{\"type\":");
    jsonx_minify(in->event_type, out);
    buf_adds(out, ",\"data\":");
    jsonx_minify(in->data, out);
    buf_adds(out, ",\"metadata\":{\"" HAPND_MEMBER "\":{\"aggregateType\":");
    buf_addc(out, TYPE_MARK);
    if (in->correlation.ptr) {
        buf_adds(out, ",\"correlationId\":");
        jsonx_minify(in->correlation, out);
    }
    if (in->causation.ptr) {
        buf_adds(out, ",\"causationId\":");
        jsonx_minify(in->causation, out);
    }
    if (in->metadata.ptr) {
        buf_adds(out, ",\"metadata\":");
        jsonx_minify(in->metadata, out);
    }
    buf_adds(out, "}}}");
}

/* Checks the optional members shared by an event and a batch's top into in (over what it
 * holds). False after invalid(). */
static bool read_extras(const struct slice vals[M_N], const char *prefix, struct ev_in *in,
                        struct parse_error *pe)
{
    char field[64];
    struct buf text;
    buf_init(&text);
    bool ok = true;
    if (vals[M_META].ptr && jsonx_kind(vals[M_META]) != '{') {
        snprintf(field, sizeof field, "%smetadata", prefix);
        ok = invalid(pe, field, "metadata must be an object") == 0;
    }
    in->metadata = vals[M_META].ptr ? vals[M_META] : in->metadata;
    static const int IDS[] = {M_CORR, M_CAUSE};
    for (size_t i = 0; ok && i < 2; i++) {
        struct slice v = vals[IDS[i]];
        if (v.ptr && (jsonx_kind(v) != '"' || jsonx_string(v, &text) != 0 || text.len == 0 ||
                      text.len > HAPND_CORRELATION_BYTES)) {
            snprintf(field, sizeof field, "%s%s", prefix, MEMBERS[IDS[i]]);
            ok = invalid(pe, field, "correlationId and causationId are strings of 1 to 1024 "
                         "bytes") == 0;
        }
    }
    in->correlation = vals[M_CORR].ptr ? vals[M_CORR] : in->correlation;
    in->causation = vals[M_CAUSE].ptr ? vals[M_CAUSE] : in->causation;
    buf_fini(&text);
    return ok;
}

/* One event object ev (its members in vals) over the defaults in *in. */
static bool read_event(const struct slice vals[M_N], const char *prefix, struct ev_in *in,
                       struct parse_error *pe)
{
    char field[64];
    struct buf text;
    buf_init(&text);
    snprintf(field, sizeof field, "%seventType", prefix);
    bool ok = name_member(vals[M_EVENT_TYPE], LIMIT_TYPE_BYTES, field, "eventType", &text, pe);
    buf_fini(&text);
    in->event_type = vals[M_EVENT_TYPE];
    snprintf(field, sizeof field, "%sdata", prefix);
    if (ok && !vals[M_DATA].ptr) {
        ok = invalid(pe, field, "data is required") == 0;
    }
    in->data = vals[M_DATA];
    return ok && read_extras(vals, prefix, in, pe);
}

static bool read_top(const struct slice vals[M_N], struct hapnd_append *out,
                     struct parse_error *pe)
{
    struct buf text;
    buf_init(&text);
    bool ok = name_member(vals[M_ID], LIMIT_STREAM_NAME_BYTES, "aggregateId", "aggregateId",
                          &text, pe);
    if (ok && (!engine_stream_writable(text.ptr, text.len))) {
        ok = invalid(pe, "aggregateId", "aggregateId may not start with '$' or be \".\" or "
                     "\"..\"") == 0;
    }
    if (ok) {
        memcpy(out->id_text, text.ptr, text.len);
        out->aggregate_id = (struct slice){out->id_text, text.len};
    }
    if (ok && vals[M_TYPE].ptr) {
        buf_reset(&text);
        ok = jsonx_kind(vals[M_TYPE]) == '"' && jsonx_string(vals[M_TYPE], &text) == 0 &&
             hapnd_type_ok((struct slice){text.ptr, text.len});
        if (ok) {
            memcpy(out->type_text, text.ptr, text.len);
            out->aggregate_type = (struct slice){out->type_text, text.len};
        } else {
            invalid(pe, "aggregateType", "aggregateType is 1 to 48 letters, digits, '_', '-' "
                    "and '.'");
        }
    }
    buf_fini(&text);
    if (ok && vals[M_EXPECTED].ptr) {
        ok = jsonx_u64(vals[M_EXPECTED], &out->expected);
        if (!ok) {
            invalid(pe, "expectedVersion", "expectedVersion must be a whole number from 0");
        }
        out->has_expected = ok;
    }
    return ok;
}

static bool read_batch(struct slice arr, size_t max_events, const struct ev_in *dflt,
                       struct hapnd_append *out, struct parse_error *pe)
{
    if (!arr.ptr || jsonx_kind(arr) != '[') {
        return invalid(pe, "events", "events is required: a non-empty array") == 0;
    }
    size_t pos = 0;
    struct slice item, vals[M_N];
    for (size_t i = 0; jsonx_next_item(arr, &pos, &item); i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "events[%zu].", i);
        if (i == max_events) {
            parse_fail(pe, 400, "VALIDATION_ERROR", "events", "at most %zu events in one batch",
                       max_events);
            return false;
        }
        if (jsonx_kind(item) != '{') {
            snprintf(prefix, sizeof prefix, "events[%zu]", i);
            return invalid(pe, prefix, "each event is an object") == 0;
        }
        struct ev_in in = *dflt;
        if (!members(item, prefix, vals, pe) || !read_event(vals, prefix, &in, pe)) {
            return false;
        }
        buf_adds(&out->events, out->count++ ? "," : "");
        native_event(&in, &out->events);
    }
    return out->count ? true : invalid(pe, "events", "events is required: a non-empty array") == 0;
}

int hapnd_append_parse(struct slice body, bool batch, size_t max_events,
                       struct hapnd_append *out, struct parse_error *pe)
{
    struct jsonv_error je;
    if (jsonv_validate(body.ptr, body.len, LIMIT_JSON_DEPTH, &je) != 0) {
        return parse_fail(pe, 400, "INVALID_REQUEST", "", "the body is not JSON: %s at byte %zu",
                          je.msg, je.offset);
    }
    if (jsonx_kind(body) != '{') {
        return parse_fail(pe, 400, "INVALID_REQUEST", "", "the body must be a JSON object");
    }
    struct slice vals[M_N];
    struct ev_in in = {0};
    bool ok = members(body, "", vals, pe) && read_top(vals, out, pe);
    if (ok && batch) {
        ok = read_extras(vals, "", &in, pe) && read_batch(vals[M_EVENTS], max_events, &in, out, pe);
    } else if (ok) {
        ok = read_event(vals, "", &in, pe);
        if (ok) {
            out->count = 1;
            native_event(&in, &out->events);
        }
    }
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

/* ---- projection changes ---- */

void hapnd_change_json(struct buf *out, const char *type, struct slice projection_id,
                       uint64_t sequence, struct slice key, struct slice state,
                       const struct event_rec *ev)
{
    buf_addc(out, '{');
    if (type) {
        buf_adds(out, "\"type\":");
        buf_add_json_str(out, type, strlen(type));
        buf_addc(out, ',');
    }
    buf_printf(out, "\"sequence\":%llu,\"projectionId\":", (unsigned long long)sequence);
    buf_add_json_str(out, projection_id.ptr, projection_id.len);
    buf_adds(out, ",\"stateKey\":");
    buf_add_json_str(out, key.ptr, key.len);
    if (ev) {
        char id[HAPND_ID_TEXT_BYTES + 1], when[HAPND_TIME_BYTES];
        struct slice t;
        buf_adds(out, ",\"aggregateId\":");
        buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
        if (hapnd_event_type(ev, &t)) {
            buf_adds(out, ",\"aggregateType\":");
            buf_add_json_str(out, t.ptr, t.len);
        }
        hapnd_event_id(ev->id, id);
        hapnd_time(ev->recorded_us, when);
        buf_printf(out, ",\"version\":%llu,\"triggeredBy\":\"%s\",\"timestamp\":\"%s\"",
                   (unsigned long long)ev->version, id, when);
    }
    buf_adds(out, ",\"state\":");
    buf_add(out, state.len ? state.ptr : "null", state.len ? state.len : 4);
    buf_addc(out, '}');
}
