# make bench: the side-by-side benchmark suite. Its rules come with the suite.
.PHONY: bench
