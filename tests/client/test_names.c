/* tests/client/test_names.c — named tensors through libtensord against a real daemon.
**
** tensord_set_name / tensord_get_name / tensord_del_name / tensord_list_names, blocking and
** pipelined: dict semantics (first-set order, rebinding keeps the place), a tensor that outlives
** its handle and its connection (found again by name after a resume), Python's KeyError words
** for a missing name, refused names, and the daemon serving on.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "tensord.h"

static struct td_test_daemon daemon_;

static int setup(void **state)
{
    (void)state;
    return td_test_daemon_start(&daemon_, "names", NULL);
}

static int teardown(void **state)
{
    (void)state;
    return td_test_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

static struct tensord *open_session(const struct tensord_options *o)
{
    struct tensord *c = NULL;
    struct tensord_error err;
    if (tensord_connect(&c, daemon_.addr, o, &err) != 0) {
        fail_msg("connect: %s", err.message);
    }
    return c;
}

/* Collects names into one comma-separated string. */
struct joined {
    char text[256];
    int n;
};

static void join(const char *name, void *arg)
{
    struct joined *j = arg;
    size_t at = strlen(j->text);
    snprintf(j->text + at, sizeof j->text - at, "%s%s", j->n++ ? "," : "", name);
}

static const char *listed(struct tensord *c, size_t *count)
{
    static struct joined j;
    struct tensord_error err;
    memset(&j, 0, sizeof j);
    if (tensord_list_names(c, join, &j, count, &err) != 0) {
        fail_msg("list_names: %s", err.message);
    }
    return j.text;
}

/* What check_longest has seen: how many names, and whether each was the one expected. */
struct longest {
    int n;
    bool ordered;
};

/* Each name of test_the_longest_list is its index in 5 digits, then 'x' to 255 bytes. */
static void check_longest(const char *name, void *arg)
{
    struct longest *seen = arg;
    char want[256];
    memset(want, 'x', 255);
    want[255] = '\0';
    snprintf(want, sizeof want, "%05d", seen->n);
    want[5] = 'x';
    seen->ordered = seen->ordered && strcmp(name, want) == 0;
    seen->n++;
}

static void test_names_round_trip_and_resume(void **state)
{
    (void)state;
    struct tensord *c = open_session(NULL);
    struct tensord_error err;
    const int64_t s3[] = {3};
    const double a[] = {1.5, -2, 4}, b[] = {7, 8, 9};
    assert_int_equal(tensord_create(c, 1, TENSORD_FLOAT64, s3, 1, a, sizeof a, &err), 0);
    assert_int_equal(tensord_create(c, 2, TENSORD_FLOAT64, s3, 1, b, sizeof b, &err), 0);
    size_t n = 99;
    assert_string_equal(listed(c, &n), "");
    assert_int_equal(n, 0);
    assert_int_equal(tensord_set_name(c, "w1", 1, &err), 0);
    assert_int_equal(tensord_set_name(c, "layer.0/bias", 2, &err), 0);
    assert_int_equal(tensord_set_name(c, "w1", 2, &err), 0); /* rebinding keeps the place */
    assert_string_equal(listed(c, &n), "w1,layer.0/bias");
    assert_int_equal(n, 2);
    assert_int_equal(tensord_set_name(c, "w1", 1, &err), 0);
    /* The name holds the tensor after its handle is freed. */
    const uint64_t one = 1;
    assert_int_equal(tensord_free(c, &one, 1, &err), 0);
    struct tensord_info info;
    double back[3];
    assert_int_equal(tensord_get_name(c, "w1", 10, &info, &err), 0);
    assert_int_equal(info.handle, 10);
    assert_int_equal(info.dtype, TENSORD_FLOAT64);
    assert_int_equal(info.ndim, 1);
    assert_int_equal(info.shape[0], 3);
    assert_int_equal(tensord_get(c, 10, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, a, sizeof a);
    /* Missing names: Python's KeyError words; the output records the failure. */
    assert_int_equal(tensord_get_name(c, "nope", 11, NULL, &err), TENSORD_UNKNOWN_HANDLE);
    assert_int_equal(err.code, TENSORD_UNKNOWN_HANDLE);
    assert_string_equal(err.message, "KeyError: 'nope'");
    struct tensord_operand in[] = {tensord_h(11)};
    assert_int_equal(tensord_op(c, "neg", 12, in, 1, false, NULL, &err), TENSORD_INPUT_FAILED);
    assert_string_equal(err.message, "input 11 failed: KeyError: 'nope'");
    assert_int_equal(tensord_del_name(c, "nope", &err), TENSORD_UNKNOWN_HANDLE);
    assert_string_equal(err.message, "KeyError: 'nope'");
    assert_int_equal(tensord_set_name(c, "bad name", 2, &err), TENSORD_INVALID_ARGUMENT);
    assert_int_equal(tensord_set_name(c, NULL, 2, &err), TENSORD_E_USAGE);
    assert_int_equal(tensord_set_name(c, "x", 999, &err), TENSORD_UNKNOWN_HANDLE);

    /* Another connection resuming the session finds the tensors by name. */
    char token[TENSORD_TOKEN_MAX];
    snprintf(token, sizeof token, "%s", tensord_session_token(c));
    tensord_disconnect(c);
    struct tensord_options o = {.session_token = token};
    c = open_session(&o);
    assert_true(tensord_resumed(c));
    assert_string_equal(listed(c, &n), "w1,layer.0/bias");
    uint64_t h = tensord_new_handle(c);
    assert_int_equal(tensord_get_name(c, "layer.0/bias", h, NULL, &err), 0);
    assert_int_equal(tensord_get(c, h, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, b, sizeof b);
    assert_int_equal(tensord_del_name(c, "w1", &err), 0);
    assert_string_equal(listed(c, NULL), "layer.0/bias");
    assert_int_equal(tensord_list_names(c, NULL, NULL, &n, &err), 0); /* count only */
    assert_int_equal(n, 1);
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
}

static void test_names_pipelined(void **state)
{
    (void)state;
    struct tensord *c = open_session(NULL);
    struct tensord_error err;
    const int64_t s2[] = {2};
    const int32_t v[] = {5, 6};
    uint64_t ids[6];
    assert_int_equal(tensord_send_create(c, 1, TENSORD_INT32, s2, 1, v, sizeof v, &ids[0], &err),
                     0);
    assert_int_equal(tensord_send_set_name(c, "p", 1, &ids[1], &err), 0);
    assert_int_equal(tensord_send_get_name(c, "p", 2, &ids[2], &err), 0);
    assert_int_equal(tensord_send_del_name(c, "p", &ids[3], &err), 0);
    assert_int_equal(tensord_send_get_name(c, "p", 3, &ids[4], &err), 0);
    assert_int_equal(tensord_send_del_name(c, "p", &ids[5], &err), 0);
    const int want[] = {TENSORD_OK,
                        TENSORD_OK,
                        TENSORD_OK,
                        TENSORD_OK,
                        TENSORD_UNKNOWN_HANDLE,
                        TENSORD_UNKNOWN_HANDLE};
    for (int i = 0; i < 6; i++) {
        struct tensord_reply r;
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.id, ids[i]);
        if (r.status != want[i]) {
            fail_msg("reply %d: status %d (%s)", i, r.status, r.message);
        }
        if (i == 2) {
            assert_true(r.has_info);
            assert_int_equal(r.info.handle, 2);
            assert_int_equal(r.info.dtype, TENSORD_INT32);
        }
    }
    int32_t back[2];
    assert_int_equal(tensord_get(c, 2, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, v, sizeof v);
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
}

/* The longest list there can be: 65,536 names of 255 bytes, a reply of about 17 MB, read whole
** (the library's reply limit is above it). */
static void test_the_longest_list(void **state)
{
    (void)state;
    struct tensord *c = open_session(NULL);
    struct tensord_error err;
    const int64_t s1[] = {1};
    const int32_t v[] = {3};
    assert_int_equal(tensord_create(c, 1, TENSORD_INT32, s1, 1, v, sizeof v, &err), 0);
    enum { N = 65536, BATCH = 4096 };
    char name[256];
    memset(name, 'x', 255);
    name[255] = '\0';
    for (int i = 0; i < N; i += BATCH) {
        for (int k = i; k < i + BATCH; k++) {
            snprintf(name, sizeof name, "%05d", k);
            name[5] = 'x'; /* the digits, then 'x' to 255 bytes */
            assert_int_equal(tensord_send_set_name(c, name, 1, NULL, &err), 0);
        }
        for (int k = 0; k < BATCH; k++) {
            struct tensord_reply r;
            assert_int_equal(tensord_recv(c, &r, &err), 0);
            if (r.status != 0) {
                fail_msg("name %d: %s", i + k, r.message);
            }
        }
    }
    struct longest seen = {0, true};
    size_t count = 0;
    assert_int_equal(tensord_list_names(c, check_longest, &seen, &count, &err), 0);
    assert_int_equal(count, N);
    assert_int_equal(seen.n, N);
    assert_true(seen.ordered);
    assert_int_equal(tensord_set_name(c, "one-more", 1, &err), TENSORD_LIMIT_EXCEEDED);
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip_and_resume),
        cmocka_unit_test(test_names_pipelined),
        cmocka_unit_test(test_the_longest_list),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
