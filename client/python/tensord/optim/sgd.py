"""tensord.optim.SGD: torch.optim.SGD (momentum, dampening, nesterov, weight_decay, maximize),
stepped on the server (optimizer.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .._conn import pb
from .optimizer import Optimizer, required

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Implements stochastic gradient descent (optionally with momentum), as torch.optim.SGD.

    State per parameter: 'momentum_buffer' (None while momentum is 0), made at its first step
    as a copy of that step's update.
    """

    _algorithm = pb.OptimStep.SGD

    def __init__(self, params: Any, lr: Any = required, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: Optional[bool] = None, differentiable: bool = False):
        if lr is not required and lr < 0.0:
            raise ValueError("Invalid learning rate: {}".format(lr))
        if momentum < 0.0:
            raise ValueError("Invalid momentum value: {}".format(momentum))
        if weight_decay < 0.0:
            raise ValueError("Invalid weight_decay value: {}".format(weight_decay))
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach,
                        differentiable=differentiable)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super(SGD, self).__init__(params, defaults)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('nesterov', False)
            group.setdefault('maximize', False)
            group.setdefault('foreach', None)
            group.setdefault('differentiable', False)

    def _state_keys(self, group: Dict[str, Any]) -> List[str]:
        return ['momentum_buffer']

    def _server_keys(self, group: Dict[str, Any]) -> List[str]:
        return ['momentum_buffer'] if group['momentum'] != 0 else []

    def _note_stepped(self, d: Dict[str, Any], keys: List[str], slots: Dict[str, Any]) -> None:
        # torch stores the buffer list back: None while momentum is 0
        if d.get('momentum_buffer') is None:
            d['momentum_buffer'] = slots.get('momentum_buffer')

    def _group_options(self, group: Dict[str, Any], m: Any) -> None:
        m.lr = group['lr']
        m.momentum = group['momentum']
        m.dampening = group['dampening']
        m.weight_decay = group['weight_decay']
        m.nesterov = bool(group['nesterov'])
        m.maximize = bool(group['maximize'])
