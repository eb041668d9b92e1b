"""The wire protocol from Python: frames, Hello, pipelining, resume after a dropped connection.

`Conn.send()` queues a request and returns a `Pending` at once; replies are read only when a
caller waits for one (`Conn.wait`), or while a large write is flushed (so a long pipeline never
deadlocks against the server's backpressure). Replies come back in request order, so waiting for
one resolves every earlier one. `Conn.call()` is send-and-wait, what the test suites and the
blocking helpers below use; `tensord.Session` builds its lazy tensors on `send()`.

If the connection drops, the next wait reconnects and resumes the session by its token, then
re-sends what is still unanswered. A request whose frame was never completely written to the old
socket cannot have run (the server acts only on whole frames), so it is re-sent whatever it is:
a training loop whose connection dropped while it sat idle goes on with its in-place updates and
backward() as if nothing happened. A request that was written but not answered may or may not
have run. It is re-sent if it is safe to repeat (creates and out-of-place ops name a fresh output
handle, so a repeat of one that ran is refused with HANDLE_IN_USE and changes nothing); one that
is not (an in-place op, backward, manual_seed) fails with an error saying its outcome is unknown,
and so does every request after it, because their results could depend on it.

The hot path is in C when the extension module tensord._fast is built (by `make`, or by pip when
a compiler is there): `FAST` says whether it is in use, and TENSORD_PURE_PYTHON=1 in the
environment turns it off. It encodes the common requests (RunOp with handle and number inputs,
Get) into the output buffer and reads the common replies without protobuf message objects; the
bytes on the wire are the same either way (tests/python/test_fast_wire.py).
"""
from __future__ import annotations

import collections
import os
import select
import socket
import struct
import time
from typing import Any, Callable, Deque, List, Optional

from . import tensord_pb2 as pb
from ._requests import IDEMPOTENT, IDEMPOTENT_OUT_OF_PLACE

_fast: Any = None
if os.environ.get("TENSORD_PURE_PYTHON", "") in ("", "0"):
    try:
        from . import _fast
    except ImportError:  # not built: the pure-Python path below does everything
        _fast = None
FAST = _fast is not None  # whether the C fast path (tensord._fast) is in use

HEADER = struct.Struct(">IQ")
FLUSH_AT = 1 << 16          # queued bytes that trigger a write without waiting for a reply
READ_CHUNK = 1 << 18
RECONNECT_TRIES = 7         # about 3 s of backoff before a dropped connection is given up

DTYPE_WIRE = {"float32": pb.FLOAT32, "float64": pb.FLOAT64, "int32": pb.INT32,
              "int64": pb.INT64, "bool": pb.BOOL}
WIRE_TO_NAME = {v: k for k, v in DTYPE_WIRE.items()}
ITEMSIZE = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}
STRUCT_CODE = {"float32": "f", "float64": "d", "int32": "i", "int64": "q", "bool": "?"}

try:  # numpy is optional: only numpy interop needs it
    import numpy as np
    NUMPY = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
             "int64": np.int64, "bool": np.bool_}
    DTYPES = {k: (DTYPE_WIRE[k], NUMPY[k]) for k in DTYPE_WIRE}
except ImportError:  # pragma: no cover - exercised by a test that hides numpy
    np = None
    NUMPY = {}
    DTYPES = {k: (DTYPE_WIRE[k], None) for k in DTYPE_WIRE}

# Requests that change nothing when repeated after they ran (see the module docstring): the
# idempotent column of server/rpc/requests.def, generated into _requests.py by make.
_REPLAYABLE = IDEMPOTENT


class ServerError(Exception):
    """An error reply: `code` is the protocol's StatusCode, `message` the server's text."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ProtocolError(Exception):
    """The server's replies do not match the requests: a bug, not a dropped connection."""


def _nbytes(data: Any) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


class Pending:
    """One request's reply, filled in when it is read. (_fast.Pending is the same in C.)"""

    __slots__ = ("id", "kind", "frame", "data", "replay", "resent", "end", "done", "resp",
                 "data_in", "error", "into", "on_done", "tag", "info", "out")

    def __init__(self, kind: str, frame: bytes, data: Any, replay: bool):
        self.kind = kind
        self.frame = frame
        self.data = data
        self.replay = replay
        self.resent = False         # sent again after it may have run on a lost connection
        self.end = 0                # the connection's byte count at the end of this frame
        self.done = False
        self.resp: Optional[Any] = None
        self.data_in: Any = b""
        self.error: Optional[ServerError] = None
        self.into: Any = None       # a writable buffer the reply's data section is read into
        self.on_done: Optional[Callable[["Pending"], None]] = None
        self.tag: Any = None        # the caller's note (what issued it, for error messages)
        self.info: Any = None       # with _fast: the reply's TensorInfo facts (see info_of)
        self.out: Any = None


if FAST:
    Pending = _fast.Pending  # type: ignore[misc,assignment] # noqa: F811


def info_of(p: Any) -> Any:
    """(handle, dtype, shape, nbytes, offset, length) of p's reply's TensorInfo, or None when it
    has none: from the fast decoder's tuple when it read the reply, else from protobuf's."""
    if p.info is not None:
        return p.info
    resp = p.resp
    if resp is None or not resp.HasField("tensor"):
        return None
    t = resp.tensor
    return (t.handle, t.dtype, tuple(t.shape), t.nbytes, t.offset, t.length)


def arg_spec() -> dict:
    """OpArgs' fields for _fast's encoder: {name: (number, kind, repeated)}, kind as _fast.c's
    ARG_* (a field of another type is left out, so the protobuf path sends it)."""
    fd = pb.OpArgs.DESCRIPTOR.fields[0].__class__
    kinds = {fd.TYPE_INT64: 0, fd.TYPE_SINT64: 1, fd.TYPE_UINT64: 2, fd.TYPE_BOOL: 3,
             fd.TYPE_DOUBLE: 4, fd.TYPE_ENUM: 5, fd.TYPE_STRING: 6}
    spec = {}
    for f in pb.OpArgs.DESCRIPTOR.fields:
        repeated = f.label == fd.LABEL_REPEATED
        if f.type == fd.TYPE_MESSAGE and f.message_type.name == "Scalar" and not repeated:
            spec[f.name] = (f.number, 7, False)
        elif f.type in kinds and (not repeated or kinds[f.type] in (0, 1)):
            spec[f.name] = (f.number, kinds[f.type], repeated)
    return spec


def scalar(v: Any, msg: Any) -> None:
    if isinstance(v, bool):
        msg.b = v
    elif isinstance(v, int):
        msg.i = v
    else:
        msg.f = float(v)


def parse_addr(addr: str):
    """"host:port", "[v6]:port" or "unix:/path" -> (family, sockaddr)."""
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("address must be HOST:PORT or unix:PATH, got %r" % addr)
    return None, (host.strip("[]") or "127.0.0.1", int(port))


class Conn(_fast.ConnBase if FAST else object):  # type: ignore[misc]
    """A connection speaking for one session, pipelined; see the module docstring."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 unix: Optional[str] = None, token: str = "", resume: bytes = b"",
                 addr: Optional[str] = None):
        if addr is not None:
            fam, where = parse_addr(addr)
            self._target = ("unix", where) if fam == socket.AF_UNIX else ("tcp", where)
        elif unix is not None:
            self._target = ("unix", unix)
        else:
            self._target = ("tcp", (host, port))
        self.auth = token
        self.token = resume or b""
        # A resumed session already has handles this client did not choose: start far away,
        # at a random place, so new ones do not collide with them.
        self.next_handle = 1 if not resume else (int.from_bytes(os.urandom(6), "little") << 16) + 1
        self.frames_sent = 0      # what the pipelining tests count
        self.writes = 0
        self.waits = 0            # blocking points that had to read from the socket
        self.reconnects = 0
        self.limits: Any = None
        self.sock: Optional[socket.socket] = None
        # failed replies of requests with a tag and no on_done (the fast path's) go here
        self.error_sink: Optional[List[Any]] = None
        self.version = 0
        self._connect()

    # -- connection --
    def _connect(self) -> None:
        kind, where = self._target
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(where)
        else:
            sock = socket.create_connection(where)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._out: List[Any] = []
        self._out_bytes = 0
        self._queued = 0     # bytes ever queued on this connection; each Pending.end is one
        self._written = 0    # of those, how many the socket accepted
        self._pending: Deque[Pending] = collections.deque()
        self._in = bytearray()
        self._pos = 0                          # how much of _in is parsed
        self._frame: Optional[tuple] = None   # (meta_len, data_len) of the frame being read
        self._meta: Optional[bytes] = None    # its protobuf section, once read
        self._dst: Any = None                 # a large data section being read in place
        self._have = 0
        self._next_id = 1
        req = pb.Request()
        req.hello.min_version = 1
        req.hello.max_version = 2  # 2: Request.free_first
        req.hello.auth_token = self.auth
        req.hello.session_token = self.token
        req.hello.client_name = "tensord-python"
        p = self._queue(req, b"", "hello", False)
        self._wait_one(p)
        if p.error is not None:
            self.sock.close()
            self.sock = None
            raise p.error
        self.token = p.resp.hello.session_token
        self.limits = p.resp.hello.limits
        self.version = p.resp.hello.version

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _reconnect(self) -> None:
        """Reconnects, resumes the session, and re-sends what is safe to repeat."""
        lost = [p for p in self._pending if p.kind != "hello"]
        written_before = self._written
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.reconnects += 1
        delay = 0.05
        for attempt in range(RECONNECT_TRIES):
            try:
                self._connect()
                break
            except OSError:
                if attempt == RECONNECT_TRIES - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        unsafe = False
        for p in lost:
            written = p.end <= written_before
            if unsafe:
                self._fail(p, ServerError(pb.IO_ERROR,
                           "not re-sent after the connection was lost: an earlier request's "
                           "outcome is unknown"))
            elif written and not p.replay:
                unsafe = True
                self._fail(p, ServerError(pb.IO_ERROR,
                           "the connection was lost before the server answered; the session was "
                           "resumed, but whether this request ran is unknown"))
            else:
                self._requeue(p, may_have_run=written)

    # -- sending --
    def handle(self) -> int:
        h = self.next_handle
        self.next_handle += 1
        return h

    def send(self, req: Any, data: Any = b"", replay: Optional[bool] = None,
             into: Any = None) -> Pending:
        """Queues a request without waiting; returns its Pending. `into`: a writable buffer
        the reply's data section is read into (set before anything can read the reply)."""
        kind = req.WhichOneof("body")
        if replay is None:
            replay = kind in _REPLAYABLE or (kind in IDEMPOTENT_OUT_OF_PLACE and
                                             not getattr(req, kind).inplace)
        return self._queue(req, data, kind, replay, into)

    def _queue(self, req: Any, data: Any, kind: str, replay: bool, into: Any = None) -> Pending:
        if isinstance(data, memoryview) and self._out_bytes + data.nbytes < FLUSH_AT:
            # It would wait in the queue past this call: copy it, so the caller may change
            # its array at once (torch.tensor copies too). Larger data is written right away.
            data = data.tobytes()
        p = Pending(kind, b"", data, replay)
        p.into = into
        self._enqueue(p, req)
        if self._out_bytes >= FLUSH_AT:
            self._flush_guarded()
        return p

    def _requeue(self, p: Pending, may_have_run: bool) -> None:
        """Sends a lost request again under a new id on the new connection. `may_have_run`: it
        was written before the drop, so a HANDLE_IN_USE reply means its first run made the
        handle (see `_finish`)."""
        req = pb.Request()
        req.ParseFromString(p.frame)
        p.resent = p.resent or may_have_run
        self._enqueue(p, req)

    def _enqueue(self, p: Pending, req: Any) -> None:
        req.id = p.id = self._next_id
        self._next_id += 1
        p.frame = meta = req.SerializeToString()
        self._push(HEADER.pack(len(meta), _nbytes(p.data)) + meta, p.data)
        p.end = self._queued
        self._pending.append(p)

    def _push(self, head: bytes, data: Any) -> None:
        self.frames_sent += 1
        self._out.append(head)
        self._out_bytes += len(head)
        self._queued += len(head)
        if len(data):
            self._out.append(data)
            self._out_bytes += _nbytes(data)
            self._queued += _nbytes(data)

    def _flush_guarded(self) -> None:
        try:
            self._flush()
        except OSError:
            self._reconnect()

    def _flush(self) -> None:
        """Writes everything queued, reading replies whenever the socket is readable."""
        if not self._out:
            return
        out: List[memoryview] = []
        if len(self._out) == 1 and self._out_bytes < 65536:
            out.append(memoryview(self._out[0]).cast("B"))  # the usual case: one small piece
        else:
            small = bytearray()
            for b in [memoryview(b).cast("B") for b in self._out]:
                if b.nbytes < 65536:  # coalesce small pieces so tiny frames are one write
                    small += b
                else:
                    if small:
                        out.append(memoryview(small))
                        small = bytearray()
                    out.append(b)
            if small:
                out.append(memoryview(small))
        self._out = []
        self._out_bytes = 0
        sock = self.sock
        for b in out:
            pos = 0
            while pos < b.nbytes:
                r, w, _ = select.select([sock], [sock], [])
                if r:
                    self._read_some()
                if w:
                    try:  # never block in send: the server may be waiting for us to read
                        n = sock.send(b[pos:pos + (1 << 22)], socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    self.writes += 1
                    self._written += n
                    pos += n

    # -- receiving --
    def wait(self, p: Pending) -> Pending:
        """Blocks until p's reply is read (and every earlier one); reconnects if needed."""
        if p.done:
            return p
        self.waits += 1
        while True:
            try:
                self._wait_one(p)
                return p
            except OSError:
                self._reconnect()
                if p.done:
                    return p

    def _wait_one(self, p: Pending) -> None:
        self._flush()
        while not p.done:
            self._read_some()

    def sync(self) -> None:
        """Waits for every reply sent so far."""
        if self._pending:
            self.wait(self._pending[-1])
        else:
            self._flush_guarded()

    def _read_some(self) -> None:
        if self._dst is not None:  # a large data section: straight into its destination
            n = self.sock.recv_into(self._dst[self._have:], min(self._dst.nbytes - self._have,
                                                               1 << 24))
            if n == 0:
                raise ConnectionResetError("server closed the connection")
            self._have += n
            if self._have == self._dst.nbytes:
                dst, self._dst = self._dst, None
                self._finish(dst)
            return
        chunk = self.sock.recv(READ_CHUNK)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        if self._pos == len(self._in):
            self._in = bytearray(chunk)
            self._pos = 0
        else:
            if self._pos > READ_CHUNK:
                del self._in[:self._pos]
                self._pos = 0
            self._in += chunk
        self._parse()

    def _parse_py(self, one: bool = False) -> bool:
        """Reads the complete frames in _in (with `one`, at most one: then True if it did)."""
        buf = self._in
        while True:
            avail = len(buf) - self._pos
            if self._frame is None:
                if avail < 12:
                    return False
                self._frame = HEADER.unpack_from(buf, self._pos)
                self._pos += 12
                avail -= 12
            ml, dl = self._frame
            if self._meta is None:
                if avail < ml:
                    return False
                self._meta = bytes(memoryview(buf)[self._pos:self._pos + ml])  # one copy
                self._pos += ml
                avail -= ml
            p = self._pending[0] if self._pending else None
            into = p.into if p is not None and p.into is not None and p.into.nbytes == dl \
                else None
            if dl > READ_CHUNK or into is not None:
                if into is None and dl > self._max_data():
                    # a lying header: refused before bytearray(dl) zero-fills that much memory
                    raise ProtocolError("a reply's data section of %d bytes is over the "
                                        "server's limits" % dl)
                dst = into if into is not None else memoryview(bytearray(dl))
                take = min(avail, dl)
                dst[:take] = memoryview(buf)[self._pos:self._pos + take]
                self._pos += take
                if take < dl:
                    self._dst, self._have = dst, take
                    return False
                data: Any = dst
            else:
                if avail < dl:
                    return False
                data = bytes(memoryview(buf)[self._pos:self._pos + dl]) if dl else b""
                self._pos += dl
            self._finish(data)
            if one:
                return True

    def _max_data(self) -> int:
        """The largest reply data section the server may send: no tensor, and no frame, is
        larger than the limits its Hello states (its default, 1 GiB, before that)."""
        lim = self.limits
        return max(lim.max_frame_bytes, lim.max_tensor_bytes) if lim is not None and \
            (lim.max_frame_bytes or lim.max_tensor_bytes) else 1 << 30

    if FAST:
        _parse = _fast.ConnBase._parse_fast
    else:
        _parse = _parse_py

    def _finish(self, data: Any) -> None:
        meta, self._meta, self._frame = self._meta, None, None
        resp = pb.Response()
        resp.ParseFromString(meta)
        if not self._pending:
            raise ProtocolError("a reply arrived for no request (id %d)" % resp.id)
        p = self._pending[0]
        if resp.id != p.id:
            if resp.id == 0 and resp.status.code != pb.OK:
                # the server refused the connection or a frame it could not attribute
                err = ServerError(resp.status.code, resp.status.message)
                while self._pending:
                    self._fail(self._pending.popleft(), err)
                return
            raise ProtocolError("reply for request %d arrived when %d was expected"
                                  % (resp.id, p.id))
        self._pending.popleft()
        p.resp = resp
        p.data_in = data
        if resp.status.code != pb.OK:
            if p.resent and resp.status.code == pb.HANDLE_IN_USE and p.kind != "hello":
                p.resp = None  # a repeat of a create that ran before the drop: it is there
            else:
                p.error = ServerError(resp.status.code, resp.status.message)
        p.done = True
        p.frame = b""
        p.data = b""
        self._done(p)

    def _fail(self, p: Pending, err: ServerError) -> None:
        p.error = err
        p.done = True
        self._done(p)

    def _done(self, p: Pending) -> None:
        if p.on_done is not None:
            p.on_done(p)
        elif p.error is not None and p.tag is not None and self.error_sink is not None:
            self.error_sink.append(p)  # the session raises it at its next blocking point

    # -- blocking helpers (the test suites' vocabulary) --
    def call(self, req: Any, data: Any = b"") -> Any:
        p = self.wait(self.send(req, data))
        if p.error is not None:
            raise p.error
        self.last_data = p.data_in
        return p.resp

    def tensor(self, array: Any, requires_grad: bool = False) -> int:
        """Uploads a numpy array; returns its handle."""
        array = np.require(array, requirements="C")  # keeps 0-dim arrays 0-dim
        name = "bool" if array.dtype == np.bool_ else str(array.dtype)
        req = pb.Request()
        h = self.handle()
        req.create.out = h
        req.create.dtype = DTYPE_WIRE[name]
        req.create.shape.extend(array.shape)
        req.create.requires_grad = requires_grad
        self.call(req, array.astype(NUMPY[name]).tobytes())
        return h

    def backward(self, h: int, gradient: int = 0, retain_graph: bool = False) -> None:
        req = pb.Request()
        req.backward.handle = h
        req.backward.gradient = gradient
        req.backward.retain_graph = retain_graph
        self.call(req)

    def grad(self, h: int) -> Optional[int]:
        """The handle of h's .grad, or None."""
        req = pb.Request()
        req.grad.handle = h
        out = self.handle()
        req.grad.out = out
        resp = self.call(req)
        return out if resp.HasField("tensor") else None

    def retain_grad(self, h: int) -> None:
        req = pb.Request()
        req.set_grad.handle = h
        req.set_grad.retain_grad = True
        self.call(req)

    def info(self, h: int) -> Any:
        req = pb.Request()
        req.get.handle = h
        req.get.meta_only = True
        return self.call(req).tensor

    def set_grad_enabled(self, enabled: bool) -> None:
        req = pb.Request()
        req.set_grad_enabled.enabled = enabled
        self.call(req)

    def zero_grad_none(self, h: int) -> None:
        req = pb.Request()
        req.set_grad.handle = h
        req.set_grad.clear_grad = True
        self.call(req)

    def op_request(self, name: str, inputs: Any, inplace: bool = False, **kw: Any) -> Any:
        """A RunOp request for op `name`; inputs are handles (int wrapped in H) or numbers."""
        req = pb.Request()
        out = 0 if inplace else self.handle()
        req.run_op.out = out
        req.run_op.op = pb.Op.Value("OP_" + name.upper())
        req.run_op.inplace = inplace
        for x in inputs:
            o = req.run_op.inputs.add()
            if isinstance(x, H):
                o.handle = x.h
            else:
                scalar(x, o.scalar)
        a = req.run_op.args
        for k, v in kw.items():
            if k == "dims":
                a.dims.extend(v)
                a.has_dims = True
            elif k in ("min", "max", "value", "alpha", "beta"):  # OpArgs' Scalar fields
                scalar(v, getattr(a, k))
            elif k == "dtype":
                a.dtype = DTYPE_WIRE[v]
            elif k == "correction":
                a.correction = v
                a.has_correction = True
            elif k == "out2":
                req.run_op.out2 = v
            elif k == "out3":
                req.run_op.out3 = v
            elif k == "shifts":  # one int or a sequence
                a.shifts.extend(v if isinstance(v, (list, tuple)) else [v])
            elif k == "dim":
                a.dim = v
                a.has_dim = True
            elif k == "padding" and isinstance(v, str):  # conv's padding='same' / 'valid'
                a.padding_mode = v
            elif hasattr(getattr(a, k), "extend"):  # a repeated field: one int or a list
                getattr(a, k).extend(v if isinstance(v, (list, tuple)) else [v])
            else:
                setattr(a, k, v)
        return req

    def op(self, name: str, inputs: Any, inplace: bool = False, **kw: Any) -> int:
        """Runs op `name` and waits; returns the result's handle."""
        req = self.op_request(name, inputs, inplace, **kw)
        out = req.run_op.out
        try:
            resp = self.call(req)
        except ServerError:
            if out:
                self.free(out)  # the failure record the server keeps under `out`
            raise
        return resp.tensor.handle

    def get(self, h: int) -> Any:
        req = pb.Request()
        req.get.handle = h
        info = self.call(req).tensor
        name = WIRE_TO_NAME[info.dtype]
        arr = np.frombuffer(self.last_data, dtype=NUMPY[name]).reshape(tuple(info.shape))
        return arr.copy(), name

    def format(self, h: int) -> str:
        req = pb.Request()
        req.format.handle = h
        return self.call(req).text

    def free(self, *handles: int) -> None:
        req = pb.Request()
        req.free.handles.extend(handles)
        self.call(req)

    def stats(self) -> Any:
        req = pb.Request()
        req.stats.SetInParent()
        return self.call(req).stats


class H:
    """Marks an int as a handle, not a Python number."""

    def __init__(self, h: int):
        self.h = h
