/* EvidentSource translators (translate.h). Structure is read with the span scanner
 * (json/jsonx) so that every attribute's bytes pass through exactly as the client sent them. */
#include "dialect/evidentsource/translate.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/limits.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* ---- errors ---- */

/* EvidentSource's code for a native error. */
static const char *es_code(const struct gate_error *e)
{
    static const struct {
        const char *native, *es;
    } BY_CODE[] = {
        {"database_exists", "ALREADY_EXISTS"},
        {"component_exists", "ALREADY_EXISTS"},
        {"duplicate_event_id", "ALREADY_EXISTS"},
        {"condition_failed", "FAILED_PRECONDITION"},
        {"wrong_expected_version", "FAILED_PRECONDITION"},
        {"command_conflict", "FAILED_PRECONDITION"},
        {"too_many_databases", "RESOURCE_EXHAUSTED"},
    };
    for (size_t i = 0; i < sizeof BY_CODE / sizeof BY_CODE[0]; i++) {
        if (!strcmp(e->code, BY_CODE[i].native)) {
            return BY_CODE[i].es;
        }
    }
    switch (e->kind) {
    case GK_UNAUTHORIZED: return "UNAUTHENTICATED";
    case GK_FORBIDDEN: return "PERMISSION_DENIED";
    case GK_NOT_FOUND: case GK_GONE: return "NOT_FOUND";
    case GK_METHOD: return "UNIMPLEMENTED";
    case GK_CONFLICT: case GK_UNPROCESSABLE: return "FAILED_PRECONDITION";
    case GK_RATE_LIMITED: case GK_STORAGE_FULL: return "RESOURCE_EXHAUSTED";
    case GK_UNAVAILABLE: return "UNAVAILABLE";
    default: return e->kind >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
    }
}

unsigned es_error(const struct gate_error *e, struct buf *out)
{
    const char *code = es_code(e);
    buf_adds(out, "{\"error\":{\"code\":");
    buf_add_json_str(out, code, strlen(code));
    buf_adds(out, ",\"message\":");
    buf_add_json_str(out, e->message, strlen(e->message));
    buf_adds(out, ",\"details\":{\"reason\":");
    buf_add_json_str(out, e->code, strlen(e->code));
    if (e->field) {
        buf_adds(out, ",\"field\":");
        buf_add_json_str(out, e->field, strlen(e->field));
    }
    if (e->stream.ptr) {
        buf_adds(out, ",\"stream\":");
        buf_add_json_str(out, e->stream.ptr, e->stream.len);
    }
    if (e->has_last_position) {
        buf_printf(out, ",\"latest_matching_revision\":%llu",
                   (unsigned long long)e->last_position);
    }
    if (e->details && *e->details) {
        buf_addc(out, ',');
        buf_adds(out, e->details);
    }
    buf_adds(out, "}}}");
    return e->kind;
}

/* ---- events in ---- */

void es_event_id(struct slice source, struct slice id, uint8_t out[16])
{
    static const char tag[] = "cloudevents";
    struct hash_part parts[] = {{tag, sizeof tag}, {source.ptr, source.len}, {"", 1},
                                {id.ptr, id.len}};
    uint8_t h[HASH_SHA256_LEN];
    hash_sha256(parts, 4, h);
    memcpy(out, h, 16);
    out[6] = (uint8_t)(0x80 | (out[6] & 0x0f)); /* version 8: custom (RFC 9562) */
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3f)); /* the RFC variant */
}

/* The attributes of one CloudEvent, as spans of its text. */
struct ce {
    struct slice specversion, id, source, type, subject, time, datacontenttype, dataschema;
    struct slice data, data_base64, stream;
};

static int bad(struct parse_error *err, size_t i, const char *attr, const char *msg)
{
    char field[64];
    snprintf(field, sizeof field, "events[%zu]%s%s", i, attr[0] ? "." : "", attr);
    return parse_fail(err, 400, "invalid_event", field, "%s", msg);
}

/* The decoded text of a string attribute, 1..max bytes, into out (reset first). */
static bool string_attr(struct slice v, size_t max, struct buf *out)
{
    buf_reset(out);
    return v.ptr && jsonx_kind(v) == '"' && jsonx_string(v, out) == 0 && out->len > 0 &&
           out->len <= max && !memchr(out->ptr, '\0', out->len);
}

static bool ext_name_ok(struct slice key)
{
    /* key is the raw member name, quotes included: [a-z0-9]{1,20} needs no escapes */
    if (key.len < 3 || key.len - 2 > ES_EXT_NAME_BYTES) {
        return false;
    }
    for (size_t i = 1; i + 1 < key.len; i++) {
        char c = key.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

/* Reads the members of ce into *a; extension attributes are checked here. */
static int read_attrs(struct slice ce, size_t i, struct ce *a, struct parse_error *err)
{
    static const struct {
        const char *name;
        size_t off;
    } KNOWN[] = {
        {"\"specversion\"", offsetof(struct ce, specversion)},
        {"\"id\"", offsetof(struct ce, id)},
        {"\"source\"", offsetof(struct ce, source)},
        {"\"type\"", offsetof(struct ce, type)},
        {"\"subject\"", offsetof(struct ce, subject)},
        {"\"time\"", offsetof(struct ce, time)},
        {"\"datacontenttype\"", offsetof(struct ce, datacontenttype)},
        {"\"dataschema\"", offsetof(struct ce, dataschema)},
        {"\"data\"", offsetof(struct ce, data)},
        {"\"data_base64\"", offsetof(struct ce, data_base64)},
        {"\"stream\"", offsetof(struct ce, stream)},
    };
    memset(a, 0, sizeof(*a));
    if (jsonx_kind(ce) != '{') {
        return bad(err, i, "", "an event is a CloudEvents 1.0 object");
    }
    size_t pos = 0;
    struct slice k, v;
    while (jsonx_next_member(ce, &pos, &k, &v)) {
        size_t j = 0;
        while (j < sizeof KNOWN / sizeof KNOWN[0] &&
               !(k.len == strlen(KNOWN[j].name) && !memcmp(k.ptr, KNOWN[j].name, k.len))) {
            j++;
        }
        if (j < sizeof KNOWN / sizeof KNOWN[0]) {
            struct slice *slot = (struct slice *)(void *)((char *)a + KNOWN[j].off);
            if (slot->ptr) {
                return bad(err, i, KNOWN[j].name + 1, "an attribute appears twice");
            }
            *slot = v;
            continue;
        }
        char kind = jsonx_kind(v);
        if (!ext_name_ok(k)) {
            return bad(err, i, "", "extension attribute names are 1 to 20 lower-case letters "
                       "or digits");
        }
        if (kind == '{' || kind == '[' || kind == 'n') {
            return bad(err, i, "", "an extension attribute is a string, number or boolean");
        }
    }
    return 0;
}

/* Checks the attributes' values; decodes source (or stream) into stream. */
static int check_attrs(const struct ce *a, size_t i, struct buf *stream, struct buf *tmp,
                       struct parse_error *err)
{
    if (!a->specversion.ptr || !string_attr(a->specversion, 16, tmp) ||
        strcmp(tmp->ptr, "1.0") != 0) {
        return bad(err, i, "specversion", "specversion is required and must be \"1.0\"");
    }
    if (!string_attr(a->id, ES_ID_BYTES, tmp)) {
        return bad(err, i, "id", "id is required: a non-empty string");
    }
    struct slice src = a->source.ptr ? a->source : a->stream;
    if (!string_attr(src, LIMIT_STREAM_NAME_BYTES, stream) ||
        !engine_stream_writable(stream->ptr, stream->len)) {
        return bad(err, i, "source", "source is required: a non-empty string of at most 256 "
                   "bytes, without control characters, not starting with $");
    }
    if (!string_attr(a->type, LIMIT_TYPE_BYTES, tmp) ||
        !engine_name_ok(tmp->ptr, tmp->len, LIMIT_TYPE_BYTES)) {
        return bad(err, i, "type", "type is required: a non-empty string of at most 256 bytes");
    }
    if (a->subject.ptr && (!string_attr(a->subject, LIMIT_SUBJECT_BYTES, tmp) ||
                           !engine_name_ok(tmp->ptr, tmp->len, LIMIT_SUBJECT_BYTES))) {
        return bad(err, i, "subject", "subject is a non-empty string of at most 256 bytes");
    }
    const struct slice *strs[] = {&a->datacontenttype, &a->dataschema};
    const char *names[] = {"datacontenttype", "dataschema"};
    for (int k = 0; k < 2; k++) {
        if (strs[k]->ptr && !string_attr(*strs[k], ES_ATTR_BYTES, tmp)) {
            return bad(err, i, names[k], "a non-empty string");
        }
    }
    int64_t us;
    if (a->time.ptr && (!string_attr(a->time, 64, tmp) || time_parse(tmp->ptr, tmp->len, &us))) {
        return bad(err, i, "time", "time is an RFC 3339 timestamp");
    }
    if (a->data.ptr && a->data_base64.ptr) {
        return bad(err, i, "data_base64", "data and data_base64 may not both be given");
    }
    if (a->data_base64.ptr && jsonx_kind(a->data_base64) != '"') {
        return bad(err, i, "data_base64", "data_base64 is a base64 string");
    }
    return 0;
}

/* Appends the "cloudevents" object: every member of ce but data, as sent (minified). */
static void add_kept(struct slice ce, struct buf *out)
{
    buf_addc(out, '{');
    size_t pos = 0, n = 0;
    struct slice k, v;
    while (jsonx_next_member(ce, &pos, &k, &v)) {
        if (k.len == 6 && !memcmp(k.ptr, "\"data\"", 6)) {
            continue;
        }
        buf_adds(out, n++ ? "," : "");
        buf_add(out, k.ptr, k.len);
        buf_addc(out, ':');
        jsonx_minify(v, out);
    }
    buf_addc(out, '}');
}

int es_ce_to_native(struct slice ce, size_t index, struct buf *native, struct buf *stream,
                    struct parse_error *err)
{
    struct ce a;
    struct buf tmp, src, id;
    buf_init(&tmp);
    buf_init(&src);
    buf_init(&id);
    int rc = read_attrs(ce, index, &a, err);
    if (!rc) rc = check_attrs(&a, index, stream, &tmp, err);
    if (!rc) {
        string_attr(a.id, ES_ID_BYTES, &id);
        uint8_t u[16];
        char text[UUID_TEXT_LEN + 1];
        es_event_id((struct slice){stream->ptr, stream->len}, (struct slice){id.ptr, id.len}, u);
        uuid_format(u, text);
        buf_printf(native, "{\"id\":\"%s\",\"type\":", text);
        buf_add(native, a.type.ptr, a.type.len);
        buf_adds(native, ",\"data\":");
        if (a.data.ptr) {
            jsonx_minify(a.data, native);
        } else {
            buf_adds(native, "null");
        }
        if (a.subject.ptr) {
            buf_adds(native, ",\"subject\":");
            buf_add(native, a.subject.ptr, a.subject.len);
        }
        if (a.time.ptr) {
            buf_adds(native, ",\"time\":");
            buf_add(native, a.time.ptr, a.time.len);
        }
        buf_adds(native, ",\"metadata\":{\"" ES_CE_MEMBER "\":");
        add_kept(ce, native);
        buf_adds(native, "}}");
    }
    buf_fini(&tmp);
    buf_fini(&src);
    buf_fini(&id);
    return rc;
}

/* ---- events out ---- */

/* The kept attributes of ev, or ptr NULL when it was not appended as a CloudEvent. */
static struct slice kept_attrs(const struct event_rec *ev)
{
    struct slice v = {NULL, 0};
    if (ev->metadata.len && jsonx_member(ev->metadata, ES_CE_MEMBER, &v) &&
        jsonx_kind(v) == '{') {
        return v;
    }
    return (struct slice){NULL, 0};
}

/* Attributes for an event appended through another API surface. */
static void synthesize(struct buf *out, const struct event_rec *ev)
{
    char id[UUID_TEXT_LEN + 1], when[TIME_RFC3339_LEN];
    uuid_format(ev->id, id);
    time_format(ev->time_us, when);
    buf_printf(out, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":", id);
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    buf_adds(out, ",\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    if (ev->subject.len) {
        buf_adds(out, ",\"subject\":");
        buf_add_json_str(out, ev->subject.ptr, ev->subject.len);
    }
    buf_printf(out, ",\"time\":\"%s\",\"datacontenttype\":\"application/json\"", when);
}

void es_event(struct buf *out, const struct event_rec *ev)
{
    struct slice kept = kept_attrs(ev);
    bool base64 = false;
    if (kept.ptr) {
        struct slice v;
        base64 = jsonx_member(kept, "data_base64", &v);
        buf_add(out, kept.ptr, kept.len - 1); /* without its '}' */
    } else {
        synthesize(out, ev);
    }
    if (!base64) {
        buf_adds(out, ",\"data\":");
        buf_add(out, ev->data.len ? ev->data.ptr : "null", ev->data.len ? ev->data.len : 4);
    }
    char when[TIME_RFC3339_LEN];
    time_format(ev->recorded_us, when);
    buf_printf(out, ",\"revision\":%llu,\"recordedtime\":\"%s\"}",
               (unsigned long long)ev->position, when);
}

/* ---- selectors ---- */

static int sel_fail(struct parse_error *err, const char *field, const char *msg)
{
    return parse_fail(err, 400, "invalid_request", field, "%s", msg);
}

/* One attribute of a flat selector as a native equals selector. */
static void equals(struct buf *out, const char *attr, struct slice v, bool *first)
{
    buf_adds(out, *first ? "" : ",");
    *first = false;
    buf_printf(out, "{\"type\":\"equals\",\"attr\":{\"%s\":", attr);
    buf_add(out, v.ptr, v.len);
    buf_adds(out, "}}");
}

/* A flat selector {"stream"|"source","event_type","subject"}: an "and" of its attributes. */
static int flat(struct slice sel, const char *field, struct buf *out, struct parse_error *err)
{
    static const char *const NAMES[] = {"stream", "source", "event_type", "subject"};
    struct slice m[4];
    struct buf badname;
    buf_init(&badname);
    bool dup = false;
    int rc = jsonx_members(sel, NAMES, 4, m, &badname, &dup);
    buf_fini(&badname);
    if (rc) {
        return sel_fail(err, field, "a selector has stream (or source), event_type and subject");
    }
    if (m[0].ptr && m[1].ptr) {
        return sel_fail(err, field, "stream and source name the same attribute: give one");
    }
    for (int i = 0; i < 4; i++) {
        char k = m[i].ptr ? jsonx_kind(m[i]) : '"';
        if (k != '"' && !(i == 3 && k == 'n')) {
            return sel_fail(err, field, "selector attributes are strings (subject: or null)");
        }
    }
    bool first = true;
    buf_adds(out, "{\"type\":\"and\",\"selectors\":[");
    if (m[0].ptr || m[1].ptr) {
        equals(out, "stream", m[0].ptr ? m[0] : m[1], &first);
    }
    if (m[2].ptr) {
        equals(out, "event_type", m[2], &first);
    }
    if (m[3].ptr) {
        equals(out, "subject", m[3], &first);
    }
    buf_adds(out, "]}");
    return first ? sel_fail(err, field, "a selector names at least one attribute") : 0;
}

/* Copies a nested selector, renaming the attribute "source" to "stream". */
static int nested(struct slice sel, const char *field, int depth, struct buf *out,
                  struct parse_error *err)
{
    struct slice type, v;
    if (depth > 8 || !jsonx_member(sel, "type", &type) || jsonx_kind(type) != '"') {
        return sel_fail(err, field, "a selector has a type (and, or, equals, starts_with), "
                        "nested at most 8 deep");
    }
    if (jsonx_member(sel, "selectors", &v)) {
        if (jsonx_kind(v) != '[') {
            return sel_fail(err, field, "selectors is an array");
        }
        buf_adds(out, "{\"type\":");
        buf_add(out, type.ptr, type.len);
        buf_adds(out, ",\"selectors\":[");
        size_t pos = 0, n = 0;
        struct slice it;
        while (jsonx_next_item(v, &pos, &it)) {
            buf_adds(out, n++ ? "," : "");
            int rc = jsonx_kind(it) == '{' ? nested(it, field, depth + 1, out, err)
                                           : sel_fail(err, field, "a selector is an object");
            if (rc) {
                return rc;
            }
        }
        buf_adds(out, "]}");
        return 0;
    }
    struct slice attr, k, val;
    size_t pos = 0;
    if (!jsonx_member(sel, "attr", &attr) || jsonx_kind(attr) != '{' ||
        !jsonx_next_member(attr, &pos, &k, &val)) {
        return sel_fail(err, field, "an equals or starts_with selector has attr: {name: value}");
    }
    bool source = k.len == 8 && !memcmp(k.ptr, "\"source\"", 8);
    buf_adds(out, "{\"type\":");
    buf_add(out, type.ptr, type.len);
    buf_adds(out, ",\"attr\":{");
    if (source) {
        buf_adds(out, "\"stream\"");
    } else {
        buf_add(out, k.ptr, k.len);
    }
    buf_addc(out, ':');
    buf_add(out, val.ptr, val.len);
    buf_adds(out, "}}");
    return 0;
}

int es_selector(struct slice sel, const char *field, struct buf *out, struct parse_error *err)
{
    struct slice t;
    if (jsonx_kind(sel) != '{') {
        return sel_fail(err, field, "a selector is an object");
    }
    return jsonx_member(sel, "type", &t) ? nested(sel, field, 0, out, err)
                                         : flat(sel, field, out, err);
}
