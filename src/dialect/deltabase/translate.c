/* DeltaBase translators (translate.h). Structure is read with the span scanner (json/jsonx)
 * so that events' bytes pass through exactly as the client sent them; our own native answers
 * are read with jansson. */
#include "dialect/deltabase/translate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* ---- errors ---- */

/* DeltaBase's code for a native error. */
static const char *dlb_code(const struct gate_error *e)
{
    static const struct {
        const char *native, *dlb;
    } BY_CODE[] = {
        {"stream_not_found", "STREAM_NOT_FOUND"},
        {"wrong_expected_version", "VERSION_CONFLICT"},
        {"database_exists", "ALREADY_EXISTS"},
        {"subscription_exists", "ALREADY_EXISTS"},
        {"idempotency_key_reused", "IDEMPOTENCY_KEY_REUSED"},
        {"stream_deleted", "STREAM_DELETED"},
        {"duplicate_event_id", "DUPLICATE_EVENT_ID"},
        {"method_not_allowed", "METHOD_NOT_ALLOWED"},
        {"unsupported_media_type", "UNSUPPORTED_MEDIA_TYPE"},
    };
    for (size_t i = 0; i < sizeof BY_CODE / sizeof BY_CODE[0]; i++) {
        if (!strcmp(e->code, BY_CODE[i].native)) {
            return BY_CODE[i].dlb;
        }
    }
    switch (e->kind) {
    case GK_UNAUTHORIZED: return "UNAUTHORIZED";
    case GK_FORBIDDEN: return "FORBIDDEN";
    case GK_NOT_FOUND: return "NOT_FOUND";
    case GK_CONFLICT: return "CONFLICT";
    case GK_TOO_LARGE: return "PAYLOAD_TOO_LARGE";
    case GK_RATE_LIMITED: return "RATE_LIMITED";
    case GK_UNAVAILABLE: return "SERVICE_UNAVAILABLE";
    case GK_STORAGE_FULL: return "STORAGE_FULL";
    case 408: return "REQUEST_TIMEOUT";
    case 431: return "HEADERS_TOO_LARGE";
    default: return e->kind >= 500 ? "INTERNAL_ERROR" : "VALIDATION_ERROR";
    }
}

/* A native field name in DeltaBase's words. */
static void dlb_field(const char *f, struct buf *out)
{
    static const struct {
        const char *native, *dlb;
    } NAMES[] = {{"expectedVersion", "expectedStreamVersion"}, {"stream", "streamId"},
                 {"database", "eventStoreId"}};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (!strcmp(f, NAMES[i].native)) {
            buf_add_json_str(out, NAMES[i].dlb, strlen(NAMES[i].dlb));
            return;
        }
    }
    buf_add_json_str(out, f, strlen(f));
}

/* The failed DCB condition, in the DCB page's own body. */
static unsigned dcb_conflict(const struct gate_error *e, struct buf *out)
{
    buf_adds(out, "{\"error\":\"Append condition failed\",\"details\":");
    buf_add_json_str(out, e->message, strlen(e->message));
    buf_adds(out, ",\"conflictingPositions\":[");
    for (size_t i = 0; i < e->nconflicts; i++) {
        buf_printf(out, "%s%llu", i ? "," : "", (unsigned long long)e->conflicts[i]);
    }
    buf_adds(out, "],\"afterPosition\":");
    if (e->after_given) {
        buf_add_u64(out, e->after);
    } else {
        buf_adds(out, "null");
    }
    buf_addc(out, '}');
    return 409;
}

unsigned dlb_error(const struct gate_error *e, struct buf *out)
{
    if (!strcmp(e->code, "condition_failed") && e->has_after) {
        return dcb_conflict(e, out);
    }
    const char *code = dlb_code(e);
    const char *msg = !strcmp(e->code, "database_not_found") ? "event store not found"
                      : !strcmp(e->code, "wrong_expected_version")
                          ? "the stream's version does not match expectedStreamVersion"
                          : e->message;
    buf_adds(out, "{\"error\":{\"code\":");
    buf_add_json_str(out, code, strlen(code));
    buf_adds(out, ",\"message\":");
    buf_add_json_str(out, msg, strlen(msg));
    buf_adds(out, ",\"details\":{");
    bool first = true;
    if (e->field) {
        buf_adds(out, "\"field\":");
        dlb_field(e->field, out);
        first = false;
    }
    if (e->stream.ptr) {
        buf_adds(out, first ? "\"streamId\":" : ",\"streamId\":");
        buf_add_json_str(out, e->stream.ptr, e->stream.len);
        first = false;
    }
    if (e->has_actual_version) {
        buf_printf(out, "%s\"currentStreamVersion\":%lld", first ? "" : ",",
                   (long long)e->actual_version - 1);
        first = false;
    }
    if (e->details && *e->details) {
        buf_adds(out, first ? "" : ",");
        buf_adds(out, e->details);
    }
    buf_adds(out, "}}}");
    return e->kind == GK_GONE ? 410 : e->kind;
}

/* ---- events ---- */

void dlb_event(struct buf *out, const struct event_rec *ev)
{
    bool dcb = ev->stream.len == sizeof ENGINE_DCB_STREAM - 1 &&
               !memcmp(ev->stream.ptr, ENGINE_DCB_STREAM, ev->stream.len);
    char id[UUID_TEXT_LEN + 1], when[TIME_RFC3339_LEN];
    uuid_format(ev->id, id);
    time_format(ev->recorded_us, when);
    buf_adds(out, "{\"streamId\":");
    if (dcb) {
        buf_adds(out, "\"" DLB_DCB_STREAM "\"");
    } else {
        buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    }
    buf_printf(out, ",\"streamPosition\":%llu,\"globalPosition\":%llu,\"eventId\":\"%s\","
               "\"type\":",
               (unsigned long long)ev->version - 1, (unsigned long long)ev->position, id);
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"data\":");
    buf_add(out, ev->data.ptr, ev->data.len);
    buf_adds(out, ",\"metadata\":");
    buf_add(out, ev->metadata.ptr, ev->metadata.len);
    if (ev->tags.len > 2) {
        buf_adds(out, ",\"tags\":");
        buf_add(out, ev->tags.ptr, ev->tags.len);
    }
    /* the events one commit wrote share its recorded time: it names the transaction */
    buf_printf(out, ",\"schemaVersion\":\"1.0\",\"transactionId\":\"txn_%llx\",\"createdAt\":\"%s\"}",
               (unsigned long long)ev->recorded_us, when);
}

/* ---- requests ---- */

static int bad(struct parse_error *err, const char *field, const char *msg)
{
    return parse_fail(err, 400, "invalid_request", field, "%s", msg);
}

/* Checks that body is a JSON object with no members but allowed[0..n). */
static int object_with(struct slice body, const char *const *allowed, size_t n,
                       struct parse_error *err)
{
    struct jsonv_error je;
    if (jsonv_validate(body.ptr, body.len, 64, &je) != 0) {
        int rc = parse_fail(err, 400, "invalid_json", NULL, "the body is not JSON: %s", je.msg);
        err->offset = (long)je.offset;
        return rc;
    }
    if (jsonx_kind(body) != '{') {
        return bad(err, NULL, "the body must be a JSON object");
    }
    size_t pos = 0;
    struct slice k, v;
    struct buf name;
    buf_init(&name);
    int rc = 0;
    while (!rc && jsonx_next_member(body, &pos, &k, &v)) {
        bool ok = false;
        if (jsonx_string(k, &name) == 0) {
            for (size_t i = 0; i < n && !ok; i++) {
                ok = strlen(allowed[i]) == name.len && !memcmp(allowed[i], name.ptr, name.len);
            }
        }
        if (!ok) {
            char f[80];
            snprintf(f, sizeof f, "%.64s", name.ptr ? name.ptr : "");
            rc = parse_fail(err, 400, "invalid_request", f, "unknown member");
        }
    }
    buf_fini(&name);
    return rc;
}

int dlb_expected_version(struct slice v, struct buf *native)
{
    static const struct {
        const char *dlb, *native;
    } WORDS[] = {{"any", "\"any\""}, {"no_stream", "\"no_stream\""},
                 {"stream_exists", "\"exists\""}};
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++) {
        if (v.len == strlen(WORDS[i].dlb) && !memcmp(v.ptr, WORDS[i].dlb, v.len)) {
            buf_adds(native, WORDS[i].native);
            return 0;
        }
    }
    if (v.len == 2 && !memcmp(v.ptr, "-1", 2)) {
        buf_addc(native, '0'); /* the version of no stream: it must not exist */
        return 0;
    }
    char num[24];
    uint64_t n;
    if (v.len == 0 || v.len >= sizeof num) {
        return ERR_INVALID;
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    if (parse_u64(num, &n) != 0 || n >= UINT64_MAX >> 1) {
        return ERR_INVALID;
    }
    buf_add_u64(native, n + 1);
    return 0;
}

/* Appends ,"expectedVersion":<native> for the DeltaBase value v (a word or a number). */
static int expected_member(struct slice v, struct buf *native, struct parse_error *err)
{
    struct buf word;
    buf_init(&word);
    char kind = jsonx_kind(v);
    int rc = kind == '"' ? jsonx_string(v, &word) : 0;
    if (kind != '"') {
        buf_add(&word, v.ptr, v.len);
    }
    bool is_word = word.len && !(word.ptr[0] == '-' || (word.ptr[0] >= '0' && word.ptr[0] <= '9'));
    buf_adds(native, ",\"expectedVersion\":");
    if (rc || (kind == '"') != is_word ||
        dlb_expected_version((struct slice){word.ptr ? word.ptr : "", word.len}, native) != 0) {
        rc = bad(err, "expectedStreamVersion",
                 "a stream version (an integer from -1), \"any\", \"no_stream\" or "
                 "\"stream_exists\"");
    }
    buf_fini(&word);
    return rc;
}

int dlb_append_request(struct slice body, struct buf *native, struct parse_error *err)
{
    static const char *const TOP[] = {"events", "expectedStreamVersion"};
    int rc = object_with(body, TOP, 2, err);
    struct slice events, expect;
    if (!rc && (!jsonx_member(body, "events", &events) || jsonx_kind(events) != '[')) {
        rc = bad(err, "events", "events must be an array of {type, data, metadata?}");
    }
    if (rc) {
        return rc;
    }
    buf_adds(native, "{\"events\":");
    buf_add(native, events.ptr, events.len);
    if (jsonx_member(body, "expectedStreamVersion", &expect)) {
        rc = expected_member(expect, native, err);
    }
    buf_addc(native, '}');
    return rc;
}

int dlb_dcb_request(struct slice body, struct buf *native, struct parse_error *err)
{
    static const char *const TOP[] = {"events", "condition"};
    int rc = object_with(body, TOP, 2, err);
    struct slice events, cond;
    if (!rc && (!jsonx_member(body, "events", &events) || jsonx_kind(events) != '[')) {
        rc = bad(err, "events", "events must be an array of {type, data, tags?, metadata?}");
    }
    if (rc) {
        return rc;
    }
    buf_adds(native, "{\"events\":");
    buf_add(native, events.ptr, events.len);
    if (jsonx_member(body, "condition", &cond)) {
        buf_adds(native, ",\"condition\":");
        buf_add(native, cond.ptr, cond.len);
    }
    buf_addc(native, '}');
    return 0;
}

int dlb_dcb_query(struct slice body, struct buf *native, struct parse_error *err)
{
    static const char *const TOP[] = {"query", "after", "limit"};
    int rc = object_with(body, TOP, 3, err);
    struct slice q, items, after, limit;
    if (!rc && (!jsonx_member(body, "query", &q) || jsonx_kind(q) != '{')) {
        rc = bad(err, "query", "query must be an object {\"items\": [...]}");
    }
    if (rc) {
        return rc;
    }
    uint64_t from = 1;
    if (jsonx_member(body, "after", &after)) {
        char num[24];
        uint64_t a;
        if (jsonx_kind(after) < '0' || jsonx_kind(after) > '9' || after.len >= sizeof num) {
            return bad(err, "after", "after is a global position (0 or more)");
        }
        memcpy(num, after.ptr, after.len);
        num[after.len] = '\0';
        if (parse_u64(num, &a) != 0 || a == UINT64_MAX) {
            return bad(err, "after", "after is a global position (0 or more)");
        }
        from = a + 1;
    }
    buf_adds(native, "{");
    if (jsonx_member(q, "items", &items)) {
        buf_adds(native, "\"items\":");
        buf_add(native, items.ptr, items.len);
        buf_addc(native, ',');
    }
    buf_printf(native, "\"from\":%llu", (unsigned long long)from);
    if (jsonx_member(body, "limit", &limit)) {
        buf_adds(native, ",\"limit\":");
        buf_add(native, limit.ptr, limit.len);
    }
    buf_addc(native, '}');
    return 0;
}

/* ---- answers ---- */

/* A non-negative integer member of our own answer object. */
static bool u64_member(struct slice obj, const char *name, uint64_t *out)
{
    struct slice v;
    char num[24];
    if (!jsonx_member(obj, name, &v) || v.len == 0 || v.len >= sizeof num) {
        return false;
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    return parse_u64(num, out) == 0;
}

/* The native answers are the server's own JSON: read with the span scanner (no DOM, no
 * allocation but the output) since this runs once per append. */
int dlb_append_answer(struct slice native, struct buf *out)
{
    struct slice stream, events, item;
    uint64_t version, position;
    if (jsonx_kind(native) != '{' || !jsonx_member(native, "stream", &stream) ||
        !jsonx_member(native, "events", &events) || jsonx_kind(events) != '[' ||
        !u64_member(native, "version", &version) || !u64_member(native, "position", &position)) {
        return ERR_INVALID;
    }
    size_t n = 0, pos = 0;
    while (jsonx_next_item(events, &pos, &item)) {
        n++;
    }
    buf_adds(out, "{\"streamId\":");
    buf_add(out, stream.ptr, stream.len); /* already a JSON string */
    buf_printf(out, ",\"eventsAppended\":%zu,\"currentStreamVersion\":%lld,"
               "\"globalPosition\":%llu}",
               n, (long long)version - 1, (unsigned long long)position);
    return 0;
}

int dlb_dcb_answer(struct slice native, struct buf *out)
{
    uint64_t position;
    if (jsonx_kind(native) != '{' || !u64_member(native, "position", &position)) {
        return ERR_INVALID;
    }
    buf_printf(out, "{\"lastPosition\":%llu}", (unsigned long long)position);
    return 0;
}

struct slice dlb_stream_type(struct slice stream)
{
    for (size_t i = 0; i < stream.len; i++) {
        char ch = stream.ptr[i];
        if (ch == '-' || ch == '_' || ch == ':') {
            return (struct slice){stream.ptr, i};
        }
    }
    return stream;
}

int dlb_shift_time(const char *text, int64_t delta_us, char *out)
{
    int64_t t;
    if (time_parse(text, strlen(text), &t) != 0) {
        return ERR_INVALID;
    }
    time_format(t + delta_us, out);
    return 0;
}

/* ---- WebSocket messages ---- */

/* The string member name of msg into out (cap bytes). */
static bool str_member(struct slice msg, const char *name, struct buf *out)
{
    struct slice v;
    buf_reset(out);
    return jsonx_member(msg, name, &v) && jsonx_kind(v) == '"' && jsonx_string(v, out) == 0;
}

/* A subscribe message's first position: "latest", "earliest" or a position to go on after. */
static bool ws_position(struct slice msg, uint64_t head, uint64_t *first)
{
    struct slice v;
    if (!jsonx_member(msg, "position", &v) || (v.len == 8 && !memcmp(v.ptr, "\"latest\"", 8))) {
        *first = head + 1;
        return true;
    }
    if (v.len == 10 && !memcmp(v.ptr, "\"earliest\"", 10)) {
        *first = 1;
        return true;
    }
    char num[24];
    uint64_t n;
    if (v.len == 0 || v.len >= sizeof num || jsonx_kind(v) < '0' || jsonx_kind(v) > '9') {
        return false;
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    if (parse_u64(num, &n) != 0 || n == UINT64_MAX) {
        return false;
    }
    *first = n + 1;
    return true;
}

enum live_msg dlb_ws_read(struct slice msg, uint64_t head, struct filter *filter,
                          uint64_t *first, char *desc, size_t cap, const char **why)
{
    struct buf action, pat;
    buf_init(&action);
    buf_init(&pat);
    enum live_msg kind = LIVE_MSG_BAD;
    *why = "action is subscribe, unsubscribe or ping";
    const char *a = str_member(msg, "action", &action) && action.ptr ? action.ptr : "";
    if (!strcmp(a, "unsubscribe")) {
        kind = LIVE_MSG_UNSUBSCRIBE;
    } else if (!strcmp(a, "ping")) {
        kind = LIVE_MSG_PING;
    } else if (!strcmp(a, "subscribe")) {
        struct slice fv;
        bool has = jsonx_member(msg, "eventFilter", &fv);
        if (!has) {
            buf_adds(&pat, "*");
        }
        struct pattern p;
        filter_init(filter);
        if (has && !str_member(msg, "eventFilter", &pat)) {
            *why = "eventFilter is a string: *, prefix.*, *.suffix or a type";
        } else if (!pat.len || pattern_parse((struct slice){pat.ptr, pat.len}, true, &p) != 0 ||
                   filter_add_atom(filter, filter_add_item(filter), FF_TYPE, &p, 1) != 0) {
            *why = "eventFilter is *, prefix.*, *.suffix or a type";
        } else if (!ws_position(msg, head, first)) {
            *why = "position is \"latest\", \"earliest\" or a global position";
        } else {
            snprintf(desc, cap, "%s", pat.ptr);
            kind = LIVE_MSG_SUBSCRIBE;
        }
        if (kind != LIVE_MSG_SUBSCRIBE) {
            filter_fini(filter);
        }
    }
    buf_fini(&action);
    buf_fini(&pat);
    return kind;
}

void dlb_ws_event(struct buf *out, const struct event_rec *ev)
{
    buf_adds(out, "{\"type\":\"event\",\"event\":");
    dlb_event(out, ev);
    buf_addc(out, '}');
}

void dlb_ws_note(struct buf *out, enum live_note note, uint64_t position)
{
    switch (note) {
    case LIVE_NOTE_SUBSCRIBED:
        buf_printf(out, "{\"type\":\"subscribed\",\"position\":%llu}",
                   (unsigned long long)(position ? position - 1 : 0));
        break;
    case LIVE_NOTE_UNSUBSCRIBED:
        buf_adds(out, "{\"type\":\"unsubscribed\"}");
        break;
    case LIVE_NOTE_PONG:
        buf_adds(out, "{\"type\":\"pong\"}");
        break;
    case LIVE_NOTE_CAUGHT_UP:
        break; /* DeltaBase tells nothing when the history is sent */
    }
}

void dlb_ws_error(struct buf *out, const char *code, const char *message)
{
    static const struct {
        const char *native, *dlb;
    } CODES[] = {{"invalid_message", "VALIDATION_ERROR"}, {"too_far_behind", "TOO_FAR_BEHIND"},
                 {"closed", "CONNECTION_CLOSED"}, {"database_deleted", "NOT_FOUND"}};
    const char *c = "INTERNAL_ERROR";
    for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++) {
        c = !strcmp(code, CODES[i].native) ? CODES[i].dlb : c;
    }
    buf_printf(out, "{\"type\":\"error\",\"error\":{\"code\":\"%s\",\"message\":", c);
    buf_add_json_str(out, message, strlen(message));
    buf_adds(out, "}}");
}

/* ---- subscriptions ---- */

static void hook_body(struct buf *out, const char *database, const char *webhook,
                      struct slice events, uint32_t attempt)
{
    (void)attempt;
    buf_adds(out, "{\"event\":");
    buf_add(out, events.ptr, events.len); /* one event: the batch size is 1 */
    buf_adds(out, ",\"eventStoreId\":");
    buf_add_json_str(out, database, strlen(database));
    buf_adds(out, ",\"subscriptionId\":");
    buf_add_json_str(out, webhook, strlen(webhook));
    buf_addc(out, '}');
}

const struct webhook_format dlb_webhook_format = {
    .name = "deltabase", .batch = 1, .sign = false, .event = dlb_event, .body = hook_body};

/* Reads retryPolicy {maxRetries, backoffMultiplier, initialBackoffMs} into def. */
static int retry_policy(json_t *rp, struct webhook_def *def, struct parse_error *err)
{
    def->max_attempts = 4; /* DeltaBase's example: 3 retries */
    def->backoff_ms = 1000;
    if (!rp) {
        return 0;
    }
    json_t *mr = json_object_get(rp, "maxRetries"), *ib = json_object_get(rp, "initialBackoffMs");
    json_t *bm = json_object_get(rp, "backoffMultiplier");
    if (!json_is_object(rp) || json_object_size(rp) > (size_t)(!!mr + !!ib + !!bm) ||
        (mr && (!json_is_integer(mr) || json_integer_value(mr) < 0 ||
                json_integer_value(mr) >= WEBHOOK_ATTEMPTS_MAX)) ||
        (ib && (!json_is_integer(ib) || json_integer_value(ib) < 10 ||
                json_integer_value(ib) > 3600000)) ||
        (bm && (!json_is_number(bm) || json_number_value(bm) != 2))) {
        return parse_fail(err, 400, "invalid_request", "retryPolicy",
                          "retryPolicy is {maxRetries: 0..%d, backoffMultiplier: 2, "
                          "initialBackoffMs: 10..3600000}", WEBHOOK_ATTEMPTS_MAX - 1);
    }
    def->max_attempts = mr ? (uint32_t)json_integer_value(mr) + 1 : def->max_attempts;
    def->backoff_ms = ib ? (uint32_t)json_integer_value(ib) : def->backoff_ms;
    return 0;
}

/* subscriberConfig {url, headers?}: the URL and "Name: value" headers. */
static int subscriber_config(json_t *sc, struct webhook_def *def, struct buf *hdrs,
                             struct parse_error *err)
{
    const char *url = json_string_value(json_object_get(sc, "url"));
    json_t *h = json_object_get(sc, "headers");
    if (!json_is_object(sc) || !url || (h && !json_is_object(h)) ||
        json_object_size(sc) > (size_t)(1 + !!h) || (h && json_object_size(h) > WEBHOOK_HEADERS_MAX)) {
        return parse_fail(err, 400, "invalid_request", "subscriberConfig",
                          "subscriberConfig is {url, headers?} for a webhook");
    }
    const char *name;
    json_t *v;
    size_t offs[WEBHOOK_HEADERS_MAX + 1];
    json_object_foreach(h, name, v) {
        const char *val = json_string_value(v);
        if (!val || strpbrk(name, ":\r\n") || strpbrk(val, "\r\n") ||
            strlen(name) + strlen(val) + 2 >= WEBHOOK_HEADER_BYTES) {
            return parse_fail(err, 400, "invalid_request", "subscriberConfig.headers",
                              "headers are names and string values without line breaks");
        }
        offs[def->nheaders++] = hdrs->len;
        buf_printf(hdrs, "%s: %s", name, val);
        buf_addc(hdrs, '\0');
    }
    offs[def->nheaders] = hdrs->len; /* the URL last: hdrs outlives the parsed body */
    buf_adds(hdrs, url);
    buf_addc(hdrs, '\0');
    for (size_t i = 0; i < def->nheaders; i++) {
        def->headers[i] = hdrs->ptr + offs[i];
    }
    def->url = hdrs->ptr + offs[def->nheaders];
    return 0;
}

/* The native filter text of an eventFilter ("" for every event). */
static int event_filter(const char *f, struct buf *filter, struct parse_error *err)
{
    struct pattern p;
    if (!f || !*f || pattern_parse((struct slice){f, strlen(f)}, true, &p) != 0) {
        return parse_fail(err, 400, "invalid_request", "eventFilter",
                          "eventFilter is *, prefix.*, *.suffix or an event type");
    }
    if (strcmp(f, "*") != 0) {
        buf_adds(filter, "{\"types\":[");
        buf_add_json_str(filter, f, strlen(f));
        buf_adds(filter, "]}");
    }
    return 0;
}

/* The first position of a subscription: "latest" (default) or a position to go on after. */
static int sub_position(json_t *pos, uint64_t head, uint64_t *start, struct parse_error *err)
{
    if (!pos || (json_is_string(pos) && !strcmp(json_string_value(pos), "latest"))) {
        *start = head + 1;
    } else if (json_is_string(pos) && !strcmp(json_string_value(pos), "earliest")) {
        *start = 1;
    } else if (json_is_integer(pos) && json_integer_value(pos) >= 0) {
        *start = (uint64_t)json_integer_value(pos) + 1;
    } else {
        return parse_fail(err, 400, "invalid_request", "position",
                          "position is \"latest\", \"earliest\" or a global position");
    }
    return 0;
}

int dlb_subscribe_request(struct slice body, uint64_t head, int64_t now_us,
                          struct webhook_def *def, struct buf *meta, struct buf *filter,
                          struct buf *hdrs, struct parse_error *err)
{
    static const char *const TOP[] = {"eventFilter", "subscriberType", "subscriberConfig",
                                      "retryPolicy", "position"};
    int rc = object_with(body, TOP, 5, err);
    json_t *root = rc ? NULL : json_loadb(body.ptr, body.len, 0, NULL);
    const char *type = json_string_value(json_object_get(root, "subscriberType"));
    memset(def, 0, sizeof(*def));
    if (!rc && (!type || (strcmp(type, "webhook") && strcmp(type, "websocket")))) {
        rc = parse_fail(err, 400, "invalid_request", "subscriberType",
                        "subscriberType is webhook or websocket (queue and durable_object "
                        "are not offered)");
    }
    if (!rc) rc = event_filter(json_string_value(json_object_get(root, "eventFilter")), filter,
                               err);
    if (!rc) rc = retry_policy(json_object_get(root, "retryPolicy"), def, err);
    if (!rc) rc = sub_position(json_object_get(root, "position"), head, &def->start, err);
    def->record_only = type && !strcmp(type, "websocket");
    if (!rc && !def->record_only) {
        rc = subscriber_config(json_object_get(root, "subscriberConfig"), def, hdrs, err);
    }
    if (!rc) {
        /* the configuration, canonical (jansson sorts keys): it names the subscription */
        json_t *conf = json_deep_copy(root);
        json_object_del(conf, "position");
        char *text = json_dumps(conf, JSON_COMPACT | JSON_SORT_KEYS);
        uint8_t h[HASH_SHA256_LEN];
        struct hash_part part = {text, strlen(text)};
        hash_sha256(&part, 1, h);
        snprintf(def->name, sizeof def->name, "sub_%02x%02x%02x%02x%02x%02x", h[0], h[1], h[2],
                 h[3], h[4], h[5]);
        char when[TIME_RFC3339_LEN];
        time_format(now_us, when);
        buf_printf(meta, "{\"createdAt\":\"%s\",\"config\":%s}", when, text);
        def->meta = (struct slice){meta->ptr, meta->len};
        def->filter = (struct slice){filter->ptr, filter->len};
        def->format = dlb_webhook_format.name;
        free(text);
        json_decref(conf);
    }
    json_decref(root);
    return rc;
}

int dlb_subscription(struct slice described, struct buf *out)
{
    json_t *w = json_loadb(described.ptr, described.len, 0, NULL);
    json_t *meta = json_object_get(w, "meta"), *conf = json_object_get(meta, "config");
    const char *fmt = json_string_value(json_object_get(w, "format"));
    if (!fmt || strcmp(fmt, dlb_webhook_format.name) || !json_is_object(conf)) {
        json_decref(w);
        return ERR_NOTFOUND;
    }
    json_t *o = json_object();
    json_object_set(o, "subscriptionId", json_object_get(w, "name"));
    json_object_set(o, "eventFilter", json_object_get(conf, "eventFilter"));
    json_object_set(o, "subscriberType", json_object_get(conf, "subscriberType"));
    if (json_object_get(conf, "subscriberConfig")) {
        json_object_set(o, "subscriberConfig", json_object_get(conf, "subscriberConfig"));
    }
    if (json_object_get(conf, "retryPolicy")) {
        json_object_set(o, "retryPolicy", json_object_get(conf, "retryPolicy"));
    }
    json_object_set_new(o, "status", json_string("active"));
    json_object_set(o, "createdAt", json_object_get(meta, "createdAt"));
    json_t *deliveries = json_object_get(w, "deliveries");
    json_t *last = json_array_get(deliveries, 0);
    json_object_set(o, "lastDeliveryAttempt", last ? json_object_get(last, "at") : json_null());
    size_t failed = 0, i;
    json_t *d;
    json_array_foreach(deliveries, i, d) {
        failed += !json_is_null(json_object_get(d, "error"));
    }
    json_object_set_new(o, "failedDeliveries", json_integer((json_int_t)failed));
    json_object_set(o, "deliveredEvents", json_object_get(w, "delivered"));
    json_object_set(o, "globalPosition", json_object_get(w, "checkpoint"));
    char *text = json_dumps(o, JSON_COMPACT);
    buf_adds(out, text);
    free(text);
    json_decref(o);
    json_decref(w);
    return 0;
}
