/* server/session/persist.c — see persist.h. */
#include "session/persist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "base/cmp.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/strbuf.h"
#include "core/autograd.h"
#include "core/dtype.h"
#include "core/tensor.h"

#define SNAPSHOT_SUFFIX ".safetensors"

int td_persist_check_name(const char *name, struct td_err *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > 128) {
        return td_err_set(err, TD_EINVAL, "file name must have 1 to 128 characters");
    }
    if (name[0] == '.') {
        return td_err_set(err, TD_EINVAL, "file name '%s' must not start with '.'", name);
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return td_err_set(err, TD_EINVAL,
                              "file name may hold only letters, digits, '.', "
                              "'_' and '-' (no paths)");
        }
    }
    return 0;
}

static int st_dtype(enum td_dtype d)
{
    switch (d) {
    case TD_DTYPE_F32: return TD_ST_F32;
    case TD_DTYPE_F64: return TD_ST_F64;
    case TD_DTYPE_I32: return TD_ST_I32;
    case TD_DTYPE_I64: return TD_ST_I64;
    default: return TD_ST_BOOL;
    }
}

static enum td_dtype core_dtype(int st)
{
    static const enum td_dtype map[TD_ST_NDTYPES] = {TD_DTYPE_F32, TD_DTYPE_F64, TD_DTYPE_I32,
                                                     TD_DTYPE_I64, TD_DTYPE_BOOL};
    return map[st];
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A view is written through a bounded buffer, a chunk of elements at a time: saving a 1 GiB
** view must not need another 1 GiB. */
#define WRITE_CHUNK_BYTES ((size_t)1 << 20)

static int write_tensor(int fd, const struct td_tensor *t)
{
    size_t n = td_tensor_nbytes(t);
    if (n == 0) {
        return 0;
    }
    if (td_tensor_is_contiguous(t)) {
        return write_all(fd, td_tensor_data(t), n);
    }
    size_t es = td_dtype_size(t->dtype);
    int64_t per = (int64_t)(WRITE_CHUNK_BYTES / es);
    void *chunk = td_malloc((size_t)per * es);
    if (chunk == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    for (int64_t at = 0; at < t->numel && rc == 0; at += per) {
        int64_t k = t->numel - at < per ? t->numel - at : per;
        td_tensor_copy_out_range(t, at, k, chunk);
        rc = write_all(fd, chunk, (size_t)k * es);
    }
    td_free(chunk);
    return rc;
}

/* A view written out becomes as many bytes as its elements (an expanded view of 4 bytes can
** stand for terabytes): each tensor written must fit the limit a tensor of that size would. */
static int check_sizes(struct td_tensor *const *t, int n, int64_t max_bytes, struct td_err *err)
{
    for (int i = 0; i < n && max_bytes > 0; i++) {
        if ((int64_t)td_tensor_nbytes(t[i]) > max_bytes) {
            return td_err_set(err, TD_ELIMIT, "tensor of %zu bytes exceeds max_tensor_bytes %lld",
                              td_tensor_nbytes(t[i]), (long long)max_bytes);
        }
    }
    return 0;
}

/* Messages reach clients: they name the file, not where the data dir lives. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* The directory part of path, fsync'd so a rename inside it is durable. */
static void sync_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* A tensor's bytes as written (its logical size: an expanded view is all its elements), or
** false when that does not fit. */
static bool tensor_file_bytes(const struct td_tensor *t, uint64_t *out)
{
    return t->numel >= 0 && td_mul_u64((uint64_t)t->numel, td_dtype_size(t->dtype), out);
}

/* Lays out the entries of t[0..n) one after the other in the data buffer, in order, with
** checked sums: views of huge logical size must not wrap the offsets. Empty tensors are put at
** the end of the buffer ([size, size]), not between two others: there an empty tensor starts
** where the next one does, and a reader that orders entries by start alone (tensord's own
** before it broke the tie) may see an overlap and refuse the file, so a snapshot written by
** this daemon could not be restored by the one before it. Where they go changes nothing that
** is written (an empty tensor has no bytes). *e is td_calloc'd (free it). */
static int layout(struct td_tensor *const *t, const char *const *names, int n,
                  struct td_st_entry **out, uint64_t *data_bytes, struct td_err *err)
{
    struct td_st_entry *e = td_calloc((size_t)(n > 0 ? n : 1), sizeof *e);
    if (e == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nb;
        e[i].name = (char *)names[i];
        e[i].dtype = st_dtype(t[i]->dtype);
        e[i].ndim = t[i]->ndim;
        memcpy(e[i].shape, t[i]->shape, sizeof e[i].shape[0] * (size_t)t[i]->ndim);
        e[i].begin = at;
        if (!tensor_file_bytes(t[i], &nb) || !td_add_u64(at, nb, &at) || at > INT64_MAX) {
            td_free(e);
            return td_err_set(err, TD_ELIMIT,
                              "file too large: its tensors hold more than "
                              "%lld bytes",
                              (long long)INT64_MAX);
        }
        e[i].end = at;
    }
    for (int i = 0; i < n; i++) {
        if (e[i].end == e[i].begin) {
            e[i].begin = e[i].end = at; /* empty: at the end, see above */
        }
    }
    *out = e;
    *data_bytes = at;
    return 0;
}

/* The header (8-byte length included) of the file for these arguments, and the file's size. */
static int build(struct td_tensor *const *t, const char *const *names, int n,
                 const char *const *keys, const char *const *vals, int nmeta, uint8_t **hdr,
                 size_t *hlen, int64_t *size, struct td_err *err)
{
    struct td_st_entry *e = NULL;
    uint64_t data = 0, total;
    int rc = layout(t, names, n, &e, &data, err);
    if (rc != 0) {
        return rc;
    }
    rc = td_st_header_build(e, n, keys, vals, nmeta, hdr, hlen, err);
    td_free(e);
    if (rc != 0) {
        return rc;
    }
    if (!td_add_u64(data, *hlen, &total) || total > INT64_MAX) {
        td_free(*hdr);
        *hdr = NULL;
        return td_err_set(err, TD_ELIMIT, "file too large: more than %lld bytes",
                          (long long)INT64_MAX);
    }
    *size = (int64_t)total;
    return 0;
}

int td_persist_file_size(struct td_tensor *const *t, const char *const *names, int n,
                         const char *const *keys, const char *const *vals, int nmeta, int64_t *size,
                         struct td_err *err)
{
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    int rc = build(t, names, n, keys, vals, nmeta, &hdr, &hlen, size, err);
    td_free(hdr);
    return rc;
}

/* ---- the disk budget ---- */

/* Adds the sizes of the regular files under dir, `depth` levels down (symlinks are not
** followed: tensord writes none, and one must not make another tree count). */
static int64_t tree_bytes(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int64_t sum = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            sum = td_sat_add(sum, (int64_t)st.st_size);
        } else if (S_ISDIR(st.st_mode) && depth > 1) {
            char sub[4096];
            if (snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) < (int)sizeof sub) {
                sum = td_sat_add(sum, tree_bytes(sub, depth - 1));
            }
        }
    }
    closedir(d);
    return sum;
}

/* Counts the budget's root once (the first writer does; any other waits for it), then returns.
** data dir/files/<sha>/<name> is three levels down. */
static void disk_count(const struct td_persist_budget *b)
{
    struct td_disk *d = b->disk;
    int expect = 0;
    if (atomic_load(&d->state) == 2) {
        return;
    }
    if (atomic_compare_exchange_strong(&d->state, &expect, 1)) {
        int64_t n = b->root != NULL ? tree_bytes(b->root, 3) : 0;
        atomic_fetch_add(&d->used, n); /* writes before the count are in `used` already: none */
        atomic_store(&d->state, 2);
        return;
    }
    while (atomic_load(&d->state) != 2) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

/* Takes `size` bytes of the data dir's total for a new file: refused when the total would then
** exceed the limit. A file that replaces another is written beside it first, so both are on
** disk until the rename: the old file's bytes still count here, and are given back only once
** it is gone (the data dir never holds more than the limit, even for a moment). */
static int disk_reserve(const struct td_persist_budget *b, int64_t size, struct td_err *err)
{
    struct td_disk *d = b->disk;
    disk_count(b);
    int64_t cur = atomic_load(&d->used), next;
    do {
        next = td_sat_add(cur, size);
        if (b->max > 0 && next > b->max) {
            return td_err_set(err, TD_EQUOTA,
                              "disk quota exceeded: max_disk_bytes %lld (the "
                              "file needs %lld bytes; %lld are in use)",
                              (long long)b->max, (long long)size, (long long)cur);
        }
    } while (!atomic_compare_exchange_weak(&d->used, &cur, next));
    return 0;
}

static void disk_release(const struct td_persist_budget *b, int64_t n)
{
    if (b != NULL && b->disk != NULL && n > 0) {
        atomic_fetch_sub(&b->disk->used, n);
    }
}

/* Renames tmp over path and reports the bytes of the file it replaced (0 when there was none),
** exactly even when another thread writes the same name at once: the two are exchanged
** (renameat2 RENAME_EXCHANGE), the old file is measured at the temporary name and removed.
** Where the kernel or file system cannot exchange, a plain rename, measured just before. */
#define TD_RENAME_NOREPLACE 1u
#define TD_RENAME_EXCHANGE 2u
static int replace_file(const char *tmp, const char *path, int64_t *replaced)
{
    *replaced = 0;
#ifdef SYS_renameat2
    for (int tries = 0; tries < 8; tries++) {
        if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, path, TD_RENAME_EXCHANGE) == 0) {
            struct stat st;
            if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode)) {
                *replaced = (int64_t)st.st_size;
            }
            unlink(tmp);
            return 0;
        }
        if (errno == ENOENT) {
            /* nothing to replace: put it there unless someone just did */
            if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, path, TD_RENAME_NOREPLACE) == 0) {
                return 0;
            }
            if (errno == EEXIST) {
                continue;
            }
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
            return -1;
        }
        break; /* the file system cannot: fall back */
    }
#endif
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        *replaced = (int64_t)st.st_size;
    }
    return rename(tmp, path);
}

int td_persist_write(const char *path, struct td_tensor *const *t, const char *const *names, int n,
                     const char *const *keys, const char *const *vals, int nmeta, int64_t max_bytes,
                     const struct td_persist_budget *budget, int64_t owner_used, struct td_err *err)
{
    int crc = check_sizes(t, n, max_bytes, err);
    if (crc != 0) {
        return crc;
    }
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    int64_t size = 0;
    int rc = build(t, names, n, keys, vals, nmeta, &hdr, &hlen, &size, err);
    if (rc != 0) {
        return rc;
    }
    /* Every limit is checked before a byte is written. */
    bool charged = false;
    if (budget != NULL && budget->session_max > 0 &&
        td_sat_add(owner_used, size) > budget->session_max) {
        td_free(hdr);
        return td_err_set(err, TD_EQUOTA,
                          "disk quota exceeded: session_max_disk_bytes %lld "
                          "(the file needs %lld bytes; %lld are in use)",
                          (long long)budget->session_max, (long long)size, (long long)owner_used);
    }
    if (budget != NULL && budget->disk != NULL) {
        if ((rc = disk_reserve(budget, size, err)) != 0) {
            td_free(hdr);
            return rc;
        }
        charged = true;
    }
    char tmp[4200];
    /* ".<name>.tmp.<pid>.<n>" beside it: no file a client can name starts with '.', so a
    ** temporary is never mistaken for one (see td_persist_remove_temporaries) */
    static atomic_uint counter; /* Saves run on several worker threads at once */
    const char *name = base_name(path);
    snprintf(tmp, sizeof tmp, "%.*s.%s.tmp.%ld.%u", (int)(name - path), path, name, (long)getpid(),
             atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int saved = errno;
        td_free(hdr);
        disk_release(charged ? budget : NULL, size);
        return td_err_set(err, TD_EIO, "cannot create %s: %s", base_name(tmp), strerror(saved));
    }
    int bad = write_all(fd, hdr, hlen);
    td_free(hdr);
    for (int i = 0; i < n && bad == 0; i++) {
        bad = write_tensor(fd, t[i]);
    }
    if (bad == 0 && fsync(fd) != 0) {
        bad = -1;
    }
    int saved = errno;
    if (close(fd) != 0 && bad == 0) {
        bad = -1;
        saved = errno;
    }
    int64_t replaced = 0;
    if (bad == 0 && replace_file(tmp, path, &replaced) != 0) {
        bad = -1;
        saved = errno;
    }
    if (bad != 0) {
        unlink(tmp);
        disk_release(charged ? budget : NULL, size);
        if (saved == ENOMEM) {
            return td_err_code(err, TD_ENOMEM);
        }
        return td_err_set(err, TD_EIO, "cannot write %s: %s", base_name(path), strerror(saved));
    }
    disk_release(charged ? budget : NULL, replaced);
    sync_dir(path);
    return 0;
}

void td_persist_dir_usage(const char *dir, const char *skip, int64_t *bytes, int *files)
{
    *bytes = 0;
    *files = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if ((skip != NULL && strcmp(de->d_name, skip) == 0) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        *bytes = td_sat_add(*bytes, (int64_t)st.st_size);
        (*files)++;
    }
    closedir(d);
}

int td_persist_dir_open(const char *dir, const char *path, int64_t *used, bool *created,
                        struct td_err *err)
{
    struct stat st;
    int files = 0;
    bool exists = lstat(path, &st) == 0;
    *created = false;
    td_persist_dir_usage(dir, base_name(path), used, &files);
    if (!exists && files >= TD_PERSIST_MAX_FILES) {
        return td_err_set(err, TD_ELIMIT,
                          "too many files: a session keeps at most %d "
                          "(overwrite one instead)",
                          TD_PERSIST_MAX_FILES);
    }
    if (mkdir(dir, 0700) == 0) {
        *created = true;
    } else if (errno != EEXIST) {
        return td_err_set(err, TD_EIO, "cannot create the session's file directory: %s",
                          strerror(errno));
    }
    return 0;
}

void td_persist_dir_drop(const char *dir)
{
    rmdir(dir); /* fails, as it should, when the directory holds anything */
}

int td_persist_remove_session_files(const struct td_persist_budget *budget,
                                    const struct td_session *s)
{
    if (budget == NULL || budget->files_dir == NULL || budget->shared) {
        return 0;
    }
    char tag[TD_PERSIST_DIR_NAME], dir[4200];
    td_persist_session_dir(s, tag);
    snprintf(dir, sizeof dir, "%s/%s", budget->files_dir, tag);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    if (budget->disk != NULL) {
        disk_count(budget); /* so what leaves is taken off a counted total */
    }
    int removed = 0;
    int64_t bytes = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            unlinkat(dirfd(d), de->d_name, 0) == 0) {
            bytes = td_sat_add(bytes, (int64_t)st.st_size);
            removed++;
        }
    }
    closedir(d);
    rmdir(dir);
    if (budget->disk != NULL) {
        atomic_fetch_sub(&budget->disk->used, bytes);
    }
    return removed;
}

void td_persist_session_dir(const struct td_session *s, char out[TD_PERSIST_DIR_NAME])
{
    static const char hx[] = "0123456789abcdef";
    const uint8_t *sha = s->token_sha; /* every session knows it (restored ones, only it) */
    for (int i = 0; i < TD_SHA256_BYTES; i++) {
        out[2 * i] = hx[sha[i] >> 4];
        out[2 * i + 1] = hx[sha[i] & 15];
    }
    out[2 * TD_SHA256_BYTES] = '\0';
}

static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *b = buf;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int td_persist_open(const char *path, struct td_persist_file *f, struct td_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        return td_err_set(err, errno == ENOENT ? TD_EINVAL : TD_EIO, "cannot open %s: %s",
                          strrchr(path, '/') ? strrchr(path, '/') + 1 : path, strerror(errno));
    }
    struct stat st;
    uint8_t len8[8];
    uint64_t hl = 0;
    if (fstat(f->fd, &st) != 0 || (uint64_t)st.st_size < 8 || read_at(f->fd, len8, 8, 0) != 0) {
        close(f->fd);
        return td_err_set(err, TD_EINVAL, "not a safetensors file: shorter than 8 bytes");
    }
    for (int i = 7; i >= 0; i--) {
        hl = hl << 8 | len8[i];
    }
    uint64_t size = (uint64_t)st.st_size;
    if (hl > TD_ST_MAX_HEADER || hl > size - 8) {
        close(f->fd);
        return td_err_set(err, TD_EINVAL,
                          "not a safetensors file: header length %" PRIu64
                          " does not fit the file's %" PRIu64 " bytes",
                          hl, size);
    }
    char *json = td_malloc((size_t)hl + 1);
    if (json == NULL) {
        close(f->fd);
        return td_err_code(err, TD_ENOMEM);
    }
    int rc = 0;
    if (read_at(f->fd, json, (size_t)hl, 8) != 0) {
        rc = td_err_set(err, TD_EIO, "cannot read the header: %s", strerror(errno));
    } else {
        rc = td_st_header_parse(json, (size_t)hl, size - 8 - hl, &f->h, err);
    }
    td_free(json);
    if (rc != 0) {
        close(f->fd);
        f->fd = -1;
        return rc;
    }
    f->data_start = 8 + hl;
    return 0;
}

int td_persist_read(struct td_persist_file *f, int i, struct td_quota *q, struct td_tensor **out,
                    struct td_err *err)
{
    const struct td_st_entry *e = &f->h.e[i];
    struct td_tensor *t = NULL;
    int rc = td_tensor_empty(&t, core_dtype(e->dtype), e->shape, e->ndim, q, err);
    if (rc != 0) {
        return rc;
    }
    size_t n = (size_t)(e->end - e->begin);
    if (n > 0 && read_at(f->fd, td_tensor_data(t), n, f->data_start + e->begin) != 0) {
        td_tensor_unref(t);
        return td_err_set(err, TD_EIO, "cannot read tensor '%s': %s", e->name,
                          errno != 0 ? strerror(errno) : "file is short");
    }
    *out = t;
    return 0;
}

/* ---- Save files: named tensors and their requires_grad list ---- */

/* The names of a Save file's requires_grad list (one per line), split and sorted for lookups. */
struct td_persist_names {
    char *buf;
    const char **v;
    size_t n;
};

static void names_free(struct td_persist_names *ns)
{
    if (ns != NULL) {
        td_free(ns->buf);
        td_free(ns->v);
        td_free(ns);
    }
}

static int names_parse(const char *lines, struct td_persist_names **out)
{
    struct td_persist_names *ns = td_calloc(1, sizeof *ns);
    *out = ns;
    if (ns == NULL) {
        return -1;
    }
    if (lines == NULL || *lines == '\0') {
        return 0;
    }
    size_t len = strlen(lines), cap = 1;
    for (size_t i = 0; i < len; i++) {
        cap += lines[i] == '\n';
    }
    ns->buf = td_malloc(len + 1);
    ns->v = td_calloc(cap, sizeof *ns->v);
    if (ns->buf == NULL || ns->v == NULL) {
        return -1;
    }
    memcpy(ns->buf, lines, len + 1);
    for (char *p = ns->buf; *p != '\0' && ns->n < cap;) {
        char *nl = strchr(p, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        ns->v[ns->n++] = p;
        p = nl != NULL ? nl + 1 : p + strlen(p);
    }
    qsort(ns->v, ns->n, sizeof *ns->v, td_cmp_str);
    return 0;
}

static bool names_has(const struct td_persist_names *ns, const char *name)
{
    return ns->n > 0 && bsearch(&name, ns->v, ns->n, sizeof *ns->v, td_cmp_str) != NULL;
}

int td_persist_save_named(const char *path, struct td_tensor *const *t, const char *const *names,
                          int n, int64_t max_bytes, const struct td_persist_budget *budget,
                          int64_t owner_used, struct td_err *err)
{
    struct td_strbuf rg; /* the names of the tensors that require grad, one per line */
    td_strbuf_init(&rg, 0);
    for (int i = 0; i < n; i++) {
        if (td_autograd_requires_grad(t[i])) {
            td_strbuf_puts(&rg, names[i]);
            td_strbuf_putc(&rg, '\n');
        }
    }
    if (td_strbuf_failed(&rg)) {
        td_strbuf_free(&rg);
        return td_err_code(err, TD_ENOMEM);
    }
    const char *keys[] = {"format", TD_PERSIST_KEY_REQUIRES_GRAD};
    const char *vals[] = {"pt", td_strbuf_str(&rg)};
    int rc = td_persist_write(path, t, names, n, keys, vals, rg.len > 0 ? 2 : 1, max_bytes, budget,
                              owner_used, err);
    td_strbuf_free(&rg);
    return rc;
}

int td_persist_load_named(struct td_persist_file *f, const char *name, struct td_quota *q,
                          struct td_tensor **out, struct td_err *err)
{
    int i = td_st_find(&f->h, name);
    if (i < 0) {
        return td_err_set(err, TD_EINVAL, "no tensor named '%s' in the file", name);
    }
    if (f->grad_names == NULL &&
        names_parse(td_st_meta(&f->h, TD_PERSIST_KEY_REQUIRES_GRAD), &f->grad_names) != 0) {
        names_free(f->grad_names);
        f->grad_names = NULL;
        return td_err_code(err, TD_ENOMEM);
    }
    int rc = td_persist_read(f, i, q, out, err);
    if (rc == 0) {
        td_autograd_restore_flags(*out, names_has(f->grad_names, name), false);
    }
    return rc;
}

void td_persist_close(struct td_persist_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    f->fd = -1;
    td_st_header_free(&f->h);
    names_free(f->grad_names);
    f->grad_names = NULL;
}

/* ---- session snapshots ---- */

/* Appends ",v" (or "v" first) to a comma-separated list of handles. */
static int handle_list_add(struct td_strbuf *l, uint64_t v)
{
    return td_strbuf_printf(l, "%s%" PRIu64, l->len ? "," : "", v);
}

/* Queues t, and its .grad when it has one, to be saved under "<prefix[0]><id>" and
** "<prefix[1]><id>" (names[*n], ts[*n]; both arrays have room). 0, or TD_ENOMEM. */
static int save_list_add(char **names, struct td_tensor **ts, int *n, struct td_tensor *t,
                         const char prefix[2], uint64_t id)
{
    for (int pass = 0; pass < 2; pass++) {
        struct td_tensor *x = pass == 0 ? t : td_autograd_grad(t);
        if (x == NULL) {
            continue;
        }
        names[*n] = td_malloc(24);
        if (names[*n] == NULL) {
            return TD_ENOMEM;
        }
        snprintf(names[*n], 24, "%c%" PRIu64, prefix[pass], id);
        ts[(*n)++] = x;
    }
    return 0;
}

/* ---- a snapshot's named tensors ----
** The session's names, in first-set order, are items "<name>=<ref>" joined by ',' (a name holds
** neither ',' nor '='), split over metadata values "tensord_names.0", "tensord_names.1", ...
** of at most NAMES_CHUNK bytes each (a metadata value's limit is TD_ST_MAX_META_VALUE), their
** count in "tensord_names". <ref> is a handle number when the named tensor is also under a
** handle (it is restored as that handle's tensor, the same object), else "n<i>": the tensor
** saved as "n<i>" (its .grad as "m<i>"), followed by 'r' when it requires grad and 't' when it
** retains it. A snapshot without "tensord_names" (saved before names existed) has none. */
#define NAMES_CHUNK (TD_ST_MAX_META_VALUE - 512)
#define NAMES_MAX_CHUNKS 64 /* TD_SESSION_MAX_NAMES names of 255 bytes need 17 */

static int save_session(struct td_session *s, const char *dir,
                        const struct td_persist_budget *budget, struct td_err *err)
{
    size_t cap = td_session_count(s) * 2 + td_session_name_count(s) * 2 + 1;
    struct td_tensor **ts = td_calloc(cap, sizeof *ts);
    char **names = td_calloc(cap, sizeof *names);
    struct td_strbuf rg, rt, nl[NAMES_MAX_CHUNKS];
    td_strbuf_init(&rg, 0);
    td_strbuf_init(&rt, 0);
    int nchunks = 0;
    struct td_map by_tensor; /* tensor -> a handle it is under, when the session has names */
    td_map_init(&by_tensor);
    struct td_map saved_as; /* tensor no handle holds -> 1 + the i of the "n<i>" it is saved as */
    td_map_init(&saved_as);
    int n = 0, rc = 0;
    if (ts == NULL || names == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto out;
    }
    uint64_t handle;
    void *val;
    for (size_t it = 0; td_map_next(&s->handles, &it, &handle, &val) && rc == 0;) {
        struct td_tensor *t = td_entry_tensor(val);
        if (t == NULL) {
            continue; /* a failure record: nothing to keep */
        }
        if (td_session_name_count(s) > 0 &&
            td_map_put(&by_tensor, (uint64_t)(uintptr_t)t, (void *)(uintptr_t)handle) != 0) {
            rc = td_err_code(err, TD_ENOMEM);
            break;
        }
        if (save_list_add(names, ts, &n, t, "hg", handle) != 0) {
            rc = td_err_code(err, TD_ENOMEM);
            break;
        }
        if ((td_autograd_requires_grad(t) && handle_list_add(&rg, handle) != 0) ||
            (td_autograd_retains_grad(t) && handle_list_add(&rt, handle) != 0)) {
            rc = td_err_code(err, TD_ENOMEM);
        }
    }
    /* The names, and the named tensors no handle holds. */
    int unnamed = 0;
    for (const struct td_name *nm = td_session_names(s); nm != NULL && rc == 0; nm = nm->next) {
        if (nchunks == 0 || nl[nchunks - 1].len + nm->len + 32 > NAMES_CHUNK) {
            if (nchunks == NAMES_MAX_CHUNKS) {
                rc = td_err_set(err, TD_ELIMIT, "too many names to snapshot");
                break;
            }
            td_strbuf_init(&nl[nchunks++], 0);
        }
        struct td_strbuf *b = &nl[nchunks - 1];
        void *h = td_map_get(&by_tensor, (uint64_t)(uintptr_t)nm->t);
        if (h != NULL) {
            td_strbuf_printf(b, "%s%s=%" PRIu64, b->len ? "," : "", nm->name,
                             (uint64_t)(uintptr_t)h);
            continue;
        }
        /* Names of one tensor share its entry: one copy of its bytes (not one per name: 65,536
        ** names of one tensor), and one tensor again when restored, as a dict keeps it. */
        void *saved = td_map_get(&saved_as, (uint64_t)(uintptr_t)nm->t);
        int i = saved != NULL ? (int)((uintptr_t)saved - 1) : unnamed;
        td_strbuf_printf(b, "%s%s=n%d%s%s", b->len ? "," : "", nm->name, i,
                         td_autograd_requires_grad(nm->t) ? "r" : "",
                         td_autograd_retains_grad(nm->t) ? "t" : "");
        if (saved != NULL) {
            continue;
        }
        if (td_map_put(&saved_as, (uint64_t)(uintptr_t)nm->t, (void *)(uintptr_t)(i + 1)) != 0) {
            rc = td_err_code(err, TD_ENOMEM);
            break;
        }
        unnamed++;
        if (save_list_add(names, ts, &n, nm->t, "nm", (uint64_t)i) != 0) {
            rc = td_err_code(err, TD_ENOMEM);
        }
    }
    for (int c = 0; c < nchunks && rc == 0; c++) {
        if (td_strbuf_failed(&nl[c])) {
            rc = td_err_code(err, TD_ENOMEM);
        }
    }
    if (rc == 0) {
        char hex[TD_PERSIST_DIR_NAME], rng[2 * TD_RNG_STATE_BYTES + 1], path[4096];
        td_persist_session_dir(s, hex);
        uint8_t st[TD_RNG_STATE_BYTES];
        if (s->rng != NULL) {
            td_rng_get_state(s->rng, st);
        } else { /* never used: the state it would start from */
            struct td_rng fresh;
            td_rng_seed(&fresh, s->rng_seed);
            td_rng_get_state(&fresh, st);
        }
        for (int i = 0; i < TD_RNG_STATE_BYTES; i++) {
            rng[2 * i] = "0123456789abcdef"[st[i] >> 4];
            rng[2 * i + 1] = "0123456789abcdef"[st[i] & 15];
        }
        rng[2 * TD_RNG_STATE_BYTES] = 0;
        const char *keys[7 + NAMES_MAX_CHUNKS] = {"tensord_session",
                                                  "token_sha256",
                                                  "rng_state",
                                                  "no_grad",
                                                  TD_PERSIST_KEY_REQUIRES_GRAD,
                                                  TD_PERSIST_KEY_RETAINS_GRAD};
        const char *vals[7 + NAMES_MAX_CHUNKS] = {"1",
                                                  hex,
                                                  rng,
                                                  s->no_grad ? "1" : "0",
                                                  rg.len ? td_strbuf_str(&rg) : "-",
                                                  rt.len ? td_strbuf_str(&rt) : "-"};
        int nmeta = 6;
        char count[16], chunk_keys[NAMES_MAX_CHUNKS][32];
        if (nchunks > 0) {
            snprintf(count, sizeof count, "%d", nchunks);
            keys[nmeta] = "tensord_names";
            vals[nmeta++] = count;
            for (int c = 0; c < nchunks; c++) {
                snprintf(chunk_keys[c], sizeof chunk_keys[c], "tensord_names.%d", c);
                keys[nmeta] = chunk_keys[c];
                vals[nmeta++] = td_strbuf_str(&nl[c]);
            }
        }
        snprintf(path, sizeof path, "%s/%s%s", dir, hex, SNAPSHOT_SUFFIX);
        /* The snapshot counts against the session's disk quota with its Save files. */
        int64_t owner_used = 0;
        if (budget != NULL && budget->files_dir != NULL && !budget->shared) {
            char sdir[4200];
            int files;
            snprintf(sdir, sizeof sdir, "%s/%s", budget->files_dir, hex);
            td_persist_dir_usage(sdir, NULL, &owner_used, &files);
        }
        rc = td_persist_write(path, ts, (const char *const *)names, n, keys, vals, nmeta,
                              s->quota.max_charge, budget, owner_used, err);
    }
out:
    for (int c = 0; c < nchunks; c++) {
        td_strbuf_free(&nl[c]);
    }
    td_map_close(&by_tensor);
    td_map_close(&saved_as);
    for (int i = 0; i < n; i++) {
        td_free(names[i]);
    }
    td_free(names);
    td_free(ts);
    td_strbuf_free(&rg);
    td_strbuf_free(&rt);
    return rc;
}

int td_store_save_all(struct td_store *st, const char *dir, const struct td_persist_budget *budget,
                      int *failed)
{
    int saved = 0;
    *failed = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&st->by_key, &it, &key, &val);) {
        struct td_session *s = val;
        struct td_err err;
        if (s->closed) {
            continue;
        }
        if (s->running) {
            td_log(TD_LOG_ERROR, "session_save_failed", "session=%s msg=\"still running a job\"",
                   s->token_tag);
            (*failed)++;
            continue;
        }
        if (save_session(s, dir, budget, &err) != 0) {
            /* Over a disk quota the session is skipped: nothing is written past a limit. */
            bool quota = err.code == TD_EQUOTA;
            td_log(quota ? TD_LOG_WARN : TD_LOG_ERROR,
                   quota ? "session_save_skipped" : "session_save_failed", "session=%s msg=\"%s\"",
                   s->token_tag, err.msg);
            (*failed)++;
        } else {
            saved++;
        }
    }
    return saved;
}

/* A handle list "1,5,9" from a snapshot, sorted for lookups (a session may list a million). */
struct handle_set {
    uint64_t *v;
    size_t n;
};

static int handle_set_parse(const char *list, struct handle_set *hs)
{
    hs->v = NULL;
    hs->n = 0;
    if (list == NULL || *list == '\0' || strcmp(list, "-") == 0) {
        return 0;
    }
    size_t cap = 1;
    for (const char *p = list; *p != '\0'; p++) {
        cap += *p == ',';
    }
    if ((hs->v = td_calloc(cap, sizeof *hs->v)) == NULL) {
        return -1;
    }
    for (const char *p = list; *p != '\0' && hs->n < cap;) {
        char *end;
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p) {
            break;
        }
        hs->v[hs->n++] = x;
        p = *end == ',' ? end + 1 : end;
    }
    qsort(hs->v, hs->n, sizeof *hs->v, td_cmp_u64);
    return 0;
}

static bool handle_set_has(const struct handle_set *hs, uint64_t h)
{
    return hs->n > 0 && bsearch(&h, hs->v, hs->n, sizeof *hs->v, td_cmp_u64) != NULL;
}

static int hex_decode(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL || strlen(hex) != 2 * n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = hex[2 * i + (size_t)j];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) {
                return -1;
            }
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* Binds one snapshot item "<name>=<ref>" (len bytes at item; see save_session). */
static int restore_name(struct td_persist_file *f, struct td_session *s, const char *item,
                        size_t len, struct td_map *restored, struct td_err *err)
{
    const char *eq = memchr(item, '=', len);
    if (eq == NULL || td_session_name_check(item, (size_t)(eq - item), NULL) != 0 ||
        item + len - eq > 40) {
        return td_err_set(err, TD_EINVAL, "unexpected name item '%.*s'",
                          (int)(len < 300 ? len : 300), item);
    }
    char ref[48];
    memcpy(ref, eq + 1, (size_t)(item + len - eq - 1));
    ref[item + len - eq - 1] = '\0';
    struct td_tensor *t = NULL;
    char *end;
    int rc;
    if (ref[0] >= '0' && ref[0] <= '9') {
        uint64_t h = strtoull(ref, &end, 10);
        if (*end != '\0' || td_session_lookup(s, h, &t, NULL) != 0) {
            return td_err_set(err, TD_EINVAL, "name item '%s' names no tensor", ref);
        }
        return td_session_set_name(s, item, (size_t)(eq - item), t, err);
    }
    unsigned long i = ref[0] == 'n' ? strtoul(ref + 1, &end, 10) : 0;
    if (ref[0] != 'n' || end == ref + 1 || strspn(end, "rt") != strlen(end)) {
        return td_err_set(err, TD_EINVAL, "unexpected name reference '%s'", ref);
    }
    bool requires = strchr(end, 'r') != NULL, retains = strchr(end, 't') != NULL;
    /* Another name of the same tensor: the one already read (the map holds a reference). */
    struct td_tensor *seen = i < UINT64_MAX - 1 ? td_map_get(restored, (uint64_t)i + 1) : NULL;
    if (seen != NULL) {
        return td_session_set_name(s, item, (size_t)(eq - item), seen, err);
    }
    char tname[32];
    snprintf(tname, sizeof tname, "n%lu", i);
    int k = td_st_find(&f->h, tname);
    if (k < 0) {
        return td_err_set(err, TD_EINVAL, "name reference '%s' has no tensor", ref);
    }
    if ((rc = td_persist_read(f, k, &s->quota, &t, err)) != 0) {
        return rc;
    }
    td_autograd_restore_flags(t, requires, retains);
    snprintf(tname, sizeof tname, "m%lu", i);
    if ((k = td_st_find(&f->h, tname)) >= 0) {
        struct td_tensor *g = NULL;
        if ((rc = td_persist_read(f, k, &s->quota, &g, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
        td_autograd_set_grad(t, g);
    }
    if (i < UINT64_MAX - 1 && td_map_put(restored, (uint64_t)i + 1, t) != 0) {
        td_tensor_unref(t);
        return td_err_code(err, TD_ENOMEM);
    }
    return td_session_set_name(s, item, (size_t)(eq - item), t, err); /* the map's reference */
}

/* Restores a snapshot's names (none in one saved before names existed). */
static int restore_names(struct td_persist_file *f, struct td_session *s, struct td_err *err)
{
    const char *count = td_st_meta(&f->h, "tensord_names");
    if (count == NULL) {
        return 0;
    }
    char *end;
    unsigned long nchunks = strtoul(count, &end, 10);
    if (*end != '\0' || nchunks > NAMES_MAX_CHUNKS) {
        return td_err_set(err, TD_EINVAL, "unexpected tensord_names '%s'", count);
    }
    int rc = 0;
    struct td_map restored; /* 1 + i -> the tensor read for "n<i>" (a reference) */
    td_map_init(&restored);
    for (unsigned long c = 0; c < nchunks && rc == 0; c++) {
        char key[32];
        snprintf(key, sizeof key, "tensord_names.%lu", c);
        const char *v = td_st_meta(&f->h, key);
        if (v == NULL) {
            rc = td_err_set(err, TD_EINVAL, "snapshot lacks %s", key);
            break;
        }
        while (*v != '\0' && rc == 0) {
            size_t len = strcspn(v, ",");
            rc = restore_name(f, s, v, len, &restored, err);
            v += len + (v[len] == ',');
        }
    }
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&restored, &it, &key, &val);) {
        td_tensor_unref(val);
    }
    td_map_close(&restored);
    return rc;
}

static int restore_session(struct td_store *st, const char *path, uint64_t now_ms,
                           struct td_err *err)
{
    struct td_persist_file f;
    int rc = td_persist_open(path, &f, err);
    if (rc != 0) {
        return rc;
    }
    uint8_t sha[TD_SHA256_BYTES];
    const char *marker = td_st_meta(&f.h, "tensord_session");
    if (marker == NULL || strcmp(marker, "1") != 0 ||
        hex_decode(td_st_meta(&f.h, "token_sha256"), sha, sizeof sha) != 0) {
        td_persist_close(&f);
        return td_err_set(err, TD_EINVAL, "not a tensord session snapshot");
    }
    struct td_session *s;
    if ((rc = td_store_add_restored(st, sha, &s, err)) != 0) {
        td_persist_close(&f);
        return rc;
    }
    s->idle_since_ms = now_ms;
    /* "rng_state": torch's generator state bytes in hex. A snapshot from before the mt19937
    ** generator has "rng" = "seed,offset" of its Philox stream: the generator restarts from
    ** that seed (the stream's position cannot carry over). */
    const char *rng = td_st_meta(&f.h, "rng_state"), *old_rng = td_st_meta(&f.h, "rng");
    unsigned long long seed = 0, offset = 0;
    uint8_t rst[TD_RNG_STATE_BYTES];
    if (rng != NULL) {
        struct td_rng *own = NULL;
        if (hex_decode(rng, rst, sizeof rst) != 0 || (own = td_session_rng(s)) == NULL ||
            td_rng_set_state(own, rst, sizeof rst, NULL) != 0) {
            td_log(TD_LOG_WARN, "snapshot_rng_invalid", "session=%s", s->token_tag);
        }
    } else if (old_rng != NULL && sscanf(old_rng, "%llu,%llu", &seed, &offset) == 2) {
        td_session_seed(s, seed);
    }
    const char *ng = td_st_meta(&f.h, "no_grad");
    s->no_grad = ng != NULL && strcmp(ng, "1") == 0;
    struct handle_set rg = {0}, rt = {0};
    if (handle_set_parse(td_st_meta(&f.h, TD_PERSIST_KEY_REQUIRES_GRAD), &rg) != 0 ||
        handle_set_parse(td_st_meta(&f.h, TD_PERSIST_KEY_RETAINS_GRAD), &rt) != 0) {
        rc = td_err_code(err, TD_ENOMEM);
    }
    /* Tensors first, then grads onto them. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int i = 0; i < f.h.n && rc == 0; i++) {
            const char *name = f.h.e[i].name;
            char *end;
            uint64_t h = strtoull(name + 1, &end, 10);
            bool named = name[0] == 'n' || name[0] == 'm'; /* read by restore_names */
            if ((name[0] != 'h' && name[0] != 'g' && !named) || *end != '\0' || end == name + 1 ||
                (!named && (h == 0 || h == UINT64_MAX))) {
                rc = td_err_set(err, TD_EINVAL, "unexpected tensor name '%s'", name);
                break;
            }
            if (named || (pass == 0) != (name[0] == 'h')) {
                continue;
            }
            struct td_tensor *t = NULL;
            if ((rc = td_persist_read(&f, i, &s->quota, &t, err)) != 0) {
                break;
            }
            if (pass == 0) {
                td_autograd_restore_flags(t, handle_set_has(&rg, h), handle_set_has(&rt, h));
                if ((rc = td_session_check_out(s, h, err)) == 0) {
                    rc = td_session_put(s, h, t, err);
                } else {
                    td_tensor_unref(t);
                }
                continue;
            }
            struct td_tensor *owner = NULL;
            if (td_session_lookup(s, h, &owner, err) != 0) {
                td_tensor_unref(t);
                rc = td_err_set(err, TD_EINVAL, "grad '%s' of no tensor", name);
                break;
            }
            td_autograd_set_grad(owner, t);
        }
    }
    if (rc == 0) {
        rc = restore_names(&f, s, err);
    }
    td_free(rg.v);
    td_free(rt.v);
    td_persist_close(&f);
    if (rc != 0) {
        td_session_close(s);
    }
    return rc;
}

/* Removes dir's temporaries; descends `depth` more levels into its subdirectories. */
static int remove_temporaries(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[4200];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            continue;
        }
        if (de->d_name[0] == '.' && strstr(de->d_name, SNAPSHOT_SUFFIX ".tmp.") != NULL) {
            removed += unlink(path) == 0;
        } else if (de->d_name[0] != '.' && depth > 0 && lstat(path, &st) == 0 &&
                   S_ISDIR(st.st_mode)) {
            removed += remove_temporaries(path, depth - 1);
        }
    }
    closedir(d);
    return removed;
}

int td_persist_remove_temporaries(const char *dir)
{
    return remove_temporaries(dir, 1);
}

int td_store_restore_all(struct td_store *st, const char *dir, uint64_t now_ms, int *failed)
{
    *failed = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int restored = 0;
    struct dirent *de;
    size_t suffix = strlen(SNAPSHOT_SUFFIX);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= suffix || strcmp(de->d_name + n - suffix, SNAPSHOT_SUFFIX) != 0 ||
            de->d_name[0] == '.') {
            continue;
        }
        char path[4096], bad[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct td_err err;
        if (restore_session(st, path, now_ms, &err) == 0) {
            unlink(path);
            restored++;
        } else {
            /* Only a file that is itself bad is set aside; one that failed for want of memory
            ** or an I/O error stays, to be tried again at the next start. */
            if (err.code == TD_EINVAL) {
                snprintf(bad, sizeof bad, "%s.unreadable", path);
                rename(path, bad);
            }
            td_log(TD_LOG_ERROR, "session_restore_failed", "file=%s kept=%s msg=\"%s\"", de->d_name,
                   err.code == TD_EINVAL ? "no" : "yes", err.msg);
            (*failed)++;
        }
    }
    closedir(d);
    if (restored > 0) {
        sync_dir(dir);
    }
    return restored;
}
