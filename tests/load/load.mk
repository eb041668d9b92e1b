# The load generator (tests/load/loadgen.c, on libtensord) and its runs:
#   make test-load   200 connections over 50 sessions for 3 s (part of make test)
#   make load        500 connections over 100 sessions for 30 s, with the daemon's RSS watched
#   make soak        20 connections for 10 minutes (SOAK_SECONDS=60 for a short one)
#   make attack      four hostile sessions and a timed canary for 5 minutes (ATTACK_SECONDS=N)
#   make load-cluster 500 connections over 100 sessions for 30 s across 3 daemons (NODES=N),
#                    given to loadgen as an address list (tests/load/cluster.sh)
# Each ends with the daemon's allocated_bytes back at its warm-up value and RSS flat; load and soak
# keep their memory samples (rss t=... kib=... allocated=...) in $(BUILD)/load/.
LOADGEN := $(BUILD)/tests/load/loadgen
SOAK_SECONDS ?= 600

$(LOADGEN): $(call obj,tests/load/loadgen.c) $(LIBTENSORD_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(PROTOBUF_C_LIBS) -lpthread -lm

.PHONY: test-load load soak load-cluster
test: test-load
# tests/python/test_cluster_client.py drives loadgen at 500 connections across three daemons
# (issue 20's tests): test-py builds it, so that test runs rather than skips.
test-py: $(LOADGEN)
test-load: $(LOADGEN) $(TENSORD)
	$(Q)$(TEST_TIMEOUT) tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 200 --sessions 50 --seconds 3

load: $(LOADGEN) $(TENSORD)
	@mkdir -p $(BUILD)/load
	$(Q)tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 500 --sessions 100 --seconds 30 \
	    --samples $(BUILD)/load/load_samples.txt

load-cluster: $(LOADGEN) $(TENSORD)
	$(Q)$(TEST_TIMEOUT) tests/load/cluster.sh $(TENSORD) $(LOADGEN) --connections 500 --sessions 100 \
	    --seconds 30

soak: $(LOADGEN) $(TENSORD)
	@mkdir -p $(BUILD)/load
	$(Q)tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 20 --sessions 10 \
	    --seconds $(SOAK_SECONDS) --samples $(BUILD)/load/soak_samples.txt

# The hostile soak (issue 14's "Done when"): loadgen --attack against a daemon with
# --max-bytes 512M --session-max-bytes 64M, a data dir under --max-disk-bytes 256M and
# --max-request-seconds 10 (when the daemon has those flags), for ATTACK_SECONDS (default 300).
# Fails on canary p99 >= 10 ms, RSS > --max-bytes + 64 MiB, the data dir over its quota, a
# canary request failing, or the daemon dying.
ATTACK_SECONDS ?= 300
.PHONY: attack
attack: $(LOADGEN) $(TENSORD)
	@mkdir -p $(BUILD)/load
	$(Q)ATTACK_SAMPLES=$(BUILD)/load/attack_samples.txt \
	    tests/load/attack.sh $(TENSORD) $(LOADGEN) $(ATTACK_SECONDS)
