// Package bootconfig renders the boot configs a MAAS rack serves (pxelinux, GRUB and iPXE, for
// every boot purpose) and the kernel command line, byte for byte as MAAS 3.7 does, and
// recognises the config file names bootloaders ask for.
//
// Sources followed (canonical/maas 9e51f33): src/provisioningserver/kernel_opts.py,
// src/provisioningserver/boot/{__init__,pxe,grub,ipxe}.py and the templates under
// src/provisioningserver/templates/{pxe,uefi,ipxe}/. Rendering is pure: no I/O.
package bootconfig
