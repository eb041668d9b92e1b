"""The Python package's own behaviour: pipelining, errors at blocking points, lifetime, resume,
chunked transfers, numpy being optional, connection options."""
import gc
import inspect
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import tensord
from conftest import Daemon
from proxy import Proxy


@pytest.fixture
def session(daemon):
    s = tensord.connect("127.0.0.1:%d" % daemon)
    yield s
    s.close()


def line_of(marker):
    """The line number of the line in this file containing `marker` (a comment)."""
    src = inspect.getsource(sys.modules[__name__]).splitlines()
    hits = [i + 1 for i, text in enumerate(src) if marker in text and "line_of" not in text]
    assert len(hits) == 1, marker
    return hits[0]


def test_ten_thousand_ops_cost_few_round_trips(daemon):
    proxy = Proxy(daemon)
    try:
        s = tensord.connect("127.0.0.1:%d" % proxy.port)
        x = s.zeros(2, 2)
        one = s.ones(2, 2)
        before_turns, before_waits = proxy.turns, s._c.waits
        for _ in range(10000):
            x = x + one
        assert s._c.waits == before_waits, "issuing ops must not wait for replies"
        assert x.sum().item() == 4 * 10000
        waits = s._c.waits - before_waits
        turns = proxy.turns - before_turns
        # one blocking point (item); the 10,000 requests travel in large writes
        assert waits == 1
        assert turns < 10000 / 20, turns
        assert s._c.frames_sent >= 10000
        s.close()
    finally:
        proxy.close()


def test_error_in_the_middle_surfaces_at_next_blocking_point(session):
    a = session.ones(2, 3)
    b = session.ones(4, 5)
    c = a
    for _ in range(10):
        c = c * 2
    bad = a @ b  # THE-BAD-LINE
    for _ in range(50):
        c = c + 1
    with pytest.raises(tensord.TensorError) as e:
        c.sum().item()
    err = e.value
    assert isinstance(err, RuntimeError)
    assert err.op == "matmul"
    assert err.where == "%s:%d" % (__file__, line_of("THE-BAD-LINE"))
    with pytest.raises(RuntimeError) as t:
        torch.ones(2, 3) @ torch.ones(4, 5)
    assert err.message == str(t.value)
    assert str(t.value) in str(err) and "matmul" in str(err)
    # raised once; the session goes on, and the failed tensor keeps failing when used
    assert c.sum().item() == 6 * (2 ** 10 + 50)
    with pytest.raises(tensord.TensorError, match=r"input \d+ failed: mat1 and mat2 shapes"):
        (bad + 1).item()


def test_sync_raises_at_its_own_line(daemon):
    with tensord.connect("127.0.0.1:%d" % daemon, sync=True) as s:
        a = s.ones(2, 3)
        with pytest.raises(tensord.TensorError) as e:
            a.sum(dim=5)  # SYNC-LINE
        assert e.value.where.endswith(":%d" % line_of("SYNC-LINE"))
        assert isinstance(e.value, IndexError)  # as torch raises for a dim out of range
        with pytest.raises(IndexError) as t:
            torch.ones(2, 3).sum(dim=5)
        assert e.value.message == str(t.value)


def test_shape_waits_only_for_its_op(session):
    x = session.rand(3, 4)
    y = (x @ x.T).unsqueeze(0)
    assert y.shape == tensord.Size([1, 3, 3])
    assert repr(y.shape) == "tensord.Size([1, 3, 3])"
    assert y.dtype is tensord.float32
    assert session.tensor([[1, 2]]).dtype is tensord.int64
    assert session.tensor([2.0]).dtype is tensord.float32
    assert session.tensor([True, False]).dtype is tensord.bool


def test_collected_tensors_are_freed_in_a_batch(session):
    base = session.stats().session_tensors
    xs = [session.ones(4) * i for i in range(200)]
    assert session.stats().session_tensors >= base + 200
    del xs
    gc.collect()
    session.ones(1)  # the next request carries the batched frees
    assert session.stats().session_tensors <= base + 2


def test_frees_ride_on_the_next_request(session):
    """A loop that drops a tensor per step (x = x + one) sends one request per step, not two:
    the collected handles travel in the next request's free_first, and the session's tensor
    count stays flat (1,000 steps: x, one and at most a step's garbage)."""
    assert session._c.version >= 2
    one = session.ones(3)
    x = session.zeros(3)
    session.synchronize()
    base = session.stats().session_tensors
    frames = session._c.frames_sent
    for _ in range(1000):
        x = x + one
    assert x.tolist() == [1000.0, 1000.0, 1000.0]
    assert session._c.frames_sent - frames <= 1000 + 2  # the adds and the Get, no Free frames
    assert session.stats().session_tensors <= base + 1


def test_close_frees_everything(daemon):
    s = tensord.connect("127.0.0.1:%d" % daemon)
    token = s.token
    s.ones(1000)
    s.close()
    with pytest.raises(tensord.TensorError):
        tensord.connect("127.0.0.1:%d" % daemon, resume=token)


def test_resume_by_token_finds_the_tensors(daemon):
    s1 = tensord.connect("127.0.0.1:%d" % daemon)
    x = s1.tensor([1.0, 2.0, 3.0])
    s1.synchronize()
    s1._c.close()  # the connection goes; the session stays for its TTL
    s2 = tensord.connect("127.0.0.1:%d" % daemon, resume=s1.token)
    y = tensord.Tensor(s2, x._h)
    assert y.tolist() == [1.0, 2.0, 3.0]
    s2.close()


def test_transparent_resume_after_the_connection_drops(daemon):
    proxy = Proxy(daemon)
    try:
        s = tensord.connect("127.0.0.1:%d" % proxy.port)
        w = s.tensor([1.0, 2.0], requires_grad=True)
        s.synchronize()
        proxy.drop()  # while idle
        assert (w * 3).tolist() == [3.0, 6.0]
        assert s._c.reconnects == 1
        # dropped with out-of-place requests in flight: they are re-sent, results intact
        ys = [w * float(i) for i in range(100)]
        proxy.drop()
        assert [y.tolist()[1] for y in ys[:5]] == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert ys[99].sum().item() == 99 * 3
        # an in-place request written to the socket, whose reply the drop loses: whether it
        # ran is unknown, and the client says so instead of guessing; so does every request
        # after it, whose result could depend on it
        v = s.zeros(2)
        s.synchronize()
        proxy.mute = True  # the server's replies go nowhere
        v.add_(1)
        after = v * 2
        before = proxy.client_bytes
        s.flush()
        deadline = time.time() + 10
        while proxy.client_bytes == before and time.time() < deadline:
            time.sleep(0.01)  # until the server has the requests
        proxy.drop()
        proxy.mute = False
        with pytest.raises(tensord.TensorError, match="whether this request ran is unknown"):
            after.tolist()  # the first error raised is the add_'s
        assert "not re-sent" in after._p.error.message
        assert "earlier request's outcome is unknown" in after._p.error.message
        s.close()
    finally:
        proxy.close()


def test_idle_drop_then_inplace_and_backward_are_resent(daemon):
    """Requests queued after the server went away were never written, so they cannot have run:
    they are re-sent whatever they are, in-place ops and backward() included."""
    proxy = Proxy(daemon)
    try:
        s = tensord.connect("127.0.0.1:%d" % proxy.port)
        v = s.zeros(2)
        w = s.tensor([1.0, 2.0], requires_grad=True)
        s.synchronize()
        proxy.drop()  # while idle
        v.add_(1)
        (w * w).sum().backward()
        tw = torch.tensor([1.0, 2.0], requires_grad=True)
        (tw * tw).sum().backward()
        assert v.tolist() == torch.zeros(2).add_(1).tolist()
        assert w.grad.tolist() == tw.grad.tolist()
        assert s._c.reconnects == 1
        s.close()
    finally:
        proxy.close()


def test_sgd_loop_survives_dropped_connections_and_matches_torch(daemon):
    """The connection drops twice in the middle of training steps (after backward() was issued,
    before the update); the loop neither notices nor diverges from torch's."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 32)
    x = (rng.standard_normal((3, 5))[y] * 2 + rng.standard_normal((32, 5))).astype(np.float32)
    w0 = (rng.standard_normal((3, 5)) * 0.3).astype(np.float32)
    b0 = np.zeros(3, np.float32)

    def train(torch_, x, y, w, b, drop=None):
        losses = []
        for step in range(10):
            loss = torch_.nn.functional.cross_entropy(
                torch_.nn.functional.linear(x, w, b), y)
            loss.backward()
            if drop is not None and step in (3, 7):
                drop()
            with torch_.no_grad():
                for p in (w, b):
                    p -= 0.5 * p.grad
                    p.grad = None
            losses.append(loss.item())
        return losses

    proxy = Proxy(daemon)
    try:
        s = tensord.connect("127.0.0.1:%d" % proxy.port)
        tensord._default = s  # tensord.no_grad() below is the session's
        got = train(tensord, s.tensor(x), s.tensor(y), s.tensor(w0, requires_grad=True),
                    s.tensor(b0, requires_grad=True), drop=proxy.drop)
        assert s._c.reconnects == 2
        s.close()
    finally:
        tensord._default = None
        proxy.close()
    want = train(torch, torch.tensor(x), torch.tensor(y), torch.tensor(w0, requires_grad=True),
                 torch.tensor(b0, requires_grad=True))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert want[-1] < want[0] * 0.5  # it trained


def test_closed_session_says_so(daemon):
    s = tensord.connect("127.0.0.1:%d" % daemon)
    x = s.ones(2) * 2
    s.close()
    for use in (lambda: x + 1, lambda: x.tolist(), lambda: repr(x), lambda: s.ones(1),
                s.synchronize, s.flush):
        with pytest.raises(tensord.TensorError, match="^session is closed$"):
            use()


def public(owner):
    """(name, object) of the public callables and properties a user can reach on owner."""
    for name in dir(owner):
        if name.startswith("_") and name not in ("__getitem__", "__setitem__"):
            continue
        obj = inspect.getattr_static(owner, name)
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if callable(obj) or isinstance(obj, property):
            yield name, obj


def test_public_api_has_docstrings_signatures_and_py_typed(session):
    import tensord.nn.functional as F
    ops = sorted(tensord._OPS - {"mT"})  # reached through __getattr__, so not in dir()
    own = [(n, o) for n, o in public(tensord)
           if getattr(o, "__module__", "").startswith("tensord")]
    assert len(own) > 20
    checked = own + list(public(tensord.Tensor)) + list(public(tensord.Session)) + [
        (n, o) for n, o in public(F) if getattr(o, "__module__", "") == F.__name__] + [
        ("tensord." + n, getattr(tensord, n)) for n in ops] + [
        ("Session." + n, getattr(session, n)) for n in ops] + [
        ("Tensor." + n, getattr(session.ones(1), n)) for n in ops
        if tensord._OP_TABLE[n].method and not tensord._OP_TABLE[n].inplace_only] + [
        ("Tensor." + n + "_", getattr(session.ones(1), n + "_")) for n in ops
        if tensord._OP_TABLE[n].method and tensord._OP_TABLE[n].inplace]
    missing = [n for n, o in checked if not (o.__doc__ or "").strip()]
    assert not missing
    # module-level wrappers keep the method's signature (less self) and its docstring
    for name in tensord._CREATION:
        method = getattr(tensord.Session, name)
        params = list(inspect.signature(method).parameters)[1:]
        assert list(inspect.signature(getattr(tensord, name)).parameters) == params, name
        assert getattr(tensord, name).__doc__ == method.__doc__
    assert os.path.isfile(os.path.join(os.path.dirname(tensord.__file__), "py.typed"))
    with open(os.path.join(os.path.dirname(os.path.dirname(tensord.__file__)),
                           "pyproject.toml")) as f:
        assert 'tensord = ["py.typed"]' in f.read()


def test_every_module_function_is_a_session_method(session):
    functions = [n for n, o in public(tensord)
                 if inspect.isfunction(o) and o.__module__ == "tensord" and n != "connect"]
    assert {"tensor", "rand", "is_tensor", "numel", "zeros_like", "no_grad",
            "is_grad_enabled", "enable_grad"} <= set(functions)
    missing = [n for n in functions if not callable(getattr(session, n, None))]
    assert not missing
    x = session.tensor([[1, 2, 3]])
    assert session.is_tensor(x) and not session.is_tensor([1])
    assert session.numel(x) == torch.numel(torch.tensor([[1, 2, 3]]))
    assert repr(session.zeros_like(x)) == repr(torch.zeros_like(torch.tensor([[1, 2, 3]])))
    with pytest.raises(AttributeError, match="'Session' object has no attribute 'nope'"):
        session.nope


def test_nn_functional_is_reachable_after_import_tensord():
    """As torch.nn.functional is after `import torch` alone."""
    code = "import tensord\nprint(tensord.nn.functional.relu.__name__)\n"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(tensord.__path__[0]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "relu\n"


def test_large_tensors_move_in_chunks_with_progress(capfd):
    d = Daemon("--max-frame-bytes", "1M")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port, progress=True)
        rng = np.random.default_rng(1)
        a = rng.standard_normal((1500, 1000)).astype(np.float32)  # 6 MB: 6+ chunks
        t = s.tensor(a)
        back = (t * 2).numpy()
        np.testing.assert_array_equal(back, a * 2)
        err = capfd.readouterr().err
        assert "upload" in err and "download" in err and "100%" in err
        # a non-contiguous tensor reads back in C order
        np.testing.assert_array_equal(t.T.numpy(), a.T)
        assert t.T.tolist()[3][:4] == a.T[3, :4].tolist()
        s.close()
    finally:
        assert d.stop() == 0


def test_large_upload_is_one_request_unless_chunks_are_needed():
    """Up to the frame limit an upload is a single Create (read by the server straight into the
    tensor); above it, or with a progress bar, it is Full + Writes of at most 8 MiB."""
    d = Daemon("--max-frame-bytes", "24M")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)

        def kinds():
            return {c.name: c.count for c in s.stats().requests}

        rng = np.random.default_rng(2)
        cases = [(5 << 20, False, {"create": 1}), (24 << 20, False, {"full": 1, "write": 3}),
                 (40 << 20, False, {"full": 1, "write": 5}),
                 (10 << 20, True, {"full": 1, "write": 2})]  # chunked for the progress bar
        for n, progress, want in cases:
            a = rng.standard_normal(n // 4).astype(np.float32)
            before = kinds()
            t = s.tensor(a, progress=progress)
            after = kinds()
            got = {k: after.get(k, 0) - before.get(k, 0) for k in ("create", "full", "write")}
            assert got == dict({"create": 0, "full": 0, "write": 0}, **want), (n, progress)
            np.testing.assert_array_equal(t.numpy(), a)
            assert t.sum().item() == pytest.approx(float(a.astype(np.float64).sum()), rel=1e-5)
        s.close()
    finally:
        assert d.stop() == 0


def test_from_numpy_copies_at_once_and_downloads_read_each_byte_once(session):
    """torch.tensor(a) copies a: changing a afterwards, even before the upload left the client,
    does not change the tensor. A download whose shape was unknown is one Get for the whole
    (up to the frame limit), read straight into the array numpy() returns."""
    a = np.zeros(3, np.float32)
    t = session.tensor(a)  # from_numpy shares instead (tests/python/test_numpy_sharing.py)
    a[0] = 5
    assert t.tolist() == [0.0, 0.0, 0.0]

    def gets():
        return {c.name: c.count for c in session.stats().requests}.get("get", 0)

    big = session.ones(3 << 20) * 2  # 12 MiB, shape not yet known to the client
    before = gets()
    arr = big.numpy()
    assert gets() - before == 1  # the Get that brought the shape brought all 12 MiB
    assert arr.shape == (3 << 20,) and float(arr.sum()) == 2.0 * (3 << 20)


def test_numpy_is_optional(daemon):
    code = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"  # any `import numpy` now fails
        "import tensord\n"
        "s = tensord.connect('127.0.0.1:%d')\n"
        "x = s.tensor([[1.5, 2.0], [3.0, 4.0]])\n"
        "print((x * 2).tolist(), x.sum().item(), s.tensor([[1, 2]]).dtype)\n"
        "print(x @ x)\n"
        "try:\n    x.numpy()\nexcept ImportError as e:\n    print('ImportError:', e)\n"
        "s.close()\n" % daemon)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(tensord.__path__[0]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    x = torch.tensor([[1.5, 2.0], [3.0, 4.0]])
    lines = out.stdout.splitlines()
    assert lines[0] == "%s %s tensord.int64" % ((x * 2).tolist(), x.sum().item())
    assert "\n".join(lines[1:-1]) == repr(x @ x)
    assert lines[-1].startswith("ImportError: numpy() needs numpy")


def test_module_functions_and_session_methods(session):
    tensord._default = session
    try:
        x = tensord.tensor([[1.0, -2.0], [3.0, 4.0]])
        tx = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
        assert repr(tensord.abs(x)) == repr(torch.abs(tx))
        assert repr(tensord.cat([x, x], 1)) == repr(torch.cat([tx, tx], 1))
        assert repr(tensord.stack([x, x])) == repr(torch.stack([tx, tx]))
        assert repr(tensord.where(x > 0, x, 0.0)) == repr(torch.where(tx > 0, tx, 0.0))
        assert repr(tensord.sum(x, dim=0)) == repr(torch.sum(tx, dim=0))
        assert repr(session.relu(x)) == repr(torch.relu(tx))
        assert repr(tensord.zeros_like(x)) == repr(torch.zeros_like(tx))
        assert repr(tensord.max(x, 1)).replace("tensord", "torch") == repr(torch.max(tx, 1))
        values, indices = x.min(dim=0)
        tv, ti = tx.min(dim=0)
        assert (values.tolist(), indices.tolist()) == (tv.tolist(), ti.tolist())
        assert indices.dtype is tensord.int64
        assert f"{x.sum():.2f}" == f"{tx.sum():.2f}"
        assert float(x[1, 1]) == 4.0 and len(x) == 2 and bool(x[0, 0] > 0)
        assert [r.tolist() for r in x] == tx.tolist()
        assert repr(x.double()) == repr(tx.double()).replace("torch.", "tensord.")
        assert repr(3 - x) == repr(3 - tx) and repr(2 ** x) == repr(2 ** tx)
        assert repr(tensord.eye(2, 3)) == repr(torch.eye(2, 3))
        assert repr(tensord.linspace(0, 1, 5)) == repr(torch.linspace(0, 1, 5))
        assert tensord.arange(6).reshape(2, 3).numel() == 6
    finally:
        tensord._default = None


def test_unix_socket_and_bad_addresses(tmp_path):
    path = str(tmp_path / "t.sock")
    d = Daemon("--unix", path)
    try:
        with tensord.connect("unix:" + path) as s:
            assert s.arange(4).sum().item() == 6
    finally:
        assert d.stop() == 0
    with pytest.raises(ValueError, match="HOST:PORT"):
        tensord.connect("localhost")


def test_auth_token_from_argument_or_environment(tmp_path, monkeypatch):
    tok = tmp_path / "token"
    tok.write_text("s3cret-token-value\n")
    d = Daemon("--auth-token-file", str(tok))
    try:
        addr = "127.0.0.1:%d" % d.port
        with pytest.raises(tensord.TensorError):
            tensord.connect(addr)
        with tensord.connect(addr, token="s3cret-token-value") as s:
            assert s.ones(2).sum().item() == 2
        monkeypatch.setenv("TENSORD_TOKEN", "s3cret-token-value")
        with tensord.connect(addr) as s:
            assert s.ones(3).sum().item() == 3
    finally:
        assert d.stop() == 0


def test_package_installs_offline_and_runs_the_seed_example(daemon, tmp_path):
    """The README's install command, into a fresh venv, then the seed's autograd cell."""
    root = os.path.dirname(os.path.dirname(tensord.__file__))  # client/python
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                          "--no-deps", root], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    code = ("import tensord as torch\n"
            "import tensord.nn.functional as F\n"
            "a = torch.tensor([2.0], requires_grad=True)\n"
            "b = torch.tensor([6.0], requires_grad=True)\n"
            "Q = 3*a**3 - b**2\n"
            "print(f'Q value: {Q.item()}')\n"
            "Q.backward()\n"
            "print(f'Computed dQ/da: {a.grad.item()}')\n"
            "print(torch.__file__)\n"
            "import tensord._fast\n"  # pip built the fast path, and the package uses it
            "print(torch._conn.FAST, tensord._fast.__file__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TENSORD_ADDR"] = "127.0.0.1:%d" % daemon
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    a = torch.tensor([2.0], requires_grad=True)
    b = torch.tensor([6.0], requires_grad=True)
    q = 3 * a ** 3 - b ** 2
    q.backward()
    lines = out.stdout.splitlines()
    assert lines[:2] == ["Q value: %s" % q.item(), "Computed dQ/da: %s" % a.grad.item()]
    assert lines[2].startswith(str(venv))  # the installed copy, not the checkout
    fast, where = lines[3].split(" ", 1)
    pure = os.environ.get("TENSORD_PURE_PYTHON", "") not in ("", "0")  # check-asan's run
    assert fast == str(not pure) and where.startswith(str(venv)), lines[3]


# --- ops bound to torch's signatures (from ops.def through the generated tensord._ops) ---
def test_where_method_receiver_is_input(session):
    """x.where(condition, y) is torch.where(condition, x, y): the method's receiver is the
    operand named `input`, which is where's second (it was sent as the condition)."""
    a = [[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]
    x, tx = session.tensor(a), torch.tensor(a)
    y, ty = session.tensor([[10.0, 20.0, 30.0]]), torch.tensor([[10.0, 20.0, 30.0]])
    c, tc = session.tensor([[True, False, False]]), torch.tensor([[True, False, False]])
    assert repr(x.where(c, y)) == repr(tx.where(tc, ty))
    assert repr(x.where(condition=c, other=y)) == repr(tx.where(condition=tc, other=ty))
    assert repr(x.where(x > 0, 0.0)) == repr(torch.where(tx > 0, tx, 0.0))  # 1.13: no scalar
    assert repr(tensord.where(c, x, y)) == repr(torch.where(tc, tx, ty))
    assert repr(session.where(c, input=x, other=y)) == repr(torch.where(tc, input=tx, other=ty))


def test_arguments_bind_to_torchs_parameter_names(session):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    x, tx = session.tensor(a), torch.tensor(a)

    def same(d, t):
        assert d.dtype.name == str(t.dtype)[len("torch."):]
        assert np.allclose(d.numpy(), t.numpy(), rtol=1e-6, atol=1e-6)
        assert list(d.shape) == list(t.shape)
    # *size: varargs, one sequence, or the keyword
    same(x.reshape(4, 6), tx.reshape(4, 6))
    same(x.reshape((4, 6)), tx.reshape((4, 6)))
    same(x.reshape(shape=[4, -1]), tx.reshape(shape=[4, -1]))
    same(x.permute(2, 0, 1), tx.permute(2, 0, 1))
    same(x.permute((2, 0, 1)), tx.permute((2, 0, 1)))
    same(x.view(x.shape), tx.view(tx.shape))
    # :dims takes an int or a list; :cast casts the input first
    same(x.sum(1), tx.sum(1))
    same(x.sum((0, 2), True), tx.sum((0, 2), True))
    same(x.sum(dim=[0, 1], keepdim=False, dtype=tensord.float64),
         tx.sum(dim=[0, 1], keepdim=False, dtype=torch.float64))
    same(tensord.mean(x, 2, dtype=tensord.float64), torch.mean(tx, 2, dtype=torch.float64))
    # torch's names for parameters whose wire field differs
    same(x.transpose(dim0=2, dim1=0), tx.transpose(dim0=2, dim1=0))
    same(x.narrow(2, 1, length=2), tx.narrow(2, 1, length=2))
    same(x.select(1, index=2), tx.select(1, index=2))
    same(x.flatten(end_dim=1), tx.flatten(end_dim=1))
    same(x[0].tril(diagonal=-1), tx[0].tril(diagonal=-1))
    same(x.clamp(max=1.5), tx.clamp(max=1.5))
    same(x.std(2, False, True), tx.std(2, False, True))
    # the shape of cumsum's signature (input, dim, *, dtype) and of dot's and mv's (two operands)
    same(tensord.softmax(x, 0), torch.softmax(tx, 0))
    same(x.softmax(dim=1, dtype=tensord.float64), tx.softmax(dim=1, dtype=torch.float64))
    same(x[0].mm(x[1].t()), tx[0].mm(tx[1].t()))
    same(tensord.mm(x[0], mat2=x[1].t()), torch.mm(tx[0], mat2=tx[1].t()))
    same(tensord.nn.functional.linear(x, x[0]), torch.nn.functional.linear(tx, tx[0]))
    # in place, through the same binding
    y, ty = x.clone(), tx.clone()
    y.add_(5)
    ty.add_(5)
    y.clamp_(min=1.0)
    ty.clamp_(min=1.0)
    same(y, ty)
    # what Python refuses, refused before anything is sent (torch raises TypeError too)
    for call in (lambda t: t.transpose(0, dim0=1), lambda t: t.add(t, alpha2=1),
                 lambda t: t.softmax(), lambda t: t.exp(1), lambda t: t.where(t > 0)):
        with pytest.raises(TypeError):
            call(tx)
        with pytest.raises(TypeError):
            call(x)
    with pytest.raises(TypeError, match=r"^transpose\(\) got multiple values for argument "
                                        r"'dim0'$"):
        x.transpose(0, dim0=1)
    with pytest.raises(AttributeError, match="'Tensor' object has no attribute 'matmul_'"):
        x.matmul_  # ops.def: matmul has no in-place form
    same(x, tx)  # nothing ran


def test_a_new_ops_def_row_reaches_the_client_unchanged():
    """dot, mv and cumsum were added as ops.def rows with no client edit: the generated table
    and the client's generic binding give torch's call forms. Checks the request each call
    would send (no daemon: Session._op records instead of sending)."""
    sent = []

    class Recorder:
        def _op(self, name, inputs, inplace=False, **kw):
            sent.append((name, list(inputs), inplace, kw))
            return "<%s>" % name

    def tensor(label):
        t = tensord.Tensor.__new__(tensord.Tensor)
        t._s, t._label = Recorder(), label
        return t
    a, b, v = tensor("a"), tensor("b"), tensor("v")

    def last():
        name, inputs, inplace, kw = sent[-1]
        return (name, [getattr(x, "_label", x) for x in inputs], inplace, kw)
    tensord.dot(a, b)
    assert last() == ("dot", ["a", "b"], False, {})
    a.dot(b)
    assert last() == ("dot", ["a", "b"], False, {})
    a.mv(v)
    assert last() == ("mv", ["a", "v"], False, {})
    tensord.mv(a, vec=v)
    assert last() == ("mv", ["a", "v"], False, {})
    tensord.cumsum(a, 0)
    assert last() == ("cumsum", ["a"], False, {"dim": 0})
    a.cumsum(dim=1, dtype=tensord.float64)
    assert last() == ("cumsum", ["a"], False, {"dim": 1, "dtype": "float64"})
    assert not tensord._OP_TABLE["cumsum"].inplace  # the row has no cumsum_ (yet), so:
    with pytest.raises(AttributeError, match="cumsum_"):
        a.cumsum_(-1)
    with pytest.raises(TypeError, match=r"^cumsum\(\) missing 1 required positional argument: "
                                        r"'dim'$"):
        a.cumsum()
    with pytest.raises(TypeError, match=r"^dot\(\) got an unexpected keyword argument 'alpha'$"):
        tensord.dot(a, b, alpha=None)  # (out= is torch's, for every function: _legacy)
    assert tensord.dot.__doc__.startswith("torch.dot(input, tensor)")  # torch's keyword
    assert str(inspect.signature(a.cumsum)) == "(dim, *, dtype=None)"


def test_methods_exist_where_torch_has_them(session):
    """ops.def's namespace flags: no x.gelu / x.zeros_like (torch has none), x.fill_ but no
    x.fill, no x.slice; each checked against torch's own Tensor."""
    x = session.tensor([1.0, -2.0])
    tx = torch.tensor([1.0, -2.0])
    for name in ("gelu", "mse_loss", "cross_entropy", "linear", "zeros_like", "rand_like",
                 "fill", "zero", "copy", "uniform", "slice", "exp", "fill_", "zero_", "cumsum"):
        assert hasattr(x, name) == hasattr(tx, name), name
    x.fill_(3.0)
    assert x.tolist() == [3.0, 3.0]
