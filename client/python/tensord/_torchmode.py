"""tensord.install_as_torch(): `import torch` (and torch.nn, torch.nn.functional, torch.optim,
torch.utils.data, torch.autograd, any torch.<sub>) resolves to tensord from here on, and every
printed name says `torch.` as PyTorch's do (see _names), so an unmodified PyTorch script runs
against the daemon at TENSORD_ADDR and prints what it prints under PyTorch.

A finder on sys.meta_path maps each torch[.sub] import to tensord[.sub]; a submodule tensord
lacks fails as a missing module does ("No module named 'torch.sub'"). A real torch imported
before the call stays what `torch` means for the code that already holds it; later imports
see tensord.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any, Optional

from . import _names


class _TorchAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[Any]:
        if fullname != "torch" and not fullname.startswith("torch."):
            return None
        real = "tensord" + fullname[len("torch"):]
        if real not in sys.modules and importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module("tensord" + spec.name[len("torch"):])

    def exec_module(self, module: Any) -> None:
        pass  # the tensord module ran when it was imported


_installed = [False]


def install_as_torch() -> None:
    """Makes `import torch` mean tensord, and tensord print torch's names."""
    if _installed[0]:
        return
    _installed[0] = True
    _names.set_prefix("torch")
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        del sys.modules[name]  # a real torch imported before: later imports see tensord
    sys.meta_path.insert(0, _TorchAlias())
    import tensord
    for name, mod in list(sys.modules.items()):
        if name == "tensord" or name.startswith("tensord."):
            sys.modules["torch" + name[len("tensord"):]] = mod
    # type(x) prints <class 'torch.Tensor'>, as under PyTorch
    for cls in (tensord.Tensor, tensord.Size, tensord.dtype, tensord.Generator):
        cls.__module__ = "torch"
