/* http/multipart: boundaries of Content-Type values, well-formed bodies (what curl, browsers
 * and Python send), and hostile ones (no boundary, cut short, no final delimiter, too many
 * parts, headers too large, malformed dispositions). */
#include <string.h>

#include "http/multipart.h"
#include "unit.h"
#include "util/errors.h"

enum { CAP = 32 };

static int parse(const char *body, const char *boundary, struct multipart_part *parts,
                 size_t *n)
{
    struct multipart_error err;
    int rc = multipart_parse((struct slice){body, strlen(body)}, boundary, NULL, parts, CAP, n,
                             &err);
    if (rc) {
        fprintf(stderr, "  (%s)\n", err.message);
    }
    return rc;
}

static bool body_is(const struct multipart_part *p, const char *want)
{
    return p->body.len == strlen(want) && !memcmp(p->body.ptr, want, p->body.len);
}

TEST(boundary_forms)
{
    char b[MULTIPART_BOUNDARY_BYTES + 1];
    struct multipart_error err;
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=abc123", b, &err), 0);
    ASSERT_STR(b, "abc123");
    ASSERT_EQ(multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", b,
                                 &err), 0);
    ASSERT_STR(b, "a b:c");
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=------------------------"
                                 "d74496d66958873e", b, &err), 0);
    ASSERT_STR(b, "------------------------d74496d66958873e");
    ASSERT_EQ(multipart_boundary(NULL, b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("application/json", b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data", b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=", b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=\"\"", b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=\"abc", b, &err), ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=\"ab \"", b, &err),
              ERR_INVALID); /* ends with a space */
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary=\"a<b\"", b, &err),
              ERR_INVALID);
    ASSERT_EQ(multipart_boundary("multipart/form-data; boundary", b, &err), ERR_INVALID);
    char long_b[200];
    snprintf(long_b, sizeof long_b, "multipart/form-data; boundary=%071d", 7);
    ASSERT_EQ(multipart_boundary(long_b, b, &err), ERR_INVALID);
    snprintf(long_b, sizeof long_b, "multipart/form-data; boundary=%070d", 7);
    ASSERT_EQ(multipart_boundary(long_b, b, &err), 0);
    ASSERT_EQ(strlen(b), 70);
}

TEST(two_parts_as_curl_sends_them)
{
    const char *body =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"metadata\"\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"state_view_name\":\"v\"}\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"source\"; filename=\"view.lua\"\r\n"
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
        "function evolve(s, e) return s end\r\n\r\n"
        "--XyZ--\r\n";
    struct multipart_part parts[CAP];
    size_t n;
    ASSERT_EQ(parse(body, "XyZ", parts, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_STR(parts[0].name, "metadata");
    CHECK(!parts[0].has_filename);
    CHECK(parts[0].content_type.len == 16 &&
          !memcmp(parts[0].content_type.ptr, "application/json", 16));
    CHECK(body_is(&parts[0], "{\"state_view_name\":\"v\"}"));
    ASSERT_STR(parts[1].name, "source");
    CHECK(parts[1].has_filename);
    ASSERT_STR(parts[1].filename, "view.lua");
    CHECK(body_is(&parts[1], "function evolve(s, e) return s end\r\n"));
    CHECK(multipart_find(parts, n, "source") == &parts[1]);
    CHECK(multipart_find(parts, n, "wasm") == NULL);
}

TEST(preamble_epilogue_padding_empty_and_binary)
{
    const char body[] =
        "this is a preamble\r\n"
        "--b  \t\r\n"
        "content-disposition: FORM-DATA;name=empty\r\n"
        "\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\n"
        "X-Other: ignored\r\n"
        "\r\n"
        "\0asm\r\n-\r--b\r\n"
        "--b--   trailing\r\nepilogue --b\r\n";
    struct multipart_part parts[CAP];
    size_t n;
    struct multipart_error err;
    int rc = multipart_parse((struct slice){body, sizeof body - 1}, "b", NULL, parts, CAP, &n,
                             &err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(n, 2);
    ASSERT_STR(parts[0].name, "empty");
    ASSERT_EQ(parts[0].body.len, 0);
    CHECK(parts[0].content_type.ptr == NULL);
    ASSERT_STR(parts[1].filename, "m.wasm");
    ASSERT_EQ(parts[1].body.len, 11);
    CHECK(!memcmp(parts[1].body.ptr, "\0asm\r\n-\r--b", 11));
}

TEST(quoted_names_and_filenames)
{
    const char *body =
        "--q\r\n"
        "Content-Disposition: form-data; filename=\"a \\\"quoted\\\" name.js\"; "
        "name=\"we\\\\ird;name\"\r\n"
        "\r\n"
        "x\r\n"
        "--q\r\n"
        "Content-Disposition: form-data; name=\"f\"; filename=\"\"\r\n"
        "\r\n"
        "\r\n"
        "--q--";
    struct multipart_part parts[CAP];
    size_t n;
    ASSERT_EQ(parse(body, "q", parts, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_STR(parts[0].name, "we\\ird;name");
    ASSERT_STR(parts[0].filename, "a \"quoted\" name.js");
    CHECK(parts[1].has_filename);
    ASSERT_STR(parts[1].filename, "");
}

static int refused(const char *body, const char *boundary)
{
    struct multipart_part parts[CAP];
    size_t n;
    struct multipart_error err;
    err.message[0] = '\0';
    int rc = multipart_parse((struct slice){body, strlen(body)}, boundary, NULL, parts, CAP, &n,
                             &err);
    CHECK(rc == 0 || err.message[0]);
    return rc;
}

TEST(hostile_bodies)
{
    const char *ok_head = "Content-Disposition: form-data; name=\"a\"\r\n\r\n";
    char b[512];
    ASSERT_EQ(refused("", "b"), ERR_INVALID);
    ASSERT_EQ(refused("no delimiter at all", "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b--\r\n", "b"), ERR_INVALID); /* no part */
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody", "b"),
              ERR_INVALID); /* cut short */
    snprintf(b, sizeof b, "--b\r\n%sbody\r\n--b\r\n", ok_head);
    ASSERT_EQ(refused(b, "b"), ERR_INVALID); /* no final delimiter: a part's headers missing */
    snprintf(b, sizeof b, "--b\r\n%sbody\r\n--bX", ok_head);
    ASSERT_EQ(refused(b, "b"), ERR_INVALID); /* neither CRLF nor -- after a delimiter */
    snprintf(b, sizeof b, "--b\r\n%sbody\r\n--b", ok_head);
    ASSERT_EQ(refused(b, "b"), ERR_INVALID); /* ends right after a delimiter */
    snprintf(b, sizeof b, "--b\r\n%sbody", ok_head);
    ASSERT_EQ(refused(b, "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=\"a\"", "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b\r\n\r\nx\r\n--b--", "b"), ERR_INVALID); /* no disposition */
    ASSERT_EQ(refused("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--", "b"),
              ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "b"),
              ERR_INVALID); /* no name */
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--b--", "b"),
              ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--b--",
                      "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--", "b"),
              ERR_INVALID); /* unterminated quote */
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: "
                      "form-data; name=b\r\n\r\nx\r\n--b--", "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a\r\nno colon\r\n\r\nx\r\n"
                      "--b--", "b"), ERR_INVALID);
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a\r\n folded\r\n\r\nx\r\n"
                      "--b--", "b"), ERR_INVALID); /* obs-fold */
    ASSERT_EQ(refused("--b\nContent-Disposition: form-data; name=a\n\nx\n--b--", "b"),
              ERR_INVALID); /* bare LF */
    ASSERT_EQ(refused("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--", ""),
              ERR_INVALID);
    char name[300];
    memset(name, 'n', sizeof name);
    name[MULTIPART_NAME_BYTES + 1] = '\0';
    snprintf(b, sizeof b, "--b\r\nContent-Disposition: form-data; name=%s\r\n\r\nx\r\n--b--",
             name);
    ASSERT_EQ(refused(b, "b"), ERR_INVALID);
    name[MULTIPART_NAME_BYTES] = '\0';
    snprintf(b, sizeof b, "--b\r\nContent-Disposition: form-data; name=%s\r\n\r\nx\r\n--b--",
             name);
    ASSERT_EQ(refused(b, "b"), 0);
}

TEST(limits_parts_headers_body)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < MULTIPART_DEFAULT_PARTS + 1; i++) {
        buf_printf(&b, "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\nx\r\n", i);
    }
    buf_adds(&b, "--b--");
    struct multipart_part parts[CAP];
    size_t n;
    struct multipart_error err;
    struct slice s = {b.ptr, b.len};
    ASSERT_EQ(multipart_parse(s, "b", NULL, parts, CAP, &n, &err), ERR_TOOBIG);
    struct multipart_limits more = {.max_parts = CAP};
    ASSERT_EQ(multipart_parse(s, "b", &more, parts, CAP, &n, &err), 0);
    ASSERT_EQ(n, MULTIPART_DEFAULT_PARTS + 1);
    ASSERT_EQ(multipart_parse(s, "b", &more, parts, 3, &n, &err), ERR_TOOBIG); /* cap */
    struct multipart_limits small = {.max_body_bytes = b.len - 1};
    ASSERT_EQ(multipart_parse(s, "b", &small, parts, CAP, &n, &err), ERR_TOOBIG);
    /* one part's headers: at most max_header_bytes, with their CRLFs */
    buf_reset(&b);
    const char *line = "Content-Disposition: form-data; name=a\r\n";
    buf_printf(&b, "--b\r\n%s\r\nx\r\n--b--", line);
    s = (struct slice){b.ptr, b.len};
    struct multipart_limits head = {.max_header_bytes = strlen(line)};
    ASSERT_EQ(multipart_parse(s, "b", &head, parts, CAP, &n, &err), 0);
    head.max_header_bytes = strlen(line) - 1;
    ASSERT_EQ(multipart_parse(s, "b", &head, parts, CAP, &n, &err), ERR_TOOBIG);
    buf_reset(&b);
    buf_adds(&b, "--b\r\nContent-Disposition: form-data; name=a\r\nX-Big: ");
    for (int i = 0; i < MULTIPART_DEFAULT_HEADER_BYTES; i++) {
        buf_addc(&b, 'v');
    }
    buf_adds(&b, "\r\n\r\nx\r\n--b--");
    s = (struct slice){b.ptr, b.len};
    ASSERT_EQ(multipart_parse(s, "b", NULL, parts, CAP, &n, &err), ERR_TOOBIG);
    buf_fini(&b);
}
