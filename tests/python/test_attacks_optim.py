"""Hostile OptimStep requests (torch.optim's fused step, zero_grad and the clip modes) through the
wire protocol: each gets a clear error, changes nothing (a refused step leaves every parameter
as it was and makes no state), and the daemon keeps serving — its own session and another's.
Cases: unknown handles, parameters that are not float or are expanded views, .grads and states
of the wrong shape or dtype, a state naming the parameter or another state, duplicate
parameters and new handles, a missing state handle, NaN and out-of-range options where torch's
constructors raise, unknown algorithms and modes, lists past the limit, steps over
--max-op-elements, and a big step that must run off the loop while a tiny request is served."""
import time

import numpy as np
import pytest

import wire
from attack_harness import DaemonSession, starter
from wire import H, ServerError

pb = wire.pb
pytestmark = pytest.mark.timeout(120)

INVALID = pb.INVALID_ARGUMENT
A = [1.0, 2.0, 3.0]


class Victim(DaemonSession):
    """A daemon and one session holding parameter 'p' (float32 [1, 2, 3]) whose .grad is
    [2, 4, 6] (backward of sum(p * p))."""

    def __init__(self, *flags):
        super().__init__(*flags)
        self.p = self.param(A)

    def param(self, values, dtype=np.float32):
        h = self.c.tensor(np.asarray(values, dtype), requires_grad=True)
        sq = self.c.op("mul", [H(h), H(h)])
        self.c.backward(self.c.op("sum", [H(sq)]))
        return h

    def values(self, h):
        arr, _ = self.c.get(h)
        return arr.tolist()

    def step(self, params, algorithm=pb.OptimStep.SGD, mode=pb.OptimStep.STEP, **group):
        """params: [(param handle, {state key: handle})]; returns the response."""
        req = pb.Request()
        m = req.optim_step
        m.algorithm = algorithm
        m.mode = mode
        g = m.groups.add()
        for k, v in group.items():
            if k in ("set_to_none", "max_norm", "norm_type", "out", "clip_value",
                     "error_if_nonfinite"):
                setattr(m, k, v)
            else:
                setattr(g, k, v)
        for p, states in params:
            pm = g.params.add()
            pm.param = p
            for k, v in states.items():
                setattr(pm, k, v)
        return self.c.call(req)

    def refused(self, code, needle, *a, **kw):
        with pytest.raises(ServerError) as e:
            self.step(*a, **kw)
        assert e.value.code == code, (pb.StatusCode.Name(e.value.code), e.value.message)
        assert needle in e.value.message, e.value.message

    def unknown(self, h):
        with pytest.raises(ServerError) as e:
            self.c.info(h)
        assert e.value.code == pb.UNKNOWN_HANDLE

    def serves(self):
        assert self.d.proc.poll() is None, "tensord died"
        assert self.values(self.c.op("add", [H(self.p), H(self.p)])) is not None
        super().serves()


victim = starter(Victim)


def test_bad_handles_and_tensors(victim):
    v = victim()
    c = v.c
    v.refused(pb.UNKNOWN_HANDLE, "unknown handle", [(999999, {})], lr=0.1)
    ints = c.tensor(np.array([1, 2, 3], np.int64))
    v.refused(pb.DTYPE_ERROR, "only float32 and float64", [(ints, {})], lr=0.1)
    one = v.param([1.0])
    wide = c.op("expand", [H(one)], dims=[5])
    v.refused(INVALID, "expanded view", [(wide, {})], lr=0.1)
    # states of the wrong shape, dtype or kind
    s2 = c.tensor(np.zeros(2, np.float32))
    s64 = c.tensor(np.zeros(3, np.float64))
    v.refused(pb.SHAPE_MISMATCH, "has shape [2], but its parameter has shape [3]",
              [(v.p, {"momentum_buffer": s2})], lr=0.1, momentum=0.9)
    v.refused(pb.DTYPE_ERROR, "is float64, but its parameter is float32",
              [(v.p, {"momentum_buffer": s64})], lr=0.1, momentum=0.9)
    v.refused(INVALID, "one float32 or float64 element",
              [(v.p, {"step": s2, "exp_avg": 7001, "exp_avg_sq": 7002})],
              algorithm=pb.OptimStep.ADAM, lr=0.1, beta1=0.9, beta2=0.999)
    v.refused(INVALID, "needs a handle for its state 'momentum_buffer'", [(v.p, {})], lr=0.1,
              momentum=0.9)
    # aliasing: a state that is the parameter, a parameter twice, a new handle twice
    v.refused(INVALID, "appears twice", [(v.p, {"momentum_buffer": v.p})], lr=0.1, momentum=0.9)
    v.refused(INVALID, "appears twice", [(v.p, {}), (v.p, {})], lr=0.1)
    view = c.op("detach", [H(v.p)])
    v.refused(INVALID, "share memory", [(v.p, {"momentum_buffer": view})], lr=0.1, momentum=0.9)
    v.refused(INVALID, "named for two states",
              [(v.p, {"step": 7001, "exp_avg": 7002, "exp_avg_sq": 7002})],
              algorithm=pb.OptimStep.ADAM, lr=0.1, beta1=0.9, beta2=0.999)
    for h in (7001, 7002):
        v.unknown(h)  # a refused step makes no state
    assert v.values(v.p) == A  # ... and moves no parameter
    v.serves()


def test_bad_options_are_torchs_errors(victim):
    v = victim()
    adam = dict(algorithm=pb.OptimStep.ADAM, beta1=0.9, beta2=0.999)
    st = {"step": 7001, "exp_avg": 7002, "exp_avg_sq": 7003}
    v.refused(INVALID, "Invalid learning rate: nan", [(v.p, st)], lr=float("nan"), **adam)
    v.refused(INVALID, "Invalid learning rate: -1.0", [(v.p, {})], lr=-1.0)
    v.refused(INVALID, "Invalid beta parameter at index 0: 1.0", [(v.p, st)], lr=0.1,
              algorithm=pb.OptimStep.ADAMW, beta1=1.0, beta2=0.9)
    v.refused(INVALID, "Invalid epsilon value: -inf", [(v.p, {})], lr=0.1, eps=float("-inf"),
              algorithm=pb.OptimStep.ADAGRAD)
    v.refused(INVALID, "Nesterov momentum requires a momentum and zero dampening",
              [(v.p, {})], lr=0.1, nesterov=True)
    v.refused(INVALID, "unknown optimizer algorithm 99", [(v.p, {})], algorithm=99, lr=0.1)
    v.refused(INVALID, "unknown optimizer request mode 77", [(v.p, {})], mode=77)
    assert v.values(v.p) == A
    v.serves()


def test_atomic_refusal(victim):
    """The second parameter is bad: the first is not stepped, and no state is made for it."""
    v = victim()
    q = v.param([5.0])
    s2 = v.c.tensor(np.zeros(2, np.float32))
    v.refused(pb.SHAPE_MISMATCH, "has shape [2]",
              [(v.p, {"momentum_buffer": 8001}), (q, {"momentum_buffer": s2})],
              lr=0.5, momentum=0.9)
    assert v.values(v.p) == A
    v.unknown(8001)
    # the same step done right: p - 0.5 * [2, 4, 6] = [0, 0, 0], momentum_buffer = the grad
    resp = v.step([(v.p, {"momentum_buffer": 8001}), (q, {"momentum_buffer": 8002})],
                  lr=0.5, momentum=0.9)
    assert resp.text == "11"
    assert v.values(v.p) == [0.0, 0.0, 0.0]
    assert v.values(8001) == [2.0, 4.0, 6.0]
    v.serves()


def test_huge_lists_and_work_limits(victim):
    v = victim()
    req = pb.Request()
    g = req.optim_step.groups.add()
    g.lr = 0.1
    for _ in range(70000):
        g.params.add().param = v.p
    with pytest.raises(ServerError) as e:
        v.c.call(req)
    assert e.value.code == pb.LIMIT_EXCEEDED
    assert "at most 65536 parameters" in e.value.message
    v.serves()
    v = victim("--max-op-elements", str(2 ** 16))
    z = v.c.tensor(np.zeros(20000, np.float32), requires_grad=True)
    v.c.backward(v.c.op("sum", [H(v.c.op("mul", [H(z), H(z)]))]))
    with pytest.raises(ServerError) as e:
        v.step([(z, {"step": 9001, "exp_avg": 9002, "exp_avg_sq": 9003})],
               algorithm=pb.OptimStep.ADAM, lr=0.1, beta1=0.9, beta2=0.999)
    assert e.value.code == pb.LIMIT_EXCEEDED
    assert "optimizer step would touch" in e.value.message
    v.unknown(9001)
    v.serves()


def test_big_step_runs_off_the_loop(victim):
    """A step over 2^24 elements goes to the pool: another session's tiny op is answered while
    it runs."""
    v = victim()
    n = 2 ** 24
    big = v.c.tensor(np.ones(n, np.float32), requires_grad=True)
    v.c.backward(v.c.op("sum", [H(big)]))
    req = pb.Request()
    req.optim_step.algorithm = pb.OptimStep.ADAM
    g = req.optim_step.groups.add()
    g.lr, g.beta1, g.beta2, g.eps = 0.1, 0.9, 0.999, 1e-8
    pm = g.params.add()
    pm.param, pm.step, pm.exp_avg, pm.exp_avg_sq = big, 9101, 9102, 9103
    p = v.c.send(req)
    t0 = time.monotonic()
    v.serves()
    assert time.monotonic() - t0 < 5
    v.c.wait(p)
    assert p.error is None
    assert p.resp.text == "1"
    v.serves()


def test_zero_grad_and_clip_refusals(victim):
    v = victim()
    v.refused(pb.UNKNOWN_HANDLE, "unknown handle", [(v.p, {}), (424242, {})],
              mode=pb.OptimStep.ZERO_GRAD, set_to_none=True)
    assert v.c.grad(v.p) is not None  # nothing was cleared
    v.refused(pb.HANDLE_IN_USE, "already in use", [(v.p, {})],
              mode=pb.OptimStep.CLIP_GRAD_NORM, max_norm=1.0, norm_type=2.0, out=v.p)
    v.refused(INVALID, "output handle 0 is reserved", [(v.p, {})],
              mode=pb.OptimStep.CLIP_GRAD_NORM, max_norm=1.0, norm_type=2.0, out=0)
    g = v.c.grad(v.p)
    assert v.values(g) == [2.0, 4.0, 6.0]  # not scaled
    resp = v.step([(v.p, {})], mode=pb.OptimStep.CLIP_GRAD_NORM, max_norm=float("nan"),
                  norm_type=float("nan"), out=9501)
    assert resp.tensor.handle == 9501  # NaN options: torch computes NaNs too, no crash
    v.step([(v.p, {})], mode=pb.OptimStep.ZERO_GRAD, set_to_none=False)
    v.serves()
