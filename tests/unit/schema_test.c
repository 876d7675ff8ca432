/* json/schema: the official JSON Schema Test Suite (draft 2020-12), read at test time, and
 * the validator's own contract (errors, pointers, limits, threads).
 *
 * The suite lives beside the repository in ../shared/testdata/JSON-Schema-Test-Suite (as
 * tests/integration/harness.py finds JSONTestSuite); ANNALS_SHARED_TESTDATA overrides the
 * testdata folder. Absent, the suite tests print SKIP and pass. Its remotes/ are registered
 * as http://localhost:1234/..., and the 2020-12 meta-schemas from Debian's
 * python3-jsonschema (a test dependency, scripts/deps.sh) as https://json-schema.org/....
 *
 * Skipped groups are listed in SKIPS below with their reasons (also in
 * docs/design/json-schema.md); every other test of the files run must pass. */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "json/jsonx.h"
#include "json/schema.h"
#include "json/validate.h"
#include "unit.h"
#include "util/errors.h"

#ifndef SCHEMA_TEST_SHARED
#define SCHEMA_TEST_SHARED "../shared/testdata"
#endif
#define META_DIR "/usr/lib/python3/dist-packages/jsonschema/schemas"

/* A test group (or one test of it) the suite run leaves out, and why. */
struct skip {
    const char *file;  /* suite file, relative to tests/draft2020-12/ */
    const char *group; /* group description, or NULL for the whole file */
    const char *test;  /* test description, or NULL for the whole group */
    const char *why;
};

static const struct skip SKIPS[] = {
    {"vocabulary.json", NULL, NULL,
     "$vocabulary of custom meta-schemas is not honoured: every 2020-12 vocabulary is on"},
    {"optional/format/hostname.json", NULL, "invalid Punycode",
     "A-labels are checked for shape only; IDNA 2008 (Punycode decoding, RFC 5892 "
     "contextual rules) is not implemented"},
    {"optional/format/hostname.json", NULL, "contains illegal char U+302E Hangul single dot tone mark", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Begins with a Spacing Combining Mark", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Begins with a Nonspacing Mark", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Begins with an Enclosing Mark", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Exceptions that are DISALLOWED, right-to-left chars", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Exceptions that are DISALLOWED, left-to-right chars", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "MIDDLE DOT with no preceding 'l'", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "MIDDLE DOT with nothing preceding", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "MIDDLE DOT with no following 'l'", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "MIDDLE DOT with nothing following", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Greek KERAIA not followed by Greek", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Greek KERAIA not followed by anything", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Hebrew GERESH not preceded by Hebrew", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Hebrew GERESH not preceded by anything", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Hebrew GERSHAYIM not preceded by Hebrew", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Hebrew GERSHAYIM not preceded by anything", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "KATAKANA MIDDLE DOT with no Hiragana, Katakana, or Han", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "KATAKANA MIDDLE DOT with no other characters", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "Arabic-Indic digits mixed with Extended Arabic-Indic digits", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "ZERO WIDTH JOINER not preceded by Virama", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "ZERO WIDTH JOINER not preceded by anything", "IDNA 2008"},
    {"optional/format/hostname.json", NULL, "contains \"--\" in the 3rd and 4th position", "IDNA 2008"},
};

/* Pass/fail/skip counts of a run. */
struct tally {
    int passed, failed, skipped;
};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_add(&b, chunk, n);
    }
    fclose(f);
    return buf_steal(&b, len);
}

static const char *shared_dir(void)
{
    const char *env = getenv("ANNALS_SHARED_TESTDATA");
    return env && *env ? env : SCHEMA_TEST_SHARED;
}

static void suite_path(char *out, size_t cap, const char *rel)
{
    snprintf(out, cap, "%s/JSON-Schema-Test-Suite/%s", shared_dir(), rel);
}

static bool suite_present(void)
{
    char p[4096];
    suite_path(p, sizeof p, "tests/draft2020-12/type.json");
    struct stat st;
    if (stat(p, &st) != 0) {
        printf("  SKIP: JSON-Schema-Test-Suite not found at %s (set ANNALS_SHARED_TESTDATA)\n",
               p);
        return false;
    }
    return true;
}

static void add_remote(struct schema_registry *reg, const char *path, const char *uri)
{
    size_t len;
    char *text = read_file(path, &len);
    CHECK(text);
    struct schema_error err;
    int rc = schema_registry_add(reg, uri, text, len, &err);
    if (rc < 0) {
        fprintf(stderr, "  registering %s: %s\n", uri, err.msg);
    }
    CHECK(rc == 0);
    free(text);
}

/* Registers every file under dir as base + its relative path. */
static void add_remotes(struct schema_registry *reg, const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[4096], uri[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(uri, sizeof uri, "%s%s", base, e->d_name);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        if (S_ISDIR(st.st_mode)) {
            strcat(uri, "/");
            add_remotes(reg, path, uri);
        } else {
            add_remote(reg, path, uri);
        }
    }
    closedir(d);
}

/* The 2020-12 meta-schemas, from python3-jsonschema's copies (if installed). */
static void add_metaschemas(struct schema_registry *reg)
{
    size_t len;
    char *vocab = read_file(META_DIR "/vocabularies.json", &len);
    if (!vocab) {
        printf("  note: %s missing: tests that $ref the meta-schema fail\n", META_DIR);
        return;
    }
    add_remote(reg, META_DIR "/draft2020-12.json", "https://json-schema.org/draft/2020-12/schema");
    struct slice obj = {vocab, len}, key, val;
    size_t pos = 0;
    struct buf name;
    buf_init(&name);
    while (jsonx_next_member(obj, &pos, &key, &val)) {
        CHECK(jsonx_string(key, &name) == 0);
        if (!strstr(name.ptr, "2020-12")) {
            continue;
        }
        struct schema_error err;
        CHECK(schema_registry_add(reg, name.ptr, val.ptr, val.len, &err) == 0);
    }
    buf_fini(&name);
    free(vocab);
}

static struct schema_registry *suite_registry(void)
{
    struct schema_registry *reg = schema_registry_new();
    char dir[4096];
    suite_path(dir, sizeof dir, "remotes");
    add_remotes(reg, dir, "http://localhost:1234/");
    add_metaschemas(reg);
    return reg;
}

static const struct skip *find_skip(const char *file, const char *group, const char *test)
{
    for (size_t i = 0; i < sizeof SKIPS / sizeof *SKIPS; i++) {
        const struct skip *s = &SKIPS[i];
        if (strcmp(s->file, file) == 0 && (!s->group || strcmp(s->group, group) == 0) &&
            (!s->test || (test && strcmp(s->test, test) == 0))) {
            return s;
        }
    }
    return NULL;
}

static void member_string(struct slice obj, const char *key, struct buf *out)
{
    struct slice v;
    buf_reset(out);
    buf_reserve(out, 0);
    if (jsonx_member(obj, key, &v)) {
        CHECK(jsonx_string(v, out) == 0);
    }
}

/* Runs the tests of one group against its compiled schema (NULL: compile failed). */
static void run_tests(const char *file, const char *group, struct slice tests,
                      const struct schema *s, struct tally *t)
{
    struct slice tc;
    size_t pos = 0;
    struct buf desc;
    buf_init(&desc);
    struct schema_result r;
    schema_result_init(&r);
    while (jsonx_next_item(tests, &pos, &tc)) {
        member_string(tc, "description", &desc);
        if (find_skip(file, group, desc.ptr)) {
            t->skipped++;
            continue;
        }
        struct slice data, valid;
        CHECK(jsonx_member(tc, "data", &data) && jsonx_member(tc, "valid", &valid));
        bool want = jsonx_kind(valid) == 't';
        int rc = s ? schema_validate(s, data.ptr, data.len, &r) : -1;
        if (s && (rc == 0) == want && (rc == 0 || rc == ERR_INVALID)) {
            t->passed++;
            continue;
        }
        t->failed++;
        printf("    FAIL %s | %s | %s: want %s, got %d (%s at \"%s\": %s)\n", file, group,
               desc.ptr, want ? "valid" : "invalid", rc, r.keyword,
               r.pointer.ptr ? r.pointer.ptr : "", r.message);
    }
    schema_result_fini(&r);
    buf_fini(&desc);
}

static void run_file(const char *file, const struct schema_registry *reg, unsigned flags,
                     struct tally *total)
{
    char path[4096], rel[512];
    snprintf(rel, sizeof rel, "tests/draft2020-12/%s", file);
    suite_path(path, sizeof path, rel);
    size_t len;
    char *text = read_file(path, &len);
    CHECK(text);
    struct jsonv_error je;
    CHECK(jsonv_validate(text, len, 512, &je) == 0);
    struct slice root = {text, len}, group;
    size_t pos = 0;
    struct tally t = {0, 0, 0};
    struct buf desc;
    buf_init(&desc);
    while (jsonx_next_item(root, &pos, &group)) {
        member_string(group, "description", &desc);
        struct slice schema_text, tests;
        CHECK(jsonx_member(group, "schema", &schema_text) && jsonx_member(group, "tests", &tests));
        const struct skip *sk = find_skip(file, desc.ptr, NULL);
        if (sk && !sk->test) {
            size_t p2 = 0;
            struct slice tc;
            while (jsonx_next_item(tests, &p2, &tc)) {
                t.skipped++;
            }
            continue;
        }
        struct schema_options opt = {.registry = reg, .flags = flags};
        struct schema *s = NULL;
        struct schema_error err;
        if (schema_compile_ex(schema_text.ptr, schema_text.len, &opt, &s, &err) < 0) {
            printf("    FAIL %s | %s: compile: %s at \"%s\": %s\n", file, desc.ptr,
                   err.keyword, err.pointer, err.msg);
        }
        run_tests(file, desc.ptr, tests, s, &t);
        schema_free(s);
    }
    printf("  %-45s %4d passed, %d failed, %d skipped\n", file, t.passed, t.failed, t.skipped);
    total->passed += t.passed;
    total->failed += t.failed;
    total->skipped += t.skipped;
    buf_fini(&desc);
    free(text);
}

/* The required files: every tests/draft2020-12/ file, format annotations only. */
static const char *const REQUIRED[] = {
    "additionalProperties.json", "allOf.json", "anchor.json", "anyOf.json",
    "boolean_schema.json", "const.json", "contains.json", "content.json", "default.json",
    "defs.json", "dependentRequired.json", "dependentSchemas.json", "dynamicRef.json",
    "enum.json", "exclusiveMaximum.json", "exclusiveMinimum.json", "format.json",
    "if-then-else.json", "infinite-loop-detection.json", "items.json", "maxContains.json",
    "maxItems.json", "maxLength.json", "maxProperties.json", "maximum.json",
    "minContains.json", "minItems.json", "minLength.json", "minProperties.json",
    "minimum.json", "multipleOf.json", "not.json", "oneOf.json", "pattern.json",
    "patternProperties.json", "prefixItems.json", "properties.json", "propertyNames.json",
    "ref.json", "refRemote.json", "required.json", "type.json", "unevaluatedItems.json",
    "unevaluatedProperties.json", "uniqueItems.json", "vocabulary.json",
};

/* The optional format files of the formats that assert (docs/design/json-schema.md). */
static const char *const FORMATS[] = {
    "optional/format/date-time.json", "optional/format/date.json",
    "optional/format/duration.json", "optional/format/email.json",
    "optional/format/hostname.json", "optional/format/ipv4.json",
    "optional/format/ipv6.json", "optional/format/json-pointer.json",
    "optional/format/regex.json", "optional/format/time.json",
    "optional/format/unknown.json", "optional/format/uri.json",
    "optional/format/uri-reference.json", "optional/format/uuid.json",
};

/* Other optional files that pass. */
static const char *const OPTIONAL[] = {
    "optional/bignum.json", "optional/float-overflow.json", "optional/no-schema.json",
    "optional/refOfUnknownKeyword.json", "optional/id.json", "optional/anchor.json",
};

static void run_files(const char *const *files, size_t count, unsigned flags)
{
    if (!suite_present()) {
        return;
    }
    struct schema_registry *reg = suite_registry();
    struct tally t = {0, 0, 0};
    for (size_t i = 0; i < count; i++) {
        run_file(files[i], reg, flags, &t);
    }
    printf("  total: %d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
    schema_registry_free(reg);
    ASSERT_EQ(t.failed, 0);
}

TEST(suite_required)
{
    run_files(REQUIRED, sizeof REQUIRED / sizeof *REQUIRED, 0);
}

TEST(suite_formats)
{
    run_files(FORMATS, sizeof FORMATS / sizeof *FORMATS, SCHEMA_FORMAT_ASSERT);
}

TEST(suite_optional)
{
    run_files(OPTIONAL, sizeof OPTIONAL / sizeof *OPTIONAL, 0);
}

/* ---------------------------------------------------------------- the validator's contract */

static struct schema *compile_ok(const char *text)
{
    struct schema *s = NULL;
    struct schema_error err;
    int rc = schema_compile(text, strlen(text), &s, &err);
    if (rc < 0) {
        fprintf(stderr, "  compile: %s at %s: %s\n", err.keyword, err.pointer, err.msg);
    }
    CHECK(rc == 0 && s);
    return s;
}

static int compile_rc(const char *text, struct schema_error *err)
{
    struct schema *s = NULL;
    int rc = schema_compile(text, strlen(text), &s, err);
    CHECK((rc == 0) == (s != NULL));
    schema_free(s);
    return rc;
}

static const char EVENT_SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"email\",\"name\"],"
    "\"properties\":{\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"name\":{\"type\":\"string\",\"minLength\":1},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0},"
    "\"plan\":{\"enum\":[\"free\",\"pro\"]},"
    "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"properties\":{\"name\":{\"type\":\"string\"}}}}},"
    "\"additionalProperties\":false}";

TEST(schema_reports_pointer_keyword_and_message)
{
    struct schema *s = compile_ok(EVENT_SCHEMA);
    struct schema_result r;
    schema_result_init(&r);
    const char *ok = "{\"email\":\"a@example.com\",\"name\":\"A\",\"age\":3,\"plan\":\"pro\"}";
    ASSERT_EQ(schema_validate(s, ok, strlen(ok), &r), 0);
    ASSERT_STR(r.keyword, "");
    const char *bad_email = "{\"email\":\"nope\",\"name\":\"A\"}";
    ASSERT_EQ(schema_validate(s, bad_email, strlen(bad_email), &r), ERR_INVALID);
    ASSERT_STR(r.keyword, "format");
    ASSERT_STR(r.pointer.ptr, "/email");
    CHECK(strstr(r.message, "email"));
    const char *deep = "{\"email\":\"a@b.co\",\"name\":\"A\",\"items\":[{},{},{},{\"name\":5}]}";
    ASSERT_EQ(schema_validate(s, deep, strlen(deep), &r), ERR_INVALID);
    ASSERT_STR(r.keyword, "type");
    ASSERT_STR(r.pointer.ptr, "/items/3/name");
    struct buf dotted;
    buf_init(&dotted);
    ASSERT_EQ(schema_pointer_dotted(r.pointer.ptr, r.pointer.len, &dotted), 0);
    ASSERT_STR(dotted.ptr, "items.3.name");
    const char *missing = "{\"email\":\"a@b.co\"}";
    ASSERT_EQ(schema_validate(s, missing, strlen(missing), &r), ERR_INVALID);
    ASSERT_STR(r.keyword, "required");
    ASSERT_STR(r.pointer.ptr, "");
    CHECK(strstr(r.message, "\"name\""));
    const char *extra = "{\"email\":\"a@b.co\",\"name\":\"x\",\"a/b~c\":1}";
    ASSERT_EQ(schema_validate(s, extra, strlen(extra), &r), ERR_INVALID);
    ASSERT_STR(r.keyword, "false");
    ASSERT_STR(r.pointer.ptr, "/a~1b~0c");
    buf_reset(&dotted);
    ASSERT_EQ(schema_pointer_dotted(r.pointer.ptr, r.pointer.len, &dotted), 0);
    ASSERT_STR(dotted.ptr, "a/b~c");
    buf_fini(&dotted);
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_pointer_dotted_forms)
{
    struct buf b;
    buf_init(&b);
    ASSERT_EQ(schema_pointer_dotted("", 0, &b), 0);
    ASSERT_STR(b.ptr ? b.ptr : "", "");
    ASSERT_EQ(schema_pointer_dotted("x", 1, &b), ERR_INVALID);
    ASSERT_EQ(schema_pointer_dotted("/a~2", 4, &b), ERR_INVALID);
    buf_reset(&b);
    ASSERT_EQ(schema_pointer_dotted("/data/0", 7, &b), 0);
    ASSERT_STR(b.ptr, "data.0");
    buf_fini(&b);
}

TEST(schema_instance_errors)
{
    struct schema *s = compile_ok("{\"type\":\"array\"}");
    struct schema_result r;
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "[1,", 3, &r), ERR_PROTOCOL);
    ASSERT_STR(r.keyword, "json");
    char deep[2 * SCHEMA_MAX_INSTANCE_DEPTH + 10];
    int n = SCHEMA_MAX_INSTANCE_DEPTH + 1;
    memset(deep, '[', (size_t)n);
    memset(deep + n, ']', (size_t)n);
    ASSERT_EQ(schema_validate(s, deep, 2 * (size_t)n, &r), ERR_TOOBIG);
    ASSERT_EQ(schema_validate(s, deep + 1, 2 * (size_t)n - 2, &r), 0);
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_compile_errors_name_the_place)
{
    struct schema_error err;
    ASSERT_EQ(compile_rc("{\"type\":", &err), ERR_INVALID);
    ASSERT_EQ(compile_rc("{\"properties\":{\"a\":{\"minLength\":-1}}}", &err), ERR_INVALID);
    ASSERT_STR(err.keyword, "minLength");
    ASSERT_STR(err.pointer, "/properties/a/minLength");
    ASSERT_EQ(compile_rc("{\"$ref\":\"http://example.com/x.json\"}", &err), ERR_INVALID);
    ASSERT_STR(err.keyword, "$ref");
    ASSERT_EQ(compile_rc("{\"$ref\":\"#/$defs/missing\"}", &err), ERR_INVALID);
    ASSERT_EQ(compile_rc("{\"pattern\":\"(\"}", &err), ERR_INVALID);
    ASSERT_STR(err.keyword, "pattern");
    ASSERT_EQ(compile_rc("{\"type\":\"strin\"}", &err), ERR_INVALID);
    ASSERT_EQ(compile_rc("3", &err), ERR_INVALID);
}

TEST(schema_limits)
{
    struct schema_error err;
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"pattern\":\"");
    for (int i = 0; i <= SCHEMA_MAX_PATTERN_BYTES; i++) {
        buf_addc(&b, 'a');
    }
    buf_adds(&b, "\"}");
    ASSERT_EQ(compile_rc(b.ptr, &err), ERR_TOOBIG);
    ASSERT_STR(err.keyword, "pattern");
    buf_reset(&b);
    for (int i = 0; i <= SCHEMA_MAX_DEPTH; i++) {
        buf_adds(&b, "{\"not\":");
    }
    buf_adds(&b, "true");
    for (int i = 0; i <= SCHEMA_MAX_DEPTH; i++) {
        buf_addc(&b, '}');
    }
    ASSERT_EQ(compile_rc(b.ptr, &err), ERR_INVALID); /* nested too deeply: not JSON for us */
    buf_reset(&b);
    buf_adds(&b, "{\"enum\":[");
    for (int i = 0; i <= SCHEMA_MAX_ENTRIES; i++) {
        buf_adds(&b, i ? ",1" : "1");
    }
    buf_adds(&b, "]}");
    ASSERT_EQ(compile_rc(b.ptr, &err), ERR_TOOBIG);
    char *big = xcalloc(SCHEMA_MAX_TEXT_BYTES + 2, 1);
    memset(big, ' ', SCHEMA_MAX_TEXT_BYTES + 1);
    big[0] = '{';
    big[SCHEMA_MAX_TEXT_BYTES] = '}';
    ASSERT_EQ(compile_rc(big, &err), ERR_TOOBIG);
    free(big);
    buf_fini(&b);
}

TEST(schema_ref_cycle_stops_at_eval_depth)
{
    struct schema *s = compile_ok("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},"
                                  "\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}");
    struct schema_result r;
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "1", 1, &r), ERR_TOOBIG);
    ASSERT_STR(r.keyword, "$ref");
    schema_result_fini(&r);
    schema_free(s);
    /* recursion that consumes the instance is fine */
    s = compile_ok("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}");
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "[[[[]]],[]]", 11, &r), 0);
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_hostile_regex_is_bounded)
{
    struct schema *s = compile_ok("{\"pattern\":\"^(a+)+$\"}");
    struct schema_result r;
    schema_result_init(&r);
    char inst[64];
    inst[0] = '"';
    memset(inst + 1, 'a', 40);
    memcpy(inst + 41, "!\"", 2);
    time_t start = time(NULL);
    int rc = schema_validate(s, inst, 43, &r);
    CHECK(rc == ERR_TOOBIG || rc == ERR_INVALID);
    CHECK(time(NULL) - start < 5);
    if (rc == ERR_TOOBIG) {
        ASSERT_STR(r.keyword, "pattern");
    }
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_numbers_are_exact)
{
    struct schema *s = compile_ok("{\"multipleOf\":0.01,\"maximum\":18446744073709551616}");
    struct schema_result r;
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "19.99", 5, &r), 0);
    ASSERT_EQ(schema_validate(s, "19.995", 6, &r), ERR_INVALID);
    ASSERT_EQ(schema_validate(s, "18446744073709551616", 20, &r), 0);
    ASSERT_EQ(schema_validate(s, "18446744073709551617", 20, &r), ERR_INVALID);
    ASSERT_STR(r.keyword, "maximum");
    schema_result_fini(&r);
    schema_free(s);
    s = compile_ok("{\"const\":1,\"type\":\"integer\"}");
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "1.0", 3, &r), 0);
    ASSERT_EQ(schema_validate(s, "10e-1", 5, &r), 0);
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_formats_assert_unless_asked_not_to)
{
    const char *text = "{\"format\":\"date-time\"}";
    struct schema *s = compile_ok(text);
    struct schema_result r;
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "\"2024-02-30T00:00:00Z\"", 22, &r), ERR_INVALID);
    ASSERT_EQ(schema_validate(s, "\"2024-02-29T23:59:60Z\"", 22, &r), 0);
    schema_free(s);
    struct schema_options opt = {0};
    struct schema_error err;
    ASSERT_EQ(schema_compile_ex(text, strlen(text), &opt, &s, &err), 0);
    ASSERT_EQ(schema_validate(s, "\"2024-02-30T00:00:00Z\"", 22, &r), 0);
    schema_result_fini(&r);
    schema_free(s);
}

TEST(schema_registry_contract)
{
    struct schema_registry *reg = schema_registry_new();
    struct schema_error err;
    const char *shared = "{\"$defs\":{\"email\":{\"type\":\"string\",\"format\":\"email\"}}}";
    ASSERT_EQ(schema_registry_add(reg, "relative.json", shared, strlen(shared), &err),
              ERR_INVALID);
    ASSERT_EQ(schema_registry_add(reg, "https://x.test/s.json", "{", 1, &err), ERR_INVALID);
    ASSERT_EQ(schema_registry_add(reg, "https://x.test/s.json", shared, strlen(shared), &err), 0);
    ASSERT_EQ(schema_registry_add(reg, "https://x.test/s.json", shared, strlen(shared), &err),
              ERR_EXISTS);
    const char *text = "{\"properties\":{\"e\":{\"$ref\":\"https://x.test/s.json#/$defs/email\"}}}";
    struct schema_options opt = {.registry = reg, .flags = SCHEMA_FORMAT_ASSERT};
    struct schema *s;
    ASSERT_EQ(schema_compile_ex(text, strlen(text), &opt, &s, &err), 0);
    schema_registry_free(reg); /* the compiled schema keeps its own copies */
    struct schema_result r;
    schema_result_init(&r);
    ASSERT_EQ(schema_validate(s, "{\"e\":\"x@y.z\"}", 13, &r), 0);
    ASSERT_EQ(schema_validate(s, "{\"e\":\"xy.z\"}", 12, &r), ERR_INVALID);
    ASSERT_STR(r.pointer.ptr, "/e");
    schema_result_fini(&r);
    schema_free(s);
    schema_registry_free(NULL);
    schema_free(NULL);
}

/* Arguments of one validating thread. */
struct worker {
    const struct schema *s;
    int failures;
};

static void *validate_many(void *arg)
{
    struct worker *w = arg;
    struct schema_result r;
    schema_result_init(&r);
    for (int i = 0; i < 2000; i++) {
        char inst[128];
        int n = snprintf(inst, sizeof inst, "{\"email\":\"u%d@example.com\",\"name\":\"%s\"}", i,
                         i % 2 ? "x" : "");
        int rc = schema_validate(w->s, inst, (size_t)n, &r);
        bool want_ok = i % 2;
        if ((rc == 0) != want_ok || (!want_ok && strcmp(r.pointer.ptr, "/name") != 0)) {
            w->failures++;
        }
    }
    schema_result_fini(&r);
    return NULL;
}

TEST(schema_validates_from_many_threads)
{
    struct schema *s = compile_ok(EVENT_SCHEMA);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, 0};
        CHECK(pthread_create(&t[i], NULL, validate_many, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(w[i].failures, 0);
    }
    schema_free(s);
}

TEST(schema_exponential_fan_out_is_bounded)
{
    /* 40 levels, each an anyOf of two refs to the next, the last false: 2^40 evaluations
     * without a budget. */
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
    for (int i = 0; i < 40; i++) {
        buf_printf(&b, "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},{\"$ref\":\"#/$defs/d%d\"}]},",
                   i, i + 1, i + 1);
    }
    buf_adds(&b, "\"d40\":false}}");
    struct schema *s = compile_ok(b.ptr);
    struct schema_result r;
    schema_result_init(&r);
    time_t start = time(NULL);
    ASSERT_EQ(schema_validate(s, "1", 1, &r), ERR_TOOBIG);
    CHECK(time(NULL) - start < 5);
    CHECK(strstr(r.message, "SCHEMA_EVAL_STEPS"));
    schema_result_fini(&r);
    schema_free(s);
    buf_fini(&b);
}

TEST(schema_compile_error_pointer_at_a_member_name)
{
    struct schema_error err;
    ASSERT_EQ(compile_rc("{\"patternProperties\":{\"(\":true}}", &err), ERR_INVALID);
    ASSERT_STR(err.keyword, "patternProperties");
    ASSERT_STR(err.pointer, "/patternProperties/(");
}
