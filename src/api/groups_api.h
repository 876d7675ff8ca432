/* Durable subscriptions (consumer groups) of the native API: /v1/databases/{db}/subscriptions
 * and its pull / ack / nack / parked / replay routes (docs/api.md, "Durable subscriptions").
 * Each handler parses its request, calls engine/groups.h and answers. */
#ifndef API_GROUPS_API_H
#define API_GROUPS_API_H

#include "engine/engine.h"
#include "http/server.h"

/* The engine's filter parser for subscriptions (engine_config.parse_filter): a filter object
 * as in POST /query, as JSON text. */
int groups_parse_filter(struct slice text, struct filter *out);

void groups_api_create(struct http_req *req, struct db *db);
void groups_api_list(struct http_req *req, struct db *db, const char *only);
void groups_api_delete(struct http_req *req, struct db *db, const char *name);
void groups_api_pull(struct http_req *req, struct db *db, const char *name);
/* nack: reject instead of acknowledge. */
void groups_api_ack(struct http_req *req, struct db *db, const char *name, bool nack);
void groups_api_parked(struct http_req *req, struct db *db, const char *name);
void groups_api_replay(struct http_req *req, struct db *db, const char *name);

#endif
