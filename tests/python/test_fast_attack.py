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


# --- hostile replies end to end: a tampering proxy, the same script under both paths --------

class Tamper:
    """A proxy in front of the daemon for one session. The reply frames of its first connection
    (of every one, with `every`) go through edit(n, meta, data) -> (bytes to send, close) (n = 0
    is the Hello's); `close` ends that connection after those bytes (the client sees them, then
    EOF). Later connections (the session resumed) pass through untouched. A connection whose
    server side is quiet for `quiet` seconds is closed, so a client left waiting by a lie
    resumes instead of hanging."""

    def __init__(self, port, edit, every=False, quiet=2.0):
        self.target = ("127.0.0.1", port)
        self.edit, self.every, self.quiet = edit, every, quiet
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.conns = 0
        self.socks = []
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            srv = socket.create_connection(self.target)
            first = self.conns == 0 or self.every
            self.conns += 1
            self.socks += [c, srv]
            threading.Thread(target=self._up, args=(c, srv), daemon=True).start()
            threading.Thread(target=self._down, args=(srv, c, first), daemon=True).start()

    @staticmethod
    def _up(c, srv):
        try:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                srv.sendall(d)
        except OSError:
            pass
        try:
            srv.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _down(self, srv, c, tamper):
        buf, n = b"", 0
        srv.settimeout(self.quiet)
        try:
            while True:
                d = srv.recv(1 << 16)
                if not d:
                    break
                if not tamper:
                    c.sendall(d)
                    continue
                buf += d
                while len(buf) >= 12:
                    ml, dl = HEADER.unpack_from(buf)
                    if len(buf) < 12 + ml + dl:
                        break
                    meta, data = buf[12:12 + ml], buf[12 + ml:12 + ml + dl]
                    buf = buf[12 + ml + dl:]
                    out, close = self.edit(n, meta, data)
                    n += 1
                    c.sendall(out)
                    if close:
                        raise socket.timeout
        except (OSError, socket.timeout):
            pass
        for sk, how in ((c, socket.SHUT_WR), (srv, socket.SHUT_RDWR)):
            try:
                sk.shutdown(how)
            except OSError:
                pass

    def drop(self):
        """Cuts every connection now, as a network failure would."""
        for sk in list(self.socks):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.listener.close()
        for sk in self.socks:
            try:
                sk.close()
            except OSError:
                pass


def frame(meta, data=b"", ml=None, dl=None):
    return HEADER.pack(len(meta) if ml is None else ml, len(data) if dl is None else dl) + \
        meta + data


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7f | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _resp(meta):
    r = pb.Response()
    r.ParseFromString(meta)
    return r


def _with(change):
    """An edit of the reply's Response message (change(resp) alters it in place)."""
    def edit(meta, data):
        r = _resp(meta)
        change(r)
        return frame(r.SerializeToString(), data), False
    return edit


def _shape(dims):
    def change(r):
        del r.tensor.shape[:]
        r.tensor.shape.extend(dims)
    return change


# The program below sends: 1 Create, 2 mul, 3 add, 4 sum, 5 Get z, 6 Get y, 7 sub, 8 Get w.
# Each case rewrites the reply to one of them: (reply number, edit(meta, data) -> (bytes, close)).
HOSTILE = {
    "untouched": (0, lambda m, d: (frame(m, d), False)),
    # a Hello that claims a version past INT_MAX (ConnBase.version was a C int: truncated to
    # -1 with a RuntimeWarning, so the paths disagreed on free_first)
    "hello_version_huge": (0, _with(lambda r: setattr(r.hello, "version", (1 << 32) - 1))),
    "garbled_protobuf": (2, lambda m, d: (frame(bytes(random.Random(2).getrandbits(8)
                                                       for _ in range(23))), False)),
    "truncated_varint_id": (5, lambda m, d: (frame(b"\x08\xac"), False)),
    "truncated_varint_in_shape": (5, lambda m, d: (frame(m + b"\x22\x04\x1a\x02\x02\x80", d),
                                                   False)),
    "wrong_id": (2, _with(lambda r: setattr(r, "id", r.id + 7))),
    "next_request_id": (3, _with(lambda r: setattr(r, "id", r.id + 1))),
    "id_zero_refusal": (2, lambda m, d: (frame(pb.Response(status=pb.Status(
        code=pb.PROTOCOL_ERROR, message="frame refused")).SerializeToString()), False)),
    "reply_for_no_request": (8, lambda m, d: (frame(m, d) + frame(m, d), False)),
    "huge_meta_length": (5, lambda m, d: (frame(m[:3], ml=0xFFFFFFFF), True)),
    "huge_data_length": (5, lambda m, d: (frame(m, d[:8], dl=1 << 62), True)),
    "data_length_over_limits": (5, lambda m, d: (frame(m, d[:8], dl=(1 << 30) + 1), True)),
    "data_u64_max": (5, lambda m, d: (frame(m, b"", dl=(1 << 64) - 1), True)),
    "data_larger_than_asked": (5, lambda m, d: (frame(m, d + b"\x01" * 8), False)),
    "data_shorter_than_asked": (5, lambda m, d: (frame(m, d[:4]), False)),
    "data_over_read_chunk": (6, lambda m, d: (frame(m, d + bytes(READ_CHUNK + 1)), False)),
    "op_reply_with_data": (2, lambda m, d: (frame(m, b"\x07" * 16), False)),
    "dims_64": (5, _with(_shape([1] * 62 + [2, 1]))),
    "dims_65": (5, _with(_shape([1] * 63 + [2, 1]))),
    "dims_huge": (5, _with(_shape([1 << 62, 1 << 62]))),
    "dims_negative": (5, _with(_shape([-2, 1]))),
    "dtype_unknown": (5, _with(lambda r: setattr(r.tensor, "dtype", 99))),
    "length_lies": (5, _with(lambda r: setattr(r.tensor, "length", r.tensor.nbytes + 4))),
    "code_wraps_to_ok": (2, lambda m, d: (frame(m + b"\x12\x06\x08" + varint(1 << 32)), False)),
    "error_reply": (3, _with(lambda r: (r.ClearField("tensor"), setattr(
        r.status, "code", pb.SHAPE_MISMATCH), setattr(r.status, "message", "boom")))),
    "error_reply_bad_utf8": (3, lambda m, d: (frame(m + b"\x12\x06\x08\x02\x12\x02\xff\xfe"),
                                              False)),
    "ok_with_unicode_message": (2, _with(lambda r: setattr(r.status, "message", "ünï"))),
    "unknown_field": (2, lambda m, d: (frame(m + b"\xa8\x06\x01", d), False)),
    "status_twice": (2, lambda m, d: (frame(m + b"\x12\x00", d), False)),
    "tensor_twice": (2, lambda m, d: (frame(m + b"\x22\x02\x08\x05", d), False)),
    "text_for_get": (5, _with(lambda r: setattr(r, "text", "x"))),
    "hello_for_op": (2, _with(lambda r: setattr(r.hello, "version", 2))),
    "cut_mid_frame": (6, lambda m, d: (frame(m, d)[:len(m) // 2 + 12], True)),
    "dropped_before_reply": (3, lambda m, d: (b"", True)),
}


def _fuzz_case(seed):
    r = random.Random(seed)
    k = r.randrange(1, 9)

    def edit(meta, data):
        meta = _mutate(r, meta)
        ml, dl = len(meta), len(data)
        if r.random() < 0.3:
            ml = max(0, ml + r.choice([-3, -1, 1, 2, 40]))
        if r.random() < 0.2:
            dl = r.choice([dl + 1, max(dl - 1, 0), 1 << 40, 1 << 63])
        return frame(meta, data, ml=ml, dl=dl), r.random() < 0.5
    return k, edit


def _hostile_cases():
    cases = dict(HOSTILE)
    for seed in range(16):
        cases["fuzz%d" % seed] = _fuzz_case(seed)
    return cases


def program(addr):
    """The client script each hostile case runs (its lines are in the deferred errors)."""
    import tensord

    def step(f):
        try:
            print("  ", f())
        except Exception as e:  # noqa: BLE001 - the point is which, and its text
            print("  ", type(e).__name__, str(e)[:300])

    s = tensord.Session(addr=addr)
    x = s.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2
    z = (y + x).sum(dim=0)
    step(lambda: z.tolist())
    step(lambda: (tuple(y.shape), str(y.dtype), y.tolist()))
    w = y - 1
    step(lambda: w.tolist())
    step(lambda: (s._c._pending and len(s._c._pending), s._c._frame))


@need_fast
@pytest.mark.timeout(300)
def test_hostile_replies_same_under_both_paths(daemon):
    names = sorted(_hostile_cases())
    outs = []
    for pure in (False, True):
        cases = _hostile_cases()  # fresh: the fuzz cases' generators are stateful
        proxies = []
        for name in names:
            k, edit = cases[name]
            proxies.append(Tamper(daemon, (lambda k, e: lambda n, m, d: e(m, d) if n == k else
                                           (frame(m, d), False))(k, edit)))
        try:
            out, err = _child(["hostile"] + ["%s=127.0.0.1:%d" % (n, p.port)
                                             for n, p in zip(names, proxies)], pure, timeout=280)
            assert "Truncation" not in err, err[-3000:]  # of a C member
        finally:
            for p in proxies:
                p.close()
        outs.append(out)
    fast, pure = outs
    assert fast == pure, "\n".join("%-60s | %s" % (a, b) for a, b in zip(fast, pure) if a != b)
    by = {}
    name = None
    for line in fast:
        if line.startswith("== "):
            name = line[3:]
            by[name] = []
        else:
            by[name].append(line.strip())
    assert by["untouched"][:3] == ["[12.0, 18.0]", "((2, 2), 'tensord.float32', [[2.0, 4.0], "
                                   "[6.0, 8.0]])", "[[1.0, 3.0], [5.0, 7.0]]"], by["untouched"]
    assert by["wrong_id"][0].startswith("ProtocolError reply for request 10 arrived when 3 was"), by
    assert "over the server's limits" in by["huge_data_length"][0], by["huge_data_length"]
    assert "over the server's limits" in by["data_u64_max"][0], by["data_u64_max"]
    # data that contradicts the shape is refused: not wrong values, not lists until memory
    # runs out (a shape of [2**62, 2**62] built 2**62 lists)
    for case in ("data_larger_than_asked", "data_shorter_than_asked", "dims_huge",
                 "dims_negative"):
        assert by[case][0].startswith("ProtocolError the reply holds"), (case, by[case])
    # the session resumed and the values are right
    for case in ("huge_meta_length", "cut_mid_frame", "dropped_before_reply"):
        assert by[case][:3] == by["untouched"][:3], (case, by[case])
    # the deferred error names the line of `z = (y + x).sum(dim=0)`
    assert by["error_reply"][0].startswith("TensorError") and "boom" in by["error_reply"][0]
    assert "test_fast_attack.py:%d" % _line_of("    z = (y + x).sum(dim=0)") in \
        by["error_reply"][0], by["error_reply"]


def _line_of(text):
    with open(os.path.abspath(__file__)) as f:
        return [line.rstrip("\n") for line in f].index(text) + 1


# --- random op scripts: the same output under both paths -------------------------------------

def random_script(addr, seed, n_ops):
    """A random program of ops on a few tensors (scalars of every kind, keywords, views,
    in-place ops, failing ops), printing values and errors as it goes."""
    import tensord
    r = random.Random(seed)
    s = tensord.Session(addr=addr)
    pool = [s.tensor([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]]), s.tensor([1, 2, 3]),
            s.tensor([[True, False, True], [False, False, True]]), s.tensor([2.0, 0.5, -3.0]),
            s.tensor(7.0)]
    scalars = [0, 1, -3, 2.5, -0.0, True, False, 1 << 40, -(1 << 63), (1 << 63) - 1, 1 << 70,
               float("inf"), float("nan"), 1e308]
    binary = ["__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__",
              "__pow__", "__radd__", "__rsub__", "__rmul__", "__lt__", "__ge__", "__eq__",
              "__and__", "__or__", "__matmul__"]
    unary = ["neg", "abs", "exp", "sqrt", "sigmoid", "relu", "floor", "t", "contiguous",
             "clone", "detach", "float", "long", "bool"]
    printed = 0

    def show(tag, f):
        nonlocal printed
        printed += 1
        try:
            print(tag, f())
        except Exception as e:  # noqa: BLE001
            print(tag, type(e).__name__, str(e)[:300])

    for i in range(n_ops):
        a = r.choice(pool)
        k = r.random()
        try:
            if k < 0.35:
                b = r.choice(pool + scalars)
                t = getattr(a, r.choice(binary))(b)
            elif k < 0.55:
                t = getattr(a, r.choice(unary))()
            elif k < 0.7:
                op = r.choice(["sum", "mean", "amax", "std", "prod"])
                kw = {}
                if r.random() < 0.7:
                    kw["dim"] = r.choice([0, -1, 1, 2, (0,), [0, 1]])
                if r.random() < 0.5:
                    kw["keepdim"] = r.random() < 0.5
                if op == "std" and r.random() < 0.5:
                    kw["correction"] = r.choice([0, 1, 2.5, True])
                t = getattr(a, op)(**kw)
            elif k < 0.8:
                t = r.choice([lambda: a.reshape(-1), lambda: a.view(r.choice([-1, 6, 3])),
                              lambda: a.unsqueeze(r.randrange(-2, 2)), lambda: a.transpose(0, -1),
                              lambda: a[0], lambda: a[..., -1:], lambda: a.clamp(
                                  min=r.choice(scalars[:5]), max=r.choice([None, 3, 2.5])),
                              lambda: a.to(r.choice(["float32", "int64", "float64"])),
                              lambda: a.squeeze()])()
                if isinstance(t, str):
                    t = a
            elif k < 0.9:
                op = r.choice(["add_", "mul_", "sub_", "clamp_", "zero_", "fill_"])
                arg = r.choice(pool[:2] + scalars[:6])
                t = (a.zero_() if op == "zero_" else a.clamp_(min=0) if op == "clamp_" else
                     getattr(a, op)(arg))
            else:
                show("read%d" % i, lambda: (tuple(a.shape), str(a.dtype), a.tolist()))
                continue
        except Exception as e:  # noqa: BLE001 - refused before anything is sent
            print("op%d" % i, type(e).__name__, str(e)[:300])
            continue
        if hasattr(t, "_h"):
            if r.random() < 0.5:
                pool[r.randrange(len(pool))] = t  # the old one may be collected
            if r.random() < 0.15:
                show("val%d" % i, lambda: (tuple(t.shape), str(t.dtype), t.tolist()))
    show("end", lambda: [(tuple(t.shape), t.tolist()) for t in pool])
    show("sync", s.synchronize)
    print("printed", printed)


@need_fast
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_scripts_print_the_same_under_both_paths(daemon, seed):
    fast, _ = _child(["random", "127.0.0.1:%d" % daemon, seed, 400], pure=False)
    pure, _ = _child(["random", "127.0.0.1:%d" % daemon, seed, 400], pure=True)
    assert fast == pure, "\n".join("%-70s | %s" % (a, b) for a, b in zip(fast, pure) if a != b)
    assert int(fast[-1].split()[1]) > 20 and any("Error" in x for x in fast), fast[-5:]


# --- a connection dropped mid-pipeline: the same resumption under both paths -----------------

def resume_script(port):
    """Pipelined ops whose replies are lost (the server ran them all: the proxy swallowed their
    replies), then the connection is cut; once an in-place op is among them (not safe to
    repeat: it fails, and so does what follows it). Each path must resume the same way."""
    import tensord
    mute, swallowed = [False], [0]

    def edit(n, meta, data):
        if mute[0]:
            swallowed[0] += 1
            return b"", False
        return frame(meta, data), False

    px = Tamper(port, edit, every=True, quiet=60.0)
    s = tensord.Session(addr="127.0.0.1:%d" % px.port)
    x = s.tensor([1.0, 2.0, 3.0])
    z = x
    for i in range(200):
        z = z * 1.01 + i
    print("before", [round(v, 3) for v in z.tolist()])
    for cut in range(3):
        ts = [x + j for j in range(50)]
        if cut == 1:
            x.add_(1)
        mute[0] = True
        target = swallowed[0] + len(s._c._pending)
        s.flush()
        end = time.monotonic() + 30
        while swallowed[0] < target and time.monotonic() < end:
            time.sleep(0.01)
        px.drop()
        mute[0] = False
        try:
            print(cut, [t.tolist() for t in ts[::10]])
        except Exception as e:  # noqa: BLE001
            print(cut, type(e).__name__, str(e)[:300])
        try:
            print(cut, "x", x.tolist(), s._c.reconnects)
        except Exception as e:  # noqa: BLE001
            print(cut, "x", type(e).__name__, str(e)[:300])
    px.close()


@need_fast
@pytest.mark.timeout(300)
def test_resume_after_a_dropped_connection_same_under_both_paths(daemon):
    fast, _ = _child(["resume", daemon], pure=False)
    pure, _ = _child(["resume", daemon], pure=True)
    assert fast == pure, "\n".join("%-70s | %s" % (a, b) for a, b in zip(fast, pure) if a != b)
    assert fast[1].startswith("0 [[1.0, 2.0, 3.0], [11.0, 12.0, 13.0]"), fast
    assert fast[2] == "0 x [1.0, 2.0, 3.0] 1", fast
    assert fast[3].startswith("1 TensorError the connection was lost before the server "
                              "answered"), fast  # add_: it ran, but the client cannot know
    assert fast[4] == "1 x [2.0, 3.0, 4.0] 2" and fast[6] == "2 x [2.0, 3.0, 4.0] 3", fast


# --- memory: a million tiny ops --------------------------------------------------------------

def memory_script(addr, n, seconds):
    """n tiny ops (fewer if `seconds` run out: a slow, e.g. sanitized, daemon), each result
    dropped at once (free-on-collect): prints the client's RSS and the session's tensor count
    every n/10 ops after a warm-up of n/10, and the seconds taken."""
    import tensord

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    s = tensord.Session(addr=addr)
    x = s.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = s.tensor([[0.5, 0.5], [0.5, 0.5]])
    t0 = time.monotonic()
    for i in range(n):
        z = x * y
        if i % (n // 10) == 0 and i > 0:
            print("at", i, rss(), s.stats().session_tensors, flush=True)
            if time.monotonic() - t0 > seconds:
                break
    print("z", z.tolist())
    del z
    print("end", rss(), s.stats().session_tensors, round(time.monotonic() - t0, 1))


@need_fast
@pytest.mark.timeout(200)
@pytest.mark.parametrize("pure", [False, True])
def test_a_million_tiny_ops_keep_memory_and_handles_flat(daemon, pure):
    n = 200000 if pure else 1000000  # the fallback is slower: about the same time
    out, _ = _child(["memory", "127.0.0.1:%d" % daemon, n, 60], pure=pure, timeout=180)
    at = [(int(a), int(b), int(c)) for _, a, b, c in (line.split() for line in out
                                                       if line.startswith("at "))]
    assert len(at) >= 3 and out[-2] == "z [[0.5, 1.0], [1.5, 2.0]]", out
    rss0 = at[0][1]
    for i, rss, tensors in at:
        # flat: a Pending or Tensor kept per op would be hundreds of MB; what moves is the
        # pipeline's Pendings in flight (a few thousand, ~10 MB of RSS noise measured)
        assert rss - rss0 < 24 << 20, at
        # x, y, at most the current result and a few not yet freed by a request
        assert tensors <= 4, at
    assert int(out[-1].split()[2]) <= 3, out


# --- the collector running inside the fast path ---------------------------------------------

def gc_script(addr, n):
    """Tensors in reference cycles, with the collector run at nearly every allocation: their
    __del__ (free-on-collect) runs inside op_fast/get_fast/create_fast, between reading the
    session's collected handles and removing them. Every handle must be freed exactly once and
    every value stay right."""
    import gc
    import tensord
    s = tensord.Session(addr=addr)
    x = s.tensor([1.0, 2.0])
    gc.set_threshold(1, 1, 1)
    total = 0.0
    for i in range(n):
        a = x * 2
        b = a + i
        c = s.tensor([float(i)])
        ring = [a, b, c]
        ring.append(ring)
        a._ring = ring  # collected only by the cycle collector
        if i % (n // 4) == 0:
            total += sum(b.tolist()) + c.item()
        del a, b, c, ring
    gc.set_threshold(700, 10, 10)
    gc.collect()
    print("total", total)
    print("left", s.stats().session_tensors)  # x, and what the Stats request itself freed


@need_fast
@pytest.mark.timeout(200)
def test_collector_inside_the_fast_path_frees_each_handle_once(daemon):
    fast, _ = _child(["gc", "127.0.0.1:%d" % daemon, 4000], pure=False)
    pure, _ = _child(["gc", "127.0.0.1:%d" % daemon, 4000], pure=True)
    assert fast == pure, (fast, pure)
    # b = 2x + i summed (6 + 2i) plus c = i, at i = 0, 1000, 2000, 3000
    assert fast == ["total %r" % float(sum(6 + 3 * i for i in (0, 1000, 2000, 3000))),
                    "left 1"], fast


def child_main(argv):
    import resource
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan reserves terabytes of shadow
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    global _conn, pb, _fast
    from tensord import _conn
    from tensord import tensord_pb2 as pb
    _fast = _conn._fast
    if argv[0] == "parser":
        parser_fuzz(float(argv[1]))
    elif argv[0] == "hostile":
        for arg in argv[1:]:
            name, addr = arg.split("=")
            print("==", name, flush=True)
            t0 = time.monotonic()
            try:
                program(addr)
            except Exception as e:  # noqa: BLE001
                print("  ", type(e).__name__, str(e)[:300])
            print("%s %.1f" % (name, time.monotonic() - t0), file=sys.stderr)
            sys.stdout.flush()
    elif argv[0] == "random":
        random_script(argv[1], int(argv[2]), int(argv[3]))
    elif argv[0] == "resume":
        resume_script(int(argv[1]))
    elif argv[0] == "gc":
        gc_script(argv[1], int(argv[2]))
    elif argv[0] == "memory":
        memory_script(argv[1], int(argv[2]), float(argv[3]))
    else:
        raise SystemExit("unknown child command %r" % argv)


if __name__ == "__main__":
    child_main(sys.argv[1:])
