/* server/base/map.h — an open-addressing hash map from uint64 keys to pointers.
**
** Used for handle tables and the session index. Key 0 is reserved (it marks empty slots), so
** callers never store it. Keys are hashed with SipHash-1-3 under the process key
** (td_siphash_key_init, at start), so clients cannot choose colliding keys. Not thread-safe:
** each map is owned by one thread at a time.
*/
#ifndef TD_BASE_MAP_H
#define TD_BASE_MAP_H

#include <stddef.h>
#include <stdint.h>

struct td_map {
    uint64_t *keys; /* 0 = empty, UINT64_MAX = tombstone */
    void **vals;
    size_t cap;  /* power of two, or 0 */
    size_t len;  /* live entries */
    size_t used; /* live + tombstones */
};

void td_map_init(struct td_map *m);
void td_map_close(struct td_map *m); /* frees the table, not the values */

/* Returns the value for key, or NULL. */
void *td_map_get(const struct td_map *m, uint64_t key);

/* Inserts or replaces; returns 0 or TD_ENOMEM. key must not be 0 or UINT64_MAX. */
int td_map_put(struct td_map *m, uint64_t key, void *val);

/* Removes key and returns its value, or NULL when absent. */
void *td_map_del(struct td_map *m, uint64_t key);

/* Iteration: `for (size_t i = 0; td_map_next(m, &i, &k, &v);)`. Do not insert while iterating;
** deleting the current key is allowed. */
int td_map_next(const struct td_map *m, size_t *iter, uint64_t *key, void **val);

/* Probe lengths of the live keys, as td_map_get walks them (1: found in its home slot): the
** longest, and their sum (sum / len is the mean). For tests and diagnostics; O(cap). */
void td_map_probe_stats(const struct td_map *m, size_t *max_probe, uint64_t *total_probes);

#endif
