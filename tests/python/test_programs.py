"""The real-program suite: every script in tests/programs/ is a plain PyTorch program (it has an
`import torch` line and prints what it computes); each runs once under PyTorch (`python script.py`)
and once against tensord, unmodified, as a user runs it: `python -m tensord.run script.py`,
which makes `import torch` (and its submodules) resolve to tensord and every printed name say
`torch.` as PyTorch's do. TENSORD_ADDR points it at the session's test daemon.

The two outputs must be the same text byte for byte, except for printed floats: a printed float
may differ from PyTorch's by one unit in its last printed digit plus 1e-5 of its size, and no
more. The two compute in float32 with different summation orders and libm/BLAS kernels, so a
value that sits on a rounding boundary can round the other way, and long float32 reductions
differ in the low bits. Random draws are PyTorch's own (tensord's generator is torch's CPU
generator), so seeded scripts print the same numbers. Integers and all other text must be
identical.

Every script is a test case and none is skipped: a script that needs something tensord lacks
fails with the first error it meets (or the first line it prints differently).
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = sorted((ROOT / "tests" / "programs").glob("*.py"))
TIMEOUT = 60  # seconds per run; each script takes well under 5 s on an idle machine


NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def run(argv, env):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                       cwd=str(ROOT / "tests" / "programs"))
    return r.returncode, r.stdout, r.stderr


def split(text):
    """The text between numbers, and the numbers."""
    return NUMBER.split(text), NUMBER.findall(text)


def last_digit(token):
    """One unit in the last printed digit of a float token ("0.1235" -> 1e-4, "1.5e-03" ->
    1e-4)."""
    mant, _, exp = token.lower().partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return 10.0 ** (-decimals + (int(exp) if exp else 0))


def is_float(token):
    return "." in token or "e" in token.lower()


def same_numbers(want, got):
    """Whether each printed number agrees (see the module comment)."""
    for w, g in zip(want, got):
        if not is_float(w) or not is_float(g):
            if w != g:
                return False
        elif abs(float(w) - float(g)) > 1.01 * last_digit(w) + 1e-5 * abs(float(w)):
            return False
    return True


def agree(want, got):
    """The same text, numbers within the module comment's tolerance."""
    if got == want:
        return True
    wtext, wnum = split(want)
    gtext, gnum = split(got)
    return gtext == wtext and len(gnum) == len(wnum) and same_numbers(wnum, gnum)


def first_difference(want, got):
    wl, gl = want.splitlines(), got.splitlines()
    for i, (w, g) in enumerate(zip(wl, gl)):
        if not agree(w, g):
            return "line %d: torch %r, tensord %r" % (i + 1, w, g)
    return "torch printed %d lines, tensord %d" % (len(wl), len(gl))


@pytest.mark.timeout(2 * TIMEOUT + 30)
@pytest.mark.parametrize("script", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_prints_what_torch_prints(daemon, script):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"),
               TENSORD_ADDR="127.0.0.1:%d" % daemon)
    code, want, err = run([sys.executable, str(script)], env)
    assert code == 0, "the script fails under PyTorch:\n" + err
    assert want, "the script prints nothing under PyTorch"

    code, got, err = run([sys.executable, "-m", "tensord.run", str(script)], env)
    if code != 0:
        # What it printed before failing must match too: the first difference comes first.
        n = len(got.splitlines())
        prefix = "".join(want.splitlines(True)[:n])
        if n and not agree(prefix.rstrip("\n"), got.rstrip("\n")):
            pytest.fail("prints differently before failing: " + first_difference(prefix, got))
        lines = err.strip().splitlines() or ["(no error text)"]
        pytest.fail("fails under tensord: %s (after %d of torch's %d lines)\n%s" % (
            lines[-1], n, len(want.splitlines()), "\n".join(lines[-4:])))
    assert agree(want, got), "prints differently: " + first_difference(want, got)



def test_the_suite_has_at_least_twelve_programs():
    assert len(PROGRAMS) >= 12
    for p in PROGRAMS:
        assert re.search(r"^import torch$", p.read_text(), re.M), p.name  # a PyTorch program
