/* tests/base/test_node.c — node ids, host:port addresses and session tokens' form (base/node.c):
** each rule of the DNS label and of the token checked against hand-written cases, and the
** token a node writes read back by the splitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/node.h"

static bool id_ok(const char *s)
{
    return td_node_id_valid(s, strlen(s));
}

static void node_ids(void **state)
{
    (void)state;
    const char *good[] = {"n0",
                          "a",
                          "tensord-0",
                          "0",
                          "9-z",
                          "abcdefghijklmnopqrstuvwxyz0123456789"
                          "-abcdefghijklmnopqrstuvwxyz"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(id_ok(good[i]));
    }
    assert_int_equal(strlen(good[5]), 63);
    const char *bad[] = {"",
                         "-n0",
                         "n0-",
                         "N0",
                         "n_0",
                         "n.0",
                         "n 0",
                         "né",
                         "n0\n",
                         "a:b",
                         "tensord-0.svc",
                         "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxyz012"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(id_ok(bad[i]));
    }
    assert_false(td_node_id_valid("n0\0x", 4));  /* a NUL inside is not a label byte */
    assert_true(td_node_id_valid("n0-rest", 2)); /* the length given is what is read */
}

static void host_ports(void **state)
{
    (void)state;
    char host[256];
    uint16_t port = 0;
    assert_true(td_hostport_parse("127.0.0.1:7878", false, host, sizeof host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7878);
    assert_true(td_hostport_parse("[::1]:1", false, host, sizeof host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_true(td_hostport_parse("tensord-0.tensord-headless.default.svc:65535", false, host,
                                  sizeof host, &port));
    assert_int_equal(port, 65535);
    assert_true(td_hostport_parse("localhost:0", true, NULL, 0, NULL));
    const char *bad[] = {"localhost:0",  "localhost",   ":7878",    "host:",        "host:65536",
                         "host:-1",      "host:12a",    "1.2.3:80", "1.2.3.4.5:80", "[::1]7878",
                         "::1:7878",     "-host:80",    "host-:80", "a..b:80",      "a_b:80",
                         "[1.2.3.4]:80", "host:123456", "hö.st:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(td_hostport_parse(bad[i], false, NULL, 0, NULL));
    }
    char longname[300];
    memset(longname, 'a', 64);
    strcpy(longname + 64, ".x:80"); /* a label of 64 */
    assert_false(td_hostport_parse(longname, false, NULL, 0, NULL));
    assert_false(td_hostport_parse("abc:80", false, host, 3, NULL)); /* no room for the host */
}

static void tokens(void **state)
{
    (void)state;
    const uint8_t secret[TD_SECRET_BYTES] = {0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
                                             0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32};
    uint8_t tok[TD_NODE_TOKEN_MAX];
    size_t n = td_token_format("tensord-2", secret, tok);
    const char want[] = "tensord-2.000123456789abcdeffedcba98765432"; /* hand-written */
    assert_int_equal(n, strlen(want));
    assert_memory_equal(tok, want, n);
    char node[TD_NODE_ID_MAX + 1];
    assert_int_equal(td_token_split(tok, n, node), TD_TOKEN_NODE);
    assert_string_equal(node, "tensord-2");
    /* The longest: a 63-byte id. */
    char id63[64];
    memset(id63, 'z', 63);
    id63[63] = '\0';
    assert_int_equal(td_token_format(id63, secret, tok), TD_NODE_TOKEN_MAX);
    assert_int_equal(td_token_split(tok, TD_NODE_TOKEN_MAX, node), TD_TOKEN_NODE);
    assert_string_equal(node, id63);
    /* 16 raw bytes: from before scale-out. */
    assert_int_equal(td_token_split(secret, 16, node), TD_TOKEN_LEGACY);
    assert_string_equal(node, "");
    struct {
        const char *tok;
        const char *node; /* what the splitter names */
    } bad[] = {
        {"", ""},
        {"n0", ""},
        {"n0.", "n0"},
        {".000123456789abcdeffedcba98765432", ""},
        {"n0.000123456789abcdeffedcba9876543", "n0"},   /* 31 digits */
        {"n0.000123456789abcdeffedcba987654321", "n0"}, /* 33 */
        {"n0.000123456789ABCDEFfedcba98765432", "n0"},  /* upper case */
        {"n0.000123456789abcdeffedcba9876543g", "n0"},
        {"N0.000123456789abcdeffedcba98765432", ""},
        {"n0.x.0123456789abcdeffedcba98765432", "n0"},
        {"-n.000123456789abcdeffedcba98765432", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(td_token_split((const uint8_t *)bad[i].tok, strlen(bad[i].tok), node),
                         TD_TOKEN_BAD);
        assert_string_equal(node, bad[i].node);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_ids),
        cmocka_unit_test(host_ports),
        cmocka_unit_test(tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
