"""Memory reuse for large transfers (issue 19, second round): the daemon's buffer cache
(--cache-bytes, --cache-decay, kept within --max-bytes, shown in Stats and /metrics) and the
Python client's pool of receive buffers (tensord._pool, client/python/tensord/_pool.c).

Properties, not timings: pooled memory never aliases a live array; arrays keep their values
after the pool is trimmed; the decay releases; the node's cap holds with the cache full; the
fast span comparison (_pool.diff) finds what the numpy comparison finds. Values are checked
against numpy computing the same thing.
"""
import gc
import os
import re
import time

import numpy as np
import pytest

import tensord
from tensord import _conn, _numpy
from conftest import Daemon
from test_metrics import get, parse

SANITIZED = os.environ.get("TENSORD_SANITIZED") == "1"  # the daemon's cache is off under ASan
MiB = 1 << 20
pool = _conn._pool
needs_pool = pytest.mark.skipif(pool is None, reason="tensord._pool not in use (pure Python)")


def wait_for(cond, seconds=20.0):
    """Polls cond until it holds or the bound passes; returns its last value (not a timing
    assertion: only that it happens)."""
    deadline = time.monotonic() + seconds
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.02)


def addr_of(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def fresh_pool():
    """The pool emptied, with a known limit and no decay; restored after."""
    before = pool.stats()
    pool.trim()
    pool.configure(limit=256 * MiB, decay=0)
    yield
    pool.trim()
    pool.configure(limit=before["limit"], decay=before["decay"])


# ---- tensord._pool on its own ----

@needs_pool
def test_pool_reuses_only_dead_blocks(fresh_pool):
    a = np.frombuffer(pool.take(4 * MiB), np.uint8)
    a[:] = 1
    b = np.frombuffer(pool.take(4 * MiB), np.uint8)  # a is alive: b must be other memory
    b[:] = 2
    assert addr_of(a) != addr_of(b)
    assert (a == 1).all() and (b == 2).all()
    pa = addr_of(a)
    hits = pool.stats()["hits"]
    del a
    assert pool.stats()["cached_blocks"] == 1
    c = np.frombuffer(pool.take(4 * MiB - 100), np.uint8)  # fits with < 1/4 to spare: reused
    assert addr_of(c) == pa and pool.stats()["hits"] == hits + 1
    assert c.nbytes == 4 * MiB - 100 and c.flags.writeable
    assert (b == 2).all()
    d = np.frombuffer(pool.take(2 * MiB), np.uint8)  # half the size: not that block
    assert addr_of(d) not in (addr_of(b), addr_of(c))


@needs_pool
def test_arrays_keep_their_data_when_the_pool_is_trimmed(fresh_pool):
    keep = np.frombuffer(pool.take(3 * MiB), np.float32)
    keep[:] = np.arange(keep.size, dtype=np.float32)
    tmp = pool.take(3 * MiB)
    del tmp
    assert pool.stats()["cached_bytes"] >= 3 * MiB
    pool.trim()
    assert pool.stats()["cached_bytes"] == 0
    assert np.array_equal(keep, np.arange(keep.size, dtype=np.float32))
    del keep
    assert pool.stats()["cached_blocks"] == 1  # its block came back after the trim


@needs_pool
def test_pool_is_bounded(fresh_pool):
    pool.configure(limit=16 * MiB)
    blocks = [pool.take(3 * MiB) for _ in range(8)]
    del blocks
    st = pool.stats()
    assert 0 < st["cached_bytes"] <= 16 * MiB
    big = pool.take(9 * MiB)  # more than half the limit: never kept
    del big
    assert pool.stats()["cached_bytes"] <= 16 * MiB
    pool.configure(limit=0)
    assert pool.stats()["cached_bytes"] == 0
    x = pool.take(1 * MiB)
    del x
    assert pool.stats()["cached_bytes"] == 0


@needs_pool
def test_pool_decay_releases_unused_blocks(fresh_pool):
    pool.configure(decay=0.05)
    x = pool.take(2 * MiB)
    del x
    assert pool.stats()["cached_bytes"] > 0
    time.sleep(0.2)
    y = pool.take(300 << 10)  # any call into the pool releases what has decayed
    assert pool.stats()["cached_bytes"] == 0
    del y


@needs_pool
def test_pool_refuses_nonsense():
    with pytest.raises(ValueError):
        pool.take(-1)
    with pytest.raises(OverflowError):
        pool.take(1 << 80)
    with pytest.raises(TypeError):
        pool.Block()
    with pytest.raises(ValueError):
        pool.configure(limit=-1)
    with pytest.raises(ValueError):
        pool.configure(decay=float("nan"))
    with pytest.raises(ValueError):
        pool.diff(b"ab", b"abc", 1)
    with pytest.raises(ValueError):
        pool.diff(b"ab", b"ab", 0)


def numpy_spans(cur, snap, chunk):
    """The spans _numpy's numpy comparison finds (first differing byte, one past the last, per
    chunk), computed independently here."""
    out = []
    for off in range(0, len(cur), chunk):
        d = np.flatnonzero(cur[off:off + chunk] != snap[off:off + chunk])
        if d.size:
            out.append((off + int(d[0]), off + int(d[-1]) + 1))
    return out


@needs_pool
@pytest.mark.parametrize("n,chunk", [(0, 64), (1, 64), (1000, 64), (65536 * 3 + 17, 65536),
                                     (4096, 4096)])
def test_diff_finds_what_numpy_finds(n, chunk):
    rng = np.random.default_rng(n)
    snap = rng.integers(0, 256, n, dtype=np.uint8)
    for trial in range(20):
        cur = snap.copy()
        if n:
            k = int(rng.integers(0, 6))
            idx = rng.integers(0, n, k)
            cur[idx] ^= rng.integers(1, 256, k, dtype=np.uint8)  # a real change at each
            if trial == 1:
                cur[0] ^= 0xFF
                cur[-1] ^= 0xFF
        assert pool.diff(cur, snap, chunk) == numpy_spans(cur, snap, chunk)


# ---- downloads through the client ----

@pytest.fixture(scope="module")
def sess(daemon):
    s = tensord.connect("127.0.0.1:%d" % daemon)
    yield s
    s.close()


def test_repeated_downloads_never_alias(sess):
    rng = np.random.default_rng(1)
    src = rng.random(3 * MiB // 4, dtype=np.float32)  # 3 MiB: pooled sizes
    t = sess.tensor(src)
    outs = [t.numpy() for _ in range(4)]
    assert len({addr_of(o) for o in outs}) == 4
    for i, o in enumerate(outs):
        assert np.array_equal(o, src)
    for _ in range(3):
        o = outs.pop(0)
        del o
        gc.collect()
        outs.append(t.numpy())  # may reuse a dead array's memory, never a live one's
        assert len({addr_of(o) for o in outs}) == 4
        for o in outs:
            assert np.array_equal(o, src)


def test_op_result_download_is_the_received_buffer(sess):
    rng = np.random.default_rng(2)
    a = rng.random((512, 1024), dtype=np.float32)  # 2 MiB
    b = rng.random((512, 1024), dtype=np.float32)
    for _ in range(3):
        r = (sess.tensor(a) + sess.tensor(b)).numpy()  # shape unknown until the reply
        assert r.shape == a.shape and r.dtype == np.float32 and r.flags.writeable
        assert np.array_equal(r, a + b)


def test_large_op_result_in_chunks(sess):
    rng = np.random.default_rng(3)
    a = rng.random((3, 1 << 20), dtype=np.float32)  # 12 MiB: more than one chunk
    for _ in range(2):
        t = sess.tensor(a) * 2
        r = t.numpy()
        assert np.array_equal(r, a * 2)
        assert t.tolist()[2][-5:] == (a[2, -5:] * 2).tolist()


def test_pooled_arrays_still_share_with_the_tensor(sess):
    src = np.arange(1 << 20, dtype=np.float32)  # 4 MiB
    t = sess.tensor(src)
    n = t.numpy()
    n[7] = -3.0
    n[(1 << 20) - 1] = 5.0  # written in the array: seen by the tensor at its next use
    back = t.numpy()
    assert back[7] == -3.0 and back[(1 << 20) - 1] == 5.0
    want = src.copy()
    want[7], want[-1] = -3.0, 5.0
    assert np.array_equal((t * 1).numpy(), want)  # an op on the server reads the writes
    t.add_(1)  # an in-place change appears in both arrays
    assert n[0] == 1.0 and back[7] == -2.0


def test_numpy_results_are_freed_without_the_cyclic_collector(sess):
    src = np.ones(1 << 20, dtype=np.float32)
    gc.disable()
    try:
        t = sess.tensor(src) * 3
        arr = t.numpy()
        share = t._share
        assert share is not None and len(share.entries) == 1
        ref = _numpy._tensor(share.entries[0])
        assert ref is t
        del ref
        import weakref
        w = weakref.ref(arr)
        del t, share, arr
        assert w() is None  # no cycle kept the array alive
    finally:
        gc.enable()


# ---- writes to numpy() arrays recorded by the kernel instead of a snapshot (h23-xfer) ----

def _watch_works():
    """Whether the kernel records writes for the client (Linux 6.7+: asynchronous userfaultfd
    write-protect and PAGEMAP_SCAN), as the client's Block.watch finds out."""
    if pool is None:
        return False
    b = pool.take(1 << 20)
    memoryview(b)[:] = b"\1" * (1 << 20)
    if not hasattr(b, "watch"):  # a client without it: the kernel's version decides
        return tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) >= (6, 7)
    return b.watch()


needs_watch = pytest.mark.skipif(not _watch_works(),
                                 reason="no asynchronous userfaultfd write-protect here")
PAGE = 4096


@needs_watch
def test_block_written_lists_exactly_the_pages_written(fresh_pool):
    b = pool.take(3 * MiB + 100)  # a tail page only partly inside the block
    a = np.frombuffer(b, np.uint8)
    a[:] = 7  # populated first, as a download leaves it
    assert b.watch() and b.watch()  # a second call is a no-op
    assert b.written() == []
    a[0] = 1
    a[5 * PAGE + 17] = 1
    a[6 * PAGE] = 1  # the next page: one span of two pages
    a[-1] = 1  # the tail page: clipped to the block's size
    assert b.written() == [(0, PAGE), (5 * PAGE, 7 * PAGE), (3 * MiB, 3 * MiB + 100)]
    assert b.written() == []  # the call protected them again
    a[2 * MiB:2 * MiB + 3 * PAGE] = 9  # a write across a huge page's start
    assert b.written() == [(2 * MiB, 2 * MiB + 3 * PAGE)]
    a[:] = 0
    b.protect()  # forgets the writes so far
    assert b.written() == []
    r, w = os.pipe()  # a write by the kernel (read(2) into the block) is recorded too
    os.write(w, b"xyz")
    assert os.readv(r, [memoryview(b)[10 * PAGE + 5:10 * PAGE + 8]]) == 3
    os.close(r), os.close(w)
    assert b.written() == [(10 * PAGE, 11 * PAGE)]
    assert bytes(a[10 * PAGE + 5:10 * PAGE + 8]) == b"xyz"


@needs_watch
def test_block_written_in_a_forked_child_is_everything(fresh_pool):
    b = pool.take(2 * MiB)
    np.frombuffer(b, np.uint8)[:] = 1
    assert b.watch()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's descriptors would act on the parent's memory: it never uses them
        os.write(w, repr(b.written()).encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 100)
    os.waitpid(pid, 0)
    os.close(r)
    assert got == repr([(0, 2 * MiB)]).encode()
    np.frombuffer(b, np.uint8)[3] = 2
    assert b.written() == [(0, PAGE)]  # the parent's record is untouched


@needs_watch
def test_shared_download_takes_no_snapshot(sess, fresh_pool):
    """A held tensor's numpy() array is shared (torch's semantics) but takes no second buffer
    for a snapshot: one pooled block live, not two (the snapshot of a 4 MiB array was pooled)."""
    src = np.arange(1 << 20, dtype=np.float32)  # 4 MiB
    t = sess.tensor(src)
    a = t.numpy()
    assert np.array_equal(a, src)
    assert pool.stats()["live_blocks"] == 1
    a[3] = -1.0
    want = src.copy()
    want[3] = -1.0
    assert np.array_equal((t + 0).numpy(), want)
    assert pool.stats()["live_blocks"] == 1
    del a
    gc.collect()


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int16, np.int32, np.int64])
def test_writes_to_a_shared_download_reach_the_tensor_as_torch_does(sess, dt):
    """Writes to a numpy() array at page edges, through views, after an in-place op has been
    read back into it, and across repeated checks, all reach the tensor (torch's numpy() shares
    its storage); the model is the same writes on a numpy copy."""
    n = (3 * MiB + 12 * PAGE) // np.dtype(dt).itemsize
    src = (np.arange(n) % 251).astype(dt)
    t = sess.tensor(src)
    a = t.numpy()
    model = src.copy()
    per_page = PAGE // np.dtype(dt).itemsize
    for i in (0, per_page - 1, per_page, 513 * per_page - 1, n - 1):
        a[i] = 3
        model[i] = 3
    assert np.array_equal(t.numpy(), model)  # a second array: the first's writes sent first
    v = a[2 * per_page:5 * per_page]  # a view of the array writes into it too
    v[::7] = 5
    model[2 * per_page:5 * per_page:7] = 5
    assert np.array_equal((t + 0).numpy(), model)
    t.add_(1)  # read back into a: the copy is not a write of the user's
    model += 1
    assert np.array_equal(a, model)
    a[-2] = 9
    model[-2] = 9
    t.mul_(2)  # a's write goes first, then the result comes back
    model *= 2
    assert np.array_equal(a, model)
    assert np.array_equal((t + 0).numpy(), model)
    a[per_page * 100] = 1
    del a, v  # a write made before the array was dropped still reaches the tensor
    gc.collect()
    model[per_page * 100] = 1
    assert np.array_equal((t + 0).numpy(), model)


# ---- the daemon's buffer cache ----

def stats_of(s):
    return s.stats()


@pytest.mark.skipif(SANITIZED, reason="the buffer cache is off under AddressSanitizer")
def test_daemon_cache_shows_in_stats_and_metrics_and_decays():
    d = Daemon("--cache-bytes", "64M", "--cache-decay", "300ms", "--max-bytes", "1G",
               "--metrics-listen", "127.0.0.1:0")
    try:
        assert d.port is not None, d.text()
        mport = int(re.search(r"metrics_listening addr=127\.0\.0\.1:(\d+)", d.text()).group(1))
        s = tensord.connect("127.0.0.1:%d" % d.port)
        t = s.tensor(np.ones(4 * MiB // 4, dtype=np.float32))
        s.synchronize()
        del t
        gc.collect()
        s.synchronize()
        s.stats()  # carries the Free
        seen = wait_for(lambda: stats_of(s).cached_bytes >= 4 * MiB, 5)
        assert seen, "the freed 4 MiB buffer was not kept"
        _, _, text = get(mport, "/metrics")
        samples, _ = parse(text)
        assert samples[("tensord_buffer_cache_bytes", "")] >= 4 * MiB
        # unused for --cache-decay: released with no request to prompt it
        assert wait_for(lambda: stats_of(s).cached_bytes == 0, 20)
        _, _, text = get(mport, "/metrics")
        assert parse(text)[0][("tensord_buffer_cache_bytes", "")] == 0
        s.close()
    finally:
        assert d.stop() == 0


def test_daemon_cache_never_costs_a_session_its_quota():
    """A node with 48 MiB in all, a cache allowed 32 MiB: with the cache full of freed 8 MiB
    buffers, a session still gets its whole quota, and cache plus tensors stay within the cap."""
    d = Daemon("--cache-bytes", "32M", "--cache-decay", "0", "--max-bytes", "48M",
               "--session-max-bytes", "48M")
    try:
        assert d.port is not None, d.text()
        s = tensord.connect("127.0.0.1:%d" % d.port)
        ts = [s.tensor(np.full(2 * MiB, i, dtype=np.float32)) for i in range(3)]  # 3 x 8 MiB
        s.synchronize()
        del ts
        gc.collect()
        s.synchronize()
        st = s.stats()
        if not SANITIZED:
            assert wait_for(lambda: stats_of(s).cached_bytes >= 16 * MiB, 5)
        # now nearly the whole quota: 5 x 8 MiB plus 7.75 MiB
        keep = [s.tensor(np.full(2 * MiB, 10 + i, dtype=np.float32)) for i in range(5)]
        last = s.zeros(2 * MiB - (1 << 16))
        s.synchronize()
        st = s.stats()
        assert st.allocated_bytes + st.cached_bytes <= 48 * MiB + 4 * MiB  # + bookkeeping
        with pytest.raises(tensord.TensorError, match="quota"):
            s.zeros(1 * MiB)  # past the quota: refused, not a crash
            s.synchronize()
        del last
        gc.collect()
        s.synchronize()
        for i, k in enumerate(keep):  # no live tensor's memory was handed out again
            v = k.numpy()
            assert v.min() == 10 + i and v.max() == 10 + i
        s.close()
    finally:
        assert d.stop() == 0


def test_cache_flags_are_validated():
    d = Daemon("--cache-decay", "soon")
    try:
        assert d.port is None and d.proc.wait(timeout=10) == 2
    finally:
        d.stop()
    text = os.popen("%s --help" % os.environ.get("TENSORD_BIN", "build/tensord")).read()
    assert "--cache-bytes" in text and "--cache-decay" in text


# ---- large downloads of results whose shape the client does not know yet (issue 19, round 3) ----

def _rand(dt, n, seed=0):
    rng = np.random.default_rng(seed)
    if dt == np.bool_:
        return rng.random(n) < 0.5
    if np.issubdtype(dt, np.integer):
        return rng.integers(-(1 << 30), 1 << 30, n).astype(dt)
    return rng.standard_normal(n).astype(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_unknown_shape_download_is_exact_for_every_dtype(sess, dt):
    """A result larger than a download chunk (8 MiB), its shape unknown to the client, comes
    back byte for byte, from a contiguous tensor and from a transposed view of it."""
    n = (12 << 20) // np.dtype(dt).itemsize + 3
    a = _rand(dt, n)
    t = sess.tensor(a)
    got = t.clone().numpy()
    assert got.dtype == a.dtype and got.shape == a.shape
    assert got.tobytes() == a.tobytes()
    m = a[: (n // 1024) * 1024].reshape(-1, 1024)
    v = sess.tensor(m).t()   # non-contiguous on the server: its bytes in C order
    got = v.numpy()
    assert got.tobytes() == np.ascontiguousarray(m.T).tobytes()


def test_unknown_shape_download_is_one_get(sess):
    """`(x * 3).numpy()` of 16 MiB: one Get for the whole (the frame limit allows it), not an
    8 MiB first chunk copied into a second buffer and then the rest."""
    x = sess.tensor(np.ones(4 << 20, dtype=np.float32))
    sess.synchronize()
    ids = sess._c._next_id
    got = (x * 3).numpy()
    assert sess._c._next_id - ids == 2  # the mul and one Get
    assert got.shape == (4 << 20,) and (got == 3).all()


def test_unknown_shape_download_over_the_frame_limit_is_exact():
    """With a 1 MiB frame limit and no progress bar, the first Get takes one frame's worth and
    the rest follows in chunks: the values come back exact."""
    d = Daemon("--max-frame-bytes", "1M")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        a = np.random.default_rng(3).standard_normal((1500, 1000)).astype(np.float32)
        t = s.tensor(a)
        np.testing.assert_array_equal((t * 2).numpy(), a * 2)
        np.testing.assert_array_equal(t.T.numpy(), a.T)
        s.close()
    finally:
        assert d.stop() == 0
