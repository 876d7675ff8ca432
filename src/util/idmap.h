/* A hash map from 16-byte ids (event UUIDs) to 64-bit values: open addressing with linear
 * probing, keys stored inline (no allocation per entry, one cache line per probe). Ids are
 * hashed whole with a per-process random seed.
 * No single removal: rebuild with idmap_keep_above. Single-threaded: the owner serialises access. */
#ifndef UTIL_IDMAP_H
#define UTIL_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idmap_slot {
    uint8_t id[16];
    uint64_t val;  /* 0 = empty slot: values must be non-zero */
};

struct idmap {
    struct idmap_slot *slots; /* owned; cap entries */
    size_t cap;               /* power of two, 0 when empty */
    size_t count;             /* live entries */
};

void idmap_init(struct idmap *m);
void idmap_fini(struct idmap *m);
/* Sets id's value (val != 0), replacing any earlier one. */
void idmap_put(struct idmap *m, const uint8_t id[16], uint64_t val);
/* id's value, or 0 when absent. */
uint64_t idmap_get(const struct idmap *m, const uint8_t id[16]);
/* Keeps only the entries whose value is greater than min_val. */
void idmap_keep_above(struct idmap *m, uint64_t min_val);

#endif
