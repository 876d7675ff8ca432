/* JSON text <-> Lua values, for the Lua runtime (docs/design/logic.md, "JSON mapping").
 *
 * A direct walk between JSON text and the Lua stack (no intermediate tree):
 *   object  -> table with string keys (a member whose value is null is left out)
 *   array   -> table 1..n carrying the array marker metatable (so [] stays [])
 *   null    -> nil at the top level and in objects, json.null (NULL light userdata) in arrays
 *   integer -> Lua integer (a literal beyond int64 becomes a float); other numbers -> float
 * and back: tables with only keys 1..n are arrays, tables with only string keys are objects
 * (keys sorted by bytes), an empty table is {} unless it carries the array marker; integers
 * print as integers, floats as the shortest text that reads back to the same double, with
 * ".0" added when that text looks like an integer (so the subtype survives a round trip).
 *
 * Nothing here runs user code: tables are read raw (no __index, __pairs, __len). Decoding and
 * encoding allocate Lua values and may raise a Lua memory error, so they run in protected
 * mode; struct luajson keeps no state across a raised error that its next use does not reset.
 *
 * One struct luajson per lua_State, used by the thread running that state.
 */
#ifndef LOGIC_LUAJSON_H
#define LOGIC_LUAJSON_H

#include <lua.h>
#include <stddef.h>

#include "util/buf.h"

enum {
    LUAJSON_ERR_BYTES = 300,  /* room for an error message with its path */
    LUAJSON_TICK_VALUES = 4096, /* values between two calls of the tick function */
};

/* Called every LUAJSON_TICK_VALUES values decoded or visited while encoding, and after each
 * json.encode and json.decode; may raise a Lua error (the CPU deadline of the runtime). */
typedef void luajson_tick_fn(lua_State *L, void *arg);

struct luajson_key {
    const char *ptr; /* borrowed from a string key of the table being encoded */
    size_t len;
};

struct luajson {
    int array_mt_ref;          /* registry reference of the array marker metatable */
    int object_mt_ref;         /* registry reference of the object marker metatable */
    luajson_tick_fn *tick;     /* NULL: none */
    void *tick_arg;            /* borrowed, passed to tick */
    size_t encode_max_bytes;   /* cap of json.encode's result (the runtime's output limit) */
    struct buf scratch;        /* owned: strings with escapes while decoding */
    struct buf encoded;        /* owned: json.encode's text before it becomes a Lua string */
    struct luajson_key *keys;  /* owned: the string keys of the objects being encoded */
    size_t keys_len;           /* keys in use */
    size_t keys_cap;           /* keys allocated */
    char err[LUAJSON_ERR_BYTES]; /* the last error's message (with a $.path when encoding) */
};

/* Creates the marker metatables in L's registry (protected: getmetatable gives "json.array"
 * or "json.object", setmetatable refuses to replace them) and sets j up. Call in protected
 * mode (allocates). */
void luajson_init(struct luajson *j, lua_State *L);
/* Frees j's C memory (the Lua side goes with its state). Zeroed memory is allowed. */
void luajson_fini(struct luajson *j);

/* Pushes the value of the JSON text s[0..len) (one value, whitespace around it allowed).
 * Returns 0 with one value pushed, or ERR_INVALID with j->err set and nothing pushed (not
 * JSON, nesting deeper than LOGIC_MAX_JSON_DEPTH, an escaped lone surrogate). May raise a
 * Lua error (memory, or from the tick function). */
int luajson_decode(struct luajson *j, lua_State *L, const char *s, size_t len);

/* luajson_decode with max_depth levels of nesting instead of LOGIC_MAX_JSON_DEPTH: one more
 * for an object whose members are values of the usual depth (a keyed batch's states).
 * max_depth must be at most LOGIC_MAX_JSON_DEPTH + 1 (the C recursion). */
int luajson_decode_depth(struct luajson *j, lua_State *L, const char *s, size_t len,
                         int max_depth);

/* Appends the JSON text of the value at idx to out. Returns 0, ERR_INVALID with j->err set
 * (a value JSON cannot hold: function, NaN, infinity, a key neither string nor array index,
 * a sparse array, mixed keys, a cycle, invalid UTF-8, nesting deeper than
 * LOGIC_MAX_JSON_DEPTH), or ERR_TOOBIG with j->err set (the text would exceed max_bytes).
 * On such a failure out->len is back where it was. May raise a Lua error (memory, or from the
 * tick function), after which out holds a partial text the caller discards. */
int luajson_encode(struct luajson *j, lua_State *L, int idx, struct buf *out, size_t max_bytes);

/* Pushes the `json` library table: null, array([t]), object([t]), encode(v), decode(s).
 * j must outlive L's use of the table. */
void luajson_push_lib(struct luajson *j, lua_State *L);

/* Writes the shortest decimal text that reads back as v (finite) into out (>= 32 bytes),
 * with ".0" added when it would read as an integer; returns its length. */
size_t luajson_format_real(double v, char *out);

#endif
