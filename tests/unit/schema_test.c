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
