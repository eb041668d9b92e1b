# make fuzz: libFuzzer targets (clang). Its rules come with the targets.
.PHONY: fuzz
