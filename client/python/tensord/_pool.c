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

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

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
} Block;

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
