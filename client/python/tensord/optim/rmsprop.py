"""tensord.optim.RMSprop: torch.optim.RMSprop (alpha, eps, weight_decay, momentum, centered,
maximize), stepped on the server (optimizer.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .._conn import pb
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""Implements RMSprop algorithm, as torch.optim.RMSprop. State per parameter: 'step' (an
    int, counted here from the steps' replies), 'square_avg', 'momentum_buffer' (momentum > 0)
    and 'grad_avg' (centered)."""

    _algorithm = pb.OptimStep.RMSPROP

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 foreach: Optional[bool] = None, maximize: bool = False,
                 differentiable: bool = False):
        if not 0.0 <= lr:
            raise ValueError("Invalid learning rate: {}".format(lr))
        if not 0.0 <= eps:
            raise ValueError("Invalid epsilon value: {}".format(eps))
        if not 0.0 <= momentum:
            raise ValueError("Invalid momentum value: {}".format(momentum))
        if not 0.0 <= weight_decay:
            raise ValueError("Invalid weight_decay value: {}".format(weight_decay))
        if not 0.0 <= alpha:
            raise ValueError("Invalid alpha value: {}".format(alpha))
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super(RMSprop, self).__init__(params, defaults)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('momentum', 0)
            group.setdefault('centered', False)
            group.setdefault('foreach', None)
            group.setdefault('maximize', False)
            group.setdefault('differentiable', False)

    def _state_keys(self, group: Dict[str, Any]) -> List[str]:
        keys = ['step', 'square_avg']
        if group['momentum'] > 0:
            keys.append('momentum_buffer')
        if group['centered']:
            keys.append('grad_avg')
        return keys

    def _server_keys(self, group: Dict[str, Any]) -> List[str]:
        return self._state_keys(group)[1:]

    def _note_stepped(self, d: Dict[str, Any], keys: List[str], slots: Dict[str, Any]) -> None:
        if 'step' not in d:
            d['step'] = 0
        for k in keys[1:]:
            if k not in d:
                d[k] = slots[k]
        d['step'] += 1

    def _group_options(self, group: Dict[str, Any], m: Any) -> None:
        m.lr = group['lr']
        m.alpha = group['alpha']
        m.eps = group['eps']
        m.weight_decay = group['weight_decay']
        m.momentum = group['momentum']
        m.centered = bool(group['centered'])
        m.maximize = bool(group['maximize'])
