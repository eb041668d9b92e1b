#!/bin/sh
# bench/profile.sh WHAT [BUILD] — profiles the daemon under one workload with `perf record -g`
# and prints the top of `perf report` (self time, then callers). The profiles quoted in
# docs/performance.md come from here. WHAT is one of:
#   ew        16M float32 a + b, pipelined (workload 6)
#   sum       16M float32 a.sum() (workload 6)
#   pipe      tiny muls at depth 256 on one connection (workload 2)
#   many      50 connections at depth 16 (workload 3)
#   rtt       blocking tiny op round trips (workload 1)
#   upload    4 MiB numpy uploads from the Python client (workload 4)
#   download  4 MiB downloads into numpy (workload 4)
#   upload256 one 256 MiB numpy upload (workload 4)
#   mm        2048x2048 float32 matmuls (workload 5)
#   seed      the seed autograd example from the Python client (workload 7)
#   mlp       the MLP step (nn.Sequential + optim.SGD) from the Python client (workload 8)
#   pytiny    Python z = x * y; z.tolist() on 2x2 tensors, one call at a time (workload 11)
#   pypipe    Python z = z * y x5000 pipelined, then one read (workload 11)
# Only the processes started here are stopped, by PID. Needs perf (linux-perf).
set -eu
what=${1:?usage: bench/profile.sh WHAT [BUILD]}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
out=$build/bench/perf-$what.data
mkdir -p "$build/bench"
"$build/tensord" --listen "$addr" --log-level warn &
td=$!
trap 'kill $td 2>/dev/null || true' EXIT
/usr/bin/python3 - "$port" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.02)
EOF
# Setup that should not be in the profile (random inputs) runs before perf attaches.
py() { PYTHONPATH=client/python /usr/bin/python3 -c "$1"; }
perf record -F 1999 -g -o "$out" -p "$td" >/dev/null 2>&1 &
perf=$!
sleep 0.5
case $what in
ew)       "$build/bench/tdbench" ew "$addr" add 16777216 20 ;;
sum)      "$build/bench/tdbench" ew "$addr" sum 16777216 40 ;;
pipe)     "$build/bench/tdbench" pipe "$addr" 256 1000000 ;;
many)     "$build/bench/tdbench" many "$addr" 50 16 1000000 ;;
rtt)      "$build/bench/tdbench" rtt "$addr" 20000 ;;
mm)       "$build/bench/tdbench" mm "$addr" 2048 6 ;;
upload)   py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); a = np.ones(1 << 20, np.float32); t0 = time.perf_counter()
for _ in range(100):
    t = s.tensor(a); s.synchronize()
print('upload %.3f GB/s' % (100 * 4 * 2**20 / (time.perf_counter() - t0) / 1e9))" ;;
upload256) py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); a = np.ones(64 << 20, np.float32)
for _ in range(2):
    t0 = time.perf_counter(); t = s.tensor(a); s.synchronize(); del t
    print('upload %.3f GB/s' % (2**28 / (time.perf_counter() - t0) / 1e9))" ;;
download) py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); t = s.tensor(np.ones(1 << 20, np.float32)); t0 = time.perf_counter()
for _ in range(100):
    t.numpy()
print('download %.3f GB/s' % (100 * 4 * 2**20 / (time.perf_counter() - t0) / 1e9))" ;;
seed)     py "
import time, tensord
s = tensord.connect('$addr'); t0 = time.perf_counter()
for _ in range(2000):
    a = s.tensor([2.0], requires_grad=True); b = s.tensor([6.0], requires_grad=True)
    Q = 3*a**3 - b**2; Q.backward(); a.grad.item()
print('seed %.1f us' % ((time.perf_counter() - t0) / 2000 * 1e6))" ;;
mlp)      py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); tensord._default = s; nn = tensord.nn; r = np.random.default_rng(0)
x = s.tensor(r.standard_normal((256, 784), dtype=np.float32)); y = s.tensor(r.integers(0, 10, 256))
m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = tensord.optim.SGD(m.parameters(), lr=0.01); lf = nn.CrossEntropyLoss()
t0 = time.perf_counter()
for _ in range(50):
    loss = lf(m(x), y); loss.backward(); opt.step(); opt.zero_grad(); loss.item()
print('mlp %.2f ms/step' % ((time.perf_counter() - t0) / 50 * 1e3))" ;;
pytiny)   py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); x = s.tensor(np.full((2, 2), 3, np.float32)); y = s.tensor(x.numpy())
t0 = time.perf_counter()
for _ in range(20000):
    z = x * y; z.tolist()
print('pytiny %.1f us/call' % ((time.perf_counter() - t0) / 20000 * 1e6))" ;;
pypipe)   py "
import time, numpy as np, tensord
s = tensord.connect('$addr'); x = s.tensor(np.full((2, 2), 3, np.float32))
y = s.tensor(np.ones((2, 2), np.float32)); t0 = time.perf_counter()
for _ in range(20):
    z = x
    for _ in range(5000):
        z = z * y
    z.tolist()
print('pypipe %.2f us/op' % ((time.perf_counter() - t0) / 100000 * 1e6))" ;;
*) echo "unknown workload $what" >&2; exit 2 ;;
esac
kill -INT $perf
wait $perf || true
perf report -i "$out" --no-children --percent-limit 1.5 --stdio -g caller,0.5,callee,function,percent \
    2>/dev/null | grep -v '^$' | head -${LINES_OUT:-120}
