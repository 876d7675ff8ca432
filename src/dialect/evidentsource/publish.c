/* Publishing EvidentSource state views and state changes (docs/dialects/evidentsource.md):
 * multipart/form-data with a `metadata` JSON part and a code part (`wasm`: a WebAssembly
 * module's bytes; `source`: code whose filename extension names its language), or the newer
 * generation's JSON registration. Either becomes a component of the logic layer (a view or a
 * command handler) with eventFormat "cloudevents" and the metadata as its meta, deployed on
 * a worker as the next version of its name; the answer is 201 with a Location naming that
 * version. Everything but the deploy (which loads the code) is checked here, on the I/O
 * thread. */
#include "dialect/evidentsource/views_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/evidentsource/format.h"
#include "engine/canon.h"
#include "http/multipart.h"
#include "json/jsonx.h"
#include "ops/out.h"
#include "util/errors.h"

enum {
    ES_PUBLISH_PARTS = 8,           /* parts of a publishing body */
    ES_COMMAND_TYPES_MAX = 64,      /* command types a state change declares */
};

/* What one publication gives. */
struct publish_in {
    bool change;             /* a state change (else a state view) */
    struct slice metadata;   /* its metadata: a JSON object (valid JSON text) */
    const char *name;        /* the name given beside the metadata, or NULL */
    enum logic_lang lang;
    struct slice code;       /* the source text, or for wasm its base64 (or its bytes) */
    bool raw_wasm;           /* code holds a module's bytes, to be encoded */
    const char *code_field;  /* the input that holds the code (errors name it) */
};

/* Why metadata was refused. */
struct meta_error {
    char field[64];
    char message[192];
};

static bool refuse(struct meta_error *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof e->field, "metadata.%s", field);
    snprintf(e->message, sizeof e->message, "%s", msg);
    return false;
}

/* An optional string member (required: present); *out its span (ptr NULL when absent). */
static bool string_member(struct slice m, const char *name, bool required, struct slice *out,
                          struct meta_error *e)
{
    out->ptr = NULL;
    out->len = 0;
    struct slice v;
    if (!jsonx_member(m, name, &v) || jsonx_kind(v) == 'n') {
        return !required || refuse(e, name, "this member is required: a string");
    }
    if (jsonx_kind(v) != '"') {
        return refuse(e, name, "this member is a string");
    }
    *out = v;
    return true;
}

/* The component name: the metadata's name member and/or the one given beside it. */
static bool take_name(struct slice m, const struct publish_in *in, const char *member,
                      char out[COMP_NAME_BYTES + 1], struct meta_error *e)
{
    struct slice v;
    struct buf s;
    if (!string_member(m, member, !in->name, &v, e)) {
        return false;
    }
    buf_init(&s);
    if (v.ptr) {
        jsonx_string(v, &s);
    } else {
        buf_adds(&s, in->name);
    }
    bool ok = s.len && comp_name_ok(s.ptr, s.len) &&
              (!in->name || !v.ptr || (strlen(in->name) == s.len &&
                                       !memcmp(in->name, s.ptr, s.len)));
    if (ok) {
        snprintf(out, COMP_NAME_BYTES + 1, "%.*s", (int)s.len, s.ptr);
    }
    buf_fini(&s);
    return ok || refuse(e, member, in->name && v.ptr
                        ? "the name in the metadata differs from the one given"
                        : "a name is 1 to 64 letters, digits, '_', '-' or '.', from a letter");
}

/* A state view's metadata: its name, and the native filter of its event_selector. */
static bool check_view_meta(struct slice m, const struct publish_in *in,
                            char name[COMP_NAME_BYTES + 1], struct buf *filter,
                            struct meta_error *e)
{
    struct slice ct, qt, v;
    struct buf t;
    if (!take_name(m, in, "state_view_name", name, e) ||
        !string_member(m, "content_type", true, &ct, e) ||
        !string_member(m, "query_temporality", true, &qt, e)) {
        return false;
    }
    buf_init(&t);
    bool type_ok = jsonx_string(ct, &t) == 0 && es_media_type_ok(t.ptr ? t.ptr : "", t.len);
    buf_fini(&t);
    if (!type_ok) {
        return refuse(e, "content_type", "content_type is a media type (type/subtype and "
                      "parameters, at most 127 bytes, no control characters)");
    }
    if (strncmp(qt.ptr, "\"revision\"", qt.len) && strncmp(qt.ptr, "\"effective_timestamp\"",
                                                           qt.len)) {
        return refuse(e, "query_temporality", "query_temporality is revision or "
                      "effective_timestamp");
    }
    const char *strs[] = {"description", "content_schema", "source_code_uri", "priority"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!string_member(m, strs[i], false, &v, e)) {
            return false;
        }
    }
    if (jsonx_member(m, "parameters", &v) && jsonx_kind(v) != '[' && jsonx_kind(v) != '{' &&
        jsonx_kind(v) != 'n') {
        return refuse(e, "parameters", "parameters is an array (or an object)");
    }
    if (!jsonx_member(m, "event_selector", &v)) {
        return refuse(e, "event_selector", "this member is required: a selector");
    }
    struct parse_error pe;
    buf_init(&t);
    buf_adds(filter, "{\"selector\":");
    bool ok = es_selector(v, "metadata.event_selector", &t, &pe) == 0;
    if (ok) {
        buf_add(filter, t.ptr, t.len);
    }
    buf_addc(filter, '}');
    buf_fini(&t);
    return ok || refuse(e, "event_selector", pe.message);
}

/* A state change's metadata: its name; state_view_name and command_types when given. */
static bool check_change_meta(struct slice m, const struct publish_in *in,
                              char name[COMP_NAME_BYTES + 1], struct meta_error *e)
{
    struct slice v, it;
    if (!take_name(m, in, "state_change_name", name, e)) {
        return false;
    }
    const char *strs[] = {"description", "source_code_uri", "state_view_name"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!string_member(m, strs[i], false, &v, e)) {
            return false;
        }
    }
    if (!jsonx_member(m, "command_types", &v) || jsonx_kind(v) == 'n') {
        return true;
    }
    size_t pos = 0, n = 0;
    struct buf s;
    buf_init(&s);
    bool ok = jsonx_kind(v) == '[';
    while (ok && jsonx_next_item(v, &pos, &it)) {
        buf_reset(&s);
        ok = ++n <= ES_COMMAND_TYPES_MAX && jsonx_kind(it) == '"' && jsonx_string(it, &s) == 0 &&
             engine_name_ok(s.ptr, s.len, LIMIT_TYPE_BYTES);
    }
    buf_fini(&s);
    return ok || refuse(e, "command_types", "command_types is an array of at most 64 command "
                        "types (strings of 1 to 256 bytes)");
}

static void base64(struct slice bytes, struct buf *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = (const unsigned char *)bytes.ptr;
    buf_reserve(out, (bytes.len + 2) / 3 * 4);
    for (size_t i = 0; i < bytes.len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        v |= i + 1 < bytes.len ? (uint32_t)p[i + 1] << 8 : 0;
        v |= i + 2 < bytes.len ? p[i + 2] : 0;
        char q[4] = {abc[v >> 18 & 63], abc[v >> 12 & 63],
                     i + 1 < bytes.len ? abc[v >> 6 & 63] : '=',
                     i + 2 < bytes.len ? abc[v & 63] : '='};
        buf_add(out, q, 4);
    }
}

/* The deploy body of the component. */
static void deploy_body(const struct publish_in *in, struct slice filter, struct buf *out)
{
    buf_adds(out, in->change ? "{\"kind\":\"command\",\"language\":\""
                             : "{\"kind\":\"view\",\"language\":\"");
    buf_adds(out, logic_lang_name(in->lang));
    buf_adds(out, "\",\"eventFormat\":\"" ES_FORMAT_NAME "\",\"source\":");
    if (in->raw_wasm) {
        buf_addc(out, '"');
        base64(in->code, out);
        buf_addc(out, '"');
    } else {
        buf_add_json_str(out, in->code.ptr, in->code.len);
    }
    if (filter.len) {
        buf_adds(out, ",\"filter\":");
        buf_add(out, filter.ptr, filter.len);
    }
    buf_adds(out, ",\"meta\":");
    jsonx_minify(in->metadata, out);
    buf_addc(out, '}');
}

/* Answers a definition comp_parse refused, naming the publication's input. */
static void fail_def(struct gate_call *c, const struct publish_in *in, int rc,
                     const struct comp_error *ce)
{
    if (!strcmp(ce->field, "meta")) {
        es_fail(c, GK_INVALID, "invalid_metadata", "the metadata is at most 4096 bytes of JSON",
                "metadata");
    } else if (rc == ERR_TOOBIG) {
        es_fail(c, GK_TOO_LARGE, "component_too_large", "the code is at most 1,000,000 bytes "
                "(WebAssembly: its base64)", in->code_field);
    } else {
        es_fail(c, GK_INVALID, "invalid_code", ce->field[0] ? ce->message
                : "the code is not UTF-8 text", in->code_field);
    }
}

/* A component of that name that is not one of the dialect's of this kind: 409. */
static bool name_free(struct gate_call *c, struct db *db, const struct publish_in *in,
                      const char *name)
{
    struct comp_set *set;
    int rc = logic_set(es_ctx_of(c)->logic, db, &set);
    if (rc) {
        gate_fail_engine(c, rc);
        return false;
    }
    const struct comp_def *d = comp_set_find(set, name);
    bool ok = !d || es_component_is(d, in->change);
    comp_set_unref(set);
    if (!ok) {
        es_fail(c, GK_CONFLICT, "component_exists", in->change
                ? "another component (a state view, or a native one) has this name"
                : "another component (a state change, or a native one) has this name",
                in->change ? "metadata.state_change_name" : "metadata.state_view_name");
    }
    return ok;
}

/* Checks the publication and makes j->def; false after answering. */
static bool prepare(struct gate_call *c, struct db *db, const struct publish_in *in,
                    struct es_job *j)
{
    struct meta_error me;
    struct buf filter, body;
    buf_init(&filter);
    bool ok = in->change ? check_change_meta(in->metadata, in, j->name, &me)
                         : check_view_meta(in->metadata, in, j->name, &filter, &me);
    if (!ok) {
        buf_fini(&filter);
        es_fail(c, GK_INVALID, "invalid_metadata", me.message, me.field);
        return false;
    }
    buf_init(&body);
    deploy_body(in, (struct slice){filter.ptr, filter.len}, &body);
    buf_fini(&filter);
    struct comp_error ce;
    int rc = comp_parse(j->name, (struct slice){body.ptr, body.len}, &j->def, &ce);
    buf_fini(&body);
    if (rc) {
        fail_def(c, in, rc, &ce);
        return false;
    }
    j->is_change = in->change;
    j->code_field = in->code_field;
    return name_free(c, db, in, j->name);
}

/* ---- the deploy (worker) ---- */

static void answer_published(struct es_job *j)
{
    char loc[ES_PREFIX_BYTES + LIMIT_DB_NAME_BYTES + COMP_NAME_BYTES + 80];
    const char *db = engine_db_name(j->db);
    snprintf(loc, sizeof loc, "%s/databases/%s/%s/%s?version=%llu", j->prefix, db,
             j->is_change ? "state-changes" : "state-views", j->def.name,
             (unsigned long long)j->def.version);
    http_add_header(j->req, "Location", loc);
    struct buf b;
    buf_init(&b);
    if (j->v1) {
        buf_adds(&b, j->is_change ? "{\"kind\":\"state_change\",\"name\":"
                                  : "{\"kind\":\"state_view\",\"name\":");
    } else {
        buf_adds(&b, "{\"name\":");
    }
    buf_add_json_str(&b, j->def.name, strlen(j->def.name));
    buf_printf(&b, ",\"version\":%llu}", (unsigned long long)j->def.version);
    out_json(j->req, 201, &b);
}

/* The code for code that does not load. */
static const char *load_code(const struct logic_error *le)
{
    switch (le->kind) {
    case LOGIC_E_SYNTAX: return "syntax_error";
    case LOGIC_E_MISSING: return "missing_entry_point";
    default: return "invalid_code";
    }
}

static void run_publish(void *arg, bool cancelled)
{
    struct es_job *j = arg;
    struct logic_error le = {0};
    bool change = j->def.kind == COMP_COMMAND;
    /* it replaces a state view (change) of this dialect only: checked again under the deploy
       lock, as another publication or a native deploy may have come since name_free */
    struct logic_guard guard = {j->def.kind, ES_FORMAT_NAME};
    int rc = cancelled ? ERR_SHUTDOWN : logic_deploy_as(j->lg, j->db, &j->def, &guard, &le);
    bool filter = !strncmp(le.message, "filter:", 7);
    if (rc && le.kind == LOGIC_E_WORKER) {
        es_job_fail_code(j, GK_UNAVAILABLE, "runtime_unavailable", &le, NULL);
    } else if (rc == ERR_INVALID && le.kind) {
        es_job_fail_code(j, GK_INVALID, filter ? "invalid_metadata" : load_code(&le), &le,
                         filter ? "metadata.event_selector" : j->code_field);
    } else if (rc == ERR_TOOBIG && le.kind) {
        es_job_fail(j, GK_UNPROCESSABLE, "too_many_components", le.message, NULL, NULL);
    } else if (rc == ERR_CONFLICT) {
        es_job_fail(j, GK_CONFLICT, "deploy_conflict", "other publications to this database "
                    "kept coming first; try again", NULL, NULL);
    } else if (rc == ERR_EXISTS) {
        es_job_fail(j, GK_CONFLICT, "component_exists", change
                    ? "another component (a state view, or a native one) has this name"
                    : "another component (a state change, or a native one) has this name",
                    change ? "metadata.state_change_name" : "metadata.state_view_name", NULL);
    } else if (rc == ERR_TOOBIG) {
        es_job_fail(j, GK_TOO_LARGE, "component_too_large", "the code is larger than one "
                    "event of this database may be", j->code_field, NULL);
    } else if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(j->mount, j->req, &e);
    } else {
        answer_published(j);
    }
    es_job_free(j);
}

/* Checks in, then deploys it on a worker. nsegs: the route's segments (for the prefix). */
static void publish(struct gate_call *c, const struct publish_in *in, bool v1, size_t nsegs)
{
    struct es_job *j = es_job_new(c);
    j->v1 = v1;
    es_path_prefix(c, nsegs, j->prefix);
    if (!prepare(c, c->db, in, j)) {
        es_job_free(j);
        return;
    }
    struct db *db = c->db;
    c->db = NULL; /* the job's reference now */
    es_job_submit(c, j, db, run_publish);
}

/* ---- multipart (the seed generation) ---- */

/* The language a source part's filename names; 0 when none. */
static enum logic_lang lang_of_filename(const struct multipart_part *p)
{
    static const struct {
        const char *ext;
        enum logic_lang lang;
    } EXT[] = {{".lua", LOGIC_LANG_LUA}, {".js", LOGIC_LANG_JAVASCRIPT},
               {".mjs", LOGIC_LANG_JAVASCRIPT}, {".ts", LOGIC_LANG_TYPESCRIPT},
               {".wasm", LOGIC_LANG_WASM}};
    const char *dot = p->has_filename ? strrchr(p->filename, '.') : NULL;
    for (size_t i = 0; dot && i < sizeof EXT / sizeof EXT[0]; i++) {
        if (!strcasecmp(dot, EXT[i].ext)) {
            return EXT[i].lang;
        }
    }
    return 0;
}

/* The code part into in; false after answering. */
static bool code_part(struct gate_call *c, const struct multipart_part *parts, size_t n,
                      struct publish_in *in)
{
    const struct multipart_part *wasm = multipart_find(parts, n, "wasm");
    const struct multipart_part *src = multipart_find(parts, n, "source");
    if (!wasm == !src) {
        es_fail(c, GK_INVALID, "invalid_code", "give the code as one part: wasm (a "
                "WebAssembly module) or source (with a filename ending in .lua, .js, .ts)",
                wasm ? "source" : "wasm");
        return false;
    }
    in->code_field = wasm ? "wasm" : "source";
    in->lang = wasm ? LOGIC_LANG_WASM : lang_of_filename(src);
    if (!in->lang) {
        es_fail(c, GK_INVALID, "invalid_code", "the source part's filename names its language: "
                ".lua, .js, .mjs, .ts (or .wasm)", "source");
        return false;
    }
    in->code = wasm ? wasm->body : src->body;
    in->raw_wasm = in->lang == LOGIC_LANG_WASM;
    if (!in->code.len) {
        es_fail(c, GK_INVALID, "invalid_code", "the code part is empty", in->code_field);
        return false;
    }
    if (!in->raw_wasm && !utf8_text_ok(in->code.ptr, in->code.len)) {
        es_fail(c, GK_INVALID, "invalid_code", "the source is not UTF-8 text (or holds a NUL "
                "byte)", in->code_field);
        return false;
    }
    return true;
}

/* The metadata part into in (a JSON object); false after answering. */
static bool metadata_part(struct gate_call *c, const struct multipart_part *parts, size_t n,
                          struct publish_in *in)
{
    const struct multipart_part *m = multipart_find(parts, n, "metadata");
    struct parse_error pe;
    void *root = NULL;
    if (!m) {
        es_fail(c, GK_INVALID, "invalid_metadata", "the metadata part (JSON) is missing",
                "metadata");
        return false;
    }
    if (parse_json_object(m->body, &root, &pe) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "the metadata part is not a JSON object: %s", pe.message);
        es_fail(c, GK_INVALID, "invalid_metadata", msg, "metadata");
        return false;
    }
    json_decref((json_t *)root);
    in->metadata = m->body;
    return true;
}

static void publish_multipart(struct gate_call *c, bool change)
{
    char boundary[MULTIPART_BOUNDARY_BYTES + 1];
    struct multipart_error me;
    if (multipart_boundary(http_req_header(c->req, "Content-Type"), boundary, &me) != 0) {
        es_fail(c, GK_MEDIA_TYPE, "unsupported_media_type", me.message, "Content-Type");
        return;
    }
    struct multipart_part parts[ES_PUBLISH_PARTS];
    size_t n;
    struct multipart_limits lim = {.max_parts = ES_PUBLISH_PARTS};
    int rc = multipart_parse(http_req_body(c->req), boundary, &lim, parts, ES_PUBLISH_PARTS, &n,
                             &me);
    if (rc) {
        es_fail(c, GK_INVALID, "invalid_multipart", me.message, NULL);
        return;
    }
    struct publish_in in = {.change = change};
    if (metadata_part(c, parts, n, &in) && code_part(c, parts, n, &in)) {
        publish(c, &in, false, 5); /* api/v1/db/{database}/state-views */
    }
}

void es_view_publish(struct gate_call *c)
{
    publish_multipart(c, false);
}

void es_change_publish(struct gate_call *c)
{
    publish_multipart(c, true);
}

/* ---- JSON (the newer generation) ---- */

/* kind: state_view or state_change (camelCase too); -1 when neither. */
static int kind_of(struct slice v)
{
    static const char *const VIEW[] = {"\"state_view\"", "\"stateView\"", "\"view\""};
    static const char *const CHANGE[] = {"\"state_change\"", "\"stateChange\"", "\"change\""};
    for (size_t i = 0; i < 3; i++) {
        if (v.len == strlen(VIEW[i]) && !memcmp(v.ptr, VIEW[i], v.len)) {
            return 0;
        }
        if (v.len == strlen(CHANGE[i]) && !memcmp(v.ptr, CHANGE[i], v.len)) {
            return 1;
        }
    }
    return -1;
}

/* {"kind","name"?,"metadata","language"?,"source"?,"wasm"?} into in (name into name); false
 * after answering. */
static bool v1_body(struct gate_call *c, struct slice body, struct publish_in *in,
                    struct buf *name)
{
    static const char *const M[] = {"kind", "name", "metadata", "language", "source", "wasm"};
    struct slice m[6];
    struct buf bad, lang;
    buf_init(&bad);
    bool dup = false;
    int rc = jsonx_members(body, M, 6, m, &bad, &dup);
    buf_fini(&bad);
    int kind = m[0].ptr ? kind_of(m[0]) : -1;
    const char *field = rc ? NULL : kind < 0 ? "kind" : !m[2].ptr || jsonx_kind(m[2]) != '{'
                                    ? "metadata" : NULL;
    if (!field && m[1].ptr && (jsonx_kind(m[1]) != '"' || jsonx_string(m[1], name) != 0)) {
        field = "name";
    }
    buf_init(&lang);
    if (!field && m[3].ptr && (jsonx_kind(m[3]) != '"' || jsonx_string(m[3], &lang) != 0)) {
        field = "language";
    }
    in->lang = m[5].ptr ? LOGIC_LANG_WASM : logic_lang_parse(lang.ptr ? lang.ptr : "");
    buf_fini(&lang);
    struct slice code = m[5].ptr ? m[5] : m[4];
    if (!field && (!in->lang || !!m[4].ptr == !!m[5].ptr || jsonx_kind(code) != '"')) {
        field = m[5].ptr ? "wasm" : "source";
    }
    if (rc || field) {
        es_fail(c, GK_INVALID, "invalid_request", "a component is {kind: state_view | "
                "state_change, name, metadata: {...}, language: lua | javascript | typescript "
                "| wasm, source} (or wasm: base64 instead of language and source)", field);
        return false;
    }
    in->change = kind == 1;
    in->metadata = m[2];
    in->code = code; /* still a JSON string */
    in->code_field = m[5].ptr ? "wasm" : "source";
    in->name = name->len ? name->ptr : NULL;
    return true;
}

void es_v1_component_add(struct gate_call *c)
{
    struct parse_error pe;
    void *root = NULL;
    if (!es_json_body(c)) {
        return;
    }
    struct slice body = http_req_body(c->req);
    if (parse_json_object(body, &root, &pe) != 0) {
        es_fail_parse(c, &pe);
        return;
    }
    json_decref((json_t *)root);
    struct publish_in in = {0};
    struct buf name, code;
    buf_init(&name);
    buf_init(&code);
    if (v1_body(c, body, &in, &name)) {
        jsonx_string(in.code, &code); /* the source text, or the module's base64 */
        buf_addc(&code, '\0');
        code.len--;
        in.code = (struct slice){code.ptr, code.len};
        if (!code.len) {
            es_fail(c, GK_INVALID, "invalid_code", "the code is empty", in.code_field);
        } else {
            publish(c, &in, true, 4); /* v1/databases/{database}/components */
        }
    }
    buf_fini(&name);
    buf_fini(&code);
}
