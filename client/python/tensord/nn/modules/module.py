"""tensord.nn.Module: torch.nn.Module's registration, traversal, state_dict and repr.

Parameters and buffers are tensors on the server; everything this class does is client-side
bookkeeping (names, order, training flag, hooks), written to torch 1.13's behaviour and text.
Nothing on the training path waits for the server: __call__ runs forward (and any hooks) as
pipelined requests, and zero_grad() with set_to_none sends one request per parameter without
waiting. state_dict() and load_state_dict() follow torch's key order, dedup and error texts.
"""
from __future__ import annotations

import copy
import itertools
import warnings
import weakref
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import tensord as _td
from tensord import _legacy

from ..parameter import Parameter

__all__ = ["Module"]

_EXTRA_STATE_KEY_SUFFIX = "_extra_state"


def _typename(o: Any) -> str:
    """torch.typename: 'tensord.FloatTensor' for a tensor, the qualified class name else."""
    if isinstance(o, _td.Tensor):
        return o.type()
    module = getattr(type(o), "__module__", "") or ""
    name = type(o).__qualname__
    return name if module in ("builtins", "__builtin__", "") else module + "." + name


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """load_state_dict's result, as torch's (its repr when every key matched)."""

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s_: str, num_spaces: int) -> str:
    lines = s_.split("\n")
    if len(lines) == 1:
        return s_
    first = lines.pop(0)
    return first + "\n" + "\n".join((num_spaces * " ") + line for line in lines)


class RemovableHandle:
    """What register_*_hook returns: ``remove()`` takes the hook out again."""

    _next_id = 0

    def __init__(self, hooks_dict: Dict[int, Any]) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        d = self.hooks_dict_ref()
        if d is not None and self.id in d:
            del d[self.id]

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _forward_unimplemented(self: "Module", *input: Any) -> None:
    raise NotImplementedError('Module [%s] is missing the required "forward" function'
                              % type(self).__name__)


def _rebind(t: _td.Tensor, new: _td.Tensor) -> None:
    """Makes tensor object t name new's server tensor (torch's `param.data = new`): the
    object (and so every reference to it, an optimizer's included) stays the same."""
    if new is t:
        return
    t._fin()  # frees t's old handle with the next request
    new._fin.detach()
    t._h, t._p, t._meta, t._not_in_reply = new._h, new._p, new._meta, new._not_in_reply
    t._root = new._root
    t._grad_cache = None
    t._fin = weakref.finalize(t, t._s._dead.append, t._h)


class Module:
    """Base class for all neural network modules (torch.nn.Module)."""

    dump_patches: bool = False
    _version: int = 1
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_state_dict_hooks", OrderedDict())
        object.__setattr__(self, "_load_state_dict_pre_hooks", OrderedDict())
        object.__setattr__(self, "_load_state_dict_post_hooks", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    forward: Callable[..., Any] = _forward_unimplemented

    # -- registration --
    def _check_new_name(self, kind: str, store: str, name: Any) -> None:
        """torch's checks of the name of a new buffer or parameter (kind), which goes in the
        dict self.<store>; torch's words."""
        if store not in self.__dict__:
            raise AttributeError("cannot assign %s before Module.__init__() call" % kind)
        elif not isinstance(name, str):
            raise TypeError("%s name should be a string. Got %s" % (kind, _typename(name)))
        elif "." in name:
            raise KeyError("%s name can't contain \".\"" % kind)
        elif name == "":
            raise KeyError("%s name can't be empty string \"\"" % kind)
        elif hasattr(self, name) and name not in self.__dict__[store]:
            raise KeyError("attribute '%s' already exists" % name)

    def register_buffer(self, name: str, tensor: Optional[_td.Tensor],
                        persistent: bool = True) -> None:
        """Adds a buffer (state that is not a parameter, e.g. BatchNorm's running_mean);
        a non-persistent one is left out of state_dict."""
        self._check_new_name("buffer", "_buffers", name)
        if tensor is not None and not isinstance(tensor, _td.Tensor):
            raise TypeError("cannot assign '%s' object to buffer '%s' "
                            "(torch Tensor or None required)" % (_typename(tensor), name))
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Adds a parameter, reachable as an attribute by that name."""
        self._check_new_name("parameter", "_parameters", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError("cannot assign '%s' object to parameter '%s' "
                            "(torch.nn.Parameter or None required)" % (_typename(param), name))
        # a Parameter is a leaf by construction, so torch's non-leaf check cannot fire
        self._parameters[name] = param

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        """Adds a child module, reachable as an attribute by that name."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError("%s is not a Module subclass" % _typename(module))
        elif not isinstance(name, str):
            raise TypeError("module name should be a string. Got %s" % _typename(name))
        elif hasattr(self, name) and name not in self._modules:
            raise KeyError("attribute '%s' already exists" % name)
        elif "." in name:
            raise KeyError("module name can't contain \".\", got: %s" % name)
        elif name == "":
            raise KeyError("module name can't be empty string \"\"")
        self._modules[name] = module

    def register_module(self, name: str, module: Optional["Module"]) -> None:
        """Alias for add_module."""
        self.add_module(name, module)

    def get_submodule(self, target: str) -> "Module":
        """The submodule at a dotted path ('net.0')."""
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    def _get_at(self, target: str) -> Tuple["Module", str, Any]:
        """The attribute at a dotted path: (its module, its name, its value); torch's error when
        the module has no such attribute."""
        module_path, _, name = target.rpartition(".")
        mod = self.get_submodule(module_path)
        if not hasattr(mod, name):
            raise AttributeError(mod._get_name() + " has no attribute `" + name + "`")
        return mod, name, getattr(mod, name)

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at a dotted path ('net.0.weight')."""
        _, param_name, param = self._get_at(target)
        if not isinstance(param, Parameter):
            raise AttributeError("`" + param_name + "` is not an nn.Parameter")
        return param

    def get_buffer(self, target: str) -> _td.Tensor:
        """The buffer at a dotted path ('bn.running_mean')."""
        mod, buffer_name, buffer = self._get_at(target)
        if buffer_name not in mod._buffers:
            raise AttributeError("`" + buffer_name + "` is not a buffer")
        return buffer

    def get_extra_state(self) -> Any:
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never be "
                           "called. Please file an issue at https://github.com/pytorch/pytorch/"
                           "issues/new?template=bug-report.yml to report this bug.")

    def set_extra_state(self, state: Any) -> None:
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never be "
                           "called. Please file an issue at https://github.com/pytorch/pytorch/"
                           "issues/new?template=bug-report.yml to report this bug.")

    # -- attributes --
    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if "_parameters" in d and name in d["_parameters"]:
            return d["_parameters"][name]
        if "_buffers" in d and name in d["_buffers"]:
            return d["_buffers"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, name))

    def __setattr__(self, name: str, value: Any) -> None:
        def remove_from(*dicts_or_sets: Any) -> None:
            for d in dicts_or_sets:
                if name in d:
                    if isinstance(d, dict):
                        del d[name]
                    else:
                        d.discard(name)

        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            remove_from(self.__dict__, self._buffers, self._modules,
                        self._non_persistent_buffers_set)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError("cannot assign '%s' as parameter '%s' "
                                "(torch.nn.Parameter or None expected)"
                                % (_typename(value), name))
            self.register_parameter(name, value)
        else:
            modules = self.__dict__.get("_modules")
            if isinstance(value, Module):
                if modules is None:
                    raise AttributeError("cannot assign module before Module.__init__() call")
                remove_from(self.__dict__, self._parameters, self._buffers,
                            self._non_persistent_buffers_set)
                modules[name] = value
            elif modules is not None and name in modules:
                if value is not None:
                    raise TypeError("cannot assign '%s' as child module '%s' "
                                    "(torch.nn.Module or None expected)"
                                    % (_typename(value), name))
                modules[name] = value
            else:
                buffers = self.__dict__.get("_buffers")
                if buffers is not None and name in buffers:
                    if value is not None and not isinstance(value, _td.Tensor):
                        raise TypeError("cannot assign '%s' as buffer '%s' "
                                        "(torch.Tensor or None expected)"
                                        % (_typename(value), name))
                    buffers[name] = value
                else:
                    object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self) -> List[str]:
        keys = (dir(self.__class__) + list(self.__dict__.keys()) + list(self._parameters.keys())
                + list(self._modules.keys()) + list(self._buffers.keys()))
        return sorted(k for k in keys if not k[0].isdigit())

    def __deepcopy__(self, memo: Dict[int, Any]) -> "Module":
        """copy.deepcopy(module): the same tree with copies of every parameter, buffer and
        tensor attribute (new tensors on the server), as torch's."""
        plain = [v for v in self.__dict__.values() if isinstance(v, _td.Tensor)]
        for t in itertools.chain(self.parameters(), self.buffers(), plain):
            if id(t) not in memo:
                if isinstance(t, Parameter):
                    memo[id(t)] = copy.deepcopy(t, memo)
                else:
                    c = t.detach().clone()
                    c._meta = t._meta
                    memo[id(t)] = c
        cls = self.__class__
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            object.__setattr__(new, k, copy.deepcopy(v, memo))
        return new

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- calling --
    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """hook(module, input) runs before forward; a non-None result replaces the input."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """hook(module, input, output) runs after forward; a non-None result replaces the
        output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def _call_impl(self, *input: Any, **kwargs: Any) -> Any:
        if not (self._forward_hooks or self._forward_pre_hooks or _global_forward_hooks
                or _global_forward_pre_hooks):
            return self.forward(*input, **kwargs)
        for hook in itertools.chain(_global_forward_pre_hooks.values(),
                                    self._forward_pre_hooks.values()):
            result = hook(self, input)
            if result is not None:
                input = result if isinstance(result, tuple) else (result,)
        result = self.forward(*input, **kwargs)
        for hook in itertools.chain(_global_forward_hooks.values(),
                                    self._forward_hooks.values()):
            hook_result = hook(self, input, result)
            if hook_result is not None:
                result = hook_result
        return result

    __call__: Callable[..., Any] = _call_impl

    # -- traversal --
    def _named_members(self, get_members_fn: Callable[["Module"], Any], prefix: str = "",
                       recurse: bool = True) -> Iterator[Tuple[str, Any]]:
        memo: Set[Any] = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for k, v in get_members_fn(module):
                if v is None or v in memo:
                    continue
                memo.add(v)
                yield module_prefix + ("." if module_prefix else "") + k, v

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The module's parameters (and its submodules' when recurse), each once."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[Tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, each parameter once."""
        return self._named_members(lambda m: m._parameters.items(), prefix=prefix,
                                   recurse=recurse)

    def buffers(self, recurse: bool = True) -> Iterator[_td.Tensor]:
        """The module's buffers (and its submodules' when recurse), each once."""
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[Tuple[str, _td.Tensor]]:
        """(dotted name, buffer) pairs, each buffer once."""
        return self._named_members(lambda m: m._buffers.items(), prefix=prefix, recurse=recurse)

    def children(self) -> Iterator["Module"]:
        """The immediate submodules, each once."""
        for _, module in self.named_children():
            yield module

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        """(name, module) of the immediate submodules, each once."""
        memo: Set[Module] = set()
        for name, module in self._modules.items():
            if module is not None and module not in memo:
                memo.add(module)
                yield name, module

    def modules(self) -> Iterator["Module"]:
        """This module and every submodule, each once."""
        for _, module in self.named_modules():
            yield module

    def named_modules(self, memo: Optional[Set["Module"]] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, "Module"]]:
        """(dotted name, module) of this module ('' or prefix) and every submodule."""
        if memo is None:
            memo = set()
        if self not in memo:
            if remove_duplicate:
                memo.add(self)
            yield prefix, self
            for name, module in self._modules.items():
                if module is None:
                    continue
                submodule_prefix = prefix + ("." if prefix else "") + name
                for m in module.named_modules(memo, submodule_prefix, remove_duplicate):
                    yield m

    # -- modes and gradients --
    def train(self, mode: bool = True) -> "Module":
        """Sets training mode (Dropout, BatchNorm) here and in every submodule."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> "Module":
        """train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Sets requires_grad on every parameter (pipelined)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zeroes every parameter's gradient in place (torch 1.13's default), or sets it to None
        (set_to_none): one request per session, not waited for."""
        from ...optim.optimizer import zero_grads
        by_session: dict = {}
        for p in self.parameters():
            by_session.setdefault(id(p._s), []).append(p)
        for params in by_session.values():
            zero_grads(params, set_to_none)

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Calls fn on every submodule (children first), then on this module."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- conversion --
    def _apply(self, fn: Callable[[_td.Tensor], _td.Tensor]) -> "Module":
        for module in self.children():
            module._apply(fn)
        for key, param in self._parameters.items():
            if param is None:
                continue
            with param._s.no_grad():
                new = fn(param)
            if new is not param:
                _rebind(param, new)
                if getattr(param, "_rg", True):
                    _td.Tensor.requires_grad_(param, True)
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = fn(buf)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Module":
        """to(device), to(dtype), to(device, dtype), to(tensor): floating-point parameters and
        buffers take the dtype in place (the Parameter objects stay the same); the device is
        checked (the server is the one device)."""
        dt = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError("to() received an invalid combination of arguments - got %s"
                            % ", ".join(kwargs))
        rest = list(args)
        if rest and isinstance(rest[0], _td.Tensor):
            dt = rest.pop(0).dtype
        elif rest and _legacy._is_device(rest[0]) and not isinstance(rest[0], _td.dtype):
            dev = rest.pop(0)
        if rest and isinstance(rest[0], (_td.dtype, str)) and dt is None:
            dt = _legacy._dtype_of(rest.pop(0))
        elif isinstance(dt, str):
            dt = _legacy._dtype_of(dt)
        _legacy._check_device(dev)
        if dt is not None and not dt.is_floating_point:
            raise TypeError("nn.Module.to only accepts floating point or complex dtypes, but "
                            "got desired dtype=%s" % dt)
        if dt is None:
            return self

        def convert(t: _td.Tensor) -> _td.Tensor:
            return t.to(dt) if t.is_floating_point() else t
        return self._apply(convert)

    def cpu(self) -> "Module":
        """The module itself: its tensors are on the server, the one device."""
        return self

    def type(self, dst_type: Any) -> "Module":
        """Casts every parameter and buffer to dst_type."""
        dt = _legacy._dtype_of(dst_type)
        return self._apply(lambda t: t.to(dt))

    def float(self) -> "Module":
        """Floating-point parameters and buffers to float32."""
        return self._apply(lambda t: t.to(_td.float32) if t.is_floating_point() else t)

    def double(self) -> "Module":
        """Floating-point parameters and buffers to float64."""
        return self._apply(lambda t: t.to(_td.float64) if t.is_floating_point() else t)

    def cuda(self, device: Any = None) -> "Module":
        raise AssertionError(_legacy._CUDA_ERROR)

    def share_memory(self) -> "Module":
        return self

    # -- state --
    def _save_to_state_dict(self, destination: Dict[str, Any], prefix: str,
                            keep_vars: bool) -> None:
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
        if getattr(self.__class__, "get_extra_state",
                   Module.get_extra_state) is not Module.get_extra_state:
            destination[prefix + _EXTRA_STATE_KEY_SUFFIX] = self.get_extra_state()

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "",
                   keep_vars: bool = False) -> Dict[str, Any]:
        """An OrderedDict of every parameter and persistent buffer by dotted name (detached,
        unless keep_vars), in torch's order; `_metadata` holds each module's version."""
        if len(args) > 0:
            if destination is None:
                destination = args[0]
            if len(args) > 1 and prefix == "":
                prefix = args[1]
            if len(args) > 2 and keep_vars is False:
                keep_vars = args[2]
            warnings.warn("Positional args are being deprecated, use kwargs instead. Refer to "
                          "https://pytorch.org/docs/master/generated/torch.nn.Module.html#torch"
                          ".nn.Module.state_dict for details.")
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()  # type: ignore[attr-defined]
        local_metadata = dict(version=self._version)
        if hasattr(destination, "_metadata"):
            destination._metadata[prefix[:-1]] = local_metadata
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        for hook in self._state_dict_hooks.values():
            hook_result = hook(self, destination, prefix, local_metadata)
            if hook_result is not None:
                destination = hook_result
        return destination

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str,
                              local_metadata: Dict[str, Any], strict: bool,
                              missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        for hook in self._load_state_dict_pre_hooks.values():
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                 error_msgs)
        persistent_buffers = {k: v for k, v in self._buffers.items()
                              if k not in self._non_persistent_buffers_set}
        local_state = {k: v for k, v in itertools.chain(self._parameters.items(),
                                                       persistent_buffers.items())
                       if v is not None}
        for name, param in local_state.items():
            key = prefix + name
            if key in state_dict:
                input_param = _as_tensor(state_dict[key], param)
                if not isinstance(input_param, _td.Tensor):
                    error_msgs.append('While copying the parameter named "%s", expected '
                                      'torch.Tensor or Tensor-like object from checkpoint but '
                                      'received %s' % (key, type(input_param)))
                    continue
                if len(param.shape) == 0 and len(input_param.shape) == 1:
                    input_param = input_param[0]
                if tuple(input_param.shape) != tuple(param.shape):
                    error_msgs.append("size mismatch for %s: copying a param with shape %s "
                                      "from checkpoint, the shape in current model is %s."
                                      % (key, input_param.shape, param.shape))
                    continue
                try:
                    with param._s.no_grad():
                        param.copy_(input_param)
                except Exception as ex:  # noqa: BLE001 - torch reports any copy failure
                    error_msgs.append('While copying the parameter named "%s", whose dimensions '
                                      'in the model are %s and whose dimensions in the '
                                      'checkpoint are %s, an exception occurred : %s.'
                                      % (key, param.size(), input_param.size(), ex.args))
            elif strict:
                missing_keys.append(key)
        extra_state_key = prefix + _EXTRA_STATE_KEY_SUFFIX
        if getattr(self.__class__, "set_extra_state",
                   Module.set_extra_state) is not Module.set_extra_state:
            if extra_state_key in state_dict:
                self.set_extra_state(state_dict[extra_state_key])
            elif strict:
                missing_keys.append(extra_state_key)
        elif strict and (extra_state_key in state_dict):
            unexpected_keys.append(extra_state_key)
        if strict:
            for key in state_dict.keys():
                if key.startswith(prefix) and key != extra_state_key:
                    input_name = key[len(prefix):].split(".", 1)[0]
                    if input_name not in self._modules and input_name not in local_state:
                        unexpected_keys.append(key)

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> _IncompatibleKeys:
        """Copies parameters and buffers from state_dict (tensord tensors, or torch tensors,
        which are uploaded) into this module; with strict, missing and unexpected keys are an
        error with torch's text. Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError("Expected state_dict to be dict-like, got %s." % type(state_dict))
        missing_keys: List[str] = []
        unexpected_keys: List[str] = []
        error_msgs: List[str] = []
        metadata = getattr(state_dict, "_metadata", None)
        state_dict = OrderedDict(state_dict)
        if metadata is not None:
            state_dict._metadata = metadata  # type: ignore[attr-defined]

        def load(module: Module, local_state_dict: Dict[str, Any], prefix: str = "") -> None:
            local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
            module._load_from_state_dict(local_state_dict, prefix, local_metadata, True,
                                         missing_keys, unexpected_keys, error_msgs)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    child_state_dict = {k: v for k, v in local_state_dict.items()
                                        if k.startswith(child_prefix)}
                    load(child, child_state_dict, child_prefix)
            incompatible_keys = _IncompatibleKeys(missing_keys, unexpected_keys)
            for hook in module._load_state_dict_post_hooks.values():
                out = hook(module, incompatible_keys)
                assert out is None, (
                    "Hooks registered with ``register_load_state_dict_post_hook`` are not"
                    "expected to return new values, if incompatible_keys need to be modified,"
                    "it should be done inplace.")

        load(self, state_dict)
        if strict:
            if len(unexpected_keys) > 0:
                error_msgs.insert(0, "Unexpected key(s) in state_dict: %s. " % ", ".join(
                    '"%s"' % k for k in unexpected_keys))
            if len(missing_keys) > 0:
                error_msgs.insert(0, "Missing key(s) in state_dict: %s. " % ", ".join(
                    '"%s"' % k for k in missing_keys))
        if len(error_msgs) > 0:
            raise RuntimeError("Error(s) in loading state_dict for %s:\n\t%s"
                               % (self.__class__.__name__, "\n\t".join(error_msgs)))
        return _IncompatibleKeys(missing_keys, unexpected_keys)

    def register_load_state_dict_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """hook(module, incompatible_keys) runs after this module's keys are loaded."""
        handle = RemovableHandle(self._load_state_dict_post_hooks)
        self._load_state_dict_post_hooks[handle.id] = hook
        return handle

    def _register_state_dict_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        handle = RemovableHandle(self._state_dict_hooks)
        self._state_dict_hooks[handle.id] = hook
        return handle

    def _register_load_state_dict_pre_hook(self, hook: Callable[..., Any],
                                           with_module: bool = False) -> RemovableHandle:
        handle = RemovableHandle(self._load_state_dict_pre_hooks)
        if with_module:
            module = self

            def bound(*args: Any) -> Any:
                return hook(module, *args)
            self._load_state_dict_pre_hooks[handle.id] = bound
        else:
            self._load_state_dict_pre_hooks[handle.id] = hook
        return handle

    # -- text --
    def _get_name(self) -> str:
        return self.__class__.__name__

    def extra_repr(self) -> str:
        """This module's own line in repr (a layer's arguments); '' by default."""
        return ""

    def __repr__(self) -> str:
        extra_lines: List[str] = []
        extra_repr = self.extra_repr()
        if extra_repr:
            extra_lines = extra_repr.split("\n")
        child_lines = []
        for key, module in self._modules.items():
            mod_str = _addindent(repr(module), 2)
            child_lines.append("(" + key + "): " + mod_str)
        lines = extra_lines + child_lines
        main_str = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main_str += extra_lines[0]
            else:
                main_str += "\n  " + "\n  ".join(lines) + "\n"
        return main_str + ")"


def _as_tensor(value: Any, like: _td.Tensor) -> Any:
    """A checkpoint value as a tensor of like's session: a torch tensor (anything with
    detach() and numpy()) is uploaded; anything else is returned as it is."""
    if isinstance(value, _td.Tensor) or not (hasattr(value, "numpy") and
                                             hasattr(value, "detach")):
        return value
    return like._s.from_numpy(value.detach().cpu().numpy().copy())


_global_forward_pre_hooks: Dict[int, Callable[..., Any]] = OrderedDict()
_global_forward_hooks: Dict[int, Callable[..., Any]] = OrderedDict()


def register_module_forward_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """A forward pre-hook for every module."""
    handle = RemovableHandle(_global_forward_pre_hooks)
    _global_forward_pre_hooks[handle.id] = hook
    return handle


def register_module_forward_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """A forward hook for every module."""
    handle = RemovableHandle(_global_forward_hooks)
    _global_forward_hooks[handle.id] = hook
    return handle
