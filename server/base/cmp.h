/* server/base/cmp.h — comparison functions for qsort and bsearch over arrays the server sorts
** to check for duplicates and to look things up (handles, names). */
#ifndef TD_BASE_CMP_H
#define TD_BASE_CMP_H

/* Elements are uint64_t. */
int td_cmp_u64(const void *a, const void *b);

/* Elements are const char * (NUL-terminated), compared with strcmp. */
int td_cmp_str(const void *a, const void *b);

#endif
