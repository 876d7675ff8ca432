/* EvidentSource state changes at work (docs/dialects/evidentsource.md): POST
 * .../state-changes/{change}/process and the newer generation's POST /v1/commands run the
 * change's decide(command, ctx) on a worker (logic_command_with). Its events come back as
 * CloudEvents (the "cloudevents" format parses them), committed atomically with its
 * constraints and the conditions of what it read; ctx.metadata() answers the revision, the
 * effective time, the principal, the request's id and the process call's parameters. The
 * answer is {"success":true,"events":[CloudEvents with revision],"revision"}, or for the
 * handler's own rejection {"success":false,"error":{"code","message","details"}} (422,
 * nothing written). */
#include "dialect/evidentsource/views_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jsonx.h"
#include "logic/command.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/timeutil.h"

/* ---- the answer (worker) ---- */

static int on_event(void *arg, const struct event_rec *ev)
{
    es_event(arg, ev);
    return 0;
}

/* The committed events (native, with positions) read back as CloudEvents into out. */
static void written_events(struct db *db, struct slice native, struct buf *out)
{
    size_t pos = 0, n = 0;
    struct slice ev, p;
    buf_addc(out, '[');
    while (jsonx_next_item(native, &pos, &ev)) {
        char num[24];
        uint64_t at;
        if (!jsonx_member(ev, "position", &p) || p.len >= sizeof num) {
            continue;
        }
        memcpy(num, p.ptr, p.len);
        num[p.len] = '\0';
        size_t before = out->len;
        buf_adds(out, n ? "," : "");
        if (parse_u64(num, &at) != 0 || engine_read_event(db, at, on_event, out) != 0) {
            out->len = before; /* gone already (a retention of seconds): left out */
            continue;
        }
        n++;
    }
    buf_addc(out, ']');
}

static void answer_success(struct es_job *j, const struct command_result *r)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"success\":true,\"events\":");
    written_events(j->db, (struct slice){r->events.ptr, r->events.len}, &b);
    uint64_t rev = r->last_position ? r->last_position : engine_db_head(j->db);
    buf_printf(&b, ",\"revision\":%llu}", (unsigned long long)rev);
    out_json(j->req, 200, &b);
}

/* A member of the handler's error object as JSON text, or dflt. */
static void add_member(struct buf *b, struct slice err, const char *name, char kind,
                       const char *dflt)
{
    struct slice v;
    if (jsonx_kind(err) == '{' && jsonx_member(err, name, &v) && jsonx_kind(v) == kind) {
        buf_add(b, v.ptr, v.len);
    } else {
        buf_adds(b, dflt);
    }
}

/* The handler's rejection: {"success":false,"error":{"code","message","details"}}, 422. */
static void answer_rejection(struct es_job *j, const struct command_result *r)
{
    struct slice err = {r->rejection.ptr, r->rejection.len};
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"success\":false,\"error\":{\"code\":");
    add_member(&b, err, "code", '"', "\"REJECTED\"");
    buf_adds(&b, ",\"message\":");
    add_member(&b, err, "message", '"', "\"the state change rejected the command\"");
    buf_adds(&b, ",\"details\":");
    add_member(&b, err, "details", '{', "{}");
    buf_adds(&b, "}}");
    out_json(j->req, 422, &b);
}

/* The engine refused the decision's append for what deciding again cannot change. */
static void answer_refusal(struct es_job *j, enum append_conflict why)
{
    switch (why) {
    case CONFLICT_DELETED:
        es_job_fail(j, GK_GONE, "stream_deleted", "the decision writes to a stream deleted for "
                    "good; nothing was written", "events", NULL);
        break;
    case CONFLICT_TOO_LARGE:
        es_job_fail(j, GK_TOO_LARGE, "stream_too_large", "a stream would grow past the "
                    "database's maxStreamSizeBytes; nothing was written", "events", NULL);
        break;
    case CONFLICT_TOO_BROAD:
        es_job_fail(j, GK_INVALID, "condition_too_broad", "a constraint of the decision is not "
                    "narrowed by an index and the database is too large to check it",
                    "constraints", NULL);
        break;
    default:
        es_job_fail(j, GK_CONFLICT, "duplicate_event_id", "a CloudEvent (source, id) of the "
                    "decision is stored with other content; nothing was written", "events",
                    NULL);
    }
}

static void answer_command(struct es_job *j, int rc, const struct command_result *r,
                           const struct logic_error *le)
{
    if (rc == ERR_NOTFOUND) {
        es_job_fail(j, GK_NOT_FOUND, "state_change_not_found", "no state change of that name",
                    "change", NULL);
    } else if (rc && le->kind == LOGIC_E_WORKER) {
        es_job_fail_code(j, GK_UNAVAILABLE, "runtime_unavailable", le, NULL);
    } else if (rc && le->kind && rc != ERR_TOOBIG && rc != ERR_DENIED) {
        es_job_fail_code(j, GK_UNPROCESSABLE, "command_failed", le, NULL);
    } else if (rc == ERR_CONFLICT) {
        es_job_fail(j, GK_CONFLICT, "command_conflict", "the decision's constraints failed, or "
                    "what it read kept changing while it decided; nothing was written", NULL,
                    NULL);
    } else if (rc == ERR_DENIED) {
        answer_refusal(j, r->refusal);
    } else if (rc == ERR_TOOBIG) {
        es_job_fail(j, GK_TOO_LARGE, "too_many_events", "the decision's events are too many or "
                    "one is too large; nothing was written", "events", NULL);
    } else if (rc) {
        struct gate_error e;
        gate_engine_error(rc, &e);
        gate_fail_req(j->mount, j->req, &e);
    } else if (r->rejected) {
        answer_rejection(j, r);
    } else {
        answer_success(j, r);
    }
}

static void run_command(void *arg, bool cancelled)
{
    struct es_job *j = arg;
    struct command_result r;
    command_result_init(&r);
    struct logic_error le = {0};
    struct command_opts o = {.metadata = {j->meta, strlen(j->meta)}};
    int rc = cancelled ? ERR_SHUTDOWN
                       : logic_command_with(j->lg, j->db, j->name,
                                            (struct slice){j->text, strlen(j->text)}, &o, &r,
                                            &le);
    answer_command(j, rc, &r, &le);
    command_result_fini(&r);
    es_job_free(j);
}

/* ---- the request (I/O thread) ---- */

/* What ctx.metadata() answers (the logic layer adds "revision"): {"effective_time",
 * "principal", "correlation_id", "state_change", "state_view_name", "parameters"}. */
static char *command_metadata(const struct gate_call *c, const struct comp_def *d,
                              struct slice params)
{
    struct buf b, view;
    buf_init(&b);
    buf_init(&view);
    char now[TIME_RFC3339_LEN];
    time_format(time_now_us(), now);
    buf_printf(&b, "{\"effective_time\":\"%s\",\"principal\":", now);
    if (c->authed) {
        buf_add_json_str(&b, c->key.id, strlen(c->key.id));
    } else {
        buf_adds(&b, "null");
    }
    const char *rid = http_req_request_id(c->req);
    buf_adds(&b, ",\"correlation_id\":");
    buf_add_json_str(&b, rid ? rid : "", rid ? strlen(rid) : 0);
    buf_adds(&b, ",\"state_change\":");
    buf_add_json_str(&b, d->name, strlen(d->name));
    buf_adds(&b, ",\"state_view_name\":");
    if (es_meta_string(d, "state_view_name", &view)) {
        buf_add_json_str(&b, view.ptr, view.len);
    } else {
        buf_adds(&b, "null");
    }
    buf_adds(&b, ",\"parameters\":");
    jsonx_minify(params, &b);
    buf_addc(&b, '}');
    buf_fini(&view);
    return buf_steal(&b, NULL);
}

/* Runs change d (of db, a reference taken) on command with params. */
static void run(struct gate_call *c, struct db *db, const struct comp_def *d,
                struct slice command, struct slice params)
{
    struct es_job *j = es_job_new(c);
    snprintf(j->name, sizeof j->name, "%s", d->name);
    struct buf text;
    buf_init(&text);
    jsonx_minify(command, &text);
    j->text = buf_steal(&text, NULL);
    j->meta = command_metadata(c, d, params);
    es_job_submit(c, j, db, run_command);
}

/* The body as a JSON object (valid text), or false after answering. */
static bool object_body(struct gate_call *c, struct slice *body)
{
    struct parse_error pe;
    void *root = NULL;
    if (!es_json_body(c)) {
        return false;
    }
    *body = http_req_body(c->req);
    if (parse_json_object(*body, &root, &pe) != 0) {
        es_fail_parse(c, &pe);
        return false;
    }
    json_decref((json_t *)root);
    return true;
}

void es_change_process(struct gate_call *c)
{
    struct slice body, cmd = {NULL, 0}, params = {"{}", 2};
    if (!object_body(c, &body)) {
        return;
    }
    bool cmd_ok = jsonx_member(body, "command", &cmd) && jsonx_kind(cmd) == '{';
    if (!cmd_ok || (jsonx_member(body, "parameters", &params) && jsonx_kind(params) != '{')) {
        es_fail(c, GK_INVALID, "invalid_request", "the body is {\"command\": {...}, "
                "\"parameters\"?: {...}}", cmd_ok ? "parameters" : "command");
        return;
    }
    struct comp_set *set;
    int rc = logic_set(es_ctx_of(c)->logic, c->db, &set);
    if (rc) {
        gate_fail_engine(c, rc);
        return;
    }
    const struct comp_def *d = es_component_find(set, gate_param_str(c, "change"), true);
    if (!d) {
        es_fail(c, GK_NOT_FOUND, "state_change_not_found", "no state change of that name",
                "change");
    } else {
        struct db *db = c->db;
        c->db = NULL; /* the job's reference now */
        run(c, db, d, cmd, params);
    }
    comp_set_unref(set);
}

/* True when change d declares type among its command_types. */
static bool handles(const struct comp_def *d, struct slice type)
{
    struct slice types, it;
    if (!d->meta ||
        !jsonx_member((struct slice){d->meta, strlen(d->meta)}, "command_types", &types) ||
        jsonx_kind(types) != '[') {
        return false;
    }
    size_t pos = 0;
    while (jsonx_next_item(types, &pos, &it)) {
        if (it.len == type.len && !memcmp(it.ptr, type.ptr, type.len)) {
            return true;
        }
    }
    return false;
}

/* The state change for a command type (its JSON string): the first, by name, that lists it
 * in its command_types, else the one named as the type; NULL when none. */
static const struct comp_def *change_for(const struct comp_set *set, struct slice type,
                                         struct buf *name)
{
    for (size_t i = 0; i < set->count; i++) {
        if (es_component_is(&set->defs[i], true) && handles(&set->defs[i], type)) {
            return &set->defs[i];
        }
    }
    if (jsonx_string(type, name) != 0 || !name->len || memchr(name->ptr, '\0', name->len)) {
        return NULL;
    }
    buf_addc(name, '\0');
    return es_component_find(set, name->ptr, true);
}

/* POST /v1/commands {"database","command":{"type","subject"?,"data"?}} */
void es_v1_command(struct gate_call *c)
{
    struct slice body, dbname, cmd, type;
    if (!object_body(c, &body)) {
        return;
    }
    struct buf name;
    buf_init(&name);
    bool ok = jsonx_member(body, "database", &dbname) && jsonx_kind(dbname) == '"' &&
              jsonx_string(dbname, &name) == 0 && name.len &&
              !memchr(name.ptr, '\0', name.len);
    if (!ok || !jsonx_member(body, "command", &cmd) || jsonx_kind(cmd) != '{' ||
        !jsonx_member(cmd, "type", &type) || jsonx_kind(type) != '"') {
        buf_fini(&name);
        es_fail(c, GK_INVALID, "invalid_request", "the body is {\"database\", \"command\": "
                "{\"type\", \"subject\"?, \"data\"?}}", ok ? "command" : "database");
        return;
    }
    buf_addc(&name, '\0');
    struct db *db;
    ok = es_acquire_named_db(c, name.ptr, &db);
    buf_fini(&name);
    struct comp_set *set = NULL;
    int rc = ok ? logic_set(es_ctx_of(c)->logic, db, &set) : 0;
    const struct comp_def *d = NULL;
    buf_init(&name);
    if (ok && rc) {
        gate_fail_engine(c, rc);
    } else if (ok && !(d = change_for(set, type, &name))) {
        es_fail(c, GK_NOT_FOUND, "state_change_not_found", "no state change handles this "
                "command type", "command.type");
    }
    if (d) {
        run(c, db, d, cmd, (struct slice){"{}", 2});
    } else if (ok) {
        engine_db_release(db);
    }
    buf_fini(&name);
    comp_set_unref(set);
}
