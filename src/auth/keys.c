#include "auth/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/errors.h"
#include "util/hash.h"
#include "util/log.h"

enum { SECRET_BYTES = 32, SECRET_CHARS = KEY_SECRET_CHARS };

struct keyring {
    pthread_mutex_t mu;
    char *path;           /* <data>/keys.json */
    char *dir;            /* <data> */
    struct api_key *keys; /* owned */
    size_t n, cap;
};

static const char *const SCOPES[] = {[SCOPE_READ] = "read", [SCOPE_WRITE] = "write",
                                     [SCOPE_ADMIN] = "admin"};

const char *key_scope_name(enum key_scope s)
{
    return s >= SCOPE_READ && s <= SCOPE_ADMIN ? SCOPES[s] : "none";
}

bool key_prefix_ok(const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > KEY_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = prefix[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return false;
        }
    }
    return true;
}

int key_scope_parse(const char *s, enum key_scope *out)
{
    for (int i = SCOPE_READ; i <= SCOPE_ADMIN; i++) {
        if (s && strcmp(s, SCOPES[i]) == 0) {
            *out = (enum key_scope)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

/* ---- the file ---- */

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    if (!hex || strlen(hex) != 2 * n) {
        return ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return ERR_INVALID;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int key_from_json(json_t *o, struct api_key *k)
{
    memset(k, 0, sizeof(*k));
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *db = json_string_value(json_object_get(o, "database"));
    const char *name = json_string_value(json_object_get(o, "name"));
    json_t *prefix = json_object_get(o, "prefix"); /* absent in files of before prefixes */
    if ((prefix && !key_prefix_ok(json_string_value(prefix))) || !id || strlen(id) != KEY_ID_CHARS || !db || strlen(db) > KEY_DB_BYTES || !name ||
        strlen(name) > KEY_NAME_BYTES ||
        key_scope_parse(json_string_value(json_object_get(o, "scope")), &k->scope) ||
        hex_to_bytes(json_string_value(json_object_get(o, "hash")), k->hash, 32)) {
        return ERR(ERR_CORRUPT);
    }
    strcpy(k->id, id);
    strcpy(k->database, db);
    strcpy(k->name, name);
    strcpy(k->prefix, prefix ? json_string_value(prefix) : "");
    k->created_us = json_integer_value(json_object_get(o, "created"));
    k->not_after_us = json_integer_value(json_object_get(o, "notAfter"));
    k->rate_limit = (uint32_t)json_integer_value(json_object_get(o, "rateLimit"));
    return 0;
}

static int load(struct keyring *kr)
{
    json_error_t je;
    json_t *root = json_load_file(kr->path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (access(kr->path, F_OK) != 0 && errno == ENOENT) {
            return 0;
        }
        log_error("%s: cannot read the key file: %s", kr->path, je.text);
        return ERR(ERR_CORRUPT);
    }
    json_t *arr = json_object_get(root, "keys");
    int rc = json_is_array(arr) ? 0 : ERR(ERR_CORRUPT);
    for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
        if (kr->n == kr->cap) {
            kr->cap = kr->cap ? kr->cap * 2 : 16;
            kr->keys = xrealloc(kr->keys, kr->cap * sizeof(*kr->keys));
        }
        rc = key_from_json(json_array_get(arr, i), &kr->keys[kr->n]);
        kr->n += rc == 0;
    }
    json_decref(root);
    if (rc) {
        log_error("%s: the key file is damaged", kr->path);
    }
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return ERR(ERR_IO);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Rewrites the file from kr->keys: temporary file, fsync, rename, fsync of the directory. */
static int save(struct keyring *kr)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < kr->n; i++) {
        const struct api_key *k = &kr->keys[i];
        char hash[65];
        hash_hex(k->hash, 32, hash);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "id", k->id, "hash", hash,
                              "scope", key_scope_name(k->scope), "database", k->database,
                              "name", k->name, "created", (json_int_t)k->created_us,
                              "notAfter", (json_int_t)k->not_after_us, "rateLimit",
                              (json_int_t)k->rate_limit);
        if (k->prefix[0]) { /* only then: files without prefixed keys stay as they were */
            json_object_set_new(o, "prefix", json_string(k->prefix));
        }
        json_array_append_new(arr, o);
    }
    json_t *root = json_pack("{s:i,s:o}", "version", 1, "keys", arr);
    char *text = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", kr->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? ERR(ERR_IO) : write_all(fd, text, strlen(text));
    if (!rc && fsync(fd) != 0) {
        rc = ERR(ERR_IO);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(text);
    if (!rc && rename(tmp, kr->path) != 0) {
        rc = ERR(ERR_IO);
    }
    int dfd = rc ? -1 : open(kr->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!rc && (dfd < 0 || fsync(dfd) != 0)) {
        rc = ERR(ERR_IO);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    if (rc) {
        unlink(tmp);
        log_error("%s: cannot write the key file", kr->path);
    }
    return rc;
}

int keyring_open(const char *data_dir, struct keyring **out)
{
    struct keyring *kr = xcalloc(1, sizeof(*kr));
    pthread_mutex_init(&kr->mu, NULL);
    kr->dir = xstrndup(data_dir, strlen(data_dir));
    size_t n = strlen(data_dir) + 16;
    kr->path = xmalloc(n);
    snprintf(kr->path, n, "%s/keys.json", data_dir);
    int rc = load(kr);
    if (rc) {
        keyring_close(kr);
        return rc;
    }
    *out = kr;
    return 0;
}

void keyring_close(struct keyring *kr)
{
    if (!kr) {
        return;
    }
    pthread_mutex_destroy(&kr->mu);
    free(kr->keys);
    free(kr->path);
    free(kr->dir);
    free(kr);
}

/* ---- keys ---- */

static bool valid_at(const struct api_key *k, int64_t now_us)
{
    return k->not_after_us == 0 || now_us < k->not_after_us;
}

size_t keyring_active(struct keyring *kr, int64_t now_us)
{
    size_t n = 0;
    pthread_mutex_lock(&kr->mu);
    for (size_t i = 0; i < kr->n; i++) {
        n += valid_at(&kr->keys[i], now_us);
    }
    pthread_mutex_unlock(&kr->mu);
    return n;
}

static struct api_key *find(struct keyring *kr, const char *id)
{
    for (size_t i = 0; i < kr->n; i++) {
        if (strcmp(kr->keys[i].id, id) == 0) {
            return &kr->keys[i];
        }
    }
    return NULL;
}

static bool is_hex_id(const char *s)
{
    for (size_t i = 0; i < KEY_ID_CHARS; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* Splits a presented key into the prefix it claims ("" for the "ak_" form; at most
 * KEY_PREFIX_MAX bytes), its id and its secret (pointing into text). False when text has
 * neither shape. The shapes are disjoint (keys.h), so at most one applies. */
static bool split_key(const char *text, size_t len, char prefix[KEY_PREFIX_MAX + 1],
                      char id[KEY_ID_CHARS + 1], const char **secret)
{
    size_t tail = KEY_ID_CHARS + SECRET_CHARS;
    size_t plen;
    const char *at;
    if (len == 3 + KEY_ID_CHARS + 1 + SECRET_CHARS && memcmp(text, "ak_", 3) == 0 &&
        text[3 + KEY_ID_CHARS] == '_') { /* ak_<16 hex>_<43 base64url> */
        plen = 0;
        at = text + 3;
        *secret = at + KEY_ID_CHARS + 1;
    } else if (len > tail && len - tail <= KEY_PREFIX_MAX) { /* <prefix><16 hex><43> */
        plen = len - tail;
        at = text + plen;
        *secret = at + KEY_ID_CHARS;
    } else {
        return false;
    }
    memcpy(prefix, text, plen);
    prefix[plen] = '\0';
    memcpy(id, at, KEY_ID_CHARS);
    id[KEY_ID_CHARS] = '\0';
    return is_hex_id(id) && strlen(prefix) == plen && (plen == 0 || key_prefix_ok(prefix));
}

int keyring_verify(struct keyring *kr, const char *text, size_t len, int64_t now_us,
                   struct api_key *out)
{
    char prefix[KEY_PREFIX_MAX + 1];
    char id[KEY_ID_CHARS + 1];
    const char *secret;
    if (!split_key(text, len, prefix, id, &secret)) {
        return ERR_NOTFOUND;
    }
    uint8_t h[32];
    struct hash_part part = {secret, SECRET_CHARS};
    hash_sha256(&part, 1, h);
    pthread_mutex_lock(&kr->mu);
    const struct api_key *k = find(kr, id);
    /* the prefix is public: compared plainly; the hash in constant time */
    bool ok = k && CRYPTO_memcmp(k->hash, h, sizeof h) == 0 && strcmp(k->prefix, prefix) == 0 &&
              valid_at(k, now_us);
    if (ok) {
        *out = *k;
    }
    pthread_mutex_unlock(&kr->mu);
    return ok ? 0 : ERR_NOTFOUND;
}

static void random_bytes(uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
        }
    }
}

/* A new key: random id and secret; *k gets everything but scope, database, name and prefix,
 * which it must hold already (its text begins with k->prefix, or "ak_"). */
static void make_key(struct api_key *k, char text[KEY_TEXT_MAX], int64_t now_us)
{
    static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t idb[KEY_ID_CHARS / 2], secret[SECRET_BYTES + 1] = {0};
    random_bytes(idb, sizeof idb);
    random_bytes(secret, SECRET_BYTES);
    hash_hex(idb, sizeof idb, k->id);
    char s[SECRET_CHARS + 1];
    for (int i = 0, bit = 0; i < SECRET_CHARS; i++, bit += 6) {
        unsigned v = (unsigned)(secret[bit / 8] << 8 | secret[bit / 8 + 1]) >> (10 - bit % 8);
        s[i] = B64[v & 63];
    }
    s[SECRET_CHARS] = '\0';
    if (k->prefix[0]) {
        snprintf(text, KEY_TEXT_MAX, "%s%s%s", k->prefix, k->id, s);
    } else {
        snprintf(text, KEY_TEXT_MAX, "ak_%s_%s", k->id, s);
    }
    struct hash_part part = {s, SECRET_CHARS};
    hash_sha256(&part, 1, k->hash);
    k->created_us = now_us;
}

static int add_locked(struct keyring *kr, const struct api_key *k)
{
    if (kr->n == KEYS_MAX) {
        return ERR_TOOBIG;
    }
    if (kr->n == kr->cap) {
        kr->cap = kr->cap ? kr->cap * 2 : 16;
        kr->keys = xrealloc(kr->keys, kr->cap * sizeof(*kr->keys));
    }
    kr->keys[kr->n++] = *k;
    int rc = save(kr);
    if (rc) {
        kr->n--;
    }
    return rc;
}

static int64_t now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int keyring_create(struct keyring *kr, enum key_scope scope, const char *database,
                   const char *name, int64_t not_after_us, uint32_t rate_limit,
                   char text_out[KEY_TEXT_MAX], struct api_key *out)
{
    return keyring_create_prefixed(kr, NULL, scope, database, name, not_after_us, rate_limit,
                                   text_out, out);
}

int keyring_create_prefixed(struct keyring *kr, const char *prefix, enum key_scope scope,
                            const char *database, const char *name, int64_t not_after_us,
                            uint32_t rate_limit, char text_out[KEY_TEXT_MAX],
                            struct api_key *out)
{
    if (prefix && *prefix && !key_prefix_ok(prefix)) {
        return ERR_INVALID;
    }
    struct api_key k = {.scope = scope, .not_after_us = not_after_us, .rate_limit = rate_limit};
    snprintf(k.prefix, sizeof k.prefix, "%s", prefix ? prefix : "");
    snprintf(k.database, sizeof k.database, "%s", database ? database : "");
    snprintf(k.name, sizeof k.name, "%s", name ? name : "");
    make_key(&k, text_out, now());
    pthread_mutex_lock(&kr->mu);
    int rc = add_locked(kr, &k);
    pthread_mutex_unlock(&kr->mu);
    if (!rc && out) {
        *out = k;
    }
    return rc;
}

int keyring_revoke(struct keyring *kr, const char *id, int64_t at_us)
{
    pthread_mutex_lock(&kr->mu);
    struct api_key *k = find(kr, id);
    int rc = k ? 0 : ERR_NOTFOUND;
    if (k && (k->not_after_us == 0 || at_us < k->not_after_us)) {
        int64_t was = k->not_after_us;
        k->not_after_us = at_us;
        rc = save(kr);
        if (rc) {
            k->not_after_us = was;
        }
    }
    pthread_mutex_unlock(&kr->mu);
    return rc;
}

int keyring_rotate(struct keyring *kr, const char *id, int64_t old_until_us,
                   char text_out[KEY_TEXT_MAX], struct api_key *out)
{
    pthread_mutex_lock(&kr->mu);
    struct api_key *old = find(kr, id);
    if (!old) {
        pthread_mutex_unlock(&kr->mu);
        return ERR_NOTFOUND;
    }
    struct api_key k = {.scope = old->scope, .rate_limit = old->rate_limit};
    strcpy(k.database, old->database);
    strcpy(k.name, old->name);
    strcpy(k.prefix, old->prefix);
    make_key(&k, text_out, now());
    int64_t was = old->not_after_us;
    size_t idx = (size_t)(old - kr->keys);
    if (was == 0 || old_until_us < was) {
        old->not_after_us = old_until_us;
    }
    int rc = add_locked(kr, &k); /* saves both changes, or neither */
    if (rc) {
        kr->keys[idx].not_after_us = was;
    } else if (out) {
        *out = k;
    }
    pthread_mutex_unlock(&kr->mu);
    return rc;
}

struct api_key *keyring_list(struct keyring *kr, size_t *count)
{
    pthread_mutex_lock(&kr->mu);
    struct api_key *copy = xmalloc((kr->n ? kr->n : 1) * sizeof(*copy));
    if (kr->n) {
        memcpy(copy, kr->keys, kr->n * sizeof(*copy));
    }
    *count = kr->n;
    pthread_mutex_unlock(&kr->mu);
    return copy;
}

int keyring_get(struct keyring *kr, const char *id, struct api_key *out)
{
    pthread_mutex_lock(&kr->mu);
    const struct api_key *k = find(kr, id);
    if (k) {
        *out = *k;
    }
    pthread_mutex_unlock(&kr->mu);
    return k ? 0 : ERR_NOTFOUND;
}
