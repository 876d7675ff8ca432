/* EvidentSource events: appends with constraints, selector queries, reads by revision, pages
 * and the newer generation's /v1/events (JSON or Server-Sent Events). translate.c makes the
 * native requests; this file hands them to the shared operations (ops/append.h, the engine's
 * queries, ops/live.h) and answers in EvidentSource's shapes.
 *
 * Invariants: only events of user streams are shown (the server's own streams, whose names
 * start with '$', such as the deployed code in $logic, never are); a page's has_more is true
 * exactly when another matching event exists after its last one (or, past ES_QUERY_PAGES
 * engine pages or ES_ANSWER_BYTES of answer, when the search stopped before knowing). */
#include "dialect/evidentsource/es_int.h"

#include <stdio.h>
#include <string.h>

#include "ops/append.h"
#include "ops/live.h"
#include "ops/out.h"
#include "ops/qparse.h"
#include "query/filter.h"
#include "util/errors.h"

enum {
    ES_QUERY_PAGES = 2,             /* engine pages (each up to QUERY_BUDGET candidates) one
                                       request examines at most: it runs on an I/O thread */
    ES_ANSWER_BYTES = 8 << 20,      /* an answer takes no more events once this large */
    ES_LABEL_BYTES = 256,           /* a subscription's label in listings (its path) */
};

static struct slice buf_slice(const struct buf *b)
{
    return (struct slice){b->ptr, b->len};
}

/* True for the events of the server's own streams. */
static bool is_server_event(const struct event_rec *ev)
{
    return ev->stream.len && ev->stream.ptr[0] == '$';
}

/* ---- appends ---- */

/* Writer thread: the native answer of a committed (or re-sent) batch, in EvidentSource's
 * shape; 200 both times. */
static void answer_appended(struct http_req *req, unsigned status, struct buf *native,
                            bool replayed, const char *tag, void *arg)
{
    (void)tag;
    (void)arg;
    (void)status;
    (void)replayed;
    struct buf b;
    buf_init(&b);
    if (es_append_answer(buf_slice(native), &b) != 0) {
        buf_adds(&b, "{}");
    }
    out_json(req, 200, &b);
}

static const struct append_style APPEND_STYLE = {.mount = &evidentsource_mount,
                                                 .idem_ns = ES_IDEM_NS, .answer = answer_appended,
                                                 .flat_events = true};

void es_append(struct gate_call *c)
{
    if (!es_json_body(c)) {
        return;
    }
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    const struct es_ctx *x = es_ctx_of(c);
    if (es_append_request(http_req_body(c->req), x->limits.batch_events, &native, &pe) != 0) {
        es_fail_parse(c, &pe);
    } else {
        struct db *db = c->db;
        c->db = NULL; /* the append holds the reference now */
        append_multi(c->req, db, buf_slice(&native), &x->limits, &APPEND_STYLE);
    }
    buf_fini(&native);
}

/* ---- pages of events ---- */

/* The events of one answer. */
struct es_page {
    struct buf b;     /* the events' JSON, comma-separated */
    size_t count;     /* events in b */
    size_t want;      /* events the answer takes at most */
    uint64_t last;    /* the revision of the last one (0: none) */
    bool more;        /* another matching event follows the last one */
};

static int on_page_event(void *arg, const struct event_rec *ev)
{
    struct es_page *pg = arg;
    if (is_server_event(ev)) {
        return 0;
    }
    if (pg->count == pg->want) {
        pg->more = true;
        return 1;
    }
    buf_adds(&pg->b, pg->count++ ? "," : "");
    es_event(&pg->b, ev);
    pg->last = ev->position;
    if (pg->b.len >= ES_ANSWER_BYTES) {
        pg->want = pg->count; /* full: one more match only sets more */
    }
    return 0;
}

/* Runs q (its limit is set here) page after page, on the snapshot of the first page, until
 * pg holds want events and knows whether another matches, or no more match. */
static int run_pages(struct db *db, struct engine_query *q, struct es_page *pg)
{
    for (int i = 0; i < ES_QUERY_PAGES; i++) {
        struct engine_query_result res;
        /* the callback stops the page at want + 1 matches; events it hides (the server's own
           streams) must not end the page early, so only the budget bounds it */
        q->limit = QUERY_BUDGET;
        int rc = engine_query(db, q, on_page_event, pg, &res);
        if (rc || pg->more || !res.next) {
            return rc;
        }
        q->has_from = true;
        q->from = res.next;
        if (!q->at.has_pos || q->at.pos > res.head) {
            q->at.has_pos = true;
            q->at.pos = res.head;
        }
    }
    pg->more = true; /* not settled within the pages allowed: the client may read on */
    return 0;
}

/* The shapes of the answers holding pages. */
enum page_shape {
    SHAPE_QUERY,  /* {"events","has_more"} */
    SHAPE_SEED,   /* {"events","has_more","next_cursor"} */
    SHAPE_V1,     /* {"events","hasMore","nextCursor"} */
};

/* Answers the events of q (at most want) in shape. */
static void answer_page(struct gate_call *c, struct db *db, struct engine_query *q, size_t want,
                        enum page_shape shape)
{
    struct es_page pg = {.want = want};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    int rc = want ? run_pages(db, q, &pg) : 0;
    if (rc) {
        buf_fini(&pg.b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_printf(&pg.b, "],\"%s\":%s", shape == SHAPE_V1 ? "hasMore" : "has_more",
               pg.more ? "true" : "false");
    if (shape != SHAPE_QUERY) {
        buf_adds(&pg.b, shape == SHAPE_V1 ? ",\"nextCursor\":" : ",\"next_cursor\":");
        if (pg.count) {
            buf_printf(&pg.b, "\"%llu\"", (unsigned long long)pg.last);
        } else {
            buf_adds(&pg.b, "null");
        }
    }
    buf_addc(&pg.b, '}');
    out_json(c->req, 200, &pg.b);
}

void es_query(struct gate_call *c)
{
    if (!es_json_body(c)) {
        return;
    }
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    bool nothing = false;
    int rc = es_query_request(http_req_body(c->req), &native, &nothing, &pe);
    struct parsed_query pq;
    if (!rc) {
        rc = parse_query_body(buf_slice(&native), &pq, &pe);
        if (!rc) {
            answer_page(c, c->db, &pq.q, nothing ? 0 : pq.q.limit, SHAPE_QUERY);
        }
        parsed_query_fini(&pq);
    }
    if (rc) {
        es_fail_parse(c, &pe);
    }
    buf_fini(&native);
}

/* A revision-like query parameter (absent: dflt); answers 400 and returns false when bad. */
static bool num_param(struct gate_call *c, const char *name, bool positive, uint64_t max,
                      uint64_t dflt, uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    *out = dflt;
    if (s && (es_parse_revision(s, positive, out) != 0 || *out > max)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s is a whole number from %d to %llu", name, positive ? 1 : 0,
                 (unsigned long long)max);
        es_fail(c, GK_INVALID, "invalid_parameter", msg, name);
        return false;
    }
    return true;
}

/* The bi-temporal parameters every event read takes (asOfTransactionTime, asOfEffectiveTime,
 * asOfRevision) into p. */
static void as_of_params(struct http_req *r, struct es_v1_params *p)
{
    p->as_of_transaction_time = http_req_query(r, "asOfTransactionTime");
    p->as_of_effective_time = http_req_query(r, "asOfEffectiveTime");
    p->as_of_revision = http_req_query(r, "asOfRevision");
}

/* Parses p into pq (answering 400 when bad). False when it answered. */
static bool read_query(struct gate_call *c, const struct es_v1_params *p,
                       struct parsed_query *pq, bool *has_pq)
{
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    int rc = es_v1_query(p, &native, &pe);
    *has_pq = rc == 0; /* parse_query_body initialises pq, fails or not */
    if (!rc) rc = parse_query_body(buf_slice(&native), pq, &pe);
    buf_fini(&native);
    if (rc) {
        es_fail_parse(c, &pe);
    }
    return rc == 0;
}

void es_events_page(struct gate_call *c)
{
    struct es_v1_params p = {.after = http_req_query(c->req, "after"),
                             .limit = http_req_query(c->req, "limit")};
    as_of_params(c->req, &p);
    struct parsed_query pq;
    bool has_pq;
    if (read_query(c, &p, &pq, &has_pq)) {
        answer_page(c, c->db, &pq.q, pq.q.limit, SHAPE_SEED);
    }
    if (has_pq) {
        parsed_query_fini(&pq);
    }
}

/* ---- one event ---- */

struct one_event {
    struct buf b;
    bool found;
};

static int on_one_event(void *arg, const struct event_rec *ev)
{
    struct one_event *o = arg;
    if (!is_server_event(ev)) {
        es_event(&o->b, ev);
        o->found = true;
    }
    return 1;
}

void es_event_get(struct gate_call *c)
{
    uint64_t rev;
    const char *text = gate_param_str(c, "revision");
    if (es_parse_revision(text, true, &rev) != 0) {
        es_fail(c, GK_INVALID, "invalid_parameter", "a revision is a whole number from 1",
                "revision");
        return;
    }
    char after[24];
    snprintf(after, sizeof after, "%llu", (unsigned long long)(rev - 1));
    struct es_v1_params p = {.after = after, .limit = "1"};
    as_of_params(c->req, &p);
    struct parsed_query pq;
    bool has_pq;
    if (!read_query(c, &p, &pq, &has_pq)) {
        if (has_pq) {
            parsed_query_fini(&pq);
        }
        return;
    }
    pq.q.has_to = true; /* this revision only, as of what the parameters say */
    pq.q.to = rev;
    struct one_event o = {.found = false};
    buf_init(&o.b);
    struct engine_query_result res;
    int rc = engine_query(c->db, &pq.q, on_one_event, &o, &res);
    parsed_query_fini(&pq);
    if (!rc && !o.found) {
        es_fail(c, GK_NOT_FOUND, "event_not_found", "no event at this revision", "revision");
    } else if (rc) {
        gate_fail_engine(c, rc);
    } else {
        out_json(c->req, 200, &o.b);
        return;
    }
    buf_fini(&o.b);
}

/* ---- GET /v1/events ---- */

/* True when the client asked for Server-Sent Events. */
static bool wants_sse(struct http_req *req)
{
    const char *accept = http_req_header(req, "Accept");
    return accept && strstr(accept, "text/event-stream") != NULL;
}

/* ops/live.h: one event of a subscription, as a CloudEvent. */
static bool sse_event(struct buf *out, const struct event_rec *ev)
{
    if (is_server_event(ev)) {
        return false;
    }
    es_event(out, ev);
    return true;
}

/* The first revision a subscription delivers: after Last-Event-ID (a reconnect), else after
 * `after`, else 1. Answers 400 and returns false when bad. */
static bool live_first(struct gate_call *c, uint64_t *out)
{
    const char *last = http_req_header(c->req, "Last-Event-ID");
    uint64_t v = 0;
    if (last && (es_parse_revision(last, false, &v) != 0 || v == UINT64_MAX)) {
        es_fail(c, GK_INVALID, "invalid_parameter", "Last-Event-ID is a revision",
                "Last-Event-ID");
        return false;
    }
    if (!last && !num_param(c, "after", false, UINT64_MAX - 1, 0, &v)) {
        return false;
    }
    *out = v + 1;
    return true;
}

/* Subscribes to the events of db matching pq (both taken over). */
static void subscribe(struct gate_call *c, struct db *db, struct parsed_query *pq)
{
    uint64_t first;
    if (!live_first(c, &first)) {
        engine_db_release(db);
        return;
    }
    char label[ES_LABEL_BYTES];
    struct slice path = http_req_path(c->req);
    snprintf(label, sizeof label, "%.*s", (int)(path.len < 250 ? path.len : 250), path.ptr);
    live_sse_as(es_ctx_of(c)->live, c->req, db, pq, first, label, sse_event);
}

void es_v1_events(struct gate_call *c)
{
    struct http_req *r = c->req;
    struct es_v1_params p = {
        .stream = http_req_query(r, "stream"),
        .subject = http_req_query(r, "subject"),
        .type = http_req_query(r, "type"),
        .as_of_transaction_time = http_req_query(r, "asOfTransactionTime"),
        .as_of_effective_time = http_req_query(r, "asOfEffectiveTime"),
        .as_of_revision = http_req_query(r, "asOfRevision"),
        .after = http_req_query(r, "after"),
        .limit = http_req_query(r, "limit"),
        .live = wants_sse(r),
    };
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    struct parsed_query pq;
    int rc = es_v1_query(&p, &native, &pe);
    bool has_pq = rc == 0; /* parse_query_body initialises pq, fails or not */
    if (!rc) rc = parse_query_body(buf_slice(&native), &pq, &pe);
    buf_fini(&native);
    struct db *db;
    if (rc) {
        es_fail_parse(c, &pe);
    } else if (es_acquire_named_db(c, http_req_query(r, "database"), &db)) {
        if (p.live) {
            subscribe(c, db, &pq); /* takes db, and pq's filter */
        } else {
            answer_page(c, db, &pq.q, pq.q.limit, SHAPE_V1);
            engine_db_release(db);
        }
    }
    if (has_pq) {
        parsed_query_fini(&pq);
    }
}
