/* The engine's event contract: what a canonical event is, the parser that makes one from an
 * event object in the native JSON shape, and the check engine_append runs on every request
 * (docs/design/architecture.md, "The engine's contract"). Pure functions over buffers. */
#include "engine/canon.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"

bool engine_name_ok(const char *s, size_t n, size_t max)
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

bool engine_stream_name_ok(const char *s, size_t n)
{
    bool dots = (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
    return engine_name_ok(s, n, LIMIT_STREAM_NAME_BYTES) && !dots;
}

bool engine_stream_writable(const char *s, size_t n)
{
    return engine_stream_name_ok(s, n) && s[0] != '$';
}

static int fault(struct append_fault *f, size_t event, const char *leaf, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fault(struct append_fault *f, size_t event, const char *leaf, const char *fmt, ...)
{
    f->code = "invalid_event";
    f->has_event = true;
    f->event = event;
    snprintf(f->leaf, sizeof f->leaf, "%s", leaf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

/* ---- checks shared by the parser and engine_append ---- */

static int type_fault(struct append_fault *f, size_t i)
{
    return fault(f, i, "type", "type must be a string of 1 to %d bytes without control "
                               "characters", LIMIT_TYPE_BYTES);
}

static int subject_fault(struct append_fault *f, size_t i)
{
    return fault(f, i, "subject", "subject must be a string of 1 to %d bytes without control "
                                  "characters", LIMIT_SUBJECT_BYTES);
}

static int tag_fault(struct append_fault *f, size_t i)
{
    return fault(f, i, "tags", "each tag must be a string of 1 to %d bytes without control "
                               "characters", LIMIT_TAG_BYTES);
}

/* One decoded tag: its size and characters, and no comma when the request asks. */
static int check_tag(struct slice t, unsigned flags, size_t i, struct append_fault *f)
{
    if (!engine_name_ok(t.ptr, t.len, LIMIT_TAG_BYTES)) {
        return tag_fault(f, i);
    }
    if ((flags & APPEND_TAGS_NO_COMMA) && memchr(t.ptr, ',', t.len)) {
        return fault(f, i, "tags", "tags may not contain a comma");
    }
    return 0;
}

/* ---- the parser ---- */

enum { EV_TYPE, EV_DATA, EV_METADATA, EV_ID, EV_TAGS, EV_TIME, EV_SUBJECT, EV_NFIELDS };
static const char *const EVENT_FIELDS[] = {"type", "data", "metadata", "id",
                                           "tags", "time", "subject"};

/* Text offsets of one event's fields inside the text buffer, made into slices at the end (the
 * buffer may move while it grows). */
enum { SP_TYPE, SP_DATA, SP_METADATA, SP_TAGS, SP_SUBJECT, SP_N };
struct spans {
    size_t at[SP_N];
    size_t len[SP_N];
};

static bool present(struct slice v)
{
    return v.ptr && jsonx_kind(v) != 'n';
}

/* Decodes a string member into s (reset); false when v is not a string. */
static bool decode_str(struct slice v, struct buf *s)
{
    return jsonx_kind(v) == '"' && jsonx_string(v, s) == 0;
}

static int parse_tags(struct slice tags, unsigned flags, size_t i, struct buf *s,
                      struct buf *text, struct spans *sp, struct append_fault *f)
{
    sp->at[SP_TAGS] = text->len;
    buf_addc(text, '[');
    if (present(tags) && jsonx_kind(tags) != '[') {
        return fault(f, i, "tags", "tags must be an array of strings");
    }
    size_t pos = 0, count = 0;
    struct slice t;
    while (present(tags) && jsonx_next_item(tags, &pos, &t)) {
        if (++count > LIMIT_TAGS) {
            return fault(f, i, "tags", "at most %d tags", LIMIT_TAGS);
        }
        if (!decode_str(t, s)) {
            return tag_fault(f, i);
        }
        int rc = check_tag((struct slice){s->ptr, s->len}, flags, i, f);
        if (rc) {
            return rc;
        }
        if (count > 1) {
            buf_addc(text, ',');
        }
        filter_json_string((struct slice){s->ptr, s->len}, text);
    }
    buf_addc(text, ']');
    sp->len[SP_TAGS] = text->len - sp->at[SP_TAGS];
    return 0;
}

/* A string member decoded into the text (empty when absent); checked as a name up to max. */
static bool add_name(struct slice v, size_t max, bool required, struct buf *s, struct buf *text,
                     size_t *at, size_t *len)
{
    *at = text->len;
    *len = 0;
    if (!present(v)) {
        return !required;
    }
    if (!decode_str(v, s) || !engine_name_ok(s->ptr, s->len, max)) {
        return false;
    }
    buf_add(text, s->ptr, s->len);
    *len = s->len;
    return true;
}

static void add_minified(struct slice v, const char *dflt, struct buf *text, size_t *at,
                         size_t *len)
{
    *at = text->len;
    if (present(v)) {
        jsonx_minify(v, text);
    } else {
        buf_adds(text, dflt);
    }
    *len = text->len - *at;
}

static int parse_fields(const struct slice *m, unsigned flags, size_t i, struct append_event *ev,
                        struct buf *s, struct buf *text, struct spans *sp,
                        struct append_fault *f)
{
    if (!add_name(m[EV_TYPE], LIMIT_TYPE_BYTES, true, s, text, &sp->at[SP_TYPE],
                  &sp->len[SP_TYPE])) {
        return type_fault(f, i);
    }
    if (!m[EV_DATA].ptr) {
        return fault(f, i, "data", "data is required (any JSON value)");
    }
    sp->at[SP_DATA] = text->len; /* data: null is a value like any other */
    jsonx_minify(m[EV_DATA], text);
    sp->len[SP_DATA] = text->len - sp->at[SP_DATA];
    if (present(m[EV_METADATA]) && jsonx_kind(m[EV_METADATA]) != '{') {
        return fault(f, i, "metadata", "metadata must be an object");
    }
    add_minified(m[EV_METADATA], "{}", text, &sp->at[SP_METADATA], &sp->len[SP_METADATA]);
    if (present(m[EV_ID])) {
        if (!decode_str(m[EV_ID], s) || uuid_parse(s->ptr, s->len, ev->id) != 0) {
            return fault(f, i, "id", "id must be a UUID string");
        }
        ev->has_id = true;
    }
    if (present(m[EV_TIME])) {
        if (!decode_str(m[EV_TIME], s) || time_parse(s->ptr, s->len, &ev->time_us) != 0) {
            return fault(f, i, "time", "time must be an RFC 3339 date-time");
        }
        ev->has_time = true;
    }
    if (!add_name(m[EV_SUBJECT], LIMIT_SUBJECT_BYTES, false, s, text, &sp->at[SP_SUBJECT],
                  &sp->len[SP_SUBJECT])) {
        return subject_fault(f, i);
    }
    return parse_tags(m[EV_TAGS], flags, i, s, text, sp, f);
}

static int parse_one(struct slice item, unsigned flags, size_t i, struct append_event *ev,
                     struct buf *s, struct buf *text, struct spans *sp, struct append_fault *f)
{
    if (jsonx_kind(item) != '{') {
        return fault(f, i, "", "each event must be an object");
    }
    struct slice m[EV_NFIELDS];
    bool dup = false;
    if (jsonx_members(item, EVENT_FIELDS, EV_NFIELDS, m, s, &dup) != 0) {
        char leaf[64];
        snprintf(leaf, sizeof leaf, "%.60s", s->ptr ? s->ptr : "");
        return fault(f, i, leaf, dup ? "a member name appears twice" : "unknown field");
    }
    return parse_fields(m, flags, i, ev, s, text, sp, f);
}

int engine_events_parse(struct slice arr, size_t n, unsigned flags, struct engine_events *out,
                        struct append_fault *f)
{
    memset(out, 0, sizeof(*out));
    memset(f, 0, sizeof(*f));
    buf_init(&out->text);
    out->events = xcalloc(n ? n : 1, sizeof(*out->events));
    struct spans *sp = xcalloc(n ? n : 1, sizeof(*sp));
    struct buf s;
    buf_init(&s);
    size_t pos = 0, i = 0;
    struct slice item;
    int rc = 0;
    for (; !rc && i < n && jsonx_next_item(arr, &pos, &item); i++) {
        rc = parse_one(item, flags, i, &out->events[i], &s, &out->text, &sp[i], f);
    }
    for (size_t k = 0; k < i && !rc; k++) {
        struct append_event *ev = &out->events[k];
        struct slice *fs[SP_N] = {&ev->type, &ev->data, &ev->metadata, &ev->tags, &ev->subject};
        for (int j = 0; j < SP_N; j++) {
            *fs[j] = (struct slice){out->text.ptr + sp[k].at[j], sp[k].len[j]};
        }
    }
    out->count = i;
    buf_fini(&s);
    free(sp);
    if (rc) {
        engine_events_fini(out);
    }
    return rc;
}

void engine_events_fini(struct engine_events *evs)
{
    free(evs->events);
    buf_fini(&evs->text);
    evs->events = NULL;
    evs->count = 0;
}

/* ---- the check engine_append runs ---- */

/* True for JSON text that is valid and minified, whose first byte is kind (0: any). */
static bool minified_value(struct slice v, char kind)
{
    if (v.len == 0 || (kind && v.ptr[0] != kind) || !jsonx_is_minified(v)) {
        return false;
    }
    struct jsonv_error ve;
    return jsonv_validate(v.ptr, v.len, LIMIT_JSON_DEPTH, &ve) == 0;
}

/* Tags in their canonical text: [] or ["a","b"] with only \" and \\ escaped, each tag a name,
 * at most LIMIT_TAGS. */
static int check_tags_text(struct slice t, unsigned flags, size_t i, struct append_fault *f)
{
    if (t.len < 2 || t.ptr[0] != '[' || t.ptr[t.len - 1] != ']') {
        return fault(f, i, "tags", "tags must be an array of strings");
    }
    char one[LIMIT_TAG_BYTES + 1];
    size_t p = 1, count = 0;
    while (p < t.len - 1) {
        if (++count > LIMIT_TAGS) {
            return fault(f, i, "tags", "at most %d tags", LIMIT_TAGS);
        }
        if ((count > 1 && t.ptr[p++] != ',') || p >= t.len - 1 || t.ptr[p++] != '"') {
            return fault(f, i, "tags", "tags must be an array of strings in canonical form");
        }
        size_t n = 0;
        while (p < t.len - 1 && t.ptr[p] != '"') {
            char c = t.ptr[p++];
            if (c == '\\') {
                c = p < t.len - 1 ? t.ptr[p++] : 0;
                if (c != '"' && c != '\\') {
                    return fault(f, i, "tags", "tags must be an array of strings in "
                                               "canonical form");
                }
            }
            if (n == LIMIT_TAG_BYTES) {
                return tag_fault(f, i);
            }
            one[n++] = c;
        }
        if (p++ >= t.len - 1) {
            return fault(f, i, "tags", "tags must be an array of strings in canonical form");
        }
        int rc = check_tag((struct slice){one, n}, flags, i, f);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int check_event(const struct append_event *ev, unsigned flags, size_t i,
                       struct append_fault *f)
{
    if (!engine_name_ok(ev->type.ptr, ev->type.len, LIMIT_TYPE_BYTES)) {
        return type_fault(f, i);
    }
    if (!minified_value(ev->data, 0)) {
        return fault(f, i, "data", "data must be minified JSON text");
    }
    if (!minified_value(ev->metadata, '{')) {
        return fault(f, i, "metadata", "metadata must be a minified JSON object");
    }
    if (ev->subject.len && !engine_name_ok(ev->subject.ptr, ev->subject.len,
                                           LIMIT_SUBJECT_BYTES)) {
        return subject_fault(f, i);
    }
    return check_tags_text(ev->tags, flags, i, f);
}

static int part_fault(struct append_fault *f, size_t p, const char *code, const char *msg)
{
    f->code = code;
    f->part = p;
    f->has_event = false;
    snprintf(f->leaf, sizeof f->leaf, "stream");
    snprintf(f->message, sizeof f->message, "%s", msg);
    return ERR_INVALID;
}

/* The reserved streams callers may append to (by their names in engine.h). */
static bool is_reserved_ok(struct slice s)
{
    return (s.len == sizeof ENGINE_DCB_STREAM - 1 && !memcmp(s.ptr, ENGINE_DCB_STREAM, s.len)) ||
           (s.len == sizeof ENGINE_LOGIC_STREAM - 1 &&
            !memcmp(s.ptr, ENGINE_LOGIC_STREAM, s.len));
}

/* Part p names the stream of the earlier part q: neither may expect a version (each part
 * would see its stream at another version). Names the part that carries one, q first. */
static int check_repeat(const struct append_req *req, size_t p, size_t q,
                        struct append_fault *f)
{
    size_t bad = req->parts[q].expect.kind != EXPECT_ANY ? q : p;
    if (req->parts[bad].expect.kind == EXPECT_ANY) {
        return 0;
    }
    part_fault(f, bad, "invalid_request",
               "a stream that appears in several parts cannot carry an expected version");
    snprintf(f->leaf, sizeof f->leaf, "expectedVersion");
    return ERR_INVALID;
}

static int check_stream(const struct append_req *req, size_t p, struct append_fault *f)
{
    struct slice s = req->parts[p].stream;
    if (!is_reserved_ok(s) && !engine_stream_writable(s.ptr, s.len)) {
        return part_fault(f, p, "invalid_name",
                          "stream names are 1 to 256 bytes of UTF-8 without control "
                          "characters, not starting with $, other than . and ..");
    }
    for (size_t q = 0; q < p; q++) {
        struct slice o = req->parts[q].stream;
        if (o.len == s.len && !memcmp(o.ptr, s.ptr, s.len)) {
            int rc = check_repeat(req, p, q, f);
            if (rc) {
                return rc;
            }
        }
    }
    if (req->parts[p].count == 0) {
        return part_fault(f, p, "invalid_request", "a part has at least one event");
    }
    return 0;
}

/* No event id twice in one request (it could never be stored). */
static int check_ids(const struct append_req *req, struct append_fault *f)
{
    struct strmap seen;
    strmap_init(&seen, 1);
    int rc = 0;
    for (size_t p = 0; p < req->nparts && !rc; p++) {
        const struct append_part *part = &req->parts[p];
        for (size_t i = 0; i < part->count && !rc; i++) {
            bool is_new = true;
            if (part->events[i].has_id) {
                strmap_put(&seen, part->events[i].id, UUID_LEN, &is_new);
            }
            if (!is_new) {
                rc = fault(f, i, "id", "the same event id appears twice in the request");
                f->part = p;
            }
        }
    }
    strmap_fini(&seen);
    return rc;
}

int engine_append_check(const struct append_req *req, struct append_fault *f)
{
    memset(f, 0, sizeof(*f));
    if (req->nparts == 0 || req->nparts > LIMIT_APPEND_PARTS) {
        return part_fault(f, 0, "invalid_request", "an append has 1 to 100 parts");
    }
    size_t ids = 0;
    for (size_t p = 0; p < req->nparts; p++) {
        int rc = check_stream(req, p, f);
        for (size_t i = 0; !rc && i < req->parts[p].count; i++) {
            rc = check_event(&req->parts[p].events[i], req->flags, i, f);
            ids += req->parts[p].events[i].has_id;
            f->part = p;
        }
        if (rc) {
            return rc;
        }
    }
    return ids > 1 ? check_ids(req, f) : 0;
}
