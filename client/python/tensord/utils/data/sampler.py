"""torch.utils.data's samplers: Sampler, SequentialSampler, RandomSampler, SubsetRandomSampler,
WeightedRandomSampler and BatchSampler, with torch's lengths, checks and error texts.

The random ones make the draws torch makes, in torch's order and on the same stream (see
_random): RandomSampler without a generator seeds a fresh Generator from a draw of the default
stream at the start of each pass, then draws randperm(n) (or randint batches of 32, with
replacement) from it; with a generator it draws from that generator directly, including the
randperm torch draws and throws away at the end of a pass when num_samples is a multiple of n.

SequentialSampler and RandomSampler also describe a pass as pieces (``_pieces``): ranges known
to the client, or index tensors left on the server, drawn lazily exactly as ``__iter__`` draws
them. The DataLoader batches a TensorDataset from those pieces without reading the indices.
"""
from __future__ import annotations

from typing import Any, Generic, Iterable, Iterator, List, Optional, Sequence, Sized, Tuple, \
    TypeVar, Union

import tensord

from . import _random

T_co = TypeVar("T_co", covariant=True)

__all__ = ["BatchSampler", "RandomSampler", "Sampler", "SequentialSampler",
           "SubsetRandomSampler", "WeightedRandomSampler"]

# A piece of a pass: (source, size, k), the source a range or a 1-dim int64 tensor on the
# server of that size; its first k indices count.
Piece = Tuple[Any, int, int]


def _from_pieces(pieces: Iterable[Piece]) -> Iterator[int]:
    for src, _, k in pieces:
        if isinstance(src, range):
            yield from src[:k]
        else:
            yield from src.tolist()[:k]


class Sampler(Generic[T_co]):
    """Base class of samplers: subclasses define ``__iter__`` (indices, or lists of them)
    and usually ``__len__``."""

    def __init__(self, data_source: Optional[Sized]) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1."""

    data_source: Sized

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def _pieces(self) -> Iterator[Piece]:
        n = len(self.data_source)
        yield range(n), n, n

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A random permutation of the indices each pass (num_samples of them: whole
    permutations, then the start of one more), or num_samples indices drawn with replacement;
    the draws are torch's (see the module comment)."""

    data_source: Sized
    replacement: bool

    def __init__(self, data_source: Sized, replacement: bool = False,
                 num_samples: Optional[int] = None, generator: Any = None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

        if not isinstance(self.replacement, bool):
            raise TypeError("replacement should be a boolean value, but got "
                            "replacement={}".format(self.replacement))
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError("num_samples should be a positive integer "
                             "value, but got num_samples={}".format(self.num_samples))

    @property
    def num_samples(self) -> int:
        if self._num_samples is None:
            return len(self.data_source)
        return self._num_samples

    def _pieces(self) -> Iterator[Piece]:
        n = len(self.data_source)
        generator = self.generator
        if generator is None:
            generator = _random.fresh_generator(_random.home(self.data_source))
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield _random.randint(n, 32, generator), 32, 32
            k = self.num_samples % 32
            yield _random.randint(n, k, generator), k, k
        else:
            for _ in range(self.num_samples // n):
                yield _random.randperm(n, generator), n, n
            yield _random.randperm(n, generator), n, self.num_samples % n

    def __iter__(self) -> Iterator[int]:
        return _from_pieces(self._pieces())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices in a random order (randperm(len(indices), generator=...))."""

    indices: Sequence[int]

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        for i in _random.randperm(len(self.indices), self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """num_samples indices drawn with the given weights (torch.multinomial over float64
    weights)."""

    weights: Any
    num_samples: int
    replacement: bool

    def __init__(self, weights: Sequence[float], num_samples: int,
                 replacement: bool = True, generator: Any = None) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or \
                num_samples <= 0:
            raise ValueError("num_samples should be a positive integer "
                             "value, but got num_samples={}".format(num_samples))
        if not isinstance(replacement, bool):
            raise ValueError("replacement should be a boolean value, but got "
                             "replacement={}".format(replacement))
        s = _random.session(generator)
        weights_tensor = s.as_tensor(weights, dtype=tensord.float64)
        if len(weights_tensor.shape) != 1:
            raise ValueError("weights should be a 1d sequence but given "
                             "weights have shape {}".format(tuple(weights_tensor.shape)))
        self.weights = weights_tensor
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rand_tensor = tensord.multinomial(self.weights, self.num_samples, self.replacement,
                                          generator=self.generator)
        yield from iter(rand_tensor.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[List[int]]):
    """Lists of batch_size indices from sampler; the last one shorter, or dropped with
    drop_last."""

    def __init__(self, sampler: Union[Sampler[int], Iterable[int]], batch_size: int,
                 drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or \
                batch_size <= 0:
            raise ValueError("batch_size should be a positive integer value, "
                             "but got batch_size={}".format(batch_size))
        if not isinstance(drop_last, bool):
            raise ValueError("drop_last should be a boolean value, but got "
                             "drop_last={}".format(drop_last))
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        if self.drop_last:
            sampler_iter = iter(self.sampler)
            while True:
                try:
                    batch = [next(sampler_iter) for _ in range(self.batch_size)]
                    yield batch
                except StopIteration:
                    break
        else:
            batch = [0] * self.batch_size
            idx_in_batch = 0
            for idx in self.sampler:
                batch[idx_in_batch] = idx
                idx_in_batch += 1
                if idx_in_batch == self.batch_size:
                    yield batch
                    idx_in_batch = 0
                    batch = [0] * self.batch_size
            if idx_in_batch > 0:
                yield batch[:idx_in_batch]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size  # type: ignore[arg-type]
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size  # type: ignore

    def _segments(self) -> Optional[Iterator[List[Tuple[Any, int, int, int]]]]:
        """The batches as lists of segments (piece source, its size, start, stop), pulled from the
        sampler's pieces exactly when __iter__ would pull their indices; None when the sampler
        does not describe itself in pieces (a subclass with its own __iter__, or another
        sampler)."""
        pieces = _pieces_of(self.sampler)
        if pieces is None:
            return None
        return self._segments_from(pieces)

    def _segments_from(self, pieces: Iterator[Piece]
                       ) -> Iterator[List[Tuple[Any, int, int, int]]]:
        batch: List[Tuple[Any, int, int, int]] = []
        want = self.batch_size
        for src, size, k in pieces:
            pos = 0
            while pos < k:
                take = min(want, k - pos)
                batch.append((src, size, pos, pos + take))
                pos += take
                want -= take
                if want == 0:
                    yield batch
                    batch, want = [], self.batch_size
        if batch and not self.drop_last:
            yield batch


def _pieces_of(sampler: Any) -> Optional[Iterator[Piece]]:
    """sampler's pass as pieces, if it is one of the samplers above with their own __iter__."""
    for cls in (SequentialSampler, RandomSampler):
        if isinstance(sampler, cls) and type(sampler).__iter__ is cls.__iter__:
            return sampler._pieces()
    return None
