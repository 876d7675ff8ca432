/* API keys: creation, verification, rotation and revocation, kept in <data>/keys.json.
 *
 * A key reads "ak_<id>_<secret>": id is 16 hex characters (public: it names the key in lists
 * and logs), secret 43 base64url characters (32 random bytes). A key made for an API surface
 * whose keys have a shape of their own (j17's "j17_0_prod_...") reads "<prefix><id><secret>"
 * instead: the surface's prefix (1..KEY_PREFIX_MAX bytes of [a-z0-9_]), then id and secret
 * with no separator (their lengths are fixed, so the last 59 characters are always id and
 * secret). The prefix is kept with the key and must be presented exactly; such a key is never
 * valid in the "ak_" form, nor an ordinary key under a prefix. The two forms cannot be read as
 * one another: a 63-character "ak_" key has '_' where a prefixed one has its id's last hex
 * digit. Only SHA-256(secret) is stored;
 * verification compares hashes in constant time. Each key has one scope (read < write <
 * admin: each includes the ones before it) and is bound to one database or to all, and is
 * valid until its not_after time (0 = no end); revoking sets not_after.
 *
 * The file is rewritten whole on each change (temporary file, fsync, rename, fsync of the
 * directory), so it is always either the old or the new set. Thread-safe. Knows nothing of
 * HTTP. */
#ifndef AUTH_KEYS_H
#define AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum key_scope { SCOPE_READ = 1, SCOPE_WRITE = 2, SCOPE_ADMIN = 3 };

enum {
    KEY_ID_CHARS = 16,          /* hex characters of a key id */
    KEY_SECRET_CHARS = 43,      /* base64url characters of a key's secret (32 bytes) */
    KEY_PREFIX_MAX = 23,        /* bytes of a surface's key prefix ("j17_0_staging_") */
    KEY_TEXT_MAX = 88,          /* prefix + id + secret + NUL fits (83), as does "ak_" + id +
                                   "_" + secret + NUL (64) */
    KEY_NAME_BYTES = 64,        /* a key's label */
    KEY_DB_BYTES = 63,          /* database name (LIMIT_DB_NAME_BYTES) */
    KEYS_MAX = 10000,           /* keys kept (revoked ones included) */
};

struct api_key {
    char id[KEY_ID_CHARS + 1];
    char prefix[KEY_PREFIX_MAX + 1]; /* the text's prefix instead of "ak_" (then no '_' before
                                        the secret); "" = an ordinary "ak_" key */
    uint8_t hash[32];               /* SHA-256 of the secret */
    enum key_scope scope;
    char database[KEY_DB_BYTES + 1]; /* "" = every database */
    char name[KEY_NAME_BYTES + 1];  /* label, may be "" */
    int64_t created_us;
    int64_t not_after_us;           /* valid before this time; 0 = no end */
    uint32_t rate_limit;            /* requests per second for this key (0 = the default) */
};

struct keyring;

/* Loads <data_dir>/keys.json (absent = no keys). Returns 0, ERR_CORRUPT (unreadable file) or
 * ERR_IO. */
int keyring_open(const char *data_dir, struct keyring **out);
void keyring_close(struct keyring *kr);

/* Keys valid at now_us. */
size_t keyring_active(struct keyring *kr, int64_t now_us);
/* Checks a presented key, in either form: "ak_<id>_<secret>" of a key without prefix, or
 * "<prefix><id><secret>" of a key whose stored prefix is exactly that text. Returns 0 with
 * *out filled when it is known and valid at now_us, else ERR_NOTFOUND. The secret's hash is
 * compared in constant time. */
int keyring_verify(struct keyring *kr, const char *text, size_t len, int64_t now_us,
                   struct api_key *out);
/* Makes and stores a key; its text (shown once) goes to text_out. database "" = all.
 * Returns 0, ERR_TOOBIG (KEYS_MAX) or ERR_IO (nothing changed). */
int keyring_create(struct keyring *kr, enum key_scope scope, const char *database,
                   const char *name, int64_t not_after_us, uint32_t rate_limit,
                   char text_out[KEY_TEXT_MAX], struct api_key *out);
/* The same for a key whose text starts with prefix (NULL or "" = "ak_": keyring_create) and
 * then id and secret (see above): prefix is 1..KEY_PREFIX_MAX bytes of [a-z0-9_], copied.
 * Returns 0, ERR_INVALID (a bad prefix; nothing changed), ERR_TOOBIG or ERR_IO. */
int keyring_create_prefixed(struct keyring *kr, const char *prefix, enum key_scope scope,
                            const char *database, const char *name, int64_t not_after_us,
                            uint32_t rate_limit, char text_out[KEY_TEXT_MAX],
                            struct api_key *out);
/* True when prefix is a valid key prefix: 1..KEY_PREFIX_MAX bytes of [a-z0-9_]. */
bool key_prefix_ok(const char *prefix);
/* Ends key id's validity at at_us (now or later; an earlier end is kept). Returns 0,
 * ERR_NOTFOUND or ERR_IO. */
int keyring_revoke(struct keyring *kr, const char *id, int64_t at_us);
/* Makes a new key with id's scope, database, name, rate limit and prefix, and ends id's validity at
 * old_until_us. Returns 0, ERR_NOTFOUND, ERR_TOOBIG or ERR_IO. */
int keyring_rotate(struct keyring *kr, const char *id, int64_t old_until_us,
                   char text_out[KEY_TEXT_MAX], struct api_key *out);
/* A copy of every key (free with free()); *count entries. */
struct api_key *keyring_list(struct keyring *kr, size_t *count);
/* Looks key id up. Returns 0 or ERR_NOTFOUND. */
int keyring_get(struct keyring *kr, const char *id, struct api_key *out);

const char *key_scope_name(enum key_scope s);
/* Parses "read", "write" or "admin". Returns 0 or ERR_INVALID. */
int key_scope_parse(const char *s, enum key_scope *out);

#endif
