# Images (harness/images, harness/diskimage): host tools the image builders run. The
# Debian packages that go *into* the images are downloaded with apt-get download into
# $(MAASEMU_CACHE)/debs and need only apt.
DEPS_PKGS += e2fsprogs dosfstools mtools squashfs-tools grub-common grub-pc-bin grub-efi-amd64-bin \
	shim-signed pxelinux syslinux-common cpio kmod fdisk gdisk util-linux xz-utils bzip2 gzip \
	zstd tar busybox-static qemu-system-x86 ovmf

BENCH_TARGETS += bench-images
.PHONY: bench-images
bench-images:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./harness/images/... ./harness/diskimage/...
