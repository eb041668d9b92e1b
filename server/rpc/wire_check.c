/* server/rpc/wire_check.c — compile-time ties between tensord.proto's numbers and the tables
** that mirror them. Nothing here runs; the file fails to compile when the two drift apart.
**
** Op: rpc's wire_op() maps each row of core/ops.def to its TENSORD__OP__OP_<id> (a row without
** a wire value fails to compile there; two rows on one value are a duplicate case there). Here,
** every row's wire value lies in 1..255 (issue 16 gives each family of ops its own range of
** values, so the values have gaps); OP_UNSPECIFIED (0) is no op. A proto value beyond the table
** is tests/build/test_mirrors.c's catch (the descriptor's count is only known at run time).
*/
#include "core/ops.h"
#include "proto/tensord.pb-c.h"

#define OP(id, name, nin, inplace, flags, gname, ghook, sig, shape, dtype, fwd, make, bwd, cost)   \
    _Static_assert((int)TENSORD__OP__OP_##id >= 1 && (int)TENSORD__OP__OP_##id <= 255,             \
                   "the wire value of op " #id " lies outside 1..255");
#include "core/ops.def"
#undef OP
_Static_assert(TENSORD__OP__OP_UNSPECIFIED == 0, "the wire's op 0 is no op");
