#!/bin/sh
# tools/layers/check-deps.sh DEPFILE DIR... — the upward-include check, run by make after each
# compile of a layered object (Makefile, "Layers").
#
# The poison headers beside this script stop a layer from including a library's header; this
# stops it from including a header of a layer above it (core including "session/session.h", or
# "../net/net.h", which a relative path would let past any include path). It reads the
# dependency file the compiler wrote for the object (-MMD: every non-system header it actually
# opened, transitive ones included) and fails, naming the header, if one inside this tree lies
# outside the DIRs the object's layer may see. Headers outside the tree (system, pkg-config
# directories) are the poison headers' business.
set -eu
dep=$1
shift
[ -f "$dep" ] || { echo "layering: no dependency file $dep" >&2; exit 1; }
root=$(pwd -P)
# The first rule of the file is "obj: source headers..." over continuation lines.
files=$(awk '{ c = sub(/\\$/, ""); printf "%s ", $0 } !c { exit }' "$dep" | cut -d: -f2-)
[ -n "$files" ] || exit 0
# shellcheck disable=SC2086  # the list is whitespace-separated paths, as make writes them
realpath -m --relative-to="$root" $files | {
    src=
    bad=0
    while IFS= read -r f; do
        [ -n "$src" ] || { src=$f; continue; }   # the source file itself
        case $f in /* | ../*) continue ;; esac   # outside the tree
        ok=0
        for d in "$@"; do
            case $f in "$d"/*) ok=1; break ;; esac
        done
        if [ $ok = 0 ]; then
            echo "layering: $src includes $f, outside its layer ($*; docs/DESIGN.md: Layers)" >&2
            bad=1
        fi
    done
    exit $bad
}
