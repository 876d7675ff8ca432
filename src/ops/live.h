/* Live subscriptions of the native API over Server-Sent Events (docs/api.md, "Live
 * subscriptions"): GET .../events/live and .../streams/{stream}/events/live. One loop serves
 * catch-up and live: read the matching events from the subscriber's position to the head (an
 * engine query, at most a page at a time and only while the connection's output has room),
 * then wait for the next commit (the engine's watch wakes the stream). A slow reader is never
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

/* Answers req (which asked to upgrade, http_ws_requested) with a WebSocket on which the
 * client subscribes to events of db (of stream only, when given) with messages (docs/api.md).
 * Takes over the reference on db. */
void live_ws(struct live_registry *reg, struct http_req *req, struct db *db,
             const struct slice *stream, const char *label);

/* Appends the JSON array of open subscriptions to out. */
void live_list(struct live_registry *reg, struct buf *out);
/* Closes subscription id (it is told why, then disconnected). Returns 0 or ERR_NOTFOUND. */
int live_close(struct live_registry *reg, uint64_t id);
/* Open subscriptions now. */
unsigned live_count(struct live_registry *reg);

#endif
