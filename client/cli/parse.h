/* parse.h — tensorctl's language: tokens, the syntax tree and the parser.
**
** The language is the part of Python that PyTorch users type at a prompt: assignments (with
** unpacking: `a, b = b, a`) and augmented assignments, Python's operator precedence, calls with
** keyword arguments, methods, attributes, indexing and slicing, list and tuple literals,
** numbers, strings and f-strings, `del`, `import`, `with ...:` and `for NAME in ...:` blocks (on
** one line or indented), `#` comments. The parser knows nothing of tensors or servers: it turns
** text into trees, or into an error with a line and column.
*/
#ifndef TENSORCTL_PARSE_H
#define TENSORCTL_PARSE_H

#include <stdbool.h>
#include <stdint.h>

enum tdx_kind {
    /* expressions */
    TDX_INT,
    TDX_FLOAT,
    TDX_STR,
    TDX_FSTR,
    TDX_FIELD,
    TDX_NAME,
    TDX_TRUE,
    TDX_FALSE,
    TDX_NONE,
    TDX_ELLIPSIS,
    TDX_BINOP,
    TDX_UNARY,
    TDX_AND,
    TDX_OR,
    TDX_NOT,
    TDX_CALL,
    TDX_ATTR,
    TDX_INDEX,
    TDX_SLICE,
    TDX_LIST,
    TDX_TUPLE,
    TDX_KWARG,
    /* statements */
    TDX_EXPR,
    TDX_ASSIGN,
    TDX_AUGASSIGN,
    TDX_DEL,
    TDX_WITH,
    TDX_FOR,
    TDX_PASS,
    TDX_IMPORT,
};

/* Operators, for TDX_BINOP, TDX_UNARY and TDX_AUGASSIGN (`op`). */
enum tdx_op {
    TDX_OP_ADD = 1,
    TDX_OP_SUB,
    TDX_OP_MUL,
    TDX_OP_DIV,
    TDX_OP_FLOORDIV,
    TDX_OP_MOD,
    TDX_OP_POW,
    TDX_OP_MATMUL,
    TDX_OP_LT,
    TDX_OP_LE,
    TDX_OP_GT,
    TDX_OP_GE,
    TDX_OP_EQ,
    TDX_OP_NE,
    TDX_OP_NEG,
    TDX_OP_POS,
    TDX_OP_AND,    /* & */
    TDX_OP_OR,     /* | */
    TDX_OP_XOR,    /* ^ */
    TDX_OP_LSHIFT, /* << */
    TDX_OP_RSHIFT, /* >> */
    TDX_OP_INVERT, /* unary ~ */
    TDX_OP_STAR,   /* *x in a tuple or list: a starred target (`a, *rest = x`) */
};

/* One node. Children by kind:
**   BINOP/UNARY: kids = operands;  CALL: kids[0] the callee, then arguments (TDX_KWARG nodes,
**   name in `str`, for keywords);  ATTR: kids[0], name in `str`;  INDEX: kids[0], then one
**   subscript each;  SLICE: kids[0..2] = start, stop, step, each may be NULL;  LIST/TUPLE:
**   elements;  FSTR: TDX_STR and TDX_FIELD parts (FIELD: kids[0] the expression, `str` the
**   format spec or NULL, `op` 'r' for !r);  EXPR: kids[0];  ASSIGN/AUGASSIGN: target, value
**   (an ASSIGN's target may be a TUPLE or LIST of targets: `a, b = b, a` unpacks);
**   DEL: targets;  WITH: kids[0] the context, then the body;  FOR: `str` the variable, kids[0]
**   the iterable, then the body (`op` 1, `for a, b in ...`: kids[0] the targets' TUPLE, kids[1]
**   the iterable, then the body);  IMPORT: `str` NULL for `import a.b, c as d`, the module for
**   `from m import x, y as z`; kids: a NAME (the dotted module, or the name imported) or, with
**   `as`, a KWARG whose `str` is the bound name and kids[0] that NAME. */
struct tdx_node {
    enum tdx_kind kind;
    int line, col; /* 1-based, where the construct starts (an operator's position
                                ** for BINOP, the '(' for CALL, the '[' for INDEX, '.' for ATTR) */
    int op;        /* enum tdx_op */
    int64_t ival;
    double fval;
    char *str;              /* owned */
    struct tdx_node **kids; /* owned, nkids of them */
    int nkids;
};

struct tdx_prog {
    struct tdx_node **stmts; /* owned */
    int n;
};

struct tdx_perr {
    int line, col;
    bool incomplete; /* the text ended inside a bracket, a string or a block header */
    char msg[200];
};

/* Parses `src` (NUL-terminated) into *out. Returns 0, or -1 with *err filled; *out is then
** empty. `line0` is the line number of src's first line (1 for a file). */
int tdx_parse(const char *src, int line0, struct tdx_prog *out, struct tdx_perr *err);

void tdx_prog_free(struct tdx_prog *p);
void tdx_node_free(struct tdx_node *n);

/* A node tree as an S-expression, for tests: "(+ 1 (* 2 3))". Returns a string to free with
** td_free (base/alloc.h), or NULL when out of memory. */
char *tdx_node_dump(const struct tdx_node *n);

/* Whether s is a Python keyword (not a name a variable can have). */
bool tdx_is_keyword(const char *s);

#endif
