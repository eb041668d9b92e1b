"""The parts of the build pyproject.toml cannot state: the optional C extensions tensord._fast
and tensord._pool.

_fast is the client's fast path (tensord/_fast.c); _pool pools the memory of large downloads
(tensord/_pool.c). `optional=True`: without a C compiler or
Python's headers (python3-dev) the install still succeeds, and the package runs in pure Python
(tensord._conn.FAST is then False; downloads then land in fresh memory).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("tensord._fast", ["tensord/_fast.c"], optional=True,
                             extra_compile_args=["-std=c11"]),
                   Extension("tensord._pool", ["tensord/_pool.c"], optional=True,
                             extra_compile_args=["-std=c11"])])
