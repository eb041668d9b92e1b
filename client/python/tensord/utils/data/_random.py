"""The random draws of tensord.utils.data, each the draw torch makes at that point, on the
stream torch would use: a generator's own (in its session) or, for generator=None, the default
session's (torch's default_generator).

torch draws a seed as ``torch.empty((), dtype=torch.int64).random_(generator=g)``; where the
client has no random_ yet, a randint over [0, 2**62) from the same stream stands in (the same
repeatability, not torch's values).
"""
from __future__ import annotations

from typing import Any

import tensord


def home(dataset: Any) -> Any:
    """The session holding a TensorDataset's tensors (seen through Subsets), else None: its
    stream is "the default generator" for that data, so a program on a Session of its own
    never touches the default session."""
    from .dataset import Subset, TensorDataset  # (dataset.py imports this module)
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset) and dataset.tensors and \
            isinstance(dataset.tensors[0], tensord.Tensor):
        return dataset.tensors[0]._s
    return None


def session(generator: Any, home: Any = None) -> Any:
    """The session whose stream generator names; for None, home or the default session."""
    s = getattr(generator, "_s", None) if generator is not None else None
    if s is None:
        s = home
    return s if s is not None else tensord._session()


def draw_int64(generator: Any, home: Any = None) -> Any:
    """A 0-dim int64 tensor drawn as torch's empty((), dtype=int64).random_(generator=g)."""
    s = session(generator, home)
    t = s.empty((), dtype=tensord.int64)
    if hasattr(t, "random_"):
        return t.random_(generator=generator)
    return s.randint(0, 1 << 62, (), generator=generator)


def fresh_generator(home: Any = None) -> Any:
    """torch's RandomSampler without a generator: a new Generator seeded from a draw of the
    default stream (one round trip, to read the seed)."""
    s = session(None, home)
    seed = int(draw_int64(None, s).item())
    g = tensord.Generator(session=s)
    g.manual_seed(seed)
    return g


def randperm(n: int, generator: Any, home: Any = None) -> Any:
    return session(generator, home).randperm(n, generator=generator)


def randint(high: int, size: int, generator: Any) -> Any:
    return session(generator).randint(0, high, (size,), generator=generator,
                                      dtype=tensord.int64)
