#include "query/filter.h"

#include <stdlib.h>
#include <string.h>

#include "util/errors.h"

static void *own(struct filter *f, size_t n)
{
    if (f->nowned == f->owned_cap) {
        f->owned_cap = f->owned_cap ? f->owned_cap * 2 : 16;
        f->owned = xrealloc(f->owned, f->owned_cap * sizeof(*f->owned));
    }
    void *p = xcalloc(1, n ? n : 1);
    f->owned[f->nowned++] = p;
    return p;
}

void filter_init(struct filter *f)
{
    memset(f, 0, sizeof(*f));
}

void filter_fini(struct filter *f)
{
    for (size_t i = 0; i < f->nowned; i++) {
        free(f->owned[i]);
    }
    free(f->owned);
    memset(f, 0, sizeof(*f));
}

int pattern_parse(struct slice text, bool allow_suffix, struct pattern *out)
{
    if (text.len == 0) {
        return ERR_INVALID;
    }
    if (text.len == 1 && text.ptr[0] == '*') {
        *out = (struct pattern){PAT_ANY, {"", 0}};
        return 0;
    }
    size_t from = 0, to = text.len;
    enum pattern_kind kind = PAT_EXACT;
    if (text.ptr[to - 1] == '*') {
        kind = PAT_PREFIX;
        to--;
    } else if (text.ptr[0] == '*' && allow_suffix) {
        kind = PAT_SUFFIX;
        from = 1;
    }
    if (to == from || memchr(text.ptr + from, '*', to - from)) {
        return ERR_INVALID;
    }
    *out = (struct pattern){kind, {text.ptr + from, to - from}};
    return 0;
}

/* Items are kept in arrays of FILTER_MAX_ITEMS, atoms in arrays of FILTER_MAX_ATOMS, so
 * adding never moves what was handed out. */
struct filter_item *filter_add_item(struct filter *f)
{
    if (f->nitems == FILTER_MAX_ITEMS) {
        return NULL;
    }
    if (!f->items) {
        f->items = own(f, FILTER_MAX_ITEMS * sizeof(*f->items));
    }
    struct filter_item *it = &f->items[f->nitems++];
    memset(it, 0, sizeof(*it));
    return it;
}

int filter_add_atom(struct filter *f, struct filter_item *it, enum filter_field field,
                    const struct pattern *pats, size_t n)
{
    if (it->natoms == FILTER_MAX_ATOMS || n == 0 || n > FILTER_MAX_PATTERNS) {
        return ERR_TOOBIG;
    }
    if (!it->atoms) {
        it->atoms = own(f, FILTER_MAX_ATOMS * sizeof(*it->atoms));
    }
    struct filter_atom *a = &it->atoms[it->natoms++];
    a->field = field;
    a->npats = n;
    a->pats = own(f, n * sizeof(*a->pats));
    for (size_t i = 0; i < n; i++) {
        char *t = own(f, pats[i].text.len + 1);
        memcpy(t, pats[i].text.ptr, pats[i].text.len);
        a->pats[i] = (struct pattern){pats[i].kind, {t, pats[i].text.len}};
    }
    return 0;
}

static int copy_atoms(struct filter *f, struct filter_item *to, const struct filter_item *from)
{
    for (size_t i = 0; i < from->natoms; i++) {
        const struct filter_atom *a = &from->atoms[i];
        int rc = filter_add_atom(f, to, a->field, a->pats, a->npats);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

int filter_and(struct filter *f, const struct filter *g)
{
    if (g->nitems == 0) {
        return 0;
    }
    size_t nf = f->nitems ? f->nitems : 1;
    if (nf * g->nitems > FILTER_MAX_ITEMS) {
        return ERR_TOOBIG;
    }
    struct filter r;
    filter_init(&r);
    int rc = 0;
    for (size_t i = 0; i < nf && !rc; i++) {
        for (size_t j = 0; j < g->nitems && !rc; j++) {
            struct filter_item *it = filter_add_item(&r);
            if (f->nitems) {
                rc = copy_atoms(&r, it, &f->items[i]);
            }
            if (!rc) {
                rc = copy_atoms(&r, it, &g->items[j]);
            }
        }
    }
    if (rc) {
        filter_fini(&r);
        return rc;
    }
    r.has_time_from = f->has_time_from;
    r.has_time_to = f->has_time_to;
    r.time_from_us = f->time_from_us;
    r.time_to_us = f->time_to_us;
    filter_fini(f);
    *f = r;
    return 0;
}

int filter_or(struct filter *f, const struct filter *g)
{
    if (f->nitems + g->nitems > FILTER_MAX_ITEMS) {
        return ERR_TOOBIG;
    }
    for (size_t j = 0; j < g->nitems; j++) {
        int rc = copy_atoms(f, filter_add_item(f), &g->items[j]);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

struct slice filter_category(struct slice stream)
{
    for (size_t i = 0; i < stream.len; i++) {
        char c = stream.ptr[i];
        if (c == '-' || c == '_' || c == ':' || c == '/') {
            return (struct slice){stream.ptr, i};
        }
    }
    return stream;
}

static bool pattern_match(const struct pattern *p, struct slice v, bool present)
{
    switch (p->kind) {
    case PAT_NONE: return !present;
    case PAT_ANY: return present;
    case PAT_EXACT: return present && v.len == p->text.len && memcmp(v.ptr, p->text.ptr, v.len) == 0;
    case PAT_PREFIX:
        return present && v.len >= p->text.len && memcmp(v.ptr, p->text.ptr, p->text.len) == 0;
    case PAT_SUFFIX:
        return present && v.len >= p->text.len &&
               memcmp(v.ptr + v.len - p->text.len, p->text.ptr, p->text.len) == 0;
    }
    return false;
}

static bool any_pattern(const struct filter_atom *a, struct slice v, bool present)
{
    for (size_t i = 0; i < a->npats; i++) {
        if (pattern_match(&a->pats[i], v, present)) {
            return true;
        }
    }
    return false;
}

bool filter_next_tag(struct slice tags, size_t *pos, char scratch[FILTER_TAG_SCRATCH],
                     struct slice *tag)
{
    const char *s = tags.ptr;
    size_t i = *pos, n = tags.len;
    while (i < n && (s[i] == '[' || s[i] == ',')) {
        i++;
    }
    if (i >= n || s[i] != '"') {
        return false;
    }
    size_t start = ++i, w = 0;
    bool escaped = false;
    while (i < n && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < n) {
            if (!escaped) {
                if (i - start > FILTER_TAG_SCRATCH) {
                    return false;
                }
                memcpy(scratch, s + start, i - start);
                w = i - start;
                escaped = true;
            }
            i++;
        }
        if (escaped) {
            if (w == FILTER_TAG_SCRATCH) {
                return false;
            }
            scratch[w++] = s[i];
        }
        i++;
    }
    if (i >= n) {
        return false;
    }
    *tag = escaped ? (struct slice){scratch, w} : (struct slice){s + start, i - start};
    *pos = i + 1;
    return true;
}

void filter_json_string(struct slice s, struct buf *out)
{
    buf_addc(out, '"');
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '"' || s.ptr[i] == '\\') {
            buf_addc(out, '\\');
        }
        buf_addc(out, s.ptr[i]);
    }
    buf_addc(out, '"');
}

static bool atom_match(const struct filter_atom *a, const struct event_rec *ev)
{
    switch (a->field) {
    case FF_STREAM: return any_pattern(a, ev->stream, true);
    case FF_TYPE: return any_pattern(a, ev->type, true);
    case FF_CATEGORY: return any_pattern(a, filter_category(ev->stream), true);
    case FF_SUBJECT: return any_pattern(a, ev->subject, ev->subject.len > 0);
    case FF_TAG: {
        char scratch[FILTER_TAG_SCRATCH];
        size_t pos = 0;
        struct slice t;
        while (filter_next_tag(ev->tags, &pos, scratch, &t)) {
            if (any_pattern(a, t, true)) {
                return true;
            }
        }
        return false;
    }
    }
    return false;
}

static bool item_match(const struct filter_item *it, const struct event_rec *ev)
{
    for (size_t i = 0; i < it->natoms; i++) {
        if (!atom_match(&it->atoms[i], ev)) {
            return false;
        }
    }
    return true;
}

bool filter_match(const struct filter *f, const struct event_rec *ev)
{
    if ((f->has_time_from && ev->time_us < f->time_from_us) ||
        (f->has_time_to && ev->time_us > f->time_to_us)) {
        return false;
    }
    if (f->nitems == 0) {
        return true;
    }
    for (size_t i = 0; i < f->nitems; i++) {
        if (item_match(&f->items[i], ev)) {
            return true;
        }
    }
    return false;
}
