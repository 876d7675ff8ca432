/* What the j17 dialect's files share (routes.c, specs.c, writes.c, reads.c, admin.c): the
 * handlers of the route table and small helpers. Internal to the dialect. */
#ifndef DIALECT_J17_J_INT_H
#define DIALECT_J17_J_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dialect/j17/j17.h"
#include "dialect/j17/saga.h"
#include "dialect/j17/spec.h"
#include "dialect/j17/translate.h"

/* The document component holding a database's spec, and the prefix of its reducers'
 * names ("j17.r.<aggregate type>"). */
#define J17_SPEC_COMPONENT "j17.spec"
#define J17_REDUCER_PREFIX "j17.r."

static inline struct j17_ctx *j_ctx_of(const struct gate_call *c)
{
    return c->ctx;
}

/* The environment a mount serves. */
enum j17_env j_env_of(const struct gate_mount *m);
/* The environment database db belongs to (by its suffix "-staging", "-test"; else prod),
 * and its instance (the name without the suffix) into instance (cap bytes; may be NULL). */
enum j17_env j_db_env(const char *db, char *instance, size_t cap);
/* "prod", "staging", "test". */
const char *j_env_name(enum j17_env env);
/* Parses an environment name. False when unknown. */
bool j_env_parse(const char *s, enum j17_env *out);
/* The database name of instance in env ("shop", "shop-staging", "shop-test") into out
 * (cap >= LIMIT_DB_NAME_BYTES + 1). False when it does not fit or is no database name. */
bool j_env_db(const char *instance, enum j17_env env, char *out, size_t cap);
/* The API key prefix of env's keys ("j17_0_staging_"). */
const char *j_key_prefix(enum j17_env env);

/* Answers an error in j17's envelope (path: the offending input, or NULL). */
void j_fail(const struct gate_call *c, unsigned kind, const char *msg, const char *path);
/* The same for a request whose call is gone (a worker's answer). */
void j_fail_req(const struct gate_mount *m, struct http_req *req, unsigned kind,
                const char *msg, const char *path);
/* True when the body is JSON (Content-Type application/json); else answers 400. */
bool j_json_body(const struct gate_call *c);
/* Checks that the key presented is for the mount's environment (403 "wrong environment"
 * otherwise). True when the request may go on. */
bool j_env_ok(const struct gate_call *c);

/* ---- batch.c ---- */

/* The stream of the timers of scheduled implications (no aggregate's: those hold a ':'), the
 * types of its events and the tag that names one timer ("j17timer:<uuid>"). */
#define J17_TIMER_STREAM "j17.timers"
#define J17_TIMER_SCHEDULED "j17.scheduled"
#define J17_TIMER_FIRED "j17.fired"
#define J17_TIMER_CANCELLED "j17.cancelled"
#define J17_TIMER_TAG "j17timer:"

enum { J17_JSON_DEPTH = 128 }; /* nesting j_add_json writes (deeper than any input takes) */

/* One event to append: its stream, type, data, metadata and tags (JSON text, or NULL). */
struct j_out_event {
    char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
    const char *type;            /* borrowed */
    json_t *data;                /* borrowed */
    struct slice raw_data;       /* when ptr: data's text as sent, minified (borrowed; numbers
                                    kept exactly), written instead of data */
    json_t *metadata;            /* borrowed, or NULL */
    const char *tags;            /* borrowed, or NULL */
};

/* The events of one write. What it points to must outlive it (the request's trees, the
 * spec); what it makes itself (implied metadata, timer records) it keeps. */
struct j_batch {
    const struct j17_spec *spec;     /* borrowed */
    int64_t now_ms;                  /* when the write is made (timers count from it) */
    struct j_out_event *evs;
    size_t count, cap;
    size_t own;                      /* the first events: the aggregate's own */
    size_t scheduled;                /* timer records among evs */
    size_t sagas;                    /* saga start records among evs */
    unsigned saga_depth;             /* the depth of the instances it starts (saga.h): 0, or
                                        for a saga step's write its instance's depth + 1 */
    struct j17_implied_list implied; /* what implications gave */
    json_t **from;                   /* implied.count: the metadata each implied event gets */
    json_t *owned;                   /* values the batch keeps alive */
};

void j_batch_init(struct j_batch *b, const struct j17_spec *spec, int64_t now_ms);
void j_batch_fini(struct j_batch *b);
/* Adds an event of stream "<type>:<id>" (id NULL: the stream type). */
void j_batch_push(struct j_batch *b, const char *type, const char *id, const char *event_type,
                  json_t *data, json_t *metadata, const char *tags);
/* Runs the implications of one event of aggregate key ("<type>:<id>"), keeping what they
 * imply (with metadata and implied_by) for j_batch_push_implied. Returns 0, or ERR_INVALID /
 * ERR_TOOBIG with why. */
int j_batch_imply(struct j_batch *b, const struct j17_agg *a, const struct j17_evt *e,
                  const char *key, json_t *data, json_t *metadata, char *why, size_t cap);
/* Adds every implied event after the aggregate's own: those written now, and a timer record
 * for each scheduled one; then a saga start record (saga.h) for each saga that an event of
 * the batch so far (the aggregate's own and the implied ones) triggers, unless saga_depth is
 * over J17_SAGA_DEPTH_MAX (then none is made). The one place sagas start: client writes, fired
 * timers and saga steps all come through here. A start record names its trigger by position
 * (trigger_offset, from the order j_batch_body writes the events in), so it must be the last
 * call adding events before j_batch_body. Returns 0, or ERR_TOOBIG (more than
 * J17_SAGA_STARTS_MAX starts) with why. */
int j_batch_push_implied(struct j_batch *b, char *why, size_t cap);
/* Keeps v (a new reference) alive as long as the batch; returns it, borrowed. */
json_t *j_batch_keep(struct j_batch *b, json_t *v);
/* Appends the native multi-stream body: one part per stream in the order streams first
 * appear (the first part carrying expectedVersion *expected when not NULL), then extra_part
 * (a part object's JSON text, ptr NULL: none), then "conditions" (a JSON array's text, ptr
 * NULL: none). */
void j_batch_body(const struct j_batch *b, const uint64_t *expected, struct slice extra_part,
                  struct slice conditions, struct buf *out);
/* Appends the compact JSON text of v ("null" for NULL). */
void j_add_json(struct buf *out, const json_t *v);

/* ---- sagas.c (run by the timer thread, timers.c) ---- */

/* Applies one event of J17_TIMER_STREAM to s if it is a saga record; a start record that
 * finds s full is kept aside and ended as failed by j_sagas_tick (the next ones, as their
 * write budget allows). Returns 1 when J17_SAGA_OVERFLOW_MAX instances wait to be ended
 * already (read it again later), else 0. */
int j_sagas_on_record(struct j_sagas *s, const struct event_rec *ev, const json_t *data);
/* Ends the instances kept aside (the table was full), then advances db's running instances
 * (s) by what the spec in force and the streams say: runs steps, looks for awaited events,
 * times out, compensates, ends. Bounded per call: J17_SAGA_CHECKS_PER_TICK reads for awaited
 * events and about J17_SAGA_WRITES_PER_TICK appends (the next call goes on where this one
 * stopped). Timer thread. */
void j_sagas_tick(struct j17_ctx *x, struct db *db, struct j_sagas *s);

/* ---- admin.c ---- */

/* The path's {instance}, checked (it and its environments' names are database names), into
 * out (LIMIT_DB_NAME_BYTES + 1), and that the caller may manage it. False after answering. */
bool j_path_instance(const struct gate_call *c, char *out);
/* True when the caller's admin key may manage instance: a key for every database, or bound to
 * one of the instance's (development mode: true). answer: answer 403 when not. */
bool j_may_manage(const struct gate_call *c, const char *instance, bool answer);

/* ---- specs.c ---- */

struct j17_spec_cache *j_specs_new(void);
void j_specs_free(struct j17_spec_cache *c);
/* The spec in force in db (one reference for the caller), or *out NULL when none was
 * deployed. Returns 0 or ERR_*. */
int j_spec_get(struct j17_ctx *x, struct db *db, struct j17_spec **out);
/* Keeps s (the caller keeps its reference) as db's compiled spec of document version. */
void j_spec_keep(struct j17_ctx *x, struct db *db, uint64_t version, struct j17_spec *s);
/* The spec, the aggregate type and (when event_type.ptr) the event type a request names,
 * answering 404 when the database has no spec or the spec lacks them. On true *spec holds a
 * reference. */
bool j_spec_find(const struct gate_call *c, struct slice type, struct slice event_type,
                 struct j17_spec **spec, const struct j17_agg **agg,
                 const struct j17_evt **evt);

/* ---- listeners.c ---- */

/* Checks every listener's url against the server's address policy and its secret; ERR_INVALID
 * with *pr naming each refused one. Resolves names: a worker's call. */
int j_listeners_check(const struct j17_spec *s, struct engine *e, struct j17_problems *pr);
/* Makes db's listener webhooks those of s: kept when unchanged, replaced (from the old one's
 * next undelivered event) when changed, deleted when dropped. Appends a JSON string to warn
 * (comma-separated) for each listener that could not be made, and returns how many. Worker. */
size_t j_listeners_sync(struct db *db, const struct j17_spec *s, struct buf *warn);

/* ---- the route handlers ---- */
void j_write(struct gate_call *c);        /* POST /{type}/{id}/{event_type} */
void j_write_batch(struct gate_call *c);  /* POST /{type}/{id} */
void j_get(struct gate_call *c);          /* GET /{type}/{id} */
void j_length(struct gate_call *c);       /* GET /{type}/{id}/length */
void j_events(struct gate_call *c);       /* GET /{type}/{id}/events */
void j_projection(struct gate_call *c);   /* GET /projections/{name}/{id} */
void j_deploy(struct gate_call *c);       /* POST /api/instances/{id}/spec */
void j_spec_show(struct gate_call *c);    /* GET /api/instances/{id}/spec */
void j_keys_list(struct gate_call *c);    /* GET /api/instances/{id}/keys */
void j_keys_create(struct gate_call *c);  /* POST /api/instances/{id}/keys */
void j_key_rotate(struct gate_call *c);   /* POST /api/keys/{id}/rotate */
void j_key_schedule(struct gate_call *c); /* POST /api/keys/{id}/schedule_revocation */
void j_key_delete(struct gate_call *c);   /* DELETE /api/keys/{id} */

#endif
