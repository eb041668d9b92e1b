"""python -m tensord.run script.py [args...]: runs an unmodified PyTorch script against tensord.

`import torch` inside the script (and torch.nn, torch.optim, torch.utils.data, ...) resolves to
tensord (tensord.install_as_torch), which talks to the daemon at TENSORD_ADDR (default
127.0.0.1:7878, with TENSORD_TOKEN when the daemon needs one). The script sees the argv and
sys.path it would see run as `python script.py [args...]`; its exit status is the run's.
`python -m tensord.run -m module [args...]` runs a module the same way.
"""
from __future__ import annotations

import os
import runpy
import sys
from typing import List, Optional

USAGE = "usage: python -m tensord.run script.py [args...] | -m module [args...]"


def main(argv: Optional[List[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        sys.exit(2 if not args else 0)
    from ._torchmode import install_as_torch
    install_as_torch()
    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            sys.exit(2)
        sys.argv = [args[1]] + args[2:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return
    script = args[0]
    if not os.path.exists(script):
        print("python -m tensord.run: can't open file %r: [Errno 2] No such file or directory"
              % script, file=sys.stderr)
        sys.exit(2)
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
