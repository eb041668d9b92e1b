/* tests/rpc/test_fastunpack_attack.c — an attacker's pass over the direct request decoder
** (server/rpc/fastunpack.c), with protobuf-c as the reference. test_fastunpack.c throws random
** messages and random edits at it; this file walks the edges one by one, deterministically, so
** a regression names the exact bytes:
**   - every single edit of a set of seed messages (each prefix, each byte replaced by the values
**     that change a varint's or a key's meaning, a continuation byte or a zero inserted, each
**     byte dropped);
**   - every field number 0..40 with every wire type 0..7, at every message level the decoder
**     parses, with a one-byte and a two-byte (non-minimal) key;
**   - varints at every length boundary (2^7k - 1, 2^7k), 2^63 - 1, 2^63, 2^64 - 1, and padded
**     to 9, 10 and 11 bytes, in every varint field;
**   - packed arrays: empty, cut off, a 10-byte entry, two chunks, packed plus unpacked, many;
**   - 64 operands (all scalars: the decoder's stack arrays full) and 65;
**   - a failing allocation at each allocation of a message that makes all three.
** Whenever the decoder takes a message, protobuf-c must take it too and decode the same values
** (both packed by protobuf-c and compared, and compared field by field, a double's bits
** included); whatever the decoder allocates is freed by td_fastunpack_free, and a message it
** leaves holds nothing. Each input sits in a heap block of exactly its size, so a read past it
** fails under `make check-asan`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "rpc/fastunpack.h"

/* ---- an allocator that counts live blocks, and can fail the k-th allocation ---- */

static long live_blocks;
static long fail_after = -1; /* allocations still allowed; -1: never fail */

static void *count_alloc(void *ud, size_t n)
{
    (void)ud;
    if (fail_after == 0) {
        return NULL;
    }
    if (fail_after > 0) {
        fail_after--;
    }
    void *p = malloc(n != 0 ? n : 1);
    live_blocks += p != NULL;
    return p;
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    live_blocks--;
    free(p);
}

static ProtobufCAllocator counting = {count_alloc, count_free, NULL};

/* ---- the differential check ---- */

static long checked, taken;

static void same_scalar(const Tensord__Scalar *a, const Tensord__Scalar *b)
{
    assert_int_equal(a->value_case, b->value_case);
    switch (a->value_case) {
    case TENSORD__SCALAR__VALUE_F: assert_memory_equal(&a->f, &b->f, sizeof a->f); break;
    case TENSORD__SCALAR__VALUE_I: assert_true(a->i == b->i); break;
    case TENSORD__SCALAR__VALUE_B: assert_int_equal(a->b, b->b); break;
    default: break;
    }
}

/* Field by field (packing normalises a bool's int to 0 or 1, so it is compared as stored). */
static void same_struct(const Tensord__Request *f, const Tensord__Request *p)
{
    assert_true(f->id == p->id);
    assert_int_equal(f->n_free_first, p->n_free_first);
    for (size_t i = 0; i < f->n_free_first; i++) {
        assert_true(f->free_first[i] == p->free_first[i]);
    }
    assert_int_equal(f->body_case, p->body_case);
    switch (f->body_case) {
    case TENSORD__REQUEST__BODY__NOT_SET: break;
    case TENSORD__REQUEST__BODY_RUN_OP: {
        const Tensord__RunOp *a = f->run_op, *b = p->run_op;
        assert_int_equal(a->base.n_unknown_fields, 0);
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
                assert_int_equal(x->scalar->base.n_unknown_fields, 0);
                same_scalar(x->scalar, y->scalar);
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
    default: fail_msg("the decoder took a body kind it does not decode: %d", (int)f->body_case);
    }
}

/* Decodes data[0..n) both ways, from an exact-size heap copy; returns whether the direct
** decoder took it (and then checks it against protobuf-c). */
static bool check(const uint8_t *data, size_t n)
{
    uint8_t *copy = malloc(n != 0 ? n : 1);
    assert_non_null(copy);
    if (n != 0) {
        memcpy(copy, data, n);
    }
    Tensord__Request *f = td_fastunpack_request(&counting, n, n != 0 ? copy : NULL);
    Tensord__Request *p = tensord__request__unpack(NULL, n, copy);
    checked++;
    if (f != NULL) {
        taken++;
        if (p == NULL) {
            fprintf(stderr, "taken, but protobuf-c refuses:");
            for (size_t i = 0; i < n; i++) {
                fprintf(stderr, " %02x", copy[i]);
            }
            fprintf(stderr, "\n");
        }
        assert_non_null(p);
        assert_int_equal(f->base.n_unknown_fields, 0);
        size_t fs = tensord__request__get_packed_size(f);
        size_t ps = tensord__request__get_packed_size(p);
        assert_int_equal(fs, ps);
        uint8_t *a = malloc(fs + 1), *b = malloc(ps + 1);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(tensord__request__pack(f, a), fs);
        assert_int_equal(tensord__request__pack(p, b), ps);
        assert_memory_equal(a, b, fs);
        same_struct(f, p);
        free(a);
        free(b);
        td_fastunpack_free(f, &counting);
    }
    assert_int_equal(live_blocks, 0);
    tensord__request__free_unpacked(p, NULL);
    free(copy);
    return f != NULL;
}

/* ---- building messages by hand ---- */

struct buf {
    uint8_t b[1 << 16];
    size_t n;
};

static void put_byte(struct buf *w, uint8_t v)
{
    assert_true(w->n < sizeof w->b);
    w->b[w->n++] = v;
}

static void put_varint(struct buf *w, uint64_t v)
{
    do {
        put_byte(w, (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
        v >>= 7;
    } while (v != 0);
}

/* v padded with continuation bytes to `len` bytes in all (len at least its minimal length). */
static void put_varint_padded(struct buf *w, uint64_t v, int len)
{
    for (int i = 0; i < len; i++) {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        put_byte(w, i + 1 < len ? (uint8_t)(b | 0x80) : b);
    }
}

static void put_key(struct buf *w, unsigned num, unsigned wt)
{
    put_varint(w, (uint64_t)num << 3 | wt);
}

static void put_bytes(struct buf *w, const void *p, size_t n)
{
    assert_true(n <= sizeof w->b - w->n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* A length-delimited field holding sub[0..n). */
static void put_sub(struct buf *w, unsigned num, const struct buf *sub)
{
    put_key(w, num, 2);
    put_varint(w, sub->n);
    put_bytes(w, sub->b, sub->n);
}

static struct buf scratch[4]; /* nested levels, built inside out */

/* ---- the seeds ---- */

/* A RunOp of every field and operand kind: out, op, handles, a double, an int, a bool,
** an empty operand, an empty scalar, inplace, out2, out3. */
static void seed_run_op(struct buf *w)
{
    struct buf *ro = &scratch[0], *op = &scratch[1], *sc = &scratch[2];
    ro->n = 0;
    put_key(ro, 1, 0);
    put_varint(ro, 300);
    put_key(ro, 2, 0);
    put_varint(ro, 130);
    for (int k = 0; k < 7; k++) {
        op->n = 0;
        sc->n = 0;
        switch (k) {
        case 0:
            put_key(op, 1, 0);
            put_varint(op, 5);
            break;
        case 1: {
            double d = -0.0;
            put_key(sc, 1, 1);
            put_bytes(sc, &d, 8);
            put_sub(op, 2, sc);
            break;
        }
        case 2:
            put_key(sc, 2, 0);
            put_varint(sc, 3); /* zigzag: -2 */
            put_sub(op, 2, sc);
            break;
        case 3:
            put_key(sc, 3, 0);
            put_varint(sc, 1);
            put_sub(op, 2, sc);
            break;
        case 4: break;                     /* an empty operand */
        case 5: put_sub(op, 2, sc); break; /* an empty scalar */
        default:
            put_key(op, 1, 0);
            put_varint(op, ((uint64_t)1 << 63) - 1);
            break;
        }
        put_sub(ro, 3, op);
    }
    put_key(ro, 4, 0);
    put_varint(ro, 1);
    put_key(ro, 6, 0);
    put_varint(ro, 77);
    put_key(ro, 7, 0);
    put_varint(ro, 78);
    w->n = 0;
    put_key(w, 1, 0);
    put_varint(w, 9);
    put_sub(w, 8, ro);
    put_key(w, 22, 2);
    put_varint(w, 3);
    put_varint(w, 1);
    put_varint(w, 2);
    put_varint(w, 3);
}

static void seed_get(struct buf *w)
{
    struct buf *g = &scratch[0];
    g->n = 0;
    put_key(g, 1, 0);
    put_varint(g, 12345);
    put_key(g, 2, 0);
    put_varint(g, 1);
    put_key(g, 3, 0);
    put_varint(g, 1 << 20);
    put_key(g, 4, 0);
    put_varint(g, 17);
    w->n = 0;
    put_sub(w, 9, g);
    put_key(w, 1, 0);
    put_varint(w, 1);
}

static void seed_free(struct buf *w)
{
    struct buf *f = &scratch[0], *arr = &scratch[1];
    arr->n = 0;
    static const uint64_t vals[] = {1, 127, 128, 16383, 16384, ((uint64_t)1 << 63) - 1, 0, 42};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        put_varint(arr, vals[i]);
    }
    f->n = 0;
    put_sub(f, 1, arr);
    w->n = 0;
    put_key(w, 1, 0);
    put_varint(w, 2);
    put_sub(w, 10, f);
}

static void seed_write(struct buf *w)
{
    struct buf *wr = &scratch[0];
    wr->n = 0;
    put_key(wr, 1, 0);
    put_varint(wr, 3);
    put_key(wr, 2, 0);
    put_varint(wr, 4096);
    w->n = 0;
    put_sub(w, 19, wr);
    put_key(w, 22, 2);
    put_varint(w, 1);
    put_varint(w, 8);
}

typedef void seed_fn(struct buf *w);
static seed_fn *const seeds[] = {seed_run_op, seed_get, seed_free, seed_write};

/* ---- the tests ---- */

static void test_seeds_are_taken(void **state)
{
    (void)state;
    static struct buf w;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        seeds[s](&w);
        if (!check(w.b, w.n)) {
            fail_msg("seed %zu is a shape the decoder is for, and it left it", s);
        }
    }
}

/* Every single edit of every seed. */
static void test_every_single_edit(void **state)
{
    (void)state;
    static struct buf w;
    static uint8_t m[1 << 12];
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x7f, 0x80, 0x81, 0xff};
    long before = taken;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        seeds[s](&w);
        size_t n = w.n;
        assert_true(n + 1 <= sizeof m);
        for (size_t at = 0; at <= n; at++) {
            check(w.b, at); /* each prefix */
        }
        for (size_t at = 0; at < n; at++) {
            memcpy(m, w.b, n);
            for (size_t v = 0; v < sizeof values; v++) {
                m[at] = values[v];
                check(m, n);
            }
            for (unsigned wt = 0; wt < 8; wt++) { /* the byte as a key of each wire type */
                m[at] = (uint8_t)((w.b[at] & ~7u) | wt);
                check(m, n);
            }
            m[at] = w.b[at] ^ 0x80; /* a varint ends early, or runs on */
            check(m, n);
            memcpy(m, w.b, at); /* dropped */
            memcpy(m + at, w.b + at + 1, n - at - 1);
            check(m, n - 1);
        }
        for (size_t at = 0; at <= n; at++) {
            static const uint8_t ins[] = {0x80, 0x00, 0x08};
            for (size_t v = 0; v < sizeof ins; v++) {
                memcpy(m, w.b, at);
                m[at] = ins[v];
                memcpy(m + at + 1, w.b + at, n - at);
                check(m, n + 1);
            }
        }
    }
    assert_true(taken > before);
}

/* A message at `level` holding one field: number num, wire type wt, a valid payload for the
** type. Levels: 0 Request, 1 RunOp, 2 Operand, 3 Scalar, 4 Get, 5 Free, 6 Write. */
static void lone_field(struct buf *w, int level, unsigned num, unsigned wt, bool two_byte_key)
{
    struct buf *f = &scratch[0];
    f->n = 0;
    if (two_byte_key) {
        put_varint_padded(f, (uint64_t)num << 3 | wt, 2);
    } else {
        put_key(f, num, wt);
    }
    switch (wt) {
    case 0: put_varint(f, 1); break;
    case 1: put_bytes(f, "\x01\x00\x00\x00\x00\x00\xf0\x3f", 8); break;
    case 2:
        put_varint(f, 2);
        put_varint(f, 1);
        put_varint(f, 2);
        break;
    case 3: put_key(f, num, 4); break; /* a group, empty */
    case 5: put_bytes(f, "\x01\x00\x00\x00", 4); break;
    default: break; /* 4 (an end without a start), 6, 7: nothing to follow */
    }
    struct buf *a = &scratch[1], *b = &scratch[2], *c = &scratch[3];
    w->n = 0;
    switch (level) {
    case 0: put_bytes(w, f->b, f->n); break;
    case 1: put_sub(w, 8, f); break;
    case 2:
        a->n = 0;
        put_sub(a, 3, f);
        put_sub(w, 8, a);
        break;
    case 3:
        b->n = 0;
        put_sub(b, 2, f);
        c->n = 0;
        put_sub(c, 3, b);
        put_sub(w, 8, c);
        break;
    case 4: put_sub(w, 9, f); break;
    case 5: put_sub(w, 10, f); break;
    default: put_sub(w, 19, f); break;
    }
}

static void test_every_field_number_and_wire_type(void **state)
{
    (void)state;
    static struct buf w;
    for (int level = 0; level < 7; level++) {
        for (unsigned num = 0; num <= 40; num++) {
            for (unsigned wt = 0; wt < 8; wt++) {
                lone_field(&w, level, num, wt, false);
                check(w.b, w.n);
                if (((uint64_t)num << 3 | wt) < 0x80) {
                    lone_field(&w, level, num, wt, true); /* a non-minimal two-byte key */
                    check(w.b, w.n);
                }
            }
        }
        /* the highest field numbers a key can name, in two to five bytes */
        for (int bits = 4; bits <= 29; bits += 5) {
            lone_field(&w, level, ((unsigned)1 << bits) - 1, 0, false);
            check(w.b, w.n);
        }
    }
}

/* Every varint field of the decoded kinds, with values at each length boundary. */
static void test_varint_boundaries(void **state)
{
    (void)state;
    static struct buf w;
    uint64_t vals[40];
    int nv = 0;
    for (int k = 1; k <= 9; k++) {
        vals[nv++] = ((uint64_t)1 << (7 * k)) - 1;
        vals[nv++] = (uint64_t)1 << (7 * k);
    }
    vals[nv++] = ((uint64_t)1 << 63) - 1;
    vals[nv++] = UINT64_MAX;
    vals[nv++] = 0;
    vals[nv++] = 1;
    vals[nv++] = 2;
    /* (level, field) of every varint: Request.id; RunOp out, op, inplace, out2, out3;
    ** Operand.handle; Scalar i, b; Get handle, meta_only, offset, length; Write handle, offset */
    static const int fields[][2] = {{0, 1}, {1, 1}, {1, 2}, {1, 4}, {1, 6}, {1, 7}, {2, 1}, {3, 2},
                                    {3, 3}, {4, 1}, {4, 2}, {4, 3}, {4, 4}, {6, 1}, {6, 2}};
    long before = taken;
    for (size_t fi = 0; fi < sizeof fields / sizeof fields[0]; fi++) {
        for (int i = 0; i < nv; i++) {
            int minimal = 1;
            for (uint64_t v = vals[i] >> 7; v != 0; v >>= 7) {
                minimal++;
            }
            for (int len = minimal; len <= 11; len++) {
                struct buf *f = &scratch[0];
                f->n = 0;
                put_key(f, (unsigned)fields[fi][1], 0);
                put_varint_padded(f, vals[i], len);
                struct buf *a = &scratch[1], *b = &scratch[2], *c = &scratch[3];
                w.n = 0;
                switch (fields[fi][0]) {
                case 0: put_bytes(&w, f->b, f->n); break;
                case 1: put_sub(&w, 8, f); break;
                case 2:
                    a->n = 0;
                    put_sub(a, 3, f);
                    put_sub(&w, 8, a);
                    break;
                case 3:
                    b->n = 0;
                    put_sub(b, 2, f);
                    c->n = 0;
                    put_sub(c, 3, b);
                    put_sub(&w, 8, c);
                    break;
                case 4: put_sub(&w, 9, f); break;
                default: put_sub(&w, 19, f); break;
                }
                check(w.b, w.n);
            }
        }
    }
    assert_true(taken > before);
}

/* free_first (Request field 22) and Free.handles: one packed chunk is the decoder's; anything
** else is protobuf-c's, and must decode the same whoever takes it. */
static void test_packed_arrays(void **state)
{
    (void)state;
    static struct buf w;
    struct buf *arr = &scratch[1], *f = &scratch[2];
    for (int level = 0; level < 2; level++) {
        for (int k = 0; k < 9; k++) {
            arr->n = 0;
            w.n = 0;
            switch (k) {
            case 0: break;                              /* an empty chunk */
            case 1: put_varint(arr, UINT64_MAX); break; /* a 10-byte entry */
            case 2:
                put_varint(arr, 5);
                put_byte(arr, 0x80); /* the last entry cut off */
                break;
            case 3: put_varint_padded(arr, 5, 9); break; /* 9 bytes: still < 2^63 */
            case 4: put_varint_padded(arr, 5, 10); break;
            case 5:
                for (int i = 0; i < 5000; i++) {
                    put_varint(arr, (uint64_t)i * 1000003u);
                }
                break;
            default:
                put_varint(arr, 7);
                put_varint(arr, 8);
                break;
            }
            if (level == 0) {
                put_sub(&w, 22, arr);
            } else {
                f->n = 0;
                put_sub(f, 1, arr);
                put_sub(&w, 10, f);
            }
            if (k == 7) { /* a second chunk: protobuf concatenates them */
                if (level == 0) {
                    put_sub(&w, 22, arr);
                } else {
                    w.n = 0;
                    put_sub(f, 1, arr);
                    put_sub(&w, 10, f);
                }
            }
            if (k == 8) { /* packed, then an unpacked entry */
                if (level == 0) {
                    put_key(&w, 22, 0);
                    put_varint(&w, 9);
                } else {
                    w.n = 0;
                    put_key(f, 1, 0);
                    put_varint(f, 9);
                    put_sub(&w, 10, f);
                }
            }
            check(w.b, w.n);
        }
    }
    /* a chunk whose length runs past its message, and one whose length varint is cut */
    static const uint8_t past[] = {0xb2, 0x01, 0x05, 0x01, 0x02};
    static const uint8_t cut[] = {0xb2, 0x01, 0x80};
    static const uint8_t huge[] = {0xb2, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    assert_false(check(past, sizeof past));
    assert_false(check(cut, sizeof cut));
    assert_false(check(huge, sizeof huge));
}

/* 64 operands fill the decoder's stack arrays (every one a scalar); a 65th goes to protobuf-c. */
static void test_operand_limit(void **state)
{
    (void)state;
    static struct buf w;
    struct buf *ro = &scratch[0], *op = &scratch[1], *sc = &scratch[2];
    for (int n = 63; n <= 66; n++) {
        ro->n = 0;
        put_key(ro, 2, 0);
        put_varint(ro, 3);
        for (int i = 0; i < n; i++) {
            sc->n = 0;
            double d = (double)i * 0.5 - 7.0;
            put_key(sc, 1, 1);
            put_bytes(sc, &d, 8);
            op->n = 0;
            put_sub(op, 2, sc);
            put_sub(ro, 3, op);
        }
        w.n = 0;
        put_sub(&w, 8, ro);
        bool took = check(w.b, w.n);
        assert_int_equal(took, n <= 64);
    }
}

/* Duplicates and merges, each left to protobuf-c (which merges submessages, lets the last
** scalar win, concatenates repeated fields): whoever decodes them, the values are protobuf-c's. */
static void test_duplicates_and_oneofs(void **state)
{
    (void)state;
    static const struct {
        uint8_t b[32];
        size_t n;
    } cases[] = {
        /* run_op twice: merged (out from the first, op from the second, inputs concatenated) */
        {{0x42, 4, 0x08, 5, 0x1a, 0, 0x42, 4, 0x10, 3, 0x1a, 0}, 12},
        /* run_op then get: the last body wins */
        {{0x42, 2, 0x08, 5, 0x4a, 2, 0x08, 6}, 8},
        /* get then run_op */
        {{0x4a, 2, 0x08, 6, 0x42, 2, 0x08, 5}, 8},
        /* an operand with a handle then a scalar, and a scalar then a handle */
        {{0x42, 7, 0x1a, 5, 0x08, 1, 0x12, 1, 0x00}, 9},
        {{0x42, 7, 0x1a, 5, 0x12, 1, 0x00, 0x08, 1}, 9},
        /* a scalar with i then f, with b then b */
        {{0x42, 15, 0x1a, 13, 0x12, 11, 0x10, 4, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 17},
        {{0x42, 8, 0x1a, 6, 0x12, 4, 0x18, 1, 0x18, 0}, 10},
        /* the same scalar submessage twice in one operand: merged */
        {{0x42, 10, 0x1a, 8, 0x12, 2, 0x10, 4, 0x12, 2, 0x10, 6}, 12},
        /* inplace twice, out twice, out2 twice */
        {{0x42, 4, 0x20, 1, 0x20, 0}, 6},
        {{0x42, 4, 0x08, 1, 0x08, 2}, 6},
        {{0x42, 4, 0x30, 1, 0x30, 2}, 6},
        /* get.meta_only = 2 and as a two-byte 1; inplace = 0x80 0x00 */
        {{0x4a, 2, 0x10, 2}, 4},
        {{0x4a, 3, 0x10, 0x81, 0x00}, 5},
        {{0x42, 3, 0x20, 0x80, 0x00}, 5},
        /* free twice: merged (handles concatenated) */
        {{0x52, 3, 0x0a, 1, 5, 0x52, 3, 0x0a, 1, 6}, 10},
        /* write twice: merged */
        {{0x9a, 0x01, 2, 0x08, 3, 0x9a, 0x01, 2, 0x10, 4}, 10},
        /* an empty body then the same body again */
        {{0x4a, 0, 0x4a, 2, 0x08, 1}, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check(cases[i].b, cases[i].n);
    }
}

/* An allocation that fails at each point of a message making all three (the free_first array,
** the Free's array, the block): NULL, nothing held. */
static void test_allocation_failure_each_point(void **state)
{
    (void)state;
    static struct buf w;
    struct buf *arr = &scratch[1], *f = &scratch[2];
    arr->n = 0;
    for (int i = 0; i < 300; i++) {
        put_varint(arr, (uint64_t)i + 1);
    }
    w.n = 0;
    put_sub(&w, 22, arr);
    f->n = 0;
    put_sub(f, 1, arr);
    put_sub(&w, 10, f);
    for (long k = 0; k < 3; k++) {
        fail_after = k;
        Tensord__Request *r = td_fastunpack_request(&counting, w.n, w.b);
        fail_after = -1;
        assert_null(r);
        assert_int_equal(live_blocks, 0);
    }
    fail_after = 3;
    Tensord__Request *r = td_fastunpack_request(&counting, w.n, w.b);
    fail_after = -1;
    assert_non_null(r);
    assert_int_equal(r->n_free_first, 300);
    assert_int_equal(r->free->n_handles, 300);
    assert_true(r->free_first[299] == 300 && r->free->handles[0] == 1);
    td_fastunpack_free(r, &counting);
    assert_int_equal(live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeds_are_taken),
        cmocka_unit_test(test_every_single_edit),
        cmocka_unit_test(test_every_field_number_and_wire_type),
        cmocka_unit_test(test_varint_boundaries),
        cmocka_unit_test(test_packed_arrays),
        cmocka_unit_test(test_operand_limit),
        cmocka_unit_test(test_duplicates_and_oneofs),
        cmocka_unit_test(test_allocation_failure_each_point),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("fastunpack attack: %ld messages checked, %ld taken by the direct decoder\n", checked,
           taken);
    return rc;
}
