"""Operators' side of issue 14: the new limit flags (--help, defaults, refusals), the token file
(refused when empty, with a NUL or another control byte, at start and on SIGHUP), the
pre-handshake frame cap and the HTTP responder under idle connections, against a real daemon."""
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

import wire
from conftest import BINARY, Daemon

pytestmark = pytest.mark.timeout(90)

NEW_FLAGS = ("--max-request-seconds", "--max-op-elements", "--session-max-disk-bytes",
             "--max-disk-bytes", "--shared-files")


def run(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, timeout=20)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORD_")}
    env.update(extra)
    return env


def started_line(d):
    m = re.search(r"event=started .*", d.text())
    assert m, d.text()
    return m.group(0)


def wait_for(d, needle, count=1, timeout=10):
    deadline = time.monotonic() + timeout
    while d.text().count(needle) < count:
        assert d.proc.poll() is None, d.text()
        assert time.monotonic() < deadline, "no %r in:\n%s" % (needle, d.text())
        time.sleep(0.02)


def test_help_lists_the_new_limits_with_defaults():
    out = run("--help")
    assert out.returncode == 0
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.startswith("  --")}
    for flag in NEW_FLAGS:
        assert flag in lines and "(default:" in lines[flag], flag
    assert "(default: 60)" in lines["--max-request-seconds"]
    assert "(default: 1099511627776)" in lines["--max-op-elements"]  # 2^40
    assert "2x --session-max-bytes, at most 8G" in lines["--session-max-disk-bytes"]
    assert "(default: off)" in lines["--shared-files"]


@pytest.mark.parametrize("args,needle", [
    (["--max-request-seconds", "soon"], "invalid value 'soon' for --max-request-seconds"),
    (["--max-request-seconds", "-1"], "invalid value '-1' for --max-request-seconds"),
    (["--max-op-elements", "-1"], "invalid value '-1' for --max-op-elements"),
    (["--max-op-elements", "1e12"], "invalid value '1e12' for --max-op-elements"),
    (["--session-max-disk-bytes", "5Q"], "invalid value '5Q' for --session-max-disk-bytes"),
    (["--max-disk-bytes", "-4G"], "invalid value '-4G' for --max-disk-bytes"),
    (["--shared-files=maybe"], "invalid value 'maybe' for --shared-files"),
])
def test_bad_limit_values_exit_2(args, needle):
    out = run("--listen", "127.0.0.1:0", *args, env=clean_env())
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr


def test_a_switch_from_the_environment_is_strict():
    out = run("--listen", "127.0.0.1:0", env=clean_env(TENSORD_SHARED_FILES="sometimes"))
    assert out.returncode == 2
    assert "invalid value 'sometimes' for --shared-files" in out.stderr
    assert "TENSORD_SHARED_FILES" in out.stderr


def test_defaults_and_derived_disk_quotas_reach_the_daemon(tmp_path):
    d = Daemon("--session-max-bytes", "1G", "--max-bytes", "3G", env=clean_env())
    try:
        line = started_line(d)
        assert "max_request_ms=60000 " in line
        assert "max_op_elements=1099511627776 " in line
        assert "session_max_disk_bytes=%d " % (2 << 30) in line   # 2x --session-max-bytes
        assert "max_disk_bytes=%d " % (12 << 30) in line          # 4x --max-bytes
        assert "shared_files=0" in line
    finally:
        assert d.stop() == 0
    cfg = tmp_path / "tensord.conf"
    cfg.write_text("shared_files = yes\nmax_request_seconds = 0\nsession_max_disk_bytes = 0\n"
                   "max-disk-bytes = 1T\n")
    d = Daemon("--config", str(cfg), "--max-op-elements", "0", env=clean_env())
    try:
        line = started_line(d)
        assert "max_request_ms=0 " in line and "max_op_elements=0 " in line  # 0: unlimited
        assert "session_max_disk_bytes=0 " in line and "max_disk_bytes=%d " % (1 << 40) in line
        assert "shared_files=1" in line
    finally:
        assert d.stop() == 0
    # the caps on the derived defaults: 2x 16G is 32G, capped at 8G; 4x 1T capped at 64G
    d = Daemon("--session-max-bytes", "16G", "--max-bytes", "1T", env=clean_env())
    try:
        line = started_line(d)
        assert "session_max_disk_bytes=%d " % (8 << 30) in line
        assert "max_disk_bytes=%d " % (64 << 30) in line
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("content,why", [
    (b"", "the token is empty"),
    (b"\n", "the token is empty"),
    (b"  \r\n", "the token is empty"),
    (b"abc\x00defghijklmnopqrstuvwxyz\n", "contains a NUL byte (at offset 3)"),
    (b"\x00", "contains a NUL byte (at offset 0)"),
    (b"token-with-a-tab\there-0123\n", "contains a control byte 0x09"),
    (b"escape\x1b[0m-0123456789\n", "contains a control byte 0x1b"),
    (b"delete\x7f-0123456789abc\n", "contains a control byte 0x7f"),
    (b"two\nlines-0123456789abc\n", "contains a control byte 0x0a"),
    (b"latin1-\xe9t\xe9-0123456789\n", "not valid UTF-8"),
    (b"short\n", "shorter than 16 bytes"),
])
def test_unusable_token_file_is_a_startup_error(tmp_path, content, why):
    tok = tmp_path / "token"
    tok.write_bytes(content)
    out = run("--auth-token-file", str(tok), "--listen", "127.0.0.1:0", env=clean_env())
    assert out.returncode == 2, out.stderr
    assert "--auth-token-file %s: " % tok in out.stderr and why in out.stderr, out.stderr
    # the token itself is never quoted
    assert "0123456789" not in out.stderr


def test_a_good_token_file_still_works(tmp_path):
    tok = tmp_path / "token"
    tok.write_bytes("  spaces inside are fine, and UTF-8: µ\n".encode())
    d = Daemon("--auth-token-file", str(tok), env=clean_env())
    try:
        assert d.port is not None, d.text()
        wire.Conn(d.port, token="  spaces inside are fine, and UTF-8: µ").close()
        with pytest.raises(wire.ServerError) as e:
            wire.Conn(d.port, token="")
        assert e.value.code == wire.pb.UNAUTHENTICATED
    finally:
        assert d.stop() == 0


def test_sighup_with_an_unusable_token_keeps_the_old_one(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("first-token-0123456789\n")
    d = Daemon("--auth-token-file", str(tok), env=clean_env())
    try:
        wire.Conn(d.port, token="first-token-0123456789").close()
        # one wrong attempt each (the empty token, the part before the NUL), so the address
        # stays under the three failures after which attempts are slowed down
        for n, (bad, why, wrong) in enumerate([(b"", "the token is empty", ""),
                                               (b"first\x00anything", "NUL byte", "first"),
                                               (b"first-token\x01-0123456789", "control byte 0x01",
                                                None)]):
            tok.write_bytes(bad)
            d.proc.send_signal(signal.SIGHUP)
            wait_for(d, "event=reload_failed", count=n + 1)
            assert why in d.text() and "keeping the previous token" in d.text()
            wire.Conn(d.port, token="first-token-0123456789").close()  # the old one still works
            if wrong is not None:
                with pytest.raises(wire.ServerError) as e:
                    wire.Conn(d.port, token=wrong)
                assert e.value.code == wire.pb.UNAUTHENTICATED
        tok.write_text("second-token-0123456789\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(d, "event=reload ")
        wire.Conn(d.port, token="second-token-0123456789").close()
    finally:
        assert d.stop() == 0


def _read_reply(s):
    head = b""
    while len(head) < 12:
        chunk = s.recv(12 - len(head))
        assert chunk, "closed before a reply"
        head += chunk
    meta_len, data_len = struct.unpack(">IQ", head)
    body = b""
    while len(body) < meta_len + data_len:
        chunk = s.recv(meta_len + data_len - len(body))
        assert chunk
        body += chunk
    r = wire.pb.Response()
    r.ParseFromString(body[:meta_len])
    return r


def test_a_data_section_before_hello_is_refused_unread():
    d = Daemon(env=clean_env())
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        req = wire.pb.Request(id=1)
        req.ping.SetInParent()
        meta = req.SerializeToString()
        s.sendall(struct.pack(">IQ", len(meta), 256 << 20) + meta)  # announces 256 MiB
        r = _read_reply(s)
        assert r.status.code == wire.pb.LIMIT_EXCEEDED
        assert "data section of 268435456 bytes before the handshake" in r.status.message
        assert s.recv(1) == b""  # then closed
        s.close()
        wire.Conn(d.port).close()  # and the daemon serves on
    finally:
        assert d.stop() == 0


def _http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk


def test_healthz_answers_while_64_idle_http_connections_are_held():
    d = Daemon("--metrics-listen", "127.0.0.1:0", env=clean_env())
    held = []
    try:
        mport = int(re.search(r"metrics_listening addr=127\.0\.0\.1:(\d+)", d.text()).group(1))
        held = [socket.create_connection(("127.0.0.1", mport), timeout=10) for _ in range(64)]
        time.sleep(0.1)
        for _ in range(3):
            resp = _http_get(mport, "/healthz")
            assert resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(b"\r\n\r\nok\n"), resp
        wire.Conn(d.port).close()
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0
