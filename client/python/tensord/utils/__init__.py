"""tensord.utils: torch.utils's parts that tensord offers, for now data loading
(``tensord.utils.data``: datasets, samplers, DataLoader)."""
from . import data  # noqa: F401
