/* HTTP/1.1 request head and chunked-body parsing. See parse.h for the strictness policy. */
#include "http/parse.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr(extra, c));
}

static bool ieq(struct slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

/* Finds the end of the line starting at i; returns the index of '\n' or len. A bare CR or a
 * bare LF without CR is accepted as LF only when preceded by CR (strict CRLF). */
static size_t line_end(const char *b, size_t len, size_t i)
{
    const char *nl = memchr(b + i, '\n', len - i);
    return nl ? (size_t)(nl - b) : len;
}

static ssize_t parse_request_line(const char *b, size_t end, struct http_head *h)
{
    if (end == 0 || b[end - 1] != '\r') {
        return HTTP_ERR_BAD;
    }
    size_t lend = end - 1;
    size_t i = 0;
    while (i < lend && is_tchar((unsigned char)b[i])) {
        i++;
    }
    if (i == 0 || i >= lend || b[i] != ' ') {
        return HTTP_ERR_BAD;
    }
    h->method = (struct slice){b, i};
    size_t t = ++i;
    while (i < lend && (unsigned char)b[i] > 0x20 && b[i] != 0x7f) {
        i++;
    }
    if (i == t || i >= lend || b[i] != ' ') {
        return HTTP_ERR_BAD;
    }
    h->target = (struct slice){b + t, i - t};
    i++;
    if (lend - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 6] != '.' ||
        b[i + 5] < '0' || b[i + 5] > '9' || b[i + 7] < '0' || b[i + 7] > '9') {
        return HTTP_ERR_BAD;
    }
    if (b[i + 5] != '1') {
        return HTTP_ERR_VERSION;
    }
    h->minor = b[i + 7] - '0';
    return 0;
}

static ssize_t parse_field(const char *b, size_t start, size_t end, struct http_head *h)
{
    if (end == start || b[end - 1] != '\r') {
        return HTTP_ERR_BAD;
    }
    size_t lend = end - 1;
    if (b[start] == ' ' || b[start] == '\t') {
        return HTTP_ERR_BAD; /* obs-fold */
    }
    size_t i = start;
    while (i < lend && is_tchar((unsigned char)b[i])) {
        i++;
    }
    if (i == start || i >= lend || b[i] != ':') {
        return HTTP_ERR_BAD;
    }
    if (h->nheaders == HTTP_MAX_HEADERS) {
        return HTTP_ERR_TOO_LARGE;
    }
    struct http_header *f = &h->headers[h->nheaders++];
    f->name = (struct slice){b + start, i - start};
    i++;
    while (i < lend && (b[i] == ' ' || b[i] == '\t')) {
        i++;
    }
    size_t vend = lend;
    while (vend > i && (b[vend - 1] == ' ' || b[vend - 1] == '\t')) {
        vend--;
    }
    for (size_t k = i; k < vend; k++) {
        unsigned char c = (unsigned char)b[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return HTTP_ERR_BAD;
        }
    }
    f->value = (struct slice){b + i, vend - i};
    return 0;
}

static ssize_t content_length(struct slice v, int64_t *out)
{
    if (v.len == 0 || v.len > 18) {
        return HTTP_ERR_BAD;
    }
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') {
            return HTTP_ERR_BAD;
        }
        n = n * 10 + (v.ptr[i] - '0');
    }
    if (*out >= 0 && *out != n) {
        return HTTP_ERR_BAD; /* conflicting lengths */
    }
    *out = n;
    return 0;
}

/* True when the comma-separated list v holds token tok. */
static bool has_token(struct slice v, const char *tok)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == ',' || v.ptr[i] == '\t')) {
            i++;
        }
        size_t s = i;
        while (i < v.len && v.ptr[i] != ',') {
            i++;
        }
        size_t e = i;
        while (e > s && (v.ptr[e - 1] == ' ' || v.ptr[e - 1] == '\t')) {
            e--;
        }
        if (ieq((struct slice){v.ptr + s, e - s}, tok)) {
            return true;
        }
    }
    return false;
}

/* A Host value: uri-host [ ":" port ] (RFC 9110 7.2), possibly empty. Checks the characters
 * an authority may hold (RFC 3986 3.2: unreserved, percent-encoded, sub-delims, ":" and the
 * brackets of an IP literal); "@" (user information) is not one. */
static bool host_ok(struct slice v)
{
    static const char extra[] = "-._~%!$&'()*+,;=:[]";
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (!c || !strchr(extra, c))) {
            return false;
        }
    }
    return true;
}

/* Case-insensitive prefix test of s against the lower-case literal p. */
static bool has_prefix_ci(struct slice s, const char *p)
{
    size_t n = strlen(p);
    if (s.len < n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s.ptr[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != p[i]) {
            return false;
        }
    }
    return true;
}

/* Splits the target into path, query and (absolute-form) authority. */
static ssize_t split_target(struct http_head *h)
{
    struct slice t = h->target;
    size_t skip = has_prefix_ci(t, "http://") ? 7 : has_prefix_ci(t, "https://") ? 8 : 0;
    if (skip) {
        size_t a = skip;
        while (a < t.len && t.ptr[a] != '/' && t.ptr[a] != '?') {
            a++;
        }
        h->authority = (struct slice){t.ptr + skip, a - skip};
        if (h->authority.len == 0 || !host_ok(h->authority)) {
            return HTTP_ERR_HOST;
        }
        h->absolute_form = true;
        t = (struct slice){t.ptr + a, t.len - a};
    }
    const char *q = memchr(t.ptr, '?', t.len);
    h->path = (struct slice){t.ptr, q ? (size_t)(q - t.ptr) : t.len};
    h->query = q ? (struct slice){q + 1, t.len - (size_t)(q + 1 - t.ptr)} : (struct slice){"", 0};
    if (h->path.len == 0) {
        h->path = (struct slice){"/", 1}; /* "http://host" and "http://host?q" ask for "/" */
    }
    return 0;
}

bool http_query_next(struct slice query, size_t *pos, struct slice *name, struct slice *value)
{
    const char *q = query.ptr;
    size_t n = query.len, i = *pos;
    while (i < n && q[i] == '&') {
        i++; /* empty pairs ("a=1&&b=2") are nothing */
    }
    if (i >= n) {
        *pos = n;
        return false;
    }
    size_t s = i;
    while (i < n && q[i] != '&') {
        i++;
    }
    const char *eq = memchr(q + s, '=', i - s);
    *name = (struct slice){q + s, eq ? (size_t)(eq - (q + s)) : i - s};
    *value = eq ? (struct slice){eq + 1, (size_t)(q + i - (eq + 1))} : (struct slice){q + i, 0};
    *pos = i;
    return true;
}

static ssize_t interpret(struct http_head *h)
{
    h->content_length = -1;
    bool te = false, conn_close = false, conn_keep = false;
    size_t hosts = 0;
    ssize_t trc = split_target(h);
    if (trc) {
        return trc;
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        struct http_header *f = &h->headers[i];
        ssize_t rc = 0;
        if (ieq(f->name, "host")) {
            rc = ++hosts > 1 || !host_ok(f->value) ? HTTP_ERR_HOST : 0;
            if (!h->absolute_form) {
                h->authority = f->value;
            }
        } else if (ieq(f->name, "content-length")) {
            rc = content_length(f->value, &h->content_length);
        } else if (ieq(f->name, "transfer-encoding")) {
            if (te || !ieq(f->value, "chunked")) {
                return has_token(f->value, "chunked") || te ? HTTP_ERR_BAD : HTTP_ERR_TE;
            }
            te = true;
        } else if (ieq(f->name, "connection")) {
            conn_close |= has_token(f->value, "close");
            conn_keep |= has_token(f->value, "keep-alive");
        } else if (ieq(f->name, "expect")) {
            h->expect_continue = ieq(f->value, "100-continue");
        }
        if (rc) {
            return rc;
        }
    }
    if (te && h->content_length >= 0) {
        return HTTP_ERR_BAD; /* smuggling vector: refuse both */
    }
    if (h->minor >= 1 && hosts == 0) {
        return HTTP_ERR_HOST; /* RFC 9112 3.2: an HTTP/1.1 request without Host is refused */
    }
    h->chunked = te;
    h->keep_alive = h->minor >= 1 ? !conn_close : conn_keep && !conn_close;
    if (te && h->minor == 0) {
        h->keep_alive = false; /* RFC 9112 6.1: chunked framing in HTTP/1.0 is faulty */
    }
    if (h->minor == 0) {
        h->expect_continue = false; /* RFC 9110 10.1.1: ignored in HTTP/1.0 */
    }
    return 0;
}

ssize_t http_parse_head(const char *buf, size_t len, size_t max_bytes, struct http_head *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') {
        i += 2; /* empty lines before a request are ignored (RFC 9112 2.2) */
    }
    size_t end = line_end(buf, len, i);
    if (end == len) {
        return len > max_bytes ? HTTP_ERR_TOO_LARGE : HTTP_INCOMPLETE;
    }
    ssize_t rc = parse_request_line(buf + i, end - i, out);
    if (rc) {
        return rc;
    }
    i = end + 1;
    for (;;) {
        end = line_end(buf, len, i);
        if (end == len) {
            return len > max_bytes ? HTTP_ERR_TOO_LARGE : HTTP_INCOMPLETE;
        }
        if (end + 1 > max_bytes) {
            return HTTP_ERR_TOO_LARGE; /* leading empty lines count too: they fill the buffer */
        }
        if (end == i + 1 && buf[i] == '\r') {
            break; /* the empty line */
        }
        rc = parse_field(buf, i, end, out);
        if (rc) {
            return rc;
        }
        i = end + 1;
    }
    rc = interpret(out);
    return rc ? rc : (ssize_t)(end + 1);
}

const struct http_header *http_head_find(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        if (ieq(h->headers[i].name, name)) {
            return &h->headers[i];
        }
    }
    return NULL;
}

enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF };

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One byte of a chunk-size line (size digits, optional ";ext", CRLF). */
static ssize_t size_byte(struct http_chunked *c, char ch)
{
    if (c->state == CH_SIZE && hexval(ch) >= 0) {
        if (c->line >= 15) {
            return HTTP_ERR_BAD;
        }
        c->remaining = c->remaining * 16 + (uint64_t)hexval(ch);
        c->line++;
        return 0;
    }
    if (c->line == 0) {
        return HTTP_ERR_BAD; /* no digits */
    }
    if (ch == '\r') {
        c->state = CH_SIZE_LF;
        return 0;
    }
    if (ch == ';' || c->state == CH_EXT) {
        c->state = CH_EXT;
        return (unsigned char)ch < 0x20 && ch != '\t' ? HTTP_ERR_BAD : 0;
    }
    return HTTP_ERR_BAD;
}

ssize_t http_chunked_decode(struct http_chunked *c, const char *in, size_t len, struct buf *body,
                            size_t max_body)
{
    size_t i = 0;
    while (i < len && !c->done) {
        char ch = in[i];
        ssize_t rc = 0;
        switch (c->state) {
        case CH_SIZE:
        case CH_EXT:
            rc = size_byte(c, ch);
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return HTTP_ERR_BAD;
            i++;
            c->state = c->remaining ? CH_DATA : CH_TRAILER;
            c->line = 0;
            break;
        case CH_DATA: {
            size_t take = len - i < c->remaining ? len - i : (size_t)c->remaining;
            if (body->len + take > max_body) {
                return HTTP_ERR_TOO_LARGE;
            }
            buf_add(body, in + i, take);
            i += take;
            c->remaining -= take;
            if (!c->remaining) c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r') return HTTP_ERR_BAD;
            i++;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return HTTP_ERR_BAD;
            i++;
            c->state = CH_SIZE;
            c->line = 0;
            c->remaining = 0;
            break;
        case CH_TRAILER:
            i++;
            if (ch == '\r') {
                c->state = CH_TRAILER_LF;
            } else if (++c->line > 8192 || ((unsigned char)ch < 0x20 && ch != '\t')) {
                return HTTP_ERR_BAD;
            }
            break;
        case CH_TRAILER_LF:
            if (ch != '\n') return HTTP_ERR_BAD;
            i++;
            c->done = c->line == 0; /* an empty line ends the trailers */
            c->state = CH_TRAILER;
            c->line = 0;
            break;
        }
        if (rc) {
            return rc;
        }
    }
    return (ssize_t)i;
}
