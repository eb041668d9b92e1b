"""tensord: PyTorch's tensor API, with the tensors living on a tensord server.

``import tensord as torch`` runs PyTorch tensor code against the daemon at ``TENSORD_ADDR``
(default 127.0.0.1:7878): module-level functions use a default session opened on first use.
Values, dtypes, shapes, printed text and errors are the server's, which follows PyTorch.

Requests are pipelined: an op that makes a tensor returns at once, and the client waits only where
a value is needed (``item``, ``tolist``, ``numpy``, printing, ``.grad``). An error from a pipelined
op is raised at the next such point as a ``TensorError`` naming the op and the line that issued
it; ``connect(..., sync=True)`` raises every error at its own line instead.

Every op comes from server/core/ops.def, through the generated module ``tensord._ops``: its
Tensor method (``x.exp()``, ``x.add_(5)``), its function (``tensord.exp(x)``) and its Session
method bind their arguments to the op's torch signature there (positional or keyword, torch's
defaults, ``*size``), so an op added to ops.def is here with no change to this package.

``from_numpy()`` and ``numpy()`` share values as torch's do: the client keeps the array and the
tensor in step (see _numpy for the rule and its cost). Differences from PyTorch: ``torch.Size``
prints as ``tensord.Size``. numpy is optional: only ``numpy()``/``from_numpy()`` need it.

The per-request work of the common ops and reads runs in C when the extension ``tensord._fast``
is built (``make``, or ``pip install`` with a C compiler and Python's headers): then
``tensord._conn.FAST`` is True. Without it, or with ``TENSORD_PURE_PYTHON=1`` in the
environment, the same requests go through protobuf's Python API; behaviour and the bytes sent
are the same either way.
"""
from __future__ import annotations

import builtins
import functools
import inspect
import math
import numbers
import os
import struct
import sys
import warnings
import weakref
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import _conn, _legacy, _names, _numpy, _ops
from ._conn import H, ServerError, np

pb = _conn.pb

__all__ = ["Session", "Tensor", "Size", "dtype", "connect", "tensor", "from_numpy", "zeros",
           "ones", "full", "rand", "randn", "arange", "manual_seed", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "TensorError", "float32", "float64", "int32",
           "int64", "bool"]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
CHUNK_BYTES = 8 << 20       # tensors larger than this move in chunks of this size
_POOL_MIN = 1 << 20         # numpy() results this large take pooled memory (tensord._pool)
_BIG_DATA = 1 << 20         # a request carrying this much data sends the frees before it
# .grad of a tensor of at most this many elements also asks for the gradient's values, in the
# same write as the Grad request: `x.grad.item()` is then one round trip (see Tensor.grad)
PREFETCH_NUMEL = 16
_MAX_FREE_FIRST = 4096      # the server refuses a request whose free_first lists more


class TensorError(ServerError, RuntimeError):
    """An error reply for one request: ``message`` is the server's (PyTorch's) wording, ``op``
    the failing operation and ``where`` the ``file:line`` that issued it."""

    def __init__(self, code: int, message: str, op: str = "", where: str = ""):
        ServerError.__init__(self, code, message)
        self.op = op
        self.where = where
        self.args = (self.__str__(),)

    def __str__(self) -> str:
        if self.op and self.where:
            return "%s (%s, issued at %s)" % (self.message, self.op, self.where)
        return self.message


class TensorIndexError(TensorError, IndexError):
    """A dimension or index out of range: torch raises IndexError for these."""


def _drop_reply(p: _conn.Pending) -> None:
    """on_done of a reply nobody waits for (Tensor.grad's Get): its error is not raised."""


def _error(p: _conn.Pending) -> TensorError:
    e = p.error
    tag = p.tag if p.tag else ("", "")
    op = tag[0]
    # the fast path's tag is (what, code, lasti): its file:line made only now
    where = tag[1] if len(tag) == 2 else _conn._fast.where(tag[1], tag[2])
    # the messages torch raises as IndexError
    cls = TensorIndexError if ("out of range" in e.message or "out of bounds" in e.message or
                               "Index is supposed to be a vector" in e.message) else TensorError
    return cls(e.code, _names.text(e.message), op, where)


def _ctxs_of(inputs: Sequence[Any]) -> tuple:
    """The custom Function contexts the inputs' graphs reach (usually none)."""
    c: tuple = ()
    for x in inputs:
        xc = _ctxs_of(x) if isinstance(x, (list, tuple)) else getattr(x, "_ctxs", ())
        if xc:
            c = xc if not c else c + tuple(y for y in xc if y not in c)
    return c


def _caller() -> str:
    """file:line of the first frame outside this package: the user's line."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PKG_DIR):
        f = f.f_back
    return "%s:%d" % (f.f_code.co_filename, f.f_lineno) if f is not None else "?"


class dtype:  # noqa: N801 - torch's name
    """A tensor element type; ``tensord.float32`` prints as ``tensord.float32``."""

    def __init__(self, name: str, is_floating_point: builtins.bool):
        self.name = name
        self.is_floating_point = is_floating_point
        self.itemsize = _conn.ITEMSIZE[name]

    def __repr__(self) -> str:
        return _names.name(self.name)


float32 = dtype("float32", True)
float64 = dtype("float64", True)
int32 = dtype("int32", False)
int64 = dtype("int64", False)
bool = dtype("bool", False)  # noqa: A001 - torch.bool
float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001
_DTYPES = {d.name: d for d in (float32, float64, int32, int64, bool)}
_WIRE_DTYPES = {_conn.DTYPE_WIRE[k]: v for k, v in _DTYPES.items()}


class Size(tuple):
    """A tensor's shape: a tuple that prints as ``tensord.Size([2, 3])``."""

    def __repr__(self) -> str:
        return _names.name("Size(%s)" % list(self))

    def numel(self) -> builtins.int:
        """The number of elements a tensor of this shape holds."""
        n = 1
        for d in self:
            n *= d
        return n


class Node:
    """An autograd graph node, as ``x.grad_fn`` gives it: the server keeps the graph, so this
    carries only the node's name. Its class is named after the node (``MulBackward0``), so
    ``type(x.grad_fn).__name__`` and the repr read as torch's."""

    def name(self) -> str:
        """The node's name, as torch's ``grad_fn.name()``: 'MulBackward0'."""
        return type(self).__name__

    def __repr__(self) -> str:
        return "<%s object at %#x>" % (type(self).__name__, id(self))


_NODE_TYPES: dict = {}


def _node_type(name: str) -> type:
    cls = _NODE_TYPES.get(name)
    if cls is None:
        cls = _NODE_TYPES[name] = type(name, (Node,), {"__doc__": Node.__doc__})
    return cls


class return_types:  # noqa: N801 - torch's name
    """Named pairs returned by max/min with a dim, as torch.return_types."""

    class _Pair(tuple):
        _name = ""

        def __new__(cls, values: "Tensor", indices: "Tensor"):
            return tuple.__new__(cls, (values, indices))

        @property
        def values(self) -> "Tensor":
            return self[0]

        @property
        def indices(self) -> "Tensor":
            return self[1]

        def __repr__(self) -> str:
            return _names.name("return_types.%s(\nvalues=%r,\nindices=%r)" % (
                self._name, self[0], self[1]))

    class max(_Pair):  # noqa: N801
        _name = "max"

    class min(_Pair):  # noqa: N801
        _name = "min"

    @classmethod
    def _of(cls, name: str) -> type:
        """The (values, indices) pair type torch returns from op `name` (sort, topk, ...)."""
        t = vars(cls).get(name)
        if t is None:
            t = type(name, (cls._Pair,), {"_name": name, "__module__": cls.__module__,
                                          "__qualname__": "return_types." + name})
            setattr(cls, name, t)
        return t


# -- converting Python data without numpy --
def _flatten(data: Any) -> Tuple[List[Any], List[builtins.int]]:
    """Nested sequences -> (flat values, shape), refusing ragged input as torch does."""
    if isinstance(data, (list, tuple)):
        if not data:
            return [], [0]
        parts = [_flatten(x) for x in data]
        inner = parts[0][1]
        for i, (_, s) in enumerate(parts):
            if s != inner:
                raise ValueError("expected sequence of length %d at dim %d (got %d)"
                                 % (inner[0] if inner else 0, 1,
                                    s[0] if s else 0))
        flat: List[Any] = []
        for f, _ in parts:
            flat.extend(f)
        return flat, [len(data)] + inner
    if isinstance(data, Tensor):
        return data.reshape(-1).tolist(), list(data.shape)
    return [data], []


def _infer(flat: Sequence[Any]) -> str:
    """torch.tensor's dtype inference: all bools -> bool, all ints -> int64, else float32."""
    if flat and all(isinstance(x, builtins.bool) or (np is not None and isinstance(x, np.bool_))
                    for x in flat):
        return "bool"
    if all(isinstance(x, (builtins.int,)) or (np is not None and isinstance(x, np.integer))
           for x in flat) and flat:
        return "int64"
    return "float32"


def _pack(flat: Sequence[Any], name: str) -> bytes:
    code = _conn.STRUCT_CODE[name]
    if name in ("float32", "float64"):
        vals = [builtins.float(x) for x in flat]
    elif name == "bool":
        vals = [builtins.bool(x) for x in flat]
    else:
        vals = [builtins.int(x) for x in flat]
    try:
        return struct.pack("<%d%s" % (len(vals), code), *vals)
    except OverflowError:
        if name != "float32":
            raise
    # A finite float beyond float32's range becomes +-inf, as C's conversion and torch do;
    # struct's "f" refuses it.
    return b"".join(_pack_f32(v) for v in vals)


def _pack_f32(v: builtins.float) -> bytes:
    try:
        return struct.pack("<f", v)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, v))


def _nest(flat: List[Any], shape: Sequence[builtins.int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _need_numpy(what: str) -> None:
    if np is None:
        raise ImportError("%s needs numpy, which is not installed" % what)


class _Progress:
    """A one-line progress bar on stderr for chunked transfers."""

    def __init__(self, what: str, total: builtins.int, enabled: Any):
        self.what, self.total, self.done = what, total, 0
        self.enabled = builtins.bool(enabled)

    def add(self, n: builtins.int) -> None:
        self.done += n
        if self.enabled:
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * builtins.int(frac * 30)
            sys.stderr.write("\r%s [%-30s] %3d%% %d/%d MiB" % (
                self.what, bar, frac * 100, self.done >> 20, self.total >> 20))
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _module_function(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a Session method that is also a module function (tensord.zeros), which runs it
    on the default session."""
    method._module_function = True  # type: ignore[attr-defined]
    return method


def _factory(method: Callable[..., Any]) -> Callable[..., Any]:
    """A module function that makes a tensor (tensord.zeros), taking torch's device= too: the
    server's memory is the one device ("cpu"); a CUDA device is refused with torch's error."""
    @functools.wraps(method)
    def factory(self: Any, *args: Any, device: Any = None, **kw: Any) -> Any:
        if device is not None:
            _legacy._check_device(device)
        return method(self, *args, **kw)
    return _module_function(factory)


_SESSIONS = 0  # sessions opened so far by this process

# What a Tensor's operators take besides tensors (else NotImplemented, as torch's): numbers,
# numpy's scalars and arrays; @ takes no number (_ARRAY_TYPES only).
_ARRAY_TYPES: Tuple[type, ...] = (np.ndarray,) if np is not None else ()
_OPERAND_TYPES: Tuple[type, ...] = (numbers.Number,) + (
    (np.bool_, np.generic, np.ndarray) if np is not None else ())


def _use(s: "Session", inputs: Sequence[Any]) -> None:
    """Before an op reads inputs: each must belong to session s (torch's device-mismatch error
    otherwise: a handle means nothing in another session), and a tensor with a shared ndarray
    takes the array's changes first (_numpy)."""
    done = None  # the storages synchronised already (t * t compares once)
    for x in inputs:
        if isinstance(x, Tensor):
            if x._s is not s:
                # torch's words for operands on two devices; each session is a device here
                raise TensorError(pb.INVALID_ARGUMENT, "Expected all tensors to be on the same "
                                  "device, but found at least two devices, cpu (session %d) "
                                  "and cpu (session %d)!" % (x._s._number, s._number))
            r = x._root if x._root is not None else x
            if r._share is not None and (done is None or not any(r is d for d in done)):
                _numpy.sync_in(r._share)
                if not r._share.entries:
                    r._share = None  # every array was dropped: nothing more to compare
                done = [r] if done is None else done + [r]


class Session:
    """One connection and its server-side session; also a context manager that closes it.

    ``addr`` is "host:port", "[v6]:port" or "unix:/path", a comma-separated list of them, or
    "dns:NAME:PORT" (default ``TENSORD_ADDR`` or 127.0.0.1:7878): a new session goes to the next
    node of the list with room, a resume to the node that owns the session (docs/DESIGN.md,
    "Many daemons"); ``token`` the auth token (default ``TENSORD_TOKEN``); ``resume`` a
    session token from ``Session.token`` (bytes or str) to continue that session;
    ``sync=True`` waits for every reply, so errors are raised at the line that caused them;
    ``progress=True`` shows a progress bar for chunked transfers of large tensors.
    """

    def __init__(self, addr: Optional[str] = None, token: Optional[str] = None,
                 resume: Any = None, sync: Any = False, progress: Any = False):
        addr = addr or os.environ.get("TENSORD_ADDR", "127.0.0.1:7878")
        token = token if token is not None else os.environ.get("TENSORD_TOKEN", "")
        try:
            self._c = _conn.Conn(addr=addr, token=token, resume=resume or b"")
        except ServerError as e:
            raise TensorError(e.code, e.message) from None
        self._dead: List[builtins.int] = []  # handles of collected tensors, freed in a batch
        self._errors: List[_conn.Pending] = []  # failed replies not yet raised
        self._c.error_sink = self._errors  # where the fast path's failed replies go
        self.sync = sync
        self.progress = progress
        self._closed = False
        # torch's grad mode, mirrored here so is_grad_enabled() and nested no_grad() blocks
        # need no round trip; the server's switch is set from it (and is per session, so it
        # survives a reconnect).
        self._grad_enabled = True
        global _SESSIONS
        _SESSIONS += 1
        self._number = _SESSIONS  # names the session in the device-mismatch error

    @property
    def token(self) -> bytes:
        """The session token, ASCII ``b"<node id>.<32 hex>"`` (16 raw bytes for a session from
        before scale-out): pass it as ``resume=`` to continue this session later."""
        return self._c.token

    @property
    def node(self) -> str:
        """The id of the node (daemon) that owns the session; "" if the server names none."""
        return self._c.node

    def close(self) -> None:
        """Frees every tensor of the session on the server and closes the connection."""
        if self._closed:
            return
        self._closed = True
        req = pb.Request()
        req.close_session.SetInParent()
        try:
            self._c.call(req)
        finally:
            self._c.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing --
    def _check_open(self) -> None:
        if self._closed:
            # The connection is gone too: without this the socket layer fails with a TypeError
            # about fileno() that says nothing of the cause.
            raise TensorError(pb.NO_SESSION, "session is closed")

    def _send(self, req: Any, what: str, data: Any = b"", replay: Any = None,
              into: Any = None, sync: Any = None) -> _conn.Pending:
        """Queues req (no wait, unless sync, default self.sync, says to wait for its reply)."""
        self._check_open()
        if self._dead:
            # The list stays the same object: finalizers hold its append method.
            n = len(self._dead)
            dead = self._dead[:n]
            del self._dead[:n]
            big = len(data) >= _BIG_DATA if not isinstance(data, memoryview) \
                else data.nbytes >= _BIG_DATA
            # free_first runs after the server has allocated the request's data section: with a
            # large one, a Free of its own ahead of it lets the server reuse the freed memory
            if self._c.version >= 2 and len(dead) <= _MAX_FREE_FIRST and not big:
                req.free_first.extend(dead)  # freed just before req runs: no request of their own
            else:
                free = pb.Request()
                free.free.handles.extend(dead)
                self._c.send(free)
        p = self._c.send(req, data, replay, into)
        p.tag = (what, _caller())
        p.on_done = self._note
        if self.sync if sync is None else sync:
            self._wait(p)
        return p

    def _note(self, p: _conn.Pending) -> None:
        if p.error is not None:
            self._errors.append(p)

    def _wait(self, p: _conn.Pending) -> _conn.Pending:
        """A blocking point: p's reply, and any earlier pipelined error, raised here."""
        if not p.done:
            self._check_open()
        self._c.wait(p)
        self._raise_pending()
        if p.error is not None:
            raise _error(p)
        return p

    def _raise_pending(self) -> None:
        if self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise _error(first)

    def flush(self) -> None:
        """Sends the queued requests now, without waiting for replies. Requests are otherwise
        buffered (64 KiB at a time) until a value is needed, so call this before doing slow
        local work if the server should be computing meanwhile."""
        self._check_open()
        self._c._flush_guarded()

    @_module_function
    def synchronize(self) -> None:
        """Waits for every request sent so far and raises the first error among them."""
        self._check_open()
        self._c.sync()
        self._raise_pending()

    def _get(self, handle: builtins.int, length: builtins.int, into: Any = None
             ) -> _conn.Pending:
        """Sends Get(handle, length) (no wait); `into`: where its data section goes."""
        if _FAST and into is None and not self.sync and not self._closed:
            p = self._c.get_fast(self, handle, False, 0, length, "get")
            if p is not None:
                return p
        req = pb.Request()
        req.get.handle = handle
        if length:
            req.get.length = length
        return self._send(req, "get", into=into)

    def _call(self, req: Any, what: str) -> Any:
        return self._wait(self._send(req, what)).resp

    def _simple(self, kind: str, values: Tuple[Any, ...], what: str) -> Optional[_conn.Pending]:
        """A request whose body is only integer fields 1..n, in field order (Backward, Grad,
        SetGrad), queued in C as _send would queue it (_fast.c's simple_fast); None when the
        protobuf path must send it (no extension, a sync or closed session)."""
        if _FAST and not self.sync and not self._closed:
            p = self._c.simple_fast(self, _BODY_FIELD[kind], kind, what,
                                    kind in _conn._REPLAYABLE, values)
            return p  # a failed reply goes to the connection's error_sink, self._errors
        return None

    def _new(self, req: Any, out: builtins.int, what: str, data: Any = b"",
             meta: Optional[Tuple[Size, dtype]] = None) -> "Tensor":
        p = self._send(req, what, data)
        return Tensor(self, out, p, meta)

    def _op(self, name: str, inputs: Sequence[Any], inplace: Any = False, **kw: Any) -> Any:
        for k in kw:
            if k not in _ARG_NAMES:
                # A keyword torch has and the protocol does not (alpha=, rounding_mode=, out=):
                # refused as Python refuses an unknown keyword, before anything is sent.
                raise TypeError("%s%s() got an unexpected keyword argument '%s'"
                                % (name, "_" if inplace else "", k))
        if _FAST and not self.sync and not self._closed:
            # the common case in C: checks, request, Pending and result Tensor (_fast.c)
            code = _OPCODES.get(name)
            if code is not None:
                out = self._c.op_fast(self, code, inputs, inplace, name, kw)
                if out is not None:
                    if not inplace and name in _VIEW_OPS and inputs and \
                            isinstance(inputs[0], Tensor):
                        r = inputs[0]._root
                        out._root = r if r is not None else inputs[0]
                    return out
        _use(self, inputs)
        args = [H(x._h) if isinstance(x, Tensor) else x for x in inputs]
        req = self._c.op_request(name, args, inplace=inplace, **kw)
        ctxs = _ctxs_of(inputs) if self._grad_enabled else ()
        if inplace:
            self._send(req, name + "_")
            t = inputs[0]
            t._grad_cache = None
            if ctxs:
                t._ctxs = ctxs
            r = t._root if t._root is not None else t
            if r._share is not None:  # a shared ndarray sees the change before we return
                _numpy.sync_out(r._share)
            return t
        out = self._new(req, req.run_op.out, name)
        if ctxs:
            out._ctxs = ctxs
        if name in _VIEW_OPS and inputs and isinstance(inputs[0], Tensor):
            out._root = inputs[0]._root if inputs[0]._root is not None else inputs[0]
        return out

    def _op2(self, name: str, inputs: Sequence[Any], **kw: Any) -> Any:
        """max/min with a dim: (values, indices)."""
        out2 = self._c.handle()
        _use(self, inputs)
        args = [H(x._h) if isinstance(x, Tensor) else x for x in inputs]
        req = self._c.op_request(name, args, out2=out2, **kw)
        p = self._send(req, name)
        values = Tensor(self, req.run_op.out, p)
        indices = Tensor(self, out2, p, _not_in_reply=True)
        if self._grad_enabled:
            values._ctxs = _ctxs_of(inputs)
        return getattr(return_types, name)(values, indices)

    def _op_outputs(self, name: str, inputs: Sequence[Any], slots: Sequence[builtins.int],
                    **kw: Any) -> List["Tensor"]:
        """An op with more than one output (ops.def's `-> a, b`): output 0 and each further
        output in `slots` (1: out2, 2: out3), as Tensors in that order."""
        args = [H(x._h) if isinstance(x, Tensor) else x for x in inputs]
        extra = {"out%d" % (i + 1): self._c.handle() for i in slots}
        req = self._c.op_request(name, args, **extra, **kw)
        p = self._send(req, name)
        outs = [Tensor(self, req.run_op.out, p)] + [
            Tensor(self, extra["out%d" % (i + 1)], p, _not_in_reply=True) for i in slots]
        if self._grad_enabled:
            outs[0]._ctxs = _ctxs_of(inputs)
        return outs

    # -- creation --
    @_factory
    def tensor(self, data: Any, dtype: Optional[dtype] = None, requires_grad: Any = False,
               progress: Any = None) -> "Tensor":
        """torch.tensor(data, dtype=None, requires_grad=False): a copy on the server."""
        if np is not None and isinstance(data, (np.ndarray, np.generic)):
            arr = np.asarray(data)
            name = dtype.name if dtype is not None else (
                "bool" if arr.dtype == np.bool_ else str(arr.dtype))
            if name not in _conn.NUMPY:
                name = "float64" if arr.dtype.kind == "f" else (
                    "int64" if arr.dtype.kind in "iu" else None)
                if name is None:
                    raise TypeError("can't convert np.ndarray of type %s" % arr.dtype)
            arr = np.require(arr, dtype=_conn.NUMPY[name], requirements="C")  # keeps 0-dim
            shape = list(arr.shape)
            payload: Any = memoryview(arr.reshape(-1)).cast("B") if arr.size else b""
        else:
            packed = _conn._fast.pack_values(data, None if dtype is None else dtype.name) \
                if _FAST else None  # lists of Python numbers in C: the same bytes
            if packed is not None:
                payload, shape, name = packed
            else:
                if isinstance(data, Tensor) and dtype is None:
                    dtype = data.dtype
                flat, shape = _flatten(data)
                name = dtype.name if dtype is not None else _infer(flat)
                payload = _pack(flat, name)
        return self._upload(payload, shape, name, requires_grad,
                            self.progress if progress is None else progress)

    def _upload(self, payload: Any, shape: List[builtins.int], name: str, requires_grad: Any,
                progress: Any) -> "Tensor":
        h = self._c.handle()
        meta = (Size(shape), _DTYPES[name])
        nbytes = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
        chunk = self._chunk_bytes()
        req = pb.Request()
        # One Create frame whenever the frame limit allows: the server reads its data section
        # straight into the tensor's storage, with no zero fill and no copy. Chunks (Full, then
        # Writes) are for tensors above the limit, and for progress bars.
        if nbytes <= chunk or (not progress and nbytes <= self._frame_bytes()):
            if _FAST and nbytes < _conn.FLUSH_AT and not self.sync and not self._closed:
                t = self._c.create_fast(self, h, _conn.DTYPE_WIRE[name], shape,
                                        builtins.bool(requires_grad), payload)
                if t is not None:  # the common case in C (_fast.c)
                    t._meta = meta
                    return t
            req.create.out = h
            req.create.dtype = _conn.DTYPE_WIRE[name]
            req.create.shape.extend(shape)
            req.create.requires_grad = builtins.bool(requires_grad)
            return self._new(req, h, "tensor", payload, meta)
        # Large: zeros, then Writes of one chunk each, streamed without waiting.
        req.full.out = h
        req.full.dtype = _conn.DTYPE_WIRE[name]
        req.full.shape.extend(shape)
        req.full.value.i = 0
        req.full.requires_grad = builtins.bool(requires_grad)
        t = self._new(req, h, "tensor", b"", meta)
        bar = _Progress("upload", nbytes, progress)
        view = payload if isinstance(payload, memoryview) else memoryview(payload)
        last = None
        for off in range(0, nbytes, chunk):
            w = pb.Request()
            w.write.handle = h
            w.write.offset = off
            last = self._send(w, "tensor (upload)", view[off:off + chunk])
            n = min(chunk, nbytes - off)
            last.on_done = (lambda n: lambda p: (self._note(p), bar.add(n)))(n)
        if progress and last is not None:
            self._wait(last)
        return t

    def _frame_bytes(self) -> builtins.int:
        """The largest data section one request may carry (the frame limit less room for its
        header and protobuf section); CHUNK_BYTES when the server states no limit."""
        limit = self._c.limits.max_frame_bytes if self._c.limits is not None else 0
        return limit - 4096 if limit else CHUNK_BYTES

    def _chunk_bytes(self) -> builtins.int:
        return max(1 << 16, min(CHUNK_BYTES, self._frame_bytes()))

    @_module_function
    def as_tensor(self, data: Any, dtype: Optional[dtype] = None) -> "Tensor":
        """data itself if it is a tensor (and no dtype is asked), else ``tensor(data, dtype)``."""
        return data if isinstance(data, Tensor) and dtype is None else self.tensor(data, dtype)

    @_module_function
    def from_numpy(self, array: Any) -> "Tensor":
        """A tensor sharing the array's values, as torch's: later writes to the array are seen
        by the tensor, and in-place changes to the tensor appear in the array (see _numpy)."""
        global _FROM_NUMPY_PROBE
        refs = sys.getrefcount(array)
        if _FROM_NUMPY_PROBE:
            return refs  # type: ignore[return-value]
        _need_numpy("from_numpy")
        if not isinstance(array, np.ndarray):
            raise TypeError("expected np.ndarray (got %s)" % type(array).__name__)
        t = self.tensor(array)
        if np.dtype(_conn.NUMPY.get(t.dtype.name, "V")) != array.dtype:
            return t  # converted (uint8 -> int64 ...): the bytes differ, so no share
        # An array only this call references (from_numpy(np.load(f))) cannot change: no share.
        # The references a temporary argument has here are measured once per call path.
        via = sys._getframe(1).f_code
        base = _FROM_NUMPY_REFS.get(via)
        if base is None:
            # called as the user calls it (no keywords: they would add references)
            _FROM_NUMPY_PROBE = True
            try:
                base = _FROM_NUMPY_REFS[via] = (
                    globals()["from_numpy"](np.empty(0)) if via is _MODULE_CODE
                    else self.from_numpy(np.empty(0)))
            finally:
                _FROM_NUMPY_PROBE = False
        if refs > base or array.base is not None:
            _numpy.attach(t, array, True)
        return t

    def _full(self, shape: Any, value: Any, dt: Optional[dtype],
              requires_grad: Any = False) -> "Tensor":
        req = pb.Request()
        h = self._c.handle()
        req.full.out = h
        req.full.shape.extend(_shape(shape))
        if dt is not None:
            req.full.dtype = _conn.DTYPE_WIRE[dt.name]
        _conn.scalar(value, req.full.value)
        req.full.requires_grad = builtins.bool(requires_grad)
        return self._new(req, h, "full")

    @_factory
    def zeros(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
              ) -> "Tensor":
        """torch.zeros(*size, dtype=float32, requires_grad=False); size as f(2, 3) or f((2, 3))."""
        return self._full(shape, 0.0, dtype or float32, requires_grad)

    @_factory
    def ones(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
             ) -> "Tensor":
        """torch.ones(*size, dtype=float32, requires_grad=False); size as f(2, 3) or f((2, 3))."""
        return self._full(shape, 1.0, dtype or float32, requires_grad)

    @_factory
    def full(self, size: Sequence[builtins.int], fill_value: Any,
             dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """torch.full(size, fill_value): the dtype follows fill_value (int64, float32, bool) unless
        given."""
        return self._full([size], fill_value, dtype, requires_grad)

    @_factory
    def empty(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
              ) -> "Tensor":
        """torch.empty(*size): a tensor of the shape whose values are not set."""
        t = self._op("empty", [], dims=_shape(shape), dtype=(dtype or float32).name)
        return t.requires_grad_() if requires_grad else t

    @_factory
    def eye(self, n: builtins.int, m: Optional[builtins.int] = None,
            dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """torch.eye(n, m=n): ones on the diagonal, zeros elsewhere."""
        t = self._op("eye", [], dims=[n, n if m is None else m], dtype=(dtype or float32).name)
        return t.requires_grad_() if requires_grad else t

    @_factory
    def triu_indices(self, row: builtins.int, col: builtins.int, offset: builtins.int = 0,
                     dtype: Optional[dtype] = None) -> "Tensor":
        """torch.triu_indices(row, col, offset=0): the [2, N] coordinates of the upper
        triangle of a row x col matrix (from diagonal `offset` up), row by row."""
        return self._op("triu_indices", [], dim=row, dim2=col, start=offset,
                        **({"dtype": dtype.name} if dtype is not None else {}))

    @_factory
    def tril_indices(self, row: builtins.int, col: builtins.int, offset: builtins.int = 0,
                     dtype: Optional[dtype] = None) -> "Tensor":
        """torch.tril_indices(row, col, offset=0): the lower triangle's coordinates."""
        return self._op("tril_indices", [], dim=row, dim2=col, start=offset,
                        **({"dtype": dtype.name} if dtype is not None else {}))

    @_factory
    def linspace(self, start: Any, end: Any, steps: builtins.int,
                 dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """torch.linspace(start, end, steps): steps values evenly spaced from start to end."""
        t = self._op("linspace", [], min=start, max=end, dim=steps,
                     dtype=(dtype or float32).name)
        return t.requires_grad_() if requires_grad else t

    @_factory
    def randint(self, low: Any = None, high: Any = None, size: Any = None, *,
                generator: Optional["Generator"] = None, dtype: Optional[dtype] = None,
                requires_grad: Any = False) -> "Tensor":
        """randint(high, size) or randint(low, high, size), like torch; size= and generator=
        as keywords too."""
        if size is None:
            low, high, size = 0, low, high
        elif high is None:
            low, high = 0, low
        if high is None or size is None:
            raise TypeError("randint() missing required arguments: 'high' and 'size'")
        kw = {"dtype": dtype.name} if dtype is not None else {}
        t = self._op("randint", [], min=low, max=high, dims=_shape([size]),
                     generator=_generator_handle(self, generator), **kw)
        return t.requires_grad_() if requires_grad else t

    def _rand(self, shape: Any, size: Any, normal: Any, generator: Any, dt: Optional[dtype],
              requires_grad: Any) -> "Tensor":
        if size is not None:
            if shape:
                raise TypeError("%s() got multiple values for argument 'size'"
                                % ("randn" if normal else "rand"))
            shape = (size,)
        req = pb.Request()
        h = self._c.handle()
        req.rand.out = h
        req.rand.shape.extend(_shape(shape))
        req.rand.distribution = pb.NORMAL if normal else pb.UNIFORM
        if dt is not None:
            req.rand.dtype = _conn.DTYPE_WIRE[dt.name]
        req.rand.requires_grad = builtins.bool(requires_grad)
        req.rand.generator = _generator_handle(self, generator)
        return self._new(req, h, "randn" if normal else "rand")

    @_factory
    def rand(self, *shape: Any, size: Any = None, generator: Optional["Generator"] = None,
             dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """Uniform on [0, 1), from the session's seedable generator or `generator`."""
        return self._rand(shape, size, False, generator, dtype, requires_grad)

    @_factory
    def randn(self, *shape: Any, size: Any = None, generator: Optional["Generator"] = None,
              dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """Standard normal, from the session's seedable generator or `generator`."""
        return self._rand(shape, size, True, generator, dtype, requires_grad)

    @_factory
    def randperm(self, n: builtins.int, *, generator: Optional["Generator"] = None,
                 dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """torch.randperm(n): a random permutation of 0..n-1, int64 unless dtype is given."""
        if isinstance(n, builtins.bool) or not isinstance(n, builtins.int):
            raise TypeError("randperm(): argument 'n' (position 1) must be int, not %s"
                            % type(n).__name__)
        kw = {"dtype": dtype.name} if dtype is not None else {}
        t = self._op("randperm", [], num_samples=n,
                     generator=_generator_handle(self, generator), **kw)
        return t.requires_grad_() if requires_grad else t

    @_factory
    def normal(self, mean: Any, std: Any = 1.0, size: Any = None, *,
               generator: Optional["Generator"] = None, dtype: Optional[dtype] = None,
               requires_grad: Any = False) -> "Tensor":
        """torch.normal in its four forms: normal(mean_tensor, std_tensor), (mean_tensor,
        std_float), (mean_float, std_tensor), and (mean_float, std_float, size); the tensor
        forms broadcast mean against std and are differentiable (with zero gradients)."""
        tensors = isinstance(mean, Tensor) or isinstance(std, Tensor)
        if tensors == (size is not None) or (tensors and dtype is not None):
            got = ", ".join(("Tensor" if isinstance(v, Tensor) else type(v).__name__)
                            for v in (mean, std))
            if size is not None:
                got += ", size=%s" % type(size).__name__
            raise TypeError(_names.text(
                            "normal() received an invalid combination of arguments - got (%s), "
                            "but expected one of:\n"
                            " * (Tensor mean, Tensor std, *, tensord.Generator generator, "
                            "Tensor out)\n"
                            " * (Tensor mean, float std, *, tensord.Generator generator, "
                            "Tensor out)\n"
                            " * (float mean, Tensor std, *, tensord.Generator generator, "
                            "Tensor out)\n"
                            " * (float mean, float std, tuple of ints size, *, "
                            "tensord.Generator generator, Tensor out, tensord.dtype dtype, "
                            "tensord.layout layout, tensord.device device, bool pin_memory, "
                            "bool requires_grad)\n" % got))
        s = _first_session([mean, std]) or self
        kw: dict = {"dtype": dtype.name} if dtype is not None else {}
        if size is not None:
            kw["dims"] = _shape([size])
        inputs = [H(v._h) if isinstance(v, Tensor) else v for v in (mean, std)]
        req = s._c.op_request("normal_sample", inputs,
                              generator=_generator_handle(s, generator), **kw)
        t = s._new(req, req.run_op.out, "normal")
        return t.requires_grad_() if requires_grad else t

    @_factory
    def arange(self, start: Any, end: Any = None, step: Any = 1,
               dtype: Optional[dtype] = None, requires_grad: Any = False) -> "Tensor":
        """torch.arange(end) or arange(start, end, step): int64 when all are integers, else
        float32."""
        if end is None:
            start, end = 0, start
        req = pb.Request()
        h = self._c.handle()
        req.arange.out = h
        _conn.scalar(start, req.arange.start)
        _conn.scalar(end, req.arange.end)
        _conn.scalar(step, req.arange.step)
        if dtype is not None:
            req.arange.dtype = _conn.DTYPE_WIRE[dtype.name]
        t = self._new(req, h, "arange")
        return t.requires_grad_() if requires_grad else t

    @_module_function
    def manual_seed(self, seed: builtins.int) -> None:
        """Seeds the session's generator (rand, randn, randint ...), as torch.manual_seed: the
        generator is torch's CPU generator, so the values are torch's."""
        req = pb.Request()
        req.manual_seed.seed = seed
        self._send(req, "manual_seed")

    @_module_function
    def rng_state(self, *, seed: Optional[builtins.int] = None,
                  generator: Optional["Generator"] = None) -> "Tensor":
        """The state of the session's generator (or of `generator`; with seed, of a generator
        freshly seeded with it): torch's 5056 state bytes as an int64 tensor of 632 words (the
        server's rng_state op)."""
        if seed is not None:
            signed = (seed & _U64) - (1 << 64) if seed & _U64 >= 1 << 63 else seed & _U64
            return self._op("rng_state", [], min=signed)
        return self._op("rng_state", [], generator=_generator_handle(self, generator))

    @_module_function
    def get_rng_state(self) -> "Tensor":
        """torch.get_rng_state: the session generator's state, torch's 5056 state bytes as an
        int64 tensor of 632 words (tensord has no uint8), for set_rng_state."""
        return self.rng_state()

    @_module_function
    def set_rng_state(self, new_state: Any) -> None:
        """torch.set_rng_state: puts the session's generator where get_rng_state() found it,
        or where torch's own state (a torch.ByteTensor, bytes, or byte values) says."""
        if not isinstance(new_state, Tensor):
            new_state = Generator(session=self).set_state(new_state)._state
        self._op("set_rng_state", [new_state])

    @_module_function
    def initial_seed(self) -> builtins.int:
        """torch.initial_seed: the seed the session's generator started from."""
        return builtins.int(self._op("rng_state", []).tolist()[0]) & _U64

    @_module_function
    def seed(self) -> builtins.int:
        """torch.seed: seeds the session's generator from the OS's randomness (53 bits, as
        torch's) and returns that seed."""
        s = builtins.int.from_bytes(os.urandom(8), "little") & ((1 << 53) - 1)
        self.manual_seed(s)
        return s

    def _set_grad_mode(self, enabled: builtins.bool) -> None:
        if enabled != self._grad_enabled:
            req = pb.Request()
            req.set_grad_enabled.enabled = enabled
            self._send(req, "set_grad_enabled")
            self._grad_enabled = enabled

    @_module_function
    def set_grad_enabled(self, mode: Any) -> "_GradMode":
        """torch.set_grad_enabled(mode): switches graph recording on or off at once; used as
        ``with s.set_grad_enabled(False):`` it also restores the previous mode on exit."""
        return _GradMode(self, builtins.bool(mode), now=True)

    @_module_function
    def is_grad_enabled(self) -> builtins.bool:
        """Whether ops record a graph for autograd (False inside ``no_grad()``)."""
        return self._grad_enabled

    @_module_function
    def no_grad(self) -> "_GradMode":
        """``with s.no_grad():`` ops inside record no graph (how optimizers update weights);
        the mode in force before the block comes back after it, so blocks nest as in torch.
        Also a decorator: ``@s.no_grad()``."""
        return _GradMode(self, False)

    @_module_function
    def enable_grad(self) -> "_GradMode":
        """``with s.enable_grad():`` records a graph inside, even within ``no_grad()``; the
        previous mode comes back after the block. Also a decorator."""
        return _GradMode(self, True)

    @_module_function
    def stats(self) -> Any:
        """The server's Stats reply (session tensors and bytes, sessions, server bytes)."""
        req = pb.Request()
        req.stats.SetInParent()
        return self._call(req, "stats").stats

    # -- persistence (the daemon needs --data-dir) --
    def save(self, file: str, tensors: Any) -> None:
        """Writes tensors ({name: Tensor}) to <data-dir>/files/<file>.safetensors on the server,
        with their requires_grad flags; waits until the file is durable."""
        req = pb.Request()
        req.save.file = file
        _use(self, list(tensors.values()))
        for name, t in tensors.items():
            nt = req.save.tensors.add()
            nt.name = name
            nt.handle = t._h
        self._call(req, "save")

    def load(self, file: str, names: Optional[Sequence[str]] = None) -> Any:
        """Reads tensors of a saved file (all of them, or those named) as {name: Tensor}."""
        if names is None:
            names = self.list_file(file)
        req = pb.Request()
        req.load.file = file
        out = {}
        for name in names:
            nt = req.load.tensors.add()
            nt.name = name
            nt.handle = self._c.handle()
            out[name] = nt.handle
        p = self._send(req, "load")
        return {name: Tensor(self, h, p, _not_in_reply=True) for name, h in out.items()}

    def list_file(self, file: str) -> List[str]:
        """The names of the tensors in a saved file."""
        req = pb.Request()
        req.load.file = file
        return self._call(req, "load").text.splitlines()

    # -- named tensors: the session as a dict of str -> Tensor (RedisAI's keys) --
    def __setitem__(self, name: str, tensor: "Tensor") -> None:
        """``s["w1"] = t``: binds the name to t's tensor on the server — the same tensor, so its
        values, requires_grad, .grad and graph are t's — where it outlives t, this connection
        and (with --data-dir) a daemon restart: ``Session(resume=token)["w1"]`` finds it. A
        name is 1-255 characters of ``A-Z a-z 0-9 _ . : / -``. Pipelined: an error (a bad
        name, an input whose op failed) is raised at the next blocking point."""
        if not isinstance(name, str):
            raise TypeError("a tensor name must be a str, not %s" % type(name).__name__)
        if not isinstance(tensor, Tensor):
            raise TypeError("a session holds Tensors, not %s" % type(tensor).__name__)
        _use(self, [tensor])
        req = pb.Request()
        req.set_name.name = name
        req.set_name.handle = tensor._h
        self._send(req, "s[%r] = ..." % name)

    def _by_name(self, name: Any, kind: str) -> Tuple[Optional[_conn.Pending],
                                                       builtins.int]:
        """Sends GetName (kind "get_name") or DelName for name without waiting: (its Pending,
        the output handle), or (None, 0) for a key that cannot name a tensor."""
        if not isinstance(name, str):
            return None, 0
        req = pb.Request()
        out = 0
        if kind == "get_name":
            out = self._c.handle()
            req.get_name.name = name
            req.get_name.out = out
        else:
            req.del_name.name = name
        return self._send(req, "s[%r]" % name, sync=False), out

    def _key_reply(self, p: Optional[_conn.Pending], out: builtins.int) -> builtins.bool:
        """Waits for a GetName or DelName: True when the name is there. A missing (or invalid)
        name is False, as a dict's missing key; earlier pipelined errors are raised first."""
        if p is None:
            return False
        self._check_open()
        self._c.wait(p)
        if p.error is not None and p in self._errors:
            self._errors.remove(p)  # answered here, not at a later blocking point
        self._raise_pending()
        if p.error is None:
            return True
        if out:
            self._dead.append(out)  # the handle holds the failure record: free it
        if p.error.code in (pb.UNKNOWN_HANDLE, pb.INVALID_ARGUMENT):
            return False
        raise _error(p)

    def __getitem__(self, name: str) -> "Tensor":
        """``s["w1"]``: the named tensor (the same tensor object on the server, under a new
        handle). KeyError when the session has no such name, as a dict raises it."""
        p, out = self._by_name(name, "get_name")
        if not self._key_reply(p, out):
            raise KeyError(name)
        return Tensor(self, out, p)

    def __delitem__(self, name: str) -> None:
        """``del s["w1"]``: unbinds the name (the tensor lives on while Tensors hold it).
        KeyError when the session has no such name."""
        p, _ = self._by_name(name, "del_name")
        if not self._key_reply(p, 0):
            raise KeyError(name)

    def __contains__(self, name: Any) -> builtins.bool:
        """``"w1" in s``: whether the session has a tensor by that name."""
        p, out = self._by_name(name, "get_name")
        found = self._key_reply(p, out)
        if found:
            self._dead.append(out)
        return found

    def get(self, name: str, default: Any = None) -> Any:
        """``s.get("w1")``: the named tensor, or default."""
        try:
            return self[name]
        except KeyError:
            return default

    def keys(self) -> List[str]:
        """The session's names, in the order they were first set (as a dict keeps them)."""
        req = pb.Request()
        req.list_names.SetInParent()
        return list(self._call(req, "keys()").names.names)

    def values(self) -> List["Tensor"]:
        """The named tensors, in keys() order."""
        return [t for _, t in self.items()]

    def items(self) -> List[Tuple[str, "Tensor"]]:
        """(name, Tensor) pairs in keys() order; the lookups are pipelined."""
        sent = [(k,) + self._by_name(k, "get_name") for k in self.keys()]
        out = []
        for k, p, h in sent:
            if self._key_reply(p, h):  # a name deleted meanwhile by another client is left out
                out.append((k, Tensor(self, h, p)))
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> builtins.int:
        """How many names the session holds."""
        return len(self.keys())

    def __bool__(self) -> builtins.bool:
        # A session is true whatever it holds: `if s:` must not ask the server for its names.
        return True

    # every op as a Session method too: s.exp(x), s.cat([a, b], 1), s.matmul(a, b) ...
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _function(name, self)


class _GradMode:
    """The object no_grad(), enable_grad() and set_grad_enabled() return: a context manager
    that sets the session's grad mode on entry (set_grad_enabled: at once) and restores the
    mode it found on exit, and a decorator doing the same around each call."""

    def __init__(self, session: Session, enabled: builtins.bool, now: builtins.bool = False):
        self._s = session
        self._enabled = enabled
        self._prev: List[builtins.bool] = []  # a stack: the same object may be entered again
        self._armed = now  # set_grad_enabled: the mode is set and the old one saved already
        if now:
            self._prev.append(session._grad_enabled)
            session._set_grad_mode(enabled)

    def __enter__(self) -> None:
        if self._armed:
            self._armed = False
            return
        self._prev.append(self._s._grad_enabled)
        self._s._set_grad_mode(self._enabled)

    def __exit__(self, *exc: Any) -> None:
        self._s._set_grad_mode(self._prev.pop())

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            with _GradMode(self._s, self._enabled):
                return func(*args, **kw)
        return wrapper


def _shape(shape: Any) -> List[builtins.int]:
    """Accepts f(2, 3), f((2, 3)) and f([2, 3]) like torch."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return [builtins.int(d) for d in shape]


class _Fin:
    """Tensor._fin: the handle's freeing, as weakref.finalize offers it."""

    __slots__ = ("t",)

    def __init__(self, t: "Tensor"):
        self.t = t

    def __call__(self) -> None:
        if self.t._owns:
            self.t._owns = False
            self.t._s._dead.append(self.t._h)

    def detach(self) -> None:
        self.t._owns = False

    @property
    def alive(self) -> builtins.bool:
        return builtins.bool(self.t._owns)


class Tensor:
    """A tensor on the server, named by a handle; freed when this object is collected.

    Its shape and dtype come from the reply of the request that made it, read when first
    needed; its values are read by ``item()``, ``tolist()``, ``numpy()`` and printing.
    ``tensord.Tensor(2, 3)`` and ``tensord.Tensor(data)`` are torch's legacy float32
    constructors (on the default session).
    """

    __array_priority__ = 1000  # numpy defers `ndarray * Tensor` to Tensor.__rmul__
    _root: Optional["Tensor"] = None  # for a view: the tensor whose storage it shares
    _share: Optional[_numpy.Share] = None  # on a storage's root: its shared ndarrays
    # The contexts of the custom autograd Functions this tensor's graph reaches (tensord.autograd):
    # they live while a tensor that can backward into them does, as in torch's graph.
    _ctxs: tuple = ()
    # what _made sets, as class defaults so the fast path (_fast.c) sets only _s, _h, _p, _owns
    _p: Any = None
    _meta: Optional[Tuple[Size, dtype]] = None
    _not_in_reply: Any = False
    _grad_cache: Optional["Tensor"] = None
    _is_grad = False  # a .grad: backward may accumulate into it (its shared arrays follow)
    # (Get's Pending, the connection's next request id after it): values asked for with .grad
    _pre: Optional[Tuple[Any, builtins.int]] = None
    _owns = False  # whether collecting this object frees its handle on the server

    def __init__(self, *args: Any, **kw: Any):
        if args and isinstance(args[0], Session):
            self._made(*args, **kw)
            return
        # torch.Tensor(2, 3) / torch.Tensor(data): the legacy float32 constructor
        t = _legacy._legacy_make(_session(), float32, args, kw)
        t._fin.detach()  # self takes over t's handle
        self._made(t._s, t._h, t._p, t._meta, t._not_in_reply)
        self._root = t._root

    def _made(self, session: Session, handle: builtins.int, pending: Any = None,
              meta: Optional[Tuple[Size, dtype]] = None, _not_in_reply: Any = False) -> None:
        self._s = session
        self._h = handle
        self._p = pending
        self._meta = meta
        self._not_in_reply = _not_in_reply
        self._grad_cache = None
        self._owns = True

    def __del__(self) -> None:
        # free-on-collect: the handle rides on the session's next request (free_first)
        if self._owns:
            self._s._dead.append(self._h)

    @property
    def _fin(self) -> "_Fin":
        """weakref.finalize's interface to the handle's freeing: _fin() frees it now,
        _fin.detach() gives it up (another object takes the handle over)."""
        return _Fin(self)

    @_fin.setter
    def _fin(self, value: Any) -> None:
        # `t._fin = weakref.finalize(t, ...)` after `t._h` changed: t owns its new handle, and
        # __del__ frees it, so that finalizer is not needed
        if isinstance(value, weakref.finalize):
            value.detach()
        self._owns = True

    # -- facts --
    @property
    def handle(self) -> builtins.int:
        """The handle naming this tensor in its session on the server (read-only)."""
        return self._h

    def _get_meta(self) -> Tuple[Size, dtype]:
        if self._meta is None:
            info = None
            if self._p is not None:
                self._s._wait(self._p)
                if not self._not_in_reply:
                    info = _conn.info_of(self._p)
            if info is None:
                t = self._info()
                self._meta = (Size(t.shape), _WIRE_DTYPES[t.dtype])
            else:
                self._meta = (Size(info[2]), _WIRE_DTYPES[info[1]])
            self._p = None
        return self._meta

    def _info(self) -> Any:
        req = pb.Request()
        req.get.handle = self._h
        req.get.meta_only = True
        return self._s._call(req, "info").tensor

    @property
    def shape(self) -> Size:
        """The shape, as ``tensord.Size``; waits at most for the reply of the op that
        made the tensor."""
        return self._get_meta()[0]

    def size(self, dim: Optional[builtins.int] = None) -> Any:
        """The shape (``tensord.Size``), or its size along dim."""
        s = self.shape
        return s if dim is None else s[dim]

    @property
    def dtype(self) -> dtype:
        """The element type (``tensord.float32`` ...)."""
        return self._get_meta()[1]

    @property
    def ndim(self) -> builtins.int:
        """The number of dims."""
        return len(self.shape)

    def dim(self) -> builtins.int:
        """The number of dims."""
        return self.ndim

    def numel(self) -> builtins.int:
        """The number of elements."""
        return self.shape.numel()

    nelement = numel

    def element_size(self) -> builtins.int:
        """Bytes per element."""
        return self.dtype.itemsize

    def is_floating_point(self) -> builtins.bool:
        """Whether the dtype is float32 or float64."""
        return self.dtype.is_floating_point

    @property
    def requires_grad(self) -> Any:
        """Whether autograd records ops on this tensor (asked of the server)."""
        return self._info().requires_grad

    @requires_grad.setter
    def requires_grad(self, value: Any) -> None:
        self.requires_grad_(value)

    @property
    def is_leaf(self) -> Any:
        """Whether the tensor was made by the user rather than by a recorded op."""
        return self._info().is_leaf

    @property
    def grad_fn(self) -> Optional["Node"]:
        """The node that made this tensor (``<MulBackward0 object at 0x...>``, whose ``name()``
        is 'MulBackward0'), or None for a leaf or a tensor made without grad."""
        name = self._info().grad_fn
        return _node_type(name)() if name else None

    @property
    def grad(self) -> Optional["Tensor"]:
        """The accumulated gradient, or None. Once it exists, the server keeps accumulating
        into the same tensor, so later reads cost no round trip until ``.grad = None``."""
        if self._grad_cache is not None:
            return self._grad_cache
        s = self._s
        c = s._c
        out = c.handle()
        p = s._simple("grad", (self._h, out), "grad")
        if p is None:
            req = pb.Request()
            req.grad.handle = self._h
            req.grad.out = out
            p = s._send(req, "grad")
        # A small gradient's values are asked for now, behind the Grad: `a.grad.item()` costs
        # one round trip, not two. They are used only if nothing else was sent in between
        # (anything may change them); when there is no gradient, the Get's error is dropped.
        pre = None
        if not p.done and self._meta is not None and \
                self._meta[0].numel() <= PREFETCH_NUMEL and c._out_bytes < _conn.FLUSH_AT // 2:
            pre = c.get_fast(s, out, False, 0, 0, "get") if _FAST else None
            if pre is not None:
                pre.on_done = _drop_reply  # set before any reply can be read (no flush yet)
            else:
                req = pb.Request()
                req.get.handle = out
                pre = c.send(req)  # no tag, no on_done: an error reply goes nowhere
        s._wait(p)
        # p.resp is None when a resent Grad found `out` made by the first one: a gradient that
        # exists, whose shape the tensor learns when asked
        info = _conn.info_of(p)
        if info is None and p.resp is not None:
            s._dead.append(out)
            return None
        g = Tensor(s, out, None, None if info is None else (Size(info[2]),
                                                             _WIRE_DTYPES[info[1]]))
        if pre is not None:
            g._pre = (pre, c._next_id)
        g._is_grad = True
        self._grad_cache = g
        return g

    @grad.setter
    def grad(self, value: None) -> None:
        if value is not None:
            raise TypeError("only .grad = None is supported")
        self._grad_cache = None
        if self._s._simple("set_grad", (self._h, False, True), "grad = None") is not None:
            return
        req = pb.Request()
        req.set_grad.handle = self._h
        req.set_grad.clear_grad = True
        self._s._send(req, "grad = None")

    # -- values --
    def _fetch(self, into: Any = None, progress: Any = None, synced: Any = False) -> Any:
        """The bytes in C order; large tensors in pipelined chunks. With the shape unknown
        the first chunk is asked for at once: its reply brings the shape and dtype, so a
        small tensor costs one round trip. `synced`: the caller has just sent the shared
        arrays' changes."""
        r = self._root if self._root is not None else self
        if r._share is not None and not synced:
            _numpy.sync_in(r._share)
        if self._pre is not None:
            data = self._prefetched()
            if data is not None:
                if into is not None:
                    into[:] = data
                return data
        chunk = self._s._chunk_bytes()
        first = None
        if self._meta is None:
            # Without a progress bar to move, the first Get asks for all one frame may carry:
            # a tensor up to the frame limit then arrives whole, in one reply, into the buffer
            # numpy() returns (pooled), instead of a first chunk copied into a second buffer.
            bar_on = self._s.progress if progress is None else progress
            first_len = chunk if bar_on else max(chunk, self._s._frame_bytes())
            first = self._s._wait(self._s._get(self._h, first_len))
            info = _conn.info_of(first)
            self._meta = (Size(info[2]), _WIRE_DTYPES[info[1]])
            self._p = None
            if info[5] == info[3]:  # length == nbytes: the whole tensor
                if into is not None:
                    into[:] = first.data_in
                return first.data_in
        size, dt = self._meta
        nbytes = size.numel() * dt.itemsize
        if nbytes <= chunk:
            p = self._s._get(self._h, 0, into)
            return self._s._wait(p).data_in
        src = self.contiguous()  # so each chunk is a slice, not a copy of the whole tensor
        buf = into if into is not None else memoryview(_conn.recv_buffer(nbytes))
        bar = _Progress("download", nbytes, self._s.progress if progress is None else progress)
        start = 0
        if first is not None:  # the chunk that brought the shape is the start of the bytes
            start = len(first.data_in)
            buf[:start] = first.data_in
            bar.add(start)
        last = None
        for off in range(start, nbytes, chunk):
            req = pb.Request()
            req.get.handle = src._h
            req.get.offset = off
            req.get.length = min(chunk, nbytes - off)
            last = self._s._send(req, "get", into=buf[off:off + req.get.length])
            last.on_done = (lambda n: lambda p: (self._s._note(p), bar.add(n)))(req.get.length)
        self._s._wait(last)
        return buf

    def _prefetched(self) -> Any:
        """The values .grad asked for, if no request was sent since (else None)."""
        (p, next_id), self._pre = self._pre, None
        s = self._s
        if s._c._next_id != next_id or s._closed:
            return None
        s._c.wait(p)  # a blocking point, as _wait: earlier pipelined errors are raised here
        s._raise_pending()
        info = _conn.info_of(p) if p.error is None else None
        if info is None or info[5] != info[3] or self._meta is None or \
                self._meta != (Size(info[2]), _WIRE_DTYPES[info[1]]):
            return None
        return p.data_in

    def numpy(self, progress: Any = None) -> Any:
        """The values as a numpy array that shares them, as torch's: in-place changes to the
        tensor appear in it, and writes to it are seen by the tensor at its next use."""
        # A storage's root referenced by nothing but this call (`(a @ b).numpy()`) dies when it
        # returns: nothing can change it or read it again (each view holds its root), so there
        # is nothing to share and no snapshot of the array to take (a copy as large as the
        # array). Two references are this frame's `self` and getrefcount's argument; any other
        # holder makes it three or more. A view's root lives on: a view always shares.
        temporary = self._root is None and sys.getrefcount(self) <= 2
        _need_numpy("numpy()")
        block = None  # the pooled memory arr is, from its first byte (_numpy watches it)
        if self._meta is None:
            data = self._fetch(None, progress)
            size, dt = self._meta
            if _conn._pool is not None and isinstance(data, _conn._pool.Block):
                block = data
            arr = np.frombuffer(data, dtype=_conn.NUMPY[dt.name]).reshape(tuple(size))
            if not arr.flags.writeable:  # a small reply's bytes object: copied, as before
                arr = arr.copy()
            # else the received buffer itself (a bytearray or pooled memory): no copy
        else:
            size, dt = self._meta
            nbytes = size.numel() * dt.itemsize
            # the shared arrays' changes first: that also lets go of the arrays nothing else
            # holds any more, whose pooled memory the new array can then take
            r = self._root if self._root is not None else self
            if r._share is not None:
                _numpy.sync_in(r._share)
            if nbytes >= _POOL_MIN and _conn._pool is not None:  # pooled, not fresh pages
                buf = _conn.recv_buffer(nbytes)
                if isinstance(buf, _conn._pool.Block):
                    block = buf
                arr = np.frombuffer(buf, dtype=_conn.NUMPY[dt.name]).reshape(tuple(size))
            else:
                arr = np.empty(tuple(size), dtype=_conn.NUMPY[dt.name])
            if arr.size:
                self._fetch(memoryview(arr.reshape(-1)).cast("B"), progress, synced=True)
        # shared, as torch's: the array follows in-place changes, the tensor the array's
        if not temporary:
            _numpy.attach(self, arr, self._root is None, block)
        return arr

    def tolist(self) -> Any:
        """The values as nested Python lists (a number for a 0-dim tensor)."""
        data = self._fetch()
        size, dt = self._meta
        if size.numel() == 0:
            return _nest([], list(size))
        flat = list(memoryview(data).cast(_conn.STRUCT_CODE[dt.name]))
        if len(flat) != size.numel():
            # a reply whose data contradicts its shape: wrong values otherwise, or (a huge
            # shape) _nest building lists until memory runs out
            raise _conn.ProtocolError("the reply holds %d values for a tensor of shape %s"
                                      % (len(flat), list(size)))
        return _nest(flat, list(size))

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self._meta is not None and self._meta[0].numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        data = self._fetch()
        size, dt = self._meta
        if size.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return struct.unpack("<" + _conn.STRUCT_CODE[dt.name], bytes(data))[0]

    def __repr__(self) -> str:
        _use(self._s, (self,))
        req = pb.Request()
        req.format.handle = self._h
        return _names.text(self._s._call(req, "print").text)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        """As torch: a 0-dim tensor formats as its number (f"{loss:.4f}", f"{t < 1}" is
        "True"); any other as object does (its str() with an empty spec, else TypeError)."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __len__(self) -> builtins.int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> builtins.bool:
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return builtins.bool(self.item())

    def __float__(self) -> builtins.float:
        return builtins.float(self.item())

    def __int__(self) -> builtins.int:
        return builtins.int(self.item())

    def __index__(self) -> builtins.int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return builtins.int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    # -- autograd --
    def backward(self, gradient: Optional["Tensor"] = None, retain_graph: Any = None,
                 create_graph: Any = False, inputs: Any = None) -> None:
        """Accumulates gradients into the leaves' .grad (or only into `inputs`'); sent without
        waiting, unless the graph holds a custom autograd Function, whose backward runs here."""
        if retain_graph is None:
            retain_graph = create_graph
        if self._ctxs or inputs is not None or create_graph:
            from . import autograd
            autograd.backward([self], [gradient], retain_graph=retain_graph,
                              create_graph=create_graph, inputs=inputs)
            return
        g = gradient._h if gradient is not None else 0
        rg = builtins.bool(retain_graph)
        _numpy.sync_grads(self._s, False)
        if self._s._simple("backward", (self._h, g, rg), "backward") is None:
            req = pb.Request()
            req.backward.handle = self._h
            req.backward.gradient = g
            req.backward.retain_graph = rg
            self._s._send(req, "backward")
        _numpy.sync_grads(self._s, True)

    def requires_grad_(self, requires_grad: Any = True) -> "Tensor":
        """Sets requires_grad in place and returns the tensor (only leaves may change it)."""
        rg = builtins.bool(requires_grad)
        if self._s._simple("set_grad", (self._h, rg), "requires_grad_") is None:
            req = pb.Request()
            req.set_grad.handle = self._h
            req.set_grad.requires_grad = rg
            self._s._send(req, "requires_grad_")
        if not requires_grad:
            self._grad_cache = None
        return self

    def retain_grad(self) -> None:
        """Keeps this non-leaf tensor's .grad after backward()."""
        if self._s._simple("set_grad", (self._h, False, False, True), "retain_grad") is None:
            req = pb.Request()
            req.set_grad.handle = self._h
            req.set_grad.retain_grad = True
            self._s._send(req, "retain_grad")

    def detach(self) -> "Tensor":
        """A view of the same values, out of the autograd graph."""
        return self._s._op("detach", [self])

    # -- conversions --
    # to(), type() and the other call forms torch has besides ops: _legacy.install

    def float(self) -> "Tensor":
        """A float32 copy (``to(float32)``)."""
        return self.to(float32)

    def double(self) -> "Tensor":
        """A float64 copy (``to(float64)``)."""
        return self.to(float64)

    def long(self) -> "Tensor":
        """An int64 copy (``to(int64)``)."""
        return self.to(int64)

    def int(self) -> "Tensor":
        """An int32 copy (``to(int32)``)."""
        return self.to(int32)

    def bool(self) -> "Tensor":
        """A bool copy (``to(bool)``)."""
        return self.to(bool)

    def cpu(self) -> "Tensor":
        """The tensor itself: tensors live on the server, the one device."""
        return self

    # -- operators --
    def _bin(self, name: str, other: Any, reverse: Any = False) -> "Tensor":
        if not isinstance(other, Tensor) and (not isinstance(other, _OPERAND_TYPES) or (
                name == "matmul" and not isinstance(other, _ARRAY_TYPES))):
            # torch's operators answer NotImplemented for an operand they cannot take (a str,
            # None, a list; a number for @): Python then raises its own TypeError ("unsupported
            # operand type(s) for @: 'Tensor' and 'int'"), or compares identities (x == None)
            return NotImplemented
        return self._s._op(name, [other, self] if reverse else [self, other])

    def __add__(self, o: Any) -> "Tensor": return self._bin("add", o)
    def __radd__(self, o: Any) -> "Tensor": return self._bin("add", o, True)
    def __sub__(self, o: Any) -> "Tensor": return self._bin("sub", o)
    def __rsub__(self, o: Any) -> "Tensor": return self._bin("sub", o, True)
    def __mul__(self, o: Any) -> "Tensor": return self._bin("mul", o)
    def __rmul__(self, o: Any) -> "Tensor": return self._bin("mul", o, True)
    def __truediv__(self, o: Any) -> "Tensor": return self._bin("div", o)
    def __rtruediv__(self, o: Any) -> "Tensor": return self._bin("div", o, True)
    def __floordiv__(self, o: Any) -> "Tensor": return self._bin("floor_divide", o)
    def __rfloordiv__(self, o: Any) -> "Tensor": return self._bin("floor_divide", o, True)
    def __mod__(self, o: Any) -> "Tensor": return self._bin("remainder", o)
    def __rmod__(self, o: Any) -> "Tensor": return self._bin("remainder", o, True)
    def __pow__(self, o: Any) -> "Tensor": return self._bin("pow", o)
    def __rpow__(self, o: Any) -> "Tensor": return self._bin("pow", o, True)
    def __matmul__(self, o: Any) -> "Tensor": return self._bin("matmul", o)
    def __rmatmul__(self, o: Any) -> "Tensor": return self._bin("matmul", o, True)
    def __neg__(self) -> "Tensor": return self._s._op("neg", [self])
    def __pos__(self) -> "Tensor": return self
    def __abs__(self) -> "Tensor": return self._s._op("abs", [self])
    # the bitwise ops (ops.def's bitwise_*): integers and bool, torch's errors for floats
    def __invert__(self) -> "Tensor":
        if self.dtype.is_floating_point:
            raise TypeError("~ (operator.invert) is only implemented on integer and "
                            "Boolean-type tensors")
        return self._s._op("bitwise_not", [self])
    def __and__(self, o: Any) -> "Tensor": return self._bin("bitwise_and", o)
    def __rand__(self, o: Any) -> "Tensor": return self._bin("bitwise_and", o, True)
    def __or__(self, o: Any) -> "Tensor": return self._bin("bitwise_or", o)
    def __ror__(self, o: Any) -> "Tensor": return self._bin("bitwise_or", o, True)
    def __xor__(self, o: Any) -> "Tensor": return self._bin("bitwise_xor", o)
    def __rxor__(self, o: Any) -> "Tensor": return self._bin("bitwise_xor", o, True)
    def __lshift__(self, o: Any) -> "Tensor": return self._bin("bitwise_left_shift", o)
    def __rlshift__(self, o: Any) -> "Tensor": return self._bin("bitwise_left_shift", o, True)
    def __rshift__(self, o: Any) -> "Tensor": return self._bin("bitwise_right_shift", o)
    def __rrshift__(self, o: Any) -> "Tensor": return self._bin("bitwise_right_shift", o, True)
    def __eq__(self, o: Any) -> "Tensor": return self._bin("eq", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> "Tensor": return self._bin("ne", o)  # type: ignore[override]
    def __lt__(self, o: Any) -> "Tensor": return self._bin("lt", o)
    def __le__(self, o: Any) -> "Tensor": return self._bin("le", o)
    def __gt__(self, o: Any) -> "Tensor": return self._bin("gt", o)
    def __ge__(self, o: Any) -> "Tensor": return self._bin("ge", o)
    __hash__ = object.__hash__

    def _inplace(self, name: str, o: Any) -> "Tensor":
        if not isinstance(o, Tensor) and not isinstance(o, _OPERAND_TYPES):
            return NotImplemented  # as _bin: Python's TypeError ("... for +=: ...")
        return self._s._op(name, [self, o], inplace=True)

    def __iadd__(self, o: Any) -> "Tensor": return self._inplace("add", o)
    def __isub__(self, o: Any) -> "Tensor": return self._inplace("sub", o)
    def __imul__(self, o: Any) -> "Tensor": return self._inplace("mul", o)
    def __itruediv__(self, o: Any) -> "Tensor": return self._inplace("div", o)
    def __ifloordiv__(self, o: Any) -> "Tensor": return self._inplace("floor_divide", o)
    def __imod__(self, o: Any) -> "Tensor": return self._inplace("remainder", o)
    def __ipow__(self, o: Any) -> "Tensor": return self._inplace("pow", o)
    def __iand__(self, o: Any) -> "Tensor": return self._inplace("bitwise_and", o)
    def __ior__(self, o: Any) -> "Tensor": return self._inplace("bitwise_or", o)
    def __ixor__(self, o: Any) -> "Tensor": return self._inplace("bitwise_xor", o)
    def __ilshift__(self, o: Any) -> "Tensor": return self._inplace("bitwise_left_shift", o)
    def __irshift__(self, o: Any) -> "Tensor": return self._inplace("bitwise_right_shift", o)

    # -- indexing: x[0], x[:, 1:3], x[..., -1] are views; x[i] = v writes through them;
    # -- tensors, lists, ranges and bool masks (advanced indexing) gather and scatter on the
    # -- server (ops index and index_put), as torch's aten::index and index_put_ --
    def _index_key(self, key: Any) -> Any:
        """key as a tuple of items, torch's way: a tuple, or a sequence holding slices, None,
        ..., tensors or sequences (numpy's legacy rule), is several indices; anything else
        one."""
        if isinstance(key, tuple):
            return key
        if isinstance(key, list) and len(key) < 32 and any(
                k is None or k is Ellipsis or isinstance(k, (slice, Tensor, list, tuple, range))
                or (np is not None and isinstance(k, np.ndarray)) for k in key):
            return tuple(key)
        return (key,)

    def _index_tensor(self, k: Any) -> Any:
        """An advanced index item as a server tensor (lists, ranges and numpy arrays are
        uploaded once), or None when k is a basic item."""
        if isinstance(k, Tensor):
            if k.ndim == 0 and k.dtype.name in ("int64", "int32"):
                return None  # torch selects with a 0-dim integer tensor, as with an int
            return k
        if isinstance(k, (range, tuple)):  # a tuple inside the key is a sequence index
            k = list(k)
        if isinstance(k, list):
            if not k:
                return self._s.tensor([], dtype=int64)
            t = self._s.tensor(k)
            if t.dtype.is_floating_point:  # torch reads a list of numbers as int64 (truncating)
                t = t._s._op("to", [t], dtype="int64")
            return t
        if np is not None and isinstance(k, np.ndarray):
            if k.ndim == 0 and k.dtype.kind in "iu":
                return None
            if k.dtype.kind in "iu":
                k = k.astype(np.int64)
            return self._s.tensor(k)
        return None

    def _index(self, key: Any, copy_bools: builtins.bool) -> "Tensor":
        """The tensor x[key] names. Checks are made here, against the shape, so that a bad
        index raises torch's error at its own line rather than at the next blocking point."""
        t, adv = self._index_parts(key)
        if adv is None:
            if t[1] and copy_bools:
                return t[0]._s._op("clone", [t[0]])
            return t[0]
        view, idx, mask = adv
        return self._s._op("index", [view] + idx, index_mask=mask)

    def _index_parts(self, key: Any) -> Any:
        """((view, copied), None) for basic indexing (slices, ints, None, ...), or
        (None, (view, index tensors, index_mask)) when key holds advanced items: the view is
        what the basic items make, the index tensors (int64; bool masks through nonzero) apply
        to the dims index_mask names. Follows torch's applySlicing: the items walk the view's
        dims in order, an index tensor (a bool mask too, whatever its rank) stands at one
        position; aten::index then expands each mask into one index per mask dim, checking
        it against the view there. The view's shape is followed here, without asking the
        server."""
        key = self._index_key(key)
        items = []
        for k in key:
            it = self._index_tensor(k)
            if it is not None:
                if it.dtype.name not in ("int64", "bool"):
                    raise IndexError("tensors used as indices must be long, byte or bool tensors")
                if it.dtype.name == "bool" and it.ndim == 0:  # a 0-dim mask: a Python bool
                    items.append(builtins.bool(it.item()))
                else:
                    items.append(it)
                continue
            if isinstance(k, Tensor):  # a 0-dim integer tensor: an int
                k = k.item()
            elif np is not None and isinstance(k, np.ndarray):
                k = builtins.int(k)
            if not (k is None or k is Ellipsis or isinstance(k, (slice, builtins.int))
                    or (np is not None and isinstance(k, (np.integer, np.bool_)))):
                raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long "
                                 "or byte Variables are valid indices (got %s)"
                                 % type(k).__name__)
            if isinstance(k, slice) and k.step is not None:
                if k.step == 0:
                    raise ValueError("slice step cannot be zero")
                if k.step < 0:
                    raise ValueError("step must be greater than zero")
            items.append(k)
        advanced = any(isinstance(k, Tensor) for k in items)
        shape = self.shape

        def width(k: Any) -> builtins.int:
            # None, Ellipsis and bools take no dimension of x; a bool mask its rank
            if isinstance(k, Tensor):
                return k.ndim if k.dtype.name == "bool" else 1
            return 0 if (k is None or k is Ellipsis or _is_bool(k)) else 1
        specified = builtins.sum(width(k) for k in items)
        if not shape and any(isinstance(k, builtins.int) and not _is_bool(k) or
                             (np is not None and isinstance(k, np.integer)) for k in items):
            raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                             "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number")
        if specified > len(shape):
            raise IndexError("too many indices for tensor of dimension %d" % len(shape))
        t, d, copy = self, 0, False
        vs = list(shape)  # the view's shape as the items make it
        entries: List[Any] = []  # (dim of the view, index tensor or bool mask)
        for i, k in enumerate(items):
            if k is None:
                t = t._s._op("unsqueeze", [t], dim=d)
                vs.insert(d, 1)
                d += 1
            elif k is Ellipsis:
                d += len(shape) - specified
            elif isinstance(k, Tensor):
                entries.append((d, k))
                d += 1
            elif _is_bool(k):
                # torch: True adds a dim of size 1, False one of size 0 (nothing selected),
                # and the result is a copy, as advanced indexing makes one.
                t = t._s._op("unsqueeze", [t], dim=d)
                vs.insert(d, 1)
                if advanced:
                    entries.append((d, self._s.tensor([0] if k else [], dtype=int64)))
                elif not k:
                    t = t._s._op("slice", [t], dim=d, start=0, end=0, step=1)
                    vs[d] = 0
                d += 1
                copy = True
            elif isinstance(k, slice):
                # torch slices even with `:` (the result's grad_fn is SliceBackward0)
                if d >= len(vs):
                    raise IndexError("too many indices for tensor of dimension %d" % len(shape))
                start = 0 if k.start is None else k.start
                end = 2 ** 63 - 1 if k.stop is None else k.stop
                t = t._s._op("slice", [t], dim=d, start=start, end=end, step=k.step or 1)
                vs[d] = len(range(*slice(start, min(end, 2 ** 62), k.step or 1).indices(vs[d])))
                d += 1
            else:
                if d >= len(vs):  # two ellipses, which torch lets through, overshot
                    raise IndexError("too many indices for tensor of dimension %d" % len(shape))
                k, n = builtins.int(k), vs[d]
                if not -n <= k < n:
                    # torch names the index's position in the key as its dimension
                    raise IndexError("index %d is out of bounds for dimension %d with size %d"
                                     % (k, i, n))
                t = t._s._op("select", [t], dim=d, start=builtins.int(k))
                del vs[d]
        if entries:
            # aten::index: entries at their view positions, each mask expanded into one int64
            # index per mask dim (its nonzero's columns), the masks checked there
            slots: List[Any] = []
            for dd, k in entries:
                while len(slots) < dd:
                    slots.append(None)
                if k.dtype.name == "bool":
                    base = len(slots)
                    for j in range(k.ndim):
                        if base + j >= len(vs) or k.shape[j] != vs[base + j]:
                            raise IndexError(
                                "The shape of the mask %s at index %d does not match the shape "
                                "of the indexed tensor %s at index %d"
                                % (list(k.shape), j, vs, base + j))
                    nz = self._s._op("nonzero", [k])
                    slots.extend(nz._s._op("select", [nz], dim=1, start=j)
                                 for j in range(k.ndim))
                else:
                    slots.append(k)
            if len(slots) > len(vs):
                raise IndexError("too many indices for tensor of dimension %d" % len(vs))
            idx = [it for it in slots if it is not None]
            shapes = [list(it.shape) for it in idx]
            b: List[builtins.int] = []
            for sh in shapes:
                n = max(len(b), len(sh))
                pb, ps = [1] * (n - len(b)) + b, [1] * (n - len(sh)) + sh
                if any(x != y and x != 1 and y != 1 for x, y in zip(pb, ps)):
                    raise IndexError("shape mismatch: indexing tensors could not be broadcast "
                                     "together with shapes %s"
                                     % ", ".join(str(sh2) for sh2 in shapes))
                b = [y if x == 1 else x for x, y in zip(pb, ps)]
            mask = 0
            for dd, it in enumerate(slots):
                if it is not None:
                    mask |= 1 << dd
            return None, (t, idx, mask)
        if t is self:  # x[...]: a new view of the same storage
            t = self._s._op("view", [self], dims=list(self.shape))
        return (t, copy), None

    def nonzero(self, *, as_tuple: Any = False) -> Any:
        """The indices of the nonzero elements, [n, ndim] int64; as_tuple=True: one [n]
        tensor per dim (views of that result's columns), as torch.where(cond) gives."""
        nz = self._s._op("nonzero", [self])
        if not as_tuple:
            return nz
        if self.ndim == 0:  # torch: one index tensor, of 0 or 1 zeros
            return (self._s.tensor([0] * nz.shape[0], dtype=int64),)
        return tuple(nz._s._op("select", [nz], dim=1, start=j) for j in range(self.ndim))

    def __getitem__(self, key: Any) -> "Tensor":
        """x[0], x[:, 1:3], x[..., -1], x[None]: views of x, as in torch; integer tensors,
        lists, ranges, numpy arrays and bool masks (advanced indexing) give a copy, gathered
        on the server, with torch's result shape (and IndexBackward0)."""
        return self._index(key, copy_bools=True)

    def __setitem__(self, key: Any, value: Any) -> None:
        """x[key] = value writes into x in place: value is a tensor, a number, or anything
        ``tensor()`` accepts (a nested list, a numpy array), broadcast to the selection; with
        advanced items (x[mask] = 0, x[idx] = v) through index_put_ on the server."""
        t, adv = self._index_parts(key)
        if adv is not None:
            view, idx, mask = adv
            if isinstance(value, (builtins.int, builtins.float, builtins.bool)) or (
                    np is not None and isinstance(value, np.generic)):
                if isinstance(value, np.generic):
                    value = value.item()
            else:
                if not isinstance(value, Tensor):
                    value = self._s.tensor(value, dtype=self.dtype)
                if value.ndim > 0 and value.shape[0] == 1:  # torch drops leading 1s
                    sh = list(value.shape)
                    while sh and sh[0] == 1:
                        sh.pop(0)
                    value = value._s._op("reshape", [value], dims=sh)
                if value.numel() == 1 and _one_mask(key):
                    # torch's index_put_ fills through one bool mask with value.item(), a
                    # snapshot: the server refuses a value overlapping x, so pass it a copy
                    value = value.clone()
            self._s._op("index_put", [view] + idx + [value], inplace=True, index_mask=mask)
            return
        view = t[0]
        if isinstance(value, (builtins.int, builtins.float)) or (
                np is not None and isinstance(value, np.generic)):
            view._s._op("fill", [view, value], inplace=True)
            return
        if not isinstance(value, Tensor):
            value = view._s.tensor(value)
        view._s._op("copy", [view, value], inplace=True)

    def index_put_(self, indices: Any, values: Any, accumulate: Any = False) -> "Tensor":
        """torch's Tensor.index_put_: self[indices] = values in place (accumulate=True adds,
        duplicates included); indices is a tuple with an int64 tensor, a bool mask or None for
        each leading dim."""
        return self._index_put(indices, values, accumulate, True)

    def index_put(self, indices: Any, values: Any, accumulate: Any = False) -> "Tensor":
        """torch's Tensor.index_put: index_put_ on a copy."""
        return self._index_put(indices, values, accumulate, False)

    def _index_put(self, indices: Any, values: Any, accumulate: Any, inplace: Any) -> "Tensor":
        if not isinstance(indices, (tuple, list)):
            raise TypeError("index_put_(): argument 'indices' must be tuple of Tensors, not %s"
                            % type(indices).__name__)
        idx: List[Tensor] = []
        mask, d = 0, 0
        for k in indices:
            if k is None:
                d += 1
                continue
            if not isinstance(k, Tensor):
                k = self._s.tensor(k)
            if k.dtype == bool:  # a mask takes as many dims as it has, through nonzero
                for col in k.nonzero(as_tuple=True):
                    idx.append(col)
                    mask |= 1 << d
                    d += 1
                continue
            idx.append(k)
            mask |= 1 << d
            d += 1
        if not isinstance(values, Tensor):
            values = self._s.tensor(values, dtype=self.dtype)
        elif not accumulate and values.numel() == 1 and _one_mask(tuple(indices)):
            values = values.clone()  # as __setitem__: torch reads the value once, as a number
        target = self if inplace else self.clone()
        self._s._op("index_put", [target] + idx + [values], inplace=True, index_mask=mask,
                    accumulate=builtins.bool(accumulate))
        return target

    @property
    def mT(self) -> "Tensor":  # noqa: N802 - torch's name
        """The last two dims swapped (a view), as torch's ``x.mT``."""
        return self._s._op("mT", [self])

    def max(self, dim: Any = None, keepdim: Any = False) -> Any:
        """The largest element; with dim, (values, indices) along it; with a tensor, the
        elementwise maximum."""
        if dim is None:
            return self._s._op("max", [self])
        if isinstance(dim, Tensor):
            return self._s._op("maximum", [self, dim])
        return self._s._op2("max", [self], dim=dim, keepdim=keepdim)

    def min(self, dim: Any = None, keepdim: Any = False) -> Any:
        """The smallest element; with dim, (values, indices) along it; with a tensor, the
        elementwise minimum."""
        if dim is None:
            return self._s._op("min", [self])
        if isinstance(dim, Tensor):
            return self._s._op("minimum", [self, dim])
        return self._s._op2("min", [self], dim=dim, keepdim=keepdim)

    def random_(self, *args: Any, generator: Any = None) -> "Tensor":
        """torch's random_(), random_(to) and random_(from, to) (to None: up to the dtype's
        largest value), from the session's generator or `generator`."""
        if len(args) > 2:
            raise TypeError("random_() takes from 1 to 3 positional arguments but %d were given"
                            % (len(args) + 1))
        bound: dict = {"input": self}
        if len(args) == 1:
            bound["to"] = args[0]
        elif len(args) == 2:
            bound["from"] = args[0]
            if args[1] is not None:
                bound["to"] = args[1]
        if generator is not None:
            bound["generator"] = generator
        return _run(self._s, _OP_TABLE["random"], bound, True, "random_")

    def __getattr__(self, name: str) -> Any:
        """Every other op by its torch name: x.exp(), x.sum(dim=...), x.add_(5) ... (an op
        whose signature has an operand `input`: the tensor the method is called on)."""
        if name.startswith("_"):
            raise AttributeError(name)
        inplace = name.endswith("_")
        base = name[:-1] if inplace else name
        op = _OP_TABLE.get(_ALIASES.get(base, base))
        if (op is None or not op.method or (inplace and not op.inplace) or
                (not inplace and op.inplace_only)):
            raise AttributeError("'Tensor' object has no attribute '%s'" % name)
        tensor = self

        def method(*args: Any, **kw: Any) -> "Tensor":
            bound = _bind(name, op, args, _legacy.numpy_names(op, kw), receiver=tensor)
            return _run(tensor._s, op, bound, inplace, name)
        text, sig = _describe(op, True)
        method.__name__ = method.__qualname__ = name
        method.__doc__ = ("Tensor.%s%s: the server's %s op%s, with torch's arguments."
                          % (name, text, op.name, " in place" if inplace else ""))
        method.__signature__ = sig  # type: ignore[attr-defined]
        return method


# -- ops: every fact about one comes from server/core/ops.def, through the generated _ops --
class _Param(NamedTuple):
    """One parameter of an op's torch signature (see _ops)."""
    name: str               # torch's name ("dim0", "input", "size")
    field: str              # the OpArgs field it travels in; for an operand "", "number",
                            # "tensor" or "tensors"
    required: builtins.bool
    default: Any
    operand: builtins.bool  # a tensor operand (or a number standing for one), in wire order
    varargs: builtins.bool  # *size: the remaining positional arguments, or one sequence
    kwonly: builtins.bool


class _Op(NamedTuple):
    """An op as _ops states it, its signature parsed into _Params."""
    name: str
    inplace: builtins.bool
    params: Tuple[_Param, ...]
    receiver: Optional[builtins.int]  # index in params of the operand `input`, the tensor a
                                      # method is called on; None: no Tensor method
    method: builtins.bool             # a Tensor method: a receiver, and torch has one (flags)
    inplace_only: builtins.bool       # the method exists only as name_ (x.fill_, no x.fill)
    # for _bind, once per op: the parameters a function's positional arguments fill, those a
    # method's fill (less the receiver), their names, and those that must be given
    positional: Tuple[_Param, ...]
    method_positional: Tuple[_Param, ...]
    names: Tuple[str, ...]
    required: Tuple[_Param, ...]
    # ops.def's `-> a, b`: ((name, when), ...) in wire order, or () for one tensor; named: a
    # torch.return_types pair rather than a plain tuple
    outputs: Tuple[Tuple[str, Optional[str]], ...] = ()
    named: builtins.bool = False
    overloaded: builtins.bool = False  # torch has call forms the signature cannot state


def _make_op(name: str, facts: dict) -> _Op:
    params = tuple(_Param(*p) for p in facts["params"])
    receiver = next((i for i, p in enumerate(params) if p.operand and p.name == "input"), None)
    # torch has no Tensor method by this name for these (ops.def's flags)
    method = receiver is not None and not {"NO_METHOD", "FUNCTIONAL", "INTERNAL"} & set(
        facts["flags"])
    positional = tuple(p for p in params if not p.kwonly)
    return _Op(name, facts["inplace"], params, receiver, method,
               "INPLACE_ONLY" in facts["flags"], positional,
               tuple(p for p in positional if p.name != "input" or receiver is None),
               tuple(p.name for p in params),
               tuple(p for p in params if p.required and not p.varargs),
               tuple(facts.get("outputs", ())), facts.get("named", False),
               "OVERLOADED" in facts["flags"])


_OP_TABLE = {name: _make_op(name, facts) for name, facts in _ops.OPS.items()}
_OPCODES = {n[3:].lower(): v for n, v in pb.Op.items() if n != "OP_UNSPECIFIED"}
# Request's body fields by kind ("backward": 15), for _fast's simple_fast
_BODY_FIELD = {f.name: f.number for f in pb.Request.DESCRIPTOR.oneofs_by_name["body"].fields}
_FAST = _conn.FAST
if _FAST:
    _conn._fast.setup(pb.Response, Tensor, _PKG_DIR, _conn.arg_spec(), _conn.DTYPE_WIRE)
    _caller = _conn._fast.caller  # noqa: F811 - the same walk, in C
_VIEW_OPS = {name for name, facts in _ops.OPS.items() if "VIEW" in facts["flags"]}
for _named in [op.name for op in _OP_TABLE.values() if op.named]:
    return_types._of(_named)  # tensord.return_types.sort exists before the first sort
_OPS = set(_OP_TABLE)
# The keywords an op request can carry (Conn.op_request): OpArgs' fields and a second output.
_ARG_NAMES = {f.name for f in pb.OpArgs.DESCRIPTOR.fields} | {"out2"}
# torch's other names for an op
_ALIASES = {"concat": "cat", "concatenate": "cat", "ger": "outer"}


def _is_bool(k: Any) -> builtins.bool:
    # Python's bool only: torch takes numpy's np.bool_ as the integer 0 or 1.
    return isinstance(k, builtins.bool)


def _count(n: builtins.int, what: str) -> str:
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


def _bind(fname: str, op: _Op, args: tuple, kw: dict, receiver: Any = None) -> dict:
    """Binds a call's arguments to the op's torch parameter names, as Python binds a def's:
    positional ones in order (a method's receiver is `input`, and its arguments go to the
    other parameters), a `*size` parameter takes the rest (or one sequence), then keywords.
    Refuses what Python would refuse, with Python's words. Defaults are not filled in."""
    bound: dict = {}
    at: dict = {}  # parameter name: its position in the call (torch's messages name it)
    if receiver is not None:
        bound["input"] = receiver
        positional = op.method_positional
    else:
        positional = op.positional
    n = len(args)
    i = 0
    for p in positional:
        if i >= n:
            break
        if p.varargs:
            rest = args[i:]
            bound[p.name] = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) \
                else rest
            i = n
            break
        bound[p.name] = args[i]
        i += 1
        at[p.name] = i
    if i < n:
        self_ = 1 if receiver is not None else 0  # Python counts a method's self
        raise TypeError("%s() takes %s but %d %s given" % (
            fname, _count(len(positional) + self_, "positional argument"), n + self_,
            "was" if n + self_ == 1 else "were"))
    for k, v in kw.items():
        if k not in op.names:
            # A keyword torch has and the protocol does not (alpha=, rounding_mode=, out=):
            # refused as Python refuses an unknown keyword, before anything is sent.
            raise TypeError("%s() got an unexpected keyword argument '%s'" % (fname, k))
        if k in bound:
            raise TypeError("%s() got multiple values for argument '%s'" % (fname, k))
        bound[k] = v
    if len(bound) < len(op.required) or any(p.name not in bound for p in op.required):
        for kwonly in (False, True):
            missing = ["'%s'" % p.name for p in op.required
                       if p.kwonly == kwonly and p.name not in bound]
            if missing:
                raise TypeError("%s() missing %s: %s" % (
                    fname, _count(len(missing), "required %s argument"
                                  % ("keyword-only" if kwonly else "positional")),
                    " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1
                                 else missing)))
    _check_types(fname, op, bound, at)
    return bound


# OpArgs' field kinds, from the protocol: what a torch parameter travelling in it must be
_FD = pb.OpArgs.DESCRIPTOR.fields_by_name
_INT_TYPES = (3, 18)  # int64, sint64 (the uint64 fields are handles and masks)
_FIELD_KIND = {
    name: ("ints" if f.label == 3 and f.type in _INT_TYPES else
           "int" if f.type in _INT_TYPES else
           "bool" if f.type == 8 else
           "float" if f.type in (1, 2) else
           "number" if f.type == 11 else
           "dtype" if f.type == 14 else
           "str" if f.type == 9 else "")
    for name, f in _FD.items()}
# dtype= of reductions, unbiased= travel otherwise; correction is an int or a float in torch
_FIELD_KIND.update(cast="dtype", unbiased="bool", correction="")
_KIND_WORD = {"int": "int", "ints": "tuple of ints", "bool": "bool", "float": "float",
              "number": "Number", "dtype": "torch.dtype", "str": "str"}


def _type_name(v: Any) -> str:
    return "Tensor" if isinstance(v, Tensor) else type(v).__name__


def _is_int(v: Any) -> builtins.bool:
    return (isinstance(v, builtins.int) and not isinstance(v, builtins.bool)) or (
        np is not None and isinstance(v, np.integer))


def _is_number(v: Any) -> builtins.bool:
    return isinstance(v, (builtins.int, builtins.float, builtins.complex)) or (
        np is not None and isinstance(v, (np.number, np.bool_)))


def _int_tensor(v: Any) -> builtins.bool:
    """A 0-dim integer tensor, which torch's parser takes where an int goes (x.narrow(0, t, 1),
    x.sum(t), x.topk(t)): its value is read then, as torch reads it."""
    return isinstance(v, Tensor) and v.dim() == 0 and v.dtype in (int64, int32)


def _kind_ok(kind: str, v: Any) -> builtins.bool:
    if kind == "int":
        return _is_int(v)  # torch takes one dim here, never a list (those travel in dims)
    if kind == "ints":
        if isinstance(v, (tuple, list)):
            # torch's int lists take 0-dim integer tensors, and bools after the first
            return not any(isinstance(d, (builtins.float, builtins.complex, str)) or d is None
                           or (i == 0 and isinstance(d, builtins.bool))
                           or (isinstance(d, Tensor) and (d.dim() != 0 or
                                                          d.dtype.is_floating_point))
                           for i, d in enumerate(v))
        return _is_int(v)
    if kind == "bool":
        return isinstance(v, builtins.bool)
    if kind == "float":
        return _is_number(v) or isinstance(v, Tensor)
    if kind == "number":
        return _is_number(v) or isinstance(v, Tensor)
    if kind == "dtype":
        return isinstance(v, dtype) or v in (builtins.float, builtins.int, builtins.bool)
    if kind == "str":
        return isinstance(v, str)
    return True


def _check_types(fname: str, op: _Op, bound: dict, at: dict) -> None:
    """torch's argument parser's TypeError for a value of the wrong type (a float or a bool
    where an int goes, a string, a list where a tensor goes, None where no default is None),
    checked here, once for every op, from the protocol field each parameter travels in."""
    def refuse(p: Any, v: Any, want: str) -> None:
        pos = " (position %d)" % at[p.name] if p.name in at else ""
        raise TypeError("%s(): argument '%s'%s must be %s, not %s"
                        % (fname, p.name, pos, want, _type_name(v)))
    if op.overloaded:
        return  # its other call forms (max(x, y), randint(high, size)) are coded by hand
    tensors = any(isinstance(bound.get(q.name), Tensor) for q in op.params if q.operand)
    for p in op.params:
        if p.name not in bound:
            continue
        v = bound[p.name]
        if p.operand:
            if p.field == "tensors":
                if not isinstance(v, (tuple, list)):
                    refuse(p, v, "tuple of Tensors")
                for j, e in enumerate(v):
                    if not isinstance(e, Tensor):
                        raise TypeError("expected Tensor as element %d in argument %d, but "
                                        "got %s" % (j, at.get(p.name, 1) - 1, _type_name(e)))
            elif v is None:
                if p.required:
                    refuse(p, v, "Tensor")
            elif not isinstance(v, Tensor) and not (
                    _is_number(v) and p.field == "number" and (tensors or p.name != "input")):
                refuse(p, v, "Tensor")  # ops.def's `:number` marks where torch takes one
            elif np is not None and isinstance(v, np.bool_):
                bound[p.name] = builtins.bool(v)  # a Python scalar, as torch reads it
            continue
        kind = _FIELD_KIND.get(p.field or p.name, "")
        if not kind or (v is None and not p.required and p.default is None):
            continue
        if p.name == "dim" and isinstance(v, str):
            # torch's reductions, softmax, cat, sort, gather ... also take a dim by name (a
            # str), refused with a RuntimeError; the few without that overload say TypeError
            raise RuntimeError("Name '%s' not found in Tensor[%s]."
                               % (v, ", ".join(["None"] * bound["input"].dim()))
                               if isinstance(bound.get("input"), Tensor) else
                               "%s: You passed a dimname (string) to this op in place of a "
                               "dimension index but it does not yet support this behavior. "
                               "Please pass a dimension index to work around this." % fname)
        if p.name == "dim" and v is None:
            continue  # the op's own rule (an implicit dim, or its refusal)
        if p.name == "padding" and isinstance(v, str):
            continue  # conv's padding="same" / "valid"
        if kind in ("int", "ints") and _int_tensor(v):
            bound[p.name] = v.item()
            continue
        if np is not None and isinstance(v, np.bool_) and kind in ("float", "number"):
            bound[p.name] = builtins.int(v)  # torch takes numpy's bool as a number (not a flag)
            continue
        if v is None or not _kind_ok(kind, v):
            refuse(p, v, _KIND_WORD[kind])


def _asks(op: _Op, name: str, v: Any) -> builtins.bool:
    """Whether v, given for op's parameter `name`, asks for the outputs it chooses."""
    p = next(p for p in op.params if p.name == name)
    return v is not None and (builtins.bool(v) if p.default is False else True)


def _run(s: Session, op: _Op, bound: dict, inplace: builtins.bool, fname: str) -> Any:
    """Sends op with bound arguments (_bind's): operands in signature order, each other
    parameter in its OpArgs field (None: not sent), torch's defaults for those not given."""
    inputs: List[Any] = []
    kw: dict = {}
    cast, receiver = None, None
    # The outputs this call asks for (ops.def's `-> a, b?p`: a flag p, default False, when
    # true; any other p when not None); a flag that only chooses outputs (unique's
    # return_counts) travels as out2 / out3, not in OpArgs.
    slots = [i for i, (_, when) in enumerate(op.outputs) if i > 0 and (
        when is None or _asks(op, when, bound.get(when)))]
    flags = {when for _, when in op.outputs if when is not None} - _ARG_NAMES
    for i, p in enumerate(op.params):
        v = bound.get(p.name, p.default)
        if p.name in flags:
            continue
        if p.operand:
            if i == op.receiver:
                receiver = len(inputs)
            if p.field == "tensors":
                inputs.extend(v)
            elif v is not None or p.required:  # an optional operand (linear's bias) given
                inputs.append(v)
        elif v is None:
            continue
        elif p.field == "cast":
            cast = v  # torch casts the input to dtype first, then computes
        elif p.field == "dims":  # one int or a sequence of them
            kw["dims"] = [builtins.int(d) for d in v] if isinstance(v, (tuple, list)) \
                else [builtins.int(v)]
        elif p.field == "dim" and isinstance(v, (tuple, list)):
            kw["dims"] = list(v)
        elif p.field == "dtype":
            kw["dtype"] = v.name
        elif p.field == "generator":
            kw["generator"] = _generator_handle(s, v)
        elif p.field == "p":  # the norm's order: the server computes the 2-norm
            if v not in (2, "fro", 2.0):
                raise NotImplementedError("only the 2-norm is supported")
        elif p.field == "unbiased":  # torch's older spelling of correction=1 / correction=0
            if p.name in bound and bound.get("correction") is None:
                kw["correction"] = 1.0 if v else 0.0
        else:
            kw[p.field] = v
    if cast is not None and receiver is not None:
        inputs[receiver] = inputs[receiver].to(cast)
    if not slots:
        return s._op(op.name, inputs, inplace=inplace, **kw)
    outs = s._op_outputs(op.name, inputs, slots, **kw)
    if op.named:
        return return_types._of(op.name)(*outs)
    return tuple(outs)


@functools.lru_cache(maxsize=None)
def _describe(op: _Op, method: builtins.bool) -> Tuple[str, Optional[inspect.Signature]]:
    """torch's signature as help() shows it ("(input, dim, *, dtype=None)"), and as an
    inspect.Signature where Python can write one (`from` is a keyword, and randint's low has
    a default before high); a method's leaves out its receiver. Once per op."""
    out, star = [], False
    kinds = inspect.Parameter
    params = []
    for i, p in enumerate(op.params):
        if method and i == op.receiver:
            continue
        if p.kwonly and not star:
            out.append("*")
            star = True
        out.append(("*" if p.varargs else "") + p.name +
                   ("" if p.required or p.varargs else "=%r" % (p.default,)))
        params.append((p.name, kinds.VAR_POSITIONAL if p.varargs else
                       kinds.KEYWORD_ONLY if p.kwonly else kinds.POSITIONAL_OR_KEYWORD,
                       kinds.empty if p.required or p.varargs else p.default))
    try:
        sig: Optional[inspect.Signature] = inspect.Signature(
            [kinds(n, k, default=d) for n, k, d in params])
    except ValueError:
        sig = None
    return "(%s)" % ", ".join(out), sig


def _first_session(args: Sequence[Any]) -> Optional[Session]:
    for a in args:
        if isinstance(a, Tensor):
            return a._s
        if isinstance(a, (list, tuple)):
            s = _first_session(a)
            if s is not None:
                return s
    return None


def _function(name: str, session: Optional[Session] = None) -> Callable[..., Any]:
    """tensord.<op>(...) and Session.<op>(...): the function form of every op with operands,
    bound to torch's signature as the method is (tensord.where(c, x, y) is x.where(c, y))."""
    op = _OP_TABLE.get(_ALIASES.get(name, name))
    if op is None or not any(p.operand for p in op.params):
        # No operands: a creation function, which is a Session method of its own
        if session is not None:
            raise AttributeError("'Session' object has no attribute '%s'" % name)
        raise AttributeError("module 'tensord' has no attribute '%s'" % name)
    first = next(p for p in op.params if p.operand)
    own = op.receiver is not None and callable(vars(Tensor).get(op.name))

    def function(*args: Any, **kw: Any) -> Any:
        if op.name == "where" and len(args) + len(kw) == 1:
            # torch.where(condition): the overload that is condition.nonzero(as_tuple=True)
            cond = args[0] if args else kw.get("condition")
            if kw and "condition" not in kw:
                raise TypeError("where() missing 1 required positional argument: 'condition'")
            if not isinstance(cond, Tensor):
                cond = (session or _session()).as_tensor(cond)
            return cond.nonzero(as_tuple=True)
        bound = _bind(name, op, args, _legacy.numpy_names(op, kw))
        s = session or _first_session([bound.get(p.name) for p in op.params if p.operand]) \
            or _session()
        v = bound.get(first.name)
        if first.name == "input" and not isinstance(v, Tensor) and not (
                type(v) in (builtins.bool, builtins.int, builtins.float) and not own and
                any(isinstance(bound.get(p.name), Tensor) for p in op.params
                    if p.operand and p is not first)):
            # torch.exp([1.0]) as torch.exp(tensor([1.0])); a Python number beside a tensor
            # stays a number (torch.add(2, t) as 2 + t: the lowest tier of result_type)
            bound["input"] = s.as_tensor(v)
        if own:  # a Tensor method written out (max, min, to): the function is that method
            rest = {k: v for k, v in bound.items() if k != "input"}
            return getattr(bound["input"], op.name)(**rest)
        return _run(s, op, bound, False, name)
    text, sig = _describe(op, False)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = ("torch.%s%s: the server's %s op, with torch's arguments%s."
                        % (name, text, op.name, "; the same as ``input.%s(...)``" % op.name
                           if op.receiver is not None else ""))
    function.__signature__ = sig  # type: ignore[attr-defined]
    return function


# -- the default session behind module-level functions --
_default: Optional[Session] = None


def _session() -> Session:
    global _default
    if _default is None:
        _default = Session()
    return _default


def connect(addr: Optional[str] = None, token: Optional[str] = None,
            resume: Any = None, sync: Any = False, progress: Any = False
            ) -> Session:
    """Opens a session at addr ("host:port", "[v6]:port", "unix:/path", a list "a:p,b:p" or
    "dns:NAME:PORT"); see Session."""
    return Session(addr, token, resume=resume, sync=sync, progress=progress)


def _module_creation(name: str) -> Callable[..., Any]:
    """tensord.<name>: Session.<name> on the default session, with its signature (less self)
    and docstring, so help() and inspect show what the method shows."""
    method = getattr(Session, name)

    @functools.wraps(method)
    def f(*args: Any, **kw: Any) -> Any:
        return getattr(_session(), name)(*args, **kw)
    sig = inspect.signature(method)
    f.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore
    f.__qualname__ = name
    return f


_MODULE_CODE = _module_creation("synchronize").__code__  # the wrapper's code, for from_numpy
_FROM_NUMPY_PROBE = False  # from_numpy returns its argument's reference count (a probe)
_FROM_NUMPY_REFS: dict = {}  # a temporary argument's references in from_numpy, by caller
_CREATION = tuple(n for n, f in vars(Session).items() if getattr(f, "_module_function", False))
for _name in _CREATION:
    globals()[_name] = _module_creation(_name)
del _name


# Functions that need no session of their own: module functions, and Session methods too
# (every module function is a Session method, as the issue asks and torch code assumes).
def is_tensor(obj: Any) -> builtins.bool:
    """Whether obj is a tensord Tensor (torch.is_tensor)."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> builtins.int:
    """The number of elements of input (torch.numel)."""
    return input.numel()


def _grad_if(t: Tensor, requires_grad: Any) -> Tensor:
    return t.requires_grad_() if requires_grad else t


def _dtype_kw(dtype: Optional[dtype]) -> dict:
    return {"dtype": dtype.name} if dtype is not None else {}


def _need_tensor(fname: str, v: Any, name: str = "input", position: int = 1) -> None:
    """torch's TypeError for a non-tensor argument of a function the op table does not check."""
    if not isinstance(v, Tensor):
        raise TypeError("%s(): argument '%s' (position %d) must be Tensor, not %s"
                        % (fname, name, position, _type_name(v)))


def zeros_like(input: Tensor, dtype: Optional[dtype] = None,
               requires_grad: Any = False) -> Tensor:
    """Zeros with input's shape (and dtype, unless given)."""
    _need_tensor("zeros_like", input)
    return _grad_if(input._s._op("zeros_like", [input], **_dtype_kw(dtype)), requires_grad)


def ones_like(input: Tensor, dtype: Optional[dtype] = None,
              requires_grad: Any = False) -> Tensor:
    """Ones with input's shape (and dtype, unless given)."""
    _need_tensor("ones_like", input)
    return _grad_if(input._s._op("ones_like", [input], **_dtype_kw(dtype)), requires_grad)


def full_like(input: Tensor, fill_value: Any, dtype: Optional[dtype] = None,
              requires_grad: Any = False) -> Tensor:
    """fill_value with input's shape (and dtype, unless given)."""
    _need_tensor("full_like", input)
    return _grad_if(input._s._op("full_like", [input], min=fill_value, **_dtype_kw(dtype)),
                    requires_grad)


def rand_like(input: Tensor, dtype: Optional[dtype] = None,
              requires_grad: Any = False) -> Tensor:
    """Uniform on [0, 1) with input's shape (and dtype, unless given)."""
    _need_tensor("rand_like", input)
    return _grad_if(input._s._op("rand_like", [input], **_dtype_kw(dtype)), requires_grad)


def randn_like(input: Tensor, dtype: Optional[dtype] = None,
               requires_grad: Any = False) -> Tensor:
    """Standard normal with input's shape (and dtype, unless given)."""
    _need_tensor("randn_like", input)
    return _grad_if(input._s._op("randn_like", [input], **_dtype_kw(dtype)), requires_grad)


# -- tuples of views (torch.chunk, split, unbind, meshgrid), composed of narrow, select, reshape
# and expand on the client; and the comparisons that give a Python bool --
def chunk(input: Tensor, chunks: builtins.int, dim: builtins.int = 0) -> Tuple[Tensor, ...]:
    """torch.chunk: up to `chunks` views along dim, each ceil(size / chunks) long but the last."""
    chunks = chunks.item() if _int_tensor(chunks) else chunks  # torch reads a 0-dim int tensor
    dim = dim.item() if _int_tensor(dim) else dim
    for name, v in (("chunks", chunks), ("dim", dim)):
        if not _is_int(v):
            raise TypeError("chunk(): argument '%s' must be int, not %s" % (name, _type_name(v)))
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: %d" % chunks)
    size = input.size(dim)
    step = max((size + chunks - 1) // chunks, 1) if size else 0
    return split(input, step, dim) if size else tuple(input.narrow(dim, 0, 0)
                                                      for _ in range(chunks))


def split(tensor: Tensor, split_size_or_sections: Any,
          dim: builtins.int = 0) -> Tuple[Tensor, ...]:
    """torch.split: views of split_size_or_sections long along dim (an int: the last may be
    shorter), or of the listed lengths, which must sum to the dim's size."""
    sections = split_size_or_sections
    if (isinstance(sections, (builtins.bool, builtins.float, str)) or sections is None or
            isinstance(sections, (list, tuple)) and not all(_is_int(k) for k in sections) or
            not _is_int(dim)):
        raise TypeError("split() received an invalid combination of arguments - got (Tensor, "
                        "%s, %s)" % (_type_name(sections), _type_name(dim)))
    if tensor.dim() == 0:
        raise RuntimeError("split expects at least a 1-dimensional tensor")
    size = tensor.size(dim)
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [builtins.int(k) for k in split_size_or_sections]
        if sum(sizes) != size or any(k < 0 for k in sizes):
            raise RuntimeError(
                "split_with_sizes expects split_sizes to sum exactly to %d (input tensor's size "
                "at dimension %d), but got split_sizes=[%s]"
                % (size, dim, ", ".join(str(k) for k in sizes)))
    else:
        step = builtins.int(split_size_or_sections)
        if step < 0:
            raise RuntimeError("split expects split_size be non-negative, but got split_size=%d"
                               % step)
        if step == 0 and size != 0:
            raise RuntimeError("split_size can only be 0 if dimension size is 0, but got "
                               "dimension size of %d" % size)
        n = max((size + step - 1) // step, 1) if step else 1
        sizes = [min(step, size - k * step) for k in range(n)]
    out, start = [], 0
    for k in sizes:
        out.append(tensor.narrow(dim, start, k))
        start += k
    return tuple(out)


def unbind(input: Tensor, dim: builtins.int = 0) -> Tuple[Tensor, ...]:
    """torch.unbind: the views input.select(dim, i), for each i."""
    return tuple(input.select(dim, k) for k in range(input.size(dim)))


def meshgrid(*tensors: Any, indexing: Optional[str] = None) -> Tuple[Tensor, ...]:
    """torch.meshgrid: 0-d or 1-d tensors expanded to the grid of their lengths, as views
    (indexing 'ij', torch's default, or 'xy', which swaps the first two grid dims)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn(_names.name("meshgrid: in an upcoming release, it will be required to pass "
                                  "the indexing argument."), UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(_names.name("meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                                       "received: %s" % indexing))
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    for t in tensors:
        if t.dim() > 1:
            raise RuntimeError(_names.name("meshgrid: Expected 0D or 1D tensor in the tensor list "
                                           "but got: %s" % (t,)))
    n = len(tensors)
    swap = indexing == "xy" and n >= 2
    order = list(range(n))
    if swap:
        order[0], order[1] = 1, 0
    lengths = [tensors[order[k]].numel() for k in range(n)]  # the grid's dims
    out = []
    for i, t in enumerate(tensors):
        pos = order.index(i)  # the grid dim t runs along
        shape = [1] * n
        shape[pos] = -1
        out.append(t.reshape(*shape).expand(*lengths))
    return tuple(out)


def einsum(equation: str, *operands: Any) -> Tensor:
    """torch.einsum(equation, *operands) or (equation, [operands]): the server's einsum (one or
    two operands, letters only)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    s = _first_session(operands)
    if s is None:
        raise TypeError("einsum(): argument 'operands' must be a sequence of Tensors")
    return s._op("einsum", list(operands), equation=equation)


def _clamp(input: Tensor, min: Any = None, max: Any = None, inplace: builtins.bool = False,
           name: str = "clamp") -> Tensor:
    """clamp with tensor bounds is clamp_min then clamp_max (ops.def's rows); with numbers, the
    server's clamp op as its signature says."""
    _need_tensor(name, input)
    if (isinstance(min, Tensor) or isinstance(max, Tensor)) and \
            any(b is not None and not isinstance(b, Tensor) for b in (min, max)) and \
            all(not isinstance(b, Tensor) or b.dim() == 0 for b in (min, max)):
        # a tensor beside a number: torch's clamp(Tensor, Scalar?, Scalar?) takes a 0-dim tensor
        # as the number it holds
        min, max = (b.item() if isinstance(b, Tensor) else b for b in (min, max))
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        for b in (min, max):
            if b is not None and not isinstance(b, Tensor):
                raise TypeError("clamp() received an invalid combination of arguments - got "
                                "(Tensor, %s, %s)" % tuple(type(v).__name__ if not isinstance(
                                    v, Tensor) else "Tensor" for v in (min, max)))
        r = input
        if min is not None:
            r = r.clamp_min_(min) if inplace else r.clamp_min(min)
        if max is not None:
            r = r.clamp_max_(max) if inplace else r.clamp_max(max)
        return r
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    bound = {"input": input, **({"min": min} if min is not None else {}),
             **({"max": max} if max is not None else {})}
    return _run(input._s, _OP_TABLE[name], bound, inplace, name)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """torch.clamp(input, min=None, max=None): numbers or tensors as bounds."""
    return _clamp(input, min, max)


def clamp_(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """Tensor.clamp_: clamp in place."""
    return _clamp(input, min, max, inplace=True)


def _two_tensors(fname: str, input: Any, other: Any, method: builtins.bool) -> None:
    """torch's TypeError for an operand of allclose/equal that is no tensor (a number too)."""
    for name, v, pos in (("input", input, 1), ("other", other, 2)):
        _need_tensor(fname, v, name, pos - method)


def _allclose(input: Any, other: Any, rtol: Any, atol: Any, equal_nan: Any,
              method: builtins.bool) -> builtins.bool:
    _two_tensors("allclose", input, other, method)
    return builtins.bool(input.isclose(other, rtol=rtol, atol=atol,
                                       equal_nan=equal_nan).all().item())


def _equal(input: Any, other: Any, method: builtins.bool) -> builtins.bool:
    _two_tensors("equal", input, other, method)
    if list(input.shape) != list(other.shape):
        return False
    return builtins.bool((input == other).all().item())


def allclose(input: Tensor, other: Tensor, rtol: builtins.float = 1e-05,
             atol: builtins.float = 1e-08, equal_nan: builtins.bool = False) -> builtins.bool:
    """torch.allclose: whether isclose holds everywhere (a Python bool)."""
    return _allclose(input, other, rtol, atol, equal_nan, False)


def equal(input: Tensor, other: Tensor) -> builtins.bool:
    """torch.equal: same shape and equal values (dtypes may differ; NaN is unequal)."""
    return _equal(input, other, False)


def _allclose_method(self: Tensor, other: Tensor, rtol: builtins.float = 1e-05,
                     atol: builtins.float = 1e-08,
                     equal_nan: builtins.bool = False) -> builtins.bool:
    """Tensor.allclose: torch.allclose(self, other, ...)."""
    return _allclose(self, other, rtol, atol, equal_nan, True)


def _equal_method(self: Tensor, other: Tensor) -> builtins.bool:
    """Tensor.equal: torch.equal(self, other)."""
    return _equal(self, other, True)


for _f in (chunk, split, unbind, clamp, clamp_):
    setattr(Tensor, _f.__name__, _f)
Tensor.allclose = _allclose_method  # type: ignore[attr-defined]
Tensor.equal = _equal_method  # type: ignore[attr-defined]
for _f in (chunk, split, unbind, meshgrid, einsum, allclose, equal, clamp, clamp_):
    setattr(Session, _f.__name__, staticmethod(_f))

for _f in (is_tensor, numel, zeros_like, ones_like, full_like, rand_like, randn_like):
    setattr(Session, _f.__name__, staticmethod(_f))
del _f


_DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed()
_U64 = (1 << 64) - 1
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState): torch's get_state()
_LEGACY_STATE_BYTES = 5048  # sizeof(CPUGeneratorImplStateLegacy)


@functools.lru_cache(maxsize=16)
def _seeded_state(seed: builtins.int) -> bytes:
    """torch's CPU generator state bytes right after manual_seed(seed): mt19937 seeded with the
    seed's low 32 bits, left 1, next 0, no cached normal sample."""
    mt = [seed & 0xFFFFFFFF]
    for j in range(1, 624):
        p = mt[-1]
        mt.append((1812433253 * (p ^ (p >> 30)) + j) & 0xFFFFFFFF)
    head = struct.pack("<QiiQ", seed, 1, 1, 0) + struct.pack("<624Q", *mt)
    return head + bytes(_STATE_BYTES - len(head))


def _check_state(b: bytes) -> bytes:
    """torch's set_state checks on state bytes; a legacy state becomes a current one."""
    if len(b) not in (_STATE_BYTES, _LEGACY_STATE_BYTES):
        raise RuntimeError("Expected either a CPUGeneratorImplStateLegacy of size %d or a "
                           "CPUGeneratorImplState of size %d but found the input RNG state size "
                           "to be %d" % (_LEGACY_STATE_BYTES, _STATE_BYTES, len(b)))
    _, left, seeded, nxt = struct.unpack_from("<QiiQ", b)
    if not seeded or not 0 < left <= 624 or (nxt & 0xFFFFFFFF) > 624:
        raise RuntimeError("Invalid mt19937 state")
    if len(b) == _LEGACY_STATE_BYTES:
        import math
        x, _, rho = struct.unpack_from("<3d", b, 5016)
        valid = struct.unpack_from("<i", b, 5040)[0]
        y = rho * math.sin(2.0 * math.pi * x) if valid else 0.0
        b = (b[:5016] + struct.pack("<3di", 0.0, y, 0.0, 1 if valid else 0)
             + bytes(_STATE_BYTES - 5044))
    return b


class Generator:
    """torch.Generator: a random stream of its own, on the server, for generator= on rand,
    randn, randint, randperm, normal, multinomial, bernoulli, uniform_ and normal_. It is
    torch's CPU generator (mt19937): seeded alike, it gives torch's values; its stream is
    independent of the session's (manual_seed) and of other generators.

    The stream's state is kept in the session's handle table as an int64 tensor of 632 words
    whose bytes are torch's 5056-byte CPUGeneratorImplState: it is charged to the session,
    freed with this object or the session, and kept in session snapshots. get_state() returns
    a copy of that tensor (tensord has no uint8 dtype; its bytes are torch's ByteTensor:
    torch.tensor(list(numpy.asarray(state.tolist(), dtype='<i8').view('u1')), dtype=torch.uint8)).
    set_state() takes it back, or torch's own state (a torch.ByteTensor, bytes, or a list of
    byte values, current or legacy layout)."""

    def __init__(self, device: Any = "cpu", *, session: Optional[Session] = None) -> None:
        if str(device) != "cpu":
            raise RuntimeError(_names.text("Device type %s is not supported for tensord.Generator() "
                                           "api." % str(device).split(":")[0].upper()))
        self._s = session or _session()
        self._state = self._new_state(_seeded_state(_DEFAULT_SEED))

    def _new_state(self, b: bytes) -> Tensor:
        return self._s.tensor(list(struct.unpack("<%dq" % (len(b) // 8), b)), dtype=int64)

    @property
    def device(self) -> Any:
        return "cpu"

    def manual_seed(self, seed: Any) -> "Generator":
        """Restarts the stream from seed (any int in [-2**63, 2**64)); returns the generator."""
        if isinstance(seed, builtins.float) or not isinstance(seed, builtins.int):
            raise RuntimeError("manual_seed expected a long, but got %s" % type(seed).__name__)
        if not -(1 << 63) <= seed <= _U64:
            raise RuntimeError("Overflow when unpacking long")
        self._state = self._new_state(_seeded_state(builtins.int(seed) & _U64))
        return self

    def seed(self) -> builtins.int:
        """Seeds the stream from the OS's randomness and returns that seed."""
        s = builtins.int.from_bytes(os.urandom(8), "little") & ((1 << 53) - 1)  # torch's 53 bits
        self.manual_seed(s)
        return s

    def initial_seed(self) -> builtins.int:
        """The seed the stream started from (manual_seed's, seed()'s or set_state's)."""
        return builtins.int(self._state.tolist()[0]) & _U64

    def get_state(self) -> Tensor:
        """A copy of the stream's state (torch's state bytes as 632 int64 words), for
        set_state."""
        return self._state.clone()

    def set_state(self, new_state: Any) -> "Generator":
        """Puts the stream back where get_state() found it, or where torch's get_state() bytes
        say."""
        if isinstance(new_state, Tensor):
            if (new_state.dtype != int64 or tuple(new_state.shape) != (_STATE_BYTES // 8,)
                    or new_state._s is not self._s):
                raise RuntimeError("expected a state from tensord.Generator.get_state() (an int64 "
                                   "tensor of %d elements in this session), got %s of shape %s"
                                   % (_STATE_BYTES // 8, new_state.dtype, list(new_state.shape)))
            self._state = new_state.clone()
            return self
        if isinstance(new_state, (bytes, bytearray)):
            b = bytes(new_state)
        elif hasattr(new_state, "dtype") and str(new_state.dtype) == "torch.uint8":
            b = bytes(new_state.tolist())
        elif isinstance(new_state, (list, tuple)):
            b = bytes(new_state)
        else:
            raise TypeError(_names.text("expected a tensord.ByteTensor, but got %s"
                                        % type(new_state).__name__))
        self._state = self._new_state(_check_state(b))
        return self


def _generator_handle(s: Session, g: Any) -> builtins.int:
    """generator= on the wire: the handle of g's state, or 0 for the session's generator."""
    if g is None:
        return 0
    if not isinstance(g, Generator):
        raise TypeError("generator must be a tensord.Generator, not %s" % type(g).__name__)
    if g._s is not s:
        raise RuntimeError("Expected a generator of this session: the generator and the "
                           "tensors are in different sessions")
    return g._state._h


def _one_mask(key: Any) -> builtins.bool:
    """Whether an index key's only tensor item is a bool mask (torch's index_put_ then fills
    through it with the value as a number when the value has one element: no overlap check)."""
    items = key if isinstance(key, tuple) else (key,)
    tensors = [k for k in items if isinstance(k, (Tensor, list)) or
               (np is not None and isinstance(k, np.ndarray))]
    return (len(tensors) == 1 and isinstance(tensors[0], Tensor) and
            tensors[0].dtype == bool and tensors[0].ndim > 0)


def __getattr__(name: str) -> Any:
    """tensord.exp, tensord.sum, tensord.matmul ...: every op as a module function, with
    torch's out= where torch has it (ops that are not views)."""
    f = _function(name)
    return f if _ALIASES.get(name, name) in _VIEW_OPS else _legacy.with_out(f)


_legacy.install(sys.modules[__name__])


# Last, as torch does: `import tensord` makes tensord.nn.functional usable (it imports Tensor).
from . import nn  # noqa: E402,F401
from . import optim  # noqa: E402,F401
from . import utils  # noqa: E402,F401  tensord.utils.data, as torch.utils.data
from .serialization import load, save  # noqa: E402,F401  torch.save / torch.load's format
from ._torchmode import install_as_torch  # noqa: E402,F401  `import torch` means tensord
from . import autograd  # noqa: E402,F401  torch.autograd: grad, Function, Variable
