#include "ops/append.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/out.h"
#include "gate/gate.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "json/jsonx.h"
#include "logic/logic.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/strmap.h"
#include "util/uuid.h"

/* An append in flight: shared by the HTTP request and the writer, freed by the last of the
 * two to let go (refs). */
struct append_ctx {
    struct append_req req;          /* engine request */
    struct parsed_multi parsed;     /* parts (one for a single-stream append) */
    struct append_part *parts;      /* engine parts, one per parsed part */
    struct filter *filters;         /* one per condition */
    struct append_cond *conds;
    char cond_field[LIMIT_APPEND_CONDS_ALL][24]; /* each condition's path for errors */
    bool has_after;                 /* the DCB condition gave `after` */
    bool multi;                     /* answer in the multi-stream shape */
    bool dcb;                       /* stream-less events (one part, ENGINE_DCB_STREAM) */
    struct db *db;                  /* acquired reference */
    struct http_req *http;          /* borrowed until answered */
    char idem_key[LIMIT_IDEM_KEY_BYTES + 2]; /* the request's idempotency key (after the
                                                 style's namespace byte), "" when none */
    const char *idem_header;        /* the header that carried it */
    struct append_style style;      /* how this request is answered (its state_category
                                       points at category) */
    char *category;                 /* owned copy of the style's state_category, or NULL */
    char *tag;                      /* owned copy of the style's tag, or NULL */
    int refs;                       /* atomic: 2 while queued (HTTP + writer) */
};

static const struct append_style NATIVE_STYLE = {.mount = NULL}; /* the native envelope */

/* Answers e in the style's envelope. */
static void fail(struct append_ctx *ax, struct http_req *req, const struct gate_error *e)
{
    gate_fail_req(ax->style.mount, req, e);
}

static void fail_simple(struct append_ctx *ax, struct http_req *req, unsigned kind,
                        const char *code, const char *message, const char *field)
{
    struct gate_error e = {.kind = kind, .code = code, .message = message, .field = field};
    fail(ax, req, &e);
}

static void ctx_free(struct append_ctx *ax)
{
    buf_fini(&ax->req.meta_text);
    buf_fini(&ax->req.answer);
    for (size_t i = 0; i < ax->req.nconds; i++) {
        filter_fini(&ax->filters[i]);
    }
    free(ax->filters);
    free(ax->conds);
    free(ax->parts);
    parse_multi_fini(&ax->parsed);
    engine_db_release(ax->db);
    free(ax->category);
    free(ax->tag);
    free(ax);
}

static void ctx_unref(void *arg)
{
    struct append_ctx *ax = arg;
    if (__atomic_sub_fetch(&ax->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        ctx_free(ax);
    }
}

/* The path of event i of part p in the request's own shape. */
static void event_field(const struct append_ctx *ax, size_t p, size_t i, const char *leaf,
                        char *out, size_t n)
{
    if (ax->style.flat_events) {
        size_t k = i;
        for (size_t q = 0; q < p && q < ax->req.nparts; q++) {
            k += ax->req.parts[q].count;
        }
        snprintf(out, n, "events[%zu]%s", k, leaf);
    } else if (ax->multi && !ax->dcb) {
        snprintf(out, n, "appends[%zu].events[%zu]%s", p, i, leaf);
    } else {
        snprintf(out, n, "events[%zu]%s", i, leaf);
    }
}

/* ---- answers ---- */

static void add_part_json(struct buf *b, const struct append_part *p)
{
    const struct append_event *last = &p->events[p->count - 1];
    buf_adds(b, "{\"stream\":");
    buf_add_json_str(b, p->stream.ptr, p->stream.len);
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, last->version);
    buf_adds(b, ",\"position\":");
    buf_add_u64(b, last->position);
    buf_adds(b, ",\"events\":[");
    for (size_t i = 0; i < p->count; i++) {
        char id[UUID_TEXT_LEN + 1];
        uuid_format(p->events[i].id, id);
        buf_adds(b, i ? ",{\"id\":\"" : "{\"id\":\"");
        buf_adds(b, id);
        buf_adds(b, "\",\"position\":");
        buf_add_u64(b, p->events[i].position);
        buf_adds(b, ",\"version\":");
        buf_add_u64(b, p->events[i].version);
        buf_addc(b, '}');
    }
    buf_addc(b, ']');
}

/* The body of a successful append's answer, and its status. */
static unsigned render_appended(struct append_ctx *ax, struct buf *out)
{
    const struct append_req *r = &ax->req;
    struct buf *b = out;
    if (ax->multi) {
        uint64_t last = 0;
        for (size_t p = 0; p < r->nparts; p++) {
            const struct append_part *part = &r->parts[p];
            uint64_t pos = part->events[part->count - 1].position;
            last = pos > last ? pos : last;
        }
        buf_adds(b, "{\"position\":");
        buf_add_u64(b, last);
        buf_adds(b, ",\"appends\":[");
        for (size_t p = 0; p < r->nparts; p++) {
            if (p) {
                buf_addc(b, ',');
            }
            add_part_json(b, &r->parts[p]);
            buf_addc(b, '}');
        }
        buf_addc(b, ']');
    } else {
        add_part_json(b, &r->parts[0]);
    }
    if (r->duplicate) {
        buf_adds(b, ",\"duplicate\":true");
    }
    buf_addc(b, ',');
    out_time_field(b, "recorded", r->recorded_us, false);
    buf_addc(b, '}');
    return r->duplicate ? 200 : 201;
}

static void answer_version_conflict(struct append_ctx *ax)
{
    const struct append_part *p = &ax->req.parts[ax->req.failed];
    char field[48] = "expectedVersion";
    if (ax->multi) {
        snprintf(field, sizeof field, "appends[%zu].expectedVersion", ax->req.failed);
    }
    struct gate_error e = {.kind = GK_CONFLICT, .code = "wrong_expected_version",
                           .message = "the stream's version does not match expectedVersion",
                           .field = field, .stream = p->stream, .has_actual_version = true,
                           .actual_version = p->actual_version,
                           .has_expected_version = p->expect.kind == EXPECT_VERSION,
                           .expected_version = p->expect.version};
    fail(ax, ax->http, &e);
}

static void answer_condition_failed(struct append_ctx *ax)
{
    const struct append_cond *c = &ax->req.conds[ax->req.failed];
    bool dcb = strcmp(ax->cond_field[ax->req.failed], "condition") == 0;
    struct gate_error e = {.kind = GK_CONFLICT, .code = "condition_failed",
                           .message = "an append condition does not hold",
                           .field = ax->cond_field[ax->req.failed], .has_last_position = true,
                           .last_position = c->last_position, .conflicts = c->conflicts,
                           .nconflicts = c->nconflicts, .has_after = dcb,
                           .after_given = ax->has_after, .after = c->max};
    fail(ax, ax->http, &e);
}

static void answer_duplicate_id(struct append_ctx *ax)
{
    size_t k = ax->req.failed, p = 0;
    while (p + 1 < ax->req.nparts && k >= ax->req.parts[p].count) {
        k -= ax->req.parts[p++].count;
    }
    char field[64];
    event_field(ax, p, k, ".id", field, sizeof field);
    fail_simple(ax, ax->http, GK_CONFLICT, "duplicate_event_id",
                "an event with this id is stored with other content, or the request mixes "
                "stored and new event ids",
                field);
}

/* The answer of a lifecycle request that succeeded: 204 (no body) for deletes. */
static unsigned render_meta(struct append_ctx *ax, struct buf *b)
{
    const struct append_req *r = &ax->req;
    if (r->op != META_SET) {
        return 204;
    }
    buf_adds(b, "{\"stream\":");
    buf_add_json_str(b, r->target.ptr, r->target.len);
    buf_adds(b, ",\"metadata\":");
    out_stream_meta(b, &r->meta);
    buf_adds(b, ",\"metadataVersion\":");
    buf_add_u64(b, r->parts[0].events[0].version);
    buf_addc(b, '}');
    return 200;
}

/* Writer thread, before the write: renders the success answer that is stored with the
 * request's idempotency key (and sent). */
static void on_render(struct append_req *r)
{
    struct append_ctx *ax = r->arg;
    buf_reset(&r->answer);
    r->answer_status = (uint16_t)(r->op != META_NONE ? render_meta(ax, &r->answer)
                                                     : render_appended(ax, &r->answer));
}

static void send_answer(struct append_ctx *ax);
static bool answer_with_state(struct append_ctx *ax);

/* Sends a success answer: the stored one (rendered for the key, or replayed), else a new one;
 * with the stream's state when asked (computed on a worker, which then sends it). */
static void answer_success(struct append_ctx *ax)
{
    struct append_req *r = &ax->req;
    if (!r->replayed && !(ax->idem_key[0] && !r->duplicate)) {
        on_render(r);
    }
    if (ax->style.return_state && answer_with_state(ax)) {
        return;
    }
    send_answer(ax);
}

static void send_answer(struct append_ctx *ax)
{
    struct append_req *r = &ax->req;
    if (r->replayed) {
        http_add_header(ax->http, "X-Idempotency-Replayed", "true");
    }
    if (ax->style.answer) {
        struct buf copy; /* the stored answer stays the request's */
        buf_init(&copy);
        buf_add(&copy, r->answer.ptr ? r->answer.ptr : "", r->answer.len);
        ax->style.answer(ax->http, r->answer_status, &copy, r->replayed, ax->tag,
                         ax->style.answer_arg);
        buf_fini(&copy);
    } else if (r->answer.len) {
        out_json(ax->http, r->answer_status, &r->answer);
    } else {
        http_respond(ax->http, r->answer_status, &r->answer, NULL);
    }
}

/* ---- the stream's state in the answer (returnState) ---- */

/* Worker thread: computes the state as of the append's last event and sends the answer with
 * it (or with the reducer's error; the events are committed either way). */
static void run_state(void *arg, bool cancelled)
{
    struct append_ctx *ax = arg;
    struct append_req *r = &ax->req;
    const struct append_part *p = &r->parts[0];
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    bool no_reducer = false;
    int rc = ERR_SHUTDOWN;
    struct slice category = {ax->category, ax->category ? strlen(ax->category) : 0};
    if (!cancelled && (r->replayed || r->duplicate)) {
        /* written earlier: the state as of its last event (the answer's position), as the
           first answer had it, not with what was appended since */
        struct slice v;
        uint64_t pos = 0;
        bool has = r->answer.len && jsonx_member((struct slice){r->answer.ptr, r->answer.len},
                                                 "position", &v) && jsonx_u64(v, &pos) && pos;
        struct as_of at = {.has_pos = true, .pos = pos};
        rc = logic_stream_state_as(ax->style.return_state, ax->db, p->stream, category,
                                   has ? &at : NULL, &st, &no_reducer, &le);
    } else if (!cancelled) {
        struct event_rec *evs = xcalloc(p->count, sizeof(*evs));
        for (size_t i = 0; i < p->count; i++) {
            const struct append_event *e = &p->events[i];
            evs[i] = (struct event_rec){.position = e->position, .version = e->version,
                                        .time_us = e->has_time ? e->time_us : r->recorded_us,
                                        .recorded_us = r->recorded_us, .stream = p->stream,
                                        .type = e->type, .data = e->data,
                                        .metadata = e->metadata, .tags = e->tags,
                                        .subject = e->subject, .client_id = e->has_id};
            memcpy(evs[i].id, e->id, sizeof evs[i].id);
            memcpy(evs[i].hash, e->hash, sizeof evs[i].hash);
        }
        rc = logic_state_after_as(ax->style.return_state, ax->db, p->stream, category, evs,
                                  p->count, &st, &no_reducer, &le);
        free(evs);
    }
    struct buf b;
    buf_init(&b);
    buf_add(&b, r->answer.ptr, r->answer.len ? r->answer.len - 1 : 0); /* without its '}' */
    if (!rc) {
        buf_adds(&b, ",\"state\":");
        buf_add(&b, st.state.ptr, st.state.len);
    } else {
        buf_adds(&b, ",\"state\":null,\"stateError\":{\"code\":\"");
        buf_adds(&b, no_reducer ? "no_reducer" : le.kind ? "reducer_failed" : err_name(rc));
        buf_adds(&b, "\",\"message\":");
        const char *msg = no_reducer ? "no reducer is deployed for this stream's category"
                        : le.kind ? le.message : "the state could not be computed";
        buf_add_json_str(&b, msg, strlen(msg));
        if (le.kind) {
            buf_adds(&b, ",\"kind\":\"");
            buf_adds(&b, logic_err_name(le.kind));
            buf_addc(&b, '"');
        }
        buf_addc(&b, '}');
    }
    buf_addc(&b, '}');
    buf_fini(&r->answer);
    r->answer = b;
    logic_state_fini(&st);
    send_answer(ax);
    ctx_unref(ax);
}

/* Hands the answer to a worker that adds the state; false when it cannot (answer without). */
static bool answer_with_state(struct append_ctx *ax)
{
    struct append_req *r = &ax->req;
    if (ax->multi || r->nparts != 1 || r->answer.len < 2 ||
        r->answer.ptr[r->answer.len - 1] != '}') {
        return false;
    }
    __atomic_add_fetch(&ax->refs, 1, __ATOMIC_ACQ_REL); /* the job's */
    if (engine_submit(engine_db_engine(ax->db), run_state, ax) != 0) {
        __atomic_sub_fetch(&ax->refs, 1, __ATOMIC_ACQ_REL);
        return false;
    }
    return true;
}

/* Writer thread: the commit holding this request has returned (or it failed). */
static void on_appended(struct append_req *r)
{
    struct append_ctx *ax = r->arg;
    char f[48] = "";
    bool part = ax->multi && !ax->dcb && !ax->style.flat_events;
    if (r->err == 0) {
        answer_success(ax);
    } else if (r->err == ERR_CONFLICT && r->conflict == CONFLICT_IDEM_MISMATCH) {
        fail_simple(ax, ax->http, GK_UNPROCESSABLE, "idempotency_key_reused",
                    "this idempotency key was used by a different request (method, path or "
                    "body) within its lifetime; nothing was written", ax->idem_header);
    } else if (r->err == ERR_CONFLICT && r->conflict == CONFLICT_DELETED) {
        snprintf(f, sizeof f, part ? "appends[%zu].stream" : "stream", r->failed);
        fail_simple(ax, ax->http, GK_GONE, "stream_deleted",
                    "the stream was deleted for good (tombstone)", f);
    } else if (r->err == ERR_CONFLICT && r->conflict == CONFLICT_TOO_LARGE) {
        snprintf(f, sizeof f, part ? "appends[%zu].events" : "events", r->failed);
        fail_simple(ax, ax->http, GK_TOO_LARGE, "stream_too_large",
                    "the stream would grow past the database's maxStreamSizeBytes", f);
    } else if (r->err == ERR_CONFLICT && r->conflict == CONFLICT_TOO_BROAD) {
        fail_simple(ax, ax->http, GK_INVALID, "condition_too_broad",
                    "the condition's query is not narrowed by an index (exact or prefix types, "
                    "tags, categories, subjects or streams) and the database is too large to "
                    "check it; nothing was written", ax->cond_field[r->failed]);
    } else if (r->err == ERR_CONFLICT && r->conflict == CONFLICT_NO_STREAM) {
        fail_simple(ax, ax->http, GK_NOT_FOUND, "stream_not_found", "no such stream", "stream");
    } else if (r->err != ERR_CONFLICT) {
        struct gate_error e;
        gate_engine_error(r->err, &e);
        fail(ax, ax->http, &e);
    } else if (r->conflict == CONFLICT_VERSION) {
        answer_version_conflict(ax);
    } else if (r->conflict == CONFLICT_CONDITION) {
        answer_condition_failed(ax);
    } else {
        answer_duplicate_id(ax);
    }
    ctx_unref(ax);
}

/* ---- building the request ---- */

static void make_parts(struct append_ctx *ax)
{
    ax->parts = xcalloc(ax->parsed.nparts, sizeof(*ax->parts));
    for (size_t p = 0; p < ax->parsed.nparts; p++) {
        struct parsed_append *pa = &ax->parsed.parts[p];
        ax->parts[p] = (struct append_part){.stream = {pa->stream, pa->stream_len},
                                            .events = pa->events,
                                            .count = pa->count,
                                            .expect = pa->expect};
    }
    ax->req.parts = ax->parts;
    ax->req.nparts = ax->parsed.nparts;
    ax->req.flags = ax->style.flags;
}

/* Takes the request's idempotency key (Idempotency-Key or X-Idempotency-Key) and hashes what
 * it asks (method, path, query, body). Returns 0 (also when there is none) or answers 400 and
 * returns ERR_INVALID. */
static int take_idem_key(struct http_req *req, struct append_ctx *ax)
{
    const char *a = http_req_header(req, "Idempotency-Key");
    const char *b = http_req_header(req, "X-Idempotency-Key");
    const char *key = a ? a : b;
    ax->idem_header = a ? "Idempotency-Key" : "X-Idempotency-Key";
    if (!key) {
        return 0;
    }
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= LIMIT_IDEM_KEY_BYTES && (!a || !b || strcmp(a, b) == 0);
    for (size_t i = 0; ok && i < n; i++) {
        ok = key[i] >= 0x20 && key[i] < 0x7f;
    }
    if (!ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "an idempotency key is 1 to %d printable ASCII characters "
                 "(and both headers, when given, must agree)", LIMIT_IDEM_KEY_BYTES);
        fail_simple(ax, req, GK_INVALID, "invalid_idempotency_key", msg, ax->idem_header);
        return ERR_INVALID;
    }
    /* a surface's keys live in its own namespace: a leading byte no client key holds */
    size_t ns = ax->style.idem_ns ? 1 : 0;
    ax->idem_key[0] = (char)ax->style.idem_ns;
    memcpy(ax->idem_key + ns, key, n + 1);
    const char *m = http_req_method(req);
    struct slice path = http_req_path(req), query = http_req_query_string(req);
    struct slice body = http_req_body(req);
    struct hash_part parts[7] = {
        {m, strlen(m)}, {"\n", 1}, {path.ptr, path.len}, {"?", 1}, {query.ptr, query.len},
        {"\n", 1}, {body.ptr, body.len},
    };
    hash_sha256(parts, 7, ax->req.idem_hash);
    ax->req.idem_key = (struct slice){ax->idem_key, n + ns};
    ax->req.render = on_render;
    return 0;
}

/* Answers what the engine's contract check found, naming the place in the request. */
static void answer_fault(struct append_ctx *ax, struct http_req *req,
                         const struct append_fault *f)
{
    char field[128], leaf[sizeof f->leaf + 1];
    snprintf(leaf, sizeof leaf, "%s%s", f->leaf[0] ? "." : "", f->leaf);
    if (f->has_event) {
        event_field(ax, f->part, f->event, leaf, field, sizeof field);
    } else if (ax->multi && !ax->dcb && !ax->style.flat_events) {
        snprintf(field, sizeof field, "appends[%zu]%s", f->part, leaf);
    } else {
        snprintf(field, sizeof field, "%s", f->leaf);
    }
    fail_simple(ax, req, GK_INVALID, f->code, f->message, field);
}

/* Queues the request; answers now when the engine refuses it. */
static void submit(struct http_req *req, struct append_ctx *ax)
{
    if (take_idem_key(req, ax) != 0) {
        ctx_free(ax);
        return;
    }
    ax->req.done = on_appended;
    ax->req.arg = ax;
    ax->http = req;
    ax->refs = 2;
    http_set_user(req, ax, ctx_unref);
    http_defer(req);
    int rc = engine_append(ax->db, &ax->req);
    if (rc) {
        ax->refs = 1; /* the writer never saw it */
        if (rc == ERR_TOOBIG) {
            fail_simple(ax, req, GK_TOO_LARGE, "too_many_events",
                        "too many events or an event too large", "events");
        } else if (rc == ERR_INVALID && ax->req.fault.code) {
            answer_fault(ax, req, &ax->req.fault);
        } else {
            struct gate_error e;
            gate_engine_error(rc, &e);
            fail(ax, req, &e);
        }
    }
}

/* Copies the style's per-request strings into ax (the style's own may not outlive the call). */
static void own_strings(struct append_ctx *ax)
{
    if (ax->style.state_category) {
        ax->category = xstrndup(ax->style.state_category, strlen(ax->style.state_category));
        ax->style.state_category = ax->category;
    }
    if (ax->style.tag) {
        ax->tag = xstrndup(ax->style.tag, strlen(ax->style.tag));
        ax->style.tag = ax->tag;
    }
}

void append_stream(struct http_req *req, struct db *db, struct slice stream, struct slice body,
                   const struct limits *lim, const struct append_style *style)
{
    struct append_ctx *ax = xcalloc(1, sizeof(*ax));
    ax->db = db;
    ax->style = style ? *style : NATIVE_STYLE;
    own_strings(ax);
    ax->parsed.parts = xcalloc(1, sizeof(*ax->parsed.parts));
    ax->parsed.nparts = 1;
    struct parsed_append *pa = &ax->parsed.parts[0];
    struct parse_error pe;
    if (parse_append(body, stream, lim, ax->style.flags, pa, &pe) != 0) {
        out_parse_error_as(ax->style.mount, req, &pe);
        ctx_free(ax);
        return;
    }
    pa->stream = xstrndup(stream.ptr, stream.len);
    pa->stream_len = stream.len;
    make_parts(ax);
    submit(req, ax);
}

/* ---- conditions ---- */

static int span_u64(struct slice v, const char *field, uint64_t *out, struct parse_error *err)
{
    char num[24];
    if (v.len == 0 || v.len >= sizeof num || jsonx_kind(v) < '0' || jsonx_kind(v) > '9') {
        return parse_fail(err, 400, "invalid_request", field, "must be a non-negative integer");
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    return parse_u64(num, out) == 0
               ? 0
               : parse_fail(err, 400, "invalid_request", field, "must be a non-negative integer");
}

/* Refuses members of object span obj other than the allowed ones. */
static int only_members(struct slice obj, const char *field, const char *const *allowed,
                        size_t n, struct parse_error *err)
{
    if (jsonx_kind(obj) != '{') {
        return parse_fail(err, 400, "invalid_request", field, "must be an object");
    }
    size_t pos = 0;
    struct slice k, v;
    struct buf key;
    buf_init(&key);
    int rc = 0;
    while (!rc && jsonx_next_member(obj, &pos, &k, &v)) {
        bool ok = false;
        if (jsonx_string(k, &key) == 0) {
            for (size_t i = 0; i < n; i++) {
                ok = ok || (strlen(allowed[i]) == key.len && !memcmp(allowed[i], key.ptr, key.len));
            }
        }
        if (!ok) {
            char f[96];
            snprintf(f, sizeof f, "%s.%.48s", field, key.ptr ? key.ptr : "");
            rc = parse_fail(err, 400, "invalid_request", f, "unknown member");
        }
    }
    buf_fini(&key);
    return rc;
}

static struct append_cond *next_cond(struct append_ctx *ax, const char *field)
{
    size_t i = ax->req.nconds++;
    snprintf(ax->cond_field[i], sizeof ax->cond_field[i], "%s", field);
    filter_init(&ax->filters[i]);
    ax->conds[i] = (struct append_cond){.filter = &ax->filters[i]};
    return &ax->conds[i];
}

/* "condition": {"failIfEventsMatch": query, "after"?: n}. */
static int parse_dcb_condition(struct append_ctx *ax, struct slice v, struct parse_error *err)
{
    static const char *const ALLOWED[] = {"failIfEventsMatch", "after"};
    int rc = only_members(v, "condition", ALLOWED, 2, err);
    struct slice q, after;
    if (!rc && !jsonx_member(v, "failIfEventsMatch", &q)) {
        rc = parse_fail(err, 400, "invalid_request", "condition.failIfEventsMatch",
                        "failIfEventsMatch (a query) is required");
    }
    if (rc) {
        return rc;
    }
    struct append_cond *c = next_cond(ax, "condition");
    rc = parse_filter_text(q, "condition.failIfEventsMatch", &ax->filters[ax->req.nconds - 1],
                           err);
    c->has_max = true; /* no `after`: no matching event may exist at all (max 0) */
    ax->has_after = jsonx_member(v, "after", &after);
    if (!rc && ax->has_after) {
        rc = span_u64(after, "condition.after", &c->max, err);
    }
    return rc;
}

/* "conditions": [{"query", "min"?, "max"?}, ...]. */
static int parse_conditions(struct append_ctx *ax, struct slice v, struct parse_error *err)
{
    static const char *const ALLOWED[] = {"query", "min", "max"};
    if (jsonx_kind(v) != '[') {
        return parse_fail(err, 400, "invalid_request", "conditions",
                          "conditions must be an array of {query, min, max}");
    }
    size_t pos = 0;
    struct slice item;
    int rc = 0;
    for (size_t i = 0; !rc && jsonx_next_item(v, &pos, &item); i++) {
        char f[24];
        snprintf(f, sizeof f, "conditions[%zu]", i);
        if (i == LIMIT_APPEND_CONDS) {
            return parse_fail(err, 400, "invalid_request", "conditions",
                              "at most %d conditions", LIMIT_APPEND_CONDS);
        }
        struct slice q, mn, mx;
        rc = only_members(item, f, ALLOWED, 3, err);
        if (!rc && !jsonx_member(item, "query", &q)) {
            rc = parse_fail(err, 400, "invalid_request", f, "query is required");
        }
        if (rc) {
            break;
        }
        struct append_cond *c = next_cond(ax, f);
        rc = parse_filter_text(q, f, &ax->filters[ax->req.nconds - 1], err);
        c->has_min = jsonx_member(item, "min", &mn);
        c->has_max = jsonx_member(item, "max", &mx);
        if (!rc && c->has_min) rc = span_u64(mn, f, &c->min, err);
        if (!rc && c->has_max) rc = span_u64(mx, f, &c->max, err);
        if (!rc && !c->has_min && !c->has_max) {
            rc = parse_fail(err, 400, "invalid_request", f, "give min, max or both");
        }
    }
    return rc;
}

void append_multi(struct http_req *req, struct db *db, struct slice body,
                  const struct limits *lim, const struct append_style *style)
{
    struct append_ctx *ax = xcalloc(1, sizeof(*ax));
    ax->db = db;
    ax->style = style ? *style : NATIVE_STYLE;
    own_strings(ax);
    ax->multi = true;
    ax->filters = xcalloc(LIMIT_APPEND_CONDS_ALL, sizeof(*ax->filters));
    ax->conds = xcalloc(LIMIT_APPEND_CONDS_ALL, sizeof(*ax->conds));
    struct parse_error pe;
    int rc = parse_multi_append(body, lim, ax->style.flags, &ax->parsed, &pe);
    ax->dcb = !rc && ax->parsed.nparts == 1 && ax->parsed.parts[0].stream[0] == '$';
    if (!rc && ax->parsed.condition.ptr) rc = parse_dcb_condition(ax, ax->parsed.condition, &pe);
    if (!rc && ax->parsed.conditions.ptr) rc = parse_conditions(ax, ax->parsed.conditions, &pe);
    if (rc) {
        out_parse_error_as(ax->style.mount, req, &pe);
        ctx_free(ax);
        return;
    }
    ax->req.conds = ax->conds;
    make_parts(ax);
    submit(req, ax);
}

int append_multi_wait(struct db *db, struct slice body, const struct limits *lim,
                      struct append_outcome *out)
{
    memset(out, 0, sizeof *out);
    struct append_ctx *ax = xcalloc(1, sizeof(*ax));
    ax->style = NATIVE_STYLE;
    ax->multi = true;
    ax->filters = xcalloc(LIMIT_APPEND_CONDS_ALL, sizeof(*ax->filters));
    ax->conds = xcalloc(LIMIT_APPEND_CONDS_ALL, sizeof(*ax->conds));
    buf_init(&ax->req.answer);
    struct parse_error pe;
    int rc = parse_multi_append(body, lim, 0, &ax->parsed, &pe);
    if (!rc && ax->parsed.condition.ptr) rc = parse_dcb_condition(ax, ax->parsed.condition, &pe);
    if (!rc && ax->parsed.conditions.ptr) rc = parse_conditions(ax, ax->parsed.conditions, &pe);
    if (rc) {
        snprintf(out->why, sizeof out->why, "%.60s%s%.120s", pe.field,
                 pe.field[0] ? ": " : "", pe.message);
    } else {
        ax->req.conds = ax->conds;
        make_parts(ax);
        rc = engine_append_wait(db, &ax->req);
        if (rc == ERR_INVALID && ax->req.fault.code) {
            snprintf(out->why, sizeof out->why, "%s", ax->req.fault.message);
        }
        rc = rc ? rc : ax->req.err;
        out->conflict = ax->req.conflict;
        out->failed = ax->req.failed;
        out->recorded_us = ax->req.recorded_us;
        size_t last = ax->req.nparts;
        if (!rc && last) {
            const struct append_part *p = &ax->req.parts[last - 1];
            out->position = p->count ? p->events[p->count - 1].position : 0;
        }
    }
    out->err = rc;
    ax->db = NULL; /* the caller's */
    ctx_free(ax);
    return rc;
}

void append_meta_op(struct http_req *req, struct db *db, struct slice stream, enum meta_op op,
                    const struct stream_meta *meta)
{
    struct append_ctx *ax = xcalloc(1, sizeof(*ax));
    ax->db = db;
    ax->style = NATIVE_STYLE;
    buf_init(&ax->req.meta_text);
    ax->req.op = op; /* the engine makes the part: the stream's metadata stream */
    ax->req.target = stream;
    if (meta) {
        ax->req.meta = *meta;
    }
    submit(req, ax);
}
