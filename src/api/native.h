/* The native API (/v1 and /health): routes, request validation, JSON answers. Maps each HTTP
 * request to an engine call and the result to a response; knows nothing of storage. Wire
 * format: docs/api.md. */
#ifndef API_NATIVE_H
#define API_NATIVE_H

#include "engine/engine.h"
#include "http/server.h"

struct keyring;
struct api_metrics;
struct live_registry;

struct api {
    struct engine *engine;   /* borrowed */
    struct keyring *keys;    /* borrowed: API keys */
    bool auth_required;      /* atomic: keys are checked (sticky: set at start when keys exist
                                or the address is not loopback, and when a key is created) */
    struct limits limits;    /* copied */
    const char *version;     /* server version string, static */
    int64_t started_us;      /* process start time */
    const char *cors_origins; /* comma-separated allowed origins, "*" = any; NULL: pages of
                                 this machine in development mode, none otherwise */
    const char *allowed_hosts; /* comma-separated host names requests may be addressed to
                                  ("*" = any); NULL: any with keys, loopback names without */
    struct api_metrics *metrics; /* owned by the caller: request counters (api/metrics.h) */
    struct http_server *srv;  /* atomic, set once serving: for the connection gauge */
    struct ratelimiter *limiter; /* owned by the caller; NULL = no rate limits at all */
    uint32_t rate_limit;      /* default requests per second per client (0 = none) */
    uint32_t rate_burst;      /* bucket size (0 = one second's worth) */
    struct live_registry *live; /* owned by the caller: open live subscriptions (api/live.h) */
};

/* The http_observe_fn for the server (arg: struct api): counts the answer in api->metrics and
 * logs it (debug; warn for 5xx) with its request id. */
void api_observe(void *arg, struct http_req *req, int tag, unsigned status, uint64_t ns);
/* The http_handler_fn for the server: arg is a struct api. */
void api_handle(void *arg, struct http_req *req);

#endif
