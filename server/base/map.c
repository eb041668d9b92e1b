/* server/base/map.c — linear probing with tombstones; grows at 3/4 load.
**
** Slots come from SipHash-1-3 under the process key (base/siphash.h): clients choose handles, and
** with an unkeyed, invertible mix they could choose keys that all share one home slot, which
** makes every insert walk the whole cluster (100,000 such creates took 8 s instead of 0.7 s).
*/
#include "map.h"

#include "alloc.h"
#include "err.h"
#include "siphash.h"

#define MAP_TOMB UINT64_MAX

static size_t map_hash(uint64_t k)
{
    return (size_t)td_siphash13_u64_recent(k);
}

void td_map_init(struct td_map *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->len = m->used = 0;
}

void td_map_close(struct td_map *m)
{
    td_free(m->keys);
    td_free(m->vals);
    td_map_init(m);
}

static size_t map_find(const struct td_map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key || m->keys[i] == 0) {
            return i;
        }
    }
}

void *td_map_get(const struct td_map *m, uint64_t key)
{
    if (m->cap == 0) {
        return NULL;
    }
    size_t i = map_find(m, key);
    return m->keys[i] == key ? m->vals[i] : NULL;
}

static int map_grow(struct td_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    if (m->len * 2 < m->cap) {
        ncap = m->cap; /* mostly tombstones: rehash at the same size */
    }
    uint64_t *nk = td_calloc(ncap, sizeof *nk);
    void **nv = td_calloc(ncap, sizeof *nv);
    if (nk == NULL || nv == NULL) {
        td_free(nk);
        td_free(nv);
        return TD_ENOMEM;
    }
    struct td_map old = *m;
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    m->len = m->used = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.keys[i] != 0 && old.keys[i] != MAP_TOMB) {
            size_t j = map_find(m, old.keys[i]);
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
            m->len++;
            m->used++;
        }
    }
    td_free(old.keys);
    td_free(old.vals);
    return 0;
}

int td_map_put(struct td_map *m, uint64_t key, void *val)
{
    if (m->cap != 0) {
        size_t i = map_find(m, key);
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
    }
    if ((m->used + 1) * 4 > m->cap * 3) {
        int rc = map_grow(m);
        if (rc != 0) {
            return rc;
        }
    }
    /* Reuse the first tombstone on the probe path, else the empty slot. */
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == 0 || m->keys[i] == MAP_TOMB) {
            if (m->keys[i] == 0) {
                m->used++;
            }
            m->keys[i] = key;
            m->vals[i] = val;
            m->len++;
            return 0;
        }
    }
}

void *td_map_del(struct td_map *m, uint64_t key)
{
    if (m->cap == 0) {
        return NULL;
    }
    size_t i = map_find(m, key);
    if (m->keys[i] != key) {
        return NULL;
    }
    void *v = m->vals[i];
    m->keys[i] = MAP_TOMB;
    m->vals[i] = NULL;
    m->len--;
    return v;
}

int td_map_next(const struct td_map *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->keys[i] != 0 && m->keys[i] != MAP_TOMB) {
            *key = m->keys[i];
            *val = m->vals[i];
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}

void td_map_probe_stats(const struct td_map *m, size_t *max_probe, uint64_t *total_probes)
{
    size_t mask = m->cap - 1, worst = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] != 0 && m->keys[i] != MAP_TOMB) {
            size_t probes = ((i - (map_hash(m->keys[i]) & mask)) & mask) + 1;
            worst = probes > worst ? probes : worst;
            total += probes;
        }
    }
    *max_probe = worst;
    *total_probes = total;
}
