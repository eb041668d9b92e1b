#!/bin/sh
# tests/valgrind/run.sh — one end-to-end run of the daemon under valgrind memcheck (issue 8).
#
# Starts $TENSORD_BIN under memcheck with a --data-dir in a temp dir, drives it with
# tests/valgrind/workload.py (the Python client: creates, ops, matmul, backward, gets, frees,
# Save/Load, resume, pipelining, error replies, hostile frames) and tensorctl -c when it is
# built, then SIGTERMs it (which snapshots the open session). A second run on the same data dir
# restores the session, checks it through a resume, and is SIGTERMed too. Each run fails unless
# the daemon exits 0 and valgrind reports zero errors and zero definitely lost bytes.
#
#   TENSORD_BIN   (default build/tensord)   TENSORCTL_BIN (default build/tensorctl)
#   PYTHON        (default /usr/bin/python3) VALGRIND_KEEP=1 keeps the temp dir
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TENSORD_BIN=${TENSORD_BIN:-$ROOT/build/tensord}
TENSORCTL_BIN=${TENSORCTL_BIN:-$ROOT/build/tensorctl}
PYTHON=${PYTHON:-/usr/bin/python3}
SUPP=$ROOT/tests/valgrind/openblas.supp

command -v valgrind >/dev/null || { echo "valgrind-e2e: valgrind is not installed" >&2; exit 2; }
[ -x "$TENSORD_BIN" ] || { echo "valgrind-e2e: no $TENSORD_BIN (make all first)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tensord-valgrind.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
    fi
    if [ "${VALGRIND_KEEP:-0}" = 1 ]; then
        echo "valgrind-e2e: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT INT TERM

fail() {
    echo "valgrind-e2e: FAIL: $*" >&2
    for f in "$TMP"/valgrind-*.log "$TMP"/tensord-*.log; do
        [ -f "$f" ] && { echo "---- $f (last 80 lines)" >&2; tail -n 80 "$f" >&2; }
    done
    exit 1
}

# start_daemon RUN: starts tensord under memcheck; sets PID and PORT.
start_daemon() {
    run=$1
    supp=
    [ -f "$SUPP" ] && supp="--suppressions=$SUPP"
    # shellcheck disable=SC2086
    valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=99 --num-callers=40 --track-origins=yes $supp \
        --log-file="$TMP/valgrind-$run.log" \
        "$TENSORD_BIN" --listen 127.0.0.1:0 --data-dir "$TMP/data" --threads 2 \
        --shutdown-timeout 120s --log-level debug 2>"$TMP/tensord-$run.log" &
    PID=$!
    PORT=
    i=0
    while [ $i -lt 1200 ]; do   # up to 120 s: memcheck starts slowly
        PORT=$(sed -n 's/.*addr=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$TMP/tensord-$run.log" |
               head -n 1)
        [ -n "$PORT" ] && break
        kill -0 "$PID" 2>/dev/null || fail "run $run: tensord exited at start"
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$PORT" ] || fail "run $run: tensord did not start listening"
    echo "valgrind-e2e: run $run: tensord under memcheck on port $PORT"
}

# stop_daemon RUN: SIGTERM, wait, then check the exit status and the memcheck summary.
stop_daemon() {
    run=$1
    kill -TERM "$PID"
    set +e
    wait "$PID"
    rc=$?
    set -e
    PID=
    log=$TMP/valgrind-$run.log
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9][0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
    lost=$(sed -n 's/.*definitely lost: \([0-9,][0-9,]*\) bytes.*/\1/p' "$log" | tail -n 1 |
           tr -d ,)
    if grep -q "All heap blocks were freed" "$log"; then
        lost=0
    fi
    echo "valgrind-e2e: run $run: exit=$rc errors=${errors:-?} definitely_lost=${lost:-?} bytes"
    [ "$rc" = 0 ] || fail "run $run: tensord exited with $rc (99: memcheck found errors)"
    [ "${errors:-x}" = 0 ] || fail "run $run: memcheck reported ${errors:-no} errors"
    [ "${lost:-x}" = 0 ] || fail "run $run: ${lost:-?} bytes definitely lost"
}

export PYTHONPATH="$ROOT/client/python${PYTHONPATH:+:$PYTHONPATH}"

start_daemon 1
"$PYTHON" "$ROOT/tests/valgrind/workload.py" 1 "$PORT" "$TMP/state" >"$TMP/workload-1.log" 2>&1 ||
    { cat "$TMP/workload-1.log" >&2; fail "run 1: the workload failed"; }
if [ -x "$TENSORCTL_BIN" ]; then
    out=$("$TENSORCTL_BIN" --addr "127.0.0.1:$PORT" -q -c \
        'x = tensor([[1, 2], [3, 4]]); print(x @ x); w = tensor([2.0], requires_grad=True); y = (w * w * 3).sum(); y.backward(); print(w.grad)' 2>&1) ||
        fail "run 1: tensorctl failed: $out"
    echo "$out" | grep -q "tensor(\[12\.\])" || fail "run 1: tensorctl printed: $out"
    set +e
    "$TENSORCTL_BIN" --addr "127.0.0.1:$PORT" -q --keep-going -c \
        'a = tensor([1, 2]); b = a @ tensor([[1.0]]); c = a // 0; print(a)' >/dev/null 2>&1
    rc=$?
    set -e
    [ "$rc" = 1 ] || fail "run 1: tensorctl with failing statements exited $rc, not 1"
fi
stop_daemon 1

start_daemon 2
"$PYTHON" "$ROOT/tests/valgrind/workload.py" 2 "$PORT" "$TMP/state" >"$TMP/workload-2.log" 2>&1 ||
    { cat "$TMP/workload-2.log" >&2; fail "run 2: the workload failed"; }
stop_daemon 2
echo "valgrind-e2e: PASS (2 runs, 0 errors, 0 bytes definitely lost)"
