"""tensord.nn.Parameter: a tensor on the server that a Module registers as learnable.

As torch's: ``Parameter(data, requires_grad=True)`` is a new leaf sharing data's storage (a
detached view), with requires_grad set; its repr is "Parameter containing:\\n" and the tensor's.
Nothing here waits for the server: the view and the flag are pipelined requests, and the shape
and dtype are carried over from data when the client knows them.
"""
from __future__ import annotations

from typing import Any, Optional

import tensord as _td


class Parameter(_td.Tensor):
    """A Tensor that Modules register as a parameter when assigned as an attribute."""

    def __init__(self, data: Optional[_td.Tensor] = None, requires_grad: bool = True) -> None:
        if data is None:
            data = _td._session().empty(0)
            data._meta = (_td.Size([0]), _td.float32)
        if not isinstance(data, _td.Tensor):
            raise TypeError("Parameter(): argument 'data' (position 1) must be Tensor, not %s"
                            % type(data).__name__)
        view = data.detach()  # a leaf that shares data's storage, as torch's _make_subclass
        view._fin.detach()  # this object takes over the view's handle
        self._made(view._s, view._h, view._p, data._meta, view._not_in_reply)
        self._root = view._root
        self._rg = bool(requires_grad)
        if requires_grad:
            _td.Tensor.requires_grad_(self, True)

    def requires_grad_(self, requires_grad: Any = True) -> "Parameter":
        self._rg = bool(requires_grad)
        _td.Tensor.requires_grad_(self, requires_grad)
        return self

    def __repr__(self) -> str:
        return "Parameter containing:\n" + _td.Tensor.__repr__(self)

    __str__ = __repr__

    def __deepcopy__(self, memo: Any) -> "Parameter":
        """A new Parameter holding a copy of the values (as torch's), on the server."""
        if id(self) in memo:
            return memo[id(self)]
        copy = self.detach().clone()
        copy._meta = self._meta
        result = Parameter(copy, self._rg)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, proto: Any) -> Any:
        raise TypeError("a tensord Parameter lives on the server and cannot be pickled")
