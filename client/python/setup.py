"""The parts of the build pyproject.toml cannot state: the optional C extensions tensord._fast
and tensord._pool.

_fast is the client's fast path (tensord/_fast.c); _pool pools the memory of large downloads
(tensord/_pool.c). `optional=True`: without a C compiler or
Python's headers (python3-dev) the install still succeeds, and the package runs in pure Python
(tensord._conn.FAST is then False; downloads then land in fresh memory).

_fast shares libtensord's wire codec, client/c/wire.c and wire.h (one implementation of the wire
format for both clients). In the repository their one source is ../c; an sdist cannot reach
outside this directory, so they are copied to _wire/ (not committed: .gitignore) whenever that
source is there, and the sdist ships the copy (MANIFEST.in).
"""
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / "c"  # the repository's client/c
WIRE = HERE / "_wire"

if (SHARED / "wire.c").is_file():
    WIRE.mkdir(exist_ok=True)
    for name in ("wire.c", "wire.h"):
        text = (SHARED / name).read_bytes()
        copy = WIRE / name
        if not copy.is_file() or copy.read_bytes() != text:
            copy.write_bytes(text)

setup(ext_modules=[Extension("tensord._fast", ["tensord/_fast.c", "_wire/wire.c"],
                             include_dirs=["_wire"], depends=["_wire/wire.h"], optional=True,
                             extra_compile_args=["-std=c11"]),
                   Extension("tensord._pool", ["tensord/_pool.c"], optional=True,
                             extra_compile_args=["-std=c11"])])
