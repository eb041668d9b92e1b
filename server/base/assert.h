/* server/base/assert.h — TD_ASSERT: invariants no client can influence, checked in debug builds.
**
** On when TD_DEBUG is defined or the build is sanitized (SAN=1: -fsanitize=address defines
** __SANITIZE_ADDRESS__ under GCC; clang answers __has_feature), off otherwise, so a release
** daemon never aborts on one. Never for wire data: rpc validates that and returns errors
** (docs/STYLE.md, Errors). Depends on nothing but <assert.h>.
*/
#ifndef TD_BASE_ASSERT_H
#define TD_BASE_ASSERT_H

#if !defined(TD_DEBUG) && defined(__SANITIZE_ADDRESS__)
#define TD_DEBUG 1
#endif
#if !defined(TD_DEBUG) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TD_DEBUG 1
#endif
#endif

#ifdef TD_DEBUG
#include <assert.h>
#define TD_ASSERT(cond) assert(cond)
#else
#define TD_ASSERT(cond) ((void)0)
#endif

#endif
