/* server/rpc/fastpack.c — see fastpack.h. */
#include "fastpack.h"

#include <string.h>

/* Every field number here is below 16, so each key is one byte: number << 3 | wire type. */
enum { WT_VARINT = 0, WT_LEN = 2 };
#define KEY(num, wt) ((uint8_t)((num) << 3 | (wt)))

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A varint field, omitted at its default (zero) as proto3 does. */
static size_t uint_size(uint64_t v)
{
    return v != 0 ? 1 + varint_len(v) : 0;
}

static uint8_t *put_uint(uint8_t *p, int num, uint64_t v)
{
    if (v != 0) {
        *p++ = KEY(num, WT_VARINT);
        p = put_varint(p, v);
    }
    return p;
}

static size_t bytes_size(size_t n)
{
    return n != 0 ? 1 + varint_len(n) + n : 0;
}

static uint8_t *put_bytes(uint8_t *p, int num, const char *s, size_t n)
{
    if (n != 0) {
        *p++ = KEY(num, WT_LEN);
        p = put_varint(p, n);
        memcpy(p, s, n);
        p += n;
    }
    return p;
}

static size_t sub_size(size_t body)
{
    return 1 + varint_len(body) + body;
}

bool td_fastpack_plan(const Tensord__Response *resp, struct td_fastpack_plan *plan)
{
    if (resp->base.n_unknown_fields != 0 ||
        (resp->result_case != TENSORD__RESPONSE__RESULT_TENSOR &&
         resp->result_case != TENSORD__RESPONSE__RESULT__NOT_SET)) {
        return false;
    }
    *plan = (struct td_fastpack_plan){.total = uint_size(resp->id)};
    const Tensord__Status *s = resp->status;
    if (s != NULL) {
        if (s->code < 0 || (s->node != NULL && s->node[0] != '\0') ||
            (s->address != NULL && s->address[0] != '\0')) {
            return false; /* a redirect (rare): protobuf-c packs Status.node and address */
        }
        plan->message_len = s->message != NULL ? strlen(s->message) : 0;
        plan->status_body = uint_size((uint64_t)s->code) + bytes_size(plan->message_len);
        plan->total += sub_size(plan->status_body);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        const Tensord__TensorInfo *t = resp->tensor;
        if (t == NULL || t->dtype < 0 || t->n_strides != 0 || t->storage_offset != 0) {
            return false; /* strides are only in meta_only Gets' replies: protobuf-c's */
        }
        for (size_t i = 0; i < t->n_shape; i++) {
            if (t->shape[i] < 0) {
                return false; /* a negative varint is ten bytes: left to protobuf-c */
            }
            plan->shape_body += varint_len((uint64_t)t->shape[i]);
        }
        plan->grad_fn_len = t->grad_fn != NULL ? strlen(t->grad_fn) : 0;
        plan->info_body = uint_size(t->handle) + uint_size((uint64_t)t->dtype) +
                          (t->n_shape != 0 ? sub_size(plan->shape_body) : 0) +
                          uint_size(t->nbytes) + uint_size(t->offset) + uint_size(t->length) +
                          uint_size(t->requires_grad != 0) + bytes_size(plan->grad_fn_len) +
                          uint_size(t->is_leaf != 0);
        plan->total += sub_size(plan->info_body);
    }
    return true;
}

void td_fastpack(const Tensord__Response *resp, const struct td_fastpack_plan *plan, uint8_t *p)
{
    p = put_uint(p, 1, resp->id);
    if (resp->status != NULL) {
        const Tensord__Status *s = resp->status;
        *p++ = KEY(2, WT_LEN);
        p = put_varint(p, plan->status_body);
        p = put_uint(p, 1, (uint64_t)s->code);
        p = put_bytes(p, 2, s->message, plan->message_len);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        const Tensord__TensorInfo *t = resp->tensor;
        *p++ = KEY(4, WT_LEN);
        p = put_varint(p, plan->info_body);
        p = put_uint(p, 1, t->handle);
        p = put_uint(p, 2, (uint64_t)t->dtype);
        if (t->n_shape != 0) {
            *p++ = KEY(3, WT_LEN);
            p = put_varint(p, plan->shape_body);
            for (size_t i = 0; i < t->n_shape; i++) {
                p = put_varint(p, (uint64_t)t->shape[i]);
            }
        }
        p = put_uint(p, 4, t->nbytes);
        p = put_uint(p, 5, t->offset);
        p = put_uint(p, 6, t->length);
        p = put_uint(p, 7, t->requires_grad != 0);
        p = put_bytes(p, 8, t->grad_fn, plan->grad_fn_len);
        (void)put_uint(p, 9, t->is_leaf != 0);
    }
}
