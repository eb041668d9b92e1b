# make fuzz: libFuzzer targets (clang; gcc has no libFuzzer). Included at the end of the
# top-level Makefile, after every variable.
#
#   make fuzz FUZZ_SECONDS=N   every target fuzzes for N seconds (default 60); fails on a crash
#   make test-fuzz-regress     replays every seed in tests/fuzz/corpus/<t>/ and every crash
#                              reproducer in tests/fuzz/regress/<t>/ through its target once
#   make fuzz-seeds            regenerates tests/fuzz/corpus/ from the test suites' traffic
#                              (tests/fuzz/record_seeds.py; a few minutes, rewrites the corpus)
#
# The targets and the layer libraries they link are built by clang with ASan + UBSan and
# libFuzzer's coverage in their own tree, $(FUZZ_BUILD), by recursing with BUILD, CC, SAN and
# CFLAGS set, so build/ and build-asan/ are untouched. Seeds under tests/fuzz/corpus/ are only
# read: what the fuzzer finds goes to $(FUZZ_BUILD)/corpus/<t>/, crashes to
# $(FUZZ_BUILD)/crashes/<t>/.

.PHONY: fuzz fuzz-bins fuzz-seeds test-fuzz-regress

DEB_PKGS += clang libclang-rt-14-dev

FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -O1 -g -fsanitize=fuzzer-no-link
FUZZ_TARGETS := frames rpc ops cli_parse safetensors fastunpack wire
# Per-target libFuzzer options: the frame reader wants streams long enough for the direct read
# of a large data section; rpc requests are small but their work is not.
FUZZ_OPTS_frames      := -max_len=65536
FUZZ_OPTS_rpc         := -max_len=8192 -timeout=20
# ops: programs, not frames; its own watchdog fails a request that holds the loop (100 ms of CPU)
# or a heavy job far past its deadline, and -timeout backs it up for an input of many such jobs.
FUZZ_OPTS_ops         := -max_len=2048 -timeout=30
FUZZ_OPTS_cli_parse   := -max_len=4096 -dict=tests/fuzz/cli_parse.dict
FUZZ_OPTS_safetensors := -max_len=4096 -dict=tests/fuzz/safetensors.dict
FUZZ_OPTS_fastunpack  := -max_len=4096
FUZZ_OPTS_wire        := -max_len=4096

FUZZ_SUBMAKE = $(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SAN=1 \
               CFLAGS="$(FUZZ_CFLAGS)" fuzz-bins

# ---- the binaries (made in the recursive make, where BUILD is the fuzz tree) ----
FUZZ_BINS := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_LINK = @mkdir -p $(dir $@); $(if $(Q),echo "  LD      $@";) \
            $(CC) $(CFLAGS) $(TD_LDFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ \
            $(PKG_LIBS) -lm -lpthread

fuzz-bins: $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz_frames: $(BUILD)/obj/tests/fuzz/fuzz_frames.o $(LIB_NET) $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_rpc: $(BUILD)/obj/tests/fuzz/fuzz_rpc.o $(LIB_RPC) $(LIB_SESSION) \
                        $(LIB_CORE) $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_ops: $(BUILD)/obj/tests/fuzz/fuzz_ops.o $(LIB_RPC) $(LIB_SESSION) \
                        $(LIB_CORE) $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_cli_parse: $(BUILD)/obj/tests/fuzz/fuzz_cli_parse.o \
                              $(call obj,client/cli/parse.c) $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_safetensors: $(BUILD)/obj/tests/fuzz/fuzz_safetensors.o $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_fastunpack: $(BUILD)/obj/tests/fuzz/fuzz_fastunpack.o $(LIB_RPC) $(LIB_BASE)
	$(Q)$(FUZZ_LINK)
$(BUILD)/fuzz/fuzz_wire: $(BUILD)/obj/tests/fuzz/fuzz_wire.o $(call obj,client/c/wire.c) $(GEN_O)
	$(Q)$(FUZZ_LINK)
$(call obj,tests/fuzz/fuzz_cli_parse.c): ALL_CFLAGS += -Iclient/cli

# ---- running them ----
fuzz: deps
	$(Q)$(FUZZ_SUBMAKE)
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	    echo "== fuzz_$$t for $(FUZZ_SECONDS)s"; \
	    opts=""; \
	    case $$t in \
	    frames) opts="$(FUZZ_OPTS_frames)";; rpc) opts="$(FUZZ_OPTS_rpc)";; \
	    ops) opts="$(FUZZ_OPTS_ops)";; \
	    cli_parse) opts="$(FUZZ_OPTS_cli_parse)";; safetensors) opts="$(FUZZ_OPTS_safetensors)";; \
	    fastunpack) opts="$(FUZZ_OPTS_fastunpack)";; wire) opts="$(FUZZ_OPTS_wire)";; \
	    esac; \
	    $(FUZZ_BUILD)/fuzz/fuzz_$$t $$opts -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t \
	        > $(FUZZ_BUILD)/fuzz_$$t.log 2>&1 \
	        || { echo "FAILED: fuzz_$$t found a crash (see $(FUZZ_BUILD)/fuzz_$$t.log," \
	                  "reproducer in $(FUZZ_BUILD)/crashes/$$t/)"; fail=1; }; \
	    grep 'cov: ' $(FUZZ_BUILD)/fuzz_$$t.log | tail -n 1; \
	    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' $(FUZZ_BUILD)/fuzz_$$t.log; \
	done; exit $$fail

# No fuzzing: each seed and each reproducer runs once, so a fixed crash stays fixed.
test-fuzz-regress: deps
	$(Q)$(FUZZ_SUBMAKE)
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    dirs=""; for d in tests/fuzz/corpus/$$t tests/fuzz/regress/$$t; do \
	        [ -d $$d ] && dirs="$$dirs $$d"; \
	    done; \
	    [ -n "$$dirs" ] || continue; \
	    n=$$(find $$dirs -type f | wc -l); \
	    echo "== fuzz_$$t: replaying $$n inputs"; \
	    find $$dirs -type f -print0 | xargs -0 -r -n 200 $(TEST_TIMEOUT) $(FUZZ_BUILD)/fuzz/fuzz_$$t \
	        > $(FUZZ_BUILD)/regress_$$t.log 2>&1 \
	        || { tail -40 $(FUZZ_BUILD)/regress_$$t.log; echo "FAILED: fuzz_$$t"; fail=1; }; \
	done; exit $$fail

# The suites run against the normal build (a recording shim preloaded into the daemon, test_rpc
# relinked with a recorder); the fuzz binaries then minimise each target's candidates.
fuzz-seeds: deps
	$(Q)$(MAKE) --no-print-directory all $(BUILD)/tests/rpc/test_rpc
	$(Q)$(FUZZ_SUBMAKE)
	$(Q)BUILD=$(abspath $(BUILD)) FUZZ_BUILD=$(abspath $(FUZZ_BUILD)) \
	    $(PYTHON) tests/fuzz/record_seeds.py
