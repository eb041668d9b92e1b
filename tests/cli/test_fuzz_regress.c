/* tests/cli/test_fuzz_regress.c — one named test per bug the fuzzers found in tensorctl's code
** (client/cli). The input that first showed each one is kept in tests/fuzz/regress/<target>/
** and replayed by `make test-fuzz-regress`; these tests say what the correct behaviour is, and
** under `make check-asan` they fail the way the bug did. (tensorctl's own safetensors reader
** is gone: its regression, cli-no-tensors, is tests/base/test_safetensors.c's now.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "parse.h"

/* Parses src expecting an error whose message contains `part`, at column col of line 1. */
static void expect_parse_error(const char *src, int col, const char *part)
{
    struct tdx_prog p;
    struct tdx_perr e;
    assert_int_equal(tdx_parse(src, 1, &p, &e), -1);
    if (e.line != 1 || e.col != col || strstr(e.msg, part) == NULL) {
        fail_msg("%.40s...: got %d:%d '%s', want 1:%d '%s'", src, e.line, e.col, e.msg, col, part);
    }
}

/* Parses src expecting one expression statement whose dump is `want`. */
static void expect_parse(const char *src, const char *want)
{
    struct tdx_prog p;
    struct tdx_perr e;
    if (tdx_parse(src, 1, &p, &e) != 0) {
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

/* fuzz_cli_parse, regress/cli_parse/long-literal-exponent: a numeric literal filling the
** lexer's 128-byte buffer with an exponent ("1E-3") at its end wrote the terminator one past
** the buffer (UBSan: index 128 out of bounds); a literal longer than the buffer was silently
** cut into two numbers. Now a too-long literal is an error, a second exponent is an invalid
** literal (as in Python), and exponents still parse at every length that fits. */
static void test_long_numeric_literal(void **state)
{
    (void)state;
    char src[300];
    memset(src, '8', sizeof src);
    memcpy(src, "x ", 2);
    memcpy(src + 200, "1E-3 comment", 13);
    expect_parse_error(src, 3, "numeric literal too long");
    for (size_t digits = 120; digits <= 126; digits++) { /* around the buffer's end (127) */
        char lit[200];
        memset(lit, '0', digits);
        memcpy(lit + digits, "1e-3", 5);
        if (digits + 4 <= 127) {
            expect_parse(lit, "(expr 0.001)");
        } else {
            expect_parse_error(lit, 1, "numeric literal too long");
        }
    }
    expect_parse_error("x = 1e5e5", 8, "invalid decimal literal");
    expect_parse("2.5e+2", "(expr 250)");
    expect_parse("1_000.5", "(expr 1000.5)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_numeric_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
