"""Where a Python number may stand for a tensor operand, against torch.

torch takes a number for a Tensor parameter only where it has a Scalar overload (add's other,
clamp_min's min, fill's value, lerp's weight) or where its argument parser lets numbers stand for
tensors (where, copy_); elsewhere it raises TypeError ("matmul(): argument 'other' (position 2)
must be Tensor, not float"). ops.def marks those operands `:number`. For every op with a fixed
number of operands and every operand, each call is made with a number there and tensors of
each dtype kind elsewhere; the client must raise TypeError exactly where torch does. The daemon
refuses the same numbers on the wire (a client that skips the check, such as tensorctl or a raw
request), with torch's wording, and still takes the ones torch takes."""
import warnings

import numpy as np
import pytest
import torch

import tensord
import wire
from tensord import _ops

# Ops whose torch function is Python code that fails on a number before any type check
# (torch.nn.functional's losses call input.size(), torch.norm reads input.layout): tensord
# raises torch's usual TypeError there instead of their AttributeError.
PYTHON_LEVEL = {"mse_loss", "huber_loss", "smooth_l1_loss", "norm"}


def operand_cases():
    for name, facts in sorted(_ops.OPS.items()):
        nin = facts["nin"]
        if nin < 1 or "OVERLOADED" in facts["flags"] or "INTERNAL" in facts["flags"]:
            continue
        operands = [p for p in facts["params"] if p[4]]
        for i, p in enumerate(operands):
            yield pytest.param(name, i, id="%s-%s" % (name, p[0]))


def torch_fn(name):
    return getattr(torch, name, None) or getattr(torch.nn.functional, name, None)


def call(m, name, pos, nin, kind, number, params):
    fn = getattr(m, name, None) or getattr(m.nn.functional, name, None)
    data = {"f": [[1.5, -2.0], [3.0, 4.0]], "i": [[1, 2], [3, 0]],
            "b": [[True, False], [True, True]]}
    args = []
    for k in range(nin):
        mask = params[k][0] in ("mask", "condition")
        args.append(m.tensor(data["b" if mask else kind]))
    args[pos] = number
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fn(*args)
        if hasattr(r, "tolist"):
            r.tolist()
        return "ok"
    except TypeError:
        return "TypeError"
    except Exception as e:  # the op's own refusal of these values (a dtype, a shape)
        return type(e).__name__


@pytest.mark.parametrize("name,pos", list(operand_cases()))
def test_number_operand_against_torch(td, name, pos):
    facts = _ops.OPS[name]
    if torch_fn(name) is None or name in PYTHON_LEVEL:
        pytest.skip("torch has no torch.%s / F.%s taking positional operands" % (name, name))
    params = [p for p in facts["params"] if p[4]]
    for kind in "fib":
        for number in (1.5, 2, True):
            want = call(torch, name, pos, facts["nin"], kind, number, params)
            got = call(td, name, pos, facts["nin"], kind, number, params)
            # TypeError exactly where torch raises it; elsewhere the op's own outcome, which
            # may be a value refusal on either side (bitwise ops on floats)
            assert (got == "TypeError") == (want == "TypeError"), (kind, number, got, want)


def test_marked_operands_are_torchs():
    """The `:number` marks are the operands torch takes numbers for, no more, no fewer."""
    marked = {(n, p[0]) for n, f in _ops.OPS.items() for p in f["params"]
              if p[4] and p[1] == "number"}
    assert ("add", "other") in marked and ("where", "input") in marked
    assert ("matmul", "other") not in marked and ("eq", "input") not in marked
    for n, f in _ops.OPS.items():
        if f["nin"] < 0:
            assert not any(p[1] == "number" for p in f["params"]), n


def test_message_wording_matches_torch(td):
    x = [[1.5, -2.0], [3.0, 4.0]]
    for expr in ("m.matmul(m.tensor(x), 1.5)", "m.maximum(m.tensor(x), 2)",
                 "m.take(m.tensor(x), True)", "m.mm(m.tensor(x), 1.5)"):
        msgs = []
        for m in (torch, td):
            with pytest.raises(TypeError) as e:
                eval(expr, {"m": m, "x": x})
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1], expr


@pytest.fixture
def raw(daemon):
    c = wire.Conn(daemon)
    yield c
    c.close()


@pytest.mark.parametrize("name,inputs,number,msg", [
    ("matmul", "t,n", 1.5, "matmul(): argument 'other' (position 2) must be Tensor, not float"),
    ("maximum", "t,n", 2, "maximum(): argument 'other' (position 2) must be Tensor, not int"),
    ("eq", "n,t", 1.5, "eq(): argument 'input' (position 1) must be Tensor, not float"),
    ("masked_fill", "t,n,t", True,
     "masked_fill(): argument 'mask' (position 2) must be Tensor, not bool"),
    ("gather", "t,n", 1, "gather(): argument 'index' (position 3) must be Tensor, not int"),
    ("scatter_add", "t,t,n", 1.5,
     "scatter_add(): argument 'src' (position 4) must be Tensor, not float"),
])
def test_daemon_refuses_numbers_on_the_wire(raw, name, inputs, number, msg):
    t = wire.H(raw.tensor(np.array([[1, 0], [0, 1]], dtype=np.int64)))
    args = [t if k == "t" else number for k in inputs.split(",")]
    kw = {"dim": 0} if name in ("gather", "scatter_add") else {}
    with pytest.raises(wire.ServerError) as e:
        raw.op(name, args, **kw)
    assert msg in e.value.message
    # the session goes on: a number where torch takes one still works
    h = raw.op("add", [t, 2])
    assert raw.get(h)[0].tolist() == [[3, 2], [2, 3]]
    h = raw.op("where", [wire.H(raw.op("gt", [t, 0])), 1.5, 2])
    assert raw.get(h)[0].tolist() == [[1.5, 2.0], [2.0, 1.5]]
