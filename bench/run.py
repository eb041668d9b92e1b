#!/usr/bin/python3
"""bench/run.py: `make bench`, tensord beside its anchors (issue 9).

Starts its own daemons on loopback ephemeral ports (tensord from the build, redis-server with no
persistence, iperf3 -s, the raw TCP anchor), each twice where a figure is taken both pinned
(`taskset -c 0` for client and server) and unpinned, runs every workload for tensord and for its
anchors alternately (a warm-up round, then repetitions whose order flips each time), prints a
table of medians, min-max and the ratio tensord/anchor, and writes the samples to
BUILD/bench/results.json. Only the processes it started are stopped, by their PIDs.

The Python-side workloads (bulk transfers, end-to-end matmul, autograd, MLP) and the numpy/torch
anchors run in this process, so it must be Debian's /usr/bin/python3 (numpy, torch).
The environment (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE ...) is passed unchanged to every server
and anchor, with one default added: OMP_WAIT_POLICY=PASSIVE unless the caller set it. Debian's
torch runs its OpenMP threads beside OpenBLAS's own pool; with OpenMP's default spin-wait, torch
on 2 threads on 2 vCPUs spends about half its time spinning (21 ms per MLP step against 3.2 ms
passive, measured with no daemon running). An anchor that collapses is not a fair anchor, so the
torch rows are taken with the passive policy; results.json's machine.env records it.

Issue 19 (per-request cost) adds workload 11, the Python client's tiny ops beside redis-py with
hiredis (Debian's python3-redis, python3-hiredis) against the same redis-server, and prints its
nine rows once more at the end, each beside its anchor. The Python client may run on its C fast
path (tensord._fast, `tensord._conn.FAST`) or in pure Python (TENSORD_PURE_PYTHON=1 forces it);
results.json records which one ran. When this process runs the fast path, the tiny-op rows are
also taken in pure Python, by a worker (`run.py --py-worker ADDR`, the same file under
TENSORD_PURE_PYTHON=1) that takes its turn between the other contenders, so the table shows what
the extension buys.
"""
from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import json
import os
import platform
import pstats
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

# Before torch (and its OpenMP runtime) is imported anywhere in this process; see the docstring.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

PIN = ["taskset", "-c", "0"]
MiB = 1 << 20


def now() -> float:
    return time.perf_counter()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = now() + timeout
    while now() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listening on %d after %.0fs: %s" % (port, timeout, proc.args))


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


class Procs:
    """The processes this run started; stopped by PID, never by name."""

    def __init__(self, logdir: str):
        self.procs: list = []
        self.logdir = logdir

    def spawn(self, cmd: list, name: str, pin: bool = False) -> subprocess.Popen:
        log = open(os.path.join(self.logdir, name + ".log"), "wb")
        p = subprocess.Popen((PIN if pin else []) + cmd, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


def run_json(cmd: list, pin: bool = False, timeout: float = 300) -> dict:
    out = subprocess.run((PIN if pin else []) + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), out.returncode,
                                                    out.stderr.decode(errors="replace")))
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def redis_benchmark(port: int, clients: int, pipeline: int, n: int, size: int,
                    pin: bool = False) -> dict:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-P", str(pipeline), "-n", str(n), "-t", "set", "-d", str(size), "--csv"]
    out = subprocess.run((PIN if pin else []) + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=True, timeout=120).stdout.decode()
    lines = [l for l in out.splitlines() if l.startswith('"SET"')]
    cols = [c.strip('"') for c in lines[-1].split(",")]
    return {"rps": float(cols[1]), "avg_ms": float(cols[2]), "p50_ms": float(cols[4]),
            "p99_ms": float(cols[6])}


class Resp:
    """A minimal RESP client for the bulk anchor: SET from and GET into numpy buffers with no
    copy in Python, which is as fast as a Python Redis client can be."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def set(self, key: bytes, mv: memoryview) -> None:
        self.sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, mv.nbytes))
        self.sock.sendall(mv)
        self.sock.sendall(b"\r\n")
        line = self._line()
        if line != b"+OK":
            raise RuntimeError("redis SET: %r" % line)

    def get_into(self, key: bytes, out: memoryview) -> None:
        self.sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
        line = self._line()
        n = int(line[1:])
        if n != out.nbytes:
            raise RuntimeError("redis GET: %d bytes, expected %d" % (n, out.nbytes))
        have = min(len(self.buf), n)
        out[:have] = self.buf[:have]
        self.buf = self.buf[have:]
        while have < n:
            got = self.sock.recv_into(out[have:], min(n - have, 1 << 24))
            if got == 0:
                raise ConnectionError("redis closed")
            have += got
        self._line()  # the bulk string's trailing CRLF

    def command(self, *args: bytes) -> bytes:
        msg = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        self.sock.sendall(msg)
        return self._line()

    def close(self) -> None:
        self.sock.close()


def client_path() -> dict:
    """Which Python client path this process runs: the C fast path (tensord._fast) or pure
    Python. Written while the extension is being built, so every name is looked up with a
    default: an older client has neither the module nor `_conn.FAST`."""
    import importlib.util
    from tensord import _conn
    try:
        spec = importlib.util.find_spec("tensord._fast")
    except (ImportError, ValueError):
        spec = None
    return {"fast": bool(getattr(_conn, "FAST", False)),
            "extension": spec.origin if spec is not None else None,
            "TENSORD_PURE_PYTHON": os.environ.get("TENSORD_PURE_PYTHON")}


def conn_counter(sess: object, name: str) -> float | None:
    """One of the client connection's counters (waits, frames_sent, writes), or None when this
    client does not keep it."""
    v = getattr(getattr(sess, "_c", None), name, None)
    return float(v) if isinstance(v, (int, float)) else None


def per(after: float | None, before: float | None, n: int) -> float | None:
    return None if after is None or before is None else (after - before) / n


def task_cpu_s(pid: int) -> float:
    """CPU time (s) of every thread of process pid so far, from /proc/PID/task/*/schedstat
    (nanoseconds, unlike /proc/PID/stat's ticks); 0 when pid is 0."""
    if not pid:
        return 0.0
    total = 0
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/schedstat" % (base, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue   # a thread that ended meanwhile
    return total / 1e9


def with_cpu(store: dict, key: str, server_pid: int, ops: int, fn: object) -> float:
    """Runs fn() and appends the CPU it took per op, in us, to store[key]: this process's
    (the client's, all its threads) and the server's (server_pid, all its threads)."""
    c0, s0 = time.process_time(), task_cpu_s(server_pid)
    v = fn()
    c1, s1 = time.process_time(), task_cpu_s(server_pid)
    d = store.setdefault(key, {"client": [], "server": []})
    d["client"].append((c1 - c0) / ops * 1e6)
    d["server"].append((s1 - s0) / ops * 1e6)
    return v


class PyTiny:
    """The Python client's tiny-op rows (workload 11) on one session: `z = x * y; z.tolist()`
    on 2x2 float32 tensors, one call at a time, and `z = z * y` x5000 pipelined then one read.
    Run in this process and, for the pure-Python line, in the worker."""

    def __init__(self, addr: str, server_pid: int = 0):
        import numpy as np
        import tensord
        self.server_pid = server_pid
        self.cpu: dict = {}
        self.sess = tensord.connect(addr)
        self.x = self.sess.tensor(np.full((2, 2), 3.0, np.float32))
        self.y = self.sess.tensor(np.full((2, 2), 2.0, np.float32))
        self.one = self.sess.tensor(np.ones((2, 2), np.float32))
        self.counts: dict = {}

    def tiny(self, n: int) -> float:
        return with_cpu(self.cpu, "tiny", self.server_pid, n, lambda: self._tiny(n))

    def pipe(self, n: int, k: int) -> float:
        return with_cpu(self.cpu, "pipe", self.server_pid, n * k, lambda: self._pipe(n, k))

    def _tiny(self, n: int) -> float:
        x, y = self.x, self.y
        w0 = conn_counter(self.sess, "waits")
        t0 = now()
        for _ in range(n):
            z = x * y
            v = z.tolist()
        dt = now() - t0
        assert v == [[6.0, 6.0], [6.0, 6.0]], v
        self.counts["tiny_waits"] = per(conn_counter(self.sess, "waits"), w0, n)
        return dt / n * 1e6

    def _pipe(self, n: int, k: int) -> float:
        one = self.one
        w0 = conn_counter(self.sess, "waits")
        x0 = conn_counter(self.sess, "writes")
        t0 = now()
        for _ in range(k):
            z = self.x
            for _ in range(n):
                z = z * one
            v = z.tolist()
        dt = now() - t0
        assert v == [[3.0, 3.0], [3.0, 3.0]], v
        self.counts["pipe_waits"] = per(conn_counter(self.sess, "waits"), w0, k)
        self.counts["pipe_writes"] = per(conn_counter(self.sess, "writes"), x0, k)
        return dt / (n * k) * 1e6

    def frames(self, n: int) -> dict:
        """cProfile counts over n calls of each loop: Python frames per op (functions defined
        in Python) and calls per op with C functions included. Counts, not times."""
        return {"tiny": profile_calls(lambda: self._tiny(n), n),
                "pipe": profile_calls(lambda: self._pipe(n, 1), n)}

    def close(self) -> None:
        self.sess.close()


def profile_calls(fn: object, n: int) -> dict:
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    st = pstats.Stats(pr)
    py = sum(v[1] for k, v in st.stats.items() if k[0] != "~")   # v[1]: calls incl. recursive
    return {"python_frames": py / n, "calls": st.total_calls / n}


def py_worker(addr: str, server_pid: int) -> int:
    """`run.py --py-worker ADDR --py-worker-pid PID`: a PyTiny on ADDR (the daemon PID) driven
    by one JSON command a line on stdin, each answered with one JSON line (run by the bench
    under TENSORD_PURE_PYTHON=1)."""
    w = PyTiny(addr, server_pid)
    print(json.dumps({"path": client_path()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["do"] == "tiny":
            out: dict = {"us": w.tiny(cmd["n"])}
        elif cmd["do"] == "pipe":
            out = {"us": w.pipe(cmd["n"], cmd["k"])}
        elif cmd["do"] == "frames":
            out = {"frames": w.frames(cmd["n"])}
        else:
            break
        out["counts"] = w.counts
        out["cpu"] = w.cpu
        print(json.dumps(out), flush=True)
    w.close()
    return 0


class Worker:
    """The parent's end of a py_worker child: ask() sends one command and waits (bounded) for
    its answer."""

    def __init__(self, procs: "Procs", addr: str, server_pid: int, env: dict):
        log = open(os.path.join(procs.logdir, "py_worker.log"), "wb")
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--py-worker",
                                   addr, "--py-worker-pid", str(server_pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                  env=env)
        log.close()
        procs.procs.append(self.p)
        self.procs = procs
        self.hello = self._read()

    def _read(self, timeout: float = 120.0) -> dict:
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError("the Python worker did not answer (see py_worker.log)")
        return json.loads(line)

    def ask(self, **cmd: object) -> dict:
        self.p.stdin.write((json.dumps(cmd) + "\n").encode())
        self.p.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.procs.stop(self.p)


# ---------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.bin = os.path.join(self.build, "bench")
        self.tensord_bin = os.path.join(self.build, "tensord")
        self.outdir = os.path.join(self.build, "bench")
        os.makedirs(self.outdir, exist_ok=True)
        self.procs = Procs(self.outdir)
        self.rows: list = []
        self.last_measure = ""
        self.servers: dict = {}
        self.reps = args.reps
        self.slow_reps = min(args.reps, args.slow_reps)
        self.only = set(args.only.split(",")) if args.only else None
        self.py_path: dict = {}
        self.py_frames: dict = {}

    # -- servers --
    def start_tensord(self, name: str, pin: bool, extra: tuple = ()) -> tuple:
        port = free_port()
        p = self.procs.spawn([self.tensord_bin, "--listen", "127.0.0.1:%d" % port,
                              "--log-level", "warn", *extra], name, pin)
        wait_port(port, p)
        return p, port

    def start_redis(self, name: str, pin: bool) -> tuple:
        port = free_port()
        p = self.procs.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--daemonize", "no"], name,
                             pin)
        wait_port(port, p)
        return p, port

    def start(self) -> None:
        for pin in (False, True):
            sfx = "_pin" if pin else ""
            self.servers["td" + sfx] = self.start_tensord("tensord" + sfx, pin)
            self.servers["redis" + sfx] = self.start_redis("redis" + sfx, pin)
            port = free_port()
            p = self.procs.spawn([os.path.join(self.bin, "rawtcp"), "serve", str(port)],
                                 "rawtcp" + sfx, pin)
            wait_port(port, p)
            self.servers["raw" + sfx] = (p, port)
        port = free_port()
        p = self.procs.spawn(["iperf3", "-s", "-p", str(port)], "iperf3")
        wait_port(port, p)
        self.servers["iperf3"] = (p, port)

    def addr(self, pin: bool) -> str:
        return "127.0.0.1:%d" % self.servers["td_pin" if pin else "td"][1]

    def port(self, name: str, pin: bool = False) -> int:
        return self.servers[name + ("_pin" if pin else "")][1]

    def tdbench(self, *args: object, pin: bool = False) -> dict:
        return run_json([os.path.join(self.bin, "tdbench"), *map(str, args)], pin)

    def rawtcp(self, *args: object, pin: bool = False) -> dict:
        return run_json([os.path.join(self.bin, "rawtcp"), *map(str, args)], pin)

    # -- measuring --
    def measure(self, contenders: list, reps: int | None = None, warmup: int = 1,
                settle: float = 0.0) -> dict:
        """contenders: [(key, fn)], fn() -> number. Warm-up rounds, then `reps` rounds, each
        running every contender once, in an order that flips every round."""
        reps = reps or self.reps
        samples: dict = {k: [] for k, _ in contenders}
        for _ in range(warmup):
            for _, fn in contenders:
                fn()
                time.sleep(settle)
        for r in range(reps):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for k, fn in order:
                samples[k].append(float(fn()))
                time.sleep(settle)
        return samples

    def row(self, wid: int, what: str, placement: str, unit: str, td: list, anchor: str = "",
            an: list | None = None, target: str = "", met: bool | None = None,
            note: str = "", lower_better: bool = True, i19: str = "") -> None:
        """One line of the table; i19 names the row of issue 19's table it measures (those are
        printed once more at the end, and listed under "issue19" in results.json)."""
        r = {"workload": wid, "measure": what or self.last_measure, "placement": placement,
             "unit": unit, "reps": len(td),
             "lower_is_better": lower_better, "tensord": stats(td), "anchor": anchor,
             "anchor_stats": stats(an) if an else None, "target": target, "met": met,
             "note": note, "issue19": i19}
        if an:
            r["ratio"] = r["tensord"]["median"] / r["anchor_stats"]["median"]
        self.last_measure = r["measure"]
        self.rows.append(r)
        print_row(r, what)
        sys.stdout.flush()

    def want(self, wid: int) -> bool:
        return self.only is None or str(wid) in self.only

    # -- workloads --
    def w1(self) -> None:
        sizes = self.tdbench("sizes", self.addr(False))
        self.sizes = sizes
        n = self.args.rtt_n
        for pin in (False, True):
            placement = "1 core" if pin else "2 vCPU"
            s = self.measure([
                ("td", lambda: self.tdbench("rtt", self.addr(pin), n, pin=pin)["us_per_rt"]),
                ("redis", lambda: 1e6 / redis_benchmark(self.port("redis", pin), 1, 1, 2 * n, 16,
                                                        pin)["rps"]),
                ("raw", lambda: self.rawtcp("pingpong", self.port("raw", pin), n,
                                            sizes["mul_req"], sizes["mul_resp"],
                                            sizes["get_req"], sizes["get_resp"],
                                            pin=pin)["us_per_rt"]),
            ])
            ok = statistics.median(s["td"]) <= statistics.median(s["redis"])
            self.row(1, "tiny op round trip (mul, get)", placement, "us/RT", s["td"],
                     "redis SET -P1 -c1", s["redis"], "<= 1.0x redis", ok)
            self.row(1, "", placement, "us/RT", s["td"], "raw TCP, same bytes", s["raw"],
                     note="frames: mul %d/%d B, get %d/%d B (request/reply)" % (
                         sizes["mul_req"], sizes["mul_resp"], sizes["get_req"],
                         sizes["get_resp"]))

    def w2(self) -> None:
        sz = self.sizes if hasattr(self, "sizes") else self.tdbench("sizes", self.addr(False))
        for pin in (False, True):
            placement = "1 core" if pin else "2 vCPU"
            for depth, n in ((16, self.args.pipe_n), (256, self.args.pipe_n * 2)):
                s = self.measure([
                    ("td", lambda: self.tdbench("pipe", self.addr(pin), depth, n,
                                                pin=pin)["ops_per_s"]),
                    ("redis", lambda: redis_benchmark(self.port("redis", pin), 1, depth, 2 * n,
                                                      16, pin)["rps"]),
                    ("raw", lambda: self.rawtcp("pipe", self.port("raw", pin), depth, n,
                                                sz["mul_req"], sz["mul_resp"],
                                                pin=pin)["ops_per_s"]),
                ])
                td = statistics.median(s["td"])
                if depth == 16:
                    target, ok = ">= 1.0x redis -P16", td >= statistics.median(s["redis"])
                    i19 = "C client pipelined depth 16, 1 connection"
                else:   # issue 19: 1.0M (issue 9 asked for 500k)
                    target, ok = ">= 1.0M ops/s", td >= 1e6
                    i19 = "C client depth 256"
                self.row(2, "pipelined tiny ops, depth %d" % depth, placement, "ops/s",
                         s["td"], "redis SET -P%d -c1" % depth, s["redis"], target, ok,
                         lower_better=False, i19="" if pin else i19)
                self.row(2, "", placement, "ops/s", s["td"], "raw TCP, same bytes", s["raw"],
                         lower_better=False)

    def w3(self) -> None:
        n = self.args.many_n
        for pin in (False,):
            s = self.measure([
                ("td", lambda: self.tdbench("many", self.addr(pin), 50, 16, n,
                                            pin=pin)["ops_per_s"]),
                ("redis", lambda: redis_benchmark(self.port("redis", pin), 50, 16, n, 16,
                                                  pin)["rps"]),
            ])
            ok = statistics.median(s["td"]) >= 0.8 * statistics.median(s["redis"])
            self.row(3, "50 connections, depth 16", "2 vCPU", "ops/s", s["td"],
                     "redis SET -c50 -P16", s["redis"], ">= 0.8x redis", ok,
                     note="one client thread, one epoll loop; windows of 16 muls + 1 free, "
                          "a connection's next sent when its replies are in",
                     lower_better=False, i19="C client 50 connections x depth 16")

    def w4(self) -> None:
        import numpy as np
        import tensord
        s = tensord.connect(self.addr(False))
        r = Resp(self.port("redis"))
        iperf = self.port("iperf3")

        def iperf3(nbytes: int, reverse: bool) -> float:
            cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(iperf), "-n", str(nbytes), "-J"]
            out = subprocess.run(cmd + (["-R"] if reverse else []), stdout=subprocess.PIPE,
                                 check=True, timeout=120).stdout
            return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 8e9

        for mib, reps, inner in ((4, self.reps, 16), (256, min(self.reps, self.args.bulk_reps), 1)):
            nbytes = mib * MiB
            arr = np.random.default_rng(0).random(nbytes // 4, dtype=np.float32)
            mv = memoryview(arr).cast("B")

            def td_up() -> float:
                t0 = now()
                ts = []
                for _ in range(inner):
                    ts.append(s.tensor(arr))
                s.synchronize()
                dt = now() - t0
                del ts
                gc.collect()
                return nbytes * inner / dt / 1e9

            held = s.tensor(arr)
            s.synchronize()

            def td_down() -> float:
                t0 = now()
                for _ in range(inner):
                    out = held.numpy()
                dt = now() - t0
                assert out.shape == arr.shape
                return nbytes * inner / dt / 1e9

            def redis_set() -> float:
                t0 = now()
                for i in range(inner):
                    r.set(b"k%d" % i, mv)
                return nbytes * inner / (now() - t0) / 1e9

            r.set(b"held", mv)

            def redis_get() -> float:
                t0 = now()
                for _ in range(inner):
                    out = np.empty(arr.shape, np.float32)
                    r.get_into(b"held", memoryview(out).cast("B"))
                return nbytes * inner / (now() - t0) / 1e9

            cont_up = [("td", td_up), ("redis", redis_set)]
            cont_down = [("td", td_down), ("redis", redis_get)]
            if mib == 256:
                cont_up.append(("iperf3", lambda: iperf3(nbytes, False)))
                cont_down.append(("iperf3", lambda: iperf3(nbytes, True)))
            # The first 256 MiB transfer each way lands in memory the receiving side has never
            # touched (the daemon's storage for the upload, the client's pooled buffer for the
            # download): on a VM that returns freed pages to its host that costs 0.1-0.5 GB/s of
            # first touch (docs/performance.md, issue 19's fourth round), a figure of the VM, not
            # of the transfer. It is taken once, untimed in the range and printed in the note;
            # the range is the transfers that follow, as iperf3's buffers are warm. The 4 MiB
            # rounds warm up both sides with a round of their own.
            cold = {}
            if mib == 256:
                cold = {"upload": td_up(), "download": td_down()}
            warm = 1 if mib < 256 else 0
            up = self.measure(cont_up, reps, warmup=warm)
            down = self.measure(cont_down, reps, warmup=warm)
            for what, res in (("upload", up), ("download", down)):
                td = statistics.median(res["td"])
                label = "bulk %s %d MiB f32 (Python, numpy)" % (what, mib)
                rd = statistics.median(res["redis"])
                note = "%d transfers per sample" % inner if inner > 1 else ""
                if what in cold:
                    note = "first transfer, into fresh memory: %.2f GB/s (not in the range)" % (
                        cold[what])
                self.row(4, label, "2 vCPU", "GB/s", res["td"],
                         "redis %s, same bytes" % ("SET" if what == "upload" else "GET"),
                         res["redis"], ">= 1.0x redis" if mib == 256 else "",
                         td >= rd if mib == 256 else None, lower_better=False, note=note)
                if mib == 256:
                    ip = statistics.median(res["iperf3"])
                    self.row(4, "", "2 vCPU", "GB/s", res["td"],
                             "iperf3 1 stream%s" % (" -R" if what == "download" else ""),
                             res["iperf3"], ">= 0.7x iperf3", td >= 0.7 * ip,
                             lower_better=False, i19="Python 256 MiB %s" % what)
            held = None  # noqa: F841 - frees the server's copy before the next size
            r.command(b"FLUSHALL")
            gc.collect()
            s.synchronize()
        r.close()
        s.close()

    def w5(self) -> None:
        import numpy as np
        import tensord
        core = self.corenames
        rng = np.random.default_rng(0)
        sg = os.path.join(self.bin, "sgemm")
        for n, k, reps in ((256, 40, self.reps), (1024, 8, self.reps), (2048, 2, self.slow_reps),
                           (4096, 1, min(self.reps, self.args.mm4096_reps))):
            a = rng.random((n, n), dtype=np.float32)
            b = rng.random((n, n), dtype=np.float32)

            def np_mm() -> float:
                if n < 4096:   # a warm-up call, as tdbench mm and sgemm make
                    a @ b
                t0 = now()
                for _ in range(k):
                    a @ b
                return 2.0 * n ** 3 * k / (now() - t0) / 1e9

            s = self.measure([
                ("td", lambda: self.tdbench("mm", self.addr(False), n, k)["gflops"]),
                ("sgemm", lambda: run_json([sg, "--threads", str(self.threads), str(n),
                                            str(k)])["gflops"]),
                ("numpy", np_mm),
            ], reps, warmup=0, settle=0.3)
            td = statistics.median(s["td"])
            sgm = statistics.median(s["sgemm"])
            big = n >= 1024
            self.row(5, "matmul f32 n=%d server-side" % n, "2 vCPU", "GFLOP/s", s["td"],
                     "cblas_sgemm direct", s["sgemm"], ">= 0.95x sgemm" if big else "",
                     td >= 0.95 * sgm if big else None, lower_better=False,
                     note="OpenBLAS core: tensord %s, sgemm %s" % (core["tensord"],
                                                                    core["sgemm"]))
            self.row(5, "", "2 vCPU", "GFLOP/s", s["td"], "numpy a @ b", s["numpy"],
                     lower_better=False, note="OpenBLAS core: numpy %s" % core["numpy"])
        # end to end, n = 2048: upload A and B, A @ B, download, from the Python client
        n = 2048
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        sess = tensord.connect(self.addr(False))

        def td_e2e() -> float:
            t0 = now()
            A = sess.tensor(a)
            B = sess.tensor(b)
            c = (A @ B).numpy()
            dt = now() - t0
            assert c.shape == (n, n)
            return dt * 1e3

        def np_e2e() -> float:
            t0 = now()
            a @ b
            return (now() - t0) * 1e3

        s = self.measure([("td", td_e2e), ("numpy", np_e2e)], self.slow_reps, settle=0.3)
        ok = statistics.median(s["td"]) <= 1.3 * statistics.median(s["numpy"])
        self.row(5, "matmul n=2048 end to end (up A,B; A@B; down)", "2 vCPU", "ms", s["td"],
                 "numpy a @ b", s["numpy"], "<= 1.3x numpy", ok,
                 note="OpenBLAS core: tensord %s, numpy %s" % (core["tensord"], core["numpy"]),
                 i19="end-to-end matmul n=2048 from Python")
        gc.collect()
        sess.close()

    def w6(self) -> None:
        import numpy as np
        import torch
        numel = 16 * MiB
        k = self.args.ew_k
        rng = np.random.default_rng(0)
        a = rng.random(numel, dtype=np.float32)
        b = rng.random(numel, dtype=np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for op in ("add", "mul", "sum"):
            moved = numel * 4 * (1 if op == "sum" else 3)
            npf = {"add": lambda: a + b, "mul": lambda: a * b, "sum": lambda: a.sum()}[op]
            tf = {"add": lambda: torch.add(ta, tb), "mul": lambda: torch.mul(ta, tb),
                  "sum": lambda: torch.sum(ta)}[op]

            def local(f: object) -> float:
                f()
                t0 = now()
                for _ in range(k):
                    f()
                return moved * k / (now() - t0) / 1e9

            s = self.measure([
                ("td", lambda: self.tdbench("ew", self.addr(False), op, numel, k)["gbps"]),
                ("numpy", lambda: local(npf)),
                ("torch", lambda: local(tf)),
            ], self.slow_reps, settle=0.1)
            td = statistics.median(s["td"])
            label = {"add": "a + b", "mul": "a * b", "sum": "a.sum()"}[op]
            self.row(6, "%s, 16M f32 server-side" % label, "2 vCPU", "GB/s", s["td"],
                     "numpy", s["numpy"], ">= 1.0x numpy", td >= statistics.median(s["numpy"]),
                     lower_better=False,
                     note="bytes moved: %s" % ("64 MiB read" if op == "sum"
                                               else "128 MiB read + 64 MiB written"))
            self.row(6, "", "2 vCPU", "GB/s", s["td"], "torch (%d threads)" % self.threads,
                     s["torch"], lower_better=False)

    def w7(self) -> None:
        import torch
        import tensord
        iters = self.args.autograd_iters
        for pin in (False, True):
            placement = "1 core" if pin else "2 vCPU"
            sess = tensord.connect(self.addr(pin))
            counts: dict = {}
            old = os.sched_getaffinity(0)
            if pin:
                os.sched_setaffinity(0, {0})   # this (the client's) thread only
            try:
                def td_seed() -> float:
                    w0, f0, x0 = (conn_counter(sess, k) for k in ("waits", "frames_sent",
                                                                   "writes"))
                    t0 = now()
                    for _ in range(iters):
                        a = sess.tensor([2.0], requires_grad=True)
                        b = sess.tensor([6.0], requires_grad=True)
                        Q = 3 * a ** 3 - b ** 2
                        Q.backward()
                        v = a.grad.item()
                    dt = now() - t0
                    assert v == 36.0
                    counts.update(waits=per(conn_counter(sess, "waits"), w0, iters),
                                  frames=per(conn_counter(sess, "frames_sent"), f0, iters),
                                  writes=per(conn_counter(sess, "writes"), x0, iters))
                    return dt / iters * 1e6

                def torch_seed() -> float:
                    t0 = now()
                    for _ in range(iters):
                        a = torch.tensor([2.0], requires_grad=True)
                        b = torch.tensor([6.0], requires_grad=True)
                        Q = 3 * a ** 3 - b ** 2
                        Q.backward()
                        v = a.grad.item()
                    assert v == 36.0
                    return (now() - t0) / iters * 1e6

                s = self.measure([("td", td_seed), ("torch", torch_seed)])
            finally:
                os.sched_setaffinity(0, old)
                sess.close()
            # issue 19: <= 4x (issue 9 asked for 8x)
            ok = statistics.median(s["td"]) <= 4 * statistics.median(s["torch"])
            self.row(7, "seed autograd (Python client)", placement, "us", s["td"],
                     "local torch", s["torch"], "<= 4x torch", ok,
                     i19="" if pin else "seed autograd example from Python")
            if counts["waits"] is not None:
                self.row(7, "  round trips per run", placement, "RT", [counts["waits"]],
                         target="<= 3", met=counts["waits"] <= 3,
                         note="frames sent %s, socket writes %s per run" % (
                             opt_fmt(counts["frames"]), opt_fmt(counts["writes"])))

    def w8(self) -> None:
        """MLP 784-256-10 training step, batch 256, as issue 19 asks for it: nn.Sequential,
        nn.CrossEntropyLoss and optim.SGD (tensord.nn/optim against torch.nn/optim), the same
        initial weights, torch with as many threads as the daemon has."""
        import numpy as np
        import torch
        import tensord
        rng = np.random.default_rng(0)
        X = rng.standard_normal((256, 784), dtype=np.float32)
        Y = rng.integers(0, 10, 256)
        steps = self.args.mlp_steps
        sess = tensord.connect(self.addr(False))
        # the daemon's threads as Stats.blas reports them ("...; 2 threads"); the CPU count
        # (its default) from a daemon that does not say
        m = re.search(r"(\d+) threads", str(getattr(sess.stats(), "blas", "")))
        threads = int(m.group(1)) if m else self.threads
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        old_default = tensord._default
        tensord._default = sess   # tensord.nn makes its parameters on the default session
        try:
            torch.manual_seed(0)
            tnn, dnn = torch.nn, tensord.nn
            lmodel = tnn.Sequential(tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 10))
            dmodel = dnn.Sequential(dnn.Linear(784, 256), dnn.ReLU(), dnn.Linear(256, 10))
            dmodel.load_state_dict(lmodel.state_dict())
            lopt = torch.optim.SGD(lmodel.parameters(), lr=0.01)
            dopt = tensord.optim.SGD(dmodel.parameters(), lr=0.01)
            lloss, dloss = tnn.CrossEntropyLoss(), dnn.CrossEntropyLoss()
            lx, ly = torch.from_numpy(X), torch.from_numpy(Y)
            x, y = sess.tensor(X), sess.tensor(Y)
            counts: dict = {}

            # zero_grad sets the grads to None in both (tensord's default, as torch 2's; torch
            # 1.13's default would zero them in place, which is more work)
            def td_step() -> float:
                loss = dloss(dmodel(x), y)
                loss.backward()
                dopt.step()
                dopt.zero_grad(set_to_none=True)
                return loss.item()

            def torch_step() -> float:
                loss = lloss(lmodel(lx), ly)
                loss.backward()
                lopt.step()
                lopt.zero_grad(set_to_none=True)
                return loss.item()

            first = (td_step(), torch_step())   # same weights, same data: the same loss
            assert abs(first[0] - first[1]) < 1e-4 * max(1.0, abs(first[1])), first

            def td_steps() -> float:
                w0 = conn_counter(sess, "waits")
                t0 = now()
                for _ in range(steps):
                    td_step()
                dt = now() - t0
                counts["waits"] = per(conn_counter(sess, "waits"), w0, steps)
                return dt / steps * 1e3

            def torch_steps() -> float:
                t0 = now()
                for _ in range(steps):
                    torch_step()
                return (now() - t0) / steps * 1e3

            def torch1_steps() -> float:   # how much the anchor's threads buy here
                torch.set_num_threads(1)
                try:
                    return torch_steps()
                finally:
                    torch.set_num_threads(threads)

            s = self.measure([("td", td_steps), ("torch", torch_steps), ("torch1", torch1_steps)],
                             self.slow_reps, settle=0.2)
        finally:
            tensord._default = old_default
            torch.set_num_threads(torch_threads)
        ok = statistics.median(s["td"]) <= 1.1 * statistics.median(s["torch"])
        self.row(8, "MLP 784-256-10 step (nn.Sequential, SGD)", "2 vCPU", "ms", s["td"],
                 "local torch (%d threads)" % threads, s["torch"], "<= 1.1x torch", ok,
                 note="batch 256, cross-entropy, loss.item() each step; daemon threads %d; "
                 "OpenBLAS core: tensord %s, torch %s" % (
                     threads, self.corenames["tensord"], self.corenames["numpy"]),
                 i19="MLP 784-256-10 step, batch 256")
        self.row(8, "", "2 vCPU", "ms", s["td"], "local torch (1 thread)", s["torch1"],
                 note="not the target's anchor: shows what torch's threads buy on this machine")
        if counts["waits"] is not None:
            self.row(8, "  round trips per step", "2 vCPU", "RT", [counts["waits"]],
                     target="1", met=counts["waits"] == 1,
                     note="backward(); step(); zero_grad(); loss.item(): only the read waits")
        sess.close()   # frees the session's tensors

    def w9(self) -> None:
        secs = self.args.hol_seconds
        for pin in (False, True):
            placement = "1 core" if pin else "2 vCPU"
            extra: dict = {}

            def busy() -> float:
                r = self.tdbench("hol", self.addr(pin), secs, 1, pin=pin)
                extra.setdefault("matmuls", []).append(r["matmuls"])
                extra.setdefault("max", []).append(r["max_us"])
                return r["p99_us"] / 1e3

            s = self.measure([
                ("td", busy),
                ("idle", lambda: self.tdbench("hol", self.addr(pin), 1.0, 0,
                                              pin=pin)["p99_us"] / 1e3),
            ], self.args.hol_reps, warmup=0, settle=0.3)
            ok = statistics.median(s["td"]) <= 5.0
            self.row(9, "tiny-op p99 while 4096^2 matmuls run", placement, "ms", s["td"],
                     "same, no matmuls", s["idle"], "p99 <= 5 ms", ok,
                     note="%s matmuls per %.0f s sample; worst single op %.1f ms" % (
                         "/".join(map(str, extra["matmuls"])), secs, max(extra["max"]) / 1e3))

    def w10(self) -> None:
        nsess = self.args.sessions
        ntens = self.args.tensors
        idle, per_s, per_t, r_idle, r_key = [], [], [], [], []
        for _ in range(self.args.mem_reps):
            p, port = self.start_tensord("tensord_mem", False,
                                         ("--max-sessions", str(nsess + 10)))
            time.sleep(0.3)
            r0 = rss_kib(p.pid)
            idle.append(r0 / 1024)
            addr = "127.0.0.1:%d" % port
            self.tdbench("sessions", addr, nsess)
            time.sleep(0.2)
            r1 = rss_kib(p.pid)
            per_s.append((r1 - r0) * 1024 / nsess)
            self.tdbench("tensors", addr, ntens)
            time.sleep(0.2)
            r2 = rss_kib(p.pid)
            per_t.append((r2 - r1) * 1024 / ntens)
            self.procs.stop(p)
            rp, rport = self.start_redis("redis_mem", False)
            time.sleep(0.3)
            q0 = rss_kib(rp.pid)
            r_idle.append(q0 / 1024)
            c = Resp(rport)
            batch = []
            for i in range(ntens):
                batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$4\r\nabcd\r\n" % (
                    len(b"k%d" % i), i))
                if len(batch) == 1000 or i == ntens - 1:
                    c.sock.sendall(b"".join(batch))
                    for _ in batch:
                        c._line()
                    batch = []
            time.sleep(0.2)
            r_key.append((rss_kib(rp.pid) - q0) * 1024 / ntens)
            c.close()
            self.procs.stop(rp)
        self.row(10, "idle RSS", "-", "MiB", idle, "redis-server idle RSS", r_idle,
                 "<= 10 MiB", statistics.median(idle) <= 10)
        self.row(10, "RSS per empty session (%d)" % nsess, "-", "B", per_s, target="<= 2 KiB",
                 met=statistics.median(per_s) <= 2048)
        self.row(10, "RSS per 1-element f32 tensor (%d)" % ntens, "-", "B", per_t,
                 "redis per 4-byte key", r_key)

    def w11(self) -> None:
        """Issue 19's Python tiny-op rows beside redis-py with hiredis on the redis-server the
        other anchors use: `z = x * y; z.tolist()` (2x2 f32) per call vs a
        pipeline(transaction=False) of SET+GET and execute(); `z = z * y` x5000 then one read,
        per op, vs a pipeline of 5000 SETs, per command. When this process runs the client's
        fast path, a worker under TENSORD_PURE_PYTHON=1 takes its turns too. Beside the times:
        Python frames per op (cProfile) and the CPU per op of client and server."""
        import redis
        n, pn, pk = self.args.py_tiny_n, 5000, self.args.py_pipe_k
        path = client_path()
        self.py_path["bench"] = path
        td_pid = self.servers["td"][0].pid
        redis_pid = self.servers["redis"][0].pid
        r = redis.Redis(host="127.0.0.1", port=self.port("redis"))
        val = b"\x00\x00\x40\x40" * 4   # the 2x2 float32 tensor of 3.0s: 16 bytes
        cpu: dict = {}

        def rp_setget(calls: int = n) -> float:
            t0 = now()
            for _ in range(calls):
                p = r.pipeline(transaction=False)
                p.set(b"k", val)
                p.get(b"k")
                out = p.execute()
            dt = now() - t0
            assert out == [True, val], out
            return dt / calls * 1e6

        def rp_pipe() -> float:
            t0 = now()
            for _ in range(pk):
                rp_pipe_once(r, val, pn)
            return (now() - t0) / (pn * pk) * 1e6

        # The floor under any Python client's call: one sendall of a mul and a get request and
        # the recv of both replies, tensord's byte counts, against the raw TCP server.
        sz = self.sizes if hasattr(self, "sizes") else self.tdbench("sizes", self.addr(False))
        raw = socket.create_connection(("127.0.0.1", self.port("raw")))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.sendall(struct.pack("=4I", sz["mul_req"], sz["mul_resp"], sz["get_req"],
                                sz["get_resp"]))
        raw_req = bytes(sz["mul_req"] + sz["get_req"])
        raw_want = sz["mul_resp"] + sz["get_resp"]

        def raw_rt() -> float:
            t0 = now()
            for _ in range(n):
                raw.sendall(raw_req)
                got = 0
                while got < raw_want:
                    b = raw.recv(65536)
                    if not b:
                        raise ConnectionError("rawtcp closed")
                    got += len(b)
            return (now() - t0) / n * 1e6

        td = PyTiny(self.addr(False), td_pid)
        worker = None
        wcpu: dict = {}
        if path["fast"]:
            env = dict(os.environ, TENSORD_PURE_PYTHON="1")
            worker = Worker(self.procs, self.addr(False), td_pid, env)
            self.py_path["pure_worker"] = worker.hello["path"]

        def ask(**cmd: object) -> float:
            out = worker.ask(**cmd)
            wcpu.update(out["cpu"])
            return out["us"]

        try:
            tiny = [("td", lambda: td.tiny(n)),
                    ("redis-py", lambda: with_cpu(cpu, "rp_tiny", redis_pid, n, rp_setget)),
                    ("raw", raw_rt)]
            pipe = [("td", lambda: td.pipe(pn, pk)),
                    ("redis-py", lambda: with_cpu(cpu, "rp_pipe", redis_pid, pn * pk, rp_pipe))]
            if worker is not None:
                tiny.append(("pure", lambda: ask(do="tiny", n=n)))
                pipe.append(("pure", lambda: ask(do="pipe", n=pn, k=pk)))
            st = self.measure(tiny)
            sp = self.measure(pipe)
            # Counts, outside the timed rounds: Python frames per op under cProfile.
            fn = self.args.py_frames_n
            frames = {"td": td.frames(fn),
                      "redis-py": {"tiny": profile_calls(lambda: rp_setget(fn), fn),
                                   "pipe": profile_calls(lambda: rp_pipe_once(r, val, fn),
                                                         fn)}}
            if worker is not None:
                frames["pure"] = worker.ask(do="frames", n=fn)["frames"]
                self.py_path["pure_worker_counts"] = worker.ask(do="tiny", n=10)["counts"]
        finally:
            if worker is not None:
                worker.close()
            td.close()
            r.close()
            raw.close()
        med = {k: {side: statistics.median(v) for side, v in d.items()}
               for k, d in (("td_" + k, v) for k, v in td.cpu.items())}
        med.update({k: {side: statistics.median(v) for side, v in d.items()}
                    for k, d in cpu.items()})
        med.update({"pure_" + k: {side: statistics.median(v) for side, v in d.items()}
                    for k, d in wcpu.items()})
        self.py_frames = {"frames": frames, "cpu_us_per_op": med}
        label = "fast path (C)" if path["fast"] else "pure Python"
        nohi = "" if getattr(self, "hiredis", True) else " NO HIREDIS"

        def cpu_note(key: str) -> str:
            c = med.get(key)
            return "?" if c is None else "%.1f + %.1f" % (c["client"], c["server"])

        for kind, res, what, i19, anchor in (
                ("tiny", st, "Python z = x * y; z.tolist() (2x2), per call",
                 "Python z = x * y; z.tolist() (2x2), per call",
                 "redis-py pipe SET+GET" + nohi),
                ("pipe", sp, "Python z = z * y x5000, one read, per op",
                 "Python pipelined z = z * y x5000, per op",
                 "redis-py pipe 5000 SETs" + nohi)):
            ok = statistics.median(res["td"]) <= statistics.median(res["redis-py"])
            f = frames["td"][kind]
            rf = frames["redis-py"][kind]
            waits = td.counts.get("%s_waits" % kind)
            self.row(11, what, "2 vCPU", "us", res["td"], anchor, res["redis-py"],
                     "<= 1.0x redis-py", ok, i19=i19,
                     note="client: %s; per op: %.1f Python frames, %.1f calls (redis-py %.1f, "
                     "%.1f); CPU us client + server: %s (redis-py %s); round trips per %s: %s"
                     % (label, f["python_frames"], f["calls"], rf["python_frames"], rf["calls"],
                        cpu_note("td_" + kind), cpu_note("rp_" + kind),
                        "call" if kind == "tiny" else "5000",
                        "?" if waits is None else "%.2f" % waits))
            if worker is not None:
                pf = frames["pure"][kind]
                pure_path = self.py_path["pure_worker"]
                self.row(11, "  same, pure Python client", "2 vCPU", "us", res["pure"], anchor,
                         res["redis-py"],
                         i19=(i19 + " [pure Python]") if not pure_path["fast"] else "",
                         note="TENSORD_PURE_PYTHON=1%s; per op %.1f Python frames, %.1f calls; "
                         "CPU us client + server: %s; the fast path takes %.2fx of its time" % (
                             "" if not pure_path["fast"] else " (IGNORED: the worker ran the "
                             "fast path)", pf["python_frames"], pf["calls"],
                             cpu_note("pure_" + kind),
                             statistics.median(res["td"]) / statistics.median(res["pure"])))
            if kind == "tiny":
                self.row(11, "", "2 vCPU", "us", res["td"], "raw TCP from Python", res["raw"],
                         note="one sendall of %d B, recv of %d B: the socket round trip under "
                         "any Python client" % (len(raw_req), raw_want))

    def fit_budget(self, elapsed: float) -> None:
        """The whole run must end within --budget seconds on a shared, noisy machine: past
        half of it the remaining workloads take fewer repetitions (never fewer than 2)."""
        b = self.args.budget
        if elapsed > 0.75 * b:
            self.reps, self.slow_reps = 2, min(self.slow_reps, 2)
        elif elapsed > 0.5 * b:
            self.reps, self.slow_reps = min(self.reps, 3), min(self.slow_reps, 2)
        self.args.bulk_reps = min(self.args.bulk_reps, self.reps)
        self.args.hol_reps = min(self.args.hol_reps, self.reps)

    # -- the run --
    def machine(self) -> dict:
        lscpu = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        want = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                "L1d cache", "L2 cache", "L3 cache", "Hypervisor vendor", "Virtualization type")
        info = {}
        for line in lscpu.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in want:
                info[key.strip()] = val.strip()
        flags = [f for f in ("avx2", "avx512f", "fma") if f" {f} " in lscpu + " "]
        info["simd"] = " ".join(flags)
        with open("/proc/meminfo") as f:
            info["MemTotal"] = f.readline().split(":")[1].strip()
        info["kernel"] = platform.release()
        info["env"] = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP"))}
        return info

    def find_corenames(self) -> dict:
        import numpy  # noqa: F401 - loads numpy's OpenBLAS into this process
        import torch
        torch.set_num_threads(self.threads)
        names = {}
        sg = run_json([os.path.join(self.bin, "sgemm"), "64", "1"])
        names["sgemm"] = sg["corename"]
        # The daemon's libopenblas, as its loader resolves it, asked in a child under the same
        # environment (the daemon has no request that reports it).
        ldd = subprocess.run(["ldd", self.tensord_bin], stdout=subprocess.PIPE,
                             text=True).stdout
        lib = next((l.split("=>")[1].split("(")[0].strip() for l in ldd.splitlines()
                    if "openblas" in l), None)
        names["tensord"] = "?"
        if lib:
            code = ("import ctypes;l=ctypes.CDLL(%r);l.openblas_get_corename.restype="
                    "ctypes.c_char_p;print(l.openblas_get_corename().decode())" % lib)
            names["tensord"] = subprocess.run([sys.executable, "-c", code],
                                              stdout=subprocess.PIPE, text=True).stdout.strip()
        names["numpy"] = "?"
        with open("/proc/self/maps") as f:
            libs = sorted({l.split()[-1] for l in f if "openblas" in l and ".so" in l})
        for path in libs:
            try:
                l = ctypes.CDLL(path)
                l.openblas_get_corename.restype = ctypes.c_char_p
                names["numpy"] = l.openblas_get_corename().decode()
                break
            except (OSError, AttributeError):
                continue
        return names

    def run(self) -> int:
        t_start = now()
        for tool in ("redis-server", "redis-benchmark", "iperf3", "taskset"):
            if shutil.which(tool) is None:
                print("bench: %s is missing; run `make deps` first" % tool, file=sys.stderr)
                return 1
        self.threads = os.cpu_count() or 1
        self.corenames = self.find_corenames()
        machine = self.machine()
        self.py_path["bench"] = client_path()
        rp = redis_py_versions()
        if rp["redis_py"] is None:
            print("bench: redis-py (python3-redis) is missing; run `make deps` first",
                  file=sys.stderr)
            return 1
        self.hiredis = bool(rp["HIREDIS_AVAILABLE"])
        print("Python client: %s; redis-py %s, hiredis %s (redis.utils.HIREDIS_AVAILABLE %s)" % (
            "fast path (tensord._fast)" if self.py_path["bench"]["fast"] else "pure Python",
            rp["redis_py"], rp["hiredis"], rp["HIREDIS_AVAILABLE"]))
        print("tensord bench: %s, %s CPUs, %s; OpenBLAS core %s; env %s" % (
            machine.get("Model name"), machine.get("CPU(s)"), machine["MemTotal"],
            self.corenames, machine["env"]))
        print("medians of %d repetitions (after a warm-up round) with [min-max]; ratio = "
              "tensord/anchor; '2 vCPU' = unpinned, '1 core' = client and server on "
              "`taskset -c 0`\n" % self.reps)
        print_header()
        self.start()
        failed = []
        try:
            for wid in range(1, 12):
                if self.want(wid):
                    self.fit_budget(now() - t_start)
                    t0 = now()
                    try:
                        getattr(self, "w%d" % wid)()
                    except Exception as e:  # one broken workload must not hide the others
                        failed.append(wid)
                        print("workload %d failed: %r" % (wid, e), file=sys.stderr)
                    self.timings = getattr(self, "timings", {})
                    self.timings[wid] = now() - t0
        finally:
            self.procs.stop_all()
        elapsed = now() - t_start
        met = [r for r in self.rows if r["met"] is True]
        missed = [r for r in self.rows if r["met"] is False]
        print("\n%d targets met, %d missed; %.0f s (per workload: %s)" % (
            len(met), len(missed), elapsed,
            ", ".join("%d: %.0f s" % kv for kv in getattr(self, "timings", {}).items())))
        out = os.path.join(self.outdir, "results.json")
        with open(out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine,
                       "openblas_corename": self.corenames, "threads": self.threads,
                       "reps": self.reps, "elapsed_s": elapsed,
                       "workload_seconds": getattr(self, "timings", {}),
                       "failed_workloads": failed,
                       "python_client": self.py_path, "python_per_op": self.py_frames,
                       "redis_py": rp,
                       "issue19": [r for r in self.rows if r["issue19"]],
                       "rows": self.rows}, f, indent=1)
        print_issue19(self.rows, self.want)
        print("samples: %s" % os.path.relpath(out, ROOT))
        return 1 if failed else 0


def redis_py_versions() -> dict:
    """redis-py and hiredis as this process imports them (Debian's python3-redis and
    python3-hiredis); None where one is missing."""
    out: dict = {"redis_py": None, "hiredis": None, "HIREDIS_AVAILABLE": None}
    try:
        import redis
        import redis.utils
        out["redis_py"] = redis.__version__
        out["HIREDIS_AVAILABLE"] = bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False))
    except ImportError:
        return out
    try:
        import hiredis
        out["hiredis"] = getattr(hiredis, "__version__", "?")
    except ImportError:
        pass
    return out


# Issue 19's table, in its order; the bench's rows carry these names in their "issue19" field.
ISSUE19 = (("Python z = x * y; z.tolist() (2x2), per call", 11),
           ("Python z = x * y; z.tolist() (2x2), per call [pure Python]", 11),
           ("Python pipelined z = z * y x5000, per op", 11),
           ("Python pipelined z = z * y x5000, per op [pure Python]", 11),
           ("seed autograd example from Python", 7),
           ("MLP 784-256-10 step, batch 256", 8),
           ("C client pipelined depth 16, 1 connection", 2),
           ("C client depth 256", 2),
           ("C client 50 connections x depth 16", 3),
           ("Python 256 MiB upload", 4),
           ("Python 256 MiB download", 4),
           ("end-to-end matmul n=2048 from Python", 5))

I19_COLS = (("issue 19 row", 58), ("unit", 5), ("tensord", 20), ("anchor", 30),
            ("anchor value", 20), ("ratio", 6), ("target", 18), ("met", 4))


def print_issue19(rows: list, want: object) -> None:
    """Issue 19's rows once more, each beside its anchor (from the rows printed above)."""
    by = {r["issue19"]: r for r in rows if r["issue19"]}
    print("\nissue 19 (all rows from this run; 2 vCPU):")
    print("  ".join(name.ljust(w) for name, w in I19_COLS).rstrip())
    print("  ".join("-" * w for _, w in I19_COLS))
    for name, wid in ISSUE19:
        r = by.get(name)
        if r is None:
            if name.endswith("[pure Python]"):
                continue   # only taken when the fast path ran
            vals: tuple = (name, "", "not measured" if want(wid) else "(not run: --only)")
        else:
            vals = (name, r["unit"], cell(r["tensord"]), r["anchor"], cell(r["anchor_stats"]),
                    "%.2f" % r["ratio"] if "ratio" in r else "", r["target"],
                    {True: "yes", False: "NO", None: ""}[r["met"]])
        print("  ".join(v.ljust(w) for v, (_, w) in zip(vals, I19_COLS)).rstrip())


def rp_pipe_once(r: object, val: bytes, n: int) -> None:
    p = r.pipeline(transaction=False)
    for _ in range(n):
        p.set(b"k", val)
    p.execute()


def opt_fmt(v: float | None) -> str:
    return "?" if v is None else "%.0f" % v


def stats(v: list | None) -> dict | None:
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v}


def fmt(x: float) -> str:
    a = abs(x)
    if a >= 1e6:
        return "%.2fM" % (x / 1e6)
    if a >= 1e4:
        return "%.0fk" % (x / 1e3)
    if a >= 100:
        return "%.0f" % x
    if a >= 10:
        return "%.1f" % x
    return "%.2f" % x


def cell(st: dict | None) -> str:
    if st is None:
        return ""
    if st["min"] == st["max"]:
        return fmt(st["median"])
    return "%s [%s-%s]" % (fmt(st["median"]), fmt(st["min"]), fmt(st["max"]))


COLS = (("#", 2), ("measure", 44), ("place", 6), ("unit", 7), ("tensord", 24),
        ("anchor", 24), ("anchor value", 24), ("ratio", 6), ("target", 18), ("met", 4))


def print_header() -> None:
    print("  ".join(name.ljust(w) for name, w in COLS).rstrip())
    print("  ".join("-" * w for _, w in COLS))


def print_row(r: dict, what: str) -> None:
    met = {True: "yes", False: "NO", None: ""}[r["met"]]
    vals = (str(r["workload"]), what, r["placement"], r["unit"], cell(r["tensord"]),
            r["anchor"], cell(r["anchor_stats"]),
            "%.2f" % r["ratio"] if "ratio" in r else "", r["target"], met)
    print("  ".join(v.ljust(w) for v, (_, w) in zip(vals, COLS)).rstrip())
    if r["note"]:
        print("    " + " " * 2 + "(" + r["note"] + ")")


def main() -> int:
    # SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C, so the daemons this run
    # started are stopped by the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", default="", help="comma-separated workload numbers")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=480,
                    help="seconds; past half of it later workloads take fewer repetitions")
    ap.add_argument("--rtt-n", type=int, default=4000)
    ap.add_argument("--pipe-n", type=int, default=64000)
    ap.add_argument("--many-n", type=int, default=200000)
    ap.add_argument("--slow-reps", type=int, default=3,
                    help="repetitions of the workloads that take seconds each (6, 8, n=2048)")
    ap.add_argument("--bulk-reps", type=int, default=3)
    ap.add_argument("--mm4096-reps", type=int, default=3)
    ap.add_argument("--ew-k", type=int, default=3)
    ap.add_argument("--autograd-iters", type=int, default=100)
    ap.add_argument("--mlp-steps", type=int, default=10)
    ap.add_argument("--hol-seconds", type=float, default=4.0)
    ap.add_argument("--hol-reps", type=int, default=2)
    ap.add_argument("--mem-reps", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--tensors", type=int, default=100000)
    ap.add_argument("--py-tiny-n", type=int, default=1000,
                    help="calls per sample of the Python z = x * y; z.tolist() row (11)")
    ap.add_argument("--py-pipe-k", type=int, default=2,
                    help="pipelines of 5000 ops (then one read) per sample (11)")
    ap.add_argument("--py-frames-n", type=int, default=200,
                    help="ops profiled with cProfile for the frames-per-op counts (11)")
    ap.add_argument("--py-worker", metavar="ADDR", default="", help=argparse.SUPPRESS)
    ap.add_argument("--py-worker-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.py_worker:
        return py_worker(args.py_worker, args.py_worker_pid)
    suite = Suite(args)
    try:
        return suite.run()
    finally:
        suite.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
