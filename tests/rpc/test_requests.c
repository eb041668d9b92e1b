/* tests/rpc/test_requests.c — server/rpc/requests.def against the protocol: every row names a
** oneof member of Request by its field name as protobuf-c's descriptor (generated from
** proto/tensord.proto) spells it, rows come in field order (the order of the Stats counters and
** of /metrics), every oneof member has a row, and td_rpc_kind_name gives the row's name. The
** idempotent column is checked against the list the Python client carried by hand before the
** table existed (what a resumed client may re-send). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

struct row {
    int wire_case;
    const char *name;
    const char *idempotent;
    const char *auth;
    int data;
    int may_inline;
};

static const struct row rows[] = {
#define REQ(id, name, inl, idempotent, auth, data, handler, cost, out)                             \
    {TENSORD__REQUEST__BODY_##id, #name, #idempotent, #auth, data, inl},
#include "rpc/requests.def"
#undef REQ
};
#define NROWS (sizeof rows / sizeof rows[0])

static const struct row *row_named(const char *name)
{
    for (size_t i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].name, name) == 0) {
            return &rows[i];
        }
    }
    return NULL;
}

static void test_rows_match_the_protocol(void **state)
{
    (void)state;
    assert_int_equal(NROWS, TD_RPC_KINDS);
    const ProtobufCMessageDescriptor *d = &tensord__request__descriptor;
    for (size_t i = 0; i < NROWS; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)rows[i].wire_case);
        assert_non_null(f);
        assert_true((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0);
        assert_string_equal(f->name, rows[i].name);
        assert_string_equal(td_rpc_kind_name((int)i), rows[i].name);
        if (i > 0) {
            assert_true(rows[i].wire_case > rows[i - 1].wire_case); /* field order */
        }
    }
    assert_null(td_rpc_kind_name(-1));
    assert_null(td_rpc_kind_name(TD_RPC_KINDS));
    /* Every member of the body oneof has a row. */
    size_t oneof = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        if ((d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
            oneof++;
            if (row_named(d->fields[i].name) == NULL) {
                fail_msg("Request.%s has no row in requests.def", d->fields[i].name);
            }
        }
    }
    assert_int_equal(oneof, NROWS);
}

/* The Python client's hand-written list before requests.def: create, full, rand, arange, get,
** free, ping, stats, format, grad, write, set_grad_enabled, close_session; run_op unless in
** place; nothing else (hello, manual_seed, backward, set_grad, save, load). */
static void test_idempotent_column(void **state)
{
    (void)state;
    static const char *const yes[] = {"create",        "full",      "rand",     "arange",
                                      "get",           "free",      "ping",     "stats",
                                      "format",        "grad",      "write",    "set_grad_enabled",
                                      "close_session", "node_info", "set_name", "get_name",
                                      "list_names"};
    static const char *const no[] = {"hello", "manual_seed", "backward",        "set_grad", "save",
                                     "load",  "optim_step",  "resume_backward", "del_name"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        assert_non_null(row_named(yes[i]));
        assert_string_equal(row_named(yes[i])->idempotent, "YES");
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        assert_non_null(row_named(no[i]));
        assert_string_equal(row_named(no[i])->idempotent, "NO");
    }
    assert_string_equal(row_named("run_op")->idempotent, "OUT_OF_PLACE");
    assert_int_equal(sizeof yes / sizeof yes[0] + sizeof no / sizeof no[0] + 1, NROWS);
}

/* What the switches said before the table: only Hello (and, since scale-out, NodeInfo) runs
** without a session; Ping and
** CloseSession succeed on a closed one; only Create and Write carry data; Save, Load and
** ResumeBackward never run on the loop (Backward did too, until it was costed by its graph:
** td_autograd_backward_work). */
static void test_auth_data_and_inline_columns(void **state)
{
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        const char *n = rows[i].name;
        const char *auth = strcmp(n, "hello") == 0 || strcmp(n, "node_info") == 0      ? "NONE"
                           : strcmp(n, "ping") == 0 || strcmp(n, "close_session") == 0 ? "ANY"
                                                                                       : "OPEN";
        assert_string_equal(rows[i].auth, auth);
        assert_int_equal(rows[i].data, strcmp(n, "create") == 0 || strcmp(n, "write") == 0);
        assert_int_equal(rows[i].may_inline, !(strcmp(n, "save") == 0 || strcmp(n, "load") == 0 ||
                                               strcmp(n, "resume_backward") == 0));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_match_the_protocol),
        cmocka_unit_test(test_idempotent_column),
        cmocka_unit_test(test_auth_data_and_inline_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
