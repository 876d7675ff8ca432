/* Components: definitions and their JSON forms (logic/component.h). */
#include "logic/component.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/limits.h"

static const char *const KIND_NAMES[] = {NULL, "reducer", "projection", "view", "command",
                                         "document"};

enum comp_kind comp_kind_parse(const char *s)
{
    for (int k = COMP_REDUCER; k <= COMP_DOCUMENT; k++) {
        if (s && strcmp(s, KIND_NAMES[k]) == 0) {
            return (enum comp_kind)k;
        }
    }
    return 0;
}

const char *comp_kind_name(enum comp_kind kind)
{
    return kind >= COMP_REDUCER && kind <= COMP_DOCUMENT ? KIND_NAMES[kind] : "unknown";
}

const char *const *comp_entries(enum comp_kind kind)
{
    static const char *const reducer[] = {"reduce", NULL};
    static const char *const projection[] = {"key", "apply", NULL};
    static const char *const view[] = {"evolve", NULL};
    static const char *const command[] = {"decide", NULL};
    static const char *const none[] = {NULL};
    switch (kind) {
    case COMP_REDUCER: return reducer;
    case COMP_PROJECTION: return projection;
    case COMP_VIEW: return view;
    case COMP_COMMAND: return command;
    case COMP_DOCUMENT: return none;
    }
    return NULL;
}

bool comp_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > COMP_NAME_BYTES) {
        return false;
    }
    bool letter = (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z');
    for (size_t i = 0; letter && i < n; i++) {
        char c = s[i];
        letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
    }
    return letter;
}

static int refuse(struct comp_error *err, int rc, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct comp_error *err, int rc, const char *field, const char *fmt, ...)
{
    snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

/* A string member decoded into a malloc'd NUL-terminated copy; NULL when v is not a string
 * (or holds a NUL byte). */
static char *take_string(struct slice v, size_t *len)
{
    if (!v.ptr || jsonx_kind(v) != '"') {
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    if (jsonx_string(v, &b) != 0 || (b.len && memchr(b.ptr, '\0', b.len))) {
        buf_fini(&b);
        return NULL;
    }
    buf_addc(&b, '\0');
    b.len--;
    return buf_steal(&b, len);
}

enum { M_KIND, M_LANG, M_SOURCE, M_CATEGORY, M_FILTER, M_WEBHOOK, M_FORMAT, M_META, M_N };
static const char *const MEMBERS[] = {"kind", "language", "source", "category", "filter",
                                      "webhook", "eventFormat", "meta"};

static int take_kind_lang(const struct slice *m, struct comp_def *out, struct comp_error *err)
{
    char *s = take_string(m[M_KIND], NULL);
    out->kind = comp_kind_parse(s);
    free(s);
    if (!out->kind) {
        return refuse(err, ERR_INVALID, "kind", "kind is one of \"reducer\", \"projection\", "
                      "\"view\", \"command\", \"document\"");
    }
    s = take_string(m[M_LANG], NULL);
    out->lang = logic_lang_parse(s ? s : "");
    free(s);
    bool is_doc = out->kind == COMP_DOCUMENT;
    if (is_doc && out->lang != LOGIC_LANG_JSON) {
        return refuse(err, ERR_INVALID, "language", "a document's language is \"json\"");
    }
    if (!out->lang || (!is_doc && out->lang == LOGIC_LANG_JSON)) {
        return refuse(err, ERR_INVALID, "language",
                      "language is one of \"lua\", \"javascript\", \"typescript\", "
                      "\"wasm\", \"tick\" (\"json\" for a document)");
    }
    return 0;
}

/* A whole number member in min..max (dflt when absent). */
static int take_u32(struct slice v, const char *field, uint32_t min, uint32_t max, uint32_t dflt,
                    uint32_t *out, struct comp_error *err)
{
    *out = dflt;
    if (!v.ptr) {
        return 0;
    }
    uint64_t n;
    if (!jsonx_u64(v, &n) || n < min || n > max) {
        return refuse(err, ERR_INVALID, field, "%s is a whole number from %u to %u", field,
                      min, max);
    }
    *out = (uint32_t)n;
    return 0;
}

static int take_hook_headers(struct slice h, struct comp_webhook *out, struct comp_error *err)
{
    if (!h.ptr || jsonx_kind(h) == 'n') {
        return 0;
    }
    if (jsonx_kind(h) != '{') {
        return refuse(err, ERR_INVALID, "webhook.headers",
                      "headers is an object of at most %d name: value strings",
                      COMP_WEBHOOK_HEADERS);
    }
    size_t pos = 0;
    struct slice k, v;
    while (jsonx_next_member(h, &pos, &k, &v)) {
        char *name = take_string(k, NULL), *value = take_string(v, NULL);
        bool ok = name && value && out->nheaders < COMP_WEBHOOK_HEADERS &&
                  delivery_header_ok(name, value);
        if (ok) {
            snprintf(out->headers[out->nheaders++], DELIVERY_HEADER_BYTES + 1, "%s: %s", name,
                     value);
        }
        free(name);
        free(value);
        if (!ok) {
            return refuse(err, ERR_INVALID, "webhook.headers",
                          "at most %d headers, each a token name the server does not set and "
                          "a string value without line breaks, at most %d bytes",
                          COMP_WEBHOOK_HEADERS, DELIVERY_HEADER_BYTES);
        }
    }
    return 0;
}

int comp_webhook_parse(struct slice json, struct comp_webhook *out, struct comp_error *err)
{
    static const char *const HOOK[] = {"url", "headers", "maxAttempts", "backoffMs",
                                       "isolateSecret"};
    memset(out, 0, sizeof(*out));
    struct slice m[5];
    struct buf bad;
    buf_init(&bad);
    bool dup = false;
    int rc = jsonx_kind(json) == '{' ? jsonx_members(json, HOOK, 5, m, &bad, &dup) : ERR_INVALID;
    if (rc) {
        refuse(err, rc, "webhook", "webhook is an object of url, headers, maxAttempts, "
               "backoffMs and isolateSecret%s%.40s", bad.ptr ? ", not " : "",
               bad.ptr ? bad.ptr : "");
    }
    buf_fini(&bad);
    size_t n = 0;
    char *url = rc ? NULL : take_string(m[0], &n);
    if (!rc && (!url || n > DELIVERY_URL_BYTES ||
                (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))) {
        rc = refuse(err, ERR_INVALID, "webhook.url", "url is an http:// or https:// URL of at "
                    "most %d bytes", DELIVERY_URL_BYTES);
    }
    if (!rc) {
        snprintf(out->url, sizeof out->url, "%s", url);
    }
    free(url);
    if (!rc) rc = take_hook_headers(m[1], out, err);
    if (!rc) rc = take_u32(m[2], "webhook.maxAttempts", 1, COMP_WEBHOOK_ATTEMPTS_MAX, 5,
                           &out->max_attempts, err);
    if (!rc) rc = take_u32(m[3], "webhook.backoffMs", 0, COMP_WEBHOOK_BACKOFF_MAX_MS, 1000,
                           &out->backoff_ms, err);
    if (!rc && m[4].ptr && jsonx_kind(m[4]) != 't' && jsonx_kind(m[4]) != 'f') {
        rc = refuse(err, ERR_INVALID, "webhook.isolateSecret", "isolateSecret is true or false");
    }
    out->isolate = !rc && m[4].ptr && jsonx_kind(m[4]) == 't';
    return rc;
}

/* The webhook member: projections only, kept as minified text once it reads well. */
static int take_webhook(struct slice v, struct comp_def *out, struct comp_error *err)
{
    if (!v.ptr || jsonx_kind(v) == 'n') {
        return 0;
    }
    if (out->kind != COMP_PROJECTION) {
        return refuse(err, ERR_INVALID, "webhook", "only a projection takes a webhook");
    }
    if (v.len > COMP_WEBHOOK_BYTES) {
        return refuse(err, ERR_INVALID, "webhook", "webhook is at most %d bytes of JSON",
                      COMP_WEBHOOK_BYTES);
    }
    struct comp_webhook *hook = xcalloc(1, sizeof(*hook));
    int rc = comp_webhook_parse(v, hook, err);
    free(hook);
    if (!rc) {
        struct buf f;
        buf_init(&f);
        jsonx_minify(v, &f);
        out->webhook = buf_steal(&f, NULL);
    }
    return rc;
}

static int take_binding(const struct slice *m, struct comp_def *out, struct comp_error *err)
{
    bool wants_category = out->kind == COMP_REDUCER;
    bool wants_filter = out->kind == COMP_PROJECTION || out->kind == COMP_VIEW;
    if (m[M_CATEGORY].ptr && jsonx_kind(m[M_CATEGORY]) != 'n' && !wants_category) {
        return refuse(err, ERR_INVALID, "category", "only a reducer is bound to a category");
    }
    if (m[M_FILTER].ptr && jsonx_kind(m[M_FILTER]) != 'n' && !wants_filter) {
        return refuse(err, ERR_INVALID, "filter", "only projections and views take a filter");
    }
    if (wants_category) {
        size_t n = 0;
        out->category = take_string(m[M_CATEGORY], &n);
        struct slice cat = {out->category, n};
        if (!out->category || n == 0 || n > LIMIT_STREAM_NAME_BYTES ||
            comp_category_of(cat).len != n) {
            return refuse(err, ERR_INVALID, "category",
                          "a reducer needs a category: the part of its streams' names before "
                          "the first '-', '_', ':' or '/' (1 to %d bytes)",
                          LIMIT_STREAM_NAME_BYTES);
        }
    }
    if (wants_filter && m[M_FILTER].ptr && jsonx_kind(m[M_FILTER]) != 'n') {
        if (jsonx_kind(m[M_FILTER]) != '{' || m[M_FILTER].len > COMP_FILTER_BYTES) {
            return refuse(err, ERR_INVALID, "filter",
                          "filter is a query filter object of at most %d bytes",
                          COMP_FILTER_BYTES);
        }
        struct buf f;
        buf_init(&f);
        jsonx_minify(m[M_FILTER], &f);
        out->filter = buf_steal(&f, NULL);
    }
    return take_webhook(m[M_WEBHOOK], out, err);
}

static bool format_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > COMP_FORMAT_NAME_BYTES) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* eventFormat (a format's name) and meta (an object kept as minified text). */
static int take_format_meta(const struct slice *m, struct comp_def *out, struct comp_error *err)
{
    if (m[M_FORMAT].ptr && jsonx_kind(m[M_FORMAT]) != 'n') {
        size_t n = 0;
        out->event_format = take_string(m[M_FORMAT], &n);
        if (!out->event_format || !format_name_ok(out->event_format, n)) {
            return refuse(err, ERR_INVALID, "eventFormat", "eventFormat is the name of an "
                          "event format: 1 to %d of a-z, 0-9, '_' and '-'",
                          COMP_FORMAT_NAME_BYTES);
        }
    }
    if (!m[M_META].ptr || jsonx_kind(m[M_META]) == 'n') {
        return 0;
    }
    struct buf f;
    buf_init(&f);
    if (jsonx_kind(m[M_META]) == '{') {
        jsonx_minify(m[M_META], &f);
    }
    if (!f.len || f.len > COMP_META_BYTES) {
        buf_fini(&f);
        return refuse(err, ERR_INVALID, "meta", "meta is an object of at most %d bytes of JSON",
                      COMP_META_BYTES);
    }
    out->meta = buf_steal(&f, NULL);
    return 0;
}

static int parse_members(struct slice body, struct comp_def *out, struct comp_error *err)
{
    struct jsonv_error ve;
    if (jsonv_validate(body.ptr, body.len, LIMIT_JSON_DEPTH, &ve) != 0 ||
        jsonx_kind(body) != '{') {
        return refuse(err, ERR_INVALID, "", "the body must be a JSON object");
    }
    struct slice m[M_N];
    struct buf bad;
    buf_init(&bad);
    bool dup = false;
    int rc = jsonx_members(body, MEMBERS, M_N, m, &bad, &dup);
    if (rc) {
        refuse(err, ERR_INVALID, "", "%s: %.60s", dup ? "a member appears twice"
                                                       : "unknown member", bad.ptr ? bad.ptr : "");
    }
    buf_fini(&bad);
    if (!rc) rc = take_kind_lang(m, out, err);
    if (!rc) {
        out->source = take_string(m[M_SOURCE], &out->source_len);
        if (!out->source || out->source_len == 0) {
            rc = refuse(err, ERR_INVALID, "source", "source is the component's code, a string");
        } else if (out->source_len > COMP_SOURCE_BYTES) {
            rc = refuse(err, ERR_TOOBIG, "source", "source is at most %d bytes",
                        COMP_SOURCE_BYTES);
        }
    }
    if (!rc) rc = take_binding(m, out, err);
    return rc ? rc : take_format_meta(m, out, err);
}

int comp_parse(const char *name, struct slice body, struct comp_def *out,
               struct comp_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!comp_name_ok(name, strlen(name))) {
        return refuse(err, ERR_INVALID, "name",
                      "a component name is 1 to %d letters, digits, '_', '-' or '.', from a "
                      "letter", COMP_NAME_BYTES);
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    int rc = parse_members(body, out, err);
    if (rc) {
        comp_def_fini(out);
    }
    return rc;
}

void comp_to_json(const struct comp_def *def, struct buf *out)
{
    buf_adds(out, "{\"name\":");
    buf_add_json_str(out, def->name, strlen(def->name));
    buf_adds(out, ",\"kind\":\"");
    buf_adds(out, comp_kind_name(def->kind));
    buf_adds(out, "\",\"language\":\"");
    buf_adds(out, logic_lang_name(def->lang));
    buf_adds(out, "\",\"version\":");
    buf_add_u64(out, def->version);
    if (def->category) {
        buf_adds(out, ",\"category\":");
        buf_add_json_str(out, def->category, strlen(def->category));
    }
    if (def->filter) {
        buf_adds(out, ",\"filter\":");
        buf_adds(out, def->filter);
    }
    if (def->webhook) {
        buf_adds(out, ",\"webhook\":");
        buf_adds(out, def->webhook);
    }
    if (def->event_format) {
        buf_adds(out, ",\"eventFormat\":");
        buf_add_json_str(out, def->event_format, strlen(def->event_format));
    }
    if (def->meta) {
        buf_adds(out, ",\"meta\":");
        buf_adds(out, def->meta);
    }
    buf_adds(out, ",\"source\":");
    buf_add_json_str(out, def->source, def->source_len);
    buf_addc(out, '}');
}

int comp_from_json(struct slice text, struct comp_def *out)
{
    struct slice name, version;
    struct buf n;
    buf_init(&n);
    memset(out, 0, sizeof(*out));
    struct jsonv_error ve;
    if (jsonv_validate(text.ptr, text.len, LIMIT_JSON_DEPTH, &ve) != 0 ||
        jsonx_kind(text) != '{' || !jsonx_member(text, "name", &name) ||
        !jsonx_member(text, "version", &version) || jsonx_kind(name) != '"' ||
        jsonx_string(name, &n) != 0 || n.len > COMP_NAME_BYTES) {
        buf_fini(&n);
        return ERR_CORRUPT;
    }
    char *end = NULL;
    char num[24];
    snprintf(num, sizeof num, "%.*s", (int)(version.len < 23 ? version.len : 23), version.ptr);
    unsigned long long v = strtoull(num, &end, 10);
    /* the stored form is the deploy body's members plus name and version */
    struct buf body;
    buf_init(&body);
    size_t pos = 0;
    struct slice k, val;
    buf_addc(&body, '{');
    while (jsonx_next_member(text, &pos, &k, &val)) {
        if ((k.len == 6 && !memcmp(k.ptr, "\"name\"", 6)) ||
            (k.len == 9 && !memcmp(k.ptr, "\"version\"", 9))) {
            continue;
        }
        buf_adds(&body, body.len > 1 ? "," : "");
        buf_add(&body, k.ptr, k.len);
        buf_addc(&body, ':');
        buf_add(&body, val.ptr, val.len);
    }
    buf_addc(&body, '}');
    struct comp_error err;
    int rc = comp_parse(n.ptr, (struct slice){body.ptr, body.len}, out, &err);
    buf_fini(&body);
    buf_fini(&n);
    if (rc || !end || *end || v == 0) {
        comp_def_fini(out);
        return ERR_CORRUPT;
    }
    out->version = v;
    return 0;
}

struct slice comp_category_of(struct slice stream)
{
    return filter_category(stream); /* as the native API's `categories` filter cuts it */
}

static char *dup_or_null(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

void comp_def_copy(struct comp_def *out, const struct comp_def *src)
{
    *out = *src;
    out->source = xstrndup(src->source, src->source_len);
    out->category = dup_or_null(src->category);
    out->filter = dup_or_null(src->filter);
    out->webhook = dup_or_null(src->webhook);
    out->event_format = dup_or_null(src->event_format);
    out->meta = dup_or_null(src->meta);
}

void comp_def_fini(struct comp_def *def)
{
    free(def->source);
    free(def->category);
    free(def->filter);
    free(def->webhook);
    free(def->event_format);
    free(def->meta);
    def->source = def->category = def->filter = def->webhook = NULL;
    def->event_format = def->meta = NULL;
}
