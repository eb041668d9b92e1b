"""The hostile-input suite (issue 8): every way a peer can lie to tensord, one named case each.

Each case sends something hostile and asserts three things:
  1. the reply is a clear error with the right status code, or, for a frame the server cannot
     attribute to a request, the documented treatment (server/net/conn.c, server/rpc/rpc.c):
       - a header announcing more than max_meta_bytes (1 MiB) or --max-frame-bytes is answered
         with LIMIT_EXCEEDED under request id 0, then the connection is closed;
       - a frame with an empty or undecodable protobuf section is answered with PROTOCOL_ERROR
         under request id 0, and the connection carries on;
       - a frame that stops arriving is closed after --idle-timeout without a reply; EOF in the
         middle of a frame closes at once;
       - a refused Hello (authentication) and a connection over --max-connections are answered,
         then closed;
  2. the daemon keeps serving: a fresh connection says Hello and gets a Ping answered;
  3. a canary session, opened before the case and holding tensors of every dtype, a leaf with
     requires_grad and its .grad, still holds exactly the same bytes, dtypes and shapes.

Most cases share one module-scoped daemon (with --data-dir for Save/Load); cases that need
limits, auth or timeouts start their own daemon and a canary on it.
"""
import hashlib
import os
import re
import socket
import struct
import tempfile
import threading
import time

import numpy as np
import pytest

import wire
from conftest import Daemon

pb = wire.pb
HEADER = struct.Struct(">IQ")
MAX_META = 1 << 20          # server/main.c: td_net_config.max_meta_bytes
U64_MAX = (1 << 64) - 1


# ---------------------------------------------------------------- raw protocol helpers

def frame(meta, data=b"", meta_len=None, data_len=None):
    """A frame with optionally lying lengths."""
    if not isinstance(meta, (bytes, bytearray)):
        meta = meta.SerializeToString()
    ml = len(meta) if meta_len is None else meta_len
    dl = len(data) if data_len is None else data_len
    return HEADER.pack(ml, dl) + bytes(meta) + bytes(data)


def req(**kw):
    """pb.Request with id and one body set from keyword args, e.g. req(id=3, ping={})."""
    r = pb.Request()
    for k, v in kw.items():
        if k == "id":
            r.id = v
        elif isinstance(v, dict):
            getattr(r, k).SetInParent()
            for fk, fv in v.items():
                f = getattr(getattr(r, k), fk)
                if isinstance(fv, (list, tuple)):
                    f.extend(fv)
                else:
                    setattr(getattr(r, k), fk, fv)
        else:
            getattr(r, k).CopyFrom(v)
    return r


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wt, payload):
    """One protobuf field: wt 0 varint (payload int), 2 bytes, 1/5 fixed (payload bytes)."""
    key = varint(num << 3 | wt)
    if wt == 0:
        return key + varint(payload)
    if wt == 2:
        return key + varint(len(payload)) + payload
    return key + payload


class Raw:
    """A bare socket speaking frames, for what the real client would never send."""

    def __init__(self, port, hello=True, auth="", token=b"", timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()  # appended in place: a reply of many MB is not copied per chunk
        self.token = None
        if hello:
            r, _ = self.call(self.hello_req(auth, token))
            assert r.status.code == pb.OK, r.status.message
            self.token = r.hello.session_token

    @staticmethod
    def hello_req(auth="", token=b"", vmin=1, vmax=1, rid=1):
        r = pb.Request()
        r.id = rid
        r.hello.min_version = vmin
        r.hello.max_version = vmax
        r.hello.auth_token = auth
        r.hello.session_token = token
        return r

    def send(self, b):
        self.s.sendall(b)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self):
        """(Response, data) or None at EOF."""
        if not self._need(12):
            return None
        ml, dl = HEADER.unpack_from(self.buf)
        if not self._need(12 + ml + dl):
            return None
        resp = pb.Response()
        resp.ParseFromString(bytes(self.buf[12:12 + ml]))
        data = bytes(self.buf[12 + ml:12 + ml + dl])
        del self.buf[:12 + ml + dl]
        return resp, data

    def call(self, r, data=b""):
        self.send(frame(r, data))
        got = self.recv()
        assert got is not None, "connection closed instead of a reply"
        return got

    def expect_eof(self, timeout=5):
        """True when the server closes (EOF or reset) within timeout with nothing more to say."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def ping_ok(self, rid=777):
        r, _ = self.call(req(id=rid, ping={}))
        return r.id == rid and r.status.code == pb.OK

    def close(self):
        self.s.close()


def status_of(port_or_raw, r, data=b""):
    raw = port_or_raw if isinstance(port_or_raw, Raw) else Raw(port_or_raw)
    resp, _ = raw.call(r, data)
    return resp


def assert_err(resp, code, needle=None, rid=None):
    assert resp.status.code == code, (pb.StatusCode.Name(resp.status.code), resp.status.message)
    assert resp.status.message, "an error needs a message"
    if needle is not None:
        assert needle in resp.status.message, resp.status.message
    if rid is not None:
        assert resp.id == rid


def expect(c, code, fn, *args, needle=None, **kw):
    """Runs a wire.Conn call that must fail with `code`."""
    with pytest.raises(wire.ServerError) as e:
        fn(*args, **kw)
    assert e.value.code == code, (pb.StatusCode.Name(e.value.code), e.value.message)
    assert e.value.message
    if needle is not None:
        assert needle in e.value.message, e.value.message
    return e.value


def fresh_conn_works(port, auth=""):
    c = wire.Conn(port, token=auth)
    try:
        r = pb.Request()
        r.ping.SetInParent()
        c.call(r)
        h = c.tensor(np.arange(3, dtype=np.int64))
        assert c.get(h)[0].tolist() == [0, 1, 2]
    finally:
        c.close()
    return True


# ---------------------------------------------------------------- the canary

class Canary:
    """A session with tensors of every dtype, a requires_grad leaf and its .grad."""

    def __init__(self, port, auth=""):
        self.port = port
        self.c = wire.Conn(port, token=auth)
        rng = np.random.default_rng(8)
        c = self.c
        self.handles = [
            c.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
            c.tensor(np.array([np.nan, np.inf, -np.inf, -0.0, 1e-308], dtype=np.float64)),
            c.tensor(rng.integers(-2**31, 2**31 - 1, size=(2, 2, 2), dtype=np.int32)),
            c.tensor(np.array([-2**63, 2**63 - 1, 0, 7], dtype=np.int64)),
            c.tensor(np.array([[True, False, True]])),
            c.tensor(np.float64(3.25)),          # 0-dim
            c.tensor(np.zeros((0, 5), dtype=np.float32)),  # empty
        ]
        w = c.tensor(np.array([1.0, -2.0, 3.0], dtype=np.float32), requires_grad=True)
        sq = c.op("mul", [wire.H(w), wire.H(w)])
        loss = c.op("sum", [wire.H(sq)])
        c.backward(loss)
        g = c.grad(w)
        assert g is not None
        self.handles += [w, g]
        self.snap = self.snapshot()
        assert self.snap[w][2] and self.snap[g][0].tolist() == [2.0, -4.0, 6.0]

    def snapshot(self):
        out = {}
        for h in self.handles:
            arr, name = self.c.get(h)
            info = self.c.info(h)
            out[h] = (arr, name, info.requires_grad, tuple(info.shape), arr.tobytes())
        return out

    def check(self):
        now = self.snapshot()
        for h, (arr, name, rg, shape, raw) in self.snap.items():
            a2, n2, rg2, s2, raw2 = now[h]
            assert (n2, rg2, s2) == (name, rg, shape), "canary tensor %d changed metadata" % h
            assert raw2 == raw, "canary tensor %d changed bytes" % h
        # the grad still belongs to the leaf
        assert self.c.info(self.handles[-2]).requires_grad

    def close(self):
        self.c.close()


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def data_dir():
    d = tempfile.mkdtemp(prefix="tensord-hostile-")
    yield d


@pytest.fixture(scope="module")
def md(data_dir):
    """The module's daemon: defaults plus --data-dir."""
    d = Daemon("--data-dir", data_dir, "--idle-timeout", "5s")
    assert d.port is not None, "tensord did not start"
    yield d
    assert d.stop() == 0, "tensord did not exit cleanly"


@pytest.fixture(scope="module")
def canary(md):
    c = Canary(md.port)
    yield c
    c.close()


@pytest.fixture
def port(md, canary):
    """Every case on the module daemon: afterwards the daemon serves and the canary is intact."""
    assert md.proc.poll() is None
    yield md.port
    assert md.proc.poll() is None, "tensord died:\n" + md.text()[-3000:]
    assert fresh_conn_works(md.port)
    canary.check()


@pytest.fixture
def c(port):
    conn = wire.Conn(port)
    yield conn
    conn.close()


@pytest.fixture
def own():
    """Starts daemons with special flags, each with a canary; checks and stops them after."""
    started = []

    def start(*flags, auth=""):
        d = Daemon(*flags)
        assert d.port is not None, "tensord did not start: " + d.text()
        can = Canary(d.port, auth=auth)
        started.append((d, can, auth))
        return d, can
    yield start
    for d, can, auth in started:
        assert d.proc.poll() is None, "tensord died:\n" + d.text()[-3000:]
        assert fresh_conn_works(d.port, auth)
        can.check()
        can.close()
        assert d.stop() == 0


# ================================================================= framing

def test_frame_zero_meta_len_is_a_protocol_error_and_connection_survives(port):
    r = Raw(port)
    r.send(HEADER.pack(0, 0))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, "empty request", rid=0)
    assert r.ping_ok()


def test_frame_zero_meta_with_data_is_a_protocol_error(port):
    r = Raw(port)
    r.send(HEADER.pack(0, 16) + b"\x00" * 16)
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_frame_meta_len_over_1mib_is_refused_then_closed(port):
    r = Raw(port)
    r.send(HEADER.pack(MAX_META + 1, 0))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, "exceeds the maximum", rid=0)
    assert r.expect_eof()


def test_frame_meta_len_u32_max_is_refused_then_closed(port):
    r = Raw(port)
    r.send(HEADER.pack(0xFFFFFFFF, 0) + b"\x08\x01")
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, rid=0)
    assert r.expect_eof()


def test_frame_data_len_u64_max_is_refused_before_allocation(port):
    r = Raw(port)
    r.send(frame(req(id=2, create={"out": 5, "dtype": pb.FLOAT32, "shape": [4]}),
                 data_len=U64_MAX))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, "max_frame_bytes", rid=0)
    assert r.expect_eof()


def test_frame_data_len_just_over_the_default_1g_limit_is_refused(port):
    r = Raw(port)
    r.send(frame(req(id=2, ping={}), data_len=(1 << 30) + 1))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, rid=0)
    assert r.expect_eof()


def test_frame_meta_longer_than_small_frame_limit_is_refused(own):
    d, _ = own("--max-frame-bytes", "4K")
    r = Raw(d.port)
    meta = req(id=2, free={"handles": list(range(1 << 20, (1 << 20) + 2000))}).SerializeToString()
    assert len(meta) > 4096
    r.send(frame(meta))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, "max_frame_bytes 4096", rid=0)
    assert r.expect_eof()


def test_frame_meta_plus_data_one_over_small_frame_limit_is_refused(own):
    d, _ = own("--max-frame-bytes", "4K")
    r = Raw(d.port)
    meta = req(id=2, create={"out": 5, "dtype": pb.BOOL, "shape": [4096]}).SerializeToString()
    r.send(HEADER.pack(len(meta), 4096 - len(meta) + 1))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, rid=0)
    assert r.expect_eof()


def test_frame_exactly_at_small_frame_limit_is_accepted(own):
    d, _ = own("--max-frame-bytes", "4K")
    r = Raw(d.port)
    n = 4000
    meta = req(id=2, create={"out": 5, "dtype": pb.BOOL, "shape": [n]}).SerializeToString()
    n = 4096 - len(meta)
    meta = req(id=2, create={"out": 5, "dtype": pb.BOOL, "shape": [n]}).SerializeToString()
    assert len(meta) + n == 4096
    resp, _ = r.call(req(id=2, create={"out": 5, "dtype": pb.BOOL, "shape": [n]}), b"\x01" * n)
    assert resp.status.code == pb.OK, resp.status.message


def test_frame_truncated_header_then_eof_closes_quietly(port):
    r = Raw(port)
    r.send(HEADER.pack(20, 0)[:7])
    r.s.shutdown(socket.SHUT_WR)
    assert r.expect_eof()
    assert r.buf == b""


def test_frame_truncated_meta_then_eof_closes_quietly(port):
    r = Raw(port)
    meta = req(id=2, ping={}).SerializeToString()
    r.send(HEADER.pack(len(meta) + 50, 0) + meta)
    r.s.shutdown(socket.SHUT_WR)
    assert r.expect_eof()
    assert r.buf == b""


def test_frame_truncated_data_then_eof_frees_the_buffer(port, c):
    # The half-received data section is not charged to any quota (server_bytes); the daemon's
    # allocated_bytes counts it, and must come back down once the connection is gone.
    r = Raw(port)  # its session (kept for the TTL after the close) is in `before`
    c.stats()  # this connection's own buffers settle with its first request
    before = c.stats().allocated_bytes
    meta = req(id=2, create={"out": 5, "dtype": pb.FLOAT32, "shape": [1 << 20]})
    r.send(frame(meta, b"\x00" * 1000, data_len=4 << 20))
    deadline = time.time() + 5
    while c.stats().allocated_bytes < before + (4 << 20) and time.time() < deadline:
        time.sleep(0.01)
    assert c.stats().allocated_bytes >= before + (4 << 20)  # the 4 MiB buffer is held
    r.s.shutdown(socket.SHUT_WR)
    assert r.expect_eof()
    # released with the connection's own buffers: below the level before the frame arrived
    while c.stats().allocated_bytes > before and time.time() < deadline:
        time.sleep(0.01)
    assert c.stats().allocated_bytes <= before


def test_frame_stalled_mid_frame_is_closed_by_idle_timeout(own):
    d, _ = own("--idle-timeout", "300ms")
    r = Raw(d.port)
    r.send(HEADER.pack(40, 0) + b"\x08")
    t0 = time.time()
    assert r.expect_eof(timeout=5)
    assert 0.2 < time.time() - t0 < 4
    assert r.buf == b""


def test_frame_header_split_byte_by_byte_is_reassembled(port):
    r = Raw(port)
    b = frame(req(id=9, ping={}))
    for i in range(len(b)):
        r.send(b[i:i + 1])
        time.sleep(0.002)
    resp, _ = r.recv()
    assert resp.id == 9 and resp.status.code == pb.OK


def test_frame_create_split_inside_header_and_data_is_reassembled(port):
    r = Raw(port)
    data = np.arange(6, dtype=np.int32).tobytes()
    b = frame(req(id=3, create={"out": 5, "dtype": pb.INT32, "shape": [2, 3]}), data)
    for piece in (b[:5], b[5:12], b[12:20], b[20:-7], b[-7:]):
        r.send(piece)
        time.sleep(0.01)
    resp, _ = r.recv()
    assert resp.status.code == pb.OK, resp.status.message
    resp, data2 = r.call(req(id=4, get={"handle": 5}))
    assert data2 == data


def test_frame_data_section_shorter_than_shape_needs(port):
    r = Raw(port)
    resp, _ = r.call(req(id=3, create={"out": 5, "dtype": pb.FLOAT32, "shape": [2, 2]}),
                     b"\x00" * 8)
    assert_err(resp, pb.INVALID_ARGUMENT, "data section has 8 bytes", rid=3)
    assert r.ping_ok()


def test_frame_data_section_longer_than_shape_needs(port):
    r = Raw(port)
    resp, _ = r.call(req(id=3, create={"out": 5, "dtype": pb.FLOAT32, "shape": [2, 2]}),
                     b"\x00" * 17)
    assert_err(resp, pb.INVALID_ARGUMENT, "needs 16", rid=3)
    assert r.ping_ok()


def test_frame_data_section_on_a_request_that_takes_none(port):
    r = Raw(port)
    resp, _ = r.call(req(id=3, ping={}), b"junk")
    assert_err(resp, pb.PROTOCOL_ERROR, "data section", rid=3)
    assert r.ping_ok()


def test_frame_data_len_swallowing_the_next_frame_fails_only_that_request(port):
    r = Raw(port)
    ping = frame(req(id=4, ping={}))
    b = frame(req(id=3, create={"out": 5, "dtype": pb.INT32, "shape": [1]}), b"\x01\x00\x00\x00",
              data_len=4 + len(ping))
    r.send(b + ping)
    resp, _ = r.recv()
    assert_err(resp, pb.INVALID_ARGUMENT, "data section", rid=3)
    assert r.ping_ok(rid=5)


def test_frame_garbage_header_after_a_valid_frame(port):
    r = Raw(port)
    r.send(frame(req(id=3, ping={})) + b"\xff" * 12)
    resp, _ = r.recv()
    assert resp.id == 3 and resp.status.code == pb.OK
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, rid=0)
    assert r.expect_eof()


def test_frame_garbage_body_after_a_valid_frame(port):
    r = Raw(port)
    r.send(frame(req(id=3, ping={})) + frame(b"\xff\xfe\xfd\xfc\xfb"))
    resp, _ = r.recv()
    assert resp.id == 3 and resp.status.code == pb.OK
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, "malformed", rid=0)
    assert r.ping_ok()


def test_frame_many_pipelined_frames_in_one_write_answered_in_order(port):
    r = Raw(port)
    blob = b"".join(frame(req(id=100 + i, ping={})) for i in range(500))
    r.send(blob)
    for i in range(500):
        resp, _ = r.recv()
        assert resp.id == 100 + i and resp.status.code == pb.OK


def test_frame_error_replies_keep_request_order_behind_queued_work(port):
    """A bad frame behind heavy queued work must not overtake its reply (in-order rule)."""
    r = Raw(port, timeout=120)  # the matmul is slow under valgrind
    n = 384
    big = np.ones((n, n), dtype=np.float32).tobytes()
    r.call(req(id=2, create={"out": 1, "dtype": pb.FLOAT32, "shape": [n, n]}), big)
    mm = pb.Request()
    mm.id = 3
    mm.run_op.out = 2
    mm.run_op.op = pb.OP_MATMUL
    mm.run_op.inputs.add().handle = 1
    mm.run_op.inputs.add().handle = 1
    r.send(frame(mm) + frame(req(id=4, ping={}), b"xx") + frame(b"\xff\xff") +
           frame(req(id=5, ping={})))
    got = [r.recv()[0] for _ in range(4)]
    assert [g.id for g in got] == [3, 4, 0, 5], [(g.id, g.status.message) for g in got]
    assert got[0].status.code == pb.OK
    assert got[1].status.code == pb.PROTOCOL_ERROR
    assert got[2].status.code == pb.PROTOCOL_ERROR


# ================================================================= protobuf

def test_pb_random_garbage_is_a_protocol_error(port):
    r = Raw(port)
    garbage = bytes(np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8))
    r.send(frame(b"\xff" + garbage))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_garbage_before_hello_is_a_protocol_error(port):
    r = Raw(port, hello=False)
    r.send(frame(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    resp, _ = r.call(Raw.hello_req())
    assert resp.status.code == pb.OK


def test_pb_wrong_wire_type_for_request_id(port):
    r = Raw(port)
    r.send(frame(field(1, 2, b"abc") + field(12, 2, b"")))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_wrong_wire_type_for_body_message(port):
    r = Raw(port)
    r.send(frame(field(1, 0, 5) + field(3, 0, 77)))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_wrong_wire_type_inside_create_shape(port):
    r = Raw(port)
    create = field(1, 0, 5) + field(2, 0, pb.INT32) + field(3, 5, b"\x01\x00\x00\x00")
    r.send(frame(field(1, 0, 6) + field(3, 2, create)))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_truncated_varint_is_a_protocol_error(port):
    r = Raw(port)
    r.send(frame(b"\x08\xff\xff"))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_overlong_varint_is_a_protocol_error(port):
    r = Raw(port)
    r.send(frame(b"\x08" + b"\xff" * 11 + b"\x01" + field(12, 2, b"")))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_submessage_length_past_the_end(port):
    r = Raw(port)
    r.send(frame(b"\x08\x05" + b"\x1a" + varint(1 << 40) + b"\x08\x01"))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_unknown_fields_are_ignored(port):
    r = Raw(port)
    meta = (field(1, 0, 41) + field(99, 0, 12345) + field(1000, 2, b"hello") +
            field(536870911, 5, b"\x01\x02\x03\x04") + field(12, 2, field(7, 1, b"\x00" * 8)))
    r.send(frame(meta))
    resp, _ = r.recv()
    assert resp.id == 41 and resp.status.code == pb.OK, resp.status.message


def test_pb_unknown_field_inside_create_is_ignored(port):
    r = Raw(port)
    create = (field(1, 0, 5) + field(2, 0, pb.INT64) + field(3, 2, varint(2)) +
              field(77, 2, b"\x00" * 30))
    r.send(frame(field(1, 0, 6) + field(3, 2, create), np.array([4, 5]).tobytes()))
    resp, _ = r.recv()
    assert resp.status.code == pb.OK, resp.status.message
    assert list(resp.tensor.shape) == [2]


def test_pb_field_number_zero_is_a_protocol_error(port):
    r = Raw(port)
    r.send(frame(b"\x00\x01" + field(12, 2, b"")))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, rid=0)
    assert r.ping_ok()


def test_pb_deeply_nested_unknown_groups_do_not_crash(port):
    r = Raw(port)
    depth = 100000
    meta = field(1, 0, 8) + (varint(50 << 3 | 3) * depth) + (varint(50 << 3 | 4) * depth)
    meta += field(12, 2, b"")
    assert len(meta) < MAX_META
    r.send(frame(meta))
    resp, _ = r.recv()
    assert resp.status.code in (pb.PROTOCOL_ERROR, pb.OK)
    assert r.ping_ok()


def test_pb_deeply_nested_length_delimited_unknown_field_is_ignored(port):
    r = Raw(port)
    inner = b""
    for _ in range(2000):
        inner = field(15, 2, inner)
    r.send(frame(field(1, 0, 8) + field(99, 2, inner) + field(12, 2, b"")))
    resp, _ = r.recv()
    assert resp.id == 8 and resp.status.code == pb.OK


def test_pb_deeply_nested_known_submessages_repeated(port):
    r = Raw(port)
    # Request.run_op repeated 10000 times: protobuf merges them; the op has no inputs.
    body = field(2, 0, pb.OP_NEG)
    meta = field(1, 0, 8) + field(8, 2, body) * 10000
    r.send(frame(meta))
    resp, _ = r.recv()
    assert_err(resp, pb.INVALID_ARGUMENT, "takes 1 inputs", rid=8)


def test_pb_request_without_body_is_unknown_kind(port):
    r = Raw(port)
    resp, _ = r.call(req(id=12))
    assert_err(resp, pb.UNKNOWN_OP, "unknown request kind", rid=12)


def test_pb_request_with_future_body_field_is_unknown_kind(port):
    r = Raw(port)
    r.send(frame(field(1, 0, 13) + field(60, 2, b"\x08\x01")))
    resp, _ = r.recv()
    assert_err(resp, pb.UNKNOWN_OP, rid=13)


def test_pb_two_bodies_in_one_request_last_one_wins(port):
    r = Raw(port)
    meta = field(1, 0, 14) + field(13, 2, b"") + field(12, 2, b"")
    r.send(frame(meta))
    resp, _ = r.recv()
    assert resp.id == 14 and resp.status.code == pb.OK
    assert not resp.HasField("stats")


def test_pb_oneof_body_switched_from_create_with_data_is_refused(port):
    r = Raw(port)
    create = field(1, 0, 5) + field(2, 0, pb.INT32) + field(3, 2, varint(1))
    meta = field(1, 0, 15) + field(3, 2, create) + field(9, 2, field(1, 0, 5))
    r.send(frame(meta, b"\x00" * 4))
    resp, _ = r.recv()
    assert_err(resp, pb.PROTOCOL_ERROR, "data section", rid=15)


def test_pb_unknown_dtype_enum_value(port, c):
    r = Raw(port)
    resp, _ = r.call(req(id=3, create={"out": 5, "dtype": 99, "shape": [1]}), b"\x00" * 8)
    assert_err(resp, pb.DTYPE_ERROR, "unknown dtype 99", rid=3)


def test_pb_negative_dtype_enum_value(port):
    r = Raw(port)
    create = field(1, 0, 5) + field(2, 0, (1 << 64) - 1) + field(3, 2, varint(1))
    r.send(frame(field(1, 0, 3) + field(3, 2, create), b"\x00" * 4))
    resp, _ = r.recv()
    assert resp.status.code in (pb.DTYPE_ERROR, pb.PROTOCOL_ERROR), resp.status.message


def test_pb_unknown_op_enum_value(port, c):
    h = c.tensor(np.ones(2, np.float32))
    r = c.op_request("neg", [wire.H(h)])
    r.run_op.op = 4242
    expect(c, pb.UNKNOWN_OP, c.call, r, needle="unknown op code 4242")


def test_pb_unknown_distribution_enum_value(port):
    r = Raw(port)
    resp, _ = r.call(req(id=3, rand={"out": 5, "shape": [2], "distribution": 9}))
    assert_err(resp, pb.INVALID_ARGUMENT, "distribution", rid=3)


def test_pb_one_million_packed_dims_in_create(port):
    r = Raw(port)
    m = req(id=3, create={"out": 5, "dtype": pb.BOOL, "shape": [1] * 1000000})
    assert len(m.SerializeToString()) < MAX_META
    resp, _ = r.call(m)
    assert_err(resp, pb.INVALID_ARGUMENT, "1000000 dims", rid=3)


def test_pb_one_million_unpacked_dims_exceed_the_meta_limit(port):
    r = Raw(port)
    create = field(1, 0, 5) + field(2, 0, pb.BOOL) + field(3, 0, 1) * 1000000
    r.send(frame(field(1, 0, 3) + field(3, 2, create)))
    resp, _ = r.recv()
    assert_err(resp, pb.LIMIT_EXCEEDED, rid=0)
    assert r.expect_eof()


def test_pb_two_hundred_thousand_op_inputs(port, c):
    h = c.tensor(np.ones(2, np.float32))
    r = c.op_request("cat", [wire.H(h)] * 200000)
    assert len(r.SerializeToString()) < MAX_META
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="inputs")


def test_pb_one_hundred_thousand_arg_dims(port, c):
    h = c.tensor(np.ones(2, np.float32))
    expect(c, pb.INVALID_ARGUMENT, c.op, "sum", [wire.H(h)], dims=[0] * 100000)


def test_pb_huge_free_list_of_foreign_handles_is_harmless(port, c, canary):
    c.free(*(list(canary.handles) * 10000))
    canary.check()


# ================================================================= semantics

def create_req(c, dtype, shape, data):
    r = pb.Request()
    r.create.out = c.handle()
    r.create.dtype = dtype
    r.create.shape.extend(shape)
    return r, data


def test_sem_negative_dim(port, c):
    r, d = create_req(c, pb.FLOAT32, [2, -3], b"")
    expect(c, pb.INVALID_ARGUMENT, c.call, r, d, needle="negative dimension -3")


def test_sem_int64_min_dim_in_full(port, c):
    r = pb.Request()
    r.full.out = c.handle()
    r.full.shape.extend([-(1 << 63)])
    r.full.value.i = 0
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="negative dimension")


def test_sem_overflowing_dims(port, c):
    r = pb.Request()
    r.full.out = c.handle()
    r.full.shape.extend([1 << 31, 1 << 31, 1 << 31])
    r.full.value.f = 1.0
    expect(c, pb.LIMIT_EXCEEDED, c.call, r, needle="overflows")


def test_sem_bytes_overflow_2_pow_62_float64(port, c):
    r = pb.Request()
    r.full.out = c.handle()
    r.full.dtype = pb.FLOAT64
    r.full.shape.extend([1 << 62])
    r.full.value.f = 1.0
    expect(c, pb.LIMIT_EXCEEDED, c.call, r, needle="overflows")


def test_sem_huge_but_representable_tensor_exceeds_max_tensor_bytes(port, c):
    r = pb.Request()
    r.full.out = c.handle()
    r.full.shape.extend([1 << 40])
    r.full.value.f = 1.0
    expect(c, pb.LIMIT_EXCEEDED, c.call, r, needle="exceeds")


def test_sem_rank_nine(port, c):
    r, d = create_req(c, pb.BOOL, [1] * 9, b"\x00")
    expect(c, pb.INVALID_ARGUMENT, c.call, r, d, needle="at most 8")


def test_sem_rank_nine_through_reshape_and_unsqueeze(port, c):
    h = c.tensor(np.ones([1] * 8, np.float32))
    expect(c, pb.INVALID_ARGUMENT, c.op, "reshape", [wire.H(h)], dims=[1] * 9)
    with pytest.raises(wire.ServerError):
        c.op("unsqueeze", [wire.H(h)], dim=0)


def test_sem_dtype_unspecified_in_create(port, c):
    r, d = create_req(c, pb.DTYPE_UNSPECIFIED, [1], b"\x00" * 4)
    expect(c, pb.DTYPE_ERROR, c.call, r, d, needle="dtype must be given")


def test_sem_dtype_out_of_range_in_op_args(port, c):
    h = c.tensor(np.ones(2, np.float32))
    r = c.op_request("to", [wire.H(h)])
    r.run_op.args.dtype = 17
    expect(c, pb.DTYPE_ERROR, c.call, r, needle="unknown dtype 17")


def test_sem_zero_size_dim_with_overflowing_other_dims(port, c):
    """Empty, but the other sizes multiply past 2^63: their strides would overflow (UB)."""
    for shape in ([0, 1 << 40, 1 << 40], [1 << 40, 1 << 40, 0]):
        r, d = create_req(c, pb.FLOAT32, shape, b"")
        expect(c, pb.LIMIT_EXCEEDED, c.call, r, d, needle="overflows")


def test_sem_zero_size_dim_with_huge_other_dims(port, c):
    r, d = create_req(c, pb.FLOAT32, [0, 1 << 30, 1 << 20], b"")
    h = c.call(r, d).tensor.handle
    s = c.op("sum", [wire.H(h)], dims=[1])
    assert list(c.info(s).shape) == [0, 1 << 20]
    t = c.op("transpose", [wire.H(h)], dim=0, dim2=2)
    ct = c.op("contiguous", [wire.H(t)])
    assert list(c.info(ct).shape) == [1 << 20, 1 << 30, 0]
    n = c.op("narrow", [wire.H(h)], dim=1, start=(1 << 30) - 5, end=5)
    assert list(c.info(n).shape) == [0, 5, 1 << 20]
    r = pb.Request()
    r.get.handle = ct
    assert c.call(r).tensor.nbytes == 0 and c.last_data == b""
    assert "size=" in c.format(h)


def test_sem_unknown_handle(port, c):
    expect(c, pb.UNKNOWN_HANDLE, c.op, "neg", [wire.H(123456789)], needle="unknown handle")


def test_sem_foreign_handles_are_invisible(port, c, canary):
    for h in canary.handles:
        expect(c, pb.UNKNOWN_HANDLE, c.get, h)
        expect(c, pb.UNKNOWN_HANDLE, c.op, "zero", [wire.H(h)], inplace=True)
        r = pb.Request()
        r.write.handle = h
        expect(c, pb.UNKNOWN_HANDLE, c.call, r, b"\xff" * 4)


def test_sem_freed_handle(port, c):
    h = c.tensor(np.ones(2, np.float32))
    c.free(h)
    expect(c, pb.UNKNOWN_HANDLE, c.get, h)
    c.free(h)  # idempotent


def test_sem_handle_zero_as_output(port, c):
    r = pb.Request()
    r.create.out = 0
    r.create.dtype = pb.INT32
    r.create.shape.append(1)
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"\x00" * 4, needle="reserved")


def test_sem_handle_u64_max_as_output_and_input(port, c):
    r = pb.Request()
    r.create.out = U64_MAX
    r.create.dtype = pb.INT32
    r.create.shape.append(1)
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"\x00" * 4, needle="reserved")
    expect(c, pb.UNKNOWN_HANDLE, c.get, U64_MAX)
    expect(c, pb.UNKNOWN_HANDLE, c.get, 0)


def test_sem_reuse_of_a_handle_id_keeps_the_original(port, c):
    h = c.tensor(np.array([1, 2, 3], np.int64))
    r = pb.Request()
    r.create.out = h
    r.create.dtype = pb.FLOAT64
    r.create.shape.append(1)
    expect(c, pb.HANDLE_IN_USE, c.call, r, b"\x00" * 8)
    expect(c, pb.HANDLE_IN_USE, c.call, _with_out(c.op_request("neg", [wire.H(h)]), h))
    assert c.get(h)[0].tolist() == [1, 2, 3]


def _with_out(r, out):
    r.run_op.out = out
    return r


def test_sem_input_of_a_failed_op_reports_the_cause(port, c):
    a = c.tensor(np.ones(3, np.float32))
    b = c.tensor(np.ones(4, np.float32))
    bad = c.send(c.op_request("add", [wire.H(a), wire.H(b)]))
    r = c.op_request("neg", [wire.H(c.next_handle - 1)])
    p2 = c.send(r)
    c.sync()
    assert bad.error.code == pb.SHAPE_MISMATCH
    assert p2.error.code == pb.INPUT_FAILED and "must match" in p2.error.message


def test_sem_inplace_on_an_expanded_view(port, c):
    h = c.tensor(np.array([[1.0], [2.0]], np.float32))
    e = c.op("expand", [wire.H(h)], dims=[2, 3])
    expect(c, pb.INVALID_ARGUMENT, c.op, "add", [wire.H(e), 1.0], inplace=True,
           needle="more than one element")
    assert c.get(h)[0].tolist() == [[1.0], [2.0]]


def test_sem_write_into_an_expanded_view(port, c):
    h = c.tensor(np.array([[1.0], [2.0]], np.float32))
    e = c.op("expand", [wire.H(h)], dims=[2, 3])
    r = pb.Request()
    r.write.handle = e
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"\x00" * 4, needle="contiguous")


def test_sem_matmul_shape_mismatch(port, c):
    a = c.tensor(np.ones((2, 3), np.float32))
    b = c.tensor(np.ones((4, 2), np.float32))
    expect(c, pb.SHAPE_MISMATCH, c.op, "matmul", [wire.H(a), wire.H(b)],
           needle="cannot be multiplied")


def test_sem_bmm_and_mm_rank_and_batch_mismatch(port, c):
    a = c.tensor(np.ones((2, 2, 3), np.float32))
    b = c.tensor(np.ones((3, 3, 2), np.float32))
    with pytest.raises(wire.ServerError) as e:
        c.op("bmm", [wire.H(a), wire.H(b)])
    assert e.value.code in (pb.SHAPE_MISMATCH, pb.INVALID_ARGUMENT)
    with pytest.raises(wire.ServerError) as e:
        c.op("mm", [wire.H(a), wire.H(a)])
    assert e.value.code in (pb.SHAPE_MISMATCH, pb.INVALID_ARGUMENT)


def test_sem_broadcast_mismatch(port, c):
    a = c.tensor(np.ones((2, 3), np.float32))
    b = c.tensor(np.ones((2, 4), np.float32))
    expect(c, pb.SHAPE_MISMATCH, c.op, "mul", [wire.H(a), wire.H(b)],
           needle="must match the size of tensor b")


@pytest.mark.parametrize("op", ["floor_divide", "remainder"])
@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_sem_integer_division_by_zero(port, c, op, dt):
    a = c.tensor(np.array([7, -7, 0], dt))
    z = c.tensor(np.array([0, 0, 0], dt))
    expect(c, pb.INVALID_ARGUMENT, c.op, op, [wire.H(a), wire.H(z)], needle="ZeroDivisionError")
    expect(c, pb.INVALID_ARGUMENT, c.op, op, [wire.H(a), 0], needle="ZeroDivisionError")
    expect(c, pb.INVALID_ARGUMENT, c.op, op, [wire.H(a), 0], inplace=True)
    assert c.get(a)[0].tolist() == [7, -7, 0]


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_sem_integer_min_divided_by_minus_one_does_not_trap(port, c, dt):
    lo = np.iinfo(dt).min
    a = c.tensor(np.array([lo, 5], dt))
    m = c.tensor(np.array([-1, -1], dt))
    assert c.get(c.op("floor_divide", [wire.H(a), wire.H(m)]))[0].tolist() == [lo, -5]
    assert c.get(c.op("remainder", [wire.H(a), wire.H(m)]))[0].tolist() == [0, 0]
    assert c.get(c.op("div", [wire.H(a), wire.H(m)]))[0].tolist() == [-float(lo), -5.0]


def test_sem_integer_pow_negative_exponent(port, c):
    a = c.tensor(np.array([2, 3], np.int64))
    expect(c, pb.INVALID_ARGUMENT, c.op, "pow", [wire.H(a), -1],
           needle="Integers to negative integer powers are not allowed")


def test_sem_nan_and_inf_inputs_flow_like_torch(port, c):
    x = c.tensor(np.array([np.nan, np.inf, -np.inf, 1.0], np.float32))
    assert c.get(c.op("argmax", [wire.H(x)]))[0].tolist() == 0
    s = c.get(c.op("sum", [wire.H(x)]))[0]
    assert np.isnan(s)
    cl = c.get(c.op("clamp", [wire.H(x)], min=0.0, max=1.0))[0]
    assert np.isnan(cl[0]) and cl[1:].tolist() == [1.0, 0.0, 1.0]
    sm = c.get(c.op("softmax", [wire.H(x)], dim=0))[0]
    assert np.isnan(sm).all()
    assert "nan" in c.format(x) and "inf" in c.format(x)


def test_sem_nan_and_inf_cast_to_integers_does_not_crash(port, c):
    x = c.tensor(np.array([np.nan, np.inf, -np.inf, 3e30], np.float64))
    for dt in ("int32", "int64", "bool"):
        c.get(c.op("to", [wire.H(x)], dtype=dt))


def test_sem_nan_and_inf_arange_bounds(port, c):
    for end, step in ((float("nan"), 1.0), (float("inf"), 1.0), (5.0, float("nan")),
                      (5, 0)):
        r = pb.Request()
        r.arange.out = c.handle()
        wire.scalar(end, r.arange.end)
        wire.scalar(step, r.arange.step)
        with pytest.raises(wire.ServerError) as e:
            c.call(r)
        assert e.value.code in (pb.INVALID_ARGUMENT, pb.LIMIT_EXCEEDED), e.value.message


def test_sem_arange_with_too_many_elements(port, c):
    r = pb.Request()
    r.arange.out = c.handle()
    r.arange.end.i = 1 << 62
    expect(c, pb.LIMIT_EXCEEDED, c.call, r)


def test_sem_get_byte_range_out_of_bounds(port, c):
    h = c.tensor(np.arange(4, dtype=np.int32))
    r = pb.Request()
    r.get.handle = h
    r.get.offset = 17
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="outside")
    r.get.offset = U64_MAX
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="outside")
    r.get.offset = 12
    r.get.length = U64_MAX
    info = c.call(r).tensor
    assert (info.offset, info.length) == (12, 4) and c.last_data == b"\x03\x00\x00\x00"


def test_sem_write_byte_range_out_of_bounds(port, c):
    h = c.tensor(np.arange(4, dtype=np.int32))
    r = pb.Request()
    r.write.handle = h
    r.write.offset = 12
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"\x00" * 8, needle="outside")
    r.write.offset = U64_MAX - 3
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"\x00" * 8, needle="outside")
    r.write.offset = 17
    expect(c, pb.INVALID_ARGUMENT, c.call, r, b"", needle="outside")
    assert c.get(h)[0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b", ".hidden", "",
                                  "x" * 129, "bad\nname", "..", "nul\x01"])
def test_sem_save_load_path_traversal_names(port, c, data_dir, name):
    h = c.tensor(np.ones(2, np.float32))
    r = pb.Request()
    r.save.file = name
    t = r.save.tensors.add()
    t.name, t.handle = "w", h
    expect(c, pb.INVALID_ARGUMENT, c.call, r)
    r = pb.Request()
    r.load.file = name
    expect(c, pb.INVALID_ARGUMENT, c.call, r)
    assert not os.path.exists(os.path.join(data_dir, "escape.safetensors"))
    assert not os.path.exists(os.path.join(os.path.dirname(data_dir), "escape.safetensors"))


def _st(header_obj, payload=b"", header_bytes=None):
    import json
    hb = json.dumps(header_obj).encode() if header_bytes is None else header_bytes
    return struct.pack("<Q", len(hb)) + hb + payload


@pytest.mark.parametrize("kind,blob", [
    ("empty_file", b""),
    ("short_length", b"\x01\x02\x03"),
    ("header_len_u64_max", struct.pack("<Q", U64_MAX) + b"{}"),
    ("header_len_past_eof", struct.pack("<Q", 1000) + b"{}"),
    ("header_not_json", _st(None, header_bytes=b"{not json at all")),
    ("header_not_object", _st([1, 2, 3])),
    ("dtype_unknown", _st({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
                          b"\x00" * 8)),
    ("offsets_past_eof", _st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}},
                             b"\x00" * 16)),
    ("offsets_reversed", _st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}},
                             b"\x00" * 8)),
    ("offsets_mismatch_shape", _st({"w": {"dtype": "F32", "shape": [3],
                                          "data_offsets": [0, 8]}}, b"\x00" * 8)),
    ("negative_shape", _st({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
                           b"\x00" * 4)),
    ("rank_nine", _st({"w": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}},
                      b"\x00" * 4)),
    ("shape_overflow", _st({"w": {"dtype": "F64", "shape": [1 << 62, 4],
                                  "data_offsets": [0, 8]}}, b"\x00" * 8)),
    ("deep_nesting", _st(None, header_bytes=b"[" * 100000 + b"]" * 100000)),
])
def test_sem_load_corrupt_file(port, c, data_dir, kind, blob):
    own = os.path.join(data_dir, "files", hashlib.sha256(c.token).hexdigest())  # c's files
    os.makedirs(own, exist_ok=True)
    with open(os.path.join(own, "corrupt_%s.safetensors" % kind), "wb") as f:
        f.write(blob)
    r = pb.Request()
    r.load.file = "corrupt_" + kind
    t = r.load.tensors.add()
    t.name, t.handle = "w", c.handle()
    with pytest.raises(wire.ServerError) as e:
        c.call(r)
    assert e.value.code in (pb.INVALID_ARGUMENT, pb.IO_ERROR, pb.LIMIT_EXCEEDED), \
        (pb.StatusCode.Name(e.value.code), e.value.message)
    assert e.value.message and "No such file" not in e.value.message  # the file was read


def test_sem_load_missing_file_and_missing_tensor(port, c):
    r = pb.Request()
    r.load.file = "never_saved"
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="No such file")
    h = c.tensor(np.ones(2, np.float32))
    s = pb.Request()
    s.save.file = "one"
    t = s.save.tensors.add()
    t.name, t.handle = "w", h
    c.call(s)
    r = pb.Request()
    r.load.file = "one"
    t = r.load.tensors.add()
    t.name, t.handle = "nope", c.handle()
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="no tensor named")
    t.name, t.handle = "w", h
    expect(c, pb.HANDLE_IN_USE, c.call, r)


def test_sem_save_with_two_hundred_thousand_names(port, c):
    r = pb.Request()
    r.save.file = "many"
    for i in range(200000):
        t = r.save.tensors.add()
        t.handle = 1
    expect(c, pb.LIMIT_EXCEEDED, c.call, r, needle="too many tensors")


def test_sem_scalar_where_a_tensor_is_required(port, c):
    h = c.tensor(np.ones((2, 2), np.float32))
    for op, inputs in (("cat", [wire.H(h), 1.0]), ("stack", [1.0, wire.H(h)]),
                       ("mm", [wire.H(h), 2.0]), ("bmm", [wire.H(h), 2.0]),
                       ("outer", [wire.H(h), 2.0]), ("mse_loss", [wire.H(h), 2.0]),
                       ("cross_entropy", [wire.H(h), 1]), ("linear", [wire.H(h), 2.0]),
                       ("matmul", [wire.H(h), 2.0]), ("copy", [wire.H(h), 2.0]),
                       ("where", [wire.H(h), 1.0, 2.0]), ("neg", [3.0])):
        with pytest.raises(wire.ServerError) as e:
            c.op(op, inputs)
        assert e.value.code in (pb.INVALID_ARGUMENT, pb.DTYPE_ERROR, pb.SHAPE_MISMATCH), \
            (op, e.value.message)


def test_sem_cat_and_stack_of_nothing(port, c):
    for op in ("cat", "stack"):
        with pytest.raises(wire.ServerError) as e:
            c.op(op, [])
        assert e.value.code == pb.INVALID_ARGUMENT, e.value.message


def test_sem_cross_entropy_target_out_of_bounds(port, c):
    x = c.tensor(np.ones((2, 3), np.float32))
    for bad in (3, -1, 1 << 62, -(1 << 63)):
        t = c.tensor(np.array([0, bad], np.int64))
        expect(c, pb.INVALID_ARGUMENT, c.op, "cross_entropy", [wire.H(x), wire.H(t)],
               needle="out of bounds")


@pytest.mark.parametrize("op,kw", [
    ("narrow", dict(dim=0, start=1 << 62, end=1 << 62)),
    ("narrow", dict(dim=0, start=-(1 << 63), end=2)),
    ("narrow", dict(dim=0, start=1, end=-(1 << 63))),
    ("select", dict(dim=0, start=1 << 62)),
    ("select", dict(dim=0, start=-(1 << 63))),
    ("slice", dict(dim=0, start=0, end=3, step=0)),
    ("slice", dict(dim=0, start=0, end=3, step=-1)),
    ("slice", dict(dim=0, start=0, end=3, step=(1 << 63) - 1)),
    ("slice", dict(dim=0, start=-(1 << 63), end=(1 << 63) - 1, step=(1 << 62))),
    ("expand", dict(dims=[1 << 40] * 3 + [3, 2])),
    ("expand", dict(dims=[-1, -1, 3, 2])),
    ("transpose", dict(dim=-(1 << 63), dim2=0)),
    ("transpose", dict(dim=1 << 62, dim2=0)),
    ("squeeze", dict(dim=-(1 << 63))),
    ("unsqueeze", dict(dim=1 << 62)),
    ("softmax", dict(dim=-(1 << 63))),
    ("sum", dict(dims=[-(1 << 63)])),
    ("sum", dict(dims=[0, 0])),
    ("permute", dict(dims=[0, 0])),
    ("permute", dict(dims=[0, -(1 << 63)])),
    ("flip", dict(dims=[0, 0])),
    ("repeat", dict(dims=[1 << 62, 1 << 62])),
    ("repeat", dict(dims=[(1 << 62) + 1, 1])),   # 3 * that wraps to a small size
    ("repeat", dict(dims=[-1, 1])),
    ("expand", dict(dims=[-2, 3])),
    ("reshape", dict(dims=[-1, -1])),
    ("reshape", dict(dims=[7])),
    ("view", dict(dims=[1 << 62, 1 << 62])),
    ("std", dict(correction=float("nan"))),
])
def test_sem_hostile_op_arguments(port, c, op, kw):
    h = c.tensor(np.ones((3, 2), np.float32))
    try:
        c.op(op, [wire.H(h)], **kw)
    except wire.ServerError as e:
        assert e.code in (pb.INVALID_ARGUMENT, pb.SHAPE_MISMATCH, pb.LIMIT_EXCEEDED,
                          pb.DTYPE_ERROR), (pb.StatusCode.Name(e.code), e.message)
        assert e.message
    else:
        # torch gives nan for a nan correction; 0 is proto3's "no step" (1); a huge step
        # leaves one element
        assert op == "std" or (op == "slice" and kw["step"] >= 0)


def test_sem_expand_huge_then_materialize(port, c):
    h = c.tensor(np.ones((1, 1), np.float32))
    e = c.op("expand", [wire.H(h)], dims=[1 << 30, 1 << 30])
    expect(c, pb.LIMIT_EXCEEDED, c.op, "contiguous", [wire.H(e)])
    expect(c, pb.LIMIT_EXCEEDED, c.op, "mul", [wire.H(e), 2.0])
    expect(c, pb.LIMIT_EXCEEDED, c.get, e, needle="max_tensor_bytes")
    # Not left for the shutdown snapshot, which would try to materialize it (see the report:
    # persist copies views without a size limit).
    c.free(e)


def test_sem_expand_past_2_pow_63_bytes_is_refused(port, c):
    """A view whose byte count wraps (2^62 float32 elements) used to read back as 0 bytes."""
    h = c.tensor(np.ones((1, 1), np.float32))
    expect(c, pb.LIMIT_EXCEEDED, c.op, "expand", [wire.H(h)], dims=[1 << 31, 1 << 31],
           needle="overflows")
    expect(c, pb.LIMIT_EXCEEDED, c.op, "expand", [wire.H(h)], dims=[1 << 40] * 8,
           needle="overflows")


@pytest.mark.parametrize("op,kw", [
    ("randint", dict(min=5, max=5, dims=[2])),
    ("randint", dict(min=-(1 << 63), max=(1 << 63) - 1, dims=[2], dtype="bool")),
    ("linspace", dict(min=0.0, max=1.0, dim=-1)),
    ("linspace", dict(min=0.0, max=1.0, dim=1 << 62)),
    ("eye", dict(dims=[-1])),
    ("eye", dict(dims=[1 << 31, 1 << 31])),
    ("empty", dict(dims=[-5])),
    ("empty", dict(dims=[1] * 9)),
])
def test_sem_hostile_creation_ops(port, c, op, kw):
    with pytest.raises(wire.ServerError) as e:
        c.op(op, [], **kw)
    assert e.value.code in (pb.INVALID_ARGUMENT, pb.LIMIT_EXCEEDED), e.value.message


def test_sem_backward_misuse(port, c):
    w = c.tensor(np.ones(3, np.float32), requires_grad=True)
    y = c.op("mul", [wire.H(w), 2.0])
    expect(c, pb.INVALID_ARGUMENT, c.backward, y, needle="grad can be implicitly created only")
    g = c.tensor(np.ones(5, np.float32))
    with pytest.raises(wire.ServerError) as e:
        c.backward(y, gradient=g)
    assert e.value.code in (pb.SHAPE_MISMATCH, pb.INVALID_ARGUMENT)
    s = c.op("sum", [wire.H(y)])
    c.backward(s)
    expect(c, pb.INVALID_ARGUMENT, c.backward, s, needle="second time")
    n = c.tensor(np.ones(1, np.float32))
    expect(c, pb.INVALID_ARGUMENT, c.backward, n, needle="does not require grad")
    expect(c, pb.DTYPE_ERROR, c.tensor, np.ones(2, np.int64), requires_grad=True)


def test_sem_inplace_on_a_leaf_that_requires_grad(port, c):
    w = c.tensor(np.ones(3, np.float32), requires_grad=True)
    expect(c, pb.INVALID_ARGUMENT, c.op, "add", [wire.H(w), 1.0], inplace=True,
           needle="leaf Variable that requires grad")


def test_sem_close_session_then_use_it(port):
    r = Raw(port)
    r.call(req(id=2, create={"out": 1, "dtype": pb.INT32, "shape": [1]}), b"\x01\x00\x00\x00")
    resp, _ = r.call(req(id=3, close_session={}))
    assert resp.status.code == pb.OK
    resp, _ = r.call(req(id=4, get={"handle": 1}))
    assert_err(resp, pb.UNKNOWN_SESSION, "closed", rid=4)
    resp, _ = r.call(req(id=5, free={"handles": [1]}))
    assert_err(resp, pb.UNKNOWN_SESSION, rid=5)


# ================================================================= auth and sessions

def test_auth_request_before_hello(port):
    r = Raw(port, hello=False)
    resp, _ = r.call(req(id=3, ping={}))
    assert_err(resp, pb.NO_SESSION, "Hello first", rid=3)
    resp, _ = r.call(Raw.hello_req(rid=5))
    assert resp.status.code == pb.OK


def test_auth_data_section_before_hello_is_refused_then_closed(port):
    # An unauthenticated peer may not make the server hold a data section (issue 14, 3a): the
    # frame is refused from its header alone, naming the limit, and the connection closes.
    r = Raw(port, hello=False)
    resp, _ = r.call(req(id=4, create={"out": 1, "dtype": pb.INT32, "shape": [1]}), b"\x00" * 4)
    assert_err(resp, pb.LIMIT_EXCEEDED, "before the handshake")
    assert r.expect_eof()


def test_auth_second_hello_on_a_connection(port):
    r = Raw(port)
    resp, _ = r.call(Raw.hello_req(rid=2))
    assert_err(resp, pb.PROTOCOL_ERROR, "already accepted", rid=2)
    assert r.ping_ok()


@pytest.mark.parametrize("vmin,vmax", [(99, 99), (5, 2), (0xFFFFFFFF, 0xFFFFFFFF)])
def test_auth_no_common_protocol_version(port, vmin, vmax):
    r = Raw(port, hello=False)
    resp, _ = r.call(Raw.hello_req(vmin=vmin, vmax=vmax))
    assert_err(resp, pb.VERSION_MISMATCH, "no common protocol version")


def test_auth_replayed_token_of_a_closed_session(port):
    r = Raw(port)
    token = r.token
    resp, _ = r.call(req(id=3, close_session={}))
    assert resp.status.code == pb.OK
    r.close()
    r2 = Raw(port, hello=False)
    resp, _ = r2.call(Raw.hello_req(token=token))
    assert_err(resp, pb.UNKNOWN_SESSION)
    expect(None, pb.UNKNOWN_SESSION, wire.Conn, port, resume=token)


@pytest.mark.parametrize("token", [b"\x00" * 16, b"\x01", b"\xff" * 15, b"\xab" * 17,
                                   b"\x00" * 16000])
def test_auth_resume_of_a_made_up_session_token(port, token):
    # 16 bytes is the form of a session saved before scale-out: looked up here, and unknown.
    # Any other made-up token is not "<node id>.<32 hex>": malformed, naming no node.
    r = Raw(port, hello=False)
    resp, _ = r.call(Raw.hello_req(token=token))
    if len(token) == 16:
        assert_err(resp, pb.UNKNOWN_SESSION)
    else:
        assert_err(resp, pb.UNKNOWN_NODE, "malformed session token")
        assert resp.status.node == ""


def test_auth_hello_above_the_pre_handshake_cap_is_refused(port):
    # Before Hello a frame may carry at most 16 KiB of protobuf (TD_NET_PREAUTH_MAX_META).
    r = Raw(port, hello=False)
    resp, _ = r.call(Raw.hello_req(token=b"\x00" * 100000))
    assert_err(resp, pb.LIMIT_EXCEEDED, "16384")
    assert r.expect_eof()


def test_auth_resume_of_another_daemons_token(port, own):
    d, can = own()
    r = Raw(port, hello=False)
    resp, _ = r.call(Raw.hello_req(token=can.c.token))
    # The other daemon is no peer of this one: its token names a node this one does not know.
    assert_err(resp, pb.UNKNOWN_NODE, "does not know")
    assert resp.status.node == can.c.token.split(b".")[0].decode()
    r2 = Raw(d.port, hello=False)
    resp, _ = r2.call(Raw.hello_req(token=can.c.token))
    assert resp.status.code == pb.OK and resp.hello.resumed


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "token"
    p.write_text("s3cret-token-0123456789\n")
    return str(p)


AUTH = "s3cret-token-0123456789"


@pytest.mark.parametrize("given", ["", "wrong", AUTH[:-1], AUTH + "x", AUTH.upper(),
                                   "\x00" + AUTH])
def test_auth_missing_or_wrong_token_is_refused_then_closed(own, token_file, given):
    d, _ = own("--auth-token-file", token_file, auth=AUTH)
    r = Raw(d.port, hello=False)
    resp, _ = r.call(Raw.hello_req(auth=given))
    assert_err(resp, pb.UNAUTHENTICATED, rid=1)
    assert resp.status.message == "authentication failed"  # nothing about how close it came
    assert r.expect_eof()
    # requests without Hello on an auth daemon reach nothing
    r = Raw(d.port, hello=False)
    resp, _ = r.call(req(id=3, get={"handle": 1}))
    assert_err(resp, pb.NO_SESSION)


def test_auth_repeated_failures_are_penalised(own, token_file):
    d, can = own("--auth-token-file", token_file, auth=AUTH)
    for _ in range(4):
        r = Raw(d.port, hello=False)
        resp, _ = r.call(Raw.hello_req(auth="nope"))
        assert_err(resp, pb.UNAUTHENTICATED)
        assert resp.status.message == "authentication failed"
    r = Raw(d.port, hello=False)
    resp, _ = r.call(Raw.hello_req(auth=AUTH))
    assert_err(resp, pb.UNAUTHENTICATED)
    m = re.fullmatch(r"too many failed authentication attempts from this address; "
                     r"retry in (\d+) ms", resp.status.message)
    assert m and 0 < int(m.group(1)) <= 1000, resp.status.message  # the first penalty: 1 s
    can.check()  # the open session is untouched
    # The right token gets in again once the penalty is over (the harness's fresh connection
    # needs that); refused attempts meanwhile do not lengthen it.
    deadline = time.monotonic() + 5
    while True:
        resp, _ = Raw(d.port, hello=False).call(Raw.hello_req(auth=AUTH))
        if resp.status.code == pb.OK:
            break
        assert resp.status.message.startswith("too many failed"), resp.status.message
        assert time.monotonic() < deadline, "the penalty did not end"
        time.sleep(0.02)


def test_auth_right_token_but_resume_of_a_closed_session(own, token_file):
    d, _ = own("--auth-token-file", token_file, auth=AUTH)
    r = Raw(d.port, auth=AUTH)
    tok = r.token
    r.call(req(id=3, close_session={}))
    r2 = Raw(d.port, hello=False)
    resp, _ = r2.call(Raw.hello_req(auth=AUTH, token=tok))
    assert_err(resp, pb.UNKNOWN_SESSION)


# ================================================================= limits

def tensor_limit(nbytes):
    """The refusal for one tensor over --max-tensor-bytes 64K (server/base/alloc.c)."""
    return "tensor of %d bytes exceeds max_tensor_bytes 65536" % nbytes


def test_limit_tensor_bytes(own):
    d, _ = own("--max-tensor-bytes", "64K")
    c = wire.Conn(d.port)
    one = c.tensor(np.ones((1, 1), np.float32))
    view = c.op("expand", [wire.H(one)], dims=[200, 200])   # a view: no bytes of its own
    e = expect(c, pb.LIMIT_EXCEEDED, c.get, view)  # reading it copies 200*200 float32s
    assert e.message == tensor_limit(160000)
    e = expect(c, pb.LIMIT_EXCEEDED, c.tensor, np.zeros(16385, np.float32))  # one float over
    assert e.message == tensor_limit(65540)
    r = pb.Request()
    r.full.out = c.handle()
    r.full.shape.append(1 << 20)
    r.full.value.f = 0
    e = expect(c, pb.LIMIT_EXCEEDED, c.call, r)
    assert e.message == tensor_limit(4 << 20)
    h = c.tensor(np.zeros(16384, np.float32))  # exactly the limit is allowed
    e = expect(c, pb.LIMIT_EXCEEDED, c.op, "cat", [wire.H(h), wire.H(h)])
    assert e.message == tensor_limit(131072)
    e = expect(c, pb.LIMIT_EXCEEDED, c.op, "to", [wire.H(h)], dtype="float64")  # 8 bytes each
    assert e.message == tensor_limit(131072)
    c.close()  # else the daemon's stop waits out its lingering close of this connection


def test_limit_session_quota(own):
    d, _ = own("--session-max-bytes", "256K", "--max-tensor-bytes", "128K")
    c = wire.Conn(d.port)
    hs = [c.tensor(np.zeros(20000, np.float32)) for _ in range(3)]  # 240000 of 262144 bytes
    e = expect(c, pb.QUOTA_EXCEEDED, c.tensor, np.zeros(20000, np.float32))
    assert e.message == "session memory quota exceeded: 262144 bytes"
    e = expect(c, pb.QUOTA_EXCEEDED, c.op, "add", [wire.H(hs[0]), 1.0])
    assert e.message == "session memory quota exceeded: 262144 bytes"
    c.free(hs[0])
    c.op("add", [wire.H(hs[1]), 1.0])  # room again after a free
    c2 = wire.Conn(d.port)               # another session has its own quota
    c2.tensor(np.zeros(20000, np.float32))
    c.close()
    c2.close()


def test_limit_global_bytes(own):
    d, _ = own("--max-bytes", "512K", "--session-max-bytes", "384K")
    a, b = wire.Conn(d.port), wire.Conn(d.port)
    a.tensor(np.zeros(80000, np.float32))  # 320000 bytes, within a's 384K
    # b's 320000 bytes fit its own 384K quota, but with a's they pass the server's 512K
    e = expect(b, pb.QUOTA_EXCEEDED, b.tensor, np.zeros(80000, np.float32))
    assert e.message == "server memory quota exceeded: 524288 bytes"
    b.tensor(np.zeros(1000, np.float32))
    a.close()
    b.close()


def test_limit_sessions(own):
    d, _ = own("--max-sessions", "2")
    a = wire.Conn(d.port)
    e = expect(None, pb.LIMIT_EXCEEDED, wire.Conn, d.port)  # the canary's and a's are 2
    assert e.message == "session limit reached: max_sessions 2"
    r = pb.Request()
    r.close_session.SetInParent()
    a.call(r)
    a.close()
    b = wire.Conn(d.port)  # a freed slot is usable again
    b.call(r)              # and given back, so the harness's fresh connection fits
    b.close()


def test_limit_connections(own):
    d, can = own("--max-connections", "3")
    keep = [Raw(d.port) for _ in range(2)]     # + the canary = 3
    r = Raw(d.port, hello=False)
    got = r.recv()
    assert got is not None
    assert_err(got[0], pb.LIMIT_EXCEEDED, rid=0)
    assert got[0].status.message == "connection limit reached: max_connections 3"
    assert r.expect_eof()
    assert keep[0].ping_ok()
    for k in keep + [r]:
        k.close()
    # The harness's fresh connection needs a slot: wait until the daemon has seen the closes.
    deadline = time.monotonic() + 10
    while can.c.stats().connections != 1:
        assert time.monotonic() < deadline, "the closed connections still hold their slots"
        time.sleep(0.01)


def test_limit_frame_bytes_for_a_create(own):
    d, _ = own("--max-frame-bytes", "64K")
    c = wire.Conn(d.port)
    # The client may see the reply or, still sending when the server closes, a reset.
    with pytest.raises((wire.ServerError, OSError)):
        c.tensor(np.zeros(20000, np.float32))
    c.close()
    # From the header alone (the data is never sent), the exact refusal:
    r = Raw(d.port)
    create = req(id=2, create={"out": 1, "dtype": pb.FLOAT32, "shape": [20000]})
    r.send(frame(create, data_len=80000))
    got = r.recv()
    assert got is not None
    assert_err(got[0], pb.LIMIT_EXCEEDED, rid=0)
    assert got[0].status.message == "frame of %d + 80000 bytes exceeds max_frame_bytes 65536" % (
        len(create.SerializeToString()))
    assert r.expect_eof()
    r.close()


def test_sem_max_with_out2_equal_to_out(port, c):
    """out2 == out used to overwrite the values under `out` with the indices (and leak them)."""
    h = c.tensor(np.array([[1.0, 5.0], [7.0, 2.0]], np.float32))
    r = c.op_request("max", [wire.H(h)], dim=1)
    r.run_op.out2 = r.run_op.out
    before = c.stats().session_tensors
    expect(c, pb.HANDLE_IN_USE, c.call, r, needle="out2 must differ")
    expect(c, pb.UNKNOWN_HANDLE, c.get, r.run_op.out)
    assert c.stats().session_tensors == before
    r = c.op_request("max", [wire.H(h)], dim=1)
    r.run_op.out2 = h
    expect(c, pb.HANDLE_IN_USE, c.call, r)
    assert c.get(h)[0].tolist() == [[1.0, 5.0], [7.0, 2.0]]


def test_sem_grad_and_backward_with_hostile_handles(port, c):
    w = c.tensor(np.ones(2, np.float32), requires_grad=True)
    y = c.op("sum", [wire.H(c.op("mul", [wire.H(w), 3.0]))])
    c.backward(y, retain_graph=True)
    r = pb.Request()
    r.grad.handle = w
    r.grad.out = w
    expect(c, pb.HANDLE_IN_USE, c.call, r)
    r.grad.out = 0
    expect(c, pb.INVALID_ARGUMENT, c.call, r, needle="reserved")
    expect(c, pb.UNKNOWN_HANDLE, c.backward, y, gradient=U64_MAX)
    bad = c.send(c.op_request("add", [wire.H(w), wire.H(c.tensor(np.ones(5, np.float32)))]))
    c.sync()
    assert bad.error.code == pb.SHAPE_MISMATCH
    expect(c, pb.INPUT_FAILED, c.backward, y, gradient=c.next_handle - 1)


# ================================================================= one session per connection,
# decoded requests charged (the attack report against the issue-14 merge, findings 1 and 3)

def _op(rid, out, name, inputs, **kw):
    """A RunOp request on handles; dims= and dim= as in the protocol's OpArgs."""
    r = pb.Request()
    r.id = rid
    r.run_op.out = out
    r.run_op.op = pb.Op.Value("OP_" + name.upper())
    for h in inputs:
        r.run_op.inputs.add().handle = h
    if "dims" in kw:
        r.run_op.args.dims.extend(kw["dims"])
        r.run_op.args.has_dims = True
    if "dim" in kw:
        r.run_op.args.dim = kw["dim"]
        r.run_op.args.has_dim = True
    return r


def _ok(raw, r, data=b""):
    resp, out = raw.call(r, data)
    assert resp.status.code == pb.OK, (pb.StatusCode.Name(resp.status.code), resp.status.message)
    return resp, out


def _vmkib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


@pytest.mark.timeout(120)
def test_conn_hello_after_close_session_cannot_reach_another_session(port):
    # The attacker's shape: on connection A, [slow sum][CloseSession][Hello resuming B][Free of
    # B's handles][a heavy sum], pipelined while B's own sum reads B's handle 1 on a worker. A
    # used to be switched to B while its later jobs ran from the closed session's queue, inline,
    # against B's table, beside B's job: a use after free. Now A keeps its one (closed)
    # session: the Hello is refused, the rest fail without running, B is intact.
    b = Raw(port, timeout=60)
    n = 1 << 16
    _ok(b, req(id=2, create={"out": 1, "dtype": pb.FLOAT64, "shape": [n]}),
        np.ones(n, np.float64).tobytes())
    _ok(b, req(id=3, create={"out": 3, "dtype": pb.INT32, "shape": [3]}),
        np.array([1, 2, 3], np.int32).tobytes())
    _ok(b, _op(4, 2, "expand", [1], dims=[1 << 12, n]))     # 2^28 elements of handle 1's bytes
    a = Raw(port, timeout=60)
    _ok(a, req(id=10, create={"out": 1, "dtype": pb.FLOAT32, "shape": [1]}),
        np.ones(1, np.float32).tobytes())
    _ok(a, _op(11, 2, "expand", [1], dims=[1 << 16, 1 << 16]))
    frames = [_op(12, 3, "sum", [2], dims=[1]),
              req(id=13, close_session={}),
              Raw.hello_req(token=b.token, vmax=2, rid=14),
              req(id=15, free={"handles": [1, 2, 3]}),
              _op(16, 20, "sum", [2], dims=[1])]
    b.send(frame(_op(5, 4, "sum", [2], dims=[1])))  # B's job, on a worker
    a.send(b"".join(frame(f) for f in frames))
    got = [a.recv() for _ in frames]
    assert all(g is not None for g in got), "A's connection was closed"
    assert [g[0].id for g in got] == [12, 13, 14, 15, 16]
    assert got[0][0].status.code in (pb.CANCELLED, pb.OK)   # cancelled by the close (or done)
    assert got[1][0].status.code == pb.OK
    assert_err(got[2][0], pb.PROTOCOL_ERROR, "open a new connection to start or resume one")
    assert_err(got[3][0], pb.UNKNOWN_SESSION, "session is closed")
    assert_err(got[4][0], pb.UNKNOWN_SESSION, "session is closed")
    resp, _ = b.recv()
    assert resp.id == 5 and resp.status.code == pb.OK, resp.status.message
    assert list(resp.tensor.shape) == [1 << 12]
    _, data = _ok(b, req(id=6, get={"handle": 4}))
    assert np.all(np.frombuffer(data, np.float64) == float(n))
    _, data = _ok(b, req(id=7, get={"handle": 1}))
    assert np.frombuffer(data, np.float64).tobytes() == np.ones(n, np.float64).tobytes()
    _, data = _ok(b, req(id=8, get={"handle": 3}))
    assert np.frombuffer(data, np.int32).tolist() == [1, 2, 3]
    # A resumes B the honest way, on a new connection
    a2 = Raw(port, token=b.token)
    _, data = _ok(a2, req(id=2, get={"handle": 3}))
    assert np.frombuffer(data, np.int32).tolist() == [1, 2, 3]
    _ok(b, req(id=9, close_session={}))
    for r in (a, a2, b):
        r.close()


def _empty_entry_save_meta(rid, entries):
    """A Save whose tensors are `entries` empty NamedTensor messages: 2 wire bytes each, which
    protobuf-c decodes into an allocation of its own each (about 37 times the wire bytes)."""
    save = field(1, 2, b"x") + b"\x12\x00" * entries          # Save.file, Save.tensors
    return field(1, 0, rid) + field(20, 2, save)              # Request.id, Request.save


@pytest.mark.timeout(180)
def test_conn_decoded_save_frames_behind_a_slow_job_stay_within_the_quota(own):
    # 20 frames of 1 MiB of empty Save entries queued behind a slow job took RSS from 5 to
    # 742 MB: decoding multiplies the wire bytes and nothing was charged. Now each decoded
    # request is charged to the session until it is done (or refused QUOTA_EXCEEDED in its
    # place), and the connection stops being read past 16 MiB of queued requests.
    quota = 64 << 20
    d, _ = own("--session-max-bytes", "64M")
    w = Raw(d.port)
    before_alloc = w.call(req(id=2, stats={}))[0].stats.allocated_bytes
    before_rss = _vmkib(d.proc.pid, "VmRSS") << 10
    a = Raw(d.port, timeout=120)
    _ok(a, req(id=10, create={"out": 1, "dtype": pb.FLOAT32, "shape": [1]}),
        np.ones(1, np.float32).tobytes())
    _ok(a, _op(11, 2, "expand", [1], dims=[1 << 15, 1 << 16]))
    metas = [_empty_entry_save_meta(100 + i, 524000) for i in range(20)]
    assert all(len(m) < MAX_META for m in metas)
    blob = frame(_op(12, 3, "sum", [2], dims=[1])) + b"".join(frame(m) for m in metas)
    peak_alloc = [before_alloc]
    done = threading.Event()

    def sample():  # the daemon's own count of live bytes, while the frames are handled
        rid = 100
        while not done.is_set():
            rid += 1
            s = w.call(req(id=rid, stats={}))[0].stats
            peak_alloc[0] = max(peak_alloc[0], s.allocated_bytes)
            done.wait(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = threading.Thread(target=a.send, args=(blob,), daemon=True)
    t.start()
    got = [a.recv() for _ in range(21)]
    t.join(30)
    done.set()
    sampler.join(30)
    assert not t.is_alive() and not sampler.is_alive()
    assert all(g is not None for g in got), "connection closed"
    assert [g[0].id for g in got] == [12] + [100 + i for i in range(20)]  # in order
    assert got[0][0].status.code == pb.OK, got[0][0].status.message
    for resp, _ in got[1:]:  # 524000 unnamed entries: refused, whichever check comes first
        assert resp.status.code != pb.OK and resp.status.message
    # Charged: at most the quota, plus one frame being decoded before its charge is tried
    # (about 38 MiB here). Unfixed, about 740 MiB.
    assert peak_alloc[0] - before_alloc <= quota + (64 << 20), \
        "allocated_bytes peaked %d MiB above its start" % ((peak_alloc[0] - before_alloc) >> 20)
    if os.environ.get("TENSORD_SANITIZED") != "1":  # ASan's quarantine keeps freed memory
        peak = (_vmkib(d.proc.pid, "VmHWM") << 10) - before_rss
        assert peak <= quota + (128 << 20), "RSS peaked %d MiB above its start" % (peak >> 20)
    deadline = time.time() + 10
    while True:
        alloc = w.call(req(id=3, stats={}))[0].stats.allocated_bytes  # back to its level
        if alloc <= before_alloc + (1 << 20) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert alloc <= before_alloc + (1 << 20), "allocated_bytes stayed %d above" % (
        alloc - before_alloc)
    _ok(a, req(id=13, close_session={}))
    a.close()
    w.close()


def test_conn_the_client_frees_more_dead_tensors_than_free_first_allows(port):
    # free_first carries at most 4096 handles (more is refused before anything runs); the
    # Python client sends a Free of its own when more tensors died since its last request.
    import gc
    import tensord
    s = tensord.connect("127.0.0.1:%d" % port)
    try:
        xs = [s.ones(1) for _ in range(5000)]
        s.synchronize()
        assert s.stats().session_tensors >= 5000
        del xs
        gc.collect()
        y = s.ones(2)
        assert y.tolist() == [1.0, 1.0]
        assert s.stats().session_tensors < 10
    finally:
        s.close()
