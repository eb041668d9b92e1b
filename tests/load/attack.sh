#!/bin/sh
# The hostile soak: starts a daemon with representative limits on ephemeral loopback ports and a
# fresh data directory, runs `loadgen --attack` against it (four hostile sessions replaying
# issue 14's attacks, a fifth timing tiny ops), then stops the daemon with SIGTERM, which must
# exit 0 within its shutdown timeout. Fails if either failed.
# usage: attack.sh TENSORD LOADGEN SECONDS [extra daemon flags]
#   MAX_BYTES (512M), SESSION_MAX_BYTES (64M) and MAX_DISK_BYTES (256M, below what the four
#   hostile sessions may write under their default 2 x 64M each) set the limits.
set -eu
tensord=$1 loadgen=$2 seconds=$3
shift 3
max_bytes=${MAX_BYTES:-512M} session_max_bytes=${SESSION_MAX_BYTES:-64M}
max_disk_bytes=${MAX_DISK_BYTES:-256M}
dir=$(mktemp -d)
log=$dir/tensord.log
mkdir "$dir/data"
# The disk quota flags exist once the disk work has landed; without them the data directory is
# still measured, against MAX_DISK_BYTES.
extra_flags=''
if "$tensord" --help 2>&1 | grep -q -- '--max-disk-bytes'; then
    extra_flags="--max-disk-bytes $max_disk_bytes"
fi
# A request runs at most 10 s (the default is 60 s; the hostile sessions wait 30 s for a reply).
if "$tensord" --help 2>&1 | grep -q -- '--max-request-seconds'; then
    extra_flags="$extra_flags --max-request-seconds 10"
fi
# shellcheck disable=SC2086
"$tensord" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --max-bytes "$max_bytes" \
    --session-max-bytes "$session_max_bytes" --data-dir "$dir/data" --shutdown-timeout 10s \
    $extra_flags "$@" 2>"$log" &
pid=$!
port='' mport=''
for _ in $(seq 100); do
    port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    mport=$(sed -n 's/.*event=metrics_listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && [ -n "$mport" ] && break
    sleep 0.05
done
status=0
if [ -z "$port" ] || [ -z "$mport" ]; then
    echo "attack.sh: tensord did not start"; cat "$log"; kill "$pid"; exit 1
fi
echo "attack.sh: tensord pid $pid --max-bytes $max_bytes --session-max-bytes $session_max_bytes" \
     "--data-dir $dir/data $extra_flags $*"
"$loadgen" --attack --addr "127.0.0.1:$port" --metrics "127.0.0.1:$mport" --rss-pid "$pid" \
    --seconds "$seconds" --max-bytes "$max_bytes" --data-dir "$dir/data" \
    --max-disk-bytes "$max_disk_bytes" ${ATTACK_SAMPLES:+--samples "$ATTACK_SAMPLES"} ||
    status=$?
if kill -0 "$pid" 2>/dev/null; then
    t0=$(date +%s)
    kill -TERM "$pid"
    wait "$pid" || { echo "attack.sh: tensord exited with $?"; status=1; }
    echo "attack.sh: tensord stopped $(( $(date +%s) - t0 )) s after SIGTERM"
else
    wait "$pid" || true
    echo "attack.sh: tensord died during the run; its last log lines:"; tail -20 "$log"
    status=1
fi
echo "attack.sh: the daemon's warn and error log lines, by event:"
sed -n 's/.*level=\(warn\|error\) event=\([a-z_]*\).*/\1 \2/p' "$log" | sort | uniq -c | sort -rn
rm -rf "$dir"
exit $status
