/* server/base/cmp.c — see cmp.h. */
#include "base/cmp.h"

#include <stdint.h>
#include <string.h>

int td_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int td_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
