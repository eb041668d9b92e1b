"""Conformance: tensord against PyTorch itself, op by op.

For generated inputs (shapes with broadcasting, 0-dim and 0-size tensors, every dtype, Python
scalars on either side, in-place forms) each op runs in torch and on the server. Where torch
raises, the server must refuse with torch's message; where torch answers, the server must give
the same dtype and shape, values within a per-dtype tolerance, and print exactly what torch prints
for those values (with "torch." spelled "tensord.").
"""
import math
import operator
import random

import numpy as np
import pytest
import torch

import wire
from wire import H

BINARY = ["add", "sub", "mul", "div", "floor_divide", "remainder", "pow", "maximum", "minimum",
          "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"]
UNARY = ["neg", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos",
         "tan", "tanh", "sigmoid", "gelu", "relu", "floor", "ceil", "round", "logical_not"]
NO_INPLACE = {"maximum", "minimum", "gelu"}
# Python operators, for a number on the left (3 - t): torch's functions want a tensor first.
OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
             "div": operator.truediv, "floor_divide": operator.floordiv,
             "remainder": operator.mod, "pow": operator.pow, "eq": operator.eq,
             "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
             "ge": operator.ge}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int32": torch.int32,
                "int64": torch.int64, "bool": torch.bool}
SHAPES = [(), (1,), (3,), (2, 3), (4, 1, 3), (2, 3, 1, 2), (0,), (0, 3), (2, 0, 1), (5, 4)]
TOL = {"float32": (1.5e-5, 1e-6), "float64": (1e-12, 1e-14)}


def torch_fn(name):
    if name == "gelu":
        return torch.nn.functional.gelu
    return getattr(torch, name)


def make_values(rng, dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    if dtype == "bool":
        v = np.array([rng.random() < 0.5 for _ in range(n)], dtype=np.bool_)
    elif dtype in ("int32", "int64"):
        v = np.array([rng.randint(-6, 6) for _ in range(n)], dtype=dtype)
    else:
        pool = [0.0, -0.0, 0.5, -1.5, 2.0, 1e-3, 3.75]
        v = np.array([rng.choice(pool) if rng.random() < 0.2 else rng.gauss(0, 3)
                      for _ in range(n)], dtype=dtype)
    return v.reshape(shape)


def broadcastable(rng, shape):
    """A shape that broadcasts with `shape` (sometimes on purpose one that does not)."""
    if rng.random() < 0.07 and shape and shape[-1] > 1:
        return tuple(shape[:-1]) + (shape[-1] + 1,)
    out = list(shape[rng.randint(0, len(shape)):]) if shape else []
    out = [1 if rng.random() < 0.3 else d for d in out]
    if rng.random() < 0.15:
        out = [2] + out if len(out) < 4 and (not shape or len(shape) < 4) else out
    return tuple(out)


def torch_dtype_name(t):
    return {v: k for k, v in TORCH_DTYPES.items()}[t.dtype]


class Checker:
    def __init__(self, conn):
        self.conn = conn
        self.cases = 0
        self.per_op = {}
        self.failures = []

    def fail(self, desc, why):
        self.failures.append("%s: %s" % (desc, why))

    def run(self, op, desc, torch_call, server_call, keep=()):
        """Compares one case. server_call returns a handle; `keep` handles are freed after."""
        self.cases += 1
        self.per_op[op] = self.per_op.get(op, 0) + 1
        try:
            expected = torch_call()
            terr = None
        except (RuntimeError, TypeError, ValueError, ZeroDivisionError) as e:
            expected, terr = None, str(e).split("\n")[0]
        try:
            h = server_call()
            serr = None
        except wire.ServerError as e:
            h, serr = None, e.message
        try:
            if terr is not None:
                if serr is None:
                    self.fail(desc, "torch raised %r, tensord did not" % terr)
                elif serr != terr:
                    self.fail(desc, "error %r, torch says %r" % (serr, terr))
                return
            if serr is not None:
                self.fail(desc, "tensord raised %r, torch gave %s" % (serr, expected.dtype))
                return
            got, dtype = self.conn.get(h)
            want = expected.detach().numpy()
            if dtype != torch_dtype_name(expected):
                self.fail(desc, "dtype %s, torch %s" % (dtype, expected.dtype))
                return
            if got.shape != want.shape:
                self.fail(desc, "shape %s, torch %s" % (got.shape, want.shape))
                return
            if dtype in TOL:
                rtol, atol = TOL[dtype]
                same_nan = np.array_equal(np.isnan(got), np.isnan(want))
                same_inf = np.array_equal(np.isposinf(got), np.isposinf(want)) and \
                    np.array_equal(np.isneginf(got), np.isneginf(want))
                if not (same_nan and same_inf and
                        np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)):
                    self.fail(desc, "values %s, torch %s" % (got.tolist(), want.tolist()))
                    return
            elif not np.array_equal(got, want):
                self.fail(desc, "values %s, torch %s" % (got.tolist(), want.tolist()))
                return
            text = self.conn.format(h)
            torch_text = repr(torch.from_numpy(got.copy())).replace("torch.", "tensord.")
            if text != torch_text:
                self.fail(desc, "printed\n%s\ntorch prints\n%s" % (text, torch_text))
        finally:
            if h is not None and h not in keep:
                self.conn.free(h)


@pytest.fixture
def checker(conn):
    return Checker(conn)


def test_conformance_with_torch(checker):
    rng = random.Random(20261128)
    c = checker.conn
    dtypes = list(TORCH_DTYPES)
    for op in BINARY:
        for _ in range(70):
            sa = rng.choice(SHAPES)
            sb = broadcastable(rng, sa)
            da, db = rng.choice(dtypes), rng.choice(dtypes)
            a, b = make_values(rng, da, sa), make_values(rng, db, sb)
            ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
            ha, hb = c.tensor(a), c.tensor(b)
            kind = rng.random()
            desc = "%s(%s %s, %s %s)" % (op, da, sa, db, sb)
            if kind < 0.55:
                checker.run(op, desc, lambda: torch_fn(op)(ta, tb),
                            lambda: c.op(op, [H(ha), H(hb)]))
            elif kind < 0.75 and op not in NO_INPLACE:
                checker.run(op, desc + " in place",
                            lambda: getattr(ta.clone(), op + "_")(tb),
                            lambda: (c.op(op, [H(ha), H(hb)], inplace=True), ha)[1], keep=(ha,))
            else:
                s = rng.choice([2, -1, 0, True, False, 1.5, -0.25, 3.0])
                if op in OPERATORS and rng.random() < 0.5:
                    desc = "%s(%r, %s %s)" % (op, s, da, sa)
                    checker.run(op, desc, lambda: OPERATORS[op](s, ta),
                                lambda: c.op(op, [s, H(ha)]))
                elif op in OPERATORS:
                    desc = "%s(%s %s, %r)" % (op, da, sa, s)
                    checker.run(op, desc, lambda: torch_fn(op)(ta, s),
                                lambda: c.op(op, [H(ha), s]))
            c.free(ha, hb)
    for op in UNARY:
        for _ in range(45):
            sa, da = rng.choice(SHAPES), rng.choice(dtypes)
            a = make_values(rng, da, sa)
            ta = torch.from_numpy(a.copy())
            ha = c.tensor(a)
            desc = "%s(%s %s)" % (op, da, sa)
            if rng.random() < 0.7 or op in NO_INPLACE:
                checker.run(op, desc, lambda: torch_fn(op)(ta), lambda: c.op(op, [H(ha)]))
            else:
                checker.run(op, desc + " in place", lambda: getattr(ta.clone(), op + "_")(),
                            lambda: (c.op(op, [H(ha)], inplace=True), ha)[1], keep=(ha,))
            c.free(ha)
    for _ in range(60):
        sa = rng.choice(SHAPES)
        dx, dy = rng.choice(dtypes), rng.choice(dtypes)
        cond = make_values(rng, "bool", broadcastable(rng, sa))
        x, y = make_values(rng, dx, sa), make_values(rng, dy, broadcastable(rng, sa))
        hc, hx, hy = c.tensor(cond), c.tensor(x), c.tensor(y)
        tc, tx, ty = (torch.from_numpy(v.copy()) for v in (cond, x, y))
        checker.run("where", "where(%s, %s %s, %s %s)" % (cond.shape, dx, sa, dy, y.shape),
                    lambda: torch.where(tc, tx, ty), lambda: c.op("where", [H(hc), H(hx), H(hy)]))
        c.free(hc, hx, hy)
    for _ in range(60):
        sa, da = rng.choice(SHAPES), rng.choice(dtypes[:4])
        a = make_values(rng, da, sa)
        ta = torch.from_numpy(a.copy())
        ha = c.tensor(a)
        kw = {}
        if rng.random() < 0.7:
            kw["min"] = rng.choice([-1, 0.5, -2.5, 1])
        if rng.random() < 0.7:
            kw["max"] = rng.choice([2, 1.25, 0, 3.5])
        checker.run("clamp", "clamp(%s %s, %s)" % (da, sa, kw), lambda: torch.clamp(ta, **kw),
                    lambda: c.op("clamp", [H(ha)], **kw))
        c.free(ha)
    for _ in range(60):
        sa, da, dt = rng.choice(SHAPES), rng.choice(dtypes), rng.choice(dtypes)
        a = make_values(rng, da, sa)
        ta = torch.from_numpy(a.copy())
        ha = c.tensor(a)
        checker.run("to", "to(%s %s -> %s)" % (da, sa, dt),
                    lambda: ta.to(TORCH_DTYPES[dt]), lambda: c.op("to", [H(ha)], dtype=dt),
                    keep=(ha,))
        c.free(ha)
    report = "\n".join(checker.failures[:40])
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, report)
    assert checker.cases >= 2000
    assert set(checker.per_op) >= set(BINARY + UNARY + ["where", "clamp", "to"])
    # nothing leaked into the session
    assert c.stats().session_tensors == 0
