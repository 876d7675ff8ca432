/* Span scanning over validated JSON text. Because input was validated first, the scanner
 * only tracks strings (with escapes) and bracket nesting; it never needs to reject. */
#include "json/jsonx.h"

#include <string.h>

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
    i++;
    while (i < n && p[i] != '"') {
        i += (p[i] == '\\') ? 2 : 1;
    }
    return i < n ? i + 1 : n;
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

int jsonx_depth(const char *p, size_t n, int max_depth)
{
    int depth = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            i++;
            while (i < n && p[i] != '"') {
                i += (p[i] == '\\') ? 2 : 1;
            }
        } else if (c == '{' || c == '[') {
            if (++depth > worst) {
                worst = depth;
                if (worst > max_depth) {
                    return max_depth + 1;
                }
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return worst;
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

bool jsonx_has_escaped_key(struct slice obj)
{
    const char *p = obj.ptr;
    size_t n = obj.len;
    size_t i = skip_ws(p, n, 0);
    if (i >= n || p[i] != '{') {
        return false;
    }
    i = skip_ws(p, n, i + 1);
    while (i < n && p[i] == '"') {
        size_t kend = skip_string(p, n, i);
        if (memchr(p + i + 1, '\\', kend - i - 1)) {
            return true;
        }
        i = skip_ws(p, n, kend);
        i = skip_ws(p, n, i + 1);
        i = skip_ws(p, n, skip_value(p, n, i));
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
