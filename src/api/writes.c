/* Writes: appends to one stream or to several (with conditions), stream deletion (soft or
 * hard) and a stream's lifecycle settings (read and written). Each write goes to the database's
 * writer through ops/append.c, which takes the call's database reference and answers when the
 * commit is durable. */
#include "api/native_int.h"

#include <string.h>

#include "engine/engine.h"
#include "http/server.h"
#include "ops/append.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "util/errors.h"

/* ---- appends ---- */

void api_stream_append(struct gate_call *c)
{
    struct slice name;
    if (!api_user_stream_name(c, &name) || !out_require_json(c->req)) {
        return;
    }
    const char *rs = http_req_query(c->req, "returnState");
    if (rs && strcmp(rs, "true") != 0 && strcmp(rs, "false") != 0) {
        out_error(c->req, 400, "invalid_parameter", "returnState is true or false",
                  "returnState");
        return;
    }
    struct append_style style = {.return_state = rs && !strcmp(rs, "true") ? api_of(c)->logic
                                                                          : NULL};
    struct db *db = c->db;
    c->db = NULL; /* the append holds the reference now */
    append_stream(c->req, db, name, http_req_body(c->req), &api_of(c)->limits, &style);
}

void api_multi_append(struct gate_call *c)
{
    if (!out_require_json(c->req)) {
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_multi(c->req, db, http_req_body(c->req), &api_of(c)->limits, NULL);
}

/* ---- stream lifecycle ---- */

void api_stream_delete(struct gate_call *c)
{
    struct slice name;
    if (!api_user_stream_name(c, &name)) {
        return;
    }
    const char *hard = http_req_query(c->req, "hard");
    if (hard && strcmp(hard, "true") != 0 && strcmp(hard, "false") != 0) {
        out_error(c->req, 400, "invalid_parameter", "hard is true or false", "hard");
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_meta_op(c->req, db, name,
                   hard && strcmp(hard, "true") == 0 ? META_HARD_DELETE : META_SOFT_DELETE, NULL);
}

void api_meta_read(struct gate_call *c)
{
    struct slice name;
    if (!api_user_stream_name(c, &name)) {
        return;
    }
    struct stream_meta m;
    engine_stream_settings(c->db, name, &m);
    if (m.tombstone) {
        out_engine_error(c->req, ERR_DELETED);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"stream\":");
    buf_add_json_str(&b, name.ptr, name.len);
    buf_adds(&b, ",\"metadata\":");
    out_stream_meta(&b, &m);
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

void api_meta_write(struct gate_call *c)
{
    struct slice name;
    if (!api_user_stream_name(c, &name) || !out_require_json(c->req)) {
        return;
    }
    struct stream_meta m;
    struct parse_error pe;
    if (parse_stream_meta(http_req_body(c->req), &m, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    struct db *db = c->db;
    c->db = NULL;
    append_meta_op(c->req, db, name, META_SET, &m);
}
