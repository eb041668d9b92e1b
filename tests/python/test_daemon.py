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

import pytest

import tensord
import wire
from conftest import BINARY, Daemon


def run(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, timeout=20)


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
    (["--session-ttl", "soon"], "invalid value 'soon' for --session-ttl"),
    (["--threads", "0"], "invalid value '0' for --threads"),
    (["--worker-nice", "20"], "invalid value '20' for --worker-nice"),
    (["--log-level", "loud"], "invalid value 'loud' for --log-level"),
    (["--log-format", "yaml"], "invalid value 'yaml' for --log-format"),
    (["--max-connections", "-3"], "invalid value '-3' for --max-connections"),
    (["--listen", "nowhere"], "invalid value 'nowhere' for --listen"),
    (["--no-such-flag"], "unknown flag --no-such-flag"),
    (["--listen", "0.0.0.0:0"], "refusing to listen on 0.0.0.0:0 without --auth-token-file"),
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
        for attempt in range(4):
            with pytest.raises(wire.ServerError) as e:
                wire.Conn(d.port, token="wrong")
            assert e.value.message == "authentication failed"
        # now even the right token waits out the penalty (1 s after the 4th failure) ...
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, token="right-token-0123456789")
        assert e.value.message.startswith("too many failed authentication attempts from this "
                                          "address; retry in ")
        time.sleep(1.1)
        c = wire.Conn(d.port, token="right-token-0123456789")  # ... and then is accepted, which clears it
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
    worker of the pool are lowered by --worker-nice (default 5)."""
    args = () if nice is None else ("--worker-nice", nice)
    d = Daemon("--threads", "2", *args)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port) as s:
            a = s.ones(512, 512)
            assert (a @ a).sum().item() == 512.0 ** 3
            nices = _thread_nices(d.proc.pid)
    finally:
        assert d.stop() == 0
    want = 5 if nice is None else int(nice)
    assert nices.pop(d.proc.pid) == 0
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
        d = Daemon("--log-level", "error", env=dict(os.environ, TENSORD_INSECURE_NO_AUTH=value))
        try:  # the warning is written whatever the log level
            assert "event=insecure_no_auth" in d.text()
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
    stale = [data / "files" / "ckpt.safetensors.tmp.4242.0",
             data / "sessions" / ("ab" * 32 + ".safetensors.tmp.4242.1")]
    keep = data / "files" / "notes.txt"
    for p in stale + [keep]:
        p.write_bytes(b"half a file")
    d = Daemon("--data-dir", str(data))
    try:
        assert all(not p.exists() for p in stale) and keep.exists()
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
