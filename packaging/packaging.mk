# Packaging checks (systemd unit, man pages, Docker). Filled in with the packaging.
.PHONY: test-ops
test-ops:
