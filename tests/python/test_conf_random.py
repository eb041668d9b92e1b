"""The random family against torch: torch.Generator, generator= and size= on the factories,
multinomial, bernoulli, randperm and torch.normal's four call forms.

Random values cannot equal torch's (torch's CPU generator is a Mersenne Twister, tensord's a
counter-based Philox), so each case is compared on what must agree:
  - shapes, dtypes, requires_grad and grad_fn names of every call form, run under torch and td;
  - values wherever the draw is certain (probabilities 0 and 1, std 0, one possible category),
    and the printed text of those;
  - torch's error texts;
  - reproducibility: the same seed gives the same values, a Generator's stream is independent of
    the session's and of other generators', get_state / set_state replay;
  - distributions: fixed seeds and many draws, with bounds of 6 standard deviations of the
    statistic (stated at each check), so a correct sampler cannot fail them in practice and a
    biased one (a wrong formula, an off-by-one category) fails them by far.
"""
import math

import pytest
import torch

import tensord


def G(m, seed=None):
    g = m.Generator()
    return g if seed is None else g.manual_seed(seed)


def W(m):
    return m.tensor([0.0, 1.0, 3.0])


# call forms: (shape, dtype, requires_grad, grad_fn name) must match torch's
FORMS = {
    "rand_varargs": lambda m: m.rand(2, 3),
    "rand_tuple": lambda m: m.rand((2, 3)),
    "rand_size_kw": lambda m: m.rand(size=(2, 3)),
    "rand_generator": lambda m: m.rand(4, generator=G(m, 1)),
    "rand_f64_generator": lambda m: m.rand(2, 2, dtype=m.float64, generator=G(m)),
    "rand_requires_grad": lambda m: m.rand(3, requires_grad=True),
    "randn_size_kw_generator": lambda m: m.randn(size=(3, 1), generator=G(m, 2)),
    "randn_list": lambda m: m.randn([2, 4]),
    "randint_high_size": lambda m: m.randint(5, (3,)),
    "randint_low_high_size": lambda m: m.randint(2, 5, (2, 3)),
    "randint_size_kw": lambda m: m.randint(5, size=(4,), generator=G(m, 3)),
    "randint_all_kw": lambda m: m.randint(low=2, high=5, size=(3,)),
    "randint_dtype": lambda m: m.randint(0, 5, (2,), dtype=m.float32, generator=G(m)),
    "randperm": lambda m: m.randperm(5),
    "randperm_generator_dtype": lambda m: m.randperm(6, generator=G(m, 4), dtype=m.float64),
    "randperm_int32": lambda m: m.randperm(3, dtype=m.int32),
    "randperm_zero": lambda m: m.randperm(0),
    "multinomial": lambda m: m.multinomial(W(m), 2),
    "multinomial_replacement": lambda m: m.multinomial(W(m), 5, True, generator=G(m, 5)),
    "multinomial_kw": lambda m: m.multinomial(W(m), num_samples=3, replacement=True),
    "multinomial_2d": lambda m: m.multinomial(m.tensor([[1.0, 1], [2, 2]]), 2),
    "multinomial_method": lambda m: W(m).multinomial(1, generator=G(m)),
    "multinomial_f64": lambda m: m.multinomial(m.tensor([1.0, 2.0], dtype=m.float64), 4, True),
    "multinomial_empty_rows": lambda m: m.multinomial(m.ones(0, 2), 1),
    "multinomial_grad_input": lambda m: m.multinomial(m.tensor([1.0, 2.0],
                                                               requires_grad=True), 1),
    "bernoulli": lambda m: m.bernoulli(m.tensor([0.0, 1.0, 0.5]), generator=G(m, 6)),
    "bernoulli_method": lambda m: m.tensor([0.2, 0.7]).bernoulli(),
    "bernoulli_p": lambda m: m.bernoulli(m.ones(3), 0.5),
    "bernoulli_p_int": lambda m: m.bernoulli(m.tensor([0, 1]), p=0.5),
    "bernoulli_grad": lambda m: m.bernoulli(m.tensor([0.0, 1.0], requires_grad=True)),
    "bernoulli_inplace": lambda m: m.ones(4).bernoulli_(0.5, generator=G(m)),
    "bernoulli_inplace_int": lambda m: m.tensor([0, 1]).bernoulli_(0.5),
    "bernoulli_inplace_nonleaf": lambda m: (m.tensor([0.2, 0.7], requires_grad=True) * 1
                                            ).bernoulli_(0.5),
    "bernoulli_inplace_nonleaf_default_p": lambda m: (m.tensor([0.2, 0.7], requires_grad=True)
                                                      * 1).bernoulli_(),
    "normal_t_t": lambda m: m.normal(m.zeros(2, 3), m.ones(3), generator=G(m, 7)),
    "normal_t_float": lambda m: m.normal(m.tensor([1.0, 2.0]), 2.0),
    "normal_float_t": lambda m: m.normal(1.0, m.tensor([1.0, 2.0])),
    "normal_float_float_size": lambda m: m.normal(1.0, 2.0, (2, 2)),
    "normal_size_kw_dtype": lambda m: m.normal(1.0, 2.0, size=(3,), dtype=m.float64,
                                               generator=G(m)),
    "normal_t_f64_std": lambda m: m.normal(m.tensor([1.0]), m.tensor([1.0], dtype=m.float64)),
    "normal_float_int_std": lambda m: m.normal(m.tensor([1.0]), m.tensor([1])),
    "normal_grad_t_t": lambda m: m.normal(m.tensor([1.0, 2.0], requires_grad=True),
                                          m.tensor([1.0, 2.0], requires_grad=True)),
    "normal_grad_t_float": lambda m: m.normal(m.tensor([1.0, 2.0], requires_grad=True), 2.0),
    "normal_grad_float_t": lambda m: m.normal(1.0, m.tensor([1.0, 2.0], requires_grad=True)),
    "uniform_generator": lambda m: m.ones(3).uniform_(2, 3, generator=G(m, 8)),
    "normal_generator": lambda m: m.ones(3).normal_(0, 1, generator=G(m, 9)),
}


def form(r):
    return (tuple(r.shape), str(r.dtype).split(".")[1], r.requires_grad,
            r.grad_fn.name() if r.grad_fn is not None else None)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_call_forms_match_torch(td, name):
    assert form(FORMS[name](td)) == form(FORMS[name](torch))


# certain draws: the values (and printed text) must be torch's
CERTAIN = {
    "bernoulli_01": lambda m: m.bernoulli(m.tensor([[0.0, 1.0], [1.0, 0.0]]), generator=G(m)),
    "bernoulli_01_f64_t": lambda m: m.bernoulli(
        m.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], dtype=m.float64).t()),
    "bernoulli_p0": lambda m: m.bernoulli(m.ones(2, 2), 0.0),
    "bernoulli_p1_int": lambda m: m.bernoulli(m.tensor([5, 6, 7]), 1.0),
    "bernoulli_inplace_p1": lambda m: m.zeros(3).bernoulli_(1.0),
    "multinomial_one_hot": lambda m: m.multinomial(
        m.tensor([[0.0, 0.0, 2.0], [0.5, 0.0, 0.0]]), 4, True),
    "multinomial_one_sample": lambda m: m.multinomial(m.tensor([0.0, 3.0, 0.0]), 1),
    "normal_std0": lambda m: m.normal(m.tensor([[1.5], [-2.0]]), m.zeros(3)),
    "normal_std0_grad": lambda m: m.normal(m.tensor([1.5, 2.5], requires_grad=True), 0.0),
    "normal_std0_float": lambda m: m.normal(3.0, m.zeros(2, dtype=m.float64)),
    "normal_size_std0": lambda m: m.normal(-1.0, 0.0, (2, 3)),
    "randperm_one": lambda m: m.randperm(1),
    "randint_one_value": lambda m: m.randint(4, 5, (2, 2), generator=G(m)),
    "uniform_empty_range": lambda m: m.zeros(3).uniform_(2.0, 2.0, generator=G(m)),
}


@pytest.mark.parametrize("name", sorted(CERTAIN))
def test_certain_draws_print_like_torch(td, name):
    want = CERTAIN[name](torch)
    got = CERTAIN[name](td)
    assert got.tolist() == want.tolist()
    assert form(got) == form(want)
    assert str(got) == str(want).replace("torch.", "tensord.")


ERRORS = {
    "multinomial_3d": lambda m: m.multinomial(m.tensor([[[1.0]]]), 1),
    "multinomial_0d": lambda m: m.multinomial(m.tensor(1.0), 1),
    "multinomial_long": lambda m: m.multinomial(m.tensor([1, 2]), 1),
    "multinomial_bool": lambda m: m.multinomial(m.tensor([True, False]), 1),
    "multinomial_zero_samples": lambda m: m.multinomial(W(m), 0),
    "multinomial_negative_samples": lambda m: m.multinomial(W(m), -1),
    "multinomial_too_many": lambda m: m.multinomial(W(m), 4),
    "multinomial_empty": lambda m: m.multinomial(m.zeros(0), 1),
    "multinomial_negative": lambda m: m.multinomial(m.tensor([-1.0, 2.0]), 1),
    "multinomial_inf": lambda m: m.multinomial(m.tensor([float("inf"), 0.0]), 1),
    "multinomial_nan": lambda m: m.multinomial(m.tensor([float("nan"), 1.0]), 1),
    "multinomial_zero_sum": lambda m: m.multinomial(m.tensor([0.0, 0.0]), 1),
    "multinomial_zero_row": lambda m: m.multinomial(m.tensor([[1.0, 2.0], [0.0, 0.0]]), 1),
    "multinomial_repl_negative": lambda m: m.multinomial(m.tensor([-1.0, 2.0]), 3, True),
    "multinomial_repl_inf": lambda m: m.multinomial(m.tensor([float("inf"), 2.0]), 3, True),
    "multinomial_repl_zero_sum": lambda m: m.multinomial(m.tensor([0.0, 0.0]), 3, True),
    "bernoulli_long": lambda m: m.bernoulli(m.tensor([0, 1])),
    "bernoulli_bool": lambda m: m.bernoulli(m.tensor([True, False])),
    "bernoulli_p_out_of_range": lambda m: m.bernoulli(m.ones(2), 1.5),
    "bernoulli_p_negative": lambda m: m.bernoulli(m.ones(2), -0.5),
    "bernoulli_probs_out_of_range": lambda m: m.bernoulli(m.tensor([0.0, 1.5])),
    "bernoulli_probs_nan": lambda m: m.bernoulli(m.tensor([0.0, float("nan")])),
    "bernoulli_inplace_p": lambda m: m.ones(2).bernoulli_(2.0),
    "randperm_negative": lambda m: m.randperm(-1),
    "randperm_bool": lambda m: m.randperm(5, dtype=m.bool),
    "randperm_float_too_big": lambda m: m.randperm(2 ** 24 + 2, dtype=m.float32),
    "normal_std_negative": lambda m: m.normal(m.ones(2), -1.0),
    "normal_std_negative_frac": lambda m: m.normal(m.ones(2), -1.5),
    "normal_std_tensor_negative": lambda m: m.normal(m.ones(2), m.tensor([-1.0, 1.0])),
    "normal_mean_long": lambda m: m.normal(m.tensor([1, 2]), 1.0),
    "normal_float_std_long": lambda m: m.normal(1.0, m.tensor([1])),
    "normal_size_dtype_long": lambda m: m.normal(1.0, 2.0, (2,), dtype=m.int64),
    "normal_size_negative": lambda m: m.normal(1.0, 2.0, (-1,)),
    "normal_broadcast": lambda m: m.normal(m.zeros(2, 3), m.ones(4)),
    "rand_long": lambda m: m.rand(2, dtype=m.int64, generator=G(m)),
    "randn_long": lambda m: m.randn(2, dtype=m.int64, generator=G(m)),
    "uniform_long": lambda m: m.tensor([1, 2]).uniform_(generator=G(m)),
    "randint_empty_range": lambda m: m.randint(3, 3, (2,), generator=G(m)),
    "manual_seed_float": lambda m: G(m).manual_seed(1.5),
    "manual_seed_overflow": lambda m: G(m).manual_seed(2 ** 64),
    "manual_seed_underflow": lambda m: G(m).manual_seed(-2 ** 63 - 1),
    "set_state_int": lambda m: G(m).set_state(5),
}


def error_of(m, case):
    try:
        r = case(m)
        if isinstance(r, (torch.Tensor, tensord.Tensor)):
            r.tolist()
    except (RuntimeError, TypeError, tensord.TensorError) as e:
        text = e.message if isinstance(e, tensord.TensorError) else str(e)
        text = text.replace("torch.", "tensord.")  # the one naming rule of text and messages
        return type(e).__name__ if isinstance(e, TypeError) else "RuntimeError", text
    return None


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_match_torch(td, name):
    want = error_of(torch, ERRORS[name])
    assert want is not None
    assert error_of(td, ERRORS[name]) == want


def test_normal_call_form_errors_are_torchs_type_errors(td):
    """normal(float, float) without a size, and a size with tensors: torch's TypeError, whose
    first line names what was given."""
    for case in (lambda m: m.normal(1.0, 2.0),
                 lambda m: m.normal(m.ones(2), m.ones(2), size=(2,))):
        lines = []
        for m in (torch, td):
            with pytest.raises(TypeError) as e:
                case(m)
            lines.append(str(e.value).split("\n")[0])
        assert lines[1] == lines[0]


# ---- torch.Generator ----

def test_generator_seeds_like_torch(td):
    for m in (torch, td):
        g = m.Generator()
        assert g.initial_seed() == 67280421310721  # torch's default
        assert g.manual_seed(3) is g
        assert g.initial_seed() == 3
        assert g.manual_seed(-1).initial_seed() == 2 ** 64 - 1
        assert g.manual_seed(2 ** 64 - 1).initial_seed() == 2 ** 64 - 1
        s = g.seed()
        assert isinstance(s, int) and 0 <= s < 2 ** 64 and g.initial_seed() == s
        assert str(g.device) == "cpu"


def test_same_seed_same_values(td):
    for make in (lambda g: td.rand(5, generator=g), lambda g: td.randn(2, 3, generator=g),
                 lambda g: td.randint(0, 1000, (6,), generator=g),
                 lambda g: td.randperm(8, generator=g),
                 lambda g: td.multinomial(td.ones(10), 4, generator=g),
                 lambda g: td.bernoulli(td.full((8,), 0.5), generator=g),
                 lambda g: td.normal(td.zeros(4), 1.0, generator=g),
                 lambda g: td.zeros(4).uniform_(generator=g)):
        a = make(td.Generator().manual_seed(123)).tolist()
        b = make(td.Generator().manual_seed(123)).tolist()
        c = make(td.Generator().manual_seed(124)).tolist()
        assert a == b
        assert a != c  # another seed, another stream (a coincidence is below 2^-20 here)


def test_generator_stream_is_its_own(td):
    """Draws from the session's generator, or from another Generator, between two draws of g do
    not change g's second draw; g does not move the session's stream either."""
    g = td.Generator().manual_seed(7)
    first = td.rand(3, generator=g).tolist()
    second = td.rand(3, generator=g).tolist()
    assert first != second  # the stream moves on

    g.manual_seed(7)
    td.manual_seed(99)
    s1 = td.rand(3).tolist()
    assert td.rand(3, generator=g).tolist() == first
    td.rand(100)
    other = td.Generator().manual_seed(7)
    td.randn(50, generator=other)
    assert td.rand(3, generator=g).tolist() == second

    td.manual_seed(99)
    assert td.rand(3).tolist() == s1
    td.manual_seed(99)
    td.rand(3, generator=g)
    assert td.rand(3).tolist() == s1  # g's draw did not move the session's stream


def test_get_state_set_state_replays(td):
    g = td.Generator().manual_seed(5)
    td.rand(4, generator=g)
    state = g.get_state()
    a = td.randn(6, generator=g).tolist()
    b = td.multinomial(td.ones(5), 5, generator=g).tolist()
    assert g.set_state(state) is g
    assert td.randn(6, generator=g).tolist() == a
    assert td.multinomial(td.ones(5), 5, generator=g).tolist() == b
    # the state is a copy: drawing did not change it, so it replays again
    g.set_state(state)
    assert td.randn(6, generator=g).tolist() == a
    # another generator takes the state and continues the same stream
    h = td.Generator().set_state(state)
    assert h.initial_seed() == 5
    assert td.randn(6, generator=h).tolist() == a


def test_generator_errors(td):
    with pytest.raises(TypeError):
        td.rand(2, generator=5)
    g = td.Generator()
    with pytest.raises(RuntimeError):
        g.set_state(td.zeros(3))
    other = tensord.Session()  # TENSORD_ADDR: the test daemon
    try:
        with pytest.raises(RuntimeError):  # g's state lives in the default session
            other.rand(2, generator=g)
    finally:
        other.close()


def test_randperm_is_a_permutation(td):
    for n in (1, 2, 7, 1000):
        p = td.randperm(n, generator=td.Generator().manual_seed(n)).tolist()
        assert sorted(p) == list(range(n))


# ---- distributions (fixed seeds; bounds are 6 standard deviations of each statistic) ----

def test_rand_randn_moments(td):
    g = td.Generator().manual_seed(11)
    n = 200000
    u = td.rand(n, generator=g, dtype=td.float64)
    # mean of U[0,1): sd sqrt(1/12/n) = 0.00065
    assert abs(u.mean().item() - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert u.min().item() >= 0 and u.max().item() < 1
    z = td.randn(n, generator=g, dtype=td.float64)
    # mean: sd 1/sqrt(n); variance: sd sqrt(2/n)
    assert abs(z.mean().item()) < 6 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 6 * math.sqrt(2 / n)
    # P(|z| < 1) = 0.6827, a proportion's sd sqrt(p(1-p)/n)
    inside = (z.abs() < 1).sum().item() / n
    assert abs(inside - 0.682689) < 6 * math.sqrt(0.6827 * 0.3173 / n)


def test_randint_uniform_counts(td):
    g = td.Generator().manual_seed(12)
    n, k = 60000, 6
    r = td.randint(10, 10 + k, (n,), generator=g)
    assert r.min().item() == 10 and r.max().item() == 10 + k - 1
    for v in range(10, 10 + k):
        c = (r == v).sum().item()
        # binomial(n, 1/6): sd sqrt(n * 1/6 * 5/6) = 91
        assert abs(c - n / k) < 6 * math.sqrt(n * (1 / k) * (1 - 1 / k))


def test_multinomial_frequencies(td):
    g = td.Generator().manual_seed(13)
    n = 50000
    w = td.tensor([1.0, 2.0, 3.0, 4.0])
    s = td.multinomial(w, n, replacement=True, generator=g)
    for c in range(4):
        p = (c + 1) / 10
        cnt = (s == c).sum().item()
        assert abs(cnt - n * p) < 6 * math.sqrt(n * p * (1 - p))
    # without replacement, 2 of 4 from weights [1, 1, 1, 5]: P(category 3 first) = 5/8, and
    # P(3 among the two) = 5/8 + 3 * (1/8) * (5/7) = 0.8929; 3000 rows of one draw each
    rows = 3000
    w2 = td.tensor([[1.0, 1.0, 1.0, 5.0]]).expand(rows, 4)
    s2 = td.multinomial(w2, 2, generator=g)
    assert tuple(s2.shape) == (rows, 2)
    assert (s2[:, 0] != s2[:, 1]).all().item()  # no repeats within a row
    first = (s2[:, 0] == 3).sum().item() / rows
    among = ((s2 == 3).sum().item()) / rows
    assert abs(first - 5 / 8) < 6 * math.sqrt((5 / 8) * (3 / 8) / rows)
    p = 5 / 8 + 3 * (1 / 8) * (5 / 7)
    assert abs(among - p) < 6 * math.sqrt(p * (1 - p) / rows)


def test_bernoulli_rates(td):
    g = td.Generator().manual_seed(14)
    n = 100000
    b = td.bernoulli(td.full((n,), 0.3), generator=g)
    assert abs(b.mean().item() - 0.3) < 6 * math.sqrt(0.3 * 0.7 / n)
    # per-element probabilities: half the elements at 0.1, half at 0.9
    p = td.cat([td.full((n // 2,), 0.1), td.full((n // 2,), 0.9)])
    b = td.bernoulli(p, generator=g)
    lo, hi = b[: n // 2].mean().item(), b[n // 2:].mean().item()
    sd = 6 * math.sqrt(0.1 * 0.9 / (n // 2))
    assert abs(lo - 0.1) < sd and abs(hi - 0.9) < sd


def test_normal_forms_moments(td):
    g = td.Generator().manual_seed(15)
    n = 100000
    x = td.normal(2.0, 3.0, (n,), generator=g, dtype=td.float64)
    assert abs(x.mean().item() - 2) < 6 * 3 / math.sqrt(n)
    assert abs(x.var().item() - 9) < 6 * 9 * math.sqrt(2 / n)
    # per-element mean and std: mean [-5, 5] halves, std [1, 4]
    mean = td.cat([td.full((n // 2,), -5.0), td.full((n // 2,), 5.0)])
    std = td.cat([td.full((n // 2,), 1.0), td.full((n // 2,), 4.0)])
    y = td.normal(mean, std, generator=g)
    a, b = y[: n // 2], y[n // 2:]
    m2 = n // 2
    assert abs(a.mean().item() + 5) < 6 * 1 / math.sqrt(m2)
    assert abs(b.mean().item() - 5) < 6 * 4 / math.sqrt(m2)
    assert abs(a.std().item() - 1) < 6 * 1 / math.sqrt(2 * m2)
    assert abs(b.std().item() - 4) < 6 * 4 / math.sqrt(2 * m2)


def test_randperm_is_uniform(td):
    """3000 permutations of 4: each of the 24 orders about 125 times (sd 10.8), and each is a
    permutation."""
    g = td.Generator().manual_seed(16)
    counts = {}
    for _ in range(300):
        batch = [td.randperm(4, generator=g) for _ in range(10)]
        for p in td.stack(batch).tolist():
            assert sorted(p) == [0, 1, 2, 3]
            counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    assert len(counts) == 24
    sd = math.sqrt(3000 * (1 / 24) * (23 / 24))
    for c in counts.values():
        assert abs(c - 125) < 6 * sd


# ---- gradients: torch's derivatives of normal and bernoulli are zeros ----

@pytest.mark.parametrize("case", ["t_t", "t_float", "float_t", "bernoulli"])
def test_grads_match_torch(td, case):
    def run(m):
        mean = m.tensor([1.0, 2.0], requires_grad=True)
        std = m.tensor([0.5, 0.25], requires_grad=True)
        if case == "t_t":
            y = m.normal(mean, std)
        elif case == "t_float":
            y = m.normal(mean, 1.0)
        elif case == "float_t":
            y = m.normal(1.0, std)
        else:
            y = m.bernoulli(std)
        (y * 3).sum().backward()
        return [t.grad.tolist() if t.grad is not None else None for t in (mean, std)]
    assert run(td) == run(torch)


# ---- generators as server objects ----

def test_generator_state_is_checked_by_the_server(td):
    """generator= names a handle: the server takes only a [seed, offset] int64 state there."""
    g = td.Generator()
    g._state = td.zeros(3)  # what a confused or hostile client could send
    with pytest.raises(tensord.TensorError) as e:
        td.rand(2, generator=g).tolist()
    assert "is not a generator state" in e.value.message
    g._state = td.tensor([1.0, 2.0])
    with pytest.raises(tensord.TensorError):
        td.multinomial(td.ones(3), 1, generator=g).tolist()


def test_generators_survive_a_restart(tmp_path):
    """A Generator's state is a tensor of its session, so a session snapshot keeps it: after a
    restart and a resume, the stream continues where it stopped."""
    from conftest import Daemon
    data_dir = str(tmp_path / "data")
    d = Daemon("--data-dir", data_dir)
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        g = tensord.Generator(session=s).manual_seed(42)
        s.rand(5, generator=g)
        s.synchronize()
        handle, token = g._state._h, s.token
        s._c.close()
    finally:
        assert d.stop() == 0
    d = Daemon("--data-dir", data_dir)
    try:
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=token)
        g2 = tensord.Generator.__new__(tensord.Generator)
        g2._s, g2._state = r, tensord.Tensor(r, handle)
        assert g2.initial_seed() == 42
        with tensord.connect("127.0.0.1:%d" % d.port) as ref:
            h = tensord.Generator(session=ref).manual_seed(42)
            ref.rand(5, generator=h)
            assert r.rand(4, generator=g2).tolist() == ref.rand(4, generator=h).tolist()
        r.close()
    finally:
        assert d.stop() == 0
