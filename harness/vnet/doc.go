// Package vnet is maasemu's userspace Ethernet network: a learning switch that VMs, the
// rack and simulated machines plug into, with packet capture and fault injection, and
// no bridge, no root and no host network configuration.
//
// A lab makes one Switch (NewSwitch) and attaches:
//
//   - the rack: a Stack (Switch.NewStack), a gVisor TCP/IP stack holding the rack's
//     addresses (DefaultRackAddr, 198.18.0.1/24, by default; several addresses, or
//     several stacks, for several subnets). Its ListenUDP, ListenTCP and DialContext
//     return ordinary net.PacketConn, net.Listener and net.Conn values, so the DHCP,
//     TFTP and HTTP servers run on it unchanged. The DHCP server binds 0.0.0.0:67 with
//     UDPOptions.Broadcast;
//   - each VM NIC: a UDPPort (Switch.AttachUDP), QEMU's socket netdev in UDP form
//     (libvirt <interface type='udp'>); UDPPort.Attachment fills
//     machine.NIC.UDP. StreamPort is the TCP form (libvirt type='client'/'server');
//   - each simulated machine: a Stack with no address and Promiscuous set, which does
//     DHCP from 0.0.0.0:68, then AddAddress and SetGateway;
//   - tests and tools: a RawPort that sends and receives whole frames.
//
// The switch learns MAC addresses (with ageing), floods broadcast, multicast and unknown
// unicast, drops frames over a port's MTU, and counts everything per port. Config.Capture
// receives every forwarded frame; package pcap writes them to a file tshark and
// Wireshark read. Faults (loss, delay and jitter, duplication, reordering, corruption)
// apply per port or to the whole switch, from a seeded random source so a run repeats;
// Port.Cut and Switch.Cut take links down for a while. Fault and link changes are
// trace.KindFault and trace.KindLink events.
//
// By default the switch answers IPv6 router solicitations with a router advertisement
// that configures nothing: iPXE does not boot until its IPv6 autoconfiguration ends,
// which without a router takes about 16 s.
//
// Bridge mode, where the same servers run on a host interface, is package hostnet.
package vnet
