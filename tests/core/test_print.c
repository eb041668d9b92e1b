/* tests/core/test_print.c — tensord prints what torch prints.
**
** print_cases.h holds tensors and torch's repr() of each, recorded by gen_print_cases.py from
** torch itself ("torch." replaced by "tensord." in dtype suffixes, as our specification says).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "core/print.h"
#include "core/tensor.h"
#include "helpers.h"

struct print_case {
    const char *name;
    enum td_dtype dt;
    int ndim;
    int64_t shape[8];
    const double *values;
    const char *torch_repr;
};

#include "print_cases.h"


/* torch's text with "torch." turned into "tensord." */
static void expected_text(const char *torch_text, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = torch_text; *p != '\0' && k + 8 < cap;) {
        if (strncmp(p, "torch.", 6) == 0) {
            memcpy(out + k, "tensord.", 8);
            k += 8;
            p += 6;
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = '\0';
}

static void test_matches_torch(void **state)
{
    (void)state;
    struct td_print_opts o;
    td_print_opts_default(&o);
    int failures = 0;
    for (size_t i = 0; i < sizeof print_cases / sizeof print_cases[0]; i++) {
        const struct print_case *c = &print_cases[i];
        struct td_tensor *t = mk(c->dt, c->shape, c->ndim, c->values);
        char *text = NULL;
        struct td_err err;
        assert_int_equal(td_tensor_repr(t, &o, &text, &err), 0);
        static char want[1 << 16];
        expected_text(c->torch_repr, want, sizeof want);
        if (strcmp(text, want) != 0) {
            print_error("case %s:\n--- torch\n%s\n--- tensord\n%s\n", c->name, want, text);
            failures++;
        }
        td_free(text);
        td_tensor_unref(t);
    }
    assert_int_equal(failures, 0);
}

/* A transposed view prints its logical order: torch.tensor([[1, 2], [3, 4]]).t() */
static void test_strided_view(void **state)
{
    (void)state;
    const int64_t shape[] = {2, 2};
    const double v[] = {1, 2, 3, 4};
    struct td_tensor *t = mk(TD_DTYPE_I64, shape, 2, v);
    int64_t s0 = t->strides[0];
    t->strides[0] = t->strides[1];
    t->strides[1] = s0;
    struct td_print_opts o;
    td_print_opts_default(&o);
    char *text;
    assert_int_equal(td_tensor_repr(t, &o, &text, NULL), 0);
    assert_string_equal(text, "tensor([[1, 3],\n        [2, 4]])");
    td_free(text);
    td_tensor_unref(t);
}

/* torch.tensor([2.0], requires_grad=True) and a grad_fn suffix (torch 1.13's text). */
static void test_autograd_suffixes(void **state)
{
    (void)state;
    const int64_t shape[] = {1};
    const double v[] = {2.0};
    struct td_tensor *t = mk(TD_DTYPE_F32, shape, 1, v);
    struct td_print_opts o;
    td_print_opts_default(&o);
    o.requires_grad = true;
    char *text;
    assert_int_equal(td_tensor_repr(t, &o, &text, NULL), 0);
    assert_string_equal(text, "tensor([2.], requires_grad=True)");
    td_free(text);
    o.grad_fn = "MulBackward0";
    assert_int_equal(td_tensor_repr(t, &o, &text, NULL), 0);
    assert_string_equal(text, "tensor([2.], grad_fn=<MulBackward0>)");
    td_free(text);
    td_tensor_unref(t);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    const int64_t shape[] = {3};
    const double v[] = {1, 2, 3};
    struct td_tensor *t = mk(TD_DTYPE_I64, shape, 1, v);
    struct td_print_opts o;
    td_print_opts_default(&o);
    int64_t base = td_alloc_live_bytes();
    char *text = NULL;
    struct td_err err;
    td_alloc_fail_at(1);
    assert_int_equal(td_tensor_repr(t, &o, &text, &err), TD_ENOMEM);
    td_alloc_fail_at(0);
    assert_int_equal(td_alloc_live_bytes(), base);
    td_tensor_unref(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_torch),
        cmocka_unit_test(test_strided_view),
        cmocka_unit_test(test_autograd_suffixes),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
