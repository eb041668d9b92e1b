"""The one naming rule for every text tensord prints or raises.

Wherever PyTorch writes `torch.` (a dtype, a Size, a legacy type name, return_types, the names
in its error messages and warnings), tensord writes PREFIX: "tensord" normally, "torch" once
tensord.install_as_torch() (or `python -m tensord.run`) has made `import torch` mean tensord, so
an unmodified script prints byte for byte what it prints under PyTorch. The server always
writes "tensord." (its printed tensors and its error texts); `text()` maps it on the way out.
"""
from __future__ import annotations

PREFIX = "tensord"


def name(suffix: str) -> str:
    """PyTorch's name torch.<suffix> under this rule."""
    return PREFIX + "." + suffix


def text(s: str) -> str:
    """A text written with tensord's names (the server's, or this package's), under the rule."""
    return s if PREFIX == "tensord" else s.replace("tensord.", PREFIX + ".")


def set_prefix(prefix: str) -> None:
    global PREFIX
    PREFIX = prefix
