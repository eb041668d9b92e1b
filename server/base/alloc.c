/* server/base/alloc.c — counted allocation, the fault hook, quotas. */
#include "alloc.h"

#include <stdint.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A 16-byte prefix records the size so td_free can uncount it and user memory stays 16-aligned. */
#define ALLOC_HDR 16

static _Atomic int64_t live_bytes;
static _Atomic int64_t alloc_count;
static _Atomic int64_t fail_at;

static int alloc_should_fail(void)
{
    int64_t n = atomic_fetch_add(&alloc_count, 1) + 1;
    int64_t f = atomic_load(&fail_at);
    return f > 0 && n == f;
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
    atomic_fetch_add(&live_bytes, (int64_t)n);
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
    atomic_fetch_add(&live_bytes, (int64_t)n - (int64_t)old);
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
    atomic_fetch_sub(&live_bytes, (int64_t)n);
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
    return atomic_load(&live_bytes);
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
