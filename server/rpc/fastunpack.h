/* server/rpc/fastunpack.h — a direct decoder for the requests a pipelining client sends most:
** RunOp (handles and scalars as operands, no OpArgs), Get, Free and Write, with the Request's id
** and free_first. protobuf-c's generic unpacker walks field descriptors, scans the message twice
** and makes one allocation per submessage and array; for these few fixed shapes the fields are
** known, so the bytes are read straight into the structs tensord__request__unpack would build
** (same types, same values, the same INIT defaults elsewhere).
**
** It decodes only messages whose meaning is unambiguous: every field of a known number and wire
** type, each at most once (except RunOp.inputs, which appends), one member per oneof, varints of
** at most nine bytes (two for the op, one for a bool), repeated integers in one packed chunk.
** Anything else — unknown fields, duplicates, unpacked arrays, other request kinds, truncation —
** makes it return NULL having allocated nothing, and the caller runs protobuf-c, which decides.
** So it accepts a subset of what protobuf-c accepts and decodes it to the same values;
** tests/rpc/test_fastunpack.c and tests/fuzz/fuzz_fastunpack.c check both against protobuf-c.
**
** Cost: one pass over the frame's bytes (packed arrays are read twice: counted, then decoded),
** each read bounded by the frame's end, into structs on the stack (about 6 KiB: at most 64
** operands); then allocation through the caller's allocator (the job's arena): one block of
** the exact size for the structs (about 50 bytes per operand), and one per packed array (8
** bytes per entry, each entry at least one wire byte), as protobuf-c allocates them, so a large
** array overflows the arena alone and is charged as before. */
#ifndef TD_RPC_FASTUNPACK_H
#define TD_RPC_FASTUNPACK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/tensord.pb-c.h"

/* The Request in data[0..len), allocated from `alloc` (freed by td_fastunpack_free), or NULL:
** not a shape this decoder takes (or out of memory); then nothing stays allocated. */
Tensord__Request *td_fastunpack_request(ProtobufCAllocator *alloc, size_t len, const uint8_t *data);

/* Frees a request td_fastunpack_request returned, with the same allocator. NULL is a no-op. */
void td_fastunpack_free(Tensord__Request *req, ProtobufCAllocator *alloc);

#endif
