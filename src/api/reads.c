/* Reads: the log (GET .../events with query parameters, POST .../query with a JSON body), one
 * event by position, the stream list, a stream's info and a stream's events. Each answers one
 * page built while the engine reads (a read transaction on the I/O thread); point-in-time
 * reads take asOf or asOfTime. */
#include "api/native_int.h"

#include <stdint.h>
#include <string.h>

#include "engine/canon.h"
#include "http/server.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "query/filter.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/limits.h"

/* ---- query parameters ---- */

/* Reads an optional unsigned query parameter. Answers 400 and returns false when bad. */
static bool query_u64(struct gate_call *c, const char *name, uint64_t dflt, uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    *out = dflt;
    if (!s) {
        return true;
    }
    if (parse_u64(s, out) != 0) {
        out_error(c->req, 400, "invalid_parameter", "must be an unsigned decimal integer", name);
        return false;
    }
    return true;
}

static bool query_limit(struct gate_call *c, size_t *out)
{
    uint64_t v;
    if (!query_u64(c, "limit", LIMIT_READ_DEFAULT, &v)) {
        return false;
    }
    if (v < 1 || v > LIMIT_READ_MAX) {
        out_error(c->req, 400, "invalid_parameter", "limit must be between 1 and 1000",
                  "limit");
        return false;
    }
    *out = (size_t)v;
    return true;
}

static bool query_direction(struct gate_call *c, bool *backward)
{
    const char *s = http_req_query(c->req, "direction");
    *backward = false;
    if (!s || strcmp(s, "forward") == 0) {
        return true;
    }
    if (strcmp(s, "backward") == 0) {
        *backward = true;
        return true;
    }
    out_error(c->req, 400, "invalid_parameter", "direction is forward or backward",
              "direction");
    return false;
}

/* ---- the log ---- */

/* Collects events into a JSON array while reading. */
struct page {
    struct buf b;        /* response being built */
    size_t count;        /* events written */
    uint64_t last_pos;   /* position of the last event written */
    uint64_t last_ver;   /* version of the last event written */
};

static int on_page_event(void *arg, const struct event_rec *ev)
{
    struct page *pg = arg;
    if (pg->count++) {
        buf_addc(&pg->b, ',');
    }
    out_event(&pg->b, ev);
    pg->last_pos = ev->position;
    pg->last_ver = ev->version;
    return 0;
}

/* Closes a stream page: `"],"version":<end>,"hasMore":..,"next":<from of the next page or
 * null>}`. A full page (full) whose last item (last) is not at the end of the range (first
 * backward, end forward) has a next page. */
static void page_end(struct buf *b, uint64_t end, uint64_t first, bool full, uint64_t last,
                     bool backward)
{
    bool more = full && (backward ? last > first : last < end);
    buf_adds(b, "],\"version\":");
    buf_add_u64(b, end);
    buf_adds(b, more ? ",\"hasMore\":true,\"next\":" : ",\"hasMore\":false,\"next\":null");
    if (more) {
        buf_add_u64(b, backward ? last - 1 : last + 1);
    }
    buf_addc(b, '}');
}

static const char *get_param(void *arg, const char *name, size_t nth)
{
    return http_req_query_nth(arg, name, nth);
}

/* Runs a parsed query and answers {"events","head","hasMore","next"}. */
static void run_query(struct gate_call *c, struct parsed_query *pq)
{
    struct page pg = {0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    struct engine_query_result res;
    int rc = engine_query(c->db, &pq->q, on_page_event, &pg, &res);
    if (rc) {
        buf_fini(&pg.b);
        out_engine_error(c->req, rc);
        return;
    }
    buf_adds(&pg.b, "],\"head\":");
    buf_add_u64(&pg.b, res.head);
    buf_adds(&pg.b, res.next ? ",\"hasMore\":true,\"next\":" : ",\"hasMore\":false,\"next\":null");
    if (res.next) {
        buf_add_u64(&pg.b, res.next);
    }
    buf_addc(&pg.b, '}');
    out_json(c->req, 200, &pg.b);
}

void api_log_read(struct gate_call *c)
{
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_params(get_param, c->req, &pq, &pe) != 0) {
        out_parse_error(c->req, &pe);
    } else {
        run_query(c, &pq);
    }
    parsed_query_fini(&pq);
}

void api_log_query(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_body(http_req_body(c->req), &pq, &pe) != 0) {
        out_parse_error(c->req, &pe);
    } else {
        run_query(c, &pq);
    }
    parsed_query_fini(&pq);
}

/* ---- events and streams ---- */

void api_event_get(struct gate_call *c)
{
    uint64_t pos;
    if (parse_u64(gate_param_str(c, "position"), &pos) != 0 || pos == 0) {
        out_error(c->req, 400, "invalid_parameter", "positions are integers from 1", "position");
        return;
    }
    struct page pg = {0};
    buf_init(&pg.b);
    int rc = engine_read_event(c->db, pos, on_page_event, &pg);
    if (rc == ERR_NOTFOUND) {
        buf_fini(&pg.b);
        out_error(c->req, 404, "event_not_found", "no event at this position", "position");
        return;
    }
    if (rc) {
        buf_fini(&pg.b);
        out_engine_error(c->req, rc);
        return;
    }
    out_json(c->req, 200, &pg.b);
}

static void stream_json(struct buf *b, struct slice name, const struct stream_rec *s)
{
    buf_adds(b, "{\"stream\":");
    buf_add_json_str(b, name.ptr, name.len);
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, s->version);
    buf_adds(b, ",\"firstPosition\":");
    buf_add_u64(b, s->first_pos);
    buf_adds(b, ",\"lastPosition\":");
    buf_add_u64(b, s->last_pos);
    buf_adds(b, ",\"bytes\":");
    buf_add_u64(b, s->bytes);
    buf_addc(b, ',');
    out_time_field(b, "created", s->created_us, false);
    buf_addc(b, ',');
    out_time_field(b, "updated", s->updated_us, false);
    buf_addc(b, '}');
}

/* Collects a page of the stream list. */
struct stream_page {
    struct buf b;          /* answer being built */
    size_t count, limit;   /* rows written, rows wanted */
    size_t examined;       /* names looked at (category filtering skips some) */
    struct slice category; /* wanted category, or ptr NULL */
    struct buf last;       /* name to continue after, when the page ends early */
    bool more;             /* a next page exists */
};

static int on_stream(void *arg, struct slice name, const struct stream_rec *s)
{
    struct stream_page *sp = arg;
    if (sp->examined++ == QUERY_BUDGET) {
        sp->more = true; /* continue after the last name looked at */
        return 1;
    }
    struct slice cat = filter_category(name);
    bool match = !sp->category.ptr || (cat.len == sp->category.len &&
                                       memcmp(cat.ptr, sp->category.ptr, cat.len) == 0);
    if (sp->count == sp->limit) {
        sp->more = match; /* a next page exists: continue after the last name written */
        return match;
    }
    buf_reset(&sp->last);
    buf_add(&sp->last, name.ptr, name.len);
    if (!match) {
        return 0;
    }
    if (sp->count++) {
        buf_addc(&sp->b, ',');
    }
    stream_json(&sp->b, name, s);
    return 0;
}

void api_streams_list(struct gate_call *c)
{
    size_t limit;
    struct as_of at;
    struct parse_error pe;
    if (!query_limit(c, &limit)) {
        return;
    }
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    const char *prefix = http_req_query(c->req, "prefix");
    const char *category = http_req_query(c->req, "category");
    const char *after = http_req_query(c->req, "after");
    if (category && !engine_name_ok(category, strlen(category), LIMIT_STREAM_NAME_BYTES)) {
        out_error(c->req, 400, "invalid_parameter", "a category is a non-empty name",
                  "category");
        return;
    }
    struct stream_page sp = {.limit = limit};
    buf_init(&sp.b);
    buf_init(&sp.last);
    if (category) {
        sp.category = (struct slice){category, strlen(category)};
    }
    /* a category's streams all start with it; a prefix narrows further */
    struct slice pfx = {"", 0};
    if (prefix) {
        pfx = (struct slice){prefix, strlen(prefix)};
    } else if (category) {
        pfx = sp.category;
    }
    struct slice aft = {after, after ? strlen(after) : 0};
    buf_adds(&sp.b, "{\"streams\":[");
    int rc = engine_list_streams(c->db, pfx, aft, &at, on_stream, &sp);
    if (rc) {
        buf_fini(&sp.b);
        buf_fini(&sp.last);
        out_engine_error(c->req, rc);
        return;
    }
    buf_adds(&sp.b, "],\"next\":");
    if (sp.more) {
        buf_add_json_str(&sp.b, sp.last.ptr, sp.last.len);
    } else {
        buf_adds(&sp.b, "null");
    }
    buf_addc(&sp.b, '}');
    buf_fini(&sp.last);
    out_json(c->req, 200, &sp.b);
}

void api_stream_get(struct gate_call *c)
{
    struct slice name;
    if (!api_stream_name(c, &name)) {
        return;
    }
    struct as_of at;
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct stream_rec s;
    int rc = engine_stream_info(c->db, name, &at, &s);
    if (rc == ERR_NOTFOUND) {
        out_error(c->req, 404, "stream_not_found", "no such stream", "stream");
        return;
    }
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    stream_json(&b, name, &s);
    out_json(c->req, 200, &b);
}

void api_stream_read(struct gate_call *c)
{
    struct slice name;
    uint64_t from;
    size_t limit;
    bool backward;
    if (!api_stream_name(c, &name) || !query_direction(c, &backward) ||
        !query_u64(c, "from", backward ? UINT64_MAX : 1, &from) || !query_limit(c, &limit)) {
        return;
    }
    if (from == 0) {
        out_error(c->req, 400, "invalid_parameter", "versions are integers from 1", "from");
        return;
    }
    struct as_of at;
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &at, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct page pg = {0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"stream\":");
    buf_add_json_str(&pg.b, name.ptr, name.len);
    buf_adds(&pg.b, ",\"events\":[");
    struct stream_rec s;
    uint64_t first_visible = 1;
    int rc = engine_read_stream(c->db, name, &at, from, backward, limit, on_page_event, &pg,
                                &s, &first_visible);
    if (rc) {
        buf_fini(&pg.b);
        if (rc == ERR_NOTFOUND) {
            out_error(c->req, 404, "stream_not_found", "no such stream", "stream");
        } else {
            out_engine_error(c->req, rc);
        }
        return;
    }
    page_end(&pg.b, s.version, first_visible, pg.count == limit, pg.last_ver, backward);
    out_json(c->req, 200, &pg.b);
}
