/* client/c/wire.c — see wire.h: the hot requests written and the common reply read without
** protobuf-c. Libc only, so that another client (the Python extension) can build it as it is. */
#include "wire.h"

#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };
#define KEY(num, wt) ((uint8_t)((num) << 3 | (wt))) /* field numbers below 16: one byte */
#define KEY2(num, wt) (((num) << 3 | (wt)))         /* 16..2047: two bytes */

/* ---- encoding ---- */

#define varint_len tdw_varint_len
#define put_varint tdw_put_varint
#define zigzag tdw_zigzag

/* A proto3 scalar outside a oneof: omitted when zero. */
static inline size_t opt_size(uint64_t v)
{
    return v != 0 ? 1 + varint_len(v) : 0;
}

static inline uint8_t *put_opt(uint8_t *p, int num, uint64_t v)
{
    if (v != 0) {
        *p++ = KEY(num, WT_VARINT);
        p = put_varint(p, v);
    }
    return p;
}

/* A submessage or packed field's bytes after its one-byte key. */
static inline size_t len_size(size_t body)
{
    return varint_len(body) + body;
}

static size_t packed_body(const uint64_t *v, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++) {
        s += varint_len(v[i]);
    }
    return s;
}

/* Operand: oneof {uint64 handle = 1; Scalar scalar = 2}; Scalar: oneof {double f = 1;
** sint64 i = 2; bool b = 3}. A oneof member is written even at zero. */
static size_t scalar_body(const struct tdw_operand *o)
{
    switch (o->kind) {
    case TDW_FLOAT: return 1 + 8;
    case TDW_INT: return 1 + varint_len(zigzag(o->v.i));
    case TDW_BOOL: return 1 + 1;
    case TDW_HANDLE: break;
    }
    return 0;
}

static size_t operand_body(const struct tdw_operand *o)
{
    if (o->kind == TDW_HANDLE) {
        return 1 + varint_len(o->v.handle);
    }
    return 1 + len_size(scalar_body(o));
}

size_t tdw_scalar_size(const struct tdw_operand *o)
{
    return scalar_body(o);
}

uint8_t *tdw_put_scalar(uint8_t *p, const struct tdw_operand *o)
{
    switch (o->kind) {
    case TDW_FLOAT:
        *p++ = KEY(1, WT_I64);
        memcpy(p, &o->v.f, 8); /* little-endian, as protobuf-c writes it on this host */
        return p + 8;
    case TDW_INT: *p++ = KEY(2, WT_VARINT); return put_varint(p, zigzag(o->v.i));
    case TDW_BOOL:
        *p++ = KEY(3, WT_VARINT);
        *p++ = o->v.b ? 1 : 0;
        return p;
    case TDW_HANDLE: break;
    }
    return p;
}

static uint8_t *put_operand(uint8_t *p, const struct tdw_operand *o)
{
    if (o->kind == TDW_HANDLE) {
        *p++ = KEY(1, WT_VARINT);
        return put_varint(p, o->v.handle);
    }
    *p++ = KEY(2, WT_LEN);
    p = put_varint(p, scalar_body(o));
    return tdw_put_scalar(p, o);
}

/* The request's body field number. */
static inline unsigned body_field(const struct tdw_request *r)
{
    return r->body == TDW_VARINTS ? (unsigned)r->u.varints.field : (unsigned)r->body;
}

static bool body_known(const struct tdw_request *r)
{
    switch (r->body) {
    case TDW_VARINTS:
        /* after id (1), before free_first (22): fields are written in number order */
        return r->u.varints.field >= 2 && r->u.varints.field <= 21 && r->u.varints.n <= 8;
    case TDW_CREATE: return r->u.create.dtype >= 0;
    case TDW_RUN_OP: return r->u.run_op.op >= 0;
    case TDW_GET:
    case TDW_FREE:
    case TDW_WRITE: return true;
    }
    return false;
}

static size_t body_size(const struct tdw_request *r)
{
    size_t s = 0;
    switch (r->body) {
    case TDW_RUN_OP:
        s = opt_size(r->u.run_op.out) + opt_size((uint64_t)r->u.run_op.op) +
            opt_size(r->u.run_op.inplace);
        for (size_t i = 0; i < r->u.run_op.n_inputs; i++) {
            s += 1 + len_size(operand_body(&r->u.run_op.inputs[i]));
        }
        if (r->u.run_op.args != NULL) {
            s += 1 + len_size(r->u.run_op.args_len);
        }
        return s;
    case TDW_CREATE:
        s = opt_size(r->u.create.out) + opt_size((uint64_t)r->u.create.dtype) +
            opt_size(r->u.create.requires_grad);
        if (r->u.create.n_shape != 0) {
            s += 1 +
                 len_size(packed_body((const uint64_t *)r->u.create.shape, r->u.create.n_shape));
        }
        return s;
    case TDW_VARINTS:
        for (size_t i = 0; i < r->u.varints.n; i++) {
            s += opt_size(r->u.varints.v[i]);
        }
        return s;
    case TDW_GET:
        return opt_size(r->u.get.handle) + opt_size(r->u.get.meta_only) +
               opt_size(r->u.get.offset) + opt_size(r->u.get.length);
    case TDW_FREE:
        return r->u.free.n_handles != 0
                   ? 1 + len_size(packed_body(r->u.free.handles, r->u.free.n_handles))
                   : 0;
    case TDW_WRITE: return opt_size(r->u.write.handle) + opt_size(r->u.write.offset);
    }
    return 0;
}

size_t tdw_request_size(const struct tdw_request *r)
{
    if (!body_known(r)) {
        return 0;
    }
    size_t key = body_field(r) < 16 ? 1 : 2;
    size_t s = opt_size(r->id) + key + len_size(body_size(r));
    if (r->n_free_first != 0) {
        s += 2 + len_size(packed_body(r->free_first, r->n_free_first));
    }
    return s;
}

/* The body's length, from the request's whole size (tdw_request_size's answer, as the caller
** must pass) rather than a second walk over the body: size = head (id and the body's key, `head`
** bytes) + varint_len(B) + B + the free_first field, and B + varint_len(B) grows with B, so
** one B fits. */
static size_t body_from_size(const struct tdw_request *r, size_t size, size_t head)
{
    size_t rest = size - head;
    if (r->n_free_first != 0) {
        rest -= 2 + len_size(packed_body(r->free_first, r->n_free_first));
    }
    for (size_t n = 1; n < 10 && n < rest; n++) {
        if (varint_len(rest - n) == n) {
            return rest - n;
        }
    }
    return 0; /* rest is 1: an empty body */
}

uint8_t *tdw_request_pack(const struct tdw_request *r, size_t size, uint8_t *out)
{
    uint8_t *p = put_opt(out, 1, r->id);
    /* The body's key: fields are written in number order, and every body here is below
    ** free_first's 22. */
    unsigned field = body_field(r);
    if (field < 16) {
        *p++ = KEY(field, WT_LEN);
    } else {
        p = put_varint(p, KEY2(field, WT_LEN));
    }
    p = put_varint(p, body_from_size(r, size, (size_t)(p - out)));
    switch (r->body) {
    case TDW_RUN_OP:
        p = put_opt(p, 1, r->u.run_op.out);
        p = put_opt(p, 2, (uint64_t)r->u.run_op.op);
        for (size_t i = 0; i < r->u.run_op.n_inputs; i++) {
            const struct tdw_operand *o = &r->u.run_op.inputs[i];
            *p++ = KEY(3, WT_LEN);
            p = put_varint(p, operand_body(o));
            p = put_operand(p, o);
        }
        p = put_opt(p, 4, r->u.run_op.inplace);
        if (r->u.run_op.args != NULL) {
            *p++ = KEY(5, WT_LEN);
            p = put_varint(p, r->u.run_op.args_len);
            if (r->u.run_op.args_len != 0) {
                memcpy(p, r->u.run_op.args, r->u.run_op.args_len);
                p += r->u.run_op.args_len;
            }
        }
        break;
    case TDW_CREATE:
        p = put_opt(p, 1, r->u.create.out);
        p = put_opt(p, 2, (uint64_t)r->u.create.dtype);
        if (r->u.create.n_shape != 0) {
            /* int64 (not sint64): a negative dim is its two's complement, 10 bytes */
            const uint64_t *d = (const uint64_t *)r->u.create.shape;
            *p++ = KEY(3, WT_LEN);
            p = put_varint(p, packed_body(d, r->u.create.n_shape));
            for (size_t i = 0; i < r->u.create.n_shape; i++) {
                p = put_varint(p, d[i]);
            }
        }
        p = put_opt(p, 4, r->u.create.requires_grad);
        break;
    case TDW_VARINTS:
        for (size_t i = 0; i < r->u.varints.n; i++) {
            p = put_opt(p, (int)i + 1, r->u.varints.v[i]);
        }
        break;
    case TDW_GET:
        p = put_opt(p, 1, r->u.get.handle);
        p = put_opt(p, 2, r->u.get.meta_only);
        p = put_opt(p, 3, r->u.get.offset);
        p = put_opt(p, 4, r->u.get.length);
        break;
    case TDW_FREE:
        if (r->u.free.n_handles != 0) {
            *p++ = KEY(1, WT_LEN);
            p = put_varint(p, packed_body(r->u.free.handles, r->u.free.n_handles));
            for (size_t i = 0; i < r->u.free.n_handles; i++) {
                p = put_varint(p, r->u.free.handles[i]);
            }
        }
        break;
    case TDW_WRITE:
        p = put_opt(p, 1, r->u.write.handle);
        p = put_opt(p, 2, r->u.write.offset);
        break;
    }
    if (r->n_free_first != 0) {
        p = put_varint(p, KEY2(22, WT_LEN));
        p = put_varint(p, packed_body(r->free_first, r->n_free_first));
        for (size_t i = 0; i < r->n_free_first; i++) {
            p = put_varint(p, r->free_first[i]);
        }
    }
    (void)size; /* p == out + size: tests/client/test_wire.c checks the two agree */
    return out + size;
}

/* ---- decoding ---- */

struct rd {
    const uint8_t *p, *end;
};

/* A varint of at most `max` bytes: 10 for 64-bit fields, whose tenth byte may only be 0 or 1 (the
** value's top bit: protobuf-c drops the rest, so those are left to it), and 2 for enums (where
** protobuf-c's int32 reading is the plain value too). Below that, protobuf-c's value is the sum
** of the 7-bit groups however long the encoding, as here. Longer or cut off: false. */
static inline bool rd_varint(struct rd *r, int max, uint64_t *out)
{
    if (r->p != r->end && *r->p < 0x80) {
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
        if (i == 9 && b > 1) {
            return false;
        }
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A key: one byte (every field read here is below 16). */
static inline bool rd_key(struct rd *r, unsigned *num, unsigned *wt)
{
    if (r->p == r->end || *r->p >= 0x80) {
        return false;
    }
    *num = *r->p >> 3;
    *wt = *r->p++ & 7;
    return true;
}

/* A length-delimited field's bytes (lengths below 2 MiB). */
static inline bool rd_sub(struct rd *r, struct rd *sub)
{
    uint64_t n;
    if (!rd_varint(r, 3, &n) || n > (uint64_t)(r->end - r->p)) {
        return false;
    }
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return true;
}

/* A bool written as protobuf-c writes it: one byte, 0 or 1. */
static inline bool rd_bool(struct rd *r, bool *out)
{
    if (r->p == r->end || *r->p > 1) {
        return false;
    }
    *out = *r->p++ != 0;
    return true;
}

/* A string field: printable ASCII, tabs and newlines only (a NUL would cut protobuf-c's C string
** short; anything else is left to protobuf-c). */
static bool rd_string(struct rd *r, const char **s, size_t *n)
{
    struct rd sub;
    if (!rd_sub(r, &sub)) {
        return false;
    }
    for (const uint8_t *q = sub.p; q != sub.end; q++) {
        if (*q >= 0x80 || (*q < 0x20 && *q != '\n' && *q != '\t')) {
            return false;
        }
    }
    *s = (const char *)sub.p;
    *n = (size_t)(sub.end - sub.p);
    return true;
}

/* Field `num` (below 32) for the first time in this message. */
static inline bool first(uint32_t *seen, unsigned num)
{
    uint32_t bit = (uint32_t)1 << num;
    if (*seen & bit) {
        return false;
    }
    *seen |= bit;
    return true;
}

static bool rd_status(struct rd r, struct tdw_reply *out)
{
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r.p != r.end) {
        if (!rd_key(&r, &num, &wt) || !first(&seen, num)) {
            return false;
        }
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(&r, 2, &v)) {
                return false;
            }
            out->code = (int32_t)v;
        } else if (num == 2 && wt == WT_LEN) {
            if (!rd_string(&r, &out->message, &out->message_len)) {
                return false;
            }
        } else {
            return false; /* node, address (a redirect) and anything unknown: protobuf-c */
        }
    }
    return true;
}

static bool rd_tensor(struct rd r, struct tdw_tensor *t)
{
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r.p != r.end) {
        if (!rd_key(&r, &num, &wt) || !first(&seen, num)) {
            return false;
        }
        switch (num) {
        case 1:
        case 4:
        case 5:
        case 6:
            if (wt != WT_VARINT || !rd_varint(&r, 10, &v)) {
                return false;
            }
            *(num == 1   ? &t->handle
              : num == 4 ? &t->nbytes
              : num == 5 ? &t->offset
                         : &t->length) = v;
            break;
        case 2:
            if (wt != WT_VARINT || !rd_varint(&r, 2, &v)) {
                return false;
            }
            t->dtype = (int32_t)v;
            break;
        case 3: {
            struct rd sub; /* one packed chunk, as protobuf-c and the daemon write it */
            if (wt != WT_LEN || !rd_sub(&r, &sub) || sub.p == sub.end) {
                return false;
            }
            while (sub.p != sub.end) {
                if (t->ndim == TDW_MAX_DIMS || !rd_varint(&sub, 10, &v)) {
                    return false;
                }
                t->shape[t->ndim++] = (int64_t)v;
            }
            break;
        }
        case 7:
        case 9:
            if (wt != WT_VARINT || !rd_bool(&r, num == 7 ? &t->requires_grad : &t->is_leaf)) {
                return false;
            }
            break;
        case 8:
            if (wt != WT_LEN || !rd_string(&r, &t->grad_fn, &t->grad_fn_len)) {
                return false;
            }
            break;
        default: return false; /* strides, storage_offset, unknown: protobuf-c */
        }
    }
    return true;
}

/* Field `num` (varint wire type) next in r: its key is the one byte num << 3. */
static inline bool next_is(const struct rd *r, unsigned num, unsigned wt)
{
    return r->p != r->end && *r->p == KEY(num, wt);
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

/* A TensorInfo's fields before its message is read: protobuf's defaults. */
static void tensor_clear(struct tdw_tensor *t)
{
    t->handle = t->nbytes = t->offset = t->length = 0;
    t->dtype = 0;
    t->ndim = 0;
    t->requires_grad = t->is_leaf = false;
    t->grad_fn = "";
    t->grad_fn_len = 0;
}

/* A reply's fields before its message is read. */
static void reply_clear(struct tdw_reply *out)
{
    out->id = 0;
    out->code = 0;
    out->message = "";
    out->message_len = 0;
    out->has_tensor = false;
    out->backward_empty = false;
}

/* The common replies as the daemon writes them: fields in number order, each at most once, so
** read straight through with the same field readers as the general loop below; true only when
** that took the whole message. A message this accepts, the general loop accepts with the same
** result (it takes any order); anything else (another order, a repeated or unknown field, a
** result other than a TensorInfo) returns false and the general loop reads it from the start.
** The reply to a RunOp is id, an empty Status and a TensorInfo of handle, dtype, shape, nbytes
** and is_leaf: 18 bytes for a 2x2 tensor. */
static bool reply_in_order(struct rd r, struct tdw_reply *out)
{
    struct rd sub;
    uint64_t v;
    if (take(&r, 1, WT_VARINT) && !rd_varint(&r, 10, &out->id)) {
        return false;
    }
    if (take(&r, 2, WT_LEN)) {
        if (!rd_sub(&r, &sub)) {
            return false;
        }
        if (take(&sub, 1, WT_VARINT)) {
            if (!rd_varint(&sub, 2, &v)) {
                return false;
            }
            out->code = (int32_t)v;
        }
        if (take(&sub, 2, WT_LEN) && !rd_string(&sub, &out->message, &out->message_len)) {
            return false;
        }
        if (sub.p != sub.end) {
            return false;
        }
    }
    if (take(&r, 4, WT_LEN)) {
        struct tdw_tensor *t = &out->tensor;
        tensor_clear(t);
        if (!rd_sub(&r, &sub)) {
            return false;
        }
        if (take(&sub, 1, WT_VARINT) && !rd_varint(&sub, 10, &t->handle)) {
            return false;
        }
        if (take(&sub, 2, WT_VARINT)) {
            if (!rd_varint(&sub, 2, &v)) {
                return false;
            }
            t->dtype = (int32_t)v;
        }
        if (take(&sub, 3, WT_LEN)) {
            struct rd dims;
            if (!rd_sub(&sub, &dims) || dims.p == dims.end) {
                return false;
            }
            while (dims.p != dims.end) {
                if (t->ndim == TDW_MAX_DIMS || !rd_varint(&dims, 10, &v)) {
                    return false;
                }
                t->shape[t->ndim++] = (int64_t)v;
            }
        }
        uint64_t *u64[] = {&t->nbytes, &t->offset, &t->length};
        for (unsigned num = 4; num <= 6; num++) {
            if (take(&sub, num, WT_VARINT) && !rd_varint(&sub, 10, u64[num - 4])) {
                return false;
            }
        }
        if (take(&sub, 7, WT_VARINT) && !rd_bool(&sub, &t->requires_grad)) {
            return false;
        }
        if (take(&sub, 8, WT_LEN) && !rd_string(&sub, &t->grad_fn, &t->grad_fn_len)) {
            return false;
        }
        if (take(&sub, 9, WT_VARINT) && !rd_bool(&sub, &t->is_leaf)) {
            return false;
        }
        if (sub.p != sub.end) {
            return false;
        }
        out->has_tensor = true;
    }
    return r.p == r.end;
}

int tdw_reply_decode(const uint8_t *p, size_t n, struct tdw_reply *out)
{
    struct rd r = {p, n != 0 ? p + n : p};
    uint32_t seen = 0;
    unsigned num, wt;
    reply_clear(out);
    if (reply_in_order(r, out)) {
        return 0;
    }
    reply_clear(out); /* the general loop, from the start: what the one above set is reset */
    while (r.p != r.end) {
        struct rd sub;
        if (!rd_key(&r, &num, &wt) || !first(&seen, num)) {
            return TDW_HAND_OVER;
        }
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(&r, 10, &out->id)) {
                return TDW_HAND_OVER;
            }
        } else if (num == 2 && wt == WT_LEN) {
            if (!rd_sub(&r, &sub) || !rd_status(sub, out)) {
                return TDW_HAND_OVER;
            }
        } else if (num == 7 && wt == WT_LEN && !out->has_tensor) {
            /* an empty BackwardResult; one that says something: protobuf-c */
            if (!rd_sub(&r, &sub) || sub.p != sub.end) {
                return TDW_HAND_OVER;
            }
            out->backward_empty = true;
        } else if (num == 4 && wt == WT_LEN && !out->backward_empty) {
            struct tdw_tensor *t = &out->tensor;
            tensor_clear(t);
            if (!rd_sub(&r, &sub) || !rd_tensor(sub, t)) {
                return TDW_HAND_OVER;
            }
            out->has_tensor = true;
        } else {
            return TDW_HAND_OVER; /* another result, two results, or a field it does not know */
        }
    }
    return 0;
}
