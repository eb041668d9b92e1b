/* server/core/dtype.h — element types, Python-number scalars and PyTorch's promotion rules.
**
** The enum is ordered so that for our five types PyTorch's promotion lattice is a total order:
** bool < int32 < int64 < float32 < float64, and promote(a, b) is the larger of the two.
** Pure C: no libuv, no protobuf.
*/
#ifndef TD_CORE_DTYPE_H
#define TD_CORE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum td_dtype {
    TD_DTYPE_BOOL,
    TD_DTYPE_I32,
    TD_DTYPE_I64,
    TD_DTYPE_F32,
    TD_DTYPE_F64,
    TD_DTYPE_COUNT
};

#define TD_DTYPE_DEFAULT_FLOAT TD_DTYPE_F32 /* torch.get_default_dtype() */

/* Element size in bytes. dt must be valid. Inline: the hot paths ask for it per operand. */
extern const size_t td_dtype_sizes[TD_DTYPE_COUNT];
static inline size_t td_dtype_size(enum td_dtype dt)
{
    return td_dtype_sizes[dt];
}

/* PyTorch's names, with tensord's prefix wherever torch writes "torch." (in printed text and in
** error messages alike: "tensord.float32", "tensord.Size([2])"; a client that prints torch's
** names maps the one prefix back), and the short C++ names that PyTorch's
** error messages use ("Float", "Double", "Int", "Long", "Bool"). */
const char *td_dtype_name(enum td_dtype dt); /* "float32" */
/* torch's legacy tensor type name, as its error messages print it, with tensord's prefix:
** "tensord.FloatTensor". */
const char *td_dtype_legacy_name(enum td_dtype dt);
const char *td_dtype_cname(enum td_dtype dt); /* "Float" */

bool td_dtype_is_float(enum td_dtype dt);
bool td_dtype_is_valid(int dt);

/* promote_types(a, b) for our five dtypes. */
enum td_dtype td_dtype_promote(enum td_dtype a, enum td_dtype b);

/* torch.can_cast(from, to): float -> integral/bool and non-bool -> bool are refused. */
bool td_dtype_can_cast(enum td_dtype from, enum td_dtype to);

/* A Python number operand. Its dtype for promotion is bool, int64 or the default float. */
enum td_scalar_kind { TD_SCALAR_BOOL, TD_SCALAR_INT, TD_SCALAR_FLOAT };

struct td_scalar {
    enum td_scalar_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
    } v;
};

static inline struct td_scalar td_scalar_f(double f)
{
    struct td_scalar s = {.kind = TD_SCALAR_FLOAT, .v.f = f};
    return s;
}
static inline struct td_scalar td_scalar_i(int64_t i)
{
    struct td_scalar s = {.kind = TD_SCALAR_INT, .v.i = i};
    return s;
}
static inline struct td_scalar td_scalar_b(bool b)
{
    struct td_scalar s = {.kind = TD_SCALAR_BOOL, .v.b = b};
    return s;
}

/* The Python type name of a scalar's kind ("bool", "int", "float"), as torch's TypeErrors say. */
static inline const char *td_scalar_kind_name(enum td_scalar_kind k)
{
    return k == TD_SCALAR_BOOL ? "bool" : k == TD_SCALAR_INT ? "int" : "float";
}

/* The dtype a scalar has when it takes part in promotion (a "wrapped number" in PyTorch). */
enum td_dtype td_scalar_dtype(struct td_scalar s);
double td_scalar_to_double(struct td_scalar s);
int64_t td_scalar_to_int(struct td_scalar s); /* floats truncate toward zero, saturating */

#endif
