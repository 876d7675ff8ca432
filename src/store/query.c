/* Query indexes and filtered reads (docs/design/storage.md, "Query indexes").
 *
 * Tables:
 *   terms     kind (1 byte) || name  -> term id (u64 BE) || postings count (u64 BE)
 *   postings  term id || position     -> (empty)
 * Kinds: 'T' event type, 'C' stream category, 'G' tag, 'S' subject. Streams use the stream
 * index (sindex) as their posting list: versions follow positions.
 *
 * A query picks, for each item of its filter, the atom whose posting lists are shortest (the
 * union of the terms its patterns expand to), merges the picked lists of all items in
 * position order, and checks each candidate against the whole filter. Positions past the
 * snapshot's index (the tail) are checked one by one. An item with no usable atom (or a plan
 * with too many lists) falls back to reading every position in the range. */
#include <stdlib.h>
#include <string.h>

#include "query/filter.h"
#include "store/store_int.h"
#include "util/errors.h"

enum {
    TERM_KEY_MAX = 1 + 512,  /* kind + a name (names are <= 256 bytes) */
    TERM_VAL_BYTES = 16,     /* id, count */
    POSTING_KEY_BYTES = 16,  /* term id, position */
    EXPAND_MAX = 1024,       /* terms one prefix pattern may expand to */
    SUFFIX_SCAN_MAX = 4096,  /* terms a suffix pattern may look at */
    STREAM_EXPAND_MAX = 256, /* streams one stream prefix may expand to */
    SOURCES_MAX = 1024,      /* posting lists one query may merge */
};

static const char TERM_KIND[] = {
    [FF_TYPE] = 'T', [FF_CATEGORY] = 'C', [FF_TAG] = 'G', [FF_SUBJECT] = 'S', [FF_STREAM] = 0};

/* ---------------------------------------------------------------- indexing */

/* A term seen in the current index transaction, with the positions it adds (ascending):
 * the first inline (many terms, unique tags say, get one), the others in more. */
struct term_val {
    uint64_t id;    /* term id */
    uint64_t count; /* postings before this transaction */
    uint64_t first; /* the first position added in it */
    uint64_t *more; /* the next ones: added - 1 of them */
    size_t added, cap;
};

/* The j-th position tv adds. */
static uint64_t term_pos(const struct term_val *tv, size_t j)
{
    return j == 0 ? tv->first : tv->more[j - 1];
}

void st_terms_begin(struct term_acc *acc)
{
    memset(acc, 0, sizeof(*acc));
    strmap_init(&acc->terms, sizeof(struct term_val));
}

void st_terms_end(struct term_acc *acc)
{
    size_t it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&acc->terms, &it, &key, &klen, &val)) {
        free(((struct term_val *)val)->more);
    }
    strmap_fini(&acc->terms);
}

static size_t term_key(uint8_t out[TERM_KEY_MAX], char kind, struct slice name)
{
    size_t n = name.len < TERM_KEY_MAX - 1 ? name.len : TERM_KEY_MAX - 1;
    out[0] = (uint8_t)kind;
    memcpy(out + 1, name.ptr, n);
    return n + 1;
}

/* The accumulated term of kind and name: the one of the previous event of this kind when
 * the name is the same (events in a row mostly share their type and category), else looked
 * up, or created with its stored id and count (or a new id from *term_count). Tags are not
 * remembered: their names may lie in a scratch buffer. */
static int find_term(MDB_txn *txn, struct store *st, struct term_acc *acc, char kind,
                     struct slice name, uint64_t *term_count, struct term_val **out)
{
    struct term_last *last = NULL;
    for (size_t i = 0; kind != 'G' && i < TERM_LAST_KINDS; i++) {
        if (acc->last[i].kind == kind || !acc->last[i].kind) {
            last = &acc->last[i];
            break;
        }
    }
    if (last && last->kind && last->name.len == name.len &&
        memcmp(last->name.ptr, name.ptr, name.len) == 0) {
        *out = last->tv;
        return 0;
    }
    uint8_t kb[TERM_KEY_MAX];
    size_t kn = term_key(kb, kind, name);
    bool is_new;
    struct term_val *tv = strmap_put(&acc->terms, kb, kn, &is_new);
    if (is_new) {
        MDB_val k = {kn, kb}, v;
        int rc = mdb_get(txn, st->terms, &k, &v);
        if (rc == 0 && v.mv_size == TERM_VAL_BYTES) {
            tv->id = be64_get(v.mv_data);
            tv->count = be64_get((const uint8_t *)v.mv_data + 8);
        } else if (rc == MDB_NOTFOUND) {
            tv->id = ++*term_count;
        } else {
            return rc ? st_map_err(rc) : ERR(ERR_CORRUPT);
        }
    }
    if (last) {
        *last = (struct term_last){.kind = kind, .name = name, .tv = tv};
    }
    *out = tv;
    return 0;
}

static int add_posting(MDB_txn *txn, struct store *st, struct term_acc *acc, char kind,
                       struct slice name, uint64_t pos, uint64_t *term_count)
{
    struct term_val *tv;
    int rc = find_term(txn, st, acc, kind, name, term_count, &tv);
    if (rc) {
        return rc;
    }
    if (tv->added == 0) {
        tv->first = pos;
    } else {
        if (tv->added - 1 == tv->cap) {
            tv->cap = tv->cap ? tv->cap * 2 : 16;
            tv->more = xrealloc(tv->more, tv->cap * sizeof(*tv->more));
        }
        tv->more[tv->added - 1] = pos;
    }
    tv->added++;
    return 0;
}

static bool seen_before(struct slice tags, size_t upto, struct slice tag)
{
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0;
    struct slice t;
    while (pos < upto && filter_next_tag(tags, &pos, scratch, &t)) {
        if (t.len == tag.len && memcmp(t.ptr, tag.ptr, t.len) == 0) {
            return true;
        }
    }
    return false;
}

int st_index_terms(MDB_txn *txn, struct store *st, struct term_acc *acc,
                   const struct event_rec *ev, uint64_t *term_count)
{
    uint64_t p = ev->position;
    int rc = add_posting(txn, st, acc, 'T', ev->type, p, term_count);
    if (!rc) rc = add_posting(txn, st, acc, 'C', filter_category(ev->stream), p, term_count);
    if (!rc && ev->subject.len) rc = add_posting(txn, st, acc, 'S', ev->subject, p, term_count);
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0, before = 0;
    struct slice t;
    while (!rc && filter_next_tag(ev->tags, &pos, scratch, &t)) {
        if (!seen_before(ev->tags, before, t)) {
            rc = add_posting(txn, st, acc, 'G', t, p, term_count);
        }
        before = pos;
    }
    return rc;
}

/* ---------------------------------------------------------------- tail Bloom filters */

/* The three bit numbers of a term in a TAIL_BLOOM_BYTES filter (double hashing of one
 * 64-bit hash of kind and name). */
static void bloom_bits(char kind, struct slice name, uint32_t out[3])
{
    uint64_t h = strmap_hash(name.ptr, name.len) ^ ((uint64_t)(uint8_t)kind * 0x9e3779b97f4a7c15ull);
    h ^= h >> 33; /* splitmix64's finalizer: every input bit reaches both halves */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    uint32_t a = (uint32_t)h, b = (uint32_t)(h >> 32) | 1;
    for (int i = 0; i < 3; i++) {
        out[i] = (a + (uint32_t)i * b) % (TAIL_BLOOM_BYTES * 8);
    }
}

static void bloom_add(uint8_t *bloom, char kind, struct slice name)
{
    uint32_t bit[3];
    bloom_bits(kind, name, bit);
    for (int i = 0; i < 3; i++) {
        __atomic_fetch_or(&bloom[bit[i] / 8], (uint8_t)(1u << (bit[i] % 8)), __ATOMIC_RELAXED);
    }
}

static bool bloom_has(const uint8_t *bloom, const uint32_t bit[3])
{
    for (int i = 0; i < 3; i++) {
        if (!(__atomic_load_n(&bloom[bit[i] / 8], __ATOMIC_RELAXED) & (1u << (bit[i] % 8)))) {
            return false;
        }
    }
    return true;
}

/* The kind byte of field f in the tail filters: the index's kinds, and 0 for streams. */
static char bloom_kind(enum filter_field f)
{
    return f == FF_STREAM ? 0 : TERM_KIND[f];
}

void st_bloom_note(struct store *st, const struct event_rec *ev)
{
    uint8_t *bloom = bloom_at(st, ev->position);
    bloom_add(bloom, bloom_kind(FF_STREAM), ev->stream);
    bloom_add(bloom, bloom_kind(FF_TYPE), ev->type);
    bloom_add(bloom, bloom_kind(FF_CATEGORY), filter_category(ev->stream));
    if (ev->subject.len) {
        bloom_add(bloom, bloom_kind(FF_SUBJECT), ev->subject);
    }
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0;
    struct slice t;
    while (filter_next_tag(ev->tags, &pos, scratch, &t)) {
        bloom_add(bloom, bloom_kind(FF_TAG), t);
    }
}

/* True when every pattern of atom a is exact: an event the atom matches then has one of those
 * names among its terms, which the tail filters can test. */
static bool bloom_testable(const struct filter_atom *a)
{
    for (size_t k = 0; k < a->npats; k++) {
        if (a->pats[k].kind != PAT_EXACT) {
            return false;
        }
    }
    return true;
}

/* True when the tail filters can rule blocks out for f: every item has a testable atom (a
 * filter without items matches every event). */
static bool bloom_usable(const struct filter *f)
{
    if (f->nitems == 0) {
        return false;
    }
    for (size_t i = 0; i < f->nitems; i++) {
        bool any = false;
        for (size_t a = 0; a < f->items[i].natoms && !any; a++) {
            any = bloom_testable(&f->items[i].atoms[a]);
        }
        if (!any) {
            return false;
        }
    }
    return true;
}

/* The bit numbers of every pattern of f's testable atoms, three each, in filter order (item,
 * atom, pattern): hashed once per query, tested per block. Freed by the caller. */
static uint32_t *bloom_probes(const struct filter *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nitems; i++) {
        for (size_t a = 0; a < f->items[i].natoms; a++) {
            n += bloom_testable(&f->items[i].atoms[a]) ? f->items[i].atoms[a].npats : 0;
        }
    }
    uint32_t *bits = xmalloc((n ? n : 1) * 3 * sizeof(*bits));
    size_t k = 0;
    for (size_t i = 0; i < f->nitems; i++) {
        for (size_t a = 0; a < f->items[i].natoms; a++) {
            const struct filter_atom *at = &f->items[i].atoms[a];
            for (size_t j = 0; bloom_testable(at) && j < at->npats; j++, k++) {
                bloom_bits(bloom_kind(at->field), at->pats[j].text, &bits[k * 3]);
            }
        }
    }
    return bits;
}

/* False when no event of the tail block can match f: for every item, some testable atom has
 * none of its names in the block's filter. bits: from bloom_probes(f). */
static bool block_may_match(const uint8_t *bloom, const struct filter *f, const uint32_t *bits)
{
    size_t k = 0; /* the first pattern of the atom at hand in bits */
    for (size_t i = 0; i < f->nitems; i++) {
        const struct filter_item *it = &f->items[i];
        bool possible = true;
        for (size_t a = 0; a < it->natoms; a++) {
            const struct filter_atom *at = &it->atoms[a];
            if (!bloom_testable(at)) {
                continue;
            }
            bool any = false;
            for (size_t j = 0; possible && j < at->npats && !any; j++) {
                any = bloom_has(bloom, &bits[(k + j) * 3]);
            }
            possible = possible && any;
            k += at->npats;
        }
        if (possible) {
            return true;
        }
    }
    return false;
}

/* A term of the transaction, for writing in term id order. */
struct term_ref {
    const char *key;
    size_t klen;
    struct term_val *tv;
};

static int cmp_term_ref(const void *a, const void *b)
{
    const struct term_ref *x = a, *y = b;
    return x->tv->id < y->tv->id ? -1 : x->tv->id > y->tv->id;
}

/* Writes each term's postings through one cursor, terms in id order and each term's
 * positions ascending: key order, so LMDB finds most keys on the page it is on instead of
 * searching from the root. Then the terms' counts. */
int st_terms_flush(MDB_txn *txn, struct store *st, struct term_acc *acc)
{
    struct term_ref *refs = xmalloc((acc->terms.count + 1) * sizeof(*refs));
    size_t n = 0, it = 0;
    const char *key;
    size_t klen;
    void *val;
    while (strmap_next(&acc->terms, &it, &key, &klen, &val)) {
        refs[n++] = (struct term_ref){key, klen, val};
    }
    qsort(refs, n, sizeof(*refs), cmp_term_ref);
    MDB_cursor *c = NULL;
    int rc = mdb_cursor_open(txn, st->postings, &c);
    for (size_t i = 0; !rc && i < n; i++) {
        const struct term_val *tv = refs[i].tv;
        for (size_t j = 0; !rc && j < tv->added; j++) {
            uint8_t pk[POSTING_KEY_BYTES];
            be64_put(pk, tv->id);
            be64_put(pk + 8, term_pos(tv, j));
            MDB_val k = {sizeof pk, pk}, v = {0, NULL};
            rc = mdb_cursor_put(c, &k, &v, 0);
        }
    }
    if (c) {
        mdb_cursor_close(c);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const struct term_val *tv = refs[i].tv;
        uint8_t vb[TERM_VAL_BYTES];
        be64_put(vb, tv->id);
        be64_put(vb + 8, tv->count + tv->added);
        MDB_val k = {refs[i].klen, (void *)refs[i].key}, v = {sizeof vb, vb};
        rc = mdb_put(txn, st->terms, &k, &v, 0);
    }
    free(refs);
    return st_map_err(rc);
}

static int has_posting(MDB_txn *txn, struct store *st, char kind, struct slice name,
                       uint64_t pos)
{
    uint8_t kb[TERM_KEY_MAX];
    size_t kn = term_key(kb, kind, name);
    MDB_val k = {kn, kb}, v;
    if (mdb_get(txn, st->terms, &k, &v) != 0 || v.mv_size != TERM_VAL_BYTES) {
        return ERR(ERR_CORRUPT);
    }
    uint8_t pk[POSTING_KEY_BYTES];
    be64_put(pk, be64_get(v.mv_data));
    be64_put(pk + 8, pos);
    MDB_val k2 = {sizeof pk, pk}, v2;
    return mdb_get(txn, st->postings, &k2, &v2) == 0 ? 0 : ERR(ERR_CORRUPT);
}

int st_verify_terms(MDB_txn *txn, struct store *st, const struct event_rec *ev)
{
    uint64_t p = ev->position;
    int rc = has_posting(txn, st, 'T', ev->type, p);
    if (!rc) rc = has_posting(txn, st, 'C', filter_category(ev->stream), p);
    if (!rc && ev->subject.len) rc = has_posting(txn, st, 'S', ev->subject, p);
    char scratch[FILTER_TAG_SCRATCH];
    size_t pos = 0;
    struct slice t;
    while (!rc && filter_next_tag(ev->tags, &pos, scratch, &t)) {
        rc = has_posting(txn, st, 'G', t, p);
    }
    return rc;
}

/* ---------------------------------------------------------------- plans */

/* One posting list: a term's postings or a stream's index, walked in position order. */
struct source {
    bool is_stream;   /* sindex (values are positions) rather than postings */
    uint64_t id;      /* term id or stream id */
    uint64_t cost;    /* postings (or indexed versions) */
    MDB_cursor *cur;  /* open while walking */
    uint64_t pos;     /* current position, 0 when exhausted */
};

struct plan {
    struct source *srcs;
    size_t n, cap;
    bool full_scan; /* read every position instead */
};

static void plan_add(struct plan *pl, bool is_stream, uint64_t id, uint64_t cost)
{
    for (size_t i = 0; i < pl->n; i++) {
        if (pl->srcs[i].is_stream == is_stream && pl->srcs[i].id == id) {
            return;
        }
    }
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? pl->cap * 2 : 16;
        pl->srcs = xrealloc(pl->srcs, pl->cap * sizeof(*pl->srcs));
    }
    pl->srcs[pl->n++] = (struct source){.is_stream = is_stream, .id = id, .cost = cost};
}

static void plan_free(struct plan *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        if (pl->srcs[i].cur) {
            mdb_cursor_close(pl->srcs[i].cur);
        }
    }
    free(pl->srcs);
}

static bool has_prefix(MDB_val k, const uint8_t *p, size_t n)
{
    return k.mv_size >= n && memcmp(k.mv_data, p, n) == 0;
}

static bool ends_with(MDB_val k, struct slice suffix)
{
    return k.mv_size - 1 >= suffix.len &&
           memcmp((const char *)k.mv_data + k.mv_size - suffix.len, suffix.ptr, suffix.len) == 0;
}

/* Expands one pattern of a term field into plan pl. Returns 0, 1 when the pattern cannot use
 * the index (too many terms, or a pattern no index answers), or an error. */
static int expand_term(struct store_reader *r, char kind, const struct pattern *p,
                       struct plan *pl)
{
    uint8_t kb[TERM_KEY_MAX];
    size_t kn = term_key(kb, kind, p->text);
    if (p->kind == PAT_ANY || p->kind == PAT_NONE) {
        return 1;
    }
    if (p->kind == PAT_EXACT) {
        MDB_val k = {kn, kb}, v;
        int rc = mdb_get(r->txn, r->st->terms, &k, &v);
        if (rc == 0 && v.mv_size == TERM_VAL_BYTES) {
            plan_add(pl, false, be64_get(v.mv_data), be64_get((uint8_t *)v.mv_data + 8));
        }
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_map_err(rc);
    }
    size_t match = p->kind == PAT_PREFIX ? kn : 1; /* key prefix to walk */
    size_t limit = p->kind == PAT_PREFIX ? EXPAND_MAX : SUFFIX_SCAN_MAX;
    MDB_cursor *c;
    int rc = mdb_cursor_open(r->txn, r->st->terms, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k = {match, kb}, v;
    size_t seen = 0;
    int out = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && has_prefix(k, kb, match);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (++seen > limit) {
            out = 1;
            break;
        }
        if (v.mv_size != TERM_VAL_BYTES) {
            out = ERR(ERR_CORRUPT);
            break;
        }
        if (p->kind == PAT_PREFIX || ends_with(k, p->text)) {
            plan_add(pl, false, be64_get(v.mv_data), be64_get((uint8_t *)v.mv_data + 8));
        }
    }
    if (!out && rc && rc != MDB_NOTFOUND) {
        out = st_map_err(rc);
    }
    mdb_cursor_close(c);
    return out;
}

/* Expands one stream pattern (exact or prefix) into stream sources. */
static int expand_stream(struct store_reader *r, const struct pattern *p, struct plan *pl)
{
    if (p->kind == PAT_EXACT) {
        struct stream_rec s;
        int rc = st_get_row(r->txn, r->st, p->text, &s);
        if (!rc) {
            plan_add(pl, true, s.id, s.version);
        }
        return rc == ERR_NOTFOUND ? 0 : rc;
    }
    if (p->kind != PAT_PREFIX) {
        return 1;
    }
    MDB_cursor *c;
    int rc = mdb_cursor_open(r->txn, r->st->streams, &c);
    if (rc) {
        return st_map_err(rc);
    }
    MDB_val k = {p->text.len, (void *)p->text.ptr}, v;
    size_t seen = 0;
    int out = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && has_prefix(k, (const uint8_t *)p->text.ptr, p->text.len);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct stream_rec s;
        if (++seen > STREAM_EXPAND_MAX) {
            out = 1;
            break;
        }
        if (codec_stream_decode(v.mv_data, v.mv_size, &s) != 0) {
            out = ERR(ERR_CORRUPT);
            break;
        }
        plan_add(pl, true, s.id, s.version);
    }
    if (!out && rc && rc != MDB_NOTFOUND) {
        out = st_map_err(rc);
    }
    mdb_cursor_close(c);
    return out;
}

/* The sources of one atom into *out; *out->full_scan when the index cannot answer it. */
static int expand_atom(struct store_reader *r, const struct filter_atom *a, struct plan *out)
{
    for (size_t i = 0; i < a->npats && !out->full_scan; i++) {
        int rc = a->field == FF_STREAM ? expand_stream(r, &a->pats[i], out)
                                       : expand_term(r, TERM_KIND[a->field], &a->pats[i], out);
        if (rc < 0) {
            return rc;
        }
        if (rc > 0) {
            out->full_scan = true;
        }
    }
    return 0;
}

static uint64_t plan_cost(const struct plan *pl)
{
    uint64_t c = 0;
    for (size_t i = 0; i < pl->n; i++) {
        c += pl->srcs[i].cost;
    }
    return c;
}

/* Picks the cheapest atom of item it and adds its sources to pl. */
static int plan_item(struct store_reader *r, const struct filter_item *it, struct plan *pl)
{
    struct plan best = {.full_scan = true};
    uint64_t best_cost = UINT64_MAX;
    for (size_t i = 0; i < it->natoms; i++) {
        struct plan cand = {0};
        int rc = expand_atom(r, &it->atoms[i], &cand);
        if (rc) {
            plan_free(&cand);
            plan_free(&best);
            return rc;
        }
        uint64_t cost = cand.full_scan ? UINT64_MAX : plan_cost(&cand);
        if (!cand.full_scan && cost < best_cost) {
            plan_free(&best);
            best = cand;
            best_cost = cost;
        } else {
            plan_free(&cand);
        }
    }
    if (best.full_scan) {
        pl->full_scan = true;
    }
    for (size_t i = 0; i < best.n && !pl->full_scan; i++) {
        plan_add(pl, best.srcs[i].is_stream, best.srcs[i].id, best.srcs[i].cost);
    }
    plan_free(&best);
    return 0;
}

static int make_plan(struct store_reader *r, const struct filter *f, uint64_t span,
                     struct plan *pl)
{
    memset(pl, 0, sizeof(*pl));
    pl->full_scan = f->nitems == 0;
    for (size_t i = 0; i < f->nitems && !pl->full_scan; i++) {
        int rc = plan_item(r, &f->items[i], pl);
        if (rc) {
            return rc;
        }
    }
    if (!pl->full_scan && (pl->n > SOURCES_MAX || plan_cost(pl) >= span)) {
        pl->full_scan = true; /* reading every position costs no more */
    }
    if (pl->full_scan) {
        plan_free(pl);
        memset(pl, 0, sizeof(*pl));
        pl->full_scan = true;
    }
    return 0;
}

/* ---------------------------------------------------------------- walking sources */

/* The walk of one query: the range, its direction, and the sources' heap. */
struct walk {
    struct store_reader *r;
    bool backward;
    uint64_t lo, hi;    /* indexed part of the range, inclusive (lo > hi: empty) */
    struct source **heap;
    size_t nheap;
};

static bool before(const struct walk *w, uint64_t a, uint64_t b)
{
    return w->backward ? a > b : a < b;
}

static void sift_down(struct walk *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < w->nheap && before(w, w->heap[l]->pos, w->heap[m]->pos)) m = l;
        if (l + 1 < w->nheap && before(w, w->heap[l + 1]->pos, w->heap[m]->pos)) m = l + 1;
        if (m == i) {
            return;
        }
        struct source *t = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = t;
        i = m;
    }
}

/* Reads the cursor's current entry into s->pos (0 when outside the source or the range). */
static int take(struct walk *w, struct source *s, int rc, MDB_val k, MDB_val v)
{
    s->pos = 0;
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc) {
        return st_map_err(rc);
    }
    if (k.mv_size != 16 || be64_get(k.mv_data) != s->id) {
        return 0;
    }
    uint64_t p;
    if (s->is_stream) {
        if (v.mv_size != 8) {
            return ERR(ERR_CORRUPT);
        }
        p = be64_get(v.mv_data);
    } else {
        p = be64_get((const uint8_t *)k.mv_data + 8);
    }
    if (p >= w->lo && p <= w->hi) {
        s->pos = p;
    }
    return 0;
}

static int step(struct walk *w, struct source *s)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(s->cur, &k, &v, w->backward ? MDB_PREV : MDB_NEXT);
    return take(w, s, rc, k, v);
}

/* Version of stream source s to start from: the first (forward) or last (backward) whose
 * position is inside [lo, hi], by binary search over versions 1..cost. */
static int stream_start(struct walk *w, const struct source *s, uint64_t *out)
{
    uint64_t a = 1, b = s->cost, target = w->backward ? w->hi : w->lo;
    struct stream_rec row = {.id = s->id};
    *out = w->backward ? 0 : s->cost + 1;
    while (a <= b) {
        uint64_t mid = a + (b - a) / 2, p;
        int rc = st_indexed_pos(w->r, &row, mid, &p);
        if (rc) {
            return rc;
        }
        if (w->backward ? p <= target : p >= target) {
            *out = mid;
            if (w->backward) {
                a = mid + 1;
            } else {
                b = mid - 1;
            }
        } else if (w->backward) {
            b = mid - 1;
        } else {
            a = mid + 1;
        }
    }
    return 0;
}

static int seek(struct walk *w, struct source *s)
{
    MDB_dbi dbi = s->is_stream ? w->r->st->sindex : w->r->st->postings;
    int rc = mdb_cursor_open(w->r->txn, dbi, &s->cur);
    if (rc) {
        return st_map_err(rc);
    }
    uint8_t kb[16];
    be64_put(kb, s->id);
    if (s->is_stream) {
        uint64_t v0;
        rc = stream_start(w, s, &v0);
        if (rc || v0 < 1 || v0 > s->cost) {
            s->pos = 0;
            return rc;
        }
        be64_put(kb + 8, v0);
        MDB_val k = {16, kb}, v;
        return take(w, s, mdb_cursor_get(s->cur, &k, &v, MDB_SET_KEY), k, v);
    }
    be64_put(kb + 8, w->backward ? w->hi + 1 : w->lo);
    MDB_val k = {16, kb}, v;
    rc = mdb_cursor_get(s->cur, &k, &v, MDB_SET_RANGE);
    if (w->backward) {
        rc = mdb_cursor_get(s->cur, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    }
    return take(w, s, rc, k, v);
}

static int walk_start(struct walk *w, struct plan *pl)
{
    w->heap = xcalloc(pl->n ? pl->n : 1, sizeof(*w->heap));
    w->nheap = 0;
    if (w->lo > w->hi) {
        return 0;
    }
    for (size_t i = 0; i < pl->n; i++) {
        int rc = seek(w, &pl->srcs[i]);
        if (rc) {
            return rc;
        }
        if (pl->srcs[i].pos) {
            w->heap[w->nheap++] = &pl->srcs[i];
        }
    }
    for (size_t i = w->nheap / 2 + 1; i-- > 0;) {
        sift_down(w, i);
    }
    return 0;
}

/* The next candidate position of the indexed part (0 when none), advancing every source that
 * stood on it. */
static int walk_next(struct walk *w, uint64_t *out)
{
    *out = 0;
    if (w->nheap == 0) {
        return 0;
    }
    uint64_t p = w->heap[0]->pos;
    *out = p;
    while (w->nheap && w->heap[0]->pos == p) {
        int rc = step(w, w->heap[0]);
        if (rc) {
            return rc;
        }
        if (!w->heap[0]->pos) {
            w->heap[0] = w->heap[--w->nheap];
        }
        sift_down(w, 0);
    }
    return 0;
}

/* ---------------------------------------------------------------- the query */

/* State of one query run. */
struct run {
    struct store_reader *r;
    const struct store_query *q;
    store_event_fn *fn;
    void *arg;
    size_t examined;
    struct store_query_result *res;
};

/* Looks at candidate p. Returns 0 to go on, 1 when the query is over (limit or budget), or
 * an error. */
static int consider(struct run *run, uint64_t p)
{
    if (run->examined == run->q->budget) {
        run->res->next = p; /* resume here */
        return 1;
    }
    run->examined++;
    const uint8_t *rec;
    uint32_t len;
    int rc = st_locate(run->r, p, &rec, &len);
    struct event_rec ev;
    if (!rc) rc = codec_record_decode(rec, len, &ev);
    if (!rc && ev.position != p) {
        rc = ERR(ERR_CORRUPT);
    }
    if (rc) {
        return rc;
    }
    if (ev.redacted || !filter_match(run->q->filter, &ev) ||
        (run->q->accept && !run->q->accept(run->q->accept_arg, &ev))) {
        return 0;
    }
    if (run->res->delivered == run->q->limit) {
        run->res->next = p; /* the next page starts at the next match */
        return 1;
    }
    run->res->delivered++;
    rc = run->fn(run->arg, &ev);
    return rc; /* > 0: the caller has what it wants (next stays 0) */
}

/* Every position of [lo, hi] in the direction of travel. */
static int scan_range(struct run *run, uint64_t lo, uint64_t hi)
{
    if (lo > hi) {
        return 0;
    }
    for (uint64_t i = 0; i <= hi - lo; i++) {
        int rc = consider(run, run->q->backward ? hi - i : lo + i);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

/* The tail part [lo, hi] (unindexed positions): every position, except whole blocks whose
 * Bloom filter shows that none of their events can match. */
static int tail_part(struct run *run, uint64_t lo, uint64_t hi)
{
    if (lo > hi || !run->q->filter || !bloom_usable(run->q->filter)) {
        return scan_range(run, lo, hi);
    }
    uint32_t *bits = bloom_probes(run->q->filter);
    uint64_t first = (lo - 1) / TAIL_BLOCK, last = (hi - 1) / TAIL_BLOCK;
    int rc = 0;
    for (uint64_t i = 0; !rc && i <= last - first; i++) {
        uint64_t b = run->q->backward ? last - i : first + i;
        uint64_t blo = b * TAIL_BLOCK + 1, bhi = blo + TAIL_BLOCK - 1;
        if (blo < lo) blo = lo;
        if (bhi > hi) bhi = hi;
        if (block_may_match(bloom_at(run->r->st, blo), run->q->filter, bits)) {
            rc = scan_range(run, blo, bhi);
        }
    }
    free(bits);
    return rc;
}

static int indexed_part(struct run *run, const struct plan *pl, uint64_t lo, uint64_t hi)
{
    if (pl->full_scan) {
        return scan_range(run, lo, hi);
    }
    struct walk w = {.r = run->r, .backward = run->q->backward, .lo = lo, .hi = hi};
    int rc = walk_start(&w, (struct plan *)pl);
    while (!rc) {
        uint64_t p;
        rc = walk_next(&w, &p);
        if (rc || !p) {
            break;
        }
        rc = consider(run, p);
    }
    free(w.heap);
    return rc;
}

int store_query(struct store_reader *r, const struct store_query *q, store_event_fn *fn,
                void *arg, struct store_query_result *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t lo = q->backward ? q->to : q->from, hi = q->backward ? q->from : q->to;
    if (lo < 1) lo = 1;
    if (hi > r->head) hi = r->head;
    if (lo > hi || q->limit == 0) {
        return 0;
    }
    uint64_t ihi = hi < r->indexed ? hi : r->indexed;       /* indexed part [lo, ihi] */
    uint64_t tlo = lo > r->indexed ? lo : r->indexed + 1;   /* tail part [tlo, hi] */
    struct plan pl;
    int rc = make_plan(r, q->filter, ihi >= lo ? ihi - lo + 1 : 0, &pl);
    struct run run = {.r = r, .q = q, .fn = fn, .arg = arg, .res = out};
    if (!rc) {
        if (q->backward) {
            rc = tail_part(&run, tlo, hi);
            if (!rc) rc = indexed_part(&run, &pl, lo, ihi);
        } else {
            rc = indexed_part(&run, &pl, lo, ihi);
            if (!rc) rc = tail_part(&run, tlo, hi);
        }
    }
    plan_free(&pl);
    out->examined = run.examined;
    return rc > 0 ? 0 : rc;
}
