/* tests/client/test_e2e.c — a real daemon on an ephemeral port, driven through libtensord.
**
** These are the foundation's end-to-end checks: values and errors as PyTorch gives them,
** pipelining, session isolation, reconnect-and-resume, and hostile frames written byte by byte
** on raw sockets. Every hostile case ends by proving that the daemon still serves, and every
** daemon must exit 0 on SIGTERM.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "proto/tensord.pb-c.h"
#include "tensord.h"

static struct td_test_daemon daemon_;

static int setup(void **state)
{
    (void)state;
    return td_test_daemon_start(&daemon_, "e2e", NULL);
}

static int teardown(void **state)
{
    (void)state;
    return td_test_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

static struct tensord *open_session(const struct td_test_daemon *d)
{
    struct tensord *c = NULL;
    struct tensord_error err;
    if (tensord_connect(&c, d->addr, NULL, &err) != 0) {
        fail_msg("connect: %s", err.message);
    }
    return c;
}

/* The daemon answers a new session with a correct product. */
static void assert_serves(const struct td_test_daemon *d)
{
    struct tensord *c = open_session(d);
    struct tensord_error err;
    const int64_t shape[] = {2};
    const int64_t a[] = {6, 7};
    int64_t out[2];
    struct tensord_operand in[] = {tensord_h(1), tensord_i(3)};
    assert_int_equal(tensord_create(c, 1, TENSORD_INT64, shape, 1, a, sizeof a, &err), 0);
    assert_int_equal(tensord_op(c, "mul", 2, in, 2, false, NULL, &err), 0);
    assert_int_equal(tensord_get(c, 2, NULL, out, sizeof out, &err), 0);
    assert_int_equal(out[0], 18);
    assert_int_equal(out[1], 21);
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
}

static void test_round_trip_all_dtypes(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t shape[] = {3, 2};
    enum tensord_dtype dts[] = {TENSORD_FLOAT32, TENSORD_FLOAT64, TENSORD_INT32, TENSORD_INT64,
                                TENSORD_BOOL};
    for (int i = 0; i < 5; i++) {
        uint8_t bytes[48], back[48];
        size_t n = 6 * tensord_dtype_size(dts[i]);
        for (size_t k = 0; k < n; k++) {
            bytes[k] = dts[i] == TENSORD_BOOL ? (uint8_t)(k % 3 == 0) : (uint8_t)(k * 29 + 3);
        }
        assert_int_equal(tensord_create(c, 10 + (uint64_t)i, dts[i], shape, 2, bytes, n, &err), 0);
        struct tensord_info info;
        memset(back, 0xee, sizeof back);
        assert_int_equal(tensord_get(c, 10 + (uint64_t)i, &info, back, sizeof back, &err), 0);
        assert_int_equal(info.dtype, dts[i]);
        assert_int_equal(info.ndim, 2);
        assert_int_equal(info.shape[0], 3);
        assert_int_equal(info.shape[1], 2);
        assert_int_equal(info.nbytes, n);
        assert_memory_equal(back, bytes, n);
    }
    /* a buffer that is too small is refused and the stream stays in step */
    uint8_t small[4];
    assert_int_equal(tensord_get(c, 14 - 3, NULL, small, sizeof small, &err), TENSORD_E_BUFFER);
    assert_int_equal(tensord_ping(c, &err), 0);
    tensord_disconnect(c);
}

static void test_ops_like_torch(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    struct tensord_info info;
    const int64_t s22[] = {2, 2}, s3[] = {3}, s23[] = {2, 3};
    const int64_t a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    assert_int_equal(tensord_create(c, 1, TENSORD_INT64, s22, 2, a, sizeof a, &err), 0);
    assert_int_equal(tensord_create(c, 2, TENSORD_INT64, s22, 2, b, sizeof b, &err), 0);
    struct tensord_operand ab[] = {tensord_h(1), tensord_h(2)};
    int64_t r[4];
    /* torch.tensor([[1, 2], [3, 4]]) * torch.tensor([[5, 6], [7, 8]]) */
    assert_int_equal(tensord_op(c, "mul", 3, ab, 2, false, &info, &err), 0);
    assert_int_equal(info.dtype, TENSORD_INT64);
    assert_int_equal(tensord_get(c, 3, NULL, r, sizeof r, &err), 0);
    const int64_t prod[] = {5, 12, 21, 32};
    assert_memory_equal(r, prod, sizeof prod);
    /* ... @ ... */
    assert_int_equal(tensord_op(c, "matmul", 4, ab, 2, false, NULL, &err), 0);
    assert_int_equal(tensord_get(c, 4, NULL, r, sizeof r, &err), 0);
    const int64_t mm[] = {19, 22, 43, 50};
    assert_memory_equal(r, mm, sizeof mm);
    char text[256];
    assert_int_equal(tensord_format(c, 4, text, sizeof text, &err), 0);
    assert_string_equal(text, "tensor([[19, 22],\n        [43, 50]])");
    /* tensor_a.add_(5) */
    struct tensord_operand a5[] = {tensord_h(1), tensord_i(5)};
    assert_int_equal(tensord_op(c, "add", 0, a5, 2, true, NULL, &err), 0);
    assert_int_equal(tensord_get(c, 1, NULL, r, sizeof r, &err), 0);
    const int64_t plus5[] = {6, 7, 8, 9};
    assert_memory_equal(r, plus5, sizeof plus5);
    /* broadcasting: [[1,2,3],[4,5,6]] + [10,20,30] */
    const int64_t m[] = {1, 2, 3, 4, 5, 6}, v[] = {10, 20, 30};
    assert_int_equal(tensord_create(c, 5, TENSORD_INT64, s23, 2, m, sizeof m, &err), 0);
    assert_int_equal(tensord_create(c, 6, TENSORD_INT64, s3, 1, v, sizeof v, &err), 0);
    struct tensord_operand mv[] = {tensord_h(5), tensord_h(6)};
    assert_int_equal(tensord_op(c, "add", 7, mv, 2, false, NULL, &err), 0);
    int64_t r6[6];
    assert_int_equal(tensord_get(c, 7, NULL, r6, sizeof r6, &err), 0);
    const int64_t bc[] = {11, 22, 33, 14, 25, 36};
    assert_memory_equal(r6, bc, sizeof bc);
    /* int64 / int64 is true division: torch.tensor([7]) / torch.tensor([2]) == 3.5, float32 */
    const int64_t seven[] = {7}, two[] = {2};
    const int64_t s1[] = {1};
    assert_int_equal(tensord_create(c, 8, TENSORD_INT64, s1, 1, seven, 8, &err), 0);
    assert_int_equal(tensord_create(c, 9, TENSORD_INT64, s1, 1, two, 8, &err), 0);
    struct tensord_operand q[] = {tensord_h(8), tensord_h(9)};
    assert_int_equal(tensord_op(c, "div", 10, q, 2, false, &info, &err), 0);
    assert_int_equal(info.dtype, TENSORD_FLOAT32);
    float f;
    assert_int_equal(tensord_get(c, 10, NULL, &f, sizeof f, &err), 0);
    assert_true(f == 3.5f);
    /* int64 * float32 -> float32 */
    const float h[] = {0.5f};
    assert_int_equal(tensord_create(c, 11, TENSORD_FLOAT32, s1, 1, h, 4, &err), 0);
    struct tensord_operand ih[] = {tensord_h(8), tensord_h(11)};
    assert_int_equal(tensord_op(c, "mul", 12, ih, 2, false, &info, &err), 0);
    assert_int_equal(info.dtype, TENSORD_FLOAT32);
    assert_int_equal(tensord_get(c, 12, NULL, &f, sizeof f, &err), 0);
    assert_true(f == 3.5f);
    tensord_disconnect(c);
}

static void test_error_messages_like_torch(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s23[] = {2, 3}, s2[] = {2}, s3[] = {3};
    float z[6] = {0};
    int64_t l3[3] = {1, 2, 3};
    assert_int_equal(tensord_create(c, 1, TENSORD_FLOAT32, s23, 2, z, sizeof z, &err), 0);
    assert_int_equal(tensord_create(c, 2, TENSORD_FLOAT32, s2, 1, z, 8, &err), 0);
    assert_int_equal(tensord_create(c, 3, TENSORD_INT64, s3, 1, l3, sizeof l3, &err), 0);
    struct tensord_operand a[] = {tensord_h(1), tensord_h(2)};
    assert_int_equal(tensord_op(c, "add", 4, a, 2, false, NULL, &err), TENSORD_SHAPE_MISMATCH);
    assert_string_equal(err.message, "The size of tensor a (3) must match the size of tensor b "
                                     "(2) at non-singleton dimension 1");
    struct tensord_operand mm[] = {tensord_h(1), tensord_h(1)};
    assert_int_not_equal(tensord_op(c, "matmul", 5, mm, 2, false, NULL, &err), 0);
    assert_string_equal(err.message, "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    struct tensord_operand ip[] = {tensord_h(3), tensord_f(1.5)};
    assert_int_not_equal(tensord_op(c, "add", 0, ip, 2, true, NULL, &err), 0);
    assert_string_equal(err.message,
                        "result type Float can't be cast to the desired output type Long");
    int64_t back[3];
    assert_int_equal(tensord_get(c, 3, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, l3, sizeof l3); /* the refused in-place op changed nothing */
    tensord_disconnect(c);
}

/* 10,000 requests in one batch, one flush, replies read back in order. */
static void test_pipeline_10000(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s1[] = {1};
    const int64_t base[] = {1000};
    assert_int_equal(tensord_create(c, 1, TENSORD_INT64, s1, 1, base, 8, &err), 0);
    enum { N = 5000 };
    static int64_t got[N];
    uint64_t ids[2 * N];
    for (int i = 0; i < N; i++) {
        struct tensord_operand in[] = {tensord_h(1), tensord_i(i)};
        assert_int_equal(tensord_send_op(c, "add", 100 + (uint64_t)i, in, 2, false, &ids[2 * i],
                                         &err),
                         0);
        assert_int_equal(tensord_send_get(c, 100 + (uint64_t)i, &got[i], 8, &ids[2 * i + 1], &err),
                         0);
    }
    assert_int_equal(tensord_pending(c), 2 * N);
    assert_int_equal(tensord_flush(c, &err), 0);
    for (int i = 0; i < 2 * N; i++) {
        struct tensord_reply r;
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.id, ids[i]);
        assert_int_equal(r.status, 0);
        assert_true(r.has_info);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(got[i], 1000 + i);
    }
    assert_int_equal(tensord_pending(c), 0);
    struct tensord_stats st;
    assert_int_equal(tensord_stats(c, &st, &err), 0);
    assert_int_equal(st.session_tensors, N + 1);
    /* the 10,001 int64 tensors of 8 bytes are held by the daemon, and this connection is open */
    assert_true(st.server_tensors >= (uint64_t)N + 1);
    assert_true(st.allocated_bytes >= 8u * ((uint64_t)N + 1));
    assert_true(st.connections >= 1);
    assert_true(st.uptime_ms > 0);
    tensord_disconnect(c);
}

/* A pipelined chain whose first op fails: the rest fail naming the original cause. */
static void test_input_failed_propagates(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s1[] = {1};
    const float one[] = {1};
    assert_int_equal(tensord_create(c, 1, TENSORD_FLOAT32, s1, 1, one, 4, &err), 0);
    struct tensord_operand bad[] = {tensord_h(1), tensord_h(999)};
    struct tensord_operand use[] = {tensord_h(2), tensord_h(1)};
    assert_int_equal(tensord_send_op(c, "mul", 2, bad, 2, false, NULL, &err), 0);
    assert_int_equal(tensord_send_op(c, "matmul", 3, use, 2, false, NULL, &err), 0);
    struct tensord_reply r;
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, TENSORD_UNKNOWN_HANDLE);
    assert_string_equal(r.message, "unknown handle 999");
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, TENSORD_INPUT_FAILED);
    assert_string_equal(r.message, "input 2 failed: unknown handle 999");
    tensord_disconnect(c);
}

/* The autograd facts of a tensor ride on its op's reply; a Grad reply says None by carrying
** no tensor. torch: a = tensor([2.], requires_grad=True); b = a * 3 -> b.grad_fn is
** MulBackward0, b.is_leaf False; a.grad is None before backward, tensor([3.]) after. */
static void test_grad_replies_and_autograd_info(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s1[] = {1};
    const float two[] = {2};
    assert_int_equal(tensord_create(c, 1, TENSORD_FLOAT32, s1, 1, two, 4, &err), 0);
    struct tensord_reply r;
    uint64_t id;
    assert_int_equal(tensord_send_set_grad(c, 1, true, false, false, &id, &err), 0);
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(tensord_send_grad(c, 1, 10, &id, &err), 0); /* .grad is None yet */
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_false(r.has_info);
    struct tensord_operand in[] = {tensord_h(1), tensord_f(3)};
    assert_int_equal(tensord_send_op(c, "mul", 2, in, 2, false, &id, &err), 0);
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_true(r.has_info);
    assert_true(r.info.requires_grad);
    assert_false(r.info.is_leaf);
    assert_string_equal(r.info.grad_fn, "MulBackward0");
    struct tensord_operand sin[] = {tensord_h(2)};
    assert_int_equal(tensord_send_op(c, "sum", 3, sin, 1, false, &id, &err), 0);
    assert_int_equal(tensord_send_backward(c, 3, 0, false, &id, &err), 0);
    assert_int_equal(tensord_send_grad(c, 1, 11, &id, &err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.status, 0);
    }
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_true(r.has_info); /* the grad, bound to handle 11 */
    assert_int_equal(r.info.dtype, TENSORD_FLOAT32);
    assert_true(r.info.is_leaf);
    assert_string_equal(r.info.grad_fn, "");
    float g = 0;
    assert_int_equal(tensord_get(c, 11, NULL, &g, sizeof g, &err), 0);
    assert_true(g == 3.0f);
    tensord_disconnect(c);
}

static void test_sessions_cannot_see_each_other(void **state)
{
    (void)state;
    struct tensord *a = open_session(&daemon_), *b = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s2[] = {2};
    const int32_t va[] = {1, 2}, vb[] = {3, 4};
    int32_t back[2];
    assert_int_equal(tensord_create(a, 7, TENSORD_INT32, s2, 1, va, sizeof va, &err), 0);
    assert_int_equal(tensord_get(b, 7, NULL, back, sizeof back, &err), TENSORD_UNKNOWN_HANDLE);
    assert_int_equal(tensord_create(b, 7, TENSORD_INT32, s2, 1, vb, sizeof vb, &err), 0);
    assert_int_equal(tensord_get(a, 7, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, va, sizeof va);
    assert_int_equal(tensord_get(b, 7, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, vb, sizeof vb);
    assert_string_not_equal(tensord_session_token(a), tensord_session_token(b));
    uint64_t h = 7;
    assert_int_equal(tensord_free(b, &h, 1, &err), 0);
    assert_int_equal(tensord_get(a, 7, NULL, back, sizeof back, &err), 0);
    tensord_disconnect(a);
    tensord_disconnect(b);
}

static void test_reconnect_and_resume(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s4[] = {4};
    const double v[] = {1.5, -2.25, 1e300, 0.0};
    assert_int_equal(tensord_create(c, 3, TENSORD_FLOAT64, s4, 1, v, sizeof v, &err), 0);
    /* the token is text: "<node id>.<32 hex>", or 32 hex digits for a 16-byte one */
    char token[TENSORD_TOKEN_MAX];
    snprintf(token, sizeof token, "%s", tensord_session_token(c));
    size_t tl = strlen(token);
    assert_true(tl >= 32 && tl < TENSORD_TOKEN_MAX);
    assert_true(strspn(token + tl - 32, "0123456789abcdef") == 32);
    assert_true(tl == 32 ||
                (token[tl - 33] == '.' && strncmp(token, tensord_node(c), tl - 33) == 0));
    tensord_disconnect(c);

    struct tensord_options o = {.session_token = token};
    assert_int_equal(tensord_connect(&c, daemon_.addr, &o, &err), 0);
    assert_true(tensord_resumed(c));
    double back[4];
    assert_int_equal(tensord_get(c, 3, NULL, back, sizeof back, &err), 0);
    assert_memory_equal(back, v, sizeof v);

    /* a token nobody holds: its secret's last digit changed */
    char wrong[TENSORD_TOKEN_MAX];
    snprintf(wrong, sizeof wrong, "%s", token);
    wrong[tl - 1] = wrong[tl - 1] == '0' ? '1' : '0';
    struct tensord *x = NULL;
    struct tensord_options ow = {.session_token = wrong};
    assert_int_equal(tensord_connect(&x, daemon_.addr, &ow, &err), TENSORD_UNKNOWN_SESSION);
    assert_null(x);

    /* CloseSession ends it: the token no longer resumes */
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
    assert_int_equal(tensord_connect(&x, daemon_.addr, &o, &err), TENSORD_UNKNOWN_SESSION);
    assert_serves(&daemon_);
}

static void test_free_is_idempotent(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    const int64_t s1[] = {1};
    const int64_t v[] = {5};
    assert_int_equal(tensord_create(c, 1, TENSORD_INT64, s1, 1, v, 8, &err), 0);
    uint64_t hs[] = {1, 2, 1};
    assert_int_equal(tensord_free(c, hs, 3, &err), 0);
    assert_int_equal(tensord_free(c, hs, 3, &err), 0);
    struct tensord_stats st;
    assert_int_equal(tensord_stats(c, &st, &err), 0);
    assert_int_equal(st.session_tensors, 0);
    assert_int_equal(st.session_bytes, 0);
    tensord_disconnect(c);
}

/* A session's heavy op runs on the pool: another session is answered meanwhile. */
static void test_heavy_op_does_not_block_others(void **state)
{
    (void)state;
    struct tensord *a = open_session(&daemon_), *b = open_session(&daemon_);
    struct tensord_error err;
    const int64_t big[] = {3000, 3000};
    assert_int_equal(tensord_full(a, 1, TENSORD_FLOAT32, big, 2, tensord_f(0.5), &err), 0);
    struct tensord_operand in[] = {tensord_h(1), tensord_h(1)};
    /* 3000^3 multiply-adds: seconds of work, against a ping's microseconds */
    assert_int_equal(tensord_send_op(a, "matmul", 2, in, 2, false, NULL, &err), 0);
    assert_int_equal(tensord_send_op(a, "matmul", 3, in, 2, false, NULL, &err), 0);
    assert_int_equal(tensord_flush(a, &err), 0);
    usleep(20000);
    assert_int_equal(tensord_ping(b, &err), 0);
    assert_int_equal(tensord_ping(b, &err), 0);
    struct tensord_reply r;
    assert_int_equal(tensord_recv(a, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(tensord_recv(a, &r, &err), 0);
    assert_int_equal(r.status, 0);
    float corner[2];
    assert_int_equal(tensord_get_range(a, 3, 0, 8, corner, NULL, &err), 0);
    assert_true(corner[0] == 750.0f); /* 3000 * 0.5 * 0.5 */
    tensord_disconnect(a);
    tensord_disconnect(b);
}

/* The wider op set through libtensord, with keyword arguments: torch.arange(6).reshape(2, 3),
** .sum(1, keepdim=True), x[0].fill_(7) writing through a view, softmax, and a pipelined cat. */
static void test_ops_with_arguments(void **state)
{
    (void)state;
    struct tensord *c = open_session(&daemon_);
    struct tensord_error err;
    struct tensord_info info;
    assert_int_equal(tensord_arange(c, 1, TENSORD_DTYPE_INFER, tensord_i(0), tensord_i(6),
                                    tensord_i(1), &err),
                     0);
    struct tensord_op_args a = {.dims = {2, 3}, .ndims = 2};
    struct tensord_operand x1[] = {tensord_h(1)};
    assert_int_equal(tensord_op_ex(c, "reshape", 2, x1, 1, &a, false, &info, &err), 0);
    assert_int_equal(info.ndim, 2);
    struct tensord_op_args s = {.dims = {1}, .ndims = 1, .keepdim = true};
    struct tensord_operand x2[] = {tensord_h(2)};
    assert_int_equal(tensord_op_ex(c, "sum", 3, x2, 1, &s, false, &info, &err), 0);
    int64_t sums[2];
    assert_int_equal(tensord_get(c, 3, &info, sums, sizeof sums, &err), 0);
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.shape[1], 1);
    assert_int_equal(sums[0], 3);  /* 0 + 1 + 2 */
    assert_int_equal(sums[1], 12); /* 3 + 4 + 5 */
    /* x[0].fill_(7) changes x (and the reshape's base, which shares storage) */
    struct tensord_op_args sel = {.dim = 0, .start = 0};
    assert_int_equal(tensord_op_ex(c, "select", 4, x2, 1, &sel, false, NULL, &err), 0);
    struct tensord_operand fill[] = {tensord_h(4), tensord_i(7)};
    assert_int_equal(tensord_op(c, "fill", 0, fill, 2, true, NULL, &err), 0);
    int64_t all[6];
    assert_int_equal(tensord_get(c, 1, NULL, all, sizeof all, &err), 0);
    const int64_t want[] = {7, 7, 7, 3, 4, 5};
    assert_memory_equal(all, want, sizeof want);
    char text[128];
    assert_int_equal(tensord_format(c, 2, text, sizeof text, &err), 0);
    assert_string_equal(text, "tensor([[7, 7, 7],\n        [3, 4, 5]])");
    /* torch.softmax(torch.tensor([0., 0.]), 0) == [0.5, 0.5] */
    const int64_t s2[] = {2};
    const float z[] = {0, 0};
    assert_int_equal(tensord_create(c, 5, TENSORD_FLOAT32, s2, 1, z, sizeof z, &err), 0);
    struct tensord_op_args d0 = {.dim = 0};
    struct tensord_operand x5[] = {tensord_h(5)};
    assert_int_equal(tensord_op_ex(c, "softmax", 6, x5, 1, &d0, false, NULL, &err), 0);
    float sm[2];
    assert_int_equal(tensord_get(c, 6, NULL, sm, sizeof sm, &err), 0);
    assert_true(sm[0] == 0.5f && sm[1] == 0.5f);
    /* pipelined: cat((x, x), 0) then its shape */
    struct tensord_operand xx[] = {tensord_h(2), tensord_h(2)};
    assert_int_equal(tensord_send_op_ex(c, "cat", 7, xx, 2, &d0, false, NULL, &err), 0);
    struct tensord_reply r;
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.info.shape[0], 4);
    assert_int_equal(r.info.shape[1], 3);
    /* an error in torch's words: x.view(4) */
    struct tensord_op_args v4 = {.dims = {4}, .ndims = 1};
    assert_int_equal(tensord_op_ex(c, "view", 8, x2, 1, &v4, false, NULL, &err),
                     TENSORD_SHAPE_MISMATCH);
    assert_string_equal(err.message, "shape '[4]' is invalid for input of size 6");
    tensord_disconnect(c);
}

/* ---- hostile frames, byte by byte ---- */

static void put_header(uint8_t *h, uint32_t meta_len, uint64_t data_len)
{
    for (int i = 0; i < 4; i++) {
        h[i] = (uint8_t)(meta_len >> (24 - 8 * i)); /* u32 meta_len, big-endian */
    }
    for (int i = 0; i < 8; i++) {
        h[4 + i] = (uint8_t)(data_len >> (56 - 8 * i)); /* u64 data_len, big-endian */
    }
}

static void send_bytes(int fd, const void *buf, size_t n)
{
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
}

static void send_request(int fd, Tensord__Request *req, const void *data, size_t n)
{
    uint8_t frame[4096];
    size_t ml = tensord__request__get_packed_size(req);
    assert_true(12 + ml <= sizeof frame);
    put_header(frame, (uint32_t)ml, n);
    tensord__request__pack(req, frame + 12);
    send_bytes(fd, frame, 12 + ml);
    if (n > 0) {
        send_bytes(fd, data, n);
    }
}

static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one reply frame; returns it decoded (caller frees) or NULL on EOF. */
static Tensord__Response *read_reply(int fd)
{
    uint8_t h[12];
    if (read_full(fd, h, 12) != 0) {
        return NULL;
    }
    uint32_t ml = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | h[4 + i];
    }
    uint8_t *meta = malloc(ml + dl + 1);
    assert_int_equal(read_full(fd, meta, ml + dl), 0);
    Tensord__Response *r = tensord__response__unpack(NULL, ml, meta);
    free(meta);
    assert_non_null(r);
    return r;
}

static int reply_status(Tensord__Response *r)
{
    int code = r->status != NULL ? (int)r->status->code : 0;
    tensord__response__free_unpacked(r, NULL);
    return code;
}

/* A raw connection that has said Hello. */
static int raw_session(void)
{
    int fd = td_test_dial(&daemon_);
    assert_true(fd >= 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = m.max_version = 1;
    req.id = 1;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    send_request(fd, &req, NULL, 0);
    assert_int_equal(reply_status(read_reply(fd)), 0);
    return fd;
}

static void assert_still_answers(int fd)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping m = TENSORD__PING__INIT;
    req.id = 77;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &m;
    send_request(fd, &req, NULL, 0);
    Tensord__Response *r = read_reply(fd);
    assert_non_null(r);
    assert_int_equal(r->id, 77);
    assert_int_equal(reply_status(r), 0);
}

static void test_hostile_zero_length_frame(void **state)
{
    (void)state;
    int fd = raw_session();
    uint8_t h[12];
    put_header(h, 0, 0);
    send_bytes(fd, h, 12);
    assert_int_equal(reply_status(read_reply(fd)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_hostile_length_over_limit(void **state)
{
    (void)state;
    struct td_test_daemon d;
    const char *args[] = {"--max-frame-bytes", "1048576", NULL};
    assert_int_equal(td_test_daemon_start(&d, "e2e_limit", args), 0);
    int fd = td_test_dial(&d);
    uint8_t h[12];
    put_header(h, 16, 2u << 20); /* announces 2 MiB of data, over the 1 MiB limit */
    send_bytes(fd, h, 12);
    Tensord__Response *r = read_reply(fd);
    assert_non_null(r);
    assert_int_equal(r->id, 0);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_non_null(strstr(r->status->message, "max_frame_bytes 1048576"));
    tensord__response__free_unpacked(r, NULL);
    uint8_t b;
    assert_int_equal(read(fd, &b, 1), 0); /* then the server closes the connection */
    close(fd);
    assert_serves(&d);
    assert_int_equal(td_test_daemon_stop(&d), 0);
}

static void test_hostile_truncated_frame_then_disconnect(void **state)
{
    (void)state;
    for (int cut = 1; cut < 40; cut += 3) {
        int fd = raw_session();
        uint8_t frame[64];
        put_header(frame, 30, 1000); /* promises 30 + 1000 bytes */
        memset(frame + 12, 0x08, sizeof frame - 12);
        send_bytes(fd, frame, (size_t)cut);
        close(fd);
    }
    assert_serves(&daemon_);
}

static void test_hostile_garbage_bytes(void **state)
{
    (void)state;
    int fd = raw_session();
    uint8_t frame[28];
    put_header(frame, 16, 0);
    memset(frame + 12, 0xff, 16); /* 16 bytes that are no protobuf message */
    send_bytes(fd, frame, sizeof frame);
    assert_int_equal(reply_status(read_reply(fd)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_hostile_unknown_op(void **state)
{
    (void)state;
    int fd = raw_session();
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    req.id = 5;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    m.out = 9;
    m.op = (Tensord__Op)9999;
    send_request(fd, &req, NULL, 0);
    assert_int_equal(reply_status(read_reply(fd)), TENSORD__STATUS_CODE__UNKNOWN_OP);
    /* a Request whose only field is one this server does not know */
    const uint8_t unknown[] = {0,    0,    0,   5, 0, 0,
                               0,    0,    0,   0, 0, 0, /* header: meta 5, data 0 */
                               0x08, 0x06,               /* id = 6 */
                               0xf8, 0x07, 0x01};        /* field 127 = 1 */
    send_bytes(fd, unknown, sizeof unknown);
    Tensord__Response *r = read_reply(fd);
    assert_int_equal(r->id, 6);
    assert_int_equal(reply_status(r), TENSORD__STATUS_CODE__UNKNOWN_OP);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_hostile_unknown_handle(void **state)
{
    (void)state;
    int fd = raw_session();
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Get m = TENSORD__GET__INIT;
    req.id = 3;
    req.body_case = TENSORD__REQUEST__BODY_GET;
    req.get = &m;
    m.handle = 0xdeadbeef;
    send_request(fd, &req, NULL, 0);
    assert_int_equal(reply_status(read_reply(fd)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_hostile_dim_overflow(void **state)
{
    (void)state;
    int fd = raw_session();
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar v = TENSORD__SCALAR__INIT;
    int64_t shape[] = {INT64_C(1) << 32, INT64_C(1) << 32, 4}; /* 2^66 elements */
    v.value_case = TENSORD__SCALAR__VALUE_F;
    v.f = 1.0;
    m.out = 1;
    m.shape = shape;
    m.n_shape = 3;
    m.value = &v;
    req.id = 4;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &m;
    send_request(fd, &req, NULL, 0);
    int st = reply_status(read_reply(fd));
    assert_true(st == TENSORD__STATUS_CODE__LIMIT_EXCEEDED ||
                st == TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    /* and one that fits int64 but not memory: refused by the tensor limit, not by a crash */
    int64_t huge[] = {INT64_C(1) << 40, 1024};
    m.out = 2; /* handle 1 now holds the failure above */
    m.shape = huge;
    m.n_shape = 2;
    send_request(fd, &req, NULL, 0);
    st = reply_status(read_reply(fd));
    assert_true(st == TENSORD__STATUS_CODE__LIMIT_EXCEEDED ||
                st == TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_hostile_data_length_mismatch(void **state)
{
    (void)state;
    int fd = raw_session();
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    int64_t shape[] = {2, 3};
    uint8_t data[20] = {0}; /* 2x3 float32 needs 24 bytes */
    m.out = 1;
    m.dtype = TENSORD__DTYPE__FLOAT32;
    m.shape = shape;
    m.n_shape = 2;
    req.id = 8;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    send_request(fd, &req, data, sizeof data);
    Tensord__Response *r = read_reply(fd);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_string_equal(r->status->message,
                        "data section has 20 bytes, but shape [2, 3] of float32 needs 24");
    tensord__response__free_unpacked(r, NULL);
    assert_still_answers(fd);
    close(fd);
    assert_serves(&daemon_);
}

static void test_request_before_hello(void **state)
{
    (void)state;
    int fd = td_test_dial(&daemon_);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping m = TENSORD__PING__INIT;
    req.id = 2;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &m;
    send_request(fd, &req, NULL, 0);
    assert_int_equal(reply_status(read_reply(fd)), TENSORD__STATUS_CODE__NO_SESSION);
    close(fd);
    assert_serves(&daemon_);
}

/* The README's example program, compiled against the library and run. */
static void test_readme_example_runs(void **state)
{
    (void)state;
    /* This build's library (the daemon's directory: build, or build-asan under make
    ** check-asan, where the example is sanitized too). */
    char dir[512] = "build", cmd[2048];
    const char *bin = getenv("TENSORD_BIN"), *slash = bin != NULL ? strrchr(bin, '/') : NULL;
    if (slash != NULL && (size_t)(slash - bin) < sizeof dir) {
        memcpy(dir, bin, (size_t)(slash - bin));
        dir[slash - bin] = '\0';
    }
    const char *san = getenv("TENSORD_SANITIZED");
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 %s -Iclient/c client/c/example.c %s/libtensord.a "
             "$(pkg-config --libs libprotobuf-c) -o %s/tests/example 2>&1 && "
             "%s/tests/example %s",
             san != NULL && strcmp(san, "1") == 0 ? "-fsanitize=address,undefined" : "", dir, dir,
             dir, daemon_.addr);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[1024];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_string_equal(out, "a @ b = [[19, 22], [43, 50]]\n"
                             "a * b =\ntensor([[ 5., 12.],\n        [21., 32.]])\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_dtypes),
        cmocka_unit_test(test_ops_like_torch),
        cmocka_unit_test(test_error_messages_like_torch),
        cmocka_unit_test(test_pipeline_10000),
        cmocka_unit_test(test_input_failed_propagates),
        cmocka_unit_test(test_grad_replies_and_autograd_info),
        cmocka_unit_test(test_sessions_cannot_see_each_other),
        cmocka_unit_test(test_reconnect_and_resume),
        cmocka_unit_test(test_free_is_idempotent),
        cmocka_unit_test(test_heavy_op_does_not_block_others),
        cmocka_unit_test(test_ops_with_arguments),
        cmocka_unit_test(test_hostile_zero_length_frame),
        cmocka_unit_test(test_hostile_length_over_limit),
        cmocka_unit_test(test_hostile_truncated_frame_then_disconnect),
        cmocka_unit_test(test_hostile_garbage_bytes),
        cmocka_unit_test(test_hostile_unknown_op),
        cmocka_unit_test(test_hostile_unknown_handle),
        cmocka_unit_test(test_hostile_dim_overflow),
        cmocka_unit_test(test_hostile_data_length_mismatch),
        cmocka_unit_test(test_request_before_hello),
        cmocka_unit_test(test_readme_example_runs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
