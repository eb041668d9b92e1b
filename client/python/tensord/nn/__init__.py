"""tensord.nn: for now, its functional part (``import tensord.nn.functional as F``)."""
from . import functional  # noqa: F401
