"""torch.nn.functional's tensor functions, run on the server."""
from __future__ import annotations

from typing import Optional

from .. import Tensor


def relu(x: Tensor) -> Tensor:
    """max(x, 0), elementwise."""
    return x._s._op("relu", [x])


def gelu(x: Tensor) -> Tensor:
    """The Gaussian error linear unit, x * Phi(x) (the exact form, torch's default)."""
    return x._s._op("gelu", [x])


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), elementwise."""
    return x._s._op("sigmoid", [x])


def softmax(x: Tensor, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along dim."""
    return x._s._op("softmax", [x], dim=dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """log(softmax(x, dim)), computed stably."""
    return x._s._op("log_softmax", [x], dim=dim)


def mse_loss(input: Tensor, target: Tensor) -> Tensor:
    """The mean of (input - target) ** 2."""
    return input._s._op("mse_loss", [input, target])


def cross_entropy(input: Tensor, target: Tensor) -> Tensor:
    """Class-index targets, mean reduction."""
    return input._s._op("cross_entropy", [input, target])


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """input @ weight.T + bias (bias optional)."""
    inputs = [input, weight] + ([bias] if bias is not None else [])
    return input._s._op("linear", inputs)
