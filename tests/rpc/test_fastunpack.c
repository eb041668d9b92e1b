/* tests/rpc/test_fastunpack.c — the direct request decoder (server/rpc/fastunpack.c) against
** protobuf-c, the reference: whenever td_fastunpack_request decodes a message, protobuf-c must
** accept the same bytes and decode them to the same values (compared by packing both decodings
** with protobuf-c), and it must actually decode the common shapes it is for. Inputs: many random
** valid Requests of every kind it takes (and some it leaves), their fields shuffled, two messages
** spliced (protobuf's merge: duplicate fields), and hostile variants — truncated, bytes flipped,
** inserted or dropped, unknown fields, wrong wire types, non-minimal and over-long varints,
** unpacked and empty packed arrays. Each input sits in a heap block of exactly its size, so an
** out-of-bounds read fails under `make check-asan`; every block the decoder allocates is counted
** and must be freed by td_fastunpack_free. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "rpc/fastunpack.h"

static uint64_t rng_state = 0x2545f4914f6cdd1du;

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

/* ---- an allocator that counts live blocks ---- */

static long live_blocks;

static void *count_alloc(void *ud, size_t n)
{
    (void)ud;
    live_blocks++;
    return malloc(n);
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    live_blocks--;
    free(p);
}

static ProtobufCAllocator counting = {count_alloc, count_free, NULL};

/* ---- the differential check ---- */

static long fast_taken, checked;

/* Field by field, for the kinds the fast path takes: packing both (below) normalises some values
** (a bool is packed as 0 or 1 whatever int it holds), so the structs are compared too. */
static void same_struct(const Tensord__Request *f, const Tensord__Request *p)
{
    assert_true(f->id == p->id);
    assert_int_equal(f->n_free_first, p->n_free_first);
    for (size_t i = 0; i < f->n_free_first; i++) {
        assert_true(f->free_first[i] == p->free_first[i]);
    }
    assert_int_equal(f->body_case, p->body_case);
    switch (f->body_case) {
    case TENSORD__REQUEST__BODY_RUN_OP: {
        const Tensord__RunOp *a = f->run_op, *b = p->run_op;
        assert_true(a->out == b->out && a->out2 == b->out2 && a->out3 == b->out3);
        assert_int_equal(a->op, b->op);
        assert_int_equal(a->inplace, b->inplace);
        assert_null(a->args);
        assert_null(b->args);
        assert_int_equal(a->n_inputs, b->n_inputs);
        for (size_t i = 0; i < a->n_inputs; i++) {
            const Tensord__Operand *x = a->inputs[i], *y = b->inputs[i];
            assert_int_equal(x->base.n_unknown_fields, 0);
            assert_int_equal(x->value_case, y->value_case);
            if (x->value_case == TENSORD__OPERAND__VALUE_HANDLE) {
                assert_true(x->handle == y->handle);
            } else if (x->value_case == TENSORD__OPERAND__VALUE_SCALAR) {
                assert_int_equal(x->scalar->value_case, y->scalar->value_case);
                assert_true(x->scalar->i == y->scalar->i); /* the union's widest member */
                assert_int_equal(x->scalar->b, y->scalar->b);
            }
        }
        break;
    }
    case TENSORD__REQUEST__BODY_GET:
        assert_true(f->get->handle == p->get->handle && f->get->offset == p->get->offset &&
                    f->get->length == p->get->length);
        assert_int_equal(f->get->meta_only, p->get->meta_only);
        break;
    case TENSORD__REQUEST__BODY_FREE:
        assert_int_equal(f->free->n_handles, p->free->n_handles);
        for (size_t i = 0; i < f->free->n_handles; i++) {
            assert_true(f->free->handles[i] == p->free->handles[i]);
        }
        break;
    case TENSORD__REQUEST__BODY_WRITE:
        assert_true(f->write->handle == p->write->handle && f->write->offset == p->write->offset);
        break;
    default: break;
    }
}

/* Decodes data[0..n) both ways (from an exact-size copy); returns whether the fast path took it. */
static bool check_bytes(const uint8_t *data, size_t n)
{
    uint8_t *copy = malloc(n != 0 ? n : 1);
    assert_non_null(copy);
    if (n != 0) {
        memcpy(copy, data, n);
    }
    Tensord__Request *f = td_fastunpack_request(&counting, n, copy);
    Tensord__Request *p = tensord__request__unpack(NULL, n, copy);
    checked++;
    if (f != NULL) {
        fast_taken++;
        assert_non_null(p); /* never accepts what protobuf-c refuses */
        assert_int_equal(f->base.n_unknown_fields, 0);
        assert_ptr_equal(f->base.descriptor, &tensord__request__descriptor);
        size_t fs = tensord__request__get_packed_size(f);
        size_t ps = tensord__request__get_packed_size(p);
        assert_int_equal(fs, ps);
        uint8_t *a = malloc(fs + 1), *b = malloc(ps + 1);
        assert_non_null(a);
        assert_non_null(b);
        tensord__request__pack(f, a);
        tensord__request__pack(p, b);
        assert_memory_equal(a, b, fs); /* the same values, field for field */
        same_struct(f, p);
        free(a);
        free(b);
        td_fastunpack_free(f, &counting);
    }
    assert_int_equal(live_blocks, 0);
    if (p != NULL) {
        tensord__request__free_unpacked(p, NULL);
    }
    free(copy);
    return f != NULL;
}

/* ---- random valid Requests, packed by protobuf-c ---- */

struct gen {
    Tensord__Request req;
    Tensord__RunOp run_op;
    Tensord__Operand ops[70], *op_ptrs[70];
    Tensord__Scalar scalars[70];
    Tensord__Get get;
    Tensord__Free free;
    Tensord__Write write;
    Tensord__Ping ping;
    Tensord__OpArgs args;
    uint64_t handles[300], free_first[40];
};

/* Fills g->req with a random request; returns whether the fast decoder is meant to take it
** (every value below 2^63, no OpArgs, at most 64 operands, its kind one of its four). */
static bool random_request(struct gen *g)
{
    bool takes = true;
    memset(g, 0, sizeof *g);
    g->req = (Tensord__Request)TENSORD__REQUEST__INIT;
    g->req.id = any_u64();
    takes &= g->req.id < (uint64_t)1 << 63;
    if (next() % 3 == 0) {
        g->req.n_free_first = (size_t)(next() % 40);
        for (size_t i = 0; i < g->req.n_free_first; i++) {
            g->free_first[i] = any_u64();
            takes &= g->free_first[i] < (uint64_t)1 << 63;
        }
        g->req.free_first = g->free_first;
    }
    switch (next() % 6) {
    case 0:
    case 1: {
        Tensord__RunOp *m = &g->run_op;
        *m = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
        m->out = any_u64();
        m->op = (Tensord__Op)(next() % 4 == 0 ? next() % 300 : 3);
        m->n_inputs = next() % 8 == 0 ? (size_t)(next() % 70) : (size_t)(next() % 4);
        for (size_t i = 0; i < m->n_inputs; i++) {
            Tensord__Operand *o = &g->ops[i];
            *o = (Tensord__Operand)TENSORD__OPERAND__INIT;
            switch (next() % 6) {
            case 0:
                g->scalars[i] = (Tensord__Scalar)TENSORD__SCALAR__INIT;
                switch (next() % 4) {
                case 0: {
                    uint64_t bits = next();
                    g->scalars[i].value_case = TENSORD__SCALAR__VALUE_F;
                    memcpy(&g->scalars[i].f, &bits, 8);
                    break;
                }
                case 1:
                    g->scalars[i].value_case = TENSORD__SCALAR__VALUE_I;
                    g->scalars[i].i = (int64_t)any_u64() >> (next() % 2);
                    takes &= g->scalars[i].i >= -((int64_t)1 << 62) && g->scalars[i].i < (int64_t)1
                                                                                             << 62;
                    break;
                case 2:
                    g->scalars[i].value_case = TENSORD__SCALAR__VALUE_B;
                    g->scalars[i].b = (protobuf_c_boolean)(next() % 2);
                    break;
                default: break; /* an empty Scalar */
                }
                o->value_case = TENSORD__OPERAND__VALUE_SCALAR;
                o->scalar = &g->scalars[i];
                break;
            case 1: break; /* an empty Operand */
            default:
                o->value_case = TENSORD__OPERAND__VALUE_HANDLE;
                o->handle = any_u64();
                takes &= o->handle < (uint64_t)1 << 63;
                break;
            }
            g->op_ptrs[i] = o;
        }
        takes &= m->n_inputs <= 64;
        m->inputs = m->n_inputs != 0 ? g->op_ptrs : NULL;
        m->inplace = (protobuf_c_boolean)(next() % 4 == 0);
        m->out2 = next() % 4 == 0 ? any_u64() : 0;
        m->out3 = next() % 8 == 0 ? any_u64() : 0;
        takes &= m->out < (uint64_t)1 << 63 && m->out2 < (uint64_t)1 << 63 &&
                 m->out3 < (uint64_t)1 << 63;
        if (next() % 10 == 0) {
            g->args = (Tensord__OpArgs)TENSORD__OP_ARGS__INIT;
            g->args.keepdim = 1;
            m->args = &g->args;
            takes = false;
        }
        g->req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
        g->req.run_op = m;
        break;
    }
    case 2: {
        Tensord__Get *m = &g->get;
        *m = (Tensord__Get)TENSORD__GET__INIT;
        m->handle = any_u64();
        m->meta_only = (protobuf_c_boolean)(next() % 2);
        m->offset = next() % 2 ? any_u64() : 0;
        m->length = next() % 2 ? any_u64() : 0;
        takes &= m->handle < (uint64_t)1 << 63 && m->offset < (uint64_t)1 << 63 &&
                 m->length < (uint64_t)1 << 63;
        g->req.body_case = TENSORD__REQUEST__BODY_GET;
        g->req.get = m;
        break;
    }
    case 3: {
        Tensord__Free *m = &g->free;
        *m = (Tensord__Free)TENSORD__FREE__INIT;
        m->n_handles = next() % 8 == 0 ? (size_t)(next() % 300) : (size_t)(next() % 20);
        for (size_t i = 0; i < m->n_handles; i++) {
            g->handles[i] = any_u64();
            takes &= g->handles[i] < (uint64_t)1 << 63;
        }
        m->handles = m->n_handles != 0 ? g->handles : NULL;
        g->req.body_case = TENSORD__REQUEST__BODY_FREE;
        g->req.free = m;
        break;
    }
    case 4: {
        Tensord__Write *m = &g->write;
        *m = (Tensord__Write)TENSORD__WRITE__INIT;
        m->handle = any_u64();
        m->offset = any_u64();
        takes &= m->handle < (uint64_t)1 << 63 && m->offset < (uint64_t)1 << 63;
        g->req.body_case = TENSORD__REQUEST__BODY_WRITE;
        g->req.write = m;
        break;
    }
    default:
        if (next() % 2) {
            g->ping = (Tensord__Ping)TENSORD__PING__INIT;
            g->req.body_case = TENSORD__REQUEST__BODY_PING;
            g->req.ping = &g->ping;
            takes = false;
        }
        break; /* else no body: just an id and free_first */
    }
    return takes;
}

static size_t pack_random(uint8_t *out, size_t cap, bool *takes)
{
    static struct gen g;
    *takes = random_request(&g);
    size_t n = tensord__request__get_packed_size(&g.req);
    assert_true(n <= cap);
    tensord__request__pack(&g.req, out);
    return n;
}

/* ---- raw wire helpers for the hostile variants ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* The length of the field starting at p (key and value), or 0 when it does not scan. */
static size_t field_len(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *q = p;
    uint64_t key = 0, v = 0;
    for (int s = 0; q < end; s += 7) {
        key |= (uint64_t)(*q & 0x7f) << (s < 63 ? s : 63);
        if ((*q++ & 0x80) == 0) {
            break;
        }
    }
    switch (key & 7) {
    case 0:
        while (q < end && (*q & 0x80)) {
            q++;
        }
        return q < end ? (size_t)(q + 1 - p) : 0;
    case 1: return end - q >= 8 ? (size_t)(q + 8 - p) : 0;
    case 5: return end - q >= 4 ? (size_t)(q + 4 - p) : 0;
    case 2:
        for (int s = 0; q < end && s < 63; s += 7) {
            v |= (uint64_t)(*q & 0x7f) << s;
            if ((*q++ & 0x80) == 0) {
                return v <= (uint64_t)(end - q) ? (size_t)(q - p) + (size_t)v : 0;
            }
        }
        return 0;
    default: return 0;
    }
}

/* Rewrites buf[0..n) with its top-level fields in a random order; false if it does not scan. */
static bool shuffle_fields(uint8_t *buf, size_t n)
{
    size_t starts[512], lens[512], k = 0;
    for (size_t at = 0; at < n; k++) {
        size_t len = field_len(buf + at, buf + n);
        if (len == 0 || k == 512) {
            return false;
        }
        starts[k] = at;
        lens[k] = len;
        at += len;
    }
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)(next() % i), t = starts[i - 1];
        starts[i - 1] = starts[j];
        starts[j] = t;
        t = lens[i - 1];
        lens[i - 1] = lens[j];
        lens[j] = t;
    }
    uint8_t *tmp = malloc(n);
    assert_non_null(tmp);
    size_t at = 0;
    for (size_t i = 0; i < k; i++) {
        memcpy(tmp + at, buf + starts[i], lens[i]);
        at += lens[i];
    }
    memcpy(buf, tmp, n);
    free(tmp);
    return true;
}

/* One random hostile edit of buf[0..*n) (capacity cap). */
static void mutate(uint8_t *buf, size_t *n, size_t cap)
{
    size_t at = *n != 0 ? (size_t)(next() % *n) : 0;
    switch (next() % 9) {
    case 0: *n = at; break; /* truncated */
    case 1:
        if (*n != 0) {
            buf[at] ^= (uint8_t)(1u << (next() % 8)); /* one bit flipped */
        }
        break;
    case 2:
        if (*n != 0) {
            buf[at] = (uint8_t)next(); /* one byte replaced */
        }
        break;
    case 3:
        if (*n < cap) { /* one byte inserted */
            memmove(buf + at + 1, buf + at, *n - at);
            buf[at] = (uint8_t)next();
            (*n)++;
        }
        break;
    case 4:
        if (*n != 0) { /* one byte dropped */
            memmove(buf + at, buf + at + 1, *n - at - 1);
            (*n)--;
        }
        break;
    case 5: { /* an extra field at the end: known or not, any wire type */
        uint8_t f[24];
        unsigned num = (unsigned)(next() % 26), wt = (unsigned)(next() % 6);
        size_t k = put_varint(f, (uint64_t)num << 3 | wt);
        if (wt == 2) {
            k += put_varint(f + k, next() % 4);
            for (int i = 0; i < 3; i++) {
                f[k++] = (uint8_t)(next() % 3 == 0 ? 0x08 : next());
            }
        } else {
            k += put_varint(f + k, any_u64());
        }
        if (*n + k <= cap) {
            memcpy(buf + *n, f, k);
            *n += k;
        }
        break;
    }
    case 6: { /* a non-minimal or over-long varint spliced in: a continuation byte inserted */
        if (*n + 1 <= cap && *n != 0) {
            memmove(buf + at + 1, buf + at, *n - at);
            buf[at] = 0x80 | (uint8_t)(next() & 0x7f);
            (*n)++;
        }
        break;
    }
    case 7: /* the first field repeated at the end (a duplicate) */
    {
        size_t len = field_len(buf, buf + *n);
        if (len != 0 && *n + len <= cap) {
            memcpy(buf + *n, buf, len);
            *n += len;
        }
        break;
    }
    default: /* a wire type changed */
        if (*n != 0) {
            buf[0] = (uint8_t)((buf[0] & ~7u) | (unsigned)(next() % 6));
        }
        break;
    }
}

/* ---- the tests ---- */

static void test_valid_requests_match_protobuf_c(void **state)
{
    (void)state;
    static uint8_t buf[8192];
    long meant = 0;
    for (int iter = 0; iter < 20000; iter++) {
        bool takes;
        size_t n = pack_random(buf, sizeof buf, &takes);
        bool took = check_bytes(buf, n);
        if (takes) {
            assert_true(took); /* the shapes it is for do take the fast path */
            meant++;
        }
        if (shuffle_fields(buf, n)) {
            took = check_bytes(buf, n); /* field order does not matter to protobuf */
            if (takes) {
                assert_true(took);
            }
        }
    }
    assert_true(meant > 5000);
}

static void test_spliced_requests_match_protobuf_c(void **state)
{
    (void)state;
    static uint8_t buf[16384];
    for (int iter = 0; iter < 20000; iter++) {
        bool takes;
        size_t n = pack_random(buf, 8192, &takes);
        /* A second message appended: protobuf merges them (the last scalar wins, submessages
        ** merge, repeated fields concatenate). Sometimes only a lone field of one. */
        if (next() % 2) {
            n += pack_random(buf + n, 8192, &takes);
        } else {
            uint8_t f[16];
            size_t k = 0;
            switch (next() % 4) {
            case 0:
                k = put_varint(f, 1 << 3 | 0);
                k += put_varint(f + k, any_u64());
                break;
            case 1:
                f[k++] = 0xb2;
                f[k++] = 0x01;
                f[k++] = 1;
                f[k++] = (uint8_t)(next() & 0x7f);
                break; /* free_first, a second packed chunk */
            case 2:
                f[k++] = 0xb0;
                f[k++] = 0x01;
                f[k++] = (uint8_t)(next() & 0x7f);
                break;
            default:
                f[k++] = 0x42;
                f[k++] = 0;
                break; /* an empty run_op */
            }
            memcpy(buf + n, f, k);
            n += k;
        }
        check_bytes(buf, n);
    }
}

static void test_hostile_requests_match_protobuf_c(void **state)
{
    (void)state;
    static uint8_t buf[8192 + 256];
    long before = fast_taken;
    for (int iter = 0; iter < 60000; iter++) {
        bool takes;
        size_t n = pack_random(buf, 8192, &takes);
        int edits = 1 + (int)(next() % 3);
        for (int e = 0; e < edits; e++) {
            mutate(buf, &n, sizeof buf);
        }
        check_bytes(buf, n);
    }
    for (int iter = 0; iter < 20000; iter++) { /* noise */
        size_t n = (size_t)(next() % 64);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)(next() % 4 == 0 ? 0x08 | (next() & 0x7) : next());
        }
        check_bytes(buf, n);
    }
    assert_true(fast_taken > before); /* some variants are still fine, and were compared */
}

/* Hand-assembled edge cases, each with what the fast path must do. */
static void test_edges(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[24];
        size_t n;
        bool fast;
    } cases[] = {
        /* id 7, run_op{out 9, op MUL, inputs [h1, h2]}: the common tiny op */
        {{0x08, 7, 0x42, 12, 0x08, 9, 0x10, 3, 0x1a, 2, 0x08, 1, 0x1a, 2, 0x08, 2}, 16, true},
        {{0}, 0, true},                 /* empty: a Request of defaults */
        {{0x08, 0x87, 0x00}, 3, true},  /* a non-minimal id varint */
        {{0x88, 0x00, 7}, 3, false},    /* a non-minimal key */
        {{0x08, 7, 0x08, 8}, 4, false}, /* id twice: the last wins */
        {{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 11, false},
        {{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 12, false},
        {{0x4a, 2, 0x10, 2}, 4, false},                   /* get.meta_only = 2 */
        {{0x52, 3, 0x0a, 1, 5}, 5, true},                 /* free{handles [5]} packed */
        {{0x52, 2, 0x08, 5}, 4, false},                   /* free, unpacked */
        {{0x52, 2, 0x0a, 0}, 4, false},                   /* free, an empty packed chunk */
        {{0x52, 3, 0x0a, 2, 5}, 5, false},                /* a chunk past its message */
        {{0x42, 3, 0x10, 0x80, 0x01}, 5, true},           /* op 128 */
        {{0x42, 4, 0x10, 0x80, 0x80, 0x01}, 6, false},    /* op in three bytes */
        {{0x42, 2, 0x2a, 0}, 4, false},                   /* run_op.args: protobuf-c's */
        {{0x42, 2, 0x1a, 0}, 4, true},                    /* an empty operand */
        {{0x42, 6, 0x1a, 4, 0x08, 1, 0x08, 2}, 8, false}, /* operand.handle twice */
        {{0x42, 5, 0x1a, 3, 0x12, 1, 0x18}, 7, false},    /* a truncated scalar */
        {{0x12, 0}, 2, false},                            /* hello: protobuf-c's */
        {{0x42, 0, 0x4a, 0}, 4, false},                   /* two bodies */
        {{0x42, 1}, 2, false},                            /* a length past the end */
        {{0x9a, 0x01, 2, 0x08, 3}, 5, true},              /* write{handle 3} */
        {{0xb2, 0x01, 2, 3, 4, 0x08, 1}, 7, true},        /* free_first [3, 4], id 1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool took = check_bytes(cases[i].bytes, cases[i].n);
        if (took != cases[i].fast) {
            fail_msg("case %zu: fast path %s it", i, took ? "took" : "left");
        }
    }
    /* The tiny op's values, read back. */
    static const uint8_t mul[] = {0x08, 7, 0x42, 12, 0x08, 9, 0x10, 3,
                                  0x1a, 2, 0x08, 1,  0x1a, 2, 0x08, 2};
    Tensord__Request *r = td_fastunpack_request(&counting, sizeof mul, mul);
    assert_non_null(r);
    assert_true(r->id == 7);
    assert_int_equal(r->body_case, TENSORD__REQUEST__BODY_RUN_OP);
    assert_true(r->run_op->out == 9);
    assert_int_equal(r->run_op->op, TENSORD__OP__OP_MUL);
    assert_int_equal(r->run_op->n_inputs, 2);
    assert_int_equal(r->run_op->inputs[1]->value_case, TENSORD__OPERAND__VALUE_HANDLE);
    assert_true(r->run_op->inputs[1]->handle == 2);
    assert_null(r->run_op->args);
    td_fastunpack_free(r, &counting);
    assert_int_equal(live_blocks, 0);
}

/* An allocator that fails: the decoder returns NULL and holds nothing. */
static void *fail_alloc(void *ud, size_t n)
{
    (void)ud;
    (void)n;
    return NULL;
}

/* Fails the allocation after `allow_n` more succeeded. */
static int allow_n;

static void *fail_later(void *ud, size_t n)
{
    if (allow_n-- > 0) {
        return count_alloc(ud, n);
    }
    return NULL;
}

static void test_allocation_failure(void **state)
{
    (void)state;
    ProtobufCAllocator failing = {fail_alloc, count_free, NULL};
    static const uint8_t get[] = {0x08, 1, 0x4a, 2, 0x08, 5};
    assert_null(td_fastunpack_request(&failing, sizeof get, get));
    assert_int_equal(live_blocks, 0);
    /* free_first [3, 4] and free{handles [5]}: the block, then two arrays; each may fail */
    static const uint8_t two[] = {0xb2, 0x01, 2, 3, 4, 0x52, 3, 0x0a, 1, 5};
    ProtobufCAllocator later = {fail_later, count_free, NULL};
    for (int k = 0; k < 3; k++) {
        allow_n = k;
        assert_null(td_fastunpack_request(&later, sizeof two, two));
        assert_int_equal(live_blocks, 0);
    }
    allow_n = 3;
    Tensord__Request *r = td_fastunpack_request(&later, sizeof two, two);
    assert_non_null(r);
    assert_int_equal(live_blocks, 3);
    assert_int_equal(r->n_free_first, 2);
    assert_int_equal(r->free->n_handles, 1);
    td_fastunpack_free(r, &counting);
    assert_int_equal(live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_requests_match_protobuf_c),
        cmocka_unit_test(test_spliced_requests_match_protobuf_c),
        cmocka_unit_test(test_hostile_requests_match_protobuf_c),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
