/* What the state view and state change files of the EvidentSource dialect share (views.c:
 * lists, reads, removal, components; publish.c: publishing; changes.c: processing commands).
 * Internal to the dialect.
 *
 * A state view is a view component of the logic layer, a state change a command component,
 * each deployed with eventFormat "cloudevents" (format.h) and the metadata it was published
 * with as its meta; components deployed otherwise are not the dialect's. User code, deploys
 * and removals run on the engine's workers: a handler checks what it can on the I/O thread,
 * fills a struct es_job and hands it over (es_job_submit); the job answers the request. */
#ifndef DIALECT_EVIDENTSOURCE_VIEWS_INT_H
#define DIALECT_EVIDENTSOURCE_VIEWS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dialect/evidentsource/es_int.h"
#include "logic/logic.h"
#include "util/workq.h"

enum {
    ES_VIEW_PARAMS_MAX = 64,       /* a state view read's parameters */
    ES_VIEW_PARAM_BYTES = 256,     /* one's name, and its value */
    ES_CONTENT_TYPE_BYTES = 127,   /* a state view's content_type */
    ES_PREFIX_BYTES = 128,         /* the path before the routes (the mount's prefix) */
};

/* A request handed to the engine's workers. */
struct es_job {
    struct http_req *req;             /* deferred: the job answers it exactly once */
    const struct gate_mount *mount;   /* its envelope */
    struct logic *lg;                 /* borrowed */
    struct db *db;                    /* a reference, the job's */
    char name[COMP_NAME_BYTES + 1];   /* the state view or change */
    bool is_change;                   /* a state change (else a state view) */
    bool v1;                          /* publishes: the newer generation's answer */
    struct comp_def def;              /* publishes: what to deploy (owned) */
    char *text;                       /* owned: view reads, the parameters' JSON object;
                                         commands, the command's JSON */
    char *meta;                       /* owned: commands, what ctx.metadata() answers */
    struct as_of at;                  /* view reads: the database as of this point */
    struct logic_view_read rd;        /* view reads (rd.at points at at when used) */
    const char *content_type;         /* view reads: the answer's type, owned by the
                                         request (http_respond keeps the pointer until the
                                         answer is written) */
    char prefix[ES_PREFIX_BYTES];     /* publishes: the path before the routes (Location) */
    const char *code_field;           /* publishes: the input that holds the code ("source",
                                         "wasm"; static) */
};

/* A new job for c's request (mount and logic set). */
struct es_job *es_job_new(const struct gate_call *c);
/* Frees j with its reference on the database (NULL is allowed). */
void es_job_free(struct es_job *j);
/* Hands j to the engine's workers with db (a reference, taken) and defers c's request; fn
 * answers it and frees j. When the workers cannot take it, answers 503 (or the engine's
 * error) and frees j. */
void es_job_submit(struct gate_call *c, struct es_job *j, struct db *db, workq_fn *fn);
/* Answers j's request with an error in the dialect's envelope; details as gate_error's (may
 * be NULL). */
void es_job_fail(const struct es_job *j, unsigned kind, const char *code, const char *msg,
                 const char *field, const char *details);
/* Answers a failure of user code (a state view's or change's): its kind, line and column in
 * details. */
void es_job_fail_code(const struct es_job *j, unsigned kind, const char *code,
                      const struct logic_error *le, const char *field);

/* True when def is one of the dialect's state views (change false) or state changes. */
bool es_component_is(const struct comp_def *def, bool change);
/* The state view (change false) or state change called name in set, or NULL. */
const struct comp_def *es_component_find(const struct comp_set *set, const char *name,
                                         bool change);
/* The string member of def's metadata into out (reset first; NUL-terminated); false when it
 * has none. */
bool es_meta_string(const struct comp_def *def, const char *member, struct buf *out);
/* True for a media type as a state view's content_type may be: type "/" subtype, then
 * parameters; at most ES_CONTENT_TYPE_BYTES, no control characters (s need not be
 * NUL-terminated). A read of a view whose metadata has another (deployed natively) answers
 * application/json. */
bool es_media_type_ok(const char *s, size_t n);
/* The path of c's request before its route's last nsegs segments: the mount's prefix
 * ("/evidentsource", or "" on the dialect's own port), into out. */
void es_path_prefix(const struct gate_call *c, size_t nsegs, char out[ES_PREFIX_BYTES]);

#endif
