"""torch's older and alternative call forms for tensord's Python client.

What real torch code calls besides the ops themselves: ``torch.device`` and ``Tensor.device``
(one device, the server, shown as torch shows the CPU), ``torch.cuda.is_available()`` (False)
and ``.cuda()`` (torch's error), the legacy constructors (``torch.Tensor(2, 3)``,
``FloatTensor([1, 2])`` ...), ``new_*`` methods, ``Tensor.data``, layout facts (``stride()``,
``storage_offset()``, ``is_contiguous()``, asked of the server), ``type()``, ``*_as`` methods,
``x.T``'s deprecation warning, numpy-style ``axis=``/``keepdims=`` and ``out=``.

install() puts these on the package and its Tensor class; it runs once, at import.
"""
from __future__ import annotations

import builtins
import types
import warnings
from typing import Any, Optional

from . import _names

_CUDA_ERROR = "Torch not compiled with CUDA enabled"
_DEVICE_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve",
                 "fpga", "ort", "xla", "lazy", "vulkan", "mps", "meta", "hpu", "privateuseone")
_LEGACY = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
           "int32": "IntTensor", "bool": "BoolTensor"}
_T_WARNING = ("The use of `x.T` on tensors of dimension other than 2 to reverse their shape is "
              "deprecated and it will throw an error in a future release. Consider `x.mT` to "
              "transpose batches of matrices or `x.permute(*tensord.arange(x.ndim - 1, -1, -1))` "
              "to reverse the dimensions of a tensor.")
_T_WARNED = [False]  # torch warns once per process (TORCH_WARN_ONCE)
# numpy's spellings torch's argument parser accepts for its own parameter names
_NUMPY_NAMES = {"axis": "dim", "keepdims": "keepdim"}

td: Any = None  # the tensord package, set by install()


class device:  # noqa: N801 - torch's name
    """torch.device: a device type and index. Tensors here are on the server, shown as "cpu"."""

    def __init__(self, type: Any, index: Optional[builtins.int] = None):  # noqa: A002
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, builtins.int):
            type, index = "cuda", type
        elif isinstance(type, str) and ":" in type and index is None:
            type, _, i = type.partition(":")
            index = builtins.int(i)
        if type not in _DEVICE_TYPES:
            raise RuntimeError("Expected one of %s device type at start of device string: %s"
                               % (", ".join(_DEVICE_TYPES), type))
        self.type = type
        self.index = index

    def __repr__(self) -> str:
        if self.index is None:
            return "device(type='%s')" % self.type
        return "device(type='%s', index=%d)" % (self.type, self.index)

    def __str__(self) -> str:
        return self.type if self.index is None else "%s:%d" % (self.type, self.index)

    def __eq__(self, other: Any) -> builtins.bool:
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> builtins.int:
        return hash((self.type, self.index))


_CPU = device("cpu")


def _check_device(d: Any) -> None:
    """Refuses a CUDA device as torch built without CUDA does."""
    if d is None:
        return
    if not isinstance(d, device):
        d = device(d)
    if d.type == "cuda":
        raise AssertionError(_CUDA_ERROR)


def _is_device(x: Any) -> builtins.bool:
    return isinstance(x, (device, str)) or (isinstance(x, builtins.int) and
                                           not isinstance(x, builtins.bool))


def _dtype_of(x: Any) -> Any:
    """A dtype named by a dtype, a legacy type string ('torch.FloatTensor', 'tensord.LongTensor')
    or a legacy constructor (FloatTensor)."""
    if isinstance(x, td.dtype):
        return x
    name = getattr(x, "_legacy_dtype", None)
    if name is not None:
        return td._DTYPES[name]
    if isinstance(x, str):
        short = x.rsplit(".", 1)[-1]
        for dname, legacy in _LEGACY.items():
            if short == legacy and x.split(".")[0] in ("torch", "tensord"):
                return td._DTYPES[dname]
        raise ValueError("invalid type: '%s'" % x)
    raise TypeError("dtype must be a type, str, or dtype object")


# -- Tensor methods and properties --
def _device_prop(self: Any) -> device:
    """The tensor's device: the server, shown as torch shows the CPU."""
    return _CPU


def _is_cuda(self: Any) -> builtins.bool:
    """False: tensors are on the server, never on a CUDA device."""
    return False


def _cuda(self: Any, *args: Any, **kw: Any) -> Any:
    """torch built without CUDA: refused with torch's error."""
    raise AssertionError(_CUDA_ERROR)


def _to(self: Any, *args: Any, **kw: Any) -> Any:
    """torch's Tensor.to forms: to(dtype), to(device), to(device, dtype), to(other), with
    dtype=, device=, non_blocking=, copy=. Same dtype and no copy: the tensor itself."""
    dt = kw.pop("dtype", None)
    dev = kw.pop("device", None)
    copy = kw.pop("copy", False)
    kw.pop("non_blocking", None)
    kw.pop("memory_format", None)
    if kw:
        raise TypeError("to() got an unexpected keyword argument '%s'" % next(iter(kw)))
    rest = list(args)
    if rest and isinstance(rest[0], td.Tensor):
        dt = rest.pop(0).dtype
    elif rest and _is_device(rest[0]) and not isinstance(rest[0], td.dtype):
        dev = rest.pop(0)
    if rest and isinstance(rest[0], td.dtype):
        dt = rest.pop(0)
    for extra in rest[:2]:  # non_blocking, copy positionally
        if not isinstance(extra, builtins.bool):
            raise TypeError("to() received an invalid combination of arguments")
    if len(rest) > 1:
        copy = rest[1]
    _check_device(dev)
    if dt is None or dt is self.dtype:
        return self.clone() if copy else self
    return self._s._op("to", [self], dtype=dt.name)


def _type(self: Any, dtype: Any = None, non_blocking: Any = False, **kw: Any) -> Any:
    """type(): the legacy type name ('tensord.FloatTensor', torch's name with this package's
    prefix, as dtypes print); type(t): the tensor in that type."""
    if dtype is None:
        return _names.name(_LEGACY[self.dtype.name])
    return _to(self, _dtype_of(dtype))


def _type_as(self: Any, other: Any) -> Any:
    """The tensor in other's dtype (itself when they match)."""
    return _to(self, other.dtype)


def _view_as(self: Any, other: Any) -> Any:
    """self.view(other.size())."""
    return self.view(list(other.shape))


def _expand_as(self: Any, other: Any) -> Any:
    """self.expand(other.size())."""
    return self.expand(list(other.shape))


def _reshape_as(self: Any, other: Any) -> Any:
    """self.reshape(other.size())."""
    return self.reshape(list(other.shape))


def _layout(self: Any) -> Any:
    info = self._info()
    return list(info.shape), list(info.strides), info.storage_offset


def _stride(self: Any, dim: Optional[builtins.int] = None) -> Any:
    """The strides, in elements (asked of the server); with dim, the one along dim."""
    shape, strides, _ = _layout(self)
    if len(strides) != len(shape):  # a server that states no layout: C order
        strides = _c_strides(shape)
    if dim is None:
        return tuple(strides)
    n = len(shape)
    if not (-max(n, 1) <= dim < max(n, 1)):
        raise IndexError("Dimension out of range (expected to be in range of [%d, %d], but "
                         "got %d)" % (-max(n, 1), max(n, 1) - 1, dim))
    if n == 0:
        raise IndexError("Dimension specified as %d but tensor has no dimensions" % dim)
    return strides[dim]


def _c_strides(shape: Any) -> Any:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= max(d, 1)
    return out[::-1]


def _storage_offset(self: Any) -> builtins.int:
    """The view's first element's offset in its storage, in elements (asked of the server)."""
    return builtins.int(_layout(self)[2])


def _is_contiguous(self: Any, memory_format: Any = None) -> builtins.bool:
    """Whether the elements lie in C order with no gaps (torch's rule: dims of size 1 do not
    count, and an empty tensor is contiguous)."""
    shape, strides, _ = _layout(self)
    if len(strides) != len(shape):
        return True
    if 0 in shape:
        return True
    want = 1
    for d, s in zip(reversed(shape), reversed(strides)):
        if d != 1:
            if s != want:
                return False
            want *= d
    return True


def _data_get(self: Any) -> Any:
    """A detached alias of the tensor: the same values, out of the autograd graph."""
    return self.detach()


def _data_set(self: Any, value: Any) -> None:
    # `w.data -= g` assigns back the alias it changed in place: nothing to do then
    if isinstance(value, td.Tensor) and value._root is not None and (
            value._root is self or value._root is self._root) and value.shape == self.shape:
        return
    if not isinstance(value, td.Tensor) or value.shape != self.shape:
        raise NotImplementedError("x.data = t is supported for t of x's shape only")
    self.detach().copy_(value)  # the alias is out of the graph: nothing is recorded


def _new_kw(self: Any, dtype: Any) -> Any:
    return dtype if dtype is not None else self.dtype


def _with_grad(t: Any, requires_grad: Any) -> Any:
    return t.requires_grad_() if requires_grad else t


def _new_ones(self: Any, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: Any = False) -> Any:
    """Ones of the given size, in self's dtype (unless given) and session."""
    _check_device(device)
    return self._s._full(size, 1, _new_kw(self, dtype), requires_grad)


def _new_zeros(self: Any, *size: Any, dtype: Any = None, device: Any = None,
               requires_grad: Any = False) -> Any:
    """Zeros of the given size, in self's dtype (unless given) and session."""
    _check_device(device)
    return self._s._full(size, 0, _new_kw(self, dtype), requires_grad)


def _new_full(self: Any, size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: Any = False) -> Any:
    """fill_value in the given size, in self's dtype (unless given) and session."""
    _check_device(device)
    return self._s._full([size], fill_value, _new_kw(self, dtype), requires_grad)


def _new_empty(self: Any, *size: Any, dtype: Any = None, device: Any = None,
               requires_grad: Any = False) -> Any:
    """An unset tensor of the given size, in self's dtype (unless given) and session."""
    _check_device(device)
    return self._s.empty(*size, dtype=_new_kw(self, dtype), requires_grad=requires_grad)


def _new_tensor(self: Any, data: Any, dtype: Any = None, device: Any = None,
                requires_grad: Any = False) -> Any:
    """A copy of data in self's dtype (unless given) and session."""
    _check_device(device)
    if isinstance(data, td.Tensor):
        warnings.warn("To copy construct from a tensor, it is recommended to use "
                      "sourceTensor.clone().detach() or "
                      "sourceTensor.clone().detach().requires_grad_(True), rather than "
                      "tensor.new_tensor(sourceTensor).", UserWarning, stacklevel=2)
        t = data.detach().to(_new_kw(self, dtype)).clone()
        return _with_grad(t, requires_grad)
    return self._s.tensor(data, dtype=_new_kw(self, dtype), requires_grad=requires_grad)


def _T(self: Any) -> Any:  # noqa: N802 - torch's name
    """The dims reversed (a view), as torch's ``x.T``; on a tensor of other than 2 dims (and
    not 0), torch 1.13's deprecation warning, once per process."""
    n = self.ndim
    if n != 2 and n != 0 and not _T_WARNED[0]:
        _T_WARNED[0] = True
        warnings.warn(_names.text(_T_WARNING), UserWarning, stacklevel=2)
    return self._s._op("permute", [self], dims=list(range(n))[::-1])


# -- legacy constructors --
def _legacy_make(s: Any, dt: Any, args: Any, kw: Any) -> Any:
    """torch.Tensor(...) / FloatTensor(...): sizes make an unset tensor, data a copy."""
    dev = kw.pop("device", None)
    _check_device(dev)
    if kw:
        raise TypeError("new() received an invalid combination of arguments - got an "
                        "unexpected keyword argument '%s'" % next(iter(kw)))
    if not args:
        return s.empty(0, dtype=dt)
    if len(args) == 1 and isinstance(args[0], td.Size):
        return s.empty(*args[0], dtype=dt)
    if all(isinstance(a, builtins.int) and not isinstance(a, builtins.bool) for a in args):
        return s.empty(*args, dtype=dt)
    if len(args) != 1:
        raise TypeError("new() received an invalid combination of arguments")
    data = args[0]
    if isinstance(data, td.Tensor):
        if data.dtype is not dt:
            raise TypeError("expected %s (got %s)" % (dt, data.dtype))
        return data.detach()
    return s.tensor(data, dtype=dt)


def _legacy_type(dname: str) -> Any:
    def make(*args: Any, **kw: Any) -> Any:
        return _legacy_make(td._session(), td._DTYPES[dname], args, kw)
    make.__name__ = make.__qualname__ = _LEGACY[dname]
    make.__doc__ = ("torch.%s(*sizes) or (data): an unset %s tensor of those sizes, or a copy "
                    "of data in %s." % (_LEGACY[dname], dname, dname))
    make._legacy_dtype = dname  # type: ignore[attr-defined]
    return make


# -- keyword aliases and out= --
def numpy_names(op: Any, kw: dict) -> dict:
    """axis= as dim=, keepdims= as keepdim=, where the op has those parameters (torch's
    argument parser accepts numpy's names for them)."""
    if not kw or ("axis" not in kw and "keepdims" not in kw):
        return kw
    out = {}
    for k, v in kw.items():
        k2 = _NUMPY_NAMES.get(k, k)
        if k2 != k and k2 in op.names and k2 not in kw:
            k = k2
        out[k] = v
    return out


def _resize_warning(old: Any, new: Any) -> None:
    warnings.warn("An output with one or more elements was resized since it had shape %s, "
                  "which does not match the required output shape %s. This behavior is "
                  "deprecated, and in a future PyTorch release outputs will not be resized "
                  "unless they have zero elements. You can explicitly reuse an out tensor t by "
                  "resizing it, inplace, to zero elements with t.resize_(0)."
                  % (list(old), list(new)), UserWarning, stacklevel=3)


_CAN_CAST = {"bool": 0, "int32": 1, "int64": 1, "float32": 2, "float64": 2}


def write_out(result: Any, out: Any) -> Any:
    """torch's out=: the result written into out (cast to out's dtype where torch allows it),
    out resized when its shape differs (with torch's warning unless out was empty)."""
    if not isinstance(out, td.Tensor):
        raise TypeError("argument 'out' must be Tensor, not %s" % type(out).__name__)
    if isinstance(result, (tuple, list)):
        raise NotImplementedError("out= is supported for ops with one result")
    if _CAN_CAST[result.dtype.name] > _CAN_CAST[out.dtype.name]:
        raise td.TensorError(td.pb.DTYPE_ERROR, "result type %s can't be cast to the desired "
                             "output type %s" % (_cname(result.dtype), _cname(out.dtype)))
    if result._s is not out._s:
        td._use(result._s, (out,))
    if out.shape == result.shape:
        out._s._op("copy", [out, result], inplace=True)
        return out
    if out.numel() != 0:
        _resize_warning(out.shape, result.shape)
    # Resized: out names a new storage holding the result, as torch's resized out does. The
    # tensor holding it stays referenced by out (its handle is freed with it); out's old
    # handle is freed when out is.
    new = result.to(out.dtype) if result.dtype is not out.dtype else result
    out._resized = new
    out._h = new._h
    out._meta, out._p, out._not_in_reply = new._meta, new._p, new._not_in_reply
    out._root = None
    out._grad_cache = None
    return out


def _cname(dt: Any) -> str:
    return {"bool": "Bool", "int32": "Int", "int64": "Long", "float32": "Float",
            "float64": "Double"}[dt.name]


def with_out(f: Any) -> Any:
    """The module function f with torch's out=."""
    def function(*args: Any, **kw: Any) -> Any:
        out = kw.pop("out", None)
        result = f(*args, **kw)
        return result if out is None else write_out(result, out)
    for a in ("__name__", "__qualname__", "__doc__", "__signature__"):
        if hasattr(f, a):
            setattr(function, a, getattr(f, a))
    return function


def _cuda_is_available() -> builtins.bool:
    """torch.cuda.is_available(): False, as torch built without CUDA answers."""
    return False


def _cuda_device_count() -> builtins.int:
    """torch.cuda.device_count(): 0."""
    return 0


def install(pkg: Any) -> None:
    """Adds the call forms to the package pkg and its Tensor class."""
    global td
    td = pkg
    T = pkg.Tensor
    T.device = property(_device_prop)
    T.is_cuda = property(_is_cuda)
    T.cuda = _cuda
    T.to = _to
    T.type = _type
    T.type_as = _type_as
    T.view_as = _view_as
    T.expand_as = _expand_as
    T.reshape_as = _reshape_as
    T.stride = _stride
    T.storage_offset = _storage_offset
    T.is_contiguous = _is_contiguous
    T.data = property(_data_get, _data_set)
    T.new_ones = _new_ones
    T.new_zeros = _new_zeros
    T.new_full = _new_full
    T.new_empty = _new_empty
    T.new_tensor = _new_tensor
    T.T = property(_T)
    pkg.device = device
    cuda = types.ModuleType("tensord.cuda", "torch.cuda without CUDA: nothing is available.")
    cuda.is_available = _cuda_is_available  # type: ignore[attr-defined]
    cuda.device_count = _cuda_device_count  # type: ignore[attr-defined]
    pkg.cuda = cuda
    for dname in _LEGACY:
        setattr(pkg, _LEGACY[dname], _legacy_type(dname))
