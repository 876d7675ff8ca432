/* j17 projections over HTTP: GET /projections/{name}/{id}, the projection of the spec called
 * name for the aggregate id of its for_each type. It is composed when read from the current
 * states of the aggregates it names (each folded by the logic layer, from its state cache and
 * snapshots), so it is never behind a write (docs/dialects/j17.md, "Projections"). */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/logic.h"
#include "ops/out.h"
#include "util/errors.h"

enum { PROJ_IDS_MAX = 256 }; /* aggregates an array source may name */

struct proj_job {
    struct http_req *req;
    const struct gate_mount *mount;
    struct logic *lg;
    struct db *db;
    struct j17_spec *spec;                 /* one reference */
    const struct j17_projection *p;        /* borrowed from spec */
    char id[J17_ID_BYTES + 1];             /* the for_each aggregate's, canonical */
};

static void job_free(struct proj_job *j)
{
    j17_spec_unref(j->spec);
    engine_db_release(j->db);
    free(j);
}

/* The state of aggregate type:id as JSON (a new reference), NULL when it has no events.
 * Returns 0 or ERR_* (*err set when its handler failed). */
static int state_of(struct proj_job *j, const char *type, const char *id, json_t **out,
                    struct logic_error *err)
{
    char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
    snprintf(stream, sizeof stream, "%s:%s", type, id);
    struct logic_state st;
    logic_state_init(&st);
    bool no_reducer = false;
    int rc = logic_stream_state_as(j->lg, j->db, (struct slice){stream, strlen(stream)},
                                   (struct slice){type, strlen(type)}, NULL, &st, &no_reducer,
                                   err);
    *out = NULL;
    if (!rc) {
        *out = json_loadb(st.state.ptr, st.state.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        rc = *out ? 0 : ERR_CORRUPT; /* a state jansson cannot hold (an integer past 64 bits) */
    }
    if (json_is_object(*out) && !json_object_get(*out, "id")) {
        json_object_set_new(*out, "id", json_string(id)); /* what $lookup's where matches */
    }
    logic_state_fini(&st);
    return rc == ERR_NOTFOUND ? 0 : rc;
}

/* Resolves source i into ctx. Returns 0 or ERR_*. */
static int resolve_source(struct proj_job *j, size_t i, json_t *ctx, json_t *self,
                          struct logic_error *err, char *why, size_t cap)
{
    const char *name = j17_projection_source_name(j->p, i);
    const char *type = j17_projection_source_type(j->p, i);
    bool array = j17_projection_source_array(j->p, i);
    if (!type) {
        json_object_set(ctx, name, self ? self : json_null());
        return 0;
    }
    json_t *ids;
    int rc = j17_projection_source_ids(j->p, i, ctx, &ids, why, cap);
    if (rc) {
        return rc;
    }
    json_t *states = json_array();
    size_t k;
    json_t *v;
    json_array_foreach(ids, k, v) {
        char canon[J17_ID_BYTES + 1];
        json_t *st = NULL;
        const char *id = json_string_value(v);
        if (k < PROJ_IDS_MAX && id &&
            j17_id_check(j->spec, (struct slice){id, strlen(id)}, canon) == 0) {
            rc = state_of(j, type, canon, &st, err);
        }
        if (rc) {
            break;
        }
        json_array_append_new(states, st ? st : json_null());
    }
    json_decref(ids);
    if (array) {
        json_object_set_new(ctx, name, states);
    } else {
        json_object_set(ctx, name, json_array_size(states) ? json_array_get(states, 0)
                                                           : json_null());
        json_decref(states);
    }
    return rc;
}

/* Composes the projection into *out. Returns 0, ERR_NOTFOUND (the aggregate has no events)
 * or ERR_*. */
static int compose(struct proj_job *j, json_t **out, struct logic_error *err, char *why,
                   size_t cap)
{
    json_t *self = NULL;
    int rc = state_of(j, j17_projection_for_each(j->p), j->id, &self, err);
    if (!rc && !self) {
        rc = ERR_NOTFOUND;
    }
    json_t *ctx = json_object();
    for (size_t i = 0; !rc && i < j17_projection_include_count(j->p); i++) {
        json_t *st = NULL; /* includes first: a source's id may read one */
        rc = state_of(j, j17_projection_include_type(j->p, i),
                      j17_projection_include_id(j->p, i), &st, err);
        json_object_set_new(ctx, j17_projection_include_name(j->p, i), st ? st : json_null());
    }
    for (size_t i = 0; !rc && i < j17_projection_source_count(j->p); i++) {
        rc = resolve_source(j, i, ctx, self, err, why, cap);
    }
    if (!rc) {
        rc = j17_projection_select(j->p, ctx, out, why, cap);
    }
    json_decref(ctx);
    json_decref(self);
    return rc;
}

static void run_projection(void *arg, bool cancelled)
{
    struct proj_job *j = arg;
    struct logic_error le = {0};
    char why[256] = "";
    json_t *doc = NULL;
    int rc = cancelled ? ERR_SHUTDOWN : compose(j, &doc, &le, why, sizeof why);
    if (rc == ERR_NOTFOUND) {
        j_fail_req(j->mount, j->req, GK_NOT_FOUND, "Aggregate not found", NULL);
    } else if (rc == ERR_TOOBIG && !le.kind) { /* the data asks more than the budgets */
        char msg[600];
        snprintf(msg, sizeof msg, "the projection exceeds a limit: %s", why);
        j_fail_req(j->mount, j->req, GK_UNPROCESSABLE, msg, NULL);
    } else if (rc == ERR_INVALID || rc == ERR_TOOBIG) {
        char msg[600];
        snprintf(msg, sizeof msg, "the projection failed: %s", le.kind ? le.message : why);
        j_fail_req(j->mount, j->req, GK_INTERNAL, msg, NULL);
    } else if (rc) {
        struct gate_error ge;
        gate_engine_error(rc, &ge);
        gate_fail_req(j->mount, j->req, &ge);
    } else {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"ok\":true,\"data\":");
        j_add_json(&b, doc);
        buf_adds(&b, ",\"metadata\":{\"projection\":");
        const char *name = j17_projection_name(j->p);
        buf_add_json_str(&b, name, strlen(name));
        buf_adds(&b, ",\"id\":");
        buf_add_json_str(&b, j->id, strlen(j->id));
        buf_adds(&b, "}}");
        out_json(j->req, 200, &b);
    }
    json_decref(doc);
    job_free(j);
}

void j_projection(struct gate_call *c)
{
    if (!j_env_ok(c)) {
        return;
    }
    struct j17_spec *spec;
    int rc = j_spec_get(j_ctx_of(c), c->db, &spec);
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    const struct j17_projection *p = spec ? j17_spec_projection(spec, gate_param(c, "name"))
                                          : NULL;
    char canon[J17_ID_BYTES + 1];
    struct slice id = gate_param(c, "id");
    if (!p) {
        j_fail(c, GK_NOT_FOUND, "Projection not found", NULL);
    } else if (j17_id_check(spec, id, canon) != 0 ||
               (!j17_projection_substreams(p) && memchr(canon, ':', strlen(canon)))) {
        j_fail(c, GK_UNPROCESSABLE, "Invalid aggregate id", "id");
    } else {
        struct proj_job *j = xcalloc(1, sizeof(*j));
        *j = (struct proj_job){.req = c->req, .mount = c->mount, .lg = j_ctx_of(c)->logic,
                               .db = c->db, .spec = spec, .p = p};
        snprintf(j->id, sizeof j->id, "%s", canon);
        c->db = NULL;
        http_defer(c->req);
        if (engine_submit(c->gate->engine, run_projection, j) != 0) {
            j_fail_req(j->mount, j->req, GK_UNAVAILABLE, "too many requests wait for a "
                       "worker; try again shortly", NULL);
            job_free(j);
        }
        return;
    }
    j17_spec_unref(spec);
}
