/* tests/build/test_mirrors.c — numbers kept in two places agree, and this build checks its
** invariants.
**
** The compile-time ties (client/c/tensord.c, server/rpc/wire_check.c) cover every number both
** sides name; what a compiler cannot see is a value the proto gains that the other side lacks,
** because protobuf-c gives an enum's size only in its descriptor. So: tensord.proto's Op enum is
** OP_UNSPECIFIED plus one value per row of core/ops.def (with gaps); its StatusCode enum
** ends at TENSORD_CANCELLED, tensord.h's last server code, below the local codes (100 up); its
** DType enum ends at TENSORD_BOOL. And TD_ASSERT (base/assert.h) is live in the tests' build.
*/
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/assert.h"
#include "core/ops.h"
#include "proto/tensord.pb-c.h"
#include "tensord.h"

/* Every value of `d` lies in 0..max, and there are max + 1 of them (so each appears once). */
static void check_dense(const ProtobufCEnumDescriptor *d, int max)
{
    for (unsigned i = 0; i < d->n_values; i++) {
        assert_in_range(d->values[i].value, 0, max);
    }
    assert_int_equal(d->n_values, (unsigned)max + 1);
}

/* Op values come in one range per family (issue 16), so they have gaps: one value per row of
** ops.def plus OP_UNSPECIFIED, each in 0..255 (server/rpc/wire_check.c's bound). */
static void wire_ops_are_the_op_table(void **state)
{
    const ProtobufCEnumDescriptor *d = &tensord__op__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        assert_in_range(d->values[i].value, 0, 255);
    }
    assert_int_equal(d->n_values, (unsigned)TD_OP_COUNT + 1);
}

static void wire_status_codes_are_the_clients(void **state)
{
    check_dense(&tensord__status_code__descriptor, TENSORD_UNKNOWN_NODE);
    assert_true(TENSORD_UNKNOWN_NODE < TENSORD_E_CONNECT);
}

static void wire_dtypes_are_the_clients(void **state)
{
    check_dense(&tensord__dtype__descriptor, TENSORD_BOOL);
}

static void td_assert_aborts_in_test_builds(void **state)
{
#if !defined(TD_DEBUG) || defined(NDEBUG)
    fail_msg("the tests must be built with the debug checks on (TD_DEBUG, no NDEBUG)");
#endif
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(STDERR_FILENO); /* the assertion's message is expected */
        volatile int refs = 0;
        TD_ASSERT(refs > 0);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wire_ops_are_the_op_table),
        cmocka_unit_test(wire_status_codes_are_the_clients),
        cmocka_unit_test(wire_dtypes_are_the_clients),
        cmocka_unit_test(td_assert_aborts_in_test_builds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
