/* Hapnd reducers: uploads (uploads.h), their status, aggregate-type bindings and aggregate
 * state. A binding is a reducer component of the logic layer named HD_REDUCER_PREFIX and the
 * type, bound to the type as its category, seeing events in the Hapnd format; its meta holds
 * the upload and class it came from. */
#include "dialect/hapnd/hd_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/hapnd/format.h"
#include "dialect/hapnd/uploads.h"
#include "logic/component.h"
#include "logic/logic.h"
#include "ops/out.h"
#include "util/errors.h"

#define HD_REDUCER_PREFIX "hapnd.r."

/* The component name of type's binding into out (COMP_NAME_BYTES + 1). */
static void binding_name(const char *type, char *out)
{
    snprintf(out, COMP_NAME_BYTES + 1, HD_REDUCER_PREFIX "%s", type);
}

/* Deploys entry (a discovered reducer of upload reducer_id) as type's reducer. Returns 0 (and
 * *bound_us) or ERR_* with why. Worker. */
static int bind_reducer(struct logic *lg, struct db *db, const char *type, const char *reducer_id,
                        json_t *entry, int64_t *bound_us, char *why, size_t cap)
{
    json_t *body = json_pack("{s:s, s:O, s:O, s:s, s:s, s:{s:{s:s, s:O, s:O}}}", "kind",
                             "reducer", "language", json_object_get(entry, "language"),
                             "source", json_object_get(entry, "source"), "category", type,
                             "eventFormat", HAPND_FORMAT_NAME, "meta", "hapnd", "reducerId",
                             reducer_id, "className", json_object_get(entry, "className"),
                             "stateTypeName", json_object_get(entry, "stateTypeName"));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char name[COMP_NAME_BYTES + 1];
    binding_name(type, name);
    struct comp_def def;
    memset(&def, 0, sizeof def);
    struct comp_error ce;
    int rc = text ? comp_parse(name, (struct slice){text, strlen(text)}, &def, &ce) : ERR_NOMEM;
    free(text);
    if (rc) {
        snprintf(why, cap, "%s", rc == ERR_NOMEM ? "out of memory" : ce.message);
        return rc;
    }
    struct logic_guard guard = {COMP_REDUCER, HAPND_FORMAT_NAME};
    struct logic_error le = {0};
    rc = logic_deploy_as(lg, db, &def, &guard, &le);
    if (rc == ERR_EXISTS) {
        snprintf(why, cap, "aggregate type %s has a reducer deployed through another API; "
                 "remove it first", type);
    } else if (rc) {
        snprintf(why, cap, "%s", le.message[0] ? le.message : err_name(rc));
    }
    *bound_us = def.deployed_us;
    comp_def_fini(&def);
    return rc;
}

/* ---- uploads ---- */

/* A type of upload u's reducers that a reducer deployed through another API holds (nothing
 * of the upload is deployed then): 0, or ERR_EXISTS with the record's compilationError. */
static int check_bindings(struct hd_upload *u)
{
    struct comp_set *set;
    int rc = logic_set(u->lg, u->db, &set);
    if (rc) {
        json_object_set_new(u->record, "compilationError", json_string(err_name(rc)));
        return rc;
    }
    json_t *d = json_object_get(u->record, "discovered");
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        const char *type = json_string_value(json_object_get(e, "aggregateType"));
        const struct comp_def *def = !type ? NULL
                                     : comp_set_reducer_of(set, (struct slice){type,
                                                                               strlen(type)});
        if (def && (!def->event_format || strcmp(def->event_format, HAPND_FORMAT_NAME) ||
                    strncmp(def->name, HD_REDUCER_PREFIX, sizeof HD_REDUCER_PREFIX - 1))) {
            char why[160];
            snprintf(why, sizeof why, "aggregate type %s has a reducer deployed through another "
                     "API (%s); remove it first", type, def->name);
            json_object_set_new(u->record, "compilationError", json_string(why));
            rc = ERR_EXISTS;
            break;
        }
    }
    comp_set_unref(set);
    return rc;
}

static int deploy_reducers(struct hd_upload *u)
{
    int rc = check_bindings(u);
    if (rc) {
        return rc;
    }
    json_t *d = json_object_get(u->record, "discovered");
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *type = json_string_value(json_object_get(e, "aggregateType"));
        char why[512];
        int64_t at;
        if (kind && !strcmp(kind, "reducer") && type &&
            bind_reducer(u->lg, u->db, type, u->id, e, &at, why, sizeof why) != 0) {
            json_object_set_new(u->record, "compilationError", json_string(why));
            return ERR_INVALID;
        }
    }
    return 0;
}

static void answer_reducer(struct hd_upload *u, struct buf *out)
{
    buf_adds(out, "{\"reducerId\":");
    buf_add_json_str(out, u->id, strlen(u->id));
    buf_adds(out, ",\"status\":\"pending_compilation\"}");
}

void hd_reducer_upload(struct gate_call *c)
{
    struct hd_upload *u = hd_upload_read(c, false);
    if (u) {
        u->deploy = deploy_reducers;
        u->answer = answer_reducer;
        hd_upload_submit(c, u);
    }
}

/* An upload's record (as its status route shows it, or whole), or 404. */
static json_t *load_record(struct gate_call *c, const char *id, const char *want_kind)
{
    struct buf b;
    buf_init(&b);
    int rc = strlen(id) <= HD_ID_BYTES ? hd_record_get(c->db, id, &b) : ERR_NOTFOUND;
    json_t *r = rc ? NULL : json_loadb(b.ptr, b.len, 0, NULL);
    buf_fini(&b);
    const char *kind = json_string_value(json_object_get(r, "kind"));
    if (rc && rc != ERR_NOTFOUND) {
        gate_fail_engine(c, rc);
    } else if (!r || !kind || strcmp(kind, want_kind)) {
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", want_kind[0] == 'r' ? "no reducer upload with "
                "this id" : "no projection upload with this id");
        json_decref(r);
        return NULL;
    }
    return r;
}

void hd_reducer_status(struct gate_call *c)
{
    json_t *r = load_record(c, gate_param_str(c, "id"), "reducer");
    if (r) {
        struct buf b;
        buf_init(&b);
        hd_record_status(r, hd_ctx_of(c)->run, &b);
        out_json(c->req, 200, &b);
        json_decref(r);
    }
}

/* ---- bindings ---- */

/* A request that runs on a worker. */
struct hd_job {
    struct http_req *req;
    const struct hapnd_ctx *x;
    struct logic *lg;
    struct db *db;
    char type[HAPND_TYPE_BYTES + 1];
    char id[LIMIT_STREAM_NAME_BYTES + 1]; /* an upload's or an aggregate's */
    char cls[HD_CLASS_BYTES + 1];         /* "": not given */
};

static void job_free(struct hd_job *j)
{
    engine_db_release(j->db);
    free(j);
}

static void job_submit(struct gate_call *c, struct hd_job *j, workq_fn *fn)
{
    j->req = c->req;
    j->x = hd_ctx_of(c);
    j->lg = j->x->logic;
    j->db = c->db;
    c->db = NULL;
    http_defer(c->req);
    int rc = engine_submit(c->gate->engine, fn, j);
    if (rc) {
        hd_fail_req(j->req, GK_UNAVAILABLE, "SERVICE_UNAVAILABLE",
                    "too many requests wait for a worker; try again shortly");
        job_free(j);
    }
}

/* The path's aggregate type, checked. False after answering. */
static bool path_type(struct gate_call *c, char *out)
{
    struct slice t = gate_param(c, "type");
    if (!hapnd_type_ok(t)) {
        hd_fail(c, GK_INVALID, "VALIDATION_ERROR", "an aggregate type is 1 to 48 letters, "
                "digits, '_', '-' or '.'");
        return false;
    }
    memcpy(out, t.ptr, t.len);
    out[t.len] = '\0';
    return true;
}

/* The discovered reducer of record r that binds to type: className when given, else the one
 * whose aggregateType is type, else the only reducer. NULL after answering. */
static json_t *pick_class(struct hd_job *j, json_t *r)
{
    json_t *d = json_object_get(r, "discovered");
    json_t *e, *only = NULL, *typed = NULL, *named = NULL;
    size_t i, reducers = 0;
    json_array_foreach(d, i, e) {
        const char *cls = json_string_value(json_object_get(e, "className"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *t = json_string_value(json_object_get(e, "aggregateType"));
        named = j->cls[0] && cls && !strcmp(cls, j->cls) ? e : named;
        bool red = kind && !strcmp(kind, "reducer");
        reducers += red;
        only = red ? e : only;
        typed = red && t && !strcmp(t, j->type) ? e : typed;
    }
    json_t *pick = j->cls[0] ? named : typed ? typed : reducers == 1 ? only : NULL;
    const char *kind = json_string_value(json_object_get(pick, "kind"));
    if (!pick) {
        hd_fail_req(j->req, GK_INVALID, "INVALID_REDUCER", j->cls[0]
                    ? "the upload has no class of that className"
                    : "name the className: the upload has no single reducer for this type");
    } else if (!kind || strcmp(kind, "reducer")) {
        hd_fail_req(j->req, GK_INVALID, "INVALID_REDUCER", "that class is a projection, not "
                    "a reducer");
        pick = NULL;
    }
    return pick;
}

static void run_bind(void *arg, bool cancelled)
{
    struct hd_job *j = arg;
    struct buf b;
    buf_init(&b);
    int rc = cancelled ? ERR_SHUTDOWN : hd_record_get(j->db, j->id, &b);
    json_t *r = rc ? NULL : json_loadb(b.ptr, b.len, 0, NULL);
    buf_reset(&b);
    if (r) {
        hd_record_status(r, j->x->run, &b); /* the status as a client sees it (restarts) */
    }
    json_t *st = r ? json_loadb(b.ptr, b.len, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(r, "kind"));
    const char *status = json_string_value(json_object_get(st, "status"));
    json_t *e = NULL;
    if (rc && rc != ERR_NOTFOUND) {
        struct gate_error ge;
        gate_engine_error(rc, &ge);
        gate_fail_req(&hapnd_mount, j->req, &ge);
    } else if (!r || !kind) {
        hd_fail_req(j->req, GK_NOT_FOUND, "NOT_FOUND", "no reducer upload with this id");
    } else if (strcmp(kind, "reducer")) {
        hd_fail_req(j->req, GK_INVALID, "INVALID_REDUCER", "that id is a projection upload");
    } else if (status && strcmp(status, "compiled") && strcmp(status, "failed")) {
        hd_fail_req(j->req, GK_INVALID, "REDUCER_NOT_READY", "the reducer is still compiling");
    } else if (!status || strcmp(status, "compiled")) {
        hd_fail_req(j->req, GK_INVALID, "INVALID_REDUCER", "the reducer did not compile");
    } else if ((e = pick_class(j, r)) != NULL) {
        char why[512];
        int64_t at = 0;
        if (bind_reducer(j->lg, j->db, j->type, j->id, e, &at, why, sizeof why) != 0) {
            hd_fail_req(j->req, GK_INVALID, "INVALID_REDUCER", why);
        } else {
            char when[HAPND_TIME_BYTES];
            hapnd_time(at, when);
            buf_reset(&b);
            buf_adds(&b, "{\"aggregateType\":");
            buf_add_json_str(&b, j->type, strlen(j->type));
            buf_adds(&b, ",\"reducerId\":");
            buf_add_json_str(&b, j->id, strlen(j->id));
            buf_printf(&b, ",\"boundAt\":\"%s\",\"message\":\"Reducer bound. Aggregate state "
                       "catchup in progress.\"}", when);
            out_json(j->req, 200, &b);
            buf_init(&b);
        }
    }
    json_decref(st);
    json_decref(r);
    buf_fini(&b);
    job_free(j);
}

void hd_bind(struct gate_call *c)
{
    if (!hd_json_body(c)) {
        return;
    }
    struct hd_job *j = xcalloc(1, sizeof(*j));
    json_error_t je;
    struct slice body = http_req_body(c->req);
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    const char *rid = json_string_value(json_object_get(root, "reducerId"));
    json_t *cls = json_object_get(root, "className");
    bool ok = path_type(c, j->type);
    if (ok && !json_is_object(root)) {
        hd_fail(c, GK_INVALID, "INVALID_REQUEST", "the body is not a JSON object");
        ok = false;
    } else if (ok && (!rid || strlen(rid) > HD_ID_BYTES)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "reducerId is required", "reducerId");
        ok = false;
    } else if (ok && cls && !json_is_null(cls) &&
               (!json_is_string(cls) || json_string_length(cls) > HD_CLASS_BYTES)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "className must be a string", "className");
        ok = false;
    }
    if (ok) {
        snprintf(j->id, sizeof j->id, "%s", rid);
        snprintf(j->cls, sizeof j->cls, "%s", json_is_string(cls) ? json_string_value(cls) : "");
    }
    json_decref(root);
    if (!ok) {
        free(j);
        return;
    }
    job_submit(c, j, run_bind);
}

/* The reducer bound to type in c's database (a reference on *set), or NULL after answering
 * 404 NO_REDUCER_BOUND. */
static const struct comp_def *bound(struct gate_call *c, const char *type, struct comp_set **set)
{
    int rc = logic_set(hd_ctx_of(c)->logic, c->db, set);
    const struct comp_def *def = rc ? NULL
                                    : comp_set_reducer_of(*set, (struct slice){type,
                                                                               strlen(type)});
    if (rc) {
        gate_fail_engine(c, rc);
    } else if (!def) {
        comp_set_unref(*set);
        hd_fail(c, GK_NOT_FOUND, "NO_REDUCER_BOUND", "no reducer is bound to this aggregate "
                "type");
    }
    return def;
}

void hd_binding_get(struct gate_call *c)
{
    char type[HAPND_TYPE_BYTES + 1];
    struct comp_set *set;
    const struct comp_def *def = path_type(c, type) ? bound(c, type, &set) : NULL;
    if (!def) {
        return;
    }
    json_t *meta = def->meta ? json_loads(def->meta, 0, NULL) : NULL;
    json_t *h = json_object_get(meta, "hapnd");
    char when[HAPND_TIME_BYTES];
    hapnd_time(def->deployed_us, when);
    json_t *out = json_pack("{s:s, s:O, s:s, s:O, s:s}", "aggregateType", type, "reducerId",
                            json_object_get(h, "reducerId") ? json_object_get(h, "reducerId")
                                                            : json_null(),
                            "boundAt", when, "className",
                            json_object_get(h, "className") ? json_object_get(h, "className")
                                                            : json_null(),
                            "component", def->name);
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    struct buf b;
    buf_init(&b);
    buf_adds(&b, text ? text : "{}");
    out_json(c->req, 200, &b);
    free(text);
    json_decref(out);
    json_decref(meta);
    comp_set_unref(set);
}

/* ---- state ---- */

static void run_state(void *arg, bool cancelled)
{
    struct hd_job *j = arg;
    char type[HAPND_TYPE_BYTES + 1];
    bool found = false;
    int rc = cancelled ? ERR_SHUTDOWN
                       : hd_aggregate_type(j->x, j->db, (struct slice){j->id, strlen(j->id)},
                                           &found, type);
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    bool no_reducer = false;
    if (!rc && found && !strcmp(type, j->type)) {
        rc = logic_stream_state_as(j->lg, j->db, (struct slice){j->id, strlen(j->id)},
                                   (struct slice){j->type, strlen(j->type)}, NULL, &st,
                                   &no_reducer, &le);
    } else if (!rc) {
        rc = ERR_NOTFOUND;
    }
    if (no_reducer) {
        hd_fail_req(j->req, GK_NOT_FOUND, "NO_REDUCER_BOUND", "no reducer is bound to this "
                    "aggregate type");
    } else if (rc == ERR_NOTFOUND) {
        hd_fail_req(j->req, GK_NOT_FOUND, "NOT_FOUND", "no aggregate of this type and id");
    } else if (rc == ERR_INVALID && le.kind) {
        hd_fail_req(j->req, GK_INTERNAL, "REDUCER_FAILED", le.message);
    } else if (rc) {
        struct gate_error ge;
        gate_engine_error(rc, &ge);
        gate_fail_req(&hapnd_mount, j->req, &ge);
    } else {
        char when[HAPND_TIME_BYTES];
        hapnd_time(st.updated_us, when);
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"aggregateId\":");
        buf_add_json_str(&b, j->id, strlen(j->id));
        buf_adds(&b, ",\"aggregateType\":");
        buf_add_json_str(&b, j->type, strlen(j->type));
        buf_printf(&b, ",\"version\":%llu,\"state\":", (unsigned long long)st.version);
        buf_add(&b, st.state.ptr, st.state.len);
        buf_printf(&b, ",\"lastModified\":\"%s\"}", when);
        out_json(j->req, 200, &b);
    }
    logic_state_fini(&st);
    job_free(j);
}

void hd_state(struct gate_call *c)
{
    struct hd_job *j = xcalloc(1, sizeof(*j));
    struct slice id = gate_param(c, "id");
    if (!path_type(c, j->type)) {
        free(j);
        return;
    }
    if (id.len == 0 || id.len > LIMIT_STREAM_NAME_BYTES || id.ptr[0] == '$') {
        free(j);
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", "no aggregate of this type and id");
        return;
    }
    memcpy(j->id, id.ptr, id.len);
    job_submit(c, j, run_state);
}
