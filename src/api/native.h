/* The native API (/v1 and /health): routes, request validation, JSON answers. Maps each HTTP
 * request to an engine call and the result to a response; knows nothing of storage. Wire
 * format: docs/api.md. */
#ifndef API_NATIVE_H
#define API_NATIVE_H

#include "engine/engine.h"
#include "http/server.h"

struct api_metrics;
struct live_registry;
struct gate;
struct gate_mount;

/* The native API's context: what its handlers need beyond the gate. */
struct logic;

struct api {
    struct gate *gate;       /* borrowed: keys, auth_required, CORS and host settings */
    struct engine *engine;   /* borrowed */
    struct limits limits;    /* copied */
    const char *version;     /* server version string, static */
    int64_t started_us;      /* process start time */
    struct api_metrics *metrics; /* owned by the caller: request counters (api/metrics.h) */
    struct http_server *srv;  /* atomic, set once serving: for the connection gauge */
    struct live_registry *live; /* owned by the caller: open live subscriptions (api/live.h) */
    struct logic *logic;     /* borrowed: user code (logic/logic.h) */
};

/* The native API's mount (/v1, /health, /metrics, /): its routes and descriptor. Mount it
 * at the root with a struct api as its context. */
extern const struct gate_mount api_native_mount;

/* The http_observe_fn for the server (arg: struct api): counts the answer in api->metrics and
 * logs it (debug; warn for 5xx) with its request id. */
void api_observe(void *arg, struct http_req *req, int tag, unsigned status, uint64_t ns);

#endif
