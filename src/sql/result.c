/* Results built by hand (sql_result_init, sql_result_add_row) and copies of results: tables
 * that did not come from a query (an EXECUTE's events, a session's tables) in the same shape,
 * so one writer answers them all. The text of such a result lives in one block after a small
 * header (bytes used, capacity); sql_result_fini frees it like a query's. */
#include <stdlib.h>
#include <string.h>

#include "sql/sql.h"

/* The header of a built result's text block. */
struct block {
    size_t used, cap;
    char text[];
};

static char *dup_or_null(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

void sql_result_init(struct sql_result *r, size_t ncols, const char *const *names)
{
    memset(r, 0, sizeof(*r));
    r->ncols = ncols;
    r->names = xcalloc(ncols ? ncols : 1, sizeof(*r->names));
    r->decls = xcalloc(ncols ? ncols : 1, sizeof(*r->decls));
    for (size_t i = 0; i < ncols; i++) {
        r->names[i] = dup_or_null(names[i] ? names[i] : "");
    }
    struct block *b = xmalloc(sizeof(*b) + 256);
    b->used = 0;
    b->cap = 256;
    r->mem = b;
}

/* Room for n more text bytes, moving the text cells along when the block moves. */
static struct block *reserve(struct sql_result *r, size_t n)
{
    struct block *b = r->mem;
    if (b->used + n <= b->cap) {
        return b;
    }
    size_t cap = b->cap;
    while (cap < b->used + n) {
        cap *= 2;
    }
    struct block *nb = xmalloc(sizeof(*nb) + cap);
    memcpy(nb->text, b->text, b->used);
    nb->used = b->used;
    nb->cap = cap;
    for (size_t k = 0; k < r->nrows * r->ncols; k++) {
        struct sql_value *v = &r->cells[k];
        if (v->type == SQL_TEXT) {
            v->s = nb->text + (v->s - b->text);
        }
    }
    free(b);
    r->mem = nb;
    return nb;
}

void sql_result_add_row(struct sql_result *r, const struct sql_value *cells)
{
    size_t text = 0;
    for (size_t k = 0; k < r->ncols; k++) {
        text += cells[k].type == SQL_TEXT ? cells[k].len + 1 : 0;
    }
    struct block *b = reserve(r, text);
    r->cells = xrealloc(r->cells, (r->nrows + 1) * (r->ncols ? r->ncols : 1) * sizeof(*r->cells));
    for (size_t k = 0; k < r->ncols; k++) {
        struct sql_value v = cells[k];
        if (v.type == SQL_TEXT) {
            char *at = b->text + b->used;
            if (v.len) {
                memcpy(at, v.s, v.len);
            }
            at[v.len] = 0;
            b->used += v.len + 1;
            v.s = at;
        }
        r->cells[r->nrows * r->ncols + k] = v;
        r->bytes += sizeof(v) + (v.type == SQL_TEXT ? v.len + 1 : 0);
    }
    r->nrows++;
}

void sql_result_copy(struct sql_result *dst, const struct sql_result *src)
{
    sql_result_init(dst, src->ncols, (const char *const *)src->names);
    for (size_t i = 0; i < src->ncols; i++) {
        dst->decls[i] = dup_or_null(src->decls ? src->decls[i] : NULL);
    }
    for (size_t row = 0; row < src->nrows; row++) {
        sql_result_add_row(dst, sql_cell(src, row, 0));
    }
}
