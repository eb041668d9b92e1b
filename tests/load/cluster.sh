#!/bin/sh
# Starts NODES daemons (default 3, ids n0..) on ephemeral loopback ports, runs the load generator
# against the address list of all of them (libtensord spreads the sessions round-robin and each
# shared session is resumed at its node), stops the daemons (each must exit 0), and fails if
# anything failed. No memory checks here: run.sh watches one daemon's memory.
# usage: cluster.sh TENSORD LOADGEN [loadgen flags]
set -eu
tensord=$1 loadgen=$2
shift 2
nodes=${NODES:-3}
dir=$(mktemp -d)
pids='' list=''
i=0
while [ "$i" -lt "$nodes" ]; do
    "$tensord" --listen 127.0.0.1:0 --node-id "n$i" --max-connections 2000 2>"$dir/n$i.log" &
    pids="$pids $!"
    port=''
    for _ in $(seq 100); do
        port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/n$i.log")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "cluster.sh: n$i did not start"; cat "$dir/n$i.log"; kill $pids; exit 1
    fi
    list="${list:+$list,}127.0.0.1:$port"
    i=$((i + 1))
done
status=0
"$loadgen" --addr "$list" "$@" || status=$?
for pid in $pids; do
    kill -TERM "$pid"
    wait "$pid" || { echo "cluster.sh: tensord $pid exited with $?"; status=1; }
done
rm -rf "$dir"
exit $status
