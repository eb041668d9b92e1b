"""tensorctl end to end: golden scripts against PyTorch, a training loop, exit statuses and
messages, round trips counted by a TCP proxy, safetensors files read back by hand and compared
with torch, and the REPL driven through tmux.

The oracle is PyTorch itself: each .tdx script is also valid Python once torch's names are in
scope, so it is run statement by statement the way Python's REPL runs it (bare expressions
echo their repr), and the text must match with "torch." written "tensord.".
"""
import ast
import builtins
import contextlib
import io
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest
import torch

from conftest import BINARY, Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_DIR = os.path.join(HERE, "..", "cli")
TENSORCTL = os.environ.get("TENSORCTL_BIN", os.path.join(HERE, "..", "..", "build", "tensorctl"))


def run(port, *args, input=None, env=None, timeout=60):
    e = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % port)
    e.pop("TENSORD_TOKEN", None)
    e.update(env or {})
    return subprocess.run([TENSORCTL, *args], input=input, capture_output=True, text=True,
                          env=e, timeout=timeout)


def torch_namespace():
    ns = {k: getattr(torch, k) for k in dir(torch)
          if not k.startswith("_") and not hasattr(builtins, k)}
    ns["bool_"] = torch.bool
    return ns


def torch_output(src):
    """What Python's REPL prints running `src` with torch's names in scope."""
    ns = torch_namespace()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for stmt in ast.parse(src).body:
            code = compile(ast.Interactive(body=[stmt]), "<tdx>", "single")
            exec(code, ns)
    return out.getvalue().replace("torch.", "tensord.")


def script(name):
    return os.path.join(CLI_DIR, name)


# ---- golden scripts ----

def test_seed_examples_match_torch(daemon):
    path = script("seed.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    want = torch_output(open(path).read())
    assert r.stdout == want
    assert "Q value: -12.0\nComputed dQ/da: 36.0\nComputed dQ/db: -12.0\n" in r.stdout
    assert "Dimensions [tensord.Size([2, 2]), tensord.Size([2, 2])]" in r.stdout


def test_language_matches_torch(daemon):
    path = script("language.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    want = torch_output(open(path).read())
    got_lines, want_lines = r.stdout.splitlines(), want.splitlines()
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        assert g == w, "line %d differs" % (i + 1)
    assert len(got_lines) == len(want_lines)


def test_issue16_language_matches_torch(daemon):
    """Advanced indexing, bitwise operators, tuple unpacking, Generator, chunk/split/unbind and
    index_put_ (tests/cli/issue16.tdx), line by line as torch prints them."""
    path = script("issue16.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    got_lines, want_lines = r.stdout.splitlines(), torch_output(open(path).read()).splitlines()
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        assert g == w, "line %d differs" % (i + 1)
    assert len(got_lines) == len(want_lines)


def test_issue16_errors_are_torchs(daemon):
    """Each refusal is torch's (or Python's) message, at the statement's position."""
    cases = ["x[[0, 6]]", "x[tensor([True, False])]", "x[tensor([0.5])]", "x[[0, 1], [0, 1, 2]]",
             "x[::-1]", "x[::0]", "x[[0, 1]] = tensor([1, 2, 3])", "y = x[tensor([True])]",
             "x.chunk(0)", "x.chunk(2, 1)", "tensor(1).chunk(2)", "tensor(1).split(1)",
             "tensor(1).unbind()", "x.split([2, 3])", "x.split(-1)", "x.split(0)",
             "a, b = x", "a, b, c, d, e, f, g = x", "a, b = 5", "a, b = tensor(3)",
             "x & 1.5", "1.5 & 2", "~x.float()", "x.float() << 1", "1 << -1",
             "g = Generator(); g.manual_seed(1.5)", "g = Generator('cuda')",
             "g = Generator(); g.nope()", "zeros(2).normal_(generator=3)",
             "x.index_put_(tensor([0]), tensor(1))", "x.index_put_((None,), tensor(1))",
             "x[0] = [1, 2]", "x[[0, 1]] = (1, 2)", "a, *b, c = [1]"]
    for stmt in cases:
        ns = torch_namespace()
        exec("x = arange(6)", ns)
        with pytest.raises(Exception) as e:
            exec(stmt, ns)
        r = run(daemon, "-c", "x = arange(6)\n" + stmt)
        assert r.returncode == 1, stmt
        assert r.stderr.startswith("-c:2:"), (stmt, r.stderr)
        want = str(e.value).replace("torch.", "tensord.")  # the README's naming rule
        assert r.stderr.split(": ", 1)[1] == want + "\n", (stmt, r.stderr)


def test_training_loop_loss_falls_like_torch(daemon):
    path = script("mlp.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    losses = [float(m) for m in re.findall(r"loss (\S+)", r.stdout)]
    assert len(losses) == 200
    assert losses[-1] < losses[0] / 5
    # falling: every 20-step window ends lower than it started
    for i in range(0, 180, 20):
        assert losses[i + 20] < losses[i]
    want = [float(m) for m in re.findall(r"loss (\S+)", torch_output(open(path).read()))]
    assert losses == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_seed_cells_verbatim_match_torch(daemon):
    """The seed's cells as written (imports, torch. prefixes) run unchanged; only the random
    tensor's values differ from torch's, so lines that differ between two torch runs with
    different seeds are compared by shape only."""
    src = open(script("seed_verbatim.tdx")).read()
    r = run(daemon, "-c", src)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no notice about numpy outside the REPL
    torch.manual_seed(1)
    want1 = torch_output(src).splitlines()
    torch.manual_seed(2)
    want2 = torch_output(src).splitlines()
    got = r.stdout.splitlines()
    assert len(got) == len(want1)
    random_lines = [i for i, (a, b) in enumerate(zip(want1, want2)) if a != b]
    assert len(random_lines) == 2  # the two rows of print(rand_tensor)
    for i, (g, w) in enumerate(zip(got, want1)):
        if i in random_lines:
            assert re.fullmatch(r"(tensor\(\[|        )\[0\.\d{4}, 0\.\d{4}, 0\.\d{4}\]"
                                r"(,|\]\))", g), g
        else:
            assert g == w, "line %d differs" % (i + 1)


def test_seed_numpy_cell_fails_clearly(daemon):
    cell = ("import torch\nimport numpy as np\n"
            "np_array = np.array([10, 20, 30]) ## Create a numpy array\n"
            "t_from_np = torch.from_numpy(np_array) ## Create a tensor from the numpy array\n")
    r = run(daemon, "-c", cell)
    assert r.returncode == 1
    assert r.stderr == ("-c:3:14: numpy is not available in tensorctl (numpy.array); build "
                        "tensors with tensor([...])\n")


def test_unknown_imports_are_refused_like_python(daemon):
    r = run(daemon, "-c", "import os")
    assert r.returncode == 1 and "No module named 'os'" in r.stderr
    r = run(daemon, "-c", "from torch import nosuch")
    assert r.returncode == 1 and "cannot import name 'nosuch' from 'torch'" in r.stderr
    with pytest.raises(AttributeError) as e:
        torch.print  # torch has no Python builtins
    r = run(daemon, "-c", "import torch\ntorch.print(1)")
    assert r.returncode == 1 and e.value.args[0] in r.stderr


# ---- format specs, against Python's format() ----

def format_cases(seed, n):
    """Random specs over the whole mini-language and values across the float range."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        kind = rng.choice("iiffs")
        spec = ""
        if rng.random() < 0.4:
            spec += rng.choice(["", "*", "0", "x", "\u2192", " "]) + rng.choice("<>^=")
        if rng.random() < 0.3:
            spec += rng.choice("+- ")
        if rng.random() < 0.15:
            spec += "z"
        if rng.random() < 0.25:
            spec += "#"
        if rng.random() < 0.3:
            spec += "0"
        if rng.random() < 0.6:
            spec += str(rng.randint(0, 25))
        if rng.random() < 0.25:
            spec += rng.choice(",_")
        if rng.random() < 0.5:
            spec += "." + str(rng.randint(0, 20))
        if rng.random() < 0.85:
            spec += rng.choice({"i": "bcdoxXneEfFgG%", "f": "eEfFgGn%", "s": "s"}[kind])
        if kind == "i":
            v = rng.choice([0, -1, 1, 65, 0x263A, 2**63 - 1, -2**63] +
                           [rng.randint(-10**rng.randint(1, 18), 10**rng.randint(1, 18))] * 6)
            if v == 0 and spec.endswith("c"):
                continue  # NUL: refused by tensorctl (its text is NUL-terminated), see below
        elif kind == "f":
            c = rng.random()
            v = (rng.choice([math.inf, -math.inf, math.nan, 0.0, -0.0]) if c < 0.05 else
                 round(rng.uniform(-1000, 1000), rng.randint(0, 4)) if c < 0.3 else
                 rng.randint(-10**6, 10**6) + 0.5 if c < 0.5 else
                 rng.choice([1, -1]) * 10 ** rng.uniform(-12, 22))
        else:
            v = rng.choice(["ab", "", "h\u00e9llo", "xxxxx"])
        cases.append((v, spec))
    return cases


def literal(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "float('%s')" % v
    if isinstance(v, int) and v == -2**63:
        return "(-9223372036854775807 - 1)"
    return repr(v)


def test_format_specs_match_python(daemon):
    cases = format_cases(6, 3000)
    ok, refused = [], []
    for v, spec in cases:
        try:
            ok.append((v, spec, format(v, spec)))
        except (ValueError, TypeError, OverflowError) as e:
            refused.append((v, spec, str(e)))
    assert len(ok) > 1500 and len(refused) > 300
    src = "".join('print(f"{%s:%s}", end="|\\n")\n' % (literal(v), spec) for v, spec, _ in ok)
    r = run(daemon, "-c", src)
    assert r.returncode == 0, r.stderr
    got = r.stdout.split("|\n")[:-1]
    assert len(got) == len(ok)
    for (v, spec, want), g in zip(ok, got):
        assert g == want, "format(%r, %r)" % (v, spec)
    # Python's refusals are refused too, with Python's message, never printed as something
    src = "".join('f"{%s:%s}"\n' % (literal(v), spec) for v, spec, _ in refused)
    r = run(daemon, "--keep-going", "-c", src)
    assert r.returncode == 1 and r.stdout == ""
    errs = r.stderr.splitlines()
    assert len(errs) == len(refused)
    for i, ((v, spec, want), e) in enumerate(zip(refused, errs)):
        assert e.startswith("-c:%d:" % (i + 1)) and e.endswith(": " + want), (v, spec, e)


def test_format_refuses_what_it_cannot_print(daemon):
    # Python prints a NUL here; tensorctl refuses rather than print something else.
    r = run(daemon, "-c", 'print(f"{0:c}")')
    assert r.returncode == 1 and r.stdout == "" and "not supported" in r.stderr
    # nested fields in a spec are Python's, but not tensorctl's: refused, not misprinted
    r = run(daemon, "-c", 'w = 5\nprint(f"{3:{w}}")')
    assert r.returncode == 1 and r.stdout == "" and "nested" in r.stderr
    for obj in ("[1, 2]", "None", "ones(2)"):
        ns = torch_namespace()
        with pytest.raises(TypeError) as e:
            format(eval(obj, ns), ">3")
        r = run(daemon, "-c", 'f"{%s:>3}"' % obj)
        assert r.returncode == 1
        assert r.stderr.endswith(e.value.args[0].replace("torch.", "") + "\n")


def test_add_alpha_and_div_rounding_mode_as_torch(daemon):
    """alpha= and rounding_mode= travel in OpArgs (issue 16), printed as torch prints them."""
    x = torch.tensor([7.0, -7.5])
    want = "\n".join(str(t) for t in (torch.add(x, x, alpha=2), x.sub(x, alpha=0.5),
                                        torch.div(x, 2, rounding_mode="floor"))) + "\n"
    r = run(daemon, "-c", "x = tensor([7.0, -7.5])\nprint(add(x, x, alpha=2))\n"
                          "print(x.sub(x, alpha=0.5))\nprint(div(x, 2, rounding_mode='floor'))")
    assert r.returncode == 0 and r.stdout == want, r.stderr
    r = run(daemon, "-c", "x = tensor([1, 2])\nx.add_(x, alpha=2.5)")
    assert r.returncode == 1
    assert r.stderr.endswith("For integral input tensors, argument alpha must not be a floating "
                             "point number.\n")


def test_issue16_elementwise_family_through_tensorctl(daemon):
    """A few of issue 16's ops typed as torch code, printed as torch prints them: einsum's two
    call forms, roll, diagonal, triu_indices, isclose, bitwise_and, trunc, addcmul."""
    a, b = torch.arange(6.0).reshape(2, 3), torch.arange(12.0).reshape(3, 4)
    want = [torch.einsum("ij,jk->ik", a, b), torch.einsum("ij,jk->ik", [a, b]),
            torch.roll(a, 1, 1), a.diagonal(1), torch.triu_indices(3, 3),
            torch.isclose(a, a + 1e-6), torch.bitwise_and(torch.tensor([5, 3]), 6),
            torch.trunc(a / 4), torch.addcmul(a, a, a, value=0.5)]
    script = ("a = arange(6.).reshape(2, 3)\nb = arange(12.).reshape(3, 4)\n"
              "print(einsum('ij,jk->ik', a, b))\nprint(einsum('ij,jk->ik', [a, b]))\n"
              "print(roll(a, 1, 1))\nprint(a.diagonal(1))\nprint(triu_indices(3, 3))\n"
              "print(isclose(a, a + 1e-6))\nprint(bitwise_and(tensor([5, 3]), 6))\n"
              "print(trunc(a / 4))\nprint(addcmul(a, a, a, value=0.5))")
    r = run(daemon, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(str(t) + "\n" for t in want)


def test_methods_are_tensor_methods_only(daemon):
    with pytest.raises(AttributeError) as e:
        torch.ones(2).eye
    r = run(daemon, "-c", "x = ones(2)\nx.eye()")
    assert r.returncode == 1 and r.stderr == "-c:2:6: %s\n" % e.value.args[0]


# ---- ops: parsed as ops.def's signatures say (tools/gen_cli_ops.py) ----

def ops_def():
    import sys
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
    import opsdef
    return opsdef.load()


def test_calls_follow_torchs_signatures(daemon):
    """Positional arguments in torch's order, keywords by torch's names, keyword-only ones after
    `*`, a gathered *size; and a result requires grad unless the op is non-differentiable."""
    src = ("x = tensor([[1., -2., 3.], [4., 5., -6.]])\n"
           "z = tensor([1.5, -2.0], requires_grad=True)\n"
           "print(x.sum(1, True))\nprint(x.std(0, False))\nprint(x.var(dim=1, correction=0))\n"
           "print(transpose(x, dim0=0, dim1=1))\nprint(x.flatten(start_dim=0))\n"
           "print(x.softmax(dim=0, dtype=float64))\nprint(add(x, other=x))\n"
           "print(x.narrow(1, 0, length=2))\nprint(x.select(0, index=1))\n"
           "print(tril(x, diagonal=1))\nprint(x.reshape(3, 2))\nprint(x.permute(dims=(1, 0)))\n"
           "print(x.clamp(min=-1, max=1))\nprint(full_like(x, fill_value=7))\n"
           "print(z.sign().requires_grad, floor_divide(z, 2).requires_grad, "
           "z.eq(z).requires_grad)\n"
           # defaults are torch's (flatten(1) ends at -1); dtype= casts the input first
           "print(ones(2, 3, 4).flatten(1).shape, cat([x, x]).shape)\n"
           "print(x.sum(dtype=float64), x.mean(0, dtype=float64))\n"
           "print(x.log_softmax(1, dtype=float64))\n"
           "s = z.sum(dtype=float64)\nprint(s)\ns.backward()\nprint(z.grad)\n")
    r = run(daemon, "-c", src)
    assert r.returncode == 0, r.stderr
    assert r.stdout == torch_output(src)


def test_calls_outside_the_signature_are_refused_like_torch(daemon):
    cases = [("x.sum(nosuch=1)", "sum() got an unexpected keyword argument 'nosuch'"),
             ("add(x, x, x)", "add() takes 2 positional arguments but 3 were given"),
             ("x.matmul_(x)", "'Tensor' object has no attribute 'matmul_'"),
             ("x.gelu()", "'Tensor' object has no attribute 'gelu'"),
             ("x.fill(1)", "'Tensor' object has no attribute 'fill'"),
             ("x.size(5)", "Dimension out of range (expected to be in range of [-2, 1], but "
                           "got 5)")]
    for stmt, want in cases:
        r = run(daemon, "-c", "x = ones(2, 2)\n" + stmt)
        assert r.returncode == 1 and want in r.stderr, (stmt, r.stderr)


def test_help_ops_lists_every_op_of_ops_def(daemon):
    r = run(daemon, "-c", ":help ops")
    assert r.returncode == 0, r.stderr
    listed = set(r.stdout.split("tensor methods and attributes:")[0].split(":", 1)[1].split())
    for op in ops_def():
        if "TD_OPF_INTERNAL" in op.flags:  # x.mT, x[a:b], x[idx], torch.normal's forms
            assert op.name not in listed
        else:
            assert op.name in listed or op.name + "_" in listed, op.name


# ---- help, meta-commands ----

def test_help_topics(daemon):
    parts = {}
    for topic in ("", " language", " meta", " ops"):
        r = run(daemon, "-c", ":help" + topic)
        assert r.returncode == 0 and r.stderr == ""
        parts[topic.strip()] = r.stdout
    assert parts[""] == parts["language"] + "\n" + parts["meta"]
    assert "f-strings" in parts["language"] and ":ls" not in parts["language"]
    for cmd in (":help [language|meta|ops]", ":ls", ":session", ":stats", ":time on|off",
                ":save FILE", ":load FILE", ":quit", ":q", ":exit", "layer_weight"):
        assert cmd in parts["meta"], cmd
    # every name :help ops advertises is torch's, and works here as advertised
    ops, rest = parts["ops"].split("tensor methods and attributes:")
    methods, rest = rest.split("functions:")
    funcs, dtypes = rest.split("dtypes:")
    ops = ops.split(":", 1)[1]
    F = torch.nn.functional
    stmts = []
    for name in ops.split():
        if name.endswith("_"):
            assert hasattr(torch.Tensor, name), name
            stmts.append("x." + name)
            continue
        assert hasattr(torch, name) or hasattr(F, name) or hasattr(torch.Tensor, name), name
        if hasattr(torch, name) or hasattr(F, name):
            stmts.append(name)
        if hasattr(torch.Tensor, name):
            stmts.append("x." + name)
    for name in methods.split():
        assert hasattr(torch.Tensor, name.lstrip(".")), name
        stmts.append("x." + name.lstrip("."))
    for name in funcs.split():
        assert hasattr(torch, name) or hasattr(builtins, name), name
        stmts.append(name)
    for name in dtypes.split():
        assert hasattr(torch, name) or name == "bool_", name  # bool_: bool is Python's
        stmts.append(name)
    assert "x.mT" in stmts and "softmax" in stmts and len(stmts) > 150
    r = run(daemon, "-c", "x = ones(2, 2)\n" + "\n".join(stmts))
    assert r.returncode == 0, r.stderr
    r = run(daemon, "-c", ":help nosuch\nprint(1)")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ":help: unknown topic 'nosuch' (topics: language, meta, ops)\n"


def test_quit_stops_a_script(daemon):
    for q in (":quit", ":q", ":exit"):
        r = run(daemon, "-c", "print(1)\n%s\nprint(2)" % q)
        assert r.returncode == 0 and r.stdout == "1\n", q


def test_time_on_off(daemon):
    r = run(daemon, "-c", ":time\n:time on\nx = ones(2)\nprint(1)\n:time off\nprint(2)\n:time")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "time off\n1\n2\ntime off\n"
    timings = r.stderr.splitlines()
    assert len(timings) == 2  # one per statement while on: the assignment and the print
    assert all(re.fullmatch(r"\(\d+\.\d{3} ms\)", t) for t in timings), timings
    r = run(daemon, "-c", ":time maybe")
    assert r.returncode == 1 and r.stderr == "usage: :time on|off\n"


def test_del_frees_the_handle(daemon):
    r = run(daemon, "-c", "x = ones(3)\ny = ones(2)\n:stats\ndel x\n:stats\n:ls\nprint(x)")
    assert r.returncode == 1
    stats = re.findall(r"session_tensors\s+(\d+)\nsessions\s+\d+\nserver_bytes", r.stdout)
    assert stats == ["2", "1"]
    sb = re.findall(r"session_bytes\s+(\d+)", r.stdout)
    # 3 and 2 float32s, then only y's 2; each live handle also pays one handle-table entry
    entry = int(sb[1]) - 8
    assert entry > 0 and sb == [str(20 + 2 * entry), str(8 + entry)], sb
    ls = r.stdout.split("requires_grad\n", 1)[1]
    assert re.match(r"y\s+\[2\]\s+float32\s+8\s+False\n1 tensor, 8 bytes\n$", ls), ls
    with pytest.raises(NameError) as e:
        exec("x = 1\ndel x\nprint(x)", {})
    assert r.stderr == "-c:7:7: %s\n" % e.value.args[0]


def test_grad_fn_and_grad_none_like_torch(daemon):
    """grad_fn names torch's node (torch's repr adds " at 0x…", an address in its own process);
    leaves have None; .grad is None until backward (known from the Grad reply itself)."""
    import torch
    a = torch.tensor([2.0], requires_grad=True)
    b = a * 3
    c = (b * b).sum()
    want = [type(b.grad_fn).__name__, type(c.grad_fn).__name__]
    r = run(daemon, "-c", "a = tensor([2.0], requires_grad=True)\nb = a * 3\nc = (b * b).sum()\n"
            "print(b.grad_fn, c.grad_fn, a.grad_fn, a.grad)\nc.backward()\nprint(a.grad)")
    assert r.returncode == 0, r.stderr
    c.backward()
    assert r.stdout == "<%s object> <%s object> None None\n%s\n" % (want[0], want[1], a.grad)


def test_json_is_strict_for_nan_and_infinity(daemon):
    r = run(daemon, "--json", "-c",
            "t = tensor([float('nan'), float('inf'), -float('inf'), 1.5])\nprint(t)\n"
            "print(t.double())\nprint(float('nan'), float('-inf'), 2.5)\nprint(range(2))")
    assert r.returncode == 0, r.stderr

    def refuse(name):
        raise ValueError("non-standard JSON constant " + name)
    lines = [json.loads(line, parse_constant=refuse) for line in r.stdout.splitlines()]
    assert lines[0] == {"shape": [4], "dtype": "float32", "data": [None, "inf", "-inf", 1.5]}
    assert lines[1]["data"] == [None, "inf", "-inf", 1.5]
    assert lines[2] == [None, "-inf", 2.5]
    assert lines[3] == "range(0, 2)"
    import numpy as np  # the documented way back: NaN from null, infinities from their strings
    back = np.array(lines[0]["data"], dtype=float)
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf and back[3] == 1.5


# ---- authentication and a lost connection ----

def test_token_flag_and_env(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret-token-0123456789\n")
    d = Daemon("--auth-token-file", str(tok))
    try:
        assert d.port is not None
        none = run(d.port, "-c", "print(1)")
        assert none.returncode == 2 and none.stdout == ""
        assert none.stderr == ("tensorctl: authentication failed (the server wants a token: "
                               "--token or $TENSORD_TOKEN)\n")
        wrong = run(d.port, "--token", "nope", "-c", "print(1)")
        assert wrong.returncode == 2 and wrong.stdout == ""
        assert wrong.stderr == ("tensorctl: authentication failed (the token given by --token "
                                "or $TENSORD_TOKEN was refused)\n")
        ok = run(d.port, "--token", "s3cret-token-0123456789", "-c", "print(1)")
        assert ok.returncode == 0 and ok.stdout == "1\n", ok.stderr
        ok = run(d.port, "--token=s3cret-token-0123456789", "-c", "print(1)")
        assert ok.returncode == 0 and ok.stdout == "1\n", ok.stderr
        env = run(d.port, "-c", "print(1)", env={"TENSORD_TOKEN": "s3cret-token-0123456789"})
        assert env.returncode == 0 and env.stdout == "1\n", env.stderr
        # the flag beats the environment, both ways
        r = run(d.port, "--token", "s3cret-token-0123456789", "-c", "print(1)",
                env={"TENSORD_TOKEN": "nope"})
        assert r.returncode == 0 and r.stdout == "1\n", r.stderr
        r = run(d.port, "--token", "nope", "-c", "print(1)",
                env={"TENSORD_TOKEN": "s3cret-token-0123456789"})
        assert r.returncode == 2
    finally:
        assert d.stop() == 0


def test_connection_lost_mid_script_exits_2(tmp_path):
    d = Daemon()
    assert d.port is not None
    src = ("print(1)\nx = ones(600, 600)\nfor i in range(400):\n    y = x @ x\n"
           "print(y.sum().item())\n")
    e = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % d.port)
    p = subprocess.Popen([TENSORCTL, "-c", src], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=e)
    try:
        assert p.stdout.readline() == "1\n"
        os.kill(d.proc.pid, signal.SIGKILL)  # the daemon this test started, by its pid
        d.proc.wait(timeout=10)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        os.unlink(d.log.name)
    assert p.returncode == 2
    assert out == ""
    assert err.startswith("tensorctl: connection lost: "), err


# ---- errors and exit statuses ----

def test_parse_error_points_at_column(daemon, tmp_path):
    p = tmp_path / "bad.tdx"
    p.write_text("x = tensor([1, 2])\ny = (x +\n      )\nprint('never')\n")
    r = run(daemon, str(p))
    assert r.returncode == 1
    assert r.stdout == ""  # nothing runs: the whole script is parsed first, as Python does
    lines = r.stderr.splitlines()
    assert lines[0] == "%s:3:7: invalid syntax: expected an expression, found ')'" % p
    assert lines[1] == "          )"
    assert lines[2] == "          ^"


def test_server_error_stops_the_script_with_torchs_message(daemon, tmp_path):
    with pytest.raises(RuntimeError) as e:
        torch.ones(2, 3) @ torch.ones(2, 2)
    p = tmp_path / "srv.tdx"
    p.write_text("a = ones(2, 3)\nprint('before')\nc = a @ ones(2, 2)\nd = c + 1\nprint('after')\n")
    r = run(daemon, str(p))
    assert r.returncode == 1
    assert r.stdout == "before\n"
    assert r.stderr == "%s:3:7: %s\n" % (p, e.value.args[0])


def test_keep_going_reports_each_failure(daemon):
    r = run(daemon, "--keep-going", "-c",
            "a = ones(2) + ones(3)\nprint('after')\nq = nosuch\nprint(2)")
    assert r.returncode == 1
    assert r.stdout == "after\n2\n"
    err = r.stderr.splitlines()
    assert err[0].startswith("-c:1:13: The size of tensor a (2) must match the size of "
                             "tensor b (3)")
    assert err[1] == "-c:3:5: name 'nosuch' is not defined"


def test_connection_refused_exits_2():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = run(port, "-c", "print(1)")
    assert r.returncode == 2
    assert "Connection refused" in r.stderr
    assert r.stderr.startswith("tensorctl: ")


def test_usage_errors_exit_2(daemon, tmp_path):
    assert run(daemon, "--no-such-flag").returncode == 2
    r = run(daemon, str(tmp_path / "missing.tdx"))
    assert r.returncode == 2 and "No such file" in r.stderr
    assert run(daemon, "--resume", "xyz", "-c", "1").returncode == 2
    h = run(daemon, "--help")
    assert h.returncode == 0
    for flag in ("--addr", "--token", "--resume", "-c", "--json", "--keep-going", "--help"):
        assert flag in h.stdout


def test_name_error_position(daemon):
    r = run(daemon, "-c", "x = 1; print(x + y)")
    assert r.returncode == 1
    assert r.stderr == "-c:1:18: name 'y' is not defined\n"


# ---- ways in ----

def test_stdin_script_and_c(daemon):
    r = run(daemon, input="x = tensor([1.5, 2.5])\nprint(x * 2)\n")
    assert r.returncode == 0 and r.stdout == "tensor([3., 5.])\n"
    r = run(daemon, "-c", "x = arange(3); x * x")
    assert r.returncode == 0 and r.stdout == "tensor([0, 1, 4])\n"


def test_env_addr_and_flag_addr(daemon):
    r = run(daemon, "--addr", "127.0.0.1:%d" % daemon, "-c", "print(1)",
            env={"TENSORD_ADDR": "127.0.0.1:1"})
    assert r.returncode == 0 and r.stdout == "1\n"


def test_json_output(daemon):
    r = run(daemon, "--json", "-c",
            "x = tensor([[1.5, 2], [3, 4]]); print(x); x.shape; print(x.sum().item(), 'a')")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0] == {"shape": [2, 2], "dtype": "float32", "data": [[1.5, 2.0], [3.0, 4.0]]}
    assert lines[1] == [2, 2]
    assert lines[2] == [10.5, "a"]


def test_resume_keeps_the_session(daemon):
    r = run(daemon, "-c", "x = ones(3)\n:session")
    assert r.returncode == 0, r.stderr
    # "<node id>.<32 hex>" (or the 32 hex digits of a 16-byte token from before scale-out)
    token = re.search(r"token\s+((?:[a-z0-9-]{1,63}\.)?[0-9a-f]{32})\n", r.stdout).group(1)
    r2 = run(daemon, "--resume", token, "-c", ":stats")
    assert r2.returncode == 0, r2.stderr
    # x's handle from the first run, and the handle its restored variable holds (the same
    # tensor, found by the name "x")
    assert re.search(r"session_tensors\s+2\b", r2.stdout)


def test_resume_restores_variables_by_name(daemon):
    """Assignments name their tensors in the session; --resume makes each name a variable
    again, holding the same tensor (values, requires_grad, .grad and graph: torch's)."""
    r = run(daemon, "-c", "x = tensor([1.0, 2.0], requires_grad=True)\n"
                          "y = (x * 3).sum()\ny.backward()\nz = 5\n"
                          "w = ones(2)\ndel w\nq = zeros(1)\nq = 7\n:session")
    assert r.returncode == 0, r.stderr
    token = re.search(r"token\s+((?:[a-z0-9-]{1,63}\.)?[0-9a-f]{32})\n", r.stdout).group(1)
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    ty = (tx * 3).sum()
    ty.backward()
    r2 = run(daemon, "--resume", token, "-c", "print(x)\nprint(y)\nprint(x.grad)")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines() == [repr(tx), repr(ty), repr(tx.grad)]
    # del and rebinding to a non-tensor unbound the names: no such variables come back
    for gone in ("w", "q", "z"):
        r3 = run(daemon, "--resume", token, "-c", "print(%s)" % gone)
        assert r3.returncode == 1 and "name '%s' is not defined" % gone in r3.stderr
    # names other clients set that are no identifiers are left alone; identifiers come back
    import tensord
    s = tensord.Session("127.0.0.1:%d" % daemon, resume=token)
    s["layer.0/w"] = s.tensor([4])
    s["from_python"] = s.tensor([5, 6])
    s.synchronize()
    s._c.close()
    r4 = run(daemon, "--resume", token, "-c", "print(from_python)\nprint(x.shape)")
    assert r4.returncode == 0, r4.stderr
    assert r4.stdout.splitlines() == ["tensor([5, 6])", "tensord.Size([2])"]


# ---- safetensors ----

def read_safetensors(path):
    """The format by hand: u64 LE header length, JSON header, then the byte buffer."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    buf = raw[8 + n:]
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32,
              "I64": torch.int64, "BOOL": torch.bool}
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b, e = d["data_offsets"]
        t = torch.frombuffer(bytearray(buf[b:e]), dtype=dtypes[d["dtype"]]) if e > b else \
            torch.empty(0, dtype=dtypes[d["dtype"]])
        out[name] = t.reshape(d["shape"])
    return header, out


def write_safetensors(path, tensors):
    codes = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32",
             torch.int64: "I64", torch.bool: "BOOL"}
    header, data, off = {"__metadata__": {"by": "test"}}, b"", 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


def test_save_writes_safetensors_torch_can_read(daemon, tmp_path):
    f = tmp_path / "out.safetensors"
    r = run(daemon, "-c", "a = arange(6).reshape(2, 3).to(float64) / 4\n"
            "b = tensor([[1, -2], [3, 4]])\nc = tensor([True, False, True])\n"
            "d = tensor([1, 2], dtype=int32)\ne = zeros(0, 3)\n:save %s\n" % f)
    assert r.returncode == 0, r.stderr
    header, got = read_safetensors(str(f))
    assert set(got) == {"a", "b", "c", "d", "e"}
    assert torch.equal(got["a"], torch.arange(6).reshape(2, 3).to(torch.float64) / 4)
    assert torch.equal(got["b"], torch.tensor([[1, -2], [3, 4]]))
    assert torch.equal(got["c"], torch.tensor([True, False, True]))
    assert torch.equal(got["d"], torch.tensor([1, 2], dtype=torch.int32))
    assert got["e"].shape == (0, 3) and got["e"].dtype == torch.float32
    raw = open(f, "rb").read()
    assert struct.unpack("<Q", raw[:8])[0] % 8 == 0  # buffer aligned, like the reference writer
    # names chosen
    f2 = tmp_path / "some.safetensors"
    assert run(daemon, "-c", "a = ones(2)\nb = ones(3)\n:save %s b" % f2).returncode == 0
    assert set(read_safetensors(str(f2))[1]) == {"b"}


def test_load_reads_a_file_written_by_hand(daemon, tmp_path):
    f = tmp_path / "in.safetensors"
    w = torch.tensor([[0.5, -1.25], [3.0, 4.0]])
    write_safetensors(str(f), {"layer.weight": w, "idx": torch.tensor([3, 1, 2]),
                               "mask": torch.tensor([True, False])})
    r = run(daemon, "-c", ":load %s\nprint(layer_weight)\nprint(idx, mask)\n"
            "print(layer_weight.sum().item())" % f)
    assert r.returncode == 0, r.stderr
    want = "%s\n%s %s\n%s\n" % (repr(w), repr(torch.tensor([3, 1, 2])),
                                repr(torch.tensor([True, False])), w.sum().item())
    assert r.stdout.split("\n", 1)[1] == want


def test_load_refuses_a_bad_file(daemon, tmp_path):
    f = tmp_path / "bad.safetensors"
    h = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    f.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 8)
    r = run(daemon, "-c", ":load %s" % f)
    assert r.returncode == 1
    assert "need 16 bytes" in r.stderr


# ---- round trips ----

class CountingProxy:
    """Forwards one TCP connection to the daemon and counts turns: each time bytes flow from
    the server after the client last sent something, the client waited on a reply."""

    def __init__(self, port):
        self.upstream = port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.turns = 0
        self.last = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def pump(self, src, dst, direction):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self.lock:
                    if direction == "s2c" and self.last == "c2s":
                        self.turns += 1
                    self.last = direction
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(self):
        client, _ = self.lsock.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream))
        t = threading.Thread(target=self.pump, args=(server, client, "s2c"), daemon=True)
        t.start()
        self.pump(client, server, "c2s")
        t.join(timeout=10)
        client.close()
        server.close()
        self.lsock.close()


def test_thousand_line_script_costs_few_round_trips(daemon):
    lines = ["w = ones(4, 4)", "b = zeros(4)", "acc = zeros(4, 4)"]
    for i in range(997 - 1):
        lines.append("acc = acc + (w * %d + b).relu() / %d" % (i % 7, i + 1) if i % 2 == 0
                     else "t%d = acc.sum(dim=0) - %d.5" % (i % 50, i))
    lines.append("print(acc.sum().item())")
    src = "\n".join(lines) + "\n"
    assert len(src.splitlines()) == 1000
    proxy = CountingProxy(daemon)
    r = run(proxy.port, input=src, env={"TENSORCTL_DEBUG": "1"})
    proxy.thread.join(timeout=30)
    assert r.returncode == 0, r.stderr
    # value check against torch
    acc = torch.zeros(4, 4)
    for i in range(0, 996, 2):
        acc = acc + (torch.ones(4, 4) * (i % 7) + torch.zeros(4)).relu() / (i + 1)
    assert float(r.stdout) == pytest.approx(acc.sum().item(), rel=1e-5)
    print("round trips (proxy turns) for 1,000 lines:", proxy.turns, r.stderr.strip())
    assert proxy.turns <= 30


def test_proxy_counts_waits(daemon):
    """The same proxy sees one turn per printed value when a script prints on every line."""
    src = "x = ones(2)\n" + "x = x + 1; print(x.sum().item())\n" * 40
    proxy = CountingProxy(daemon)
    r = run(proxy.port, input=src)
    proxy.thread.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(float(2 * (i + 2))) for i in range(40)]
    assert proxy.turns >= 40


# ---- the REPL, through tmux ----

class Tmux:
    def __init__(self, cmd, env, tmp):
        self.sock = "tdx-%s" % uuid.uuid4().hex[:8]
        envs = " ".join("%s=%s" % kv for kv in env.items())
        subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", "new-session", "-d", "-x",
                        "160", "-y", "50", "env %s %s; sleep 30" % (envs, cmd)], check=True,
                       cwd=tmp)

    def keys(self, *keys, literal=False):
        subprocess.run(["tmux", "-L", self.sock, "send-keys", *(["-l"] if literal else []),
                        *keys], check=True)
        if not literal and ("Enter" in keys or "C-c" in keys):
            self.fresh_line = True  # a new prompt comes: type on only once it is there

    def type(self, text):
        # Keys typed before the editor prints its next prompt land ahead of it on a loaded
        # machine (the line then reads "my_lo>>> "): wait for the fresh prompt first.
        if getattr(self, "fresh_line", False):
            self.wait(lambda s: s.rstrip().rsplit("\n", 1)[-1].strip() in (">>>", "..."),
                      "the next prompt")
            self.fresh_line = False
        self.keys(text, literal=True)

    def pane(self):
        return subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-S", "-200"],
                              capture_output=True, text=True).stdout

    def wait(self, pred, what, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.pane()
            if pred(text):
                return text
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; pane:\n%s" % (what, self.pane()))

    def command(self):
        return subprocess.run(["tmux", "-L", self.sock, "list-panes", "-F",
                               "#{pane_current_command}"], capture_output=True,
                              text=True).stdout.strip()

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def test_repl_through_tmux(daemon, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    t = Tmux(TENSORCTL, {"HOME": str(home), "TENSORD_ADDR": "127.0.0.1:%d" % daemon,
                         "TERM": "xterm"}, str(tmp_path))
    try:
        text = t.wait(lambda s: ">>>" in s and "session" in s, "the banner and prompt")
        # the banner: the server's version (as `tensord --version` says it), the address, the
        # node when the server names one, and the first 8 hex digits of the session token's
        # secret (checked against :session below)
        version = subprocess.run([BINARY, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        banner = re.match(r"%s at 127\.0\.0\.1:%d, (?:node [a-z0-9-]+, )?session ([0-9a-f]{8})\n"
                          r"Type :help for help, Ctrl-D to quit\.\n>>>" %
                          (re.escape(version), daemon), text)
        assert banner, text
        # typing
        t.type("x = tensor([1, 2])")
        t.keys("Enter")
        t.type("x * 2")
        t.keys("Enter")
        t.wait(lambda s: s.count("tensor([2, 4])") == 1, "x * 2")
        # history recall with Up
        t.keys("Up")
        t.wait(lambda s: s.rstrip().endswith(">>> x * 2"), "the recalled line")
        t.keys("Enter")
        t.wait(lambda s: s.count("tensor([2, 4])") == 2, "the recalled line's result")
        # completion of a variable name, then of a method
        t.type("my_long_variable = ones(2)")
        t.keys("Enter")
        t.type("my_lo")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> my_long_variable"), "completion")
        t.type(".su")
        t.keys("Tab")  # ambiguous: the candidates are listed
        t.wait(lambda s: re.search(r"sub\s+sub_\s+sum", s), "the candidates")
        t.type("m")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> my_long_variable.sum"), "method completion")
        t.type("()")
        t.keys("Enter")
        t.wait(lambda s: "tensor(2.)" in s, "the completed line's result")
        # Ctrl-C cancels the line being typed
        t.type("print('cancelled')")
        t.keys("C-c")
        t.wait(lambda s: "KeyboardInterrupt" in s, "Ctrl-C")
        t.type("print('next')")
        t.keys("Enter")
        text = t.wait(lambda s: "\nnext" in s, "the line after Ctrl-C")
        assert "\ncancelled" not in text
        # multi-line input with an open bracket, and an indented block
        t.type("y = tensor([10,")
        t.keys("Enter")
        t.wait(lambda s: s.rstrip().endswith("..."), "the continuation prompt")
        t.type("20])")
        t.keys("Enter")
        t.type("for i in range(2):")
        t.keys("Enter")
        t.type("    y += 1")
        t.keys("Enter")
        t.keys("Enter")
        t.type("y")
        t.keys("Enter")
        t.wait(lambda s: "tensor([12, 22])" in s, "multi-line results")
        # completion of a function name ("soft" is also softplus's start)
        t.type("softm")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> softmax"), "function completion")
        t.type("(tensor([0.0, 0.0]), dim=0)")
        t.keys("Enter")
        t.wait(lambda s: "tensor([0.5000, 0.5000])" in s, "softmax's result")
        # after a dot: a tensor's methods, not torch's functions such as eye or empty
        t.type("y.e")
        t.keys("Tab")
        text = t.wait(lambda s: re.search(r"\bexpand\b", s), "the method candidates")
        listing = text.rsplit(">>> y.e", 2)[1]
        assert re.search(r"\bexp_\b", listing) and re.search(r"\beq\b", listing)
        assert not re.search(r"\b(eye|empty|empty_like)\b", listing), listing
        t.keys(*["BSpace"] * 5)
        # (each step waits for the editor's redraw: keys typed while it lists candidates or
        # runs a line can land before its prompt on a loaded machine)
        t.wait(lambda s: s.rstrip().endswith(">>>"), "the emptied line")
        # after `import torch`, torch. offers torch's functions
        t.type("import torch")
        t.keys("Enter")
        t.wait(lambda s: s.rstrip().endswith(">>> import torch\n>>>"), "the next prompt")
        t.type("torch.linsp")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> torch.linspace"), "module completion")
        t.keys(*["BSpace"] * 20)
        t.wait(lambda s: s.rstrip().endswith(">>>"), "the emptied line")
        # numpy: a one-line notice at the prompt
        t.type("import numpy as np")
        t.keys("Enter")
        t.wait(lambda s: "note: numpy is not available in tensorctl; 'np.' names will fail" in s,
               "the numpy notice")
        # :help topics at the prompt, as in scripts
        t.type(":help ops")
        t.keys("Enter")
        t.wait(lambda s: ".T .mT .ndim" in s, ":help ops")
        t.type(":help nosuch")
        t.keys("Enter")
        t.wait(lambda s: ":help: unknown topic 'nosuch' (topics: language, meta, ops)" in s,
               ":help with an unknown topic")
        # del frees a tensor: :ls no longer lists it and its name is gone
        t.type("del y")
        t.keys("Enter")
        t.type(":ls")
        t.keys("Enter")
        text = t.wait(lambda s: re.search(r"\d+ tensors?, \d+ bytes\n>>> $", s.rstrip() + " "),
                      ":ls")
        ls = text.rsplit(">>> :ls", 1)[1]
        assert not re.search(r"^y\s", ls, re.M) and re.search(r"^x\s", ls, re.M), ls
        t.type("y")
        t.keys("Enter")
        t.wait(lambda s: "<stdin>:1:1: name 'y' is not defined" in s, "the deleted name")
        # the banner's token prefix is the session's
        t.type(":session")
        t.keys("Enter")
        tok = r"token\s+(?:[a-z0-9-]{1,63}\.)?([0-9a-f]{32})"
        text = t.wait(lambda s: re.search(tok, s), ":session")
        assert re.search(tok, text).group(1)[:8] == banner.group(1)
        t.type("z_previous = 41 + 1")
        t.keys("Enter")
        # Ctrl-D quits; the history went to $HOME
        t.keys("C-d")
        deadline = time.time() + 10
        while t.command() == "tensorctl" and time.time() < deadline:
            time.sleep(0.05)
        assert t.command() != "tensorctl", "Ctrl-D did not quit"
        raw = (home / ".tensorctl_history").read_text()  # libedit's format: strvis-encoded
        hist = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)
        assert "my_long_variable" in hist and "x * 2" in hist
    finally:
        t.close()
    # a new tensorctl recalls the previous session's last line with Up
    t = Tmux(TENSORCTL, {"HOME": str(home), "TENSORD_ADDR": "127.0.0.1:%d" % daemon,
                         "TERM": "xterm"}, str(tmp_path))
    try:
        t.wait(lambda s: ">>>" in s and "session" in s, "the second banner")
        t.keys("Up")
        recalled = lambda s: s.rstrip().endswith(">>> z_previous = 41 + 1")  # noqa: E731
        try:
            t.wait(recalled, "the previous session's line", timeout=5)
        except AssertionError:
            # Seen once in CI on a loaded machine: the key went nowhere (the pane still ended in
            # a bare prompt, nothing echoed). Only then is it pressed again: a slow first press
            # that lands later would show, and a second would go one line further back.
            assert t.pane().rstrip().endswith(">>>"), t.pane()
            t.keys("Up")
            t.wait(recalled, "the previous session's line")
        t.keys("Enter")
        t.type("z_previous")
        t.keys("Enter")
        t.wait(lambda s: re.search(r"^42$", s, re.M), "the recalled line's value")
    finally:
        t.close()


def test_ops_added_by_an_ops_def_row_alone(daemon):
    """dot, mv and cumsum came as ops.def rows with no tensorctl edit: torch's call forms print
    what torch prints (the same program run by Python's torch)."""
    prog = ("import torch\n"
            "a = torch.tensor([1.0, 2.0, 3.0])\n"
            "b = torch.tensor([4.0, -5.0, 6.0], requires_grad=True)\n"
            "m = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])\n"
            "i = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int32)\n"
            "print(torch.dot(a, b))\n"
            "print(a.dot(b).item())\n"
            "print(m.mv(a))\n"
            "print(torch.mv(m, vec=a))\n"
            "print(torch.cumsum(i, 0))\n"
            "print(i.cumsum(dim=1, dtype=torch.float64))\n"
            "print(m.cumsum(-1))\n"
            "y = b.cumsum(0).sum()\n"
            "y.backward()\n"
            "print(b.grad)\n")
    want = io.StringIO()
    with contextlib.redirect_stdout(want):
        exec(prog, {})
    r = run(daemon, "-c", prog)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.getvalue().replace("torch.", "tensord.")
