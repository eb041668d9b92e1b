# tensorctl: the CLI on libtensord. Its rules are filled in with the CLI itself.
.PHONY: test-cli
test-cli:
