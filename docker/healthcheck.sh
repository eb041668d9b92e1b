#!/bin/bash
# The container's HEALTHCHECK: GET /healthz on the metrics listener (TENSORD_METRICS_LISTEN) when
# this tensord has one, else a TCP connect to the wire port. Bash's /dev/tcp keeps curl out of the
# image. Exit 0 healthy, 1 unhealthy.
set -u
local_host() {   # a wildcard listen address is reached on loopback
    case "$1" in
        0.0.0.0 | "" | "[::]") echo 127.0.0.1 ;;
        *) echo "$1" | tr -d '[]' ;;
    esac
}
metrics=${TENSORD_METRICS_LISTEN:-}
if [ -n "$metrics" ] && /usr/local/bin/tensord --help 2>/dev/null | grep -q -- '--metrics-listen'; then
    host=$(local_host "${metrics%:*}")
    port=${metrics##*:}
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
    read -r -t 4 status <&3 || exit 1
    case "$status" in
        "HTTP/1."?" 200"*) exit 0 ;;
        *) echo "healthz: $status"; exit 1 ;;
    esac
fi
listen=${TENSORD_HEALTHCHECK_ADDR:-127.0.0.1:7878}
exec 3<>"/dev/tcp/$(local_host "${listen%:*}")/${listen##*:}" || exit 1
exit 0
