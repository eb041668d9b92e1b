"""A long autograd chain is freed without recursion (found in the session's last re-read).

Each node holds its inputs, and each input its grad_fn, so freeing the last tensor of an
n-op chain used to recurse n nodes deep on the daemon's loop thread: a chain of a million tiny
ops, built by one session in seconds, overflowed the stack and killed the daemon for every
session. The nodes are charged to the session's quota, but the depth was not bounded by it.
Now td_node_unref frees through a list. The chain here is built and dropped by one session; the
daemon must survive it, and give back the nodes' bytes."""
import gc

import pytest

import tensord
from conftest import Daemon

N = 1_000_000  # 100k survived the recursive free; 1M overflowed its 8 MiB stack


@pytest.mark.timeout(240)
def test_a_million_op_chain_is_freed_and_the_daemon_lives():
    d = Daemon()
    assert d.port is not None
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        x = s.tensor([1.0], requires_grad=True)
        y = x
        for _ in range(N):
            y = y * 1.0
        assert y.item() == 1.0  # the chain is on the server: the whole pipeline ran
        used = s.stats().session_bytes  # the chain's tensors and nodes, charged
        del y
        gc.collect()
        # the Free of the chain's end reaches the daemon with the next request
        assert s.tensor([2.0]).item() == 2.0
        assert d.proc.poll() is None, "the daemon died freeing the chain:\n" + d.text()[-2000:]
        other = tensord.connect("127.0.0.1:%d" % d.port)
        assert (other.tensor([3.0]) * 2).item() == 6.0
        assert s.stats().session_bytes < used // 100  # the nodes' bytes are given back
    finally:
        assert d.stop() == 0, "tensord did not exit cleanly"
