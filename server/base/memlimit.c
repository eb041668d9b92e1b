/* server/base/memlimit.c — see memlimit.h. */
#include "base/memlimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A limit file's value, or -1 for none ("max", unreadable, or not a number). */
static int64_t read_limit(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char buf[64] = {0};
    int64_t v = -1;
    if (fgets(buf, sizeof buf, f) != NULL && buf[0] >= '0' && buf[0] <= '9') {
        char *end;
        unsigned long long x = strtoull(buf, &end, 10);
        if ((*end == '\n' || *end == '\0') && x < (unsigned long long)INT64_MAX) {
            v = (int64_t)x;
        }
    }
    fclose(f);
    return v;
}

/* Applies the limit files of `dir`/`path` and each of its ancestors up to `dir` (a parent's
** limit binds its children). */
static int64_t walk(int64_t best, const char *dir, const char *path, const char *file)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        char f[4600];
        snprintf(f, sizeof f, "%s%s%s/%s", dir, p[0] == '/' ? "" : "/", p, file);
        int64_t v = read_limit(f);
        if (v > 0 && v < best) {
            best = v;
        }
        char *slash = strrchr(p, '/');
        if (slash == NULL || p[0] == '\0' || (slash == p && p[1] == '\0')) {
            break;
        }
        slash[slash == p ? 1 : 0] = '\0'; /* "/a/b" -> "/a" -> "/" */
    }
    return best;
}

int64_t td_memory_limit(int64_t physical, const char *proc_cgroup, const char *cgroup_root)
{
    FILE *f = fopen(proc_cgroup, "r");
    if (f == NULL) {
        return physical;
    }
    int64_t best = physical;
    char line[4096];
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* "ID:CONTROLLERS:PATH"; v2 is "0::PATH" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL) {
            continue;
        }
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        char dir[4200];
        if (controllers[0] == '\0') {
            best = walk(best, cgroup_root, path, "memory.max");
            continue;
        }
        for (const char *p = controllers; p != NULL;) {
            if (strncmp(p, "memory", 6) == 0 && (p[6] == ',' || p[6] == '\0')) {
                snprintf(dir, sizeof dir, "%s/memory", cgroup_root);
                best = walk(best, dir, path, "memory.limit_in_bytes");
                break;
            }
            const char *comma = strchr(p, ',');
            p = comma != NULL ? comma + 1 : NULL;
        }
    }
    fclose(f);
    return best;
}
