/* j17 writes: POST /{type}/{id}/{event_type} and the batch POST /{type}/{id}. A write is
 * checked against the spec (aggregate and event types, the aggregate id, metadata.actor and
 * .target, the data's JSON Schema), its implications are run, and the events, the
 * aggregate's first and then each implied aggregate's (and the start record of each saga they
 * trigger), go to the shared multi-stream append: one commit, all or nothing. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jpath.h"
#include "json/jsonx.h"
#include "ops/append.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* The answer's tag (append_style.tag): 'b' for a batch or 's', then "<events>:<implied>". */
enum { TAG_BYTES = 48 };

static void answer_written(struct http_req *req, unsigned status, struct buf *native,
                           bool replayed, const char *tag, void *arg)
{
    (void)status;
    (void)replayed; /* the append layer adds X-Idempotency-Replayed */
    const struct gate_mount *m = arg;
    size_t count = 0, implied = 0;
    struct buf b;
    buf_init(&b);
    if (!tag || sscanf(tag + 1, "%zu:%zu", &count, &implied) != 2 ||
        j17_write_answer((struct slice){native->ptr, native->len}, count, implied,
                         tag[0] == 'b', &b) != 0) {
        buf_fini(&b);
        j_fail_req(m, req, GK_INTERNAL, "the answer could not be made", NULL);
        return;
    }
    out_json(req, 201, &b);
}

/* ---- checks ---- */

/* One write: the call and its spec, and the events it appends. */
struct write {
    const struct gate_call *c;
    struct j17_spec *spec;
    struct j_batch b;
};

static void write_fini(struct write *w)
{
    j_batch_fini(&w->b);
    j17_spec_unref(w->spec);
}

/* Checks a party (actor or target) of the metadata against the spec and makes its id
 * canonical. False when it answered 400. */
static bool check_party(const struct write *w, json_t *stored, const char *who, bool agent)
{
    json_t *p = json_object_get(stored, who);
    if (!p) {
        return true;
    }
    const char *type = json_string_value(json_object_get(p, "type"));
    json_t *idv = json_object_get(p, "id");
    struct slice t = {type, strlen(type)};
    char path[48], canon[J17_ID_BYTES + 1];
    snprintf(path, sizeof path, "metadata.%s.type", who);
    if (agent ? !j17_spec_agent_type(w->spec, t) : !j17_spec_target_type(w->spec, t)) {
        j_fail(w->c, GK_INVALID, agent ? "actor type is not in the spec's agent_types"
                                       : "target type is not in the spec's target_types",
               path);
        return false;
    }
    snprintf(path, sizeof path, "metadata.%s.id", who);
    struct slice id = {json_string_value(idv), json_string_length(idv)};
    if (j17_id_check(w->spec, id, canon) != 0) {
        j_fail(w->c, GK_INVALID, "not a valid id (a UUID v4 or v5, a 9-character humane "
               "code, global or a declared singleton)", path);
        return false;
    }
    json_object_set_new(p, "id", json_string(canon));
    return true;
}

/* Checks data against the event type's schema; at names the data in the request ("data",
 * "events[2].data"). False when it answered 400. */
static bool check_data(const struct write *w, const struct j17_evt *e, const json_t *data,
                       const char *at)
{
    char path[J17_PROBLEM_PATH_BYTES], msg[J17_PROBLEM_MSG_BYTES];
    if (j17_evt_validate(e, data, path, sizeof path, msg, sizeof msg) == 0) {
        return true;
    }
    char full[J17_PROBLEM_PATH_BYTES + 32];
    snprintf(full, sizeof full, "%s%s", at, path + 4); /* path starts with "data" */
    struct gate_error ge = {.kind = GK_INVALID, .code = "j17",
                            .message = "Event data failed schema validation", .field = full};
    struct buf d;
    buf_init(&d);
    buf_adds(&d, "\"detail\":");
    buf_add_json_str(&d, msg, strlen(msg));
    ge.details = d.ptr;
    gate_fail(w->c, &ge);
    buf_fini(&d);
    return false;
}

/* Runs the implications of one event of the aggregate and keeps what they imply. False when
 * it answered 400. */
static bool imply(struct write *w, const struct j17_agg *a, const struct j17_evt *e,
                  const char *key, json_t *data, json_t *metadata)
{
    char why[512];
    if (j_batch_imply(&w->b, a, e, key, data, metadata, why, sizeof why) == 0) {
        return true;
    }
    char msg[600];
    snprintf(msg, sizeof msg, "Implication failed: %s", why);
    j_fail(w->c, GK_INVALID, msg, NULL);
    return false;
}

/* Adds the implied events and the saga start records after the aggregate's own. False when
 * it answered (too many sagas started). */
static bool push_implied(struct write *w)
{
    char why[160];
    if (j_batch_push_implied(&w->b, why, sizeof why) == 0) {
        return true;
    }
    j_fail(w->c, GK_TOO_LARGE, why, NULL);
    return false;
}

/* ---- the request ---- */

struct request {
    json_t *root;
    json_t *events;      /* batch: the events array */
    struct j17_meta meta;
    char key[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
    char id[J17_ID_BYTES + 1];
    struct buf raw;      /* the own events' data as sent, minified */
    size_t *raw_at;      /* per own event: offset and length in raw */
};

/* Reads the body and the metadata, and checks the aggregate id. False when it answered. */
static bool read_request(struct write *w, const struct j17_agg *a, bool batch,
                         struct request *rq)
{
    const struct gate_call *c = w->c;
    struct slice id = gate_param(c, "id");
    if (j17_id_check(w->spec, id, rq->id) != 0) {
        j_fail(c, GK_INVALID, "Invalid aggregate id (a UUID v4 or v5, a 9-character humane "
               "code, global or a declared singleton)", "id");
        return false;
    }
    snprintf(rq->key, sizeof rq->key, "%s:%s", j17_agg_name(a), rq->id);
    struct slice body = http_req_body(c->req);
    json_error_t je;
    rq->root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(rq->root)) {
        j_fail(c, GK_INVALID, rq->root ? "the body must be a JSON object" : "the body is not "
               "valid JSON", NULL);
        return false;
    }
    struct j17_fault f;
    if (j17_meta_read(json_object_get(rq->root, "metadata"), &rq->meta, &f) != 0) {
        j_fail(c, f.kind, f.msg, f.path);
        return false;
    }
    if (!check_party(w, rq->meta.stored, "actor", true) ||
        !check_party(w, rq->meta.stored, "target", false)) {
        return false;
    }
    if (batch) {
        rq->events = json_object_get(rq->root, "events");
        size_t n = json_array_size(rq->events);
        if (!json_is_array(rq->events) || n == 0) {
            j_fail(c, GK_INVALID, "events must be a non-empty array", "events");
            return false;
        }
        if (n > j_ctx_of(c)->limits.batch_events) {
            j_fail(c, GK_TOO_LARGE, "too many events in one batch", "events");
            return false;
        }
    } else if (!json_object_get(rq->root, "data")) {
        j_fail(c, GK_INVALID, "data is required", "data");
        return false;
    }
    return true;
}

static void request_fini(struct request *rq)
{
    j17_meta_fini(&rq->meta);
    json_decref(rq->root);
    buf_fini(&rq->raw);
    free(rq->raw_at);
}

/* Keeps the text of each of the aggregate's own events' data as sent (minified: numbers are
 * stored exactly as the client wrote them, not as a double reads them), and points the
 * batch's first events at it. Absent data stays the tree's null. */
static void keep_raw_data(struct write *w, struct request *rq, bool batch)
{
    struct slice body = http_req_body(w->c->req), events, item, data;
    size_t n = w->b.own, pos = 0;
    rq->raw_at = xcalloc(n ? n : 1, 2 * sizeof(size_t));
    buf_init(&rq->raw);
    bool have = batch ? jsonx_member(body, "events", &events) : true;
    for (size_t i = 0; have && i < n; i++) {
        bool got = batch ? jsonx_next_item(events, &pos, &item) && jsonx_member(item, "data", &data)
                         : jsonx_member(body, "data", &data);
        rq->raw_at[2 * i] = rq->raw.len;
        if (got) {
            jsonx_minify(data, &rq->raw);
        }
        rq->raw_at[2 * i + 1] = rq->raw.len - rq->raw_at[2 * i];
    }
    for (size_t i = 0; have && i < n; i++) {
        if (rq->raw_at[2 * i + 1]) {
            w->b.evs[i].raw_data = (struct slice){rq->raw.ptr + rq->raw_at[2 * i],
                                                  rq->raw_at[2 * i + 1]};
        }
    }
}

/* Hands the write to the shared append. */
static void submit(struct gate_call *c, struct write *w, const struct j17_meta *m, bool batch)
{
    struct buf native;
    buf_init(&native);
    bool expect = m->has_previous && !m->skip_occ;
    j_batch_body(&w->b, expect ? &m->previous_length : NULL, (struct slice){NULL, 0},
                 (struct slice){NULL, 0}, &native);
    char tag[TAG_BYTES];
    snprintf(tag, sizeof tag, "%c%zu:%zu", batch ? 'b' : 's', w->b.own,
             w->b.count - w->b.own - w->b.scheduled - w->b.sagas);
    struct append_style style = {.mount = c->mount, .idem_ns = J17_IDEM_NS,
                                 .answer = answer_written, .tag = tag,
                                 .answer_arg = (void *)c->mount};
    struct db *db = c->db;
    c->db = NULL; /* the append's reference now */
    append_multi(c->req, db, (struct slice){native.ptr, native.len},
                 &j_ctx_of(c)->limits, &style);
    buf_fini(&native);
}

void j_write(struct gate_call *c)
{
    struct write w = {.c = c};
    const struct j17_agg *a;
    const struct j17_evt *e;
    struct request rq = {0};
    if (!j_env_ok(c) || !j_json_body(c) ||
        !j_spec_find(c, gate_param(c, "type"), gate_param(c, "event_type"), &w.spec, &a, &e)) {
        return;
    }
    j_batch_init(&w.b, w.spec, time_now_us() / 1000);
    if (read_request(&w, a, false, &rq)) {
        json_t *data = json_object_get(rq.root, "data");
        if (check_data(&w, e, data, "data") && imply(&w, a, e, rq.key, data, rq.meta.stored)) {
            j_batch_push(&w.b, j17_agg_name(a), rq.id, j17_evt_name(e), data, rq.meta.stored,
                         NULL);
            w.b.own = 1;
            keep_raw_data(&w, &rq, false);
            if (push_implied(&w)) {
                submit(c, &w, &rq.meta, false);
            }
        }
    }
    request_fini(&rq);
    write_fini(&w);
}

void j_write_batch(struct gate_call *c)
{
    struct write w = {.c = c};
    const struct j17_agg *a;
    const struct j17_evt *unused;
    struct request rq = {0};
    if (!j_env_ok(c) || !j_json_body(c) ||
        !j_spec_find(c, gate_param(c, "type"), (struct slice){NULL, 0}, &w.spec, &a, &unused)) {
        return;
    }
    j_batch_init(&w.b, w.spec, time_now_us() / 1000);
    bool ok = read_request(&w, a, true, &rq);
    size_t n = ok ? json_array_size(rq.events) : 0;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *ev = json_array_get(rq.events, i);
        const char *type = json_string_value(json_object_get(ev, "type"));
        char at[48];
        snprintf(at, sizeof at, "events[%zu].type", i);
        const struct j17_evt *e = type ? j17_agg_event(a, (struct slice){type, strlen(type)})
                                       : NULL;
        if (!json_is_object(ev) || !type) {
            j_fail(c, GK_INVALID, "each event is an object with a string type", at);
            ok = false;
        } else if (!e) {
            j_fail(c, GK_NOT_FOUND, "Event type not in spec", at);
            ok = false;
        } else {
            json_t *data = json_object_get(ev, "data");
            snprintf(at, sizeof at, "events[%zu].data", i);
            ok = check_data(&w, e, data, at) && imply(&w, a, e, rq.key, data, rq.meta.stored);
            if (ok) {
                j_batch_push(&w.b, j17_agg_name(a), rq.id, j17_evt_name(e), data,
                             rq.meta.stored, NULL);
            }
        }
    }
    if (ok) {
        w.b.own = n;
        keep_raw_data(&w, &rq, true);
        if (push_implied(&w)) {
            submit(c, &w, &rq.meta, true);
        }
    }
    request_fini(&rq);
    write_fini(&w);
}
