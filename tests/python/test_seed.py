"""The user's reference (PyTorch basics) runs with `import tensord as torch` and prints what the
document shows — except random values, torch.Size printed as tensord.Size, and the numpy cell,
where tensord copies (documented) instead of sharing memory."""
import contextlib
import io
import re

import numpy as np
import pytest

import tensord


@pytest.fixture
def torch(daemon, monkeypatch):
    monkeypatch.setenv("TENSORD_ADDR", "127.0.0.1:%d" % daemon)
    tensord._default = None
    yield tensord
    tensord._default.close()
    tensord._default = None


def run(code, torch):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"torch": torch, "np": np})
    return out.getvalue()


def test_creating_tensors_from_data(torch):
    code = "data = [[1, 2], [3, 4]]\nx_data = torch.tensor(data)\nprint(repr(x_data))\n"
    assert run(code, torch) == "tensor([[1, 2],\n        [3, 4]])\n"


def test_random_and_constant_fills(torch):
    code = ("shape = (2, 3)\nrand_tensor = torch.rand(shape)\nones_tensor = torch.ones(shape)\n"
            "print(ones_tensor)\nprint(rand_tensor)\n")
    out = run(code, torch).split("\n")
    assert out[0] == "tensor([[1., 1., 1.],"
    assert out[1] == "        [1., 1., 1.]])"
    assert re.fullmatch(r"tensor\(\[\[0\.\d{4}, 0\.\d{4}, 0\.\d{4}\],", out[2])
    assert re.fullmatch(r"        \[0\.\d{4}, 0\.\d{4}, 0\.\d{4}\]\]\)", out[3])


def test_numpy_conversion_copies(torch):
    code = ("np_array = np.array([10, 20, 30])\nt_from_np = torch.from_numpy(np_array)\n"
            "print(np_array)\nprint(t_from_np)\nnp_array[0] = 100\nprint(np_array)\n"
            "print(t_from_np)\n")
    # torch shares memory and prints tensor([100,  20,  30]) last; tensord copied.
    assert run(code, torch) == ("[10 20 30]\ntensor([10, 20, 30])\n[100  20  30]\n"
                                "tensor([10, 20, 30])\n")


def test_arithmetic_matmul_and_inplace(torch):
    code = ('tensor_a = torch.tensor([[1, 2], [3, 4]])\n'
            'tensor_b = torch.tensor([[5, 6], [7, 8]])\n'
            'print("Dimensions", [tensor_a.shape, tensor_b.shape])\n'
            'print("Element-wise multiplication:\\n", tensor_a * tensor_b)\n'
            'print("Matrix Multiplication:\\n", tensor_a @ tensor_b)\n'
            'tensor_a.add_(5)\n'
            'print("Tensor A after in-place addition:\\n", tensor_a)\n')
    assert run(code, torch) == (
        "Dimensions [tensord.Size([2, 2]), tensord.Size([2, 2])]\n"
        "Element-wise multiplication:\n tensor([[ 5, 12],\n        [21, 32]])\n"
        "Matrix Multiplication:\n tensor([[19, 22],\n        [43, 50]])\n"
        "Tensor A after in-place addition:\n tensor([[6, 7],\n        [8, 9]])\n")


def test_broadcasting(torch):
    code = ('matrix = torch.tensor([[1, 2, 3], [4, 5, 6]])\n'
            'vector = torch.tensor([10, 20, 30])\n'
            'print("Dimensions", [matrix.shape, vector.shape])\n'
            'result = matrix + vector\n'
            'print("Broadcasting result:\\n", result)\n')
    assert run(code, torch) == (
        "Dimensions [tensord.Size([2, 3]), tensord.Size([3])]\n"
        "Broadcasting result:\n tensor([[11, 22, 33],\n        [14, 25, 36]])\n")


def test_autograd(torch):
    code = ('a = torch.tensor([2.0], requires_grad=True)\n'
            'b = torch.tensor([6.0], requires_grad=True)\n'
            'Q = 3*a**3 - b**2\n'
            'print(f"Q value: {Q.item()}")\n'
            'Q.backward()\n'
            'print(f"Computed dQ/da: {a.grad.item()}")\n'
            'print(f"Computed dQ/db: {b.grad.item()}")\n')
    assert run(code, torch) == ("Q value: -12.0\nComputed dQ/da: 36.0\n"
                                "Computed dQ/db: -12.0\n")


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
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon,
               PYTHONPATH=os.path.join(root, "client", "python"))
    out = subprocess.run([sys.executable, os.path.join(root, "client/python/examples/train_mlp.py")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    losses = [float(line.split()[-1]) for line in out.stdout.splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5
