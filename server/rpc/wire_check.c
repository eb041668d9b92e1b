/* server/rpc/wire_check.c — compile-time ties between tensord.proto's numbers and the tables
** that mirror them. Nothing here runs; the file fails to compile when the two drift apart.
**
** Op: rpc's wire_op() maps each row of core/ops.def to its TENSORD__OP__OP_<id> (a row without
** a wire value fails to compile there; two rows on one value are a duplicate case there). Here,
** every row's wire value is positive: OP_UNSPECIFIED (0) is no op. Values need not be dense
** (issue 16 reserves a range per family, so the enum has gaps). A proto value beyond the table is tests/build/test_mirrors.c's catch (the
** descriptor's count is only known at run time).
*/
#include "core/ops.h"
#include "proto/tensord.pb-c.h"

#define OP(id, name, nin, inplace, flags, gname, ghook, sig, shape, dtype, fwd, make, bwd, cost)   \
    _Static_assert((int)TENSORD__OP__OP_##id >= 1, "op " #id ": its wire value is below 1");
#include "core/ops.def"
#undef OP
_Static_assert(TENSORD__OP__OP_UNSPECIFIED == 0, "the wire's op 0 is no op");
