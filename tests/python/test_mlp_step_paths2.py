"""Issue 19, second round (the MLP step, round two): the two paths that round changed, against
PyTorch — linear's forward with a bias as one addmm (the bias rows pre-filled, BLAS adding the
product onto them) for every operand layout, and a leaf's first gradient taken as its .grad
without a copy when nothing else refers to it (the cases where something does must still see a
private copy)."""
import numpy as np
import pytest
import torch

DTYPES = ["float32", "float64"]


def of(td, t):
    return td.from_numpy(t.detach().numpy().copy())


def tol(dt):
    return 1e-5 if dt == "float32" else 1e-12


# Each layout is (torch tensor builder, how the same view is made on the daemon side), so the
# daemon's operand has the same strides as torch's, not a contiguous copy.
def layouts(g, tdt, n, k, m):
    X = torch.randn(n, k, generator=g, dtype=tdt)
    XT = torch.randn(k, n, generator=g, dtype=tdt)
    XW = torch.randn(n, 2 * k, generator=g, dtype=tdt)
    W = torch.randn(m, k, generator=g, dtype=tdt)
    WT = torch.randn(k, m, generator=g, dtype=tdt)
    WW = torch.randn(m, 2 * k, generator=g, dtype=tdt)
    B = torch.randn(m, generator=g, dtype=tdt)
    B2 = torch.randn(2 * m, generator=g, dtype=tdt)
    B1 = torch.randn(1, generator=g, dtype=tdt)
    xs = {"x": (X, lambda v: v), "xT": (XT, lambda v: v.t()), "xstep": (XW, lambda v: v[:, ::2]),
          "xcols": (XW, lambda v: v[:, :k])}
    ws = {"w": (W, lambda v: v), "wT": (WT, lambda v: v.t()), "wstep": (WW, lambda v: v[:, ::2])}
    bs = {"b": (B, lambda v: v), "bstep": (B2, lambda v: v[::2]),
          "bexpand": (B1, lambda v: v.expand(m))}
    return xs, ws, bs


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n,k,m", [(6, 9, 5), (1, 4, 3), (7, 1, 2), (33, 40, 17)])
def test_linear_with_bias_matches_torch_for_every_layout(td, dt, n, k, m):
    """x, W and b contiguous, transposed, stepped, column-sliced, expanded: the same values,
    dtype and shape as torch.nn.functional.linear (the fused path where BLAS reads the operands
    in place, the general path where it cannot; both must agree with torch)."""
    tdt = getattr(torch, dt)
    xs, ws, bs = layouts(torch.Generator().manual_seed(21), tdt, n, k, m)
    for xn, (xb, xv) in xs.items():
        for wn, (wb, wv) in ws.items():
            for bn, (bb, bv) in bs.items():
                want = torch.nn.functional.linear(xv(xb), wv(wb), bv(bb))
                got = td.nn.functional.linear(xv(of(td, xb)), wv(of(td, wb)), bv(of(td, bb)))
                a = got.numpy()
                assert a.dtype == want.numpy().dtype and a.shape == tuple(want.shape)
                np.testing.assert_allclose(a, want.numpy(), rtol=tol(dt), atol=tol(dt),
                                           err_msg="%s %s %s" % (xn, wn, bn))


@pytest.mark.parametrize("dt", DTYPES)
def test_linear_bias_rows_are_the_bias_plus_the_product(td, dt):
    """Hand-derived: x = I (3x3), W = diag(1, 2, 3), b = (10, 20, 30): row i is b plus W's row i;
    an infinite and a NaN bias entry reach every row of their column, as in torch; zero rows of x
    give exactly b."""
    x = np.eye(3, dtype=dt)
    w = np.diag(np.array([1, 2, 3], dtype=dt))
    b = np.array([10, 20, 30], dtype=dt)
    got = td.nn.functional.linear(td.from_numpy(x), td.from_numpy(w), td.from_numpy(b)).numpy()
    np.testing.assert_array_equal(got, np.array([[11, 20, 30], [10, 22, 30], [10, 20, 33]], dt))
    b2 = np.array([np.inf, np.nan, -1.5], dtype=dt)
    z = np.zeros((4, 3), dtype=dt)
    got = td.nn.functional.linear(td.from_numpy(z), td.from_numpy(w), td.from_numpy(b2)).numpy()
    want = torch.nn.functional.linear(torch.from_numpy(z), torch.from_numpy(w),
                                      torch.from_numpy(b2)).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.tile(b2, (4, 1)))


@pytest.mark.parametrize("bad", ["bias_len", "bias_2d", "w_dtype", "inner"])
def test_linear_bad_operands_fail_like_torch(td, bad):
    """Operands the fused path does not take fall to the general path: torch refuses each, so
    tensord must too, and the session goes on serving."""
    x, w, b = torch.randn(4, 5), torch.randn(3, 5), torch.randn(3)
    if bad == "bias_len":
        b = torch.randn(4)
    elif bad == "bias_2d":
        b = torch.randn(2, 3)
    elif bad == "w_dtype":
        w = w.double()
    else:
        w = torch.randn(3, 6)
    with pytest.raises(RuntimeError):
        torch.nn.functional.linear(x, w, b)
    with pytest.raises(Exception):
        td.nn.functional.linear(of(td, x), of(td, w), of(td, b)).numpy()
    ok = td.nn.functional.linear(of(td, x), of(td, torch.ones(3, 5)), of(td, torch.zeros(3)))
    np.testing.assert_allclose(ok.numpy(), x.sum(1, keepdim=True).expand(4, 3).numpy(),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dt", DTYPES)
def test_first_grads_and_accumulation_match_torch(td, dt):
    """Leaf grads that the walk may take without a copy: an MLP's first backward, a second one
    accumulating onto it (a handle bound to .grad between them sees the sum, as in torch), and
    a leaf reached twice (w * w, w + w, w used by two layers)."""
    tdt = getattr(torch, dt)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 6, generator=g, dtype=tdt)
    w = torch.randn(4, 6, generator=g, dtype=tdt)
    b = torch.randn(4, generator=g, dtype=tdt)
    tw, tb = w.clone().requires_grad_(), b.clone().requires_grad_()
    dw, db = of(td, w).requires_grad_(), of(td, b).requires_grad_()
    tdx = of(td, x)

    def losses(W, B, X, F):
        return [F.linear(X, W, B).relu().sum(), (W * W).sum() + (B + B).sum(),
                (F.linear(X, W, B) @ W).sum()]

    for i, (lt, ld) in enumerate(zip(losses(tw, tb, x, torch.nn.functional),
                                     losses(dw, db, tdx, td.nn.functional))):
        lt.backward()
        ld.backward()
        if i == 0:
            bound = dw.grad  # the handle must see later accumulation
            first = dw.grad.numpy().copy()
        for tt, dd in ((tw, dw), (tb, db)):
            np.testing.assert_allclose(dd.grad.numpy(), tt.grad.numpy(), rtol=tol(dt),
                                       atol=tol(dt), err_msg="after loss %d" % i)
    np.testing.assert_allclose(bound.numpy(), tw.grad.numpy(), rtol=tol(dt), atol=tol(dt))
    assert not np.array_equal(first, bound.numpy())


@pytest.mark.parametrize("how", ["add0", "reshape", "view"])
def test_grad_given_by_the_client_is_copied_not_taken(td, how):
    """backward(gradient=G) through an op that passes G on as it is (w + 0) or as a view of it
    (reshape, view): .grad must not share G's bytes (torch: a tensor the caller still holds is
    never stolen), so writing G in place afterwards leaves .grad alone, and .grad written in
    place leaves G alone."""
    shape = (2, 3) if how == "add0" else (6,)
    fwd = {"add0": lambda v: v + 0.0, "reshape": lambda v: v.reshape(6),
           "view": lambda v: v.view(6)}[how]
    w = td.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3)).requires_grad_()
    G = td.from_numpy(np.full(shape, 2.0, dtype=np.float32))
    fwd(w).backward(G)
    tw = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_()
    fwd(tw).backward(torch.full(shape, 2.0))
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())
    G.add_(5.0)
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 3), 2.0, np.float32))
    w.grad.mul_(3.0)
    np.testing.assert_array_equal(G.numpy(), np.full(shape, 7.0, np.float32))
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 3), 6.0, np.float32))


def test_leaf_reached_twice_by_one_gradient(td):
    """w + w hands the same gradient tensor to both inputs: the first reach must not take it as
    .grad, or the second would add into it in place; three uses (w + w + w) and a mix with a
    client gradient give torch's sums."""
    w = td.from_numpy(np.ones((2, 3), np.float32)).requires_grad_()
    tw = torch.ones(2, 3).requires_grad_()
    for f in (lambda v: ((v + v) * 2.0).sum(), lambda v: ((v + v + v) * 1.5).sum(),
              lambda v: (v + v).tanh().sum()):
        f(w).backward()
        f(tw).backward()
        np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-6, atol=1e-6)
    G = td.from_numpy(np.full((2, 3), 0.5, np.float32))
    (w + w).backward(G)
    (tw + tw).backward(torch.full((2, 3), 0.5))
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(G.numpy(), np.full((2, 3), 0.5, np.float32))


def test_retained_graph_backward_twice_accumulates(td):
    """retain_graph: the saved tensors survive the first walk, whose grads become .grad; the
    second walk adds the same again (2x, as torch), and the saved operands are not disturbed."""
    torch.manual_seed(3)
    x, w = torch.randn(5, 4), torch.randn(3, 4)
    tw = w.clone().requires_grad_()
    dw = of(td, w).requires_grad_()
    lt = torch.nn.functional.linear(x, tw).tanh().sum()
    ld = td.nn.functional.linear(of(td, x), dw).tanh().sum()
    lt.backward(retain_graph=True)
    ld.backward(retain_graph=True)
    lt.backward()
    ld.backward()
    np.testing.assert_allclose(dw.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw.numpy(), w.numpy(), rtol=0, atol=0)


def test_linear_dtype_rules_as_torch(td):
    """With a bias and an input of 2 or more dims torch's linear is addmm(b, x, W.T): a bias or
    an input of another dtype than the weight is refused with addmm's message (the bias checked
    first). A 1-D input takes torch's matmul and an in-place add of the bias: the product's
    dtype stays, and a bias of a higher kind is refused with add_'s cast error."""
    f32, f64 = "float32", "float64"
    cases = [((2, 3), f32, f32, f64), ((5, 2, 3), f32, f32, f64), ((2, 3), f64, f64, f32),
             ((2, 3), f32, f64, f64), ((2, 3), f32, f64, f32), ((3,), f32, f32, f64),
             ((3,), f64, f64, f32), ((3,), f32, f32, "int64"), ((3,), "int64", "int64", f32),
             ((2, 3), f64, f64, f64), ((2, 3), "int64", "int64", "int64")]
    for xshape, xd, wd, bd in cases:
        got = []
        for m in (torch, td):
            x = m.ones(xshape, dtype=getattr(m, xd))
            w = m.ones((4, 3), dtype=getattr(m, wd))
            b = m.ones(4, dtype=getattr(m, bd))
            try:
                y = m.nn.functional.linear(x, w, b)
                got.append(("ok", str(y.dtype).split(".")[-1], y.tolist()))
            except RuntimeError as e:
                # tensord names the op and the line that issued it after torch's message
                got.append(("RuntimeError", str(e).split("\n")[0].split(" (linear, issued")[0]))
        assert got[0] == got[1], (xshape, xd, wd, bd, got)
    # hand-derived: the messages torch gives for the first and fourth cases
    with pytest.raises(RuntimeError, match="self and mat2 must have the same dtype"):
        td.nn.functional.linear(td.ones(2, 3), td.ones(4, 3),
                                td.ones(4, dtype=td.float64)).tolist()  # errors are deferred
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        td.nn.functional.linear(td.ones(2, 3), td.ones(4, 3, dtype=td.float64),
                                td.ones(4, dtype=td.float64)).tolist()


def test_linear_of_a_vector_with_a_wider_bias_differentiates_as_torch(td):
    """The 1-D input's in-place bias add keeps float32 out, and the float64 bias still gets a
    float64 gradient (hand-derived: d sum(y) / db = ones)."""
    got = []
    for m in (torch, td):
        x = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = m.ones((2, 3), requires_grad=True)
        b = m.tensor([0.5, 1.5], dtype=m.float64, requires_grad=True)
        y = m.nn.functional.linear(x, w, b)
        y.sum().backward()
        got.append((str(y.dtype).split(".")[-1], y.tolist(), str(b.grad.dtype).split(".")[-1],
                    b.grad.tolist(), w.grad.tolist(), x.grad.tolist()))
    assert got[0] == got[1]
    assert got[1][:4] == ("float32", [6.5, 7.5], "float64", [1.0, 1.0])
