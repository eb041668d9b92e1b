"""Sorting and selection against PyTorch through the Python client: cumprod, sort, argsort,
topk, kthvalue, median, mode, unique, amax, amin, var_mean, std_mean, count_nonzero.

Each case is a function of the module (torch or tensord), run once with each. What is compared
is the printed text (str() of the result, "torch." read as "tensord."), which carries values,
dtypes, shapes and torch's return types (`torch.return_types.sort(values=..., indices=...)`,
plain tuples for var_mean and unique), or the error text; and for differentiable ops the
gradient, its printed text, and the grad_fn name. Inputs have no ties where torch leaves the
choice of index to its algorithm (topk, kthvalue and median report some tied index; tensord the
first, torch whichever its selection algorithm met). The same statements through tensorctl
print what torch prints.
"""

import os
import subprocess

import pytest
import torch

import tensord

X = [[3.0, 1.0, 2.0, 7.0], [-1.0, 4.0, 0.5, 5.0], [2.5, -3.0, 6.0, 0.25]]  # (3, 4), no ties
L = [[3, 1, 2, 3], [1, 4, 4, 4], [2, 2, 6, 0]]                              # (3, 4) int64


def x(m, dt=None):
    return m.tensor(X, dtype=None if dt is None else getattr(m, dt))


def li(m, dt=None):
    return m.tensor(L, dtype=None if dt is None else getattr(m, dt))


CASES = {
    # cumprod
    "cumprod": lambda m: m.cumprod(x(m), 1),
    "cumprod_method": lambda m: x(m).cumprod(dim=0),
    "cumprod_dtype": lambda m: x(m).cumprod(1, dtype=m.float64),
    "cumprod_int32": lambda m: li(m, "int32").cumprod(1),
    "cumprod_bool": lambda m: m.tensor([True, True, False]).cumprod(0),
    "cumprod_zeros": lambda m: m.tensor([2.0, 0.0, 3.0]).cumprod(0),
    "cumprod_strided": lambda m: x(m).t().cumprod(1),
    "cumprod_0d": lambda m: m.tensor(3.0).cumprod(0),
    "cumprod_empty": lambda m: m.ones(0, 2).cumprod(0),
    "cumprod_err_dim": lambda m: x(m).cumprod(2),
    # sort
    "sort": lambda m: x(m).sort(),
    "sort_fn": lambda m: m.sort(x(m), 0),
    "sort_desc": lambda m: x(m).sort(dim=1, descending=True),
    "sort_positional_desc": lambda m: x(m).sort(0, True),
    "sort_stable": lambda m: li(m).sort(stable=True),
    "sort_int_ties": lambda m: m.tensor([3, 1, 3, 1, 2]).sort(),
    "sort_int_ties_desc": lambda m: m.tensor([3, 1, 3, 1, 2]).sort(descending=True),
    "sort_nan": lambda m: m.tensor([2.0, float("nan"), -1.0]).sort(),
    "sort_nan_desc": lambda m: m.tensor([2.0, float("nan"), -1.0]).sort(descending=True),
    "sort_bool": lambda m: m.tensor([True, False, True]).sort(),
    "sort_f64": lambda m: x(m, "float64").sort(0),
    "sort_strided": lambda m: x(m).t().sort(),
    "sort_0d": lambda m: m.tensor(5.0).sort(),
    "sort_empty": lambda m: m.ones(0, 3).sort(0),
    "sort_err_dim": lambda m: x(m).sort(2),
    "sort_values": lambda m: x(m).sort().values,
    "sort_indices": lambda m: x(m).sort(1).indices,
    "sort_unpack": lambda m: (lambda v_i: v_i[1] * 10 + v_i[0].long())(x(m).sort(0)),
    # argsort
    "argsort": lambda m: x(m).argsort(),
    "argsort_fn": lambda m: m.argsort(x(m), dim=0, descending=True),
    "argsort_ties": lambda m: m.tensor([3, 1, 3, 1, 2]).argsort(),
    # topk
    "topk": lambda m: x(m).topk(2),
    "topk_fn": lambda m: m.topk(x(m), 1, dim=0),
    "topk_smallest": lambda m: x(m).topk(3, largest=False),
    "topk_dim0": lambda m: x(m).topk(3, 0),
    "topk_zero": lambda m: x(m).topk(0),
    "topk_int": lambda m: m.tensor([5, 9, 1, 7]).topk(2),
    "topk_err_k": lambda m: x(m).topk(5),
    "topk_err_neg": lambda m: x(m).topk(-1),
    # kthvalue
    "kthvalue": lambda m: x(m).kthvalue(2),
    "kthvalue_fn_dim0": lambda m: m.kthvalue(x(m), 3, 0),
    "kthvalue_keepdim": lambda m: x(m).kthvalue(1, 1, True),
    "kthvalue_err_k": lambda m: x(m).kthvalue(5),
    "kthvalue_err_zero": lambda m: x(m).kthvalue(0),
    "kthvalue_err_empty": lambda m: m.ones(2, 0).kthvalue(1),
    # median
    "median_all": lambda m: x(m).median(),
    "median_all_fn": lambda m: m.median(x(m)),
    "median_all_int": lambda m: li(m).median(),
    "median_all_even": lambda m: m.tensor([4.0, 1.0, 3.0, 2.0]).median(),
    "median_all_nan": lambda m: m.tensor([4.0, float("nan"), 3.0]).median(),
    "median_all_empty": lambda m: m.ones(0).median(),
    "median_dim": lambda m: x(m).median(1),
    "median_dim0_keep": lambda m: x(m).median(0, keepdim=True),
    "median_dim_nan": lambda m: m.tensor([[1.0, float("nan"), 0.0], [2.0, 3.0, 1.0]]).median(1),
    "median_err_empty": lambda m: m.ones(0, 3).median(0),
    # mode
    "mode": lambda m: li(m).mode(),
    "mode_fn": lambda m: m.mode(li(m), 0),
    "mode_keepdim": lambda m: li(m).mode(1, True),
    "mode_flat": lambda m: m.tensor([1, 2, 2, 3, 3, 1]).mode(),
    "mode_float": lambda m: m.tensor([0.5, 1.5, 0.5]).mode(),
    "mode_err_empty": lambda m: m.ones(2, 0).mode(1),
    # unique
    "unique": lambda m: m.unique(li(m)),
    "unique_method": lambda m: li(m).unique(),
    "unique_inverse": lambda m: m.unique(li(m), return_inverse=True),
    "unique_counts": lambda m: m.unique(li(m), return_counts=True),
    "unique_both": lambda m: li(m).unique(return_inverse=True, return_counts=True),
    "unique_float": lambda m: m.tensor([2.5, -1.0, 2.5, 0.0]).unique(),
    "unique_bool": lambda m: m.tensor([True, False, True]).unique(return_counts=True),
    "unique_unsorted": lambda m: m.unique(m.tensor([1, 1, 1]), sorted=False),
    "unique_empty": lambda m: m.ones(0).unique(return_counts=True),
    # amax, amin
    "amax": lambda m: x(m).amax(),
    "amax_dim": lambda m: x(m).amax(1),
    "amax_dims_keep": lambda m: m.amax(x(m), (0, 1), keepdim=True),
    "amax_int": lambda m: li(m).amax(0),
    "amin": lambda m: m.amin(x(m)),
    "amin_dim": lambda m: x(m).amin(dim=0, keepdim=True),
    "amin_neg": lambda m: x(m).amin(-1),
    "amin_strided": lambda m: x(m).t().amin(1),
    "amax_nan": lambda m: m.tensor([1.0, float("nan"), 2.0]).amax(),
    "amax_err_dup": lambda m: x(m).amax((0, 0)),
    "amax_err_empty": lambda m: m.ones(0).amax(),
    "amax_err_dim": lambda m: x(m).amax(2),
    # var_mean, std_mean
    "var_mean": lambda m: m.var_mean(x(m)),
    "var_mean_dim": lambda m: m.var_mean(x(m), 1),
    "var_mean_keep": lambda m: m.var_mean(x(m), 0, keepdim=True),
    "var_mean_unbiased": lambda m: m.var_mean(x(m), 1, False),
    "var_mean_correction": lambda m: m.var_mean(x(m), dim=1, correction=0),
    "std_mean": lambda m: m.std_mean(x(m)),
    "std_mean_dims": lambda m: m.std_mean(x(m), (0, 1), keepdim=True),
    "std_mean_f64": lambda m: m.std_mean(x(m, "float64"), 0),
    "var_mean_err_int": lambda m: m.var_mean(li(m)),
    "std_mean_err_bool": lambda m: m.std_mean(m.tensor([True])),
    "var_mean_err_dim": lambda m: m.var_mean(x(m), 2),
    # count_nonzero
    "count_nonzero": lambda m: m.count_nonzero(li(m) - 4),
    "count_nonzero_dim": lambda m: (li(m) - 4).count_nonzero(0),
    "count_nonzero_dims": lambda m: m.count_nonzero(x(m) - 2.0, (0, 1)),
    "count_nonzero_bool": lambda m: m.tensor([True, False, True]).count_nonzero(),
}


def outcome(m, case):
    try:
        return str(case(m)).replace("torch.", "tensord.")
    except (RuntimeError, IndexError, TypeError, tensord.TensorError) as e:
        return "error: " + (e.message if isinstance(e, tensord.TensorError) else str(e))


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(td, name):
    assert outcome(td, CASES[name]) == outcome(torch, CASES[name])


def test_sort_unpacks_and_names(td):
    v, i = td.tensor(X).sort()
    r = td.tensor(X).sort()
    assert r.values.tolist() == v.tolist() and r.indices.tolist() == i.tolist()
    assert len(r) == 2 and r[0].tolist() == v.tolist()
    assert type(r).__name__ == "sort" and isinstance(r, tuple)
    assert not i.requires_grad


# differentiable forms: (the op on a leaf x, what to backward through)
GRADS = {
    "cumprod": lambda m, x: x.cumprod(1),
    "cumprod_zero": lambda m, x: (x * m.tensor([1.0, 0.0, 1.0, 0.0])).cumprod(1),
    "sort": lambda m, x: x.sort(1).values,
    "sort_desc0": lambda m, x: x.sort(0, descending=True)[0],
    "topk": lambda m, x: x.topk(2).values,
    "kthvalue": lambda m, x: x.kthvalue(2, 0).values,
    "kthvalue_keep": lambda m, x: x.kthvalue(2, 1, True).values,
    "median_all": lambda m, x: x.median(),
    "median_dim": lambda m, x: x.median(1).values,
    "mode": lambda m, x: m.tensor([[1.0, 2.0, 1.0]], requires_grad=True).mode().values,
    "amax": lambda m, x: x.amax(1),
    "amax_all": lambda m, x: x.amax(),
    "amin_keep": lambda m, x: x.amin(0, True),
    "var_mean": lambda m, x: m.var_mean(x, 1)[0],
    "std_mean": lambda m, x: m.std_mean(x)[0],
    "var_mean_mean": lambda m, x: m.var_mean(x, 1)[1],
}


def grad_outcome(m, make, ties=False):
    leaf = m.tensor([[1.0, 2.0, 2.0], [0.5, 2.0, 2.0]] if ties else X, requires_grad=True)
    y = make(m, leaf)
    w = m.arange(1, y.numel() + 1, dtype=m.float32).reshape(y.shape)
    (y * w).sum().backward()
    return str(leaf.grad).replace("torch.", "tensord."), y.requires_grad


@pytest.mark.parametrize("name", sorted(GRADS))
def test_grad_matches_torch(td, name):
    if name == "mode":  # its own leaf
        def run(m):
            leaf = m.tensor([[1.0, 2.0, 1.0]], requires_grad=True)
            leaf.mode().values.sum().backward()
            return str(leaf.grad).replace("torch.", "tensord.")
        assert run(td) == run(torch)
        return
    assert grad_outcome(td, GRADS[name]) == grad_outcome(torch, GRADS[name])


@pytest.mark.parametrize("name", ["amax", "amax_all", "amin_keep"])
def test_amax_amin_share_grad_among_ties(td, name):
    assert grad_outcome(td, GRADS[name], ties=True) == grad_outcome(torch, GRADS[name], ties=True)


GRAD_FN = {
    "cumprod": lambda m, x: x.cumprod(0),
    "sort": lambda m, x: x.sort()[0],
    "topk": lambda m, x: x.topk(1).values,
    "kthvalue": lambda m, x: x.kthvalue(1).values,
    "median_all": lambda m, x: x.median(),
    "median_dim": lambda m, x: x.median(0).values,
    "mode": lambda m, x: x.mode().values,
    "amax": lambda m, x: x.amax(),
    "amin": lambda m, x: x.amin(0),
    "var_mean": lambda m, x: m.var_mean(x)[0],
    "std_mean": lambda m, x: m.std_mean(x, 0)[0],
    "var_mean_mean": lambda m, x: m.var_mean(x, 1)[1],
    "std_mean_mean": lambda m, x: m.std_mean(x)[1],
}


def test_var_mean_prints_as_torch_with_grad(td):
    def run(m):
        return str(m.var_mean(m.tensor(X, requires_grad=True), 0)).replace("torch.", "tensord.")
    assert run(td) == run(torch)


@pytest.mark.parametrize("name", sorted(GRAD_FN))
def test_grad_fn_names(td, name):
    def run(m):
        return GRAD_FN[name](m, m.tensor(X, requires_grad=True)).grad_fn.name()
    assert run(td) == run(torch)


def test_indices_never_require_grad(td):
    leaf = td.tensor(X, requires_grad=True)
    for r in (leaf.sort(), leaf.topk(2), leaf.kthvalue(1), leaf.median(0), leaf.mode()):
        assert r.values.requires_grad and not r.indices.requires_grad
        assert r.indices.dtype == td.int64


# tensorctl: the same statements print what torch prints (names after "torch." dropped)
TENSORCTL = os.environ.get("TENSORCTL_BIN", os.path.join(os.path.dirname(os.path.abspath(
    __file__)), "..", "..", "build", "tensorctl"))
CLI = [
    "x.sort()", "x.sort(0, True)", "x.sort(descending=True).indices", "x.argsort(dim=0)",
    "x.topk(2)", "x.topk(1, largest=False)", "x.kthvalue(2, 0)", "x.median()", "x.median(1)",
    "li.mode()", "unique(li)", "unique(li, return_counts=True)",
    "li.unique(return_inverse=True, return_counts=True)", "x.amax(1, True)", "amin(x, (0, 1))",
    "var_mean(x, 1)", "std_mean(x)", "x.count_nonzero(0)", "cumprod(li, 1)",
    "x.cumprod(0, dtype=float64)", "x.sort()[0]", "x.max(1)",
]


@pytest.mark.parametrize("expr", CLI)
def test_tensorctl_prints_what_torch_prints(daemon, expr):
    setup = "x = tensor(%r); li = tensor(%r)" % (X, L)
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon)
    env.pop("TENSORD_TOKEN", None)
    got = subprocess.run([TENSORCTL, "-q", "-c", setup + "; print(%s)" % expr],
                         capture_output=True, text=True, env=env, timeout=60)
    ns = {k: getattr(torch, k) for k in ("tensor", "unique", "amin", "var_mean", "std_mean",
                                         "cumprod", "float64")}
    ns.update(x=torch.tensor(X), li=torch.tensor(L))
    want = str(eval(expr, ns)).replace("torch.", "tensord.")
    assert (got.stdout.rstrip("\n"), got.stderr) == (want, "")


# The wire: RunOp.out2 / out3 carry outputs 1 and 2 (ops.def's `-> a, b`), refused where the op
# has no such output, all or nothing.
def _wire():
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire
    return wire


def _refused(c, code, req, needle):
    wire = _wire()
    with pytest.raises(wire.ServerError) as e:
        c.call(req)
    assert (e.value.code, needle in e.value.message) == (code, True), e.value.message
    c.free(req.run_op.out)  # the failure record the server keeps under `out`, as clients do


def test_wire_outputs(conn):
    wire = _wire()
    pb = wire.pb
    c = conn
    import numpy as np
    h = c.tensor(np.array([[3, 1, 3], [2, 2, 5]], np.int64))
    # unique's counts alone travel in out3
    r = c.op_request("unique", [wire.H(h)])
    r.run_op.out3 = c.handle()
    c.call(r)
    assert c.get(r.run_op.out)[0].tolist() == [1, 2, 3, 5]
    assert c.get(r.run_op.out3)[0].tolist() == [1, 2, 2, 1]
    before = c.stats().session_tensors
    # an output the op does not have
    r = c.op_request("add", [wire.H(h), wire.H(h)], out2=c.handle())
    _refused(c, pb.INVALID_ARGUMENT, r, "add has no output 2")
    r = c.op_request("sort", [wire.H(h)], dim=1)
    r.run_op.out3 = c.handle()
    _refused(c, pb.INVALID_ARGUMENT, r, "sort has no output 3")
    # one the op gives only for some arguments: median's indices need a dim
    r = c.op_request("median", [wire.H(h)], out2=c.handle())
    _refused(c, pb.INVALID_ARGUMENT, r, "median gives no output 2 for these arguments")
    with pytest.raises(wire.ServerError):
        c.get(r.run_op.out2)
    # clashing handles
    r = c.op_request("unique", [wire.H(h)], out2=c.handle())
    r.run_op.out3 = r.run_op.out2
    _refused(c, pb.HANDLE_IN_USE, r, "out3 must differ from out and out2")
    r = c.op_request("sort", [wire.H(h)], out2=h)
    _refused(c, pb.HANDLE_IN_USE, r, "already in use")
    assert c.stats().session_tensors == before
    assert c.get(h)[0].tolist() == [[3, 1, 3], [2, 2, 5]]
