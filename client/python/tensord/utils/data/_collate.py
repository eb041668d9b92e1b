"""default_collate and default_convert, torch's rules: a batch of tensors is stacked (on the
server, one stack request), of floats a float64 tensor, of ints (and bools) a tensor of them,
of strings the list itself; mappings, namedtuples, tuples and lists are collated field by field
(a tuple's fields come back as a list, as in torch). NumPy arrays and scalars become tensors
first (numpy is optional).
"""
from __future__ import annotations

import collections.abc
import re
from typing import Any

import tensord

__all__ = ["default_collate", "default_convert"]

_NP_STR_OBJ = re.compile(r"[SaUO]")

default_collate_err_msg_format = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, "
    "dicts or lists; found {}")


def _is_numpy(x: Any) -> bool:
    t = type(x)
    return t.__module__ == "numpy" and t.__name__ not in ("str_", "string_")


def default_convert(data: Any) -> Any:
    """Without batching (batch_size=None): NumPy arrays become tensors, inside mappings and
    sequences too; everything else is left as it is."""
    elem_type = type(data)
    if isinstance(data, tensord.Tensor):
        return data
    if _is_numpy(data):
        if elem_type.__name__ == "ndarray" and _NP_STR_OBJ.search(data.dtype.str) is not None:
            return data
        return tensord.as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        try:
            return elem_type({key: default_convert(data[key]) for key in data})
        except TypeError:
            return {key: default_convert(data[key]) for key in data}
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            return elem_type([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


# The server takes at most this many operands in one cat or stack (TD_OP_MAX_INPUTS in
# server/core/ops.h); a larger batch is stacked in groups, then the groups are concatenated.
_MAX_OPERANDS = 64


def _stack(batch: Any) -> Any:
    """torch.stack(batch, 0) for any number of tensors (the same values; past 64 samples the
    result's grad_fn is CatBackward0 rather than StackBackward0)."""
    if len(batch) <= _MAX_OPERANDS:
        return tensord.stack(batch, 0)
    parts = [tensord.stack(batch[i:i + _MAX_OPERANDS], 0)
             for i in range(0, len(batch), _MAX_OPERANDS)]
    while len(parts) > 1:
        parts = [tensord.cat(parts[i:i + _MAX_OPERANDS], 0)
                 for i in range(0, len(parts), _MAX_OPERANDS)]
    return parts[0]


def default_collate(batch: Any) -> Any:
    """A list of samples to one batch (see the module comment)."""
    elem = batch[0]
    elem_type = type(elem)
    if isinstance(elem, tensord.Tensor):
        return _stack(batch)
    if _is_numpy(elem):
        if elem_type.__name__ == "ndarray":
            if _NP_STR_OBJ.search(elem.dtype.str) is not None:
                raise TypeError(default_collate_err_msg_format.format(elem.dtype))
            return default_collate([tensord.as_tensor(b) for b in batch])
        return tensord.as_tensor(batch)
    if isinstance(elem, float):
        return tensord.tensor(batch, dtype=tensord.float64)
    if isinstance(elem, int):
        return tensord.tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        try:
            return elem_type({key: default_collate([d[key] for d in batch]) for key in elem})
        except TypeError:
            return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return elem_type(*(default_collate(samples) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(e) == elem_size for e in it):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))
        if isinstance(elem, tuple):
            return [default_collate(samples) for samples in transposed]
        try:
            return elem_type([default_collate(samples) for samples in transposed])
        except TypeError:
            return [default_collate(samples) for samples in transposed]
    raise TypeError(default_collate_err_msg_format.format(elem_type))
