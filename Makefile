# tensord — one non-recursive Makefile.
#
#   make            build the daemon, libtensord (static, shared, pkg-config file)
#   make run        install missing packages, build, run the daemon on 127.0.0.1:7878
#   make test       install missing packages, build, run every test suite
#   make check-asan all C tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make install    PREFIX=/usr/local DESTDIR=
#   make format     rewrite the C sources with clang-format (.clang-format); format-check lists
#                   the files it would change and fails (CI runs it)
#   V=1 shows commands; WERROR=1 (as in CI) fails on warnings; RELEASE=1 builds without the debug
#   checks (assert, TD_ASSERT: -DNDEBUG), which every other build, tests included, keeps on.
#
# CC and CFLAGS belong to whoever runs make; the flags tensord needs live in TD_CFLAGS so that
# `make CFLAGS=-O0` cannot drop them.

CC      ?= cc
CFLAGS  ?= -O2 -g
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
VERSION := 0.1.0

PKGS := libuv libprotobuf-c openblas cmocka
TD_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes -Wno-unused-parameter -fPIC -MMD -MP \
             -DTD_VERSION='"$(VERSION)"'
ifeq ($(WERROR),1)
TD_CFLAGS += -Werror
endif
ifeq ($(SAN),1)
TD_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TD_LDFLAGS += -fsanitize=address,undefined
endif
# Debug checks (assert(), and TD_ASSERT from server/base/assert.h) are on in every build, the
# tests' included; RELEASE=1 compiles them out.
ifeq ($(RELEASE),1)
TD_CFLAGS += -DNDEBUG
else
TD_CFLAGS += -DTD_DEBUG=1
endif
# pkg-config is asked only once the packages exist (make deps installs them first).
pkg_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pkg_libs   = $(shell pkg-config --libs $(1) 2>/dev/null)
PKG_CFLAGS = $(call pkg_cflags,$(PKGS))
PKG_LIBS   = $(call pkg_libs,$(PKGS))
PROTOBUF_C_LIBS = $(call pkg_libs,libprotobuf-c)  # libtensord's one need
UV_CFLAGS   = $(call pkg_cflags,libuv)
UV_LIBS     = $(call pkg_libs,libuv)
PROTOBUF_C_CFLAGS = $(call pkg_cflags,libprotobuf-c)
BLAS_CFLAGS = $(call pkg_cflags,openblas)
BLAS_LIBS   = $(call pkg_libs,openblas)
CMOCKA_LIBS = $(call pkg_libs,cmocka)

ifneq ($(V),1)
Q := @
endif

# ---- layers ----
# Each object compiles with the include paths of its layer (docs/DESIGN.md: Layers), so the
# compiler refuses what the layer must not know:
#  - a library's header: uv.h, protobuf-c and the generated tensord.pb-c.h sit on the system
#    include path, so the layers that must not see them get a directory of same-named headers
#    that #error (tools/layers/no-*) first on their path;
#  - a header of a layer above: after each compile, tools/layers/check-deps.sh reads the
#    dependency file the compiler wrote and fails on any header of this tree outside the layer's
#    directories (relative includes such as "../session/session.h" included).
# Tests compile as their layer (tests/core as core) and link only their layer and the ones
# below, with only those libraries: a core test does not link libuv or protobuf-c.
# Objects outside the layers (tests/lib, tests/fuzz, tests/load, bench) see everything.
NO_UV   := -Itools/layers/no-libuv
NO_PB   := -Itools/layers/no-protobuf
NO_BLAS := -Itools/layers/no-blas
LAYER_CFLAGS_base    = $(NO_UV) $(NO_PB) $(NO_BLAS) -Iserver
LAYER_CFLAGS_core    = $(NO_UV) $(NO_PB) -Iserver $(BLAS_CFLAGS)
LAYER_CFLAGS_session = $(NO_UV) $(NO_PB) $(NO_BLAS) -Iserver
LAYER_CFLAGS_rpc     = $(NO_UV) $(NO_BLAS) -Iserver -Iproto -I$(BUILD)/gen $(PROTOBUF_C_CFLAGS)
LAYER_CFLAGS_net     = $(NO_PB) $(NO_BLAS) -Iserver -Iproto $(UV_CFLAGS)
LAYER_CFLAGS_main    = $(NO_PB) -Iserver -Iproto $(UV_CFLAGS) $(BLAS_CFLAGS)
LAYER_CFLAGS_client  = $(NO_UV) $(NO_BLAS) -Iclient/c -Iproto -I$(BUILD)/gen $(PROTOBUF_C_CFLAGS)
LAYER_CFLAGS_cli     = $(NO_UV) $(NO_PB) $(NO_BLAS) -Iclient/c -Iserver -I$(BUILD)/gen
LAYER_CFLAGS_        = -Iserver -Iproto -I$(BUILD)/gen -Iclient/c -Itests/lib $(PKG_CFLAGS)
# The directories of this tree whose headers each layer may include.
LAYER_DIRS_base    = server/base
LAYER_DIRS_core    = server/core $(LAYER_DIRS_base)
LAYER_DIRS_session = server/session $(LAYER_DIRS_core)
LAYER_DIRS_rpc     = server/rpc proto $(BUILD)/gen $(LAYER_DIRS_session)
LAYER_DIRS_net     = server/net proto $(LAYER_DIRS_base)
LAYER_DIRS_main    = server proto $(BUILD)/gen
LAYER_DIRS_client  = client/c proto $(BUILD)/gen
LAYER_DIRS_cli     = client/cli client/c server/base $(BUILD)/gen
# The libraries a layer's code (and so its tests) may link.
LAYER_LIBS_base    = -lm -lpthread
LAYER_LIBS_core    = $(BLAS_LIBS) -lm -lpthread
LAYER_LIBS_session = $(LAYER_LIBS_core)
LAYER_LIBS_rpc     = $(PROTOBUF_C_LIBS) $(LAYER_LIBS_session)
LAYER_LIBS_net     = $(UV_LIBS) -lm -lpthread
LAYER_LIBS_client  = $(PROTOBUF_C_LIBS) -lm -lpthread
LAYER_LIBS_        = $(PKG_LIBS) -lm -lpthread

LAYER :=
$(BUILD)/obj/server/%.o:         LAYER := main
$(BUILD)/obj/server/base/%.o:    LAYER := base
$(BUILD)/obj/server/core/%.o:    LAYER := core
$(BUILD)/obj/server/session/%.o: LAYER := session
$(BUILD)/obj/server/rpc/%.o:     LAYER := rpc
$(BUILD)/obj/server/net/%.o:     LAYER := net
$(BUILD)/obj/client/c/%.o:       LAYER := client
$(BUILD)/obj/client/cli/%.o:     LAYER := cli
$(BUILD)/obj/tests/base/%.o:     LAYER := base
$(BUILD)/obj/tests/core/%.o:     LAYER := core
$(BUILD)/obj/tests/session/%.o:  LAYER := session
$(BUILD)/obj/tests/rpc/%.o:      LAYER := rpc
$(BUILD)/obj/tests/net/%.o:      LAYER := net
$(BUILD)/obj/tests/client/%.o:   LAYER := client
$(BUILD)/obj/tests/cli/%.o:      LAYER := cli
# Tests also see tests/ (tests/lib's fixtures, tests/core/helpers.h) and cmocka.
$(BUILD)/obj/tests/%.o: TEST_CFLAGS := -Itests/lib $(call pkg_cflags,cmocka)
$(BUILD)/obj/tests/%.o: TEST_DIRS := tests

ALL_CFLAGS = $(LAYER_CFLAGS_$(LAYER)) $(TEST_CFLAGS) $(TD_CFLAGS) $(CFLAGS)
# Run after each compile of a layered object; a layering failure removes the object.
CHECK_LAYER = $(if $(LAYER),tools/layers/check-deps.sh $(@:.o=.d) \
                  $(LAYER_DIRS_$(LAYER)) $(TEST_DIRS) || { rm -f $@; exit 1; })

# ---- sources ----
GEN_C   := $(BUILD)/gen/proto/tensord.pb-c.c
GEN_H   := $(BUILD)/gen/proto/tensord.pb-c.h
BASE_SRC    := $(wildcard server/base/*.c)
CORE_SRC    := $(wildcard server/core/*.c server/core/ops/*.c)
SESSION_SRC := $(wildcard server/session/*.c)
RPC_SRC     := $(wildcard server/rpc/*.c)
NET_SRC     := $(wildcard server/net/*.c)
CLIENT_SRC  := $(wildcard client/c/*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_BASE    := $(BUILD)/lib/libtd_base.a
LIB_CORE    := $(BUILD)/lib/libtd_core.a
LIB_SESSION := $(BUILD)/lib/libtd_session.a
LIB_RPC     := $(BUILD)/lib/libtd_rpc.a
LIB_NET     := $(BUILD)/lib/libtd_net.a
LIB_TESTLIB := $(BUILD)/lib/libtd_testlib.a
TENSORD     := $(BUILD)/tensord
LIBTENSORD_A  := $(BUILD)/libtensord.a
LIBTENSORD_SO := $(BUILD)/libtensord.so
TENSORD_PC    := $(BUILD)/tensord.pc

.PHONY: all tensord libtensord python test test-c test-py test-build check-asan deps run install \
        clean format format-check
.DEFAULT_GOAL := all

all: tensord libtensord python

tensord: $(TENSORD)
libtensord: $(LIBTENSORD_A) $(LIBTENSORD_SO) $(TENSORD_PC)

# ---- generated protobuf code ----
$(GEN_C) $(GEN_H) &: proto/tensord.proto
	@mkdir -p $(BUILD)/gen
	$(Q)protoc-c --c_out=$(BUILD)/gen proto/tensord.proto

# Everything may include the generated header (rpc and the client do), so it exists first.
# Kernels: let the vectoriser add runtime alias checks (in-place ops write where they read, so
# `restrict` would be wrong); at -O2 gcc otherwise leaves these loops scalar.
# (gcc's flag; clang, used for the fuzz targets, vectorises with checks already.)
VECT_FLAGS := $(shell $(CC) -fvect-cost-model=dynamic -E -x c /dev/null >/dev/null 2>&1 \
                && echo -fvect-cost-model=dynamic)
$(BUILD)/obj/server/core/%.o: ALL_CFLAGS += $(VECT_FLAGS)

$(BUILD)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@
	$(Q)$(CHECK_LAYER)

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LAYER_CFLAGS_rpc) $(TD_CFLAGS) $(CFLAGS) -c $< -o $@

GEN_O := $(BUILD)/obj/gen/proto/tensord.pb-c.o

define archive
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^
endef

$(LIB_BASE): $(call obj,$(BASE_SRC));       $(archive)
$(LIB_CORE): $(call obj,$(CORE_SRC));       $(archive)
$(LIB_SESSION): $(call obj,$(SESSION_SRC)); $(archive)
$(LIB_RPC): $(call obj,$(RPC_SRC)) $(GEN_O); $(archive)
$(LIB_NET): $(call obj,$(NET_SRC));         $(archive)
$(LIB_TESTLIB): $(call obj,$(TESTLIB_SRC)); $(archive)

SERVER_LIBS := $(LIB_NET) $(LIB_RPC) $(LIB_SESSION) $(LIB_CORE) $(LIB_BASE)

$(TENSORD): $(call obj,$(wildcard server/*.c)) $(SERVER_LIBS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(UV_LIBS) $(PROTOBUF_C_LIBS) \
	    $(BLAS_LIBS) -lm -lpthread

# ---- libtensord ----
LIBTENSORD_O := $(call obj,$(CLIENT_SRC)) $(GEN_O)
$(LIBTENSORD_A): $(LIBTENSORD_O); $(archive)
$(LIBTENSORD_SO): $(LIBTENSORD_O)
	$(Q)$(CC) -shared $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -Wl,-soname,libtensord.so.0 -o $@ $^ \
	    $(PROTOBUF_C_LIBS)
$(TENSORD_PC): client/c/tensord.pc.in
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# ---- tests ----
# tests/<layer>/test_*.c each become one cmocka binary, linked with that layer and those below.
TESTS_BASE    := $(wildcard tests/base/test_*.c)
TESTS_CORE    := $(wildcard tests/core/test_*.c)
TESTS_SESSION := $(wildcard tests/session/test_*.c)
TESTS_RPC     := $(wildcard tests/rpc/test_*.c)
TESTS_NET     := $(wildcard tests/net/test_*.c)
TESTS_CLIENT  := $(wildcard tests/client/test_*.c)
TESTS_BUILD   := $(wildcard tests/build/test_*.c)
tbin = $(patsubst %.c,$(BUILD)/%,$(1))
TEST_BINS := $(call tbin,$(TESTS_BASE) $(TESTS_CORE) $(TESTS_SESSION) $(TESTS_RPC) \
                         $(TESTS_NET) $(TESTS_CLIENT) $(TESTS_BUILD))

LINK_TEST = @mkdir -p $(dir $@); $(if $(Q),echo "  LD      $@";) \
            $(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) \
            $(LAYER_LIBS_$(TEST_LAYER))
# (Not LAYER: a target's variables reach the prerequisites it builds, and objects have theirs.)
$(call tbin,$(TESTS_BASE)):    TEST_LAYER := base
$(call tbin,$(TESTS_CORE)):    TEST_LAYER := core
$(call tbin,$(TESTS_SESSION)): TEST_LAYER := session
$(call tbin,$(TESTS_RPC)):     TEST_LAYER := rpc
$(call tbin,$(TESTS_NET)):     TEST_LAYER := net
$(call tbin,$(TESTS_CLIENT)):  TEST_LAYER := client

$(call tbin,$(TESTS_BASE)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_CORE)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIB_CORE) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_SESSION)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIB_SESSION) $(LIB_CORE) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_RPC)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIB_RPC) $(LIB_SESSION) $(LIB_CORE) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_NET)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIB_NET) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_CLIENT)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB_TESTLIB) $(LIBTENSORD_A) $(LIB_BASE) | $(TENSORD)
	$(Q)$(LINK_TEST)
# tests/build: the build's own checks (mirrored numbers, debug checks on); see test-build.
$(call tbin,$(TESTS_BUILD)): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(GEN_O)
	$(Q)$(LINK_TEST)
$(call tbin,$(TESTS_BUILD)): TEST_LAYER := client

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory test-c
	$(Q)$(MAKE) --no-print-directory test-build
	$(Q)$(MAKE) --no-print-directory test-py
	$(Q)$(MAKE) --no-print-directory test-cli
	$(Q)$(MAKE) --no-print-directory test-ops
	$(Q)$(MAKE) --no-print-directory test-fuzz-regress

# Every test binary runs under a time limit, so a hang fails the run instead of stalling it:
# TERM after TEST_SECONDS, KILL 10 s later (timeout's exit status 124 or 137 reads as FAILED).
# Python tests have theirs from pytest-timeout (tests/python/pytest.ini).
TEST_SECONDS ?= 600
TEST_TIMEOUT = timeout -k 10 $(TEST_SECONDS)

# Each binary runs on its own; the run fails if any fails, after all have run.
test-c: $(TEST_BINS) $(TENSORD)
	@fail=0; for t in $(TEST_BINS); do \
	    echo "== $$t"; TENSORD_BIN=$(abspath $(TENSORD)) $(TEST_TIMEOUT) $$t \
	        || { echo "FAILED: $$t"; fail=1; }; \
	done; exit $$fail

# The layering: probe files that cross a layer must fail to build, in a scratch copy of the tree
# (tests/build/test_layering.sh; seconds, with this build's objects copied in).
test-build: $(SERVER_LIBS) $(LIBTENSORD_A)
	$(Q)$(TEST_TIMEOUT) tests/build/test_layering.sh $(BUILD)

# The Python suites speak the wire protocol through a module generated here, and compare with
# PyTorch itself (Debian's python3-torch), which is our specification.
# The generated module is built into the package (client/python/tensord), never committed.
PY_GEN := client/python/tensord/tensord_pb2.py
$(PY_GEN): proto/tensord.proto
	$(Q)protoc --python_out=client/python/tensord -Iproto proto/tensord.proto

# The op table (tools/gen_py_ops.py, from ops.def): built wherever the protobuf module is.
PY_OPS := client/python/tensord/_ops.py
$(PY_OPS): server/core/ops.def tools/opsdef.py tools/gen_py_ops.py
	$(Q)$(PYTHON) tools/gen_py_ops.py $@
$(PY_GEN): | $(PY_OPS)
# The clients' request table (which requests may be re-sent), from server/rpc/requests.def.
PY_REQ := client/python/tensord/_requests.py
$(PY_REQ): server/rpc/requests.def tools/gen_requests.py
	$(Q)$(PYTHON) tools/gen_requests.py > $@.tmp && mv $@.tmp $@
$(PY_GEN): | $(PY_REQ)

python: $(PY_GEN)

# The Python client's fast path, the extension module tensord._fast (client/python/tensord/
# _fast.c): built into the package directory, so PYTHONPATH=client/python picks it up, with
# $(PYTHON)'s compile flags, headers and suffix (python3-config, from python3-dev). Never
# sanitized: the interpreter that loads it is not. TENSORD_PURE_PYTHON=1 makes the package
# ignore it.
PY_CONFIG     := $(PYTHON)-config
PY_EXT_SUFFIX := $(shell $(PY_CONFIG) --extension-suffix 2>/dev/null)
PY_FAST       := client/python/tensord/_fast$(PY_EXT_SUFFIX)
PY_EXT_CFLAGS  = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                 -fPIC -shared $(shell $(PY_CONFIG) --cflags) $(if $(filter 1,$(WERROR)),-Werror)
# libtensord's wire codec (client/c/wire.c) is compiled in from its one source: the two clients
# share it (setup.py does the same for pip installs).
$(PY_FAST): client/python/tensord/_fast.c client/c/wire.c client/c/wire.h
	@$(if $(PY_EXT_SUFFIX),,echo "$(PY_CONFIG) not found: make deps installs python3-dev"; exit 1)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(PY_EXT_CFLAGS) $(CFLAGS) -Iclient/c -o $@ client/python/tensord/_fast.c \
	    client/c/wire.c
python: $(PY_FAST)

# tensord._pool (client/python/tensord/_pool.c): pooled memory for large downloads, a module of
# its own so the fast path's file stays one engineer's. Optional like _fast: without it,
# downloads land in fresh bytearrays.
PY_POOL       := client/python/tensord/_pool$(PY_EXT_SUFFIX)
$(PY_POOL): client/python/tensord/_pool.c
	@$(if $(PY_EXT_SUFFIX),,echo "$(PY_CONFIG) not found: make deps installs python3-dev"; exit 1)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(PY_EXT_CFLAGS) $(CFLAGS) -o $@ $<
python: $(PY_POOL)

test-py: all $(PY_GEN)
	$(Q)TENSORD_BIN=$(abspath $(TENSORD)) TENSORCTL_BIN=$(abspath $(TENSORCTL)) \
	    PYTHONPATH=$(abspath client/python) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/python \
	        --ignore=tests/python/test_cli.py --ignore=tests/python/test_packaging.py

# The C suites, then the Python suites against the sanitized daemon (which must exit cleanly);
# these run the pure-Python client, and test-py the extension, so each path is tested once.
# The attack suite's loop and latency bound is 300 ms here (TENSORD_TINY_OP_MS): sanitized code
# runs 2-3x slower, and test-py holds the real build to 100 ms.
check-asan:
	$(Q)TENSORD_SANITIZED=1 TENSORD_PURE_PYTHON=1 TENSORD_TINY_OP_MS=300 $(MAKE) --no-print-directory BUILD=build-asan SAN=1 test-c test-py test-cli

# ---- setup ----
DEB_PKGS := build-essential pkg-config libuv1-dev libprotobuf-c-dev protobuf-c-compiler \
            libcmocka-dev libopenblas-dev protobuf-compiler python3-protobuf python3-numpy \
            python3-pytest python3-pytest-timeout python3-torch python3-venv python3-pip \
            python3-setuptools python3-dev
deps:
	$(Q)missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# ---- formatting: .clang-format, over the C sources (tools/format-check.sh) ----
DEB_PKGS += clang-format
format: deps
	$(Q)tools/format-check.sh --fix
format-check: deps
	$(Q)tools/format-check.sh

# Builds what the README's examples use beside the daemon (libtensord, the Python package's
# generated modules and its fast path), so they run while it serves.
run: deps
	$(Q)$(MAKE) --no-print-directory all
	./$(TENSORD) --listen 127.0.0.1:7878

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(TENSORD) $(DESTDIR)$(PREFIX)/bin/tensord
	install -m 644 $(LIBTENSORD_A) $(DESTDIR)$(PREFIX)/lib/libtensord.a
	install -m 755 $(LIBTENSORD_SO) $(DESTDIR)$(PREFIX)/lib/libtensord.so.0
	ln -sf libtensord.so.0 $(DESTDIR)$(PREFIX)/lib/libtensord.so
	install -m 644 client/c/tensord.h $(DESTDIR)$(PREFIX)/include/tensord.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' client/c/tensord.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tensord.pc

clean:
	rm -rf build build-asan build-fuzz

# tensorctl (client/cli) and the packaging (systemd unit, man pages, Docker) bring their own
# rules: each defines its targets and adds to all, install, DEB_PKGS, test-cli and test-ops.
include client/cli/cli.mk
include packaging/packaging.mk
include bench/bench.mk
include tests/fuzz/fuzz.mk
include tests/load/load.mk
include tests/valgrind/valgrind.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
