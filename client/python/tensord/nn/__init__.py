"""tensord.nn: torch.nn's modules, parameters, init and functional, with every parameter and
buffer a tensor on the server (``import tensord.nn as nn``; ``import tensord.nn.functional as
F``). Module bookkeeping is client-side; a forward pass is pipelined requests (no waiting)."""
from . import functional  # noqa: F401
from . import init  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules_all
from .parameter import Parameter  # noqa: F401

try:  # nn.utils (clip_grad_norm_ ...), when present
    from . import utils  # noqa: F401
except ImportError:
    pass

__all__ = ["functional", "init", "Parameter"] + list(_modules_all)
