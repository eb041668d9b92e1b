"""python -m tensord.run and tensord.install_as_torch(): an unmodified PyTorch script runs against
the daemon, `import torch` (and its submodules) resolving to tensord, and prints byte for byte
what it prints under PyTorch (names say torch.); argv, sys.path and the exit status are the
script's own."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = textwrap.dedent("""\
    import sys
    import torch
    import torch.nn.functional as F
    from torch import nn  # noqa: F401
    x = torch.tensor([[1., 2.], [3., 4.]], dtype=torch.float64)
    print(x, x.dtype, x.shape, type(x), x.type())
    print(torch.max(torch.tensor([1, 5, 2]), 0))
    y = torch.tensor([-1.0, 2.0], requires_grad=True)
    z = F.relu(y) * 3
    print(z, z.grad_fn.name())
    print(torch.int64, torch.Size([3]), torch.zeros(2, dtype=torch.int32))
    print(sys.argv[1:], __name__)
    sys.exit(int(sys.argv[1]))
    """)


def run(cmd, daemon, **kw):
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon,
               PYTHONPATH=os.path.join(ROOT, "client", "python"))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_script_output_is_torchs_byte_for_byte(daemon, tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    want = run([sys.executable, str(path), "3", "x"], daemon)
    got = run([sys.executable, "-m", "tensord.run", str(path), "3", "x"], daemon)
    assert want.returncode == 3, want.stderr
    assert got.returncode == 3, got.stderr
    assert got.stdout == want.stdout
    assert "torch.float64" in got.stdout and "tensord" not in got.stdout


def test_errors_name_torch_and_submodules_resolve(daemon, tmp_path):
    path = tmp_path / "err.py"
    path.write_text(textwrap.dedent("""\
        import torch, torch.nn, torch.nn.functional, torch.optim, torch.utils.data
        import torch.autograd
        print(torch.__name__, torch.nn.functional.relu.__name__)
        try:
            import torch.no_such_module
        except ModuleNotFoundError as e:
            print(e)
        x = torch.ones(2, 3)
        try:
            (x + torch.ones(3, 2)).tolist()
        except RuntimeError as e:
            print(str(e).rsplit(" (", 1)[0])  # tensord adds "(op, issued at file:line)"
        """))
    got = run([sys.executable, "-m", "tensord.run", str(path)], daemon)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "tensord relu"
    assert lines[1] == "No module named 'torch.no_such_module'"
    assert lines[2] == ("The size of tensor a (3) must match the size of tensor b (2) at "
                        "non-singleton dimension 1")


def test_install_as_torch_in_process_and_usage(daemon, tmp_path):
    code = ("import tensord; tensord.install_as_torch(); import torch, torch.nn.functional as F;"
            "print(torch is tensord, torch.zeros(1, dtype=torch.float64))")
    got = run([sys.executable, "-c", code], daemon)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "True tensor([0.], dtype=torch.float64)\n"
    bad = run([sys.executable, "-m", "tensord.run"], daemon)
    assert bad.returncode == 2 and "usage: python -m tensord.run" in bad.stderr
    missing = run([sys.executable, "-m", "tensord.run", str(tmp_path / "nope.py")], daemon)
    assert missing.returncode == 2 and "can't open file" in missing.stderr
    (tmp_path / "modscript.py").write_text("import torch\nprint(torch.ones(1))\n")
    mod = run([sys.executable, "-m", "tensord.run", "-m", "modscript"], daemon, cwd=tmp_path)
    assert mod.returncode == 0 and mod.stdout == "tensor([1.])\n", mod.stderr
