// Package fakemaas is the fake MAAS region: API 2.0 with OAuth, machines and their
// lifecycle, boot resources and SimpleStreams import, the network model (fabrics, VLANs,
// subnets, IP ranges, machine interfaces with bonds, VLANs, bridges and their subnet
// links, what the rack's DHCP serves), the metadata service, the status webhook, events,
// and persistent state.
//
// It follows MAAS 3.7. In particular a deploying ephemeral's curtin user-data
// (/MAAS/metadata/curtin/<version>/user-data) is the curtin installer itself, the output
// of curtin's pack_install made with the real curtin on this host (Options.Packer); MAAS's
// main branch instead serves a script runner whose 50-curtin-install deployment script
// fetches the pack from curtin/<version>/curtin-installer, a route 3.7 and the fake do not
// have. maasemu's own ephemeral agent reads the same curtin configuration as JSON from
// the project route InstallerRoute, so it needs no curtin on the host.
package fakemaas
