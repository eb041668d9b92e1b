"""Fixtures: a real tensord on an ephemeral loopback port for the whole test session; the
per-suite time limits."""
import ctypes
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

import wire

BINARY = os.environ.get("TENSORD_BIN", "build/tensord")

# Seconds per test for suites whose tests are each short (pytest.ini's 300 is for the rest).
# Generous against a loaded 2-core machine and the sanitized daemon of make check-asan, tight
# enough that a hang costs minutes, not hours. A test's own @pytest.mark.timeout wins.
SUITE_TIMEOUTS = {
    "test_hostile.py": 240,  # one case waits up to 120 s for a matmul under valgrind
    "test_faults.py": 120,
    "test_attacks.py": 120,
    "test_metrics.py": 120,
}

# Tests that wait longer than pytest.ini's 300 s on their own.
TEST_TIMEOUTS = {
    "test_package_installs_offline_and_runs_the_seed_example": 600,  # pip, up to 300 s
}


def pytest_collection_modifyitems(items):
    for item in items:
        limit = TEST_TIMEOUTS.get(item.originalname,
                                  SUITE_TIMEOUTS.get(os.path.basename(str(item.fspath))))
        if limit is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL when pytest dies, so a killed run leaves no daemon."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Daemon:
    """A tensord started with extra flags; `port` once it listens (None if it exited)."""

    def __init__(self, *args, env=None, listen=("--listen", "127.0.0.1:0")):
        self.log = tempfile.NamedTemporaryFile(prefix="tensord-py-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([BINARY, *listen, *args], stderr=self.log,
                                     stdout=subprocess.PIPE, env=env,
                                     preexec_fn=_die_with_parent)
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


@pytest.fixture(scope="module")
def td(daemon):
    """The tensord module with its default session on the test daemon, as a torch stand-in
    (tests call the same code on `torch` and on `td`)."""
    import tensord
    os.environ["TENSORD_ADDR"] = "127.0.0.1:%d" % daemon
    tensord._default = None
    yield tensord
    tensord._default.close()
    tensord._default = None
