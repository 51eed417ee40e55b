// Package fakemaas is the fake MAAS region: API 2.0 with OAuth, machines and their
// lifecycle, boot resources and SimpleStreams import, the metadata service, the status
// webhook, events, and persistent state.
package fakemaas
