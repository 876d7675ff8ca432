/* What the EvidentSource dialect's route files share (routes.c, events.c, views.c, page.c):
 * the handlers of the route table and small helpers. Internal to the dialect. */
#ifndef DIALECT_EVIDENTSOURCE_ES_INT_H
#define DIALECT_EVIDENTSOURCE_ES_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dialect/evidentsource/evidentsource.h"
#include "dialect/evidentsource/translate.h"
#include "ops/parse.h"

static inline const struct es_ctx *es_ctx_of(const struct gate_call *c)
{
    return c->ctx;
}

/* Answers an error in the dialect's envelope. */
void es_fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg,
             const char *field);
void es_fail_parse(const struct gate_call *c, const struct parse_error *pe);
/* True when the body is JSON (Content-Type application/json); else answers 415. */
bool es_json_body(const struct gate_call *c);
/* A database named by a query parameter or body member (the newer API generation), checked
 * against the caller's key the way the gate checks a path's database (a key bound to
 * another database: 404), acquired into *out. False when it answered (400, 404). */
bool es_acquire_named_db(struct gate_call *c, const char *name, struct db **out);

/* views.c: the names of db's state views (changes false) or state changes, as a JSON array
 * appended to out. */
void es_component_names(struct gate_call *c, struct db *db, bool changes, struct buf *out);

/* routes.c: databases and health */
void es_health(struct gate_call *c);
void es_health_detailed(struct gate_call *c);
void es_db_list(struct gate_call *c);
void es_db_create(struct gate_call *c);
void es_db_get(struct gate_call *c);
void es_db_delete(struct gate_call *c);
void es_v1_db_list(struct gate_call *c);
void es_v1_db_create(struct gate_call *c);

/* events.c: appends, queries, reads, subscriptions */
void es_append(struct gate_call *c);        /* POST /databases/{database}/events */
void es_query(struct gate_call *c);         /* POST /databases/{database}/query */
void es_event_get(struct gate_call *c);     /* GET /databases/{database}/events/{revision} */
void es_events_page(struct gate_call *c);   /* GET /databases/{database}/events */
void es_v1_events(struct gate_call *c);     /* GET /v1/events (JSON, or SSE) */

/* views.c: state views, state changes, components */
void es_views_list(struct gate_call *c);    /* GET /databases/{database}/state-views */
void es_view_get(struct gate_call *c);      /* GET .../state-views/{view} */
void es_view_delete(struct gate_call *c);   /* DELETE .../state-views/{view} */
void es_changes_list(struct gate_call *c);  /* GET /databases/{database}/state-changes */
void es_change_process(struct gate_call *c); /* POST .../state-changes/{change}/process */
void es_view_publish(struct gate_call *c);  /* POST /api/v1/db/{database}/state-views */
void es_change_publish(struct gate_call *c); /* POST /api/v1/db/{database}/state-changes */
void es_v1_view_get(struct gate_call *c);   /* GET /v1/state-views/{view}?database= */
void es_v1_command(struct gate_call *c);    /* POST /v1/commands */
void es_v1_components(struct gate_call *c); /* GET /v1/databases/{database}/components */
void es_v1_component_add(struct gate_call *c); /* POST /v1/databases/{database}/components */

/* page.c: the query builder */
void es_query_builder(struct gate_call *c); /* GET /databases/{database}/query-builder */
void es_query_results(struct gate_call *c); /* GET .../query-builder/results (HTML) */
void es_asset(struct gate_call *c);         /* GET /static/{file} */

#endif
