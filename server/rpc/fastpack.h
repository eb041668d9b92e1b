/* server/rpc/fastpack.h — a direct encoder for the reply most requests get: a Response whose
** result is a TensorInfo. protobuf-c's generic packer walks field descriptors twice (once for
** the size, once to write); for this one fixed message shape the fields are known, so the bytes
** are written straight. The output is byte-for-byte what tensord__response__pack writes for the
** same struct (proto3: default values omitted, fields in number order, shape packed), which
** tests/rpc/test_fastpack.c checks against protobuf-c on many random messages. */
#ifndef TD_RPC_FASTPACK_H
#define TD_RPC_FASTPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/tensord.pb-c.h"

/* The lengths the encoding needs, computed once: the total, and the nested messages' bodies
** (each is written after a length prefix). */
struct td_fastpack_plan {
    size_t total;
    size_t status_body, info_body, shape_body;
    size_t message_len, grad_fn_len;
};

/* True when resp is a shape the fast encoder handles (a TensorInfo result or none, non-negative
** enums and dims), with *plan filled; false leaves resp to protobuf-c. */
bool td_fastpack_plan(const Tensord__Response *resp, struct td_fastpack_plan *plan);

/* Writes resp's plan->total bytes to out. */
void td_fastpack(const Tensord__Response *resp, const struct td_fastpack_plan *plan, uint8_t *out);

#endif
