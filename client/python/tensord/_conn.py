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
Get, small Creates, Backward, Grad, SetGrad) into the output buffer and reads the common replies
without protobuf message objects; the bytes on the wire are the same either way
(tests/python/test_fast_wire.py).

Many daemons (docs/DESIGN.md, "Many daemons"). An address may be a list ("a:7878,b:7878") or
"dns:NAME:PORT" (every address NAME resolves to). A new session tries the list round-robin,
starting one entry further for each new session of the process (from a random entry); NODE_FULL's
named peer is tried once, and a node that is full or cannot be reached passes the turn on. A
resume (and the reconnect above) goes to the node the token names: its address is remembered from
HelloResult and MOVED replies (per address list: a node id one list's servers claim says nothing
about another list's), else a listed node is asked and answers MOVED. At most
MAX_REDIRECTS are followed per connect, and every node id and address a server names is checked
before it is dialled.
"""
from __future__ import annotations

import collections
import itertools
import os
import re
import select
import socket
import struct
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import tensord_pb2 as pb
from ._requests import IDEMPOTENT, IDEMPOTENT_OUT_OF_PLACE

_fast: Any = None
if os.environ.get("TENSORD_PURE_PYTHON", "") in ("", "0"):
    try:
        from . import _fast
    except ImportError:  # not built: the pure-Python path below does everything
        _fast = None
FAST = _fast is not None  # whether the C fast path (tensord._fast) is in use
_new_buffer: Callable[[int], bytearray] = _fast.bytearray_uninit if FAST else bytearray

# Large receive buffers come from tensord._pool when it is built (and the client is not told to
# run in pure Python): memory reused from earlier downloads instead of fresh pages, whose first
# touch costs more than the transfer on some VMs (_pool.c). recv_buffer(n) is writable, n bytes.
_pool: Any = None
if FAST:
    try:
        from . import _pool
    except ImportError:
        _pool = None


def recv_buffer(n: int) -> Any:
    """A writable buffer of n bytes for a large download: pooled when tensord._pool is there
    (contents undefined until written), else a new bytearray (not zero-filled with _fast)."""
    if _pool is not None and n >= _pool.MIN:
        return _pool.take(n)
    return _new_buffer(n)

HEADER = struct.Struct(">IQ")
FLUSH_AT = 1 << 16          # queued bytes that trigger a write without waiting for a reply
READ_CHUNK = 1 << 18
RECONNECT_TRIES = 7         # about 3 s of backoff before a dropped connection is given up
MAX_ADDRS = 64              # addresses in a list, after dns: expansion
MAX_REDIRECTS = 5           # MOVED replies followed per connect
CONNECT_TIMEOUT = 10.0      # seconds a TCP connect may take before the next address is tried

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
    """An error reply: `code` is the protocol's StatusCode, `message` the server's text. For a
    refused Hello, `node` and `address` are what its Status names (MOVED, NODE_FULL), kept only
    when well formed; `bad` says they were there but malformed."""

    node = ""
    address = ""
    bad = False

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConnectError(ConnectionError):
    """No node could be reached: every address of the list failed (each one's error is in the
    message), or the node that owns the session did not answer ("node N at A is
    unreachable: ...")."""


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


# a node id: a DNS label, 1-63 of [a-z0-9-], neither first nor last a '-' (server/base/node.c)
_NODE_ID = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_TOKEN = re.compile(rb"((?!-)[a-z0-9-]{1,63}(?<!-))\.[0-9a-f]{32}\Z")
_HOST = re.compile(r"(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?\Z")
_V6 = re.compile(r"[0-9A-Fa-f:.]+\Z")

# (address list, node id) -> the address the node was last reached at through that list (from
# HelloResult and MOVED), for resumes; bounded. Keyed by the list as given, not by the node id
# alone: a node id is only what a server claims (every StatefulSet has a `tensord-0`), so what
# one list's servers said must never send another list's session token (and auth token) there.
_NODES: Dict[Tuple[str, str], str] = {}
_NODES_MAX = 1024
# where the process's next new session starts in an address list (a random start)
_RR = itertools.count(int.from_bytes(os.urandom(4), "little"))
_RR_LAST = [0]


def _remember(scope: str, node: str, address: str) -> None:
    key = (scope, node)
    if key in _NODES:
        del _NODES[key]
    elif len(_NODES) >= _NODES_MAX:
        del _NODES[next(iter(_NODES))]  # the oldest
    _NODES[key] = address


def is_node_id(s: Any) -> bool:
    return isinstance(s, str) and _NODE_ID.match(s) is not None


def host_port(s: str, allow_empty_host: bool = False) -> Optional[Tuple[str, int]]:
    """"host:port" (a name, IPv4, or "[IPv6]"; port 1-65535) -> (host, port); None if not that.
    What a server may send the client to, and what an address list holds besides unix: and
    dns: entries."""
    if not isinstance(s, str) or not s or len(s) >= 272 or not s.isascii():
        return None
    if s.startswith("["):
        end = s.find("]")
        host, rest = s[1:end], s[end + 1:]
        if end < 0 or not rest.startswith(":") or not _V6.match(host or "-"):
            return None
        port = rest[1:]
    else:
        host, sep, port = s.rpartition(":")
        if not sep or ":" in host:
            return None
        if not host and allow_empty_host:
            host = "127.0.0.1"
        if len(host) > 253 or not _HOST.match(host):
            return None
    if not (1 <= len(port) <= 5 and port.isdigit() and 1 <= int(port) <= 65535):
        return None
    return host, int(port)


def parse_addrs(addr: str) -> List[Tuple[str, str, Any]]:
    """An address, a comma-separated list of them, or dns:NAME:PORT (also as a list entry) ->
    [(label, "tcp" | "unix", where)], at most MAX_ADDRS, duplicates dropped."""
    if not isinstance(addr, str) or not addr:
        raise ValueError("no address given")
    if len(addr) > MAX_ADDRS * 272:
        raise ValueError("address list is too long")
    out: List[Tuple[str, str, Any]] = []

    def add(label: str, kind: str, where: Any) -> None:
        if any(label == o[0] for o in out):
            return
        if len(out) == MAX_ADDRS:
            raise ValueError("address list: more than %d addresses" % MAX_ADDRS)
        out.append((label, kind, where))

    for e in addr.split(","):
        if e.startswith("unix:") and 5 < len(e) < 108 + 5:
            add(e, "unix", e[5:])
        elif e.startswith("dns:"):
            hp = host_port(e[4:])
            if hp is None or e[4:].startswith("["):
                raise ValueError("bad address %r (want dns:NAME:PORT)" % e[:300])
            try:
                infos = socket.getaddrinfo(hp[0], hp[1], type=socket.SOCK_STREAM)
            except socket.gaierror as err:
                raise ConnectError("cannot resolve %s: %s" % (e, err)) from None
            for fam, _, _, _, sa in infos:
                if fam == socket.AF_INET:
                    add("%s:%d" % (sa[0], sa[1]), "tcp", (sa[0], sa[1]))
                elif fam == socket.AF_INET6:
                    add("[%s]:%d" % (sa[0], sa[1]), "tcp", (sa[0], sa[1]))
        else:
            hp = host_port(e, allow_empty_host=True)
            if hp is None:
                raise ValueError("bad address %r (want HOST:PORT, [V6]:PORT, unix:PATH or "
                                 "dns:NAME:PORT, or a comma-separated list of them)" % e[:300])
            add(e, "tcp", hp)
    return out


def token_bytes(resume: Any) -> bytes:
    """A session token to resume, as it goes on the wire: "<node id>.<32 hex>" (bytes or str),
    or a token from before scale-out: its 16 bytes, or their 32 hex digits as a str."""
    if not resume:
        return b""
    if isinstance(resume, str):
        if re.fullmatch(r"[0-9A-Fa-f]{32}", resume):
            return bytes.fromhex(resume)
        resume = resume.encode("ascii", "replace")
    if isinstance(resume, (bytes, bytearray, memoryview)):
        b = bytes(resume)
        if len(b) == 16 or _TOKEN.match(b):
            return b
    raise ValueError("malformed session token %r (want <node id>.<32 hex digits>, or a token "
                     "from before scale-out)" % (resume[:100],))


def token_node(token: bytes) -> str:
    """The node a session token names ("" for a token from before scale-out)."""
    m = _TOKEN.match(token)
    return m.group(1).decode() if m else ""


class Conn(_fast.ConnBase if FAST else object):  # type: ignore[misc]
    """A connection speaking for one session, pipelined; see the module docstring."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 unix: Optional[str] = None, token: str = "", resume: bytes = b"",
                 addr: Optional[str] = None):
        if addr is not None:
            self._addrs = parse_addrs(addr)
            self._scope = addr  # what the node table's entries learned here are kept under
        elif unix is not None:
            self._addrs = [("unix:" + unix, "unix", unix)]
        else:
            self._addrs = [(("[%s]:%d" if ":" in host else "%s:%d") % (host, port), "tcp",
                            (host, port))]
        if addr is None:
            self._scope = self._addrs[0][0]
        self.auth = token
        self.token = token_bytes(resume)
        self.node = ""     # the node that owns the session (HelloResult.node_id)
        self.address = ""  # where this connection went
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
        if self.token:
            self._route_resume()
        else:
            self._route_new()

    def _route_new(self) -> None:
        """A new session: the list round-robin, NODE_FULL's named peer tried once."""
        addrs = self._addrs
        n = len(addrs)
        start = next(_RR)
        _RR_LAST[0] = start
        errors: List[str] = []
        all_full = True
        for k in range(n):
            label, kind, where = addrs[(start + k) % n]
            try:
                return self._hello_at(label, kind, where)
            except ServerError as e:
                if e.code != pb.NODE_FULL:
                    if n == 1:
                        raise
                    raise ServerError(e.code, "%s: %s" % (label, e.message)) from None
                errors.append("%s: %s" % (label, e.message))
                peer = host_port(e.address) if e.address and e.address != label else None
                if peer is None:
                    if n == 1:
                        raise  # one address: its refusal as it is
                    continue
                try:
                    return self._hello_at(e.address, "tcp", peer)
                except ServerError as e2:
                    if e2.code != pb.NODE_FULL:
                        raise
                    errors.append("its peer %s at %s: %s" % (e.node or "?", e.address,
                                                            e2.message))
                except OSError as e2:
                    all_full = False
                    errors.append("its peer %s at %s: %s" % (e.node or "?", e.address, e2))
            except OSError as e:
                if n == 1:
                    raise
                all_full = False
                errors.append("%s: %s" % (label, e))
        msg = "no node opened a new session: " + "; ".join(errors)
        if all_full:
            raise ServerError(pb.NODE_FULL, msg)
        raise ConnectError(msg)

    def _route_resume(self) -> None:
        """A resume: at the owner's remembered address, else (or when that fails) a listed
        node, which answers MOVED when the session is another node's."""
        owner = token_node(self.token)
        first: List[Tuple[str, str, Any]] = []
        # This connection's last address first (a reconnect); else, when the caller gave a list,
        # where the owner was last reached. One address given is asked first, as it was told.
        known = self.address or (_NODES.get((self._scope, owner), "") if len(self._addrs) > 1 else "")
        hp = host_port(known) if known else None
        if hp is not None:
            first.append((known, "tcp", hp))
        n = len(self._addrs)
        start = _RR_LAST[0]
        ask = first + [a for a in (self._addrs[(start + k) % n] for k in range(n))
                       if a[0] != known]
        errors: List[str] = []
        last: BaseException = ConnectError("no address to ask")
        for i, (label, kind, where) in enumerate(ask):
            chain = [label]
            named = owner if i < len(first) else ""  # the node expected at `label`
            while True:
                try:
                    return self._hello_at(label, kind, where)
                except ServerError as e:
                    last = e
                    if e.code == pb.MOVED:
                        dest = host_port(e.address) if e.node and not e.bad else None
                        if dest is None:
                            raise ProtocolError("%s answered MOVED without a well-formed node "
                                                "id and address (not followed)" % label) from None
                        chain.append(e.node)
                        if len(chain) - 1 > MAX_REDIRECTS:
                            raise ServerError(pb.MOVED, "gave up after %d redirects resuming the "
                                              "session: %s" % (MAX_REDIRECTS,
                                                               " -> ".join(chain))) from None
                        _remember(self._scope, e.node, e.address)
                        label, kind, where, named = e.address, "tcp", dest, e.node
                        continue
                    retry = e.code == pb.UNKNOWN_NODE or (e.code == pb.UNKNOWN_SESSION and
                                                          not owner and len(ask) > 1)
                    if not retry:
                        raise
                    errors.append("%s: %s" % (label, e.message))
                    break
                except OSError as e:
                    if not named:
                        if len(ask) == 1:
                            raise
                        errors.append("%s: %s" % (label, e))
                        last = e
                        break
                    msg = "node %s at %s is unreachable: %s" % (named, label, e)
                    if len(chain) > 1:  # named by a MOVED: nobody else holds the session
                        raise ConnectError("; ".join([msg] + [x for x in errors if x != msg])) \
                            from None
                    errors.append(msg)
                    last = ConnectError(msg)
                    break
        if isinstance(last, ServerError):
            raise ServerError(last.code, "; ".join(errors))
        raise ConnectError("; ".join(errors) if owner or len(errors) > 1 else str(last))

    def _hello_at(self, label: str, kind: str, where: Any) -> None:
        """Dials one address and says Hello (resuming self.token if set). A refusal raises the
        server's ServerError with its Status's node/address; a failure to connect, OSError."""
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(where)
            except OSError:
                sock.close()
                raise
        else:
            # bounded: a node whose packets vanish must not hold a placement for minutes
            sock = socket.create_connection(where, timeout=CONNECT_TIMEOUT)
            sock.settimeout(None)
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
        try:
            self._wait_one(p)
        except BaseException:
            sock.close()
            self.sock = None
            raise
        if p.error is not None:
            sock.close()
            self.sock = None
            err = p.error
            st = p.resp.status if p.resp is not None else None
            if st is not None and (st.node or st.address):
                if (st.node and not is_node_id(st.node)) or \
                        (st.address and host_port(st.address) is None):
                    err.bad = True
                else:
                    err.node, err.address = st.node, st.address
            raise err
        hello = p.resp.hello
        tok = hello.session_token
        if not (len(tok) == 16 or _TOKEN.match(tok)) or \
                (hello.node_id and not is_node_id(hello.node_id)):
            sock.close()
            self.sock = None
            raise ProtocolError("the server's Hello reply has a malformed session token or "
                                "node id")
        self.token = tok
        self.limits = hello.limits
        self.version = hello.version
        self.node = hello.node_id
        self.address = label
        if self.node:
            _remember(self._scope, self.node, label)

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
                    # a lying header: refused before that much memory is allocated
                    raise ProtocolError("a reply's data section of %d bytes is over the "
                                        "server's limits" % dl)
                # pooled (tensord._pool) or, without it, not zero-filled (with _fast): the
                # socket fills it, and only what arrives costs memory, not what a header up to
                # the limits claims
                dst = into if into is not None else memoryview(recv_buffer(dl))
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
