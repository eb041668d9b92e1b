"""A small backward runs on the daemon's loop, as a tiny op does; a large or unknowable one on a
worker.

Backward was always sent to the worker pool ("a graph's size is unknown until walked"), so the
seed example paid a hand-over to a worker and back, and its replies went out in two writes. Now
core keeps, on every autograd node, an estimate of what a backward from it may cost (the ops'
own cost rules, td_autograd_backward_work), and rpc decides by it as it does for an op.

Where a request ran is read from the daemon's threads: each thread's count of timeslices
(/proc/<pid>/task/<tid>/schedstat, third field). The loop is the main thread (tid == pid); a
request handed to the pool wakes a worker (td-pool), at least one timeslice of a thread that
is not the loop."""
import glob

import numpy as np
import pytest
import torch

from conftest import Daemon

pytestmark = pytest.mark.skipif(not glob.glob("/proc/self/task/*/schedstat"),
                                reason="needs schedstat")


def off_loop_slices(pid):
    """Timeslices run so far by the daemon's threads that run requests off the loop: all but
    the loop (the main thread) and the memory helpers (td-release unmaps large frees, td-decay
    trims the buffer cache), which wake for frees whichever thread ran the request."""
    total = 0
    for d in glob.glob("/proc/%d/task/*" % pid):
        if d.rsplit("/", 1)[1] == str(pid):
            continue
        try:
            with open(d + "/comm") as fh:
                if fh.read().strip() in ("td-release", "td-decay"):
                    continue
            with open(d + "/schedstat") as fh:
                total += int(fh.read().split()[2])
        except OSError:
            pass  # a thread that ended
    return total


@pytest.fixture
def own():
    import tensord
    d = Daemon()
    assert d.port is not None, d.text()[-2000:]
    s = tensord.connect("127.0.0.1:%d" % d.port)
    yield s, d.proc.pid
    s.close()
    d.stop()


def seed(m):
    a = m.tensor([2.0], requires_grad=True)
    b = m.tensor([6.0], requires_grad=True)
    q = 3 * a ** 3 - b ** 2
    q.backward()
    return a.grad.item(), b.grad.item()


def test_the_seed_examples_backward_runs_on_the_loop(own):
    s, pid = own
    n = 300
    for _ in range(20):
        assert seed(s) == seed(torch) == (36.0, -12.0)
    before = off_loop_slices(pid)
    for _ in range(n):
        assert seed(s) == (36.0, -12.0)
    woke = off_loop_slices(pid) - before
    # on the pool every one of the n backwards wakes a worker (n slices at least); on the loop
    # only the daemon's housekeeping threads run, a few times a second
    assert woke < n // 3, "%d timeslices off the loop for %d backwards" % (woke, n)


def test_autograd_grad_of_a_small_graph_runs_on_the_loop(own):
    import tensord
    s, pid = own
    n = 200
    x = s.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    want = torch.autograd.grad((tx.sin() * tx).sum(), [tx])[0].tolist()
    before = off_loop_slices(pid)
    for _ in range(n):
        g = tensord.autograd.grad((x.sin() * x).sum(), [x])[0]
        assert g.tolist() == pytest.approx(want, rel=1e-6)
    woke = off_loop_slices(pid) - before
    assert woke < n // 3, "%d timeslices off the loop for %d grads" % (woke, n)


def backward_off_loop(m, pid, build):
    """Builds a graph with build(m) -> (leaf, scalar root), waits until the daemon has run the
    forward (root.item()), then runs root.backward() and reads leaf.grad: (leaf.grad as a list,
    the timeslices off the loop during the backward; None for torch)."""
    x, root = build(m)
    root.item()  # the forward is done, wherever it ran
    before = off_loop_slices(pid) if pid else 0
    root.backward()
    g = x.grad.tolist()
    return g, (off_loop_slices(pid) - before if pid else None)


def test_a_large_backward_runs_on_a_worker_and_is_right(own):
    s, pid = own
    v = np.linspace(-1, 1, 1 << 20, dtype=np.float32)

    def build(m):
        x = m.tensor(v, requires_grad=True)
        return x, (x * x).sum()
    got, woke = backward_off_loop(s, pid, build)
    assert woke > 0  # 2^20-element gradients: not on the loop
    assert got == backward_off_loop(torch, 0, build)[0]


def test_a_graph_reaching_a_leaf_by_2_pow_80_paths_goes_to_a_worker_and_is_right(own):
    """y = y + y eighty times: 2^80 paths to x. The estimate counts a shared part once per path
    and saturates, so the backward is not taken for a cheap one; the walk itself visits each node
    once, and the gradient is 2^80, exact in float32."""
    s, pid = own

    def build(m):
        x = m.tensor([1.0], requires_grad=True)
        y = x
        for _ in range(80):
            y = y + y
        return x, y.sum()
    got, woke = backward_off_loop(s, pid, build)
    assert woke > 0
    assert got == backward_off_loop(torch, 0, build)[0] == [2.0 ** 80]


def test_a_long_chain_goes_to_a_worker_and_is_right(own):
    """3000 tiny ops in a chain: each node adds TD_AUTOGRAD_NODE_WORK, so the walk (3000 rules)
    is not taken for a tiny op's cost."""
    s, pid = own

    def build(m):
        x = m.tensor([0.5, -0.25], requires_grad=True)
        y = x
        for i in range(3000):
            y = y * 1.0001 if i % 2 else y - 0.001
        return x, y.sum()
    got, woke = backward_off_loop(s, pid, build)
    assert woke > 0
    assert got == pytest.approx(backward_off_loop(torch, 0, build)[0], rel=1e-5)


def test_a_backward_through_an_expanded_view_goes_by_its_logical_size(own):
    """A one-element leaf expanded to 2^22 elements, one element of it taken: views only, free
    to make, but backward makes the view's gradient at its logical size (zeros, one element set)
    and sums it back over 2^22 elements, so the estimate counts the gradients' sizes, not the
    ops' cost alone, nor the four bytes behind the view."""
    s, pid = own

    def build(m):
        x = m.tensor([3.0], requires_grad=True)
        return x, x.expand(1 << 22)[5]
    got, woke = backward_off_loop(s, pid, build)
    assert woke > 0
    assert got == backward_off_loop(torch, 0, build)[0] == [1.0]
