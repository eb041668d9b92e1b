# The load generator (tests/load/loadgen.c, on libtensord) and its runs:
#   make test-load   200 connections over 50 sessions for 3 s (part of make test)
#   make load        500 connections over 100 sessions for 30 s, with the daemon's RSS watched
#   make soak        20 connections for 10 minutes: RSS must stay flat after warm-up
LOADGEN := $(BUILD)/tests/load/loadgen

$(LOADGEN): $(call obj,tests/load/loadgen.c) $(LIBTENSORD_A)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(PROTOBUF_C_LIBS) -lpthread -lm

.PHONY: test-load load soak
test: test-load
test-load: $(LOADGEN) $(TENSORD)
	$(Q)tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 200 --sessions 50 --seconds 3

load: $(LOADGEN) $(TENSORD)
	$(Q)tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 500 --sessions 100 --seconds 30

soak: $(LOADGEN) $(TENSORD)
	$(Q)tests/load/run.sh $(TENSORD) $(LOADGEN) --connections 20 --sessions 10 --seconds 600
