/* tests/base/test_siphash.c — SipHash against independent outputs.
**
** SipHash-2-4: the reference implementation's published vectors (key 00 01 .. 0f, message
** 00 01 .. of each length; vectors.h of github.com/veorq/SipHash), at the lengths that exercise
** every tail size and a whole block. SipHash-1-3, the maps' variant, is the same code with other
** round counts; its outputs are checked against CPython 3.11's, whose str/bytes hash is
** SipHash-1-3 and whose key is all zeros under PYTHONHASHSEED=0
** (`PYTHONHASHSEED=0 python3 -c 'print(hex(hash(bytes(range(n))) % 2**64))'`). The unrolled
** one-word form the maps use must agree with the general one for any key.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/siphash.h"

/* The reference output bytes (little-endian) as a number. */
static uint64_t le(const uint8_t b[8])
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) {
        x = x << 8 | b[i];
    }
    return x;
}

static void test_siphash24_reference_vectors(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint8_t out[8];
    } v[] = {
        {0, {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72}},
        {1, {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74}},
        {7, {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab}},
        {8, {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93}},
        {9, {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e}},
        {15, {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1}}, /* the paper's appendix A */
        {16, {0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f}},
        {63, {0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95}},
    };
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++) {
        key[i] = (uint8_t)i;
    }
    for (int i = 0; i < 64; i++) {
        msg[i] = (uint8_t)i;
    }
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(td_siphash(key, msg, v[i].len, 2, 4), le(v[i].out));
    }
}

static void test_siphash13_matches_cpython(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint64_t want;
    } v[] = {
        {1, 0x68a914128e01e473ULL}, /* b'\x00' */
        {7, 0x2f098ab0c751325aULL}, /* bytes(range(7)) */
        {8, 0xead411e67ebe2eeaULL},  {15, 0xf30eb725bb91c9eaULL},
        {16, 0x8972188433a5c5b7ULL}, {63, 0x385d3e39e5f37359ULL},
    };
    uint8_t key[16] = {0}, msg[64];
    for (int i = 0; i < 64; i++) {
        msg[i] = (uint8_t)i;
    }
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(td_siphash(key, msg, v[i].len, 1, 3), v[i].want);
    }
    assert_int_equal(td_siphash(key, "tensord", 7, 1, 3), 0x6c0e4eb8a7ac2ae9ULL); /* b'tensord' */
}

static void test_u64_form_matches_the_general_one(void **state)
{
    (void)state;
    uint8_t key[16];
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 16; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            key[i] = (uint8_t)(s >> 56);
        }
        td_siphash_key_set(key);
        for (int j = 0; j < 1000; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t x = j < 3 ? (uint64_t)j : s;
            uint8_t b[8];
            for (int k = 0; k < 8; k++) {
                b[k] = (uint8_t)(x >> (8 * k));
            }
            assert_int_equal(td_siphash13_u64(x), td_siphash(key, b, 8, 1, 3));
        }
    }
}

static void test_key_init_changes_the_hash(void **state)
{
    (void)state;
    uint8_t zero[16] = {0};
    td_siphash_key_set(zero);
    uint64_t before = td_siphash13_u64(42);
    assert_int_equal(td_siphash_key_init(), 0);
    uint64_t a = td_siphash13_u64(42);
    assert_int_equal(td_siphash_key_init(), 0);
    uint64_t b = td_siphash13_u64(42);
    /* 128 random bits: equal outputs would mean the key did not change (odds 2^-64 each). */
    assert_int_not_equal(a, before);
    assert_int_not_equal(a, b);
}

/* The maps' memo of recent hashes: whatever the order of words (repeats within and beyond its
** slots; a pool of 1,500 words, more than it has slots, so some share one; 0 and UINT64_MAX),
** and across key changes, it gives what td_siphash13_u64 gives under the key of the moment. */
static void test_recent_memo_matches_the_hash(void **state)
{
    (void)state;
    enum { POOL = 1500 };
    static uint64_t pool[POOL];
    uint64_t s = 7;
    for (int round = 0; round < 6; round++) {
        uint8_t key[16];
        for (int k = 0; k < 16; k++) {
            key[k] = (uint8_t)(round * 37 + k);
        }
        td_siphash_key_set(key);
        for (int i = 0; i < POOL; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            pool[i] = i == 0 ? 0 : i == 1 ? UINT64_MAX : i < 600 ? (uint64_t)i * 512 : s;
        }
        for (int j = 0; j < 20000; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t x = pool[(s >> 33) % (j % 2 == 0 ? 3 : POOL)]; /* hot words and cold ones */
            assert_int_equal(td_siphash13_u64_recent(x), td_siphash13_u64(x));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash24_reference_vectors),
        cmocka_unit_test(test_siphash13_matches_cpython),
        cmocka_unit_test(test_u64_form_matches_the_general_one),
        cmocka_unit_test(test_key_init_changes_the_hash),
        cmocka_unit_test(test_recent_memo_matches_the_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
