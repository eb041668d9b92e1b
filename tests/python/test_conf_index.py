"""The indexing family against PyTorch through the Python client: gather, scatter (tensor and
value forms), scatter_add, index_select, index_add, masked_fill, masked_select, nonzero, take,
and advanced indexing (x[key] and x[key] = v with integer tensors, lists, ranges, numpy arrays
and bool masks mixed with ints, slices, None and ...).

Every case is a function of the module (torch or tensord), run once with each: values, dtypes,
shapes, printed text (str with "torch." read as "tensord."), error texts and kinds, and, for
the differentiable ones, gradients and grad_fn names. The advanced-indexing cases come from a
seeded generator of random keys over random shapes (GEN_CASES of them, reading and writing).
"""
import random

import numpy as np
import pytest
import torch

import tensord


class Raised:
    """An exception's first line, compared with torch's by text and class: tensord's exception
    must be an instance of the class torch raised (tensord's out-of-range errors are both
    IndexError and RuntimeError)."""

    def __init__(self, e):
        self.e = e
        self.text = (e.message if isinstance(e, tensord.TensorError) else str(e)).split("\n")[0]

    def __eq__(self, torch_side):
        return self.text == torch_side.text and isinstance(self.e, type(torch_side.e))

    def __repr__(self):
        return "%s(%r)" % (type(self.e).__name__, self.text)


def outcome(m, case):
    """(values, dtype, shape, printed text) or ("error", Raised)."""
    try:
        r = case(m)
        return (r.tolist(), str(r.dtype).split(".")[1], list(r.shape),
                str(r).replace("torch.", "tensord."))
    except (RuntimeError, IndexError, TypeError, ValueError, tensord.TensorError) as e:
        return ("error", Raised(e))


def same(want, got):
    if want[0] == "error" or got[0] == "error":
        assert got == want
        return
    assert got[1:] == want[1:]
    assert np.allclose(np.array(got[0], dtype=float), np.array(want[0], dtype=float),
                       rtol=1e-6, atol=1e-6), (got[0], want[0])


def X(m, dt="float32"):
    return m.tensor([[1.5, -2.0, 3.0, 0.0], [4.0, 5.5, -6.0, 7.0], [8.0, 0.0, 9.5, -1.0]],
                    dtype=getattr(m, dt))


def XI(m):
    return m.tensor([[1, -2, 3], [4, 5, -6]])


def I(m, data):
    return m.tensor(data)


VALUES = {
    # gather
    "gather_d1": lambda m: m.gather(X(m), 1, I(m, [[0, 3], [2, 2], [1, 0]])),
    "gather_d0": lambda m: X(m).gather(0, I(m, [[2, 0, 1, 1]])),
    "gather_neg_dim": lambda m: X(m).gather(-1, I(m, [[3], [0], [1]])),
    "gather_int": lambda m: XI(m).gather(1, I(m, [[2, 2], [0, 1]])),
    "gather_f64_t": lambda m: X(m, "float64").t().gather(0, I(m, [[3, 0, 1], [2, 2, 2]])),
    "gather_oob": lambda m: X(m).gather(1, I(m, [[0, 4]])),
    "gather_neg_idx": lambda m: X(m).gather(1, I(m, [[0, -1]])),
    "gather_int32_idx": lambda m: X(m).gather(1, m.tensor([[0]], dtype=m.int32)),
    "gather_rank": lambda m: X(m).gather(1, I(m, [0, 1])),
    "gather_size": lambda m: X(m).gather(1, I(m, [[0], [1], [2], [0]])),
    # scatter / scatter_add
    "scatter_src": lambda m: X(m).scatter(1, I(m, [[3, 0], [1, 2]]), m.tensor([[10.0, 20.0],
                                                                              [30.0, 40.0]])),
    "scatter_value": lambda m: X(m).scatter(0, I(m, [[2, 1, 0, 2]]), -7.5),
    "scatter_int": lambda m: XI(m).scatter(1, I(m, [[0], [2]]), 9),
    "scatter_inplace": lambda m: X(m).scatter_(1, I(m, [[1]]), m.tensor([[99.0]])),
    "scatter_dtype": lambda m: X(m).scatter(1, I(m, [[1]]), m.tensor([[99]])),
    "scatter_oob": lambda m: X(m).scatter(1, I(m, [[5]]), 1.0),
    "scatter_add": lambda m: X(m).scatter_add(1, I(m, [[0, 0, 0], [3, 3, 1]]),
                                              m.ones(2, 3)),
    "scatter_add_int": lambda m: XI(m).scatter_add(0, I(m, [[1, 1, 0]]), I(m, [[5, 6, 7]])),
    "scatter_add_inplace": lambda m: X(m).scatter_add_(0, I(m, [[2, 2, 2, 2]]), m.ones(1, 4)),
    # index_select
    "index_select_d0": lambda m: X(m).index_select(0, I(m, [2, 0, 2])),
    "index_select_d1": lambda m: m.index_select(X(m), 1, I(m, [3, 1])),
    "index_select_int32": lambda m: X(m).index_select(1, m.tensor([3, 1], dtype=m.int32)),
    "index_select_t": lambda m: X(m).t().index_select(1, I(m, [1])),
    "index_select_empty": lambda m: X(m).index_select(0, m.tensor([], dtype=m.int64)),
    "index_select_oob": lambda m: X(m).index_select(0, I(m, [3])),
    "index_select_neg": lambda m: X(m).index_select(0, I(m, [-1])),
    "index_select_2d": lambda m: X(m).index_select(0, I(m, [[0]])),
    "index_select_float": lambda m: X(m).index_select(0, m.tensor([0.0])),
    # index_add
    "index_add": lambda m: X(m).index_add(1, I(m, [3, 0, 3]), m.ones(3, 3)),
    "index_add_inplace": lambda m: X(m).index_add_(0, I(m, [1]), m.full((1, 4), 2.0)),
    "index_add_int": lambda m: XI(m).index_add(0, I(m, [0, 0]), I(m, [[1, 1, 1], [2, 2, 2]])),
    "index_add_dtype": lambda m: X(m).index_add(0, I(m, [0]), I(m, [[1, 1, 1, 1]])),
    "index_add_oob": lambda m: X(m).index_add(0, I(m, [7]), m.ones(1, 4)),
    "index_add_count": lambda m: X(m).index_add(0, I(m, [0, 1]), m.ones(1, 4)),
    # masked_fill
    "masked_fill": lambda m: X(m).masked_fill(X(m) > 2, 0.25),
    "masked_fill_bcast": lambda m: X(m).masked_fill(m.tensor([True, False, False, True]), -1.0),
    "masked_fill_tensor": lambda m: X(m).masked_fill(X(m) < 0, m.tensor(3.0)),
    "masked_fill_int": lambda m: XI(m).masked_fill(XI(m) < 0, 0),
    "masked_fill_inplace": lambda m: X(m).masked_fill_(X(m) == 0, 100.0),
    "masked_fill_value_dims": lambda m: X(m).masked_fill(X(m) > 0, m.tensor([1.0])),
    # masked_select
    "masked_select": lambda m: X(m).masked_select(X(m) > 1),
    "masked_select_bcast": lambda m: m.masked_select(X(m), m.tensor([False, True, True, False])),
    "masked_select_int": lambda m: XI(m).masked_select(XI(m) > 0),
    "masked_select_none": lambda m: X(m).masked_select(X(m) > 100),
    "masked_select_long_mask": lambda m: X(m).masked_select(I(m, [1, 0, 1, 0])),
    # nonzero
    "nonzero": lambda m: m.nonzero(X(m)),
    "nonzero_bool": lambda m: (X(m) > 2).nonzero(),
    "nonzero_1d": lambda m: m.tensor([0, 3, 0, 1]).nonzero(),
    "nonzero_t": lambda m: X(m).t().nonzero(),
    # take
    "take": lambda m: X(m).take(I(m, [[0, 11], [-1, 5]])),
    "take_t": lambda m: m.take(X(m).t(), I(m, [1, 2, 3])),
    "take_oob": lambda m: X(m).take(I(m, [12])),
    "take_int32": lambda m: X(m).take(m.tensor([1], dtype=m.int32)),
    # advanced indexing, hand-written
    "adv_rows": lambda m: X(m)[I(m, [2, 0])],
    "adv_pairs": lambda m: X(m)[range(3), I(m, [3, 0, 1])],
    "adv_lists": lambda m: X(m)[[0, 1], [1, 2]],
    "adv_mask": lambda m: X(m)[X(m) > 1],
    "adv_row_mask": lambda m: X(m)[m.tensor([True, False, True])],
    "adv_col_slice": lambda m: X(m)[:, [3, 1]],
    "adv_int_and_list": lambda m: X(m)[1, [3, 1]],
    "adv_bcast": lambda m: X(m)[I(m, [[0], [2]]), I(m, [1, 3])],
    "adv_not_adjacent": lambda m: m.arange(24.0).reshape(2, 3, 4)[[0, 1], :, [1, 2]],
    "adv_adjacent": lambda m: m.arange(24.0).reshape(2, 3, 4)[:, [0, 2], [1, 3]],
    "adv_none": lambda m: X(m)[None, [0, 2]],
    "adv_ellipsis": lambda m: m.arange(24.0).reshape(2, 3, 4)[..., [0, 3]],
    "adv_numpy": lambda m: X(m)[np.array([2, 1])],
    "adv_numpy_mask": lambda m: X(m)[np.array([True, False, True])],
    "adv_empty": lambda m: X(m)[[]],
    "adv_float_list": lambda m: X(m)[[0.5, 2.7]],
    "adv_mixed_list": lambda m: X(m)[[1.0, True]],
    "adv_oob": lambda m: X(m)[I(m, [3])],
    "adv_neg_oob": lambda m: X(m)[:, I(m, [-5])],
    "adv_float_index": lambda m: X(m)[m.tensor([0.0])],
    "adv_int32_index": lambda m: X(m)[m.tensor([0], dtype=m.int32)],
    "adv_bcast_error": lambda m: X(m)[I(m, [0, 1]), I(m, [0, 1, 2])],
    "adv_mask_shape": lambda m: X(m)[m.tensor([True, False])],
    "adv_too_many": lambda m: X(m)[[0], [0], [0]],
    "adv_int_tensor0d": lambda m: X(m)[m.tensor(1), [0, 1]],
}

# op name -> cases whose results differentiate
GRADS = {
    "gather": lambda m, x: x.gather(1, I(m, [[0, 3, 3], [2, 2, 1], [1, 0, 0]])),
    "scatter": lambda m, x: x.scatter(1, I(m, [[3, 0], [1, 2]]), x[:2, :2] * 2),
    "scatter_value": lambda m, x: x.scatter(0, I(m, [[2, 1, 0, 2]]), -7.5),
    "scatter_add": lambda m, x: x.scatter_add(1, I(m, [[0, 0, 0], [3, 3, 1]]), x[:2, 1:] * 3),
    "index_select": lambda m, x: x.index_select(1, I(m, [3, 1, 3])),
    "index_add": lambda m, x: x.index_add(1, I(m, [3, 0, 3]), x[:, :3] * 2),
    "masked_fill": lambda m, x: x.masked_fill(m.tensor([True, False, False, True]), 0.5),
    "masked_fill_t": lambda m, x: x.masked_fill(m.tensor([True, False, False, True]),
                                                x[0, 0] * 2),
    "masked_select": lambda m, x: x.masked_select(m.tensor([True, False, True, True])),
    "take": lambda m, x: x.take(I(m, [0, 11, -1, 0])),
    "index": lambda m, x: x[I(m, [[0], [2]]), I(m, [1, 3, 1])],
    "index_mask": lambda m, x: x[m.tensor([True, False, True])],
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_text_and_errors_match_torch(td, name):
    want, got = outcome(torch, VALUES[name]), outcome(td, VALUES[name])
    if name in RUNTIME_NOT_INDEX:
        # the same text; tensord raises its RuntimeError where torch raises IndexError (the
        # client's _error makes IndexError of "out of range"/"out of bounds" texts only)
        assert got[0] == want[0] == "error" and got[1].text == want[1].text
        assert isinstance(want[1].e, IndexError) and isinstance(got[1].e, RuntimeError)
        return
    same(want, got)


RUNTIME_NOT_INDEX = {"index_select_2d"}


def grads(m, call):
    leaf = X(m).requires_grad_()
    y = call(m, leaf * 1)
    w = m.tensor(np.linspace(-1.0, 2.0, y.numel()).reshape(tuple(y.shape)).tolist(),
                 dtype=m.float32)
    (y * w).sum().backward()
    return (y.grad_fn.name(), str(y).replace("torch.", "tensord."), leaf.grad.tolist())


@pytest.mark.parametrize("name", sorted(GRADS))
def test_grads_and_names_match_torch(td, name):
    want, got = grads(torch, GRADS[name]), grads(td, GRADS[name])
    assert got[:2] == want[:2]
    assert np.allclose(np.array(got[2]), np.array(want[2]), rtol=1e-6, atol=1e-6)


def test_nonzero_as_tuple(td):
    for call in (lambda m: m.nonzero(X(m) > 2, as_tuple=True),
                 lambda m: (X(m) > 2).nonzero(as_tuple=True),
                 lambda m: m.nonzero(m.tensor([0.0, 1.0, 2.0]), as_tuple=True),
                 lambda m: m.tensor(1.0).nonzero(as_tuple=True)):
        want, got = call(torch), call(td)
        assert isinstance(got, tuple) and len(got) == len(want)
        for a, b in zip(want, got):
            assert b.tolist() == a.tolist() and str(b.dtype) == str(a.dtype).replace("torch",
                                                                                     "tensord")


def test_setitem_forms_match_torch(td):
    def run(m):
        x = X(m)
        x[x < 0] = 0
        x[[0, 2], [1, 1]] = m.tensor([10.0, 20.0])
        x[1, [0, 3]] = 5
        x[:, m.tensor([True, False, True, False])] = m.tensor([[1.0, 2.0]])
        x[range(2), 3] = -1.0
        return x
    same(outcome(torch, run), outcome(td, run))


def test_setitem_grads_match_torch(td):
    def run(m):
        leaf = X(m).requires_grad_()
        v = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        x = leaf * 1
        x[[0, 2, 2], [1, 1, 3]] = v
        x[x > 7] = 0.0
        h = leaf * 2
        g = (x * h).sum() * 1
        g.backward()
        return (x.grad_fn.name(), leaf.grad.tolist(), v.grad.tolist())
    assert run(td) == run(torch)


def test_two_layer_net_mask_pattern(td):
    """grad_h[h < 0] = 0 and logits[range(n), targets], as the tutorials write them."""
    def run(m):
        h = m.tensor([[0.5, -1.0, 2.0], [-0.5, 1.5, -2.0]])
        grad_h = m.ones(2, 3)
        grad_h[h < 0] = 0
        logits = m.tensor([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
        targets = m.tensor([1, 0])
        return grad_h.sum() + logits[range(2), targets].sum()
    same(outcome(torch, run), outcome(td, run))


# ---- the generator: random keys over random shapes ----

GEN_CASES = 400


def _gen_key(rng, shape):
    """A random key as a spec (materialised per module by _key)."""
    n = len(shape)
    spec, pos, used_ellipsis = [], 0, False
    bshape = [rng.randint(1, 3) for _ in range(rng.randint(0, 2))]
    while pos < n or (not spec):
        kind = rng.choice(["int", "slice", "none", "ellipsis", "tensor", "list", "range", "mask",
                           "np", "full"])
        if pos >= n and kind not in ("none",):
            kind = "none"
        size = shape[pos] if pos < n else 1
        oob = rng.random() < 0.03
        if kind == "int":
            spec.append(("int", rng.randrange(-size, size) if size and not oob else size))
            pos += 1
        elif kind == "slice":
            a = rng.choice([None, 0, 1, -1])
            b = rng.choice([None, size, -1, 2])
            spec.append(("slice", (a, b, rng.choice([None, 1, 2]))))
            pos += 1
        elif kind == "full":
            spec.append(("slice", (None, None, None)))
            pos += 1
        elif kind == "none":
            spec.append(("none", None))
        elif kind == "ellipsis" and not used_ellipsis:
            used_ellipsis = True
            spec.append(("ellipsis", None))
            pos = n  # the rest taken whole
        elif kind in ("tensor", "list", "np"):
            sh = [s if rng.random() < 0.7 else 1 for s in bshape]
            sh = sh[rng.randint(0, len(sh)):] if sh and rng.random() < 0.3 else sh
            cnt = int(np.prod(sh)) if sh else 1
            hi = size if size else 1
            vals = [rng.randrange(-hi, hi) if size else 0 for _ in range(cnt)]
            if oob:
                vals[0] = hi
            arr = np.array(vals, dtype=np.int64).reshape(sh)
            if kind == "list" and arr.ndim == 0:
                kind = "tensor"
            spec.append((kind, arr))
            pos += 1
        elif kind == "range":
            lo = rng.randint(0, max(size - 1, 0))
            spec.append(("range", (lo, min(size, lo + (bshape[-1] if bshape else 1)))))
            pos += 1
        elif kind == "mask":
            k = min(rng.randint(1, 2), n - pos)
            sh = list(shape[pos:pos + k])
            if oob:
                sh[0] += 1
            bits = np.array([rng.random() < 0.5 for _ in range(int(np.prod(sh)))],
                            dtype=bool).reshape(sh)
            spec.append(("mask", bits))
            pos += k
    return spec


def _key(m, spec):
    out = []
    for kind, v in spec:
        if kind == "int":
            out.append(v)
        elif kind == "slice":
            out.append(slice(*v))
        elif kind == "none":
            out.append(None)
        elif kind == "ellipsis":
            out.append(Ellipsis)
        elif kind == "tensor":
            out.append(m.tensor(v.tolist(), dtype=m.int64))
        elif kind == "list":
            out.append(v.tolist())
        elif kind == "np":
            out.append(v.copy())
        elif kind == "range":
            out.append(range(*v))
        elif kind == "mask":
            out.append(m.tensor(v.tolist()))
    return tuple(out)


def _gen(seed):
    rng = random.Random(seed)
    shape = [rng.randint(1, 4) for _ in range(rng.randint(1, 4))]
    return rng, shape, _gen_key(rng, shape)


def _base(m, shape):
    n = int(np.prod(shape))
    return m.arange(float(n)).reshape(*shape) * 0.5 - 1.0


def _read(m, shape, spec):
    leaf = _base(m, shape).requires_grad_()
    y = (leaf * 1)[_key(m, spec)]
    if y.numel() > 0:
        w = m.tensor(np.linspace(-1.0, 2.0, y.numel()).reshape(tuple(y.shape)).tolist())
        (y * w).sum().backward()
    return y, leaf.grad


def _gen_outcome(m, fn):
    try:
        y, g = fn(m)
        # x[...] is torch's alias (AliasBackward0); tensord has no alias op and makes a view
        text = str(y).replace("torch.", "tensord.").replace("AliasBackward0", "ViewBackward0")
        return ("ok", y.tolist(), list(y.shape), str(y.dtype).split(".")[1], text,
                None if g is None else g.tolist())
    except (RuntimeError, IndexError, TypeError, ValueError, tensord.TensorError) as e:
        return ("error", Raised(e))


@pytest.mark.parametrize("seed", range(GEN_CASES))
def test_generated_reads_match_torch(td, seed):
    _, shape, spec = _gen(seed)
    want = _gen_outcome(torch, lambda m: _read(m, shape, spec))
    got = _gen_outcome(td, lambda m: _read(m, shape, spec))
    assert got == want, (shape, spec)


ADVANCED = ("tensor", "list", "np", "range", "mask")


def _write(m, shape, spec, mode):
    """x[key] = v; with grads when the key is advanced items only (a write through a view of a
    tensor in a graph is not supported yet: torch's CopySlices)."""
    grad = all(k in ("range", "mask") or (k in ADVANCED and v.ndim > 0) for k, v in spec)
    leaf = _base(m, shape).requires_grad_(grad)
    x = leaf * 1
    key = _key(m, spec)
    sel = torch.zeros(shape)[_key(torch, spec)].shape  # the selection's shape, from torch
    v = None
    if mode == "scalar":
        x[key] = 7.0
    else:
        sh = list(sel) if mode == "full" else list(sel)[1:] if len(sel) > 0 else []
        n = int(np.prod(sh)) if sh else 1
        v = m.tensor(np.linspace(1.0, 3.0, n).reshape(sh).tolist()) if n else m.zeros(sh)
        v.requires_grad_(grad)
        x[key] = v
    if not grad:
        return x, None
    (x * (_base(m, shape) + 2)).sum().backward()
    return x, leaf.grad if v is None else m.cat([leaf.grad.reshape(-1), v.grad.reshape(-1)])


@pytest.mark.parametrize("seed", range(GEN_CASES))
def test_generated_writes_match_torch(td, seed):
    rng, shape, spec = _gen(seed)
    try:
        torch.zeros(shape)[_key(torch, spec)]
    except (IndexError, RuntimeError):
        return  # the reads' test covers the error
    mode = rng.choice(["scalar", "full", "bcast"])
    if any(k in ("tensor", "list", "np", "range") for k, _ in spec) and mode != "scalar":
        # duplicates written without accumulate: torch's CPU order is its own; keep it unique
        sel = torch.zeros(shape)[_key(torch, spec)]
        idx = torch.arange(float(np.prod(shape))).reshape(shape)[_key(torch, spec)]
        if idx.numel() != len(set(idx.reshape(-1).tolist())) or sel.numel() == 0:
            mode = "scalar"
    want = _gen_outcome(torch, lambda m: _write(m, shape, spec, mode))
    got = _gen_outcome(td, lambda m: _write(m, shape, spec, mode))
    assert got == want, (shape, spec, mode)
