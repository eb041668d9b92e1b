"""tensord.nn.functional, normalisation, dropout, embedding, padding: forms written in Python.

See functional.py: ops.def rows flagged FUNCTIONAL are exported there automatically; what is
here overrides them. Every name this module exports is in __all__.

layer_norm, batch_norm, embedding, one_hot and pad (constant mode) are server ops (their grad_fn
names are torch's native ones); the wrappers here only say which optional tensors are None
(OpArgs.absent) and check what torch checks in Python. dropout, normalize, cosine_similarity,
pairwise_distance and bilinear are composites of other ops, as torch composes them, so their
results carry torch's grad_fn names (MulBackward0, DivBackward0, SumBackward1, ...). Nothing
here waits for a reply: no shape or value of an unanswered tensor is read.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Sequence

__all__: list = []


def _export(f: Callable) -> Callable:
    """Lists f in __all__ (so no hand-written list of op names exists: ops.def is the list)."""
    __all__.append(f.__name__)
    return f


def _session(*tensors: Any) -> Any:
    import tensord
    for t in tensors:
        if isinstance(t, tensord.Tensor):
            return t._s
    return tensord._session()


# torch's native functions' argument positions, which its TypeErrors name
_POSITION = {("layer_norm", "input"): 1, ("layer_norm", "weight"): 3, ("layer_norm", "bias"): 4,
             ("batch_norm", "input"): 1, ("batch_norm", "weight"): 2, ("batch_norm", "bias"): 3,
             ("batch_norm", "running_mean"): 4, ("batch_norm", "running_var"): 5,
             ("embedding", "weight"): 1, ("embedding", "indices"): 2}


def _tensor(s: Any, v: Any, what: str, fname: str) -> Any:
    import tensord
    if not isinstance(v, tensord.Tensor):
        raise TypeError("%s(): argument '%s' (position %d) must be Tensor, not %s"
                        % (fname, what, _POSITION.get((fname, what), 1), type(v).__name__))
    return v


def _optional(s: Any, inputs: list, opts: Sequence[Any], names: Sequence[str],
              fname: str) -> int:
    """Appends the given optional tensors to inputs; returns the bits of those that are None."""
    absent = 0
    for k, (v, name) in enumerate(zip(opts, names)):
        if v is None:
            absent |= 1 << k
        else:
            inputs.append(_tensor(s, v, name, fname))
    return absent


def _ints(v: Any) -> list:
    if isinstance(v, numbers.Integral):
        return [int(v)]
    return [int(d) for d in v]


@_export
def layer_norm(input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None,
               eps: float = 1e-05) -> Any:
    """torch.nn.functional.layer_norm: normalises over the trailing normalized_shape dims."""
    if not isinstance(normalized_shape, (tuple, list)):
        raise TypeError("layer_norm(): argument 'normalized_shape' (position 2) must be tuple of "
                        "ints, not %s" % type(normalized_shape).__name__)
    s = _session(input, weight, bias)
    inputs = [_tensor(s, input, "input", "layer_norm")]
    absent = _optional(s, inputs, (weight, bias), ("weight", "bias"), "layer_norm")
    return s._op("layer_norm", inputs, dims=_ints(normalized_shape), eps=float(eps),
                 absent=absent)


@_export
def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None,
               bias: Any = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-05) -> Any:
    """torch.nn.functional.batch_norm: per channel (dim 1); in training, with the batch's
    statistics, updating running_mean and running_var in place (when given)."""
    for pos, name, v in ((7, "momentum", momentum), (8, "eps", eps)):
        if not isinstance(v, numbers.Real):
            raise TypeError("batch_norm(): argument '%s' (position %d) must be float, not %s"
                            % (name, pos, type(v).__name__))
    s = _session(input, running_mean, running_var, weight, bias)
    inputs = [_tensor(s, input, "input", "batch_norm")]
    absent = _optional(s, inputs, (running_mean, running_var, weight, bias),
                       ("running_mean", "running_var", "weight", "bias"), "batch_norm")
    out = s._op("batch_norm", inputs, training=bool(training), momentum=float(momentum),
                eps=float(eps), absent=absent)
    if training:
        # the op updates the running statistics in place on the server: their shared ndarrays
        # (bn.running_mean.numpy()) follow, as after any in-place op (Session._op)
        from .. import _numpy
        for t in (running_mean, running_var):
            r = getattr(t, "_root", None)
            r = t if r is None else r
            if getattr(r, "_share", None) is not None:
                _numpy.sync_out(r._share)
    return out


@_export
def embedding(input: Any, weight: Any, padding_idx: Optional[int] = None,
              max_norm: Optional[float] = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Any:
    """torch.nn.functional.embedding: the rows of weight that input names; padding_idx's row
    gets no gradient. With max_norm, the named rows of weight whose norm_type-norm is above it
    are first scaled in place to max_norm / (norm + 1e-7), as torch.embedding_renorm_.
    scale_grad_by_freq and sparse are not supported."""
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    s = _session(input, weight)
    weight = _tensor(s, weight, "weight", "embedding")
    input = _tensor(s, input, "indices", "embedding")
    if max_norm is not None:
        with s.no_grad():
            flat = input.reshape(-1)
            rows = weight.index_select(0, flat)
            norms = _norm(rows, norm_type, 1, True)
            scale = s.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
            # weight[flat] = rows * scale, as the op (Tensor.index_put_ reads the index's
            # dtype, which would wait for its reply)
            s._op("index_put", [weight, flat, rows * scale], inplace=True, index_mask=1)
    kw = {}
    if padding_idx is not None:
        kw = {"padding_idx": int(padding_idx), "has_padding_idx": True}
    weight = _tensor(s, weight, "weight", "embedding")
    return s._op("embedding", [_tensor(s, input, "indices", "embedding"), weight], **kw)


@_export
def one_hot(tensor: Any, num_classes: int = -1) -> Any:
    """torch.nn.functional.one_hot: int64, with a trailing dim of num_classes (-1: max + 1)."""
    s = _session(tensor)
    return s._op("one_hot", [_tensor(s, tensor, "input", "one_hot")],
                 num_samples=int(num_classes))


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


@_export
def pad(input: Any, pad: Sequence[int], mode: str = "constant", value: Any = None) -> Any:
    """torch.nn.functional.pad: constant (ConstantPadNdBackward0), reflect and replicate
    (Reflection/ReplicationPad{1,2,3}DBackward0), circular."""
    if mode not in _PAD_MODES:
        raise NotImplementedError("Unrecognised padding mode %s" % mode)
    s = _session(input)
    kw = {"value": value} if value is not None else {}
    # the gather modes are their own op: their backward reads the input, constant's does not
    op = "pad" if mode == "constant" else "pad_gather"
    return s._op(op, [_tensor(s, input, "input", "pad")], dims=_ints(pad), mode=mode, **kw)


@_export
def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """torch.nn.functional.dropout, as torch's CPU kernel composes it:
    input * empty_like(input).bernoulli_(1 - p).div_(1 - p) (p = 0 or not training: input
    itself; p = 1: input * 0)."""
    import tensord
    return _dropout_by(input, p, training, inplace,
                       lambda: tensord.empty_like(input).bernoulli_(1 - p).div_(1 - p))


def _dropout_by(input: Any, p: float, training: bool, inplace: bool,
                noise: Callable[[], Any]) -> Any:
    """The dropouts' common frame: torch's check of p; input itself for p = 0 or not training,
    input * 0 for p = 1; else input * noise() (in place when inplace)."""
    if p < 0.0 or p > 1.0:
        raise ValueError("dropout probability has to be between 0 and 1, but got {}".format(p))
    if p == 0 or not training:
        return input
    if p == 1:
        return input.mul_(0) if inplace else input * 0
    mask = noise()
    return input.mul_(mask) if inplace else input * mask


def _feature_dropout(kind: int, input: Any, p: float, training: bool, inplace: bool) -> Any:
    """dropout1d/2d/3d: input * a per-channel mask, Bernoulli(1 - p) / (1 - p), drawn on the
    server (dropout_noise, which also checks the input's rank as torch does)."""
    def noise() -> Any:
        s = _session(input)
        return s._op("dropout_noise", [_tensor(s, input, "input", "dropout")], max=float(p),
                     k=kind)
    return _dropout_by(input, p, training, inplace, noise)


@_export
def dropout1d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """torch.nn.functional.dropout1d: whole channels of an (N, C, L) or (C, L) input."""
    return _feature_dropout(1, input, p, training, inplace)


@_export
def dropout2d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """torch.nn.functional.dropout2d: whole channels (dim 1) of an (N, C, H, W) input (a 3-D
    input is taken as (N, C, L), as torch 1.13 does; its warning is not repeated here)."""
    return _feature_dropout(2, input, p, training, inplace)


@_export
def dropout3d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """torch.nn.functional.dropout3d: whole channels of an (N, C, D, H, W) or (C, D, H, W)
    input."""
    return _feature_dropout(3, input, p, training, inplace)


def _norm(x: Any, p: float, dim: Any, keepdim: bool) -> Any:
    if p == 2:
        return x.norm(2, dim, keepdim=keepdim)
    if p == float("inf"):
        return x.abs().amax(dim, keepdim=keepdim)
    if p == float("-inf"):
        return x.abs().amin(dim, keepdim=keepdim)
    if p == 0:  # the count of nonzeros (no gradient flows through it, as torch's)
        return x.ne(0).sum(dim, keepdim=keepdim)
    if p == 1:
        return x.abs().sum(dim, keepdim=keepdim)
    return x.abs().pow(p).sum(dim, keepdim=keepdim).pow(1.0 / p)


@_export
def normalize(input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Any = None) -> Any:
    """torch.nn.functional.normalize: input / max(||input||_p over dim, eps)."""
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported")
    denom = _norm(input, p, dim, True).clamp_min(eps)
    return input / denom


@_export
def cosine_similarity(x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> Any:
    """torch.nn.functional.cosine_similarity: sum((x1 / ||x1||) * (x2 / ||x2||), dim), each
    norm at least eps."""
    n1 = x1.norm(2, dim, keepdim=True).clamp_min(eps)
    n2 = x2.norm(2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


@_export
def pairwise_distance(x1: Any, x2: Any, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Any:
    """torch.nn.functional.pairwise_distance: ||x1 - x2 + eps||_p over the last dim."""
    return _norm(x1 - x2 + eps, p, -1, keepdim)


@_export
def bilinear(input1: Any, input2: Any, weight: Any, bias: Any = None) -> Any:
    """torch.nn.functional.bilinear: y[..., o] = input1[..., i] W[o, i, j] input2[..., j] + b."""
    # [..., 1, 1, i] @ W[o, i, j] -> [..., o, 1, j]; @ [..., 1, j, 1] -> [..., o, 1, 1]
    t = input1.unsqueeze(-2).unsqueeze(-2).matmul(weight)
    y = t.matmul(input2.unsqueeze(-2).unsqueeze(-1)).flatten(-3)
    return y + bias if bias is not None else y
