#!/bin/sh
# `make docker-test`: build the image from docker/Dockerfile (its build stage runs the test
# suites), run it as a user would, and talk to it with the Python client.
#
#   1. the engine: $ENGINE, else podman, else docker. With podman, the base images come from
#      docker/base-image.sh (debootstrap from the machine's Debian mirror + podman import; made
#      once, then reused) unless debian:12 and debian:12-slim already exist locally.
#   2. build the image (TESTS=test by default: every suite runs in the build stage).
#   3. run it with a token file mounted as the secret, the wire and metrics ports published on
#      127.0.0.1 only, and a named volume on the data directory.
#   4. tests/ops/docker_client.py: wrong token refused; a computation and a gradient checked
#      against hand-derived values; /healthz and /metrics; a session
#      and a saved file left on the server.
#   5. the image's HEALTHCHECK passes; `stop` sends SIGTERM and the container exits 0, having
#      written the session to the volume.
#   6. a second container on the same volume: the session resumes by its token, as it was, and
#      the saved file loads.
#   7. tests/ops/compose_test.sh: the three-node docker/compose.yaml on this image, under
#      podman-compose (or docker compose), driven from the host with an address list.
#
# Environment: ENGINE, IMAGE (default tensord:test), TESTS (build stage: test, test-c, none),
# PYTHON (default /usr/bin/python3), BUILD_FLAGS / RUN_FLAGS (extra engine flags).
set -eu
cd "$(dirname "$0")/../.."

ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
IMAGE=${IMAGE:-tensord:test}
TESTS=${TESTS:-test}
PYTHON=${PYTHON:-/usr/bin/python3}
NAME=tensord-docker-test-$$
VOLUME=$NAME-data
BUILD_FLAGS=${BUILD_FLAGS:-}
RUN_FLAGS=${RUN_FLAGS:-}
say() { echo "docker-test: $*"; }

base_args=
own_conf=
if [ "$ENGINE" = podman ]; then
    if ! podman image inspect debian:12 >/dev/null 2>&1 ||
       ! podman image inspect debian:12-slim >/dev/null 2>&1; then
        docker/base-image.sh
    fi
    # Local images only: no registry is asked. --format docker keeps the HEALTHCHECK.
    base_args="--pull=never --format docker --ignorefile docker/Dockerfile.dockerignore"
    # Debian's podman runs crun when crun and runc are both installed (its dependency is
    # "crun | runc"), and crun 1.8 refuses a host with hybrid cgroups ("cgroups in hybrid mode
    # not supported, drop all controllers from cgroupv2"), where runc runs: ask for runc, for
    # this script's podman and podman-compose, unless the caller chose a configuration.
    if [ -z "${CONTAINERS_CONF:-}" ] && command -v runc >/dev/null 2>&1; then
        CONTAINERS_CONF=$(mktemp "${TMPDIR:-/tmp}/tensord-containers.XXXXXX.conf")
        printf '[engine]\nruntime = "runc"\n' > "$CONTAINERS_CONF"
        export CONTAINERS_CONF
        own_conf=$CONTAINERS_CONF
    fi
    # podman as root asks runc for open-file and process limits above what a sandbox may allow
    # ("error setting rlimit ... operation not permitted"): ask for modest ones.
    RUN_FLAGS="--ulimit nofile=8192:8192 --ulimit nproc=8192:8192 $RUN_FLAGS"
    BUILD_FLAGS="--ulimit nofile=8192:8192 --ulimit nproc=8192:8192 $BUILD_FLAGS"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tensord-docker-test.XXXXXX")
cleanup() {
    "$ENGINE" rm -f "$NAME" "$NAME-2" >/dev/null 2>&1 || true
    "$ENGINE" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    rm -rf "$work"
    [ -z "${own_conf:-}" ] || rm -f "$own_conf"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say "building $IMAGE with $ENGINE (build stage runs: $([ "$TESTS" = none ] && echo no tests || echo "make $TESTS"))"
t0=$(date +%s)
# shellcheck disable=SC2086
"$ENGINE" build $base_args $BUILD_FLAGS --build-arg TESTS="$TESTS" \
    -f docker/Dockerfile -t "$IMAGE" . > "$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log"
    say "FAIL: image build (full log kept in $work/build.log)"
    trap - EXIT
    exit 1
}
say "image built in $(( $(date +%s) - t0 ))s; $("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE") bytes"
grep -E '[0-9]+ passed|PASSED  \] [0-9]+ test' "$work/build.log" || true

# The token: 32 random bytes, readable by the container's user (uid 10001) through the mount.
head -c 32 /dev/urandom | base64 | tr -d '\n' > "$work/token"
chmod 0644 "$work/token"

# Shows what the engine printed on stderr, less podman's complaint, where systemd is not running,
# that it cannot schedule the periodic health check (`podman healthcheck run` below runs it).
quiet() { grep -v 'unable to get systemd connection' "$1" >&2 || true; }

# Starts the container ($1: its name) on the shared volume; sets WIRE and METRICS.
start() {
    # shellcheck disable=SC2086
    "$ENGINE" run -d --name "$1" $RUN_FLAGS \
        -p 127.0.0.1::7878 -p 127.0.0.1::9090 \
        -v "$work/token:/run/secrets/tensord_token:ro" \
        -v "$VOLUME:/var/lib/tensord" \
        "$IMAGE" > /dev/null 2> "$work/run.err" || { cat "$work/run.err"; exit 1; }
    quiet "$work/run.err"
    WIRE=127.0.0.1:$("$ENGINE" port "$1" 7878/tcp | head -n 1 | sed 's/.*://')
    METRICS=127.0.0.1:$("$ENGINE" port "$1" 9090/tcp | head -n 1 | sed 's/.*://')
    # Ready once the daemon has logged that it started (or give up after 30 s).
    i=0
    until "$ENGINE" logs "$1" 2>&1 | grep -q 'event=started'; do
        i=$((i + 1))
        if [ $i -gt 300 ] || [ "$("$ENGINE" inspect --format '{{.State.Running}}' "$1")" != true ]
        then
            "$ENGINE" logs "$1" 2>&1 | tail -n 20
            say "FAIL: the daemon did not start"
            exit 1
        fi
        sleep 0.1
    done
    say "$1: wire $WIRE${METRICS:+, metrics $METRICS}"
}

# Stops the container ($1) with SIGTERM; it must exit 0 after logging the shutdown.
stop() {
    say "stopping $1 (SIGTERM)"
    "$ENGINE" stop -t 60 "$1" > /dev/null 2> "$work/stop.err" || { cat "$work/stop.err"; exit 1; }
    quiet "$work/stop.err"
    code=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$1")
    "$ENGINE" logs "$1" 2>&1 | tail -n 4
    if [ "$code" != 0 ]; then
        say "FAIL: exit status $code after SIGTERM (want 0)"
        exit 1
    fi
    "$ENGINE" logs "$1" 2>&1 | grep -Eq 'event=shutdown( [a-z_]+=[^ ]+)* signal=15' || {
        say "FAIL: the daemon did not log a SIGTERM shutdown"
        exit 1
    }
    say "ok: exit status 0 after SIGTERM"
}

client() { PYTHONPATH=client/python "$PYTHON" tests/ops/docker_client.py "$@"; }

start "$NAME"
client check "$WIRE" "$work/token" "$METRICS"
client persist-write "$WIRE" "$work/token" "$work/state"

if [ "$ENGINE" = podman ]; then
    podman healthcheck run "$NAME" && say "healthcheck: healthy" || {
        say "FAIL: healthcheck"
        exit 1
    }
else
    "$ENGINE" exec "$NAME" /usr/local/bin/tensord-healthcheck && say "healthcheck: healthy" || {
        say "FAIL: healthcheck"
        exit 1
    }
fi
stop "$NAME"

"$ENGINE" logs "$NAME" 2>&1 | grep -q 'event=sessions_saved count=1 failed=0' || {
    say "FAIL: the session was not written to the volume"
    exit 1
}
# A new container on the same volume finds the session and the saved file.
start "$NAME-2"
client persist-read "$WIRE" "$work/token" "$work/state"
stop "$NAME-2"
say "single container: all checks passed"

# The three-node compose file on the same image (built once, above).
ENGINE=$ENGINE IMAGE=$IMAGE PYTHON=$PYTHON tests/ops/compose_test.sh
say "all checks passed"
