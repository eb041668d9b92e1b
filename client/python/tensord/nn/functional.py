"""torch.nn.functional's tensor functions, run on the server."""
from __future__ import annotations

from typing import Optional

from .. import Tensor


def relu(x: Tensor) -> Tensor:
    return x._s._op("relu", [x])


def gelu(x: Tensor) -> Tensor:
    return x._s._op("gelu", [x])


def sigmoid(x: Tensor) -> Tensor:
    return x._s._op("sigmoid", [x])


def softmax(x: Tensor, dim: int) -> Tensor:
    return x._s._op("softmax", [x], dim=dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    return x._s._op("log_softmax", [x], dim=dim)


def mse_loss(input: Tensor, target: Tensor) -> Tensor:
    return input._s._op("mse_loss", [input, target])


def cross_entropy(input: Tensor, target: Tensor) -> Tensor:
    """Class-index targets, mean reduction."""
    return input._s._op("cross_entropy", [input, target])


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    inputs = [input, weight] + ([bias] if bias is not None else [])
    return input._s._op("linear", inputs)
