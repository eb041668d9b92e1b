/* server/rpc/fastunpack.c — see fastunpack.h.
**
** One set of parsers serves both passes: with ctx.fill false they only validate, count and size
** (ctx.need); with it true they write into the block the first pass sized, taking its pieces in
** the same order. A parser returns false for anything outside the accepted subset; the second
** pass reads bytes the first accepted, so it cannot fail. */
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
    bool fill;
    size_t need;     /* pass 1: the block's size */
    uint8_t *next;   /* pass 2: the block's next free byte */
    size_t n_inputs; /* pass 1 counts RunOp's operands; pass 2 reads it */
    ProtobufCAllocator *alloc;
    uint64_t *arrays[2]; /* pass 2: the packed arrays allocated so far (free_first, handles) */
    int narrays;
};

/* A piece of the block: pass 1 sizes it, pass 2 hands it out (8-byte aligned: pointers, uint64
** and double are the strictest members). */
static void *take(struct ctx *c, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (!c->fill) {
        c->need += n;
        return NULL;
    }
    void *p = c->next;
    c->next += n;
    return p;
}

static inline bool rd_varint(struct rd *r, int max, uint64_t *out)
{
    if (r->p != r->end && *r->p < 0x80) { /* one byte: most keys, ids, handles, lengths */
        *out = *r->p++;
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

/* A packed repeated uint64 (one non-empty chunk): counted, then in pass 2 written to a piece. */
static bool rd_packed(struct ctx *c, struct rd *r, size_t *n_out, uint64_t **out)
{
    struct rd sub;
    if (!rd_sub(r, &sub) || sub.p == sub.end) {
        return false;
    }
    size_t n = 0;
    for (struct rd s = sub; s.p != s.end; n++) {
        uint64_t v;
        if (!rd_varint(&s, MAX_U64_BYTES, &v)) {
            return false;
        }
    }
    if (c->fill) {
        /* Its own allocation, as protobuf-c makes: a large array overflows the job's arena
        ** alone, and is charged as protobuf-c's would be. */
        uint64_t *a = c->narrays < 2 ? c->alloc->alloc(c->alloc->allocator_data, n * sizeof *a)
                                     : NULL;
        if (a == NULL) {
            return false;
        }
        c->arrays[c->narrays++] = a;
        for (size_t i = 0; i < n; i++) {
            (void)rd_varint(&sub, MAX_U64_BYTES, &a[i]);
        }
        *n_out = n;
        *out = a;
    }
    return true;
}

static bool rd_scalar(struct ctx *c, struct rd *r, Tensord__Scalar **out)
{
    Tensord__Scalar *m = take(c, sizeof *m);
    if (c->fill) {
        *m = (Tensord__Scalar)TENSORD__SCALAR__INIT;
        *out = m;
    }
    unsigned num, wt;
    uint64_t v;
    double d;
    protobuf_c_boolean b;
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
            memcpy(&d, r->p, 8); /* little-endian on the wire and here, as protobuf-c assumes */
            r->p += 8;
            if (c->fill) {
                m->value_case = TENSORD__SCALAR__VALUE_F;
                m->f = d;
            }
        } else if (num == 2 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            if (c->fill) {
                m->value_case = TENSORD__SCALAR__VALUE_I;
                m->i = (int64_t)(v >> 1) ^ -(int64_t)(v & 1); /* zigzag */
            }
        } else if (num == 3 && wt == WT_VARINT) {
            if (!rd_bool(r, &b)) {
                return false;
            }
            if (c->fill) {
                m->value_case = TENSORD__SCALAR__VALUE_B;
                m->b = b;
            }
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_operand(struct ctx *c, struct rd *r, Tensord__Operand **out)
{
    Tensord__Operand *m = take(c, sizeof *m);
    if (c->fill) {
        *m = (Tensord__Operand)TENSORD__OPERAND__INIT;
        *out = m;
    }
    unsigned num, wt;
    uint64_t v;
    bool any = false;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || any) {
            return false;
        }
        any = true;
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            if (c->fill) {
                m->value_case = TENSORD__OPERAND__VALUE_HANDLE;
                m->handle = v;
            }
        } else if (num == 2 && wt == WT_LEN) {
            struct rd sub;
            if (!rd_sub(r, &sub) || !rd_scalar(c, &sub, c->fill ? &m->scalar : NULL)) {
                return false;
            }
            if (c->fill) {
                m->value_case = TENSORD__OPERAND__VALUE_SCALAR;
            }
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_run_op(struct ctx *c, struct rd *r, Tensord__RunOp **out)
{
    Tensord__RunOp *m = take(c, sizeof *m);
    Tensord__Operand **inputs = NULL;
    if (c->fill) {
        *m = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
        *out = m;
        if (c->n_inputs > 0) {
            inputs = take(c, c->n_inputs * sizeof *inputs);
            m->inputs = inputs;
        }
    }
    uint32_t seen = 0;
    size_t n = 0;
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
            if (c->fill) {
                *(num == 1 ? &m->out : num == 6 ? &m->out2 : &m->out3) = v;
            }
        } else if (num == 2 && wt == WT_VARINT) {
            if (!rd_varint(r, 2, &v)) {
                return false; /* op codes are below 2^14; longer varints go to protobuf-c */
            }
            if (c->fill) {
                m->op = (Tensord__Op)v;
            }
        } else if (num == 3 && wt == WT_LEN) {
            struct rd sub;
            if (n == MAX_INPUTS || !rd_sub(r, &sub) ||
                !rd_operand(c, &sub, c->fill ? &inputs[n] : NULL)) {
                return false;
            }
            n++;
        } else if (num == 4 && wt == WT_VARINT) {
            protobuf_c_boolean b;
            if (!rd_bool(r, &b)) {
                return false;
            }
            if (c->fill) {
                m->inplace = b;
            }
        } else {
            return false; /* args (5) and anything unknown: protobuf-c */
        }
    }
    if (c->fill) {
        m->n_inputs = n;
    } else {
        c->n_inputs = n;
        take(c, n * sizeof(Tensord__Operand *));
    }
    return true;
}

/* Get (wanted 9), Write (19) and Free (10): flat messages. */
static bool rd_get(struct ctx *c, struct rd *r, Tensord__Get **out)
{
    Tensord__Get *m = take(c, sizeof *m);
    if (c->fill) {
        *m = (Tensord__Get)TENSORD__GET__INIT;
        *out = m;
    }
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
            if (c->fill) {
                *(num == 1 ? &m->handle : num == 3 ? &m->offset : &m->length) = v;
            }
        } else if (num == 2 && wt == WT_VARINT) {
            protobuf_c_boolean b;
            if (!rd_bool(r, &b)) {
                return false;
            }
            if (c->fill) {
                m->meta_only = b;
            }
        } else {
            return false;
        }
    }
    return true;
}

static bool rd_write(struct ctx *c, struct rd *r, Tensord__Write **out)
{
    Tensord__Write *m = take(c, sizeof *m);
    if (c->fill) {
        *m = (Tensord__Write)TENSORD__WRITE__INIT;
        *out = m;
    }
    uint32_t seen = 0;
    unsigned num, wt;
    uint64_t v;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || !first_time(&seen, num) ||
            (num != 1 && num != 2) || wt != WT_VARINT || !rd_varint(r, MAX_U64_BYTES, &v)) {
            return false;
        }
        if (c->fill) {
            *(num == 1 ? &m->handle : &m->offset) = v;
        }
    }
    return true;
}

static bool rd_free(struct ctx *c, struct rd *r, Tensord__Free **out)
{
    Tensord__Free *m = take(c, sizeof *m);
    if (c->fill) {
        *m = (Tensord__Free)TENSORD__FREE__INIT;
        *out = m;
    }
    uint32_t seen = 0;
    unsigned num, wt;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num != 1 || wt != WT_LEN || !first_time(&seen, num) ||
            !rd_packed(c, r, c->fill ? &m->n_handles : NULL, c->fill ? &m->handles : NULL)) {
            return false;
        }
    }
    return true;
}

static bool rd_request(struct ctx *c, struct rd *r, Tensord__Request *m)
{
    uint32_t seen = 0;
    bool body = false;
    unsigned num, wt;
    uint64_t v;
    while (r->p != r->end) {
        if (!rd_key(r, &num, &wt) || num >= 32 || !first_time(&seen, num)) {
            return false;
        }
        if (num == 1 && wt == WT_VARINT) {
            if (!rd_varint(r, MAX_U64_BYTES, &v)) {
                return false;
            }
            if (c->fill) {
                m->id = v;
            }
            continue;
        }
        if (num == 22 && wt == WT_LEN) {
            if (!rd_packed(c, r, c->fill ? &m->n_free_first : NULL,
                           c->fill ? &m->free_first : NULL)) {
                return false;
            }
            continue;
        }
        struct rd sub;
        if (wt != WT_LEN || body || !rd_sub(r, &sub)) {
            return false; /* one body member at most: protobuf-c's rules for more */
        }
        body = true;
        bool ok;
        switch (num) {
        case 8:
            ok = rd_run_op(c, &sub, c->fill ? &m->run_op : NULL);
            if (c->fill) {
                m->body_case = TENSORD__REQUEST__BODY_RUN_OP;
            }
            break;
        case 9:
            ok = rd_get(c, &sub, c->fill ? &m->get : NULL);
            if (c->fill) {
                m->body_case = TENSORD__REQUEST__BODY_GET;
            }
            break;
        case 10:
            ok = rd_free(c, &sub, c->fill ? &m->free : NULL);
            if (c->fill) {
                m->body_case = TENSORD__REQUEST__BODY_FREE;
            }
            break;
        case 19:
            ok = rd_write(c, &sub, c->fill ? &m->write : NULL);
            if (c->fill) {
                m->body_case = TENSORD__REQUEST__BODY_WRITE;
            }
            break;
        default: ok = false; break;
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

Tensord__Request *td_fastunpack_request(ProtobufCAllocator *alloc, size_t len, const uint8_t *data)
{
    struct ctx c = {.fill = false};
    const uint8_t *end = len != 0 ? data + len : data; /* data may be NULL when len is 0 */
    struct rd r = {data, end};
    (void)take(&c, sizeof(Tensord__Request));
    if (!rd_request(&c, &r, NULL)) {
        return NULL;
    }
    uint8_t *block = alloc->alloc(alloc->allocator_data, c.need);
    if (block == NULL) {
        return NULL;
    }
    c.fill = true;
    c.next = block;
    c.alloc = alloc;
    Tensord__Request *m = take(&c, sizeof *m);
    *m = (Tensord__Request)TENSORD__REQUEST__INIT;
    r = (struct rd){data, end};
    if (!rd_request(&c, &r, m)) {
        /* Only an array's allocation can fail here: the bytes passed the first pass. */
        for (int i = 0; i < c.narrays; i++) {
            alloc->free(alloc->allocator_data, c.arrays[i]);
        }
        alloc->free(alloc->allocator_data, block);
        return NULL;
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
