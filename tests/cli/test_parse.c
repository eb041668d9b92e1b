/* tests/cli/test_parse.c — tensorctl's parser: precedence, calls, slicing, blocks, f-strings,
** and errors with their positions. No server. (The safetensors codec tensorctl uses is
** base's: tests/base/test_safetensors.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "parse.h"
#include "tensord.h"

/* Parses one statement and compares its dump with `want`. */
static void check(const char *src, const char *want)
{
    struct tdx_prog p;
    struct tdx_perr e;
    int rc = tdx_parse(src, 1, &p, &e);
    if (rc != 0) {
        fail_msg("%s: %d:%d: %s", src, e.line, e.col, e.msg);
    }
    assert_int_equal(p.n, 1);
    char *d = tdx_node_dump(p.stmts[0]);
    assert_non_null(d);
    if (strcmp(d, want) != 0) {
        fail_msg("%s\n got  %s\n want %s", src, d, want);
    }
    td_free(d);
    tdx_prog_free(&p);
}

/* Expects a parse error at line:col whose message contains `part`. */
static void check_error(const char *src, int line, int col, const char *part, bool incomplete)
{
    struct tdx_prog p;
    struct tdx_perr e;
    assert_int_equal(tdx_parse(src, 1, &p, &e), -1);
    assert_int_equal(p.n, 0);
    if (e.line != line || e.col != col || strstr(e.msg, part) == NULL) {
        fail_msg("%s: got %d:%d '%s', want %d:%d '%s'", src, e.line, e.col, e.msg, line, col, part);
    }
    assert_int_equal(e.incomplete, incomplete);
}

static void test_precedence(void **state)
{
    (void)state;
    check("1 + 2 * 3", "(expr (+ 1 (* 2 3)))");
    check("(1 + 2) * 3", "(expr (* (+ 1 2) 3))");
    check("a - b - c", "(expr (- (- a b) c))");
    check("-2 ** 2", "(expr (- (** 2 2)))"); /* ** binds tighter than unary - */
    check("2 ** -1", "(expr (** 2 (- 1)))");
    check("2 ** 3 ** 2", "(expr (** 2 (** 3 2)))"); /* right-associative */
    check("a @ b * c", "(expr (* (@ a b) c))");     /* @ and * share a level, left to right */
    check("a + b @ c", "(expr (+ a (@ b c)))");
    check("a // b % c / d", "(expr (/ (% (// a b) c) d))");
    /* Python's bitwise levels: | below ^ below & below << >> below + - */
    check("a | b ^ c & d", "(expr (| a (^ b (& c d))))");
    check("a & b << 1 + c", "(expr (& a (<< b (+ 1 c))))");
    check("a >> 1 << 2", "(expr (<< (>> a 1) 2))");
    check("x < 0 | y", "(expr (< x (| 0 y)))");
    check("~a ** 2 & -b", "(expr (& (~ (** a 2)) (- b)))");
    check("a < b + 1", "(expr (< a (+ b 1)))");
    check("a == b != c", "(expr (!= (== a b) c))");
    check("not a == b and c or d", "(expr (or (and (not (== a b)) c) d))");
    check("3*a**3 - b**2", "(expr (- (* 3 (** a 3)) (** b 2)))");
}

static void test_calls(void **state)
{
    (void)state;
    check("tensor([2.0], requires_grad=True)",
          "(expr (call tensor (list 2) (= requires_grad True)))");
    check("x.sum(dim=1, keepdim=True)", "(expr (call (. sum x) (= dim 1) (= keepdim True)))");
    check("Q.backward()", "(expr (call (. backward Q)))");
    check("a.grad.item()", "(expr (call (. item (. grad a))))");
    check("f(a, b,)", "(expr (call f a b))");
    check("rand((2, 3))", "(expr (call rand (tuple 2 3)))");
    check("print(\"x\", [a.shape, b.shape])",
          "(expr (call print 'x' (list (. shape a) (. shape b))))");
    check("x.T", "(expr (. T x))");
}

static void test_slicing(void **state)
{
    (void)state;
    check("x[0, 1:3]", "(expr ([] x 0 (slice 1 3 _)))");
    check("x[:, -1]", "(expr ([] x (slice _ _ _) (- 1)))");
    check("x[::2]", "(expr ([] x (slice _ _ 2)))");
    check("x[1:]", "(expr ([] x (slice 1 _ _)))");
    check("x[..., None]", "(expr ([] x ... None))");
    check("x[0] = 5", "(assign ([] x 0) 5)");
    check("x[i][j]", "(expr ([] ([] x i) j))");
}

static void test_statements(void **state)
{
    (void)state;
    check("shape = (2, 3)", "(assign shape (tuple 2 3))");
    check("shape = 2, 3", "(assign shape (tuple 2 3))");
    check("w -= lr * w.grad", "(aug- w (* lr (. grad w)))");
    check("del x, y", "(del x y)");
    check("x &= m", "(aug& x m)");
    check("x <<= 2; ", "(aug<< x 2)");
    check("x >>= 1", "(aug>> x 1)");
    check("x |= m ^ n", "(aug| x (^ m n))");
    /* unpacking: tuples and lists of targets, nested */
    check("a, b = b, a", "(assign (tuple a b) (tuple b a))");
    check("v, i = x.max(0)", "(assign (tuple v i) (call (. max x) 0))");
    check("(a, [b, c.d]), e[0] = f", "(assign (tuple (tuple a (list b (. d c))) ([] e 0)) f)");
    check("a, = f", "(assign (tuple a) f)");
    check("for i, (a, b) in x: pass", "(for (tuple i (tuple a b)) x (pass))");
    check("a, *b = x", "(assign (tuple a (* b)) x)");
    check("[*a, (b, *c)] = x", "(assign (list (* a) (tuple b (* c))) x)");
    /* imports: modules dotted, `as` binds another name (a KWARG node: bound name, module) */
    check("import torch", "(import torch)");
    check("import numpy as np, torch.nn", "(import (= np numpy) torch.nn)");
    check("from torch import tensor, zeros as z", "(from torch tensor (= z zeros))");
    check("with no_grad(): w -= 1", "(with (call no_grad) (aug- w 1))");
    check("with no_grad():\n    a -= 1\n    b -= 2\n",
          "(with (call no_grad) (aug- a 1) (aug- b 2))");
    check("for i in range(3):\n    print(i)\n", "(for i (call range 3) (expr (call print i)))");
    check("x = 1e-3  # a comment", "(assign x 0.001)");
    check("a.grad = None", "(assign (. grad a) None)");
    check("(1,)", "(expr (tuple 1))");
    check("()", "(expr (tuple))");
    check("'it''s'", "(expr 'its')");

    struct tdx_prog p;
    struct tdx_perr e;
    assert_int_equal(tdx_parse("a = 1; b = 2\n\n# c\nc = (1 +\n 2)\n", 1, &p, &e), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.stmts[2]->line, 4);
    tdx_prog_free(&p);
}

static void test_fstrings(void **state)
{
    (void)state;
    check("f\"Q value: {Q.item()}\"", "(expr (fstr 'Q value: ' (field (call (. item Q)))))");
    check("f'{x:.4f} {{}}'", "(expr (fstr (field .4f x) ' {}'))");
    check("f'{a[0]!r}'", "(expr (fstr (field ([] a 0))))");
    /* positions inside a field are the source's */
    check_error("f'ab {1 +}'", 1, 10, "expected an expression", false);
    check_error("f'{}'", 1, 4, "empty expression", false);
}

static void test_errors(void **state)
{
    (void)state;
    check_error("x = (1 + )", 1, 10, "expected an expression, found ')'", false);
    check_error("x = 1 +", 1, 8, "found end of line", false);
    check_error("y = (1,\n  2", 1, 5, "'(' was never closed", true);
    check_error("print(x]", 1, 8, "does not match", false);
    check_error("a = 1\nb = 2 3", 2, 7, "invalid syntax", false);
    check_error("  x = 1", 1, 3, "unexpected indent", false);
    check_error("f(a=1, 2)", 1, 8, "positional argument follows keyword argument", false);
    check_error("f(x) = 3", 1, 1, "cannot assign to function call", false);
    check_error("a, f(x) = 3, 4", 1, 4, "cannot assign to function call", false);
    check_error("a, b += 1", 1, 1, "'tuple' is an illegal expression for augmented", false);
    check_error("for a, f(x) in y: pass", 1, 9, "cannot assign to function call", false);
    check_error("a, *b, *c = x", 1, 1, "multiple starred expressions in assignment", false);
    check_error("*a = x", 1, 1, "starred assignment target must be in a list or tuple", false);
    check_error("x = 'abc", 1, 5, "unterminated string literal", false);
    check_error("with no_grad():\n", 2, 1, "expected an indented block", true);
    check_error("x = 3 $ 4", 1, 7, "invalid character", false);
    check_error("from torch import *", 1, 19, "'from torch import *' is not supported", false);
    check_error("import torch as", 1, 16, "expected a name", false);
    check_error("x = import", 1, 5, "expected an expression", false);
    check_error("for 1 in x: pass", 1, 5, "loop variable", false);
    check_error("x = 12abc", 1, 7, "invalid decimal literal", false);
    check_error("x = 99999999999999999999", 1, 5, "too large", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence), cmocka_unit_test(test_calls),
        cmocka_unit_test(test_slicing),    cmocka_unit_test(test_statements),
        cmocka_unit_test(test_fstrings),   cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
