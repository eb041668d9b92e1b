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


def session(generator: Any) -> Any:
    """The session whose stream generator names (the default session for None)."""
    s = getattr(generator, "_s", None) if generator is not None else None
    return s if s is not None else tensord._session()


def draw_int64(generator: Any) -> Any:
    """A 0-dim int64 tensor drawn as torch's empty((), dtype=int64).random_(generator=g)."""
    s = session(generator)
    t = s.empty((), dtype=tensord.int64)
    if hasattr(t, "random_"):
        return t.random_(generator=generator)
    return s.randint(0, 1 << 62, (), generator=generator)


def fresh_generator() -> Any:
    """torch's RandomSampler without a generator: a new Generator seeded from a draw of the
    default stream (one round trip, to read the seed)."""
    seed = int(draw_int64(None).item())
    g = tensord.Generator()
    g.manual_seed(seed)
    return g


def randperm(n: int, generator: Any) -> Any:
    return session(generator).randperm(n, generator=generator)


def randint(high: int, size: int, generator: Any) -> Any:
    return session(generator).randint(0, high, (size,), generator=generator,
                                      dtype=tensord.int64)
