"""tensord.nn.Dropout and the shape layers Flatten and Unflatten."""
from __future__ import annotations

from typing import Any, Tuple, Union

import tensord as _td

from .. import functional as F
from .module import Module

__all__ = ["Dropout", "Flatten", "Unflatten"]


class _DropoutNd(Module):
    __constants__ = ["p", "inplace"]

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError("dropout probability has to be between 0 and 1, "
                             "but got {}".format(p))
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "p={}, inplace={}".format(self.p, self.inplace)


class Dropout(_DropoutNd):
    """Zeroes each element with probability p in training (scaling the rest by 1/(1-p));
    the identity in eval mode."""

    def forward(self, input: _td.Tensor) -> _td.Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (a view, as torch's)."""

    __constants__ = ["start_dim", "end_dim"]

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: _td.Tensor) -> _td.Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return "start_dim={}, end_dim={}".format(self.start_dim, self.end_dim)


class Unflatten(Module):
    """Splits dim into unflattened_size (a view, as torch's)."""

    __constants__ = ["dim", "unflattened_size"]

    def __init__(self, dim: Union[int, str], unflattened_size: Any) -> None:
        super().__init__()
        if isinstance(dim, int):
            self._require_tuple_int(unflattened_size)
        elif isinstance(dim, str):
            self._require_tuple_tuple(unflattened_size)
        else:
            raise TypeError("invalid argument type for dim parameter")
        self.dim = dim
        self.unflattened_size = unflattened_size

    def _require_tuple_tuple(self, input: Any) -> None:
        if isinstance(input, tuple):
            for idx, elem in enumerate(input):
                if not isinstance(elem, tuple):
                    raise TypeError("unflattened_size must be tuple of tuples, "
                                    + "but found element of type {} at pos {}".format(
                                        type(elem).__name__, idx))
            return
        raise TypeError("unflattened_size must be a tuple of tuples, "
                        + "but found type {}".format(type(input).__name__))

    def _require_tuple_int(self, input: Any) -> None:
        if isinstance(input, (tuple, list)):
            for idx, elem in enumerate(input):
                if not isinstance(elem, int):
                    raise TypeError("unflattened_size must be tuple of ints, "
                                    + "but found element of type {} at pos {}".format(
                                        type(elem).__name__, idx))
            return
        raise TypeError("unflattened_size must be a tuple of ints, but found type {}".format(
            type(input).__name__))

    def forward(self, input: _td.Tensor) -> _td.Tensor:
        try:
            unflatten = input.unflatten  # a server op, when there is one
        except AttributeError:
            return _unflatten_view(input, self.dim, tuple(self.unflattened_size))
        return unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return "dim={}, unflattened_size={}".format(self.dim, self.unflattened_size)


def _unflatten_view(input: _td.Tensor, dim: Any, sizes: Tuple[int, ...]) -> _td.Tensor:
    """input.unflatten(dim, sizes) as a view: needs input's shape (known, or one reply)."""
    if not isinstance(dim, int):
        raise TypeError("named dims are not supported")
    shape = list(input.shape)
    d = dim + len(shape) if dim < 0 else dim
    if not 0 <= d < len(shape):
        raise IndexError("Dimension out of range (expected to be in range of [%d, %d], but got "
                         "%d)" % (-len(shape), len(shape) - 1, dim))
    sizes = tuple(sizes)
    if sizes.count(-1) == 1:
        known = 1
        for s in sizes:
            if s != -1:
                known *= s
        sizes = tuple(shape[d] // known if s == -1 else s for s in sizes)
    n = 1
    for s in sizes:
        n *= s
    if n != shape[d]:
        raise RuntimeError("unflatten: Provided sizes %s don't multiply up to the size of dim "
                           "%d (%d) in the input tensor" % (list(sizes), dim, shape[d]))
    return input.view(*(shape[:d] + list(sizes) + shape[d + 1:]))
