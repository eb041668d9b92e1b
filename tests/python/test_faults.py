"""Faults: a client dying mid-upload, a client that never reads, slowloris, connection storms,
quota exhaustion in the middle of a pipeline, SIGKILL then restart. (SIGTERM under a stream of
pipelined writes is in test_persistence.py.) Each: the daemon keeps serving and other sessions
are untouched."""
import hashlib
import os
import signal
import socket
import struct
import time

import numpy as np
import pytest

import tensord
import wire
from conftest import Daemon

pb = wire.pb


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hello_frame(token=b""):
    req = pb.Request(id=1)
    req.hello.min_version = req.hello.max_version = 1
    req.hello.session_token = token
    meta = req.SerializeToString()
    return struct.pack(">IQ", len(meta), 0) + meta


def read_reply(sock):
    buf = b""
    while len(buf) < 12:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    ml, dl = struct.unpack(">IQ", buf[:12])
    while len(buf) < 12 + ml + dl:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return None
        buf += chunk
    r = pb.Response()
    r.ParseFromString(buf[12:12 + ml])
    return r


def test_client_killed_mid_upload_returns_the_memory():
    # the dropped section's buffer may go to the buffer cache, which gives it back when unused
    # for --cache-decay (30 s by default; 200 ms here, well inside the 10 s wait below)
    d = Daemon("--cache-decay", "200ms")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        keep = s.tensor(np.arange(10, dtype=np.float32))
        s.synchronize()
        base = rss_kib(d.proc.pid)
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.sendall(hello_frame(s.token))
        assert read_reply(sock).status.code == pb.OK
        req = pb.Request(id=2)
        req.create.out = 999
        req.create.dtype = pb.FLOAT32
        req.create.shape.append(64 << 20)  # 256 MiB announced
        meta = req.SerializeToString()
        sock.sendall(struct.pack(">IQ", len(meta), 256 << 20) + meta)
        chunk = b"\1" * (8 << 20)
        for _ in range(16):  # 128 MiB of it, then the client dies
            sock.sendall(chunk)
        time.sleep(0.3)
        during = rss_kib(d.proc.pid)
        sock.close()
        deadline = time.time() + 10
        while rss_kib(d.proc.pid) > base + 32 * 1024 and time.time() < deadline:
            time.sleep(0.05)
        after = rss_kib(d.proc.pid)
        assert during > base + 64 * 1024, (base, during)  # it was really receiving
        assert after <= base + 32 * 1024, (base, during, after)  # and gave the memory back
        assert keep.tolist() == list(range(10))  # the session is intact
        with pytest.raises(tensord.TensorError, match="unknown handle 999"):
            tensord.Tensor(s, 999).tolist()
        s.close()
    finally:
        assert d.stop() == 0


STALL_T = 2.0  # --idle-timeout of the never-reads test, seconds


def drain_capped(sock, max_bytes, seconds):
    """Reads until EOF or reset; returns (bytes read, closed). Never more than max_bytes or
    seconds: reading lets a daemon that failed to close go on answering the requests still
    queued in its socket (about 480 GB of 4 MiB replies), so the cap is what bounds the test."""
    got, closed = 0, False
    deadline = time.monotonic() + seconds
    sock.settimeout(0.5)
    while got < max_bytes and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            break  # open and silent: not closed
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += len(chunk)
    return got, closed


@pytest.mark.timeout(90)
def test_a_client_that_never_reads_is_held_back_then_closed():
    """Gets of a view (each reply a fresh 4 MiB copy) pipelined by a client that never reads:
    the copies are charged to the session until written, so the daemon's memory stays within
    the session quota; other clients are served meanwhile; once the reply queue has not moved
    for --idle-timeout the connection is closed and every byte comes back.

    Bounded whatever the daemon does: sending stops when the socket blocks (or after 10 s); the
    close is awaited without reading (reading would let the queue move) for twice the write
    clock's worst case plus slack; the drain after it is capped in bytes and seconds."""
    d = Daemon("--idle-timeout", "%ds" % STALL_T, "--session-max-bytes", "256M")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        other = tensord.connect("127.0.0.1:%d" % d.port)
        bt = s.ones(1024, 1024).T  # not contiguous: every Get gathers a copy
        s.synchronize()
        base = other.stats().allocated_bytes
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(hello_frame(s.token))
        assert read_reply(sock).status.code == pb.OK
        sock.setblocking(False)
        sent, blocked = 0, False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not blocked:  # 4 MiB asked for per 20-byte request
            req = pb.Request(id=10 + sent)
            req.get.handle = bt._h
            meta = req.SerializeToString()
            frame = struct.pack(">IQ", len(meta), 0) + meta
            try:
                n = sock.send(frame)
            except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                # blocked, or already closed by the write clock while we were still filling
                blocked = True
                break
            sent += 1
            blocked = n < len(frame)  # the rest would wait: the daemon stopped reading
        stopped = time.monotonic()
        assert blocked, sent
        peak = 0
        for _ in range(10):
            peak = max(peak, other.stats().allocated_bytes - base)
            assert other.ones(3).sum().item() == 3  # others are served meanwhile
            time.sleep(0.05)
        assert sent * (4 << 20) > 1 << 30, sent  # more than 1 GiB was asked for
        assert peak < (256 + 96) << 20, peak  # quota + the write queue's high water + slack
        # Not reading: the reply queue stands still and the write clock closes the connection
        # after T (the clock fires within T plus a small slack; an older clock took up to 2T).
        # Wait for its log line for twice that worst case, plus slack for a loaded machine.
        wait = 2 * (2 * STALL_T) + 2
        while "reason=replies_not_read" not in d.text():
            assert time.monotonic() - stopped < wait, \
                "not closed %.1f s after the client stopped reading" % (time.monotonic() - stopped)
            time.sleep(0.05)
        # What the kernel buffers held when it closed: a few MiB at most, read with a cap far
        # above that.
        got, closed = drain_capped(sock, 64 << 20, 10)
        assert closed, "still open after the close was logged (%d bytes drained)" % got
        sock.close()
        deadline = time.monotonic() + 5
        while other.stats().allocated_bytes > base + (1 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.stats().allocated_bytes <= base + (1 << 20)
        assert bt.contiguous().sum().item() == 1024 * 1024  # the session is intact
        other.close()
        s.close()
    finally:
        assert d.stop() == 0


def test_a_slow_but_steady_reader_is_not_cut_off():
    """An 80 MiB reply read at about 20 MB/s takes several --idle-timeouts to drain; as long as
    it keeps draining the connection stays (only a reader that stops is closed)."""
    d = Daemon("--idle-timeout", "1s")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        big = s.ones(20 << 20)  # 80 MiB, sent from the tensor itself
        s.synchronize()
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(hello_frame(s.token))
        assert read_reply(sock).status.code == pb.OK
        req = pb.Request(id=2)
        req.get.handle = big._h
        meta = req.SerializeToString()
        sock.sendall(struct.pack(">IQ", len(meta), 0) + meta)
        got, paced, t0 = 0, 0, time.time()
        while got < 12 + (80 << 20):
            chunk = sock.recv(1 << 20)
            assert chunk, "closed after %d bytes, %.1f s" % (got, time.time() - t0)
            got += len(chunk)
            if got - paced >= 1 << 20:  # 50 ms per MiB: about 20 MB/s
                paced = got
                time.sleep(0.05)
        assert time.time() - t0 > 2  # it really outlasted the idle timeout
        assert "replies_not_read" not in d.text()
        sock.close()
        s.close()
    finally:
        assert d.stop() == 0


def test_a_socket_that_never_says_hello_is_closed():
    """With every connection slot held by silent sockets no client could connect: each is
    closed after --idle-timeout, and the slots come free."""
    d = Daemon("--idle-timeout", "1s", "--max-connections", "2")
    try:
        idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(2)]
        t0 = time.time()
        for sock in idle:
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed without a word
        assert 0.8 < time.time() - t0 < 4
        c = wire.Conn(d.port)  # a slot is free again
        c.close()
        assert "reason=no_handshake" in d.text()
    finally:
        assert d.stop() == 0


def test_a_trickled_frame_is_closed():
    """A frame sent one byte every 0.3 s never lets a 1 s idle clock run out, but it averages
    3 bytes/s, far below the 1 KiB/s a frame must keep up once the idle timeout has passed."""
    d = Daemon("--idle-timeout", "1s")
    try:
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.sendall(hello_frame())
        assert read_reply(sock).status.code == pb.OK  # past Hello: only the frame clock applies
        req = pb.Request(id=5)
        req.create.out = 1
        req.create.dtype = pb.FLOAT32
        req.create.shape.append(1024)
        meta = req.SerializeToString()
        frame = struct.pack(">IQ", len(meta), 4096) + meta + b"\0" * 4096
        t0 = time.time()
        closed = False
        for b in frame:
            try:
                sock.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            if time.time() - t0 > 10:
                break
        assert closed
        assert 0.8 < time.time() - t0 < 4
        assert "reason=frame_too_slow" in d.text()
        wire.Conn(d.port).close()  # the daemon goes on
    finally:
        assert d.stop() == 0


def test_slowloris_frames_are_closed_by_the_idle_timeout():
    d = Daemon("--idle-timeout", "300ms")
    try:
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.sendall(hello_frame()[:7])  # a header started, never finished
        sock.settimeout(5)
        t0 = time.time()
        assert sock.recv(100) == b""  # closed without a word
        assert time.time() - t0 < 3
        c = wire.Conn(d.port)  # the daemon goes on
        c.close()
    finally:
        assert d.stop() == 0


def test_connection_storm_above_the_limit_is_refused_cleanly():
    """30 connections arrive at once on a daemon with five slots, all five taken: every one of
    the 30 is answered LIMIT_EXCEEDED naming the limit, then closed; the five keep working, and
    once they close a new connection is served."""
    import threading
    d = Daemon("--max-connections", "5")
    try:
        kept = [wire.Conn(d.port) for _ in range(5)]
        for c in kept:  # each holds a tensor through the storm
            c.tensor(np.arange(3, dtype=np.float32))
        # The storm: 30 threads connect and send their Hello together; nothing is read until
        # every one of them has connected and sent.
        storm = [None] * 30
        errors = []
        gate = threading.Barrier(len(storm))

        def arrive(i):
            try:
                gate.wait(timeout=10)
                s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                storm[i] = s
                s.sendall(hello_frame())
            except (OSError, threading.BrokenBarrierError) as e:
                errors.append((i, e))
        threads = [threading.Thread(target=arrive, args=(i,)) for i in range(len(storm))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not errors, errors
        assert all(s is not None for s in storm)
        for s in storm:
            r = read_reply(s)
            assert r is not None, "a refused connection closed without its error"
            assert r.id == 0
            assert r.status.code == pb.LIMIT_EXCEEDED, r
            assert "max_connections 5" in r.status.message
            assert s.recv(65536) == b"", "a refused connection was left open"  # then EOF
            s.close()
        for c in kept:  # the first five are unaffected
            h = c.tensor(np.ones(2, dtype=np.float32))
            assert c.get(h)[0].tolist() == [1.0, 1.0]
            c.close()
        # Room again once the daemon has seen the five close (it learns of it asynchronously).
        deadline = time.time() + 10
        while True:
            try:
                c = wire.Conn(d.port)
                break
            except wire.ServerError as e:
                assert e.code == pb.LIMIT_EXCEEDED
                assert time.time() < deadline, "no slot came free after the five closed"
                time.sleep(0.05)
        h = c.tensor(np.ones(2, dtype=np.float32))
        assert c.get(h)[0].tolist() == [1.0, 1.0]
        c.close()
    finally:
        assert d.stop() == 0


def test_quota_exhausted_mid_pipeline_then_recovered():
    d = Daemon("--session-max-bytes", "1M")
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        made = [s.zeros(64 << 10) for _ in range(6)]  # 256 KiB each: the 5th does not fit
        with pytest.raises(tensord.TensorError) as e:
            s.synchronize()
        assert e.value.code == pb.QUOTA_EXCEEDED
        assert "session memory quota exceeded: 1048576 bytes" in e.value.message
        # Whatever is left (each tensor also pays for its handle-table entry) is not enough for
        # a tensor one element larger than it.
        left = (1 << 20) - s.stats().session_bytes
        assert 0 <= left < 64 << 12
        with pytest.raises(tensord.TensorError, match="quota exceeded"):
            s.zeros(left // 4 + 1).sum().item()
        del made[2:]
        import gc
        gc.collect()
        assert made[0].sum().item() == 0  # earlier results stand
        more = s.ones(64 << 10)  # after frees, work goes on
        assert more.sum().item() == 64 << 10
        s.close()
    finally:
        assert d.stop() == 0


def test_sigkill_then_restart_keeps_saved_files_only(tmp_path):
    data = str(tmp_path / "data")
    d = Daemon("--data-dir", data)
    s = tensord.connect("127.0.0.1:%d" % d.port)
    w = s.tensor([1.0, 2.0])
    s.save("w", {"w": w})
    s.synchronize()
    token = s.token
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.stop()
    d = Daemon("--data-dir", data)
    try:
        # documented: a crash loses the in-memory sessions; files written by Save survive on
        # disk, in the session's own directory (files/<SHA-256 of its token>), and no
        # half-written file is left behind
        with pytest.raises(tensord.TensorError):
            tensord.connect("127.0.0.1:%d" % d.port, resume=token)
        saved = os.path.join(data, "files", hashlib.sha256(token).hexdigest(), "w.safetensors")
        with open(saved, "rb") as f:
            assert f.read()[-8:] == struct.pack("<2f", 1.0, 2.0)  # float32 [1, 2], the data
        leftovers = [f for _, _, names in os.walk(os.path.join(data, "files"))
                     for f in names if ".tmp." in f]
        assert leftovers == []
    finally:
        assert d.stop() == 0
