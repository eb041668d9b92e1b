/* server/base/alloc.c — counted allocation, the fault hook, quotas. */
#include "alloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A 16-byte prefix records the size so td_free can uncount it and user memory stays 16-aligned. */
#define ALLOC_HDR 16

/* Live bytes are counted per thread: each thread that allocates or frees gets a slot of its own
** (on its own cache line) that only it writes, so the hot path is a plain load and store, not a
** locked read-modify-write bouncing one line between the loop thread and the workers. Memory
** freed by another thread than the one that allocated it makes the two slots differ by the same
** amount; the sum over all slots is the live total. Slots are never reused (a thread that exits
** leaves its count behind); threads beyond the last slot share one atomic counter. */
#define COUNT_SLOTS 256

struct count_slot {
    _Alignas(64) _Atomic int64_t bytes;
};

static struct count_slot slots[COUNT_SLOTS];
static _Atomic int slots_taken;
static _Alignas(64) _Atomic int64_t shared_bytes;
static _Thread_local struct count_slot *my_slot;
static _Thread_local bool my_slot_shared;

static inline void count_bytes(int64_t delta)
{
    struct count_slot *s = my_slot;
    if (s == NULL && !my_slot_shared) {
        int i = atomic_fetch_add(&slots_taken, 1);
        if (i < COUNT_SLOTS) {
            s = my_slot = &slots[i];
        } else {
            my_slot_shared = true;
        }
    }
    if (s != NULL) {
        atomic_store_explicit(&s->bytes,
                              atomic_load_explicit(&s->bytes, memory_order_relaxed) + delta,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&shared_bytes, delta, memory_order_relaxed);
    }
}

/* The fault hook costs one relaxed load while it is off: allocations are counted only while a
** test has armed it. */
static _Alignas(64) _Atomic int64_t fail_at;
static _Atomic int64_t alloc_count;

static int alloc_should_fail(void)
{
    int64_t f = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (f <= 0) {
        return 0;
    }
    return atomic_fetch_add(&alloc_count, 1) + 1 == f;
}

/* Large buffers (tensor storage) ask for transparent huge pages: on these machines a 4 KiB
** first-touch page fault costs tens of microseconds, so touching a fresh 64 MiB buffer page by
** page costs more than the arithmetic done in it. */
#define HUGE_ADVICE_MIN ((size_t)2 << 20)

static void advise_huge(unsigned char *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (n >= HUGE_ADVICE_MIN) {
        uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)4095;
        if (e > a) {
            madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice only: failure changes nothing */
        }
    }
#else
    (void)p;
    (void)n;
#endif
}

/* The header holds the size asked for (what live bytes count) and the capacity behind it (what
** the buffer could hold again when it is reused from the cache below). */
static void put_header(unsigned char *p, size_t n, size_t cap)
{
    memcpy(p, &n, sizeof n);
    memcpy(p + sizeof n, &cap, sizeof cap);
}

static void *counted(unsigned char *p, size_t n)
{
    if (p == NULL) {
        return NULL;
    }
    put_header(p, n, n);
    count_bytes((int64_t)n);
    advise_huge(p, n + ALLOC_HDR);
    return p + ALLOC_HDR;
}

/* Freed large buffers are kept for reuse: a training loop or a benchmark allocates outputs of the
** same few sizes over and over, and a fresh buffer costs a page fault and the kernel's zeroing of
** every (huge) page before the op can write it (5 % of a 2048^2 matmul here). On a VM that hands
** freed memory back to its host (virtio_balloon free page reporting, about 2 s after the free),
** fresh memory costs far more: first touch ran at 0.35-0.45 GB/s here, so a 256 MiB upload into
** fresh memory took 0.6 s against 0.1 s into reused memory. A request takes the smallest cached
** buffer that holds it with at most a quarter to spare. Bounded: at most CACHE_SLOTS buffers of
** at most half the byte limit each, CACHE_DEFAULT_BYTES in all unless td_alloc_cache_limit says
** otherwise; the oldest make room for the newest. Three more bounds (td_alloc_cache_decay,
** td_alloc_cache_node): a buffer unused for the decay time is released by a thread of its own, so
** an idle daemon gives its memory back; the cache never holds more than the node's quota leaves
** free (a charge that would pass it drops the oldest buffers first); and a malloc that fails
** drops the whole cache and tries once more. */
#define CACHE_MIN ((size_t)128 << 10) /* glibc's own heap serves smaller ones well */
#define CACHE_SLOTS 64

/* Under AddressSanitizer the cache stays off (TD_ALLOC_REUSE). */
#define CACHE_ALLOWED TD_ALLOC_REUSE
#define CACHE_DEFAULT_BYTES (CACHE_ALLOWED ? (size_t)256 << 20 : 0)

static _Atomic bool rel_on; /* the releaser below is enabled: one relaxed load when it is not */
static void release(unsigned char *base, size_t cap);

static struct {
    pthread_mutex_t mu;
    unsigned char *buf[CACHE_SLOTS]; /* base pointers (header included) */
    size_t cap[CACHE_SLOTS];
    int64_t at[CACHE_SLOTS]; /* when each was freed, monotonic ms */
    int n;
    size_t bytes, limit;
    /* The decay thread: started by the first td_alloc_cache_decay with a time > 0. */
    pthread_cond_t wake;
    bool decay_started;
    int64_t decay_ms;      /* 0: buffers stay until pushed out */
    struct td_quota *node; /* borrowed; the quota whose limit the cache shares, or NULL */
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER,
           .wake = PTHREAD_COND_INITIALIZER,
           .limit = CACHE_DEFAULT_BYTES};

/* cache.node, readable without the lock (set before the daemon serves; tests change it). */
static struct td_quota *_Atomic cache_node_pub;

/* cache.bytes, readable without the lock (td_quota_charge_bytes compares it on every charge to
** the node's quota). Written under cache.mu only. */
static _Atomic size_t cache_bytes_pub;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Removes entry i, keeping the others in the order they were freed (oldest first). */
static void cache_remove(int i)
{
    cache.bytes -= cache.cap[i];
    cache.n--;
    memmove(&cache.buf[i], &cache.buf[i + 1], (size_t)(cache.n - i) * sizeof cache.buf[0]);
    memmove(&cache.cap[i], &cache.cap[i + 1], (size_t)(cache.n - i) * sizeof cache.cap[0]);
    memmove(&cache.at[i], &cache.at[i + 1], (size_t)(cache.n - i) * sizeof cache.at[0]);
    atomic_store_explicit(&cache_bytes_pub, cache.bytes, memory_order_relaxed);
}

static unsigned char *cache_take(size_t n)
{
    unsigned char *p = NULL;
    pthread_mutex_lock(&cache.mu);
    int best = -1;
    for (int i = 0; i < cache.n; i++) {
        if (cache.cap[i] >= n && cache.cap[i] - n <= n / 4 &&
            (best < 0 || cache.cap[i] < cache.cap[best])) {
            best = i;
        }
    }
    if (best >= 0) {
        p = cache.buf[best];
        put_header(p, n, cache.cap[best]);
        cache_remove(best);
    }
    pthread_mutex_unlock(&cache.mu);
    return p;
}

/* The bytes the node's quota leaves for the cache (SIZE_MAX without a node or a limit). Called
** with cache.mu held. */
static size_t cache_room(void)
{
    struct td_quota *q = cache.node;
    if (q == NULL || q->limit <= 0) {
        return SIZE_MAX;
    }
    int64_t used = atomic_load_explicit(&q->used, memory_order_relaxed);
    return used >= q->limit ? 0 : (size_t)(q->limit - used);
}

/* Drops the oldest entries until at most `keep` bytes stay, into drop[] and their capacities
** into dropcap[] (may be NULL), for the caller to unmap outside the lock. Called with cache.mu
** held; returns how many were dropped. */
static int cache_shrink(size_t keep, unsigned char **drop, size_t *dropcap)
{
    int ndrop = 0;
    while (cache.n > 0 && cache.bytes > keep) {
        if (dropcap != NULL) {
            dropcap[ndrop] = cache.cap[0];
        }
        drop[ndrop++] = cache.buf[0];
        cache_remove(0);
    }
    return ndrop;
}

/* Keeps base for reuse, making room by dropping the oldest entries (the sizes in use change
** from one workload to the next; the newest are the likeliest to be asked for again). */
static bool cache_put(unsigned char *base, size_t cap)
{
    unsigned char *drop[CACHE_SLOTS];
    size_t dropcap[CACHE_SLOTS];
    int ndrop = 0;
    bool kept = false;
    pthread_mutex_lock(&cache.mu);
    size_t room = cache_room();
    size_t limit = cache.limit < room ? cache.limit : room;
    if (cap <= cache.limit / 2 && cap <= limit) {
        while (cache.n > 0 && (cache.n == CACHE_SLOTS || cache.bytes + cap > limit)) {
            dropcap[ndrop] = cache.cap[0];
            drop[ndrop++] = cache.buf[0];
            cache_remove(0);
        }
        cache.buf[cache.n] = base;
        cache.cap[cache.n] = cap;
        cache.at[cache.n] = cache.decay_ms > 0 ? mono_ms() : 0;
        cache.n++;
        cache.bytes += cap;
        atomic_store_explicit(&cache_bytes_pub, cache.bytes, memory_order_relaxed);
        kept = true;
        if (cache.n == 1 && cache.decay_started) {
            pthread_cond_signal(&cache.wake); /* the decay thread sleeps while the cache is empty */
        }
    }
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < ndrop; i++) {
        release(drop[i], dropcap[i]); /* outside the lock: unmapping takes a while */
    }
    return kept;
}

/* Drops cached buffers until the node's quota, with `after` bytes charged, leaves room for
** what stays. td_quota_charge_bytes calls it when a charge to the node would pass the limit with
** the cache counted: memory for a session's tensor comes before memory kept for reuse. */
static void cache_yield(int64_t after, int64_t limit)
{
    unsigned char *drop[CACHE_SLOTS];
    pthread_mutex_lock(&cache.mu);
    int ndrop = cache_shrink(after >= limit ? 0 : (size_t)(limit - after), drop, NULL);
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < ndrop; i++) {
        free(drop[i]); /* in the caller: the memory is wanted now, not when a thread gets to it */
    }
}

/* The decay thread: releases buffers unused for cache.decay_ms, checking a quarter of that time
** after the oldest would expire; sleeps while the cache is empty. Frees outside the lock. */
static void helper_lower(void);
static void *decay_main(void *arg)
{
    (void)arg;
    (void)prctl(PR_SET_NAME, "td-decay"); /* as top -H and /proc/<pid>/task/<tid>/comm show it */
    helper_lower();
    pthread_mutex_lock(&cache.mu);
    for (;;) {
        int64_t decay = cache.decay_ms;
        if (cache.n == 0 || decay <= 0) {
            pthread_cond_wait(&cache.wake, &cache.mu);
            continue;
        }
        int64_t now = mono_ms();
        unsigned char *drop[CACHE_SLOTS];
        int ndrop = 0;
        while (cache.n > 0 && now - cache.at[0] >= decay) {
            drop[ndrop++] = cache.buf[0];
            cache_remove(0);
        }
        if (ndrop > 0) {
            pthread_mutex_unlock(&cache.mu);
            for (int i = 0; i < ndrop; i++) {
                free(drop[i]);
            }
            pthread_mutex_lock(&cache.mu);
            continue;
        }
        /* The oldest expires at at[0] + decay; wake then (plus a little), or when told. */
        int64_t wait_ms = cache.at[0] + decay - now + decay / 4 + 1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(wait_ms / 1000);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cache.wake, &cache.mu, &ts);
    }
    return NULL;
}

/* Unmapping a large buffer whose pages were touched takes the kernel a while (a 512 MiB tensor:
** tens of ms here, over 100 ms on a loaded machine), and most frees run on the event loop (a Free
** request, an overwritten handle, a closed session). Buffers of RELEASE_MIN bytes and more go to
** a releaser thread instead, through a bounded ring: at most `limit` bytes wait there (set by
** td_alloc_release_limit; 0, the default, frees in the caller), so the memory held beyond the
** quotas, which stop counting a buffer when it is freed, is bounded. When the ring is full, or
** the thread cannot be started, the caller frees the buffer itself. */
#define RELEASE_MIN ((size_t)8 << 20)
#define RELEASE_SLOTS 64

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_once_t once;
    bool started;
    unsigned char *buf[RELEASE_SLOTS]; /* a ring: head is the oldest */
    size_t cap[RELEASE_SLOTS];
    int head, n;
    size_t bytes, limit;
} rel = {.mu = PTHREAD_MUTEX_INITIALIZER,
         .wake = PTHREAD_COND_INITIALIZER,
         .once = PTHREAD_ONCE_INIT};

static void *releaser_main(void *arg)
{
    (void)arg;
    (void)prctl(PR_SET_NAME, "td-release");
    helper_lower();
    pthread_mutex_lock(&rel.mu);
    for (;;) {
        while (rel.n == 0) {
            pthread_cond_wait(&rel.wake, &rel.mu);
        }
        unsigned char *base = rel.buf[rel.head];
        size_t cap = rel.cap[rel.head];
        rel.head = (rel.head + 1) % RELEASE_SLOTS;
        rel.n--;
        pthread_mutex_unlock(&rel.mu);
        free(base);
        pthread_mutex_lock(&rel.mu);
        rel.bytes -= cap; /* counted until the pages are really gone */
    }
    return NULL;
}

/* The nice value the helper threads below give themselves (td_alloc_helper_priority): they do
** background work, and run at the heavy workers' priority, below the loop's. */
static _Atomic bool helper_prio_set;
static _Atomic int helper_prio;

void td_alloc_helper_priority(int prio)
{
    atomic_store(&helper_prio, prio);
    atomic_store(&helper_prio_set, true);
}

static void helper_lower(void)
{
    if (atomic_load(&helper_prio_set)) {
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), atomic_load(&helper_prio));
    }
}

/* Starts a detached helper thread (the releaser, the cache's decay) with every signal blocked:
** signals are the loop's to handle. A small stack, as the helpers need little; but glibc carves
** the static TLS of every loaded library out of it (OpenBLAS alone takes 60 KiB here, which made
** the 64 KiB stack these threads once asked for fail to start at all), so it is 64 KiB beyond
** that, and the default size if even that is refused. Returns whether the thread runs. */
static bool helper_start(void *(*fn)(void *))
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = false;
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_attr_setstacksize(&attr, (size_t)256 << 10) == 0) {
            ok = pthread_create(&t, &attr, fn, NULL) == 0;
        }
        pthread_attr_destroy(&attr);
    }
    if (!ok && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&t, &attr, fn, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

static void releaser_start(void)
{
    rel.started = helper_start(releaser_main);
}

/* Frees base (cap bytes) now or through the releaser. */
static void release(unsigned char *base, size_t cap)
{
    if (cap >= RELEASE_MIN && atomic_load_explicit(&rel_on, memory_order_relaxed)) {
        pthread_once(&rel.once, releaser_start);
        pthread_mutex_lock(&rel.mu);
        bool queued = rel.started && rel.n < RELEASE_SLOTS && cap <= rel.limit &&
                      rel.bytes <= rel.limit - cap;
        if (queued) {
            rel.buf[(rel.head + rel.n) % RELEASE_SLOTS] = base;
            rel.cap[(rel.head + rel.n) % RELEASE_SLOTS] = cap;
            rel.n++;
            rel.bytes += cap;
            pthread_cond_signal(&rel.wake);
        }
        pthread_mutex_unlock(&rel.mu);
        if (queued) {
            return;
        }
    }
    free(base);
}

void td_alloc_release_limit(size_t bytes)
{
    pthread_mutex_lock(&rel.mu);
    rel.limit = bytes;
    pthread_mutex_unlock(&rel.mu);
    atomic_store(&rel_on, bytes > 0);
}

size_t td_alloc_releasing_bytes(void)
{
    pthread_mutex_lock(&rel.mu);
    size_t n = rel.bytes;
    pthread_mutex_unlock(&rel.mu);
    return n;
}

/* Small blocks are kept per thread for the same thread's next allocations of their size class:
** tensor headers, storages, buffers and request bookkeeping come and go in bursts (a Free of 256
** handles releases about a thousand), far more than glibc's per-thread cache keeps (7 a size),
** and its overflow path costs several times its fast one. A freed block counts as freed at
** once (live bytes stay exact); a thread keeps at most SMALL_KEEP_BYTES, and gives them back
** when it exits. Off under AddressSanitizer (reuse would hide a use after free), like the cache
** above. The fault hook is asked before a bin is. */
#define SMALL_MAX 256 /* user bytes; classes of 16 */
#define SMALL_CLASSES (SMALL_MAX / 16)
#define SMALL_KEEP_BYTES ((size_t)128 << 10)

static _Thread_local struct {
    unsigned char *head[SMALL_CLASSES]; /* base pointers; each links to the next in its user
                                        ** bytes */
    size_t bytes;
    bool registered; /* bins_key set: small_exit runs when the thread exits */
} bins;
static pthread_key_t bins_key;
static pthread_once_t bins_once = PTHREAD_ONCE_INIT;

static void small_exit(void *unused)
{
    (void)unused;
    for (int c = 0; c < SMALL_CLASSES; c++) {
        while (bins.head[c] != NULL) {
            unsigned char *p = bins.head[c];
            memcpy(&bins.head[c], p + ALLOC_HDR, sizeof p);
            free(p);
        }
    }
    bins.bytes = 0;
}

static void small_key_init(void)
{
    (void)pthread_key_create(&bins_key, small_exit);
}

/* The capacity of n's class: n rounded up to 16, at least 16. */
static size_t small_cap(size_t n)
{
    return n == 0 ? 16 : (n + 15) & ~(size_t)15;
}

static unsigned char *small_take(size_t cap)
{
    unsigned char **head = &bins.head[cap / 16 - 1];
    unsigned char *p = *head;
    if (p != NULL) {
        memcpy(head, p + ALLOC_HDR, sizeof p);
        bins.bytes -= cap + ALLOC_HDR;
    }
    return p;
}

static inline bool small_put(unsigned char *base, size_t cap)
{
    if (!CACHE_ALLOWED || cap == 0 || cap > SMALL_MAX || (cap & 15) != 0 ||
        bins.bytes + cap + ALLOC_HDR > SMALL_KEEP_BYTES) {
        return false;
    }
    if (!bins.registered) {
        pthread_once(&bins_once, small_key_init);
        bins.registered = pthread_setspecific(bins_key, &bins) == 0;
        if (!bins.registered) {
            return false;
        }
    }
    unsigned char **head = &bins.head[cap / 16 - 1];
    memcpy(base + ALLOC_HDR, head, sizeof *head);
    *head = base;
    bins.bytes += cap + ALLOC_HDR;
    return true;
}

/* A small block of n bytes from this thread's bins or from malloc (zeroed when `zero`). */
static inline void *small_alloc(size_t n, bool zero)
{
    size_t cap = small_cap(n);
    unsigned char *p = small_take(cap);
    if (p != NULL) {
        if (zero) {
            memset(p + ALLOC_HDR, 0, cap);
        }
    } else if ((p = zero ? calloc(1, cap + ALLOC_HDR) : malloc(cap + ALLOC_HDR)) == NULL) {
        return NULL;
    }
    put_header(p, n, cap);
    count_bytes((int64_t)n);
    return p + ALLOC_HDR;
}

void td_alloc_cache_limit(size_t bytes)
{
    unsigned char *drop[CACHE_SLOTS];
    pthread_mutex_lock(&cache.mu);
    cache.limit = CACHE_ALLOWED ? bytes : 0;
    int ndrop = cache_shrink(cache.limit, drop, NULL); /* the oldest go first */
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < ndrop; i++) {
        free(drop[i]);
    }
}

size_t td_alloc_cached_bytes(void)
{
    pthread_mutex_lock(&cache.mu);
    size_t n = cache.bytes;
    pthread_mutex_unlock(&cache.mu);
    return n;
}

void td_alloc_cache_decay(int64_t ms)
{
    pthread_mutex_lock(&cache.mu);
    cache.decay_ms = ms > 0 ? ms : 0;
    int64_t now = mono_ms();
    for (int i = 0; i < cache.n; i++) {
        cache.at[i] = now; /* their clock starts now */
    }
    if (ms > 0 && !cache.decay_started && CACHE_ALLOWED) {
        cache.decay_started = helper_start(decay_main);
    }
    pthread_cond_signal(&cache.wake);
    pthread_mutex_unlock(&cache.mu);
}

void td_alloc_cache_node(struct td_quota *node)
{
    unsigned char *drop[CACHE_SLOTS];
    pthread_mutex_lock(&cache.mu);
    cache.node = node;
    atomic_store(&cache_node_pub, node);
    int ndrop = cache_shrink(cache_room(), drop, NULL);
    pthread_mutex_unlock(&cache.mu);
    for (int i = 0; i < ndrop; i++) {
        free(drop[i]);
    }
}

/* malloc, and when it fails with buffers cached, malloc again after dropping them all. */
static unsigned char *malloc_or_drop(size_t n)
{
    unsigned char *p = malloc(n);
    if (p == NULL && atomic_load_explicit(&cache_bytes_pub, memory_order_relaxed) > 0) {
        cache_yield(0, 0);
        p = malloc(n);
    }
    return p;
}

void *td_malloc(size_t n)
{
    if (n > SIZE_MAX - ALLOC_HDR || alloc_should_fail()) {
        return NULL;
    }
    if (n <= SMALL_MAX) {
        return small_alloc(n, false);
    }
    if (n >= CACHE_MIN) {
        unsigned char *p = cache_take(n);
        if (p != NULL) {
            count_bytes((int64_t)n);
            return p + ALLOC_HDR;
        }
    }
    return counted(n >= CACHE_MIN ? malloc_or_drop(n + ALLOC_HDR) : malloc(n + ALLOC_HDR), n);
}

void *td_calloc(size_t count, size_t size)
{
    if ((size != 0 && count > SIZE_MAX / size) || count * size > SIZE_MAX - ALLOC_HDR ||
        alloc_should_fail()) {
        return NULL;
    }
    if (count * size <= SMALL_MAX) {
        return small_alloc(count * size, true);
    }
    /* calloc, not malloc + memset: fresh pages from the kernel are already zero, and libc knows
    ** when it can skip the clearing. */
    return counted(calloc(1, count * size + ALLOC_HDR), count * size);
}

void *td_realloc(void *p, size_t n)
{
    if (p == NULL) {
        return td_malloc(n);
    }
    if (n > SIZE_MAX - ALLOC_HDR || alloc_should_fail()) {
        return NULL;
    }
    unsigned char *base = (unsigned char *)p - ALLOC_HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    unsigned char *q = realloc(base, n + ALLOC_HDR);
    if (q == NULL) {
        return NULL;
    }
    put_header(q, n, n);
    count_bytes((int64_t)n - (int64_t)old);
    return q + ALLOC_HDR;
}

void td_free(void *p)
{
    if (p == NULL) {
        return;
    }
    unsigned char *base = (unsigned char *)p - ALLOC_HDR;
    size_t n, cap;
    memcpy(&n, base, sizeof n);
    memcpy(&cap, base + sizeof n, sizeof cap);
    count_bytes(-(int64_t)n);
    if (cap <= SMALL_MAX) {
        if (!small_put(base, cap)) {
            free(base);
        }
    } else if (cap < CACHE_MIN || !cache_put(base, cap)) {
        release(base, cap);
    }
}

char *td_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = td_malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

int64_t td_alloc_live_bytes(void)
{
    int64_t total = atomic_load_explicit(&shared_bytes, memory_order_relaxed);
    int n = atomic_load(&slots_taken);
    for (int i = 0; i < n && i < COUNT_SLOTS; i++) {
        total += atomic_load_explicit(&slots[i].bytes, memory_order_relaxed);
    }
    return total;
}

void td_alloc_fail_at(int64_t n)
{
    atomic_store(&alloc_count, 0);
    atomic_store(&fail_at, n);
}

int64_t td_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

void td_quota_init(struct td_quota *q, const char *name, int64_t limit, struct td_quota *parent)
{
    atomic_init(&q->used, 0);
    q->limit = limit;
    q->max_charge = 0;
    q->max_charge_name = "max_tensor_bytes";
    q->parent = parent;
    q->name = name;
}

int td_quota_charge(struct td_quota *q, int64_t n, struct td_err *err)
{
    for (struct td_quota *c = q; c != NULL; c = c->parent) {
        if (c->max_charge > 0 && n > c->max_charge) {
            return td_err_set(err, TD_ELIMIT, "tensor of %lld bytes exceeds %s %lld", (long long)n,
                              c->max_charge_name, (long long)c->max_charge);
        }
    }
    return td_quota_charge_bytes(q, n, err);
}

int td_quota_charge_bytes(struct td_quota *q, int64_t n, struct td_err *err)
{
    for (struct td_quota *c = q; c != NULL; c = c->parent) {
        int64_t after = atomic_fetch_add(&c->used, n) + n;
        if (c == atomic_load_explicit(&cache_node_pub, memory_order_relaxed) && c->limit > 0 &&
            after <= c->limit &&
            (int64_t)atomic_load_explicit(&cache_bytes_pub, memory_order_relaxed) >
                c->limit - after) {
            cache_yield(after, c->limit); /* the node's cap holds, cache included */
        }
        if (c->limit > 0 && after > c->limit) {
            /* Undo this level and every level already charged, then report the one that hit. */
            for (struct td_quota *u = q; u != c->parent; u = u->parent) {
                atomic_fetch_sub(&u->used, n);
            }
            return td_err_set(err, TD_EQUOTA, "%s quota exceeded: %lld bytes", c->name,
                              (long long)c->limit);
        }
    }
    return 0;
}

void td_quota_release(struct td_quota *q, int64_t n)
{
    for (struct td_quota *c = q; c != NULL; c = c->parent) {
        atomic_fetch_sub(&c->used, n);
    }
}
