"""tensord.nn normalisation layers: LayerNorm, BatchNorm1d, BatchNorm2d.

BatchNorm keeps torch's buffers (running_mean, running_var, num_batches_tracked) on the server
and updates them in its forward without waiting: num_batches_tracked.add_(1) is pipelined, and
with momentum=None (a cumulative average, factor 1/num_batches_tracked) the client keeps its own
count of the batches, read from the server only once after a load or a reassignment.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import tensord as _td

from .. import functional as F
from .. import init
from ..parameter import Parameter
from . import _util
from .module import Module

__all__ = ["LayerNorm", "BatchNorm1d", "BatchNorm2d"]


class LayerNorm(Module):
    """Normalises over the last len(normalized_shape) dims; weight ones, bias zeros."""

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(self, normalized_shape: Any, eps: float = 1e-5,
                 elementwise_affine: bool = True, device: Any = None,
                 dtype: Optional[_td.dtype] = None) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if self.elementwise_affine:
            self.weight = Parameter(_util.empty(self.normalized_shape, device, dtype))
            self.bias = Parameter(_util.empty(self.normalized_shape, device, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input: _td.Tensor) -> _td.Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, " \
            "elementwise_affine={elementwise_affine}".format(**self.__dict__)


class _NormBase(Module):
    _version = 2
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Optional[_td.dtype] = None) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self._batches: Optional[int] = 0  # the client's count of num_batches_tracked
        if self.affine:
            self.weight = Parameter(_util.empty((num_features,), device, dtype))
            self.bias = Parameter(_util.empty((num_features,), device, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _util.full((num_features,), 0.0, device, dtype))
            self.register_buffer("running_var", _util.full((num_features,), 1.0, device, dtype))
            self.register_buffer("num_batches_tracked",
                                 _util.full((), 0, device, _td.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "num_batches_tracked":
            object.__setattr__(self, "_batches", None)  # unknown until read
        super().__setattr__(name, value)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()
            self._batches = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, input: Any) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, " \
               "track_running_stats={track_running_stats}".format(**self.__dict__)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any,
                              strict: bool, missing_keys: Any, unexpected_keys: Any,
                              error_msgs: Any) -> None:
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = self.num_batches_tracked._s.tensor(0, dtype=_td.int64)
        self._batches = None  # the loaded count is read when next needed
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)


class _BatchNorm(_NormBase):
    def forward(self, input: _td.Tensor) -> _td.Tensor:
        self._check_input_dim(input)
        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                if self.momentum is None and self._batches is None:
                    self._batches = int(self.num_batches_tracked.item())  # once, after a load
                self.num_batches_tracked.add_(1)
                if self._batches is not None:
                    self._batches += 1
                if self.momentum is None:
                    exponential_average_factor = 1.0 / float(self._batches)
                else:
                    exponential_average_factor = self.momentum
        if self.training:
            bn_training = True
        else:
            bn_training = self.running_mean is None and self.running_var is None
        return F.batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight, self.bias, bn_training, exponential_average_factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) input."""

    def _check_input_dim(self, input: Any) -> None:
        d = _util.known_dim(input)  # checked when known: asking would cost a round trip
        if d is not None and d != 2 and d != 3:
            raise ValueError("expected 2D or 3D input (got {}D input)".format(d))


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) input."""

    def _check_input_dim(self, input: Any) -> None:
        d = _util.known_dim(input)
        if d is not None and d != 4:
            raise ValueError("expected 4D input (got {}D input)".format(d))
