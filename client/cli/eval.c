/* eval.c — evaluating tensorctl: expressions (names, literals, Python arithmetic, indexing,
** calls, f-strings) and statements (assignment, augmented assignment, del, for, with,
** import), the run of a program, and the environment's life.
*/
#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Python arithmetic ---- */

static const char *const OPSYM[] = {
    [TDX_OP_ADD] = "+",       [TDX_OP_SUB] = "-", [TDX_OP_MUL] = "*",  [TDX_OP_DIV] = "/",
    [TDX_OP_FLOORDIV] = "//", [TDX_OP_MOD] = "%", [TDX_OP_POW] = "**", [TDX_OP_MATMUL] = "@",
    [TDX_OP_LT] = "<",        [TDX_OP_LE] = "<=", [TDX_OP_GT] = ">",   [TDX_OP_GE] = ">=",
    [TDX_OP_EQ] = "==",       [TDX_OP_NE] = "!=", [TDX_OP_AND] = "&",  [TDX_OP_OR] = "|",
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
        if (other->k != V_TENSOR && !is_num(other)) {
            if (op == TDX_OP_EQ || op == TDX_OP_NE) {
                *out = vbool(op == TDX_OP_NE);
                return 0;
            }
            return tdx_fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                            tdx_type_name(a), tdx_type_name(b));
        }
        struct value args[2] = {*a, *b};
        struct call c = {.args = args, .nargs = 2};
        return tdx_call_op(e, at, OPFN[op], false, &c, out);
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

/* x[...] on a tensor: ints select, slices slice, None adds a dim, ... stands for the rest. */
static int index_tensor(struct tdx_env *e, const struct tdx_node *n, struct tref *t,
                        struct value *subs, int nsubs, struct value *out)
{
    int rc, d = 0, fill = -1;
    struct value cur = vtensor(tdx_tref_ref(t));
    for (int k = 0; k < nsubs; k++) {
        struct value *s = &subs[k];
        struct value res = {0};
        struct tensord_op_args a;
        memset(&a, 0, sizeof a);
        const char *op = NULL;
        if (s->k == V_STR && s->s != NULL && strcmp(s->s, "...") == 0) {
            if (fill >= 0) {
                tdx_vfree(e, &cur);
                return tdx_fail(e, n, "an index can only have a single ellipsis ('...')");
            }
            if ((rc = tdx_known(e, t, n)) != 0) {
                tdx_vfree(e, &cur);
                return rc;
            }
            int used = 0;
            for (int j = 0; j < nsubs; j++) {
                used += subs[j].k != V_NONE && !(subs[j].k == V_STR);
            }
            fill = t->info.ndim - used;
            d += fill > 0 ? fill : 0;
            continue;
        }
        if (s->k == V_INT || s->k == V_BOOL) {
            op = "select";
            a.dim = d;
            a.has_dim = true;
            a.start = num_i(s);
        } else if (s->k == V_TUPLE && s->dt == 1) {
            /* a slice, carried as (start, stop, step) with None for missing */
            op = "slice";
            a.dim = d;
            a.has_dim = true;
            a.start = s->items[0].k == V_NONE ? 0 : num_i(&s->items[0]);
            a.end = s->items[1].k == V_NONE ? INT64_MAX : num_i(&s->items[1]);
            a.step = s->items[2].k == V_NONE ? 1 : num_i(&s->items[2]);
            d++;
        } else if (s->k == V_NONE) {
            op = "unsqueeze";
            a.dim = d;
            a.has_dim = true;
            d++;
        } else {
            tdx_vfree(e, &cur);
            return tdx_fail(e, n,
                            "only integers, slices (`:`), ellipsis (`...`) and None are "
                            "valid indices (got %s)",
                            tdx_type_name(s));
        }
        struct tref *r = tdx_tref_new(e);
        struct tensord_operand in = tensord_h(cur.t->handle);
        struct tensord_error err;
        uint64_t id;
        if (r == NULL) {
            tdx_vfree(e, &cur);
            return tdx_fail(e, n, "out of memory");
        }
        int lrc = tensord_send_op_ex(e->c, op, r->handle, &in, 1, &a, false, &id, &err);
        if ((rc = tdx_send_tensor_result(e, lrc, id, r, n, &err)) != 0) {
            tdx_tref_unref(e, r);
            tdx_vfree(e, &cur);
            return rc;
        }
        r->requires_grad = cur.t->requires_grad && e->grad_enabled;
        r->is_leaf = !r->requires_grad;
        res = vtensor(r);
        tdx_vfree(e, &cur);
        cur = res;
    }
    *out = cur;
    return 0;
}

static int eval_index(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    struct value obj;
    int rc = eval(e, n->kids[0], &obj);
    if (rc != 0) {
        return rc;
    }
    int nsubs = n->nkids - 1;
    struct value *subs = calloc((size_t)nsubs, sizeof *subs);
    if (subs == NULL) {
        tdx_vfree(e, &obj);
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
            rc = tdx_vstr(e, &subs[done], "...", 3);
        } else {
            rc = eval(e, s, &subs[done]);
        }
    }
    if (rc == 0) {
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
                    rc = tdx_fail(e, n, "%s index out of range",
                                  obj.k == V_LIST ? "list" : "tuple");
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
    }
    for (int k = 0; k < nsubs; k++) {
        tdx_vfree(e, &subs[k]);
    }
    free(subs);
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
        if (a.k == V_TENSOR) {
            struct call c = {.args = &a, .nargs = 1};
            rc = tdx_call_op(e, n, "bitwise_not", false, &c, out);
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

/* x[...] = v: a view, then copy_ (tensor) or fill_ (number) into it. */
static int assign_index(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    struct value view;
    int rc = eval(e, t, &view);
    if (rc != 0) {
        return rc;
    }
    if (view.k != V_TENSOR) {
        tdx_vfree(e, &view);
        return tdx_fail(e, t, "item assignment is supported on tensors only");
    }
    struct value args[2] = {view, *v};
    struct call c = {.args = args, .nargs = 2};
    struct value res;
    rc = tdx_call_op(e, t, v->k == V_TENSOR ? "copy" : "fill", true, &c, &res);
    if (rc == 0) {
        tdx_vfree(e, &res);
    }
    tdx_vfree(e, &view);
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

/* a, b = v: v's items, one per target, assigned left to right (Python's errors on counts). */
static int assign_unpack(struct tdx_env *e, const struct tdx_node *t, struct value *v)
{
    struct value items;
    int rc = unpack_items(e, t, v, &items);
    if (rc != 0) {
        return rc;
    }
    if (items.n != t->nkids) {
        rc = items.n > t->nkids
                 ? tdx_fail(e, t, "too many values to unpack (expected %d)", t->nkids)
                 : tdx_fail(e, t, "not enough values to unpack (expected %d, got %d)", t->nkids,
                            items.n);
        tdx_vfree(e, &items);
        return rc;
    }
    for (int i = 0; i < items.n && rc == 0; i++) {
        rc = assign_to(e, t->kids[i], &items.items[i]); /* takes the item */
        items.items[i] = (struct value){.k = V_NONE};
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

/* x op= y: a tensor target is updated in place (Tensor.__iadd__); others rebind the name. */
static int exec_augassign(struct tdx_env *e, const struct tdx_node *s)
{
    int rc;
    const struct tdx_node *t = s->kids[0];
    struct value cur, rhs, res;
    if ((rc = eval(e, t, &cur)) != 0) {
        return rc;
    }
    if ((rc = eval(e, s->kids[1], &rhs)) != 0) {
        tdx_vfree(e, &cur);
        return rc;
    }
    if (cur.k == V_TENSOR && s->op != TDX_OP_MATMUL) {
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

/* for NAME in range(...) / a list, a tuple or a shape: the block runs once per item. */
static int exec_for(struct tdx_env *e, const struct tdx_node *s)
{
    int rc;
    struct value it;
    if ((rc = eval(e, s->kids[0], &it)) != 0) {
        return rc;
    }
    if (it.k == V_RANGE) {
        for (int64_t i = it.i; rc == 0 && (it.step > 0 ? i < it.stop : i > it.stop); i += it.step) {
            struct value x = vint(i);
            if ((rc = tdx_bind(e, s->str, &x)) == 0) {
                rc = exec_block(e, s, 1);
            }
        }
    } else if (it.k == V_LIST || it.k == V_TUPLE || it.k == V_SIZE) {
        for (int i = 0; rc == 0 && i < it.n; i++) {
            struct value x;
            if ((rc = tdx_vcopy(e, &x, &it.items[i])) == 0 && (rc = tdx_bind(e, s->str, &x)) == 0) {
                rc = exec_block(e, s, 1);
            }
        }
    } else {
        rc = tdx_fail(e, s->kids[0], "'%s' object is not iterable", tdx_type_name(&it));
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
