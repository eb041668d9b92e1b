/* client/python/tensord/_fast.c — tensord._fast: the Python client's per-request hot path in C.
**
** What it does. The pure-Python client (tensord._conn, tensord.Session) spends about twenty
** Python frames per request building protobuf message objects, queueing a Pending and parsing
** the reply. This module does the common cases directly:
**   - ConnBase, the base class of _conn.Conn: the connection's counters and queues as C members,
**     and op_fast/get_fast/create_fast/simple_fast, which encode a RunOp (handle and number
**     inputs, OpArgs of the kinds arg_spec lists), a Get, a small Create, or a request whose
**     body is only integer fields (Backward, Grad, SetGrad), with the session's collected
**     handles as free_first, straight into the output buffer, queue the request's Pending, and
**     (op_fast, create_fast) make its result Tensor. Queueing is one transaction
**     (commit_request): a failure leaves nothing queued and the collected handles where they
**     were; _fault(n) makes the n-th step fail, for the tests;
**   - pack_values, torch.tensor(nested lists of Python numbers)'s bytes, shape and dtype;
**     bytearray_uninit, a buffer for a large reply's data section that is not zero-filled;
**   - parse_fast, which reads reply frames whose Response is the common one (the awaited id,
**     status OK, no result, a TensorInfo or an empty BackwardResult) without building a protobuf message: the Pending
**     gets the TensorInfo's facts as a tuple (`info`) and keeps the raw bytes, from which its
**     `resp` is parsed by protobuf only if something asks for it;
**   - Pending, the record of one request (the same attributes as _conn's Python class).
** Anything else (OpArgs, a list operand, an error reply, a partly read frame, a large data
** section) returns None or hands over to the Python code, which uses protobuf as before.
**
** One wire format, one implementation. The request layouts and the common-reply decoder are
** libtensord's (client/c/wire.c, compiled into this module too; the Makefile and setup.py build
** it from the one source): this file reads Python objects into wire.h's structs and hands them
** over. Only OpArgs' fields are written here (they come from Python keywords), with wire.h's
** primitives, and passed to wire.c pre-encoded. The bytes are exactly those protobuf's
** SerializeToString() writes for the same Request, and the decoder agrees with
** ParseFromString() on the fields it returns; tests/python/test_fast_wire.py checks both on
** random messages (tests/client/test_wire.c checks wire.c against protobuf-c). Wire input is
** hostile: every length is checked against what remains, and anything wire.c does not fully
** understand (see wire.h: unpacked shapes, non-printable text, strides, more than 8 dims, ...)
** is left to protobuf, which then accepts or refuses it.
**
** Ownership: functions return new references unless they say otherwise; the module holds one
** reference to each object given to setup().
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "wire.h" /* client/c/wire.h */

#define FRAME_HEADER 12      /* u32 meta_len, u64 data_len, big-endian (tensord_frame.h) */
#define MAX_FAST_INPUTS 8    /* more operands than this take the protobuf path */
#define MAX_FREE_FIRST 4096  /* the server refuses a free_first list longer than this */
#define FLUSH_AT (1 << 16)   /* _conn.FLUSH_AT */
#define READ_CHUNK (1 << 18) /* _conn.READ_CHUNK */

/* Field keys, (field number << 3) | wire type: wire.h's. */
#define WT_VARINT TDW_WT_VARINT
#define WT_I64 TDW_WT_I64
#define WT_LEN TDW_WT_LEN
#define TAG(f, wt) TDW_KEY(f, wt)

/* Set once by setup(): protobuf's Response class, tensord.Tensor, the package's directory. */
static PyObject *g_response_cls;
static PyObject *g_tensor_cls;
static PyObject *g_pkg_dir;
static PyObject *g_argspec; /* OpArgs: {name: (field number, kind, repeated)}, from protobuf */
static PyObject *g_dtypes;  /* {"float32": FLOAT32, ...}: _conn.DTYPE_WIRE */
static PyObject *s_run_op, *s_get, *s_create, *s_tensor_what, *s_empty_bytes, *s_underscore;
static PyObject *s_h, *s_s, *s_root, *s_share, *s_ctxs, *s_p, *s_owns, *s_grad_cache, *s_dead;
static PyObject *s_flush_guarded, *s_parse_py, *s_append, *s_popleft, *s_pop, *s_parse_from;

/* ---- encoding ---- */

/* A byte buffer on the stack for small messages, growing on the heap past that. */
struct buf {
    uint8_t *p;
    size_t n, cap;
    uint8_t inline_[512];
};

static void buf_init(struct buf *b)
{
    b->p = b->inline_;
    b->n = 0;
    b->cap = sizeof b->inline_;
}

static void buf_free(struct buf *b)
{
    if (b->p != b->inline_) {
        PyMem_Free(b->p);
    }
}

static int buf_reserve(struct buf *b, size_t more)
{
    if (more <= b->cap - b->n) {
        return 0;
    }
    if (more > SIZE_MAX / 2 - b->n) {
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = (b->n + more) * 2;
    uint8_t *p = PyMem_Malloc(cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, b->p, b->n);
    buf_free(b);
    b->p = p;
    b->cap = cap;
    return 0;
}

#define varint_size tdw_varint_len

/* The caller has reserved room (at most 10 bytes). */
static void put_varint(struct buf *b, uint64_t v)
{
    b->n = (size_t)(tdw_put_varint(b->p + b->n, v) - b->p);
}

static int put_v(struct buf *b, uint64_t v)
{
    if (buf_reserve(b, 10) != 0) {
        return -1;
    }
    put_varint(b, v);
    return 0;
}

/* tag + varint, the way proto3 writes a non-default scalar. */
static int put_field_varint(struct buf *b, int field, uint64_t v)
{
    return put_v(b, TAG(field, WT_VARINT)) || put_v(b, v) ? -1 : 0;
}

/* The values of a packed repeated (u)int64 field from a sequence of Python ints (a
** PySequence_Fast, or NULL for none): free_first and Free.handles (uint64), Create.shape (int64,
** stored as its two's complement). Each item is converted once, before anything is written: a
** conversion can run Python code (an __index__) that answers differently a second time or
** changes the sequence, so the size wire.c computes must come from the same values as the bytes
** it writes. Items are held while they are converted. Up to U64S_INLINE values need no heap. */
#define U64S_INLINE 64
struct u64s {
    uint64_t *v;
    size_t n;
    uint64_t inline_[U64S_INLINE];
};

static void u64s_free(struct u64s *a)
{
    if (a->v != a->inline_) {
        PyMem_Free(a->v);
    }
    a->v = a->inline_;
    a->n = 0;
}

/* 0, or -1 with an error set (a is then empty). */
static int u64s_from(struct u64s *a, PyObject *seq, bool is_signed)
{
    a->v = a->inline_;
    a->n = 0;
    Py_ssize_t n = seq != NULL ? PySequence_Fast_GET_SIZE(seq) : 0;
    if (n > U64S_INLINE && (a->v = PyMem_New(uint64_t, (size_t)n)) == NULL) {
        a->v = a->inline_;
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t got = 0; got < n && got < PySequence_Fast_GET_SIZE(seq); got++) {
        PyObject *x = Py_NewRef(PySequence_Fast_GET_ITEM(seq, got));
        bool bad;
        if (is_signed) {
            long long v = PyLong_AsLongLong(x);
            bad = v == -1 && PyErr_Occurred();
            a->v[got] = (uint64_t)v;
        } else {
            unsigned long long v = PyLong_AsUnsignedLongLong(x);
            bad = v == (unsigned long long)-1 && PyErr_Occurred();
            a->v[got] = v;
        }
        Py_DECREF(x);
        if (bad) {
            u64s_free(a);
            return -1;
        }
        a->n = (size_t)got + 1; /* emptied while being read: as many as were there */
    }
    return 0;
}

/* Appends request r, with free_first `ff`, to b: 0, 1 when wire.c does not write r (a negative
** op or dtype; nothing is written), -1 error. */
static int put_request(struct buf *b, struct tdw_request *r, const struct u64s *ff)
{
    r->free_first = ff->v;
    r->n_free_first = ff->n;
    size_t size = tdw_request_size(r);
    if (size == 0) {
        return 1;
    }
    if (buf_reserve(b, size) != 0) {
        return -1;
    }
    tdw_request_pack(r, size, b->p + b->n);
    b->n += size;
    return 0;
}

/* A Python number as a Scalar, as _conn.scalar() sets it; 1 if `v` is not one this handles. */
static int operand_of_number(struct tdw_operand *o, PyObject *v)
{
    if (PyBool_Check(v)) {
        o->kind = TDW_BOOL;
        o->v.b = v == Py_True;
        return 0;
    }
    if (PyLong_Check(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 1; /* protobuf's path raises its own error for it */
        }
        o->kind = TDW_INT;
        o->v.i = x;
        return 0;
    }
    if (PyFloat_CheckExact(v)) {
        o->kind = TDW_FLOAT;
        o->v.f = PyFloat_AS_DOUBLE(v);
        return 0;
    }
    return 1;
}

/* ---- OpArgs: an op's keyword arguments, as Conn.op_request sets them ---- */

/* The kinds of OpArgs fields, as setup()'s spec (_conn.arg_spec()) names them. */
enum { ARG_INT64, ARG_SINT64, ARG_UINT64, ARG_BOOL, ARG_DOUBLE, ARG_ENUM, ARG_STRING, ARG_SCALAR };

#define MAX_ARG_FIELDS 32

/* One encoded field, its bytes at [off, off + len) of the scratch buffer. */
struct argfield {
    int number;
    size_t off, len;
};

struct argset {
    struct buf scratch;
    struct argfield f[MAX_ARG_FIELDS];
    int n;
};

/* Starts field `number` in the scratch buffer; 1 when it is there already or there are too
** many (the protobuf path then takes the request), -1 error. */
static int arg_begin(struct argset *a, int number)
{
    if (a->n >= MAX_ARG_FIELDS) {
        return 1;
    }
    for (int i = 0; i < a->n; i++) {
        if (a->f[i].number == number) {
            return 1;
        }
    }
    a->f[a->n].number = number;
    a->f[a->n].off = a->scratch.n;
    return 0;
}

static void arg_end(struct argset *a)
{
    a->f[a->n].len = a->scratch.n - a->f[a->n].off;
    a->n++;
}

static int arg_varint(struct argset *a, int number, uint64_t v)
{
    int rc = arg_begin(a, number);
    if (rc != 0) {
        return rc;
    }
    if (v != 0 && put_field_varint(&a->scratch, number, v) != 0) {
        return -1;
    }
    arg_end(a);
    return 0;
}

/* An int as protobuf's setattr takes it (bool included): 0, 1 not one, -1 error. */
static int arg_int(PyObject *v, int kind, uint64_t *out)
{
    if (!PyLong_Check(v)) {
        return 1;
    }
    if (kind == ARG_UINT64) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        *out = u;
        return 0;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 1;
    }
    *out = kind == ARG_SINT64 ? tdw_zigzag(x) : (uint64_t)x;
    return 0;
}

/* A repeated int64 / sint64 field, packed: `v` a list or tuple of ints (or, unless
** `seq_only`, one int). */
static int arg_repeated(struct argset *a, int number, int kind, PyObject *v, bool seq_only)
{
    PyObject *one[1] = {v};
    PyObject **items = one;
    Py_ssize_t n = 1;
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        items = PySequence_Fast_ITEMS(v);
        n = PySequence_Fast_GET_SIZE(v);
    } else if (seq_only) {
        return 1;
    }
    uint64_t vals[64];
    if (n > 64) {
        return 1;
    }
    size_t len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = arg_int(items[i], kind, &vals[i]);
        if (rc != 0) {
            return rc;
        }
        len += varint_size(vals[i]);
    }
    int rc = arg_begin(a, number);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        if (put_v(&a->scratch, TAG(number, WT_LEN)) || put_v(&a->scratch, len) ||
            buf_reserve(&a->scratch, len)) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            put_varint(&a->scratch, vals[i]);
        }
    }
    arg_end(a);
    return 0;
}

static int arg_string(struct argset *a, int number, PyObject *v)
{
    if (!PyUnicode_CheckExact(v)) {
        return 1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(v, &n);
    if (u == NULL) {
        PyErr_Clear();
        return 1;
    }
    int rc = arg_begin(a, number);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        if (put_v(&a->scratch, TAG(number, WT_LEN)) || put_v(&a->scratch, (uint64_t)n) ||
            buf_reserve(&a->scratch, (size_t)n)) {
            return -1;
        }
        memcpy(a->scratch.p + a->scratch.n, u, (size_t)n);
        a->scratch.n += (size_t)n;
    }
    arg_end(a);
    return 0;
}

/* One keyword: 0 encoded, 1 not one this encoder takes, -1 error. The special cases follow
** Conn.op_request's order of tests. */
static int arg_one(struct argset *a, PyObject *key, PyObject *v)
{
    PyObject *spec = PyDict_GetItemWithError(g_argspec, key);
    if (spec == NULL) {
        return PyErr_Occurred() ? -1 : 1; /* out2, out3, or not an OpArgs field */
    }
    int number = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
    int repeated = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
    const char *name = PyUnicode_AsUTF8(key);
    if (name == NULL || PyErr_Occurred()) {
        return -1;
    }
    if (strncmp(name, "has_", 4) == 0) {
        return 1; /* set beside another key: left to protobuf's order of assignment */
    }
    int rc;
    uint64_t u;
    if (strcmp(name, "dims") == 0) { /* dims.extend(v); has_dims = True */
        rc = arg_repeated(a, number, kind, v, true);
        return rc != 0 ? rc : arg_varint(a, 2, 1);
    }
    if (kind == ARG_SCALAR) { /* min, max, value, alpha, beta: _conn.scalar() */
        struct tdw_operand o;
        if (operand_of_number(&o, v) != 0 || (rc = arg_begin(a, number)) != 0) {
            return 1;
        }
        size_t sz = tdw_scalar_size(&o);
        if (put_v(&a->scratch, TAG(number, WT_LEN)) || put_v(&a->scratch, sz) ||
            buf_reserve(&a->scratch, sz)) {
            return -1;
        }
        a->scratch.n = (size_t)(tdw_put_scalar(a->scratch.p + a->scratch.n, &o) - a->scratch.p);
        arg_end(a);
        return 0;
    }
    if (strcmp(name, "dtype") == 0) { /* a.dtype = DTYPE_WIRE[v] */
        PyObject *d = PyUnicode_CheckExact(v) ? PyDict_GetItemWithError(g_dtypes, v) : NULL;
        if (d == NULL) {
            return PyErr_Occurred() ? -1 : 1;
        }
        return arg_varint(a, number, (uint64_t)PyLong_AsLongLong(d));
    }
    if (strcmp(name, "padding") == 0 && PyUnicode_Check(v)) { /* conv's 'same' / 'valid' */
        PyObject *mode = PyUnicode_FromString("padding_mode");
        if (mode == NULL) {
            return -1;
        }
        PyObject *mspec = PyDict_GetItemWithError(g_argspec, mode);
        Py_DECREF(mode);
        if (mspec == NULL) {
            return PyErr_Occurred() ? -1 : 1;
        }
        return arg_string(a, (int)PyLong_AsLong(PyTuple_GET_ITEM(mspec, 0)), v);
    }
    if (repeated) { /* shifts, stride, padding ...: one int or a list */
        return arg_repeated(a, number, kind, v, false);
    }
    switch (kind) {
    case ARG_INT64:
    case ARG_SINT64:
    case ARG_UINT64:
        if ((rc = arg_int(v, kind, &u)) != 0 || (rc = arg_varint(a, number, u)) != 0) {
            return rc;
        }
        if (strcmp(name, "dim") == 0) { /* has_dim = True */
            return arg_varint(a, 6, 1);
        }
        return 0;
    case ARG_BOOL:
        if (!PyBool_Check(v)) {
            return 1;
        }
        return arg_varint(a, number, v == Py_True);
    case ARG_DOUBLE: {
        double d;
        if (PyFloat_CheckExact(v)) {
            d = PyFloat_AS_DOUBLE(v);
        } else if (PyLong_CheckExact(v)) {
            d = PyLong_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 1;
            }
        } else {
            return 1;
        }
        if ((rc = arg_begin(a, number)) != 0) {
            return rc;
        }
        uint64_t bits;
        memcpy(&bits, &d, 8);
        if (bits != 0) { /* proto3 omits +0.0 only */
            if (put_v(&a->scratch, TAG(number, WT_I64)) || buf_reserve(&a->scratch, 8)) {
                return -1;
            }
            for (int i = 0; i < 8; i++) {
                a->scratch.p[a->scratch.n++] = (uint8_t)(bits >> (8 * i));
            }
        }
        arg_end(a);
        if (strcmp(name, "correction") == 0) { /* has_correction = True */
            return arg_varint(a, 14, 1);
        }
        return 0;
    }
    case ARG_STRING: return arg_string(a, number, v);
    default: return 1;
    }
}

/* The OpArgs message's fields for the keywords `kw` (a dict; may be NULL), written to `args`
** (empty on entry); *present is set when there is a keyword: any makes the message present, as
** setting any field does in protobuf. 0, -1 error, 1 a keyword the fast path leaves. */
static int encode_args(struct buf *args, PyObject *kw, bool *present)
{
    *present = false;
    if (kw == NULL || PyDict_GET_SIZE(kw) == 0) {
        return 0;
    }
    *present = true;
    if (g_argspec == NULL || g_dtypes == NULL) {
        return 1;
    }
    struct argset a;
    buf_init(&a.scratch);
    a.n = 0;
    PyObject *key, *v;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (rc == 0 && PyDict_Next(kw, &pos, &key, &v)) {
        /* held: a str subclass's __hash__/__eq__ (the spec lookup) may change the dict */
        Py_INCREF(key);
        Py_INCREF(v);
        rc = PyUnicode_Check(key) ? arg_one(&a, key, v) : 1;
        Py_DECREF(key);
        Py_DECREF(v);
    }
    if (rc == 0) {
        /* fields in number order, as protobuf writes them (insertion sort: a few fields) */
        for (int i = 1; i < a.n; i++) {
            struct argfield f = a.f[i];
            int j = i - 1;
            for (; j >= 0 && a.f[j].number > f.number; j--) {
                a.f[j + 1] = a.f[j];
            }
            a.f[j + 1] = f;
        }
        size_t len = 0;
        for (int i = 0; i < a.n; i++) {
            len += a.f[i].len;
        }
        if (buf_reserve(args, len) != 0) {
            rc = -1;
        } else {
            for (int i = 0; i < a.n; i++) {
                memcpy(args->p + args->n, a.scratch.p + a.f[i].off, a.f[i].len);
                args->n += a.f[i].len;
            }
        }
    }
    buf_free(&a.scratch);
    return rc;
}

/* 0, -1 error, or 1 when a keyword is not one the fast path encodes (nothing is written). */
static int encode_run_op(struct buf *b, uint64_t id, uint64_t out, int op,
                         const struct tdw_operand *in, int nin, bool inplace, PyObject *kw,
                         PyObject *free_first)
{
    struct buf args;
    buf_init(&args);
    bool has_args;
    struct u64s ff;
    int rc = encode_args(&args, kw, &has_args);
    if (rc == 0 && (rc = u64s_from(&ff, free_first, false)) == 0) {
        struct tdw_request r = {.id = id, .body = TDW_RUN_OP};
        r.u.run_op.out = out;
        r.u.run_op.op = op;
        r.u.run_op.inputs = in;
        r.u.run_op.n_inputs = (size_t)nin;
        r.u.run_op.inplace = inplace;
        r.u.run_op.args = has_args ? args.p : NULL;
        r.u.run_op.args_len = args.n;
        rc = put_request(b, &r, &ff);
        u64s_free(&ff);
    }
    buf_free(&args);
    return rc;
}

static int encode_get(struct buf *b, uint64_t id, uint64_t handle, bool meta_only, uint64_t offset,
                      uint64_t length, PyObject *free_first)
{
    struct u64s ff;
    if (u64s_from(&ff, free_first, false) != 0) {
        return -1;
    }
    struct tdw_request r = {.id = id, .body = TDW_GET};
    r.u.get.handle = handle;
    r.u.get.meta_only = meta_only;
    r.u.get.offset = offset;
    r.u.get.length = length;
    int rc = put_request(b, &r, &ff);
    u64s_free(&ff);
    return rc;
}

/* 0, or -1 with an error set (a negative dtype: ValueError). */
static int encode_create(struct buf *b, uint64_t id, uint64_t out, int dtype, PyObject *shape,
                         bool requires_grad, PyObject *free_first)
{
    struct u64s dims, ff;
    if (u64s_from(&dims, shape, true) != 0) {
        return -1;
    }
    if (u64s_from(&ff, free_first, false) != 0) {
        u64s_free(&dims);
        return -1;
    }
    struct tdw_request r = {.id = id, .body = TDW_CREATE};
    r.u.create.out = out;
    r.u.create.dtype = dtype;
    r.u.create.shape = (const int64_t *)dims.v; /* int64's bits, as stored */
    r.u.create.n_shape = dims.n;
    r.u.create.requires_grad = requires_grad;
    int rc = put_request(b, &r, &ff);
    if (rc > 0) {
        PyErr_SetString(PyExc_ValueError, "encode_create: a negative dtype");
        rc = -1;
    }
    u64s_free(&dims);
    u64s_free(&ff);
    return rc;
}

#define MAX_SIMPLE_FIELDS 8

/* A body whose fields 1..n are all varint scalars (uint64, bool), each written when not 0:
** Backward (handle, gradient, retain_graph), Grad (handle, out), SetGrad (handle,
** requires_grad, clear_grad, retain_grad): wire.c's TDW_VARINTS. The body field must come
** before free_first (22) in number order, as protobuf writes fields. */
static int encode_simple(struct buf *b, uint64_t id, int body_field, const uint64_t *v, int n,
                         PyObject *free_first)
{
    if (body_field < 2 || body_field >= 22 || n < 0 || n > MAX_SIMPLE_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "encode_simple: a body field 2-21, at most 8 values");
        return -1;
    }
    struct u64s ff;
    if (u64s_from(&ff, free_first, false) != 0) {
        return -1;
    }
    struct tdw_request r = {.id = id, .body = TDW_VARINTS};
    r.u.varints.field = body_field;
    r.u.varints.v = v;
    r.u.varints.n = (size_t)n;
    int rc = put_request(b, &r, &ff);
    u64s_free(&ff);
    return rc > 0 ? -1 : rc; /* wire.c writes every body checked above */
}

/* The values of encode_simple from a tuple of ints (bools are ints); -1 with an error set. */
static int simple_values(PyObject *t, uint64_t *v, int *n)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) > MAX_SIMPLE_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "values: a tuple of at most 8 ints");
        return -1;
    }
    *n = (int)PyTuple_GET_SIZE(t);
    for (int i = 0; i < *n; i++) {
        PyObject *x = PyTuple_GET_ITEM(t, i);
        if (!PyLong_Check(x)) {
            PyErr_SetString(PyExc_TypeError, "values: a tuple of at most 8 ints");
            return -1;
        }
        v[i] = PyLong_AsUnsignedLongLong(x);
        if (v[i] == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

/* ---- decoding ---- */

/* The common Response (id, status, and a TensorInfo, an empty BackwardResult (what a Backward
** that ran to the end answers) or no result), read by wire.c; -1 for anything else, and for a
** TensorInfo whose dtype this client does not know (0..5): protobuf's path then reads it. */
static int decode_response(const uint8_t *p, size_t n, struct tdw_reply *out)
{
    if (tdw_reply_decode(p, n, out) != 0) {
        return -1;
    }
    return !out->has_tensor || (out->tensor.dtype >= 0 && out->tensor.dtype <= 5) ? 0 : -1;
}

/* (handle, dtype, shape, nbytes, offset, length): the TensorInfo facts the client reads. */
static PyObject *tinfo_tuple(const struct tdw_tensor *t)
{
    PyObject *shape = PyTuple_New(t->ndim);
    if (shape == NULL) {
        return NULL;
    }
    for (int i = 0; i < t->ndim; i++) {
        PyObject *d = PyLong_FromLongLong(t->shape[i]);
        if (d == NULL) {
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, i, d);
    }
    return Py_BuildValue("(KiNKKK)", (unsigned long long)t->handle, (int)t->dtype, shape,
                         (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                         (unsigned long long)t->length);
}

/* ---- Pending ---- */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    unsigned long long id;
    long long end;
    char done, resent;
    PyObject *kind, *frame, *data, *replay, *resp, *raw, *data_in, *error, *into, *on_done, *tag,
        *info, *out;
} Pending;

static PyTypeObject PendingType;

static Pending *pending_new(PyObject *kind, PyObject *frame, PyObject *data, PyObject *replay)
{
    Pending *p = PyObject_GC_New(Pending, &PendingType);
    if (p == NULL) {
        return NULL;
    }
    p->id = 0;
    p->end = 0;
    p->done = p->resent = 0;
    p->kind = Py_NewRef(kind);
    p->frame = Py_NewRef(frame);
    p->data = Py_NewRef(data);
    p->replay = Py_NewRef(replay);
    p->resp = Py_NewRef(Py_None);
    p->raw = NULL;
    p->data_in = Py_NewRef(s_empty_bytes);
    p->error = Py_NewRef(Py_None);
    p->into = Py_NewRef(Py_None);
    p->on_done = Py_NewRef(Py_None);
    p->tag = Py_NewRef(Py_None);
    p->info = Py_NewRef(Py_None);
    p->out = Py_NewRef(Py_None);
    PyObject_GC_Track(p);
    return p;
}

static PyObject *Pending_tp_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)type;
    static char *names[] = {"kind", "frame", "data", "replay", NULL};
    PyObject *kind, *frame, *data, *replay;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO:Pending", names, &kind, &frame, &data,
                                     &replay)) {
        return NULL;
    }
    return (PyObject *)pending_new(kind, frame, data, replay);
}

static int Pending_traverse(Pending *p, visitproc visit, void *arg)
{
    Py_VISIT(p->kind);
    Py_VISIT(p->frame);
    Py_VISIT(p->data);
    Py_VISIT(p->replay);
    Py_VISIT(p->resp);
    Py_VISIT(p->raw);
    Py_VISIT(p->data_in);
    Py_VISIT(p->error);
    Py_VISIT(p->into);
    Py_VISIT(p->on_done);
    Py_VISIT(p->tag);
    Py_VISIT(p->info);
    Py_VISIT(p->out);
    return 0;
}

static int Pending_clear(Pending *p)
{
    Py_CLEAR(p->kind);
    Py_CLEAR(p->frame);
    Py_CLEAR(p->data);
    Py_CLEAR(p->replay);
    Py_CLEAR(p->resp);
    Py_CLEAR(p->raw);
    Py_CLEAR(p->data_in);
    Py_CLEAR(p->error);
    Py_CLEAR(p->into);
    Py_CLEAR(p->on_done);
    Py_CLEAR(p->tag);
    Py_CLEAR(p->info);
    Py_CLEAR(p->out);
    return 0;
}

static void Pending_dealloc(Pending *p)
{
    PyObject_GC_UnTrack(p);
    Pending_clear(p);
    PyObject_GC_Del(p);
}

/* resp: the reply as a protobuf Response, parsed from the raw bytes when first asked for. */
static PyObject *Pending_get_resp(Pending *p, void *closure)
{
    (void)closure;
    if (p->raw != NULL) {
        if (g_response_cls == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "tensord._fast.setup() was not called");
            return NULL;
        }
        PyObject *r = PyObject_CallNoArgs(g_response_cls);
        if (r == NULL) {
            return NULL;
        }
        PyObject *raw = Py_NewRef(p->raw); /* held: the call may run code that sets p.resp */
        PyObject *ok = PyObject_CallMethodOneArg(r, s_parse_from, raw);
        Py_DECREF(raw);
        if (ok == NULL) {
            Py_DECREF(r);
            return NULL;
        }
        Py_DECREF(ok);
        Py_XSETREF(p->resp, r);
        Py_CLEAR(p->raw);
    }
    return Py_NewRef(p->resp ? p->resp : Py_None);
}

static int Pending_set_resp(Pending *p, PyObject *v, void *closure)
{
    (void)closure;
    Py_CLEAR(p->raw);
    Py_XSETREF(p->resp, Py_NewRef(v ? v : Py_None));
    return 0;
}

static PyGetSetDef Pending_getset[] = {
    {"resp", (getter)Pending_get_resp, (setter)Pending_set_resp, "the reply (Response)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Pending_members[] = {
    {"id", T_ULONGLONG, offsetof(Pending, id), 0, NULL},
    {"end", T_LONGLONG, offsetof(Pending, end), 0, NULL},
    {"done", T_BOOL, offsetof(Pending, done), 0, NULL},
    {"resent", T_BOOL, offsetof(Pending, resent), 0, NULL},
    {"kind", T_OBJECT, offsetof(Pending, kind), 0, NULL},
    {"frame", T_OBJECT, offsetof(Pending, frame), 0, NULL},
    {"data", T_OBJECT, offsetof(Pending, data), 0, NULL},
    {"replay", T_OBJECT, offsetof(Pending, replay), 0, NULL},
    {"data_in", T_OBJECT, offsetof(Pending, data_in), 0, NULL},
    {"error", T_OBJECT, offsetof(Pending, error), 0, NULL},
    {"into", T_OBJECT, offsetof(Pending, into), 0, NULL},
    {"on_done", T_OBJECT, offsetof(Pending, on_done), 0, NULL},
    {"tag", T_OBJECT, offsetof(Pending, tag), 0, NULL},
    {"info", T_OBJECT, offsetof(Pending, info), 0, NULL},
    {"out", T_OBJECT, offsetof(Pending, out), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensord._fast.Pending",
    .tp_basicsize = sizeof(Pending),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One request's reply, filled in when it is read (see tensord._conn).",
    .tp_new = Pending_tp_new,
    .tp_dealloc = (destructor)Pending_dealloc,
    .tp_traverse = (traverseproc)Pending_traverse,
    .tp_clear = (inquiry)Pending_clear,
    .tp_members = Pending_members,
    .tp_getset = Pending_getset,
};

/* ---- ConnBase ---- */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    unsigned long long next_handle, next_id;
    long long frames_sent, queued, out_bytes;
    long long version; /* the Hello's uint32 (a T_INT would truncate one past INT_MAX) */
    Py_ssize_t pos;
    PyObject *out, *tail, *pending, *in, *frame, *meta, *error_sink;
} ConnBase;

static int ConnBase_traverse(ConnBase *c, visitproc visit, void *arg)
{
    Py_VISIT(c->out);
    Py_VISIT(c->tail);
    Py_VISIT(c->pending);
    Py_VISIT(c->in);
    Py_VISIT(c->frame);
    Py_VISIT(c->meta);
    Py_VISIT(c->error_sink);
    return 0;
}

static int ConnBase_clear(ConnBase *c)
{
    Py_CLEAR(c->out);
    Py_CLEAR(c->tail);
    Py_CLEAR(c->pending);
    Py_CLEAR(c->in);
    Py_CLEAR(c->frame);
    Py_CLEAR(c->meta);
    Py_CLEAR(c->error_sink);
    return 0;
}

/* A Python subclass's dealloc (subtype_dealloc) calls this, and releases the type itself. */
static void ConnBase_dealloc(ConnBase *c)
{
    PyObject_GC_UnTrack(c);
    ConnBase_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

/* The first Python frame outside the package (the user's line) as the pair a request's tag
** keeps: its code object and its last instruction's offset (both new references; None and 0
** when there is none). Its "file:line" is worked out only when an error message needs it
** (where()): PyFrame_GetLineNumber and the formatting were most of this walk's cost. */
static int caller_site(PyObject **code_out, PyObject **lasti_out)
{
    PyFrameObject *f = g_pkg_dir != NULL ? PyEval_GetFrame() : NULL;
    Py_XINCREF(f);
    while (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        if (PyUnicode_Tailmatch(code->co_filename, g_pkg_dir, 0, PY_SSIZE_T_MAX, -1) != 1) {
            *lasti_out = PyLong_FromLong(PyFrame_GetLasti(f));
            Py_DECREF(f);
            if (*lasti_out == NULL) {
                Py_DECREF(code);
                return -1;
            }
            *code_out = (PyObject *)code;
            return 0;
        }
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    *code_out = Py_NewRef(Py_None);
    *lasti_out = PyLong_FromLong(0);
    return *lasti_out == NULL ? -1 : 0;
}

/* "file:line" of a caller_site() pair; "?" for none. */
static PyObject *site_text(PyObject *code, int lasti)
{
    if (!PyCode_Check(code)) {
        return PyUnicode_FromString("?");
    }
    PyCodeObject *co = (PyCodeObject *)code;
    return PyUnicode_FromFormat("%U:%d", co->co_filename, PyCode_Addr2Line(co, lasti));
}

/* file:line of the first Python frame outside the package: the user's line (_caller()). */
static PyObject *caller(void)
{
    if (g_pkg_dir == NULL) {
        return PyUnicode_FromString("?");
    }
    PyFrameObject *f = PyEval_GetFrame();
    Py_XINCREF(f);
    while (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *file = code->co_filename;
        if (PyUnicode_Tailmatch(file, g_pkg_dir, 0, PY_SSIZE_T_MAX, -1) != 1) {
            PyObject *s = PyUnicode_FromFormat("%U:%d", file, PyFrame_GetLineNumber(f));
            Py_DECREF(code);
            Py_DECREF(f);
            return s;
        }
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    return PyUnicode_FromString("?");
}

/* Appends a frame (header, the meta bytes, then `dlen` data bytes) to the output queue: the
** last bytearray of `_out` when it is this object's own, else a new one. */
static int queue_frame(ConnBase *c, const struct buf *meta, const void *data, size_t dlen)
{
    if (c->out == NULL || !PyList_Check(c->out)) {
        PyErr_SetString(PyExc_RuntimeError, "connection is not set up");
        return -1;
    }
    Py_ssize_t nout = PyList_GET_SIZE(c->out);
    if (c->tail == NULL || nout == 0 || PyList_GET_ITEM(c->out, nout - 1) != c->tail) {
        PyObject *t = PyByteArray_FromStringAndSize(NULL, 0);
        if (t == NULL || PyList_Append(c->out, t) != 0) {
            Py_XDECREF(t);
            return -1;
        }
        Py_XSETREF(c->tail, t);
    }
    Py_ssize_t old = PyByteArray_GET_SIZE(c->tail);
    size_t add = FRAME_HEADER + meta->n + dlen; /* both below FLUSH_AT: no overflow */
    if (PyByteArray_Resize(c->tail, old + (Py_ssize_t)add) != 0) {
        return -1;
    }
    uint8_t *d = (uint8_t *)PyByteArray_AS_STRING(c->tail) + old;
    uint32_t ml = (uint32_t)meta->n;
    for (int i = 0; i < 4; i++) {
        d[i] = (uint8_t)(ml >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++) {
        d[4 + i] = (uint8_t)((uint64_t)dlen >> (56 - 8 * i));
    }
    memcpy(d + FRAME_HEADER, meta->p, meta->n);
    if (dlen > 0) {
        memcpy(d + FRAME_HEADER + meta->n, data, dlen);
    }
    c->frames_sent++;
    c->out_bytes += (long long)add;
    c->queued += (long long)add;
    return 0;
}

/* The session's collected handles for free_first: a new list (possibly empty), or NULL with
** no error set when they need a Free request of their own (the protobuf path sends it). */
static PyObject *take_dead(ConnBase *c, PyObject *session, PyObject **dead_out)
{
    PyObject *dead = PyObject_GetAttr(session, s_dead);
    if (dead == NULL) {
        return NULL;
    }
    if (!PyList_CheckExact(dead)) {
        Py_DECREF(dead);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(dead);
    if (n > 0 && (n > MAX_FREE_FIRST || c->version < 2)) {
        Py_DECREF(dead);
        return NULL;
    }
    PyObject *ff = PyList_GetSlice(dead, 0, n);
    if (ff == NULL) {
        Py_DECREF(dead);
        return NULL;
    }
    *dead_out = dead;
    return ff;
}

/* A new Tensor object naming handle `h` of `session`, made by Pending p (as Tensor._made). */
static PyObject *new_tensor(PyObject *session, uint64_t h, Pending *p)
{
    if (g_tensor_cls == NULL) { /* the package calls setup() when it uses this module */
        PyErr_SetString(PyExc_RuntimeError, "tensord._fast.setup() was not called");
        return NULL;
    }
    PyObject *t = PyType_GenericNew((PyTypeObject *)g_tensor_cls, NULL, NULL);
    PyObject *hv = PyLong_FromUnsignedLongLong(h);
    if (t == NULL || hv == NULL) {
        Py_XDECREF(t);
        Py_XDECREF(hv);
        return NULL;
    }
    Py_XSETREF(p->out, Py_NewRef(hv));
    int rc = PyObject_SetAttr(t, s_s, session) || PyObject_SetAttr(t, s_h, hv) ||
             PyObject_SetAttr(t, s_p, (PyObject *)p) || PyObject_SetAttr(t, s_owns, Py_True);
    Py_DECREF(hv);
    if (rc != 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* Fault injection for the tests (_fast._fault(n)): the n-th fault point reached from now on
** fails as an allocation failure would (MemoryError); 0 turns it off. One branch when off. */
static long g_fault;
#define FAULT_POINT() (g_fault > 0 && --g_fault == 0 ? (PyErr_NoMemory(), 1) : 0)

/* Discards a Tensor made for a request that was not queued: it must not free its handle. */
static void drop_tensor(PyObject *t)
{
    if (t == NULL) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyObject_SetAttr(t, s_owns, Py_False) != 0) {
        PyErr_Clear(); /* then its __del__ frees a handle never made: the server ignores that */
    }
    PyErr_Restore(type, value, tb);
    Py_DECREF(t);
}

/* Takes the first n items of the exact list `dead` off it. They are the items of `ff`, which
** holds a reference to each, so dropping the list's references frees nothing and runs no code:
** this cannot fail (PyList_SetSlice can: MemoryError). */
static void take_prefix(PyObject *dead, Py_ssize_t n)
{
    PyListObject *l = (PyListObject *)dead;
    Py_ssize_t size = PyList_GET_SIZE(dead);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(l->ob_item[i]);
    }
    memmove(l->ob_item, l->ob_item + n, (size_t)(size - n) * sizeof(PyObject *));
    Py_SET_SIZE(l, size - n);
}

/* Queues the encoded request `meta` (its id is c->next_id) as one transaction: a Pending of
** kind `kind` (with `data`, bytes kept for a re-send, NULL: none), its frame, and when out != 0
** the Tensor naming `out` (*tensor_out, a new reference; with `new_handle`, `out` is
** c->next_handle, which moves on when the request is queued). The handles of `ff` (taken from the
** front of the session's list `dead` by take_dead, and encoded as free_first) leave `dead`
** only when the frame is queued. Either all of that happens and the id (and, with `out`, the
** handle) counter moves on, or nothing visible does and NULL is returned with an error set:
** a failure can never leave a queued request whose free_first handles are still in `dead`
** (they would be freed twice, and re-sent after a resume), nor a handle with no owner. */
static Pending *commit_request(ConnBase *c, PyObject *session, PyObject *kind,
                               const struct buf *meta, bool replay, PyObject *what, PyObject *data,
                               PyObject *dead, PyObject *ff, uint64_t out, bool new_handle,
                               PyObject **tensor_out)
{
    if (c->pending == NULL || !PyList_Check(c->out)) { /* Conn.__init__ did not set it up */
        PyErr_SetString(PyExc_RuntimeError, "connection is not set up");
        return NULL;
    }
    Py_ssize_t nff = PyList_GET_SIZE(ff);
    PyObject *t = NULL, *tag = NULL;
    Pending *p = NULL;
    PyObject *frame = FAULT_POINT()
                          ? NULL
                          : PyBytes_FromStringAndSize((const char *)meta->p, (Py_ssize_t)meta->n);
    if (frame == NULL) {
        return NULL;
    }
    p = pending_new(kind, frame, data != NULL ? data : s_empty_bytes, replay ? Py_True : Py_False);
    Py_DECREF(frame);
    if (p == NULL) {
        return NULL;
    }
    p->id = c->next_id;
    PyObject *code = NULL, *lasti = NULL;
    if (FAULT_POINT() || caller_site(&code, &lasti) != 0) {
        goto fail;
    }
    tag = PyTuple_Pack(3, what, code, lasti); /* (what, code, lasti): see caller_site() */
    Py_DECREF(code);
    Py_DECREF(lasti);
    if (tag == NULL) {
        goto fail;
    }
    Py_XSETREF(p->tag, tag);
    if (out != 0 && (FAULT_POINT() || (t = new_tensor(session, out, p)) == NULL)) {
        goto fail;
    }
    /* Code run by the allocations above (a collection's __del__) only appends to `dead`. */
    if (PyList_GET_SIZE(dead) < nff) {
        PyErr_SetString(PyExc_RuntimeError, "the session's freed-handle list changed");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < nff; i++) {
        if (PyList_GET_ITEM(dead, i) != PyList_GET_ITEM(ff, i)) {
            PyErr_SetString(PyExc_RuntimeError, "the session's freed-handle list changed");
            goto fail;
        }
    }
    PyObject *r = FAULT_POINT() ? NULL
                                : PyObject_CallMethodOneArg(c->pending, s_append, (PyObject *)p);
    if (r == NULL) {
        goto fail;
    }
    Py_DECREF(r);
    if (FAULT_POINT() || queue_frame(c, meta, data != NULL ? PyBytes_AS_STRING(data) : NULL,
                                     data != NULL ? (size_t)PyBytes_GET_SIZE(data) : 0) != 0) {
        /* take p back off the queue (deque.pop frees, never allocates) */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *back = PyObject_CallMethodNoArgs(c->pending, s_pop);
        Py_XDECREF(back);
        PyErr_Restore(type, value, tb);
        goto fail;
    }
    /* Queued: from here on nothing can fail. */
    take_prefix(dead, nff);
    p->end = c->queued;
    c->next_id++;
    if (new_handle) {
        c->next_handle++;
    }
    if (tensor_out != NULL) {
        *tensor_out = t;
    } else {
        Py_XDECREF(t);
    }
    return p;
fail:
    drop_tensor(t);
    Py_DECREF(p);
    return NULL;
}

/* After queueing: a full buffer is written now (Conn._flush_guarded), as _conn._queue does. */
static int maybe_flush(ConnBase *c)
{
    if (c->out_bytes < FLUSH_AT) {
        return FAULT_POINT() ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)c, s_flush_guarded);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int attr_is_none(PyObject *o, PyObject *name, int *is_none)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) {
        return -1;
    }
    *is_none = v == Py_None;
    Py_DECREF(v);
    return 0;
}

/* One input of op_fast: 0 ok, 1 not for the fast path, -1 error. A Tensor must be this
** session's, share no ndarray and reach no custom Function (Session._op handles those). */
static int fast_input(PyObject *x, PyObject *session, struct tdw_operand *o)
{
    if (!PyObject_TypeCheck(x, (PyTypeObject *)g_tensor_cls)) {
        return operand_of_number(o, x);
    }
    PyObject *s = PyObject_GetAttr(x, s_s);
    if (s == NULL) {
        return -1;
    }
    Py_DECREF(s);
    if (s != session) {
        return 1;
    }
    PyObject *root = PyObject_GetAttr(x, s_root);
    if (root == NULL) {
        return -1;
    }
    int none;
    int rc = attr_is_none(root == Py_None ? x : root, s_share, &none);
    Py_DECREF(root);
    if (rc != 0) {
        return -1;
    }
    if (!none) {
        return 1;
    }
    PyObject *ctxs = PyObject_GetAttr(x, s_ctxs);
    if (ctxs == NULL) {
        return -1;
    }
    int has = PyObject_IsTrue(ctxs);
    Py_DECREF(ctxs);
    if (has != 0) {
        return has < 0 ? -1 : 1;
    }
    PyObject *h = PyObject_GetAttr(x, s_h);
    if (h == NULL) {
        return -1;
    }
    o->kind = TDW_HANDLE;
    o->v.handle = PyLong_AsUnsignedLongLong(h);
    Py_DECREF(h);
    if (o->v.handle == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

/* op_fast(session, op_code, inputs, inplace, name, kw): Session._op's common case (kw: its
** keywords, or None). Returns the result Tensor (inputs[0] when in place), or None when the
** protobuf path must take it. */
static PyObject *ConnBase_op_fast(ConnBase *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "op_fast(session, op, inputs, inplace, name, kw)");
        return NULL;
    }
    PyObject *session = args[0], *inputs = args[2], *name = args[4];
    PyObject *kw = args[5] == Py_None ? NULL : args[5];
    if (kw != NULL && !PyDict_Check(kw)) {
        Py_RETURN_NONE;
    }
    int op = (int)PyLong_AsLong(args[1]);
    int inplace = PyObject_IsTrue(args[3]);
    if ((op == -1 && PyErr_Occurred()) || inplace < 0) {
        return NULL;
    }
    if (!PyList_CheckExact(inputs) && !PyTuple_CheckExact(inputs)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t nin = PySequence_Fast_GET_SIZE(inputs);
    if (nin > MAX_FAST_INPUTS) {
        Py_RETURN_NONE;
    }
    struct tdw_operand in[MAX_FAST_INPUTS];
    PyObject **items = PySequence_Fast_ITEMS(inputs);
    for (Py_ssize_t i = 0; i < nin; i++) {
        int rc = fast_input(items[i], session, &in[i]);
        if (rc != 0) {
            if (rc < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    if (inplace && (nin == 0 || in[0].kind != TDW_HANDLE)) {
        Py_RETURN_NONE;
    }
    PyObject *dead = NULL;
    PyObject *ff = take_dead(c, session, &dead);
    if (ff == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = NULL, *what = NULL, *t = NULL;
    Pending *p = NULL;
    struct buf meta;
    buf_init(&meta);
    uint64_t out = inplace ? 0 : c->next_handle;
    uint64_t id = c->next_id;
    int erc = encode_run_op(&meta, id, out, op, in, (int)nin, inplace, kw, ff);
    if (erc != 0) {
        if (erc > 0) {
            result = Py_NewRef(Py_None); /* a keyword for the protobuf path */
        }
        goto done;
    }
    what = inplace ? PyUnicode_Concat(name, s_underscore) : Py_NewRef(name);
    if (what == NULL) {
        goto done;
    }
    if (inplace) { /* before queueing: a failure after it must not leave a stale cache */
        t = Py_NewRef(items[0]);
        if (PyObject_SetAttr(t, s_grad_cache, Py_None) != 0) {
            goto done;
        }
    }
    p = commit_request(c, session, s_run_op, &meta, !inplace, what, NULL, dead, ff, out, !inplace,
                       inplace ? NULL : &t);
    if (p == NULL) {
        goto done;
    }
    if (maybe_flush(c) != 0) {
        goto done;
    }
    result = Py_NewRef(t);
done:
    buf_free(&meta);
    Py_XDECREF(t);
    Py_XDECREF((PyObject *)p);
    Py_XDECREF(what);
    Py_DECREF(ff);
    Py_DECREF(dead);
    return result;
}

/* get_fast(session, handle, meta_only, offset, length, what): queues a Get as Session._send
** does; returns its Pending, or None when the protobuf path must take it. */
static PyObject *ConnBase_get_fast(ConnBase *c, PyObject *args)
{
    PyObject *session, *what;
    unsigned long long handle, offset, length;
    int meta_only;
    if (!PyArg_ParseTuple(args, "OKpKKO:get_fast", &session, &handle, &meta_only, &offset, &length,
                          &what)) {
        return NULL;
    }
    PyObject *dead = NULL;
    PyObject *ff = take_dead(c, session, &dead);
    if (ff == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    Pending *p = NULL;
    struct buf meta;
    buf_init(&meta);
    uint64_t id = c->next_id;
    if (encode_get(&meta, id, handle, meta_only, offset, length, ff) != 0) {
        goto done;
    }
    p = commit_request(c, session, s_get, &meta, true, what, NULL, dead, ff, 0, false, NULL);
    if (p == NULL || maybe_flush(c) != 0) {
        goto done;
    }
    result = Py_NewRef((PyObject *)p);
done:
    buf_free(&meta);
    Py_XDECREF((PyObject *)p);
    Py_DECREF(ff);
    Py_DECREF(dead);
    return result;
}

/* create_fast(session, out, dtype, shape, requires_grad, data): a small tensor's Create, as
** Session._upload sends it (the data copied, as _conn._queue copies small data); returns the
** Tensor, or None when the protobuf path must take it. */
static PyObject *ConnBase_create_fast(ConnBase *c, PyObject *args)
{
    PyObject *session, *shape_arg, *data_arg;
    unsigned long long out;
    int dtype, requires_grad;
    if (!PyArg_ParseTuple(args, "OKiOpO:create_fast", &session, &out, &dtype, &shape_arg,
                          &requires_grad, &data_arg)) {
        return NULL;
    }
    if (!PyList_CheckExact(shape_arg) && !PyTuple_CheckExact(shape_arg)) {
        Py_RETURN_NONE;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data_arg, &view, PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *data = NULL;
    if (view.len < FLUSH_AT) {
        data = PyBytes_FromStringAndSize(view.buf, view.len);
    }
    PyBuffer_Release(&view);
    if (data == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *dead = NULL;
    PyObject *ff = take_dead(c, session, &dead);
    if (ff == NULL) {
        Py_DECREF(data);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    Pending *p = NULL;
    struct buf meta;
    buf_init(&meta);
    uint64_t id = c->next_id;
    if (encode_create(&meta, id, out, dtype, shape_arg, requires_grad, ff) != 0) {
        goto done;
    }
    PyObject *t = NULL;
    p = commit_request(c, session, s_create, &meta, true, s_tensor_what, data, dead, ff, out, false,
                       &t);
    if (p == NULL) {
        goto done;
    }
    if (maybe_flush(c) != 0) {
        Py_DECREF(t);
        goto done;
    }
    result = t;
done:
    buf_free(&meta);
    Py_XDECREF((PyObject *)p);
    Py_DECREF(data);
    Py_DECREF(ff);
    Py_DECREF(dead);
    return result;
}

/* simple_fast(session, body_field, kind, what, replay, values): queues a request whose body
** is all varint scalars (encode_simple) as Session._send does; returns its Pending, or None
** when the protobuf path must take it. */
static PyObject *ConnBase_simple_fast(ConnBase *c, PyObject *args)
{
    PyObject *session, *kind, *what, *values;
    int body_field, replay;
    if (!PyArg_ParseTuple(args, "OiUUpO!:simple_fast", &session, &body_field, &kind, &what, &replay,
                          &PyTuple_Type, &values)) {
        return NULL;
    }
    uint64_t v[MAX_SIMPLE_FIELDS];
    int n;
    if (simple_values(values, v, &n) != 0) {
        return NULL;
    }
    PyObject *dead = NULL;
    PyObject *ff = take_dead(c, session, &dead);
    if (ff == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    Pending *p = NULL;
    struct buf meta;
    buf_init(&meta);
    if (encode_simple(&meta, c->next_id, body_field, v, n, ff) != 0) {
        goto done;
    }
    p = commit_request(c, session, kind, &meta, replay, what, NULL, dead, ff, 0, false, NULL);
    if (p == NULL || maybe_flush(c) != 0) {
        goto done;
    }
    result = Py_NewRef((PyObject *)p);
done:
    buf_free(&meta);
    Py_XDECREF((PyObject *)p);
    Py_DECREF(ff);
    Py_DECREF(dead);
    return result;
}

/* Ends one Pending with a common reply (what _conn.Conn._finish does for it). */
static int finish_fast(ConnBase *c, Pending *p, PyObject *raw, const struct tdw_reply *r,
                       PyObject *data)
{
    PyObject *info = Py_None;
    if (r->has_tensor) {
        info = tinfo_tuple(&r->tensor);
        if (info == NULL) {
            return -1;
        }
    } else {
        Py_INCREF(info);
    }
    PyObject *x = PyObject_CallMethodNoArgs(c->pending, s_popleft);
    if (x == NULL) {
        Py_DECREF(info);
        return -1;
    }
    Py_DECREF(x);
    Py_XSETREF(p->raw, Py_NewRef(raw));
    Py_XSETREF(p->resp, Py_NewRef(Py_None));
    Py_XSETREF(p->info, info);
    Py_XSETREF(p->data_in, Py_NewRef(data));
    p->done = 1;
    Py_XSETREF(p->frame, Py_NewRef(s_empty_bytes));
    Py_XSETREF(p->data, Py_NewRef(s_empty_bytes));
    if (p->on_done != NULL && p->on_done != Py_None) {
        PyObject *res = PyObject_CallOneArg(p->on_done, (PyObject *)p);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return 0;
}

/* One common reply frame at _in[_pos:], read without protobuf: 1 done, 0 not one (or not
** complete), 2 nothing left to read (not even part of a header), -1 error. */
static int parse_one_fast(ConnBase *c)
{
    if ((c->frame != NULL && c->frame != Py_None) || c->in == NULL || c->pending == NULL ||
        !PyByteArray_CheckExact(c->in)) {
        return 0;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(c->in);
    if (c->pos == size) {
        return 2;
    }
    if (c->pos < 0 || c->pos > size || (size_t)(size - c->pos) < FRAME_HEADER) {
        return 0;
    }
    size_t avail = (size_t)(size - c->pos);
    const uint8_t *h = (const uint8_t *)PyByteArray_AS_STRING(c->in) + c->pos;
    uint64_t ml = 0, dl = 0;
    for (int i = 0; i < 4; i++) {
        ml = ml << 8 | h[i];
    }
    for (int i = 4; i < 12; i++) {
        dl = dl << 8 | h[i];
    }
    if (dl > READ_CHUNK || ml > avail - FRAME_HEADER || dl > avail - FRAME_HEADER - ml) {
        return 0;
    }
    Py_ssize_t npending = PyObject_Length(c->pending);
    if (npending <= 0) {
        return npending < 0 ? -1 : 0;
    }
    Pending *p = (Pending *)PySequence_GetItem(c->pending, 0);
    if (p == NULL) {
        return -1;
    }
    struct tdw_reply r;
    if (!Py_IS_TYPE(p, &PendingType) || p->into != Py_None ||
        decode_response(h + FRAME_HEADER, ml, &r) != 0 || r.code != 0 || r.id != p->id) {
        Py_DECREF(p);
        return 0;
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)h + FRAME_HEADER, (Py_ssize_t)ml);
    PyObject *data = dl == 0 ? Py_NewRef(s_empty_bytes)
                             : PyBytes_FromStringAndSize((const char *)h + FRAME_HEADER + ml,
                                                         (Py_ssize_t)dl);
    int rc = -1;
    if (raw != NULL && data != NULL) {
        c->pos += (Py_ssize_t)(FRAME_HEADER + ml + dl);
        rc = finish_fast(c, p, raw, &r, data) == 0 ? 1 : -1;
    }
    Py_XDECREF(raw);
    Py_XDECREF(data);
    Py_DECREF(p);
    return rc;
}

/* parse_fast(): Conn._parse. Common replies are read here; any other frame, or one partly
** read, goes to Conn._parse_py(one=True), and then this goes on with the next. */
static PyObject *ConnBase_parse_fast(ConnBase *c, PyObject *unused)
{
    (void)unused;
    for (;;) {
        int rc = parse_one_fast(c);
        if (rc < 0) {
            return NULL;
        }
        if (rc == 2) {
            Py_RETURN_NONE;
        }
        if (rc == 1) {
            continue;
        }
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)c, s_parse_py, Py_True);
        if (r == NULL) {
            return NULL;
        }
        int more = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (more <= 0) {
            return more < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
}

static PyMethodDef ConnBase_methods[] = {
    {"op_fast", (PyCFunction)(void (*)(void))ConnBase_op_fast, METH_FASTCALL,
     "op_fast(session, op, inputs, inplace, name): a RunOp's result Tensor, or None"},
    {"create_fast", (PyCFunction)ConnBase_create_fast, METH_VARARGS,
     "create_fast(session, out, dtype, shape, requires_grad, data): a Create's Tensor, or None"},
    {"get_fast", (PyCFunction)ConnBase_get_fast, METH_VARARGS,
     "get_fast(session, handle, meta_only, offset, length, what): a Get's Pending, or None"},
    {"simple_fast", (PyCFunction)ConnBase_simple_fast, METH_VARARGS,
     "simple_fast(session, body_field, kind, what, replay, values) -> Pending or None"},
    {"_parse_fast", (PyCFunction)ConnBase_parse_fast, METH_NOARGS,
     "reads the complete reply frames in _in"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ConnBase_members[] = {
    {"next_handle", T_ULONGLONG, offsetof(ConnBase, next_handle), 0, NULL},
    {"_next_id", T_ULONGLONG, offsetof(ConnBase, next_id), 0, NULL},
    {"frames_sent", T_LONGLONG, offsetof(ConnBase, frames_sent), 0, NULL},
    {"_queued", T_LONGLONG, offsetof(ConnBase, queued), 0, NULL},
    {"_out_bytes", T_LONGLONG, offsetof(ConnBase, out_bytes), 0, NULL},
    {"version", T_LONGLONG, offsetof(ConnBase, version), 0, NULL},
    {"_pos", T_PYSSIZET, offsetof(ConnBase, pos), 0, NULL},
    {"_out", T_OBJECT, offsetof(ConnBase, out), 0, NULL},
    {"_pending", T_OBJECT, offsetof(ConnBase, pending), 0, NULL},
    {"_in", T_OBJECT, offsetof(ConnBase, in), 0, NULL},
    {"_frame", T_OBJECT, offsetof(ConnBase, frame), 0, NULL},
    {"_meta", T_OBJECT, offsetof(ConnBase, meta), 0, NULL},
    {"error_sink", T_OBJECT, offsetof(ConnBase, error_sink), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ConnBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensord._fast.ConnBase",
    .tp_basicsize = sizeof(ConnBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The hot state and paths of tensord._conn.Conn.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)ConnBase_dealloc,
    .tp_traverse = (traverseproc)ConnBase_traverse,
    .tp_clear = (inquiry)ConnBase_clear,
    .tp_members = ConnBase_members,
    .tp_methods = ConnBase_methods,
};

/* ---- module functions: the encoders and the decoder on their own (test_fast_wire) ---- */

static PyObject *seq_or_none(PyObject *o)
{
    return o == Py_None ? PyList_New(0) : PySequence_Fast(o, "expected a sequence");
}

static PyObject *buf_bytes(struct buf *b, int rc)
{
    PyObject *r = rc == 0 ? PyBytes_FromStringAndSize((const char *)b->p, (Py_ssize_t)b->n) : NULL;
    buf_free(b);
    return r;
}

/* encode_run_op(id, out, op, inputs, inplace, kw, free_first): inputs are ("h", handle) pairs
** or Python numbers, kw the op's keywords (a dict or None); returns the Request's bytes, or None
** for an input or keyword the fast path leaves. */
static PyObject *mod_encode_run_op(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long id, out;
    int op, inplace;
    PyObject *inputs, *ff_arg, *kw;
    if (!PyArg_ParseTuple(args, "KKiOpOO", &id, &out, &op, &inputs, &inplace, &kw, &ff_arg)) {
        return NULL;
    }
    if (kw == Py_None) {
        kw = NULL;
    } else if (!PyDict_Check(kw)) {
        PyErr_SetString(PyExc_TypeError, "kw must be a dict or None");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(inputs, "inputs must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t nin = PySequence_Fast_GET_SIZE(seq);
    struct tdw_operand in[MAX_FAST_INPUTS];
    if (nin > MAX_FAST_INPUTS) {
        Py_DECREF(seq);
        Py_RETURN_NONE;
    }
    for (Py_ssize_t i = 0; i < nin; i++) {
        PyObject *x = PySequence_Fast_GET_ITEM(seq, i);
        if (PyTuple_Check(x) && PyTuple_GET_SIZE(x) == 2) {
            in[i].kind = TDW_HANDLE;
            in[i].v.handle = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(x, 1));
            if (PyErr_Occurred()) {
                Py_DECREF(seq);
                return NULL;
            }
        } else if (operand_of_number(&in[i], x) != 0) {
            Py_DECREF(seq);
            Py_RETURN_NONE;
        }
    }
    Py_DECREF(seq);
    PyObject *ff = seq_or_none(ff_arg);
    if (ff == NULL) {
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    int rc = encode_run_op(&b, id, out, op, in, (int)nin, inplace, kw, ff);
    Py_DECREF(ff);
    if (rc > 0) {
        buf_free(&b);
        Py_RETURN_NONE;
    }
    return buf_bytes(&b, rc);
}

static PyObject *mod_encode_get(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long id, handle, offset, length;
    int meta_only;
    PyObject *ff_arg;
    if (!PyArg_ParseTuple(args, "KKpKKO", &id, &handle, &meta_only, &offset, &length, &ff_arg)) {
        return NULL;
    }
    PyObject *ff = seq_or_none(ff_arg);
    if (ff == NULL) {
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    int rc = encode_get(&b, id, handle, meta_only, offset, length, ff);
    Py_DECREF(ff);
    return buf_bytes(&b, rc);
}

/* encode_free(id, handles, free_first) */
static PyObject *mod_encode_free(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long id;
    PyObject *handles_arg, *ff_arg;
    if (!PyArg_ParseTuple(args, "KOO", &id, &handles_arg, &ff_arg)) {
        return NULL;
    }
    PyObject *handles = seq_or_none(handles_arg);
    PyObject *ff = handles != NULL ? seq_or_none(ff_arg) : NULL;
    struct buf b;
    buf_init(&b);
    struct u64s hs, f;
    int rc = -1;
    if (ff != NULL && u64s_from(&hs, handles, false) == 0) {
        if (u64s_from(&f, ff, false) == 0) {
            struct tdw_request r = {.id = id, .body = TDW_FREE};
            r.u.free.handles = hs.v;
            r.u.free.n_handles = hs.n;
            rc = put_request(&b, &r, &f);
            u64s_free(&f);
        }
        u64s_free(&hs);
    }
    Py_XDECREF(handles);
    Py_XDECREF(ff);
    return buf_bytes(&b, rc);
}

/* encode_simple(id, body_field, values, free_first): see encode_simple(). */
static PyObject *mod_encode_simple(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long id;
    int body_field;
    PyObject *values, *ff_arg;
    if (!PyArg_ParseTuple(args, "KiO!O", &id, &body_field, &PyTuple_Type, &values, &ff_arg)) {
        return NULL;
    }
    uint64_t v[MAX_SIMPLE_FIELDS];
    int n;
    if (simple_values(values, v, &n) != 0) {
        return NULL;
    }
    PyObject *ff = seq_or_none(ff_arg);
    struct buf b;
    buf_init(&b);
    int rc = ff != NULL ? encode_simple(&b, id, body_field, v, n, ff) : -1;
    Py_XDECREF(ff);
    return buf_bytes(&b, rc);
}

/* ---- torch.tensor(list) without the Python walk ---- */

#define PACK_MAX_DIMS 8
enum { PK_BOOL = 1, PK_INT = 2, PK_FLOAT = 4 };

/* The shape of nested lists/tuples, from the first element at each depth (as _flatten reads
** it); 0, or 1 for what the Python path must take (too deep). */
static int pack_shape(PyObject *data, Py_ssize_t *shape, int *ndim)
{
    *ndim = 0;
    PyObject *x = data;
    while (PyList_CheckExact(x) || PyTuple_CheckExact(x)) {
        if (*ndim == PACK_MAX_DIMS) {
            return 1;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(x);
        shape[(*ndim)++] = n;
        if (n == 0) {
            break;
        }
        x = PySequence_Fast_ITEMS(x)[0];
    }
    return 0;
}

/* Checks every element against the shape and collects the leaves' kinds (PK_*); 0 ok, 1 for
** the Python path (ragged, a leaf that is not an exact bool/int/float, a list at a leaf). */
static int pack_walk(PyObject *x, const Py_ssize_t *shape, int ndim, int depth, int *kinds,
                     PyObject **leaves, Py_ssize_t *nleaves)
{
    if (depth == ndim) {
        if (PyBool_Check(x)) {
            *kinds |= PK_BOOL;
        } else if (PyLong_CheckExact(x)) {
            *kinds |= PK_INT;
        } else if (PyFloat_CheckExact(x)) {
            *kinds |= PK_FLOAT;
        } else {
            return 1;
        }
        leaves[(*nleaves)++] = x;
        return 0;
    }
    if (!(PyList_CheckExact(x) || PyTuple_CheckExact(x)) ||
        PySequence_Fast_GET_SIZE(x) != shape[depth]) {
        return 1;
    }
    PyObject **items = PySequence_Fast_ITEMS(x);
    for (Py_ssize_t i = 0; i < shape[depth]; i++) {
        if (pack_walk(items[i], shape, ndim, depth + 1, kinds, leaves, nleaves) != 0) {
            return 1;
        }
    }
    return 0;
}

/* One leaf into its dtype's little-endian bytes (struct.pack's "<f", "<d", "<i", "<q", "<?"
** of float(x), int(x) or bool(x)); 0 ok, 1 for the Python path (it then raises its error). */
static int pack_one(PyObject *x, const char *name, uint8_t *out)
{
    if (strcmp(name, "float32") == 0 || strcmp(name, "float64") == 0) {
        double d = PyFloat_CheckExact(x) ? PyFloat_AS_DOUBLE(x) : PyLong_AsDouble(x);
        if (d == -1.0 && PyErr_Occurred()) {
            return 1;
        }
        if (name[5] != '3') {
            return PyFloat_Pack8(d, (char *)out, 1) ? 1 : 0;
        }
        /* A finite double beyond float32's range becomes +-inf, as C's conversion and torch do;
        ** PyFloat_Pack4 refuses it (OverflowError). */
        if (PyFloat_Pack4(d, (char *)out, 1) != 0) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return 1;
            }
            PyErr_Clear();
            return PyFloat_Pack4(copysign(INFINITY, d), (char *)out, 1) ? 1 : 0;
        }
        return 0;
    }
    if (strcmp(name, "bool") == 0) {
        if (!PyBool_Check(x)) {
            return 1;
        }
        out[0] = x == Py_True;
        return 0;
    }
    if (PyFloat_CheckExact(x)) {
        return 1; /* int(2.5) truncates; int(nan) raises: Python's to say */
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
        return 1;
    }
    int n = strcmp(name, "int32") == 0 ? 4 : 8;
    if (n == 4 && (v < INT32_MIN || v > INT32_MAX)) {
        return 1;
    }
    for (int i = 0; i < n; i++) {
        out[i] = (uint8_t)((unsigned long long)v >> (8 * i));
    }
    return 0;
}

/* pack_values(data, dtype name or None): Session.tensor's _flatten, _infer and _pack in one
** pass for an exact bool/int/float, or nested lists/tuples of them: (payload bytes, shape list, dtype
** name), or None when the Python path must take it (it then does what it always did, errors
** included). The same bytes, shape and dtype as that path (test_fast_wire). */
static PyObject *mod_pack_values(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data, *dt;
    if (!PyArg_ParseTuple(args, "OO:pack_values", &data, &dt)) {
        return NULL;
    }
    if (!(dt == Py_None || PyUnicode_Check(dt))) {
        Py_RETURN_NONE;
    }
    Py_ssize_t shape[PACK_MAX_DIMS];
    int ndim;
    if (pack_shape(data, shape, &ndim) != 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && numel > PY_SSIZE_T_MAX / 8 / shape[i]) {
            Py_RETURN_NONE;
        }
        numel *= shape[i];
    }
    PyObject **leaves = PyMem_Malloc((size_t)(numel > 0 ? numel : 1) * sizeof(PyObject *));
    if (leaves == NULL) {
        return PyErr_NoMemory();
    }
    int kinds = 0;
    Py_ssize_t nleaves = 0;
    PyObject *result = NULL;
    const char *name;
    if (pack_walk(data, shape, ndim, 0, &kinds, leaves, &nleaves) != 0 || nleaves != numel) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (dt != Py_None) {
        name = PyUnicode_AsUTF8(dt);
        if (name == NULL) {
            goto done;
        }
    } else {
        name = numel > 0 && kinds == PK_BOOL          ? "bool"
               : numel > 0 && (kinds & PK_FLOAT) == 0 ? "int64"
                                                      : "float32";
    }
    int isz = strcmp(name, "float32") == 0 || strcmp(name, "int32") == 0   ? 4
              : strcmp(name, "float64") == 0 || strcmp(name, "int64") == 0 ? 8
              : strcmp(name, "bool") == 0                                  ? 1
                                                                           : 0;
    if (isz == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *payload = PyBytes_FromStringAndSize(NULL, numel * isz);
    PyObject *shp = payload != NULL ? PyList_New(ndim) : NULL;
    if (shp == NULL) {
        Py_XDECREF(payload);
        goto done;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(payload);
    for (Py_ssize_t i = 0; i < numel; i++) {
        if (pack_one(leaves[i], name, out + i * isz) != 0) {
            PyErr_Clear();
            Py_DECREF(payload);
            Py_DECREF(shp);
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    for (int i = 0; i < ndim; i++) {
        PyObject *d = PyLong_FromSsize_t(shape[i]);
        if (d == NULL) {
            Py_DECREF(payload);
            Py_DECREF(shp);
            goto done;
        }
        PyList_SET_ITEM(shp, i, d);
    }
    result = Py_BuildValue("(NNs)", payload, shp, name);
done:
    PyMem_Free(leaves);
    return result;
}

/* bytearray_uninit(n): a bytearray of n bytes left as malloc gives them (bytearray(n) writes
** n zeros first), for a reply's data section that the socket then fills completely; its pages
** cost memory only as the data arrives. */
static PyObject *mod_bytearray_uninit(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, n);
}

/* _fault(n): the n-th fault point from now fails with MemoryError (0: none); the tests'. */
static PyObject *mod_fault(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    g_fault = n < 0 ? 0 : n;
    Py_RETURN_NONE;
}

/* encode_create(id, out, dtype, shape, requires_grad, free_first): the Create header. */
static PyObject *mod_encode_create(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long id, out;
    int dtype, requires_grad;
    PyObject *shape_arg, *ff_arg;
    if (!PyArg_ParseTuple(args, "KKiOpO", &id, &out, &dtype, &shape_arg, &requires_grad, &ff_arg)) {
        return NULL;
    }
    PyObject *shape = seq_or_none(shape_arg);
    PyObject *ff = shape != NULL ? seq_or_none(ff_arg) : NULL;
    struct buf b;
    buf_init(&b);
    int rc = ff != NULL ? encode_create(&b, id, out, dtype, shape, requires_grad, ff) : -1;
    Py_XDECREF(shape);
    Py_XDECREF(ff);
    return buf_bytes(&b, rc);
}

/* decode_response(bytes) -> (id, code, message, info or None), or None when the message is
** not one this decoder takes (protobuf's path then parses it). */
static PyObject *mod_decode_response(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    struct tdw_reply r;
    PyObject *result = NULL;
    if (decode_response(view.buf, (size_t)view.len, &r) != 0) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *info = r.has_tensor ? tinfo_tuple(&r.tensor) : Py_NewRef(Py_None);
        if (info != NULL) {
            result = Py_BuildValue("(Kis#N)", (unsigned long long)r.id, (int)r.code, r.message,
                                   (Py_ssize_t)r.message_len, info);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

/* setup(Response class, Tensor class, package dir, OpArgs spec, dtypes): what the fast paths
** build and check. The spec is {name: (field number, kind, repeated)} (_conn.arg_spec()). */
static PyObject *mod_setup(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *resp, *tensor, *dir, *spec, *dtypes;
    if (!PyArg_ParseTuple(args, "OOUO!O!", &resp, &tensor, &dir, &PyDict_Type, &spec, &PyDict_Type,
                          &dtypes)) {
        return NULL;
    }
    PyObject *key, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(spec, &pos, &key, &v)) {
        if (!PyUnicode_Check(key) || !PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 3 ||
            !PyLong_Check(PyTuple_GET_ITEM(v, 0)) || !PyLong_Check(PyTuple_GET_ITEM(v, 1))) {
            PyErr_SetString(PyExc_TypeError, "setup: spec maps names to (number, kind, repeated)");
            return NULL;
        }
    }
    pos = 0;
    while (PyDict_Next(dtypes, &pos, &key, &v)) {
        if (!PyUnicode_Check(key) || !PyLong_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "setup: dtypes maps names to ints");
            return NULL;
        }
    }
    Py_XSETREF(g_argspec, Py_NewRef(spec));
    Py_XSETREF(g_dtypes, Py_NewRef(dtypes));
    if (!PyType_Check(tensor)) {
        PyErr_SetString(PyExc_TypeError, "setup: Tensor must be a class");
        return NULL;
    }
    Py_XSETREF(g_response_cls, Py_NewRef(resp));
    Py_XSETREF(g_tensor_cls, Py_NewRef(tensor));
    Py_XSETREF(g_pkg_dir, Py_NewRef(dir));
    Py_RETURN_NONE;
}

static PyObject *mod_caller(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return caller();
}

/* where(code, lasti): the "file:line" of a fast request's tag (what, code, lasti). */
static PyObject *mod_where(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *code;
    int lasti;
    if (!PyArg_ParseTuple(args, "Oi:where", &code, &lasti)) {
        return NULL;
    }
    return site_text(code, lasti);
}

static PyMethodDef module_methods[] = {
    {"caller", mod_caller, METH_NOARGS,
     "caller() -> 'file:line' of the first Python frame outside the package"},
    {"where", mod_where, METH_VARARGS,
     "where(code, lasti) -> 'file:line' of a fast request's tag (what, code, lasti)"},
    {"setup", mod_setup, METH_VARARGS, "setup(Response, Tensor, package_dir)"},
    {"encode_run_op", mod_encode_run_op, METH_VARARGS,
     "encode_run_op(id, out, op, inputs, inplace, kw, free_first) -> bytes or None"},
    {"encode_get", mod_encode_get, METH_VARARGS,
     "encode_get(id, handle, meta_only, offset, length, free_first) -> bytes"},
    {"encode_free", mod_encode_free, METH_VARARGS, "encode_free(id, handles, free_first)"},
    {"encode_create", mod_encode_create, METH_VARARGS,
     "encode_create(id, out, dtype, shape, requires_grad, free_first) -> bytes"},
    {"encode_simple", mod_encode_simple, METH_VARARGS,
     "encode_simple(id, body_field, values, free_first) -> bytes"},
    {"pack_values", mod_pack_values, METH_VARARGS,
     "pack_values(data, dtype name or None) -> (payload, shape, name) or None"},
    {"bytearray_uninit", mod_bytearray_uninit, METH_O,
     "bytearray_uninit(n) -> a bytearray of n bytes, not zero-filled"},
    {"_fault", mod_fault, METH_O, "_fault(n): the n-th fault point from now fails (tests)"},
    {"decode_response", mod_decode_response, METH_O,
     "decode_response(bytes) -> (id, code, message, info) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT,
    "tensord._fast",
    "The Python client's hot path in C (see the head comment of _fast.c).",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static int intern(PyObject **s, const char *text)
{
    *s = PyUnicode_InternFromString(text);
    return *s == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__fast(void); /* the interpreter's entry point: nothing else calls it */
PyMODINIT_FUNC PyInit__fast(void)
{
    if (intern(&s_run_op, "run_op") || intern(&s_get, "get") || intern(&s_create, "create") ||
        intern(&s_tensor_what, "tensor") || intern(&s_underscore, "_") || intern(&s_h, "_h") ||
        intern(&s_s, "_s") || intern(&s_root, "_root") || intern(&s_share, "_share") ||
        intern(&s_ctxs, "_ctxs") || intern(&s_p, "_p") || intern(&s_owns, "_owns") ||
        intern(&s_grad_cache, "_grad_cache") || intern(&s_dead, "_dead") ||
        intern(&s_flush_guarded, "_flush_guarded") || intern(&s_parse_py, "_parse_py") ||
        intern(&s_append, "append") || intern(&s_popleft, "popleft") || intern(&s_pop, "pop") ||
        intern(&s_parse_from, "ParseFromString")) {
        return NULL;
    }
    s_empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (s_empty_bytes == NULL || PyType_Ready(&PendingType) < 0 ||
        PyType_Ready(&ConnBaseType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&fast_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Pending", (PyObject *)&PendingType) < 0 ||
        PyModule_AddObjectRef(m, "ConnBase", (PyObject *)&ConnBaseType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_FAST_INPUTS", MAX_FAST_INPUTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
