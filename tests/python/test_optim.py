"""tensord.optim against torch.optim (torch 1.13, the oracle): every optimiser and option
combination over 100 steps from the same weights and gradients agrees with torch to float
tolerance; optimizer.state, state_dict()/load_state_dict(), zero_grad, param groups, repr and
constructor errors are torch's; step() and zero_grad() are one request each and never wait for a
reply; a step moves the parameters' version counters as torch's in-place update does; and
clip_grad_norm_/clip_grad_value_ match torch's, the total norm coming back without a round trip.
"""
import math
import warnings

import pytest
import torch

pytestmark = pytest.mark.timeout(300)

W0 = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
B0 = [0.1, -0.2]
X = [[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.3, -0.2, 0.1], [2.0, 1.0, -1.0]]


def model(m, dtype):
    """A fixed small model: a linear layer (w, b) and a parameter that never gets a .grad."""
    w = m.tensor(W0, dtype=dtype, requires_grad=True)
    b = m.tensor(B0, dtype=dtype, requires_grad=True)
    unused = m.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
    x = m.tensor(X, dtype=dtype)
    return w, b, unused, x


def loss_of(m, w, b, x, sign):
    y = x @ w.t() + b
    return sign * (((y - 1.0) ** 2).mean() + (w ** 3).sum() * 0.01)


def train(m, name, kw, steps=100, dtype="float32", groups=False, closure=False):
    dt = getattr(m, dtype)
    w, b, unused, x = model(m, dt)
    if groups:
        params = [{"params": [w]}, {"params": [b, unused], "lr": kw.get("lr", 0.01) * 0.5}]
    else:
        params = [w, b, unused]
    opt = getattr(m.optim, name)(params, **kw)
    sign = -1.0 if kw.get("maximize") else 1.0
    losses = []
    for _ in range(steps):
        if closure:
            def f():
                opt.zero_grad(set_to_none=True)
                loss = loss_of(m, w, b, x, sign)
                loss.backward()
                return loss
            losses.append(opt.step(f))
        else:
            opt.zero_grad(set_to_none=True)
            loss = loss_of(m, w, b, x, sign)
            loss.backward()
            opt.step()
            losses.append(loss)
    return opt, (w, b, unused), losses


def close(a, b, rtol, atol):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return torch.allclose(a, b, rtol=rtol, atol=atol), (a - b).abs().max().item()


CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.02, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, maximize=True, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.0, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.005, momentum=0.5)),
    ("RMSprop", dict(lr=0.005, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.3, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.005, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True)),
]


def _ids(c):
    return c[0] + "(" + ", ".join("%s=%s" % kv for kv in c[1].items()) + ")"


@pytest.mark.parametrize("name,kw", CASES, ids=[_ids(c) for c in CASES])
def test_100_steps_match_torch(td, name, kw):
    _, want, want_losses = train(torch, name, kw)
    _, got, got_losses = train(td, name, kw)
    for t, g in zip(want, got):
        ok, diff = close(t.tolist(), g.tolist(), 1e-4, 1e-5)
        assert ok, (name, kw, diff)
    ok, diff = close([float(v) for v in want_losses], [float(v) for v in got_losses], 1e-4, 1e-5)
    assert ok, ("losses", diff)
    assert got[2].tolist() == [1.0, 2.0]  # no .grad: never stepped, as torch


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                     ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
                                     ("AdamW", dict(lr=0.01)),
                                     ("RMSprop", dict(lr=0.005, centered=True, momentum=0.3)),
                                     ("Adagrad", dict(lr=0.1, lr_decay=0.01))])
def test_float64_param_groups_and_closure_match_torch(td, name, kw):
    _, want, wl = train(torch, name, kw, dtype="float64", groups=True, closure=True)
    _, got, gl = train(td, name, kw, dtype="float64", groups=True, closure=True)
    for t, g in zip(want, got):
        ok, diff = close(t.tolist(), g.tolist(), 1e-10, 1e-12)
        assert ok, (name, diff)
    assert [float(v) for v in gl] == pytest.approx([float(v) for v in wl], rel=1e-10)
    assert str(gl[0].dtype) == "tensord.float64"


def _plain(v, m):
    """A state value as plain Python, for comparing torch's and tensord's."""
    if isinstance(v, m.Tensor):
        return ("tensor", str(v.dtype).split(".")[-1], list(v.shape), v.tolist())
    return v


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                     ("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict()),
                                     ("RMSprop", dict(momentum=0.2, centered=True)),
                                     ("Adagrad", dict(initial_accumulator_value=0.1))])
def test_state_and_state_dict_are_torchs(td, name, kw):
    topt, tp, _ = train(torch, name, kw, steps=5)
    dopt, dp, _ = train(td, name, kw, steps=5)
    # optimizer.state[p]: the same keys in the same order, values within tolerance
    for t, d in zip(tp, dp):
        assert (t in topt.state) == (d in dopt.state)
        ts, ds = topt.state[t], dopt.state[d]
        assert list(ts) == list(ds)
        for k in ts:
            a, b = _plain(ts[k], torch), _plain(ds[k], td)
            if isinstance(a, tuple):
                assert a[:3] == b[:3], k
                assert close(a[3], b[3], 1e-4, 1e-6)[0], k
            else:
                assert a == b, k
    if name == "Adam":
        assert isinstance(dopt.state[dp[0]]["exp_avg"], td.Tensor)
    tsd, dsd = topt.state_dict(), dopt.state_dict()
    assert tsd["param_groups"] == dsd["param_groups"]
    assert list(tsd["state"]) == list(dsd["state"])
    for i in tsd["state"]:
        assert list(tsd["state"][i]) == list(dsd["state"][i])


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9)),
                                     ("Adam", dict(lr=0.01, amsgrad=True)),
                                     ("RMSprop", dict(lr=0.005, momentum=0.2, centered=True)),
                                     ("Adagrad", dict(lr=0.1))])
def test_load_state_dict_round_trip(td, name, kw):
    """Train 10 steps, save; a new optimizer loads it and goes on: the same as torch going on."""
    def run(m):
        opt, (w, b, unused), _ = train(m, name, kw, steps=10)
        sd = opt.state_dict()
        opt2 = getattr(m.optim, name)([w, b, unused], **kw)
        opt2.load_state_dict(sd)
        x = m.tensor(X)
        for _ in range(10):
            opt2.zero_grad(set_to_none=True)
            loss_of(m, w, b, x, 1.0).backward()
            opt2.step()
        return w.tolist(), b.tolist(), opt2.state_dict()["param_groups"]
    tw, tb, tg = run(torch)
    dw, db, dg = run(td)
    assert close(tw, dw, 1e-4, 1e-5)[0]
    assert close(tb, db, 1e-4, 1e-5)[0]
    assert tg == dg


def test_load_state_dict_errors_are_torchs(td):
    for m in (torch, td):
        w = m.tensor([1.0], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.1)
        with pytest.raises(ValueError, match="different number of parameter groups"):
            opt.load_state_dict({"state": {}, "param_groups": []})
        with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
            opt.load_state_dict({"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]})


def test_zero_grad(td):
    for m in (torch, td):
        w = m.tensor([1.0, 2.0], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.1)
        (w * w).sum().backward()
        opt.zero_grad(set_to_none=False)
        assert w.grad.tolist() == [0.0, 0.0]
        (w * 3).sum().backward()  # accumulates into the zeroed grad
        assert w.grad.tolist() == [3.0, 3.0]
        opt.zero_grad(set_to_none=True)
        assert w.grad is None
    for m in (torch, td):  # the default is torch 1.13's: zeroed in place, not None
        w = m.tensor([1.0], requires_grad=True)
        opt = m.optim.Adam([w])
        (w * 2).sum().backward()
        opt.zero_grad()
        assert w.grad.tolist() == [0.0]


def test_repr_is_torchs(td):
    for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict()), ("AdamW", dict()),
                     ("RMSprop", dict()), ("Adagrad", dict())]:
        reprs = []
        for m in (torch, td):
            w = m.tensor([1.0], requires_grad=True)
            b = m.tensor([1.0], requires_grad=True)
            opt = getattr(m.optim, name)([{"params": [w]}, {"params": [b], "lr": 0.5}], **kw)
            reprs.append(repr(opt))
        assert reprs[0] == reprs[1]


def _error(f):
    try:
        f()
    except Exception as e:  # noqa: BLE001 - the type is compared
        return type(e).__name__, str(e).replace("torch.", "tensord.")
    return None


@pytest.mark.parametrize("make", [
    lambda m, p: m.optim.SGD(p, lr=-1),
    lambda m, p: m.optim.SGD(p, lr=0.1, momentum=-0.5),
    lambda m, p: m.optim.SGD(p, lr=0.1, weight_decay=-1e-05),
    lambda m, p: m.optim.SGD(p, lr=0.1, nesterov=True),
    lambda m, p: m.optim.SGD(p),
    lambda m, p: m.optim.SGD([], lr=0.1),
    lambda m, p: m.optim.SGD(p[0], lr=0.1),
    lambda m, p: m.optim.SGD([p[0], 3], lr=0.1),
    lambda m, p: m.optim.SGD([{"params": {p[0]}}], lr=1),
    lambda m, p: m.optim.SGD([{"params": p}, {"params": p[:1]}], lr=0.1),
    lambda m, p: m.optim.SGD([p[0] * 2], lr=0.1),
    lambda m, p: m.optim.Adam(p, lr=float("nan")),
    lambda m, p: m.optim.Adam(p, betas=(1.0, 0.9)),
    lambda m, p: m.optim.Adam(p, betas=(0.9, -0.1)),
    lambda m, p: m.optim.Adam(p, eps=-1),
    lambda m, p: m.optim.AdamW(p, weight_decay=-0.5),
    lambda m, p: m.optim.RMSprop(p, alpha=-0.1),
    lambda m, p: m.optim.RMSprop(p, momentum=-1),
    lambda m, p: m.optim.Adagrad(p, lr_decay=-1),
    lambda m, p: m.optim.Adagrad(p, initial_accumulator_value=-1),
])
def test_constructor_errors_are_torchs(td, make):
    got = []
    for m in (torch, td):
        p = [m.tensor([1.0], requires_grad=True), m.tensor([2.0], requires_grad=True)]
        got.append(_error(lambda: make(m, p)))
    assert got[0] is not None
    assert got[0] == got[1]


def test_duplicate_parameters_warn_as_torch(td):
    for m in (torch, td):
        p = m.tensor([1.0], requires_grad=True)
        with pytest.warns(UserWarning, match="duplicate parameters"):
            m.optim.SGD([p, p], lr=0.1)


def _count(stats, name):
    return sum(c.count for c in stats.requests if c.name == name)


def test_step_is_one_request_and_never_waits(td, monkeypatch):
    s = td._session()
    w, b, unused, x = model(td, td.float32)
    opt = td.optim.Adam([w, b, unused], lr=0.01)
    loss_of(td, w, b, x, 1.0).backward()
    s.synchronize()
    before = s.stats()
    sent = []
    real_send = s._c.send

    def send(req, *a, **k):
        sent.append(req.WhichOneof("body"))
        return real_send(req, *a, **k)

    def no_wait(*a, **k):
        raise AssertionError("step() or zero_grad() waited for a reply")
    monkeypatch.setattr(s._c, "send", send)
    monkeypatch.setattr(s._c, "wait", no_wait)
    for _ in range(3):
        opt.step()
    opt.zero_grad()
    monkeypatch.undo()
    assert sent == ["optim_step"] * 4  # three steps and one zero_grad: one request each
    after = s.stats()
    assert _count(after, "optim_step") - _count(before, "optim_step") == 4
    # the only other request counted in between is the Stats itself
    total = sum(c.count for c in after.requests) - sum(c.count for c in before.requests)
    assert total == 4 + 1


def test_step_moves_the_version_counter(td):
    """A graph that saved a parameter refuses backward after a step, as torch's does."""
    msgs = []
    for m in (torch, td):
        w = m.tensor([1.0, 2.0], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.1)
        (w * w).sum().backward()
        y = (w * w).sum()
        opt.step()
        with pytest.raises(RuntimeError) as e:
            y.backward()
            if m is td:
                td._session().synchronize()
        msgs.append(str(e.value))
    assert "modified by an inplace operation" in msgs[0]
    assert "modified by an inplace operation" in msgs[1]


def test_parameters_without_grad_get_no_state(td):
    for m in (torch, td):
        w, b, unused, x = model(m, m.float32)
        opt = m.optim.Adam([w, b, unused])
        loss_of(m, w, b, x, 1.0).backward()
        opt.step()
        assert unused not in opt.state
        assert set(opt.state_dict()["state"]) == {0, 1}


def test_lr_change_between_steps_is_sent(td):
    res = []
    for m in (torch, td):
        w = m.tensor([1.0, 2.0], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.1)
        for lr in (0.1, 0.5, 0.0, 1.0):
            opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        res.append(w.tolist())
    assert close(res[0], res[1], 1e-6, 1e-7)[0]


# ---------------------------------------------------------------- clip_grad

def _clip_case(m, utils, norm_type, max_norm, dtype="float32"):
    dt = getattr(m, dtype)
    w = m.tensor(W0, dtype=dt, requires_grad=True)
    b = m.tensor(B0, dtype=dt, requires_grad=True)
    c = m.tensor([1.0, 2.0], dtype=dt, requires_grad=True)  # no .grad
    ((m.tensor(X, dtype=dt) @ w.t() + b) ** 2).sum().backward()
    total = utils.clip_grad_norm_([w, b, c], max_norm, norm_type)
    return total, w.grad.tolist(), b.grad.tolist()


@pytest.mark.parametrize("norm_type", [2.0, 1, 3, 0.5, float("inf"), "inf", 0])
@pytest.mark.parametrize("max_norm", [1.0, 1e6])
def test_clip_grad_norm_is_torchs(td, norm_type, max_norm):
    import tensord.nn.utils
    tt, tw, tb = _clip_case(torch, torch.nn.utils, norm_type, max_norm)
    dt, dw, db = _clip_case(td, tensord.nn.utils, norm_type, max_norm)
    assert str(dt.dtype) == "tensord.float32" and list(dt.shape) == []
    assert dt.item() == pytest.approx(tt.item(), rel=1e-5)
    assert close(tw, dw, 1e-5, 1e-7)[0]
    assert close(tb, db, 1e-5, 1e-7)[0]


def test_clip_grad_norm_float64_and_no_grads(td):
    import tensord.nn.utils
    tt, tw, _ = _clip_case(torch, torch.nn.utils, 2.0, 0.5, "float64")
    dt, dw, _ = _clip_case(td, tensord.nn.utils, 2.0, 0.5, "float64")
    assert str(dt.dtype) == "tensord.float64"
    assert dt.item() == pytest.approx(tt.item(), rel=1e-12)
    assert close(tw, dw, 1e-12, 1e-14)[0]
    # no parameter has a .grad: tensor(0.)
    p = td.tensor([1.0], requires_grad=True)
    assert repr(tensord.nn.utils.clip_grad_norm_([p], 1.0)) == \
        repr(torch.nn.utils.clip_grad_norm_([torch.tensor([1.0], requires_grad=True)], 1.0)) \
        .replace("torch", "tensord")
    assert repr(tensord.nn.utils.clip_grad_norm_([], 1.0)) == "tensor(0.)"


def test_clip_grad_norm_no_round_trip_and_nonfinite(td, monkeypatch):
    import tensord.nn.utils
    s = td._session()
    w = td.tensor([3.0, 4.0], requires_grad=True)
    (w * w).sum().backward()
    s.synchronize()
    monkeypatch.setattr(s._c, "wait", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("clip_grad_norm_ waited")))
    total = tensord.nn.utils.clip_grad_norm_([w], 1.0)
    tensord.nn.utils.clip_grad_value_(w, 0.1)
    monkeypatch.undo()
    assert total.item() == pytest.approx(10.0)
    assert w.grad.tolist() == pytest.approx([0.1, 0.1])
    msgs = []
    for m, utils in ((torch, torch.nn.utils), (td, tensord.nn.utils)):
        v = m.tensor([1.0, float("inf")], requires_grad=True)
        (v * v).sum().backward()
        with pytest.raises(RuntimeError) as e:
            utils.clip_grad_norm_([v], 1.0, error_if_nonfinite=True)
        msgs.append(str(e.value))
        assert v.grad.tolist()[0] == 2.0  # refused before anything was scaled
    assert msgs[1].startswith(msgs[0])


def test_clip_grad_value_is_torchs(td):
    import tensord.nn.utils
    res = []
    for m, utils in ((torch, torch.nn.utils), (td, tensord.nn.utils)):
        w = m.tensor([[1.0, -2.0], [0.25, 3.0]], requires_grad=True)
        (w * w * w).sum().backward()
        assert utils.clip_grad_value_([w], 2.5) is None
        res.append(w.grad.tolist())
    assert res[0] == res[1]


def test_optim_namespace(td):
    import tensord
    assert tensord.optim.lr_scheduler.StepLR is not None
    assert set(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Optimizer"]) <= set(dir(td.optim))
    assert math.isfinite(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = td.tensor([1.0], requires_grad=True)
        td.optim.SGD([w], lr=0.1)


@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                     ("RMSprop", dict(lr=0.005, centered=True))])
def test_torch_state_dict_loads_into_tensord(td, name, kw):
    """A state_dict torch saved (torch tensors in it) loads into tensord's optimizer, which then
    goes on as torch's does."""
    topt, (tw, tb, tu), _ = train(torch, name, kw, steps=10)
    dw = td.tensor(tw.tolist(), requires_grad=True)
    db = td.tensor(tb.tolist(), requires_grad=True)
    du = td.tensor(tu.tolist(), requires_grad=True)
    dopt = getattr(td.optim, name)([dw, db, du], **kw)
    dopt.load_state_dict(topt.state_dict())
    for m, opt, (w, b) in ((torch, topt, (tw, tb)), (td, dopt, (dw, db))):
        x = m.tensor(X)
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            loss_of(m, w, b, x, 1.0).backward()
            opt.step()
    assert close(tw.tolist(), dw.tolist(), 1e-4, 1e-5)[0]
    assert close(tb.tolist(), db.tolist(), 1e-4, 1e-5)[0]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                     ("Adam", dict(lr=1e-3))])
def test_mlp_step_is_one_round_trip_and_matches_torch(td, name, kw):
    """An MLP 784-256-10 written with plain ops (no nn): after the first step, each training
    step (zero_grad, forward, backward, step, loss.item()) is one socket write and one wait, and
    its losses over 50 steps are torch's to 1e-4 relative."""
    import numpy as np
    import tensord.nn.functional as F
    rng = np.random.default_rng(17)
    n, batch = 512, 128
    # centers close enough that the loss stays well above float32 noise over the 50 steps
    centers = (rng.standard_normal((10, 784)) * 0.04).astype(np.float32)
    y = rng.integers(0, 10, n)
    x = (centers[y] + rng.standard_normal((n, 784))).astype(np.float32)
    w1 = (rng.standard_normal((256, 784)) * 0.03).astype(np.float32)
    w2 = (rng.standard_normal((10, 256)) * 0.06).astype(np.float32)

    def run(m, f, counters=None):
        params = [m.tensor(w1, requires_grad=True), m.tensor(np.zeros(256, np.float32),
                                                                requires_grad=True),
                  m.tensor(w2, requires_grad=True), m.tensor(np.zeros(10, np.float32),
                                                               requires_grad=True)]
        a, b, c, d = params
        xs, ys = m.tensor(x), m.tensor(y)
        opt = getattr(m.optim, name)(params, **kw)
        losses, per_step = [], []
        for step in range(50):
            i = (step * batch) % n
            before = counters() if counters else None
            opt.zero_grad()
            loss = f.cross_entropy(f.linear(f.relu(f.linear(xs[i:i + batch], a, b)), c, d),
                                   ys[i:i + batch])
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if counters:
                per_step.append(tuple(v - u for v, u in zip(counters(), before)))
        return losses, per_step
    want, _ = run(torch, torch.nn.functional)
    s = td._session()
    got, per_step = run(td, F, counters=lambda: (s._c.writes, s._c.waits))
    assert all(p == (1, 1) for p in per_step[1:]), sorted(set(per_step[1:]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=0)
    assert got[-1] < got[0] * 0.9  # it trains
