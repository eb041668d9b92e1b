/* tests/base/test_base.c — errors, counted allocation, quotas and the hash map. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/map.h"

static void test_err_set_and_names(void **state)
{
    (void)state;
    struct td_err err;
    assert_int_equal(td_err_set(&err, TD_ESHAPE, "dim %d", 3), TD_ESHAPE);
    assert_string_equal(err.msg, "dim 3");
    assert_string_equal(td_err_name(TD_EQUOTA), "TD_EQUOTA");
    assert_string_equal(td_err_name(9999), "?");
    assert_int_equal(td_err_code(NULL, TD_EINVAL), TD_EINVAL); /* NULL err is allowed */
    char long_msg[TD_ERR_MSG_MAX + 200];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    td_err_set(&err, TD_EINVAL, "%s", long_msg);
    assert_int_equal(strlen(err.msg), TD_ERR_MSG_MAX - 1); /* truncated, terminated */
}

static void test_alloc_counts_and_fails(void **state)
{
    (void)state;
    int64_t base = td_alloc_live_bytes();
    void *p = td_malloc(100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal(td_alloc_live_bytes(), base + 100);
    p = td_realloc(p, 300);
    assert_int_equal(td_alloc_live_bytes(), base + 300);
    td_free(p);
    assert_int_equal(td_alloc_live_bytes(), base);
    td_free(NULL);
    assert_null(td_calloc(SIZE_MAX / 2, 4)); /* overflowing count * size */
    td_alloc_fail_at(2);
    void *a = td_malloc(8), *b = td_malloc(8), *c = td_malloc(8);
    td_alloc_fail_at(0);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    td_free(a);
    td_free(c);
    assert_int_equal(td_alloc_live_bytes(), base);
}

/* Large freed buffers are reused (same size, or up to a quarter larger), not counted as live,
** bounded by the limit, and released when the limit drops; under ASan the cache stays off. */
static void test_alloc_cache_reuses_large_buffers(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20;
    td_alloc_cache_limit(64 * mib);
    int64_t base = td_alloc_live_bytes();
    size_t cached0 = td_alloc_cached_bytes();
    unsigned char *p = td_malloc(5 * mib);
    assert_non_null(p);
    memset(p, 0x5a, 5 * mib);
    td_free(p);
    assert_int_equal(td_alloc_live_bytes(), base);
#if defined(__SANITIZE_ADDRESS__)
    assert_int_equal(cached0, 0);
    assert_int_equal(td_alloc_cached_bytes(), 0);
#else
    assert_int_equal(td_alloc_cached_bytes(), cached0 + 5 * mib);
    unsigned char *small = td_malloc(3 * mib); /* 5 MiB would waste more than a quarter */
    assert_true(small != p);
    unsigned char *q = td_malloc(4 * mib + mib / 2); /* fits with < 1/4 to spare: reused */
    assert_ptr_equal(q, p);
    assert_int_equal(td_alloc_live_bytes(), base + (int64_t)(7 * mib + mib / 2));
    assert_int_equal(td_alloc_cached_bytes(), cached0);
    td_free(q);
    td_free(small);
    assert_int_equal(td_alloc_cached_bytes(), cached0 + 8 * mib);
    unsigned char *big = td_malloc(40 * mib); /* more than half of the limit: not kept */
    assert_non_null(big);
    td_free(big);
    assert_int_equal(td_alloc_cached_bytes(), cached0 + 8 * mib);
    /* full: the oldest buffers make room for the newest */
    td_alloc_cache_limit(0);
    td_alloc_cache_limit(64 * mib);
    unsigned char *b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = td_malloc(15 * mib);
        assert_non_null(b[i]);
    }
    for (int i = 0; i < 4; i++) {
        td_free(b[i]);
    }
    assert_int_equal(td_alloc_cached_bytes(), 60 * mib);
    unsigned char *c = td_malloc(10 * mib);
    td_free(c);
    assert_int_equal(td_alloc_cached_bytes(), 45 * mib + 10 * mib); /* b[0] went */
    assert_ptr_equal(td_malloc(10 * mib), c);                       /* the newest is kept */
    td_free(c);
#endif
    td_alloc_cache_limit(0);
    assert_int_equal(td_alloc_cached_bytes(), 0);
    assert_int_equal(td_alloc_live_bytes(), base);
}

/* Waits (bounded) until the releaser thread has unmapped everything handed to it. */
static bool releaser_drains(void)
{
    for (int i = 0; i < 2000 && td_alloc_releasing_bytes() > 0; i++) {
        struct timespec ms = {0, 5000000};
        nanosleep(&ms, NULL);
    }
    return td_alloc_releasing_bytes() == 0;
}

/* Large frees go to the releaser thread while they fit under its limit: live bytes drop at once,
** the waiting bytes never pass the limit, and the thread gets through them; a buffer larger
** than the limit, and every buffer while the limit is 0, is freed by the caller. */
static void test_large_frees_are_released_off_the_callers_thread(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20;
    td_alloc_cache_limit(0); /* every large free is a release */
    int64_t base = td_alloc_live_bytes();
    td_alloc_release_limit(64 * mib);
    for (int round = 0; round < 20; round++) {
        unsigned char *p[6];
        for (int i = 0; i < 6; i++) {
            p[i] = td_malloc(12 * mib);
            assert_non_null(p[i]);
            memset(p[i], i + 1, 12 * mib); /* touched pages: what makes unmapping slow */
        }
        for (int i = 0; i < 6; i++) {
            td_free(p[i]);
            assert_true(td_alloc_releasing_bytes() <= 64 * mib);
        }
        assert_int_equal(td_alloc_live_bytes(), base);
    }
    assert_true(releaser_drains());
    unsigned char *big = td_malloc(80 * mib); /* above the limit: freed here */
    assert_non_null(big);
    td_free(big);
    assert_int_equal(td_alloc_releasing_bytes(), 0);
    td_alloc_release_limit(0);
    unsigned char *q = td_malloc(12 * mib);
    assert_non_null(q);
    td_free(q);
    assert_int_equal(td_alloc_releasing_bytes(), 0);
    assert_int_equal(td_alloc_live_bytes(), base);
    td_alloc_cache_limit(64 * mib);
}

/* A buffer unused for the decay time is released by the decay thread, without any other call
** into the allocator; a buffer reused before then is not lost; decay 0 keeps them again. Bounded
** waits only (no timed assertion: the check is that the bytes go, whenever they do). */
static void test_alloc_cache_decays(void **state)
{
    (void)state;
#if TD_ALLOC_REUSE
    const size_t mib = (size_t)1 << 20;
    td_alloc_cache_limit(0);
    td_alloc_cache_limit(64 * mib);
    unsigned char *p = td_malloc(6 * mib);
    assert_non_null(p);
    memset(p, 1, 6 * mib);
    td_alloc_cache_decay(50);
    td_free(p);
    assert_int_equal(td_alloc_cached_bytes(), 6 * mib); /* kept at first */
    for (int i = 0; i < 2000 && td_alloc_cached_bytes() > 0; i++) {
        struct timespec ms = {0, 5000000};
        nanosleep(&ms, NULL);
    }
    assert_int_equal(td_alloc_cached_bytes(), 0); /* then released: an idle daemon gives back */
    /* A long decay: a buffer freed and taken again stays a reuse, and the thread leaves it. */
    td_alloc_cache_decay(60000);
    unsigned char *q = td_malloc(6 * mib);
    td_free(q);
    unsigned char *r = td_malloc(6 * mib);
    assert_ptr_equal(r, q);
    memset(r, 2, 6 * mib);
    td_free(r);
    td_alloc_cache_decay(0);
    assert_int_equal(td_alloc_cached_bytes(), 6 * mib);
    td_alloc_cache_limit(0);
    td_alloc_cache_limit(64 * mib);
#else
    (void)state;
    td_alloc_cache_decay(50); /* the cache is off: nothing to decay, nothing started */
    assert_int_equal(td_alloc_cached_bytes(), 0);
    td_alloc_cache_decay(0);
#endif
}

/* The node's cap holds with the cache counted: the cache keeps only what the node quota leaves
** free, and a charge that needs the cached bytes gets them (a session can still allocate up to
** its quota while the cache is full); what the cache gives up is never a live buffer. */
static void test_alloc_cache_yields_to_the_node_quota(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20;
    struct td_quota node, sess;
    td_quota_init(&node, "memory", (int64_t)(40 * mib), NULL);
    td_quota_init(&sess, "session memory", 0, &node);
    td_alloc_cache_limit(0);
    td_alloc_cache_limit(64 * mib);
    td_alloc_cache_node(&node);
    /* A live 8 MiB tensor, charged, filled with a pattern the cache must not touch. */
    struct td_err err;
    assert_int_equal(td_quota_charge(&sess, (int64_t)(8 * mib), &err), 0);
    unsigned char *live = td_malloc(8 * mib);
    assert_non_null(live);
    memset(live, 0x33, 8 * mib);
    /* Fill the cache: 3 x 10 MiB freed (uncharged) fit the 32 MiB the node leaves. */
    unsigned char *b[3];
    for (int i = 0; i < 3; i++) {
        assert_non_null(b[i] = td_malloc(10 * mib));
    }
    for (int i = 0; i < 3; i++) {
        td_free(b[i]);
    }
#if TD_ALLOC_REUSE
    assert_int_equal(td_alloc_cached_bytes(), 30 * mib);
    /* Charged 8 + 20 = 28 MiB: the cache may keep 12 MiB, so the oldest two 10 MiB buffers go. */
    assert_int_equal(td_quota_charge(&sess, (int64_t)(20 * mib), &err), 0);
    assert_true(td_alloc_cached_bytes() <= 12 * mib);
    assert_true((int64_t)td_alloc_cached_bytes() + atomic_load(&node.used) <= node.limit);
    /* Up to the quota's last byte: the cache empties, the charge succeeds. */
    assert_int_equal(td_quota_charge(&sess, (int64_t)(12 * mib), &err), 0);
    assert_int_equal(td_alloc_cached_bytes(), 0);
    /* A free while the node is full is not kept: no room left. */
    unsigned char *c = td_malloc(4 * mib);
    td_free(c);
    assert_int_equal(td_alloc_cached_bytes(), 0);
    td_quota_release(&sess, (int64_t)(32 * mib));
#endif
    /* The live buffer kept its bytes through all of it. */
    for (size_t i = 0; i < 8 * mib; i += 4093) {
        assert_int_equal(live[i], 0x33);
    }
    td_free(live);
    td_quota_release(&sess, (int64_t)(8 * mib));
    assert_int_equal(atomic_load(&node.used), 0);
    td_alloc_cache_node(NULL);
    td_alloc_cache_limit(0);
    td_alloc_cache_limit(64 * mib);
}

static void test_quota_chain(void **state)
{
    (void)state;
    struct td_quota g, s1, s2;
    td_quota_init(&g, "server memory", 100, NULL);
    td_quota_init(&s1, "session memory", 70, &g);
    td_quota_init(&s2, "session memory", 70, &g);
    struct td_err err;
    assert_int_equal(td_quota_charge(&s1, 60, &err), 0);
    assert_int_equal(td_quota_charge(&s1, 20, &err), TD_EQUOTA);
    assert_string_equal(err.msg, "session memory quota exceeded: 70 bytes");
    assert_int_equal(td_quota_charge(&s2, 50, &err), TD_EQUOTA); /* the server cap */
    assert_string_equal(err.msg, "server memory quota exceeded: 100 bytes");
    assert_int_equal(atomic_load(&s2.used), 0); /* a refused charge leaves nothing behind */
    assert_int_equal(atomic_load(&g.used), 60);
    td_quota_release(&s1, 60);
    assert_int_equal(atomic_load(&g.used), 0);
    assert_int_equal(td_quota_charge(NULL, 5, &err), 0);
}

static void test_map(void **state)
{
    (void)state;
    struct td_map m;
    td_map_init(&m);
    assert_null(td_map_get(&m, 5));
    static int vals[5000];
    for (uint64_t k = 1; k <= 5000; k++) {
        assert_int_equal(td_map_put(&m, k * 7919, &vals[k - 1]), 0);
    }
    assert_int_equal(m.len, 5000);
    for (uint64_t k = 1; k <= 5000; k++) {
        assert_ptr_equal(td_map_get(&m, k * 7919), &vals[k - 1]);
    }
    /* delete every other key, then reinsert some: tombstones must not lose entries */
    for (uint64_t k = 1; k <= 5000; k += 2) {
        assert_ptr_equal(td_map_del(&m, k * 7919), &vals[k - 1]);
    }
    assert_null(td_map_del(&m, 7919));
    assert_int_equal(m.len, 2500);
    for (uint64_t k = 2; k <= 5000; k += 2) {
        assert_ptr_equal(td_map_get(&m, k * 7919), &vals[k - 1]);
    }
    for (uint64_t k = 1; k <= 5000; k += 4) {
        assert_int_equal(td_map_put(&m, k * 7919, &vals[0]), 0);
    }
    size_t n = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&m, &it, &key, &val);) {
        n++;
    }
    assert_int_equal(n, m.len);
    assert_int_equal(m.len, 2500 + 1250);
    /* replacing keeps the count */
    assert_int_equal(td_map_put(&m, 2 * 7919, &vals[4]), 0);
    assert_ptr_equal(td_map_get(&m, 2 * 7919), &vals[4]);
    assert_int_equal(m.len, 3750);
    td_map_close(&m);
}

static void test_map_churn_stays_bounded(void **state)
{
    (void)state;
    /* Insert-delete cycles (a session creating and freeing handles) must not grow the table. */
    struct td_map m;
    td_map_init(&m);
    int v;
    for (uint64_t k = 1; k <= 100000; k++) {
        assert_int_equal(td_map_put(&m, k, &v), 0);
        assert_ptr_equal(td_map_del(&m, k), &v);
    }
    assert_int_equal(m.len, 0);
    assert_true(m.cap <= 64);
    td_map_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_and_names),
        cmocka_unit_test(test_alloc_counts_and_fails),
        cmocka_unit_test(test_alloc_cache_reuses_large_buffers),
        cmocka_unit_test(test_alloc_cache_decays),
        cmocka_unit_test(test_alloc_cache_yields_to_the_node_quota),
        cmocka_unit_test(test_large_frees_are_released_off_the_callers_thread),
        cmocka_unit_test(test_quota_chain),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_map_churn_stays_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
