/* EvidentSource state views and state changes (docs/dialects/evidentsource.md): the lists,
 * reading a state view (both generations), removing one, the newer generation's component
 * list, and what publish.c and changes.c share (views_int.h). A read computes the view on a
 * worker with logic_view_at; everything here that runs on the I/O thread only looks at the
 * component set and the request. */
#include "dialect/evidentsource/views_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect/evidentsource/format.h"
#include "engine/canon.h"
#include "http/parse.h"
#include "json/jsonx.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- jobs (views_int.h) ---- */

struct es_job *es_job_new(const struct gate_call *c)
{
    struct es_job *j = xcalloc(1, sizeof(*j));
    j->req = c->req;
    j->mount = c->mount;
    j->lg = es_ctx_of(c)->logic;
    return j;
}

void es_job_free(struct es_job *j)
{
    if (!j) {
        return;
    }
    engine_db_release(j->db);
    comp_def_fini(&j->def);
    free(j->text);
    free(j->meta);
    free(j);
}

void es_job_submit(struct gate_call *c, struct es_job *j, struct db *db, workq_fn *fn)
{
    j->db = db;
    http_defer(c->req);
    int rc = engine_submit(c->gate->engine, fn, j);
    if (rc == ERR_TOOBIG) {
        es_job_fail(j, GK_UNAVAILABLE, "server_busy", "too many requests wait for user code; "
                    "try again shortly", NULL, NULL);
    } else if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(j->mount, j->req, &e);
    }
    if (rc) {
        es_job_free(j);
    }
}

void es_job_fail(const struct es_job *j, unsigned kind, const char *code, const char *msg,
                 const char *field, const char *details)
{
    struct gate_error e = {.kind = kind, .code = code, .message = msg, .field = field,
                           .details = details};
    gate_fail_req(j->mount, j->req, &e);
}

void es_job_fail_code(const struct es_job *j, unsigned kind, const char *code,
                      const struct logic_error *le, const char *field)
{
    char details[128];
    int n = snprintf(details, sizeof details, "\"kind\":\"%s\"", logic_err_name(le->kind));
    if (le->line > 0) {
        n += snprintf(details + n, sizeof details - (size_t)n, ",\"line\":%d", le->line);
    }
    if (le->column > 0) {
        snprintf(details + n, sizeof details - (size_t)n, ",\"column\":%d", le->column);
    }
    es_job_fail(j, kind, code, le->message[0] ? le->message : "the code failed", field,
                details);
}

/* ---- components ---- */

bool es_component_is(const struct comp_def *def, bool change)
{
    return def && def->kind == (change ? COMP_COMMAND : COMP_VIEW) && def->event_format &&
           !strcmp(def->event_format, ES_FORMAT_NAME);
}

const struct comp_def *es_component_find(const struct comp_set *set, const char *name,
                                         bool change)
{
    const struct comp_def *d = comp_name_ok(name, strlen(name)) ? comp_set_find(set, name)
                                                                : NULL;
    return es_component_is(d, change) ? d : NULL;
}

bool es_meta_string(const struct comp_def *def, const char *member, struct buf *out)
{
    struct slice v;
    buf_reset(out);
    if (!def->meta || !jsonx_member((struct slice){def->meta, strlen(def->meta)}, member, &v) ||
        jsonx_kind(v) != '"' || jsonx_string(v, out) != 0) {
        return false;
    }
    buf_addc(out, '\0');
    out->len--;
    return true;
}

void es_path_prefix(const struct gate_call *c, size_t nsegs, char out[ES_PREFIX_BYTES])
{
    struct slice p = http_req_path(c->req);
    size_t end = p.len;
    for (size_t k = 0; k < nsegs && end > 0; k++) {
        while (end > 0 && p.ptr[end - 1] != '/') {
            end--;
        }
        end = end > 0 ? end - 1 : 0; /* the '/' before the segment */
    }
    snprintf(out, ES_PREFIX_BYTES, "%.*s", (int)(end < ES_PREFIX_BYTES ? end : 0), p.ptr);
}

bool es_media_type_ok(const char *s, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t i = 0, slash = 0;
    for (; i < n && s[i] != ';' && s[i] != ' '; i++) {
        unsigned char c = (unsigned char)s[i];
        bool tok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c && strchr(tchar, c));
        if (c == '/' && !slash && i > 0) {
            slash = i;
        } else if (!tok) {
            return false;
        }
    }
    for (size_t k = i; k < n; k++) {
        if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) {
            return false;
        }
    }
    return slash > 0 && slash + 1 < i && n <= ES_CONTENT_TYPE_BYTES;
}

/* A metadata member as JSON text (the string given when absent or null). */
static void add_meta_member(struct buf *b, const struct comp_def *d, const char *member,
                            const char *absent)
{
    struct slice v;
    if (d->meta && jsonx_member((struct slice){d->meta, strlen(d->meta)}, member, &v) &&
        jsonx_kind(v) != 'n') {
        buf_add(b, v.ptr, v.len);
    } else {
        buf_adds(b, absent);
    }
}

/* True when the view declares parameters (a non-empty array or object). */
static bool parameterized(const struct comp_def *d)
{
    struct slice v;
    return d->meta && jsonx_member((struct slice){d->meta, strlen(d->meta)}, "parameters", &v) &&
           (jsonx_kind(v) == '[' || jsonx_kind(v) == '{') && v.len > 2;
}

/* The component set of db, or NULL after answering the error. */
static struct comp_set *set_of(struct gate_call *c, struct db *db)
{
    struct comp_set *set;
    int rc = logic_set(es_ctx_of(c)->logic, db, &set);
    if (rc) {
        gate_fail_engine(c, rc);
        return NULL;
    }
    return set;
}

void es_component_names(struct gate_call *c, struct db *db, bool changes, struct buf *out)
{
    struct comp_set *set;
    size_t n = 0;
    buf_addc(out, '[');
    if (logic_set(es_ctx_of(c)->logic, db, &set) == 0) {
        for (size_t i = 0; i < set->count; i++) {
            const struct comp_def *d = &set->defs[i];
            if (es_component_is(d, changes)) {
                buf_adds(out, n++ ? "," : "");
                buf_add_json_str(out, d->name, strlen(d->name));
            }
        }
        comp_set_unref(set);
    }
    buf_addc(out, ']');
}

static void add_view_entry(struct buf *b, const struct comp_def *d)
{
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, d->name, strlen(d->name));
    buf_adds(b, ",\"description\":");
    add_meta_member(b, d, "description", "\"\"");
    buf_adds(b, ",\"content_type\":");
    add_meta_member(b, d, "content_type", "\"application/json\"");
    buf_adds(b, ",\"priority\":");
    add_meta_member(b, d, "priority", "\"normal\"");
    buf_adds(b, parameterized(d) ? ",\"parameterized\":true" : ",\"parameterized\":false");
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, d->version);
    buf_addc(b, '}');
}

static void add_change_entry(struct buf *b, const struct comp_def *d)
{
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, d->name, strlen(d->name));
    buf_adds(b, ",\"description\":");
    add_meta_member(b, d, "description", "\"\"");
    buf_adds(b, ",\"state_view_name\":");
    add_meta_member(b, d, "state_view_name", "null");
    buf_adds(b, ",\"version\":");
    buf_add_u64(b, d->version);
    buf_addc(b, '}');
}

static void list(struct gate_call *c, bool changes)
{
    struct comp_set *set = set_of(c, c->db);
    if (!set) {
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, changes ? "{\"state_changes\":[" : "{\"state_views\":[");
    size_t n = 0;
    for (size_t i = 0; i < set->count; i++) {
        const struct comp_def *d = &set->defs[i];
        if (es_component_is(d, changes)) {
            buf_adds(&b, n++ ? "," : "");
            (changes ? add_change_entry : add_view_entry)(&b, d);
        }
    }
    buf_adds(&b, "]}");
    comp_set_unref(set);
    out_json(c->req, 200, &b);
}

void es_views_list(struct gate_call *c)
{
    list(c, false);
}

void es_changes_list(struct gate_call *c)
{
    list(c, true);
}

/* GET /v1/databases/{database}/components: {"components":[{"kind","name","version",
 * "language","metadata","deployedAt"}]} */
void es_v1_components(struct gate_call *c)
{
    struct comp_set *set = set_of(c, c->db);
    if (!set) {
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"components\":[");
    size_t n = 0;
    for (size_t i = 0; i < set->count; i++) {
        const struct comp_def *d = &set->defs[i];
        bool change = es_component_is(d, true);
        if (!change && !es_component_is(d, false)) {
            continue;
        }
        buf_adds(&b, n++ ? "," : "");
        buf_adds(&b, change ? "{\"kind\":\"state_change\",\"name\":"
                            : "{\"kind\":\"state_view\",\"name\":");
        buf_add_json_str(&b, d->name, strlen(d->name));
        buf_printf(&b, ",\"version\":%llu,\"language\":\"%s\",\"metadata\":",
                   (unsigned long long)d->version, logic_lang_name(d->lang));
        buf_adds(&b, d->meta ? d->meta : "{}");
        buf_addc(&b, ',');
        out_time_field(&b, "deployedAt", d->deployed_us, false);
        buf_addc(&b, '}');
    }
    buf_adds(&b, "]}");
    comp_set_unref(set);
    out_json(c->req, 200, &b);
}

/* ---- reading a state view ---- */

/* True for a JSON media type: application/json or a +json suffix (parameters ignored). */
static bool json_type(const char *ct)
{
    size_t n = strcspn(ct, "; ");
    return (n == 16 && !strncasecmp(ct, "application/json", 16)) ||
           (n > 5 && !strncasecmp(ct + n - 5, "+json", 5));
}

/* The state as the view's content type has it: JSON as it is; a string state raw for any
 * other type. */
static void answer_state(struct es_job *j, struct slice state)
{
    struct buf b;
    buf_init(&b);
    /* the state is made of event data anyone with a write key chose, sent with the type the
       publisher chose (text/html, too): a browser must neither guess another type nor run
       what it shows, on this origin */
    http_add_header(j->req, "X-Content-Type-Options", "nosniff");
    http_add_header(j->req, "Content-Security-Policy", "sandbox; default-src 'none'");
    if (!json_type(j->content_type) && jsonx_kind(state) == '"' &&
        jsonx_string(state, &b) == 0) {
        http_respond(j->req, 200, &b, j->content_type);
        return;
    }
    buf_reset(&b);
    buf_add(&b, state.ptr, state.len);
    http_respond(j->req, 200, &b, j->content_type);
}

static void run_view(void *arg, bool cancelled)
{
    struct es_job *j = arg;
    struct logic_state s;
    logic_state_init(&s);
    struct logic_error le = {0};
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_view_at(j->lg, j->db, j->name,
                                       (struct slice){j->text, strlen(j->text)}, &j->rd, &s,
                                       &le);
    if (rc == ERR_NOTFOUND) {
        es_job_fail(j, GK_NOT_FOUND, "state_view_not_found", "no state view of that name",
                    "view", NULL);
    } else if (rc && le.kind) {
        es_job_fail_code(j, GK_UNPROCESSABLE, "view_failed", &le, "view");
    } else if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(j->mount, j->req, &e);
    } else {
        answer_state(j, (struct slice){s.state.ptr, s.state.len});
    }
    logic_state_fini(&s);
    es_job_free(j);
}

/* Sorts parameters by name (insertion sort: at most ES_VIEW_PARAMS_MAX), so that one set of
 * parameters is one cache entry. */
struct param {
    struct slice name, value;
};

static void sort_params(struct param *all, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        for (size_t k = i; k > 0; k--) {
            size_t a = all[k - 1].name.len, b = all[k].name.len;
            int cmp = memcmp(all[k - 1].name.ptr, all[k].name.ptr, a < b ? a : b);
            if (cmp < 0 || (cmp == 0 && a <= b)) {
                break;
            }
            struct param t = all[k];
            all[k] = all[k - 1];
            all[k - 1] = t;
        }
    }
}

/* True when the query parameter name (as sent) is the route's own (or "version"). */
static bool own_param(const struct gate_call *c, struct slice name)
{
    return (name.len == 7 && !memcmp(name.ptr, "version", 7)) ||
           route_param_find(c->route, name.ptr, name.len) != NULL;
}

/* Writes the decoded parameters as a JSON object of strings into out; false on a bad one. */
static bool params_json(const struct param *all, size_t n, struct buf *out)
{
    struct buf dec;
    buf_init(&dec);
    bool ok = true;
    buf_addc(out, '{');
    for (size_t i = 0; i < n && ok; i++) {
        buf_adds(out, i ? "," : "");
        ok = http_url_decode(all[i].name.ptr, all[i].name.len, true, &dec) == 0 &&
             engine_name_ok(dec.ptr, dec.len, ES_VIEW_PARAM_BYTES);
        buf_add_json_str(out, ok ? dec.ptr : "", ok ? dec.len : 0);
        buf_addc(out, ':');
        ok = ok && http_url_decode(all[i].value.ptr, all[i].value.len, true, &dec) == 0 &&
             (dec.len == 0 || engine_name_ok(dec.ptr, dec.len, ES_VIEW_PARAM_BYTES));
        buf_add_json_str(out, ok && dec.ptr ? dec.ptr : "", ok ? dec.len : 0);
    }
    buf_addc(out, '}');
    buf_fini(&dec);
    return ok;
}

/* The query parameters the route does not declare, as the view's parameters (owned JSON
 * text), or NULL after answering 400. */
static char *view_params(struct gate_call *c)
{
    struct slice q = http_req_query_string(c->req), name, value;
    struct param all[ES_VIEW_PARAMS_MAX];
    size_t n = 0, pos = 0;
    while (http_query_next(q, &pos, &name, &value)) {
        if (own_param(c, name) || !name.len) {
            continue;
        }
        if (n == ES_VIEW_PARAMS_MAX) {
            es_fail(c, GK_INVALID, "invalid_parameter", "a state view takes at most 64 "
                    "parameters", NULL);
            return NULL;
        }
        all[n++] = (struct param){name, value};
    }
    sort_params(all, n);
    struct buf b;
    buf_init(&b);
    if (!params_json(all, n, &b)) {
        buf_fini(&b);
        es_fail(c, GK_INVALID, "invalid_parameter", "a state view parameter is a name and a "
                "value of at most 256 bytes each, without control characters", NULL);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* A time query parameter into *us; false after answering 400 (absent: true, *has false). */
static bool time_param(struct gate_call *c, const char *name, bool *has, int64_t *us)
{
    const char *v = http_req_query(c->req, name);
    *has = v != NULL;
    if (v && time_parse(v, strlen(v), us) != 0) {
        es_fail(c, GK_INVALID, "invalid_parameter", "an RFC 3339 date-time", name);
        return false;
    }
    return true;
}

/* revision, asOfTransactionTime, asOfEffectiveTime into j; false after answering 400. */
static bool read_point(struct gate_call *c, const struct comp_def *d, struct es_job *j)
{
    const char *rev = http_req_query(c->req, "revision");
    if (rev && (parse_u64(rev, &j->at.pos) != 0 || j->at.pos == 0)) {
        es_fail(c, GK_INVALID, "invalid_parameter", "revision is a whole number from 1",
                "revision");
        return false;
    }
    j->at.has_pos = rev != NULL;
    if (!time_param(c, "asOfTransactionTime", &j->at.has_time, &j->at.time_us) ||
        !time_param(c, "asOfEffectiveTime", &j->rd.has_effective, &j->rd.effective_us)) {
        return false;
    }
    j->rd.at = j->at.has_pos || j->at.has_time ? &j->at : NULL;
    struct buf t;
    buf_init(&t);
    if (!j->rd.has_effective && es_meta_string(d, "query_temporality", &t) &&
        !strcmp(t.ptr, "effective_timestamp")) {
        j->rd.has_effective = true; /* as of effective time: now */
        j->rd.effective_us = time_now_us();
    }
    buf_fini(&t);
    return true;
}

/* Only the current version of a view is served: ?version=N (a publish's Location) must be
 * it. False after answering 404. */
static bool version_param(struct gate_call *c, const struct comp_def *d)
{
    const char *v = http_req_query(c->req, "version");
    uint64_t n;
    if (v && (parse_u64(v, &n) != 0 || n != d->version)) {
        es_fail(c, GK_NOT_FOUND, "version_not_found", "only the current version of a state "
                "view is served", "version");
        return false;
    }
    return true;
}

/* Reads state view name of db (a reference, taken) for c's request. */
static void read_view(struct gate_call *c, struct db *db, const char *name)
{
    struct comp_set *set = set_of(c, db);
    const struct comp_def *d = set ? es_component_find(set, name, false) : NULL;
    struct es_job *j = es_job_new(c);
    struct buf ct;
    buf_init(&ct);
    bool ok = d != NULL;
    if (set && !d) {
        es_fail(c, GK_NOT_FOUND, "state_view_not_found", "no state view of that name", "view");
    }
    ok = ok && version_param(c, d) && read_point(c, d, j) && (j->text = view_params(c));
    if (ok) {
        snprintf(j->name, sizeof j->name, "%s", d->name);
        bool has = es_meta_string(d, "content_type", &ct) && es_media_type_ok(ct.ptr, ct.len);
        char *type = has ? xstrndup(ct.ptr, ct.len) : xstrndup("application/json", 16);
        http_set_user(c->req, type, free); /* lives as long as the request */
        j->content_type = type;
    }
    buf_fini(&ct);
    comp_set_unref(set);
    if (!ok) {
        es_job_free(j);
        engine_db_release(db);
        return;
    }
    es_job_submit(c, j, db, run_view);
}

void es_view_get(struct gate_call *c)
{
    struct db *db = c->db;
    c->db = NULL; /* the read's reference now */
    read_view(c, db, gate_param_str(c, "view"));
}

void es_v1_view_get(struct gate_call *c)
{
    struct db *db;
    if (es_acquire_named_db(c, http_req_query(c->req, "database"), &db)) {
        read_view(c, db, gate_param_str(c, "view"));
    }
}

/* ---- removing a state view ---- */

static void run_remove(void *arg, bool cancelled)
{
    struct es_job *j = arg;
    struct logic_guard guard = {COMP_VIEW, ES_FORMAT_NAME}; /* a state view, nothing else */
    int rc = cancelled ? ERR_SHUTDOWN : logic_remove_as(j->lg, j->db, j->name, &guard);
    struct buf b;
    buf_init(&b);
    if (rc == ERR_NOTFOUND) {
        es_job_fail(j, GK_NOT_FOUND, "state_view_not_found", "no state view of that name",
                    "view", NULL);
    } else if (rc == ERR_CONFLICT) {
        es_job_fail(j, GK_CONFLICT, "deploy_conflict", "other publications to this database "
                    "kept coming first; try again", NULL, NULL);
    } else if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(j->mount, j->req, &e);
    } else {
        http_respond(j->req, 204, &b, NULL);
    }
    es_job_free(j);
}

void es_view_delete(struct gate_call *c)
{
    struct comp_set *set = set_of(c, c->db);
    if (!set) {
        return;
    }
    const struct comp_def *d = es_component_find(set, gate_param_str(c, "view"), false);
    if (!d) {
        comp_set_unref(set);
        es_fail(c, GK_NOT_FOUND, "state_view_not_found", "no state view of that name", "view");
        return;
    }
    struct es_job *j = es_job_new(c);
    snprintf(j->name, sizeof j->name, "%s", d->name);
    comp_set_unref(set);
    struct db *db = c->db;
    c->db = NULL;
    es_job_submit(c, j, db, run_remove);
}
