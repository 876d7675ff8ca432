/* The JSONPath subset of j17: compiles a path text into a root and a list of segments, then
 * reads or writes jansson trees along them. Invariants: a compiled path has at most
 * LIMIT_JPATH_SEGMENTS segments; every member segment owns a NUL-terminated name without NUL
 * bytes; a $ path's first segment is one of the five event members. */
#include "json/jpath.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/limits.h"

/* Largest index magnitude accepted in [n]: more digits cannot address a bounded array. */
enum { JPATH_MAX_INDEX_DIGITS = 9 };

struct jpath_seg {
    char *name;    /* owned member name, or NULL for an index segment */
    long index;    /* the index of [n] (negative counts from the end) */
    size_t pos;    /* byte offset of the segment in the path text, for errors */
};

struct jpath {
    enum jpath_root root;                        /* where the walk starts */
    size_t count;                                /* segments used */
    struct jpath_seg segs[LIMIT_JPATH_SEGMENTS]; /* the walk, in order */
};

static const char *const EVENT_MEMBERS[] = {"data", "metadata", "key", "id", "type"};

/* Parser state over the path text. */
struct cursor {
    const char *s;           /* the text */
    size_t len;              /* its length */
    size_t i;                /* next byte */
    struct jpath *p;         /* the path being built */
    struct jpath_error *err; /* where failures are reported */
    unsigned flags;          /* JPATH_ALLOW_*: extra first members of a $ path */
};

static int fail(struct jpath_error *err, size_t pos, int code, const char *msg)
{
    if (err) {
        err->pos = pos;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return ERR(code);
}

static bool is_name_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c >= 0x80;
}

static int add_segment(struct cursor *c, size_t pos, struct jpath_seg **out)
{
    if (c->p->count == LIMIT_JPATH_SEGMENTS) {
        return fail(c->err, pos, ERR_TOOBIG, "too many segments");
    }
    *out = &c->p->segs[c->p->count++];
    (*out)->pos = pos;
    return 0;
}

/* Parses a member name at c->i (after a '.' or at the start of a state path). */
static int parse_name(struct cursor *c)
{
    size_t start = c->i;
    while (c->i < c->len && is_name_byte((unsigned char)c->s[c->i])) {
        c->i++;
    }
    if (c->i == start) {
        return fail(c->err, start, ERR_INVALID, "expected a member name");
    }
    struct jpath_seg *seg;
    int rc = add_segment(c, start, &seg);
    if (rc < 0) return rc;
    seg->name = xstrndup(c->s + start, c->i - start);
    return 0;
}

/* Parses "[n]" or "[-n]" at c->i (which holds '['). */
static int parse_index(struct cursor *c)
{
    size_t start = c->i++;
    bool is_negative = c->i < c->len && c->s[c->i] == '-';
    if (is_negative) c->i++;
    size_t digits = c->i;
    long v = 0;
    while (c->i < c->len && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        if (c->i - digits == JPATH_MAX_INDEX_DIGITS) {
            return fail(c->err, start, ERR_INVALID, "index too large");
        }
        v = v * 10 + (c->s[c->i++] - '0');
    }
    if (c->i == digits) {
        return fail(c->err, c->i, ERR_INVALID, "expected an integer index (quoted members "
                                              "and wildcards are not part of the subset)");
    }
    if (c->i >= c->len || c->s[c->i] != ']') {
        return fail(c->err, c->i, ERR_INVALID, "expected ']'");
    }
    c->i++;
    struct jpath_seg *seg;
    int rc = add_segment(c, start, &seg);
    if (rc < 0) return rc;
    seg->index = is_negative ? -v : v;
    return 0;
}

static int parse_segments(struct cursor *c)
{
    while (c->i < c->len) {
        char ch = c->s[c->i];
        int rc;
        if (ch == '.') {
            c->i++;
            rc = parse_name(c);
        } else if (ch == '[') {
            rc = parse_index(c);
        } else {
            rc = fail(c->err, c->i, ERR_INVALID, "expected '.' or '['");
        }
        if (rc < 0) return rc;
    }
    return 0;
}

static int check_event_member(struct cursor *c)
{
    if (c->p->count == 0) return 0;
    const struct jpath_seg *first = &c->p->segs[0];
    for (size_t i = 0; first->name && i < sizeof EVENT_MEMBERS / sizeof *EVENT_MEMBERS; i++) {
        if (strcmp(first->name, EVENT_MEMBERS[i]) == 0) return 0;
    }
    if (first->name && (c->flags & JPATH_ALLOW_ITEM) && strcmp(first->name, "item") == 0) {
        return 0;
    }
    if (first->name && (c->flags & JPATH_ALLOW_PREV) && strcmp(first->name, "prev") == 0) {
        return 0;
    }
    return fail(c->err, first->pos, ERR_INVALID,
                "$ paths start with data, metadata, key, id or type");
}

/* Parses the root and the segments; the caller frees c->p on failure. */
static int parse_path(struct cursor *c, enum jpath_mode mode)
{
    char first = c->len ? c->s[0] : '\0';
    if (first == '$' && mode == JPATH_TARGET) {
        return fail(c->err, 0, ERR_INVALID, "a target is a state path, without $");
    }
    if (first == '$' || first == '@') {
        c->p->root = first == '$' ? JPATH_ROOT_EVENT : JPATH_ROOT_STATE;
        c->i = 1;
        int rc = parse_segments(c);
        if (rc < 0) return rc;
        return c->p->root == JPATH_ROOT_EVENT ? check_event_member(c) : 0;
    }
    if (mode == JPATH_VALUE) {
        return fail(c->err, 0, ERR_INVALID, "a path starts with $ or @");
    }
    c->p->root = JPATH_ROOT_STATE;
    if (c->len == 0) return 0;
    int rc = first == '[' ? parse_index(c) : parse_name(c);
    if (rc < 0) return rc;
    return parse_segments(c);
}

int jpath_compile(const char *text, size_t len, enum jpath_mode mode, struct jpath **out,
                  struct jpath_error *err)
{
    return jpath_compile_ex(text, len, mode, 0, out, err);
}

int jpath_compile_ex(const char *text, size_t len, enum jpath_mode mode, unsigned flags,
                     struct jpath **out, struct jpath_error *err)
{
    *out = NULL;
    if (len > LIMIT_JPATH_BYTES) {
        return fail(err, LIMIT_JPATH_BYTES, ERR_TOOBIG, "path longer than its limit");
    }
    struct cursor c = {.s = text, .len = len, .err = err, .flags = flags};
    c.p = xcalloc(1, sizeof(*c.p));
    int rc = parse_path(&c, mode);
    if (rc < 0) {
        jpath_free(c.p);
        return rc;
    }
    *out = c.p;
    return 0;
}

void jpath_free(struct jpath *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->count; i++) {
        free(p->segs[i].name);
    }
    free(p);
}

enum jpath_root jpath_root_of(const struct jpath *p)
{
    return p->root;
}

size_t jpath_segment_count(const struct jpath *p)
{
    return p->count;
}

bool jpath_is_ref(const char *s, size_t len)
{
    if (len == 0 || (s[0] != '$' && s[0] != '@')) return false;
    return len == 1 || s[1] == '.' || s[1] == '[';
}

/* Resolves an index against an array of n elements; false when out of bounds. */
static bool resolve_index(long index, size_t n, size_t *out)
{
    long i = index < 0 ? (long)n + index : index;
    if (i < 0 || (size_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

/* One step of a walk: the child a segment names in v, or NULL. */
static json_t *step(const struct jpath_seg *seg, const json_t *v)
{
    if (seg->name) {
        return json_is_object(v) ? json_object_get(v, seg->name) : NULL;
    }
    size_t i;
    if (!json_is_array(v) || !resolve_index(seg->index, json_array_size(v), &i)) return NULL;
    return json_array_get(v, i);
}

static json_t *walk(const struct jpath *p, const json_t *v, size_t nsegs)
{
    for (size_t i = 0; v && i < nsegs; i++) {
        v = step(&p->segs[i], v);
    }
    return (json_t *)v;
}

json_t *jpath_get_in(const struct jpath *p, const json_t *root)
{
    return walk(p, root, p->count);
}

json_t *jpath_get(const struct jpath *p, const struct jpath_ctx *ctx)
{
    return walk(p, p->root == JPATH_ROOT_EVENT ? ctx->event : ctx->state, p->count);
}

/* Stores value (transferred) in container v at the segment. */
static int store(const struct jpath_seg *seg, json_t *v, json_t *value, struct jpath_error *err)
{
    if (seg->name) {
        if (!json_is_object(v)) {
            json_decref(value);
            return fail(err, seg->pos, ERR_INVALID, "not an object");
        }
        ASSERT(json_object_set_new(v, seg->name, value) == 0);
        return 0;
    }
    size_t i;
    if (!json_is_array(v) || !resolve_index(seg->index, json_array_size(v), &i)) {
        json_decref(value);
        return fail(err, seg->pos, ERR_INVALID,
                    json_is_array(v) ? "index out of bounds" : "not an array");
    }
    ASSERT(json_array_set_new(v, i, value) == 0);
    return 0;
}

int jpath_set(const struct jpath *p, json_t **root, json_t *value, struct jpath_error *err)
{
    if (p->count == 0) {
        json_decref(*root);
        *root = value;
        return 0;
    }
    json_t *v = *root;
    for (size_t i = 0; i + 1 < p->count; i++) {
        const struct jpath_seg *seg = &p->segs[i];
        json_t *child = step(seg, v);
        if ((!child || json_is_null(child)) && seg->name && json_is_object(v)) {
            child = json_object();
            ASSERT(child && json_object_set_new(v, seg->name, child) == 0);
        }
        if (!child) {
            json_decref(value);
            return fail(err, seg->pos, ERR_INVALID,
                        seg->name ? "not an object" : "not an array, or index out of bounds");
        }
        v = child;
    }
    return store(&p->segs[p->count - 1], v, value, err);
}

int jpath_unset(const struct jpath *p, json_t *root)
{
    if (p->count == 0) {
        if (json_is_object(root)) json_object_clear(root);
        if (json_is_array(root)) json_array_clear(root);
        return 0;
    }
    json_t *parent = walk(p, root, p->count - 1);
    const struct jpath_seg *seg = &p->segs[p->count - 1];
    size_t i;
    if (seg->name && json_is_object(parent)) {
        json_object_del(parent, seg->name);
    } else if (!seg->name && json_is_array(parent) &&
               resolve_index(seg->index, json_array_size(parent), &i)) {
        json_array_remove(parent, i);
    }
    return 0;
}

json_t *jpath_event_new(const char *type, const char *key, json_t *data, json_t *metadata)
{
    const char *colon = strchr(key, ':');
    json_t *ev = json_object();
    ASSERT(ev);
    /* _nocheck: the caller's strings are UTF-8 already (the header's contract) */
    json_object_set_new_nocheck(ev, "type", json_string_nocheck(type));
    json_object_set_new_nocheck(ev, "key", json_string_nocheck(key));
    json_object_set_new_nocheck(ev, "id", json_string_nocheck(colon ? colon + 1 : key));
    json_object_set_nocheck(ev, "data", data ? data : json_null());
    json_object_set_nocheck(ev, "metadata", metadata ? metadata : json_null());
    return ev;
}
