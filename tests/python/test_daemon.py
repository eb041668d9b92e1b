"""The daemon as operators meet it: flags, environment, config file, refusals, limits, auth."""
import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time

import numpy as np
import pytest

import tensord
import wire
from conftest import BINARY, Daemon


def run(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, timeout=20)


class Started(Daemon):
    """A daemon whose start the test waits for itself (`wait_for`): Daemon's own
    wait looks for a listener on 127.0.0.1 and for the info-level "started" line, which other
    addresses and a quieter --log-level do not give it. Nothing is added to the command line."""

    def __init__(self, *args, env=None):  # pylint: disable=super-init-not-called
        self.log = tempfile.NamedTemporaryFile(prefix="tensord-py-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([BINARY, *args], stderr=self.log, stdout=subprocess.PIPE,
                                     env=env)
        self.port = None

    def wait_for(self, needle, timeout=10):
        """The log once it holds `needle`; fails at once if the daemon exits first."""
        def seen():
            if self.proc.poll() is not None:
                pytest.fail("tensord exited with %d:\n%s" % (self.proc.returncode, self.text()))
            text = self.text()
            return text if needle in text else None
        return poll(seen, timeout, what=needle)


def poll(cond, timeout=10, what="a condition"):
    """cond()'s first truthy value, asked every 10 ms; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.01)


def listening(text):
    """The addresses of the `listening` lines, as the daemon printed them (HOST:PORT)."""
    return re.findall(r"event=listening addr=(\S+)", text)


def clean_env(**extra):
    """The test's environment without TENSORD_* settings, plus `extra`: a setting inherited from
    whoever runs the suite must not decide which source a test sees winning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORD_")}
    env.update(extra)
    return env


def _frame(req, data=b"", data_len=None):
    meta = req.SerializeToString()
    return struct.pack(">IQ", len(meta), len(data) if data_len is None else data_len) + meta + data


def _hello(host, port):
    """A bare socket that has said Hello, and the limits the daemon answered with."""
    s = socket.create_connection((host, port), timeout=10)
    req = wire.pb.Request(id=1)
    req.hello.min_version = req.hello.max_version = 1
    s.sendall(_frame(req))
    r = _raw_reply(s)
    assert r.status.code == wire.pb.OK, r.status.message
    return s, r.hello.limits


def _bool_create(n, rid):
    req = wire.pb.Request(id=rid)
    req.create.out = rid
    req.create.dtype = wire.pb.BOOL
    req.create.shape.append(n)
    return req


def test_help_documents_every_flag_with_its_default():
    out = run("--help")
    assert out.returncode == 0
    for flag in ("--listen", "--unix", "--max-frame-bytes", "--max-tensor-bytes",
                 "--session-max-bytes", "--max-bytes", "--max-sessions", "--max-connections",
                 "--session-ttl", "--idle-timeout", "--threads", "--auth-token-file", "--log-level",
                 "--log-format", "--config"):
        line = [ln for ln in out.stdout.splitlines() if ln.strip().startswith(flag + " ")]
        assert line and "(default:" in line[0], flag


@pytest.mark.parametrize("args,needle", [
    (["--max-frame-bytes", "12Q"], "invalid value '12Q' for --max-frame-bytes"),
    (["--max-bytes", " 5"], "invalid value ' 5' for --max-bytes"),
    (["--session-max-bytes", "+5M"], "invalid value '+5M' for --session-max-bytes"),
    (["--session-ttl", "soon"], "invalid value 'soon' for --session-ttl"),
    (["--threads", "0"], "invalid value '0' for --threads"),
    (["--worker-nice", "20"], "invalid value '20' for --worker-nice"),
    (["--log-level", "loud"], "invalid value 'loud' for --log-level"),
    (["--log-format", "yaml"], "invalid value 'yaml' for --log-format"),
    (["--max-connections", "-3"], "invalid value '-3' for --max-connections"),
    (["--listen", "nowhere"], "invalid value 'nowhere' for --listen"),
    (["--no-such-flag"], "unknown flag --no-such-flag"),
    (["--listen", "0.0.0.0:0"], "refusing to listen on 0.0.0.0:0 without --auth-token-file"),
    # IPv6's any address, and an IPv4 one in IPv6 clothing, behind a loopback --listen
    (["--listen", "[::]:0"], "refusing to listen on [::]:0 without --auth-token-file"),
    (["--listen", "127.0.0.1:0", "--listen", "[::ffff:10.1.2.3]:0"],
     "refusing to listen on [::ffff:10.1.2.3]:0 without --auth-token-file"),
])
def test_invalid_settings_exit_2_with_a_message(args, needle):
    out = run(*args)
    assert out.returncode == 2
    assert needle in out.stderr


def test_environment_and_config_file():
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("# tensord settings\nmax_frame_bytes = 4K\nlog-format = json\n")
    try:
        env = dict(os.environ, TENSORD_SESSION_TTL="bogus")
        out = run("--config", f.name, env=env)
        assert out.returncode == 2 and "TENSORD_SESSION_TTL" in out.stderr
        d = Daemon("--config", f.name)
        assert d.port is not None
        first = json.loads(d.text().splitlines()[0])
        assert first["event"] == "listening" and first["level"] == "info"
        assert "max_frame_bytes=4096" in d.text()
        assert d.stop() == 0
    finally:
        os.unlink(f.name)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("frobnicate = 3\n")
    try:
        out = run("--config", f.name)
        assert out.returncode == 2 and "unknown setting 'frobnicate'" in out.stderr
    finally:
        os.unlink(f.name)


def _raw_reply(sock):
    head = b""
    while len(head) < 12:
        chunk = sock.recv(12 - len(head))
        if not chunk:
            return None
        head += chunk
    ml, dl = struct.unpack(">IQ", head)
    body = b""
    while len(body) < ml + dl:
        body += sock.recv(ml + dl - len(body))
    r = wire.pb.Response()
    r.ParseFromString(body[:ml])
    return r


def test_connections_over_the_limit_are_refused_at_once():
    d = Daemon("--max-connections", "2")
    try:
        a, b = wire.Conn(d.port), wire.Conn(d.port)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        r = _raw_reply(s)
        assert r.status.code == wire.pb.LIMIT_EXCEEDED
        assert r.status.message == "connection limit reached: max_connections 2"
        assert s.recv(1) == b""  # then closed
        s.close()
        a.close()
        # a freed slot serves again, once the server has seen the close
        for _ in range(100):
            try:
                c = wire.Conn(d.port)
                break
            except (wire.ServerError, ConnectionError):
                import time
                time.sleep(0.02)
        else:
            pytest.fail("no connection accepted after one closed")
        c.close()
        b.close()
    finally:
        assert d.stop() == 0


def test_auth_token_file():
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("s3cret-token-0123456789\n")
    try:
        d = Daemon("--auth-token-file", f.name)
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port)
        assert e.value.code == wire.pb.UNAUTHENTICATED
        c = wire.Conn(d.port, token="s3cret-token-0123456789")
        c.close()
        assert d.stop() == 0
    finally:
        os.unlink(f.name)


def test_repeated_auth_failures_are_slowed_down(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("right-token-0123456789\n")
    d = Daemon("--auth-token-file", str(tok))
    try:
        for _ in range(4):
            fourth_sent = time.monotonic()  # before the send: the server sees it later
            with pytest.raises(wire.ServerError) as e:
                wire.Conn(d.port, token="wrong")
            assert e.value.message == "authentication failed"
        # now even the right token waits out the penalty (1 s after the 4th failure) ...
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, token="right-token-0123456789")
        m = re.fullmatch(r"too many failed authentication attempts from this address; "
                         r"retry in (\d+) ms", e.value.message)
        assert m and 0 < int(m.group(1)) <= 1000, e.value.message

        def accepted():
            # Refused attempts during the penalty are not counted as failures, so asking
            # again does not lengthen it.
            try:
                return wire.Conn(d.port, token="right-token-0123456789")
            except wire.ServerError as err:
                assert err.message.startswith("too many failed"), err.message
                return None
        c = poll(accepted, timeout=5, what="the penalty to end")  # ... then it is, which clears it
        # The server's 1 s runs from the 4th failure, which it saw after the client sent it;
        # its clock is the same monotonic one, read in whole milliseconds.
        assert time.monotonic() - fourth_sent >= 0.999
        c.close()
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, token="wrong")
        assert e.value.message == "authentication failed"
        c = wire.Conn(d.port, token="right-token-0123456789")
        c.close()
    finally:
        assert d.stop() == 0


def test_sighup_rereads_the_token_file(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("first-token-0123456789\n")
    d = Daemon("--auth-token-file", str(tok))
    try:
        wire.Conn(d.port, token="first-token-0123456789").close()

        def hup_and_wait(event):
            n = d.text().count(event)
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 5
            while d.text().count(event) == n and time.time() < deadline:
                time.sleep(0.02)
            assert d.text().count(event) == n + 1

        tok.write_text("second-token-0123456789\n")
        hup_and_wait("event=reload ")
        wire.Conn(d.port, token="second-token-0123456789").close()
        with pytest.raises(wire.ServerError):
            wire.Conn(d.port, token="first-token-0123456789")
        tok.write_text("short\n")  # unusable: the previous token stays
        hup_and_wait("event=reload_failed")
        wire.Conn(d.port, token="second-token-0123456789").close()
    finally:
        assert d.stop() == 0


def test_log_file_is_reopened_on_sighup(tmp_path):
    log = tmp_path / "tensord.log"
    proc = subprocess.Popen([BINARY, "--listen", "127.0.0.1:0", "--log-file", str(log)],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        port = None
        while port is None and time.time() < deadline:
            m = re.search(r"addr=127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
            port = int(m.group(1)) if m else time.sleep(0.02)
        assert port is not None
        c = wire.Conn(port)
        c.close()
        rotated = tmp_path / "tensord.log.1"
        log.rename(rotated)  # what logrotate does, then it sends SIGHUP
        proc.send_signal(signal.SIGHUP)
        while not (log.exists() and "event=reload" in log.read_text()) and \
                time.time() < deadline:
            time.sleep(0.02)
        assert "event=reload" in log.read_text()
        assert "event=started" in rotated.read_text() and "event=started" not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert proc.stderr.read() == b""  # everything went to the file
    assert "event=stopped" in log.read_text()


def test_stop_right_after_the_first_listening_line_is_graceful(tmp_path):
    """A supervisor may send SIGTERM the moment the daemon logs that it listens, before the
    event loop runs; the daemon must still shut down cleanly (exit 0, "stopped" logged)."""
    for i in range(20):
        log = tmp_path / ("d%d.log" % i)
        with open(log, "w") as err:
            proc = subprocess.Popen([BINARY, "--listen", "127.0.0.1:0", "--unix",
                                     str(tmp_path / "s.sock")], stderr=err)
        deadline = time.time() + 10
        while "event=listening" not in log.read_text() and time.time() < deadline:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGHUP if i % 2 else signal.SIGTERM)
        if i % 2:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        assert "event=stopped" in log.read_text()


def _thread_nices(pid):
    """{tid: nice} of every thread of pid, from /proc (field 19 of stat, after the comm)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = int(fields[16])
    return out


@pytest.mark.parametrize("nice", [None, "0", "12"])
def test_heavy_work_threads_run_at_the_worker_nice(nice):
    """The event loop (the main thread) keeps the daemon's priority; the BLAS threads and every
    worker of the pool are lowered by --worker-nice (default 5) below it."""
    args = () if nice is None else ("--worker-nice", nice)
    d = Daemon("--threads", "2", *args)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port) as s:
            a = s.ones(512, 512)
            assert (a @ a).sum().item() == 512.0 ** 3
            nices = _thread_nices(d.proc.pid)
    finally:
        assert d.stop() == 0
    # relative to the daemon's own priority, which it inherits from this process (a test run
    # under `nice` starts it lowered already)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    want = min(19, base + (5 if nice is None else int(nice)))
    assert nices.pop(d.proc.pid) == base
    assert len(nices) >= 2  # the two pool workers (and BLAS threads, by CPU count)
    assert set(nices.values()) == {want}, nices


@pytest.mark.parametrize("value,refused", [("yes", False), ("on", False), ("1", False),
                                           ("off", True), ("no", True), ("0", True)])
def test_insecure_no_auth_takes_only_clear_booleans(value, refused):
    """A typo must not turn authentication off: anything but a clear yes or no exits 2. The
    address is refused before anything listens, so nothing binds a non-loopback address."""
    env = dict(os.environ, TENSORD_INSECURE_NO_AUTH="banana")
    out = run("--listen", "127.0.0.1:0", env=env)
    assert out.returncode == 2 and "invalid value 'banana' for --insecure-no-auth" in out.stderr
    out = run("--listen", "0.0.0.0:0", "--insecure-no-auth=maybe")
    assert out.returncode == 2 and "want true or false" in out.stderr
    if refused:
        env = dict(os.environ, TENSORD_INSECURE_NO_AUTH=value)
        out = run("--listen", "0.0.0.0:0", env=env)
        assert out.returncode == 2 and "refusing to listen on 0.0.0.0:0" in out.stderr
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("insecure_no_auth = %s\n" % value)
        try:
            out = run("--listen", "0.0.0.0:0", "--config", f.name)
            assert out.returncode == 2 and "refusing to listen on 0.0.0.0:0" in out.stderr
        finally:
            os.unlink(f.name)
    else:
        # The warning is written whatever the log level. At error nothing announces the start,
        # so the test waits for the warning itself (and fails if the daemon exits first).
        d = Started("--listen", "127.0.0.1:0", "--log-level", "error",
                    env=clean_env(TENSORD_INSECURE_NO_AUTH=value))
        try:
            assert "event=insecure_no_auth" in d.wait_for("event=insecure_no_auth")
        finally:
            assert d.stop() == 0


def test_unix_socket_paths_are_checked(tmp_path):
    out = run("--unix", "")
    assert out.returncode == 2 and "invalid value '' for --unix" in out.stderr
    out = run("--unix", "/tmp/" + "x" * 120)
    assert out.returncode == 2 and "1 to 107 bytes" in out.stderr
    path = str(tmp_path / "td.sock")
    d = Daemon("--unix", path)
    try:  # a live daemon's socket is not taken from under it
        out = run("--listen", "127.0.0.1:0", "--unix", path)
        assert out.returncode != 0 and "is in use by a running process" in out.stderr
        with tensord.connect("unix:" + path) as s:  # and still answers
            assert s.ones(2).sum().item() == 2
    finally:
        assert d.stop() == 0


def test_start_errors_reach_the_terminal_with_a_log_file(tmp_path):
    log = tmp_path / "tensord.log"
    out = run("--log-file", str(log), "--listen", "10.1.2.3:7000")
    assert out.returncode == 2
    assert "refusing to listen on 10.1.2.3:7000" in out.stderr  # seen by whoever ran it
    assert "refusing to listen on 10.1.2.3:7000" in log.read_text()  # and kept in the log


def test_interrupted_writes_are_cleaned_up_at_start(tmp_path):
    data = tmp_path / "data"
    for sub in ("files", "sessions"):
        (data / sub).mkdir(parents=True)
    stale = [data / "files" / ".ckpt.safetensors.tmp.4242.0",
             data / "sessions" / ("." + "ab" * 32 + ".safetensors.tmp.4242.1")]
    # a client's own file may look like a temporary but for the leading dot Save never allows
    keep = [data / "files" / "notes.txt", data / "files" / "w.safetensors.tmp.1.safetensors"]
    for p in stale + keep:
        p.write_bytes(b"half a file")
    d = Daemon("--data-dir", str(data))
    try:
        assert all(not p.exists() for p in stale) and all(p.exists() for p in keep)
        assert "event=temporaries_removed count=2" in d.text()
    finally:
        assert d.stop() == 0


def test_log_lines_carry_ids_and_never_the_token():
    d = Daemon()
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port)
        tag = hashlib.sha256(s.token).hexdigest()[:8]
        x = s.ones(2)
        s.synchronize()
        text = d.text()
        m = re.search(r"event=session_opened conn=(\d+) session=(\w+) req=(\d+)", text)
        assert m and m.group(2) == tag, text  # the tag is where its snapshot's name begins
        s2 = tensord.connect("127.0.0.1:%d" % d.port, resume=s.token)
        assert tensord.Tensor(s2, x._h).tolist() == [1.0, 1.0]
        text = d.text()
        assert re.search(r"event=session_resumed conn=\d+ session=%s req=\d+" % tag, text)
        for form in (s.token.hex(), s.token.hex().upper(), base64.b64encode(s.token).decode()):
            assert form not in text
        s.close()
        s2.close()  # else the daemon's stop waits out its lingering close of this connection
    finally:
        assert d.stop() == 0


def test_auth_failures_name_the_peer(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("right-token-0123456789\n")
    d = Daemon("--auth-token-file", str(tok))
    try:
        with pytest.raises(wire.ServerError):
            wire.Conn(d.port, token="wrong")
        assert re.search(r"event=auth_failed conn=\d+ peer=127\.0\.0\.1:\d+ req=\d+", d.text())
        assert "wrong" not in d.text() and "right-token" not in d.text()
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------- precedence

@pytest.mark.parametrize("layers,frame_limit,host", [
    (("file", "env", "flag"), 16384, "127.0.0.4"),
    (("file", "env"), 8192, "127.0.0.3"),
    (("file",), 4096, "127.0.0.2"),
    # each setting is decided on its own: the flag's address, the environment's size
    (("file", "env", "flag listen"), 8192, "127.0.0.4"),
])
def test_command_line_beats_environment_beats_config_file(tmp_path, layers, frame_limit, host):
    """Three sources name a different max_frame_bytes and a different --listen address (all on
    loopback, port 0); the daemon must serve exactly the winner's address, print the winner's
    limit in its started line and its Hello, and enforce it on the wire to the byte."""
    conf = tmp_path / "tensord.conf"
    conf.write_text("max_frame_bytes = 4K\nlisten = 127.0.0.2:0\n")
    env = clean_env()
    if "env" in layers:
        env.update(TENSORD_MAX_FRAME_BYTES="8K", TENSORD_LISTEN="127.0.0.3:0")
    flags = ["--config", str(conf)]
    if "flag" in layers:
        flags += ["--max-frame-bytes", "16K"]
    if "flag" in layers or "flag listen" in layers:
        flags += ["--listen", "127.0.0.4:0"]
    d = Started(*flags, env=env)
    try:
        text = d.wait_for("event=started")
        assert re.search(r"event=started .*max_frame_bytes=%d " % frame_limit, text), text
        addrs = listening(text)
        assert len(addrs) == 1 and addrs[0].startswith(host + ":"), addrs  # replaced, not added
        port = int(addrs[0].rsplit(":", 1)[1])
        s, limits = _hello(host, port)
        assert limits.max_frame_bytes == frame_limit
        # A frame of exactly the limit is served: n bools are n bytes of data, and n is chosen
        # so that the protobuf section plus the data come to frame_limit (n's varint width
        # changes the section's length, hence the fixed point).
        meta_len = 0
        while len(_bool_create(frame_limit - meta_len, 2).SerializeToString()) != meta_len:
            meta_len = len(_bool_create(frame_limit - meta_len, 2).SerializeToString())
        n = frame_limit - meta_len
        s.sendall(_frame(_bool_create(n, 2), b"\x01" * n))
        r = _raw_reply(s)
        assert r.status.code == wire.pb.OK and list(r.tensor.shape) == [n], r.status.message
        # one byte more is refused from the header alone (the data is never sent)
        over = _bool_create(n + 1, 3)
        s.sendall(_frame(over, data_len=n + 1))
        r = _raw_reply(s)
        assert r.status.code == wire.pb.LIMIT_EXCEEDED
        assert r.status.message == "frame of %d + %d bytes exceeds max_frame_bytes %d" % (
            len(over.SerializeToString()), n + 1, frame_limit)
        assert s.recv(1) == b""  # and the connection is closed
        s.close()
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------- --session-ttl

def test_session_ttl_expires_only_sessions_left_without_a_connection():
    """With --session-ttl 500ms: a session whose connection closed is gone once the TTL has
    passed (resuming it is UNKNOWN_SESSION), while one resumed inside the TTL and held open
    outlives it with its tensors, and expires in turn only a TTL after its own close."""
    ttl = 0.499  # 500 ms, less the daemon's rounding of its clock down to whole milliseconds
    d = Daemon("--session-ttl", "500ms")
    try:
        assert "session_ttl_ms=500" in d.text()
        gone, kept = wire.Conn(d.port), wire.Conn(d.port)
        gone.tensor(np.arange(3, dtype=np.int64))
        k = kept.tensor(np.arange(4, dtype=np.int64))
        gone.close()
        kept.close()
        # Measured from before the close reaches the server, so the server's TTL clock (from
        # when it sees the close) cannot start earlier than this one: elapsed >= ttl is sound.
        closed_at = time.monotonic()
        kept = wire.Conn(d.port, resume=kept.token)
        assert kept.get(k)[0].tolist() == [0, 1, 2, 3]

        def expired_lines():
            return re.findall(r"event=sessions_expired count=(\d+) live=(\d+)", d.text())
        poll(expired_lines, timeout=10, what="the first expiry")
        # Not before the TTL; and soon after it (the sweep runs every TTL/4), with room for a
        # loaded machine but not for a TTL taken several times over.
        assert ttl <= time.monotonic() - closed_at < 3
        assert expired_lines() == [("1", "1")]  # one expired, the held one still live
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, resume=gone.token)
        assert e.value.code == wire.pb.UNKNOWN_SESSION
        assert e.value.message == "unknown or expired session"
        # kept's first close is as old as gone's, past the TTL: only its resume saved it
        assert kept.get(k)[0].tolist() == [0, 1, 2, 3]
        kept.close()
        closed_again = time.monotonic()
        poll(lambda: len(expired_lines()) == 2, timeout=10, what="the second expiry")
        assert ttl <= time.monotonic() - closed_again < 3
        assert expired_lines()[1] == ("1", "0")
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, resume=kept.token)
        assert e.value.code == wire.pb.UNKNOWN_SESSION
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------- --log-level

def test_log_level_warn_keeps_warnings_and_drops_info(tmp_path):
    """At warn nothing below a warning is written: no started/listening/session_opened lines
    (so the test reaches the daemon through its Unix socket, whose path it knows), but a bad
    frame's warning is there."""
    path = str(tmp_path / "td.sock")
    d = Started("--log-level", "warn", "--listen", "127.0.0.1:0", "--unix", path,
                env=clean_env())
    try:
        def connected():
            try:
                return wire.Conn(unix=path)
            except (FileNotFoundError, ConnectionRefusedError):
                if d.proc.poll() is not None:
                    pytest.fail("tensord exited:\n" + d.text())
                return None
        c = poll(connected, what="the unix socket")
        a = c.tensor(np.ones((2, 3), np.float32))
        with pytest.raises(wire.ServerError):
            c.op("matmul", [wire.H(a), wire.H(a)])  # a failure: debug-level request_failed
        # Then a warning. Lines are written in order by the loop thread, so once this one is
        # in the log every line the requests above could have caused is there too.
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(struct.pack(">IQ", 0xFFFFFFFF, 0))  # a protobuf section over 1 MiB
        r = _raw_reply(s)
        assert r.status.code == wire.pb.LIMIT_EXCEEDED
        s.close()
        text = d.wait_for("event=bad_frame")
        lines = text.splitlines()
        assert lines and all(re.match(r"ts=\S+ level=(warn|error) ", ln) for ln in lines), text
        for event in ("listening", "started", "session_opened", "request_failed", "conn_open"):
            assert "event=%s " % event not in text
        c.close()
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("level", ["debug", "info"])
def test_log_level_debug_logs_failed_requests(level):
    """A failed request is a debug line (a hostile client must not flood the log at info):
    present with its connection, session tag, request id, kind, status and message at debug,
    absent at info, where the session's info lines still are."""
    d = Daemon("--log-level", level)
    try:
        c = wire.Conn(d.port)
        tag = hashlib.sha256(c.token).hexdigest()[:8]
        a = c.tensor(np.ones((2, 3), np.float32))
        p = c.send(c.op_request("matmul", [wire.H(a), wire.H(a)]))
        c.sync()
        assert p.error is not None and p.error.code == wire.pb.SHAPE_MISMATCH
        msg = "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)"
        assert p.error.message == msg
        # An info line after the failure: once it is logged, so is everything before it.
        req = wire.pb.Request()
        req.close_session.SetInParent()
        c.call(req)
        text = poll(lambda: "event=session_closed" in d.text() and d.text(), what="session_closed")
        assert re.search(r"event=session_opened conn=\d+ session=%s " % tag, text)
        line = re.search(r"ts=\S+ level=debug event=request_failed conn=\d+ session=%s req=%d "
                         r"kind=run_op status=%d msg=\"%s\"" % (
                             tag, p.id, wire.pb.SHAPE_MISMATCH, re.escape(msg)), text)
        if level == "debug":
            assert line, text
            assert re.search(r"level=debug event=conn_open conn=\d+ peer=127\.0\.0\.1:\d+", text)
        else:
            assert "request_failed" not in text and "level=debug" not in text
        c.close()
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------- IPv6 and repeated --listen

def test_repeated_listen_serves_ipv4_and_ipv6_loopback():
    """--listen 127.0.0.1:0 --listen [::1]:0: both are bound (each with its own port from the
    `listening` lines), and one daemon answers on both: a session opened over IPv4 is resumed
    over IPv6 with its tensor."""
    d = Daemon("--listen", "[::1]:0")  # after the helper's --listen 127.0.0.1:0
    try:
        assert d.port is not None, d.text()
        addrs = listening(d.text())
        assert addrs[0] == "127.0.0.1:%d" % d.port
        assert len(addrs) == 2 and re.fullmatch(r"\[::1\]:\d+", addrs[1]), addrs
        v6port = int(addrs[1].rsplit(":", 1)[1])
        assert v6port != 0
        c4 = wire.Conn(d.port)
        h = c4.tensor(np.array([3, 1, 4], dtype=np.int64))
        c6 = wire.Conn(addr=addrs[1], resume=c4.token)
        assert c6.sock.family == socket.AF_INET6 and c6.sock.getpeername()[:2] == ("::1", v6port)
        assert c6.get(h)[0].tolist() == [3, 1, 4]
        c4.close()
        c6.close()
    finally:
        assert d.stop() == 0
