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

static size_t str_size(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n != 0 ? 1 + varint_len(n) + n : 0;
}

static uint8_t *put_str(uint8_t *p, int num, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n != 0) {
        *p++ = KEY(num, WT_LEN);
        p = put_varint(p, n);
        memcpy(p, s, n);
        p += n;
    }
    return p;
}

static size_t shape_body(const Tensord__TensorInfo *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_shape; i++) {
        n += varint_len((uint64_t)t->shape[i]);
    }
    return n;
}

static size_t status_body(const Tensord__Status *s)
{
    return uint_size((uint64_t)s->code) + str_size(s->message);
}

static size_t info_body(const Tensord__TensorInfo *t)
{
    size_t shape = shape_body(t);
    return uint_size(t->handle) + uint_size((uint64_t)t->dtype) +
           (t->n_shape != 0 ? 1 + varint_len(shape) + shape : 0) + uint_size(t->nbytes) +
           uint_size(t->offset) + uint_size(t->length) + uint_size(t->requires_grad != 0) +
           str_size(t->grad_fn) + uint_size(t->is_leaf != 0);
}

static size_t sub_size(size_t body)
{
    return 1 + varint_len(body) + body;
}

int td_fastpack_handles(const Tensord__Response *resp)
{
    if (resp->base.n_unknown_fields != 0 ||
        (resp->result_case != TENSORD__RESPONSE__RESULT_TENSOR &&
         resp->result_case != TENSORD__RESPONSE__RESULT__NOT_SET)) {
        return 0;
    }
    if (resp->status != NULL && resp->status->code < 0) {
        return 0;
    }
    const Tensord__TensorInfo *t = resp->tensor;
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        if (t == NULL || t->dtype < 0) {
            return 0;
        }
        for (size_t i = 0; i < t->n_shape; i++) {
            if (t->shape[i] < 0) {
                return 0;
            }
        }
    }
    return 1;
}

size_t td_fastpack_size(const Tensord__Response *resp)
{
    size_t n = uint_size(resp->id);
    if (resp->status != NULL) {
        n += sub_size(status_body(resp->status));
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        n += sub_size(info_body(resp->tensor));
    }
    return n;
}

void td_fastpack(const Tensord__Response *resp, uint8_t *p)
{
    p = put_uint(p, 1, resp->id);
    if (resp->status != NULL) {
        const Tensord__Status *s = resp->status;
        *p++ = KEY(2, WT_LEN);
        p = put_varint(p, status_body(s));
        p = put_uint(p, 1, (uint64_t)s->code);
        p = put_str(p, 2, s->message);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        const Tensord__TensorInfo *t = resp->tensor;
        *p++ = KEY(4, WT_LEN);
        p = put_varint(p, info_body(t));
        p = put_uint(p, 1, t->handle);
        p = put_uint(p, 2, (uint64_t)t->dtype);
        if (t->n_shape != 0) {
            *p++ = KEY(3, WT_LEN);
            p = put_varint(p, shape_body(t));
            for (size_t i = 0; i < t->n_shape; i++) {
                p = put_varint(p, (uint64_t)t->shape[i]);
            }
        }
        p = put_uint(p, 4, t->nbytes);
        p = put_uint(p, 5, t->offset);
        p = put_uint(p, 6, t->length);
        p = put_uint(p, 7, t->requires_grad != 0);
        p = put_str(p, 8, t->grad_fn);
        (void)put_uint(p, 9, t->is_leaf != 0);
    }
}
