"""The end-to-end workload that tests/valgrind/run.sh drives a daemon under memcheck with.

usage: workload.py PHASE PORT STATE_FILE
  phase 1: a representative session through the Python package (creates of every dtype, ops,
           views, matmul, backward, gets, frees, Save/Load, resume after a dropped connection,
           error replies, pipelining) plus a few hostile frames on raw sockets; leaves one
           session open with known tensors and writes its token to STATE_FILE, so the daemon's
           SIGTERM snapshot has something to write.
  phase 2: after a restart on the same --data-dir, resumes that session and checks its tensors
           (the restore path), then closes it.
Exits non-zero on any unexpected result.
"""
import socket
import struct
import sys

import numpy as np

import tensord
from tensord import _conn as wire

pb = wire.pb
HEADER = struct.Struct(">IQ")


def expect_error(fn, code):
    try:
        fn()
    except wire.ServerError as e:
        assert e.code == code, (pb.StatusCode.Name(e.code), e.message)
        return
    raise AssertionError("no error from %r" % fn)


def package_workload(addr):
    s = tensord.Session(addr=addr)
    s.manual_seed(7)
    x = s.tensor([[1.0, 2.0], [3.0, 4.0]])
    i = s.tensor([[1, 2], [3, 4]])
    b = s.tensor([True, False])
    d = s.tensor([1.5, -2.5], dtype=tensord.float64)
    i32 = s.tensor([7, 8, 9], dtype=tensord.int32)
    assert (x @ x).tolist() == [[7.0, 10.0], [15.0, 22.0]]
    assert (i @ i).tolist() == [[7, 10], [15, 22]]
    assert (x + i).dtype == tensord.float32
    assert (i // 2).tolist() == [[0, 1], [1, 2]]
    assert b.logical_not().tolist() == [False, True]
    assert d.abs().sum().item() == 4.0
    assert (i32 * 2).tolist() == [14, 16, 18]
    big = s.randn(256, 256)                     # heavy: runs on the worker pool
    y = (big @ big.t()).relu().mean(dim=0)
    assert y.shape == (256,)
    t = x.t().contiguous().reshape(4)
    assert t.tolist() == [1.0, 3.0, 2.0, 4.0]
    e = s.tensor([[1.0], [2.0]]).expand(2, 3)
    assert e.sum().item() == 9.0
    sl = s.arange(10)[2:8:2]
    assert sl.tolist() == [2, 4, 6]
    assert repr(s.tensor([1.0, 2.5])) == "tensor([1.0000, 2.5000])"
    # autograd
    w = s.tensor([2.0, -1.0, 0.5], requires_grad=True)
    bias = s.tensor([0.1], requires_grad=True)
    for _ in range(3):
        loss = ((w * w).sum() * 3 + bias.exp().sum()).log()
        loss.backward()
    assert w.grad is not None and bias.grad is not None
    w.grad = None
    a2 = s.tensor([2.0], requires_grad=True)
    b2 = s.tensor([6.0], requires_grad=True)
    q = 3 * a2 ** 3 - b2 ** 2
    q.backward()
    assert a2.grad.tolist() == [36.0] and b2.grad.tolist() == [-12.0]
    with s.no_grad():
        w.add_(1.0)
    lin = s.randn(8, 4, requires_grad=True)
    out = s.randn(5, 4).matmul(lin.t()).softmax(dim=1)
    out.sum().backward()
    # errors (each an error reply; the session carries on)
    for bad in (lambda: (x @ s.ones(3, 3)).tolist(),
                lambda: (i // s.zeros(2, 2, dtype=tensord.int64)).tolist(),
                lambda: s.tensor([1, 2]).reshape(3).tolist()):
        try:
            bad()
        except tensord.TensorError:
            pass
        else:
            raise AssertionError("expected an error")
    # persistence
    s.save("vg_ckpt", {"w": w, "i": i, "b": b})
    back = s.load("vg_ckpt")
    assert back["i"].tolist() == [[1, 2], [3, 4]]
    assert sorted(s.list_file("vg_ckpt")) == ["b", "i", "w"]
    st = s.stats()
    assert st.session_tensors > 0
    s.close()


def conn_workload(port, state_file):
    c = wire.Conn(port)
    h = c.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    g = c.tensor(np.ones(3, np.float64), requires_grad=True)
    loss = c.op("sum", [wire.H(c.op("mul", [wire.H(g), wire.H(g)]))])
    c.backward(loss)
    gh = c.grad(g)
    # pipelining: many requests, replies read later, some failing
    pend = [c.send(c.op_request("add", [wire.H(h), float(k)])) for k in range(50)]
    pend.append(c.send(c.op_request("matmul", [wire.H(h), wire.H(h)])))   # fails
    pend.append(c.send(c.op_request("neg", [wire.H(c.next_handle - 1)])))
    c.sync()
    assert all(p.error is None for p in pend[:50])
    assert pend[50].error.code == pb.SHAPE_MISMATCH
    assert pend[51].error.code == pb.INPUT_FAILED
    # chunked read and write
    r = pb.Request()
    r.get.handle = h
    r.get.offset = 8
    r.get.length = 8
    c.call(r)
    assert c.last_data == np.array([2, 3], np.float32).tobytes()
    r = pb.Request()
    r.write.handle = h
    r.write.offset = 0
    c.call(r, np.array([100], np.float32).tobytes())
    expect_error(lambda: c.get(987654321), pb.UNKNOWN_HANDLE)
    c.free(*[p.resp.tensor.handle for p in pend[:40]])
    # resume: drop the socket; the next call reconnects with the token
    c.sock.shutdown(socket.SHUT_RDWR)
    assert c.get(h)[0][0, 0] == 100.0
    assert c.reconnects == 1
    # a second connection to the same session sees the same tensors
    c2 = wire.Conn(port, resume=c.token)
    assert c2.get(gh)[0].tolist() == [2.0, 2.0, 2.0]
    c2.close()
    with open(state_file, "w") as f:
        f.write("%s %d %d %d\n" % (c.token.hex(), h, g, gh))
    c.close()   # the session outlives the connection; SIGTERM snapshots it


def frame(meta, data=b"", ml=None, dl=None):
    if not isinstance(meta, bytes):
        meta = meta.SerializeToString()
    return HEADER.pack(len(meta) if ml is None else ml, len(data) if dl is None else dl) + \
        meta + data


def hostile_frames(port):
    def sock():
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        hello = pb.Request()
        hello.id = 1
        hello.hello.min_version = 1
        hello.hello.max_version = 1
        s.sendall(frame(hello))
        return s

    def drain(s):
        s.settimeout(60)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()
    ping = pb.Request()
    ping.id = 2
    ping.ping.SetInParent()
    # garbage protobuf, an empty frame, a data section on a Ping, then an oversized header
    s = sock()
    s.sendall(frame(b"\xff\xfe\xfd") + HEADER.pack(0, 0) + frame(ping, b"xx") + frame(ping) +
              HEADER.pack(0xFFFFFFFF, 0))
    drain(s)
    # a truncated data section, then EOF
    create = pb.Request()
    create.id = 3
    create.create.out = 1
    create.create.dtype = pb.FLOAT32
    create.create.shape.append(1 << 16)
    s = sock()
    s.sendall(frame(create, b"\x00" * 1000, dl=1 << 18))
    s.shutdown(socket.SHUT_WR)
    drain(s)
    # a request before Hello, then a close without a reply read
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(frame(ping))
    s.shutdown(socket.SHUT_WR)
    drain(s)
    # two bodies, unknown fields, and a huge repeated field
    s = sock()
    s.sendall(frame(b"\x08\x09\x6a\x00\x62\x00\xf8\x06\x01"))
    c = pb.Request()
    c.id = 4
    c.create.out = 2
    c.create.dtype = pb.BOOL
    c.create.shape.extend([1] * 100000)
    s.sendall(frame(c))
    s.sendall(frame(ping))
    s.shutdown(socket.SHUT_WR)
    drain(s)


def phase2(port, state_file):
    token, h, g, gh = open(state_file).read().split()
    c = wire.Conn(port, resume=bytes.fromhex(token))
    arr = c.get(int(h))[0]
    assert arr[0, 0] == 100.0 and arr[2, 3] == 11.0, arr
    assert c.info(int(g)).requires_grad
    assert c.get(int(gh))[0].tolist() == [2.0, 2.0, 2.0]
    r = pb.Request()
    r.close_session.SetInParent()
    c.call(r)
    c.close()
    # Save files belong to their session and leave with it (the package workload closed the
    # session that saved vg_ckpt): a new session finds nothing under that name.
    s = tensord.Session(addr="127.0.0.1:%d" % port)
    try:
        s.load("vg_ckpt")
    except tensord.TensorError as e:
        assert "No such file" in str(e), e
    else:
        raise AssertionError("another session's file was readable")
    s.close()


def main():
    phase, port, state_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if phase == "1":
        package_workload("127.0.0.1:%d" % port)
        conn_workload(port, state_file)
        hostile_frames(port)
    else:
        phase2(port, state_file)
    print("workload phase %s: ok" % phase)


if __name__ == "__main__":
    main()
