#!/usr/bin/python3
"""Regenerates the fuzz seed corpora in tests/fuzz/corpus/ from the test suites' own traffic.

    make fuzz-seeds                      # builds what it needs, then runs this script
    # or, by hand, after `make tensord tensorctl build/tests/rpc/test_rpc` and the fuzz binaries
    # (`make fuzz FUZZ_SECONDS=0` builds them):
    /usr/bin/python3 tests/fuzz/record_seeds.py [--no-merge] [pytest files...]

What is recorded (tests/fuzz/seeds/ holds the two recorders):

  * the Python suites (default: SUITES below, including the 184 hostile cases and tensorctl's
    suite) run under pytest against a daemon started through a wrapper that preloads
    seeds/record_preload.c: every connection the daemon accepts has its received bytes kept
    (at most 1 MiB each), and every safetensors file the daemon or tensorctl writes is kept;
    tensorctl runs through a wrapper that keeps its `-c` text and the script files it is given;
  * tests/rpc/test_rpc.c, relinked with seeds/record_rpc_wrap.c (`-Wl,--wrap`), keeps every
    frame each of its peers hands to td_rpc_handle, as the wire would carry it;
  * hand-made cases: one request per op of server/core/ops.def, reconnects, TTL expiry, a Load of
    a placed file, requests before Hello, framing edge cases, safetensors header cases, the
    tests/cli .tdx scripts and test_parse.c's statements.

How a recorded connection becomes seeds:

  frames  4 bytes of chunking seed + 1 flags byte (see fuzz_frames.c), then the stream. Data
          sections above DATA_CAP are cut to DATA_CAP (their header's data_len with them) and the
          stream is cut at the last whole frame before FRAMES_CAP; bytes that are not frames
          (garbage, a lying header) are kept as they came, up to the cap.
  rpc     fuzz_rpc's records (flags byte, then u8 kind, u16 meta_len, u16 data_len, meta, data).
          The connection's opening Hello is dropped (the harness says its own). A Create whose
          data is above DATA_CAP gets a smaller shape of the same rank and the matching prefix
          of its data; other data sections are cut to DATA_CAP. A connection whose records pass
          RPC_CAP is split into windows of frames, each preceded by the earlier frames that made
          the handles it names (transitively), so a window does not just fail "unknown handle".
          Each becomes one seed with replies' data held (flags 0x04) and one with the deferring
          executor (0x0c: a kind-3 record after every third frame, a reconnect at the end).

Identical seeds are kept once, then each target's candidates are minimised with libFuzzer's
merge (`fuzz_<t> -merge=1 OUT CANDIDATES`, which keeps the smallest set with the same coverage)
and the kept files get back their descriptive names. Run it again after a protocol change.
"""
import hashlib
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
FUZZ_BUILD = os.environ.get("FUZZ_BUILD", os.path.join(ROOT, "build-fuzz"))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

SUITES = ["test_hostile.py", "test_client.py", "test_persistence.py", "test_autograd.py",
          "test_conformance.py", "test_package_conformance.py", "test_seed.py", "test_faults.py",
          "test_daemon.py", "test_metrics.py", "test_cli.py"]
DATA_CAP = 4096        # bytes of one frame's data section kept in a seed
FRAMES_CAP = 60000     # bytes of stream in a frames seed (fuzz_frames runs with -max_len=65536)
RPC_CAP = 7000         # bytes of records in an rpc window (fuzz_rpc runs with -max_len=8192)
MAX_LEN = {"frames": 65536, "rpc": 8192, "cli_parse": 4096, "safetensors": 4096}
HTTP = (b"GET ", b"HEAD", b"POST", b"PUT ", b"DELE", b"OPTI")


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


# ---------------------------------------------------------------- recording

def build_recorders(work):
    so = os.path.join(work, "record_preload.so")
    sh(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-o", so,
        os.path.join(ROOT, "tests/fuzz/seeds/record_preload.c"), "-ldl", "-lpthread"], check=True)
    pkgs = subprocess.run(["pkg-config", "--cflags", "--libs", "libuv", "libprotobuf-c",
                           "openblas", "cmocka"], capture_output=True, text=True,
                          check=True).stdout.split()
    test_rpc = os.path.join(work, "test_rpc_rec")
    libs = [os.path.join(BUILD, "lib", "libtd_%s.a" % n)
            for n in ("testlib", "rpc", "session", "core", "base")]
    sh(["cc", "-std=c11", "-D_DEFAULT_SOURCE", "-O1", "-g", "-I" + os.path.join(BUILD, "gen"),
        "-I" + os.path.join(ROOT, "server"), "-o", test_rpc,
        os.path.join(BUILD, "obj", "tests", "rpc", "test_rpc.o"),
        os.path.join(ROOT, "tests/fuzz/seeds/record_rpc_wrap.c"),
        "-Wl,--wrap=td_rpc_peer_new", "-Wl,--wrap=td_rpc_handle", "-Wl,--wrap=td_rpc_peer_close",
        *libs, *pkgs, "-lm", "-lpthread"], check=True)
    return so, test_rpc


def write_wrappers(work, so, out):
    daemon = os.path.join(work, "tensord")
    with open(daemon, "w") as f:
        # The paths are written in: some suites start the daemon with an environment of their own.
        f.write("#!/bin/sh\nTD_RECORD_DIR=%s LD_PRELOAD=%s exec %s \"$@\"\n"
                % (out, so, os.path.join(BUILD, "tensord")))
    ctl = os.path.join(work, "tensorctl")
    with open(ctl, "w") as f:
        f.write("""#!/bin/sh
n=0; prev=
for a in "$@"; do
    n=$((n + 1))
    if [ "$prev" = "-c" ]; then printf '%%s' "$a" > %(out)s/cli-$$-$n; fi
    case "$a" in -*) ;; *) [ "$prev" != "-c" ] && [ -f "$a" ] && cp "$a" %(out)s/cli-$$-$n;; esac
    prev=$a
done
TD_RECORD_DIR=%(out)s LD_PRELOAD=%(so)s exec %(bin)s "$@"
""" % {"out": out, "so": so, "bin": os.path.join(BUILD, "tensorctl")})
    os.chmod(daemon, 0o755)
    os.chmod(ctl, 0o755)
    return daemon, ctl


def record(work, suites):
    out = os.path.join(work, "out")
    os.makedirs(out)
    so, test_rpc = build_recorders(work)
    daemon, ctl = write_wrappers(work, so, out)
    env = dict(os.environ, TENSORD_BIN=daemon, TENSORCTL_BIN=ctl,
               PYTHONPATH=os.path.join(ROOT, "client", "python") + ":" +
               os.path.join(ROOT, "tests", "python"))
    r = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] +
           [os.path.join(ROOT, "tests", "python", s) for s in suites], env=env, cwd=ROOT)
    if r.returncode != 0:
        print("record_seeds: some tests failed; their traffic is recorded all the same")
    sh([test_rpc], env=dict(os.environ, TD_RECORD_DIR=out), stdout=subprocess.DEVNULL,
       check=True)
    return out


# ---------------------------------------------------------------- conversion

def split_frames(stream):
    """(frames, rest): the whole frames at the stream's start as (meta, data), then what is left."""
    at, out = 0, []
    while at + 12 <= len(stream):
        ml, dl = struct.unpack(">IQ", stream[at:at + 12])
        if at + 12 + ml + dl > len(stream):
            break
        out.append((stream[at + 12:at + 12 + ml], stream[at + 12 + ml:at + 12 + ml + dl]))
        at += 12 + ml + dl
    return out, stream[at:]


def frame(meta, data=b""):
    return struct.pack(">IQ", len(meta), len(data)) + meta + data


def frames_seed(stream, k):
    frames, rest = split_frames(stream)
    out = bytearray()
    for meta, data in frames:
        f = frame(meta, data[:DATA_CAP])
        if len(out) + len(f) > FRAMES_CAP:
            rest = b""
            break
        out += f
    out += rest[:max(0, FRAMES_CAP - len(out))]
    # A chunk size class, echo and pause settings, all varied over the seeds.
    flags = (0x07, 0x00, 0x0a, 0x1b, 0x3c, 0x2d)[k % 6]
    return struct.pack("<I", 0x9e3779b1 * (k + 1) & 0xffffffff) + bytes([flags]) + bytes(out)


DTYPE_SIZE = {1: 4, 2: 8, 3: 4, 4: 8, 5: 1}


def parse(pb, meta):
    r = pb.Request()
    try:
        r.ParseFromString(meta)
    except Exception:
        return None
    return r


def handles(msg, made, used):
    """Collects the handles a request makes (`out`, `out2`, Load's names) and names (the rest)."""
    for fd, v in msg.ListFields():
        if fd.message_type is not None:
            items = v if fd.label == fd.LABEL_REPEATED else [v]
            for m in items:
                if fd.name == "tensors" and msg.DESCRIPTOR.name == "Load":
                    made.add(m.handle)
                elif fd.name != "tensors" or msg.DESCRIPTOR.name != "Save":
                    handles(m, made, used)
                else:
                    used.add(m.handle)
        elif fd.name in ("out", "out2"):
            made.add(v)
        elif fd.name in ("handle", "gradient"):
            used.add(v)
        elif fd.name == "handles":
            used.update(v)


def shrink(pb, meta, data):
    """A frame with its data section at most DATA_CAP, a Create still consistent."""
    if len(data) <= DATA_CAP:
        return meta, data
    r = parse(pb, meta)
    if r is not None and r.WhichOneof("body") == "create" and r.create.dtype in DTYPE_SIZE:
        shape = list(r.create.shape)
        size = DTYPE_SIZE[r.create.dtype]
        while shape and size * math.prod(shape) > DATA_CAP:
            i = max(range(len(shape)), key=lambda j: shape[j])
            shape[i] = max(1, shape[i] // 2)
        del r.create.shape[:]
        r.create.shape.extend(shape)
        return r.SerializeToString(), data[:size * math.prod(shape)]
    return meta, data[:DATA_CAP]


def rec(meta, data=b"", kind=0):
    return struct.pack("<BHH", kind, len(meta), len(data)) + meta + data


def rpc_seeds(pb, stream):
    """The rpc windows of one connection's frames (lists of (meta, data))."""
    frames, _ = split_frames(stream)
    frames = [shrink(pb, m, d) for m, d in frames if len(m) < 65536]
    if frames:
        r = parse(pb, frames[0][0])
        if r is not None and r.WhichOneof("body") == "hello":
            frames = frames[1:]
    if not frames:
        return []
    sizes = [5 + len(m) + len(d) for m, d in frames]
    if sum(sizes) <= RPC_CAP:
        return [frames]
    info = []
    for m, _ in frames:
        made, used = set(), set()
        r = parse(pb, m)
        if r is not None:
            handles(r, made, used)
        info.append((made, used - {0}))
    windows, start = [], 0
    while start < len(frames):
        end, total = start, 0
        while end < len(frames) and (end == start or total + sizes[end] <= RPC_CAP // 2):
            total += sizes[end]
            end += 1
        # the earlier frames that made what this window names, and what those named in turn
        need, pre, todo = set(), set(), set()
        for i in range(start, end):
            todo |= info[i][1]
        while todo:
            h = todo.pop()
            if h in need:
                continue
            need.add(h)
            for i in range(start - 1, -1, -1):
                if h in info[i][0]:
                    pre.add(i)
                    todo |= info[i][1] - need
                    break
        window = [frames[i] for i in sorted(pre)] + frames[start:end]
        while sum(5 + len(m) + len(d) for m, d in window) > RPC_CAP and len(window) > end - start:
            window.pop(0)
        windows.append(window)
        start = end
    return windows


def rpc_bytes(frames, deferred):
    if not deferred:
        return bytes([0x04]) + b"".join(rec(m, d) for m, d in frames)
    out = bytearray([0x0c])
    for k, (m, d) in enumerate(frames):
        out += rec(m, d)
        if k % 3 == 2:
            out += rec(b"", kind=3)
    return bytes(out + rec(b"", kind=4))


class Candidates:
    """Seeds by target, each kept once (by content) under its first name."""

    def __init__(self, work):
        self.dir = os.path.join(work, "candidates")
        self.seen = {}

    def add(self, target, name, data):
        data = bytes(data)[:MAX_LEN[target]]
        key = (target, hashlib.sha1(data).hexdigest())
        if not data or key in self.seen:
            return
        path = os.path.join(self.dir, target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.seen[key] = name


def convert(out, cands):
    import tensord
    pb = tensord._conn.pb
    k = 0
    for f in sorted(os.listdir(out)):
        data = open(os.path.join(out, f), "rb").read()
        if f.startswith("st-"):
            cands.add("safetensors", "suite-" + hashlib.sha1(data).hexdigest()[:12], data)
            continue
        if f.startswith("cli-"):
            cands.add("cli_parse", "suite-" + hashlib.sha1(data).hexdigest()[:12], data)
            continue
        if data.startswith(HTTP):
            continue
        src = "rpc" if f.startswith("rpc-") else "py"
        h = hashlib.sha1(data).hexdigest()[:12]
        if src == "py":  # test_rpc's frames never crossed a socket
            cands.add("frames", "%s-%s" % (src, h), frames_seed(data, k))
            k += 1
        for i, w in enumerate(rpc_seeds(pb, data)):
            cands.add("rpc", "%s-%s-%d" % (src, h, i), rpc_bytes(w, False))
            cands.add("rpc", "%s-%s-%d-deferred" % (src, h, i), rpc_bytes(w, True))


# ---------------------------------------------------------------- hand-made seeds

def handmade(cands, data_dir_file):
    import tensord
    pb = tensord._conn.pb

    def write(path, data):
        target, name = os.path.relpath(path, CORPUS).split(os.sep, 1)
        cands.add(target, name, data)

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
    if data_dir_file is not None:
        st = open(data_dir_file, "rb").read()
        load = req(load=pb.Load(file="f", tensors=[pb.NamedTensor(name="a", handle=3)]))
        recs = bytearray([0x00])
        recs += struct.pack("<BHH", 6, 0, len(st)) + st
        recs += struct.pack("<BHH", 0, len(load), 0) + load
        write(os.path.join(CORPUS, "rpc", "load-file"), bytes(recs))
    # rpc: every op of ops.def once, on float, int and bool operands, out of place and in place,
    # then backward through what it made: so the fuzzer starts with each op's code covered
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
    for f in os.listdir(os.path.join(ROOT, "tests", "cli")):
        if f.endswith(".tdx"):
            write(os.path.join(CORPUS, "cli_parse", f),
                  open(os.path.join(ROOT, "tests", "cli", f), "rb").read())
    src = open(os.path.join(ROOT, "tests", "cli", "test_parse.c")).read()
    lits = re.findall(r'check(?:_error)?\("((?:[^"\\]|\\.)*)"', src)
    for i, lit in enumerate(lits):
        text = bytes(lit, "utf-8").decode("unicode_escape").encode("utf-8", "surrogateescape")
        write(os.path.join(CORPUS, "cli_parse", "case-%03d" % i), text)


# ---------------------------------------------------------------- minimising

def merge(cands, target):
    """Keeps the candidates libFuzzer's merge keeps; their names come back from the content."""
    src = os.path.join(cands.dir, target)
    dst = os.path.join(CORPUS, target)
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    binary = os.path.join(FUZZ_BUILD, "fuzz", "fuzz_" + target)
    if not os.path.exists(binary) or "--no-merge" in sys.argv:
        for f in os.listdir(src):
            shutil.copy(os.path.join(src, f), dst)
        return
    tmp = tempfile.mkdtemp(prefix="td_merge_")
    opts = ["-max_len=%d" % MAX_LEN[target]]
    if target == "rpc":
        opts.append("-timeout=20")
    with open(os.path.join(FUZZ_BUILD, "merge_%s.log" % target), "w") as log:
        sh([binary, "-merge=1", *opts, tmp, src], cwd=ROOT, stdout=log, stderr=log, check=True)
    names = {h: n for (t, h), n in cands.seen.items() if t == target}
    for f in os.listdir(tmp):
        data = open(os.path.join(tmp, f), "rb").read()
        name = names.get(hashlib.sha1(data).hexdigest(), f)
        with open(os.path.join(dst, name), "wb") as g:
            g.write(data)
    shutil.rmtree(tmp)


def main():
    suites = [a for a in sys.argv[1:] if not a.startswith("--")] or SUITES
    work = tempfile.mkdtemp(prefix="td_seeds_")
    try:
        out = record(work, suites)
        cands = Candidates(work)
        convert(out, cands)
        saved = sorted(os.path.join(out, f) for f in os.listdir(out) if f.startswith("st-"))
        handmade(cands, saved[0] if saved else None)
        for t in MAX_LEN:
            merge(cands, t)
            n = len(os.listdir(os.path.join(cands.dir, t)))
            kept = os.listdir(os.path.join(CORPUS, t))
            size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in kept)
            print("corpus/%s: %d candidates, %d kept (%d bytes)" % (t, n, len(kept), size))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
