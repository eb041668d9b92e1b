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

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

#define MAX_REPLIES 64

struct captured {
    Tensord__Response *resp;
    uint8_t *data; /* copy of the data section */
    size_t data_len;
    bool close_after;
    struct td_rpc_reply raw; /* kept unreleased when the harness is told to hold replies */
};

struct harness {
    struct td_store store;
    struct td_rpc_server srv;
    struct td_rpc_peer *peer;
    struct captured replies[MAX_REPLIES];
    int nreplies;
    bool hold; /* keep replies' data pinned until harness_release_held */
    uint64_t next_id;
    void (*on_reply)(struct harness *h); /* called after each reply, as net's glue would */
};

static int64_t arm_failure_at; /* > 0: the allocation sweep arms the fault hook per request */

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
        return; /* "close the connection" with no reply */
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
    assert_non_null(r->release); /* every frame has one, and it frees the frame */
    r->release(r->release_arg);
    if (h->on_reply != NULL) {
        h->on_reply(h);
    }
}

static void harness_clear(struct harness *h)
{
    for (int i = 0; i < h->nreplies; i++) {
        tensord__response__free_unpacked(h->replies[i].resp, NULL);
        free(h->replies[i].data);
        if (h->replies[i].raw.frame != NULL) {
            assert_non_null(h->replies[i].raw.release);
            h->replies[i].raw.release(h->replies[i].raw.release_arg); /* frees the frame too */
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

/* Runs a one-input op on a handle (t, sum, ...). */
static struct captured *run1(struct harness *h, Tensord__Op op, uint64_t out, uint64_t a)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[1] = {&oa};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = a;
    m.out = out;
    m.op = op;
    m.inputs = ins;
    m.n_inputs = 1;
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
    m.min_version = 3;
    m.max_version = 5;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__VERSION_MISMATCH);
    assert_string_equal(message_of(c),
                        "no common protocol version: client speaks 3..5, server 1..2");
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

/* Only a NULL expected token means no auth: an empty one refuses every Hello, the empty token
** included (main never sets it; defence in depth). */
static void test_auth_empty_expected_token_refuses_all(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.auth_token = "";
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    const char *tokens[] = {"", "x", "correct horse battery staple"};
    for (size_t i = 0; i < 3; i++) {
        m.auth_token = (char *)tokens[i];
        struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
        assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNAUTHENTICATED);
        assert_string_equal(message_of(c), "authentication failed");
        assert_true(c->close_after);
    }
    m.auth_token = NULL; /* absent on the wire */
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNAUTHENTICATED);
    assert_int_equal(td_store_count(&h.store), 0);
    h.srv.auth_token = NULL; /* no auth at all: the same Hello opens a session */
    m.auth_token = "";
    c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__OK);
    assert_int_equal(td_store_count(&h.store), 1);
    harness_close(&h);
}

/* Sends a Request packed by hand: id 1, then each of the `k` Hellos' bytes as field 2 (a
** Hello sent k times over, merged as protobuf merges); returns the reply. */
static struct captured *raw_hellos(struct harness *h, const uint8_t *const *hellos,
                                   const size_t *lens, int k)
{
    uint8_t meta[512];
    size_t at = 0;
    meta[at++] = 0x08; /* id = 1, varint */
    meta[at++] = 0x01;
    for (int i = 0; i < k; i++) {
        assert_true(lens[i] < 128 && at + 2 + lens[i] <= sizeof meta);
        meta[at++] = 0x12; /* field 2, length-delimited */
        meta[at++] = (uint8_t)lens[i];
        memcpy(meta + at, hellos[i], lens[i]);
        at += lens[i];
    }
    td_rpc_handle(h->peer, meta, at, NULL, 0);
    return last(h, 1);
}

static struct captured *raw_hello(struct harness *h, const uint8_t *hello_bytes, size_t n)
{
    return raw_hellos(h, &hello_bytes, &n, 1);
}

/* A Hello whose auth_token (field 3) is `token` of `len` bytes, NULs included. */
static size_t hello_with_token(uint8_t *out, const char *token, size_t len)
{
    size_t at = 0;
    out[at++] = 0x08; /* min_version = 1 */
    out[at++] = 0x01;
    out[at++] = 0x10; /* max_version = 1 */
    out[at++] = 0x01;
    out[at++] = 0x1a; /* auth_token, length-delimited */
    out[at++] = (uint8_t)len;
    memcpy(out + at, token, len);
    return at + len;
}

/* The client's token is compared at its full length on the wire: the expected token followed
** by a NUL and anything else is a different token, not a match cut short at the NUL. */
static void test_auth_token_with_nul_is_not_cut_short(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.auth_token = "secret";
    uint8_t hb[128];
    static const struct {
        const char *tok;
        size_t len;
    } wrong[] = {
        {"secret\0", 7}, {"secret\0junk", 11}, {"secret\0\0\0\0", 10},
        {"\0secret", 7}, {"secre\0", 6},       {"", 0},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        size_t n = hello_with_token(hb, wrong[i].tok, wrong[i].len);
        struct captured *c = raw_hello(&h, hb, n);
        /* refused: as unauthenticated (or, were NULs refused while decoding, as malformed) */
        if (status_of(c) != TENSORD__STATUS_CODE__UNAUTHENTICATED) {
            fail_msg("token %zu: status %d (%s)", i, status_of(c), message_of(c));
        }
        harness_clear(&h);
    }
    /* Within one Hello the last token wins; a Hello sent twice merges the same way. */
    uint8_t hz[128], ok[128];
    size_t nz = hello_with_token(hz, "secret\0x", 8), nok = hello_with_token(ok, "secret", 6);
    const uint8_t *pair[2] = {ok, hz};
    size_t pair_len[2] = {nok, nz};
    assert_int_equal(status_of(raw_hellos(&h, pair, pair_len, 2)),
                     TENSORD__STATUS_CODE__UNAUTHENTICATED);
    harness_clear(&h);
    uint8_t both[256];
    memcpy(both, ok, nok);
    memcpy(both + nok, hz, nz);
    assert_int_equal(status_of(raw_hello(&h, both, nok + nz)),
                     TENSORD__STATUS_CODE__UNAUTHENTICATED);
    harness_clear(&h);
    assert_int_equal(td_store_count(&h.store), 0);
    pair[0] = hz;
    pair[1] = ok;
    pair_len[0] = nz;
    pair_len[1] = nok;
    assert_int_equal(status_of(raw_hellos(&h, pair, pair_len, 2)), TENSORD__STATUS_CODE__OK);
    harness_clear(&h);
    assert_int_equal(td_store_count(&h.store), 1);
    struct captured *c = raw_hello(&h, ok, nok);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__PROTOCOL_ERROR); /* already accepted */
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
    } cases[] = {{TENSORD__DTYPE__FLOAT32, 4},
                 {TENSORD__DTYPE__FLOAT64, 8},
                 {TENSORD__DTYPE__INT32, 4},
                 {TENSORD__DTYPE__INT64, 8},
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
    c = get(&h, 1, 12, 0); /* to the end */
    assert_int_equal(c->data_len, 4);
    assert_memory_equal(c->data, &v[3], 4);
    c = get(&h, 1, 12, 8); /* a length past the end reads to the end */
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
    assert_int_equal(status_of(run1(&h, TENSORD__OP__OP_T, 2, 1)), 0);
    int32_t want[12]; /* t()[i][j] = v[j][i]: shape [4, 3] */
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

/* Protocol 2: Request.free_first frees handles just before the body runs — so a body naming a
** handle freed that way fails as if a Free had come first. */
static void test_free_first_runs_before_the_body(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    const int64_t shape[] = {2};
    const int64_t v[] = {5, 7};
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, shape, 1, v, sizeof v), 0);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, shape, 1, v, sizeof v), 0);
    assert_int_equal(create(&h, 3, TENSORD__DTYPE__INT64, shape, 1, v, sizeof v), 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Get g = TENSORD__GET__INIT;
    g.handle = 1;
    uint64_t frees[] = {2, 99, 0}; /* unknown and reserved handles are ignored, as in Free */
    req.free_first = frees;
    req.n_free_first = 3;
    req.body_case = TENSORD__REQUEST__BODY_GET;
    req.get = &g;
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), 0);
    assert_memory_equal(c->data, v, sizeof v);
    assert_int_equal(status_of(get(&h, 2, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    uint64_t self[] = {3};
    g.handle = 3;
    req.free_first = self;
    req.n_free_first = 1;
    c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_string_equal(message_of(c), "unknown handle 3");
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
    assert_string_equal(message_of(c), "input 3 failed: input 2 failed: unknown handle 42");

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
    c = run2(&h, TENSORD__OP__OP_ADD, 7, 1, 0, &five, true); /* out must be 0 or self */
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
    r = hello(&b, token, 5); /* neither 16 bytes nor "<node>.<hex>": malformed */
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__UNKNOWN_NODE);

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
    td_rpc_peer_close(h.peer); /* detached at fake_now() == 1000 */
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
    struct td_store_config cfg = {.session_max_bytes = 64,
                                  .max_tensor_bytes = 48,
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
    h.srv.heavy_work = 2; /* anything over 2 elements is heavy */
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
    assert_int_equal(h.nreplies, before); /* the ping waits behind the heavy op */
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
    assert_int_equal(status_of(run1(&h, TENSORD__OP__OP_T, 2, 1)), 0);
    h.store.ex = &later;
    int before = h.nreplies;
    get(&h, 1, 0, 0); /* contiguous: answered at once */
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

/* ---- cost, limits, cancellation, backpressure and charged bytes (issue 14) ---- */

/* Runs op on handle inputs with OpArgs (NULL: none); returns the reply, or NULL when the
** request is queued and not answered yet. */
static struct captured *run_args(struct harness *h, Tensord__Op op, uint64_t out,
                                 const uint64_t *in, size_t nin, Tensord__OpArgs *args)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand ops[4];
    Tensord__Operand *ins[4];
    for (size_t i = 0; i < nin; i++) {
        tensord__operand__init(&ops[i]);
        ops[i].value_case = TENSORD__OPERAND__VALUE_HANDLE;
        ops[i].handle = in[i];
        ins[i] = &ops[i];
    }
    m.out = out;
    m.op = op;
    m.inputs = ins;
    m.n_inputs = nin;
    m.args = args;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    int before = h->nreplies;
    uint64_t id = send_req(h, &req, NULL, 0);
    return h->nreplies > before ? last(h, id) : NULL;
}

/* x.expand(dims) under `out`. */
static int expand(struct harness *h, uint64_t out, uint64_t x, const int64_t *dims, size_t n)
{
    Tensord__OpArgs args = TENSORD__OP_ARGS__INIT;
    args.dims = (int64_t *)dims;
    args.n_dims = n;
    return status_of(run_args(h, TENSORD__OP__OP_EXPAND, out, &x, 1, &args));
}

/* Sends a request of `kind` with no body fields and returns its id (reply or not). */
static uint64_t send_simple(struct harness *h, Tensord__Request__BodyCase kind)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping ping = TENSORD__PING__INIT;
    Tensord__CloseSession cs = TENSORD__CLOSE_SESSION__INIT;
    req.body_case = kind;
    if (kind == TENSORD__REQUEST__BODY_PING) {
        req.ping = &ping;
    } else {
        req.close_session = &cs;
    }
    return send_req(h, &req, NULL, 0);
}

static uint64_t send_format(struct harness *h, uint64_t handle)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    return send_req(h, &req, NULL, 0);
}

/* The reply to `id` among those captured, or NULL. */
static struct captured *reply_to(struct harness *h, uint64_t id)
{
    for (int i = 0; i < h->nreplies; i++) {
        if (h->replies[i].resp != NULL && h->replies[i].resp->id == id) {
            return &h->replies[i];
        }
    }
    return NULL;
}

/* Runs the job the deferring executor holds, as a worker would, and completes it. */
static void run_deferred(void)
{
    assert_int_equal(ndeferred, 1);
    struct td_job *job = deferred[--ndeferred];
    job->run(job);
    td_session_job_complete(job);
}

/* Releases replies the harness held (h->hold): net has written them. */
static void release_held(struct harness *h)
{
    for (int i = 0; i < h->nreplies; i++) {
        struct td_rpc_reply *r = &h->replies[i].raw;
        if (r->frame != NULL) {
            r->frame = NULL;
            assert_non_null(r->release);
            r->release(r->release_arg); /* frees the frame too */
        }
    }
}

/* A second connection on h's server, sharing its store. */
static void harness_second(struct harness *h2, struct harness *h)
{
    memset(h2, 0, sizeof *h2);
    h2->next_id = 1;
    assert_int_equal(td_rpc_peer_new(&h2->peer, &h->srv, capture, h2), 0);
}

/* True when the cost rules know expanded inputs (core's td_op_cost, not the placeholder that
** sizes an op by its output): a sum over a [1] tensor expanded to [4, 4] reads 16 elements. */
static bool cost_rules_landed(void)
{
    int64_t one = 1, big[2] = {4, 4};
    struct td_tensor *t = NULL, *v = NULL;
    struct td_op_args a;
    td_op_args_init(&a);
    assert_int_equal(td_tensor_empty(&t, TD_DTYPE_F32, &one, 1, NULL, NULL), 0);
    memcpy(a.dims, big, sizeof big);
    a.ndims = 2;
    a.has_dims = true;
    struct td_operand in = {.t = t};
    assert_int_equal(td_op_apply(TD_OP_EXPAND, &in, 1, &a, false, NULL, &v, NULL), 0);
    struct td_operand vin = {.t = v};
    struct td_op_args dflt;
    td_op_args_init(&dflt);
    struct td_cost c;
    bool landed = td_op_cost(TD_OP_SUM, &vin, 1, &dflt, &c, NULL) == 0 && c.read >= 16;
    td_tensor_unref(v);
    td_tensor_unref(t);
    return landed;
}

/* --max-op-elements: a creation over the limit fails before anything is allocated, and the
** message names the limit and its value. */
static void test_max_op_elements_creation(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.max_op_elements = (int64_t)1 << 40;
    hello(&h, NULL, 0);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar v = TENSORD__SCALAR__INIT;
    const int64_t shape[] = {(int64_t)1 << 30, (int64_t)1 << 30};
    v.value_case = TENSORD__SCALAR__VALUE_F;
    v.f = 1;
    m.out = 3;
    m.value = &v;
    m.shape = (int64_t *)shape;
    m.n_shape = 2;
    m.dtype = TENSORD__DTYPE__BOOL;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &m;
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(c), "full would touch 1152921504606846976 elements, above "
                                       "max_op_elements 1099511627776");
    assert_int_equal(td_session_bytes(h.peer->session), 0);
    /* A pipelined op on its output learns why it is missing. */
    c = run1(&h, TENSORD__OP__OP_NEG, 4, 3);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INPUT_FAILED);
    /* arange's length, from its bounds */
    Tensord__Request areq = TENSORD__REQUEST__INIT;
    Tensord__Arange am = TENSORD__ARANGE__INIT;
    Tensord__Scalar end = TENSORD__SCALAR__INIT;
    end.value_case = TENSORD__SCALAR__VALUE_F;
    end.f = 1e15;
    am.out = 5;
    am.end = &end;
    areq.body_case = TENSORD__REQUEST__BODY_ARANGE;
    areq.arange = &am;
    c = last(&h, send_req(&h, &areq, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(c), "arange would touch 1000000000000000 elements, above "
                                       "max_op_elements 1099511627776");
    harness_close(&h);
}

/* Finding 2: a sum over tensor([1.]).expand(2**30, 2**30) walks 2^60 elements. It is refused by
** max_op_elements with the op's name, before it runs. */
static void test_max_op_elements_sum_of_expanded_view(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.max_op_elements = (int64_t)1 << 40;
    hello(&h, NULL, 0);
    const int64_t one[] = {1};
    const float x = 1;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, one, 1, &x, sizeof x), 0);
    const int64_t big[] = {(int64_t)1 << 30, (int64_t)1 << 30};
    assert_int_equal(expand(&h, 2, 1, big, 2), 0);
    uint64_t in = 2;
    struct captured *c = run_args(&h, TENSORD__OP__OP_SUM, 3, &in, 1, NULL);
    assert_non_null(c);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    /* "sum would touch N elements, above max_op_elements 1099511627776", N at least the 2^60
    ** elements read (the cost rule may add the one written) */
    const char *msg = message_of(c), *head = "sum would touch ";
    const char *tail = " elements, above max_op_elements 1099511627776";
    assert_memory_equal(msg, head, strlen(head));
    char *end;
    unsigned long long n = strtoull(msg + strlen(head), &end, 10);
    assert_true(n >= 1ull << 60 && n <= (1ull << 60) + 1);
    assert_string_equal(end, tail);
    assert_int_equal(td_session_bytes(h.peer->session), 4); /* nothing allocated */
    harness_close(&h);
}

/* The loop runs nothing whose cost is above heavy_work: a reduction over an expanded view goes
** to the executor though its output is one element; so do a long arange and a Format of a big
** view; a tiny op stays inline. */
static void test_heavy_routing_by_cost(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    h.srv.heavy_work = 1000;
    hello(&h, NULL, 0);
    const int64_t one[] = {1};
    const float x = 2;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, one, 1, &x, sizeof x), 0);
    const int64_t dims7[] = {10, 10, 10, 10, 10, 10, 10};
    assert_int_equal(expand(&h, 2, 1, dims7, 7), 0);
    h.store.ex = &later;
    ndeferred = 0;
    int before = h.nreplies;
    /* tiny: inline */
    assert_int_equal(status_of(run1(&h, TENSORD__OP__OP_NEG, 3, 1)), 0);
    assert_int_equal(ndeferred, 0);
    /* arange(0, 5000): 5000 elements */
    Tensord__Request areq = TENSORD__REQUEST__INIT;
    Tensord__Arange am = TENSORD__ARANGE__INIT;
    Tensord__Scalar end = TENSORD__SCALAR__INIT;
    end.value_case = TENSORD__SCALAR__VALUE_I;
    end.i = 5000;
    am.out = 4;
    am.end = &end;
    areq.body_case = TENSORD__REQUEST__BODY_ARANGE;
    areq.arange = &am;
    uint64_t id = send_req(&h, &areq, NULL, 0);
    assert_null(reply_to(&h, id));
    run_deferred();
    assert_int_equal(status_of(reply_to(&h, id)), 0);
    /* Format of a 7-dim view of 10^7 elements: 6^7 summarized elements rendered */
    id = send_format(&h, 2);
    assert_null(reply_to(&h, id));
    run_deferred();
    assert_int_equal(status_of(reply_to(&h, id)), 0);
    assert_int_equal(reply_to(&h, id)->resp->result_case, TENSORD__RESPONSE__RESULT_TEXT);
    assert_true(cost_rules_landed()); /* core's cost rules, not a placeholder */
    {
        uint64_t in = 2;
        before = h.nreplies;
        assert_null(run_args(&h, TENSORD__OP__OP_SUM, 5, &in, 1, NULL));
        run_deferred();
        struct captured *c = &h.replies[before];
        assert_int_equal(status_of(c), 0);
        h.store.ex = &td_executor_inline;
        const float want = 2e7f;
        c = get(&h, 5, 0, 0);
        assert_int_equal(c->data_len, sizeof want);
        assert_memory_equal(c->data, &want, sizeof want);
        h.store.ex = &later;
        /* sized by their outputs, not their inputs: x.repeat(5000) (5000 elements written from
        ** one), outer of two 100-vectors (10^4), linspace(0, 0, steps=5000) */
        Tensord__OpArgs rep = TENSORD__OP_ARGS__INIT;
        const int64_t times[] = {5000};
        rep.dims = (int64_t *)times;
        rep.n_dims = 1;
        uint64_t x1 = 1;
        assert_null(run_args(&h, TENSORD__OP__OP_REPEAT, 6, &x1, 1, &rep));
        run_deferred();
        c = &h.replies[h.nreplies - 1];
        assert_int_equal(status_of(c), 0);
        assert_int_equal(c->resp->tensor->shape[0], 5000);
        h.store.ex = &td_executor_inline;
        float v100[100];
        const int64_t s100[] = {100};
        for (int i = 0; i < 100; i++) {
            v100[i] = (float)i;
        }
        assert_int_equal(create(&h, 7, TENSORD__DTYPE__FLOAT32, s100, 1, v100, sizeof v100), 0);
        h.store.ex = &later;
        const uint64_t pair[] = {7, 7};
        assert_null(run_args(&h, TENSORD__OP__OP_OUTER, 8, pair, 2, NULL));
        run_deferred();
        c = &h.replies[h.nreplies - 1];
        assert_int_equal(status_of(c), 0);
        assert_int_equal(c->resp->tensor->nbytes, 10000 * sizeof(float));
        Tensord__OpArgs lin = TENSORD__OP_ARGS__INIT;
        lin.dim = 5000;
        lin.has_dim = true;
        assert_null(run_args(&h, TENSORD__OP__OP_LINSPACE, 9, NULL, 0, &lin));
        run_deferred();
        c = &h.replies[h.nreplies - 1];
        assert_int_equal(status_of(c), 0);
        assert_int_equal(c->resp->tensor->shape[0], 5000);
    }
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* A heavy op out on the executor, a light op and a ping queued behind it, all of one peer. */
static void queue_behind_heavy(struct harness *h, uint64_t *op_id, uint64_t *add_id,
                               uint64_t *ping_id)
{
    h->srv.heavy_work = 2;
    assert_int_equal(create(h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    const uint64_t aa[] = {1, 1};
    int before = h->nreplies;
    uint64_t id = h->next_id;
    assert_null(run_args(h, TENSORD__OP__OP_MUL, 2, aa, 2, NULL)); /* 3 elements: heavy */
    *op_id = id;
    h->srv.heavy_work = 1 << 16;
    id = h->next_id;
    assert_null(run_args(h, TENSORD__OP__OP_ADD, 5, aa, 2, NULL)); /* light, but queued */
    *add_id = id;
    *ping_id = send_simple(h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(h->nreplies, before);
    assert_int_equal(ndeferred, 1);
}

/* The connection goes: its queued requests are dropped with no effect (no result, and no
** failure record a resuming client would trip over), and the running one is told to stop; a
** cancelled op leaves nothing either. */
static void test_cancel_on_peer_close(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h, h2;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    uint8_t token[16];
    memcpy(token, h.replies[h.nreplies - 1].resp->hello->session_token.data, 16);
    h.store.ex = &later;
    ndeferred = 0;
    uint64_t op_id, add_id, ping_id;
    queue_behind_heavy(&h, &op_id, &add_id, &ping_id);
    struct td_job *running = deferred[0];
    struct td_session *s = h.peer->session;
    td_rpc_peer_close(h.peer);
    h.peer = NULL;
    assert_int_equal(atomic_load(&running->cancel.reason), TD_CANCEL_CONN_LOST);
    /* the queued ones are marked, and dropped once the running one is done (replies keep
    ** their order on any other connection of the session) */
    assert_non_null(s->head);
    assert_true(s->head->cancelled && s->head->next->cancelled);
    int before = h.nreplies;
    run_deferred();
    assert_null(s->head);
    assert_int_equal(h.nreplies, before); /* nobody to answer */
    assert_false(td_session_busy(s));
    /* The client resumes: none of the three left a trace. */
    h.store.ex = &td_executor_inline;
    harness_second(&h2, &h);
    assert_int_equal(hello(&h2, token, sizeof token)->status->code, 0);
    assert_int_equal(status_of(get(&h2, 2, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_int_equal(status_of(get(&h2, 5, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_memory_equal(get(&h2, 1, 0, 0)->data, A64, sizeof A64);
    /* so re-sending them works */
    const uint64_t aa[] = {1, 1};
    assert_int_equal(status_of(run_args(&h2, TENSORD__OP__OP_MUL, 2, aa, 2, NULL)), 0);
    const int64_t sq[] = {1, 4, 9};
    assert_memory_equal(get(&h2, 2, 0, 0)->data, sq, sizeof sq);
    harness_clear(&h2);
    td_rpc_peer_close(h2.peer);
    harness_close(&h);
}

/* CloseSession cancels, on arrival, the running job and what is queued before it; each is
** answered CANCELLED in order, then the close runs. */
static void test_close_session_cancels_earlier_work(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    h.store.ex = &later;
    ndeferred = 0;
    uint64_t op_id, add_id, ping_id;
    queue_behind_heavy(&h, &op_id, &add_id, &ping_id);
    struct td_job *running = deferred[0];
    int before = h.nreplies;
    uint64_t close_id = send_simple(&h, TENSORD__REQUEST__BODY_CLOSE_SESSION);
    assert_int_equal(atomic_load(&running->cancel.reason), TD_CANCEL_SESSION_CLOSED);
    assert_int_equal(h.nreplies, before); /* the dropped ones wait for the running one */
    run_deferred();
    assert_int_equal(h.nreplies, before + 4);
    const uint64_t ids[] = {op_id, add_id, ping_id};
    for (int i = 0; i < 3; i++) {
        struct captured *c = &h.replies[before + i];
        assert_int_equal(c->resp->id, ids[i]);
        assert_int_equal(status_of(c), TENSORD__STATUS_CODE__CANCELLED);
        assert_string_equal(message_of(c), "the request was cancelled: its session was closed");
    }
    assert_int_equal(h.replies[before + 3].resp->id, close_id);
    assert_int_equal(status_of(&h.replies[before + 3]), 0);
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* SIGTERM: the running job has TD_CANCEL_SHUTDOWN raised, queued ones are dropped and answered
** CANCELLED in order. */
static void test_store_cancel_all(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    h.store.ex = &later;
    ndeferred = 0;
    uint64_t op_id, add_id, ping_id;
    queue_behind_heavy(&h, &op_id, &add_id, &ping_id);
    struct td_job *running = deferred[0];
    int before = h.nreplies;
    td_store_cancel_all(&h.store);
    assert_int_equal(atomic_load(&running->cancel.reason), TD_CANCEL_SHUTDOWN);
    assert_true(td_store_busy(&h.store));
    run_deferred();
    assert_false(td_store_busy(&h.store));
    assert_int_equal(h.nreplies, before + 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(status_of(&h.replies[before + i]), TENSORD__STATUS_CODE__CANCELLED);
        assert_string_equal(message_of(&h.replies[before + i]),
                            "the request was cancelled: the server is shutting down");
    }
    assert_int_equal(h.replies[before + 2].resp->id, ping_id);
    h.store.ex = &td_executor_inline;
    /* the cancelled op left no failure record: its handle is free */
    assert_int_equal(status_of(get(&h, 2, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    harness_close(&h);
}

/* max_request_ms: the deadline counts running time; past it the request fails with
** LIMIT_EXCEEDED and core's message naming the limit. */
static void test_request_deadline(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    h.srv.max_request_ms = 1000;
    hello(&h, NULL, 0);
    h.store.ex = &later;
    ndeferred = 0;
    uint64_t op_id, add_id, ping_id;
    queue_behind_heavy(&h, &op_id, &add_id, &ping_id);
    /* A worker that runs the job finds its deadline passed at the first check: arm it, then
    ** move the deadline into the past before the body runs (as a slow kernel would). */
    struct td_job *job = deferred[--ndeferred];
    struct td_cancel armed;
    td_cancel_init(&armed, 1000);
    assert_int_equal(atomic_load(&job->cancel.reason), TD_CANCEL_NONE);
    job->cancel.limit_ms = 1000;
    job->cancel.deadline_ns = 1; /* long past */
    struct td_cancel *prev = td_cancel_enter(&job->cancel);
    struct td_err err;
    assert_int_equal(td_cancel_check(&err), TD_ELIMIT);
    assert_string_equal(err.msg, "the request ran longer than max_request_seconds 1");
    td_cancel_leave(prev);
    /* job_run re-arms from now: a request's deadline starts when it runs */
    job->run(job);
    td_session_job_complete(job);
    assert_int_equal(status_of(reply_to(&h, op_id)), 0);
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* A hold stops new jobs from starting; the last release starts them, in order. */
static void test_hold_stops_the_queue(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    struct td_session *s = h.peer->session;
    td_session_hold(s);
    td_session_hold(s);
    int before = h.nreplies;
    uint64_t a = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    uint64_t b = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(h.nreplies, before);
    td_session_release(s);
    assert_int_equal(h.nreplies, before);
    td_session_release(s);
    assert_int_equal(h.nreplies, before + 2);
    assert_int_equal(h.replies[before].resp->id, a);
    assert_int_equal(h.replies[before + 1].resp->id, b);
    harness_close(&h);
}

/* Finding 3b: replies nobody reads. Past peer_max_unsent_bytes the session runs nothing new;
** once the bytes drain to half, it goes on. */
static void test_unsent_bytes_hold_the_session(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(h.peer->unsent_bytes, 0);
    h.hold = true;
    h.srv.peer_max_unsent_bytes = 60; /* a Get of 24 bytes and its frame: about 40 */
    int before = h.nreplies;
    get(&h, 1, 0, 0);
    int64_t one = h.peer->unsent_bytes;
    assert_true(one > 24 && one <= 60);
    assert_null(h.peer->held);
    get(&h, 1, 0, 0);
    assert_int_equal(h.peer->unsent_bytes, 2 * one);
    assert_non_null(h.peer->held);
    uint64_t ping = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(h.nreplies, before + 2); /* held */
    release_held(&h);                         /* the client reads */
    assert_int_equal(h.nreplies, before + 3);
    assert_int_equal(h.replies[before + 2].resp->id, ping);
    release_held(&h);
    assert_int_equal(h.peer->unsent_bytes, 0);
    assert_null(h.peer->held);
    /* a peer that closes while held lets the session go on */
    h.srv.peer_max_unsent_bytes = 1;
    get(&h, 1, 0, 0);
    assert_non_null(h.peer->held);
    struct td_session *s = td_session_ref(h.peer->session);
    td_rpc_peer_close(h.peer);
    h.peer = NULL;
    assert_int_equal(s->holds, 0);
    td_session_unref(s);
    harness_close(&h);
}

/* Format text is charged to the session until its reply is written. */
static void test_format_text_charged_until_written(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    int64_t base = td_session_bytes(h.peer->session);
    h.hold = true;
    struct captured *c = last(&h, send_format(&h, 1));
    assert_string_equal(c->resp->text, "tensor([1, 2, 3])");
    assert_int_equal(td_session_bytes(h.peer->session), base + 17);
    release_held(&h);
    assert_int_equal(td_session_bytes(h.peer->session), base);
    h.hold = false;
    /* and a Format whose text cannot fit the quota is refused before it is rendered */
    harness_close(&h);
    struct td_store_config cfg = {.session_max_bytes = 4096, .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    const int64_t one[] = {1};
    const float x = 1.5f;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, one, 1, &x, sizeof x), 0);
    const int64_t dims[] = {10, 10, 10, 10};
    assert_int_equal(expand(&h, 2, 1, dims, 4), 0);
    c = last(&h, send_format(&h, 2));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    assert_int_equal(td_session_bytes(h.peer->session), 4);
    harness_close(&h);
}

/* An op whose result cannot fit the quota is refused with the quota's message (before it runs,
** once the cost rules give its bytes), and charges nothing. */
static void test_op_bytes_over_quota(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_max_bytes = 4096, .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    const int64_t one[] = {1}, wide[] = {2048};
    const float x = 1;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, one, 1, &x, sizeof x), 0);
    assert_int_equal(expand(&h, 2, 1, wide, 1), 0);
    const uint64_t vv[] = {2, 2};
    struct captured *c = run_args(&h, TENSORD__OP__OP_ADD, 3, vv, 2, NULL);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    assert_string_equal(message_of(c), "session memory quota exceeded: 4096 bytes");
    assert_int_equal(td_session_bytes(h.peer->session), 4);
    harness_close(&h);
}

/* Packs a Create of an int64 tensor of n elements for handle `out`; *len gets its size. */
static uint8_t *pack_create(struct harness *h, uint64_t out, int64_t n, size_t *len, uint64_t *id)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = out;
    m.dtype = TENSORD__DTYPE__INT64;
    m.shape = &n;
    m.n_shape = 1;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    req.id = *id = h->next_id++;
    *len = tensord__request__get_packed_size(&req);
    uint8_t *meta = malloc(*len);
    tensord__request__pack(&req, meta);
    return meta;
}

/* Finding 3b: a frame's data section is charged to the session when net allocates it; a
** Create's tensor takes the charge over (no double count), a refused request gives it back. */
static void test_data_section_charged(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_max_bytes = 100000, .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    void *buf = NULL;
    struct td_err err;
    /* before Hello: no session, no data */
    assert_int_equal(td_rpc_data_alloc(h.peer, 16, &buf, &err), TD_ENOSESSION);
    assert_null(buf);
    hello(&h, NULL, 0);
    struct td_session *s = h.peer->session;
    /* 64,000 bytes under a 100,000-byte quota: charged once, on alloc */
    assert_int_equal(td_rpc_data_alloc(h.peer, 64000, &buf, &err), 0);
    assert_int_equal(td_session_bytes(s), 64000);
    memset(buf, 7, 64000);
    size_t len;
    uint64_t id;
    uint8_t *meta = pack_create(&h, 1, 8000, &len, &id);
    td_rpc_handle(h.peer, meta, len, buf, 64000);
    free(meta);
    assert_int_equal(status_of(last(&h, id)), 0);
    assert_int_equal(td_session_bytes(s), 64000); /* the tensor's bytes, once */
    assert_int_equal(last(&h, id)->resp->tensor->nbytes, 64000);
    /* a Write copies its section into the tensor and gives the charge back */
    assert_int_equal(td_rpc_data_alloc(h.peer, 16, &buf, &err), 0);
    assert_int_equal(td_session_bytes(s), 64016);
    memset(buf, 9, 16);
    Tensord__Request wreq = TENSORD__REQUEST__INIT;
    Tensord__Write wm = TENSORD__WRITE__INIT;
    wm.handle = 1;
    wm.offset = 8;
    wreq.body_case = TENSORD__REQUEST__BODY_WRITE;
    wreq.write = &wm;
    wreq.id = id = h.next_id++;
    len = tensord__request__get_packed_size(&wreq);
    meta = malloc(len);
    tensord__request__pack(&wreq, meta);
    td_rpc_handle(h.peer, meta, len, buf, 16);
    free(meta);
    assert_int_equal(status_of(last(&h, id)), 0);
    assert_int_equal(td_session_bytes(s), 64000);
    struct captured *w = get(&h, 1, 0, 32);
    const uint8_t want[32] = {7, 7, 7, 7, 7, 7, 7, 7, 9, 9, 9, 9, 9, 9, 9, 9,
                              9, 9, 9, 9, 9, 9, 9, 9, 7, 7, 7, 7, 7, 7, 7, 7};
    assert_memory_equal(w->data, want, sizeof want);
    uint64_t one = 1;
    free_handles(&h, &one, 1);
    assert_int_equal(td_session_bytes(s), 0);
    /* a request that fails gives the charge back */
    assert_int_equal(td_rpc_data_alloc(h.peer, 800, &buf, &err), 0);
    meta = pack_create(&h, 2, 99, &len, &id); /* 792 bytes wanted: refused */
    td_rpc_handle(h.peer, meta, len, buf, 800);
    free(meta);
    assert_int_equal(status_of(last(&h, id)), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
    assert_int_equal(td_session_bytes(s), 0);
    /* over the quota with nothing pending: an error, answered in order */
    assert_int_equal(td_rpc_data_alloc(h.peer, 200000, &buf, &err), TD_EQUOTA);
    assert_null(buf);
    meta = pack_create(&h, 3, 25000, &len, &id);
    td_rpc_handle(h.peer, meta, len, NULL, 200000);
    free(meta);
    assert_int_equal(status_of(last(&h, id)), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    assert_string_equal(message_of(last(&h, id)), "session memory quota exceeded: 100000 bytes");
    assert_int_equal(td_session_bytes(s), 0);
    /* a data section read when the connection goes is given back */
    assert_int_equal(td_rpc_data_alloc(h.peer, 500, &buf, &err), 0);
    assert_int_equal(td_session_bytes(s), 500);
    td_session_ref(s);
    td_rpc_peer_close(h.peer);
    h.peer = NULL;
    td_free(buf); /* net frees what it had */
    assert_int_equal(td_session_bytes(s), 0);
    td_session_unref(s);
    harness_close(&h);
}

/* net re-asks for a data section as soon as a reply resumes the connection, inside the
** reply's delivery: the answered request no longer counts as pending, or "later" would be said
** again with no reply left to lift it (the connection would stay paused for ever). */
static int retry_rc = 99;
static void retry_alloc(struct harness *h)
{
    void *buf = NULL;
    h->on_reply = NULL;
    retry_rc = td_rpc_data_alloc(h->peer, 500, &buf, NULL);
    td_free(buf); /* test only: not handed to td_rpc_handle */
}

static void test_data_section_retried_inside_the_reply(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    struct td_store_config cfg = {.session_max_bytes = 1000, .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    h.store.ex = &later;
    ndeferred = 0;
    h.srv.heavy_work = 2;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    const uint64_t aa[] = {1, 1};
    assert_null(run_args(&h, TENSORD__OP__OP_MUL, 2, aa, 2, NULL));
    void *buf = NULL;
    assert_int_equal(td_rpc_data_alloc(h.peer, 990, &buf, NULL), TD_RPC_DATA_LATER);
    h.on_reply = retry_alloc;
    run_deferred();
    assert_int_equal(retry_rc, 0); /* 24 + 24 + 500 fit: asked again, and given */
    /* td_free'd above without td_rpc_handle: give its charge back as a closing peer would */
    td_rpc_peer_close(h.peer);
    h.peer = NULL;
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* Over the quota while requests of the peer are pending: "later" (net pauses the connection);
** once nothing is pending, the error, and its reply keeps its place in line. */
static void test_data_section_later_then_error_in_order(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    struct td_store_config cfg = {.session_max_bytes = 1000,
                                  .max_tensor_bytes = 600,
                                  .session_ttl_ms = 1000};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    h.store.ex = &later;
    ndeferred = 0;
    uint64_t op_id, add_id, ping_id;
    queue_behind_heavy(&h, &op_id, &add_id, &ping_id);
    void *buf = NULL;
    struct td_err err;
    assert_int_equal(td_rpc_data_alloc(h.peer, 980, &buf, &err), TD_ELIMIT); /* never fits */
    assert_int_equal(td_rpc_data_alloc(h.peer, 560, &buf, &err), 0);         /* fits: 48 + 560 */
    void *held = buf;
    assert_int_equal(td_rpc_data_alloc(h.peer, 500, &buf, &err), TD_RPC_DATA_LATER);
    assert_null(buf);
    /* the first section's frame arrives; then the refused one, whose reply must wait */
    size_t len;
    uint64_t id1, id2;
    uint8_t *meta = pack_create(&h, 7, 70, &len, &id1);
    td_rpc_handle(h.peer, meta, len, held, 560);
    free(meta);
    int before = h.nreplies;
    run_deferred();
    assert_int_equal(h.nreplies, before + 4); /* op, add, ping, the create */
    assert_int_equal(status_of(reply_to(&h, id1)), 0);
    assert_int_equal(h.peer->pending, 0);
    assert_int_equal(td_rpc_data_alloc(h.peer, 500, &buf, &err), TD_EQUOTA);
    meta = pack_create(&h, 8, 62, &len, &id2);
    td_rpc_handle(h.peer, meta, len, NULL, 500);
    free(meta);
    assert_int_equal(status_of(last(&h, id2)), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    /* an ELIMIT refusal behind pending work waits its turn */
    h.srv.heavy_work = 2;
    const uint64_t aa[] = {1, 1};
    uint64_t op2 = h.next_id;
    assert_null(run_args(&h, TENSORD__OP__OP_MUL, 9, aa, 2, NULL));
    h.srv.heavy_work = 1 << 16;
    assert_int_equal(td_rpc_data_alloc(h.peer, 700, &buf, &err), TD_ELIMIT);
    meta = pack_create(&h, 10, 87, &len, &id2);
    before = h.nreplies;
    td_rpc_handle(h.peer, meta, len, NULL, 700);
    free(meta);
    assert_int_equal(h.nreplies, before);
    run_deferred();
    assert_int_equal(h.replies[before].resp->id, op2);
    assert_int_equal(h.replies[before + 1].resp->id, id2);
    assert_int_equal(status_of(&h.replies[before + 1]), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_int_equal(td_session_bytes(h.peer->session), 560 + 4 * 24); /* 7, and 1 2 5 9 */
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* ---- named tensors (SetName, GetName, DelName, ListNames) ---- */

static void expect_bytes(struct harness *h, uint64_t handle, const void *want, size_t n);
static void expect_tensor_reply(struct captured *c, uint64_t handle);

static struct captured *set_name(struct harness *h, const char *name, uint64_t handle)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetName m = TENSORD__SET_NAME__INIT;
    m.name = (char *)name;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_SET_NAME;
    req.set_name = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *get_name(struct harness *h, const char *name, uint64_t out)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__GetName m = TENSORD__GET_NAME__INIT;
    m.name = (char *)name;
    m.out = out;
    req.body_case = TENSORD__REQUEST__BODY_GET_NAME;
    req.get_name = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *del_name(struct harness *h, const char *name)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__DelName m = TENSORD__DEL_NAME__INIT;
    m.name = (char *)name;
    req.body_case = TENSORD__REQUEST__BODY_DEL_NAME;
    req.del_name = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *list_names(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ListNames m = TENSORD__LIST_NAMES__INIT;
    req.body_case = TENSORD__REQUEST__BODY_LIST_NAMES;
    req.list_names = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

/* The reply is a NameList holding exactly `want` (n names), in that order. */
static void expect_names(struct captured *c, const char *const *want, size_t n)
{
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_NAMES);
    assert_int_equal(c->resp->names->n_names, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c->resp->names->names[i], want[i]);
    }
}

/* Names behave as a dict's keys: set, rebind (keeps its place), delete, set again (goes last);
** the named tensor outlives its handle and is the same tensor (an in-place change through a
** handle shows through the name); missing names are KeyError's words. */
static void test_names_like_a_dict(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    expect_names(list_names(&h), NULL, 0);
    assert_int_equal(status_of(set_name(&h, "w1", 1)), 0);
    assert_int_equal(status_of(set_name(&h, "layer.0/b:x-y_Z9", 2)), 0);
    assert_int_equal(status_of(set_name(&h, "w2", 2)), 0);
    assert_int_equal(status_of(set_name(&h, "w1", 2)), 0); /* rebinding keeps the place */
    const char *order1[] = {"w1", "layer.0/b:x-y_Z9", "w2"};
    expect_names(list_names(&h), order1, 3);
    assert_int_equal(status_of(del_name(&h, "w1")), 0);
    assert_int_equal(status_of(set_name(&h, "w1", 1)), 0); /* set again: last */
    const char *order2[] = {"layer.0/b:x-y_Z9", "w2", "w1"};
    expect_names(list_names(&h), order2, 3);
    /* The tensor outlives its handle. */
    uint64_t one = 1;
    free_handles(&h, &one, 1);
    struct captured *c = get_name(&h, "w1", 10);
    assert_int_equal(status_of(c), 0);
    expect_tensor_reply(c, 10);
    expect_bytes(&h, 10, A64, sizeof A64);
    /* The same tensor: handle 10's in-place add shows through the name. */
    assert_int_equal(status_of(run2(&h, TENSORD__OP__OP_ADD, 10, 10, 10, NULL, true)), 0);
    assert_int_equal(status_of(get_name(&h, "w1", 11)), 0);
    const int64_t doubled[] = {2, 4, 6};
    expect_bytes(&h, 11, doubled, sizeof doubled);
    /* Missing names. */
    c = get_name(&h, "nope", 12);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_string_equal(message_of(c), "KeyError: 'nope'");
    /* ... and a pipelined op naming the GetName's output learns why it is missing */
    c = run1(&h, TENSORD__OP__OP_NEG, 13, 12);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INPUT_FAILED);
    assert_string_equal(message_of(c), "input 12 failed: KeyError: 'nope'");
    c = del_name(&h, "nope");
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_string_equal(message_of(c), "KeyError: 'nope'");
    /* GetName's output must be a fresh handle. */
    assert_int_equal(status_of(get_name(&h, "w1", 2)), TENSORD__STATUS_CODE__HANDLE_IN_USE);
    harness_close(&h);
}

/* Hostile names and handles: refused with the reason, nothing bound, the session serves on. */
static void test_names_refused(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    char longest[TD_NAME_MAX_BYTES + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0'; /* 256 bytes: one too many */
    static const char *const bad[] = {"", "a b", "é", "a,b", "a=b", "'", "a\nb", "x\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct captured *c = set_name(&h, bad[i], 1);
        if (status_of(c) != TENSORD__STATUS_CODE__INVALID_ARGUMENT) {
            fail_msg("name %zu: status %d (%s)", i, status_of(c), message_of(c));
        }
        assert_int_equal(status_of(get_name(&h, bad[i], 5)),
                         TENSORD__STATUS_CODE__INVALID_ARGUMENT);
        assert_int_equal(status_of(del_name(&h, bad[i])), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
        harness_clear(&h);
    }
    assert_string_equal(message_of(set_name(&h, "a b", 1)),
                        "a tensor name may hold only A-Z a-z 0-9 _ . : / -, not byte 0x20 at "
                        "offset 1");
    assert_string_equal(message_of(set_name(&h, longest, 1)),
                        "a tensor name is at most 255 bytes, not 256");
    longest[TD_NAME_MAX_BYTES] = '\0';
    assert_int_equal(status_of(set_name(&h, longest, 1)), 0); /* 255 bytes: the longest */
    /* Unknown handles, and one whose op failed. */
    struct captured *c = set_name(&h, "x", 99);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_string_equal(message_of(c), "unknown handle 99");
    assert_int_equal(status_of(run2(&h, TENSORD__OP__OP_MATMUL, 7, 1, 1, NULL, false)), 0);
    const int64_t s2[] = {2};
    const int64_t two[] = {1, 2};
    assert_int_equal(create(&h, 2, TENSORD__DTYPE__INT64, s2, 1, two, sizeof two), 0);
    assert_int_not_equal(status_of(run2(&h, TENSORD__OP__OP_ADD, 8, 1, 2, NULL, false)), 0);
    c = set_name(&h, "x", 8);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INPUT_FAILED);
    assert_non_null(strstr(message_of(c), "input 8 failed: The size of tensor a (3)"));
    assert_int_equal(status_of(set_name(&h, "x", 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    harness_clear(&h);
    const char *only[] = {longest};
    expect_names(list_names(&h), only, 1);
    assert_int_equal(status_of(get(&h, 1, 0, 0)), 0); /* serving on */
    harness_close(&h);
}

/* A name with a NUL in it is refused: protobuf-c's copy would stop at the NUL and bind "w1". */
static void test_name_with_nul_is_not_cut_short(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    static const int kinds[] = {TENSORD__REQUEST__BODY_SET_NAME, TENSORD__REQUEST__BODY_GET_NAME,
                                TENSORD__REQUEST__BODY_DEL_NAME};
    for (size_t k = 0; k < 3; k++) {
        uint8_t meta[64];
        size_t at = 0;
        meta[at++] = 0x08; /* Request.id = 50, varint */
        meta[at++] = 50;
        meta[at++] = (uint8_t)(kinds[k] << 3 | 2) | 0x80; /* body field, length-delimited: */
        meta[at++] = (uint8_t)(kinds[k] >> 4);            /* a two-byte key (field >= 16) */
        assert_true(kinds[k] >= 16 && kinds[k] < 2048);
        meta[at++] = 7;    /* its length */
        meta[at++] = 0x0a; /* name (field 1), length-delimited */
        meta[at++] = 3;
        meta[at++] = 'w';
        meta[at++] = '1';
        meta[at++] = 0;
        meta[at++] = 0x10; /* handle / out (field 2) = 1 for SetName, 60 for GetName */
        meta[at++] = k == 1 ? 60 : 1;
        td_rpc_handle(h.peer, meta, at, NULL, 0);
        struct captured *c = last(&h, 50);
        assert_int_equal(status_of(c), TENSORD__STATUS_CODE__INVALID_ARGUMENT);
        assert_string_equal(message_of(c), "a tensor name may hold only A-Z a-z 0-9 _ . : / -, "
                                           "not byte 0x00 at offset 2");
    }
    expect_names(list_names(&h), NULL, 0);
    harness_close(&h);
}

/* Each name is charged entry_bytes plus its length, given back when it goes; a named tensor's
** storage is counted once; the count is limited; a closed session's names are freed. */
static void test_names_charged_and_limited(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_ttl_ms = 60000, .entry_bytes = TD_ENTRY_BYTES};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    int64_t base = td_alloc_live_bytes();
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    struct td_session *s = h.peer->session;
    const int64_t one = sizeof A64 + TD_ENTRY_BYTES;
    assert_int_equal(td_session_bytes(s), one);
    assert_int_equal(status_of(set_name(&h, "abc", 1)), 0);
    assert_int_equal(td_session_bytes(s), one + TD_ENTRY_BYTES + 3);
    assert_int_equal(status_of(set_name(&h, "abc", 1)), 0); /* rebinding: no new charge */
    assert_int_equal(td_session_bytes(s), one + TD_ENTRY_BYTES + 3);
    uint64_t h1 = 1;
    free_handles(&h, &h1, 1); /* storage still held by the name, counted once */
    assert_int_equal(td_session_bytes(s), (int64_t)sizeof A64 + TD_ENTRY_BYTES + 3);
    assert_int_equal(status_of(del_name(&h, "abc")), 0);
    assert_int_equal(td_session_bytes(s), 0);
    harness_clear(&h);
    /* The count limit. */
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    for (int i = 0; i < TD_SESSION_MAX_NAMES; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        if (status_of(set_name(&h, name, 1)) != 0) {
            fail_msg("name %d refused", i);
        }
        harness_clear(&h);
    }
    struct captured *c = set_name(&h, "one-more", 1);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(c), "session name limit reached: 65536 names");
    assert_int_equal(status_of(set_name(&h, "n7", 1)), 0); /* rebinding is not a new name */
    /* The longest list comes back whole, first and last in place. */
    c = list_names(&h);
    assert_int_equal(c->resp->names->n_names, TD_SESSION_MAX_NAMES);
    assert_string_equal(c->resp->names->names[0], "n0");
    assert_string_equal(c->resp->names->names[TD_SESSION_MAX_NAMES - 1], "n65535");
    harness_clear(&h);
    /* Closing the session frees every name and gives back every charge. */
    simple(&h, TENSORD__REQUEST__BODY_CLOSE_SESSION);
    assert_int_equal(td_session_bytes(s), 0);
    harness_clear(&h);
    assert_true(td_alloc_live_bytes() <= base + 4096); /* the peer's own small state */
    harness_close(&h);
}

/* A session quota too small for a name refuses it with the quota's words. */
static void test_name_over_quota(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_ttl_ms = 60000,
                                  .session_max_bytes = sizeof A64 + 2 * TD_ENTRY_BYTES,
                                  .entry_bytes = TD_ENTRY_BYTES};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    struct captured *c = set_name(&h, "x", 1);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    assert_string_equal(message_of(c), "session memory quota exceeded: 664 bytes");
    expect_names(list_names(&h), NULL, 0);
    harness_close(&h);
}

/* ---- the allocation-failure sweep ----
**
** Every request kind of the Request oneof, with the 1st, 2nd, 3rd ... allocation of its handling
** failing. Each run must end in exactly one of:
**   - an error reply whose status is OUT_OF_MEMORY (the wire code of TD_ENOMEM), or
**   - a clean close (no reply frame, close_after set), when not even an error could be encoded;
**   - a success, whose result must be right (the case's `check`, hand-derived values): a handler
**     that swallows a failed allocation and answers OK with a wrong result is caught here.
** The sweep ends with the first run that never reached its armed allocation; that run must
** succeed. After every run the session must still serve requests (a new tensor goes in and comes
** back), no temporary file may be left in the Save/Load directory, and once the harness closes
** every byte is returned. */

static char sweep_dir[64];      /* Save/Load directory of the sweep (mkdtemp) */
static uint8_t sweep_token[16]; /* the session the case's prepare opened, to resume it */
static bool sweep_have_token;
static double rand_want[4]; /* torch.rand(4, float64) after manual_seed(7), unfaulted */

static const char ENCODE_OOM[] = "out of memory while encoding the reply";

struct sweep_case {
    const char *what;
    void (*prepare)(struct harness *);
    void (*request)(struct harness *);
    void (*check)(struct harness *, struct captured *);        /* a successful reply is right */
    void (*check_failed)(struct harness *, struct captured *); /* NULL: nothing to add */
};

/* Remembers the session a prepare step opened, so a run that closed the connection can resume. */
static void sweep_note_token(struct harness *h)
{
    struct captured *c = &h->replies[h->nreplies - 1];
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->resp->hello->session_token.len, sizeof sweep_token);
    memcpy(sweep_token, c->resp->hello->session_token.data, sizeof sweep_token);
    sweep_have_token = true;
}

/* Lists the sweep directory: a temporary file left behind is a failure; every file is removed
** so the next run starts from what its prepare step writes. Returns whether `keep` was there. */
static bool sweep_dir_clean(const char *what, int64_t k, const char *keep)
{
    DIR *d = opendir(sweep_dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    char path[sizeof sweep_dir + 256 + 1];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (keep != NULL && strcmp(e->d_name, keep) == 0) {
            found = true;
        } else if (strstr(e->d_name, ".tmp.") != NULL) {
            fail_msg("%s: temporary file %s left with allocation %lld failing", what, e->d_name,
                     (long long)k);
        }
        snprintf(path, sizeof path, "%s/%s", sweep_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return found;
}

/* After any run: the session serves the next request. A closed connection is replaced by one
** that resumes the session by token (as a client reconnects); a connection with no session
** says Hello, and one whose session was closed is replaced by a new connection that does (a
** connection has one session). */
static void sweep_recover(struct harness *h, bool closed)
{
    if (closed) {
        harness_clear(h);
        td_rpc_peer_close(h->peer);
        assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
        if (sweep_have_token) {
            Tensord__Response *r = hello(h, sweep_token, sizeof sweep_token);
            assert_non_null(r);
            assert_int_equal(r->status->code, 0);
            assert_true(r->hello->resumed);
        }
    }
    if (h->peer->session != NULL && h->peer->session->closed) {
        harness_clear(h);
        td_rpc_peer_close(h->peer);
        assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
    }
    if (h->peer->session == NULL) {
        Tensord__Response *r = hello(h, NULL, 0);
        assert_non_null(r);
        assert_int_equal(r->status->code, 0);
    }
    assert_int_equal(create(h, 77, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    struct captured *c = get(h, 77, 0, 0);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->data_len, sizeof B64);
    assert_memory_equal(c->data, B64, sizeof B64);
}

/* Runs by outcome, over the whole sweep: printed at the end so a sweep that stopped reaching
** its handlers (every run "succeeding") shows. */
static int sweep_oom, sweep_closed, sweep_ok_reached;

static void sweep_one(const struct sweep_case *sc)
{
    for (int64_t k = 1; k < 400; k++) {
        int64_t base = td_alloc_live_bytes();
        struct harness h;
        harness_init(&h, NULL);
        h.srv.files_dir = sweep_dir;
        h.srv.shared_files = true; /* one flat directory, listed after every run */
        sweep_have_token = false;
        sc->prepare(&h);
        int before = h.nreplies;
        arm_failure_at = k;
        sc->request(&h);
        arm_failure_at = 0;
        int64_t used = td_alloc_count();
        td_alloc_fail_at(0);
        bool reached = used >= k;
        if (h.nreplies != before + 1) {
            fail_msg("%s: %d replies with allocation %lld failing", sc->what, h.nreplies - before,
                     (long long)k);
        }
        struct captured *c = &h.replies[h.nreplies - 1];
        int st = status_of(c);
        bool closed = c->close_after;
        if (c->resp == NULL) {
            assert_true(c->close_after);
            assert_true(reached);
            sweep_closed++;
        } else if (st == TENSORD__STATUS_CODE__OK) {
            sc->check(&h, c);
            sweep_ok_reached += reached;
        } else {
            sweep_oom++;
            if (st != TENSORD__STATUS_CODE__OUT_OF_MEMORY) {
                fail_msg("%s: allocation %lld failing gave status %d (%s), not OUT_OF_MEMORY",
                         sc->what, (long long)k, st, message_of(c));
            }
            if (!reached) {
                fail_msg("%s: failed (%s) though allocation %lld was never reached", sc->what,
                         message_of(c), (long long)k);
            }
            if (sc->check_failed != NULL) {
                sc->check_failed(&h, c);
            }
        }
        sweep_recover(&h, closed);
        harness_close(&h);
        sweep_dir_clean(sc->what, k, NULL);
        if (td_alloc_live_bytes() != base) {
            fail_msg("%s: leaked %lld bytes with allocation %lld failing", sc->what,
                     (long long)(td_alloc_live_bytes() - base), (long long)k);
        }
        if (!reached) {
            /* The request made fewer than k allocations: every one has failed once, and the
            ** run that reached none of them must have succeeded. */
            assert_int_equal(st, TENSORD__STATUS_CODE__OK);
            assert_true(k > 1); /* every request allocates (its reply, at least) */
            return;
        }
    }
    fail_msg("%s: more than 400 allocations", sc->what);
}

/* -- what the runs start from -- */

static void prep_none(struct harness *h)
{
    (void)h;
}

static void prep_hello(struct harness *h)
{
    hello(h, NULL, 0);
    sweep_note_token(h);
}

static void prep_tensors(struct harness *h)
{
    prep_hello(h);
    assert_int_equal(create(h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(create(h, 2, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
}

/* A session with tensor 1 and a connection that went away: the request resumes it. */
static void prep_detached(struct harness *h)
{
    prep_tensors(h);
    harness_clear(h);
    td_rpc_peer_close(h->peer);
    assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
}

static void manual_seed(struct harness *h, uint64_t seed)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ManualSeed m = TENSORD__MANUAL_SEED__INIT;
    m.seed = seed;
    req.body_case = TENSORD__REQUEST__BODY_MANUAL_SEED;
    req.manual_seed = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void prep_seeded(struct harness *h)
{
    prep_hello(h);
    manual_seed(h, 7);
    assert_int_equal(status_of(&h->replies[h->nreplies - 1]), 0);
}

/* [[1, 2], [3, 4]] under handle 1 and its transpose (a view, not contiguous) under 3. */
static void prep_view(struct harness *h)
{
    prep_hello(h);
    const int64_t s22[] = {2, 2}, v[] = {1, 2, 3, 4};
    assert_int_equal(create(h, 1, TENSORD__DTYPE__INT64, s22, 2, v, sizeof v), 0);
    assert_int_equal(status_of(run1(h, TENSORD__OP__OP_T, 3, 1)), 0);
}

/* a = [1., 2., 3.] (float64, requires_grad) under 1, a*a under 2, (a*a).sum() under 3. */
static void prep_graph(struct harness *h)
{
    prep_hello(h);
    const double a[] = {1, 2, 3};
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = 1;
    m.dtype = TENSORD__DTYPE__FLOAT64;
    m.shape = (int64_t *)SHAPE3;
    m.n_shape = 1;
    m.requires_grad = true;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    assert_int_equal(status_of(last(h, send_req(h, &req, a, sizeof a))), 0);
    assert_int_equal(status_of(run2(h, TENSORD__OP__OP_MUL, 2, 1, 1, NULL, false)), 0);
    assert_int_equal(status_of(run1(h, TENSORD__OP__OP_SUM, 3, 2)), 0);
}

static struct captured *backward(struct harness *h, uint64_t handle)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Backward m = TENSORD__BACKWARD__INIT;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_BACKWARD;
    req.backward = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static struct captured *grad(struct harness *h, uint64_t handle, uint64_t out)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Grad m = TENSORD__GRAD__INIT;
    m.handle = handle;
    m.out = out;
    req.body_case = TENSORD__REQUEST__BODY_GRAD;
    req.grad = &m;
    return last(h, send_req(h, &req, NULL, 0));
}

static void prep_graph_done(struct harness *h)
{
    prep_graph(h);
    assert_int_equal(status_of(backward(h, 3)), 0);
}

static void prep_float(struct harness *h)
{
    prep_hello(h);
    const double a[] = {1, 2, 3};
    assert_int_equal(create(h, 1, TENSORD__DTYPE__FLOAT64, SHAPE3, 1, a, sizeof a), 0);
}

/* Save and Load name tensors "a" (handle 1 or 10) and "b" (handle 2 or 11) in file "f". */
static struct captured *save_or_load(struct harness *h, bool load, uint64_t ha, uint64_t hb)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Save sm = TENSORD__SAVE__INIT;
    Tensord__Load lm = TENSORD__LOAD__INIT;
    Tensord__NamedTensor a = TENSORD__NAMED_TENSOR__INIT, b = TENSORD__NAMED_TENSOR__INIT;
    Tensord__NamedTensor *nts[] = {&a, &b};
    a.name = "a";
    a.handle = ha;
    b.name = "b";
    b.handle = hb;
    if (load) {
        lm.file = "f";
        lm.tensors = nts;
        lm.n_tensors = 2;
        req.body_case = TENSORD__REQUEST__BODY_LOAD;
        req.load = &lm;
    } else {
        sm.file = "f";
        sm.tensors = nts;
        sm.n_tensors = 2;
        req.body_case = TENSORD__REQUEST__BODY_SAVE;
        req.save = &sm;
    }
    return last(h, send_req(h, &req, NULL, 0));
}

static void prep_saved(struct harness *h)
{
    prep_tensors(h);
    assert_int_equal(status_of(save_or_load(h, false, 1, 2)), 0);
}

/* -- the requests -- */

static void req_hello(struct harness *h)
{
    hello(h, NULL, 0);
}

static void req_node_info(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__NodeInfo m = TENSORD__NODE_INFO__INIT;
    req.body_case = TENSORD__REQUEST__BODY_NODE_INFO;
    req.node_info = &m;
    send_req(h, &req, NULL, 0);
}

static void req_resume(struct harness *h)
{
    hello(h, sweep_token, sizeof sweep_token);
}

static void req_create(struct harness *h)
{
    create(h, 9, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64);
}

/* A Create whose data section comes through td_rpc_data_alloc, as net reads it: with the
** failure armed from the data's allocation on, its charge must end on the tensor or go back. */
static void req_create_charged(struct harness *h)
{
    int64_t n = 3;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = 9;
    m.dtype = TENSORD__DTYPE__INT64;
    m.shape = &n;
    m.n_shape = 1;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    req.id = h->next_id++;
    size_t len = tensord__request__get_packed_size(&req);
    uint8_t *meta = malloc(len);
    tensord__request__pack(&req, meta);
    void *buf = NULL;
    td_alloc_fail_at(arm_failure_at);
    if (td_rpc_data_alloc(h->peer, sizeof A64, &buf, NULL) == 0) {
        memcpy(buf, A64, sizeof A64);
    }
    td_rpc_handle(h->peer, meta, len, buf, sizeof A64);
    free(meta);
    last(h, req.id);
}

static void req_full(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar v = TENSORD__SCALAR__INIT;
    const int64_t s22[] = {2, 2};
    v.value_case = TENSORD__SCALAR__VALUE_F;
    v.f = 2.5;
    m.out = 9;
    m.dtype = TENSORD__DTYPE__FLOAT64;
    m.shape = (int64_t *)s22;
    m.n_shape = 2;
    m.value = &v;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_rand(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Rand m = TENSORD__RAND__INIT;
    const int64_t s4[] = {4};
    m.out = 9;
    m.dtype = TENSORD__DTYPE__FLOAT64;
    m.shape = (int64_t *)s4;
    m.n_shape = 1;
    m.distribution = TENSORD__DISTRIBUTION__UNIFORM;
    req.body_case = TENSORD__REQUEST__BODY_RAND;
    req.rand = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_arange(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Arange m = TENSORD__ARANGE__INIT;
    Tensord__Scalar end = TENSORD__SCALAR__INIT;
    end.value_case = TENSORD__SCALAR__VALUE_I;
    end.i = 5;
    m.out = 9;
    m.end = &end;
    req.body_case = TENSORD__REQUEST__BODY_ARANGE;
    req.arange = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_manual_seed(struct harness *h)
{
    manual_seed(h, 7);
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

/* max(x, dim=1) with the indices under out2: two outputs, all or nothing. */
static void req_max_out2(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__OpArgs args = TENSORD__OP_ARGS__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[1] = {&oa};
    oa.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = 1;
    args.dim = 1;
    args.has_dim = true;
    m.out = 5;
    m.out2 = 6;
    m.op = TENSORD__OP__OP_MAX;
    m.inputs = ins;
    m.n_inputs = 1;
    m.args = &args;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_get(struct harness *h)
{
    get(h, 1, 0, 0);
}

static void req_get_view(struct harness *h)
{
    get(h, 3, 0, 0);
}

static void req_free(struct harness *h)
{
    uint64_t hs[] = {1, 2};
    free_handles(h, hs, 2);
}

static void req_close_session(struct harness *h)
{
    simple(h, TENSORD__REQUEST__BODY_CLOSE_SESSION);
}

static void req_ping(struct harness *h)
{
    simple(h, TENSORD__REQUEST__BODY_PING);
}

static void req_stats(struct harness *h)
{
    simple(h, TENSORD__REQUEST__BODY_STATS);
}

static void req_format(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = 1;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_backward(struct harness *h)
{
    backward(h, 3);
}

static void req_grad(struct harness *h)
{
    grad(h, 1, 20);
}

static void req_set_grad(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetGrad m = TENSORD__SET_GRAD__INIT;
    m.handle = 1;
    m.requires_grad = true;
    req.body_case = TENSORD__REQUEST__BODY_SET_GRAD;
    req.set_grad = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_set_grad_enabled(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetGradEnabled m = TENSORD__SET_GRAD_ENABLED__INIT;
    m.enabled = false;
    req.body_case = TENSORD__REQUEST__BODY_SET_GRAD_ENABLED;
    req.set_grad_enabled = &m;
    last(h, send_req(h, &req, NULL, 0));
}

static void req_write(struct harness *h)
{
    const int64_t seven = 7;
    write_bytes(h, 1, 8, &seven, sizeof seven);
}

static void req_save(struct harness *h)
{
    save_or_load(h, false, 1, 2);
}

static void req_load(struct harness *h)
{
    save_or_load(h, true, 10, 11);
}

/* Sends the OptimStep m with the one group g, which holds the one parameter p. */
static void send_optim_step(struct harness *h, Tensord__OptimStep *m, Tensord__OptimGroup *g,
                            Tensord__OptimParam *p)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__OptimGroup *gs[] = {g};
    Tensord__OptimParam *ps[] = {p};
    g->params = ps;
    g->n_params = 1;
    m->groups = gs;
    m->n_groups = 1;
    req.body_case = TENSORD__REQUEST__BODY_OPTIM_STEP;
    req.optim_step = m;
    last(h, send_req(h, &req, NULL, 0));
}

/* optimizer.step() of SGD(lr=0.5, momentum=0.5) on a (handle 1, .grad [2, 4, 6]), its
** momentum_buffer under 40 (made by this step). */
static void req_optim_step(struct harness *h)
{
    Tensord__OptimStep m = TENSORD__OPTIM_STEP__INIT;
    Tensord__OptimGroup g = TENSORD__OPTIM_GROUP__INIT;
    Tensord__OptimParam p = TENSORD__OPTIM_PARAM__INIT;
    p.param = 1;
    p.momentum_buffer = 40;
    g.lr = 0.5;
    g.momentum = 0.5;
    m.algorithm = TENSORD__OPTIM_STEP__ALGORITHM__SGD;
    send_optim_step(h, &m, &g, &p);
}

/* clip_grad_norm_([a], max_norm=1) with a.grad = [2, 4, 6]: the total norm goes under 41. */
static void req_clip_grad_norm(struct harness *h)
{
    Tensord__OptimStep m = TENSORD__OPTIM_STEP__INIT;
    Tensord__OptimGroup g = TENSORD__OPTIM_GROUP__INIT;
    Tensord__OptimParam p = TENSORD__OPTIM_PARAM__INIT;
    p.param = 1;
    m.mode = TENSORD__OPTIM_STEP__MODE__CLIP_GRAD_NORM;
    m.max_norm = 1;
    m.norm_type = 2;
    m.out = 41;
    send_optim_step(h, &m, &g, &p);
}

/* -- what a success must show (hand-derived) -- */

static void expect_bytes(struct harness *h, uint64_t handle, const void *want, size_t n)
{
    struct captured *c = get(h, handle, 0, 0);
    assert_int_equal(status_of(c), 0);
    assert_int_equal(c->data_len, n);
    assert_memory_equal(c->data, want, n);
}

static void expect_no_tensor(struct harness *h, uint64_t handle)
{
    assert_int_not_equal(status_of(get(h, handle, 0, 0)), 0);
}

static void expect_tensor_reply(struct captured *c, uint64_t handle)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_TENSOR);
    assert_int_equal(c->resp->tensor->handle, handle);
}

static void check_ok(struct harness *h, struct captured *c)
{
    (void)h;
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT__NOT_SET);
}

static void check_hello(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_HELLO);
    assert_int_equal(c->resp->hello->session_token.len, 16);
    assert_false(c->resp->hello->resumed);
    assert_int_equal(td_store_count(&h->store), 1);
}

static void check_node_info(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_NODE_INFO);
    assert_int_equal(c->resp->node_info->sessions, td_store_count(&h->store));
    assert_true(c->resp->node_info->accepting);
}

static void check_resume(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_HELLO);
    assert_true(c->resp->hello->resumed);
    assert_memory_equal(c->resp->hello->session_token.data, sweep_token, sizeof sweep_token);
    expect_bytes(h, 1, A64, sizeof A64);
}

/* A resume that failed left the session where it was: resuming again finds tensor 1. */
static void check_resume_failed(struct harness *h, struct captured *c)
{
    (void)c;
    assert_int_equal(td_store_count(&h->store), 1);
}

static void check_create(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    assert_int_equal(c->resp->tensor->dtype, TENSORD__DTYPE__INT64);
    expect_bytes(h, 9, A64, sizeof A64);
}

static void check_create_charged(struct harness *h, struct captured *c)
{
    check_create(h, c);
    assert_int_equal(td_session_bytes(h->peer->session), sizeof A64); /* charged once */
}

static void check_create_charged_failed(struct harness *h, struct captured *c)
{
    (void)c;
    /* The tensor may exist (the reply's encoding failed after it was stored): then its bytes
    ** are charged once; else the charge went back. */
    struct td_tensor *t;
    bool made = td_session_lookup(h->peer->session, 9, &t, NULL) == 0;
    assert_int_equal(td_session_bytes(h->peer->session), made ? (int64_t)sizeof A64 : 0);
}

static void check_full(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    const double want[] = {2.5, 2.5, 2.5, 2.5}; /* torch.full((2, 2), 2.5, dtype=float64) */
    expect_bytes(h, 9, want, sizeof want);
}

static void check_rand(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    struct captured *g = get(h, 9, 0, 0);
    assert_int_equal(g->data_len, sizeof rand_want);
    double got[4];
    memcpy(got, g->data, sizeof got);
    for (int i = 0; i < 4; i++) {
        assert_true(got[i] >= 0.0 && got[i] < 1.0); /* torch.rand: [0, 1) */
    }
    /* The same seed gives the same numbers, whether or not an allocation failed before. */
    assert_memory_equal(got, rand_want, sizeof got);
}

static void check_arange(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    const int64_t want[] = {0, 1, 2, 3, 4}; /* torch.arange(5) */
    expect_bytes(h, 9, want, sizeof want);
}

/* The seed took: the next rand is the seeded one. */
static void check_manual_seed(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    req_rand(h);
    check_rand(h, &h->replies[h->nreplies - 1]);
}

static void check_add(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    const int64_t want[] = {11, 22, 33};
    expect_bytes(h, 9, want, sizeof want);
}

static void check_matmul(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 9);
    assert_int_equal(c->resp->tensor->n_shape, 0); /* 1-D @ 1-D is a 0-dim dot product */
    const int64_t want[] = {1 * 10 + 2 * 20 + 3 * 30};
    expect_bytes(h, 9, want, sizeof want);
}

static void check_inplace(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 1);
    const int64_t want[] = {3, 6, 9};
    expect_bytes(h, 1, want, sizeof want);
}

/* A failed in-place op leaves its target as it was. */
static void check_inplace_failed(struct harness *h, struct captured *c)
{
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        expect_bytes(h, 1, A64, sizeof A64);
    }
}

static void check_max_out2(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 5);
    const int64_t vals[] = {2, 4}, idx[] = {1, 1}; /* max of [[1, 2], [3, 4]] along dim 1 */
    expect_bytes(h, 5, vals, sizeof vals);
    expect_bytes(h, 6, idx, sizeof idx);
}

/* All or nothing: when the values failed, no indices tensor exists either. */
static void check_max_out2_failed(struct harness *h, struct captured *c)
{
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        expect_no_tensor(h, 5);
        expect_no_tensor(h, 6);
    }
}

static void check_get(struct harness *h, struct captured *c)
{
    (void)h;
    expect_tensor_reply(c, 1);
    assert_int_equal(c->data_len, sizeof A64);
    assert_memory_equal(c->data, A64, sizeof A64);
}

static void check_get_view(struct harness *h, struct captured *c)
{
    (void)h;
    expect_tensor_reply(c, 3);
    const int64_t want[] = {1, 3, 2, 4}; /* [[1, 2], [3, 4]].t() in C order */
    assert_int_equal(c->data_len, sizeof want);
    assert_memory_equal(c->data, want, sizeof want);
}

static void check_free(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_int_equal(status_of(get(h, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    assert_int_equal(status_of(get(h, 2, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
}

static void check_close_session(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_true(h->peer->session->closed);
    assert_int_equal(status_of(get(h, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_SESSION);
}

static void check_stats(struct harness *h, struct captured *c)
{
    (void)h;
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_STATS);
    assert_int_equal(c->resp->stats->session_tensors, 2);
    assert_int_equal(c->resp->stats->session_bytes, 2 * sizeof A64);
}

static void check_format(struct harness *h, struct captured *c)
{
    (void)h;
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_TEXT);
    assert_string_equal(c->resp->text, "tensor([1, 2, 3])"); /* repr(torch.tensor([1, 2, 3])) */
}

/* d/da sum(a*a) = 2a = [2, 4, 6]. */
static void expect_grad_of_a(struct harness *h, uint64_t out)
{
    struct captured *g = grad(h, 1, out);
    assert_int_equal(status_of(g), 0);
    expect_tensor_reply(g, out);
    const double want[] = {2, 4, 6};
    expect_bytes(h, out, want, sizeof want);
}

static void check_backward(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_BACKWARD);
    assert_false(c->resp->backward->suspended);
    expect_grad_of_a(h, 21);
}

/* a * a through a custom Function (handle 4: custom_function(2, 1), named "SqBackward"), summed
** into 3; a Backward that stops at the Function with its output gradient under 30. */
static void prep_suspended(struct harness *h)
{
    prep_graph(h);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__OpArgs args = TENSORD__OP_ARGS__INIT;
    Tensord__Operand oa = TENSORD__OPERAND__INIT, ob = TENSORD__OPERAND__INIT;
    Tensord__Operand *ins[2] = {&oa, &ob};
    oa.value_case = ob.value_case = TENSORD__OPERAND__VALUE_HANDLE;
    oa.handle = 2;
    ob.handle = 1;
    args.function_name = "SqBackward";
    args.function_id = 9;
    m.out = 4;
    m.op = TENSORD__OP__OP_CUSTOM_FUNCTION;
    m.inputs = ins;
    m.n_inputs = 2;
    m.args = &args;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &m;
    assert_int_equal(status_of(last(h, send_req(h, &req, NULL, 0))), 0);
    assert_int_equal(status_of(run1(h, TENSORD__OP__OP_SUM, 5, 4)), 0);
    Tensord__Request breq = TENSORD__REQUEST__INIT;
    Tensord__Backward bm = TENSORD__BACKWARD__INIT;
    bm.handle = 5;
    bm.custom = true;
    bm.grad_output = 30;
    breq.body_case = TENSORD__REQUEST__BODY_BACKWARD;
    breq.backward = &bm;
    struct captured *c = last(h, send_req(h, &breq, NULL, 0));
    assert_int_equal(status_of(c), 0);
    assert_true(c->resp->backward->suspended);
    assert_int_equal(c->resp->backward->function_id, 9);
    /* the client's gradient for a, as its Python backward would compute it: 2 * a * (the
    ** output gradient, ones) = a + a, handle 31 */
    assert_int_equal(status_of(run2(h, TENSORD__OP__OP_ADD, 31, 1, 1, NULL, false)), 0);
}

static void req_resume_backward(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ResumeBackward m = TENSORD__RESUME_BACKWARD__INIT;
    uint64_t grads[1] = {31};
    m.grads = grads;
    m.n_grads = 1;
    m.grad_output = 32;
    req.body_case = TENSORD__REQUEST__BODY_RESUME_BACKWARD;
    req.resume_backward = &m;
    send_req(h, &req, NULL, 0);
}

static void check_resume_backward(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_BACKWARD);
    assert_false(c->resp->backward->suspended);
    expect_grad_of_a(h, 21);
}

static void check_grad(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 20);
    const double want[] = {2, 4, 6};
    expect_bytes(h, 20, want, sizeof want);
}

static void check_set_grad(struct harness *h, struct captured *c)
{
    (void)h;
    expect_tensor_reply(c, 1);
    assert_true(c->resp->tensor->requires_grad);
    assert_true(c->resp->tensor->is_leaf);
}

static void check_set_grad_enabled(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_true(h->peer->session->no_grad);
}

static void check_write(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 1);
    const int64_t want[] = {1, 7, 3};
    expect_bytes(h, 1, want, sizeof want);
}

/* A failed Write leaves the tensor's bytes as they were. */
static void check_write_failed(struct harness *h, struct captured *c)
{
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        expect_bytes(h, 1, A64, sizeof A64);
    }
}

static bool file_exists(const char *name)
{
    char path[sizeof sweep_dir + 64];
    snprintf(path, sizeof path, "%s/%s", sweep_dir, name);
    return access(path, F_OK) == 0;
}

/* The file holds both tensors: a Load of it gives them back. */
static void check_save(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_int_equal(status_of(save_or_load(h, true, 30, 31)), 0);
    expect_bytes(h, 30, A64, sizeof A64);
    expect_bytes(h, 31, B64, sizeof B64);
}

static void req_save_view(struct harness *h)
{
    save_or_load(h, false, 1, 3);
}

/* A view is written as its elements in C order, and loads back as a contiguous tensor. */
static void check_save_view(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_int_equal(status_of(save_or_load(h, true, 30, 31)), 0);
    const int64_t a[] = {1, 2, 3, 4}, at[] = {1, 3, 2, 4};
    expect_bytes(h, 30, a, sizeof a);
    expect_bytes(h, 31, at, sizeof at);
}

/* Saves are atomic: a failed one leaves no file (there was none before). */
static void check_save_failed(struct harness *h, struct captured *c)
{
    (void)h;
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        assert_false(file_exists("f.safetensors"));
    }
}

static void check_load(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_TEXT);
    assert_string_equal(c->resp->text, "a\nb\n");
    expect_bytes(h, 10, A64, sizeof A64);
    expect_bytes(h, 11, B64, sizeof B64);
}

/* All or nothing: a Load that failed created neither handle. */
static void check_load_failed(struct harness *h, struct captured *c)
{
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        expect_no_tensor(h, 10);
        expect_no_tensor(h, 11);
    }
}

/* a - 0.5 * [2, 4, 6] = [0, 0, 0]; the first momentum_buffer is the gradient itself. */
static void check_optim_step(struct harness *h, struct captured *c)
{
    assert_int_equal(c->resp->result_case, TENSORD__RESPONSE__RESULT_TEXT);
    assert_string_equal(c->resp->text, "1"); /* the one parameter was stepped */
    const double a[] = {0, 0, 0}, buf[] = {2, 4, 6};
    expect_bytes(h, 1, a, sizeof a);
    expect_bytes(h, 40, buf, sizeof buf);
}

/* All or nothing: a step refused for memory changed nothing (a as it was, no state made); one
** whose reply alone failed (encoding it, or holding its text until written) did all of it. */
static void check_optim_step_failed(struct harness *h, struct captured *c)
{
    (void)c;
    struct td_tensor *t;
    if (td_session_lookup(h->peer->session, 40, &t, NULL) == 0) {
        const double a[] = {0, 0, 0}, buf[] = {2, 4, 6};
        expect_bytes(h, 1, a, sizeof a);
        expect_bytes(h, 40, buf, sizeof buf);
    } else {
        const double a[] = {1, 2, 3};
        expect_bytes(h, 1, a, sizeof a);
    }
}

/* total = |[2, 4, 6]| = sqrt(56) = 7.483314773547883 (Python's repr of math.sqrt(56); the norm
** of that one norm is the same double); the grad is scaled by 1 / (sqrt(56) + 1e-6). */
static void expect_clipped(struct harness *h)
{
    const double total = 7.483314773547883, c = 1 / (total + 1e-6);
    const double g[] = {2 * c, 4 * c, 6 * c};
    expect_bytes(h, 41, &total, sizeof total);
    struct captured *r = grad(h, 1, 42);
    assert_int_equal(status_of(r), 0);
    expect_bytes(h, 42, g, sizeof g);
}

static void check_clip_grad_norm(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 41);
    assert_int_equal(c->resp->tensor->n_shape, 0);
    expect_clipped(h);
}

/* All or nothing: no result and the grad as it was, or (the reply alone failed) both done. */
static void check_clip_grad_norm_failed(struct harness *h, struct captured *c)
{
    (void)c;
    struct td_tensor *t;
    if (td_session_lookup(h->peer->session, 41, &t, NULL) == 0) {
        expect_clipped(h);
    } else {
        expect_grad_of_a(h, 42);
    }
}

/* torch.manual_seed(7); torch.rand(4, dtype=torch.float64), with no fault armed. */
static void sweep_rand_reference(void)
{
    struct harness h;
    harness_init(&h, NULL);
    prep_seeded(&h);
    req_rand(&h);
    assert_int_equal(status_of(&h.replies[h.nreplies - 1]), 0);
    struct captured *g = get(&h, 9, 0, 0);
    assert_int_equal(g->data_len, sizeof rand_want);
    memcpy(rand_want, g->data, sizeof rand_want);
    harness_close(&h);
}

/* Tensors 1 and 2, named "w1" (1, whose handle is then freed: the name holds it alone) and
** "b" (2). */
static void prep_named(struct harness *h)
{
    prep_tensors(h);
    assert_int_equal(status_of(set_name(h, "w1", 1)), 0);
    assert_int_equal(status_of(set_name(h, "b", 2)), 0);
    uint64_t one = 1;
    assert_int_equal(status_of(free_handles(h, &one, 1)), 0);
}

static void req_set_name(struct harness *h)
{
    set_name(h, "w1", 1);
}

static void check_set_name(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    assert_int_equal(status_of(get_name(h, "w1", 20)), 0);
    expect_bytes(h, 20, A64, sizeof A64);
}

/* A failed SetName binds nothing (unless only its reply could not be encoded: it ran). */
static void check_set_name_failed(struct harness *h, struct captured *c)
{
    if (strcmp(message_of(c), ENCODE_OOM) != 0) {
        assert_int_equal(status_of(get_name(h, "w1", 20)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    }
}

static void req_get_name(struct harness *h)
{
    get_name(h, "w1", 20);
}

static void check_get_name(struct harness *h, struct captured *c)
{
    expect_tensor_reply(c, 20);
    expect_bytes(h, 20, A64, sizeof A64);
}

static void req_del_name(struct harness *h)
{
    del_name(h, "w1");
}

static void check_del_name(struct harness *h, struct captured *c)
{
    check_ok(h, c);
    const char *left[] = {"b"};
    expect_names(list_names(h), left, 1);
}

static void req_list_names(struct harness *h)
{
    list_names(h);
}

static void check_list_names(struct harness *h, struct captured *c)
{
    (void)h;
    const char *want[] = {"w1", "b"};
    expect_names(c, want, 2);
}

static void test_allocation_failure_sweep(void **state)
{
    (void)state;
    /* One case per Request kind (every field of the oneof), plus the paths inside a kind that
    ** allocate differently: a resumed Hello, in-place and two-output ops, a view's Get and
    ** Save (its elements are gathered into a copy). */
    static const struct sweep_case cases[] = {
        {"hello", prep_none, req_hello, check_hello, NULL},
        {"hello (resume)", prep_detached, req_resume, check_resume, check_resume_failed},
        {"create", prep_hello, req_create, check_create, NULL},
        {"create (charged data)", prep_hello, req_create_charged, check_create_charged,
         check_create_charged_failed},
        {"full", prep_hello, req_full, check_full, NULL},
        {"rand", prep_seeded, req_rand, check_rand, NULL},
        {"arange", prep_hello, req_arange, check_arange, NULL},
        {"manual_seed", prep_hello, req_manual_seed, check_manual_seed, NULL},
        {"run_op add", prep_tensors, req_add, check_add, NULL},
        {"run_op matmul", prep_tensors, req_matmul, check_matmul, NULL},
        {"run_op mul_", prep_tensors, req_inplace, check_inplace, check_inplace_failed},
        {"run_op max out2", prep_view, req_max_out2, check_max_out2, check_max_out2_failed},
        {"get", prep_tensors, req_get, check_get, NULL},
        {"get (view)", prep_view, req_get_view, check_get_view, NULL},
        {"free", prep_tensors, req_free, check_free, NULL},
        {"close_session", prep_tensors, req_close_session, check_close_session, NULL},
        {"ping", prep_hello, req_ping, check_ok, NULL},
        {"node_info", prep_none, req_node_info, check_node_info, NULL},
        {"stats", prep_tensors, req_stats, check_stats, NULL},
        {"format", prep_tensors, req_format, check_format, NULL},
        {"backward", prep_graph, req_backward, check_backward, NULL},
        {"resume_backward", prep_suspended, req_resume_backward, check_resume_backward, NULL},
        {"grad", prep_graph_done, req_grad, check_grad, NULL},
        {"set_grad", prep_float, req_set_grad, check_set_grad, NULL},
        {"set_grad_enabled", prep_hello, req_set_grad_enabled, check_set_grad_enabled, NULL},
        {"write", prep_tensors, req_write, check_write, check_write_failed},
        {"save", prep_tensors, req_save, check_save, check_save_failed},
        {"load", prep_saved, req_load, check_load, check_load_failed},
        {"save (view)", prep_view, req_save_view, check_save_view, check_save_failed},
        {"optim_step", prep_graph_done, req_optim_step, check_optim_step, check_optim_step_failed},
        {"optim_step clip_grad_norm_", prep_graph_done, req_clip_grad_norm, check_clip_grad_norm,
         check_clip_grad_norm_failed},
        {"set_name", prep_tensors, req_set_name, check_set_name, check_set_name_failed},
        {"get_name", prep_named, req_get_name, check_get_name, NULL},
        {"del_name", prep_named, req_del_name, check_del_name, NULL},
        {"list_names", prep_named, req_list_names, check_list_names, NULL},
    };
    /* Every kind of the oneof has a case: a kind added to the protocol must be added here. */
    bool covered[64] = {false}; /* by oneof case (field number) */
    covered[TENSORD__REQUEST__BODY_HELLO] = covered[TENSORD__REQUEST__BODY_CREATE] = true;
    covered[TENSORD__REQUEST__BODY_FULL] = covered[TENSORD__REQUEST__BODY_RAND] = true;
    covered[TENSORD__REQUEST__BODY_ARANGE] = covered[TENSORD__REQUEST__BODY_MANUAL_SEED] = true;
    covered[TENSORD__REQUEST__BODY_RUN_OP] = covered[TENSORD__REQUEST__BODY_GET] = true;
    covered[TENSORD__REQUEST__BODY_FREE] = covered[TENSORD__REQUEST__BODY_CLOSE_SESSION] = true;
    covered[TENSORD__REQUEST__BODY_PING] = covered[TENSORD__REQUEST__BODY_STATS] = true;
    covered[TENSORD__REQUEST__BODY_FORMAT] = covered[TENSORD__REQUEST__BODY_BACKWARD] = true;
    covered[TENSORD__REQUEST__BODY_GRAD] = covered[TENSORD__REQUEST__BODY_SET_GRAD] = true;
    covered[TENSORD__REQUEST__BODY_SET_GRAD_ENABLED] = covered[TENSORD__REQUEST__BODY_WRITE] = true;
    covered[TENSORD__REQUEST__BODY_SAVE] = covered[TENSORD__REQUEST__BODY_LOAD] = true;
    covered[TENSORD__REQUEST__BODY_OPTIM_STEP] = covered[TENSORD__REQUEST__BODY_RESUME_BACKWARD] =
        true;
    covered[TENSORD__REQUEST__BODY_SET_NAME] = covered[TENSORD__REQUEST__BODY_GET_NAME] = true;
    covered[TENSORD__REQUEST__BODY_DEL_NAME] = covered[TENSORD__REQUEST__BODY_LIST_NAMES] = true;
    covered[TENSORD__REQUEST__BODY_NODE_INFO] = true;
    const ProtobufCMessageDescriptor *d = &tensord__request__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
            (f->id >= sizeof covered / sizeof covered[0] || !covered[f->id])) {
            fail_msg("request kind %s has no allocation-failure sweep case", f->name);
        }
    }

    snprintf(sweep_dir, sizeof sweep_dir, "/tmp/td_test_rpc_sweep.XXXXXX");
    assert_non_null(mkdtemp(sweep_dir));
    sweep_rand_reference();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sweep_one(&cases[i]);
    }
    sweep_dir_clean("end", 0, NULL);
    assert_int_equal(rmdir(sweep_dir), 0);
    print_message("request cases swept: %zu; failing runs: %d out of memory, %d closed, %d "
                  "succeeded past their failed allocation with the right result\n",
                  sizeof cases / sizeof cases[0], sweep_oom, sweep_closed, sweep_ok_reached);
}

/* ---- scale-out: Hello's routing by the token's node, NodeInfo ---- */

/* A node "n0" whose peer table knows "n1" (reachable, advertising n1.example:7878, with room)
** and "n2" (reachable at 10.0.0.2:7878, advertising nothing, full). */
static struct td_peer_table route_peers;
static void route_init_peers(struct harness *h);

static void route_init(struct harness *h, int64_t max_sessions)
{
    struct td_store_config cfg = {.session_ttl_ms = 60000,
                                  .max_sessions = max_sessions,
                                  .node_id = "n0"};
    harness_init(h, &cfg);
    h->srv.node_id = "n0";
    route_init_peers(h);
}

static void route_init_peers(struct harness *h)
{
    h->srv.advertise = "n0.example:7878";
    memset(&route_peers, 0, sizeof route_peers);
    struct td_peer_state *a = &route_peers.p[0], *b = &route_peers.p[5];
    *a = (struct td_peer_state){.in_use = true,
                                .reachable = true,
                                .accepting = true,
                                .sessions = 3,
                                .max_sessions = 10,
                                .last_seen_ms = 900};
    snprintf(a->address, sizeof a->address, "10.0.0.1:7878");
    snprintf(a->node_id, sizeof a->node_id, "n1");
    snprintf(a->advertise, sizeof a->advertise, "n1.example:7878");
    *b = (struct td_peer_state){.in_use = true,
                                .reachable = true,
                                .accepting = false,
                                .sessions = 10,
                                .max_sessions = 10,
                                .last_seen_ms = 1000};
    snprintf(b->address, sizeof b->address, "10.0.0.2:7878");
    snprintf(b->node_id, sizeof b->node_id, "n2");
    h->srv.peers = &route_peers;
}

static void test_token_names_this_node(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 0);
    Tensord__Response *r = hello(&h, NULL, 0);
    assert_int_equal(r->status != NULL ? r->status->code : 0, 0);
    const ProtobufCBinaryData *t = &r->hello->session_token;
    assert_int_equal(t->len, 3 + 32); /* "n0." and 32 hex digits */
    assert_memory_equal(t->data, "n0.", 3);
    for (size_t i = 3; i < t->len; i++) {
        assert_true(strchr("0123456789abcdef", t->data[i]) != NULL);
    }
    assert_string_equal(r->hello->node_id, "n0");
    assert_string_equal(r->hello->advertise, "n0.example:7878");
    uint8_t tok[TD_TOKEN_MAX];
    size_t n = t->len;
    memcpy(tok, t->data, n);
    /* A second connection resumes it by that token. */
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    r = hello(&h, tok, n);
    assert_int_equal(r->status != NULL ? r->status->code : 0, 0);
    assert_true(r->hello->resumed);
    assert_memory_equal(r->hello->session_token.data, tok, n);
    harness_close(&h);
}

static void expect_route(struct harness *h, const char *token, int code, const char *node,
                         const char *address, const char *needle)
{
    td_rpc_peer_close(h->peer);
    assert_int_equal(td_rpc_peer_new(&h->peer, &h->srv, capture, h), 0);
    Tensord__Response *r = hello(h, (const uint8_t *)token, strlen(token));
    assert_non_null(r->status);
    assert_int_equal(r->status->code, code);
    assert_string_equal(r->status->node, node);
    assert_string_equal(r->status->address, address);
    assert_non_null(strstr(r->status->message, needle));
}

static void test_resume_routes_by_token_node(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 0);
    const char *hex = "0123456789abcdef0123456789abcdef";
    char tok[128];
    /* Another node's: MOVED, to the address it advertises, or else the one it was dialled at. */
    snprintf(tok, sizeof tok, "n1.%s", hex);
    expect_route(&h, tok, TENSORD__STATUS_CODE__MOVED, "n1", "n1.example:7878", "owned by node n1");
    snprintf(tok, sizeof tok, "n2.%s", hex);
    expect_route(&h, tok, TENSORD__STATUS_CODE__MOVED, "n2", "10.0.0.2:7878", "n2");
    assert_int_equal(h.srv.stats.moved, 2);
    /* A node nobody knows: UNKNOWN_NODE naming it, no address (a token is never an address). */
    snprintf(tok, sizeof tok, "evil-host.%s", hex);
    expect_route(&h, tok, TENSORD__STATUS_CODE__UNKNOWN_NODE, "evil-host", "", "does not know");
    /* Malformed: no node named unless its node part is a well-formed id. */
    snprintf(tok, sizeof tok, "n1.%s0", hex); /* 33 digits */
    expect_route(&h, tok, TENSORD__STATUS_CODE__UNKNOWN_NODE, "n1", "", "malformed");
    snprintf(tok, sizeof tok, "N1.%s", hex); /* upper case: not a DNS label here */
    expect_route(&h, tok, TENSORD__STATUS_CODE__UNKNOWN_NODE, "", "", "malformed");
    snprintf(tok, sizeof tok, "n1.0123456789ABCDEF0123456789abcdef");
    expect_route(&h, tok, TENSORD__STATUS_CODE__UNKNOWN_NODE, "n1", "", "malformed");
    expect_route(&h, "no-dot-at-all-in-this-token-0123456789", TENSORD__STATUS_CODE__UNKNOWN_NODE,
                 "", "", "malformed");
    assert_int_equal(h.srv.stats.unknown_node, 5);
    /* Our own id with a secret nobody holds: looked up here, unknown session. */
    snprintf(tok, sizeof tok, "n0.%s", hex);
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    Tensord__Response *r = hello(&h, (const uint8_t *)tok, strlen(tok));
    assert_int_equal(r->status->code, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    /* A peer that is unreachable now is still the owner: MOVED (its client learns where). */
    route_peers.p[0].reachable = false;
    snprintf(tok, sizeof tok, "n1.%s", hex);
    expect_route(&h, tok, TENSORD__STATUS_CODE__MOVED, "n1", "n1.example:7878", "n1");
    harness_close(&h);
}

static void test_full_node_names_peer_with_room(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 1);
    Tensord__Response *r = hello(&h, NULL, 0); /* the one session it takes */
    assert_int_equal(r->status != NULL ? r->status->code : 0, 0);
    /* n1 has 7 free slots, n2 none (and says it is not accepting): n1. */
    expect_route(&h, "", TENSORD__STATUS_CODE__NODE_FULL, "n1", "n1.example:7878", "node n1");
    /* With a third peer with more room, that one. */
    struct td_peer_state *c = &route_peers.p[63];
    *c = route_peers.p[0];
    snprintf(c->node_id, sizeof c->node_id, "n3");
    snprintf(c->advertise, sizeof c->advertise, "[::1]:7000");
    c->sessions = 0;
    expect_route(&h, "", TENSORD__STATUS_CODE__NODE_FULL, "n3", "[::1]:7000", "node n3");
    /* A peer answering with our own id, or unreachable, or draining, is never named. */
    snprintf(c->node_id, sizeof c->node_id, "n0");
    route_peers.p[0].reachable = false;
    expect_route(&h, "", TENSORD__STATUS_CODE__NODE_FULL, "", "", "knows no peer with room");
    assert_int_equal(h.srv.stats.refused_full, 3);
    assert_int_equal(h.srv.stats.redirected_full, 2);
    harness_close(&h);
}

/* At the memory cap (--max-bytes all used) a node is full too, whatever its session count. */
static void test_node_at_its_memory_cap_is_full(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_ttl_ms = 60000, .max_bytes = 4096, .node_id = "n0"};
    harness_init(&h, &cfg);
    h.srv.node_id = "n0";
    route_init_peers(&h);
    atomic_store(&h.store.global.used, 4096);
    expect_route(&h, "", TENSORD__STATUS_CODE__NODE_FULL, "n1", "n1.example:7878",
                 "session or memory limit");
    atomic_store(&h.store.global.used, 4095); /* one byte free: it takes the session */
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    Tensord__Response *r = hello(&h, NULL, 0);
    assert_int_equal(r->status != NULL ? r->status->code : 0, 0);
    atomic_store(&h.store.global.used, 0);
    harness_close(&h);
}

/* Draining (SIGTERM): new sessions are refused with NODE_FULL; NodeInfo says so. */
static void test_draining_refuses_new_sessions(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 0);
    h.srv.draining = true;
    expect_route(&h, "", TENSORD__STATUS_CODE__NODE_FULL, "n1", "n1.example:7878", "shutting down");
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    req_node_info(&h);
    Tensord__Response *r = h.replies[h.nreplies - 1].resp;
    assert_int_equal(r->result_case, TENSORD__RESPONSE__RESULT_NODE_INFO);
    assert_true(r->node_info->draining);
    assert_false(r->node_info->accepting);
    harness_close(&h);
}

static void test_node_info_reports_node_and_peers(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 5);
    route_peers.p[7] = route_peers.p[0];
    route_peers.p[7].self = true; /* an address of this node: never listed */
    req_node_info(&h);
    Tensord__Response *r = h.replies[h.nreplies - 1].resp;
    assert_int_equal(r->result_case, TENSORD__RESPONSE__RESULT_NODE_INFO);
    const Tensord__NodeInfoResult *m = r->node_info;
    assert_string_equal(m->node_id, "n0");
    assert_string_equal(m->advertise, "n0.example:7878");
    assert_int_equal(m->max_sessions, 5);
    assert_int_equal(m->sessions, 0);
    assert_true(m->accepting);
    assert_int_equal(m->n_peers, 2);
    assert_string_equal(m->peers[0]->node_id, "n1");
    assert_string_equal(m->peers[0]->address, "n1.example:7878");
    assert_int_equal(m->peers[0]->last_seen_ms, 100); /* fake_now 1000, seen at 900 */
    assert_string_equal(m->peers[1]->address, "10.0.0.2:7878");
    assert_false(m->peers[1]->accepting);
    /* On a connection with a session it is refused, as Hello is. */
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    hello(&h, NULL, 0);
    req_node_info(&h);
    assert_int_equal(status_of(&h.replies[h.nreplies - 1]), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    harness_close(&h);
}

/* With an auth token, NodeInfo needs it like Hello; a wrong one is refused and counted. */
static void test_node_info_needs_the_auth_token(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 0);
    td_map_init(&h.srv.auth_penalty);
    h.srv.auth_token = "a-good-token-0123456789";
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__NodeInfo m = TENSORD__NODE_INFO__INIT;
    req.body_case = TENSORD__REQUEST__BODY_NODE_INFO;
    req.node_info = &m;
    m.auth_token = "a-bad-token-0123456789x";
    struct captured *c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__UNAUTHENTICATED);
    assert_true(c->close_after);
    td_rpc_peer_close(h.peer);
    assert_int_equal(td_rpc_peer_new(&h.peer, &h.srv, capture, &h), 0);
    m.auth_token = "a-good-token-0123456789";
    c = last(&h, send_req(&h, &req, NULL, 0));
    assert_int_equal(status_of(c), 0);
    assert_string_equal(c->resp->node_info->node_id, "n0");
    harness_close(&h);
    td_rpc_server_close(&h.srv);
}

/* The poller's codec: a NodeInfo frame out; answers in, believed only when they make sense. */
static void test_peer_answers_are_checked(void **state)
{
    (void)state;
    struct harness h;
    route_init(&h, 0);
    uint8_t frame[256];
    size_t n = td_rpc_node_info_frame(&h.srv, 9, frame, sizeof frame);
    assert_true(n > TD_FRAME_HEADER_BYTES);
    Tensord__Request *req = tensord__request__unpack(NULL, n - TD_FRAME_HEADER_BYTES,
                                                     frame + TD_FRAME_HEADER_BYTES);
    assert_non_null(req);
    assert_int_equal(req->id, 9);
    assert_int_equal(req->body_case, TENSORD__REQUEST__BODY_NODE_INFO);
    tensord__request__free_unpacked(req, NULL);
    assert_int_equal(td_rpc_node_info_frame(&h.srv, 9, frame, 8), 0); /* does not fit */

    struct td_peer_state ps = {.in_use = true};
    snprintf(ps.address, sizeof ps.address, "127.0.0.1:9");
    Tensord__Response resp = TENSORD__RESPONSE__INIT;
    Tensord__NodeInfoResult ni = TENSORD__NODE_INFO_RESULT__INIT;
    resp.result_case = TENSORD__RESPONSE__RESULT_NODE_INFO;
    resp.node_info = &ni;
    uint8_t buf[512];
    struct {
        const char *id, *advertise;
        int want;
    } cases[] = {
        {"n7", "", 0},
        {"n7", "n7.example:1", 0},
        {"", "", -1},                 /* no id */
        {"N7", "", -1},               /* not a label */
        {"n7", "not an address", -1}, /* advertise garbage */
        {"n7", "evil:0", -1},         /* port 0 */
        {"n0", "", -1},               /* our own id: marked self */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ni.node_id = (char *)cases[i].id;
        ni.advertise = (char *)cases[i].advertise;
        ni.sessions = 4;
        ni.max_sessions = 9;
        ni.accepting = true;
        size_t len = tensord__response__pack(&resp, buf);
        ps.self = false;
        assert_int_equal(td_rpc_peer_answer(&h.srv, &ps, buf, len), cases[i].want);
        if (cases[i].want == 0) {
            assert_true(ps.reachable && ps.accepting);
            assert_string_equal(ps.node_id, "n7");
            assert_string_equal(ps.advertise, cases[i].advertise);
            assert_int_equal(ps.sessions, 4);
            assert_int_equal(ps.failures, 0);
        } else {
            assert_false(ps.reachable);
        }
    }
    assert_true(ps.self);
    /* Garbage bytes, and a reply that is an error. */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    uint64_t f = ps.failures;
    assert_int_equal(td_rpc_peer_answer(&h.srv, &ps, garbage, sizeof garbage), -1);
    assert_int_equal(ps.failures, f + 1);
    Tensord__Status st = TENSORD__STATUS__INIT;
    st.code = TENSORD__STATUS_CODE__UNAUTHENTICATED;
    st.message = "authentication failed";
    resp.status = &st;
    ni.node_id = "n7";
    ni.advertise = "";
    size_t len = tensord__response__pack(&resp, buf);
    assert_int_equal(td_rpc_peer_answer(&h.srv, &ps, buf, len), -1);
    /* An id another reachable entry already answers with is not believed twice. */
    resp.status = NULL;
    ni.node_id = "n1";
    len = tensord__response__pack(&resp, buf);
    assert_int_equal(td_rpc_peer_answer(&h.srv, &ps, buf, len), -1);
    harness_close(&h);
}

/* ---- the turn budget and charged handle entries (attack report findings 2 and 4) ---- */

/* With a turn budget of one job, pipelined requests wait on the store's deferred list: each
** loop turn (td_store_turn) answers the next one, in order, and the peer's pending count holds
** the ones waiting (so PEER_PAUSE_PENDING can stop reading a flooding connection). */
static void test_turn_budget_defers_pipelined_requests(void **state)
{
    (void)state;
    struct harness h;
    struct td_store_config cfg = {.session_ttl_ms = 60000, .turn_work = 1};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    td_store_turn(&h.store);
    int before = h.nreplies;
    uint64_t id1 = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    uint64_t id2 = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    uint64_t id3 = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(h.nreplies, before + 1); /* the first spent the turn */
    assert_int_equal(h.replies[before].resp->id, id1);
    assert_int_equal(h.peer->pending, 2);
    assert_true(td_store_has_deferred(&h.store));
    td_store_turn(&h.store);
    assert_int_equal(h.nreplies, before + 2);
    assert_int_equal(h.replies[before + 1].resp->id, id2);
    td_store_turn(&h.store);
    assert_int_equal(h.nreplies, before + 3);
    assert_int_equal(h.replies[before + 2].resp->id, id3);
    assert_int_equal(h.peer->pending, 0);
    td_store_turn(&h.store);
    assert_false(td_store_has_deferred(&h.store));
    harness_close(&h);
}

/* Every entry of the handle table is charged: expand views of one 4-byte tensor stop at the
** session quota, with the quota's own wording, and freeing one gives its charge back. */
static void test_handle_entries_charged(void **state)
{
    (void)state;
    struct harness h;
    const int64_t quota = 4 + 3 * TD_ENTRY_BYTES;
    struct td_store_config cfg = {.session_ttl_ms = 60000,
                                  .session_max_bytes = quota,
                                  .entry_bytes = TD_ENTRY_BYTES};
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    const int64_t one[] = {1}, wide[] = {1 << 20};
    const float x = 1;
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__FLOAT32, one, 1, &x, sizeof x), 0);
    assert_int_equal(td_session_bytes(h.peer->session), 4 + TD_ENTRY_BYTES);
    assert_int_equal(expand(&h, 2, 1, wide, 1), 0);
    assert_int_equal(expand(&h, 3, 1, wide, 1), 0);
    Tensord__OpArgs args = TENSORD__OP_ARGS__INIT;
    args.dims = (int64_t *)wide;
    args.n_dims = 1;
    const uint64_t in = 1;
    struct captured *c = run_args(&h, TENSORD__OP__OP_EXPAND, 4, &in, 1, &args);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    char want[64];
    snprintf(want, sizeof want, "session memory quota exceeded: %lld bytes", (long long)quota);
    assert_string_equal(message_of(c), want);
    c = simple(&h, TENSORD__REQUEST__BODY_STATS);
    assert_int_equal(c->resp->stats->session_bytes, quota);
    assert_int_equal(td_session_count(h.peer->session), 3);
    uint64_t two = 2;
    free_handles(&h, &two, 1);
    assert_int_equal(td_session_bytes(h.peer->session), 4 + 2 * TD_ENTRY_BYTES);
    harness_close(&h);
}

/* ---- one session per connection; decoded requests charged (attack report 1 and 3) ---- */

/* Sends a Hello (resuming `token` when given) without expecting a reply now; returns its id. */
static uint64_t send_hello(struct harness *h, const uint8_t *token, size_t token_len)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 2;
    m.session_token.data = (uint8_t *)token;
    m.session_token.len = token_len;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    return send_req(h, &req, NULL, 0);
}

static uint64_t send_free(struct harness *h, uint64_t *handles, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Free m = TENSORD__FREE__INIT;
    m.handles = handles;
    m.n_handles = n;
    req.body_case = TENSORD__REQUEST__BODY_FREE;
    req.free = &m;
    return send_req(h, &req, NULL, 0);
}

/* Finishes deferred job i (not necessarily the oldest: two sessions run side by side). */
static void finish_deferred_at(int i)
{
    assert_true(i < ndeferred);
    struct td_job *job = deferred[i];
    memmove(deferred + i, deferred + i + 1, (size_t)(ndeferred - i - 1) * sizeof deferred[0]);
    ndeferred--;
    job->run(job);
    td_session_job_complete(job);
}

static void assert_reply(struct harness *h, int at, uint64_t id, int code)
{
    assert_true(at < h->nreplies);
    struct captured *c = &h->replies[at];
    if (c->resp == NULL || c->resp->id != id || status_of(c) != code) {
        fail_msg("reply %d: id %llu status %d (%s), expected id %llu status %d", at,
                 c->resp != NULL ? (unsigned long long)c->resp->id : 0ull, status_of(c),
                 c->resp != NULL ? message_of(c) : "-", (unsigned long long)id, code);
    }
}

/* The attack's sequence on connection A: [slow sum][CloseSession][Hello resuming B][Free 1, 2]
** [Backward], pipelined while B's own heavy job reads B's handle 1 on a worker. The Hello used
** to switch A to B while A's later jobs stayed in the closed session's FIFO and ran inline,
** against B's table, next to B's job (a use after free). Now A keeps its one session: the Hello
** is refused, the Free and the Backward fail as "session is closed" without running (nothing
** goes to the executor, nothing runs inline), and B's tensors are intact. */
static void test_hello_after_close_session_is_refused(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness a, b;
    harness_init(&a, NULL);
    harness_second(&b, &a);
    Tensord__Response *r = hello(&b, NULL, 0);
    assert_int_equal(r->status->code, 0);
    uint8_t tok_b[16];
    memcpy(tok_b, r->hello->session_token.data, sizeof tok_b);
    assert_int_equal(create(&b, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(create(&b, 2, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    hello(&a, NULL, 0);
    assert_int_equal(create(&a, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, B64, sizeof B64), 0);
    a.store.ex = &later;
    a.srv.heavy_work = 2; /* 3 elements read: heavy */
    ndeferred = 0;
    /* B's own job on the "worker", reading B's handle 1 */
    const uint64_t b11[] = {1, 1};
    assert_null(run_args(&b, TENSORD__OP__OP_MUL, 3, b11, 2, NULL));
    assert_int_equal(ndeferred, 1);
    int before = a.nreplies;
    uint64_t a1 = 1;
    uint64_t sum_id = a.next_id;
    assert_null(run_args(&a, TENSORD__OP__OP_SUM, 2, &a1, 1, NULL));
    assert_int_equal(ndeferred, 2);
    uint64_t close_id = send_simple(&a, TENSORD__REQUEST__BODY_CLOSE_SESSION);
    uint64_t hello_id = send_hello(&a, tok_b, sizeof tok_b);
    uint64_t both[] = {1, 2};
    uint64_t free_id = send_free(&a, both, 2);
    Tensord__Request bw = TENSORD__REQUEST__INIT;
    Tensord__Backward bm = TENSORD__BACKWARD__INIT;
    bm.handle = 1;
    bw.body_case = TENSORD__REQUEST__BODY_BACKWARD;
    bw.backward = &bm;
    uint64_t bw_id = send_req(&a, &bw, NULL, 0);
    assert_int_equal(a.nreplies, before); /* all behind A's running sum */
    finish_deferred_at(1);                /* A's sum: cancelled by the close on arrival */
    assert_int_equal(ndeferred, 1);       /* the Backward did not go to the executor */
    assert_int_equal(a.nreplies, before + 5);
    assert_reply(&a, before, sum_id, TENSORD__STATUS_CODE__CANCELLED);
    assert_reply(&a, before + 1, close_id, 0);
    assert_reply(&a, before + 2, hello_id, TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    assert_string_equal(message_of(&a.replies[before + 2]),
                        "this connection's session was closed: open a new connection to start "
                        "or resume one");
    assert_reply(&a, before + 3, free_id, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    assert_string_equal(message_of(&a.replies[before + 3]), "session is closed");
    assert_reply(&a, before + 4, bw_id, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    /* Arriving now: answered at once, and the connection is still not moved to B. */
    uint64_t late = send_hello(&a, tok_b, sizeof tok_b);
    assert_int_equal(status_of(last(&a, late)), TENSORD__STATUS_CODE__PROTOCOL_ERROR);
    assert_int_equal(status_of(get(&a, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_SESSION);
    /* a Ping and another close succeed, doing nothing */
    assert_int_equal(status_of(simple(&a, TENSORD__REQUEST__BODY_PING)), 0);
    assert_int_equal(status_of(simple(&a, TENSORD__REQUEST__BODY_CLOSE_SESSION)), 0);
    assert_true(a.peer->session->closed);
    assert_int_equal(td_store_count(&a.store), 1); /* B only */
    /* B's job finishes, and B's table is as B left it: 1, 2 and the product. */
    int bbefore = b.nreplies;
    finish_deferred_at(0);
    assert_int_equal(b.nreplies, bbefore + 1);
    assert_int_equal(status_of(&b.replies[bbefore]), 0);
    a.store.ex = &td_executor_inline;
    assert_memory_equal(get(&b, 1, 0, 0)->data, A64, sizeof A64);
    assert_memory_equal(get(&b, 2, 0, 0)->data, B64, sizeof B64);
    const int64_t sq[] = {1, 4, 9};
    assert_memory_equal(get(&b, 3, 0, 0)->data, sq, sizeof sq);
    harness_clear(&b);
    td_rpc_peer_close(b.peer);
    harness_close(&a);
}

/* Bytes protobuf-c allocates for a packed repeated uint64 field of n entries outside the job's
** arena: one array, rounded up to 16, plus a chunk header (rpc.c's PB_MALLOC_OVERHEAD). */
static int64_t packed_array_charge(size_t n)
{
    return (int64_t)((n * 8 + 15) & ~(size_t)15) + 16;
}

static size_t free_meta_len(uint64_t *handles, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Free m = TENSORD__FREE__INIT;
    m.handles = handles;
    m.n_handles = n;
    req.id = 1; /* as send_req numbers them: ids below 128 take one byte */
    req.body_case = TENSORD__REQUEST__BODY_FREE;
    req.free = &m;
    return tensord__request__get_packed_size(&req);
}

/* A queued request's decoded bytes are charged to its session from decode until its job is
** freed, and counted in the peer's queued bytes (which net's glue pauses on); a large Free
** costs work per handle and goes to the executor. */
static void test_decoded_request_charged_and_released(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    h.store.ex = &later;
    ndeferred = 0;
    h.srv.heavy_work = 2;
    uint64_t x = 1;
    assert_null(run_args(&h, TENSORD__OP__OP_SUM, 2, &x, 1, NULL)); /* heavy, deferred */
    h.srv.heavy_work = 1 << 16;
    struct td_session *s = h.peer->session;
    int64_t base = td_session_bytes(s);
    assert_int_equal(h.peer->queued_bytes, 0); /* the running sum decoded into its arena */
    enum { N = 20000 };                        /* handles 1000..20999: a 160000-byte array */
    uint64_t *hs = malloc(N * sizeof *hs);
    for (size_t i = 0; i < N; i++) {
        hs[i] = 1000 + i;
    }
    size_t meta = free_meta_len(hs, N);
    int64_t want = packed_array_charge(N) + (int64_t)meta;
    uint64_t free_id = send_free(&h, hs, N);
    /* A Free is not charged to the quota (freeing must work when it is full), but its decoded
    ** bytes count in what the connection has queued, which pauses reading past a bound. */
    assert_int_equal(td_session_bytes(s) - base, 0);
    assert_int_equal(h.peer->queued_bytes, want);
    /* The sum finishes; the Free's turn: 20000 handles x 64 is above heavy_work: the pool. */
    finish_deferred_at(0);
    assert_int_equal(ndeferred, 1);
    assert_null(reply_to(&h, free_id));
    assert_int_equal(td_session_bytes(s) - base, 8); /* the sum's int64 result */
    finish_deferred_at(0);
    assert_int_equal(status_of(reply_to(&h, free_id)), 0);
    assert_int_equal(td_session_bytes(s) - base, 8);
    assert_int_equal(h.peer->queued_bytes, 0);
    free(hs);
    h.store.ex = &td_executor_inline;
    harness_close(&h);
}

/* A decoded request that does not fit the session's quota is answered QUOTA_EXCEEDED in its
** place in line (after the job before it), and dropped: nothing of it runs. */
static uint64_t send_ping_free_first(struct harness *h, uint64_t *handles, size_t n);

static void test_decoded_request_over_quota_in_order(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct td_store_config cfg = {.session_ttl_ms = 60000, .session_max_bytes = 30000};
    struct harness h;
    harness_init(&h, &cfg);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    h.store.ex = &later;
    ndeferred = 0;
    h.srv.heavy_work = 2;
    uint64_t x = 1;
    uint64_t sum_id = h.next_id;
    assert_null(run_args(&h, TENSORD__OP__OP_SUM, 2, &x, 1, NULL));
    h.srv.heavy_work = 1 << 16;
    int64_t base = td_session_bytes(h.peer->session);
    /* A Ping carrying free_first at its cap decodes to 32 KiB of handles, more than the quota
    ** (a Free is never charged: freeing must work at a full quota). */
    enum { N = TD_RPC_MAX_FREE_FIRST };
    uint64_t *hs = malloc(N * sizeof *hs);
    for (size_t i = 0; i < N; i++) {
        hs[i] = 1; /* would free handle 1, if it ran */
    }
    int before = h.nreplies;
    uint64_t free_id = send_ping_free_first(&h, hs, N);
    uint64_t ping_id = send_simple(&h, TENSORD__REQUEST__BODY_PING);
    assert_int_equal(h.nreplies, before); /* behind the sum */
    assert_int_equal(td_session_bytes(h.peer->session), base);
    finish_deferred_at(0);
    assert_int_equal(h.nreplies, before + 3);
    assert_reply(&h, before, sum_id, 0);
    assert_reply(&h, before + 1, free_id, TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
    const char *msg = message_of(&h.replies[before + 1]);
    assert_true(strncmp(msg, "the request decodes to ", 23) == 0);
    assert_true(atoll(msg + 23) >= N * 8);
    assert_non_null(strstr(msg, "bytes: session memory quota exceeded: 30000 bytes"));
    assert_reply(&h, before + 2, ping_id, 0);
    h.store.ex = &td_executor_inline;
    assert_memory_equal(get(&h, 1, 0, 0)->data, A64, sizeof A64); /* not freed */
    assert_int_equal(h.peer->queued_bytes, 0);
    free(hs);
    harness_close(&h);
}

static uint64_t send_ping_free_first(struct harness *h, uint64_t *handles, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping m = TENSORD__PING__INIT;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &m;
    req.free_first = handles;
    req.n_free_first = n;
    return send_req(h, &req, NULL, 0);
}

/* free_first lists at most TD_RPC_MAX_FREE_FIRST handles: one more is refused before anything
** runs (its handles stay); at the cap it runs, on the executor (4096 x 64 of work). */
static void test_free_first_cap(void **state)
{
    (void)state;
    struct td_executor later = {.submit = defer_submit};
    struct harness h;
    harness_init(&h, NULL);
    hello(&h, NULL, 0);
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    assert_int_equal(TD_RPC_MAX_FREE_FIRST, 4096);
    uint64_t *hs = malloc((TD_RPC_MAX_FREE_FIRST + 1) * sizeof *hs);
    for (size_t i = 0; i <= TD_RPC_MAX_FREE_FIRST; i++) {
        hs[i] = 1;
    }
    uint64_t id = send_ping_free_first(&h, hs, TD_RPC_MAX_FREE_FIRST + 1);
    struct captured *c = last(&h, id);
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_string_equal(message_of(c), "free_first lists 4097 handles; at most 4096 are allowed "
                                       "per request (send a Free for more)");
    assert_memory_equal(get(&h, 1, 0, 0)->data, A64, sizeof A64);
    h.store.ex = &later;
    ndeferred = 0;
    id = send_ping_free_first(&h, hs, TD_RPC_MAX_FREE_FIRST);
    assert_null(reply_to(&h, id));
    assert_int_equal(ndeferred, 1);
    finish_deferred_at(0);
    assert_int_equal(status_of(reply_to(&h, id)), 0);
    h.store.ex = &td_executor_inline;
    assert_int_equal(status_of(get(&h, 1, 0, 0)), TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
    /* a few handles stay on the loop */
    assert_int_equal(create(&h, 1, TENSORD__DTYPE__INT64, SHAPE3, 1, A64, sizeof A64), 0);
    h.store.ex = &later;
    id = send_ping_free_first(&h, hs, 3);
    assert_int_equal(status_of(last(&h, id)), 0);
    assert_int_equal(ndeferred, 0);
    h.store.ex = &td_executor_inline;
    free(hs);
    harness_close(&h);
}

/* --max-op-elements reaches inside a Backward (the request's td_cancel carries it as max_work):
** y = x.expand(2^30, 2^30) with x requiring grad, backward with an expanded gradient of the same
** shape, would sum 2^60 elements back to x's shape. It is refused at once, naming the limit. */
static void test_max_op_elements_inside_backward(void **state)
{
    (void)state;
    struct harness h;
    harness_init(&h, NULL);
    h.srv.max_op_elements = 1 << 20;
    hello(&h, NULL, 0);
    const int64_t one[] = {1};
    const float v = 1;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create cm = TENSORD__CREATE__INIT;
    cm.out = 1;
    cm.dtype = TENSORD__DTYPE__FLOAT32;
    cm.shape = (int64_t *)one;
    cm.n_shape = 1;
    cm.requires_grad = true;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &cm;
    assert_int_equal(status_of(last(&h, send_req(&h, &req, &v, sizeof v))), 0);
    assert_int_equal(create(&h, 3, TENSORD__DTYPE__FLOAT32, one, 1, &v, sizeof v), 0);
    const int64_t big[] = {(int64_t)1 << 30, (int64_t)1 << 30};
    assert_int_equal(expand(&h, 2, 1, big, 2), 0);
    assert_int_equal(expand(&h, 4, 3, big, 2), 0);
    Tensord__Request bw = TENSORD__REQUEST__INIT;
    Tensord__Backward bm = TENSORD__BACKWARD__INIT;
    bm.handle = 2;
    bm.gradient = 4;
    bw.body_case = TENSORD__REQUEST__BODY_BACKWARD;
    bw.backward = &bm;
    struct captured *c = last(&h, send_req(&h, &bw, NULL, 0));
    assert_int_equal(status_of(c), TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
    assert_non_null(strstr(message_of(c), "above max_op_elements 1048576"));
    harness_close(&h);
}

/* The frame header both ways: the wire's bytes, big-endian u32 then u64, written out by hand. */
static void test_frame_header_both_ways(void **state)
{
    (void)state;
    const uint8_t want[12] = {0x01, 0x02, 0x03, 0x04, 0xf0, 0xe0,
                              0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80};
    uint8_t got[12];
    td_frame_header_put(got, 0x01020304u, 0xf0e0d0c0b0a09080ull);
    assert_memory_equal(got, want, 12);
    uint32_t m = 0;
    uint64_t d = 0;
    td_frame_header_get(want, &m, &d);
    assert_true(m == 0x01020304u && d == 0xf0e0d0c0b0a09080ull);
    const uint8_t ones[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    td_frame_header_get(ones, &m, &d);
    assert_true(m == UINT32_MAX && d == UINT64_MAX);
}

int main(void)
{
    td_log_min_level = TD_LOG_WARN; /* the sweeps open thousands of sessions */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_opens_session),
        cmocka_unit_test(test_request_before_hello),
        cmocka_unit_test(test_version_mismatch),
        cmocka_unit_test(test_auth_token),
        cmocka_unit_test(test_auth_empty_expected_token_refuses_all),
        cmocka_unit_test(test_auth_token_with_nul_is_not_cut_short),
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
        cmocka_unit_test(test_free_first_runs_before_the_body),
        cmocka_unit_test(test_heavy_gets_and_writes),
        cmocka_unit_test(test_max_op_elements_creation),
        cmocka_unit_test(test_max_op_elements_sum_of_expanded_view),
        cmocka_unit_test(test_heavy_routing_by_cost),
        cmocka_unit_test(test_cancel_on_peer_close),
        cmocka_unit_test(test_close_session_cancels_earlier_work),
        cmocka_unit_test(test_store_cancel_all),
        cmocka_unit_test(test_request_deadline),
        cmocka_unit_test(test_hold_stops_the_queue),
        cmocka_unit_test(test_unsent_bytes_hold_the_session),
        cmocka_unit_test(test_format_text_charged_until_written),
        cmocka_unit_test(test_op_bytes_over_quota),
        cmocka_unit_test(test_data_section_charged),
        cmocka_unit_test(test_data_section_later_then_error_in_order),
        cmocka_unit_test(test_data_section_retried_inside_the_reply),
        cmocka_unit_test(test_allocation_failure_sweep),
        cmocka_unit_test(test_turn_budget_defers_pipelined_requests),
        cmocka_unit_test(test_handle_entries_charged),
        cmocka_unit_test(test_hello_after_close_session_is_refused),
        cmocka_unit_test(test_token_names_this_node),
        cmocka_unit_test(test_resume_routes_by_token_node),
        cmocka_unit_test(test_full_node_names_peer_with_room),
        cmocka_unit_test(test_draining_refuses_new_sessions),
        cmocka_unit_test(test_node_at_its_memory_cap_is_full),
        cmocka_unit_test(test_node_info_reports_node_and_peers),
        cmocka_unit_test(test_node_info_needs_the_auth_token),
        cmocka_unit_test(test_peer_answers_are_checked),
        cmocka_unit_test(test_decoded_request_charged_and_released),
        cmocka_unit_test(test_decoded_request_over_quota_in_order),
        cmocka_unit_test(test_free_first_cap),
        cmocka_unit_test(test_max_op_elements_inside_backward),
        cmocka_unit_test(test_names_like_a_dict),
        cmocka_unit_test(test_names_refused),
        cmocka_unit_test(test_name_with_nul_is_not_cut_short),
        cmocka_unit_test(test_names_charged_and_limited),
        cmocka_unit_test(test_name_over_quota),
        cmocka_unit_test(test_frame_header_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
