#include "ops/live.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/out.h"
#include "engine/cursor.h"
#include "engine/groups.h"
#include "json/jsonx.h"
#include "json/validate.h"
#include "util/errors.h"
#include "util/limits.h"
#include "util/timeutil.h"

enum {
    LIVE_PAGE = 256,            /* events read per query while catching up */
    LIVE_LOW_ROOM = 64 * 1024,  /* stop reading when less output room than this is left */
    LIVE_LABEL_BYTES = 200,     /* of a subscription's label in listings */
};

struct live_registry {
    struct live_config cfg;
    pthread_mutex_t mu;         /* guards the list, next_id, count */
    struct live_sub *subs;      /* open subscriptions */
    uint64_t next_id;
    unsigned count;
};

/* One SSE subscriber. Fields without a note belong to its connection's I/O thread. */
struct live_sub {
    uint64_t id;
    struct live_registry *reg;
    struct db *db;              /* acquired */
    struct parsed_query pq;     /* its filter (the cursor reads with it) */
    struct http_req *req;       /* the stream */
    struct engine_cursor *cur;  /* reads the log and wakes the stream on commits
                                   (engine/cursor.h); its position (read by listings, under
                                   the registry's lock) is the next position to deliver */
    uint64_t delivered;         /* atomic (read by listings): events sent */
    uint64_t buffered;          /* atomic (read by listings): output queued after the last
                                   pump call */
    bool caught_up;             /* reached the head once: lag limits apply from then on */
    bool kill;                  /* atomic: closed through the admin API */
    bool started;               /* the stream's preamble was sent */
    bool ws;                    /* a WebSocket (else SSE) */
    bool active;                /* subscribed (a WebSocket between subscribe and unsubscribe) */
    char *stream;               /* WebSocket on a stream's path: its name (owned), else NULL */
    bool consuming;             /* a WebSocket consumer of a durable subscription: */
    char group[GROUP_NAME_BYTES + 1];        /* its subscription */
    char consumer[GROUP_CONSUMER_BYTES + 1]; /* its consumer id */
    uint32_t group_max;                      /* leases it holds at most */
    size_t stream_len;
    bool full;                  /* on_event stopped the page: the output is full */
    uint64_t last_out_ms;       /* last write, for heartbeats */
    int64_t since_us;           /* when it began */
    char label[LIVE_LABEL_BYTES + 1];
    char peer[48];
    const struct live_protocol *proto; /* a dialect's WebSocket messages, or NULL */
    live_sse_event_fn *sse_event;      /* a dialect's SSE events, or NULL (native) */
    struct live_sub *prev, *next_sub; /* registry list (guarded by reg->mu) */
};

static void consume(struct live_sub *s);

struct live_registry *live_registry_new(const struct live_config *cfg)
{
    struct live_registry *reg = xcalloc(1, sizeof(*reg));
    reg->cfg = *cfg;
    pthread_mutex_init(&reg->mu, NULL);
    reg->next_id = 1;
    return reg;
}

void live_registry_free(struct live_registry *reg)
{
    if (!reg) {
        return;
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* ---- output ---- */

static void emit(struct live_sub *s, const char *p, size_t n)
{
    http_stream_write(s->req, p, n);
    s->last_out_ms = time_mono_ns() / 1000000;
}

static void emit_buf(struct live_sub *s, struct buf *b)
{
    emit(s, b->ptr, b->len);
    buf_reset(b);
}

/* Sends a WebSocket message. */
static void ws_out(struct live_sub *s, struct buf *b)
{
    http_ws_send(s->req, b->ptr, b->len);
    s->last_out_ms = time_mono_ns() / 1000000;
    buf_reset(b);
}

/* Sends an error message (code and message are plain text without quotes). */
static void send_error(struct live_sub *s, const char *code, const char *message,
                       const char *field)
{
    struct buf b;
    buf_init(&b);
    if (s->proto) {
        s->proto->error(&b, code, message);
        ws_out(s, &b);
    } else if (s->ws) {
        buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
        buf_add_json_str(&b, message, strlen(message));
        if (field && field[0]) {
            buf_adds(&b, ",\"field\":");
            buf_add_json_str(&b, field, strlen(field));
        }
        buf_addc(&b, '}');
        ws_out(s, &b);
    } else {
        buf_printf(&b, "event: error\ndata: {\"code\":\"%s\",\"message\":\"%s\"}\n\n", code,
                   message);
        emit_buf(s, &b);
    }
    buf_fini(&b);
}

/* Sends an error message and ends the stream (a WebSocket with close code ws_code). */
static void fail(struct live_sub *s, const char *code, const char *message)
{
    send_error(s, code, message, NULL);
    if (s->ws) {
        http_ws_close(s->req, strcmp(code, "too_far_behind") == 0 ? 1008 : 1001, code);
    } else {
        http_stream_end(s->req);
    }
}

static int on_event(void *arg, const struct event_rec *ev)
{
    struct live_sub *s = arg;
    struct buf b;
    buf_init(&b);
    if (s->proto) {
        s->proto->event(&b, ev);
        ws_out(s, &b);
    } else if (s->ws) {
        buf_adds(&b, "{\"type\":\"event\",\"event\":");
        out_event(&b, ev);
        buf_addc(&b, '}');
        ws_out(s, &b);
    } else {
        buf_adds(&b, "id: ");
        buf_add_u64(&b, ev->position);
        buf_adds(&b, "\ndata: ");
        if (s->sse_event && !s->sse_event(&b, ev)) {
            buf_fini(&b); /* the dialect leaves this event out */
            return 0;
        }
        if (!s->sse_event) {
            out_event(&b, ev); /* one line: stored JSON is minified */
        }
        buf_adds(&b, "\n\n");
        emit_buf(s, &b);
    }
    buf_fini(&b);
    __atomic_add_fetch(&s->delivered, 1, __ATOMIC_RELAXED);
    s->full = http_stream_room(s->req) < LIVE_LOW_ROOM; /* at most one event past the cap */
    return s->full ? 1 : 0;
}

/* ---- the loop: catch up, then wait ---- */

/* Tells the subscriber it has caught up with head (once per subscription). */
static void note_caught_up(struct live_sub *s, uint64_t head)
{
    if (s->caught_up) {
        return;
    }
    s->caught_up = true;
    struct buf b;
    buf_init(&b);
    if (s->proto) {
        s->proto->note(&b, LIVE_NOTE_CAUGHT_UP, head);
        if (b.len) {
            ws_out(s, &b);
        }
    } else if (s->ws) {
        buf_printf(&b, "{\"type\":\"caught_up\",\"position\":%llu}", (unsigned long long)head);
        ws_out(s, &b);
    } else {
        buf_printf(&b, "event: caught_up\ndata: {\"position\":%llu}\n\n",
                   (unsigned long long)head);
        emit_buf(s, &b);
    }
    buf_fini(&b);
}

/* Reads and sends matching events from the cursor while the output has room. Returns true
 * when it stopped for lack of room, false when caught up (or ended). */
static bool catch_up(struct live_sub *s)
{
    while (http_stream_room(s->req) >= LIVE_LOW_ROOM) {
        struct engine_cursor_page pg;
        s->full = false;
        int rc = engine_cursor_next(s->cur, LIVE_PAGE, on_event, s, &pg);
        if (rc == ERR_GONE) {
            fail(s, "database_deleted", "the database was deleted");
            return false;
        }
        if (rc) {
            fail(s, "storage_error", "reading the log failed; reconnect to resume");
            return false;
        }
        if (pg.stopped) { /* the output is full: the cursor goes on after the last event */
            return true;
        }
        if (pg.caught_up) {
            note_caught_up(s, pg.head);
            return false;
        }
        if (pg.delivered == 0) {
            /* a whole page of candidates matched nothing (a filter no index narrows): give
             * the loop back to the other connections and go on from the next turn */
            http_stream_wake(s->req);
            return false;
        }
    }
    return true;
}

static bool on_pump(void *arg, struct http_req *req, enum http_pump_reason why)
{
    struct live_sub *s = arg;
    if (!s->started) {
        s->started = true;
        if (!s->ws) {
            emit(s, "retry: 2000\n\n", 13); /* EventSource reconnects after 2 s */
        }
    }
    if (__atomic_load_n(&s->kill, __ATOMIC_ACQUIRE)) {
        fail(s, "closed", "closed by an administrator");
        return false;
    }
    if (engine_cursor_gone(s->cur)) {
        fail(s, "database_deleted", "the database was deleted");
        return false;
    }
    uint64_t next = engine_cursor_position(s->cur);
    uint64_t max_lag = s->reg->cfg.max_lag;
    uint64_t head = engine_db_head(s->db);
    if (s->active && s->caught_up && max_lag && head + 1 > next && head + 1 - next > max_lag) {
        fail(s, "too_far_behind", "the subscriber fell too far behind the log; reconnect "
                                  "with Last-Event-ID to catch up");
        return false;
    }
    bool more = s->active && catch_up(s);
    if (s->consuming && http_stream_room(req) >= LIVE_LOW_ROOM) {
        consume(s);
    }
    uint64_t now_ms = time_mono_ns() / 1000000;
    if (why == HTTP_PUMP_TICK && now_ms - s->last_out_ms >= s->reg->cfg.heartbeat_s * 1000ull) {
        if (s->ws) {
            http_ws_ping(s->req);
            s->last_out_ms = now_ms;
        } else {
            emit(s, ": heartbeat\n\n", 13);
        }
    }
    __atomic_store_n(&s->buffered, http_stream_queued(req), __ATOMIC_RELAXED);
    return more;
}

/* ---- WebSocket consumers of durable subscriptions ---- */

struct lease_msg {
    struct buf b;
    size_t n;
    size_t room;   /* stop leasing once the message is this large */
};

static int on_lease(void *arg, const struct event_rec *ev, uint32_t attempt)
{
    struct lease_msg *lm = arg;
    buf_adds(&lm->b, lm->n++ ? ",{\"attempt\":" : "{\"attempt\":");
    buf_add_u64(&lm->b, attempt);
    buf_adds(&lm->b, ",\"event\":");
    out_event(&lm->b, ev);
    buf_addc(&lm->b, '}');
    return lm->b.len >= lm->room ? 1 : 0; /* the rest stays unleased */
}

/* Leases the consumer more events, up to its maximum held at once, and sends them. */
static void consume(struct live_sub *s)
{
    size_t held;
    if (engine_group_leased(s->db, s->group, s->consumer, &held) != 0) {
        s->consuming = false;
        send_error(s, "subscription_not_found", "the subscription was deleted", "subscription");
        return;
    }
    if (held >= s->group_max) {
        return;
    }
    struct lease_msg lm = {.n = 0, .room = http_stream_room(s->req)};
    buf_init(&lm.b);
    buf_adds(&lm.b, "{\"type\":\"leased\",\"subscription\":");
    buf_add_json_str(&lm.b, s->group, strlen(s->group));
    buf_adds(&lm.b, ",\"events\":[");
    if (engine_group_pull(s->db, s->group, s->consumer, s->group_max - held, on_lease, &lm) ==
            0 && lm.n) {
        buf_adds(&lm.b, "]}");
        ws_out(s, &lm.b);
    }
    buf_fini(&lm.b);
}

/* Writer thread: a commit (or the database's deletion, which the cursor records). */
static void on_commit(void *arg, bool gone)
{
    (void)gone;
    struct live_sub *s = arg;
    http_stream_wake(s->req);
}

/* The connection closed: no pump call or wake follows once the watch is gone. */
static void on_closed(void *user)
{
    struct live_sub *s = user;
    struct live_registry *reg = s->reg;
    pthread_mutex_lock(&reg->mu); /* listings read the cursor: it closes while they cannot */
    if (s->prev) {
        s->prev->next_sub = s->next_sub;
    } else {
        reg->subs = s->next_sub;
    }
    if (s->next_sub) {
        s->next_sub->prev = s->prev;
    }
    reg->count--;
    engine_cursor_close(s->cur); /* no commit wakes the stream from here on */
    pthread_mutex_unlock(&reg->mu);
    parsed_query_fini(&s->pq);
    engine_db_release(s->db);
    free(s->stream);
    free(s);
}

/* A new subscriber of db on req, with a cursor (every event from 1 until a subscription says
 * otherwise) that wakes it on commits, and listed. Returns NULL (answered 404) when db is
 * being deleted. */
static struct live_sub *sub_new(struct live_registry *reg, struct http_req *req, struct db *db,
                                const char *label)
{
    struct live_sub *s = xcalloc(1, sizeof(*s));
    s->reg = reg;
    s->db = db;
    s->req = req;
    filter_init(&s->pq.filter);
    s->since_us = time_now_us();
    s->last_out_ms = time_mono_ns() / 1000000;
    snprintf(s->label, sizeof s->label, "%s", label);
    snprintf(s->peer, sizeof s->peer, "%s", http_req_peer(req));
    struct engine_cursor_opts o = {.filter = &s->pq.filter, .from = 1, .on_commit = on_commit,
                                   .on_commit_arg = s};
    if (engine_cursor_open(db, &o, &s->cur) != 0) {
        out_error(req, 404, "database_not_found", "no such database", NULL);
        filter_fini(&s->pq.filter);
        engine_db_release(db);
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&reg->mu);
    s->id = reg->next_id++;
    s->next_sub = reg->subs;
    if (reg->subs) {
        reg->subs->prev = s;
    }
    reg->subs = s;
    reg->count++;
    pthread_mutex_unlock(&reg->mu);
    http_set_user(req, s, on_closed);
    return s;
}

void live_sse(struct live_registry *reg, struct http_req *req, struct db *db,
              struct parsed_query *pq, uint64_t first, const char *label)
{
    live_sse_as(reg, req, db, pq, first, label, NULL);
}

void live_sse_as(struct live_registry *reg, struct http_req *req, struct db *db,
                 struct parsed_query *pq, uint64_t first, const char *label,
                 live_sse_event_fn *event)
{
    struct live_sub *s = sub_new(reg, req, db, label);
    if (!s) {
        return;
    }
    s->sse_event = event;
    filter_fini(&s->pq.filter);
    s->pq = *pq;
    s->pq.q.filter = &s->pq.filter;
    memset(pq, 0, sizeof(*pq));
    filter_init(&pq->filter); /* the caller's fini finds nothing to free */
    engine_cursor_reset(s->cur, &s->pq.filter, first);
    s->active = true;
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "X-Accel-Buffering", "no");
    http_stream_start(req, 200, "text/event-stream", on_pump, s);
}

/* ---- WebSocket subscriptions ---- */

static void ws_reply(struct live_sub *s, const char *json)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, json);
    ws_out(s, &b);
    buf_fini(&b);
}

/* The start of a subscribe message: `after` (continue after a position), else `from` (a
 * position, or "latest"), else 1. Returns 0 or ERR_INVALID (*field set). */
static int ws_start(struct live_sub *s, struct slice msg, uint64_t *out, const char **field)
{
    struct slice v;
    char text[32];
    uint64_t n;
    bool has_after = jsonx_member(msg, "after", &v);
    *field = has_after ? "after" : "from";
    if (!has_after && !jsonx_member(msg, "from", &v)) {
        *out = 1;
        return 0;
    }
    if (!has_after && v.len == 8 && memcmp(v.ptr, "\"latest\"", 8) == 0) {
        *out = engine_db_head(s->db) + 1;
        return 0;
    }
    if (v.len >= sizeof text) {
        return ERR_INVALID;
    }
    memcpy(text, v.ptr, v.len);
    text[v.len] = '\0';
    if (parse_u64(text, &n) != 0 || (!has_after && n == 0) || n == UINT64_MAX) {
        return ERR_INVALID;
    }
    *out = has_after ? n + 1 : n;
    return 0;
}

/* Replaces the connection's subscription with the one msg asks for. */
static void ws_subscribe(struct live_sub *s, struct slice msg)
{
    struct filter f;
    struct parse_error pe;
    struct slice fv;
    uint64_t first;
    const char *field;
    if (ws_start(s, msg, &first, &field) != 0) {
        send_error(s, "invalid_message", "a position from 1 (from: or \"latest\"; after:)",
                   field);
        return;
    }
    int rc = 0;
    if (jsonx_member(msg, "filter", &fv)) {
        rc = parse_filter_text(fv, "filter", &f, &pe);
    } else {
        filter_init(&f);
    }
    if (rc) {
        send_error(s, "invalid_message", pe.message, pe.field);
        return;
    }
    if (s->stream) {
        struct filter only;
        filter_init(&only);
        struct pattern p = {PAT_EXACT, {s->stream, s->stream_len}};
        rc = filter_add_atom(&only, filter_add_item(&only), FF_STREAM, &p, 1);
        if (!rc) rc = filter_and(&f, &only);
        filter_fini(&only);
    }
    if (rc) {
        filter_fini(&f);
        send_error(s, "invalid_message", "the filter is too large", "filter");
        return;
    }
    filter_fini(&s->pq.filter);
    memset(&s->pq, 0, sizeof s->pq);
    s->pq.filter = f;
    s->pq.q.filter = &s->pq.filter;
    engine_cursor_reset(s->cur, &s->pq.filter, first);
    s->caught_up = false;
    s->active = true;
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"type\":\"subscribed\",\"from\":%llu}", (unsigned long long)first);
    ws_out(s, &b);
    buf_fini(&b);
    http_stream_wake(s->req); /* the pump catches up */
}

/* A string member of msg into out (at most cap - 1 bytes). */
static bool str_member(struct slice msg, const char *name, char *out, size_t cap)
{
    struct slice v;
    struct buf b;
    buf_init(&b);
    bool ok = jsonx_member(msg, name, &v) && jsonx_kind(v) == '"' && jsonx_string(v, &b) == 0 &&
              b.len > 0 && b.len < cap;
    if (ok) {
        memcpy(out, b.ptr, b.len + 1);
    }
    buf_fini(&b);
    return ok;
}

static void ws_consume(struct live_sub *s, struct slice msg)
{
    char group[GROUP_NAME_BYTES + 1], consumer[GROUP_CONSUMER_BYTES + 1], text[24];
    struct slice v;
    uint64_t max = 10;
    size_t held;
    if (!str_member(msg, "subscription", group, sizeof group) ||
        engine_group_leased(s->db, group, "", &held) != 0) {
        send_error(s, "subscription_not_found", "no such subscription", "subscription");
        return;
    }
    if (!str_member(msg, "consumer", consumer, sizeof consumer) ||
        !group_name_ok(consumer, strlen(consumer))) {
        send_error(s, "invalid_message", "consumer is 1 to 64 of A-Z a-z 0-9 _ - .", "consumer");
        return;
    }
    if (jsonx_member(msg, "max", &v) &&
        (v.len >= sizeof text || (memcpy(text, v.ptr, v.len), text[v.len] = '\0',
                                  parse_u64(text, &max) != 0) || max < 1 || max > GROUP_PULL_MAX)) {
        send_error(s, "invalid_message", "max is 1 to 1000", "max");
        return;
    }
    memcpy(s->group, group, sizeof group);
    memcpy(s->consumer, consumer, sizeof consumer);
    s->group_max = (uint32_t)max;
    s->consuming = true;
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"type\":\"consuming\",\"subscription\":");
    buf_add_json_str(&b, group, strlen(group));
    buf_printf(&b, ",\"max\":%llu}", (unsigned long long)max);
    ws_out(s, &b);
    buf_fini(&b);
    http_stream_wake(s->req);
}

/* ack / nack of leased events: {"positions":[...], "park"?}. */
static void ws_ack(struct live_sub *s, struct slice msg, bool nack)
{
    struct slice arr, item, park;
    uint64_t pos[GROUP_PULL_MAX];
    size_t n = 0, at = 0, done = 0;
    bool ok = s->consuming && jsonx_member(msg, "positions", &arr) && jsonx_kind(arr) == '[';
    while (ok && jsonx_next_item(arr, &at, &item)) {
        char text[24];
        ok = n < GROUP_PULL_MAX && item.len < sizeof text;
        if (ok) {
            memcpy(text, item.ptr, item.len);
            text[item.len] = '\0';
            ok = parse_u64(text, &pos[n]) == 0 && pos[n] > 0;
            n++;
        }
    }
    if (!ok || n == 0) {
        send_error(s, "invalid_message", s->consuming ? "positions is an array of 1 to 1000 "
                   "positions" : "send consume first", s->consuming ? "positions" : "type");
        return;
    }
    bool to_park = jsonx_member(msg, "park", &park) && park.len == 4 &&
                   memcmp(park.ptr, "true", 4) == 0;
    int rc = nack ? engine_group_nack(s->db, s->group, pos, n, to_park, &done)
                  : engine_group_ack(s->db, s->group, pos, n, &done);
    if (rc) {
        send_error(s, "subscription_not_found", "the subscription was deleted", "subscription");
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"type\":\"%s\",\"%s\":%zu}", nack ? "nacked" : "acked",
               nack ? "rejected" : "acknowledged", done);
    ws_out(s, &b);
    buf_fini(&b);
    http_stream_wake(s->req); /* room for more leases */
}

static void on_ws_msg(void *arg, struct http_req *req, int opcode, const char *p, size_t n)
{
    (void)req;
    struct live_sub *s = arg;
    struct jsonv_error je;
    struct slice msg = {p, n}, type;
    if (opcode != HTTP_WS_TEXT || jsonv_validate(p, n, LIMIT_JSON_DEPTH, &je) != 0 ||
        jsonx_kind(msg) != '{' || !jsonx_member(msg, "type", &type)) {
        send_error(s, "invalid_message", "messages are JSON objects with a type", NULL);
        return;
    }
    if (type.len == 11 && memcmp(type.ptr, "\"subscribe\"", 11) == 0) {
        ws_subscribe(s, msg);
    } else if (type.len == 13 && memcmp(type.ptr, "\"unsubscribe\"", 13) == 0) {
        s->active = false;
        s->consuming = false;
        ws_reply(s, "{\"type\":\"unsubscribed\"}");
    } else if (type.len == 9 && memcmp(type.ptr, "\"consume\"", 9) == 0) {
        ws_consume(s, msg);
    } else if (type.len == 5 && memcmp(type.ptr, "\"ack\"", 5) == 0) {
        ws_ack(s, msg, false);
    } else if (type.len == 6 && memcmp(type.ptr, "\"nack\"", 6) == 0) {
        ws_ack(s, msg, true);
    } else if (type.len == 6 && memcmp(type.ptr, "\"ping\"", 6) == 0) {
        ws_reply(s, "{\"type\":\"pong\"}");
    } else {
        send_error(s, "invalid_message",
                   "type is subscribe, unsubscribe, consume, ack, nack or ping", "type");
    }
}

void live_ws(struct live_registry *reg, struct http_req *req, struct db *db,
             const struct slice *stream, const char *label)
{
    struct live_sub *s = sub_new(reg, req, db, label);
    if (!s) {
        return;
    }
    s->ws = true;
    if (stream) {
        s->stream = xstrndup(stream->ptr, stream->len);
        s->stream_len = stream->len;
    }
    http_ws_accept(req, on_ws_msg, on_pump, s);
}

/* Starts the subscription of s: filter (taken) from position first. */
static void set_subscription(struct live_sub *s, struct filter *f, uint64_t first)
{
    filter_fini(&s->pq.filter);
    memset(&s->pq, 0, sizeof s->pq);
    s->pq.filter = *f;
    s->pq.q.filter = &s->pq.filter;
    engine_cursor_reset(s->cur, &s->pq.filter, first);
    s->caught_up = false;
    s->active = true;
}

static void proto_note(struct live_sub *s, enum live_note note, uint64_t pos)
{
    struct buf b;
    buf_init(&b);
    s->proto->note(&b, note, pos);
    if (b.len) {
        ws_out(s, &b);
    }
    buf_fini(&b);
}

static void on_proto_msg(void *arg, struct http_req *req, int opcode, const char *p, size_t n)
{
    (void)req;
    struct live_sub *s = arg;
    struct jsonv_error je;
    struct slice msg = {p, n};
    if (opcode != HTTP_WS_TEXT || jsonv_validate(p, n, LIMIT_JSON_DEPTH, &je) != 0 ||
        jsonx_kind(msg) != '{') {
        send_error(s, "invalid_message", "messages are JSON objects", NULL);
        return;
    }
    struct filter f;
    uint64_t first = 0;
    const char *why = "unknown message";
    char desc[LIVE_LABEL_BYTES + 1] = "";
    switch (s->proto->read(msg, engine_db_head(s->db), &f, &first, desc, sizeof desc, &why)) {
    case LIVE_MSG_SUBSCRIBE:
        set_subscription(s, &f, first);
        if (desc[0]) {
            pthread_mutex_lock(&s->reg->mu); /* listings read the label */
            snprintf(s->label, sizeof s->label, "%s", desc);
            pthread_mutex_unlock(&s->reg->mu);
        }
        proto_note(s, LIVE_NOTE_SUBSCRIBED, first);
        http_stream_wake(s->req);
        break;
    case LIVE_MSG_UNSUBSCRIBE:
        s->active = false;
        proto_note(s, LIVE_NOTE_UNSUBSCRIBED, 0);
        break;
    case LIVE_MSG_PING:
        proto_note(s, LIVE_NOTE_PONG, 0);
        break;
    case LIVE_MSG_BAD:
        send_error(s, "invalid_message", why, NULL);
        break;
    }
}

void live_ws_proto(struct live_registry *reg, struct http_req *req, struct db *db,
                   const struct live_protocol *proto, const char *label)
{
    struct live_sub *s = sub_new(reg, req, db, label);
    if (s) {
        s->ws = true;
        s->proto = proto;
        http_ws_accept(req, on_proto_msg, on_pump, s);
    }
}

/* ---- the registry ---- */

void live_each(struct live_registry *reg, void (*fn)(void *arg, const struct live_info *info),
               void *arg)
{
    pthread_mutex_lock(&reg->mu);
    for (struct live_sub *s = reg->subs; s; s = s->next_sub) {
        struct live_info in = {
            .id = s->id, .owner = s->proto ? s->proto->owner : "",
            .database = engine_db_name(s->db), .label = s->label, .peer = s->peer,
            .since_us = s->since_us,
            .position = engine_cursor_position(s->cur) - 1,
            .delivered = __atomic_load_n(&s->delivered, __ATOMIC_RELAXED), .ws = s->ws};
        fn(arg, &in);
    }
    pthread_mutex_unlock(&reg->mu);
}

int live_close_owned(struct live_registry *reg, uint64_t id, const char *owner,
                     const char *database)
{
    int rc = ERR_NOTFOUND;
    pthread_mutex_lock(&reg->mu);
    for (struct live_sub *s = reg->subs; s; s = s->next_sub) {
        const char *o = s->proto ? s->proto->owner : "";
        if (s->id == id && !strcmp(o, owner) && !strcmp(engine_db_name(s->db), database)) {
            __atomic_store_n(&s->kill, true, __ATOMIC_RELEASE);
            http_stream_wake(s->req);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

void live_list(struct live_registry *reg, struct buf *out)
{
    buf_addc(out, '[');
    pthread_mutex_lock(&reg->mu);
    for (struct live_sub *s = reg->subs; s; s = s->next_sub) {
        buf_printf(out, "%s{\"id\":%llu,\"kind\":\"%s\",\"database\":",
                   s == reg->subs ? "" : ",", (unsigned long long)s->id,
                   s->ws ? "websocket" : "sse");
        const char *name = engine_db_name(s->db);
        buf_add_json_str(out, name, strlen(name));
        buf_adds(out, ",\"path\":");
        buf_add_json_str(out, s->label, strlen(s->label));
        buf_adds(out, ",\"peer\":");
        buf_add_json_str(out, s->peer, strlen(s->peer));
        buf_addc(out, ',');
        out_time_field(out, "since", s->since_us, false);
        buf_printf(out, ",\"position\":%llu,\"delivered\":%llu,\"buffered\":%llu}",
                   (unsigned long long)engine_cursor_position(s->cur) - 1,
                   (unsigned long long)__atomic_load_n(&s->delivered, __ATOMIC_RELAXED),
                   (unsigned long long)__atomic_load_n(&s->buffered, __ATOMIC_RELAXED));
    }
    pthread_mutex_unlock(&reg->mu);
    buf_addc(out, ']');
}

int live_close(struct live_registry *reg, uint64_t id)
{
    int rc = ERR_NOTFOUND;
    pthread_mutex_lock(&reg->mu); /* keeps s alive: its cleanup takes this lock */
    for (struct live_sub *s = reg->subs; s; s = s->next_sub) {
        if (s->id == id) {
            __atomic_store_n(&s->kill, true, __ATOMIC_RELEASE);
            http_stream_wake(s->req);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

unsigned live_count(struct live_registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    unsigned n = reg->count;
    pthread_mutex_unlock(&reg->mu);
    return n;
}
