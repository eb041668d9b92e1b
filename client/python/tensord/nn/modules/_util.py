"""Helpers shared by the nn layers: parameter storage made with its shape and dtype known to
the client (so init and fans never wait for the server), and torch's _pair/_single."""
from __future__ import annotations

import collections.abc
from itertools import repeat
from typing import Any, Optional, Sequence

import tensord as _td
from tensord import _legacy

from ..parameter import Parameter


def _known(t: _td.Tensor, shape: Sequence[int], dtype: _td.dtype) -> _td.Tensor:
    if t._meta is None:
        t._meta = (_td.Size(int(d) for d in shape), dtype)
    return t


def empty(shape: Sequence[int], device: Any = None, dtype: Optional[_td.dtype] = None
          ) -> _td.Tensor:
    """torch.empty(shape, device=, dtype=) on the default session, its meta known."""
    _legacy._check_device(device)
    dt = dtype or _td.float32
    return _known(_td._session().empty(*shape, dtype=dt), shape, dt)


def full(shape: Sequence[int], value: Any, device: Any = None,
         dtype: Optional[_td.dtype] = None) -> _td.Tensor:
    """torch.full(shape, value, dtype=) on the default session, its meta known."""
    _legacy._check_device(device)
    dt = dtype or _td.float32
    return _known(_td._session().full(list(shape), value, dtype=dt), shape, dt)


def weight_and_bias(module: Any, weight_shape: Sequence[int], bias: bool, out: int,
                    device: Any = None, dtype: Optional[_td.dtype] = None) -> None:
    """module.weight (weight_shape) and, when bias, module.bias ((out,)), else bias registered
    as None: made empty, in this order, for reset_parameters to fill (torch's Linear, Bilinear and
    convolutions)."""
    module.weight = Parameter(empty(weight_shape, device, dtype))
    if bias:
        module.bias = Parameter(empty((out,), device, dtype))
    else:
        module.register_parameter("bias", None)


def _ntuple(n: int, name: str = "parse") -> Any:
    def parse(x: Any) -> Any:
        if isinstance(x, collections.abc.Iterable):
            return tuple(x)
        return tuple(repeat(x, n))
    parse.__name__ = name
    return parse


_single = _ntuple(1, "_single")
_pair = _ntuple(2, "_pair")


def _reverse_repeat_tuple(t: Sequence[Any], n: int) -> tuple:
    return tuple(x for x in reversed(t) for _ in range(n))


def known_dim(t: Any) -> Optional[int]:
    """t's number of dims if the client knows it without asking the server, else None."""
    if isinstance(t, _td.Tensor) and t._meta is not None:
        return len(t._meta[0])
    return None
