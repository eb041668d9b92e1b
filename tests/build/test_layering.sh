#!/bin/sh
# tests/build/test_layering.sh [BUILD] — the build refuses what a layer must not know
# (docs/DESIGN.md: Layers; Makefile: Layers).
#
# Works on a scratch copy of the tree (sources, and BUILD's objects so that nothing else needs
# rebuilding), adds one probe file at a time, and builds it through the Makefile's own rules:
#   - plain `make`, with a core file that includes <uv.h>: fails, with the poison header's message;
#   - a base file including protobuf-c, a core file including "session/session.h" or
#     "../session/session.h", a net file including the generated protobuf header, an rpc file
#     including <uv.h>, a base file including <cblas.h>: each object fails to build;
#   - the legitimate users still build: net with <uv.h>, rpc with protobuf-c and the generated
#     header, core with <cblas.h>, main.c-level code with all of server/.
# Prints one line per case; exits non-zero if any case went the wrong way. Takes a few seconds.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd -P)
build=${1:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/td_layering.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

tar -C "$root" --exclude=./.git --exclude='./build*' --exclude=./tests/fuzz/corpus \
    --exclude=./tests/fuzz/regress --exclude=./tests/fuzz/seeds --exclude=./tests/python \
    -cf - . | tar -C "$tmp" -xf - || exit 1
mkdir -p "$tmp/build"
for d in gen obj lib; do
    [ -d "$build/$d" ] && cp -a "$build/$d" "$tmp/build/"
done

fail=0
# probe FILE TEXT: writes a probe source file into the scratch tree.
probe() {
    mkdir -p "$tmp/$(dirname "$1")"
    printf '/* %s — a layering probe (tests/build/test_layering.sh). */\n%s\nint td_probe_%s;\n' \
        "$1" "$2" "$(basename "$1" .c)" > "$tmp/$1"
}
# expect ok|fail MESSAGE FILE TEXT: builds FILE's object alone; on failure, the output must
# hold MESSAGE.
expect() {
    want=$1 msg=$2 file=$3 text=$4
    probe "$file" "$text"
    text=$(printf '%s' "$text" | tr '\n' ' ')
    obj=build/obj/${file%.c}.o
    if make -C "$tmp" --no-print-directory WERROR=1 "$obj" > "$tmp/out" 2>&1; then
        got=ok
    else
        got=fail
    fi
    if [ "$got" = "$want" ] && { [ "$want" = ok ] || grep -q -- "$msg" "$tmp/out"; }; then
        echo "ok: $file with $text: $got"
    else
        echo "FAILED: $file with $text: expected $want${msg:+ ($msg)}, got $got:"
        sed 's/^/    /' "$tmp/out"
        fail=1
    fi
    rm -f "$tmp/$file" "$tmp/$obj" "$tmp/${obj%.o}.d"
}

# The issue's "Done when": plain make fails when a core file includes uv.h.
probe server/core/zz_probe_uv.c '#include <uv.h>'
if make -C "$tmp" --no-print-directory > "$tmp/out" 2>&1; then
    echo "FAILED: plain make succeeded with server/core/zz_probe_uv.c including <uv.h>"
    fail=1
elif ! grep -q 'layering: this layer must not include uv.h' "$tmp/out"; then
    echo "FAILED: plain make failed, but not on the layering of uv.h:"
    sed 's/^/    /' "$tmp/out"
    fail=1
else
    echo "ok: plain make fails with server/core/zz_probe_uv.c including <uv.h>"
fi
rm -f "$tmp/server/core/zz_probe_uv.c"

uv='must not include uv.h'
pb='must not include protobuf-c'
gen='must not include tensord.pb-c.h'
blas='must not include cblas.h'
up='includes server/'
expect fail "$pb"   server/base/zz_probe.c     '#include <protobuf-c/protobuf-c.h>'
expect fail "$blas" server/base/zz_probe.c     '#include <cblas.h>'
expect fail "$uv"   server/core/zz_probe.c     '#include "uv.h"'
expect fail "$up"   server/core/zz_probe.c     '#include "session/session.h"'
expect fail "$up"   server/core/zz_probe.c     '#include "../session/session.h"'
expect fail "$up"   server/base/zz_probe.c     '#include "core/dtype.h"'
expect fail "$gen"  server/session/zz_probe.c  '#include "proto/tensord.pb-c.h"'
expect fail "$uv"   server/session/zz_probe.c  '#include "net/net.h"'
expect fail "$uv"   server/rpc/zz_probe.c      '#include <uv.h>'
expect fail "$gen"  server/net/zz_probe.c      '#include "proto/tensord.pb-c.h"'
expect fail "$up"   server/net/zz_probe.c      '#include "rpc/rpc.h"'
expect fail "$pb"   server/zz_probe.c          '#include <protobuf-c/protobuf-c.h>'
expect fail "$uv"   client/c/zz_probe.c        '#include <uv.h>'
expect fail "$pb"   client/cli/zz_probe.c      '#include <protobuf-c/protobuf-c.h>'
expect fail "$uv"   tests/core/zz_probe.c      '#include <uv.h>'
expect fail "$up"   tests/core/zz_probe.c      '#include "session/session.h"'
expect ok   ""      server/core/zz_probe.c     '#include <cblas.h>
#include "base/err.h"
#include "../base/alloc.h"'
expect ok   ""      server/session/zz_probe.c  '#include "core/tensor.h"'
expect ok   ""      server/net/zz_probe.c      '#include <uv.h>
#include "net/net.h"'
expect ok   ""      server/rpc/zz_probe.c      '#include <protobuf-c/protobuf-c.h>
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"'
expect ok   ""      server/zz_probe.c          '#include <uv.h>
#include <cblas.h>
#include "net/net.h"
#include "rpc/rpc.h"'
expect ok   ""      client/c/zz_probe.c        '#include "proto/tensord.pb-c.h"
#include "tensord_frame.h"'
exit $fail
