"""Fixtures: a real tensord on an ephemeral loopback port for the whole test session."""
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

import wire


@pytest.fixture(scope="session")
def daemon():
    binary = os.environ.get("TENSORD_BIN", "build/tensord")
    log = tempfile.NamedTemporaryFile(prefix="tensord-py-", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stderr=log)
    port = None
    deadline = time.time() + 10
    while port is None and time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"event=listening addr=127\.0\.0\.1:(\d+)", f.read())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None:
            raise RuntimeError("tensord exited at start")
        else:
            time.sleep(0.01)
    assert port is not None, "tensord did not start"
    yield port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, "tensord did not exit cleanly"
    os.unlink(log.name)


@pytest.fixture
def conn(daemon):
    c = wire.Conn(daemon)
    yield c
    c.close()
