/* logic/component: deploy bodies, names, kinds, bindings and the stored form. */
#include <string.h>

#include "logic/component.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

TEST(parses_each_kind_with_its_binding)
{
    struct comp_def d;
    struct comp_error err;
    ASSERT_EQ(comp_parse("orders", S("{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":"
                                     "\"function reduce(s,e) return s end\",\"category\":"
                                     "\"order\"}"), &d, &err), 0);
    CHECK(d.kind == COMP_REDUCER && d.lang == LOGIC_LANG_LUA && strcmp(d.category, "order") == 0);
    CHECK(d.filter == NULL && d.source_len == strlen("function reduce(s,e) return s end"));
    CHECK(strcmp(comp_entries(d.kind)[0], "reduce") == 0 && comp_entries(d.kind)[1] == NULL);
    comp_def_fini(&d);
    ASSERT_EQ(comp_parse("p.1", S("{\"kind\":\"projection\",\"language\":\"javascript\","
                                  "\"source\":\"x\",\"filter\":{ \"types\" : [\"A\"] }}"),
                         &d, &err), 0);
    ASSERT_STR(d.filter, "{\"types\":[\"A\"]}");
    CHECK(strcmp(comp_entries(d.kind)[1], "apply") == 0);
    comp_def_fini(&d);
    ASSERT_EQ(comp_parse("v", S("{\"kind\":\"view\",\"language\":\"ts\",\"source\":\"x\"}"), &d,
                         &err), 0);
    CHECK(d.filter == NULL && d.lang == LOGIC_LANG_TYPESCRIPT);
    comp_def_fini(&d);
}

TEST(refuses_bad_definitions_naming_the_member)
{
    static const struct {
        const char *name, *body, *field;
    } cases[] = {
        {"9lives", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"x\"}", "name"},
        {"a/b", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"x\"}", "name"},
        {"c", "{\"kind\":\"saga\",\"language\":\"lua\",\"source\":\"x\"}", "kind"},
        {"c", "{\"kind\":\"command\",\"language\":\"cobol\",\"source\":\"x\"}", "language"},
        {"c", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"\"}", "source"},
        {"c", "{\"kind\":\"command\",\"language\":\"lua\"}", "source"},
        {"r", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"x\"}", "category"},
        {"r", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"x\",\"category\":\"a-b\"}",
         "category"},
        {"c", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"x\",\"category\":\"a\"}",
         "category"},
        {"r", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"x\",\"category\":\"a\","
              "\"filter\":{}}", "filter"},
        {"p", "{\"kind\":\"projection\",\"language\":\"lua\",\"source\":\"x\",\"filter\":[1]}",
         "filter"},
        {"c", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"x\",\"extra\":1}", ""},
        {"c", "[1]", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct comp_def d;
        struct comp_error err;
        ASSERT_EQ(comp_parse(cases[i].name, S(cases[i].body), &d, &err), ERR_INVALID);
        ASSERT_STR(err.field, cases[i].field);
        CHECK(err.message[0]);
    }
}

TEST(stored_form_round_trips)
{
    struct comp_def d, back;
    struct comp_error err;
    ASSERT_EQ(comp_parse("orders", S("{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":"
                                     "\"-- \\\"quoted\\\"\\nfunction reduce(s,e) end\","
                                     "\"category\":\"order\"}"), &d, &err), 0);
    d.version = 3;
    struct buf b;
    buf_init(&b);
    comp_to_json(&d, &b);
    ASSERT_EQ(comp_from_json((struct slice){b.ptr, b.len}, &back), 0);
    CHECK(back.version == 3 && back.kind == d.kind && back.lang == d.lang);
    CHECK(strcmp(back.name, "orders") == 0 && strcmp(back.category, "order") == 0);
    CHECK(back.source_len == d.source_len && memcmp(back.source, d.source, d.source_len) == 0);
    comp_def_fini(&back);
    ASSERT_EQ(comp_from_json(S("{\"name\":\"x\"}"), &back), ERR_CORRUPT);
    buf_fini(&b);
    comp_def_fini(&d);
    comp_def_fini(&back);
}

TEST(projection_webhook_parses_round_trips_and_copies)
{
    struct comp_def d, back, copy;
    struct comp_error err;
    ASSERT_EQ(comp_parse("p", S("{\"kind\":\"projection\",\"language\":\"lua\",\"source\":"
                                "\"x\",\"webhook\":{\"url\": \"https://h.example/x\",\"headers\":"
                                "{\"X-A\":\"1\"},\"maxAttempts\":3,\"backoffMs\":0,"
                                "\"isolateSecret\":true}}"), &d, &err), 0);
    ASSERT_STR(d.webhook, "{\"url\":\"https://h.example/x\",\"headers\":{\"X-A\":\"1\"},"
                          "\"maxAttempts\":3,\"backoffMs\":0,\"isolateSecret\":true}");
    struct comp_webhook hook;
    ASSERT_EQ(comp_webhook_parse(S(d.webhook), &hook, &err), 0);
    CHECK(strcmp(hook.url, "https://h.example/x") == 0 && hook.nheaders == 1 &&
          strcmp(hook.headers[0], "X-A: 1") == 0 && hook.max_attempts == 3 &&
          hook.backoff_ms == 0 && hook.isolate);
    ASSERT_EQ(comp_webhook_parse(S("{\"url\":\"http://h\"}"), &hook, &err), 0);
    CHECK(hook.max_attempts == 5 && hook.backoff_ms == 1000 && !hook.isolate);
    d.version = 2;
    struct buf b;
    buf_init(&b);
    comp_to_json(&d, &b);
    ASSERT_EQ(comp_from_json((struct slice){b.ptr, b.len}, &back), 0);
    ASSERT_STR(back.webhook, d.webhook);
    comp_def_copy(&copy, &back);
    CHECK(copy.webhook != back.webhook && strcmp(copy.webhook, d.webhook) == 0);
    buf_fini(&b);
    comp_def_fini(&copy);
    comp_def_fini(&back);
    comp_def_fini(&d);
    static const char *const bad[] = {
        "{\"url\":\"http://h\",\"maxAttempts\":21}", "{\"url\":\"http://h\",\"maxAttempts\":-1}",
        "{\"url\":\"http://h\",\"backoffMs\":3600001}", "{\"url\":\"mailto:x\"}", "[]",
        "{\"url\":\"http://h\",\"headers\":{\"Webhook-Signature\":\"x\"}}",
        "{\"url\":\"http://h\",\"headers\":{\"A B\":\"x\"}}",
        "{\"url\":\"http://h\",\"headers\":{\"A\":1}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(comp_webhook_parse(S(bad[i]), &hook, &err) == ERR_INVALID);
    }
}

TEST(category_of_a_stream)
{
    struct slice c = comp_category_of(S("order-12-a"));
    CHECK(c.len == 5 && memcmp(c.ptr, "order", 5) == 0);
    c = comp_category_of(S("single"));
    CHECK(c.len == 6);
}

/* ---- the registry over a real engine ---- */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "logic/registry.h"
#include "util/limits.h"

static struct engine *open_engine(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/annals-comp-%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    struct engine_config cfg = {.data_dir = dir};
    cfg.limits = (struct limits){.body_bytes = LIMIT_DEFAULT_BODY_BYTES,
                                 .batch_events = LIMIT_DEFAULT_BATCH_EVENTS,
                                 .event_bytes = LIMIT_DEFAULT_EVENT_BYTES,
                                 .map_bytes = 1ull << 30,
                                 .idem_ttl_s = LIMIT_DEFAULT_IDEM_TTL_S};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    return e;
}

static void def_of(struct comp_def *d, const char *name, const char *body, uint64_t version)
{
    struct comp_error err;
    ASSERT_EQ(comp_parse(name, S(body), d, &err), 0);
    d->version = version;
}

TEST(registry_deploys_redeploys_and_removes)
{
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct comp_set *set;
    ASSERT_EQ(comp_set_read(db, &set), 0);
    CHECK(set->count == 0 && set->stream_version == 0);
    CHECK(comp_set_next_version(set, "orders") == 1);
    struct comp_set *gone = comp_set_next(set, NULL, "nothing", 0); /* from an empty set */
    CHECK(gone->count == 0 && gone->stream_version == 1);
    comp_set_unref(gone);
    struct comp_def d;
    def_of(&d, "orders", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"a\","
                         "\"category\":\"order\"}", 1);
    ASSERT_EQ(comp_deploy(db, &d, set->stream_version), 0);
    /* a deploy against the set read before it is refused: versions stay in order */
    ASSERT_EQ(comp_deploy(db, &d, set->stream_version), ERR_CONFLICT);
    comp_def_fini(&d);
    comp_set_unref(set);
    ASSERT_EQ(comp_set_read(db, &set), 0);
    CHECK(set->count == 1 && set->stream_version == 1);
    const struct comp_def *r = comp_set_reducer_for(set, S("order-17"));
    CHECK(r && r->version == 1 && strcmp(r->source, "a") == 0 && r->deployed_us > 0);
    CHECK(comp_set_reducer_for(set, S("user-1")) == NULL);
    def_of(&d, "orders", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"b\","
                         "\"category\":\"order\"}", comp_set_next_version(set, "orders"));
    ASSERT_EQ(comp_deploy(db, &d, set->stream_version), 0);
    comp_def_fini(&d);
    def_of(&d, "totals", "{\"kind\":\"projection\",\"language\":\"lua\",\"source\":\"p\"}", 1);
    ASSERT_EQ(comp_deploy(db, &d, 2), 0);
    comp_def_fini(&d);
    comp_set_unref(set);
    ASSERT_EQ(comp_set_read(db, &set), 0);
    CHECK(set->count == 2 && strcmp(set->defs[0].name, "orders") == 0);
    CHECK(comp_set_find(set, "orders")->version == 2);
    CHECK(strcmp(comp_set_find(set, "orders")->source, "b") == 0);
    ASSERT_EQ(comp_remove(db, "orders", set->stream_version), 0);
    struct comp_set *old = set;
    ASSERT_EQ(comp_set_read(db, &set), 0);
    CHECK(set->count == 1 && comp_set_find(set, "orders") == NULL);
    CHECK(comp_set_next_version(set, "orders") == 3); /* versions are never reused */
    CHECK(comp_set_find(old, "orders") != NULL);     /* an older set stays as it was */
    comp_set_unref(old);
    /* the set made without reading equals the one read, after a deploy and after a removal */
    def_of(&d, "orders", "{\"kind\":\"reducer\",\"language\":\"lua\",\"source\":\"c\","
                         "\"category\":\"order\"}", comp_set_next_version(set, "orders"));
    ASSERT_EQ(comp_deploy(db, &d, set->stream_version), 0);
    struct comp_set *made = comp_set_next(set, &d, NULL, d.deployed_us), *read;
    ASSERT_EQ(comp_set_read(db, &read), 0);
    CHECK(made->count == read->count && made->stream_version == read->stream_version);
    for (size_t i = 0; i < read->count; i++) {
        CHECK(strcmp(made->defs[i].name, read->defs[i].name) == 0);
        CHECK(made->defs[i].version == read->defs[i].version);
        CHECK(strcmp(made->defs[i].source, read->defs[i].source) == 0);
    }
    CHECK(comp_set_next_version(made, "orders") == comp_set_next_version(read, "orders"));
    comp_def_fini(&d);
    ASSERT_EQ(comp_remove(db, "totals", read->stream_version), 0);
    struct comp_set *made2 = comp_set_next(read, NULL, "totals", 0), *read2;
    ASSERT_EQ(comp_set_read(db, &read2), 0);
    CHECK(made2->count == read2->count && read2->count == 1 && !comp_set_find(made2, "totals"));
    CHECK(comp_set_next_version(made2, "totals") == comp_set_next_version(read2, "totals"));
    comp_set_unref(made);
    comp_set_unref(read);
    comp_set_unref(made2);
    comp_set_unref(read2);
    comp_set_unref(set);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
}

/* ---- eventFormat and meta ---- */

TEST(event_format_and_meta_are_kept_with_the_definition)
{
    struct comp_def d, back;
    struct comp_error err;
    ASSERT_EQ(comp_parse("v", S("{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\","
                                "\"eventFormat\":\"cloud-events_1\",\"meta\":{ \"a\" : [1, 2] }}"),
                         &d, &err), 0);
    ASSERT_STR(d.event_format, "cloud-events_1");
    ASSERT_STR(d.meta, "{\"a\":[1,2]}");
    d.version = 3;
    struct buf b;
    buf_init(&b);
    comp_to_json(&d, &b);
    ASSERT_EQ(comp_from_json((struct slice){b.ptr, b.len}, &back), 0);
    ASSERT_STR(back.event_format, "cloud-events_1");
    ASSERT_STR(back.meta, "{\"a\":[1,2]}");
    struct comp_def copy;
    comp_def_copy(&copy, &back);
    ASSERT_STR(copy.event_format, "cloud-events_1");
    comp_def_fini(&copy);
    comp_def_fini(&back);
    comp_def_fini(&d);
    ASSERT_EQ(comp_parse("v", S("{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\","
                                "\"eventFormat\":null,\"meta\":null}"), &d, &err), 0);
    CHECK(d.event_format == NULL && d.meta == NULL);
    comp_def_fini(&d);
    static const char *const bad[][2] = {
        {"{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"eventFormat\":\"Cloud\"}",
         "eventFormat"},
        {"{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"eventFormat\":\"\"}",
         "eventFormat"},
        {"{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"eventFormat\":1}",
         "eventFormat"},
        {"{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"meta\":[1]}", "meta"},
        {"{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"meta\":\"m\"}", "meta"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(comp_parse("v", S(bad[i][0]), &d, &err), ERR_INVALID);
        ASSERT_STR(err.field, bad[i][1]);
    }
    buf_reset(&b);
    buf_adds(&b, "{\"kind\":\"view\",\"language\":\"lua\",\"source\":\"x\",\"meta\":{\"m\":\"");
    for (int i = 0; i < COMP_META_BYTES; i++) {
        buf_addc(&b, 'm');
    }
    buf_adds(&b, "\"}}");
    ASSERT_EQ(comp_parse("v", (struct slice){b.ptr, b.len}, &d, &err), ERR_INVALID);
    ASSERT_STR(err.field, "meta");
    buf_fini(&b);
}

/* A format for the test: events are {"fake":1,"type","pos","data"}; the code returns
 * {"s": stream, "t": type, "when"?: time, ...} (the whole object becomes the data), queries
 * with {"t": type} and conditions {"none": type} (no such event at all). */
#include "api/groups_api.h"
#include "json/jsonx.h"
#include "logic/command.h"
#include "logic/logic.h"
#include "ops/out.h"

static void fake_render(struct buf *out, const struct event_rec *ev)
{
    buf_adds(out, "{\"fake\":1,\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_printf(out, ",\"pos\":%llu,\"data\":", (unsigned long long)ev->position);
    buf_add(out, ev->data.ptr, ev->data.len);
    buf_addc(out, '}');
}

static int fake_parse(struct slice ev, size_t index, const char *component, struct buf *native,
                      char *why, size_t cap)
{
    struct slice s, t, when;
    if (!jsonx_member(ev, "s", &s) || !jsonx_member(ev, "t", &t)) {
        snprintf(why, cap, "event %zu of %s: s and t are required", index, component);
        return ERR_INVALID;
    }
    buf_adds(native, "{\"stream\":");
    buf_add(native, s.ptr, s.len);
    buf_adds(native, ",\"type\":");
    buf_add(native, t.ptr, t.len);
    if (jsonx_member(ev, "when", &when)) {
        buf_adds(native, ",\"time\":");
        buf_add(native, when.ptr, when.len);
    }
    buf_adds(native, ",\"data\":");
    buf_add(native, ev.ptr, ev.len);
    buf_addc(native, '}');
    return 0;
}

static int fake_filter(struct slice arg, struct buf *out, char *why, size_t cap)
{
    struct slice t;
    if (!jsonx_member(arg, "t", &t)) {
        snprintf(why, cap, "a query is {t = type}");
        return ERR_INVALID;
    }
    buf_adds(out, "{\"types\":[");
    buf_add(out, t.ptr, t.len);
    buf_adds(out, "]}");
    return 0;
}

static int fake_condition(struct slice c, size_t index, struct buf *out, char *why, size_t cap)
{
    (void)index;
    struct slice t, n;
    if (jsonx_member(c, "some", &t) && jsonx_member(c, "from", &n)) { /* L >= from */
        buf_adds(out, "{\"query\":{\"types\":[");
        buf_add(out, t.ptr, t.len);
        buf_adds(out, "]},\"min\":");
        buf_add(out, n.ptr, n.len);
        buf_addc(out, '}');
        return 0;
    }
    if (!jsonx_member(c, "none", &t)) {
        snprintf(why, cap, "a condition is {none = type}");
        return ERR_INVALID;
    }
    buf_adds(out, "{\"failIfEventsMatch\":{\"types\":[");
    buf_add(out, t.ptr, t.len);
    buf_adds(out, "]},\"after\":0}");
    return 0;
}

static const struct logic_event_format FAKE = {.name = "fake", .render = fake_render,
                                               .parse = fake_parse, .filter = fake_filter,
                                               .condition = fake_condition};

static void deploy(struct logic *lg, struct db *db, const char *name, const char *body, int want)
{
    struct comp_def d;
    struct comp_error ce;
    ASSERT_EQ(comp_parse(name, S(body), &d, &ce), 0);
    struct logic_error le = {0};
    int rc = logic_deploy(lg, db, &d, &le);
    if (rc != want) {
        fprintf(stderr, "  deploy %s: %d %s\n", name, rc, le.message);
    }
    ASSERT_EQ(rc, want);
    if (want == ERR_INVALID) {
        ASSERT_EQ(le.kind, LOGIC_E_INVALID);
        CHECK(strstr(le.message, "eventFormat") && strstr(le.message, "fake"));
    }
    comp_def_fini(&d);
}

static int command(struct logic *lg, struct db *db, const char *cmd, struct command_result *r)
{
    struct command_opts o = {.metadata = S("{\"principal\":\"alice\",\"revision\":99}")};
    struct logic_error le = {0};
    command_result_fini(r);
    command_result_init(r);
    int rc = logic_command_with(lg, db, "mk", S(cmd), &o, r, &le);
    if (rc && rc != ERR_CONFLICT) {
        fprintf(stderr, "  command: %d %s\n", rc, le.message);
    }
    return rc;
}

static int on_read(void *arg, const struct event_rec *ev)
{
    struct buf *b = arg;
    buf_reset(b);
    buf_add(b, ev->data.ptr, ev->data.len);
    return 0;
}

static void view_n(struct logic *lg, struct db *db, const struct logic_view_read *rd,
                   const char *want)
{
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    ASSERT_EQ(logic_view_at(lg, db, "v", S("{}"), rd, &st, &le), 0);
    buf_addc(&st.state, '\0');
    ASSERT_STR(st.state.ptr, want);
    logic_state_fini(&st);
}

TEST(event_formats_shape_what_code_sees_and_returns)
{
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct logic_env *env;
    struct logic_env_config ec = {0};
    ASSERT_EQ(logic_env_new(&ec, &env), 0);
    static const struct logic_event_format *const formats[] = {&FAKE, NULL};
    struct logic_config cfg = {.engine = e, .env = env, .format_event = out_event,
                               .parse_filter = groups_parse_filter, .event_formats = formats};
    logic_limits_default(&cfg.limits);
    struct logic *lg;
    ASSERT_EQ(logic_new(&cfg, &lg), 0);
    deploy(lg, db, "bad", "{\"kind\":\"command\",\"language\":\"lua\",\"source\":\"function "
           "decide() end\",\"eventFormat\":\"nope\"}", ERR_INVALID);
    deploy(lg, db, "mk", "{\"kind\":\"command\",\"language\":\"lua\",\"eventFormat\":\"fake\","
           "\"source\":\"function decide(cmd, ctx) local m = ctx.metadata() "
           "local seen = ctx.query({t = 'T'}) "
           "local c = {} if cmd.block then c = {{none = 'T'}} end "
           "if cmd.from then c = {{some = 'T', from = cmd.from}} end "
           "return {events = {{s = 's-1', t = 'T', when = cmd.when, n = #seen, "
           "who = m.principal, rev = m.revision, fake = seen[1] and seen[1].fake}}, "
           "constraints = c} end\"}", 0);
    deploy(lg, db, "v", "{\"kind\":\"view\",\"language\":\"lua\",\"eventFormat\":\"fake\","
           "\"source\":\"function evolve(s, e, p) s = s or {n = 0} "
           "if e.fake == 1 then s.n = s.n + 1 s.last = e.data.n end return s end\"}", 0);
    uint64_t head = engine_db_head(db);
    struct command_result r;
    command_result_init(&r);
    ASSERT_EQ(command(lg, db, "{\"when\":\"2020-01-01T00:00:00Z\"}", &r), 0);
    struct buf data;
    buf_init(&data);
    ASSERT_EQ(engine_read_event(db, r.last_position, on_read, &data), 0);
    buf_addc(&data, '\0');
    CHECK(strstr(data.ptr, "\"n\":0") && strstr(data.ptr, "\"who\":\"alice\""));
    char rev[32];
    snprintf(rev, sizeof rev, "\"rev\":%llu", (unsigned long long)head);
    CHECK(strstr(data.ptr, rev)); /* the revision is the server's, not the caller's 99 */
    ASSERT_EQ(command(lg, db, "{\"when\":\"2030-01-01T00:00:00Z\"}", &r), 0);
    ASSERT_EQ(engine_read_event(db, r.last_position, on_read, &data), 0);
    buf_addc(&data, '\0');
    CHECK(strstr(data.ptr, "\"n\":1") && strstr(data.ptr, "\"fake\":1")); /* ctx.query: fake */
    /* the condition in the format's form: no T event may exist, so it always fails */
    ASSERT_EQ(command(lg, db, "{\"block\":true}", &r), ERR_CONFLICT);
    /* {query, min}: a T event at or after position 1000 must exist (none does), then 1 */
    ASSERT_EQ(command(lg, db, "{\"from\":1000}", &r), ERR_CONFLICT);
    ASSERT_EQ(command(lg, db, "{\"from\":1,\"when\":\"2030-01-01T00:00:00Z\"}", &r), 0);
    view_n(lg, db, NULL, "{\"last\":2,\"n\":3}");
    struct logic_view_read rd = {.has_effective = true, .effective_us = 1735689600000000ll};
    view_n(lg, db, &rd, "{\"last\":0,\"n\":1}"); /* 2025: the 2030 event is not effective */
    rd.effective_us = 1577836800000000ll;
    view_n(lg, db, &rd, "{\"last\":0,\"n\":1}"); /* at its effective time exactly */
    rd.effective_us -= 1;
    view_n(lg, db, &rd, "null");
    struct as_of at = {.has_pos = true, .pos = head + 1};
    struct logic_view_read rev1 = {.at = &at};
    view_n(lg, db, &rev1, "{\"last\":0,\"n\":1}");
    /* guards: a surface that owns only views of its format replaces and removes only those */
    struct logic_guard views_of_fake = {COMP_VIEW, "fake"}, plain_views = {COMP_VIEW, NULL};
    struct comp_def d;
    struct comp_error ce;
    struct logic_error le = {0};
    ASSERT_EQ(comp_parse("mk", S("{\"kind\":\"view\",\"language\":\"lua\",\"eventFormat\":"
                                 "\"fake\",\"source\":\"function evolve(s, e) return s end\"}"),
                         &d, &ce), 0);
    ASSERT_EQ(logic_deploy_as(lg, db, &d, &views_of_fake, &le), ERR_EXISTS); /* a command */
    comp_def_fini(&d);
    ASSERT_EQ(comp_parse("v", S("{\"kind\":\"view\",\"language\":\"lua\",\"eventFormat\":"
                                "\"fake\",\"source\":\"function evolve(s, e) return s end\"}"),
                         &d, &ce), 0);
    ASSERT_EQ(logic_deploy_as(lg, db, &d, &plain_views, &le), ERR_EXISTS); /* has a format */
    ASSERT_EQ(logic_deploy_as(lg, db, &d, &views_of_fake, &le), 0);
    comp_def_fini(&d);
    ASSERT_EQ(logic_remove_as(lg, db, "mk", &views_of_fake), ERR_NOTFOUND);
    ASSERT_EQ(logic_remove_as(lg, db, "v", &plain_views), ERR_NOTFOUND);
    ASSERT_EQ(logic_remove_as(lg, db, "v", &views_of_fake), 0);
    ASSERT_EQ(logic_remove(lg, db, "mk"), 0);
    command_result_fini(&r);
    buf_fini(&data);
    logic_free(lg);
    logic_env_free(env);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
}

/* ---- Tick reducers, documents and atomic deploys ---- */

/* A format shaped as j17 events: {"type","key","id","data","metadata"}, the key being the
 * stream's name and the id what follows its first '-'. */
static void j17ish_render(struct buf *out, const struct event_rec *ev)
{
    const char *dash = memchr(ev->stream.ptr, '-', ev->stream.len);
    size_t id_at = dash ? (size_t)(dash - ev->stream.ptr) + 1 : 0;
    buf_adds(out, "{\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"key\":");
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    buf_adds(out, ",\"id\":");
    buf_add_json_str(out, ev->stream.ptr + id_at, ev->stream.len - id_at);
    buf_adds(out, ",\"data\":");
    buf_add(out, ev->data.ptr, ev->data.len);
    buf_adds(out, ",\"metadata\":");
    buf_add(out, ev->metadata.ptr, ev->metadata.len);
    buf_addc(out, '}');
}

static const struct logic_event_format J17ISH = {.name = "j17ish", .render = j17ish_render,
                                                 .parse = fake_parse};

/* Appends one event to stream; its record (slices borrowed from the arguments) in *rec. */
static void append(struct db *db, const char *stream, const char *type, const char *data,
                   struct event_rec *rec)
{
    struct append_event ev = {.type = S(type), .data = S(data), .metadata = S("{}"),
                              .tags = S("[]")};
    struct append_part part = {.stream = S(stream), .events = &ev, .count = 1,
                               .expect = {EXPECT_ANY, 0}};
    struct append_req req = {.parts = &part, .nparts = 1};
    buf_init(&req.answer);
    ASSERT_EQ(engine_append_wait(db, &req), 0);
    ASSERT_EQ(req.err, 0);
    buf_fini(&req.answer);
    if (rec) {
        *rec = (struct event_rec){.position = ev.position, .version = ev.version,
                                  .recorded_us = req.recorded_us, .stream = S(stream),
                                  .type = S(type), .data = S(data), .metadata = S("{}"),
                                  .tags = S("[]")};
    }
}

/* The state of stream under the reducer of its category, checked against want. */
static void state_is(struct logic *lg, struct db *db, const char *stream, const char *want,
                     uint64_t reducer_version)
{
    struct logic_state st;
    logic_state_init(&st);
    struct logic_error le = {0};
    bool none = false;
    int rc = logic_stream_state_as(lg, db, S(stream), (struct slice){NULL, 0}, NULL, &st, &none,
                                   &le);
    if (rc) {
        fprintf(stderr, "  state of %s: %d %s\n", stream, rc, le.message);
    }
    ASSERT_EQ(rc, 0);
    buf_addc(&st.state, '\0');
    ASSERT_STR(st.state.ptr, want);
    ASSERT_EQ(st.reducer_version, reducer_version);
    logic_state_fini(&st);
}

static struct logic *open_logic(struct engine *e, struct logic_env **env)
{
    static const struct logic_event_format *const formats[] = {&J17ISH, NULL};
    struct logic_env_config ec = {0};
    ASSERT_EQ(logic_env_new(&ec, env), 0);
    struct logic_config cfg = {.engine = e, .env = *env, .format_event = out_event,
                               .parse_filter = groups_parse_filter, .event_formats = formats};
    logic_limits_default(&cfg.limits);
    struct logic *lg;
    ASSERT_EQ(logic_new(&cfg, &lg), 0);
    return lg;
}

static void def_json(struct comp_def *d, const char *name, const char *kind, const char *lang,
                     const char *category, const char *format, const char *source)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"kind\":\"%s\",\"language\":\"%s\",\"source\":", kind, lang);
    buf_add_json_str(&b, source, strlen(source));
    if (category) {
        buf_printf(&b, ",\"category\":\"%s\"", category);
    }
    if (format) {
        buf_printf(&b, ",\"eventFormat\":\"%s\"", format);
    }
    buf_addc(&b, '}');
    struct comp_error ce;
    int rc = comp_parse(name, (struct slice){b.ptr, b.len}, d, &ce);
    if (rc) {
        fprintf(stderr, "  %s: %s %s\n", name, ce.field, ce.message);
    }
    ASSERT_EQ(rc, 0);
    buf_fini(&b);
}

static const char USERS_V1[] =
    "{\"Created\": {\"set\": {\"target\": \"name\", \"value\": \"$.data.name\"}},"
    " \"Renamed\": [{\"set\": {\"target\": \"name\", \"value\": \"$.data.name\"}},"
    " {\"increment\": {\"target\": \"renames\"}}]}";
static const char USERS_V2[] =
    "{\"Created\": {\"set\": {\"target\": \"who\", \"value\": \"$.data.name\"}},"
    " \"Renamed\": {\"increment\": {\"target\": \"changes\", \"by\": 10}}}";

TEST(tick_reducers_fold_stream_state)
{
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct logic_env *env;
    struct logic *lg = open_logic(e, &env);
    struct comp_def d;
    struct logic_error le = {0};
    /* native events: $.data and $.type read the same members as in a j17 event */
    def_json(&d, "users", "reducer", "tick", "user", NULL, USERS_V1);
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    comp_def_fini(&d);
    /* a j17-shaped format: $.id and $.key too */
    def_json(&d, "accounts", "reducer", "tick", "acct", "j17ish",
             "{\"Opened\": {\"set\": {\"target\": \"\", \"value\": {\"id\": \"$.id\", "
             "\"key\": \"$.key\", \"owner\": \"$.data.owner\"}}}}");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    comp_def_fini(&d);
    /* a Tick module that does not compile is refused at deploy, naming the event type */
    def_json(&d, "broken", "reducer", "tick", "brk", NULL, "{\"X\": {\"nope\": {}}}");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), ERR_INVALID);
    ASSERT_EQ(le.kind, LOGIC_E_SYNTAX);
    CHECK(strncmp(le.message, "X: $", 4) == 0);
    comp_def_fini(&d);
    /* ... and so is one for a kind whose entries it does not define */
    def_json(&d, "tview", "view", "tick", NULL, NULL, "{}");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), ERR_INVALID);
    ASSERT_EQ(le.kind, LOGIC_E_MISSING);
    comp_def_fini(&d);
    append(db, "user-1", "Created", "{\"name\":\"Ada\"}", NULL);
    append(db, "user-1", "Deleted", "{}", NULL); /* no handler: unchanged */
    append(db, "user-1", "Renamed", "{\"name\":\"Ada L\"}", NULL);
    append(db, "acct-7", "Opened", "{\"owner\":\"bo\"}", NULL);
    state_is(lg, db, "user-1", "{\"name\":\"Ada L\",\"renames\":1}", 1);
    state_is(lg, db, "acct-7", "{\"id\":\"7\",\"key\":\"acct-7\",\"owner\":\"bo\"}", 1);
    /* the state right after an append, from the state in memory */
    struct event_rec rec;
    append(db, "user-1", "Renamed", "{\"name\":\"Ada B\"}", &rec);
    struct logic_state st;
    logic_state_init(&st);
    bool none = false;
    ASSERT_EQ(logic_state_after(lg, db, S("user-1"), &rec, 1, &st, &none, &le), 0);
    ASSERT_EQ(st.folded, 1);
    buf_addc(&st.state, '\0');
    ASSERT_STR(st.state.ptr, "{\"name\":\"Ada B\",\"renames\":2}");
    logic_state_fini(&st);
    logic_free(lg);
    logic_env_free(env);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
}

TEST(documents_are_kept_like_code_and_never_run)
{
    struct comp_def d, back;
    struct comp_error ce;
    ASSERT_EQ(comp_parse("spec", S("{\"kind\":\"document\",\"language\":\"json\","
                                   "\"source\":\"{\\\"aggregates\\\":{}}\","
                                   "\"eventFormat\":\"j17ish\"}"), &d, &ce), 0);
    CHECK(d.kind == COMP_DOCUMENT && d.lang == LOGIC_LANG_JSON);
    CHECK(comp_entries(COMP_DOCUMENT)[0] == NULL);
    ASSERT_STR(comp_kind_name(COMP_DOCUMENT), "document");
    d.version = 2;
    struct buf b;
    buf_init(&b);
    comp_to_json(&d, &b);
    buf_addc(&b, '\0');
    CHECK(strstr(b.ptr, "\"kind\":\"document\",\"language\":\"json\""));
    ASSERT_EQ(comp_from_json((struct slice){b.ptr, b.len - 1}, &back), 0);
    CHECK(back.kind == COMP_DOCUMENT && back.lang == LOGIC_LANG_JSON && back.version == 2);
    comp_def_fini(&back);
    buf_fini(&b);
    comp_def_fini(&d);
    /* json is a document's language only; a document binds to nothing */
    static const char *const bad[][2] = {
        {"{\"kind\":\"document\",\"language\":\"lua\",\"source\":\"{}\"}", "language"},
        {"{\"kind\":\"reducer\",\"language\":\"json\",\"source\":\"{}\",\"category\":\"a\"}",
         "language"},
        {"{\"kind\":\"document\",\"language\":\"json\",\"source\":\"{}\",\"category\":\"a\"}",
         "category"},
        {"{\"kind\":\"document\",\"language\":\"json\",\"source\":\"{}\",\"filter\":{}}",
         "filter"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(comp_parse("spec", S(bad[i][0]), &d, &ce), ERR_INVALID);
        ASSERT_STR(ce.field, bad[i][1]);
    }
    /* deployed: its source must be JSON; it is listed, found, and nothing runs it */
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct logic_env *env;
    struct logic *lg = open_logic(e, &env);
    struct logic_error le = {0};
    def_json(&d, "spec", "document", "json", NULL, NULL, "{\"a\": [1, 2");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), ERR_INVALID);
    ASSERT_EQ(le.kind, LOGIC_E_INVALID);
    CHECK(strstr(le.message, "not a JSON document"));
    comp_def_fini(&d);
    def_json(&d, "spec", "document", "json", NULL, NULL, "{\"a\": [1, 2]}");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    ASSERT_EQ(d.version, 1);
    comp_def_fini(&d);
    struct comp_set *set;
    ASSERT_EQ(logic_set(lg, db, &set), 0);
    const struct comp_def *found = comp_set_find(set, "spec");
    CHECK(found && found->kind == COMP_DOCUMENT && !strcmp(found->source, "{\"a\": [1, 2]}"));
    CHECK(comp_set_reducer_of(set, S("spec")) == NULL);
    comp_set_unref(set);
    struct logic_state st;
    logic_state_init(&st);
    ASSERT_EQ(logic_view(lg, db, "spec", S("{}"), NULL, &st, &le), ERR_NOTFOUND);
    logic_state_fini(&st);
    ASSERT_EQ(logic_remove(lg, db, "spec"), 0);
    logic_free(lg);
    logic_env_free(env);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
}

static uint64_t logic_stream_version(struct logic *lg, struct db *db)
{
    struct comp_set *set;
    ASSERT_EQ(logic_set(lg, db, &set), 0);
    uint64_t v = set->stream_version;
    comp_set_unref(set);
    return v;
}

TEST(deploy_many_is_one_commit_and_replaced_states_are_not_served)
{
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct logic_env *env;
    struct logic *lg = open_logic(e, &env);
    struct logic_error le = {0};
    struct comp_def d;
    def_json(&d, "users", "reducer", "tick", "user", NULL, USERS_V1);
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    comp_def_fini(&d);
    def_json(&d, "old", "view", "lua", NULL, NULL, "function evolve(s, e) return s end");
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    comp_def_fini(&d);
    /* v1's state: 20 events (a snapshot is stored) and the newest state in memory */
    struct event_rec rec;
    append(db, "user-1", "Created", "{\"name\":\"Ada\"}", NULL);
    for (int i = 0; i < 19; i++) {
        append(db, "user-1", "Renamed", "{\"name\":\"Ada L\"}", NULL);
    }
    state_is(lg, db, "user-1", "{\"name\":\"Ada L\",\"renames\":19}", 1);
    uint64_t before = logic_stream_version(lg, db);
    /* a failing def writes nothing (checked before the lock) */
    struct comp_def defs[4];
    def_json(&defs[0], "spec", "document", "json", NULL, NULL, "{\"v\": 2}");
    def_json(&defs[1], "users", "reducer", "tick", "user", NULL, USERS_V2);
    def_json(&defs[2], "orders", "reducer", "tick", "order", NULL, "{\"X\": {\"bad\": 1}}");
    const char *const removals[] = {"old", "never-deployed"};
    size_t failed = 99;
    ASSERT_EQ(logic_deploy_many(lg, db, defs, 3, removals, 2, NULL, &le, &failed), ERR_INVALID);
    ASSERT_EQ(failed, 2);
    ASSERT_EQ(le.kind, LOGIC_E_SYNTAX);
    ASSERT_EQ(logic_stream_version(lg, db), before);
    comp_def_fini(&defs[2]);
    /* a batch that takes a category twice, or names a component twice, writes nothing */
    def_json(&defs[2], "orders", "reducer", "tick", "user", NULL, "{}");
    ASSERT_EQ(logic_deploy_many(lg, db, defs, 3, removals, 2, NULL, &le, &failed), ERR_EXISTS);
    ASSERT_EQ(failed, 1);
    comp_def_fini(&defs[2]);
    def_json(&defs[2], "old", "reducer", "tick", "order", NULL, "{}");
    ASSERT_EQ(logic_deploy_many(lg, db, defs, 3, removals, 2, NULL, &le, &failed), ERR_INVALID);
    ASSERT_EQ(failed, 3); /* removals[0] names defs[2] again */
    comp_def_fini(&defs[2]);
    /* a guard of kind 0 lets each def replace only its own kind */
    struct logic_guard own = {0, NULL};
    def_json(&defs[2], "old", "reducer", "tick", "order", NULL, "{}");
    ASSERT_EQ(logic_deploy_many(lg, db, defs, 3, NULL, 0, &own, &le, &failed), ERR_EXISTS);
    ASSERT_EQ(failed, 2); /* "old" is a view */
    comp_def_fini(&defs[2]);
    ASSERT_EQ(logic_stream_version(lg, db), before);
    /* the batch: a document, a replaced reducer, a new reducer, a removal and a removal of
       a name never deployed (skipped): one append of four events */
    def_json(&defs[2], "orders", "reducer", "tick", "order", NULL,
             "{\"Placed\": {\"increment\": {\"target\": \"n\"}}}");
    ASSERT_EQ(logic_deploy_many(lg, db, defs, 3, removals, 2, &own, &le, &failed), 0);
    ASSERT_EQ(logic_stream_version(lg, db), before + 4);
    ASSERT_EQ(defs[0].version, 1);
    ASSERT_EQ(defs[1].version, 2);
    ASSERT_EQ(defs[2].version, 1);
    CHECK(defs[0].deployed_us > 0 && defs[0].deployed_us == defs[1].deployed_us &&
          defs[1].deployed_us == defs[2].deployed_us);
    /* the stream holds the four events in one commit, and a fresh read agrees */
    struct comp_set *read;
    ASSERT_EQ(comp_set_read(db, &read), 0);
    ASSERT_EQ(read->stream_version, before + 4);
    ASSERT_EQ(read->count, 3);
    CHECK(!comp_set_find(read, "old") && comp_set_find(read, "spec")->kind == COMP_DOCUMENT);
    ASSERT_EQ(comp_set_find(read, "users")->version, 2);
    ASSERT_EQ(comp_set_find(read, "orders")->deployed_us, defs[2].deployed_us);
    comp_set_unref(read);
    /* v2 folds from the start: neither v1's snapshot nor its state in memory is served */
    append(db, "user-1", "Renamed", "{\"name\":\"x\"}", &rec);
    struct logic_state st;
    logic_state_init(&st);
    bool none = false;
    ASSERT_EQ(logic_state_after(lg, db, S("user-1"), &rec, 1, &st, &none, &le), 0);
    buf_addc(&st.state, '\0');
    ASSERT_STR(st.state.ptr, "{\"who\":\"Ada\",\"changes\":200}");
    ASSERT_EQ(st.reducer_version, 2);
    ASSERT_EQ(st.folded, 21);
    logic_state_fini(&st);
    state_is(lg, db, "user-1", "{\"who\":\"Ada\",\"changes\":200}", 2);
    append(db, "order-1", "Placed", "{}", NULL);
    state_is(lg, db, "order-1", "{\"n\":1}", 1);
    /* a batch of only removals of names not in force writes nothing */
    ASSERT_EQ(logic_deploy_many(lg, db, NULL, 0, removals, 2, NULL, &le, &failed), 0);
    ASSERT_EQ(logic_stream_version(lg, db), before + 4);
    for (int i = 0; i < 3; i++) {
        comp_def_fini(&defs[i]);
    }
    logic_free(lg);
    logic_env_free(env);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
}
