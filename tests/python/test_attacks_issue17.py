"""The attacks of issue 17 on its new surface (a resumable backward: Backward.custom,
ResumeBackward, custom_function; the nn loss and normalisation families), one named test per
finding, written as tests/python/test_attacks.py's are: an attacker holding one valid session
attacks a daemon of its own, then Guard.check verifies (b)-(e) (alive, served, canary intact,
memory back to its level before the attack); (a) and (c) are checked in the test where they
apply. Every read has a timeout; no assertion rests on a timing margin under 2x.
"""
import contextlib

import numpy as np
import pytest

import wire
from test_attacks import Attacker, guard, op_req  # noqa: F401 (guard: a fixture)

pb = wire.pb
H = wire.H

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def session(g):
    """A session on the guarded daemon g; when the block ends without an exception, the session
    is closed (CloseSession), then Guard.check verifies the daemon and g stops it."""
    c = wire.Conn(g.port)
    try:
        yield c
        req = pb.Request()
        req.close_session.SetInParent()
        c.call(req)
    finally:
        c.close()
    g.check()
    g.stop()


def custom_backward(c, root, grad_output, **kw):
    """Backward of root with custom Functions run by this client: the reply's BackwardResult."""
    req = pb.Request()
    req.backward.handle = root
    req.backward.custom = True
    req.backward.grad_output = grad_output
    for k, v in kw.items():
        if isinstance(v, list):
            getattr(req.backward, k).extend(v)
        else:
            setattr(req.backward, k, v)
    return c.call(req).backward


def resume(c, grads, grad_output):
    req = pb.Request()
    req.resume_backward.grads.extend(grads)
    req.resume_backward.grad_output = grad_output
    return c.call(req).backward


# ================================================================= finding 1: a suspended walk
# held its graph's nodes by no reference: a client that freed the root (and the intermediates)
# while the walk waited for a Function's gradients left the walk pointing at freed nodes, which
# ResumeBackward then visited (their rule) and wrote (releasing the graph): use after free.

def test_finding1_resume_after_the_graph_was_freed(guard):
    g = guard()
    with session(g) as c:
        x = c.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
        y = c.tensor(np.array([3.0, 4.0], dtype=np.float32), requires_grad=True)
        m = c.op("mul", [H(y), 3.0])                      # MulBackward0: visited after the Function
        f = c.op("mul", [H(x), 2.0])                      # the Function's forward output
        z = c.op("custom_function", [H(f), H(x)], function_name="TwiceBackward", function_id=3)
        s = c.op("add", [H(m), H(z)])
        loss = c.op("sum", [H(s)])
        br = custom_backward(c, loss, 900)
        assert br.suspended and br.grad_fn == "TwiceBackward"
        # everything but the leaves goes: only the walk still knows the graph
        c.free(loss, s, z, m, f)
        # the freed nodes' memory is reused
        junk = [c.tensor(np.full(40, float(i), dtype=np.float32)) for i in range(64)]
        # d(sum(3y + F(x)))/dx given as the Function's gradient (ones), dy = 3
        assert not resume(c, [900], 901).suspended
        assert c.get(c.grad(x))[0].tolist() == [1.0, 1.0]
        assert c.get(c.grad(y))[0].tolist() == [3.0, 3.0]
        # and a walk abandoned after its graph went, then the session closed
        m2 = c.op("mul", [H(y), 3.0])
        z2 = c.op("custom_function", [H(x), H(x)], function_name="IdBackward", function_id=4)
        loss2 = c.op("sum", [H(c.op("add", [H(m2), H(z2)]))])
        assert custom_backward(c, loss2, 902).suspended
        c.free(loss2, m2, z2)
        c.free(*junk)


# ================================================================= finding 2: autograd.grad's
# outs were checked free when the walk began but filled without a check when it ended, after
# suspensions: an out that had become taken meanwhile (the walk's own grad_output, or a tensor
# the client's Function made) was overwritten in the handle table, and the entry it held leaked
# with its tensor and its charge, past the session's end (allocated_bytes never came back).

N = 1 << 20  # 4 MiB of float32 per leaked tensor: far above ALLOC_SLACK


def grad_walk(c, x, out, grad_output):
    """autograd.grad of sum(F(x) * F(x)) wrt x with results in `out`: suspended at F."""
    z = c.op("custom_function", [H(x), H(x)], function_name="IdBackward", function_id=5)
    loss = c.op("sum", [H(c.op("mul", [H(z), H(z)]))])
    br = custom_backward(c, loss, grad_output, inputs=[x], outs=[out], results_only=True)
    assert br.suspended
    return loss


@pytest.mark.parametrize("taken_by", ["grad_output", "client"])
def test_finding2_grad_outs_taken_while_suspended(guard, taken_by):
    g = guard()
    with session(g) as c:
        x = c.tensor(np.ones(N, dtype=np.float32), requires_grad=True)
        for k in range(3):
            out, go = 5000 + 10 * k, 5001 + 10 * k
            if taken_by == "grad_output":
                grad_walk(c, x, out, out)       # the suspension's gradient goes under `out`
                grads = [out]
            else:
                grad_walk(c, x, out, go)
                req = pb.Request()
                req.run_op.out = out            # the client's Function takes `out`
                req.run_op.op = pb.Op.Value("OP_MUL")
                req.run_op.inputs.add().handle = go
                wire.scalar(2.0, req.run_op.inputs.add().scalar)
                c.call(req)
                grads = [go]
            req = pb.Request()
            req.resume_backward.grads.extend(grads)
            req.resume_backward.grad_output = 6000 + k
            with pytest.raises(wire.ServerError, match="already in use") as e:
                c.call(req)
            assert e.value.code == pb.HANDLE_IN_USE
            # the tensor under `out` is the one the client put there, not a gradient
            assert c.get(out)[0][:2].tolist() == ([2.0, 2.0] if taken_by == "grad_output"
                                                  else [4.0, 4.0])


# ================================================================= finding 3: one_hot with its
# class count read from the data (num_classes=-1) was costed as one class per element: one
# element of value 2^26 costed a few units and ran on the event loop, where it built 2^26
# classes (arange, compare, cast: about a gigabyte written) while every other session waited.

def test_finding3_one_hot_inferred_classes_stay_off_the_loop(guard):
    g = guard()
    a = Attacker(g.port)
    a.create(1, np.array([(1 << 26) - 1], dtype=np.int64))
    with g.watching():
        for k in range(3):
            resp, _, _ = a.request(op_req(a.next_id(), 10 + k, "one_hot", [1], num_samples=-1))
            assert resp.status.code == pb.OK, resp.status.message
            assert list(resp.tensor.shape) == [1, 1 << 26]
            free = pb.Request(id=a.next_id())
            free.free.handles.append(10 + k)
            a.ok(free)
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


# ================================================================= finding 4: a graph's nodes
# were charged to no quota. A chain of ops on a 4-byte leaf that requires grad, each freeing the
# handle before last (free_first), keeps one node (1 KiB) per op alive through the last result:
# 20000 ops held 25 MB under a session quota of 2 MiB; a few million, gigabytes.

def test_finding4_graph_nodes_are_charged_to_the_session(guard):
    quota = 2 << 20
    g = guard("--session-max-bytes", str(quota))
    with session(g) as c:
        base = g.stats().allocated_bytes
        x = c.tensor(np.array([1.0], dtype=np.float32), requires_grad=True)
        cur, prev, sent = x, None, []
        for i in range(20000):
            r = pb.Request()
            nxt = c.handle()
            r.run_op.out = nxt
            r.run_op.op = pb.Op.Value("OP_MUL")
            r.run_op.inputs.add().handle = cur
            wire.scalar(1.0, r.run_op.inputs.add().scalar)
            if prev is not None:
                r.free_first.append(prev)
            sent.append(c.send(r))
            prev, cur = (cur if cur != x else None), nxt
        c.sync()
        first = next((p.error for p in sent if p.error is not None), None)
        assert first is not None, "20000 nodes fitted in a 2 MiB quota"
        assert first.code == pb.QUOTA_EXCEEDED and "session memory" in first.message, (
            first.code, first.message)
        grown = g.stats().allocated_bytes - base
        assert grown < 4 * quota, "the graph holds %d MiB" % (grown >> 20)


# ================================================================= finding 5: a backward rule
# that fails with -1 (special.c's composed ops: roll, ...; err filled) made td_backward_step
# return -1, which is TD_BACKWARD_SUSPENDED: a Backward with `custom` then took the failure for
# a suspension with no node pending and put a NULL gradient under grad_output (a NULL
# dereference: the daemon died); without `custom` the reply named a custom Function instead of
# the quota. Here roll's backward runs out of session memory.

@pytest.mark.parametrize("custom", [True, False])
def test_finding5_a_failing_rule_is_not_a_suspension(guard, custom):
    g = guard("--session-max-bytes", str(256 << 20))
    with session(g) as c:
        n = 4 << 20  # 16 MiB of float32
        x = c.tensor(np.ones(n, dtype=np.float32), requires_grad=True)
        y = c.op("roll", [H(x)], shifts=[1])
        loss = c.op("sum", [H(y)])
        c.free(y)  # the graph keeps it: 32 MiB used
        # what is left but 8 MiB: roll's gradient (16 MiB) has no room
        free_bytes = (256 << 20) - c.stats().session_bytes
        filler = c.tensor(np.zeros((free_bytes - (8 << 20)) // 4, dtype=np.float32))
        req = pb.Request()
        req.backward.handle = loss
        if custom:
            req.backward.custom = True
            req.backward.grad_output = 900
        with pytest.raises(wire.ServerError) as e:
            c.call(req)
        assert e.value.code == pb.QUOTA_EXCEEDED, (e.value.code, e.value.message)
        assert "session memory" in e.value.message
        c.free(filler)
        # nothing was left waiting, and the session goes on
        res = pb.Request()
        res.resume_backward.grad_output = 901
        with pytest.raises(wire.ServerError, match="no backward is waiting"):
            c.call(res)
