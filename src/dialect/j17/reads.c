/* j17 reads: GET /{type}/{id} (the state its handlers fold, on a worker: the logic layer's
 * reducer of the type, with its state cache and snapshots), GET /{type}/{id}/length and
 * GET /{type}/{id}/events. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/logic.h"
#include "ops/out.h"
#include "util/errors.h"
#include "ops/parse.h"

/* The aggregate a read names: its spec's type and the stream "<type>:<id>", the id checked
 * (422 when malformed, as j17 answers). False after answering. */
struct target {
    struct j17_spec *spec;
    const struct j17_agg *agg;
    bool singleton;
    char type[J17_NAME_BYTES + 1];
    char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
};

static bool read_target(struct gate_call *c, struct target *t)
{
    const struct j17_evt *unused;
    if (!j_env_ok(c) || !j_spec_find(c, gate_param(c, "type"), (struct slice){NULL, 0},
                                     &t->spec, &t->agg, &unused)) {
        return false;
    }
    char canon[J17_ID_BYTES + 1];
    struct slice id = gate_param(c, "id");
    if (j17_id_check(t->spec, id, canon) != 0) {
        j_fail(c, GK_UNPROCESSABLE, "Invalid aggregate id", "id");
        j17_spec_unref(t->spec);
        return false;
    }
    t->singleton = j17_spec_singleton(t->spec, (struct slice){canon, strlen(canon)});
    snprintf(t->type, sizeof t->type, "%s", j17_agg_name(t->agg));
    snprintf(t->stream, sizeof t->stream, "%s:%s", t->type, canon);
    return true;
}

/* ---- GET /{type}/{id} ---- */

struct state_job {
    struct http_req *req;
    const struct gate_mount *mount;
    struct logic *lg;
    struct db *db;
    bool singleton;
    char type[J17_NAME_BYTES + 1];
    char stream[2 * J17_NAME_BYTES + J17_ID_BYTES + 2];
};

static void job_free(struct state_job *j)
{
    engine_db_release(j->db);
    free(j);
}

static void answer_state(struct state_job *j, const struct logic_state *st,
                         const struct stream_rec *s)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"ok\":true,\"data\":");
    if (st && st->state.len && strcmp(st->state.ptr, "null") != 0) {
        buf_add(&b, st->state.ptr, st->state.len);
    } else {
        buf_adds(&b, "{}");
    }
    buf_printf(&b, ",\"metadata\":{\"length\":%llu", (unsigned long long)(st ? st->version : 0));
    if (st && st->version) {
        buf_printf(&b, ",\"created_at\":%lld,\"updated_at\":%lld",
                   (long long)(s->created_us / 1000000), (long long)(st->updated_us / 1000000));
    } else {
        buf_adds(&b, ",\"created_at\":null,\"updated_at\":null");
    }
    buf_adds(&b, "}}");
    out_json(j->req, 200, &b);
}

static void run_state(void *arg, bool cancelled)
{
    struct state_job *j = arg;
    struct slice stream = {j->stream, strlen(j->stream)};
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    bool no_reducer = false;
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_stream_state_as(j->lg, j->db, stream,
                                               (struct slice){j->type, strlen(j->type)}, NULL,
                                               &st, &no_reducer, &le);
    struct stream_rec s = {0};
    if (!rc && engine_stream_info(j->db, stream, NULL, &s) != 0) {
        s.created_us = st.updated_us;
    }
    if (rc == ERR_NOTFOUND && !no_reducer && j->singleton) {
        answer_state(j, NULL, &s);
    } else if (rc == ERR_NOTFOUND) {
        j_fail_req(j->mount, j->req, GK_NOT_FOUND, "Aggregate not found", NULL);
    } else if (rc == ERR_INVALID && le.kind) {
        char msg[600];
        snprintf(msg, sizeof msg, "the handler failed: %s", le.message);
        j_fail_req(j->mount, j->req, GK_INTERNAL, msg, NULL);
    } else if (rc) {
        struct gate_error ge;
        gate_engine_error(rc, &ge);
        gate_fail_req(j->mount, j->req, &ge);
    } else {
        answer_state(j, &st, &s);
    }
    logic_state_fini(&st);
    job_free(j);
}

void j_get(struct gate_call *c)
{
    const char *sync = http_req_query(c->req, "synchronous");
    if (sync && strcmp(sync, "true") != 0 && strcmp(sync, "false") != 0) {
        j_fail(c, GK_INVALID, "synchronous must be true or false", "synchronous");
        return;
    }
    struct target t;
    if (!read_target(c, &t)) {
        return;
    }
    struct state_job *j = xcalloc(1, sizeof(*j));
    j->req = c->req;
    j->mount = c->mount;
    j->lg = j_ctx_of(c)->logic;
    j->singleton = t.singleton;
    snprintf(j->type, sizeof j->type, "%s", t.type);
    snprintf(j->stream, sizeof j->stream, "%s", t.stream);
    j17_spec_unref(t.spec);
    j->db = c->db;
    c->db = NULL;
    http_defer(c->req);
    if (engine_submit(c->gate->engine, run_state, j) != 0) {
        j_fail_req(j->mount, j->req, GK_UNAVAILABLE, "too many requests wait for a worker; "
                   "try again shortly", NULL);
        job_free(j);
    }
}

/* ---- GET /{type}/{id}/length ---- */

void j_length(struct gate_call *c)
{
    struct target t;
    if (!read_target(c, &t)) {
        return;
    }
    j17_spec_unref(t.spec);
    struct stream_rec s = {0};
    int rc = engine_stream_info(c->db, (struct slice){t.stream, strlen(t.stream)}, NULL, &s);
    if (rc && rc != ERR_NOTFOUND && rc != ERR_DELETED) {
        gate_fail_engine(c, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"ok\":true,\"length\":%llu}", (unsigned long long)(rc ? 0 : s.version));
    out_json(c->req, 200, &b);
}

/* ---- GET /{type}/{id}/events ---- */

struct page {
    struct buf b;
    size_t count;
};

static int on_event(void *arg, const struct event_rec *ev)
{
    struct page *pg = arg;
    buf_adds(&pg->b, pg->count++ ? "," : "");
    j17_event_json(&pg->b, ev);
    return 0;
}

void j_events(struct gate_call *c)
{
    const char *start = http_req_query(c->req, "start");
    const char *count = http_req_query(c->req, "count");
    uint64_t from = 1, limit = J17_READ_DEFAULT;
    if (start && start[0] && strcmp(start, "0") != 0) {
        if (!j17_stream_id_version(start, &from)) {
            j_fail(c, GK_INVALID, "start must be a stream id (\"<ms>-<seq>\")", "start");
            return;
        }
        from = !strcmp(start, "0-0") ? 1 : from + 1; /* "0-0": from the first */
    }
    if (count && (parse_u64(count, &limit) != 0 || limit == 0 || limit > LIMIT_READ_MAX)) {
        j_fail(c, GK_INVALID, "count must be a whole number from 1 to 1000", "count");
        return;
    }
    struct target t;
    if (!read_target(c, &t)) {
        return;
    }
    j17_spec_unref(t.spec);
    struct page pg = {.count = 0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"ok\":true,\"events\":[");
    struct stream_rec s = {0};
    int rc = engine_read_stream(c->db, (struct slice){t.stream, strlen(t.stream)}, NULL, from,
                                false, (size_t)limit, on_event, &pg, &s, NULL);
    if (rc && rc != ERR_NOTFOUND && rc != ERR_DELETED) {
        buf_fini(&pg.b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_printf(&pg.b, "],\"count\":%zu}", pg.count);
    out_json(c->req, 200, &pg.b);
}
