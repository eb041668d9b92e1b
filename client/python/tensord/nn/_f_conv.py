"""tensord.nn.functional, convolution and pooling: forms written in Python.

See functional.py: ops.def rows flagged FUNCTIONAL are exported there automatically; what is
here overrides them. Every name this module exports is in __all__.

torch's F.conv1d/conv2d take ints or tuples, and padding='valid'/'same'; the pools take
stride=None (the kernel size) and return_indices; adaptive_avg_pool2d takes None in its
output_size. These functions turn those call forms into the server ops' OpArgs lists (one value
stands for every spatial dim) and send the op at once: nothing here waits for a reply. The
server checks every value, with torch's texts. max_pool1d and avg_pool1d are torch's own
composition: unsqueeze(-2), the 2-D pool, squeeze(-2).
"""
from __future__ import annotations

from typing import Any, List



def _tensord() -> Any:
    import tensord
    return tensord


def _ints(v: Any, what: str, fn: str) -> List[int]:
    """One int or a sequence of them, as a list (torch's IntArrayRef)."""
    if isinstance(v, bool):
        raise TypeError("%s(): argument '%s' must be tuple of ints, not bool" % (fn, what))
    if isinstance(v, int):
        return [v]
    if isinstance(v, (tuple, list)):
        out = []
        for x in v:
            if not isinstance(x, int) or isinstance(x, bool):
                raise TypeError("%s(): argument '%s' must be tuple of ints, but found element "
                                "of type %s at pos %d" % (fn, what, type(x).__name__,
                                                          len(out)))
            out.append(x)
        return out
    raise TypeError("%s(): argument '%s' must be tuple of ints, not %s"
                    % (fn, what, type(v).__name__))


def _spread(v: Any, what: str, fn: str, n: int) -> List[int]:
    out = _ints(v, what, fn)
    return out * n if isinstance(v, int) else out


def _session(*ts: Any) -> Any:
    td = _tensord()
    for t in ts:
        if isinstance(t, td.Tensor):
            return t._s
    return td._session()


def _tensor(s: Any, x: Any, fn: str, what: str) -> Any:
    td = _tensord()
    if not isinstance(x, td.Tensor):
        raise TypeError("%s(): argument '%s' (position %d) must be Tensor, not %s"
                        % (fn, what, 1 if what == "input" else 2, type(x).__name__))
    return x


def _conv(fn: str, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
          dilation: Any, groups: Any) -> Any:
    s = _session(input, weight, bias)
    _tensor(s, input, fn, "input")
    _tensor(s, weight, fn, "weight")
    nsp = 1 if fn == "conv1d" else 2
    # torch's parser spreads one int over the op's spatial dims (conv2d's stride=1 is [1, 1])
    kw: dict = {"stride": _spread(stride, "stride", fn, nsp),
                "dilation": _spread(dilation, "dilation", fn, nsp), "groups": groups}
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise RuntimeError("Invalid padding string: '%s'" % padding)
        kw["padding_mode"] = padding
    else:
        kw["padding"] = _spread(padding, "padding", fn, nsp)
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError("%s(): argument 'groups' must be int, not %s"
                        % (fn, type(groups).__name__))
    if groups == 0:  # (0 on the wire is the default, 1)
        raise RuntimeError("non-positive groups is not supported")
    inputs = [input, weight] + ([bias] if bias is not None else [])
    return s._op(fn, inputs, **kw)


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """torch.nn.functional.conv1d: input [N, C, L] or [C, L], weight [Co, C/groups, k]."""
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """torch.nn.functional.conv2d: input [N, C, H, W] or [C, H, W], weight
    [Co, C/groups, kh, kw]."""
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups)


def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """torch.nn.functional.max_pool2d; with return_indices, (output, indices)."""
    fn = "max_pool2d"
    s = _session(input)
    _tensor(s, input, fn, "input")
    kw: dict = {"kernel_size": _ints(kernel_size, "kernel_size", fn),
                "padding": _ints(padding, "padding", fn),
                "dilation": _ints(dilation, "dilation", fn), "ceil_mode": bool(ceil_mode)}
    if stride is not None:
        kw["stride"] = _ints(stride, "stride", fn)
    if return_indices:
        out, idx = s._op_outputs(fn, [input], [1], **kw)
        return out, idx
    return s._op(fn, [input], **kw)


def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> Any:
    """torch.nn.functional.avg_pool2d."""
    fn = "avg_pool2d"
    s = _session(input)
    _tensor(s, input, fn, "input")
    kw: dict = {"kernel_size": _ints(kernel_size, "kernel_size", fn),
                "padding": _ints(padding, "padding", fn), "ceil_mode": bool(ceil_mode),
                "count_include_pad": bool(count_include_pad)}
    if stride is not None:
        kw["stride"] = _ints(stride, "stride", fn)
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError("divisor must be not zero")
        kw["divisor_override"] = int(divisor_override)
    return s._op(fn, [input], **kw)


def adaptive_avg_pool2d(input: Any, output_size: Any) -> Any:
    """torch.nn.functional.adaptive_avg_pool2d; None in output_size keeps the input's size."""
    fn = "adaptive_avg_pool2d"
    s = _session(input)
    _tensor(s, input, fn, "input")
    size = output_size if isinstance(output_size, (tuple, list)) else [output_size]
    if len(size) != 2 and not (len(size) == 1 and not isinstance(output_size, (tuple, list))):
        raise RuntimeError("adaptive_avg_pool2d: output_size must be 2")
    vals = [-1 if v is None else v for v in size]
    if any(isinstance(v, int) and v < 0 for v in size):  # (-1 on the wire is None)
        shown = [v if v is not None else "?" for v in (size * 2 if len(size) == 1 else size)]
        raise RuntimeError("adaptive_avg_pool2d: elements of output_size must be greater than "
                           "or equal to 0 but received {%s, %s}" % tuple(shown))
    if any(v == -1 for v in vals) and len(vals) == 1:
        vals = [-1, -1]
    return s._op(fn, [input], output_size=_ints(vals, "output_size", fn))


def max_pool1d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """torch.nn.functional.max_pool1d: max_pool2d over a height of 1."""
    fn = "max_pool1d"
    one = lambda v, w: [1 if w else 0] + _ints(v, fn, fn)[-1:]  # noqa: E731
    r = max_pool2d(input.unsqueeze(-2), one(kernel_size, 1),
                   one(stride, 1) if stride is not None else None, one(padding, 0),
                   one(dilation, 1), ceil_mode, return_indices)
    if return_indices:
        return r[0].squeeze(-2), r[1].squeeze(-2)
    return r.squeeze(-2)


def avg_pool1d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Any:
    """torch.nn.functional.avg_pool1d: avg_pool2d over a height of 1."""
    fn = "avg_pool1d"
    one = lambda v, w: [1 if w else 0] + _ints(v, fn, fn)[-1:]  # noqa: E731
    return avg_pool2d(input.unsqueeze(-2), one(kernel_size, 1),
                      one(stride, 1) if stride is not None else None, one(padding, 0),
                      ceil_mode, count_include_pad).squeeze(-2)


# every public function above (the ops' names are ops.def's, not listed here by hand)
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and callable(_v) and getattr(_v, "__module__", "") == __name__]
