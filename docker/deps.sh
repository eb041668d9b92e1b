#!/bin/sh
# The build stage's packages: the Makefile's own list (make deps), without PyTorch unless the
# Python suites will run (TESTS=test), and never podman-compose (it runs containers, on the host).
# Run from the source directory; apt lists are removed after.
set -eu
skip=podman-compose
if [ "${TESTS:-test}" != test ]; then
    skip="$skip python3-torch"
fi
make deps DEB_PKGS="$(make -s print-deb-pkgs \
    --eval "print-deb-pkgs: ; @echo \$(filter-out $skip,\$(DEB_PKGS))")"
rm -rf /var/lib/apt/lists/*
