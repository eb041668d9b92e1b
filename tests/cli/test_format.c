/* tests/cli/test_format.c — Python's format-spec mini-language and round(), from format.c.
** Each expected string is worked out by hand from the rules in Python's documentation ("Format
** Specification Mini-Language"); tests/python/test_cli.py also compares thousands of generated
** cases with Python's own format(). No server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "format.h"

static void check_int(int64_t v, const char *spec, const char *want)
{
    char *out = NULL, msg[200];
    if (tdx_format_int(v, false, spec, &out, msg, sizeof msg) != 0) {
        fail_msg("format(%lld, '%s'): %s", (long long)v, spec, msg);
    }
    if (strcmp(out, want) != 0) {
        fail_msg("format(%lld, '%s') = '%s', want '%s'", (long long)v, spec, out, want);
    }
    td_free(out);
}

static void check_float(double v, const char *spec, const char *want)
{
    char *out = NULL, msg[200];
    if (tdx_format_float(v, spec, &out, msg, sizeof msg) != 0) {
        fail_msg("format(%.17g, '%s'): %s", v, spec, msg);
    }
    if (strcmp(out, want) != 0) {
        fail_msg("format(%.17g, '%s') = '%s', want '%s'", v, spec, out, want);
    }
    td_free(out);
}

static void check_refused(int kind, double v, const char *spec, const char *want_msg)
{
    char *out = NULL, msg[200] = "";
    int rc = kind == 'i'   ? tdx_format_int((int64_t)v, false, spec, &out, msg, sizeof msg)
             : kind == 'f' ? tdx_format_float(v, spec, &out, msg, sizeof msg)
                           : tdx_format_str("ab", 2, spec, &out, msg, sizeof msg);
    if (rc == 0) {
        fail_msg("'%s' was accepted: '%s'", spec, out);
    }
    if (strcmp(msg, want_msg) != 0) {
        fail_msg("'%s': '%s', want '%s'", spec, msg, want_msg);
    }
}

/* The audit's cases: each printed other text than Python before. */
static void test_audit_cases(void **state)
{
    (void)state;
    check_int(12, "05d", "00012");     /* '0' before the width: zero padding */
    check_float(3.14159, ".2", "3.1"); /* no type + precision: 2 significant digits */
    check_int(1234567, ",", "1,234,567");
    check_int(1234567, "_", "1_234_567");
    check_int(255, "x", "ff");
    check_int(255, "#x", "0xff");
    check_int(5, "b", "101");
    check_int(8, "o", "10");
}

static void test_ints(void **state)
{
    (void)state;
    check_int(-42, "=+8", "-     42"); /* '=': padding between sign and digits */
    check_int(42, "+", "+42");
    check_int(42, " ", " 42");
    check_int(42, "*^7", "**42***"); /* '^': the odd pad goes right */
    check_int(42, "<5", "42   ");
    check_int(12, "<05", "12000");          /* '0' with an explicit align fills, aligned */
    check_int(-255, "#010x", "-0x00000ff"); /* zero padding after the prefix */
    check_int(255, "#X", "0XFF");
    check_int(0xabcdef12, "_x", "abcd_ef12"); /* '_' groups hex digits by four */
    check_int(1234, "08,", "0,001,234");      /* zero padding is grouped and may overshoot */
    check_int(1234, "09,", "0,001,234");
    check_int(1234, "010,", "00,001,234");
    check_int(65, "c", "A");
    check_int(65, "^5c", "  A  ");
    check_int(INT64_MIN, "d", "-9223372036854775808");
    check_int(INT64_MIN, "x", "-8000000000000000");
    check_int(7, "e", "7.000000e+00"); /* float types convert the int */
    check_int(3, "%", "300.000000%");
}

static void test_floats(void **state)
{
    (void)state;
    check_float(3.14159, ".2f", "3.14");
    check_float(0.125, ".2f", "0.12"); /* an exact tie goes to even */
    check_float(2.5, ".0f", "2");
    check_float(2.5, "#.0f", "2."); /* '#' keeps the point */
    check_float(-0.0001, ".2f", "-0.00");
    check_float(-0.0001, "z.2f", "0.00"); /* 'z': no negative zero */
    check_float(1234.5, "e", "1.234500e+03");
    check_float(1234.5, ".2E", "1.23E+03");
    check_float(1234.5, "g", "1234.5");
    check_float(1234567.0, "g", "1.23457e+06");
    check_float(0.0001, "g", "0.0001");
    check_float(0.00001, "g", "1e-05");
    check_float(1.0, "#g", "1.00000");
    check_float(10.0, ".2", "1e+01"); /* none: exponent from precision - 1 */
    check_float(1.0, ".3", "1.0");    /* none: at least one digit after the point */
    check_float(1.5, ".0", "2e+00");
    check_float(1e16, "", "1e+16"); /* none without precision: repr */
    check_float(1e16, "#", "1.e+16");
    check_float(0.5, "%", "50.000000%");
    check_float(0.5, "#.0%", "50.%");
    check_float(-1234.5, "=+10,.2f", "- 1,234.50");
    check_float(1234.0, "010,.1e", "0,001.2e+03");
    check_float(1.0 / 0.0, "010,", "0000000inf");
    check_float(-1.0 / 0.0, "F", "-INF");
    check_float(0.0 / 0.0, "+", "+nan"); /* a NaN has no sign of its own */
    check_float(1234567.0, "n", "1.23457e+06");
}

static void test_strings(void **state)
{
    (void)state;
    char *out = NULL, msg[200];
    assert_int_equal(tdx_format_str("ab", 2, ">4", &out, msg, sizeof msg), 0);
    assert_string_equal(out, "  ab");
    td_free(out);
    assert_int_equal(tdx_format_str("héllo", 6, "*^9.3", &out, msg, sizeof msg), 0);
    assert_string_equal(out, "***hél***"); /* width and precision count characters */
    td_free(out);
    assert_int_equal(tdx_format_str("ab", 2, "05", &out, msg, sizeof msg), 0);
    assert_string_equal(out, "ab000"); /* strings align left even with '0' */
    td_free(out);
}

/* Python's own messages, so a refusal reads as Python's would. */
static void test_refusals(void **state)
{
    (void)state;
    check_refused('i', 1, ".2d", "Precision not allowed in integer format specifier");
    check_refused('i', 1, ",x", "Cannot specify ',' with 'x'.");
    check_refused('i', 1, ",_", "Cannot specify both ',' and '_'.");
    check_refused('i', 1, "q", "Unknown format code 'q' for object of type 'int'");
    check_refused('i', 1, "+c", "Sign not allowed with integer format specifier 'c'");
    check_refused('i', 1, "5.", "Format specifier missing precision");
    check_refused('f', 1, "d", "Unknown format code 'd' for object of type 'float'");
    check_refused('f', 1, "10xx", "Invalid format specifier '10xx' for object of type 'float'");
    check_refused('s', 0, "+", "Sign not allowed in string format specifier");
    check_refused('s', 0, "=5", "'=' alignment not allowed in string format specifier");
    check_refused('s', 0, ",", "Cannot specify ',' with 's'.");
}

static void test_round(void **state)
{
    (void)state;
    /* 2.675 is stored as 2.67499999999999982236431605997495353221893310546875 */
    assert_true(tdx_round_float(2.675, 2) == 2.67);
    assert_true(tdx_round_float(0.125, 2) == 0.12); /* exact tie: even */
    assert_true(tdx_round_float(0.375, 2) == 0.38);
    assert_true(tdx_round_float(1234.5, -2) == 1200.0);
    assert_true(tdx_round_float(50.0, -2) == 0.0); /* tie between 0 and 100: even */
    assert_true(tdx_round_float(51.0, -2) == 100.0);
    assert_true(tdx_round_float(-0.001, 1) == 0.0 && tdx_round_float(-0.001, 1) < 1);
    int64_t r;
    assert_int_equal(tdx_round_int(1250, -2, &r), 0);
    assert_int_equal(r, 1200);
    assert_int_equal(tdx_round_int(-1350, -2, &r), 0);
    assert_int_equal(r, -1400);
    assert_int_equal(tdx_round_int(INT64_MAX, -1, &r), -1); /* 9223372036854775810 */
}

static void test_repr(void **state)
{
    (void)state;
    char b[64];
    tdx_float_repr(0.1 + 0.2, b, sizeof b);
    assert_string_equal(b, "0.30000000000000004");
    tdx_float_repr(1e16, b, sizeof b);
    assert_string_equal(b, "1e+16");
    tdx_float_repr(1e15, b, sizeof b);
    assert_string_equal(b, "1000000000000000.0");
    tdx_float_repr(0.0001, b, sizeof b);
    assert_string_equal(b, "0.0001");
    tdx_float_repr(-0.0, b, sizeof b);
    assert_string_equal(b, "-0.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_cases), cmocka_unit_test(test_ints),
        cmocka_unit_test(test_floats),      cmocka_unit_test(test_strings),
        cmocka_unit_test(test_refusals),    cmocka_unit_test(test_round),
        cmocka_unit_test(test_repr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
