/* Internals of the native API shared by its files (native.c: the route table, its mount and
 * the request helpers; status.c: index, health, metrics; databases.c: databases and
 * compaction; reads.c: log, query, event and stream reads; live_api.c: live subscriptions;
 * writes.c: appends and stream lifecycle). Not for use outside src/api/.
 *
 * Every handler below is a route's handler (gate/route.h): it runs on an I/O thread with a
 * struct gate_call that lives for the call, and answers the request or defers it. */
#ifndef API_NATIVE_INT_H
#define API_NATIVE_INT_H

#include <stdbool.h>

#include "api/native.h"
#include "gate/gate.h"

/* The native API's context (struct api), as its handlers see it. */
static inline struct api *api_of(const struct gate_call *c)
{
    return c->ctx;
}

/* ---- request helpers (native.c) ---- */

/* Reads the {stream} path parameter into *out (borrowed from the call). Answers 400
 * invalid_name and returns false when it is not a stream name. */
bool api_stream_name(struct gate_call *c, struct slice *out);
/* api_stream_name, for the paths that write or configure a stream: names starting with '$'
 * are the server's ($dcb, $$<stream>) and answer 400 invalid_name. */
bool api_user_stream_name(struct gate_call *c, struct slice *out);
/* Whether the caller may see database name: without keys, or with a key for all databases,
 * every one; with a key for one database, only that one. */
bool api_key_sees_db(const struct gate_call *c, const char *name);
/* Answers 204 with no body (any thread). */
void api_respond_no_content(struct http_req *req);

/* ---- the index, health and metrics (status.c) ---- */

void api_root(struct gate_call *c);            /* GET / */
void api_health(struct gate_call *c);          /* GET /health */
void api_health_detailed(struct gate_call *c); /* GET /health/detailed */
void api_metrics_get(struct gate_call *c);     /* GET /metrics */

/* ---- databases and compaction (databases.c) ---- */

void api_db_list(struct gate_call *c);       /* GET /v1/databases */
void api_db_create(struct gate_call *c);     /* POST /v1/databases */
void api_db_get(struct gate_call *c);        /* GET /v1/databases/{db} */
void api_db_update(struct gate_call *c);     /* PATCH /v1/databases/{db} */
void api_db_delete(struct gate_call *c);     /* DELETE /v1/databases/{db} (deferred) */
void api_compact_get(struct gate_call *c);   /* GET .../compaction */
void api_compact_start(struct gate_call *c); /* POST .../compaction */

/* ---- reads (reads.c) ---- */

void api_log_read(struct gate_call *c);     /* GET .../events */
void api_log_query(struct gate_call *c);    /* POST .../query */
void api_event_get(struct gate_call *c);    /* GET .../events/{position} */
void api_streams_list(struct gate_call *c); /* GET .../streams */
void api_stream_get(struct gate_call *c);   /* GET .../streams/{stream} */
void api_stream_read(struct gate_call *c);  /* GET .../streams/{stream}/events */

/* ---- live subscriptions (live_api.c); the subscription takes c->db ---- */

void api_log_live(struct gate_call *c);        /* GET .../events/live */
void api_stream_live(struct gate_call *c);     /* GET .../streams/{stream}/events/live */
void api_live_conns(struct gate_call *c);      /* GET /v1/connections */
void api_live_conn_close(struct gate_call *c); /* DELETE /v1/connections/{id} */

/* ---- appends and stream lifecycle (writes.c); the writes take c->db ---- */

void api_stream_append(struct gate_call *c); /* POST .../streams/{stream}/events */
void api_multi_append(struct gate_call *c);  /* POST .../events */
void api_stream_delete(struct gate_call *c); /* DELETE .../streams/{stream} */
void api_meta_read(struct gate_call *c);     /* GET .../streams/{stream}/metadata */
void api_meta_write(struct gate_call *c);    /* PUT .../streams/{stream}/metadata */

/* ---- user code (logic_api.c): deploys, removals and state reads run on the workers ---- */

void api_comp_put(struct gate_call *c);      /* PUT .../components/{name} (deferred) */
void api_comp_list(struct gate_call *c);     /* GET .../components */
void api_comp_get(struct gate_call *c);      /* GET .../components/{name} */
void api_comp_delete(struct gate_call *c);   /* DELETE .../components/{name} (deferred) */
void api_stream_state(struct gate_call *c);  /* GET .../streams/{stream}/state (deferred) */
void api_view_get(struct gate_call *c);      /* GET .../views/{name}?<params> (deferred) */
void api_proj_get(struct gate_call *c);      /* GET .../projections/{name} */
void api_proj_state(struct gate_call *c);    /* GET .../projections/{name}/state/{key} */
void api_proj_keys(struct gate_call *c);     /* GET .../projections/{name}/keys */
void api_proj_changes(struct gate_call *c);  /* GET .../projections/{name}/changes */
void api_command(struct gate_call *c);       /* POST .../commands/{name} (deferred) */
void api_proj_hook_rotate(struct gate_call *c);  /* POST .../projections/{name}/webhook/rotate (deferred) */
void api_proj_hooks_rotate(struct gate_call *c); /* POST .../projection-webhooks/rotate (deferred) */
void api_proj_live(struct gate_call *c);     /* GET .../projections/{name}/changes/live */

#endif
