"""tensord.optim.Adam and AdamW: torch.optim.Adam / AdamW (betas, eps, weight_decay, amsgrad,
maximize), stepped on the server (optimizer.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import Tensor
from .._conn import pb
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


def _check(lr: float, betas: Any, eps: float, weight_decay: float) -> None:
    if not 0.0 <= lr:
        raise ValueError("Invalid learning rate: {}".format(lr))
    if not 0.0 <= eps:
        raise ValueError("Invalid epsilon value: {}".format(eps))
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError("Invalid beta parameter at index 0: {}".format(betas[0]))
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError("Invalid beta parameter at index 1: {}".format(betas[1]))
    if not 0.0 <= weight_decay:
        raise ValueError("Invalid weight_decay value: {}".format(weight_decay))


class _AdamBase(Optimizer):
    def _state_keys(self, group: Dict[str, Any]) -> List[str]:
        keys = ['step', 'exp_avg', 'exp_avg_sq']
        return keys + ['max_exp_avg_sq'] if group['amsgrad'] else keys

    def _group_options(self, group: Dict[str, Any], m: Any) -> None:
        m.lr = group['lr']
        m.beta1, m.beta2 = group['betas']
        m.eps = group['eps']
        m.weight_decay = group['weight_decay']
        m.amsgrad = bool(group['amsgrad'])
        m.maximize = bool(group['maximize'])

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('amsgrad', False)
            group.setdefault('maximize', False)
            group.setdefault('foreach', None)
            group.setdefault('capturable', False)
        state_values = list(self._state_obj.values())
        step_is_tensor = (len(state_values) != 0) and isinstance(state_values[0]['step'], Tensor)
        if not step_is_tensor:
            params = [p for g in self.param_groups for p in g['params']]
            if params:
                for st in state_values:
                    st['step'] = params[0]._s.tensor(float(st['step']))


class Adam(_AdamBase):
    r"""Implements Adam algorithm, as torch.optim.Adam. State per parameter: 'step' (a float32
    0-dim tensor), 'exp_avg', 'exp_avg_sq' and with amsgrad 'max_exp_avg_sq'."""

    _algorithm = pb.OptimStep.ADAM

    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False, fused: bool = False):
        _check(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused)
        super(Adam, self).__init__(params, defaults)
        if fused:
            if differentiable:
                raise RuntimeError("`fused` cannot be `differentiable`")
            raise RuntimeError("FusedAdam requires all the params to be CUDA, floating point")

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('differentiable', False)
            group.setdefault('fused', False)


class AdamW(_AdamBase):
    r"""Implements AdamW algorithm, as torch.optim.AdamW (decoupled weight decay: the parameter
    is multiplied by 1 - lr * weight_decay before the Adam update)."""

    _algorithm = pb.OptimStep.ADAMW

    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None,
                 capturable: bool = False):
        _check(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad,
                        foreach=foreach, maximize=maximize, capturable=capturable)
        super(AdamW, self).__init__(params, defaults)
