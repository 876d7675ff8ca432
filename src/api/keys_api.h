/* The key management API (/v1/keys, /v1/whoami; docs/api.md "Authentication"). Each handler
 * answers the request; caller is the verified key of the request, or NULL in development mode
 * (no keys checked). */
#ifndef API_KEYS_API_H
#define API_KEYS_API_H

#include "api/native.h"
#include "auth/keys.h"

/* Appends key k as JSON, never its secret: {"id","scope","database","name","created",
 * "notAfter","rateLimit","active"} (active: valid at now_us). */
void keys_api_key_json(struct buf *b, const struct api_key *k, int64_t now_us);
void keys_api_whoami(struct http_req *req, struct api *api, const struct api_key *caller);
void keys_api_list(struct http_req *req, struct api *api, const struct api_key *caller);
void keys_api_create(struct http_req *req, struct api *api, const struct api_key *caller);
void keys_api_revoke(struct http_req *req, struct api *api, const struct api_key *caller,
                     const char *id);
void keys_api_rotate(struct http_req *req, struct api *api, const struct api_key *caller,
                     const char *id);

#endif
