"""--metrics-listen: Prometheus text at /metrics, /healthz and /readyz, served by the daemon's own
event loop; counters move with traffic; the Stats request carries the same counters."""
import ctypes
import ctypes.util
import re
import signal
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest

import tensord
import wire
from conftest import Daemon

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


@pytest.fixture(scope="module")
def served():
    d = Daemon("--metrics-listen", "127.0.0.1:0")
    m = re.search(r"metrics_listening addr=127\.0\.0\.1:(\d+)", d.text())
    assert d.port is not None and m, d.text()
    yield d, int(m.group(1))
    assert d.stop() == 0


def get(port, path, method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def parse(text):
    """Prometheus text exposition -> {(name, labels): value}, checking its grammar."""
    samples, typed, seen_families, current = {}, {}, [], None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in typed, "TYPE twice for " + name
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if \
            re.sub(r"_(bucket|sum|count)$", "", name) in typed else name
        assert family in typed, "sample before its TYPE: " + name
        if family != current:
            assert family not in seen_families, "family %s is split" % family
            seen_families.append(family)
            current = family
        samples[(name, labels)] = value
    return samples, typed


def test_metrics_move_with_traffic(served):
    d, mport = served
    status, headers, text = get(mport, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    before, typed = parse(text)
    assert typed["tensord_op_duration_seconds"] == "histogram"
    add_key = ("tensord_op_requests_total", '{op="add"}')
    err_key = ("tensord_op_errors_total", '{op="matmul"}')
    with tensord.connect("127.0.0.1:%d" % d.port) as s:
        x = s.ones(4, 4)
        for _ in range(5):
            x = x + 1
        assert x.sum().item() == 96
        with pytest.raises(tensord.TensorError):
            (s.ones(2, 3) @ s.ones(4, 5)).item()
        _, _, text = get(mport, "/metrics")
        after, _ = parse(text)
        assert after[add_key] - before.get(add_key, 0) == 5
        assert after[err_key] - before.get(err_key, 0) == 1
        assert after[("tensord_connections", "")] >= 1
        assert after[("tensord_sessions", "")] >= 1
        assert after[("tensord_tensors", "")] >= 1
        # histograms: cumulative buckets, +Inf equals the count
        buckets = [v for (n, lab), v in sorted(after.items())
                   if n == "tensord_op_duration_seconds_bucket" and 'op="add"' in lab]
        les = [lab for (n, lab) in after if n == "tensord_op_duration_seconds_bucket"
               and 'op="add"' in lab]
        assert len(les) == 8
        inf = after[("tensord_op_duration_seconds_bucket", '{op="add",le="+Inf"}')]
        assert inf == after[("tensord_op_duration_seconds_count", '{op="add"}')] == \
            after[add_key]
        assert max(buckets) == inf
        # the Stats request carries the same counters
        st = s.stats()
        ops = {c.name: c for c in st.ops}
        assert ops["add"].count == after[add_key] and ops["matmul"].errors >= 1
        assert sum(ops["add"].latency_buckets) == ops["add"].count
        kinds = {c.name: c for c in st.requests}
        assert kinds["run_op"].count >= 7 and kinds["hello"].count >= 1
        assert st.connections >= 1 and st.uptime_ms > 0 and st.server_tensors >= 1
        # which BLAS ran the matmuls: OpenBLAS names its version, its CPU kernel and threads
        blas = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
        blas.openblas_get_corename.restype = ctypes.c_char_p
        core = blas.openblas_get_corename().decode()
        assert st.blas.startswith("OpenBLAS ") and ("; core %s; " % core) in st.blas, st.blas
        assert st.blas.endswith(" threads")
        info = [ln for ln in text.splitlines() if ln.startswith("tensord_info{")]
        assert len(info) == 1 and info[0].endswith(',blas="%s"} 1' % st.blas), info
        # memory outside the quotas: at least the tensors the quotas count are allocated
        assert st.allocated_bytes >= st.server_bytes > 0
        assert after[("tensord_allocated_bytes", "")] > 0
        assert ("tensord_buffer_cache_bytes", "") in after


def test_health_endpoints_and_bad_requests(served):
    d, mport = served
    assert get(mport, "/healthz")[::2] == (200, "ok\n")
    assert get(mport, "/readyz")[::2] == (200, "ready\n")
    assert get(mport, "/nope")[0] == 404
    assert get(mport, "/healthz", method="POST")[0] == 405
    status, headers, body = get(mport, "/healthz", method="HEAD")
    assert status == 200 and body == ""
    with socket.create_connection(("127.0.0.1", mport)) as c:  # an endless header
        c.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 5000)
        assert c.recv(100).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", mport)) as c:
        c.sendall(b"garbage\r\n\r\n")
        assert c.recv(100).startswith(b"HTTP/1.1 400")
    with tensord.connect("127.0.0.1:%d" % d.port) as s:  # the daemon goes on serving
        assert s.ones(3).sum().item() == 3


def test_bad_metrics_address_is_refused_at_start():
    d = Daemon("--metrics-listen", "localhost:9")
    assert d.port is None and d.proc.wait(timeout=10) == 2
    assert "metrics-listen" in d.text()
    d.stop()


def test_readyz_says_503_while_the_daemon_drains():
    """After SIGTERM the daemon finishes what it owes before exiting; meanwhile /readyz answers
    503 (a load balancer stops sending) while /healthz and /metrics still answer."""
    d = Daemon("--metrics-listen", "127.0.0.1:0", "--shutdown-timeout", "20s")
    try:
        mport = int(re.search(r"metrics_listening addr=127\.0\.0\.1:(\d+)", d.text()).group(1))
        s = tensord.connect("127.0.0.1:%d" % d.port)
        big = s.ones(4 << 20)  # 16 MiB, sent back without a copy
        s.synchronize()
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        req = wire.pb.Request(id=1)
        req.hello.min_version = req.hello.max_version = 1
        req.hello.session_token = s.token
        frames = [req]
        for i in range(8):  # 128 MiB of replies owed, not read yet
            g = wire.pb.Request(id=2 + i)
            g.get.handle = big._h
            frames.append(g)
        # one write, so the daemon reads every request before it pauses for its own backlog
        # (a request still unread when the drain starts is never read)
        sock.sendall(b"".join(struct.pack(">IQ", len(m), 0) + m
                              for m in (f.SerializeToString() for f in frames)))
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        while "event=shutdown" not in d.text() and time.time() < deadline:
            time.sleep(0.02)
        assert get(mport, "/readyz")[::2] == (503, "stopping\n")
        assert get(mport, "/healthz")[::2] == (200, "ok\n")
        assert get(mport, "/metrics")[0] == 200
        assert d.proc.poll() is None  # still owed replies: still running
        got = 0
        while True:  # now read: every reply owed arrives, then the daemon goes
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got > 8 * (16 << 20)
        assert d.proc.wait(timeout=20) == 0
    finally:
        d.stop()


def test_loop_busy_histogram_counts_turns_and_matches_stats(served):
    """Each event-loop turn's busy time (wall time less the wait for I/O) is a histogram in
    /metrics and counters in Stats: turns only grow, the buckets are cumulative and end at the
    count, a turn's busy time is never longer than the daemon has been up, and the slow-turn
    counts Stats gives are the /metrics buckets read from the other end."""
    d, mport = served
    s = tensord.connect("127.0.0.1:%d" % d.port)
    try:
        first = s._c.stats()
        x = s.ones(64, 64)
        for _ in range(20):
            x = x @ x / 64
        x.tolist()
        st = s._c.stats()
        _, _, text = get(mport, "/metrics")
        after = s._c.stats()
    finally:
        s.close()
    samples, typed = parse(text)
    assert typed["tensord_loop_busy_seconds"] == "histogram"
    assert st.loop_turns > first.loop_turns
    assert len(st.loop_slow_turns) == 4
    assert list(st.loop_slow_turns) == sorted(st.loop_slow_turns, reverse=True)
    assert st.loop_busy_max_us <= st.uptime_ms * 1000
    assert st.loop_busy_sum_us >= st.loop_busy_max_us
    les = [(k[1], v) for k, v in samples.items() if k[0] == "tensord_loop_busy_seconds_bucket"]
    assert [lab for lab, _ in les] == ['{le="0.001"}', '{le="0.01"}', '{le="0.1"}', '{le="1"}',
                                       '{le="+Inf"}']
    counts = [v for _, v in les]
    assert counts == sorted(counts)
    total = samples[("tensord_loop_busy_seconds_count", "")]
    assert counts[-1] == total
    assert st.loop_turns <= total <= after.loop_turns
    # a bucket is the turns at or under its bound: the total less the turns past it, which only
    # grow, so it lies between the two Stats readings' values
    for i, v in enumerate(counts[:-1]):
        lo = st.loop_turns - st.loop_slow_turns[i]
        hi = after.loop_turns - after.loop_slow_turns[i]
        assert lo <= v <= hi + (after.loop_slow_turns[i] - st.loop_slow_turns[i]), (i, lo, v, hi)
