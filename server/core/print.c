/* server/core/print.c — torch's tensor printing, step for step.
**
** The steps mirror torch/_tensor_str.py so that a reader can check one against the other:
** the formatter looks at the summarized values only; floats are measured in double, as torch
** does after tensor_totype(); every element is padded to the formatter's width; a 1-D row wraps
** at floor((linewidth - indent) / (width + 2)) elements; higher dims join their slices with ","
** plus dim-1 newlines; suffixes go on the last line while it stays within linewidth.
*/
#include "print.h"

#include "base/checked.h"
#include "base/strbuf.h"
#include "cancel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- a growable string ---- */

/* n spaces (none when n <= 0). */
static void sb_spaces(struct td_strbuf *b, int n)
{
    if (n > 0) {
        td_strbuf_repeat(b, ' ', (size_t)n);
    }
}

/* ---- element access ---- */

static double elem_f(const struct td_tensor *t, int64_t off)
{
    const char *base = (const char *)t->storage->buf->data;
    switch (t->dtype) {
    case TD_DTYPE_F32: return ((const float *)base)[off];
    case TD_DTYPE_F64: return ((const double *)base)[off];
    case TD_DTYPE_I32: return ((const int32_t *)base)[off];
    case TD_DTYPE_I64: return (double)((const int64_t *)base)[off];
    default: return ((const uint8_t *)base)[off] != 0;
    }
}

static int64_t elem_i(const struct td_tensor *t, int64_t off)
{
    const char *base = (const char *)t->storage->buf->data;
    switch (t->dtype) {
    case TD_DTYPE_I32: return ((const int32_t *)base)[off];
    case TD_DTYPE_I64: return ((const int64_t *)base)[off];
    default: return ((const uint8_t *)base)[off] != 0;
    }
}

/* ---- the formatter (torch's _Formatter) ---- */

struct formatter {
    const struct td_print_opts *o;
    const struct td_tensor *t;
    bool floating;
    bool int_mode;
    bool sci_mode;
    int max_width;
    bool overridden; /* the sci_mode option changed the mode the widths were measured in */
    bool unmeasured; /* a shown float is zero, nan or inf: its width was not measured */
    /* measurement pass state */
    bool any;
    double amin, amax;
    /* cancellation: rows walked since the last check, and whether to stop */
    int64_t since_check;
    bool stop;
};

/* Called once per innermost row of `n` elements: a cancel check per chunk of elements. */
static void row_done(struct formatter *f, int64_t n)
{
    if ((f->since_check += n + 1) >= TD_CANCEL_CHUNK / 8) {
        f->since_check = 0;
        f->stop = f->stop || td_cancel_pending();
    }
}

/* Formats one value without padding, as torch's _Formatter.format does before padding. */
static int fmt_value(const struct formatter *f, int64_t off, char *buf, size_t cap)
{
    if (!f->floating) {
        if (f->t->dtype == TD_DTYPE_BOOL) {
            return snprintf(buf, cap, "%s", elem_i(f->t, off) ? "True" : "False");
        }
        return snprintf(buf, cap, "%lld", (long long)elem_i(f->t, off));
    }
    double v = elem_f(f->t, off);
    if (isnan(v)) {
        return snprintf(buf, cap, "nan"); /* never "-nan", as Python prints */
    }
    if (f->sci_mode) {
        if (isinf(v)) {
            return snprintf(buf, cap, "%s", v < 0 ? "-inf" : "inf");
        }
        return snprintf(buf, cap, "%.*e", f->o->precision, v);
    }
    if (f->int_mode) {
        if (isinf(v)) {
            return snprintf(buf, cap, "%s", v < 0 ? "-inf" : "inf");
        }
        return snprintf(buf, cap, "%.0f.", v);
    }
    if (isinf(v)) {
        return snprintf(buf, cap, "%s", v < 0 ? "-inf" : "inf");
    }
    return snprintf(buf, cap, "%.*f", f->o->precision, v);
}

/* Visits the summarized elements (torch's get_summarized_data) in C order. */
typedef void visit_fn(struct formatter *f, int64_t off);

static void visit_summarized(struct formatter *f, int dim, int64_t off, bool summarize,
                             visit_fn *fn)
{
    const struct td_tensor *t = f->t;
    if (dim == t->ndim) {
        fn(f, off);
        return;
    }
    int64_t n = t->shape[dim], e = f->o->edgeitems;
    for (int64_t i = 0; i < n && !f->stop; i++) {
        if (summarize && n > 2 * e && i == e) {
            i = n - e;
        }
        visit_summarized(f, dim + 1, off + i * t->strides[dim], summarize, fn);
    }
    if (dim == t->ndim - 1) {
        row_done(f, n);
    }
}

static void measure_float(struct formatter *f, int64_t off)
{
    double v = elem_f(f->t, off);
    if (!isfinite(v) || v == 0) {
        f->unmeasured = true;
        return;
    }
    double a = fabs(v);
    if (!f->any) {
        f->any = true;
        f->amin = f->amax = a;
    } else {
        f->amin = a < f->amin ? a : f->amin;
        f->amax = a > f->amax ? a : f->amax;
    }
    if (v != ceil(v)) {
        f->int_mode = false;
    }
}

static void measure_width(struct formatter *f, int64_t off)
{
    char buf[64];
    int n;
    if (f->floating) {
        double v = elem_f(f->t, off);
        if (!isfinite(v) || v == 0) {
            return; /* torch measures nonzero finite values only */
        }
        if (f->sci_mode) {
            n = snprintf(buf, sizeof buf, "%.*e", f->o->precision, v);
        } else if (f->int_mode) {
            n = snprintf(buf, sizeof buf, "%.0f", v) + 1;
        } else {
            n = snprintf(buf, sizeof buf, "%.*f", f->o->precision, v);
        }
    } else {
        n = fmt_value(f, off, buf, sizeof buf);
    }
    if (n > f->max_width) {
        f->max_width = n;
    }
}

static void formatter_init(struct formatter *f, const struct td_tensor *t,
                           const struct td_print_opts *o, bool summarize)
{
    memset(f, 0, sizeof *f);
    f->o = o;
    f->t = t;
    f->floating = td_dtype_is_float(t->dtype);
    f->int_mode = true;
    f->max_width = 1;
    if (f->floating) {
        visit_summarized(f, 0, t->offset, summarize, measure_float);
        if (!f->any) {
            /* No nonzero finite value: torch keeps int_mode and width 1. */
            if (o->sci_mode >= 0) {
                f->sci_mode = o->sci_mode != 0;
            }
            return;
        }
        if (f->int_mode) {
            f->sci_mode = f->amax / f->amin > 1000.0 || f->amax > 1.0e8;
        } else {
            f->sci_mode = f->amax / f->amin > 1000.0 || f->amax > 1.0e8 || f->amin < 1.0e-4;
        }
    }
    visit_summarized(f, 0, t->offset, summarize, measure_width);
    if (f->floating && o->sci_mode >= 0) {
        f->overridden = f->sci_mode != (o->sci_mode != 0);
        f->sci_mode = o->sci_mode != 0;
    }
}

static void put_value(struct td_strbuf *b, const struct formatter *f, int64_t off)
{
    char buf[64];
    int n = fmt_value(f, off, buf, sizeof buf);
    sb_spaces(b, f->max_width - n);
    td_strbuf_append(b, buf, (size_t)n);
}

/* ---- rendering (torch's _tensor_str_with_formatter) ---- */

static void render(struct td_strbuf *b, struct formatter *f, int dim, int64_t off, int indent,
                   bool summarize)
{
    if (f->stop) {
        return;
    }
    const struct td_tensor *t = f->t;
    const struct td_print_opts *o = f->o;
    int64_t n = t->shape[dim], e = o->edgeitems;
    bool cut = summarize && n > 2 * e;
    if (dim == t->ndim - 1) {
        int element_length = f->max_width + 2;
        int per_line = (int)floor((double)(o->linewidth - indent) / element_length);
        per_line = per_line < 1 ? 1 : per_line;
        td_strbuf_puts(b, "[");
        int on_line = 0;
        for (int64_t i = 0; i < n; i++) {
            if (on_line == per_line) {
                td_strbuf_puts(b, ",\n");
                sb_spaces(b, indent + 1);
                on_line = 0;
            } else if (i > 0) {
                td_strbuf_puts(b, ", ");
            }
            if (cut && i == e) {
                td_strbuf_puts(b, " ...");
                i = n - e - 1;
            } else {
                put_value(b, f, off + i * t->strides[dim]);
            }
            on_line++;
        }
        td_strbuf_puts(b, "]");
        row_done(f, n);
        return;
    }
    td_strbuf_puts(b, "[");
    int rest = t->ndim - dim; /* this slice's dim count */
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            td_strbuf_puts(b, ",");
            for (int k = 0; k < rest - 1; k++) {
                td_strbuf_puts(b, "\n");
            }
            sb_spaces(b, indent + 1);
        }
        if (cut && i == e) {
            td_strbuf_puts(b, "...");
            i = n - e - 1;
            continue;
        }
        render(b, f, dim + 1, off + i * t->strides[dim], indent + 1, summarize);
    }
    td_strbuf_puts(b, "]");
}

/* ---- text bounds ---- */

/* The digits printf prints after the point for this precision (a negative one means 6). */
static int64_t precision_digits(const struct td_print_opts *o)
{
    return o->precision < 0 ? 6 : o->precision;
}

/* The widest text one element can print as, padding included, from its dtype alone. */
static int64_t value_width_bound(const struct td_tensor *t, const struct td_print_opts *o)
{
    int64_t prec = precision_digits(o);
    switch (t->dtype) {
    case TD_DTYPE_BOOL: return 5; /* False */
    case TD_DTYPE_I32: return 11; /* -2147483648 */
    case TD_DTYPE_I64: return 20; /* -9223372036854775808 */
    default:
        /* Automatic fixed notation only below 1e8: "-100000000." plus the digits; scientific
        ** is "-1.", the digits, "e+308"; forced fixed can print all 309 digits of the largest
        ** double ("-", 309 digits, "." and the digits). */
        if (o->sci_mode == 0) {
            return td_sat_add(311, prec);
        }
        return td_sat_add(o->sci_mode == 1 ? 8 : 11, prec);
    }
}

/* The widest text one element prints as once the formatter has measured the values: its width,
** or what a value it does not measure (zero, nan, inf) prints as when that is wider. */
static int64_t value_width(const struct formatter *f)
{
    int64_t w = f->max_width, prec = precision_digits(f->o), other;
    if (!f->floating || (!f->overridden && !f->unmeasured)) {
        return w; /* every shown value was measured, in the notation it prints in */
    }
    if (f->overridden) {
        other = value_width_bound(f->t, f->o); /* measured in another notation */
    } else if (f->sci_mode) {
        other = td_sat_add(prec, 7); /* "-0.0000e+00" */
    } else if (f->int_mode) {
        other = 4; /* "-inf"; "nan", "-0." */
    } else {
        other = td_sat_add(prec, 3); /* "-0.0000" */
    }
    other = other < 4 ? 4 : other;
    return w > other ? w : other;
}

/* The length of the text render() produces, exactly as it lays it out, with every value at
** `width` bytes and rows wrapped as for a formatter of `wrap_width` (the real max_width, or a
** bound on it: a wider one wraps more often, so the count stays an upper bound). All slices at
** one depth have the same shape, so the text is counted level by level: the slices at depth d
** are the product of the sizes shown above it. Saturating. */
static int64_t body_bound(const struct td_tensor *t, const struct td_print_opts *o, bool summarize,
                          int64_t width, int64_t wrap_width)
{
    if (t->numel == 0) {
        return 2; /* "[]" */
    }
    if (t->ndim == 0) {
        return width;
    }
    int64_t edge2 = td_sat_mul(2, o->edgeitems < 0 ? 0 : o->edgeitems);
    int64_t slices = 1, text = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t n = t->shape[d] < 1 ? 1 : t->shape[d];
        bool cut = summarize && n > edge2;
        int64_t shown = cut ? edge2 : n;
        int64_t entries = td_sat_add(shown, cut ? 1 : 0);
        int64_t indent = 7 + d, per;
        if (d < t->ndim - 1) {
            /* "[", "]", "..." when cut, and between entries "," (ndim - d - 1) newlines and
            ** indent + 1 spaces */
            per = td_sat_add(2 + (cut ? 3 : 0), td_sat_mul(entries - 1, t->ndim + 8));
        } else {
            /* a row: "[", "]", the values, " ..." when cut, ", " between entries, and
            ** indent + 1 more spaces (",\n" instead of ", ") at each wrap */
            double room = (double)(o->linewidth - indent) / (double)td_sat_add(wrap_width, 2);
            int64_t per_line = room >= 1 ? (int64_t)floor(room < 1e18 ? room : 1e18) : 1;
            int64_t wraps = (entries - 1) / per_line;
            per = td_sat_add(td_sat_add(2 + (cut ? 4 : 0), td_sat_mul(shown, width)),
                             td_sat_add(td_sat_mul(entries - 1, 2), td_sat_mul(wraps, indent + 1)));
        }
        text = td_sat_add(text, td_sat_mul(slices, per));
        slices = td_sat_mul(slices, shown);
    }
    return text;
}

/* "tensor(", the suffixes (each after ", " or ",\n" and the indent) and ")". */
static int64_t frame_bound(char suffixes[][48], int n)
{
    int64_t text = 7 + 1;
    for (int i = 0; i < n; i++) {
        text += 2 + 7 + (int64_t)strlen(suffixes[i]);
    }
    return text;
}

void td_print_opts_default(struct td_print_opts *o)
{
    o->precision = 4;
    o->threshold = 1000;
    o->edgeitems = 3;
    o->linewidth = 80;
    o->sci_mode = -1;
    o->requires_grad = false;
    o->grad_fn = NULL;
    o->reserve = NULL;
    o->reserve_arg = NULL;
}

/* torch's _add_suffixes. */
static void add_suffixes(struct td_strbuf *b, char suffixes[][48], int n, int indent, int linewidth)
{
    const char *nl = b->p != NULL ? strrchr(b->p, '\n') : NULL;
    /* len(s) - s.rfind("\n") + 1, with rfind = -1 when there is no newline */
    int64_t last_line_len = (int64_t)b->len - (nl != NULL ? (int64_t)(nl - b->p) : -1) + 1;
    for (int i = 0; i < n; i++) {
        /* Lines break where torch's would: measure "dtype=tensord.x" as torch's "dtype=torch.x". */
        int64_t sl = (int64_t)strlen(suffixes[i]) -
                     (strncmp(suffixes[i], "dtype=tensord.", 14) == 0 ? 2 : 0);
        if (last_line_len + sl + 2 > linewidth) {
            td_strbuf_puts(b, ",\n");
            sb_spaces(b, indent);
            last_line_len = indent + sl;
        } else {
            td_strbuf_puts(b, ", ");
            last_line_len += sl + 2;
        }
        td_strbuf_puts(b, suffixes[i]);
    }
    td_strbuf_puts(b, ")");
}

int td_tensor_repr(const struct td_tensor *t, const struct td_print_opts *o, char **out,
                   struct td_err *err)
{
    struct td_strbuf b;
    const int indent = 7; /* len("tensor(") */
    char suffixes[4][48];
    int ns = 0, rc = 0;
    bool default_dtype = t->dtype == TD_DTYPE_F32 || t->dtype == TD_DTYPE_I64 ||
                         t->dtype == TD_DTYPE_BOOL;
    bool summarize = t->numel > o->threshold;
    struct formatter f;
    if (t->numel == 0 && t->ndim != 1) {
        /* str(tuple(shape)): "(0, 3)", "(0,)" never here since ndim != 1, "()" impossible */
        int k = snprintf(suffixes[ns], sizeof suffixes[ns], "size=(");
        for (int i = 0; i < t->ndim && k < 40; i++) {
            k += snprintf(suffixes[ns] + k, sizeof suffixes[ns] - (size_t)k, "%s%lld",
                          i ? ", " : "", (long long)t->shape[i]);
        }
        snprintf(suffixes[ns] + k, sizeof suffixes[ns] - (size_t)k, ")");
        ns++;
    }
    if (t->numel == 0 ? t->dtype != TD_DTYPE_F32 : !default_dtype) {
        snprintf(suffixes[ns++], sizeof suffixes[0], "dtype=tensord.%s", td_dtype_name(t->dtype));
    }
    if (o->grad_fn != NULL) {
        snprintf(suffixes[ns++], sizeof suffixes[0], "grad_fn=<%s>", o->grad_fn);
    } else if (o->requires_grad) {
        snprintf(suffixes[ns++], sizeof suffixes[0], "requires_grad=True");
    }
    if (t->numel != 0) {
        formatter_init(&f, t, o, summarize);
    }
    if (o->reserve != NULL && (t->numel == 0 || !f.stop)) {
        int64_t bound = frame_bound(suffixes, ns);
        if (t->numel != 0) {
            bound = td_sat_add(bound, body_bound(t, o, summarize, value_width(&f), f.max_width));
        } else {
            bound = td_sat_add(bound, body_bound(t, o, summarize, 0, 0));
        }
        if ((rc = o->reserve(o->reserve_arg, bound, err)) != 0) {
            return rc;
        }
    }
    td_strbuf_init(&b, 0);
    td_strbuf_puts(&b, "tensor(");
    if (t->numel == 0) {
        td_strbuf_puts(&b, "[]");
    } else if (t->ndim == 0) {
        put_value(&b, &f, t->offset);
    } else {
        render(&b, &f, 0, t->offset, indent, summarize);
    }
    add_suffixes(&b, suffixes, ns, indent, o->linewidth);
    rc = td_cancel_check(err);
    if (rc != 0 || td_strbuf_failed(&b)) {
        td_strbuf_free(&b);
        return rc != 0 ? rc : td_err_code(err, TD_ENOMEM);
    }
    *out = td_strbuf_take(&b, NULL);
    return 0;
}

static int print_cost_opts(const struct td_tensor *t, const struct td_print_opts *o,
                           int64_t *elements, int64_t *text_bytes)
{
    *elements = 0;
    *text_bytes = 0;
    if (t == NULL || t->ndim < 0 || t->ndim > TD_MAX_DIMS || t->numel < 0) {
        return TD_EINVAL;
    }
    /* What the walks visit: every element, or with summarization at most 2 * edgeitems per
    ** dim (torch's get_summarized_data). The formatter reads each twice, the renderer once.
    ** The text is render()'s layout with every value at its dtype's widest, plus the widest
    ** frame: "tensor(", three suffixes of at most 47 bytes and ")". */
    bool summarize = t->numel > o->threshold;
    int64_t edge2 = td_sat_mul(2, o->edgeitems < 0 ? 0 : o->edgeitems);
    int64_t shown = t->numel == 0 ? 0 : 1;
    for (int d = 0; d < t->ndim; d++) {
        int64_t n = t->shape[d] < 0 ? 0 : t->shape[d];
        shown = td_sat_mul(shown, summarize && n > edge2 ? edge2 : n);
    }
    int64_t width = value_width_bound(t, o);
    *elements = td_sat_mul(shown, 3);
    *text_bytes = td_sat_add(8 + 3 * (2 + 7 + 47), body_bound(t, o, summarize, width, width));
    return 0;
}

int td_print_cost(const struct td_tensor *t, int64_t *elements, int64_t *text_bytes)
{
    struct td_print_opts o;
    td_print_opts_default(&o);
    return print_cost_opts(t, &o, elements, text_bytes);
}
