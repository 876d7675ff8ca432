/* dialect/j17/spec: a realistic spec compiles and reads back; each kind of problem is reported
 * at its dotted path (several at once); compat; data validation paths; implications (emit with
 * a condition, map, chains, the depth and count limits, invalid implied data, the schedule
 * minimum); the identifier table. Specs are written with ' for " (q()) to stay readable. */
#include <string.h>

#include "dialect/j17/spec.h"
#include "json/jpath.h"
#include "unit.h"
#include "util/errors.h"

static const char *U1 = "0f8fad5b-d9cb-469f-a165-70867728950e";
static const char *U2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/* The text with every ' turned into ". Static buffer: one at a time. */
static const char *q(const char *s)
{
    static char buf[64 * 1024];
    size_t n = strlen(s);
    CHECK(n < sizeof buf);
    for (size_t i = 0; i <= n; i++) buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

static const char *REALISTIC =
    "{'aggregate_types': {"
    " 'user': {'events': {"
    "  'was_created': {'schema': {'type': 'object', 'required': ['email'], 'properties': {"
    "     'email': {'type': 'string', 'format': 'email'}, 'name': {'type': 'string'},"
    "     'items': {'type': 'array', 'items': {'type': 'object', 'required': ['sku']}}}},"
    "   'handler': [{'set': {'target': '', 'value': '$.data'}}],"
    "   'implications': ["
    "    {'emit': {'aggregate_type': 'audit', 'id': 'global', 'event_type': 'was_logged',"
    "              'data': {'what': '$.type', 'who': '$.key', 'by': '$.metadata.actor.id'}}},"
    "    {'condition': {'equals': ['$.data.name', 'vip']},"
    "     'emit': {'aggregate_type': 'user', 'id': '$.id', 'event_type': 'was_flagged'}}]},"
    "  'was_flagged': {'schema': {'type': 'object'},"
    "                  'handler': {'set': {'target': 'flagged', 'value': true}}},"
    "  'was_deleted': {'schema': {}, 'handler': []}}},"
    " 'order': {'events': {"
    "  'was_placed': {'schema': {'type': 'object', 'properties': {"
    "     'items': {'type': 'array'}, 'total': {'type': 'number'}}},"
    "   'handler': [{'set': {'target': '', 'value': '$.data'}}],"
    "   'implications': ["
    "    {'map': {'over': '$.data.items', 'emit': {'aggregate_type': 'product',"
    "     'id': '$.item.product_id', 'event_type': 'was_reserved',"
    "     'data': {'qty': '$.item.qty', 'order': '$.key'}}}},"
    "    {'schedule': {'delay': '24h', 'emit': {'aggregate_type': 'order', 'id': '$.id',"
    "     'event_type': 'was_expired'}, 'cancel_on': [{'aggregate_type': 'order',"
    "     'id': '$.id', 'event_type': 'was_paid'}]}}]},"
    "  'was_paid': {'schema': {'type': 'object'}, 'handler': []},"
    "  'was_expired': {'schema': {'type': 'object'}, 'handler': []}}},"
    " 'product': {'events': {'was_reserved': {'schema': {'type': 'object', 'required': ['qty'],"
    "   'properties': {'qty': {'type': 'integer', 'minimum': 1}}},"
    "   'handler': [{'decrement': {'target': 'stock', 'by': '$.data.qty'}}]}}},"
    " 'audit': {'events': {'was_logged': {'schema': {'type': 'object'}, 'handler': []}}}},"
    "'agent_types': ['user', 'system'],"
    "'target_types': ['user'],"
    "'singletons': ['twilio_webhook'],"
    "'modules': {'cache': ['user'], 'sagas': {'checkout': {"
    "  'trigger': {'aggregate_type': 'order', 'event_type': 'was_placed'},"
    "  'steps': [{'name': 'reserve', 'emit': {'aggregate_type': 'product',"
    "     'id': '$.data.product_id', 'event_type': 'was_reserved', 'data': {'qty': 1}},"
    "     'await': {'aggregate_type': 'product', 'event_types': ['was_reserved']},"
    "     'timeout_ms': 30000},"
    "    {'name': 'pay', 'condition': {'equals': ['$prev.type', 'was_reserved']},"
    "     'emit': {'aggregate_type': 'order', 'id': '$.id', 'event_type': 'was_paid'},"
    "     'compensate': {'aggregate_type': 'order', 'id': '$.id', 'event_type': 'was_expired'}}]}}},"
    "'geo_types': {'point': {'fields': ['lat', 'lng']}},"
    "'projections': [{'name': 'order_summary', 'for_each': 'order', 'sources': {"
    "   'order': '$key', 'customer': {'type': 'user', 'id': '$.order.customer_id'},"
    "   'products': {'type': 'product', 'id': '$.order.items[*].product_id', 'mode': 'array'}},"
    "  'include': {'pricing': 'audit:global'},"
    "  'select': {'total': '$.order.total', 'customer': {'email': '$.customer.email'},"
    "   'lines': {'$map': '$.order.items', 'as': 'item', 'to': {'qty': '$item.qty',"
    "     'name': {'$lookup': '$.products', 'where': {'id': '$item.product_id'},"
    "              'select': '$match.name'}}}}}],"
    "'listeners': {'crm': {'url': 'https://crm.example.com/hook', 'secret': 's3cret',"
    "  'aggregate_types': ['user'], 'event_types': ['user.was_created']}}}";

static struct j17_spec *compile_ok(const char *spec_q)
{
    const char *text = q(spec_q);
    struct j17_spec *s = NULL;
    struct j17_problems pr;
    int rc = j17_spec_compile(text, strlen(text), &s, &pr);
    for (size_t i = 0; i < pr.count; i++) {
        fprintf(stderr, "  problem %s: %s\n", pr.items[i].path, pr.items[i].msg);
    }
    ASSERT_EQ(rc, 0);
    return s;
}

static struct slice sl(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static bool has_problem(const struct j17_problems *pr, const char *path, const char *msg_part)
{
    for (size_t i = 0; i < pr->count; i++) {
        if (strcmp(pr->items[i].path, path) == 0 &&
            (!msg_part || strstr(pr->items[i].msg, msg_part))) {
            return true;
        }
    }
    fprintf(stderr, "  no problem at %s (%s); got:\n", path, msg_part ? msg_part : "");
    for (size_t i = 0; i < pr->count; i++) {
        fprintf(stderr, "    %s: %s\n", pr->items[i].path, pr->items[i].msg);
    }
    return false;
}

/* Compiles spec_q expecting ERR_INVALID; *pr gets the problems. */
static void compile_bad(const char *spec_q, struct j17_problems *pr)
{
    const char *text = q(spec_q);
    struct j17_spec *s = NULL;
    ASSERT_EQ(j17_spec_compile(text, strlen(text), &s, pr), ERR_INVALID);
    CHECK(s == NULL);
    CHECK(pr->count > 0);
}

TEST(realistic_spec_compiles_and_reads_back)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    ASSERT_EQ(j17_spec_agg_count(s), 4);
    ASSERT_STR(j17_agg_name(j17_spec_agg_at(s, 0)), "audit");
    ASSERT_STR(j17_agg_name(j17_spec_agg_at(s, 3)), "user");
    CHECK(j17_spec_agg_at(s, 4) == NULL);
    const struct j17_agg *user = j17_spec_agg(s, sl("user"));
    CHECK(user && j17_agg_cached(user));
    CHECK(!j17_agg_cached(j17_spec_agg(s, sl("order"))));
    CHECK(j17_spec_agg(s, sl("use")) == NULL);
    CHECK(j17_spec_agg(s, sl("users")) == NULL);
    const struct j17_evt *e = j17_agg_event(user, sl("was_created"));
    CHECK(e && strcmp(j17_evt_name(e), "was_created") == 0);
    CHECK(j17_agg_event(user, sl("was_placed")) == NULL);
    CHECK(j17_spec_agent_type(s, sl("system")) && !j17_spec_agent_type(s, sl("robot")));
    CHECK(j17_spec_target_type(s, sl("user")) && !j17_spec_target_type(s, sl("order")));
    CHECK(j17_spec_singleton(s, sl("global")) && j17_spec_singleton(s, sl("twilio_webhook")));
    CHECK(!j17_spec_singleton(s, sl("other")));

    struct buf b;
    buf_init(&b);
    j17_agg_handlers(user, &b);
    json_t *h = json_loads(b.ptr, 0, NULL);
    CHECK(h && json_object_size(h) == 3);
    CHECK(json_is_object(json_object_get(h, "was_flagged")));
    json_decref(h);
    buf_fini(&b);

    struct slice t = j17_spec_text(s);
    json_t *orig = json_loads(q(REALISTIC), 0, NULL);
    json_t *back = json_loadb(t.ptr, t.len, 0, NULL);
    CHECK(json_equal(orig, back) && !memchr(t.ptr, '\n', t.len) && !memchr(t.ptr, ' ', 20));
    json_decref(orig);
    json_decref(back);

    ASSERT_EQ(j17_spec_saga_count(s), 1);
    const struct j17_saga *g = j17_spec_saga_at(s, 0);
    ASSERT_STR(j17_saga_name(g), "checkout");
    ASSERT_STR(j17_saga_trigger_agg(g), "order");
    ASSERT_STR(j17_saga_trigger_event(g), "was_placed");
    ASSERT_EQ(json_array_size(json_object_get(j17_saga_json(g), "steps")), 2);

    ASSERT_EQ(j17_spec_projection_count(s), 1);
    const struct j17_projection *p = j17_spec_projection(s, sl("order_summary"));
    CHECK(p && strcmp(j17_projection_for_each(p), "order") == 0 && !j17_projection_substreams(p));
    CHECK(json_is_object(json_object_get(j17_projection_json(p), "select")));

    ASSERT_EQ(j17_spec_listener_count(s), 1);
    const struct j17_listener *l = j17_spec_listener_at(s, 0);
    ASSERT_STR(j17_listener_url(l), "https://crm.example.com/hook");
    ASSERT_STR(j17_listener_secret(l), "s3cret");
    CHECK(j17_listener_matches(l, "user", "was_created"));
    CHECK(!j17_listener_matches(l, "user", "was_deleted"));
    CHECK(!j17_listener_matches(l, "order", "was_created"));

    j17_spec_ref(s);
    j17_spec_unref(s);
    j17_spec_unref(s);
    j17_spec_unref(NULL);
}

TEST(problems_are_all_reported_with_paths)
{
    struct j17_problems pr;
    compile_bad("{'aggregate_types': {"
                " 'User': {'events': {}},"
                " 'user': {'events': {"
                "  'was_created': {'schema': {'type': 5},"
                "   'handler': [{'set': {'target': 'a', 'value': 1}}, {'nope': {}}],"
                "   'implications': ["
                "    {'wasm': {'module': 'x'}},"
                "    {'emit': {'aggregate_type': 'ghost', 'id': '$.id', 'event_type': 'x'}},"
                "    {'schedule': {'delay': '1m', 'emit': {'aggregate_type': 'user',"
                "      'id': '$.id', 'event_type': 'was_created'}}},"
                "    {'emit': {'aggregate_type': 'user', 'id': 'not-an-id', 'event_type': 'nah'}},"
                "    {'condition': {'bogus': 1}, 'emit': {'aggregate_type': 'user', 'id': '$.id',"
                "      'event_type': 'was_created', 'data': '$.nothing'}},"
                "    {'binary_container': {}}, {'runtime_container': {}}, {}]},"
                "  'was_removed': {'handler': []},"
                "  'was_bad': {'schema': {}, 'handler': [], 'extra': 1}}}},"
                "'modules': {'cache': ['user', 'ghost'], 'other': 1},"
                "'singletons': ['Bad Name'],"
                "'listeners': {'hook': {'url': 'ftp://x'}},"
                "'projections': [{'name': 'p', 'for_each': 'ghost', 'sources': {'o': '$key'},"
                "  'select': {'a': '$.nosuch.x', 'b': {'$map': '$.o.items', 'to': '$item.q'},"
                "             'c': {'$weird': 1}}}],"
                "'foo': 1}",
                &pr);
    for (size_t i = 0; getenv("J17_DUMP") && i < pr.count; i++) {
        fprintf(stderr, "    %s: %s\n", pr.items[i].path, pr.items[i].msg);
    }
    const char *ev = "aggregate_types.user.events.was_created";
    char at[256];
    CHECK(has_problem(&pr, "foo", "unknown member"));
    CHECK(has_problem(&pr, "agent_types", "missing"));
    CHECK(has_problem(&pr, "aggregate_types.User", "not a name"));
    snprintf(at, sizeof at, "%s.schema.type", ev);
    CHECK(has_problem(&pr, at, NULL));
    snprintf(at, sizeof at, "%s.handler[1]", ev);
    CHECK(has_problem(&pr, at, "unknown operation"));
    snprintf(at, sizeof at, "%s.implications[0].wasm", ev);
    CHECK(has_problem(&pr, at, "declarative implications only"));
    snprintf(at, sizeof at, "%s.implications[1].emit.aggregate_type", ev);
    CHECK(has_problem(&pr, at, "ghost"));
    snprintf(at, sizeof at, "%s.implications[2].schedule.delay", ev);
    CHECK(has_problem(&pr, at, "minimum"));
    snprintf(at, sizeof at, "%s.implications[3].emit.event_type", ev);
    CHECK(has_problem(&pr, at, "nah"));
    snprintf(at, sizeof at, "%s.implications[3].emit.id", ev);
    CHECK(has_problem(&pr, at, "valid id"));
    snprintf(at, sizeof at, "%s.implications[4].condition", ev);
    CHECK(has_problem(&pr, at, "unknown predicate"));
    snprintf(at, sizeof at, "%s.implications[4].emit.data", ev);
    CHECK(has_problem(&pr, at, "bad path"));
    snprintf(at, sizeof at, "%s.implications[5].binary_container", ev);
    CHECK(has_problem(&pr, at, "containers"));
    snprintf(at, sizeof at, "%s.implications[6].runtime_container", ev);
    CHECK(has_problem(&pr, at, "containers"));
    snprintf(at, sizeof at, "%s.implications[7]", ev);
    CHECK(has_problem(&pr, at, "no kind"));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_removed.schema", "missing"));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_bad.extra", "unknown member"));
    CHECK(has_problem(&pr, "modules.cache[1]", "aggregate type"));
    CHECK(has_problem(&pr, "modules.other", "unknown member"));
    CHECK(has_problem(&pr, "singletons[0]", "not a name"));
    CHECK(has_problem(&pr, "listeners.hook.url", "http"));
    CHECK(has_problem(&pr, "projections[0].for_each", NULL));
    CHECK(has_problem(&pr, "projections[0].select.a", "no source"));
    CHECK(has_problem(&pr, "projections[0].select.c.$weird", "unknown operator"));
    CHECK(!pr.more);
    ASSERT_EQ(pr.count, 24); /* and nothing else */
}

TEST(spec_level_failures)
{
    struct j17_problems pr;
    struct j17_spec *s = NULL;
    ASSERT_EQ(j17_spec_compile("{", 1, &s, &pr), ERR_INVALID);
    CHECK(pr.count == 1 && strstr(pr.items[0].msg, "not JSON"));
    const char *wrapped = q("{'spec': {'aggregate_types': {}, 'agent_types': []}}");
    ASSERT_EQ(j17_spec_compile(wrapped, strlen(wrapped), &s, &pr), ERR_INVALID);
    CHECK(has_problem(&pr, "spec", "not wrapped"));
    ASSERT_EQ(j17_spec_compile("[]", 2, &s, &pr), ERR_INVALID);
    CHECK(has_problem(&pr, "", "a spec is a JSON object"));
    ASSERT_EQ(j17_spec_compile("{}", J17_SPEC_BYTES + 1, &s, &pr), ERR_TOOBIG);
    CHECK(s == NULL && pr.count == 1);
    compile_bad("{'agent_types': ['user']}", &pr);
    CHECK(has_problem(&pr, "aggregate_types", "missing"));
    compile_bad("{'aggregate_types': {}, 'agent_types': ['a', 'a', 3]}", &pr);
    CHECK(has_problem(&pr, "agent_types[1]", "twice"));
    CHECK(has_problem(&pr, "agent_types[2]", "not a name"));
}

TEST(more_than_the_problem_cap_sets_more)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"agent_types\": [], \"aggregate_types\": {");
    for (int i = 0; i < J17_PROBLEMS_MAX + 5; i++) {
        buf_printf(&b, "%s\"t%d\": {\"events\": {\"e\": {\"handler\": []}}}", i ? "," : "", i);
    }
    buf_adds(&b, "}}");
    struct j17_spec *s;
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compile(b.ptr, b.len, &s, &pr), ERR_INVALID);
    ASSERT_EQ(pr.count, J17_PROBLEMS_MAX);
    CHECK(pr.more);
    buf_fini(&b);
}

TEST(saga_problems)
{
    struct j17_problems pr;
    compile_bad("{'agent_types': ['user'], 'aggregate_types': {'o': {'events': {"
                "  'e': {'schema': {}, 'handler': []}}}},"
                "'modules': {'sagas': {'s': {'trigger': {'aggregate_type': 'o', 'event_type': 'x'},"
                "  'steps': [{'name': 'a', 'emit': {'aggregate_type': 'o', 'id': '$prev.id',"
                "     'event_type': 'e'}, 'await': {'aggregate_type': 'o', 'event_types': ['z']},"
                "     'timeout_ms': -1, 'condition': {'equals': ['$prev.type', 'e']}},"
                "   {'name': 'a', 'emit': {'aggregate_type': 'o', 'id': '$.nope', 'event_type': 'e'}}]}}}}",
                &pr);
    CHECK(has_problem(&pr, "modules.sagas.s.trigger", "o.x"));
    CHECK(has_problem(&pr, "modules.sagas.s.steps[0].await.event_types[0]", NULL));
    CHECK(has_problem(&pr, "modules.sagas.s.steps[0].timeout_ms", NULL));
    CHECK(has_problem(&pr, "modules.sagas.s.steps[1].name", "two steps"));
    CHECK(has_problem(&pr, "modules.sagas.s.steps[1].emit.id", "bad path"));
    ASSERT_EQ(pr.count, 5); /* $prev paths in step 0 compiled */
}

/* ---- compat ---- */

static const char *COMPAT_OLD =
    "{'agent_types': ['u'], 'aggregate_types': {"
    " 'user': {'events': {'was_created': {'schema': {'type': 'object', 'required': ['email'],"
    "   'properties': {'email': {'type': 'string'}, 'age': {'type': 'integer'},"
    "                  'nick': {'type': 'string'}}}, 'handler': []},"
    "  'was_renamed': {'schema': {}, 'handler': []}}},"
    " 'gone': {'events': {'e': {'schema': {}, 'handler': []}}}}}";

TEST(compat_reports_each_breaking_change)
{
    struct j17_spec *old = compile_ok(COMPAT_OLD);
    struct j17_spec *same = compile_ok(COMPAT_OLD);
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compat(old, same, &pr), 0);
    ASSERT_EQ(pr.count, 0);
    struct j17_spec *grown = compile_ok(
        "{'agent_types': ['u'], 'aggregate_types': {"
        " 'user': {'events': {'was_created': {'schema': {'type': 'object', 'required': ['email'],"
        "   'properties': {'email': {'type': 'string'}, 'age': {'type': 'integer'},"
        "   'nick': {'type': 'string'}, 'new': {'type': 'string'}}}, 'handler': []},"
        "  'was_renamed': {'schema': {}, 'handler': []}, 'was_added': {'schema': {}, 'handler': []}}},"
        " 'gone': {'events': {'e': {'schema': {}, 'handler': []}}},"
        " 'fresh': {'events': {'e': {'schema': {}, 'handler': []}}}}}");
    ASSERT_EQ(j17_spec_compat(old, grown, &pr), 0);
    struct j17_spec *broken = compile_ok(
        "{'agent_types': ['u'], 'aggregate_types': {"
        " 'user': {'events': {'was_created': {'schema': {'type': 'object',"
        "   'required': ['email', 'age'],"
        "   'properties': {'email': {'type': 'string'}, 'age': {'type': 'string'}}},"
        "   'handler': []}}}}}");
    ASSERT_EQ(j17_spec_compat(old, broken, &pr), ERR_CONFLICT);
    CHECK(has_problem(&pr, "aggregate_types.gone", "aggregate type removed"));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_renamed", "event type removed"));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_created.schema.required", "\"age\""));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_created.schema.properties.nick",
                      "removed"));
    CHECK(has_problem(&pr, "aggregate_types.user.events.was_created.schema.properties.age.type",
                      "\"integer\""));
    ASSERT_EQ(pr.count, 5);
    j17_spec_unref(old);
    j17_spec_unref(same);
    j17_spec_unref(grown);
    j17_spec_unref(broken);
}

/* ---- validation ---- */

static int validate(const struct j17_evt *e, const char *data_q, char *path)
{
    json_t *data = data_q ? json_loads(q(data_q), JSON_DECODE_ANY, NULL) : NULL;
    char msg[128];
    int rc = j17_evt_validate(e, data, path, 64, msg, sizeof msg);
    json_decref(data);
    return rc;
}

TEST(validate_paths_are_dotted_from_data)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    const struct j17_evt *e = j17_agg_event(j17_spec_agg(s, sl("user")), sl("was_created"));
    char path[64];
    ASSERT_EQ(validate(e, "{'email': 'a@example.com'}", path), 0);
    ASSERT_EQ(validate(e, "{'email': 'nope'}", path), ERR_INVALID);
    ASSERT_STR(path, "data.email");
    ASSERT_EQ(validate(e, "{}", path), ERR_INVALID);
    ASSERT_STR(path, "data");
    ASSERT_EQ(validate(e, NULL, path), ERR_INVALID);
    ASSERT_STR(path, "data");
    ASSERT_EQ(validate(e, "{'email': 'a@b.co', 'items': [{'sku': 1}, {'sku': 2}, {}]}", path),
              ERR_INVALID);
    ASSERT_STR(path, "data.items.2");
    const struct j17_evt *any = j17_agg_event(j17_spec_agg(s, sl("user")), sl("was_deleted"));
    ASSERT_EQ(validate(any, NULL, path), 0);
    j17_spec_unref(s);
}

/* ---- implications ---- */

static json_t *ctx_of(const char *evt, const char *key, const char *data_q)
{
    json_t *data = json_loads(q(data_q), 0, NULL);
    CHECK(data);
    json_t *meta = json_pack("{s:{s:s,s:s}}", "actor", "type", "user", "id", U2);
    json_t *ctx = jpath_event_new(evt, key, data, meta);
    json_decref(data);
    json_decref(meta);
    return ctx;
}

static int imply(const struct j17_spec *s, const char *agg, const char *evt, const char *id,
                 const char *data_q, struct j17_implied_list *out, char *why)
{
    const struct j17_agg *a = j17_spec_agg(s, sl(agg));
    const struct j17_evt *e = j17_agg_event(a, sl(evt));
    char key[256];
    snprintf(key, sizeof key, "%s:%s", agg, id);
    json_t *ctx = ctx_of(evt, key, data_q);
    memset(out, 0, sizeof(*out));
    int rc = j17_imply(s, a, e, ctx, out, why, 256);
    json_decref(ctx);
    return rc;
}

TEST(imply_emit_with_condition)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    struct j17_implied_list l;
    char why[256];
    ASSERT_EQ(imply(s, "user", "was_created", U1, "{'email': 'a@b.co', 'name': 'vip'}", &l, why), 0);
    ASSERT_EQ(l.count, 2);
    ASSERT_STR(l.items[0].agg_type, "audit");
    ASSERT_STR(l.items[0].id, "global");
    ASSERT_STR(l.items[0].event_type, "was_logged");
    ASSERT_EQ(l.items[0].depth, 1);
    ASSERT_EQ(l.items[0].delay_ms, 0);
    char key[128];
    snprintf(key, sizeof key, "user:%s", U1);
    json_t *want = json_pack("{s:s,s:s,s:s}", "what", "was_created", "who", key, "by", U2);
    CHECK(json_equal(l.items[0].data, want));
    json_decref(want);
    ASSERT_STR(l.items[1].event_type, "was_flagged");
    ASSERT_STR(l.items[1].id, U1);
    CHECK(json_is_object(l.items[1].data) && json_object_size(l.items[1].data) == 0);
    j17_implied_list_fini(&l);

    ASSERT_EQ(imply(s, "user", "was_created", U1, "{'email': 'a@b.co', 'name': 'joe'}", &l, why), 0);
    ASSERT_EQ(l.count, 1);
    ASSERT_STR(l.items[0].event_type, "was_logged");
    j17_implied_list_fini(&l);
    j17_spec_unref(s);
}

TEST(imply_map_over_three_items_and_schedule)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    struct j17_implied_list l;
    char why[256];
    char data[512];
    snprintf(data, sizeof data,
             "{'items': [{'product_id': '%s', 'qty': 1}, {'product_id': 'ABCDEFGH1', 'qty': 2},"
             " {'product_id': 'global', 'qty': 3}]}", U2);
    ASSERT_EQ(imply(s, "order", "was_placed", U1, data, &l, why), 0);
    ASSERT_EQ(l.count, 4);
    ASSERT_STR(l.items[0].id, U2);
    ASSERT_STR(l.items[1].id, "ABCDEFGH1");
    ASSERT_STR(l.items[2].id, "global");
    for (int i = 0; i < 3; i++) {
        ASSERT_STR(l.items[i].agg_type, "product");
        ASSERT_EQ(json_integer_value(json_object_get(l.items[i].data, "qty")), i + 1);
    }
    ASSERT_STR(l.items[3].event_type, "was_expired");
    ASSERT_EQ(l.items[3].delay_ms, 24ULL * 3600 * 1000);
    json_t *c0 = json_array_get(l.items[3].cancel_on, 0);
    ASSERT_STR(json_string_value(json_object_get(c0, "event_type")), "was_paid");
    ASSERT_STR(json_string_value(json_object_get(c0, "id")), U1);
    j17_implied_list_fini(&l);

    /* a bad id in the mapped data and invalid implied data are errors naming the place */
    ASSERT_EQ(imply(s, "order", "was_placed", U1, "{'items': [{'product_id': 'x', 'qty': 1}]}",
                    &l, why), ERR_INVALID);
    CHECK(strstr(why, "aggregate_types.order.events.was_placed.implications[0]: id"));
    j17_implied_list_fini(&l);
    snprintf(data, sizeof data, "{'items': [{'product_id': '%s', 'qty': 0}]}", U2);
    ASSERT_EQ(imply(s, "order", "was_placed", U1, data, &l, why), ERR_INVALID);
    CHECK(strstr(why, "implications[0]: product.was_reserved"));
    CHECK(strstr(why, "data.qty"));
    j17_implied_list_fini(&l);
    j17_spec_unref(s);
}

/* A chain c.e0 -> e1 -> ... -> e<n-1>, each implying the next on the same id. */
static struct j17_spec *chain(int n)
{
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{'agent_types': ['user'], 'aggregate_types': {'c': {'events': {");
    for (int i = 0; i < n; i++) {
        buf_printf(&b, "%s'e%d': {'schema': {'type': 'object'}, 'handler': []", i ? "," : "", i);
        if (i + 1 < n) {
            buf_printf(&b, ", 'implications': [{'emit': {'aggregate_type': 'c', 'id': '$.id',"
                           " 'event_type': 'e%d', 'data': {'from': '$.type'}}}]", i + 1);
        }
        buf_adds(&b, "}");
    }
    buf_adds(&b, "}}}}");
    struct j17_spec *s = compile_ok(b.ptr);
    buf_fini(&b);
    return s;
}

TEST(imply_chains_depth_first_up_to_the_depth_limit)
{
    struct j17_spec *s = chain(J17_IMPLY_DEPTH + 1);
    struct j17_implied_list l;
    char why[256];
    ASSERT_EQ(imply(s, "c", "e0", U1, "{}", &l, why), 0);
    ASSERT_EQ(l.count, J17_IMPLY_DEPTH);
    for (unsigned i = 0; i < l.count; i++) {
        ASSERT_EQ(l.items[i].depth, i + 1);
        char want[16];
        snprintf(want, sizeof want, "e%u", i);
        ASSERT_STR(json_string_value(json_object_get(l.items[i].data, "from")), want);
    }
    j17_implied_list_fini(&l);
    j17_spec_unref(s);

    s = chain(J17_IMPLY_DEPTH + 2);
    ASSERT_EQ(imply(s, "c", "e0", U1, "{}", &l, why), ERR_TOOBIG);
    CHECK(strstr(why, "deeper"));
    ASSERT_EQ(l.count, J17_IMPLY_DEPTH);
    j17_implied_list_fini(&l);
    j17_spec_unref(s);
}

TEST(imply_count_limit)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    for (int n = J17_IMPLIED_MAX - 1; n <= J17_IMPLIED_MAX; n++) {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{'items': [");
        for (int i = 0; i < n; i++) {
            buf_printf(&b, "%s{'product_id': 'global', 'qty': 1}", i ? "," : "");
        }
        buf_adds(&b, "]}");
        struct j17_implied_list l;
        char why[256];
        int rc = imply(s, "order", "was_placed", U1, b.ptr, &l, why);
        /* n mapped events plus the scheduled one */
        ASSERT_EQ(rc, n + 1 > J17_IMPLIED_MAX ? ERR_TOOBIG : 0);
        if (rc < 0) CHECK(strstr(why, "more than"));
        j17_implied_list_fini(&l);
        buf_fini(&b);
    }
    j17_spec_unref(s);
}

TEST(pipeline_steps_read_the_previous_event)
{
    struct j17_spec *s = compile_ok(
        "{'agent_types': ['user'], 'aggregate_types': {'a': {'events': {"
        " 'started': {'schema': {}, 'handler': [], 'implications': [{'pipeline': ["
        "   {'emit': {'aggregate_type': 'a', 'id': 'global', 'event_type': 'one',"
        "             'data': {'n': 1, 'src': '$.id'}}},"
        "   {'condition': {'equals': ['$.data.n', 1]},"
        "    'emit': {'aggregate_type': 'a', 'id': '$.data.src', 'event_type': 'two',"
        "             'data': {'prev': '$.type'}}},"
        "   {'condition': {'equals': ['$.data.n', 2]},"
        "    'emit': {'aggregate_type': 'a', 'id': 'global', 'event_type': 'one'}}]}]},"
        " 'one': {'schema': {}, 'handler': []}, 'two': {'schema': {}, 'handler': []}}}}}");
    struct j17_implied_list l;
    char why[256];
    ASSERT_EQ(imply(s, "a", "started", U1, "{}", &l, why), 0);
    ASSERT_EQ(l.count, 2);
    ASSERT_STR(l.items[0].event_type, "one");
    ASSERT_STR(l.items[1].event_type, "two");
    ASSERT_STR(l.items[1].id, U1);
    ASSERT_STR(json_string_value(json_object_get(l.items[1].data, "prev")), "one");
    j17_implied_list_fini(&l);
    j17_spec_unref(s);
}

TEST(schedule_minimum_delay_is_an_option)
{
    const char *spec = q("{'agent_types': ['user'], 'aggregate_types': {'a': {'events': {"
                         " 'x': {'schema': {}, 'handler': [], 'implications': ["
                         "  {'schedule': {'delay': '90s', 'emit': {'aggregate_type': 'a',"
                         "   'id': '$.id', 'event_type': 'x'}}},"
                         "  {'schedule': {'delay_ms': 300000, 'emit': {'aggregate_type': 'a',"
                         "   'id': '$.id', 'event_type': 'x'}}}]}}}}}");
    struct j17_spec *s = NULL;
    struct j17_problems pr;
    ASSERT_EQ(j17_spec_compile(spec, strlen(spec), &s, &pr), ERR_INVALID);
    ASSERT_EQ(pr.count, 1);
    ASSERT_STR(pr.items[0].path, "aggregate_types.a.events.x.implications[0].schedule.delay");
    struct j17_spec_options opt;
    j17_spec_options_default(&opt);
    ASSERT_EQ(opt.schedule_min_ms, J17_SCHEDULE_MIN_MS);
    opt.schedule_min_ms = 1000;
    ASSERT_EQ(j17_spec_compile_ex(spec, strlen(spec), &opt, &s, &pr), 0);
    struct j17_implied_list l;
    char why[256];
    ASSERT_EQ(imply(s, "a", "x", U1, "{}", &l, why), 0);
    ASSERT_EQ(l.count, 2);
    ASSERT_EQ(l.items[0].delay_ms, 90000);
    ASSERT_EQ(l.items[1].delay_ms, 300000);
    CHECK(l.items[0].cancel_on == NULL);
    j17_implied_list_fini(&l);
    j17_spec_unref(s);
}

/* ---- identifiers ---- */

TEST(identifiers)
{
    struct j17_spec *s = compile_ok(REALISTIC);
    static const struct {
        const char *id;
        const char *canon; /* NULL: invalid */
    } CASES[] = {
        {"0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"},
        {"0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e"},
        {"886313e1-3b8a-5372-9b90-0c9aee199e5d", "886313e1-3b8a-5372-9b90-0c9aee199e5d"},
        {"0f8fad5b-d9cb-169f-a165-70867728950e", NULL},  /* v1 */
        {"0f8fad5b-d9cb-369f-a165-70867728950e", NULL},  /* v3 */
        {"0f8fad5b-d9cb-769f-a165-70867728950e", NULL},  /* v7 */
        {"0f8fad5b-d9cb-469f-c165-70867728950e", NULL},  /* variant c */
        {"0f8fad5b-d9cb-469f-7165-70867728950e", NULL},  /* variant 7 */
        {"0f8fad5bd9cb469fa16570867728950e", NULL},      /* no dashes */
        {"0f8fad5b-d9cb-469f-a165-70867728950", NULL},   /* short */
        {"0f8fad5b-d9cb-469f-a165-70867728950g", NULL},  /* not hex */
        {"0f8fad5b-d9cb-469f-a165-70867728950e:2026", "0f8fad5b-d9cb-469f-a165-70867728950e:2026"},
        {"0F8FAD5B-D9CB-469F-A165-70867728950E:shard_1-a",
         "0f8fad5b-d9cb-469f-a165-70867728950e:shard_1-a"},
        {"0f8fad5b-d9cb-469f-a165-70867728950e:", NULL},
        {"0f8fad5b-d9cb-469f-a165-70867728950e:Tag", NULL},
        {"0f8fad5b-d9cb-469f-a165-70867728950e:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL}, /* 33 */
        {"0f8fad5b-d9cb-469f-a165-70867728950e:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "0f8fad5b-d9cb-469f-a165-70867728950e:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {"0f8fad5b-d9cb-469f-a165-70867728950e;x", NULL},
        {"ABCDEFGH1", "ABCDEFGH1"},
        {"abcdefgh1", "ABCDEFGH1"},
        {"0123456789", NULL},                            /* 10 chars */
        {"ABCDEFGH", NULL},                              /* 8 chars */
        {"ABCDEFGHI", NULL},                             /* I */
        {"ABCDEFGHL", NULL},                             /* L */
        {"ABCDEFGHO", NULL},                             /* O */
        {"ABCDEFGHU", NULL},                             /* U */
        {"ABCD-FGH1", NULL},
        {"global", "global"},
        {"twilio_webhook", "twilio_webhook"},
        {"GLOBAL", NULL},
        {"other_singleton", NULL},
        {"", NULL},
        {"user:abc", NULL},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char canon[J17_ID_BYTES + 1];
        int rc = j17_id_check(s, sl(CASES[i].id), canon);
        if (rc != (CASES[i].canon ? 0 : ERR_INVALID) ||
            (CASES[i].canon && strcmp(canon, CASES[i].canon) != 0)) {
            fprintf(stderr, "  id %s: rc %d canon %s\n", CASES[i].id, rc, canon);
            CHECK(false);
        }
    }
    char canon[J17_ID_BYTES + 1];
    ASSERT_EQ(j17_id_check(NULL, sl("global"), canon), 0);
    ASSERT_EQ(j17_id_check(NULL, sl("twilio_webhook"), canon), ERR_INVALID);
    char nul[] = "ABCDEFGH\0";
    ASSERT_EQ(j17_id_check(s, (struct slice){nul, 9}, canon), ERR_INVALID);
    char longid[J17_ID_BYTES + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    ASSERT_EQ(j17_id_check(s, sl(longid), canon), ERR_INVALID);
    j17_spec_unref(s);
}

TEST(jpath_extra_members_only_when_allowed)
{
    struct jpath *p;
    struct jpath_error err;
    ASSERT_EQ(jpath_compile("$.item.x", 8, JPATH_VALUE, &p, &err), ERR_INVALID);
    ASSERT_EQ(jpath_compile_ex("$.item.x", 8, JPATH_VALUE, JPATH_ALLOW_PREV, &p, &err),
              ERR_INVALID);
    ASSERT_EQ(jpath_compile_ex("$.item.x", 8, JPATH_VALUE, JPATH_ALLOW_ITEM, &p, &err), 0);
    jpath_free(p);
    ASSERT_EQ(jpath_compile_ex("$.prev.type", 11, JPATH_VALUE, JPATH_ALLOW_PREV, &p, &err), 0);
    jpath_free(p);
    /* in a spec, $.item outside a map is a problem */
    struct j17_problems pr;
    compile_bad("{'agent_types': [], 'aggregate_types': {'a': {'events': {'x': {'schema': {},"
                " 'handler': [], 'implications': [{'emit': {'aggregate_type': 'a',"
                " 'id': '$.item.id', 'event_type': 'x'}}]}}}}}", &pr);
    CHECK(has_problem(&pr, "aggregate_types.a.events.x.implications[0].emit.id", "bad path"));
}
