"""Attacks on the daemon's hot path of issue 19: the direct decoder of RunOp / Get / Free / Write
(server/rpc/fastunpack.c, which leaves anything unusual to protobuf-c), the reuse of freed
request jobs, the operands cost_op resolves for an inline RunOp, the per-thread bins of small
blocks, and the replies sent by uv_try_write (a partial write leaves the rest to uv_write).

The checks, as tests/python/test_attacks.py's (Guard.check: alive, served, canary intact,
memory back):
  - a message the direct decoder leaves to protobuf-c (fields repeated, merged submessages,
    oneof members given twice, unknown fields, non-minimal varints, unpacked arrays) runs
    exactly as its canonical form does (Python's protobuf parses it and serialises it again:
    one field each, packed, minimal, which the direct decoder takes; where protobuf-c reads the
    bytes otherwise than Python's protobuf — a oneof's submessage given twice is replaced, not
    merged — protobuf-c's reading, written out): the same reply bytes and the same table
    afterwards, on two sessions set up alike; a few of them also against numpy;
  - pipelined random traffic on one session — tiny ops through both decoders, free_first naming
    an op's own operands, Free, Get, ops naming freed or failed handles, requests with out2 —
    matches a model of the session table computed here with numpy, reply by reply;
  - a reader that stops reading, then drains slowly in small pieces, gets every byte of large
    pipelined Get replies in order (the partial try_write path), while other sessions are served;
  - a peer that never said Hello gets an error for every such frame and nothing else;
  - many connections that pipeline tiny ops and vanish leave memory where it was.
Every read has a timeout; nothing rests on a timing margin.
"""
import random
import socket
import struct
import time

import numpy as np
import pytest

import wire
from test_attacks import Attacker, guard  # noqa: F401 (guard: a fixture)
from test_hostile import Raw, field, frame, varint

pb = wire.pb

pytestmark = pytest.mark.timeout(240)

ADD = pb.Op.Value("OP_ADD")
SUB = pb.Op.Value("OP_SUB")
MUL = pb.Op.Value("OP_MUL")
NEG = pb.Op.Value("OP_NEG")
STACK = pb.Op.Value("OP_STACK")


# ---------------------------------------------------------------- hand-made protobuf bytes

def padded(v, n):
    """v as a varint of exactly n bytes (continuation bytes added)."""
    out = bytearray()
    for i in range(n):
        b = v & 0x7F
        v >>= 7
        out.append(b | 0x80 if i + 1 < n else b)
    assert v == 0
    return bytes(out)


def zigzag(i):
    return (i << 1) ^ (i >> 63) if i < 0 else i << 1


def run_op(*fields):
    return field(8, 2, b"".join(fields))


def h(handle):
    """An operand holding a handle."""
    return field(3, 2, field(1, 0, handle))


def f64(x):
    """An operand holding a double scalar."""
    return field(3, 2, field(2, 2, field(1, 1, struct.pack("<d", x))))


def out(handle):
    return field(1, 0, handle)


def op(code):
    return field(2, 0, code)


def rid(n):
    return field(1, 0, n)


def get(handle):
    return field(9, 2, field(1, 0, handle))


# ---------------------------------------------------------------- the same request, two decoders

H1 = np.array([1.5, -2.0], np.float32)
H2 = np.array([3.0, 4.0], np.float32)


def make_handles(a):
    """Handles 1, 2 (float32), 3, 4, 5 (copies of 1) on the attacker's session."""
    a.create(1, H1)
    a.create(2, H2)
    for x in (3, 4, 5):
        a.create(x, H1)


def table(a, handles=(1, 2, 3, 4, 5, 10, 11)):
    """Each handle's Get reply (bytes of the Response without its id, and the data)."""
    got = []
    for x in handles:
        r = pb.Request(id=a.next_id())
        r.get.handle = x
        resp, data = a.call(r)
        resp.id = 0
        got.append((x, resp.SerializeToString(), data))
    return got


# (name, Request bytes, handle -> expected float32 values after it or None, expected status,
#  the canonical form where protobuf-c's reading differs from Python's protobuf)
CRAFTED = [
    # protobuf-c does not merge a oneof's submessage given twice, as Python's protobuf does:
    # the last replaces the first (its canonical form is given: the second run_op alone)
    ("run_op twice: the last replaces the first",
     rid(5) + run_op(out(10), op(ADD), h(1)) + run_op(h(2)), None, pb.UNKNOWN_OP,
     rid(5) + run_op(h(2))),
    ("id twice: the last wins",
     rid(5) + run_op(out(10), op(ADD), h(1), h(2)) + rid(6), {10: H1 + H2}),
    ("an operand with a handle, then a scalar: the scalar",
     rid(5) + run_op(out(10), op(MUL), h(1),
                     field(3, 2, field(1, 0, 2) +
                           field(2, 2, field(1, 1, struct.pack("<d", 2.5))))),
     {10: H1 * np.float32(2.5)}),
    ("a scalar with i, then f: f",
     rid(5) + run_op(out(10), op(MUL), h(1),
                     field(3, 2, field(2, 2, field(2, 0, zigzag(3)) +
                                       field(1, 1, struct.pack("<d", 0.5))))),
     {10: H1 * np.float32(0.5)}),
    ("the same scalar submessage twice: the last",
     rid(5) + run_op(out(10), op(MUL), h(1),
                     field(3, 2, field(2, 2, field(2, 0, zigzag(3))) +
                           field(2, 2, field(2, 0, zigzag(-4))))),
     {10: H1 * np.float32(-4)}),
    ("free_first in two packed chunks and an unpacked entry",
     rid(5) + field(22, 2, varint(3)) + field(22, 2, varint(4)) + field(22, 0, 5) +
     run_op(out(10), op(ADD), h(1), h(2)), {10: H1 + H2}),
    ("free_first names the op's own operand (the pre-resolved one)",
     rid(5) + field(22, 2, varint(1)) + run_op(out(10), op(ADD), h(1), h(2)), None,
     pb.UNKNOWN_HANDLE),
    ("free_first names an operand of an in-place op",
     rid(5) + field(22, 2, varint(3)) + run_op(op(ADD), h(3), h(2), field(4, 0, 1)), None,
     pb.UNKNOWN_HANDLE),
    ("free_first frees the second operand, twice",
     rid(5) + field(22, 2, varint(2) + varint(2)) + run_op(out(10), op(MUL), h(1), h(2)), None,
     pb.UNKNOWN_HANDLE),
    ("the op code as a three-byte varint",
     rid(5) + run_op(out(10), field(2, 0, 0)[:1] + padded(MUL, 3), h(1), h(2)), {10: H1 * H2}),
    ("get.meta_only = 2", rid(5) + field(9, 2, field(1, 0, 1) + field(2, 0, 2)), None),
    ("run_op, then get: the last body wins",
     rid(5) + run_op(out(10), op(ADD), h(1), h(2)) + get(1), None),
    ("get, then run_op: the last body wins",
     rid(5) + get(1) + run_op(out(10), op(ADD), h(1), h(2)), {10: H1 + H2}),
    ("unknown fields at every level, of wire types 0, 1, 2 and 5",
     rid(5) + run_op(out(10), op(ADD), field(3, 2, field(1, 0, 1) + field(9, 5, b"\0" * 4)),
                     h(2), field(30, 0, 7), field(31, 2, b"xyz")) + field(40, 1, b"\0" * 8),
     {10: H1 + H2}),
    ("free, unpacked", rid(5) + field(10, 2, field(1, 0, 3) + field(1, 0, 4)), None),
    ("free twice: the last replaces the first",
     rid(5) + field(10, 2, field(1, 2, varint(3))) + field(10, 2, field(1, 2, varint(4))),
     None, pb.OK, rid(5) + field(10, 2, field(1, 2, varint(4)))),
    ("inplace given as 2", rid(5) + run_op(op(ADD), h(1), h(2), field(4, 0, 2)), {1: H1 + H2}),
    ("out given twice: the last wins",
     rid(5) + run_op(out(11), out(10), op(ADD), h(1), h(2)), {10: H1 + H2}),
    ("out2 given twice on an op without a second output",
     rid(5) + run_op(out(10), op(NEG), h(1), field(6, 0, 11), field(6, 0, 12)), None),
    ("an empty operand", rid(5) + run_op(out(10), op(ADD), h(1), field(3, 2, b"")), None),
    ("a handle of 2^63 + 1 (a ten-byte varint)",
     rid(5) + run_op(out(10), op(ADD), h(1), h((1 << 63) + 1)), None),
    ("an int scalar of -2^63 (a ten-byte zigzag)",
     rid(5) + run_op(out(10), op(MUL), h(1), field(3, 2, field(2, 2, field(2, 0, (1 << 64) - 1)))),
     None),
    ("64 operands, and an unknown field",
     rid(5) + run_op(out(10), op(STACK), *([h(1)] * 64), field(29, 0, 1)),
     {10: np.stack([H1] * 64)}),
    ("65 operands, out given twice",
     rid(5) + run_op(out(10), out(10), op(STACK), *([h(2)] * 65)), None, pb.INVALID_ARGUMENT),
]


CRAFTED = [c + (None,) * (5 - len(c)) for c in CRAFTED]


@pytest.mark.parametrize("name,crafted,expect,status,canonical", CRAFTED,
                         ids=[c[0] for c in CRAFTED])
def test_protobuf_c_cases_run_as_their_canonical_form(guard, name, crafted, expect, status,
                                                      canonical):
    g = guard()
    if canonical is None:
        canonical_req = pb.Request.FromString(crafted)
        canonical_req.DiscardUnknownFields()
        canonical = canonical_req.SerializeToString()
    a, b = Attacker(g.port), Attacker(g.port)
    try:
        make_handles(a)
        make_handles(b)
        a.send(frame(crafted))
        b.send(frame(canonical))
        ra, rb = a.recv(), b.recv()
        assert ra is not None and rb is not None, "a connection was closed"
        assert ra[0].SerializeToString() == rb[0].SerializeToString(), (ra[0], rb[0])
        assert ra[1] == rb[1]
        if status is not None:
            assert ra[0].status.code == status, ra[0].status.message
        elif expect is not None:
            assert ra[0].status.code == pb.OK, ra[0].status.message
        ta, tb = table(a), table(b)
        assert ta == tb
        for handle, values in (expect or {}).items():
            data = dict((x, d) for x, _, d in ta)[handle]
            got = np.frombuffer(data, np.float32)
            assert got.tolist() == np.asarray(values, np.float32).ravel().tolist(), handle
        a.close_session()
        b.close_session()
    finally:
        a.close()
        b.close()
    g.check()
    g.stop()


# ---------------------------------------------------------------- pipelined traffic vs a model

FAILED = "failed"
CODE = {"unknown": pb.UNKNOWN_HANDLE, "failed": pb.INPUT_FAILED}


class Model:
    """The session's table as the protocol defines it: handle -> float32 array or FAILED."""

    def __init__(self):
        self.t = {}
        self.next_out = 100
        self.ops = {}  # op code -> [requests, errors]

    def fresh(self):
        self.next_out += 1
        return self.next_out

    def resolve(self, x):
        """(None, value) or (status code, None) for an operand (a handle or a float)."""
        if isinstance(x, float):
            return None, np.float32(x)
        if x not in self.t:
            return pb.UNKNOWN_HANDLE, None
        if self.t[x] is FAILED:
            return pb.INPUT_FAILED, None
        return None, self.t[x]

    def op(self, code, inputs, out_h, inplace, out2, free_first):
        """The expected status and value of a RunOp, the table updated."""
        for x in free_first:
            self.t.pop(x, None)
        vals = []
        for x in inputs:
            err, v = self.resolve(x)
            if err is not None:
                if out_h:
                    self.t[out_h] = FAILED
                return err, None
            vals.append(v)
        if out2:
            if out_h:
                self.t[out_h] = FAILED
            return pb.INVALID_ARGUMENT, None
        with np.errstate(all="ignore"):
            if code == NEG:
                v = -vals[0]
            else:
                a, b = vals
                v = a + b if code == ADD else a - b if code == SUB else a * b
        v = np.asarray(v, np.float32)
        if inplace:
            self.t[inputs[0]] = v
        else:
            self.t[out_h] = v
        return pb.OK, v


def model_request(m, rng, rid_n):
    """A random request: (frame bytes, expected status, expected values or None). Inputs are
    mostly live handles, some failed or unknown; frees take mostly outputs (handles above 8),
    so the session keeps tensors to work on."""
    live = [x for x, v in m.t.items() if v is not FAILED]
    failed = [x for x, v in m.t.items() if v is FAILED]
    outputs = [x for x in m.t if x > 8]

    def pick():
        r = rng.random()
        if r < 0.85 or not failed:
            return rng.choice(live) if r < 0.95 else rng.randint(1, m.next_out + 3)
        return rng.choice(failed)

    def some(k):
        cands = outputs + [rng.randint(1, m.next_out + 3)]
        return rng.sample(cands, min(len(cands), k))

    kind = rng.random()
    free_first = some(rng.randint(1, 2)) if rng.random() < 0.2 else []
    if kind < 0.6:
        code = rng.choice([ADD, SUB, MUL, NEG])
        inputs = [pick()]  # the first a handle: a tensor op needs one
        if code != NEG:
            inputs.append(pick() if rng.random() < 0.8 else float(rng.randint(-3, 3)))
        inplace = (code != NEG and isinstance(inputs[0], int) and rng.random() < 0.15)
        out_h = 0 if inplace else m.fresh()
        out2 = m.fresh() if (code == NEG and rng.random() < 0.2) else 0
        r = pb.Request(id=rid_n)
        r.free_first.extend(free_first)
        r.run_op.op = code
        if out_h:
            r.run_op.out = out_h
        r.run_op.inplace = inplace
        r.run_op.out2 = out2
        for x in inputs:
            o = r.run_op.inputs.add()
            if isinstance(x, float):
                o.scalar.f = x
            else:
                o.handle = x
        meta = r.SerializeToString()
        if rng.random() < 0.4:
            meta += field(30, 0, 1)  # an unknown field: protobuf-c decodes this one
        status, value = m.op(code, inputs, out_h, inplace, out2, free_first)
        counts = m.ops.setdefault(code, [0, 0])
        counts[0] += 1
        counts[1] += status != pb.OK
        if status == pb.OK and inplace:
            status, value = pb.OK, m.t[inputs[0]]
        return frame(meta), status, value
    if kind < 0.8:
        x = pick()
        r = pb.Request(id=rid_n)
        r.free_first.extend(free_first)
        r.get.handle = x
        for y in free_first:
            m.t.pop(y, None)
        err, v = m.resolve(x)
        return frame(r), err if err is not None else pb.OK, v
    r = pb.Request(id=rid_n)
    r.free_first.extend(free_first)
    handles = some(rng.randint(1, 4))
    r.free.handles.extend(handles)
    meta = r.SerializeToString()
    if rng.random() < 0.3:  # unpacked handles: protobuf-c's
        body = b"".join(field(1, 0, x) for x in handles)
        meta = rid(rid_n) + (field(22, 2, b"".join(varint(x) for x in free_first))
                             if free_first else b"") + field(10, 2, body)
    for y in free_first + handles:
        m.t.pop(y, None)
    return frame(meta), pb.OK, None


def test_pipelined_traffic_matches_a_model_of_the_table(guard):
    g = guard()
    a = Attacker(g.port, timeout=30)
    m = Model()
    rng = random.Random(19)
    for x in range(1, 9):
        v = np.array([x - 4.0, 0.5 * x, 2.0], np.float32)
        a.create(x, v)
        m.t[x] = v
    m.next_out = 10
    checked = 0

    def op_counters():
        resp, _ = a.call(pb.Request(id=a.next_id(), stats=pb.Stats()))
        return resp.stats, {c.name: (c.count, c.errors) for c in resp.stats.ops}

    _, ops_before = op_counters()
    with g.watching():
        for batch in range(80):
            reqs = []
            for i in range(48):
                n = 10000 + batch * 100 + i
                fr, status, value = model_request(m, rng, n)
                reqs.append((n, fr, status, value))
            a.send(b"".join(fr for _, fr, _, _ in reqs))
            for n, fr, status, value in reqs:
                got = a.recv()
                assert got is not None, "the connection was closed"
                resp, data = got
                assert resp.id == n
                assert resp.status.code == status, (
                    n, pb.StatusCode.Name(resp.status.code), resp.status.message,
                    pb.StatusCode.Name(status))
                if value is not None and status == pb.OK:
                    if data:
                        got_v = np.frombuffer(data, np.float32)
                    else:  # a RunOp's reply: its info only; the Get below reads the bytes
                        got_v = None
                    if got_v is not None:
                        assert np.array_equal(got_v, np.ravel(value), equal_nan=True), (n, got_v,
                                                                                         value)
                checked += 1
            if batch % 10 != 9:
                continue
            # every live handle, read back
            for x, v in list(m.t.items()):
                r = pb.Request(id=a.next_id())
                r.get.handle = x
                resp, data = a.call(r)
                if v is FAILED:
                    assert resp.status.code == pb.INPUT_FAILED, (x, resp.status.message)
                else:
                    assert resp.status.code == pb.OK, (x, resp.status.message)
                    assert np.array_equal(np.frombuffer(data, np.float32), np.ravel(v),
                                          equal_nan=True), x
    g.assert_served()
    assert checked == 80 * 48
    # the counters are exact: the session's entries (failed ones included), and the ops the
    # watcher does not run (it adds), by requests and errors
    st, ops_after = op_counters()
    assert st.session_tensors == len(m.t)
    for code, name in ((SUB, "sub"), (MUL, "mul"), (NEG, "neg")):
        before = ops_before.get(name, (0, 0))
        delta = tuple(x - y for x, y in zip(ops_after.get(name, (0, 0)), before))
        assert delta == tuple(m.ops.get(code, [0, 0])), (name, delta, m.ops.get(code))
    a.close_session()
    g.check()
    g.stop()


# ---------------------------------------------------------------- a slow reader

def test_slow_reader_gets_every_byte_in_order(guard):
    g = guard()
    a = Attacker(g.port, timeout=60)
    n = 1 << 20
    big = (np.arange(n, dtype=np.int64) * 2654435761 % 1000003).astype(np.float32)
    a.create(1, big)
    a.create(2, H1)
    raw = big.tobytes()
    rng = random.Random(7)
    expected = []
    out = bytearray()
    for i in range(40):
        r = pb.Request(id=500 + i)
        if i % 3 == 2:  # a tiny op between the large replies
            r.run_op.out = 1000 + i
            r.run_op.op = ADD
            r.run_op.inputs.add().handle = 2
            r.run_op.inputs.add().handle = 2
            expected.append((500 + i, None))
        else:
            off = rng.randrange(0, len(raw) // 4) * 4
            length = rng.randrange(1, 1 << 19) * 4
            r.get.handle = 1
            r.get.offset = off
            r.get.length = length
            expected.append((500 + i, raw[off:off + length]))
        out += frame(r)
    with g.watching():
        a.send(bytes(out))
        time.sleep(1.0)  # the daemon's socket buffer fills; the rest waits in its queue
        buf = bytearray()
        got = []
        reads = 0
        while len(got) < len(expected):
            chunk = a.s.recv(4096)
            assert chunk, "the connection was closed"
            buf += chunk
            reads += 1
            if reads % 8 == 0:
                time.sleep(0.001)
            while len(buf) >= 12:
                ml, dl = struct.unpack_from(">IQ", buf)
                if len(buf) < 12 + ml + dl:
                    break
                resp = pb.Response.FromString(bytes(buf[12:12 + ml]))
                got.append((resp, bytes(buf[12 + ml:12 + ml + dl])))
                del buf[:12 + ml + dl]
    g.assert_served()
    for (resp, data), (n_id, want) in zip(got, expected):
        assert resp.id == n_id
        assert resp.status.code == pb.OK, resp.status.message
        if want is None:
            assert np.frombuffer(data, np.float32).size == 0
            assert resp.tensor.handle == n_id - 500 + 1000
        else:
            assert data == want, "reply %d: %d bytes, %d expected" % (n_id, len(data), len(want))
    a.close_session()
    g.check()
    g.stop()


# ---------------------------------------------------------------- no Hello

def test_no_session_peer_gets_errors_only(guard):
    g = guard()
    r = Raw(g.port, hello=False)
    try:
        frames = [c[1] for c in CRAFTED] + [
            rid(5) + field(8, 3, b"") + field(8, 4, b""),          # a group where run_op is
            rid(5) + run_op(field(3, 3, b"") + field(3, 4, b"")),  # a group inside
            rid(5) + run_op(out(10), op(ADD), h(1), h(2))[:-1],    # cut off
            b"\xff" * 16, b"\x80" * 11,
            field(22, 2, b"\xff" * 9 + b"\x01"),                   # free_first, 10-byte entry
        ]
        for i, meta in enumerate(frames):
            r.send(frame(meta))
            got = r.recv()
            assert got is not None, "closed after frame %d" % i
            assert got[0].status.code != pb.OK, i
            assert got[0].status.message
        resp, _ = r.call(Raw.hello_req())
        assert resp.status.code == pb.OK, resp.status.message
        assert r.ping_ok()
    finally:
        r.close()
    g.check()
    g.stop()


# ---------------------------------------------------------------- vanishing pipeliners

def test_vanishing_pipeliners_leave_memory_as_it_was(guard):
    g = guard()
    tokens = []
    for round_ in range(3):
        conns = []
        for k in range(12):
            a = Attacker(g.port)
            a.create(1, H1)
            out_b = bytearray()
            for i in range(300):
                r = pb.Request(id=1000 + i)
                r.run_op.out = 10 + i
                r.run_op.op = MUL
                r.run_op.inputs.add().handle = 1
                r.run_op.inputs.add().scalar.f = 1.5
                if i % 50 == 49:
                    r.free_first.extend(range(10 + i - 49, 10 + i))
                out_b += frame(r)
            big = pb.Request(id=5000)
            big.free.handles.extend(range(1, 400))
            out_b += frame(big)
            a.send(bytes(out_b))
            conns.append(a)
            tokens.append(a.token)
        for a in conns:
            if round_ == 2:
                a.close_session()  # the last round ends its sessions; the others just vanish
            else:
                a.s.shutdown(socket.SHUT_RDWR)
                a.close()
    for tok in tokens[:24]:  # the vanished ones' sessions, resumed and closed
        r = Raw(g.port, token=tok)
        try:
            resp, _ = r.call(pb.Request(id=9, close_session=pb.CloseSession()))
            assert resp.status.code == pb.OK, resp.status.message
        finally:
            r.close()
    g.check(settle=20.0)
    g.stop()


# ---------------------------------------------------------------- heavy and inline, interleaved

def test_heavy_and_inline_ops_with_frees_between(guard):
    """A heavy op (off the loop: its operands looked up again there) between tiny ones (inline:
    run on the operands cost_op resolved), with free_first and Free taking the operands of
    what follows: each reply as the session's order defines it, values against numpy (integer
    entries, so float32 products and sums are exact)."""
    g = guard()
    a = Attacker(g.port, timeout=60)
    rng = np.random.default_rng(19)
    n = 192  # n^3 elements of work: far above the daemon's inline threshold (2^16)
    A = rng.integers(-2, 3, (n, n)).astype(np.float32)
    B = rng.integers(-2, 3, (n, n)).astype(np.float32)
    plan = []  # (request, expected status, expected values or None)

    def req(code, out_h, inputs, free_first=(), unknown=False):
        r = pb.Request(id=3000 + len(plan))
        r.free_first.extend(free_first)
        r.run_op.op = code
        r.run_op.out = out_h
        for x in inputs:
            o = r.run_op.inputs.add()
            if isinstance(x, float):
                o.scalar.f = x
            else:
                o.handle = x
        meta = r.SerializeToString()
        return meta + field(30, 0, 1) if unknown else meta

    def getreq(x, free_first=()):
        r = pb.Request(id=3000 + len(plan))
        r.free_first.extend(free_first)
        r.get.handle = x
        return r.SerializeToString()

    for rnd in range(6):
        a.create(1, A)
        a.create(2, B)
        base = 10 + rnd * 20
        C = A @ B
        # every partial sum of C @ C is an integer below 2^24: exact in float32, in any order
        assert (np.abs(C).astype(np.float64) @ np.abs(C)).max() < 1 << 24
        plan.append((req(pb.Op.Value("OP_MATMUL"), base, [1, 2]), pb.OK, None))
        plan.append((req(ADD, base + 1, [base, base], free_first=[1], unknown=rnd % 2 == 1),
                     pb.OK, None))
        plan.append((req(ADD, base + 2, [1, 2]), pb.UNKNOWN_HANDLE, None))
        plan.append((req(pb.Op.Value("OP_MATMUL"), base + 3, [2, 2], free_first=[2]),
                     pb.UNKNOWN_HANDLE, None))
        plan.append((req(MUL, base + 4, [base + 1, 0.5], free_first=[base]), pb.OK, None))
        plan.append((req(pb.Op.Value("OP_MATMUL"), base + 5, [base + 4, base + 4]), pb.OK, None))
        plan.append((req(SUB, base + 6, [base + 5, base + 4], free_first=[base + 1]), pb.OK,
                     None))
        plan.append((getreq(base + 6, free_first=[base + 5]), pb.OK, C @ C - C))
        plan.append((getreq(base + 4), pb.OK, C))
        plan.append((getreq(base + 3), pb.INPUT_FAILED, None))
        a.send(b"".join(frame(m) for m, _, _ in plan[-10:]))
        for k in range(10):
            m, status, want = plan[len(plan) - 10 + k]
            got = a.recv()
            assert got is not None, "the connection was closed"
            resp, data = got
            assert resp.id == 3000 + len(plan) - 10 + k
            assert resp.status.code == status, (k, pb.StatusCode.Name(resp.status.code),
                                                resp.status.message)
            if want is not None:
                assert np.array_equal(np.frombuffer(data, np.float32), want.ravel()), k
        free = pb.Request(id=a.next_id())
        free.free.handles.extend(range(base, base + 7))
        a.ok(free)
    a.close_session()
    g.check()
    g.stop()
