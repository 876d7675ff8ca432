/* JSON Schema compiler: schema text to the immutable compiled form of schema_int.h.
 *
 * Steps: the root text is copied and parsed into a tape (json/jdoc.h); an indexing walk over
 * the subschema positions records every resource (`$id`, resolved against its parent's base
 * URI) and anchor (`$anchor`, `$dynamicAnchor`); then subschemas are compiled breadth-first
 * from a worklist: asking for the node of a tape position (node_for) reserves an index and
 * queues it, so `$ref` cycles and long chains need no recursion. A `$ref` to a URI that no
 * loaded document declares loads the registry's document of that URI (indexed the same
 * way), or fails the compile. Invariant: every snode index < node_count is filled before
 * schema_compile returns; nothing is written afterwards. */
#include "json/schema.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jdoc.h"
#include "json/schema_format.h"
#include "json/schema_int.h"
#include "json/schema_uri.h"
#include "util/errors.h"

/* A registered document. */
struct regdoc {
    char *uri;  /* owned absolute URI */
    char *text; /* owned JSON text */
    size_t len; /* its bytes */
};

struct schema_registry {
    struct regdoc docs[SCHEMA_MAX_REGISTERED]; /* registered documents */
    uint32_t count;                           /* in use */
};

/* A schema resource found by indexing: a document root or a subschema with `$id`. */
struct cres {
    char *uri;     /* owned absolute URI without fragment ("" for a root without base) */
    uint32_t doc;  /* its document */
    uint32_t node; /* its tape index */
};

/* An `$anchor` or `$dynamicAnchor`. */
struct canchor {
    int32_t res;      /* resource it belongs to */
    const char *name; /* borrowed from the document */
    uint32_t len;     /* bytes of name */
    uint32_t node;    /* tape index of the subschema */
    bool is_dynamic;  /* declared with $dynamicAnchor */
};

/* Per-document compile state, parallel to schema.docs. */
struct cdoc {
    int32_t *snode_of; /* owned: tape index -> snode, or -1 */
    int32_t *res_of;   /* owned: tape index -> resource, or -1 (not a known subschema) */
};

/* Where a reserved snode comes from. */
struct csrc {
    uint32_t doc;  /* document */
    uint32_t node; /* tape index */
};

/* The compiler's state for one schema_compile call. */
struct compiler {
    struct schema *s;                  /* being built */
    const struct schema_registry *reg; /* borrowed; may be NULL */
    unsigned flags;                    /* SCHEMA_* */
    struct schema_error *err;          /* filled on failure */
    struct cres *res;                  /* owned resources */
    uint32_t res_count, res_cap;
    struct canchor *anchors;           /* owned anchors */
    uint32_t anchor_count, anchor_cap;
    struct cdoc cdocs[SCHEMA_MAX_DOCUMENTS]; /* per document */
    struct csrc *srcs;                 /* owned: snode -> tape position */
    uint32_t node_cap, src_cap, prop_cap, pat_cap, sub_cap, val_cap, dyn_cap, regex_cap;
    uint32_t entries;                  /* side-table entries so far (SCHEMA_MAX_ENTRIES) */
    struct buf tmp;                    /* scratch for URIs */
    struct buf tmp2;                   /* scratch for fragments */
};

/* Grows *p (elements of size elem, capacity *cap) to hold at least need. */
static void *grow(void *p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap) {
        return p;
    }
    uint32_t n = *cap ? *cap : 16;
    while (n < need) {
        n *= 2;
    }
    *cap = n;
    return xrealloc(p, (size_t)n * elem);
}

static void pointer_of(const struct jdoc *d, uint32_t target, char *out, size_t cap);

/* Fills *c->err and returns rc. node is a tape index of doc (for the pointer) or -1. */
static int fail(struct compiler *c, int rc, const char *kw, int32_t doc, int64_t node,
                const char *msg)
{
    struct schema_error *e = c->err;
    e->keyword = kw;
    e->pointer[0] = '\0';
    if (doc >= 0 && node >= 0) {
        pointer_of(&c->s->docs[doc].doc, (uint32_t)node, e->pointer, sizeof e->pointer);
    }
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    return ERR(rc);
}

/* Appends the JSON Pointer token of a key to out (escaping '~' and '/'). */
static void add_token(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = strlen(out);
    for (size_t i = 0; i < len && n + 3 < cap; i++) {
        if (s[i] == '~' || s[i] == '/') {
            out[n++] = '~';
            out[n++] = s[i] == '~' ? '0' : '1';
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
}

/* Appends "/" and the token of child m of container at (its key, or its index). */
static void add_step(const struct jdoc *d, uint32_t at, uint32_t k, uint32_t m, char *out,
                     size_t cap)
{
    size_t len = strlen(out);
    if (len + 2 < cap) {
        out[len] = '/';
        out[len + 1] = '\0';
    }
    if (d->nodes[at].kind == JDOC_OBJECT) {
        add_token(out, cap, d->nodes[k].str, d->nodes[k].count);
    } else {
        snprintf(out + strlen(out), cap - strlen(out), "%u", m);
    }
}

/* The JSON Pointer of tape index target (a value, or an object member's name: then the
 * member's pointer), found by descending from the root (errors only). */
static void pointer_of(const struct jdoc *d, uint32_t target, char *out, size_t cap)
{
    uint32_t at = 0;
    out[0] = '\0';
    while (at != target) {
        const struct jdoc_node *n = &d->nodes[at];
        bool is_obj = n->kind == JDOC_OBJECT;
        bool found = false;
        uint32_t k = at + 1;
        for (uint32_t m = 0; m < n->count && !found; m++) {
            uint32_t v = is_obj ? k + 1 : k;
            if ((is_obj && k == target) || (target >= v && target < d->nodes[v].next)) {
                add_step(d, at, k, m, out, cap);
                found = true;
                at = k == target ? target : v;
            }
            k = d->nodes[v].next;
        }
        if (!found) {
            return;
        }
    }
}

/* ---------------------------------------------------------------- registry */

struct schema_registry *schema_registry_new(void)
{
    return xcalloc(1, sizeof(struct schema_registry));
}

void schema_registry_free(struct schema_registry *reg)
{
    if (!reg) {
        return;
    }
    for (uint32_t i = 0; i < reg->count; i++) {
        free(reg->docs[i].uri);
        free(reg->docs[i].text);
    }
    free(reg);
}

static void set_error(struct schema_error *err, const char *msg)
{
    err->keyword = "";
    err->pointer[0] = '\0';
    snprintf(err->msg, sizeof err->msg, "%s", msg);
}

static const struct regdoc *registry_find(const struct schema_registry *reg, const char *uri)
{
    for (uint32_t i = 0; reg && i < reg->count; i++) {
        if (strcmp(reg->docs[i].uri, uri) == 0) {
            return &reg->docs[i];
        }
    }
    return NULL;
}

int schema_registry_add(struct schema_registry *reg, const char *uri, const char *text,
                        size_t len, struct schema_error *err)
{
    if (len > SCHEMA_MAX_TEXT_BYTES || reg->count >= SCHEMA_MAX_REGISTERED ||
        strlen(uri) > SCHEMA_MAX_URI_BYTES) {
        set_error(err, "registry limit exceeded (SCHEMA_MAX_TEXT_BYTES, _REGISTERED or _URI_BYTES)");
        return ERR(ERR_TOOBIG);
    }
    if (!schema_uri_is_absolute(uri) || strchr(uri, '#')) {
        set_error(err, "a registered URI must be absolute, without a fragment");
        return ERR(ERR_INVALID);
    }
    if (registry_find(reg, uri)) {
        set_error(err, "URI already registered");
        return ERR(ERR_EXISTS);
    }
    struct jsonv_error je;
    if (jsonv_validate(text, len, SCHEMA_MAX_DEPTH, &je) < 0) {
        set_error(err, je.msg);
        return ERR(ERR_INVALID);
    }
    struct regdoc *d = &reg->docs[reg->count++];
    d->uri = xstrndup(uri, strlen(uri));
    d->text = xstrndup(text, len);
    d->len = len;
    return 0;
}

/* ---------------------------------------------------------------- indexing */

static int32_t find_res(const struct compiler *c, const char *uri)
{
    for (uint32_t i = 0; i < c->res_count; i++) {
        if (strcmp(c->res[i].uri, uri) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

static int32_t add_res(struct compiler *c, const char *uri, uint32_t doc, uint32_t node)
{
    int32_t have = find_res(c, uri);
    if (have >= 0) {
        return have;
    }
    c->res = grow(c->res, &c->res_cap, c->res_count + 1, sizeof(*c->res));
    c->res[c->res_count] = (struct cres){xstrndup(uri, strlen(uri)), doc, node};
    return (int32_t)c->res_count++;
}

static void add_anchor(struct compiler *c, int32_t res, const struct jdoc_node *name,
                       uint32_t node, bool is_dynamic)
{
    c->anchors = grow(c->anchors, &c->anchor_cap, c->anchor_count + 1, sizeof(*c->anchors));
    c->anchors[c->anchor_count++] = (struct canchor){res, name->str, name->count, node,
                                                     is_dynamic};
}

static int index_schema(struct compiler *c, uint32_t doc, uint32_t idx, int32_t res);

/* Keywords whose value is a schema, an array of schemas, or an object of schemas. */
static const char *const SCHEMA_ONE[] = {"items", "contains", "additionalProperties",
    "propertyNames", "if", "then", "else", "not", "unevaluatedItems", "unevaluatedProperties"};
static const char *const SCHEMA_ARRAY[] = {"prefixItems", "allOf", "anyOf", "oneOf"};
static const char *const SCHEMA_MAP[] = {"$defs", "properties", "patternProperties",
    "dependentSchemas"};

static bool name_in(const struct jdoc_node *key, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strlen(names[i]) == key->count && memcmp(names[i], key->str, key->count) == 0) {
            return true;
        }
    }
    return false;
}

/* Indexes the children of the subschema-bearing member (key k, value v). */
static int index_member(struct compiler *c, uint32_t doc, uint32_t k, uint32_t v, int32_t res)
{
    const struct jdoc *d = &c->s->docs[doc].doc;
    const struct jdoc_node *key = &d->nodes[k];
    bool one = name_in(key, SCHEMA_ONE, sizeof SCHEMA_ONE / sizeof *SCHEMA_ONE);
    bool arr = name_in(key, SCHEMA_ARRAY, sizeof SCHEMA_ARRAY / sizeof *SCHEMA_ARRAY);
    bool map = name_in(key, SCHEMA_MAP, sizeof SCHEMA_MAP / sizeof *SCHEMA_MAP);
    if (one) {
        return index_schema(c, doc, v, res);
    }
    if ((arr && d->nodes[v].kind == JDOC_ARRAY) || (map && d->nodes[v].kind == JDOC_OBJECT)) {
        uint32_t at = v + 1;
        for (uint32_t i = 0; i < d->nodes[v].count; i++) {
            at += map; /* skip the key */
            int rc = index_schema(c, doc, at, res);
            if (rc < 0) {
                return rc;
            }
            at = d->nodes[at].next;
        }
    }
    return 0;
}

/* Applies `$id` of object idx: its resource (a new one) or res unchanged. */
static int index_id(struct compiler *c, uint32_t doc, uint32_t idx, int32_t *res)
{
    const struct jdoc *d = &c->s->docs[doc].doc;
    int64_t id = jdoc_member(d, idx, "$id", 3);
    if (id < 0 || d->nodes[id].kind != JDOC_STRING) {
        return 0;
    }
    const struct jdoc_node *v = &d->nodes[id];
    if (v->count > SCHEMA_MAX_URI_BYTES) {
        return fail(c, ERR_TOOBIG, "$id", (int32_t)doc, id, "$id longer than SCHEMA_MAX_URI_BYTES");
    }
    schema_uri_resolve(c->res[*res].uri, v->str, v->count, &c->tmp);
    char *hash = memchr(c->tmp.ptr, '#', c->tmp.len);
    if (hash && hash[1] != '\0') {
        return fail(c, ERR_INVALID, "$id", (int32_t)doc, id, "$id must not have a fragment");
    }
    if (hash) {
        *hash = '\0';
    }
    *res = add_res(c, c->tmp.ptr, doc, idx);
    return 0;
}

static int index_schema(struct compiler *c, uint32_t doc, uint32_t idx, int32_t res)
{
    const struct jdoc *d = &c->s->docs[doc].doc;
    if (d->nodes[idx].kind != JDOC_OBJECT) {
        c->cdocs[doc].res_of[idx] = res;
        return 0;
    }
    int rc = index_id(c, doc, idx, &res);
    if (rc < 0) {
        return rc;
    }
    c->cdocs[doc].res_of[idx] = res;
    uint32_t k = idx + 1;
    for (uint32_t m = 0; m < d->nodes[idx].count; m++, k = d->nodes[k + 1].next) {
        const struct jdoc_node *key = &d->nodes[k];
        const struct jdoc_node *val = &d->nodes[k + 1];
        bool is_anchor = key->count == 7 && memcmp(key->str, "$anchor", 7) == 0;
        bool is_dyn = key->count == 14 && memcmp(key->str, "$dynamicAnchor", 14) == 0;
        if ((is_anchor || is_dyn) && val->kind == JDOC_STRING) {
            add_anchor(c, res, val, idx, is_dyn);
        }
        rc = index_member(c, doc, k, k + 1, res);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Adds a document (text copied) with retrieval URI uri, parses and indexes it. */
static int add_doc(struct compiler *c, const char *uri, const char *text, size_t len,
                   uint32_t *out_doc)
{
    struct schema *s = c->s;
    if (len > SCHEMA_MAX_TEXT_BYTES) {
        return fail(c, ERR_TOOBIG, "", -1, -1, "schema text over SCHEMA_MAX_TEXT_BYTES");
    }
    if (s->doc_count >= SCHEMA_MAX_DOCUMENTS) {
        return fail(c, ERR_TOOBIG, "$ref", -1, -1, "more than SCHEMA_MAX_DOCUMENTS documents");
    }
    uint32_t doc = s->doc_count++;
    struct sdoc *sd = &s->docs[doc];
    sd->text = xstrndup(text, len);
    sd->len = len;
    sd->uri = xstrndup(uri, strlen(uri));
    jdoc_init(&sd->doc);
    struct jsonv_error je;
    int rc = jdoc_parse(&sd->doc, sd->text, len, SCHEMA_MAX_DEPTH, &je);
    if (rc < 0) {
        return fail(c, rc, "", -1, -1, je.msg);
    }
    uint32_t n = sd->doc.count;
    c->cdocs[doc].snode_of = xmalloc((size_t)n * sizeof(int32_t));
    c->cdocs[doc].res_of = xmalloc((size_t)n * sizeof(int32_t));
    memset(c->cdocs[doc].snode_of, 0xff, (size_t)n * sizeof(int32_t));
    memset(c->cdocs[doc].res_of, 0xff, (size_t)n * sizeof(int32_t));
    *out_doc = doc;
    return index_schema(c, doc, 0, add_res(c, uri, doc, 0));
}

/* ---------------------------------------------------------------- references */

/* The snode of tape position (doc, idx), reserved and queued if new; -1 on a limit (error
 * set). res is the resource to use when the position was not indexed. */
static int32_t node_for(struct compiler *c, uint32_t doc, uint32_t idx, int32_t res)
{
    struct cdoc *cd = &c->cdocs[doc];
    if (cd->snode_of[idx] >= 0) {
        return cd->snode_of[idx];
    }
    struct schema *s = c->s;
    if (s->node_count >= SCHEMA_MAX_SUBSCHEMAS) {
        fail(c, ERR_TOOBIG, "", (int32_t)doc, idx, "more than SCHEMA_MAX_SUBSCHEMAS subschemas");
        return -1;
    }
    if (cd->res_of[idx] < 0) {
        cd->res_of[idx] = res;
    }
    s->nodes = grow(s->nodes, &c->node_cap, s->node_count + 1, sizeof(*s->nodes));
    c->srcs = grow(c->srcs, &c->src_cap, s->node_count + 1, sizeof(*c->srcs));
    int32_t id = (int32_t)s->node_count++;
    c->srcs[id] = (struct csrc){doc, idx};
    cd->snode_of[idx] = id;
    return id;
}

/* Walks JSON Pointer ptr[0..len) (already percent-decoded) from (doc, *idx), updating *idx
 * and *res (resources passed through). False when it leads nowhere. */
static bool walk_pointer(struct compiler *c, uint32_t doc, const char *ptr, size_t len,
                         uint32_t *idx, int32_t *res)
{
    const struct jdoc *d = &c->s->docs[doc].doc;
    struct buf tok;
    buf_init(&tok);
    bool ok = true;
    for (size_t i = 0; ok && i < len;) {
        size_t j = i + 1;
        buf_reset(&tok);
        for (; j < len && ptr[j] != '/'; j++) {
            bool esc = ptr[j] == '~' && j + 1 < len && (ptr[j + 1] == '0' || ptr[j + 1] == '1');
            buf_addc(&tok, esc ? (ptr[j + 1] == '0' ? '~' : '/') : ptr[j]);
            j += esc;
        }
        i = j;
        const struct jdoc_node *n = &d->nodes[*idx];
        int64_t next = -1;
        if (n->kind == JDOC_OBJECT) {
            next = jdoc_member(d, *idx, tok.ptr ? tok.ptr : "", tok.len);
        } else if (n->kind == JDOC_ARRAY && tok.len && tok.len < 10) {
            uint32_t want = (uint32_t)strtoul(tok.ptr, NULL, 10);
            uint32_t at = *idx + 1;
            for (uint32_t k = 0; k < n->count && next < 0; k++, at = d->nodes[at].next) {
                next = k == want ? (int64_t)at : -1;
            }
        }
        ok = next >= 0;
        if (ok) {
            *idx = (uint32_t)next;
            *res = c->cdocs[doc].res_of[*idx] >= 0 ? c->cdocs[doc].res_of[*idx] : *res;
        }
    }
    buf_fini(&tok);
    return ok;
}

/* The resource of absolute URI uri, loading a registered document if needed; -1 if none. */
static int32_t res_for_uri(struct compiler *c, const char *uri, int *rc)
{
    int32_t r = find_res(c, uri);
    const struct regdoc *rd = r < 0 ? registry_find(c->reg, uri) : NULL;
    if (rd) {
        uint32_t doc;
        *rc = add_doc(c, rd->uri, rd->text, rd->len, &doc);
        r = *rc < 0 ? -1 : find_res(c, uri);
    }
    return r;
}

/* Outcome of resolving a reference. */
struct target {
    uint32_t doc, node; /* where it points */
    int32_t res;        /* its resource */
    bool is_dynamic;    /* the fragment named a $dynamicAnchor */
};

/* Resolves reference value (doc, v) (a string) of keyword kw in resource res. */
static int resolve_ref(struct compiler *c, uint32_t doc, uint32_t v, int32_t res,
                       const char *kw, struct target *t)
{
    const struct jdoc_node *ref = &c->s->docs[doc].doc.nodes[v];
    if (ref->kind != JDOC_STRING || ref->count > SCHEMA_MAX_URI_BYTES) {
        return fail(c, ERR_INVALID, kw, (int32_t)doc, v, "must be a URI reference string");
    }
    schema_uri_resolve(c->res[res].uri, ref->str, ref->count, &c->tmp);
    char *hash = memchr(c->tmp.ptr, '#', c->tmp.len);
    const char *frag = hash ? hash + 1 : "";
    size_t frag_len = hash ? c->tmp.len - (size_t)(hash + 1 - c->tmp.ptr) : 0;
    if (!schema_uri_unescape(frag, frag_len, &c->tmp2)) {
        return fail(c, ERR_INVALID, kw, (int32_t)doc, v, "malformed percent-escape");
    }
    if (hash) {
        *hash = '\0';
    }
    int rc = 0;
    int32_t r = res_for_uri(c, c->tmp.ptr, &rc);
    if (r < 0) {
        return rc < 0 ? rc : fail(c, ERR_INVALID, kw, (int32_t)doc, v, "unresolvable reference");
    }
    *t = (struct target){c->res[r].doc, c->res[r].node, r, false};
    const char *f = c->tmp2.ptr ? c->tmp2.ptr : "";
    if (c->tmp2.len == 0) {
        return 0;
    }
    if (f[0] == '/') {
        if (!walk_pointer(c, t->doc, f, c->tmp2.len, &t->node, &t->res)) {
            return fail(c, ERR_INVALID, kw, (int32_t)doc, v, "reference pointer leads nowhere");
        }
        return 0;
    }
    for (uint32_t i = 0; i < c->anchor_count; i++) {
        const struct canchor *a = &c->anchors[i];
        if (a->res == r && a->len == c->tmp2.len && memcmp(a->name, f, a->len) == 0) {
            t->node = a->node;
            t->is_dynamic = a->is_dynamic;
            return 0;
        }
    }
    return fail(c, ERR_INVALID, kw, (int32_t)doc, v, "no such anchor");
}

/* ---------------------------------------------------------------- side tables */

static int count_entries(struct compiler *c, uint32_t n, uint32_t doc, uint32_t v)
{
    c->entries += n;
    if (c->entries > SCHEMA_MAX_ENTRIES) {
        return fail(c, ERR_TOOBIG, "", (int32_t)doc, v, "more than SCHEMA_MAX_ENTRIES entries");
    }
    return 0;
}

static uint32_t add_prop(struct compiler *c, const struct jdoc_node *name, int32_t node)
{
    struct schema *s = c->s;
    s->props = grow(s->props, &c->prop_cap, s->prop_count + 1, sizeof(*s->props));
    s->props[s->prop_count] = (struct sprop){name->str, name->count, node, {0, 0}};
    return s->prop_count++;
}

static uint32_t add_sub(struct compiler *c, int32_t node)
{
    struct schema *s = c->s;
    s->subs = grow(s->subs, &c->sub_cap, s->sub_count + 1, sizeof(*s->subs));
    s->subs[s->sub_count] = node;
    return s->sub_count++;
}

/* Compiles pattern source (a decoded string node) into schema.regexes; its index in *out. */
static int add_regex(struct compiler *c, uint32_t doc, uint32_t v, const char *kw,
                     uint32_t *out)
{
    const struct jdoc_node *src = &c->s->docs[doc].doc.nodes[v];
    struct schema *s = c->s;
    if (src->kind != JDOC_STRING) {
        return fail(c, ERR_INVALID, kw, (int32_t)doc, v, "a pattern must be a string");
    }
    if (src->count > SCHEMA_MAX_PATTERN_BYTES || s->regex_count >= SCHEMA_MAX_PATTERNS) {
        return fail(c, ERR_TOOBIG, kw, (int32_t)doc, v,
                    "pattern over SCHEMA_MAX_PATTERN_BYTES or SCHEMA_MAX_PATTERNS");
    }
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = schema_regex_compile(src->str, src->count, &code, &at);
    if (!re) {
        char msg[SCHEMA_MAX_MESSAGE_BYTES];
        char why[96];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)why, sizeof why);
        snprintf(msg, sizeof msg, "invalid regex at %zu: %s", (size_t)at, why);
        return fail(c, ERR_INVALID, kw, (int32_t)doc, v, msg);
    }
    s->regexes = grow(s->regexes, &c->regex_cap, s->regex_count + 1, sizeof(*s->regexes));
    s->regexes[s->regex_count] = re;
    *out = s->regex_count++;
    return 0;
}

/* ---------------------------------------------------------------- keywords */

/* Everything a keyword handler needs: the node being filled and the keyword's value. */
struct kwctx {
    int32_t id;      /* snode being filled */
    uint32_t doc;    /* its document */
    uint32_t v;      /* tape index of the keyword's value */
    int32_t res;     /* its resource */
    const char *kw;  /* keyword name (static) */
};

typedef int kw_fn(struct compiler *c, const struct kwctx *k);

static struct snode *node_at(struct compiler *c, int32_t id)
{
    return &c->s->nodes[id];
}

static const struct jdoc_node *val_at(struct compiler *c, const struct kwctx *k)
{
    return &c->s->docs[k->doc].doc.nodes[k->v];
}

static int bad_value(struct compiler *c, const struct kwctx *k, const char *what)
{
    char msg[SCHEMA_MAX_MESSAGE_BYTES];
    snprintf(msg, sizeof msg, "%s must be %s", k->kw, what);
    return fail(c, ERR_INVALID, k->kw, (int32_t)k->doc, k->v, msg);
}

/* A subschema value: its snode in *out. */
static int sub_at(struct compiler *c, const struct kwctx *k, uint32_t v, int32_t *out)
{
    uint8_t kind = c->s->docs[k->doc].doc.nodes[v].kind;
    if (kind != JDOC_OBJECT && kind != JDOC_TRUE && kind != JDOC_FALSE) {
        return bad_value(c, k, "a schema (an object or a boolean)");
    }
    *out = node_for(c, k->doc, v, k->res);
    return *out < 0 ? ERR_TOOBIG : 0;
}

static int kw_sub(struct compiler *c, const struct kwctx *k)
{
    int32_t sub;
    int rc = sub_at(c, k, k->v, &sub);
    if (rc < 0) {
        return rc;
    }
    struct snode *n = node_at(c, k->id);
    static const struct {
        const char *kw;
        size_t off;
    } fields[] = {
        {"items", offsetof(struct snode, items)},
        {"contains", offsetof(struct snode, contains)},
        {"additionalProperties", offsetof(struct snode, addl_props)},
        {"propertyNames", offsetof(struct snode, prop_names)},
        {"if", offsetof(struct snode, if_s)},
        {"then", offsetof(struct snode, then_s)},
        {"else", offsetof(struct snode, else_s)},
        {"not", offsetof(struct snode, not_s)},
        {"unevaluatedItems", offsetof(struct snode, uneval_items)},
        {"unevaluatedProperties", offsetof(struct snode, uneval_props)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (strcmp(fields[i].kw, k->kw) == 0) {
            memcpy((char *)n + fields[i].off, &sub, sizeof sub);
        }
    }
    if (strncmp(k->kw, "unevaluated", 11) == 0) {
        c->s->has_uneval = true;
    }
    return 0;
}

/* allOf, anyOf, oneOf, prefixItems: an array of schemas into schema.subs. */
static int kw_sub_list(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc_node *a = val_at(c, k);
    bool is_prefix = strcmp(k->kw, "prefixItems") == 0;
    if (a->kind != JDOC_ARRAY || (!is_prefix && a->count == 0)) {
        return bad_value(c, k, "a non-empty array of schemas");
    }
    uint32_t count = a->count;
    int rc = count_entries(c, count, k->doc, k->v);
    struct srange r = {c->s->sub_count, count};
    uint32_t at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        int32_t sub;
        rc = sub_at(c, k, at, &sub);
        if (rc == 0) {
            add_sub(c, sub);
        }
        at = c->s->docs[k->doc].doc.nodes[at].next;
    }
    if (rc < 0) {
        return rc;
    }
    struct snode *n = node_at(c, k->id);
    *(k->kw[0] == 'p'   ? &n->prefix_items
      : k->kw[1] == 'l' ? &n->all_of
      : k->kw[0] == 'a' ? &n->any_of
                        : &n->one_of) = r;
    return 0;
}

/* properties, dependentSchemas: an object of schemas into schema.props. */
static int kw_sub_map(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    if (d->nodes[k->v].kind != JDOC_OBJECT) {
        return bad_value(c, k, "an object of schemas");
    }
    uint32_t count = d->nodes[k->v].count;
    int rc = count_entries(c, count, k->doc, k->v);
    int32_t *subs = xcalloc(count + 1, sizeof(*subs));
    uint32_t at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        rc = sub_at(c, k, at + 1, &subs[i]);
        at = d->nodes[at + 1].next;
    }
    struct srange r = {c->s->prop_count, count};
    at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        add_prop(c, &d->nodes[at], subs[i]);
        at = d->nodes[at + 1].next;
    }
    free(subs);
    if (rc < 0) {
        return rc;
    }
    struct snode *n = node_at(c, k->id);
    *(k->kw[0] == 'p' ? &n->props : &n->dep_schemas) = r;
    return 0;
}

static int kw_pattern_props(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    if (d->nodes[k->v].kind != JDOC_OBJECT) {
        return bad_value(c, k, "an object of schemas");
    }
    uint32_t count = d->nodes[k->v].count;
    int rc = count_entries(c, count, k->doc, k->v);
    struct schema *s = c->s;
    s->pats = grow(s->pats, &c->pat_cap, s->pat_count + count, sizeof(*s->pats));
    struct srange r = {s->pat_count, count};
    uint32_t at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        struct spat p;
        rc = add_regex(c, k->doc, at, k->kw, &p.re);
        if (rc == 0) {
            rc = sub_at(c, k, at + 1, &p.node);
        }
        s->pats[s->pat_count++] = p;
        at = d->nodes[at + 1].next;
    }
    if (rc == 0) {
        node_at(c, k->id)->pattern_props = r;
    }
    return rc;
}

static int kw_pattern(struct compiler *c, const struct kwctx *k)
{
    uint32_t re;
    int rc = add_regex(c, k->doc, k->v, k->kw, &re);
    if (rc < 0) {
        return rc;
    }
    node_at(c, k->id)->pattern = re;
    node_at(c, k->id)->has |= 1u << KW_PATTERN;
    return 0;
}

static int type_bit(const struct jdoc_node *t)
{
    static const char *const names[] = {"null", "boolean", "object", "array", "number",
                                        "string", "integer"};
    for (int i = 0; t->kind == JDOC_STRING && i < 7; i++) {
        if (strlen(names[i]) == t->count && memcmp(names[i], t->str, t->count) == 0) {
            return 1 << i;
        }
    }
    return 0;
}

static int kw_type(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    const struct jdoc_node *t = &d->nodes[k->v];
    int mask = type_bit(t);
    if (t->kind == JDOC_ARRAY) {
        uint32_t at = k->v + 1;
        for (uint32_t i = 0; i < t->count; i++, at = d->nodes[at].next) {
            int bit = type_bit(&d->nodes[at]);
            if (!bit) {
                return bad_value(c, k, "a type name or an array of them");
            }
            mask |= bit;
        }
    } else if (!mask) {
        return bad_value(c, k, "a type name or an array of them");
    }
    node_at(c, k->id)->types = (uint8_t)mask;
    node_at(c, k->id)->has |= 1u << KW_TYPE;
    return 0;
}

static int kw_enum(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    const struct jdoc_node *a = &d->nodes[k->v];
    if (a->kind != JDOC_ARRAY) {
        return bad_value(c, k, "an array");
    }
    int rc = count_entries(c, a->count, k->doc, k->v);
    if (rc < 0) {
        return rc;
    }
    struct schema *s = c->s;
    s->vals = grow(s->vals, &c->val_cap, s->val_count + a->count, sizeof(*s->vals));
    struct srange r = {s->val_count, a->count};
    uint32_t at = k->v + 1;
    for (uint32_t i = 0; i < a->count; i++, at = d->nodes[at].next) {
        s->vals[s->val_count++] = (struct sval){d, at};
    }
    node_at(c, k->id)->enum_vals = r;
    node_at(c, k->id)->has |= 1u << KW_ENUM;
    return 0;
}

static int kw_const(struct compiler *c, const struct kwctx *k)
{
    node_at(c, k->id)->const_val = (struct sval){&c->s->docs[k->doc].doc, k->v};
    node_at(c, k->id)->has |= 1u << KW_CONST;
    return 0;
}

/* multipleOf, (exclusive)maximum/minimum: a number. */
static int kw_number(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc_node *v = val_at(c, k);
    if (v->kind != JDOC_NUMBER) {
        return bad_value(c, k, "a number");
    }
    struct snode *n = node_at(c, k->id);
    if (strcmp(k->kw, "multipleOf") == 0) {
        if (v->num.neg || v->num.ndigits == 0) {
            return bad_value(c, k, "a number greater than 0");
        }
        n->multiple_of = v->num;
        n->has |= 1u << KW_MULTIPLE_OF;
    } else if (strcmp(k->kw, "maximum") == 0) {
        n->maximum = v->num;
        n->has |= 1u << KW_MAXIMUM;
    } else if (strcmp(k->kw, "exclusiveMaximum") == 0) {
        n->xmaximum = v->num;
        n->has |= 1u << KW_XMAXIMUM;
    } else if (strcmp(k->kw, "minimum") == 0) {
        n->minimum = v->num;
        n->has |= 1u << KW_MINIMUM;
    } else {
        n->xminimum = v->num;
        n->has |= 1u << KW_XMINIMUM;
    }
    return 0;
}

/* The count keywords: a non-negative integer (2.0 included). */
static int kw_count(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc_node *v = val_at(c, k);
    if (v->kind != JDOC_NUMBER || v->num.neg || !jdoc_num_is_integer(&v->num)) {
        return bad_value(c, k, "a non-negative integer");
    }
    uint64_t x = jdoc_num_u64(&v->num);
    struct snode *n = node_at(c, k->id);
    static const struct {
        const char *kw;
        size_t off;
        int bit;
    } fields[] = {
        {"maxLength", offsetof(struct snode, max_length), KW_MAX_LENGTH},
        {"minLength", offsetof(struct snode, min_length), KW_MIN_LENGTH},
        {"maxItems", offsetof(struct snode, max_items), KW_MAX_ITEMS},
        {"minItems", offsetof(struct snode, min_items), KW_MIN_ITEMS},
        {"maxContains", offsetof(struct snode, max_contains), KW_MAX_CONTAINS},
        {"minContains", offsetof(struct snode, min_contains), KW_MIN_CONTAINS},
        {"maxProperties", offsetof(struct snode, max_props), KW_MAX_PROPS},
        {"minProperties", offsetof(struct snode, min_props), KW_MIN_PROPS},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (strcmp(fields[i].kw, k->kw) == 0) {
            memcpy((char *)n + fields[i].off, &x, sizeof x);
            n->has |= 1u << fields[i].bit;
        }
    }
    return 0;
}

static int kw_unique(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc_node *v = val_at(c, k);
    if (v->kind != JDOC_TRUE && v->kind != JDOC_FALSE) {
        return bad_value(c, k, "a boolean");
    }
    node_at(c, k->id)->unique_items = v->kind == JDOC_TRUE;
    return 0;
}

/* An array of strings at v into schema.props (names only); its range in *out. */
static int name_list(struct compiler *c, const struct kwctx *k, uint32_t v, struct srange *out)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    if (d->nodes[v].kind != JDOC_ARRAY) {
        return bad_value(c, k, "an array of strings");
    }
    int rc = count_entries(c, d->nodes[v].count, k->doc, v);
    *out = (struct srange){c->s->prop_count, d->nodes[v].count};
    uint32_t at = v + 1;
    for (uint32_t i = 0; rc == 0 && i < out->count; i++, at = d->nodes[at].next) {
        if (d->nodes[at].kind != JDOC_STRING) {
            return bad_value(c, k, "an array of strings");
        }
        add_prop(c, &d->nodes[at], -1);
    }
    return rc;
}

static int kw_required(struct compiler *c, const struct kwctx *k)
{
    struct srange r;
    int rc = name_list(c, k, k->v, &r);
    if (rc == 0) {
        node_at(c, k->id)->required = r;
        node_at(c, k->id)->has |= 1u << KW_REQUIRED;
    }
    return rc;
}

static int kw_dep_required(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc *d = &c->s->docs[k->doc].doc;
    if (d->nodes[k->v].kind != JDOC_OBJECT) {
        return bad_value(c, k, "an object of arrays of strings");
    }
    uint32_t count = d->nodes[k->v].count;
    int rc = count_entries(c, count, k->doc, k->v);
    struct srange *lists = xcalloc(count + 1, sizeof(*lists));
    uint32_t at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++, at = d->nodes[at + 1].next) {
        rc = name_list(c, k, at + 1, &lists[i]);
    }
    struct srange r = {c->s->prop_count, count};
    at = k->v + 1;
    for (uint32_t i = 0; rc == 0 && i < count; i++, at = d->nodes[at + 1].next) {
        uint32_t p = add_prop(c, &d->nodes[at], -1);
        c->s->props[p].names = lists[i];
    }
    free(lists);
    if (rc == 0) {
        node_at(c, k->id)->dep_required = r;
        node_at(c, k->id)->has |= 1u << KW_DEP_REQUIRED;
    }
    return rc;
}

static int kw_format(struct compiler *c, const struct kwctx *k)
{
    const struct jdoc_node *v = val_at(c, k);
    if (v->kind != JDOC_STRING) {
        return bad_value(c, k, "a string");
    }
    int f = schema_format_lookup(v->str, v->count);
    if ((c->flags & SCHEMA_FORMAT_ASSERT) && f != FMT_NONE) {
        node_at(c, k->id)->format = (uint8_t)f;
        node_at(c, k->id)->has |= 1u << KW_FORMAT;
    }
    return 0;
}

static int kw_ref(struct compiler *c, const struct kwctx *k)
{
    struct target t;
    int rc = resolve_ref(c, k->doc, k->v, k->res, k->kw, &t);
    if (rc < 0) {
        return rc;
    }
    int32_t target = node_for(c, t.doc, t.node, t.res);
    if (target < 0) {
        return ERR_TOOBIG;
    }
    if (k->kw[1] == 'r') {
        node_at(c, k->id)->ref = target;
        return 0;
    }
    int32_t name = -1;
    if (t.is_dynamic) {
        const struct jdoc_node *ref = val_at(c, k);
        const char *hash = memchr(ref->str, '#', ref->count);
        struct jdoc_node nm = {.kind = JDOC_STRING};
        nm.str = hash + 1;
        nm.count = (uint32_t)(ref->count - (size_t)(hash + 1 - ref->str));
        name = (int32_t)add_prop(c, &nm, -1);
    }
    node_at(c, k->id)->dynref = target;
    node_at(c, k->id)->dynref_name = name;
    return 0;
}

/* The keyword table: what each known keyword compiles with. Others are annotations. */
static const struct {
    const char *name;
    kw_fn *fn;
} KEYWORDS[] = {
    {"type", kw_type},
    {"enum", kw_enum},
    {"const", kw_const},
    {"multipleOf", kw_number},
    {"maximum", kw_number},
    {"exclusiveMaximum", kw_number},
    {"minimum", kw_number},
    {"exclusiveMinimum", kw_number},
    {"maxLength", kw_count},
    {"minLength", kw_count},
    {"maxItems", kw_count},
    {"minItems", kw_count},
    {"maxContains", kw_count},
    {"minContains", kw_count},
    {"maxProperties", kw_count},
    {"minProperties", kw_count},
    {"uniqueItems", kw_unique},
    {"pattern", kw_pattern},
    {"required", kw_required},
    {"dependentRequired", kw_dep_required},
    {"format", kw_format},
    {"$ref", kw_ref},
    {"$dynamicRef", kw_ref},
    {"allOf", kw_sub_list},
    {"anyOf", kw_sub_list},
    {"oneOf", kw_sub_list},
    {"prefixItems", kw_sub_list},
    {"properties", kw_sub_map},
    {"dependentSchemas", kw_sub_map},
    {"patternProperties", kw_pattern_props},
    {"items", kw_sub},
    {"contains", kw_sub},
    {"additionalProperties", kw_sub},
    {"propertyNames", kw_sub},
    {"if", kw_sub},
    {"then", kw_sub},
    {"else", kw_sub},
    {"not", kw_sub},
    {"unevaluatedItems", kw_sub},
    {"unevaluatedProperties", kw_sub},
};

static void clear_node(struct snode *n, int32_t res)
{
    memset(n, 0, sizeof(*n));
    n->resource = res;
    n->ref = n->dynref = n->dynref_name = -1;
    n->items = n->contains = n->addl_props = n->prop_names = -1;
    n->if_s = n->then_s = n->else_s = n->not_s = -1;
    n->uneval_items = n->uneval_props = -1;
    n->max_length = n->max_items = n->max_contains = n->max_props = UINT64_MAX;
    n->min_contains = 1;
}

/* Compiles the keywords of reserved node id. */
static int fill_node(struct compiler *c, int32_t id)
{
    struct csrc src = c->srcs[id];
    const struct jdoc *d = &c->s->docs[src.doc].doc;
    const struct jdoc_node *o = &d->nodes[src.node];
    int32_t res = c->cdocs[src.doc].res_of[src.node];
    clear_node(node_at(c, id), res);
    if (o->kind == JDOC_TRUE || o->kind == JDOC_FALSE) {
        node_at(c, id)->kind = o->kind == JDOC_TRUE ? SNODE_TRUE : SNODE_FALSE;
        return 0;
    }
    if (o->kind != JDOC_OBJECT) {
        return fail(c, ERR_INVALID, "", (int32_t)src.doc, src.node,
                    "a schema must be an object or a boolean");
    }
    uint32_t k = src.node + 1;
    for (uint32_t m = 0; m < o->count; m++, k = d->nodes[k + 1].next) {
        const struct jdoc_node *key = &d->nodes[k];
        for (size_t i = 0; i < sizeof KEYWORDS / sizeof *KEYWORDS; i++) {
            const char *name = KEYWORDS[i].name;
            if (strlen(name) != key->count || memcmp(name, key->str, key->count) != 0) {
                continue;
            }
            struct kwctx kc = {id, src.doc, k + 1, res, name};
            int rc = KEYWORDS[i].fn(c, &kc);
            if (rc < 0) {
                return rc;
            }
            break;
        }
    }
    return 0;
}

/* Reserves the nodes of every $dynamicAnchor (a $dynamicRef may land on any of them at run
 * time) and records them in schema.dyns. */
static int add_dynamic_anchors(struct compiler *c, uint32_t *done)
{
    struct schema *s = c->s;
    for (; *done < c->anchor_count; (*done)++) {
        const struct canchor *a = &c->anchors[*done];
        if (!a->is_dynamic) {
            continue;
        }
        int32_t node = node_for(c, c->res[a->res].doc, a->node, a->res);
        if (node < 0) {
            return ERR_TOOBIG;
        }
        s->dyns = grow(s->dyns, &c->dyn_cap, s->dyn_count + 1, sizeof(*s->dyns));
        s->dyns[s->dyn_count++] = (struct sdyn){a->res, a->name, a->len, node};
    }
    return 0;
}

static int compile_all(struct compiler *c, const char *text, size_t len, const char *base)
{
    uint32_t doc;
    int rc = add_doc(c, base, text, len, &doc);
    if (rc < 0) {
        return rc;
    }
    c->s->root = node_for(c, 0, 0, 0);
    uint32_t anchors_done = 0;
    for (uint32_t id = 0; rc == 0 && id < c->s->node_count; id++) {
        rc = fill_node(c, (int32_t)id);
        if (rc == 0 && id + 1 == c->s->node_count) {
            rc = add_dynamic_anchors(c, &anchors_done);
        }
    }
    return rc;
}

static void compiler_fini(struct compiler *c)
{
    for (uint32_t i = 0; i < c->res_count; i++) {
        free(c->res[i].uri);
    }
    for (uint32_t i = 0; i < SCHEMA_MAX_DOCUMENTS; i++) {
        free(c->cdocs[i].snode_of);
        free(c->cdocs[i].res_of);
    }
    free(c->res);
    free(c->anchors);
    free(c->srcs);
    buf_fini(&c->tmp);
    buf_fini(&c->tmp2);
}

int schema_compile_ex(const char *text, size_t len, const struct schema_options *opt,
                      struct schema **out, struct schema_error *err)
{
    static const struct schema_options defaults;
    opt = opt ? opt : &defaults;
    *out = NULL;
    set_error(err, "");
    struct compiler *c = xcalloc(1, sizeof(*c));
    c->reg = opt->registry;
    c->flags = opt->flags;
    c->err = err;
    c->s = xcalloc(1, sizeof(*c->s));
    c->s->docs = xcalloc(SCHEMA_MAX_DOCUMENTS, sizeof(*c->s->docs));
    buf_init(&c->tmp);
    buf_init(&c->tmp2);
    c->s->mctx = pcre2_match_context_create(NULL);
    pcre2_set_match_limit(c->s->mctx, SCHEMA_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(c->s->mctx, SCHEMA_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(c->s->mctx, SCHEMA_REGEX_HEAP_KIB);
    int rc = compile_all(c, text, len, opt->base_uri ? opt->base_uri : "");
    struct schema *s = c->s;
    compiler_fini(c);
    free(c);
    if (rc < 0) {
        schema_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int schema_compile(const char *text, size_t len, struct schema **out, struct schema_error *err)
{
    struct schema_options opt = {.flags = SCHEMA_FORMAT_ASSERT};
    return schema_compile_ex(text, len, &opt, out, err);
}

void schema_free(struct schema *s)
{
    if (!s) {
        return;
    }
    for (uint32_t i = 0; i < s->doc_count; i++) {
        free(s->docs[i].text);
        free(s->docs[i].uri);
        jdoc_fini(&s->docs[i].doc);
    }
    for (uint32_t i = 0; i < s->regex_count; i++) {
        pcre2_code_free(s->regexes[i]);
    }
    pcre2_match_context_free(s->mctx);
    free(s->docs);
    free(s->nodes);
    free(s->props);
    free(s->pats);
    free(s->subs);
    free(s->vals);
    free(s->dyns);
    free(s->regexes);
    free(s);
}

int schema_pointer_dotted(const char *ptr, size_t len, struct buf *out)
{
    if (len && ptr[0] != '/') {
        return ERR(ERR_INVALID);
    }
    for (size_t i = 0; i < len; i++) {
        char ch = ptr[i];
        if (ch == '/') {
            if (i) {
                buf_addc(out, '.');
            }
        } else if (ch == '~') {
            if (i + 1 >= len || (ptr[i + 1] != '0' && ptr[i + 1] != '1')) {
                return ERR(ERR_INVALID);
            }
            buf_addc(out, ptr[++i] == '0' ? '~' : '/');
        } else {
            buf_addc(out, ch);
        }
    }
    buf_reserve(out, 0);
    return 0;
}
