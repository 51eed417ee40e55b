# fakemaas/curtincfg: the preseed and curtin configuration MAAS generates.
# python3-yaml: the emitter is compared byte-for-byte with real PyYAML (yaml.safe_dump);
# cloud-init: the preseed is validated with `cloud-init schema`.
DEPS_PKGS += python3-yaml cloud-init

BENCH_TARGETS += bench-curtincfg
.PHONY: bench-curtincfg
bench-curtincfg:
	$(GO) test -run '^$$' -bench . -benchmem ./fakemaas/curtincfg/...
