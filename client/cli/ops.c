/* ops.c — tensorctl's op table (generated from server/core/ops.def) and what torch's API says
** about each op's name.
**
** Everything about an op's call — its operands, torch's parameters, their OpArgs fields, its
** flags — comes from the generated table. Where torch puts a name follows from the signature
** (an op on `input` is also a Tensor method), so a new row needs nothing here; the few names
** torch places otherwise are listed below: they are torch's namespaces, not op contracts.
*/
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include "cli_ops.h"
#include "interp.h"

/* Where torch puts an op's name (ops.def's flags say where its signature does not): an op whose
** operands include `input` is both torch.name and the Tensor method (x.name called on input);
** any other (cat's `tensors`, the creation ops) is a function only. */
enum torch_form {
    FORM_FUNCTION = 1,   /* torch.name / torch.nn.functional.name only (x.gelu() fails) */
    FORM_INPLACE_METHOD, /* a method only as x.name_() (there is no x.fill(1)) */
    FORM_NONE,           /* the wire's alone: mT is the attribute x.mT, slice is x[a:b] */
};

static int torch_form(const struct tdx_opdef *op)
{
    if (op->flags & TDX_OPF_INTERNAL) {
        return FORM_NONE;
    }
    if (op->flags & TDX_OPF_INPLACE_ONLY) {
        return FORM_INPLACE_METHOD;
    }
    if (op->flags & (TDX_OPF_NO_METHOD | TDX_OPF_FUNCTIONAL)) {
        return FORM_FUNCTION;
    }
    const struct tdx_param *in = tdx_op_param_named(op, "input");
    return in != NULL && in->operand ? 0 : FORM_FUNCTION;
}

const struct tdx_opdef *tdx_op_find(const char *name)
{
    for (size_t i = 0; i < sizeof TDX_OPS / sizeof TDX_OPS[0]; i++) {
        if (strcmp(TDX_OPS[i].name, name) == 0) {
            return &TDX_OPS[i];
        }
    }
    return NULL;
}

const struct tdx_opdef *tdx_op_at(size_t i)
{
    return i < sizeof TDX_OPS / sizeof TDX_OPS[0] ? &TDX_OPS[i] : NULL;
}

const struct tdx_param *tdx_op_param(const struct tdx_opdef *op, int i)
{
    return &TDX_PARAMS[op->param0 + i];
}

const struct tdx_param *tdx_op_param_named(const struct tdx_opdef *op, const char *name)
{
    for (int i = 0; i < op->nparams; i++) {
        if (strcmp(TDX_PARAMS[op->param0 + i].name, name) == 0) {
            return &TDX_PARAMS[op->param0 + i];
        }
    }
    return NULL;
}

bool tdx_op_nodiff(const struct tdx_opdef *op)
{
    return (op->flags & TDX_OPF_NODIFF) != 0;
}

bool tdx_op_overloaded(const char *name)
{
    const struct tdx_opdef *op = tdx_op_find(name);
    return op != NULL && (op->flags & TDX_OPF_OVERLOADED) != 0;
}

bool tdx_op_is_function(const char *name)
{
    const struct tdx_opdef *op = tdx_op_find(name);
    return op != NULL && torch_form(op) != FORM_NONE;
}

bool tdx_op_is_method(const char *name, bool inplace)
{
    const struct tdx_opdef *op = tdx_op_find(name);
    int f = op != NULL ? torch_form(op) : FORM_NONE;
    if (f == FORM_NONE || f == FORM_FUNCTION) {
        return false;
    }
    return inplace ? op->inplace != NULL : f != FORM_INPLACE_METHOD;
}

static void help_word(FILE *out, int width, int *col, const char *name, const char *suffix)
{
    int n = (int)(strlen(name) + strlen(suffix));
    if (*col > 0 && *col + 1 + n > width) {
        fputc('\n', out);
        *col = 0;
    }
    *col += fprintf(out, "%s%s%s", *col > 0 ? " " : "  ", name, suffix);
}

void tdx_op_help(FILE *out, int width)
{
    int col = 0;
    const struct tdx_opdef *op;
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        int f = torch_form(op);
        if (f != FORM_NONE && f != FORM_INPLACE_METHOD) {
            help_word(out, width, &col, op->name, "");
        }
    }
    fputc('\n', out);
    col = 0;
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        if (torch_form(op) == FORM_INPLACE_METHOD && op->inplace != NULL) {
            help_word(out, width, &col, op->inplace, "");
        }
    }
    fputc('\n', out);
}

/* ---- calling an op, as its signature says ---- */

int tdx_to_operand(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                   const char *op, struct tensord_operand *o)
{
    switch (v->k) {
    case V_TENSOR: *o = tensord_h(v->t->handle); return 0;
    case V_INT: *o = tensord_i(v->i); return 0;
    case V_FLOAT: *o = tensord_f(v->f); return 0;
    case V_BOOL: *o = tensord_b(v->b); return 0;
    default:
        return tdx_fail(e, at, "%s(): argument must be a Tensor or a number, not '%s'", op,
                        tdx_type_name(v));
    }
}

static int to_int_arg(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                      const char *op, const char *what, int64_t *out)
{
    if (v->k != V_INT && v->k != V_BOOL) {
        return tdx_fail(e, at, "%s(): argument '%s' must be int, not %s", op, what,
                        tdx_type_name(v));
    }
    *out = num_i(v);
    return 0;
}

/* Puts one argument into a. key is an OpArgs field ("dim", "min" ...), "*dims" (a shape),
** "rdim" (one dim or a list; None is none), or a keyword no parameter of the op names (set
** when torch's is accepted: requires_grad=, reduction='mean'; refused otherwise). */
int tdx_set_arg(struct tdx_env *e, const char *op, const char *key, const struct value *v,
                const struct tdx_node *at, struct tensord_op_args *a, bool *want_out2,
                bool *requires_grad)
{
    int rc = 0;
    if (strcmp(key, "*dims") == 0 || strcmp(key, "rdim") == 0) {
        if (v->k == V_NONE && key[0] == 'r') {
            return 0;
        }
        int nd;
        if ((rc = tdx_get_shape(e, v, 1, at, a->dims, &nd)) != 0) {
            return rc;
        }
        a->ndims = nd;
        a->has_dims = true;
        return 0;
    }
    if (strcmp(key, "dim") == 0) {
        if (v->k == V_NONE) {
            return 0;
        }
        if ((rc = to_int_arg(e, v, at, op, "dim", &a->dim)) == 0) {
            a->has_dim = true;
            *want_out2 = strcmp(op, "max") == 0 || strcmp(op, "min") == 0;
        }
        return rc;
    }
    if (strcmp(key, "dim2") == 0) {
        a->has_dim = true;
        return to_int_arg(e, v, at, op, "dim", &a->dim2);
    }
    if (strcmp(key, "start") == 0) {
        return to_int_arg(e, v, at, op, key, &a->start);
    }
    if (strcmp(key, "end") == 0) {
        return to_int_arg(e, v, at, op, key, &a->end);
    }
    if (strcmp(key, "step") == 0) {
        return to_int_arg(e, v, at, op, key, &a->step);
    }
    if (strcmp(key, "min") == 0 || strcmp(key, "max") == 0) {
        if (v->k == V_NONE) {
            return 0;
        }
        bool isminv = key[1] == 'i';
        if ((rc = tdx_to_operand(e, v, at, op, isminv ? &a->min : &a->max)) != 0) {
            return rc;
        }
        if (v->k == V_TENSOR) {
            return tdx_fail(e, at,
                            "%s(): tensor bounds are not supported here; use clamp_min() and "
                            "clamp_max()",
                            op);
        }
        *(isminv ? &a->has_min : &a->has_max) = true;
        return 0;
    }
    if (strcmp(key, "dtype") == 0) {
        int dt;
        if ((rc = tdx_parse_dtype_value(e, v, at, &dt)) == 0) {
            a->dtype = (enum tensord_dtype)dt;
        }
        return rc;
    }
    if (strcmp(key, "k") == 0) {
        return to_int_arg(e, v, at, op, "k", &a->k);
    }
    if (strcmp(key, "descending") == 0 || strcmp(key, "sorted") == 0 ||
        strcmp(key, "stable") == 0) {
        if (v->k != V_BOOL) {
            return tdx_fail(e, at, "%s(): argument '%s' must be bool, not %s", op, key,
                            tdx_type_name(v));
        }
        *(key[0] == 'd' ? &a->descending : key[1] == 'o' ? &a->sorted : &a->stable) = v->b;
        return 0;
    }
    if (strcmp(key, "keepdim") == 0) {
        if (v->k != V_BOOL) {
            return tdx_fail(e, at, "%s(): argument 'keepdim' must be bool, not %s", op,
                            tdx_type_name(v));
        }
        a->keepdim = v->b;
        return 0;
    }
    if (strcmp(key, "correction") == 0 || strcmp(key, "unbiased") == 0) {
        if (!is_num(v)) {
            return tdx_fail(e, at, "%s(): argument '%s' must be a number", op, key);
        }
        a->has_correction = true;
        a->correction = key[0] == 'u' ? (v->b ? 1.0 : 0.0) : num_f(v);
        return 0;
    }
    if (strcmp(key, "p") == 0) {
        if (is_num(v) && num_f(v) == 2.0) {
            return 0;
        }
        if (v->k == V_STR && strcmp(v->s, "fro") == 0) {
            return 0;
        }
        return tdx_fail(e, at, "norm(): only p=2 ('fro') is supported");
    }
    if (strcmp(key, "reduction") == 0) {
        if (v->k == V_STR && strcmp(v->s, "mean") == 0) {
            return 0;
        }
        return tdx_fail(e, at, "%s(): only reduction='mean' is supported", op);
    }
    if (strcmp(key, "alpha") == 0 || strcmp(key, "value") == 0 || strcmp(key, "beta") == 0) {
        int k = key[0] == 'a' ? 0 : key[0] == 'v' ? 1 : 2;
        struct tensord_operand *dst[3] = {&a->alpha, &a->value, &a->beta};
        bool *has[3] = {&a->has_alpha, &a->has_value, &a->has_beta};
        if (!is_num(v)) {
            return tdx_fail(e, at, "%s(): argument '%s' must be Number, not %s", op, key,
                            tdx_type_name(v));
        }
        if ((rc = tdx_to_operand(e, v, at, op, dst[k])) != 0) {
            return rc;
        }
        *has[k] = true;
        return 0;
    }
    if (strcmp(key, "rtol") == 0 || strcmp(key, "atol") == 0) {
        if (!is_num(v)) {
            return tdx_fail(e, at, "%s(): argument '%s' must be float, not %s", op, key,
                            tdx_type_name(v));
        }
        *(key[0] == 'r' ? &a->rtol : &a->atol) = num_f(v);
        return 0;
    }
    if (strcmp(key, "equation") == 0) {
        if (v->k != V_STR) {
            return tdx_fail(e, at, "%s(): argument 'equation' must be str, not %s", op,
                            tdx_type_name(v));
        }
        a->equation = v->s; /* the call's value outlives the request it is packed into */
        return 0;
    }
    if (strcmp(key, "decimals") == 0) {
        return to_int_arg(e, v, at, op, "decimals", &a->decimals);
    }
    if (strcmp(key, "shifts") == 0) {
        int n = v->k == V_LIST || v->k == V_TUPLE ? v->n : 1;
        if (n > TENSORD_MAX_DIMS) {
            return tdx_fail(e, at, "%s(): at most %d shifts", op, TENSORD_MAX_DIMS);
        }
        for (int k = 0; k < n; k++) {
            const struct value *x = v->k == V_LIST || v->k == V_TUPLE ? &v->items[k] : v;
            if ((rc = to_int_arg(e, x, at, op, "shifts", &a->shifts[k])) != 0) {
                return rc;
            }
        }
        a->nshifts = n;
        return 0;
    }
    if (strcmp(key, "equal_nan") == 0) {
        if (v->k != V_BOOL) {
            return tdx_fail(e, at, "%s(): argument 'equal_nan' must be bool, not %s", op,
                            tdx_type_name(v));
        }
        a->equal_nan = v->b;
        return 0;
    }
    if (strcmp(key, "rounding_mode") == 0) {
        if (v->k == V_NONE) {
            return 0;
        }
        if (v->k != V_STR) {
            return tdx_fail(e, at, "%s(): argument 'rounding_mode' must be str, not %s", op,
                            tdx_type_name(v));
        }
        a->rounding_mode = v->s; /* the call's value outlives the request it is packed into */
        return 0;
    }
    if (strcmp(key, "num_samples") == 0) {
        return to_int_arg(e, v, at, op, strcmp(op, "randperm") == 0 ? "n" : key, &a->num_samples);
    }
    if (strcmp(key, "replacement") == 0 || strcmp(key, "accumulate") == 0) {
        if (v->k != V_BOOL) {
            return tdx_fail(e, at, "%s(): argument '%s' must be bool, not %s", op, key,
                            tdx_type_name(v));
        }
        *(key[0] == 'r' ? &a->replacement : &a->accumulate) = v->b;
        return 0;
    }
    if (strcmp(key, "generator") == 0) {
        /* torch names an in-place-only op by its method (normal_) */
        const struct tdx_opdef *d = tdx_op_find(op);
        bool method = d != NULL && (d->flags & TDX_OPF_INPLACE_ONLY) && d->inplace != NULL;
        return tdx_generator_arg(e, at, method ? d->inplace : op, v, &a->generator);
    }
    if (strcmp(key, "as_tuple") == 0 && strcmp(op, "nonzero") == 0) {
        /* nonzero's [n, ndim] result; as_tuple=True (one index tensor per dim) is Python's */
        if (v->k == V_BOOL && !v->b) {
            return 0;
        }
        return tdx_fail(e, at,
                        "nonzero(): as_tuple=True is not supported by tensorctl; index "
                        "the result's columns: nonzero(x)[:, d]");
    }
    /* nn convolution and pooling: int lists (one int stands for every spatial dim), conv's
    ** padding='valid'/'same', None in output_size (-1 on the wire) */
    static const char *const lists[] = {"stride", "padding", "dilation", "kernel_size",
                                        "output_size"};
    for (int l = 0; l < 5; l++) {
        if (strcmp(key, lists[l]) != 0) {
            continue;
        }
        int64_t *dst[5] = {a->stride, a->padding, a->dilation, a->kernel_size, a->output_size};
        int *cnt[5] = {&a->nstride, &a->npadding, &a->ndilation, &a->nkernel_size,
                       &a->noutput_size};
        if (v->k == V_NONE) {
            return 0;
        }
        if (l == 1 && v->k == V_STR) {
            a->padding_mode = v->s; /* the call's value outlives the request */
            return 0;
        }
        bool seq = v->k == V_LIST || v->k == V_TUPLE;
        int n = seq ? v->n : 1;
        if (n > TENSORD_MAX_DIMS) {
            return tdx_fail(e, at, "%s(): at most %d values for '%s'", op, TENSORD_MAX_DIMS, key);
        }
        for (int k = 0; k < n; k++) {
            const struct value *x = seq ? &v->items[k] : v;
            if (l == 4 && x->k == V_NONE) {
                dst[l][k] = -1;
            } else if ((rc = to_int_arg(e, x, at, op, key, &dst[l][k])) != 0) {
                return rc;
            }
        }
        *cnt[l] = n;
        return 0;
    }
    if (strcmp(key, "groups") == 0 || strcmp(key, "divisor_override") == 0) {
        if (v->k == V_NONE) {
            return 0;
        }
        return to_int_arg(e, v, at, op, key, key[0] == 'g' ? &a->groups : &a->divisor_override);
    }
    if (strcmp(key, "ceil_mode") == 0 || strcmp(key, "count_include_pad") == 0) {
        if (v->k != V_BOOL) {
            return tdx_fail(e, at, "%s(): argument '%s' must be bool, not %s", op, key,
                            tdx_type_name(v));
        }
        *(key[0] == 'c' && key[1] == 'e' ? &a->ceil_mode : &a->count_include_pad) = v->b;
        return 0;
    }
    if (strcmp(key, "requires_grad") == 0 && requires_grad != NULL) {
        *requires_grad = v->k == V_BOOL ? v->b : num_f(v) != 0;
        return 0;
    }
    return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", op, key);
}

/* The key tdx_set_arg() takes for parameter p: its OpArgs field, where a `dims` parameter is
** "*dims" (a shape, from the remaining positional arguments) when it gathers them and "rdim"
** (one int or a list, None for none) otherwise. (A `cast` parameter is op_args' own.) */
static const char *arg_key(const struct tdx_param *p)
{
    if (strcmp(p->field, "dims") == 0) {
        return p->varargs ? "*dims" : "rdim";
    }
    return p->field;
}

/* torch's dtype= on a reduction or a softmax (ops.def's `:cast`): the input is cast to dt
** first, by the op `to`; *in becomes the cast copy, held by *out until the op is sent. */
static int cast_input(struct tdx_env *e, const struct tdx_node *at, struct tensord_operand *in,
                      int dt, struct tref **out)
{
    const struct tdx_opdef *to = tdx_op_find("to");
    struct tref *t = to != NULL ? tdx_tref_new(e) : NULL;
    struct tensord_op_args a;
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (t == NULL) {
        return tdx_fail(e, at, to == NULL ? "dtype= needs the op 'to'" : "out of memory");
    }
    memset(&a, 0, sizeof a);
    a.dtype = (enum tensord_dtype)dt;
    int lrc = tensord_send_op_ex(e->c, to->wire, t->handle, in, 1, &a, false, &id, &err);
    if ((rc = tdx_send_tensor_result(e, lrc, id, t, at, &err)) != 0) {
        tdx_tref_unref(e, t);
        return rc;
    }
    *in = tensord_h(t->handle);
    *out = t;
    return 0;
}

/* Adds operand value v (of parameter p) to ins; a list for a `:tensors` parameter. */
static int add_operand(struct tdx_env *e, const struct tdx_node *at, const char *op,
                       const struct tdx_param *p, const struct value *v,
                       struct tensord_operand *ins, int *nin, bool *any_grad)
{
    int rc;
    if (strcmp(p->field, "tensors") == 0) {
        if (v->k != V_LIST && v->k != V_TUPLE) {
            return tdx_fail(e, at, "%s(): argument '%s' must be a tuple or list of Tensors", op,
                            p->name);
        }
        for (int k = 0; k < v->n; k++) {
            if (v->items[k].k != V_TENSOR) {
                return tdx_fail(e, at,
                                "%s(): expected Tensor as element %d in argument 0, but got "
                                "%s",
                                op, k, tdx_type_name(&v->items[k]));
            }
            if (*nin >= TDX_MAX_OPERANDS) {
                return tdx_fail(e, at, "%s(): at most %d tensors", op, TDX_MAX_OPERANDS);
            }
            *any_grad |= v->items[k].t->requires_grad;
            ins[(*nin)++] = tensord_h(v->items[k].t->handle);
        }
        return 0;
    }
    if (v->k == V_NONE && p->deflt != NULL && strcmp(p->deflt, "None") == 0) {
        return 0; /* an optional operand left out (linear's bias) */
    }
    if (*nin >= TDX_MAX_OPERANDS) {
        return tdx_fail(e, at, "%s(): too many operands", op);
    }
    if ((rc = tdx_to_operand(e, v, at, op, &ins[*nin])) != 0) {
        return rc;
    }
    *any_grad |= v->k == V_TENSOR && v->t->requires_grad;
    (*nin)++;
    return 0;
}

/* Parameter p's default, when a number or a bool (None is no value: the field stays unset). */
static bool default_value(const struct tdx_param *p, struct value *v)
{
    char *end;
    if (p->deflt == NULL || strcmp(p->deflt, "None") == 0) {
        return false;
    }
    if (strcmp(p->deflt, "True") == 0 || strcmp(p->deflt, "False") == 0) {
        *v = vbool(p->deflt[0] == 'T');
        return true;
    }
    long long i = strtoll(p->deflt, &end, 10);
    if (end != p->deflt && *end == '\0') {
        *v = vint(i);
        return true;
    }
    double f = strtod(p->deflt, &end);
    if (end != p->deflt && *end == '\0') {
        *v = vfloat(f);
        return true;
    }
    return false;
}

/* Whether value v, given for parameter p, asks for the outputs p chooses (ops.def's `b?p`): a
** flag (default False) when true, as Python reads it; any other parameter when not None. */
static bool asks(const struct tdx_param *p, const struct value *v)
{
    if (v->k == V_NONE) {
        return false;
    }
    if (p->deflt == NULL || strcmp(p->deflt, "False") != 0) {
        return true;
    }
    return v->k == V_BOOL ? v->b : v->k == V_INT ? v->i != 0 : v->k == V_FLOAT ? v->f != 0 : true;
}

static bool kw_given(const struct call *c, const char *name)
{
    for (int k = 0; k < c->nkw; k++) {
        if (strcmp(c->kwn[k], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Parses a call of op `d` as its torch signature says: operands (positional, or by name) in
** wire order, then the other parameters into a, torch's defaults first (flatten(1) is
** flatten(1, -1)), then what the call gives. */
static int op_args(struct tdx_env *e, const struct tdx_node *at, const struct tdx_opdef *d,
                   const struct call *c, struct tensord_operand *ins, int *nin,
                   struct tensord_op_args *a, int *cast, bool *want_out2, bool *any_grad,
                   bool *given)
{
    const char *op = d->name;
    const struct value *slot[TDX_MAX_PARAMS] = {0};
    int rc, i = 0, np = d->nparams < TDX_MAX_PARAMS ? d->nparams : TDX_MAX_PARAMS, npos = 0;
    bool rest = false;
    for (int k = 0; k < np; k++) {
        const struct tdx_param *p = tdx_op_param(d, k);
        if (p->kwonly) {
            continue;
        }
        npos++;
        rest |= p->varargs;
        if (i < c->nargs && !rest) {
            slot[k] = &c->args[i++];
        } else if (i < c->nargs) {
            slot[k] = &c->args[i]; /* *name: the rest */
            i = c->nargs;
        }
    }
    if (i < c->nargs) {
        return tdx_fail(e, at, "%s() takes %d positional arguments but %d were given", op, npos,
                        c->nargs);
    }
    for (int k = 0; k < c->nkw; k++) {
        const struct tdx_param *p = tdx_op_param_named(d, c->kwn[k]);
        if (p != NULL && p->operand) {
            int j = (int)(p - tdx_op_param(d, 0));
            if (slot[j] != NULL) {
                return tdx_fail(e, at, "%s() got multiple values for argument '%s'", op, p->name);
            }
            slot[j] = &c->kwv[k];
        }
    }
    for (int k = 0; k < np; k++) {
        const struct tdx_param *p = tdx_op_param(d, k);
        if (p->operand && slot[k] != NULL &&
            (rc = add_operand(e, at, op, p, slot[k], ins, nin, any_grad)) != 0) {
            return rc;
        }
    }
    for (int k = 0; k < np; k++) {
        const struct tdx_param *p = tdx_op_param(d, k);
        struct value v;
        if (!p->operand && !p->varargs && !p->outsel && slot[k] == NULL && !kw_given(c, p->name) &&
            default_value(p, &v) &&
            (rc = tdx_set_arg(e, op, arg_key(p), &v, at, a, want_out2, NULL)) != 0) {
            return rc;
        }
    }
    for (int k = 0; k < np; k++) {
        const struct tdx_param *p = tdx_op_param(d, k);
        if (slot[k] != NULL) {
            given[k] = asks(p, slot[k]);
        }
        if (p->operand || slot[k] == NULL || p->outsel) {
            continue;
        }
        if (p->varargs) {
            int first = (int)(slot[k] - c->args), nd;
            if ((rc = tdx_get_shape(e, slot[k], c->nargs - first, at, a->dims, &nd)) != 0) {
                return rc;
            }
            a->ndims = nd;
            a->has_dims = true;
        } else if (strcmp(p->field, "cast") == 0) {
            if ((rc = tdx_parse_dtype_value(e, slot[k], at, cast)) != 0) {
                return rc;
            }
        } else if ((rc = tdx_set_arg(e, op, arg_key(p), slot[k], at, a, want_out2, NULL)) != 0) {
            return rc;
        }
    }
    for (int k = 0; k < c->nkw; k++) {
        const struct tdx_param *p = tdx_op_param_named(d, c->kwn[k]);
        if (p != NULL && p->operand) {
            continue;
        }
        if (p != NULL && strcmp(p->field, "cast") == 0) {
            if ((rc = tdx_parse_dtype_value(e, &c->kwv[k], at, cast)) != 0) {
                return rc;
            }
            continue;
        }
        if (p != NULL) {
            given[p - tdx_op_param(d, 0)] = asks(p, &c->kwv[k]);
            if (p->outsel) {
                continue;
            }
        }
        if (p == NULL && strcmp(c->kwn[k], "requires_grad") != 0 &&
            strcmp(c->kwn[k], "reduction") != 0) {
            /* torch's parameters only (and the few tensorctl accepts or explains) */
            return tdx_fail(e, at, "%s() got an unexpected keyword argument '%s'", op, c->kwn[k]);
        }
        bool rg;
        if ((rc = tdx_set_arg(e, op, p != NULL ? arg_key(p) : c->kwn[k], &c->kwv[k], at, a,
                              want_out2, &rg)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* Runs op `op` (torch's name, without a trailing '_'); with `inplace` the result is args[0]
** itself. */
int tdx_call_op(struct tdx_env *e, const struct tdx_node *at, const char *op, bool inplace,
                const struct call *c, struct value *out)
{
    const struct tdx_opdef *d = tdx_op_find(op);
    if (d == NULL || tensord_op_code(d->wire) < 0) {
        return tdx_fail(e, at, "name '%s' is not defined", op);
    }
    struct tensord_operand ins[TDX_MAX_OPERANDS];
    int nin = 0, rc;
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    bool want_out2 = false, any_grad = false, given[TDX_MAX_PARAMS] = {false};
    int cast = 0;
    struct tref *src = NULL;
    if ((rc = op_args(e, at, d, c, ins, &nin, &a, &cast, &want_out2, &any_grad, given)) != 0) {
        return rc;
    }
    /* ops.def's `-> a, b`: output i (1: out2, 2: out3) when its parameter asks for it */
    bool want[3] = {true, false, false};
    int nwant = 1;
    for (int i = 1; i < d->nout && i < 3; i++) {
        want[i] = d->when[i] < 0 || (d->when[i] < TDX_MAX_PARAMS && given[(int)d->when[i]]);
        nwant += want[i];
    }
    if (d->nout > 1) {
        want_out2 = false; /* max / min's own rule does not apply */
    }
    if (cast != 0 && nin > 0 && ins[0].kind == TENSORD_OPERAND_HANDLE &&
        (rc = cast_input(e, at, &ins[0], cast, &src)) != 0) {
        return rc;
    }
    struct tref *t = inplace ? tdx_tref_ref(c->args[0].t) : tdx_tref_new(e);
    struct tref *t2 = NULL, *t3 = NULL;
    if (t == NULL) {
        tdx_tref_unref(e, src);
        return tdx_fail(e, at, "out of memory");
    }
    if ((want_out2 || want[1]) && !inplace) {
        if ((t2 = tdx_tref_new(e)) == NULL) {
            tdx_tref_unref(e, t);
            tdx_tref_unref(e, src);
            return tdx_fail(e, at, "out of memory");
        }
        a.out2 = t2->handle;
    }
    if (want[2] && !inplace) {
        if ((t3 = tdx_tref_new(e)) == NULL) {
            tdx_tref_unref(e, t);
            tdx_tref_unref(e, t2);
            tdx_tref_unref(e, src);
            return tdx_fail(e, at, "out of memory");
        }
        a.out3 = t3->handle;
    }
    struct tensord_error err;
    uint64_t id;
    int lrc = tensord_send_op_ex(e->c, d->wire, inplace ? 0 : t->handle, ins, nin, &a, inplace, &id,
                                 &err);
    tdx_tref_unref(e, src); /* the request names it; its free waits for the next batch */
    if ((rc = tdx_send_tensor_result(e, lrc, id, t, at, &err)) != 0) {
        tdx_tref_unref(e, t);
        tdx_tref_unref(e, t2);
        tdx_tref_unref(e, t3);
        return rc;
    }
    if (inplace) {
        t->known = false; /* an in-place op may change nothing visible, but be safe */
        t->requires_grad |= any_grad && e->grad_enabled;
    } else {
        t->requires_grad = any_grad && e->grad_enabled && !tdx_op_nodiff(d);
        t->is_leaf = !t->requires_grad;
    }
    if (t2 != NULL || t3 != NULL) {
        int n = 1 + (t2 != NULL) + (t3 != NULL), k = 1;
        if ((rc = tdx_vseq(e, out, V_TUPLE, n)) != 0) {
            tdx_tref_unref(e, t);
            tdx_tref_unref(e, t2);
            tdx_tref_unref(e, t3);
            return rc;
        }
        out->items[0] = vtensor(t);
        if (t2 != NULL) {
            t2->is_leaf = true; /* indices, counts: never require grad */
            out->items[k++] = vtensor(t2);
        }
        if (t3 != NULL) {
            t3->is_leaf = true;
            out->items[k++] = vtensor(t3);
        }
        /* An unnamed output every call gives (var_mean's mean) is a value, and requires grad
        ** as output 0 does; named ones (indices) and those a flag asks for (unique's inverse
        ** and counts) are integers. */
        if (t2 != NULL && d->nout > 1 && !d->named && d->when[1] < 0) {
            t2->requires_grad = t->requires_grad;
            t2->is_leaf = !t2->requires_grad;
        }
        /* torch's named pair: prints as return_types.max(values=..., indices=...) */
        if ((d->nout == 1 || d->named) && (out->s = strdup(op)) == NULL) {
            tdx_vfree(e, out);
            return tdx_fail(e, at, "out of memory");
        }
        return 0;
    }
    *out = vtensor(t);
    return 0;
}
