/* SHA-256 against the test vectors of FIPS 180-4's examples (NIST CSRC) and the
** one-million-'a' vector, and across the padding boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/sha256.h"

static void check(const char *msg, size_t len, const char *want)
{
    char got[65];
    td_sha256_hex(msg, len, got);
    assert_string_equal(got, want);
}

static void test_known_vectors(void **state)
{
    (void)state;
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    check(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* Lengths 55, 56, 63, 64 (and 119, 120 a block later) straddle where the length field moves to
** a second block: their digests are Python hashlib's; every length up to 130 must differ from
** its neighbours, and the hex form must agree with the bytes. */
static void test_padding_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *hex;
    } known[] = {
        {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
        {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
        {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
        {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
        {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
        {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"},
    };
    char buf[130];
    memset(buf, 'x', sizeof buf);
    uint8_t prev[TD_SHA256_BYTES] = {0};
    for (size_t len = 0; len <= sizeof buf; len++) {
        uint8_t d[TD_SHA256_BYTES];
        char hex[65], want[65];
        td_sha256(buf, len, d);
        td_sha256_hex(buf, len, hex);
        for (int i = 0; i < TD_SHA256_BYTES; i++) {
            snprintf(want + 2 * i, 3, "%02x", d[i]);
        }
        assert_string_equal(hex, want);
        assert_memory_not_equal(d, prev, sizeof d);
        memcpy(prev, d, sizeof d);
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        check(buf, known[i].len, known[i].hex);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_padding_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
