/* tests/fuzz/fuzz_fastunpack.c — libFuzzer target for the hot requests' direct decoder
** (server/rpc/fastunpack.c), differential against protobuf-c, the reference.
**
** The input is one Request's protobuf bytes, as a frame's protobuf section carries them. Checks:
** whenever td_fastunpack_request decodes it, tensord__request__unpack accepts the same bytes,
** both decodings pack to the same bytes and agree field by field on the kinds the decoder takes
** (a bool is compared as stored, not as packed); whatever it allocated is freed by
** td_fastunpack_free; and nothing reads past the input (ASan: the input is an exact-size copy).
*/
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tensord.pb-c.h"
#include "rpc/fastunpack.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_fastunpack: check failed at line %d: %s\n", __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long live_blocks;

static void *count_alloc(void *ud, size_t n)
{
    (void)ud;
    void *p = malloc(n);
    live_blocks += p != NULL;
    return p;
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    live_blocks--;
    free(p);
}

static void same_fields(const Tensord__Request *f, const Tensord__Request *p)
{
    CHECK(f->id == p->id && f->n_free_first == p->n_free_first);
    for (size_t i = 0; i < f->n_free_first; i++) {
        CHECK(f->free_first[i] == p->free_first[i]);
    }
    CHECK(f->body_case == p->body_case);
    switch (f->body_case) {
    case TENSORD__REQUEST__BODY_RUN_OP: {
        const Tensord__RunOp *a = f->run_op, *b = p->run_op;
        CHECK(a->out == b->out && a->out2 == b->out2 && a->out3 == b->out3);
        CHECK(a->op == b->op && a->inplace == b->inplace && a->args == NULL && b->args == NULL);
        CHECK(a->n_inputs == b->n_inputs);
        for (size_t i = 0; i < a->n_inputs; i++) {
            const Tensord__Operand *x = a->inputs[i], *y = b->inputs[i];
            CHECK(x->value_case == y->value_case);
            if (x->value_case == TENSORD__OPERAND__VALUE_HANDLE) {
                CHECK(x->handle == y->handle);
            } else if (x->value_case == TENSORD__OPERAND__VALUE_SCALAR) {
                CHECK(x->scalar->value_case == y->scalar->value_case);
                CHECK(x->scalar->i == y->scalar->i && x->scalar->b == y->scalar->b);
            }
        }
        break;
    }
    case TENSORD__REQUEST__BODY_GET:
        CHECK(f->get->handle == p->get->handle && f->get->offset == p->get->offset);
        CHECK(f->get->length == p->get->length && f->get->meta_only == p->get->meta_only);
        break;
    case TENSORD__REQUEST__BODY_FREE:
        CHECK(f->free->n_handles == p->free->n_handles);
        for (size_t i = 0; i < f->free->n_handles; i++) {
            CHECK(f->free->handles[i] == p->free->handles[i]);
        }
        break;
    case TENSORD__REQUEST__BODY_WRITE:
        CHECK(f->write->handle == p->write->handle && f->write->offset == p->write->offset);
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size != 0 ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    if (size != 0) {
        memcpy(copy, data, size);
    }
    ProtobufCAllocator counting = {count_alloc, count_free, NULL};
    Tensord__Request *f = td_fastunpack_request(&counting, size, copy);
    Tensord__Request *p = tensord__request__unpack(NULL, size, copy);
    if (f != NULL) {
        CHECK(p != NULL); /* never accepts what protobuf-c refuses */
        size_t fs = tensord__request__get_packed_size(f);
        CHECK(fs == tensord__request__get_packed_size(p));
        uint8_t *a = malloc(fs + 1), *b = malloc(fs + 1);
        CHECK(a != NULL && b != NULL);
        tensord__request__pack(f, a);
        tensord__request__pack(p, b);
        CHECK(memcmp(a, b, fs) == 0);
        free(a);
        free(b);
        same_fields(f, p);
        td_fastunpack_free(f, &counting);
    }
    CHECK(live_blocks == 0);
    if (p != NULL) {
        tensord__request__free_unpacked(p, NULL);
    }
    free(copy);
    return 0;
}
