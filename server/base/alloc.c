/* server/base/alloc.c — counted allocation, the fault hook, quotas. */
#include "alloc.h"

#include <stdbool.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

static void count_bytes(int64_t delta)
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
            madvise((void *)a, e - a, MADV_HUGEPAGE);  /* advice only: failure changes nothing */
        }
    }
#else
    (void)p;
    (void)n;
#endif
}

static void *counted(unsigned char *p, size_t n)
{
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &n, sizeof n);
    count_bytes((int64_t)n);
    advise_huge(p, n + ALLOC_HDR);
    return p + ALLOC_HDR;
}

void *td_malloc(size_t n)
{
    if (n > SIZE_MAX - ALLOC_HDR || alloc_should_fail()) {
        return NULL;
    }
    return counted(malloc(n + ALLOC_HDR), n);
}

void *td_calloc(size_t count, size_t size)
{
    if ((size != 0 && count > SIZE_MAX / size) || count * size > SIZE_MAX - ALLOC_HDR ||
        alloc_should_fail()) {
        return NULL;
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
    memcpy(q, &n, sizeof n);
    count_bytes((int64_t)n - (int64_t)old);
    return q + ALLOC_HDR;
}

void td_free(void *p)
{
    if (p == NULL) {
        return;
    }
    unsigned char *base = (unsigned char *)p - ALLOC_HDR;
    size_t n;
    memcpy(&n, base, sizeof n);
    count_bytes(-(int64_t)n);
    free(base);
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
            return td_err_set(err, TD_ELIMIT, "tensor of %lld bytes exceeds %s %lld",
                              (long long)n, c->max_charge_name, (long long)c->max_charge);
        }
    }
    for (struct td_quota *c = q; c != NULL; c = c->parent) {
        int64_t after = atomic_fetch_add(&c->used, n) + n;
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
