/* auth/keys: the keyring without a server. Ordinary "ak_<id>_<secret>" keys and keys with a
 * surface's prefix ("<prefix><id><secret>"): creation, verification in both forms and never
 * across them, rotation and revocation, and the file (reloaded keys keep their prefix; a file
 * of before prefixes loads its keys as ordinary ones). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keys.h"
#include "unit.h"
#include "util/errors.h"
#include "util/timeutil.h"

static void fresh_dir(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "/tmp/annals-keys-%d-%s", (int)getpid(), name);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0);
}

static void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static int verify(struct keyring *kr, const char *text, struct api_key *out)
{
    return keyring_verify(kr, text, strlen(text), time_now_us(), out);
}

/* The id and secret of an ordinary key's text "ak_<id>_<secret>". */
static void parts_of_ak(const char *text, char *id, char *secret)
{
    CHECK(strlen(text) == 3 + KEY_ID_CHARS + 1 + KEY_SECRET_CHARS);
    memcpy(id, text + 3, KEY_ID_CHARS);
    id[KEY_ID_CHARS] = '\0';
    strcpy(secret, text + 4 + KEY_ID_CHARS);
}

TEST(ordinary_key_create_verify_as_before)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "plain");
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    char text[KEY_TEXT_MAX];
    struct api_key k, got;
    ASSERT_EQ(keyring_create(kr, SCOPE_WRITE, "shop", "n", 0, 7, text, &k), 0);
    ASSERT_EQ(strncmp(text, "ak_", 3), 0);
    ASSERT_EQ(strlen(text), 63);
    ASSERT_EQ(text[19], '_');
    ASSERT_STR(k.prefix, "");
    ASSERT_EQ(verify(kr, text, &got), 0);
    ASSERT_STR(got.id, k.id);
    ASSERT_EQ(got.scope, SCOPE_WRITE);
    ASSERT_EQ(got.rate_limit, 7);
    /* a NULL or empty prefix is an ordinary key too */
    ASSERT_EQ(keyring_create_prefixed(kr, "", SCOPE_READ, "", "", 0, 0, text, &k), 0);
    ASSERT_EQ(strncmp(text, "ak_", 3), 0);
    ASSERT_EQ(verify(kr, text, &got), 0);
    /* one character changed in the secret, the id or the separator */
    char bad[KEY_TEXT_MAX];
    for (size_t i = 3; i < strlen(text); i += 8) {
        strcpy(bad, text);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    }
    /* its id and secret without separator, under "ak_" or another prefix */
    char id[KEY_ID_CHARS + 1], secret[KEY_SECRET_CHARS + 1];
    parts_of_ak(text, id, secret);
    snprintf(bad, sizeof bad, "ak_%s%s", id, secret);
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    snprintf(bad, sizeof bad, "j17_0_test_%s%s", id, secret);
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    keyring_close(kr);
    remove_dir(dir);
}

TEST(prefixed_key_create_verify_rotate_revoke)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "prefixed");
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    char text[KEY_TEXT_MAX];
    struct api_key k, got;
    ASSERT_EQ(keyring_create_prefixed(kr, "j17_0_staging_", SCOPE_WRITE, "shop", "ci", 0, 9,
                                      text, &k), 0);
    ASSERT_STR(k.prefix, "j17_0_staging_");
    ASSERT_EQ(strlen(text), strlen("j17_0_staging_") + KEY_ID_CHARS + KEY_SECRET_CHARS);
    ASSERT_EQ(strncmp(text, "j17_0_staging_", 14), 0);
    ASSERT_EQ(strncmp(text + 14, k.id, KEY_ID_CHARS), 0);
    ASSERT_EQ(verify(kr, text, &got), 0);
    ASSERT_STR(got.id, k.id);
    ASSERT_STR(got.prefix, "j17_0_staging_");
    ASSERT_STR(got.database, "shop");
    ASSERT_EQ(got.scope, SCOPE_WRITE);
    ASSERT_EQ(got.rate_limit, 9);
    struct api_key listed;
    ASSERT_EQ(keyring_get(kr, k.id, &listed), 0);
    ASSERT_STR(listed.prefix, "j17_0_staging_");

    /* rotation keeps the prefix (and scope, database, name, rate); the old key lives until
       its grace ends */
    char text2[KEY_TEXT_MAX];
    struct api_key k2;
    ASSERT_EQ(keyring_rotate(kr, k.id, time_now_us() + 60000000, text2, &k2), 0);
    ASSERT_STR(k2.prefix, "j17_0_staging_");
    ASSERT_EQ(strncmp(text2, "j17_0_staging_", 14), 0);
    CHECK(strcmp(k2.id, k.id) != 0);
    ASSERT_EQ(k2.rate_limit, 9);
    ASSERT_STR(k2.database, "shop");
    ASSERT_STR(k2.name, "ci");
    ASSERT_EQ(verify(kr, text2, &got), 0);
    ASSERT_STR(got.id, k2.id);
    ASSERT_EQ(verify(kr, text, &got), 0);

    /* revoked now: refused; the rotated one stays */
    ASSERT_EQ(keyring_revoke(kr, k.id, time_now_us()), 0);
    ASSERT_EQ(verify(kr, text, &got), ERR_NOTFOUND);
    ASSERT_EQ(verify(kr, text2, &got), 0);
    ASSERT_EQ(keyring_revoke(kr, k2.id, time_now_us()), 0);
    ASSERT_EQ(verify(kr, text2, &got), ERR_NOTFOUND);
    keyring_close(kr);
    remove_dir(dir);
}

TEST(prefixed_key_only_under_its_own_prefix)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "cross");
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    char text[KEY_TEXT_MAX];
    struct api_key k, got;
    ASSERT_EQ(keyring_create_prefixed(kr, "j17_0_prod_", SCOPE_READ, "shop", "", 0, 0, text,
                                      &k), 0);
    const char *tail = text + strlen("j17_0_prod_");
    const char *secret = tail + KEY_ID_CHARS;
    char bad[KEY_TEXT_MAX + 8];
    /* its id and secret as an ordinary key: "ak_<id>_<secret>", and without the separator */
    snprintf(bad, sizeof bad, "ak_%.*s_%s", KEY_ID_CHARS, tail, secret);
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    snprintf(bad, sizeof bad, "ak_%s", tail);
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    /* under another prefix, a shorter or longer one, or with a '_' added before the secret */
    const char *others[] = {"j17_0_test_", "j17_0_staging_", "j17_0_prod", "j17_0_prod__",
                            "x", "J17_0_PROD_"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        snprintf(bad, sizeof bad, "%s%s", others[i], tail);
        ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    }
    snprintf(bad, sizeof bad, "j17_0_prod_%.*s_%s", KEY_ID_CHARS, tail, secret);
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    /* a wrong secret under the right prefix */
    strcpy(bad, text);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'A' ? 'B' : 'A';
    ASSERT_EQ(verify(kr, bad, &got), ERR_NOTFOUND);
    /* the genuine text still works */
    ASSERT_EQ(verify(kr, text, &got), 0);
    keyring_close(kr);
    remove_dir(dir);
}

TEST(prefix_must_be_1_to_23_lowercase_digits_or_underscores)
{
    CHECK(key_prefix_ok("j17_0_staging_"));
    CHECK(key_prefix_ok("a"));
    CHECK(key_prefix_ok("abcdefghijklmnopqrstuvw")); /* 23 */
    CHECK(!key_prefix_ok("abcdefghijklmnopqrstuvwx")); /* 24 */
    CHECK(!key_prefix_ok(""));
    CHECK(!key_prefix_ok(NULL));
    CHECK(!key_prefix_ok("J17_"));
    CHECK(!key_prefix_ok("j17-0"));
    CHECK(!key_prefix_ok("j17 0"));
    char dir[128];
    fresh_dir(dir, sizeof dir, "badprefix");
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    char text[KEY_TEXT_MAX];
    struct api_key k;
    ASSERT_EQ(keyring_create_prefixed(kr, "Bad-", SCOPE_READ, "", "", 0, 0, text, &k),
              ERR_INVALID);
    ASSERT_EQ(keyring_create_prefixed(kr, "abcdefghijklmnopqrstuvwx", SCOPE_READ, "", "", 0, 0,
                                      text, &k), ERR_INVALID);
    size_t n = 9;
    free(keyring_list(kr, &n));
    ASSERT_EQ(n, 0);
    /* the longest prefix fits KEY_TEXT_MAX and verifies */
    ASSERT_EQ(keyring_create_prefixed(kr, "abcdefghijklmnopqrstuvw", SCOPE_READ, "", "", 0, 0,
                                      text, &k), 0);
    ASSERT_EQ(strlen(text), 23 + KEY_ID_CHARS + KEY_SECRET_CHARS);
    struct api_key got;
    ASSERT_EQ(verify(kr, text, &got), 0);
    keyring_close(kr);
    remove_dir(dir);
}

TEST(reload_keeps_the_prefix)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "reload");
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    char ptext[KEY_TEXT_MAX], atext[KEY_TEXT_MAX];
    struct api_key pk, ak, got;
    ASSERT_EQ(keyring_create_prefixed(kr, "j17_0_test_", SCOPE_ADMIN, "shop", "p", 0, 0, ptext,
                                      &pk), 0);
    ASSERT_EQ(keyring_create(kr, SCOPE_READ, "", "a", 0, 0, atext, &ak), 0);
    keyring_close(kr);
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    ASSERT_EQ(verify(kr, ptext, &got), 0);
    ASSERT_STR(got.prefix, "j17_0_test_");
    ASSERT_EQ(got.scope, SCOPE_ADMIN);
    ASSERT_EQ(verify(kr, atext, &got), 0);
    ASSERT_STR(got.prefix, "");
    /* the file names the prefix of the prefixed key only */
    char path[200];
    snprintf(path, sizeof path, "%s/keys.json", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char file[8192];
    size_t n = fread(file, 1, sizeof file - 1, f);
    fclose(f);
    file[n] = '\0';
    CHECK(strstr(file, "\"prefix\": \"j17_0_test_\""));
    const char *first = strstr(file, "\"prefix\"");
    CHECK(!strstr(first + 1, "\"prefix\""));
    keyring_close(kr);
    remove_dir(dir);
}

TEST(file_without_prefixes_loads_ordinary_keys_and_a_bad_prefix_is_corrupt)
{
    char dir[128];
    fresh_dir(dir, sizeof dir, "oldfile");
    char path[200];
    snprintf(path, sizeof path, "%s/keys.json", dir);
    /* a key file written before prefixes: the secret below hashes to the stored hash */
    static const char SECRET[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    static const char OLD[] =
        "{\"version\":1,\"keys\":[{\"id\":\"0123456789abcdef\",\"hash\":\"%s\",\"scope\":"
        "\"read\",\"database\":\"\",\"name\":\"old\",\"created\":1,\"notAfter\":0,"
        "\"rateLimit\":0}]}";
    /* SHA-256 of the secret, hex, as the file keeps it */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf %%s %s | sha256sum | cut -c1-64 > %s/h", SECRET, dir);
    CHECK(system(cmd) == 0);
    char hpath[200], hash[80] = {0};
    snprintf(hpath, sizeof hpath, "%s/h", dir);
    FILE *hf = fopen(hpath, "r");
    CHECK(hf && fgets(hash, sizeof hash, hf));
    fclose(hf);
    hash[64] = '\0';
    FILE *f = fopen(path, "w");
    CHECK(f);
    fprintf(f, OLD, hash);
    fclose(f);
    struct keyring *kr;
    ASSERT_EQ(keyring_open(dir, &kr), 0);
    struct api_key got;
    char text[KEY_TEXT_MAX];
    snprintf(text, sizeof text, "ak_0123456789abcdef_%s", SECRET);
    ASSERT_EQ(verify(kr, text, &got), 0);
    ASSERT_STR(got.prefix, "");
    ASSERT_STR(got.name, "old");
    keyring_close(kr);
    /* a prefix that no key could have is a damaged file */
    f = fopen(path, "w");
    CHECK(f);
    fprintf(f, "{\"version\":1,\"keys\":[{\"id\":\"0123456789abcdef\",\"hash\":\"%s\",\"scope\":"
               "\"read\",\"database\":\"\",\"name\":\"\",\"created\":1,\"notAfter\":0,"
               "\"rateLimit\":0,\"prefix\":\"Bad-\"}]}", hash);
    fclose(f);
    ASSERT_EQ(keyring_open(dir, &kr), ERR_CORRUPT);
    remove_dir(dir);
}
