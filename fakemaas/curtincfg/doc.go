// Package curtincfg generates the documents MAAS 3.7 serves to a machine it deploys: the
// cloud-init preseeds, the curtin configuration packed into the installer, the curtin
// source argument and the vendor-data, from machine facts given as plain input.
//
// It is a pure generator: no clocks, no randomness, no state. Identifiers MAAS would draw
// at random (partition and filesystem UUIDs) come from the input or are derived from the
// system_id deterministically. Every document is rendered with package pyyaml, which
// reproduces yaml.safe_dump byte for byte, so the output is the text MAAS would serve for
// the same machine. Where MAAS's main branch differs from 3.7, 3.7 is followed; the
// differences are noted next to the code they concern.
//
// Sources of the shapes (canonical/maas at tag 3.7.3): src/maasserver/compose_preseed.py
// (preseeds), src/maasserver/preseed.py (curtin documents, source URL, custom-image
// checks), src/maasserver/preseed_storage.py and storage_layouts.py (storage),
// src/maasserver/preseed_network.py (network), src/metadataserver/vendor_data.py, and the
// templates package-files/etc/maas/preseeds/curtin_userdata*.
package curtincfg
