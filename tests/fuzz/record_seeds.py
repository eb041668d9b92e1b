#!/usr/bin/python3
"""Regenerates the fuzz seed corpora in tests/fuzz/corpus/ from real traffic and the test suites.

    TENSORD_BIN=build/tensord PYTHONPATH=client/python /usr/bin/python3 tests/fuzz/record_seeds.py

It starts tensord on a loopback port, puts a recording proxy in front of it, and runs a few
short sessions of the Python client (creates, elementwise ops, in-place ops on views, matmul,
backward, Get in chunks, Save/Load, frees, errors). The bytes each client sent become:

  corpus/frames/<name>-<k>   5 bytes of chunking flags, then the raw stream (see fuzz_frames.c)
  corpus/rpc/<name>          a flags byte, then (kind, meta_len, data_len, meta, data) records
                             for every frame except the client's Hello (see fuzz_rpc.c); also
                             with the deferring executor (<name>-deferred)

plus hand-written frames for the framing edge cases, safetensors files (written by tensord's
Save and by tensorctl's format, and the header cases of tests/base/test_safetensors.c), and the
.tdx scripts and parser cases of tests/cli for the CLI parser. Run it again after a protocol
change; the corpora are small (a few hundred KB).
"""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Recorder:
    """A loopback proxy that keeps what each client connection sent."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.streams = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            buf = bytearray()
            self.streams.append(buf)
            threading.Thread(target=self._pipe, args=(c, s, buf), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, None), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, record):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if record is not None:
                    record += b
                dst.sendall(b)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def frames_of(stream):
    at, out = 0, []
    while at + 12 <= len(stream):
        ml, dl = struct.unpack(">IQ", stream[at:at + 12])
        out.append((bytes(stream[at + 12:at + 12 + ml]),
                    bytes(stream[at + 12 + ml:at + 12 + ml + dl])))
        at += 12 + ml + dl
    return out


def scenario_basic(torch):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = (x * x + 2).sum()
    y.backward()
    x.grad.tolist()
    a = torch.arange(12).reshape(3, 4)
    b = a.t()
    (a @ b).tolist()
    c = a[1:, ::2]
    c.add_(5)
    a.tolist()
    print(torch.tensor([True, False]) & torch.tensor([True, True]), file=open(os.devnull, "w"))


def scenario_views(torch):
    z = torch.zeros(4, 3)
    v = z.transpose(0, 1)
    v.mul_(2)
    e = torch.ones(3).expand(2, 3)
    try:
        e.add_(1)
        torch.synchronize()  # pipelined: the error surfaces here
    except Exception:
        pass
    w = z.view(12)
    w.fill_(1.5)
    z.sum(dim=0, keepdim=True).tolist()
    torch.cat([z, z], dim=0).mean().item()
    z.narrow(0, 1, 2).clamp(min=0.5, max=1.0).tolist()
    del v, w


def scenario_autograd(torch):
    torch.manual_seed(7)
    w = torch.randn(3, 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    x = torch.rand(4, 3)
    out = (x @ w + b).relu().softmax(dim=1)
    loss = out.log().neg().mean()
    loss.backward(retain_graph=True)
    loss.backward()
    w.grad.tolist()
    with torch.no_grad():
        w.sub_(w.grad * 0.1)
    w.detach().tolist()
    try:
        (w * 2).backward()
    except Exception:
        pass


def scenario_errors(torch):
    for f in (lambda: torch.tensor([1, 2]) / torch.tensor([0, 0]),
              lambda: torch.ones(2, 3) @ torch.ones(2, 3),
              lambda: torch.ones(2, 3) + torch.ones(4),
              lambda: torch.tensor([1, 2, 3]).reshape(2, 2)):
        try:
            f().tolist()
        except Exception:
            pass


def run_sessions(port, data_dir):
    import tensord
    out = []
    for name, fn in (("basic", scenario_basic), ("views", scenario_views),
                     ("autograd", scenario_autograd), ("errors", scenario_errors)):
        s = tensord.Session("127.0.0.1:%d" % port)
        fn(s)
        s.close()
        out.append(name)
    s = tensord.Session("127.0.0.1:%d" % port)
    a = s.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    i = s.arange(5, dtype=tensord.int32)
    s.save("seed", {"a": a, "i": i})
    s.list_file("seed")
    got = s.load("seed")
    [v.tolist() for v in got.values()]
    s.close()
    out.append("files")
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def frame(meta, data=b""):
    return struct.pack(">IQ", len(meta), len(data)) + meta + data


def rpc_records(frames, flags=0x04):
    out = bytearray([flags])
    for meta, data in frames:
        out += struct.pack("<BHH", 0, len(meta), len(data)) + meta + data
    return bytes(out)


def main():
    tensord_bin = os.environ.get("TENSORD_BIN", os.path.join(ROOT, "build", "tensord"))
    shutil.rmtree(CORPUS, ignore_errors=True)
    data_dir = tempfile.mkdtemp(prefix="td_seed_")
    port = free_port()
    daemon = subprocess.Popen([tensord_bin, "--listen", "127.0.0.1:%d" % port, "--data-dir",
                               data_dir, "--log-level", "error"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        rec = Recorder(port)
        names = run_sessions(rec.port, data_dir)
        time.sleep(0.3)
    finally:
        daemon.terminate()
        daemon.wait(10)
    import tensord
    pb = tensord._conn.pb
    rng = random.Random(1)
    streams = [bytes(b) for b in rec.streams if b]
    for name, stream in zip(names, streams):
        # frames: a few chunkings of each real stream
        for k, flags in enumerate((0x07, 0x00, 0x0a, 0x1b, 0x3c)):
            seed = struct.pack("<I", rng.randrange(1, 1 << 32))
            write(os.path.join(CORPUS, "frames", "%s-%d" % (name, k)),
                  seed + bytes([flags]) + stream)
        fr = [f for f in frames_of(stream)]
        body = []
        for meta, data in fr:
            req = pb.Request()
            req.ParseFromString(meta)
            if req.WhichOneof("body") != "hello":
                body.append((meta, data))
        write(os.path.join(CORPUS, "rpc", name), rpc_records(body))
        write(os.path.join(CORPUS, "rpc", name + "-nohold"), rpc_records(body, 0x00))
        # the deferring executor: heavy jobs wait; a kind-3 record after every third frame
        # lets the oldest one finish, and the connection goes away (kind 4) with work queued
        recs = bytearray([0x0c])
        for k, (meta, data) in enumerate(body):
            recs += struct.pack("<BHH", 0, len(meta), len(data)) + meta + data
            if k % 3 == 2:
                recs += struct.pack("<BHH", 3, 0, 0)
        recs += struct.pack("<BHH", 4, 0, 0)
        write(os.path.join(CORPUS, "rpc", name + "-deferred"), bytes(recs))

    # rpc: reconnects, a session's TTL passing, a hostile file, requests before Hello
    def req(**kw):
        r = pb.Request(id=kw.pop("id", 9))
        for k, v in kw.items():
            getattr(r, k).CopyFrom(v)
        return r.SerializeToString()
    create = req(create=pb.Create(out=1, dtype=pb.FLOAT32, shape=[2], requires_grad=True))
    get = req(get=pb.Get(handle=1))
    one = struct.pack("<2f", 1.0, 2.0)
    recs = bytearray([0x04])
    recs += struct.pack("<BHH", 0, len(create), len(one)) + create + one
    recs += struct.pack("<BHH", 0, len(get), 0) + get
    recs += struct.pack("<BHH", 4, 0, 0)
    recs += struct.pack("<BHH", 0, len(get), 0) + get
    recs += struct.pack("<BHH", 5, 0, 0)
    recs += struct.pack("<BHH", 0, len(get), 0) + get
    write(os.path.join(CORPUS, "rpc", "reconnect"), bytes(recs))
    saved = os.path.join(data_dir, "files", "seed.safetensors")
    if os.path.exists(saved):
        st = open(saved, "rb").read()
        load = req(load=pb.Load(file="f", tensors=[pb.NamedTensor(name="a", handle=3)]))
        recs = bytearray([0x00])
        recs += struct.pack("<BHH", 6, 0, len(st)) + st
        recs += struct.pack("<BHH", 0, len(load), 0) + load
        write(os.path.join(CORPUS, "rpc", "load-file"), bytes(recs))
        write(os.path.join(CORPUS, "safetensors", "saved-by-tensord"), st)
    # rpc: every op of ops.def once, on float, int and bool operands, out of place and in place,
    # then backward through what it made: so the fuzzer starts with each op's code covered
    import re
    rows = re.findall(r'^OP\(\s*(\w+),\s*"\w+",\s*(-?\d+),\s*(\d)',
                      open(os.path.join(ROOT, "server", "core", "ops.def")).read(), re.M)
    def rec(r, data=b"", kind=0):
        return struct.pack("<BHH", kind, len(r), len(data)) + r + data
    def prelude():
        out = bytearray([0x04])
        out += rec(req(id=1, create=pb.Create(out=1, dtype=pb.FLOAT32, shape=[2, 3],
                                              requires_grad=True)),
                   struct.pack("<6f", 1.5, -2.0, 0.25, 3.0, 0.0, -0.5))
        out += rec(req(id=2, create=pb.Create(out=2, dtype=pb.FLOAT32, shape=[3, 2])),
                   struct.pack("<6f", 1, 2, 3, 4, 5, 6))
        out += rec(req(id=3, create=pb.Create(out=3, dtype=pb.INT64, shape=[3])),
                   struct.pack("<3q", 4, -7, 0))
        out += rec(req(id=4, create=pb.Create(out=4, dtype=pb.BOOL, shape=[3])), b"\x01\x00\x01")
        out += rec(req(id=5, full=pb.Full(out=5, dtype=pb.FLOAT64, shape=[2, 3],
                                          value=pb.Scalar(f=2.0))))
        out += rec(req(id=6, run_op=pb.RunOp(out=6, op=pb.OP_TRANSPOSE, inputs=[
            pb.Operand(handle=5)], args=pb.OpArgs(dim=0, dim2=1, has_dim=True))))
        return out
    group, n, last_sum = prelude(), 0, 0
    rid = 100
    for name, nin, inplace in rows:
        op = getattr(pb, "OP_" + name)
        nin = max(int(nin), 1)
        for ins in ([1, 5, 2][:nin], [3, 3, 3][:nin], [4, 4, 4][:nin]):
            rid += 1
            out = 1000 + rid
            args = pb.OpArgs(dim=0, has_dim=True, dims=[1, 0], has_dims=True)
            group += rec(req(id=rid, run_op=pb.RunOp(
                out=out, op=op, inputs=[pb.Operand(handle=h) for h in ins], args=args)))
            if ins[0] == 1:
                rid += 1
                last_sum = 100000 + rid
                group += rec(req(id=rid, run_op=pb.RunOp(out=last_sum, op=pb.OP_SUM, inputs=[
                    pb.Operand(handle=out)])))
        if int(inplace):
            rid += 1
            group += rec(req(id=rid, run_op=pb.RunOp(op=op, inplace=True, inputs=[
                pb.Operand(handle=6), pb.Operand(scalar=pb.Scalar(f=0.5))][:max(int(nin), 1)])))
        n += 1
        if n % 10 == 0:
            group += rec(req(id=rid + 1, backward=pb.Backward(handle=last_sum)))
            group += rec(req(id=rid + 2, get=pb.Get(handle=6)))
            write(os.path.join(CORPUS, "rpc", "ops-%02d" % (n // 10)), bytes(group))
            group = prelude()
    if len(group) > 1:
        write(os.path.join(CORPUS, "rpc", "ops-last"), bytes(group))

    hello = req(hello=pb.Hello(min_version=1, max_version=1, auth_token="wrong"))
    write(os.path.join(CORPUS, "rpc", "pre-hello"),
          bytes([0x03]) + struct.pack("<BHH", 0, len(get), 0) + get +
          struct.pack("<BHH", 0, len(hello), 0) + hello)

    # frames: edge cases of the reader
    ping = req(ping=pb.Ping())
    cases = {
        "empty-frame": frame(b""),
        "zero-meta-data": frame(b"", b"\x01\x02\x03"),
        "pipelined": frame(ping) * 20,
        "big-data": frame(create, bytes(20000)),
        "meta-too-big": struct.pack(">IQ", 4097, 0) + frame(ping),
        "frame-too-big": frame(ping) + struct.pack(">IQ", 1, 1 << 20),
        "huge-data-len": struct.pack(">IQ", 0, (1 << 64) - 1),
        "truncated": frame(ping, b"abcd")[:-2],
    }
    for name, stream in cases.items():
        for k, flags in enumerate((0x00, 0x0d, 0x3e)):
            write(os.path.join(CORPUS, "frames", "%s-%d" % (name, k)),
                  struct.pack("<I", 7 + k) + bytes([flags]) + stream)

    # safetensors: valid headers and the unit tests' bad ones
    def st_file(header, data=b""):
        h = header.encode()
        return struct.pack("<Q", len(h)) + h + data
    write(os.path.join(CORPUS, "safetensors", "two"), st_file(
        '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],'
        '"data_offsets":[0,16]},"b":{"dtype":"I64","shape":[3],"data_offsets":[16,40]}}',
        bytes(40)))
    write(os.path.join(CORPUS, "safetensors", "scalar-bool"), st_file(
        '{"s":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]},'
        '"e":{"dtype":"F64","shape":[0,3],"data_offsets":[1,1]}}', b"\x01"))
    write(os.path.join(CORPUS, "safetensors", "escapes"), st_file(
        '{"a\\"b\\\\c\\u00e9\\n":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}   ',
        bytes(4)))
    for i, bad in enumerate((
            '{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}',
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}',
            '{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,4]}}',
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}',
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
            '{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}',
            '{"__metadata__":{"k":"v"},"__metadata__":{}}',
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x')):
        write(os.path.join(CORPUS, "safetensors", "bad-%d" % i), st_file(bad, bytes(8)))

    # cli_parse: the scripts and the parser test's statements
    os.makedirs(os.path.join(CORPUS, "cli_parse"), exist_ok=True)
    for f in os.listdir(os.path.join(ROOT, "tests", "cli")):
        if f.endswith(".tdx"):
            shutil.copy(os.path.join(ROOT, "tests", "cli", f), os.path.join(CORPUS, "cli_parse", f))
    import re
    src = open(os.path.join(ROOT, "tests", "cli", "test_parse.c")).read()
    lits = re.findall(r'check(?:_error)?\("((?:[^"\\]|\\.)*)"', src)
    for i, lit in enumerate(lits):
        text = bytes(lit, "utf-8").decode("unicode_escape").encode("utf-8", "surrogateescape")
        write(os.path.join(CORPUS, "cli_parse", "case-%03d" % i), text)
    shutil.rmtree(data_dir, ignore_errors=True)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    print("corpus: %d bytes" % total)


if __name__ == "__main__":
    main()
