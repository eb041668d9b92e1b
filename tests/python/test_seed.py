"""The user's reference (PyTorch basics) runs with `import tensord as torch` and prints what the
document shows — except random values and torch.Size printed as tensord.Size. The numpy cell
prints what the seed shows too: from_numpy shares the array's values, as torch's does.

The cells are read from the document itself, not copied into this file. The reference lives
outside the repository (../shared/seed), so a copy is kept in tests/python/data; a test checks
the two agree whenever the original is there. The document is plain text: prose paragraphs,
then code, each block of code followed at once by what it printed. Each cell runs twice, once
with tensord and once with torch itself (seeded), and the printed text must be the same.
"""
import ast
import contextlib
import io
import os
import re
import subprocess
import sys

import pytest
import torch as real_torch

import tensord

HERE = os.path.dirname(os.path.abspath(__file__))
COPY = os.path.join(HERE, "data", "pytorch-basics.md")
ORIGINAL = os.path.join(HERE, "..", "..", "..", "shared", "seed", "pytorch-basics.md")


@pytest.fixture
def torch(daemon, monkeypatch):
    monkeypatch.setenv("TENSORD_ADDR", "127.0.0.1:%d" % daemon)
    tensord._default = None
    yield tensord
    tensord._default.close()
    tensord._default = None


def statements(lines):
    """The statements in lines if they are Python with at least one statement, else None."""
    try:
        return ast.parse("\n".join(lines)).body or None
    except SyntaxError:
        return None


def run(code, namespace):
    """Runs a notebook cell: its printed text, plus the repr of a last bare expression."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            if value is not None:
                print(repr(value))
    return out.getvalue()


def random_cell(code):
    return re.search(r"\btorch\.(rand|randn|randint)\b", code) is not None


def comparable(text, code):
    """Printed text with random values (in a cell that draws them) masked."""
    return re.sub(r"\d\.\d{4}", "R", text) if random_cell(code) else text


def squeezed(text):
    return " ".join(text.split())


def cells(path):
    """[(code, printed)] from the document at path."""
    with open(path, encoding="utf-8") as f:
        paragraphs = f.read().split("\n\n")
    # A paragraph is prose unless some of its first lines parse as Python statements (the title
    # is a Markdown heading, which would parse as a comment). Runs of code paragraphs are cells.
    blocks, current = [], []
    for i, para in enumerate(paragraphs):
        lines = para.strip("\n").split("\n")
        code = i > 0 and any(statements(lines[:n]) for n in range(1, len(lines) + 1))
        if code:
            current.append(para.strip("\n"))
        elif current:
            blocks.append("\n\n".join(current))
            current = []
    if current:
        blocks.append("\n\n".join(current))
    # Where code ends and output begins: the split at which running the code with torch prints
    # what follows (up to whitespace and random values). The document was made by running it.
    out, namespace = [], {}
    for block in blocks:
        lines = block.split("\n")
        for k in range(len(lines) - 1, 0, -1):
            code, shown = "\n".join(lines[:k]), "\n".join(lines[k:])
            if statements(lines[:k]) is None:
                continue
            trial = dict(namespace)
            try:
                printed = run(code, trial)
            except Exception:
                continue
            if squeezed(comparable(printed, code)) == squeezed(comparable(shown, code)):
                out.append((code, shown))
                namespace = trial
                break
        else:
            raise AssertionError("no split of this block prints what follows it:\n" + block)
    return out


def test_the_copy_is_the_reference():
    if not os.path.exists(ORIGINAL):  # a clone without ../shared: the copy is what there is
        return
    with open(ORIGINAL, "rb") as a, open(COPY, "rb") as b:
        assert a.read() == b.read(), "tests/python/data/pytorch-basics.md is out of date"


def test_every_cell_prints_what_torch_prints(torch, monkeypatch):
    found = cells(COPY)
    assert len(found) == 6  # imports + data, fills, numpy, arithmetic, broadcasting, autograd
    real_torch.manual_seed(0)
    want_ns, got_ns = {}, {}
    numpy_cells = 0
    for code, shown in found:
        want = run(code, want_ns)
        got = run(re.sub(r"^import torch$", "import tensord as torch", code, flags=re.M),
                      got_ns)
        assert got_ns["torch"] is tensord
        assert comparable(got, code) == comparable(want, code).replace("torch.Size",
                                                                       "tensord.Size"), code
        if "from_numpy" in code:
            # the array's change shows in the tensor, exactly as the document prints it
            numpy_cells += 1
            assert got == shown + "\n" or got.splitlines() == shown.splitlines()
            assert got.splitlines()[-1] == "tensor([100,  20,  30])"
        assert squeezed(comparable(got, code).replace("tensord.Size", "torch.Size")) == \
            squeezed(comparable(shown, code))
    assert numpy_cells == 1


def test_collected_tensors_are_freed(torch):
    s = torch._session()
    base = s._c.stats().session_tensors
    for _ in range(50):
        x = torch.ones(3) * 2
        del x
    import gc
    gc.collect()
    torch.ones(1)  # the next request carries the batched frees
    assert s._c.stats().session_tensors <= base + 2


def test_indexing_views_and_setitem(torch):
    x = torch.arange(12).reshape(3, 4)
    assert repr(x[0]) == "tensor([0, 1, 2, 3])"
    assert repr(x[:, 1:3]) == "tensor([[ 1,  2],\n        [ 5,  6],\n        [ 9, 10]])"
    assert repr(x[..., -1]) == "tensor([ 3,  7, 11])"
    assert x[1:, ::2].tolist() == [[4, 6], [8, 10]]
    x[0] = 7
    x[:, -1] = torch.tensor([-1, -2, -3])
    assert x.tolist() == [[7, 7, 7, -1], [4, 5, 6, -2], [8, 9, 10, -3]]
    assert x.T.shape == torch.Size([4, 3])


def test_train_mlp_example_runs(daemon):
    root = os.path.dirname(os.path.dirname(HERE))
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon,
               PYTHONPATH=os.path.join(root, "client", "python"))
    example = os.path.join(root, "client", "python", "examples", "train_mlp.py")
    out = subprocess.run([sys.executable, example], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    losses = [float(line.split()[-1]) for line in out.stdout.splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5
