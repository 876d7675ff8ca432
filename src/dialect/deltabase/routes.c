/* DeltaBase routes: thin handlers that read DeltaBase requests, call the engine or a shared
 * operation (ops/) and answer in DeltaBase's shapes (translate.c does the pure parts). */
#include "dialect/deltabase/deltabase.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/deltabase/translate.h"
#include "engine/canon.h"
#include "engine/webhooks.h"
#include "ops/append.h"
#include "ops/live.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/timeutil.h"

static const struct dlb_ctx *ctx_of(const struct gate_call *c)
{
    return c->ctx;
}

static void fail(const struct gate_call *c, unsigned kind, const char *code, const char *msg,
                 const char *field)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg, .field = field};
    gate_fail(c, &e);
}

static void fail_parse(const struct gate_call *c, const struct parse_error *pe)
{
    out_parse_error_as(c->mount, c->req, pe);
}

/* True when the body is JSON (Content-Type application/json); else answers 415. */
static bool json_body(const struct gate_call *c)
{
    if (out_is_json(c->req)) {
        return true;
    }
    fail(c, GK_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json",
         "Content-Type");
    return false;
}

/* An unsigned query parameter with a default and a maximum; answers 400 when bad. */
static bool query_num(const struct gate_call *c, const char *name, uint64_t dflt, uint64_t max,
                      uint64_t *out)
{
    const char *s = http_req_query(c->req, name);
    *out = dflt;
    if (s && (parse_u64(s, out) != 0 || *out > max)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s is a whole number from 0 to %llu", name,
                 (unsigned long long)max);
        fail(c, GK_INVALID, "invalid_parameter", msg, name);
        return false;
    }
    return true;
}

static bool query_direction(const struct gate_call *c, bool *backward)
{
    const char *s = http_req_query(c->req, "direction");
    *backward = s && !strcmp(s, "backward");
    if (s && !*backward && strcmp(s, "forward") != 0) {
        fail(c, GK_INVALID, "invalid_parameter", "direction is forward or backward",
             "direction");
        return false;
    }
    return true;
}

/* The stream id of the path, refused when it is DeltaBase's reserved DCB stream or one of
 * Annals' reserved names. */
static bool stream_id(const struct gate_call *c, struct slice *out)
{
    *out = gate_param(c, "streamId");
    bool reserved = (out->len == sizeof DLB_DCB_STREAM - 1 &&
                     !memcmp(out->ptr, DLB_DCB_STREAM, out->len)) ||
                    (out->len && out->ptr[0] == '$');
    if (reserved || !engine_stream_name_ok(out->ptr, out->len)) {
        fail(c, GK_INVALID, "invalid_name",
             reserved ? "this stream id is reserved (__dcb__ holds the DCB events)"
                      : "stream ids are 1 to 256 bytes of UTF-8 without control characters",
             "stream");
        return false;
    }
    return true;
}

/* ---- event stores ---- */

static void time_member(struct buf *b, const char *key, int64_t us)
{
    char t[TIME_RFC3339_LEN];
    buf_printf(b, "\"%s\":", key);
    if (!us) {
        buf_adds(b, "null");
        return;
    }
    time_format(us, t);
    buf_printf(b, "\"%s\"", t);
}

/* {"id","name","description","region","status","createdAt","updatedAt"} without the brace. */
static void store_fields(struct buf *b, struct db *db, const struct db_info *in)
{
    struct db_settings set;
    engine_db_settings(db, &set);
    const char *name = engine_db_name(db);
    buf_adds(b, "{\"id\":");
    buf_add_json_str(b, name, strlen(name));
    buf_adds(b, ",\"name\":");
    buf_add_json_str(b, name, strlen(name));
    buf_adds(b, ",\"description\":");
    buf_add_json_str(b, set.description, strlen(set.description));
    buf_adds(b, ",\"region\":");
    if (set.region[0]) {
        buf_add_json_str(b, set.region, strlen(set.region));
    } else {
        buf_adds(b, "null");
    }
    buf_adds(b, ",\"status\":\"active\",");
    time_member(b, "createdAt", in->created_us);
    buf_addc(b, ',');
    time_member(b, "updatedAt", set.updated_us ? set.updated_us : in->created_us);
}

static void store_json(struct buf *b, struct db *db, bool details)
{
    struct db_info in;
    memset(&in, 0, sizeof in);
    engine_db_info(db, &in);
    store_fields(b, db, &in);
    if (details) {
        struct db_settings set;
        engine_db_settings(db, &set);
        buf_printf(b, ",\"statistics\":{\"totalStreams\":%llu,\"totalEvents\":%llu,"
                   "\"databaseSizeBytes\":%llu,",
                   (unsigned long long)in.streams, (unsigned long long)in.events,
                   (unsigned long long)in.file_bytes);
        time_member(b, "oldestEventTimestamp", in.oldest_us);
        buf_addc(b, ',');
        time_member(b, "newestEventTimestamp", in.newest_us);
        buf_adds(b, "},\"settings\":{\"retentionPeriodDays\":");
        set.retention_days ? buf_add_u64(b, set.retention_days) : buf_adds(b, "null");
        buf_adds(b, ",\"maxStreamSizeBytes\":");
        set.max_stream_bytes ? buf_add_u64(b, set.max_stream_bytes) : buf_adds(b, "null");
        buf_addc(b, '}');
    }
    buf_addc(b, '}');
}

/* Reads {"name","description"?,"region"?,"settings"?} into name and settings. */
static int store_body(struct slice body, char *name, size_t cap, struct db_settings *set,
                      struct parse_error *pe)
{
    void *rootp;
    if (parse_json_object(body, &rootp, pe) != 0) {
        return ERR_INVALID;
    }
    json_t *root = rootp;
    json_t *region = json_object_get(root, "region");
    const char *nm = json_string_value(json_object_get(root, "name"));
    int rc = 0;
    if (region && !json_is_null(region) &&
        (!json_is_string(region) || json_string_length(region) > LIMIT_REGION_BYTES ||
         !engine_name_ok(json_string_value(region), json_string_length(region),
                        LIMIT_REGION_BYTES))) {
        rc = parse_fail(pe, 400, "invalid_request", "region", "a label of at most %d bytes",
                        LIMIT_REGION_BYTES);
    }
    char rg[LIMIT_REGION_BYTES + 1];
    snprintf(rg, sizeof rg, "%s", !rc && json_is_string(region) ? json_string_value(region) : "");
    json_object_del(root, "region"); /* Annals' settings parser knows no region */
    if (!rc) rc = parse_db_settings(root, false, set, pe);
    if (!rc && (!nm || !engine_db_name_ok(nm, strlen(nm)) || strlen(nm) >= cap)) {
        rc = parse_fail(pe, 400, "invalid_name", "name",
                        "event store names match [a-z0-9][a-z0-9-]{0,62}");
    }
    if (!rc) {
        snprintf(name, cap, "%s", nm);
        memcpy(set->region, rg, sizeof set->region);
    }
    json_decref(root);
    return rc;
}

static void store_create(struct gate_call *c)
{
    if (!json_body(c)) {
        return;
    }
    char name[LIMIT_DB_NAME_BYTES + 1];
    struct db_settings set;
    struct parse_error pe;
    if (store_body(http_req_body(c->req), name, sizeof name, &set, &pe) != 0) {
        fail_parse(c, &pe);
        return;
    }
    int rc = engine_db_create(c->gate->engine, name, strlen(name), &set);
    struct db *db = NULL;
    if (rc == ERR_EXISTS) {
        fail(c, GK_CONFLICT, "database_exists", "an event store with this name exists", "name");
    } else if (rc == ERR_TOOBIG) {
        fail(c, GK_STORAGE_FULL, "too_many_databases", "the event store limit is reached", NULL);
    } else if (rc || engine_db_acquire(c->gate->engine, name, strlen(name), &db) != 0) {
        gate_fail_engine(c, rc ? rc : ERR_GONE);
    } else {
        struct buf b;
        buf_init(&b);
        store_json(&b, db, false);
        engine_db_release(db);
        out_json(c->req, 201, &b);
    }
}

static void store_list(struct gate_call *c)
{
    uint64_t limit, offset;
    if (!query_num(c, "limit", 50, 1000, &limit) || !query_num(c, "offset", 0, 1u << 20, &offset)) {
        return;
    }
    const char *filter = http_req_query(c->req, "filter");
    size_t n;
    char **names = engine_db_names(c->gate->engine, &n);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"eventStores\":[");
    size_t matched = 0, shown = 0;
    for (size_t i = 0; i < n; i++) {
        bool visible = !(c->authed && c->key.database[0] && strcmp(c->key.database, names[i]));
        struct db *db;
        if (!visible || (filter && !strstr(names[i], filter)) || matched++ < offset ||
            shown == limit ||
            engine_db_acquire(c->gate->engine, names[i], strlen(names[i]), &db) != 0) {
            continue;
        }
        buf_adds(&b, shown++ ? "," : "");
        store_json(&b, db, false);
        engine_db_release(db);
    }
    buf_printf(&b, "],\"total\":%zu}", matched);
    engine_names_free(names, n);
    out_json(c->req, 200, &b);
}

static void store_get(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    store_json(&b, c->db, true);
    out_json(c->req, 200, &b);
}

static void store_delete(struct gate_call *c)
{
    out_delete_database(c, gate_param(c, "eventStoreId"), "no such event store",
                        "eventStoreId");
}

/* ---- streams ---- */

static void answer_appended(struct http_req *req, unsigned status, struct buf *native,
                            bool replayed, const char *tag, void *arg)
{
    (void)tag;
    (void)arg;
    (void)status;
    (void)replayed;
    struct buf b;
    buf_init(&b);
    if (dlb_append_answer((struct slice){native->ptr, native->len}, &b) != 0) {
        buf_adds(&b, "{}");
    }
    http_respond(req, 200, &b, NULL); /* DeltaBase answers 200, a replay too */
}

static const struct append_style STREAM_STYLE = {.mount = &deltabase_mount, .idem_ns = 1,
                                                 .answer = answer_appended};

static void stream_append(struct gate_call *c)
{
    struct slice stream;
    if (!stream_id(c, &stream) || !json_body(c)) {
        return;
    }
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    if (dlb_append_request(http_req_body(c->req), &native, &pe) != 0) {
        fail_parse(c, &pe);
    } else {
        struct db *db = c->db;
        c->db = NULL; /* the append holds the reference now */
        append_stream(c->req, db, stream, (struct slice){native.ptr, native.len},
                      &ctx_of(c)->limits, &STREAM_STYLE);
    }
    buf_fini(&native);
}

/* A page of a stream being read. */
struct stream_page {
    struct buf b;
    size_t count;
    bool has_to, backward, past_to;
    uint64_t to_version;   /* native version of toStreamPosition */
    uint64_t last_version; /* native version of the last event written */
};

static int on_stream_event(void *arg, const struct event_rec *ev)
{
    struct stream_page *sp = arg;
    if (sp->has_to && (sp->backward ? ev->version < sp->to_version : ev->version > sp->to_version)) {
        sp->past_to = true;
        return 1;
    }
    buf_adds(&sp->b, sp->count++ ? "," : "");
    dlb_event(&sp->b, ev);
    sp->last_version = ev->version;
    return 0;
}

static void not_found_stream(const struct gate_call *c, struct slice stream)
{
    struct buf details;
    buf_init(&details);
    buf_adds(&details, "\"streamId\":");
    buf_add_json_str(&details, stream.ptr, stream.len);
    buf_adds(&details, ",\"eventStoreId\":");
    buf_add_json_str(&details, engine_db_name(c->db), strlen(engine_db_name(c->db)));
    char msg[320];
    snprintf(msg, sizeof msg, "Stream '%.*s' not found", (int)(stream.len < 256 ? stream.len : 256),
             stream.ptr);
    struct gate_error e = {.kind = GK_NOT_FOUND, .code = "stream_not_found", .message = msg,
                           .details = details.ptr};
    gate_fail(c, &e);
    buf_fini(&details);
}

static void stream_read(struct gate_call *c)
{
    struct slice stream;
    uint64_t limit, from_pos, to_pos;
    bool backward;
    if (!stream_id(c, &stream) || !query_direction(c, &backward) ||
        !query_num(c, "limit", 100, 1000, &limit) ||
        !query_num(c, "fromStreamPosition", backward ? UINT64_MAX - 1 : 0, UINT64_MAX - 1,
                   &from_pos) ||
        !query_num(c, "toStreamPosition", 0, UINT64_MAX - 1, &to_pos)) {
        return;
    }
    if (limit == 0) {
        fail(c, GK_INVALID, "invalid_parameter", "limit is 1 to 1000", "limit");
        return;
    }
    struct stream_page sp = {.backward = backward, .to_version = to_pos + 1,
                             .has_to = http_req_query(c->req, "toStreamPosition") != NULL};
    buf_init(&sp.b);
    buf_adds(&sp.b, "{\"streamId\":");
    buf_add_json_str(&sp.b, stream.ptr, stream.len);
    buf_adds(&sp.b, ",\"events\":[");
    struct stream_rec s;
    uint64_t first_visible = 1;
    int rc = engine_read_stream(c->db, stream, NULL, from_pos + 1, backward, limit,
                                on_stream_event, &sp, &s, &first_visible);
    if (rc == ERR_NOTFOUND || (!rc && sp.count == 0 && s.version < first_visible)) {
        buf_fini(&sp.b);
        not_found_stream(c, stream);
        return;
    }
    if (rc) {
        buf_fini(&sp.b);
        gate_fail_engine(c, rc);
        return;
    }
    bool more = sp.count == limit && !sp.past_to &&
                (backward ? sp.last_version > first_visible : sp.last_version < s.version) &&
                !(sp.has_to && sp.last_version == sp.to_version);
    buf_printf(&sp.b, "],\"hasMore\":%s,\"streamVersion\":%lld}", more ? "true" : "false",
               (long long)s.version - 1);
    out_json(c->req, 200, &sp.b);
}

/* ---- reading the log ---- */

/* The DeltaBase query parameters behind the native names parse_query_params asks for. */
struct events_params {
    struct http_req *req;
    char after[TIME_RFC3339_LEN];  /* "after" moved 1 µs later: native ranges are inclusive */
    char before[TIME_RFC3339_LEN]; /* "before" moved 1 µs earlier */
};

static const char *events_param(void *arg, const char *name, size_t nth)
{
    struct events_params *ep = arg;
    if (!strcmp(name, "types") || !strcmp(name, "streams") || !strcmp(name, "direction")) {
        return http_req_query_nth(ep->req, name, nth);
    }
    if (nth) {
        return NULL;
    }
    if (!strcmp(name, "from")) {
        return http_req_query(ep->req, "fromGlobalPosition");
    }
    if (!strcmp(name, "recordedFrom")) {
        return ep->after[0] ? ep->after : NULL;
    }
    return !strcmp(name, "recordedTo") && ep->before[0] ? ep->before : NULL;
}

/* Collects a page of DeltaBase events, skipping the first `skip`. */
struct event_page {
    struct buf b;
    size_t skip, count;
};

static int on_page_event(void *arg, const struct event_rec *ev)
{
    struct event_page *pg = arg;
    if (pg->skip) {
        pg->skip--;
        return 0;
    }
    buf_adds(&pg->b, pg->count++ ? "," : "");
    dlb_event(&pg->b, ev);
    return 0;
}

static bool time_param(const struct gate_call *c, const char *name, int64_t delta, char *out)
{
    const char *v = http_req_query(c->req, name);
    out[0] = '\0';
    if (v && dlb_shift_time(v, delta, out) != 0) {
        fail(c, GK_INVALID, "invalid_parameter", "an ISO 8601 (RFC 3339) timestamp", name);
        return false;
    }
    return true;
}

static void events_read(struct gate_call *c)
{
    uint64_t limit, offset;
    struct events_params ep = {.req = c->req};
    if (!query_num(c, "limit", 100, 1000, &limit) || !query_num(c, "offset", 0, 10000, &offset) ||
        !time_param(c, "after", 1, ep.after) || !time_param(c, "before", -1, ep.before)) {
        return;
    }
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_params(events_param, &ep, &pq, &pe) != 0) {
        if (!strcmp(pe.field, "from")) {
            snprintf(pe.field, sizeof pe.field, "fromGlobalPosition");
        }
        parsed_query_fini(&pq);
        fail_parse(c, &pe);
        return;
    }
    pq.q.limit = (size_t)(limit + offset);
    struct event_page pg = {.skip = (size_t)offset};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    struct engine_query_result res;
    int rc = engine_query(c->db, &pq.q, on_page_event, &pg, &res);
    parsed_query_fini(&pq);
    if (rc) {
        buf_fini(&pg.b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_printf(&pg.b, "],\"hasMore\":%s}", res.next ? "true" : "false");
    out_json(c->req, 200, &pg.b);
}

/* ---- the stream list ---- */

struct stream_list {
    struct buf b;
    size_t skip, limit, count;
    struct slice type;  /* wanted stream type, ptr NULL: any */
    bool more;
};

static int on_listed(void *arg, struct slice name, const struct stream_rec *s)
{
    struct stream_list *sl = arg;
    struct slice t = dlb_stream_type(name);
    if (name.len && name.ptr[0] == '$') {
        return 0; /* Annals' own streams ($dcb, $$settings) are not DeltaBase streams */
    }
    if (sl->type.ptr && (t.len != sl->type.len || memcmp(t.ptr, sl->type.ptr, t.len))) {
        return 0;
    }
    if (sl->skip) {
        sl->skip--;
        return 0;
    }
    if (sl->count == sl->limit) {
        sl->more = true;
        return 1;
    }
    buf_adds(&sl->b, sl->count++ ? ",{\"streamId\":" : "{\"streamId\":");
    buf_add_json_str(&sl->b, name.ptr, name.len);
    buf_adds(&sl->b, ",\"streamType\":");
    buf_add_json_str(&sl->b, t.ptr, t.len);
    buf_printf(&sl->b, ",\"streamVersion\":%lld,\"eventCount\":%llu,\"lastGlobalPosition\":%llu,",
               (long long)s->version - 1, (unsigned long long)s->version,
               (unsigned long long)s->last_pos);
    time_member(&sl->b, "createdAt", s->created_us);
    buf_addc(&sl->b, ',');
    time_member(&sl->b, "updatedAt", s->updated_us);
    buf_addc(&sl->b, '}');
    return 0;
}

static void streams_list(struct gate_call *c)
{
    uint64_t limit, offset;
    if (!query_num(c, "limit", 100, 1000, &limit) || !query_num(c, "offset", 0, 1u << 20, &offset)) {
        return;
    }
    const char *has = http_req_query(c->req, "hasEvents");
    if (has && strcmp(has, "true") && strcmp(has, "false")) {
        fail(c, GK_INVALID, "invalid_parameter", "hasEvents is true or false", "hasEvents");
        return;
    }
    const char *type = http_req_query(c->req, "streamType");
    struct stream_list sl = {.skip = (size_t)offset, .limit = (size_t)limit};
    if (type) {
        sl.type = (struct slice){type, strlen(type)};
    }
    buf_init(&sl.b);
    buf_adds(&sl.b, "{\"streams\":[");
    /* a stream type starts every name of its streams */
    int rc = engine_list_streams(c->db, type ? sl.type : (struct slice){"", 0},
                                 (struct slice){NULL, 0}, NULL, on_listed, &sl);
    if (rc) {
        buf_fini(&sl.b);
        gate_fail_engine(c, rc);
        return;
    }
    buf_printf(&sl.b, "],\"hasMore\":%s}", sl.more ? "true" : "false");
    out_json(c->req, 200, &sl.b);
}

/* ---- the DCB API ---- */

static void answer_dcb(struct http_req *req, unsigned status, struct buf *native, bool replayed,
                       const char *tag, void *arg)
{
    (void)tag;
    (void)arg;
    (void)status;
    (void)replayed;
    struct buf b;
    buf_init(&b);
    if (dlb_dcb_answer((struct slice){native->ptr, native->len}, &b) != 0) {
        buf_adds(&b, "{}");
    }
    http_respond(req, 200, &b, NULL);
}

static const struct append_style DCB_STYLE = {.mount = &deltabase_mount, .idem_ns = 1,
                                              .answer = answer_dcb,
                                              .flags = APPEND_TAGS_NO_COMMA};

static void dcb_append(struct gate_call *c)
{
    if (!json_body(c)) {
        return;
    }
    struct buf native;
    buf_init(&native);
    struct parse_error pe;
    if (dlb_dcb_request(http_req_body(c->req), &native, &pe) != 0) {
        fail_parse(c, &pe);
    } else {
        struct db *db = c->db;
        c->db = NULL;
        append_multi(c->req, db, (struct slice){native.ptr, native.len}, &ctx_of(c)->limits,
                     &DCB_STYLE);
    }
    buf_fini(&native);
}

static void dcb_query(struct gate_call *c)
{
    if (!json_body(c)) {
        return;
    }
    struct buf native;
    buf_init(&native);
    struct parsed_query pq;
    struct parse_error pe;
    int rc = dlb_dcb_query(http_req_body(c->req), &native, &pe);
    if (!rc) rc = parse_query_body((struct slice){native.ptr, native.len}, &pq, &pe);
    buf_fini(&native);
    if (rc) {
        if (!strcmp(pe.field, "from")) {
            snprintf(pe.field, sizeof pe.field, "after");
        }
        fail_parse(c, &pe);
        return;
    }
    struct event_page pg = {0};
    buf_init(&pg.b);
    buf_adds(&pg.b, "{\"events\":[");
    struct engine_query_result res;
    rc = engine_query(c->db, &pq.q, on_page_event, &pg, &res);
    parsed_query_fini(&pq);
    if (rc) {
        buf_fini(&pg.b);
        gate_fail_engine(c, rc);
        return;
    }
    /* the position a following append's condition is judged after: the snapshot's head, or
     * where this page stopped when there is more */
    buf_printf(&pg.b, "],\"lastPosition\":%llu,\"hasMore\":%s}",
               (unsigned long long)(res.next ? res.next - 1 : res.head),
               res.next ? "true" : "false");
    out_json(c->req, 200, &pg.b);
}

/* ---- subscriptions ---- */

/* A subscription being made on the engine's worker pool (the URL's host is resolved and
 * checked, webhooks.json is synced). */
struct sub_job {
    struct db *db;          /* a reference, the job's */
    struct http_req *req;
    struct webhook_def def; /* points into the buffers below */
    struct buf meta, filter, hdrs;
};

static void sub_job_answer(struct sub_job *j)
{
    struct buf d, out;
    buf_init(&d);
    buf_init(&out);
    int rc = engine_webhook_describe(j->db, j->def.name, true, &d);
    if (!rc && dlb_subscription((struct slice){d.ptr, d.len}, &out) == 0) {
        /* the same configuration again: the subscription it made */
        out.len--; /* reopen the object */
        buf_adds(&out, ",\"isExistingSubscription\":true,\"message\":\"a subscription with "
                       "this configuration exists\"}");
        http_respond(j->req, 200, &out, NULL);
        buf_fini(&d);
        return;
    }
    char secret[64], why[256] = "";
    rc = engine_webhook_create(j->db, &j->def, secret, why, sizeof why);
    buf_reset(&d);
    if (!rc) rc = engine_webhook_describe(j->db, j->def.name, true, &d);
    if (!rc && dlb_subscription((struct slice){d.ptr, d.len}, &out) == 0) {
        http_respond(j->req, 201, &out, NULL);
    } else {
        struct gate_error e = {.kind = GK_INVALID, .code = "invalid_url", .message = why,
                               .field = "subscriberConfig.url"};
        if (rc == ERR_TOOBIG) {
            e = (struct gate_error){.kind = GK_STORAGE_FULL, .code = "too_many_webhooks",
                                    .message = "the store's subscription limit is reached"};
        } else if (rc != ERR_INVALID && rc != ERR_DENIED) {
            gate_engine_error(rc, &e);
        }
        gate_fail_req(&deltabase_mount, j->req, &e);
        buf_fini(&out);
    }
    buf_fini(&d);
}

static void sub_job_free(struct sub_job *j)
{
    engine_db_release(j->db);
    buf_fini(&j->meta);
    buf_fini(&j->filter);
    buf_fini(&j->hdrs);
    free(j);
}

/* Worker thread (engine_submit). */
static void run_sub_job(void *arg, bool cancelled)
{
    struct sub_job *j = arg;
    if (cancelled) {
        struct gate_error e;
        gate_engine_error(ERR_SHUTDOWN, &e);
        gate_fail_req(&deltabase_mount, j->req, &e);
    } else {
        sub_job_answer(j);
    }
    sub_job_free(j);
}

static void subscribe(struct gate_call *c)
{
    if (!json_body(c)) {
        return;
    }
    struct sub_job *j = xcalloc(1, sizeof(*j));
    buf_init(&j->meta);
    buf_init(&j->filter);
    buf_init(&j->hdrs);
    struct parse_error pe = {0};
    if (dlb_subscribe_request(http_req_body(c->req), engine_db_head(c->db), time_now_us(),
                              &j->def, &j->meta, &j->filter, &j->hdrs, &pe) != 0) {
        buf_fini(&j->meta);
        buf_fini(&j->filter);
        buf_fini(&j->hdrs);
        free(j);
        fail_parse(c, &pe);
        return;
    }
    j->db = c->db;
    j->req = c->req;
    c->db = NULL; /* the job holds the reference now */
    http_defer(c->req); /* before the job may answer it */
    int rc = engine_submit(c->gate->engine, run_sub_job, j);
    if (rc) {
        struct gate_error e;
        gate_engine_error(ERR_SHUTDOWN, &e);
        if (rc == ERR_TOOBIG) {
            e = (struct gate_error){.kind = GK_UNAVAILABLE, .code = "server_busy",
                                    .message = "too many subscriptions are being made; try "
                                               "again shortly"};
        }
        gate_fail_req(&deltabase_mount, j->req, &e);
        sub_job_free(j);
    }
}

/* Appends the DeltaBase subscriptions among the store's webhooks. */
static void sub_list(struct gate_call *c)
{
    struct buf all, b;
    buf_init(&all);
    buf_init(&b);
    buf_adds(&all, "[");
    engine_webhook_describe(c->db, NULL, true, &all);
    buf_addc(&all, ']');
    json_t *arr = json_loadb(all.ptr, all.len, 0, NULL);
    buf_adds(&b, "{\"subscriptions\":[");
    size_t i, n = 0;
    json_t *w;
    json_array_foreach(arr, i, w) {
        char *text = json_dumps(w, JSON_COMPACT);
        struct buf one;
        buf_init(&one);
        if (dlb_subscription((struct slice){text, strlen(text)}, &one) == 0) {
            buf_adds(&b, n++ ? "," : "");
            buf_add(&b, one.ptr, one.len);
        }
        buf_fini(&one);
        free(text);
    }
    buf_printf(&b, "],\"total\":%zu}", n);
    json_decref(arr);
    buf_fini(&all);
    out_json(c->req, 200, &b);
}

/* The named subscription's description into out; answers 404 and returns false when it is
 * not a DeltaBase subscription of this store. */
static bool sub_find(struct gate_call *c, struct buf *out)
{
    const char *id = gate_param_str(c, "subscriptionId");
    struct buf d;
    buf_init(&d);
    bool ok = engine_webhook_describe(c->db, id, true, &d) == 0 &&
              dlb_subscription((struct slice){d.ptr, d.len}, out) == 0;
    buf_fini(&d);
    if (!ok) {
        fail(c, GK_NOT_FOUND, "subscription_not_found", "no such subscription",
             "subscriptionId");
    }
    return ok;
}

static void sub_get(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    if (sub_find(c, &b)) {
        out_json(c->req, 200, &b);
    } else {
        buf_fini(&b);
    }
}

static void sub_delete(struct gate_call *c)
{
    struct buf b;
    buf_init(&b);
    if (!sub_find(c, &b)) {
        buf_fini(&b);
        return;
    }
    buf_reset(&b);
    int rc = engine_webhook_delete(c->db, gate_param_str(c, "subscriptionId"));
    if (rc) {
        buf_fini(&b);
        gate_fail_engine(c, rc);
        return;
    }
    http_respond(c->req, 204, &b, NULL);
}

/* ---- WebSocket ---- */

static const struct live_protocol WS = {"deltabase", dlb_ws_read, dlb_ws_event, dlb_ws_note,
                                        dlb_ws_error};

static void events_ws(struct gate_call *c)
{
    if (!http_ws_requested(c->req)) {
        fail(c, GK_INVALID, "invalid_upgrade",
             "this path is a WebSocket: send Upgrade: websocket, Connection: Upgrade, "
             "Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key", "Upgrade");
        return;
    }
    struct db *db = c->db;
    c->db = NULL; /* the connection holds the reference now */
    live_ws_proto(ctx_of(c)->live, c->req, db, &WS, "*");
}

/* Collects the store's DeltaBase WebSocket connections. */
struct conns {
    struct buf b;
    const char *database;
    size_t n;
};

static void on_conn(void *arg, const struct live_info *in)
{
    struct conns *cs = arg;
    if (strcmp(in->owner, WS.owner) || strcmp(in->database, cs->database)) {
        return;
    }
    buf_printf(&cs->b, "%s{\"clientId\":\"ws_%llu\",\"eventFilter\":", cs->n++ ? "," : "",
               (unsigned long long)in->id);
    buf_add_json_str(&cs->b, in->label, strlen(in->label));
    buf_adds(&cs->b, ",\"remoteAddress\":");
    buf_add_json_str(&cs->b, in->peer, strlen(in->peer));
    buf_addc(&cs->b, ',');
    time_member(&cs->b, "connectedAt", in->since_us);
    buf_printf(&cs->b, ",\"globalPosition\":%llu,\"eventsDelivered\":%llu}",
               (unsigned long long)in->position, (unsigned long long)in->delivered);
}

static void ws_list(struct gate_call *c)
{
    struct conns cs = {.database = engine_db_name(c->db)};
    buf_init(&cs.b);
    buf_adds(&cs.b, "{\"connections\":[");
    live_each(ctx_of(c)->live, on_conn, &cs);
    buf_printf(&cs.b, "],\"total\":%zu}", cs.n);
    out_json(c->req, 200, &cs.b);
}

static void ws_close(struct gate_call *c)
{
    const char *id = gate_param_str(c, "clientId");
    uint64_t n;
    if (strncmp(id, "ws_", 3) || parse_u64(id + 3, &n) ||
        live_close_owned(ctx_of(c)->live, n, WS.owner, engine_db_name(c->db))) {
        fail(c, GK_NOT_FOUND, "connection_not_found", "no such WebSocket connection",
             "clientId");
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(c->req, 204, &b, NULL);
}

/* ---- the table ---- */

static const struct route_param P_STORES[] = {
    {"limit", PARAM_INTEGER, "Most event stores in the answer (default 50)", NULL},
    {"offset", PARAM_INTEGER, "Event stores to skip (default 0)", NULL},
    {"filter", PARAM_STRING, "Only names containing this", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_STREAM_READ[] = {
    {"direction", PARAM_ENUM, "Read order (default forward)", "forward,backward"},
    {"limit", PARAM_INTEGER, "Most events (default 100, at most 1000)", NULL},
    {"fromStreamPosition", PARAM_INTEGER, "First stream position (0-based, inclusive)", NULL},
    {"toStreamPosition", PARAM_INTEGER, "Last stream position (inclusive)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_EVENTS[] = {
    {"types", PARAM_LIST, "Event types (comma-separated)", NULL},
    {"streams", PARAM_LIST, "Stream ids (comma-separated)", NULL},
    {"limit", PARAM_INTEGER, "Most events (default 100, at most 1000)", NULL},
    {"offset", PARAM_INTEGER, "Matching events to skip (default 0, at most 10000)", NULL},
    {"after", PARAM_TIME, "Only events recorded after this time", NULL},
    {"before", PARAM_TIME, "Only events recorded before this time", NULL},
    {"fromGlobalPosition", PARAM_POSITIVE, "First global position (inclusive)", NULL},
    {"direction", PARAM_ENUM, "Read order (default forward)", "forward,backward"},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_WS[] = {
    {"apiKey", PARAM_STRING, "The API key (browsers' WebSocket cannot send headers)", NULL},
    {NULL, 0, NULL, NULL},
};
static const struct route_param P_STREAMS[] = {
    {"limit", PARAM_INTEGER, "Most streams (default 100, at most 1000)", NULL},
    {"offset", PARAM_INTEGER, "Streams to skip (default 0)", NULL},
    {"streamType", PARAM_STRING, "Only streams of this type (the id before - _ or :)", NULL},
    {"hasEvents", PARAM_BOOLEAN, "Only streams with events (every listed stream has)", NULL},
    {NULL, 0, NULL, NULL},
};

#define STORE ROUTE_DB
static const struct route ROUTES[] = {
    {"POST", "event-stores", store_create, ROUTE_ALL_DBS, NEED_ADMIN, "createEventStore",
     "Create an event store", NULL, "CreateEventStore", "EventStore", 201},
    {"GET", "event-stores", store_list, 0, NEED_ANY, "listEventStores", "List event stores",
     P_STORES, NULL, "EventStoreList", 200},
    {"GET", "event-stores/{eventStoreId}", store_get, STORE, NEED_READ, "getEventStore",
     "An event store with statistics and settings", NULL, NULL, "EventStoreDetail", 200},
    {"DELETE", "event-stores/{eventStoreId}", store_delete, STORE, NEED_ADMIN,
     "deleteEventStore", "Delete an event store", NULL, NULL, NULL, 204},
    {"POST", "event-stores/{eventStoreId}/streams/{streamId}", stream_append,
     STORE | ROUTE_IDEMPOTENT, NEED_WRITE, "appendToStream", "Append events to a stream", NULL,
     "AppendRequest", "AppendResult", 200},
    {"GET", "event-stores/{eventStoreId}/streams/{streamId}", stream_read, STORE, NEED_READ,
     "readStream", "Read a stream", P_STREAM_READ, NULL, "StreamEvents", 200},
    {"GET", "event-stores/{eventStoreId}/events", events_read, STORE, NEED_READ, "queryEvents",
     "Query events across streams", P_EVENTS, NULL, "Events", 200},
    {"POST", "event-stores/{eventStoreId}/events", dcb_append, STORE | ROUTE_IDEMPOTENT,
     NEED_WRITE, "appendDcb", "Append stream-less events with a DCB condition", NULL,
     "DcbAppend", "DcbAppendResult", 200},
    {"POST", "event-stores/{eventStoreId}/query", dcb_query, STORE | ROUTE_READ_BODY, NEED_READ,
     "queryDcb", "Read events matching a DCB query", NULL, "DcbQuery", "DcbQueryResult", 200},
    {"GET", "event-stores/{eventStoreId}/streams", streams_list, STORE, NEED_READ,
     "listStreams", "List streams", P_STREAMS, NULL, "StreamList", 200},
    {"POST", "event-stores/{eventStoreId}/subscribe", subscribe, STORE, NEED_ADMIN,
     "subscribe", "Subscribe a webhook (or record a WebSocket subscription)", NULL,
     "Subscribe", "Subscription", 201},
    {"GET", "event-stores/{eventStoreId}/subscriptions", sub_list, STORE, NEED_ADMIN,
     "listSubscriptions", "The store's subscriptions", NULL, NULL, "SubscriptionList", 200},
    {"GET", "event-stores/{eventStoreId}/subscriptions/{subscriptionId}", sub_get, STORE,
     NEED_ADMIN, "getSubscription", "A subscription", NULL, NULL, "Subscription", 200},
    {"DELETE", "event-stores/{eventStoreId}/subscriptions/{subscriptionId}", sub_delete, STORE,
     NEED_ADMIN, "deleteSubscription", "Delete a subscription", NULL, NULL, NULL, 204},
    {"GET", "event-stores/{eventStoreId}/events/ws", events_ws,
     STORE | ROUTE_KEY_IN_QUERY | ROUTE_STREAMING, NEED_READ, "eventsWebSocket",
     "Real-time events over a WebSocket", P_WS, NULL, NULL, 101},
    {"GET", "event-stores/{eventStoreId}/websocket-connections", ws_list, STORE, NEED_ADMIN,
     "listWebSocketConnections", "The store's open WebSocket connections", NULL, NULL,
     "ConnectionList", 200},
    {"DELETE", "event-stores/{eventStoreId}/websocket-connections/{clientId}", ws_close, STORE,
     NEED_ADMIN, "closeWebSocketConnection", "Close a WebSocket connection", NULL, NULL, NULL,
     204},
};
#undef STORE

static const char CORS_ALLOW[] = "Authorization, Content-Type, Idempotency-Key, X-Request-Id";
static const char CORS_EXPOSE[] = "X-Request-Id, X-Idempotency-Replayed, Location, "
                                  "X-RateLimit-Limit, X-RateLimit-Remaining, "
                                  "X-RateLimit-Reset, Retry-After";

const struct gate_mount deltabase_mount = {
    .name = "deltabase",
    .routes = ROUTES,
    .nroutes = sizeof ROUTES / sizeof ROUTES[0],
    .key_from = GATE_KEY_BEARER,
    .key_param = "apiKey",
    .db_from = GATE_DB_PATH,
    .db_param = "eventStoreId",
    .error = dlb_error,
    .rate_window_s = 60,
    .default_rate = 1000,
    .cors_allow_headers = CORS_ALLOW,
    .cors_expose_headers = CORS_EXPOSE,
    .idem_namespace = 1,
};
