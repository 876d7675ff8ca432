/* What the Hapnd dialect's route files share (routes.c, events.c, reducers.c,
 * projections.c): the handlers of the route table and small helpers. Internal to the
 * dialect. */
#ifndef DIALECT_HAPND_HD_INT_H
#define DIALECT_HAPND_HD_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dialect/hapnd/hapnd.h"
#include "dialect/hapnd/translate.h"
#include "ops/parse.h"

static inline const struct hapnd_ctx *hd_ctx_of(const struct gate_call *c)
{
    return c->ctx;
}

/* Answers an error in the dialect's envelope (code: Hapnd's, e.g. "VALIDATION_ERROR"). */
void hd_fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg);
void hd_fail_parse(const struct gate_call *c, const struct parse_error *pe);
/* The same for a request whose call is gone (a worker's answer). */
void hd_fail_req(struct http_req *req, unsigned kind, const char *code, const char *msg);
/* True when the body is JSON (Content-Type application/json); else answers 400. */
bool hd_json_body(const struct gate_call *c);

/* The type of the aggregate whose first event is in db (*found false when it has none),
 * into type (HAPND_TYPE_BYTES + 1). Returns 0 or ERR_*. */
int hd_aggregate_type(struct db *db, struct slice id, bool *found, char *type);

/* routes.c */
void hd_health(struct gate_call *c);       /* GET /health */
void hd_whoami(struct gate_call *c);       /* GET /auth/whoami */
/* events.c */
void hd_append(struct gate_call *c);       /* POST /events */
void hd_append_batch(struct gate_call *c); /* POST /events/batch */
void hd_events(struct gate_call *c);       /* GET /events/{aggregateId} */

#endif
