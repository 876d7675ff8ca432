/* Request body parsing. Strategy: json/validate checks the whole body against RFC 8259 (with
 * the byte offset of the first error); the envelope is then read straight from the text with
 * json/jsonx (names decoded, each allowed once), and each event's data, metadata and tags are
 * stored as their raw text, minified, so numbers, key order, duplicate keys and escapes in
 * users' data are kept exactly as sent. No DOM is built. */
#include "ops/parse.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/canon.h"
#include "json/jsonx.h"
#include "json/validate.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

int parse_fail(struct parse_error *err, unsigned status, const char *code, const char *field,
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

/* Validates body as JSON text; answers invalid_json with the byte offset. */
static int validate(struct slice body, struct parse_error *err)
{
    struct jsonv_error ve;
    if (jsonv_validate(body.ptr, body.len, LIMIT_JSON_DEPTH, &ve) != 0) {
        parse_fail(err, 400, "invalid_json", NULL, "malformed JSON: %s", ve.msg);
        err->offset = (long)ve.offset;
        return ERR_INVALID;
    }
    return 0;
}

int parse_json_object(struct slice body, void **out, struct parse_error *err)
{
    if (validate(body, err)) {
        return ERR_INVALID;
    }
    json_error_t je;
    json_t *root = json_loadb(body.ptr, body.len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        return parse_fail(err, 400, "invalid_request", NULL, "%s", je.text); /* a name given twice */
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return parse_fail(err, 400, "invalid_request", NULL, "the body must be a JSON object");
    }
    *out = root;
    return 0;
}

/* Member names of an envelope object, decoded, each allowed once. */
struct members {
    const char *const *names;   /* allowed names */
    int count;                  /* how many */
    struct slice vals[8];       /* value span per name (ptr NULL when absent) */
};

/* Collects the members of envelope object obj into m; field names the object in errors. */
static int take_members(struct slice obj, struct members *m, const char *field,
                        struct parse_error *err)
{
    struct buf key;
    buf_init(&key);
    bool dup = false;
    int rc = 0;
    if (jsonx_members(obj, m->names, m->count, m->vals, &key, &dup) != 0) {
        char f[96];
        snprintf(f, sizeof f, "%s%s%.60s", field, field[0] ? "." : "", key.ptr ? key.ptr : "");
        rc = parse_fail(err, 400, field[0] ? "invalid_event" : "invalid_request", f,
                        dup ? "a member name appears twice" : "unknown field");
    }
    buf_fini(&key);
    return rc;
}

static bool present(struct slice v)
{
    return v.ptr && jsonx_kind(v) != 'n';
}

static int parse_expect(struct slice v, struct expect *out, struct parse_error *err)
{
    static const char F[] = "expectedVersion";
    out->kind = EXPECT_ANY;
    out->version = 0;
    if (!present(v)) {
        return 0;
    }
    char k = jsonx_kind(v);
    if (k >= '0' && k <= '9') {
        char num[24];
        if (v.len >= sizeof num) {
            return parse_fail(err, 400, "invalid_expected_version", F, "version number too large");
        }
        memcpy(num, v.ptr, v.len);
        num[v.len] = '\0';
        if (parse_u64(num, &out->version) != 0) {
            return parse_fail(err, 400, "invalid_expected_version", F,
                        "must be a whole number from 0");
        }
        out->kind = EXPECT_VERSION;
        return 0;
    }
    static const char *words[] = {"\"any\"", "\"no_stream\"", "\"exists\""};
    static const enum expect_kind kinds[] = {EXPECT_ANY, EXPECT_NO_STREAM, EXPECT_EXISTS};
    for (int i = 0; i < 3; i++) {
        if (v.len == strlen(words[i]) && !memcmp(v.ptr, words[i], v.len)) {
            out->kind = kinds[i];
            return 0;
        }
    }
    return parse_fail(err, 400, "invalid_expected_version", F,
                k == '-' ? "must be 0 or more"
                         : "must be a version number, \"any\", \"no_stream\" or \"exists\"");
}

/* Names event i's member leaf ("" = the event) as a field path. */
static int event_fault(const struct append_fault *f, struct parse_error *err)
{
    char path[96];
    snprintf(path, sizeof path, "events[%zu]%s%.60s", f->event, f->leaf[0] ? "." : "", f->leaf);
    return parse_fail(err, 400, f->code, path, "%s", f->message);
}

static int parse_events(struct slice events, size_t n, unsigned flags,
                        struct parsed_append *out, struct parse_error *err)
{
    struct engine_events evs;
    struct append_fault f;
    if (engine_events_parse(events, n, flags, &evs, &f) != 0) {
        return event_fault(&f, err);
    }
    buf_fini(&out->text);
    out->events = evs.events;
    out->count = evs.count;
    out->text = evs.text;
    return 0;
}

static int check_size(struct parsed_append *p, struct slice stream, const struct limits *lim,
                      struct parse_error *err)
{
    for (size_t i = 0; i < p->count; i++) {
        size_t bytes = engine_event_bytes(stream, &p->events[i]);
        if (bytes > lim->event_bytes) {
            char f[96];
            snprintf(f, sizeof f, "events[%zu]", i);
            return parse_fail(err, 413, "event_too_large", f,
                        "event takes %zu bytes; the limit is %zu", bytes, lim->event_bytes);
        }
    }
    return 0;
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

/* Prefixes err->field with prefix (a part's path, "appends[2].") when it names a field. */
static int in_part(int rc, const char *prefix, struct parse_error *err)
{
    if (rc && prefix[0]) {
        char f[sizeof err->field];
        snprintf(f, sizeof f, "%.40s%.55s", prefix, err->field[0] ? err->field : "events");
        memcpy(err->field, f, sizeof f);
    }
    return rc;
}

/* Parses the events and expectedVersion of one part (values already validated) for stream. */
static int parse_part(struct slice events, struct slice expect, struct slice stream,
                      const char *prefix, const struct limits *lim, unsigned flags,
                      struct parsed_append *out, struct parse_error *err)
{
    size_t n = events.ptr && jsonx_kind(events) == '[' ? count_items(events) : 0;
    if (n == 0) {
        return in_part(parse_fail(err, 400, "invalid_request", "events",
                                  "events must be a non-empty array of events"),
                       prefix, err);
    }
    if (n > lim->batch_events) {
        return in_part(parse_fail(err, 413, "too_many_events", "events",
                                  "%zu events in one request; the limit is %zu", n,
                                  lim->batch_events),
                       prefix, err);
    }
    int rc = parse_expect(expect, &out->expect, err);
    if (!rc) rc = parse_events(events, n, flags, out, err);
    if (!rc) rc = check_size(out, stream, lim, err);
    return in_part(rc, prefix, err);
}

int parse_append(struct slice body, struct slice stream, const struct limits *lim,
                 unsigned flags, struct parsed_append *out, struct parse_error *err)
{
    static const char *const TOP[] = {"events", "expectedVersion"};
    memset(out, 0, sizeof(*out));
    buf_init(&out->text);
    if (validate(body, err)) {
        return ERR_INVALID;
    }
    if (jsonx_kind(body) != '{') {
        return parse_fail(err, 400, "invalid_request", NULL, "the body must be a JSON object");
    }
    struct members m = {TOP, 2, {{0}}};
    int rc = take_members(body, &m, "", err);
    if (!rc) rc = parse_part(m.vals[0], m.vals[1], stream, "", lim, flags, out, err);
    if (rc) {
        parse_append_fini(out);
    }
    return rc;
}

/* One element of "appends": {"stream", "events", "expectedVersion"?}. */
static int parse_multi_part(struct slice obj, size_t i, const struct limits *lim, unsigned flags,
                            struct parsed_append *out, struct parse_error *err)
{
    static const char *const PART[] = {"stream", "events", "expectedVersion"};
    char prefix[32];
    snprintf(prefix, sizeof prefix, "appends[%zu].", i);
    memset(out, 0, sizeof(*out));
    buf_init(&out->text);
    if (jsonx_kind(obj) != '{') {
        prefix[strlen(prefix) - 1] = '\0';
        return parse_fail(err, 400, "invalid_request", prefix,
                          "each part is an object with stream, events and expectedVersion");
    }
    struct members m = {PART, 3, {{0}}};
    int rc = in_part(take_members(obj, &m, "", err), prefix, err);
    struct buf name;
    buf_init(&name);
    if (!rc && (!m.vals[0].ptr || jsonx_kind(m.vals[0]) != '"' ||
                jsonx_string(m.vals[0], &name) != 0 ||
                !engine_stream_writable(name.ptr, name.len))) {
        rc = in_part(parse_fail(err, 400, "invalid_name", "stream",
                                "stream names are 1 to 256 bytes of UTF-8 without control "
                                "characters, not starting with $, other than . and .."),
                     prefix, err);
    }
    if (!rc) {
        out->stream = buf_steal(&name, &out->stream_len);
        rc = parse_part(m.vals[1], m.vals[2], (struct slice){out->stream, out->stream_len},
                        prefix, lim, flags, out, err);
    }
    buf_fini(&name);
    return rc;
}

static int parse_parts(struct slice appends, const struct limits *lim, unsigned flags,
                       struct parsed_multi *out, struct parse_error *err)
{
    size_t n = appends.ptr && jsonx_kind(appends) == '[' ? count_items(appends) : 0;
    if (n == 0 || n > LIMIT_APPEND_PARTS) {
        return parse_fail(err, 400, "invalid_request", "appends",
                          "appends must be an array of 1 to %d parts", LIMIT_APPEND_PARTS);
    }
    out->parts = xcalloc(n, sizeof(*out->parts));
    size_t pos = 0, total = 0;
    struct slice item;
    int rc = 0;
    for (size_t i = 0; !rc && jsonx_next_item(appends, &pos, &item); i++) {
        rc = parse_multi_part(item, i, lim, flags, &out->parts[i], err);
        out->nparts = i + 1;
        total += out->parts[i].count;
    }
    if (!rc && total > lim->batch_events) {
        rc = parse_fail(err, 413, "too_many_events", "appends",
                        "%zu events in one request; the limit is %zu", total, lim->batch_events);
    }
    return rc;
}

static int parse_dcb_events(struct slice events, const struct limits *lim, unsigned flags,
                            struct parsed_multi *out, struct parse_error *err)
{
    out->parts = xcalloc(1, sizeof(*out->parts));
    out->nparts = 1;
    struct parsed_append *p = &out->parts[0];
    buf_init(&p->text);
    p->stream = xstrndup(ENGINE_DCB_STREAM, sizeof ENGINE_DCB_STREAM - 1);
    p->stream_len = sizeof ENGINE_DCB_STREAM - 1;
    return parse_part(events, (struct slice){NULL, 0}, (struct slice){p->stream, p->stream_len},
                      "", lim, flags, p, err);
}

int parse_multi_append(struct slice body, const struct limits *lim, unsigned flags,
                       struct parsed_multi *out, struct parse_error *err)
{
    static const char *const TOP[] = {"appends", "events", "condition", "conditions"};
    memset(out, 0, sizeof(*out));
    if (validate(body, err)) {
        return ERR_INVALID;
    }
    if (jsonx_kind(body) != '{') {
        return parse_fail(err, 400, "invalid_request", NULL, "the body must be a JSON object");
    }
    struct members m = {TOP, 4, {{0}}};
    int rc = take_members(body, &m, "", err);
    if (!rc && (!m.vals[0].ptr) == (!m.vals[1].ptr)) {
        rc = parse_fail(err, 400, "invalid_request", m.vals[0].ptr ? "events" : "appends",
                        "give appends (parts per stream) or events (stream-less), not both");
    }
    if (!rc) {
        rc = m.vals[0].ptr ? parse_parts(m.vals[0], lim, flags, out, err)
                           : parse_dcb_events(m.vals[1], lim, flags, out, err);
    }
    out->condition = m.vals[2];
    out->conditions = m.vals[3];
    if (rc) {
        parse_multi_fini(out);
    }
    return rc;
}

void parse_multi_fini(struct parsed_multi *pm)
{
    for (size_t i = 0; i < pm->nparts; i++) {
        parse_append_fini(&pm->parts[i]);
    }
    free(pm->parts);
    memset(pm, 0, sizeof(*pm));
}

void parse_append_fini(struct parsed_append *p)
{
    free(p->events);
    free(p->stream);
    p->stream = NULL;
    buf_fini(&p->text);
    p->events = NULL;
    p->count = 0;
}

int parse_stream_meta(struct slice body, struct stream_meta *out, struct parse_error *err)
{
    static const char *const NAMES[] = {"maxAge", "maxCount", "truncateBefore"};
    memset(out, 0, sizeof(*out));
    json_t *root;
    int rc = parse_json_object(body, (void **)&root, err);
    if (rc) {
        return rc;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        int k = -1;
        for (int i = 0; i < 3; i++) {
            k = strcmp(key, NAMES[i]) == 0 ? i : k;
        }
        if (k < 0) {
            char f[64];
            snprintf(f, sizeof f, "%.60s", key);
            rc = parse_fail(err, 400, "invalid_request", f, "unknown member");
            break;
        }
        if (json_is_null(val)) {
            continue;
        }
        if (!json_is_integer(val) || json_integer_value(val) < 1 ||
            (k == 0 && json_integer_value(val) > LIMIT_MAX_AGE_S)) {
            rc = parse_fail(err, 400, "invalid_request", NAMES[k],
                            "must be a whole number from 1 (maxAge: seconds, at most %d), or null",
                            LIMIT_MAX_AGE_S);
            break;
        }
        uint64_t v = (uint64_t)json_integer_value(val);
        if (k == 0) {
            out->max_age_us = v * 1000000u;
        } else if (k == 1) {
            out->max_count = v;
        } else {
            out->truncate_before = v;
        }
    }
    json_decref(root);
    return rc;
}

/* A whole number from 1 to max, or null (0); absent leaves *out as it is. */
static int setting_u64(json_t *v, const char *field, uint64_t max, uint64_t *out,
                       struct parse_error *err)
{
    if (!v) {
        return 0;
    }
    *out = 0;
    if (json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || (uint64_t)json_integer_value(v) > max) {
        return parse_fail(err, 400, "invalid_request", field,
                          "must be a whole number from 1 to %llu, or null",
                          (unsigned long long)max);
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Checks that obj has no member but allowed[0..n); field_prefix names it in the error. */
static int known_members(json_t *obj, const char *const *allowed, size_t n,
                         const char *field_prefix, struct parse_error *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        size_t i = 0;
        while (i < n && strcmp(key, allowed[i]) != 0) {
            i++;
        }
        if (i == n) {
            char f[96];
            snprintf(f, sizeof f, "%s%.60s", field_prefix, key);
            return parse_fail(err, 400, "invalid_request", f, "unknown member");
        }
    }
    return 0;
}

static int settings_members(json_t *s, struct db_settings *out, struct parse_error *err)
{
    static const char *const KNOWN[] = {"retentionPeriodDays", "maxStreamSizeBytes",
                                        "rateLimit", "idempotencyTtlSeconds"};
    if (!json_is_object(s)) {
        return parse_fail(err, 400, "invalid_request", "settings", "settings must be an object");
    }
    int rc = known_members(s, KNOWN, 4, "settings.", err);
    if (!rc) rc = setting_u64(json_object_get(s, "retentionPeriodDays"),
                              "settings.retentionPeriodDays", LIMIT_RETENTION_DAYS,
                              &out->retention_days, err);
    if (!rc) rc = setting_u64(json_object_get(s, "maxStreamSizeBytes"),
                              "settings.maxStreamSizeBytes", UINT64_MAX >> 1,
                              &out->max_stream_bytes, err);
    uint64_t rate = out->rate_limit;
    if (!rc) rc = setting_u64(json_object_get(s, "rateLimit"), "settings.rateLimit",
                              LIMIT_RATE_MAX, &rate, err);
    out->rate_limit = (uint32_t)rate;
    if (!rc) rc = setting_u64(json_object_get(s, "idempotencyTtlSeconds"),
                              "settings.idempotencyTtlSeconds", LIMIT_IDEM_TTL_MAX_S,
                              &out->idem_ttl_s, err);
    return rc;
}

int parse_db_settings(const void *rootp, bool patch, struct db_settings *out,
                      struct parse_error *err)
{
    static const char *const KNOWN[] = {"description", "settings", "name"};
    json_t *root = (json_t *)rootp;
    if (!patch) {
        memset(out, 0, sizeof(*out));
    }
    int rc = known_members(root, KNOWN, patch ? 2 : 3, "", err);
    if (rc) {
        return rc;
    }
    json_t *d = json_object_get(root, "description");
    if (d && !json_is_null(d)) {
        if (!json_is_string(d) || json_string_length(d) > LIMIT_DESCRIPTION_BYTES ||
            strlen(json_string_value(d)) != json_string_length(d)) {
            return parse_fail(err, 400, "invalid_request", "description",
                              "a string of at most %d bytes", LIMIT_DESCRIPTION_BYTES);
        }
        snprintf(out->description, sizeof out->description, "%s", json_string_value(d));
    } else if (d) {
        out->description[0] = '\0';
    }
    json_t *s = json_object_get(root, "settings");
    return s && !json_is_null(s) ? settings_members(s, out, err) : 0;
}
