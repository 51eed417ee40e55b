package lab

import (
	"context"
	"strings"
	"testing"
)

// Raw API calls refuse a method or a path they cannot mean, before sending anything.
func TestAPIRefusesBadRequests(t *testing.T) {
	l := &Lab{}
	for _, c := range []struct{ method, path, want string }{
		{"PATCH", "machines/", `API method "PATCH": want GET, POST, PUT or DELETE`},
		{"GET", "../../admin/", `API path "../../admin/": want a path relative to /MAAS/api/2.0/`},
		{"GET", "/etc/passwd", `API path "/etc/passwd"`},
	} {
		_, err := l.API(context.Background(), c.method, c.path, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("API(%s %s) = %v, want an error with %q", c.method, c.path, err, c.want)
		}
	}
}
