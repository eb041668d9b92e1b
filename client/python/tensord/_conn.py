"""The wire protocol from Python: frames, Hello, and one blocking call per request kind.

`Conn` is the low level under `tensord.Session` (and what the test suites use to check the
server against PyTorch): handles are plain ints, replies are read as each call returns.
"""
import socket
import struct

import numpy as np

from . import tensord_pb2 as pb

DTYPES = {
    "float32": (pb.FLOAT32, np.float32),
    "float64": (pb.FLOAT64, np.float64),
    "int32": (pb.INT32, np.int32),
    "int64": (pb.INT64, np.int64),
    "bool": (pb.BOOL, np.bool_),
}
WIRE_TO_NAME = {v[0]: k for k, v in DTYPES.items()}


class ServerError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def scalar(v, msg):
    if isinstance(v, bool):
        msg.b = v
    elif isinstance(v, int):
        msg.i = v
    else:
        msg.f = float(v)


class Conn:
    def __init__(self, port, host="127.0.0.1", unix=None, token=""):
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        self.next_handle = 1
        req = pb.Request()
        req.hello.min_version = 1
        req.hello.max_version = 1
        req.hello.auth_token = token
        req.hello.client_name = "tensord-python"
        self.token = self.call(req).hello.session_token

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, req, data=b""):
        req.id = self.next_id
        self.next_id += 1
        meta = req.SerializeToString()
        self.sock.sendall(struct.pack(">IQ", len(meta), len(data)) + meta + data)
        ml, dl = struct.unpack(">IQ", self._recv_exact(12))
        resp = pb.Response()
        resp.ParseFromString(self._recv_exact(ml))
        self.last_data = self._recv_exact(dl) if dl else b""
        if resp.id != req.id:
            if resp.id == 0 and resp.status.code != pb.OK:
                # the server refused the connection or a frame it could not attribute
                raise ServerError(resp.status.code, resp.status.message)
            raise ConnectionError("reply for request %d arrived when %d was expected"
                                  % (resp.id, req.id))
        if resp.status.code != pb.OK:
            raise ServerError(resp.status.code, resp.status.message)
        return resp

    def handle(self):
        h = self.next_handle
        self.next_handle += 1
        return h

    def tensor(self, array, requires_grad=False):
        """Uploads a numpy array; returns its handle."""
        array = np.require(array, requirements="C")  # keeps 0-dim arrays 0-dim
        name = "bool" if array.dtype == np.bool_ else str(array.dtype)
        req = pb.Request()
        h = self.handle()
        req.create.out = h
        req.create.dtype = DTYPES[name][0]
        req.create.shape.extend(array.shape)
        req.create.requires_grad = requires_grad
        self.call(req, array.astype(DTYPES[name][1]).tobytes())
        return h

    def backward(self, h, gradient=0, retain_graph=False):
        req = pb.Request()
        req.backward.handle = h
        req.backward.gradient = gradient
        req.backward.retain_graph = retain_graph
        self.call(req)

    def grad(self, h):
        """The handle of h's .grad, or None."""
        req = pb.Request()
        req.grad.handle = h
        out = self.handle()
        req.grad.out = out
        resp = self.call(req)
        return out if resp.HasField("tensor") else None

    def retain_grad(self, h):
        req = pb.Request()
        req.set_grad.handle = h
        req.set_grad.retain_grad = True
        self.call(req)

    def info(self, h):
        req = pb.Request()
        req.get.handle = h
        req.get.meta_only = True
        return self.call(req).tensor

    def set_grad_enabled(self, enabled):
        req = pb.Request()
        req.set_grad_enabled.enabled = enabled
        self.call(req)

    def zero_grad_none(self, h):
        req = pb.Request()
        req.set_grad.handle = h
        req.set_grad.clear_grad = True
        self.call(req)

    def op(self, name, inputs, inplace=False, **kw):
        """Runs op `name`; inputs are handles (int wrapped in H) or Python numbers."""
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
            elif k in ("min", "max"):
                scalar(v, getattr(a, k))
            elif k == "dtype":
                a.dtype = DTYPES[v][0]
            elif k == "correction":
                a.correction = v
                a.has_correction = True
            elif k == "out2":
                req.run_op.out2 = v
            elif k == "dim":
                a.dim = v
                a.has_dim = True
            else:
                setattr(a, k, v)
        try:
            resp = self.call(req)
        except ServerError:
            if out:
                self.free(out)  # the failure record the server keeps under `out`
            raise
        return resp.tensor.handle

    def get(self, h):
        req = pb.Request()
        req.get.handle = h
        info = self.call(req).tensor
        name = WIRE_TO_NAME[info.dtype]
        arr = np.frombuffer(self.last_data, dtype=DTYPES[name][1]).reshape(tuple(info.shape))
        return arr.copy(), name

    def format(self, h):
        req = pb.Request()
        req.format.handle = h
        return self.call(req).text

    def free(self, *handles):
        req = pb.Request()
        req.free.handles.extend(handles)
        self.call(req)

    def stats(self):
        req = pb.Request()
        req.stats.SetInParent()
        return self.call(req).stats


class H:
    """Marks an int as a handle, not a Python number."""

    def __init__(self, h):
        self.h = h
