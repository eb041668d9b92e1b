/* parse.c — the tokenizer and the recursive-descent parser of tensorctl's language.
**
** Text becomes a token array first (Python's rules: indentation gives INDENT/DEDENT at the
** start of logical lines, newlines inside brackets are ignored, `#` starts a comment), then
** statements are parsed from it with one function per precedence level, lowest first:
**   or, and, not, comparisons, |, ^, &, << >>, + -, * / // % @, unary - + ~, **,
**   calls/attributes/subscripts.
** Every node keeps the line and column where it starts, so later errors (a name that is not
** defined, a server's refusal) can point at the code that caused them. The parser holds no
** global state and allocates with malloc; a failure frees everything built so far.
*/
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/strbuf.h"

enum tok {
    T_EOF,
    T_NEWLINE,
    T_INDENT,
    T_DEDENT,
    T_NAME,
    T_INT,
    T_FLOAT,
    T_STR,
    T_FSTR,
    T_OP,
};

struct token {
    enum tok kind;
    int line, col;
    char op[4]; /* T_OP: the operator's text */
    char *s;    /* T_NAME, T_STR (decoded), T_FSTR (raw inner text): owned (td_free) */
    int64_t ival;
    double fval;
    int sline, scol; /* T_FSTR: where the inner text starts */
};

struct lexer {
    const char *p;
    int line, col;
    struct token *toks;
    int n, cap;
    int indent[100];
    int nindent;
    int depth; /* open brackets */
    int open_line[64], open_col[64];
    char open_ch[64];
    struct tdx_perr *err;
};

static int perr(struct tdx_perr *e, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(struct tdx_perr *e, int line, int col, const char *fmt, ...)
{
    if (e->msg[0] != '\0') {
        return -1; /* keep the first error */
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->line = line;
    e->col = col;
    return -1;
}

static struct token *push(struct lexer *lx, enum tok kind, int line, int col)
{
    if (lx->n == lx->cap) {
        int ncap = lx->cap ? lx->cap * 2 : 64;
        struct token *t = realloc(lx->toks, (size_t)ncap * sizeof *t);
        if (t == NULL) {
            perr(lx->err, line, col, "out of memory");
            return NULL;
        }
        lx->toks = t;
        lx->cap = ncap;
    }
    struct token *t = &lx->toks[lx->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = line;
    t->col = col;
    return t;
}

static void advance(struct lexer *lx, int k)
{
    for (int i = 0; i < k && *lx->p != '\0'; i++) {
        if (*lx->p == '\n') {
            lx->line++;
            lx->col = 1;
        } else {
            lx->col++;
        }
        lx->p++;
    }
}

/* A string literal starting at the quote; `raw` keeps backslashes, `fstr` keeps the text as
** written (escapes are decoded per part later). */
static int lex_string(struct lexer *lx, bool raw, bool fstr, int line, int col)
{
    char q = *lx->p;
    bool triple = lx->p[1] == q && lx->p[2] == q;
    advance(lx, triple ? 3 : 1);
    struct td_strbuf buf;
    td_strbuf_init(&buf, 0);
    int sline = lx->line, scol = lx->col;
    for (;;) {
        char c = *lx->p;
        if (c == '\0' || (c == '\n' && !triple)) {
            td_strbuf_free(&buf);
            if (triple) {
                lx->err->incomplete = true;
                return perr(lx->err, line, col, "unterminated triple-quoted string literal");
            }
            return perr(lx->err, line, col, "unterminated string literal (detected at line %d)",
                        line);
        }
        if (c == q && (!triple || (lx->p[1] == q && lx->p[2] == q))) {
            advance(lx, triple ? 3 : 1);
            break;
        }
        char out = c;
        int take = 1;
        if (c == '\\' && !raw && !fstr && lx->p[1] != '\0') {
            take = 2;
            switch (lx->p[1]) {
            case 'n': out = '\n'; break;
            case 't': out = '\t'; break;
            case 'r': out = '\r'; break;
            case '0': out = '\0'; break;
            case '\\': out = '\\'; break;
            case '\'': out = '\''; break;
            case '"': out = '"'; break;
            case '\n':
                take = 2;
                out = 0;
                break;
            default:
                out = '\\';
                take = 1;
                break;
            }
            if (lx->p[1] == '\n') {
                advance(lx, 2);
                continue;
            }
        } else if (c == '\\' && lx->p[1] != '\0') {
            /* raw or f-string: keep both characters */
            td_strbuf_putc(&buf, '\\');
            td_strbuf_putc(&buf, lx->p[1]);
            advance(lx, 2);
            continue;
        }
        td_strbuf_putc(&buf, out);
        advance(lx, take);
    }
    size_t len = 0;
    /* the text may hold NULs ('\0'): its length is len; an empty literal is "" */
    char *text = td_strbuf_failed(&buf) ? NULL : td_strbuf_take(&buf, &len);
    if (text == NULL) {
        td_strbuf_free(&buf);
        return perr(lx->err, line, col, "out of memory");
    }
    struct token *t = push(lx, fstr ? T_FSTR : T_STR, line, col);
    if (t == NULL) {
        td_free(text);
        return -1;
    }
    t->s = text;
    t->ival = (int64_t)len;
    t->sline = sline;
    t->scol = scol;
    return 0;
}

static int lex_number(struct lexer *lx)
{
    int line = lx->line, col = lx->col;
    char buf[128];
    size_t n = 0;
    bool isfloat = false;
    const char *s = lx->p;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s + 2, &end, 16);
        if (end == s + 2 || errno != 0 || v > INT64_MAX) {
            return perr(lx->err, line, col, "invalid hexadecimal literal");
        }
        advance(lx, (int)(end - s));
        struct token *t = push(lx, T_INT, line, col);
        if (t == NULL) {
            return -1;
        }
        t->ival = (int64_t)v;
        return 0;
    }
    bool has_exp = false;
    for (;;) {
        char c = *lx->p;
        bool e = c == 'e' || c == 'E';
        bool sign = e && (lx->p[1] == '-' || lx->p[1] == '+');
        bool exp = e && !has_exp && isdigit((unsigned char)lx->p[sign ? 2 : 1]);
        bool sep = c == '_' && isdigit((unsigned char)lx->p[1]);
        if (!isdigit((unsigned char)c) && !sep && !exp && !(c == '.' && !isfloat)) {
            break;
        }
        if (n + (exp && sign ? 2 : 1) + 1 > sizeof buf) { /* the char(s) and a terminator */
            return perr(lx->err, line, col, "numeric literal too long");
        }
        if (exp) {
            isfloat = has_exp = true;
            buf[n++] = c;
            if (sign) {
                advance(lx, 1);
                buf[n++] = *lx->p;
            }
        } else if (!sep) { /* a digit separator is dropped */
            isfloat = isfloat || c == '.';
            buf[n++] = c;
        }
        advance(lx, 1);
    }
    buf[n] = '\0';
    if (isalpha((unsigned char)*lx->p) || *lx->p == '_') {
        return perr(lx->err, lx->line, lx->col, "invalid decimal literal");
    }
    struct token *t = push(lx, isfloat ? T_FLOAT : T_INT, line, col);
    if (t == NULL) {
        return -1;
    }
    errno = 0;
    if (isfloat) {
        t->fval = strtod(buf, NULL);
    } else {
        unsigned long long v = strtoull(buf, NULL, 10);
        if (errno != 0 || v > (unsigned long long)INT64_MAX) {
            return perr(lx->err, line, col, "integer literal too large");
        }
        t->ival = (int64_t)v;
    }
    return 0;
}

static const char *const OPS3[] = {"**=", "//=", "...", "<<=", ">>="};
static const char *const OPS2[] = {"**", "//", "<=", ">=", "==", "!=", "+=", "-=", "*=",
                                   "/=", "%=", "@=", "->", "<<", ">>", "&=", "|=", "^="};
static const char OPS1[] = "+-*/%@<>=()[]{},:.;~|&^!";

/* Indentation at the start of a logical line: INDENT, DEDENTs, or nothing. Blank and
** comment-only lines are skipped whole. Returns 1 when the line was skipped. */
static int lex_indent(struct lexer *lx)
{
    int width = 0;
    const char *q = lx->p;
    while (*q == ' ' || *q == '\t') {
        width = *q == '\t' ? (width / 8 + 1) * 8 : width + 1;
        q++;
    }
    if (*q == '\n' || *q == '#' || *q == '\0' || (*q == '\r' && q[1] == '\n')) {
        while (*lx->p != '\n' && *lx->p != '\0') {
            advance(lx, 1);
        }
        if (*lx->p == '\n') {
            advance(lx, 1);
        }
        return 1;
    }
    advance(lx, (int)(q - lx->p));
    int top = lx->indent[lx->nindent - 1];
    if (width > top) {
        if (lx->nindent == (int)(sizeof lx->indent / sizeof lx->indent[0])) {
            return perr(lx->err, lx->line, 1, "too many levels of indentation");
        }
        lx->indent[lx->nindent++] = width;
        return push(lx, T_INDENT, lx->line, lx->col) != NULL ? 0 : -1;
    }
    while (width < lx->indent[lx->nindent - 1]) {
        lx->nindent--;
        if (push(lx, T_DEDENT, lx->line, lx->col) == NULL) {
            return -1;
        }
    }
    if (width != lx->indent[lx->nindent - 1]) {
        return perr(lx->err, lx->line, lx->col,
                    "unindent does not match any outer indentation level");
    }
    return 0;
}

static int lex(struct lexer *lx)
{
    bool bol = true; /* at the beginning of a logical line */
    bool has_tokens = false;
    for (;;) {
        if (bol && lx->depth == 0) {
            if (*lx->p == '\0') {
                break;
            }
            int r = lex_indent(lx);
            if (r < 0) {
                return -1;
            }
            if (r == 1) {
                continue;
            }
            bol = false;
        }
        char c = *lx->p;
        if (c == '\0') {
            break;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
            advance(lx, 1);
            continue;
        }
        if (c == '#') {
            while (*lx->p != '\n' && *lx->p != '\0') {
                advance(lx, 1);
            }
            continue;
        }
        if (c == '\\' && lx->p[1] == '\n') {
            advance(lx, 2);
            continue;
        }
        if (c == '\n') {
            if (lx->depth == 0) {
                if (has_tokens && push(lx, T_NEWLINE, lx->line, lx->col) == NULL) {
                    return -1;
                }
                has_tokens = false;
                bol = true;
            }
            advance(lx, 1);
            continue;
        }
        has_tokens = true;
        int line = lx->line, col = lx->col;
        if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)lx->p[1]))) {
            if (lex_number(lx) != 0) {
                return -1;
            }
            continue;
        }
        if (isalpha((unsigned char)c) || c == '_') {
            const char *s = lx->p;
            while (isalnum((unsigned char)*lx->p) || *lx->p == '_') {
                advance(lx, 1);
            }
            size_t n = (size_t)(lx->p - s);
            bool f = false, r = false;
            if (n <= 2 && (*lx->p == '\'' || *lx->p == '"')) {
                for (size_t i = 0; i < n; i++) {
                    f |= s[i] == 'f' || s[i] == 'F';
                    r |= s[i] == 'r' || s[i] == 'R';
                }
                if ((f || r) && n == (size_t)(f + r)) {
                    if (lex_string(lx, r, f, line, col) != 0) {
                        return -1;
                    }
                    continue;
                }
            }
            struct token *t = push(lx, T_NAME, line, col);
            if (t == NULL || (t->s = td_malloc(n + 1)) == NULL) {
                return perr(lx->err, line, col, "out of memory");
            }
            memcpy(t->s, s, n);
            t->s[n] = '\0';
            continue;
        }
        if (c == '\'' || c == '"') {
            if (lex_string(lx, false, false, line, col) != 0) {
                return -1;
            }
            continue;
        }
        const char *op = NULL;
        for (size_t i = 0; i < sizeof OPS3 / sizeof OPS3[0] && op == NULL; i++) {
            if (strncmp(lx->p, OPS3[i], 3) == 0) {
                op = OPS3[i];
            }
        }
        for (size_t i = 0; i < sizeof OPS2 / sizeof OPS2[0] && op == NULL; i++) {
            if (strncmp(lx->p, OPS2[i], 2) == 0) {
                op = OPS2[i];
            }
        }
        char one[2] = {c, '\0'};
        if (op == NULL && strchr(OPS1, c) != NULL) {
            op = one;
        }
        if (op == NULL) {
            return perr(lx->err, line, col, "invalid character '%c' (U+%04X)",
                        isprint((unsigned char)c) ? c : '?', (unsigned char)c);
        }
        if (c == '(' || c == '[' || c == '{') {
            if (lx->depth == 64) {
                return perr(lx->err, line, col, "too many nested parentheses");
            }
            lx->open_line[lx->depth] = line;
            lx->open_col[lx->depth] = col;
            lx->open_ch[lx->depth] = c;
            lx->depth++;
        } else if (c == ')' || c == ']' || c == '}') {
            char want = c == ')' ? '(' : c == ']' ? '[' : '{';
            if (lx->depth == 0) {
                return perr(lx->err, line, col, "unmatched '%c'", c);
            }
            if (lx->open_ch[lx->depth - 1] != want) {
                return perr(lx->err, line, col,
                            "closing parenthesis '%c' does not match "
                            "opening parenthesis '%c'",
                            c, lx->open_ch[lx->depth - 1]);
            }
            lx->depth--;
        }
        struct token *t = push(lx, T_OP, line, col);
        if (t == NULL) {
            return -1;
        }
        snprintf(t->op, sizeof t->op, "%s", op);
        advance(lx, (int)strlen(op));
    }
    if (lx->depth > 0) {
        lx->err->incomplete = true;
        int d = lx->depth - 1;
        return perr(lx->err, lx->open_line[d], lx->open_col[d], "'%c' was never closed",
                    lx->open_ch[d]);
    }
    if (has_tokens && push(lx, T_NEWLINE, lx->line, lx->col) == NULL) {
        return -1;
    }
    while (lx->nindent > 1) {
        lx->nindent--;
        if (push(lx, T_DEDENT, lx->line, lx->col) == NULL) {
            return -1;
        }
    }
    return push(lx, T_EOF, lx->line, lx->col) != NULL ? 0 : -1;
}

static void free_tokens(struct token *t, int n)
{
    for (int i = 0; i < n; i++) {
        td_free(t[i].s); /* token text comes from td_strbuf / td_malloc */
    }
    free(t);
}

/* ---- the parser ---- */

struct parser {
    struct token *t;
    int n, i;
    struct tdx_perr *err;
};

static struct tdx_node *expr(struct parser *ps);
static struct tdx_node *expr_or_tuple(struct parser *ps);
static struct tdx_node *tuple_item(struct parser *ps);
static int statement(struct parser *ps, struct tdx_prog *out);

void tdx_node_free(struct tdx_node *n)
{
    if (n == NULL) {
        return;
    }
    for (int i = 0; i < n->nkids; i++) {
        tdx_node_free(n->kids[i]);
    }
    free(n->kids);
    free(n->str);
    free(n);
}

void tdx_prog_free(struct tdx_prog *p)
{
    for (int i = 0; i < p->n; i++) {
        tdx_node_free(p->stmts[i]);
    }
    free(p->stmts);
    p->stmts = NULL;
    p->n = 0;
}

static struct tdx_node *node(struct parser *ps, enum tdx_kind kind, int line, int col)
{
    struct tdx_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        perr(ps->err, line, col, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

/* Appends item (taken; may be NULL) to the array *v of *n nodes; on failure frees item and
** reports the error at line:col. */
static int append_node(struct parser *ps, struct tdx_node ***v, int *n, struct tdx_node *item,
                       int line, int col)
{
    struct tdx_node **k = realloc(*v, (size_t)(*n + 1) * sizeof *k);
    if (k == NULL) {
        tdx_node_free(item);
        return perr(ps->err, line, col, "out of memory");
    }
    *v = k;
    k[(*n)++] = item;
    return 0;
}

/* Appends kid (taken, may be NULL only for slices) to n; on failure frees kid. */
static int add_kid(struct parser *ps, struct tdx_node *n, struct tdx_node *kid)
{
    return append_node(ps, &n->kids, &n->nkids, kid, n->line, n->col);
}

static struct token *peek(struct parser *ps)
{
    return &ps->t[ps->i];
}

static bool is_op(struct parser *ps, const char *op)
{
    struct token *t = peek(ps);
    return t->kind == T_OP && strcmp(t->op, op) == 0;
}

static bool is_kw(struct parser *ps, const char *kw)
{
    struct token *t = peek(ps);
    return t->kind == T_NAME && strcmp(t->s, kw) == 0;
}

static const char *describe(const struct token *t, char *buf, size_t cap)
{
    switch (t->kind) {
    case T_EOF: return "end of input";
    case T_NEWLINE: return "end of line";
    case T_INDENT: return "unexpected indent";
    case T_DEDENT: return "unindent";
    case T_NAME: snprintf(buf, cap, "'%s'", t->s); return buf;
    case T_INT:
    case T_FLOAT: return "number";
    case T_STR:
    case T_FSTR: return "string";
    case T_OP: snprintf(buf, cap, "'%s'", t->op); return buf;
    }
    return "token";
}

static void *syntax(struct parser *ps, const char *want)
{
    struct token *t = peek(ps);
    char buf[64];
    if (t->kind == T_EOF && ps->err->msg[0] == '\0') {
        ps->err->incomplete = true;
    }
    if (t->kind == T_INDENT) {
        perr(ps->err, t->line, t->col, "unexpected indent");
    } else if (want != NULL) {
        perr(ps->err, t->line, t->col, "invalid syntax: expected %s, found %s", want,
             describe(t, buf, sizeof buf));
    } else {
        perr(ps->err, t->line, t->col, "invalid syntax: unexpected %s",
             describe(t, buf, sizeof buf));
    }
    return NULL;
}

static int expect_op(struct parser *ps, const char *op)
{
    if (!is_op(ps, op)) {
        char want[16];
        snprintf(want, sizeof want, "'%s'", op);
        syntax(ps, want);
        return -1;
    }
    ps->i++;
    return 0;
}

static const char *const KEYWORDS[] = {
    "and",    "or",     "not",      "del",   "with",     "for",    "in",     "pass",    "True",
    "False",  "None",   "if",       "else",  "elif",     "while",  "def",    "class",   "return",
    "import", "from",   "lambda",   "as",    "is",       "try",    "except", "finally", "raise",
    "yield",  "global", "nonlocal", "break", "continue", "assert", "async",  "await",
};

bool tdx_is_keyword(const char *s)
{
    for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++) {
        if (strcmp(s, KEYWORDS[i]) == 0) {
            return true;
        }
    }
    return false;
}

static struct tdx_node *parse_fstring(struct parser *ps, struct token *t);

static struct tdx_node *sequence(struct parser *ps, enum tdx_kind kind, const char *close, int line,
                                 int col)
{
    struct tdx_node *n = node(ps, kind, line, col);
    if (n == NULL) {
        return NULL;
    }
    bool comma = false;
    while (!is_op(ps, close)) {
        struct tdx_node *e = tuple_item(ps);
        if (e == NULL || add_kid(ps, n, e) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        if (!is_op(ps, ",")) {
            break;
        }
        comma = true;
        ps->i++;
    }
    if (expect_op(ps, close) != 0) {
        tdx_node_free(n);
        return NULL;
    }
    if (kind == TDX_TUPLE && n->nkids == 1 && !comma) {
        /* (x) is x, not a tuple */
        struct tdx_node *e = n->kids[0];
        n->nkids = 0;
        tdx_node_free(n);
        return e;
    }
    return n;
}

static struct tdx_node *atom(struct parser *ps)
{
    struct token *t = peek(ps);
    struct tdx_node *n;
    switch (t->kind) {
    case T_INT:
        if ((n = node(ps, TDX_INT, t->line, t->col)) != NULL) {
            n->ival = t->ival;
            ps->i++;
        }
        return n;
    case T_FLOAT:
        if ((n = node(ps, TDX_FLOAT, t->line, t->col)) != NULL) {
            n->fval = t->fval;
            ps->i++;
        }
        return n;
    case T_STR: {
        /* Adjacent literals concatenate, as in Python. */
        if ((n = node(ps, TDX_STR, t->line, t->col)) == NULL) {
            return NULL;
        }
        size_t len = 0;
        int j = ps->i;
        for (; ps->t[j].kind == T_STR; j++) {
            len += (size_t)ps->t[j].ival;
        }
        if ((n->str = malloc(len + 1)) == NULL) {
            tdx_node_free(n);
            perr(ps->err, t->line, t->col, "out of memory");
            return NULL;
        }
        n->ival = (int64_t)len;
        len = 0;
        for (; ps->i < j; ps->i++) {
            memcpy(n->str + len, ps->t[ps->i].s, (size_t)ps->t[ps->i].ival);
            len += (size_t)ps->t[ps->i].ival;
        }
        n->str[len] = '\0';
        return n;
    }
    case T_FSTR: ps->i++; return parse_fstring(ps, t);
    case T_NAME:
        if (strcmp(t->s, "True") == 0 || strcmp(t->s, "False") == 0 || strcmp(t->s, "None") == 0) {
            n = node(ps,
                     t->s[0] == 'T'   ? TDX_TRUE
                     : t->s[0] == 'F' ? TDX_FALSE
                                      : TDX_NONE,
                     t->line, t->col);
            ps->i += n != NULL;
            return n;
        }
        if (tdx_is_keyword(t->s)) {
            return syntax(ps, "an expression");
        }
        if ((n = node(ps, TDX_NAME, t->line, t->col)) == NULL) {
            return NULL;
        }
        if ((n->str = strdup(t->s)) == NULL) {
            tdx_node_free(n);
            perr(ps->err, t->line, t->col, "out of memory");
            return NULL;
        }
        ps->i++;
        return n;
    case T_OP:
        if (strcmp(t->op, "(") == 0) {
            ps->i++;
            return sequence(ps, TDX_TUPLE, ")", t->line, t->col);
        }
        if (strcmp(t->op, "[") == 0) {
            ps->i++;
            return sequence(ps, TDX_LIST, "]", t->line, t->col);
        }
        if (strcmp(t->op, "...") == 0) {
            n = node(ps, TDX_ELLIPSIS, t->line, t->col);
            ps->i += n != NULL;
            return n;
        }
        return syntax(ps, "an expression");
    default: return syntax(ps, "an expression");
    }
}

static struct tdx_node *call_args(struct parser *ps, struct tdx_node *fn, struct token *open)
{
    struct tdx_node *n = node(ps, TDX_CALL, open->line, open->col);
    if (n == NULL || add_kid(ps, n, fn) != 0) {
        if (n == NULL) {
            tdx_node_free(fn);
        }
        tdx_node_free(n);
        return NULL;
    }
    bool seen_kw = false;
    while (!is_op(ps, ")")) {
        struct token *t = peek(ps);
        struct tdx_node *a;
        if (t->kind == T_NAME && ps->t[ps->i + 1].kind == T_OP &&
            strcmp(ps->t[ps->i + 1].op, "=") == 0) {
            ps->i += 2;
            a = node(ps, TDX_KWARG, t->line, t->col);
            struct tdx_node *v = a != NULL ? expr(ps) : NULL;
            if (a == NULL || v == NULL || (a->str = strdup(t->s)) == NULL ||
                add_kid(ps, a, v) != 0) {
                if (a != NULL && a->nkids == 0) {
                    tdx_node_free(v);
                }
                tdx_node_free(a);
                tdx_node_free(n);
                return NULL;
            }
            seen_kw = true;
        } else {
            if (seen_kw) {
                perr(ps->err, t->line, t->col, "positional argument follows keyword argument");
                tdx_node_free(n);
                return NULL;
            }
            if ((a = expr(ps)) == NULL) {
                tdx_node_free(n);
                return NULL;
            }
        }
        if (add_kid(ps, n, a) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        if (!is_op(ps, ",")) {
            break;
        }
        ps->i++;
    }
    if (expect_op(ps, ")") != 0) {
        tdx_node_free(n);
        return NULL;
    }
    return n;
}

static struct tdx_node *subscript(struct parser *ps)
{
    struct token *t = peek(ps);
    struct tdx_node *parts[3] = {NULL, NULL, NULL};
    if (!is_op(ps, ":")) {
        if ((parts[0] = expr(ps)) == NULL) {
            return NULL;
        }
        if (!is_op(ps, ":")) {
            return parts[0];
        }
    }
    struct tdx_node *n = node(ps, TDX_SLICE, t->line, t->col);
    if (n == NULL || add_kid(ps, n, parts[0]) != 0) {
        if (n == NULL) {
            tdx_node_free(parts[0]);
        }
        tdx_node_free(n);
        return NULL;
    }
    for (int k = 1; k < 3 && is_op(ps, ":"); k++) {
        ps->i++;
        struct tdx_node *e = NULL;
        if (!is_op(ps, ":") && !is_op(ps, ",") && !is_op(ps, "]") && (e = expr(ps)) == NULL) {
            tdx_node_free(n);
            return NULL;
        }
        if (add_kid(ps, n, e) != 0) {
            tdx_node_free(n);
            return NULL;
        }
    }
    while (n->nkids < 3) {
        if (add_kid(ps, n, NULL) != 0) {
            tdx_node_free(n);
            return NULL;
        }
    }
    return n;
}

static struct tdx_node *primary(struct parser *ps)
{
    struct tdx_node *n = atom(ps);
    while (n != NULL) {
        struct token *t = peek(ps);
        if (is_op(ps, "(")) {
            ps->i++;
            n = call_args(ps, n, t);
        } else if (is_op(ps, "[")) {
            ps->i++;
            struct tdx_node *ix = node(ps, TDX_INDEX, t->line, t->col);
            if (ix == NULL || add_kid(ps, ix, n) != 0) {
                if (ix == NULL) {
                    tdx_node_free(n);
                }
                tdx_node_free(ix);
                return NULL;
            }
            n = ix;
            do {
                if (is_op(ps, ",")) {
                    ps->i++;
                }
                if (is_op(ps, "]")) {
                    break;
                }
                struct tdx_node *s = subscript(ps);
                if (s == NULL || add_kid(ps, n, s) != 0) {
                    tdx_node_free(n);
                    return NULL;
                }
            } while (is_op(ps, ","));
            if (n->nkids == 1) {
                tdx_node_free(n);
                return syntax(ps, "an index");
            }
            if (expect_op(ps, "]") != 0) {
                tdx_node_free(n);
                return NULL;
            }
        } else if (is_op(ps, ".")) {
            ps->i++;
            struct token *name = peek(ps);
            if (name->kind != T_NAME) {
                tdx_node_free(n);
                return syntax(ps, "an attribute name");
            }
            struct tdx_node *a = node(ps, TDX_ATTR, t->line, t->col);
            if (a == NULL || (a->str = strdup(name->s)) == NULL || add_kid(ps, a, n) != 0) {
                if (a == NULL || a->nkids == 0) {
                    tdx_node_free(n);
                }
                tdx_node_free(a);
                return NULL;
            }
            ps->i++;
            n = a;
        } else {
            break;
        }
    }
    return n;
}

static struct tdx_node *binop(struct parser *ps, int op, struct token *t, struct tdx_node *l,
                              struct tdx_node *r)
{
    if (l == NULL || r == NULL) {
        tdx_node_free(l);
        tdx_node_free(r);
        return NULL;
    }
    struct tdx_node *n = node(ps, TDX_BINOP, t->line, t->col);
    if (n == NULL) {
        tdx_node_free(l);
        tdx_node_free(r);
        return NULL;
    }
    n->op = op;
    if (add_kid(ps, n, l) != 0) {
        tdx_node_free(r);
        tdx_node_free(n);
        return NULL;
    }
    if (add_kid(ps, n, r) != 0) {
        tdx_node_free(n);
        return NULL;
    }
    return n;
}

static struct tdx_node *unary(struct parser *ps, enum tdx_kind kind, int op, struct token *t,
                              struct tdx_node *e)
{
    if (e == NULL) {
        return NULL;
    }
    struct tdx_node *n = node(ps, kind, t->line, t->col);
    if (n == NULL) {
        tdx_node_free(e);
        return NULL;
    }
    n->op = op;
    if (add_kid(ps, n, e) != 0) {
        tdx_node_free(n);
        return NULL;
    }
    return n;
}

static struct tdx_node *factor(struct parser *ps);

static struct tdx_node *power(struct parser *ps)
{
    struct tdx_node *n = primary(ps);
    if (n != NULL && is_op(ps, "**")) {
        struct token *t = peek(ps);
        ps->i++;
        return binop(ps, TDX_OP_POW, t, n, factor(ps)); /* right-assoc; -x binds weaker */
    }
    return n;
}

static struct tdx_node *factor(struct parser *ps)
{
    struct token *t = peek(ps);
    if (is_op(ps, "-") || is_op(ps, "+") || is_op(ps, "~")) {
        ps->i++;
        int op = t->op[0] == '-' ? TDX_OP_NEG : t->op[0] == '+' ? TDX_OP_POS : TDX_OP_INVERT;
        return unary(ps, TDX_UNARY, op, t, factor(ps));
    }
    return power(ps);
}

struct opmap {
    const char *text;
    int op;
};

static int match(struct parser *ps, const struct opmap *m, size_t n)
{
    struct token *t = peek(ps);
    if (t->kind != T_OP) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t->op, m[i].text) == 0) {
            return m[i].op;
        }
    }
    return 0;
}

static const struct opmap TERM[] = {{"*", TDX_OP_MUL},
                                    {"/", TDX_OP_DIV},
                                    {"//", TDX_OP_FLOORDIV},
                                    {"%", TDX_OP_MOD},
                                    {"@", TDX_OP_MATMUL}};
static const struct opmap ARITH[] = {{"+", TDX_OP_ADD}, {"-", TDX_OP_SUB}};
static const struct opmap SHIFT[] = {{"<<", TDX_OP_LSHIFT}, {">>", TDX_OP_RSHIFT}};
static const struct opmap BITAND[] = {{"&", TDX_OP_AND}};
static const struct opmap BITXOR[] = {{"^", TDX_OP_XOR}};
static const struct opmap BITOR[] = {{"|", TDX_OP_OR}};
static const struct opmap COMPARE[] = {{"<", TDX_OP_LT},  {"<=", TDX_OP_LE}, {">", TDX_OP_GT},
                                       {">=", TDX_OP_GE}, {"==", TDX_OP_EQ}, {"!=", TDX_OP_NE}};

/* One left-associative precedence level: operands from `next`, operators from `ops`. */
static struct tdx_node *left_assoc(struct parser *ps, struct tdx_node *(*next)(struct parser *),
                                   const struct opmap *ops, int nops)
{
    struct tdx_node *n = next(ps);
    int op;
    while (n != NULL && (op = match(ps, ops, nops)) != 0) {
        struct token *t = peek(ps);
        ps->i++;
        n = binop(ps, op, t, n, next(ps));
    }
    return n;
}

static struct tdx_node *term(struct parser *ps)
{
    return left_assoc(ps, factor, TERM, 5);
}

static struct tdx_node *arith(struct parser *ps)
{
    return left_assoc(ps, term, ARITH, 2);
}

/* Python's bitwise levels, between + - and the comparisons: << >>, then &, ^, |. */
static struct tdx_node *shift(struct parser *ps)
{
    return left_assoc(ps, arith, SHIFT, 2);
}

static struct tdx_node *bit_and(struct parser *ps)
{
    return left_assoc(ps, shift, BITAND, 1);
}

static struct tdx_node *bit_xor(struct parser *ps)
{
    return left_assoc(ps, bit_and, BITXOR, 1);
}

static struct tdx_node *bit_or(struct parser *ps)
{
    return left_assoc(ps, bit_xor, BITOR, 1);
}

static struct tdx_node *comparison(struct parser *ps)
{
    return left_assoc(ps, bit_or, COMPARE, 6);
}

static struct tdx_node *not_test(struct parser *ps)
{
    struct token *t = peek(ps);
    if (is_kw(ps, "not")) {
        ps->i++;
        return unary(ps, TDX_NOT, 0, t, not_test(ps));
    }
    return comparison(ps);
}

static struct tdx_node *and_test(struct parser *ps)
{
    struct tdx_node *n = not_test(ps);
    while (n != NULL && is_kw(ps, "and")) {
        struct token *t = peek(ps);
        ps->i++;
        n = binop(ps, 0, t, n, not_test(ps));
        if (n != NULL) {
            n->kind = TDX_AND;
        }
    }
    return n;
}

static struct tdx_node *expr(struct parser *ps)
{
    struct tdx_node *n = and_test(ps);
    while (n != NULL && is_kw(ps, "or")) {
        struct token *t = peek(ps);
        ps->i++;
        n = binop(ps, 0, t, n, and_test(ps));
        if (n != NULL) {
            n->kind = TDX_OR;
        }
    }
    return n;
}

static bool ends_expr(struct parser *ps)
{
    struct token *t = peek(ps);
    return t->kind == T_NEWLINE || t->kind == T_EOF || is_op(ps, "=") || is_op(ps, ";") ||
           is_op(ps, ")") || is_op(ps, "]") || is_op(ps, ":") || t->kind == T_DEDENT;
}

/* a, b, c as a tuple (for `shape = 2, 3` and subscripts); one expression stays itself */
/* An element of a tuple: an expression, or *expression (a starred target; eval refuses it
** anywhere else). */
static struct tdx_node *tuple_item(struct parser *ps)
{
    struct token *t = peek(ps);
    if (is_op(ps, "*")) {
        ps->i++;
        return unary(ps, TDX_UNARY, TDX_OP_STAR, t, expr(ps));
    }
    return expr(ps);
}

static struct tdx_node *expr_or_tuple(struct parser *ps)
{
    struct token *t0 = peek(ps);
    struct tdx_node *first = tuple_item(ps);
    if (first == NULL || !is_op(ps, ",")) {
        return first;
    }
    struct tdx_node *n = node(ps, TDX_TUPLE, t0->line, t0->col);
    if (n == NULL || add_kid(ps, n, first) != 0) {
        if (n == NULL) {
            tdx_node_free(first);
        }
        tdx_node_free(n);
        return NULL;
    }
    while (is_op(ps, ",")) {
        ps->i++;
        if (ends_expr(ps)) {
            break;
        }
        struct tdx_node *e = tuple_item(ps);
        if (e == NULL || add_kid(ps, n, e) != 0) {
            tdx_node_free(n);
            return NULL;
        }
    }
    return n;
}

/* ---- f-strings ---- */

/* Decodes backslash escapes and {{ }} of a literal part into a TDX_STR node. */
static struct tdx_node *fstr_literal(struct parser *ps, const char *s, size_t n, int line, int col)
{
    struct tdx_node *lit = node(ps, TDX_STR, line, col);
    if (lit == NULL || (lit->str = malloc(n + 1)) == NULL) {
        tdx_node_free(lit);
        perr(ps->err, line, col, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c == '{' || c == '}') && i + 1 < n && s[i + 1] == c) {
            i++;
        } else if (c == '\\' && i + 1 < n) {
            i++;
            switch (s[i]) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case '\\': c = '\\'; break;
            case '\'': c = '\''; break;
            case '"': c = '"'; break;
            default:
                lit->str[k++] = '\\';
                c = s[i];
                break;
            }
        }
        lit->str[k++] = c;
    }
    lit->str[k] = '\0';
    lit->ival = (int64_t)k;
    return lit;
}

static struct tdx_node *parse_expr_text(const char *text, size_t n, int line, int col,
                                        struct tdx_perr *err);

static struct tdx_node *parse_fstring(struct parser *ps, struct token *t)
{
    struct tdx_node *f = node(ps, TDX_FSTR, t->line, t->col);
    if (f == NULL) {
        return NULL;
    }
    const char *s = t->s;
    size_t len = (size_t)t->ival, i = 0, lit = 0;
    int line = t->sline, col = t->scol;
    int lline = line, lcol = col;
    while (i <= len) {
        bool end = i == len;
        if (!end && s[i] == '{' && i + 1 < len && s[i + 1] == '{') {
            i += 2;
            col += 2;
            continue;
        }
        if (!end && s[i] == '}') {
            if (i + 1 < len && s[i + 1] == '}') {
                i += 2;
                col += 2;
                continue;
            }
            perr(ps->err, line, col, "f-string: single '}' is not allowed");
            tdx_node_free(f);
            return NULL;
        }
        if (end || s[i] == '{') {
            if (i > lit) {
                struct tdx_node *l = fstr_literal(ps, s + lit, i - lit, lline, lcol);
                if (l == NULL || add_kid(ps, f, l) != 0) {
                    tdx_node_free(f);
                    return NULL;
                }
            }
            if (end) {
                break;
            }
            /* A field: the expression ends at a top-level '}', '!' or ':'. */
            int fline = line, fcol = col + 1;
            size_t j = i + 1, spec = 0, conv = 0;
            int depth = 0;
            char q = 0;
            for (; j < len; j++) {
                char c = s[j];
                if (q != 0) {
                    q = c == q ? 0 : q;
                } else if (c == '\'' || c == '"') {
                    q = c;
                } else if (c == '(' || c == '[' || c == '{') {
                    depth++;
                } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
                    depth--;
                } else if (depth == 0 && c == '}') {
                    break;
                } else if (depth == 0 && c == '!' && j + 1 < len && s[j + 1] != '=' && conv == 0 &&
                           spec == 0) {
                    conv = j;
                } else if (depth == 0 && c == ':' && spec == 0) {
                    spec = j;
                }
            }
            if (j >= len) {
                perr(ps->err, line, col, "f-string: expecting '}'");
                tdx_node_free(f);
                return NULL;
            }
            size_t eend = conv ? conv : spec ? spec : j;
            struct tdx_node *fld = node(ps, TDX_FIELD, fline, fcol);
            struct tdx_node *e = fld != NULL ? parse_expr_text(s + i + 1, eend - i - 1, fline, fcol,
                                                               ps->err)
                                             : NULL;
            if (e == NULL || add_kid(ps, fld, e) != 0 || add_kid(ps, f, fld) != 0) {
                if (fld != NULL && fld->nkids == 0) {
                    tdx_node_free(e);
                }
                if (f->nkids == 0 || f->kids[f->nkids - 1] != fld) {
                    tdx_node_free(fld);
                }
                tdx_node_free(f);
                return NULL;
            }
            if (conv) {
                fld->op = s[conv + 1];
            }
            if (spec && (fld->str = strndup(s + spec + 1, j - spec - 1)) == NULL) {
                perr(ps->err, line, col, "out of memory");
                tdx_node_free(f);
                return NULL;
            }
            for (size_t k = i; k <= j; k++) {
                if (s[k] == '\n') {
                    line++;
                    col = 1;
                } else {
                    col++;
                }
            }
            i = j + 1;
            lit = i;
            lline = line;
            lcol = col;
            continue;
        }
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i++;
    }
    return f;
}

/* ---- statements ---- */

static int block(struct parser *ps, struct tdx_node *owner);

static bool is_target(const struct tdx_node *n)
{
    return n->kind == TDX_NAME || n->kind == TDX_ATTR || n->kind == TDX_INDEX;
}

/* An assignment's target: a target, or a tuple or list of them (`a, b = b, a`, `(v, i) = ...`,
** nested too), which the value unpacks into. */
static bool is_starred(const struct tdx_node *n)
{
    return n->kind == TDX_UNARY && n->op == TDX_OP_STAR;
}

static bool is_assign_target(const struct tdx_node *n)
{
    if (n->kind == TDX_TUPLE || n->kind == TDX_LIST) {
        for (int i = 0; i < n->nkids; i++) {
            const struct tdx_node *k = n->kids[i];
            if (!is_assign_target(is_starred(k) ? k->kids[0] : k) ||
                (is_starred(k) && is_starred(k->kids[0]))) {
                return false;
            }
        }
        return n->nkids > 0 || n->kind == TDX_LIST;
    }
    return is_target(n);
}

/* Python's refusals of starred targets: two at one level, or one alone. NULL when none. */
static const struct tdx_node *bad_star(const struct tdx_node *n, const char **why)
{
    if (is_starred(n)) {
        *why = "starred assignment target must be in a list or tuple";
        return n;
    }
    if (n->kind != TDX_TUPLE && n->kind != TDX_LIST) {
        return NULL;
    }
    int stars = 0;
    for (int i = 0; i < n->nkids; i++) {
        const struct tdx_node *k = n->kids[i], *b;
        if (is_starred(k) && ++stars > 1) {
            *why = "multiple starred expressions in assignment";
            return n;
        }
        if ((b = bad_star(is_starred(k) ? k->kids[0] : k, why)) != NULL) {
            return b;
        }
    }
    return NULL;
}

/* The first part of a target that cannot be assigned to (for the error's position). */
static const struct tdx_node *bad_target(const struct tdx_node *n)
{
    if (n->kind == TDX_TUPLE || n->kind == TDX_LIST) {
        for (int i = 0; i < n->nkids; i++) {
            const struct tdx_node *k = is_starred(n->kids[i]) ? n->kids[i]->kids[0] : n->kids[i];
            if (!is_assign_target(k)) {
                return bad_target(k);
            }
        }
    }
    return n;
}

static const struct opmap AUG[] = {{"+=", TDX_OP_ADD},       {"-=", TDX_OP_SUB},
                                   {"*=", TDX_OP_MUL},       {"/=", TDX_OP_DIV},
                                   {"//=", TDX_OP_FLOORDIV}, {"%=", TDX_OP_MOD},
                                   {"**=", TDX_OP_POW},      {"@=", TDX_OP_MATMUL},
                                   {"&=", TDX_OP_AND},       {"|=", TDX_OP_OR},
                                   {"^=", TDX_OP_XOR},       {"<<=", TDX_OP_LSHIFT},
                                   {">>=", TDX_OP_RSHIFT}};

/* Where an expression's text begins (a call's node sits at its '('). */
static const struct tdx_node *start_of(const struct tdx_node *n)
{
    while ((n->kind == TDX_CALL || n->kind == TDX_ATTR || n->kind == TDX_INDEX ||
            n->kind == TDX_BINOP) &&
           n->nkids > 0 && n->kids[0] != NULL) {
        n = n->kids[0];
    }
    return n;
}

/* NAME ('.' NAME)* as one NAME node "a.b.c" (dotted only when `dots`). */
static struct tdx_node *dotted_name(struct parser *ps, bool dots)
{
    struct token *t = peek(ps);
    if (t->kind != T_NAME || tdx_is_keyword(t->s)) {
        return syntax(ps, "a name");
    }
    struct tdx_node *n = node(ps, TDX_NAME, t->line, t->col);
    if (n == NULL || (n->str = strdup(t->s)) == NULL) {
        tdx_node_free(n);
        perr(ps->err, t->line, t->col, "out of memory");
        return NULL;
    }
    ps->i++;
    while (dots && is_op(ps, ".")) {
        ps->i++;
        struct token *k = peek(ps);
        if (k->kind != T_NAME || tdx_is_keyword(k->s)) {
            tdx_node_free(n);
            return syntax(ps, "a name");
        }
        size_t len = strlen(n->str) + strlen(k->s) + 2;
        char *s = malloc(len);
        if (s == NULL) {
            tdx_node_free(n);
            perr(ps->err, k->line, k->col, "out of memory");
            return NULL;
        }
        snprintf(s, len, "%s.%s", n->str, k->s);
        free(n->str);
        n->str = s;
        ps->i++;
    }
    return n;
}

/* `import a.b [as c], ...` and `from m import x [as y], ...`: parsed here, judged by eval. */
static struct tdx_node *import_stmt(struct parser *ps)
{
    struct token *t = peek(ps);
    bool from = is_kw(ps, "from");
    ps->i++;
    struct tdx_node *n = node(ps, TDX_IMPORT, t->line, t->col);
    if (n == NULL) {
        return NULL;
    }
    if (from) {
        struct tdx_node *m = dotted_name(ps, true);
        if (m == NULL) {
            tdx_node_free(n);
            return NULL;
        }
        n->str = m->str;
        m->str = NULL;
        tdx_node_free(m);
        if (!is_kw(ps, "import")) {
            tdx_node_free(n);
            return syntax(ps, "'import'");
        }
        ps->i++;
        if (is_op(ps, "*")) {
            perr(ps->err, peek(ps)->line, peek(ps)->col, "'from %s import *' is not supported",
                 n->str);
            tdx_node_free(n);
            return NULL;
        }
    }
    for (;;) {
        struct tdx_node *k = dotted_name(ps, !from);
        if (k != NULL && is_kw(ps, "as")) {
            ps->i++;
            struct tdx_node *alias = dotted_name(ps, false);
            struct tdx_node *kw = alias != NULL ? node(ps, TDX_KWARG, k->line, k->col) : NULL;
            if (kw == NULL || add_kid(ps, kw, k) != 0) {
                tdx_node_free(alias);
                tdx_node_free(kw);
                if (kw == NULL) {
                    tdx_node_free(k);
                }
                tdx_node_free(n);
                return NULL;
            }
            kw->str = alias->str;
            alias->str = NULL;
            tdx_node_free(alias);
            k = kw;
        }
        if (k == NULL || add_kid(ps, n, k) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        if (!is_op(ps, ",")) {
            break;
        }
        ps->i++;
    }
    return n;
}

static struct tdx_node *small_stmt(struct parser *ps)
{
    struct token *t = peek(ps);
    if (is_kw(ps, "import") || is_kw(ps, "from")) {
        return import_stmt(ps);
    }
    if (is_kw(ps, "pass")) {
        ps->i++;
        return node(ps, TDX_PASS, t->line, t->col);
    }
    if (is_kw(ps, "del")) {
        ps->i++;
        struct tdx_node *n = node(ps, TDX_DEL, t->line, t->col);
        struct tdx_node *e = n != NULL ? expr_or_tuple(ps) : NULL;
        if (e == NULL) {
            tdx_node_free(n);
            return NULL;
        }
        if (e->kind == TDX_TUPLE) {
            n->kids = e->kids;
            n->nkids = e->nkids;
            e->kids = NULL;
            e->nkids = 0;
            tdx_node_free(e);
        } else if (add_kid(ps, n, e) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        for (int i = 0; i < n->nkids; i++) {
            if (!is_target(n->kids[i])) {
                perr(ps->err, n->kids[i]->line, n->kids[i]->col, "cannot delete %s",
                     n->kids[i]->kind == TDX_CALL ? "function call" : "expression");
                tdx_node_free(n);
                return NULL;
            }
        }
        return n;
    }
    struct tdx_node *lhs = expr_or_tuple(ps);
    if (lhs == NULL) {
        return NULL;
    }
    struct token *opt = peek(ps);
    int aug = match(ps, AUG, sizeof AUG / sizeof AUG[0]);
    if (is_op(ps, "=") || aug != 0) {
        if (aug != 0 && (lhs->kind == TDX_TUPLE || lhs->kind == TDX_LIST)) {
            perr(ps->err, start_of(lhs)->line, start_of(lhs)->col,
                 "'%s' is an illegal expression for augmented assignment",
                 lhs->kind == TDX_TUPLE ? "tuple" : "list");
            tdx_node_free(lhs);
            return NULL;
        }
        const char *why = NULL;
        const struct tdx_node *star = aug == 0 ? bad_star(lhs, &why) : NULL;
        if (star != NULL) {
            perr(ps->err, start_of(star)->line, start_of(star)->col, "%s", why);
            tdx_node_free(lhs);
            return NULL;
        }
        if (!is_assign_target(lhs)) {
            const struct tdx_node *bad = bad_target(lhs);
            perr(ps->err, start_of(bad)->line, start_of(bad)->col, "cannot assign to %s%s",
                 bad->kind == TDX_CALL   ? "function call"
                 : bad->kind == TDX_NAME ? ""
                                         : "expression",
                 aug != 0 ? " here (augmented assignment)" : "");
            tdx_node_free(lhs);
            return NULL;
        }
        ps->i++;
        struct tdx_node *n = node(ps, aug != 0 ? TDX_AUGASSIGN : TDX_ASSIGN, opt->line, opt->col);
        if (n == NULL) {
            tdx_node_free(lhs);
            return NULL;
        }
        n->op = aug;
        if (add_kid(ps, n, lhs) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        struct tdx_node *v = expr_or_tuple(ps);
        if (v == NULL || add_kid(ps, n, v) != 0) {
            tdx_node_free(n);
            return NULL;
        }
        if (is_op(ps, "=") && aug == 0) {
            perr(ps->err, peek(ps)->line, peek(ps)->col,
                 "chained assignment (a = b = c) is not supported");
            tdx_node_free(n);
            return NULL;
        }
        return n;
    }
    struct tdx_node *n = node(ps, TDX_EXPR, lhs->line, lhs->col);
    if (n == NULL || add_kid(ps, n, lhs) != 0) {
        if (n == NULL) {
            tdx_node_free(lhs);
        }
        tdx_node_free(n);
        return NULL;
    }
    return n;
}

static int push_stmt(struct parser *ps, struct tdx_prog *out, struct tdx_node *s)
{
    return append_node(ps, &out->stmts, &out->n, s, s->line, s->col); /* read before any free */
}

/* small_stmt (';' small_stmt)* NEWLINE */
static int simple_stmts(struct parser *ps, struct tdx_prog *out)
{
    for (;;) {
        struct tdx_node *s = small_stmt(ps);
        if (s == NULL || push_stmt(ps, out, s) != 0) {
            return -1;
        }
        if (!is_op(ps, ";")) {
            break;
        }
        ps->i++;
        if (peek(ps)->kind == T_NEWLINE || peek(ps)->kind == T_EOF) {
            break;
        }
    }
    struct token *t = peek(ps);
    if (t->kind == T_NEWLINE) {
        ps->i++;
        return 0;
    }
    if (t->kind == T_EOF || t->kind == T_DEDENT) {
        return 0;
    }
    syntax(ps, NULL);
    return -1;
}

/* The body after a block header's ':' : statements on the same line, or an indented block. */
static int block(struct parser *ps, struct tdx_node *owner)
{
    struct tdx_prog body = {0};
    int rc;
    if (expect_op(ps, ":") != 0) {
        return -1;
    }
    if (peek(ps)->kind == T_NEWLINE) {
        ps->i++;
        if (peek(ps)->kind != T_INDENT) {
            struct token *t = peek(ps);
            if (t->kind == T_EOF) {
                ps->err->incomplete = true;
            }
            return perr(ps->err, t->line, t->col,
                        "expected an indented block after '%s' "
                        "statement on line %d",
                        owner->kind == TDX_WITH ? "with" : "for", owner->line);
        }
        ps->i++;
        while (peek(ps)->kind != T_DEDENT && peek(ps)->kind != T_EOF) {
            if ((rc = statement(ps, &body)) != 0) {
                tdx_prog_free(&body);
                return rc;
            }
        }
        if (peek(ps)->kind == T_DEDENT) {
            ps->i++;
        }
    } else if ((rc = simple_stmts(ps, &body)) != 0) {
        tdx_prog_free(&body);
        return rc;
    }
    for (int i = 0; i < body.n; i++) {
        if (add_kid(ps, owner, body.stmts[i]) != 0) {
            for (int k = i + 1; k < body.n; k++) {
                tdx_node_free(body.stmts[k]);
            }
            free(body.stmts);
            return -1;
        }
    }
    free(body.stmts);
    return 0;
}

static int statement(struct parser *ps, struct tdx_prog *out)
{
    struct token *t = peek(ps);
    if (t->kind == T_INDENT) {
        syntax(ps, NULL);
        return -1;
    }
    if (is_kw(ps, "with") || is_kw(ps, "for")) {
        bool with = t->s[0] == 'w';
        ps->i++;
        struct tdx_node *n = node(ps, with ? TDX_WITH : TDX_FOR, t->line, t->col);
        if (n == NULL) {
            return -1;
        }
        if (!with) {
            struct token *v = peek(ps);
            if (v->kind != T_NAME || tdx_is_keyword(v->s)) {
                tdx_node_free(n);
                syntax(ps, "a loop variable");
                return -1;
            }
            if (ps->i + 1 < ps->n && ps->t[ps->i + 1].kind == T_OP &&
                strcmp(ps->t[ps->i + 1].op, ",") == 0) {
                /* for a, b in ...: the targets are kids[0] (op 1), the iterable kids[1] */
                struct tdx_node *tg = expr_or_tuple(ps);
                if (tg == NULL || add_kid(ps, n, tg) != 0) {
                    tdx_node_free(n);
                    return -1;
                }
                const char *why = NULL;
                const struct tdx_node *star = bad_star(tg, &why);
                if (star != NULL) {
                    perr(ps->err, star->line, star->col, "%s", why);
                    tdx_node_free(n);
                    return -1;
                }
                if (!is_assign_target(tg)) {
                    const struct tdx_node *bad = bad_target(tg);
                    perr(ps->err, bad->line, bad->col, "cannot assign to %s",
                         bad->kind == TDX_CALL ? "function call" : "expression");
                    tdx_node_free(n);
                    return -1;
                }
                n->op = 1;
            } else if ((n->str = strdup(v->s)) == NULL) {
                tdx_node_free(n);
                return perr(ps->err, v->line, v->col, "out of memory");
            } else {
                ps->i++;
            }
            if (!is_kw(ps, "in")) {
                tdx_node_free(n);
                syntax(ps, "'in'");
                return -1;
            }
            ps->i++;
        }
        struct tdx_node *e = expr(ps);
        if (e == NULL || add_kid(ps, n, e) != 0) {
            tdx_node_free(n);
            return -1;
        }
        if (is_kw(ps, "as")) {
            perr(ps->err, peek(ps)->line, peek(ps)->col, "'with ... as' is not supported");
            tdx_node_free(n);
            return -1;
        }
        if (block(ps, n) != 0) {
            tdx_node_free(n);
            return -1;
        }
        return push_stmt(ps, out, n);
    }
    return simple_stmts(ps, out);
}

static int run_parser(struct lexer *lx, struct tdx_prog *out, struct tdx_perr *err)
{
    if (lex(lx) != 0) {
        free_tokens(lx->toks, lx->n);
        return -1;
    }
    struct parser ps = {.t = lx->toks, .n = lx->n, .i = 0, .err = err};
    int rc = 0;
    while (rc == 0 && peek(&ps)->kind != T_EOF) {
        if (peek(&ps)->kind == T_NEWLINE) {
            ps.i++;
            continue;
        }
        rc = statement(&ps, out);
    }
    free_tokens(lx->toks, lx->n);
    if (rc != 0) {
        tdx_prog_free(out);
        return -1;
    }
    return 0;
}

int tdx_parse(const char *src, int line0, struct tdx_prog *out, struct tdx_perr *err)
{
    memset(err, 0, sizeof *err);
    memset(out, 0, sizeof *out);
    struct lexer lx = {.p = src, .line = line0, .col = 1, .nindent = 1, .err = err};
    return run_parser(&lx, out, err);
}

/* One expression from an f-string field, positioned where it sits in the source. */
static struct tdx_node *parse_expr_text(const char *text, size_t n, int line, int col,
                                        struct tdx_perr *err)
{
    char *src = malloc(n + 3);
    if (src == NULL) {
        perr(err, line, col, "out of memory");
        return NULL;
    }
    /* Parenthesised, as Python does, so that newlines inside are fine. */
    src[0] = '(';
    memcpy(src + 1, text, n);
    src[n + 1] = ')';
    src[n + 2] = '\0';
    struct lexer lx = {.p = src, .line = line, .col = col - 1, .nindent = 1, .err = err};
    struct tdx_prog prog = {0};
    struct tdx_node *e = NULL;
    size_t k = 0;
    while (k < n && isspace((unsigned char)text[k])) {
        k++;
    }
    if (k == n) {
        perr(err, line, col, "f-string: empty expression not allowed");
    } else if (run_parser(&lx, &prog, err) == 0) {
        if (prog.n == 1 && prog.stmts[0]->kind == TDX_EXPR) {
            e = prog.stmts[0]->kids[0];
            prog.stmts[0]->nkids = 0;
        } else {
            perr(err, line, col, "f-string: expected an expression");
        }
        tdx_prog_free(&prog);
    }
    err->incomplete = false;
    free(src);
    return e;
}

/* ---- dumping, for tests ---- */

static const char *const OPNAME[] = {
    [TDX_OP_ADD] = "+",       [TDX_OP_SUB] = "-",    [TDX_OP_MUL] = "*",  [TDX_OP_DIV] = "/",
    [TDX_OP_FLOORDIV] = "//", [TDX_OP_MOD] = "%",    [TDX_OP_POW] = "**", [TDX_OP_MATMUL] = "@",
    [TDX_OP_LT] = "<",        [TDX_OP_LE] = "<=",    [TDX_OP_GT] = ">",   [TDX_OP_GE] = ">=",
    [TDX_OP_EQ] = "==",       [TDX_OP_NE] = "!=",    [TDX_OP_NEG] = "-",  [TDX_OP_POS] = "+",
    [TDX_OP_AND] = "&",       [TDX_OP_OR] = "|",     [TDX_OP_XOR] = "^",  [TDX_OP_LSHIFT] = "<<",
    [TDX_OP_RSHIFT] = ">>",   [TDX_OP_INVERT] = "~", [TDX_OP_STAR] = "*",
};

static void dump(struct td_strbuf *b, const struct tdx_node *n)
{
    if (n == NULL) {
        td_strbuf_printf(b, "_");
        return;
    }
    static const char *const head[] = {
        [TDX_FSTR] = "fstr", [TDX_FIELD] = "field",   [TDX_AND] = "and",
        [TDX_OR] = "or",     [TDX_NOT] = "not",       [TDX_CALL] = "call",
        [TDX_ATTR] = ".",    [TDX_INDEX] = "[]",      [TDX_SLICE] = "slice",
        [TDX_LIST] = "list", [TDX_TUPLE] = "tuple",   [TDX_KWARG] = "=",
        [TDX_EXPR] = "expr", [TDX_ASSIGN] = "assign", [TDX_AUGASSIGN] = "aug",
        [TDX_DEL] = "del",   [TDX_WITH] = "with",     [TDX_FOR] = "for",
        [TDX_PASS] = "pass", [TDX_IMPORT] = "import",
    };
    switch (n->kind) {
    case TDX_INT: td_strbuf_printf(b, "%lld", (long long)n->ival); return;
    case TDX_FLOAT: td_strbuf_printf(b, "%g", n->fval); return;
    case TDX_STR: td_strbuf_printf(b, "'%s'", n->str); return;
    case TDX_NAME: td_strbuf_printf(b, "%s", n->str); return;
    case TDX_TRUE: td_strbuf_printf(b, "True"); return;
    case TDX_FALSE: td_strbuf_printf(b, "False"); return;
    case TDX_NONE: td_strbuf_printf(b, "None"); return;
    case TDX_ELLIPSIS: td_strbuf_printf(b, "..."); return;
    case TDX_BINOP:
    case TDX_UNARY:
    case TDX_AUGASSIGN:
        td_strbuf_printf(b, "(%s%s", n->kind == TDX_AUGASSIGN ? "aug" : "", OPNAME[n->op]);
        break;
    default:
        td_strbuf_printf(b, "(%s",
                         n->kind == TDX_IMPORT && n->str != NULL ? "from" : head[n->kind]);
        break;
    }
    if (n->str != NULL) {
        td_strbuf_printf(b, " %s", n->str);
    }
    for (int i = 0; i < n->nkids; i++) {
        td_strbuf_printf(b, " ");
        dump(b, n->kids[i]);
    }
    td_strbuf_printf(b, ")");
}

char *tdx_node_dump(const struct tdx_node *n)
{
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    dump(&b, n);
    if (td_strbuf_failed(&b)) {
        td_strbuf_free(&b);
        return NULL;
    }
    return td_strbuf_take(&b, NULL);
}
