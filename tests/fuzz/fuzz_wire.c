/* tests/fuzz/fuzz_wire.c — libFuzzer target for libtensord's direct reply decoder
** (client/c/wire.c), differential against protobuf-c, the reference.
**
** The input is one reply's protobuf section, as a frame carries it. Checks: whenever
** tdw_reply_decode accepts the bytes, tensord__response__unpack accepts them too, with the same
** id, status code and message (no node or address), the same result kind (a TensorInfo, an empty
** BackwardResult, or none)
** and, for a TensorInfo, the same values in every field the decoder returns, no strides and no
** unknown fields; a refusal is always TDW_HAND_OVER; nothing reads past the input (ASan: the
** input is an exact-size copy).
*/
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "wire.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_wire: check failed at line %d: %s\n", __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_text(const char *s, size_t n, const char *ref)
{
    ref = ref != NULL ? ref : "";
    return strlen(ref) == n && memcmp(s, ref, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size > 0 ? size : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, size);
    struct tdw_reply r;
    int rc = tdw_reply_decode(size > 0 ? copy : NULL, size, &r);
    CHECK(rc == 0 || rc == TDW_HAND_OVER);
    if (rc == 0) {
        Tensord__Response *p = tensord__response__unpack(NULL, size, copy);
        CHECK(p != NULL);
        CHECK(p->base.n_unknown_fields == 0);
        CHECK(r.id == p->id);
        const Tensord__Status *st = p->status;
        CHECK(r.code == (st != NULL ? (int32_t)st->code : 0));
        CHECK(same_text(r.message, r.message_len, st != NULL ? st->message : NULL));
        CHECK(st == NULL || ((st->node == NULL || st->node[0] == '\0') &&
                             (st->address == NULL || st->address[0] == '\0')));
        CHECK(r.has_tensor == (p->result_case == TENSORD__RESPONSE__RESULT_TENSOR));
        CHECK(r.backward_empty == (p->result_case == TENSORD__RESPONSE__RESULT_BACKWARD));
        CHECK(r.has_tensor || r.backward_empty ||
              p->result_case == TENSORD__RESPONSE__RESULT__NOT_SET);
        if (r.backward_empty) { /* no field set, none unknown */
            CHECK(tensord__backward_result__get_packed_size(p->backward) == 0);
            CHECK(p->backward->base.n_unknown_fields == 0);
        }
        if (r.has_tensor) {
            const Tensord__TensorInfo *t = p->tensor;
            CHECK(r.tensor.handle == t->handle && r.tensor.dtype == (int32_t)t->dtype);
            CHECK((size_t)r.tensor.ndim == t->n_shape);
            for (size_t i = 0; i < t->n_shape; i++) {
                CHECK(r.tensor.shape[i] == t->shape[i]);
            }
            CHECK(r.tensor.nbytes == t->nbytes && r.tensor.offset == t->offset &&
                  r.tensor.length == t->length);
            CHECK(r.tensor.requires_grad == (t->requires_grad != 0));
            CHECK(r.tensor.is_leaf == (t->is_leaf != 0));
            CHECK(same_text(r.tensor.grad_fn, r.tensor.grad_fn_len, t->grad_fn));
            CHECK(t->n_strides == 0 && t->storage_offset == 0 && t->base.n_unknown_fields == 0);
        }
        tensord__response__free_unpacked(p, NULL);
    }
    free(copy);
    return 0;
}
