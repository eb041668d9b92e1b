"""tensord.optim.Adagrad: torch.optim.Adagrad (lr_decay, weight_decay,
initial_accumulator_value, eps, maximize), stepped on the server (optimizer.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import Tensor, full_like
from .._conn import pb
from .optimizer import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Implements Adagrad algorithm, as torch.optim.Adagrad. Its state is made with the
    optimizer, as torch's: 'step' (a float32 0-dim tensor, 0) and 'sum' (filled with
    initial_accumulator_value) for every parameter."""

    _algorithm = pb.OptimStep.ADAGRAD

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: Optional[bool] = None, *, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError("Invalid learning rate: {}".format(lr))
        if not 0.0 <= lr_decay:
            raise ValueError("Invalid lr_decay value: {}".format(lr_decay))
        if not 0.0 <= weight_decay:
            raise ValueError("Invalid weight_decay value: {}".format(weight_decay))
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                "Invalid initial_accumulator_value value: {}".format(initial_accumulator_value))
        if not 0.0 <= eps:
            raise ValueError("Invalid epsilon value: {}".format(eps))
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value,
                        foreach=foreach, maximize=maximize)
        super(Adagrad, self).__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                state = self._state_obj[p]
                state["step"] = p._s.tensor(0.0)
                state["sum"] = full_like(p, initial_accumulator_value)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
        state_values = list(self._state_obj.values())
        step_is_tensor = (len(state_values) != 0) and isinstance(state_values[0]["step"], Tensor)
        if not step_is_tensor:
            params = [p for g in self.param_groups for p in g['params']]
            for st in state_values:
                st["step"] = params[0]._s.tensor(float(st["step"]))

    def _state_keys(self, group: Dict[str, Any]) -> List[str]:
        return ['step', 'sum']

    def _group_options(self, group: Dict[str, Any], m: Any) -> None:
        m.lr = group['lr']
        m.lr_decay = group['lr_decay']
        m.eps = group['eps']
        m.weight_decay = group['weight_decay']
        m.initial_accumulator_value = group['initial_accumulator_value']
        m.maximize = bool(group['maximize'])
