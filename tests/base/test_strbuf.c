/* tests/base/test_strbuf.c — the growable string buffer: contents against hand-written
** expectations, growth past the first allocation, sticky failure at the limit, take/reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/strbuf.h"

static void appends_and_printf(void **state)
{
    (void)state;
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    assert_string_equal(td_strbuf_str(&b), "");
    assert_int_equal(td_strbuf_puts(&b, "tensor("), 0);
    assert_int_equal(td_strbuf_printf(&b, "%d.%02d", 3, 5), 0);
    assert_int_equal(td_strbuf_putc(&b, ')'), 0);
    assert_int_equal(td_strbuf_repeat(&b, ' ', 2), 0);
    assert_string_equal(td_strbuf_str(&b), "tensor(3.05)  ");
    assert_int_equal(b.len, 14);
    td_strbuf_free(&b);
}

static void grows_past_first_allocation(void **state)
{
    (void)state;
    struct td_strbuf b;
    td_strbuf_init(&b, 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(td_strbuf_printf(&b, "%03d,", i % 1000), 0);
    }
    assert_int_equal(b.len, 4000);
    assert_memory_equal(b.p + 3996, "999,", 4);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(td_strbuf_printf(&b, "%s", big), 0); /* longer than printf's small buffer */
    assert_int_equal(b.len, 4999);
    assert_int_equal(b.p[4999], '\0');
    size_t len = 0;
    char *s = td_strbuf_take(&b, &len);
    assert_int_equal(len, 4999);
    assert_int_equal(b.len, 0);
    assert_null(b.p);
    td_free(s);
}

static void limit_fails_sticky(void **state)
{
    (void)state;
    struct td_strbuf b;
    td_strbuf_init(&b, 8);
    assert_int_equal(td_strbuf_puts(&b, "12345678"), 0); /* exactly the limit */
    assert_false(td_strbuf_failed(&b));
    assert_int_equal(td_strbuf_putc(&b, '9'), -1);
    assert_true(td_strbuf_failed(&b));
    assert_true(b.over);
    assert_int_equal(td_strbuf_puts(&b, ""), -1); /* sticky, even for nothing */
    assert_string_equal(td_strbuf_str(&b), "12345678");
    td_strbuf_reset(&b);
    assert_false(td_strbuf_failed(&b));
    assert_int_equal(td_strbuf_puts(&b, "ab"), 0);
    assert_string_equal(td_strbuf_str(&b), "ab");
    assert_int_equal(td_strbuf_reserve(&b, SIZE_MAX), -1); /* would wrap: refused, not wrapped */
    assert_true(td_strbuf_failed(&b));
    td_strbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_and_printf),
        cmocka_unit_test(grows_past_first_allocation),
        cmocka_unit_test(limit_fails_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
