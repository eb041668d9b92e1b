"""Attacks on the ops of issue 16 (indexing, sorting and selection, elementwise and linear
algebra, random): one request must never crash, stall or starve the daemon; every op's cost rule
bounds what the op does, counting inputs at their logical size; long loops stop at
--max-request-seconds; bad input gets a clear error.

Each test runs its attacks through the wire protocol (tensord._conn) on a daemon of its own and
then checks that the daemon is alive and that another session's tiny op (add of two 2-element
tensors) is served. Expanded (stride-0) views make huge logical inputs from a few bytes.
Expected texts are torch 1.13's where torch has the case, else the daemon's limit's name.
"""
import time

import numpy as np
import pytest

import wire
from attack_harness import DaemonSession, starter
from wire import H, ServerError

pb = wire.pb
pytestmark = pytest.mark.timeout(120)

LIMIT = pb.LIMIT_EXCEEDED
INVALID = pb.INVALID_ARGUMENT
BIG = 2 ** 40


class Attacker(DaemonSession):
    """A daemon started with `flags` and one attacking session on it."""

    def t(self, arr):
        return H(self.c.tensor(np.asarray(arr)))

    def expand(self, base, shape):
        return H(self.c.op("expand", [base], dims=list(shape)))

    def refused(self, code, needle, name, inputs, **kw):
        """Runs the op, expects the error `code` whose message contains `needle`; returns the
        seconds the reply took."""
        t0 = time.monotonic()
        with pytest.raises(ServerError) as e:
            self.c.op(name, inputs, **kw)
        took = time.monotonic() - t0
        assert e.value.code == code, (pb.StatusCode.Name(e.value.code), e.value.message)
        assert needle in e.value.message, e.value.message
        return took


attacker = starter(Attacker)


# ---------------------------------------------------------------- long loops stop in time

def _long_row(a, n):
    """A [1, n] float32 view of n non-constant values from 4096 real ones (the reshape copies)."""
    xr = a.t(np.random.default_rng(7).random((1, 4096), dtype=np.float32))
    big = a.expand(xr, [n // 4096, 4096])
    return H(a.c.op("reshape", [big], dims=[1, n]))


@pytest.mark.parametrize("replacement", [False, True])
def test_multinomial_of_one_long_row_stops_at_max_request_seconds(attacker, replacement):
    # It checked cancellation only between rows: one row of 2^24 categories ran 13 s (without
    # replacement: its qsort) or 17 s (2^24 samples searched) past a 2 s limit.
    a = attacker("--max-request-seconds", "1")
    row = _long_row(a, 2 ** 24)
    took = a.refused(LIMIT, "max_request_seconds", "multinomial", [row],
                     num_samples=2 ** 24 if replacement else 1, replacement=replacement)
    assert took < 4.0, took
    a.serves()


@pytest.mark.parametrize("op,kw", [("sort", {"dim": 1}), ("argsort", {"dim": 1}),
                                   ("kthvalue", {"k": 5, "dim": 1}), ("median", {}),
                                   ("mode", {"dim": 1}), ("unique", {}),
                                   ("topk", {"k": 2 ** 23, "dim": 1})])
def test_sorting_one_long_line_stops_at_max_request_seconds(attacker, op, kw):
    # The merge sort of one line checked cancellation only after the line: a line of 2^24
    # elements ran seconds past the limit.
    a = attacker("--max-request-seconds", "1")
    row = _long_row(a, 2 ** 24)
    took = a.refused(LIMIT, "max_request_seconds", op, [row], **kw)
    assert took < 4.0, took
    a.serves()


# ---------------------------------------------------------------- cost rules

def test_masked_select_costs_the_broadcast_size_not_the_product(attacker):
    # The rule multiplied the two sizes: two 4096-element operands cost 2^24 elements, so a
    # daemon with a 2^20 budget refused an op of a few thousand elements.
    a = attacker("--max-op-elements", str(2 ** 20))
    x = np.arange(4096, dtype=np.float32)
    m = x % 3 == 0
    arr, dt = a.c.get(a.c.op("masked_select", [a.t(x), a.t(m)]))
    assert dt == "float32" and arr.tolist() == x[m].tolist()
    # a broadcast of [1024, 1] with [1, 1024] is 2^20 elements, read three times: refused
    a.refused(LIMIT, "max_op_elements", "masked_select",
              [a.t(np.ones((1024, 1), np.float32)), a.t(np.ones((1, 1024), bool))])
    a.serves()


def test_huge_logical_inputs_are_refused_by_their_cost(attacker):
    a = attacker()
    f1 = a.t(np.ones(1, np.float32))
    ex = a.expand(f1, [BIG])
    sq = a.expand(a.t(np.ones((1, 1), np.float32)), [2 ** 20, 2 ** 20])
    i0 = a.expand(a.t(np.zeros((1, 1), np.int64)), [2 ** 29, 2 ** 29])
    p = a.t(np.array([[0.2, 0.8]], np.float32))
    m = "max_op_elements"
    a.refused(LIMIT, m, "randperm", [], num_samples=2 ** 62)
    a.refused(LIMIT, m, "triu_indices", [], dim=2 ** 31, dim2=2 ** 31, start=-2 ** 62)
    a.refused(LIMIT, m, "tril_indices", [], dim=2 ** 62, dim2=2 ** 62, start=0)
    a.refused(LIMIT, m, "multinomial", [p], num_samples=2 ** 40, replacement=True)
    a.refused(LIMIT, m, "multinomial", [a.expand(p, [BIG, 2])], num_samples=1)
    a.refused(LIMIT, m, "bernoulli", [ex])
    for op in ("unique", "median", "nonzero", "count_nonzero", "amax", "var_mean"):
        a.refused(LIMIT, m, op, [ex])
    for op in ("sort", "argsort", "mode", "cumprod"):
        a.refused(LIMIT, m, op, [sq], dim=1)
    a.refused(LIMIT, m, "topk", [ex], k=1)
    a.refused(LIMIT, m, "kthvalue", [ex], k=1)
    x = a.t(np.arange(6, dtype=np.float32).reshape(2, 3))
    a.refused(LIMIT, m, "index", [x, i0, i0], index_mask=3)
    a.refused(LIMIT, m, "take", [x, a.expand(a.t(np.zeros(1, np.int64)), [BIG])])
    a.refused(LIMIT, m, "masked_select", [ex, a.expand(a.t(np.ones(1, bool)), [BIG])])
    a.refused(LIMIT, m, "einsum", [ex, ex], equation="i,j->ij")
    a.refused(LIMIT, m, "diag", [f1], dim=2 ** 62)
    a.refused(LIMIT, m, "roll", [ex], shifts=[1])
    a.refused(LIMIT, m, "isclose", [ex, ex])
    a.serves()


# ---------------------------------------------------------------- validation

def test_out_of_range_arguments_get_torch_errors(attacker):
    a = attacker()
    x = a.t(np.arange(6, dtype=np.float32).reshape(2, 3))
    k_msg = "selected index k out of range"
    for k in (4, -1, 2 ** 62):
        a.refused(INVALID, k_msg, "topk", [x], k=k, dim=-1)
    for k in (0, 4, -2 ** 63):
        a.refused(INVALID, "kthvalue(): selected number k out of range for dimension 1",
                  "kthvalue", [x], k=k, dim=-1)
    a.refused(INVALID, "index 5 is out of bounds for dimension 0 with size 2", "index",
              [x, a.t(np.array([5], np.int64))], index_mask=1)
    a.refused(INVALID, "too many indices for tensor of dimension 2", "index",
              [x, a.t(np.array([0], np.int64))], index_mask=1 << 63)
    a.refused(INVALID, "out of range: tried to access index -9223372036854775808 on a tensor "
              "of 6 elements.", "take", [x, a.t(np.array([-2 ** 63], np.int64))])
    a.refused(INVALID, "shifts and dimensions must align. shifts: 2, dims:1", "roll", [x],
              shifts=[1, 2], dims=[0])
    a.refused(INVALID, "bernoulli_ expects p to be in [0, 1], but got p=nan", "bernoulli", [x],
              max=float("nan"))
    a.refused(INVALID, "normal expects all elements of std >= 0.0", "normal_sample",
              [a.t(np.float32(0)), a.t(np.float32(np.nan))])
    # a NaN std given as a number was accepted (NaN samples); torch refuses it
    a.refused(INVALID, "normal expects std >= 0.0, but found std nan", "normal_sample",
              [0.0, float("nan")], dims=[3])
    a.refused(INVALID, "normal expects std >= 0.0, but found std nan", "normal_sample",
              [a.t(np.zeros(2, np.float32)), float("nan")])
    a.refused(INVALID, "probability tensor contains either `inf`, `nan` or element < 0",
              "multinomial", [a.t(np.array([np.nan, 1], np.float32))], num_samples=1)
    a.refused(INVALID, "rtol must be greater than or equal to zero, but got nan", "isclose",
              [x, x], rtol=float("nan"))
    a.refused(INVALID, "div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
              "found 'Floor'", "div", [x, x], rounding_mode="Floor")
    a.refused(INVALID, "einsum(): the equation is 64 characters long; at most 63 are "
              "supported", "einsum", [x, x], equation="i" * 64)
    # offsets of +-2^62 make an empty diagonal, as torch's
    for off in (2 ** 62, -2 ** 62, -2 ** 63):
        arr, _ = a.c.get(a.c.op("diagonal", [x], start=off, dim=0, dim2=1))
        assert arr.shape == (0,)
    a.serves()


def mt_state(seed):
    """torch's CPU generator state right after manual_seed(seed), as 632 int64 words."""
    mt = [seed & 0xFFFFFFFF]
    for j in range(1, 624):
        mt.append((1812433253 * (mt[-1] ^ (mt[-1] >> 30)) + j) & 0xFFFFFFFF)
    return np.array([seed, 1 | (1 << 32), 0] + mt + [0] * 5, np.int64)


def test_a_generator_sharing_memory_with_an_input_is_refused(attacker):
    # bernoulli_ on the generator's own state tensor: the op would write 0/1 into it, then the
    # generator's advanced state would overwrite the op's result.
    a = attacker()
    st = mt_state(5)
    g = a.c.tensor(st)
    g4 = a.c.tensor(np.concatenate([[7], st, [9]]).astype(np.int64))
    view = a.c.op("narrow", [H(g4)], dim=0, start=1, end=632)
    for target, gen in ((g, g), (g4, view)):
        with pytest.raises(ServerError) as e:
            a.c.op("bernoulli", [H(target)], inplace=True, max=0.5, generator=gen)
        assert e.value.code == INVALID
        assert "generator handle %d shares memory with input 0 of bernoulli" % gen \
            in e.value.message
    assert a.c.get(g)[0].tolist() == st.tolist()
    assert a.c.get(g4)[0].tolist()[1:633] == st.tolist()
    # a generator apart from the inputs still works, and advances: float32 probabilities take
    # one 32-bit draw each, 4 after the twist (left 624 - 4 + 1, next 4)
    x = a.t(np.full(4, 0.5, np.float32))
    a.c.get(a.c.op("bernoulli", [x], generator=g))
    after = a.c.get(g)[0].tolist()
    assert after[0] == 5 and after[1] == 621 | (1 << 32) and after[2] == 4
    # a state that is not one is refused before anything runs
    for bad in (np.array([5, 0], np.int64), mt_state(5)[:631]):
        with pytest.raises(ServerError) as e:
            a.c.op("bernoulli", [x], generator=a.c.tensor(bad))
        assert e.value.code == INVALID
        assert "is not a generator state" in e.value.message
    unseeded = mt_state(5)
    unseeded[1] = 1  # left 1, seeded 0
    with pytest.raises(ServerError) as e:
        a.c.op("bernoulli", [x], generator=a.c.tensor(unseeded))
    assert e.value.message == "Invalid mt19937 state"
    a.serves()


def test_addmm_dtype_mismatches_are_refused_as_torch_and_baddbmm_casts_input(attacker):
    # addmm promoted a float64 (or int64) input with float32 matrices to float64 where torch
    # refuses; baddbmm's result took the input's dtype where torch's is the batches' dtype.
    a = attacker()
    f = np.ones((2, 2), np.float32)
    d, i = f.astype(np.float64), f.astype(np.int64)
    for args, msg in (((f, d, f), "mat1 and mat2 must have the same dtype"),
                      ((f, f, d), "self and mat2 must have the same dtype"),
                      ((d, f, f), "self and mat2 must have the same dtype"),
                      ((i, f, f), "self and mat2 must have the same dtype")):
        a.refused(pb.DTYPE_ERROR, msg, "addmm", [a.t(x) for x in args])
    for inp in (d, i):
        arr, dt = a.c.get(a.c.op("baddbmm", [a.t(inp[None]), a.t(f[None]), a.t(f[None])]))
        assert dt == "float32" and arr.tolist() == [[[3.0, 3.0], [3.0, 3.0]]]
    x = a.c.tensor(d[None], requires_grad=True)
    r = a.c.op("baddbmm", [H(x), a.t(f[None]), a.t(f[None])])
    a.c.backward(a.c.op("sum", [H(r)]))
    g, gdt = a.c.get(a.c.grad(x))
    assert gdt == "float64" and g.tolist() == [[[1.0, 1.0], [1.0, 1.0]]]
    a.serves()


def test_extreme_decimals_and_int_min_division_do_not_trap(attacker):
    # round negated decimals=-2^63 (undefined in C); INT64_MIN / -1 traps on x86 when done
    # as a plain division. torch 1.13 gives NaN for every element at these decimals, and wraps.
    a = attacker()
    x = a.t(np.array([0.0, 1.5, -2.25], np.float32))
    for dec in (-2 ** 63, 2 ** 63 - 1, 400, -400):
        arr, dt = a.c.get(a.c.op("round", [x], decimals=dec))
        assert dt == "float32" and np.isnan(arr).all(), (dec, arr)
    lo = a.t(np.array([-2 ** 63], np.int64))
    for mode in ("trunc", "floor"):
        arr, _ = a.c.get(a.c.op("div", [lo, a.t(np.int64(-1))], rounding_mode=mode))
        assert arr.tolist() == [-2 ** 63]
    a.serves()


def test_masked_fill_out_of_place_broadcasts_self_with_the_mask_and_is_costed_so(attacker):
    # It refused a mask wider than self ("output with shape [1] doesn't match the broadcast
    # shape ..."), where torch's out-of-place masked_fill broadcasts; its cost counted self's
    # size as the result's.
    a = attacker("--max-op-elements", str(2 ** 24))
    x = a.c.tensor(np.array([[1.0, 2.0, 3.0]], np.float32), requires_grad=True)
    mask = a.t(np.array([[True], [False]]))
    y = a.c.op("masked_fill", [H(x), mask, 7.0])
    arr, dt = a.c.get(y)
    assert dt == "float32" and arr.tolist() == [[7.0, 7.0, 7.0], [1.0, 2.0, 3.0]]
    w = a.c.op("mul", [H(y), a.t(np.array([[1.0], [2.0]], np.float32))])
    a.c.backward(a.c.op("sum", [H(w)]))
    assert a.c.get(a.c.grad(x))[0].tolist() == [[2.0, 2.0, 2.0]]  # d/dx summed over the rows
    # torch's texts: the mask named first out of place, self first in place
    a.refused(pb.SHAPE_MISMATCH, "The size of tensor a (2) must match the size of tensor b (3) "
              "at non-singleton dimension 0", "masked_fill",
              [a.t(np.ones(3, np.float32)), a.t(np.ones(2, bool)), 1.0])
    a.refused(pb.SHAPE_MISMATCH, "The size of tensor a (3) must match the size of tensor b (2) "
              "at non-singleton dimension 0", "masked_fill",
              [a.t(np.ones(3, np.float32)), a.t(np.ones(2, bool)), 1.0], inplace=True)
    a.refused(pb.SHAPE_MISMATCH, "output with shape [1] doesn't match the broadcast shape "
              "[2, 2]", "masked_fill",
              [a.t(np.ones(1, np.float32)), a.t(np.ones((2, 2), bool)), 1.0], inplace=True)
    # a 2^30-element result from a 1-element self: its size is what the rule counts
    huge = a.expand(a.t(np.ones((1, 1), bool)), [2 ** 15, 2 ** 15])
    a.refused(LIMIT, "max_op_elements", "masked_fill", [a.t(np.ones(1, np.float32)), huge, 1.0])
    a.serves()
