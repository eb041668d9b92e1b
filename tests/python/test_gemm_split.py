"""Issue 19, third round: OpenBLAS runs one thread in the daemon, and products of at least
2^25 multiply-adds (core/ops/matmul.c, TD_GEMM_SPLIT_MACS) are split into blocks of rows or
columns of the result across the daemon's own threads. Split products against torch (float32
and float64; transposed, column-sliced and batched operands; linear's fused bias; shapes just
below, at and above the threshold; one row, one column; empty), and the property that a GEMM
the daemon does not split runs on one thread only."""
import glob
import os

import numpy as np
import pytest
import torch

from conftest import Daemon

SPLIT = 1 << 25  # TD_GEMM_SPLIT_MACS


@pytest.fixture(scope="module")
def tds():
    """A tensord module whose default session is on a daemon with two compute threads (the
    split needs more than one, whatever the test machine's CPU count)."""
    import tensord
    d = Daemon("--threads", "2")
    assert d.port is not None
    s = tensord.connect("127.0.0.1:%d" % d.port)
    old, tensord._default = tensord._default, s
    try:
        yield tensord
    finally:
        tensord._default = old
        s.close()
        assert d.stop() == 0


def rand(shape, dt, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=getattr(torch, dt))


def check(got, want, k):
    """float32 GEMMs of depth k agree with torch's (the same OpenBLAS, another blocking of its
    threads) to a few ulps of the partial sums; float64 far tighter."""
    want = want.numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = (2e-6 if want.dtype == np.float32 else 1e-13) * np.sqrt(max(k, 1))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 4)


# (n, k, m): just below the threshold, at it, above it with odd sizes, many blocks.
SHAPES = [(256, 511, 256), (256, 512, 256), (257, 513, 255), (600, 512, 300)]


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("n,k,m", SHAPES)
@pytest.mark.parametrize("layout", ["plain", "a_t", "b_t", "both_t", "sliced"])
def test_split_matmul_matches_torch(tds, dt, n, k, m, layout):
    """a @ b for each layout BLAS reads in place: as is, either operand a transposed view,
    both, or column slices of wider matrices (leading dimension above the row length)."""
    if layout in ("a_t", "both_t"):
        a = rand((k, n), dt, 1).T
    elif layout == "sliced":
        a = rand((n, k + 7), dt, 1)[:, 3:3 + k]
    else:
        a = rand((n, k), dt, 1)
    if layout in ("b_t", "both_t"):
        b = rand((m, k), dt, 2).T
    elif layout == "sliced":
        b = rand((k, m + 5), dt, 2)[:, 2:2 + m]
    else:
        b = rand((k, m), dt, 2)
    da, db = tds.from_numpy(a.numpy()), tds.from_numpy(b.numpy())
    if layout in ("a_t", "both_t"):
        da = tds.from_numpy(a.T.contiguous().numpy()).T
    if layout in ("b_t", "both_t"):
        db = tds.from_numpy(b.T.contiguous().numpy()).T
    if layout == "sliced":
        da = tds.from_numpy(rand((n, k + 7), dt, 1).numpy())[:, 3:3 + k]
        db = tds.from_numpy(rand((k, m + 5), dt, 2).numpy())[:, 2:2 + m]
    check((da @ db).numpy(), a @ b, k)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_split_batched_matmul_matches_torch(tds, dt):
    """Each product of a batch at the threshold is split on its own."""
    a, b = rand((3, 256, 512), dt, 3), rand((3, 512, 256), dt, 4)
    check((tds.from_numpy(a.numpy()) @ tds.from_numpy(b.numpy())).numpy(), a @ b, 512)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("n", [256, 255, 301])
def test_split_linear_with_bias_matches_torch(tds, dt, n):
    """linear's fused addmm (bias rows in the result, beta = 1) split across threads: every
    block adds onto its own rows of the bias once; forward and the gradients (whose dW product
    is itself at the threshold)."""
    x, w, bias = rand((n, 512), dt, 5), rand((256, 512), dt, 6), rand((256,), dt, 7)
    g = rand((n, 256), dt, 8)
    tw, tb = w.clone().requires_grad_(), bias.clone().requires_grad_()
    out = torch.nn.functional.linear(x, tw, tb)
    (out * g).sum().backward()
    dw = tds.from_numpy(w.numpy()).requires_grad_()
    db = tds.from_numpy(bias.numpy()).requires_grad_()
    dout = tds.nn.functional.linear(tds.from_numpy(x.numpy()), dw, db)
    (dout * tds.from_numpy(g.numpy())).sum().backward()
    check(dout.detach().numpy(), out.detach(), 512)
    check(dw.grad.numpy(), tw.grad, n)
    check(db.grad.numpy(), tb.grad, n)


@pytest.mark.parametrize("n,k,m", [(1, 1 << 15, 1 << 10), (1 << 10, 1 << 15, 1),
                                   (2, 1 << 14, 1 << 10), (3, 1 << 13, 1 << 11)])
def test_split_one_row_or_one_column_matches_torch(tds, n, k, m):
    """One row (split by columns), one column (by rows), and results too short to give each
    thread a block of rows (split by columns), all at or above the threshold."""
    assert n * k * m >= SPLIT
    a, b = rand((n, k), "float32", 9), rand((k, m), "float32", 10)
    check((tds.from_numpy(a.numpy()) @ tds.from_numpy(b.numpy())).numpy(), a @ b, k)


@pytest.mark.parametrize("n,k,m", [(0, 1 << 14, 1 << 12), (1 << 12, 0, 1 << 12),
                                   (1 << 12, 1 << 14, 0)])
def test_empty_products_like_torch(tds, n, k, m):
    """Empty products never reach BLAS: torch's shape, and zeros for k = 0."""
    a, b = torch.ones((n, k)), torch.ones((k, m))
    got = (tds.from_numpy(a.numpy()) @ tds.from_numpy(b.numpy())).numpy()
    np.testing.assert_array_equal(got, (a @ b).numpy())


def thread_cpu(pid):
    """CPU ns of each of the daemon's threads but its main (loop) thread."""
    out = {}
    for f in glob.glob("/proc/%d/task/*/schedstat" % pid):
        tid = int(f.split("/")[4])
        if tid == pid:
            continue
        try:
            with open(f) as fh:
                out[tid] = int(fh.read().split()[0])
        except OSError:
            pass  # a thread that ended
    return out


@pytest.mark.skipif(not glob.glob("/proc/self/task/*/schedstat"), reason="needs schedstat")
def test_unsplit_gemm_runs_on_one_thread():
    """The daemon's BLAS runs one thread: a product just under the split threshold (big
    enough that OpenBLAS on two threads would hand half of it to its worker) is computed by
    the one thread that runs the request. Each request is waited for, so whichever pool
    thread runs it, the CPU every thread but the loop gained meanwhile is that request's; the
    busiest thread must have at least 85 % of it (OpenBLAS on two threads: about half)."""
    import tensord
    d = Daemon("--threads", "2")
    assert d.port is not None
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        n, k, m = 200, 640, 256
        assert n * k * m < SPLIT
        a = s.tensor(np.ones((n, k), np.float32))
        b = s.tensor(np.ones((k, m), np.float32))
        (a @ b).sum().item()
        busiest = total = 0
        for _ in range(20):
            before = thread_cpu(d.proc.pid)
            (a @ b).sum().item()
            after = thread_cpu(d.proc.pid)
            gains = [after[t] - before.get(t, 0) for t in after]
            busiest += max(gains)
            total += sum(gains)
        info = s.stats().blas if hasattr(s, "stats") else ""
        s.close()
    finally:
        d.stop()
    assert busiest >= 0.85 * total, "busiest thread %.1f ms of %.1f ms" % (
        busiest / 1e6, total / 1e6)
    if info:  # one thread per BLAS call, products on the daemon's 2
        assert info.endswith("; one thread per BLAS call; 2 threads"), info
