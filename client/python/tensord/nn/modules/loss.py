"""tensord.nn losses: torch's modules (constructor arguments, the legacy size_average/reduce
pair, weight/pos_weight buffers) over the F loss functions."""
from __future__ import annotations

import warnings
from typing import Any, Optional

import tensord as _td

from .. import functional as F
from .module import Module

__all__ = ["L1Loss", "MSELoss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss",
           "BCELoss", "BCEWithLogitsLoss"]


def _legacy_reduction(size_average: Any, reduce: Any) -> str:
    """torch's _Reduction.legacy_get_string, with its warning."""
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        ret = "mean"
    elif reduce:
        ret = "sum"
    else:
        ret = "none"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  "reduction='{}' instead.".format(ret))
    return ret


def _kw(**kw: Any) -> dict:
    """The reduction= keyword only when it is not torch's default: the same call either way."""
    if kw.get("reduction") == "mean":
        del kw["reduction"]
    return kw


class _Loss(Module):
    def __init__(self, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            self.reduction = _legacy_reduction(size_average, reduce)
        else:
            self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Optional[_td.Tensor] = None, size_average: Any = None,
                 reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class L1Loss(_Loss):
    """Mean (or sum, or none) of |input - target|."""

    __constants__ = ["reduction"]

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.l1_loss(input, target, **_kw(reduction=self.reduction))


class MSELoss(_Loss):
    """Mean (or sum, or none) of (input - target)**2."""

    __constants__ = ["reduction"]

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.mse_loss(input, target, **_kw(reduction=self.reduction))


class SmoothL1Loss(_Loss):
    """Squared below beta, absolute above."""

    __constants__ = ["reduction"]

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Squared below delta, delta-scaled absolute above."""

    __constants__ = ["reduction", "delta"]

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of class indices given log-probabilities."""

    __constants__ = ["ignore_index", "reduction"]

    def __init__(self, weight: Optional[_td.Tensor] = None, size_average: Any = None,
                 ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """log_softmax then NLL (class indices or probabilities; weight, ignore_index,
    label_smoothing)."""

    __constants__ = ["ignore_index", "reduction", "label_smoothing"]

    def __init__(self, weight: Optional[_td.Tensor] = None, size_average: Any = None,
                 ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        kw = {}
        # only what differs from torch's defaults: the same call either way
        if self.weight is not None:
            kw["weight"] = self.weight
        if self.ignore_index != -100:
            kw["ignore_index"] = self.ignore_index
        if self.reduction != "mean":
            kw["reduction"] = self.reduction
        if self.label_smoothing != 0.0:
            kw["label_smoothing"] = self.label_smoothing
        return F.cross_entropy(input, target, **kw)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities."""

    __constants__ = ["reduction"]

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid then binary cross entropy, stably (weight, pos_weight)."""

    def __init__(self, weight: Optional[_td.Tensor] = None, size_average: Any = None,
                 reduce: Any = None, reduction: str = "mean",
                 pos_weight: Optional[_td.Tensor] = None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: _td.Tensor, target: _td.Tensor) -> _td.Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  pos_weight=self.pos_weight,
                                                  reduction=self.reduction)
