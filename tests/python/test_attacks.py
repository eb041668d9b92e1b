"""The attacks of issue 14, one named test per finding: an attacker holding one valid session (or
none) tries to crash tensord, stall it, starve its other sessions or take memory and disk past
every quota.

Each test performs its attack through the wire protocol on a daemon of its own (started with the
flags the attack needs) and then checks, through one shared helper (Guard.check):
  (a) the attacker got a clear error reply: the status code, and the limit's name in the message
      where a limit stops it (checked in the test itself);
  (b) the daemon is alive, and a fresh connection is served;
  (c) while the attack runs, where it is about time: no turn of the daemon's event loop held the
      loop past TINY_OP_S (100 ms) — the daemon measures each turn's busy time itself (Stats
      loop_slow_turns), so the check does not depend on how this test process is scheduled —
      and another session's tiny ops (add of two 2-element tensors, then Get of the sum) kept
      being answered, within TINY_OP_S with an allowance for the scheduler's noise
      (Guard.assert_served); after the attack, in every case, a tiny op replies within
      TINY_OP_S;
  (d) a canary session (test_hostile.Canary: every dtype, a requires_grad leaf and its .grad)
      is intact byte for byte;
  (e) memory comes back: the daemon's allocated_bytes (Stats) to its level before the attack,
      within ALLOC_SLACK, and its RSS to within RSS_SLACK of its level before plus what the
      daemon keeps in its buffer cache (Stats cached_bytes).
Where the attack is about memory, the peak is bounded too: VmHWM (the kernel's own RSS high-water
mark, so no sample can miss a peak) and allocated_bytes sampled during the attack.

No test waits on a timing margin under 2x: limits are asserted with at least twice their value
plus slack, and every socket read has a timeout, so a daemon that hangs fails the test instead of
stalling the suite (pytest-timeout is the last resort). A daemon left running by a failed test is
killed by the fixture.

TENSORD_TINY_OP_MS raises the 100 ms bound for slow builds (ASan, valgrind).
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

import wire
from conftest import BINARY, Daemon, _die_with_parent
from test_hostile import HEADER, Canary, Raw, frame

pb = wire.pb
HERE = os.path.dirname(os.path.abspath(__file__))

TINY_OP_S = float(os.environ.get("TENSORD_TINY_OP_MS", "100")) / 1000
NOISE_X = 10                # see Guard.assert_served
SLOW_BUCKET_MS = (1, 10, 100, 1000)  # StatsResult.loop_slow_turns' bounds
ALLOC_SLACK = 1 << 20       # allocated_bytes back to its level before the attack, within this
RSS_SLACK = 64 << 20        # RSS back to its level before, plus cached_bytes, within this
# AddressSanitizer keeps freed memory in its quarantine and never gives it back to the system,
# so under make check-asan RSS cannot return to its baseline; allocated_bytes (the daemon's own
# count of live bytes) is still checked there, and the peaks still bound memory.
SANITIZED = os.environ.get("TENSORD_SANITIZED") == "1"
MiB = 1 << 20
# ... and its peak: freed blocks stay resident in the quarantine, up to ASan's default
# quarantine_size_mb (256 on 64-bit), so a peak-RSS bound allows that much more there.
QUARANTINE = (256 * MiB) if SANITIZED else 0

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- requests

def proc_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def op_req(rid, out, name, inputs, **kw):
    """A RunOp request; inputs are handles (int) or wire.H / python numbers like wire.Conn.op."""
    r = pb.Request()
    r.id = rid
    r.run_op.out = out
    r.run_op.op = pb.Op.Value("OP_" + name.upper())
    for x in inputs:
        o = r.run_op.inputs.add()
        if isinstance(x, int) and not isinstance(x, bool):
            o.handle = x
        else:
            wire.scalar(x, o.scalar)
    a = r.run_op.args
    for k, v in kw.items():
        if k == "dims":
            a.dims.extend(v)
            a.has_dims = True
        elif k == "dim":
            a.dim = v
            a.has_dim = True
        elif k in ("min", "max"):
            wire.scalar(v, getattr(a, k))
        elif k == "dtype":
            a.dtype = v
        else:
            setattr(a, k, v)
    return r


class Attacker(Raw):
    """A raw session: requests built by hand, ids counted, every read under a timeout."""

    def __init__(self, port, timeout=15, **kw):
        super().__init__(port, timeout=timeout, **kw)
        self.rid = 100

    def next_id(self):
        self.rid += 1
        return self.rid

    def ok(self, r, data=b""):
        resp, out = self.call(r, data)
        assert resp.status.code == pb.OK, (pb.StatusCode.Name(resp.status.code),
                                           resp.status.message)
        return resp, out

    def create(self, out, arr):
        arr = np.ascontiguousarray(arr)
        dt = {np.dtype(np.float32): pb.FLOAT32, np.dtype(np.float64): pb.FLOAT64,
              np.dtype(np.int32): pb.INT32, np.dtype(np.int64): pb.INT64,
              np.dtype(np.bool_): pb.BOOL}[arr.dtype]
        r = pb.Request(id=self.next_id())
        r.create.out = out
        r.create.dtype = dt
        r.create.shape.extend(arr.shape)
        self.ok(r, arr.tobytes())
        return out

    def op(self, out, name, inputs, **kw):
        """Runs an op that must succeed."""
        self.ok(op_req(self.next_id(), out, name, inputs, **kw))
        return out

    def expand(self, out, base, shape):
        return self.op(out, "expand", [base], dims=list(shape))

    def request(self, r, data=b""):
        """(Response, data, seconds) of one request."""
        t0 = time.monotonic()
        resp, out = self.call(r, data)
        return resp, out, time.monotonic() - t0

    def close_session(self):
        """Ends the attacker's session so its memory is released (a session outlives its
        connection for --session-ttl)."""
        try:
            self.call(pb.Request(id=self.next_id(), close_session=pb.CloseSession()))
        finally:
            self.close()


def err_reply(resp, codes, needle=None):
    """(a): a clear error: one of `codes`, a message, and `needle` in it when given."""
    names = [pb.StatusCode.Name(c) for c in codes]
    assert resp.status.code in codes, ("expected %s, got %s: %r" % (
        names, pb.StatusCode.Name(resp.status.code), resp.status.message))
    assert resp.status.message, "an error needs a message"
    if needle is not None:
        assert needle in resp.status.message, resp.status.message


# ---------------------------------------------------------------- the shared checks

class Guard:
    """A daemon under attack, with a canary session, a watcher session that times tiny ops and
    samples memory, and the levels before the attack."""

    def __init__(self, *flags):
        self.d = Daemon(*flags)
        assert self.d.port is not None, "tensord did not start:\n" + self.d.text()[-3000:]
        self.port = self.d.port
        self.pid = self.d.proc.pid
        self.canary = Canary(self.port)
        self.w = Raw(self.port, timeout=10)
        self.wid = 1000
        for h, v in ((1, [1.0, 2.0]), (2, [3.0, 4.0])):
            r = pb.Request(id=self._wid())
            r.create.out = h
            r.create.dtype = pb.FLOAT32
            r.create.shape.append(2)
            resp, _ = self.w.call(r, np.array(v, dtype=np.float32).tobytes())
            assert resp.status.code == pb.OK, resp.status.message
        for _ in range(3):
            self.tiny()  # the watcher's buffers settle
        self.base_alloc = self.stats().allocated_bytes
        self.base_rss = proc_kib(self.pid, "VmRSS") << 10
        self.lat = []
        self.peak_alloc = self.base_alloc
        self.watch_errors = []

    def _wid(self):
        self.wid += 1
        return self.wid

    def stats(self):
        resp, _ = self.w.call(pb.Request(id=self._wid(), stats=pb.Stats()))
        assert resp.status.code == pb.OK, resp.status.message
        return resp.stats

    def tiny(self):
        """(c): add of two 2-element tensors, Get of the sum, Free: seconds for the three
        replies (pipelined as a client would)."""
        add = op_req(self._wid(), 3, "add", [1, 2])
        get = pb.Request(id=self._wid())
        get.get.handle = 3
        free = pb.Request(id=self._wid())
        free.free.handles.append(3)
        t0 = time.monotonic()
        self.w.send(frame(add) + frame(get) + frame(free))
        got = [self.w.recv() for _ in range(3)]
        dt = time.monotonic() - t0
        assert all(g is not None for g in got), "the watcher's connection was closed"
        assert [g[0].status.code for g in got] == [pb.OK] * 3, [g[0].status.message for g in got]
        assert np.frombuffer(got[1][1], dtype=np.float32).tolist() == [4.0, 6.0]
        return dt

    def watching(self, period=0.02):
        """A context: while it is open, a watcher process (attack_watcher.py, a session of its
        own) times tiny ops and samples allocated_bytes; on exit its figures are added to
        self.lat, self.peak_alloc and self.watch_errors. A process, not a thread: a thread here
        would wait for the GIL behind the attack's own reader, and time that instead of the
        daemon."""
        guard = self

        class Ctx:
            def __enter__(self):
                guard.loop_before = guard.stats()
                self.p = subprocess.Popen(
                    [sys.executable, os.path.join(HERE, "attack_watcher.py"), str(guard.port),
                     str(period)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
                line = ""
                if select.select([self.p.stdout], [], [], 30)[0]:
                    line = self.p.stdout.readline()
                if line.strip() != "ready":  # the watcher is running before the attack starts
                    self.p.kill()
                    out, err = self.p.communicate(timeout=30)
                    raise AssertionError("the watcher did not start: %r %s" % (line + out,
                                                                                err[-2000:]))
                return guard

            def __exit__(self, *exc):
                try:
                    out, err = self.p.communicate("stop\n", timeout=30)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.communicate(timeout=30)
                    raise AssertionError("the watcher hung")
                try:
                    got = json.loads(out.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    raise AssertionError("the watcher said %r %s" % (out, err[-2000:]))
                guard.lat.extend(got["lat"])
                guard.peak_alloc = max(guard.peak_alloc, got["peak_alloc"])
                guard.watch_errors.extend(got["errors"])
                return False
        return Ctx()

    def assert_served(self):
        """(c) during the attack (the last `watching` block): no loop turn held the daemon's
        loop past TINY_OP_S, and the watcher's tiny ops replied within TINY_OP_S.

        The first is the daemon's own measure of each turn's busy time (its wall time less its
        wait for I/O, at most the loop thread's CPU time: a turn preempted by other processes on
        a loaded machine is not held by the daemon), read from Stats before and after: a request run on the loop for longer
        shows there whatever the test process is doing. The watcher is a process of its own
        (attack_watcher.py), so the attack's reader here, parsing hundreds of thousands of
        replies, does not hold it behind the GIL; its timings still include a shared machine's
        scheduler (seen: 101 to 258 ms, once per run, with other work on both cores), so one
        probe in twenty (at least one) may take up to NOISE_X times the bound. A session kept waiting while the loop is free (unfair turns) shows as
        many slow probes."""
        assert not self.watch_errors, self.watch_errors
        assert self.lat, "the watcher timed no tiny op"
        after = self.stats()
        bound_ms = TINY_OP_S * 1000
        # the tightest bucket at or above the bound (TENSORD_TINY_OP_MS may raise it)
        b = min((i for i, ms in enumerate(SLOW_BUCKET_MS) if ms >= bound_ms),
                default=len(SLOW_BUCKET_MS) - 1)
        held = after.loop_slow_turns[b] - self.loop_before.loop_slow_turns[b]
        assert held == 0, "%d loop turns held the loop past %d ms (longest since start: %.0f ms)" % (
            held, SLOW_BUCKET_MS[b], after.loop_busy_max_us / 1000)
        slow = sorted((x for x in self.lat if x >= TINY_OP_S), reverse=True)
        allowed = max(1, len(self.lat) // 20)
        ok = not slow or (len(slow) <= allowed and slow[0] < NOISE_X * TINY_OP_S)
        assert ok, "another session waited %s ms (%d tiny ops, bound %.0f ms)" % (
            ", ".join("%.0f" % (x * 1000) for x in slow[:5]), len(self.lat), TINY_OP_S * 1000)

    def peak_rss(self):
        """The kernel's high-water mark of the daemon's RSS, in bytes, above its level before
        the attack."""
        return (proc_kib(self.pid, "VmHWM") << 10) - self.base_rss

    def alive(self):
        assert self.d.proc.poll() is None, "tensord died (exit %s):\n%s" % (
            self.d.proc.returncode, self.d.text()[-3000:])

    def fresh_session_works(self):
        r = Raw(self.port, timeout=10)
        try:
            assert r.ping_ok()
            c = pb.Request(id=2)
            c.create.out = 5
            c.create.dtype = pb.INT64
            c.create.shape.append(3)
            resp, _ = r.call(c, np.arange(3, dtype=np.int64).tobytes())
            assert resp.status.code == pb.OK, resp.status.message
            g = pb.Request(id=3)
            g.get.handle = 5
            resp, data = r.call(g)
            assert np.frombuffer(data, dtype=np.int64).tolist() == [0, 1, 2]
            resp, _ = r.call(pb.Request(id=4, close_session=pb.CloseSession()))
            assert resp.status.code == pb.OK, resp.status.message
        finally:
            r.close()

    def check(self, settle=10.0):
        """(b)-(e) after the attack; memory gets `settle` seconds to come back."""
        self.alive()
        self.fresh_session_works()
        dt = min(self.tiny() for _ in range(3))
        assert dt < TINY_OP_S, "a tiny op took %.0f ms after the attack" % (dt * 1000)
        self.canary.check()
        deadline = time.monotonic() + settle
        while True:  # large frees are unmapped by a releaser thread, moments later
            st = self.stats()
            rss = proc_kib(self.pid, "VmRSS") << 10
            if (st.allocated_bytes <= self.base_alloc + ALLOC_SLACK and
                    (SANITIZED or rss <= self.base_rss + st.cached_bytes + RSS_SLACK)) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert st.allocated_bytes <= self.base_alloc + ALLOC_SLACK, \
            "allocated_bytes %d, %d before the attack" % (st.allocated_bytes, self.base_alloc)
        assert SANITIZED or rss <= self.base_rss + st.cached_bytes + RSS_SLACK, \
            "RSS %d MiB, %d MiB before the attack, %d MiB cached" % (
                rss >> 20, self.base_rss >> 20, st.cached_bytes >> 20)
        self.alive()

    def stop(self, timeout=20):
        """Ends the canary and watcher, SIGTERMs the daemon: it must exit 0."""
        self.canary.close()
        self.w.close()
        if self.d.proc.poll() is None:
            self.d.proc.send_signal(signal.SIGTERM)
        code = self.d.proc.wait(timeout=timeout)
        assert code == 0, "tensord exited %d:\n%s" % (code, self.d.text()[-3000:])

    def kill(self):
        if self.d.proc.poll() is None:
            self.d.proc.kill()
            self.d.proc.wait(10)


@pytest.fixture
def guard():
    """Starts daemons under attack: guard(*flags) -> Guard. Whatever the test did, its daemons
    are gone afterwards (SIGKILL if the test failed before stopping them)."""
    made = []

    def start(*flags):
        g = Guard(*flags)
        made.append(g)
        return g
    yield start
    for g in made:
        g.kill()
        try:
            os.unlink(g.d.log.name)
        except OSError:
            pass


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="tensord-attacks-") as d:
        yield d


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def one(attacker, dtype=np.float32, value=1):
    """A 1-element base tensor in the attacker's session (handle 1)."""
    return attacker.create(1, np.array([value], dtype=dtype))


# ================================================================= finding 1: heap overflow

# Three views of 6148914691236517206 elements: 3 * that is 2^64 + 2, which wrapped to 2.
WRAP_N = 6148914691236517206


@pytest.mark.parametrize("op", ["cat", "stack"])
def test_finding1_cat_of_huge_expanded_bool_views_does_not_overflow(guard, op):
    g = guard()
    a = Attacker(g.port)
    one(a, np.bool_, True)
    a.expand(2, 1, [WRAP_N])
    resp, _, _ = a.request(op_req(a.next_id(), 3, op, [2, 2, 2], dim=0))
    err_reply(resp, [pb.LIMIT_EXCEEDED, pb.INVALID_ARGUMENT, pb.OUT_OF_MEMORY,
                     pb.QUOTA_EXCEEDED])
    # the 2-D cousin: two views whose sizes add past 2^63 in the cat dim
    a.expand(4, 1, [1, 1 << 62])
    resp, _, _ = a.request(op_req(a.next_id(), 5, "cat", [4, 4, 4], dim=1))
    err_reply(resp, [pb.LIMIT_EXCEEDED, pb.INVALID_ARGUMENT, pb.OUT_OF_MEMORY,
                     pb.QUOTA_EXCEEDED])
    assert a.ping_ok()
    a.close_session()
    g.check()
    g.stop()


# ================================================================= finding 2: one request stalls

HUGE = [1 << 30, 1 << 30]  # 2^60 elements of a 1-element tensor


REDUCTIONS = [
    ("sum", HUGE, {}),
    ("mean", HUGE, {}),
    ("max", HUGE, {}),
    ("std", HUGE, {}),
    ("sum", [1 << 34, 1 << 20], {"dims": [0]}),   # dim=: a 2^20-element output, a pool worker
]


@pytest.mark.parametrize("op,shape,kw", REDUCTIONS,
                         ids=["sum", "mean", "max", "std", "sum_dim"])
def test_finding2_reduction_of_a_2_pow_60_element_view_fails_fast_naming_max_op_elements(
        guard, op, shape, kw):
    g = guard()
    a = Attacker(g.port)
    one(a)
    a.expand(2, 1, shape)
    with g.watching():
        resp, _, dt = a.request(op_req(a.next_id(), 3, op, [2], **kw))
    err_reply(resp, [pb.LIMIT_EXCEEDED], "max_op_elements")
    assert dt < 2.0, "refused only after %.1f s: the cost is known before any work" % dt
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


def test_finding2_integer_matmul_of_expanded_views_fails_fast_naming_a_limit(guard):
    g = guard()
    a = Attacker(g.port)
    one(a, np.int64)
    a.expand(2, 1, [4, 1 << 40])
    a.expand(3, 1, [1 << 40, 4])
    with g.watching():
        resp, _, dt = a.request(op_req(a.next_id(), 4, "matmul", [2, 3]))
    # 2^44 multiply-adds: over max_op_elements; a copy of the operands would be over every quota
    err_reply(resp, [pb.LIMIT_EXCEEDED, pb.QUOTA_EXCEEDED])
    assert re.search(r"max_op_elements|max_bytes|max_tensor_bytes|quota", resp.status.message), \
        resp.status.message
    assert dt < 2.0, "refused only after %.1f s" % dt
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


@pytest.mark.parametrize("shape,kw", [(HUGE, {}), ([1 << 34, 1 << 20], {"dims": [0]})],
                         ids=["all", "dim"])
def test_finding2_with_no_element_budget_a_long_reduction_stops_at_max_request_seconds(
        guard, shape, kw):
    """--max-op-elements 0 lets the walk start; --max-request-seconds 1 ends it, and the other
    sessions are served while it runs (it must not run on the event loop)."""
    g = guard("--max-op-elements", "0", "--max-request-seconds", "1")
    a = Attacker(g.port, timeout=30)
    one(a)
    a.expand(2, 1, shape)
    with g.watching():
        resp, _, dt = a.request(op_req(a.next_id(), 3, "sum", [2], **kw))
    err_reply(resp, [pb.LIMIT_EXCEEDED], "max_request_seconds 1")
    assert dt < 4.0, "a 1 s limit ended the request after %.1f s" % dt
    g.assert_served()
    assert len(g.lat) >= 5
    a.close_session()
    g.check()
    g.stop()


def test_finding2_sigterm_during_a_running_reduction_exits_in_time_and_writes_snapshots(
        guard, data_dir):
    shutdown_s = 2
    g = guard("--max-op-elements", "0", "--max-request-seconds", "0", "--data-dir", data_dir,
              "--shutdown-timeout", "%ds" % shutdown_s)
    a = Attacker(g.port)
    one(a)
    a.expand(2, 1, HUGE)
    a.send(frame(op_req(a.next_id(), 3, "sum", [2])))  # runs for hours unless cancelled
    time.sleep(0.5)
    g.alive()
    token = g.canary.c.token
    t0 = time.monotonic()
    g.d.proc.send_signal(signal.SIGTERM)
    try:
        code = g.d.proc.wait(timeout=2 * shutdown_s + 3)
    except subprocess.TimeoutExpired:
        raise AssertionError("SIGTERM during a running op: still running %.1f s later "
                             "(--shutdown-timeout %ds)" % (time.monotonic() - t0, shutdown_s))
    assert code == 0, "tensord exited %d:\n%s" % (code, g.d.text()[-3000:])
    # the attacker's request got an answer (cancelled or an error), or the connection closed
    try:
        got = a.recv()
    except (ConnectionResetError, socket.timeout):
        got = None
    if got is not None:
        assert got[0].status.code != pb.OK
    a.close()
    # the snapshot was written: the canary's session resumes with the same bytes
    d2 = Daemon("--data-dir", data_dir)
    try:
        assert d2.port is not None, d2.text()
        g.canary.c.close()
        try:
            g.canary.c = wire.Conn(d2.port, resume=token)
        except wire.ServerError as e:
            raise AssertionError("the canary's session was not restored (%s):\n%s\n%s" % (
                e, g.d.text()[-3000:], d2.text()[-2000:]))
        g.canary.check()
        g.canary.c.close()
    finally:
        assert d2.stop() == 0


# ================================================================= finding 3: memory outside quotas

def test_finding3a_before_hello_a_frame_announcing_a_data_section_is_refused_at_once(guard):
    g = guard()
    r = Raw(g.port, hello=False, timeout=5)
    meta = pb.Request(id=2)
    meta.create.out = 5
    meta.create.dtype = pb.FLOAT32
    meta.create.shape.append(16 << 20)
    m = meta.SerializeToString()
    r.send(HEADER.pack(len(m), 64 << 20) + m)  # no data follows: the refusal must not wait for it
    got = r.recv()
    assert got is not None, "closed without a reply"
    err_reply(got[0], [pb.LIMIT_EXCEEDED, pb.NO_SESSION, pb.PROTOCOL_ERROR])
    assert r.expect_eof(timeout=5)
    r.close()
    g.check()
    g.stop()


def test_finding3a_two_unauthenticated_trickling_connections_hold_no_memory(guard):
    g = guard("--max-bytes", "64M")
    conns = []
    meta = Raw.hello_req().SerializeToString()
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        # a Hello announcing 512 MiB of data, then its bytes one trickle at a time
        s.sendall(HEADER.pack(len(meta), 512 << 20) + meta)
        conns.append(s)
    with g.watching():
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            for s in conns:
                try:
                    s.send(b"\x00" * 4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
            time.sleep(0.05)
    g.assert_served()
    assert g.peak_alloc - g.base_alloc < MiB, \
        "unauthenticated peers held %d bytes" % (g.peak_alloc - g.base_alloc)
    assert g.peak_rss() < 8 * MiB, "RSS rose %d MiB for unauthenticated peers" % (
        g.peak_rss() >> 20)
    for s in conns:
        s.close()
    g.check()
    g.stop()


def _send_all_in_thread(sock, blob):
    err = []

    def run():
        try:
            sock.sendall(blob)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


def test_finding3b_pipelined_creates_behind_a_slow_job_stay_within_the_session_quota(guard):
    quota = 16 * MiB
    g = guard("--session-max-bytes", "16M")
    a = Attacker(g.port, timeout=60)
    # The slow job: an integer matmul (no BLAS) of 2^29 multiply-adds on 10 MiB, honest and
    # within the quota, on a pool worker by any estimate, so the loop goes on reading meanwhile
    a.create(1, np.ones((1024, 1024), dtype=np.int32))
    a.create(2, np.ones((1024, 512), dtype=np.int32))
    slow = op_req(a.next_id(), 3, "matmul", [1, 2])
    data = bytes(64 * MiB)
    creates = []
    for i in range(8):
        c = pb.Request(id=a.next_id())
        c.create.out = 10 + i
        c.create.dtype = pb.FLOAT32
        c.create.shape.append(16 * MiB)
        creates.append(c)
    with g.watching(period=0.01):
        a.send(frame(slow))
        for c in creates:  # 512 MiB in flight, written as fast as the daemon takes it
            t, err = _send_all_in_thread(a.s, frame(c, data))
            t.join(120)
            assert not t.is_alive() and not err, err
        replies = [a.recv() for _ in range(9)]
    assert all(x is not None for x in replies), "connection closed"
    assert [x[0].id for x in replies] == [slow.id] + [c.id for c in creates]  # in order
    assert replies[0][0].status.code == pb.OK, replies[0][0].status.message
    for resp, _ in replies[1:]:  # 64 MiB tensors under a 16 MiB quota
        err_reply(resp, [pb.QUOTA_EXCEEDED, pb.LIMIT_EXCEEDED])
    assert g.peak_alloc - g.base_alloc <= quota + 72 * MiB, \
        "allocated rose %d MiB under a 16 MiB quota" % ((g.peak_alloc - g.base_alloc) >> 20)
    assert g.peak_rss() <= quota + 128 * MiB + QUARANTINE, \
        "RSS peaked %d MiB above its start under a 16 MiB quota" % (g.peak_rss() >> 20)
    a.close_session()
    g.check()
    g.stop()


def _nd_view(a, ndim, size=8):
    """An ndim-dim view of one float64 whose repr is long (-1.2346e-05): 5 MB of text at 7
    dims, 33 MB at 8 (PyTorch summarises to 6 per dim)."""
    a.create(1, np.array([-1.2345678e-05]))
    return a.expand(2, 1, [size] * ndim)


def test_finding3b_sixty_unread_formats_of_a_7_dim_view_stay_bounded(guard):
    quota = 64 * MiB
    g = guard("--session-max-bytes", "64M", "--session-ttl", "1s", "--idle-timeout", "30s")
    a = Attacker(g.port, timeout=10)
    a.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    _nd_view(a, 7)
    blob = b""
    for _ in range(60):
        f = pb.Request(id=a.next_id())
        f.format.handle = 2
        blob += frame(f)
    with g.watching():
        a.send(blob)  # and never read
        time.sleep(2.0)
    g.assert_served()
    assert g.peak_alloc - g.base_alloc <= quota + 40 * MiB, \
        "unread replies held %d MiB" % ((g.peak_alloc - g.base_alloc) >> 20)
    assert g.peak_rss() <= quota + 160 * MiB + QUARANTINE, \
        "RSS peaked %d MiB above its start" % (g.peak_rss() >> 20)
    a.close()  # its session is gone after --session-ttl
    g.check()
    g.stop()


def test_finding3b_one_format_of_an_8_dim_view_does_not_stall_others(guard):
    g = guard()
    a = Attacker(g.port, timeout=60)
    _nd_view(a, 8)
    f = pb.Request(id=a.next_id())
    f.format.handle = 2
    with g.watching():
        resp, _, _ = a.request(f)
    if resp.status.code == pb.OK:
        assert resp.text.startswith("tensor([[[[[[[["), resp.text[:40]
    else:
        err_reply(resp, [pb.LIMIT_EXCEEDED, pb.QUOTA_EXCEEDED])
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


def test_finding3c_matmul_of_expanded_views_copies_nothing_outside_the_quota(guard):
    quota = 16 * MiB
    g = guard("--session-max-bytes", "16M")
    a = Attacker(g.port, timeout=60)
    a.create(1, np.ones((1, 1), dtype=np.float32))
    a.expand(2, 1, [1, 1 << 28])                     # [1, 2^28], stride 0
    a.expand(3, 1, [1 << 28, 1])                     # [2^28, 1], stride 0
    a.op(4, "t", [2])                                # a view of a view: [2^28, 1]
    for x, y in ((2, 3), (2, 4)):
        resp, _, _ = a.request(op_req(a.next_id(), 5, "matmul", [x, y]))
        if resp.status.code == pb.OK:  # computed without copies: then it must be right
            g2 = pb.Request(id=a.next_id())
            g2.get.handle = 5
            _, data = a.ok(g2)
            v = np.frombuffer(data, dtype=np.float32)[0]
            assert abs(v - (1 << 28)) <= (1 << 28) * 1e-2, v
        else:
            err_reply(resp, [pb.QUOTA_EXCEEDED, pb.LIMIT_EXCEEDED])
        fr = pb.Request(id=a.next_id())  # the result, or the failure record kept under it
        fr.free.handles.append(5)
        a.ok(fr)
    assert g.peak_rss() <= quota + 64 * MiB + QUARANTINE, \
        "RSS peaked %d MiB above its start under a 16 MiB quota" % (g.peak_rss() >> 20)
    a.close_session()
    g.check()
    g.stop()


# ================================================================= finding 4: disk

def _save(a, file, pairs):
    r = pb.Request(id=a.next_id())
    r.save.file = file
    for name, h in pairs:
        t = r.save.tensors.add()
        t.name = name
        t.handle = h
    resp, _ = a.call(r)
    return resp


def _load(a, file, pairs):
    r = pb.Request(id=a.next_id())
    r.load.file = file
    for name, h in pairs:
        t = r.load.tensors.add()
        t.name = name
        t.handle = h
    resp, _ = a.call(r)
    return resp


def test_finding4_save_refuses_a_handle_listed_twice(guard, data_dir):
    g = guard("--data-dir", data_dir)
    a = Attacker(g.port)
    one(a)
    a.expand(2, 1, [4 * MiB])  # 4 bytes of quota, 16 MiB logical
    before = dir_bytes(data_dir)
    resp = _save(a, "amp", [("a", 2), ("b", 2), ("c", 2), ("d", 2)])
    err_reply(resp, [pb.INVALID_ARGUMENT, pb.HANDLE_IN_USE])
    assert dir_bytes(data_dir) - before < MiB, "%d bytes written" % (dir_bytes(data_dir) - before)
    a.close_session()
    g.check()
    g.stop()


def test_finding4_save_is_charged_to_the_session_disk_quota(guard, data_dir):
    g = guard("--data-dir", data_dir, "--session-max-disk-bytes", "32M")
    a = Attacker(g.port)
    one(a)
    for h in range(2, 6):
        a.expand(h, 1, [4 * MiB])  # four distinct 16 MiB views of 4 bytes
    resp = _save(a, "one", [("a", 2)])
    assert resp.status.code == pb.OK, resp.status.message  # 16 MiB: within the quota
    resp = _save(a, "four", [("a", 2), ("b", 3), ("c", 4), ("d", 5)])
    err_reply(resp, [pb.QUOTA_EXCEEDED, pb.LIMIT_EXCEEDED], "session_max_disk_bytes")
    assert dir_bytes(data_dir) <= 32 * MiB + MiB, "%d bytes on disk" % dir_bytes(data_dir)
    a.close_session()
    g.check()
    g.stop()
    # the shutdown snapshot of the canary and watcher sessions is charged too: still in bounds
    assert dir_bytes(data_dir) <= 32 * MiB + 2 * MiB


def test_finding4_a_session_cannot_read_or_overwrite_another_sessions_file(guard, data_dir):
    g = guard("--data-dir", data_dir)
    a = Attacker(g.port)
    b = Attacker(g.port)
    a.create(1, np.array([1, 2, 3], dtype=np.int32))
    resp = _save(a, "secret", [("x", 1)])
    assert resp.status.code == pb.OK, resp.status.message
    resp = _load(b, "secret", [("x", 7)])
    assert resp.status.code != pb.OK, "session B loaded session A's file"
    assert resp.status.message
    b.create(1, np.array([9], dtype=np.int32))
    _save(b, "secret", [("x", 1)])  # its own file, or refused: A's must not change either way
    resp = _load(a, "secret", [("x", 8)])
    assert resp.status.code == pb.OK, resp.status.message
    gr = pb.Request(id=a.next_id())
    gr.get.handle = 8
    _, data = a.ok(gr)
    assert np.frombuffer(data, dtype=np.int32).tolist() == [1, 2, 3]
    a.close_session()
    b.close_session()
    g.check()
    g.stop()


# ================================================================= finding 5: auth off by a byte

@pytest.mark.parametrize("content", [b"s3cret\x00tail-of-the-token", b"\x00s3cret", b"\x00",
                                     b"", b"\n", b"s3cret\x01token", b"s3cret\x7ftoken"],
                         ids=["nul", "nul_first", "nul_only", "empty", "newline_only",
                              "control_01", "control_7f"])
def test_finding5_a_bad_token_file_is_a_startup_error_naming_the_file(tmp_path, content):
    path = tmp_path / "token"
    path.write_bytes(content)
    proc = subprocess.Popen([BINARY, "--listen", "127.0.0.1:0", "--auth-token-file", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("tensord started with the token file %r" % content)
    assert proc.returncode == 2, (proc.returncode, err.decode(errors="replace"))
    assert str(path) in err.decode(errors="replace"), err


@pytest.mark.parametrize("content", [b"", b"\x00tail"], ids=["empty", "nul_first"])
def test_finding5_a_sighup_reload_to_an_empty_token_never_accepts_an_empty_token(tmp_path,
                                                                                  content):
    path = tmp_path / "token"
    path.write_bytes(b"a-good-token-0123456789\n")
    d = Daemon("--auth-token-file", str(path))
    try:
        assert d.port is not None, d.text()
        r = Raw(d.port, hello=False, timeout=5)
        resp, _ = r.call(Raw.hello_req(auth="a-good-token-0123456789"))
        assert resp.status.code == pb.OK, resp.status.message
        r.close()
        path.write_bytes(content)
        seen = len(d.text())
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5  # the reload's verdict, logged naming the file
        while str(path) not in d.text()[seen:] and time.monotonic() < deadline \
                and d.proc.poll() is None:
            time.sleep(0.05)
        if d.proc.poll() is not None:  # refusing to run on it is acceptable too
            assert d.proc.returncode == 2 and str(path) in d.text()
            return
        r = Raw(d.port, hello=False, timeout=5)
        got = None
        try:
            r.send(frame(Raw.hello_req(auth="")))
            got = r.recv()
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert got is None or got[0].status.code != pb.OK, "an empty token was accepted"
        r.close()
        assert str(path) in d.text()[seen:], "the refused reload does not name the file"
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        d.proc.wait(10)


# ================================================================= finding 6: hash flooding

def _mix(k):
    """server/base/map.c's old hash (before this round): the splitmix64 finaliser."""
    m = (1 << 64) - 1
    k ^= k >> 30
    k = (k * 0xbf58476d1ce4e5b9) & m
    k ^= k >> 27
    k = (k * 0x94d049bb133111eb) & m
    k ^= k >> 31
    return k


def _unxorshift(y, s):
    x = y
    for _ in range(64 // s + 1):
        x = y ^ (x >> s)
    return x


def _unmix(h):
    m = (1 << 64) - 1
    h = _unxorshift(h, 31)
    h = (h * pow(0x94d049bb133111eb, -1, 1 << 64)) & m
    h = _unxorshift(h, 27)
    h = (h * pow(0xbf58476d1ce4e5b9, -1, 1 << 64)) & m
    return _unxorshift(h, 30)


def colliding_handles(n, table_bits):
    """n handles whose old hash is 0 in its low table_bits bits: all in slot 0 of every table
    up to 2^table_bits slots, so linear probing turns each insert and lookup into a walk."""
    out = []
    j = 1
    while len(out) < n:
        k = _unmix(j << table_bits)
        if k != (1 << 64) - 1:  # 0 cannot come out (the hash maps 0 to 0); both are reserved
            out.append(k)
        j += 1
    assert all(_mix(k) & ((1 << table_bits) - 1) == 0 for k in out[:100])
    return out


def _flood_frames(handles, batch=1000):
    """Batches of pipelined Full frames (a 1-element tensor per handle), then Free frames."""
    batches, rid = [], 10
    for i in range(0, len(handles), batch):
        blob = bytearray()
        for h in handles[i:i + batch]:
            rid += 1
            r = pb.Request(id=rid)
            r.full.out = h
            r.full.dtype = pb.FLOAT32
            r.full.shape.append(1)
            r.full.value.f = 0.0
            blob += frame(r)
        batches.append((bytes(blob), len(handles[i:i + batch])))
    for i in range(0, len(handles), 10000):
        rid += 1
        r = pb.Request(id=rid)
        r.free.handles.extend(handles[i:i + 10000])
        batches.append((frame(r), 1))
    return batches


def _replies(sock, n):
    """Reads n replies; asserts each is OK (parsing only what that takes)."""
    buf, pos = bytearray(), 0
    for _ in range(n):
        while len(buf) - pos < 12:
            chunk = sock.recv(1 << 20)
            assert chunk, "closed"
            buf += chunk
        ml, dl = HEADER.unpack_from(buf, pos)
        while len(buf) - pos < 12 + ml + dl:
            chunk = sock.recv(1 << 20)
            assert chunk, "closed"
            buf += chunk
        resp = pb.Response()
        resp.ParseFromString(bytes(buf[pos + 12:pos + 12 + ml]))
        assert resp.status.code == pb.OK, resp.status.message
        pos += 12 + ml + dl
    assert pos == len(buf)


def _flood(raw, batches):
    """Seconds for the daemon to run the batches (each sent, then its replies read)."""
    t0 = time.monotonic()
    for blob, n in batches:
        raw.s.sendall(blob)
        _replies(raw.s, n)
    return time.monotonic() - t0


def test_finding6_colliding_handles_cost_no_more_than_sequential_ones(guard):
    n = 100000
    # The table grows at 3/4 load from 16 slots: 100,000 handles end in 2^18 slots.
    bits = 18
    assert (n + 1) * 4 > (1 << (bits - 1)) * 3 and (n + 1) * 4 <= (1 << bits) * 3
    evil = _flood_frames(colliding_handles(n, bits))
    plain = _flood_frames(list(range(1 << 20, (1 << 20) + n)))
    g = guard()
    a = Attacker(g.port, timeout=60)
    b = Attacker(g.port, timeout=60)
    seq = _flood(a, plain)
    bad = _flood(b, evil)
    # The same work either way with a keyed hash; the old table took about 11x as long.
    assert bad < 5 * seq + 0.5, "colliding handles: %.2f s, sequential: %.2f s" % (bad, seq)
    a.close_session()
    b.close_session()
    g.check()
    g.stop()


def test_finding6_random_handle_order_keeps_files_with_empty_tensors_loadable(guard, data_dir):
    """A consequence of the keyed table: a session's tensors come out in a different order in
    every process, and so do the entries of its shutdown snapshot. A file whose empty tensor
    shares its data offset with the next tensor must load whatever the order (the reader
    sorted the entries by start offset only, so an empty tensor sorted after its neighbour
    read as a hole: snapshots of sessions holding one failed to restore, by chance)."""
    g = guard("--data-dir", data_dir)
    a = Attacker(g.port)
    a.create(1, np.arange(3, dtype=np.float32))
    a.create(2, np.zeros((0, 5), dtype=np.float32))
    a.create(3, np.arange(4, dtype=np.int64))
    for i, order in enumerate(([("a", 1), ("b", 2), ("c", 3)], [("b", 2), ("a", 1), ("c", 3)],
                               [("z", 2), ("a", 1), ("m", 3)])):
        resp = _save(a, "f%d" % i, order)
        assert resp.status.code == pb.OK, resp.status.message
        resp = _load(a, "f%d" % i, [(n, 10 + k) for k, (n, _) in enumerate(order)])
        assert resp.status.code == pb.OK, (order, resp.status.message)
        fr = pb.Request(id=a.next_id())
        fr.free.handles.extend([10, 11, 12])
        a.ok(fr)
    a.close_session()
    g.check()
    # The snapshot: the canary holds an empty tensor among eight others; four restarts, four
    # keys, four orders.
    token = g.canary.c.token
    g.stop()
    for _ in range(4):
        d2 = Daemon("--data-dir", data_dir)
        try:
            assert d2.port is not None, d2.text()
            try:
                g.canary.c = wire.Conn(d2.port, resume=token)
            except wire.ServerError as e:
                raise AssertionError("the snapshot did not restore (%s):\n%s" % (
                    e, d2.text()[-1500:]))
            g.canary.check()
            g.canary.c.close()
        finally:
            assert d2.stop() == 0


# ================================================================= finding 7: work misjudged

# The finding measured 60-240 ms of loop time at 2^26 elements; at 2^27 (a 512 MiB float32
# result) the same work is twice that, so an op run on the loop shows above the 100 ms bound on
# any machine, while off the loop it costs the other sessions nothing.
N27 = 1 << 27


def _misjudged(a, name):
    """The request making 2^27 elements from small inputs (its inputs created here)."""
    if name == "linspace":
        return op_req(a.next_id(), 9, "linspace", [], min=0.0, max=1.0, dim=N27)
    if name == "repeat":
        a.create(2, np.ones(1 << 13, dtype=np.float32))
        return op_req(a.next_id(), 9, "repeat", [2], dims=[1 << 14])
    if name == "outer":
        a.create(2, np.ones(1 << 13, dtype=np.float32))
        a.create(3, np.ones(1 << 14, dtype=np.float32))
        return op_req(a.next_id(), 9, "outer", [2, 3])
    a.create(2, np.ones((1 << 13, 1), dtype=np.float32))
    a.create(3, np.ones((1, 1 << 14), dtype=np.float32))
    return op_req(a.next_id(), 9, "mm", [2, 3])


@pytest.mark.parametrize("name", ["linspace", "repeat", "outer", "thin_mm"])
def test_finding7_ops_making_2_pow_27_elements_from_small_inputs_run_off_the_loop(guard, name):
    g = guard()
    a = Attacker(g.port, timeout=60)
    r = _misjudged(a, name)
    with g.watching(period=0.002):  # probing all the time: a stall on the loop is seen whole
        for _ in range(3):
            r.id = a.next_id()
            resp, _, _ = a.request(r)
            assert resp.status.code == pb.OK, resp.status.message
            m = pb.Request(id=a.next_id())
            m.get.handle = 9
            m.get.meta_only = True
            resp, _ = a.ok(m)
            assert resp.tensor.nbytes == 4 * N27
            fr = pb.Request(id=a.next_id())
            fr.free.handles.append(9)
            a.ok(fr)
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


# ================================================================= finding 8: liveness

def _http(port, path, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


def test_finding8_healthz_answers_while_64_idle_http_connections_are_held(guard):
    g = guard("--metrics-listen", "127.0.0.1:0")
    m = re.search(r"event[=\":]+metrics_listening.*?addr[=\":]+127\.0\.0\.1:(\d+)", g.d.text())
    assert m, g.d.text()
    mport = int(m.group(1))
    idle = []
    try:
        for i in range(64):
            s = socket.create_connection(("127.0.0.1", mport), timeout=5)
            if i % 2:
                s.sendall(b"GET /metr")  # half a request line, then nothing
            idle.append(s)
        t0 = time.monotonic()
        reply = _http(mport, b"/healthz")
        assert reply.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"], reply[:200]
        assert time.monotonic() - t0 < 3
        # idle ones are closed after about 1 s: all within twice that plus slack
        deadline = time.monotonic() + 5
        for s in idle:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("an idle HTTP connection was kept 5 s")
    finally:
        for s in idle:
            s.close()
    reply = _http(mport, b"/healthz")
    assert b" 200 " in reply.split(b"\r\n", 1)[0] + b" ", reply[:200]
    g.check()
    g.stop()


# ================================================================= finding 9: make test hung

def test_finding9_a_client_that_never_reads_is_closed_in_time_and_its_memory_returns(guard):
    """The attack behind the hung make test (tests/python/test_faults.py has the original,
    rewritten with the same bounds): Gets of a non-contiguous 4 MiB tensor pipelined by a
    client that never reads. Its connection is closed within twice the write clock's worst
    case; nothing here waits longer than a fixed bound, and the drain is capped."""
    t_s = 1.0
    g = guard("--idle-timeout", "1s", "--session-max-bytes", "64M", "--session-ttl", "1s")
    a = Attacker(g.port)
    a.create(1, np.ones((1024, 1024), dtype=np.float32))
    a.op(2, "t", [1])  # not contiguous: each Get is a 4 MiB copy
    a.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    a.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    a.s.setblocking(False)
    sent, blocked, closed, t_end = 0, False, False, time.monotonic() + 10
    with g.watching():
        while not blocked and time.monotonic() < t_end:
            r = pb.Request(id=a.next_id())
            r.get.handle = 2
            f = frame(r)
            try:
                n = a.s.send(f)
            except BlockingIOError:
                break
            except (ConnectionResetError, BrokenPipeError):
                closed = True  # closed for not reading while we were still sending
                break
            sent += 1
            blocked = n < len(f)
        stopped = time.monotonic()
        while "reason=replies_not_read" not in g.d.text():
            assert time.monotonic() - stopped < 2 * (2 * t_s) + 2, "not closed in time"
            time.sleep(0.05)
    assert sent * 4 * MiB > 64 * MiB, sent  # more than the session quota asked for
    g.assert_served()
    assert g.peak_alloc - g.base_alloc <= 64 * MiB + 96 * MiB
    a.s.settimeout(0.5)
    got, t_end = 0, time.monotonic() + 10
    while not closed and got < 64 * MiB and time.monotonic() < t_end:
        try:
            chunk = a.s.recv(MiB)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += len(chunk)
    assert closed, "still open after the close was logged"
    a.close()
    g.check()
    g.stop()


# ======================================================= attack report after the merge: 2 and 4

def _pipeline(a, frames, n):
    """Sends `frames` (bytes) from a thread while this one reads n replies; returns them as
    (Response, data) pairs. A reply missing within the socket timeout fails the test."""
    errors = []

    def send():
        try:
            a.send(frames)
        except OSError as e:  # reported below, after the replies that did come
            errors.append(repr(e))
    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = []
    for _ in range(n):
        g = a.recv()
        assert g is not None, "the attacker's connection was closed after %d replies (%s)" % (
            len(got), errors)
        got.append(g)
    t.join(30)
    assert not t.is_alive() and not errors, errors
    return got


def test_report2_twenty_thousand_pipelined_cheap_sums_leave_other_sessions_served(guard):
    """Each sum of a 60,000-element expanded view is under the inline bound, but 20,000 of
    them pipelined held the loop 4.3 s: no budget per loop turn. Now the inline jobs of a turn
    share a budget, and a session that spent it waits for the next turn while others are
    served: the watcher's tiny ops reply within TINY_OP_S throughout, and every sum is still
    answered, in order, with the right value."""
    n = 20000
    g = guard()
    a = Attacker(g.port, timeout=30)
    one(a)
    a.expand(2, 1, [60000])
    reqs = []
    first = a.rid + 1
    for i in range(n):
        r = op_req(a.next_id(), 10 + i % 2, "sum", [2])
        if i > 0:
            r.free_first.append(10 + (i - 1) % 2)  # the previous sum's output
        reqs.append(frame(r))
    with g.watching():
        got = _pipeline(a, b"".join(reqs), n)
    assert [x[0].id for x in got] == list(range(first, first + n))  # in order, none lost
    assert all(x[0].status.code == pb.OK for x in got), [
        x[0].status.message for x in got if x[0].status.code != pb.OK][:3]
    g.assert_served()
    last = pb.Request(id=a.next_id())
    last.get.handle = 10 + (n - 1) % 2
    _, data = a.ok(last)
    assert np.frombuffer(data, dtype=np.float32).tolist() == [60000.0]  # 60,000 ones
    a.close_session()
    g.check()
    g.stop()


def test_report2_three_hundred_thousand_pipelined_pings_leave_other_sessions_served(guard):
    """300,000 pipelined Pings held the loop 871 ms: each is cheap, but every request costs
    the turn budget a fixed overhead, so they are answered over many turns."""
    n = 300000
    g = guard()
    a = Attacker(g.port, timeout=30)
    first = a.rid + 1
    blob = b"".join(frame(pb.Request(id=first + i, ping=pb.Ping())) for i in range(n))
    a.rid += n
    with g.watching():
        got = _pipeline(a, blob, n)
    assert [x[0].id for x in got] == list(range(first, first + n))
    assert all(x[0].status.code == pb.OK for x in got)
    g.assert_served()
    a.close_session()
    g.check()
    g.stop()


def test_report4_handle_table_entries_are_charged_to_the_session_quota(guard):
    """A session held 1,000,000 expand views of one 4-byte tensor (313 MB of RSS) while its
    quota said 4 bytes. Every handle table entry is now charged a fixed overhead: under a 1 MiB
    session quota the views stop with QUOTA_EXCEEDED, after at most 1 MiB / 256 of them, and
    Stats' session_bytes counts the entries (compared between Stats replies, so whatever a
    request itself is charged while it runs cancels out)."""
    g = guard("--session-max-bytes", "1M")
    a = Attacker(g.port)
    one(a)

    def session_bytes():
        st, _ = a.ok(pb.Request(id=a.next_id(), stats=pb.Stats()))
        return st.stats.session_bytes
    base = session_bytes()
    a.expand(2, 1, [1 << 20])
    entry = session_bytes() - base  # one view: its entry, and no storage
    assert 256 <= entry <= 4096, entry
    made, resp = 1, None
    for h in range(3, 20000):
        resp, _ = a.call(op_req(a.next_id(), h, "expand", [1], dims=[1 << 20]))
        if resp.status.code != pb.OK:
            break
        made += 1
    err_reply(resp, [pb.QUOTA_EXCEEDED], "session memory quota exceeded")
    assert made <= MiB // 256, made
    assert made >= MiB // entry - 8, (made, entry)  # the quota, not something else, stopped it
    assert session_bytes() == base + entry * made
    # freeing the views gives their charge back
    fr = pb.Request(id=a.next_id())
    fr.free.handles.extend(range(2, 2 + made))
    a.ok(fr)
    assert session_bytes() == base
    a.close_session()
    g.check()
    g.stop()
