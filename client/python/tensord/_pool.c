/* client/python/tensord/_pool.c — tensord._pool: the Python client's pool of large receive
** buffers.
**
** A download lands in memory the client allocates: the data section's buffer, the ndarray
** `t.numpy()` returns and the snapshot that notices writes to it. Fresh memory is expensive on a
** VM that hands freed pages back to its host (virtio_balloon free page reporting): first touch
** ran at 0.35-0.45 GB/s here, against the socket's 2-3 GB/s. So large buffers come from this
** pool: take(n) returns a Block (a writable bytes-like object, n bytes, contents undefined), and
** when the last reference to a Block goes (the ndarray made on it, a memoryview of it) its memory
** returns to the pool for the next take of about the same size. A Block is never handed out
** twice while alive: its memory joins the pool only from the Block's dealloc.
**
** Bounded: at most POOL_SLOTS blocks and `limit` bytes kept (each at most half the limit; the
** oldest make room for the newest), and a block unused for `decay` seconds is unmapped at the
** pool's next take or put, or by trim(). Defaults: TENSORD_RECV_POOL_BYTES (512 MiB) and
** TENSORD_RECV_POOL_DECAY (10 s); configure() changes them. All state is under the GIL: every
** entry point is called with it held (Block's dealloc included).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && defined(SYS_userfaultfd)
#include <linux/userfaultfd.h>
#define WATCH_BUILT 1
#else
#define WATCH_BUILT 0
#endif

#define POOL_SLOTS 32
#define POOL_MIN ((Py_ssize_t)256 << 10) /* smaller ones: the interpreter's allocator serves */
#define PAGE ((size_t)4096)
#define HUGE ((size_t)2 << 20)

static struct {
    char *ptr[POOL_SLOTS]; /* oldest first */
    size_t cap[POOL_SLOTS];
    double at[POOL_SLOTS]; /* when each was put, monotonic seconds */
    int n;
    size_t bytes, limit;
    double decay;                          /* seconds; 0: kept until pushed out */
    unsigned long long hits, misses, live; /* live: blocks out now */
    size_t live_bytes;
} pool = {.limit = (size_t)512 << 20, .decay = 10.0};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pool_remove(int i)
{
    pool.bytes -= pool.cap[i];
    pool.n--;
    memmove(&pool.ptr[i], &pool.ptr[i + 1], (size_t)(pool.n - i) * sizeof pool.ptr[0]);
    memmove(&pool.cap[i], &pool.cap[i + 1], (size_t)(pool.n - i) * sizeof pool.cap[0]);
    memmove(&pool.at[i], &pool.at[i + 1], (size_t)(pool.n - i) * sizeof pool.at[0]);
}

/* Unmaps the oldest blocks until at most `keep` bytes stay, and every block older than the
** decay time. */
static void pool_shrink(size_t keep)
{
    double now = pool.decay > 0 ? mono() : 0;
    while (pool.n > 0 &&
           (pool.bytes > keep || (pool.decay > 0 && now - pool.at[0] >= pool.decay))) {
        munmap(pool.ptr[0], pool.cap[0]);
        pool_remove(0);
    }
}

/* A mapping of `cap` bytes (a multiple of the page), asking for huge pages when it is large. */
static char *map_block(size_t cap)
{
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (cap >= HUGE) {
        madvise(p, cap, MADV_HUGEPAGE); /* advice only */
    }
#endif
    return p;
}

/* The capacity a request of n bytes maps: whole pages, whole huge pages when large. */
static size_t cap_of(size_t n)
{
    size_t unit = n >= HUGE ? HUGE : PAGE;
    return (n + unit - 1) / unit * unit;
}

static char *pool_take(size_t n, size_t *cap)
{
    pool_shrink(pool.limit);
    int best = -1;
    for (int i = 0; i < pool.n; i++) {
        if (pool.cap[i] >= n && pool.cap[i] - n <= n / 4 &&
            (best < 0 || pool.cap[i] < pool.cap[best])) {
            best = i;
        }
    }
    if (best >= 0) {
        char *p = pool.ptr[best];
        *cap = pool.cap[best];
        pool_remove(best);
        pool.hits++;
        return p;
    }
    pool.misses++;
    *cap = cap_of(n);
    return map_block(*cap);
}

static void pool_put(char *p, size_t cap)
{
    if (cap > pool.limit / 2) {
        munmap(p, cap);
        pool_shrink(pool.limit);
        return;
    }
    pool_shrink(pool.limit - cap);
    while (pool.n == POOL_SLOTS) {
        munmap(pool.ptr[0], pool.cap[0]);
        pool_remove(0);
    }
    pool.ptr[pool.n] = p;
    pool.cap[pool.n] = cap;
    pool.at[pool.n] = mono();
    pool.n++;
    pool.bytes += cap;
}

/* ---- Block: n bytes of pooled memory, returned to the pool when it dies ---- */

typedef struct {
    PyObject_HEAD char *ptr;
    Py_ssize_t size;
    size_t cap;
    Py_ssize_t exports;
    int watched; /* registered for write tracking (watch() below) */
} Block;

/* ---- write tracking: which pages of a Block were written since it was last looked at ----
**
** A numpy() array must carry the user's writes to its tensor (torch's sharing), so _numpy used
** to keep a snapshot of every shared array and compare the two before the tensor's next use: for
** a 256 MiB download, a 256 MiB copy and a 2 x 256 MiB memcmp per call, as much memory traffic
** as the transfer itself. On Linux 6.7 and later the kernel keeps that record for free: a range
** registered with a userfaultfd in write-protect mode with UFFD_FEATURE_WP_ASYNC has its pages
** write-protected, a write to one takes one minor fault that the kernel resolves itself
** (clearing the page's protection; no handler thread, no signal), and the PAGEMAP_SCAN ioctl on
** /proc/self/pagemap lists the pages whose protection is gone (PAGE_IS_WRITTEN) and protects them
** again in the same call (PM_SCAN_WP_MATCHING). So watch() costs one register and one
** write-protect of the range (a few page-table walks, no copy), written() one walk, and a page
** nobody writes costs nothing. Pages never touched (no page table entry) count as unwritten and
** become written when touched. Where any of it is missing (older kernels, a seccomp filter, no
** permission) watch() says False once and for all, and _numpy takes its snapshot as before.
** The constants are the kernel's ABI (include/uapi/linux/fs.h, userfaultfd.h of 6.7), defined
** here when the build machine's headers predate them. */
#if WATCH_BUILT
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
    uint64_t start, end, categories;
};
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
        category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

static int uffd = -1, pagemap = -1;
static int watch_state; /* 0: not tried yet, 1: works, -1: unavailable */
static pid_t watch_pid; /* the process both descriptors belong to */

/* Whether the descriptors are this process's: after a fork the child's copies still act on the
** parent's memory (a scan would take the parent's record of writes), so a child never uses them;
** its blocks answer "all written" (the safe side: the whole array is sent). */
static int watch_ours(void)
{
    return watch_state > 0 && getpid() == watch_pid;
}

static int watch_init(void)
{
    if (watch_state != 0) {
        return watch_state > 0;
    }
    watch_state = -1;
    /* user-mode-only: allowed without privilege (vm.unprivileged_userfaultfd=0); in the async
    ** mode the kernel resolves every write itself, its own (a recv into the block) included */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    }
    if (fd < 0) {
        return 0;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
    int pm = -1;
    if (ioctl(fd, UFFDIO_API, &api) != 0 || (api.features & UFFD_FEATURE_WP_ASYNC) == 0 ||
        (pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
        close(fd);
        return 0;
    }
    uffd = fd;
    pagemap = pm;
    watch_pid = getpid();
    watch_state = 1;
    return 1;
}

/* The block's pages that hold its bytes: [ptr, ptr + size rounded up to the page). */
static size_t watch_len(const Block *b)
{
    return ((size_t)b->size + PAGE - 1) / PAGE * PAGE;
}

static int block_protect(Block *b)
{
    if (!watch_ours()) {
        return -1;
    }
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)b->ptr, .len = watch_len(b)},
        .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };
    return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
}

static void block_unwatch(Block *b)
{
    if (b->watched && watch_ours()) {
        struct uffdio_range r = {.start = (uintptr_t)b->ptr, .len = watch_len(b)};
        (void)ioctl(uffd, UFFDIO_UNREGISTER, &r); /* clears the protection too */
    }
    b->watched = 0;
}
#else
static void block_unwatch(Block *b)
{
    (void)b;
}
#endif

static PyObject *Block_watch(Block *b, PyObject *unused)
{
    (void)unused;
#if WATCH_BUILT
    if (b->watched) {
        Py_RETURN_TRUE;
    }
    if (b->ptr == NULL || b->size == 0 || !watch_init() || !watch_ours()) {
        Py_RETURN_FALSE;
    }
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)b->ptr, .len = watch_len(b)},
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        if (errno != ENOMEM) {
            watch_state = -1; /* not for this process: do not try again */
        }
        Py_RETURN_FALSE;
    }
    b->watched = 1;
    /* the scan tried once on this block (nothing written yet: an empty answer), so a kernel
    ** with the write-protect but without PAGEMAP_SCAN never answers "all written" each time */
    struct page_region one;
    struct pm_scan_arg probe = {
        .size = sizeof probe,
        .flags = PM_SCAN_CHECK_WPASYNC,
        .start = (uintptr_t)b->ptr,
        .end = (uintptr_t)b->ptr + PAGE,
        .vec = (uintptr_t)&one,
        .vec_len = 1,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    if (block_protect(b) != 0 || ioctl(pagemap, PAGEMAP_SCAN, &probe) < 0) {
        block_unwatch(b);
        watch_state = -1;
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
#else
    (void)b;
    Py_RETURN_FALSE;
#endif
}

/* written(): [(first, end)] byte spans (whole pages, clipped to the block's size) written since
** watch() or the last written()/protect(), which are write-protected again by the same call.
** When the kernel cannot say (a forked child, a failed scan): the whole block, [(0, size)]. */
static PyObject *Block_written(Block *b, PyObject *unused)
{
    (void)unused;
    if (!b->watched) {
        PyErr_SetString(PyExc_RuntimeError, "written(): the block is not watched");
        return NULL;
    }
#if WATCH_BUILT
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    struct page_region vec[256];
    uint64_t start = (uintptr_t)b->ptr, end = start + watch_len(b);
    int ok = watch_ours();
    while (ok && start < end) {
        struct pm_scan_arg arg = {
            .size = sizeof arg,
            .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            .start = start,
            .end = end,
            .vec = (uintptr_t)vec,
            .vec_len = sizeof vec / sizeof vec[0],
            .category_mask = PAGE_IS_WRITTEN,
            .return_mask = PAGE_IS_WRITTEN,
        };
        long got = ioctl(pagemap, PAGEMAP_SCAN, &arg);
        if (got < 0) {
            ok = 0;
            break;
        }
        for (long i = 0; i < got; i++) {
            uint64_t lo = vec[i].start - (uintptr_t)b->ptr, hi = vec[i].end - (uintptr_t)b->ptr;
            if (hi > (uint64_t)b->size) {
                hi = (uint64_t)b->size;
            }
            PyObject *span = Py_BuildValue("(KK)", (unsigned long long)lo, (unsigned long long)hi);
            if (span == NULL || PyList_Append(out, span) != 0) {
                Py_XDECREF(span);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(span);
        }
        if (arg.walk_end <= start) {
            ok = start >= end; /* no progress: never loop forever */
            break;
        }
        start = arg.walk_end;
    }
    if (!ok) { /* everything, then: the safe answer */
        Py_DECREF(out);
        return Py_BuildValue("[(nn)]", (Py_ssize_t)0, b->size);
    }
    return out;
#else
    Py_RETURN_NONE;
#endif
}

/* protect(): forget the writes so far (after the client itself wrote the whole block). */
static PyObject *Block_protect(Block *b, PyObject *unused)
{
    (void)unused;
    if (!b->watched) {
        PyErr_SetString(PyExc_RuntimeError, "protect(): the block is not watched");
        return NULL;
    }
#if WATCH_BUILT
    (void)block_protect(b); /* failing, the pages stay "written": more is sent, never less */
#endif
    Py_RETURN_NONE;
}

static PyMethodDef Block_methods[] = {
    {"watch", (PyCFunction)Block_watch, METH_NOARGS,
     "watch(): start recording which pages get written (False: not available here)"},
    {"written", (PyCFunction)Block_written, METH_NOARGS,
     "written(): [(first, end)] byte spans of the pages written since watch() or the last "
     "written()/protect(); recording starts afresh"},
    {"protect", (PyCFunction)Block_protect, METH_NOARGS,
     "protect(): forget the writes recorded so far"},
    {NULL, NULL, 0, NULL},
};

static int Block_getbuffer(Block *b, Py_buffer *view, int flags)
{
    if (PyBuffer_FillInfo(view, (PyObject *)b, b->ptr, b->size, 0, flags) != 0) {
        return -1;
    }
    b->exports++;
    return 0;
}

static void Block_releasebuffer(Block *b, Py_buffer *view)
{
    (void)view;
    b->exports--;
}

static void Block_dealloc(Block *b)
{
    /* No export can be alive: each holds a reference to this object. */
    if (b->ptr != NULL) {
        block_unwatch(b);
        pool.live--;
        pool.live_bytes -= b->cap;
        pool_put(b->ptr, b->cap);
        b->ptr = NULL;
    }
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static Py_ssize_t Block_len(Block *b)
{
    return b->size;
}

static PyBufferProcs Block_as_buffer = {
    .bf_getbuffer = (getbufferproc)Block_getbuffer,
    .bf_releasebuffer = (releasebufferproc)Block_releasebuffer,
};

static PySequenceMethods Block_as_sequence = {
    .sq_length = (lenfunc)Block_len,
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensord._pool.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)Block_dealloc,
    .tp_as_buffer = &Block_as_buffer,
    .tp_as_sequence = &Block_as_sequence,
    .tp_methods = Block_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "n bytes of pooled memory (writable, contents undefined); back to the pool when "
              "the last reference goes",
};

/* ---- module functions ---- */

static PyObject *pool_take_py(PyObject *mod, PyObject *arg)
{
    (void)mod;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || (size_t)n > SIZE_MAX - HUGE) {
        PyErr_Format(PyExc_ValueError, "take(%zd): want 0 or more bytes", n);
        return NULL;
    }
    Block *b = PyObject_New(Block, &BlockType);
    if (b == NULL) {
        return NULL;
    }
    b->size = n;
    b->exports = 0;
    b->watched = 0;
    b->cap = 0;
    b->ptr = pool_take(n == 0 ? 1 : (size_t)n, &b->cap);
    if (b->ptr == NULL) {
        Py_TYPE(b)->tp_free((PyObject *)b);
        return PyErr_NoMemory();
    }
    pool.live++;
    pool.live_bytes += b->cap;
    return (PyObject *)b;
}

static PyObject *pool_trim_py(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    pool_shrink(0);
    Py_RETURN_NONE;
}

static PyObject *pool_configure_py(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *names[] = {"limit", "decay", NULL};
    PyObject *limit = Py_None, *decay = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:configure", names, &limit, &decay)) {
        return NULL;
    }
    if (limit != Py_None) {
        Py_ssize_t l = PyLong_AsSsize_t(limit);
        if (l == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (l < 0) {
            PyErr_SetString(PyExc_ValueError, "limit: want 0 or more bytes");
            return NULL;
        }
        pool.limit = (size_t)l;
    }
    if (decay != Py_None) {
        double d = PyFloat_AsDouble(decay);
        if (d == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (!(d >= 0)) {
            PyErr_SetString(PyExc_ValueError, "decay: want 0 or more seconds");
            return NULL;
        }
        pool.decay = d;
    }
    pool_shrink(pool.limit);
    Py_RETURN_NONE;
}

static PyObject *pool_stats_py(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return Py_BuildValue("{s:n,s:i,s:n,s:d,s:K,s:K,s:K,s:n}", "cached_bytes",
                         (Py_ssize_t)pool.bytes, "cached_blocks", pool.n, "limit",
                         (Py_ssize_t)pool.limit, "decay", pool.decay, "hits", pool.hits, "misses",
                         pool.misses, "live_blocks", pool.live, "live_bytes",
                         (Py_ssize_t)pool.live_bytes);
}

/* diff(cur, snap, chunk): where two equal-length buffers differ, chunk by chunk: a list of
** (first, end) byte offsets, one per chunk with a difference (first: its first differing byte,
** end: one past its last). _numpy's check of a shared ndarray for writes, at memcmp's speed
** instead of a numpy comparison per chunk. */
static PyObject *pool_diff_py(PyObject *mod, PyObject *args)
{
    (void)mod;
    Py_buffer a, b;
    Py_ssize_t chunk;
    if (!PyArg_ParseTuple(args, "y*y*n:diff", &a, &b, &chunk)) {
        return NULL;
    }
    PyObject *out = NULL;
    if (a.len != b.len || chunk <= 0) {
        PyErr_SetString(PyExc_ValueError, "diff: want buffers of one length and a chunk > 0");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) {
        goto done;
    }
    const unsigned char *x = a.buf, *y = b.buf;
    Py_ssize_t n = a.len;
    for (Py_ssize_t off = 0; off < n; off += chunk) {
        Py_ssize_t end = n - off < chunk ? n : off + chunk;
        if (memcmp(x + off, y + off, (size_t)(end - off)) == 0) {
            continue;
        }
        Py_ssize_t lo = off, hi = end;
        while (x[lo] == y[lo]) {
            lo++;
        }
        while (x[hi - 1] == y[hi - 1]) {
            hi--;
        }
        PyObject *span = Py_BuildValue("(nn)", lo, hi);
        if (span == NULL || PyList_Append(out, span) != 0) {
            Py_XDECREF(span);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(span);
    }
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}

static PyMethodDef pool_methods[] = {
    {"take", pool_take_py, METH_O,
     "take(n): a Block of n bytes (contents undefined) from the pool or freshly mapped"},
    {"diff", pool_diff_py, METH_VARARGS,
     "diff(cur, snap, chunk): [(first, end)] byte spans that differ, one per differing chunk"},
    {"trim", pool_trim_py, METH_NOARGS, "unmaps every block the pool keeps (live ones stay)"},
    {"configure", (PyCFunction)(void (*)(void))pool_configure_py, METH_VARARGS | METH_KEYWORDS,
     "configure(limit=None, decay=None): bytes kept at most, seconds a block is kept unused"},
    {"stats", pool_stats_py, METH_NOARGS,
     "{cached_bytes, cached_blocks, limit, decay, hits, misses, live_blocks, live_bytes}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pool_module = {
    PyModuleDef_HEAD_INIT,
    "tensord._pool",
    "Pooled memory for the client's large receive buffers (see the file's comment).",
    -1,
    pool_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* A size from the environment (bytes, or with a K/M/G suffix); `dflt` when unset or invalid. */
static double env_number(const char *name, double dflt, int sizes)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char *end;
    double d = strtod(v, &end);
    if (sizes && (*end == 'K' || *end == 'k')) {
        d *= 1024, end++;
    } else if (sizes && (*end == 'M' || *end == 'm')) {
        d *= 1024.0 * 1024, end++;
    } else if (sizes && (*end == 'G' || *end == 'g')) {
        d *= 1024.0 * 1024 * 1024, end++;
    }
    return *end == '\0' && d >= 0 && d < 9e18 ? d : dflt;
}

PyMODINIT_FUNC PyInit__pool(void); /* the interpreter's entry point: nothing else calls it */
PyMODINIT_FUNC PyInit__pool(void)
{
    if (PyType_Ready(&BlockType) < 0) {
        return NULL;
    }
    pool.limit = (size_t)env_number("TENSORD_RECV_POOL_BYTES", (double)pool.limit, 1);
    pool.decay = env_number("TENSORD_RECV_POOL_DECAY", pool.decay, 0);
    PyObject *m = PyModule_Create(&pool_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&BlockType);
    if (PyModule_AddObject(m, "Block", (PyObject *)&BlockType) < 0 ||
        PyModule_AddIntConstant(m, "MIN", POOL_MIN) < 0) {
        Py_DECREF(&BlockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
