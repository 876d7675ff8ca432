/* dialect/j17/projection: a realistic spec with the documented order_summary projection
 * compiles and reads back its sources and includes; source ids (one for a plain source,
 * [*] fan-out for mode array, skipping missing, null, non-string and invalid values, canonical
 * ids); select output, exact, for realistic states; missing sources; $lookup without a match;
 * indexes from the end; number equality in where; the step and output budgets; the checks
 * added on source ids. Specs and states are written with ' for " (q()) to stay readable. */
#include <string.h>

#include "dialect/j17/spec.h"
#include "unit.h"
#include "util/errors.h"

static const char *CUST = "0f8fad5b-d9cb-469f-a165-70867728950e";
static const char *P1 = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
static const char *P2 = "16fd2706-8baf-433b-82eb-8c7fada847da";

/* The text with every ' turned into ". Static buffer: one at a time. */
static const char *q(const char *s)
{
    static char buf[64 * 1024];
    size_t n = strlen(s);
    CHECK(n < sizeof buf);
    for (size_t i = 0; i <= n; i++) buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

#define EVENTS(evt) "{'events': {'" evt "': {'schema': {'type': 'object'}, 'handler': [" \
                    "{'set': {'target': '', 'value': '$.data'}}]}}}"

static const char *SPEC =
    "{'aggregate_types': {"
    " 'order': " EVENTS("was_placed") ", 'user': " EVENTS("was_created") ","
    " 'product': " EVENTS("was_added") ", 'pricing_rules': " EVENTS("were_set") "},"
    "'agent_types': ['user'],"
    "'projections': {"
    " 'order_summary': {'for_each': 'order', 'sources': {"
    "   'order': '$key', 'customer': {'type': 'user', 'id': '$.order.customer_id'},"
    "   'products': {'type': 'product', 'id': '$.order.items[*].product_id', 'mode': 'array'}},"
    "  'include': {'pricing': 'pricing_rules:global'},"
    "  'select': {'total': '$.order.total', 'currency': '$.pricing.currency',"
    "   'customer': {'email': '$.customer.email', 'tier': 'standard'},"
    "   'last_qty': '$.order.items[-1].qty', 'skus': '$.order.items[*].product_id',"
    "   'lines': {'$map': '$.order.items', 'as': 'item', 'to': {'qty': '$item.qty',"
    "     'name': {'$lookup': '$.products', 'where': {'id': '$item.product_id'},"
    "              'select': '$match.name'},"
    "     'product': {'$lookup': '$.products', 'where': {'id': '$item.product_id'}}}}}},"
    " 'edge': {'for_each': 'order', 'sources': {'order': '$key'},"
    "  'select': {'first': '$.order.items[0].qty', 'last': '$.order.items[-1].qty',"
    "   'second_last': '$.order.items[-2].qty', 'none': '$.order.items[-9].qty',"
    "   'tags': '$.order.items[*].tags[*]', 'deep': '$.order.meta.a.b',"
    "   'two': {'$lookup': '$.order.items', 'where': {'qty': 2.0}, 'as': 'm',"
    "           'select': ['$m.sku', '$m.qty', 'x']},"
    "   'by_path': {'$lookup': '$.order.items', 'where': {'meta.color': 'red'},"
    "               'select': '$match.sku'},"
    "   'nulls': {'$lookup': '$.order.items', 'where': {'gone': '$.order.nothing'},"
    "             'select': '$match.sku'},"
    "   'not_array': {'$map': '$.order.meta', 'to': 1}}},"
    " 'whole': {'for_each': 'order', 'sources': {'order': '$key'},"
    "  'select': {'o': '$.order'}}}}";

static struct j17_spec *compile(void)
{
    struct j17_problems pr;
    struct j17_spec *s = NULL;
    int rc = j17_spec_compile(q(SPEC), strlen(SPEC), &s, &pr);
    for (size_t i = 0; rc && i < pr.count; i++) {
        fprintf(stderr, "    %s: %s\n", pr.items[i].path, pr.items[i].msg);
    }
    ASSERT_EQ(rc, 0);
    return s;
}

static const struct j17_projection *proj(struct j17_spec *s, const char *name)
{
    const struct j17_projection *p = j17_spec_projection(s, (struct slice){name, strlen(name)});
    CHECK(p);
    return p;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(q(text), 0, &err);
    if (!j) fprintf(stderr, "    bad test JSON: %s\n", err.text);
    CHECK(j);
    return j;
}

/* Runs p's select over ctx (JSON text) and checks the compact output. */
static void check_select(const struct j17_projection *p, const char *ctx_text, const char *want)
{
    json_t *ctx = parse(ctx_text);
    json_t *out = NULL;
    char why[256];
    int rc = j17_projection_select(p, ctx, &out, why, sizeof why);
    if (rc) fprintf(stderr, "    select: %s\n", why);
    ASSERT_EQ(rc, 0);
    char *got = json_dumps(out, JSON_COMPACT);
    ASSERT_STR(got, q(want));
    free(got);
    json_decref(out);
    json_decref(ctx);
}

/* Source i's ids over ctx (JSON text), compact. */
static void check_ids(const struct j17_projection *p, size_t i, const char *ctx_text,
                      const char *want)
{
    json_t *ctx = parse(ctx_text);
    json_t *ids = NULL;
    char why[256];
    int rc = j17_projection_source_ids(p, i, ctx, &ids, why, sizeof why);
    if (rc) fprintf(stderr, "    ids: %s\n", why);
    ASSERT_EQ(rc, 0);
    char *got = json_dumps(ids, JSON_COMPACT);
    ASSERT_STR(got, q(want));
    free(got);
    json_decref(ids);
    json_decref(ctx);
}

TEST(proj_sources_and_includes)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "order_summary");
    ASSERT_EQ(j17_projection_source_count(p), 3);
    ASSERT_STR(j17_projection_source_name(p, 0), "order");
    CHECK(j17_projection_source_type(p, 0) == NULL);
    CHECK(!j17_projection_source_array(p, 0));
    ASSERT_STR(j17_projection_source_name(p, 1), "customer");
    ASSERT_STR(j17_projection_source_type(p, 1), "user");
    CHECK(!j17_projection_source_array(p, 1));
    ASSERT_STR(j17_projection_source_name(p, 2), "products");
    ASSERT_STR(j17_projection_source_type(p, 2), "product");
    CHECK(j17_projection_source_array(p, 2));
    CHECK(j17_projection_source_name(p, 3) == NULL && !j17_projection_source_array(p, 3));
    ASSERT_EQ(j17_projection_include_count(p), 1);
    ASSERT_STR(j17_projection_include_name(p, 0), "pricing");
    ASSERT_STR(j17_projection_include_type(p, 0), "pricing_rules");
    ASSERT_STR(j17_projection_include_id(p, 0), "global");
    CHECK(j17_projection_include_id(p, 1) == NULL);
    ASSERT_EQ(j17_projection_include_count(proj(s, "edge")), 0);
    j17_spec_unref(s);
}

TEST(proj_source_ids_plain)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "order_summary");
    char ctx[512], want[128];
    /* An upper-case UUID comes back canonical. */
    snprintf(ctx, sizeof ctx, "{'order': {'customer_id': '0F8FAD5B-D9CB-469F-A165-70867728950E'},"
                              " 'pricing': null}");
    snprintf(want, sizeof want, "['%s']", CUST);
    check_ids(p, 1, ctx, want);
    check_ids(p, 1, "{'order': {'total': 5}}", "[]");
    check_ids(p, 1, "{'order': {'customer_id': null}}", "[]");
    check_ids(p, 1, "{'order': {'customer_id': 42}}", "[]");
    check_ids(p, 1, "{'order': {'customer_id': 'not an id'}}", "[]");
    check_ids(p, 1, "{'order': null}", "[]");
    check_ids(p, 1, "{}", "[]");
    /* "$key", out of range, and a context that is not an object. */
    json_t *ctx_j = parse("{}");
    json_t *ids = (json_t *)1;
    char why[128];
    ASSERT_EQ(j17_projection_source_ids(p, 0, ctx_j, &ids, why, sizeof why), ERR_INVALID);
    CHECK(ids == NULL && strstr(why, "$key"));
    ASSERT_EQ(j17_projection_source_ids(p, 3, ctx_j, &ids, why, sizeof why), ERR_INVALID);
    json_t *arr = json_array();
    ASSERT_EQ(j17_projection_source_ids(p, 1, arr, &ids, why, sizeof why), ERR_INVALID);
    json_decref(arr);
    json_decref(ctx_j);
    j17_spec_unref(s);
}

TEST(proj_source_ids_fan_out)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "order_summary");
    char ctx[1024], want[256];
    snprintf(ctx, sizeof ctx,
             "{'order': {'items': [{'product_id': '%s'}, {'qty': 1}, {'product_id': null},"
             " {'product_id': 5}, {'product_id': 'nope'}, 'junk', {'product_id': 'abcdefgh2'},"
             " {'product_id': '%s'}, {'product_id': '%s'}]}}",
             P1, P2, P1);
    snprintf(want, sizeof want, "['%s','ABCDEFGH2','%s','%s']", P1, P2, P1);
    check_ids(p, 2, ctx, want);
    check_ids(p, 2, "{'order': {'items': {'product_id': 'x'}}}", "[]");
    check_ids(p, 2, "{'order': {'items': []}}", "[]");
    check_ids(p, 2, "{'order': null}", "[]");
    /* Over J17_PROJ_SOURCE_IDS_MAX ids. */
    json_t *items = json_array();
    for (int i = 0; i <= J17_PROJ_SOURCE_IDS_MAX; i++) {
        json_array_append_new(items, json_pack("{ss}", "product_id", P1));
    }
    json_t *big = json_pack("{s{so}}", "order", "items", items);
    json_t *ids = NULL;
    char why[128];
    ASSERT_EQ(j17_projection_source_ids(p, 2, big, &ids, why, sizeof why), ERR_TOOBIG);
    CHECK(ids == NULL && strstr(why, "products"));
    json_decref(big);
    j17_spec_unref(s);
}

TEST(proj_select_realistic)
{
    struct j17_spec *s = compile();
    char ctx[2048], want[2048];
    snprintf(ctx, sizeof ctx,
             "{'order': {'customer_id': '%s', 'total': 42.5, 'items': ["
             "   {'product_id': '%s', 'qty': 2}, {'product_id': '%s', 'qty': 1}]},"
             " 'customer': {'email': 'ada@example.com', 'name': 'Ada'},"
             " 'products': [{'id': '%s', 'name': 'Widget', 'price': 10},"
             "              {'id': '%s', 'name': 'Gadget', 'price': 22.5}],"
             " 'pricing': {'currency': 'EUR', 'vat': 0.2}}",
             CUST, P1, P2, P1, P2);
    snprintf(want, sizeof want,
             "{'total':42.5,'currency':'EUR','customer':{'email':'ada@example.com',"
             "'tier':'standard'},'last_qty':1,'skus':['%s','%s'],"
             "'lines':[{'qty':2,'name':'Widget','product':{'id':'%s','name':'Widget','price':10}},"
             "{'qty':1,'name':'Gadget','product':{'id':'%s','name':'Gadget','price':22.5}}]}",
             P1, P2, P1, P2);
    check_select(proj(s, "order_summary"), ctx, want);
    j17_spec_unref(s);
}

TEST(proj_select_missing_sources_give_null)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "order_summary");
    const char *want = "{'total':null,'currency':null,'customer':{'email':null,"
                       "'tier':'standard'},'last_qty':null,'skus':null,'lines':null}";
    check_select(p, "{'order': null, 'customer': null, 'products': [], 'pricing': null}", want);
    check_select(p, "{}", want);
    /* Items without a qty or product_id: null members, no match. */
    check_select(p, "{'order': {'items': [{}]}, 'products': [{'name': 'x'}]}",
                 "{'total':null,'currency':null,'customer':{'email':null,'tier':'standard'},"
                 "'last_qty':null,'skus':[null],'lines':[{'qty':null,'name':null,"
                 "'product':null}]}");
    json_t *out = (json_t *)1;
    json_t *arr = json_array();
    char why[128];
    ASSERT_EQ(j17_projection_select(p, arr, &out, why, sizeof why), ERR_INVALID);
    CHECK(out == NULL);
    json_decref(arr);
    j17_spec_unref(s);
}

TEST(proj_lookup_without_match_is_null)
{
    struct j17_spec *s = compile();
    char ctx[1024], want[1024];
    snprintf(ctx, sizeof ctx,
             "{'order': {'total': 3, 'items': [{'product_id': '%s', 'qty': 3}]},"
             " 'customer': null, 'products': [{'id': '%s', 'name': 'Gadget'}, 'junk', null],"
             " 'pricing': null}",
             P1, P2);
    snprintf(want, sizeof want,
             "{'total':3,'currency':null,'customer':{'email':null,'tier':'standard'},"
             "'last_qty':3,'skus':['%s'],'lines':[{'qty':3,'name':null,'product':null}]}",
             P1);
    check_select(proj(s, "order_summary"), ctx, want);
    j17_spec_unref(s);
}

TEST(proj_indexes_from_the_end_and_where_paths)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "edge");
    check_select(p,
                 "{'order': {'meta': {'a': {'b': [1]}}, 'items': ["
                 " {'sku': 'a', 'qty': 1, 'tags': ['x', 'y'], 'meta': {'color': 'blue'}},"
                 " {'sku': 'b', 'qty': 2, 'tags': [], 'meta': {'color': 'red'}, 'gone': false},"
                 " {'sku': 'c', 'qty': 2, 'meta': {'color': 'red'}, 'gone': null}]}}",
                 "{'first':1,'last':2,'second_last':2,'none':null,"
                 "'tags':[['x','y'],[],null],'deep':[1],'two':['b',2,'x'],'by_path':'b',"
                 "'nulls':'c','not_array':null}");
    check_select(p, "{'order': {'items': [{'qty': 7}]}}",
                 "{'first':7,'last':7,'second_last':null,'none':null,'tags':[null],"
                 "'deep':null,'two':null,'by_path':null,'nulls':null,'not_array':null}");
    j17_spec_unref(s);
}

TEST(proj_step_budget)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "order_summary");
    /* n items, each looked up among n products that never match: about n * n steps. */
    int sizes[] = {100, 400};
    for (int k = 0; k < 2; k++) {
        int n = sizes[k];
        json_t *items = json_array();
        json_t *products = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(items, json_pack("{sisi}", "product_id", i, "qty", 1));
            json_array_append_new(products, json_pack("{sssi}", "name", "p", "id", -1));
        }
        json_t *ctx = json_pack("{s{so}so}", "order", "items", items, "products", products);
        json_t *out = NULL;
        char why[128] = "";
        int rc = j17_projection_select(p, ctx, &out, why, sizeof why);
        if (n * n < J17_SELECT_STEPS) {
            ASSERT_EQ(rc, 0);
            ASSERT_EQ(json_array_size(json_object_get(out, "lines")), (size_t)n);
        } else {
            ASSERT_EQ(rc, ERR_TOOBIG);
            CHECK(out == NULL && strstr(why, "steps"));
        }
        json_decref(out);
        json_decref(ctx);
    }
    j17_spec_unref(s);
}

TEST(proj_output_budget_and_copies)
{
    struct j17_spec *s = compile();
    const struct j17_projection *p = proj(s, "whole");
    json_t *ctx = parse("{'order': {'items': [1, 2, {'a': 'b'}]}}");
    json_t *out = NULL;
    char why[128];
    ASSERT_EQ(j17_projection_select(p, ctx, &out, why, sizeof why), 0);
    json_t *o = json_object_get(out, "o");
    CHECK(json_equal(o, json_object_get(ctx, "order")));
    CHECK(o != json_object_get(ctx, "order")); /* a copy, never shared */
    CHECK(json_array_get(json_object_get(o, "items"), 2) !=
          json_array_get(json_object_get(json_object_get(ctx, "order"), "items"), 2));
    json_decref(out);
    json_decref(ctx);
    /* More values than J17_PROJECTION_OUT_NODES, then more bytes than
     * J17_PROJECTION_OUT_BYTES. */
    json_t *items = json_array();
    for (int i = 0; i < J17_PROJECTION_OUT_NODES; i++) json_array_append_new(items, json_true());
    ctx = json_pack("{s{so}}", "order", "items", items);
    ASSERT_EQ(j17_projection_select(p, ctx, &out, why, sizeof why), ERR_TOOBIG);
    CHECK(out == NULL && strstr(why, "output values"));
    json_decref(ctx);
    char *big = malloc(J17_PROJECTION_OUT_BYTES + 1);
    memset(big, 'x', J17_PROJECTION_OUT_BYTES);
    big[J17_PROJECTION_OUT_BYTES] = '\0';
    ctx = json_pack("{s{ss}}", "order", "text", big);
    ASSERT_EQ(j17_projection_select(p, ctx, &out, why, sizeof why), ERR_TOOBIG);
    CHECK(out == NULL && strstr(why, "output bytes"));
    json_decref(ctx);
    free(big);
    j17_spec_unref(s);
}

static bool has_problem(const struct j17_problems *pr, const char *path, const char *needle)
{
    for (size_t i = 0; i < pr->count; i++) {
        if (!strcmp(pr->items[i].path, path) && strstr(pr->items[i].msg, needle)) return true;
    }
    return false;
}

TEST(proj_source_id_checks)
{
    const char *spec =
        "{'aggregate_types': {'order': " EVENTS("was_placed") ", 'user': " EVENTS("was_created")
        "}, 'agent_types': ['user'],"
        "'projections': [{'name': 'p', 'for_each': 'order', 'sources': {"
        "  'a': {'type': 'user', 'id': '$.b.user_id'}, 'b': '$key',"
        "  'c': {'type': 'user', 'id': '$.b.items[*].id'},"
        "  'd': {'type': 'user', 'id': '$item.id'}, 'e': {'type': 'user', 'id': '$.e.id'},"
        "  'f': {'type': 'user', 'id': '$.b.x[', 'mode': 'array'}},"
        " 'select': {'x': '$.b.y[z]'}}]}";
    struct j17_problems pr;
    struct j17_spec *s = NULL;
    ASSERT_EQ(j17_spec_compile(q(spec), strlen(spec), &s, &pr), ERR_INVALID);
    for (size_t i = 0; getenv("J17_DUMP") && i < pr.count; i++) {
        fprintf(stderr, "    %s: %s\n", pr.items[i].path, pr.items[i].msg);
    }
    CHECK(has_problem(&pr, "projections[0].sources.a.id", "defined before"));
    CHECK(has_problem(&pr, "projections[0].sources.c.id", "mode"));
    CHECK(has_problem(&pr, "projections[0].sources.d.id", "defined before"));
    CHECK(has_problem(&pr, "projections[0].sources.e.id", "defined before"));
    CHECK(has_problem(&pr, "projections[0].sources.f.id", "expected [n] or [*]"));
    CHECK(has_problem(&pr, "projections[0].select.x", "expected [n] or [*]"));
    ASSERT_EQ(pr.count, 6);
}
