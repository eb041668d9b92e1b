"""torch.nn.utils.clip_grad_norm_ and clip_grad_value_, each one request (OptimStep's
CLIP_GRAD_NORM / CLIP_GRAD_VALUE modes, proto/tensord.proto) that reads and rewrites the
parameters' .grads on the server; neither waits for a reply (clip_grad_norm_ returns its total
norm as a Tensor the server fills), except clip_grad_norm_(..., error_if_nonfinite=True), which
waits as torch's does, to raise its error at the call."""
from __future__ import annotations

import warnings
from typing import Any, List

from ... import Tensor, _names, _numpy, _session
from ..._conn import pb

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_"]


def _params(parameters: Any) -> List[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _request(params: List[Tensor], mode: int) -> Any:
    req = pb.Request()
    m = req.optim_step
    m.mode = mode
    g = m.groups.add()
    for p in params:
        g.params.add().param = p._h
    return req


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    r"""Clips gradient norm of an iterable of parameters.

    The norm is computed over all gradients together, as if they were concatenated into a single
    vector. Gradients are modified in-place. Returns the total norm of the parameter gradients
    (viewed as a single vector), a 0-dim tensor (``tensor(0.)`` when no parameter has a .grad).
    """
    params = _params(parameters)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    s = params[0]._s if params else _session()
    if not params:
        return s.tensor(0.)
    from ... import _use
    _use(s, params)
    req = _request(params, pb.OptimStep.CLIP_GRAD_NORM)
    req.optim_step.max_norm = max_norm
    req.optim_step.norm_type = norm_type
    req.optim_step.error_if_nonfinite = bool(error_if_nonfinite)
    out = s._c.handle()
    req.optim_step.out = out
    _numpy.sync_grads(s, False)  # the .grads change in place: their shared arrays follow
    p = s._send(req, "clip_grad_norm_")
    if error_if_nonfinite:
        s._wait(p)
    _numpy.sync_grads(s, True)
    return Tensor(s, out, p)


def clip_grad_norm(parameters: Any, max_norm: float, norm_type: float = 2.,
                   error_if_nonfinite: bool = False) -> Tensor:
    r"""Deprecated in favor of :func:`clip_grad_norm_`."""
    warnings.warn("%s is now deprecated in favor of %s." % (
        _names.name("nn.utils.clip_grad_norm"), _names.name("nn.utils.clip_grad_norm_")),
        stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(parameters: Any, clip_value: float) -> None:
    r"""Clips gradient of an iterable of parameters at specified value: each .grad is clamped
    in place to [-clip_value, clip_value]."""
    params = _params(parameters)
    clip_value = float(clip_value)
    if not params:
        return
    s = params[0]._s
    from ... import _use
    _use(s, params)
    req = _request(params, pb.OptimStep.CLIP_GRAD_VALUE)
    req.optim_step.clip_value = clip_value
    _numpy.sync_grads(s, False)  # the .grads change in place: their shared arrays follow
    s._send(req, "clip_grad_value_")
    _numpy.sync_grads(s, True)
