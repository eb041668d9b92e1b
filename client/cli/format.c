/* format.c — Python's format-spec mini-language and round(), after CPython.
**
** A float is first turned into digits and a decimal-point position (`decpt`: 1234.5 is "12345"
** with decpt 4) by the C library's correctly rounded printf, then laid out the way CPython's
** format_float_short lays out the digits of its dtoa: a window of an infinite string of zeros,
** digits, zeros, with a point and maybe an exponent. Then, as in CPython's formatter, the text is
** split into sign, digits, decimal point and remainder, the digits are grouped (zero padding
** counts as digits when the fill is '0' with '=' alignment), and padding goes left, between sign
** and digits, or right. Widths count characters, not bytes, since fills and 'c' may be UTF-8.
*/
#include "format.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/strbuf.h"

#define MAX_WIDTH 100000 /* larger widths and precisions are refused, not allocated */
#define MAX_PREC 1000

struct spec {
    char fill[5]; /* one UTF-8 character */
    bool fill_given;
    char align;    /* < > ^ =, or 0: the type's default */
    char sign;     /* + - space, or 0 */
    bool no_neg_0; /* z */
    bool alt;      /* # */
    long width;    /* -1: none */
    char group;    /* ',' '_' or 0; '4' is '_' every four digits (b o x X) */
    long prec;     /* -1: none */
    char type;     /* 0: none */
};

static int err(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int err(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Length of the UTF-8 character at s (1 for a stray byte). */
static size_t u8len(const char *s)
{
    unsigned char c = (unsigned char)*s;
    size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    for (size_t i = 1; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            return 1;
        }
    }
    return n;
}

static size_t u8count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return k;
}

static bool is_align(char c)
{
    return c == '<' || c == '>' || c == '^' || c == '=';
}

/* Reads digits into *v; returns how many, or -1 above MAX_WIDTH. */
static int get_int(const char **p, long *v)
{
    int n = 0;
    *v = 0;
    while (**p >= '0' && **p <= '9') {
        *v = *v * 10 + (**p - '0');
        if (*v > MAX_WIDTH) {
            return -1;
        }
        (*p)++;
        n++;
    }
    return n;
}

/* CPython's parse_internal_render_format_spec, for an object of type `tname` whose default
** type is `deftype` ('d' for ints, 's' for strings, 0 for floats). */
static int parse_spec(const char *s, const char *tname, char deftype, bool num, struct spec *f,
                      char *msg, size_t cap)
{
    const char *p = s;
    bool fill_given = false, align_given = false;
    *f = (struct spec){.fill = " ", .width = -1, .prec = -1, .type = deftype};
    if (strchr(s, '{') != NULL) {
        return err(msg, cap,
                   "nested replacement fields in a format spec ('%s') are not "
                   "supported",
                   s);
    }
    size_t fl = *p != '\0' ? u8len(p) : 0;
    if (fl > 0 && is_align(p[fl])) {
        memcpy(f->fill, p, fl);
        f->fill[fl] = '\0';
        f->align = p[fl];
        fill_given = align_given = true;
        p += fl + 1;
    } else if (is_align(*p)) {
        f->align = *p++;
        align_given = true;
    }
    if (*p == '+' || *p == '-' || *p == ' ') {
        f->sign = *p++;
    }
    if (*p == 'z') {
        f->no_neg_0 = true;
        p++;
    }
    if (*p == '#') {
        f->alt = true;
        p++;
    }
    if (!fill_given && *p == '0') {
        strcpy(f->fill, "0");
        if (!align_given && num) {
            f->align = '=';
        }
        p++;
    }
    f->fill_given = fill_given;
    int n = get_int(&p, &f->width);
    if (n < 0) {
        return err(msg, cap, "tensorctl: format width above %d", MAX_WIDTH);
    }
    if (n == 0) {
        f->width = -1;
    }
    if (*p == ',') {
        f->group = ',';
        p++;
    }
    if (*p == '_') {
        if (f->group != 0) {
            return err(msg, cap, "Cannot specify both ',' and '_'.");
        }
        f->group = '_';
        p++;
    }
    if (*p == ',' && f->group == '_') {
        return err(msg, cap, "Cannot specify both ',' and '_'.");
    }
    if (*p == '.') {
        p++;
        n = get_int(&p, &f->prec);
        if (n < 0 || f->prec > MAX_PREC) {
            return err(msg, cap, "tensorctl: format precision above %d", MAX_PREC);
        }
        if (n == 0) {
            return err(msg, cap, "Format specifier missing precision");
        }
    }
    if (*p != '\0' && p[u8len(p)] != '\0') {
        return err(msg, cap, "Invalid format specifier '%s' for object of type '%s'", s, tname);
    }
    if (*p != '\0') {
        if (u8len(p) > 1) {
            return err(msg, cap, "Unknown format code '%s' for object of type '%s'", p, tname);
        }
        f->type = *p;
    }
    if (f->group != 0) {
        switch (f->type) {
        case 'd':
        case 'e':
        case 'f':
        case 'g':
        case 'E':
        case 'G':
        case '%':
        case 'F':
        case 0: break;
        case 'b':
        case 'o':
        case 'x':
        case 'X':
            if (f->group == '_') {
                f->group = '4';
                break;
            }
            /* fall through */
        default:
            if (f->type > 32 && f->type < 127) {
                return err(msg, cap, "Cannot specify '%c' with '%c'.", f->group, f->type);
            }
            return err(msg, cap, "Cannot specify '%c' with '\\x%x'.", f->group,
                       (unsigned)(unsigned char)f->type);
        }
    }
    return 0;
}

/* ---- output ---- */

static void put_fill(struct td_strbuf *o, const char *fill, long n)
{
    for (long i = 0; i < n; i++) {
        td_strbuf_puts(o, fill);
    }
}

/* Hands o's text to *res (free with td_free). */
static int finish(struct td_strbuf *o, char **res, char *msg, size_t cap)
{
    if (td_strbuf_failed(o) || (*res = td_strbuf_take(o, NULL)) == NULL) {
        td_strbuf_free(o);
        return err(msg, cap, "out of memory");
    }
    return 0;
}

/* The digits of `body` (n_digits of them, ASCII) grouped per CPython's
** _PyUnicode_InsertThousandsGrouping, zero-padded on the left to min_width characters (counting
** separators) when min_width > 0. Written into o, left to right. */
static void group_digits(struct td_strbuf *o, const char *digits, long n_digits, long min_width,
                         int every, char sep)
{
    /* CPython builds the text right to left; do the same into a scratch buffer. */
    long room = (n_digits + (min_width > 0 ? min_width : 0)) * 2 + 16;
    char *buf = malloc((size_t)room);
    if (buf == NULL) {
        o->failed = true;
        return;
    }
    long pos = room, remaining = n_digits, dpos = n_digits;
    bool use_sep = false, broken = false;
    if (min_width < 0) {
        min_width = 0;
    }
/* one chunk: n_zeros zeros then n_chars digits (read leftward), after a separator */
#define CHUNK(nc, nz)                                                                              \
    do {                                                                                           \
        if (use_sep) {                                                                             \
            buf[--pos] = sep;                                                                      \
        }                                                                                          \
        for (long k_ = 0; k_ < (nc); k_++) {                                                       \
            buf[--pos] = digits[--dpos];                                                           \
        }                                                                                          \
        for (long k_ = 0; k_ < (nz); k_++) {                                                       \
            buf[--pos] = '0';                                                                      \
        }                                                                                          \
    } while (0)
    if (every > 0) {
        for (;;) {
            long l = every, lim = remaining > min_width ? remaining : min_width;
            lim = lim > 1 ? lim : 1;
            l = l < lim ? l : lim;
            long nz = l - remaining > 0 ? l - remaining : 0;
            long nc = remaining < l ? remaining : l;
            nc = nc > 0 ? nc : 0;
            CHUNK(nc, nz);
            use_sep = true;
            remaining -= nc;
            min_width -= l;
            if (remaining <= 0 && min_width <= 0) {
                broken = true;
                break;
            }
            min_width -= 1;
        }
    }
    if (!broken) {
        long len = remaining > min_width ? remaining : min_width;
        len = len > 1 ? len : 1;
        long nz = len - remaining > 0 ? len - remaining : 0;
        long nc = remaining < len ? remaining : len;
        nc = nc > 0 ? nc : 0;
        CHUNK(nc, nz);
    }
#undef CHUNK
    td_strbuf_append(o, buf + pos, (size_t)(room - pos));
    free(buf);
}

/* CPython's calc_number_widths + fill_number. `num` is the number without its sign: `prefix`
** (0x ...), then digits, then an optional '.', then the remainder (fraction, exponent, '%');
** n_digits of leading digits are grouped. For 'c', n_digits is 0 and everything is remainder. */
static void layout(struct td_strbuf *o, const struct spec *f, char sign_char, const char *prefix,
                   const char *num, long n_digits, bool upper)
{
    const char *rest = num + n_digits;
    bool has_dec = *rest == '.';
    if (has_dec) {
        rest++;
    }
    long n_rest = (long)u8count(rest, strlen(rest));
    long n_prefix = (long)strlen(prefix);
    char sign = 0;
    if (f->sign == '+') {
        sign = sign_char == '-' ? '-' : '+';
    } else if (f->sign == ' ') {
        sign = sign_char == '-' ? '-' : ' ';
    } else if (sign_char == '-') {
        sign = '-';
    }
    long n_sign = sign != 0;
    long non_digit = n_sign + n_prefix + has_dec + n_rest;
    long min_width = f->fill[0] == '0' && f->fill[1] == '\0' && f->align == '='
                         ? f->width - non_digit
                         : 0;
    int every = f->group == '4' ? 4 : f->group != 0 ? 3 : 0;
    char sep = f->group == '4' ? '_' : f->group;
    struct td_strbuf g;
    td_strbuf_init(&g, 0);
    if (n_digits > 0) {
        group_digits(&g, num, n_digits, min_width, every, sep);
    }
    if (td_strbuf_failed(&g)) {
        o->failed = true;
        return;
    }
    long n_grouped = (long)g.len;
    long pad = f->width - (non_digit + n_grouped);
    long lpad = 0, spad = 0, rpad = 0;
    if (pad > 0) {
        switch (f->align) {
        case '<': rpad = pad; break;
        case '^':
            lpad = pad / 2;
            rpad = pad - lpad;
            break;
        case '=': spad = pad; break;
        default: lpad = pad; break;
        }
    }
    put_fill(o, f->fill, lpad);
    if (sign != 0) {
        td_strbuf_append(o, &sign, 1);
    }
    if (n_prefix > 0) {
        char px[3] = {prefix[0], upper ? 'X' : prefix[1], 0};
        td_strbuf_append(o, px, 2);
    }
    put_fill(o, f->fill, spad);
    td_strbuf_append(o, td_strbuf_str(&g), g.len);
    td_strbuf_free(&g);
    if (has_dec) {
        td_strbuf_append(o, ".", 1);
    }
    td_strbuf_append(o, rest, strlen(rest));
    put_fill(o, f->fill, rpad);
}

/* ---- floats to digits ---- */

struct digits {
    char d[1400]; /* significant digits, no trailing zeros ("0" for zero) */
    int n;
    int decpt; /* the value is 0.d * 10**decpt */
    bool neg;
};

/* From printf text such as "0.00120" or "1.2345e+03" (no sign). */
static void digits_from(struct digits *g, const char *txt)
{
    const char *e = strpbrk(txt, "eE");
    int ex = e != NULL ? atoi(e + 1) : 0;
    int intdigits = 0, lead = 0;
    bool seen_point = false, nonzero = false;
    g->n = 0;
    for (const char *p = txt; *p != '\0' && p != e; p++) {
        if (*p == '.') {
            seen_point = true;
            continue;
        }
        if (!seen_point) {
            intdigits++;
        }
        if (!nonzero && *p == '0') {
            lead++;
            continue;
        }
        nonzero = true;
        if (g->n < (int)sizeof g->d - 1) {
            g->d[g->n++] = *p;
        }
    }
    while (g->n > 0 && g->d[g->n - 1] == '0') {
        g->n--;
    }
    if (g->n == 0) {
        g->d[g->n++] = '0';
        g->decpt = 1;
    } else {
        g->decpt = intdigits - lead + ex;
    }
    g->d[g->n] = '\0';
}

/* x's digits as printf gives them, correctly rounded: "%.*e" (prec + 1 significant digits) or
** "%.*f" (prec digits after the point; cap leaves room for the integer part). */
static void digits_printf(struct digits *g, double x, bool fixed, int prec, size_t cap)
{
    char *txt = malloc(cap);
    g->neg = signbit(x) != 0;
    if (txt == NULL) {
        strcpy(g->d, "0");
        g->n = 1;
        g->decpt = 1;
        return;
    }
    if (fixed) {
        snprintf(txt, cap, "%.*f", prec, fabs(x));
    } else {
        snprintf(txt, cap, "%.*e", prec, fabs(x));
    }
    digits_from(g, txt);
    free(txt);
}

/* nsig significant digits, correctly rounded. */
static void digits_sig(struct digits *g, double x, int nsig)
{
    digits_printf(g, x, false, nsig - 1, (size_t)nsig + 32);
}

/* prec digits after the point, correctly rounded. */
static void digits_fixed(struct digits *g, double x, int prec)
{
    digits_printf(g, x, true, prec, (size_t)prec + 400);
}

/* The shortest digits that read back as x (repr). */
static void digits_short(struct digits *g, double x)
{
    char txt[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(txt, sizeof txt, "%.*e", p - 1, fabs(x));
        if (strtod(txt, NULL) == fabs(x)) {
            break;
        }
    }
    g->neg = signbit(x) != 0;
    digits_from(g, txt);
}

/* CPython's PyOS_double_to_string(x, type, prec, flags) for type e E f F g G r (r: repr, prec
** ignored), with flags alt (#), add_dot_0 and no_neg_0 (z). A string to td_free, or NULL. */
static char *float_text(double x, char type, int prec, bool alt, bool add_dot_0, bool no_neg_0)
{
    bool upper = type == 'E' || type == 'F' || type == 'G';
    char t = upper ? (char)(type - 'A' + 'a') : type;
    struct td_strbuf o;
    td_strbuf_init(&o, 0);
    if (!isfinite(x)) {
        if (isinf(x) && x < 0) {
            td_strbuf_append(&o, "-", 1);
        }
        td_strbuf_append(&o, isnan(x) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf"), 3);
        return td_strbuf_failed(&o) ? (td_strbuf_free(&o), NULL) : td_strbuf_take(&o, NULL);
    }
    struct digits *g = malloc(sizeof *g);
    if (g == NULL) {
        return NULL;
    }
    int vend, decpt, ex = 0;
    bool use_exp = false;
    switch (t) {
    case 'e':
        digits_sig(g, x, prec + 1);
        use_exp = true;
        vend = prec + 1;
        break;
    case 'f':
        digits_fixed(g, x, prec);
        vend = g->decpt + prec;
        break;
    case 'g':
        if (prec == 0) {
            prec = 1;
        }
        digits_sig(g, x, prec);
        use_exp = g->decpt <= -4 || g->decpt > (add_dot_0 ? prec - 1 : prec);
        vend = alt ? prec : g->n;
        break;
    default:
        digits_short(g, x);
        use_exp = g->decpt <= -4 || g->decpt > 16;
        vend = g->n;
        break;
    }
    decpt = g->decpt;
    if (use_exp) {
        ex = decpt - 1;
        decpt = 1;
    }
    int vstart = decpt <= 0 ? decpt - 1 : 0;
    if (!use_exp && add_dot_0) {
        vend = vend > decpt ? vend : decpt + 1;
    } else {
        vend = vend > decpt ? vend : decpt;
    }
    bool neg = g->neg;
    if (no_neg_0 && neg) {
        bool zero = true;
        for (int i = 0; i < g->n && i < vend; i++) {
            zero &= g->d[i] == '0';
        }
        neg = !zero;
    }
    if (neg) {
        td_strbuf_append(&o, "-", 1);
    }
    /* vdigits[vstart:vend], with the point before index decpt */
    for (int i = vstart; i < vend; i++) {
        if (i == decpt) {
            td_strbuf_append(&o, ".", 1);
        }
        char c = i >= 0 && i < g->n ? g->d[i] : '0';
        td_strbuf_append(&o, &c, 1);
    }
    if (vend == decpt && (alt || (!use_exp && add_dot_0))) {
        td_strbuf_append(&o, ".", 1);
    }
    if (use_exp) {
        char eb[16];
        snprintf(eb, sizeof eb, "%c%c%02d", upper ? 'E' : 'e', ex < 0 ? '-' : '+',
                 ex < 0 ? -ex : ex);
        td_strbuf_append(&o, eb, strlen(eb));
    }
    free(g);
    if (td_strbuf_failed(&o)) {
        td_strbuf_free(&o);
        return NULL;
    }
    return td_strbuf_take(&o, NULL);
}

void tdx_float_repr(double x, char *buf, size_t cap)
{
    char *s = float_text(x, 'r', 0, false, true, false);
    snprintf(buf, cap, "%s", s != NULL ? s : "?");
    td_free(s);
}

/* ---- the three kinds of value ---- */

static int float_spec(double v, const struct spec *f, char **res, char *msg, size_t cap)
{
    char type = f->type;
    int prec = (int)f->prec;
    bool add_dot_0 = false, pct = false;
    if (type == 0) {
        add_dot_0 = true;
        type = prec < 0 ? 'r' : 'g';
    } else if (type == 'n') {
        type = 'g';
    } else if (type == '%') {
        type = 'f';
        v *= 100;
        pct = true;
    }
    if (prec < 0) {
        prec = 6;
    }
    char *txt = float_text(v, type, prec, f->alt, add_dot_0, f->no_neg_0);
    if (txt == NULL) {
        return err(msg, cap, "out of memory");
    }
    struct td_strbuf o;
    td_strbuf_init(&o, 0);
    const char *num = txt;
    char sign_char = 0;
    if (*num == '-') {
        sign_char = '-';
        num++;
    }
    long nd = (long)strspn(num, "0123456789");
    if (pct) {
        size_t k = strlen(num);
        char *with = malloc(k + 2);
        if (with == NULL) {
            td_free(txt);
            return err(msg, cap, "out of memory");
        }
        memcpy(with, num, k);
        strcpy(with + k, "%");
        layout(&o, f, sign_char, "", with, nd, false);
        free(with);
    } else {
        layout(&o, f, sign_char, "", num, nd, false);
    }
    td_free(txt);
    return finish(&o, res, msg, cap);
}

int tdx_format_float(double v, const char *spec, char **out, char *msg, size_t cap)
{
    struct spec f;
    if (parse_spec(spec, "float", 0, true, &f, msg, cap) != 0) {
        return -1;
    }
    if (f.type != 0 && strchr("eEfFgGn%", f.type) == NULL) {
        return err(msg, cap, "Unknown format code '%c' for object of type 'float'", f.type);
    }
    if (f.align == 0) {
        f.align = '>';
    }
    return float_spec(v, &f, out, msg, cap);
}

int tdx_format_int(int64_t v, bool is_bool, const char *spec, char **res, char *msg, size_t cap)
{
    const char *tname = is_bool ? "bool" : "int";
    struct spec f;
    if (parse_spec(spec, tname, 'd', true, &f, msg, cap) != 0) {
        return -1;
    }
    if (f.align == 0) {
        f.align = '>';
    }
    if (f.type != 0 && strchr("eEfFgG%", f.type) != NULL) {
        return float_spec((double)v, &f, res, msg, cap);
    }
    if (strchr("bcdoxXn", f.type) == NULL) {
        return err(msg, cap, "Unknown format code '%c' for object of type '%s'", f.type, tname);
    }
    if (f.prec != -1) {
        return err(msg, cap, "Precision not allowed in integer format specifier");
    }
    if (f.no_neg_0) {
        return err(msg, cap,
                   "Negative zero coercion (z) not allowed in integer format "
                   "specifier");
    }
    struct td_strbuf o;
    td_strbuf_init(&o, 0);
    if (f.type == 'c') {
        if (f.sign != 0) {
            return err(msg, cap, "Sign not allowed with integer format specifier 'c'");
        }
        if (f.alt) {
            return err(msg, cap,
                       "Alternate form (#) not allowed with integer format "
                       "specifier 'c'");
        }
        if (v < 0 || v > 0x10ffff) {
            return err(msg, cap, "%%c arg not in range(0x110000)");
        }
        if (v == 0) {
            /* tensorctl's formatted text is NUL-terminated */
            return err(msg, cap, "tensorctl: format code 'c' of 0 (NUL) is not supported");
        }
        /* UTF-8 of the code point (surrogates too, as Python's str holds them) */
        char u[5] = {0};
        uint32_t c = (uint32_t)v;
        if (c < 0x80) {
            u[0] = (char)c;
        } else if (c < 0x800) {
            u[0] = (char)(0xc0 | (c >> 6));
            u[1] = (char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            u[0] = (char)(0xe0 | (c >> 12));
            u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
            u[2] = (char)(0x80 | (c & 0x3f));
        } else {
            u[0] = (char)(0xf0 | (c >> 18));
            u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
            u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
            u[3] = (char)(0x80 | (c & 0x3f));
        }
        layout(&o, &f, 0, "", u, 0, false);
        return finish(&o, res, msg, cap);
    }
    int base = f.type == 'b' ? 2 : f.type == 'o' ? 8 : (f.type == 'x' || f.type == 'X') ? 16 : 10;
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char digits[72];
    int nd = 0;
    const char *hex = f.type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[nd++] = hex[mag % (uint64_t)base];
        mag /= (uint64_t)base;
    } while (mag > 0);
    for (int i = 0; i < nd / 2; i++) {
        char t = digits[i];
        digits[i] = digits[nd - 1 - i];
        digits[nd - 1 - i] = t;
    }
    digits[nd] = '\0';
    const char *prefix = "";
    if (f.alt && base != 10) {
        prefix = base == 2 ? "0b" : base == 8 ? "0o" : "0x";
    }
    layout(&o, &f, v < 0 ? '-' : 0, prefix, digits, nd, f.type == 'X');
    return finish(&o, res, msg, cap);
}

int tdx_format_str(const char *s, size_t n, const char *spec, char **res, char *msg, size_t cap)
{
    struct spec f;
    if (parse_spec(spec, "str", 's', false, &f, msg, cap) != 0) {
        return -1;
    }
    if (f.type != 's') {
        return err(msg, cap, "Unknown format code '%c' for object of type 'str'", f.type);
    }
    if (f.sign != 0) {
        return err(msg, cap,
                   f.sign == ' ' ? "Space not allowed in string format specifier"
                                 : "Sign not allowed in string format specifier");
    }
    if (f.no_neg_0) {
        return err(msg, cap, "Negative zero coercion (z) not allowed in string format specifier");
    }
    if (f.alt) {
        return err(msg, cap, "Alternate form (#) not allowed in string format specifier");
    }
    if (f.align == '=') {
        return err(msg, cap, "'=' alignment not allowed in string format specifier");
    }
    size_t nbytes = n;
    long len = (long)u8count(s, n);
    if (f.prec >= 0 && len > f.prec) {
        /* keep the first prec characters */
        long k = 0;
        nbytes = 0;
        while (nbytes < n && k < f.prec) {
            nbytes += u8len(s + nbytes);
            k++;
        }
        len = f.prec;
    }
    long pad = f.width > len ? f.width - len : 0;
    long lpad = f.align == '>' ? pad : f.align == '^' ? pad / 2 : 0;
    struct td_strbuf o;
    td_strbuf_init(&o, 0);
    put_fill(&o, f.fill, lpad);
    td_strbuf_append(&o, s, nbytes);
    put_fill(&o, f.fill, pad - lpad);
    return finish(&o, res, msg, cap);
}

/* ---- round ---- */

double tdx_round_float(double x, int64_t nd)
{
    if (!isfinite(x) || x == 0) {
        return x;
    }
    /* CPython's limits: beyond them x is returned unchanged, or a signed zero */
    if (nd > 323) {
        return x;
    }
    if (nd < -308) {
        return 0.0 * x;
    }
    struct digits g;
    if (nd >= 0) {
        digits_fixed(&g, x, (int)nd);
    } else {
        digits_sig(&g, x, 17);
        int keep = g.decpt + (int)nd; /* significant digits left of the rounding place */
        if (keep < 0) {
            return 0.0 * x;
        }
        if (keep == 0) {
            /* |x| < 10**-nd: 0, or 10**-nd when above half of it (a tie goes to even 0) */
            char half[32];
            snprintf(half, sizeof half, "5e%d", (int)-nd - 1);
            double h = strtod(half, NULL), ax = fabs(x);
            if (ax <= h) {
                return 0.0 * x;
            }
            snprintf(half, sizeof half, "1e%d", (int)-nd);
            return copysign(strtod(half, NULL), x);
        }
        digits_sig(&g, x, keep);
        g.neg = signbit(x) != 0;
    }
    char txt[1500];
    snprintf(txt, sizeof txt, "%s0.%se%d", g.neg ? "-" : "", g.d, g.decpt);
    double r = strtod(txt, NULL);
    return r == 0 ? 0.0 * x : r;
}

int tdx_round_int(int64_t i, int64_t nd, int64_t *out)
{
    if (nd >= 0) {
        *out = i;
        return 0;
    }
    if (nd < -18) {
        /* every int64 is below half of 10**19 */
        *out = 0;
        return 0;
    }
    int64_t p = 1;
    for (int64_t k = 0; k < -nd; k++) {
        p *= 10;
    }
    /* half to even on the exact integer, computed on magnitudes without overflow */
    uint64_t m = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    uint64_t q = m / (uint64_t)p, r = m % (uint64_t)p, half = (uint64_t)p / 2;
    if (r > half || (r == half && (q & 1))) {
        q++;
    }
    uint64_t res;
    if (__builtin_mul_overflow(q, (uint64_t)p, &res) || res > (uint64_t)INT64_MAX + (i < 0)) {
        return -1;
    }
    *out = i < 0 ? (int64_t)(0 - res) : (int64_t)res;
    return 0;
}
