/* tests/rpc/test_fastpack.c — the direct TensorInfo reply encoder against protobuf-c: for many
** random Responses (ids and sizes from zero to 2^64-1, every varint length, empty and non-empty
** strings, with and without a status or a result), the size and every byte must equal what
** tensord__response__pack writes, and protobuf-c must decode them back to the same fields. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "rpc/fastpack.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
    /* xorshift64*: a fixed seed, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

/* A value of a random varint length (1 to 10 bytes), zero a quarter of the time. */
static uint64_t any_u64(void)
{
    if (next() % 4 == 0) {
        return 0;
    }
    int bits = 1 + (int)(next() % 64);
    uint64_t v = next();
    return bits == 64 ? v : v & (((uint64_t)1 << bits) - 1);
}

static void random_text(char *buf, size_t cap)
{
    size_t n = next() % 3 == 0 ? 0 : (size_t)(next() % (cap - 1));
    for (size_t i = 0; i < n; i++) {
        buf[i] = (char)(' ' + next() % 95);
    }
    buf[n] = '\0';
}

static void check_same(const Tensord__Response *r)
{
    struct td_fastpack_plan plan;
    assert_true(td_fastpack_plan(r, &plan));
    size_t want = tensord__response__get_packed_size(r);
    assert_int_equal(plan.total, want);
    uint8_t *a = malloc(want + 1), *b = malloc(want + 1);
    assert_non_null(a);
    assert_non_null(b);
    a[want] = b[want] = 0xAB; /* nothing written past the size */
    assert_int_equal(tensord__response__pack(r, a), want);
    td_fastpack(r, &plan, b);
    assert_memory_equal(a, b, want);
    assert_int_equal(b[want], 0xAB);
    Tensord__Response *d = tensord__response__unpack(NULL, want, b);
    assert_non_null(d);
    assert_true(d->id == r->id);
    if (r->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        assert_int_equal(d->result_case, TENSORD__RESPONSE__RESULT_TENSOR);
        assert_int_equal(d->tensor->n_shape, r->tensor->n_shape);
        assert_true(d->tensor->nbytes == r->tensor->nbytes);
    }
    tensord__response__free_unpacked(d, NULL);
    free(a);
    free(b);
}

static void test_random_responses_match_protobuf_c(void **state)
{
    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        Tensord__Response r = TENSORD__RESPONSE__INIT;
        Tensord__Status st = TENSORD__STATUS__INIT;
        Tensord__TensorInfo info = TENSORD__TENSOR_INFO__INIT;
        char msg[64], grad_fn[40];
        int64_t shape[8];
        r.id = any_u64();
        if (next() % 8 != 0) {
            st.code = (Tensord__StatusCode)(next() % 19);
            random_text(msg, sizeof msg);
            st.message = next() % 5 == 0 ? NULL : msg;
            r.status = &st;
        }
        if (next() % 8 != 0) {
            info.handle = any_u64();
            info.dtype = (Tensord__DType)(next() % 6);
            info.n_shape = (size_t)(next() % 9);
            for (size_t i = 0; i < info.n_shape; i++) {
                shape[i] = (int64_t)(any_u64() >> 1); /* dims are non-negative int64 */
            }
            info.shape = info.n_shape != 0 ? shape : NULL;
            info.nbytes = any_u64();
            info.offset = any_u64();
            info.length = any_u64();
            info.requires_grad = (protobuf_c_boolean)(next() % 2);
            info.is_leaf = (protobuf_c_boolean)(next() % 2);
            random_text(grad_fn, sizeof grad_fn);
            info.grad_fn = grad_fn;
            r.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
            r.tensor = &info;
        }
        check_same(&r);
    }
}

static void test_typical_reply_bytes(void **state)
{
    (void)state;
    /* id 7, OK status, TensorInfo{handle 3, FLOAT32, shape [2, 2], nbytes 16, is_leaf}:
    ** hand-assembled from the proto3 encoding rules */
    Tensord__Response r = TENSORD__RESPONSE__INIT;
    Tensord__Status st = TENSORD__STATUS__INIT;
    Tensord__TensorInfo info = TENSORD__TENSOR_INFO__INIT;
    int64_t shape[2] = {2, 2};
    st.message = "";
    r.id = 7;
    r.status = &st;
    info.handle = 3;
    info.dtype = TENSORD__DTYPE__FLOAT32;
    info.n_shape = 2;
    info.shape = shape;
    info.nbytes = 16;
    info.grad_fn = "";
    info.is_leaf = 1;
    r.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
    r.tensor = &info;
    static const uint8_t want[] = {0x08, 7,    0x12, 0, 0x22, 12,   0x08, 3,    0x10,
                                   1,    0x1a, 2,    2, 2,    0x20, 16,   0x48, 1};
    struct td_fastpack_plan plan;
    assert_true(td_fastpack_plan(&r, &plan));
    assert_int_equal(plan.total, sizeof want);
    uint8_t out[sizeof want];
    td_fastpack(&r, &plan, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_other_shapes_are_left_to_protobuf_c(void **state)
{
    (void)state;
    struct td_fastpack_plan plan;
    Tensord__Response r = TENSORD__RESPONSE__INIT;
    r.result_case = TENSORD__RESPONSE__RESULT_TEXT;
    r.text = "tensor([1.])";
    assert_false(td_fastpack_plan(&r, &plan));
    Tensord__TensorInfo info = TENSORD__TENSOR_INFO__INIT;
    int64_t shape[1] = {-1};
    info.n_shape = 1;
    info.shape = shape;
    r.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
    r.tensor = &info;
    assert_false(td_fastpack_plan(&r, &plan)); /* a negative varint is ten bytes: not handled */
    shape[0] = 5;
    assert_true(td_fastpack_plan(&r, &plan));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_responses_match_protobuf_c),
        cmocka_unit_test(test_typical_reply_bytes),
        cmocka_unit_test(test_other_shapes_are_left_to_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
