/* server/base/assert.h — TD_ASSERT, the debug builds' check of an invariant.
**
** TD_ASSERT(cond) states something no client can make false: a refcount never drops below
** zero, a handle table's count matches its entries. In debug builds (TD_DEBUG: every build but
** `make RELEASE=1`, so every test run) it is assert(): a broken invariant aborts at once, with
** file and line. In release builds (-DNDEBUG) it compiles to nothing, and `cond` is not
** evaluated, so it must have no side effects; it is still type-checked, so it cannot rot.
** Never TD_ASSERT on wire data or on anything a request can choose: that is a validation,
** which returns an error (docs/STYLE.md: Errors).
*/
#ifndef TD_BASE_ASSERT_H
#define TD_BASE_ASSERT_H

#include <assert.h>

#if defined(TD_DEBUG) && !defined(NDEBUG)
#define TD_ASSERT(cond) assert(cond)
#else
#define TD_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

#endif
