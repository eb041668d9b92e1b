"""Random draws against torch's, value for value: tensord's generator is torch's CPU generator
(mt19937), so after the same seed every random function gives torch's numbers.

Each case is a function of the module (torch or tensord) run after manual_seed(seed) on both,
for several seeds, sizes 1, 15, 16, 17, 100 and 1000 (normal's 16-sample chunks and its tail),
float32 and float64, contiguous and strided tensors, and torch.Generator objects. Values must be
equal to torch's AVX2 build's, bit for bit; under a torch on its default kernels float values
are compared to a measured tolerance instead (see TORCH_AVX2).
"""
import struct

import numpy as np
import pytest
import torch

SEEDS = [0, 1, 5489, 2**32 + 7, 123456789]
SIZES = [1, 15, 16, 17, 100, 1000]
DTYPES = ["float32", "float64"]



def _torch_normal_is_avx2():
    """Whether this torch runs its AVX2 normal kernel (ATEN_CPU_CAPABILITY and the CPU decide):
    torch.randn(32)[3] after manual_seed(0) is -0.4338788092136383 there and
    -0.4338788390159607 through its scalar float kernel."""
    torch.manual_seed(0)
    return torch.randn(32)[3].item() == -0.4338788092136383


# tensord draws what torch's AVX2 build computes (its float32 normal kernel with Cephes log and
# sincos, and the multiply-adds its compiler fuses in every kernel), bit for bit. A torch on its
# default (non-AVX2) kernels rounds a * b + c twice and uses libm's logf/cosf/sinf: measured
# (ATEN_CPU_CAPABILITY=default) within 1e-5 relative or absolute of tensord's, so under such a
# torch float values are compared to that tolerance (integers stay exact).
TORCH_AVX2 = _torch_normal_is_avx2()


def dt(m, name):
    return getattr(m, name)


def run(m, seed, f):
    m.manual_seed(seed)
    out = f(m)
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [np.asarray(o.tolist()) if hasattr(o, "tolist") else o for o in out]


def same(td, seed, f):
    want = run(torch, seed, f)
    got = run(td, seed, f)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        w, g = np.asarray(w), np.asarray(g)
        assert w.shape == g.shape, (w.shape, g.shape)
        if TORCH_AVX2 or w.dtype.kind != "f":
            assert np.array_equal(w, g), (seed, w.ravel()[:8], g.ravel()[:8],
                                          np.flatnonzero(w != g)[:8])
        else:
            assert np.allclose(w, g, rtol=1e-5, atol=1e-5), (seed, np.abs(w - g).max())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("d", DTYPES)
def test_rand_randn(td, seed, n, d):
    same(td, seed, lambda m: [m.rand(n, dtype=dt(m, d)), m.rand(3, n, dtype=dt(m, d))])
    same(td, seed, lambda m: [m.randn(n, dtype=dt(m, d)), m.randn(n, 3, dtype=dt(m, d)),
                              m.randn(n, dtype=dt(m, d))])


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("d", DTYPES)
def test_uniform_normal_inplace(td, seed, n, d):
    same(td, seed, lambda m: m.zeros(n, dtype=dt(m, d)).uniform_(-2.5, 3.25))
    same(td, seed, lambda m: m.zeros(n, dtype=dt(m, d)).normal_(1.5, 0.25))
    # the scalar path (fewer than 16, or not contiguous) keeps a cached second sample
    same(td, seed, lambda m: [m.zeros(n, dtype=dt(m, d)).normal_(),
                              m.zeros(3, dtype=dt(m, d)).normal_(2.0, 3.0),
                              m.randn(n, dtype=dt(m, d))])


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("d", DTYPES)
def test_strided_inplace_and_like(td, seed, d):
    def f(m):
        a = m.zeros(4, 6, dtype=dt(m, d))
        a.t().uniform_()                      # a transposed view: torch walks its memory order
        b = m.zeros(5, 8, dtype=dt(m, d))
        b[:, ::2].normal_(0.5, 2.0)          # a strided slice: element by element
        c = m.zeros(6, 5, dtype=dt(m, d)).t()
        r1 = m.rand_like(c)                  # empty_like keeps the transposed layout
        r2 = m.randn_like(c)                 # ... so torch's normal takes its scalar path
        r3 = m.randn_like(m.zeros(4, 6, dtype=dt(m, d)))
        x = m.zeros(3, 4, 5, dtype=dt(m, d)).permute(2, 0, 1)
        x.normal_()
        y = m.zeros(40, dtype=dt(m, d))
        y[3:30].normal_(1.0, 2.0)            # a contiguous view at an offset: the 16-chunk path
        y[::3].uniform_(-1.0, 1.0)
        z = m.zeros(2, 1, 9, dtype=dt(m, d)).transpose(0, 1)
        z.normal_()                           # size-1 dims do not change the order
        return [a, b, r1, r2, r3, x, y, z, m.rand_like(x), m.randn_like(x[:, ::2])]
    same(td, seed, f)


@pytest.mark.parametrize("seed", SEEDS)
def test_randint_random(td, seed):
    def f(m):
        return [m.randint(0, 10, (100,)), m.randint(-5, 5, (3, 7)),
                m.randint(0, 2**40, (17,)),                       # 64-bit draws
                m.randint(3, 2**31, (5,), dtype=m.int32),
                m.randint(0, 10, (6,), dtype=m.float32),
                m.randint(0, 2**33, (6,), dtype=m.float64),
                m.randint(10, (4,)), m.randint(0, 100, (1000,))]
    same(td, seed, f)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 100, 1000])
def test_randperm(td, seed, n):
    same(td, seed, lambda m: [m.randperm(n), m.randperm(n, dtype=m.float32),
                              m.randperm(n, dtype=m.int32)])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", DTYPES)
def test_bernoulli(td, seed, d):
    def f(m):
        x = m.full((100,), 0.3, dtype=dt(m, d))
        p = m.linspace(0, 1, 37, dtype=dt(m, d))
        a = m.zeros(5, 7, dtype=dt(m, d))
        a.t().bernoulli_(0.7)
        return [x.bernoulli_(0.25), m.bernoulli(p), m.bernoulli(p.reshape(37, 1).t()),
                m.zeros(17, dtype=dt(m, d)).bernoulli_(), a, m.bernoulli(x, 0.6)]
    same(td, seed, f)


def dropout_like(m, x, p):
    """F.dropout's composite in torch 1.13 (training): input * empty_like(input).bernoulli_(1 -
    p).div_(1 - p)."""
    return x * m.empty_like(x).bernoulli_(1 - p).div_(1 - p)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_dropout_mask(td, seed):
    same(td, seed, lambda m: dropout_like(m, m.ones(8, 16), 0.5))
    tw = run(torch, seed, lambda m: m.nn.functional.dropout(m.ones(8, 16), 0.5))
    tc = run(torch, seed, lambda m: dropout_like(m, m.ones(8, 16), 0.5))
    assert np.array_equal(tw[0], tc[0])  # the composite is torch's own dropout


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", DTYPES)
def test_multinomial(td, seed, d):
    def f(m):
        w = m.tensor([0.1, 0.0, 2.0, 3.5, 1.0, 0.25, 4.0], dtype=dt(m, d))
        w2 = m.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 0.5, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]],
                      dtype=dt(m, d))
        return [m.multinomial(w, 1), m.multinomial(w, 4), m.multinomial(w, 6),
                m.multinomial(w, 20, replacement=True), m.multinomial(w2, 3),
                m.multinomial(w2, 50, replacement=True), m.multinomial(w2.t(), 2),
                m.multinomial(m.rand(6, 5, dtype=dt(m, d)).t()[:, ::2], 2),
                m.multinomial(m.rand(1000, dtype=dt(m, d)), 100),
                m.multinomial(m.rand(1000, dtype=dt(m, d)), 100, replacement=True)]
    same(td, seed, f)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 100])
@pytest.mark.parametrize("d", DTYPES)
def test_normal_forms(td, seed, n, d):
    def f(m):
        mean = m.arange(n, dtype=dt(m, d))
        std = m.tensor([0.5 + 0.1 * i for i in range(n)], dtype=dt(m, d))  # (linspace: not this test)
        return [m.normal(mean, std), m.normal(mean, 2.0), m.normal(3.0, std),
                m.normal(1.0, 0.5, (n,), dtype=dt(m, d)),
                m.normal(mean.reshape(n, 1), std)]
    same(td, seed, f)


@pytest.mark.parametrize("seed", SEEDS)
def test_generators(td, seed):
    def f(m):
        g1 = m.Generator().manual_seed(seed)
        g2 = m.Generator().manual_seed(seed + 1)
        out = [m.rand(17, generator=g1), m.randn(5, generator=g2), m.randn(20, generator=g1),
               m.randint(0, 1000, (9,), generator=g2), m.randperm(30, generator=g1),
               m.multinomial(m.tensor([1.0, 2.0, 3.0]), 2, generator=g2),
               m.normal(m.zeros(3), 1.0, generator=g1),
               m.zeros(6).uniform_(generator=g2), m.zeros(3).normal_(generator=g1),
               m.bernoulli(m.full((10,), 0.5), generator=g2), m.rand(4)]
        return out + [g1.initial_seed(), g2.initial_seed()]
    same(td, seed, f)


def test_default_generator_seed(td):
    same(td, 0, lambda m: [m.rand(5, generator=m.Generator()),
                           m.Generator().initial_seed()])


def state_bytes(t):
    """tensord's state (632 int64 words) or torch's (5056 uint8) as bytes."""
    v = t.tolist()
    if len(v) == 5056:
        return bytes(v)
    return struct.pack("<632q", *v)


@pytest.mark.parametrize("seed", SEEDS)
def test_state_roundtrip_with_torch(td, seed):
    tg, dg = torch.Generator().manual_seed(seed), td.Generator().manual_seed(seed)
    assert state_bytes(tg.get_state()) == state_bytes(dg.get_state())
    # a cached normal sample (an odd count of scalar-path normals) is part of the state
    torch.randn(3, generator=tg)
    td.randn(3, generator=dg)
    tb, db = state_bytes(tg.get_state()), state_bytes(dg.get_state())
    assert tb == db
    # torch's state into tensord, and back
    dg2 = td.Generator().set_state(tg.get_state())
    want = torch.randn(5, generator=tg).tolist()
    assert td.randn(5, generator=dg2).tolist() == want
    tg2 = torch.Generator()
    tg2.set_state(torch.tensor(list(state_bytes(dg2.get_state())), dtype=torch.uint8))
    assert torch.rand(7, generator=tg2).tolist() == td.rand(7, generator=dg2).tolist()
    # tensord's own state replays
    st = dg2.get_state()
    a = td.rand(4, generator=dg2).tolist()
    assert td.rand(4, generator=dg2.set_state(st)).tolist() == a
    assert dg.initial_seed() == tg.initial_seed() == seed


def test_state_errors(td):
    g = td.Generator()
    with pytest.raises(RuntimeError) as e:
        g.set_state(torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(RuntimeError) as t:
        torch.Generator().set_state(torch.zeros(10, dtype=torch.uint8))
    assert str(e.value) == str(t.value)
    with pytest.raises(RuntimeError) as e:
        g.set_state(torch.zeros(5056, dtype=torch.uint8))
    with pytest.raises(RuntimeError) as t:
        torch.Generator().set_state(torch.zeros(5056, dtype=torch.uint8))
    assert str(e.value) == str(t.value)


def test_legacy_state(td):
    tg = torch.Generator().manual_seed(3)
    torch.randn(1, dtype=torch.float64, generator=tg)
    b = bytearray(state_bytes(tg.get_state()))[:5048]
    # a legacy state: the cached sample is rho * sin(2 pi x); x = 0.25 makes it rho
    y = struct.unpack_from("<d", b, 5024)[0]
    struct.pack_into("<3d", b, 5016, 0.25, 0.0, y)
    want_g = torch.Generator()
    want_g.set_state(torch.tensor(list(b), dtype=torch.uint8))
    got_g = td.Generator().set_state(bytes(b))
    assert td.randn(3, dtype=td.float64, generator=got_g).tolist() == \
        torch.randn(3, dtype=torch.float64, generator=want_g).tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_dataloader_sampler_seed(td, seed):
    """RandomSampler without a generator: int(torch.empty((), dtype=torch.int64).random_()),
    then a Generator seeded with it draws randperm."""
    def f(m):
        s = m.randint(0, 2**63 - 1, ()) if m is not torch else None
        return s
    torch.manual_seed(seed)
    want = int(torch.empty((), dtype=torch.int64).random_().item())
    perm_want = torch.randperm(50, generator=torch.Generator().manual_seed(want)).tolist()
    td.manual_seed(seed)
    got = int(td.empty((), dtype=td.int64).random_().item())
    assert got == want
    assert td.randperm(50, generator=td.Generator().manual_seed(got)).tolist() == perm_want


def test_nn_default_init(td):
    """A Linear's default init draws kaiming_uniform_ then the bias's uniform_: both from the
    session's generator, so the weights are torch's."""
    def f(m):
        w = m.empty(4, 3)
        bound = 1 / 3 ** 0.5
        return [w.uniform_(-bound, bound), m.empty(4).uniform_(-bound, bound)]
    same(td, 7, f)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_random_(td, seed):
    def f(m):
        out = []
        for d in ("int64", "int32", "float32", "float64", "bool"):
            out += [m.zeros(9, dtype=dt(m, d)).random_(), m.zeros(5, dtype=dt(m, d)).random_(2)]
        out += [m.zeros(7, dtype=m.int64).random_(-3, 12), m.zeros(7, dtype=m.int64).random_(5, None),
                m.zeros(3, 4, dtype=m.int64).t().random_(0, 2**40),
                m.zeros(4, dtype=m.float32).random_(0, 2**40),
                m.zeros(4, dtype=m.int32).random_(7, None),
                m.zeros(4, dtype=m.int64).random_(-2**63, None),
                m.zeros(5, dtype=m.int64).random_(100, generator=m.Generator().manual_seed(3))]
        return out
    same(td, seed, f)


def test_random_errors(td):
    for f in (lambda m: m.zeros(3, dtype=m.int64).random_(5, 2),
              lambda m: m.zeros(3, dtype=m.int32).random_(0, 2**40),
              lambda m: m.zeros(3, dtype=m.int32).random_(-2**40, 3),
              lambda m: m.zeros(3, dtype=m.bool).random_(0, 3),
              lambda m: m.zeros(3, dtype=m.float32).random_(2**30, None)):
        with pytest.raises(RuntimeError) as t:
            f(torch)
        with pytest.raises(RuntimeError) as e:
            f(td).tolist()
        assert str(e.value).split(" (random_, issued at")[0] == str(t.value)


def test_randint_errors(td):
    for f in (lambda m: m.randint(-1, 2, (3,), dtype=m.bool),
              lambda m: m.randint(0, 3, (3,), dtype=m.bool),
              lambda m: m.randint(5, 5, (3,)),
              lambda m: m.randint(0, 2**40, (3,), dtype=m.int32)):
        with pytest.raises(RuntimeError) as t:
            f(torch)
        with pytest.raises(RuntimeError) as e:
            f(td).tolist()
        assert str(e.value).split(" (randint, issued at")[0] == str(t.value)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_randint_float_bounds(td, seed):
    same(td, seed, lambda m: [m.randint(0, 2**40, (4,), dtype=m.float32),
                              m.randint(3, 2**30 + 1, (4,), dtype=m.float32),
                              m.randint(-2**60, 2**60, (4,), dtype=m.float64),
                              m.randint(0, 2, (9,), dtype=m.bool)])


@pytest.mark.parametrize("seed", SEEDS)
def test_session_rng_state(td, seed):
    """torch.get_rng_state / set_rng_state / initial_seed / seed on the session's generator,
    exchanged with torch's own state both ways."""
    torch.manual_seed(seed)
    td.manual_seed(seed)
    assert td.initial_seed() == torch.initial_seed() == seed
    torch.randn(3)
    td.randn(3)
    assert state_bytes(td.get_rng_state()) == state_bytes(torch.get_rng_state())
    st = td.get_rng_state()
    a = td.rand(5).tolist()
    td.set_rng_state(st)
    assert td.rand(5).tolist() == a
    # torch's state in, tensord's state out to torch
    torch.randn(1)
    td.set_rng_state(torch.get_rng_state())
    got, want = np.array(td.randn(17).tolist()), np.array(torch.randn(17).tolist())
    assert np.array_equal(got, want) if TORCH_AVX2 else np.allclose(got, want, 1e-5, 1e-5)
    torch.set_rng_state(torch.tensor(list(state_bytes(td.get_rng_state())), dtype=torch.uint8))
    assert td.rand(9, dtype=td.float64).tolist() == torch.rand(9, dtype=torch.float64).tolist()
    s = td.seed()
    assert 0 <= s < 2**53 and td.initial_seed() == s
    torch.manual_seed(s)
    assert td.rand(4).tolist() == torch.rand(4).tolist()


def test_session_rng_state_errors(td):
    with pytest.raises(RuntimeError) as e:
        td.set_rng_state(torch.zeros(7, dtype=torch.uint8))
    with pytest.raises(RuntimeError) as t:
        torch.set_rng_state(torch.zeros(7, dtype=torch.uint8))
    assert str(e.value) == str(t.value)


def test_rng_state_of_a_generator(td):
    g = td.Generator().manual_seed(11)
    td.rand(3, generator=g)
    tg = torch.Generator().manual_seed(11)
    torch.rand(3, generator=tg)
    assert state_bytes(td.rng_state(generator=g)) == state_bytes(tg.get_state())


@pytest.mark.parametrize("seed", [0, 5489, 2**63 + 5, 2**64 - 1])
def test_rng_state_of_a_fresh_seed(td, seed):
    """rng_state(seed=s): torch's state after manual_seed(s), built on the server (tensorctl's
    Generator uses it), equal to the Python client's own."""
    want = state_bytes(torch.Generator().manual_seed(seed).get_state())
    assert state_bytes(td.rng_state(seed=seed)) == want
    assert state_bytes(td.Generator().manual_seed(seed).get_state()) == want
