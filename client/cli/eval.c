/* eval.c — evaluating tensorctl: expressions (names, literals, Python arithmetic and bitwise
** operators, indexing — basic and advanced, as torch's — calls, f-strings) and statements
** (assignment with unpacking, augmented assignment, del, for, with, import), the run of a
** program, and the environment's life.
*/
#include "interp.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Python arithmetic ---- */

static const char *const OPSYM[] = {
    [TDX_OP_ADD] = "+",       [TDX_OP_SUB] = "-",     [TDX_OP_MUL] = "*",     [TDX_OP_DIV] = "/",
    [TDX_OP_FLOORDIV] = "//", [TDX_OP_MOD] = "%",     [TDX_OP_POW] = "**",    [TDX_OP_MATMUL] = "@",
    [TDX_OP_LT] = "<",        [TDX_OP_LE] = "<=",     [TDX_OP_GT] = ">",      [TDX_OP_GE] = ">=",
    [TDX_OP_EQ] = "==",       [TDX_OP_NE] = "!=",     [TDX_OP_AND] = "&",     [TDX_OP_OR] = "|",
    [TDX_OP_XOR] = "^",       [TDX_OP_LSHIFT] = "<<", [TDX_OP_RSHIFT] = ">>",
};

static const char *const OPFN[] = {
    [TDX_OP_ADD] = "add",
    [TDX_OP_SUB] = "sub",
    [TDX_OP_MUL] = "mul",
    [TDX_OP_DIV] = "div",
    [TDX_OP_FLOORDIV] = "floor_divide",
    [TDX_OP_MOD] = "remainder",
    [TDX_OP_POW] = "pow",
    [TDX_OP_MATMUL] = "matmul",
    [TDX_OP_LT] = "lt",
    [TDX_OP_LE] = "le",
    [TDX_OP_GT] = "gt",
    [TDX_OP_GE] = "ge",
    [TDX_OP_EQ] = "eq",
    [TDX_OP_NE] = "ne",
    [TDX_OP_AND] = "bitwise_and",
    [TDX_OP_OR] = "bitwise_or",
    [TDX_OP_XOR] = "bitwise_xor",
    [TDX_OP_LSHIFT] = "bitwise_left_shift",
    [TDX_OP_RSHIFT] = "bitwise_right_shift",
};

static bool vequal(const struct value *a, const struct value *b)
{
    if (is_num(a) && is_num(b)) {
        return num_f(a) == num_f(b) && num_i(a) == num_i(b);
    }
    bool seq_a = a->k == V_LIST || a->k == V_TUPLE || a->k == V_SIZE;
    bool seq_b = b->k == V_LIST || b->k == V_TUPLE || b->k == V_SIZE;
    if (seq_a && seq_b) {
        if ((a->k == V_LIST) != (b->k == V_LIST) || a->n != b->n) {
            return false;
        }
        for (int i = 0; i < a->n; i++) {
            if (!vequal(&a->items[i], &b->items[i])) {
                return false;
            }
        }
        return true;
    }
    if (a->k != b->k) {
        return false;
    }
    switch (a->k) {
    case V_NONE: return true;
    case V_STR: return a->i == b->i && memcmp(a->s, b->s, (size_t)a->i) == 0;
    case V_DTYPE: return a->dt == b->dt;
    default: return a->t == b->t;
    }
}

/* Python's & | ^ << >> on ints and bools (bool op bool stays a bool for & | ^). */
static int num_bitop(struct tdx_env *e, const struct tdx_node *at, int op, const struct value *a,
                     const struct value *b, struct value *out)
{
    int64_t i = num_i(a), j = num_i(b);
    if (a->k == V_FLOAT || b->k == V_FLOAT) {
        return tdx_fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                        tdx_type_name(a), tdx_type_name(b));
    }
    bool both_bool = a->k == V_BOOL && b->k == V_BOOL;
    switch (op) {
    case TDX_OP_AND: *out = both_bool ? vbool(a->b && b->b) : vint(i & j); return 0;
    case TDX_OP_OR: *out = both_bool ? vbool(a->b || b->b) : vint(i | j); return 0;
    case TDX_OP_XOR: *out = both_bool ? vbool(a->b != b->b) : vint(i ^ j); return 0;
    default: break;
    }
    if (j < 0) {
        return tdx_fail(e, at, "negative shift count");
    }
    if (op == TDX_OP_RSHIFT) {
        *out = vint(j >= 64 ? (i < 0 ? -1 : 0) : i >> j); /* Python's: rounds toward -inf */
        return 0;
    }
    if (i == 0) {
        *out = vint(0);
        return 0;
    }
    if (j >= 63 || (i > 0 ? i > (INT64_MAX >> j) : i < (INT64_MIN >> j))) {
        return tdx_fail(e, at, "integer overflow in << (tensorctl's ints are 64-bit)");
    }
    *out = vint((int64_t)((uint64_t)i << j));
    return 0;
}

static int num_binop(struct tdx_env *e, const struct tdx_node *at, int op, const struct value *a,
                     const struct value *b, struct value *out)
{
    bool fl = a->k == V_FLOAT || b->k == V_FLOAT;
    double x = num_f(a), y = num_f(b);
    int64_t i = num_i(a), j = num_i(b), r;
    if (op >= TDX_OP_AND && op <= TDX_OP_RSHIFT) {
        return num_bitop(e, at, op, a, b, out);
    }
    switch (op) {
    case TDX_OP_LT: *out = vbool(fl ? x < y : i < j); return 0;
    case TDX_OP_LE: *out = vbool(fl ? x <= y : i <= j); return 0;
    case TDX_OP_GT: *out = vbool(fl ? x > y : i > j); return 0;
    case TDX_OP_GE: *out = vbool(fl ? x >= y : i >= j); return 0;
    case TDX_OP_EQ: *out = vbool(vequal(a, b)); return 0;
    case TDX_OP_NE: *out = vbool(!vequal(a, b)); return 0;
    case TDX_OP_ADD:
        if (fl) {
            *out = vfloat(x + y);
            return 0;
        }
        if (__builtin_add_overflow(i, j, &r)) {
            break;
        }
        *out = vint(r);
        return 0;
    case TDX_OP_SUB:
        if (fl) {
            *out = vfloat(x - y);
            return 0;
        }
        if (__builtin_sub_overflow(i, j, &r)) {
            break;
        }
        *out = vint(r);
        return 0;
    case TDX_OP_MUL:
        if (fl) {
            *out = vfloat(x * y);
            return 0;
        }
        if (__builtin_mul_overflow(i, j, &r)) {
            break;
        }
        *out = vint(r);
        return 0;
    case TDX_OP_DIV:
        if (y == 0) {
            return tdx_fail(e, at, fl ? "float division by zero" : "division by zero");
        }
        *out = vfloat(x / y);
        return 0;
    case TDX_OP_FLOORDIV:
    case TDX_OP_MOD:
        if (fl) {
            if (y == 0) {
                return tdx_fail(e, at,
                                op == TDX_OP_MOD ? "float modulo" : "float floor division by zero");
            }
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) {
                m += y;
            }
            *out = vfloat(op == TDX_OP_MOD ? m : floor(x / y));
            return 0;
        }
        if (j == 0) {
            return tdx_fail(e, at, "integer division or modulo by zero");
        }
        if (i == INT64_MIN && j == -1) {
            break;
        }
        int64_t q = i / j, m = i % j;
        if (m != 0 && ((m < 0) != (j < 0))) {
            q--;
            m += j;
        }
        *out = vint(op == TDX_OP_MOD ? m : q);
        return 0;
    case TDX_OP_POW:
        if (fl || j < 0) {
            if (x == 0 && y < 0) {
                return tdx_fail(e, at, "0.0 cannot be raised to a negative power");
            }
            *out = vfloat(pow(x, y));
            return 0;
        }
        r = 1;
        for (int64_t k = 0; k < j; k++) {
            if (__builtin_mul_overflow(r, i, &r)) {
                return tdx_fail(e, at, "integer overflow in %s (tensorctl's ints are 64-bit)",
                                OPSYM[op]);
            }
        }
        *out = vint(r);
        return 0;
    default:
        return tdx_fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                        tdx_type_name(a), tdx_type_name(b));
    }
    return tdx_fail(e, at, "integer overflow in %s (tensorctl's ints are 64-bit)", OPSYM[op]);
}

static int binop(struct tdx_env *e, const struct tdx_node *at, int op, const struct value *a,
                 const struct value *b, struct value *out)
{
    if (a->k == V_TENSOR || b->k == V_TENSOR) {
        const struct value *other = a->k == V_TENSOR ? b : a;
        /* Python's own TypeError where the tensor's method answers NotImplemented: an operand
        ** that is no number, or a number for @ (torch's matmul takes tensors only) */
        if (other->k != V_TENSOR && (!is_num(other) || op == TDX_OP_MATMUL)) {
            if (op == TDX_OP_EQ || op == TDX_OP_NE) {
                *out = vbool(op == TDX_OP_NE);
                return 0;
            }
            return tdx_fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                            tdx_type_name(a), tdx_type_name(b));
        }
        /* A number on the left of a comparison: Python asks the tensor's reflected method
        ** (2 < x is x > 2), as torch.lt takes no number for its input. */
        static const int reflected[] =
            {[TDX_OP_LT] = TDX_OP_GT, [TDX_OP_LE] = TDX_OP_GE, [TDX_OP_GT] = TDX_OP_LT,
             [TDX_OP_GE] = TDX_OP_LE, [TDX_OP_EQ] = TDX_OP_EQ, [TDX_OP_NE] = TDX_OP_NE};
        bool swap = a->k != V_TENSOR && op >= 0 &&
                    (size_t)op < sizeof reflected / sizeof *reflected && reflected[op] != 0;
        struct value args[2] = {swap ? *b : *a, swap ? *a : *b};
        struct call c = {.args = args, .nargs = 2};
        return tdx_call_op(e, at, OPFN[swap ? reflected[op] : op], false, &c, out);
    }
    if (is_num(a) && is_num(b)) {
        return num_binop(e, at, op, a, b, out);
    }
    if (op == TDX_OP_EQ || op == TDX_OP_NE) {
        *out = vbool(vequal(a, b) == (op == TDX_OP_EQ));
        return 0;
    }
    if (op == TDX_OP_ADD && a->k == V_STR && b->k == V_STR) {
        int rc = tdx_vstr(e, out, a->s, (size_t)(a->i + b->i));
        if (rc == 0) {
            memcpy(out->s + a->i, b->s, (size_t)b->i);
        }
        return rc;
    }
    if (op == TDX_OP_ADD && a->k == b->k && (a->k == V_LIST || a->k == V_TUPLE)) {
        int rc = tdx_vseq(e, out, a->k, a->n + b->n);
        for (int i = 0; rc == 0 && i < a->n + b->n; i++) {
            rc = tdx_vcopy(e, &out->items[i], i < a->n ? &a->items[i] : &b->items[i - a->n]);
        }
        if (rc != 0) {
            tdx_vfree(e, out);
        }
        return rc;
    }
    return tdx_fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                    tdx_type_name(a), tdx_type_name(b));
}

int tdx_truth(struct tdx_env *e, const struct tdx_node *at, const struct value *v, bool *out)
{
    switch (v->k) {
    case V_NONE: *out = false; return 0;
    case V_BOOL:
    case V_INT:
    case V_FLOAT: *out = num_f(v) != 0; return 0;
    case V_STR: *out = v->i > 0; return 0;
    case V_LIST:
    case V_TUPLE:
    case V_SIZE: *out = v->n > 0; return 0;
    case V_TENSOR: {
        struct value x;
        int rc = tdx_known(e, v->t, at);
        if (rc != 0) {
            return rc;
        }
        int64_t n = 1;
        for (int i = 0; i < v->t->info.ndim; i++) {
            n *= v->t->info.shape[i];
        }
        if (n != 1) {
            return tdx_fail(e, at, "Boolean value of Tensor with more than one value is ambiguous");
        }
        if ((rc = tdx_item(e, v->t, at, &x)) != 0) {
            return rc;
        }
        *out = num_f(&x) != 0;
        return 0;
    }
    default: *out = true; return 0;
    }
}

/* ---- expressions ---- */

static int eval(struct tdx_env *e, const struct tdx_node *n, struct value *out);

static void call_free(struct tdx_env *e, struct call *c)
{
    for (int i = 0; i < c->nargs; i++) {
        tdx_vfree(e, &c->args[i]);
    }
    for (int i = 0; i < c->nkw; i++) {
        tdx_vfree(e, &c->kwv[i]);
    }
    free(c->args);
    free(c->kwv);
    free(c->kwn);
}

static int eval_args(struct tdx_env *e, const struct tdx_node *n, struct call *c)
{
    memset(c, 0, sizeof *c);
    int na = n->nkids - 1;
    c->args = calloc((size_t)na + 1, sizeof *c->args);
    c->kwv = calloc((size_t)na + 1, sizeof *c->kwv);
    c->kwn = calloc((size_t)na + 1, sizeof *c->kwn);
    if (c->args == NULL || c->kwv == NULL || c->kwn == NULL) {
        call_free(e, c);
        return tdx_fail(e, n, "out of memory");
    }
    for (int i = 1; i < n->nkids; i++) {
        const struct tdx_node *a = n->kids[i];
        int rc;
        if (a->kind == TDX_KWARG) {
            for (int k = 0; k < c->nkw; k++) {
                if (strcmp(c->kwn[k], a->str) == 0) {
                    call_free(e, c);
                    return tdx_fail(e, a, "keyword argument repeated: %s", a->str);
                }
            }
            c->kwn[c->nkw] = a->str;
            rc = eval(e, a->kids[0], &c->kwv[c->nkw]);
            c->nkw += rc == 0;
        } else {
            rc = eval(e, a, &c->args[c->nargs]);
            c->nargs += rc == 0;
        }
        if (rc != 0) {
            call_free(e, c);
            return rc;
        }
    }
    return 0;
}

/* ---- indexing: x[key] and x[key] = v, as torch's applySlicing and aten::index ----
**
** The key's items walk x's dims in order: ints select, slices slice, None and bools add a dim,
** `...` stands for the dims the other items leave. Integer tensors, lists, tuples, ranges and
** bool masks are advanced items: the basic items make a view, then the op `index` (reading) or
** `index_put` (writing, in place) applies the index tensors to the dims OpArgs.index_mask names,
** a mask through its nonzero's columns, one per mask dim. A tensor already on the server is
** used by its handle; a list, tuple or range is uploaded once. An advanced key waits for the
** shapes it needs (x's, the index tensors'), as torch checks them at the indexing line. */

enum ikind { IT_INT, IT_SLICE, IT_NONE, IT_ELL, IT_BOOL, IT_TENSOR };

struct iitem {
    enum ikind k;
    int64_t i;              /* IT_INT; IT_BOOL: 0 or 1 */
    const struct value *sl; /* IT_SLICE: (start, stop, step), None for missing */
    struct tref *t;         /* IT_TENSOR: int64 or bool, a reference */
};

/* What a key names: a view of x (a reference), and when advanced its index tensors for the dims
** `mask` names (references). `copy`: a basic key with a bool, whose result torch copies. */
struct iparts {
    struct tref *view;
    struct tref *idx[TDX_MAX_OPERANDS];
    int nidx;
    uint64_t mask;
    bool copy;
};

static void iparts_free(struct tdx_env *e, struct iparts *p)
{
    tdx_tref_unref(e, p->view);
    for (int i = 0; i < p->nidx; i++) {
        tdx_tref_unref(e, p->idx[i]);
    }
    memset(p, 0, sizeof *p);
}

static bool is_slice_value(const struct value *v)
{
    return v->k == V_TUPLE && v->dt == 1;
}

static bool is_ellipsis_value(const struct value *v)
{
    return v->k == V_STR && v->dt == 1;
}

/* One op on tensor `in` (a view op, nonzero ...) into a new tensor *out. */
static int one_op(struct tdx_env *e, const struct tdx_node *at, const char *op, struct tref *in,
                  const struct tensord_op_args *a, struct tref **out)
{
    struct tref *r = tdx_tref_new(e);
    struct tensord_operand opnd = tensord_h(in->handle);
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (r == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    int lrc = tensord_send_op_ex(e->c, op, r->handle, &opnd, 1, a, false, &id, &err);
    if ((rc = tdx_send_tensor_result(e, lrc, id, r, at, &err)) != 0) {
        tdx_tref_unref(e, r);
        return rc;
    }
    r->requires_grad = in->requires_grad && e->grad_enabled && strcmp(op, "nonzero") != 0;
    r->is_leaf = !r->requires_grad;
    *out = r;
    return 0;
}

/* Replaces *cur by op(*cur). */
static int step_op(struct tdx_env *e, const struct tdx_node *at, const char *op, struct tref **cur,
                   const struct tensord_op_args *a)
{
    struct tref *r;
    int rc = one_op(e, at, op, *cur, a, &r);
    if (rc == 0) {
        tdx_tref_unref(e, *cur);
        *cur = r;
    }
    return rc;
}

struct lscan {
    bool any, any_float, all_bool;
};

static void scan_seq(const struct value *v, struct lscan *s)
{
    if (v->k == V_LIST || v->k == V_TUPLE) {
        for (int i = 0; i < v->n; i++) {
            scan_seq(&v->items[i], s);
        }
        return;
    }
    s->any = true;
    s->any_float |= v->k == V_FLOAT;
    s->all_bool &= v->k == V_BOOL;
}

/* A list, tuple or range used as an index, uploaded: int64 (floats truncated, as torch reads
** them), or a bool mask when every element is a bool. */
static int upload_index(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                        struct tref **out)
{
    struct value data = *v, tv;
    int rc;
    if (v->k == V_RANGE) {
        int64_t cnt = 0;
        for (int64_t i = v->i; v->step > 0 ? i < v->stop : i > v->stop; i += v->step) {
            if (++cnt > (1 << 24)) {
                return tdx_fail(e, at, "a range index of more than %d elements is not supported",
                                1 << 24);
            }
        }
        if ((rc = tdx_vseq(e, &data, V_LIST, (int)cnt)) != 0) {
            return rc;
        }
        for (int64_t k = 0; k < cnt; k++) {
            data.items[k] = vint(v->i + k * v->step);
        }
    }
    struct lscan s = {.all_bool = true};
    scan_seq(&data, &s);
    int dt = s.any && s.all_bool ? TENSORD_BOOL : TENSORD_INT64;
    data.k = V_LIST;
    rc = tdx_make_tensor(e, &data, dt, false, at, &tv);
    if (v->k == V_RANGE) {
        tdx_vfree(e, &data);
    }
    if (rc == 0) {
        *out = tv.t;
    }
    return rc;
}

static void shape_text(char *buf, size_t cap, const int64_t *shape, int nd)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && len < cap; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    }
    if (len < cap) {
        snprintf(buf + len, cap - len, "]");
    }
}

/* Classifies key item v into *it. */
static int index_item(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                      struct iitem *it)
{
    int rc;
    memset(it, 0, sizeof *it);
    if (is_ellipsis_value(v)) {
        it->k = IT_ELL;
        return 0;
    }
    if (v->k == V_NONE) {
        it->k = IT_NONE;
        return 0;
    }
    if (is_slice_value(v)) {
        const struct value *st = &v->items[2];
        if (st->k != V_NONE && st->i == 0) {
            return tdx_fail(e, at, "slice step cannot be zero");
        }
        if (st->k != V_NONE && st->i < 0) {
            return tdx_fail(e, at, "step must be greater than zero");
        }
        it->k = IT_SLICE;
        it->sl = v;
        return 0;
    }
    if (v->k == V_BOOL) {
        it->k = IT_BOOL;
        it->i = v->b;
        return 0;
    }
    if (v->k == V_INT) {
        it->k = IT_INT;
        it->i = v->i;
        return 0;
    }
    if (v->k == V_LIST || v->k == V_TUPLE || v->k == V_RANGE) {
        it->k = IT_TENSOR;
        return upload_index(e, at, v, &it->t);
    }
    if (v->k != V_TENSOR) {
        return tdx_fail(e, at,
                        "only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                        "Variables are valid indices (got %s)",
                        tdx_type_name(v));
    }
    if ((rc = tdx_known(e, v->t, at)) != 0) {
        return rc;
    }
    int dt = v->t->info.dtype;
    if (v->t->info.ndim == 0 && dt != TENSORD_FLOAT32 && dt != TENSORD_FLOAT64) {
        /* a 0-dim integer tensor selects as an int; a 0-dim mask is a Python bool */
        struct value x;
        if ((rc = tdx_item(e, v->t, at, &x)) != 0) {
            return rc;
        }
        it->k = dt == TENSORD_BOOL ? IT_BOOL : IT_INT;
        it->i = num_i(&x);
        return 0;
    }
    if (dt != TENSORD_INT64 && dt != TENSORD_BOOL) {
        return tdx_fail(e, at, "tensors used as indices must be long, byte or bool tensors");
    }
    it->k = IT_TENSOR;
    it->t = tdx_tref_ref(v->t);
    return 0;
}

/* Whether a one-item key v is several items, torch's way: a tuple always; a list holding None,
** tensors or sequences (numpy's legacy rule), when shorter than 32. */
static bool key_is_items(const struct value *v)
{
    if (v->k == V_TUPLE && !is_slice_value(v)) {
        return true;
    }
    if (v->k != V_LIST || v->n >= 32) {
        return false;
    }
    for (int i = 0; i < v->n; i++) {
        enum vkind k = v->items[i].k;
        if (k == V_NONE || k == V_TENSOR || k == V_LIST || k == V_TUPLE || k == V_RANGE) {
            return true;
        }
    }
    return false;
}

static int index_walk(struct tdx_env *e, const struct tdx_node *n, struct tref *x,
                      struct iitem *items, int nitems, struct iparts *r);

/* The parts key `subs` names in x (see struct iparts). */
static int index_parts(struct tdx_env *e, const struct tdx_node *n, struct tref *x,
                       const struct value *subs, int nsubs, struct iparts *r)
{
    const struct value *key = subs;
    int nkey = nsubs, rc = 0, nitems = 0;
    memset(r, 0, sizeof *r);
    if (nsubs == 1 && key_is_items(&subs[0])) {
        key = subs[0].items;
        nkey = subs[0].n;
    }
    struct iitem *items = calloc((size_t)nkey + 1, sizeof *items);
    if (items == NULL) {
        return tdx_fail(e, n, "out of memory");
    }
    for (; nitems < nkey && rc == 0; nitems++) {
        rc = index_item(e, n, &key[nitems], &items[nitems]);
    }
    if (rc == 0) {
        rc = index_walk(e, n, x, items, nkey, r);
    }
    for (int i = 0; i < nitems; i++) {
        tdx_tref_unref(e, items[i].t);
    }
    free(items);
    return rc;
}

static int index_walk(struct tdx_env *e, const struct tdx_node *n, struct tref *x,
                      struct iitem *items, int nitems, struct iparts *r)
{
    int rc, specified = 0, nell = 0;
    bool advanced = false, any_int = false;
    for (int k = 0; k < nitems; k++) {
        const struct iitem *it = &items[k];
        advanced |= it->k == IT_TENSOR;
        any_int |= it->k == IT_INT;
        nell += it->k == IT_ELL;
        if (it->k == IT_TENSOR) {
            if ((rc = tdx_known(e, it->t, n)) != 0) {
                return rc;
            }
            specified += it->t->info.dtype == TENSORD_BOOL ? it->t->info.ndim : 1;
        } else {
            specified += it->k == IT_INT || it->k == IT_SLICE;
        }
    }
    /* A basic key without `...` on a tensor whose shape is not known yet stays pipelined: the
    ** server checks each view op. Otherwise the view's shape is followed here. */
    bool shaped = advanced || nell > 0 || x->known;
    if (shaped && (rc = tdx_known(e, x, n)) != 0) {
        return rc;
    }
    int ndim = shaped ? x->info.ndim : TENSORD_MAX_DIMS, nvs = ndim;
    int64_t vs[TENSORD_MAX_DIMS + 64];
    if (shaped) {
        memcpy(vs, x->info.shape, (size_t)ndim * sizeof vs[0]);
    } else {
        for (int i = 0; i < ndim; i++) {
            vs[i] = INT64_MAX;
        }
    }
    if (shaped && ndim == 0 && any_int) {
        return tdx_fail(e, n,
                        "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                        "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number");
    }
    if (shaped && specified > ndim) {
        return tdx_fail(e, n, "too many indices for tensor of dimension %d", ndim);
    }
    struct {
        int d;
        struct tref *t;
    } ent[64];
    int nent = 0, d = 0;
    struct tref *cur = tdx_tref_ref(x);
    for (int k = 0; k < nitems; k++) {
        const struct iitem *it = &items[k];
        struct tensord_op_args a;
        memset(&a, 0, sizeof a);
        a.dim = d;
        a.has_dim = true;
        if (nvs >= (int)(sizeof vs / sizeof vs[0]) - 1 || nent >= 64) {
            rc = tdx_fail(e, n, "too many indices");
            break;
        }
        switch (it->k) {
        case IT_ELL: d += ndim - specified; continue; /* torch lets several through */
        case IT_NONE:
        case IT_BOOL:
            if ((rc = step_op(e, n, "unsqueeze", &cur, &a)) != 0) {
                break;
            }
            memmove(&vs[d + 1], &vs[d], (size_t)(nvs - d) * sizeof vs[0]);
            vs[d] = 1;
            nvs++;
            if (it->k == IT_BOOL) {
                r->copy = true;
                if (advanced) {
                    /* True indexes the new dim with [0], False with [] */
                    struct value l;
                    if ((rc = tdx_vseq(e, &l, V_LIST, it->i ? 1 : 0)) != 0) {
                        break;
                    }
                    if (it->i) {
                        l.items[0] = vint(0);
                    }
                    struct tref *t = NULL;
                    struct value tv;
                    rc = tdx_make_tensor(e, &l, TENSORD_INT64, false, n, &tv);
                    tdx_vfree(e, &l);
                    if (rc != 0) {
                        break;
                    }
                    t = tv.t;
                    if ((rc = tdx_known(e, t, n)) != 0) {
                        tdx_tref_unref(e, t);
                        break;
                    }
                    ent[nent].d = d;
                    ent[nent++].t = t;
                } else if (!it->i) {
                    a.start = 0;
                    a.end = 0;
                    a.step = 1;
                    if ((rc = step_op(e, n, "slice", &cur, &a)) != 0) {
                        break;
                    }
                    vs[d] = 0;
                }
            }
            d++;
            break;
        case IT_TENSOR:
            ent[nent].d = d;
            ent[nent++].t = tdx_tref_ref(it->t);
            d++;
            break;
        case IT_SLICE: {
            if (shaped && d >= nvs) {
                rc = tdx_fail(e, n, "too many indices for tensor of dimension %d", ndim);
                break;
            }
            const struct value *sl = it->sl->items;
            int64_t size = vs[d], st = sl[2].k == V_NONE ? 1 : sl[2].i;
            int64_t lo = sl[0].k == V_NONE ? 0 : sl[0].i;
            int64_t hi = sl[1].k == V_NONE ? INT64_MAX : sl[1].i;
            a.start = lo;
            a.end = hi;
            a.step = st;
            if ((rc = step_op(e, n, "slice", &cur, &a)) != 0) {
                break;
            }
            lo = lo < 0 ? (lo + size < 0 ? 0 : lo + size) : (lo > size ? size : lo);
            hi = hi < 0 ? (hi + size < 0 ? 0 : hi + size) : (hi > size ? size : hi);
            vs[d] = !shaped ? INT64_MAX : hi > lo ? (hi - lo - 1) / st + 1 : 0;
            d++;
            break;
        }
        case IT_INT: {
            if (shaped && d >= nvs) {
                rc = tdx_fail(e, n, "too many indices for tensor of dimension %d", ndim);
                break;
            }
            if (shaped && (it->i < -vs[d] || it->i >= vs[d])) {
                /* torch names the index's position in the key as its dimension */
                rc = tdx_fail(e, n,
                              "index %" PRId64 " is out of bounds for dimension %d with size "
                              "%" PRId64,
                              it->i, k, vs[d]);
                break;
            }
            a.start = it->i;
            if ((rc = step_op(e, n, "select", &cur, &a)) != 0) {
                break;
            }
            memmove(&vs[d], &vs[d + 1], (size_t)(nvs - d - 1) * sizeof vs[0]);
            nvs--;
            break;
        }
        }
        if (rc != 0) {
            break;
        }
    }
    r->view = cur;
    /* aten::index: the entries at their view positions, a mask expanded into one int64 index
    ** per mask dim (its nonzero's columns), checked against the view there */
    int nslots = 0;
    for (int k = 0; k < nent && rc == 0; k++) {
        struct tref *t = ent[k].t;
        if (nslots < ent[k].d) {
            nslots = ent[k].d;
        }
        if (t->info.dtype != TENSORD_BOOL) {
            if (nslots >= 64 || r->nidx >= TDX_MAX_OPERANDS - 2) {
                rc = tdx_fail(e, n, "too many indices");
                break;
            }
            r->mask |= 1ull << nslots++;
            r->idx[r->nidx++] = tdx_tref_ref(t);
            continue;
        }
        int base = nslots;
        for (int j = 0; j < t->info.ndim && rc == 0; j++) {
            if (base + j >= nvs || t->info.shape[j] != vs[base + j]) {
                char ms[200], xs[200];
                shape_text(ms, sizeof ms, t->info.shape, t->info.ndim);
                shape_text(xs, sizeof xs, vs, nvs);
                rc = tdx_fail(e, n,
                              "The shape of the mask %s at index %d does not match the shape of "
                              "the indexed tensor %s at index %d",
                              ms, j, xs, base + j);
            }
        }
        struct tref *nz = NULL;
        struct tensord_op_args a;
        memset(&a, 0, sizeof a);
        if (rc == 0) {
            rc = one_op(e, n, "nonzero", t, &a, &nz);
        }
        for (int j = 0; j < t->info.ndim && rc == 0; j++) {
            if (nslots >= 64 || r->nidx >= TDX_MAX_OPERANDS - 2) {
                rc = tdx_fail(e, n, "too many indices");
                break;
            }
            a.dim = 1;
            a.has_dim = true;
            a.start = j;
            struct tref *col;
            if ((rc = one_op(e, n, "select", nz, &a, &col)) == 0) {
                r->mask |= 1ull << nslots++;
                r->idx[r->nidx++] = col;
            }
        }
        tdx_tref_unref(e, nz);
    }
    for (int k = 0; k < nent; k++) {
        tdx_tref_unref(e, ent[k].t);
    }
    if (rc == 0 && nslots > nvs) {
        rc = tdx_fail(e, n, "too many indices for tensor of dimension %d", nvs);
    }
    if (rc != 0) {
        iparts_free(e, r);
    }
    return rc;
}

/* x.index_put_(indices, values, accumulate=False) (inplace) and x.index_put(...) (on a clone):
** indices a tuple or list with an int64 tensor or a bool mask (its nonzero's columns) for each
** leading dim; values a tensor (or a number). */
int tdx_index_put_method(struct tdx_env *e, const struct tdx_node *at, struct tref *x, bool inplace,
                         const struct call *c, struct value *out)
{
    const char *fn = inplace ? "index_put_" : "index_put";
    const struct value *ind = c->nargs > 0 ? &c->args[0] : NULL;
    const struct value *vals = c->nargs > 1 ? &c->args[1] : NULL;
    const struct value *acc = c->nargs > 2 ? &c->args[2] : NULL;
    int rc = 0;
    for (int k = 0; k < c->nkw; k++) {
        const char *kn = c->kwn[k];
        const struct value **dst = strcmp(kn, "indices") == 0      ? &ind
                                   : strcmp(kn, "values") == 0     ? &vals
                                   : strcmp(kn, "accumulate") == 0 ? &acc
                                                                   : NULL;
        if (dst == NULL) {
            return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", fn, kn);
        }
        *dst = &c->kwv[k];
    }
    if (c->nargs > 3) {
        return tdx_fail(e, at, "%s() takes at most 3 arguments (%d given)", fn, c->nargs);
    }
    if (ind == NULL || vals == NULL) {
        return tdx_fail(e, at, "%s() missing required argument '%s'", fn,
                        ind == NULL ? "indices" : "values");
    }
    if (ind->k != V_TUPLE && ind->k != V_LIST) {
        return tdx_fail(e, at,
                        "%s(): argument 'indices' (position 1) must be tuple of Tensors, not %s",
                        fn, tdx_type_name(ind));
    }
    if (acc != NULL && acc->k != V_BOOL) {
        return tdx_fail(e, at, "%s(): argument 'accumulate' must be bool, not %s", fn,
                        tdx_type_name(acc));
    }
    struct iparts p;
    memset(&p, 0, sizeof p);
    int d = 0;
    for (int k = 0; k < ind->n && rc == 0; k++) {
        const struct value *it = &ind->items[k];
        if (it->k != V_TENSOR) {
            rc = tdx_fail(e, at, "expected Tensor as element %d in argument 0, but got %s", k,
                          tdx_type_name(it));
            break;
        }
        struct tref *t = tdx_tref_ref(it->t);
        if ((rc = tdx_known(e, t, at)) == 0 && t->info.dtype == TENSORD_BOOL) {
            struct tref *nz = NULL;
            struct tensord_op_args a;
            memset(&a, 0, sizeof a);
            rc = one_op(e, at, "nonzero", t, &a, &nz);
            for (int j = 0; j < t->info.ndim && rc == 0; j++) {
                struct tref *col;
                a.dim = 1;
                a.has_dim = true;
                a.start = j;
                if (d >= 64 || p.nidx >= TDX_MAX_OPERANDS - 2) {
                    rc = tdx_fail(e, at, "too many indices");
                } else if ((rc = one_op(e, at, "select", nz, &a, &col)) == 0) {
                    p.mask |= 1ull << d++;
                    p.idx[p.nidx++] = col;
                }
            }
            tdx_tref_unref(e, nz);
        } else if (rc == 0) {
            if (d >= 64 || p.nidx >= TDX_MAX_OPERANDS - 2) {
                rc = tdx_fail(e, at, "too many indices");
            } else {
                p.mask |= 1ull << d++;
                p.idx[p.nidx++] = tdx_tref_ref(t);
            }
        }
        tdx_tref_unref(e, t);
    }
    struct value target = {0}, v = {0};
    if (rc == 0 && (rc = tdx_known(e, x, at)) == 0) {
        if (vals->k == V_TENSOR || is_num(vals)) {
            rc = tdx_vcopy(e, &v, vals);
        } else {
            rc = tdx_make_tensor(e, vals, x->info.dtype, false, at, &v);
        }
    }
    if (rc == 0 && inplace) {
        target = vtensor(tdx_tref_ref(x));
    } else if (rc == 0) {
        struct value a1[1] = {vtensor(x)};
        struct call cc = {.args = a1, .nargs = 1};
        rc = tdx_call_op(e, at, "clone", false, &cc, &target);
    }
    struct tensord_operand ins[TDX_MAX_OPERANDS];
    int nin = 0;
    if (rc == 0) {
        ins[nin++] = tensord_h(target.t->handle);
        for (int i = 0; i < p.nidx; i++) {
            ins[nin++] = tensord_h(p.idx[i]->handle);
        }
        rc = tdx_to_operand(e, &v, at, fn, &ins[nin++]);
    }
    if (rc == 0) {
        struct tensord_op_args a;
        struct tensord_error err;
        uint64_t id;
        memset(&a, 0, sizeof a);
        a.index_mask = p.mask;
        a.accumulate = acc != NULL && acc->b;
        int lrc = tensord_send_op_ex(e->c, "index_put", 0, ins, nin, &a, true, &id, &err);
        rc = tdx_send_tensor_result(e, lrc, id, target.t, at, &err);
        target.t->known = false;
        if (rc == 0 && v.k == V_TENSOR && v.t->requires_grad && e->grad_enabled) {
            target.t->requires_grad = true;
            target.t->is_leaf = false;
        }
    }
    tdx_vfree(e, &v);
    iparts_free(e, &p);
    if (rc != 0) {
        tdx_vfree(e, &target);
        return rc;
    }
    *out = target;
    return 0;
}

/* x[key] on a tensor: a view for a basic key, a copy gathered by `index` for an advanced one. */
/* The copy an advanced key's parts gather (op `index`). */
static int gather(struct tdx_env *e, const struct tdx_node *n, const struct iparts *p,
                  struct value *out)
{
    struct tensord_operand ins[TDX_MAX_OPERANDS];
    struct tensord_op_args a;
    int nin = 0, rc;
    memset(&a, 0, sizeof a);
    ins[nin++] = tensord_h(p->view->handle);
    for (int i = 0; i < p->nidx; i++) {
        ins[nin++] = tensord_h(p->idx[i]->handle);
    }
    a.index_mask = p->mask;
    struct tref *t = tdx_tref_new(e);
    struct tensord_error err;
    uint64_t id;
    if (t == NULL) {
        return tdx_fail(e, n, "out of memory");
    }
    int lrc = tensord_send_op_ex(e->c, "index", t->handle, ins, nin, &a, false, &id, &err);
    if ((rc = tdx_send_tensor_result(e, lrc, id, t, n, &err)) != 0) {
        tdx_tref_unref(e, t);
        return rc;
    }
    t->requires_grad = p->view->requires_grad && e->grad_enabled;
    t->is_leaf = !t->requires_grad;
    *out = vtensor(t);
    return 0;
}

static int index_tensor(struct tdx_env *e, const struct tdx_node *n, struct tref *x,
                        struct value *subs, int nsubs, struct value *out)
{
    struct iparts p;
    int rc = index_parts(e, n, x, subs, nsubs, &p);
    if (rc != 0) {
        return rc;
    }
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    if (p.nidx > 0) {
        rc = gather(e, n, &p, out);
    } else {
        if (p.copy) {
            rc = step_op(e, n, "clone", &p.view, &a);
        } else if (p.view == x && (rc = tdx_known(e, x, n)) == 0) {
            /* x[...]: a new view of the same storage */
            a.ndims = x->info.ndim;
            a.has_dims = true;
            memcpy(a.dims, x->info.shape, (size_t)x->info.ndim * sizeof a.dims[0]);
            rc = step_op(e, n, "view", &p.view, &a);
        }
        if (rc == 0) {
            *out = vtensor(tdx_tref_ref(p.view));
        }
    }
    iparts_free(e, &p);
    return rc;
}

static void subs_free(struct tdx_env *e, struct value *subs, int nsubs)
{
    for (int k = 0; k < nsubs; k++) {
        tdx_vfree(e, &subs[k]);
    }
    free(subs);
}

/* The subscripts of INDEX node n as values (n->nkids - 1 of them): a slice is a V_TUPLE
** (start, stop, step) with dt 1, `...` a V_STR with dt 1. */
static int eval_subs(struct tdx_env *e, const struct tdx_node *n, struct value **out)
{
    int rc = 0, nsubs = n->nkids - 1;
    struct value *subs = calloc((size_t)nsubs + 1, sizeof *subs);
    if (subs == NULL) {
        return tdx_fail(e, n, "out of memory");
    }
    int done = 0;
    for (; done < nsubs && rc == 0; done++) {
        const struct tdx_node *s = n->kids[done + 1];
        if (s->kind == TDX_SLICE) {
            if ((rc = tdx_vseq(e, &subs[done], V_TUPLE, 3)) != 0) {
                break;
            }
            subs[done].dt = 1; /* marks a slice */
            for (int k = 0; k < 3 && rc == 0; k++) {
                if (s->kids[k] != NULL) {
                    rc = eval(e, s->kids[k], &subs[done].items[k]);
                    if (rc == 0 && subs[done].items[k].k != V_INT &&
                        subs[done].items[k].k != V_NONE) {
                        rc = tdx_fail(e, s->kids[k], "slice indices must be integers or None");
                    }
                }
            }
        } else if (s->kind == TDX_ELLIPSIS) {
            if ((rc = tdx_vstr(e, &subs[done], "...", 3)) == 0) {
                subs[done].dt = 1; /* marks `...` */
            }
        } else {
            rc = eval(e, s, &subs[done]);
        }
    }
    if (rc != 0) {
        subs_free(e, subs, nsubs);
        return rc;
    }
    *out = subs;
    return 0;
}

static int eval_index(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    struct value obj, *subs;
    int nsubs = n->nkids - 1;
    int rc = eval(e, n->kids[0], &obj);
    if (rc != 0) {
        return rc;
    }
    if ((rc = eval_subs(e, n, &subs)) != 0) {
        tdx_vfree(e, &obj);
        return rc;
    }
    if (obj.k == V_TENSOR) {
        rc = index_tensor(e, n, obj.t, subs, nsubs, out);
    } else if (obj.k == V_LIST || obj.k == V_TUPLE || obj.k == V_SIZE) {
        if (nsubs != 1) {
            rc = tdx_fail(e, n, "%s indices must be integers or slices, not tuple",
                          tdx_type_name(&obj));
        } else if (subs[0].k == V_INT || subs[0].k == V_BOOL) {
            int64_t i = num_i(&subs[0]);
            if (i < 0) {
                i += obj.n;
            }
            if (i < 0 || i >= obj.n) {
                rc = tdx_fail(e, n, "%s index out of range", obj.k == V_LIST ? "list" : "tuple");
            } else {
                rc = tdx_vcopy(e, out, &obj.items[i]);
            }
        } else if (subs[0].k == V_TUPLE && subs[0].dt == 1) {
            struct value *sl = subs[0].items;
            int64_t st = sl[2].k == V_NONE ? 1 : sl[2].i;
            if (st <= 0) {
                rc = tdx_fail(e, n, "slice step must be positive here");
            } else {
                int64_t a = sl[0].k == V_NONE ? 0 : sl[0].i;
                int64_t b = sl[1].k == V_NONE ? obj.n : sl[1].i;
                a = a < 0 ? (a + obj.n < 0 ? 0 : a + obj.n) : (a > obj.n ? obj.n : a);
                b = b < 0 ? (b + obj.n < 0 ? 0 : b + obj.n) : (b > obj.n ? obj.n : b);
                int cnt = b > a ? (int)((b - a + st - 1) / st) : 0;
                if ((rc = tdx_vseq(e, out, obj.k, cnt)) == 0) {
                    for (int k = 0; k < cnt && rc == 0; k++) {
                        rc = tdx_vcopy(e, &out->items[k], &obj.items[a + k * st]);
                    }
                }
            }
        } else {
            rc = tdx_fail(e, n, "%s indices must be integers or slices, not %s",
                          tdx_type_name(&obj), tdx_type_name(&subs[0]));
        }
    } else {
        rc = tdx_fail(e, n, "'%s' object is not subscriptable", tdx_type_name(&obj));
    }
    subs_free(e, subs, nsubs);
    tdx_vfree(e, &obj);
    return rc;
}

static int eval_call(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    const struct tdx_node *f = n->kids[0];
    struct value self = {0}, callee = {0};
    struct call c;
    int rc;
    if (f->kind == TDX_ATTR) {
        if ((rc = eval(e, f->kids[0], &self)) != 0) {
            return rc;
        }
        if (self.k != V_TENSOR) {
            rc = tdx_attribute(e, f, &self, f->str, &callee);
            tdx_vfree(e, &self);
            if (rc != 0) {
                return rc;
            }
        }
    } else if ((rc = eval(e, f, &callee)) != 0) {
        return rc;
    }
    if ((rc = eval_args(e, n, &c)) != 0) {
        tdx_vfree(e, &self);
        tdx_vfree(e, &callee);
        return rc;
    }
    if (self.k == V_TENSOR) {
        if (self.t->none) {
            rc = tdx_fail(e, f, "'NoneType' object has no attribute '%s'", f->str);
        } else {
            rc = tdx_method(e, n, self.t, f->str, &c, out);
        }
    } else if (callee.k == V_METHOD && callee.b) {
        rc = tdx_generator_method(e, n, callee.t, callee.s, &c, out);
    } else if (callee.k == V_METHOD) {
        rc = tdx_method(e, n, callee.t, callee.s, &c, out);
    } else if (callee.k == V_FUNC) {
        rc = tdx_func(e, n, callee.s, &c, out);
    } else if (callee.k == V_DTYPE) {
        rc = tdx_fail(e, n, "'torch.dtype' object is not callable");
    } else {
        rc = tdx_fail(e, n, "'%s' object is not callable", tdx_type_name(&callee));
    }
    call_free(e, &c);
    tdx_vfree(e, &self);
    tdx_vfree(e, &callee);
    return rc;
}

/* An f-string: its text parts, and each {expr[!conv][:spec]} formatted as Python would. */
static int eval_fstring(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    int rc = 0;
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    for (int i = 0; i < n->nkids && rc == 0; i++) {
        const struct tdx_node *p = n->kids[i];
        if (p->kind == TDX_STR) {
            td_strbuf_append(&b, p->str, (size_t)p->ival);
            continue;
        }
        struct value v;
        if ((rc = eval(e, p->kids[0], &v)) != 0) {
            break;
        }
        if (p->op != 0 && p->op != 'r' && p->op != 's') {
            tdx_vfree(e, &v);
            rc = p->op == 'a' ? tdx_fail(e, p, "f-string: the !a conversion is not supported")
                              : tdx_fail(e, p,
                                         "f-string: invalid conversion character: "
                                         "expected 's', 'r', or 'a'");
            break;
        }
        if (v.k == V_TENSOR && p->op == 0 && (rc = tdx_known(e, v.t, p)) == 0 &&
            v.t->info.ndim == 0) {
            /* Tensor.__format__: a 0-dim tensor formats as its item() */
            struct value x;
            if ((rc = tdx_item(e, v.t, p, &x)) == 0) {
                tdx_vfree(e, &v);
                v = x;
            }
        }
        if (rc != 0) {
            tdx_vfree(e, &v);
            break;
        }
        if (p->op == 'r' || p->op == 's' || p->op == 'a') {
            /* !r / !s / !a convert first; the spec then formats the string */
            struct td_strbuf conv;
            td_strbuf_init(&conv, 0);
            if ((rc = tdx_vtext(e, &v, p->op == 's', p, &conv)) == 0) {
                tdx_vfree(e, &v);
                rc = tdx_vstr(e, &v, td_strbuf_str(&conv), conv.len);
            }
            td_strbuf_free(&conv);
            if (rc != 0) {
                tdx_vfree(e, &v);
                break;
            }
        }
        if (p->str != NULL && p->str[0] != '\0') {
            rc = tdx_format_spec(e, p, &v, p->str, &b);
        } else {
            rc = tdx_vtext(e, &v, true, p, &b);
        }
        tdx_vfree(e, &v);
    }
    if (rc == 0) {
        rc = tdx_vstr(e, out, td_strbuf_str(&b), b.len);
    }
    td_strbuf_free(&b);
    return rc;
}

/* -x and +x: Python's on numbers, neg on a tensor. */
static int eval_unary(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    int rc = 0;
    struct value a;
    if (n->op == TDX_OP_STAR) {
        return tdx_fail(e, n, "can't use starred expression here");
    }
    if ((rc = eval(e, n->kids[0], &a)) != 0) {
        return rc;
    }
    if (n->op == TDX_OP_POS && (is_num(&a) || a.k == V_TENSOR)) {
        *out = a;
        if (a.k == V_BOOL) {
            *out = vint(a.b);
        }
        return 0;
    }
    if (n->op == TDX_OP_INVERT) {
        /* ~: bitwise_not on a tensor (logical not on bool), Python's on ints */
        if (a.k == V_TENSOR && (rc = tdx_known(e, a.t, n)) == 0 &&
            (a.t->info.dtype == TENSORD_FLOAT32 || a.t->info.dtype == TENSORD_FLOAT64)) {
            /* Tensor.__invert__'s own check, before the op's */
            rc = tdx_fail(e, n,
                          "~ (operator.invert) is only implemented on integer and Boolean-type "
                          "tensors");
        } else if (a.k == V_TENSOR && rc == 0) {
            struct call c = {.args = &a, .nargs = 1};
            rc = tdx_call_op(e, n, "bitwise_not", false, &c, out);
        } else if (a.k == V_TENSOR) {
            /* tdx_known's error stands */
        } else if (a.k == V_INT || a.k == V_BOOL) {
            *out = vint(~num_i(&a));
        } else {
            rc = tdx_fail(e, n, "bad operand type for unary ~: '%s'", tdx_type_name(&a));
        }
        tdx_vfree(e, &a);
        return rc;
    }
    if (a.k == V_TENSOR) {
        struct call c = {.args = &a, .nargs = 1};
        rc = tdx_call_op(e, n, "neg", false, &c, out);
    } else if (a.k == V_FLOAT) {
        *out = vfloat(-a.f);
    } else if (a.k == V_INT || a.k == V_BOOL) {
        *out = vint(-num_i(&a));
    } else {
        rc = tdx_fail(e, n, "bad operand type for unary %s: '%s'", n->op == TDX_OP_NEG ? "-" : "+",
                      tdx_type_name(&a));
    }
    tdx_vfree(e, &a);
    return rc;
}

static int eval(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    int rc;
    *out = (struct value){.k = V_NONE};
    switch (n->kind) {
    case TDX_INT: *out = vint(n->ival); return 0;
    case TDX_FLOAT: *out = vfloat(n->fval); return 0;
    case TDX_STR: return tdx_vstr(e, out, n->str, (size_t)n->ival);
    case TDX_TRUE: *out = vbool(true); return 0;
    case TDX_FALSE: *out = vbool(false); return 0;
    case TDX_NONE: return 0;
    case TDX_ELLIPSIS: return tdx_fail(e, n, "'...' is only valid as an index");
    case TDX_NAME: return tdx_name_value(e, n, out);
    case TDX_FSTR: return eval_fstring(e, n, out);
    case TDX_LIST:
    case TDX_TUPLE:
        if ((rc = tdx_vseq(e, out, n->kind == TDX_LIST ? V_LIST : V_TUPLE, n->nkids)) != 0) {
            return rc;
        }
        for (int i = 0; i < n->nkids; i++) {
            if ((rc = eval(e, n->kids[i], &out->items[i])) != 0) {
                tdx_vfree(e, out);
                return rc;
            }
        }
        return 0;
    case TDX_BINOP: {
        struct value a, b;
        if ((rc = eval(e, n->kids[0], &a)) != 0) {
            return rc;
        }
        if ((rc = eval(e, n->kids[1], &b)) != 0) {
            tdx_vfree(e, &a);
            return rc;
        }
        rc = binop(e, n, n->op, &a, &b, out);
        tdx_vfree(e, &a);
        tdx_vfree(e, &b);
        return rc;
    }
    case TDX_UNARY: return eval_unary(e, n, out);
    case TDX_NOT: {
        struct value a;
        bool b;
        if ((rc = eval(e, n->kids[0], &a)) != 0) {
            return rc;
        }
        rc = tdx_truth(e, n, &a, &b);
        tdx_vfree(e, &a);
        *out = vbool(!b);
        return rc;
    }
    case TDX_AND:
    case TDX_OR: {
        bool b;
        if ((rc = eval(e, n->kids[0], out)) != 0) {
            return rc;
        }
        if ((rc = tdx_truth(e, n, out, &b)) != 0) {
            tdx_vfree(e, out);
            return rc;
        }
        if (b == (n->kind == TDX_OR)) {
            return 0;
        }
        tdx_vfree(e, out);
        return eval(e, n->kids[1], out);
    }
    case TDX_CALL: return eval_call(e, n, out);
    case TDX_ATTR: {
        struct value obj;
        if ((rc = eval(e, n->kids[0], &obj)) != 0) {
            return rc;
        }
        rc = tdx_attribute(e, n, &obj, n->str, out);
        tdx_vfree(e, &obj);
        return rc;
    }
    case TDX_INDEX: return eval_index(e, n, out);
    default: return tdx_fail(e, n, "invalid syntax");
    }
}

/* ---- statements ---- */

static int exec(struct tdx_env *e, const struct tdx_node *s);

static const char *const INPLACE[] = {
    [TDX_OP_ADD] = "add",
    [TDX_OP_SUB] = "sub",
    [TDX_OP_MUL] = "mul",
    [TDX_OP_DIV] = "div",
    [TDX_OP_FLOORDIV] = "floor_divide",
    [TDX_OP_MOD] = "remainder",
    [TDX_OP_POW] = "pow",
    [TDX_OP_AND] = "bitwise_and",
    [TDX_OP_OR] = "bitwise_or",
    [TDX_OP_XOR] = "bitwise_xor",
    [TDX_OP_LSHIFT] = "bitwise_left_shift",
    [TDX_OP_RSHIFT] = "bitwise_right_shift",
};

/* import torch [as t], import numpy as np, from torch import x [as y]: torch's names are
** tensorctl's own, so a module is a namespace for them; numpy binds a name whose every use
** says numpy is not here, so a pasted PyTorch snippet fails only where it really needs numpy. */
static int exec_import(struct tdx_env *e, const struct tdx_node *s)
{
    int rc;
    for (int i = 0; i < s->nkids; i++) {
        const struct tdx_node *k = s->kids[i];
        const char *what = k->kind == TDX_KWARG ? k->kids[0]->str : k->str;
        const char *as = k->kind == TDX_KWARG ? k->str : NULL;
        struct value v = {0};
        if (s->str != NULL) {
            if (strcmp(s->str, "torch") != 0) {
                return tdx_fail(e, k,
                                strcmp(s->str, "numpy") == 0
                                    ? "cannot import name '%s' from 'numpy' (numpy is not "
                                      "available in "
                                      "tensorctl)"
                                    : "No module named '%s' (tensorctl has torch only)",
                                strcmp(s->str, "numpy") == 0 ? what : s->str);
            }
            if ((rc = tdx_module_attr(e, k, "torch", what, &v)) != 0) {
                e->has_err = false;
                return tdx_fail(e, k, "cannot import name '%s' from 'torch'", what);
            }
            if ((rc = tdx_bind(e, as != NULL ? as : what, &v)) != 0) {
                return rc;
            }
            continue;
        }
        if (strcmp(what, "torch") != 0 && strcmp(what, "numpy") != 0) {
            return tdx_fail(e, k,
                            "No module named '%s' (tensorctl has torch, and numpy as a name "
                            "only)",
                            what);
        }
        if (what[0] == 'n' && e->cfg.interactive) {
            fprintf(e->cfg.err,
                    "note: numpy is not available in tensorctl; '%s.' names will "
                    "fail (use tensor([...]))\n",
                    as != NULL ? as : what);
        }
        v.k = V_MODULE;
        if ((v.s = strdup(what)) == NULL) {
            return tdx_fail(e, k, "out of memory");
        }
        if ((rc = tdx_bind(e, as != NULL ? as : what, &v)) != 0) {
            return rc;
        }
    }
    return 0;
}

static int assign_attr(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    struct value obj;
    int rc = eval(e, t->kids[0], &obj);
    if (rc != 0) {
        return rc;
    }
    struct tensord_error err;
    uint64_t id;
    if (obj.k != V_TENSOR) {
        rc = tdx_fail(e, t, "'%s' object attribute '%s' is read-only", tdx_type_name(&obj), t->str);
    } else if (strcmp(t->str, "grad") == 0 && v->k == V_NONE) {
        rc = tdx_plain(e, tensord_send_set_grad(e->c, obj.t->handle, false, true, false, &id, &err),
                       &id, t, &err);
    } else if (strcmp(t->str, "requires_grad") == 0 && v->k == V_BOOL) {
        rc = tdx_plain(e, tensord_send_set_grad(e->c, obj.t->handle, v->b, false, false, &id, &err),
                       &id, t, &err);
        obj.t->requires_grad = v->b;
    } else if (strcmp(t->str, "grad") == 0) {
        rc = tdx_fail(e, t, "only `.grad = None` is supported");
    } else {
        rc = tdx_fail(e, t, "attribute '%s' of 'Tensor' objects is not writable", t->str);
    }
    tdx_vfree(e, &obj);
    return rc;
}

/* torch's refusal of x[key] = [..] (its legacy type name says tensord.). */
static int refuse_sequence(struct tdx_env *e, const struct tdx_node *at, struct tref *x,
                           const struct value *v)
{
    static const char *const TYPES[] = {
        [TENSORD_FLOAT32] = "FloatTensor", [TENSORD_FLOAT64] = "DoubleTensor",
        [TENSORD_INT32] = "IntTensor",     [TENSORD_INT64] = "LongTensor",
        [TENSORD_BOOL] = "BoolTensor",
    };
    int rc = tdx_known(e, x, at);
    if (rc != 0) {
        return rc;
    }
    int dt = x->info.dtype;
    return tdx_fail(e, at, "can't assign a %s to a tensord.%s", tdx_type_name(v),
                    dt >= 0 && dt < (int)(sizeof TYPES / sizeof TYPES[0]) && TYPES[dt] != NULL
                        ? TYPES[dt]
                        : "Tensor");
}

/* x[key] = v with an advanced key: index_put_ on the view the basic items make; v a number, a
** tensor (leading dims of size 1 dropped, as torch does) or data for tensor() in x's dtype. */
static int index_put(struct tdx_env *e, const struct tdx_node *t, struct tref *x, struct iparts *p,
                     const struct value *v)
{
    struct tensord_operand ins[TDX_MAX_OPERANDS];
    int nin = 0, rc;
    struct value val = {0};
    ins[nin++] = tensord_h(p->view->handle);
    for (int i = 0; i < p->nidx; i++) {
        ins[nin++] = tensord_h(p->idx[i]->handle);
    }
    if (is_num(v)) {
        if ((rc = tdx_to_operand(e, v, t, "index_put_", &ins[nin++])) != 0) {
            return rc;
        }
    } else {
        if (v->k == V_TENSOR) {
            rc = tdx_vcopy(e, &val, v);
        } else if (v->k == V_LIST || v->k == V_TUPLE) {
            rc = refuse_sequence(e, t, x, v);
        } else {
            rc = tdx_fail(e, t, "can't assign a %s to a tensord.Tensor", tdx_type_name(v));
        }
        if (rc == 0) {
            rc = tdx_known(e, val.t, t);
        }
        int nd = rc == 0 ? val.t->info.ndim : 0, lead = 0;
        while (rc == 0 && lead < nd && val.t->info.shape[lead] == 1) {
            lead++;
        }
        if (rc == 0 && lead > 0) {
            struct tensord_op_args a;
            memset(&a, 0, sizeof a);
            a.ndims = nd - lead;
            a.has_dims = true;
            memcpy(a.dims, val.t->info.shape + lead, (size_t)(nd - lead) * sizeof a.dims[0]);
            rc = step_op(e, t, "reshape", &val.t, &a);
        }
        if (rc != 0) {
            tdx_vfree(e, &val);
            return rc;
        }
        ins[nin++] = tensord_h(val.t->handle);
    }
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    a.index_mask = p->mask;
    struct tensord_error err;
    uint64_t id;
    int lrc = tensord_send_op_ex(e->c, "index_put", 0, ins, nin, &a, true, &id, &err);
    struct tref *target = tdx_tref_ref(p->view);
    rc = tdx_send_tensor_result(e, lrc, id, target, t, &err);
    target->known = false;
    tdx_tref_unref(e, target);
    if (rc == 0 && val.k == V_TENSOR && val.t->requires_grad && e->grad_enabled) {
        x->requires_grad = true;
        x->is_leaf = false;
    }
    tdx_vfree(e, &val);
    return rc;
}

/* x[key] = v: for a basic key a view, then copy_ (a tensor) or fill_ (a number) into it; for an
** advanced key index_put_. */
static int assign_index(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    struct value obj, *subs;
    int rc = eval(e, t->kids[0], &obj), nsubs = t->nkids - 1;
    if (rc != 0) {
        return rc;
    }
    if (obj.k != V_TENSOR) {
        rc = obj.k == V_LIST ? tdx_fail(e, t, "item assignment is supported on tensors only")
                             : tdx_fail(e, t, "'%s' object does not support item assignment",
                                        tdx_type_name(&obj));
        tdx_vfree(e, &obj);
        return rc;
    }
    if ((rc = eval_subs(e, t, &subs)) != 0) {
        tdx_vfree(e, &obj);
        return rc;
    }
    struct iparts p;
    if ((rc = index_parts(e, t, obj.t, subs, nsubs, &p)) == 0) {
        if (p.nidx > 0) {
            rc = index_put(e, t, obj.t, &p, v);
        } else {
            struct value src = {0};
            if (v->k == V_LIST || v->k == V_TUPLE) {
                rc = refuse_sequence(e, t, obj.t, v);
            } else {
                rc = tdx_vcopy(e, &src, v);
            }
            if (rc == 0) {
                struct value args[2] = {vtensor(p.view), src};
                struct call c = {.args = args, .nargs = 2};
                struct value res;
                rc = tdx_call_op(e, t, src.k == V_TENSOR ? "copy" : "fill", true, &c, &res);
                if (rc == 0) {
                    tdx_vfree(e, &res);
                }
            }
            tdx_vfree(e, &src);
        }
        iparts_free(e, &p);
    }
    subs_free(e, subs, nsubs);
    tdx_vfree(e, &obj);
    return rc;
}

static int assign_to(struct tdx_env *e, const struct tdx_node *t, struct value *v);

/* The items `a, b = v` takes from v, as Python iterates it: a tuple's, list's or shape's items,
** a range's ints, a tensor's rows (views, x[i]). *out is a V_TUPLE. */
static int unpack_items(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                        struct value *out)
{
    int rc;
    if (v->k == V_TUPLE || v->k == V_LIST || v->k == V_SIZE) {
        if ((rc = tdx_vseq(e, out, V_TUPLE, v->n)) != 0) {
            return rc;
        }
        for (int i = 0; i < v->n; i++) {
            if ((rc = tdx_vcopy(e, &out->items[i], &v->items[i])) != 0) {
                tdx_vfree(e, out);
                return rc;
            }
        }
        return 0;
    }
    if (v->k == V_RANGE) {
        int64_t n = 0;
        for (int64_t i = v->i; v->step > 0 ? i < v->stop : i > v->stop; i += v->step) {
            if (++n > 1000000) {
                return tdx_fail(e, at, "too many values to unpack");
            }
        }
        if ((rc = tdx_vseq(e, out, V_TUPLE, (int)n)) != 0) {
            return rc;
        }
        for (int64_t k = 0; k < n; k++) {
            out->items[k] = vint(v->i + k * v->step);
        }
        return 0;
    }
    if (v->k == V_TENSOR) {
        if ((rc = tdx_known(e, v->t, at)) != 0) {
            return rc;
        }
        if (v->t->info.ndim == 0) {
            return tdx_fail(e, at, "iteration over a 0-d tensor");
        }
        int64_t n = v->t->info.shape[0];
        if (n > 1000000) {
            return tdx_fail(e, at, "too many values to unpack");
        }
        if ((rc = tdx_vseq(e, out, V_TUPLE, (int)n)) != 0) {
            return rc;
        }
        for (int64_t k = 0; k < n; k++) {
            struct value args[3] = {*v, vint(0), vint(k)};
            struct call c = {.args = args, .nargs = 3};
            if ((rc = tdx_call_op(e, at, "select", false, &c, &out->items[k])) != 0) {
                tdx_vfree(e, out);
                return rc;
            }
        }
        return 0;
    }
    return tdx_fail(e, at, "cannot unpack non-iterable %s object", tdx_type_name(v));
}

/* a, b = v: v's items, one per target, assigned left to right (Python's errors on counts); a
** starred target (`a, *rest = v`, at most one: the parser checks) takes the items the others
** leave, as a list. */
static int assign_unpack(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    struct value items;
    int star = -1;
    for (int i = 0; i < t->nkids; i++) {
        if (t->kids[i]->kind == TDX_UNARY && t->kids[i]->op == TDX_OP_STAR) {
            star = i;
        }
    }
    int rc = unpack_items(e, t, v, &items), fixed = t->nkids - (star >= 0);
    if (rc != 0) {
        return rc;
    }
    if (star < 0 ? items.n != t->nkids : items.n < fixed) {
        rc = star >= 0
                 ? tdx_fail(e, t, "not enough values to unpack (expected at least %d, got %d)",
                            fixed, items.n)
             : items.n > t->nkids
                 ? tdx_fail(e, t, "too many values to unpack (expected %d)", t->nkids)
                 : tdx_fail(e, t, "not enough values to unpack (expected %d, got %d)", t->nkids,
                            items.n);
        tdx_vfree(e, &items);
        return rc;
    }
    int rest = items.n - fixed, j = 0; /* j: the next item */
    for (int i = 0; i < t->nkids && rc == 0; i++) {
        if (i == star) {
            struct value l;
            if ((rc = tdx_vseq(e, &l, V_LIST, rest)) != 0) {
                break;
            }
            for (int k = 0; k < rest; k++, j++) {
                l.items[k] = items.items[j]; /* moved */
                items.items[j] = (struct value){.k = V_NONE};
            }
            rc = assign_to(e, t->kids[i]->kids[0], &l);
            continue;
        }
        rc = assign_to(e, t->kids[i], &items.items[j]); /* takes the item */
        items.items[j++] = (struct value){.k = V_NONE};
    }
    tdx_vfree(e, &items);
    return rc;
}

/* target = v; takes v. */
static int assign_to(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    int rc;
    if (t->kind == TDX_NAME) {
        return tdx_bind(e, t->str, v);
    }
    if (t->kind == TDX_TUPLE || t->kind == TDX_LIST) {
        rc = assign_unpack(e, t, v);
    } else {
        rc = t->kind == TDX_ATTR ? assign_attr(e, t, v) : assign_index(e, t, v);
    }
    tdx_vfree(e, v);
    return rc;
}

static int exec_block(struct tdx_env *e, const struct tdx_node *s, int first)
{
    int rc = 0;
    for (int i = first; i < s->nkids; i++) {
        if ((rc = exec(e, s->kids[i])) != 0) {
            return rc;
        }
        if ((rc = tdx_flush_dead(e)) != 0) {
            return rc;
        }
    }
    return rc;
}

/* x[key] op= y on a tensor, as Python runs it (x and key evaluated once): a basic key's view is
** updated in place; an advanced key's gathered copy is, then written back with index_put_. */
static int aug_index(struct tdx_env *e, const struct tdx_node *s, struct value *obj)
{
    const struct tdx_node *t = s->kids[0];
    struct value *subs, cur = {0}, rhs = {0}, res;
    int nsubs = t->nkids - 1, rc;
    struct iparts p;
    if ((rc = eval_subs(e, t, &subs)) != 0) {
        return rc;
    }
    if ((rc = index_parts(e, t, obj->t, subs, nsubs, &p)) != 0) {
        subs_free(e, subs, nsubs);
        return rc;
    }
    if (p.nidx > 0) {
        rc = gather(e, t, &p, &cur);
    } else {
        cur = vtensor(tdx_tref_ref(p.view));
    }
    if (rc == 0) {
        rc = eval(e, s->kids[1], &rhs);
    }
    if (rc == 0 && s->op == TDX_OP_MATMUL) {
        rc = tdx_fail(e, s, "in-place matmul (@=) is not supported");
    }
    if (rc == 0) {
        struct value args[2] = {cur, rhs};
        struct call c = {.args = args, .nargs = 2};
        if ((rc = tdx_call_op(e, s, INPLACE[s->op], true, &c, &res)) == 0) {
            tdx_vfree(e, &res);
        }
    }
    if (rc == 0 && p.nidx > 0) {
        rc = index_put(e, t, obj->t, &p, &cur);
    }
    tdx_vfree(e, &cur);
    tdx_vfree(e, &rhs);
    iparts_free(e, &p);
    subs_free(e, subs, nsubs);
    return rc;
}

/* x op= y: a tensor target is updated in place (Tensor.__iadd__); others rebind the name. */
static int exec_augassign(struct tdx_env *e, const struct tdx_node *s)
{
    int rc;
    const struct tdx_node *t = s->kids[0];
    struct value cur, rhs, res;
    if (t->kind == TDX_INDEX) {
        struct value obj;
        if ((rc = eval(e, t->kids[0], &obj)) != 0) {
            return rc;
        }
        if (obj.k == V_TENSOR) {
            rc = aug_index(e, s, &obj);
            tdx_vfree(e, &obj);
            return rc;
        }
        tdx_vfree(e, &obj);
    }
    if ((rc = eval(e, t, &cur)) != 0) {
        return rc;
    }
    if ((rc = eval(e, s->kids[1], &rhs)) != 0) {
        tdx_vfree(e, &cur);
        return rc;
    }
    if ((cur.k == V_TENSOR) != (rhs.k == V_TENSOR) &&
        (!is_num(cur.k == V_TENSOR ? &rhs : &cur) || s->op == TDX_OP_MATMUL)) {
        /* Python's TypeError, as binop's: the tensor's methods answer NotImplemented */
        rc = tdx_fail(e, s, "unsupported operand type(s) for %s=: '%s' and '%s'", OPSYM[s->op],
                      tdx_type_name(&cur), tdx_type_name(&rhs));
    } else if (cur.k == V_TENSOR && s->op != TDX_OP_MATMUL) {
        /* in place, like Tensor.__isub__ */
        struct value args[2] = {cur, rhs};
        struct call c = {.args = args, .nargs = 2};
        rc = tdx_call_op(e, s, INPLACE[s->op], true, &c, &res);
        if (rc == 0) {
            tdx_vfree(e, &res);
        }
    } else if ((rc = binop(e, s, s->op, &cur, &rhs, &res)) == 0) {
        if (t->kind == TDX_NAME) {
            rc = tdx_bind(e, t->str, &res);
        } else {
            tdx_vfree(e, &res);
            rc = tdx_fail(e, s, "augmented assignment to this target needs a tensor");
        }
    }
    tdx_vfree(e, &cur);
    tdx_vfree(e, &rhs);
    return rc;
}

/* with no_grad(): / with enable_grad(): the block runs in that grad mode. */
static int exec_with(struct tdx_env *e, const struct tdx_node *s)
{
    int rc;
    struct value v = {0};
    if ((rc = eval(e, s->kids[0], &v)) != 0) {
        return rc;
    }
    if (v.k != V_CTX) {
        rc = tdx_fail(e, s->kids[0],
                      "'%s' object does not support the context manager "
                      "protocol",
                      tdx_type_name(&v));
        tdx_vfree(e, &v);
        return rc;
    }
    bool prev = e->grad_enabled, want = v.dt != 0;
    if (want != prev && (rc = tdx_set_grad_mode(e, want, s)) != 0) {
        return rc;
    }
    rc = exec_block(e, s, 1);
    if (want != prev) {
        int rc2 = tdx_set_grad_mode(e, prev, s);
        rc = rc != 0 ? rc : rc2;
    }
    return rc;
}

/* for NAME in range(...) / a list, a tuple or a shape: the block runs once per item; with
** targets (`for a, b in pairs:`) each item is unpacked into them. */
static int exec_for(struct tdx_env *e, const struct tdx_node *s)
{
    int rc, first = s->op == 1 ? 2 : 1; /* the body's first kid */
    const struct tdx_node *iter = s->kids[first - 1];
    struct value it;
    if ((rc = eval(e, iter, &it)) != 0) {
        return rc;
    }
    if (it.k == V_RANGE) {
        for (int64_t i = it.i; rc == 0 && (it.step > 0 ? i < it.stop : i > it.stop); i += it.step) {
            struct value x = vint(i);
            if ((rc = s->op == 1 ? assign_to(e, s->kids[0], &x) : tdx_bind(e, s->str, &x)) == 0) {
                rc = exec_block(e, s, first);
            }
        }
    } else if (it.k == V_LIST || it.k == V_TUPLE || it.k == V_SIZE) {
        for (int i = 0; rc == 0 && i < it.n; i++) {
            struct value x;
            if ((rc = tdx_vcopy(e, &x, &it.items[i])) == 0 &&
                (rc = s->op == 1 ? assign_to(e, s->kids[0], &x) : tdx_bind(e, s->str, &x)) == 0) {
                rc = exec_block(e, s, first);
            }
        }
    } else {
        rc = tdx_fail(e, iter, "'%s' object is not iterable", tdx_type_name(&it));
    }
    tdx_vfree(e, &it);
    return rc;
}

static int exec(struct tdx_env *e, const struct tdx_node *s)
{
    struct value v = {0};
    int rc;
    switch (s->kind) {
    case TDX_PASS: return 0;
    case TDX_IMPORT: return exec_import(e, s);
    case TDX_EXPR:
        if ((rc = eval(e, s->kids[0], &v)) == 0) {
            rc = tdx_show(e, s->kids[0], &v);
        }
        tdx_vfree(e, &v);
        return rc;
    case TDX_ASSIGN: {
        const struct tdx_node *t = s->kids[0];
        if ((rc = eval(e, s->kids[1], &v)) != 0) {
            return rc;
        }
        return assign_to(e, t, &v);
    }
    case TDX_AUGASSIGN: return exec_augassign(e, s);
    case TDX_DEL:
        for (int i = 0; i < s->nkids; i++) {
            const struct tdx_node *t = s->kids[i];
            struct var *x;
            if (t->kind != TDX_NAME) {
                return tdx_fail(e, t, "only names can be deleted");
            }
            if ((x = tdx_lookup(e, t->str)) == NULL) {
                return tdx_fail(e, t, "name '%s' is not defined", t->str);
            }
            tdx_unbind(e, x);
        }
        return 0;
    case TDX_WITH: return exec_with(e, s);
    case TDX_FOR: return exec_for(e, s);
    default: return tdx_fail(e, s, "invalid statement");
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int tdx_run(struct tdx_env *e, const struct tdx_prog *prog, const char *file)
{
    int status = TDX_OK;
    e->file = file;
    e->failed = false;
    for (int i = 0; i < prog->n; i++) {
        double t0 = now_ms();
        int rc = exec(e, prog->stmts[i]);
        if (rc == 0) {
            rc = tdx_flush_dead(e);
        }
        if (rc == TDX_ERROR && e->has_err) {
            /* An earlier request's failure happened first: it is the one to report. */
            int src = tdx_sync(e);
            /* With --keep-going the earlier failure has been reported (now or when the
            ** statement waited); this statement's own error is said too unless it only
            ** echoes that one ("input 4 failed: ..."). */
            bool echo = strncmp(e->err_msg, "input ", 6) == 0 &&
                        strstr(e->err_msg, " failed: ") != NULL;
            if (!(e->cfg.keep_going && echo) &&
                (src == 0 || (src == TDX_ERROR && e->cfg.keep_going))) {
                tdx_report(e, e->err_line, e->err_col, e->err_msg);
            }
            e->has_err = false;
            rc = src == TDX_FATAL ? TDX_FATAL : TDX_ERROR;
        }
        if (rc == 0 && e->timing) {
            rc = tdx_sync(e);
            fprintf(e->cfg.err, "(%.3f ms)\n", now_ms() - t0);
        }
        if (rc == TDX_FATAL || e->broken) {
            return TDX_FATAL;
        }
        if (rc != 0) {
            status = TDX_ERROR;
            if (!e->cfg.keep_going) {
                break;
            }
        }
    }
    int rc = tdx_flush_dead(e);
    if (rc == 0) {
        rc = tdx_sync(e);
    }
    if (rc == TDX_FATAL || e->broken) {
        return TDX_FATAL;
    }
    return rc != 0 || e->failed ? TDX_ERROR : status;
}

/* ---- the environment ---- */

struct tdx_env *tdx_env_new(struct tensord *c, const struct tdx_config *cfg)
{
    struct tdx_env *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return NULL;
    }
    e->c = c;
    e->cfg = *cfg;
    e->grad_enabled = true;
    return e;
}

void tdx_env_free(struct tdx_env *e)
{
    if (e == NULL) {
        return;
    }
    for (int i = 0; i < e->nvars; i++) {
        tdx_vfree(e, &e->vars[i].v);
        free(e->vars[i].name);
    }
    for (size_t i = 0; i < e->npend; i++) {
        tdx_tref_unref(e, e->pend[i].t);
    }
    /* Handles stay on the server with the session, which can be resumed. */
    free(e->vars);
    free(e->pend);
    free(e->dead);
    free(e->fmt);
    free(e);
}

bool tdx_timing(const struct tdx_env *e)
{
    return e->timing;
}

unsigned long tdx_waits(const struct tdx_env *e)
{
    return e->waits;
}
