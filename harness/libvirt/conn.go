package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// API is the part of libvirt's remote protocol maasemu uses. *golibvirt.Libvirt
// implements it; unit tests use an in-memory fake.
type API interface {
	DomainDefineXMLFlags(xml string, flags golibvirt.DomainDefineFlags) (golibvirt.Domain, error)
	DomainLookupByName(name string) (golibvirt.Domain, error)
	DomainCreate(dom golibvirt.Domain) error
	DomainGetState(dom golibvirt.Domain, flags uint32) (state int32, reason int32, err error)
	DomainDestroyFlags(dom golibvirt.Domain, flags golibvirt.DomainDestroyFlagsValues) error
	DomainUndefineFlags(dom golibvirt.Domain, flags golibvirt.DomainUndefineFlagsValues) error
	DomainGetXMLDesc(dom golibvirt.Domain, flags golibvirt.DomainXMLFlags) (string, error)
	ConnectListAllDomains(needResults int32, flags golibvirt.ConnectListAllDomainsFlags) ([]golibvirt.Domain, uint32, error)
	// LifecycleEvents streams every domain's lifecycle events until the connection ends.
	LifecycleEvents(ctx context.Context) (<-chan golibvirt.DomainEventLifecycleMsg, error)
	Disconnect() error
}

// DialFunc opens a connection to the libvirt daemon named by a URI.
type DialFunc func(ctx context.Context, uri string) (API, error)

// Well-known URIs.
const (
	URISystem  = "qemu:///system"
	URISession = "qemu:///session"
)

// SystemSocket is libvirtd's socket for qemu:///system.
const SystemSocket = "/var/run/libvirt/libvirt-sock"

// dialTimeout bounds connecting to a local socket.
const dialTimeout = 10 * time.Second

// ParseURI checks a libvirt URI: a scheme ("qemu", "qemu+ssh", "test", ...) and, for the
// qemu driver, the path /system or /session.
func ParseURI(uri string) (*url.URL, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("libvirt URI %q: no scheme (want e.g. qemu:///system or qemu+ssh://user@host/system)", uri)
	}
	driver, _, _ := strings.Cut(u.Scheme, "+")
	if driver == "qemu" && u.Path != "/system" && u.Path != "/session" {
		return nil, fmt.Errorf("libvirt URI %q: the qemu driver's path must be /system or /session, not %q", uri, u.Path)
	}
	return u, nil
}

// isLocal reports whether the URI reaches a daemon on this host through a unix socket.
func isLocal(u *url.URL) bool {
	_, transport, hasTransport := strings.Cut(u.Scheme, "+")
	if hasTransport {
		return transport == "unix"
	}
	return u.Host == ""
}

// localSocket returns the unix socket of a local URI: ?socket= when given; for
// qemu:///session the user's session daemon socket (root's session is served by the
// privileged daemon, as virsh does it); else libvirtd's system socket (or
// virtqemud's, on hosts with modular daemons and no libvirtd).
func localSocket(u *url.URL) string {
	if s := u.Query().Get("socket"); s != "" {
		return s
	}
	if u.Path == "/session" && os.Geteuid() != 0 {
		return SessionSocket()
	}
	if _, err := os.Stat(SystemSocket); err != nil {
		if _, err := os.Stat("/var/run/libvirt/virtqemud-sock"); err == nil {
			return "/var/run/libvirt/virtqemud-sock"
		}
	}
	return SystemSocket
}

// SessionSocket returns the socket of the calling user's session daemon
// ($XDG_RUNTIME_DIR/libvirt/libvirt-sock, else ~/.cache/libvirt/libvirt-sock), which
// libvirtd started without root serves.
func SessionSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "libvirt", "libvirt-sock")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "libvirt", "libvirt-sock")
	}
	return filepath.Join(os.Getenv("HOME"), ".cache", "libvirt", "libvirt-sock")
}

// Dial connects to the libvirt daemon named by uri: qemu:///system and other local URIs
// over the daemon's unix socket, remote URIs (qemu+ssh://, qemu+tcp://, qemu+tls://,
// qemu+libssh2://) with go-libvirt's dialers. The connection is usable until its
// Disconnect. Cancelling ctx abandons a connection attempt still under way.
func Dial(ctx context.Context, uri string) (API, error) {
	return dial(ctx, uri, "")
}

// dial is Dial with an optional password for SSH transports (MAAS's power_pass).
func dial(ctx context.Context, uri, password string) (API, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		l   *golibvirt.Libvirt
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if isLocal(u) {
			sock := localSocket(u)
			l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(dialTimeout)))
			if err := l.ConnectToURI(golibvirt.RemoteURI(u)); err != nil {
				r.err = fmt.Errorf("connecting to %s (socket %s): %w", uri, sock, err)
			} else {
				r.l = l
			}
		} else {
			cu := *u
			if password != "" && strings.Contains(u.Scheme, "ssh") {
				name := u.User.Username()
				if name == "" {
					name = os.Getenv("USER")
				}
				cu.User = url.UserPassword(name, password)
			}
			l, err := golibvirt.ConnectToURI(&cu)
			if err != nil {
				r.err = fmt.Errorf("connecting to %s: %w", uri, err)
			}
			r.l = l
		}
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		return r.l, nil
	case <-ctx.Done():
		// Close the connection if it is made after all.
		go func() {
			if r := <-done; r.err == nil {
				_ = r.l.Disconnect()
			}
		}()
		return nil, fmt.Errorf("connecting to %s: %w", uri, ctx.Err())
	}
}

// isNoDomain reports whether err is libvirt's "domain not found".
func isNoDomain(err error) bool {
	return golibvirt.IsNotFound(err)
}

// isOperationInvalid reports whether err is libvirt's VIR_ERR_OPERATION_INVALID, as
// returned by destroying a domain that is not running.
func isOperationInvalid(err error) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(golibvirt.ErrOperationInvalid)
}
