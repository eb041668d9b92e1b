/* server/base/alloc.h — the one place memory comes from, and byte quotas.
**
** Every allocation in the server goes through td_malloc/td_free so that live bytes are counted
** and tests can make the Nth allocation fail (the fault hook). Quotas are plain counters with a
** limit and an optional parent (a session's quota chains to the global one); core charges tensor
** storage to the quota its caller passes, so quotas work without core knowing sessions exist.
** Counters are atomic because a session's storage may be released on the loop thread while the
** same session's job runs on a worker thread. Depends on libc only.
*/
#ifndef TD_BASE_ALLOC_H
#define TD_BASE_ALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* TD_ALLOC_REUSE: 0 under AddressSanitizer, where memory is never kept for reuse (the buffer
** cache, the small-block bins, rpc's job list): reuse would hide a use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define TD_ALLOC_REUSE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TD_ALLOC_REUSE 0
#endif
#endif
#ifndef TD_ALLOC_REUSE
#define TD_ALLOC_REUSE 1
#endif

/* Returns 16-byte-aligned memory or NULL (also when the fault hook fires). */
void *td_malloc(size_t n);
void *td_calloc(size_t count, size_t size); /* NULL on count*size overflow */
void *td_realloc(void *p, size_t n);        /* like realloc; p may be NULL */
void td_free(void *p);                      /* NULL is a no-op */
char *td_strdup(const char *s);

/* Live bytes handed out by td_malloc and friends, process-wide (the sum of per-thread counts:
** exact when no other thread is allocating, a moment's approximation otherwise). */
int64_t td_alloc_live_bytes(void);

/* Freed buffers of 128 KiB and more are kept for reuse, up to `bytes` in all (default 256 MiB;
** each at most half of it; 0 turns the cache off and frees what it holds). They are not live
** bytes; td_alloc_cached_bytes says how much the cache holds. */
void td_alloc_cache_limit(size_t bytes);
size_t td_alloc_cached_bytes(void);

/* Cached buffers unused for `ms` are released by a thread of the cache's own (started by the
** first call with ms > 0; 0, the default, keeps them until newer ones push them out). */
void td_alloc_cache_decay(int64_t ms);

struct td_quota;
/* The quota whose limit bounds the node's memory (the global one; NULL: none). The cache then
** never holds more than that limit less the quota's used bytes: a charge that would pass the
** limit with the cache counted drops the oldest cached buffers first. */
void td_alloc_cache_node(struct td_quota *node);

/* Freed buffers of 8 MiB and more that the cache does not keep are unmapped by a releaser
** thread, off the caller's (the event loop's) time, while at most `bytes` wait for it (0, the
** default, frees them in the caller). td_alloc_releasing_bytes says how much waits now. */
void td_alloc_release_limit(size_t bytes);
size_t td_alloc_releasing_bytes(void);

/* The nice value the allocator's helper threads (the releaser, the cache's decay) set for
** themselves when they start (the daemon passes its heavy workers' value); unset, they keep the
** priority of the thread that started them. */
void td_alloc_helper_priority(int prio);

/* Test fault hook: the n-th allocation from now fails (n >= 1); 0 disables. td_alloc_count
** returns how many allocations were made since it was armed (so a sweep knows when it has passed
** the end); allocations are not counted while the hook is off. */
void td_alloc_fail_at(int64_t n);
int64_t td_alloc_count(void);

struct td_quota {
    _Atomic int64_t used; /* bytes charged now */
    int64_t limit;        /* bytes; <= 0 means unlimited */
    int64_t max_charge;   /* largest single charge, e.g. max_tensor_bytes; <= 0: unlimited */
    const char
        *max_charge_name;    /* borrowed static string naming that limit, e.g. "max_tensor_bytes" */
    struct td_quota *parent; /* borrowed; charged too, may be NULL */
    const char *name;        /* borrowed static string for messages, e.g. "session memory" */
};

void td_quota_init(struct td_quota *q, const char *name, int64_t limit, struct td_quota *parent);

/* Charges n bytes to q and its parents, or charges nothing and fails naming the limit that was
** hit: TD_ELIMIT when one charge exceeds a level's max_charge ("tensor of 2048 bytes exceeds
** max_tensor_bytes 1024"), TD_EQUOTA when a level's total would pass its limit ("session memory
** quota exceeded: 1073741824 bytes"). q may be NULL. */
int td_quota_charge(struct td_quota *q, int64_t n, struct td_err *err);

/* As td_quota_charge, without the one-tensor limit (max_charge): for bytes that are not one
** tensor, such as reply text. */
int td_quota_charge_bytes(struct td_quota *q, int64_t n, struct td_err *err);

/* Returns n bytes to q and its parents. q may be NULL. */
void td_quota_release(struct td_quota *q, int64_t n);

#endif
