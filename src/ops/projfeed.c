/* The live feed of a projection's changes (projfeed.h), over SSE or a WebSocket, in a
 * surface's style. Invariants: f->after is the sequence of the newest change sent or left out
 * by the style; a change's message is queued whole or not at all, so a subscriber that
 * resumes after the last sequence it saw misses nothing and sees nothing twice. A message
 * waits for room (PROJFEED_LOW_ROOM below the stream's cap, plus its own size), except when
 * nothing is queued: then it goes out alone whatever its size, so a change larger than the
 * cap cannot stall the feed.
 *
 *   projfeed_start --> FOLLOWING --feed_pump: changes while room, a keepalive when idle-->
 *   FOLLOWING --feed_pump: removed or replaced / on_ws_msg: refused (end_feed)--> ENDED
 *   (closed once what is queued is sent)
 *   any --the connection closes--> feed_free (no pump, no wake and no message after it) */
#include "ops/projfeed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/component.h"
#include "util/assert.h"
#include "util/errors.h"

enum {
    MSG_SLACK = 64, /* room a message needs beyond its bytes (a WebSocket frame's head) */
};

static const char HEARTBEAT[] = ": heartbeat\n\n";

const struct projfeed_style projfeed_native = {
    .render = NULL, /* the change record */
    .sse_event = "change",
    .ws_ping_text = NULL, /* ping frames */
    .heartbeat_s = PROJFEED_HEARTBEAT_S,
    .on_message = NULL, /* the native feed takes no messages */
};

/* One subscriber. Every field belongs to its connection's I/O thread. */
struct feed {
    struct logic *lg;                   /* borrowed: outlives every connection */
    struct db *db;                      /* a reference, the feed's */
    const struct projfeed_style *style; /* borrowed (static data of the surface) */
    char name[COMP_NAME_BYTES + 1];     /* the projection */
    char tag[PROJFEED_TAG_BYTES + 1];   /* projfeed_spec.tag, "" when none */
    uint64_t version;                   /* the projection version it follows */
    uint64_t after;                     /* the newest sequence sent or left out */
    struct proj_watch *watch;           /* wakes the stream after the runner's commits */
    struct proj_change_list page;       /* the changes read last (kept for its room) */
    struct buf msg;                     /* one change's message (kept for its room) */
    unsigned idle_ticks;                /* ticks since the last message or keepalive */
    bool ws;                            /* a WebSocket, else SSE */
    bool ended;                         /* end_feed ran: nothing more is sent */
};

/* Ticks (about seconds) without a message before a keepalive. */
static unsigned heartbeat_ticks(const struct projfeed_style *style)
{
    return style->heartbeat_s ? style->heartbeat_s : PROJFEED_HEARTBEAT_S;
}

/* What holds between pumps (cheap: checked around each one). */
static bool feed_check(const struct feed *f)
{
    return f->name[0] && f->db && f->page.n <= f->page.max &&
           f->idle_ticks < heartbeat_ticks(f->style);
}

int projfeed_message(const struct projfeed_style *style, const struct projfeed_change *fc,
                     bool ws, struct buf *out)
{
    size_t start = out->len;
    if (!ws) {
        buf_printf(out, "id: %llu\nevent: %s\ndata: ", (unsigned long long)fc->change->sequence,
                   style->sse_event ? style->sse_event : "change");
    }
    int rc = 0;
    if (style->render) {
        rc = style->render(fc, out);
    } else {
        proj_change_json(out, fc->change);
    }
    if (rc) {
        out->len = start; /* as it was */
        if (out->cap) {
            out->ptr[start] = '\0';
        }
        return rc;
    }
    if (!ws) {
        buf_adds(out, "\n\n");
    }
    return 0;
}

static void feed_free(void *arg)
{
    struct feed *f = arg;
    proj_unwatch(logic_projections(f->lg), f->watch); /* no wake after this */
    engine_db_release(f->db);
    proj_change_list_fini(&f->page);
    buf_fini(&f->msg);
    free(f);
}

static void on_change(void *arg)
{
    http_stream_wake(arg);
}

/* Ends the stream once what is queued is sent: the projection was removed or replaced (a new
 * version's sequences start over, so following it under the old ones would mislead). */
static void end_feed(struct feed *f, struct http_req *req, uint16_t code, const char *why)
{
    f->ended = true;
    if (f->ws) {
        http_ws_close(req, code, why);
    } else {
        http_stream_end(req);
    }
}

/* Queues f->msg, the message of one change, when it fits. Returns false when it does not (it
 * waits for the next pump, which reads it again after f->after). */
static bool send_msg(struct feed *f, struct http_req *req)
{
    if (http_stream_queued(req) > 0 && http_stream_room(req) < f->msg.len + MSG_SLACK) {
        return false;
    }
    if (f->ws) {
        http_ws_send(req, f->msg.ptr, f->msg.len);
    } else {
        http_stream_write(req, f->msg.ptr, f->msg.len);
    }
    return true;
}

/* Sends the changes of f->page in order while they fit. Returns false when one did not fit;
 * *sent becomes true when a message was queued. */
static bool send_page(struct feed *f, struct http_req *req, bool *sent)
{
    for (size_t i = 0; i < f->page.n; i++) {
        const struct proj_change *ch = &f->page.ch[i];
        struct projfeed_change fc = {.change = ch, .projection = f->name,
                                     .version = f->version, .tag = f->tag, .db = f->db};
        buf_reset(&f->msg);
        if (projfeed_message(f->style, &fc, f->ws, &f->msg) == 0) {
            if (!send_msg(f, req)) {
                return false;
            }
            *sent = true;
        }
        f->after = ch->sequence; /* sent, or left out by the style */
    }
    return true;
}

/* A keepalive once heartbeat_s ticks have passed without a message. */
static void keep_alive(struct feed *f, struct http_req *req, bool sent,
                       enum http_pump_reason why)
{
    f->idle_ticks = sent ? 0 : f->idle_ticks + (why == HTTP_PUMP_TICK);
    if (f->idle_ticks < heartbeat_ticks(f->style)) {
        return;
    }
    f->idle_ticks = 0;
    if (!f->ws) {
        http_stream_write(req, HEARTBEAT, sizeof HEARTBEAT - 1);
    } else if (f->style->ws_ping_text) {
        http_ws_send(req, f->style->ws_ping_text, strlen(f->style->ws_ping_text));
    } else {
        http_ws_ping(req);
    }
}

/* Sends what is new while there is room. Returns true when it stopped for lack of room (call
 * again once the output drained), false when caught up, failed (a tick tries again) or
 * ended. */
static bool feed_pump(void *arg, struct http_req *req, enum http_pump_reason why)
{
    struct feed *f = arg;
    struct proj_info info;
    ASSERT(feed_check(f));
    if (f->ended) {
        return false;
    }
    if (proj_info(logic_projections(f->lg), f->db, f->name, &info) != 0 ||
        info.version != f->version) {
        end_feed(f, req, 1000, "projection removed or replaced");
        return false;
    }
    bool sent = false, no_room = false;
    for (;;) {
        if (http_stream_room(req) <= PROJFEED_LOW_ROOM) {
            no_room = true;
            break;
        }
        int rc = proj_changes_list(logic_projections(f->lg), f->db, f->name, f->after, &f->page,
                                   &info);
        if (rc == ERR_NOTFOUND || (rc == 0 && info.version != f->version)) {
            end_feed(f, req, 1000, "projection removed or replaced");
            return false;
        }
        if (rc || f->page.n == 0) {
            break;
        }
        if (!send_page(f, req, &sent)) {
            no_room = true;
            break;
        }
        if (f->after >= info.sequence) {
            break; /* caught up (newer changes wake it) */
        }
    }
    keep_alive(f, req, sent, why);
    ASSERT(feed_check(f));
    return no_room;
}

/* A client's WebSocket message: the style's (or ignored). */
static void on_ws_msg(void *arg, struct http_req *req, int opcode, const char *p, size_t n)
{
    struct feed *f = arg;
    const char *why = "message refused";
    if (f->ended || !f->style->on_message) {
        return;
    }
    if (f->style->on_message(req, f->tag, opcode, (struct slice){p, n}, &why) != 0) {
        end_feed(f, req, 1008, why);
    }
}

int projfeed_start(struct http_req *req, struct logic *lg, struct db *db,
                   const struct projfeed_spec *spec, const struct projfeed_style *style)
{
    if (spec->tag && strlen(spec->tag) > PROJFEED_TAG_BYTES) {
        return ERR_INVALID;
    }
    if (strlen(spec->projection) > COMP_NAME_BYTES) {
        return ERR_NOTFOUND; /* no projection's name */
    }
    struct proj_info info;
    int rc = proj_info(logic_projections(lg), db, spec->projection, &info);
    if (rc) {
        return rc;
    }
    if (spec->ws && !http_ws_requested(req)) {
        return ERR_INVALID; /* (after the look-up: a surface answers a missing one first) */
    }
    struct feed *f = xcalloc(1, sizeof(*f));
    f->lg = lg;
    f->db = db;
    f->style = style;
    snprintf(f->name, sizeof f->name, "%s", spec->projection);
    snprintf(f->tag, sizeof f->tag, "%s", spec->tag ? spec->tag : "");
    f->version = info.version;
    f->after = spec->after;
    f->ws = spec->ws;
    proj_change_list_init(&f->page, PROJFEED_PAGE, PROJFEED_PAGE_BYTES);
    buf_init(&f->msg);
    http_set_user(req, f, feed_free);
    f->watch = proj_watch(logic_projections(lg), db, f->name, on_change, req);
    if (f->ws) {
        http_ws_accept(req, on_ws_msg, feed_pump, f);
    } else {
        http_stream_start(req, 200, "text/event-stream", feed_pump, f);
    }
    return 0;
}
