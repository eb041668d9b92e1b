"""tensord.save and tensord.load: PyTorch's own file format, so real torch.load reads what
tensord.save writes and tensord.load reads what torch.save wrote.

The format (torch 1.6 and later, the zip "new" serialization): an uncompressed zip archive whose
entries share one top-level directory (torch names it after the file, "archive" for a buffer):
  <dir>/data.pkl   the object, pickled (protocol 2) with every storage replaced by a persistent
                   id ('storage', torch.<Type>Storage, key, location, numel)
  <dir>/data/<key> each storage's raw bytes, little-endian, in key order
  <dir>/version    "3\\n"
A tensor pickles as torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
requires_grad, OrderedDict()), a Parameter as torch._utils._rebuild_parameter(tensor,
requires_grad, OrderedDict()). Data records start on 64-byte boundaries, as torch's writer puts
them (a padding extra field), so a reader may map them.

What tensord writes: each tensor's values as a storage of its own (views that share a storage
in the session are saved as separate copies), the dtypes tensord has (float32, float64, int32,
int64, bool). Reading: any archive torch.save wrote with those dtypes; views of one storage in
the file become separate tensors. Tensors are uploaded to the session (the default one, or the
`session=` given); `map_location` is accepted in all of torch's forms and means nothing more,
as every tensor lives on the server. Pickled globals other than the tensor machinery are
resolved as Python's pickle does (weights_only=False, torch's default: a file can run code,
so load only files you trust), or refused (weights_only=True: containers, numbers, strings and
tensors only).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Dict, List

__all__ = ["save", "load"]

_STORAGE = {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage",
            "int32": "IntStorage", "bool": "BoolStorage"}
_FROM_STORAGE = {v: k for k, v in _STORAGE.items()}
_NUMPY = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "bool": "|b1"}
_ALIGN = 64


class _Global:
    """A name in torch's namespace (torch.FloatStorage, torch._utils._rebuild_tensor_v2),
    pickled as a GLOBAL without importing torch."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        self.__name__ = name

    def __call__(self, *args: Any) -> Any:  # pickle asks reduce functions to be callable
        raise TypeError("%s.%s is a name for torch's unpickler" % (self.module, self.name))


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")


class _Storage:
    def __init__(self, key: str, dtype: str, data: bytes, numel: int):
        self.key, self.dtype, self.data, self.numel = key, dtype, data, numel


def _np() -> Any:
    import numpy  # tensord.save/load need numpy (the package does not: it is optional)
    return numpy


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file: Any, protocol: int):
        super().__init__(file, protocol)
        self.storages: List[_Storage] = []
        self.globals: Dict[str, _Global] = {}

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            g = self.globals.setdefault(obj.dtype, _Global("torch", _STORAGE[obj.dtype]))
            return ("storage", g, obj.key, "cpu", obj.numel)
        return None

    def save_torch_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    dispatch[_Global] = save_torch_global

    def reducer_override(self, obj: Any) -> Any:
        from . import Tensor
        if not isinstance(obj, Tensor):
            return NotImplemented
        param = _is_parameter(obj)
        plain = obj.detach()
        arr = _np().array(plain.numpy(), order="C")  # (ascontiguousarray makes 0-d 1-d)
        name = plain.dtype.name
        st = _Storage(str(len(self.storages)), name,
                      arr.astype(_NUMPY[name], copy=False).tobytes(), int(arr.size))
        self.storages.append(st)
        shape = tuple(int(d) for d in arr.shape)
        stride, acc = [], 1
        for d in reversed(shape):
            stride.append(acc)
            acc *= max(d, 1)
        rebuilt = (st, 0, shape, tuple(reversed(stride)), False if param else
                   bool(obj.requires_grad), collections.OrderedDict())
        if param:
            return (_REBUILD_PARAMETER, (_Rebuilt(rebuilt), bool(obj.requires_grad),
                                         collections.OrderedDict()))
        return (_REBUILD_TENSOR, rebuilt)


class _Rebuilt:
    """A Parameter's plain tensor, already turned into its storage: pickled as the
    _rebuild_tensor_v2 call."""

    def __init__(self, args: tuple):
        self.args = args

    def __reduce__(self) -> Any:
        return (_REBUILD_TENSOR, self.args)


def _is_parameter(t: Any) -> bool:
    return any(c.__name__ == "Parameter" and c.__module__.startswith("tensord.")
               for c in type(t).__mro__)


def _archive_name(f: Any) -> str:
    if isinstance(f, (str, os.PathLike)):
        base = os.path.splitext(os.path.basename(os.fspath(f)))[0]
        return base or "archive"
    return "archive"


def _write_record(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    # the local header is 30 bytes, the name, then the extra field: pad it so data is aligned
    start = zf.start_dir + 30 + len(name.encode())
    pad = (-(start + 4)) % _ALIGN
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    zf.writestr(info, data)


def save(obj: Any, f: Any, pickle_module: Any = None, pickle_protocol: int = 2,
         _use_new_zipfile_serialization: bool = True) -> None:
    """torch.save(obj, f): obj (tensors, state_dicts, nested dicts/lists/tuples of them, numbers,
    strings) to a path or a writable binary file, in PyTorch's format."""
    if not _use_new_zipfile_serialization:
        raise NotImplementedError("tensord.save writes PyTorch's zip format only "
                                  "(_use_new_zipfile_serialization=True)")
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError("tensord.save pickles with Python's pickle module only")
    buf = io.BytesIO()
    p = _Pickler(buf, pickle_protocol)
    p.dump(obj)
    prefix = _archive_name(f)
    own = isinstance(f, (str, os.PathLike))
    out = open(f, "wb") if own else f
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            _write_record(zf, prefix + "/data.pkl", buf.getvalue())
            for st in sorted(p.storages, key=lambda s: s.key):
                _write_record(zf, prefix + "/data/" + st.key, st.data)
            _write_record(zf, prefix + "/version", b"3\n")
    finally:
        if own:
            out.close()


_SAFE = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
         ("builtins", "complex"), ("builtins", "slice"), ("builtins", "range")}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, zf: zipfile.ZipFile, prefix: str, session: Any,
                 weights_only: bool):
        super().__init__(file)
        self.zf, self.prefix, self.session, self.weights_only = zf, prefix, session, weights_only
        self.storages: Dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _FROM_STORAGE:
            return _StorageType(_FROM_STORAGE[name])
        if module == "torch" and name.endswith("Storage"):
            raise pickle.UnpicklingError("tensord.load: %s is not a dtype tensord has "
                                         "(float32, float64, int32, int64, bool)" % name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter",
                                                 "_rebuild_parameter_with_state"):
            return self.rebuild_parameter
        if module == "torch" and name == "Size":
            from . import Size
            return Size
        if module == "torch" and name == "device":
            return _device
        if module == "torch" and name in _STORAGE:  # a dtype, pickled by name
            from . import _DTYPES
            return _DTYPES[name]
        if (module, name) in _SAFE:
            return super().find_class(module, name)
        if self.weights_only:
            raise pickle.UnpicklingError(
                "tensord.load(weights_only=True) refuses the global %s.%s" % (module, name))
        if module.startswith("torch.") or module == "torch":
            import importlib
            try:
                mod = importlib.import_module("tensord" + module[len("torch"):])
                return getattr(mod, name)
            except (ImportError, AttributeError):
                raise pickle.UnpicklingError("tensord.load: %s.%s has no tensord counterpart"
                                             % (module, name)) from None
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] not in ("storage", b"storage")
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError("tensord.load: a persistent id that is not a storage")
        _, stype, key, _location, numel = pid
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key not in self.storages:
            try:
                raw = self.zf.read(self.prefix + "data/" + key)
            except KeyError:
                raise pickle.UnpicklingError("tensord.load: the archive has no record data/%s"
                                             % key) from None
            np = _np()
            dt = np.dtype(_NUMPY[stype.dtype])
            if not isinstance(numel, int) or numel < 0 or numel * dt.itemsize > len(raw):
                raise pickle.UnpicklingError("tensord.load: storage %s holds %d bytes, not %r "
                                             "elements" % (key, len(raw), numel))
            self.storages[key] = np.frombuffer(raw, dtype=dt, count=numel)
        return _Loaded(self.storages[key], stype.dtype)

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any, hooks: Any = None, *rest: Any) -> Any:
        if not isinstance(storage, _Loaded):
            raise pickle.UnpicklingError("tensord.load: a tensor without a storage")
        arr = storage.arr
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise pickle.UnpicklingError("tensord.load: a tensor's size and stride disagree")
        numel = 1
        for s in size:
            numel *= s
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if min(stride, default=0) < 0 or last >= arr.size:
                raise pickle.UnpicklingError("tensord.load: a tensor reaches past its storage")
        np = _np()
        view = np.lib.stride_tricks.as_strided(
            arr[offset:], shape=size, strides=[s * arr.itemsize for s in stride],
            writeable=False) if numel else np.zeros(size, dtype=arr.dtype)
        from . import _DTYPES
        s = self.session
        t = s.tensor(np.array(view, order="C"), dtype=_DTYPES[storage.dtype])  # keeps 0-d
        if requires_grad:
            t.requires_grad_(True)
        return t

    def rebuild_parameter(self, data: Any, requires_grad: Any, hooks: Any = None,
                          *rest: Any) -> Any:
        try:
            from .nn.parameter import Parameter
        except ImportError:  # pragma: no cover - tensord.nn is part of the package
            return data.requires_grad_(bool(requires_grad))
        return Parameter(data, bool(requires_grad))


class _StorageType:
    def __init__(self, dtype: str):
        self.dtype = dtype


class _Loaded:
    def __init__(self, arr: Any, dtype: str):
        self.arr, self.dtype = arr, dtype


def _device(*args: Any, **kw: Any) -> str:
    return "cpu"


def load(f: Any, map_location: Any = None, pickle_module: Any = None, *,
         weights_only: bool = False, session: Any = None, **pickle_load_args: Any) -> Any:
    """torch.load(f): what torch.save (or tensord.save) wrote to a path or binary file, its
    tensors uploaded to the session (the default one unless `session=` names another)."""
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError("tensord.load unpickles with Python's pickle module only")
    from . import _session
    s = session if session is not None else _session()
    own = isinstance(f, (str, os.PathLike))
    src = open(f, "rb") if own else f
    try:
        if not zipfile.is_zipfile(src):
            raise RuntimeError("tensord.load reads PyTorch's zip format (torch.save's default "
                               "since 1.6); this file is not one")
        src.seek(0)
        with zipfile.ZipFile(src) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if not pkl:
                raise RuntimeError("tensord.load: the archive has no data.pkl record")
            prefix = pkl[0][:-len("data.pkl")]
            if prefix + "byteorder" in names and zf.read(prefix + "byteorder") != b"little":
                raise RuntimeError("tensord.load: big-endian archives are not supported")
            up = _Unpickler(io.BytesIO(zf.read(pkl[0])), zf, prefix, s, weights_only)
            return up.load()
    finally:
        if own:
            src.close()

