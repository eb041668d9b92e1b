/* The memory a process may use: the smallest of physical memory and the limits on its cgroup
** path, v1 and v2, read from a fake /proc/self/cgroup and /sys/fs/cgroup built here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/memlimit.h"

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(root) + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int64_t limit(int64_t physical)
{
    char proc[512], sys[512];
    snprintf(proc, sizeof proc, "%s/proc_cgroup", root);
    snprintf(sys, sizeof sys, "%s/sys", root);
    return td_memory_limit(physical, proc, sys);
}

static void test_cgroup_limits(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/td_test_memlimit.XXXXXX");
    assert_non_null(mkdtemp(root));
    const int64_t phys = (int64_t)64 << 30;

    assert_int_equal(limit(phys), phys); /* no /proc file: physical memory */

    /* v2: the leaf says max, its parent 4 GiB: the parent binds */
    put("proc_cgroup", "0::/ctr/app\n");
    put("sys/ctr/app/memory.max", "max\n");
    put("sys/ctr/memory.max", "4294967296\n");
    assert_int_equal(limit(phys), (int64_t)4 << 30);
    assert_int_equal(limit((int64_t)2 << 30), (int64_t)2 << 30); /* physical smaller still */

    /* v2 in a container namespace: the path is "/", the limit at the root of the mount */
    put("proc_cgroup", "0::/\n");
    put("sys/memory.max", "1073741824\n");
    assert_int_equal(limit(phys), (int64_t)1 << 30);

    /* v1 (and hybrid): the memory controller's line, among others, comma lists included */
    put("proc_cgroup", "4:cpu,cpuacct:/x\n3:memory:/process_api/ab\n0::/\n");
    put("sys/memory/process_api/ab/memory.limit_in_bytes", "9223372036854771712\n"); /* none */
    put("sys/memory/process_api/memory.limit_in_bytes", "536870912\n");
    put("sys/memory.max", "max\n");
    assert_int_equal(limit(phys), (int64_t)512 << 20);

    /* garbage is no limit */
    put("sys/memory/process_api/memory.limit_in_bytes", "lots\n");
    assert_int_equal(limit(phys), phys);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cgroup_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
