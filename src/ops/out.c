/* Error and event encoders for the API layer. */
#include "ops/out.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <strings.h>

#include "ops/parse.h"
#include "gate/gate.h"
#include "engine/engine.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/timeutil.h"
#include "util/uuid.h"

void out_json(struct http_req *req, unsigned status, struct buf *b)
{
    http_respond(req, status, b, NULL);
}

void out_error(struct http_req *req, unsigned status, const char *code, const char *message,
               const char *field)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"error\":{\"code\":");
    buf_add_json_str(&b, code, strlen(code));
    buf_adds(&b, ",\"message\":");
    buf_add_json_str(&b, message, strlen(message));
    if (field) {
        buf_adds(&b, ",\"field\":");
        buf_add_json_str(&b, field, strlen(field));
    }
    buf_adds(&b, "}}");
    out_json(req, status, &b);
}

void out_engine_error(struct http_req *req, int err)
{
    switch (err) {
    case ERR_NOTFOUND:
        out_error(req, 404, "not_found", "not found", NULL);
        return;
    case ERR_GONE:
        out_error(req, 404, "database_not_found", "the database was deleted", NULL);
        return;
    case ERR_DELETED:
        out_error(req, 410, "stream_deleted", "the stream was deleted for good (tombstone)",
                  "stream");
        return;
    case ERR_NOSPACE:
        out_error(req, 507, "storage_full", "the database is out of space; nothing was written",
                  NULL);
        return;
    case ERR_CORRUPT:
        out_error(req, 500, "data_corrupt",
                  "stored data failed its integrity check; run annals verify", NULL);
        return;
    case ERR_SHUTDOWN:
        out_error(req, 503, "shutting_down", "the server is shutting down; nothing was written",
                  NULL);
        return;
    default:
        out_error(req, 500, "storage_error", "storage failed (see the server log); no write in this request was acknowledged",
                  NULL);
    }
}

void out_time_field(struct buf *b, const char *key, int64_t us, bool null_if_zero)
{
    buf_addc(b, '"');
    buf_adds(b, key);
    buf_adds(b, "\":");
    if (us == 0 && null_if_zero) {
        buf_adds(b, "null");
        return;
    }
    char ts[TIME_RFC3339_LEN];
    time_format(us, ts);
    buf_addc(b, '"');
    buf_adds(b, ts);
    buf_addc(b, '"');
}

void out_event(struct buf *b, const struct event_rec *ev)
{
    char id[UUID_TEXT_LEN + 1];
    uuid_format(ev->id, id);
    char hash[2 * HASH_SHA256_LEN + 1];
    hash_hex(ev->hash, HASH_SHA256_LEN, hash);
    buf_reserve(b, 256 + ev->stream.len + ev->type.len + ev->data.len + ev->metadata.len +
                       ev->tags.len + ev->subject.len);
    buf_adds(b, "{\"id\":\"");
    buf_adds(b, id);
    buf_adds(b, "\",\"stream\":");
    buf_add_json_str(b, ev->stream.ptr, ev->stream.len);
    buf_adds(b, ",\"type\":");
    buf_add_json_str(b, ev->type.ptr, ev->type.len);
    buf_adds(b, ",\"data\":");
    buf_add(b, ev->data.ptr, ev->data.len);
    buf_adds(b, ",\"metadata\":");
    buf_add(b, ev->metadata.ptr, ev->metadata.len);
    buf_adds(b, ",\"tags\":");
    buf_add(b, ev->tags.ptr, ev->tags.len);
    if (ev->subject.len) {
        buf_adds(b, ",\"subject\":");
        buf_add_json_str(b, ev->subject.ptr, ev->subject.len);
    }
    buf_addc(b, ',');
    out_time_field(b, "time", ev->time_us, false);
    buf_addc(b, ',');
    out_time_field(b, "recorded", ev->recorded_us, false);
    buf_adds(b, ",\"position\":");
    buf_add_u64(b, ev->position);
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, ev->version);
    buf_adds(b, ",\"hash\":\"");
    buf_adds(b, hash);
    buf_adds(b, "\"}");
}

void out_parse_error_as(const struct gate_mount *m, struct http_req *req,
                        const struct parse_error *pe)
{
    char offset[32] = "";
    if (pe->offset >= 0) {
        snprintf(offset, sizeof offset, "\"offset\":%ld", pe->offset);
    }
    struct gate_error e = {.kind = pe->status, .code = pe->code, .message = pe->message,
                           .field = pe->field[0] ? pe->field : NULL,
                           .details = offset[0] ? offset : NULL};
    gate_fail_req(m, req, &e);
}

void out_parse_error(struct http_req *req, const struct parse_error *pe)
{
    if (pe->offset < 0) {
        out_error(req, pe->status, pe->code, pe->message, pe->field[0] ? pe->field : NULL);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"error\":{\"code\":\"invalid_json\",\"message\":");
    buf_add_json_str(&b, pe->message, strlen(pe->message));
    buf_adds(&b, ",\"offset\":");
    buf_add_i64(&b, pe->offset);
    buf_adds(&b, "}}");
    out_json(req, pe->status, &b);
}

bool out_is_json(struct http_req *req)
{
    const char *ct = http_req_header(req, "Content-Type");
    static const char want[] = "application/json";
    size_t n = sizeof want - 1;
    return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

bool out_require_json(struct http_req *req)
{
    if (out_is_json(req)) {
        return true;
    }
    out_error(req, 415, "unsupported_media_type", "send the body as application/json",
              "Content-Type");
    return false;
}



void out_stream_meta(struct buf *b, const struct stream_meta *m)
{
    buf_adds(b, "{\"maxAge\":");
    m->max_age_us ? buf_add_u64(b, m->max_age_us / 1000000u) : buf_adds(b, "null");
    buf_adds(b, ",\"maxCount\":");
    m->max_count ? buf_add_u64(b, m->max_count) : buf_adds(b, "null");
    buf_adds(b, ",\"truncateBefore\":");
    m->truncate_before ? buf_add_u64(b, m->truncate_before) : buf_adds(b, "null");
    buf_addc(b, '}');
}

void *out_body_object(struct http_req *req)
{
    if (!out_require_json(req)) {
        return NULL;
    }
    struct parse_error pe;
    void *root;
    if (parse_json_object(http_req_body(req), &root, &pe) != 0) {
        out_parse_error(req, &pe);
        return NULL;
    }
    return root;
}

bool out_only_members(struct http_req *req, const void *obj, const char *const *allowed,
                      size_t n, const char *prefix)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++) {
            ok = strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            char f[96];
            snprintf(f, sizeof f, "%s%.70s", prefix, key);
            out_error(req, 400, "invalid_request", "unknown member", f);
            return false;
        }
    }
    return true;
}

/* ---- deleting a database (the dialects') ---- */

struct deleting {
    struct http_req *req;
    const struct gate_mount *mount;
};

static void on_deleted(void *arg, int err)
{
    struct deleting *d = arg;
    struct buf b;
    buf_init(&b);
    if (err) {
        struct gate_error e;
        gate_engine_error(err, &e);
        gate_fail_req(d->mount, d->req, &e);
    } else {
        http_respond(d->req, 204, &b, NULL);
    }
    free(d);
}

void out_delete_database(struct gate_call *c, struct slice name, const char *not_found,
                         const char *field)
{
    engine_db_release(c->db);
    c->db = NULL;
    struct deleting *d = xcalloc(1, sizeof(*d));
    *d = (struct deleting){c->req, c->mount};
    http_defer(c->req);
    if (engine_db_delete(c->gate->engine, name.ptr, name.len, on_deleted, d) != 0) {
        free(d);
        struct gate_error e = {.kind = GK_NOT_FOUND, .code = "database_not_found",
                               .message = not_found, .field = field};
        gate_fail(c, &e);
    }
}
