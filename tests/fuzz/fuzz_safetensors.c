/* tests/fuzz/fuzz_safetensors.c — libFuzzer target for the safetensors codec
** (server/base/safetensors.c), which the daemon's Load and session restore and tensorctl's
** :load all use: td_st_header_parse on the header, td_st_file_parse on the whole file.
**
** The input is a whole safetensors file: u64 N (little-endian), N bytes of JSON, the byte
** buffer. For the header parser an N larger than the rest is clamped, so the fuzzer need not get
** it exactly right; the file parser sees the input as it is. Checks: every entry accepted has a
** known dtype, at most 8 dims, and a range inside the buffer that holds exactly its shape's
** bytes; a header accepted, written back by td_st_header_build, reads back to the same entries
** (a file tensord saves, it can load); and a file accepted has its buffer inside the input.
*/
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/safetensors.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_safetensors: check failed at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t entry_bytes(int elem, int ndim, const int64_t *shape)
{
    uint64_t b = (uint64_t)elem;
    for (int d = 0; d < ndim; d++) {
        b *= (uint64_t)shape[d];
    }
    return b;
}

static void check_server(const struct td_st_header *h, uint64_t data_len)
{
    CHECK(h->n >= 0 && h->nmeta >= 0);
    for (int i = 0; i < h->n; i++) {
        const struct td_st_entry *e = &h->e[i];
        CHECK(e->name != NULL);
        CHECK(e->dtype >= 0 && e->dtype < TD_ST_NDTYPES);
        CHECK(e->ndim >= 0 && e->ndim <= TD_ST_MAX_DIMS);
        for (int d = 0; d < e->ndim; d++) {
            CHECK(e->shape[d] >= 0);
        }
        CHECK(e->begin <= e->end && e->end <= data_len);
        CHECK(e->end - e->begin == entry_bytes((int)td_st_dtype_size(e->dtype), e->ndim, e->shape));
    }
    for (int i = 0; i < h->nmeta; i++) {
        CHECK(h->keys[i] != NULL && h->vals[i] != NULL);
    }
}

/* Written back by the server's builder, the header must read back the same. */
static void check_roundtrip(const struct td_st_header *h)
{
    uint8_t *out = NULL;
    size_t len = 0;
    struct td_err err = {0};
    if (td_st_header_build(h->e, h->n, (const char *const *)h->keys, (const char *const *)h->vals,
                           h->nmeta, &out, &len, &err) != 0) {
        return; /* names it refuses to write (empty, too long) */
    }
    CHECK(len >= 8 && len % 8 == 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = n << 8 | out[i];
    }
    CHECK(n == len - 8);
    uint64_t data_len = 0;
    for (int i = 0; i < h->n; i++) {
        data_len = h->e[i].end > data_len ? h->e[i].end : data_len;
    }
    struct td_st_header h2;
    int rc = td_st_header_parse((const char *)out + 8, (size_t)n, data_len, &h2, &err);
    if (rc != 0) {
        fprintf(stderr, "round trip failed: %s\n%.*s\n", err.msg, (int)n, (const char *)out + 8);
    }
    CHECK(rc == 0);
    CHECK(h2.n == h->n && h2.nmeta == h->nmeta);
    for (int i = 0; i < h->n; i++) {
        CHECK(strcmp(h2.e[i].name, h->e[i].name) == 0);
        CHECK(h2.e[i].dtype == h->e[i].dtype && h2.e[i].ndim == h->e[i].ndim);
        CHECK(memcmp(h2.e[i].shape, h->e[i].shape,
                     sizeof h->e[i].shape[0] * (size_t)h->e[i].ndim) == 0);
        CHECK(h2.e[i].begin == h->e[i].begin && h2.e[i].end == h->e[i].end);
    }
    for (int i = 0; i < h->nmeta; i++) {
        CHECK(strcmp(h2.keys[i], h->keys[i]) == 0 && strcmp(h2.vals[i], h->vals[i]) == 0);
    }
    td_st_header_free(&h2);
    td_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) {
        return 0;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = n << 8 | data[i];
    }
    n = n < size - 8 ? n : size - 8;
    uint64_t data_len = size - 8 - n;
    /* An exact-size copy, so reading past the header is caught. */
    char *json = malloc(n > 0 ? (size_t)n : 1);
    CHECK(json != NULL);
    memcpy(json, data + 8, (size_t)n);

    struct td_st_header h;
    struct td_err err = {0};
    int src = td_st_header_parse(json, (size_t)n, data_len, &h, &err);
    if (src == 0) {
        check_server(&h, data_len);
        check_roundtrip(&h);
    } else {
        CHECK(err.code != 0);
    }

    if (src == 0) {
        td_st_header_free(&h);
    }
    free(json);

    /* The whole file, unclamped: what tensorctl's :load parses. */
    size_t off = 0;
    if (td_st_file_parse(data, size, &h, &off, &err) == 0) {
        CHECK(off >= 8 && off <= size);
        check_server(&h, size - off);
        td_st_header_free(&h);
    } else {
        CHECK(err.code != 0);
    }
    return 0;
}
