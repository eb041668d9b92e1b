/* tests/client/test_wire.c — libtensord's direct encoder and decoder (client/c/wire.c) held to
** protobuf-c, the implementation they stand beside.
**
** Encoding: random RunOp, Get, Free and Write requests (values of every varint length, zero
** fields, scalars of each kind, free_first) must pack to exactly tensord__request__pack's bytes.
** Decoding: random Responses, including shapes the decoder must hand over (strides, redirects,
** other results, negative dims, long strings, odd text), are packed by protobuf-c; whatever the
** decoder accepts, protobuf-c must unpack to the same values in every field the decoder returns,
** and the common replies must be accepted (else the fast path would be dead code). The same holds
** for hostile bytes: every truncation, random byte flips, splices of two messages and garbage,
** each in a buffer of exactly its size so a read past the end is a fault under ASan/valgrind.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "wire.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static unsigned below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* A value of a random varint length: zero often (proto3 leaves it out), 1..64 bits otherwise. */
static uint64_t rvalue(void)
{
    switch (below(4)) {
    case 0: return 0;
    case 1: return rnd() % 200;
    default: {
        unsigned bits = 1 + below(64);
        return bits == 64 ? rnd() : rnd() & ((UINT64_C(1) << bits) - 1);
    }
    }
}

/* ---- encoding ---- */

enum { MAXN = 70 };

/* Builds the same random request as protobuf-c's struct (into the given storage) and as wire.h's. */
struct both {
    Tensord__Request req;
    Tensord__RunOp run_op;
    Tensord__Get get;
    Tensord__Free free_;
    Tensord__Write write;
    Tensord__Create create;
    Tensord__Backward backward;
    Tensord__Grad grad;
    Tensord__SetGrad set_grad;
    Tensord__OpArgs args;
    uint8_t args_bytes[256];
    int64_t shape[MAXN];
    uint64_t vals[8];
    Tensord__Operand ops[MAXN];
    Tensord__Operand *ptrs[MAXN];
    Tensord__Scalar sc[MAXN];
    uint64_t handles[MAXN], free_first[MAXN];
    struct tdw_operand in[MAXN];
    struct tdw_request w;
};

static void random_request(struct both *b)
{
    tensord__request__init(&b->req);
    memset(&b->w, 0, sizeof b->w);
    b->req.id = b->w.id = rvalue();
    if (below(4) == 0) {
        size_t n = below(MAXN);
        for (size_t i = 0; i < n; i++) {
            b->free_first[i] = rvalue();
        }
        b->req.n_free_first = b->w.n_free_first = n;
        b->req.free_first = b->free_first;
        b->w.free_first = b->free_first;
    }
    switch (below(7)) {
    case 4: {
        tensord__create__init(&b->create);
        b->w.body = TDW_CREATE;
        b->create.out = b->w.u.create.out = rvalue();
        b->create.dtype = b->w.u.create.dtype = (int32_t)below(7);
        b->create.requires_grad = b->w.u.create.requires_grad = below(2);
        size_t n = below(4) == 0 ? below(MAXN) : below(5);
        for (size_t i = 0; i < n; i++) {
            b->shape[i] = below(5) == 0 ? -(int64_t)rvalue() : (int64_t)rvalue();
        }
        b->create.shape = b->shape;
        b->create.n_shape = b->w.u.create.n_shape = n;
        b->w.u.create.shape = b->shape;
        b->req.body_case = TENSORD__REQUEST__BODY_CREATE;
        b->req.create = &b->create;
        break;
    }
    case 5: { /* varints bodies: Backward (3 fields), Grad (2), SetGrad (4) */
        b->w.body = TDW_VARINTS;
        for (int i = 0; i < 8; i++) {
            b->vals[i] = rvalue();
        }
        unsigned which = below(3);
        if (which == 0) {
            tensord__backward__init(&b->backward);
            b->vals[2] = b->vals[2] & 1; /* retain_graph: a bool */
            b->backward.handle = b->vals[0];
            b->backward.gradient = b->vals[1];
            b->backward.retain_graph = b->vals[2] != 0;
            b->w.u.varints.field = 15;
            b->w.u.varints.n = 3;
            b->req.body_case = TENSORD__REQUEST__BODY_BACKWARD;
            b->req.backward = &b->backward;
        } else if (which == 1) {
            tensord__grad__init(&b->grad);
            b->grad.handle = b->vals[0];
            b->grad.out = b->vals[1];
            b->w.u.varints.field = 16;
            b->w.u.varints.n = 2;
            b->req.body_case = TENSORD__REQUEST__BODY_GRAD;
            b->req.grad = &b->grad;
        } else {
            tensord__set_grad__init(&b->set_grad);
            for (int i = 1; i < 4; i++) {
                b->vals[i] &= 1;
            }
            b->set_grad.handle = b->vals[0];
            b->set_grad.requires_grad = b->vals[1] != 0;
            b->set_grad.clear_grad = b->vals[2] != 0;
            b->set_grad.retain_grad = b->vals[3] != 0;
            b->w.u.varints.field = 17;
            b->w.u.varints.n = 4;
            b->req.body_case = TENSORD__REQUEST__BODY_SET_GRAD;
            b->req.set_grad = &b->set_grad;
        }
        b->w.u.varints.v = b->vals;
        break;
    }
    case 0:
    case 6: {
        tensord__run_op__init(&b->run_op);
        b->w.body = TDW_RUN_OP;
        b->run_op.out = b->w.u.run_op.out = rvalue();
        b->run_op.op = b->w.u.run_op.op = (int32_t)(below(3) == 0 ? 0 : rnd() % 20000);
        b->run_op.inplace = b->w.u.run_op.inplace = below(2);
        size_t n = below(4) == 0 ? below(MAXN) : below(4);
        for (size_t i = 0; i < n; i++) {
            Tensord__Operand *o = &b->ops[i];
            struct tdw_operand *t = &b->in[i];
            tensord__operand__init(o);
            b->ptrs[i] = o;
            unsigned kind = below(4);
            if (kind == 0) {
                o->value_case = TENSORD__OPERAND__VALUE_HANDLE;
                o->handle = t->v.handle = rvalue();
                t->kind = TDW_HANDLE;
                continue;
            }
            Tensord__Scalar *s = &b->sc[i];
            tensord__scalar__init(s);
            o->value_case = TENSORD__OPERAND__VALUE_SCALAR;
            o->scalar = s;
            if (kind == 1) {
                uint64_t bits = rnd();
                double f = below(3) == 0 ? (double)(int64_t)rvalue() * 0.25 : 0.0;
                if (below(4) == 0) {
                    memcpy(&f, &bits, 8); /* any bit pattern: NaNs, -0.0, infinities */
                }
                s->value_case = TENSORD__SCALAR__VALUE_F;
                s->f = t->v.f = f;
                t->kind = TDW_FLOAT;
            } else if (kind == 2) {
                int64_t v = (int64_t)rvalue();
                s->value_case = TENSORD__SCALAR__VALUE_I;
                s->i = t->v.i = below(2) ? v : -v;
                t->kind = TDW_INT;
            } else {
                s->value_case = TENSORD__SCALAR__VALUE_B;
                s->b = t->v.b = below(2);
                t->kind = TDW_BOOL;
            }
        }
        b->run_op.inputs = b->ptrs;
        b->run_op.n_inputs = b->w.u.run_op.n_inputs = n;
        b->w.u.run_op.inputs = b->in;
        if (below(3) == 0) { /* OpArgs, encoded by protobuf-c and handed over as bytes */
            tensord__op_args__init(&b->args);
            b->args.dim = (int64_t)rvalue();
            b->args.keepdim = below(2);
            b->run_op.args = &b->args;
            size_t an = tensord__op_args__get_packed_size(&b->args);
            assert_true(an <= sizeof b->args_bytes);
            tensord__op_args__pack(&b->args, b->args_bytes);
            b->w.u.run_op.args = b->args_bytes;
            b->w.u.run_op.args_len = an;
        }
        b->req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
        b->req.run_op = &b->run_op;
        break;
    }
    case 1:
        tensord__get__init(&b->get);
        b->w.body = TDW_GET;
        b->get.handle = b->w.u.get.handle = rvalue();
        b->get.meta_only = b->w.u.get.meta_only = below(2);
        b->get.offset = b->w.u.get.offset = rvalue();
        b->get.length = b->w.u.get.length = rvalue();
        b->req.body_case = TENSORD__REQUEST__BODY_GET;
        b->req.get = &b->get;
        break;
    case 2: {
        tensord__free__init(&b->free_);
        b->w.body = TDW_FREE;
        size_t n = below(5) == 0 ? 0 : below(MAXN);
        for (size_t i = 0; i < n; i++) {
            b->handles[i] = rvalue();
        }
        b->free_.handles = b->handles;
        b->free_.n_handles = b->w.u.free.n_handles = n;
        b->w.u.free.handles = b->handles;
        b->req.body_case = TENSORD__REQUEST__BODY_FREE;
        b->req.free = &b->free_;
        break;
    }
    default:
        tensord__write__init(&b->write);
        b->w.body = TDW_WRITE;
        b->write.handle = b->w.u.write.handle = rvalue();
        b->write.offset = b->w.u.write.offset = rvalue();
        b->req.body_case = TENSORD__REQUEST__BODY_WRITE;
        b->req.write = &b->write;
        break;
    }
}

static void test_encode_matches_protobuf_c(void **state)
{
    (void)state;
    static struct both b;
    static uint8_t want[8192], got[8192 + 16];
    unsigned kinds[32] = {0};
    rng_state = 1;
    for (int iter = 0; iter < 40000; iter++) {
        random_request(&b);
        size_t n = tensord__request__get_packed_size(&b.req);
        assert_true(n <= sizeof want);
        assert_int_equal(tensord__request__pack(&b.req, want), n);
        size_t m = tdw_request_size(&b.w);
        if (m != n) {
            fail_msg("iteration %d (body %d): size %zu, protobuf-c %zu", iter, b.w.body, m, n);
        }
        memset(got, 0xa5, sizeof got);
        uint8_t *end = tdw_request_pack(&b.w, m, got);
        assert_ptr_equal(end, got + m);
        if (memcmp(got, want, n) != 0) {
            fail_msg("iteration %d (body %d): bytes differ from protobuf-c's", iter, b.w.body);
        }
        for (size_t i = n; i < n + 16; i++) {
            assert_int_equal(got[i], 0xa5); /* nothing written past the size */
        }
        kinds[b.w.body]++;
    }
    /* every body was drawn many times */
    assert_true(kinds[TDW_RUN_OP] > 5000 && kinds[TDW_GET] > 5000 && kinds[TDW_FREE] > 5000 &&
                kinds[TDW_WRITE] > 5000 && kinds[TDW_CREATE] > 5000 && kinds[TDW_VARINTS] > 5000);
}

static void test_encode_refuses_what_it_does_not_write(void **state)
{
    (void)state;
    struct tdw_request r = {.id = 1, .body = TDW_RUN_OP};
    r.u.run_op.op = -1; /* a negative enum is ten bytes: protobuf-c's business */
    assert_int_equal(tdw_request_size(&r), 0);
    r.body = (enum tdw_body)11; /* CloseSession: not one of these */
    assert_int_equal(tdw_request_size(&r), 0);
    struct tdw_request c = {.id = 1, .body = TDW_CREATE};
    c.u.create.dtype = -1;
    assert_int_equal(tdw_request_size(&c), 0);
    uint64_t v[9] = {0};
    struct tdw_request s = {.id = 1, .body = TDW_VARINTS};
    s.u.varints.v = v;
    s.u.varints.field = 22; /* free_first's number: fields would be out of order */
    assert_int_equal(tdw_request_size(&s), 0);
    s.u.varints.field = 1;
    assert_int_equal(tdw_request_size(&s), 0);
    s.u.varints.field = 15;
    s.u.varints.n = 9;
    assert_int_equal(tdw_request_size(&s), 0);
    s.u.varints.n = 8;
    assert_int_equal(tdw_request_size(&s), 4); /* 08 01 7a 00 */
    /* An empty body is still written: Request{id 1, get {}} is 08 01 4a 00. */
    struct tdw_request g = {.id = 1, .body = TDW_GET};
    uint8_t out[8];
    assert_int_equal(tdw_request_size(&g), 4);
    tdw_request_pack(&g, 4, out);
    assert_memory_equal(out, "\x08\x01\x4a\x00", 4);
}

/* ---- decoding ---- */

/* The decoder and protobuf-c on the same bytes. Returns 1 when the decoder accepted them (then
** protobuf-c must have too, with the same values), 0 when it handed them over. */
static int check_decode(const uint8_t *bytes, size_t n)
{
    uint8_t *copy = malloc(n > 0 ? n : 1); /* exactly n: an over-read faults under ASan */
    assert_non_null(copy);
    memcpy(copy, bytes, n);
    struct tdw_reply r;
    int rc = tdw_reply_decode(n > 0 ? copy : NULL, n, &r);
    Tensord__Response *pb = tensord__response__unpack(NULL, n, copy);
    if (rc != 0) {
        assert_int_equal(rc, TDW_HAND_OVER);
        tensord__response__free_unpacked(pb, NULL);
        free(copy);
        return 0;
    }
    if (pb == NULL) {
        fail_msg("decoder accepted %zu bytes that protobuf-c refuses", n);
    }
    assert_int_equal(r.id, pb->id);
    const char *msg = pb->status != NULL && pb->status->message != NULL ? pb->status->message : "";
    assert_int_equal(r.code, pb->status != NULL ? (int32_t)pb->status->code : 0);
    assert_int_equal(r.message_len, strlen(msg));
    assert_memory_equal(r.message, msg, r.message_len);
    if (pb->status != NULL) {
        assert_true(pb->status->node == NULL || pb->status->node[0] == '\0');
        assert_true(pb->status->address == NULL || pb->status->address[0] == '\0');
    }
    assert_int_equal(r.has_tensor, pb->result_case == TENSORD__RESPONSE__RESULT_TENSOR);
    assert_int_equal(r.backward_empty, pb->result_case == TENSORD__RESPONSE__RESULT_BACKWARD);
    assert_true(r.has_tensor || r.backward_empty ||
                pb->result_case == TENSORD__RESPONSE__RESULT__NOT_SET);
    if (r.backward_empty) { /* every field at its default, none unknown */
        const Tensord__BackwardResult *bk = pb->backward;
        assert_int_equal(tensord__backward_result__get_packed_size(bk), 0);
        assert_int_equal(bk->base.n_unknown_fields, 0);
    }
    assert_int_equal(pb->base.n_unknown_fields, 0);
    if (r.has_tensor) {
        const Tensord__TensorInfo *t = pb->tensor;
        assert_int_equal(r.tensor.handle, t->handle);
        assert_int_equal(r.tensor.dtype, (int32_t)t->dtype);
        assert_int_equal((size_t)r.tensor.ndim, t->n_shape);
        for (size_t i = 0; i < t->n_shape; i++) {
            assert_int_equal(r.tensor.shape[i], t->shape[i]);
        }
        assert_int_equal(r.tensor.nbytes, t->nbytes);
        assert_int_equal(r.tensor.offset, t->offset);
        assert_int_equal(r.tensor.length, t->length);
        assert_int_equal(r.tensor.requires_grad, t->requires_grad != 0);
        assert_int_equal(r.tensor.is_leaf, t->is_leaf != 0);
        const char *gf = t->grad_fn != NULL ? t->grad_fn : "";
        assert_int_equal(r.tensor.grad_fn_len, strlen(gf));
        assert_memory_equal(r.tensor.grad_fn, gf, r.tensor.grad_fn_len);
        assert_int_equal(t->n_strides, 0);
        assert_int_equal(t->storage_offset, 0);
        assert_int_equal(t->base.n_unknown_fields, 0);
    }
    tensord__response__free_unpacked(pb, NULL);
    free(copy);
    return 1;
}

static const char *const TEXTS[] = {"",
                                    "MulBackward0",
                                    "shape '[2, 3]' is invalid\tfor input",
                                    "line\nbreak",
                                    "caf\xc3\xa9",
                                    "nul\x01",
                                    "x"};

/* A random Response; *common says whether it is one the decoder must accept. */
struct resp_store {
    Tensord__Response r;
    Tensord__Status st;
    Tensord__TensorInfo ti;
    Tensord__StatsResult stats;
    int64_t shape[12], strides[12];
};

static void random_response(struct resp_store *s, bool *common)
{
    *common = true;
    tensord__response__init(&s->r);
    s->r.id = rvalue();
    if (below(3) != 0) {
        tensord__status__init(&s->st);
        s->st.code = below(4) == 0 ? (Tensord__StatusCode)(rnd() % 40) : 0;
        unsigned t = below(7);
        s->st.message = (char *)TEXTS[t];
        *common = *common && t < 4;
        if (below(20) == 0) {
            s->st.node = "tensord-1";
            s->st.address = below(2) ? "10.0.0.2:7070" : "";
            *common = false;
        }
        if (below(30) == 0) {
            s->st.code = (Tensord__StatusCode)(20000 + below(100)); /* three varint bytes */
            *common = false;
        }
        s->r.status = &s->st;
    }
    unsigned result = below(10);
    if (result < 6) {
        tensord__tensor_info__init(&s->ti);
        s->ti.handle = rvalue();
        s->ti.dtype = (Tensord__DType)below(6);
        s->ti.n_shape = below(10) == 0 ? 9 + below(3) : below(5);
        *common = *common && s->ti.n_shape <= TDW_MAX_DIMS;
        for (size_t i = 0; i < s->ti.n_shape; i++) {
            s->shape[i] = (int64_t)(rvalue() >> 1);
            if (below(30) == 0) {
                s->shape[i] = -1 - (int64_t)below(5);
                *common = false;
            }
        }
        s->ti.shape = s->shape;
        s->ti.nbytes = rvalue();
        s->ti.offset = rvalue();
        s->ti.length = rvalue();
        s->ti.requires_grad = below(2);
        s->ti.is_leaf = below(2);
        unsigned t = below(7);
        s->ti.grad_fn = (char *)TEXTS[t];
        *common = *common && t < 4;
        if (below(10) == 0) {
            s->ti.n_strides = 1 + below(3);
            for (size_t i = 0; i < s->ti.n_strides; i++) {
                s->strides[i] = (int64_t)below(100);
            }
            s->ti.strides = s->strides;
            s->ti.storage_offset = below(3);
            *common = false;
        }
        s->r.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
        s->r.tensor = &s->ti;
    } else if (result == 6) {
        tensord__stats_result__init(&s->stats);
        s->stats.sessions = rvalue();
        s->r.result_case = TENSORD__RESPONSE__RESULT_STATS;
        s->r.stats = &s->stats;
        *common = false;
    } else if (result == 7) {
        s->r.result_case = TENSORD__RESPONSE__RESULT_TEXT;
        s->r.text = "tensor([1.])";
        *common = false;
    }
}

static size_t pack_random_response(uint8_t *buf, size_t cap, bool *common)
{
    static struct resp_store s;
    random_response(&s, common);
    size_t n = tensord__response__get_packed_size(&s.r);
    assert_true(n <= cap);
    return tensord__response__pack(&s.r, buf);
}

static void test_decode_matches_protobuf_c(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    int accepted = 0, commons = 0;
    rng_state = 2;
    for (int iter = 0; iter < 40000; iter++) {
        bool common;
        size_t n = pack_random_response(buf, sizeof buf, &common);
        int ok = check_decode(buf, n);
        if (common && !ok) {
            for (size_t i = 0; i < n; i++) {
                fprintf(stderr, "%02x ", buf[i]);
            }
            fail_msg("iteration %d: a common reply of %zu bytes was handed over", iter, n);
        }
        accepted += ok;
        commons += common;
    }
    assert_true(commons > 10000);
    assert_true(accepted >= commons);
}

/* The reply the daemon sends most, written out by hand: Response{id 7, status{}, tensor{handle 3,
** dtype FLOAT32, shape [2, 2], nbytes 16, grad_fn "MulBackward0", requires_grad, is_leaf false}}. */
static void test_decode_known_bytes(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x08, 0x07, 0x12, 0x00, 0x22, 0x1a, 0x08, 0x03, 0x10, 0x01, 0x1a,
                                0x02, 0x02, 0x02, 0x20, 0x10, 0x38, 0x01, 0x42, 0x0c, 'M',  'u',
                                'l',  'B',  'a',  'c',  'k',  'w',  'a',  'r',  'd',  '0'};
    struct tdw_reply r;
    assert_int_equal(tdw_reply_decode(b, sizeof b, &r), 0);
    assert_int_equal(r.id, 7);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.message_len, 0);
    assert_true(r.has_tensor);
    assert_int_equal(r.tensor.handle, 3);
    assert_int_equal(r.tensor.dtype, 1);
    assert_int_equal(r.tensor.ndim, 2);
    assert_int_equal(r.tensor.shape[0], 2);
    assert_int_equal(r.tensor.shape[1], 2);
    assert_int_equal(r.tensor.nbytes, 16);
    assert_true(r.tensor.requires_grad);
    assert_false(r.tensor.is_leaf);
    assert_int_equal(r.tensor.grad_fn_len, 12);
    assert_memory_equal(r.tensor.grad_fn, "MulBackward0", 12);
    assert_int_equal(check_decode(b, sizeof b), 1);
    /* Empty: a Response with every field at its default. */
    assert_int_equal(tdw_reply_decode(NULL, 0, &r), 0);
    assert_int_equal(r.id, 0);
    assert_false(r.has_tensor);
    /* The same field twice (protobuf-c: the last wins, or merges): handed over. */
    static const uint8_t twice[] = {0x08, 0x07, 0x08, 0x09};
    assert_int_equal(tdw_reply_decode(twice, sizeof twice, &r), TDW_HAND_OVER);
    /* Unpacked shape, a non-minimal key, a bool of 2, a NUL in a message: handed over. */
    static const uint8_t unpacked[] = {0x22, 0x04, 0x18, 0x02, 0x18, 0x02};
    static const uint8_t longkey[] = {0x88, 0x00, 0x07};
    static const uint8_t bool2[] = {0x22, 0x02, 0x38, 0x02};
    static const uint8_t nul[] = {0x12, 0x04, 0x12, 0x02, 'a', 0x00};
    assert_int_equal(tdw_reply_decode(unpacked, sizeof unpacked, &r), TDW_HAND_OVER);
    assert_int_equal(tdw_reply_decode(longkey, sizeof longkey, &r), TDW_HAND_OVER);
    assert_int_equal(tdw_reply_decode(bool2, sizeof bool2, &r), TDW_HAND_OVER);
    assert_int_equal(tdw_reply_decode(nul, sizeof nul, &r), TDW_HAND_OVER);
    /* A length running past the end, by one byte. */
    static const uint8_t past[] = {0x22, 0x03, 0x08, 0x01};
    assert_int_equal(tdw_reply_decode(past, sizeof past, &r), TDW_HAND_OVER);
    /* Response{id 5, backward {}}: a Backward that ran to the end */
    static const uint8_t bk[] = {0x08, 0x05, 0x3a, 0x00};
    assert_int_equal(check_decode(bk, sizeof bk), 1);
    assert_int_equal(tdw_reply_decode(bk, sizeof bk, &r), 0);
    assert_true(r.backward_empty && !r.has_tensor && r.id == 5);
    /* backward {suspended: true}, and a tensor and a backward both: handed over */
    static const uint8_t bk1[] = {0x08, 0x05, 0x3a, 0x02, 0x08, 0x01};
    static const uint8_t both[] = {0x3a, 0x00, 0x22, 0x00};
    static const uint8_t both2[] = {0x22, 0x00, 0x3a, 0x00};
    assert_int_equal(tdw_reply_decode(bk1, sizeof bk1, &r), TDW_HAND_OVER);
    assert_int_equal(tdw_reply_decode(both, sizeof both, &r), TDW_HAND_OVER);
    assert_int_equal(tdw_reply_decode(both2, sizeof both2, &r), TDW_HAND_OVER);
}

static void test_decode_hostile(void **state)
{
    (void)state;
    static uint8_t a[4096], b[4096], m[8192];
    rng_state = 3;
    int accepted = 0, total = 0;
    for (int iter = 0; iter < 3000; iter++) {
        bool common;
        size_t na = pack_random_response(a, sizeof a, &common);
        size_t nb = pack_random_response(b, sizeof b, &common);
        /* every truncation */
        for (size_t cut = 0; cut < na; cut++) {
            accepted += check_decode(a, cut);
            total++;
        }
        /* flips: 1-3 random bytes set to random values */
        for (int k = 0; k < 8 && na > 0; k++) {
            memcpy(m, a, na);
            for (unsigned f = 1 + below(3); f > 0; f--) {
                m[below((unsigned)na)] = (uint8_t)rnd();
            }
            accepted += check_decode(m, na);
            total++;
        }
        /* splices: a prefix of one message, then a suffix of the other */
        for (int k = 0; k < 4; k++) {
            size_t pa = na ? below((unsigned)na + 1) : 0, sb = nb ? below((unsigned)nb + 1) : 0;
            memcpy(m, a, pa);
            memcpy(m + pa, b + sb, nb - sb);
            accepted += check_decode(m, pa + nb - sb);
            total++;
        }
        /* garbage of small length, biased to the key bytes the decoder knows */
        size_t gl = below(24);
        static const uint8_t keys[] = {0x08, 0x12, 0x22, 0x10, 0x1a, 0x20, 0x38, 0x42, 0x48, 0x00};
        for (size_t i = 0; i < gl; i++) {
            m[i] = below(2) ? keys[below(sizeof keys)] : (uint8_t)rnd();
        }
        accepted += check_decode(m, gl);
        total++;
    }
    print_message("  %d hostile inputs, %d accepted (and matched protobuf-c)\n", total, accepted);
    /* Some mutants are valid replies still (a truncation at a field boundary): both ways taken. */
    assert_true(accepted > 1000 && accepted < total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_matches_protobuf_c),
        cmocka_unit_test(test_encode_refuses_what_it_does_not_write),
        cmocka_unit_test(test_decode_known_bytes),
        cmocka_unit_test(test_decode_matches_protobuf_c),
        cmocka_unit_test(test_decode_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
