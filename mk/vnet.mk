# Userspace virtual network (harness/vnet).
# Tests: tshark decodes captures; QEMU with SeaBIOS and the iPXE ROM PXE-boots lpxelinux.0 on
# the switch; bridge mode runs in network namespaces (ip) with busybox udhcpc and curl as clients.
DEPS_PKGS += tshark qemu-system-x86 seabios ipxe-qemu pxelinux syslinux-common iproute2 busybox-static curl

# Frames/s through the switch next to QEMU's hub; one TCP stream rack -> guest through vnet next
# to QEMU user networking (slirp); QEMU start -> first TFTP request of a BIOS PXE boot, with and
# without the switch answering IPv6 router solicitations.
BENCH_TARGETS += bench-vnet
.PHONY: bench-vnet
bench-vnet:
	$(GO) test -run '^$$' -bench 'BenchmarkForwardFrames|BenchmarkTCPStream' -benchtime 3s -count 1 -timeout 20m ./harness/vnet/
	$(GO) test -run '^$$' -bench 'BenchmarkQEMUPXEToTFTP' -benchtime 2x -count 1 -timeout 20m ./harness/vnet/
