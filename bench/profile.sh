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
#   ipo-pipe16, ipo-pipe256   daemon instructions per op under callgrind (this VM's perf has no
#             hardware counters: `perf stat -e instructions` says <not supported>): tdbench pipe
#             at depth 16 / 256, counted over IPO_N (25600) muls after a warm-up; TDBENCH=path
#             runs another tdbench binary
#   ipo-many50 (or ipo-many)  the same for tdbench many: 50 connections at depth 16 (workload 3)
#   ipo-pytiny, ipo-pypipe    the same for the Python rows of workload 11 (IPO_N calls / ops)
#   ipo-mlp   daemon instructions per MLP step (workload 8), IPO_N (20) steps, --threads 1
#             (IPO_THREADS=2: two, the split GEMMs' helper threads counted too)
#   ipo-redis16, ipo-redis256 the anchor: redis-server instructions per SET, redis-benchmark -P
#   ipoc-pytiny, ipoc-pypipe, ipoc-redispy-tiny, ipoc-redispy-pipe
#             the Python client's instructions per op (workload 11 and its redis-py anchor):
#             the whole client under callgrind twice, IPOC_N1 and IPOC_N2 ops, the difference
#             divided by IPOC_N2 - IPOC_N1 (so start-up and imports cancel out)
#   ipoc-tdpipe16, ipoc-tdpipe256, ipoc-tdmany, ipoc-redisbench16, ipoc-redisbench256
#             the C bench client's instructions per op, counted the same way: tdbench pipe at
#             depth 16 / 256, tdbench many (50 connections, depth 16), and the anchor
#             redis-benchmark -P 16 / 256 (SET, one connection); TDBENCH=path runs another
#             tdbench binary (an A/B against a saved build). IPOC_N1/IPOC_N2 default to 25600
#             and 128000 ops here.
# Only the processes started here are stopped, by PID. Needs perf (linux-perf), and valgrind
# for ipo-*.
set -eu
what=${1:?usage: bench/profile.sh WHAT [BUILD]}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
port=${PROFILE_PORT:-}; [ -n "$port" ] || port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
out=$build/bench/perf-$what.data
mkdir -p "$build/bench"
wait_port() {
/usr/bin/python3 - "$port" <<'EOF'
import socket, sys, time
for _ in range(1000):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.02)
EOF
}
py() { PYTHONPATH=client/python /usr/bin/python3 -c "$1"; }
pytiny() { py "
import numpy as np, tensord
s = tensord.connect('$addr'); x = s.tensor(np.full((2, 2), 3, np.float32)); y = s.tensor(x.numpy())
for _ in range($1):
    z = x * y; z.tolist()"; }
pypipe() { py "
import numpy as np, tensord
s = tensord.connect('$addr'); x = s.tensor(np.full((2, 2), 3, np.float32))
y = s.tensor(np.ones((2, 2), np.float32)); z = x
for _ in range($1):
    z = z * y
z.tolist()"; }

# N MLP steps (workload 8's step, nn.Sequential + optim.SGD), after building the model and
# uploading the batch: per step, the model's creation counts 1/N of its cost.
mlpsteps() { py "
import numpy as np, tensord
s = tensord.connect('$addr'); tensord._default = s; nn = tensord.nn; r = np.random.default_rng(0)
x = s.tensor(r.standard_normal((256, 784), dtype=np.float32)); y = s.tensor(r.integers(0, 10, 256))
m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = tensord.optim.SGD(m.parameters(), lr=0.01); lf = nn.CrossEntropyLoss()
for _ in range($1):
    loss = lf(m(x), y); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True); loss.item()"; }

case $what in
ipoc-td* | ipoc-redisbench*)
    tdbench=${TDBENCH:-$build/bench/tdbench}
    case $what in
    ipoc-redisbench*) set -- redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no ;;
    *)                set -- "$build/tensord" --listen "$addr" --log-level warn ;;
    esac
    "$@" >/dev/null &
    srv=$!
    trap 'kill $srv 2>/dev/null || true' EXIT
    wait_port
    irc() {
        nops=$1
        case $what in
        ipoc-tdpipe16)  set -- "$tdbench" pipe "$addr" 16 "$1" ;;
        ipoc-tdpipe256) set -- "$tdbench" pipe "$addr" 256 "$1" ;;
        ipoc-tdmany)    set -- "$tdbench" many "$addr" 50 16 "$1" ;;
        ipoc-redisbench16 | ipoc-redisbench256)
            set -- redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -P "${what#ipoc-redisbench}" \
                -n "$1" -t set -d 16 -q ;;
        *) echo "unknown workload $what" >&2; exit 2 ;;
        esac
        valgrind --tool=callgrind --callgrind-out-file="$build/bench/callgrind-$what-$nops.out" \
            "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'
    }
    n1=${IPOC_N1:-25600}
    n2=${IPOC_N2:-128000}
    a=$(irc "$n1")
    b=$(irc "$n2")
    echo "$what: $(( (b - a) / (n2 - n1) )) client instructions per op ($tdbench)"
    exit 0 ;;
ipoc-*)
    "$build/tensord" --listen "$addr" --log-level warn &
    td=$!
    rport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    rd=$!
    trap 'kill $td $rd 2>/dev/null || true' EXIT
    wait_port
    script=$build/bench/ipoc.py
    cat >"$script" <<'EOF'
import sys
sys.path.insert(0, "client/python")
what, addr, rport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if what.startswith("redispy"):
    import redis
    r = redis.Redis(host="127.0.0.1", port=rport)
    val = b"x" * 16
    if what == "redispy-tiny":
        for _ in range(n):
            p = r.pipeline(transaction=False); p.set(b"k", val); p.get(b"k"); p.execute()
    else:
        p = r.pipeline(transaction=False)
        for _ in range(n):
            p.set(b"k", val)
        p.execute()
else:
    import numpy as np, tensord
    s = tensord.connect(addr)
    x = s.tensor(np.full((2, 2), 3, np.float32)); y = s.tensor(np.ones((2, 2), np.float32))
    if what == "pytiny":
        for _ in range(n):
            z = x * y; z.tolist()
    else:
        z = x
        for _ in range(n):
            z = z * y
        z.tolist()
EOF
    n1=${IPOC_N1:-200}
    n2=${IPOC_N2:-1200}
    ir() {
        valgrind --tool=callgrind --callgrind-out-file="$build/bench/callgrind-$what-$1.out" \
            /usr/bin/python3 "$script" "${what#ipoc-}" "$addr" "$rport" "$1" 2>&1 |
            sed -n 's/.*Collected : //p'
    }
    a=$(ir "$n1")
    b=$(ir "$n2")
    echo "$what: $(( (b - a) / (n2 - n1) )) client instructions per op" \
        "(TENSORD_PURE_PYTHON=${TENSORD_PURE_PYTHON:-unset})"
    exit 0 ;;
ipo-*)
    n=${IPO_N:-25600}
    warm=2560
    cg=$build/bench/callgrind-$what.out
    case $what in
    ipo-redis*) set -- redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no ;;
    ipo-mlp)    # --threads 1 unless IPO_THREADS: before issue 19's third round a second BLAS
                # thread's wait loop counted its own spinning
                n=${IPO_N:-20}; warm=3
                set -- "$build/tensord" --listen "$addr" --log-level warn \
                    --threads "${IPO_THREADS:-1}" ;;
    *)          set -- "$build/tensord" --listen "$addr" --log-level warn ;;
    esac
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg" "$@" \
        >"$build/bench/callgrind-$what.log" 2>&1 &
    vg=$!
    trap 'kill $vg 2>/dev/null || true' EXIT
    wait_port
    run() {
        case $what in
        ipo-pipe16)  "${TDBENCH:-$build/bench/tdbench}" pipe "$addr" 16 "$1" >/dev/null ;;
        ipo-pipe256) "${TDBENCH:-$build/bench/tdbench}" pipe "$addr" 256 "$1" >/dev/null ;;
        ipo-many | ipo-many50) "${TDBENCH:-$build/bench/tdbench}" many "$addr" 50 16 "$1" >/dev/null ;;
        ipo-pytiny)  pytiny "$1" ;;
        ipo-pypipe)  pypipe "$1" ;;
        ipo-mlp)     mlpsteps "$1" ;;
        ipo-redis16 | ipo-redis256)
            redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -P "${what#ipo-redis}" -n "$1" -t set \
                -d 16 -q >/dev/null ;;
        *) echo "unknown workload $what" >&2; exit 2 ;;
        esac
    }
    run "$warm"                                # warm-up: caches, free lists, first faults
    callgrind_control -i on "$vg" >/dev/null
    run "$n"
    callgrind_control -i off "$vg" >/dev/null
    kill -TERM "$vg"
    wait "$vg" || true
    total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$cg" | tail -1)
    echo "$what: $total instructions over $n ops: $((total / n)) per op (server, all threads)"
    # tdbench runs its own warm-up inside the counted run: pipe 20 windows, many 5 rounds.
    case $what in
    ipo-pipe16)  m=$((n + 20 * 16)) ;;
    ipo-pipe256) m=$((n + 20 * 256)) ;;
    ipo-many | ipo-many50) m=$((n / 800 * 800 + 5 * 800)) ;;
    *)           m=$n ;;
    esac
    [ "$m" = "$n" ] || echo "$what: counting tdbench's warm-up too, $m ops: $((total / m)) per op"
    callgrind_annotate --inclusive=yes "$cg" 2>/dev/null | grep -v '^$' | head -${LINES_OUT:-40}
    exit 0 ;;
esac

"$build/tensord" --listen "$addr" --log-level warn &
td=$!
trap 'kill $td 2>/dev/null || true' EXIT
wait_port
# Setup that should not be in the profile (random inputs) runs before perf attaches.
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
