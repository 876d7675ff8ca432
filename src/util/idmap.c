#include "util/idmap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/buf.h"

/* Mixes all 16 bytes with a per-process random seed: ids chosen by clients (UUIDv1 of one
 * machine, or crafted ones) must not pile onto one probe chain. */
static size_t slot_of(const struct idmap *m, const uint8_t id[16])
{
    static uint64_t seed;
    if (!__atomic_load_n(&seed, __ATOMIC_RELAXED)) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof s, 0) != sizeof s) {
            s = (uint64_t)(uintptr_t)&seed;
        }
        __atomic_store_n(&seed, s | 1, __ATOMIC_RELAXED);
    }
    uint64_t a, b;
    memcpy(&a, id, sizeof a);
    memcpy(&b, id + 8, sizeof b);
    uint64_t h = (a ^ __atomic_load_n(&seed, __ATOMIC_RELAXED)) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 29) ^ b) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h & (m->cap - 1);
}

void idmap_init(struct idmap *m)
{
    memset(m, 0, sizeof(*m));
}

void idmap_fini(struct idmap *m)
{
    free(m->slots);
    idmap_init(m);
}

static void insert(struct idmap *m, const uint8_t id[16], uint64_t val)
{
    size_t i = slot_of(m, id);
    while (m->slots[i].val && memcmp(m->slots[i].id, id, 16) != 0) {
        i = (i + 1) & (m->cap - 1);
    }
    if (!m->slots[i].val) {
        m->count++;
        memcpy(m->slots[i].id, id, 16);
    }
    m->slots[i].val = val;
}

static void resize(struct idmap *m, size_t cap, uint64_t min_val)
{
    struct idmap_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap = cap;
    m->count = 0;
    m->slots = xcalloc(cap, sizeof(*m->slots));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].val > min_val) {
            insert(m, old[i].id, old[i].val);
        }
    }
    free(old);
}

void idmap_put(struct idmap *m, const uint8_t id[16], uint64_t val)
{
    if ((m->count + 1) * 2 > m->cap) {
        resize(m, m->cap ? m->cap * 2 : 1024, 0);
    }
    insert(m, id, val);
}

uint64_t idmap_get(const struct idmap *m, const uint8_t id[16])
{
    if (!m->count) {
        return 0;
    }
    for (size_t i = slot_of(m, id); m->slots[i].val; i = (i + 1) & (m->cap - 1)) {
        if (memcmp(m->slots[i].id, id, 16) == 0) {
            return m->slots[i].val;
        }
    }
    return 0;
}

void idmap_keep_above(struct idmap *m, uint64_t min_val)
{
    size_t live = 0;
    for (size_t i = 0; i < m->cap; i++) {
        live += m->slots[i].val > min_val;
    }
    size_t cap = 1024;
    while (cap < live * 2 + 2) {
        cap *= 2;
    }
    resize(m, cap, min_val);
}
