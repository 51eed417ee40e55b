# Region (fakemaas): the API benchmarks with 1,000 machines, and a 1 GiB chunked upload
# measured against dd's sequential write speed on the same filesystem (target: upload at
# no less than half of dd). MAASEMU_BENCH_DIR picks the state directory's filesystem.
DEPS_PKGS += coreutils
BENCH_TARGETS += bench-region

.PHONY: bench-region
bench-region:
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkAPI' -benchtime 2s ./fakemaas
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkUpload1GiB' -benchtime 1x ./fakemaas
