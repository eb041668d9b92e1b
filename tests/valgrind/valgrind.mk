# make valgrind-e2e: one end-to-end run of the daemon under valgrind memcheck (issue 8).
# Included at the end of the top-level Makefile, after every variable.
#
# tests/valgrind/run.sh starts build/tensord under memcheck (--leak-check=full,
# --errors-for-leak-kinds=definite, --error-exitcode=99) with a --data-dir in a temp dir, drives
# it with the Python client (tests/valgrind/workload.py) and tensorctl, SIGTERMs it, restarts it
# on the same data dir to exercise the session restore, and fails unless both runs exit 0 with
# zero memcheck errors and zero bytes definitely lost. tests/valgrind/openblas.supp, when present,
# holds suppressions for OpenBLAS internals (never for tensord frames).

.PHONY: valgrind-e2e

DEB_PKGS += valgrind

valgrind-e2e: all $(PY_GEN)
	$(Q)TENSORD_BIN=$(abspath $(TENSORD)) TENSORCTL_BIN=$(abspath $(TENSORCTL)) \
	    PYTHON=$(PYTHON) sh tests/valgrind/run.sh
