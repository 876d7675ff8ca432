/* RFC 3986 reference resolution (section 5.2.2, with remove_dot_segments of 5.2.4) over
 * plain strings. No normalisation beyond that: identifiers compare as resolved bytes. */
#include "json/schema_uri.h"

#include <string.h>

/* The five components of a URI reference (5.2: a defined-but-empty component differs from
 * an undefined one, hence the has_ flags). */
struct uri_parts {
    struct slice scheme, authority, path, query, fragment;
    bool has_scheme, has_authority, has_query, has_fragment;
};

static void split_uri(const char *s, size_t n, struct uri_parts *u)
{
    memset(u, 0, sizeof(*u));
    size_t i = 0;
    while (i < n && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#') {
        i++;
    }
    if (i > 0 && i < n && s[i] == ':') {
        u->has_scheme = true;
        u->scheme = (struct slice){s, i};
        s += i + 1;
        n -= i + 1;
    }
    if (n >= 2 && s[0] == '/' && s[1] == '/') {
        size_t j = 2;
        while (j < n && s[j] != '/' && s[j] != '?' && s[j] != '#') {
            j++;
        }
        u->has_authority = true;
        u->authority = (struct slice){s + 2, j - 2};
        s += j;
        n -= j;
    }
    size_t p = 0;
    while (p < n && s[p] != '?' && s[p] != '#') {
        p++;
    }
    u->path = (struct slice){s, p};
    s += p;
    n -= p;
    if (n && s[0] == '?') {
        size_t q = 1;
        while (q < n && s[q] != '#') {
            q++;
        }
        u->has_query = true;
        u->query = (struct slice){s + 1, q - 1};
        s += q;
        n -= q;
    }
    if (n && s[0] == '#') {
        u->has_fragment = true;
        u->fragment = (struct slice){s + 1, n - 1};
    }
}

/* Appends path with its "." and ".." segments removed (5.2.4). */
static void add_clean_path(struct buf *out, const char *p, size_t n)
{
    size_t root = out->len;
    size_t i = 0;
    while (i < n) {
        size_t j = i + (p[i] == '/');
        while (j < n && p[j] != '/') {
            j++;
        }
        const char *seg = p + i;
        size_t len = j - i; /* with its leading '/', if any */
        bool slash = seg[0] == '/';
        const char *name = seg + slash;
        size_t name_len = len - slash;
        bool last = j >= n;
        if (name_len == 1 && name[0] == '.') {
            if (last && slash) {
                buf_addc(out, '/');
            }
        } else if (name_len == 2 && name[0] == '.' && name[1] == '.') {
            while (out->len > root && out->ptr[out->len - 1] != '/') {
                out->len--;
            }
            if (out->len > root) {
                out->len--;
            }
            if (last && slash) {
                buf_addc(out, '/');
            }
        } else {
            buf_add(out, seg, len);
        }
        i = j;
    }
    if (out->cap) {
        out->ptr[out->len] = '\0';
    }
}

static void add_merged_path(struct buf *out, const struct uri_parts *b, struct slice rel)
{
    struct buf tmp;
    buf_init(&tmp);
    if (b->has_authority && b->path.len == 0) {
        buf_addc(&tmp, '/');
    } else {
        size_t k = b->path.len;
        while (k && b->path.ptr[k - 1] != '/') {
            k--;
        }
        buf_add(&tmp, b->path.ptr, k);
    }
    buf_add(&tmp, rel.ptr, rel.len);
    add_clean_path(out, tmp.ptr, tmp.len);
    buf_fini(&tmp);
}

static void add_query_fragment(struct buf *out, bool has_q, struct slice q, const struct uri_parts *r)
{
    if (has_q) {
        buf_addc(out, '?');
        buf_add(out, q.ptr, q.len);
    }
    if (r->has_fragment) {
        buf_addc(out, '#');
        buf_add(out, r->fragment.ptr, r->fragment.len);
    }
}

void schema_uri_resolve(const char *base, const char *ref, size_t ref_len, struct buf *out)
{
    struct uri_parts b, r;
    split_uri(base, strlen(base), &b);
    split_uri(ref, ref_len, &r);
    buf_reset(out);
    buf_reserve(out, 1);
    const struct uri_parts *auth = r.has_scheme || r.has_authority ? &r : &b;
    const struct uri_parts *sch = r.has_scheme ? &r : &b;
    if (sch->has_scheme) {
        buf_add(out, sch->scheme.ptr, sch->scheme.len);
        buf_addc(out, ':');
    }
    if (auth->has_authority) {
        buf_adds(out, "//");
        buf_add(out, auth->authority.ptr, auth->authority.len);
    }
    if (r.has_scheme || r.has_authority) {
        add_clean_path(out, r.path.ptr, r.path.len);
        add_query_fragment(out, r.has_query, r.query, &r);
    } else if (r.path.len == 0) {
        buf_add(out, b.path.ptr, b.path.len);
        add_query_fragment(out, r.has_query || b.has_query, r.has_query ? r.query : b.query,
                           &r);
    } else if (r.path.ptr[0] == '/') {
        add_clean_path(out, r.path.ptr, r.path.len);
        add_query_fragment(out, r.has_query, r.query, &r);
    } else {
        add_merged_path(out, &b, r.path);
        add_query_fragment(out, r.has_query, r.query, &r);
    }
}

bool schema_uri_is_absolute(const char *uri)
{
    struct uri_parts u;
    split_uri(uri, strlen(uri), &u);
    return u.has_scheme;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool schema_uri_unescape(const char *s, size_t len, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            buf_addc(out, s[i]);
            continue;
        }
        if (i + 2 >= len) {
            return false;
        }
        int hi = hexval(s[i + 1]);
        int lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        buf_addc(out, (char)(hi * 16 + lo));
        i += 2;
    }
    return true;
}
