/* tests/rpc/test_fuzz_regress.c — one named test per bug the rpc fuzzer (tests/fuzz/fuzz_rpc.c)
** found. The input that first showed each one is kept in tests/fuzz/regress/rpc/ and replayed by
** `make test-fuzz-regress`; these tests state the correct behaviour through the public API, with
** no fuzzer needed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "core/ops.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

struct harness {
    struct td_store store;
    struct td_rpc_server srv;
    struct td_rpc_peer *peer;
    Tensord__Response *last; /* the last reply, decoded */
    int nreplies;
    uint64_t ids[16]; /* the first replies' ids and status codes, in arrival order */
    int codes[16];
};

static uint64_t fake_now(void)
{
    return 1000;
}

static void capture(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct harness *h = user;
    (void)p;
    if (h->nreplies < 16) {
        h->ids[h->nreplies] = UINT64_MAX; /* a close with no reply frame */
        h->codes[h->nreplies] = -1;
    }
    h->nreplies++;
    if (h->last != NULL) {
        tensord__response__free_unpacked(h->last, NULL);
        h->last = NULL;
    }
    if (r->frame != NULL) {
        assert_true(r->frame_len >= TD_FRAME_HEADER_BYTES);
        h->last = tensord__response__unpack(NULL, r->frame_len - TD_FRAME_HEADER_BYTES,
                                            r->frame + TD_FRAME_HEADER_BYTES);
        assert_non_null(h->last);
        if (h->nreplies <= 16) {
            h->ids[h->nreplies - 1] = h->last->id;
            h->codes[h->nreplies - 1] = h->last->status != NULL ? (int)h->last->status->code : 0;
        }
    }
    if (r->frame != NULL) {
        assert_non_null(r->release); /* every frame has one, and it frees the frame */
    }
    if (r->release != NULL) {
        r->release(r->release_arg);
    }
}

static void send_req(struct harness *h, Tensord__Request *req)
{
    size_t len = tensord__request__get_packed_size(req);
    uint8_t *meta = malloc(len);
    assert_non_null(meta);
    tensord__request__pack(req, meta);
    td_rpc_handle(h->peer, meta, len, NULL, 0);
    free(meta);
}

/* The connection still serves: a Ping with this id is answered OK. */
static void assert_ping_ok(struct harness *h, uint64_t id)
{
    Tensord__Request ping = TENSORD__REQUEST__INIT;
    Tensord__Ping pm = TENSORD__PING__INIT;
    ping.id = id;
    ping.body_case = TENSORD__REQUEST__BODY_PING;
    ping.ping = &pm;
    send_req(h, &ping);
    assert_int_equal(h->last->id, id);
    assert_true(h->last->status == NULL || h->last->status->code == 0);
}

static void harness_init(struct harness *h)
{
    memset(h, 0, sizeof *h);
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&h->store, &cfg, &td_executor_inline);
    h->srv.store = &h->store;
    h->srv.max_frame_bytes = 1u << 20;
    h->srv.heavy_work = 1 << 16;
    h->srv.now_ms = fake_now;
    assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 1;
    req.id = 1;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    send_req(h, &req);
    assert_non_null(h->last);
    assert_true(h->last->status == NULL || h->last->status->code == 0);
}

static void harness_close(struct harness *h)
{
    if (h->last != NULL) {
        tensord__response__free_unpacked(h->last, NULL);
    }
    td_rpc_peer_close(h->peer);
    td_store_close(&h->store);
    td_rpc_server_close(&h->srv);
}

/* regress/rpc/op-work-scalar-input: RunOp sum with a number as its only input crashed the
** server. Before the job runs, the session asks whether it is heavy, and td_op_cost handed the
** number to sum's shape rule, which read it as a tensor (NULL). The op itself refuses numbers
** as its input, and that error is the reply. */
static void test_sum_of_a_number(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand o = TENSORD__OPERAND__INIT;
    Tensord__Scalar sc = TENSORD__SCALAR__INIT;
    Tensord__Operand *ins[] = {&o};
    sc.value_case = TENSORD__SCALAR__VALUE_F;
    sc.f = 4.0744391458166e-311; /* the fuzzer's number; any does */
    o.value_case = TENSORD__OPERAND__VALUE_SCALAR;
    o.scalar = &sc;
    m.out = 6;
    m.op = TENSORD__OP__OP_SUM;
    m.inputs = ins;
    m.n_inputs = 1;
    req.id = 2;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    send_req(&h, &req);
    assert_int_equal(h.nreplies, 2);
    assert_non_null(h.last);
    assert_int_equal(h.last->id, 2);
    assert_non_null(h.last->status);
    assert_int_equal(h.last->status->code, TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_string_equal(h.last->status->message,
                        "sum(): argument 'input' (position 1) must be Tensor, not float");
    harness_close(&h);
}

/* The same bug for every op: td_op_cost, which runs before any validation, takes numbers in
** every position and any count of inputs without touching them as tensors (fill, binary, may
** have a number first and its shape rule read it as a tensor too), and estimates no work for
** operands the op would refuse. */
static void test_op_work_of_numbers(void **state)
{
    (void)state;
    struct td_op_args args;
    td_op_args_init(&args);
    int64_t shape[] = {2, 3};
    struct td_tensor *t;
    assert_int_equal(td_tensor_empty(&t, TD_DTYPE_F32, shape, 2, NULL, NULL), 0);
    for (int id = 0; id < TD_OP_COUNT; id++) {
        for (int nin = 0; nin <= 3; nin++) {
            /* all numbers, then the tensor in each position but the first */
            for (int tpos = -1; tpos < nin; tpos++) {
                if (tpos == 0) {
                    continue;
                }
                struct td_operand in[3];
                memset(in, 0, sizeof in);
                for (int i = 0; i < nin; i++) {
                    in[i].s.kind = TD_SCALAR_FLOAT;
                    in[i].s.v.f = 1.5;
                    in[i].t = i == tpos ? t : NULL;
                }
                struct td_cost cost;
                int64_t w = td_op_cost((enum td_op_id)id, in, nin, &args, &cost, NULL) == 0
                                ? td_cost_work(&cost)
                                : 0;
                if (tpos < 0 && td_ops[id].shape != NULL) {
                    assert_int_equal(w, 0); /* no tensor at all: the op will refuse it */
                }
            }
        }
    }
    td_tensor_unref(t);
}

/* Found by test_op_work_of_numbers: RunOp fill with a number first and a tensor second. */
static void test_fill_of_a_number(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full full = TENSORD__FULL__INIT;
    Tensord__Scalar zero = TENSORD__SCALAR__INIT;
    int64_t shape[] = {2};
    zero.value_case = TENSORD__SCALAR__VALUE_F;
    full.out = 1;
    full.dtype = TENSORD__DTYPE__FLOAT32;
    full.shape = shape;
    full.n_shape = 1;
    full.value = &zero;
    req.id = 2;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &full;
    send_req(&h, &req);
    assert_true(h.last->status == NULL || h.last->status->code == 0);

    Tensord__Request req2 = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand num = TENSORD__OPERAND__INIT, ten = TENSORD__OPERAND__INIT;
    Tensord__Scalar sc = TENSORD__SCALAR__INIT;
    Tensord__Operand *ins[] = {&num, &ten};
    sc.value_case = TENSORD__SCALAR__VALUE_F;
    sc.f = 1.0;
    num.value_case = TENSORD__OPERAND__VALUE_SCALAR;
    num.scalar = &sc;
    ten.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    ten.handle = 1;
    m.out = 2;
    m.op = TENSORD__OP__OP_FILL;
    m.inputs = ins;
    m.n_inputs = 2;
    req2.id = 3;
    req2.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req2.run_op = &m;
    send_req(&h, &req2);
    assert_int_equal(h.nreplies, 3);
    assert_int_equal(h.last->id, 3);
    assert_non_null(h.last->status);
    assert_int_equal(h.last->status->code, TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    harness_close(&h);
}

/* regress/rpc/hello-after-close-session: CloseSession, then Hello on the same connection. The
** Hello used to wait in the closed session's queue and move the connection to a new session,
** which dropped the old one's last references but the job's own; the queue loop then read the
** old session after that last reference went (a use after free). A connection now has one
** session: the Hello is refused (PROTOCOL_ERROR, naming the way out), the old session is gone,
** and the connection's requests fail with UNKNOWN_SESSION. */
static void test_hello_after_close_session(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__CloseSession cs = TENSORD__CLOSE_SESSION__INIT;
    req.id = 21;
    req.body_case = TENSORD__REQUEST__BODY_CLOSE_SESSION;
    req.close_session = &cs;
    send_req(&h, &req);
    assert_int_equal(h.last->id, 21);
    assert_true(h.last->status == NULL || h.last->status->code == 0);

    Tensord__Request hello = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    hello.id = 22;
    hello.body_case = TENSORD__REQUEST__BODY_HELLO;
    hello.hello = &m;
    send_req(&h, &hello);
    assert_int_equal(h.nreplies, 3);
    assert_int_equal(h.last->id, 22);
    assert_non_null(h.last->status);
    assert_int_equal(h.last->status->code, TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    assert_non_null(strstr(h.last->status->message, "open a new connection"));
    assert_int_equal(td_store_count(&h.store), 0);
    harness_close(&h);
}

/* A deferring executor, as the thread pool is seen from the loop: heavy jobs wait in `deferred`
** until the test runs them, so later requests of the connection queue up behind them. */
static struct td_job *deferred[8];
static int ndeferred;

static void defer_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    assert_true(ndeferred < 8);
    deferred[ndeferred++] = job;
}

static struct td_executor executor_deferred = {.submit = defer_submit};

/* The "worker" finishes the oldest heavy job; its completion pumps the session's queue. */
static void finish_deferred(void)
{
    assert_true(ndeferred > 0);
    struct td_job *job = deferred[0];
    memmove(deferred, deferred + 1, (size_t)(ndeferred - 1) * sizeof deferred[0]);
    ndeferred--;
    job->run(job);
    td_session_job_complete(job);
}

/* The reproducers' heavy job was a Backward of a handle that does not exist, when Backward always
** went to the executor. A Backward is costed by its graph now (an unknown handle costs nothing,
** so it runs inline); a ResumeBackward still always goes to the executor, and with no walk
** suspended it fails with INVALID_ARGUMENT when it runs. */
static void send_heavy(struct harness *h, uint64_t id)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ResumeBackward m = TENSORD__RESUME_BACKWARD__INIT;
    req.id = id;
    req.body_case = TENSORD__REQUEST__BODY_RESUME_BACKWARD;
    req.resume_backward = &m;
    send_req(h, &req);
}

/* A Hello on a connection that has a session: it names protocol versions 10.. (none in common). */
static void send_second_hello(struct harness *h, uint64_t id)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 10;
    req.id = id;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    send_req(h, &req);
}

static void assert_replies(const struct harness *h, int first, const uint64_t *ids,
                           const int *codes, int n)
{
    assert_int_equal(h->nreplies, first + n);
    for (int i = 0; i < n; i++) {
        if (h->ids[first + i] != ids[i] || h->codes[first + i] != codes[i]) {
            fail_msg("reply %d: id %llu status %d, expected id %llu status %d", i,
                     (unsigned long long)h->ids[first + i], h->codes[first + i],
                     (unsigned long long)ids[i], codes[i]);
        }
    }
}

/* regress/rpc/reply-order-hello-behind-heavy: with a heavy job (there a Backward, here a
** ResumeBackward: send_heavy) running on a worker, a second
** Hello (versions 10.., refused), a RunOp and an empty frame follow on the same connection. A
** Hello on a connection that has a session goes through the session's FIFO like any request, so
** its VERSION_MISMATCH reply comes after the heavy job's and before the RunOp's. (The reproducer
** gives the Hello id 0, the id an undecodable frame's reply carries too; distinct ids here make
** each reply's place checkable.) */
static void test_hello_behind_heavy_keeps_order(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h);
    h.store.ex = &executor_deferred;
    int first = h.nreplies;
    send_heavy(&h, 18);
    send_second_hello(&h, 19);
    /* RunOp sub(3, 3) with dims [1, 0]: handle 3 does not exist. */
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__OpArgs args = TENSORD__OP_ARGS__INIT;
    Tensord__Operand o = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[] = {&o, &o};
    int64_t dims[] = {1, 0};
    o.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    o.handle = 3;
    args.dims = dims;
    args.n_dims = 2;
    args.has_dims = true;
    args.has_dim = true;
    m.out = 1108;
    m.op = TENSORD__OP__OP_SUB;
    m.inputs = ins;
    m.n_inputs = 2;
    m.args = &args;
    req.id = 108;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    send_req(&h, &req);
    td_rpc_handle(h.peer, NULL, 0, NULL, 0); /* the reproducer's trailing empty frame */
    /* Nothing may be answered while the first request is still on the worker. */
    assert_int_equal(h.nreplies, first);
    assert_int_equal(ndeferred, 1);
    finish_deferred();
    const uint64_t ids[] = {18, 19, 108, 0};
    const int codes[] = {TENSORD__STATUS_CODE__INVALID_ARGUMENT,
                         TENSORD__STATUS_CODE__VERSION_MISMATCH,
                         TENSORD__STATUS_CODE__UNKNOWN_HANDLE,
                         TENSORD__STATUS_CODE__PROTOCOL_ERROR};
    assert_replies(&h, first, ids, codes, 4);
    assert_int_equal(ndeferred, 0);
    /* The refused Hello left the connection on its session: a Ping is answered OK. */
    h.store.ex = &td_executor_inline;
    assert_ping_ok(&h, 109);
    harness_close(&h);
}

/* regress/rpc/reply-order-empty-frame-behind-heavy: a heavy job (send_heavy), a refused second
** Hello, another heavy job (, so the queue stops twice), then an empty frame. The empty
** frame's PROTOCOL_ERROR reply (id 0) was sent at once, overtaking all three; it must wait its
** turn in the FIFO and come last. Undecodable bytes and a data section on a request that takes
** none are refused on the same early path, and keep their place the same way. */
static void test_empty_frame_behind_heavy_keeps_order(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h);
    h.store.ex = &executor_deferred;
    int first = h.nreplies;
    send_heavy(&h, 18);
    send_second_hello(&h, 19);
    send_heavy(&h, 20);
    td_rpc_handle(h.peer, NULL, 0, NULL, 0);            /* empty: no protobuf section */
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff}; /* not a Request message */
    td_rpc_handle(h.peer, garbage, sizeof garbage, NULL, 0);
    Tensord__Request ping = TENSORD__REQUEST__INIT;
    Tensord__Ping pm = TENSORD__PING__INIT;
    ping.id = 21;
    ping.body_case = TENSORD__REQUEST__BODY_PING;
    ping.ping = &pm;
    size_t len = tensord__request__get_packed_size(&ping);
    uint8_t meta[16];
    assert_true(len <= sizeof meta);
    tensord__request__pack(&ping, meta);
    void *data = td_malloc(3); /* Ping takes no data section */
    assert_non_null(data);
    memcpy(data, "xyz", 3);
    td_rpc_handle(h.peer, meta, len, data, 3);
    assert_int_equal(h.nreplies, first);
    assert_int_equal(ndeferred, 1);
    finish_deferred();
    /* The Hello's reply is out; the second heavy job is on the worker and holds the rest. */
    assert_int_equal(h.nreplies, first + 2);
    assert_int_equal(ndeferred, 1);
    finish_deferred();
    const uint64_t ids[] = {18, 19, 20, 0, 0, 21};
    const int codes[] = {TENSORD__STATUS_CODE__INVALID_ARGUMENT,
                         TENSORD__STATUS_CODE__VERSION_MISMATCH,
                         TENSORD__STATUS_CODE__INVALID_ARGUMENT,
                         TENSORD__STATUS_CODE__PROTOCOL_ERROR,
                         TENSORD__STATUS_CODE__PROTOCOL_ERROR,
                         TENSORD__STATUS_CODE__PROTOCOL_ERROR};
    assert_replies(&h, first, ids, codes, 6);
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

int main(void)
{
    td_log_min_level = TD_LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_of_a_number),
        cmocka_unit_test(test_op_work_of_numbers),
        cmocka_unit_test(test_fill_of_a_number),
        cmocka_unit_test(test_hello_after_close_session),
        cmocka_unit_test(test_hello_behind_heavy_keeps_order),
        cmocka_unit_test(test_empty_frame_behind_heavy_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
