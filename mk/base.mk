# Packages every part needs: the VM stack, firmware, bootloaders, and the real clients tests use.
DEPS_PKGS += qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients ovmf ipxe-qemu \
	pxelinux syslinux-common grub-efi-amd64-bin grub-pc-bin grub-common shim-signed \
	curl tftp-hpa tshark cloud-init squashfs-tools e2fsprogs dosfstools xfsprogs gdisk lvm2 \
	mtools cpio xz-utils bzip2 busybox-static iproute2 git
DEPS_PKGS += libxml2-utils
DEPS_PKGS += wget
