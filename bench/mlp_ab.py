#!/usr/bin/python3
"""bench/mlp_ab.py — interleaved A/B of workload 8's MLP step (issue 19, second round).

Each round, for every contender in turn (the order flips every round): a daemon build gets a
fresh daemon, 5 warm-up and STEPS timed steps from this process's tensord client, and reports
wall ms per step, the daemon's CPU per step (all threads, /proc/PID/task/*/schedstat) and the
daemon's CPU over the idle second after (a spinning BLAS pool shows there); a torch contender
runs the same step in its own process (so its environment, e.g. OMP_WAIT_POLICY, applies
before torch loads), 5 × STEPS steps, median ms per step. Daemons started here are stopped by
PID. Usage:

  bench/mlp_ab.py [--rounds N] [--steps N] name=BINARY[@ARGS][:ENV=V,...] ... \\
      torch:name=THREADS[:ENV=V,...] ...
e.g.
  bench/mlp_ab.py main=/tmp/main/build/tensord new=build/tensord \\
      torch:passive=2:OMP_WAIT_POLICY=passive torch:t1=1
"""
import argparse
import glob
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCH_STEP = r"""
import sys, time, statistics, numpy as np, torch
torch.set_num_threads(int(sys.argv[1])); steps = int(sys.argv[2])
r = np.random.default_rng(0)
X = torch.from_numpy(r.standard_normal((256, 784), dtype=np.float32))
Y = torch.from_numpy(r.integers(0, 10, 256))
nn = torch.nn; m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.SGD(m.parameters(), lr=0.01); lf = nn.CrossEntropyLoss()
def step():
    loss = lf(m(X), Y); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return loss.item()
for _ in range(5):
    step()
res = []
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    res.append((time.perf_counter() - t0) / steps * 1e3)
print(statistics.median(res))
"""


def parse_env(text):
    env = dict(os.environ)
    for kv in filter(None, text.split(",")):
        k, v = kv.split("=", 1)
        env[k] = v
    return env


def daemon_cpu(pid):
    """The daemon's CPU ns, utime + stime from /proc/PID/stat: unlike the live threads'
    schedstat it holds threads that have exited (the GEMM split's helpers), but counts clock
    ticks (10 ms): use --steps 100 or more."""
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1e9 / os.sysconf("SC_CLK_TCK")


def live_cpu(pid):
    """The CPU ns of the daemon's live threads (schedstat): exact, but without exited ones."""
    total = 0
    for f in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except OSError:
            pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_daemon(cmd, env, steps, X, Y):
    import tensord
    port = free_port()
    d = subprocess.Popen(cmd + ["--listen", "127.0.0.1:%d" % port, "--log-level", "warn"],
                         env=env)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        s = tensord.connect("127.0.0.1:%d" % port)
        old, tensord._default = tensord._default, s
        try:
            nn = tensord.nn
            x, y = s.tensor(X), s.tensor(Y)
            m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
            opt = tensord.optim.SGD(m.parameters(), lr=0.01)
            lf = nn.CrossEntropyLoss()

            def step():
                loss = lf(m(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss.item()

            for _ in range(5):
                step()
            c0, t0 = daemon_cpu(d.pid), time.perf_counter()
            for _ in range(steps):
                step()
            t1, c1 = time.perf_counter(), daemon_cpu(d.pid)
            time.sleep(1.0)
            c2 = daemon_cpu(d.pid)
            s.close()
        finally:
            tensord._default = old
        return {"wall": (t1 - t0) / steps * 1e3, "cpu": (c1 - c0) / steps / 1e6,
                "idle": (c2 - c1) / 1e6}
    finally:
        d.terminate()
        d.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("contenders", nargs="+")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "client", "python"))
    import numpy as np
    r = np.random.default_rng(0)
    X = r.standard_normal((256, 784), dtype=np.float32)
    Y = r.integers(0, 10, 256)
    cons = []
    for c in a.contenders:
        kind = "torch" if c.startswith("torch:") else "daemon"
        name, rest = c[len("torch:"):].split("=", 1) if kind == "torch" else c.split("=", 1)
        what, _, envs = rest.partition(":")
        cons.append((kind, name, what, parse_env(envs)))
    res = {c[1]: {} for c in cons}
    for rd in range(a.rounds):
        print("round %d, load average %s" % (rd + 1, open("/proc/loadavg").read().split()[0]))
        for kind, name, what, env in (cons if rd % 2 == 0 else cons[::-1]):
            if kind == "torch":
                out = subprocess.run([sys.executable, "-c", TORCH_STEP, what, str(a.steps)],
                                     env=env, capture_output=True, text=True, check=True)
                got = {"wall": float(out.stdout.split()[-1])}
            else:
                binary, _, extra = what.partition("@")
                got = run_daemon([binary] + extra.split(), env, a.steps, X, Y)
            for k, v in got.items():
                res[name].setdefault(k, []).append(v)
            print("  %-10s %s" % (name, "  ".join("%s %.2f" % kv for kv in got.items())))
    print("medians [min-max] (wall, cpu: ms per step; idle: daemon CPU ms in the second after):")
    for _, name, _, _ in cons:
        print("  %-10s %s" % (name, "   ".join(
            "%s %.2f [%.2f-%.2f]" % (k, statistics.median(v), min(v), max(v))
            for k, v in res[name].items())))


if __name__ == "__main__":
    main()
