/* Databases (list, create, get with statistics and settings, update, delete) and their
 * compaction (status, start). A key for one database lists only that one. */
#include "api/native_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http/server.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/hash.h"

static void compaction_json(struct db *db, struct buf *b);

void api_db_list(struct gate_call *c)
{
    size_t n;
    char **names = engine_db_names(api_of(c)->engine, &n);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"databases\":[");
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (!api_key_sees_db(c, names[i])) {
            continue;
        }
        buf_adds(&b, shown++ ? ",{\"name\":" : "{\"name\":");
        buf_add_json_str(&b, names[i], strlen(names[i]));
        buf_addc(&b, '}');
    }
    buf_adds(&b, "]}");
    engine_names_free(names, n);
    out_json(c->req, 200, &b);
}

void api_db_create(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct parse_error pe;
    void *rootp;
    if (parse_json_object(http_req_body(c->req), &rootp, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    json_t *root = rootp;
    json_t *name = json_object_get(root, "name");
    const char *s = json_string_value(name);
    size_t len = s ? json_string_length(name) : 0;
    struct db_settings settings;
    if (parse_db_settings(root, false, &settings, &pe) != 0) {
        out_parse_error(c->req, &pe);
        json_decref(root);
        return;
    }
    int rc = s && engine_db_name_ok(s, len) ? engine_db_create(api_of(c)->engine, s, len, &settings)
                                             : ERR_INVALID;
    if (rc == ERR_INVALID) {
        out_error(c->req, 400, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
                  "name");
    } else if (rc == ERR_EXISTS) {
        out_error(c->req, 409, "database_exists", "a database with this name exists", "name");
    } else if (rc == ERR_TOOBIG) {
        out_error(c->req, 507, "too_many_databases", "the database limit is reached", NULL);
    } else if (rc) {
        out_engine_error(c->req, rc);
    } else {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"name\":");
        buf_add_json_str(&b, s, len);
        buf_addc(&b, '}');
        char loc[128];
        snprintf(loc, sizeof loc, "/v1/databases/%s", s);
        http_add_header(c->req, "Location", loc);
        out_json(c->req, 201, &b);
    }
    json_decref(root);
}

void api_db_get(struct gate_call *c)
{
    struct db_info in;
    int rc = engine_db_info(c->db, &in);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    char hash[2 * HASH_SHA256_LEN + 1];
    hash_hex(in.head_hash, HASH_SHA256_LEN, hash);
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"name\":");
    buf_add_json_str(&b, engine_db_name(c->db), strlen(engine_db_name(c->db)));
    buf_printf(&b, ",\"streams\":%llu,\"events\":%llu,\"head\":%llu,\"headHash\":\"%s\","
               "\"bytesOnDisk\":%llu,\"bytesUsed\":%llu,",
               (unsigned long long)in.streams, (unsigned long long)in.events,
               (unsigned long long)in.head, hash, (unsigned long long)in.file_bytes,
               (unsigned long long)in.used_bytes);
    out_time_field(&b, "created", in.created_us, false);
    buf_addc(&b, ',');
    out_time_field(&b, "oldestEvent", in.oldest_us, true);
    buf_addc(&b, ',');
    out_time_field(&b, "newestEvent", in.newest_us, true);
    struct db_settings set;
    engine_db_settings(c->db, &set);
    buf_adds(&b, ",\"description\":");
    buf_add_json_str(&b, set.description, strlen(set.description));
    buf_adds(&b, ",\"settings\":{\"retentionPeriodDays\":");
    set.retention_days ? buf_add_u64(&b, set.retention_days) : buf_adds(&b, "null");
    buf_adds(&b, ",\"maxStreamSizeBytes\":");
    set.max_stream_bytes ? buf_add_u64(&b, set.max_stream_bytes) : buf_adds(&b, "null");
    buf_adds(&b, ",\"rateLimit\":");
    set.rate_limit ? buf_add_u64(&b, set.rate_limit) : buf_adds(&b, "null");
    buf_adds(&b, ",\"idempotencyTtlSeconds\":");
    set.idem_ttl_s ? buf_add_u64(&b, set.idem_ttl_s) : buf_adds(&b, "null");
    buf_printf(&b, "},\"idempotencyKeys\":%llu", (unsigned long long)in.idem_keys);
    buf_printf(&b, ",\"writer\":{\"commits\":%llu,\"appends\":%llu,\"queueDepth\":%llu,"
               "\"commitSeconds\":%.6f,\"syncs\":%llu,\"syncSeconds\":%.6f},"
               "\"indexer\":{\"indexed\":%llu,\"commits\":%llu,\"seconds\":%.6f},",
               (unsigned long long)in.commits, (unsigned long long)in.appends,
               (unsigned long long)in.queue_depth, (double)in.commit_ns / 1e9,
               (unsigned long long)in.syncs, (double)in.sync_ns / 1e9,
               (unsigned long long)in.indexed, (unsigned long long)in.index_commits,
               (double)in.index_ns / 1e9);
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

/* The "compaction" object of a database (docs/api.md, "Compaction"). */
static void compaction_json(struct db *db, struct buf *b)
{
    struct compact_status cs;
    engine_compact_status(db, &cs);
    buf_printf(b, "\"compaction\":{\"running\":%s,\"requested\":%s,\"generation\":%llu,"
               "\"runs\":%llu,\"checks\":%llu,\"reclaimedBytes\":%llu,"
               "\"redactedEvents\":%llu,\"last\":",
               cs.running ? "true" : "false", cs.asked ? "true" : "false",
               (unsigned long long)cs.generation, (unsigned long long)cs.runs,
               (unsigned long long)cs.checks, (unsigned long long)cs.reclaimed_bytes,
               (unsigned long long)cs.redacted_events);
    if (!cs.last_us) {
        buf_adds(b, "null}");
        return;
    }
    buf_addc(b, '{');
    out_time_field(b, "at", cs.last_us, false);
    buf_printf(b, ",\"outcome\":\"%s\",\"rewrote\":%s,\"redactedEvents\":%llu,"
               "\"reclaimedBytes\":%llu,\"logBytesBefore\":%llu,\"logBytesAfter\":%llu}}",
               cs.last_err == 0 ? "ok" : cs.last_err == ERR_SHUTDOWN ? "abandoned" : "failed",
               cs.last_rewrote ? "true" : "false", (unsigned long long)cs.last_redacted,
               (unsigned long long)cs.last_reclaimed, (unsigned long long)cs.last_log_before,
               (unsigned long long)cs.last_log_after);
}

/* Answers {"compaction": ...} of c->db with status. */
static void compaction_answer(struct gate_call *c, unsigned status)
{
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '{');
    compaction_json(c->db, &b);
    buf_addc(&b, '}');
    out_json(c->req, status, &b);
}

void api_compact_get(struct gate_call *c)
{
    compaction_answer(c, 200);
}

void api_compact_start(struct gate_call *c)
{
    if (http_req_body(c->req).len) { /* no options yet: nothing, or an empty object */
        json_t *root = out_body_object(c->req);
        bool ok = root && out_only_members(c->req, root, NULL, 0, "");
        json_decref(root);
        if (!ok) {
            return;
        }
    }
    engine_compact_request(c->db);
    compaction_answer(c, 202);
}

/* PATCH /v1/databases/{db}: changes the description and settings given (null clears one);
 * answers the database as GET does. */
void api_db_update(struct gate_call *c)
{
    json_t *root = out_body_object(c->req);
    if (!root) {
        return;
    }
    struct db_settings settings;
    engine_db_settings(c->db, &settings);
    struct parse_error pe;
    int rc = parse_db_settings(root, true, &settings, &pe);
    json_decref(root);
    if (rc) {
        out_parse_error(c->req, &pe);
        return;
    }
    rc = engine_db_set_settings(c->db, &settings);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    api_db_get(c);
}

/* A deleted database is gone: answer the DELETE (any thread). */
static void on_deleted(void *arg, int err)
{
    struct http_req *req = arg;
    if (err) {
        out_engine_error(req, err);
        return;
    }
    api_respond_no_content(req);
}

void api_db_delete(struct gate_call *c)
{
    struct slice name = gate_param(c, "db");
    if (!engine_db_name_ok(name.ptr, name.len)) {
        out_error(c->req, 400, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
                  "database");
        return;
    }
    http_defer(c->req);
    if (engine_db_delete(api_of(c)->engine, name.ptr, name.len, on_deleted, c->req) != 0) {
        out_error(c->req, 404, "database_not_found", "no such database", "database");
    }
}
