/* client/c/wire.h — a direct encoder for the hot requests and a direct decoder for the common
** reply, beside protobuf-c.
**
** protobuf-c packs and unpacks by walking field descriptors, and its unpacker allocates every
** message it builds. The requests a pipelining client sends most (RunOp with handle or scalar
** inputs and no OpArgs, Get, Free, Write) and the reply most requests get (id, a Status, and a
** TensorInfo or no result) have fixed shapes, so their bytes are written and read here
** straight, with no allocation:
**
**  - the encoder writes exactly the bytes tensord__request__pack writes for the same message
**    (proto3: zero scalars omitted, oneof members always written, fields in number order,
**    repeated uint64 packed);
**  - the decoder accepts a subset of what protobuf-c accepts, and for every message it accepts
**    returns what protobuf-c's unpack would hold in the fields it returns. Anything else (another
**    result, a field it does not know, a field seen twice, a key longer than one byte, an
**    unpacked or empty shape, more than TDW_MAX_DIMS dims, a bool other than 0 or 1, an enum
**    above 2^14, a 10-byte varint above 2^64, a length above 2 MiB, a string with bytes other
**    than printable ASCII, tab and newline, a Status naming a node or address, strides) is handed
**    over: it returns TDW_HAND_OVER and the caller unpacks the same bytes with protobuf-c, which
**    judges them.
**
** tests/client/test_wire.c holds both to protobuf-c on random, truncated, flipped and spliced
** messages. This module depends on libc only (no protobuf-c, no tensord.h, no Python), so the
** Python extension (client/python/tensord/_fast.c) compiles it too: the two clients share one
** encoder and one common-reply decoder. The Python side keeps what is its own (reading Python
** objects, OpArgs' fields, which it writes with the primitives below and hands over encoded).
** See docs/performance.md, "Issue 19, second round: one client wire codec".
*/
#ifndef TENSORD_WIRE_H
#define TENSORD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TDW_MAX_DIMS 8 /* dims a decoded TensorInfo may have (more: handed over) */

/* ---- primitives (shared with the Python extension's OpArgs writer) ---- */

enum { TDW_WT_VARINT = 0, TDW_WT_I64 = 1, TDW_WT_LEN = 2 };

/* A field's key, (number << 3) | wire type, as a varint's value. */
#define TDW_KEY(num, wt) (((uint64_t)(num) << 3) | (uint64_t)(wt))

/* The bytes of v as a varint (1..10). */
static inline size_t tdw_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writes v as a varint (tdw_varint_len(v) bytes, at most 10) at p; returns the end. */
static inline uint8_t *tdw_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* sint64's encoding. */
static inline uint64_t tdw_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* ---- encoding ---- */

/* Request.body's members this encoder writes (their field numbers in tensord.proto), and
** TDW_VARINTS: a body whose fields 1..n are all varint scalars (Backward, Grad, SetGrad), its
** field number given in u.varints. */
enum tdw_body {
    TDW_VARINTS = 0,
    TDW_CREATE = 3,
    TDW_RUN_OP = 8,
    TDW_GET = 9,
    TDW_FREE = 10,
    TDW_WRITE = 19,
};

enum tdw_operand_kind { TDW_HANDLE, TDW_FLOAT, TDW_INT, TDW_BOOL };

/* One RunOp input: a handle, or a Scalar (double f, sint64 i, bool b). */
struct tdw_operand {
    enum tdw_operand_kind kind;
    union {
        uint64_t handle;
        double f;
        int64_t i;
        bool b;
    } v;
};

/* One request. `op` and `dtype` are tensord.proto enum values (non-negative: tdw_request_size
** refuses others). free_first is Request.free_first (protocol 2); n_free_first 0 leaves it out.
** run_op.args, when not NULL, is an OpArgs message's args_len encoded bytes (RunOp field 5,
** written even when empty, as a present message is): the caller wrote its fields in number
** order. varints: body field `field` (2..21) with fields 1..n (n at most 8) = v[0..n), each
** written when not 0. */
struct tdw_request {
    uint64_t id;
    enum tdw_body body;
    const uint64_t *free_first;
    size_t n_free_first;
    union {
        struct {
            uint64_t out;
            int32_t op;
            const struct tdw_operand *inputs;
            size_t n_inputs;
            bool inplace;
            const uint8_t *args;
            size_t args_len;
        } run_op;
        struct {
            uint64_t out;
            int32_t dtype;
            const int64_t *shape;
            size_t n_shape;
            bool requires_grad;
        } create;
        struct {
            int field;
            const uint64_t *v;
            size_t n;
        } varints;
        struct {
            uint64_t handle;
            bool meta_only;
            uint64_t offset, length;
        } get;
        struct {
            const uint64_t *handles;
            size_t n_handles;
        } free;
        struct {
            uint64_t handle, offset;
        } write;
    } u;
};

/* A Scalar message's fields for operand o (TDW_FLOAT, TDW_INT or TDW_BOOL): its size, and
** writing them at p (returns the end). The caller writes the key and length before them; the
** Python extension does so for OpArgs' scalar fields (min, max, value, alpha, beta). */
size_t tdw_scalar_size(const struct tdw_operand *o);
uint8_t *tdw_put_scalar(uint8_t *p, const struct tdw_operand *o);

/* The exact encoded size of r, or 0 when r is not one this encoder writes (an unknown body, a
** negative op or dtype, a varints body outside 2..21 or with more than 8 values). Every valid request encodes to at least 2 bytes (the body's key and length). */
size_t tdw_request_size(const struct tdw_request *r);

/* Writes r's `size` bytes (tdw_request_size's answer) to out; returns out + size. */
uint8_t *tdw_request_pack(const struct tdw_request *r, size_t size, uint8_t *out);

/* ---- decoding ---- */

#define TDW_HAND_OVER (-1)

/* What tensord.proto's TensorInfo holds, strides and storage_offset aside (a TensorInfo with
** either is handed over). Strings point into the decoded bytes and are not NUL-terminated. */
struct tdw_tensor {
    uint64_t handle;
    int32_t dtype;
    int ndim;
    int64_t shape[TDW_MAX_DIMS];
    uint64_t nbytes, offset, length;
    bool requires_grad, is_leaf;
    const char *grad_fn;
    size_t grad_fn_len;
};

/* A Response: id, Status.code and Status.message (0 and "" without a Status), and the TensorInfo
** result if there is one. backward_empty: the result is a BackwardResult with no field set
** (what a Backward that ran to the end answers; one with any field is handed over). */
struct tdw_reply {
    uint64_t id;
    int32_t code;
    const char *message;
    size_t message_len;
    bool has_tensor;
    bool backward_empty;
    struct tdw_tensor tensor;
};

/* Decodes the protobuf section of a reply frame: 0 with *out filled, or TDW_HAND_OVER (out is
** then undefined). Reads only p[0, n). */
int tdw_reply_decode(const uint8_t *p, size_t n, struct tdw_reply *out);

#endif
