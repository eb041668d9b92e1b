"""The daemon keeps one OpArgs struct per thread for inline RunOps and, for a RunOp without
OpArgs after another one without, resets only its per-call fields instead of filling it again
(server/rpc/rpc.c, pre_wire_args). An op with arguments must never leave its arguments behind
for the next op without: random sequences of ops with arguments (dims, keepdim, clamp's bounds,
add's alpha, div's rounding mode, max's dim) and ops without, pipelined on one session and
interleaved with themselves, must give what PyTorch gives for the same calls, op by op.
"""
import random

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(120)


def calls(r):
    """(name, function of a module (torch or tensord) and two tensors) for random calls."""
    dim = r.choice([0, 1])
    keep = r.choice([False, True])
    lo, hi = sorted(r.uniform(-2, 2) for _ in range(2))
    alpha = r.choice([2, -0.5, 3.0])
    mode = r.choice(["trunc", "floor"])
    return [
        ("mul", lambda m, a, b: a * b),
        ("add", lambda m, a, b: a + b),
        ("sum_dim", lambda m, a, b: a.sum(dim=dim, keepdim=keep)),
        ("sum", lambda m, a, b: a.sum()),
        ("clamp", lambda m, a, b: a.clamp(min=lo, max=hi)),
        ("clamp_min", lambda m, a, b: a.clamp(min=lo)),
        ("add_alpha", lambda m, a, b: m.add(a, b, alpha=alpha)),
        ("div_mode", lambda m, a, b: m.div(a, b, rounding_mode=mode)),
        ("div", lambda m, a, b: a / b),
        ("max_dim", lambda m, a, b: a.max(dim=dim, keepdim=keep).values),
        ("max", lambda m, a, b: a.max()),
        ("mean_dim", lambda m, a, b: a.mean(dim=dim)),
        ("neg", lambda m, a, b: -a),
    ]


def test_ops_without_args_after_ops_with_args_match_torch(daemon):
    import tensord
    r = random.Random(19)
    s = tensord.connect("127.0.0.1:%d" % daemon)
    try:
        base_a = np.array([[1.5, -2.25, 3.0], [-0.5, 4.0, -7.5]], np.float32)
        base_b = np.array([[2.0, 0.5, -1.5], [4.0, -3.0, 2.5]], np.float32)
        ta, tb = torch.from_numpy(base_a), torch.from_numpy(base_b)
        sa, sb = s.tensor(base_a), s.tensor(base_b)
        ran = set()
        for _ in range(40):
            seq = [r.choice(calls(r)) for _ in range(12)]
            # Pipelined: results are read only after the whole sequence was sent.
            got = [(name, f(tensord, sa, sb)) for name, f in seq]
            for (name, f), (_, t) in zip(seq, got):
                want = f(torch, ta, tb)
                np.testing.assert_array_equal(np.asarray(t.tolist(), np.float32),
                                              want.numpy(), err_msg=name)
                ran.add(name)
        # Both kinds of request ran: with OpArgs and without, in both orders.
        assert {"mul", "add", "sum", "sum_dim", "clamp", "div_mode", "add_alpha"} <= ran
    finally:
        s.close()
