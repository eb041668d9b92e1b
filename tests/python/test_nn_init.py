"""tensord.nn.init against torch.nn.init: gains, fans and their errors are torch's; each
initialiser's values have the distribution torch's formula gives (bounds, mean, spread); the
layers' default initialisation issues torch's draws in torch's order (checked against the
sequence of uniform_/normal_ calls torch's reset_parameters makes, and against torch's values
for the same seed)."""
import math
import warnings

import numpy as np
import pytest
import torch


def values(t):
    return np.asarray(t.tolist(), dtype=np.float64)


def test_calculate_gain_matches_torch(td):
    cases = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
             ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
             ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None),
             ("leaky_relu", math.sqrt(5))]
    for name, param in cases:
        assert td.nn.init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)
    for name, param in [("leaky_relu", True), ("leaky_relu", "x"), ("swish", None)]:
        with pytest.raises(ValueError) as te:
            torch.nn.init.calculate_gain(name, param)
        with pytest.raises(ValueError) as de:
            td.nn.init.calculate_gain(name, param)
        assert str(de.value) == str(te.value)


def test_fans_match_torch(td):
    for shape in [(3, 4), (5, 2, 3), (8, 4, 3, 3), (2, 3, 1, 2, 2), (0, 4)]:
        assert (td.nn.init._calculate_fan_in_and_fan_out(td.empty(*shape)) ==
                torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape)))
    for shape in [(3,), ()]:
        with pytest.raises(ValueError) as te:
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        with pytest.raises(ValueError) as de:
            td.nn.init._calculate_fan_in_and_fan_out(td.empty(shape))
        assert str(de.value) == str(te.value)
    with pytest.raises(ValueError) as te:
        torch.nn.init.kaiming_uniform_(torch.empty(3, 4), mode="fan_avg")
    with pytest.raises(ValueError) as de:
        td.nn.init.kaiming_uniform_(td.empty(3, 4), mode="fan_avg")
    assert str(de.value) == str(te.value)


def test_fill_initialisers(td):
    t = td.empty(3, 4)
    assert td.nn.init.constant_(t, 0.25) is t
    assert values(t).tolist() == [[0.25] * 4] * 3
    td.nn.init.ones_(t)
    assert values(t).tolist() == [[1.0] * 4] * 3
    td.nn.init.zeros_(t)
    assert values(t).tolist() == [[0.0] * 4] * 3
    e = td.nn.init.eye_(td.empty(2, 3))
    assert values(e).tolist() == torch.nn.init.eye_(torch.empty(2, 3)).tolist()
    d = td.nn.init.dirac_(td.empty(2, 2, 3))
    assert values(d).tolist() == torch.nn.init.dirac_(torch.empty(2, 2, 3)).tolist()


def test_initialisers_run_under_no_grad(td):
    """On a parameter (a leaf that requires grad), in place, recording nothing."""
    p = td.nn.Parameter(td.empty(20, 30))
    for f in (lambda t: td.nn.init.uniform_(t, -1, 1), td.nn.init.normal_,
              td.nn.init.xavier_uniform_, td.nn.init.xavier_normal_,
              td.nn.init.kaiming_uniform_, td.nn.init.kaiming_normal_,
              td.nn.init.trunc_normal_, td.nn.init.zeros_, td.nn.init.ones_,
              lambda t: td.nn.init.constant_(t, 2.0)):
        assert f(p) is p
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
    (p * 2).sum().backward()
    assert values(p.grad).tolist() == [[2.0] * 30] * 20


N = (200, 300)  # 60000 draws: sample moments within a few percent


def test_uniform_and_normal(td):
    u = values(td.nn.init.uniform_(td.empty(*N), -2.0, 3.0))
    assert u.min() >= -2.0 and u.max() <= 3.0
    assert abs(u.mean() - 0.5) < 0.05 and abs(u.std() - 5 / math.sqrt(12)) < 0.03
    n = values(td.nn.init.normal_(td.empty(*N), 1.5, 0.5))
    assert abs(n.mean() - 1.5) < 0.01 and abs(n.std() - 0.5) < 0.01
    d = values(td.nn.init.uniform_(td.empty(*N)))
    assert d.min() >= 0 and d.max() <= 1


def test_xavier(td):
    fan_in, fan_out = 300, 200
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    u = values(td.nn.init.xavier_uniform_(td.empty(*N), gain=2.0))
    assert u.min() >= -2 * bound and u.max() <= 2 * bound and u.max() > 1.9 * bound
    n = values(td.nn.init.xavier_normal_(td.empty(*N)))
    assert abs(n.std() - math.sqrt(2.0 / (fan_in + fan_out))) < 0.002
    assert abs(n.mean()) < 0.002


@pytest.mark.parametrize("a,mode,nonlinearity", [(0, "fan_in", "leaky_relu"),
                                                 (math.sqrt(5), "fan_in", "leaky_relu"),
                                                 (0, "fan_out", "relu"),
                                                 (0, "FAN_IN", "tanh")])
def test_kaiming(td, a, mode, nonlinearity):
    shape = (50, 40, 3, 2)  # fan_in 240, fan_out 300
    fan = 240 if mode.lower() == "fan_in" else 300
    gain = torch.nn.init.calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    u = values(td.nn.init.kaiming_uniform_(td.empty(*shape), a=a, mode=mode,
                                           nonlinearity=nonlinearity))
    assert u.min() >= -bound and u.max() <= bound and u.max() > 0.99 * bound
    n = values(td.nn.init.kaiming_normal_(td.empty(*shape), a=a, mode=mode,
                                          nonlinearity=nonlinearity))
    assert abs(n.std() / std - 1) < 0.04


def test_kaiming_on_zero_elements_warns_as_torch(td):
    with warnings.catch_warnings(record=True) as tw:
        warnings.simplefilter("always")
        torch.nn.init.kaiming_uniform_(torch.empty(0, 3))
    with warnings.catch_warnings(record=True) as dw:
        warnings.simplefilter("always")
        td.nn.init.kaiming_uniform_(td.empty(0, 3))
    assert [str(w.message) for w in dw] == [str(w.message) for w in tw]


def test_trunc_normal(td):
    td.manual_seed(0)
    t = values(td.nn.init.trunc_normal_(td.empty(*N), mean=0.5, std=1.0, a=-1.0, b=1.5))
    assert t.min() >= -1.0 and t.max() <= 1.5
    # the truncated normal's exact moments (alpha, beta: the bounds in standard units), not a
    # second sample's: two samples' means differ by 0.004 (one sigma), so a 0.01 bound between
    # them failed about once in a hundred runs; one sample's mean is within 0.015 (5.5 sigma)
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: (1 + math.erf(x / math.sqrt(2))) / 2  # noqa: E731
    al, be = (-1.0 - 0.5) / 1.0, (1.5 - 0.5) / 1.0
    z = cdf(be) - cdf(al)
    mean = 0.5 + (pdf(al) - pdf(be)) / z
    std = math.sqrt(1 + (al * pdf(al) - be * pdf(be)) / z - ((pdf(al) - pdf(be)) / z) ** 2)
    assert abs(t.mean() - mean) < 0.015 and abs(t.std() - std) < 0.01, (t.mean(), mean,
                                                                        t.std(), std)
    ref = torch.nn.init.trunc_normal_(torch.empty(*N, dtype=torch.float64), mean=0.5, std=1.0,
                                      a=-1.0, b=1.5).numpy()
    assert abs(ref.mean() - mean) < 0.015 and abs(ref.std() - std) < 0.01  # the formula is torch's
    s = values(td.nn.init.trunc_normal_(td.empty(*N), std=0.02))
    assert s.min() >= -2 and s.max() <= 2
    # a uniform draw of exactly the interval's end is erfinv(+-1) = +-inf, clamped to a or b
    # (torch's method does the same): rare, and left out of the spread
    inner = s[np.abs(s) < 1]
    assert len(inner) > len(s) - 5 and abs(inner.std() - 0.02) < 0.001
    with pytest.warns(UserWarning, match="mean is more than 2 std from"):
        td.nn.init.trunc_normal_(td.empty(3), mean=10.0)


# -- the layers' defaults: the draws torch's reset_parameters makes, in its order --

def test_linear_draws_as_torch(td):
    """kaiming_uniform_(a=sqrt(5)) on the weight, then the bias from U(+-1/sqrt(fan_in))."""
    td.manual_seed(7)
    m = td.nn.Linear(5, 3)
    w, b = m.weight.tolist(), m.bias.tolist()
    td.manual_seed(7)
    bound = 1 / math.sqrt(5)
    assert td.empty(3, 5).uniform_(-bound, bound).tolist() == w
    assert td.empty(3).uniform_(-bound, bound).tolist() == b
    assert max(abs(v) for row in w for v in row) <= bound


def test_conv_draws_as_torch(td):
    td.manual_seed(3)
    m = td.nn.Conv2d(4, 6, (3, 2), groups=2)
    w, b = m.weight.tolist(), m.bias.tolist()
    td.manual_seed(3)
    bound = 1 / math.sqrt(2 * 3 * 2)  # fan_in = in_channels / groups * kernel elements
    assert td.empty(6, 2, 3, 2).uniform_(-bound, bound).tolist() == w
    assert td.empty(6).uniform_(-bound, bound).tolist() == b
    td.manual_seed(3)
    m = td.nn.Conv1d(3, 2, 4, bias=False)
    w = m.weight.tolist()
    td.manual_seed(3)
    assert td.empty(2, 3, 4).uniform_(-1 / math.sqrt(12), 1 / math.sqrt(12)).tolist() == w


def test_bilinear_embedding_norm_draws_as_torch(td):
    td.manual_seed(11)
    m = td.nn.Bilinear(4, 2, 3)
    w, b = m.weight.tolist(), m.bias.tolist()
    td.manual_seed(11)
    assert td.empty(3, 4, 2).uniform_(-0.5, 0.5).tolist() == w
    assert td.empty(3).uniform_(-0.5, 0.5).tolist() == b
    td.manual_seed(5)
    e = td.nn.Embedding(6, 4, padding_idx=-2)
    w = e.weight.tolist()
    td.manual_seed(5)
    ref = td.empty(6, 4).normal_().tolist()
    ref[4] = [0.0] * 4
    assert e.padding_idx == 4 and w == ref
    ln = td.nn.LayerNorm((2, 3))
    assert ln.weight.tolist() == [[1.0] * 3] * 2 and ln.bias.tolist() == [[0.0] * 3] * 2
    bn = td.nn.BatchNorm2d(3)
    assert bn.weight.tolist() == [1.0] * 3 and bn.bias.tolist() == [0.0] * 3
    assert bn.running_mean.tolist() == [0.0] * 3 and bn.running_var.tolist() == [1.0] * 3
    assert bn.num_batches_tracked.tolist() == 0 and bn.num_batches_tracked.dtype == td.int64
    sd = bn.state_dict()
    tsd = torch.nn.BatchNorm2d(3).state_dict()
    assert list(sd) == list(tsd)
    for k in tsd:
        assert sd[k].tolist() == tsd[k].tolist() and str(sd[k].dtype)[8:] == str(tsd[k].dtype)[6:]


@pytest.mark.parametrize("make", [
    lambda nn: nn.Linear(5, 3), lambda nn: nn.Conv2d(2, 4, 3), lambda nn: nn.Conv1d(2, 3, 2),
    lambda nn: nn.Bilinear(2, 3, 2), lambda nn: nn.Embedding(4, 3, padding_idx=1),
    lambda nn: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
], ids=["linear", "conv2d", "conv1d", "bilinear", "embedding", "mlp"])
def test_default_init_equals_torch_for_the_same_seed(td, make):
    """With the session's generator reproducing torch's CPU stream, the same seed gives
    torch's very weights."""
    torch.manual_seed(1234)
    tm = make(torch.nn)
    td.manual_seed(1234)
    dm = make(td.nn)
    for (name, p), (tname, tp) in zip(dm.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(values(p), tp.detach().double().numpy(), rtol=0, atol=1e-6)
