"""The watcher of test_attacks.Guard.watching, run as a process of its own.

It times another session's tiny ops (add of two 2-element tensors, Get of the sum, Free, sent
together as a client pipelines them) and samples the node's allocated_bytes, every `period`
seconds, until a line or EOF arrives on stdin; then it closes its session and prints one JSON
object: {"lat": [seconds...], "peak_alloc": bytes, "errors": [...]}.

It runs apart from the test process so that what it times is the daemon's service, not the GIL:
an attack's reader thread in the test process parses hundreds of thousands of replies, and a
watcher thread beside it waited its turn for the interpreter (seen: 134 and 146 ms probes while
the daemon's own measure showed no loop turn held past 1 ms).

    attack_watcher.py PORT PERIOD_S
It prints "ready" once its first tiny op has been answered.
"""
import json
import select
import socket
import struct
import sys
import time

import numpy as np

import wire

pb = wire.pb
HEADER = struct.Struct(">IQ")


class Conn:
    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.rid = 0

    def req(self):
        self.rid += 1
        return pb.Request(id=self.rid)

    @staticmethod
    def frame(r, data=b""):
        meta = r.SerializeToString()
        return HEADER.pack(len(meta), len(data)) + meta + data

    def recv(self):
        while True:
            if len(self.buf) >= 12:
                ml, dl = HEADER.unpack_from(self.buf)
                if len(self.buf) >= 12 + ml + dl:
                    resp = pb.Response()
                    resp.ParseFromString(bytes(self.buf[12:12 + ml]))
                    data = bytes(self.buf[12 + ml:12 + ml + dl])
                    del self.buf[:12 + ml + dl]
                    return resp, data
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the watcher's connection was closed")
            self.buf += chunk

    def call(self, r, data=b""):
        self.s.sendall(self.frame(r, data))
        resp, out = self.recv()
        if resp.status.code != pb.OK:
            raise RuntimeError("%s: %s" % (pb.StatusCode.Name(resp.status.code),
                                           resp.status.message))
        return resp, out


def main():
    port, period = int(sys.argv[1]), float(sys.argv[2])
    c = Conn(port)
    h = c.req()
    h.hello.min_version = 1
    h.hello.max_version = 1
    c.call(h)
    for handle, v in ((1, [1.0, 2.0]), (2, [3.0, 4.0])):
        r = c.req()
        r.create.out = handle
        r.create.dtype = pb.FLOAT32
        r.create.shape.append(2)
        c.call(r, np.array(v, dtype=np.float32).tobytes())

    def tiny():
        add = c.req()
        add.run_op.out = 3
        add.run_op.op = pb.OP_ADD
        add.run_op.inputs.add().handle = 1
        add.run_op.inputs.add().handle = 2
        get = c.req()
        get.get.handle = 3
        free = c.req()
        free.free.handles.append(3)
        t0 = time.monotonic()
        c.s.sendall(c.frame(add) + c.frame(get) + c.frame(free))
        got = [c.recv() for _ in range(3)]
        dt = time.monotonic() - t0
        codes = [g[0].status.code for g in got]
        if codes != [pb.OK] * 3:
            raise RuntimeError("tiny op failed: %s" % [g[0].status.message for g in got])
        if np.frombuffer(got[1][1], dtype=np.float32).tolist() != [4.0, 6.0]:
            raise RuntimeError("tiny op gave %r" % got[1][1])
        return dt

    def stopped(wait):
        return bool(select.select([sys.stdin], [], [], wait)[0])

    lat, errors, peak = [], [], 0
    tiny()
    print("ready", flush=True)
    while True:
        try:
            lat.append(tiny())
            r = c.req()
            r.stats.SetInParent()
            peak = max(peak, c.call(r)[0].stats.allocated_bytes)
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(repr(e))
            break
        if stopped(period):
            break
    if not errors:
        try:
            r = c.req()
            r.close_session.SetInParent()
            c.call(r)
        except Exception as e:  # noqa: BLE001
            errors.append("closing: " + repr(e))
    print(json.dumps({"lat": lat, "peak_alloc": peak, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
