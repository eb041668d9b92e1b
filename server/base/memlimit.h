/* server/base/memlimit.h — how much memory this process may use: physical memory, or less when
** its cgroup (v1 or v2) says so. A daemon in a container with --memory=4g on a 64 GiB host must
** size its default cap from the 4 GiB, or the kernel kills it before its own limits say no. */
#ifndef TD_BASE_MEMLIMIT_H
#define TD_BASE_MEMLIMIT_H

#include <stdint.h>

/* The smallest of `physical` and every memory limit on the path of this process's cgroups, read
** from `proc_cgroup` (normally "/proc/self/cgroup") with the hierarchies mounted under
** `cgroup_root` (normally "/sys/fs/cgroup": v2 files at <root>/<path>/memory.max, v1 at
** <root>/memory/<path>/memory.limit_in_bytes). Unreadable files and "max" are no limit. */
int64_t td_memory_limit(int64_t physical, const char *proc_cgroup, const char *cgroup_root);

#endif
