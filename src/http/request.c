/* The request object of the HTTP server (server_int.h): made from a parsed head
 * (http_req_start), read by handlers (the http_req_* accessors: method, path, query
 * parameters, headers, body, peer), labelled (tag, request id, user data, extra answer
 * headers) and freed with everything it handed out (http_req_free) when its connection is done
 * with it. A request's head is its own copy, so the connection's input buffer may move while
 * the request lives; strings it hands out live as long as it does. Loop thread only, except
 * what server.h says of deferred requests.
 */
#include "http/server_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/errors.h"
#include "util/timeutil.h"

/* ---- small helpers ---- */

int http_url_decode(const char *s, size_t n, bool plus_space, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return ERR_INVALID;
            }
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = s[i + k];
                int d = (h >= '0' && h <= '9')   ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (d < 0) {
                    return ERR_INVALID;
                }
                v = v * 16 + d;
            }
            if (v == 0) {
                return ERR_INVALID;
            }
            buf_addc(out, (char)v);
            i += 2;
        } else if (c == '+' && plus_space) {
            buf_addc(out, ' ');
        } else {
            buf_addc(out, c);
        }
    }
    return 0;
}

static const char *keep_str(struct http_req *req, char *s)
{
    if (req->nstrs == req->strs_cap) {
        req->strs_cap = req->strs_cap ? req->strs_cap * 2 : 8;
        req->strs = xrealloc(req->strs, req->strs_cap * sizeof(*req->strs));
    }
    req->strs[req->nstrs++] = s;
    return s;
}

const char *http_req_method(const struct http_req *req)
{
    return req->method;
}

struct slice http_req_query_string(const struct http_req *req)
{
    return req->query;
}

struct slice http_req_path(const struct http_req *req)
{
    return req->path;
}

/* Decodes q[0..n) into a string kept by req (the raw text when it has a bad escape, so that
 * it fails validation instead of passing for absent). */
static const char *query_text(struct http_req *req, const char *q, size_t n)
{
    struct buf b;
    buf_init(&b);
    if (http_url_decode(q, n, true, &b) != 0) {
        buf_fini(&b);
        return keep_str(req, xstrndup(q, n));
    }
    return keep_str(req, buf_steal(&b, NULL));
}

bool http_req_query_next(struct http_req *req, size_t *pos, const char **name,
                         const char **value)
{
    struct slice k, v;
    if (!http_query_next(req->query, pos, &k, &v)) {
        return false;
    }
    *name = keep_str(req, xstrndup(k.ptr, k.len));
    if (value) {
        *value = query_text(req, v.ptr, v.len);
    }
    return true;
}

const char *http_req_query_nth(struct http_req *req, const char *name, size_t nth)
{
    size_t nlen = strlen(name);
    const char *q = req->query.ptr;
    size_t n = req->query.len, i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && q[i] != '&') {
            i++;
        }
        const char *eq = memchr(q + s, '=', i - s);
        size_t klen = eq ? (size_t)(eq - (q + s)) : i - s;
        if (klen == nlen && memcmp(q + s, name, nlen) == 0 && nth-- == 0) {
            const char *v = eq ? eq + 1 : q + i;
            return query_text(req, v, (size_t)(q + i - v));
        }
        i++;
    }
    return NULL;
}

const char *http_req_query(struct http_req *req, const char *name)
{
    return http_req_query_nth(req, name, 0);
}

struct slice http_req_host(const struct http_req *req)
{
    return req->head.authority;
}

bool http_req_absolute_form(const struct http_req *req)
{
    return req->head.absolute_form;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    const struct http_header *h = http_head_find(&req->head, name);
    return h ? h->value.ptr : NULL; /* NUL-terminated in the request's copy of its head */
}

struct slice http_req_body(const struct http_req *req)
{
    struct slice s = {req->body.ptr ? req->body.ptr : "", req->body.len};
    return s;
}

void http_set_user(struct http_req *req, void *user, http_cleanup_fn *cleanup)
{
    req->user = user;
    req->cleanup = cleanup;
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    struct hdr *h = xmalloc(sizeof(*h) + nl + 1 + vl + 1); /* one block for all three */
    h->name = (char *)(h + 1);
    h->value = h->name + nl + 1;
    memcpy(h->name, name, nl + 1);
    memcpy(h->value, value, vl + 1);
    h->next = req->headers;
    req->headers = h;
}

void http_req_free(struct http_req *req)
{
    if (!req) {
        return;
    }
    if (req->cleanup) {
        req->cleanup(req->user);
    }
    for (struct hdr *h = req->headers; h;) {
        struct hdr *next = h->next;
        free(h);
        h = next;
    }
    for (size_t i = 0; i < req->nstrs; i++) {
        free(req->strs[i]);
    }
    free(req->strs);
    buf_fini(&req->body);
    buf_fini(&req->resp);
    pthread_mutex_destroy(&req->mu);
    free(req);
}

void http_set_tag(struct http_req *req, int tag)
{
    req->tag = tag;
}

const char *http_req_peer(const struct http_req *req)
{
    return req->conn->peer;
}

const char *http_req_request_id(const struct http_req *req)
{
    return req->request_id;
}

void http_set_request_id(struct http_req *req, const char *id)
{
    size_t n = strnlen(id, sizeof req->request_id - 1); /* cut as snprintf would */
    memcpy(req->request_id, id, n);
    req->request_id[n] = '\0';
}

/* Moves s from the buffer at from (of n bytes) onto its copy at to; a slice pointing
 * elsewhere (the parser's constant "/") stays. */
static void rebase(struct slice *s, const char *from, size_t n, const char *to)
{
    if (s->ptr >= from && s->ptr <= from + n) {
        s->ptr = to + (s->ptr - from);
    }
}

/* Makes the request object for head h, parsed from c->in[0..head_len). The head bytes are
 * copied (and h's slices moved onto the copy) so that the input buffer can move while the
 * request lives. */
int http_req_start(struct conn *c, const struct http_head *h, size_t head_len)
{
    struct http_req *req = xcalloc(1, sizeof(*req));
    pthread_mutex_init(&req->mu, NULL);
    buf_init(&req->body);
    buf_init(&req->resp);
    req->conn = c;
    req->tag = -1;
    req->started_ns = time_mono_ns();
    c->req = req;
    __atomic_add_fetch(&c->loop->srv->inflight, 1, __ATOMIC_RELAXED);
    if (h->method.len >= sizeof req->method) {
        return HTTP_ERR_BAD;
    }
    char *copy = xstrndup(c->in.ptr, head_len);
    keep_str(req, copy);
    req->head = *h;
    struct slice *moved[] = {&req->head.method, &req->head.target, &req->head.path,
                             &req->head.query, &req->head.authority};
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        rebase(moved[i], c->in.ptr, head_len, copy);
    }
    for (size_t i = 0; i < req->head.nheaders; i++) {
        rebase(&req->head.headers[i].name, c->in.ptr, head_len, copy);
        rebase(&req->head.headers[i].value, c->in.ptr, head_len, copy);
        /* the byte after a value is whitespace or its line's CR: ending the value there makes
           it a C string, so header lookups allocate nothing */
        copy[req->head.headers[i].value.ptr + req->head.headers[i].value.len - copy] = '\0';
    }
    memcpy(req->method, req->head.method.ptr, req->head.method.len);
    req->method[req->head.method.len] = '\0';
    req->path = req->head.path;
    req->query = req->head.query;
    c->is_head = strcmp(req->method, "HEAD") == 0;
    return 0;
}
