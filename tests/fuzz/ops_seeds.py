#!/usr/bin/env python3
"""Writes the hand-made seed programs of fuzz_ops (tests/fuzz/fuzz_ops.c) to tests/fuzz/corpus/ops/.

Each seed is a program in fuzz_ops's encoding: a flags byte, then instructions (an opcode byte
and its operand bytes). This script is the assembler, so a seed reads as what it does; the
encodings below must follow fuzz_ops.c's `enum insn` and its do_* readers. There is one seed (or
a few) per shape of issue 14's findings, and a few for the shapes the fuzzer should start from
(0-size and 8-dim tensors, views of views, in-place ops, backward, Save/Load, reconnects).

    /usr/bin/python3 tests/fuzz/ops_seeds.py      # rewrites corpus/ops/seed-*
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "ops")

(CREATE, FULL, RAND, ARANGE, RUNOP, EXPAND, HUGE, VIEW, REDUCE, MATMUL, CAT, INPLACE, GET, FORMAT,
 FREE, AUTOGRAD, PERSIST, WRITE, MISC, FACTORY, RUN_HEAVY, RECONNECT, CLOSE_SESSION) = range(23)

DIMS = [1, 2, 3, 0, 4, 5, 7, 8, 1, 16, 64, 1000, 1 << 16, 1 << 20, 1 << 26, 1 << 28,
        1 << 30, 1 << 31, 1 << 32, 1 << 40, 1 << 62, 6148914691236517206, 2**63 - 1, -1, -2, 2,
        1, 3, 1 << 10, 1 << 14, 1 << 24, 9]
F32, F64, I32, I64, BOOL = 1, 2, 3, 4, 5
REDUCE_OPS = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "std", "var", "norm",
              "logsumexp", "all", "any", "softmax", "log_softmax", "contiguous"]
MATMUL_OPS = ["matmul", "mm", "bmm", "outer", "linear", "mse_loss", "cross_entropy", "where"]
VIEW_OPS = ["transpose", "narrow", "select", "permute", "flip", "squeeze", "unsqueeze", "slice",
            "t", "mT", "reshape", "flatten"]
INPLACE_OPS = ["add", "mul", "fill", "zero", "copy", "clamp", "neg", "uniform", "div", "pow",
               "exp", "sub"]


def s(n):
    """A handle slot, 1..12."""
    assert 1 <= n <= 12
    return n - 1


def d(v):
    """A size from the table."""
    return DIMS.index(v)


def huge(out, dtype, dims, requires_grad=False):
    """out = full([1]*len(dims), 1).expand(dims), the view in slot out+1."""
    return [HUGE, s(out), dtype - 1, len(dims) - 1] + [d(x) for x in dims] + [int(requires_grad)]


def reduce_(op, out, src, dim=None, out2=None):
    f = 0 if dim is None else 1
    if out2 is not None:
        f |= 16
    b = [REDUCE, REDUCE_OPS.index(op), s(out), s(src), f]
    if dim is not None:
        b.append(dim + 1)
    if out2 is not None:
        b.append(s(out2))
    return b


def matmul(op, out, a, b_, c=None):
    b = [MATMUL, MATMUL_OPS.index(op), s(out), s(a), s(b_)]
    if op == "where":
        b.append(s(c))
    elif op == "linear":
        b += [1, s(c)] if c is not None else [0]
    return b


def cat(stack, out, srcs, dim=0):
    # b % 3 selects cat (0) or stack (1); (b >> 2) % 4 + 1 inputs
    n = len(srcs)
    for b in range(256):
        if b % 3 == (1 if stack else 0) and (b >> 2) % 4 + 1 == n:
            return [CAT, b, s(out)] + [s(x) for x in srcs] + [dim + 1]
    raise ValueError(n)


def repeat(out, src, dims):
    return [CAT, 2, s(out), s(src), len(dims) - 1] + [d(x) for x in dims]


def view(op, out, src, dim=0, dim2=1, start=0, length=1, step=1, dims=None):
    b = [VIEW, VIEW_OPS.index(op), s(out), s(src), dim + 2, dim2 + 2, start, length + 9,
         step - 1]
    if op in ("permute", "flip", "reshape"):
        b += [len(dims or []), 0]
        if op == "reshape":
            b += [d(x) for x in (dims or [])[1:]]
    return b


def create(out, dtype, dims, requires_grad=False):
    return [CREATE, s(out), dtype - 1, len(dims)] + list(dims) + [int(requires_grad)]


def create_big(out, dtype, log2):
    return [CREATE, s(out), 0x80 | (dtype - 1), 0, log2 - 10, 0]


def full(out, dtype, dims, value=3):
    # value byte: b % 3 == 0 -> float table; 3 -> 1.0
    return [FULL, s(out), dtype, len(dims)] + [d(x) for x in dims] + [value, 0]


def get(slot_, meta=False):
    return [GET, s(slot_), int(meta)]


def fmt(slot_):
    return [FORMAT, s(slot_)]


def backward(slot_):
    return [AUTOGRAD, 0, s(slot_)]


def save(handles, file=0):
    n = len(handles)
    return [PERSIST, n << 1] + [s(x) for x in handles] + [file]


def inplace(op, target, other=None):
    b = [INPLACE, INPLACE_OPS.index(op), s(target)]
    if op in ("zero", "neg", "exp", "uniform"):
        return b + [0]
    if op == "clamp":
        return b + [0, 3]
    return b + ([1, s(other)] if other is not None else [0, 3])


def factory(op, out, dim, mn=3, mx=6):
    ops = ["linspace", "eye", "randint", "empty"]
    # nd=0 dims, then dim, start, end, step, min, max
    return [FACTORY, ops.index(op), s(out), 0, d(dim), 9, 0, 0, mn, mx]


SEEDS = {
    # 1: cat/stack of bool views whose sizes sum past 2^64
    "cat-bool-wrap": [0] + huge(1, BOOL, [6148914691236517206]) + cat(False, 5, [2, 2, 2]),
    "stack-bool-wrap": [0] + huge(1, BOOL, [6148914691236517206]) + cat(True, 5, [2, 2, 2]),
    "cat-huge-2d": [0] + huge(1, F32, [1 << 31, 1 << 31]) + cat(False, 5, [2, 2], dim=1),
    # 2: reductions of expand(2^30, 2^30): all, then with dim (a large output)
    "sum-expand": [0] + huge(1, F32, [1 << 30, 1 << 30]) + reduce_("sum", 5, 2),
    "mean-expand": [0] + huge(1, F64, [1 << 28, 1 << 30]) + reduce_("mean", 5, 2),
    "max-expand": [0] + huge(1, F32, [1 << 30, 1 << 30]) + reduce_("max", 5, 2),
    "std-expand": [0] + huge(1, F32, [1 << 30, 1 << 30]) + reduce_("std", 5, 2),
    "argmax-expand": [0] + huge(1, I64, [1 << 30, 1 << 30]) + reduce_("argmax", 5, 2),
    "sum-dim-expand": [0] + huge(1, F32, [1 << 20, 1 << 30]) + reduce_("sum", 5, 2, dim=1),
    "max-dim-expand": [0] + huge(1, F32, [1 << 16, 1 << 30]) + reduce_("max", 5, 2, dim=1,
                                                                      out2=6),
    "logsumexp-expand": [0] + huge(1, F32, [1 << 30, 1 << 30]) + reduce_("logsumexp", 5, 2),
    "softmax-expand": [0] + huge(1, F32, [16, 1 << 30]) + reduce_("softmax", 5, 2, dim=1),
    # 2: integer matmul of expanded views; 3c: matmul of [1,2^28] @ [2^28,1] views
    "matmul-int-expand": [0] + huge(1, I64, [1 << 10, 1 << 30]) + huge(3, I64, [1 << 30, 1 << 10])
    + matmul("matmul", 6, 2, 4),
    "matmul-thin-views": [0] + huge(1, F32, [1, 1 << 28]) + huge(3, F32, [1 << 28, 1])
    + matmul("matmul", 6, 2, 4),
    "mm-thin-views": [0] + huge(1, F64, [1, 1 << 28]) + huge(3, F64, [1 << 28, 1])
    + matmul("mm", 6, 2, 4),
    "bmm-expand": [0] + huge(1, F32, [1 << 10, 1 << 10, 1 << 10])
    + huge(3, F32, [1 << 10, 1 << 10, 1 << 10]) + matmul("bmm", 6, 2, 4),
    "outer-expand": [0] + huge(1, F32, [1 << 16]) + huge(3, F32, [1 << 16])
    + matmul("outer", 6, 2, 4),
    "linear-expand": [0] + huge(1, F32, [4, 1 << 28]) + huge(3, F32, [4, 1 << 28])
    + matmul("linear", 6, 2, 4),
    # 3b: eight pipelined large creates behind a slow job (heavy jobs deferred)
    "creates-behind-slow-job": [0] + huge(1, F32, [1 << 20, 1 << 30]) + reduce_("sum", 5, 2, dim=1)
    + sum((create_big(6 + i % 6, F32, 20) for i in range(8)), []) + [RUN_HEAVY],
    # 3b: Format of 7- and 8-dim views, queued and never read
    "format-8dim-view": [0] + huge(1, F32, [8] * 8) + fmt(2),
    "format-7dim-view": [0] + huge(1, F64, [16] * 7) + fmt(2) + fmt(2) + fmt(2) + fmt(2),
    "format-8dim-huge": [0] + huge(1, F32, [1 << 10] * 8) + fmt(2),
    # 4: Save of an expanded view under four names
    "save-view-4-names": [0] + huge(1, F32, [1 << 20, 4]) + save([2, 2, 2, 2]),
    "save-view-beyond-disk-quota": [0] + huge(1, F32, [1 << 20, 4]) + save([2]) + save([2], file=1)
    + save([2], file=2),
    "save-huge-view": [0] + huge(1, F32, [1 << 30, 1 << 30]) + save([2]),
    # 7: linspace, repeat, outer sized by the wrong thing
    "linspace-big": [0] + factory("linspace", 1, 1 << 24),
    "linspace-huge": [0] + factory("linspace", 1, 1 << 62),
    "eye-big": [0] + factory("eye", 1, 1 << 14),
    "repeat-big": [0] + create(1, F32, [2, 2]) + repeat(2, 1, [1 << 10, 1 << 10]),
    "repeat-huge": [0] + create(1, F32, [2]) + repeat(2, 1, [1 << 62]),
    "outer-big": [0] + full(1, F32, [1 << 10]) + full(2, F32, [1 << 14]) + matmul("outer", 3, 1, 2),
    "mm-thin": [0] + full(1, F32, [1, 1 << 20]) + full(2, F32, [1 << 20, 1])
    + matmul("mm", 3, 1, 2),
    # Get of huge views and of views of views
    "get-huge-view": [0] + huge(1, F32, [1 << 30, 1 << 30]) + get(2),
    "views-of-views": [0] + huge(1, F32, [1 << 30, 1 << 30]) + view("transpose", 4, 2)
    + view("narrow", 5, 4, dim=0, start=1, length=5) + view("select", 6, 5, dim=1)
    + reduce_("sum", 7, 6) + get(5) + fmt(6),
    "permute-expand": [0] + huge(1, F32, [8, 1 << 20, 8]) + view("permute", 4, 2, dims=[2, 0, 1])
    + reduce_("mean", 5, 4, dim=0) + fmt(4),
    # backward through an expanded leaf: the gradient is summed over 2^60 elements
    "backward-expand": [0] + huge(1, F32, [1 << 30, 1 << 30], requires_grad=True)
    + reduce_("sum", 5, 2) + backward(5) + [AUTOGRAD, 1, s(1), s(8)] + get(8),
    # in-place ops through expanded views (refused) and on real tensors
    "inplace-on-view": [0] + huge(1, F32, [1 << 20, 4]) + inplace("add", 2) + inplace("zero", 2)
    + create(4, F32, [4]) + inplace("copy", 4, 2) + inplace("mul", 4),
    # 0-size and 8-dim tensors
    "zero-size": [0] + create(1, F32, [2, 0, 3]) + reduce_("sum", 2, 1) + reduce_("max", 3, 1)
    + reduce_("max", 4, 1, dim=1) + fmt(1) + matmul("matmul", 5, 1, 1) + cat(False, 6, [1, 1]),
    "eight-dims": [0] + create(1, F64, [2] * 8) + reduce_("std", 2, 1, dim=3) + fmt(1)
    + view("permute", 3, 1, dims=list(range(8))) + fmt(3) + get(3) + save([1, 3]),
    # cancellation: the connection goes while a heavy job is queued, then the session closes
    "reconnect-mid-job": [0] + huge(1, F32, [1 << 20, 1 << 30]) + reduce_("sum", 5, 2, dim=1)
    + [RECONNECT, RUN_HEAVY] + get(5, meta=True),
    "close-session-mid-job": [0] + huge(1, F32, [1 << 20, 1 << 30]) + reduce_("var", 5, 2, dim=0)
    + [CLOSE_SESSION, RUN_HEAVY, MISC, 0],
    # eager heavy jobs, everything pinned
    "eager-mix": [3] + create(1, F32, [4, 4], requires_grad=True) + matmul("matmul", 2, 1, 1)
    + reduce_("sum", 3, 2) + backward(3) + get(2) + [PERSIST, 2, s(2), 1, PERSIST, 3, s(4), 1]
    + fmt(4),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.startswith("seed-"):
            os.unlink(os.path.join(OUT, f))
    for name, prog in SEEDS.items():
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(bytes(prog))
    print("corpus/ops: %d seeds" % len(SEEDS))


if __name__ == "__main__":
    main()
