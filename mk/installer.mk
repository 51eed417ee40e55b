# installer: the curtin-compatible installer library (harness/installer) and cmd/maasemu-agent.
# Host tools its tests use: partitioning (sgdisk, sfdisk, parted), loop devices and mounts
# (block backend), mkfs/debugfs/e2fsck, FAT and squashfs tools, GRUB's i386-pc images
# (simulated grub-install), a static busybox for the test roots, python3 for the
# "hook imports curtin" failure mode.
DEPS_PKGS += fdisk mount util-linux gdisk parted e2fsprogs dosfstools mtools squashfs-tools \
	grub-common grub-pc-bin busybox-static bzip2 xz-utils tar python3

BENCH_TARGETS += bench-installer

.PHONY: bench-installer
# Median seconds of a full image-backend install of a 64 MiB dd.gz image from a loopback
# HTTP server (stream, decompress, find the root, run curtin-hooks, write back).
bench-installer:
	@echo "bench-installer: image-backend install of a 64 MiB dd.gz image over loopback HTTP, 5 runs"
	@$(GO) test -run '^$$' -bench '^BenchmarkImageInstallDDGZ64MiB$$' -benchtime 5x -count 1 ./harness/installer/ \
		| tee /dev/stderr \
		| awk '{ for (i = 2; i <= NF; i++) if ($$i == "median-s/install") print "bench-installer: median " $$(i-1) " s per install" }'
