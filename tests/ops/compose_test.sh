#!/bin/sh
# The three-node docker/compose.yaml, run for real (the last part of `make docker-test`, on the
# image that run built; or alone: IMAGE=tensord:test tests/ops/compose_test.sh):
#
#   1. a copy of the compose file on free loopback ports (tests/ops/compose_client.py prepare),
#      a fresh token as its secret, the image built before (no build here);
#   2. `podman-compose up -d` (or `docker compose`); every node ready (/readyz);
#   3. from the host, with the address list: three new sessions land one on each node, each
#      holding a tensor; each is resumed from a new process through another node and found on
#      its owner (MOVED followed) with its tensor; /metrics carries the node ids, shows every
#      node's two peers up and counts the MOVED replies;
#   4. a rolling restart of n1: SIGTERM (exit 0, its sessions written to its volume); meanwhile
#      n0's and n2's sessions work and n1's fails with an error naming n1; n1 starts again on
#      its volume and its session resumes, through another node, with its tensor;
#   5. `down -v` removes the containers, the network and the volumes (also on failure).
#
# Environment: ENGINE (podman, else docker), IMAGE (default tensord:test), PYTHON, COMPOSE (the
# compose command; default podman-compose for podman, `docker compose` for docker). Every engine
# call is bounded by `timeout`.
set -eu
cd "$(dirname "$0")/../.."

ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
IMAGE=${IMAGE:-tensord:test}
PYTHON=${PYTHON:-/usr/bin/python3}
if [ "$ENGINE" = podman ]; then
    COMPOSE=${COMPOSE:-podman-compose}
else
    COMPOSE=${COMPOSE:-docker compose}
fi
PROJECT=tensord-compose-test-$$
say() { echo "compose-test: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tensord-compose-test.XXXXXX")
# shellcheck disable=SC2086
compose() { TENSORD_IMAGE=$IMAGE timeout 300 $COMPOSE -p "$PROJECT" -f "$work/compose.yaml" "$@"; }
cleanup() {
    compose down -v -t 60 > "$work/down.log" 2>&1 || tail -n 20 "$work/down.log"
    # podman-compose 1.0 leaves the project's network behind.
    timeout 60 "$ENGINE" network rm "${PROJECT}_default" > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

client() { PYTHONPATH=client/python timeout 300 "$PYTHON" tests/ops/compose_client.py "$@"; }
# The container of a service in this project (podman-compose and docker compose both label it).
container() {
    timeout 60 "$ENGINE" ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}
fail() {
    for n in n0 n1 n2; do
        c=$(container $n) && [ -n "$c" ] && { say "$n's log:"; timeout 60 "$ENGINE" logs "$c" 2>&1 | tail -n 15; }
    done
    say "FAIL: $*"
    exit 1
}

head -c 32 /dev/urandom | base64 | tr -d '\n' > "$work/token"
client prepare docker/compose.yaml "$work" "$work/token" || fail "prepare"

say "$COMPOSE up (image $IMAGE, project $PROJECT)"
compose up -d --no-build > "$work/up.log" 2>&1 || { tail -n 40 "$work/up.log"; fail "compose up"; }
client wait "$work" || fail "the nodes did not become ready"
client spread "$work" || fail "placement"
client resume "$work" || fail "resume through another node"
client metrics "$work" || fail "metrics"

# A rolling restart of one node: drain and snapshot on SIGTERM, restore from its volume.
n1=$(container n1)
say "stopping n1 (SIGTERM, up to 60 s)"
# (podman without systemd complains on stderr that it cannot remove the health-check timer.)
timeout 120 "$ENGINE" stop -t 60 "$n1" > /dev/null 2> "$work/stop.err" || {
    cat "$work/stop.err"
    fail "stop n1"
}
grep -v 'unable to get systemd connection' "$work/stop.err" >&2 || true
code=$(timeout 60 "$ENGINE" inspect --format '{{.State.ExitCode}}' "$n1")
[ "$code" = 0 ] || fail "n1 exited with status $code after SIGTERM (want 0)"
# One line per event, text or JSON: ... sessions_saved ... count=1 failed=0 ...
timeout 60 "$ENGINE" logs "$n1" 2>&1 | grep -q 'sessions_saved.*count=1 failed=0' ||
    fail "n1 did not log its session written to the volume"
say "ok: n1 exited 0 and saved its session"
client lost "$work" n1 || fail "with n1 down"
timeout 120 "$ENGINE" start "$n1" > /dev/null 2> "$work/start.err" || {
    cat "$work/start.err"
    fail "start n1"
}
grep -v 'unable to get systemd connection' "$work/start.err" >&2 || true
client wait "$work" || fail "n1 did not come back"
client resume "$work" || fail "resume after n1's restart"
say "all checks passed"
