"""Autograd on the server, against PyTorch: the seed's example, random compositions, errors,
no_grad, and a training loop whose memory stays flat."""
import random

import numpy as np
import pytest
import torch

import wire
from wire import H


def test_seed_example(conn):
    """Q = 3*a**3 - b**2 at a=2, b=6: Q=-12, dQ/da=36, dQ/db=-12, with torch's printed text."""
    c = conn
    a = c.tensor(np.array([2.0], dtype=np.float32), requires_grad=True)
    b = c.tensor(np.array([6.0], dtype=np.float32), requires_grad=True)
    a3 = c.op("pow", [H(a), 3])
    t = c.op("mul", [3, H(a3)])
    b2 = c.op("pow", [H(b), 2])
    q = c.op("sub", [H(t), H(b2)])
    assert c.get(q)[0].tolist() == [-12.0]
    assert c.format(q) == "tensor([-12.], grad_fn=<SubBackward0>)"
    assert c.format(a) == "tensor([2.], requires_grad=True)"
    c.backward(q)
    ga, gb = c.grad(a), c.grad(b)
    assert c.get(ga)[0].tolist() == [36.0]
    assert c.get(gb)[0].tolist() == [-12.0]
    assert c.format(ga) == "tensor([36.])"
    with pytest.raises(wire.ServerError) as e:
        c.backward(q)
    assert str(e.value).startswith("Trying to backward through the graph a second time")


UNARY = ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "neg"]
BINARY = ["add", "sub", "mul", "div"]


def test_random_compositions_match_torch(conn):
    c = conn
    rng = random.Random(4)
    for trial in range(40):
        shape_a = rng.choice([(3,), (2, 3), (4, 1, 3)])
        shape_b = rng.choice([shape_a, shape_a[-1:], (1,) * len(shape_a)])
        dt = rng.choice(["float32", "float64"])
        av = np.array([rng.uniform(0.5, 2.0) for _ in range(int(np.prod(shape_a)))],
                      dtype=dt).reshape(shape_a)
        bv = np.array([rng.uniform(0.5, 2.0) for _ in range(int(np.prod(shape_b)))],
                      dtype=dt).reshape(shape_b)
        ta = torch.from_numpy(av.copy()).requires_grad_()
        tb = torch.from_numpy(bv.copy()).requires_grad_()
        ha, hb = c.tensor(av, True), c.tensor(bv, True)
        tx, hx, made = ta, ha, []
        for _ in range(4):
            if rng.random() < 0.5:
                op = rng.choice(UNARY)
                tx = getattr(torch, op)(tx)
                hx = c.op(op, [H(hx)])
            else:
                op = rng.choice(BINARY)
                tx = getattr(torch, op)(tx, tb)
                hx = c.op(op, [H(hx), H(hb)])
            made.append(hx)
        p = rng.choice([2, 3])
        tx = (tx ** p).mean() if rng.random() < 0.5 else (tx ** p).sum()
        hx = c.op("pow", [H(hx), p])
        hx = c.op("mean" if tx.grad_fn.name().startswith("Mean") else "sum", [H(hx)])
        made.append(hx)
        assert c.format(hx).split("grad_fn=")[1] == repr(tx).split("grad_fn=")[1]
        tx.backward()
        c.backward(hx)
        for t, h in ((ta, ha), (tb, hb)):
            g = c.grad(h)
            if t.grad is None:  # b unused in this composition: no gradient, as in torch
                assert g is None
                continue
            got, _ = c.get(g)
            want = t.grad.numpy()
            tol = 1e-4 if dt == "float32" else 1e-10
            assert np.allclose(got, want, rtol=tol, atol=tol, equal_nan=True), (trial, got, want)
            made.append(g)
        c.free(ha, hb, *made)


def test_matmul_and_broadcast_gradients(conn):
    c = conn
    rng = np.random.default_rng(0)
    for sa, sb in [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                   ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4))]:
        a = rng.standard_normal(sa).astype(np.float64)
        b = rng.standard_normal(sb).astype(np.float64)
        ta = torch.from_numpy(a.copy()).requires_grad_()
        tb = torch.from_numpy(b.copy()).requires_grad_()
        (ta @ tb).sum().backward()
        ha, hb = c.tensor(a, True), c.tensor(b, True)
        m = c.op("matmul", [H(ha), H(hb)])
        s = c.op("sum", [H(m)])
        c.backward(s)
        assert np.allclose(c.get(c.grad(ha))[0], ta.grad.numpy())
        assert np.allclose(c.get(c.grad(hb))[0], tb.grad.numpy())


def test_errors_like_torch(conn):
    c = conn
    a = c.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    with pytest.raises(wire.ServerError) as e:
        c.op("add", [H(a), 1], inplace=True)
    assert str(e.value) == "a leaf Variable that requires grad is being used in an in-place operation."
    m = c.op("mul", [H(a), 2])
    with pytest.raises(wire.ServerError) as e:
        c.backward(m)
    assert str(e.value) == "grad can be implicitly created only for scalar outputs"
    plain = c.tensor(np.array([1.0], dtype=np.float32))
    with pytest.raises(wire.ServerError) as e:
        c.backward(plain)
    assert str(e.value) == ("element 0 of tensors does not require grad and does not have a "
                            "grad_fn")
    with pytest.raises(wire.ServerError) as e:
        c.tensor(np.array([1, 2]), requires_grad=True)
    assert str(e.value) == "Only Tensors of floating point and complex dtype can require gradients"
    # backward(gradient) on a non-scalar; a second call accumulates into .grad
    ones = c.tensor(np.ones(2, dtype=np.float32))
    c.backward(m, gradient=ones, retain_graph=True)
    c.backward(m, gradient=ones)
    assert c.get(c.grad(a))[0].tolist() == [4.0, 4.0]
    # .grad = None, then no_grad: nothing is recorded
    c.zero_grad_none(a)
    assert c.grad(a) is None
    c.set_grad_enabled(False)
    n = c.op("mul", [H(a), 3])
    assert "grad_fn" not in c.format(n)
    c.op("sub", [H(a), 1], inplace=True)  # optimizers update leaves under no_grad
    c.set_grad_enabled(True)
    assert c.get(a)[0].tolist() == [0.0, 1.0]
    # a saved tensor changed in place: torch's version error
    d = c.op("detach", [H(a)])
    sq = c.op("mul", [H(a), H(a)])
    s = c.op("sum", [H(sq)])
    c.op("add", [H(d), 1], inplace=True)
    with pytest.raises(wire.ServerError) as e:
        c.backward(s)
    assert str(e.value).startswith("one of the variables needed for gradient computation has "
                                   "been modified by an inplace operation: [tensord.FloatTensor "
                                   "[2]] is at version 2; expected version 1 instead.")


def test_sgd_loop_memory_is_flat(conn):
    """A linear model trained with SGD through the protocol: the loss falls and the session's
    bytes and tensor count stay flat across steps (the graph is freed by each backward)."""
    c = conn
    rng = np.random.default_rng(1)
    x = c.tensor(rng.standard_normal((32, 4)).astype(np.float32))
    true_w = np.array([[1.0], [-2.0], [0.5], [3.0]], dtype=np.float32)
    y = c.tensor(c.get(x)[0] @ true_w)
    w = c.tensor(np.zeros((4, 1), dtype=np.float32), requires_grad=True)
    losses, sizes = [], []
    for step in range(300):
        p = c.op("matmul", [H(x), H(w)])
        diff = c.op("sub", [H(p), H(y)])
        sq = c.op("mul", [H(diff), H(diff)])
        loss = c.op("mean", [H(sq)])
        c.backward(loss)
        g = c.grad(w)
        c.set_grad_enabled(False)
        upd = c.op("mul", [H(g), 0.1])
        c.op("sub", [H(w), H(upd)], inplace=True)
        c.set_grad_enabled(True)
        c.zero_grad_none(w)
        losses.append(float(c.get(loss)[0]))
        c.free(p, diff, sq, loss, g, upd)
        st = c.stats()
        sizes.append((st.session_bytes, st.session_tensors))
    assert losses[-1] < 1e-4 < losses[0]
    assert sizes[50] == sizes[-1]


def test_mlp_training_matches_torch(conn):
    """A 2-layer MLP (linear, relu, linear, cross_entropy) trained with SGD through the protocol
    follows the same loss curve as the identical torch model from the same initial weights."""
    import torch.nn.functional as F
    c = conn
    rng = np.random.default_rng(7)
    n, d_in, d_h, k = 64, 8, 16, 3
    x = rng.standard_normal((n, d_in)).astype(np.float32)
    y = rng.integers(0, k, n).astype(np.int64)
    w1 = (rng.standard_normal((d_h, d_in)) * 0.3).astype(np.float32)
    b1 = np.zeros(d_h, dtype=np.float32)
    w2 = (rng.standard_normal((k, d_h)) * 0.3).astype(np.float32)
    b2 = np.zeros(k, dtype=np.float32)
    tparams = [torch.from_numpy(p.copy()).requires_grad_() for p in (w1, b1, w2, b2)]
    hparams = [c.tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    hx, hy = c.tensor(x), c.tensor(y)
    lr = 0.5
    tl, hl = [], []
    for step in range(50):
        h = F.relu(F.linear(tx, tparams[0], tparams[1]))
        loss = F.cross_entropy(F.linear(h, tparams[2], tparams[3]), ty)
        loss.backward()
        with torch.no_grad():
            for p in tparams:
                p -= lr * p.grad
                p.grad = None
        tl.append(loss.item())

        a1 = c.op("linear", [H(hx), H(hparams[0]), H(hparams[1])])
        r1 = c.op("relu", [H(a1)])
        a2 = c.op("linear", [H(r1), H(hparams[2]), H(hparams[3])])
        hloss = c.op("cross_entropy", [H(a2), H(hy)])
        c.backward(hloss)
        c.set_grad_enabled(False)
        grads = []
        for p in hparams:
            g = c.grad(p)
            u = c.op("mul", [H(g), lr])
            c.op("sub", [H(p), H(u)], inplace=True)
            c.zero_grad_none(p)
            grads += [g, u]
        c.set_grad_enabled(True)
        hl.append(float(c.get(hloss)[0]))
        c.free(a1, r1, a2, hloss, *grads)
    assert np.allclose(hl, tl, rtol=1e-4, atol=1e-5), list(zip(hl, tl))[:5]
    assert tl[-1] < tl[0] * 0.8


def test_retain_grad_and_leaf_info(conn):
    """x = a * 2; x.retain_grad(); (x * x).sum().backward(): x.grad = 2x, a.grad = 8a."""
    c = conn
    a = c.tensor(np.array([1.0, -3.0], dtype=np.float32), requires_grad=True)
    x = c.op("mul", [H(a), 2])
    info = c.info(x)
    assert info.requires_grad and not info.is_leaf and info.grad_fn == "MulBackward0"
    assert c.info(a).is_leaf
    c.retain_grad(x)
    y = c.op("mul", [H(x), H(x)])
    s = c.op("sum", [H(y)])
    c.backward(s)
    assert c.get(c.grad(x))[0].tolist() == [4.0, -12.0]
    assert c.get(c.grad(a))[0].tolist() == [8.0, -24.0]
    z = c.op("mul", [H(a), 3])
    assert c.grad(z) is None  # a non-leaf without retain_grad has no .grad


def test_ten_thousand_steps_memory_flat(conn):
    """10,000 training steps of y = w * x with MSE, through the protocol, pipelined: the
    session's byte count and tensor count are the same after step 100 and after step 10,000."""
    c = conn
    x = c.tensor(np.arange(8, dtype=np.float32))
    y = c.tensor(np.arange(8, dtype=np.float32) * 3)
    w = c.tensor(np.zeros(1, dtype=np.float32), requires_grad=True)
    seen = {}
    for step in range(1, 10001):
        p = c.op("mul", [H(w), H(x)])
        loss = c.op("mse_loss", [H(p), H(y)])
        c.backward(loss)
        g = c.grad(w)
        c.set_grad_enabled(False)
        u = c.op("mul", [H(g), 0.01])
        c.op("sub", [H(w), H(u)], inplace=True)
        c.set_grad_enabled(True)
        c.zero_grad_none(w)
        c.free(p, loss, g, u)
        if step in (100, 10000):
            st = c.stats()
            seen[step] = (st.session_bytes, st.session_tensors)
    assert seen[100] == seen[10000]
    assert abs(float(c.get(w)[0][0]) - 3.0) < 1e-3


def test_inplace_on_graph_tensors_like_torch(conn):
    c = conn
    av = np.array([1.5, -2.0, 0.5], dtype=np.float32)
    # x = a * 2; x.add_(1); x.mul_(3); (x * x).sum().backward()
    ta = torch.from_numpy(av.copy()).requires_grad_()
    tx = ta * 2
    tx.add_(1)
    tx.mul_(3)
    assert tx.grad_fn.name() == "MulBackward0"
    (tx * tx).sum().backward()
    a = c.tensor(av, requires_grad=True)
    x = c.op("mul", [H(a), 2])
    c.op("add", [H(x), 1], inplace=True)
    c.op("mul", [H(x), 3], inplace=True)
    assert c.info(x).grad_fn == "MulBackward0"
    sq = c.op("mul", [H(x), H(x)])
    s = c.op("sum", [H(sq)])
    c.backward(s)
    assert np.allclose(c.get(c.grad(a))[0], ta.grad.numpy())
    # a saved tensor modified afterwards: torch's error, naming the op that made the new version
    tb = torch.from_numpy(av.copy()).requires_grad_()
    ty = tb * 2
    tz = ty * ty
    ty.add_(1)
    with pytest.raises(RuntimeError) as te:
        tz.sum().backward()
    b = c.tensor(av, requires_grad=True)
    y = c.op("mul", [H(b), 2])
    z = c.op("mul", [H(y), H(y)])
    c.op("add", [H(y), 1], inplace=True)
    zs = c.op("sum", [H(z)])
    with pytest.raises(wire.ServerError) as e:
        c.backward(zs)
    assert str(e.value) == str(te.value).split("\n")[0].replace("torch.", "tensord.")
    # copy_ into a plain tensor from one that requires grad makes it part of the graph
    w = c.tensor(av, requires_grad=True)
    plain = c.tensor(np.zeros(3, dtype=np.float32))
    c.op("copy", [H(plain), H(w)], inplace=True)
    assert c.info(plain).grad_fn == "CopyBackwards"
    ps = c.op("sum", [H(plain)])
    c.backward(ps)
    assert c.get(c.grad(w))[0].tolist() == [1.0, 1.0, 1.0]


def test_inplace_on_views_is_refused_not_wrong(conn):
    c = conn
    a = c.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    v = c.op("select", [H(a)], dim=0, start=0)
    with pytest.raises(wire.ServerError) as e:
        c.op("mul", [H(v), 3], inplace=True)
    assert str(e.value) == ("a view of a leaf Variable that requires grad is being used in an "
                            "in-place operation.")
    x = c.op("mul", [H(a), 2])
    xv = c.op("select", [H(x)], dim=0, start=0)
    with pytest.raises(wire.ServerError):
        c.op("mul", [H(xv), 3], inplace=True)
