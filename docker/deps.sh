#!/bin/sh
# The build stage's packages: the Makefile's own list (make deps), without PyTorch unless the
# Python suites will run (TESTS=test). Run from the source directory; apt lists are removed after.
set -eu
if [ "${TESTS:-test}" = test ]; then
    make deps
else
    make deps DEB_PKGS="$(make -s print-deb-pkgs \
        --eval 'print-deb-pkgs: ; @echo $(filter-out python3-torch,$(DEB_PKGS))')"
fi
rm -rf /var/lib/apt/lists/*
