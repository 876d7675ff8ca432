/* j17 identifiers and names (docs/dialects/j17.md, "Identifiers"): the one rule j17 applies to
 * aggregate ids, actor and target ids and implication ids, and the rule for type names. Pure.
 * Invariant: a canonical id is at most J17_ID_BYTES bytes and checks again to itself. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "dialect/j17/spec.h"
#include "dialect/j17/spec_int.h"
#include "util/errors.h"

enum { UUID_LEN = 36, HUMANE_LEN = 9, TAG_MAX = 32 };

bool j17_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > J17_NAME_BYTES || s[0] < 'a' || s[0] > 'z') return false;
    for (size_t i = 1; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
    }
    return true;
}

/* A UUID of version 4 or 5 in s[0..UUID_LEN): written lower case into out. */
static bool uuid_v4v5(const char *s, char *out)
{
    for (size_t i = 0; i < UUID_LEN; i++) {
        char ch = s[i];
        bool is_dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (is_dash ? ch != '-' : !isxdigit((unsigned char)ch)) return false;
        out[i] = (char)tolower((unsigned char)ch);
    }
    return (out[14] == '4' || out[14] == '5') &&
           (out[19] == '8' || out[19] == '9' || out[19] == 'a' || out[19] == 'b');
}

/* A 9-character Crockford base32 code (no I, L, O, U): written upper case into out. */
static bool humane(const char *s, char *out)
{
    for (size_t i = 0; i < HUMANE_LEN; i++) {
        char ch = (char)toupper((unsigned char)s[i]);
        bool is_digit = ch >= '0' && ch <= '9';
        bool is_letter = ch >= 'A' && ch <= 'Z' && !strchr("ILOU", ch);
        if (!is_digit && !is_letter) return false;
        out[i] = ch;
    }
    return true;
}

static bool tag_ok(const char *s, size_t len)
{
    if (len == 0 || len > TAG_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

int j17_id_check(const struct j17_spec *s, struct slice id, char *canon)
{
    canon[0] = '\0';
    if (id.len == 0 || id.len > J17_ID_BYTES || memchr(id.ptr, '\0', id.len)) {
        return ERR(ERR_INVALID);
    }
    if (j17_spec_singleton(s, id)) {
        memcpy(canon, id.ptr, id.len);
        canon[id.len] = '\0';
        return 0;
    }
    if (id.len == HUMANE_LEN && humane(id.ptr, canon)) {
        canon[HUMANE_LEN] = '\0';
        return 0;
    }
    if (id.len >= UUID_LEN && uuid_v4v5(id.ptr, canon)) {
        if (id.len == UUID_LEN) {
            canon[UUID_LEN] = '\0';
            return 0;
        }
        if (id.ptr[UUID_LEN] == ':' && tag_ok(id.ptr + UUID_LEN + 1, id.len - UUID_LEN - 1)) {
            memcpy(canon + UUID_LEN, id.ptr + UUID_LEN, id.len - UUID_LEN);
            canon[id.len] = '\0';
            return 0;
        }
    }
    canon[0] = '\0';
    return ERR(ERR_INVALID);
}
