package curtincfg

import "testing"

// Benchmarks for what the region does per request: the deploy preseed (every ephemeral
// boot), the curtin documents (the installer fetch and the deploy check) and the
// vendor-data (every metadata read of it).

func BenchmarkPreseedDeploy(b *testing.B) {
	in := baseInput()
	for b.Loop() {
		if _, err := Preseed(in, PurposeDeploy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCurtinConfig(b *testing.B) {
	for _, tc := range []goldenCase{goldenCases[0], goldenCases[5], goldenCases[7]} {
		in := tc.input()
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := CurtinConfig(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVendorData(b *testing.B) {
	in := baseInput()
	for b.Loop() {
		if _, err := VendorData(in, PurposeDeploy); err != nil {
			b.Fatal(err)
		}
	}
}
