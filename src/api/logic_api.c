/* User code over the native API (docs/api.md, "Components and state"): deploy, list, read and
 * remove components; a stream's state from its reducer. Deploys, removals and state reads run
 * user code or wait for commits, so they run on the engine's worker pool; the I/O thread only
 * parses and hands over. */
#include "api/native_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/canon.h"
#include "http/parse.h"
#include "json/jsonx.h"
#include "logic/command.h"
#include "logic/logic.h"
#include "logic/proj_hooks.h"
#include "logic/projection.h"
#include "ops/out.h"
#include "ops/parse.h"
#include "ops/projfeed.h"
#include "ops/qparse.h"
#include "util/errors.h"
#include "util/limits.h"

/* ---- answers ---- */

static void add_component(struct buf *b, const struct comp_def *d, bool with_source)
{
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, d->name, strlen(d->name));
    buf_adds(b, ",\"kind\":\"");
    buf_adds(b, comp_kind_name(d->kind));
    buf_adds(b, "\",\"language\":\"");
    buf_adds(b, logic_lang_name(d->lang));
    buf_adds(b, "\",\"version\":");
    buf_add_u64(b, d->version);
    if (d->category) {
        buf_adds(b, ",\"category\":");
        buf_add_json_str(b, d->category, strlen(d->category));
    }
    if (d->kind == COMP_PROJECTION || d->kind == COMP_VIEW) {
        buf_adds(b, ",\"filter\":");
        buf_adds(b, d->filter ? d->filter : "null");
    }
    if (d->webhook) {
        buf_adds(b, ",\"webhook\":");
        buf_adds(b, d->webhook);
    }
    if (d->event_format) {
        buf_adds(b, ",\"eventFormat\":");
        buf_add_json_str(b, d->event_format, strlen(d->event_format));
    }
    if (d->meta) {
        buf_adds(b, ",\"meta\":");
        buf_adds(b, d->meta);
    }
    buf_addc(b, ',');
    out_time_field(b, "deployedAt", d->deployed_us, false);
    buf_adds(b, ",\"status\":\"active\"");
    if (with_source) {
        buf_adds(b, ",\"source\":");
        buf_add_json_str(b, d->source, d->source_len);
    }
    buf_addc(b, '}');
}

/* Answers a logic error of user code: the kind's code, the message, line and column. */
static void fail_logic(struct http_req *req, unsigned status, const char *code,
                       const struct logic_error *le, uint64_t position)
{
    char details[160];
    int n = snprintf(details, sizeof details, "\"kind\":\"%s\"", logic_err_name(le->kind));
    if (le->line > 0) {
        n += snprintf(details + n, sizeof details - (size_t)n, ",\"line\":%d", le->line);
    }
    if (le->column > 0) {
        n += snprintf(details + n, sizeof details - (size_t)n, ",\"column\":%d", le->column);
    }
    if (position > 0) {
        snprintf(details + n, sizeof details - (size_t)n, ",\"position\":%llu",
                 (unsigned long long)position);
    }
    struct gate_error e = {.kind = status, .code = code, .message = le->message,
                           .details = details};
    gate_fail_req(NULL, req, &e);
}

/* The code for a deploy whose source did not load. */
static const char *deploy_code(const struct logic_error *le)
{
    switch (le->kind) {
    case LOGIC_E_SYNTAX: return "syntax_error";
    case LOGIC_E_MISSING: return "missing_entry_point";
    default: return "invalid_component";
    }
}

/* ---- jobs on the worker pool ---- */

struct logic_job {
    struct http_req *req;     /* deferred; the job answers it */
    struct logic *lg;
    struct db *db;            /* a reference, the job's */
    struct comp_def def;      /* deploys */
    char name[COMP_NAME_BYTES + 1];
    char *stream;             /* state reads: owned */
    char *params;             /* view reads: the parameters' JSON object, owned */
    size_t stream_len;
    bool has_at;
    struct as_of at;
    uint32_t grace_s;         /* secret rotations */
    bool isolated;            /* ... of a projection's own secret (else the shared one) */
};

static void job_free(struct logic_job *j)
{
    engine_db_release(j->db);
    comp_def_fini(&j->def);
    free(j->stream);
    free(j->params);
    free(j);
}

/* Hands j to the engine's workers (answering 503 when it cannot); takes j. */
static void submit(struct gate_call *c, struct logic_job *j, workq_fn *fn)
{
    j->req = c->req;
    j->lg = api_of(c)->logic;
    j->db = c->db;
    c->db = NULL; /* the job's reference now */
    http_defer(c->req);
    int rc = engine_submit(api_of(c)->engine, fn, j);
    if (rc == ERR_TOOBIG) {
        out_error(j->req, 503, "server_busy", "too many requests wait for user code; try "
                  "again shortly", NULL);
    } else if (rc) {
        out_engine_error(j->req, rc);
    }
    if (rc) {
        job_free(j);
    }
}

/* Answers a deploy: the component, and for a projection with a webhook the secret it signs
 * with, "webhookSecret": {"secret", "isolated"} (shown on every deploy). */
static void answer_deployed(struct logic_job *j)
{
    struct buf b;
    buf_init(&b);
    add_component(&b, &j->def, false);
    struct comp_webhook *hook = j->def.webhook ? xcalloc(1, sizeof(*hook)) : NULL;
    struct comp_error ce;
    char secret[DELIVERY_SECRET_TEXT];
    if (hook && comp_webhook_parse((struct slice){j->def.webhook, strlen(j->def.webhook)}, hook,
                                   &ce) == 0 &&
        phook_secret(j->db, j->def.name, hook->isolate, secret) == 0) {
        b.len--; /* the closing brace */
        buf_adds(&b, ",\"webhookSecret\":{\"secret\":");
        buf_add_json_str(&b, secret, strlen(secret));
        buf_adds(&b, hook->isolate ? ",\"isolated\":true}}" : ",\"isolated\":false}}");
    }
    free(hook);
    out_json(j->req, j->def.version == 1 ? 201 : 200, &b);
}

static void run_deploy(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    struct logic_error le = {0};
    int rc = cancelled ? ERR_SHUTDOWN : logic_deploy(j->lg, j->db, &j->def, &le);
    if (rc && le.kind == LOGIC_E_WORKER) {
        fail_logic(j->req, 503, "runtime_unavailable", &le, 0);
    } else if (rc == ERR_INVALID && le.kind) {
        fail_logic(j->req, 400, deploy_code(&le), &le, 0);
    } else if (rc == ERR_DENIED) {
        out_error(j->req, 400, le.kind == LOGIC_E_FORBIDDEN ? "url_not_allowed" : "invalid_url",
                  le.message, "webhook.url");
    } else if (rc == ERR_EXISTS) {
        out_error(j->req, 409, "category_taken", le.message, "category");
    } else if (rc == ERR_TOOBIG && le.kind) {
        out_error(j->req, 422, "too_many_components", le.message, "name");
    } else if (rc == ERR_CONFLICT) {
        out_error(j->req, 409, "deploy_conflict", "other deploys to this database kept coming "
                  "first; try again", NULL);
    } else if (rc == ERR_TOOBIG) {
        out_error(j->req, 413, "component_too_large",
                  "the component is larger than one event of this database may be", "source");
    } else if (rc) {
        out_engine_error(j->req, rc);
    } else {
        answer_deployed(j);
    }
    job_free(j);
}

static void run_remove(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    int rc = cancelled ? ERR_SHUTDOWN : logic_remove(j->lg, j->db, j->name);
    if (rc == ERR_NOTFOUND) {
        out_error(j->req, 404, "component_not_found", "no component of that name", "name");
    } else if (rc == ERR_CONFLICT) {
        out_error(j->req, 409, "deploy_conflict", "other deploys to this database kept coming "
                  "first; try again", NULL);
    } else if (rc) {
        out_engine_error(j->req, rc);
    } else {
        api_respond_no_content(j->req);
    }
    job_free(j);
}

static void answer_state(struct logic_job *j, const struct logic_state *s)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"stream\":");
    buf_add_json_str(&b, j->stream, j->stream_len);
    buf_adds(&b, ",\"state\":");
    buf_add(&b, s->state.ptr, s->state.len);
    buf_adds(&b, ",\"version\":");
    buf_add_u64(&b, s->version);
    buf_adds(&b, ",\"position\":");
    buf_add_u64(&b, s->position);
    buf_addc(&b, ',');
    out_time_field(&b, "updatedAt", s->updated_us, false);
    buf_adds(&b, ",\"reducer\":{\"name\":");
    buf_add_json_str(&b, s->reducer, strlen(s->reducer));
    buf_adds(&b, ",\"version\":");
    buf_add_u64(&b, s->reducer_version);
    buf_adds(&b, "}}");
    out_json(j->req, 200, &b);
}

static void run_state(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    struct logic_state s;
    logic_state_init(&s);
    struct logic_error le = {0};
    bool no_reducer = false;
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_stream_state(j->lg, j->db, (struct slice){j->stream, j->stream_len},
                                            j->has_at ? &j->at : NULL, &s, &no_reducer, &le);
    if (rc == ERR_NOTFOUND) {
        out_error(j->req, 404, no_reducer ? "no_reducer" : "stream_not_found",
                  no_reducer ? "no reducer is deployed for this stream's category"
                             : "the stream has no events", "stream");
    } else if (rc && le.kind) { /* the code failed (a worker that died comes as ERR_IO) */
        fail_logic(j->req, 422, "reducer_failed", &le, s.failed_position);
    } else if (rc) {
        out_engine_error(j->req, rc);
    } else {
        answer_state(j, &s);
    }
    logic_state_fini(&s);
    job_free(j);
}

static void answer_view(struct logic_job *j, const struct logic_state *s)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"view\":");
    buf_add_json_str(&b, j->name, strlen(j->name));
    buf_adds(&b, ",\"params\":");
    buf_adds(&b, j->params);
    buf_adds(&b, ",\"state\":");
    buf_add(&b, s->state.ptr, s->state.len);
    buf_adds(&b, ",\"position\":");
    buf_add_u64(&b, s->position);
    buf_adds(&b, ",\"version\":");
    buf_add_u64(&b, s->reducer_version);
    buf_addc(&b, '}');
    out_json(j->req, 200, &b);
}

static void run_view(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    struct logic_state s;
    logic_state_init(&s);
    struct logic_error le = {0};
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_view(j->lg, j->db, j->name,
                                    (struct slice){j->params, strlen(j->params)},
                                    j->has_at ? &j->at : NULL, &s, &le);
    if (rc == ERR_NOTFOUND) {
        out_error(j->req, 404, "view_not_found", "no view of that name", "name");
    } else if (rc && le.kind) {
        fail_logic(j->req, 422, "view_failed", &le, s.failed_position);
    } else if (rc) {
        out_engine_error(j->req, rc);
    } else {
        answer_view(j, &s);
    }
    logic_state_fini(&s);
    job_free(j);
}

/* The {name} path parameter when it can name a component (else 404 code, false): a name too
 * long or of other characters is no component's, never a truncated one's. */
static bool name_param(struct gate_call *c, const char *code, const char **out)
{
    *out = gate_param_str(c, "name");
    if (!comp_name_ok(*out, strlen(*out))) {
        out_error(c->req, 404, code, "no component of that name", "name");
        return false;
    }
    return true;
}

enum {
    VIEW_PARAMS_MAX = 64,   /* parameters of one view read */
    VIEW_PARAM_BYTES = 256, /* a parameter's name, and its value */
};

/* ---- handlers ---- */

static const char *get_param(void *arg, const char *name, size_t nth)
{
    return http_req_query_nth(arg, name, nth);
}

void api_comp_put(struct gate_call *c)
{
    struct logic_job *j = xcalloc(1, sizeof(*j));
    struct comp_error ce;
    const char *name = gate_param_str(c, "name");
    struct parse_error pe;
    void *root;
    if (!out_require_json(c->req)) {
        free(j);
        return;
    }
    if (parse_json_object(http_req_body(c->req), &root, &pe) != 0) {
        free(j); /* malformed JSON is invalid_json with its offset, as everywhere */
        out_parse_error(c->req, &pe);
        return;
    }
    json_decref(root);
    int rc = comp_parse(name, http_req_body(c->req), &j->def, &ce);
    if (rc) {
        free(j);
        out_error(c->req, rc == ERR_TOOBIG ? 413 : 400,
                  rc == ERR_TOOBIG ? "component_too_large" : "invalid_component", ce.message,
                  ce.field[0] ? ce.field : NULL);
        return;
    }
    if (j->def.kind == COMP_DOCUMENT) { /* an API surface's own configuration (a j17 spec) */
        comp_def_fini(&j->def);
        free(j);
        out_error(c->req, 400, "invalid_component", "documents are deployed by the API "
                  "surface that owns them; this API lists, shows and removes them", "kind");
        return;
    }
    submit(c, j, run_deploy);
}

void api_comp_delete(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "component_not_found", &name)) {
        return;
    }
    struct logic_job *j = xcalloc(1, sizeof(*j));
    snprintf(j->name, sizeof j->name, "%s", name);
    submit(c, j, run_remove);
}

void api_comp_list(struct gate_call *c)
{
    struct comp_set *set;
    int rc = logic_set(api_of(c)->logic, c->db, &set);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"components\":[");
    for (size_t i = 0; i < set->count; i++) {
        buf_adds(&b, i ? "," : "");
        add_component(&b, &set->defs[i], false);
    }
    buf_adds(&b, "]}");
    comp_set_unref(set);
    out_json(c->req, 200, &b);
}

void api_comp_get(struct gate_call *c)
{
    struct comp_set *set;
    int rc = logic_set(api_of(c)->logic, c->db, &set);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    const char *name = gate_param_str(c, "name");
    const struct comp_def *d = comp_name_ok(name, strlen(name)) ? comp_set_find(set, name)
                                                                : NULL;
    if (!d) {
        comp_set_unref(set);
        out_error(c->req, 404, "component_not_found", "no component of that name", "name");
        return;
    }
    struct buf b, logs;
    buf_init(&b);
    buf_init(&logs);
    struct logic_stats st;
    logic_component_stats(api_of(c)->logic, c->db, d->name, &st, &logs);
    add_component(&b, d, true);
    b.len--; /* its closing brace */
    buf_adds(&b, ",\"stats\":{\"calls\":");
    buf_add_u64(&b, st.calls);
    buf_adds(&b, ",\"errors\":");
    buf_add_u64(&b, st.errors);
    buf_adds(&b, ",\"timeMs\":");
    buf_add_u64(&b, st.busy_ns / 1000000);
    buf_adds(&b, "},\"logs\":[");
    buf_add(&b, logs.ptr ? logs.ptr : "", logs.len);
    buf_adds(&b, "]}");
    buf_fini(&logs);
    comp_set_unref(set);
    out_json(c->req, 200, &b);
}

void api_stream_state(struct gate_call *c)
{
    struct slice stream;
    if (!api_stream_name(c, &stream)) {
        return;
    }
    struct logic_job *j = xcalloc(1, sizeof(*j));
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &j->at, &pe) != 0) {
        free(j);
        out_parse_error(c->req, &pe);
        return;
    }
    j->has_at = j->at.has_pos || j->at.has_time;
    j->stream = xstrndup(stream.ptr, stream.len);
    j->stream_len = stream.len;
    submit(c, j, run_state);
}

/* The query parameters a view route does not declare, as a JSON object of strings (the
 * view's parameters), sorted by name so that one set of parameters is one cache entry. NULL
 * (answered 400) for more than VIEW_PARAMS_MAX of them or a bad percent-escape. */
static char *view_params(struct http_req *req)
{
    struct slice q = http_req_query_string(req), name, value;
    struct { struct slice name, value; } all[VIEW_PARAMS_MAX];
    size_t n = 0, pos = 0;
    while (http_query_next(q, &pos, &name, &value)) {
        bool own = name.len == 4 && !memcmp(name.ptr, "asOf", 4);
        own = own || (name.len == 8 && !memcmp(name.ptr, "asOfTime", 8));
        if (!own && name.len && n == VIEW_PARAMS_MAX) {
            out_error(req, 400, "invalid_parameter", "a view takes at most 64 parameters",
                      NULL);
            return NULL;
        }
        if (!own && name.len) {
            all[n].name = name;
            all[n++].value = value;
        }
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort by name */
        for (size_t k = i; k > 0; k--) {
            size_t a = all[k - 1].name.len, b = all[k].name.len;
            int c = memcmp(all[k - 1].name.ptr, all[k].name.ptr, a < b ? a : b);
            if (c < 0 || (c == 0 && a <= b)) {
                break;
            }
            __typeof__(all[0]) t = all[k];
            all[k] = all[k - 1];
            all[k - 1] = t;
        }
    }
    struct buf b, dec;
    buf_init(&b);
    buf_init(&dec);
    buf_addc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        buf_adds(&b, i ? "," : "");
        bool ok = http_url_decode(all[i].name.ptr, all[i].name.len, true, &dec) == 0 &&
                  engine_name_ok(dec.ptr, dec.len, VIEW_PARAM_BYTES);
        buf_add_json_str(&b, dec.ptr ? dec.ptr : "", dec.len);
        buf_addc(&b, ':');
        ok = ok && http_url_decode(all[i].value.ptr, all[i].value.len, true, &dec) == 0 &&
             (dec.len == 0 || engine_name_ok(dec.ptr, dec.len, VIEW_PARAM_BYTES));
        if (!ok) {
            buf_fini(&dec);
            buf_fini(&b);
            out_error(req, 400, "invalid_parameter", "a view parameter is a name and a value "
                      "of at most 256 bytes each, without control characters", NULL);
            return NULL;
        }
        buf_add_json_str(&b, dec.ptr ? dec.ptr : "", dec.len);
    }
    buf_addc(&b, '}');
    buf_fini(&dec);
    return buf_steal(&b, NULL);
}

void api_view_get(struct gate_call *c)
{
    struct logic_job *j = xcalloc(1, sizeof(*j));
    struct parse_error pe;
    if (parse_as_of_params(get_param, c->req, &j->at, &pe) != 0) {
        free(j);
        out_parse_error(c->req, &pe);
        return;
    }
    j->has_at = j->at.has_pos || j->at.has_time;
    const char *name;
    if (!name_param(c, "view_not_found", &name)) {
        free(j);
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->params = view_params(c->req);
    if (!j->params) {
        free(j);
        return;
    }
    submit(c, j, run_view);
}

/* ---- projections ---- */

static const char *const PROJ_STATUS[] = {"", "catching_up", "live", "failed"};

/* Answers 404 for a projection that does not run: not deployed (projection_not_found), or
 * deployed but not started yet (202 catching_up). Returns true when it answered. */
static bool proj_missing(struct gate_call *c, const char *name, int rc)
{
    if (rc != ERR_NOTFOUND) {
        if (rc) {
            out_engine_error(c->req, rc);
        }
        return rc != 0;
    }
    struct comp_set *set;
    const struct comp_def *d = NULL;
    if (logic_set(api_of(c)->logic, c->db, &set) == 0) {
        d = comp_set_find(set, name);
        d = d && d->kind == COMP_PROJECTION ? d : NULL;
        comp_set_unref(set);
    }
    if (!d) {
        out_error(c->req, 404, "projection_not_found", "no projection of that name", "name");
        return true;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"projection\":");
    buf_add_json_str(&b, name, strlen(name));
    buf_adds(&b, ",\"status\":\"catching_up\"}");
    out_json(c->req, 202, &b);
    return true;
}

static void add_proj_info(struct buf *b, const char *name, const struct proj_info *in)
{
    buf_adds(b, "{\"projection\":");
    buf_add_json_str(b, name, strlen(name));
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, in->version);
    buf_adds(b, ",\"status\":\"");
    buf_adds(b, PROJ_STATUS[in->status]);
    buf_adds(b, "\",\"position\":");
    buf_add_u64(b, in->position > 0 ? in->position - 1 : 0);
    buf_adds(b, ",\"head\":");
    buf_add_u64(b, in->head);
    buf_adds(b, ",\"lag\":");
    buf_add_u64(b, in->head + 1 > in->position ? in->head + 1 - in->position : 0);
    buf_adds(b, ",\"sequence\":");
    buf_add_u64(b, in->sequence);
    if (in->status == PROJ_FAILED) {
        buf_adds(b, ",\"error\":{\"kind\":");
        buf_add_json_str(b, in->error_kind, strlen(in->error_kind));
        buf_adds(b, ",\"message\":");
        buf_add_json_str(b, in->error, strlen(in->error));
        buf_adds(b, ",\"position\":");
        buf_add_u64(b, in->failed_position);
        buf_addc(b, '}');
    }
    buf_addc(b, '}');
}

void api_proj_get(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "projection_not_found", &name)) {
        return;
    }
    struct proj_info in;
    int rc = proj_info(logic_projections(api_of(c)->logic), c->db, name, &in);
    if (proj_missing(c, name, rc)) {
        return;
    }
    struct buf b;
    buf_init(&b);
    add_proj_info(&b, name, &in);
    b.len--; /* its closing brace: the webhook's delivery goes in too */
    size_t at = b.len;
    buf_adds(&b, ",\"webhook\":");
    if (proj_webhook(logic_projections(api_of(c)->logic), c->db, name, &b) != 0) {
        b.len = at;
    }
    buf_addc(&b, '}');
    out_json(c->req, 200, &b);
}

/* ---- projection webhook secrets ---- */

enum { GRACE_DEFAULT_S = 24 * 3600 };

static void run_rotate(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    char secret[DELIVERY_SECRET_TEXT];
    int rc = cancelled ? ERR_SHUTDOWN
                       : phook_rotate(j->db, j->name, j->isolated, j->grace_s, secret);
    if (rc) {
        out_engine_error(j->req, rc);
    } else {
        struct buf b;
        buf_init(&b);
        if (j->isolated) {
            buf_adds(&b, "{\"projection\":");
            buf_add_json_str(&b, j->name, strlen(j->name));
            buf_adds(&b, ",\"secret\":");
        } else {
            buf_adds(&b, "{\"secret\":");
        }
        buf_add_json_str(&b, secret, strlen(secret));
        buf_printf(&b, ",\"isolated\":%s,\"graceSeconds\":%u}", j->isolated ? "true" : "false",
                   j->grace_s);
        out_json(j->req, 200, &b);
    }
    job_free(j);
}

/* Reads the optional body {"graceSeconds"} into *grace_s. False when it answered. */
static bool take_grace(struct gate_call *c, uint32_t *grace_s)
{
    *grace_s = GRACE_DEFAULT_S;
    if (http_req_body(c->req).len == 0) {
        return true;
    }
    static const char *const ALLOWED[] = {"graceSeconds"};
    json_t *root = out_body_object(c->req);
    if (!root) {
        return false;
    }
    bool ok = out_only_members(c->req, root, ALLOWED, 1, "");
    json_t *g = ok ? json_object_get(root, "graceSeconds") : NULL;
    if (g && (!json_is_integer(g) || json_integer_value(g) < 0 ||
              json_integer_value(g) > PHOOK_GRACE_MAX_S)) {
        out_error(c->req, 400, "invalid_request", "graceSeconds is a whole number from 0 to "
                  "604800", "graceSeconds");
        ok = false;
    } else if (g) {
        *grace_s = (uint32_t)json_integer_value(g);
    }
    json_decref(root);
    return ok;
}

void api_proj_hook_rotate(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "webhook_not_found", &name)) {
        return;
    }
    struct comp_set *set;
    int rc = logic_set(api_of(c)->logic, c->db, &set);
    if (rc) {
        out_engine_error(c->req, rc);
        return;
    }
    const struct comp_def *d = comp_set_find(set, name);
    struct comp_webhook *hook = xcalloc(1, sizeof(*hook));
    struct comp_error ce;
    bool has = d && d->kind == COMP_PROJECTION && d->webhook &&
               comp_webhook_parse((struct slice){d->webhook, strlen(d->webhook)}, hook, &ce) == 0;
    bool isolated = has && hook->isolate;
    free(hook);
    comp_set_unref(set);
    uint32_t grace;
    if (!has) {
        out_error(c->req, 404, "webhook_not_found", "no projection of that name has a webhook",
                  "name");
    } else if (!isolated) {
        out_error(c->req, 400, "shared_secret", "this projection's webhook signs with the "
                  "database's shared secret: rotate that one (POST .../projection-webhooks/"
                  "rotate), or deploy it with isolateSecret", "name");
    } else if (take_grace(c, &grace)) {
        struct logic_job *j = xcalloc(1, sizeof(*j));
        snprintf(j->name, sizeof j->name, "%s", name);
        j->isolated = true;
        j->grace_s = grace;
        submit(c, j, run_rotate);
    }
}

void api_proj_hooks_rotate(struct gate_call *c)
{
    uint32_t grace;
    if (take_grace(c, &grace)) {
        struct logic_job *j = xcalloc(1, sizeof(*j));
        j->grace_s = grace;
        submit(c, j, run_rotate);
    }
}

/* Answers the state of key in projection name (200, 202 while catching up or not reached,
 * 404). Returns false when the projection does not run (nothing answered). Any thread. */
static bool answer_proj_state(struct http_req *req, struct logic *lg, struct db *db,
                              const char *name, struct slice key, bool waited_in_vain)
{
    struct proj_info in;
    struct buf state;
    buf_init(&state);
    uint64_t pos = 0;
    int rc = proj_state(logic_projections(lg), db, name, key, &state, &pos, &in);
    if (rc == ERR_NOTFOUND && in.status == 0) {
        buf_fini(&state);
        return false;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"projection\":");
    buf_add_json_str(&b, name, strlen(name));
    if (in.status == PROJ_CATCHING_UP || waited_in_vain) { /* not what the log says yet */
        buf_adds(&b, ",\"status\":\"catching_up\",\"position\":");
        buf_add_u64(&b, in.position > 0 ? in.position - 1 : 0);
        buf_adds(&b, ",\"head\":");
        buf_add_u64(&b, in.head);
        buf_addc(&b, '}');
        out_json(req, 202, &b);
    } else if (rc == ERR_NOTFOUND) {
        buf_fini(&b);
        out_error(req, 404, "key_not_found", "the projection holds no state for this key",
                  "key");
    } else if (rc) {
        buf_fini(&b);
        out_engine_error(req, rc);
    } else {
        buf_adds(&b, ",\"key\":");
        buf_add_json_str(&b, key.ptr, key.len);
        buf_adds(&b, ",\"state\":");
        buf_add(&b, state.ptr, state.len);
        buf_adds(&b, ",\"position\":");
        buf_add_u64(&b, pos);
        buf_adds(&b, ",\"status\":\"");
        buf_adds(&b, PROJ_STATUS[in.status]);
        buf_adds(&b, "\",\"version\":");
        buf_add_u64(&b, in.version);
        buf_addc(&b, '}');
        out_json(req, 200, &b);
    }
    buf_fini(&state);
    return true;
}

/* A state read waiting for its projection to reach a position. */
struct state_wait {
    struct http_req *req;          /* deferred */
    struct logic *lg;
    struct db *db;                 /* a reference, the wait's */
    char name[COMP_NAME_BYTES + 1];
    char *key;
    size_t key_len;
};

/* Runner thread: reached, or the time ran out. */
static void on_state_wait(void *arg, bool reached)
{
    struct state_wait *w = arg;
    if (!answer_proj_state(w->req, w->lg, w->db, w->name, (struct slice){w->key, w->key_len},
                           !reached)) {
        out_error(w->req, 404, "projection_not_found", "no projection of that name", "name");
    }
    engine_db_release(w->db);
    free(w->key);
    free(w);
}

void api_proj_state(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "projection_not_found", &name)) {
        return;
    }
    struct slice key = gate_param(c, "key");
    const char *mp = http_req_query(c->req, "minPosition");
    const char *tm = http_req_query(c->req, "timeoutMs");
    uint64_t min_pos = 0, timeout = 5000;
    if ((mp && (parse_u64(mp, &min_pos) != 0 || min_pos == 0)) ||
        (tm && (parse_u64(tm, &timeout) != 0 || timeout > PROJ_WAIT_MAX_MS))) {
        out_error(c->req, 400, "invalid_parameter", "minPosition is a position from 1, "
                  "timeoutMs 0 to 30000", mp && (parse_u64(mp, &min_pos) != 0 || !min_pos)
                  ? "minPosition" : "timeoutMs");
        return;
    }
    struct proj_info in;
    bool running = proj_info(logic_projections(api_of(c)->logic), c->db, name, &in) == 0;
    if (mp && (!running || in.position <= min_pos) && timeout > 0) {
        struct state_wait *w = xcalloc(1, sizeof(*w));
        w->req = c->req;
        w->lg = api_of(c)->logic;
        w->db = c->db;
        c->db = NULL;
        snprintf(w->name, sizeof w->name, "%s", name);
        w->key = xstrndup(key.ptr, key.len);
        w->key_len = key.len;
        http_defer(c->req);
        proj_wait(logic_projections(w->lg), w->db, name, min_pos, timeout, on_state_wait, w);
        return;
    }
    bool short_of = mp && running && in.position <= min_pos;
    if (!answer_proj_state(c->req, api_of(c)->logic, c->db, name, key, short_of)) {
        proj_missing(c, name, ERR_NOTFOUND);
    }
}

/* The limit parameter (default LIMIT_READ_DEFAULT, at most LIMIT_READ_MAX); false after
 * answering 400. */
static bool page_limit(struct gate_call *c, size_t *out)
{
    const char *v = http_req_query(c->req, "limit");
    uint64_t n = LIMIT_READ_DEFAULT;
    if (v && (parse_u64(v, &n) != 0 || n < 1 || n > LIMIT_READ_MAX)) {
        out_error(c->req, 400, "invalid_parameter", "limit is a whole number from 1 to 1000",
                  "limit");
        return false;
    }
    *out = (size_t)n;
    return true;
}

void api_proj_keys(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "projection_not_found", &name)) {
        return;
    }
    size_t limit;
    if (!page_limit(c, &limit)) {
        return;
    }
    const char *prefix = http_req_query(c->req, "prefix");
    const char *after = http_req_query(c->req, "after");
    if ((prefix && strlen(prefix) > PROJ_KEY_BYTES) || (after && strlen(after) > PROJ_KEY_BYTES)) {
        out_error(c->req, 400, "invalid_parameter", "a key is at most 256 bytes",
                  prefix && strlen(prefix) > PROJ_KEY_BYTES ? "prefix" : "after");
        return;
    }
    struct buf b;
    buf_init(&b);
    int rc = proj_keys(logic_projections(api_of(c)->logic), c->db, name,
                       (struct slice){prefix, prefix ? strlen(prefix) : 0},
                       (struct slice){after, after ? strlen(after) : 0}, limit, &b);
    if (rc) {
        buf_fini(&b);
        proj_missing(c, name, rc);
        return;
    }
    out_json(c->req, 200, &b);
}

void api_proj_changes(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "projection_not_found", &name)) {
        return;
    }
    size_t limit;
    if (!page_limit(c, &limit)) {
        return;
    }
    const char *a = http_req_query(c->req, "after");
    uint64_t after = 0;
    if (a && parse_u64(a, &after) != 0) {
        out_error(c->req, 400, "invalid_parameter", "after is a sequence number", "after");
        return;
    }
    struct buf b;
    buf_init(&b);
    int rc = proj_changes(logic_projections(api_of(c)->logic), c->db, name, after, limit, &b);
    if (rc) {
        buf_fini(&b);
        proj_missing(c, name, rc);
        return;
    }
    out_json(c->req, 200, &b);
}

/* ---- command handlers ---- */

static void answer_command(struct logic_job *j, const struct command_result *r, bool dry)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"command\":");
    buf_add_json_str(&b, j->name, strlen(j->name));
    buf_adds(&b, ",\"events\":");
    buf_add(&b, r->events.ptr, r->events.len);
    if (dry) {
        buf_adds(&b, ",\"conditions\":");
        buf_add(&b, r->conditions.ptr, r->conditions.len);
        buf_adds(&b, ",\"dryRun\":true");
    } else if (r->last_position) {
        buf_adds(&b, ",\"position\":");
        buf_add_u64(&b, r->last_position);
    }
    buf_adds(&b, ",\"attempts\":");
    buf_add_u64(&b, r->attempts);
    buf_addc(&b, '}');
    out_json(j->req, !dry && r->last_position ? 201 : 200, &b);
}

static void answer_rejection(struct logic_job *j, const struct command_result *r)
{
    struct buf details, msg;
    buf_init(&details);
    buf_init(&msg);
    struct slice rej = {r->rejection.ptr, r->rejection.len}, m;
    if (jsonx_kind(rej) == '{' && jsonx_member(rej, "message", &m) && jsonx_kind(m) == '"') {
        jsonx_string(m, &msg);
    }
    buf_adds(&details, "\"rejection\":");
    buf_add(&details, rej.ptr, rej.len);
    struct gate_error e = {.kind = 422, .code = "command_rejected",
                           .message = msg.len ? msg.ptr : "the command handler rejected it",
                           .details = details.ptr};
    gate_fail_req(NULL, j->req, &e);
    buf_fini(&details);
    buf_fini(&msg);
}

/* The engine refused a decision's append for what deciding again cannot change. */
static void answer_refusal(struct http_req *req, enum append_conflict why)
{
    switch (why) {
    case CONFLICT_DELETED:
        out_error(req, 410, "stream_deleted", "the decision writes to a stream deleted for "
                  "good; nothing was written", "events");
        break;
    case CONFLICT_TOO_LARGE:
        out_error(req, 413, "stream_too_large", "a stream would grow past the database's "
                  "maxStreamSizeBytes; nothing was written", "events");
        break;
    case CONFLICT_TOO_BROAD:
        out_error(req, 400, "condition_too_broad", "a condition of the decision is not narrowed "
                  "by an index and the database is too large to check it", "conditions");
        break;
    default:
        out_error(req, 409, "duplicate_event_id", "an event id of the decision is stored with "
                  "other content; nothing was written", "events");
    }
}

static void run_command(void *arg, bool cancelled)
{
    struct logic_job *j = arg;
    struct command_result r;
    command_result_init(&r);
    struct logic_error le = {0};
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_command(j->lg, j->db, j->name,
                                       (struct slice){j->params, strlen(j->params)}, j->has_at,
                                       &r, &le);
    if (rc == ERR_NOTFOUND) {
        out_error(j->req, 404, "command_not_found", "no command handler of that name", "name");
    } else if (rc && le.kind && rc != ERR_TOOBIG && rc != ERR_DENIED) {
        fail_logic(j->req, 422, "command_failed", &le, 0);
    } else if (rc == ERR_CONFLICT) {
        out_error(j->req, 409, "command_conflict", "what the command handler read kept "
                  "changing while it decided; nothing was written", NULL);
    } else if (rc == ERR_DENIED) {
        answer_refusal(j->req, r.refusal);
    } else if (rc == ERR_TOOBIG) {
        out_error(j->req, 413, "too_many_events", "the decision's events are too many or one "
                  "is too large; nothing was written", "events");
    } else if (rc) {
        out_engine_error(j->req, rc);
    } else if (r.rejected) {
        answer_rejection(j, &r);
    } else {
        answer_command(j, &r, j->has_at);
    }
    command_result_fini(&r);
    job_free(j);
}

void api_command(struct gate_call *c)
{
    const char *dry = http_req_query(c->req, "dryRun");
    if (dry && strcmp(dry, "true") != 0 && strcmp(dry, "false") != 0) {
        out_error(c->req, 400, "invalid_parameter", "dryRun is true or false", "dryRun");
        return;
    }
    if (!out_require_json(c->req)) {
        return;
    }
    struct slice body = http_req_body(c->req), cmd;
    struct parse_error pe;
    void *root;
    if (parse_json_object(body, &root, &pe) != 0) {
        out_parse_error(c->req, &pe);
        return;
    }
    json_decref(root);
    if (!jsonx_member(body, "command", &cmd) || jsonx_kind(cmd) != '{') {
        out_error(c->req, 400, "invalid_request", "the body is {\"command\": {...}}",
                  "command");
        return;
    }
    const char *name;
    if (!name_param(c, "command_not_found", &name)) {
        return;
    }
    struct logic_job *j = xcalloc(1, sizeof(*j));
    snprintf(j->name, sizeof j->name, "%s", name);
    struct buf text;
    buf_init(&text);
    jsonx_minify(cmd, &text);
    j->params = buf_steal(&text, NULL);
    j->has_at = dry && !strcmp(dry, "true"); /* dry run */
    submit(c, j, run_command);
}

/* ---- a projection's changes, live (Server-Sent Events or a WebSocket: ops/projfeed.h) ---- */

void api_proj_live(struct gate_call *c)
{
    const char *name;
    if (!name_param(c, "projection_not_found", &name)) {
        return;
    }
    const char *a = http_req_query(c->req, "after");
    const char *resume = http_req_header(c->req, "Last-Event-ID"); /* an EventSource again */
    uint64_t after = 0;
    if ((a && parse_u64(a, &after) != 0) || (resume && parse_u64(resume, &after) != 0)) {
        out_error(c->req, 400, "invalid_parameter", "after (and Last-Event-ID) is a sequence "
                  "number", resume ? "Last-Event-ID" : "after");
        return;
    }
    struct projfeed_spec spec = {.projection = name, .after = after,
                                 .ws = http_req_header(c->req, "Upgrade") != NULL};
    int rc = projfeed_start(c->req, api_of(c)->logic, c->db, &spec, &projfeed_native);
    if (rc == ERR_INVALID) { /* (the projection runs: it is the upgrade) */
        out_error(c->req, 400, "invalid_upgrade", "a WebSocket upgrade needs Upgrade: "
                  "websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a "
                  "Sec-WebSocket-Key", "Upgrade");
        return;
    }
    if (rc) {
        proj_missing(c, name, rc);
        return;
    }
    c->db = NULL; /* the feed's reference now */
}
