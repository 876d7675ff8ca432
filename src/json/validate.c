/* Recursive-descent JSON validator. Recursion depth is bounded by max_depth (callers pass a
 * small limit), so the C stack stays small. */
#include "json/validate.h"

#include <stdbool.h>
#include <stdint.h>

#include "util/errors.h"

/* Cursor over the text being validated. */
struct vstate {
    const unsigned char *p;    /* text */
    size_t n;                  /* its length */
    size_t i;                  /* next byte */
    int depth;                 /* current nesting */
    int max_depth;             /* limit */
    struct jsonv_error *err;   /* where failures go */
};

static int fail(struct vstate *v, const char *msg)
{
    v->err->offset = v->i;
    v->err->msg = msg;
    return ERR_INVALID;
}

static void skip_ws(struct vstate *v)
{
    while (v->i < v->n) {
        unsigned char c = v->p[v->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        v->i++;
    }
}

static int value(struct vstate *v);

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence starting with lead byte c at v->i. */
static int utf8_seq(struct vstate *v, unsigned char c)
{
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0xc2 || c > 0xf4) {
        return fail(v, "invalid UTF-8");
    }
    if (v->i + len > v->n) {
        return fail(v, "truncated UTF-8");
    }
    uint32_t cp = c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        unsigned char cc = v->p[v->i + k];
        if ((cc & 0xc0) != 0x80) {
            return fail(v, "invalid UTF-8");
        }
        cp = cp << 6 | (cc & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return fail(v, "invalid UTF-8");
    }
    v->i += len;
    return 0;
}

static int escape(struct vstate *v)
{
    v->i++; /* the backslash */
    if (v->i >= v->n) {
        return fail(v, "unterminated string");
    }
    unsigned char c = v->p[v->i];
    if (c == 'u') {
        for (int k = 1; k <= 4; k++) {
            if (v->i + (size_t)k >= v->n || !is_hex(v->p[v->i + (size_t)k])) {
                return fail(v, "bad \\u escape");
            }
        }
        v->i += 5;
        return 0;
    }
    if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' &&
        c != 't') {
        return fail(v, "bad escape");
    }
    v->i++;
    return 0;
}

static int string(struct vstate *v)
{
    v->i++; /* the opening quote */
    while (v->i < v->n) {
        unsigned char c = v->p[v->i];
        int rc = 0;
        if (c == '"') {
            v->i++;
            return 0;
        }
        if (c == '\\') {
            rc = escape(v);
        } else if (c < 0x20) {
            rc = fail(v, "control character in string");
        } else if (c >= 0x80) {
            rc = utf8_seq(v, c);
        } else {
            v->i++;
        }
        if (rc) {
            return rc;
        }
    }
    return fail(v, "unterminated string");
}

static size_t digits(struct vstate *v)
{
    size_t start = v->i;
    while (v->i < v->n && v->p[v->i] >= '0' && v->p[v->i] <= '9') {
        v->i++;
    }
    return v->i - start;
}

static int number(struct vstate *v)
{
    if (v->p[v->i] == '-') {
        v->i++;
    }
    if (v->i < v->n && v->p[v->i] == '0') {
        v->i++;
    } else if (digits(v) == 0) {
        return fail(v, "bad number");
    }
    if (v->i < v->n && v->p[v->i] == '.') {
        v->i++;
        if (digits(v) == 0) {
            return fail(v, "bad number: digits expected after '.'");
        }
    }
    if (v->i < v->n && (v->p[v->i] == 'e' || v->p[v->i] == 'E')) {
        v->i++;
        if (v->i < v->n && (v->p[v->i] == '+' || v->p[v->i] == '-')) {
            v->i++;
        }
        if (digits(v) == 0) {
            return fail(v, "bad number: digits expected in exponent");
        }
    }
    return 0;
}

static int literal(struct vstate *v, const char *word, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        if (v->i + k >= v->n || v->p[v->i + k] != (unsigned char)word[k]) {
            v->i += k;
            return fail(v, "invalid literal");
        }
    }
    v->i += len;
    return 0;
}

/* Parses the members or items after an opening bracket, up to its closing one. */
static int container(struct vstate *v, bool is_object)
{
    char close = is_object ? '}' : ']';
    if (++v->depth > v->max_depth) {
        return fail(v, "nested too deeply");
    }
    v->i++;
    skip_ws(v);
    if (v->i < v->n && v->p[v->i] == (unsigned char)close) {
        v->i++;
        v->depth--;
        return 0;
    }
    for (;;) {
        if (is_object) {
            if (v->i >= v->n || v->p[v->i] != '"') {
                return fail(v, "object member name expected");
            }
            int rc = string(v);
            if (rc) return rc;
            skip_ws(v);
            if (v->i >= v->n || v->p[v->i] != ':') {
                return fail(v, "':' expected");
            }
            v->i++;
        }
        int rc = value(v);
        if (rc) return rc;
        skip_ws(v);
        if (v->i < v->n && v->p[v->i] == ',') {
            v->i++;
            skip_ws(v);
            continue;
        }
        if (v->i < v->n && v->p[v->i] == (unsigned char)close) {
            v->i++;
            v->depth--;
            return 0;
        }
        return fail(v, is_object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int value(struct vstate *v)
{
    skip_ws(v);
    if (v->i >= v->n) {
        return fail(v, "value expected");
    }
    switch (v->p[v->i]) {
    case '{': return container(v, true);
    case '[': return container(v, false);
    case '"': return string(v);
    case 't': return literal(v, "true", 4);
    case 'f': return literal(v, "false", 5);
    case 'n': return literal(v, "null", 4);
    default:
        if (v->p[v->i] == '-' || (v->p[v->i] >= '0' && v->p[v->i] <= '9')) {
            return number(v);
        }
        return fail(v, "value expected");
    }
}

int jsonv_validate(const char *p, size_t n, int max_depth, struct jsonv_error *err)
{
    struct vstate v = {(const unsigned char *)p, n, 0, 0, max_depth, err};
    int rc = value(&v);
    if (rc) {
        return rc;
    }
    skip_ws(&v);
    return v.i == n ? 0 : fail(&v, "trailing characters after the JSON value");
}
