package vnet

import (
	"hash/fnv"
	"net"
	"time"

	"github.com/maasemu/maasemu/pxe/ra"
)

// IPv6 router solicitation handling. iPXE (and UEFI network stacks) start IPv6
// autoconfiguration next to DHCPv4 and do not boot until it ends; with no router on the
// link, iPXE sends router solicitations at 0.25, 0.5, 1, 2, 4 s and gives up after
// another 8 s. The switch answers each solicitation with pxe/ra's router advertisement
// (router lifetime 0, no prefix, neither the M nor the O flag), which ends that wait at
// once and configures nothing.

// raResponder is the switch's advertising "router".
type raResponder struct {
	mac net.HardwareAddr
}

// newRAResponder derives the router's MAC, a locally administered unicast address, from
// the switch name, so that it is stable across runs of the same lab.
func newRAResponder(name string) *raResponder {
	h := fnv.New32a()
	h.Write([]byte("vnet-ra:" + name))
	sum := h.Sum32()
	return &raResponder{mac: net.HardwareAddr{0x02, 0x00, 0x5e, byte(sum >> 16), byte(sum >> 8), byte(sum)}}
}

// handle answers frame from src when it is a router solicitation; the solicitation itself
// is forwarded as usual by the caller. The advertisement goes to src only, and into the
// capture.
func (r *raResponder) handle(sw *Switch, src *Port, frame []byte, now time.Time) {
	adv, ok := ra.Reply(frame, r.mac)
	if !ok {
		return
	}
	if cb := sw.capture.Load(); cb != nil {
		if err := cb.w.WritePacket(now, adv); err != nil {
			sw.c.captureErrors.Add(1)
		}
	}
	src.send(nil, adv)
}
