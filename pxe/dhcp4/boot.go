package dhcp4

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
)

// BootMethod is one row of MAAS's bootloader table: how a client is recognised and what it
// is told. The rows, their order and their answers follow
// src/maasserver/dhcpd/config.py compose_conditional_bootloader over the boot method registry
// (src/maascommon/bootmethods.py); the first matching row wins, and a client no row matches
// gets the pxe row (the "else" branch).
type BootMethod struct {
	Name      string
	ArchOctet []byte // option 93 must equal these bytes exactly ("option arch = 00:07")
	UserClass string // option 77 must equal this string exactly ("option user-class = ...")
	// Filename is the bootloader (the BOOTP file field) with <rack> in URLs; empty for ONIE.
	Filename string
	// PathPrefix is option 210 (RFC 5071), with <rack>; forced into the reply whether or not
	// the client asked (MAAS concatenates d2 to the parameter request list) when ForcePrefix.
	PathPrefix  string
	ForcePrefix bool
	HTTPClient  bool   // option 60 "HTTPClient" (UEFI HTTP boot answers must carry it)
	ONIEURL     string // ONIE installer URL in option 125 (vivso), with <rack>
}

const rackToken = "<rack>"

// BootMethods is MAAS's table, in registry order. Windows (no arch octet, no user class) is
// never rendered into dhcpd.conf and is left out.
var BootMethods = []BootMethod{
	{Name: "ipxe", UserClass: "iPXE", Filename: "http://<rack>:5248/ipxe.cfg"},
	{Name: "onie", UserClass: "onie_dhcp_user_class", ONIEURL: "http://<rack>:5248/MAAS/a/v3/nos-installer"},
	{Name: "pxe", ArchOctet: []byte{0x00, 0x00}, Filename: "lpxelinux.0", PathPrefix: "http://<rack>:5248/", ForcePrefix: true},
	{Name: "uefi_amd64_tftp", ArchOctet: []byte{0x00, 0x07}, Filename: "bootx64.efi"},
	{Name: "uefi_amd64_http", ArchOctet: []byte{0x00, 0x10}, Filename: "http://<rack>:5248/images/bootx64.efi", HTTPClient: true},
	// LP:1768034: EBC (00:09) is answered with the amd64 GRUB.
	{Name: "uefi_ebc_tftp", ArchOctet: []byte{0x00, 0x09}, Filename: "bootx64.efi"},
	{Name: "uefi_arm64_tftp", ArchOctet: []byte{0x00, 0x0B}, Filename: "bootaa64.efi"},
	{Name: "uefi_arm64_http", ArchOctet: []byte{0x00, 0x13}, Filename: "http://<rack>:5248/images/bootaa64.efi", HTTPClient: true},
	{Name: "open-firmware_ppc64el", ArchOctet: []byte{0x00, 0x0C}, Filename: "bootppc64.bin"},
	{Name: "powernv", ArchOctet: []byte{0x00, 0x0E}, Filename: "pxelinux.0", PathPrefix: "ppc64el/"},
	{Name: "s390x", ArchOctet: []byte{0x00, 0x1F}, Filename: "boots390x.bin", PathPrefix: "s390x/"},
	{Name: "s390x_partition", ArchOctet: []byte{0x00, 0x20}, Filename: "s390x_partition/maas"},
}

// defaultMethod is the else branch: the pxe method.
const defaultMethod = "pxe"

// Boot is what a client is told.
type Boot struct {
	Method      string
	Filename    string
	PathPrefix  string
	ForcePrefix bool
	HTTPClient  bool
	ONIEURL     string
}

// client is what the bootloader table looks at in a request.
type client struct {
	arch      []byte // option 93, raw
	userClass []byte // option 77, raw
	ipxeEncap []byte // option 175, raw
}

// ipxeFeatures reports whether option 175 carries sub-option code (ISC "exists ipxe.<x>").
func ipxeFeature(encap []byte, code byte) bool {
	for i := 0; i+1 < len(encap); {
		c, l := encap[i], int(encap[i+1])
		if c == code {
			return true
		}
		if c == 0 { // pad
			i++
			continue
		}
		i += 2 + l
	}
	return false
}

// iPXE feature sub-options of option 175 (dhcpd.conf.template: ipxe.http 19, ipxe.bzimage
// 24, ipxe.efi 36).
const (
	ipxeHTTP    = 19
	ipxeBzImage = 24
	ipxeEFI     = 36
)

func (m *BootMethod) matches(c client) bool {
	if m.UserClass != "" {
		if string(c.userClass) == m.UserClass {
			return true
		}
		// The iPXE row also matches iPXE builds that do not send the user class.
		return m.Name == "ipxe" && ipxeFeature(c.ipxeEncap, ipxeHTTP) &&
			(ipxeFeature(c.ipxeEncap, ipxeBzImage) || ipxeFeature(c.ipxeEncap, ipxeEFI))
	}
	return bytes.Equal(c.arch, m.ArchOctet)
}

// chooseBoot walks the table as dhcpd evaluates the if/elsif/else chain. ok=false when no row
// applies and the else branch is disabled too.
func chooseBoot(c client, rack netip.Addr, disabled []string) (Boot, bool) {
	r := rack.String()
	subst := func(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(rackToken), []byte(r))) }
	mk := func(m BootMethod) Boot {
		return Boot{Method: m.Name, Filename: subst(m.Filename), PathPrefix: subst(m.PathPrefix),
			ForcePrefix: m.ForcePrefix, HTTPClient: m.HTTPClient, ONIEURL: subst(m.ONIEURL)}
	}
	for _, m := range BootMethods {
		if slices.Contains(disabled, m.Name) {
			continue
		}
		if m.matches(c) {
			return mk(m), true
		}
	}
	if slices.Contains(disabled, defaultMethod) {
		return Boot{}, false
	}
	for _, m := range BootMethods {
		if m.Name == defaultMethod {
			return mk(m), true
		}
	}
	return Boot{}, false
}

// onieVIVSO encodes option 125 as MAAS's dhcpd.conf makes ISC send it: enterprise 0 (vivso.iana
// 01:01:01, a workaround so ISC emits the option) then enterprise 42623 with ONIE sub-option
// 1 (installer_url).
func onieVIVSO(url string) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0)
	b = append(b, 3, 0x01, 0x01, 0x01)
	sub := append([]byte{1, byte(len(url))}, url...)
	b = binary.BigEndian.AppendUint32(b, 42623)
	b = append(b, byte(len(sub)))
	return append(b, sub...)
}

// ipxeNoProxyDHCP is option 175 carrying iPXE's "no-pxedhcp" setting (175.176 = 1).
//
// Why: iPXE (src/net/udp/dhcp.c dhcp_discovery_rx) leaves the DHCP discovery state only when
// it holds an offer and either the offer says no-pxedhcp, or it has a ProxyDHCP offer (an
// offer with option 60 "PXEClient"), or DHCP_DISC_PROXY_TIMEOUT_SEC (2 s) has passed. MAAS's
// dhcpd sends neither 60 nor 175, so every iPXE boot waits ~2 s for ProxyDHCP offers that
// never come. Setting no-pxedhcp (as iPXE's own docs suggest with "option ipxe.no-pxedhcp 1")
// lets it request at once. Only iPXE reads option 175; it asks for it in its request list.
//
// The ~13 s pause seen after the ACK in the proof of concept is not ProxyDHCP: the iPXE ROM
// Debian 12 ships with QEMU (ipxe-qemu 1.0.0+git-20190125.36a4c85, built with IPv6) runs
// IPv6 router discovery in parallel with DHCPv4, and ifconf (src/usr/ifmgmt.c) waits for
// every configurator. With no router advertisement, router solicitation backs off from
// 0.25 s doubling up to 10 s (the default retry timer limits in that version; net/ndp.c
// start_ipv6conf) before giving up: 0.25+0.5+1+2+4+8 = 15.75 s after the start, ~13 s after
// a DHCPv4 that took ~3 s. iPXE ends router discovery as soon as a Router Advertisement
// without the M/O flags arrives (ipv6conf_rx_router_advertisement), so the cure is on the
// network side: answer Router Solicitations (see package ra). No DHCPv4 option can shorten it.
var ipxeNoProxyDHCP = []byte{0xb0, 0x01, 0x01}
