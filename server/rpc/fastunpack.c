/* server/rpc/fastunpack.c — see fastunpack.h.
**
** One pass over the bytes: the parsers validate as they go and write into structs on the
** stack (struct ctx: the Request, its body, the operands and scalars); only when the whole
** message was accepted is the block allocated and the structs copied into it, their pointers
** set to the copies. A parser returns false for anything outside the accepted subset. Packed
** arrays are allocated as they are met (their own allocations, as protobuf-c makes them), and
** freed again when the message is left to protobuf-c. */
#include "fastunpack.h"

#include <stdbool.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

#define MAX_U64_BYTES 9 /* < 2^63: protobuf-c's value for these needs no 10th-byte rules */
#define MAX_LEN_BYTES 3 /* lengths below 2 MiB; longer submessages go to protobuf-c */
#define MAX_INPUTS 64   /* RunOp operands decoded here; more go to protobuf-c */

struct rd {
    const uint8_t *p, *end;
};

struct ctx {
    ProtobufCAllocator *alloc;
    uint64_t *arrays[2]; /* the packed arrays allocated so far (free_first, handles) */
    int narrays;
    Tensord__Request req;
    union {
        Tensord__RunOp run_op;
        Tensord__Get get;
        Tensord__Free free;
        Tensord__Write write;
    } body;
    size_t body_size;
    size_t n_inputs, n_scalars;
    Tensord__Operand ops[MAX_INPUTS];
    Tensord__Scalar scalars[MAX_INPUTS];
};

static inline bool rd_varint(struct rd *r, int max, uint64_t *out)
{
    if (r->p != r->end && *r->p < 0x80) { /* one byte: most keys, ids, handles, lengths */
        *out = *r->p++;
        return true;
    }
    /* Two and three bytes (ids and handles past 127) without the loop: the same value. */
    const uint8_t *q = r->p;
    if (max >= 2 && r->end - q >= 2 && q[1] < 0x80) {
        *out = (uint64_t)(q[0] & 0x7f) | (uint64_t)q[1] << 7;
        r->p = q + 2;
        return true;
    }
    if (max >= 3 && r->end - q >= 3 && q[1] >= 0x80 && q[2] < 0x80) {
        *out = (uint64_t)(q[0] & 0x7f) | (uint64_t)(q[1] & 0x7f) << 7 | (uint64_t)q[2] << 14;
        r->p = q + 3;
        return true;
    }
    uint64_t v = 0;
    for (int i = 0; i < max; i++) {
        if (r->p == r->end) {
            return false;
        }
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A field's key: number and wire type. Keys here are one or two bytes, written minimally. */
static inline bool rd_key(struct rd *r, unsigned *num, unsigned *wt)
{
    if (r->p != r->end && *r->p < 0x80) {
        *num = *r->p >> 3;
        *wt = *r->p++ & 7;
        return true;
    }
    const uint8_t *start = r->p;
    uint64_t k;
    if (!rd_varint(r, 2, &k) || (r->p - start == 2 && r->p[-1] == 0)) {
        return false;
    }
    *num = (unsigned)(k >> 3);
    *wt = (unsigned)(k & 7);
    return true;
}

/* A length-delimited field's bytes, within r. */
static inline bool rd_sub(struct rd *r, struct rd *sub)
{
    uint64_t n;
    if (!rd_varint(r, MAX_LEN_BYTES, &n) || n > (uint64_t)(r->end - r->p)) {
        return false;
    }
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return true;
}

static bool rd_bool(struct rd *r, protobuf_c_boolean *out)
{
    if (r->p == r->end || *r->p > 1) {
        return false; /* protobuf-c reads longer or larger ones as true: left to it */
    }
    *out = *r->p++;
    return true;
}

/* The first time field `num` is seen in this message (numbers below 32). */
static bool first_time(uint32_t *seen, unsigned num)
{
    uint32_t bit = (uint32_t)1 << num;
    if (*seen & bit) {
        return false;
    }
    *seen |= bit;
    return true;
}

/* A packed repeated uint64 (one non-empty chunk), decoded into its own allocation. */
static bool rd_packed(struct ctx *c, struct rd *r, size_t *n_out, uint64_t **out)
{
    struct rd sub;
    if (!rd_sub(r, &sub) || sub.p == sub.end || c->narrays == 2) {
        return false;
    }
    /* Counted first (each varint ends at a byte below 0x80, and has at most 9 bytes), so the
    ** array is allocated once at its size, as protobuf-c's is. */
    size_t n = 0, run = 0;
    for (const uint8_t *q = sub.p; q != sub.end; q++) {
        if (*q < 0x80) {
            n++;
            run = 0;
        } else if (++run == MAX_U64_BYTES) {
            return false;
        }
    }
    if (run != 0) {
        return false; /* the last varint is cut off */
    }
    uint64_t *a = c->alloc->alloc(c->alloc->allocator_data, n * sizeof *a);
    if (a == NULL) {
        return false;
    }
    c->arrays[c->narrays++] = a;
    for (size_t i = 0; i < n; i++) {
        (void)rd_varint(&sub, MAX_U64_BYTES, &a[i]);
    }
    *n_out = n;
    *out = a;
    return true;
}

static bool rd_scalar(struct rd *r, Tensord__Scalar *m)
{
    *m = (Tensord__Scalar)TENSORD__SCALAR__INIT;
    unsigned num, wt;
    uint64_t v;
    bool any = false;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || any) {
            return false; /* a second member of the oneof: protobuf-c's rules */
        }
        any = true;
        if (num == 1 && wt == WT_I64) {
            if (r->end - r->p < 8) {
                return false;
            }
            memcpy(&m->f, r->p, 8); /* little-endian on the wire and here, as protobuf-c assumes */
            r->p += 8;
            m->value_case = TENSORD__SCALAR__VALUE_F;
        } else if (num == 2 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            m->value_case = TENSORD__SCALAR__VALUE_I;
            m->i = (int64_t)(v >> 1) ^ -(int64_t)(v & 1); /* zigzag */
        } else if (num == 3 && wt == WT_VARINT) {
            if (!rd_bool(r, &m->b)) {
                return false;
            }
            m->value_case = TENSORD__SCALAR__VALUE_B;
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_operand(struct ctx *c, struct rd *r, Tensord__Operand *m)
{
    *m = (Tensord__Operand)TENSORD__OPERAND__INIT;
    unsigned num, wt;
    bool any = false;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || any) {
            return false;
        }
        any = true;
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &m->handle)) {
                return false;
            }
            m->value_case = TENSORD__OPERAND__VALUE_HANDLE;
        } else if (num == 2 && wt == WT_LEN) {
            struct rd sub;
            Tensord__Scalar *sc = &c->scalars[c->n_scalars];
            if (!rd_sub(r, &sub) || !rd_scalar(&sub, sc)) {
                return false;
            }
            c->n_scalars++; /* at most one per operand: MAX_INPUTS in all */
            m->value_case = TENSORD__OPERAND__VALUE_SCALAR;
            m->scalar = sc; /* pointed at its copy in the block by finish() */
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_run_op(struct ctx *c, struct rd *r)
{
    Tensord__RunOp *m = &c->body.run_op;
    *m = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
    c->body_size = sizeof *m;
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || (num != 3 && !first_time(&seen, num))) {
            return false;
        }
        if ((num == 1 || num == 6 || num == 7) && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            *(num == 1 ? &m->out : num == 6 ? &m->out2 : &m->out3) = v;
        } else if (num == 2 && wt == WT_VARINT) {
            if (!rd_varint(r, 2, &v)) {
                return false; /* op codes are below 2^14; longer varints go to protobuf-c */
            }
            m->op = (Tensord__Op)v;
        } else if (num == 3 && wt == WT_LEN) {
            struct rd sub;
            if (c->n_inputs == MAX_INPUTS || !rd_sub(r, &sub) ||
                !rd_operand(c, &sub, &c->ops[c->n_inputs])) {
                return false;
            }
            c->n_inputs++;
        } else if (num == 4 && wt == WT_VARINT) {
            if (!rd_bool(r, &m->inplace)) {
                return false;
            }
        } else {
            return false; /* args (5) and anything unknown: protobuf-c */
        }
    }
    m->n_inputs = c->n_inputs;
    return true;
}

/* Get (field 9 of Request), Write (19) and Free (10): flat messages. */
static bool rd_get(struct ctx *c, struct rd *r)
{
    Tensord__Get *m = &c->body.get;
    *m = (Tensord__Get)TENSORD__GET__INIT;
    c->body_size = sizeof *m;
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || !first_time(&seen, num)) {
            return false;
        }
        if ((num == 1 || num == 3 || num == 4) && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            *(num == 1 ? &m->handle : num == 3 ? &m->offset : &m->length) = v;
        } else if (num == 2 && wt == WT_VARINT) {
            if (!rd_bool(r, &m->meta_only)) {
                return false;
            }
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_write(struct ctx *c, struct rd *r)
{
    Tensord__Write *m = &c->body.write;
    *m = (Tensord__Write)TENSORD__WRITE__INIT;
    c->body_size = sizeof *m;
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || !first_time(&seen, num) ||
            (num != 1 && num != 2) || wt != WT_VARINT || !rd_varint(r, MAX_U64_BYTES, &v)) {
            return false;
        }
        *(num == 1 ? &m->handle : &m->offset) = v;
    }
    return true;
}

static bool rd_free(struct ctx *c, struct rd *r)
{
    Tensord__Free *m = &c->body.free;
    *m = (Tensord__Free)TENSORD__FREE__INIT;
    c->body_size = sizeof *m;
    uint32_t seen = 0;
    unsigned num, wt;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num != 1 || wt != WT_LEN || !first_time(&seen, num) ||
            !rd_packed(c, r, &m->n_handles, &m->handles)) {
            return false;
        }
    }
    return true;
}

static bool rd_request(struct ctx *c, struct rd *r)
{
    Tensord__Request *m = &c->req;
    uint32_t seen = 0;
    unsigned num, wt;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || !first_time(&seen, num)) {
            return false;
        }
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &m->id)) {
                return false;
            }
            continue;
        }
        if (num == 22 && wt == WT_LEN) {
            if (!rd_packed(c, r, &m->n_free_first, &m->free_first)) {
                return false;
            }
            continue;
        }
        struct rd sub;
        if (wt != WT_LEN || m->body_case != TENSORD__REQUEST__BODY__NOT_SET || !rd_sub(r, &sub)) {
            return false; /* one body member at most: protobuf-c's rules for more */
        }
        bool ok;
        switch (num) {
        case 8:
            m->body_case = TENSORD__REQUEST__BODY_RUN_OP;
            ok = rd_run_op(c, &sub);
            break;
        case 9:
            m->body_case = TENSORD__REQUEST__BODY_GET;
            ok = rd_get(c, &sub);
            break;
        case 10:
            m->body_case = TENSORD__REQUEST__BODY_FREE;
            ok = rd_free(c, &sub);
            break;
        case 19:
            m->body_case = TENSORD__REQUEST__BODY_WRITE;
            ok = rd_write(c, &sub);
            break;
        default: ok = false; break;
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Field `num` next in r, its key the one byte num << 3 | wt. */
static inline bool next_is(const struct rd *r, unsigned num, unsigned wt)
{
    return r->p != r->end && *r->p == (uint8_t)(num << 3 | wt);
}

/* Steps over the key of field `num` (wire type wt) when that field comes next in r. */
static inline bool take(struct rd *r, unsigned num, unsigned wt)
{
    if (!next_is(r, num, wt)) {
        return false;
    }
    r->p++;
    return true;
}

/* A RunOp request as libtensord and the Python client write it: id, then the RunOp with its
** fields in number order (out, op, the operands, inplace, out2, out3; no OpArgs), nothing after
** it. Read straight through with the general readers; a message this accepts, rd_request
** accepts with the same result (it takes any order). Anything else returns false, and the
** caller resets c and hands the bytes to rd_request. */
static bool run_op_in_order(struct ctx *c, struct rd r)
{
    Tensord__Request *m = &c->req;
    struct rd sub;
    uint64_t v;
    if (take(&r, 1, WT_VARINT) && !rd_varint(&r, MAX_U64_BYTES, &m->id)) {
        return false;
    }
    if (!take(&r, 8, WT_LEN) || !rd_sub(&r, &sub) || r.p != r.end) {
        return false;
    }
    m->body_case = TENSORD__REQUEST__BODY_RUN_OP;
    Tensord__RunOp *o = &c->body.run_op;
    *o = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
    c->body_size = sizeof *o;
    if (take(&sub, 1, WT_VARINT) && !rd_varint(&sub, MAX_U64_BYTES, &o->out)) {
        return false;
    }
    if (take(&sub, 2, WT_VARINT)) {
        if (!rd_varint(&sub, 2, &v)) {
            return false;
        }
        o->op = (Tensord__Op)v;
    }
    while (take(&sub, 3, WT_LEN)) {
        struct rd x;
        if (c->n_inputs == MAX_INPUTS || !rd_sub(&sub, &x)) {
            return false;
        }
        Tensord__Operand *in = &c->ops[c->n_inputs];
        if (take(&x, 1, WT_VARINT)) { /* a handle, as rd_operand reads it */
            *in = (Tensord__Operand)TENSORD__OPERAND__INIT;
            if (!rd_varint(&x, MAX_U64_BYTES, &in->handle) || x.p != x.end) {
                return false;
            }
            in->value_case = TENSORD__OPERAND__VALUE_HANDLE;
        } else if (!rd_operand(c, &x, in)) {
            return false;
        }
        c->n_inputs++;
    }
    if (take(&sub, 4, WT_VARINT) && !rd_bool(&sub, &o->inplace)) {
        return false;
    }
    if (take(&sub, 6, WT_VARINT) && !rd_varint(&sub, MAX_U64_BYTES, &o->out2)) {
        return false;
    }
    if (take(&sub, 7, WT_VARINT) && !rd_varint(&sub, MAX_U64_BYTES, &o->out3)) {
        return false;
    }
    if (sub.p != sub.end) {
        return false;
    }
    o->n_inputs = c->n_inputs;
    return true;
}

static void ctx_reset(struct ctx *c)
{
    c->narrays = 0;
    c->req = (Tensord__Request)TENSORD__REQUEST__INIT;
    c->body_size = 0;
    c->n_inputs = 0;
    c->n_scalars = 0;
}

static size_t round8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* The accepted message, copied from the stack into one block of its exact size. */
static Tensord__Request *finish(struct ctx *c)
{
    size_t n = c->n_inputs, k = c->n_scalars;
    size_t at_body = round8(sizeof(Tensord__Request));
    size_t at_ptrs = at_body + round8(c->body_size);
    size_t at_ops = at_ptrs + n * sizeof(Tensord__Operand *);
    size_t at_scalars = at_ops + n * round8(sizeof(Tensord__Operand));
    size_t size = at_scalars + k * round8(sizeof(Tensord__Scalar));
    uint8_t *block = c->alloc->alloc(c->alloc->allocator_data, size);
    if (block == NULL) {
        return NULL;
    }
    Tensord__Request *m = (Tensord__Request *)block;
    *m = c->req;
    if (c->body_size != 0) {
        memcpy(block + at_body, &c->body, c->body_size);
        m->run_op = (Tensord__RunOp *)(block + at_body); /* the body oneof's one pointer */
    }
    if (n != 0) {
        Tensord__Operand **ptrs = (Tensord__Operand **)(block + at_ptrs);
        Tensord__Scalar *sc = (Tensord__Scalar *)(block + at_scalars);
        for (size_t i = 0; i < n; i++) {
            Tensord__Operand *o = (Tensord__Operand *)(block + at_ops +
                                                       i * round8(sizeof(Tensord__Operand)));
            *o = c->ops[i];
            if (o->value_case == TENSORD__OPERAND__VALUE_SCALAR) {
                size_t j = (size_t)(o->scalar - c->scalars);
                sc[j] = c->scalars[j];
                o->scalar = &sc[j];
            }
            ptrs[i] = o;
        }
        m->run_op->inputs = ptrs;
    }
    return m;
}

Tensord__Request *td_fastunpack_request(ProtobufCAllocator *alloc, size_t len, const uint8_t *data)
{
    struct ctx c;
    c.alloc = alloc;
    ctx_reset(&c);
    const uint8_t *end = len != 0 ? data + len : data; /* data may be NULL when len is 0 */
    struct rd r = {data, end};
    bool ok = run_op_in_order(&c, r);
    if (!ok) {
        ctx_reset(&c); /* it allocates nothing: no arrays to free */
        ok = rd_request(&c, &r);
    }
    Tensord__Request *m = ok ? finish(&c) : NULL;
    if (m == NULL) {
        for (int i = 0; i < c.narrays; i++) {
            alloc->free(alloc->allocator_data, c.arrays[i]);
        }
    }
    return m;
}

void td_fastunpack_free(Tensord__Request *req, ProtobufCAllocator *alloc)
{
    if (req == NULL) {
        return;
    }
    if (req->free_first != NULL) {
        alloc->free(alloc->allocator_data, req->free_first);
    }
    if (req->body_case == TENSORD__REQUEST__BODY_FREE && req->free->handles != NULL) {
        alloc->free(alloc->allocator_data, req->free->handles);
    }
    alloc->free(alloc->allocator_data, req);
}
