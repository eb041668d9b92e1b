/* methods.c — Tensor methods and attributes: x.item(), x.tolist(), x.size(), x.backward(),
** x.grad, x.shape, x.T, x.chunk(), x.index_put_() ... and every op that torch has as a method
** (x.sum(), x.add_(y)), which goes to ops.c's op call with x first; a Generator's methods.
*/
#include "interp.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* .item(): the one element as a Python number. The read is queued behind the requests that
** make the tensor, so it costs one round trip. */
int tdx_item(struct tdx_env *e, struct tref *t, const struct tdx_node *at, struct value *out)
{
    uint8_t buf[8];
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (t->none) {
        return tdx_fail(e, at, "'NoneType' object has no attribute 'item'");
    }
    if (tensord_send_get(e->c, t->handle, buf, sizeof buf, &id, &err) != 0) {
        return tdx_lib_fail(e, at, &err);
    }
    if ((rc = tdx_pend_add(e, id, P_TENSOR, t, at)) != 0) {
        return rc;
    }
    t->known = false;
    if ((rc = tdx_need_sync(e)) != 0) {
        return rc;
    }
    if (!t->known) {
        return tdx_fail(e, at, "the tensor could not be read");
    }
    int64_t numel = 1;
    for (int i = 0; i < t->info.ndim; i++) {
        numel *= t->info.shape[i];
    }
    if (numel != 1) {
        return tdx_fail(e, at, "a Tensor with %" PRId64 " elements cannot be converted to Scalar",
                        numel);
    }
    switch (t->info.dtype) {
    case TENSORD_FLOAT32: {
        float f;
        memcpy(&f, buf, 4);
        *out = vfloat((double)f);
        break;
    }
    case TENSORD_FLOAT64: {
        double d;
        memcpy(&d, buf, 8);
        *out = vfloat(d);
        break;
    }
    case TENSORD_INT32: {
        int32_t v;
        memcpy(&v, buf, 4);
        *out = vint(v);
        break;
    }
    case TENSORD_INT64: {
        int64_t v;
        memcpy(&v, buf, 8);
        *out = vint(v);
        break;
    }
    default: *out = vbool(buf[0] != 0); break;
    }
    return 0;
}

static int build_list(struct tdx_env *e, const uint8_t *p, enum tensord_dtype dt,
                      const int64_t *shape, int ndim, size_t *off, struct value *out)
{
    int rc;
    if (ndim == 0) {
        switch (dt) {
        case TENSORD_FLOAT32: {
            float f;
            memcpy(&f, p + *off, 4);
            *out = vfloat((double)f);
            break;
        }
        case TENSORD_FLOAT64: {
            double d;
            memcpy(&d, p + *off, 8);
            *out = vfloat(d);
            break;
        }
        case TENSORD_INT32: {
            int32_t v;
            memcpy(&v, p + *off, 4);
            *out = vint(v);
            break;
        }
        case TENSORD_INT64: {
            int64_t v;
            memcpy(&v, p + *off, 8);
            *out = vint(v);
            break;
        }
        default: *out = vbool(p[*off] != 0); break;
        }
        *off += tensord_dtype_size(dt);
        return 0;
    }
    if (shape[0] > INT32_MAX) {
        return tdx_fail(e, NULL, "tensor too large for a list");
    }
    if ((rc = tdx_vseq(e, out, V_LIST, (int)shape[0])) != 0) {
        return rc;
    }
    for (int64_t i = 0; i < shape[0]; i++) {
        if ((rc = build_list(e, p, dt, shape + 1, ndim - 1, off, &out->items[i])) != 0) {
            return rc;
        }
    }
    return 0;
}

int tdx_tolist(struct tdx_env *e, struct tref *t, const struct tdx_node *at, struct value *out)
{
    int rc;
    if ((rc = tdx_known(e, t, at)) != 0) {
        return rc;
    }
    uint8_t *data;
    if ((rc = tdx_fetch(e, t, at, &data)) != 0) {
        return rc;
    }
    size_t off = 0;
    rc = build_list(e, data, t->info.dtype, t->info.shape, t->info.ndim, &off, out);
    free(data);
    if (rc != 0) {
        tdx_vfree(e, out);
    }
    return rc;
}

static int size_value(struct tdx_env *e, struct tref *t, const struct tdx_node *at,
                      struct value *out)
{
    int rc;
    if ((rc = tdx_known(e, t, at)) != 0 || (rc = tdx_vseq(e, out, V_SIZE, t->info.ndim)) != 0) {
        return rc;
    }
    for (int i = 0; i < t->info.ndim; i++) {
        out->items[i] = vint(t->info.shape[i]);
    }
    return 0;
}

static int grad_of(struct tdx_env *e, struct tref *self, const struct tdx_node *at,
                   struct value *out)
{
    struct tref *g = tdx_tref_new(e);
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (g == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    if (tensord_send_grad(e->c, self->handle, g->handle, &id, &err) != 0) {
        tdx_tref_unref(e, g);
        return tdx_lib_fail(e, at, &err);
    }
    /* Its reply says whether .grad was None (no tensor in it), without a wait. */
    if ((rc = tdx_pend_add(e, id, P_GRAD, g, at)) != 0) {
        tdx_tref_unref(e, g);
        return rc;
    }
    *out = vtensor(g);
    return 0;
}

static const char *kwarg(const struct call *c, const char *name, int *idx)
{
    for (int k = 0; k < c->nkw; k++) {
        if (strcmp(c->kwn[k], name) == 0) {
            *idx = k;
            return name;
        }
    }
    return NULL;
}

/* ---- methods, one handler each (`name` is the name called: some serve several) ---- */

typedef int (*method_fn)(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                         const char *name, const struct call *c0, struct value *out);

static int m_item(struct tdx_env *e, const struct tdx_node *at, struct tref *self, const char *name,
                  const struct call *c0, struct value *out)
{
    return tdx_item(e, self, at, out);
}

static int m_tolist(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                    const char *name, const struct call *c0, struct value *out)
{
    return tdx_tolist(e, self, at, out);
}

/* x.size(), x.size(dim) */
static int m_size(struct tdx_env *e, const struct tdx_node *at, struct tref *self, const char *name,
                  const struct call *c0, struct value *out)
{
    struct value sz;
    int rc, k;
    if ((rc = size_value(e, self, at, &sz)) != 0) {
        return rc;
    }
    const struct value *d = c0->nargs > 0          ? &c0->args[0]
                            : kwarg(c0, "dim", &k) ? &c0->kwv[k]
                                                   : NULL;
    if (d == NULL) {
        *out = sz;
        return 0;
    }
    int64_t i = d->k == V_INT ? d->i : INT64_MAX;
    if (i < 0) {
        i += sz.n;
    }
    if (i < 0 || i >= sz.n) {
        int nd = sz.n; /* tdx_vfree clears sz */
        tdx_vfree(e, &sz);
        if (d->k != V_INT) {
            return tdx_fail(e, at, "size(): argument 'dim' must be int, not %s", tdx_type_name(d));
        }
        return tdx_fail(e, at,
                        "Dimension out of range (expected to be in range of [%d, %d], "
                        "but got %" PRId64 ")",
                        -nd, nd - 1, d->i);
    }
    *out = vint(sz.items[i].i);
    tdx_vfree(e, &sz);
    return 0;
}

/* x.dim(), x.numel() */
static int m_dim_numel(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                       const char *name, const struct call *c0, struct value *out)
{
    int rc;
    if ((rc = tdx_known(e, self, at)) != 0) {
        return rc;
    }
    int64_t n = 1;
    for (int i = 0; i < self->info.ndim; i++) {
        n *= self->info.shape[i];
    }
    *out = vint(name[0] == 'd' ? self->info.ndim : n);
    return 0;
}

static int m_backward(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                      const char *name, const struct call *c0, struct value *out)
{
    uint64_t g = 0, id;
    bool retain = false;
    int k;
    if (c0->nargs > 0 && c0->args[0].k == V_TENSOR) {
        g = c0->args[0].t->handle;
    }
    if (kwarg(c0, "gradient", &k) && c0->kwv[k].k == V_TENSOR) {
        g = c0->kwv[k].t->handle;
    }
    if (kwarg(c0, "retain_graph", &k)) {
        retain = c0->kwv[k].k == V_BOOL && c0->kwv[k].b;
    }
    struct tensord_error err;
    *out = (struct value){.k = V_NONE};
    return tdx_plain(e, tensord_send_backward(e->c, self->handle, g, retain, &id, &err), &id, at,
                     &err);
}

/* x.requires_grad_([b]), x.retain_grad() */
static int m_requires_grad(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                           const char *name, const struct call *c0, struct value *out)
{
    bool v = true, retain = name[0] == 'r' && name[2] == 't';
    int rc;
    if (c0->nargs > 0) {
        v = c0->args[0].k == V_BOOL ? c0->args[0].b : num_f(&c0->args[0]) != 0;
    }
    struct tensord_error err;
    uint64_t id;
    if ((rc = tdx_plain(e, tensord_send_set_grad(e->c, self->handle, v, false, retain, &id, &err),
                        &id, at, &err)) != 0) {
        return rc;
    }
    if (!retain) {
        self->requires_grad = v;
        *out = vtensor(tdx_tref_ref(self));
    } else {
        *out = (struct value){.k = V_NONE};
    }
    return 0;
}

/* x.float(), x.double(), x.int(), x.long(), x.bool(): x.to(dtype) */
static int m_cast(struct tdx_env *e, const struct tdx_node *at, struct tref *self, const char *name,
                  const struct call *c0, struct value *out)
{
    static const struct {
        const char *name;
        enum tensord_dtype dt;
    } CASTS[] = {{"float", TENSORD_FLOAT32},
                 {"double", TENSORD_FLOAT64},
                 {"int", TENSORD_INT32},
                 {"long", TENSORD_INT64},
                 {"bool", TENSORD_BOOL}};
    for (size_t i = 0; i < sizeof CASTS / sizeof CASTS[0]; i++) {
        if (strcmp(name, CASTS[i].name) == 0) {
            struct value a2[2] = {vtensor(self), {.k = V_DTYPE, .dt = (int)CASTS[i].dt}};
            struct call cc = {.args = a2, .nargs = 2};
            return tdx_call_op(e, at, "to", false, &cc, out);
        }
    }
    return tdx_fail(e, at, "'Tensor' object has no attribute '%s'", name);
}

/* The call c0 with self put first, its arguments copied into args (1 + c0->nargs slots). */
static struct call self_first(struct tref *self, const struct call *c0, struct value *args)
{
    args[0] = vtensor(self);
    memcpy(args + 1, c0->args, (size_t)c0->nargs * sizeof *args);
    return (struct call){.args = args,
                         .nargs = c0->nargs + 1,
                         .kwn = c0->kwn,
                         .kwv = c0->kwv,
                         .nkw = c0->nkw};
}

/* x.chunk(n), x.split(k), x.unbind(): builtins.c's functions with x first. */
static int m_views(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                   const char *name, const struct call *c0, struct value *out)
{
    struct value args[16]; /* self first; tdx_method bounds nargs */
    struct call c = self_first(self, c0, args);
    return tdx_func(e, at, name, &c, out);
}

/* x.index_put_() and x.index_put(): torch's methods on the op index_put, which the op table
** has as internal (its indices are a tuple, not operands). */
static bool is_index_put(const char *name)
{
    return strncmp(name, "index_put", 9) == 0 && strspn(name + 9, "_") == strlen(name + 9) &&
           strlen(name + 9) <= 1;
}

static int m_index_put(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                       const char *name, const struct call *c0, struct value *out)
{
    return tdx_index_put_method(e, at, self, name[strlen(name) - 1] == '_', c0, out);
}

/* Tensor methods that are not ops (those come from the op table). */
static const struct {
    const char *name;
    method_fn fn;
} METHODS[] = {
    {"backward", m_backward},
    {"item", m_item},
    {"tolist", m_tolist},
    {"size", m_size},
    {"dim", m_dim_numel},
    {"numel", m_dim_numel},
    {"requires_grad_", m_requires_grad},
    {"retain_grad", m_requires_grad},
    {"float", m_cast},
    {"double", m_cast},
    {"long", m_cast},
    {"int", m_cast},
    {"bool", m_cast},
    {"chunk", m_views},
    {"split", m_views},
    {"unbind", m_views},
};

/* Tensor attributes (tdx_attribute), offered for completion with the methods. */
static const char *const ATTRIBUTES[] = {
    "shape", "dtype", "grad", "T", "mT", "ndim", "requires_grad", "is_leaf", "grad_fn",
};

/* An op as a method: x.name(args) is name(x, args); x.name_(args) is its in-place form. */
static int op_method(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                     const char *name, const struct call *c0, struct value *out)
{
    struct value args[16]; /* self first */
    struct call c = self_first(self, c0, args);
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '_' && name[n - 2] != '_') {
        char base[64];
        snprintf(base, sizeof base, "%.*s", (int)(n - 1), name);
        if (tdx_op_is_method(base, true)) {
            if (strcmp(base, "random") == 0 && c0->nargs == 1) {
                /* torch's x.random_(to) is x.random_(0, to) (ops.def flags random OVERLOADED) */
                args[2] = args[1];
                args[1] = vint(0);
                c.nargs = 3;
            }
            return tdx_call_op(e, at, base, true, &c, out);
        }
    }
    if (tdx_op_is_method(name, false)) {
        /* torch's x.max(y) is maximum; x.max() and x.max(dim) the reduction */
        if ((strcmp(name, "max") == 0 || strcmp(name, "min") == 0) && c0->nargs == 1 &&
            c0->args[0].k == V_TENSOR) {
            return tdx_call_op(e, at, name[1] == 'a' ? "maximum" : "minimum", false, &c, out);
        }
        return tdx_call_op(e, at, name, false, &c, out);
    }
    return tdx_fail(e, at, "'Tensor' object has no attribute '%s'", name);
}

int tdx_method(struct tdx_env *e, const struct tdx_node *at, struct tref *self, const char *name,
               const struct call *c0, struct value *out)
{
    if (c0->nargs >= 15) {
        return tdx_fail(e, at, "too many arguments");
    }
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        if (strcmp(METHODS[i].name, name) == 0) {
            return METHODS[i].fn(e, at, self, name, c0, out);
        }
    }
    if (strcmp(name, "numpy") == 0) {
        return tdx_fail(e, at, "numpy() is not available in tensorctl; use tolist()");
    }
    if (is_index_put(name)) {
        return m_index_put(e, at, self, name, c0, out);
    }
    return op_method(e, at, self, name, c0, out);
}

static bool is_method_name(const char *name)
{
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        if (strcmp(METHODS[i].name, name) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof ATTRIBUTES / sizeof ATTRIBUTES[0]; i++) {
        if (strcmp(ATTRIBUTES[i], name) == 0) {
            return true;
        }
    }
    size_t n = strlen(name);
    bool inplace = n > 0 && name[n - 1] == '_';
    char base[64];
    snprintf(base, sizeof base, "%.*s", (int)(inplace ? n - 1 : n), name);
    return tdx_op_is_method(base, inplace) || strcmp(name, "numpy") == 0 || is_index_put(name);
}

int tdx_attribute(struct tdx_env *e, const struct tdx_node *at, const struct value *obj,
                  const char *name, struct value *out)
{
    int rc;
    if (obj->k == V_MODULE) {
        return tdx_module_attr(e, at, obj->s, name, out);
    }
    if (obj->k == V_TUPLE && obj->s != NULL && obj->n == 2 &&
        (strcmp(name, "values") == 0 || strcmp(name, "indices") == 0)) {
        return tdx_vcopy(e, out, &obj->items[name[0] == 'v' ? 0 : 1]);
    }
    if (obj->k == V_GENERATOR) {
        static const char *const GEN_METHODS[] = {"manual_seed", "seed", "initial_seed",
                                                  "get_state", "set_state"};
        for (size_t i = 0; i < sizeof GEN_METHODS / sizeof GEN_METHODS[0]; i++) {
            if (strcmp(name, GEN_METHODS[i]) == 0) {
                *out = (struct value){.k = V_METHOD, .b = true, .t = tdx_tref_ref(obj->t)};
                if ((out->s = strdup(name)) == NULL) {
                    tdx_vfree(e, out);
                    return tdx_fail(e, at, "out of memory");
                }
                return 0;
            }
        }
        if (strcmp(name, "device") == 0) {
            return tdx_vstr(e, out, "cpu", 3);
        }
        return tdx_fail(e, at, "'tensord._C.Generator' object has no attribute '%s'", name);
    }
    if (obj->k != V_TENSOR) {
        if (obj->k == V_DTYPE && strcmp(name, "is_floating_point") == 0) {
            *out = vbool(obj->dt == TENSORD_FLOAT32 || obj->dt == TENSORD_FLOAT64);
            return 0;
        }
        return tdx_fail(e, at, "'%s' object has no attribute '%s'", tdx_type_name(obj), name);
    }
    struct tref *t = obj->t;
    if (t->none) {
        return tdx_fail(e, at, "'NoneType' object has no attribute '%s'", name);
    }
    if (strcmp(name, "shape") == 0) {
        return size_value(e, t, at, out);
    }
    if (strcmp(name, "dtype") == 0) {
        if ((rc = tdx_known(e, t, at)) == 0) {
            *out = (struct value){.k = V_DTYPE, .dt = t->info.dtype};
        }
        return rc;
    }
    if (strcmp(name, "ndim") == 0) {
        if ((rc = tdx_known(e, t, at)) == 0) {
            *out = vint(t->info.ndim);
        }
        return rc;
    }
    if (strcmp(name, "grad") == 0) {
        return grad_of(e, t, at, out);
    }
    if (strcmp(name, "requires_grad") == 0) {
        *out = vbool(t->requires_grad);
        return 0;
    }
    if (strcmp(name, "is_leaf") == 0) {
        *out = vbool(t->is_leaf);
        return 0;
    }
    if (strcmp(name, "grad_fn") == 0) {
        /* the node's name rides on the reply of the op that made t */
        if ((rc = tdx_known(e, t, at)) != 0) {
            return rc;
        }
        if (t->info.grad_fn[0] == '\0') {
            *out = (struct value){.k = V_NONE};
            return 0;
        }
        *out = (struct value){.k = V_NODE, .s = strdup(t->info.grad_fn)};
        return out->s != NULL ? 0 : tdx_fail(e, at, "out of memory");
    }
    if (strcmp(name, "T") == 0 || strcmp(name, "mT") == 0 || strcmp(name, "data") == 0) {
        struct value a1[1] = {vtensor(t)};
        struct call c = {.args = a1, .nargs = 1};
        if (name[0] == 'd') {
            return tdx_call_op(e, at, "detach", false, &c, out);
        }
        if (name[0] == 'm') {
            return tdx_call_op(e, at, "mT", false, &c, out);
        }
        if ((rc = tdx_known(e, t, at)) != 0) {
            return rc;
        }
        if (t->info.ndim <= 2) {
            return tdx_call_op(e, at, "t", false, &c, out);
        }
        /* torch's .T reverses every dim */
        struct value a2[2] = {vtensor(t), {.k = V_TUPLE}};
        struct value dims[TENSORD_MAX_DIMS];
        for (int i = 0; i < t->info.ndim; i++) {
            dims[i] = vint(t->info.ndim - 1 - i);
        }
        a2[1].items = dims;
        a2[1].n = t->info.ndim;
        struct call c2 = {.args = a2, .nargs = 2};
        return tdx_call_op(e, at, "permute", false, &c2, out);
    }
    if (is_method_name(name)) {
        *out = (struct value){.k = V_METHOD, .t = tdx_tref_ref(t)};
        if ((out->s = strdup(name)) == NULL) {
            tdx_vfree(e, out);
            return tdx_fail(e, at, "out of memory");
        }
        return 0;
    }
    return tdx_fail(e, at, "'Tensor' object has no attribute '%s'", name);
}

/* Completion after "x.": a tensor's methods and attributes, not torch's functions such as eye
** or cat. */
void tdx_complete_methods(const char *prefix, void (*fn)(const char *name, void *arg), void *arg)
{
    size_t n = strlen(prefix);
    const struct tdx_opdef *op;
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        if (strncmp(METHODS[i].name, prefix, n) == 0) {
            fn(METHODS[i].name, arg);
        }
    }
    for (size_t i = 0; i < sizeof ATTRIBUTES / sizeof ATTRIBUTES[0]; i++) {
        if (strncmp(ATTRIBUTES[i], prefix, n) == 0) {
            fn(ATTRIBUTES[i], arg);
        }
    }
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        if (strncmp(op->name, prefix, n) == 0 && tdx_op_is_method(op->name, false)) {
            fn(op->name, arg);
        }
    }
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        if (tdx_op_is_method(op->name, true) && strncmp(op->inplace, prefix, n) == 0) {
            fn(op->inplace, arg);
        }
    }
}
