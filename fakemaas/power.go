package fakemaas

import "context"

// PowerParams are a machine's power parameters as MAAS stores them, e.g. for the virsh power
// type {"power_address": "qemu:///system", "power_id": "vm-1"}.
type PowerParams map[string]string

// PowerDriver carries out power actions for one MAAS power type. Query returns one of
// "on", "off", "unknown", "error", as MAAS reports power_state.
type PowerDriver interface {
	PowerOn(ctx context.Context, params PowerParams) error
	PowerOff(ctx context.Context, params PowerParams) error
	PowerQuery(ctx context.Context, params PowerParams) (string, error)
}
