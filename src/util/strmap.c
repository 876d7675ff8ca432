/* Open-addressing string map. Each slot holds the key's hash and one owned block: the value
 * (value_size bytes, rounded up to 8), then a NUL-terminated copy of the key, so a lookup
 * that finds its slot touches one more cache line or two, not two separate allocations.
 * Deletion shifts later members of the probe run back, so there are no tombstones and lookups
 * stop at the first empty slot. Load factor is kept <= 1/2. */
#include "util/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

struct strmap_slot {
    uint64_t hash;  /* full hash of the key */
    char *key;      /* in val's block; NULL = empty slot */
    size_t len;     /* key bytes */
    void *val;      /* owned block: the value, then the key */
};

/* Where the key starts in a slot's block. */
static size_t key_offset(const struct strmap *m)
{
    return (m->value_size + 7) & ~(size_t)7;
}

uint64_t strmap_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

void strmap_init(struct strmap *m, size_t value_size)
{
    memset(m, 0, sizeof(*m));
    m->value_size = value_size;
}

void strmap_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key) {
            free(m->slots[i].val);
        }
    }
    if (m->cap) {
        memset(m->slots, 0, m->cap * sizeof(*m->slots));
    }
    m->count = 0;
}

void strmap_fini(struct strmap *m)
{
    strmap_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

static size_t find(const struct strmap *m, uint64_t h, const void *key, size_t len)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slots[i].key) {
        const struct strmap_slot *s = &m->slots[i];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            return i;
        }
        i = (i + 1) & mask;
    }
    return i;
}

void *strmap_get(const struct strmap *m, const void *key, size_t len)
{
    if (!m->count) {
        return NULL;
    }
    size_t i = find(m, strmap_hash(key, len), key, len);
    return m->slots[i].key ? m->slots[i].val : NULL;
}

static void grow(struct strmap *m)
{
    size_t old_cap = m->cap;
    struct strmap_slot *old = m->slots;
    m->cap = old_cap ? old_cap * 2 : 16;
    m->slots = xcalloc(m->cap, sizeof(*m->slots));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key) {
            size_t j = find(m, old[i].hash, old[i].key, old[i].len);
            m->slots[j] = old[i];
        }
    }
    free(old);
}

void *strmap_put(struct strmap *m, const void *key, size_t len, bool *out_is_new)
{
    if ((m->count + 1) * 2 > m->cap) {
        grow(m);
    }
    uint64_t h = strmap_hash(key, len);
    size_t i = find(m, h, key, len);
    struct strmap_slot *s = &m->slots[i];
    if (out_is_new) {
        *out_is_new = s->key == NULL;
    }
    if (!s->key) {
        size_t at = key_offset(m);
        char *block = xcalloc(1, at + len + 1);
        memcpy(block + at, key, len);
        s->hash = h;
        s->key = block + at;
        s->len = len;
        s->val = block;
        m->count++;
    }
    return s->val;
}

bool strmap_remove(struct strmap *m, const void *key, size_t len)
{
    if (!m->count) {
        return false;
    }
    size_t mask = m->cap - 1;
    size_t i = find(m, strmap_hash(key, len), key, len);
    if (!m->slots[i].key) {
        return false;
    }
    free(m->slots[i].val);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward-shift deletion: move later members of the run into the hole when their home
     * slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)m->slots[j].hash & mask;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->slots[hole] = m->slots[j];
            m->slots[j].key = NULL;
            hole = j;
        }
    }
    return true;
}

bool strmap_next(const struct strmap *m, size_t *pos, const char **key, size_t *klen, void **val)
{
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->slots[i].key) {
            *key = m->slots[i].key;
            *klen = m->slots[i].len;
            *val = m->slots[i].val;
            *pos = i + 1;
            return true;
        }
    }
    *pos = m->cap;
    return false;
}
