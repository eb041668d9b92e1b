"""In-place writes whose source shares memory with the destination, against PyTorch: torch
refuses a partial overlap between a dense input and a dense written-to tensor ("some elements of
the input tensor and the written-to tensor refer to a single memory location"), and a written-to
tensor that repeats memory (an expanded view: "more than one element of the written-to tensor
refers to a single memory location"), by ATen/MemoryOverlap's rules on byte ranges; the exact
same elements (x.add_(x)), disjoint views and non-dense views it does not refuse. fill_, zero_,
masked_fill_ and index_put_ accept an expanded destination; index_put_, scatter_, scatter_add_
and index_add_ refuse even the same elements as an index or source; a bool-mask assignment of
a one-element value reads it as a number. Each case runs on torch and on tensord: same values,
or the same exception class and first line."""
import pytest
import torch

import tensord


def outcome(m, case):
    try:
        r = case(m)
        return ("ok", r.tolist())
    except (RuntimeError, IndexError, TypeError, ValueError) as e:
        text = (e.message if isinstance(e, tensord.TensorError) else str(e)).split("\n")[0]
        return ("error", type(e), text)


def A(m, n=10):
    return m.arange(float(n))


def AI(m, n=10):
    return m.arange(n)


def run(x, f):
    f(x)
    return x


def setitem(key_fn, val_fn):
    def f(a):
        a[key_fn(a)] = val_fn(a)
    return f


CASES = {
    # copy_ and plain assignment
    "copy_partial": lambda m: run(A(m), lambda a: a[1:].copy_(a[:-1])),
    "copy_partial_back": lambda m: run(A(m), lambda a: a[:-1].copy_(a[1:])),
    "copy_int_partial": lambda m: run(AI(m), lambda a: a[1:].copy_(a[:-1])),
    "copy_rows_partial": lambda m: run(A(m).view(5, 2), lambda a: a[1:].copy_(a[:-1])),
    "copy_transposed_same_range": lambda m: run(A(m, 9).view(3, 3),
                                                lambda a: a.copy_(a.t())),
    "copy_transposed_dense_partial": lambda m: run(A(m).view(5, 2),
                                                   lambda a: a[1:].copy_(a[:-1].t().t())),
    "copy_self": lambda m: run(A(m), lambda a: a.copy_(a)),
    "copy_same_view": lambda m: run(A(m), lambda a: a[:].copy_(a[:])),
    "copy_disjoint": lambda m: run(A(m), lambda a: a[5:].copy_(a[:5])),
    "copy_touching": lambda m: run(A(m), lambda a: a[5:].copy_(a[:5].view(5))),
    "copy_strided_nondense": lambda m: run(A(m), lambda a: a[1::2].copy_(a[::2])),
    "copy_scalar_elem": lambda m: run(A(m) + 1, lambda a: a[1:].copy_(a[0])),
    "copy_expanded_src": lambda m: run(A(m) + 1, lambda a: a[1:].copy_(a[:1].expand(9))),
    "copy_expanded_dst": lambda m: run(A(m), lambda a: a[:1].expand(3).copy_(m.ones(3))),
    "copy_stride0_size1": lambda m: run(A(m), lambda a: a[:2].view(2, 1).expand(2, 1)
                                        .copy_(m.ones(2, 1))),
    "copy_empty": lambda m: run(A(m), lambda a: a[1:1].copy_(a[:0])),
    "setitem_partial": lambda m: run(A(m), setitem(lambda a: slice(1, None),
                                                   lambda a: a[:-1])),
    "setitem_partial_fwd": lambda m: run(A(m), setitem(lambda a: slice(1, 4),
                                                       lambda a: a[2:5])),
    "setitem_full": lambda m: run(A(m), setitem(lambda a: slice(None), lambda a: a)),
    "setitem_rows_partial": lambda m: run(A(m).view(5, 2),
                                          setitem(lambda a: (slice(1, None),),
                                                  lambda a: a[:-1])),
    "setitem_elem": lambda m: run(A(m) + 1, setitem(lambda a: slice(1, None),
                                                    lambda a: a[0])),
    # in-place elementwise
    "add_partial": lambda m: run(A(m), lambda a: a[1:].add_(a[:-1])),
    "add_self": lambda m: run(A(m), lambda a: a.add_(a)),
    "add_elem_of_self": lambda m: run(A(m) + 1, lambda a: a.add_(a[0])),
    "add_elem_outside": lambda m: run(A(m) + 1, lambda a: a[1:].add_(a[0])),
    "iadd_partial": lambda m: run(A(m), lambda a: a[1:].__iadd__(a[:-1])),
    "setitem_iadd_partial": lambda m: run(A(m), lambda a: a.__setitem__(
        slice(1, None), a[1:].__iadd__(a[:-1]))),
    "mul_rows_partial": lambda m: run(A(m).view(5, 2) + 1, lambda a: a[1:].mul_(a[:-1])),
    "sub_alpha_partial": lambda m: run(A(m), lambda a: a[1:].sub_(a[:-1], alpha=2)),
    "pow_partial": lambda m: run(A(m), lambda a: a[1:].pow_(a[:-1])),
    "lerp_partial": lambda m: run(A(m), lambda a: a[1:].lerp_(a[:-1], 0.5)),
    "addcmul_partial": lambda m: run(A(m), lambda a: a[1:].addcmul_(a[:-1], a[:-1])),
    "addcmul_self": lambda m: run(A(m), lambda a: a.addcmul_(a, a)),
    "clamp_min_partial": lambda m: run(A(m), lambda a: a[1:].clamp_(min=a[:-1])),
    "clamp_min_self": lambda m: run(A(m), lambda a: a.clamp_(min=a)),
    "exp_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).exp_()),
    "add_expanded_2d": lambda m: run(A(m), lambda a: a[:3].expand(2, 3).add_(1)),
    "int_add_rows_partial": lambda m: run(AI(m, 12).view(3, 4),
                                          lambda a: a[1:].add_(a[:-1])),
    # fill_ and zero_ do not check
    "fill_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).fill_(5)),
    "zero_expanded": lambda m: run(A(m) + 1, lambda a: a[:1].expand(3).zero_()),
    "fill_tensor_of_self": lambda m: run(A(m) + 1, lambda a: a.fill_(a[3])),
    # masked_fill_
    "masked_fill_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).masked_fill_(
        m.tensor([True, False, False]), 5.0)),
    "masked_fill_value_of_self": lambda m: run(A(m) + 1, lambda a: a.masked_fill_(
        m.ones(10, dtype=m.bool), a[2])),
    "masked_fill_mask_partial": lambda m: run(m.ones(5, dtype=m.bool),
                                              lambda a: a[1:].masked_fill_(a[:-1], False)),
    "masked_fill_mask_self": lambda m: run(m.ones(5, dtype=m.bool),
                                           lambda a: a.masked_fill_(a, False)),
    # index_put_ and advanced assignment
    "index_put_partial": lambda m: run(A(m), lambda a: a[1:].index_put_(
        (m.tensor([0, 1, 2]),), a[:3])),
    "index_put_acc_partial": lambda m: run(A(m), lambda a: a[1:].index_put_(
        (m.tensor([0, 1, 2]),), a[:3], accumulate=True)),
    "index_put_same_elems": lambda m: run(A(m), lambda a: a.index_put_((m.arange(10),), a)),
    "index_put_disjoint": lambda m: run(A(m), lambda a: a[:5].index_put_(
        (m.tensor([0, 1, 2]),), a[5:8])),
    "index_put_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).index_put_(
        (m.tensor([0]),), m.tensor(5.0))),
    "index_put_index_of_self": lambda m: run(AI(m), lambda a: a.index_put_(
        (a[:2],), m.tensor([7, 7]))),
    "index_put_elem_value": lambda m: run(A(m) + 1, lambda a: a.index_put_(
        (m.tensor([1, 2]),), a[0])),
    "index_put_mask_elem_value": lambda m: run(A(m) + 1, lambda a: a.index_put_(
        (a > 3,), a[0])),
    "setitem_list_partial": lambda m: run(A(m), setitem(lambda a: [1, 2, 3],
                                                        lambda a: a[:3])),
    "setitem_list_elem": lambda m: run(A(m) + 1, setitem(lambda a: [1, 2], lambda a: a[0])),
    "setitem_mask_partial": lambda m: run(A(m), setitem(lambda a: a > 3, lambda a: a[:6])),
    "setitem_mask_elem": lambda m: run(A(m) + 1, setitem(lambda a: a > 3, lambda a: a[3])),
    "setitem_mask_elem_1d": lambda m: run(A(m) + 1, setitem(lambda a: a > 3,
                                                            lambda a: a[3:4])),
    "setitem_rows_mask_elem": lambda m: run(A(m).view(5, 2), setitem(
        lambda a: (slice(None), m.tensor([True, False])), lambda a: a[0, 1])),
    # scatter_, scatter_add_, index_add_
    "scatter_partial": lambda m: run(A(m), lambda a: a[1:].scatter_(0, m.tensor([0, 1]), a[:2])),
    "scatter_same_elems": lambda m: run(A(m), lambda a: a.scatter_(0, m.tensor([0, 1]), a)),
    "scatter_index_of_self": lambda m: run(AI(m), lambda a: a.scatter_(
        0, a[:2], m.ones(2, dtype=m.int64))),
    "scatter_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).scatter_(
        0, m.tensor([0]), m.ones(1))),
    "scatter_value_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).scatter_(
        0, m.tensor([0]), 5.0)),
    "scatter_add_partial": lambda m: run(A(m), lambda a: a[1:].scatter_add_(
        0, m.tensor([0, 1]), a[:2])),
    "scatter_add_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).scatter_add_(
        0, m.tensor([0]), m.ones(1))),
    "index_add_partial": lambda m: run(A(m), lambda a: a[1:].index_add_(
        0, m.tensor([0, 1]), a[:2])),
    "index_add_same_elems": lambda m: run(A(m), lambda a: a.index_add_(0, m.arange(10), a)),
    "index_add_index_of_self": lambda m: run(AI(m), lambda a: a.index_add_(
        0, a[:2], m.ones(2, dtype=m.int64))),
    "index_add_expanded": lambda m: run(A(m), lambda a: a[:1].expand(3).index_add_(
        0, m.tensor([0]), m.ones(1))),
    "index_add_disjoint": lambda m: run(A(m), lambda a: a[5:].index_add_(
        0, m.tensor([0, 1]), a[:2])),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_overlap_against_torch(td, name):
    want = outcome(torch, CASES[name])
    got = outcome(td, CASES[name])
    if want[0] == "error":
        assert got[0] == "error", (got, want)
        assert issubclass(got[1], want[1]) and got[2] == want[2], (got, want)
    else:
        assert got == want
