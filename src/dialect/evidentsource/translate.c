/* EvidentSource translators (translate.h). Structure is read with the span scanner
 * (json/jsonx) so that every attribute's bytes pass through exactly as the client sent them. */
#include "dialect/evidentsource/translate.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "json/validate.h"
#include "ops/parse.h"
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

/* Appends the field, in the request's words: the native "conditions[i]" of an append are the
 * request's "constraints[i]". */
static void add_field(struct buf *out, const char *f)
{
    static const char native[] = "conditions[";
    buf_adds(out, ",\"field\":");
    if (!strncmp(f, native, sizeof native - 1)) {
        struct buf t;
        buf_init(&t);
        buf_adds(&t, "constraints[");
        buf_adds(&t, f + sizeof native - 1);
        buf_add_json_str(out, t.ptr, t.len);
        buf_fini(&t);
    } else {
        buf_add_json_str(out, f, strlen(f));
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
        add_field(out, e->field);
    }
    if (e->stream.ptr) {
        buf_adds(out, ",\"stream\":");
        buf_add_json_str(out, e->stream.ptr, e->stream.len);
    }
    if (e->has_last_position) {
        buf_printf(out, ",\"latest_matching_revision\":%llu",
                   (unsigned long long)e->last_position);
    }
    if (e->nconflicts) {
        buf_adds(out, ",\"conflicting_revisions\":[");
        for (size_t i = 0; i < e->nconflicts; i++) {
            buf_printf(out, "%s%llu", i ? "," : "", (unsigned long long)e->conflicts[i]);
        }
        buf_addc(out, ']');
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
    char field[80];
    snprintf(field, sizeof field, "events[%zu]%s%.40s", i, attr[0] ? "." : "", attr);
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

/* Checks an extension attribute (raw name k, value v). */
static int check_ext(struct slice k, struct slice v, size_t i, struct parse_error *err)
{
    char name[ES_EXT_NAME_BYTES + 1];
    snprintf(name, sizeof name, "%.*s", (int)(k.len > 2 ? k.len - 2 : 0), k.ptr + 1);
    if (!ext_name_ok(k)) {
        return bad(err, i, name, "extension attribute names are 1 to 20 lower-case letters "
                   "or digits");
    }
    char kind = jsonx_kind(v);
    if (kind == '{' || kind == '[' || kind == 'n') {
        return bad(err, i, name, "an extension attribute is a string, number or boolean");
    }
    return 0;
}

/* Reads the members of ce into *a; extension attributes are checked here. */
static int read_attrs(struct slice ce, size_t i, struct ce *a, struct parse_error *err)
{
    static const struct {
        const char *name;
        size_t off;
    } KNOWN[] = {
        {"specversion", offsetof(struct ce, specversion)},
        {"id", offsetof(struct ce, id)},
        {"source", offsetof(struct ce, source)},
        {"type", offsetof(struct ce, type)},
        {"subject", offsetof(struct ce, subject)},
        {"time", offsetof(struct ce, time)},
        {"datacontenttype", offsetof(struct ce, datacontenttype)},
        {"dataschema", offsetof(struct ce, dataschema)},
        {"data", offsetof(struct ce, data)},
        {"data_base64", offsetof(struct ce, data_base64)},
        {"stream", offsetof(struct ce, stream)},
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
               !(k.len == strlen(KNOWN[j].name) + 2 && !memcmp(k.ptr + 1, KNOWN[j].name,
                                                               k.len - 2))) {
            j++;
        }
        if (j == sizeof KNOWN / sizeof KNOWN[0]) {
            int rc = check_ext(k, v, i, err);
            if (rc) {
                return rc;
            }
            continue;
        }
        struct slice *slot = (struct slice *)(void *)((char *)a + KNOWN[j].off);
        if (slot->ptr) {
            return bad(err, i, KNOWN[j].name, "an attribute appears twice");
        }
        *slot = v;
    }
    return 0;
}

/* True when the decoded text is base64 (RFC 4648, padded). */
static bool base64_ok(const struct buf *t)
{
    size_t pad = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->ptr[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '+' || c == '/';
        if (c == '=' && i + 2 >= t->len) {
            pad++;
        } else if (!alpha || pad) {
            return false;
        }
    }
    return t->len % 4 == 0;
}

/* Checks the optional attributes' values. */
static int check_optional(const struct ce *a, size_t i, struct buf *tmp,
                          struct parse_error *err)
{
    if (a->subject.ptr && (!string_attr(a->subject, LIMIT_SUBJECT_BYTES, tmp) ||
                           !engine_name_ok(tmp->ptr, tmp->len, LIMIT_SUBJECT_BYTES))) {
        return bad(err, i, "subject", "subject is a non-empty string of at most 256 bytes");
    }
    const struct slice *strs[] = {&a->datacontenttype, &a->dataschema};
    const char *names[] = {"datacontenttype", "dataschema"};
    for (int k = 0; k < 2; k++) {
        if (strs[k]->ptr && !string_attr(*strs[k], ES_ATTR_BYTES, tmp)) {
            return bad(err, i, names[k], "a non-empty string of at most 4096 bytes");
        }
    }
    int64_t us;
    if (a->time.ptr && (!string_attr(a->time, ES_TIME_BYTES, tmp) ||
                        time_parse(tmp->ptr, tmp->len, &us))) {
        return bad(err, i, "time", "time is an RFC 3339 timestamp");
    }
    if (a->data.ptr && a->data_base64.ptr) {
        return bad(err, i, "data_base64", "data and data_base64 may not both be given");
    }
    if (a->data_base64.ptr && (jsonx_kind(a->data_base64) != '"' ||
                               jsonx_string(a->data_base64, tmp) != 0 || !base64_ok(tmp))) {
        return bad(err, i, "data_base64", "data_base64 is a base64 string");
    }
    return 0;
}

/* Checks the attributes' values; decodes source (or stream) into stream and id into id. */
static int check_attrs(const struct ce *a, size_t i, struct buf *stream, struct buf *id,
                       struct buf *tmp, struct parse_error *err)
{
    if (!a->specversion.ptr || !string_attr(a->specversion, 16, tmp) ||
        strcmp(tmp->ptr, "1.0") != 0) {
        return bad(err, i, "specversion", "specversion is required and must be \"1.0\"");
    }
    if (!string_attr(a->id, ES_ID_BYTES, id)) {
        return bad(err, i, "id", "id is required: a non-empty string of at most 1024 bytes");
    }
    struct slice src = a->source;
    if (!string_attr(src, LIMIT_STREAM_NAME_BYTES, stream) ||
        !engine_stream_writable(stream->ptr, stream->len)) {
        return bad(err, i, "source", "source is required: a non-empty string of at most 256 "
                   "bytes, without control characters, not starting with $");
    }
    if (!string_attr(a->type, LIMIT_TYPE_BYTES, tmp) ||
        !engine_name_ok(tmp->ptr, tmp->len, LIMIT_TYPE_BYTES)) {
        return bad(err, i, "type", "type is required: a non-empty string of at most 256 bytes");
    }
    return check_optional(a, i, tmp, err);
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

/* Appends the native event of the checked CloudEvent ce (attributes a) with native id u. */
static void add_native(struct slice ce, const struct ce *a, const uint8_t u[16],
                       struct buf *native)
{
    char text[UUID_TEXT_LEN + 1];
    uuid_format(u, text);
    buf_printf(native, "{\"id\":\"%s\",\"type\":", text);
    buf_add(native, a->type.ptr, a->type.len);
    buf_adds(native, ",\"data\":");
    if (a->data.ptr) {
        jsonx_minify(a->data, native);
    } else {
        buf_adds(native, "null");
    }
    if (a->subject.ptr) {
        buf_adds(native, ",\"subject\":");
        buf_add(native, a->subject.ptr, a->subject.len);
    }
    if (a->time.ptr) {
        buf_adds(native, ",\"time\":");
        buf_add(native, a->time.ptr, a->time.len);
    }
    buf_adds(native, ",\"metadata\":{\"" ES_CE_MEMBER "\":");
    add_kept(ce, native);
    if (!a->data.ptr && !a->data_base64.ptr) {
        buf_adds(native, ",\"" ES_CE_NO_DATA "\":true");
    }
    buf_adds(native, "}}");
}

/* es_ce_to_native that also gives the native id. */
static int ce_to_native(struct slice ce, size_t index, struct buf *native, struct buf *stream,
                        uint8_t u[16], struct parse_error *err)
{
    struct ce a;
    struct buf tmp, id;
    buf_init(&tmp);
    buf_init(&id);
    int rc = read_attrs(ce, index, &a, err);
    if (!rc) rc = check_attrs(&a, index, stream, &id, &tmp, err);
    if (!rc) {
        es_event_id((struct slice){stream->ptr, stream->len}, (struct slice){id.ptr, id.len}, u);
        add_native(ce, &a, u, native);
    }
    buf_fini(&tmp);
    buf_fini(&id);
    return rc;
}

int es_ce_to_native(struct slice ce, size_t index, struct buf *native, struct buf *stream,
                    struct parse_error *err)
{
    uint8_t u[16];
    return ce_to_native(ce, index, native, stream, u, err);
}

/* ---- events out ---- */

/* The kept attributes of ev, or ptr NULL when it was not appended as a CloudEvent. */
static struct slice kept_attrs(const struct event_rec *ev)
{
    /* metadata is anyone's to write natively: the attributes count only when the event's id
       is the one this dialect derives from them (it was appended as that CloudEvent), so a
       forged or empty "cloudevents" member can never make a reader's answer invalid */
    struct slice v, id;
    if (!ev->metadata.len || !jsonx_member(ev->metadata, ES_CE_MEMBER, &v) ||
        jsonx_kind(v) != '{' || !jsonx_member(v, "id", &id) || jsonx_kind(id) != '"') {
        return (struct slice){NULL, 0};
    }
    struct buf text;
    buf_init(&text);
    uint8_t want[16];
    bool ours = jsonx_string(id, &text) == 0;
    if (ours) {
        es_event_id(ev->stream, (struct slice){text.ptr, text.len}, want);
        ours = memcmp(want, ev->id, sizeof want) == 0;
    }
    buf_fini(&text);
    return ours ? v : (struct slice){NULL, 0};
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
    bool with_data = true;
    if (kept.ptr) {
        struct slice v;
        with_data = !jsonx_member(kept, "data_base64", &v) &&
                    !(jsonx_member(ev->metadata, ES_CE_NO_DATA, &v) && v.len == 4 &&
                      !memcmp(v.ptr, "true", 4));
        buf_add(out, kept.ptr, kept.len - 1); /* without its '}' */
    } else {
        synthesize(out, ev);
    }
    if (with_data) {
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

/* The selector attributes: their names in a request and natively, and their limits. */
static const struct {
    const char *name, *native;
    size_t max;
} ATTRS[] = {
    {"stream", "stream", LIMIT_STREAM_NAME_BYTES},
    {"source", "stream", LIMIT_STREAM_NAME_BYTES},
    {"event_type", "event_type", LIMIT_TYPE_BYTES},
    {"subject", "subject", LIMIT_SUBJECT_BYTES},
};
enum { ATTR_COUNT = sizeof ATTRS / sizeof ATTRS[0], ATTR_SUBJECT = 3 };

/* Appends one native leaf selector {"type":"equals"|"starts_with","attr":{name: value}} for
 * attribute a with value v (valid JSON): a string of 1..max bytes, or null for a subject with
 * equals ("has no subject"). Returns 0 or ERR_INVALID. */
static int add_leaf(struct buf *out, size_t a, bool prefix, struct slice v, const char *field,
                    struct parse_error *err)
{
    struct buf t;
    buf_init(&t);
    bool is_null = jsonx_kind(v) == 'n';
    bool ok = (is_null && a == ATTR_SUBJECT && !prefix) ||
              (string_attr(v, ATTRS[a].max, &t) && engine_name_ok(t.ptr, t.len, ATTRS[a].max));
    if (ok) {
        buf_printf(out, "{\"type\":\"%s\",\"attr\":{\"%s\":", prefix ? "starts_with" : "equals",
                   ATTRS[a].native);
        if (is_null) {
            buf_adds(out, "null");
        } else {
            buf_add_json_str(out, t.ptr, t.len);
        }
        buf_adds(out, "}}");
    }
    buf_fini(&t);
    return ok ? 0 : sel_fail(err, field, "selector values are non-empty strings of at most 256 "
                             "bytes without control characters (subject: or null, with equals)");
}

/* A flat selector {"stream"|"source","event_type","subject"}: an "and" of its attributes. */
static int flat(struct slice sel, const char *field, struct buf *out, struct parse_error *err)
{
    static const char *const NAMES[] = {"stream", "source", "event_type", "subject"};
    struct slice m[ATTR_COUNT];
    struct buf badname;
    buf_init(&badname);
    bool dup = false;
    int rc = jsonx_members(sel, NAMES, ATTR_COUNT, m, &badname, &dup);
    buf_fini(&badname);
    if (rc) {
        return sel_fail(err, field, dup ? "a selector attribute appears twice"
                        : "a selector has stream (or source), event_type and subject");
    }
    if (m[0].ptr && m[1].ptr) {
        return sel_fail(err, field, "stream and source name the same attribute: give one");
    }
    if (!m[0].ptr && !m[1].ptr && !m[2].ptr && !m[3].ptr) {
        return sel_fail(err, field, "a selector names at least one attribute");
    }
    size_t n = 0;
    buf_adds(out, "{\"type\":\"and\",\"selectors\":[");
    for (size_t a = 0; a < ATTR_COUNT && !rc; a++) {
        if (m[a].ptr) {
            buf_adds(out, n++ ? "," : "");
            rc = add_leaf(out, a, false, m[a], field, err);
        }
    }
    buf_adds(out, "]}");
    return rc;
}

static int nested(struct slice sel, const char *field, int depth, struct buf *out,
                  struct parse_error *err);

/* The selectors of an and/or selector (an array span). */
static int nested_list(struct slice list, const char *type, const char *field, int depth,
                       struct buf *out, struct parse_error *err)
{
    if (jsonx_kind(list) != '[') {
        return sel_fail(err, field, "and/or selectors need a non-empty selectors array");
    }
    buf_printf(out, "{\"type\":\"%s\",\"selectors\":[", type);
    size_t pos = 0, n = 0;
    struct slice it;
    while (jsonx_next_item(list, &pos, &it)) {
        char sub[sizeof err->field];
        snprintf(sub, sizeof sub, "%s.selectors[%zu]", field, n);
        if (n == ES_SELECTORS_MAX) {
            return sel_fail(err, field, "an and/or selector has at most 64 selectors");
        }
        buf_adds(out, n++ ? "," : "");
        int rc = jsonx_kind(it) == '{' ? nested(it, sub, depth + 1, out, err)
                                       : sel_fail(err, sub, "a selector is an object");
        if (rc) {
            return rc;
        }
    }
    buf_adds(out, "]}");
    return n ? 0 : sel_fail(err, field, "and/or selectors need a non-empty selectors array");
}

/* The attr of an equals/starts_with selector: an object with one attribute. */
static int nested_leaf(struct slice attr, bool prefix, const char *field, struct buf *out,
                       struct parse_error *err)
{
    size_t pos = 0, a = 0;
    struct slice k, v, k2, v2;
    if (!attr.ptr || jsonx_kind(attr) != '{' || !jsonx_next_member(attr, &pos, &k, &v) ||
        jsonx_next_member(attr, &pos, &k2, &v2)) {
        return sel_fail(err, field, "equals and starts_with selectors have attr: an object "
                        "with one of stream, source, event_type, subject");
    }
    while (a < ATTR_COUNT && !(k.len == strlen(ATTRS[a].name) + 2 &&
                               !memcmp(k.ptr + 1, ATTRS[a].name, k.len - 2))) {
        a++;
    }
    if (a == ATTR_COUNT) {
        return sel_fail(err, field, "attr is one of stream, source, event_type, subject");
    }
    return add_leaf(out, a, prefix, v, field, err);
}

/* A nested selector {"type":"and"|"or","selectors"} or {"type":"equals"|"starts_with",
 * "attr"}, at depth (from 1). */
static int nested(struct slice sel, const char *field, int depth, struct buf *out,
                  struct parse_error *err)
{
    static const char *const NAMES[] = {"type", "selectors", "attr"};
    struct slice m[3];
    struct buf t;
    buf_init(&t);
    bool dup = false;
    int rc = jsonx_members(sel, NAMES, 3, m, &t, &dup);
    if (!rc && !string_attr(m[0], 16, &t)) {
        rc = ERR_INVALID;
    }
    bool list = !rc && (!strcmp(t.ptr, "and") || !strcmp(t.ptr, "or"));
    bool leaf = !rc && (!strcmp(t.ptr, "equals") || !strcmp(t.ptr, "starts_with"));
    if (depth > ES_SELECTOR_DEPTH) {
        rc = sel_fail(err, field, "selectors nest at most 8 deep");
    } else if ((!list && !leaf) || (list && m[2].ptr) || (leaf && m[1].ptr)) {
        rc = sel_fail(err, field, "a selector is {type: and|or, selectors: [...]} or {type: "
                      "equals|starts_with, attr: {name: value}}");
    } else if (list) {
        rc = nested_list(m[1].ptr ? m[1] : (struct slice){"0", 1}, t.ptr, field, depth, out,
                         err);
    } else {
        rc = nested_leaf(m[2], t.ptr[0] == 's', field, out, err);
    }
    buf_fini(&t);
    return rc;
}

int es_selector(struct slice sel, const char *field, struct buf *out, struct parse_error *err)
{
    struct slice t;
    if (jsonx_kind(sel) != '{') {
        return sel_fail(err, field, "a selector is an object");
    }
    return jsonx_member(sel, "type", &t) ? nested(sel, field, 1, out, err)
                                         : flat(sel, field, out, err);
}

/* ---- shared pieces of requests ---- */

static int req_fail(struct parse_error *err, const char *field, const char *msg)
{
    return parse_fail(err, 400, "invalid_request", field, "%s", msg);
}

/* A JSON non-negative integer (no sign, fraction or exponent) that fits in 64 bits. */
static bool span_u64(struct slice v, uint64_t *out)
{
    char num[24];
    if (v.len == 0 || v.len >= sizeof num || v.ptr[0] < '0' || v.ptr[0] > '9') {
        return false;
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    return parse_u64(num, out) == 0;
}

int es_parse_revision(const char *s, bool positive, uint64_t *out)
{
    if (!s || parse_u64(s, out) != 0 || (positive && *out == 0)) {
        return ERR_INVALID;
    }
    return 0;
}

/* Validates body as JSON holding an object; reads its members names[0..n) into m. */
static int body_members(struct slice body, const char *const *names, int n, struct slice *m,
                        struct parse_error *err)
{
    struct jsonv_error je;
    if (jsonv_validate(body.ptr, body.len, LIMIT_JSON_DEPTH, &je) != 0) {
        int rc = parse_fail(err, 400, "invalid_json", NULL, "the body is not JSON: %s", je.msg);
        err->offset = (long)je.offset;
        return rc;
    }
    if (jsonx_kind(body) != '{') {
        return req_fail(err, NULL, "the body must be a JSON object");
    }
    struct buf name;
    buf_init(&name);
    bool dup = false;
    int rc = jsonx_members(body, names, n, m, &name, &dup);
    if (rc) {
        char f[64];
        snprintf(f, sizeof f, "%.60s", name.ptr ? name.ptr : "");
        rc = req_fail(err, f, dup ? "a member appears twice" : "unknown member");
    }
    buf_fini(&name);
    return rc;
}

/* Members of a nested object (revision_range, a constraint): as body_members. */
static int obj_members(struct slice obj, const char *field, const char *const *names, int n,
                       struct slice *m, struct parse_error *err)
{
    if (jsonx_kind(obj) != '{') {
        return req_fail(err, field, "must be an object");
    }
    struct buf name;
    buf_init(&name);
    bool dup = false;
    int rc = jsonx_members(obj, names, n, m, &name, &dup);
    if (rc) {
        char f[sizeof err->field];
        snprintf(f, sizeof f, "%.40s.%.40s", field, name.ptr ? name.ptr : "");
        rc = req_fail(err, f, dup ? "a member appears twice" : "unknown member");
    }
    buf_fini(&name);
    return rc;
}

static size_t count_items(struct slice arr)
{
    size_t pos = 0, n = 0;
    struct slice it;
    while (jsonx_next_item(arr, &pos, &it)) {
        n++;
    }
    return n;
}

/* ---- appends ---- */

/* The members a constraint may have (bit i = CONSTRAINT_MEMBERS[i]). */
static const char *const CONSTRAINT_MEMBERS[] = {"type", "revision", "selector", "min", "max",
                                                 "stream", "subject", "after"};
enum { CM_TYPE = 1, CM_REV = 2, CM_SEL = 4, CM_MIN = 8, CM_MAX = 16, CM_STREAM = 32,
       CM_SUBJECT = 64, CM_AFTER = 128, CM_COUNT = 8 };

/* What a constraint requires of L, the newest matching event's revision. */
enum bound { B_MIN, B_MAX, B_RANGE, B_EXISTS, B_ABSENT, B_AFTER };

static const struct {
    const char *name;
    unsigned allowed, required; /* CM_* besides type */
    enum bound bound;
} CONSTRAINTS[] = {
    {"min_revision", CM_REV | CM_SEL, CM_REV, B_MIN},
    {"min", CM_REV | CM_SEL, CM_REV | CM_SEL, B_MIN},
    {"max", CM_REV | CM_SEL, CM_REV | CM_SEL, B_MAX},
    {"max_revision", CM_REV | CM_SEL, CM_REV | CM_SEL, B_MAX},
    {"range", CM_SEL | CM_MIN | CM_MAX, CM_SEL | CM_MIN | CM_MAX, B_RANGE},
    {"fail_if_events_match", CM_SEL | CM_AFTER, CM_SEL, B_AFTER},
    {"stream_exists", CM_STREAM, CM_STREAM, B_EXISTS},
    {"stream_does_not_exist", CM_STREAM, CM_STREAM, B_ABSENT},
    {"stream_max_revision", CM_STREAM | CM_REV, CM_STREAM | CM_REV, B_MAX},
    {"subject_exists", CM_SUBJECT, CM_SUBJECT, B_EXISTS},
    {"subject_does_not_exist", CM_SUBJECT, CM_SUBJECT, B_ABSENT},
    {"subject_max_revision", CM_SUBJECT | CM_REV, CM_SUBJECT | CM_REV, B_MAX},
    {"subject_exists_on_stream", CM_STREAM | CM_SUBJECT, CM_STREAM | CM_SUBJECT, B_EXISTS},
    {"subject_does_not_exist_on_stream", CM_STREAM | CM_SUBJECT, CM_STREAM | CM_SUBJECT,
     B_ABSENT},
    {"subject_max_revision_on_stream", CM_STREAM | CM_SUBJECT | CM_REV,
     CM_STREAM | CM_SUBJECT | CM_REV, B_MAX},
};
enum { CONSTRAINT_KINDS = sizeof CONSTRAINTS / sizeof CONSTRAINTS[0] };

/* The kind of constraint named by the type span, or CONSTRAINT_KINDS. */
static size_t constraint_kind(struct slice type)
{
    struct buf t;
    buf_init(&t);
    size_t k = CONSTRAINT_KINDS;
    if (type.ptr && string_attr(type, 64, &t)) {
        for (k = 0; k < CONSTRAINT_KINDS && strcmp(t.ptr, CONSTRAINTS[k].name); k++) {
        }
    }
    buf_fini(&t);
    return k;
}

/* Checks the members m of constraint kind k (field its path). */
static int constraint_members(size_t k, const struct slice *m, const char *field,
                              struct parse_error *err)
{
    for (int i = 1; i < CM_COUNT; i++) {
        unsigned bit = 1u << i;
        char f[sizeof err->field];
        snprintf(f, sizeof f, "%.60s.%s", field, CONSTRAINT_MEMBERS[i]);
        if (m[i].ptr && !(CONSTRAINTS[k].allowed & bit)) {
            return req_fail(err, f, "this constraint type has no such member");
        }
        if (!m[i].ptr && (CONSTRAINTS[k].required & bit)) {
            return req_fail(err, f, "this constraint type requires this member");
        }
        uint64_t v;
        if (m[i].ptr && (bit & (CM_REV | CM_MIN | CM_MAX | CM_AFTER)) && !span_u64(m[i], &v)) {
            return req_fail(err, f, "a revision is a non-negative integer");
        }
    }
    return 0;
}

/* Appends the condition's query: {"selector": ...} or {} (every event). */
static int constraint_query(const struct slice *m, const char *field, struct buf *out,
                            struct parse_error *err)
{
    char f[sizeof err->field];
    buf_adds(out, "{\"query\":{");
    int rc = 0;
    if (m[2].ptr) {
        snprintf(f, sizeof f, "%.60s.selector", field);
        buf_adds(out, "\"selector\":");
        rc = es_selector(m[2], f, out, err);
    } else if (m[5].ptr || m[6].ptr) { /* stream and/or subject: a flat selector */
        struct buf flat_sel;
        buf_init(&flat_sel);
        buf_addc(&flat_sel, '{');
        if (m[5].ptr) {
            buf_adds(&flat_sel, "\"stream\":");
            buf_add(&flat_sel, m[5].ptr, m[5].len);
        }
        if (m[6].ptr) {
            buf_adds(&flat_sel, m[5].ptr ? ",\"subject\":" : "\"subject\":");
            buf_add(&flat_sel, m[6].ptr, m[6].len);
        }
        buf_addc(&flat_sel, '}');
        buf_adds(out, "\"selector\":");
        rc = es_selector((struct slice){flat_sel.ptr, flat_sel.len}, field, out, err);
        buf_fini(&flat_sel);
    }
    buf_addc(out, '}');
    return rc;
}

int es_constraint(struct slice c, size_t index, struct buf *out, struct parse_error *err)
{
    char field[40];
    snprintf(field, sizeof field, "constraints[%zu]", index);
    struct slice m[CM_COUNT];
    int rc = obj_members(c, field, CONSTRAINT_MEMBERS, CM_COUNT, m, err);
    if (rc) {
        return rc;
    }
    size_t k = constraint_kind(m[0]);
    if (k == CONSTRAINT_KINDS) {
        char f[64];
        snprintf(f, sizeof f, "%s.type", field);
        return req_fail(err, f, "type is min_revision, min, max, max_revision, range, "
                        "fail_if_events_match, stream_exists, stream_does_not_exist, "
                        "stream_max_revision, subject_exists, subject_does_not_exist, "
                        "subject_max_revision or subject_*_on_stream");
    }
    rc = constraint_members(k, m, field, err);
    uint64_t lo = 0, hi = 0;
    if (!rc && CONSTRAINTS[k].bound == B_RANGE && span_u64(m[3], &lo) && span_u64(m[4], &hi) &&
        lo > hi) {
        rc = req_fail(err, field, "min must not exceed max");
    }
    if (!rc) rc = constraint_query(m, field, out, err);
    if (rc) {
        return rc;
    }
    switch (CONSTRAINTS[k].bound) {
    case B_MIN: buf_printf(out, ",\"min\":%.*s", (int)m[1].len, m[1].ptr); break;
    case B_MAX: buf_printf(out, ",\"max\":%.*s", (int)m[1].len, m[1].ptr); break;
    case B_EXISTS: buf_adds(out, ",\"min\":1"); break;
    case B_ABSENT: buf_adds(out, ",\"max\":0"); break;
    case B_AFTER: /* DCB: nothing matching after `after` (absent: nothing matching at all) */
        buf_printf(out, ",\"max\":%.*s", m[7].ptr ? (int)m[7].len : 1, m[7].ptr ? m[7].ptr : "0");
        break;
    case B_RANGE:
        buf_printf(out, ",\"min\":%.*s,\"max\":%.*s", (int)m[3].len, m[3].ptr, (int)m[4].len,
                   m[4].ptr);
        break;
    }
    buf_addc(out, '}');
    return 0;
}

/* The native id of each event with its index, to find a (source, id) sent twice. */
struct id_at {
    uint8_t id[16];
    size_t index;
};

static int cmp_id_at(const void *a, const void *b)
{
    const struct id_at *x = a, *y = b;
    int c = memcmp(x->id, y->id, 16);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The index of the first event whose (source, id) an earlier event has, or n when none. */
static size_t first_repeat(struct id_at *ids, size_t n)
{
    qsort(ids, n, sizeof(*ids), cmp_id_at);
    size_t first = n;
    for (size_t i = 1; i < n; i++) {
        if (!memcmp(ids[i].id, ids[i - 1].id, 16) && ids[i].index < first) {
            first = ids[i].index;
        }
    }
    return first;
}

/* Appends the parts: one per run of consecutive events with the same source. */
static int append_parts(struct slice events, size_t n, struct buf *native,
                        struct parse_error *err)
{
    struct id_at *ids = xcalloc(n, sizeof(*ids));
    struct buf stream, prev;
    buf_init(&stream);
    buf_init(&prev);
    size_t pos = 0, i = 0, runs = 0;
    struct slice ev;
    int rc = 0;
    buf_adds(native, "\"appends\":[");
    while (!rc && jsonx_next_item(events, &pos, &ev)) {
        struct buf one;
        buf_init(&one);
        rc = ce_to_native(ev, i, &one, &stream, ids[i].id, err);
        ids[i].index = i;
        bool same = i && prev.len == stream.len && !memcmp(prev.ptr, stream.ptr, stream.len);
        if (!rc && !same && ++runs > LIMIT_APPEND_PARTS) {
            rc = parse_fail(err, 400, "invalid_request", "events", "a request holds at most "
                            "%d runs of consecutive events with the same source",
                            LIMIT_APPEND_PARTS);
        }
        if (!rc) {
            buf_adds(native, same ? "," : i ? "]},{\"stream\":" : "{\"stream\":");
            if (!same) {
                buf_add_json_str(native, stream.ptr, stream.len);
                buf_adds(native, ",\"events\":[");
                buf_reset(&prev);
                buf_add(&prev, stream.ptr, stream.len);
            }
            buf_add(native, one.ptr, one.len);
        }
        buf_fini(&one);
        i++;
    }
    buf_adds(native, "]}]");
    size_t rep = rc ? n : first_repeat(ids, n);
    if (rep < n) {
        rc = bad(err, rep, "id", "an event with this source and id appears earlier in the "
                 "request");
    }
    free(ids);
    buf_fini(&stream);
    buf_fini(&prev);
    return rc;
}

/* Appends "conditions": one per constraint. */
static int append_conditions(struct slice cons, struct buf *native, struct parse_error *err)
{
    if (jsonx_kind(cons) != '[') {
        return req_fail(err, "constraints", "constraints is an array");
    }
    size_t n = count_items(cons);
    if (n > ES_CONSTRAINTS_MAX) {
        return parse_fail(err, 400, "invalid_request", "constraints",
                          "at most %d constraints", ES_CONSTRAINTS_MAX);
    }
    if (n == 0) {
        return 0;
    }
    buf_adds(native, ",\"conditions\":[");
    size_t pos = 0, i = 0;
    struct slice c;
    while (jsonx_next_item(cons, &pos, &c)) {
        buf_adds(native, i ? "," : "");
        int rc = es_constraint(c, i++, native, err);
        if (rc) {
            return rc;
        }
    }
    buf_addc(native, ']');
    return 0;
}

int es_append_request(struct slice body, size_t max_events, struct buf *native,
                      struct parse_error *err)
{
    static const char *const NAMES[] = {"events", "constraints"};
    struct slice m[2];
    int rc = body_members(body, NAMES, 2, m, err);
    if (rc) {
        return rc;
    }
    size_t n = m[0].ptr && jsonx_kind(m[0]) == '[' ? count_items(m[0]) : 0;
    if (n == 0) {
        return req_fail(err, "events", "events must be a non-empty array of CloudEvents");
    }
    if (n > max_events) {
        return parse_fail(err, 413, "too_many_events", "events",
                          "%zu events in one request; the limit is %zu", n, max_events);
    }
    buf_addc(native, '{');
    rc = append_parts(m[0], n, native, err);
    if (!rc && m[1].ptr) rc = append_conditions(m[1], native, err);
    buf_addc(native, '}');
    return rc;
}

int es_append_answer(struct slice native, struct buf *out)
{
    struct slice appends, part, last = {NULL, 0}, evs, pos;
    size_t at = 0, n = 0;
    if (!jsonx_member(native, "appends", &appends) || jsonx_kind(appends) != '[') {
        return ERR_INVALID;
    }
    while (jsonx_next_item(appends, &at, &part)) {
        if (!jsonx_member(part, "events", &evs) || jsonx_kind(evs) != '[') {
            return ERR_INVALID;
        }
        n += count_items(evs);
        last = part;
    }
    uint64_t rev;
    if (!last.ptr || !jsonx_member(last, "position", &pos) || !span_u64(pos, &rev)) {
        return ERR_INVALID;
    }
    buf_printf(out, "{\"revision\":%llu,\"events_count\":%zu}", (unsigned long long)rev, n);
    return 0;
}

/* ---- queries ---- */

/* A time member (RFC 3339 string) at field: its microseconds and decoded text. */
static int span_time(struct slice v, const char *field, int64_t *us, struct buf *text,
                     struct parse_error *err)
{
    if (!string_attr(v, ES_TIME_BYTES, text) || time_parse(text->ptr, text->len, us) != 0) {
        return req_fail(err, field, "must be an RFC 3339 timestamp");
    }
    return 0;
}

/* "selectors": OR-ed into a native "selector" member (with its leading comma). */
static int query_selectors(struct slice sels, struct buf *native, struct parse_error *err)
{
    if (jsonx_kind(sels) != '[') {
        return req_fail(err, "selectors", "selectors is an array of selectors");
    }
    size_t n = count_items(sels);
    if (n > ES_SELECTORS_MAX) {
        return parse_fail(err, 400, "invalid_request", "selectors", "at most %d selectors",
                          ES_SELECTORS_MAX);
    }
    if (n == 0) {
        return 0;
    }
    buf_adds(native, n > 1 ? ",\"selector\":{\"type\":\"or\",\"selectors\":[" : ",\"selector\":");
    size_t pos = 0, i = 0;
    struct slice sel;
    while (jsonx_next_item(sels, &pos, &sel)) {
        char f[32];
        snprintf(f, sizeof f, "selectors[%zu]", i);
        buf_adds(native, i++ ? "," : "");
        int rc = es_selector(sel, f, native, err);
        if (rc) {
            return rc;
        }
    }
    buf_adds(native, n > 1 ? "]}" : "");
    return 0;
}

/* "revision_range": {start?, end?} into from/to in the direction of travel. */
static int query_revisions(struct slice range, bool backward, struct buf *native,
                           bool *nothing, struct parse_error *err)
{
    static const char *const NAMES[] = {"start", "end"};
    struct slice m[2];
    int rc = obj_members(range, "revision_range", NAMES, 2, m, err);
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < 2 && !rc; i++) {
        if (m[i].ptr && !span_u64(m[i], &v[i])) {
            char f[32];
            snprintf(f, sizeof f, "revision_range.%s", NAMES[i]);
            rc = req_fail(err, f, "a revision is a non-negative integer");
        }
    }
    if (!rc && m[0].ptr && m[1].ptr && v[0] > v[1]) {
        rc = req_fail(err, "revision_range", "start must not exceed end");
    }
    if (rc) {
        return rc;
    }
    *nothing = m[1].ptr && v[1] == 0; /* revisions start at 1 */
    if (v[0] > 0) {
        buf_printf(native, ",\"%s\":%llu", backward ? "to" : "from", (unsigned long long)v[0]);
    }
    if (m[1].ptr && v[1] > 0) {
        buf_printf(native, ",\"%s\":%llu", backward ? "from" : "to", (unsigned long long)v[1]);
    }
    return 0;
}

/* The effective-time bounds: effective_time_range {start?, end?} and as_of_effective_time
 * (an upper bound: the earlier of it and end wins). */
static int query_times(struct slice range, struct slice as_of, struct buf *native,
                       struct parse_error *err)
{
    static const char *const NAMES[] = {"start", "end"};
    struct slice m[2] = {{NULL, 0}, {NULL, 0}};
    int rc = range.ptr ? obj_members(range, "effective_time_range", NAMES, 2, m, err) : 0;
    struct buf from, to, cap;
    buf_init(&from);
    buf_init(&to);
    buf_init(&cap);
    int64_t f_us = 0, t_us = 0, c_us = 0;
    if (!rc && m[0].ptr) rc = span_time(m[0], "effective_time_range.start", &f_us, &from, err);
    if (!rc && m[1].ptr) rc = span_time(m[1], "effective_time_range.end", &t_us, &to, err);
    if (!rc && as_of.ptr) rc = span_time(as_of, "as_of_effective_time", &c_us, &cap, err);
    if (!rc && m[0].ptr && m[1].ptr && f_us > t_us) {
        rc = req_fail(err, "effective_time_range", "start must not be after end");
    }
    if (!rc && m[0].ptr) {
        buf_adds(native, ",\"timeFrom\":");
        buf_add_json_str(native, from.ptr, from.len);
    }
    const struct buf *upper = m[1].ptr && (!as_of.ptr || t_us <= c_us) ? &to
                              : as_of.ptr ? &cap : NULL;
    if (!rc && upper) {
        buf_adds(native, ",\"timeTo\":");
        buf_add_json_str(native, upper->ptr, upper->len);
    }
    buf_fini(&from);
    buf_fini(&to);
    buf_fini(&cap);
    return rc;
}

/* direction and limit. */
static int query_page(struct slice dir, struct slice limit, bool *backward, struct buf *native,
                      struct parse_error *err)
{
    struct buf t;
    buf_init(&t);
    bool dir_ok = !dir.ptr || (string_attr(dir, 16, &t) &&
                               (!strcmp(t.ptr, "forward") || !strcmp(t.ptr, "backward")));
    *backward = dir.ptr && dir_ok && !strcmp(t.ptr, "backward");
    buf_fini(&t);
    if (!dir_ok) {
        return req_fail(err, "direction", "direction is forward or backward");
    }
    uint64_t n = ES_PAGE_DEFAULT;
    if (limit.ptr && (!span_u64(limit, &n) || n < 1 || n > ES_PAGE_MAX)) {
        return parse_fail(err, 400, "invalid_request", "limit", "limit is 1 to %d",
                          ES_PAGE_MAX);
    }
    buf_printf(native, "\"direction\":\"%s\",\"limit\":%llu", *backward ? "backward" : "forward",
               (unsigned long long)n);
    return 0;
}

/* as_of_transaction_time (asOfTime) and as_of_revision (asOf). */
static int query_as_of(struct slice tx, struct slice rev, struct buf *native,
                       struct parse_error *err)
{
    uint64_t r;
    if (rev.ptr && (!span_u64(rev, &r) || r == 0)) {
        return req_fail(err, "as_of_revision", "a revision from 1");
    }
    if (rev.ptr) {
        buf_printf(native, ",\"asOf\":%llu", (unsigned long long)r);
    }
    if (!tx.ptr) {
        return 0;
    }
    struct buf t;
    buf_init(&t);
    int64_t us;
    int rc = span_time(tx, "as_of_transaction_time", &us, &t, err);
    if (!rc) {
        buf_adds(native, ",\"asOfTime\":");
        buf_add_json_str(native, t.ptr, t.len);
    }
    buf_fini(&t);
    return rc;
}

int es_query_request(struct slice body, struct buf *native, bool *nothing,
                     struct parse_error *err)
{
    static const char *const NAMES[] = {
        "selectors", "revision_range", "effective_time_range", "direction", "limit",
        "as_of_transaction_time", "as_of_effective_time", "as_of_revision"};
    struct slice m[8];
    *nothing = false;
    int rc = body_members(body, NAMES, 8, m, err);
    bool backward = false;
    buf_addc(native, '{');
    if (!rc) rc = query_page(m[3], m[4], &backward, native, err);
    if (!rc && m[0].ptr) rc = query_selectors(m[0], native, err);
    if (!rc && m[1].ptr) rc = query_revisions(m[1], backward, native, nothing, err);
    if (!rc) rc = query_times(m[2], m[6], native, err);
    if (!rc) rc = query_as_of(m[5], m[7], native, err);
    buf_addc(native, '}');
    return rc;
}

/* ---- GET /v1/events ---- */

static int param_fail(struct parse_error *err, const char *name, const char *msg)
{
    return parse_fail(err, 400, "invalid_parameter", name, "%s", msg);
}

/* The flat selector of the stream, subject and type parameters, as a native selector. */
static int v1_selector(const struct es_v1_params *p, struct buf *native,
                       struct parse_error *err)
{
    const char *vals[] = {p->stream, p->type, p->subject};
    const char *names[] = {"stream", "type", "subject"};
    const char *attrs[] = {"stream", "event_type", "subject"};
    const size_t maxes[] = {LIMIT_STREAM_NAME_BYTES, LIMIT_TYPE_BYTES, LIMIT_SUBJECT_BYTES};
    struct buf sel;
    buf_init(&sel);
    for (int i = 0; i < 3; i++) {
        if (vals[i] && !engine_name_ok(vals[i], strlen(vals[i]), maxes[i])) {
            buf_fini(&sel);
            return param_fail(err, names[i], "a non-empty value of at most 256 bytes without "
                              "control characters");
        }
        if (vals[i]) {
            buf_printf(&sel, "%s\"%s\":", sel.len ? "," : "{", attrs[i]);
            buf_add_json_str(&sel, vals[i], strlen(vals[i]));
        }
    }
    int rc = 0;
    if (sel.len) {
        buf_addc(&sel, '}');
        buf_adds(native, ",\"selector\":");
        rc = es_selector((struct slice){sel.ptr, sel.len}, "selector", native, err);
    }
    buf_fini(&sel);
    return rc;
}

/* A time parameter into a native member (with its leading comma). */
static int v1_time(const char *v, const char *name, const char *member, struct buf *native,
                   struct parse_error *err)
{
    int64_t us;
    if (!v) {
        return 0;
    }
    if (strlen(v) > ES_TIME_BYTES || time_parse(v, strlen(v), &us) != 0) {
        return param_fail(err, name, "an RFC 3339 timestamp");
    }
    buf_printf(native, ",\"%s\":", member);
    buf_add_json_str(native, v, strlen(v));
    return 0;
}

/* after and limit (not for subscriptions). */
static int v1_page(const struct es_v1_params *p, struct buf *native, struct parse_error *err)
{
    uint64_t after = 0, limit = ES_PAGE_DEFAULT;
    if (p->after && (es_parse_revision(p->after, false, &after) || after == UINT64_MAX)) {
        return param_fail(err, "after", "after is a revision (a non-negative integer)");
    }
    if (p->limit && (es_parse_revision(p->limit, true, &limit) || limit > ES_PAGE_MAX)) {
        return parse_fail(err, 400, "invalid_parameter", "limit", "limit is 1 to %d",
                          ES_PAGE_MAX);
    }
    buf_printf(native, ",\"from\":%llu,\"limit\":%llu", (unsigned long long)after + 1,
               (unsigned long long)limit);
    return 0;
}

int es_v1_query(const struct es_v1_params *p, struct buf *native, struct parse_error *err)
{
    uint64_t rev;
    if (p->live && (p->as_of_transaction_time || p->as_of_revision)) {
        return param_fail(err, p->as_of_revision ? "asOfRevision" : "asOfTransactionTime",
                          "a subscription follows new events: it cannot be read as of a "
                          "revision or transaction time");
    }
    if (p->as_of_revision && es_parse_revision(p->as_of_revision, true, &rev)) {
        return param_fail(err, "asOfRevision", "a revision from 1");
    }
    buf_adds(native, "{\"direction\":\"forward\"");
    int rc = v1_selector(p, native, err);
    if (!rc) rc = v1_time(p->as_of_transaction_time, "asOfTransactionTime", "asOfTime", native,
                          err);
    if (!rc) rc = v1_time(p->as_of_effective_time, "asOfEffectiveTime", "timeTo", native, err);
    if (!rc && p->as_of_revision) {
        buf_printf(native, ",\"asOf\":%llu", (unsigned long long)rev);
    }
    if (!rc && !p->live) rc = v1_page(p, native, err);
    buf_addc(native, '}');
    return rc;
}
