package fakemaas

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidationBodyIsPythonJSONDumps(t *testing.T) {
	tests := []struct {
		name string
		fe   fieldErrors
		want string
	}{
		{"one field", fieldErrors{"cidr": {"Required format: <network>/<prefixlen>."}}, `{"cidr": ["Required format: <network>/<prefixlen>."]}`},
		{"fields sorted, messages in order", fieldErrors{"b": {"y", "x"}, "a": {"z"}}, `{"a": ["z"], "b": ["y", "x"]}`},
		{"quotes and controls", fieldErrors{"f": {"a \"q\" \\ \n\t\b\f\x01\x7f"}}, `{"f": ["a \"q\" \\ \n\t\b\f\u0001\u007f"]}`},
		{"non-ASCII as UTF-16", fieldErrors{"f": {"é 😀"}}, `{"f": ["\u00e9 \ud83d\ude00"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, validation(tt.fe).body); diff != "" {
				t.Errorf("validation body (-want +got):\n%s", diff)
			}
		})
	}
}
