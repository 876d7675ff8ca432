/* Hapnd projections: uploads (uploads.h), status, state by key, notifications (polled here,
 * pushed by webhooks through the format's hook style in format.c, streamed in stream.c) and
 * webhook secret rotation. A projection is a projection component of the logic layer named
 * HD_PROJ_PREFIX and its class, over every event, seeing events in the Hapnd format; its
 * projectionId is "proj_" and the class. */
#include "dialect/hapnd/hd_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/hapnd/format.h"
#include "dialect/hapnd/uploads.h"
#include "json/jsonx.h"
#include "logic/component.h"
#include "logic/proj_hooks.h"
#include "logic/projection.h"
#include "ops/out.h"
#include "util/errors.h"

#define HD_PROJ_PREFIX "hapnd.p."
#define HD_PROJ_ID_PREFIX "proj_"

enum {
    HD_NOTIFY_DEFAULT = 100, /* notifications per poll by default */
    HD_NOTIFY_MAX = 1000,    /* ... at most */
    HD_WEBHOOK_ATTEMPTS = 5, /* Hapnd's X-Hapnd-Attempt goes up to 5 */
};

bool hd_projection_name(struct slice pid, char *name)
{
    size_t pre = sizeof HD_PROJ_ID_PREFIX - 1;
    if (pid.len <= pre || pid.len - pre > HD_CLASS_BYTES ||
        memcmp(pid.ptr, HD_PROJ_ID_PREFIX, pre) != 0) {
        return false;
    }
    snprintf(name, COMP_NAME_BYTES + 1, HD_PROJ_PREFIX "%.*s", (int)(pid.len - pre),
             pid.ptr + pre);
    return comp_name_ok(name, strlen(name));
}

void hd_projection_id(const char *name, char *out, size_t cap)
{
    size_t pre = sizeof HD_PROJ_PREFIX - 1;
    bool ours = strncmp(name, HD_PROJ_PREFIX, pre) == 0;
    snprintf(out, cap, HD_PROJ_ID_PREFIX "%s", ours ? name + pre : name);
}

/* ---- changes as Hapnd shows them ---- */

struct change_render {
    struct buf *out;
    const char *type;
    struct slice pid, key, state;
    uint64_t sequence;
    bool done;
};

static int on_change_event(void *arg, const struct event_rec *ev)
{
    struct change_render *r = arg;
    hapnd_change_json(r->out, r->type, r->pid, r->sequence, r->key, r->state, ev);
    r->done = true;
    return 1;
}

void hd_render_change(struct db *db, const char *type, struct slice pid, uint64_t sequence,
                      struct slice key, struct slice state, uint64_t position, struct buf *out)
{
    struct change_render r = {out, type, pid, key, state, sequence, false};
    engine_read_event(db, position, on_change_event, &r);
    if (!r.done) { /* the event is gone (deleted or aged out): the change without it */
        hapnd_change_json(out, type, pid, sequence, key, state, NULL);
    }
}

int hd_render_change_item(struct db *db, const char *type, struct slice pid, struct slice item,
                          struct buf *out)
{
    struct slice seq, key, state, pos;
    uint64_t s, p;
    struct buf k;
    buf_init(&k);
    bool ok = jsonx_member(item, "sequence", &seq) && jsonx_u64(seq, &s) &&
              jsonx_member(item, "key", &key) && jsonx_kind(key) == '"' &&
              jsonx_string(key, &k) == 0 && jsonx_member(item, "state", &state) &&
              jsonx_member(item, "position", &pos) && jsonx_u64(pos, &p);
    if (ok) {
        hd_render_change(db, type, pid, s, (struct slice){k.ptr, k.len}, state, p, out);
    }
    buf_fini(&k);
    return ok ? 0 : ERR_CORRUPT;
}

/* ---- uploads ---- */

/* The native webhook member of a projection from the upload's notifications config, or NULL
 * when it configures none. */
static json_t *webhook_of(json_t *config)
{
    json_t *w = json_object_get(config, "webhook");
    const char *url = json_string_value(json_object_get(w, "url"));
    if (!url) {
        return NULL;
    }
    json_t *iso = json_object_get(w, "isolateSecret");
    iso = iso ? iso : json_object_get(config, "isolateSecret");
    json_t *out = json_pack("{s:s, s:i, s:b}", "url", url, "maxAttempts", HD_WEBHOOK_ATTEMPTS,
                            "isolateSecret", json_is_true(iso));
    json_t *h = json_object_get(w, "headers");
    if (json_is_object(h)) {
        json_object_set(out, "headers", h);
    }
    return out;
}

/* The upload's notifications config, checked before anything is compiled: a webhook whose
 * URL, headers or options the server would refuse at deploy is refused now (400
 * INVALID_UPLOAD) rather than after the 202. Worker (the URL's name is resolved). */
static int check_config(struct hd_upload *u, char *why, size_t cap)
{
    json_t *w = json_object_get(u->config, "webhook");
    if (!w) {
        return 0;
    }
    json_t *url = json_object_get(w, "url");
    if (!json_is_object(w) || !json_is_string(url)) {
        snprintf(why, cap, "notifications.webhook is an object with a url string");
        return ERR_INVALID;
    }
    json_t *hook = webhook_of(u->config);
    char *text = json_dumps(hook, JSON_COMPACT);
    json_decref(hook);
    struct comp_webhook cw;
    struct comp_error ce;
    int rc = comp_webhook_parse((struct slice){text, strlen(text)}, &cw, &ce);
    free(text);
    if (rc) {
        snprintf(why, cap, "notifications.webhook: %s", ce.message);
        return rc;
    }
    char reason[160] = "";
    rc = delivery_check_url(logic_webhook_allow(u->lg), cw.url, reason, sizeof reason);
    if (rc) {
        snprintf(why, cap, "notifications.webhook.url: %s", reason[0] ? reason : "not allowed");
    }
    return rc;
}

static bool isolated(json_t *config)
{
    json_t *w = webhook_of(config);
    bool iso = json_is_true(json_object_get(w, "isolateSecret"));
    json_decref(w);
    return iso;
}

static int deploy_one(struct hd_upload *u, json_t *e, char *why, size_t cap)
{
    const char *cls = json_string_value(json_object_get(e, "className"));
    char name[COMP_NAME_BYTES + 1], pid[COMP_NAME_BYTES + 8];
    snprintf(name, sizeof name, HD_PROJ_PREFIX "%s", cls);
    hd_projection_id(name, pid, sizeof pid);
    json_t *body = json_pack("{s:s, s:O, s:O, s:s, s:{s:{s:s, s:s, s:O, s:s}}}", "kind",
                             "projection", "language", json_object_get(e, "language"),
                             "source", json_object_get(e, "source"), "eventFormat",
                             HAPND_FORMAT_NAME, "meta", "hapnd", "uploadId", u->id,
                             "className", cls, "stateTypeName",
                             json_object_get(e, "stateTypeName"), "projectionId", pid);
    json_t *hook = webhook_of(u->config);
    if (hook) {
        json_object_set_new(body, "webhook", hook);
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct comp_def def;
    memset(&def, 0, sizeof def);
    struct comp_error ce;
    int rc = comp_parse(name, (struct slice){text, strlen(text)}, &def, &ce);
    free(text);
    if (rc) {
        snprintf(why, cap, "%s%s%s", ce.field, ce.field[0] ? ": " : "", ce.message);
        return rc;
    }
    struct logic_guard guard = {COMP_PROJECTION, HAPND_FORMAT_NAME};
    struct logic_error le = {0};
    rc = logic_deploy_as(u->lg, u->db, &def, &guard, &le);
    if (rc == ERR_EXISTS) {
        snprintf(why, cap, "a component of another API is named %s", name);
    } else if (rc) {
        snprintf(why, cap, "%s", le.message[0] ? le.message : err_name(rc));
    }
    if (!rc && !json_is_string(json_object_get(u->record, "projectionId"))) {
        json_object_set_new(u->record, "projectionId", json_string(pid));
        json_object_set_new(u->record, "type", json_string("runtime"));
    }
    comp_def_fini(&def);
    return rc;
}

/* A projection of upload u whose name a component deployed through another API has (nothing
 * of the upload is deployed then): 0, or ERR_EXISTS with the record's compilationError. */
static int check_names(struct hd_upload *u)
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
        const char *kind = json_string_value(json_object_get(e, "kind"));
        char name[COMP_NAME_BYTES + 1];
        snprintf(name, sizeof name, HD_PROJ_PREFIX "%s",
                 json_string_value(json_object_get(e, "className")));
        const struct comp_def *def = kind && !strcmp(kind, "projection")
                                         ? comp_set_find(set, name) : NULL;
        if (def && (def->kind != COMP_PROJECTION || !def->event_format ||
                    strcmp(def->event_format, HAPND_FORMAT_NAME))) {
            char why[160];
            snprintf(why, sizeof why, "a component of another API is named %s", name);
            json_object_set_new(u->record, "compilationError", json_string(why));
            rc = ERR_EXISTS;
            break;
        }
    }
    comp_set_unref(set);
    return rc;
}

static int deploy_projections(struct hd_upload *u)
{
    int rc = check_names(u);
    if (rc) {
        return rc;
    }
    json_t *d = json_object_get(u->record, "discovered");
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        char why[512];
        if (kind && !strcmp(kind, "projection") && deploy_one(u, e, why, sizeof why) != 0) {
            json_object_set_new(u->record, "compilationError", json_string(why));
            return ERR_INVALID;
        }
    }
    return 0;
}

/* The component name of the first projection u discovered into name ("" when none). */
static void first_projection(struct hd_upload *u, char *name)
{
    json_t *d = json_object_get(u->record, "discovered");
    size_t i;
    json_t *e;
    name[0] = '\0';
    json_array_foreach(d, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        if (kind && !strcmp(kind, "projection") && !name[0]) {
            snprintf(name, COMP_NAME_BYTES + 1, HD_PROJ_PREFIX "%s",
                     json_string_value(json_object_get(e, "className")));
        }
    }
}

static void answer_projection(struct hd_upload *u, struct buf *out)
{
    buf_adds(out, "{\"success\":true,\"uploadId\":");
    buf_add_json_str(out, u->id, strlen(u->id));
    buf_adds(out, ",\"projectionId\":null,\"status\":\"compiling\",\"message\":\"Projection "
                  "uploaded successfully and queued for compilation\"");
    if (u->config) {
        json_t *hook = webhook_of(u->config);
        bool iso = isolated(u->config);
        char name[COMP_NAME_BYTES + 1], secret[DELIVERY_SECRET_TEXT];
        first_projection(u, name);
        bool has = hook && (name[0] || !iso) &&
                   phook_secret(u->db, name[0] ? name : "-", iso, secret) == 0;
        buf_printf(out, ",\"notifications\":{\"webhook\":{\"enabled\":%s",
                   hook ? "true" : "false");
        if (has) {
            buf_adds(out, ",\"secret\":");
            buf_add_json_str(out, secret, strlen(secret));
        }
        buf_printf(out, ",\"isolated\":%s},\"sse\":false}", iso ? "true" : "false");
        json_decref(hook);
    }
    buf_addc(out, '}');
}

void hd_projection_upload(struct gate_call *c)
{
    struct hd_upload *u = hd_upload_read(c, true);
    if (u) {
        u->check = check_config;
        u->deploy = deploy_projections;
        u->answer = answer_projection;
        hd_upload_submit(c, u);
    }
}

/* ---- reading ---- */

/* The Hapnd projection the path's {id} names (a reference on *set: comp_set_unref), or NULL
 * after answering 404 {"error":"NOT_FOUND"}. */
static const struct comp_def *find(struct gate_call *c, struct comp_set **set)
{
    char name[COMP_NAME_BYTES + 1];
    const struct comp_def *def = NULL;
    if (hd_projection_name(gate_param(c, "id"), name) &&
        logic_set(hd_ctx_of(c)->logic, c->db, set) == 0) {
        def = comp_set_find(*set, name);
        if (!def || def->kind != COMP_PROJECTION) {
            comp_set_unref(*set);
            def = NULL;
        }
    }
    if (!def) {
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", "NOT_FOUND");
    }
    return def;
}

/* Adds "runtimeError" to record r when its projection runs and failed (it stopped at an
 * event its code failed on: its state is not served until a fixed upload). */
static void note_failure(struct gate_call *c, json_t *r)
{
    const char *pid = json_string_value(json_object_get(r, "projectionId"));
    char name[COMP_NAME_BYTES + 1];
    struct proj_info info;
    if (pid && hd_projection_name((struct slice){pid, strlen(pid)}, name) &&
        proj_info(logic_projections(hd_ctx_of(c)->logic), c->db, name, &info) == 0 &&
        info.status == PROJ_FAILED) {
        json_t *e = json_pack("{s:s, s:I}", "error", info.error, "position",
                              (json_int_t)info.failed_position);
        if (e) {
            json_object_set_new(r, "runtimeError", e);
        }
    }
}

void hd_projection_status(struct gate_call *c)
{
    const char *id = gate_param_str(c, "id");
    struct buf b;
    buf_init(&b);
    int rc = strlen(id) <= HD_ID_BYTES ? hd_record_get(c->db, id, &b) : ERR_NOTFOUND;
    json_t *r = rc ? NULL : json_loadb(b.ptr, b.len, 0, NULL);
    const char *kind = json_string_value(json_object_get(r, "kind"));
    buf_reset(&b);
    if (rc && rc != ERR_NOTFOUND) {
        gate_fail_engine(c, rc);
    } else if (!kind || strcmp(kind, "projection")) {
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", "no projection upload with this id");
    } else {
        note_failure(c, r);
        hd_record_status(r, hd_ctx_of(c)->run, &b);
        out_json(c->req, 200, &b);
        buf_init(&b);
    }
    json_decref(r);
    buf_fini(&b);
}

struct updated {
    int64_t us;
};

static int on_updated(void *arg, const struct event_rec *ev)
{
    ((struct updated *)arg)->us = ev->recorded_us;
    return 1;
}

void hd_projection_state(struct gate_call *c)
{
    struct comp_set *set;
    const struct comp_def *def = find(c, &set);
    if (!def) {
        return;
    }
    struct slice pid = gate_param(c, "id"), key = gate_param(c, "key");
    struct projections *p = logic_projections(hd_ctx_of(c)->logic);
    struct proj_info info;
    struct buf b, st;
    buf_init(&b);
    buf_init(&st);
    uint64_t pos = 0;
    int rc = proj_info(p, c->db, def->name, &info);
    bool catching_up = rc == ERR_NOTFOUND || (!rc && (info.version != def->version ||
                                                      info.status == PROJ_CATCHING_UP));
    bool failed = !catching_up && !rc && info.status == PROJ_FAILED;
    if (!catching_up && !failed && !rc) {
        rc = key.len <= PROJ_KEY_BYTES ? proj_state(p, c->db, def->name, key, &st, &pos, &info)
                                       : ERR_NOTFOUND;
    }
    if (failed) { /* its state would be of part of the history: not served */
        hd_fail(c, GK_INTERNAL, "PROJECTION_FAILED", info.error);
    } else if (catching_up) {
        buf_adds(&b, "{\"projectionId\":");
        buf_add_json_str(&b, pid.ptr, pid.len);
        buf_adds(&b, ",\"status\":\"catching_up\"}");
        out_json(c->req, 202, &b);
    } else if (rc == ERR_NOTFOUND) {
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", "NOT_FOUND");
    } else if (rc) {
        gate_fail_engine(c, rc);
    } else {
        struct updated u = {0};
        engine_read_event(c->db, pos, on_updated, &u);
        char when[HAPND_TIME_BYTES];
        hapnd_time(u.us, when);
        buf_adds(&b, "{\"projectionId\":");
        buf_add_json_str(&b, pid.ptr, pid.len);
        buf_adds(&b, ",\"stateKey\":");
        buf_add_json_str(&b, key.ptr, key.len);
        buf_adds(&b, ",\"state\":");
        buf_add(&b, st.ptr, st.len);
        buf_printf(&b, ",\"updatedAt\":\"%s\"}", when);
        out_json(c->req, 200, &b);
    }
    buf_fini(&b); /* empty when answered: http_respond took it */
    buf_fini(&st);
    comp_set_unref(set);
}

/* The optional query parameter name as a number up to max into *out. False after 400. */
static bool query_num(struct gate_call *c, const char *name, uint64_t max, uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    uint64_t v;
    if (s && (parse_u64(s, &v) != 0 || v > max)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "afterSequence is a sequence number (0 "
                   "reads from the start) and limit a number from 1 to 1000", name);
        return false;
    }
    *out = s ? v : *out;
    return true;
}

void hd_projection_notifications(struct gate_call *c)
{
    uint64_t after = 0, limit = HD_NOTIFY_DEFAULT;
    if (!query_num(c, "afterSequence", UINT64_MAX, &after) ||
        !query_num(c, "limit", HD_NOTIFY_MAX, &limit)) {
        return;
    }
    if (limit == 0) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "limit is a number from 1 to 1000",
                   "limit");
        return;
    }
    struct comp_set *set;
    const struct comp_def *def = find(c, &set);
    if (!def) {
        return;
    }
    struct slice pid = gate_param(c, "id");
    struct buf page, b;
    buf_init(&page);
    buf_init(&b);
    int rc = proj_changes(logic_projections(hd_ctx_of(c)->logic), c->db, def->name, after,
                          (size_t)limit, &page);
    struct slice list, item;
    size_t pos = 0, n = 0;
    buf_adds(&b, "{\"notifications\":[");
    if (rc == 0 && jsonx_member((struct slice){page.ptr, page.len}, "changes", &list)) {
        while (jsonx_next_item(list, &pos, &item)) {
            size_t mark = b.len;
            buf_adds(&b, n ? "," : "");
            if (hd_render_change_item(c->db, NULL, pid, item, &b) == 0) {
                n++;
            } else {
                b.len = mark; /* not a change record: left out */
            }
        }
    }
    buf_adds(&b, "]}");
    if (rc && rc != ERR_NOTFOUND) {
        buf_fini(&b);
        gate_fail_engine(c, rc);
    } else {
        out_json(c->req, 200, &b); /* not started yet: nothing to tell */
    }
    buf_fini(&page);
    comp_set_unref(set);
}

/* ---- secrets ---- */

struct rotate_job {
    struct http_req *req;
    struct db *db;
    char name[COMP_NAME_BYTES + 1]; /* "" : the tenant's shared secret */
    char pid[COMP_NAME_BYTES + 8];
};

static void run_rotate(void *arg, bool cancelled)
{
    struct rotate_job *j = arg;
    char secret[DELIVERY_SECRET_TEXT];
    bool iso = j->name[0] != '\0';
    /* no grace: Hapnd's receivers compare one signature, so only the new secret signs */
    int rc = cancelled ? ERR_SHUTDOWN : phook_rotate(j->db, iso ? j->name : "-", iso, 0, secret);
    if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(&hapnd_mount, j->req, &e);
    } else {
        struct buf b;
        buf_init(&b);
        if (iso) {
            buf_adds(&b, "{\"projectionId\":");
            buf_add_json_str(&b, j->pid, strlen(j->pid));
            buf_adds(&b, ",\"webhook\":{\"secret\":");
            buf_add_json_str(&b, secret, strlen(secret));
            buf_adds(&b, ",\"isolated\":true}}");
        } else {
            buf_adds(&b, "{\"webhook\":{\"secret\":");
            buf_add_json_str(&b, secret, strlen(secret));
            buf_adds(&b, "}}");
        }
        out_json(j->req, 200, &b);
    }
    engine_db_release(j->db);
    free(j);
}

static void rotate(struct gate_call *c, struct rotate_job *j)
{
    j->req = c->req;
    j->db = c->db;
    c->db = NULL;
    http_defer(c->req);
    if (engine_submit(c->gate->engine, run_rotate, j) != 0) {
        hd_fail_req(j->req, GK_UNAVAILABLE, "SERVICE_UNAVAILABLE", "try again shortly");
        engine_db_release(j->db);
        free(j);
    }
}

void hd_projection_rotate(struct gate_call *c)
{
    struct comp_set *set;
    const struct comp_def *def = find(c, &set);
    if (!def) {
        return;
    }
    struct comp_webhook w;
    struct comp_error ce;
    bool iso = def->webhook &&
               comp_webhook_parse((struct slice){def->webhook, strlen(def->webhook)}, &w,
                                  &ce) == 0 &&
               w.isolate;
    if (!iso) {
        hd_fail(c, GK_INVALID, "VALIDATION_ERROR", "this projection uses the tenant's shared "
                "webhook secret: rotate it with POST /webhooks/rotate");
    } else {
        struct rotate_job *j = xcalloc(1, sizeof(*j));
        snprintf(j->name, sizeof j->name, "%s", def->name);
        hd_projection_id(def->name, j->pid, sizeof j->pid);
        rotate(c, j);
    }
    comp_set_unref(set);
}

void hd_webhooks_rotate(struct gate_call *c)
{
    rotate(c, xcalloc(1, sizeof(struct rotate_job)));
}
