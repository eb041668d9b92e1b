"""tensord.nn.functional, losses and activations: forms written in Python.

See functional.py: ops.def rows flagged FUNCTIONAL are exported there automatically; what is
here overrides them. Every name this module exports is in __all__.
"""
from __future__ import annotations

__all__: list = []
