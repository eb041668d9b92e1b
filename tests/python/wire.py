"""The suites speak the protocol through the package's low-level connection."""
from tensord._conn import *  # noqa: F401,F403
from tensord._conn import pb  # noqa: F401
