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
REFLECTED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
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
        except (RuntimeError, TypeError, ValueError, ZeroDivisionError, IndexError) as e:
            # torch's text with tensord's name prefix (the rule of printed text and errors)
            expected, terr = None, str(e).split("\n")[0].replace("torch.", "tensord.")
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
                    # Python reflects a comparison with the number on the left (s < t is
                    # t > s); torch's functions take no number there (ops.def's `:number`)
                    wire_op = REFLECTED.get(op, op)
                    ops = [H(ha), s] if op in REFLECTED else [s, H(ha)]
                    checker.run(op, desc, lambda: OPERATORS[op](s, ta),
                                lambda: c.op(wire_op, ops))
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


INT64_MAX = 2 ** 63 - 1


def shape_cases(rng):
    """(op name, torch function of a tensor, server kwargs) for views and shape ops."""
    shape = rng.choice([(2, 3), (4, 1, 3), (2, 3, 4), (6,), (1,), (), (0, 3), (2, 1, 2, 3)])
    nd = len(shape)
    numel = int(np.prod(shape)) if shape else 1
    d = rng.randint(-nd - 1, nd) if nd else rng.choice([0, -1, 1])
    d2 = rng.randint(-nd, max(nd - 1, 0)) if nd else 0
    perm = list(range(nd))
    rng.shuffle(perm)
    target = rng.choice([[numel], [-1], [1, numel], [numel, 1], [-1, 2], [2, -1, 1], [3, -1],
                         [-1, -1], [numel + 1], [-2, numel]])
    start, end, step = rng.randint(-4, 4), rng.choice([rng.randint(-4, 5), INT64_MAX]), \
        rng.choice([1, 1, 2, 3])
    exp = [rng.choice([-1, 2, 1]) for _ in range(nd)]
    exp = ([rng.choice([2, 3])] if rng.random() < 0.5 else []) + exp
    cases = [
        ("reshape", lambda t: t.reshape(target), {"dims": target}),
        ("view", lambda t: t.view(target), {"dims": target}),
        ("flatten", lambda t: t.flatten(d, d2), {"dim": d, "dim2": d2}),
        ("transpose", lambda t: t.transpose(d, d2), {"dim": d, "dim2": d2}),
        ("t", lambda t: t.t(), {}),
        ("mT", lambda t: t.mT, {}),
        ("permute", lambda t: t.permute(perm), {"dims": perm}),
        ("squeeze", lambda t: t.squeeze(), {}),
        ("squeeze", lambda t: t.squeeze(d), {"dim": d}),
        ("unsqueeze", lambda t: t.unsqueeze(d), {"dim": d}),
        ("expand", lambda t: t.expand(exp), {"dims": exp}),
        ("narrow", lambda t: t.narrow(d, start, abs(end) % 3), {"dim": d, "start": start,
                                                                 "end": abs(end) % 3}),
        ("select", lambda t: t.select(d, start), {"dim": d, "start": start}),
        ("slice", lambda t: t[(slice(None),) * (d2 % nd if nd else 0) +
                              (slice(start, None if end == INT64_MAX else end, step),)],
         {"dim": d2, "start": start, "end": end, "step": step}),
        ("contiguous", lambda t: t.contiguous(), {}),
        ("clone", lambda t: t.clone(), {}),
        ("flip", lambda t: t.flip(perm[:2]), {"dims": perm[:2]}),
        ("repeat", lambda t: t.repeat(exp), {"dims": [abs(e) for e in exp]}),
        ("tril", lambda t: t.tril(start), {"dim": start}),
        ("triu", lambda t: t.triu(start), {"dim": start}),
    ]
    return shape, cases


def test_shape_ops_with_torch(checker):
    rng = random.Random(7)
    c = checker.conn
    for _ in range(130):
        shape, cases = shape_cases(rng)
        dt = rng.choice(list(TORCH_DTYPES))
        a = make_values(rng, dt, shape)
        ta = torch.from_numpy(a.copy())
        ha = c.tensor(a)
        for op, fn, kw in cases:
            if op == "repeat":
                fn = (lambda kw: lambda t: t.repeat(kw["dims"]))(kw)
            if op == "slice" and not shape:
                continue  # Python indexing of a 0-dim tensor is an IndexError in torch
            checker.run(op, "%s(%s %s, %s)" % (op, dt, shape, kw), lambda: fn(ta),
                        lambda: c.op(op, [H(ha)], **kw), keep=(ha,))
        c.free(ha)
    # cat and stack over lists, with promotion and mismatches
    for _ in range(60):
        n = rng.randint(1, 4)
        base = rng.choice([(2, 3), (3,), (1, 2, 2), (0, 2)])
        d = rng.randint(-len(base), len(base) - 1)
        arrs = []
        for _ in range(n):
            s = list(base)
            if rng.random() < 0.5:
                s[d] = rng.randint(0, 3)
            if rng.random() < 0.1:
                s = [0]
            arrs.append(make_values(rng, rng.choice(list(TORCH_DTYPES)), tuple(s)))
        hs = [c.tensor(x) for x in arrs]
        ts = [torch.from_numpy(x.copy()) for x in arrs]
        desc = "[%s] dim %d" % (", ".join("%s %s" % (x.dtype, x.shape) for x in arrs), d)
        checker.run("cat", "cat" + desc, lambda: torch.cat(ts, d),
                    lambda: c.op("cat", [H(h) for h in hs], dim=d))
        checker.run("stack", "stack" + desc, lambda: torch.stack(ts, d),
                    lambda: c.op("stack", [H(h) for h in hs], dim=d))
        c.free(*hs)
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, "\n".join(checker.failures[:40]))
    assert c.stats().session_tensors == 0


def test_views_share_storage(conn):
    """x.select(0, 1).add_(10) changes x, as in torch; reshape of a transpose copies."""
    c = conn
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    hx = c.tensor(x)
    row = c.op("select", [H(hx)], dim=0, start=1)
    c.op("add", [H(row), 10], inplace=True)
    want = torch.from_numpy(x.copy())
    want.select(0, 1).add_(10)
    got, _ = c.get(hx)
    assert got.tolist() == want.tolist()
    col = c.op("slice", [H(hx)], dim=1, start=0, end=INT64_MAX, step=2)
    c.op("mul", [H(col), -1], inplace=True)
    want[:, ::2].mul_(-1)
    got, _ = c.get(hx)
    assert got.tolist() == want.tolist()
    tr = c.op("t", [H(hx)])
    flat = c.op("reshape", [H(tr)], dims=[6])
    c.op("add", [H(flat), 1000], inplace=True)  # a copy: x is untouched
    got, _ = c.get(hx)
    assert got.tolist() == want.tolist()
    c.free(hx, row, col, tr, flat)


def test_reductions_with_torch(checker):
    rng = random.Random(99)
    c = checker.conn
    TOL["float32"] = (1e-4, 1e-4)  # float32 sums: torch's pairwise order vs our double sums
    try:
        for _ in range(150):
            shape = rng.choice([(), (5,), (2, 3), (3, 1, 4), (0, 3), (2, 0), (2, 3, 2, 2)])
            dt = rng.choice(list(TORCH_DTYPES))
            a = make_values(rng, dt, shape)
            ta = torch.from_numpy(a.copy())
            ha = c.tensor(a)
            nd = len(shape)
            keep = rng.random() < 0.4
            dims = sorted(rng.sample(range(-nd, nd), rng.randint(1, nd))) if nd and \
                rng.random() < 0.7 else []
            if dims and rng.random() < 0.05:
                dims = dims + [dims[0]]  # a repeated dim: torch's error
            d = rng.randint(-nd - 1, nd) if nd else rng.choice([0, -1])
            corr = rng.choice([0, 1, 2])
            kd = {"keepdim": keep}
            cases = [
                ("sum", lambda: ta.sum(dims, keepdim=keep) if dims else ta.sum(),
                 dict(dims=dims, **kd) if dims else {}),
                ("mean", lambda: ta.mean(dims, keepdim=keep) if dims else ta.mean(),
                 dict(dims=dims, **kd) if dims else {}),
                ("prod", lambda: ta.prod(d, keepdim=keep), dict(dims=[d], **kd)),
                ("prod", lambda: ta.prod(), {}),
                ("std", lambda: ta.std(dims or None, correction=corr, keepdim=keep),
                 dict(dims=dims, correction=corr, **kd)),
                ("var", lambda: ta.var(dims or None, correction=corr, keepdim=keep),
                 dict(dims=dims, correction=corr, **kd)),
                ("norm", lambda: ta.norm(dim=dims or None, keepdim=keep),
                 dict(dims=dims, **kd)),
                ("logsumexp", lambda: ta.logsumexp(dims or list(range(nd)), keepdim=keep),
                 dict(dims=dims or list(range(nd)), **kd)),
                ("max", lambda: ta.max(), {}),
                ("max", lambda: ta.max(d, keepdim=keep).values, dict(dim=d, **kd)),
                ("min", lambda: ta.min(), {}),
                ("min", lambda: ta.min(d, keepdim=keep).values, dict(dim=d, **kd)),
                ("argmax", lambda: ta.argmax(), {}),
                ("argmax", lambda: ta.argmax(d, keepdim=keep), dict(dim=d, **kd)),
                ("argmin", lambda: ta.argmin(d, keepdim=keep), dict(dim=d, **kd)),
                ("all", lambda: ta.all(), {}),
                ("all", lambda: ta.all(d, keepdim=keep), dict(dim=d, **kd)),
                ("any", lambda: ta.any(), {}),
                ("any", lambda: ta.any(d, keepdim=keep), dict(dim=d, **kd)),
            ]
            for op, fn, kw in cases:
                if op == "norm" and dt not in TOL and dims:
                    continue  # torch 1.13 trips an internal assert here (a torch bug)
                checker.run(op, "%s(%s %s, %s)" % (op, dt, shape, kw), fn,
                            (lambda op, kw: lambda: c.op(op, [H(ha)], **kw))(op, kw), keep=(ha,))
            c.free(ha)
    finally:
        TOL["float32"] = (1.5e-5, 1e-6)
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, "\n".join(checker.failures[:40]))
    assert checker.cases >= 2000


def test_nn_ops_with_torch(checker):
    import torch.nn.functional as F
    rng = random.Random(5)
    c = checker.conn
    fdt = ["float32", "float64"]
    for _ in range(60):
        n, k, m, b = rng.randint(0, 4), rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3)
        da = rng.choice(fdt + ["int64"])
        db = da if rng.random() < 0.8 else rng.choice(fdt)
        shapes = [((n, k), (k if rng.random() < 0.85 else k + 1, m)), ((k,), (k, m)),
                  ((b, n, k), (b, k, m)), ((b, n, k), (b + 1, k, m)), ((n,), (m,)),
                  ((n, k), (m,))]
        sa, sb = rng.choice(shapes)
        x, y = make_values(rng, da, sa), make_values(rng, db, sb)
        hx, hy = c.tensor(x), c.tensor(y)
        tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
        for op, fn in [("mm", torch.mm), ("bmm", torch.bmm), ("outer", torch.outer)]:
            checker.run(op, "%s(%s %s, %s %s)" % (op, da, sa, db, sb), lambda: fn(tx, ty),
                        lambda: c.op(op, [H(hx), H(hy)]))
        c.free(hx, hy)
    for _ in range(80):
        shape = rng.choice([(), (5,), (2, 3), (3, 1, 4), (0, 3)])
        dt = rng.choice(fdt + ["int64"])
        nd = len(shape)
        d = rng.randint(-nd - 1, nd) if nd else rng.choice([0, -1, 1])
        x = make_values(rng, dt, shape)
        hx = c.tensor(x)
        tx = torch.from_numpy(x.copy())
        checker.run("softmax", "softmax(%s %s, %d)" % (dt, shape, d),
                    lambda: torch.softmax(tx, d), lambda: c.op("softmax", [H(hx)], dim=d))
        checker.run("log_softmax", "log_softmax(%s %s, %d)" % (dt, shape, d),
                    lambda: torch.log_softmax(tx, d),
                    lambda: c.op("log_softmax", [H(hx)], dim=d))
        y = make_values(rng, rng.choice(fdt + ["int64"]), broadcastable(rng, shape))
        hy = c.tensor(y)
        ty = torch.from_numpy(y.copy())
        if y.shape == x.shape:  # torch warns (and broadcasts) otherwise; we only compare equal
            checker.run("mse_loss", "mse_loss(%s %s, %s %s)" % (dt, shape, y.dtype, y.shape),
                        lambda: F.mse_loss(tx, ty), lambda: c.op("mse_loss", [H(hx), H(hy)]))
        c.free(hx, hy)
    for _ in range(80):
        n, cl = rng.randint(1, 5), rng.randint(1, 5)
        dt = rng.choice(fdt)
        one = rng.random() < 0.2
        x = make_values(rng, dt, (cl,) if one else (n, cl))
        tdt = "int64" if rng.random() < 0.9 else "int32"
        hi = cl if rng.random() < 0.9 else cl + 2
        t = np.array(rng.randint(0, hi - 1) if one else
                     [rng.randint(0, hi - 1) for _ in range(n if rng.random() < 0.9 else n + 1)],
                     dtype=tdt)
        hx, ht = c.tensor(x), c.tensor(t)
        tx, tt = torch.from_numpy(x.copy()), torch.from_numpy(t.copy())
        checker.run("cross_entropy", "cross_entropy(%s %s, %s %s)" % (dt, x.shape, tdt, t.shape),
                    lambda: F.cross_entropy(tx, tt),
                    lambda: c.op("cross_entropy", [H(hx), H(ht)]))
        w = make_values(rng, dt, (rng.randint(1, 4), x.shape[-1] if rng.random() < 0.9 else 7))
        bias = make_values(rng, dt, (w.shape[0] if rng.random() < 0.9 else 5,))
        hw, hb = c.tensor(w), c.tensor(bias)
        tw, tb = torch.from_numpy(w.copy()), torch.from_numpy(bias.copy())
        checker.run("linear", "linear(%s, %s, %s)" % (x.shape, w.shape, bias.shape),
                    lambda: F.linear(tx, tw, tb), lambda: c.op("linear", [H(hx), H(hw), H(hb)]))
        checker.run("linear", "linear(%s, %s)" % (x.shape, w.shape),
                    lambda: F.linear(tx, tw), lambda: c.op("linear", [H(hx), H(hw)]))
        c.free(hx, ht, hw, hb)
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, "\n".join(checker.failures[:40]))
    assert c.stats().session_tensors == 0


def test_creation_and_fills_with_torch(checker):
    rng = random.Random(11)
    c = checker.conn
    dts = list(TORCH_DTYPES)
    for _ in range(40):
        s, e, n = rng.choice([0, -1, 2.5, 3]), rng.choice([1, 10, -4.5, 0]), rng.randint(-1, 9)
        dt = rng.choice(["float32", "float64", "int64", "int32"])
        # Integer linspace: torch 1.13's vectorised kernel truncates differently from its own
        # formula on some inputs; tensord uses the formula (known difference, README).
        if dt in ("float32", "float64"):
            checker.run("linspace", "linspace(%s, %s, %d, %s)" % (s, e, n, dt),
                        lambda: torch.linspace(s, e, n, dtype=TORCH_DTYPES[dt]),
                        lambda: c.op("linspace", [], min=s, max=e, dim=n, dtype=dt))
        rows, cols = rng.randint(-1, 4), rng.randint(-1, 4)
        checker.run("eye", "eye(%d, %d, %s)" % (rows, cols, dt),
                    lambda: torch.eye(rows, cols, dtype=TORCH_DTYPES[dt]),
                    lambda: c.op("eye", [], dims=[rows, cols], dtype=dt))
    for _ in range(60):
        shape = rng.choice([(), (3,), (2, 3), (0, 2)])
        dt, dt2 = rng.choice(dts), rng.choice(dts)
        x = make_values(rng, dt, shape)
        hx = c.tensor(x)
        tx = torch.from_numpy(x.copy())
        v = rng.choice([0, 1, -2, 2.5, True])
        checker.run("zeros_like", "zeros_like(%s %s)" % (dt, shape), lambda: torch.zeros_like(tx),
                    lambda: c.op("zeros_like", [H(hx)]))
        checker.run("ones_like", "ones_like(%s %s, %s)" % (dt, shape, dt2),
                    lambda: torch.ones_like(tx, dtype=TORCH_DTYPES[dt2]),
                    lambda: c.op("ones_like", [H(hx)], dtype=dt2))
        checker.run("full_like", "full_like(%s %s, %r)" % (dt, shape, v),
                    lambda: torch.full_like(tx, v), lambda: c.op("full_like", [H(hx)], min=v))
        checker.run("fill", "fill_(%s %s, %r)" % (dt, shape, v), lambda: tx.clone().fill_(v),
                    lambda: (c.op("fill", [H(hx), v], inplace=True), hx)[1], keep=(hx,))
        checker.run("zero", "zero_(%s %s)" % (dt, shape), lambda: tx.clone().zero_(),
                    lambda: (c.op("zero", [H(hx)], inplace=True), hx)[1], keep=(hx,))
        y = make_values(rng, dt2, broadcastable(rng, shape))
        hy = c.tensor(y)
        ty = torch.from_numpy(y.copy())
        checker.run("copy", "copy_(%s %s, %s %s)" % (dt, shape, dt2, y.shape),
                    lambda: tx.clone().copy_(ty),
                    lambda: (c.op("copy", [H(hx), H(hy)], inplace=True), hx)[1], keep=(hx,))
        c.free(hx, hy)
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, "\n".join(checker.failures[:40]))
    assert c.stats().session_tensors == 0


def test_random_ops_properties(conn):
    c = conn
    req = wire.pb.Request()
    req.manual_seed.seed = 1234
    c.call(req)
    a = c.op("randint", [], min=-3, max=4, dims=[1000])
    vals, dt = c.get(a)
    assert dt == "int64" and vals.min() >= -3 and vals.max() <= 3 and len(set(vals)) == 7
    c.call(req)  # the same seed gives the same draw
    b = c.op("randint", [], min=-3, max=4, dims=[1000])
    assert (c.get(b)[0] == vals).all()
    x = c.op("empty", [], dims=[2, 500], dtype="float64")
    assert c.get(x)[0].shape == (2, 500) and c.get(x)[1] == "float64"
    c.op("uniform", [H(x)], inplace=True, min=2, max=5)
    u, _ = c.get(x)
    assert u.min() >= 2 and u.max() < 5 and abs(u.mean() - 3.5) < 0.15
    c.op("normal", [H(x)], inplace=True, min=10, max=2)
    g, _ = c.get(x)
    assert abs(g.mean() - 10) < 0.3 and abs(g.std() - 2) < 0.2
    r = c.op("rand_like", [H(x)])
    assert c.get(r)[1] == "float64" and 0 <= c.get(r)[0].min()
    with pytest.raises(wire.ServerError) as e:
        c.op("randint", [], min=5, max=5, dims=[2])
    assert str(e.value) == "random_ expects 'from' to be less than 'to', but got from=5 >= to=5"
    i = c.op("randint", [], min=0, max=2, dims=[3])
    with pytest.raises(wire.ServerError) as e:
        c.op("uniform", [H(i)], inplace=True)
    assert str(e.value) == "\"check_uniform_bounds\" not implemented for 'Long'"
    with pytest.raises(wire.ServerError) as e:
        c.op("fill", [H(i), 1])
    assert str(e.value) == "fill is only available in place: use fill_"
    c.free(a, b, x, r, i)


def test_max_min_with_dim_give_values_and_indices(conn):
    c = conn
    x = np.array([[3, 7, 7], [9, 1, 9]], dtype=np.int64)
    hx = c.tensor(x)
    idx = c.handle()
    vals = c.op("max", [H(hx)], dim=1, out2=idx)
    want = torch.from_numpy(x.copy()).max(1)
    assert c.get(vals)[0].tolist() == want.values.tolist()
    assert c.get(idx)[0].tolist() == want.indices.tolist()
    idx2 = c.handle()
    vals2 = c.op("min", [H(hx)], dim=0, keepdim=True, out2=idx2)
    want = torch.from_numpy(x.copy()).min(0, keepdim=True)
    assert c.get(vals2)[0].tolist() == want.values.tolist()
    assert c.get(idx2)[0].tolist() == want.indices.tolist()
    with pytest.raises(wire.ServerError):
        c.op("sum", [H(hx)], out2=c.handle())
    c.free(hx, vals, idx, vals2, idx2)


def test_matmul_with_torch(checker):
    rng = random.Random(3)
    c = checker.conn
    for _ in range(120):
        k = rng.randint(1, 4)
        sa = rng.choice([(k,), (2, k), (3, 2, k), (2, 1, 3, k), ()])
        sb = rng.choice([(k,), (k, 2), (2, k, 3), (3, 1, k, 2), (k + 1, 2)])
        da = rng.choice(["float32", "float64", "int64", "int32", "bool"])
        db = da if rng.random() < 0.85 else rng.choice(["float32", "float64", "int64"])
        a, b = make_values(rng, da, sa), make_values(rng, db, sb)
        ha, hb = c.tensor(a), c.tensor(b)
        ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
        checker.run("matmul", "matmul(%s %s, %s %s)" % (da, sa, db, sb),
                    lambda: torch.matmul(ta, tb), lambda: c.op("matmul", [H(ha), H(hb)]))
        c.free(ha, hb)
    assert not checker.failures, "%d of %d cases differ from torch:\n%s" % (
        len(checker.failures), checker.cases, "\n".join(checker.failures[:40]))
