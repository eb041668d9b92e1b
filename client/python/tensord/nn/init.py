"""tensord.nn.init: torch.nn.init's initialisers, drawing from the session's generator.

Each function changes the tensor in place under no_grad and issues exactly the random draws
torch's does, in the same order (uniform_, normal_ on the whole tensor), so with the session's
generator reproducing torch's CPU stream the values are torch's. Fans come from the tensor's
shape, which the client knows for every parameter the nn layers create (no round trip).
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Any, Optional, Tuple

import tensord as _td


def calculate_gain(nonlinearity: str, param: Optional[Any] = None) -> float:
    """The recommended gain for a nonlinearity (torch's table)."""
    # torch's table: gain 1 for the linear maps (linear, conv{1,2,3}d, conv_transpose{1,2,3}d)
    linear = re.fullmatch(r"linear|conv(_transpose)?[123]d", nonlinearity) is not None
    if linear or nonlinearity == "sigmoid":
        return 1
    elif nonlinearity == "tanh":
        return 5.0 / 3
    elif nonlinearity == "relu":
        return math.sqrt(2.0)
    elif nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, int) or isinstance(param, float):
            negative_slope = param
        else:
            raise ValueError("negative_slope {} not a valid number".format(param))
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    elif nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError("Unsupported nonlinearity {}".format(nonlinearity))


def uniform_(tensor: _td.Tensor, a: float = 0.0, b: float = 1.0) -> _td.Tensor:
    """Fills tensor with values drawn from U(a, b)."""
    with tensor._s.no_grad():
        return tensor.uniform_(a, b)


def normal_(tensor: _td.Tensor, mean: float = 0.0, std: float = 1.0) -> _td.Tensor:
    """Fills tensor with values drawn from N(mean, std**2)."""
    with tensor._s.no_grad():
        return tensor.normal_(mean, std)


def trunc_normal_(tensor: _td.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> _td.Tensor:
    """Fills tensor from N(mean, std**2) truncated to [a, b] (torch's inverse-CDF method)."""
    def norm_cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", stacklevel=2)
    with tensor._s.no_grad():
        lo = norm_cdf((a - mean) / std)
        up = norm_cdf((b - mean) / std)
        tensor.uniform_(2 * lo - 1, 2 * up - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
        return tensor


def constant_(tensor: _td.Tensor, val: float) -> _td.Tensor:
    """Fills tensor with val."""
    with tensor._s.no_grad():
        return tensor.fill_(val)


def ones_(tensor: _td.Tensor) -> _td.Tensor:
    """Fills tensor with 1."""
    with tensor._s.no_grad():
        return tensor.fill_(1.0)


def zeros_(tensor: _td.Tensor) -> _td.Tensor:
    """Fills tensor with 0."""
    with tensor._s.no_grad():
        return tensor.zero_()


def eye_(tensor: _td.Tensor) -> _td.Tensor:
    """Fills a 2-D tensor with the identity matrix."""
    if len(tensor.shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    with tensor._s.no_grad():
        tensor.copy_(tensor._s.eye(rows, cols, dtype=tensor.dtype))
    return tensor


def dirac_(tensor: _td.Tensor, groups: int = 1) -> _td.Tensor:
    """Fills a 3-, 4- or 5-D tensor with the Dirac delta (identity convolution)."""
    shape = tuple(tensor.shape)
    dimensions = len(shape)
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if shape[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    out_chans_per_grp = shape[0] // groups
    min_dim = min(out_chans_per_grp, shape[1])
    with tensor._s.no_grad():
        tensor.zero_()
        for g in range(groups):
            for d in range(min_dim):
                idx = (g * out_chans_per_grp + d, d) + tuple(s // 2 for s in shape[2:])
                tensor[idx] = 1
    return tensor


def _calculate_fan_in_and_fan_out(tensor: _td.Tensor) -> Tuple[int, int]:
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         "dimensions")
    receptive_field_size = 1
    for s in shape[2:]:
        receptive_field_size *= s
    return shape[1] * receptive_field_size, shape[0] * receptive_field_size


def _calculate_correct_fan(tensor: _td.Tensor, mode: str) -> int:
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError("Mode {} not supported, please use one of {}".format(mode, valid_modes))
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(tensor: _td.Tensor, gain: float = 1.0) -> _td.Tensor:
    """Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: _td.Tensor, gain: float = 1.0) -> _td.Tensor:
    """Glorot normal: N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std)


def _kaiming_std(tensor: _td.Tensor, a: float, mode: str, nonlinearity: str) -> float:
    """He's std: gain / sqrt(fan)."""
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan)


def kaiming_uniform_(tensor: _td.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> _td.Tensor:
    """He uniform: U(-bound, bound), bound = gain * sqrt(3 / fan)."""
    if 0 in tuple(tensor.shape):
        warnings.warn("Initializing zero-element tensors is a no-op")
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    with tensor._s.no_grad():
        return tensor.uniform_(-bound, bound)


def kaiming_normal_(tensor: _td.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> _td.Tensor:
    """He normal: N(0, std**2), std = gain / sqrt(fan)."""
    if 0 in tuple(tensor.shape):
        warnings.warn("Initializing zero-element tensors is a no-op")
        return tensor
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    with tensor._s.no_grad():
        return tensor.normal_(0, std)


def orthogonal_(tensor: _td.Tensor, gain: float = 1) -> _td.Tensor:
    raise NotImplementedError("tensord.nn.init.orthogonal_ needs a QR decomposition, which the "
                              "server does not have")


def sparse_(tensor: _td.Tensor, sparsity: float, std: float = 0.01) -> _td.Tensor:
    raise NotImplementedError("tensord.nn.init.sparse_ is not supported")


# every public function defined here (built, not listed: the op names stay in ops.def)
__all__ = [_n for _n, _f in list(globals().items())
           if callable(_f) and getattr(_f, "__module__", None) == __name__
           and not _n.startswith("_")]
