/* Event filters: what a query, a subscription or an append condition selects. Pure: built by
 * the API layer from request text, evaluated against decoded events (store/codec.h), and
 * looked at by the store to pick an index. No I/O.
 *
 * Shape (disjunctive normal form): a filter matches an event when the event is inside its time
 * bounds and matches ANY of its items (a filter with no items matches every event). An item
 * matches when ALL of its atoms do. An atom names one field and a list of patterns, and
 * matches when the field matches ANY of them; a tag atom matches when ANY of the event's tags
 * matches any of its patterns (so "carries tags a and b" is two tag atoms).
 *
 * Memory: a filter owns copies of every pattern text; filter_fini frees them. */
#ifndef QUERY_FILTER_H
#define QUERY_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/event.h"
#include "util/buf.h"

enum {
    FILTER_MAX_ITEMS = 64,    /* items after expanding and/or selectors */
    FILTER_MAX_ATOMS = 64,    /* atoms per item */
    FILTER_MAX_PATTERNS = 64, /* patterns per atom */
};

enum filter_field { FF_STREAM, FF_TYPE, FF_CATEGORY, FF_SUBJECT, FF_TAG };

enum pattern_kind {
    PAT_EXACT,  /* equal to text */
    PAT_PREFIX, /* starts with text */
    PAT_SUFFIX, /* ends with text */
    PAT_ANY,    /* any value (a present value, for subjects) */
    PAT_NONE,   /* no value (subjects only: the event has no subject) */
};

struct pattern {
    enum pattern_kind kind;
    struct slice text; /* owned by the filter once added */
};

struct filter_atom {
    enum filter_field field;
    struct pattern *pats; /* npats >= 1 */
    size_t npats;
};

struct filter_item {
    struct filter_atom *atoms;
    size_t natoms;
};

struct filter {
    struct filter_item *items; /* any of; none = every event */
    size_t nitems;
    bool has_time_from, has_time_to;
    int64_t time_from_us, time_to_us; /* effective time bounds, inclusive */
    void **owned;                     /* every allocation, freed by filter_fini */
    size_t nowned, owned_cap;
};

void filter_init(struct filter *f);
void filter_fini(struct filter *f);

/* Parses one pattern: "*" is PAT_ANY, a trailing '*' a prefix, a leading '*' a suffix (when
 * allow_suffix), else exact. Any other '*' and an empty text are refused. The text stays
 * borrowed until added to a filter. Returns 0 or ERR_INVALID. */
int pattern_parse(struct slice text, bool allow_suffix, struct pattern *out);

/* Adds an empty item and returns it, or NULL when the filter has FILTER_MAX_ITEMS. */
struct filter_item *filter_add_item(struct filter *f);
/* Adds an atom (copying the patterns and their texts) to item it of f. Returns 0, or
 * ERR_TOOBIG when the item has FILTER_MAX_ATOMS atoms or n > FILTER_MAX_PATTERNS. */
int filter_add_atom(struct filter *f, struct filter_item *it, enum filter_field field,
                    const struct pattern *pats, size_t n);
/* f := f AND g (the cross product of their items; g's time bounds are not used). An empty
 * side means "every event". Returns 0, or ERR_TOOBIG when the result has too many items
 * (f is then unchanged). */
int filter_and(struct filter *f, const struct filter *g);
/* f := f OR g (g's items appended). Both must have items (an empty filter matches all and
 * cannot be OR'd as such). Returns 0 or ERR_TOOBIG. */
int filter_or(struct filter *f, const struct filter *g);

/* True when ev matches f. */
bool filter_match(const struct filter *f, const struct event_rec *ev);
/* The category of a stream name: up to the first '-', '_', ':' or '/' (all of it if none). */
struct slice filter_category(struct slice stream);

enum { FILTER_TAG_SCRATCH = 512 }; /* room for one unescaped tag (tags are <= 256 bytes) */

/* Iterates the tags of a stored tags array (canonical text: filter_json_string's): start with
 * *pos = 0; each call sets *tag (pointing into scratch when the tag had escapes) and returns
 * true, or returns false at the end (or at text that is not a canonical array). */
bool filter_next_tag(struct slice tags, size_t *pos, char scratch[FILTER_TAG_SCRATCH],
                     struct slice *tag);
/* Appends the canonical JSON text of a string (only '"' and '\\' escaped; the bytes must hold
 * no control characters) to out. */
void filter_json_string(struct slice s, struct buf *out);

#endif
