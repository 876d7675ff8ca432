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
/* The same naming the offending input (a member, a query parameter). */
void hd_fail_at(const struct gate_call *c, unsigned kind, const char *code, const char *msg,
                const char *field);
void hd_fail_parse(const struct gate_call *c, const struct parse_error *pe);
/* The same for a request whose call is gone (a worker's answer). */
void hd_fail_req(struct http_req *req, unsigned kind, const char *code, const char *msg);
/* True when the body is JSON (Content-Type application/json); else answers 400. */
bool hd_json_body(const struct gate_call *c);

/* The type of aggregate id of db, its first event's (*found false when it has no events;
 * type "" when its first event has none: written natively to a stream without '_' or '-'),
 * into type (HAPND_TYPE_BYTES + 1); kept in x's memory once read (types.h). Returns 0 or
 * ERR_*. */
int hd_aggregate_type(const struct hapnd_ctx *x, struct db *db, struct slice id, bool *found,
                      char *type);

/* routes.c */
void hd_health(struct gate_call *c);       /* GET /health */
void hd_whoami(struct gate_call *c);       /* GET /auth/whoami */
/* events.c */
void hd_append(struct gate_call *c);       /* POST /events */
void hd_append_batch(struct gate_call *c); /* POST /events/batch */
void hd_events(struct gate_call *c);       /* GET /events/{aggregateId} */
/* reducers.c */
void hd_reducer_upload(struct gate_call *c); /* POST /reducers/upload */
void hd_reducer_status(struct gate_call *c); /* GET /reducers/{id}/status */
void hd_bind(struct gate_call *c);           /* PUT /aggregate-types/{type} */
void hd_binding_get(struct gate_call *c);    /* GET /aggregate-types/{type} */
void hd_state(struct gate_call *c);          /* GET /aggregate-types/{type}/{id}/state */
/* projections.c */
void hd_projection_upload(struct gate_call *c);  /* POST /projections/upload */
void hd_projection_status(struct gate_call *c);  /* GET /projections/{id}/status */
void hd_projection_state(struct gate_call *c);   /* GET /projections/{id}/state/{key} */
void hd_projection_notifications(struct gate_call *c); /* GET .../{id}/notifications */
void hd_projection_rotate(struct gate_call *c);  /* POST /projections/{id}/webhook/rotate */
void hd_webhooks_rotate(struct gate_call *c);    /* POST /webhooks/rotate */
/* stream.c */
void hd_projection_stream(struct gate_call *c);  /* GET /projections/{id}/stream (WebSocket) */

/* The component name of projectionId pid ("proj_X" -> "hapnd.p.X", COMP_NAME_BYTES + 1);
 * false when pid is no Hapnd projectionId. */
bool hd_projection_name(struct slice pid, char *name);
/* The projectionId of component name, into out. */
void hd_projection_id(const char *name, char *out, size_t cap);
/* Appends a change of projection pid as Hapnd shows it (hapnd_change_json, type NULL: none),
 * the event at position read from db. */
void hd_render_change(struct db *db, const char *type, struct slice pid, uint64_t sequence,
                      struct slice key, struct slice state, uint64_t position, struct buf *out);
/* The same from a change record's JSON ({"sequence","key","state","position"}, proj_changes).
 * Returns 0 or ERR_CORRUPT (not such a record: nothing appended). */
int hd_render_change_item(struct db *db, const char *type, struct slice pid, struct slice item,
                          struct buf *out);

#endif
