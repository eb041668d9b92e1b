"""Named tensors (issue 20): a session as a dict of str -> Tensor (s["w1"] = t, s["w1"],
del s["w1"], keys(), in, len), kept by the server past the handles, connections and (with
--data-dir) restarts that made them; names checked, limited and charged to the session's quota.

Expected values come from a Python dict driven through the same steps (the order and the
KeyErrors) and from PyTorch (values, requires_grad, .grad, grad_fn). The C fast path and the
pure-Python path both run these: the whole file runs again with TENSORD_PURE_PYTHON=1 in a
child pytest (test_pure_python_path_too) when this run has the fast path."""
import gc
import os
import subprocess
import sys

import pytest
import torch

import tensord
import wire
from conftest import Daemon
from tensord import _conn

pb = wire.pb
ONE = b"\x00\x00\x80\x3f"  # float32 1.0, little-endian
ENTRY_BYTES = 320  # what the daemon charges per table entry (TD_ENTRY_BYTES, session.h)


@pytest.fixture
def s(daemon):
    sess = tensord.connect("127.0.0.1:%d" % daemon)
    yield sess
    sess.close()


def test_a_session_behaves_like_a_dict_of_its_names(s):
    ref = {}  # the same steps on a dict give the expected order, membership and KeyErrors
    vals = {"w1": [1.0, 2.0], "layer.0/bias:x-y_Z9": [3.0], "w2": [4.0, 5.0, 6.0]}
    for k, v in vals.items():
        s[k] = s.tensor(v)
        ref[k] = torch.tensor(v)
    s["w1"] = s.tensor([7.0])  # rebinding keeps the place
    ref["w1"] = torch.tensor([7.0])
    assert s.keys() == list(ref.keys())
    del s["layer.0/bias:x-y_Z9"]
    del ref["layer.0/bias:x-y_Z9"]
    s["layer.0/bias:x-y_Z9"] = s.tensor([8.0])  # set again after a delete: it goes last
    ref["layer.0/bias:x-y_Z9"] = torch.tensor([8.0])
    assert s.keys() == list(ref.keys()) == ["w1", "w2", "layer.0/bias:x-y_Z9"]
    assert list(s) == list(ref) and len(s) == len(ref) == 3
    assert ("w2" in s) == ("w2" in ref) is True
    assert ("nope" in s) == ("nope" in ref) is False
    assert (3 in s) is False
    for k in ref:
        assert s[k].tolist() == ref[k].tolist()
    assert [k for k, _ in s.items()] == list(ref)
    assert [t.tolist() for t in s.values()] == [t.tolist() for t in ref.values()]
    assert s.get("nope") is None and s.get("w2").tolist() == ref.get("w2").tolist()
    for bad in ("nope", "", "a b", 7):  # missing or impossible keys: KeyError, as a dict's
        with pytest.raises(KeyError) as got:
            s[bad]
        with pytest.raises(KeyError) as want:
            ref[bad]
        assert got.value.args == want.value.args and str(got.value) == str(want.value)
    with pytest.raises(KeyError) as got:
        del s["nope"]
    assert got.value.args == ("nope",)
    assert bool(s) is True  # a session is true whatever it holds
    s.synchronize()  # nothing failed on the way


def test_handle_is_the_tensors_read_only_handle(s):
    t = s.tensor([1, 2])
    assert isinstance(t.handle, int) and t.handle == t._h
    s["t"] = t
    u = s["t"]
    assert u.handle != t.handle  # the same tensor under a new handle
    with pytest.raises(AttributeError):
        t.handle = 5


def test_the_named_tensor_is_the_same_tensor_and_outlives_its_handles(s):
    a = s.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = a * a
    s["a"] = a
    s["y"] = y
    ta = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ty = ta * ta
    ty.sum().backward()
    y.sum().backward()
    del a, y
    gc.collect()
    s.synchronize()  # the collected handles are freed on the server with the next request
    got_a, got_y = s["a"], s["y"]
    assert got_a.tolist() == ta.tolist()
    assert got_a.requires_grad is True and got_a.is_leaf
    assert got_a.grad.tolist() == ta.grad.tolist()
    assert got_y.grad_fn.name() == ty.grad_fn.name() == "MulBackward0"
    assert repr(got_y) == repr(ty).replace("torch", "tensord")
    # a dict holds a reference: an in-place change through one handle shows through the name
    with s.no_grad():
        got_a.mul_(10)
    assert s["a"].tolist() == [10.0, 20.0, 30.0]


def test_names_survive_a_reconnect_and_resume(daemon):
    s1 = tensord.connect("127.0.0.1:%d" % daemon)
    w = s1.tensor([[1.5, -2.0], [0.25, 4.0]], dtype=tensord.float64, requires_grad=True)
    (w * 3).sum().backward()
    s1["w1"] = w
    s1["steps"] = s1.tensor([7], dtype=tensord.int32)
    del w
    s1.synchronize()
    token = s1.token
    s1._c.close()  # the connection goes; the session stays for its TTL
    s2 = tensord.Session("127.0.0.1:%d" % daemon, resume=token)
    try:
        tw = torch.tensor([[1.5, -2.0], [0.25, 4.0]], dtype=torch.float64, requires_grad=True)
        (tw * 3).sum().backward()
        assert s2.keys() == ["w1", "steps"]
        w = s2["w1"]
        assert w.dtype == tensord.float64 and w.tolist() == tw.tolist()
        assert w.requires_grad is True and w.grad.tolist() == tw.grad.tolist()
        steps = s2["steps"]
        assert steps.dtype == tensord.int32 and steps.tolist() == [7]
    finally:
        s2.close()


def test_names_survive_a_daemon_restart(tmp_path):
    data_dir = str(tmp_path / "data")
    d = Daemon("--data-dir", data_dir)
    try:
        s1 = tensord.connect("127.0.0.1:%d" % d.port)
        a = s1.tensor([2.0, 3.0], requires_grad=True)
        (a * a).sum().backward()
        s1["b"] = s1.arange(6).reshape(2, 3)
        s1["a"] = a  # also under a handle
        solo = s1.tensor([1.0, -1.0], requires_grad=True)
        (solo * 5).sum().backward()
        s1["solo"] = solo
        del solo  # only the name holds it
        gc.collect()
        s1.synchronize()
        handle_a, token = a._h, s1.token
        s1._c.close()
    finally:
        assert d.stop() == 0
    d = Daemon("--data-dir", data_dir)
    try:
        assert "sessions_restored count=1 failed=0" in d.text()
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=token)
        ta = torch.tensor([2.0, 3.0], requires_grad=True)
        (ta * ta).sum().backward()
        tsolo = torch.tensor([1.0, -1.0], requires_grad=True)
        (tsolo * 5).sum().backward()
        assert r.keys() == ["b", "a", "solo"]
        assert r["b"].tolist() == torch.arange(6).reshape(2, 3).tolist()
        assert r["a"].grad.tolist() == ta.grad.tolist()
        assert r["solo"].requires_grad and r["solo"].grad.tolist() == tsolo.grad.tolist()
        # "a" is the tensor under a's handle, restored once: a change through one shows in both
        with r.no_grad():
            tensord.Tensor(r, handle_a).add_(1)
        assert r["a"].tolist() == [3.0, 4.0]
        r.close()
    finally:
        assert d.stop() == 0


def test_bad_names_are_refused_and_the_daemon_serves_on(conn, s):
    conn.call(_create(1), ONE)
    for bad, why in (("", "a tensor name must not be empty"),
                     ("x" * 256, "a tensor name is at most 255 bytes, not 256"),
                     ("a b", "not byte 0x20 at offset 1"), ("w,1", "not byte 0x2c at offset 1"),
                     ("é", "not byte 0xc3 at offset 0"), ("a\x00b", "not byte 0x00 at offset 1")):
        for kind in ("set_name", "get_name", "del_name"):
            req = pb.Request()
            getattr(req, kind).name = bad
            if kind == "set_name":
                req.set_name.handle = 1
            elif kind == "get_name":
                req.get_name.out = 9
            with pytest.raises(wire.ServerError) as e:
                conn.call(req)
            assert e.value.code == pb.INVALID_ARGUMENT and why in e.value.message, bad
            if kind == "get_name":
                conn.free(9)  # the failure record
    req = pb.Request()
    req.set_name.name = "x" * 255  # the longest name
    req.set_name.handle = 1
    conn.call(req)
    req = pb.Request()
    req.get_name.name = "missing"
    req.get_name.out = 9
    with pytest.raises(wire.ServerError) as e:
        conn.call(req)
    assert e.value.code == pb.UNKNOWN_HANDLE and e.value.message == "KeyError: 'missing'"
    req = pb.Request()
    req.set_name.name = "y"
    req.set_name.handle = 12345
    with pytest.raises(wire.ServerError) as e:
        conn.call(req)
    assert e.value.code == pb.UNKNOWN_HANDLE and e.value.message == "unknown handle 12345"
    req = pb.Request()
    req.list_names.SetInParent()
    assert list(conn.call(req).names.names) == ["x" * 255]
    # the client: a bad name fails at the next blocking point, naming the line; a non-str at once
    t = s.tensor([1.0])
    s["not ok"] = t
    line = sys._getframe().f_lineno - 1
    with pytest.raises(tensord.TensorError) as e:
        s.synchronize()
    assert e.value.code == pb.INVALID_ARGUMENT and e.value.where.endswith(":%d" % line)
    with pytest.raises(TypeError):
        s[1] = t
    with pytest.raises(TypeError):
        s["n"] = [1.0]
    s["ok"] = t
    assert s.keys() == ["ok"] and s["ok"].tolist() == [1.0]  # serving on


def test_a_name_of_a_failed_op_is_refused_with_its_cause(s):
    a, b = s.tensor([1.0, 2.0, 3.0]), s.tensor([1.0, 2.0])
    s["c"] = a + b  # the add fails; so does the SetName naming its result
    with pytest.raises(tensord.TensorError) as e:
        s.synchronize()
    assert "must match the size of tensor b" in str(e.value)
    assert "c" not in s


@pytest.mark.timeout(240)
def test_the_name_count_is_limited(daemon):
    c = wire.Conn(daemon)
    try:
        c.call(_create(1), ONE)
        limit = 65536
        last = None
        for i in range(limit):
            req = pb.Request()
            req.set_name.name = "n%d" % i
            req.set_name.handle = 1
            last = c.send(req)
        c.wait(last)
        assert last.error is None
        req = pb.Request()
        req.set_name.name = "one-more"
        req.set_name.handle = 1
        with pytest.raises(wire.ServerError) as e:
            c.call(req)
        assert e.value.code == pb.LIMIT_EXCEEDED
        assert e.value.message == "session name limit reached: 65536 names"
        req = pb.Request()
        req.list_names.SetInParent()
        names = list(c.call(req).names.names)
        assert len(names) == limit and names[0] == "n0" and names[-1] == "n65535"
    finally:
        c.close()


def test_names_are_charged_to_the_session_quota(s):
    t = s.tensor([1.0, 2.0])
    before = s.stats().session_bytes
    for i in range(100):
        s["name%04d" % i] = t  # 8 bytes each
    assert s.stats().session_bytes - before == 100 * (ENTRY_BYTES + 8)
    for i in range(100):
        del s["name%04d" % i]
    assert s.stats().session_bytes == before


def test_a_tiny_session_quota_refuses_a_name():
    # room for the tensor (8 bytes) and its handle entry, not for a name's entry as well
    d = Daemon("--session-max-bytes", str(8 + ENTRY_BYTES + ENTRY_BYTES // 2))
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        t = s.tensor([1.0, 2.0])
        s["w"] = t
        with pytest.raises(tensord.TensorError) as e:
            s.synchronize()
        assert e.value.code == pb.QUOTA_EXCEEDED
        assert "session memory quota exceeded" in e.value.message
        assert s.keys() == [] and t.tolist() == [1.0, 2.0]
        s.close()
    finally:
        assert d.stop() == 0


@pytest.mark.timeout(280)
@pytest.mark.skipif(not _conn.FAST, reason="this run is the pure-Python one already")
def test_pure_python_path_too(daemon):
    env = dict(os.environ, TENSORD_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-k", "not limited and not pure_python", __file__],
                         env=env, capture_output=True, text=True, timeout=260,
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


def _create(handle):
    req = pb.Request()
    req.create.out = handle
    req.create.dtype = pb.FLOAT32
    req.create.shape.append(1)
    return req
