/* JSON text to a flat tape (jdoc.h). The text is first checked by the strict validator, so the
 * builder below trusts the grammar and only decodes. Invariants: the arena is allocated once
 * per parse with room for the whole text (decoded strings and number digits are never longer
 * than their source), so pointers into it stay valid; nodes refer to each other by index. */
#include "json/jdoc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/errors.h"

/* Builder state for one parse. */
struct builder {
    struct jdoc *d;   /* doc being filled */
    const char *p;    /* text */
    size_t n;         /* its length */
    size_t i;         /* next byte */
    size_t arena_len; /* arena bytes used */
    int rc;           /* first decoding error */
};

void jdoc_init(struct jdoc *d)
{
    memset(d, 0, sizeof(*d));
}

void jdoc_fini(struct jdoc *d)
{
    free(d->nodes);
    free(d->arena);
    memset(d, 0, sizeof(*d));
}

static void skip_ws(struct builder *b)
{
    while (b->i < b->n && (b->p[b->i] == ' ' || b->p[b->i] == '\t' || b->p[b->i] == '\n' ||
                           b->p[b->i] == '\r')) {
        b->i++;
    }
}

static uint32_t push_node(struct builder *b, uint8_t kind)
{
    struct jdoc *d = b->d;
    if (d->count == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        d->nodes = xrealloc(d->nodes, (size_t)cap * sizeof(*d->nodes));
        d->cap = cap;
    }
    struct jdoc_node *nd = &d->nodes[d->count];
    memset(nd, 0, sizeof(*nd));
    nd->kind = kind;
    return d->count++;
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one escape at s (after the backslash) into out; returns source bytes consumed, or
 * 0 for a lone surrogate. *out_len gets the bytes written. */
static size_t decode_escape(const char *s, const char *end, char *out, size_t *out_len)
{
    static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    for (const char *e = simple; *e; e += 2) {
        if (*s == e[0]) {
            *out = e[1];
            *out_len = 1;
            return 1;
        }
    }
    uint32_t cp = hex4(s + 1);
    size_t used = 5;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (end - s < 11 || s[5] != '\\' || s[6] != 'u') {
            return 0;
        }
        uint32_t lo = hex4(s + 7);
        if (lo < 0xdc00 || lo > 0xdfff) {
            return 0;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        used = 11;
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        return 0;
    }
    *out_len = put_utf8(out, cp);
    return used;
}

/* A string token at b->i (on its opening quote); fills the node's str and count. */
static void build_string(struct builder *b, struct jdoc_node *nd)
{
    size_t start = ++b->i;
    size_t end = start;
    bool escaped = false;
    while (b->p[end] != '"') {
        if (b->p[end] == '\\') {
            escaped = true;
            end++;
        }
        end++;
    }
    b->i = end + 1;
    if (!escaped) {
        nd->str = b->p + start;
        nd->count = (uint32_t)(end - start);
        return;
    }
    char *out = b->d->arena + b->arena_len;
    size_t w = 0;
    for (size_t k = start; k < end;) {
        if (b->p[k] != '\\') {
            out[w++] = b->p[k++];
            continue;
        }
        size_t wrote = 0;
        size_t used = decode_escape(b->p + k + 1, b->p + end, out + w, &wrote);
        if (!used) {
            b->rc = ERR_INVALID;
            break;
        }
        k += 1 + used;
        w += wrote;
    }
    nd->str = out;
    nd->count = (uint32_t)w;
    b->arena_len += w;
}

/* Saturating decimal exponent of the text after 'e'/'E' at *i. */
static int64_t read_exp(const char *p, size_t n, size_t *i)
{
    bool neg = false;
    if (p[*i] == '+' || p[*i] == '-') {
        neg = p[*i] == '-';
        (*i)++;
    }
    int64_t e = 0;
    while (*i < n && p[*i] >= '0' && p[*i] <= '9') {
        if (e < JDOC_MAX_EXP) {
            e = e * 10 + (p[*i] - '0');
        }
        (*i)++;
    }
    if (e > JDOC_MAX_EXP) {
        e = JDOC_MAX_EXP;
    }
    return neg ? -e : e;
}

/* A number token at b->i: digits without the point, leading and trailing zeros dropped. */
static void build_number(struct builder *b, struct jdoc_num *num)
{
    const char *p = b->p;
    char *out = b->d->arena + b->arena_len;
    uint32_t nd = 0;
    int64_t exp = 0;
    num->neg = p[b->i] == '-';
    b->i += num->neg;
    for (; b->i < b->n && p[b->i] >= '0' && p[b->i] <= '9'; b->i++) {
        if (nd || p[b->i] != '0') {
            out[nd++] = p[b->i];
        }
    }
    if (b->i < b->n && p[b->i] == '.') {
        for (b->i++; b->i < b->n && p[b->i] >= '0' && p[b->i] <= '9'; b->i++) {
            exp--;
            if (nd || p[b->i] != '0') {
                out[nd++] = p[b->i];
            }
        }
    }
    if (b->i < b->n && (p[b->i] == 'e' || p[b->i] == 'E')) {
        b->i++;
        exp += read_exp(p, b->n, &b->i);
    }
    while (nd && out[nd - 1] == '0') {
        nd--;
        exp++;
    }
    num->digits = out;
    num->ndigits = nd;
    num->exp = nd ? exp : 0;
    num->neg = nd ? num->neg : false;
    b->arena_len += nd;
}

static void build_value(struct builder *b);

static void build_container(struct builder *b, uint32_t idx, char close)
{
    bool is_object = close == '}';
    uint32_t count = 0;
    b->i++;
    skip_ws(b);
    while (b->p[b->i] != close) {
        if (is_object) {
            uint32_t k = push_node(b, JDOC_STRING);
            build_string(b, &b->d->nodes[k]);
            b->d->nodes[k].next = k + 1;
            skip_ws(b);
            b->i++; /* ':' */
        }
        build_value(b);
        count++;
        skip_ws(b);
        if (b->p[b->i] == ',') {
            b->i++;
            skip_ws(b);
        }
    }
    b->i++;
    b->d->nodes[idx].count = count;
}

static void build_value(struct builder *b)
{
    skip_ws(b);
    char c = b->p[b->i];
    uint32_t idx;
    if (c == '{' || c == '[') {
        idx = push_node(b, c == '{' ? JDOC_OBJECT : JDOC_ARRAY);
        build_container(b, idx, c == '{' ? '}' : ']');
    } else if (c == '"') {
        idx = push_node(b, JDOC_STRING);
        build_string(b, &b->d->nodes[idx]);
    } else if (c == 't' || c == 'f' || c == 'n') {
        idx = push_node(b, c == 't' ? JDOC_TRUE : c == 'f' ? JDOC_FALSE : JDOC_NULL);
        b->i += c == 'f' ? 5 : 4;
    } else {
        idx = push_node(b, JDOC_NUMBER);
        struct jdoc_num num;
        build_number(b, &num);
        b->d->nodes[idx].num = num;
    }
    b->d->nodes[idx].next = b->d->count;
}

int jdoc_parse(struct jdoc *d, const char *text, size_t len, int max_depth,
               struct jsonv_error *err)
{
    if (len > JDOC_MAX_TEXT_BYTES) {
        err->offset = 0;
        err->msg = "text too large";
        return ERR_TOOBIG;
    }
    int rc = jsonv_validate(text, len, max_depth, err);
    if (rc < 0) {
        return rc;
    }
    if (d->arena_cap < len + 1) {
        free(d->arena);
        d->arena = xmalloc(len + 1);
        d->arena_cap = len + 1;
    }
    d->count = 0;
    struct builder b = {d, text, len, 0, 0, 0};
    build_value(&b);
    if (b.rc < 0) {
        err->offset = 0;
        err->msg = "escaped lone surrogate";
        return ERR_INVALID;
    }
    return 0;
}

int64_t jdoc_member(const struct jdoc *d, uint32_t obj, const char *name, size_t len)
{
    const struct jdoc_node *o = &d->nodes[obj];
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < o->count; m++) {
        const struct jdoc_node *key = &d->nodes[k];
        if (key->count == len && memcmp(key->str, name, len) == 0) {
            return k + 1;
        }
        k = d->nodes[k + 1].next;
    }
    return -1;
}

int jdoc_num_cmp(const struct jdoc_num *a, const struct jdoc_num *b)
{
    int sa = a->ndigits == 0 ? 0 : a->neg ? -1 : 1;
    int sb = b->ndigits == 0 ? 0 : b->neg ? -1 : 1;
    if (sa != sb || sa == 0) {
        return sa < sb ? -1 : sa > sb;
    }
    /* Same sign, both non-zero: compare magnitudes, then apply the sign. */
    int64_t ma = (int64_t)a->ndigits + a->exp;
    int64_t mb = (int64_t)b->ndigits + b->exp;
    int mag;
    if (ma != mb) {
        mag = ma < mb ? -1 : 1;
    } else {
        uint32_t n = a->ndigits < b->ndigits ? a->ndigits : b->ndigits;
        int c = memcmp(a->digits, b->digits, n);
        if (c == 0) {
            c = (int)(a->ndigits > b->ndigits) - (int)(a->ndigits < b->ndigits);
        }
        mag = c < 0 ? -1 : c > 0;
    }
    return sa * mag;
}

bool jdoc_num_is_integer(const struct jdoc_num *n)
{
    return n->ndigits == 0 || n->exp >= 0;
}

uint64_t jdoc_num_u64(const struct jdoc_num *n)
{
    if (n->neg || n->exp < 0) {
        return 0;
    }
    if ((int64_t)n->ndigits + n->exp > 20) {
        return UINT64_MAX;
    }
    unsigned __int128 v = 0;
    for (int64_t k = 0; k < (int64_t)n->ndigits + n->exp; k++) {
        v = v * 10 + (k < n->ndigits ? (unsigned)(n->digits[k] - '0') : 0);
    }
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

double jdoc_num_double(const struct jdoc_num *n)
{
    char buf[64];
    uint32_t nd = n->ndigits > 40 ? 40 : n->ndigits;
    if (!nd) {
        return 0.0;
    }
    memcpy(buf, n->digits, nd);
    snprintf(buf + nd, sizeof buf - nd, "e%lld", (long long)(n->exp + (n->ndigits - nd)));
    double v = strtod(buf, NULL);
    return n->neg ? -v : v;
}

/* digits[0..nd) followed by zeros zeros, modulo m (m > 0, < 2^64). */
static uint64_t digits_mod(const char *digits, uint32_t nd, uint64_t zeros, uint64_t m)
{
    unsigned __int128 r = 0;
    for (uint32_t k = 0; k < nd; k++) {
        r = (r * 10 + (unsigned)(digits[k] - '0')) % m;
    }
    unsigned __int128 base = 10 % m;
    unsigned __int128 pw = 1 % m;
    for (uint64_t e = zeros; e; e >>= 1) { /* 10^zeros mod m by squaring */
        if (e & 1) {
            pw = pw * base % m;
        }
        base = base * base % m;
    }
    return (uint64_t)(r * pw % m);
}

bool jdoc_num_is_multiple(const struct jdoc_num *n, const struct jdoc_num *m)
{
    if (n->ndigits == 0) {
        return true;
    }
    if (m->ndigits > 18) {
        double q = jdoc_num_double(n) / jdoc_num_double(m);
        return isfinite(q) && q == floor(q);
    }
    uint64_t mv = 0;
    for (uint32_t k = 0; k < m->ndigits; k++) {
        mv = mv * 10 + (uint64_t)(m->digits[k] - '0');
    }
    /* n = N * 10^en, m = M * 10^em. en >= em: N * 10^(en-em) mod M == 0. */
    if (n->exp >= m->exp) {
        return digits_mod(n->digits, n->ndigits, (uint64_t)(n->exp - m->exp), mv) == 0;
    }
    /* en < em: N mod (M * 10^(em-en)) == 0. N has no trailing zeros, so 10^(em-en) must
     * divide N only through... it cannot: N's last digit is non-zero, so N is not a multiple
     * of 10, and a multiple of M * 10^k (k > 0) is. */
    return false;
}

static bool equal_objects(const struct jdoc *da, uint32_t a, const struct jdoc *db, uint32_t b)
{
    uint32_t k = a + 1;
    for (uint32_t m = 0; m < da->nodes[a].count; m++) {
        const struct jdoc_node *key = &da->nodes[k];
        int64_t bv = jdoc_member(db, b, key->str, key->count);
        if (bv < 0 || !jdoc_equal(da, k + 1, db, (uint32_t)bv)) {
            return false;
        }
        k = da->nodes[k + 1].next;
    }
    return true;
}

bool jdoc_equal(const struct jdoc *da, uint32_t a, const struct jdoc *db, uint32_t b)
{
    const struct jdoc_node *na = &da->nodes[a];
    const struct jdoc_node *nb = &db->nodes[b];
    if (na->kind != nb->kind) {
        return false;
    }
    switch (na->kind) {
    case JDOC_NUMBER:
        return jdoc_num_cmp(&na->num, &nb->num) == 0;
    case JDOC_STRING:
        return na->count == nb->count && memcmp(na->str, nb->str, na->count) == 0;
    case JDOC_ARRAY:
        if (na->count != nb->count) {
            return false;
        }
        for (uint32_t i = 0, x = a + 1, y = b + 1; i < na->count; i++) {
            if (!jdoc_equal(da, x, db, y)) {
                return false;
            }
            x = da->nodes[x].next;
            y = db->nodes[y].next;
        }
        return true;
    case JDOC_OBJECT:
        return na->count == nb->count && equal_objects(da, a, db, b);
    default:
        return true;
    }
}
