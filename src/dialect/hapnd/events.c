/* Hapnd events: POST /events, POST /events/batch and GET /events/{aggregateId}. An append is
 * translated (translate.h), checked against the aggregate's type (its first event's), and
 * handed to the shared append operation, with the aggregate type's reducer asked for the new
 * state when one is bound. */
#include "dialect/hapnd/hd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/hapnd/types.h"
#include "json/jsonx.h"
#include "logic/logic.h"
#include "ops/append.h"
#include "ops/out.h"
#include "util/errors.h"

/* The answer's tag (append_style.tag): 'b' for a batch or 's', the database's id in 16 hex
 * digits, then the aggregate type. */
enum { TAG_ID = 1, TAG_TYPE = 17, TAG_BYTES = TAG_TYPE + HAPND_TYPE_BYTES + 1 };

static void make_tag(char *tag, bool batch, struct db *db, const char *type)
{
    snprintf(tag, TAG_BYTES, "%c%016llx%s", batch ? 'b' : 's',
             (unsigned long long)engine_db_id(db), type);
}

/* Keeps the type of the aggregate the native answer is about when this append made it (its
 * first event is version 1): the type of an aggregate is its first event's. An append to one
 * that existed found its type by reading it, which kept it already. */
static void remember(const struct hapnd_ctx *x, const char *tag, struct slice native)
{
    struct slice stream, events, first, ver;
    uint64_t v = 0;
    size_t pos = 0;
    if (!jsonx_member(native, "events", &events) || !jsonx_next_item(events, &pos, &first) ||
        !jsonx_member(first, "version", &ver) || !jsonx_u64(ver, &v) || v != 1 ||
        !jsonx_member(native, "stream", &stream)) {
        return;
    }
    char hex[TAG_TYPE - TAG_ID + 1];
    memcpy(hex, tag + TAG_ID, TAG_TYPE - TAG_ID); /* exactly the 16 digits */
    hex[TAG_TYPE - TAG_ID] = '\0';
    struct buf name;
    buf_init(&name);
    if (jsonx_string(stream, &name) == 0) {
        hd_types_put(x->types, strtoull(hex, NULL, 16), (struct slice){name.ptr, name.len},
                     tag + TAG_TYPE);
    }
    buf_fini(&name);
}

static void answer_appended(struct http_req *req, unsigned status, struct buf *native,
                            bool replayed, const char *tag, void *arg)
{
    (void)status; /* a replay, or events already stored: Hapnd answers 201 alike */
    (void)replayed;
    struct slice n = {native->ptr, native->len};
    struct buf b;
    buf_init(&b);
    if (!tag || strlen(tag) <= TAG_TYPE ||
        hapnd_append_answer(n, (struct slice){tag + TAG_TYPE, strlen(tag + TAG_TYPE)},
                            tag[0] == 'b', &b) != 0) {
        buf_fini(&b);
        hd_fail_req(req, GK_INTERNAL, "INTERNAL_ERROR", "the answer could not be made");
        return;
    }
    remember(arg, tag, n);
    out_json(req, 201, &b);
}

/* The aggregate type of append a into type: given, the existing aggregate's, or inferred
 * from its id; checked against the existing one. False when it answered 400. */
static bool choose_type(struct gate_call *c, const struct hapnd_append *a, char *type)
{
    char existing[HAPND_TYPE_BYTES + 1];
    bool found;
    int rc = hd_aggregate_type(hd_ctx_of(c), c->db, a->aggregate_id, &found, existing);
    if (rc) {
        gate_fail_engine(c, rc);
        return false;
    }
    struct slice t = a->aggregate_type;
    if (!t.ptr && found && existing[0]) {
        t = (struct slice){existing, strlen(existing)};
    } else if (!t.ptr && !hapnd_infer_type(a->aggregate_id, &t)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "aggregateType is required: the "
                   "aggregateId has no '_' or '-' to infer it from", "aggregateType");
        return false;
    }
    if (!hapnd_type_ok(t)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "the aggregate type (inferred from the "
                   "aggregateId) must be 1 to 48 letters, digits, '_', '-' and '.'",
                   "aggregateId");
        return false;
    }
    if (found && existing[0] && (t.len != strlen(existing) || memcmp(t.ptr, existing, t.len))) {
        hd_fail(c, GK_INVALID, "AGGREGATE_TYPE_MISMATCH",
                "the aggregate has events of another aggregate type");
        return false;
    }
    memcpy(type, t.ptr, t.len);
    type[t.len] = '\0';
    return true;
}

static void append(struct gate_call *c, bool batch)
{
    const struct hapnd_ctx *x = hd_ctx_of(c);
    if (!hd_json_body(c)) {
        return;
    }
    struct hapnd_append a;
    hapnd_append_init(&a);
    struct parse_error pe;
    char tag[TAG_BYTES], type[HAPND_TYPE_BYTES + 1];
    if (hapnd_append_parse(http_req_body(c->req), batch, x->limits.batch_events, &a, &pe)) {
        hd_fail_parse(c, &pe);
    } else if (choose_type(c, &a, type)) {
        struct slice t = {type, strlen(type)};
        struct buf native;
        buf_init(&native);
        hapnd_native_body(&a, t, &native);
        make_tag(tag, batch, c->db, type);
        struct append_style style = {.mount = &hapnd_mount, .idem_ns = HAPND_IDEM_NS,
                                     .answer = answer_appended, .tag = tag,
                                     .answer_arg = (void *)x, .flat_events = true};
        if (x->logic && logic_has_reducer(x->logic, c->db, t)) {
            style.return_state = x->logic;
            style.state_category = type;
        }
        struct db *db = c->db;
        c->db = NULL; /* the append's reference now */
        append_stream(c->req, db, a.aggregate_id, (struct slice){native.ptr, native.len},
                      &x->limits, &style);
        buf_fini(&native);
    }
    hapnd_append_fini(&a);
}

void hd_append(struct gate_call *c)
{
    append(c, false);
}

void hd_append_batch(struct gate_call *c)
{
    append(c, true);
}

/* ---- reads ---- */

struct events_page {
    struct buf b;
    size_t count;
    uint64_t last_version;
};

static int on_event(void *arg, const struct event_rec *ev)
{
    struct events_page *pg = arg;
    buf_adds(&pg->b, pg->count++ ? "," : "");
    hapnd_event_json(&pg->b, ev);
    pg->last_version = ev->version;
    return 0;
}

/* Reads the optional positive integer query parameter name into *out (unchanged when
 * absent). False when it answered 400. */
static bool query_u64(struct gate_call *c, const char *name, uint64_t max, uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    uint64_t v;
    if (!s) {
        return true;
    }
    if (parse_u64(s, &v) != 0 || v == 0 || v > max) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", name[0] == 'l'
                   ? "limit must be a whole number from 1 to 1000"
                   : "fromVersion must be a whole number from 1", name);
        return false;
    }
    *out = v;
    return true;
}

void hd_events(struct gate_call *c)
{
    struct slice id = gate_param(c, "aggregateId");
    uint64_t from = 1, limit = LIMIT_READ_MAX;
    if (!query_u64(c, "fromVersion", UINT64_MAX, &from) ||
        !query_u64(c, "limit", LIMIT_READ_MAX, &limit)) {
        return;
    }
    struct events_page pg = {.count = 0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    struct stream_rec s = {0};
    int rc = id.len && id.ptr[0] != '$'
                 ? engine_read_stream(c->db, id, NULL, from, false, (size_t)limit, on_event,
                                      &pg, &s, NULL)
                 : ERR_NOTFOUND;
    if (rc && rc != ERR_NOTFOUND && rc != ERR_DELETED) {
        buf_fini(&pg.b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_addc(&pg.b, ']');
    if (!rc && pg.count && s.version > pg.last_version) {
        buf_printf(&pg.b, ",\"hasMore\":true,\"nextFromVersion\":%llu",
                   (unsigned long long)pg.last_version + 1);
    }
    buf_addc(&pg.b, '}');
    out_json(c->req, 200, &pg.b);
}
