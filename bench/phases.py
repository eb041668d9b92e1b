#!/usr/bin/env python3
"""bench/phases.py: the end-to-end matmul row (n = 2048) and the 256 MiB transfers split into
phases, with page-fault counts beside the times (issue 19, second round).

Times move with the neighbours' load on a shared machine; the minor-fault counts of the client
(getrusage) and of the daemon (/proc/PID/stat) do not, and say whether a transfer landed in fresh
memory. Starts its own daemon from --build on a free loopback port and stops it (by PID) at the
end. Usage: PYTHONPATH=client/python /usr/bin/python3 bench/phases.py [--build build] [--rounds 7]
"""
import argparse
import gc
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import numpy as np  # noqa: E402

import tensord  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def daemon_faults(pid: int) -> int:
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def median(xs):
    return sorted(xs)[len(xs) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between rounds")
    args = ap.parse_args()
    port = free_port()
    d = subprocess.Popen([os.path.join(args.build, "tensord"), "--listen",
                          "127.0.0.1:%d" % port], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                s = tensord.connect("127.0.0.1:%d" % port)
                break
            except OSError:
                time.sleep(0.05)
        else:
            print("tensord did not start")
            return 1
        rng = np.random.default_rng(0)
        now = time.perf_counter
        n = 2048
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        rows = []
        for it in range(args.rounds):
            cf, df = client_faults(), daemon_faults(d.pid)
            t0 = now()
            A, B = s.tensor(a), s.tensor(b)
            s.synchronize()
            t1 = now()
            C = A @ B
            s.synchronize()
            t2 = now()
            c = C.numpy()
            t3 = now()
            cf, df = client_faults() - cf, daemon_faults(d.pid) - df
            assert np.allclose(c[:4, :4], a[:4] @ b[:, :4], rtol=1e-3)
            t4 = now()
            a @ b
            t5 = now()
            if it > 0:  # the first round warms both sides up
                rows.append([(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                             (t3 - t0) * 1e3, (t5 - t4) * 1e3, cf, df])
            del A, B, C, c
            time.sleep(args.gap)
        m = [median([r[i] for r in rows]) for i in range(7)]
        print("n=2048 end to end, medians of %d rounds: upload A,B %.1f ms, A @ B %.1f ms, "
              "download %.1f ms, total %.1f ms; numpy a @ b %.1f ms (ratio %.2f); minor faults "
              "per round: client %d, daemon %d" % (len(rows), m[0], m[1], m[2], m[3], m[4],
                                                  m[3] / m[4], m[5], m[6]))
        nb = 256 << 20
        arr = rng.random(nb // 4, dtype=np.float32)
        held = s.tensor(arr)
        s.synchronize()
        for it in range(5):
            df = daemon_faults(d.pid)
            t0 = now()
            x = s.tensor(arr)
            s.synchronize()
            t1 = now()
            df = daemon_faults(d.pid) - df
            del x
            gc.collect()
            cf = client_faults()
            t2 = now()
            out = held.numpy()
            t3 = now()
            print("256 MiB round %d: upload %.2f GB/s (daemon faults %d), download %.2f GB/s "
                  "(client faults %d)" % (it + 1, nb / (t1 - t0) / 1e9, df, nb / (t3 - t2) / 1e9,
                                          client_faults() - cf))
            assert out[12345] == arr[12345]
            time.sleep(0.5)
        s.close()
    finally:
        d.terminate()
        d.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
