# tensorctl: the CLI on libtensord (client/cli), its man page, and its tests (tests/cli).

.PHONY: tensorctl test-cli install-cli

CLI_SRC  := client/cli/main.c client/cli/parse.c client/cli/eval.c client/cli/values.c \
            client/cli/print.c client/cli/ops.c client/cli/methods.c client/cli/builtins.c \
            client/cli/meta.c client/cli/format.c
# safetensors and its JSON header: base's codec, the daemon's own (libtd_base)
CLI_O    := $(call obj,$(CLI_SRC)) $(LIBTENSORD_A) $(LIB_BASE)
TENSORCTL := $(BUILD)/tensorctl
CLI_LIBS  = $(PROTOBUF_C_LIBS) \
            $(shell pkg-config --libs libedit 2>/dev/null || echo -ledit) -lm
CLI_CFLAGS = $(shell pkg-config --cflags libedit 2>/dev/null)

all: tensorctl
tensorctl: $(TENSORCTL)
DEB_PKGS += libedit-dev tmux

$(BUILD)/obj/client/cli/%.o: ALL_CFLAGS += $(CLI_CFLAGS)

# The op table, generated from ops.def (never committed): only ops.c includes it.
CLI_OPS_H := $(BUILD)/gen/cli_ops.h
$(CLI_OPS_H): tools/gen_cli_ops.py tools/opsdef.py server/core/ops.def
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$(PYTHON) tools/gen_cli_ops.py $@
$(call obj,client/cli/ops.c): $(CLI_OPS_H)

$(TENSORCTL): $(CLI_O)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) $(TD_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CLI_LIBS)

# cmocka tests of the parser and the formatting (no server needed).
TESTS_CLI := $(wildcard tests/cli/test_*.c)
CLI_TEST_BINS := $(call tbin,$(TESTS_CLI))
$(CLI_TEST_BINS): $(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,client/cli/parse.c \
                  client/cli/format.c) $(LIB_BASE)
	$(Q)$(LINK_TEST)
$(call obj,$(TESTS_CLI)): ALL_CFLAGS += -Iclient/cli

test-cli: $(TENSORCTL) $(TENSORD) $(CLI_TEST_BINS)
	@fail=0; for t in $(CLI_TEST_BINS); do \
	    echo "== $$t"; $(TEST_TIMEOUT) $$t || { echo "FAILED: $$t"; fail=1; }; \
	done; \
	TENSORD_BIN=$(abspath $(TENSORD)) TENSORCTL_BIN=$(abspath $(TENSORCTL)) \
	    PYTHONPATH=$(abspath client/python) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/python/test_cli.py || fail=1; \
	exit $$fail

install: install-cli
install-cli: $(TENSORCTL)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(TENSORCTL) $(DESTDIR)$(PREFIX)/bin/tensorctl
	install -m 644 docs/man/tensorctl.1 $(DESTDIR)$(MANDIR)/man1/tensorctl.1
