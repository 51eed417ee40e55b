# pxe: the rack's DHCP, TFTP and HTTP boot services.
# tftpd-hpa and nginx are the references bench-pxe compares the rack's TFTP and HTTP with
# (tftp-hpa, curl, the bootloader packages and grub-common come from base.mk).
DEPS_PKGS += tftpd-hpa nginx

BENCH_TARGETS += bench-pxe
.PHONY: bench-pxe
# 64 MiB over TFTP against tftpd-hpa (target >= 1.0x), 1 GiB over HTTP against nginx (target
# >= 0.8x), both fetched by curl on loopback; DHCP transactions/s for 1,000 distinct clients.
bench-pxe:
	$(GO) test -run '^$$' -bench 'BenchmarkCompare(TFTP|HTTP)$$' -benchtime 5x -timeout 20m ./pxe/
	$(GO) test -run '^$$' -bench 'BenchmarkDORA' -benchtime 10x ./pxe/dhcp4/
