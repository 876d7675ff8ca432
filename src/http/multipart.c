/* multipart/form-data (http/multipart.h). The grammar, RFC 2046 section 5.1.1:
 *
 *   body      := [preamble CRLF] dash-boundary padding CRLF part
 *                (CRLF dash-boundary padding CRLF part)* CRLF dash-boundary "--" [epilogue]
 *   part      := header-lines CRLF bytes   (bytes never hold CRLF dash-boundary)
 *
 * where dash-boundary is "--" boundary and padding is spaces and tabs. A part's header lines
 * are RFC 9110 fields without obs-fold; RFC 7578 needs Content-Disposition: form-data with a
 * name, and allows filename and Content-Type. Other fields (Content-Transfer-Encoding, ...)
 * are skipped. */
#define _GNU_SOURCE /* memmem */
#include "http/multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/errors.h"

static int fail(struct multipart_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct multipart_error *err, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 2046's bcharsnospace, and space (not last). */
static bool is_bchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("'()+_,-./:=? ", c));
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Reads a token or a quoted string at *p (advanced past it) into out (cap bytes with its NUL),
 * unescaping quoted pairs. False when there is neither, it holds a control character, or it
 * does not fit. */
static bool read_value(const char **p, const char *end, char *out, size_t cap)
{
    const char *s = *p;
    size_t n = 0;
    if (s < end && *s == '"') {
        for (s++; s < end && *s != '"'; s++) {
            if (*s == '\\' && s + 1 < end) {
                s++;
            }
            unsigned char c = (unsigned char)*s;
            if ((c < 0x20 && c != '\t') || c == 0x7f || n + 1 >= cap) {
                return false;
            }
            out[n++] = (char)c;
        }
        if (s >= end) {
            return false; /* no closing quote */
        }
        s++;
    } else {
        for (; s < end && is_tchar((unsigned char)*s); s++) {
            if (n + 1 >= cap) {
                return false;
            }
            out[n++] = *s;
        }
        if (n == 0) {
            return false;
        }
    }
    out[n] = '\0';
    *p = s;
    return true;
}

int multipart_boundary(const char *content_type, char out[MULTIPART_BOUNDARY_BYTES + 1],
                       struct multipart_error *err)
{
    static const char want[] = "multipart/form-data";
    size_t wn = sizeof want - 1;
    if (!content_type || strncasecmp(content_type, want, wn) != 0) {
        return fail(err, ERR_INVALID, "the body must be multipart/form-data");
    }
    const char *p = content_type + wn, *end = content_type + strlen(content_type);
    out[0] = '\0';
    for (p = skip_ows(p, end); p < end && *p == ';'; p = skip_ows(p, end)) {
        p = skip_ows(p + 1, end);
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p)) {
            p++;
        }
        size_t name_len = (size_t)(p - name);
        char value[MULTIPART_BOUNDARY_BYTES + 2];
        if (p >= end || *p != '=' || name_len == 0) {
            return fail(err, ERR_INVALID, "a malformed Content-Type parameter");
        }
        p++;
        bool is_boundary = name_len == 8 && !strncasecmp(name, "boundary", 8);
        char skip[256];
        if (!read_value(&p, end, is_boundary ? value : skip,
                        is_boundary ? sizeof value : sizeof skip)) {
            return fail(err, ERR_INVALID, "a malformed Content-Type parameter%s",
                        is_boundary ? " (boundary: 1 to 70 characters)" : "");
        }
        if (is_boundary) {
            size_t vn = strlen(value); /* value holds one byte more than a boundary may */
            if (vn > MULTIPART_BOUNDARY_BYTES) {
                return fail(err, ERR_INVALID, "multipart/form-data needs a boundary of 1 to "
                            "70 characters");
            }
            memcpy(out, value, vn + 1);
        }
    }
    size_t n = strlen(out);
    if (p != end) {
        return fail(err, ERR_INVALID, "a malformed Content-Type");
    }
    if (n == 0 || n > MULTIPART_BOUNDARY_BYTES || out[n - 1] == ' ') {
        return fail(err, ERR_INVALID, "multipart/form-data needs a boundary of 1 to 70 "
                    "characters");
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_bchar((unsigned char)out[i])) {
            return fail(err, ERR_INVALID, "the boundary holds a character RFC 2046 does not "
                        "allow");
        }
    }
    return 0;
}

/* The first occurrence of needle in [p, end), or NULL. */
static const char *find(const char *p, const char *end, const char *needle, size_t n)
{
    if (p > end || (size_t)(end - p) < n) {
        return NULL;
    }
    return memmem(p, (size_t)(end - p), needle, n);
}

/* Reads the Content-Disposition value [p, end) into part: form-data, name, filename. */
static int read_disposition(const char *p, const char *end, struct multipart_part *part,
                            size_t index, struct multipart_error *err)
{
    static const char type[] = "form-data";
    bool has_name = false;
    if ((size_t)(end - p) < sizeof type - 1 || strncasecmp(p, type, sizeof type - 1) != 0) {
        return fail(err, ERR_INVALID, "part %zu: Content-Disposition must be form-data", index);
    }
    for (p = skip_ows(p + sizeof type - 1, end); p < end; p = skip_ows(p, end)) {
        if (*p != ';') {
            return fail(err, ERR_INVALID, "part %zu: a malformed Content-Disposition", index);
        }
        p = skip_ows(p + 1, end);
        const char *pn = p;
        while (p < end && is_tchar((unsigned char)*p)) {
            p++;
        }
        size_t pn_len = (size_t)(p - pn);
        bool is_name = pn_len == 4 && !strncasecmp(pn, "name", 4);
        bool is_file = pn_len == 8 && !strncasecmp(pn, "filename", 8);
        char other[MULTIPART_FILENAME_BYTES + 1];
        char *dst = is_name ? part->name : is_file ? part->filename : other;
        size_t cap = is_name ? sizeof part->name : is_file ? sizeof part->filename
                                                           : sizeof other;
        p = skip_ows(p, end);
        if (pn_len == 0 || p >= end || *p != '=' || (is_name && has_name) ||
            (is_file && part->has_filename)) {
            return fail(err, ERR_INVALID, "part %zu: a malformed Content-Disposition", index);
        }
        p = skip_ows(p + 1, end);
        if (!read_value(&p, end, dst, cap)) {
            return fail(err, ERR_INVALID, "part %zu: a Content-Disposition parameter is "
                        "malformed or too long (name: %d bytes, filename: %d)", index,
                        MULTIPART_NAME_BYTES, MULTIPART_FILENAME_BYTES);
        }
        has_name = has_name || is_name;
        part->has_filename = part->has_filename || is_file;
    }
    if (!has_name || !part->name[0]) {
        return fail(err, ERR_INVALID, "part %zu: Content-Disposition has no name", index);
    }
    return 0;
}

/* Reads one header line [p, end) (CRLF not included) into part. */
static int read_header(const char *p, const char *end, struct multipart_part *part,
                       bool *has_disposition, size_t index, struct multipart_error *err)
{
    const char *name = p;
    while (p < end && is_tchar((unsigned char)*p)) {
        p++;
    }
    size_t n = (size_t)(p - name);
    if (n == 0 || p >= end || *p != ':') {
        return fail(err, ERR_INVALID, "part %zu: a malformed header line", index);
    }
    const char *v = skip_ows(p + 1, end), *ve = end;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
        ve--;
    }
    for (const char *c = v; c < ve; c++) {
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
            return fail(err, ERR_INVALID, "part %zu: a control character in a header", index);
        }
    }
    if (n == 19 && !strncasecmp(name, "Content-Disposition", n)) {
        if (*has_disposition) {
            return fail(err, ERR_INVALID, "part %zu: Content-Disposition twice", index);
        }
        *has_disposition = true;
        return read_disposition(v, ve, part, index, err);
    }
    if (n == 12 && !strncasecmp(name, "Content-Type", n)) {
        if (part->content_type.ptr) {
            return fail(err, ERR_INVALID, "part %zu: Content-Type twice", index);
        }
        part->content_type = (struct slice){v, (size_t)(ve - v)};
    }
    return 0;
}

/* Reads the header lines starting at p up to their blank line; *body gets where the part's
 * bytes begin. */
static int read_headers(const char *p, const char *end, size_t max_bytes,
                        struct multipart_part *part, size_t index, const char **body,
                        struct multipart_error *err)
{
    /* the header lines with their CRLFs, then the blank line's CRLF */
    const char *limit = (size_t)(end - p) > max_bytes + 2 ? p + max_bytes + 2 : end;
    bool has_disposition = false;
    for (;;) {
        const char *eol = find(p, limit, "\r\n", 2);
        if (!eol && limit < end) {
            return fail(err, ERR_TOOBIG, "part %zu: its headers are over %zu bytes", index,
                        max_bytes);
        }
        if (!eol) {
            return fail(err, ERR_INVALID, "part %zu: its headers are cut short", index);
        }
        if (eol == p) {
            break;
        }
        int rc = read_header(p, eol, part, &has_disposition, index, err);
        if (rc) {
            return rc;
        }
        p = eol + 2;
    }
    if (!has_disposition) {
        return fail(err, ERR_INVALID, "part %zu: no Content-Disposition", index);
    }
    *body = p + 2;
    return 0;
}

/* After a delimiter at p: true with *last when it is the close delimiter ("--"), else p is
 * moved past its padding and CRLF; false when neither follows. */
static bool after_delimiter(const char **p, const char *end, bool *last)
{
    const char *s = *p;
    if (end - s >= 2 && s[0] == '-' && s[1] == '-') {
        *last = true;
        return true;
    }
    s = skip_ows(s, end);
    if (end - s < 2 || s[0] != '\r' || s[1] != '\n') {
        return false;
    }
    *last = false;
    *p = s + 2;
    return true;
}

int multipart_parse(struct slice body, const char *boundary, const struct multipart_limits *lim,
                    struct multipart_part *parts, size_t cap, size_t *count,
                    struct multipart_error *err)
{
    size_t max_parts = lim && lim->max_parts ? lim->max_parts : MULTIPART_DEFAULT_PARTS;
    size_t max_head = lim && lim->max_header_bytes ? lim->max_header_bytes
                                                    : MULTIPART_DEFAULT_HEADER_BYTES;
    size_t max_body = lim && lim->max_body_bytes ? lim->max_body_bytes
                                                 : MULTIPART_DEFAULT_BODY_BYTES;
    size_t bn = boundary ? strlen(boundary) : 0;
    *count = 0;
    if (bn == 0 || bn > MULTIPART_BOUNDARY_BYTES) {
        return fail(err, ERR_INVALID, "no boundary");
    }
    if (body.len > max_body) {
        return fail(err, ERR_TOOBIG, "the body is over %zu bytes", max_body);
    }
    char delim[4 + MULTIPART_BOUNDARY_BYTES + 1]; /* CRLF "--" boundary */
    snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    size_t dn = 4 + bn;
    const char *p = body.ptr, *end = body.ptr + body.len;
    if (body.len >= dn - 2 && !memcmp(p, delim + 2, dn - 2)) {
        p += dn - 2; /* no preamble */
    } else {
        const char *d = find(p, end, delim, dn);
        if (!d) {
            return fail(err, ERR_INVALID, "no delimiter: the body does not hold the boundary");
        }
        p = d + dn;
    }
    for (;;) {
        bool last = false;
        if (!after_delimiter(&p, end, &last)) {
            return fail(err, ERR_INVALID, "a delimiter is followed by neither CRLF nor --");
        }
        if (last) {
            break;
        }
        if (*count >= max_parts || *count >= cap) {
            return fail(err, ERR_TOOBIG, "more than %zu parts", max_parts < cap ? max_parts
                                                                               : cap);
        }
        struct multipart_part *part = &parts[*count];
        memset(part, 0, sizeof(*part));
        const char *start = NULL;
        int rc = read_headers(p, end, max_head, part, *count, &start, err);
        if (rc) {
            return rc;
        }
        const char *d = find(start, end, delim, dn);
        if (!d) {
            return fail(err, ERR_INVALID, "part %zu is cut short: no delimiter after it",
                        *count);
        }
        part->body = (struct slice){start, (size_t)(d - start)};
        (*count)++;
        p = d + dn;
    }
    return *count ? 0 : fail(err, ERR_INVALID, "the body holds no part");
}

const struct multipart_part *multipart_find(const struct multipart_part *parts, size_t count,
                                            const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (!strcmp(parts[i].name, name)) {
            return &parts[i];
        }
    }
    return NULL;
}
