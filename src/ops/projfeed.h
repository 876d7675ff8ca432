/* A projection's changes, live, for every API surface (docs/design/logic-layer.md, "The live
 * change feed"): the native GET .../projections/{name}/changes/live and a dialect's own
 * (such as Hapnd's /projections/{id}/stream). One pump per subscriber on its connection's I/O thread
 * reads the projection's changes table after the subscriber's sequence (a page at a time, and
 * only while the connection's output has room), sends each change, then waits for the
 * runner's watch (proj_watch) to wake it after the next commit that changed something. It
 * ends when the projection is removed or replaced (a new version numbers its changes from 1
 * again). Over Server-Sent Events or a WebSocket.
 *
 * What goes on the wire is the surface's, given as a style: the message of one change, the
 * keepalive when nothing was sent for a while, and what becomes of a client's WebSocket
 * messages. The loop (catch-up, live, room, the end) is this module's.
 *
 * Threads: projfeed_start on the request's I/O thread (in the handler); everything after,
 * style hooks included, runs on that thread. */
#ifndef OPS_PROJFEED_H
#define OPS_PROJFEED_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "http/server.h"
#include "logic/logic.h"
#include "logic/projection.h"
#include "util/buf.h"

enum {
    PROJFEED_PAGE = 100,          /* changes read at a time */
    PROJFEED_PAGE_BYTES = HTTP_STREAM_MAX_BYTES, /* ... and their keys' and states' bytes */
    PROJFEED_LOW_ROOM = 64 * 1024, /* no page is read with less output room than this */
    PROJFEED_HEARTBEAT_S = 15,    /* a keepalive after this long without a change (default) */
    PROJFEED_TAG_BYTES = 256,     /* projfeed_spec.tag at most */
};

/* One change as a style renders it; everything borrowed for the call. */
struct projfeed_change {
    const struct proj_change *change; /* sequence, key (raw bytes), state (JSON text) and
                                         position (the event that made the change) */
    const char *projection;           /* the projection's name */
    uint64_t version;                 /* the projection version the feed follows */
    const char *tag;                  /* projfeed_spec.tag ("" when none) */
    struct db *db;                    /* may be read (engine_read_event at change->position) */
};

/* How a surface shows the feed. Static data of the surface: borrowed for every feed started
 * with it, so it must outlive them (it is normally `static const`). */
struct projfeed_style {
    /* Appends the message of one change to out: JSON on one line (no raw newline, which
     * would end an SSE message). Returns 0, or ERR_* to leave this change out (the feed goes
     * on after it; nothing of out is sent). NULL: the change record as proj_change_json
     * writes it. */
    int (*render)(const struct projfeed_change *fc, struct buf *out);
    const char *sse_event;    /* SSE: each change's `event:` name (NULL: "change") */
    const char *ws_ping_text; /* WebSocket keepalive: this text message (Hapnd's
                                 {"type":"ping"}); NULL: a ping frame. SSE's is always the
                                 comment line ": heartbeat" */
    unsigned heartbeat_s;     /* seconds without a change before a keepalive (0:
                                 PROJFEED_HEARTBEAT_S) */
    /* A client's WebSocket message (opcode HTTP_WS_TEXT or HTTP_WS_BINARY; msg borrowed for
     * the call), with the feed's tag. May answer with http_ws_send on req. Returns 0 (taken,
     * or ignored), or ERR_PROTOCOL with *why (static text) to close the WebSocket with 1008
     * and why as the reason. NULL: every message is ignored. */
    int (*on_message)(struct http_req *req, const char *tag, int opcode, struct slice msg,
                      const char **why);
};

/* The native API's shape (docs/api.md): each change is `id: <sequence>`, `event: change`,
 * `data: <change record>` over SSE, or the change record as a text message over a WebSocket;
 * keepalives every PROJFEED_HEARTBEAT_S (": heartbeat", a ping frame); client messages
 * ignored. */
extern const struct projfeed_style projfeed_native;

/* What one feed follows. Copied by projfeed_start. */
struct projfeed_spec {
    const char *projection; /* the projection's name */
    uint64_t after;         /* the changes after this sequence (0: from the first) */
    const char *tag;        /* NULL, or text handed to the style's hooks as it is (a
                               dialect's id of the projection); at most PROJFEED_TAG_BYTES */
    bool ws;                /* answer with a WebSocket (req asked to upgrade:
                               http_ws_requested), else with an SSE stream (200,
                               text/event-stream) */
};

/* Answers req with the live feed of spec's projection of db, shaped by style (borrowed, see
 * above). Returns 0: answered (101 or 200), and the feed holds the reference on db from now
 * on (released when the connection ends). Or, with nothing answered and db still the
 * caller's: ERR_INVALID (a tag too long; or, the projection running, spec->ws while req did
 * not ask to upgrade properly); ERR_NOTFOUND (no such projection running: not deployed, or
 * not started yet, so the surface answers as it does for that); ERR_* (the store). In that
 * order. I/O thread, in the handler. */
int projfeed_start(struct http_req *req, struct logic *lg, struct db *db,
                   const struct projfeed_spec *spec, const struct projfeed_style *style);

/* Appends to out what the feed sends for one change: over SSE (ws false) the whole message,
 * "id: <sequence>\nevent: <name>\ndata: <render>\n\n"; over a WebSocket the text message's
 * payload. Returns 0, or render's error (out is then as it was). Pure but for what render
 * reads. */
int projfeed_message(const struct projfeed_style *style, const struct projfeed_change *fc,
                     bool ws, struct buf *out);

#endif
