/* Live subscriptions of the native API over Server-Sent Events (docs/api.md, "Live
 * subscriptions"): GET .../events/live and .../streams/{stream}/events/live. One loop serves
 * catch-up and live over the engine's catch-up cursor (engine/cursor.h): read the matching
 * events from the subscriber's position to the head (at most a page at a time and only while
 * the connection's output has room), then wait for the next commit (the cursor's commit
 * callback wakes the stream; the I/O thread never blocks in it). A slow reader is never
 * buffered for beyond the HTTP stream's cap; one that falls too far behind is told why and
 * disconnected. A registry lists the open subscriptions for the admin API and can close them.
 *
 * Threads: a subscription's pump runs on its connection's I/O thread; the registry may be
 * used from any thread. */
#ifndef OPS_LIVE_H
#define OPS_LIVE_H

#include <stdint.h>

#include "ops/qparse.h"
#include "engine/engine.h"
#include "http/server.h"

struct live_registry;

struct live_config {
    unsigned heartbeat_s; /* a comment line after this long without output */
    uint64_t max_lag;     /* events a live (caught-up once) subscriber may fall behind (0 =
                             no limit) before it is disconnected */
};

/* Starts: the registry (mutex-guarded list of open subscriptions). */
struct live_registry *live_registry_new(const struct live_config *cfg);
/* Frees it; every subscription must have ended (their connections closed). NULL: no-op. */
void live_registry_free(struct live_registry *reg);

/* Answers req with an SSE stream of the events of db matching pq's filter from position
 * first (1-based; head + 1 = only new events). Takes over the reference on db and pq (freed
 * when the stream ends). label names the subscription in listings (copied). */
void live_sse(struct live_registry *reg, struct http_req *req, struct db *db,
              struct parsed_query *pq, uint64_t first, const char *label);

/* Writes one event of a dialect's SSE subscription, as JSON on one line, to out; returns
 * false to leave the event out (then nothing is written or counted). Any I/O thread. */
typedef bool live_sse_event_fn(struct buf *out, const struct event_rec *ev);

/* live_sse with each event written by event (NULL: in the native shape, as live_sse). The
 * messages are otherwise the same: `id: <position>` and `data: <event>`. */
void live_sse_as(struct live_registry *reg, struct http_req *req, struct db *db,
                 struct parsed_query *pq, uint64_t first, const char *label,
                 live_sse_event_fn *event);

/* Answers req (which asked to upgrade, http_ws_requested) with a WebSocket on which the
 * client subscribes to events of db (of stream only, when given) with messages (docs/api.md).
 * Takes over the reference on db. */
void live_ws(struct live_registry *reg, struct http_req *req, struct db *db,
             const struct slice *stream, const char *label);

/* A WebSocket protocol other than the native one (a dialect's): how client messages read and
 * what the server sends. The loop (catch-up, live, slow readers, closing) stays live.c's. */
enum live_msg { LIVE_MSG_SUBSCRIBE, LIVE_MSG_UNSUBSCRIBE, LIVE_MSG_PING, LIVE_MSG_BAD };
enum live_note { LIVE_NOTE_SUBSCRIBED, LIVE_NOTE_UNSUBSCRIBED, LIVE_NOTE_PONG,
                 LIVE_NOTE_CAUGHT_UP };
struct live_protocol {
    const char *owner;  /* who opens such connections ("deltabase"): listings filter on it */
    /* Reads a client message. SUBSCRIBE: *filter (initialised here) selects the events and
     * *first is the first position to deliver (head: the database's head now), desc (cap
     * bytes) describes it for listings. BAD: *why says what is wrong. */
    enum live_msg (*read)(struct slice msg, uint64_t head, struct filter *filter,
                          uint64_t *first, char *desc, size_t cap, const char **why);
    void (*event)(struct buf *out, const struct event_rec *ev);          /* one event */
    void (*note)(struct buf *out, enum live_note note, uint64_t position); /* may write nothing */
    void (*error)(struct buf *out, const char *code, const char *message);
};

/* live_ws with proto's messages. */
void live_ws_proto(struct live_registry *reg, struct http_req *req, struct db *db,
                   const struct live_protocol *proto, const char *label);

/* What a listing shows of one open subscription. */
struct live_info {
    uint64_t id;
    const char *owner;     /* the protocol's owner, "" for the native API */
    const char *database;
    const char *label;     /* the path, or the protocol's description of its subscription */
    const char *peer;
    int64_t since_us;
    uint64_t position;     /* the last position delivered (0: none yet) */
    uint64_t delivered;
    bool ws;
};
/* Calls fn for each open subscription (under the registry's lock: fn must not call back). */
void live_each(struct live_registry *reg, void (*fn)(void *arg, const struct live_info *info),
               void *arg);
/* Closes subscription id when it belongs to owner ("" native) and database. Returns 0 or
 * ERR_NOTFOUND. */
int live_close_owned(struct live_registry *reg, uint64_t id, const char *owner,
                     const char *database);

/* Appends the JSON array of open subscriptions to out. */
void live_list(struct live_registry *reg, struct buf *out);
/* Closes subscription id (it is told why, then disconnected). Returns 0 or ERR_NOTFOUND. */
int live_close(struct live_registry *reg, uint64_t id);
/* Open subscriptions now. */
unsigned live_count(struct live_registry *reg);

#endif
