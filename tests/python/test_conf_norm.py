"""The nn normalisation, dropout, embedding and padding family against PyTorch through the
Python client: F.layer_norm, F.batch_norm (training with its in-place running statistics, and
evaluation), F.embedding (padding_idx), F.one_hot, F.pad (constant), F.dropout, F.normalize,
F.cosine_similarity, F.pairwise_distance and F.bilinear.

Every case is a function of the module (torch or tensord), run once with each: values, dtypes,
shapes, printed text (str with "torch." read as "tensord."), error texts, and for the
differentiable ones gradients and grad_fn names. dropout draws from a different generator than
torch's, so its cases check what torch guarantees: every entry is 0 or x / (1 - p).
"""
import numpy as np
import pytest
import torch

import tensord


def F(m):
    return torch.nn.functional if m is torch else tensord.nn.functional


def outcome(m, case):
    """(values, dtype, shape, printed text, grad_fn name) or ("error", first line of text)."""
    try:
        r = case(m)
        if isinstance(r, tuple):  # a case that also returns tensors it changed in place
            return tuple(outcome(m, lambda _m, t=t: t) for t in r)
        name = r.grad_fn.name() if r.grad_fn is not None else None
        return (r.tolist(), str(r.dtype).split(".")[1], list(r.shape),
                str(r).replace("torch.", "tensord.").split("grad_fn=")[0], name)
    except (RuntimeError, IndexError, TypeError, ValueError, AssertionError,
            NotImplementedError, tensord.TensorError) as e:
        return ("error", (e.message if isinstance(e, tensord.TensorError) else str(e))
                .split("\n")[0])


def same(want, got):
    if isinstance(want, tuple) and want and isinstance(want[0], tuple):
        assert len(got) == len(want)
        for w, g in zip(want, got):
            same(w, g)
        return
    if want[0] == "error" or got[0] == "error":
        assert got == want
        return
    assert got[1:3] == want[1:3] and got[4] == want[4], (got, want)
    assert np.allclose(np.array(got[0], dtype=float), np.array(want[0], dtype=float),
                       rtol=1e-5, atol=1e-5, equal_nan=True), (got[0], want[0])
    assert got[3] == want[3]


X = [[1.0, 2.0, 4.0], [3.0, -1.0, 0.5]]
X3 = [[[1.0, 2.0], [4.0, 3.0], [-1.0, 0.5]], [[2.0, -2.0], [0.0, 1.5], [3.0, 3.5]]]
V = [0.5, -1.5, 2.0]
B = [0.1, 0.2, -0.3]


def t(m, data, dt="float32", grad=False):
    return m.tensor(data, dtype=getattr(m, dt), requires_grad=grad)


def xt(m):
    """A non-contiguous [2, 3]."""
    return m.tensor([[1.0, 3.0], [2.0, -1.0], [4.0, 0.5]]).t()


def bn_train(m, x, *more, **kw):
    rm, rv = m.tensor([0.5, -0.5, 1.0]), m.tensor([1.0, 2.0, 0.5])
    return F(m).batch_norm(x, rm, rv, *more, training=True, **kw), rm, rv


def emb_max_norm(m, max_norm, norm_type):
    """embedding with max_norm: the result, then the weight its named rows were scaled in."""
    w = t(m, [[3.0, 4.0], [0.3, 0.4], [6.0, 8.0], [1.0, 1.0]])
    y = F(m).embedding(m.tensor([[0, 1], [0, 2]]), w, max_norm=max_norm, norm_type=norm_type)
    return y, w


CASES = {
    # layer_norm
    "ln": lambda m: F(m).layer_norm(t(m, X), (3,)),
    "ln_list_shape": lambda m: F(m).layer_norm(t(m, X), [3]),
    "ln_err_int_shape": lambda m: F(m).layer_norm(t(m, X), 3),
    "ln_size_shape": lambda m: F(m).layer_norm(t(m, X3), t(m, X3).shape[1:]),
    "ln_affine": lambda m: F(m).layer_norm(t(m, X), (3,), t(m, V), t(m, B)),
    "ln_weight_only": lambda m: F(m).layer_norm(t(m, X), (3,), t(m, V)),
    "ln_bias_only": lambda m: F(m).layer_norm(t(m, X), (3,), None, t(m, B)),
    "ln_bias_kw": lambda m: F(m).layer_norm(t(m, X), (3,), bias=t(m, B), eps=0.1),
    "ln_2d_shape": lambda m: F(m).layer_norm(t(m, X3), (3, 2)),
    "ln_f64": lambda m: F(m).layer_norm(t(m, X, "float64"), (3,), eps=1e-3),
    "ln_strided": lambda m: F(m).layer_norm(xt(m), (3,), t(m, V)),
    "ln_empty": lambda m: F(m).layer_norm(m.ones(0, 3), (3,)),
    "ln_err_shape": lambda m: F(m).layer_norm(t(m, X), (4,)),
    "ln_err_shape2": lambda m: F(m).layer_norm(t(m, X), (2, 3, 4)),
    "ln_err_empty_shape": lambda m: F(m).layer_norm(t(m, X), ()),
    "ln_err_weight": lambda m: F(m).layer_norm(t(m, X), (3,), m.ones(4)),
    "ln_err_bias": lambda m: F(m).layer_norm(t(m, X), (3,), None, m.ones(4)),
    "ln_err_weight_dtype": lambda m: F(m).layer_norm(t(m, X), (3,), t(m, V, "float64")),
    "ln_err_input_dtype": lambda m: F(m).layer_norm(t(m, X, "float64"), (3,), t(m, V)),
    "ln_err_long": lambda m: F(m).layer_norm(t(m, X).long(), (3,)),
    # batch_norm: evaluation
    "bn_eval": lambda m: F(m).batch_norm(t(m, X), t(m, [0.5, 0.0, 1.0]), t(m, [1.0, 2.0, 4.0])),
    "bn_eval_affine": lambda m: F(m).batch_norm(t(m, X), t(m, [0.5, 0.0, 1.0]),
                                                t(m, [1.0, 2.0, 4.0]), t(m, V), t(m, B)),
    "bn_eval_bias_only": lambda m: F(m).batch_norm(t(m, X), t(m, [0.5, 0.0, 1.0]),
                                                   t(m, [1.0, 2.0, 4.0]), bias=t(m, B)),
    "bn_eval_3d": lambda m: F(m).batch_norm(t(m, X3), t(m, [0.5, 0.0, 1.0]),
                                            t(m, [1.0, 2.0, 4.0]), eps=0.01),
    "bn_eval_strided": lambda m: F(m).batch_norm(xt(m), t(m, [0.5, 0.0, 1.0]),
                                                 t(m, [1.0, 2.0, 4.0])),
    "bn_eval_f64": lambda m: F(m).batch_norm(t(m, X, "float64"), t(m, [0.5, 0.0, 1.0], "float64"),
                                             t(m, [1.0, 2.0, 4.0], "float64")),
    # batch_norm: training (the result, then running_mean and running_var after it)
    "bn_train": lambda m: bn_train(m, t(m, X)),
    "bn_train_affine": lambda m: bn_train(m, t(m, X), t(m, V), t(m, B)),
    "bn_train_3d": lambda m: bn_train(m, t(m, X3), momentum=0.3, eps=0.01),
    "bn_train_strided": lambda m: bn_train(m, xt(m)),
    "bn_train_no_stats": lambda m: F(m).batch_norm(t(m, X3), None, None, training=True),
    "bn_train_4d": lambda m: bn_train(m, t(m, X3).reshape(2, 3, 1, 2)),
    "bn_err_eval_no_stats": lambda m: F(m).batch_norm(t(m, X), None, None),
    "bn_err_mean_size": lambda m: F(m).batch_norm(t(m, X), m.zeros(4), m.ones(4)),
    "bn_err_var_size": lambda m: F(m).batch_norm(t(m, X), m.zeros(3), m.ones(4)),
    "bn_err_weight_size": lambda m: F(m).batch_norm(t(m, X), m.zeros(3), m.ones(3), m.ones(4)),
    "bn_err_bias_size": lambda m: F(m).batch_norm(t(m, X), m.zeros(3), m.ones(3), None,
                                                  m.ones(4)),
    "bn_err_one_per_channel": lambda m: F(m).batch_norm(m.ones(1, 3), m.zeros(3), m.ones(3),
                                                        training=True),
    "bn_err_long": lambda m: F(m).batch_norm(t(m, X).long(), m.zeros(3), m.ones(3)),
    "bn_err_mixed": lambda m: F(m).batch_norm(t(m, X), m.zeros(3).double(), m.ones(3)),
    "bn_err_mean_requires_grad": lambda m: F(m).batch_norm(
        t(m, X), m.zeros(3, requires_grad=True), m.ones(3), training=True),
    "bn_err_var_requires_grad": lambda m: F(m).batch_norm(
        t(m, X), m.zeros(3), m.ones(3, requires_grad=True)),
    "bn_err_mixed_f64": lambda m: F(m).batch_norm(t(m, X, "float64"), m.zeros(3), m.ones(3)),
    "bn_err_momentum_none": lambda m: F(m).batch_norm(t(m, X), m.zeros(3), m.ones(3),
                                                      training=True, momentum=None),
    "ln_err_list": lambda m: F(m).layer_norm([1.0], (1,)),
    "ln_err_list_bias": lambda m: F(m).layer_norm(t(m, X), (3,), None, [1.0, 1.0, 1.0]),
    "bn_err_list_mean": lambda m: F(m).batch_norm(t(m, X), [0.0] * 3, None, training=True),
    "bn_err_list_weight": lambda m: F(m).batch_norm(t(m, X), None, None, [1.0] * 3,
                                                    training=True),
    "emb_err_list": lambda m: F(m).embedding([1], t(m, X)),
    "emb_err_list_weight": lambda m: F(m).embedding(m.tensor([1]), [[1.0]]),
    "oh_err_list": lambda m: F(m).one_hot([1]),
    "pad_err_list": lambda m: F(m).pad([1.0], (1, 1)),
    "bn_err_1d": lambda m: F(m).batch_norm(m.ones(3), m.zeros(3), m.ones(3)),
    # embedding
    "emb": lambda m: F(m).embedding(m.tensor([[0, 2], [1, 1]]), t(m, X3[0])),
    "emb_int32": lambda m: F(m).embedding(m.tensor([2, 0], dtype=m.int32), t(m, X3[0])),
    "emb_0d": lambda m: F(m).embedding(m.tensor(1), t(m, X3[0])),
    "emb_padding": lambda m: F(m).embedding(m.tensor([0, 2]), t(m, X3[0]), padding_idx=2),
    "emb_padding_neg": lambda m: F(m).embedding(m.tensor([0, 2]), t(m, X3[0]), padding_idx=-1),
    "emb_max_norm": lambda m: emb_max_norm(m, 1.0, 2.0),
    "emb_max_norm_p1": lambda m: emb_max_norm(m, 2.0, 1.0),
    "emb_long_weight": lambda m: F(m).embedding(m.tensor([1]), t(m, X).long()),
    "emb_err_range": lambda m: F(m).embedding(m.tensor([3]), t(m, X3[0])),
    "emb_err_negative": lambda m: F(m).embedding(m.tensor([-1]), t(m, X3[0])),
    "emb_err_float_idx": lambda m: F(m).embedding(m.tensor([1.0]), t(m, X3[0])),
    "emb_err_weight_1d": lambda m: F(m).embedding(m.tensor([1]), m.ones(3)),
    "emb_err_padding": lambda m: F(m).embedding(m.tensor([1]), t(m, X3[0]), padding_idx=3),
    "emb_err_padding_neg": lambda m: F(m).embedding(m.tensor([1]), t(m, X3[0]), padding_idx=-4),
    # one_hot
    "oh": lambda m: F(m).one_hot(m.tensor([0, 2, 1])),
    "oh_classes": lambda m: F(m).one_hot(m.tensor([[0, 2], [1, 1]]), 4),
    "oh_0d": lambda m: F(m).one_hot(m.tensor(2), num_classes=3),
    "oh_strided": lambda m: F(m).one_hot(m.tensor([[0, 2], [1, 1]]).t()),
    "oh_empty": lambda m: F(m).one_hot(m.tensor([], dtype=m.int64), 3),
    "oh_err_float": lambda m: F(m).one_hot(m.tensor([1.0])),
    "oh_err_int32": lambda m: F(m).one_hot(m.tensor([1], dtype=m.int32)),
    "oh_err_negative": lambda m: F(m).one_hot(m.tensor([-1, 0])),
    "oh_err_too_small": lambda m: F(m).one_hot(m.tensor([3]), 3),
    "oh_err_empty": lambda m: F(m).one_hot(m.tensor([], dtype=m.int64)),
    "oh_err_minus2": lambda m: F(m).one_hot(m.tensor([1]), -2),
    # pad (constant)
    "pad": lambda m: F(m).pad(t(m, X), (1, 2)),
    "pad_value": lambda m: F(m).pad(t(m, X), (1, 0, 0, 1), value=9.5),
    "pad_mode_kw": lambda m: F(m).pad(t(m, X), [0, 1], mode="constant", value=-1),
    "pad_long": lambda m: F(m).pad(t(m, X).long(), (1, 1), value=7),
    "pad_bool": lambda m: F(m).pad(t(m, X).bool(), (1, 1)),
    "pad_crop": lambda m: F(m).pad(t(m, X), (-1, 1, 1, -1)),
    "pad_3d": lambda m: F(m).pad(t(m, X3), (1, 1, 0, 0, 1, 0)),
    "pad_strided": lambda m: F(m).pad(xt(m), (2, 0)),
    "pad_err_odd": lambda m: F(m).pad(t(m, X), (1,)),
    "pad_err_long": lambda m: F(m).pad(t(m, X), (1, 1, 1, 1, 1, 1)),
    "pad_err_mode": lambda m: F(m).pad(t(m, X), (1, 1), mode="foo"),
    "pad_err_reflect_value": lambda m: F(m).pad(t(m, X), (1, 1), mode="reflect", value=1.0),
    # pad: reflect, replicate, circular
    "reflect_1d": lambda m: F(m).pad(t(m, X3), (2, 1), mode="reflect"),
    "reflect_1d_unbatched": lambda m: F(m).pad(t(m, X), (1, 2), mode="reflect"),
    "reflect_2d": lambda m: F(m).pad(t(m, X3), (1, 0, 2, 1), mode="reflect"),
    "reflect_3d": lambda m: F(m).pad(t(m, X3).reshape(1, 2, 3, 2), (1, 1, 1, 1, 1, 0),
                                     mode="reflect"),
    "reflect_crop": lambda m: F(m).pad(t(m, X), (-1, 2), mode="reflect"),
    "reflect_strided": lambda m: F(m).pad(xt(m), (2, 2), mode="reflect"),
    "reflect_value0": lambda m: F(m).pad(t(m, X), (1, 1), mode="reflect", value=0),
    "replicate_1d": lambda m: F(m).pad(t(m, X3), (3, 1), mode="replicate"),
    "replicate_2d": lambda m: F(m).pad(t(m, X3).reshape(1, 2, 3, 2), (2, 0, 1, 3),
                                       mode="replicate"),
    "replicate_f64": lambda m: F(m).pad(t(m, X, "float64"), (1, -1), mode="replicate"),
    "circular_1d": lambda m: F(m).pad(t(m, X3), (2, 1), mode="circular"),
    "circular_2d": lambda m: F(m).pad(t(m, X3).reshape(1, 2, 3, 2), (1, 2, 2, 1), mode="circular"),
    "circular_long": lambda m: F(m).pad(t(m, X3).long(), (1, 1), mode="circular"),
    "circular_crop": lambda m: F(m).pad(t(m, X3), (-1, 1), mode="circular"),
    "reflect_err_size": lambda m: F(m).pad(t(m, X3), (2, 0), mode="reflect"),
    "reflect_err_rank": lambda m: F(m).pad(m.ones(4), (1, 1), mode="reflect"),
    "reflect_err_rank2": lambda m: F(m).pad(t(m, X3), (1, 1, 1, 1, 1, 1), mode="reflect"),
    "reflect_err_long": lambda m: F(m).pad(t(m, X3).long(), (1, 1), mode="reflect"),
    "replicate_err_long": lambda m: F(m).pad(t(m, X3).int(), (1, 1, 1, 1), mode="replicate"),
    "circular_err_size": lambda m: F(m).pad(t(m, X3), (1, 1, 1, 1), mode="circular"),
    "circular_err_wrap": lambda m: F(m).pad(t(m, X3), (3, 0), mode="circular"),
    # dropout's deterministic forms
    "drop_p0": lambda m: F(m).dropout(t(m, X), 0.0),
    "drop_eval": lambda m: F(m).dropout(t(m, X), 0.5, training=False),
    "drop_p1": lambda m: F(m).dropout(t(m, X, grad=True), 1.0),
    "drop_p1_inplace": lambda m: F(m).dropout(t(m, X) * 1, 1.0, inplace=True),
    "drop_err_p": lambda m: F(m).dropout(t(m, X), 1.5),
    "drop_err_p_neg": lambda m: F(m).dropout(t(m, X), -0.1),
    "drop_err_long": lambda m: F(m).dropout(t(m, X).long(), 0.5),
    # composites
    "normalize": lambda m: F(m).normalize(t(m, X)),
    "normalize_dim0_p1": lambda m: F(m).normalize(t(m, X), p=1, dim=0),
    "normalize_p3": lambda m: F(m).normalize(t(m, X3), 3.0, -1),
    "normalize_p0": lambda m: F(m).normalize(t(m, [[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]), p=0),
    "normalize_inf": lambda m: F(m).normalize(t(m, X), p=float("inf")),
    "normalize_neg_inf": lambda m: F(m).normalize(t(m, X), p=float("-inf"), dim=0),
    "pdist_inf": lambda m: F(m).pairwise_distance(t(m, X), t(m, [V, B]), p=float("inf")),
    "normalize_zero": lambda m: F(m).normalize(m.zeros(2, 3)),
    "cos": lambda m: F(m).cosine_similarity(t(m, X), t(m, [V, B])),
    "cos_dim0": lambda m: F(m).cosine_similarity(t(m, X), t(m, [V, B]), dim=0),
    "cos_bcast": lambda m: F(m).cosine_similarity(t(m, X), t(m, V), dim=-1),
    "pdist": lambda m: F(m).pairwise_distance(t(m, X), t(m, [V, B])),
    "pdist_keep_p1": lambda m: F(m).pairwise_distance(t(m, X), t(m, [V, B]), p=1.0, keepdim=True),
    "bilinear": lambda m: F(m).bilinear(t(m, X), t(m, [[1.0, 2.0], [0.5, -1.0]]),
                                        t(m, [[[1.0, 0.0], [0.5, 1.0], [2.0, -1.0]],
                                              [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]]]),
                                        t(m, [0.5, -0.5])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_dtypes_text_and_errors_match_torch(td, name):
    same(outcome(torch, CASES[name]), outcome(td, CASES[name]))


# (inputs, function of the leaves) -> the result whose weighted sum is differentiated
GRADS = {
    "ln_affine": ([X, V, B], lambda m, x, w, b: F(m).layer_norm(x, (3,), w, b)),
    "ln_plain": ([X3], lambda m, x: F(m).layer_norm(x, (3, 2), eps=0.01)),
    "ln_bias_only": ([X, B], lambda m, x, b: F(m).layer_norm(x, (3,), None, b)),
    "bn_train": ([X3, V, B], lambda m, x, w, b: F(m).batch_norm(
        x, m.zeros(3), m.ones(3), w, b, training=True)),
    "bn_train_plain": ([X], lambda m, x: F(m).batch_norm(x, None, None, training=True)),
    "bn_eval": ([X3, V, B], lambda m, x, w, b: F(m).batch_norm(
        x, m.tensor([0.5, 0.0, 1.0]), m.tensor([1.0, 2.0, 4.0]), w, b)),
    "bn_eval_plain": ([X], lambda m, x: F(m).batch_norm(x, m.tensor([0.5, 0.0, 1.0]),
                                                         m.tensor([1.0, 2.0, 4.0]))),
    "emb": ([X3[0]], lambda m, w: F(m).embedding(m.tensor([[0, 2], [2, 2]]), w)),
    "emb_padding": ([X3[0]], lambda m, w: F(m).embedding(m.tensor([[0, 2], [2, 1]]), w,
                                                         padding_idx=2)),
    "pad": ([X], lambda m, x: F(m).pad(x, (1, 2, 1, 0), value=3.0)),
    "pad_crop": ([X], lambda m, x: F(m).pad(x, (-1, 1))),
    "reflect": ([X3], lambda m, x: F(m).pad(x, (1, 1, 2, 1), mode="reflect")),
    "reflect_crop": ([X], lambda m, x: F(m).pad(x, (2, -1), mode="reflect")),
    "replicate": ([X3], lambda m, x: F(m).pad(x, (3, 1), mode="replicate")),
    "replicate_3d": ([X3], lambda m, x: F(m).pad(x.reshape(1, 2, 3, 2), (1, 1, 0, 2, 1, 0),
                                                 mode="replicate")),
    "normalize": ([X], lambda m, x: F(m).normalize(x)),
    "cos": ([X, [V, B]], lambda m, a, b: F(m).cosine_similarity(a, b)),
    "pdist": ([X, [V, B]], lambda m, a, b: F(m).pairwise_distance(a, b)),
    "bilinear": ([X, [[1.0, 2.0], [0.5, -1.0]], [[[1.0, 0.0], [0.5, 1.0], [2.0, -1.0]]], [0.5]],
                 lambda m, a, b, w, c: F(m).bilinear(a, b, w, c)),
    "bilinear_nobias": ([X, [[1.0, 2.0], [0.5, -1.0]], [[[1.0, 0.0], [0.5, 1.0], [2.0, -1.0]]]],
                        lambda m, a, b, w: F(m).bilinear(a, b, w)),
    "drop_p1": ([X], lambda m, x: F(m).dropout(x, 1.0)),
    "emb_max_norm": ([[[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]]],
                     lambda m, w: F(m).embedding(m.tensor([[0, 1], [0, 2]]), w, max_norm=1.0)),
}


def grads(m, inputs, fn):
    leaves = [m.tensor(v, requires_grad=True) for v in inputs]
    y = fn(m, *leaves)
    w = m.arange(y.numel(), dtype=y.dtype).reshape(y.shape) * 0.25 - 1.0
    (y * w).sum().backward()
    return y.grad_fn.name(), [leaf.grad.tolist() for leaf in leaves]


@pytest.mark.parametrize("name", sorted(GRADS))
def test_grads_and_grad_fn_match_torch(td, name):
    inputs, fn = GRADS[name]
    want, got = grads(torch, inputs, fn), grads(td, inputs, fn)
    assert got[0] == want[0]
    for g, w in zip(got[1], want[1]):
        assert np.allclose(np.array(g), np.array(w), rtol=1e-4, atol=1e-5), (g, w)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_keeps_or_scales_every_entry(td, p):
    x = td.arange(1.0, 2001.0, requires_grad=True)
    y = F(td).dropout(x, p)
    assert y.grad_fn.name() == "MulBackward0"
    got = np.array(y.tolist())
    xs = np.arange(1.0, 2001.0)
    kept = got != 0
    assert np.allclose(got[kept], xs[kept] / (1 - p), rtol=1e-5)
    assert abs(kept.mean() - (1 - p)) < 0.06
    y.sum().backward()
    g = np.array(x.grad.tolist())
    assert np.allclose(g[kept], 1 / (1 - p), rtol=1e-5) and np.all(g[~kept] == 0)


@pytest.mark.parametrize("name,shape,channels", [
    ("dropout1d", (4, 50, 6), (4, 50, 1)), ("dropout1d", (50, 6), (50, 1)),
    ("dropout2d", (4, 50, 3, 2), (4, 50, 1, 1)), ("dropout2d", (4, 50, 6), (4, 50, 1)),
    ("dropout3d", (2, 50, 2, 1, 3), (2, 50, 1, 1, 1)), ("dropout3d", (50, 2, 1, 3), (50, 1, 1, 1))])
def test_feature_dropout_zeroes_whole_channels(td, name, shape, channels):
    x = td.ones(*shape, requires_grad=True)
    y = getattr(F(td), name)(x, 0.4)
    assert y.grad_fn.name() == "MulBackward0" and list(y.shape) == list(shape)
    got = np.array(y.tolist())
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, channels)) if a != b)
    lo, hi = got.min(axis=axes), got.max(axis=axes)
    assert np.array_equal(lo, hi)  # one draw per channel
    assert set(np.unique(lo).round(5)) <= {0.0, round(1 / 0.6, 5)}
    assert 0.3 < (lo != 0).mean() < 0.9


FEATURE_ERRORS = {
    "d1_rank": lambda m: F(m).dropout1d(m.ones(2, 3, 4, 5), 0.5),
    "d1_rank1": lambda m: F(m).dropout1d(m.ones(4), 0.5),
    "d2_rank1": lambda m: F(m).dropout2d(m.ones(4), 0.5),
    "d2_p": lambda m: F(m).dropout2d(m.ones(2, 3, 4), 1.5),
    "d3_long": lambda m: F(m).dropout3d(m.ones(2, 3, 4, 4, dtype=m.int64), 0.5),
    "d2_eval": lambda m: F(m).dropout2d(m.ones(2, 3, 4), 0.5, training=False),
    "d3_p1": lambda m: F(m).dropout3d(m.ones(2, 3, 1, 4, 4, requires_grad=True), 1.0),
}


@pytest.mark.filterwarnings("ignore:dropout2d")  # torch's deprecation warnings
@pytest.mark.parametrize("name", sorted(FEATURE_ERRORS))
def test_feature_dropout_errors_and_fixed_forms_match_torch(td, name):
    same(outcome(torch, FEATURE_ERRORS[name]), outcome(td, FEATURE_ERRORS[name]))


def test_dropout_in_place_and_seeded(td):
    td.manual_seed(5)
    a = F(td).dropout(td.ones(50), 0.5).tolist()
    td.manual_seed(5)
    x = td.ones(50)
    r = F(td).dropout(x, 0.5, inplace=True)
    assert r is x and x.tolist() == a


def test_batch_norm_running_stats_over_steps_match_torch(td):
    """Three training steps then evaluation, with a module-like momentum: the running
    statistics (unbiased variance) and the eval output follow torch's."""
    data = np.random.RandomState(3).randn(3, 4, 3, 2).astype(np.float32)
    out = {}
    for m in (torch, td):
        rm, rv = m.zeros(3), m.ones(3)
        for k in range(3):
            F(m).batch_norm(m.tensor(data[k]), rm, rv, training=True, momentum=0.25)
        y = F(m).batch_norm(m.tensor(data[0]), rm, rv)
        out[m.__name__] = (rm.tolist(), rv.tolist(), y.tolist())
    for w, g in zip(out["torch"], out["tensord"]):
        assert np.allclose(np.array(g), np.array(w), rtol=1e-5, atol=1e-6)


def test_a_step_through_the_family_waits_for_no_reply(td):
    """Every function here is issued without reading a reply (pipelined, as a training step
    must be): inputs made by unanswered ops, forward and backward, then one read."""
    s = td._session()
    x = td.randn(4, 3, 5, requires_grad=True)
    w, b = td.ones(5, requires_grad=True), td.zeros(5, requires_grad=True)
    rm, rv = td.zeros(3), td.ones(3)
    emb, W = td.randn(10, 5, requires_grad=True), td.randn(2, 5, 5, requires_grad=True)
    x.tolist()
    before = s._c.waits
    f = F(td)
    y = f.batch_norm(f.layer_norm(x * 2, (5,), w, b), rm, rv, training=True, momentum=0.2)
    y = f.pad(f.pad(f.dropout2d(f.dropout(y, 0.3), 0.3), (1, 1), mode="reflect"), (1, 1))
    y = f.normalize(y, dim=-1)
    e = f.embedding(td.tensor([[1, 2], [3, 0]]) * 1, emb, padding_idx=0, max_norm=1.0)
    o = f.one_hot(td.tensor([1, 2]) * 1, 4)
    c = f.cosine_similarity(y, y * 2, dim=-1) + f.pairwise_distance(y, y + 1)
    bl = f.bilinear(x * 1, x * 3, W)
    (y.sum() + e.sum() + c.sum() + bl.sum() + o.sum()).backward()
    assert s._c.waits == before
    assert x.grad.shape == (4, 3, 5)
