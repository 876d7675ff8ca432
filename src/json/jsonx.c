/* Span scanning over validated JSON text. Because input was validated first, the scanner
 * only tracks strings (with escapes) and bracket nesting; it never needs to reject. */
#include "json/jsonx.h"

#include <stdint.h>
#include <string.h>

#include "util/errors.h"

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && is_ws(p[i])) {
        i++;
    }
    return i;
}

/* p[i] == '"'; returns the index just after the closing quote. */
static size_t skip_string(const char *p, size_t n, size_t i)
{
    size_t start = ++i;
    while (i < n) {
        const char *q = memchr(p + i, '"', n - i); /* word at a time, not byte by byte */
        if (!q) {
            return n;
        }
        size_t at = (size_t)(q - p), back = at;
        while (back > start && p[back - 1] == '\\') {
            back--;
        }
        if ((at - back) % 2 == 0) { /* not escaped: an even run of backslashes before it */
            return at + 1;
        }
        i = at + 1;
    }
    return n;
}

/* Returns the index just after the value starting at p[i]. */
static size_t skip_value(const char *p, size_t n, size_t i)
{
    if (i >= n) {
        return n;
    }
    if (p[i] == '"') {
        return skip_string(p, n, i);
    }
    if (p[i] == '{' || p[i] == '[') {
        int depth = 0;
        while (i < n) {
            char c = p[i];
            if (c == '"') {
                i = skip_string(p, n, i);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    return i + 1;
                }
            }
            i++;
        }
        return n;
    }
    while (i < n && !is_ws(p[i]) && p[i] != ',' && p[i] != '}' && p[i] != ']') {
        i++;
    }
    return i;
}

bool jsonx_member(struct slice obj, const char *key, struct slice *out)
{
    const char *p = obj.ptr;
    size_t n = obj.len;
    size_t klen = strlen(key);
    size_t i = skip_ws(p, n, 0);
    if (i >= n || p[i] != '{') {
        return false;
    }
    i = skip_ws(p, n, i + 1);
    while (i < n && p[i] == '"') {
        size_t kstart = i + 1;
        size_t kend = skip_string(p, n, i);
        bool match = kend - 1 - kstart == klen && memcmp(p + kstart, key, klen) == 0;
        i = skip_ws(p, n, kend);
        i = skip_ws(p, n, i + 1); /* past ':' */
        size_t vend = skip_value(p, n, i);
        if (match) {
            out->ptr = p + i;
            out->len = vend - i;
            return true;
        }
        i = skip_ws(p, n, vend);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, n, i + 1);
        }
    }
    return false;
}

bool jsonx_next_item(struct slice arr, size_t *pos, struct slice *out)
{
    const char *p = arr.ptr;
    size_t n = arr.len;
    size_t i = *pos;
    if (i == 0) {
        i = skip_ws(p, n, 0);
        if (i >= n || p[i] != '[') {
            return false;
        }
        i++;
    }
    i = skip_ws(p, n, i);
    if (i < n && p[i] == ',') {
        i = skip_ws(p, n, i + 1);
    }
    if (i >= n || p[i] == ']') {
        *pos = n;
        return false;
    }
    size_t end = skip_value(p, n, i);
    out->ptr = p + i;
    out->len = end - i;
    *pos = end;
    return true;
}

void jsonx_minify(struct slice span, struct buf *out)
{
    const char *p = span.ptr;
    size_t n = span.len;
    buf_reserve(out, n);
    size_t i = 0;
    while (i < n) {
        if (p[i] == '"') {
            size_t end = skip_string(p, n, i);
            buf_add(out, p + i, end - i);
            i = end;
            continue;
        }
        size_t start = i;
        while (i < n && !is_ws(p[i]) && p[i] != '"') {
            i++;
        }
        buf_add(out, p + start, i - start);
        while (i < n && is_ws(p[i])) {
            i++;
        }
    }
}

bool jsonx_next_member(struct slice obj, size_t *pos, struct slice *key, struct slice *val)
{
    const char *p = obj.ptr;
    size_t n = obj.len;
    size_t i = *pos;
    if (i == 0) {
        i = skip_ws(p, n, 0);
        if (i >= n || p[i] != '{') {
            return false;
        }
        i++;
    }
    i = skip_ws(p, n, i);
    if (i < n && p[i] == ',') {
        i = skip_ws(p, n, i + 1);
    }
    if (i >= n || p[i] != '"') {
        *pos = n;
        return false;
    }
    size_t kend = skip_string(p, n, i);
    key->ptr = p + i;
    key->len = kend - i;
    i = skip_ws(p, n, kend);
    i = skip_ws(p, n, i + 1); /* past ':' */
    size_t vend = skip_value(p, n, i);
    val->ptr = p + i;
    val->len = vend - i;
    *pos = vend;
    return true;
}

char jsonx_kind(struct slice v)
{
    size_t i = skip_ws(v.ptr, v.len, 0);
    return i < v.len ? v.ptr[i] : 0;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char h = p[k];
        int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : h - 'A' + 10;
        v = v * 16 + d;
    }
    return v;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12);
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18);
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_add(out, b, n);
}

/* Decodes the \u escape at p[i] ('u' at p[i]); advances *i past it (and a low surrogate). */
static int decode_u(const char *p, size_t end, size_t *i, struct buf *out)
{
    uint32_t cp = (uint32_t)hex4(p + *i + 1);
    *i += 5;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
        return ERR_INVALID;
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (*i + 6 > end || p[*i] != '\\' || p[*i + 1] != 'u') {
            return ERR_INVALID;
        }
        uint32_t lo = (uint32_t)hex4(p + *i + 2);
        if (lo < 0xdc00 || lo > 0xdfff) {
            return ERR_INVALID;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        *i += 6;
    }
    put_utf8(out, cp);
    return 0;
}

int jsonx_string(struct slice raw, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, raw.len);
    const char *p = raw.ptr;
    size_t end = raw.len - 1; /* the closing quote */
    size_t i = 1;
    while (i < end) {
        size_t run = i;
        while (i < end && p[i] != '\\') {
            i++;
        }
        buf_add(out, p + run, i - run);
        if (i >= end) {
            break;
        }
        char e = p[i + 1];
        if (e == 'u') {
            i++;
            if (decode_u(p, end, &i, out)) {
                return ERR_INVALID;
            }
            continue;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *at = strchr(from, e);
        buf_addc(out, at ? to[at - from] : e);
        i += 2;
    }
    return 0;
}

bool jsonx_is_minified(struct slice span)
{
    bool in_str = false;
    for (size_t i = 0; i < span.len; i++) {
        char c = span.ptr[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            return false;
        }
    }
    return true;
}

int jsonx_members(struct slice obj, const char *const *names, int count, struct slice *vals,
                  struct buf *bad, bool *out_dup)
{
    for (int i = 0; i < count; i++) {
        vals[i] = (struct slice){NULL, 0};
    }
    size_t pos = 0;
    struct slice k, v;
    while (jsonx_next_member(obj, &pos, &k, &v)) {
        int idx = -1;
        if (jsonx_string(k, bad) == 0) {
            for (int i = 0; i < count && idx < 0; i++) {
                if (strlen(names[i]) == bad->len && !memcmp(names[i], bad->ptr, bad->len)) {
                    idx = i;
                }
            }
        }
        if (idx < 0 || vals[idx].ptr) {
            *out_dup = idx >= 0;
            return ERR_INVALID;
        }
        vals[idx] = v;
    }
    return 0;
}

bool jsonx_u64(struct slice v, uint64_t *out)
{
    size_t i = 0;
    while (i < v.len && is_ws(v.ptr[i])) {
        i++;
    }
    size_t n = v.len;
    while (n > i && is_ws(v.ptr[n - 1])) {
        n--;
    }
    if (i == n || n - i > 20) {
        return false;
    }
    uint64_t x = 0;
    for (; i < n; i++) {
        char c = v.ptr[i];
        if (c < '0' || c > '9' || x > (UINT64_MAX - (uint64_t)(c - '0')) / 10) {
            return false;
        }
        x = x * 10 + (uint64_t)(c - '0');
    }
    *out = x;
    return true;
}
