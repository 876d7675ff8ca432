/* j17 writes: POST /{type}/{id}/{event_type} and the batch POST /{type}/{id}. A write is
 * checked against the spec (aggregate and event types, the aggregate id, metadata.actor and
 * .target, the data's JSON Schema), its implications are run, and the events, the
 * aggregate's first and then each implied aggregate's, go to the shared multi-stream append:
 * one commit, all or nothing. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jpath.h"
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

/* ---- the events of one write ---- */

/* One event to append: its stream ("<type>:<id>"), type, data and metadata. */
struct out_event {
    char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
    const char *type;            /* borrowed from the spec or the implied list */
    json_t *data;                /* borrowed */
    json_t *metadata;            /* borrowed */
};

struct write {
    const struct gate_call *c;
    struct j17_spec *spec;
    struct out_event *evs;
    size_t count, cap;
    size_t own;                  /* events of the aggregate written to (the first ones) */
    struct j17_implied_list implied;
    json_t *implied_meta;        /* owned: metadata of implied events */
};

static void write_fini(struct write *w)
{
    free(w->evs);
    j17_implied_list_fini(&w->implied);
    json_decref(w->implied_meta);
    j17_spec_unref(w->spec);
}

static void push(struct write *w, const char *type, const char *id, const char *event_type,
                 json_t *data, json_t *metadata)
{
    if (w->count == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 8;
        w->evs = xrealloc(w->evs, w->cap * sizeof(*w->evs));
    }
    struct out_event *e = &w->evs[w->count++];
    snprintf(e->stream, sizeof e->stream, "%s:%s", type, id);
    e->type = event_type;
    e->data = data;
    e->metadata = metadata;
}

/* Appends the JSON text of v. */
static int dump_cb(const char *p, size_t n, void *arg)
{
    buf_add(arg, p, n);
    return 0;
}

static void add_json(struct buf *b, const json_t *v)
{
    if (!v) {
        buf_adds(b, "null");
    } else {
        json_dump_callback(v, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
    }
}

/* The native body: one part per stream, the aggregate's own first (its own events, then
 * those implied for it), the others in the order they first appear. */
static void native_body(const struct write *w, const struct j17_meta *m, struct buf *out)
{
    bool *done = xcalloc(w->count ? w->count : 1, sizeof(bool));
    buf_adds(out, "{\"appends\":[");
    size_t parts = 0;
    for (size_t i = 0; i < w->count; i++) {
        if (done[i]) {
            continue;
        }
        buf_printf(out, "%s{\"stream\":", parts++ ? "," : "");
        buf_add_json_str(out, w->evs[i].stream, strlen(w->evs[i].stream));
        buf_adds(out, ",\"events\":[");
        size_t n = 0;
        for (size_t k = i; k < w->count; k++) {
            if (done[k] || strcmp(w->evs[k].stream, w->evs[i].stream) != 0) {
                continue;
            }
            done[k] = true;
            buf_adds(out, n++ ? ",{\"type\":" : "{\"type\":");
            buf_add_json_str(out, w->evs[k].type, strlen(w->evs[k].type));
            buf_adds(out, ",\"data\":");
            add_json(out, w->evs[k].data);
            buf_adds(out, ",\"metadata\":");
            add_json(out, w->evs[k].metadata);
            buf_addc(out, '}');
        }
        buf_addc(out, ']');
        if (i == 0 && m->has_previous && !m->skip_occ) {
            buf_printf(out, ",\"expectedVersion\":%llu", (unsigned long long)m->previous_length);
        }
        buf_addc(out, '}');
    }
    buf_adds(out, "]}");
    free(done);
}

/* ---- checks ---- */

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
    char details[J17_PROBLEM_MSG_BYTES + 32];
    struct buf d;
    buf_init(&d);
    buf_adds(&d, "\"detail\":");
    buf_add_json_str(&d, msg, strlen(msg));
    snprintf(details, sizeof details, "%s", d.ptr);
    buf_fini(&d);
    ge.details = details;
    gate_fail(w->c, &ge);
    return false;
}

/* Runs the implications of one event of the aggregate (type/id) and queues what they imply.
 * False when it answered. */
static bool imply(struct write *w, const struct j17_agg *a, const struct j17_evt *e,
                  const char *key, json_t *data, const struct j17_meta *m)
{
    json_t *ctx = jpath_event_new(j17_evt_name(e), key, data, m->stored);
    char why[512];
    size_t before = w->implied.count;
    int rc = j17_imply(w->spec, a, e, ctx, &w->implied, why, sizeof why);
    json_decref(ctx);
    if (!rc && w->implied.count > J17_IMPLIED_MAX) {
        snprintf(why, sizeof why, "more than %d implied events", J17_IMPLIED_MAX);
        rc = ERR_TOOBIG;
    }
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "Implication failed: %s", why);
        j_fail(w->c, GK_INVALID, msg, NULL);
        return false;
    }
    (void)before;
    return true;
}

/* Queues the implied events (those written now; scheduled ones are kept elsewhere). */
static void push_implied(struct write *w, const struct j17_meta *m, const char *key,
                         const char *event_type)
{
    if (!w->implied.count) {
        return;
    }
    w->implied_meta = json_deep_copy(m->stored);
    json_object_set_new(w->implied_meta, "implied_by",
                        json_pack("{s:s,s:s}", "key", key, "event_type", event_type));
    for (size_t i = 0; i < w->implied.count; i++) {
        const struct j17_implied *im = &w->implied.items[i];
        if (!im->delay_ms) {
            push(w, im->agg_type, im->id, im->event_type, im->data, w->implied_meta);
        }
    }
}

/* ---- the request ---- */

struct request {
    json_t *root;
    json_t *events;      /* batch: the events array */
    struct j17_meta meta;
    char key[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
    char id[J17_ID_BYTES + 1];
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
}

/* Hands the write to the shared append. */
static void submit(struct gate_call *c, struct write *w, const struct j17_meta *m, bool batch)
{
    struct buf native;
    buf_init(&native);
    native_body(w, m, &native);
    char tag[TAG_BYTES];
    snprintf(tag, sizeof tag, "%c%zu:%zu", batch ? 'b' : 's', w->own, w->count - w->own);
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
    if (read_request(&w, a, false, &rq)) {
        json_t *data = json_object_get(rq.root, "data");
        if (check_data(&w, e, data, "data") && imply(&w, a, e, rq.key, data, &rq.meta)) {
            push(&w, j17_agg_name(a), rq.id, j17_evt_name(e), data, rq.meta.stored);
            w.own = 1;
            push_implied(&w, &rq.meta, rq.key, j17_evt_name(e));
            submit(c, &w, &rq.meta, false);
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
            ok = check_data(&w, e, data, at) && imply(&w, a, e, rq.key, data, &rq.meta);
            if (ok) {
                push(&w, j17_agg_name(a), rq.id, j17_evt_name(e), data, rq.meta.stored);
            }
        }
    }
    if (ok) {
        w.own = n;
        push_implied(&w, &rq.meta, rq.key, "batch");
        submit(c, &w, &rq.meta, true);
    }
    request_fini(&rq);
    write_fini(&w);
}
