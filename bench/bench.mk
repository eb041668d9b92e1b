# make bench: the side-by-side benchmark suite (issues 9 and 19). Each workload runs for tensord
# and its anchors (Redis, redis-py, iperf3, raw TCP, cblas_sgemm, numpy, torch) in the same
# invocation, alternating, with warm-up and repetitions; bench/run.py prints the table (then
# issue 19's rows once more) and writes $(BUILD)/bench/results.json.
# `make bench BENCH_ARGS="--only 1,5 --reps 3"` runs a subset. Benchmarks never run in `make test`.

.PHONY: bench bench-bins

DEB_PKGS += redis-server redis-tools iperf3 linux-perf python3-redis python3-hiredis

BENCH_DIR  := $(BUILD)/bench
TDBENCH    := $(BENCH_DIR)/tdbench
RAWTCP     := $(BENCH_DIR)/rawtcp
SGEMM      := $(BENCH_DIR)/sgemm
GEMM_STEP  := $(BENCH_DIR)/gemm_step
HELPER_START := $(BENCH_DIR)/helper_start
BENCH_BINS := $(TDBENCH) $(RAWTCP) $(SGEMM) $(GEMM_STEP) $(HELPER_START)
BENCH_ARGS ?=

$(TDBENCH): $(call obj,bench/tdbench.c) $(LIBTENSORD_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(PROTOBUF_C_LIBS) -lpthread
$(RAWTCP): $(call obj,bench/rawtcp.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ -lpthread
$(SGEMM): $(call obj,bench/sgemm.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs openblas 2>/dev/null)

$(GEMM_STEP): $(call obj,bench/gemm_step.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs openblas 2>/dev/null)

$(HELPER_START): $(call obj,bench/helper_start.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ -lpthread

bench-bins: $(BENCH_BINS)

bench: all $(BENCH_BINS)
	$(Q)$(PYTHON) bench/run.py --build $(BUILD) $(BENCH_ARGS)
