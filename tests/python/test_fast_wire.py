"""tensord._fast speaks the same wire format as protobuf: its encoders write exactly the bytes
SerializeToString() writes for the same Request, and its decoder reads exactly what
ParseFromString() reads from any Response it accepts (random messages, seeded, and random
corruptions of them; each loop is bounded in time). The encoders and the decoder are
libtensord's client/c/wire.c compiled into the extension, so these also hold that one codec to
Python's protobuf (tests/client/test_wire.c holds it to protobuf-c). Then: the session uses the
fast path when the extension is there, and TENSORD_PURE_PYTHON=1 turns it off."""
import math
import os
import random
import struct
import subprocess
import sys
import time

import pytest
import torch

import tensord
from tensord import _conn
from tensord import tensord_pb2 as pb

try:
    from tensord import _fast
except ImportError:  # not built: nothing to compare (make builds it)
    _fast = None

need_fast = pytest.mark.skipif(_fast is None, reason="tensord._fast is not built")

SECONDS = 3.0   # per loop: enough for thousands of messages, bounded on a loaded machine
U64 = (1 << 64) - 1
OPS = list(pb.Op.values())
DTYPES = list(pb.DType.values())
CODES = list(pb.StatusCode.values())


def u64(r):
    """Small values, byte-length edges and the extremes, as varints meet them."""
    k = r.random()
    if k < 0.2:
        return 0
    if k < 0.5:
        return r.randrange(1, 300)
    if k < 0.7:
        return r.choice([127, 128, 16383, 16384, (1 << 32) - 1, 1 << 32, (1 << 63) - 1,
                         1 << 63, U64])
    return r.getrandbits(r.choice([8, 16, 35, 49, 63, 64]))


def i64(r):
    return u64(r) - (1 << 63) if r.random() < 0.3 else min(u64(r), (1 << 63) - 1) * \
        r.choice([1, -1])


def number(r):
    k = r.randrange(3)
    if k == 0:
        return r.random() < 0.5
    if k == 1:
        return i64(r)
    return r.choice([0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 5e-324, 1e308,
                     r.uniform(-1e6, 1e6)])


def loop(seed):
    """Yields random generators until SECONDS have passed (at least 200 rounds)."""
    r = random.Random(seed)
    end = time.monotonic() + SECONDS
    n = 0
    while n < 200 or time.monotonic() < end:
        n += 1
        yield r


@need_fast
def test_run_op_bytes_match_protobuf():
    for r in loop(19):
        rid, out, op, inplace = u64(r), u64(r), r.choice(OPS), r.random() < 0.3
        inputs = [("h", u64(r)) if r.random() < 0.5 else number(r)
                  for _ in range(r.randrange(_fast.MAX_FAST_INPUTS + 1))]
        free_first = [u64(r) for _ in range(r.choice([0, 0, 1, 3, 40]))]
        req = pb.Request()
        req.id = rid
        req.run_op.out = out
        req.run_op.op = op
        req.run_op.inplace = inplace
        for x in inputs:  # as Conn.op_request sets them
            o = req.run_op.inputs.add()
            if isinstance(x, tuple):
                o.handle = x[1]
            else:
                _conn.scalar(x, o.scalar)
        req.free_first.extend(free_first)
        got = _fast.encode_run_op(rid, out, op, inputs, inplace, None, free_first)
        assert got == req.SerializeToString(), (rid, out, op, inputs, inplace, free_first)


@need_fast
def test_run_op_leaves_what_it_does_not_encode():
    # a number past int64 (protobuf refuses it), a numpy scalar, a list: the protobuf path's
    assert _fast.encode_run_op(1, 2, 3, [1 << 63], False, None, []) is None
    assert _fast.encode_run_op(1, 2, 3, [[1, 2]], False, None, []) is None
    assert _fast.encode_run_op(1, 2, 3, [None], False, None, []) is None
    assert _fast.encode_run_op(1, 2, 3, [1] * (_fast.MAX_FAST_INPUTS + 1), False, None,
                               []) is None
    assert _fast.encode_run_op(1, 2, 3, [], False, {"out2": 5}, []) is None


class _Handles:
    """Conn.op_request's view of a connection: only the next handle."""

    def __init__(self, h):
        self.h = h

    def handle(self):
        return self.h


SPEC = _conn.arg_spec()
NAMES = sorted(SPEC) + ["padding", "dim", "dims", "correction", "dtype", "out2"]


def kw_value(r, name):
    """A value of the field's type mostly, sometimes of another (protobuf may refuse it)."""
    number, kind, repeated = SPEC.get(name, (0, 0, False))
    k = r.random()
    if name == "dtype" and k < 0.8:
        return r.choice(list(_conn.DTYPE_WIRE) + ["float16"])
    if name == "padding" and k < 0.3:
        return r.choice(["same", "valid", ""])
    if repeated and k < 0.7:
        vals = [r.choice([0, 1, -1, 3, 300, -(1 << 40), (1 << 63) - 1]) for _ in
                range(r.choice([0, 1, 2, 5]))]
        return tuple(vals) if r.random() < 0.3 else vals
    if k < 0.85:
        if kind == 3:
            return r.random() < 0.5
        if kind == 4:
            return r.choice([0.0, -0.0, 1e-5, 0.1, 1, 2, -3.5, math.inf])
        if kind == 6:
            return r.choice(["", "mean", "sum", "none", "trunc", "ij,jk->ik", "é"])
        if kind == 7:
            return number_value(r)
        return r.choice([0, 1, -1, 2, 127, -300, 1 << 62, -(1 << 63), (1 << 64) - 1])
    return r.choice([None, 1.5, "x", b"y", [1.5], (1, "a"), True, 7, 1 << 70, -2.0])


def number_value(r):
    return number(r)


@need_fast
def test_run_op_keywords_bytes_match_op_request():
    """RunOp with OpArgs: the bytes Conn.op_request's message serializes to, for random keyword
    sets; a keyword protobuf refuses is never encoded (the fast path leaves it to protobuf)."""
    taken = 0
    for r in loop(23):
        rid, out, inplace = u64(r) or 1, r.choice([0, u64(r)]), r.random() < 0.3
        name = r.choice(["sum", "mean", "add", "transpose", "softmax", "conv2d", "clamp",
                         "to", "var", "roll", "cross_entropy"])
        kw = {k: kw_value(r, k) for k in r.sample(NAMES, r.choice([0, 1, 1, 2, 3, 5]))}
        inputs = [("h", u64(r)) if r.random() < 0.7 else number(r) for _ in range(2)]
        free_first = [u64(r) for _ in range(r.choice([0, 0, 2]))]
        try:
            req = _conn.Conn.op_request(_Handles(out), name,
                                        [_conn.H(x[1]) if isinstance(x, tuple) else x
                                         for x in inputs], inplace, **kw)
            req.id = rid
            req.free_first.extend(free_first)
            want = req.SerializeToString()
        except (TypeError, ValueError, KeyError, AttributeError):
            want = None
        out_field = 0 if inplace else out
        got = _fast.encode_run_op(rid, out_field, pb.Op.Value("OP_" + name.upper()), inputs,
                                  inplace, kw, free_first)
        if got is not None:
            assert want is not None, ("encoded what protobuf refuses", name, kw)
            assert got == want, (name, kw, inputs, inplace)
            taken += 1
    assert taken > 100


@need_fast
def test_get_free_create_bytes_match_protobuf():
    for r in loop(20):
        rid = u64(r)
        free_first = [u64(r) for _ in range(r.choice([0, 0, 2, 9]))]
        req = pb.Request()
        req.id = rid
        handle, meta_only, offset, length = u64(r), r.random() < 0.5, u64(r), u64(r)
        req.get.handle = handle
        req.get.meta_only = meta_only
        req.get.offset = offset
        req.get.length = length
        req.free_first.extend(free_first)
        assert _fast.encode_get(rid, handle, meta_only, offset, length, free_first) == \
            req.SerializeToString()

        handles = [u64(r) for _ in range(r.randrange(6))]
        req = pb.Request()
        req.id = rid
        req.free.handles.extend(handles)
        req.free.SetInParent()
        req.free_first.extend(free_first)
        assert _fast.encode_free(rid, handles, free_first) == req.SerializeToString()

        out, dtype, rg = u64(r), r.choice(DTYPES), r.random() < 0.5
        shape = [i64(r) if r.random() < 0.2 else r.randrange(0, 70000)
                 for _ in range(r.randrange(9))]
        req = pb.Request()
        req.id = rid
        req.create.out = out
        req.create.dtype = dtype
        req.create.shape.extend(shape)
        req.create.requires_grad = rg
        req.free_first.extend(free_first)
        assert _fast.encode_create(rid, out, dtype, shape, rg, free_first) == \
            req.SerializeToString()


@need_fast
def test_backward_grad_set_grad_bytes_match_protobuf():
    """simple_fast's encoder: bodies of integer fields 1..n (Backward, Grad, SetGrad)."""
    bodies = {"backward": ("handle", "gradient", "retain_graph"), "grad": ("handle", "out"),
              "set_grad": ("handle", "requires_grad", "clear_grad", "retain_grad")}
    field = {f.name: f.number for f in pb.Request.DESCRIPTOR.oneofs_by_name["body"].fields}
    for r in loop(23):
        kind = r.choice(sorted(bodies))
        names = bodies[kind][:r.randrange(len(bodies[kind]) + 1)]  # trailing fields unset
        values = tuple(r.random() < 0.5 if getattr(pb, kind.title().replace("_", ""))
                       .DESCRIPTOR.fields_by_name[n].type == 8 else u64(r) for n in names)
        free_first = [u64(r) for _ in range(r.choice([0, 0, 2, 9]))]
        rid = u64(r)
        req = pb.Request()
        req.id = rid
        body = getattr(req, kind)
        body.SetInParent()
        for n, v in zip(names, values):
            setattr(body, n, v)
        req.free_first.extend(free_first)
        assert _fast.encode_simple(rid, field[kind], values, free_first) == \
            req.SerializeToString(), (kind, values)
    with pytest.raises(ValueError):  # a body after free_first (22) would be out of order
        _fast.encode_simple(1, 23, (1,), [])


def py_pack(data, name):
    """Session.tensor's Python path: (payload, shape, name), or the exception it raises."""
    try:
        flat, shape = tensord._flatten(data)
        name = name if name is not None else tensord._infer(flat)
        return tensord._pack(flat, name), shape, name
    except Exception as e:  # noqa: BLE001 - what the C packer must leave to this path
        return type(e)


def random_data(r, depth=0):
    """Nested lists/tuples of Python numbers: regular mostly, sometimes ragged or odd."""
    k = r.random()
    if depth >= 4 or k < 0.25:
        return r.choice([r.random() < 0.5, r.randrange(-5, 5), i64(r), 1 << 70, number(r),
                         r.uniform(-1e39, 1e39), "x", None, 2.5])
    n = r.choice([0, 1, 2, 3])
    first = random_data(r, depth + 1)
    items = [first] + [random_data(r, depth + 1) if r.random() < 0.1 else
                       (first if r.random() < 0.5 else
                        type(first)(random_data(r, depth + 2) for _ in first)
                        if isinstance(first, (list, tuple)) else number(r))
                       for _ in range(max(0, n - 1))]
    if n == 0:
        items = []
    return tuple(items) if r.random() < 0.2 else items


@need_fast
def test_tensor_from_lists_packs_as_python_does():
    """pack_values (torch.tensor(list) in C) gives the Python path's bytes, shape and dtype,
    or declines (None) and leaves the data to that path; never a different answer."""
    taken = 0
    for r in loop(24):
        data = random_data(r)
        name = r.choice([None, None, None, "float32", "float64", "int32", "int64", "bool"])
        got = _fast.pack_values(data, name)
        want = py_pack(data, name)
        if got is not None:
            taken += 1
            assert isinstance(want, tuple), (data, name, got, want)
            pay, shape, nm = want
            assert got == (pay, shape, nm), (data, name)
        elif all(type(x) in (float, int) for x in tensord._flatten(data)[0]) \
                if isinstance(want, tuple) else False:
            # regular lists of plain numbers the C packer declined: only values it cannot
            # convert exactly as Python does (out of range, int from float, bool from number)
            assert name in ("int32", "int64", "bool") or any(
                isinstance(x, int) and abs(x) >= 1 << 63 for x in tensord._flatten(data)[0]) \
                or any(isinstance(x, float) and math.isfinite(x) and abs(x) > 3.5e38
                       for x in tensord._flatten(data)[0]), (data, name)
    assert taken > 100


def text(r):
    """ASCII mostly; sometimes other text (the decoder leaves that to protobuf)."""
    s = "".join(r.choice("abcXYZ_0 :.") for _ in range(r.randrange(12)))
    return s + ("é✓" if r.random() < 0.1 else "")


def random_response(r):
    resp = pb.Response()
    resp.id = u64(r)
    if r.random() < 0.6:
        resp.status.code = r.choice(CODES) if r.random() < 0.9 else r.randrange(-5, 100)
        if r.random() < 0.4:
            resp.status.message = text(r)
    k = r.random()
    if k < 0.6:
        t = resp.tensor
        t.handle = u64(r)
        t.dtype = r.choice(DTYPES) if r.random() < 0.95 else r.randrange(6, 40)
        t.shape.extend(r.randrange(0, 70000) if r.random() < 0.9 else i64(r)
                       for _ in range(r.choice([0, 1, 2, 4, 8, 70])))
        t.nbytes, t.offset, t.length = u64(r), u64(r), u64(r)
        t.requires_grad = r.random() < 0.5
        t.is_leaf = r.random() < 0.5
        if r.random() < 0.5:
            t.grad_fn = text(r)
        if r.random() < 0.2:
            t.strides.extend(i64(r) for _ in range(r.randrange(5)))
            t.storage_offset = i64(r)
        if r.random() < 0.1:
            t.SetInParent()
    elif k < 0.7:
        resp.text = text(r)
    elif k < 0.75:
        resp.hello.version = 2
    elif k < 0.8:
        resp.backward.suspended = True
    elif k < 0.9:
        resp.backward.SetInParent()  # what a Backward that ran to the end answers
    return resp


def mutate(r, b):
    """A corrupted copy: bytes flipped, cut short, or extended."""
    b = bytearray(b)
    for _ in range(r.randrange(1, 4)):
        k = r.randrange(3)
        if k == 0 and b:
            b[r.randrange(len(b))] = r.randrange(256)
        elif k == 1 and b:
            del b[r.randrange(len(b)):]
        else:
            b[r.randrange(len(b) + 1):0] = bytes(r.randrange(256) for _ in range(r.randrange(4)))
    return bytes(b)


def check_decoded(raw, got):
    """got (the fast decoder's answer) agrees with protobuf's parse of raw."""
    want = pb.Response()
    want.ParseFromString(raw)  # raises if protobuf refuses what the decoder accepted
    rid, code, message, info = got
    assert (rid, code, message) == (want.id, want.status.code, want.status.message)
    assert want.WhichOneof("result") in (None, "tensor") or (
        want.WhichOneof("result") == "backward" and want.backward.ByteSize() == 0)
    if info is None:
        assert not want.HasField("tensor")
    else:
        t = want.tensor
        assert info == (t.handle, t.dtype, tuple(t.shape), t.nbytes, t.offset, t.length)


def common(resp):
    """Whether the fast decoder (libtensord's client/c/wire.c) must take this message, else it
    may leave it to protobuf: the rules client/c/wire.h states, on what SerializeToString writes
    (a status code 0..2^14, printable ASCII text, at most 8 dims, no strides or storage_offset,
    a known dtype)."""
    if resp.WhichOneof("result") not in (None, "tensor") and not (
            resp.WhichOneof("result") == "backward" and resp.backward.ByteSize() == 0):
        return False
    strings = [resp.status.message, resp.tensor.grad_fn]
    t = resp.tensor
    return all(s.isascii() and s.isprintable() for s in strings) and t.dtype in DTYPES and \
        len(t.shape) <= 8 and not t.strides and t.storage_offset == 0 and \
        0 <= resp.status.code < 1 << 14


@need_fast
def test_decoder_matches_protobuf_on_random_responses():
    taken = 0
    for r in loop(21):
        resp = random_response(r)
        raw = resp.SerializeToString()
        got = _fast.decode_response(raw)
        if common(resp):
            assert got is not None, resp
            taken += 1
        if got is not None:
            check_decoded(raw, got)
    assert taken > 100


@need_fast
def test_decoder_on_corrupt_responses_agrees_or_declines():
    for r in loop(22):
        raw = mutate(r, random_response(r).SerializeToString())
        got = _fast.decode_response(raw)
        if got is not None:
            check_decoded(raw, got)


@need_fast
def test_decoder_leaves_what_wire_c_hands_over_to_protobuf():
    # wire.c is stricter than a parser must be: what it hands over, the protobuf path reads.
    # shape (field 3) written as separate varints, which parsers must accept too
    unpacked = bytes([0x08, 0x07, 0x22, 0x08, 0x08, 0x05, 0x18, 0x02, 0x18, 0x03, 0x10, 0x01])
    packed = bytes([0x08, 0x07, 0x22, 0x08, 0x08, 0x05, 0x1a, 0x02, 0x02, 0x03, 0x10, 0x01])
    want = pb.Response.FromString(unpacked)
    assert tuple(want.tensor.shape) == (2, 3) and want == pb.Response.FromString(packed)
    assert _fast.decode_response(unpacked) is None
    check_decoded(packed, _fast.decode_response(packed))
    assert _fast.decode_response(packed)[3][2] == (2, 3)
    # nine dims, strides, a message with a byte above 0x7e: protobuf's
    nine = pb.Response(id=7, tensor=pb.TensorInfo(handle=5, shape=[1] * 9, nbytes=4))
    strided = pb.Response(id=7, tensor=pb.TensorInfo(handle=5, shape=[2], strides=[1]))
    text = pb.Response(id=7, status=pb.Status(code=3, message="caf\u00e9"))
    for resp in (nine, strided, text):
        assert _fast.decode_response(resp.SerializeToString()) is None, resp
    eight = pb.Response(id=7, tensor=pb.TensorInfo(handle=5, shape=[1] * 8, nbytes=4))
    assert _fast.decode_response(eight.SerializeToString())[3][2] == (1,) * 8


# --- the session's use of it ---

def test_fast_flag_follows_the_environment():
    code = "import tensord._conn as c; print(c.FAST)"
    for value, want in (("1", "False"), ("0", str(_fast is not None))):
        env = dict(os.environ, TENSORD_PURE_PYTHON=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == want


@pytest.mark.skipif(not _conn.FAST, reason="the fast path is off (TENSORD_PURE_PYTHON=1 or "
                    "not built)")
def test_session_ops_and_reads_take_the_fast_path(daemon):
    s = tensord.connect("127.0.0.1:%d" % daemon)
    try:
        x = s.tensor([[1.0, 2.0], [3.0, 4.0]])
        y = s.tensor([[0.5, -1.0], [2.0, 3.0]])
        z = x * y + 1
        assert type(z._p) is _fast.Pending and z._p.kind == "run_op"
        z.add_(2)
        w = z.t()  # a view: its root is z, as on the protobuf path
        assert w._root is z
        frames = s._c.frames_sent
        del x  # freed on collect: rides on the next request, not a Free of its own
        tx = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        ty = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
        assert w.tolist() == ((tx * ty + 1).add_(2)).t().tolist()
        assert s._c.frames_sent == frames + 1
        assert w.shape == (2, 2) and w.dtype == tensord.float32
        bad = y.matmul(s.ones(3, 3))  # an error on the fast path names the op and this line
        with pytest.raises(tensord.TensorError, match="matmul, issued at .*test_fast_wire.py"):
            bad.tolist()
    finally:
        s.close()


def test_replies_wire_c_hands_over_read_as_torch_says(daemon):
    # A meta_only Get's reply carries strides and storage_offset: wire.c hands it to protobuf
    # (with or without the extension), and the values are torch's.
    s = tensord.connect("127.0.0.1:%d" % daemon)
    try:
        t = torch.arange(24.0).reshape(2, 3, 4)
        x = s.tensor(t.tolist())
        for view, tv in ((x.permute(2, 0, 1)[1:], t.permute(2, 0, 1)[1:]),
                         (x[1, :, ::2], t[1, :, ::2]), (x * 2, t * 2)):
            assert view.stride() == tv.stride()
            assert view.storage_offset() == tv.storage_offset()
            assert view.is_contiguous() == tv.is_contiguous()
            assert view.tolist() == tv.tolist()
    finally:
        s.close()


@pytest.mark.skipif(not _conn.FAST, reason="the fast path is off (TENSORD_PURE_PYTHON=1 or "
                    "not built)")
def test_seed_example_takes_the_fast_path(daemon):
    """The seed example's Create, RunOp, Backward, Grad and Get requests are queued in C and
    their replies read without protobuf; the values are torch's, and an error still names the
    op and the line that issued it."""
    s = tensord.connect("127.0.0.1:%d" % daemon)
    slow = []  # replies left to protobuf's parser
    parse_py = s._c._parse_py
    s._c._parse_py = lambda *a: slow.append(1) or parse_py(*a)
    try:
        a = s.tensor([2.0], requires_grad=True)
        b = s.tensor([6.0], requires_grad=True)
        Q = 3 * a ** 3 - b ** 2
        Q.backward()
        p = s._c._pending[-1]
        assert type(p) is _fast.Pending and p.kind == "backward"
        g = a.grad
        assert p.done and p.error is None and not slow
        assert p.resp.WhichOneof("result") == "backward"  # parsed when asked for
        ta = torch.tensor([2.0], requires_grad=True)
        tb = torch.tensor([6.0], requires_grad=True)
        (3 * ta ** 3 - tb ** 2).backward()
        assert g.item() == ta.grad.item() == 36.0 and b.grad.item() == tb.grad.item() == -12.0
        assert g.shape == (1,) and g.dtype == tensord.float32
        c = s.tensor([1.0])
        assert c.grad is None  # a Grad reply without a tensor
        a.grad = None
        assert a.grad is None
        a.requires_grad_(False)
        assert not a.requires_grad
        line = sys._getframe().f_lineno + 1
        Q.backward()  # the graph was freed by the first backward: an error, at this line
        want = r"backward, issued at .*test_fast_wire\.py:%d\)" % line
        with pytest.raises(tensord.TensorError, match=want):
            s.synchronize()
    finally:
        s.close()


@pytest.mark.skipif(not _conn.FAST, reason="the fast path is off (TENSORD_PURE_PYTHON=1 or "
                    "not built)")
def test_allocation_failure_while_queueing_frees_nothing_twice(daemon):
    """A MemoryError at any point of queueing a fast request (fault injection: the n-th
    allocation fails) either leaves nothing queued, the freed handles still waiting in the
    session's list, or queues the request whole with them taken off that list: no handle is
    ever sent in two free_first lists (which a re-send after a resume would repeat), none is
    lost, and the connection's ids and replies stay in step."""
    s = tensord.connect("127.0.0.1:%d" % daemon)
    c = s._c
    try:
        keep = s.tensor([1.0, 2.0], requires_grad=True)
        s.synchronize()
        dropped = []
        kinds = ["op", "inplace", "create", "get", "simple"]
        failures = 0
        for n in range(1, 9):
            for kind in kinds:
                junk = [s.tensor([float(i)]) for i in range(3)]
                dropped += [t._h for t in junk]
                del junk
                before = (list(s._dead), c.frames_sent, len(c._pending), c._next_id)
                assert before[0], "the dropped tensors' handles wait in the session's list"
                r = None
                _fast._fault(n)
                try:
                    if kind == "op":
                        r = keep * 2
                    elif kind == "inplace":
                        r = s.tensor([3.0]).add_(1)
                    elif kind == "create":
                        r = s.tensor([5.0, 6.0])
                    elif kind == "get":
                        r = s._get(keep._h, 0)
                    else:
                        r = s._simple("set_grad", (keep._h, True), "requires_grad_")
                    assert r is not None
                except MemoryError:
                    failures += 1
                    if c.frames_sent == before[1]:  # nothing was queued: nothing changed
                        # (a handle number may be skipped: _upload takes it before queueing)
                        assert (list(s._dead), len(c._pending), c._next_id) == \
                            (before[0], before[2], before[3])
                finally:
                    _fast._fault(0)
                del r
        assert failures >= 8 * len(kinds) // 2  # the fault points were reached
        # every frame still queued: ids in step with the Pendings, no handle freed twice
        out = b"".join(bytes(b) for b in c._out)
        ids, freed, pos = [], [], 0
        while pos < len(out):
            ml, dl = struct.unpack_from(">IQ", out, pos)
            req = pb.Request()
            req.ParseFromString(out[pos + 12:pos + 12 + ml])
            ids.append(req.id)
            freed += list(req.free_first)
            pos += 12 + ml + dl
        assert ids == [p.id for p in c._pending]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert len(freed) == len(set(freed))
        assert not set(freed) & set(s._dead)
        assert set(dropped) <= set(freed) | set(s._dead)  # none lost
        s.synchronize()  # the replies match the requests (no ProtocolError), no error
        assert keep.tolist() == [1.0, 2.0]
    finally:
        _fast._fault(0)
        s.close()


def test_grad_item_is_one_round_trip_and_never_stale(daemon):
    """.grad of a small tensor asks for its values behind the Grad request, so x.grad.item()
    is one round trip (both paths); the values are used only if nothing was sent since, so a
    later backward or in-place change is seen, as in torch; no gradient: no error."""
    s = tensord.connect("127.0.0.1:%d" % daemon)
    try:
        a = s.tensor([2.0], requires_grad=True)
        b = s.tensor([6.0], requires_grad=True)
        Q = 3 * a ** 3 - b ** 2
        Q.backward()
        waits = s._c.waits
        assert a.grad.item() == 36.0
        assert s._c.waits == waits + 1
        ta = torch.tensor([2.0], requires_grad=True)
        (3 * ta ** 3).backward()
        g, tg = a.grad, ta.grad  # cached: no request
        (a * a).backward()       # accumulates into the same gradient tensor
        (ta * ta).backward()
        assert g.item() == tg.item() == 40.0
        g2 = b.grad
        g2.mul_(2)
        assert g2.tolist() == [-24.0]
        c = s.tensor([1.0, 2.0], requires_grad=True)
        assert c.grad is None  # the values' Get fails: dropped, not raised later
        d = s.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        (d * d).sum().backward()
        td = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        (td * td).sum().backward()
        assert d.grad.tolist() == td.grad.tolist()
        s.synchronize()
        assert c.grad is None and a.grad.item() == 40.0
    finally:
        s.close()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not _conn.FAST, reason="the fast path is off (TENSORD_PURE_PYTHON=1 or "
                    "not built)")
def test_a_large_reply_header_costs_only_the_bytes_that_arrive():
    """A reply whose header claims a data section up to the server's limits (256 MiB here)
    and then sends 16 bytes: the client's buffer for it is not zero-filled, so its memory grows
    by what arrives, not by what the header claims (a fake server on loopback)."""
    import socket
    import threading
    claim = 256 << 20
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    done = threading.Event()

    def serve():
        c, _ = lsock.accept()
        with c:
            def frame(resp, data_len, data=b""):
                meta = resp.SerializeToString()
                c.sendall(struct.pack(">IQ", len(meta), data_len) + meta + data)

            def request():
                ml, dl = struct.unpack(">IQ", c.recv(12, socket.MSG_WAITALL))
                req = pb.Request()
                req.ParseFromString(c.recv(ml, socket.MSG_WAITALL) if ml else b"")
                return req

            req = request()
            hello = pb.Response(id=req.id)
            hello.hello.version = 2
            hello.hello.session_token = b"node-a." + b"0" * 32
            hello.hello.node_id = "node-a"
            hello.hello.limits.max_frame_bytes = 1 << 30
            hello.hello.limits.max_tensor_bytes = 1 << 30
            frame(hello, 0)
            req = request()
            reply = pb.Response(id=req.id)
            reply.tensor.handle, reply.tensor.dtype = 1, pb.FLOAT32
            reply.tensor.shape.append(claim // 4)
            reply.tensor.nbytes = reply.tensor.length = claim
            frame(reply, claim, b"\x01" * 16)
            done.wait(20)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = _conn.Conn(lsock.getsockname()[1])
    try:
        req = pb.Request()
        req.get.handle = 1
        c.send(req)
        c._flush()
        before = rss_bytes()
        for _ in range(50):  # the header, then the 16 bytes (bounded: a few reads)
            c._read_some()
            if c._dst is not None and c._have >= 16:
                break
        assert c._dst is not None and c._dst.nbytes == claim and c._have == 16
        assert bytes(c._dst[:16]) == b"\x01" * 16
        assert rss_bytes() - before < claim // 4
    finally:
        done.set()
        c.close()
        lsock.close()
        t.join(10)


def test_sync_session_reads_into_the_array(daemon):
    """numpy() of a tensor whose shape is known reads straight into the new array: on a sync
    session too, where the reply is read before the request's call returns (it once left the
    array unfilled there)."""
    import numpy as np
    s = tensord.connect("127.0.0.1:%d" % daemon, sync=True)
    try:
        t = s.tensor([[1.0, 2.0], [3.0, 4.0]])
        assert t.shape == (2, 2)
        assert t.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
        n = (tensord.CHUNK_BYTES // 4) * 2 + 5  # three chunks
        big = s.tensor(np.arange(n, dtype=np.float32))
        assert big.shape == (n,)
        a = big.numpy()
        assert a[0] == 0 and a[n // 2] == n // 2 and a[-1] == n - 1
    finally:
        s.close()
