"""Fixtures: a real tensord on an ephemeral loopback port for the whole test session."""
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

import wire

BINARY = os.environ.get("TENSORD_BIN", "build/tensord")


class Daemon:
    """A tensord started with extra flags; `port` once it listens (None if it exited)."""

    def __init__(self, *args, env=None, listen=("--listen", "127.0.0.1:0")):
        self.log = tempfile.NamedTemporaryFile(prefix="tensord-py-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([BINARY, *listen, *args], stderr=self.log,
                                     stdout=subprocess.PIPE, env=env)
        self.port = None
        # Wait for the "started" event: it follows every listener (TCP, unix, metrics), so a
        # test that connects to the second of them does not race its creation.
        deadline = time.time() + 10
        while time.time() < deadline:
            text = self.text()
            m = re.search(r'addr[=":]+127\.0\.0\.1:(\d+)', text)
            if m and re.search(r'event[=":]+started', text):
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                return
            time.sleep(0.01)

    def text(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        os.unlink(self.log.name)
        return code


@pytest.fixture(scope="session")
def daemon():
    d = Daemon()
    assert d.port is not None, "tensord did not start"
    yield d.port
    assert d.stop() == 0, "tensord did not exit cleanly"


@pytest.fixture
def conn(daemon):
    c = wire.Conn(daemon)
    yield c
    c.close()
