"""The attack suites' shared harness: a daemon of its own with one session on it, the check that
the daemon is alive and serves another session's tiny op (add of two 2-element tensors), a clean
stop, and a fixture factory that stops every daemon a test started."""
import numpy as np
import pytest

import wire
from conftest import Daemon
from wire import H


class DaemonSession:
    """A daemon started with `flags` and one session (`c`) on it."""

    def __init__(self, *flags):
        self.d = Daemon(*flags)
        assert self.d.port is not None, "tensord did not start"
        self.c = wire.Conn(self.d.port)

    def serves(self):
        """The daemon is alive and another session's tiny op is served."""
        assert self.d.proc.poll() is None, "tensord died"
        other = wire.Conn(self.d.port)
        try:
            x = other.tensor(np.array([1.5, 2.0], np.float32))
            arr, _ = other.get(other.op("add", [H(x), H(x)]))
            assert arr.tolist() == [3.0, 4.0]
        finally:
            other.close()

    def stop(self):
        self.c.close()
        assert self.d.stop() == 0, "tensord did not exit cleanly"


def starter(cls):
    """A pytest fixture yielding start(*flags) -> cls(*flags); it stops them all afterwards."""

    @pytest.fixture
    def fixture():
        made = []

        def start(*flags):
            s = cls(*flags)
            made.append(s)
            return s

        yield start
        for s in made:
            if s.d.proc.poll() is None:
                s.stop()

    return fixture
