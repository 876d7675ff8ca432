/* JSON text <-> Lua values (see luajson.h for the mapping).
 *
 * Decoding is a recursive descent over the text that pushes values straight onto the Lua
 * stack; encoding walks tables raw (lua_next, lua_rawgeti) and writes text into a struct buf.
 * Invariants: nesting never exceeds LOGIC_MAX_JSON_DEPTH in either direction, or one level more
 * for the object of a keyed batch's states (so the C recursion is bounded); encoding never
 * calls a metamethod or any other user code; a failed encode leaves out->len where it was;
 * j->keys_len is reset at every encode, so a Lua error raised in the middle of one leaves
 * nothing that the next one trusts.
 */
#include "logic/luajson.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/runtime.h"
#include "util/errors.h"

enum {
    KEY_SHOWN_BYTES = 40, /* of a key quoted in an error path */
    NUM_TEXT_BYTES = 64,  /* number literals copied to the stack for strtod */
    REAL_TEXT_BYTES = 32, /* luajson_format_real's output */
    LUAJSON_PENDING_MEMBERS = 32, /* an object's members kept on the Lua stack before they
                                     are moved into it (it is sized for the first ones) */
};

enum marker { MARK_NONE, MARK_ARRAY, MARK_OBJECT };

/* ------------------------------------------------------------------------------------------ */
/* decoding */

struct dec {
    struct luajson *j;
    lua_State *L;
    const char *start; /* the text, for error offsets */
    const char *p;     /* next byte */
    const char *end;
    int depth;         /* containers open */
    int max_depth;     /* containers that may be open at once */
    unsigned values;   /* decoded so far, for the tick */
};

static int dec_value(struct dec *d);

static int dec_fail(struct dec *d, const char *what)
{
    snprintf(d->j->err, sizeof d->j->err, "invalid JSON at byte %zu: %s",
             (size_t)(d->p - d->start), what);
    return ERR_INVALID;
}

static void skip_ws(struct dec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) {
        d->p++;
    }
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return ERR_INVALID;
        }
    }
    *out = v;
    return 0;
}

static void add_utf8(struct buf *b, unsigned cp)
{
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, t, n);
}

/* Decodes \uXXXX (and its low surrogate) at d->p (just after the 'u') into b. */
static int dec_unicode(struct dec *d, struct buf *b)
{
    unsigned cp;
    if (d->end - d->p < 4 || hex4(d->p, &cp) < 0) {
        return dec_fail(d, "bad \\u escape");
    }
    d->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return dec_fail(d, "lone low surrogate");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || hex4(d->p + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF) {
            return dec_fail(d, "lone high surrogate");
        }
        d->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    add_utf8(b, cp);
    return 0;
}

static int dec_escape(struct dec *d, struct buf *b)
{
    if (d->p >= d->end) {
        return dec_fail(d, "unfinished escape");
    }
    char c = *d->p++;
    switch (c) {
    case '"': buf_addc(b, '"'); return 0;
    case '\\': buf_addc(b, '\\'); return 0;
    case '/': buf_addc(b, '/'); return 0;
    case 'b': buf_addc(b, '\b'); return 0;
    case 'f': buf_addc(b, '\f'); return 0;
    case 'n': buf_addc(b, '\n'); return 0;
    case 'r': buf_addc(b, '\r'); return 0;
    case 't': buf_addc(b, '\t'); return 0;
    case 'u': return dec_unicode(d, b);
    default: d->p--; return dec_fail(d, "bad escape");
    }
}

/* The string starting after a '"' that contains an escape: decoded through j->scratch. */
static int dec_string_slow(struct dec *d, const char *from)
{
    struct buf *b = &d->j->scratch;
    buf_reset(b);
    buf_add(b, from, (size_t)(d->p - from));
    for (;;) {
        if (d->p >= d->end) {
            return dec_fail(d, "unfinished string");
        }
        unsigned char c = (unsigned char)*d->p;
        if (c == '"') {
            d->p++;
            lua_pushlstring(d->L, b->ptr, b->len);
            return 0;
        }
        if (c < 0x20) {
            return dec_fail(d, "control character in string");
        }
        if (c == '\\') {
            d->p++;
            int rc = dec_escape(d, b);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        const char *run = d->p;
        while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20) {
            d->p++;
        }
        buf_add(b, run, (size_t)(d->p - run));
    }
}

/* Pushes the string at d->p (which is at its opening quote). */
static int dec_string(struct dec *d)
{
    const char *from = ++d->p;
    while (d->p < d->end) {
        unsigned char c = (unsigned char)*d->p;
        if (c == '"') {
            lua_pushlstring(d->L, from, (size_t)(d->p - from));
            d->p++;
            return 0;
        }
        if (c == '\\') {
            return dec_string_slow(d, from);
        }
        if (c < 0x20) {
            return dec_fail(d, "control character in string");
        }
        d->p++;
    }
    return dec_fail(d, "unfinished string");
}

static const char *scan_digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p;
}

/* Pushes a float read by strtod from the literal [from, to). */
static void push_real(struct dec *d, const char *from, size_t n)
{
    char small[NUM_TEXT_BYTES];
    char *text = small;
    if (n >= sizeof small) {
        buf_reset(&d->j->scratch);
        buf_add(&d->j->scratch, from, n);
        text = d->j->scratch.ptr;
    } else {
        memcpy(small, from, n);
        small[n] = '\0';
    }
    lua_pushnumber(d->L, strtod(text, NULL));
}

/* Pushes an integer when the literal has no fraction or exponent and fits in int64. */
static bool push_integer(struct dec *d, const char *from, const char *to)
{
    bool neg = *from == '-';
    const char *p = from + neg;
    unsigned long long v = 0;
    unsigned long long limit = neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX;
    for (; p < to; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (limit - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    lua_pushinteger(d->L, neg ? (lua_Integer)(0 - v) : (lua_Integer)v);
    return true;
}

static int dec_number(struct dec *d)
{
    const char *from = d->p;
    const char *p = d->p;
    if (p < d->end && *p == '-') {
        p++;
    }
    if (p >= d->end || *p < '0' || *p > '9') {
        return dec_fail(d, "bad number");
    }
    p = (*p == '0') ? p + 1 : scan_digits(p, d->end);
    bool is_int = true;
    if (p < d->end && *p == '.') {
        const char *q = scan_digits(p + 1, d->end);
        if (q == p + 1) {
            return dec_fail(d, "bad number");
        }
        p = q;
        is_int = false;
    }
    if (p < d->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < d->end && (*p == '+' || *p == '-')) {
            p++;
        }
        const char *q = scan_digits(p, d->end);
        if (q == p) {
            return dec_fail(d, "bad number");
        }
        p = q;
        is_int = false;
    }
    d->p = p;
    if (!is_int || !push_integer(d, from, p)) {
        push_real(d, from, (size_t)(p - from));
    }
    return 0;
}

static int dec_literal(struct dec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) {
        return dec_fail(d, "unexpected character");
    }
    d->p += n;
    return 0;
}

static int dec_open(struct dec *d)
{
    if (++d->depth > d->max_depth) {
        snprintf(d->j->err, sizeof d->j->err, "JSON nested deeper than %d levels",
                 d->max_depth);
        return ERR_INVALID;
    }
    luaL_checkstack(d->L, 4, "JSON nesting");
    d->p++;
    skip_ws(d);
    return 0;
}

static int dec_array(struct dec *d)
{
    int rc = dec_open(d);
    if (rc < 0) {
        return rc;
    }
    lua_createtable(d->L, 0, 0);
    lua_rawgeti(d->L, LUA_REGISTRYINDEX, d->j->array_mt_ref);
    lua_setmetatable(d->L, -2);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        d->depth--;
        return 0;
    }
    for (lua_Integer i = 1;; i++) {
        rc = dec_value(d);
        if (rc < 0) {
            return rc;
        }
        if (lua_isnil(d->L, -1)) {
            lua_pop(d->L, 1);
            lua_pushlightuserdata(d->L, NULL); /* json.null keeps the position */
        }
        lua_rawseti(d->L, -2, i);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            d->depth--;
            return 0;
        }
        return dec_fail(d, "expected ',' or ']'");
    }
}

/* Decodes one member onto the stack as its name and value (nil for null: the member is left
 * out, and an earlier one of the same name removed); returns 0 or < 0. */
static int dec_member(struct dec *d)
{
    skip_ws(d);
    if (d->p >= d->end || *d->p != '"') {
        return dec_fail(d, "expected a member name");
    }
    luaL_checkstack(d->L, 2, "JSON members");
    int rc = dec_string(d);
    if (rc < 0) {
        return rc;
    }
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') {
        return dec_fail(d, "expected ':'");
    }
    d->p++;
    rc = dec_value(d);
    if (rc < 0) {
        return rc;
    }
    return 0;
}

/* Moves the npairs name/value pairs above the object at index obj into it, in their order
 * (a repeated name: the last one wins, a null one removes it), creating the object first when obj is 0 (sized for
 * the pairs: a table grown one member at a time rehashes on every power of two). Returns
 * the object's index. */
static int obj_flush(lua_State *L, int base, int obj, int npairs)
{
    if (!obj) {
        lua_createtable(L, 0, npairs);
        lua_insert(L, base + 1);
        obj = base + 1;
    }
    for (int i = 0; i < npairs; i++) {
        lua_pushvalue(L, obj + 1 + 2 * i);
        lua_pushvalue(L, obj + 2 + 2 * i);
        lua_rawset(L, obj);
    }
    lua_settop(L, obj);
    return obj;
}

static int dec_object(struct dec *d)
{
    int rc = dec_open(d);
    if (rc < 0) {
        return rc;
    }
    int base = lua_gettop(d->L); /* the object goes above base, its pending members above it */
    int obj = 0;
    int pending = 0;
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->depth--;
        lua_createtable(d->L, 0, 0);
        return 0;
    }
    for (;;) {
        rc = dec_member(d);
        if (rc < 0) {
            return rc;
        }
        pending++;
        if (pending == LUAJSON_PENDING_MEMBERS) {
            obj = obj_flush(d->L, base, obj, pending);
            pending = 0;
        }
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            d->depth--;
            obj_flush(d->L, base, obj, pending);
            return 0;
        }
        return dec_fail(d, "expected ',' or '}'");
    }
}

static int dec_value(struct dec *d)
{
    skip_ws(d);
    if (d->p >= d->end) {
        return dec_fail(d, "unexpected end");
    }
    if (++d->values % LUAJSON_TICK_VALUES == 0 && d->j->tick) {
        d->j->tick(d->L, d->j->tick_arg);
    }
    switch (*d->p) {
    case '{': return dec_object(d);
    case '[': return dec_array(d);
    case '"': return dec_string(d);
    case 't': lua_pushboolean(d->L, 1); return dec_literal(d, "true", 4);
    case 'f': lua_pushboolean(d->L, 0); return dec_literal(d, "false", 5);
    case 'n': lua_pushnil(d->L); return dec_literal(d, "null", 4);
    default: return dec_number(d);
    }
}

int luajson_decode(struct luajson *j, lua_State *L, const char *s, size_t len)
{
    return luajson_decode_depth(j, L, s, len, LOGIC_MAX_JSON_DEPTH);
}

int luajson_decode_depth(struct luajson *j, lua_State *L, const char *s, size_t len,
                         int max_depth)
{
    struct dec d = {.j = j, .L = L, .start = s, .p = s, .end = s + len, .max_depth = max_depth};
    int top = lua_gettop(L);
    int rc = dec_value(&d);
    if (rc == 0) {
        skip_ws(&d);
        if (d.p != d.end) {
            rc = dec_fail(&d, "text after the value");
        }
    }
    if (rc < 0) {
        lua_settop(L, top);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding */

struct path_elem {
    const char *key; /* NULL: an array index */
    size_t key_len;
    lua_Integer index;
};

struct enc {
    struct luajson *j;
    lua_State *L;
    struct buf *out;
    size_t start;    /* out->len before this encode */
    size_t max;      /* bytes this encode may add */
    int depth;       /* tables open */
    unsigned values; /* values and keys visited, for the tick */
    const void *open[LOGIC_MAX_JSON_DEPTH]; /* the tables open, for cycles */
    /* path[d]: the member being encoded in the table opened at depth d (1-based; index 0
     * and no key: none yet) */
    struct path_elem path[LOGIC_MAX_JSON_DEPTH + 1];
};

static int enc_value(struct enc *e, int idx);

static void format_path(const struct enc *e, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "$");
    for (int i = 1; i <= e->depth && n < cap; i++) {
        const struct path_elem *pe = &e->path[i];
        if (!pe->key && pe->index == 0) {
            break;
        }
        if (pe->key) {
            int shown = (int)(pe->key_len > KEY_SHOWN_BYTES ? KEY_SHOWN_BYTES : pe->key_len);
            n += (size_t)snprintf(out + n, cap - n, ".%.*s", shown, pe->key);
        } else {
            n += (size_t)snprintf(out + n, cap - n, "[%lld]", (long long)pe->index);
        }
    }
}

static int enc_fail(struct enc *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int enc_fail(struct enc *e, int rc, const char *fmt, ...)
{
    char path[128];
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    format_path(e, path, sizeof path);
    snprintf(e->j->err, sizeof e->j->err, "%s: %s", path, what);
    return rc;
}

static void enc_tick(struct enc *e)
{
    if (++e->values % LUAJSON_TICK_VALUES == 0 && e->j->tick) {
        e->j->tick(e->L, e->j->tick_arg);
    }
}

static int check_budget(struct enc *e, size_t more)
{
    size_t used = e->out->len - e->start;
    if (used > e->max || more > e->max - used) {
        return enc_fail(e, ERR_TOOBIG, "result exceeds the output limit of %zu bytes", e->max);
    }
    return 0;
}

static void put(struct buf *b, const char *s, size_t n)
{
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
}

static void put_escape(struct buf *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char t[6] = {'\\', 0, 0, 0, 0, 0};
    switch (c) {
    case '"': t[1] = '"'; put(b, t, 2); return;
    case '\\': t[1] = '\\'; put(b, t, 2); return;
    case '\n': t[1] = 'n'; put(b, t, 2); return;
    case '\r': t[1] = 'r'; put(b, t, 2); return;
    case '\t': t[1] = 't'; put(b, t, 2); return;
    case '\b': t[1] = 'b'; put(b, t, 2); return;
    case '\f': t[1] = 'f'; put(b, t, 2); return;
    default:
        memcpy(t + 1, "u00", 3);
        t[4] = hex[c >> 4];
        t[5] = hex[c & 15];
        put(b, t, 6);
        return;
    }
}

static int enc_string(struct enc *e, const char *s, size_t n)
{
    int rc = check_budget(e, n + 2);
    if (rc < 0) {
        return rc;
    }
    struct buf *b = e->out;
    buf_reserve(b, n + 2);
    put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_seq_len(u + i, n - i);
            if (len == 0) {
                return enc_fail(e, ERR_INVALID, "string is not valid UTF-8 (byte %zu)", i + 1);
            }
            i += len;
            continue;
        }
        buf_reserve(b, (i - run) + 6 + (n - i) + 1);
        put(b, s + run, i - run);
        put_escape(b, c);
        run = ++i;
    }
    buf_reserve(b, (n - run) + 1);
    put(b, s + run, n - run);
    put(b, "\"", 1);
    return check_budget(e, 0); /* escapes may have grown it */
}

size_t luajson_format_real(double v, char *out)
{
    int n = 0;
    if (fabs(v) < 1e15 && v == (double)(long long)v && !(v == 0 && signbit(v))) {
        /* integral and exact in 15 digits: the common case, without the strtod check */
        return (size_t)snprintf(out, REAL_TEXT_BYTES, "%lld.0", (long long)v);
    }
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, REAL_TEXT_BYTES, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            break;
        }
    }
    if (!strpbrk(out, ".eEn")) { /* "25" would read back as an integer: "25.0" */
        memcpy(out + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/* v in decimal into out (at least 21 bytes); returns its length. Hand-formatted: every state
 * a reducer returns has integers, and snprintf is slow. */
static size_t format_integer(lua_Integer v, char *out)
{
    char rev[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        rev[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) {
        out[len++] = '-';
    }
    while (n) {
        out[len++] = rev[--n];
    }
    return len;
}

static int enc_number(struct enc *e, int idx)
{
    char t[REAL_TEXT_BYTES];
    size_t n;
    if (lua_isinteger(e->L, idx)) {
        n = format_integer(lua_tointeger(e->L, idx), t);
    } else {
        double v = lua_tonumber(e->L, idx);
        if (!isfinite(v)) {
            return enc_fail(e, ERR_INVALID, "%s is not a JSON number", isnan(v) ? "NaN" : "infinity");
        }
        n = luajson_format_real(v, t);
    }
    int rc = check_budget(e, n);
    if (rc < 0) {
        return rc;
    }
    buf_reserve(e->out, n);
    put(e->out, t, n);
    return 0;
}

static int enc_raw(struct enc *e, const char *s, size_t n)
{
    int rc = check_budget(e, n);
    if (rc < 0) {
        return rc;
    }
    buf_reserve(e->out, n);
    put(e->out, s, n);
    return 0;
}

static enum marker marker_of(struct enc *e, int idx)
{
    lua_State *L = e->L;
    if (!lua_getmetatable(L, idx)) {
        return MARK_NONE;
    }
    enum marker m = MARK_NONE;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->j->array_mt_ref);
    if (lua_rawequal(L, -1, -2)) {
        m = MARK_ARRAY;
    } else {
        lua_pop(L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->j->object_mt_ref);
        if (lua_rawequal(L, -1, -2)) {
            m = MARK_OBJECT;
        }
    }
    lua_pop(L, 2);
    return m;
}

/* What a table's keys make it. */
struct shape {
    size_t count;       /* keys */
    size_t n_str;       /* string keys */
    size_t n_int;       /* positive integer keys */
    lua_Integer max_int;
};

static void push_key(struct luajson *j, const char *p, size_t n)
{
    if (j->keys_len == j->keys_cap) {
        j->keys_cap = j->keys_cap ? j->keys_cap * 2 : 64;
        j->keys = xrealloc(j->keys, j->keys_cap * sizeof *j->keys);
    }
    j->keys[j->keys_len].ptr = p;
    j->keys[j->keys_len].len = n;
    j->keys_len++;
}

static int bad_key(struct enc *e, int kidx)
{
    lua_State *L = e->L;
    if (lua_type(L, kidx) == LUA_TNUMBER) {
        if (lua_isinteger(L, kidx)) {
            return enc_fail(e, ERR_INVALID, "integer key %lld is not an array index (1..n)",
                            (long long)lua_tointeger(L, kidx));
        }
        return enc_fail(e, ERR_INVALID, "key %g is not a string or an array index",
                        lua_tonumber(L, kidx));
    }
    return enc_fail(e, ERR_INVALID, "a %s key cannot be JSON (keys are strings)",
                    luaL_typename(L, kidx));
}

/* Walks the table's keys (raw), counting them and collecting string keys into j->keys. */
static int scan_keys(struct enc *e, int idx, struct shape *sh)
{
    lua_State *L = e->L;
    size_t room = e->max - (e->out->len - e->start);
    memset(sh, 0, sizeof *sh);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        enc_tick(e);
        sh->count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *k = lua_tolstring(L, -1, &n);
            push_key(e->j, k, n);
            sh->n_str++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            lua_Integer k = lua_tointeger(L, -1);
            sh->n_int++;
            sh->max_int = k > sh->max_int ? k : sh->max_int;
        } else {
            int rc = bad_key(e, -1);
            lua_pop(L, 1);
            return rc;
        }
        if (sh->count > room / 2) { /* every item takes at least 2 bytes */
            lua_pop(L, 1);
            return enc_fail(e, ERR_TOOBIG, "result exceeds the output limit of %zu bytes", e->max);
        }
    }
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const struct luajson_key *x = a;
    const struct luajson_key *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    if (c != 0) {
        return c;
    }
    return (x->len > y->len) - (x->len < y->len);
}

static int enc_array_items(struct enc *e, int idx, lua_Integer n)
{
    int rc = enc_raw(e, "[", 1);
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        if (i > 1) {
            rc = enc_raw(e, ",", 1);
            if (rc < 0) {
                break;
            }
        }
        e->path[e->depth].key = NULL;
        e->path[e->depth].index = i;
        lua_rawgeti(e->L, idx, i);
        rc = enc_value(e, lua_gettop(e->L));
        lua_pop(e->L, 1);
    }
    return rc < 0 ? rc : enc_raw(e, "]", 1);
}

static int enc_object_members(struct enc *e, int idx, size_t base, size_t n)
{
    struct luajson *j = e->j;
    qsort(j->keys + base, n, sizeof *j->keys, key_cmp);
    int rc = enc_raw(e, "{", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct luajson_key k = j->keys[base + i]; /* j->keys may move while recursing */
        rc = (i > 0) ? enc_raw(e, ",", 1) : 0;
        if (rc == 0) {
            rc = enc_string(e, k.ptr, k.len);
        }
        if (rc == 0) {
            rc = enc_raw(e, ":", 1);
        }
        if (rc < 0) {
            break;
        }
        e->path[e->depth].key = k.ptr;
        e->path[e->depth].key_len = k.len;
        lua_pushlstring(e->L, k.ptr, k.len);
        lua_rawget(e->L, idx);
        rc = enc_value(e, lua_gettop(e->L));
        lua_pop(e->L, 1);
    }
    return rc < 0 ? rc : enc_raw(e, "}", 1);
}

/* Checks that the keys fit the marker and picks array or object. */
static int enc_shaped(struct enc *e, int idx, enum marker mark, const struct shape *sh,
                      size_t base)
{
    if (sh->count == 0) {
        return enc_raw(e, mark == MARK_ARRAY ? "[]" : "{}", 2);
    }
    if (sh->n_str == sh->count) {
        if (mark == MARK_ARRAY) {
            return enc_fail(e, ERR_INVALID, "json.array table has string keys");
        }
        return enc_object_members(e, idx, base, sh->count);
    }
    if (sh->n_int != sh->count) {
        return enc_fail(e, ERR_INVALID, "table mixes string keys and integer keys");
    }
    if (mark == MARK_OBJECT) {
        return enc_fail(e, ERR_INVALID, "json.object table has integer keys");
    }
    if ((size_t)sh->max_int != sh->count) {
        return enc_fail(e, ERR_INVALID,
                        "sparse array: %zu items but index %lld is set (use json.null for holes)",
                        sh->count, (long long)sh->max_int);
    }
    return enc_array_items(e, idx, sh->max_int);
}

static int enc_table(struct enc *e, int idx)
{
    const void *self = lua_topointer(e->L, idx);
    if (e->depth >= LOGIC_MAX_JSON_DEPTH) {
        return enc_fail(e, ERR_INVALID, "nested deeper than %d levels", LOGIC_MAX_JSON_DEPTH);
    }
    for (int i = 0; i < e->depth; i++) {
        if (e->open[i] == self) {
            return enc_fail(e, ERR_INVALID, "cycle: the table contains itself");
        }
    }
    luaL_checkstack(e->L, 4, "JSON nesting");
    e->open[e->depth++] = self;
    e->path[e->depth].key = NULL;
    e->path[e->depth].index = 0;
    enum marker mark = marker_of(e, idx);
    size_t base = e->j->keys_len;
    struct shape sh;
    int rc = scan_keys(e, idx, &sh);
    if (rc == 0) {
        rc = enc_shaped(e, idx, mark, &sh, base);
    }
    e->j->keys_len = base;
    e->depth--;
    return rc;
}

static int enc_value(struct enc *e, int idx)
{
    lua_State *L = e->L;
    enc_tick(e);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return enc_raw(e, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? enc_raw(e, "true", 4) : enc_raw(e, "false", 5);
    case LUA_TNUMBER: return enc_number(e, idx);
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n);
    }
    case LUA_TTABLE: return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            return enc_raw(e, "null", 4);
        }
        /* fall through */
    default:
        return enc_fail(e, ERR_INVALID, "a %s value cannot be JSON", luaL_typename(L, idx));
    }
}

int luajson_encode(struct luajson *j, lua_State *L, int idx, struct buf *out, size_t max_bytes)
{
    struct enc e = {.j = j, .L = L, .out = out, .start = out->len, .max = max_bytes};
    j->keys_len = 0;
    buf_reserve(out, 0);
    int rc = enc_value(&e, lua_absindex(L, idx));
    if (rc < 0) {
        out->len = e.start;
    }
    out->ptr[out->len] = '\0';
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* the json library seen by scripts */

static struct luajson *lib_self(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* json.array([t]) / json.object([t]): marks t (or a new table) and returns it. */
static int mark_table(lua_State *L, int ref)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (lua_getmetatable(L, 1)) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
            if (!lua_rawequal(L, -1, -2)) {
                return luaL_error(L, "the table already has a metatable");
            }
            lua_settop(L, 1);
            return 1;
        }
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_setmetatable(L, 1);
    return 1;
}

static int lib_array(lua_State *L)
{
    return mark_table(L, lib_self(L)->array_mt_ref);
}

static int lib_object(lua_State *L)
{
    return mark_table(L, lib_self(L)->object_mt_ref);
}

static int lib_encode(lua_State *L)
{
    struct luajson *j = lib_self(L);
    luaL_checkany(L, 1);
    buf_reset(&j->encoded);
    int rc = luajson_encode(j, L, 1, &j->encoded, j->encode_max_bytes);
    if (j->tick) {
        j->tick(L, j->tick_arg); /* the work since the last count hook may be large */
    }
    if (rc < 0) {
        return luaL_error(L, "json.encode: %s", j->err);
    }
    lua_pushlstring(L, j->encoded.ptr, j->encoded.len);
    return 1;
}

static int lib_decode(lua_State *L)
{
    struct luajson *j = lib_self(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (luajson_decode(j, L, s, n) < 0) {
        return luaL_error(L, "json.decode: %s", j->err);
    }
    if (j->tick) {
        j->tick(L, j->tick_arg);
    }
    return 1;
}

void luajson_push_lib(struct luajson *j, lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"array", lib_array},
        {"object", lib_object},
        {"encode", lib_encode},
        {"decode", lib_decode},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 5);
    lua_pushlightuserdata(L, j);
    luaL_setfuncs(L, fns, 1);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}

static int new_marker(lua_State *L, const char *name)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable"); /* getmetatable answers the name; no one replaces it */
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void luajson_init(struct luajson *j, lua_State *L)
{
    j->array_mt_ref = new_marker(L, "json.array");
    j->object_mt_ref = new_marker(L, "json.object");
    j->keys_len = 0;
    j->err[0] = '\0';
}

void luajson_fini(struct luajson *j)
{
    buf_fini(&j->scratch);
    buf_fini(&j->encoded);
    free(j->keys);
    j->keys = NULL;
    j->keys_len = 0;
    j->keys_cap = 0;
}
