"""torch.nn.functional's tensor functions, run on the server.

Every op that ops.def flags FUNCTIONAL (spelt torch.nn.functional.name only) or ALSO_F (spelt
both torch.name and F.name) is exported here automatically, as the op's function form
(tensord._function: its arguments, defaults and checks come from the op's torch signature in
server/core/ops.def). Call forms an ops.def signature cannot state (F.pad's
mode, cross_entropy's probability targets, ...) are written in Python in the family modules
imported at the end, one per ops.def nn family; they override the automatic entries.
"""
from __future__ import annotations

from .. import _function
from .._ops import OPS as _OPS

for _name, _op in _OPS.items():
    if "FUNCTIONAL" in _op["flags"] or "ALSO_F" in _op["flags"]:
        globals()[_name] = _function(_name)
del _name, _op

# the families' hand-written call forms (each file lists its names in __all__)
from ._f_conv import *  # noqa: E402,F401,F403  convolution and pooling
from ._f_loss import *  # noqa: E402,F401,F403  losses and activations
from ._f_misc import *  # noqa: E402,F401,F403  normalisation, dropout, embedding, padding
