/* The safetensors header: what the builder writes parses back to the same entries and metadata,
** and hostile headers are refused with a message, never crash or leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/safetensors.h"

static void test_round_trip(void **state)
{
    (void)state;
    struct td_st_entry e[3] = {
        {.name = "w", .dtype = TD_ST_F32, .ndim = 2, .shape = {2, 3}, .begin = 0, .end = 24},
        {.name = "say \"hi\"\\", .dtype = TD_ST_I64, .ndim = 0, .begin = 24, .end = 32},
        {.name = "empty", .dtype = TD_ST_BOOL, .ndim = 1, .shape = {0}, .begin = 32, .end = 32},
    };
    const char *keys[] = {"format", "requires_grad"};
    const char *vals[] = {"pt", "w\nline two\t"};
    uint8_t *hdr;
    size_t len;
    struct td_err err;
    assert_int_equal(td_st_header_build(e, 3, keys, vals, 2, &hdr, &len, &err), 0);
    assert_int_equal(len % 8, 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = n << 8 | hdr[i];
    }
    assert_int_equal(n, len - 8);
    struct td_st_header h;
    assert_int_equal(td_st_header_parse((const char *)hdr + 8, n, 32, &h, &err), 0);
    assert_int_equal(h.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(h.e[i].name, e[i].name);
        assert_int_equal(h.e[i].dtype, e[i].dtype);
        assert_int_equal(h.e[i].ndim, e[i].ndim);
        assert_memory_equal(h.e[i].shape, e[i].shape, sizeof e[i].shape[0] * (size_t)e[i].ndim);
        assert_int_equal(h.e[i].begin, e[i].begin);
        assert_int_equal(h.e[i].end, e[i].end);
    }
    assert_string_equal(td_st_meta(&h, "format"), "pt");
    assert_string_equal(td_st_meta(&h, "requires_grad"), "w\nline two\t");
    assert_null(td_st_meta(&h, "nope"));
    td_st_header_free(&h);
    td_free(hdr);
}

/* An empty tensor shares its offset with the tensor after it; whichever way the names and the
** listing order fall (a snapshot lists a keyed hash table's order), the file has no hole. */
static void test_empty_tensor_tied_offsets_in_any_order(void **state)
{
    (void)state;
    const char *orders[] = {
        "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
        "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
    };
    const uint64_t data_len[] = {8, 8, 12};
    for (int i = 0; i < 3; i++) {
        struct td_st_header h;
        struct td_err err;
        int rc = td_st_header_parse(orders[i], strlen(orders[i]), data_len[i], &h, &err);
        if (rc != 0) {
            fail_msg("order %d refused: %s", i, err.msg);
        }
        td_st_header_free(&h);
    }
}

static void refused(const char *json, uint64_t data_len, const char *want)
{
    struct td_st_header h;
    struct td_err err;
    assert_int_not_equal(td_st_header_parse(json, strlen(json), data_len, &h, &err), 0);
    if (strstr(err.msg, want) == NULL) {
        fail_msg("'%s': message '%s' lacks '%s'", json, err.msg, want);
    }
}

static void test_hostile_headers(void **state)
{
    (void)state;
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    struct td_st_header h;
    struct td_err err;
    assert_int_equal(td_st_header_parse(ok, strlen(ok), 8, &h, &err), 0);
    td_st_header_free(&h);
    refused("", 0, "expected '{'");
    refused("{", 0, "expected '\"'");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "expected");
    refused("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
            "unsupported safetensors dtype 'F16'");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
            "data_offsets [0, 4] do not hold its 8 bytes (its shape and dtype need 8 bytes)");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
            "too many entries");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
            "\"data_offsets\":[0,4]}}",
            4, "shape overflows");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
            4, "number too large");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
            "non-negative integer");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, "appears twice");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
            8, "overlap");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
            "cover 4 bytes of a 12-byte buffer");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "lacks");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
            "unknown key");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "bytes after");
    refused("{\"a\\q\":{}}", 0, "bad escape");
    refused("{\"a\\u12\":{}}", 0, "escape");
    refused("{\"\":{}}", 0, "empty name");
    refused("{\"__metadata__\":{\"k\":\"v\"},\"__metadata__\":{}}", 0, "twice");
    refused("{\"__metadata__\":{\"k\":1}}", 0, "expected '\"'");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "[begin, end]");
    refused("[1]", 0, "expected '{'");
}

/* fuzz_safetensors, regress/safetensors/cli-no-tensors (found in tensorctl's own reader, which
** this codec replaced): a header naming no tensors ("{}", or only __metadata__) is a valid,
** empty file; the same header with bytes no tensor covers is refused. */
static void test_header_no_tensors(void **state)
{
    (void)state;
    static const char *const ok[] = {"{}", " { } ", "{\"__metadata__\":{\"format\":\"pt\"}}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct td_st_header h;
        struct td_err err;
        assert_int_equal(td_st_header_parse(ok[i], strlen(ok[i]), 0, &h, &err), 0);
        assert_int_equal(h.n, 0);
        td_st_header_free(&h);
        refused(ok[i], 4, "cover 0 bytes of a 4-byte buffer");
    }
}

/* A whole file in memory (what tensorctl's :load reads): the length prefix must fit the file,
** and the buffer starts right after the header. */
static void test_file_parse(void **state)
{
    (void)state;
    const char *json = "{\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t jl = strlen(json);
    uint8_t file[128] = {0};
    file[0] = (uint8_t)jl;
    memcpy(file + 8, json, jl);
    int32_t v[2] = {7, -3};
    memcpy(file + 8 + jl, v, sizeof v);
    struct td_st_header h;
    struct td_err err;
    size_t off = 0;
    assert_int_equal(td_st_file_parse(file, 8 + jl + 8, &h, &off, &err), 0);
    assert_int_equal(off, 8 + jl);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.e[0].dtype, TD_ST_I32);
    int32_t got[2];
    memcpy(got, file + off + h.e[0].begin, sizeof got);
    assert_int_equal(got[0], 7);
    assert_int_equal(got[1], -3);
    td_st_header_free(&h);
    /* one byte short of the data: the tensor no longer fits */
    assert_int_not_equal(td_st_file_parse(file, 8 + jl + 7, &h, &off, &err), 0);
    assert_non_null(strstr(err.msg, "cover 8 bytes of a 7-byte buffer"));
    /* shorter than the length prefix, and a prefix past the end of the file */
    assert_int_not_equal(td_st_file_parse(file, 7, &h, &off, &err), 0);
    assert_non_null(strstr(err.msg, "shorter than 8 bytes"));
    file[0] = (uint8_t)(jl + 9);
    assert_int_not_equal(td_st_file_parse(file, 8 + jl + 8, &h, &off, &err), 0);
    assert_non_null(strstr(err.msg, "does not fit the file"));
    file[0] = 0;
    file[7] = 0x80; /* 2^63 */
    assert_int_not_equal(td_st_file_parse(file, sizeof file, &h, &off, &err), 0);
    assert_non_null(strstr(err.msg, "does not fit the file"));
}

/* 20,000 entries written in a scrambled order: every name is found at its own index, names
** not present are not, and one repeated name far from its twin is caught. */
static void test_many_entries_find_and_duplicates(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct td_st_entry *e = td_calloc(N, sizeof *e);
    char(*names)[16] = td_calloc(N, sizeof *names);
    assert_non_null(e);
    assert_non_null(names);
    for (int i = 0; i < N; i++) {
        int k = (int)(((long)i * 7919) % N); /* 7919 is prime: a permutation of 0..N-1 */
        snprintf(names[i], sizeof names[i], "t%d", k);
        e[i] = (struct td_st_entry){.name = names[i],
                                    .dtype = TD_ST_I32,
                                    .ndim = 1,
                                    .shape = {1},
                                    .begin = 4u * (uint64_t)i,
                                    .end = 4u * (uint64_t)i + 4};
    }
    uint8_t *hdr;
    size_t len;
    struct td_err err;
    assert_int_equal(td_st_header_build(e, N, NULL, NULL, 0, &hdr, &len, &err), 0);
    struct td_st_header h;
    assert_int_equal(td_st_header_parse((const char *)hdr + 8, len - 8, 4u * N, &h, &err), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(td_st_find(&h, names[i]), i);
    }
    assert_int_equal(td_st_find(&h, "t20000"), -1);
    assert_int_equal(td_st_find(&h, ""), -1);
    assert_int_equal(td_st_find(&h, "zzz"), -1);
    td_st_header_free(&h);
    td_free(hdr);

    memcpy(names[N - 1], names[3], sizeof names[3]);
    assert_int_equal(td_st_header_build(e, N, NULL, NULL, 0, &hdr, &len, &err), 0);
    assert_int_not_equal(td_st_header_parse((const char *)hdr + 8, len - 8, 4u * N, &h, &err), 0);
    char want[64];
    snprintf(want, sizeof want, "tensor name '%s' appears twice", names[3]);
    assert_string_equal(err.msg, want);
    td_free(hdr);
    td_free(names);
    td_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_tensor_tied_offsets_in_any_order),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_header_no_tensors),
        cmocka_unit_test(test_file_parse),
        cmocka_unit_test(test_many_entries_find_and_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
