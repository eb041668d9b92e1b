"""NumPy memory sharing through the Python client, against PyTorch: from_numpy() and numpy()
share values as torch's do (writes to the array are seen by the tensor at its next use; in-place
changes to the tensor, through views and x[i] = v too, appear in the array at once), and what
the sharing costs (client/python/tensord/_numpy.py states the rule).

Each scenario is a function of the module (torch or tensord) that returns what it printed; the
two must print the same, "torch." read as "tensord.".
"""
import gc

import numpy as np
import pytest
import torch

import tensord


def printed(m, scenario):
    out = []
    scenario(m, lambda *a: out.append(" ".join(str(x) for x in a)))
    return [line.replace("torch.", "tensord.") for line in out]


def seed_cell(m, p):
    np_array = np.array([10, 20, 30])
    t_from_np = m.from_numpy(np_array)
    p(np_array)
    p(t_from_np)
    np_array[0] = 100
    p(np_array)
    p(t_from_np)


def add_inplace_shows_in_numpy(m, p):
    t = m.ones(5)
    n = t.numpy()
    t.add_(1)
    p(n)
    t[2] = 7
    p(n)
    t[1:3].mul_(10)
    p(n)
    n[0] = -1
    p(t)
    p(t * 2)


def from_numpy_2d_views(m, p):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = m.from_numpy(a)
    a[1, 2] = 100
    p(t.sum())
    t[0] = -1
    p(a)
    t[:, 1].fill_(9)
    p(a)
    v = t.view(12)
    v[11] = 55
    p(a)
    t.t()[0].zero_()
    p(a)
    a[2] += 1
    p(t)


def dtypes(m, p):
    for dt in (np.float64, np.int32, np.int64, np.bool_, np.float32):
        a = np.zeros(4, dtype=dt)
        t = m.from_numpy(a)
        a[1] = 1
        p(t)
        t[3] = 1
        p(a)


def non_contiguous_array(m, p):
    base = np.arange(10.0)
    t = m.from_numpy(base[::2])
    p(t)
    base[2] = 42
    p(t)
    t.add_(1)
    p(base)


def numpy_of_a_view(m, p):
    t = m.arange(6.0).reshape(2, 3)
    n = t.t().numpy()
    p(n)
    t.mul_(2)
    p(n)
    n[0, 1] = 7
    p(t)


def numpy_then_tensor_of_it(m, p):
    t = m.zeros(3)
    n = t.numpy()
    n += 5
    p(t + 1)
    p((t * t).sum().item())
    p(t.tolist())


def array_dropped(m, p):
    a = np.ones(3)
    t = m.from_numpy(a)
    a[0] = 2
    del a
    gc.collect()
    p(t)  # the write made before the array was dropped is seen


def large_array(m, p):
    a = np.zeros(300_000, dtype=np.float32)
    t = m.from_numpy(a)
    p(t.sum())
    a[123_456] = 3
    a[-1] = 4
    p(t.sum(), t[123_456], t[-1])
    t[5] = 1
    p(a[:7], a.sum())


SCENARIOS = {f.__name__: f for f in (
    seed_cell, add_inplace_shows_in_numpy, from_numpy_2d_views, dtypes, non_contiguous_array,
    numpy_of_a_view, numpy_then_tensor_of_it, array_dropped, large_array)}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_prints_what_torch_prints(td, name):
    assert printed(td, SCENARIOS[name]) == printed(torch, SCENARIOS[name])


def test_seed_cell_prints_the_seed(td):
    assert printed(td, seed_cell) == ["[10 20 30]", "tensor([10, 20, 30])", "[100  20  30]",
                                      "tensor([100,  20,  30])"]


def _sent(s, monkeypatch):
    """Records (request kind, data bytes) of everything the session sends."""
    log = []
    real = s._c.send

    def send(req, data=b"", *rest, **kw):
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        log.append((req.WhichOneof("body"), n))
        return real(req, data, *rest, **kw)
    monkeypatch.setattr(s._c, "send", send)
    return log


def test_only_changed_bytes_are_sent(td, monkeypatch):
    s = td._session()
    a = np.zeros(1 << 20, dtype=np.float32)  # 4 MiB
    t = td.from_numpy(a)
    t.sum().item()
    log = _sent(s, monkeypatch)
    a[1000] = 1
    a[700_000] = 2
    assert t.sum().item() == 3.0
    writes = [n for kind, n in log if kind == "write"]
    assert writes == [4, 4]  # one element each, nothing else
    del log[:]
    assert t.sum().item() == 3.0  # unchanged: nothing sent but the op
    assert [k for k, _ in log if k == "write"] == []


def test_unshared_arrays_cost_nothing(td, monkeypatch):
    """An array nothing else references cannot change: no share, no snapshot, no comparison,
    however often the tensor is used."""
    t = td.from_numpy(np.ones(1000))
    assert t._share is None
    compared = []
    monkeypatch.setattr(tensord._numpy, "_send_changes", lambda e: compared.append(e))
    for _ in range(20):
        t = t + 1
    assert compared == []
    assert t.sum().item() == 21000.0
    s = td._session()
    u = s.from_numpy(np.arange(3))
    assert u._share is None and u.tolist() == [0, 1, 2]


def test_a_dropped_array_is_forgotten(td, monkeypatch):
    a = np.ones(10)
    t = td.from_numpy(a)
    assert t._share is not None
    del a
    gc.collect()
    t.sum().item()  # one last comparison, then the share is gone
    assert t._share is None
    compared = []
    monkeypatch.setattr(tensord._numpy, "_send_changes", lambda e: compared.append(e))
    for _ in range(5):
        t.sum()
    assert compared == []


def test_converted_dtypes_are_copies(td):
    """from_numpy of a dtype tensord converts (uint8 -> int64) cannot share bytes: a copy."""
    a = np.array([1, 2], dtype=np.uint8)
    t = td.from_numpy(a)
    a[0] = 9
    assert t.tolist() == [1, 2]


def test_tensor_copies(td):
    """torch.tensor(a) copies, as torch's does."""
    def run(m):
        a = np.array([1.0, 2.0])
        t = m.tensor(a)
        a[0] = 5
        t.add_(1)
        return t.tolist(), a.tolist()
    assert run(td) == run(torch)


def test_one_comparison_per_op(td, monkeypatch):
    """t * t, or t with its own view, compares the shared array once per op."""
    a = np.ones(10)
    t = td.from_numpy(a)
    v = t[0]
    compared = []
    real = tensord._numpy._send_changes
    monkeypatch.setattr(tensord._numpy, "_send_changes", lambda e: (compared.append(e), real(e)))
    a[0] = 3
    r = t * v
    assert len(compared) == 1
    s = t * t
    assert len(compared) == 2
    assert r.tolist()[:2] == [9.0, 3.0] and s.tolist()[:2] == [9.0, 1.0]


# ---- numpy() after mutations by every route, and of temporaries (issue 19, third round) ----

def mutation_routes(m, p):
    """An array from numpy() follows its tensor through every kind of in-place change."""
    t = m.zeros(4)
    n = t.numpy()
    t.add_(1)           # an in-place op
    p(n)
    t.copy_(m.tensor([5.0, 6.0, 7.0, 8.0]))   # copy_
    p(n)
    t[1] = -2           # setitem
    p(n)
    t[2:].mul_(10)      # an in-place op through a view
    p(n)
    n2 = t.numpy()      # a second array of the same tensor
    p(n2)
    n2[0] = 42          # written: the tensor sees it at its next use
    p(t.sum())


def grad_accumulation(m, p):
    """.grad's array follows backward's accumulation into it."""
    w = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (w * w).sum().backward()
    g = w.grad.numpy()
    p(g)
    (w * 3).sum().backward()   # accumulates into the same .grad
    p(g)
    p(w.grad.numpy())
    g[0] = 100                 # written, then accumulated onto
    (w * 1).sum().backward()
    p(g, w.grad)
    m.autograd.backward([(w * w).sum()])   # the functional form
    p(g)


def optimizer_step(m, p):
    """An array of a parameter (detach().numpy(), torch's idiom) follows optimizer steps."""
    w = m.nn.Parameter(m.tensor([1.0, 2.0, 4.0]))
    opt = m.optim.SGD([w], lr=0.5)
    a = w.detach().numpy()
    (w * w).sum().backward()
    opt.step()
    p(a)
    opt.zero_grad()
    (w * 2).sum().backward()
    opt.step()
    p(a, w.detach().numpy())


def optimizer_state(m, p):
    """An array of an optimizer's state tensor follows its steps, as torch's."""
    w = m.nn.Parameter(m.tensor([1.0, 2.0]))
    opt = m.optim.SGD([w], lr=0.1, momentum=0.9)
    (w * w).sum().backward()
    opt.step()
    b = opt.state[w]["momentum_buffer"].numpy()
    p(b)
    (w * w).sum().backward()
    opt.step()
    p(b.round(4))
    b[0] = 0               # written: the next step uses it, as torch's does
    (w * w).sum().backward()
    opt.step()
    p(b.round(4), w.detach().numpy().round(4))


def zero_grad_in_place(m, p):
    """.grad's array follows zero_grad(set_to_none=False) (optimizer's and module's) and
    .grad.zero_(), as torch's."""
    lin = m.nn.Linear(2, 1)
    with m.no_grad():
        lin.weight.copy_(m.tensor([[1.0, -2.0]]))
    opt = m.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    x = m.tensor([[3.0, 4.0]])
    lin(x).sum().backward()
    g = lin.weight.grad.numpy()
    opt.step()
    opt.zero_grad(set_to_none=False)
    p(g)
    lin(x).sum().backward()
    p(g)
    lin.zero_grad(set_to_none=False)
    p(g)
    lin(x * 2).sum().backward()
    lin.weight.grad.zero_()
    p(g)
    lin(x).sum().backward()
    total = m.nn.utils.clip_grad_norm_(lin.parameters(), 1.0)
    p(g.round(4), round(total.item(), 4))
    m.nn.utils.clip_grad_value_(lin.parameters(), 0.5)
    p(g.round(4))


def temporaries(m, p):
    """numpy() of a result nothing else holds, of a temporary view (its root lives on), and
    two arrays of one temporary each: right values, and writable without touching each other."""
    x = m.arange(6.0).reshape(2, 3)
    r = (x @ x.t()).numpy()
    p(r)
    r[0, 0] = -1            # the tensor is gone: the array is the user's own
    p(r)
    v = x.t().numpy()       # a temporary view: x lives on, so the array shares with it
    x.mul_(2)
    p(v)
    v[0, 1] = 99
    p(x)
    a, b = (x + 1).numpy(), (x + 1).numpy()
    a[0, 0] = 1000
    p(a, b)


for _f in (mutation_routes, grad_accumulation, optimizer_step, optimizer_state, zero_grad_in_place,
           temporaries):
    SCENARIOS[_f.__name__] = _f


@pytest.mark.parametrize("name", ["mutation_routes", "grad_accumulation", "optimizer_step",
                                  "optimizer_state", "zero_grad_in_place", "temporaries"])
def test_numpy_follows_every_route_as_torch(td, name):
    assert printed(td, SCENARIOS[name]) == printed(torch, SCENARIOS[name])


@pytest.mark.parametrize("numel", [1000, 1 << 20])
def test_numpy_of_a_temporary_takes_no_snapshot(td, monkeypatch, numel):
    """`(a * b).numpy()`: the tensor dies with the call, so the array is not shared and no
    snapshot (a copy as large as the array) is taken; a tensor held elsewhere still shares."""
    snaps = []
    real = tensord._numpy._snapshot
    monkeypatch.setattr(tensord._numpy, "_snapshot", lambda a: (snaps.append(a.nbytes), real(a))[1])
    x = td.ones(numel)
    got = (x * 3).numpy()
    assert snaps == []
    assert got.shape == (numel,) and got.dtype == np.float32 and (got == 3).all()
    got[0] = 7  # the user's own array now
    assert (x * 3).numpy()[0] == 3
    y = x * 2
    n = y.numpy()
    assert snaps == [numel * 4]
    assert y._share is not None
    y.add_(1)
    assert (n == 3).all()
