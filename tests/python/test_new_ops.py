"""dot, mv and cumsum through the Python client, against PyTorch: values, dtypes, gradients,
grad_fn names and error texts, each called with torch's own spellings (torch.dot(a, b),
a.dot(b), torch.cumsum(x, dim=0), x.cumsum(0), x.cumsum(dim=1, dtype=torch.float64)).

Each case is a function of the module (torch or tensord) run once with each; the test compares
what the two give.
"""

import numpy as np
import pytest
import torch

import tensord




def outcome(m, case):
    """(values as a nested list, dtype name, grad_fn name) or ("error", text, kind)."""
    try:
        r = case(m)
        name = r.grad_fn.name() if r.grad_fn is not None else None
        return (r.tolist(), str(r.dtype).split(".")[1], name)
    except (RuntimeError, IndexError, TypeError, tensord.TensorError) as e:
        text = e.message if isinstance(e, tensord.TensorError) else str(e)
        kind = "IndexError" if isinstance(e, IndexError) else \
               "TypeError" if isinstance(e, TypeError) else "RuntimeError"
        return ("error", text, kind)


def same(want, got):
    if want[0] == "error" or got[0] == "error":
        assert got == want
        return
    assert got[1:] == want[1:]
    assert np.allclose(np.array(got[0], dtype=float), np.array(want[0], dtype=float),
                       rtol=1e-6, atol=1e-6), (got[0], want[0])


def A(m, dt=None):
    return m.tensor([1.0, 2.0, 3.0], dtype=dt if dt is None else getattr(m, dt))


def B(m, dt=None):
    return m.tensor([4.0, -5.0, 6.5], dtype=dt if dt is None else getattr(m, dt))


def M(m, dt=None):
    return m.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
                    dtype=dt if dt is None else getattr(m, dt))


def X(m):
    return m.tensor([[1, 2, 3], [4, 5, 6]])


VALUES = {
    # dot
    "dot": lambda m: m.dot(A(m), B(m)),
    "dot_method": lambda m: A(m).dot(B(m)),
    "dot_f64": lambda m: m.dot(A(m, "float64"), B(m, "float64")),
    "dot_long": lambda m: m.dot(m.tensor([1, 2]), m.tensor([3, 4])),
    "dot_int": lambda m: m.dot(m.tensor([1, 2], dtype=m.int32), m.tensor([3, 4], dtype=m.int32)),
    "dot_empty": lambda m: m.dot(m.ones(0), m.ones(0)),
    "dot_strided": lambda m: m.dot(M(m).t()[1], B(m)[0:2]),
    "dot_err_rank": lambda m: m.dot(M(m), B(m)),
    "dot_err_rank2": lambda m: m.dot(A(m), M(m)),
    "dot_err_0d": lambda m: m.dot(m.tensor(1.0), B(m)),
    "dot_err_dtype": lambda m: m.dot(A(m, "float64"), B(m)),
    "dot_err_size": lambda m: m.dot(A(m), m.ones(4)),
    "dot_err_bool": lambda m: m.dot(m.tensor([True]), m.tensor([True])),
    # mv
    "mv": lambda m: m.mv(M(m), A(m)),
    "mv_method": lambda m: M(m).mv(B(m)),
    "mv_transposed": lambda m: M(m).t().mv(m.tensor([1.0, -1.0])),
    "mv_long": lambda m: m.mv(X(m), m.tensor([1, 0, 2])),
    "mv_empty_rows": lambda m: m.mv(m.ones(0, 3), A(m)),
    "mv_empty_inner": lambda m: m.mv(m.ones(2, 0), m.ones(0)),
    "mv_err_rank": lambda m: m.mv(A(m), A(m)),
    "mv_err_rank2": lambda m: m.mv(M(m), M(m)),
    "mv_err_size": lambda m: m.mv(M(m), m.ones(4)),
    "mv_err_dtype": lambda m: m.mv(M(m), A(m, "float64")),
    "mv_err_dtype2": lambda m: m.mv(M(m, "float64"), A(m)),
    "mv_err_bool": lambda m: m.mv(M(m).bool(), A(m).bool()),
    # cumsum
    "cumsum_fn_dim0": lambda m: m.cumsum(X(m), dim=0),
    "cumsum_method_pos": lambda m: X(m).cumsum(0),
    "cumsum_method_kw": lambda m: X(m).cumsum(dim=1),
    "cumsum_fn_pos": lambda m: m.cumsum(X(m), 1),
    "cumsum_neg_dim": lambda m: M(m).cumsum(dim=-1),
    "cumsum_float": lambda m: M(m).cumsum(dim=0),
    "cumsum_int32": lambda m: X(m).int().cumsum(dim=1),
    "cumsum_bool": lambda m: m.tensor([True, False, True]).cumsum(dim=0),
    "cumsum_dtype_f64": lambda m: M(m).cumsum(dim=1, dtype=m.float64),
    "cumsum_dtype_f32_from_long": lambda m: X(m).cumsum(dim=1, dtype=m.float32),
    "cumsum_dtype_int32": lambda m: M(m).cumsum(dim=1, dtype=m.int32),
    "cumsum_0d": lambda m: m.tensor(5.0).cumsum(dim=0),
    "cumsum_0d_neg": lambda m: m.tensor(5.0).cumsum(dim=-1),
    "cumsum_empty": lambda m: m.ones(0, 3).cumsum(dim=1),
    "cumsum_transposed": lambda m: M(m).t().cumsum(dim=1),
    "cumsum_f32_rounding": lambda m: m.tensor([1e8, 1.0, -1e8, 3.0]).cumsum(dim=0),
    "cumsum_err_dim": lambda m: X(m).cumsum(dim=2),
    "cumsum_err_neg_dim": lambda m: X(m).cumsum(dim=-3),
    "cumsum_err_0d_dim": lambda m: m.tensor(5.0).cumsum(dim=1),
    "cumsum_err_bool_dtype": lambda m: M(m).cumsum(dim=1, dtype=m.bool),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_dtypes_and_errors_match_torch(td, name):
    same(outcome(torch, VALUES[name]), outcome(td, VALUES[name]))


def leaf(m, data, dt="float32"):
    return m.tensor(data, dtype=getattr(m, dt), requires_grad=True)


# (inputs, function of the inputs) -> the result whose weighted sum is differentiated
GRADS = {
    "dot": ([[1.0, 2.0, 3.0], [4.0, -5.0, 6.5]], lambda m, a, b: m.dot(a, b)),
    "dot_nonleaf": ([[1.0, 2.0, 3.0], [4.0, -5.0, 6.5]], lambda m, a, b: (a * 2).dot(b * 1)),
    "mv": ([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [0.5, -1.0, 2.0]],
           lambda m, M_, v: m.mv(M_, v)),
    "mv_method_transposed": ([[[1.0, 2.0], [4.0, 5.0], [0.0, 1.0]], [0.5, -1.0, 2.0]],
                             lambda m, M_, v: M_.t().mv(v)),
    "cumsum_dim0": ([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], lambda m, x: x.cumsum(dim=0)),
    "cumsum_dim1": ([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], lambda m, x: m.cumsum(x, dim=1)),
    "cumsum_3d": ([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]],
                  lambda m, x: x.cumsum(dim=1)),
    "cumsum_dtype_f64": ([[1.0, 2.0, 3.0]], lambda m, x: x.cumsum(dim=0, dtype=m.float64)),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_grads_and_names_match_torch(td, name):
    data, f = GRADS[name]
    results = []
    for m in (torch, td):
        xs = [leaf(m, d) for d in data]
        y = f(m, *xs)
        w = m.tensor(np.linspace(0.5, 2.0, int(np.prod(y.shape))).reshape(tuple(y.shape))
                     .tolist(), dtype=y.dtype)
        (y * w).sum().backward()
        results.append((y.grad_fn.name(), str(y.dtype).split(".")[1],
                        [x.grad.tolist() for x in xs], y.tolist()))
    want, got = results
    assert got[:2] == want[:2]
    for g, w in zip(got[2], want[2]):
        assert np.allclose(np.array(g), np.array(w), rtol=1e-6), (g, w)
    assert np.allclose(np.array(got[3]), np.array(want[3]), rtol=1e-6)


def test_dot_and_mv_reprs_match_torch(td):
    for f in (lambda m: m.dot(leaf(m, [1.0, 2.0]), leaf(m, [3.0, 4.0])),
              lambda m: m.mv(leaf(m, [[1.0, 2.0]]), leaf(m, [3.0, 4.0])),
              lambda m: leaf(m, [1.0, 2.0]).cumsum(dim=0)):
        assert repr(f(td)) == repr(f(torch))
