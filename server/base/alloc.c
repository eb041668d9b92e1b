/* server/base/alloc.c — counted allocation, the fault hook, quotas. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

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

void *td_malloc(size_t n)
{
    if (n > SIZE_MAX - ALLOC_HDR || alloc_should_fail()) {
        return NULL;
    }
    unsigned char *p = malloc(n + ALLOC_HDR);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &n, sizeof n);
    atomic_fetch_add(&live_bytes, (int64_t)n);
    return p + ALLOC_HDR;
}

void *td_calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    void *p = td_malloc(count * size);
    if (p != NULL) {
        memset(p, 0, count * size);
    }
    return p;
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
