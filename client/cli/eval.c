/* eval.c — runs tensorctl statements against a tensord session.
**
** Values are Python's (None, bools, ints, floats, strings, lists, tuples, shapes, dtypes) or
** tensors, which are references to server handles (`struct tref`, counted here so that `y = x`
** shares one handle and the last reference frees it). An operation on tensors queues its request
** and returns at once with a fresh handle for the result; the request is remembered in `pend`
** with the position of the code that sent it. sync() collects the replies in order, notes each
** tensor's dtype and shape, and reports the first refusal at its position. Only what needs an
** answer syncs: printing, item(), shapes, meta-commands, the end of a run. Frees of dropped
** handles are batched into one request per statement.
**
** Python semantics are kept where they show: number arithmetic happens here with Python's
** rules, printed text is Python's repr (and the server's torch-identical text for tensors),
** in-place augmented assignment on a tensor updates it. This file knows libtensord's calls,
** not the wire.
*/
#include "eval.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/safetensors.h"
#include "base/strbuf.h"
#include "format.h"
#include "ops.h"
#include "tensord.h"

#define TDX_MAX_OPERANDS 64   /* operands one op call may send */
#define TDX_MAX_PARAMS 16     /* parameters of one op that a call may use */
#define FORMAT_CAP (4u << 20)   /* the largest printed tensor text (torch summarises big ones) */

struct tref {
    uint64_t handle;
    int refs;
    bool known;                 /* info holds the server's dtype and shape */
    bool none;                  /* a .grad that turned out to be None */
    bool requires_grad;         /* tracked here as torch would set it */
    bool is_leaf;
    struct tensord_info info;
};

enum vkind {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TENSOR, V_LIST, V_TUPLE, V_SIZE, V_DTYPE, V_FUNC,
    V_METHOD, V_CTX, V_RANGE, V_MODULE, V_NODE,
};

struct value {
    enum vkind k;
    bool b;
    int64_t i;                  /* V_INT; V_RANGE start */
    double f;
    int dt;                     /* V_DTYPE; V_CTX: the grad mode it sets */
    int64_t stop, step;         /* V_RANGE */
    char *s;                    /* V_STR text, V_FUNC / V_METHOD / V_NODE name: owned */
    struct tref *t;             /* V_TENSOR, V_METHOD's self: a reference */
    struct value *items;        /* V_LIST, V_TUPLE, V_SIZE (ints): owned */
    int n;
};

enum pkind { P_TENSOR, P_PLAIN, P_GRAD, P_FREE };

struct preq {
    uint64_t id;
    enum pkind kind;
    struct tref *t;             /* a reference, or NULL */
    int line, col;
};

struct var {
    char *name;
    struct value v;
};

struct tdx_env {
    struct tensord *c;
    struct tdx_config cfg;
    struct var *vars;
    int nvars, capvars;
    struct preq *pend;
    size_t npend, cappend;
    uint64_t *dead;
    size_t ndead, capdead;
    bool grad_enabled;
    bool timing;
    bool broken;
    bool failed;                /* an error was reported during this run */
    const char *file;
    char *fmt;                  /* FORMAT_CAP bytes, allocated on first print */
    unsigned long waits;
    /* the error being raised */
    bool has_err;
    int err_line, err_col;
    char err_msg[600];
};

/* ---- errors ---- */

static int fail(struct tdx_env *e, const struct tdx_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct tdx_env *e, const struct tdx_node *at, const char *fmt, ...)
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

static void report(struct tdx_env *e, int line, int col, const char *msg)
{
    e->failed = true;
    fprintf(e->cfg.err, "%s:%d:%d: %s\n", e->file != NULL ? e->file : "<input>", line, col, msg);
    fflush(e->cfg.err);
}

/* A libtensord failure: the connection's end, or a refusal at `at`. */
static int lib_fail(struct tdx_env *e, const struct tdx_node *at, const struct tensord_error *err)
{
    if (err->code == TENSORD_E_IO || err->code == TENSORD_E_PROTOCOL) {
        if (!e->broken) {
            fprintf(e->cfg.err, "tensorctl: connection lost: %s\n", err->message);
        }
        e->broken = true;
        return TDX_FATAL;
    }
    return fail(e, at, "%s", err->message);
}

/* ---- values ---- */

static struct tref *tref_new(struct tdx_env *e)
{
    struct tref *t = calloc(1, sizeof *t);
    if (t != NULL) {
        t->handle = tensord_new_handle(e->c);
        t->refs = 1;
        t->is_leaf = true;
    }
    return t;
}

static struct tref *tref_ref(struct tref *t)
{
    if (t != NULL) {
        t->refs++;
    }
    return t;
}

static void tref_unref(struct tdx_env *e, struct tref *t)
{
    if (t == NULL || --t->refs > 0) {
        return;
    }
    if (e->ndead == e->capdead) {
        size_t ncap = e->capdead ? e->capdead * 2 : 64;
        uint64_t *d = realloc(e->dead, ncap * sizeof *d);
        if (d == NULL) {
            free(t);  /* the handle stays on the server until the session ends */
            return;
        }
        e->dead = d;
        e->capdead = ncap;
    }
    e->dead[e->ndead++] = t->handle;
    free(t);
}

static void vfree(struct tdx_env *e, struct value *v)
{
    free(v->s);
    tref_unref(e, v->t);
    for (int i = 0; i < v->n; i++) {
        vfree(e, &v->items[i]);
    }
    free(v->items);
    memset(v, 0, sizeof *v);
}

static int vcopy(struct tdx_env *e, struct value *dst, const struct value *src)
{
    *dst = *src;
    dst->s = NULL;
    dst->items = NULL;
    dst->n = 0;
    dst->t = tref_ref(src->t);
    if (src->s != NULL && (dst->s = strdup(src->s)) == NULL) {
        vfree(e, dst);
        return fail(e, NULL, "out of memory");
    }
    if (src->n > 0) {
        if ((dst->items = calloc((size_t)src->n, sizeof *dst->items)) == NULL) {
            vfree(e, dst);
            return fail(e, NULL, "out of memory");
        }
        for (int i = 0; i < src->n; i++) {
            dst->n = i + 1;
            if (vcopy(e, &dst->items[i], &src->items[i]) != 0) {
                vfree(e, dst);
                return TDX_ERROR;
            }
        }
    }
    return 0;
}

static struct value vint(int64_t i)
{
    return (struct value){.k = V_INT, .i = i};
}

static struct value vfloat(double f)
{
    return (struct value){.k = V_FLOAT, .f = f};
}

static struct value vbool(bool b)
{
    return (struct value){.k = V_BOOL, .b = b};
}

static struct value vtensor(struct tref *t)
{
    return (struct value){.k = V_TENSOR, .t = t};
}

static int vstr(struct tdx_env *e, struct value *out, const char *s, size_t n)
{
    *out = (struct value){.k = V_STR};
    if ((out->s = malloc(n + 1)) == NULL) {
        return fail(e, NULL, "out of memory");
    }
    memcpy(out->s, s, n);
    out->s[n] = '\0';
    out->i = (int64_t)n;
    return 0;
}

static int vseq(struct tdx_env *e, struct value *out, enum vkind k, int n)
{
    *out = (struct value){.k = k};
    if (n > 0 && (out->items = calloc((size_t)n, sizeof *out->items)) == NULL) {
        return fail(e, NULL, "out of memory");
    }
    out->n = n;
    return 0;
}

static bool is_num(const struct value *v)
{
    return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL;
}

static double num_f(const struct value *v)
{
    return v->k == V_FLOAT ? v->f : v->k == V_INT ? (double)v->i : v->b;
}

static int64_t num_i(const struct value *v)
{
    return v->k == V_INT ? v->i : v->k == V_BOOL ? v->b : (int64_t)v->f;
}

static const char *type_name(const struct value *v)
{
    static const char *const names[] = {
        [V_NONE] = "NoneType", [V_BOOL] = "bool", [V_INT] = "int", [V_FLOAT] = "float",
        [V_STR] = "str", [V_TENSOR] = "Tensor", [V_LIST] = "list", [V_TUPLE] = "tuple",
        [V_SIZE] = "Size", [V_DTYPE] = "dtype", [V_FUNC] = "builtin_function_or_method",
        [V_METHOD] = "method", [V_CTX] = "no_grad", [V_RANGE] = "range",
        [V_MODULE] = "module", [V_NODE] = "Node",
    };
    return names[v->k];
}

/* ---- the pending FIFO and sync ---- */

static int pend_add(struct tdx_env *e, uint64_t id, enum pkind kind, struct tref *t,
                    const struct tdx_node *at)
{
    if (e->npend == e->cappend) {
        size_t ncap = e->cappend ? e->cappend * 2 : 256;
        struct preq *p = realloc(e->pend, ncap * sizeof *p);
        if (p == NULL) {
            return fail(e, at, "out of memory");
        }
        e->pend = p;
        e->cappend = ncap;
    }
    e->pend[e->npend++] = (struct preq){.id = id, .kind = kind, .t = tref_ref(t),
                                        .line = at != NULL ? at->line : 0,
                                        .col = at != NULL ? at->col : 0};
    return 0;
}

static int flush_dead(struct tdx_env *e)
{
    if (e->ndead == 0 || e->broken) {
        return 0;
    }
    struct tensord_error err;
    uint64_t id;
    if (tensord_send_free(e->c, e->dead, e->ndead, &id, &err) != 0) {
        return lib_fail(e, NULL, &err);
    }
    e->ndead = 0;
    return pend_add(e, id, P_FREE, NULL, NULL);
}

int tdx_sync(struct tdx_env *e)
{
    if (e->npend == 0) {
        return e->broken ? TDX_FATAL : 0;  /* frees wait for the next batch */
    }
    int rc = flush_dead(e);
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
                lib_fail(e, NULL, &err);
            }
            rc = TDX_FATAL;
        } else if (r.status != 0) {
            if (p->kind != P_FREE) {
                /* A failure caused by an earlier one ("input 4 failed: ...") was reported
                ** with its cause: with --keep-going say each cause once, not each echo. */
                bool cascade = r.status == TENSORD_INPUT_FAILED;
                if (e->cfg.keep_going ? !cascade : !reported) {
                    report(e, p->line, p->col, r.message);
                    reported = true;
                }
                if (rc == 0) {
                    rc = TDX_ERROR;
                }
            }
        } else if (r.has_info && p->t != NULL && p->kind != P_FREE) {
            p->t->info = r.info;
            p->t->known = true;
        } else if (p->kind == P_GRAD && p->t != NULL) {
            p->t->none = true;  /* .grad was None: Grad bound nothing */
        }
        tref_unref(e, p->t);
    }
    e->npend = 0;
    return rc;
}

/* Waits before a blocking call; an earlier failure is reported and wins. */
static int need_sync(struct tdx_env *e)
{
    int rc = tdx_sync(e);
    if (rc == TDX_ERROR && e->cfg.keep_going) {
        rc = 0;  /* reported; the statement that waits goes on */
    }
    if (rc != 0) {
        e->has_err = false;
    }
    return rc;
}

/* Makes sure t's dtype and shape are known. */
static int known(struct tdx_env *e, struct tref *t, const struct tdx_node *at)
{
    int rc;
    if (!t->known && !t->none && (rc = need_sync(e)) != 0) {
        return rc;
    }
    if (t->none) {
        return fail(e, at, "'NoneType' object has no attribute here (the tensor's .grad is "
                    "None)");
    }
    if (!t->known) {
        struct tensord_error err;
        e->waits++;
        if (tensord_get_meta(e->c, t->handle, &t->info, &err) != 0) {
            return lib_fail(e, at, &err);
        }
        t->known = true;
    }
    return 0;
}

/* ---- number formatting, as Python's repr ---- */

static void fmt_float(double x, char *buf, size_t cap)
{
    tdx_float_repr(x, buf, cap);
}

/* ---- text output ---- */

static void str_repr(struct td_strbuf *b, const char *s, size_t n)
{
    char q = memchr(s, '\'', n) != NULL && memchr(s, '"', n) == NULL ? '"' : '\'';
    td_strbuf_append(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (unsigned char)q) {
            td_strbuf_printf(b, "\\%c", c);
        } else if (c == '\n') {
            td_strbuf_puts(b, "\\n");
        } else if (c == '\t') {
            td_strbuf_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            td_strbuf_printf(b, "\\x%02x", c);
        } else {
            td_strbuf_append(b, (const char *)&c, 1);
        }
    }
    td_strbuf_append(b, &q, 1);
}

static const char *dtype_str(int dt)
{
    return tensord_dtype_name((enum tensord_dtype)dt);
}

static int tensor_text(struct tdx_env *e, struct tref *t, const struct tdx_node *at,
                       struct td_strbuf *b)
{
    int rc;
    if (!t->none && (rc = need_sync(e)) != 0) {
        return rc;
    }
    if (t->none) {
        td_strbuf_puts(b, "None");
        return 0;
    }
    if (e->fmt == NULL && (e->fmt = malloc(FORMAT_CAP)) == NULL) {
        return fail(e, at, "out of memory");
    }
    struct tensord_error err;
    e->waits++;
    if (tensord_format(e->c, t->handle, e->fmt, FORMAT_CAP, &err) != 0) {
        return lib_fail(e, at, &err);
    }
    td_strbuf_puts(b, e->fmt);
    return 0;
}

/* repr(v) (str(v) when `str` and v is a string) appended to b. */
static int vtext(struct tdx_env *e, const struct value *v, bool str, const struct tdx_node *at,
                 struct td_strbuf *b)
{
    char num[64];
    int rc;
    switch (v->k) {
    case V_NONE: td_strbuf_puts(b, "None"); return 0;
    case V_BOOL: td_strbuf_puts(b, v->b ? "True" : "False"); return 0;
    case V_INT: td_strbuf_printf(b, "%" PRId64, v->i); return 0;
    case V_FLOAT: fmt_float(v->f, num, sizeof num); td_strbuf_puts(b, num); return 0;
    case V_STR:
        if (str) {
            td_strbuf_append(b, v->s, (size_t)v->i);
        } else {
            str_repr(b, v->s, (size_t)v->i);
        }
        return 0;
    case V_TENSOR: return tensor_text(e, v->t, at, b);
    case V_LIST: case V_TUPLE: case V_SIZE:
        if (v->k == V_TUPLE && v->s != NULL && v->n == 2) {  /* max/min with a dim */
            td_strbuf_printf(b, "tensord.return_types.%s(\nvalues=", v->s);
            if ((rc = vtext(e, &v->items[0], false, at, b)) != 0) {
                return rc;
            }
            td_strbuf_puts(b, ",\nindices=");
            if ((rc = vtext(e, &v->items[1], false, at, b)) != 0) {
                return rc;
            }
            td_strbuf_puts(b, ")");
            return 0;
        }
        td_strbuf_puts(b, v->k == V_LIST ? "[" : v->k == V_TUPLE ? "(" : "tensord.Size([");
        for (int i = 0; i < v->n; i++) {
            if (i > 0) {
                td_strbuf_puts(b, ", ");
            }
            if ((rc = vtext(e, &v->items[i], false, at, b)) != 0) {
                return rc;
            }
        }
        td_strbuf_puts(b, v->k == V_LIST ? "]" : v->k == V_SIZE ? "])" : v->n == 1 ? ",)" : ")");
        return 0;
    case V_DTYPE: td_strbuf_printf(b, "tensord.%s", dtype_str(v->dt)); return 0;
    case V_FUNC: td_strbuf_printf(b, "<built-in function %s>", v->s); return 0;
    case V_METHOD: td_strbuf_printf(b, "<built-in method %s of Tensor object>", v->s); return 0;
    case V_CTX: td_strbuf_puts(b, v->dt ? "<enable_grad>" : "<no_grad>"); return 0;
    case V_MODULE: td_strbuf_printf(b, "<module '%s'>", v->s); return 0;
    /* torch adds " at 0x…", an address in its process; here there is none to show */
    case V_NODE: td_strbuf_printf(b, "<%s object>", v->s); return 0;
    case V_RANGE:
        if (v->step == 1) {
            td_strbuf_printf(b, "range(%" PRId64 ", %" PRId64 ")", v->i, v->stop);
        } else {
            td_strbuf_printf(b, "range(%" PRId64 ", %" PRId64 ", %" PRId64 ")", v->i, v->stop, v->step);
        }
        return 0;
    }
    return 0;
}

/* A float as strict JSON (RFC 8259 has no NaN or Infinity, and parsers such as Python's
** json.loads(parse_constant=...) or JavaScript's JSON.parse refuse them): NaN is null, and the
** infinities are the strings "inf" and "-inf", so np.array(data, dtype=float) and float() read
** every value back. */
static void json_float(double d, char *num, size_t cap)
{
    if (isnan(d)) {
        snprintf(num, cap, "null");
    } else if (isinf(d)) {
        snprintf(num, cap, "%s", d > 0 ? "\"inf\"" : "\"-inf\"");
    } else {
        fmt_float(d, num, cap);
    }
}

/* JSON for --json: tensors as {"shape", "dtype", "data"}. */
static int json_data(struct td_strbuf *b, const uint8_t *p, enum tensord_dtype dt, const int64_t *shape,
                     int ndim, size_t *off)
{
    if (ndim == 0) {
        char num[64];
        switch (dt) {
        case TENSORD_FLOAT32: {
            float f;
            memcpy(&f, p + *off, 4);
            json_float((double)f, num, sizeof num);
            break;
        }
        case TENSORD_FLOAT64: {
            double d;
            memcpy(&d, p + *off, 8);
            json_float(d, num, sizeof num);
            break;
        }
        case TENSORD_INT32: {
            int32_t v;
            memcpy(&v, p + *off, 4);
            snprintf(num, sizeof num, "%" PRId32, v);
            break;
        }
        case TENSORD_INT64: {
            int64_t v;
            memcpy(&v, p + *off, 8);
            snprintf(num, sizeof num, "%" PRId64, v);
            break;
        }
        default:
            snprintf(num, sizeof num, "%s", p[*off] ? "true" : "false");
            break;
        }
        *off += tensord_dtype_size(dt);
        td_strbuf_puts(b, num);
        return 0;
    }
    td_strbuf_puts(b, "[");
    for (int64_t i = 0; i < shape[0]; i++) {
        if (i > 0) {
            td_strbuf_puts(b, ", ");
        }
        json_data(b, p, dt, shape + 1, ndim - 1, off);
    }
    td_strbuf_puts(b, "]");
    return 0;
}


/* A tensor's bytes (its info must be known), in a malloc'd buffer the caller frees: a blocking
** wait. */
static int fetch(struct tdx_env *e, struct tref *t, const struct tdx_node *at, uint8_t **out)
{
    uint8_t *data = malloc(t->info.nbytes > 0 ? t->info.nbytes : 1);
    struct tensord_error err;
    if (data == NULL) {
        return fail(e, at, "out of memory");
    }
    e->waits++;
    if (tensord_get(e->c, t->handle, &t->info, data, t->info.nbytes, &err) != 0) {
        free(data);
        return lib_fail(e, at, &err);
    }
    *out = data;
    return 0;
}

static void json_str(struct td_strbuf *b, const char *s, size_t n)
{
    td_strbuf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            td_strbuf_printf(b, "\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            td_strbuf_printf(b, "\\u%04x", c);
        } else {
            td_strbuf_append(b, (const char *)&c, 1);
        }
    }
    td_strbuf_puts(b, "\"");
}

static int vjson(struct tdx_env *e, const struct value *v, const struct tdx_node *at, struct td_strbuf *b)
{
    int rc;
    char num[64];
    switch (v->k) {
    case V_NONE: td_strbuf_puts(b, "null"); return 0;
    case V_BOOL: td_strbuf_puts(b, v->b ? "true" : "false"); return 0;
    case V_INT: td_strbuf_printf(b, "%" PRId64, v->i); return 0;
    case V_FLOAT: json_float(v->f, num, sizeof num); td_strbuf_puts(b, num); return 0;
    case V_STR: json_str(b, v->s, (size_t)v->i); return 0;
    case V_LIST: case V_TUPLE: case V_SIZE:
        td_strbuf_puts(b, "[");
        for (int i = 0; i < v->n; i++) {
            if (i > 0) {
                td_strbuf_puts(b, ", ");
            }
            if ((rc = vjson(e, &v->items[i], at, b)) != 0) {
                return rc;
            }
        }
        td_strbuf_puts(b, "]");
        return 0;
    case V_TENSOR: {
        struct tref *t = v->t;
        if ((rc = known(e, t, at)) != 0) {
            return rc;
        }
        uint8_t *data;
        if ((rc = fetch(e, t, at, &data)) != 0) {
            return rc;
        }
        td_strbuf_puts(b, "{\"shape\": [");
        for (int i = 0; i < t->info.ndim; i++) {
            td_strbuf_printf(b, "%s%" PRId64, i > 0 ? ", " : "", t->info.shape[i]);
        }
        td_strbuf_printf(b, "], \"dtype\": \"%s\", \"data\": ", dtype_str(t->info.dtype));
        size_t off = 0;
        json_data(b, data, t->info.dtype, t->info.shape, t->info.ndim, &off);
        td_strbuf_puts(b, "}");
        free(data);
        return 0;
    }
    case V_DTYPE: td_strbuf_printf(b, "\"%s\"", dtype_str(v->dt)); return 0;
    default: {
        /* functions, ranges, modules: JSON has no such values, so their repr as a string */
        struct td_strbuf t;
        td_strbuf_init(&t, 0);
        rc = vtext(e, v, false, at, &t);
        if (rc == 0) {
            json_str(b, td_strbuf_str(&t), t.len);
        }
        td_strbuf_free(&t);
        return rc;
    }
    }
}

/* ---- names ---- */

static struct var *lookup(struct tdx_env *e, const char *name)
{
    for (int i = 0; i < e->nvars; i++) {
        if (strcmp(e->vars[i].name, name) == 0) {
            return &e->vars[i];
        }
    }
    return NULL;
}

/* Binds name to v (taken). */
static int bind(struct tdx_env *e, const char *name, struct value *v)
{
    struct var *x = lookup(e, name);
    if (x != NULL) {
        vfree(e, &x->v);
        x->v = *v;
        return 0;
    }
    if (e->nvars == e->capvars) {
        int ncap = e->capvars ? e->capvars * 2 : 32;
        struct var *nv = realloc(e->vars, (size_t)ncap * sizeof *nv);
        if (nv == NULL) {
            vfree(e, v);
            return fail(e, NULL, "out of memory");
        }
        e->vars = nv;
        e->capvars = ncap;
    }
    char *dup = strdup(name);
    if (dup == NULL) {
        vfree(e, v);
        return fail(e, NULL, "out of memory");
    }
    e->vars[e->nvars++] = (struct var){.name = dup, .v = *v};
    return 0;
}

static void unbind(struct tdx_env *e, struct var *x)
{
    vfree(e, &x->v);
    free(x->name);
    *x = e->vars[--e->nvars];
}

static const char *const DTYPES[][2] = {
    {"float32", "1"}, {"float", "1"}, {"float64", "2"}, {"double", "2"}, {"int32", "3"},
    {"int64", "4"}, {"long", "4"}, {"bool_", "5"},
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

static const char *const METHODS[] = {
    "backward", "item", "tolist", "size", "dim", "numel", "requires_grad_", "retain_grad",
    "float", "double", "long", "int", "bool", "shape", "dtype", "grad", "T", "mT", "ndim",
    "requires_grad", "is_leaf", "grad_fn",
};

/* ---- sending requests ---- */

static int send_tensor_result(struct tdx_env *e, int lrc, uint64_t id, struct tref *t,
                              const struct tdx_node *at, const struct tensord_error *err)
{
    if (lrc != 0) {
        return lib_fail(e, at, err);
    }
    return pend_add(e, id, P_TENSOR, t, at);
}

static int parse_dtype_value(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
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
    if (v->k == V_FUNC && (strcmp(v->s, "float") == 0 || strcmp(v->s, "int") == 0 ||
                           strcmp(v->s, "bool") == 0)) {
        *dt = v->s[0] == 'f' ? TENSORD_FLOAT32 : v->s[0] == 'i' ? TENSORD_INT32 : TENSORD_BOOL;
        return 0;
    }
    return fail(e, at, "dtype must be a tensord.dtype, not %s", type_name(v));
}

/* Flattens f(2, 3), f((2, 3)), f([2, 3]) and f(x.shape) into a shape. */
static int get_shape(struct tdx_env *e, const struct value *args, int n,
                     const struct tdx_node *at, int64_t *shape, int *ndim)
{
    const struct value *items = args;
    if (n == 1 && (args[0].k == V_LIST || args[0].k == V_TUPLE || args[0].k == V_SIZE)) {
        items = args[0].items;
        n = args[0].n;
    }
    if (n > TENSORD_MAX_DIMS) {
        return fail(e, at, "too many dimensions: %d (at most %d)", n, TENSORD_MAX_DIMS);
    }
    for (int i = 0; i < n; i++) {
        if (items[i].k != V_INT) {
            return fail(e, at, "size must be a tuple of ints, but got %s at pos %d",
                        type_name(&items[i]), i);
        }
        shape[i] = items[i].i;
    }
    *ndim = n;
    return 0;
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
            return fail(e, at, "too many dimensions");
        }
        if (depth >= fl->ndim) {
            if (fl->any) {
                return fail(e, at, "expected a number at dim %d, got a sequence", depth);
            }
            fl->ndim = depth + 1;
            fl->shape[depth] = v->n;
        } else if (fl->shape[depth] != v->n) {
            return fail(e, at, "expected sequence of length %" PRId64 " at dim %d (got %d)",
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
        return fail(e, at, "tensor(): lists of tensors are not supported; use stack()");
    }
    if (!is_num(v)) {
        return fail(e, at, "Could not infer dtype of %s", type_name(v));
    }
    if (depth != fl->ndim) {
        return fail(e, at, "expected sequence of length %" PRId64 " at dim %d (got a number)",
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
            return fail(e, at, "out of memory");
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

static int make_tensor(struct tdx_env *e, const struct value *data, int dt, bool requires_grad,
                       const struct tdx_node *at, struct value *out)
{
    struct flat fl = {.all_bool = true};
    int rc = flatten_data(e, data, 0, &fl, at);
    if (rc != 0) {
        goto done;
    }
    if (dt == 0) {
        dt = !fl.any ? TENSORD_FLOAT32 : fl.any_float ? TENSORD_FLOAT32 :
             fl.all_bool ? TENSORD_BOOL : TENSORD_INT64;
    }
    size_t es = tensord_dtype_size((enum tensord_dtype)dt);
    uint8_t *bytes = malloc(fl.n * es + 1);
    if (bytes == NULL) {
        rc = fail(e, at, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < fl.n; k++) {
        switch (dt) {
        case TENSORD_FLOAT32: { float f = (float)fl.f[k]; memcpy(bytes + k * 4, &f, 4); break; }
        case TENSORD_FLOAT64: memcpy(bytes + k * 8, &fl.f[k], 8); break;
        case TENSORD_INT32: { int32_t v = (int32_t)fl.i[k]; memcpy(bytes + k * 4, &v, 4); break; }
        case TENSORD_INT64: memcpy(bytes + k * 8, &fl.i[k], 8); break;
        default: bytes[k] = fl.f[k] != 0; break;
        }
    }
    struct tref *t = tref_new(e);
    struct tensord_error err;
    uint64_t id;
    if (t == NULL) {
        free(bytes);
        rc = fail(e, at, "out of memory");
        goto done;
    }
    /* Small data is copied into the queue; larger is written at the next flush, so flush
    ** now while `bytes` is alive. */
    int lrc = tensord_send_create(e->c, t->handle, (enum tensord_dtype)dt, fl.shape, fl.ndim,
                                  bytes, fl.n * es, &id, &err);
    if (lrc == 0 && fl.n * es > 64 * 1024) {
        lrc = tensord_flush(e->c, &err);
    }
    free(bytes);
    rc = send_tensor_result(e, lrc, id, t, at, &err);
    if (rc == 0 && requires_grad) {
        if (tensord_send_set_grad(e->c, t->handle, true, false, false, &id, &err) != 0) {
            rc = lib_fail(e, at, &err);
        } else {
            rc = pend_add(e, id, P_PLAIN, NULL, at);
            t->requires_grad = true;
        }
    }
    if (rc != 0) {
        tref_unref(e, t);
        goto done;
    }
    *out = vtensor(t);
done:
    free(fl.f);
    free(fl.i);
    return rc;
}

/* ---- ops ---- */

static int to_operand(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                      const char *op, struct tensord_operand *o)
{
    switch (v->k) {
    case V_TENSOR: *o = tensord_h(v->t->handle); return 0;
    case V_INT: *o = tensord_i(v->i); return 0;
    case V_FLOAT: *o = tensord_f(v->f); return 0;
    case V_BOOL: *o = tensord_b(v->b); return 0;
    default:
        return fail(e, at, "%s(): argument must be a Tensor or a number, not '%s'", op,
                    type_name(v));
    }
}

static int to_int_arg(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                      const char *op, const char *what, int64_t *out)
{
    if (v->k != V_INT && v->k != V_BOOL) {
        return fail(e, at, "%s(): argument '%s' must be int, not %s", op, what, type_name(v));
    }
    *out = num_i(v);
    return 0;
}

/* Puts one argument into a. key is an OpArgs field ("dim", "min" ...), "*dims" (a shape),
** "rdim" (one dim or a list; None is none), or a keyword no parameter of the op names (set
** when torch's is accepted: requires_grad=, reduction='mean'; refused otherwise). */
static int set_arg(struct tdx_env *e, const char *op, const char *key, const struct value *v,
                   const struct tdx_node *at, struct tensord_op_args *a, bool *want_out2,
                   bool *requires_grad)
{
    int rc = 0;
    if (strcmp(key, "*dims") == 0 || strcmp(key, "rdim") == 0) {
        if (v->k == V_NONE && key[0] == 'r') {
            return 0;
        }
        int nd;
        if ((rc = get_shape(e, v, 1, at, a->dims, &nd)) != 0) {
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
        if ((rc = to_operand(e, v, at, op, isminv ? &a->min : &a->max)) != 0) {
            return rc;
        }
        if (v->k == V_TENSOR) {
            return fail(e, at, "%s(): tensor bounds are not supported; use maximum()/minimum()",
                        op);
        }
        *(isminv ? &a->has_min : &a->has_max) = true;
        return 0;
    }
    if (strcmp(key, "dtype") == 0) {
        int dt;
        if ((rc = parse_dtype_value(e, v, at, &dt)) == 0) {
            a->dtype = (enum tensord_dtype)dt;
        }
        return rc;
    }
    if (strcmp(key, "keepdim") == 0) {
        if (v->k != V_BOOL) {
            return fail(e, at, "%s(): argument 'keepdim' must be bool, not %s", op, type_name(v));
        }
        a->keepdim = v->b;
        return 0;
    }
    if (strcmp(key, "correction") == 0 || strcmp(key, "unbiased") == 0) {
        if (!is_num(v)) {
            return fail(e, at, "%s(): argument '%s' must be a number", op, key);
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
        return fail(e, at, "norm(): only p=2 ('fro') is supported");
    }
    if (strcmp(key, "reduction") == 0) {
        if (v->k == V_STR && strcmp(v->s, "mean") == 0) {
            return 0;
        }
        return fail(e, at, "%s(): only reduction='mean' is supported", op);
    }
    if (strcmp(key, "alpha") == 0 && (strcmp(op, "add") == 0 || strcmp(op, "sub") == 0)) {
        /* OpArgs has no alpha, and composing it here could round differently from torch */
        return fail(e, at, "%s(): alpha= is not supported by tensord; write %s(input, alpha * "
                    "other)", op, op);
    }
    if (strcmp(key, "requires_grad") == 0 && requires_grad != NULL) {
        *requires_grad = v->k == V_BOOL ? v->b : num_f(v) != 0;
        return 0;
    }
    return fail(e, at, "%s() got an unexpected keyword argument '%s'", op, key);
}

struct call {
    struct value *args;
    int nargs;
    char **kwn;
    struct value *kwv;
    int nkw;
};

/* The key set_arg() takes for parameter p: its OpArgs field, where a `dims` parameter is
** "*dims" (a shape, from the remaining positional arguments) when it gathers them and "rdim"
** (one int or a list, None for none) otherwise, and `cast` is the result dtype. */
static const char *arg_key(const struct tdx_param *p)
{
    if (strcmp(p->field, "dims") == 0) {
        return p->varargs ? "*dims" : "rdim";
    }
    return strcmp(p->field, "cast") == 0 ? "dtype" : p->field;
}

/* Adds operand value v (of parameter p) to ins; a list for a `:tensors` parameter. */
static int add_operand(struct tdx_env *e, const struct tdx_node *at, const char *op,
                       const struct tdx_param *p, const struct value *v,
                       struct tensord_operand *ins, int *nin, bool *any_grad)
{
    int rc;
    if (strcmp(p->field, "tensors") == 0) {
        if (v->k != V_LIST && v->k != V_TUPLE) {
            return fail(e, at, "%s(): argument '%s' must be a tuple or list of Tensors", op,
                        p->name);
        }
        for (int k = 0; k < v->n; k++) {
            if (v->items[k].k != V_TENSOR) {
                return fail(e, at, "%s(): expected Tensor as element %d in argument 0, but got "
                            "%s", op, k, type_name(&v->items[k]));
            }
            if (*nin >= TDX_MAX_OPERANDS) {
                return fail(e, at, "%s(): at most %d tensors", op, TDX_MAX_OPERANDS);
            }
            *any_grad |= v->items[k].t->requires_grad;
            ins[(*nin)++] = tensord_h(v->items[k].t->handle);
        }
        return 0;
    }
    if (v->k == V_NONE && p->deflt != NULL && strcmp(p->deflt, "None") == 0) {
        return 0;  /* an optional operand left out (linear's bias) */
    }
    if (*nin >= TDX_MAX_OPERANDS) {
        return fail(e, at, "%s(): too many operands", op);
    }
    if ((rc = to_operand(e, v, at, op, &ins[*nin])) != 0) {
        return rc;
    }
    *any_grad |= v->k == V_TENSOR && v->t->requires_grad;
    (*nin)++;
    return 0;
}

/* Parses a call of op `d` as its torch signature says: operands (positional, or by name) in
** wire order, then the other parameters into a. */
static int op_args(struct tdx_env *e, const struct tdx_node *at, const struct tdx_opdef *d,
                   const struct call *c, struct tensord_operand *ins, int *nin,
                   struct tensord_op_args *a, bool *want_out2, bool *any_grad)
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
            slot[k] = &c->args[i];  /* *name: the rest */
            i = c->nargs;
        }
    }
    if (i < c->nargs) {
        return fail(e, at, "%s() takes %d positional arguments but %d were given", op, npos,
                    c->nargs);
    }
    for (int k = 0; k < c->nkw; k++) {
        const struct tdx_param *p = tdx_op_param_named(d, c->kwn[k]);
        if (p != NULL && p->operand) {
            int j = (int)(p - tdx_op_param(d, 0));
            if (slot[j] != NULL) {
                return fail(e, at, "%s() got multiple values for argument '%s'", op, p->name);
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
        if (p->operand || slot[k] == NULL) {
            continue;
        }
        if (p->varargs) {
            int first = (int)(slot[k] - c->args), nd;
            if ((rc = get_shape(e, slot[k], c->nargs - first, at, a->dims, &nd)) != 0) {
                return rc;
            }
            a->ndims = nd;
            a->has_dims = true;
        } else if ((rc = set_arg(e, op, arg_key(p), slot[k], at, a, want_out2, NULL)) != 0) {
            return rc;
        }
    }
    for (int k = 0; k < c->nkw; k++) {
        const struct tdx_param *p = tdx_op_param_named(d, c->kwn[k]);
        if (p != NULL && p->operand) {
            continue;
        }
        bool rg;
        if ((rc = set_arg(e, op, p != NULL ? arg_key(p) : c->kwn[k], &c->kwv[k], at, a,
                          want_out2, &rg)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* Runs op `op` (torch's name, without a trailing '_'); with `inplace` the result is args[0]
** itself. */
static int call_op(struct tdx_env *e, const struct tdx_node *at, const char *op, bool inplace,
                   const struct call *c, struct value *out)
{
    const struct tdx_opdef *d = tdx_op_find(op);
    if (d == NULL || tensord_op_code(d->wire) < 0) {
        return fail(e, at, "name '%s' is not defined", op);
    }
    struct tensord_operand ins[TDX_MAX_OPERANDS];
    int nin = 0, rc;
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    bool want_out2 = false, any_grad = false;
    if ((rc = op_args(e, at, d, c, ins, &nin, &a, &want_out2, &any_grad)) != 0) {
        return rc;
    }
    struct tref *t = inplace ? tref_ref(c->args[0].t) : tref_new(e);
    struct tref *t2 = NULL;
    if (t == NULL) {
        return fail(e, at, "out of memory");
    }
    if (want_out2 && !inplace) {
        if ((t2 = tref_new(e)) == NULL) {
            tref_unref(e, t);
            return fail(e, at, "out of memory");
        }
        a.out2 = t2->handle;
    }
    struct tensord_error err;
    uint64_t id;
    int lrc = tensord_send_op_ex(e->c, d->wire, inplace ? 0 : t->handle, ins, nin, &a, inplace,
                                 &id, &err);
    if ((rc = send_tensor_result(e, lrc, id, t, at, &err)) != 0) {
        tref_unref(e, t);
        tref_unref(e, t2);
        return rc;
    }
    if (inplace) {
        t->known = false;  /* an in-place op may change nothing visible, but be safe */
        t->requires_grad |= any_grad && e->grad_enabled;
    } else {
        t->requires_grad = any_grad && e->grad_enabled && !tdx_op_nodiff(d);
        t->is_leaf = !t->requires_grad;
    }
    if (t2 != NULL) {
        t2->is_leaf = true;
        if ((rc = vseq(e, out, V_TUPLE, 2)) != 0) {
            tref_unref(e, t);
            tref_unref(e, t2);
            return rc;
        }
        out->items[0] = vtensor(t);
        out->items[1] = vtensor(t2);
        /* torch's named pair: prints as return_types.max(values=..., indices=...) */
        if ((out->s = strdup(op)) == NULL) {
            vfree(e, out);
            return fail(e, at, "out of memory");
        }
        return 0;
    }
    *out = vtensor(t);
    return 0;
}

/* Sends a request with no tensor result of its own. */
static int plain(struct tdx_env *e, int lrc, const uint64_t *id, const struct tdx_node *at,
                 const struct tensord_error *err)
{
    if (lrc != 0) {
        return lib_fail(e, at, err);
    }
    return pend_add(e, *id, P_PLAIN, NULL, at);
}

static int set_grad_mode(struct tdx_env *e, bool enabled, const struct tdx_node *at)
{
    struct tensord_error err;
    uint64_t id;
    int rc = plain(e, tensord_send_set_grad_enabled(e->c, enabled, &id, &err), &id, at, &err);
    if (rc == 0) {
        e->grad_enabled = enabled;
    }
    return rc;
}

/* .item(): the one element as a Python number. The read is queued behind the requests that
** make the tensor, so it costs one round trip. */
static int item(struct tdx_env *e, struct tref *t, const struct tdx_node *at, struct value *out)
{
    uint8_t buf[8];
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (t->none) {
        return fail(e, at, "'NoneType' object has no attribute 'item'");
    }
    if (tensord_send_get(e->c, t->handle, buf, sizeof buf, &id, &err) != 0) {
        return lib_fail(e, at, &err);
    }
    if ((rc = pend_add(e, id, P_TENSOR, t, at)) != 0) {
        return rc;
    }
    t->known = false;
    if ((rc = need_sync(e)) != 0) {
        return rc;
    }
    if (!t->known) {
        return fail(e, at, "the tensor could not be read");
    }
    int64_t numel = 1;
    for (int i = 0; i < t->info.ndim; i++) {
        numel *= t->info.shape[i];
    }
    if (numel != 1) {
        return fail(e, at, "a Tensor with %" PRId64 " elements cannot be converted to Scalar",
                    numel);
    }
    switch (t->info.dtype) {
    case TENSORD_FLOAT32: { float f; memcpy(&f, buf, 4); *out = vfloat((double)f); break; }
    case TENSORD_FLOAT64: { double d; memcpy(&d, buf, 8); *out = vfloat(d); break; }
    case TENSORD_INT32: { int32_t v; memcpy(&v, buf, 4); *out = vint(v); break; }
    case TENSORD_INT64: { int64_t v; memcpy(&v, buf, 8); *out = vint(v); break; }
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
        case TENSORD_FLOAT32: { float f; memcpy(&f, p + *off, 4); *out = vfloat((double)f); break; }
        case TENSORD_FLOAT64: { double d; memcpy(&d, p + *off, 8); *out = vfloat(d); break; }
        case TENSORD_INT32: { int32_t v; memcpy(&v, p + *off, 4); *out = vint(v); break; }
        case TENSORD_INT64: { int64_t v; memcpy(&v, p + *off, 8); *out = vint(v); break; }
        default: *out = vbool(p[*off] != 0); break;
        }
        *off += tensord_dtype_size(dt);
        return 0;
    }
    if (shape[0] > INT32_MAX) {
        return fail(e, NULL, "tensor too large for a list");
    }
    if ((rc = vseq(e, out, V_LIST, (int)shape[0])) != 0) {
        return rc;
    }
    for (int64_t i = 0; i < shape[0]; i++) {
        if ((rc = build_list(e, p, dt, shape + 1, ndim - 1, off, &out->items[i])) != 0) {
            return rc;
        }
    }
    return 0;
}

static int tolist(struct tdx_env *e, struct tref *t, const struct tdx_node *at,
                  struct value *out)
{
    int rc;
    if ((rc = known(e, t, at)) != 0) {
        return rc;
    }
    uint8_t *data;
    if ((rc = fetch(e, t, at, &data)) != 0) {
        return rc;
    }
    size_t off = 0;
    rc = build_list(e, data, t->info.dtype, t->info.shape, t->info.ndim, &off, out);
    free(data);
    if (rc != 0) {
        vfree(e, out);
    }
    return rc;
}

static int size_value(struct tdx_env *e, struct tref *t, const struct tdx_node *at,
                      struct value *out)
{
    int rc;
    if ((rc = known(e, t, at)) != 0 || (rc = vseq(e, out, V_SIZE, t->info.ndim)) != 0) {
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
    struct tref *g = tref_new(e);
    struct tensord_error err;
    uint64_t id;
    int rc;
    if (g == NULL) {
        return fail(e, at, "out of memory");
    }
    if (tensord_send_grad(e->c, self->handle, g->handle, &id, &err) != 0) {
        tref_unref(e, g);
        return lib_fail(e, at, &err);
    }
    /* Its reply says whether .grad was None (no tensor in it), without a wait. */
    if ((rc = pend_add(e, id, P_GRAD, g, at)) != 0) {
        tref_unref(e, g);
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

static int method(struct tdx_env *e, const struct tdx_node *at, struct tref *self,
                  const char *name, const struct call *c0, struct value *out)
{
    /* args with self first */
    struct value args[16];
    int rc, k;
    if (c0->nargs >= 15) {
        return fail(e, at, "too many arguments");
    }
    args[0] = vtensor(self);
    memcpy(args + 1, c0->args, (size_t)c0->nargs * sizeof *args);
    struct call c = {.args = args, .nargs = c0->nargs + 1, .kwn = c0->kwn, .kwv = c0->kwv,
                     .nkw = c0->nkw};
    if (strcmp(name, "item") == 0) {
        return item(e, self, at, out);
    }
    if (strcmp(name, "tolist") == 0) {
        return tolist(e, self, at, out);
    }
    if (strcmp(name, "size") == 0) {
        struct value sz;
        if ((rc = size_value(e, self, at, &sz)) != 0) {
            return rc;
        }
        const struct value *d = c0->nargs > 0 ? &c0->args[0] :
                                kwarg(c0, "dim", &k) ? &c0->kwv[k] : NULL;
        if (d == NULL) {
            *out = sz;
            return 0;
        }
        int64_t i = d->k == V_INT ? d->i : INT64_MAX;
        if (i < 0) {
            i += sz.n;
        }
        if (i < 0 || i >= sz.n) {
            vfree(e, &sz);
            return fail(e, at, "Dimension out of range (expected to be in range of [%d, %d], "
                        "but got %s)", -sz.n, sz.n - 1, d->k == V_INT ? "" : "a non-int");
        }
        *out = vint(sz.items[i].i);
        vfree(e, &sz);
        return 0;
    }
    if (strcmp(name, "dim") == 0 || strcmp(name, "numel") == 0) {
        if ((rc = known(e, self, at)) != 0) {
            return rc;
        }
        int64_t n = 1;
        for (int i = 0; i < self->info.ndim; i++) {
            n *= self->info.shape[i];
        }
        *out = vint(name[0] == 'd' ? self->info.ndim : n);
        return 0;
    }
    if (strcmp(name, "backward") == 0) {
        uint64_t g = 0, id;
        bool retain = false;
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
        return plain(e, tensord_send_backward(e->c, self->handle, g, retain, &id, &err), &id, at,
                     &err);
    }
    if (strcmp(name, "requires_grad_") == 0 || strcmp(name, "retain_grad") == 0) {
        bool v = true, retain = name[0] == 'r' && name[2] == 't';
        if (c0->nargs > 0) {
            v = c0->args[0].k == V_BOOL ? c0->args[0].b : num_f(&c0->args[0]) != 0;
        }
        struct tensord_error err;
        uint64_t id;
        if ((rc = plain(e, tensord_send_set_grad(e->c, self->handle, v, false, retain, &id,
                                                 &err), &id, at, &err)) != 0) {
            return rc;
        }
        if (!retain) {
            self->requires_grad = v;
            *out = vtensor(tref_ref(self));
        } else {
            *out = (struct value){.k = V_NONE};
        }
        return 0;
    }
    static const char *const CASTS[][2] = {{"float", "1"}, {"double", "2"}, {"int", "3"},
                                           {"long", "4"}, {"bool", "5"}};
    for (size_t i = 0; i < sizeof CASTS / sizeof CASTS[0]; i++) {
        if (strcmp(name, CASTS[i][0]) == 0) {
            struct value dt = {.k = V_DTYPE, .dt = CASTS[i][1][0] - '0'};
            struct value a2[2] = {vtensor(self), dt};
            struct call cc = {.args = a2, .nargs = 2};
            return call_op(e, at, "to", false, &cc, out);
        }
    }
    if (strcmp(name, "numpy") == 0) {
        return fail(e, at, "numpy() is not available in tensorctl; use tolist()");
    }
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '_' && name[n - 2] != '_') {
        char base[64];
        snprintf(base, sizeof base, "%.*s", (int)(n - 1), name);
        if (tdx_op_is_method(base, true)) {
            return call_op(e, at, base, true, &c, out);
        }
    }
    if (tdx_op_is_method(name, false)) {
        if ((strcmp(name, "max") == 0 || strcmp(name, "min") == 0) && c0->nargs == 1 &&
            c0->args[0].k == V_TENSOR) {
            return call_op(e, at, name[1] == 'a' ? "maximum" : "minimum", false, &c, out);
        }
        return call_op(e, at, name, false, &c, out);
    }
    return fail(e, at, "'Tensor' object has no attribute '%s'", name);
}

static bool is_method_name(const char *name)
{
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        if (strcmp(METHODS[i], name) == 0) {
            return true;
        }
    }
    size_t n = strlen(name);
    bool inplace = n > 0 && name[n - 1] == '_';
    char base[64];
    snprintf(base, sizeof base, "%.*s", (int)(inplace ? n - 1 : n), name);
    return tdx_op_is_method(base, inplace) || strcmp(name, "numpy") == 0;
}

static int module_attr(struct tdx_env *e, const struct tdx_node *at, const char *module,
                       const char *name, struct value *out);

static int attribute(struct tdx_env *e, const struct tdx_node *at, const struct value *obj,
                     const char *name, struct value *out)
{
    int rc;
    if (obj->k == V_MODULE) {
        return module_attr(e, at, obj->s, name, out);
    }
    if (obj->k == V_TUPLE && obj->s != NULL && obj->n == 2 &&
        (strcmp(name, "values") == 0 || strcmp(name, "indices") == 0)) {
        return vcopy(e, out, &obj->items[name[0] == 'v' ? 0 : 1]);
    }
    if (obj->k != V_TENSOR) {
        if (obj->k == V_DTYPE && strcmp(name, "is_floating_point") == 0) {
            *out = vbool(obj->dt == TENSORD_FLOAT32 || obj->dt == TENSORD_FLOAT64);
            return 0;
        }
        return fail(e, at, "'%s' object has no attribute '%s'", type_name(obj), name);
    }
    struct tref *t = obj->t;
    if (t->none) {
        return fail(e, at, "'NoneType' object has no attribute '%s'", name);
    }
    if (strcmp(name, "shape") == 0) {
        return size_value(e, t, at, out);
    }
    if (strcmp(name, "dtype") == 0) {
        if ((rc = known(e, t, at)) == 0) {
            *out = (struct value){.k = V_DTYPE, .dt = t->info.dtype};
        }
        return rc;
    }
    if (strcmp(name, "ndim") == 0) {
        if ((rc = known(e, t, at)) == 0) {
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
        if ((rc = known(e, t, at)) != 0) {
            return rc;
        }
        if (t->info.grad_fn[0] == '\0') {
            *out = (struct value){.k = V_NONE};
            return 0;
        }
        *out = (struct value){.k = V_NODE, .s = strdup(t->info.grad_fn)};
        return out->s != NULL ? 0 : fail(e, at, "out of memory");
    }
    if (strcmp(name, "T") == 0 || strcmp(name, "mT") == 0 || strcmp(name, "data") == 0) {
        struct value a1[1] = {vtensor(t)};
        struct call c = {.args = a1, .nargs = 1};
        if (name[0] == 'd') {
            return call_op(e, at, "detach", false, &c, out);
        }
        if (name[0] == 'm') {
            return call_op(e, at, "mT", false, &c, out);
        }
        if ((rc = known(e, t, at)) != 0) {
            return rc;
        }
        if (t->info.ndim <= 2) {
            return call_op(e, at, "t", false, &c, out);
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
        return call_op(e, at, "permute", false, &c2, out);
    }
    if (is_method_name(name)) {
        *out = (struct value){.k = V_METHOD, .t = tref_ref(t)};
        if ((out->s = strdup(name)) == NULL) {
            vfree(e, out);
            return fail(e, at, "out of memory");
        }
        return 0;
    }
    return fail(e, at, "'Tensor' object has no attribute '%s'", name);
}

/* ---- Python arithmetic ---- */

static const char *const OPSYM[] = {
    [TDX_OP_ADD] = "+", [TDX_OP_SUB] = "-", [TDX_OP_MUL] = "*", [TDX_OP_DIV] = "/",
    [TDX_OP_FLOORDIV] = "//", [TDX_OP_MOD] = "%", [TDX_OP_POW] = "**", [TDX_OP_MATMUL] = "@",
    [TDX_OP_LT] = "<", [TDX_OP_LE] = "<=", [TDX_OP_GT] = ">", [TDX_OP_GE] = ">=",
    [TDX_OP_EQ] = "==", [TDX_OP_NE] = "!=",
};

static const char *const OPFN[] = {
    [TDX_OP_ADD] = "add", [TDX_OP_SUB] = "sub", [TDX_OP_MUL] = "mul", [TDX_OP_DIV] = "div",
    [TDX_OP_FLOORDIV] = "floor_divide", [TDX_OP_MOD] = "remainder", [TDX_OP_POW] = "pow",
    [TDX_OP_MATMUL] = "matmul", [TDX_OP_LT] = "lt", [TDX_OP_LE] = "le", [TDX_OP_GT] = "gt",
    [TDX_OP_GE] = "ge", [TDX_OP_EQ] = "eq", [TDX_OP_NE] = "ne",
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

static int num_binop(struct tdx_env *e, const struct tdx_node *at, int op, const struct value *a,
                     const struct value *b, struct value *out)
{
    bool fl = a->k == V_FLOAT || b->k == V_FLOAT;
    double x = num_f(a), y = num_f(b);
    int64_t i = num_i(a), j = num_i(b), r;
    switch (op) {
    case TDX_OP_LT: *out = vbool(fl ? x < y : i < j); return 0;
    case TDX_OP_LE: *out = vbool(fl ? x <= y : i <= j); return 0;
    case TDX_OP_GT: *out = vbool(fl ? x > y : i > j); return 0;
    case TDX_OP_GE: *out = vbool(fl ? x >= y : i >= j); return 0;
    case TDX_OP_EQ: *out = vbool(vequal(a, b)); return 0;
    case TDX_OP_NE: *out = vbool(!vequal(a, b)); return 0;
    case TDX_OP_ADD:
        if (fl) { *out = vfloat(x + y); return 0; }
        if (__builtin_add_overflow(i, j, &r)) { break; }
        *out = vint(r);
        return 0;
    case TDX_OP_SUB:
        if (fl) { *out = vfloat(x - y); return 0; }
        if (__builtin_sub_overflow(i, j, &r)) { break; }
        *out = vint(r);
        return 0;
    case TDX_OP_MUL:
        if (fl) { *out = vfloat(x * y); return 0; }
        if (__builtin_mul_overflow(i, j, &r)) { break; }
        *out = vint(r);
        return 0;
    case TDX_OP_DIV:
        if (y == 0) {
            return fail(e, at, fl ? "float division by zero" : "division by zero");
        }
        *out = vfloat(x / y);
        return 0;
    case TDX_OP_FLOORDIV: case TDX_OP_MOD:
        if (fl) {
            if (y == 0) {
                return fail(e, at, op == TDX_OP_MOD ? "float modulo" :
                            "float floor division by zero");
            }
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) {
                m += y;
            }
            *out = vfloat(op == TDX_OP_MOD ? m : floor(x / y));
            return 0;
        }
        if (j == 0) {
            return fail(e, at, "integer division or modulo by zero");
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
                return fail(e, at, "0.0 cannot be raised to a negative power");
            }
            *out = vfloat(pow(x, y));
            return 0;
        }
        r = 1;
        for (int64_t k = 0; k < j; k++) {
            if (__builtin_mul_overflow(r, i, &r)) {
                return fail(e, at, "integer overflow in %s (tensorctl's ints are 64-bit)",
                            OPSYM[op]);
            }
        }
        *out = vint(r);
        return 0;
    default:
        return fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                    type_name(a), type_name(b));
    }
    return fail(e, at, "integer overflow in %s (tensorctl's ints are 64-bit)", OPSYM[op]);
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
            return fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                        type_name(a), type_name(b));
        }
        struct value args[2] = {*a, *b};
        struct call c = {.args = args, .nargs = 2};
        return call_op(e, at, OPFN[op], false, &c, out);
    }
    if (is_num(a) && is_num(b)) {
        return num_binop(e, at, op, a, b, out);
    }
    if (op == TDX_OP_EQ || op == TDX_OP_NE) {
        *out = vbool(vequal(a, b) == (op == TDX_OP_EQ));
        return 0;
    }
    if (op == TDX_OP_ADD && a->k == V_STR && b->k == V_STR) {
        int rc = vstr(e, out, a->s, (size_t)(a->i + b->i));
        if (rc == 0) {
            memcpy(out->s + a->i, b->s, (size_t)b->i);
        }
        return rc;
    }
    if (op == TDX_OP_ADD && a->k == b->k && (a->k == V_LIST || a->k == V_TUPLE)) {
        int rc = vseq(e, out, a->k, a->n + b->n);
        for (int i = 0; rc == 0 && i < a->n + b->n; i++) {
            rc = vcopy(e, &out->items[i], i < a->n ? &a->items[i] : &b->items[i - a->n]);
        }
        if (rc != 0) {
            vfree(e, out);
        }
        return rc;
    }
    return fail(e, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPSYM[op],
                type_name(a), type_name(b));
}

static int truth(struct tdx_env *e, const struct tdx_node *at, const struct value *v, bool *out)
{
    switch (v->k) {
    case V_NONE: *out = false; return 0;
    case V_BOOL: case V_INT: case V_FLOAT: *out = num_f(v) != 0; return 0;
    case V_STR: *out = v->i > 0; return 0;
    case V_LIST: case V_TUPLE: case V_SIZE: *out = v->n > 0; return 0;
    case V_TENSOR: {
        struct value x;
        int rc = known(e, v->t, at);
        if (rc != 0) {
            return rc;
        }
        int64_t n = 1;
        for (int i = 0; i < v->t->info.ndim; i++) {
            n *= v->t->info.shape[i];
        }
        if (n != 1) {
            return fail(e, at, "Boolean value of Tensor with more than one value is ambiguous");
        }
        if ((rc = item(e, v->t, at, &x)) != 0) {
            return rc;
        }
        *out = num_f(&x) != 0;
        return 0;
    }
    default: *out = true; return 0;
    }
}

/* ---- f-string format specs: Python's mini-language, in format.c ---- */

/* format(v, spec), appended to b. Numbers and strings follow Python's rules exactly; a 0-dim
** tensor was turned into its item() by the caller (Tensor.__format__ does that); any other
** value refuses a non-empty spec, as object.__format__ does. */
static int format_spec(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                       const char *spec, struct td_strbuf *b)
{
    char *txt = NULL, msg[200];
    int rc;
    switch (v->k) {
    case V_BOOL: case V_INT:
        rc = tdx_format_int(num_i(v), v->k == V_BOOL, spec, &txt, msg, sizeof msg);
        break;
    case V_FLOAT:
        rc = tdx_format_float(v->f, spec, &txt, msg, sizeof msg);
        break;
    case V_STR:
        rc = tdx_format_str(v->s, (size_t)v->i, spec, &txt, msg, sizeof msg);
        break;
    default:
        return fail(e, at, "unsupported format string passed to %s.__format__",
                    v->k == V_SIZE ? "torch.Size" : v->k == V_DTYPE ? "torch.dtype" :
                    type_name(v));
    }
    if (rc != 0) {
        return fail(e, at, "%s", msg);
    }
    td_strbuf_puts(b, txt);
    td_free(txt);
    return 0;
}

/* ---- expressions ---- */

static int eval(struct tdx_env *e, const struct tdx_node *n, struct value *out);

static void call_free(struct tdx_env *e, struct call *c)
{
    for (int i = 0; i < c->nargs; i++) {
        vfree(e, &c->args[i]);
    }
    for (int i = 0; i < c->nkw; i++) {
        vfree(e, &c->kwv[i]);
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
        return fail(e, n, "out of memory");
    }
    for (int i = 1; i < n->nkids; i++) {
        const struct tdx_node *a = n->kids[i];
        int rc;
        if (a->kind == TDX_KWARG) {
            for (int k = 0; k < c->nkw; k++) {
                if (strcmp(c->kwn[k], a->str) == 0) {
                    call_free(e, c);
                    return fail(e, a, "keyword argument repeated: %s", a->str);
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

static int kw_dtype(struct tdx_env *e, const struct tdx_node *at, const struct call *c, int *dt,
                    bool *requires_grad, const char *fn)
{
    int rc;
    *dt = 0;
    *requires_grad = false;
    for (int k = 0; k < c->nkw; k++) {
        if (strcmp(c->kwn[k], "dtype") == 0) {
            if ((rc = parse_dtype_value(e, &c->kwv[k], at, dt)) != 0) {
                return rc;
            }
        } else if (strcmp(c->kwn[k], "requires_grad") == 0) {
            bool b;
            if ((rc = truth(e, at, &c->kwv[k], &b)) != 0) {
                return rc;
            }
            *requires_grad = b;
        } else {
            return fail(e, at, "%s() got an unexpected keyword argument '%s'", fn, c->kwn[k]);
        }
    }
    return 0;
}

static int after_create(struct tdx_env *e, const struct tdx_node *at, int lrc, uint64_t id,
                        struct tref *t, bool requires_grad, const struct tensord_error *err,
                        struct value *out)
{
    int rc = send_tensor_result(e, lrc, id, t, at, err);
    if (rc == 0 && requires_grad) {
        struct tensord_error err2;
        rc = plain(e, tensord_send_set_grad(e->c, t->handle, true, false, false, &id, &err2), &id,
                   at, &err2);
        t->requires_grad = true;
    }
    if (rc != 0) {
        tref_unref(e, t);
        return rc;
    }
    *out = vtensor(t);
    return 0;
}

static int print_values(struct tdx_env *e, const struct tdx_node *at, const struct call *c)
{
    const char *sep = " ", *end = "\n";
    for (int k = 0; k < c->nkw; k++) {
        const struct value *v = &c->kwv[k];
        if (strcmp(c->kwn[k], "sep") == 0 && (v->k == V_STR || v->k == V_NONE)) {
            sep = v->k == V_STR ? v->s : " ";
        } else if (strcmp(c->kwn[k], "end") == 0 && (v->k == V_STR || v->k == V_NONE)) {
            end = v->k == V_STR ? v->s : "\n";
        } else if (strcmp(c->kwn[k], "flush") != 0) {
            return fail(e, at, "'%s' is an invalid keyword argument for print()", c->kwn[k]);
        }
    }
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    /* Earlier statements' failures come first, as they would in Python. */
    int rc = need_sync(e);
    if (rc != 0) {
        return rc;
    }
    if (e->cfg.json) {
        if (c->nargs != 1) {
            td_strbuf_puts(&b, "[");
        }
        for (int i = 0; i < c->nargs && rc == 0; i++) {
            td_strbuf_puts(&b, i > 0 ? ", " : "");
            rc = vjson(e, &c->args[i], at, &b);
        }
        if (c->nargs != 1) {
            td_strbuf_puts(&b, "]");
        }
        td_strbuf_puts(&b, "\n");
    } else {
        for (int i = 0; i < c->nargs && rc == 0; i++) {
            td_strbuf_puts(&b, i > 0 ? sep : "");
            rc = vtext(e, &c->args[i], true, at, &b);
        }
        td_strbuf_puts(&b, end);
    }
    if (rc == 0 && td_strbuf_failed(&b)) {
        rc = fail(e, at, "out of memory");
    }
    if (rc == 0) {
        fwrite(td_strbuf_str(&b), 1, b.len, e->cfg.out);
        fflush(e->cfg.out);
    }
    td_strbuf_free(&b);
    return rc;
}

/* Python's round(x[, ndigits]): correctly rounded (round(2.675, 2) is 2.67, as the double
** 2.675 lies below 2.675), half to even; an int stays an int. */
static int py_round(struct tdx_env *e, const struct tdx_node *at, const struct call *c,
                    struct value *out)
{
    const struct value *x = &c->args[0];
    bool has_nd = c->nargs == 2 && c->args[1].k != V_NONE;
    if (has_nd && c->args[1].k != V_INT && c->args[1].k != V_BOOL) {
        return fail(e, at, "'%s' object cannot be interpreted as an integer",
                    type_name(&c->args[1]));
    }
    int64_t nd = has_nd ? num_i(&c->args[1]) : 0;
    if (x->k != V_FLOAT) {
        int64_t r;
        if (tdx_round_int(num_i(x), nd, &r) != 0) {
            return fail(e, at, "integer overflow in round() (tensorctl's ints are 64-bit)");
        }
        *out = vint(r);
        return 0;
    }
    if (has_nd) {
        *out = vfloat(tdx_round_float(x->f, nd));
        return 0;
    }
    if (isnan(x->f)) {
        return fail(e, at, "cannot convert float NaN to integer");
    }
    if (isinf(x->f)) {
        return fail(e, at, "cannot convert float infinity to integer");
    }
    double r = nearbyint(x->f);  /* half to even in the default rounding mode, as Python */
    if (r >= 9223372036854775808.0 || r < -9223372036854775808.0) {
        return fail(e, at, "integer overflow in round() (tensorctl's ints are 64-bit)");
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
    return fail(e, at, "'%s' not supported between instances of '%s' and '%s'", less ? "<" : ">",
                type_name(a), type_name(b));
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
            return fail(e, at, "%s() iterable argument is empty", name);
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
            return fail(e, at, "%s() iterable argument is empty", name);
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
    return vcopy(e, out, best);
}

/* ---- builtins, one handler each; `name` is the name called (some handlers serve several) ---- */

typedef int (*builtin_fn)(struct tdx_env *e, const struct tdx_node *at, const char *name,
                          const struct call *c, struct value *out);

static int bi_print(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    return print_values(e, at, c);
}

/* tensor(data), from_numpy(data) */
static int bi_tensor(struct tdx_env *e, const struct tdx_node *at, const char *name,
                     const struct call *c, struct value *out)
{
    int rc, dt;
    bool rg;
    if (c->nargs != 1) {
        return fail(e, at, "tensor() takes 1 positional argument but %d were given", c->nargs);
    }
    if ((rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0) {
        return rc;
    }
    return make_tensor(e, &c->args[0], dt, rg, at, out);
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
        return fail(e, at, "full() needs a size and a fill_value");
    }
    nshape -= full;
    if ((rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0 ||
        (rc = get_shape(e, c->args, nshape, at, shape, &nd)) != 0) {
        return rc;
    }
    struct tref *t = tref_new(e);
    if (t == NULL) {
        return fail(e, at, "out of memory");
    }
    int lrc;
    if (name[0] == 'r') {
        lrc = (name[4] == 'n' ? tensord_send_randn : tensord_send_rand)(
            e->c, t->handle, (enum tensord_dtype)dt, shape, nd, &id, &err);
    } else {
        struct tensord_operand v;
        if (full && (rc = to_operand(e, &c->args[1], at, name, &v)) != 0) {
            tref_unref(e, t);
            return rc;
        }
        if (!full) {
            v = tensord_f(name[0] == 'o' ? 1.0 : 0.0);
            dt = dt != 0 ? dt : TENSORD_FLOAT32;
        }
        lrc = tensord_send_full(e->c, t->handle, (enum tensord_dtype)dt, shape, nd, v, &id,
                                &err);
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
        return fail(e, at, "arange() takes 1 to 3 positional arguments");
    }
    if ((rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0) {
        return rc;
    }
    for (int i = 0; i < c->nargs; i++) {
        if (!is_num(&c->args[i])) {
            return fail(e, at, "arange(): argument must be a number, not %s",
                        type_name(&c->args[i]));
        }
        if ((rc = to_operand(e, &c->args[i], at, name, &b[c->nargs == 1 ? 1 : i])) != 0) {
            return rc;
        }
    }
    struct tref *t = tref_new(e);
    if (t == NULL) {
        return fail(e, at, "out of memory");
    }
    int lrc = tensord_send_arange(e->c, t->handle, (enum tensord_dtype)dt, b[0], b[1], b[2],
                                  &id, &err);
    return after_create(e, at, lrc, id, t, rg, &err, out);
}

static int bi_manual_seed(struct tdx_env *e, const struct tdx_node *at, const char *name,
                          const struct call *c, struct value *out)
{
    struct tensord_error err;
    uint64_t id;
    if (c->nargs != 1 || c->args[0].k != V_INT) {
        return fail(e, at, "manual_seed() takes one int");
    }
    return plain(e, tensord_send_manual_seed(e->c, (uint64_t)c->args[0].i, &id, &err), &id, at,
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
    int rc;
    if (c->nargs != 1 || (rc = truth(e, at, &c->args[0], &b)) != 0) {
        return c->nargs != 1 ? fail(e, at, "set_grad_enabled() takes one argument") : rc;
    }
    return set_grad_mode(e, b, at);
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
        return fail(e, at, "randint() takes (low, high, size) or (high, size)");
    }
    struct tensord_op_args a;
    memset(&a, 0, sizeof a);
    memcpy(args, c->args, (size_t)c->nargs * sizeof *args);
    if (c->nargs == 3 && (rc = set_arg(e, name, "min", &args[0], at, &a, &w2, NULL)) != 0) {
        return rc;
    }
    if ((rc = set_arg(e, name, "max", &args[c->nargs - 2], at, &a, &w2, NULL)) != 0 ||
        (rc = set_arg(e, name, "*dims", &args[c->nargs - 1], at, &a, &w2, NULL)) != 0 ||
        (rc = kw_dtype(e, at, c, &dt, &rg, name)) != 0) {
        return rc;
    }
    a.dtype = (enum tensord_dtype)dt;
    struct tref *t = tref_new(e);
    if (t == NULL) {
        return fail(e, at, "out of memory");
    }
    int lrc = tensord_send_op_ex(e->c, name, t->handle, NULL, 0, &a, false, &id, &err);
    return after_create(e, at, lrc, id, t, false, &err, out);
}

static int bi_len(struct tdx_env *e, const struct tdx_node *at, const char *name,
                  const struct call *c, struct value *out)
{
    int rc;
    if (c->nargs != 1) {
        return fail(e, at, "len() takes exactly one argument (%d given)", c->nargs);
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
        if ((rc = known(e, v->t, at)) != 0) {
            return rc;
        }
        if (v->t->info.ndim == 0) {
            return fail(e, at, "len() of a 0-d tensor");
        }
        *out = vint(v->t->info.shape[0]);
    } else {
        return fail(e, at, "object of type '%s' has no len()", type_name(v));
    }
    return 0;
}

static int bi_range(struct tdx_env *e, const struct tdx_node *at, const char *name,
                    const struct call *c, struct value *out)
{
    int64_t r[3] = {0, 0, 1};
    if (c->nargs < 1 || c->nargs > 3) {
        return fail(e, at, "range expected at most 3 arguments, got %d", c->nargs);
    }
    for (int i = 0; i < c->nargs; i++) {
        if (c->args[i].k != V_INT && c->args[i].k != V_BOOL) {
            return fail(e, at, "'%s' object cannot be interpreted as an integer",
                        type_name(&c->args[i]));
        }
        r[c->nargs == 1 ? 1 : i] = num_i(&c->args[i]);
    }
    if (r[2] == 0) {
        return fail(e, at, "range() arg 3 must not be zero");
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
        return fail(e, at, "%s() takes at most 1 argument", name);
    }
    if (name[0] == 's') {
        struct td_strbuf b;
        td_strbuf_init(&b, 0);
        if ((rc = vtext(e, &x, true, at, &b)) == 0) {
            rc = vstr(e, out, td_strbuf_str(&b), b.len);
        }
        td_strbuf_free(&b);
        return rc;
    }
    if (x.k == V_TENSOR) {
        if ((rc = item(e, x.t, at, &tmp)) != 0) {
            return rc;
        }
        x = tmp;
    }
    if (x.k == V_STR && name[0] != 'b') {
        char *endp;
        errno = 0;
        double d = strtod(x.s, &endp);
        if (endp == x.s || *endp != '\0') {
            return fail(e, at, "could not convert string to %s: '%s'", name, x.s);
        }
        x = vfloat(d);
    }
    if (name[0] == 'b') {
        bool b;
        if ((rc = truth(e, at, &x, &b)) != 0) {
            return rc;
        }
        *out = vbool(b);
        return 0;
    }
    if (!is_num(&x)) {
        return fail(e, at, "%s() argument must be a string or a number, not '%s'", name,
                    type_name(&x));
    }
    if (name[0] == 'f') {
        *out = vfloat(num_f(&x));
    } else if (x.k == V_FLOAT && (isnan(x.f) || isinf(x.f))) {
        return fail(e, at, "cannot convert float %s to integer", isnan(x.f) ? "NaN" :
                    "infinity");
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
        return call_op(e, at, name, false, c, out);
    }
    const struct value *x = &c->args[0];
    if (x->k == V_FLOAT) {
        *out = vfloat(fabs(x->f));
    } else if (num_i(x) == INT64_MIN) {
        return fail(e, at, "integer overflow in abs() (tensorctl's ints are 64-bit)");
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
    return call_op(e, at, name, false, c, out);
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
        return call_op(e, at, name[1] == 'a' ? "maximum" : "minimum", false, c, out);
    }
    return call_op(e, at, name, false, c, out);
}

/* list(x), tuple(x) */
static int bi_sequence(struct tdx_env *e, const struct tdx_node *at, const char *name,
                       const struct call *c, struct value *out)
{
    int rc;
    if (c->nargs == 0) {
        return vseq(e, out, name[0] == 'l' ? V_LIST : V_TUPLE, 0);
    }
    const struct value *x = &c->args[0];
    if (x->k == V_RANGE) {
        int64_t n = 0;
        for (int64_t v = x->i; x->step > 0 ? v < x->stop : v > x->stop; v += x->step) {
            n++;
        }
        if (n > 10000000) {
            return fail(e, at, "range too long for a list");
        }
        if ((rc = vseq(e, out, name[0] == 'l' ? V_LIST : V_TUPLE, (int)n)) != 0) {
            return rc;
        }
        for (int64_t k = 0; k < n; k++) {
            out->items[k] = vint(x->i + k * x->step);
        }
        return 0;
    }
    if (x->k == V_TENSOR) {
        return tolist(e, x->t, at, out);
    }
    if (x->k != V_LIST && x->k != V_TUPLE && x->k != V_SIZE) {
        return fail(e, at, "'%s' object is not iterable", type_name(x));
    }
    if ((rc = vcopy(e, out, x)) == 0) {
        out->k = name[0] == 'l' ? V_LIST : V_TUPLE;
    }
    return rc;
}

/* Built-in functions: torch's without "torch.", and a few of Python's (NULL: handled where
** they are called). Names the op table also has (abs, round) go to the op for tensors. */
static const struct {
    const char *name;
    builtin_fn fn;
} BUILTINS[] = {
    {"tensor", bi_tensor}, {"zeros", bi_create}, {"ones", bi_create}, {"full", bi_create},
    {"rand", bi_create}, {"randn", bi_create}, {"arange", bi_arange},
    {"manual_seed", bi_manual_seed}, {"no_grad", bi_grad_ctx}, {"enable_grad", bi_grad_ctx},
    {"print", bi_print}, {"len", bi_len}, {"range", bi_range}, {"float", bi_convert},
    {"int", bi_convert}, {"bool", bi_convert}, {"str", bi_convert}, {"abs", bi_abs},
    {"round", bi_round}, {"isinstance", NULL}, {"list", bi_sequence}, {"tuple", bi_sequence},
    {"type", NULL}, {"is_grad_enabled", bi_is_grad_enabled}, {"from_numpy", bi_tensor},
    {"set_grad_enabled", bi_set_grad_enabled},
};

/* Ops whose torch spelling has overloads besides ops.def's signature. */
static const struct {
    const char *name;
    builtin_fn fn;
} OP_OVERLOADS[] = {
    {"randint", bi_randint}, {"max", bi_max_min}, {"min", bi_max_min},
};

/* Calls the builtin or op `name`. */
static int func(struct tdx_env *e, const struct tdx_node *at, const char *name,
                const struct call *c, struct value *out)
{
    *out = (struct value){.k = V_NONE};
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++) {
        if (BUILTINS[i].fn != NULL && strcmp(BUILTINS[i].name, name) == 0) {
            return BUILTINS[i].fn(e, at, name, c, out);
        }
    }
    for (size_t i = 0; i < sizeof OP_OVERLOADS / sizeof OP_OVERLOADS[0]; i++) {
        if (strcmp(OP_OVERLOADS[i].name, name) == 0) {
            return OP_OVERLOADS[i].fn(e, at, name, c, out);
        }
    }
    return call_op(e, at, name, false, c, out);
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
static const char *const PY_ONLY[] = {"print", "len", "range", "str", "isinstance", "list",
                                      "tuple", "type"};

/* torch.X, so that pasted PyTorch code runs unchanged after `import torch`. */
static int module_attr(struct tdx_env *e, const struct tdx_node *at, const char *module,
                       const char *name, struct value *out)
{
    static const char *const TORCH_DTYPES[][2] = {
        {"float32", "1"}, {"float", "1"}, {"float64", "2"}, {"double", "2"}, {"int32", "3"},
        {"int", "3"}, {"int64", "4"}, {"long", "4"}, {"bool", "5"},
    };
    if (strcmp(module, "torch") != 0) {
        return fail(e, at, "numpy is not available in tensorctl (%s.%s); build tensors with "
                    "tensor([...])", module, name);
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
            return fail(e, at, "out of memory");
        }
        return 0;
    }
    return fail(e, at, "module 'torch' has no attribute '%s'", name);
}

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
                return fail(e, k, strcmp(s->str, "numpy") == 0 ?
                            "cannot import name '%s' from 'numpy' (numpy is not available in "
                            "tensorctl)" : "No module named '%s' (tensorctl has torch only)",
                            strcmp(s->str, "numpy") == 0 ? what : s->str);
            }
            if ((rc = module_attr(e, k, "torch", what, &v)) != 0) {
                e->has_err = false;
                return fail(e, k, "cannot import name '%s' from 'torch'", what);
            }
            if ((rc = bind(e, as != NULL ? as : what, &v)) != 0) {
                return rc;
            }
            continue;
        }
        if (strcmp(what, "torch") != 0 && strcmp(what, "numpy") != 0) {
            return fail(e, k, "No module named '%s' (tensorctl has torch, and numpy as a name "
                        "only)", what);
        }
        if (what[0] == 'n' && e->cfg.interactive) {
            fprintf(e->cfg.err, "note: numpy is not available in tensorctl; '%s.' names will "
                    "fail (use tensor([...]))\n", as != NULL ? as : what);
        }
        v.k = V_MODULE;
        if ((v.s = strdup(what)) == NULL) {
            return fail(e, k, "out of memory");
        }
        if ((rc = bind(e, as != NULL ? as : what, &v)) != 0) {
            return rc;
        }
    }
    return 0;
}

static int name_value(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    struct var *x = lookup(e, n->str);
    if (x != NULL) {
        return vcopy(e, out, &x->v);
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
            return fail(e, n, "out of memory");
        }
        return 0;
    }
    return fail(e, n, "name '%s' is not defined", n->str);
}

/* x[...] on a tensor: ints select, slices slice, None adds a dim, ... stands for the rest. */
static int index_tensor(struct tdx_env *e, const struct tdx_node *n, struct tref *t,
                        struct value *subs, int nsubs, struct value *out)
{
    int rc, d = 0, fill = -1;
    struct value cur = vtensor(tref_ref(t));
    for (int k = 0; k < nsubs; k++) {
        struct value *s = &subs[k];
        struct value res = {0};
        struct tensord_op_args a;
        memset(&a, 0, sizeof a);
        const char *op = NULL;
        if (s->k == V_STR && s->s != NULL && strcmp(s->s, "...") == 0) {
            if (fill >= 0) {
                vfree(e, &cur);
                return fail(e, n, "an index can only have a single ellipsis ('...')");
            }
            if ((rc = known(e, t, n)) != 0) {
                vfree(e, &cur);
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
            vfree(e, &cur);
            return fail(e, n, "only integers, slices (`:`), ellipsis (`...`) and None are "
                        "valid indices (got %s)", type_name(s));
        }
        struct tref *r = tref_new(e);
        struct tensord_operand in = tensord_h(cur.t->handle);
        struct tensord_error err;
        uint64_t id;
        if (r == NULL) {
            vfree(e, &cur);
            return fail(e, n, "out of memory");
        }
        int lrc = tensord_send_op_ex(e->c, op, r->handle, &in, 1, &a, false, &id, &err);
        if ((rc = send_tensor_result(e, lrc, id, r, n, &err)) != 0) {
            tref_unref(e, r);
            vfree(e, &cur);
            return rc;
        }
        r->requires_grad = cur.t->requires_grad && e->grad_enabled;
        r->is_leaf = !r->requires_grad;
        res = vtensor(r);
        vfree(e, &cur);
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
        vfree(e, &obj);
        return fail(e, n, "out of memory");
    }
    int done = 0;
    for (; done < nsubs && rc == 0; done++) {
        const struct tdx_node *s = n->kids[done + 1];
        if (s->kind == TDX_SLICE) {
            if ((rc = vseq(e, &subs[done], V_TUPLE, 3)) != 0) {
                break;
            }
            subs[done].dt = 1;  /* marks a slice */
            for (int k = 0; k < 3 && rc == 0; k++) {
                if (s->kids[k] != NULL) {
                    rc = eval(e, s->kids[k], &subs[done].items[k]);
                    if (rc == 0 && subs[done].items[k].k != V_INT &&
                        subs[done].items[k].k != V_NONE) {
                        rc = fail(e, s->kids[k], "slice indices must be integers or None");
                    }
                }
            }
        } else if (s->kind == TDX_ELLIPSIS) {
            rc = vstr(e, &subs[done], "...", 3);
        } else {
            rc = eval(e, s, &subs[done]);
        }
    }
    if (rc == 0) {
        if (obj.k == V_TENSOR) {
            rc = index_tensor(e, n, obj.t, subs, nsubs, out);
        } else if (obj.k == V_LIST || obj.k == V_TUPLE || obj.k == V_SIZE) {
            if (nsubs != 1) {
                rc = fail(e, n, "%s indices must be integers or slices, not tuple",
                          type_name(&obj));
            } else if (subs[0].k == V_INT || subs[0].k == V_BOOL) {
                int64_t i = num_i(&subs[0]);
                if (i < 0) {
                    i += obj.n;
                }
                if (i < 0 || i >= obj.n) {
                    rc = fail(e, n, "%s index out of range", obj.k == V_LIST ? "list" : "tuple");
                } else {
                    rc = vcopy(e, out, &obj.items[i]);
                }
            } else if (subs[0].k == V_TUPLE && subs[0].dt == 1) {
                struct value *sl = subs[0].items;
                int64_t st = sl[2].k == V_NONE ? 1 : sl[2].i;
                if (st <= 0) {
                    rc = fail(e, n, "slice step must be positive here");
                } else {
                    int64_t a = sl[0].k == V_NONE ? 0 : sl[0].i;
                    int64_t b = sl[1].k == V_NONE ? obj.n : sl[1].i;
                    a = a < 0 ? (a + obj.n < 0 ? 0 : a + obj.n) : (a > obj.n ? obj.n : a);
                    b = b < 0 ? (b + obj.n < 0 ? 0 : b + obj.n) : (b > obj.n ? obj.n : b);
                    int cnt = b > a ? (int)((b - a + st - 1) / st) : 0;
                    if ((rc = vseq(e, out, obj.k, cnt)) == 0) {
                        for (int k = 0; k < cnt && rc == 0; k++) {
                            rc = vcopy(e, &out->items[k], &obj.items[a + k * st]);
                        }
                    }
                }
            } else {
                rc = fail(e, n, "%s indices must be integers or slices, not %s",
                          type_name(&obj), type_name(&subs[0]));
            }
        } else {
            rc = fail(e, n, "'%s' object is not subscriptable", type_name(&obj));
        }
    }
    for (int k = 0; k < nsubs; k++) {
        vfree(e, &subs[k]);
    }
    free(subs);
    vfree(e, &obj);
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
            rc = attribute(e, f, &self, f->str, &callee);
            vfree(e, &self);
            if (rc != 0) {
                return rc;
            }
        }
    } else if ((rc = eval(e, f, &callee)) != 0) {
        return rc;
    }
    if ((rc = eval_args(e, n, &c)) != 0) {
        vfree(e, &self);
        vfree(e, &callee);
        return rc;
    }
    if (self.k == V_TENSOR) {
        if (self.t->none) {
            rc = fail(e, f, "'NoneType' object has no attribute '%s'", f->str);
        } else {
            rc = method(e, n, self.t, f->str, &c, out);
        }
    } else if (callee.k == V_METHOD) {
        rc = method(e, n, callee.t, callee.s, &c, out);
    } else if (callee.k == V_FUNC) {
        rc = func(e, n, callee.s, &c, out);
    } else if (callee.k == V_DTYPE) {
        rc = fail(e, n, "'torch.dtype' object is not callable");
    } else {
        rc = fail(e, n, "'%s' object is not callable", type_name(&callee));
    }
    call_free(e, &c);
    vfree(e, &self);
    vfree(e, &callee);
    return rc;
}

static int eval(struct tdx_env *e, const struct tdx_node *n, struct value *out)
{
    int rc;
    *out = (struct value){.k = V_NONE};
    switch (n->kind) {
    case TDX_INT: *out = vint(n->ival); return 0;
    case TDX_FLOAT: *out = vfloat(n->fval); return 0;
    case TDX_STR: return vstr(e, out, n->str, (size_t)n->ival);
    case TDX_TRUE: *out = vbool(true); return 0;
    case TDX_FALSE: *out = vbool(false); return 0;
    case TDX_NONE: return 0;
    case TDX_ELLIPSIS: return fail(e, n, "'...' is only valid as an index");
    case TDX_NAME: return name_value(e, n, out);
    case TDX_FSTR: {
        struct td_strbuf b;
        td_strbuf_init(&b, 0);
        rc = 0;
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
                vfree(e, &v);
                rc = p->op == 'a' ? fail(e, p, "f-string: the !a conversion is not supported")
                                  : fail(e, p, "f-string: invalid conversion character: "
                                         "expected 's', 'r', or 'a'");
                break;
            }
            if (v.k == V_TENSOR && p->op == 0 && (rc = known(e, v.t, p)) == 0 &&
                v.t->info.ndim == 0) {
                /* Tensor.__format__: a 0-dim tensor formats as its item() */
                struct value x;
                if ((rc = item(e, v.t, p, &x)) == 0) {
                    vfree(e, &v);
                    v = x;
                }
            }
            if (rc != 0) {
                vfree(e, &v);
                break;
            }
            if (p->op == 'r' || p->op == 's' || p->op == 'a') {
                /* !r / !s / !a convert first; the spec then formats the string */
                struct td_strbuf conv;
                td_strbuf_init(&conv, 0);
                if ((rc = vtext(e, &v, p->op == 's', p, &conv)) == 0) {
                    vfree(e, &v);
                    rc = vstr(e, &v, td_strbuf_str(&conv), conv.len);
                }
                td_strbuf_free(&conv);
                if (rc != 0) {
                    vfree(e, &v);
                    break;
                }
            }
            if (p->str != NULL && p->str[0] != '\0') {
                rc = format_spec(e, p, &v, p->str, &b);
            } else {
                rc = vtext(e, &v, true, p, &b);
            }
            vfree(e, &v);
        }
        if (rc == 0) {
            rc = vstr(e, out, td_strbuf_str(&b), b.len);
        }
        td_strbuf_free(&b);
        return rc;
    }
    case TDX_LIST: case TDX_TUPLE:
        if ((rc = vseq(e, out, n->kind == TDX_LIST ? V_LIST : V_TUPLE, n->nkids)) != 0) {
            return rc;
        }
        for (int i = 0; i < n->nkids; i++) {
            if ((rc = eval(e, n->kids[i], &out->items[i])) != 0) {
                vfree(e, out);
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
            vfree(e, &a);
            return rc;
        }
        rc = binop(e, n, n->op, &a, &b, out);
        vfree(e, &a);
        vfree(e, &b);
        return rc;
    }
    case TDX_UNARY: {
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
        if (a.k == V_TENSOR) {
            struct call c = {.args = &a, .nargs = 1};
            rc = call_op(e, n, "neg", false, &c, out);
        } else if (a.k == V_FLOAT) {
            *out = vfloat(-a.f);
        } else if (a.k == V_INT || a.k == V_BOOL) {
            *out = vint(-num_i(&a));
        } else {
            rc = fail(e, n, "bad operand type for unary %s: '%s'",
                      n->op == TDX_OP_NEG ? "-" : "+", type_name(&a));
        }
        vfree(e, &a);
        return rc;
    }
    case TDX_NOT: {
        struct value a;
        bool b;
        if ((rc = eval(e, n->kids[0], &a)) != 0) {
            return rc;
        }
        rc = truth(e, n, &a, &b);
        vfree(e, &a);
        *out = vbool(!b);
        return rc;
    }
    case TDX_AND: case TDX_OR: {
        bool b;
        if ((rc = eval(e, n->kids[0], out)) != 0) {
            return rc;
        }
        if ((rc = truth(e, n, out, &b)) != 0) {
            vfree(e, out);
            return rc;
        }
        if (b == (n->kind == TDX_OR)) {
            return 0;
        }
        vfree(e, out);
        return eval(e, n->kids[1], out);
    }
    case TDX_CALL: return eval_call(e, n, out);
    case TDX_ATTR: {
        struct value obj;
        if ((rc = eval(e, n->kids[0], &obj)) != 0) {
            return rc;
        }
        rc = attribute(e, n, &obj, n->str, out);
        vfree(e, &obj);
        return rc;
    }
    case TDX_INDEX: return eval_index(e, n, out);
    default:
        return fail(e, n, "invalid syntax");
    }
}

/* ---- statements ---- */

static int exec(struct tdx_env *e, const struct tdx_node *s);

static int show(struct tdx_env *e, const struct tdx_node *at, struct value *v)
{
    if (v->k == V_NONE) {
        return 0;
    }
    struct call c = {.args = v, .nargs = 1};
    if (v->k == V_STR && !e->cfg.json) {
        /* the REPL shows repr() */
        struct td_strbuf b;
        td_strbuf_init(&b, 0);
        vtext(e, v, false, at, &b);
        td_strbuf_puts(&b, "\n");
        if (b.len > 0) {
            fwrite(td_strbuf_str(&b), 1, b.len, e->cfg.out);
            fflush(e->cfg.out);
        }
        td_strbuf_free(&b);
        return 0;
    }
    return print_values(e, at, &c);
}

static const char *const INPLACE[] = {
    [TDX_OP_ADD] = "add", [TDX_OP_SUB] = "sub", [TDX_OP_MUL] = "mul", [TDX_OP_DIV] = "div",
    [TDX_OP_FLOORDIV] = "floor_divide", [TDX_OP_MOD] = "remainder", [TDX_OP_POW] = "pow",
};

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
        rc = fail(e, t, "'%s' object attribute '%s' is read-only", type_name(&obj), t->str);
    } else if (strcmp(t->str, "grad") == 0 && v->k == V_NONE) {
        rc = plain(e, tensord_send_set_grad(e->c, obj.t->handle, false, true, false, &id, &err),
                   &id, t, &err);
    } else if (strcmp(t->str, "requires_grad") == 0 && v->k == V_BOOL) {
        rc = plain(e, tensord_send_set_grad(e->c, obj.t->handle, v->b, false, false, &id, &err),
                   &id, t, &err);
        obj.t->requires_grad = v->b;
    } else if (strcmp(t->str, "grad") == 0) {
        rc = fail(e, t, "only `.grad = None` is supported");
    } else {
        rc = fail(e, t, "attribute '%s' of 'Tensor' objects is not writable", t->str);
    }
    vfree(e, &obj);
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
        vfree(e, &view);
        return fail(e, t, "item assignment is supported on tensors only");
    }
    struct value args[2] = {view, *v};
    struct call c = {.args = args, .nargs = 2};
    struct value res;
    rc = call_op(e, t, v->k == V_TENSOR ? "copy" : "fill", true, &c, &res);
    if (rc == 0) {
        vfree(e, &res);
    }
    vfree(e, &view);
    return rc;
}

static int exec_block(struct tdx_env *e, const struct tdx_node *s, int first)
{
    int rc = 0;
    for (int i = first; i < s->nkids; i++) {
        if ((rc = exec(e, s->kids[i])) != 0) {
            return rc;
        }
        if ((rc = flush_dead(e)) != 0) {
            return rc;
        }
    }
    return rc;
}

static int exec(struct tdx_env *e, const struct tdx_node *s)
{
    struct value v = {0};
    int rc;
    switch (s->kind) {
    case TDX_PASS:
        return 0;
    case TDX_IMPORT:
        return exec_import(e, s);
    case TDX_EXPR:
        if ((rc = eval(e, s->kids[0], &v)) == 0) {
            rc = show(e, s->kids[0], &v);
        }
        vfree(e, &v);
        return rc;
    case TDX_ASSIGN: {
        const struct tdx_node *t = s->kids[0];
        if ((rc = eval(e, s->kids[1], &v)) != 0) {
            return rc;
        }
        if (t->kind == TDX_NAME) {
            return bind(e, t->str, &v);
        }
        rc = t->kind == TDX_ATTR ? assign_attr(e, t, &v) : assign_index(e, t, &v);
        vfree(e, &v);
        return rc;
    }
    case TDX_AUGASSIGN: {
        const struct tdx_node *t = s->kids[0];
        struct value cur, rhs, res;
        if ((rc = eval(e, t, &cur)) != 0) {
            return rc;
        }
        if ((rc = eval(e, s->kids[1], &rhs)) != 0) {
            vfree(e, &cur);
            return rc;
        }
        if (cur.k == V_TENSOR && s->op != TDX_OP_MATMUL) {
            /* in place, like Tensor.__isub__ */
            struct value args[2] = {cur, rhs};
            struct call c = {.args = args, .nargs = 2};
            rc = call_op(e, s, INPLACE[s->op], true, &c, &res);
            if (rc == 0) {
                vfree(e, &res);
            }
        } else if ((rc = binop(e, s, s->op, &cur, &rhs, &res)) == 0) {
            if (t->kind == TDX_NAME) {
                rc = bind(e, t->str, &res);
            } else {
                vfree(e, &res);
                rc = fail(e, s, "augmented assignment to this target needs a tensor");
            }
        }
        vfree(e, &cur);
        vfree(e, &rhs);
        return rc;
    }
    case TDX_DEL:
        for (int i = 0; i < s->nkids; i++) {
            const struct tdx_node *t = s->kids[i];
            struct var *x;
            if (t->kind != TDX_NAME) {
                return fail(e, t, "only names can be deleted");
            }
            if ((x = lookup(e, t->str)) == NULL) {
                return fail(e, t, "name '%s' is not defined", t->str);
            }
            unbind(e, x);
        }
        return 0;
    case TDX_WITH: {
        if ((rc = eval(e, s->kids[0], &v)) != 0) {
            return rc;
        }
        if (v.k != V_CTX) {
            rc = fail(e, s->kids[0], "'%s' object does not support the context manager "
                      "protocol", type_name(&v));
            vfree(e, &v);
            return rc;
        }
        bool prev = e->grad_enabled, want = v.dt != 0;
        if (want != prev && (rc = set_grad_mode(e, want, s)) != 0) {
            return rc;
        }
        rc = exec_block(e, s, 1);
        if (want != prev) {
            int rc2 = set_grad_mode(e, prev, s);
            rc = rc != 0 ? rc : rc2;
        }
        return rc;
    }
    case TDX_FOR: {
        struct value it;
        if ((rc = eval(e, s->kids[0], &it)) != 0) {
            return rc;
        }
        if (it.k == V_RANGE) {
            for (int64_t i = it.i; rc == 0 && (it.step > 0 ? i < it.stop : i > it.stop);
                 i += it.step) {
                struct value x = vint(i);
                if ((rc = bind(e, s->str, &x)) == 0) {
                    rc = exec_block(e, s, 1);
                }
            }
        } else if (it.k == V_LIST || it.k == V_TUPLE || it.k == V_SIZE) {
            for (int i = 0; rc == 0 && i < it.n; i++) {
                struct value x;
                if ((rc = vcopy(e, &x, &it.items[i])) == 0 && (rc = bind(e, s->str, &x)) == 0) {
                    rc = exec_block(e, s, 1);
                }
            }
        } else {
            rc = fail(e, s->kids[0], "'%s' object is not iterable", type_name(&it));
        }
        vfree(e, &it);
        return rc;
    }
    default:
        return fail(e, s, "invalid statement");
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
            rc = flush_dead(e);
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
                report(e, e->err_line, e->err_col, e->err_msg);
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
    int rc = flush_dead(e);
    if (rc == 0) {
        rc = tdx_sync(e);
    }
    if (rc == TDX_FATAL || e->broken) {
        return TDX_FATAL;
    }
    return rc != 0 || e->failed ? TDX_ERROR : status;
}

/* ---- meta-commands ---- */

static int cmp_var(const void *a, const void *b)
{
    return strcmp(((const struct var *)a)->name, ((const struct var *)b)->name);
}

static void shape_str(const struct tensord_info *in, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < in->ndim && k < cap; i++) {
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", in->shape[i]);
    }
    if (k < cap) {
        snprintf(buf + k, cap - k, "]");
    }
}

static int meta_ls(struct tdx_env *e)
{
    int rc = need_sync(e);
    if (rc != 0) {
        return rc;
    }
    qsort(e->vars, (size_t)e->nvars, sizeof *e->vars, cmp_var);
    fprintf(e->cfg.out, "%-16s %-20s %-8s %12s  %s\n", "name", "shape", "dtype", "bytes",
            "requires_grad");
    uint64_t total = 0;
    int count = 0;
    for (int i = 0; i < e->nvars; i++) {
        struct value *v = &e->vars[i].v;
        if (v->k != V_TENSOR || v->t->none) {
            continue;
        }
        if ((rc = known(e, v->t, NULL)) != 0) {
            e->has_err = false;
            continue;
        }
        char shape[128];
        shape_str(&v->t->info, shape, sizeof shape);
        fprintf(e->cfg.out, "%-16s %-20s %-8s %12" PRIu64 "  %s\n", e->vars[i].name, shape,
                dtype_str(v->t->info.dtype), v->t->info.nbytes,
                v->t->requires_grad ? "True" : "False");
        total += v->t->info.nbytes;
        count++;
    }
    fprintf(e->cfg.out, "%d tensor%s, %" PRIu64 " bytes\n", count, count == 1 ? "" : "s", total);
    return 0;
}

/* The safetensors dtype of a tensord one, and back (-1 for none). */
static int st_dtype(enum tensord_dtype dt)
{
    switch (dt) {
    case TENSORD_FLOAT32: return TD_ST_F32;
    case TENSORD_FLOAT64: return TD_ST_F64;
    case TENSORD_INT32: return TD_ST_I32;
    case TENSORD_INT64: return TD_ST_I64;
    case TENSORD_BOOL: return TD_ST_BOOL;
    default: return -1;
    }
}

static enum tensord_dtype tensord_dtype_of_st(int st)
{
    switch (st) {
    case TD_ST_F32: return TENSORD_FLOAT32;
    case TD_ST_F64: return TENSORD_FLOAT64;
    case TD_ST_I32: return TENSORD_INT32;
    case TD_ST_I64: return TENSORD_INT64;
    default: return TENSORD_BOOL;
    }
}

/* Writes a safetensors file: the header (base/safetensors.c lays it out) and the tensors'
** bytes in order. 0, or -1 with a message in err. */
static int st_write_file(const char *path, struct td_st_entry *ents, void *const *data, int n,
                         struct td_err *err)
{
    static const char *const keys[] = {"format"}, *const vals[] = {"pt"};
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nbytes = ents[i].end;
        ents[i].begin = off;
        ents[i].end = off + nbytes;
        off += nbytes;
    }
    uint8_t *hdr;
    size_t hlen;
    if (td_st_header_build(ents, n, keys, vals, 1, &hdr, &hlen, err) != 0) {
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        td_free(hdr);
        td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    bool ok = fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++) {
        size_t nb = (size_t)(ents[i].end - ents[i].begin);
        ok = nb == 0 || fwrite(data[i], 1, nb, f) == nb;
    }
    td_free(hdr);
    if (fclose(f) != 0 || !ok) {
        td_err_set(err, TD_EIO, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads a whole file into *buf (malloc'd). 0, or -1 with a message in err. */
static int read_file(const char *path, uint8_t **buf, size_t *size, struct td_err *err)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f == NULL) {
        td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        n = ftell(f);
    }
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        td_err_set(err, TD_EIO, "%s: cannot read", path);
        return -1;
    }
    if ((*buf = malloc((size_t)n + 1)) == NULL) {
        fclose(f);
        td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
        return -1;
    }
    size_t got = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(*buf);
        td_err_set(err, TD_EIO, "%s: read failed", path);
        return -1;
    }
    *size = (size_t)n;
    return 0;
}

/* A tensor name from another tool ("layer.weight", "0.bias") as a tensorctl name. */
static void st_var_name(const char *name, char *out, size_t cap)
{
    size_t k = 0;
    if (isdigit((unsigned char)name[0]) || name[0] == '\0') {
        out[k++] = '_';
    }
    for (const char *p = name; *p != '\0' && k + 1 < cap; p++) {
        out[k++] = isalnum((unsigned char)*p) || *p == '_' ? *p : '_';
    }
    out[k] = '\0';
}

static int meta_save(struct tdx_env *e, char **words, int n)
{
    if (n < 2) {
        fprintf(e->cfg.err, "usage: :save FILE [name ...]\n");
        return TDX_ERROR;
    }
    int rc = need_sync(e);
    if (rc != 0) {
        return rc;
    }
    struct td_st_entry *ts = calloc((size_t)e->nvars + (size_t)n, sizeof *ts);
    void **bufs = calloc((size_t)e->nvars + (size_t)n, sizeof *bufs);
    int nt = 0;
    if (ts == NULL || bufs == NULL) {
        free(ts);
        free(bufs);
        fprintf(e->cfg.err, "out of memory\n");
        return TDX_ERROR;
    }
    qsort(e->vars, (size_t)e->nvars, sizeof *e->vars, cmp_var);
    for (int i = 0; i < e->nvars && rc == 0; i++) {
        struct var *x = &e->vars[i];
        bool wanted = n == 2;
        for (int k = 2; k < n; k++) {
            wanted |= strcmp(words[k], x->name) == 0;
        }
        if (!wanted || x->v.k != V_TENSOR || x->v.t->none) {
            continue;
        }
        struct tref *t = x->v.t;
        struct tensord_error err;
        if ((rc = known(e, t, NULL)) != 0) {
            break;
        }
        if ((bufs[nt] = malloc(t->info.nbytes > 0 ? t->info.nbytes : 1)) == NULL) {
            rc = fail(e, NULL, "out of memory");
            break;
        }
        e->waits++;
        if (tensord_get(e->c, t->handle, &t->info, bufs[nt], t->info.nbytes, &err) != 0) {
            rc = lib_fail(e, NULL, &err);
            free(bufs[nt]);
            break;
        }
        /* end is the size until st_write_file lays the buffer out */
        ts[nt] = (struct td_st_entry){.name = x->name, .dtype = st_dtype(t->info.dtype),
                                      .ndim = t->info.ndim, .end = t->info.nbytes};
        memcpy(ts[nt].shape, t->info.shape, sizeof ts[nt].shape);
        nt++;
    }
    for (int k = 2; k < n && rc == 0; k++) {
        struct var *x = lookup(e, words[k]);
        if (x == NULL || x->v.k != V_TENSOR) {
            rc = fail(e, NULL, "%s: no tensor named '%s'", words[1], words[k]);
        }
    }
    struct td_err terr = {0};
    if (rc == 0 && st_write_file(words[1], ts, bufs, nt, &terr) != 0) {
        rc = fail(e, NULL, "%s", terr.msg);
    }
    if (rc == 0) {
        fprintf(e->cfg.out, "saved %d tensor%s to %s\n", nt, nt == 1 ? "" : "s", words[1]);
    }
    for (int i = 0; i < nt; i++) {
        free(bufs[i]);
    }
    free(bufs);
    free(ts);
    return rc;
}

static int meta_load(struct tdx_env *e, const char *path)
{
    struct td_st_header h;
    struct td_err terr = {0};
    uint8_t *buf;
    size_t size, data_off;
    if (read_file(path, &buf, &size, &terr) != 0) {
        return fail(e, NULL, "%s", terr.msg);
    }
    if (td_st_file_parse(buf, size, &h, &data_off, &terr) != 0) {
        free(buf);
        return fail(e, NULL, "%s: %s", path, terr.msg);
    }
    int rc = 0;
    for (int i = 0; i < h.n && rc == 0; i++) {
        const struct td_st_entry *s = &h.e[i];
        struct tref *t = tref_new(e);
        struct tensord_error err;
        uint64_t id;
        char name[TD_ST_NAME_MAX + 2];
        if (t == NULL) {
            rc = fail(e, NULL, "out of memory");
            break;
        }
        int lrc = tensord_send_create(e->c, t->handle, tensord_dtype_of_st(s->dtype), s->shape,
                                      s->ndim, buf + data_off + s->begin, s->end - s->begin,
                                      &id, &err);
        if ((rc = send_tensor_result(e, lrc, id, t, NULL, &err)) != 0) {
            tref_unref(e, t);
            break;
        }
        struct value v = vtensor(t);
        st_var_name(s->name, name, sizeof name);
        rc = bind(e, name, &v);
    }
    /* the data is borrowed until written */
    struct tensord_error err;
    if (rc == 0 && tensord_flush(e->c, &err) != 0) {
        rc = lib_fail(e, NULL, &err);
    }
    int src = tdx_sync(e);
    if (rc == 0 && src == 0) {
        fprintf(e->cfg.out, "loaded %d tensor%s from %s\n", h.n, h.n == 1 ? "" : "s", path);
    }
    td_st_header_free(&h);
    free(buf);
    return rc != 0 ? rc : src;
}

int tdx_meta(struct tdx_env *e, const char *line, const char *server_addr)
{
    char *copy = strdup(line);
    char *words[64];
    int n = 0, rc = 0;
    if (copy == NULL) {
        return TDX_ERROR;
    }
    for (char *p = strtok(copy, " \t\r\n"); p != NULL && n < 64; p = strtok(NULL, " \t\r\n")) {
        words[n++] = p;
    }
    const char *cmd = n > 0 ? words[0] : ":";
    if (strcmp(cmd, ":ls") == 0) {
        rc = meta_ls(e);
    } else if (strcmp(cmd, ":stats") == 0) {
        struct tensord_stats st;
        struct tensord_error err;
        if ((rc = need_sync(e)) == 0) {
            e->waits++;
            if (tensord_stats(e->c, &st, &err) != 0) {
                rc = lib_fail(e, NULL, &err);
            } else {
                fprintf(e->cfg.out, "session_bytes    %" PRIu64 "\nsession_tensors  %" PRIu64
                        "\nsessions         %" PRIu64 "\nserver_bytes     %" PRIu64 "\n",
                        st.session_bytes, st.session_tensors, st.sessions, st.server_bytes);
            }
        }
    } else if (strcmp(cmd, ":session") == 0) {
        char hex[33];
        struct tensord_limits lim;
        tensord_session_token_hex(e->c, hex);
        tensord_limits(e->c, &lim);
        fprintf(e->cfg.out, "server   %s (%s)\ntoken    %s%s\nlimits   max_frame_bytes=%"
                PRIu64 " max_tensor_bytes=%" PRIu64 " session_max_bytes=%" PRIu64 "\n",
                server_addr, tensord_server_version(e->c), hex,
                tensord_resumed(e->c) ? " (resumed)" : "", lim.max_frame_bytes,
                lim.max_tensor_bytes, lim.session_max_bytes);
        fprintf(e->cfg.out, "resume   tensorctl --addr %s --resume %s\n", server_addr, hex);
    } else if (strcmp(cmd, ":time") == 0) {
        if (n == 2 && (strcmp(words[1], "on") == 0 || strcmp(words[1], "off") == 0)) {
            e->timing = words[1][1] == 'n';
        } else if (n == 1) {
            fprintf(e->cfg.out, "time %s\n", e->timing ? "on" : "off");
        } else {
            fprintf(e->cfg.err, "usage: :time on|off\n");
            rc = TDX_ERROR;
        }
    } else if (strcmp(cmd, ":save") == 0) {
        rc = meta_save(e, words, n);
    } else if (strcmp(cmd, ":load") == 0) {
        if (n != 2) {
            fprintf(e->cfg.err, "usage: :load FILE\n");
            rc = TDX_ERROR;
        } else {
            rc = meta_load(e, words[1]);
        }
    } else {
        fprintf(e->cfg.err, "unknown command %s (try :help)\n", cmd);
        rc = TDX_ERROR;
    }
    if (e->has_err) {
        fprintf(e->cfg.err, "%s: %s\n", cmd, e->err_msg);
        e->has_err = false;
    }
    free(copy);
    return e->broken ? TDX_FATAL : rc;
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
        vfree(e, &e->vars[i].v);
        free(e->vars[i].name);
    }
    for (size_t i = 0; i < e->npend; i++) {
        tref_unref(e, e->pend[i].t);
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
                    return;  /* numpy: nothing there */
                }
                module = true;
            }
        }
    }
    if (object != NULL && !module) {
        /* a tensor's methods and attributes, not torch's functions such as eye or cat */
        for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
            if (strncmp(METHODS[i], prefix, n) == 0) {
                fn(METHODS[i], arg);
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
    static const char *const KW[] = {"True", "False", "None", "with", "for", "in", "del",
                                     "not", "and", "or", "pass", "import"};
    for (size_t i = 0; i < sizeof KW / sizeof KW[0]; i++) {
        if (strncmp(KW[i], prefix, n) == 0) {
            fn(KW[i], arg);
        }
    }
}
