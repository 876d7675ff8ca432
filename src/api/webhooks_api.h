/* Webhooks of the native API: /v1/databases/{db}/webhooks (docs/api.md, "Webhooks"). Each
 * handler parses its request, calls engine/webhooks.h and answers. */
#ifndef API_WEBHOOKS_API_H
#define API_WEBHOOKS_API_H

#include "engine/engine.h"
#include "http/server.h"

/* Takes the caller's reference to db. Checking the URL resolves its host, so the creation
 * runs on a thread of its own, an engine job (e), and answers from there (the request is
 * deferred); 503 once the engine is stopping. */
void webhooks_api_create(struct http_req *req, struct engine *e, struct db *db);
/* All webhooks, or the named one with its delivery log and parked batches. */
void webhooks_api_list(struct http_req *req, struct db *db, const char *name);
void webhooks_api_delete(struct http_req *req, struct db *db, const char *name);
void webhooks_api_rotate(struct http_req *req, struct db *db, const char *name);

#endif
