/* tests/cli/test_fuzz_regress.c — one named test per bug the fuzzers found in tensorctl's code
** (client/cli). The input that first showed each one is kept in tests/fuzz/regress/<target>/
** and replayed by `make test-fuzz-regress`; these tests say what the correct behaviour is, and
** under `make check-asan` they fail the way the bug did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "safetensors.h"

/* fuzz_safetensors, regress/safetensors/cli-no-tensors: a header naming no tensors ("{}", or
** only __metadata__) sorted its empty tensor list with memcpy(sorted, NULL, 0), undefined
** behaviour that UBSan reports. An empty file is valid: no tensors, an empty buffer. */
static void test_st_header_no_tensors(void **state)
{
    (void)state;
    static const char *const ok[] = {"{}", " { } ", "{\"__metadata__\":{\"format\":\"pt\"}}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct st_file f;
        char msg[200];
        assert_int_equal(st_parse_header(ok[i], strlen(ok[i]), 0, &f, msg, sizeof msg), 0);
        assert_int_equal(f.n, 0);
        st_file_free(&f);
        /* the same header with bytes no tensor covers is refused */
        assert_int_equal(st_parse_header(ok[i], strlen(ok[i]), 4, &f, msg, sizeof msg), -1);
        assert_non_null(strstr(msg, "cover"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_header_no_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
