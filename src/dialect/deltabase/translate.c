/* DeltaBase translators (translate.h). Structure is read with the span scanner (json/jsonx)
 * so that events' bytes pass through exactly as the client sent them; our own native answers
 * are read with jansson. */
#include "dialect/deltabase/translate.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "json/jsonx.h"
#include "json/validate.h"
#include "util/errors.h"
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
                 {"database", "eventStoreId"}, {"position", "globalPosition"}};
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
    bool dcb = ev->stream.len == 4 && !memcmp(ev->stream.ptr, "$dcb", 4);
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

/* Refuses tags that hold a comma (DeltaBase's DCB forbids them). */
static int comma_free_tags(struct slice events, struct parse_error *err)
{
    size_t pos = 0, i = 0;
    struct slice ev, tags, tag;
    struct buf text;
    buf_init(&text);
    int rc = 0;
    for (; !rc && jsonx_next_item(events, &pos, &ev); i++) {
        size_t tpos = 0;
        if (jsonx_kind(ev) != '{' || !jsonx_member(ev, "tags", &tags) || jsonx_kind(tags) != '[') {
            continue; /* the native parser says what is wrong with it */
        }
        while (!rc && jsonx_next_item(tags, &tpos, &tag)) {
            if (jsonx_kind(tag) == '"' && jsonx_string(tag, &text) == 0 &&
                memchr(text.ptr ? text.ptr : "", ',', text.len)) {
                char f[48];
                snprintf(f, sizeof f, "events[%zu].tags", i);
                rc = bad(err, f, "tags may not contain a comma");
            }
        }
    }
    buf_fini(&text);
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
    if (!rc) rc = comma_free_tags(events, err);
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

int dlb_append_answer(struct slice native, struct buf *out)
{
    json_t *root = json_loadb(native.ptr, native.len, 0, NULL);
    json_t *events = json_object_get(root, "events");
    const char *stream = json_string_value(json_object_get(root, "stream"));
    json_t *version = json_object_get(root, "version");
    json_t *position = json_object_get(root, "position");
    if (!stream || !json_is_array(events) || !json_is_integer(version) ||
        !json_is_integer(position)) {
        json_decref(root);
        return ERR_INVALID;
    }
    buf_adds(out, "{\"streamId\":");
    buf_add_json_str(out, stream, strlen(stream));
    buf_printf(out, ",\"eventsAppended\":%zu,\"currentStreamVersion\":%lld,"
               "\"globalPosition\":%lld}",
               json_array_size(events), (long long)json_integer_value(version) - 1,
               (long long)json_integer_value(position));
    json_decref(root);
    return 0;
}

int dlb_dcb_answer(struct slice native, struct buf *out)
{
    json_t *root = json_loadb(native.ptr, native.len, 0, NULL);
    json_t *position = json_object_get(root, "position");
    if (!json_is_integer(position)) {
        json_decref(root);
        return ERR_INVALID;
    }
    buf_printf(out, "{\"lastPosition\":%lld}", (long long)json_integer_value(position));
    json_decref(root);
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
