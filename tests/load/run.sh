#!/bin/sh
# Starts a daemon on ephemeral loopback ports (the protocol and /metrics), runs the load generator
# against it with the daemon's RSS and allocated bytes watched, stops the daemon (which must exit
# 0), and fails if either failed.
# usage: run.sh TENSORD LOADGEN [loadgen flags]
set -eu
tensord=$1 loadgen=$2
shift 2
log=$(mktemp)
"$tensord" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --max-connections 2000 2>"$log" &
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
    echo "run.sh: tensord did not start"; cat "$log"; kill "$pid"; exit 1
fi
"$loadgen" --addr "127.0.0.1:$port" --metrics "127.0.0.1:$mport" --rss-pid "$pid" "$@" ||
    status=$?
kill -TERM "$pid"
wait "$pid" || { echo "run.sh: tensord exited with $?"; status=1; }
rm -f "$log"
exit $status
