/* Request body parsing. Strategy: jansson validates the whole body (UTF-8, numbers, duplicate
 * keys) and gives the structure; for each event, the raw text of data/metadata/tags is then
 * found with jsonx and stored minified, so numbers and key order are kept exactly as sent. */
#include "api/parse.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json/jsonx.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

static int fail(struct parse_error *err, unsigned status, const char *code, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct parse_error *err, unsigned status, const char *code, const char *field,
                const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    err->offset = -1;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return status == 413 ? ERR_TOOBIG : ERR_INVALID;
}

int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 20) {
        return ERR_INVALID;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return ERR_INVALID;
        }
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return ERR_INVALID;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool parse_name_ok(const char *s, size_t n, size_t max)
{
    if (n < 1 || n > max) {
        return false;
    }
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (len == 0 || c > 0xf4 || i + len > n) {
            return false;
        }
        uint32_t cp = c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (cc & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
            return false;
        }
        i += len;
    }
    return true;
}

int parse_json_object(struct slice body, void **out, struct parse_error *err)
{
    if (jsonx_depth(body.ptr, body.len, LIMIT_JSON_DEPTH) > LIMIT_JSON_DEPTH) {
        return fail(err, 400, "invalid_json", NULL, "JSON nesting deeper than %d levels",
                    LIMIT_JSON_DEPTH);
    }
    const char *nul = memchr(body.ptr, 0, body.len);
    if (nul) {
        /* JSON text never holds a raw NUL; jansson would stop reading at one. */
        fail(err, 400, "invalid_json", NULL, "malformed JSON: NUL byte");
        err->offset = nul - body.ptr;
        return ERR_INVALID;
    }
    json_error_t je;
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        for (char *c = je.text; *c; c++) {
            if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20) {
                *c = '?'; /* jansson quotes input bytes: keep the answer valid UTF-8 */
            }
        }
        fail(err, 400, "invalid_json", NULL, "malformed JSON: %s", je.text);
        err->offset = je.position;
        return ERR_INVALID;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, 400, "invalid_request", NULL, "the body must be a JSON object");
    }
    *out = root;
    return 0;
}

static int parse_expect(json_t *v, struct expect *out, struct parse_error *err)
{
    static const char F[] = "expectedVersion";
    out->kind = EXPECT_ANY;
    out->version = 0;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return fail(err, 400, "invalid_expected_version", F, "must be 0 or more");
        }
        out->kind = EXPECT_VERSION;
        out->version = (uint64_t)json_integer_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    if (s && strcmp(s, "any") == 0) {
        return 0;
    }
    if (s && strcmp(s, "no_stream") == 0) {
        out->kind = EXPECT_NO_STREAM;
        return 0;
    }
    if (s && strcmp(s, "exists") == 0) {
        out->kind = EXPECT_EXISTS;
        return 0;
    }
    return fail(err, 400, "invalid_expected_version", F,
                "must be a version number, \"any\", \"no_stream\" or \"exists\"");
}

static int check_tags(json_t *tags, size_t i, struct parse_error *err)
{
    char f[96];
    snprintf(f, sizeof f, "events[%zu].tags", i);
    if (!json_is_array(tags)) {
        return fail(err, 400, "invalid_event", f, "tags must be an array of strings");
    }
    if (json_array_size(tags) > LIMIT_TAGS) {
        return fail(err, 400, "invalid_event", f, "at most %d tags", LIMIT_TAGS);
    }
    size_t k;
    json_t *t;
    json_array_foreach(tags, k, t) {
        if (!json_is_string(t) || !parse_name_ok(json_string_value(t), json_string_length(t),
                                                 LIMIT_TAG_BYTES)) {
            return fail(err, 400, "invalid_event", f,
                        "each tag must be a string of 1 to %d bytes without control characters",
                        LIMIT_TAG_BYTES);
        }
    }
    return 0;
}

/* Validates one event object's fields (not its raw text). */
static int check_event(json_t *ev, size_t i, struct append_event *out, struct parse_error *err)
{
    char f[96];
    snprintf(f, sizeof f, "events[%zu]", i);
    if (!json_is_object(ev)) {
        return fail(err, 400, "invalid_event", f, "each event must be an object");
    }
    const char *key;
    json_t *v;
    json_object_foreach(ev, key, v) {
        if (strcmp(key, "type") && strcmp(key, "data") && strcmp(key, "metadata") &&
            strcmp(key, "id") && strcmp(key, "tags") && strcmp(key, "time")) {
            snprintf(f, sizeof f, "events[%zu].%.60s", i, key);
            return fail(err, 400, "invalid_event", f, "unknown event field");
        }
    }
    json_t *type = json_object_get(ev, "type");
    snprintf(f, sizeof f, "events[%zu].type", i);
    if (!json_is_string(type) ||
        !parse_name_ok(json_string_value(type), json_string_length(type), LIMIT_TYPE_BYTES)) {
        return fail(err, 400, "invalid_event", f,
                    "type must be a string of 1 to %d bytes without control characters",
                    LIMIT_TYPE_BYTES);
    }
    if (!json_object_get(ev, "data")) {
        snprintf(f, sizeof f, "events[%zu].data", i);
        return fail(err, 400, "invalid_event", f, "data is required (any JSON value)");
    }
    json_t *md = json_object_get(ev, "metadata");
    if (md && !json_is_object(md) && !json_is_null(md)) {
        snprintf(f, sizeof f, "events[%zu].metadata", i);
        return fail(err, 400, "invalid_event", f, "metadata must be an object");
    }
    json_t *id = json_object_get(ev, "id");
    if (id && !json_is_null(id)) {
        snprintf(f, sizeof f, "events[%zu].id", i);
        if (!json_is_string(id) ||
            uuid_parse(json_string_value(id), json_string_length(id), out->id) != 0) {
            return fail(err, 400, "invalid_event", f, "id must be a UUID string");
        }
        out->has_id = true;
    }
    json_t *tm = json_object_get(ev, "time");
    if (tm && !json_is_null(tm)) {
        snprintf(f, sizeof f, "events[%zu].time", i);
        if (!json_is_string(tm) ||
            time_parse(json_string_value(tm), json_string_length(tm), &out->time_us) != 0) {
            return fail(err, 400, "invalid_event", f, "time must be an RFC 3339 date-time");
        }
        out->has_time = true;
    }
    json_t *tags = json_object_get(ev, "tags");
    if (tags && !json_is_null(tags)) {
        return check_tags(tags, i, err);
    }
    return 0;
}

/* Text offsets of one event's fields inside parsed_append.text, fixed up into slices at the
 * end (text may move while it grows). */
struct spans {
    size_t type_at, type_len, data_at, data_len, md_at, md_len, tags_at, tags_len;
};

static void add_span(struct buf *text, struct slice raw, json_t *v, bool use_raw,
                     const char *dflt, size_t *at, size_t *len)
{
    *at = text->len;
    if (!v || json_is_null(v)) {
        if (dflt) {
            buf_adds(text, dflt);
        } else {
            buf_adds(text, "null");
        }
    } else if (use_raw) {
        jsonx_minify(raw, text);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        buf_adds(text, s ? s : "null");
        free(s);
    }
    *len = text->len - *at;
}

static void take_text(struct parsed_append *out, struct slice item, json_t *ev,
                      struct spans *sp)
{
    bool raw_ok = !jsonx_has_escaped_key(item);
    struct slice raw = {0};
    json_t *type = json_object_get(ev, "type");
    sp->type_at = out->text.len;
    buf_add(&out->text, json_string_value(type), json_string_length(type));
    sp->type_len = json_string_length(type);
    json_t *data = json_object_get(ev, "data");
    bool have = raw_ok && jsonx_member(item, "data", &raw);
    add_span(&out->text, raw, data, have, NULL, &sp->data_at, &sp->data_len);
    have = raw_ok && jsonx_member(item, "metadata", &raw);
    add_span(&out->text, raw, json_object_get(ev, "metadata"), have, "{}", &sp->md_at,
             &sp->md_len);
    have = raw_ok && jsonx_member(item, "tags", &raw);
    add_span(&out->text, raw, json_object_get(ev, "tags"), have, "[]", &sp->tags_at,
             &sp->tags_len);
}

static int parse_events(json_t *events, struct slice raw_events, const struct limits *lim,
                        struct parsed_append *out, struct parse_error *err)
{
    size_t n = json_array_size(events);
    out->events = xcalloc(n, sizeof(*out->events));
    struct spans *sp = xcalloc(n, sizeof(*sp));
    size_t pos = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *ev = json_array_get(events, i);
        rc = check_event(ev, i, &out->events[i], err);
        struct slice item = {0};
        if (!rc && !jsonx_next_item(raw_events, &pos, &item)) {
            rc = fail(err, 400, "invalid_request", "events", "events array could not be read");
        }
        if (!rc) {
            take_text(out, item, ev, &sp[i]);
        }
    }
    for (size_t i = 0; i < n && !rc; i++) {
        struct append_event *ae = &out->events[i];
        ae->type = (struct slice){out->text.ptr + sp[i].type_at, sp[i].type_len};
        ae->data = (struct slice){out->text.ptr + sp[i].data_at, sp[i].data_len};
        ae->metadata = (struct slice){out->text.ptr + sp[i].md_at, sp[i].md_len};
        ae->tags = (struct slice){out->text.ptr + sp[i].tags_at, sp[i].tags_len};
    }
    free(sp);
    (void)lim;
    out->count = n;
    return rc;
}

static int check_size(struct parsed_append *p, struct slice stream, const struct limits *lim,
                      struct parse_error *err)
{
    for (size_t i = 0; i < p->count; i++) {
        size_t bytes = engine_event_bytes(stream, &p->events[i]);
        if (bytes > lim->event_bytes) {
            char f[96];
            snprintf(f, sizeof f, "events[%zu]", i);
            return fail(err, 413, "event_too_large", f,
                        "event takes %zu bytes; the limit is %zu", bytes, lim->event_bytes);
        }
    }
    return 0;
}

static int parse_top(json_t *root, struct slice body, struct slice stream,
                     const struct limits *lim, struct parsed_append *out,
                     struct parse_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "events") && strcmp(key, "expectedVersion")) {
            return fail(err, 400, "invalid_request", key, "unknown field");
        }
    }
    json_t *events = json_object_get(root, "events");
    if (!json_is_array(events) || json_array_size(events) == 0) {
        return fail(err, 400, "invalid_request", "events",
                    "events must be a non-empty array of events");
    }
    if (json_array_size(events) > lim->batch_events) {
        return fail(err, 413, "too_many_events", "events",
                    "%zu events in one request; the limit is %zu", json_array_size(events),
                    lim->batch_events);
    }
    int rc = parse_expect(json_object_get(root, "expectedVersion"), &out->expect, err);
    if (rc) {
        return rc;
    }
    struct slice raw_events = {0};
    if (!jsonx_member(body, "events", &raw_events)) {
        return fail(err, 400, "invalid_request", "events",
                    "events must be written without escapes in its key");
    }
    rc = parse_events(events, raw_events, lim, out, err);
    return rc ? rc : check_size(out, stream, lim, err);
}

int parse_append(struct slice body, struct slice stream, const struct limits *lim,
                 struct parsed_append *out, struct parse_error *err)
{
    memset(out, 0, sizeof(*out));
    buf_init(&out->text);
    void *rootp;
    int rc = parse_json_object(body, &rootp, err);
    if (rc) {
        return rc;
    }
    json_t *root = rootp;
    rc = parse_top(root, body, stream, lim, out, err);
    json_decref(root);
    if (rc) {
        parse_append_fini(out);
    }
    return rc;
}

void parse_append_fini(struct parsed_append *p)
{
    free(p->events);
    buf_fini(&p->text);
    p->events = NULL;
    p->count = 0;
}
