"""torch.utils.data.DataLoader: batches of a dataset, in the sampler's order, collated.

Its options, checks, error texts and len() are torch's, and so are its random draws: each pass
first draws torch's base seed (``empty((), dtype=int64).random_(generator=loader.generator)``;
tensord has no worker processes to hand it to, so it is drawn and never read, which keeps the
stream where torch leaves it), then the sampler draws its order (sampler.py).

A TensorDataset (or a Subset of one, at any depth) loaded with the default collate is batched
on the server: each batch is ``t.index_select(0, idx)`` for each of its tensors, one request
per tensor, and the rows never pass through the client (torch stacks the rows; the values,
dtype and shape are the same, and the batch is a new tensor as torch's is). The index tensor
``idx`` is made on the server too when the sampler is a SequentialSampler (``arange``) or a
RandomSampler (slices of its randperm or randint draws, never read), so a pass costs no round
trip at all, but one to read the seed a RandomSampler without a generator draws, as torch
does, for its fresh Generator. Any other sampler's index lists are sent with the batch. A
dataset tensor that requires grad gives batches whose grad_fn is IndexSelectBackward0 where
torch's is StackBackward0 (the gradients are the same).

num_workers > 0 is accepted and runs in this process, as num_workers=0 does: the batches and
the draws are the ones torch's workers produce, but worker_init_fn is never called,
get_worker_info() is always None, and an IterableDataset is read once (torch reads one copy
per worker unless worker_init_fn splits it). pin_memory, timeout, prefetch_factor and
persistent_workers are checked as torch checks them and otherwise change nothing (a persistent
loader skips the base-seed draw after its first pass, as torch's does).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Generic, Iterator, List, Optional, Sequence, TypeVar

import tensord

from . import _random
from ._collate import default_collate, default_convert
from .dataset import IterableDataset, Subset, TensorDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

T_co = TypeVar("T_co", covariant=True)

__all__ = ["DataLoader", "get_worker_info", "default_collate", "default_convert"]


def get_worker_info() -> None:
    """Always None: tensord's DataLoader has no worker processes (see the module comment)."""
    return None


class _DatasetKind:
    Map = 0
    Iterable = 1


class _InfiniteConstantSampler(Sampler):
    """None, forever: the sampler of an IterableDataset."""

    def __init__(self) -> None:
        super().__init__(None)

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class DataLoader(Generic[T_co]):
    """Iterates over batches of ``dataset`` (see the module comment): ``batch_size`` samples
    each (None: no batching), in order or shuffled (``shuffle=True``: a RandomSampler drawing
    from ``generator``, or from the session's stream), or as ``sampler``/``batch_sampler``
    give them; ``drop_last`` drops a short last batch; ``collate_fn`` makes a batch of a list
    of samples (default_collate)."""

    __initialized = False

    def __init__(self, dataset: Any, batch_size: Optional[int] = 1,
                 shuffle: Optional[bool] = None, sampler: Any = None, batch_sampler: Any = None,
                 num_workers: int = 0, collate_fn: Optional[Callable[[List[Any]], Any]] = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Optional[Callable[[int], None]] = None,
                 multiprocessing_context: Any = None, generator: Any = None, *,
                 prefetch_factor: int = 2, persistent_workers: bool = False,
                 pin_memory_device: str = "") -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; "
                             "use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor != 2:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing.let num_workers > 0 to enable multiprocessing.")
        assert prefetch_factor > 0
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError(("multiprocessing_context can only be used with "
                              "multi-process loading (num_workers > 0), but got "
                              "num_workers={}").format(num_workers))

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context

        if isinstance(dataset, IterableDataset):
            self._dataset_kind = _DatasetKind.Iterable
            if shuffle not in {False, None}:
                raise ValueError("DataLoader with IterableDataset: expected unspecified "
                                 "shuffle option, but got shuffle={}".format(shuffle))
            if sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified "
                                 "sampler option, but got sampler={}".format(sampler))
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified "
                                 "batch_sampler option, but got batch_sampler={}"
                                 .format(batch_sampler))
        else:
            shuffle = bool(shuffle)
            self._dataset_kind = _DatasetKind.Map

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")

        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None:
            if drop_last:
                raise ValueError("batch_size=None option disables auto-batching and is "
                                 "mutually exclusive with drop_last")

        if sampler is None:
            if self._dataset_kind == _DatasetKind.Iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)

        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator

        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self.__initialized = True
        self._IterableDataset_len_called: Optional[int] = None
        self._iterator: Optional[_DataLoaderIter] = None

    def __setattr__(self, attr: str, val: Any) -> None:
        if self.__initialized and attr in ("batch_size", "batch_sampler", "sampler",
                                           "drop_last", "dataset", "persistent_workers"):
            raise ValueError("{} attribute should not be set after {} is initialized"
                             .format(attr, self.__class__.__name__))
        super().__setattr__(attr, val)

    def __iter__(self) -> "_DataLoaderIter":
        if self.persistent_workers and self.num_workers > 0:
            if self._iterator is None:
                self._iterator = _DataLoaderIter(self)
            else:
                self._iterator._reset(self)
            return self._iterator
        return _DataLoaderIter(self)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        if self._dataset_kind == _DatasetKind.Iterable:
            length = self._IterableDataset_len_called = len(self.dataset)
            if self.batch_size is not None:
                if self.drop_last:
                    length = length // self.batch_size
                else:
                    length = math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)


def _plain(obj: Any, cls: type, *methods: str) -> bool:
    """Whether obj is a cls whose methods are cls's own (not overridden by a subclass)."""
    return isinstance(obj, cls) and all(getattr(type(obj), m) is getattr(cls, m)
                                        for m in methods)


class _TensorSource:
    """A TensorDataset seen through its Subsets (outermost first), when the DataLoader can
    gather its batches on the server: its tensors (all in one session), its length, and the
    Subsets' index lists."""

    def __init__(self, tensors: Sequence[Any], chain: List[Sequence[int]]) -> None:
        self.tensors = tensors
        self.s = tensors[0]._s
        self.n = len(tensors[0])
        self.chain = chain
        self.chain_tensors: Optional[List[Any]] = None  # the chain on the server, made once

    @staticmethod
    def find(dataset: Any) -> Optional["_TensorSource"]:
        chain: List[Sequence[int]] = []
        while _plain(dataset, Subset, "__getitem__", "__len__"):
            if not isinstance(dataset.indices, (list, tuple, range)):
                return None
            chain.append(dataset.indices)
            dataset = dataset.dataset
        if not _plain(dataset, TensorDataset, "__getitem__", "__len__") or \
                getattr(dataset, "__getitems__", None):
            return None
        tensors = dataset.tensors
        if not tensors or not all(isinstance(t, tensord.Tensor) for t in tensors) or \
                any(t._s is not tensors[0]._s for t in tensors):
            return None
        return _TensorSource(tensors, chain)

    def positions(self, batch: Sequence[Any]) -> Optional[List[int]]:
        """The rows of the TensorDataset that a list of indices names, through the Subsets
        (list lookups, so their errors are torch's); None when one is not a plain int in
        range (the caller then fetches sample by sample, which raises torch's error)."""
        rows = list(batch)
        for indices in self.chain:
            if not all(type(i) is int for i in rows):
                return None
            rows = [indices[i] for i in rows]
        if not all(type(i) is int and 0 <= i < self.n for i in rows):
            return None
        return rows

    def server_chain(self) -> Optional[List[Any]]:
        """The Subsets' index lists as int64 tensors in the data's session (outermost first),
        or None when one holds something other than ints in range."""
        if self.chain_tensors is None:
            out = []
            sizes = [len(ix) for ix in self.chain[1:]] + [self.n]
            for indices, size in zip(self.chain, sizes):
                rows = list(indices)
                if not all(type(i) is int and -size <= i < size for i in rows):
                    return None
                out.append(self.s.tensor([i % size for i in rows], dtype=tensord.int64))
            self.chain_tensors = out
        return self.chain_tensors

    def gather(self, idx: Any) -> List[Any]:
        """The batch at rows idx (an int64 tensor in the data's session): default_collate's
        structure for TensorDataset samples, a list with one tensor per dataset tensor."""
        return [t.index_select(0, idx) for t in self.tensors]


class _DataLoaderIter:
    """One pass over a DataLoader (torch's _SingleProcessDataLoaderIter)."""

    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._dataset_kind = loader._dataset_kind
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._num_workers = loader.num_workers
        self._collate_fn = loader.collate_fn
        self._source: Optional[_TensorSource] = None
        if self._dataset_kind == _DatasetKind.Map and self._auto_collation and \
                self._collate_fn is default_collate:
            self._source = _TensorSource.find(self._dataset)
        self._start_pass()
        # drawn as torch draws it (for no generator: from the data's session, see _random.home)
        self._base_seed = _random.draw_int64(loader.generator, _random.home(self._dataset))
        self._num_yielded = 0
        if self._dataset_kind == _DatasetKind.Iterable:
            self._dataset_iter = iter(self._dataset)
            self._ended = False

    def _start_pass(self) -> None:
        """iter() of the index sampler, where torch calls it; with a TensorDataset and one of
        the samplers that describe their passes in pieces, the batches' segments instead."""
        self._segments: Optional[Iterator[Any]] = None
        src = self._source
        if src is not None and _plain(self._index_sampler, BatchSampler, "__iter__") and \
                (not src.chain or not isinstance(self._index_sampler.sampler, RandomSampler)
                 or src.server_chain() is not None):
            self._segments = self._index_sampler._segments()
        self._sampler_iter = iter(self._index_sampler) if self._segments is None else None

    def _reset(self, loader: DataLoader) -> None:
        self._start_pass()
        self._num_yielded = 0
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        if self._dataset_kind == _DatasetKind.Iterable:
            self._dataset_iter = iter(self._dataset)
            self._ended = False

    def __iter__(self) -> "_DataLoaderIter":
        return self

    def __len__(self) -> int:
        return len(self._index_sampler)

    def __next__(self) -> Any:
        if self._segments is not None:
            data = self._from_segments(next(self._segments))
        else:
            data = self._fetch(next(self._sampler_iter))
        self._num_yielded += 1
        if self._dataset_kind == _DatasetKind.Iterable and \
                self._IterableDataset_len_called is not None and \
                self._num_yielded > self._IterableDataset_len_called:
            warnings.warn("Length of IterableDataset {} was reported to be {} (when accessing "
                          "len(dataloader)), but {} samples have been fetched. ".format(
                              self._dataset, self._IterableDataset_len_called,
                              self._num_yielded))
        return data

    def _fetch(self, index: Any) -> Any:
        if self._dataset_kind == _DatasetKind.Iterable:
            if self._ended:
                raise StopIteration
            if self._auto_collation:
                data = []
                for _ in index:
                    try:
                        data.append(next(self._dataset_iter))
                    except StopIteration:
                        self._ended = True
                        break
                if len(data) == 0 or (self._drop_last and len(data) < len(index)):
                    raise StopIteration
            else:
                data = next(self._dataset_iter)
            return self._collate_fn(data)
        if self._auto_collation:
            if self._source is not None:
                rows = self._source.positions(index)
                if rows:  # (an empty batch fails in default_collate, as torch's does)
                    return self._source.gather(self._source.s.tensor(rows,
                                                                     dtype=tensord.int64))
            if getattr(self._dataset, "__getitems__", None):
                data = self._dataset.__getitems__(index)
            else:
                data = [self._dataset[idx] for idx in index]
        else:
            data = self._dataset[index]
        return self._collate_fn(data)

    def _from_segments(self, segments: List[Any]) -> Any:
        """A batch of a TensorDataset from its segments (piece source, its size, start,
        stop)."""
        src = self._source
        s = src.s
        if src.chain and any(isinstance(piece, range) for piece, _, _, _ in segments):
            # SequentialSampler through Subsets: the rows are known here, send them
            return self._fetch([i for piece, _, a, b in segments for i in piece[a:b]])
        parts = []
        for piece, size, a, b in segments:
            if isinstance(piece, range):
                parts.append(s.arange(piece[a], piece[a] + (b - a)))
                continue
            if piece._s is not s:  # the sampler drew in another session: bring the indices
                piece = s.tensor(piece.tolist(), dtype=tensord.int64)
            idx = piece if a == 0 and b == size else piece.narrow(0, a, b - a)
            for level in src.chain_tensors or ():
                idx = level.index_select(0, idx)
            parts.append(idx)
        while len(parts) > 1:  # (the server takes at most 64 operands per cat)
            parts = [s.cat(parts[i:i + 64]) for i in range(0, len(parts), 64)]
        return src.gather(parts[0])
