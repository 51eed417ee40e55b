package trace

// Event kinds every component uses, so that the timeline, the diagnosis and scenario
// assertions can rely on them. Attributes named in the comments go in Event.Attrs.
const (
	// DHCP (attrs: xid, arch, vendor_class, user_class, yiaddr, filename, next_server).
	KindDHCPDiscover = "dhcp.discover"
	KindDHCPOffer    = "dhcp.offer"
	KindDHCPRequest  = "dhcp.request"
	KindDHCPAck      = "dhcp.ack"
	KindDHCPNak      = "dhcp.nak"
	KindDHCPRelease  = "dhcp.release"
	KindDHCPIgnored  = "dhcp.ignored" // attrs: reason
	KindDHCPBad      = "dhcp.bad"     // malformed packet; attrs: reason
	// The client found the address it was given in use (DHCPDECLINE; DHCPv6 Decline);
	// attrs: requested.
	KindDHCPDecline = "dhcp.decline"
	// A lease ended because its time ran out without a renewal; attrs: yiaddr.
	KindDHCPExpire = "dhcp.expire"

	// TFTP (attrs: file, bytes, blksize, tsize, duration_ms, error).
	KindTFTPRead     = "tftp.read"     // a transfer completed
	KindTFTPNotFound = "tftp.notfound" // file not found answered
	KindTFTPError    = "tftp.error"    // refused (traversal, write request) or failed transfer
	// A size probe: the client asked with tsize, read the OACK and aborted with error 8,
	// as UEFI firmware does before reading the file. Normal, not a failure.
	KindTFTPProbe = "tftp.probe"

	// Rack HTTP (attrs: path, status, bytes, range, duration_ms).
	KindHTTPGet   = "http.get"
	KindHTTPError = "http.error"

	// A boot config was rendered (attrs: purpose, file, bootloader, kernel, initrd).
	KindBootConfig = "boot.config"
	// The rack could not find the image a machine needs (attrs: image).
	KindBootImageMissing = "boot.image_missing"

	// Region (attrs: from, to, message for status; type, description for events).
	KindStatusChange = "status.change"
	KindNodeEvent    = "node.event" // an entry in the machine's MAAS event log
	KindAPIRequest   = "api.request"

	// Metadata service (attrs: path, status; signal: status, error).
	KindMetadataRead = "metadata.read"
	KindSignal       = "metadata.signal"
	KindNetbootOff   = "metadata.netboot_off"
	KindUserDataRead = "metadata.user_data" // the installed OS read its user-data
	// The curtin user-data (MAAS 3.7: the curtin pack) could not be served to a machine;
	// attrs: path, status, error, curtin_unavailable (no real curtin on the host).
	KindInstallerUnavailable = "metadata.installer_unavailable"

	// Status webhook (attrs: origin, name, event_type, result, description).
	KindWebhookEvent = "webhook.event"

	// Power (attrs: power_type, action, state).
	KindPower = "power"

	// Serial console: one line per event; Message is the line.
	KindConsoleLine = "console.line"

	// Machine driver lifecycle (attrs: driver, detail).
	KindMachineCreated   = "machine.created"
	KindMachineStarted   = "machine.started"
	KindMachineStopped   = "machine.stopped"
	KindMachineCrashed   = "machine.crashed"
	KindMachineDestroyed = "machine.destroyed"
	KindMachineStep      = "machine.step" // a simulated machine's boot step (attrs: step)

	// Virtual network (attrs: port, fault).
	KindLink  = "vnet.link"
	KindFault = "vnet.fault"
)
