/* The JSONPath subset of j17 specs (docs/dialects/j17.md, "JSONPath"): a path text is compiled
 * once into a struct jpath, then read against an event and a state, or used to write into a
 * state tree. Values are jansson trees. Pure: no I/O; one owner, any thread.
 *
 *   value path   $ | $.data... | $.metadata... | $.key | $.id | $.type | @ | @.field...
 *   state path   "" (the whole state) | field | field.field | field[n] | @... (same as without @)
 *   segments     .name (name: letters, digits, '_', '-', bytes >= 0x80)   [n]   [-n]
 */
#ifndef JSON_JPATH_H
#define JSON_JPATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* What a compiled path starts from. */
enum jpath_root {
    JPATH_ROOT_EVENT, /* $: the event context object (jpath_event_new) */
    JPATH_ROOT_STATE, /* @, or a state path: the aggregate's current state */
};

/* Which syntax jpath_compile accepts. */
enum jpath_mode {
    JPATH_VALUE,  /* must start with $ or @ (a value read in a handler) */
    JPATH_TARGET, /* a state path without $ ("" = the whole state); a leading @ is allowed */
};

/* Where and why a path text is wrong, or a write failed. */
struct jpath_error {
    size_t pos;    /* byte offset in the path text of the offending character or segment */
    char msg[96];  /* NUL-terminated English text */
};

struct jpath;

/* The event a handler sees: borrowed trees, valid while the call that uses them runs. */
struct jpath_ctx {
    const json_t *event; /* object from jpath_event_new, or NULL (then every $ path is missing) */
    const json_t *state; /* the current state, or NULL (then every @ path is missing) */
};

/* Compiles text[0..len) in the given mode into *out (owned by the caller: jpath_free).
 * A $ path must name one of data, metadata, key, id, type first. Returns 0, ERR_TOOBIG (longer
 * than LIMIT_JPATH_BYTES or more than LIMIT_JPATH_SEGMENTS segments) or ERR_INVALID (syntax);
 * on error *out is NULL and *err says where. */
int jpath_compile(const char *text, size_t len, enum jpath_mode mode, struct jpath **out,
                  struct jpath_error *err);

/* Extra first members a $ path may name, for contexts that add members to the event object
 * (flags of jpath_compile_ex). The caller puts the member into the context it reads against. */
enum {
    JPATH_ALLOW_ITEM = 1 << 0, /* $.item: the array element a j17 map implication is at */
    JPATH_ALLOW_PREV = 1 << 1, /* $.prev: the event a j17 saga step awaited before this one */
};

/* jpath_compile, also accepting the first members that flags (JPATH_ALLOW_*) allow. Same
 * returns and ownership. */
int jpath_compile_ex(const char *text, size_t len, enum jpath_mode mode, unsigned flags,
                     struct jpath **out, struct jpath_error *err);

/* Frees a compiled path; NULL does nothing. */
void jpath_free(struct jpath *p);

/* The root a path starts from. */
enum jpath_root jpath_root_of(const struct jpath *p);

/* Number of segments after the root (0: the root itself). */
size_t jpath_segment_count(const struct jpath *p);

/* True when the string s[0..len) is a reference to be resolved, not a literal: it is "$" or
 * "@", or starts with "$." "$[" "@." or "@[". */
bool jpath_is_ref(const char *s, size_t len);

/* Reads the value a path names in ctx. Returns a borrowed pointer into ctx's trees (valid
 * while they are unchanged), or NULL when a member is missing, an index is out of bounds, or a
 * segment meets a value of the wrong type (j17: such paths read as null). */
json_t *jpath_get(const struct jpath *p, const struct jpath_ctx *ctx);

/* Like jpath_get, but walks the segments from root whatever the path's root is (a state path
 * against a state, or a path relative to an array element). Borrowed result or NULL. */
json_t *jpath_get_in(const struct jpath *p, const json_t *root);

/* Stores value (transferred: always consumed, even on error) at the path inside *root. With no
 * segments *root itself is replaced (the old tree released). Missing or null members on the
 * way are created as empty objects. Returns 0, or ERR_INVALID when a segment meets a value that
 * is not an object (for .name) or an array (for [n]), or an index is out of bounds (*err says
 * which segment). A failed write leaves *root as it was except for objects created on the way. */
int jpath_set(const struct jpath *p, json_t **root, json_t *value, struct jpath_error *err);

/* Removes the member or array element the path names inside root. A path that names nothing
 * is a success (nothing to remove). With no segments, root is emptied (object or array).
 * Returns 0. */
int jpath_unset(const struct jpath *p, json_t *root);

/* Builds the event context object {"type","key","id","data","metadata"} that $ paths read.
 * id is the part of key after its first ':' (the whole key without one). data and metadata are
 * borrowed (the object takes its own references); NULL stands for null. Returns a new
 * reference owned by the caller; never NULL (allocation failure aborts). type and key must be
 * NUL-terminated UTF-8 (the server checks them when the event is written). */
json_t *jpath_event_new(const char *type, const char *key, json_t *data, json_t *metadata);

#endif
