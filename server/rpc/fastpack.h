/* server/rpc/fastpack.h — a direct encoder for the reply most requests get: a Response whose
** result is a TensorInfo. protobuf-c's generic packer walks field descriptors twice (once for
** the size, once to write); for this one fixed message shape the fields are known, so the bytes
** are written straight. The output is byte-for-byte what tensord__response__pack writes for the
** same struct (proto3: default values omitted, fields in number order, shape packed), which
** tests/rpc/test_fastpack.c checks against protobuf-c on many random messages. */
#ifndef TD_RPC_FASTPACK_H
#define TD_RPC_FASTPACK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/tensord.pb-c.h"

/* True when resp is a shape the fast encoder handles: a TensorInfo result (or none), and field
** values in the ranges it assumes (non-negative enums and dims). Others go to protobuf-c. */
int td_fastpack_handles(const Tensord__Response *resp);

/* The packed size of resp, and the packing itself (out has room for that many bytes). */
size_t td_fastpack_size(const Tensord__Response *resp);
void td_fastpack(const Tensord__Response *resp, uint8_t *out);

#endif
