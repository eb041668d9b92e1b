"""tensord.optim.Optimizer: torch.optim.Optimizer's API over a fused step on the server.

``step()`` sends ONE request (OptimStep, proto/tensord.proto) naming every parameter of every
param group with the group's options and the handles of the parameter's state tensors; the
server reads each .grad, updates the parameters in place and keeps the state tensors in the
session (server/core/optim.c has the math, torch 1.13's single-tensor rules). The request is
pipelined: step() never waits for its reply. ``zero_grad()`` is one request too.

The state a parameter keeps is made on the server at its first step with a .grad, as torch's
lazy initialisation makes it, under handles this client chose; which parameters were stepped
is in each step's reply, read only when ``optimizer.state`` or ``state_dict()`` is asked for.
So ``optimizer.state[p]['exp_avg']`` is a tensord Tensor naming the server's state tensor, and
``state_dict()`` / ``load_state_dict()`` have torch's structure (state keyed by parameter
index, param_groups with 'params' index lists).

Difference from torch 1.13: ``zero_grad()`` sets grads to None by default (set_to_none=True, as
torch 2 does; ZERO_GRAD_SET_TO_NONE below); ``zero_grad(set_to_none=False)`` zeroes them in
place as torch 1.13's default does.
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from itertools import chain
from typing import Any, Dict, List, Optional

from .. import Tensor, _names, _numpy
from .._conn import pb

__all__ = ["Optimizer", "required"]

ZERO_GRAD_SET_TO_NONE = False  # zero_grad()'s default: torch 1.13's (torch 2's is True)


class _RequiredParameter(object):
    """Singleton class representing a required parameter for an Optimizer."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _typename(o: Any) -> str:
    """torch.typename: a tensor's legacy type name (tensord.FloatTensor, under _names' rule)."""
    if isinstance(o, Tensor):
        return _names.text(o.type())
    module = ""
    cls = type(o)
    if cls.__module__ not in ("builtins", "__builtin__", None):
        module = cls.__module__ + "."
    return module + cls.__qualname__


def zero_grads(params: Any, set_to_none: bool) -> None:
    """The gradients of params (tensors of one session) zeroed in place, or set to None: one
    OptimStep(ZERO_GRAD) request, not waited for (the server knows which gradients exist)."""
    params = list(params)
    if not params:
        return
    s = params[0]._s
    req = pb.Request()
    m = req.optim_step
    m.mode = pb.OptimStep.ZERO_GRAD
    m.set_to_none = bool(set_to_none)
    g = m.groups.add()
    for p in params:
        g.params.add().param = p._h
        if set_to_none:
            p._grad_cache = None
    if not set_to_none:
        _numpy.sync_grads(s, False)  # zeroed in place: a .grad's shared arrays follow
    s._send(req, "zero_grad")
    if not set_to_none:
        _numpy.sync_grads(s, True)


class Optimizer(object):
    r"""Base class for all optimizers (torch.optim.Optimizer).

    Args:
        params (iterable): an iterable of Tensors or dicts. Specifies what Tensors should be
            optimized.
        defaults: (dict): a dict containing default values of optimization options (used when a
            parameter group doesn't specify them).
    """

    # set by each algorithm
    _algorithm: int = -1

    def __init__(self, params: Any, defaults: Dict[str, Any]):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be "
                            "an iterable of Tensors or dicts, but got " + _typename(params))
        self.state: Any = defaultdict(dict)
        self.param_groups: List[Dict[str, Any]] = []
        # per parameter (by identity): the Tensors naming its server-side states, made at its
        # first step ({key: Tensor}); and the steps whose replies are not read yet
        self._slots: Dict[int, Dict[str, Tensor]] = {}
        self._pending: List[Any] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{'params': param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # -- torch's state, kept in step with the server --
    @property
    def state(self) -> Any:
        """{parameter: {key: value}} as torch's; reading it waits for the replies of the steps
        sent so far (which say which parameters had a .grad, hence a state)."""
        self._merge()
        return self._state_obj

    @state.setter
    def state(self, value: Any) -> None:
        self._state_obj = value

    def _merge(self) -> None:
        """Reads the replies of the steps sent so far: a parameter stepped ('1') has its state."""
        pending = self.__dict__.get("_pending")
        if not pending:
            return
        self._pending = []
        state = self._state_obj
        for s, p, params, keys, slots in pending:
            if not p.done:
                s._check_open()
                s._c.wait(p)  # a failed step's error is raised where pipelined errors are
            if p.error is not None or p.resp is None:
                continue  # a step that failed made no state
            text = p.resp.text
            for i, param in enumerate(params):
                if i < len(text) and text[i] == "1":
                    self._note_stepped(state[param], keys[i], slots[i])

    def _note_stepped(self, d: Dict[str, Any], keys: List[str], slots: Dict[str, Tensor]) -> None:
        """A parameter's state dict after a step in which it had a .grad: each kept state under
        its key, in torch's order (keys: the state keys of the options at that step)."""
        for k in keys:
            if k not in d or d[k] is None:
                d[k] = slots.get(k)

    def _state_keys(self, group: Dict[str, Any]) -> List[str]:
        """The state keys a parameter of this group has after a step, in torch's order."""
        raise NotImplementedError

    def _server_keys(self, group: Dict[str, Any]) -> List[str]:
        """Those of them the server keeps (OptimParam's fields)."""
        return self._state_keys(group)

    def _group_options(self, group: Dict[str, Any], msg: Any) -> None:
        """Fills an OptimGroup message with the group's options."""
        raise NotImplementedError

    def _slot(self, p: Tensor, key: str) -> Tensor:
        """The Tensor naming p's state `key` on the server (the state it has, or the handle its
        first step makes it under)."""
        d = self._state_obj.get(p)
        if d is not None and isinstance(d.get(key), Tensor):
            return d[key]
        slots = self._slots.setdefault(id(p), {})
        t = slots.get(key)
        if t is None:
            s = p._s
            t = Tensor(s, s._c.handle(), None, None)
            slots[key] = t
        return t

    def __getstate__(self) -> Dict[str, Any]:
        return {'defaults': self.defaults, 'state': self.state,
                'param_groups': self.param_groups}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state = dict(state)
        self._state_obj = state.pop('state')
        self.__dict__.update(state)
        self.__dict__.setdefault("_slots", {})
        self.__dict__.setdefault("_pending", [])
        self.defaults.setdefault('differentiable', False)

    def __repr__(self) -> str:
        format_string = self.__class__.__name__ + ' ('
        for i, group in enumerate(self.param_groups):
            format_string += '\n'
            format_string += 'Parameter Group {0}\n'.format(i)
            for key in sorted(group.keys()):
                if key != 'params':
                    format_string += '    {0}: {1}\n'.format(key, group[key])
        format_string += ')'
        return format_string

    # -- state_dict --
    def state_dict(self) -> Dict[str, Any]:
        r"""Returns the state of the optimizer as a :class:`dict`: 'state' (per parameter index)
        and 'param_groups' (each group's options, with 'params' as index lists)."""
        param_mappings: Dict[int, int] = {}
        start_index = 0

        def pack_group(group: Dict[str, Any]) -> Dict[str, Any]:
            nonlocal start_index
            packed = {k: v for k, v in group.items() if k != 'params'}
            param_mappings.update({id(p): i for i, p in enumerate(group['params'], start_index)
                                   if id(p) not in param_mappings})
            packed['params'] = [param_mappings[id(p)] for p in group['params']]
            start_index += len(packed['params'])
            return packed
        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {(param_mappings[id(k)] if isinstance(k, Tensor) else k): v
                        for k, v in self.state.items()}
        return {'state': packed_state, 'param_groups': param_groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        r"""Loads the optimizer state (an object returned by :meth:`state_dict`). Its tensors are
        copied on the server (cast to each parameter's dtype, 'step' as it is)."""
        self._merge()
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict['param_groups'])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of "
                             "parameter groups")
        param_lens = (len(g['params']) for g in groups)
        saved_lens = (len(g['params']) for g in saved_groups)
        if any(p_len != s_len for p_len, s_len in zip(param_lens, saved_lens)):
            raise ValueError("loaded state dict contains a parameter group "
                             "that doesn't match the size of optimizer's group")
        id_map = {old_id: p for old_id, p in
                  zip(chain.from_iterable((g['params'] for g in saved_groups)),
                      chain.from_iterable((g['params'] for g in groups)))}

        def cast(param: Tensor, value: Any, key: Optional[str] = None) -> Any:
            if isinstance(value, Tensor):
                value = value.clone()
                if key != "step" and param.is_floating_point() and value.dtype != param.dtype:
                    value = value.to(param.dtype)
                return value
            if hasattr(value, "tolist") and hasattr(value, "dtype") and hasattr(value, "shape"):
                # a tensor of another library (torch's): its values, on param's session
                from .. import _DTYPES
                dt = _DTYPES.get(str(value.dtype).split(".")[-1])
                value = param._s.tensor(value.tolist(), dtype=dt)
                if key != "step" and param.is_floating_point() and value.dtype != param.dtype:
                    value = value.to(param.dtype)
                return value
            if isinstance(value, dict):
                return {k: cast(param, v, key=k) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(cast(param, v) for v in value)
            return copy.deepcopy(value)

        state: Any = defaultdict(dict)
        for k, v in state_dict['state'].items():
            if k in id_map:
                param = id_map[k]
                state[param] = cast(param, v)
            else:
                state[k] = copy.deepcopy(v)

        def update_group(group: Dict[str, Any], new_group: Dict[str, Any]) -> Dict[str, Any]:
            new_group['params'] = group['params']
            return new_group
        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self._slots = {}  # states not in the loaded dict start afresh, as torch's would
        self.__setstate__({'state': state, 'param_groups': param_groups})

    # -- zero_grad and step --
    def _all_params(self) -> List[Tensor]:
        return [p for g in self.param_groups for p in g['params']]

    def zero_grad(self, set_to_none: bool = ZERO_GRAD_SET_TO_NONE) -> None:
        r"""Sets the gradients of all optimized Tensors to zero in place (torch 1.13's default)
        or to None (set_to_none): one request, not waited for."""
        zero_grads(self._all_params(), set_to_none)

    def step(self, closure: Any = None) -> Any:
        """Performs a single optimization step (one request, not waited for).

        Args:
            closure (Callable, optional): A closure that reevaluates the model
                and returns the loss.
        """
        loss = None
        params = self._all_params()
        if closure is not None:
            if params:
                with params[0]._s.enable_grad():
                    loss = closure()
            else:
                loss = closure()
        if not params:
            return loss
        s = params[0]._s
        from .. import _use
        _use(s, params)
        # the state tensors (momentum buffers, ...) change in place too: arrays the user took
        # of them (opt.state[p]['momentum_buffer'].numpy()) send their changes, then follow
        states: List[Tensor] = []
        if _numpy.shares_made:  # else no tensor has a shared array: nothing to walk
            states = [t for d in self._slots.values() for t in d.values()
                      if t._share is not None]
            states += [t for d in self._state_obj.values() if isinstance(d, dict)
                       for t in d.values() if isinstance(t, Tensor) and
                       (t._root if t._root is not None else t)._share is not None]
        if states:
            _use(s, states)
        req = pb.Request()
        m = req.optim_step
        m.algorithm = self._algorithm
        sent: List[Tensor] = []
        keys: List[List[str]] = []
        slots: List[Dict[str, Tensor]] = []
        for group in self.param_groups:
            gm = m.groups.add()
            self._group_options(group, gm)
            kept = self._state_keys(group)
            server_keys = self._server_keys(group)
            for p in group['params']:
                pm = gm.params.add()
                pm.param = p._h
                mine = {k: self._slot(p, k) for k in server_keys}
                for k, t in mine.items():
                    setattr(pm, k, t._h)
                sent.append(p)
                keys.append(kept)
                slots.append(mine)
        p = s._send(req, "optimizer.step")
        self._pending.append((s, p, sent, keys, slots))
        for q in params + states:
            r = q._root if q._root is not None else q
            if r._share is not None:  # a shared ndarray sees the update, as after any x.add_()
                _numpy.sync_out(r._share)
        return loss

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        r"""Add a param group to the :class:`Optimizer` s `param_groups`."""
        assert isinstance(param_group, dict), "param group must be a dict"
        params = param_group['params']
        if isinstance(params, Tensor):
            param_group['params'] = [params]
        elif isinstance(params, set):
            raise TypeError('optimizer parameters need to be organized in ordered collections, '
                            'but the ordering of tensors in sets will change between runs. '
                            'Please use a list instead.')
        else:
            param_group['params'] = list(params)

        for param in param_group['params']:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, "
                                "but one of the params is " + _typename(param))
        if not self.defaults.get('differentiable', None):
            self._check_leaves(param_group['params'])

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 "optimization parameter " + name)
            else:
                param_group.setdefault(name, default)

        params = param_group['params']
        if len(params) != len(set(params)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error; "
                          "see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        param_set = set()
        for group in self.param_groups:
            param_set.update(set(group['params']))
        if not param_set.isdisjoint(set(param_group['params'])):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    @staticmethod
    def _check_leaves(params: List[Tensor]) -> None:
        """torch's "can't optimize a non-leaf Tensor": nn.Parameters are leaves; the others are
        asked about in one pipelined round trip."""
        ask = [p for p in params if type(p).__name__ != "Parameter"]
        pending = []
        for p in ask:
            req = pb.Request()
            req.get.handle = p._h
            req.get.meta_only = True
            pending.append((p._s, p._s._send(req, "info")))
        for s, p in pending:
            if not s._wait(p).resp.tensor.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
