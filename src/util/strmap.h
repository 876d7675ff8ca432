/* A hash map from byte-string keys to fixed-size values, open addressing with linear probing
 * and tombstone-free deletion (backward shift). Keys are copied; values are stored inline.
 * Single-threaded: the owner serialises access. */
#ifndef UTIL_STRMAP_H
#define UTIL_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap_slot;

struct strmap {
    struct strmap_slot *slots; /* owned; cap entries */
    size_t cap;                /* power of two, 0 when empty */
    size_t count;              /* live entries */
    size_t value_size;         /* bytes per value */
};

/* 64-bit FNV-1a of key bytes (also used by callers that index by name hash). */
uint64_t strmap_hash(const void *key, size_t len);

void strmap_init(struct strmap *m, size_t value_size);
void strmap_fini(struct strmap *m);
void strmap_clear(struct strmap *m);
/* Returns the value stored for key, or NULL. Valid until the next insert or remove. */
void *strmap_get(const struct strmap *m, const void *key, size_t len);
/* Returns the value for key, inserting a zeroed one first when absent (*out_is_new says so).
 * Valid until the next insert or remove. */
void *strmap_put(struct strmap *m, const void *key, size_t len, bool *out_is_new);
/* Removes key; returns whether it was present. */
bool strmap_remove(struct strmap *m, const void *key, size_t len);

/* Iteration: for (size_t i = 0; strmap_next(m, &i, &k, &klen, &v);) ... Do not insert or
 * remove while iterating. */
bool strmap_next(const struct strmap *m, size_t *pos, const char **key, size_t *klen, void **val);

#endif
