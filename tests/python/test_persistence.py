"""--data-dir: Save/Load of named tensors in safetensors files, and sessions kept across a
restart — including a SIGTERM in the middle of a stream of pipelined writes, after which every
acknowledged write is there and nothing else is. A session's files live in its own directory,
files/<SHA-256 of its token> (test_disk_quota.py has the quotas and the shared namespace)."""
import hashlib
import json
import os
import re
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch

import tensord
import wire
from conftest import Daemon

pb = wire.pb


def read_safetensors(path):
    """An independent reader, from the format's specification: {name: (np array, header)}."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    dt = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
          "BOOL": np.bool_}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype=dt[e["dtype"]]).reshape(e["shape"])
    return out, header.get("__metadata__", {})


def write_safetensors(path, arrays):
    codes = {np.float32: "F32", np.float64: "F64", np.int32: "I32", np.int64: "I64",
             np.bool_: "BOOL"}
    header, blobs, at = {}, [], 0
    for name, a in arrays.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": codes[a.dtype.type], "shape": list(a.shape),
                        "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def files_of(data_dir, s):
    """The session's own Save directory: files/<SHA-256 of its token>."""
    return os.path.join(data_dir, "files", hashlib.sha256(s.token).hexdigest())


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "data")


def test_save_and_load_named_tensors(data_dir):
    d = Daemon("--data-dir", data_dir)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port) as s:
            rng = np.random.default_rng(3)
            w = s.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
            ids = s.tensor(np.array([[1, 2], [3, 4]], dtype=np.int32))
            mask = s.tensor([True, False, True])
            wt = w.T  # a non-contiguous view is saved in C order
            d64 = s.arange(5, dtype=tensord.float64) / 3
            s.save("ckpt-1", {"w": w, "ids": ids, "mask": mask, "wt": wt, "d64": d64})
            arrays, meta = read_safetensors(os.path.join(files_of(data_dir, s),
                                                         "ckpt-1.safetensors"))
            ref = {"w": torch.from_numpy(w.numpy()), "ids": torch.tensor([[1, 2], [3, 4]],
                                                                         dtype=torch.int32),
                   "mask": torch.tensor([True, False, True]),
                   "d64": torch.arange(5, dtype=torch.float64) / 3}
            ref["wt"] = ref["w"].T
            for name, t in ref.items():
                assert arrays[name].dtype == t.numpy().dtype
                np.testing.assert_array_equal(arrays[name], t.numpy())
            assert sorted(meta["requires_grad"].splitlines()) == ["w", "wt"]  # as torch says
            assert sorted(s.list_file("ckpt-1")) == sorted(ref)
            back = s.load("ckpt-1")
            for name, t in ref.items():
                t = t.requires_grad_() if name in ("w", "wt") else t
                assert repr(back[name]) == repr(t).replace("torch.", "tensord.")
            assert back["w"].requires_grad and back["w"].is_leaf and not back["ids"].requires_grad
            np.testing.assert_array_equal(back["w"].numpy(), w.numpy())
            only = s.load("ckpt-1", ["mask"])
            assert list(only) == ["mask"] and only["mask"].tolist() == [True, False, True]
            # a file written by someone else's tool loads too
            write_safetensors(os.path.join(files_of(data_dir, s), "theirs.safetensors"),
                              {"a": np.arange(6, dtype=np.int64).reshape(2, 3),
                               "b": np.array([0.5, -1.5], dtype=np.float64)})
            theirs = s.load("theirs")
            assert repr(theirs["a"]) == repr(torch.arange(6).reshape(2, 3))
            assert repr(theirs["b"]) == repr(torch.tensor([0.5, -1.5], dtype=torch.float64)
                                             ).replace("torch.", "tensord.")
    finally:
        assert d.stop() == 0


def test_file_names_are_checked_and_bad_files_refused(data_dir):
    d = Daemon("--data-dir", data_dir)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            x = s.ones(2)
            for name in ("../escape", "/etc/passwd", ".hidden", "a/b", "", "x" * 129):
                with pytest.raises(tensord.TensorError) as e:
                    s.save(name, {"x": x})
                assert e.value.code == pb.INVALID_ARGUMENT, name
            assert not os.path.exists(os.path.join(data_dir, "escape.safetensors"))
            with pytest.raises(tensord.TensorError, match="no tensor named 'nope'"):
                s.save("ok", {"x": x})
                s.load("ok", ["nope"])
            with pytest.raises(tensord.TensorError, match="cannot open"):
                s.load("missing")
            bad = files_of(data_dir, s)
            with open(os.path.join(bad, "trunc.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", 1000) + b"{}")
            with pytest.raises(tensord.TensorError, match="header length 1000"):
                s.load("trunc")
            with open(os.path.join(bad, "lies.safetensors"), "wb") as f:
                h = b'{"a":{"dtype":"F32","shape":[1000000],"data_offsets":[0,8]}}'
                f.write(struct.pack("<Q", len(h)) + h + b"\0" * 8)
            with pytest.raises(tensord.TensorError, match="do not hold its 4000000 bytes"):
                s.load("lies")
            huge = s.ones(1).expand(1 << 20, 1 << 20)  # 4 bytes standing for 4 TiB
            with pytest.raises(tensord.TensorError, match="exceeds max_tensor_bytes"):
                s.save("huge", {"h": huge})
            assert not os.path.exists(os.path.join(bad, "huge.safetensors"))
            assert (x + 1).tolist() == [2.0, 2.0]  # the session goes on
    finally:
        assert d.stop() == 0
    d = Daemon()  # without --data-dir
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            with pytest.raises(tensord.TensorError, match="persistence is off"):
                s.save("x", {"x": s.ones(1)})
    finally:
        assert d.stop() == 0


def test_a_load_that_fails_part_way_creates_nothing(data_dir):
    """The quota runs out on the second tensor of a Load: the first one's handle is not left
    behind (a Load is all or nothing), and the same handles work for a Load that fits."""
    d = Daemon("--data-dir", data_dir, "--session-max-bytes", "64K")
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            os.makedirs(files_of(data_dir, s))
            write_safetensors(os.path.join(files_of(data_dir, s), "big.safetensors"),
                              {"a": np.arange(4, dtype=np.float32),
                               "b": np.zeros(32 * 1024, dtype=np.float32)})  # 128 KiB > quota
            before = s.stats()
            with pytest.raises(tensord.TensorError, match="session memory quota exceeded"):
                s.load("big", ["a", "b"])
            after = s.stats()
            assert (after.session_tensors, after.session_bytes) == \
                (before.session_tensors, before.session_bytes)
            got = s.load("big", ["a"])
            assert got["a"].tolist() == [0.0, 1.0, 2.0, 3.0]
            assert s.stats().session_tensors == before.session_tensors + 1
    finally:
        assert d.stop() == 0


def test_sessions_survive_a_restart(data_dir):
    d = Daemon("--data-dir", data_dir)
    try:
        s1 = tensord.connect("127.0.0.1:%d" % d.port)
        a = s1.tensor([2.0, 3.0], requires_grad=True)
        (a * a).sum().backward()
        ints = s1.arange(6).reshape(2, 3)
        s1.manual_seed(7)
        s1.rand(3)
        s1.randn(3)  # an odd count of normals: torch's cached sample is part of the state
        s1.set_grad_enabled(True)
        s2 = tensord.connect("127.0.0.1:%d" % d.port)
        b = s2.full((2, 2), 9.5)
        for s in (s1, s2):
            s.synchronize()
        handles = (a._h, ints._h, b._h)
        tokens = (s1.token, s2.token)
        s1._c.close()
        s2._c.close()
    finally:
        assert d.stop() == 0
    assert len(os.listdir(os.path.join(data_dir, "sessions"))) == 2
    for f in os.listdir(os.path.join(data_dir, "sessions")):  # tokens are stored as hashes only
        raw = open(os.path.join(data_dir, "sessions", f), "rb").read()
        assert tokens[0] not in raw and tokens[1] not in raw
        assert tokens[0].hex() not in f and tokens[1].hex() not in f
    d = Daemon("--data-dir", data_dir)
    try:
        assert "sessions_restored count=2 failed=0" in d.text()
        assert os.listdir(os.path.join(data_dir, "sessions")) == []
        with pytest.raises(tensord.TensorError):  # a made-up token finds nothing
            tensord.connect("127.0.0.1:%d" % d.port, resume=os.urandom(16))
        r1 = tensord.connect("127.0.0.1:%d" % d.port, resume=tokens[0])
        r2 = tensord.connect("127.0.0.1:%d" % d.port, resume=tokens[1])
        ra = tensord.Tensor(r1, handles[0])
        assert repr(ra) == "tensor([2., 3.], requires_grad=True)"
        assert ra.grad.tolist() == [4.0, 6.0]
        assert tensord.Tensor(r1, handles[1]).tolist() == [[0, 1, 2], [3, 4, 5]]
        assert tensord.Tensor(r2, handles[2]).tolist() == [[9.5, 9.5], [9.5, 9.5]]
        # the generator continues where it stopped, cached normal sample included, as torch's
        torch.manual_seed(7)
        torch.rand(3)
        torch.randn(3)
        assert r1.randn(3, dtype=tensord.float64).tolist() == \
            torch.randn(3, dtype=torch.float64).tolist()
        assert r1.rand(3).tolist() == torch.rand(3).tolist()
        torch.manual_seed(0)
        # and the sessions are ordinary again: gradients keep accumulating
        (ra * 2).sum().backward()
        assert ra.grad.tolist() == [6.0, 8.0]
        r1.close()
        r2.close()
    finally:
        assert d.stop() == 0


def frame(req, data=b""):
    meta = req.SerializeToString()
    return struct.pack(">IQ", len(meta), len(data)) + meta + data


def read_frame(sock, buf):
    while len(buf) < 12:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    ml, dl = struct.unpack(">IQ", bytes(buf[:12]))
    while len(buf) < 12 + ml + dl:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    resp = pb.Response()
    resp.ParseFromString(bytes(buf[12:12 + ml]))
    del buf[:12 + ml + dl]
    return resp


class Stream:
    """A bare connection resuming one session that pipelines `x += step` (in place, on handle
    `xh`) from a writer thread, batches of 64 frames at a time, while a reader thread records
    each reply: `acked` the ids answered OK, `failed` any other reply, `resets` a reset
    connection (which could have destroyed replies in flight). It stops at EOF."""

    def __init__(self, port, token, xh, step):
        self.sock = socket.create_connection(("127.0.0.1", port))
        hello = pb.Request(id=1)
        hello.hello.min_version = hello.hello.max_version = 1
        hello.hello.session_token = token
        self.sock.sendall(frame(hello))
        self.buf = bytearray()
        r = read_frame(self.sock, self.buf)
        assert r.status.code == pb.OK and r.hello.resumed, r.status.message
        self.xh, self.step = xh, step
        self.acked, self.failed, self.resets = [], [], []
        self.stop = threading.Event()
        # daemon threads: a failing test must not leave pytest waiting for them at exit
        self.threads = [threading.Thread(target=self.writer, daemon=True),
                        threading.Thread(target=self.reader, daemon=True)]
        for t in self.threads:
            t.start()

    def writer(self):
        rid = 2
        try:
            while not self.stop.is_set():
                batch = b""
                for _ in range(64):
                    req = pb.Request(id=rid)
                    req.run_op.op = pb.OP_ADD
                    req.run_op.inplace = True
                    req.run_op.inputs.add().handle = self.xh
                    req.run_op.inputs.add().scalar.i = self.step
                    batch += frame(req)
                    rid += 1
                self.sock.sendall(batch)
        except OSError:
            pass  # the daemon has gone: what it never read it never ran

    def reader(self):
        while True:
            try:
                r = read_frame(self.sock, self.buf)
            except OSError as e:
                self.resets.append(e)
                return
            if r is None:
                return
            if r.status.code == pb.OK:
                self.acked.append(r.id)
            else:
                self.failed.append((r.id, r.status.message))

    def finish(self):
        self.stop.set()
        self.threads[1].join(timeout=10)
        self.sock.close()
        self.threads[0].join(timeout=10)
        assert not any(t.is_alive() for t in self.threads)


def stop_during_two_write_streams(data_dir, sig):
    """Two sessions, each with a counter, written concurrently by two pipelined streams (x += 1
    in one, y += 3 in the other, so a write landing in the wrong session would show) when `sig`
    arrives; after a restart each counter holds exactly its own acknowledged writes."""
    d = Daemon("--data-dir", data_dir)
    s = tensord.connect("127.0.0.1:%d" % d.port)
    x = s.zeros(1, dtype=tensord.int64)
    other = s.tensor([5, 6, 7])
    s2 = tensord.connect("127.0.0.1:%d" % d.port)
    y = s2.zeros(1, dtype=tensord.int64)
    z = s2.full((3,), 1.25)
    for sess in (s, s2):
        sess.synchronize()
    tokens, xh, oh, yh, zh = (s.token, s2.token), x._h, other._h, y._h, z._h

    streams = []
    try:
        streams = [Stream(d.port, tokens[0], xh, 1), Stream(d.port, tokens[1], yh, 3)]
        deadline = time.monotonic() + 20
        while min(len(st.acked) for st in streams) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        # both writers are still sending (they stop only on `finish` or a closed socket)
        assert all(st.threads[0].is_alive() for st in streams)
        d.proc.send_signal(sig)  # in the middle of both streams
        code = d.proc.wait(timeout=30)
    finally:
        if d.proc.poll() is None:  # it ignored the signal: end it, and with it the streams
            d.proc.kill()
            d.proc.wait()
        for st in streams:
            st.finish()
    assert code == 0, d.text()
    for st in streams:
        assert len(st.acked) >= 1000 and st.resets == [] and st.failed == []  # EOF, no reset
        assert st.acked == list(range(2, 2 + len(st.acked)))  # answered in order, none skipped
    text = d.text()
    assert "event=shutdown signal=%d" % sig in text
    assert "sessions_saved count=2 failed=0" in text
    d.stop()

    d = Daemon("--data-dir", data_dir)
    try:
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=tokens[0])
        r2 = tensord.connect("127.0.0.1:%d" % d.port, resume=tokens[1])
        # every acknowledged write, no other, each in its own session
        assert tensord.Tensor(r, xh).item() == len(streams[0].acked)
        assert tensord.Tensor(r2, yh).item() == 3 * len(streams[1].acked)
        assert tensord.Tensor(r, oh).tolist() == [5, 6, 7]
        assert tensord.Tensor(r2, zh).tolist() == [1.25, 1.25, 1.25]
        r.close()
        r2.close()
    finally:
        assert d.stop() == 0


def test_a_snapshot_from_before_the_mt19937_generator_restarts_from_its_seed(data_dir):
    """Snapshots written before tensord used torch's generator keep "rng": "seed,offset" (a
    Philox position, which cannot carry over): the session loads and its generator restarts
    from that seed, as torch.manual_seed(seed) would."""
    d = Daemon("--data-dir", data_dir)
    try:
        s1 = tensord.connect("127.0.0.1:%d" % d.port)
        s1.manual_seed(3)
        s1.rand(2)
        s1.synchronize()
        token = s1.token
        s1._c.close()
    finally:
        assert d.stop() == 0
    sessions = os.path.join(data_dir, "sessions")
    (name,) = os.listdir(sessions)
    raw = open(os.path.join(sessions, name), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    del header["__metadata__"]["rng_state"]
    header["__metadata__"]["rng"] = "7,123"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(sessions, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    d = Daemon("--data-dir", data_dir)
    try:
        assert "sessions_restored count=1 failed=0" in d.text()
        r1 = tensord.connect("127.0.0.1:%d" % d.port, resume=token)
        torch.manual_seed(7)
        assert r1.rand(3).tolist() == torch.rand(3).tolist()
        assert r1.initial_seed() == 7
        r1.close()
    finally:
        assert d.stop() == 0
        torch.manual_seed(0)


def test_sigterm_during_pipelined_writes_keeps_exactly_the_acknowledged(data_dir):
    stop_during_two_write_streams(data_dir, signal.SIGTERM)


def test_sigint_is_as_graceful_as_sigterm(data_dir):
    """Ctrl-C in a terminal: the same drain, replies and save as SIGTERM, and exit status 0."""
    stop_during_two_write_streams(data_dir, signal.SIGINT)


def test_shutdown_timeout_and_unusable_data_dir(tmp_path):
    d = Daemon("--data-dir", str(tmp_path / "data"), "--shutdown-timeout", "100ms")
    s = tensord.connect("127.0.0.1:%d" % d.port)
    a = s.rand(1500, 1500)
    for _ in range(60):  # many seconds of matmuls queued in one session
        a = a @ a
    s.flush()
    time.sleep(0.2)
    start = time.time()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0
    text = d.text()
    # Work still running a quarter of the timeout before the deadline is cancelled (here 25 ms
    # before it). Whether the running matmul unwinds by the deadline is up to the scheduler:
    # then the session is saved; else the shutdown times out and the session is saved if its
    # job ended in the meantime (only a reply was still unwritten) and skipped if it still runs
    # (never written while its job runs: tests/session/test_persist_layout.c checks that).
    assert "event=shutdown_cancel" in text
    saved = re.search(r"sessions_saved count=(\d+) failed=(\d+)", text)
    assert saved is not None, text
    assert (int(saved.group(1)), int(saved.group(2))) in ((1, 0), (0, 1)), text
    if "event=shutdown_timeout" not in text:
        assert saved.group(0) == "sessions_saved count=1 failed=0", text
    assert time.time() - start < 10  # queued matmuls are dropped, not run
    d.stop()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    d = Daemon("--data-dir", str(blocker))
    assert d.port is None and d.proc.wait(timeout=10) == 2
    assert "--data-dir" in d.text()
    d.stop()
