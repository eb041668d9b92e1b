"""Issue 17's nn "convolution and pooling" family through the Python client, against PyTorch:
F.conv1d / F.conv2d (and torch.conv1d / torch.conv2d) with stride, padding (ints, tuples,
'valid', 'same'), dilation, groups and bias, batched and unbatched; F.max_pool2d (ceil_mode,
dilation, return_indices), F.avg_pool2d (count_include_pad, divisor_override),
F.adaptive_avg_pool2d (None in output_size), F.max_pool1d / F.avg_pool1d. Values, dtypes,
shapes, printed text, torch's error texts, gradients by backward and grad_fn names.

Each case is a function of the module (torch or tensord) run once with each; the test compares
what the two give. Inputs hold small integers and halves, so float32 sums are exact and the
printed text must match character for character.
"""

import warnings

import numpy as np
import pytest
import torch

import tensord


def F(m):
    return torch.nn.functional if m is torch else tensord.nn.functional


def outcome(m, case):
    """(printed text, values, dtype, shape, grad_fn) for a tensor; the tuple of those for a
    tuple of tensors; or ("error", text)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return describe(case(m))  # tensord's errors arrive when the value is read
    except (RuntimeError, IndexError, TypeError, tensord.TensorError) as e:
        return ("error", e.message if isinstance(e, tensord.TensorError) else str(e))


def describe(r):
    if isinstance(r, (tuple, list)):
        return tuple(describe(x) for x in r)
    name = r.grad_fn.name() if r.grad_fn is not None else None
    return (str(r).replace("tensord.", "torch."), r.tolist(), str(r.dtype).split(".")[1],
            list(r.shape), name)


def data(*shape, mod=7, off=3, scale=1.0):
    """Deterministic small values: (i % mod - off) * scale over the shape, as nested lists."""
    n = int(np.prod(shape))
    return ((np.arange(n) % mod - off) * scale).reshape(shape).tolist()


def T(m, *shape, dtype=None, mod=7, off=3, scale=1.0):
    return m.tensor(data(*shape, mod=mod, off=off, scale=scale),
                    dtype=dtype if dtype is not None else m.float32)


def nan_mask(t):
    return t != t


def L(m, *shape, **kw):
    return m.tensor(data(*shape, **kw), dtype=m.long)


VALUES = {
    # conv2d
    "conv2d": lambda m: F(m).conv2d(T(m, 2, 3, 5, 6), T(m, 4, 3, 3, 2, mod=5, off=2)),
    "conv2d_bias": lambda m: F(m).conv2d(T(m, 1, 2, 4, 4), T(m, 3, 2, 2, 2, mod=3, off=1),
                                         T(m, 3, scale=0.5)),
    "conv2d_stride_pad": lambda m: F(m).conv2d(T(m, 2, 2, 6, 7), T(m, 3, 2, 3, 3, mod=5),
                                               stride=2, padding=1),
    "conv2d_tuples": lambda m: F(m).conv2d(T(m, 1, 2, 7, 8), T(m, 2, 2, 3, 2, mod=4),
                                           stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "conv2d_groups": lambda m: F(m).conv2d(T(m, 2, 4, 5, 5), T(m, 6, 2, 3, 3, mod=5),
                                           groups=2, padding=1),
    "conv2d_depthwise": lambda m: F(m).conv2d(T(m, 1, 3, 4, 4), T(m, 3, 1, 2, 2), groups=3),
    "conv2d_same_odd": lambda m: F(m).conv2d(T(m, 1, 2, 5, 6), T(m, 3, 2, 3, 3, mod=5),
                                             padding="same"),
    "conv2d_same_even": lambda m: F(m).conv2d(T(m, 1, 2, 5, 6), T(m, 3, 2, 2, 4, mod=5),
                                              padding="same", dilation=(2, 1)),
    "conv2d_valid": lambda m: F(m).conv2d(T(m, 1, 2, 5, 6), T(m, 3, 2, 2, 2), padding="valid"),
    "conv2d_unbatched": lambda m: F(m).conv2d(T(m, 2, 4, 5), T(m, 3, 2, 2, 2)),
    "conv2d_float64": lambda m: F(m).conv2d(T(m, 1, 2, 4, 4, dtype=m.float64),
                                            T(m, 2, 2, 3, 3, dtype=m.float64, scale=0.25)),
    "conv2d_long": lambda m: F(m).conv2d(L(m, 1, 2, 4, 4), L(m, 2, 2, 2, 2)),
    "conv2d_strided_input": lambda m: F(m).conv2d(T(m, 1, 2, 5, 4).transpose(2, 3),
                                                  T(m, 2, 2, 2, 2)),
    "conv2d_expanded_input": lambda m: F(m).conv2d(T(m, 1, 1, 1, 5).expand(2, 3, 4, 5),
                                                   T(m, 1, 3, 2, 2)),
    "conv2d_empty_batch": lambda m: F(m).conv2d(T(m, 0, 2, 4, 4), T(m, 3, 2, 2, 2)),
    "torch_conv2d": lambda m: m.conv2d(T(m, 1, 2, 4, 4), T(m, 3, 2, 2, 2), None, 1, 1),
    "torch_conv2d_kw": lambda m: m.conv2d(T(m, 1, 2, 5, 5), T(m, 4, 1, 2, 2), stride=2,
                                          groups=2),
    # conv1d
    "conv1d": lambda m: F(m).conv1d(T(m, 2, 3, 9), T(m, 4, 3, 3, mod=5), T(m, 4)),
    "conv1d_stride_dil": lambda m: F(m).conv1d(T(m, 1, 2, 11), T(m, 3, 2, 3), stride=2,
                                               padding=2, dilation=2),
    "conv1d_same": lambda m: F(m).conv1d(T(m, 1, 2, 6), T(m, 2, 2, 4), padding="same"),
    "conv1d_unbatched": lambda m: F(m).conv1d(T(m, 3, 7), T(m, 2, 3, 2)),
    "conv1d_groups": lambda m: F(m).conv1d(T(m, 1, 4, 5), T(m, 4, 1, 2), groups=4),
    "torch_conv1d": lambda m: m.conv1d(T(m, 1, 2, 5), T(m, 3, 2, 3), None, 2),
    "torch_conv2d_same": lambda m: m.conv2d(T(m, 1, 2, 4, 5), T(m, 3, 2, 2, 3), padding="same"),
    "torch_conv1d_valid": lambda m: m.conv1d(T(m, 1, 2, 5), T(m, 3, 2, 3), None, 1, "valid"),
    # conv errors (torch's texts, in torch's order)
    "err_conv2d_rank": lambda m: F(m).conv2d(T(m, 5), T(m, 3, 2, 3, 3)),
    "err_conv2d_rank5": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5, 5), T(m, 3, 2, 3, 3)),
    "err_conv1d_rank": lambda m: F(m).conv1d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3)),
    "err_conv2d_weight3d": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3)),
    "err_weight_rank": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2)),
    "err_channels": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 5, 3, 3)),
    "err_channels_unbatched": lambda m: F(m).conv2d(T(m, 2, 5, 5), T(m, 3, 5, 3, 3)),
    "err_groups_divide": lambda m: F(m).conv2d(T(m, 1, 4, 5, 5), T(m, 3, 2, 3, 3), groups=2),
    "err_groups_zero": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3), groups=0),
    "err_groups_negative": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3), groups=-1),
    "err_kernel_too_big": lambda m: F(m).conv2d(T(m, 1, 2, 2, 2), T(m, 3, 2, 3, 3)),
    "err_kernel_too_big_1d": lambda m: F(m).conv1d(T(m, 1, 2, 2), T(m, 3, 2, 3)),
    "err_stride_zero": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3), stride=0),
    "err_padding_negative": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                                  padding=-1),
    "err_dilation_zero": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                               dilation=(1, 0)),
    "err_bias_size": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3), T(m, 2)),
    "err_bias_rank": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3), T(m, 3, 1)),
    "err_same_strided": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                              padding="same", stride=2),
    "err_padding_string": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                                padding="foo"),
    "err_stride_count": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                              stride=(1, 1, 1)),
    "err_dtype_input": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5, dtype=m.float64),
                                             T(m, 3, 2, 3, 3)),
    "err_dtype_weight": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5),
                                              T(m, 3, 2, 3, 3, dtype=m.float64)),
    "err_dtype_bias": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5), T(m, 3, 2, 3, 3),
                                            T(m, 3, dtype=m.float64)),
    "err_bool": lambda m: F(m).conv2d(T(m, 1, 2, 5, 5) > 0, T(m, 3, 2, 3, 3) > 0),
    # max_pool2d
    "max_pool2d": lambda m: F(m).max_pool2d(T(m, 2, 3, 6, 7, mod=11, off=5), 2),
    "max_pool2d_stride_pad_ceil": lambda m: F(m).max_pool2d(T(m, 1, 2, 6, 7, mod=11), 3, 2, 1,
                                                            ceil_mode=True),
    "max_pool2d_tuples_dilation": lambda m: F(m).max_pool2d(T(m, 1, 2, 7, 8, mod=13), (2, 3),
                                                            stride=(1, 2), dilation=(2, 1)),
    "max_pool2d_indices": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5, mod=11), 2, 2, 1,
                                                    return_indices=True),
    "max_pool2d_unbatched": lambda m: F(m).max_pool2d(T(m, 2, 4, 4, mod=5), 2),
    "max_pool2d_float64": lambda m: F(m).max_pool2d(T(m, 1, 1, 4, 4, dtype=m.float64), 2),
    "max_pool2d_nan": lambda m: nan_mask(F(m).max_pool2d(
        m.tensor([[[1.0, float("nan"), 0.0], [3.0, 2.0, 5.0]]]), (2, 2), 1)),  # NaN wins
    "max_pool2d_empty_batch": lambda m: F(m).max_pool2d(T(m, 0, 2, 4, 4), 2),
    "err_max_too_small": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 6),
    "err_max_pad": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), (2, 4), padding=(1, 3)),
    "err_max_pad_negative": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 2, padding=-1),
    "err_max_kernel_zero": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 0),
    "err_max_kernel_negative": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), (2, -2)),
    "err_max_stride_negative": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 2, stride=-1),
    "err_max_rank": lambda m: F(m).max_pool2d(T(m, 5, 5), 2),
    "err_max_dilation": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 2, dilation=0),
    "err_max_kernel_count": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), (2, 2, 2)),
    "err_max_stride_count": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 2, (2, 2, 2)),
    "err_max_padding_count": lambda m: F(m).max_pool2d(T(m, 1, 2, 5, 5), 2, 2, (1, 1, 1)),
    "err_max_long": lambda m: F(m).max_pool2d(L(m, 1, 2, 5, 5), 2),
    "err_max_empty_channels": lambda m: F(m).max_pool2d(T(m, 1, 0, 5, 5), 2),
    # avg_pool2d
    "avg_pool2d": lambda m: F(m).avg_pool2d(T(m, 2, 3, 6, 8), 2),
    "avg_pool2d_pad": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 6), 3, 2, 1),
    "avg_pool2d_no_pad_count": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 6), 3, 2, 1,
                                                         count_include_pad=False),
    "avg_pool2d_ceil": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 6), 2, ceil_mode=True),
    "avg_pool2d_ceil_pad": lambda m: F(m).avg_pool2d(T(m, 1, 1, 5, 5), 3, 2, 1,
                                                     ceil_mode=True, count_include_pad=False),
    "avg_pool2d_divisor": lambda m: F(m).avg_pool2d(T(m, 1, 2, 4, 4), 2, divisor_override=2),
    "avg_pool2d_unbatched": lambda m: F(m).avg_pool2d(T(m, 2, 4, 4), (2, 1)),
    "avg_pool2d_long": lambda m: F(m).avg_pool2d(L(m, 1, 1, 3, 3, mod=11, off=8), 2,
                                                 padding=1),
    "err_avg_divisor_zero": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5), 2, divisor_override=0),
    "err_avg_rank2": lambda m: F(m).avg_pool2d(T(m, 5, 5), 2),
    "err_avg_rank5": lambda m: F(m).avg_pool2d(T(m, 1, 1, 1, 5, 5), 2),
    "err_avg_int32": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5, dtype=m.int32), 2),
    "err_avg_bool": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5) > 0, 2),
    "err_avg_too_small": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5), 6),
    "err_avg_padding_count": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5), 2, 2, (1, 1, 1)),
    "err_avg_stride_zero": lambda m: F(m).avg_pool2d(T(m, 1, 2, 5, 5), 2, stride=0),
    # adaptive_avg_pool2d
    "adaptive": lambda m: F(m).adaptive_avg_pool2d(T(m, 2, 3, 7, 9), (3, 4)),
    "adaptive_int": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 2, 6, 6), 4),
    "adaptive_up": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 1, 3, 2), (5, 4)),
    "adaptive_one": lambda m: F(m).adaptive_avg_pool2d(T(m, 2, 3, 4, 4), 1),
    "adaptive_none": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 2, 5, 6), (None, 2)),
    "adaptive_unbatched": lambda m: F(m).adaptive_avg_pool2d(T(m, 2, 5, 5), 2),
    "adaptive_empty_channels": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 0, 5, 5), 2),
    "err_adaptive_rank": lambda m: F(m).adaptive_avg_pool2d(T(m, 5, 5), 2),
    "err_adaptive_size_count": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 2, 5, 5), (2, 2, 2)),
    "err_adaptive_negative": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 2, 5, 5), (2, -3)),
    "err_adaptive_empty": lambda m: F(m).adaptive_avg_pool2d(T(m, 1, 2, 0, 5), 2),
    "err_adaptive_long": lambda m: F(m).adaptive_avg_pool2d(L(m, 1, 2, 5, 5), 2),
    # the 1-d pools
    "max_pool1d": lambda m: F(m).max_pool1d(T(m, 2, 3, 7, mod=5), 2),
    "max_pool1d_pad": lambda m: F(m).max_pool1d(T(m, 1, 2, 7, mod=5), 3, 2, 1),
    "max_pool1d_indices": lambda m: F(m).max_pool1d(T(m, 1, 2, 6, mod=5), 2,
                                                    return_indices=True),
    "avg_pool1d": lambda m: F(m).avg_pool1d(T(m, 2, 3, 8), 3, 2, 1),
    "avg_pool1d_unbatched": lambda m: F(m).avg_pool1d(T(m, 3, 8), 2),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_dtypes_text_and_errors_match_torch(td, name):
    want, got = outcome(torch, VALUES[name]), outcome(td, VALUES[name])
    assert got == want


def leaf(m, d):
    return m.tensor(d, dtype=m.float64, requires_grad=True)


# (input data, function of the leaves) -> the result whose weighted sum is differentiated
GRADS = {
    "conv2d": ([data(2, 3, 5, 6), data(4, 3, 3, 2, mod=5), data(4)],
               lambda m, x, w, b: F(m).conv2d(x, w, b)),
    "conv2d_all_args": ([data(2, 4, 7, 8), data(6, 2, 3, 3, mod=5), data(6)],
                        lambda m, x, w, b: F(m).conv2d(x, w, b, stride=(2, 1), padding=(1, 2),
                                                       dilation=(1, 2), groups=2)),
    "conv2d_same_even": ([data(1, 2, 5, 6), data(3, 2, 2, 4, mod=5)],
                         lambda m, x, w: F(m).conv2d(x, w, padding="same")),
    "conv2d_unbatched": ([data(2, 4, 5), data(3, 2, 2, 2), data(3)],
                         lambda m, x, w, b: F(m).conv2d(x, w, b, padding=1)),
    "conv1d": ([data(2, 3, 9), data(4, 3, 3, mod=5), data(4)],
               lambda m, x, w, b: F(m).conv1d(x, w, b, stride=2, padding=1, dilation=2)),
    "conv1d_unbatched": ([data(3, 7), data(2, 3, 2)], lambda m, x, w: F(m).conv1d(x, w)),
    "conv1d_weight_only": ([data(4, 3, 3, mod=5)],
                           lambda m, w: F(m).conv1d(m.tensor(data(2, 3, 9), dtype=m.float64),
                                                    w)),
    "max_pool2d": ([data(2, 3, 6, 7, mod=11, off=5)],
                   lambda m, x: F(m).max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    "max_pool2d_dilation": ([data(1, 2, 7, 8, mod=13)],
                            lambda m, x: F(m).max_pool2d(x, (2, 3), (1, 2), dilation=(2, 1))),
    "max_pool2d_indices": ([data(1, 2, 5, 5, mod=11)],
                           lambda m, x: F(m).max_pool2d(x, 2, return_indices=True)[0]),
    "avg_pool2d": ([data(1, 2, 5, 6)], lambda m, x: F(m).avg_pool2d(x, 3, 2, 1)),
    "avg_pool2d_options": ([data(1, 2, 5, 6)],
                           lambda m, x: F(m).avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                        count_include_pad=False)),
    "avg_pool2d_divisor": ([data(2, 4, 4)], lambda m, x: F(m).avg_pool2d(x, 2,
                                                                         divisor_override=3)),
    "adaptive": ([data(2, 3, 7, 9)], lambda m, x: F(m).adaptive_avg_pool2d(x, (3, 4))),
    "adaptive_up": ([data(1, 1, 3, 2)], lambda m, x: F(m).adaptive_avg_pool2d(x, (5, 4))),
    "adaptive_one": ([data(2, 3, 4, 4)], lambda m, x: F(m).adaptive_avg_pool2d(x, 1)),
    "adaptive_one_none": ([data(2, 3, 1, 4)],
                          lambda m, x: F(m).adaptive_avg_pool2d(x, (None, 1))),
    "max_pool1d": ([data(2, 3, 7, mod=5)], lambda m, x: F(m).max_pool1d(x, 3, 2, 1)),
    "avg_pool1d": ([data(2, 3, 8)], lambda m, x: F(m).avg_pool1d(x, 3, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_grads_and_names_match_torch(td, name):
    data_, f = GRADS[name]
    results = []
    for m in (torch, td):
        xs = [leaf(m, d) for d in data_]
        y = f(m, *xs)
        w = m.tensor(np.linspace(0.5, 2.0, int(np.prod(y.shape))).reshape(tuple(y.shape))
                     .tolist(), dtype=y.dtype)
        (y * w).sum().backward()
        results.append((y.grad_fn.name(), str(y.dtype).split(".")[1], list(y.shape),
                        [x.grad.tolist() for x in xs], y.tolist()))
    want, got = results
    assert got[:3] == want[:3]
    for g, w in zip(got[3], want[3]):
        assert np.allclose(np.array(g), np.array(w), rtol=1e-9, atol=1e-12), (g, w)
    assert np.allclose(np.array(got[4]), np.array(want[4]), rtol=1e-9)


def test_nn_functional_exports_the_family(td):
    for name in ("conv1d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                 "max_pool1d", "avg_pool1d"):
        assert callable(getattr(tensord.nn.functional, name)), name
        assert hasattr(torch.nn.functional, name)


def test_a_cnn_step_waits_for_nothing(daemon):
    """conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d, the 1-d pools and backward through
    them are sent without waiting for a reply (a training step is one round trip): only
    reading the loss waits, once."""
    s = tensord.connect("127.0.0.1:%d" % daemon)
    try:
        f = tensord.nn.functional
        x = s.tensor(data(2, 3, 8, 8), dtype=tensord.float32)
        w = s.tensor(data(4, 3, 3, 3, mod=5, scale=0.1), dtype=tensord.float32, requires_grad=True)
        b = s.tensor(data(4, scale=0.1), dtype=tensord.float32, requires_grad=True)
        x.tolist()
        before = s._c.waits
        h = f.conv2d(x, w, b, padding="same")
        h = f.max_pool2d(h, 2, return_indices=True)[0]
        h = f.avg_pool2d(h, 2, ceil_mode=True)
        h = f.adaptive_avg_pool2d(h, (None, 1))
        h = f.max_pool1d(h.flatten(2), 1) + f.avg_pool1d(h.flatten(2), 1)
        loss = h.sum()
        loss.backward()
        assert s._c.waits == before, "issuing the step must not wait for replies"
        loss.item()
        assert s._c.waits == before + 1
    finally:
        s.close()


def test_tensorctl_runs_the_family_through_the_generated_table(daemon):
    """tensorctl's conv2d / max_pool2d / avg_pool2d / adaptive_avg_pool2d parse torch's
    arguments from ops.def's signatures, and print what torch prints."""
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    ctl = os.environ.get("TENSORCTL_BIN", os.path.join(here, "..", "..", "build", "tensorctl"))
    stmts = ["x = arange(32.).reshape(1, 2, 4, 4)", "w = ones(3, 2, 2, 2)",
             "print(conv2d(x, w, None, 1, 1))", "print(conv2d(x, w, stride=2, groups=1))",
             "print(conv2d(x, w, padding='same').shape)",
             "print(conv1d(x[0, :, 0], ones(1, 2, 3), None, 1, 'valid'))",
             "print(max_pool2d(x, 2, 1, return_indices=True))",
             "print(avg_pool2d(x, 3, 2, 1, count_include_pad=False))",
             "print(adaptive_avg_pool2d(x, (None, 2)))"]
    r = subprocess.run([ctl, "-q", "--addr", "127.0.0.1:%d" % daemon, "-c", "\n".join(stmts)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = io_of(stmts)
    assert r.stdout.replace("tensord.", "torch.") == want


def io_of(stmts):
    """What the statements print under torch (its names in scope, as tensorctl's are)."""
    import contextlib
    import io
    out = io.StringIO()
    scope = dict(vars(torch))
    scope.update(vars(torch.nn.functional))
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for st in stmts:
            exec(st, scope)
    return out.getvalue()
