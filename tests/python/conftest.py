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
        deadline = time.time() + 10
        while self.port is None and time.time() < deadline:
            m = re.search(r'addr[=":]+127\.0\.0\.1:(\d+)', self.text())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                return
            else:
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
