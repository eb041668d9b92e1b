/* tests/fuzz/seeds/record_preload.c — an LD_PRELOAD shim that records what tensord reads from
** each connection it accepts, so the fuzz seeds can be the test suites' own byte streams.
**
** record_seeds.py builds this into a shared object and points the suites' TENSORD_BIN at a
** wrapper that runs the daemon with it preloaded. It interposes the libc calls that libuv makes
** through the PLT: accept4/accept (a new connection: its fd is marked and gets a fresh file),
** read (bytes read from a marked fd are appended to that connection's file) and close (the mark
** is dropped, so a file that later reuses the fd number is not recorded). Files are
** $TD_RECORD_DIR/<pid>-<seq>; each keeps at most TD_RECORD_MAX bytes (a 256 MiB upload would
** only be truncated by the seed converter anyway). Nothing else about the daemon changes: the
** shim never fails a call it wraps, and without TD_RECORD_DIR it records nothing.
**
** The safetensors files the suites make are kept as well, as $TD_RECORD_DIR/st-<pid>-<seq>
** (at most TD_RECORD_MAX bytes): the daemon's (persist.c writes a temporary and renames it into
** place, so rename is interposed) and tensorctl's (it writes with fopen/fclose, so those are).
**
** It knows nothing of frames or tensors; tests/fuzz/record_seeds.py turns the files into seeds.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TD_RECORD_MAX_FDS 65536
#define TD_RECORD_MAX (1 << 20) /* bytes kept per connection */

static ssize_t (*real_read)(int, void *, size_t);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_close)(int);
static int (*real_rename)(const char *, const char *);
static FILE *(*real_fopen)(const char *, const char *);
static int (*real_fclose)(FILE *);

static const char *record_dir;
static atomic_int seq;
static atomic_int marked[TD_RECORD_MAX_FDS]; /* 0: not a recorded connection, else its seq */
static atomic_long kept[TD_RECORD_MAX_FDS];  /* bytes recorded so far on that fd */

__attribute__((constructor)) static void record_init(void)
{
    real_read = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    real_fopen = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    record_dir = getenv("TD_RECORD_DIR");
}

static void record_path(char *buf, size_t n, int s)
{
    snprintf(buf, n, "%s/%d-%06d", record_dir, (int)getpid(), s);
}

static void mark(int fd)
{
    if (record_dir == NULL || fd < 0 || fd >= TD_RECORD_MAX_FDS) {
        return;
    }
    int s = atomic_fetch_add(&seq, 1) + 1;
    atomic_store(&kept[fd], 0);
    atomic_store(&marked[fd], s);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int c = real_accept4(fd, addr, len, flags);
    mark(c);
    return c;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int c = real_accept(fd, addr, len);
    mark(c);
    return c;
}

int close(int fd)
{
    if (fd >= 0 && fd < TD_RECORD_MAX_FDS) {
        atomic_store(&marked[fd], 0);
    }
    return real_close(fd);
}

ssize_t read(int fd, void *buf, size_t n)
{
    ssize_t got = real_read(fd, buf, n);
    if (got <= 0 || fd < 0 || fd >= TD_RECORD_MAX_FDS) {
        return got;
    }
    int s = atomic_load(&marked[fd]);
    if (s == 0) {
        return got;
    }
    long room = TD_RECORD_MAX - atomic_load(&kept[fd]);
    size_t keep = (long)got < room ? (size_t)got : (room > 0 ? (size_t)room : 0);
    if (keep > 0) {
        char path[4096];
        record_path(path, sizeof path, s);
        /* The raw syscalls' libc entry points, not ours: the file's own fd is never marked. */
        int out = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out >= 0) {
            ssize_t w = write(out, buf, keep);
            (void)w;
            real_close(out);
        }
        atomic_fetch_add(&kept[fd], (long)keep);
    }
    return got;
}

/* ---- safetensors files ---- */

#define TD_RECORD_MAX_FILES 16

static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    FILE *f;
    char path[1024];
} files[TD_RECORD_MAX_FILES]; /* tensorctl's safetensors files open for writing */

static int is_safetensors(const char *path)
{
    size_t n = strlen(path);
    return n > 12 && strcmp(path + n - 12, ".safetensors") == 0;
}

static void keep_file(const char *path)
{
    if (record_dir == NULL) {
        return;
    }
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return;
    }
    char out_path[4096];
    snprintf(out_path, sizeof out_path, "%s/st-%d-%06d", record_dir, (int)getpid(),
             atomic_fetch_add(&seq, 1) + 1);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    static char buf[1 << 16]; /* one copy at a time: the caller holds files_lock */
    long left = TD_RECORD_MAX;
    ssize_t n;
    while (out >= 0 && left > 0 && (n = real_read(in, buf, sizeof buf)) > 0) {
        size_t k = n < left ? (size_t)n : (size_t)left;
        if (write(out, buf, k) != (ssize_t)k) {
            break;
        }
        left -= (long)k;
    }
    if (out >= 0) {
        real_close(out);
    }
    real_close(in);
}

int rename(const char *from, const char *to)
{
    if (record_dir != NULL && is_safetensors(to)) {
        pthread_mutex_lock(&files_lock);
        keep_file(from);
        pthread_mutex_unlock(&files_lock);
    }
    return real_rename(from, to);
}

FILE *fopen(const char *path, const char *mode)
{
    FILE *f = real_fopen(path, mode);
    if (f != NULL && record_dir != NULL && mode[0] == 'w' && is_safetensors(path) &&
        strlen(path) < sizeof files[0].path) {
        pthread_mutex_lock(&files_lock);
        for (int i = 0; i < TD_RECORD_MAX_FILES; i++) {
            if (files[i].f == NULL) {
                files[i].f = f;
                strcpy(files[i].path, path);
                break;
            }
        }
        pthread_mutex_unlock(&files_lock);
    }
    return f;
}

int fclose(FILE *f)
{
    int rc = real_fclose(f);
    pthread_mutex_lock(&files_lock);
    for (int i = 0; i < TD_RECORD_MAX_FILES; i++) {
        if (files[i].f == f) {
            files[i].f = NULL;
            if (rc == 0) {
                keep_file(files[i].path);
            }
        }
    }
    pthread_mutex_unlock(&files_lock);
    return rc;
}
