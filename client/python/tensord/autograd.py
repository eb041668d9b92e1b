"""tensord.autograd: torch.autograd over the wire.

- ``grad(outputs, inputs, grad_outputs, retain_graph, allow_unused)`` and
  ``backward(tensors, grad_tensors, retain_graph, inputs)``: one Backward request each (roots,
  their gradients, the inputs), run by the server's engine; grad's results are new tensors and
  no .grad changes.
- ``Function``: a custom differentiable function whose ``forward`` and ``backward`` are Python
  issuing ordinary ops. ``apply`` runs forward outside the graph, then the custom_function op
  gives its output a node on the server named ``<Class>Backward`` over the tensor inputs. When
  a backward reaches that node, the server suspends the walk and replies with the node's
  output gradient (Backward.custom, BackwardResult.suspended); this module runs the class's
  ``backward(ctx, grad)`` here, sends the input gradients (ResumeBackward), and repeats until
  the walk is done. If the Python backward raises, the walk is dropped on the server
  (ResumeBackward.abort) and the exception propagates from ``backward()``, as in torch. A
  backward whose graph holds a custom Function therefore waits for its reply (the others are
  pipelined as before); the contexts live while a tensor whose graph reaches them does.
- ``Variable`` (torch's deprecated alias), ``set_detect_anomaly`` / ``detect_anomaly``
  (accepted; the engine's errors already name the failing node), and the grad-mode switches.

Not supported: create_graph=True (gradients of gradients), a Function with more than one
tensor output or more than 7 tensor inputs, ``setup_context``-style Functions and
``torch.autograd.functional``.
"""
from __future__ import annotations

import itertools
import weakref
from typing import Any, List, Optional, Sequence

from . import tensord_pb2 as pb

__all__ = ["Function", "Variable", "backward", "grad", "set_detect_anomaly", "detect_anomaly",
           "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]

_ids = itertools.count(1)
_contexts: "weakref.WeakValueDictionary[int, FunctionCtx]" = weakref.WeakValueDictionary()
_anomaly = [False]


def _td() -> Any:
    import tensord
    return tensord


def no_grad() -> Any:
    return _td().no_grad()


def enable_grad() -> Any:
    return _td().enable_grad()


def set_grad_enabled(mode: Any) -> Any:
    return _td().set_grad_enabled(mode)


def is_grad_enabled() -> bool:
    return _td().is_grad_enabled()


class set_detect_anomaly:  # noqa: N801 - torch's name: a function and a context manager
    """torch.autograd.set_detect_anomaly(mode): accepted; tensord's backward errors already name
    the failing node and the tensor changed in place."""

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self.prev = _anomaly[0]
        _anomaly[0] = bool(mode)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        _anomaly[0] = self.prev
        return False


class detect_anomaly(set_detect_anomaly):  # noqa: N801
    def __init__(self, check_nan: bool = True) -> None:
        super().__init__(True, check_nan)


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Any:  # noqa: N802
    """torch.autograd.Variable(tensor, requires_grad=False): since torch 0.4 a plain tensor; a
    leaf sharing data's storage, requiring grad when asked."""
    t = data.detach()
    if requires_grad:
        t.requires_grad_(True)
    return t


class FunctionCtx:
    """The ``ctx`` a custom Function's forward and backward share."""

    def __init__(self, cls: type, args: Sequence[Any]):
        self._cls = cls
        self._args = tuple(args)
        self._saved: Optional[tuple] = ()
        self._needs: Optional[tuple] = None
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Any) -> None:
        self._saved = tuple(tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time or "
                "if you need to access saved tensors after calling backward.")
        return self._saved

    @property
    def needs_input_grad(self) -> tuple:
        if self._needs is None:
            T = _td().Tensor
            self._needs = tuple(isinstance(a, T) and bool(a.requires_grad) for a in self._args)
        return self._needs

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Any) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class Function:
    """torch.autograd.Function: subclass it with static ``forward(ctx, *args)`` and
    ``backward(ctx, *grad_outputs)``, call ``YourFunction.apply(*args)``."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode "
                                  "AD.")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        td = _td()
        T = td.Tensor
        tensors = [a for a in args if isinstance(a, T)]
        ctx = FunctionCtx(cls, args)
        s = tensors[0]._s if tensors else td._session()
        with s.no_grad():
            out = cls.forward(ctx, *args)
        if not s._grad_enabled or not tensors:
            return out
        if not isinstance(out, T):
            raise NotImplementedError("tensord: a custom Function's forward returns one tensor "
                                      "(got %s)" % type(out).__name__)
        if len(tensors) > 7:
            raise NotImplementedError("tensord: a custom Function takes at most 7 tensor inputs")
        fid = next(_ids)
        _contexts[fid] = ctx
        res = s._op("custom_function", [out] + tensors, function_name=cls.__name__ + "Backward",
                    function_id=fid)
        res._ctxs = (ctx,) + tuple(c for c in res._ctxs if c is not ctx)
        ctx._out_session = s
        return res


def _grads_for(ctx: FunctionCtx, result: Any) -> List[int]:
    """The handles of the input gradients a Function's backward returned (0: None), one per
    tensor input, after torch's checks of their number and kinds."""
    T = _td().Tensor
    grads = result if isinstance(result, tuple) else (result,)
    name = ctx._cls.__name__ + "Backward"
    if len(grads) != len(ctx._args):
        raise RuntimeError("function %s returned an incorrect number of gradients (expected %d, "
                           "got %d)" % (name, len(ctx._args), len(grads)))
    handles = []
    for i, (a, g) in enumerate(zip(ctx._args, grads)):
        if not isinstance(a, T):
            if g is not None:
                raise RuntimeError("function %s returned a gradient different than None at "
                                   "position %d, but the corresponding forward input was not a "
                                   "Variable" % (name, i + 1))
            continue
        if g is None:
            handles.append(0)
        elif isinstance(g, T):
            if g._s is not a._s:
                raise RuntimeError("function %s returned a gradient on another session" % name)
            handles.append(g._h)
        else:
            raise TypeError("function %s returned a gradient of type %s at position %d; expected "
                            "a Tensor or None" % (name, type(g).__name__, i + 1))
    return handles


def _drive(s: Any, req: Any) -> Any:
    """Sends a Backward that may stop at custom Functions and runs their backwards here until
    the walk is done; returns the final BackwardResult."""
    td = _td()
    req.backward.custom = True
    h = s._c.handle()
    req.backward.grad_output = h
    ran: List[FunctionCtx] = []
    resp = s._call(req, "backward")
    while resp.backward.suspended:
        r = resp.backward
        gout = td.Tensor(s, h, None)
        ctx = _contexts.get(r.function_id)
        try:
            if ctx is None:
                raise RuntimeError("the context of %s is gone" % r.grad_fn)
            ctx._needs = tuple(r.needs_input_grad) if ctx._needs is None and all(
                isinstance(a, td.Tensor) for a in ctx._args) else ctx._needs
            with s.no_grad():
                result = ctx._cls.backward(ctx, gout)
            handles = _grads_for(ctx, result)
        except BaseException:
            abort = pb.Request()
            abort.resume_backward.abort = True
            s._call(abort, "backward")
            raise
        ran.append(ctx)
        nxt = pb.Request()
        nxt.resume_backward.grads.extend(handles)
        h = s._c.handle()
        nxt.resume_backward.grad_output = h
        keep = result  # the gradients' tensors stay alive until the server has read them
        resp = s._call(nxt, "backward")
        del keep
    if not req.backward.retain_graph:
        for ctx in ran:
            ctx._saved = None
    return resp.backward


def _as_list(x: Any) -> list:
    if x is None:
        return []
    T = _td().Tensor
    return [x] if isinstance(x, T) else list(x)


def _request(outputs: list, grads: list, retain_graph: bool, inputs: list) -> Any:
    if not outputs:
        raise RuntimeError("grad requires at least one output" if inputs else
                           "backward requires at least one tensor")
    grads = grads + [None] * (len(outputs) - len(grads))
    if len(grads) != len(outputs):
        raise RuntimeError("grad_tensors and tensors differ in number")
    req = pb.Request()
    b = req.backward
    b.handle = outputs[0]._h
    b.gradient = grads[0]._h if grads[0] is not None else 0
    b.more_handles.extend(t._h for t in outputs[1:])
    if len(outputs) > 1:
        b.more_gradients.extend(g._h if g is not None else 0 for g in grads[1:])
    b.retain_graph = bool(retain_graph)
    b.inputs.extend(t._h for t in inputs)
    return req


def _session_of(tensors: list) -> Any:
    s = tensors[0]._s
    for t in tensors:
        if t._s is not s:
            raise RuntimeError("Expected all tensors to be on the same device, but found at "
                               "least two devices")
    return s


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: Any = None,
             create_graph: bool = False, grad_variables: Any = None, inputs: Any = None) -> None:
    """torch.autograd.backward: the gradients of tensors (with grad_tensors) accumulate into the
    leaves' .grad, or only into `inputs`'."""
    if create_graph:
        raise NotImplementedError("tensord: create_graph=True (gradients of gradients) is not "
                                  "supported")
    outs = _as_list(tensors)
    grads = _as_list(grad_tensors if grad_tensors is not None else grad_variables)
    ins = _as_list(inputs)
    if inputs is not None and not ins:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    if retain_graph is None:
        retain_graph = create_graph
    s = _session_of(outs + [g for g in grads if g is not None] + ins)
    req = _request(outs, grads, retain_graph, ins)
    from . import _ctxs_of, _numpy
    _numpy.sync_grads(s, False)
    if _ctxs_of(outs):
        _drive(s, req)
    else:
        s._send(req, "backward")
    for t in ins:
        t._grad_cache = None
    _numpy.sync_grads(s, True)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: Any = None,
         create_graph: bool = False, only_inputs: bool = True, allow_unused: bool = False,
         is_grads_batched: bool = False) -> tuple:
    """torch.autograd.grad: the gradients of outputs with respect to inputs, as new tensors
    (None for an input no path reaches, with allow_unused); no .grad changes."""
    if create_graph:
        raise NotImplementedError("tensord: create_graph=True (gradients of gradients) is not "
                                  "supported")
    if is_grads_batched:
        raise NotImplementedError("tensord: is_grads_batched is not supported")
    td = _td()
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    if not ins:
        raise RuntimeError("grad requires at least one input")
    grads = _as_list(grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    s = _session_of(outs + [g for g in grads if g is not None] + ins)
    req = _request(outs, grads, retain_graph, ins)
    req.backward.results_only = True
    req.backward.allow_unused = bool(allow_unused)
    handles = [s._c.handle() for _ in ins]
    req.backward.outs.extend(handles)
    from . import _ctxs_of
    if _ctxs_of(outs) or allow_unused:
        res = _drive(s, req)
        return tuple(td.Tensor(s, h, None) if d else None
                     for h, d in zip(handles, res.defined))
    p = s._send(req, "grad")
    return tuple(td.Tensor(s, h, p, _not_in_reply=True) for h in handles)

