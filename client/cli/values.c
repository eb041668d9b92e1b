/* values.c — tensorctl's values and names: errors raised at a position, tensor references
** (counted, freed in batches), Python values, the variables, and the pending requests whose
** replies sync() collects.
*/
#include "interp.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

int tdx_fail(struct tdx_env *e, const struct tdx_node *at, const char *fmt, ...)
{
    if (!e->has_err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err_msg, sizeof e->err_msg, fmt, ap);
        va_end(ap);
        e->has_err = true;
        e->err_line = at != NULL ? at->line : 0;
        e->err_col = at != NULL ? at->col : 0;
    }
    return TDX_ERROR;
}

void tdx_report(struct tdx_env *e, int line, int col, const char *msg)
{
    e->failed = true;
    fprintf(e->cfg.err, "%s:%d:%d: %s\n", e->file != NULL ? e->file : "<input>", line, col, msg);
    fflush(e->cfg.err);
}

/* A libtensord failure: the connection's end, or a refusal at `at`. */
int tdx_lib_fail(struct tdx_env *e, const struct tdx_node *at, const struct tensord_error *err)
{
    if (err->code == TENSORD_E_IO || err->code == TENSORD_E_PROTOCOL) {
        if (!e->broken) {
            fprintf(e->cfg.err, "tensorctl: connection lost: %s\n", err->message);
        }
        e->broken = true;
        return TDX_FATAL;
    }
    return tdx_fail(e, at, "%s", err->message);
}

/* ---- values ---- */

struct tref *tdx_tref_new(struct tdx_env *e)
{
    struct tref *t = calloc(1, sizeof *t);
    if (t != NULL) {
        t->handle = tensord_new_handle(e->c);
        t->refs = 1;
        t->is_leaf = true;
    }
    return t;
}

struct tref *tdx_tref_ref(struct tref *t)
{
    if (t != NULL) {
        t->refs++;
    }
    return t;
}

void tdx_tref_unref(struct tdx_env *e, struct tref *t)
{
    if (t == NULL || --t->refs > 0) {
        return;
    }
    if (e->ndead == e->capdead) {
        size_t ncap = e->capdead ? e->capdead * 2 : 64;
        uint64_t *d = realloc(e->dead, ncap * sizeof *d);
        if (d == NULL) {
            free(t); /* the handle stays on the server until the session ends */
            return;
        }
        e->dead = d;
        e->capdead = ncap;
    }
    e->dead[e->ndead++] = t->handle;
    free(t);
}

void tdx_vfree(struct tdx_env *e, struct value *v)
{
    free(v->s);
    tdx_tref_unref(e, v->t);
    for (int i = 0; i < v->n; i++) {
        tdx_vfree(e, &v->items[i]);
    }
    free(v->items);
    memset(v, 0, sizeof *v);
}

int tdx_vcopy(struct tdx_env *e, struct value *dst, const struct value *src)
{
    *dst = *src;
    dst->s = NULL;
    dst->items = NULL;
    dst->n = 0;
    dst->t = tdx_tref_ref(src->t);
    if (src->s != NULL && (dst->s = strdup(src->s)) == NULL) {
        tdx_vfree(e, dst);
        return tdx_fail(e, NULL, "out of memory");
    }
    if (src->n > 0) {
        if ((dst->items = calloc((size_t)src->n, sizeof *dst->items)) == NULL) {
            tdx_vfree(e, dst);
            return tdx_fail(e, NULL, "out of memory");
        }
        for (int i = 0; i < src->n; i++) {
            dst->n = i + 1;
            if (tdx_vcopy(e, &dst->items[i], &src->items[i]) != 0) {
                tdx_vfree(e, dst);
                return TDX_ERROR;
            }
        }
    }
    return 0;
}

int tdx_vstr(struct tdx_env *e, struct value *out, const char *s, size_t n)
{
    *out = (struct value){.k = V_STR};
    if ((out->s = malloc(n + 1)) == NULL) {
        return tdx_fail(e, NULL, "out of memory");
    }
    memcpy(out->s, s, n);
    out->s[n] = '\0';
    out->i = (int64_t)n;
    return 0;
}

int tdx_vseq(struct tdx_env *e, struct value *out, enum vkind k, int n)
{
    *out = (struct value){.k = k};
    if (n > 0 && (out->items = calloc((size_t)n, sizeof *out->items)) == NULL) {
        return tdx_fail(e, NULL, "out of memory");
    }
    out->n = n;
    return 0;
}

const char *tdx_type_name(const struct value *v)
{
    static const char *const names[] = {
        [V_NONE] = "NoneType",
        [V_BOOL] = "bool",
        [V_INT] = "int",
        [V_FLOAT] = "float",
        [V_STR] = "str",
        [V_TENSOR] = "Tensor",
        [V_LIST] = "list",
        [V_TUPLE] = "tuple",
        [V_SIZE] = "Size",
        [V_DTYPE] = "dtype",
        [V_FUNC] = "builtin_function_or_method",
        [V_METHOD] = "method",
        [V_CTX] = "no_grad",
        [V_RANGE] = "range",
        [V_MODULE] = "module",
        [V_NODE] = "Node",
        [V_GENERATOR] = "Generator",
    };
    return names[v->k];
}

/* ---- the pending FIFO and sync ---- */

int tdx_pend_add(struct tdx_env *e, uint64_t id, enum pkind kind, struct tref *t,
                 const struct tdx_node *at)
{
    if (e->npend == e->cappend) {
        size_t ncap = e->cappend ? e->cappend * 2 : 256;
        struct preq *p = realloc(e->pend, ncap * sizeof *p);
        if (p == NULL) {
            return tdx_fail(e, at, "out of memory");
        }
        e->pend = p;
        e->cappend = ncap;
    }
    e->pend[e->npend++] = (struct preq){.id = id,
                                        .kind = kind,
                                        .t = tdx_tref_ref(t),
                                        .line = at != NULL ? at->line : 0,
                                        .col = at != NULL ? at->col : 0};
    return 0;
}

int tdx_flush_dead(struct tdx_env *e)
{
    if (e->ndead == 0 || e->broken) {
        return 0;
    }
    struct tensord_error err;
    uint64_t id;
    if (tensord_send_free(e->c, e->dead, e->ndead, &id, &err) != 0) {
        return tdx_lib_fail(e, NULL, &err);
    }
    e->ndead = 0;
    return tdx_pend_add(e, id, P_FREE, NULL, NULL);
}

int tdx_sync(struct tdx_env *e)
{
    if (e->npend == 0) {
        return e->broken ? TDX_FATAL : 0; /* frees wait for the next batch */
    }
    int rc = tdx_flush_dead(e);
    if (rc == TDX_FATAL || e->broken) {
        return TDX_FATAL;
    }
    e->waits++;
    bool reported = false;
    for (size_t i = 0; i < e->npend; i++) {
        struct preq *p = &e->pend[i];
        struct tensord_reply r;
        struct tensord_error err;
        int lrc = e->broken ? TENSORD_E_IO : tensord_recv(e->c, &r, &err);
        if (lrc != 0 && lrc != TENSORD_E_BUFFER) {
            if (!e->broken) {
                tdx_lib_fail(e, NULL, &err);
            }
            rc = TDX_FATAL;
        } else if (r.status != 0) {
            if (p->kind != P_FREE && p->kind != P_NAME) {
                /* A failure caused by an earlier one ("input 4 failed: ...") was reported
                ** with its cause: with --keep-going say each cause once, not each echo. */
                bool cascade = r.status == TENSORD_INPUT_FAILED;
                if (e->cfg.keep_going ? !cascade : !reported) {
                    tdx_report(e, p->line, p->col, r.message);
                    reported = true;
                }
                if (rc == 0) {
                    rc = TDX_ERROR;
                }
            }
        } else if (r.has_info && p->t != NULL && p->kind != P_FREE && p->kind != P_NAME) {
            p->t->info = r.info;
            p->t->known = true;
        } else if (p->kind == P_GRAD && p->t != NULL) {
            p->t->none = true; /* .grad was None: Grad bound nothing */
        }
        tdx_tref_unref(e, p->t);
    }
    e->npend = 0;
    return rc;
}

/* Waits before a blocking call; an earlier failure is reported and wins. */
int tdx_need_sync(struct tdx_env *e)
{
    int rc = tdx_sync(e);
    if (rc == TDX_ERROR && e->cfg.keep_going) {
        rc = 0; /* reported; the statement that waits goes on */
    }
    if (rc != 0) {
        e->has_err = false;
    }
    return rc;
}

/* Makes sure t's dtype and shape are known. */
int tdx_known(struct tdx_env *e, struct tref *t, const struct tdx_node *at)
{
    int rc;
    if (!t->known && !t->none && (rc = tdx_need_sync(e)) != 0) {
        return rc;
    }
    if (t->none) {
        return tdx_fail(e, at,
                        "'NoneType' object has no attribute here (the tensor's .grad is "
                        "None)");
    }
    if (!t->known) {
        struct tensord_error err;
        e->waits++;
        if (tensord_get_meta(e->c, t->handle, &t->info, &err) != 0) {
            return tdx_lib_fail(e, at, &err);
        }
        t->known = true;
    }
    return 0;
}

/* ---- names ---- */

struct var *tdx_lookup(struct tdx_env *e, const char *name)
{
    for (int i = 0; i < e->nvars; i++) {
        if (strcmp(e->vars[i].name, name) == 0) {
            return &e->vars[i];
        }
    }
    return NULL;
}

/* Variables name their tensors in the session (SetName), so that a session resumed later, by
** tensorctl --resume or any other client, finds them by name: a variable bound to a tensor binds
** its name, one rebound to something else or deleted unbinds it. The requests are pipelined and
** their refusals not reported (P_NAME): a name is a convenience, and a tensor whose op failed
** has had its error reported already. */
static int name_sync(struct tdx_env *e, struct var *x)
{
    const struct value *v = &x->v;
    uint64_t h = v->k == V_TENSOR && v->t != NULL && !v->t->none ? v->t->handle : 0;
    if (h == x->named || e->broken) {
        return 0;
    }
    struct tensord_error err;
    uint64_t id;
    int lrc = h != 0 ? tensord_send_set_name(e->c, x->name, h, &id, &err)
                     : tensord_send_del_name(e->c, x->name, &id, &err);
    if (lrc != 0) {
        return tdx_lib_fail(e, NULL, &err);
    }
    x->named = h;
    return tdx_pend_add(e, id, P_NAME, NULL, NULL);
}

/* A new variable holding v (taken), not yet named in the session; NULL when out of memory. */
static struct var *var_append(struct tdx_env *e, const char *name, struct value *v)
{
    if (e->nvars == e->capvars) {
        int ncap = e->capvars ? e->capvars * 2 : 32;
        struct var *nv = realloc(e->vars, (size_t)ncap * sizeof *nv);
        if (nv == NULL) {
            tdx_vfree(e, v);
            tdx_fail(e, NULL, "out of memory");
            return NULL;
        }
        e->vars = nv;
        e->capvars = ncap;
    }
    char *dup = strdup(name);
    if (dup == NULL) {
        tdx_vfree(e, v);
        tdx_fail(e, NULL, "out of memory");
        return NULL;
    }
    e->vars[e->nvars++] = (struct var){.name = dup, .v = *v};
    return &e->vars[e->nvars - 1];
}

/* Binds name to v (taken). */
int tdx_bind(struct tdx_env *e, const char *name, struct value *v)
{
    struct var *x = tdx_lookup(e, name);
    if (x != NULL) {
        tdx_vfree(e, &x->v);
        x->v = *v;
        return name_sync(e, x);
    }
    if ((x = var_append(e, name, v)) == NULL) {
        return TDX_ERROR;
    }
    return name_sync(e, x);
}

void tdx_unbind(struct tdx_env *e, struct var *x)
{
    tdx_vfree(e, &x->v);
    name_sync(e, x); /* del x: the session forgets the name too */
    free(x->name);
    *x = e->vars[--e->nvars];
}

/* ---- a resumed session's names ---- */

/* A name tensorctl can bind as a variable: a Python identifier that is not a keyword. */
static bool is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) {
        return false;
    }
    for (const char *p = s + 1; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
              (*p >= '0' && *p <= '9'))) {
            return false;
        }
    }
    return !tdx_is_keyword(s);
}

struct name_list {
    char **v;
    size_t n, cap;
    bool failed;
};

static void collect_name(const char *name, void *arg)
{
    struct name_list *l = arg;
    if (l->failed || !is_identifier(name)) {
        return; /* "layer.0/w" from another client: no variable can have that name */
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, ncap * sizeof *nv);
        if (nv == NULL) {
            l->failed = true;
            return;
        }
        l->v = nv;
        l->cap = ncap;
    }
    if ((l->v[l->n] = strdup(name)) == NULL) {
        l->failed = true;
        return;
    }
    l->n++;
}

/* --resume: every name of the session that can be a variable becomes one again, holding the
** named tensor (fetched pipelined under a fresh handle), so a script or REPL resumed goes on
** using `x`. Names that are not identifiers are left alone. */
int tdx_restore_names(struct tdx_env *e)
{
    struct name_list l = {0};
    struct tensord_error err;
    int rc = 0;
    if (tensord_list_names(e->c, collect_name, &l, NULL, &err) != 0) {
        rc = tdx_lib_fail(e, NULL, &err);
    } else if (l.failed) {
        rc = tdx_fail(e, NULL, "out of memory");
    }
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        struct tref *t = tdx_tref_new(e);
        uint64_t id;
        if (t == NULL) {
            rc = tdx_fail(e, NULL, "out of memory");
            break;
        }
        int lrc = tensord_send_get_name(e->c, l.v[i], t->handle, &id, &err);
        if ((rc = tdx_send_tensor_result(e, lrc, id, t, NULL, &err)) != 0) {
            tdx_tref_unref(e, t);
            break;
        }
        /* Bound as already named: the name is the session's, and keeps its tensor. The run
        ** has not started, so no variable has this name (and the session's names are
        ** distinct): appended without a lookup, which would make a long list quadratic. */
        struct value v = vtensor(t);
        struct var *x = var_append(e, l.v[i], &v);
        if (x == NULL) {
            rc = TDX_ERROR;
            break;
        }
        x->named = t->handle;
    }
    if (rc == 0) {
        rc = tdx_sync(e);
    }
    if (rc != 0 && e->has_err) {
        fprintf(e->cfg.err, "tensorctl: restoring the session's names: %s\n", e->err_msg);
        e->has_err = false;
        e->failed = true;
    }
    if (rc == 0 && e->cfg.interactive && l.n > 0) {
        fprintf(e->cfg.err, "restored %zu variable%s from the session's names:", l.n,
                l.n == 1 ? "" : "s");
        for (size_t i = 0; i < l.n; i++) {
            fprintf(e->cfg.err, " %s", l.v[i]);
        }
        fputc('\n', e->cfg.err);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i]);
    }
    free(l.v);
    return rc;
}

/* ---- sending requests ---- */

int tdx_send_tensor_result(struct tdx_env *e, int lrc, uint64_t id, struct tref *t,
                           const struct tdx_node *at, const struct tensord_error *err)
{
    if (lrc != 0) {
        return tdx_lib_fail(e, at, err);
    }
    return tdx_pend_add(e, id, P_TENSOR, t, at);
}

int tdx_parse_dtype_value(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                          int *dt)
{
    if (v->k == V_NONE) {
        *dt = 0;
        return 0;
    }
    if (v->k == V_DTYPE) {
        *dt = v->dt;
        return 0;
    }
    if (v->k == V_FUNC &&
        (strcmp(v->s, "float") == 0 || strcmp(v->s, "int") == 0 || strcmp(v->s, "bool") == 0)) {
        *dt = v->s[0] == 'f' ? TENSORD_FLOAT32 : v->s[0] == 'i' ? TENSORD_INT32 : TENSORD_BOOL;
        return 0;
    }
    return tdx_fail(e, at, "dtype must be a tensord.dtype, not %s", tdx_type_name(v));
}

/* Flattens f(2, 3), f((2, 3)), f([2, 3]) and f(x.shape) into a shape. */
int tdx_get_shape(struct tdx_env *e, const struct value *args, int n, const struct tdx_node *at,
                  int64_t *shape, int *ndim)
{
    const struct value *items = args;
    if (n == 1 && (args[0].k == V_LIST || args[0].k == V_TUPLE || args[0].k == V_SIZE)) {
        items = args[0].items;
        n = args[0].n;
    }
    if (n > TENSORD_MAX_DIMS) {
        return tdx_fail(e, at, "too many dimensions: %d (at most %d)", n, TENSORD_MAX_DIMS);
    }
    for (int i = 0; i < n; i++) {
        if (items[i].k != V_INT) {
            return tdx_fail(e, at, "size must be a tuple of ints, but got %s at pos %d",
                            tdx_type_name(&items[i]), i);
        }
        shape[i] = items[i].i;
    }
    *ndim = n;
    return 0;
}

/* Sends a request with no tensor result of its own. */
int tdx_plain(struct tdx_env *e, int lrc, const uint64_t *id, const struct tdx_node *at,
              const struct tensord_error *err)
{
    if (lrc != 0) {
        return tdx_lib_fail(e, at, err);
    }
    return tdx_pend_add(e, *id, P_PLAIN, NULL, at);
}

int tdx_set_grad_mode(struct tdx_env *e, bool enabled, const struct tdx_node *at)
{
    struct tensord_error err;
    uint64_t id;
    int rc = tdx_plain(e, tensord_send_set_grad_enabled(e->c, enabled, &id, &err), &id, at, &err);
    if (rc == 0) {
        e->grad_enabled = enabled;
    }
    return rc;
}
