"""tensord.nn.functional, losses and activations: forms written in Python.

See functional.py: ops.def rows flagged FUNCTIONAL are exported there automatically; what is
here overrides them. Every name this module exports is in __all__.

The losses take torch's full signatures: the legacy size_average / reduce arguments become a
reduction here (with torch's warning), and a bad reduction is refused here with torch's
ValueError, before anything is sent. The server ops do the rest (nll_loss, cross_entropy in all
its forms, mse_loss, smooth_l1_loss, huber_loss, binary_cross_entropy(_with_logits)); l1_loss
is torch's own composite, (input - target).abs() reduced, so its grad_fn is torch's
(MeanBackward0, SumBackward0, AbsBackward0). The activations' inplace=True forms run the ops
in place (leaky_relu_, elu_, hardtanh_, relu_), and relu6 is hardtanh(input, 0, 6), as in
torch. Nothing here reads a value or waits for a reply.
"""
from __future__ import annotations

import warnings
from typing import Any

from .. import Tensor, _first_session, _function, _session

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """torch's _Reduction: the legacy pair wins (with its deprecation warning), then the
    reduction must be one torch knows."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn("size_average and reduce args will be deprecated, please use "
                      "reduction='%s' instead." % reduction)
    if reduction not in _REDUCTIONS:
        raise ValueError("%s is not a valid value for reduction" % reduction)
    return reduction


def nll_loss(input: Any, target: Any, weight: Any = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Any:
    """torch.nn.functional.nll_loss: -input[n, target[n]] * weight[target[n]], reduced."""
    return _function("nll_loss")(input, target, weight, ignore_index=ignore_index,
                                 reduction=_reduction(size_average, reduce, reduction))


def cross_entropy(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Any:
    """torch.nn.functional.cross_entropy: class indices or class probabilities (a target of
    the input's shape), with weight, ignore_index and label_smoothing."""
    return _function("cross_entropy")(input, target, weight, ignore_index=ignore_index,
                                      reduction=_reduction(size_average, reduce, reduction),
                                      label_smoothing=float(label_smoothing))


def mse_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean") -> Any:
    """torch.nn.functional.mse_loss: (input - target) ** 2, reduced."""
    return _function("mse_loss")(input, target,
                                 reduction=_reduction(size_average, reduce, reduction))


def l1_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean") -> Any:
    """torch.nn.functional.l1_loss: |input - target|, reduced (torch's composite)."""
    reduction = _reduction(size_average, reduce, reduction)
    loss = (input - target).abs()
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def smooth_l1_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Any:
    """torch.nn.functional.smooth_l1_loss: 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    return _function("smooth_l1_loss")(input, target,
                                       reduction=_reduction(size_average, reduce, reduction),
                                       beta=float(beta))


def huber_loss(input: Any, target: Any, reduction: str = "mean", delta: float = 1.0) -> Any:
    """torch.nn.functional.huber_loss: 0.5 d^2 below delta, delta (|d| - 0.5 delta) above."""
    return _function("huber_loss")(input, target, reduction=_reduction(None, None, reduction),
                                   delta=float(delta))


def binary_cross_entropy(input: Any, target: Any, weight: Any = None, size_average: Any = None,
                         reduce: Any = None, reduction: str = "mean") -> Any:
    """torch.nn.functional.binary_cross_entropy: -w (y log x + (1 - y) log(1 - x)), reduced."""
    return _function("binary_cross_entropy")(
        input, target, weight, reduction=_reduction(size_average, reduce, reduction))


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,
                                     size_average: Any = None, reduce: Any = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Any:
    """torch.nn.functional.binary_cross_entropy_with_logits (weight, pos_weight)."""
    reduction = _reduction(size_average, reduce, reduction)
    if pos_weight is None:
        return _function("binary_cross_entropy_with_logits")(input, target, weight,
                                                             reduction=reduction)
    # the op's operands are positional: an absent weight before a pos_weight is the number 1
    s = _first_session([input, target, weight, pos_weight]) or _session()
    ins = [x if isinstance(x, Tensor) else s.as_tensor(x) for x in (input, target)]
    w = 1.0 if weight is None else weight if isinstance(weight, Tensor) else s.as_tensor(weight)
    pw = pos_weight if isinstance(pos_weight, Tensor) else s.as_tensor(pos_weight)
    return s._op("binary_cross_entropy_with_logits", ins + [w, pw], reduction=reduction)


def _in_place(name: str, input: Any, **kw: Any) -> Any:
    if not isinstance(input, Tensor):
        raise TypeError("%s_(): argument 'input' (position 1) must be Tensor, not %s"
                        % (name, type(input).__name__))
    return input._s._op(name, [input], inplace=True, **kw)


def relu(input: Any, inplace: bool = False) -> Any:
    """torch.nn.functional.relu: max(input, 0); inplace=True is relu_."""
    return input.relu_() if inplace else _function("relu")(input)


def relu_(input: Any) -> Any:
    """torch.nn.functional.relu_: relu in place."""
    return input.relu_()


def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> Any:
    """torch.nn.functional.leaky_relu: input where positive, else negative_slope * input."""
    if inplace:
        return leaky_relu_(input, negative_slope)
    return _function("leaky_relu")(input, float(negative_slope))


def leaky_relu_(input: Any, negative_slope: float = 0.01) -> Any:
    """torch.nn.functional.leaky_relu_: leaky_relu in place."""
    return _in_place("leaky_relu", input, value=float(negative_slope))


def silu(input: Any, inplace: bool = False) -> Any:
    """torch.nn.functional.silu: input * sigmoid(input)."""
    return _in_place("silu", input) if inplace else _function("silu")(input)


def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> Any:
    """torch.nn.functional.elu: input where positive, else alpha * (exp(input) - 1)."""
    return elu_(input, alpha) if inplace else _function("elu")(input, float(alpha))


def elu_(input: Any, alpha: float = 1.0) -> Any:
    """torch.nn.functional.elu_: elu in place."""
    return _in_place("elu", input, alpha=float(alpha))


def hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Any:
    """torch.nn.functional.hardtanh: input clamped to [min_val, max_val]."""
    if inplace:
        return hardtanh_(input, min_val, max_val)
    return _function("hardtanh")(input, float(min_val), float(max_val))


def hardtanh_(input: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    """torch.nn.functional.hardtanh_: hardtanh in place."""
    return _in_place("hardtanh", input, min=float(min_val), max=float(max_val))


def gelu(input: Any, approximate: str = "none") -> Any:
    """torch.nn.functional.gelu: input * Phi(input); approximate='tanh' is
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))), here composed from ops (its
    values and gradients are torch's; its grad_fn is MulBackward0, torch's GeluBackward0)."""
    if approximate == "none":
        return _function("gelu")(input)
    if approximate != "tanh":
        raise RuntimeError("approximate argument must be either none or tanh.")
    inner = (input + input * input * input * 0.044715) * 0.7978845608028654
    return input * 0.5 * (inner.tanh() + 1.0)


def relu6(input: Any, inplace: bool = False) -> Any:
    """torch.nn.functional.relu6: hardtanh(input, 0, 6), as torch computes it."""
    return hardtanh(input, 0.0, 6.0, inplace)


# every public function above (the list is not written out: ops.def is the list of op names)
__all__ = [_n for _n, _v in list(globals().items())
           if callable(_v) and not _n.startswith("_") and getattr(_v, "__module__", "") == __name__]
