/* builtins.c — the functions a name calls without a receiver: torch's creation functions
** (tensor, zeros, arange ...), grad mode, torch.Generator and its methods, chunk/split/unbind
** (tuples of views), Python's builtins (print, len, range, int ...), torch's module attributes
** after `import torch`, and the names offered for completion. A name that is none of these and
** is an op goes to ops.c.
*/
#include "interp.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "format.h"

static const char *const DTYPES[][2] = {
    {"float32", "1"}, {"float", "1"}, {"float64", "2"}, {"double", "2"},
    {"int32", "3"},   {"int64", "4"}, {"long", "4"},    {"bool_", "5"},
};

static bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- tensor(data): nested lists of numbers ---- */

struct flat {
    int64_t shape[TENSORD_MAX_DIMS];
    int ndim;
    bool any_float, all_bool, any;
    double *f;
    int64_t *i;
    size_t n, cap;
};

static int flatten_data(struct tdx_env *e, const struct value *v, int depth, struct flat *fl,
                        const struct tdx_node *at)
{
    if (v->k == V_LIST || v->k == V_TUPLE || v->k == V_SIZE) {
        if (depth >= TENSORD_MAX_DIMS) {
            return tdx_fail(e, at, "too many dimensions");
        }
        if (depth >= fl->ndim) {
            if (fl->any) {
                return tdx_fail(e, at, "expected a number at dim %d, got a sequence", depth);
            }
            fl->ndim = depth + 1;
            fl->shape[depth] = v->n;
        } else if (fl->shape[depth] != v->n) {
            return tdx_fail(e, at, "expected sequence of length %" PRId64 " at dim %d (got %d)",
                            fl->shape[depth], depth, v->n);
        }
        for (int i = 0; i < v->n; i++) {
            int rc = flatten_data(e, &v->items[i], depth + 1, fl, at);
            if (rc != 0) {
                return rc;
            }
        }
        return 0;
    }
    if (v->k == V_TENSOR) {
        return tdx_fail(e, at, "tensor(): lists of tensors are not supported; use stack()");
    }
    if (!is_num(v)) {
        return tdx_fail(e, at, "Could not infer dtype of %s", tdx_type_name(v));
    }
    if (depth != fl->ndim) {
        return tdx_fail(e, at, "expected sequence of length %" PRId64 " at dim %d (got a number)",
                        fl->shape[depth], depth);
    }
    if (fl->n == fl->cap) {
        size_t ncap = fl->cap ? fl->cap * 2 : 16;
        double *nf = realloc(fl->f, ncap * sizeof *nf);
        if (nf != NULL) {
            fl->f = nf;
        }
        int64_t *ni = nf != NULL ? realloc(fl->i, ncap * sizeof *ni) : NULL;
        if (ni == NULL) {
            return tdx_fail(e, at, "out of memory");
        }
        fl->i = ni;
        fl->cap = ncap;
    }
    fl->f[fl->n] = num_f(v);
    fl->i[fl->n] = num_i(v);
    fl->n++;
    fl->any = true;
    fl->any_float |= v->k == V_FLOAT;
    fl->all_bool &= v->k == V_BOOL;
    return 0;
}

int tdx_make_tensor(struct tdx_env *e, const struct value *data, int dt, bool requires_grad,
                    const struct tdx_node *at, struct value *out)
{
    struct flat fl = {.all_bool = true};
    int rc = flatten_data(e, data, 0, &fl, at);
    if (rc != 0) {
        goto done;
    }
    if (dt == 0) {
        dt = !fl.any        ? TENSORD_FLOAT32
             : fl.any_float ? TENSORD_FLOAT32
             : fl.all_bool  ? TENSORD_BOOL
                            : TENSORD_INT64;
    }
    size_t es = tensord_dtype_size((enum tensord_dtype)dt);
    uint8_t *bytes = malloc(fl.n * es + 1);
    if (bytes == NULL) {
        rc = tdx_fail(e, at, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < fl.n; k++) {
        switch (dt) {
        case TENSORD_FLOAT32: {
            float f = (float)fl.f[k];
            memcpy(bytes + k * 4, &f, 4);
            break;
        }
        case TENSORD_FLOAT64: memcpy(bytes + k * 8, &fl.f[k], 8); break;
        case TENSORD_INT32: {
            int32_t v = (int32_t)fl.i[k];
            memcpy(bytes + k * 4, &v, 4);
            break;
        }
        case TENSORD_INT64: memcpy(bytes + k * 8, &fl.i[k], 8); break;
        default: bytes[k] = fl.f[k] != 0; break;
        }
    }
    struct tref *t = tdx_tref_new(e);
    struct tensord_error err;
    uint64_t id;
    if (t == NULL) {
        free(bytes);
        rc = tdx_fail(e, at, "out of memory");
        goto done;
    }
    /* Small data is copied into the queue; larger is written at the next flush, so flush
    ** now while `bytes` is alive. */
    int lrc = tensord_send_create(e->c, t->handle, (enum tensord_dtype)dt, fl.shape, fl.ndim, bytes,
                                  fl.n * es, &id, &err);
    if (lrc == 0 && fl.n * es > 64 * 1024) {
        lrc = tensord_flush(e->c, &err);
    }
    free(bytes);
    rc = tdx_send_tensor_result(e, lrc, id, t, at, &err);
    if (rc == 0 && requires_grad) {
        if (tensord_send_set_grad(e->c, t->handle, true, false, false, &id, &err) != 0) {
            rc = tdx_lib_fail(e, at, &err);
        } else {
            rc = tdx_pend_add(e, id, P_PLAIN, NULL, at);
            t->requires_grad = true;
        }
    }
    if (rc != 0) {
        tdx_tref_unref(e, t);
        goto done;
    }
    *out = vtensor(t);
done:
    free(fl.f);
    free(fl.i);
    return rc;
}

static int kw_dtype_gen(struct tdx_env *e, const struct tdx_node *at, const struct call *c, int *dt,
                        bool *requires_grad, const char *fn, uint64_t *gen)
{
    int rc;
    *dt = 0;
    *requires_grad = false;
    for (int k = 0; k < c->nkw; k++) {
        if (gen != NULL && strcmp(c->kwn[k], "generator") == 0) {
            if ((rc = tdx_generator_arg(e, at, fn, &c->kwv[k], gen)) != 0) {
                return rc;
            }
        } else if (strcmp(c->kwn[k], "dtype") == 0) {
            if ((rc = tdx_parse_dtype_value(e, &c->kwv[k], at, dt)) != 0) {
                return rc;
            }
        } else if (strcmp(c->kwn[k], "requires_grad") == 0) {
            bool b;
            if ((rc = tdx_truth(e, at, &c->kwv[k], &b)) != 0) {
                return rc;
            }
            *requires_grad = b;
        } else {
            return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", fn, c->kwn[k]);
        }
    }
    return 0;
}

static int kw_dtype(struct tdx_env *e, const struct tdx_node *at, const struct call *c, int *dt,
                    bool *requires_grad, const char *fn)
{
    return kw_dtype_gen(e, at, c, dt, requires_grad, fn, NULL);
}

static int after_create(struct tdx_env *e, const struct tdx_node *at, int lrc, uint64_t id,
                        struct tref *t, bool requires_grad, const struct tensord_error *err,
                        struct value *out)
{
    int rc = tdx_send_tensor_result(e, lrc, id, t, at, err);
    if (rc == 0 && requires_grad) {
        struct tensord_error err2;
        rc = tdx_plain(e, tensord_send_set_grad(e->c, t->handle, true, false, false, &id, &err2),
                       &id, at, &err2);
        t->requires_grad = true;
    }
    if (rc != 0) {
        tdx_tref_unref(e, t);
        return rc;
    }
    *out = vtensor(t);
    return 0;
}

/* Python's round(x[, ndigits]): correctly rounded (round(2.675, 2) is 2.67, as the double
** 2.675 lies below 2.675), half to even; an int stays an int. */
static int py_round(struct tdx_env *e, const struct tdx_node *at, const struct call *c,
                    struct value *out)
{
    const struct value *x = &c->args[0];
    bool has_nd = c->nargs == 2 && c->args[1].k != V_NONE;
    if (has_nd && c->args[1].k != V_INT && c->args[1].k != V_BOOL) {
        return tdx_fail(e, at, "'%s' object cannot be interpreted as an integer",
                        tdx_type_name(&c->args[1]));
    }
    int64_t nd = has_nd ? num_i(&c->args[1]) : 0;
    if (x->k != V_FLOAT) {
        int64_t r;
        if (tdx_round_int(num_i(x), nd, &r) != 0) {
            return tdx_fail(e, at, "integer overflow in round() (tensorctl's ints are 64-bit)");
        }
        *out = vint(r);
        return 0;
    }
    if (has_nd) {
        *out = vfloat(tdx_round_float(x->f, nd));
        return 0;
    }
    if (isnan(x->f)) {
        return tdx_fail(e, at, "cannot convert float NaN to integer");
    }
    if (isinf(x->f)) {
        return tdx_fail(e, at, "cannot convert float infinity to integer");
    }
    double r = nearbyint(x->f); /* half to even in the default rounding mode, as Python */
    if (r >= 9223372036854775808.0 || r < -9223372036854775808.0) {
        return tdx_fail(e, at, "integer overflow in round() (tensorctl's ints are 64-bit)");
    }
    *out = vint((int64_t)r);
    return 0;
}

/* a > b (or a < b with `less`) for Python numbers or strings; -1 with an error for others. */
static int py_order(struct tdx_env *e, const struct tdx_node *at, const struct value *a,
                    const struct value *b, bool less, bool *res)
{
    if (is_num(a) && is_num(b)) {
        if (a->k != V_FLOAT && b->k != V_FLOAT) {
            *res = less ? num_i(a) < num_i(b) : num_i(a) > num_i(b);
        } else {
            *res = less ? num_f(a) < num_f(b) : num_f(a) > num_f(b);
        }
        return 0;
    }
    if (a->k == V_STR && b->k == V_STR) {
        size_t n = (size_t)(a->i < b->i ? a->i : b->i);
        int c = memcmp(a->s, b->s, n);
        if (c == 0) {
            c = a->i < b->i ? -1 : a->i > b->i;
        }
        *res = less ? c < 0 : c > 0;
        return 0;
    }
    return tdx_fail(e, at, "'%s' not supported between instances of '%s' and '%s'",
                    less ? "<" : ">", tdx_type_name(a), tdx_type_name(b));
}

/* Python's max/min over an iterable or over several arguments: the first largest (smallest). */
static int py_max_min(struct tdx_env *e, const struct tdx_node *at, const char *name,
                      const struct call *c, struct value *out)
{
    bool less = name[1] == 'i';
    const struct value *items = c->args;
    int n = c->nargs;
    if (n == 1 && c->args[0].k == V_RANGE) {
        const struct value *r = &c->args[0];
        if (r->step > 0 ? r->i >= r->stop : r->i <= r->stop) {
            return tdx_fail(e, at, "%s() iterable argument is empty", name);
        }
        int64_t count = r->step > 0 ? (r->stop - r->i + r->step - 1) / r->step
                                    : (r->i - r->stop - r->step - 1) / -r->step;
        int64_t last = r->i + (count - 1) * r->step;
        *out = vint((r->step > 0) == less ? r->i : last);
        return 0;
    }
    if (n == 1) {
        items = c->args[0].items;
        n = c->args[0].n;
        if (n == 0) {
            return tdx_fail(e, at, "%s() iterable argument is empty", name);
        }
    }
    const struct value *best = &items[0];
    for (int i = 1; i < n; i++) {
        bool better = false;
        if (py_order(e, at, &items[i], best, less, &better) != 0) {
            return TDX_ERROR;
        }
        if (better) {
            best = &items[i];
        }
    }
    return tdx_vcopy(e, out, best);
}

/* ---- builtins, one handler each; `name` is the name called (some handlers serve several) ---- */

typedef int (*builtin_fn)(struct tdx_env *e, const struct tdx_node *at, const char *name,
                          const struct call *c, struct value *out);

static int bi_print(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    return tdx_print_values(e, at, c);
}

/* tensor(data), from_numpy(data) */
static int bi_tensor(struct tdx_env *e, const struct tdx_node *at, const char *name,
                     const struct call *c, struct value *out)
{
    int rc, dt;
    bool rg;
    if (c->nargs != 1) {
        return tdx_fail(e, at, "tensor() takes 1 positional argument but %d were given", c->nargs);
    }
    if ((rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0) {
        return rc;
    }
    return tdx_make_tensor(e, &c->args[0], dt, rg, at, out);
}

/* zeros, ones, rand, randn (size) and full(size, fill_value) */
static int bi_create(struct tdx_env *e, const struct tdx_node *at, const char *name,
                     const struct call *c, struct value *out)
{
    int rc, dt;
    bool rg;
    struct tensord_error err;
    uint64_t id;
    int64_t shape[TENSORD_MAX_DIMS];
    int nd, nshape = c->nargs;
    bool full = name[0] == 'f';
    if (full && c->nargs != 2) {
        return tdx_fail(e, at, "full() needs a size and a fill_value");
    }
    nshape -= full;
    uint64_t gen = 0;
    if ((rc = kw_dtype_gen(e, at, c, &dt, &rg, name, name[0] == 'r' ? &gen : NULL)) != 0 ||
        (rc = tdx_get_shape(e, c->args, nshape, at, shape, &nd)) != 0) {
        return rc;
    }
    struct tref *t = tdx_tref_new(e);
    if (t == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    int lrc;
    if (name[0] == 'r') {
        lrc = tensord_send_rand_gen(e->c, t->handle, (enum tensord_dtype)dt, shape, nd,
                                    name[4] == 'n', gen, &id, &err);
    } else {
        struct tensord_operand v;
        if (full && (rc = tdx_to_operand(e, &c->args[1], at, name, &v)) != 0) {
            tdx_tref_unref(e, t);
            return rc;
        }
        if (!full) {
            v = tensord_f(name[0] == 'o' ? 1.0 : 0.0);
            dt = dt != 0 ? dt : TENSORD_FLOAT32;
        }
        lrc = tensord_send_full(e->c, t->handle, (enum tensord_dtype)dt, shape, nd, v, &id, &err);
    }
    return after_create(e, at, lrc, id, t, rg, &err, out);
}

static int bi_arange(struct tdx_env *e, const struct tdx_node *at, const char *name,
                     const struct call *c, struct value *out)
{
    int rc, dt;
    bool rg;
    struct tensord_error err;
    uint64_t id;
    struct tensord_operand b[3] = {tensord_i(0), tensord_i(0), tensord_i(1)};
    if (c->nargs < 1 || c->nargs > 3) {
        return tdx_fail(e, at, "arange() takes 1 to 3 positional arguments");
    }
    if ((rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0) {
        return rc;
    }
    for (int i = 0; i < c->nargs; i++) {
        if (!is_num(&c->args[i])) {
            return tdx_fail(e, at, "arange(): argument must be a number, not %s",
                            tdx_type_name(&c->args[i]));
        }
        if ((rc = tdx_to_operand(e, &c->args[i], at, name, &b[c->nargs == 1 ? 1 : i])) != 0) {
            return rc;
        }
    }
    struct tref *t = tdx_tref_new(e);
    if (t == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    int lrc = tensord_send_arange(e->c, t->handle, (enum tensord_dtype)dt, b[0], b[1], b[2], &id,
                                  &err);
    return after_create(e, at, lrc, id, t, rg, &err, out);
}

static int bi_manual_seed(struct tdx_env *e, const struct tdx_node *at, const char *name,
                          const struct call *c, struct value *out)
{
    struct tensord_error err;
    uint64_t id;
    if (c->nargs != 1 || c->args[0].k != V_INT) {
        return tdx_fail(e, at, "manual_seed() takes one int");
    }
    return tdx_plain(e, tensord_send_manual_seed(e->c, (uint64_t)c->args[0].i, &id, &err), &id, at,
                     &err);
}

/* no_grad(), enable_grad(): context managers for `with` */
static int bi_grad_ctx(struct tdx_env *e, const struct tdx_node *at, const char *name,
                       const struct call *c, struct value *out)
{
    *out = (struct value){.k = V_CTX, .dt = name[0] == 'e'};
    return 0;
}

static int bi_set_grad_enabled(struct tdx_env *e, const struct tdx_node *at, const char *name,
                               const struct call *c, struct value *out)
{
    bool b;
    int rc = 0;
    if (c->nargs != 1 || (rc = tdx_truth(e, at, &c->args[0], &b)) != 0) {
        return c->nargs != 1 ? tdx_fail(e, at, "set_grad_enabled() takes one argument") : rc;
    }
    return tdx_set_grad_mode(e, b, at);
}

static int bi_is_grad_enabled(struct tdx_env *e, const struct tdx_node *at, const char *name,
                              const struct call *c, struct value *out)
{
    *out = vbool(e->grad_enabled);
    return 0;
}

/* randint(high, size) or randint(low, high, size): torch's overloads, which one signature in
** ops.def cannot say */
static int bi_randint(struct tdx_env *e, const struct tdx_node *at, const char *name,
                      const struct call *c, struct value *out)
{
    int rc, dt;
    bool rg, w2;
    struct tensord_error err;
    uint64_t id;
    struct value args[3];
    if (c->nargs < 2 || c->nargs > 3) {
        return tdx_fail(e, at, "randint() takes (low, high, size) or (high, size)");
    }
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    memcpy(args, c->args, (size_t)c->nargs * sizeof *args);
    if (c->nargs == 3 && (rc = tdx_set_arg(e, name, "min", &args[0], at, &a, &w2, NULL)) != 0) {
        return rc;
    }
    if ((rc = tdx_set_arg(e, name, "max", &args[c->nargs - 2], at, &a, &w2, NULL)) != 0 ||
        (rc = tdx_set_arg(e, name, "*dims", &args[c->nargs - 1], at, &a, &w2, NULL)) != 0 ||
        (rc = kw_dtype_gen(e, at, c, &dt, &rg, name, &a.generator)) != 0) {
        return rc;
    }
    a.dtype = (enum tensord_dtype)dt;
    struct tref *t = tdx_tref_new(e);
    if (t == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    int lrc = tensord_send_op_ex(e->c, name, t->handle, NULL, 0, &a, false, &id, &err);
    return after_create(e, at, lrc, id, t, false, &err, out);
}

static int bi_len(struct tdx_env *e, const struct tdx_node *at, const char *name,
                  const struct call *c, struct value *out)
{
    int rc;
    if (c->nargs != 1) {
        return tdx_fail(e, at, "len() takes exactly one argument (%d given)", c->nargs);
    }
    const struct value *v = &c->args[0];
    if (v->k == V_LIST || v->k == V_TUPLE || v->k == V_SIZE) {
        *out = vint(v->n);
    } else if (v->k == V_STR) {
        *out = vint(v->i);
    } else if (v->k == V_RANGE) {
        int64_t n = v->step > 0 ? (v->stop - v->i + v->step - 1) / v->step
                                : (v->i - v->stop - v->step - 1) / -v->step;
        *out = vint(n > 0 ? n : 0);
    } else if (v->k == V_TENSOR) {
        if ((rc = tdx_known(e, v->t, at)) != 0) {
            return rc;
        }
        if (v->t->info.ndim == 0) {
            return tdx_fail(e, at, "len() of a 0-d tensor");
        }
        *out = vint(v->t->info.shape[0]);
    } else {
        return tdx_fail(e, at, "object of type '%s' has no len()", tdx_type_name(v));
    }
    return 0;
}

static int bi_range(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    int64_t r[3] = {0, 0, 1};
    if (c->nargs < 1 || c->nargs > 3) {
        return tdx_fail(e, at, "range expected at most 3 arguments, got %d", c->nargs);
    }
    for (int i = 0; i < c->nargs; i++) {
        if (c->args[i].k != V_INT && c->args[i].k != V_BOOL) {
            return tdx_fail(e, at, "'%s' object cannot be interpreted as an integer",
                            tdx_type_name(&c->args[i]));
        }
        r[c->nargs == 1 ? 1 : i] = num_i(&c->args[i]);
    }
    if (r[2] == 0) {
        return tdx_fail(e, at, "range() arg 3 must not be zero");
    }
    *out = (struct value){.k = V_RANGE, .i = r[0], .stop = r[1], .step = r[2]};
    return 0;
}

/* float(x), int(x), bool(x), str(x) */
static int bi_convert(struct tdx_env *e, const struct tdx_node *at, const char *name,
                      const struct call *c, struct value *out)
{
    int rc;
    struct value x = c->nargs > 0 ? c->args[0] : vint(0);
    struct value tmp = {0};
    if (c->nargs > 1) {
        return tdx_fail(e, at, "%s() takes at most 1 argument", name);
    }
    if (name[0] == 's') {
        struct td_strbuf b;
        td_strbuf_init(&b, 0);
        if ((rc = tdx_vtext(e, &x, true, at, &b)) == 0) {
            rc = tdx_vstr(e, out, td_strbuf_str(&b), b.len);
        }
        td_strbuf_free(&b);
        return rc;
    }
    if (x.k == V_TENSOR) {
        if ((rc = tdx_item(e, x.t, at, &tmp)) != 0) {
            return rc;
        }
        x = tmp;
    }
    if (x.k == V_STR && name[0] != 'b') {
        char *endp;
        errno = 0;
        double d = strtod(x.s, &endp);
        if (endp == x.s || *endp != '\0') {
            return tdx_fail(e, at, "could not convert string to %s: '%s'", name, x.s);
        }
        x = vfloat(d);
    }
    if (name[0] == 'b') {
        bool b;
        if ((rc = tdx_truth(e, at, &x, &b)) != 0) {
            return rc;
        }
        *out = vbool(b);
        return 0;
    }
    if (!is_num(&x)) {
        return tdx_fail(e, at, "%s() argument must be a string or a number, not '%s'", name,
                        tdx_type_name(&x));
    }
    if (name[0] == 'f') {
        *out = vfloat(num_f(&x));
    } else if (x.k == V_FLOAT && (isnan(x.f) || isinf(x.f))) {
        return tdx_fail(e, at, "cannot convert float %s to integer",
                        isnan(x.f) ? "NaN" : "infinity");
    } else {
        *out = vint(num_i(&x));
    }
    return 0;
}

/* Python's abs of a number; of a tensor, the op */
static int bi_abs(struct tdx_env *e, const struct tdx_node *at, const char *name,
                  const struct call *c, struct value *out)
{
    if (c->nargs != 1 || !is_num(&c->args[0])) {
        return tdx_call_op(e, at, name, false, c, out);
    }
    const struct value *x = &c->args[0];
    if (x->k == V_FLOAT) {
        *out = vfloat(fabs(x->f));
    } else if (num_i(x) == INT64_MIN) {
        return tdx_fail(e, at, "integer overflow in abs() (tensorctl's ints are 64-bit)");
    } else {
        *out = vint(llabs(num_i(x)));
    }
    return 0;
}

/* Python's round of a number; of a tensor, the op */
static int bi_round(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    if (c->nargs >= 1 && c->nargs <= 2 && is_num(&c->args[0])) {
        return py_round(e, at, c, out);
    }
    return tdx_call_op(e, at, name, false, c, out);
}

/* Python's max/min over numbers; torch's max(x, y) is maximum, max(x[, dim]) the reduction */
static int bi_max_min(struct tdx_env *e, const struct tdx_node *at, const char *name,
                      const struct call *c, struct value *out)
{
    if ((c->nargs == 1 && (c->args[0].k == V_LIST || c->args[0].k == V_TUPLE ||
                           c->args[0].k == V_SIZE || c->args[0].k == V_RANGE)) ||
        (c->nargs >= 2 && c->args[0].k != V_TENSOR && c->args[1].k != V_TENSOR)) {
        return py_max_min(e, at, name, c, out);
    }
    if (c->nargs == 2 && c->args[1].k == V_TENSOR) {
        return tdx_call_op(e, at, name[1] == 'a' ? "maximum" : "minimum", false, c, out);
    }
    return tdx_call_op(e, at, name, false, c, out);
}

/* list(x), tuple(x) */
static int bi_sequence(struct tdx_env *e, const struct tdx_node *at, const char *name,
                       const struct call *c, struct value *out)
{
    int rc;
    if (c->nargs == 0) {
        return tdx_vseq(e, out, name[0] == 'l' ? V_LIST : V_TUPLE, 0);
    }
    const struct value *x = &c->args[0];
    if (x->k == V_RANGE) {
        int64_t n = 0;
        for (int64_t v = x->i; x->step > 0 ? v < x->stop : v > x->stop; v += x->step) {
            n++;
        }
        if (n > 10000000) {
            return tdx_fail(e, at, "range too long for a list");
        }
        if ((rc = tdx_vseq(e, out, name[0] == 'l' ? V_LIST : V_TUPLE, (int)n)) != 0) {
            return rc;
        }
        for (int64_t k = 0; k < n; k++) {
            out->items[k] = vint(x->i + k * x->step);
        }
        return 0;
    }
    if (x->k == V_TENSOR) {
        return tdx_tolist(e, x->t, at, out);
    }
    if (x->k != V_LIST && x->k != V_TUPLE && x->k != V_SIZE) {
        return tdx_fail(e, at, "'%s' object is not iterable", tdx_type_name(x));
    }
    if ((rc = tdx_vcopy(e, out, x)) == 0) {
        out->k = name[0] == 'l' ? V_LIST : V_TUPLE;
    }
    return rc;
}

/* ---- torch.chunk, split, unbind: tuples of views (narrow, select) made here, as the Python
** client makes them; they wait for the input's shape ---- */

#define MAX_PIECES (1 << 16)

/* The views of t along dim with the given lengths (unbind: one select per index). */
static int pieces(struct tdx_env *e, const struct tdx_node *at, struct tref *t, int64_t dim,
                  const int64_t *len, int n, bool select, struct value *out)
{
    int rc = tdx_vseq(e, out, V_TUPLE, n);
    int64_t start = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        struct value args[4] = {vtensor(t), vint(dim), vint(select ? k : start),
                                vint(select ? 0 : len[k])};
        struct call c = {.args = args, .nargs = select ? 3 : 4};
        rc = tdx_call_op(e, at, select ? "select" : "narrow", false, &c, &out->items[k]);
        start += select ? 0 : len[k];
    }
    if (rc != 0) {
        tdx_vfree(e, out);
    }
    return rc;
}

static int bi_views(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    bool unbind = name[0] == 'u', chunk = name[0] == 'c';
    const char *what = unbind ? NULL : chunk ? "chunks" : "split_size_or_sections";
    const struct value *in = c->nargs > 0 ? &c->args[0] : NULL;
    const struct value *sz = !unbind && c->nargs > 1 ? &c->args[1] : NULL;
    const struct value *dv = c->nargs > (unbind ? 1 : 2) ? &c->args[unbind ? 1 : 2] : NULL;
    int rc;
    if (c->nargs > (unbind ? 2 : 3)) {
        return tdx_fail(e, at, "%s() takes at most %d arguments (%d given)", name, unbind ? 2 : 3,
                        c->nargs);
    }
    for (int k = 0; k < c->nkw; k++) {
        if (strcmp(c->kwn[k], "dim") == 0) {
            dv = &c->kwv[k];
        } else if (what != NULL && (strcmp(c->kwn[k], what) == 0 ||
                                    (!chunk && strcmp(c->kwn[k], "split_size") == 0))) {
            sz = &c->kwv[k];
        } else if (strcmp(c->kwn[k], unbind || chunk ? "input" : "tensor") == 0) {
            in = &c->kwv[k];
        } else {
            return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", name, c->kwn[k]);
        }
    }
    if (in == NULL || in->k != V_TENSOR) {
        return tdx_fail(e, at, "%s(): argument '%s' (position 1) must be Tensor, not %s", name,
                        unbind || chunk ? "input" : "tensor",
                        in == NULL ? "NoneType" : tdx_type_name(in));
    }
    if (what != NULL && sz == NULL) {
        return tdx_fail(e, at, "%s() missing required argument '%s' (pos 2)", name, what);
    }
    if (dv != NULL && dv->k != V_INT) {
        return tdx_fail(e, at, "%s(): argument 'dim' must be int, not %s", name, tdx_type_name(dv));
    }
    struct tref *t = in->t;
    if ((rc = tdx_known(e, t, at)) != 0) {
        return rc;
    }
    int nd = t->info.ndim;
    int64_t dim = dv != NULL ? dv->i : 0;
    if (nd == 0) {
        return unbind ? tdx_fail(e, at,
                                 "Dimension specified as %" PRId64 " but tensor has no "
                                 "dimensions",
                                 dim)
                      : tdx_fail(e, at, "%s expects at least a 1-dimensional tensor", name);
    }
    if (dim < -nd || dim >= nd) {
        return tdx_fail(e, at,
                        "Dimension out of range (expected to be in range of [%d, %d], but got "
                        "%" PRId64 ")",
                        -nd, nd - 1, dim);
    }
    dim = dim < 0 ? dim + nd : dim;
    int64_t size = t->info.shape[dim];
    if (unbind) {
        if (size > MAX_PIECES) {
            return tdx_fail(e, at, "unbind(): more than %d pieces", MAX_PIECES);
        }
        return pieces(e, at, t, dim, NULL, (int)size, true, out);
    }
    int64_t *len = NULL;
    int n = 0;
    if (sz->k == V_LIST || sz->k == V_TUPLE) {
        if (chunk) {
            return tdx_fail(e, at, "chunk(): argument 'chunks' must be int, not %s",
                            tdx_type_name(sz));
        }
        int64_t sum = 0;
        bool neg = false;
        if ((len = calloc((size_t)sz->n + 1, sizeof *len)) == NULL) {
            return tdx_fail(e, at, "out of memory");
        }
        for (n = 0; n < sz->n; n++) {
            if (sz->items[n].k != V_INT) {
                free(len);
                return tdx_fail(e, at, "split(): split sizes must be ints, not %s",
                                tdx_type_name(&sz->items[n]));
            }
            len[n] = sz->items[n].i;
            neg |= len[n] < 0;
            sum += len[n] > 0 && len[n] < INT64_MAX / MAX_PIECES ? len[n] : 0;
        }
        if (sum != size || neg) {
            struct td_strbuf b;
            td_strbuf_init(&b, 0);
            for (int k = 0; k < n; k++) {
                td_strbuf_printf(&b, "%s%" PRId64, k ? ", " : "", len[k]);
            }
            rc = tdx_fail(e, at,
                          "split_with_sizes expects split_sizes to sum exactly to %" PRId64
                          " (input tensor's size at dimension %" PRId64
                          "), but got split_sizes=[%s]",
                          size, dim, td_strbuf_str(&b));
            td_strbuf_free(&b);
            free(len);
            return rc;
        }
    } else {
        if (sz->k != V_INT) {
            return tdx_fail(e, at, "%s(): argument '%s' must be int, not %s", name, what,
                            tdx_type_name(sz));
        }
        int64_t step = sz->i;
        if (chunk) {
            if (step <= 0) {
                return tdx_fail(e, at, "chunk expects `chunks` to be greater than 0, got: %" PRId64,
                                step);
            }
            if (size == 0) {
                if (step > MAX_PIECES) {
                    return tdx_fail(e, at, "chunk(): more than %d pieces", MAX_PIECES);
                }
                n = (int)step;
                step = 0;
            } else {
                step = size / step + (size % step != 0);
            }
        }
        if (step < 0) {
            return tdx_fail(e, at,
                            "split expects split_size be non-negative, but got split_size=%" PRId64,
                            step);
        }
        if (step == 0 && size != 0) {
            return tdx_fail(e, at,
                            "split_size can only be 0 if dimension size is 0, but got dimension "
                            "size of %" PRId64,
                            size);
        }
        if (step > 0) {
            int64_t cnt = size / step + (size % step != 0);
            if (cnt > MAX_PIECES) {
                return tdx_fail(e, at, "%s(): more than %d pieces", name, MAX_PIECES);
            }
            n = cnt > 0 ? (int)cnt : 1;
        } else if (n == 0) {
            n = 1;
        }
        if ((len = calloc((size_t)n, sizeof *len)) == NULL) {
            return tdx_fail(e, at, "out of memory");
        }
        for (int k = 0; k < n; k++) {
            len[k] = step == 0 ? 0 : (size - k * step < step ? size - k * step : step);
        }
    }
    rc = pieces(e, at, t, dim, len, n, false, out);
    free(len);
    return rc;
}

/* ---- torch.Generator: a random stream of its own on the server ----
**
** Its state is an int64 tensor [seed, offset] in the session (the Python client's Generator,
** the same wire requests): generator= sends its handle, and the server advances the offset in
** place. A Generator value holds a reference to that tensor; manual_seed and set_state write
** into it (copy_), so every name bound to the generator sees the change, as in torch. */

#define DEFAULT_SEED 67280421310721 /* torch.Generator().initial_seed() */

/* A new state tensor [seed, 0]. */
static int gen_state(struct tdx_env *e, const struct tdx_node *at, int64_t seed, struct value *out)
{
    struct value l;
    int rc = tdx_vseq(e, &l, V_LIST, 2);
    if (rc != 0) {
        return rc;
    }
    l.items[0] = vint(seed);
    l.items[1] = vint(0);
    rc = tdx_make_tensor(e, &l, TENSORD_INT64, false, at, out);
    tdx_vfree(e, &l);
    return rc;
}

static int bi_generator(struct tdx_env *e, const struct tdx_node *at, const char *name,
                        const struct call *c, struct value *out)
{
    (void)name;
    const struct value *dev = c->nargs > 0 ? &c->args[0] : NULL;
    for (int k = 0; k < c->nkw; k++) {
        if (strcmp(c->kwn[k], "device") != 0) {
            return tdx_fail(e, at, "Generator() got an unexpected keyword argument '%s'",
                            c->kwn[k]);
        }
        dev = &c->kwv[k];
    }
    if (c->nargs > 1) {
        return tdx_fail(e, at, "Generator() takes at most 1 argument (%d given)", c->nargs);
    }
    if (dev != NULL && !(dev->k == V_STR && strncmp(dev->s, "cpu", 3) == 0 &&
                         (dev->s[3] == '\0' || dev->s[3] == ':'))) {
        if (dev->k == V_STR) {
            char type[64];
            size_t n = strcspn(dev->s, ":");
            n = n < sizeof type - 1 ? n : sizeof type - 1;
            for (size_t i = 0; i < n; i++) {
                type[i] = (char)(dev->s[i] >= 'a' && dev->s[i] <= 'z' ? dev->s[i] - 32 : dev->s[i]);
            }
            type[n] = '\0';
            return tdx_fail(e, at, "Device type %s is not supported for tensord.Generator() api.",
                            type);
        }
        return tdx_fail(e, at, "Generator(): argument 'device' must be tensord.device, not %s",
                        tdx_type_name(dev));
    }
    struct value st;
    int rc = gen_state(e, at, DEFAULT_SEED, &st);
    if (rc != 0) {
        return rc;
    }
    *out = (struct value){.k = V_GENERATOR, .t = st.t};
    return 0;
}

int tdx_generator_arg(struct tdx_env *e, const struct tdx_node *at, const char *fn,
                      const struct value *v, uint64_t *handle)
{
    if (v->k == V_NONE) {
        *handle = 0;
        return 0;
    }
    if (v->k != V_GENERATOR) {
        return tdx_fail(e, at, "%s(): argument 'generator' must be tensord.Generator, not %s", fn,
                        tdx_type_name(v));
    }
    *handle = v->t->handle;
    return 0;
}

/* state[:] = src (a tensor value), in place. */
static int gen_write(struct tdx_env *e, const struct tdx_node *at, struct tref *state,
                     const struct value *src)
{
    struct value args[2] = {vtensor(state), *src}, res;
    struct call c = {.args = args, .nargs = 2};
    int rc = tdx_call_op(e, at, "copy", true, &c, &res);
    if (rc == 0) {
        tdx_vfree(e, &res);
    }
    return rc;
}

int tdx_generator_method(struct tdx_env *e, const struct tdx_node *at, struct tref *g,
                         const char *name, const struct call *c, struct value *out)
{
    int rc;
    int want = strcmp(name, "manual_seed") == 0 || strcmp(name, "set_state") == 0 ? 1 : 0;
    if (c->nkw > 0 && !(want == 1 && c->nkw == 1 && c->nargs == 0 &&
                        strcmp(c->kwn[0], name[0] == 'm' ? "seed" : "new_state") == 0)) {
        return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", name, c->kwn[0]);
    }
    const struct value *arg = c->nargs > 0 ? &c->args[0] : c->nkw > 0 ? &c->kwv[0] : NULL;
    int given = c->nargs + c->nkw;
    if (strcmp(name, "manual_seed") != 0 && strcmp(name, "seed") != 0 &&
        strcmp(name, "initial_seed") != 0 && strcmp(name, "get_state") != 0 &&
        strcmp(name, "set_state") != 0) {
        return tdx_fail(e, at, "'tensord._C.Generator' object has no attribute '%s'", name);
    }
    if (given != want) {
        return want ? tdx_fail(e, at, "%s() takes exactly one argument (0 given)", name)
                    : tdx_fail(e, at, "%s() takes no arguments (%d given)", name, given);
    }
    if (strcmp(name, "manual_seed") == 0 || strcmp(name, "seed") == 0) {
        int64_t seed;
        if (name[0] == 's') {
            uint64_t r = 0;
            FILE *f = fopen("/dev/urandom", "rb");
            if (f == NULL || fread(&r, sizeof r, 1, f) != 1) {
                if (f != NULL) {
                    fclose(f);
                }
                return tdx_fail(e, at, "seed(): no randomness available (/dev/urandom)");
            }
            fclose(f);
            seed = (int64_t)(r >> 1);
        } else if (arg->k == V_INT || arg->k == V_BOOL) {
            seed = num_i(arg);
        } else {
            return tdx_fail(e, at, "manual_seed expected a long, but got %s", tdx_type_name(arg));
        }
        struct value st;
        if ((rc = gen_state(e, at, seed, &st)) != 0) {
            return rc;
        }
        rc = gen_write(e, at, g, &st);
        tdx_vfree(e, &st);
        if (rc == 0) {
            *out = name[0] == 's' ? vint(seed)
                                  : (struct value){.k = V_GENERATOR, .t = tdx_tref_ref(g)};
        }
        return rc;
    }
    if (strcmp(name, "initial_seed") == 0) {
        struct value args[3] = {vtensor(g), vint(0), vint(0)}, s0;
        struct call sc = {.args = args, .nargs = 3};
        if ((rc = tdx_call_op(e, at, "select", false, &sc, &s0)) != 0) {
            return rc;
        }
        rc = tdx_item(e, s0.t, at, out);
        tdx_vfree(e, &s0);
        return rc;
    }
    if (strcmp(name, "get_state") == 0) {
        struct value args[1] = {vtensor(g)};
        struct call sc = {.args = args, .nargs = 1};
        return tdx_call_op(e, at, "clone", false, &sc, out);
    }
    /* set_state */
    if (arg->k != V_TENSOR) {
        return tdx_fail(e, at, "expected a tensord.ByteTensor, but got %s", tdx_type_name(arg));
    }
    if ((rc = tdx_known(e, arg->t, at)) != 0) {
        return rc;
    }
    const struct tensord_info *in = &arg->t->info;
    if (in->dtype != TENSORD_INT64 || in->ndim != 1 || in->shape[0] != 2) {
        char shp[200];
        size_t len = (size_t)snprintf(shp, sizeof shp, "[");
        for (int i = 0; i < in->ndim && len < sizeof shp; i++) {
            len += (size_t)snprintf(shp + len, sizeof shp - len, "%s%" PRId64, i ? ", " : "",
                                    in->shape[i]);
        }
        if (len < sizeof shp) {
            snprintf(shp + len, sizeof shp - len, "]");
        }
        return tdx_fail(e, at,
                        "expected a state from tensord.Generator.get_state() (an int64 tensor "
                        "of 2 elements in this session), got tensord.%s of shape %s",
                        tdx_dtype_str(in->dtype), shp);
    }
    if ((rc = gen_write(e, at, g, arg)) == 0) {
        *out = (struct value){.k = V_GENERATOR, .t = tdx_tref_ref(g)};
    }
    return rc;
}

/* Built-in functions: torch's without "torch.", and a few of Python's (NULL: handled where
** they are called). Names the op table also has (abs, round) go to the op for tensors. */
static const struct {
    const char *name;
    builtin_fn fn;
} BUILTINS[] = {
    {"tensor", bi_tensor},
    {"zeros", bi_create},
    {"ones", bi_create},
    {"full", bi_create},
    {"rand", bi_create},
    {"randn", bi_create},
    {"arange", bi_arange},
    {"manual_seed", bi_manual_seed},
    {"Generator", bi_generator},
    {"chunk", bi_views},
    {"split", bi_views},
    {"unbind", bi_views},
    {"no_grad", bi_grad_ctx},
    {"enable_grad", bi_grad_ctx},
    {"print", bi_print},
    {"len", bi_len},
    {"range", bi_range},
    {"float", bi_convert},
    {"int", bi_convert},
    {"bool", bi_convert},
    {"str", bi_convert},
    {"abs", bi_abs},
    {"round", bi_round},
    {"isinstance", NULL},
    {"list", bi_sequence},
    {"tuple", bi_sequence},
    {"type", NULL},
    {"is_grad_enabled", bi_is_grad_enabled},
    {"from_numpy", bi_tensor},
    {"set_grad_enabled", bi_set_grad_enabled},
};

/* An op whose torch spelling has call forms its ops.def signature cannot state (ops.def flags it
** TD_OPF_OVERLOADED): randint(high, size) beside randint(low, high, size); max and min with a
** dim (values and indices) or a tensor (maximum, minimum) beside the whole-tensor reduction;
** einsum(equation, *operands) beside einsum(equation, operands). */
static int call_overloaded(struct tdx_env *e, const struct tdx_node *at, const char *name,
                           const struct call *c, struct value *out)
{
    if (strcmp(name, "randint") == 0) {
        return bi_randint(e, at, name, c, out);
    }
    if (strcmp(name, "einsum") == 0) {
        /* einsum(equation, *operands) beside einsum(equation, operands): the operands as a
        ** tuple borrowed from the call */
        if (c->nargs >= 2 && c->args[1].k == V_TENSOR) {
            struct value two[2] = {c->args[0],
                                   {.k = V_TUPLE, .items = c->args + 1, .n = c->nargs - 1}};
            struct call c2 = *c;
            c2.args = two;
            c2.nargs = 2;
            return tdx_call_op(e, at, name, false, &c2, out);
        }
        return tdx_call_op(e, at, name, false, c, out);
    }
    return bi_max_min(e, at, name, c, out);
}

/* Calls the builtin or op `name`. */
int tdx_func(struct tdx_env *e, const struct tdx_node *at, const char *name, const struct call *c,
             struct value *out)
{
    *out = (struct value){.k = V_NONE};
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++) {
        if (BUILTINS[i].fn != NULL && strcmp(BUILTINS[i].name, name) == 0) {
            return BUILTINS[i].fn(e, at, name, c, out);
        }
    }
    if (tdx_op_overloaded(name)) {
        return call_overloaded(e, at, name, c, out);
    }
    return tdx_call_op(e, at, name, false, c, out);
}

static bool is_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++) {
        if (strcmp(BUILTINS[i].name, name) == 0) {
            return true;
        }
    }
    return tdx_op_is_function(name);
}

/* Python's builtins that torch does not have (torch.print is an AttributeError). */
static const char *const PY_ONLY[] = {"print",      "len",  "range", "str",
                                      "isinstance", "list", "tuple", "type"};

/* torch.X, so that pasted PyTorch code runs unchanged after `import torch`. */
int tdx_module_attr(struct tdx_env *e, const struct tdx_node *at, const char *module,
                    const char *name, struct value *out)
{
    static const char *const TORCH_DTYPES[][2] = {
        {"float32", "1"}, {"float", "1"}, {"float64", "2"}, {"double", "2"}, {"int32", "3"},
        {"int", "3"},     {"int64", "4"}, {"long", "4"},    {"bool", "5"},
    };
    if (strcmp(module, "torch") != 0) {
        return tdx_fail(e, at,
                        "numpy is not available in tensorctl (%s.%s); build tensors with "
                        "tensor([...])",
                        module, name);
    }
    for (size_t i = 0; i < sizeof TORCH_DTYPES / sizeof TORCH_DTYPES[0]; i++) {
        if (strcmp(TORCH_DTYPES[i][0], name) == 0) {
            *out = (struct value){.k = V_DTYPE, .dt = TORCH_DTYPES[i][1][0] - '0'};
            return 0;
        }
    }
    if (is_builtin(name) && !in_list(PY_ONLY, sizeof PY_ONLY / sizeof PY_ONLY[0], name)) {
        *out = (struct value){.k = V_FUNC};
        if ((out->s = strdup(name)) == NULL) {
            return tdx_fail(e, at, "out of memory");
        }
        return 0;
    }
    return tdx_fail(e, at, "module 'torch' has no attribute '%s'", name);
}

int tdx_name_value(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    struct var *x = tdx_lookup(e, n->str);
    if (x != NULL) {
        return tdx_vcopy(e, out, &x->v);
    }
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++) {
        if (strcmp(DTYPES[i][0], n->str) == 0 && strcmp(n->str, "float") != 0) {
            *out = (struct value){.k = V_DTYPE, .dt = DTYPES[i][1][0] - '0'};
            return 0;
        }
    }
    if (is_builtin(n->str)) {
        *out = (struct value){.k = V_FUNC};
        if ((out->s = strdup(n->str)) == NULL) {
            return tdx_fail(e, n, "out of memory");
        }
        return 0;
    }
    return tdx_fail(e, n, "name '%s' is not defined", n->str);
}

void tdx_complete(const struct tdx_env *e, const char *prefix, const char *object,
                  void (*fn)(const char *name, void *arg), void *arg)
{
    size_t n = strlen(prefix);
    bool module = false;
    const struct tdx_opdef *op;
    if (object != NULL) {
        for (int i = 0; i < e->nvars; i++) {
            if (strcmp(e->vars[i].name, object) == 0 && e->vars[i].v.k == V_MODULE) {
                if (strcmp(e->vars[i].v.s, "torch") != 0) {
                    return; /* numpy: nothing there */
                }
                module = true;
            }
        }
    }
    if (object != NULL && !module) {
        tdx_complete_methods(prefix, fn, arg);
        return;
    }
    if (!module) {
        for (int i = 0; i < e->nvars; i++) {
            if (strncmp(e->vars[i].name, prefix, n) == 0) {
                fn(e->vars[i].name, arg);
            }
        }
    }
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++) {
        if (strncmp(BUILTINS[i].name, prefix, n) == 0 &&
            !(module && in_list(PY_ONLY, sizeof PY_ONLY / sizeof PY_ONLY[0], BUILTINS[i].name))) {
            fn(BUILTINS[i].name, arg);
        }
    }
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        if (strncmp(op->name, prefix, n) == 0 && tdx_op_is_function(op->name)) {
            fn(op->name, arg);
        }
    }
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++) {
        if (strncmp(DTYPES[i][0], prefix, n) == 0 && !(module && DTYPES[i][0][4] == '_')) {
            fn(DTYPES[i][0], arg);
        }
    }
    if (module) {
        return;
    }
    static const char *const KW[] = {"True", "False", "None", "with", "for",  "in",
                                     "del",  "not",   "and",  "or",   "pass", "import"};
    for (size_t i = 0; i < sizeof KW / sizeof KW[0]; i++) {
        if (strncmp(KW[i], prefix, n) == 0) {
            fn(KW[i], arg);
        }
    }
}
