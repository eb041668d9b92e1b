/* tests/core/helpers.h — small builders shared by the core tests (header-only). */
#ifndef TD_TESTS_CORE_HELPERS_H
#define TD_TESTS_CORE_HELPERS_H

#include <string.h>

#include "core/ops.h"
#include "core/tensor.h"

/* A contiguous tensor of dtype dt holding `v` (converted like a C cast). */
static inline struct td_tensor *mk(enum td_dtype dt, const int64_t *shape, int ndim,
                                   const double *v)
{
    struct td_tensor *t;
    assert_int_equal(td_tensor_empty(&t, dt, shape, ndim, NULL, NULL), 0);
    char *d = td_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) {
        switch (dt) {
        case TD_DTYPE_F32: ((float *)d)[i] = (float)v[i]; break;
        case TD_DTYPE_F64: ((double *)d)[i] = v[i]; break;
        case TD_DTYPE_I32: ((int32_t *)d)[i] = (int32_t)v[i]; break;
        case TD_DTYPE_I64: ((int64_t *)d)[i] = (int64_t)v[i]; break;
        default: ((uint8_t *)d)[i] = v[i] != 0; break;
        }
    }
    return t;
}

/* Element i (C order of a contiguous tensor) as double. */
static inline double at(const struct td_tensor *t, int64_t i)
{
    const char *d = td_tensor_data(t);
    switch (t->dtype) {
    case TD_DTYPE_F32: return ((const float *)d)[i];
    case TD_DTYPE_F64: return ((const double *)d)[i];
    case TD_DTYPE_I32: return ((const int32_t *)d)[i];
    case TD_DTYPE_I64: return (double)((const int64_t *)d)[i];
    default: return ((const uint8_t *)d)[i];
    }
}

static inline struct td_operand tens(struct td_tensor *t)
{
    struct td_operand o = {.t = t};
    return o;
}

static inline struct td_operand num(struct td_scalar s)
{
    struct td_operand o = {.t = NULL, .s = s};
    return o;
}

/* Asserts that t exists and has dtype dt and the given shape. */
static inline void expect_meta(const struct td_tensor *t, enum td_dtype dt, int ndim,
                               const int64_t *shape)
{
    assert_non_null(t);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) {
        assert_int_equal(t->shape[d], shape[d]);
    }
}

/* Asserts that t exists and has dtype dt, the given shape and exactly the values v (C order). */
static inline void expect_values(const struct td_tensor *t, enum td_dtype dt, int ndim,
                                 const int64_t *shape, const double *v)
{
    expect_meta(t, dt, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) {
        if (at(t, i) != v[i]) {
            fail_msg("element %lld: got %.17g, want %.17g", (long long)i, at(t, i), v[i]);
        }
    }
}

/* A transposed view of a 2-D tensor, sharing its storage (there are no view ops yet). */
static inline struct td_tensor *transposed(struct td_tensor *t)
{
    struct td_tensor *v = td_malloc(sizeof *v);
    assert_non_null(v);
    *v = *t;
    v->refs = 1;
    v->storage->refs++;
    v->shape[0] = t->shape[1];
    v->shape[1] = t->shape[0];
    v->strides[0] = t->strides[1];
    v->strides[1] = t->strides[0];
    v->grad = NULL; /* the view does not own t's grad */
    return v;
}

#endif
