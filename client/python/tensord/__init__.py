"""tensord: PyTorch's tensor API, with the tensors living on a tensord server.

``import tensord as torch`` runs PyTorch tensor code against the daemon at ``TENSORD_ADDR``
(default 127.0.0.1:7878): module-level functions use a default session opened on first use.
Values, dtypes, shapes, printed text and errors are the server's, which follows PyTorch.

Differences from PyTorch: tensors live on the server, so ``numpy()`` and ``from_numpy()`` copy
(changing the numpy array afterwards does not change the tensor); ``torch.Size`` prints as
``tensord.Size``.
"""
from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _conn
from ._conn import H, ServerError

__all__ = ["Session", "Tensor", "Size", "dtype", "connect", "tensor", "from_numpy", "zeros",
           "ones", "full", "rand", "randn", "arange", "manual_seed", "no_grad", "TensorError",
           "float32", "float64", "int32", "int64", "bool"]

TensorError = ServerError


class dtype:  # noqa: N801 - torch's name
    """A tensor element type; ``tensord.float32`` prints as ``tensord.float32``."""

    def __init__(self, name: str, is_floating_point: bool):
        self.name = name
        self.is_floating_point = is_floating_point

    def __repr__(self) -> str:
        return "tensord." + self.name


float32 = dtype("float32", True)
float64 = dtype("float64", True)
int32 = dtype("int32", False)
int64 = dtype("int64", False)
bool = dtype("bool", False)  # noqa: A001 - torch.bool
float = float32  # noqa: A001
double = float64
long = int64
_DTYPES = {d.name: d for d in (float32, float64, int32, int64, bool)}
_NUMPY = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
          "bool": np.bool_}


class Size(tuple):
    """A tensor's shape: a tuple that prints as ``tensord.Size([2, 3])``."""

    def __repr__(self) -> str:
        return "tensord.Size(%s)" % list(self)


def _infer(data: Any) -> str:
    """torch.tensor's dtype inference: bools, then ints (int64), then floats (float32)."""
    flat = np.asarray(data, dtype=object).ravel()
    import builtins
    if flat.size and all(isinstance(x, (builtins.bool, np.bool_)) for x in flat):
        return "bool"
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, builtins.bool) or
           isinstance(x, (builtins.bool, np.bool_)) for x in flat) and flat.size:
        return "int64"
    return "float32"


class Session:
    """One connection and its server-side session; also a context manager that closes it."""

    def __init__(self, addr: Optional[str] = None, token: Optional[str] = None):
        addr = addr or os.environ.get("TENSORD_ADDR", "127.0.0.1:7878")
        token = token if token is not None else os.environ.get("TENSORD_TOKEN", "")
        if addr.startswith("unix:"):
            self._c = _conn.Conn(None, unix=addr[5:], token=token)
        else:
            host, _, port = addr.rpartition(":")
            self._c = _conn.Conn(int(port), host=host.strip("[]"), token=token)
        self._dead: List[int] = []  # handles of collected tensors, freed with the next request

    @property
    def token(self) -> bytes:
        return self._c.token

    def close(self) -> None:
        req = _conn.pb.Request()
        req.close_session.SetInParent()
        self._c.call(req)
        self._c.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing --
    def _flush_dead(self) -> None:
        if self._dead:
            dead, self._dead = self._dead, []
            self._c.free(*dead)

    def _wrap(self, h: int) -> "Tensor":
        return Tensor(self, h)

    def _op(self, name: str, inputs: Sequence[Any], inplace: bool = False, **kw: Any) -> Any:
        self._flush_dead()
        args = [H(x._h) if isinstance(x, Tensor) else x for x in inputs]
        h = self._c.op(name, args, inplace=inplace, **kw)
        return inputs[0] if inplace else self._wrap(h)

    # -- creation --
    def tensor(self, data: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
               ) -> "Tensor":
        """torch.tensor(data, dtype=None, requires_grad=False): a copy on the server."""
        if isinstance(data, Tensor):
            data = data.numpy()
        name = dtype.name if dtype is not None else (
            _infer(data) if not isinstance(data, np.ndarray) else
            ("bool" if data.dtype == np.bool_ else str(data.dtype)))
        if name not in _NUMPY:
            name = "float64" if name.startswith("float") else "int64"
        arr = np.asarray(data, dtype=_NUMPY[name])
        self._flush_dead()
        return self._wrap(self._c.tensor(np.require(arr, requirements="C"),
                                         requires_grad=requires_grad))

    def from_numpy(self, array: np.ndarray) -> "Tensor":
        """A copy of a numpy array (the tensor lives on the server, unlike torch's view)."""
        return self.tensor(array)

    def _full(self, shape: Iterable[int], value: Any, dt: Optional[dtype],
              requires_grad: Any = False) -> "Tensor":
        req = _conn.pb.Request()
        h = self._c.handle()
        req.full.out = h
        req.full.shape.extend(_shape(shape))
        if dt is not None:
            req.full.dtype = _conn.DTYPES[dt.name][0]
        _conn.scalar(value, req.full.value)
        req.full.requires_grad = requires_grad
        self._flush_dead()
        self._c.call(req)
        return self._wrap(h)

    def zeros(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
              ) -> "Tensor":
        return self._full(shape, 0.0, dtype or float32, requires_grad)

    def ones(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
             ) -> "Tensor":
        return self._full(shape, 1.0, dtype or float32, requires_grad)

    def full(self, shape: Sequence[int], fill_value: Any, dtype: Optional[dtype] = None
             ) -> "Tensor":
        return self._full([shape], fill_value, dtype)

    def _rand(self, shape: Any, normal: Any, dt: Optional[dtype], requires_grad: Any) -> "Tensor":
        req = _conn.pb.Request()
        h = self._c.handle()
        req.rand.out = h
        req.rand.shape.extend(_shape(shape))
        req.rand.distribution = _conn.pb.NORMAL if normal else _conn.pb.UNIFORM
        if dt is not None:
            req.rand.dtype = _conn.DTYPES[dt.name][0]
        req.rand.requires_grad = requires_grad
        self._flush_dead()
        self._c.call(req)
        return self._wrap(h)

    def rand(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
             ) -> "Tensor":
        """Uniform on [0, 1), from the session's seedable generator."""
        return self._rand(shape, False, dtype, requires_grad)

    def randn(self, *shape: Any, dtype: Optional[dtype] = None, requires_grad: Any = False
              ) -> "Tensor":
        return self._rand(shape, True, dtype, requires_grad)

    def arange(self, start: Any, end: Any = None, step: Any = 1,
               dtype: Optional[dtype] = None) -> "Tensor":
        if end is None:
            start, end = 0, start
        req = _conn.pb.Request()
        h = self._c.handle()
        req.arange.out = h
        _conn.scalar(start, req.arange.start)
        _conn.scalar(end, req.arange.end)
        _conn.scalar(step, req.arange.step)
        if dtype is not None:
            req.arange.dtype = _conn.DTYPES[dtype.name][0]
        self._flush_dead()
        self._c.call(req)
        return self._wrap(h)

    def manual_seed(self, seed: int) -> None:
        req = _conn.pb.Request()
        req.manual_seed.seed = seed
        self._c.call(req)

    @contextlib.contextmanager
    def no_grad(self):
        """Ops inside record no graph (how optimizers update weights)."""
        self._c.set_grad_enabled(False)
        try:
            yield
        finally:
            self._c.set_grad_enabled(True)

    def matmul(self, a: "Tensor", b: "Tensor") -> "Tensor":
        return self._op("matmul", [a, b])


def _shape(shape: Any) -> List[int]:
    """Accepts f(2, 3), f((2, 3)) and f([2, 3]) like torch."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return [int(d) for d in shape]


class Tensor:
    """A tensor on the server, named by a handle; freed when this object is collected."""

    def __init__(self, session: Session, handle: int):
        self._s = session
        self._h = handle
        self._finalizer = weakref.finalize(self, session._dead.append, handle)

    # -- facts --
    def _info(self) -> Any:
        return self._s._c.info(self._h)

    @property
    def shape(self) -> Size:
        return Size(self._info().shape)

    def size(self, dim: Optional[int] = None) -> Any:
        s = self.shape
        return s if dim is None else s[dim]

    @property
    def dtype(self) -> dtype:
        return _DTYPES[_conn.WIRE_TO_NAME[self._info().dtype]]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def requires_grad(self) -> Any:
        return self._info().requires_grad

    @property
    def is_leaf(self) -> Any:
        return self._info().is_leaf

    @property
    def grad_fn(self) -> Optional[str]:
        return self._info().grad_fn or None

    @property
    def grad(self) -> Optional["Tensor"]:
        h = self._s._c.grad(self._h)
        return None if h is None else self._s._wrap(h)

    @grad.setter
    def grad(self, value: None) -> None:
        if value is not None:
            raise TypeError("only .grad = None is supported")
        self._s._c.zero_grad_none(self._h)

    # -- values --
    def numpy(self) -> np.ndarray:
        """A copy of the values (the tensor lives on the server)."""
        return self._s._c.get(self._h)[0]

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def item(self) -> Any:
        return self.numpy().reshape(-1)[0].item()

    def __repr__(self) -> str:
        return self._s._c.format(self._h)

    __str__ = __repr__

    # -- autograd --
    def backward(self, gradient: Optional["Tensor"] = None, retain_graph: Any = False) -> None:
        self._s._c.backward(self._h, gradient._h if gradient is not None else 0, retain_graph)

    def requires_grad_(self, requires_grad: Any = True) -> "Tensor":
        req = _conn.pb.Request()
        req.set_grad.handle = self._h
        req.set_grad.requires_grad = requires_grad
        self._s._c.call(req)
        return self

    def detach(self) -> "Tensor":
        return self._s._op("detach", [self])

    # -- ops (a few by name; every server op is reachable through _op) --
    def _bin(self, name: str, other: Any, reverse: Any = False) -> "Tensor":
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
    def __mod__(self, o: Any) -> "Tensor": return self._bin("remainder", o)
    def __pow__(self, o: Any) -> "Tensor": return self._bin("pow", o)
    def __rpow__(self, o: Any) -> "Tensor": return self._bin("pow", o, True)
    def __matmul__(self, o: Any) -> "Tensor": return self._bin("matmul", o)
    def __neg__(self) -> "Tensor": return self._s._op("neg", [self])
    def __eq__(self, o: Any) -> "Tensor": return self._bin("eq", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> "Tensor": return self._bin("ne", o)  # type: ignore[override]
    def __lt__(self, o: Any) -> "Tensor": return self._bin("lt", o)
    def __le__(self, o: Any) -> "Tensor": return self._bin("le", o)
    def __gt__(self, o: Any) -> "Tensor": return self._bin("gt", o)
    def __ge__(self, o: Any) -> "Tensor": return self._bin("ge", o)
    __hash__ = object.__hash__

    def __iadd__(self, o: Any) -> "Tensor": return self._s._op("add", [self, o], inplace=True)
    def __isub__(self, o: Any) -> "Tensor": return self._s._op("sub", [self, o], inplace=True)
    def __imul__(self, o: Any) -> "Tensor": return self._s._op("mul", [self, o], inplace=True)
    def __itruediv__(self, o: Any) -> "Tensor": return self._s._op("div", [self, o], inplace=True)

    # -- indexing: x[0], x[:, 1:3], x[..., -1] are views; x[i] = v writes through them --
    def _index(self, key: Any) -> "Tensor":
        if not isinstance(key, tuple):
            key = (key,)
        nd = self.ndim
        if Ellipsis in key:
            i = key.index(Ellipsis)
            fill = nd - (len(key) - 1 - sum(k is None for k in key))
            key = key[:i] + (slice(None),) * fill + key[i + 1:]
        t, d = self, 0
        for k in key:
            if k is None:
                t = t._s._op("unsqueeze", [t], dim=d)
                d += 1
            elif isinstance(k, slice):
                start = 0 if k.start is None else k.start
                end = 2 ** 63 - 1 if k.stop is None else k.stop
                t = t._s._op("slice", [t], dim=d, start=start, end=end, step=k.step or 1)
                d += 1
            elif isinstance(k, int):
                t = t._s._op("select", [t], dim=d, start=k)
            else:
                raise TypeError("only integers, slices, None and ... are supported as indices")
        return t

    def __getitem__(self, key: Any) -> "Tensor":
        return self._index(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        view = self._index(key)
        if isinstance(value, Tensor):
            view._s._op("copy", [view, value], inplace=True)
        else:
            view._s._op("fill", [view, value], inplace=True)

    @property
    def T(self) -> "Tensor":  # noqa: N802 - torch's name
        return self._s._op("permute", [self], dims=list(range(self.ndim))[::-1])

    def __getattr__(self, name: str) -> Any:
        """Every other op by its torch name: x.exp(), x.sum(dim=...), x.add_(5) ..."""
        if name.startswith("__"):
            raise AttributeError(name)
        inplace = name.endswith("_") and not name.endswith("__")
        op = name[:-1] if inplace else name
        if not hasattr(_conn.pb.Op, "OP_" + op.upper()):
            raise AttributeError("'Tensor' object has no attribute '%s'" % name)

        def call(*args: Any, **kw: Any) -> "Tensor":
            args, kw = _positional(op, args, kw)
            return self._s._op(op, [self, *args], inplace=inplace, **_kwargs(op, kw))
        return call


_SHAPE_OPS = {"reshape", "view", "permute", "expand", "repeat", "flip"}
_POSITIONAL = {"transpose": ("dim", "dim2"), "squeeze": ("dim",), "unsqueeze": ("dim",),
               "softmax": ("dim",), "log_softmax": ("dim",), "select": ("dim", "start"),
               "narrow": ("dim", "start", "end"), "flatten": ("dim", "dim2"),
               "sum": ("dim",), "mean": ("dim",), "prod": ("dim",), "std": ("dim",),
               "var": ("dim",), "max": ("dim",), "min": ("dim",), "argmax": ("dim",),
               "argmin": ("dim",), "all": ("dim",), "any": ("dim",), "logsumexp": ("dim",),
               "norm": ("dim",), "tril": ("dim",), "triu": ("dim",)}


def _positional(op: str, args: tuple, kw: dict):
    """torch's positional arguments (x.reshape(2, 3), x.transpose(0, 1)) as keywords."""
    if op in _SHAPE_OPS and args and not isinstance(args[0], Tensor):
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        kw = dict(kw, dims=[int(d) for d in dims])
        return (), kw
    names = _POSITIONAL.get(op)
    if names and args and not isinstance(args[0], Tensor):
        kw = dict(kw, **dict(zip(names, args)))
        return (), kw
    if op == "flatten":
        kw = dict(kw)
        if "start_dim" in kw:
            kw["dim"] = kw.pop("start_dim")
        if "end_dim" in kw:
            kw["dim2"] = kw.pop("end_dim")
    return args, kw


def _kwargs(op: str, kw: dict) -> dict:
    """torch keyword names to the protocol's OpArgs."""
    out = {}
    if op == "flatten" and "dim2" in kw:
        out["dim2"] = kw.pop("dim2")
        out["has_dim"] = True
    if op in ("max", "min", "argmax", "argmin", "all", "any", "squeeze") and "dim" in kw:
        out["dim"] = kw.pop("dim")  # one dim, and it is given
    for k, v in kw.items():
        if k == "dim" and isinstance(v, (tuple, list)):
            out["dims"] = list(v)
        elif k == "dim" and op in ("sum", "mean", "prod", "std", "var", "norm", "logsumexp"):
            out["dims"] = [v]
        elif k == "dtype":
            out["dtype"] = v.name
        else:
            out[k] = v
    return out


# -- the default session behind module-level functions --
_default: Optional[Session] = None


def _session() -> Session:
    global _default
    if _default is None:
        _default = Session()
    return _default


def connect(addr: Optional[str] = None, token: Optional[str] = None) -> Session:
    """Opens a session at addr ("host:port" or "unix:/path")."""
    return Session(addr, token)


def tensor(data: Any, dtype: Optional[dtype] = None, requires_grad: Any = False) -> Tensor:
    return _session().tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    return _session().from_numpy(array)


def zeros(*shape: Any, **kw: Any) -> Tensor:
    return _session().zeros(*shape, **kw)


def ones(*shape: Any, **kw: Any) -> Tensor:
    return _session().ones(*shape, **kw)


def full(shape: Sequence[int], fill_value: Any, dtype: Optional[dtype] = None) -> Tensor:
    return _session().full(shape, fill_value, dtype)


def rand(*shape: Any, **kw: Any) -> Tensor:
    return _session().rand(*shape, **kw)


def randn(*shape: Any, **kw: Any) -> Tensor:
    return _session().randn(*shape, **kw)


def arange(*args: Any, **kw: Any) -> Tensor:
    return _session().arange(*args, **kw)


def manual_seed(seed: int) -> None:
    _session().manual_seed(seed)


def no_grad():
    return _session().no_grad()


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return a @ b
