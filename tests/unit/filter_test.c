/* Event filters: pattern parsing, matching of every field, items (OR) of atoms (AND), the
 * and/or algebra used for selectors, categories and canonical tag text. */
#include <string.h>

#include "query/filter.h"
#include "unit.h"
#include "util/errors.h"

static struct slice S(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static struct event_rec ev_of(const char *stream, const char *type, const char *tags,
                              const char *subject)
{
    struct event_rec ev = {.stream = S(stream), .type = S(type), .tags = S(tags),
                           .subject = S(subject), .time_us = 1000};
    return ev;
}

static void add(struct filter *f, struct filter_item *it, enum filter_field ff, const char *pat,
                bool suffix)
{
    struct pattern p;
    ASSERT_EQ(pattern_parse(S(pat), suffix, &p), 0);
    ASSERT_EQ(filter_add_atom(f, it, ff, &p, 1), 0);
}

TEST(pattern_parse_forms)
{
    struct pattern p;
    ASSERT_EQ(pattern_parse(S("order.placed"), true, &p), 0);
    ASSERT_EQ(p.kind, PAT_EXACT);
    ASSERT_EQ(pattern_parse(S("order.*"), true, &p), 0);
    CHECK(p.kind == PAT_PREFIX && p.text.len == 6);
    ASSERT_EQ(pattern_parse(S("*.placed"), true, &p), 0);
    CHECK(p.kind == PAT_SUFFIX && p.text.len == 7);
    ASSERT_EQ(pattern_parse(S("*"), true, &p), 0);
    ASSERT_EQ(p.kind, PAT_ANY);
    ASSERT_EQ(pattern_parse(S("a*b"), true, &p), ERR_INVALID);
    ASSERT_EQ(pattern_parse(S("**"), true, &p), ERR_INVALID);
    ASSERT_EQ(pattern_parse(S("*x*"), true, &p), ERR_INVALID);
    ASSERT_EQ(pattern_parse(S(""), true, &p), ERR_INVALID);
    ASSERT_EQ(pattern_parse(S("*.x"), false, &p), ERR_INVALID); /* no suffixes here */
}

TEST(category_of_stream)
{
    const char *cases[][2] = {{"order-1", "order"}, {"user_7", "user"}, {"a:b-c", "a"},
                              {"x/y", "x"},         {"plain", "plain"}, {"-lead", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct slice c = filter_category(S(cases[i][0]));
        CHECK(c.len == strlen(cases[i][1]) && memcmp(c.ptr, cases[i][1], c.len) == 0);
    }
}

TEST(empty_filter_matches_all_within_time_bounds)
{
    struct filter f;
    filter_init(&f);
    struct event_rec ev = ev_of("s", "t", "[]", "");
    CHECK(filter_match(&f, &ev));
    f.has_time_from = true;
    f.time_from_us = 1001;
    CHECK(!filter_match(&f, &ev));
    f.time_from_us = 1000;
    f.has_time_to = true;
    f.time_to_us = 1000;
    CHECK(filter_match(&f, &ev));
    f.time_to_us = 999;
    CHECK(!filter_match(&f, &ev));
    filter_fini(&f);
}

TEST(atoms_and_items)
{
    struct filter f;
    filter_init(&f);
    struct filter_item *it = filter_add_item(&f);
    add(&f, it, FF_TYPE, "order.*", true);
    add(&f, it, FF_TAG, "a", false);
    add(&f, it, FF_TAG, "b", false); /* tags: all of */
    struct event_rec both = ev_of("order-1", "order.placed", "[\"b\",\"a\"]", "");
    struct event_rec one = ev_of("order-1", "order.placed", "[\"a\"]", "");
    struct event_rec other = ev_of("order-1", "user.created", "[\"a\",\"b\"]", "");
    CHECK(filter_match(&f, &both));
    CHECK(!filter_match(&f, &one));
    CHECK(!filter_match(&f, &other));
    it = filter_add_item(&f); /* OR: any event of category user */
    add(&f, it, FF_CATEGORY, "user", false);
    struct event_rec user = ev_of("user_7", "x", "[]", "");
    CHECK(filter_match(&f, &user));
    CHECK(!filter_match(&f, &one));
    filter_fini(&f);
}

TEST(subject_patterns)
{
    struct filter f;
    filter_init(&f);
    struct pattern none = {PAT_NONE, {"", 0}};
    ASSERT_EQ(filter_add_atom(&f, filter_add_item(&f), FF_SUBJECT, &none, 1), 0);
    struct event_rec with = ev_of("s", "t", "[]", "orders/1");
    struct event_rec without = ev_of("s", "t", "[]", "");
    CHECK(!filter_match(&f, &with));
    CHECK(filter_match(&f, &without));
    filter_fini(&f);
    filter_init(&f);
    add(&f, filter_add_item(&f), FF_SUBJECT, "orders/*", false);
    CHECK(filter_match(&f, &with));
    CHECK(!filter_match(&f, &without));
    filter_fini(&f);
}

TEST(and_or_algebra)
{
    struct filter a, b, c;
    filter_init(&a);
    filter_init(&b);
    filter_init(&c);
    add(&a, filter_add_item(&a), FF_STREAM, "s1", false);
    add(&a, filter_add_item(&a), FF_STREAM, "s2", false); /* a = s1 | s2 */
    add(&b, filter_add_item(&b), FF_TYPE, "t1", true);
    add(&b, filter_add_item(&b), FF_TYPE, "t2", true); /* b = t1 | t2 */
    ASSERT_EQ(filter_and(&a, &b), 0);                  /* (s1|s2) & (t1|t2): 4 items */
    ASSERT_EQ(a.nitems, 4);
    struct event_rec yes = ev_of("s2", "t1", "[]", ""), no = ev_of("s3", "t1", "[]", "");
    CHECK(filter_match(&a, &yes));
    CHECK(!filter_match(&a, &no));
    add(&c, filter_add_item(&c), FF_STREAM, "s3", false);
    ASSERT_EQ(filter_or(&a, &c), 0);
    CHECK(filter_match(&a, &no));
    for (int i = 0; i < 60; i++) {
        add(&c, filter_add_item(&c), FF_STREAM, "x", false);
    }
    ASSERT_EQ(filter_or(&a, &c), ERR_TOOBIG); /* 5 + 61 > 64 */
    ASSERT_EQ(a.nitems, 5);
    ASSERT_EQ(filter_and(&a, &c), ERR_TOOBIG);
    filter_fini(&a);
    filter_fini(&b);
    filter_fini(&c);
}

TEST(canonical_tags_round_trip)
{
    const char *tags[] = {"plain", "quo\"te", "back\\slash", "ünï"};
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '[');
    for (size_t i = 0; i < 4; i++) {
        if (i) {
            buf_addc(&b, ',');
        }
        filter_json_string(S(tags[i]), &b);
    }
    buf_addc(&b, ']');
    ASSERT_STR(b.ptr, "[\"plain\",\"quo\\\"te\",\"back\\\\slash\",\"ünï\"]");
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0, n = 0;
    struct slice t;
    while (filter_next_tag((struct slice){b.ptr, b.len}, &pos, scratch, &t)) {
        CHECK(t.len == strlen(tags[n]) && memcmp(t.ptr, tags[n], t.len) == 0);
        n++;
    }
    ASSERT_EQ(n, 4);
    pos = 0;
    CHECK(!filter_next_tag(S("[]"), &pos, scratch, &t));
    buf_fini(&b);
}
