/* print.c — printing values: Python's repr and str, the server's text for tensors, JSON
** (--json), f-string format specs (format.c does the mini-language), print() and the REPL's
** echo of an expression's value.
*/
#include "interp.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "format.h"

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

const char *tdx_dtype_str(int dt)
{
    return tensord_dtype_name((enum tensord_dtype)dt);
}

static int tensor_text(struct tdx_env *e, struct tref *t, const struct tdx_node *at,
                       struct td_strbuf *b)
{
    int rc;
    if (!t->none && (rc = tdx_need_sync(e)) != 0) {
        return rc;
    }
    if (t->none) {
        td_strbuf_puts(b, "None");
        return 0;
    }
    if (e->fmt == NULL && (e->fmt = malloc(FORMAT_CAP)) == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    struct tensord_error err;
    e->waits++;
    if (tensord_format(e->c, t->handle, e->fmt, FORMAT_CAP, &err) != 0) {
        return tdx_lib_fail(e, at, &err);
    }
    td_strbuf_puts(b, e->fmt);
    return 0;
}

/* repr(v) (str(v) when `str` and v is a string) appended to b. */
int tdx_vtext(struct tdx_env *e, const struct value *v, bool str, const struct tdx_node *at,
              struct td_strbuf *b)
{
    char num[64];
    int rc;
    switch (v->k) {
    case V_NONE: td_strbuf_puts(b, "None"); return 0;
    case V_BOOL: td_strbuf_puts(b, v->b ? "True" : "False"); return 0;
    case V_INT: td_strbuf_printf(b, "%" PRId64, v->i); return 0;
    case V_FLOAT:
        fmt_float(v->f, num, sizeof num);
        td_strbuf_puts(b, num);
        return 0;
    case V_STR:
        if (str) {
            td_strbuf_append(b, v->s, (size_t)v->i);
        } else {
            str_repr(b, v->s, (size_t)v->i);
        }
        return 0;
    case V_TENSOR: return tensor_text(e, v->t, at, b);
    case V_LIST:
    case V_TUPLE:
    case V_SIZE:
        if (v->k == V_TUPLE && v->s != NULL && v->n == 2) { /* max/min with a dim */
            td_strbuf_printf(b, "tensord.return_types.%s(\nvalues=", v->s);
            if ((rc = tdx_vtext(e, &v->items[0], false, at, b)) != 0) {
                return rc;
            }
            td_strbuf_puts(b, ",\nindices=");
            if ((rc = tdx_vtext(e, &v->items[1], false, at, b)) != 0) {
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
            if ((rc = tdx_vtext(e, &v->items[i], false, at, b)) != 0) {
                return rc;
            }
        }
        td_strbuf_puts(b, v->k == V_LIST ? "]" : v->k == V_SIZE ? "])" : v->n == 1 ? ",)" : ")");
        return 0;
    case V_DTYPE: td_strbuf_printf(b, "tensord.%s", tdx_dtype_str(v->dt)); return 0;
    case V_FUNC: td_strbuf_printf(b, "<built-in function %s>", v->s); return 0;
    case V_METHOD:
        td_strbuf_printf(b, "<built-in method %s of %s object>", v->s,
                         v->b ? "tensord._C.Generator" : "Tensor");
        return 0;
    /* torch adds " at 0x…", an address in its process; here there is none to show */
    case V_GENERATOR: td_strbuf_puts(b, "<tensord._C.Generator object>"); return 0;
    case V_CTX: td_strbuf_puts(b, v->dt ? "<enable_grad>" : "<no_grad>"); return 0;
    case V_MODULE: td_strbuf_printf(b, "<module '%s'>", v->s); return 0;
    /* torch adds " at 0x…", an address in its process; here there is none to show */
    case V_NODE: td_strbuf_printf(b, "<%s object>", v->s); return 0;
    case V_RANGE:
        if (v->step == 1) {
            td_strbuf_printf(b, "range(%" PRId64 ", %" PRId64 ")", v->i, v->stop);
        } else {
            td_strbuf_printf(b, "range(%" PRId64 ", %" PRId64 ", %" PRId64 ")", v->i, v->stop,
                             v->step);
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
static int json_data(struct td_strbuf *b, const uint8_t *p, enum tensord_dtype dt,
                     const int64_t *shape, int ndim, size_t *off)
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
        default: snprintf(num, sizeof num, "%s", p[*off] ? "true" : "false"); break;
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
int tdx_fetch(struct tdx_env *e, struct tref *t, const struct tdx_node *at, uint8_t **out)
{
    uint8_t *data = malloc(t->info.nbytes > 0 ? t->info.nbytes : 1);
    struct tensord_error err;
    if (data == NULL) {
        return tdx_fail(e, at, "out of memory");
    }
    e->waits++;
    if (tensord_get(e->c, t->handle, &t->info, data, t->info.nbytes, &err) != 0) {
        free(data);
        return tdx_lib_fail(e, at, &err);
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

static int vjson(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                 struct td_strbuf *b)
{
    int rc;
    char num[64];
    switch (v->k) {
    case V_NONE: td_strbuf_puts(b, "null"); return 0;
    case V_BOOL: td_strbuf_puts(b, v->b ? "true" : "false"); return 0;
    case V_INT: td_strbuf_printf(b, "%" PRId64, v->i); return 0;
    case V_FLOAT:
        json_float(v->f, num, sizeof num);
        td_strbuf_puts(b, num);
        return 0;
    case V_STR: json_str(b, v->s, (size_t)v->i); return 0;
    case V_LIST:
    case V_TUPLE:
    case V_SIZE:
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
        if ((rc = tdx_known(e, t, at)) != 0) {
            return rc;
        }
        uint8_t *data;
        if ((rc = tdx_fetch(e, t, at, &data)) != 0) {
            return rc;
        }
        td_strbuf_puts(b, "{\"shape\": [");
        for (int i = 0; i < t->info.ndim; i++) {
            td_strbuf_printf(b, "%s%" PRId64, i > 0 ? ", " : "", t->info.shape[i]);
        }
        td_strbuf_printf(b, "], \"dtype\": \"%s\", \"data\": ", tdx_dtype_str(t->info.dtype));
        size_t off = 0;
        json_data(b, data, t->info.dtype, t->info.shape, t->info.ndim, &off);
        td_strbuf_puts(b, "}");
        free(data);
        return 0;
    }
    case V_DTYPE: td_strbuf_printf(b, "\"%s\"", tdx_dtype_str(v->dt)); return 0;
    default: {
        /* functions, ranges, modules: JSON has no such values, so their repr as a string */
        struct td_strbuf t;
        td_strbuf_init(&t, 0);
        rc = tdx_vtext(e, v, false, at, &t);
        if (rc == 0) {
            json_str(b, td_strbuf_str(&t), t.len);
        }
        td_strbuf_free(&t);
        return rc;
    }
    }
}

/* ---- f-string format specs: Python's mini-language, in format.c ---- */

/* format(v, spec), appended to b. Numbers and strings follow Python's rules exactly; a 0-dim
** tensor was turned into its item() by the caller (Tensor.__format__ does that); any other
** value refuses a non-empty spec, as object.__format__ does. */
int tdx_format_spec(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                    const char *spec, struct td_strbuf *b)
{
    char *txt = NULL, msg[200];
    int rc;
    switch (v->k) {
    case V_BOOL:
    case V_INT: rc = tdx_format_int(num_i(v), v->k == V_BOOL, spec, &txt, msg, sizeof msg); break;
    case V_FLOAT: rc = tdx_format_float(v->f, spec, &txt, msg, sizeof msg); break;
    case V_STR: rc = tdx_format_str(v->s, (size_t)v->i, spec, &txt, msg, sizeof msg); break;
    default:
        return tdx_fail(e, at, "unsupported format string passed to %s.__format__",
                        v->k == V_SIZE    ? "torch.Size"
                        : v->k == V_DTYPE ? "torch.dtype"
                                          : tdx_type_name(v));
    }
    if (rc != 0) {
        return tdx_fail(e, at, "%s", msg);
    }
    td_strbuf_puts(b, txt);
    td_free(txt);
    return 0;
}

int tdx_print_values(struct tdx_env *e, const struct tdx_node *at, const struct call *c)
{
    const char *sep = " ", *end = "\n";
    for (int k = 0; k < c->nkw; k++) {
        const struct value *v = &c->kwv[k];
        if (strcmp(c->kwn[k], "sep") == 0 && (v->k == V_STR || v->k == V_NONE)) {
            sep = v->k == V_STR ? v->s : " ";
        } else if (strcmp(c->kwn[k], "end") == 0 && (v->k == V_STR || v->k == V_NONE)) {
            end = v->k == V_STR ? v->s : "\n";
        } else if (strcmp(c->kwn[k], "flush") != 0) {
            return tdx_fail(e, at, "'%s' is an invalid keyword argument for print()", c->kwn[k]);
        }
    }
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    /* Earlier statements' failures come first, as they would in Python. */
    int rc = tdx_need_sync(e);
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
            rc = tdx_vtext(e, &c->args[i], true, at, &b);
        }
        td_strbuf_puts(&b, end);
    }
    if (rc == 0 && td_strbuf_failed(&b)) {
        rc = tdx_fail(e, at, "out of memory");
    }
    if (rc == 0) {
        fwrite(td_strbuf_str(&b), 1, b.len, e->cfg.out);
        fflush(e->cfg.out);
    }
    td_strbuf_free(&b);
    return rc;
}

int tdx_show(struct tdx_env *e, const struct tdx_node *at, struct value *v)
{
    if (v->k == V_NONE) {
        return 0;
    }
    struct call c = {.args = v, .nargs = 1};
    if (v->k == V_STR && !e->cfg.json) {
        /* the REPL shows repr() */
        struct td_strbuf b;
        td_strbuf_init(&b, 0);
        tdx_vtext(e, v, false, at, &b);
        td_strbuf_puts(&b, "\n");
        if (b.len > 0) {
            fwrite(td_strbuf_str(&b), 1, b.len, e->cfg.out);
            fflush(e->cfg.out);
        }
        td_strbuf_free(&b);
        return 0;
    }
    return tdx_print_values(e, at, &c);
}
