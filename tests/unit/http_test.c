/* http/parse: request heads (strictness against smuggling) and chunked bodies. */
#include <string.h>

#include "http/parse.h"
#include "unit.h"

static ssize_t parse(const char *s, struct http_head *h)
{
    return http_parse_head(s, strlen(s), 16384, h);
}

TEST(head_basic_and_pipelined)
{
    const char *req = "POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                      "Connection: keep-alive\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    struct http_head h;
    ssize_t n = parse(req, &h);
    CHECK(n > 0);
    CHECK(!memcmp(req + n, "hello", 5));
    CHECK(h.method.len == 4 && !memcmp(h.method.ptr, "POST", 4));
    CHECK(h.target.len == 9 && !memcmp(h.target.ptr, "/v1/x?a=1", 9));
    ASSERT_EQ(h.content_length, 5);
    CHECK(h.keep_alive && !h.chunked);
    const struct http_header *f = http_head_find(&h, "host");
    CHECK(f && f->value.len == 1);
    ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", &h), 18);
    CHECK(!h.keep_alive);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &h), 46);
    CHECK(!h.keep_alive);
}

TEST(head_host_rules)
{
    struct http_head h;
    /* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 may omit it */
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", &h), 18);
    /* its value is an authority without user information */
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: u@example.com\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", &h), HTTP_ERR_HOST);
    CHECK(parse("GET / HTTP/1.1\r\nHost: example.com:7070\r\n\r\n", &h) > 0);
    CHECK(parse("GET / HTTP/1.1\r\nHost: [::1]:7070\r\n\r\n", &h) > 0);
    CHECK(parse("GET / HTTP/1.1\r\nHost: \r\n\r\n", &h) > 0); /* empty: allowed */
}

static bool is(struct slice s, const char *want)
{
    return s.len == strlen(want) && !memcmp(s.ptr, want, s.len);
}

TEST(head_target_forms)
{
    struct http_head h;
    /* origin-form: path and query; the authority is the Host value */
    CHECK(parse("GET /a/b?x=1&y HTTP/1.1\r\nHost: h:1\r\n\r\n", &h) > 0);
    CHECK(is(h.path, "/a/b") && is(h.query, "x=1&y") && is(h.authority, "h:1"));
    CHECK(!h.absolute_form);
    /* absolute-form (RFC 9112 3.2.2): its authority wins over Host */
    CHECK(parse("GET http://ex.com:8080/v1/x?q=2 HTTP/1.1\r\nHost: other\r\n\r\n", &h) > 0);
    CHECK(is(h.path, "/v1/x") && is(h.query, "q=2") && is(h.authority, "ex.com:8080"));
    CHECK(h.absolute_form);
    CHECK(parse("GET HTTPS://[::1]?z HTTP/1.1\r\nHost: x\r\n\r\n", &h) > 0);
    CHECK(is(h.path, "/") && is(h.query, "z") && is(h.authority, "[::1]"));
    CHECK(parse("GET http://h HTTP/1.0\r\n\r\n", &h) > 0);
    CHECK(is(h.path, "/") && is(h.query, "") && is(h.authority, "h"));
    /* a bad authority is a bad host; a Host is still needed in HTTP/1.1 */
    ASSERT_EQ(parse("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", &h), HTTP_ERR_HOST);
    ASSERT_EQ(parse("GET http://h/ HTTP/1.1\r\n\r\n", &h), HTTP_ERR_HOST);
    /* other schemes are paths (answered 404 by the router) */
    CHECK(parse("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", &h) > 0);
    CHECK(is(h.path, "ftp://h/x") && !h.absolute_form);
}

TEST(head_incomplete_and_too_large)
{
    struct http_head h;
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\n", &h), HTTP_INCOMPLETE);
    char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    ASSERT_EQ(http_parse_head(big, sizeof big, 100, &h), HTTP_ERR_TOO_LARGE);
    const char *many = "GET / HTTP/1.1\r\nX-A: 1234567890\r\nX-B: 1234567890\r\n\r\n";
    ASSERT_EQ(http_parse_head(many, strlen(many), 40, &h), HTTP_ERR_TOO_LARGE);
}

TEST(head_http10_rules_and_leading_empty_lines)
{
    struct http_head h;
    ASSERT_EQ(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &h) > 0, 1);
    CHECK(!h.expect_continue);
    ASSERT_EQ(parse("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0, 1);
    CHECK(!h.keep_alive);
    char flood[3000];
    for (size_t i = 0; i + 1 < sizeof flood; i += 2) {
        flood[i] = '\r';
        flood[i + 1] = '\n';
    }
    ASSERT_EQ(http_parse_head(flood, sizeof flood, 1024, &h), HTTP_ERR_TOO_LARGE);
}

TEST(head_refuses_smuggling_vectors)
{
    struct http_head h;
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                    &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &h),
              HTTP_ERR_BAD);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &h) > 0,
              1);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/1.1\nHost: x\n\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHo st: x\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost : x\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &h), HTTP_ERR_TE);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h),
              HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/2.0\r\n\r\n", &h), HTTP_ERR_VERSION);
    ASSERT_EQ(parse("GET  / HTTP/1.1\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET /\x01 HTTP/1.1\r\n\r\n", &h), HTTP_ERR_BAD);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", &h), HTTP_ERR_BAD);
}

TEST(chunked_decode_split_anywhere)
{
    const char *body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    size_t n = strlen(body);
    for (size_t split = 0; split <= n; split++) {
        struct http_chunked c;
        memset(&c, 0, sizeof c);
        struct buf out;
        buf_init(&out);
        ssize_t a = http_chunked_decode(&c, body, split, &out, 1000);
        CHECK(a >= 0);
        ssize_t b = c.done ? 0 : http_chunked_decode(&c, body + a, n - (size_t)a, &out, 1000);
        CHECK(b >= 0);
        CHECK(c.done);
        ASSERT_EQ(a + b, n - 4);
        CHECK(out.len == 11 && !memcmp(out.ptr, "hello world", 11));
        buf_fini(&out);
    }
}

TEST(chunked_decode_errors)
{
    static const char *bad[] = {"x\r\n", "5\r\nhelloX\r\n", "\r\n", "5\nhello", "-1\r\n",
                                "fffffffffffffffff\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct http_chunked c;
        memset(&c, 0, sizeof c);
        struct buf out;
        buf_init(&out);
        ASSERT_EQ(http_chunked_decode(&c, bad[i], strlen(bad[i]), &out, 1000), HTTP_ERR_BAD);
        buf_fini(&out);
    }
    struct http_chunked c;
    memset(&c, 0, sizeof c);
    struct buf out;
    buf_init(&out);
    ASSERT_EQ(http_chunked_decode(&c, "a\r\n0123456789\r\n", 15, &out, 5), HTTP_ERR_TOO_LARGE);
    buf_fini(&out);
}

/* Joins the parameters of query as "name=value|" as http_query_next gives them. */
static const char *query_pairs(const char *query)
{
    static char out[256];
    size_t o = 0, pos = 0;
    struct slice q = {query, strlen(query)}, name, value;
    while (http_query_next(q, &pos, &name, &value)) {
        CHECK(name.ptr >= query && value.ptr >= query && value.ptr + value.len <= query + q.len);
        o += (size_t)snprintf(out + o, sizeof out - o, "%.*s=%.*s|", (int)name.len, name.ptr,
                              (int)value.len, value.ptr);
    }
    ASSERT_EQ(pos, q.len);
    out[o] = '\0';
    return out;
}

TEST(query_pairs_as_sent)
{
    ASSERT_STR(query_pairs(""), "");
    ASSERT_STR(query_pairs("a=1&b=2"), "a=1|b=2|");
    ASSERT_STR(query_pairs("&&a=1&&&b=&"), "a=1|b=|");  /* empty pairs are nothing */
    ASSERT_STR(query_pairs("flag&x=1=2"), "flag=|x=1=2|"); /* the first '=' splits */
    ASSERT_STR(query_pairs("%61+b=c%20d+e&=v"), "%61+b=c%20d+e|=v|"); /* not decoded */
    size_t pos = 0;
    struct slice name, value;
    CHECK(!http_query_next((struct slice){"&&", 2}, &pos, &name, &value));
    ASSERT_EQ(pos, 2);
}
