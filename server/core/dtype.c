/* server/core/dtype.c — dtype facts and PyTorch's promotion and casting rules. */
#include "dtype.h"

#include <math.h>

const size_t td_dtype_sizes[TD_DTYPE_COUNT] = {1, 4, 8, 4, 8};
static const char *const dtype_names[TD_DTYPE_COUNT] = {"bool", "int32", "int64", "float32",
                                                        "float64"};
static const char *const dtype_cnames[TD_DTYPE_COUNT] = {"Bool", "Int", "Long", "Float", "Double"};

const char *td_dtype_name(enum td_dtype dt)
{
    return dtype_names[dt];
}

const char *td_dtype_cname(enum td_dtype dt)
{
    return dtype_cnames[dt];
}

bool td_dtype_is_float(enum td_dtype dt)
{
    return dt == TD_DTYPE_F32 || dt == TD_DTYPE_F64;
}

bool td_dtype_is_valid(int dt)
{
    return dt >= 0 && dt < TD_DTYPE_COUNT;
}

enum td_dtype td_dtype_promote(enum td_dtype a, enum td_dtype b)
{
    return a > b ? a : b;
}

bool td_dtype_can_cast(enum td_dtype from, enum td_dtype to)
{
    if (td_dtype_is_float(from) && !td_dtype_is_float(to)) {
        return false;
    }
    if (from != TD_DTYPE_BOOL && to == TD_DTYPE_BOOL) {
        return false;
    }
    return true;
}

enum td_dtype td_scalar_dtype(struct td_scalar s)
{
    switch (s.kind) {
    case TD_SCALAR_BOOL: return TD_DTYPE_BOOL;
    case TD_SCALAR_INT: return TD_DTYPE_I64;
    default: return TD_DTYPE_DEFAULT_FLOAT;
    }
}

double td_scalar_to_double(struct td_scalar s)
{
    switch (s.kind) {
    case TD_SCALAR_BOOL: return s.v.b ? 1.0 : 0.0;
    case TD_SCALAR_INT: return (double)s.v.i;
    default: return s.v.f;
    }
}

int64_t td_scalar_to_int(struct td_scalar s)
{
    switch (s.kind) {
    case TD_SCALAR_BOOL: return s.v.b;
    case TD_SCALAR_INT: return s.v.i;
    default:
        if (isnan(s.v.f)) {
            return 0;
        }
        if (s.v.f >= 9223372036854775807.0) {
            return INT64_MAX;
        }
        if (s.v.f <= -9223372036854775808.0) {
            return INT64_MIN;
        }
        return (int64_t)s.v.f;
    }
}

const char *td_dtype_legacy_name(enum td_dtype dt)
{
    static const char *const names[TD_DTYPE_COUNT] = {"tensord.BoolTensor", "tensord.IntTensor",
                                                      "tensord.LongTensor", "tensord.FloatTensor",
                                                      "tensord.DoubleTensor"};
    return (unsigned)dt < TD_DTYPE_COUNT ? names[dt] : "tensord.Tensor";
}
