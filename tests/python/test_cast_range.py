"""Float to integer casts of values an integer dtype cannot hold, against PyTorch on this
machine (x86-64): torch converts with the CPU's truncating instruction, so NaN and every value
out of range become the destination's smallest value (INT32_MIN, INT64_MIN), the same on its
contiguous, strided and 0-dim paths and in copy_; bool is x != 0 (NaN is True). tensord used to
saturate (and NaN gave 0)."""
import math
import platform

import pytest
import torch

import tensord

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="torch's out-of-range casts are the CPU's")

VALUES = [math.nan, math.inf, -math.inf, 3e9, -3e9, 2147483648.0, -2147483904.0, 1e10, -1e10,
          1e19, -1e19, 9.3e18, 2.5, -2.5, -0.5, 0.0, 70000.0, 2147483520.0]


def cases(m, src, dst):
    x = m.tensor(VALUES, dtype=src)
    out = {"contiguous": x.to(dst).tolist()}
    pair = m.stack([x, x], 1)
    out["strided"] = pair[:, 0].to(dst).tolist()
    out["transposed"] = pair.t().to(dst).tolist()
    out["zero_dim"] = [x[i].to(dst).item() for i in range(len(VALUES))]
    y = m.zeros(len(VALUES), dtype=dst)
    y.copy_(x)
    out["copy_"] = y.tolist()
    z = m.zeros(2 * len(VALUES), dtype=dst)[::2]
    z.copy_(x)
    out["copy_strided"] = z.tolist()
    return out


@pytest.mark.parametrize("src", ["float32", "float64"])
@pytest.mark.parametrize("dst", ["int32", "int64", "bool"])
def test_out_of_range_casts_as_torch(td, src, dst):
    want = cases(torch, getattr(torch, src), getattr(torch, dst))
    got = cases(td, getattr(td, src), getattr(td, dst))
    for path in want:
        assert got[path] == want[path], path
