# harness/libvirt: the libvirt machine driver and the MAAS virsh power type.
# Daemons, QEMU and firmware (base.mk has most; these are what the driver uses directly).
# The tests start virtlogd and libvirtd themselves (libvirt.EnsureDaemons), as on hosts
# without systemd, and give /dev/kvm to group kvm as udev would.
DEPS_PKGS += qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients ovmf ipxe-qemu seabios

BENCH_TARGETS += bench-libvirt

# Time to define+start a BIOS and a UEFI domain, and from power-on to the first console
# line and to the firmware's network-boot line (TCG where KVM does not work).
.PHONY: bench-libvirt
bench-libvirt:
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 ./harness/libvirt/
