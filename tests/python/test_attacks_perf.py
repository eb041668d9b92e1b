"""Attacks on issue 19's second round (the daemon's buffer cache and releaser thread, its
per-thread memo and inline small tensors, the clients' fast paths): a freed tensor whose bytes
are still being sent must not be handed to another allocation, views of freed bases keep their
bytes, the node's cap holds across sessions with the cache full. Values are compared with numpy
computing the same thing; every read has a timeout and nothing rests on a timing margin.
"""
import gc
import os
import struct
import time

import numpy as np
import pytest

import tensord
import wire
from test_attacks import Attacker, guard  # noqa: F401 (guard: a fixture)
from test_hostile import frame

pb = wire.pb
pytestmark = pytest.mark.timeout(240)
MiB = 1 << 20
SANITIZED = os.environ.get("TENSORD_SANITIZED") == "1"


def read_replies(a, count):
    """`count` (Response, data) read in small pieces (the daemon's sends back up meanwhile)."""
    buf = bytearray()
    got = []
    reads = 0
    while len(got) < count:
        chunk = a.s.recv(65536)
        assert chunk, "the connection was closed"
        buf += chunk
        reads += 1
        while len(buf) >= 12:
            ml, dl = struct.unpack_from(">IQ", buf)
            if len(buf) < 12 + ml + dl:
                break
            got.append((pb.Response.FromString(bytes(buf[12:12 + ml])),
                        bytes(buf[12 + ml:12 + ml + dl])))
            del buf[:12 + ml + dl]
    return got


def test_freed_while_its_get_reply_is_queued_keeps_the_replied_bytes(guard):
    """Get of a 4 MiB tensor, then Free of it, pipelined to a reader that does not read: the
    reply waits in the daemon's send queue. Meanwhile another session allocates and fills
    buffers of the same size (which the cache would hand out if the freed one went there). The
    reply, read afterwards, still carries the tensor's own bytes."""
    g = guard("--cache-bytes", "64M", "--cache-decay", "0", "--max-bytes", "1G")
    a = Attacker(g.port, timeout=60)
    n = 1 << 20
    vals = [(np.arange(n, dtype=np.float32) * 0 + (i + 1)) for i in range(6)]
    for i, v in enumerate(vals):
        a.create(10 + i, v)
    out = bytearray()
    for i in range(6):
        r = pb.Request(id=500 + 2 * i)
        r.get.handle = 10 + i
        out += frame(r)
        r = pb.Request(id=501 + 2 * i)
        r.free.handles.append(10 + i)
        out += frame(r)
    a.send(bytes(out))
    time.sleep(0.5)  # not a margin: only lets the replies queue up before the others come
    other = tensord.connect("127.0.0.1:%d" % g.port)
    keep = [other.full((n,), -7.0) for _ in range(8)]
    for k in keep:
        k.add_(-1.0)
    other.synchronize()
    got = read_replies(a, 12)
    for i in range(6):
        resp, data = got[2 * i]
        assert resp.id == 500 + 2 * i and resp.status.code == pb.OK, resp.status.message
        arr = np.frombuffer(data, np.float32)
        assert arr.size == n
        bad = np.flatnonzero(arr != i + 1)
        assert bad.size == 0, "reply %d: %d of %d values changed (first %r)" % (
            i, bad.size, n, arr[bad[:4]])
        assert got[2 * i + 1][0].status.code == pb.OK
    for k in keep:
        assert (k.numpy() == -8.0).all()
    other.close()
    a.close_session()
    g.check()
    g.stop()


def test_views_outlive_their_freed_base_whatever_its_size(guard):
    """Views (a slice, an expand, a reshape) of a tensor whose own handle was freed keep its
    values while new tensors of the same size (inline small blocks, cached large buffers) are
    made and filled; an in-place op on one view shows in another. Compared with numpy."""
    g = guard("--cache-bytes", "64M", "--cache-decay", "0", "--max-bytes", "512M")
    s = tensord.connect("127.0.0.1:%d" % g.port)
    for n in (1, 2, 3, 7, 33, 1 << 15, 1 << 20):
        for dt in ("float32", "float64", "int32", "int64", "bool"):
            base = (np.arange(n) % 3 == 0) if dt == "bool" else np.arange(n).astype(dt)
            t = s.tensor(base)
            v, e, r = t[n // 2:], t.expand(2, n), t.view(-1)
            del t
            gc.collect()
            s.synchronize()
            junk = [s.tensor((np.arange(n) % 2 == 1) if dt == "bool"
                             else np.full(n, 99).astype(dt)) for _ in range(4)]
            s.synchronize()
            assert np.array_equal(v.numpy(), base[n // 2:]), (n, dt)
            assert np.array_equal(e.numpy(), np.broadcast_to(base, (2, n))), (n, dt)
            assert np.array_equal(r.numpy(), base), (n, dt)
            want = base.copy()
            if dt == "bool":
                v.logical_not_()
                want[n // 2:] = ~want[n // 2:]
            else:
                v.add_(1)
                want[n // 2:] += 1
            assert np.array_equal(r.numpy(), want), (n, dt)
            del v, e, r, junk
    s.close()
    g.check()
    g.stop()


def test_node_cap_is_shared_exactly_with_the_cache_full_of_another_sessions_buffers():
    """Session A frees 7 x 8 MiB (the cache keeps what its 32 MiB allow); session B then gets
    the node's whole 64 MiB less bookkeeping: 7 x 8 MiB fit, an 8th (64 MiB and more) is
    refused, and so is A's next 8 MiB (the node is full); B's tensors keep their values."""
    from conftest import Daemon
    d = Daemon("--cache-bytes", "32M", "--cache-decay", "0", "--max-bytes", "64M",
               "--session-max-bytes", "64M")
    try:
        assert d.port is not None, d.text()
        addr = "127.0.0.1:%d" % d.port
        a, b = tensord.connect(addr), tensord.connect(addr)
        ts = [a.full((2 * MiB,), float(i)) for i in range(7)]
        a.synchronize()
        del ts
        gc.collect()
        a.synchronize()
        cached = a.stats().cached_bytes  # the request carries the Frees
        if not SANITIZED:
            assert cached >= 16 * MiB  # the cache did fill
        keep = [b.full((2 * MiB,), 10.0 + i) for i in range(7)]
        b.synchronize()
        with pytest.raises(tensord.TensorError, match="quota"):
            b.full((2 * MiB,), 1.0)
            b.synchronize()
        with pytest.raises(tensord.TensorError, match="quota"):
            a.full((2 * MiB,), 1.0)
            a.synchronize()
        st = b.stats()
        assert st.server_bytes <= 64 * MiB
        assert st.allocated_bytes + st.cached_bytes <= 64 * MiB + 4 * MiB  # + bookkeeping
        for i, k in enumerate(keep):
            v = k.numpy()
            assert v.min() == v.max() == 10 + i
        a.close()
        b.close()
    finally:
        assert d.stop() == 0


def test_relu_forward_and_backward_on_signed_zeros_nan_and_inf_as_torch(td):
    """relu keeps -0.0 (torch's clamp_min(x, 0)), passes NaN; its backward (the kernel of
    issue 19) zeroes the gradient where x <= 0, -0.0 included, and passes it at NaN and inf."""
    import torch
    vals = [float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 1.0, -1.0, 1e-45]
    gout = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, float("nan"), float("inf")]
    for dt in ("float32", "float64"):
        got = []
        for m in (torch, td):
            x = m.tensor(vals, dtype=getattr(m, dt), requires_grad=True)
            y = m.nn.functional.relu(x)
            y.backward(m.tensor(gout, dtype=getattr(m, dt)))
            got.append((np.asarray(y.tolist()), np.asarray(x.grad.tolist())))
        (ty, tg), (dy, dg) = got
        assert np.array_equal(ty, dy, equal_nan=True), (dt, ty, dy)
        assert np.signbit(ty).tolist() == np.signbit(dy).tolist(), (dt, ty, dy)
        assert np.array_equal(tg, dg, equal_nan=True), (dt, tg, dg)
        assert np.signbit(dy[1]) and not np.signbit(dy[2])  # hand-derived: -0.0 kept, 0.0 kept


def test_a_leading_python_number_is_the_lowest_tier_as_in_torch(td):
    """torch.add(2, t) wraps 2 as 2 + t does: beside a zero-dim int32 tensor the result stays
    int32 (the client made the 2 an int64 tensor of its own, so int64 came back)."""
    import torch
    for m in (torch, td):
        t = m.tensor(3, dtype=m.int32)
        f = m.tensor(3.0, dtype=m.float64)
        got = [m.add(2, t), m.sub(2, t), m.mul(True, t), m.pow(2, t), m.add(2.5, f),
               m.remainder(7, t), m.add(2, m.tensor([1, 2], dtype=m.int32))]
        names = [str(r.dtype).split(".")[-1] for r in got]
        assert names == ["int32", "int32", "int32", "int32", "float64", "int32", "int32"], m
        assert [np.asarray(r.tolist()).tolist() for r in got] == [5, -1, 3, 8, 5.5, 1, [3, 4]]


def test_python_floats_beyond_float32_become_inf_as_in_torch(td):
    """torch.tensor([3.4e39]) is inf in float32 (C's conversion); the client's packers (struct's
    "f" in pure Python, PyFloat_Pack4 in the extension) refused it with OverflowError. Values
    that round to float32's largest finite value stay finite; float64 keeps them exactly."""
    import torch
    fmax = float(np.finfo(np.float32).max)
    cases = [[3.4e39], [-3.4e39, 1.0], [fmax, 3.4028236e38, 3.5e38],
             [[1e39, 2.0], [-1e40, 0.5]], 1e300]
    for vals in cases:
        want = torch.tensor(vals).tolist()
        got = td.tensor(vals).tolist()
        assert got == want, (vals, got, want)
        assert str(td.tensor(vals).dtype) == "tensord.float32"
    # hand-derived: the sign is kept and the largest finite float32 is not rounded away
    assert td.tensor([-1e39, fmax]).tolist() == [-float("inf"), fmax]
    assert td.tensor([1e39], dtype=td.float64).tolist() == [1e39]
