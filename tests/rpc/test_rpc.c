/* tests/rpc/test_rpc.c — requests in, responses out, no sockets.
**
** A harness stands in for the network: it packs Request messages with protobuf-c, hands them to
** td_rpc_handle as frames, and decodes every reply frame the peer receives. Expected values are
** hand-derived; error wording is PyTorch's where PyTorch has one.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

#define MAX_REPLIES 64

struct captured {
    Tensord__Response *resp;
    uint8_t *data;            /* copy of the data section */
    size_t data_len;
    bool close_after;
    struct td_rpc_reply raw;  /* kept unreleased when the harness is told to hold replies */
};

struct harness {
    struct td_store store;
    struct td_rpc_server srv;
    struct td_rpc_peer *peer;
    struct captured replies[MAX_REPLIES];
    int nreplies;
    bool hold;                /* keep replies' data pinned until harness_release_held */
    uint64_t next_id;
};

static int64_t arm_failure_at;  /* > 0: the allocation sweep arms the fault hook per request */

static uint64_t fake_now(void)
{
    return 1000;
}

static void capture(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct harness *h = user;
    (void)p;
    assert_true(h->nreplies < MAX_REPLIES);
    struct captured *c = &h->replies[h->nreplies++];
    memset(c, 0, sizeof *c);
    c->close_after = r->close_after;
    if (r->frame == NULL) {
        return;  /* "close the connection" with no reply */
    }
    assert_true(r->frame_len >= TD_FRAME_HEADER_BYTES);
    const uint8_t *f = r->frame;
    uint32_t ml = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | f[4 + i];
    }
    assert_int_equal(ml, r->frame_len - TD_FRAME_HEADER_BYTES);
    assert_int_equal(dl, r->data_len);
    c->resp = tensord__response__unpack(NULL, ml, f + TD_FRAME_HEADER_BYTES);
    assert_non_null(c->resp);
    if (h->hold) {
        c->raw = *r;
        return;
    }
    if (r->data_len > 0) {
        c->data = malloc(r->data_len);
        memcpy(c->data, r->data, r->data_len);
        c->data_len = r->data_len;
    }
    if (r->release != NULL) {
        r->release(r->release_arg);
    }
    td_free(r->frame);
}

static void harness_clear(struct harness *h)
{
    for (int i = 0; i < h->nreplies; i++) {
        tensord__response__free_unpacked(h->replies[i].resp, NULL);
        free(h->replies[i].data);
        if (h->replies[i].raw.frame != NULL) {
            if (h->replies[i].raw.release != NULL) {
                h->replies[i].raw.release(h->replies[i].raw.release_arg);
            }
            td_free(h->replies[i].raw.frame);
        }
    }
    h->nreplies = 0;
}

static void harness_init(struct harness *h, const struct td_store_config *cfg)
{
    memset(h, 0, sizeof *h);
    struct td_store_config dflt = {.session_ttl_ms = 60000};
    td_store_init(&h->store, cfg != NULL ? cfg : &dflt, &td_executor_inline);
    h->srv.store = &h->store;
    h->srv.max_frame_bytes = 1u << 20;
    h->srv.heavy_work = 1 << 16;
    h->srv.now_ms = fake_now;
    memset(h->srv.instance_id, 7, sizeof h->srv.instance_id);
    assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
    h->next_id = 1;
}

static void harness_close(struct harness *h)
{
    harness_clear(h);
    td_rpc_peer_close(h->peer);
    td_store_close(&h->store);
}

/* Sends req (id assigned here) with an optional data section; returns the id. */
static uint64_t send_req(struct harness *h, Tensord__Request *req, const void *data, size_t n)
{
    req->id = h->next_id++;
    size_t len = tensord__request__get_packed_size(req);
    uint8_t *meta = malloc(len + 1);
    tensord__request__pack(req, meta);
    void *d = NULL;
    if (n > 0) {
        d = td_malloc(n);
        assert_non_null(d);
        memcpy(d, data, n);
    }
    if (arm_failure_at > 0) {
        td_alloc_fail_at(arm_failure_at);
    }
    td_rpc_handle(h->peer, meta, len, d, n);
    free(meta);
    return req->id;
}

/* The last reply, checked to answer `id`. */
static struct captured *last(struct harness *h, uint64_t id)
{
    assert_true(h->nreplies > 0);
    struct captured *c = &h->replies[h->nreplies - 1];
    /* resp NULL: the peer was told to close, with no reply at all. Under the allocation
    ** sweep a request that could not even be decoded is answered with id 0. */
    if (c->resp != NULL && !(arm_failure_at > 0 && c->resp->id == 0)) {
        assert_int_equal(c->resp->id, id);
    }
    return c;
}

static int status_of(struct captured *c)
{
    if (c->resp == NULL) {
        return -1;
    }
    return c->resp->status != NULL ? (int)c->resp->status->code : 0;
}

static const char *message_of(struct captured *c)
{
    return c->resp->status != NULL ? c->resp->status->message : "";
}

static Tensord__Response *hello(struct harness *h, const uint8_t *token, size_t token_len)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 1;
    m.session_token.data = (uint8_t *)token;
    m.session_token.len = token_len;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    uint64_t id = send_req(h, &req, NULL, 0);
    return last(h, id)->resp;
}

static int create(struct harness *h, uint64_t out, Tensord__DType dt, const int64_t *shape,
                  size_t ndim, const void *data, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = out;
    m.dtype = dt;
    m.shape = (int64_t *)shape;
    m.n_shape = ndim;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    return status_of(last(h, send_req(h, &req, data, n)));
}

/* Runs op on two handles (b == 0: the scalar sc instead). */
static struct captured *run2(struct harness *h, Tensord__Op op, uint64_t out, uint64_t a,
                             uint64_t b, const Tensord__Scalar *sc, bool inplace)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT, ob = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[2] = {&oa, &ob};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = a;
    if (b != 0) {
        ob.value_case = TENSORD__OPERAND__VALUE_HANDLE;
        ob.handle = b;
    } else {
        ob.value_case = TENSORD__OPERAND__VALUE_SCALAR;
        ob.scalar = (Tensord__Scalar *)sc;
    }
    m.out = out;
    m.op = op;
    m.inputs = ins;
    m.n_inputs = 2;
    m.inplace = inplace;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *get(struct harness *h, uint64_t handle, uint64_t offset, uint64_t length)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Get m = TENSORD__GET__INIT;
    m.handle = handle;
    m.offset = offset;
    m.length = length;
    req.body_case = TENSORD__REQUEST__BODY_GET;
    req.get = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *simple(struct harness *h, Tensord__Request__BodyCase kind)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping ping = TENSORD__PING__INIT;
    Tensord__Stats stats = TENSORD__STATS__INIT;
    Tensord__CloseSession cs = TENSORD__CLOSE_SESSION__INIT;
    req.body_case = kind;
    if (kind == TENSORD__REQUEST__BODY_PING) {
        req.ping = &ping;
    } else if (kind == TENSORD__REQUEST__BODY_STATS) {
        req.stats = &stats;
    } else {
        req.close_session = &cs;
    }
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *free_handles(struct harness *h, uint64_t *handles, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Free m = TENSORD__FREE__INIT;
    m.handles = handles;
    m.n_handles = n;
    req.body_case = TENSORD__REQUEST__BODY_FREE;
    req.free = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static const int64_t SHAPE3[] = {3};
static const int64_t A64[] = {1, 2, 3};
static const int64_t B64[] = {10, 20, 30};

/* ---- tests ---- */

static void test_hello_opens_session(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    Tensord__Response *r = hello(&h, NULL, 0);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__OK);
    assert_int_equal(r->result_case, TENSORD__RESPONSE__RESULT_HELLO);
    assert_int_equal(r->hello->version, 1);
    assert_int_equal(r->hello->session_token.len, 16);
    assert_int_equal(r->hello->instance_id.len, 16);
    assert_false(r->hello->resumed);
    assert_non_null(r->hello->limits);
    assert_int_equal(r->hello->limits->max_dims, 8);
    assert_int_equal(r->hello->limits->max_frame_bytes, 1u << 20);
    assert_int_equal(td_store_count(&h.store), 1);
    harness_close(&h);
}

static void test_request_before_hello(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    struct captured *c = simple(&h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__NO_SESSION);
    assert_int_equal(td_store_count(&h.store), 0);
    harness_close(&h);
}

static void test_version_mismatch(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 2;
    m.max_version = 5;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__VERSION_MISMATCH);
    assert_string_equal(message_of(c),
                        "no common protocol version: client speaks 2..5, server 1..1");
    harness_close(&h);
}

static void test_auth_token(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.auth_token = "correct horse battery staple";
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    const char *wrong[] = {"", "correct horse battery stapl", "correct horse battery staple!",
                           "Correct horse battery staple"};
    for (size_t i = 0; i < 4; i++) {
        m.auth_token = (char *)wrong[i];
        struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
        assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNAUTHENTICATED);
        assert_true(c->close_after);
    }
    assert_int_equal(td_store_count(&h.store), 0);
    m.auth_token = "correct horse battery staple";
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__OK);
    assert_false(c->close_after);
    harness_close(&h);
}

static void test_create_get_round_trip_all_dtypes(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {2, 3};
    struct {
        Tensord__DType dt;
        size_t elsize;
    } cases[] = {{TENSORD__DTYPE__FLOAT32, 4}, {TENSORD__DTYPE__FLOAT64, 8},
                 {TENSORD__DTYPE__INT32, 4},   {TENSORD__DTYPE__INT64, 8},
                 {TENSORD__DTYPE__BOOL, 1}};
    for (size_t i = 0; i < 5; i++) {
        uint8_t bytes[48];
        for (size_t k = 0; k < sizeof bytes; k++) {
            bytes[k] = cases[i].dt == TENSORD__DTYPE__BOOL ? (uint8_t)(k % 2)
                                                            : (uint8_t)(k * 37 + i);
        }
        size_t n = 6 * cases[i].elsize;
        assert_int_equal(create(&h, 100 + i, cases[i].dt, shape, 2, bytes, n), 0);
        struct captured *c = get(&h, 100 + i, 0, 0);
        assert_int_equal(status_of(c), 0);
        assert_int_equal(c->resp->tensor->dtype, cases[i].dt);
        assert_int_equal(c->resp->tensor->n_shape, 2);
        assert_int_equal(c->resp->tensor->shape[0], 2);
        assert_int_equal(c->resp->tensor->shape[1], 3);
        assert_int_equal(c->resp->tensor->nbytes, n);
        assert_int_equal(c->data_len, n);
        assert_memory_equal(c->data, bytes, n);
    }
    harness_close(&h);
}

static struct captured *write_bytes(struct harness *h, uint64_t handle, uint64_t offset,
                                    const void *data, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Write m = TENSORD__WRITE__INIT;
    m.handle = handle;
    m.offset = offset;
    req.body_case = TENSORD__REQUEST__BODY_WRITE;
    req.write = &m;
    return last(h, send_req(h, &req, data, n));
}

/* Chunked upload: Writes land at their byte offsets; a Get already answered keeps the bytes it
** was answered with; ranges outside the tensor and unknown handles are refused. */
static void test_write_chunks(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {4};
    const int32_t v[] = {10, 20, 30, 40};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT32, shape, 1, v, sizeof v), 0);
    struct captured *before = get(&h, 1, 0, 0);
    const int32_t w[] = {7, 8};
    struct captured *c = write_bytes(&h, 1, 4, w, sizeof w);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->tensor->nbytes, 16);
    const int32_t want[] = {10, 7, 8, 40};
    c = get(&h, 1, 0, 0);
    assert_memory_equal(c->data, want, sizeof want);
    assert_memory_equal(before->data, v, sizeof v);
    c = write_bytes(&h, 1, 12, w, sizeof w);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_string_equal(message_of(c),
                        "write of 8 bytes at offset 12 is outside the tensor's 16 bytes");
    c = write_bytes(&h, 1, UINT64_MAX, w, sizeof w);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    c = write_bytes(&h, 99, 0, w, sizeof w);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    c = get(&h, 1, 0, 0);
    assert_memory_equal(c->data, want, sizeof want);
    harness_close(&h);
}

static void test_get_chunks(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {4};
    const int32_t v[] = {10, 20, 30, 40};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT32, shape, 1, v, sizeof v), 0);
    struct captured *c = get(&h, 1, 4, 8);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->tensor->offset, 4);
    assert_int_equal(c->resp->tensor->length, 8);
    assert_int_equal(c->data_len, 8);
    assert_memory_equal(c->data, &v[1], 8);
    c = get(&h, 1, 12, 0);  /* to the end */
    assert_int_equal(c->data_len, 4);
    assert_memory_equal(c->data, &v[3], 4);
    c = get(&h, 1, 12, 8);  /* a length past the end reads to the end */
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->tensor->length, 4);
    assert_int_equal(c->data_len, 4);
    assert_memory_equal(c->data, &v[3], 4);
    c = get(&h, 1, 17, 1);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_string_equal(message_of(c), "byte offset 17 is outside the tensor's 16 bytes");
    c = get(&h, 1, UINT64_MAX, 1);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    harness_close(&h);
}

/* Chunks of a view (a transpose: not contiguous) read any byte window of its C-order bytes,
** element-aligned or not; the bytes are derived by hand from the transposed layout. */
static void test_get_chunks_of_a_view(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {3, 4};
    int32_t v[12];
    for (int i = 0; i < 12; i++) {
        v[i] = 100 + i;
    }
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT32, shape, 2, v, sizeof v), 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[1] = {&oa};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = 1;
    m.out = 2;
    m.op = TENSORD__OP__OP_T;
    m.inputs = ins;
    m.n_inputs = 1;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    assert_int_equal(status_of(last(&h, send_req(&h, &req, NULL, 0))), 0);
    int32_t want[12];  /* t()[i][j] = v[j][i]: shape [4, 3] */
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) {
            want[i * 3 + j] = v[j * 4 + i];
        }
    }
    const uint8_t *wb = (const uint8_t *)want;
    for (uint64_t off = 0; off <= sizeof want; off++) {
        for (uint64_t len = 1; off + len <= sizeof want; len += 3) {
            struct captured *c = get(&h, 2, off, len);
            assert_int_equal(status_of(c), 0);
            assert_int_equal(c->data_len, len);
            assert_memory_equal(c->data, wb + off, len);
            harness_clear(&h);
        }
    }
    struct captured *c = get(&h, 2, 0, 0);
    assert_int_equal(c->data_len, sizeof want);
    assert_memory_equal(c->data, want, sizeof want);
    harness_close(&h);
}

static void test_create_validation(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {2, 3};
    float f[6] = {0};
    /* data length not matching shape x dtype size */
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, shape, 2, f, 20),
                     TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_string_equal(message_of(&h.replies[h.nreplies - 1]),
                        "data section has 20 bytes, but shape [2, 3] of float32 needs 24");
    /* unknown dtype */
    assert_int_equal(create(&h, 2, (Tensord__DType)99, shape, 2, f, 24),
                     TENSORD__STATUS_CODE__DTYPE_ERROR);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__DTYPE_UNSPECIFIED, shape, 2, f, 24),
                     TENSORD__STATUS_CODE__DTYPE_ERROR);
    /* rank 9 */
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(create(&h, 3, TENSORD__DTYPE__FLOAT32, nine, 9, f, 4),
                     TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    /* a negative dim */
    const int64_t neg[] = {2, -3};
    assert_int_not_equal(create(&h, 4, TENSORD__DTYPE__FLOAT32, neg, 2, f, 24), 0);
    /* element count overflowing int64 */
    const int64_t huge[] = {INT64_C(1) << 32, INT64_C(1) << 32, 4};
    int st = create(&h, 5, TENSORD__DTYPE__FLOAT32, huge, 3, f, 24);
    assert_true(st == TENSORD__STATUS_CODE__LIMIT_EXCEEDED ||
                st == TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    /* reserved output handle */
    assert_int_equal(create(&h, 0, TENSORD__DTYPE__FLOAT32, shape, 2, f, 24),
                     TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    /* nothing above left a tensor behind */
    struct captured *c = simple(&h, TENSORD__REQUEST__BODY_STATS);
    assert_int_equal(c->resp->stats->session_bytes, 0);
    harness_close(&h);
}

static void test_ops_and_promotion(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    struct captured *c = run2(&h, TENSORD__OP__OP_ADD, 3, 1, 2, NULL, false);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->tensor->dtype, TENSORD__DTYPE__INT64);
    c = get(&h, 3, 0, 0);
    const int64_t sum[] = {11, 22, 33};
    assert_memory_equal(c->data, sum, sizeof sum);

    /* int64 tensor * Python float -> float32 */
    Tensord__Scalar half = TENSORD__SCALAR__INIT;
    half.value_case = TENSORD__SCALAR__VALUE_F;
    half.f = 0.5;
    c = run2(&h, TENSORD__OP__OP_MUL, 4, 1, 0, &half, false);
    assert_int_equal(c->resp->tensor->dtype, TENSORD__DTYPE__FLOAT32);
    c = get(&h, 4, 0, 0);
    const float halves[] = {0.5f, 1.0f, 1.5f};
    assert_memory_equal(c->data, halves, sizeof halves);

    /* int / int is true division into float32 */
    c = run2(&h, TENSORD__OP__OP_DIV, 5, 2, 1, NULL, false);
    assert_int_equal(c->resp->tensor->dtype, TENSORD__DTYPE__FLOAT32);
    c = get(&h, 5, 0, 0);
    const float q[] = {10.0f, 10.0f, 10.0f};
    assert_memory_equal(c->data, q, sizeof q);
    harness_close(&h);
}

static void test_op_errors(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    struct captured *c = run2(&h, (Tensord__Op)9999, 20, 1, 1, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_OP);
    assert_string_equal(message_of(c), "unknown op code 9999");

    c = run2(&h, TENSORD__OP__OP_ADD, 2, 1, 42, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_string_equal(message_of(c), "unknown handle 42");

    /* handle 2's op failed: using it reports the original failure */
    c = run2(&h, TENSORD__OP__OP_MUL, 3, 2, 1, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INPUT_FAILED);
    assert_string_equal(message_of(c), "input 2 failed: unknown handle 42");
    /* ... and transitively */
    c = run2(&h, TENSORD__OP__OP_MUL, 4, 3, 1, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INPUT_FAILED);
    assert_string_equal(message_of(c),
                        "input 3 failed: input 2 failed: unknown handle 42");

    /* output handle already in use: refused, and the tensor there is untouched */
    c = run2(&h, TENSORD__OP__OP_ADD, 1, 1, 1, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__HANDLE_IN_USE);
    c = get(&h, 1, 0, 0);
    assert_memory_equal(c->data, A64, sizeof A64);

    /* broadcast mismatch, PyTorch's words */
    const int64_t s23[] = {2, 3}, s2[] = {2};
    const int64_t v6[6] = {0}, v2[2] = {0};
    assert_int_equal(create(&h, 10, TENSORD__DTYPE__INT64, s23, 2, v6, sizeof v6), 0);
    assert_int_equal(create(&h, 11, TENSORD__DTYPE__INT64, s2, 1, v2, sizeof v2), 0);
    c = run2(&h, TENSORD__OP__OP_ADD, 12, 10, 11, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__SHAPE_MISMATCH);
    assert_string_equal(message_of(c), "The size of tensor a (3) must match the size of tensor b "
                                       "(2) at non-singleton dimension 1");
    /* matmul mismatch */
    c = run2(&h, TENSORD__OP__OP_MATMUL, 13, 10, 10, NULL, false);
    assert_int_not_equal(status_of(c), 0);
    assert_string_equal(message_of(c), "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    /* in place into a narrower dtype */
    Tensord__Scalar x = TENSORD__SCALAR__INIT;
    x.value_case = TENSORD__SCALAR__VALUE_F;
    x.f = 1.5;
    c = run2(&h, TENSORD__OP__OP_ADD, 0, 1, 0, &x, true);
    assert_int_not_equal(status_of(c), 0);
    assert_string_equal(message_of(c),
                        "result type Float can't be cast to the desired output type Long");
    c = get(&h, 1, 0, 0);
    assert_memory_equal(c->data, A64, sizeof A64);
    /* matmul has no in-place form */
    c = run2(&h, TENSORD__OP__OP_MATMUL, 0, 10, 10, NULL, true);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    harness_close(&h);
}

static void test_inplace_keeps_handle(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    Tensord__Scalar five = TENSORD__SCALAR__INIT;
    five.value_case = TENSORD__SCALAR__VALUE_I;
    five.i = 5;
    struct captured *c = run2(&h, TENSORD__OP__OP_ADD, 0, 1, 0, &five, true);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->tensor->handle, 1);
    c = get(&h, 1, 0, 0);
    const int64_t want[] = {6, 7, 8};
    assert_memory_equal(c->data, want, sizeof want);
    c = run2(&h, TENSORD__OP__OP_ADD, 7, 1, 0, &five, true);  /* out must be 0 or self */
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    harness_close(&h);
}

/* A Get's reply points into the tensor's bytes; an in-place op before the reply is written must
** not change what the reply carries. */
static void test_get_reply_survives_inplace_write(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    h.hold = true;
    struct captured *held = get(&h, 1, 0, 0);
    h.hold = false;
    Tensord__Scalar one = TENSORD__SCALAR__INIT;
    one.value_case = TENSORD__SCALAR__VALUE_I;
    one.i = 100;
    assert_int_equal(status_of(run2(&h, TENSORD__OP__OP_ADD, 0, 1, 0, &one, true)), 0);
    assert_memory_equal(held->raw.data, A64, sizeof A64);
    struct captured *now = get(&h, 1, 0, 0);
    const int64_t want[] = {101, 102, 103};
    assert_memory_equal(now->data, want, sizeof want);
    /* Freeing the tensor while the reply is held keeps the held bytes alive. */
    uint64_t one_h = 1;
    free_handles(&h, &one_h, 1);
    assert_memory_equal(held->raw.data, A64, sizeof A64);
    harness_close(&h);
}

/* The seed's matmul result, printed as torch prints it. */
static void test_format_like_torch(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t s22[] = {2, 2};
    const int64_t a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, s22, 2, a, sizeof a), 0);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, s22, 2, b, sizeof b), 0);
    assert_int_equal(status_of(run2(&h, TENSORD__OP__OP_MATMUL, 3, 1, 2, NULL, false)), 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = 3;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_TEXT);
    /* torch.tensor([[1, 2], [3, 4]]) @ torch.tensor([[5, 6], [7, 8]]) */
    assert_string_equal(c->resp->text, "tensor([[19, 22],\n        [43, 50]])");
    m.handle = 99;
    c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    harness_close(&h);
}

static void test_free_idempotent(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    uint64_t hs[] = {1, 1, 77, 0};
    assert_int_equal(status_of(free_handles(&h, hs, 4)), 0);
    assert_int_equal(status_of(free_handles(&h, hs, 4)), 0);
    assert_int_equal(status_of(get(&h, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    struct captured *c = simple(&h, TENSORD__REQUEST__BODY_STATS);
    assert_int_equal(c->resp->stats->session_bytes, 0);
    assert_int_equal(c->resp->stats->session_tensors, 0);
    /* the handle can be used again */
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    harness_close(&h);
}

static void test_sessions_isolated_and_resumable(void **state)
{
    (void)state;
    struct harness a, b;
    harness_init(&a, NULL);
    hello(&a, NULL, 0);
    uint8_t token[16];
    memcpy(token, a.replies[a.nreplies - 1].resp->hello->session_token.data, 16);
    assert_int_equal(create(&a, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);

    /* Another connection on the same store, with its own session. */
    memset(&b, 0, sizeof b);
    b.srv = a.srv;
    b.srv.store = &a.store;
    b.next_id = 1;
    assert_int_equal(td_rpc_peer_new(&b.peer, &b.srv, capture, &b), 0);
    hello(&b, NULL, 0);
    assert_int_equal(status_of(get(&b, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_int_equal(create(&b, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    assert_memory_equal(get(&a, 1, 0, 0)->data, A64, sizeof A64);
    assert_memory_equal(get(&b, 1, 0, 0)->data, B64, sizeof B64);

    /* b drops its session and resumes a's by token: it sees a's tensor. */
    harness_clear(&b);
    td_rpc_peer_close(b.peer);
    assert_int_equal(td_rpc_peer_new(&b.peer, &b.srv, capture, &b), 0);
    Tensord__Response *r = hello(&b, token, sizeof token);
    assert_int_equal(r->status->code, 0);
    assert_true(r->hello->resumed);
    assert_memory_equal(get(&b, 1, 0, 0)->data, A64, sizeof A64);

    /* a wrong token is refused */
    uint8_t bad[16];
    memcpy(bad, token, 16);
    bad[15] ^= 1;
    harness_clear(&b);
    td_rpc_peer_close(b.peer);
    assert_int_equal(td_rpc_peer_new(&b.peer, &b.srv, capture, &b), 0);
    r = hello(&b, bad, sizeof bad);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    r = hello(&b, token, 5);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__UNKNOWN_SESSION);

    /* CloseSession frees everything; the token no longer resumes */
    struct captured *c = simple(&a, TENSORD__REQUEST__BODY_CLOSE_SESSION);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(status_of(get(&a, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    r = hello(&b, token, sizeof token);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    harness_clear(&b);
    td_rpc_peer_close(b.peer);
    harness_close(&a);
}

static void test_ttl_expiry(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_ttl_ms = 500};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    /* attached: never expires */
    assert_int_equal(td_store_sweep(&h.store, 1000000), 0);
    harness_clear(&h);
    td_rpc_peer_close(h.peer);  /* detached at fake_now() == 1000 */
    assert_int_equal(td_store_sweep(&h.store, 1400), 0);
    assert_int_equal(td_store_count(&h.store), 1);
    assert_int_equal(td_store_sweep(&h.store, 1500), 1);
    assert_int_equal(td_store_count(&h.store), 0);
    assert_int_equal(atomic_load(&h.store.global.used), 0);
    td_store_close(&h.store);
}

static void test_quota_and_tensor_limit(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_max_bytes = 64, .max_tensor_bytes = 48,
                                  .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    const int64_t s5[] = {5}, s7[] = {7};
    int64_t v[7] = {0};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, s5, 1, v, 40), 0);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, s5, 1, v, 40),
                     TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    assert_string_equal(message_of(&h.replies[h.nreplies - 1]),
                        "session memory quota exceeded: 64 bytes");
    assert_int_equal(create(&h, 3, TENSORD__DTYPE__INT64, s7, 1, v, 56),
                     TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(&h.replies[h.nreplies - 1]),
                        "tensor of 56 bytes exceeds max_tensor_bytes 48");
    /* an op result counts too */
    struct captured *c = run2(&h, TENSORD__OP__OP_ADD, 4, 1, 1, NULL, false);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    c = simple(&h, TENSORD__REQUEST__BODY_STATS);
    assert_int_equal(c->resp->stats->session_bytes, 40);
    harness_close(&h);
}

static void test_handle_limit(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_max_handles = 3, .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    const int64_t s0[] = {0};
    for (uint64_t i = 1; i <= 3; i++) {
        assert_int_equal(create(&h, i, TENSORD__DTYPE__INT64, s0, 1, NULL, 0), 0);
    }
    assert_int_equal(create(&h, 4, TENSORD__DTYPE__INT64, s0, 1, NULL, 0),
                     TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(&h.replies[h.nreplies - 1]),
                        "session handle limit reached: 3 handles");
    uint64_t one = 1;
    free_handles(&h, &one, 1);
    assert_int_equal(create(&h, 4, TENSORD__DTYPE__INT64, s0, 1, NULL, 0), 0);
    harness_close(&h);
}

static void test_malformed_frames(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    uint8_t garbage[16];
    memset(garbage, 0xff, sizeof garbage);
    td_rpc_handle(h.peer, garbage, sizeof garbage, NULL, 0);
    assert_int_equal(status_of(last(&h, 0)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    td_rpc_handle(h.peer, NULL, 0, NULL, 0);
    assert_int_equal(status_of(last(&h, 0)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    /* a Request holding only an unknown field (number 99, varint 1): decodes, but no body */
    hello(&h, NULL, 0);
    const uint8_t unknown[] = {0x08, 0x05,        /* field 1 (id), varint 5 */
                               0x98, 0x06, 0x01}; /* field 99, varint 1 */
    td_rpc_handle(h.peer, unknown, sizeof unknown, NULL, 0);
    struct captured *c = last(&h, 5);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_OP);
    /* a data section on a request that takes none */
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping ping = TENSORD__PING__INIT;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &ping;
    uint64_t id = send_req(&h, &req, "xyz", 3);
    assert_int_equal(status_of(last(&h, id)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    /* a second Hello on a connection with a session */
    Tensord__Response *r = hello(&h, NULL, 0);
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    harness_close(&h);
}

/* An executor that holds heavy jobs until the test releases them. */
static struct td_job *deferred[16];
static int ndeferred;

static void defer_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    deferred[ndeferred++] = job;
}

static void test_heavy_work_keeps_order(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    h.store.ex = &later;
    h.srv.heavy_work = 2;  /* anything over 2 elements is heavy */
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    int before = h.nreplies;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[2] = {&oa, &oa};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = 1;
    m.out = 2;
    m.op = TENSORD__OP__OP_MUL;
    m.inputs = ins;
    m.n_inputs = 2;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    uint64_t op_id = send_req(&h, &req, NULL, 0);
    Tensord__Ping ping = TENSORD__PING__INIT;
    Tensord__Request preq = TENSORD__REQUEST__INIT;
    preq.body_case = TENSORD__REQUEST__BODY_PING;
    preq.ping = &ping;
    uint64_t ping_id = send_req(&h, &preq, NULL, 0);
    assert_int_equal(h.nreplies, before);  /* the ping waits behind the heavy op */
    assert_int_equal(ndeferred, 1);
    struct td_job *job = deferred[--ndeferred];
    job->run(job);
    td_session_job_complete(job);
    assert_int_equal(h.nreplies, before + 2);
    assert_int_equal(h.replies[before].resp->id, op_id);
    assert_int_equal(h.replies[before + 1].resp->id, ping_id);
    const int64_t sq[] = {1, 4, 9};
    h.store.ex = &td_executor_inline;
    assert_memory_equal(get(&h, 2, 0, 0)->data, sq, sizeof sq);
    harness_close(&h);
}

/* Gathering a view's bytes and writing a large data section go to the executor like large ops;
** a Get of contiguous bytes (no copy) and a metadata Get stay on the loop. */
static void test_heavy_gets_and_writes(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    h.srv.heavy_work = 2;
    hello(&h, NULL, 0);
    const int64_t shape[] = {2, 2};
    const int64_t v[] = {1, 2, 3, 4};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, shape, 2, v, sizeof v), 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[1] = {&oa};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = 1;
    m.out = 2;
    m.op = TENSORD__OP__OP_T;
    m.inputs = ins;
    m.n_inputs = 1;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    assert_int_equal(status_of(last(&h, send_req(&h, &req, NULL, 0))), 0);
    h.store.ex = &later;
    int before = h.nreplies;
    get(&h, 1, 0, 0);  /* contiguous: answered at once */
    assert_int_equal(h.nreplies, before + 1);
    assert_int_equal(ndeferred, 0);
    uint64_t id = h.next_id;
    Tensord__Request greq = TENSORD__REQUEST__INIT;
    Tensord__Get g = TENSORD__GET__INIT;
    g.handle = 2;
    greq.body_case = TENSORD__REQUEST__BODY_GET;
    greq.get = &g;
    send_req(&h, &greq, NULL, 0);
    assert_int_equal(ndeferred, 1);
    struct td_job *job = deferred[--ndeferred];
    job->run(job);
    td_session_job_complete(job);
    const int64_t tv[] = {1, 3, 2, 4};
    assert_memory_equal(last(&h, id)->data, tv, sizeof tv);
    const int64_t w[] = {9, 8, 7};
    Tensord__Request wreq = TENSORD__REQUEST__INIT;
    Tensord__Write wm = TENSORD__WRITE__INIT;
    wm.handle = 1;
    wm.offset = 8;
    wreq.body_case = TENSORD__REQUEST__BODY_WRITE;
    wreq.write = &wm;
    id = send_req(&h, &wreq, w, sizeof w);
    assert_int_equal(ndeferred, 1);
    job = deferred[--ndeferred];
    job->run(job);
    td_session_job_complete(job);
    assert_int_equal(status_of(last(&h, id)), 0);
    h.store.ex = &td_executor_inline;
    const int64_t after[] = {1, 9, 8, 7};
    assert_memory_equal(get(&h, 1, 0, 0)->data, after, sizeof after);
    harness_close(&h);
}

/* Every handler, with the 1st, 2nd, 3rd ... allocation failing: a reply (or a clean close)
** always comes, and nothing leaks. */
static void sweep_one(const char *what, void (*prepare)(struct harness *),
                      void (*request)(struct harness *))
{
    for (int64_t k = 1; k < 200; k++) {
        int64_t base = td_alloc_live_bytes();
        struct harness h;
        harness_init(&h, NULL);
        prepare(&h);
        int before = h.nreplies;
        arm_failure_at = k;
        request(&h);
        arm_failure_at = 0;
        int64_t used = td_alloc_count();
        td_alloc_fail_at(0);
        assert_true(h.nreplies == before + 1);
        harness_close(&h);
        if (td_alloc_live_bytes() != base) {
            fail_msg("%s: leaked %lld bytes with allocation %lld failing", what,
                     (long long)(td_alloc_live_bytes() - base), (long long)k);
        }
        if (used < k) {
            return;  /* the request made fewer than k allocations: every one has failed once */
        }
    }
    fail_msg("%s: more than 200 allocations", what);
}

static void prep_none(struct harness *h)
{
    (void)h;
}

static void prep_hello(struct harness *h)
{
    hello(h, NULL, 0);
}

static void prep_tensors(struct harness *h)
{
    hello(h, NULL, 0);
    assert_int_equal(create(h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(create(h, 2, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
}

static void req_hello(struct harness *h)
{
    hello(h, NULL, 0);
}

static void req_create(struct harness *h)
{
    create(h, 9, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64);
}

static void req_add(struct harness *h)
{
    run2(h, TENSORD__OP__OP_ADD, 9, 1, 2, NULL, false);
}

static void req_matmul(struct harness *h)
{
    run2(h, TENSORD__OP__OP_MATMUL, 9, 1, 2, NULL, false);
}

static void req_inplace(struct harness *h)
{
    Tensord__Scalar s = TENSORD__SCALAR__INIT;
    s.value_case = TENSORD__SCALAR__VALUE_I;
    s.i = 3;
    run2(h, TENSORD__OP__OP_MUL, 0, 1, 0, &s, true);
}

static void req_get(struct harness *h)
{
    get(h, 1, 0, 0);
}

static void req_free(struct harness *h)
{
    uint64_t hs[] = {1, 2};
    free_handles(h, hs, 2);
}

static void test_allocation_failure_sweep(void **state)
{
    (void)state;
    sweep_one("hello", prep_none, req_hello);
    sweep_one("create", prep_hello, req_create);
    sweep_one("add", prep_tensors, req_add);
    sweep_one("matmul", prep_tensors, req_matmul);
    sweep_one("mul_", prep_tensors, req_inplace);
    sweep_one("get", prep_tensors, req_get);
    sweep_one("free", prep_tensors, req_free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_opens_session),
        cmocka_unit_test(test_request_before_hello),
        cmocka_unit_test(test_version_mismatch),
        cmocka_unit_test(test_auth_token),
        cmocka_unit_test(test_create_get_round_trip_all_dtypes),
        cmocka_unit_test(test_get_chunks),
        cmocka_unit_test(test_write_chunks),
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_ops_and_promotion),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_inplace_keeps_handle),
        cmocka_unit_test(test_get_reply_survives_inplace_write),
        cmocka_unit_test(test_format_like_torch),
        cmocka_unit_test(test_free_idempotent),
        cmocka_unit_test(test_sessions_isolated_and_resumable),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_quota_and_tensor_limit),
        cmocka_unit_test(test_handle_limit),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_heavy_work_keeps_order),
        cmocka_unit_test(test_get_chunks_of_a_view),
        cmocka_unit_test(test_heavy_gets_and_writes),
        cmocka_unit_test(test_allocation_failure_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
