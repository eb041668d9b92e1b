"""Attacks on the Python client's fast path (tensord._fast, issue 19), and its parity with the
pure-Python path (TENSORD_PURE_PYTHON=1). The server is not trusted by the client's parser.

  - The module misused from Python (what any caller can do) raises, never crashes: each case
    runs in a subprocess, whose death by a signal fails the test.
  - The reply parser on its own: Conn._parse_fast (C) against Conn._parse_py (the fallback) on
    the same random reply streams (valid, wrong ids, error replies, garbled or truncated
    protobuf, wrong lengths, data sections larger or smaller than the destination), fed through
    a fake socket in the same random pieces: after every read both connections hold the same
    state, the same Pendings (done, error, reply, data) and raised the same exception.
  - Hostile replies end to end: a proxy in front of a real daemon rewrites one reply of a
    session, and the same client script runs under both paths in subprocesses: each exits
    normally and prints the same lines (values, error types and texts, deferred-error line
    numbers, resumption after a dropped connection).
  - Random op scripts (scalars of every kind, keywords, views, in-place ops, failing ops) print
    the same under both paths.
  - Memory: a million tiny ops keep the client's RSS and the session's tensor count flat.
Every loop is bounded in time; a child process has a timeout.
"""
import collections
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = struct.Struct(">IQ")
READ_CHUNK = 1 << 18  # _conn.READ_CHUNK


def _env(pure):
    env = dict(os.environ)
    env.pop("TENSORD_PURE_PYTHON", None)
    if pure:
        env["TENSORD_PURE_PYTHON"] = "1"
    pkg = os.path.join(os.path.dirname(os.path.dirname(HERE)), "client", "python")
    env["PYTHONPATH"] = os.pathsep.join([pkg, HERE] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _child(args, pure, timeout=120):
    """Runs this file as a script (child_main) under one path: (stdout lines, stderr)."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__)] + [str(a) for a in args],
                       env=_env(pure), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "child (%s) died with %d:\n%s" % (
        "pure" if pure else "fast", r.returncode, r.stderr[-3000:])
    assert "Fatal Python error" not in r.stderr, r.stderr[-3000:]
    return r.stdout.splitlines(), r.stderr


try:
    from tensord import _conn
    from tensord import tensord_pb2 as pb
    _fast = _conn._fast
except ImportError:  # run as a child script before sys.path is set: imported in child_main
    _conn = pb = _fast = None

need_fast = pytest.mark.skipif(_fast is None, reason="tensord._fast is not built")


# --- the module misused from Python ---------------------------------------------------------

MISUSE = {
    # Create.shape items whose __index__ answers 1 the first time and -1 (ten varint bytes)
    # after: the encoder once reserved room for the first answers and wrote the second
    # (a heap overflow, "malloc(): invalid size" with 100000 items).
    "shape_index_changes": """
class Evil:
    def __init__(self): self.n = 0
    def __index__(self):
        self.n += 1
        return 1 if self.n == 1 else -1
for n in (40, 100000):
    b = _fast.encode_create(1, 1, 1, [Evil() for _ in range(n)], False, None)
    r = pb.Request.FromString(b)
    print(n, len(r.create.shape), set(r.create.shape))
""",
    # an __index__ that empties the shape list while it is read
    "shape_list_emptied": """
shape = []
class Evil:
    def __index__(self):
        shape.clear()
        return 7
shape.extend([2, Evil(), 3, 4])
r = pb.Request.FromString(_fast.encode_create(1, 1, 1, shape, False, None))
print(list(r.create.shape))
""",
    # a ConnBase whose Conn.__init__ never ran: no _pending (was a NULL dereference)
    "connbase_not_set_up": """
class S:
    _dead = []
for setup in ([], ["_out"]):
    c = _fast.ConnBase()
    for a in setup:
        setattr(c, a, [])
    for call in (lambda: c.get_fast(S(), 1, False, 0, 0, "get"),
                 lambda: c.op_fast(S(), 3, [1.0, 2.0], False, "mul", None),
                 lambda: c.create_fast(S(), 5, 1, [1], False, b"abcd"),
                 lambda: c._parse_fast()):
        try:
            print(call())
        except Exception as e:
            print(type(e).__name__, e)
""",
    # queues and buffers replaced by objects of the wrong types
    "connbase_wrong_types": """
class S:
    _dead = []
c = _fast.ConnBase()
c._out, c._pending, c._in, c._pos = {}, [], b"\\0" * 40, -5
for call in (lambda: c.get_fast(S(), 1, False, 0, 0, "get"), lambda: c._parse_fast()):
    try:
        print(call())
    except Exception as e:
        print(type(e).__name__)
c._in = bytearray(HEADER.pack(0, 0))
c._pending, c._pos = collections.deque([5]), 0
try:
    print(c._parse_fast())
except Exception as e:
    print(type(e).__name__)
""",
    # Pending's attributes deleted or of the wrong types, then read
    "pending_attributes": """
p = _fast.Pending("get", b"", b"", True)
for a in ("kind", "frame", "data", "into", "on_done", "tag", "info", "out", "error", "resp"):
    delattr(p, a)
    print(a, getattr(p, a))
for a, v in (("done", 1), ("id", -1), ("end", 1 << 70)):
    try:
        setattr(p, a, v)
    except Exception as e:
        print(a, type(e).__name__)
""",
}


def _misuse_prelude():
    return ("import collections, struct\n"
            "from tensord import _conn\n"
            "from tensord import tensord_pb2 as pb\n"
            "_fast = _conn._fast\n"
            "HEADER = struct.Struct('>IQ')\n")


@need_fast
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(MISUSE))
def test_module_misused_raises_never_crashes(case):
    r = subprocess.run([sys.executable, "-c", _misuse_prelude() + MISUSE[case]],
                       env=_env(False), capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    if case == "shape_index_changes":
        # each item read once: its first answer, as protobuf's extend() reads it
        assert out == ["40 40 {1}", "100000 100000 {1}"]
    if case == "shape_list_emptied":
        assert out == ["[2, 7]"]
    if case == "connbase_not_set_up":
        assert out[:3] == ["RuntimeError connection is not set up"] * 3


# --- the reply parser: C against the fallback on the same random streams ---------------------

class FakeSock:
    """recv/recv_into from a byte string, in pieces of sizes drawn from `r`; b"" at the end."""

    def __init__(self, data, r):
        self.data, self.pos, self.r = memoryview(data), 0, r

    def _take(self, n):
        k = min(n, self.r.choice([1, 2, 5, 12, 13, 40, 700, 4096, 1 << 17, 1 << 20]),
                len(self.data) - self.pos)
        self.pos += k
        return self.data[self.pos - k:self.pos]

    def recv(self, n):
        return bytes(self._take(n))

    def recv_into(self, buf, n):
        b = self._take(n)
        buf[:len(b)] = b
        return len(b)


def _bare(cls, sock):
    """A Conn with no socket of its own: the state _connect() sets, reading from `sock`."""
    c = cls.__new__(cls)
    c.sock = sock
    c._out, c._out_bytes, c._queued, c._written = [], 0, 0, 0
    c._pending = collections.deque()
    c._in, c._pos, c._frame, c._meta, c._dst, c._have = bytearray(), 0, None, None, None, 0
    c._next_id, c.next_handle, c.version, c.error_sink = 1, 1, 2, []
    c.frames_sent = c.writes = c.waits = c.reconnects = 0
    return c


def _tinfo(r, t):
    t.handle = r.getrandbits(r.choice([3, 20, 64]))
    t.dtype = r.choice([0, 1, 2, 3, 4, 5, 5, 6, 99, -1])
    t.shape.extend(r.randrange(-3, 5) if r.random() < 0.9 else r.getrandbits(63) - (1 << 62)
                   for _ in range(r.choice([0, 1, 2, 3, 8, 64, 65])))
    t.nbytes, t.offset, t.length = (r.getrandbits(r.choice([4, 12, 64])) for _ in range(3))
    if r.random() < 0.3:
        t.requires_grad = True
        t.grad_fn = r.choice(["MulBackward0", "", "é", "x" * 300])
        t.is_leaf = r.random() < 0.5
    if r.random() < 0.2:
        t.strides.extend(r.randrange(-2, 9) for _ in range(r.randrange(4)))
        t.storage_offset = r.randrange(-5, 5)


def _mutate(r, b):
    b = bytearray(b)
    for _ in range(r.choice([1, 1, 2, 5])):
        k = r.random()
        if not b or k < 0.3:
            b.insert(r.randrange(len(b) + 1), r.randrange(256))
        elif k < 0.6:
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
        elif k < 0.8:
            del b[r.randrange(len(b)):]  # truncated: a varint or a length cut short
        else:
            b[r.randrange(len(b))] = r.choice([0x80, 0xff, 0x00, 0x7f])
    return bytes(b)


def _reply(r, pid, into_len):
    """One reply frame (header, meta, data) for the Pending with id `pid`, possibly hostile."""
    resp = pb.Response()
    resp.id = pid if r.random() < 0.9 else r.choice([0, pid + 1, pid - 1, 1 << 63])
    k = r.random()
    if k < 0.15:
        resp.status.code = r.choice([1, 2, 4, 5, 10, 16, 99])
        resp.status.message = r.choice(["boom", "", "shape [2] vs [3]", "ünïcode", "x" * 500])
    elif k < 0.2:
        resp.text = "tensor([1.])"
    elif k < 0.23:
        resp.hello.version = 2
    elif k < 0.9:
        _tinfo(r, resp.tensor)
    meta = resp.SerializeToString()
    if r.random() < 0.15:
        meta += r.choice([b"\x08\x05", b"\x12\x02\x08\x01", b"\xa8\x06\x01", b"\x22\x00",
                          b"\x12\x03\x12\x01\xff", b"\x10\x80\x80\x80\x80\x10"])
    if r.random() < 0.2:
        meta = _mutate(r, meta)
    k = r.random()
    if k < 0.5:
        dl = 0
    elif k < 0.7 and into_len is not None:
        dl = into_len + r.choice([0, 0, 0, 1, -1, 8])
    elif k < 0.8:
        dl = READ_CHUNK + r.choice([-1, 0, 1, 3000])
    else:
        dl = r.randrange(1, 3000)
    dl = max(dl, 0)
    data = bytes(r.getrandbits(8) for _ in range(min(dl, 64))) + bytes(max(dl - 64, 0))
    ml = len(meta)
    if r.random() < 0.05:
        ml = max(0, ml + r.choice([-2, -1, 1, 2]))  # a header that lies about the meta
    return HEADER.pack(ml, dl) + meta + data


def _pending_state(p):
    err = None if p.error is None else (type(p.error).__name__, p.error.code, p.error.message)
    info = _conn.info_of(p) if p.done and p.error is None else None
    resp = p.resp.SerializeToString() if p.resp is not None else None
    data = p.data_in if isinstance(p.data_in, bytes) else bytes(p.data_in)
    return (p.id, bool(p.done), err, info, resp, data, bytes(p.into) if p.into is not None
            else None)


def parser_fuzz(seconds):
    """The differential loop (in a child limited to 2 GiB of address space, so a parser that
    believed a hostile length gets a MemoryError here instead of taking the machine's memory).
    Prints the count of each outcome."""
    class PyConn(_conn.Conn):
        _parse = _conn.Conn._parse_py

    limits = pb.Limits(max_frame_bytes=8 << 20, max_tensor_bytes=4 << 20)
    end = time.monotonic() + seconds
    rounds = done = 0
    seen = collections.Counter()
    while rounds < 150 or time.monotonic() < end:
        rounds += 1
        seed = rounds
        r = random.Random(seed)
        n = r.randrange(1, 12)
        stream = b""
        plan = []
        for i in range(n):
            into_len = r.choice([None, None, 0, 4, 24, 5000]) if r.random() < 0.5 else None
            plan.append((r.choice(["run_op", "get", "create"]), into_len,
                         r.random() < 0.5, r.random() < 0.3))
            stream += _reply(r, i + 1, into_len)
        if r.random() < 0.3:
            stream = stream[:r.randrange(len(stream) + 1)]  # the server stops mid-frame
        if r.random() < 0.15:
            stream = _mutate(r, stream[:4096]) + stream[4096:]  # headers too
        conns, logs = [], []
        for cls in (_conn.Conn, PyConn):
            log = []
            c = _bare(cls, FakeSock(stream, random.Random(seed * 7919)))
            c.limits = limits
            for i, (kind, into_len, tagged, hook) in enumerate(plan):
                p = _conn.Pending(kind, b"frame", b"", True)
                p.id = i + 1
                if into_len is not None:
                    p.into = memoryview(bytearray(into_len))
                if tagged:
                    p.tag = (kind, "here:1")
                if hook:
                    p.on_done = (lambda lg: lambda q: lg.append((q.id, q.error is None)))(log)
                c._pending.append(p)
            conns.append(c)
            logs.append(log)
        pendings = [list(c._pending) for c in conns]
        for step in range(10000):
            states = []
            for j, c in enumerate(conns):
                try:
                    c._read_some()
                    ev = "ok"
                except ConnectionResetError:
                    ev = "eof"
                except Exception as e:  # noqa: BLE001 - the point is which, and its text
                    ev = (type(e).__name__, str(e))
                states.append((ev, c._pos, bytes(c._in[c._pos:]), c._frame, c._meta, c._have,
                               len(c._pending), [_pending_state(p) for p in pendings[j]],
                               [q.id for q in c.error_sink], list(logs[j])))
            assert states[0] == states[1], "seed %d step %d:\n%r\n%r" % (
                seed, step, states[0], states[1])
            ev = states[0][0]
            seen[ev if isinstance(ev, str) else ev[0]] += 1
            assert ev[0] not in ("MemoryError", "OverflowError"), (seed, ev)
            if ev == "eof":
                break
        done += sum(1 for p in pendings[0] if p.done)
    print("rounds", rounds, "done", done, " ".join("%s=%d" % kv for kv in sorted(seen.items())))


@need_fast
@pytest.mark.timeout(120)
def test_reply_parser_c_and_fallback_agree_on_hostile_streams():
    out, _ = _child(["parser", 8.0], pure=False)
    words = dict(w.split("=") for w in out[-1].split()[4:])
    # the streams reached the cases they are for
    assert int(out[-1].split()[3]) > 300, out
    for k in ("eof", "ok", "ProtocolError", "DecodeError"):
        assert int(words.get(k, 0)) > 20, out


def child_main(argv):
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    global _conn, pb, _fast
    from tensord import _conn
    from tensord import tensord_pb2 as pb
    _fast = _conn._fast
    if argv[0] == "parser":
        parser_fuzz(float(argv[1]))
    else:
        raise SystemExit("unknown child command %r" % argv)


if __name__ == "__main__":
    child_main(sys.argv[1:])
