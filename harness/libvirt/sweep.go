package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Sweep removes what crashed runs left behind: every domain whose name starts with
// prefix (stopped, undefined with its NVRAM) and its work directory as recorded in the
// domain's metadata, and every directory in this driver's work dir whose name starts
// with prefix, except the machines this driver has alive now. prefix must start with
// "maasemu-", so that no domain maasemu did not name can be touched. It returns the
// names of the domains and directories removed.
func (d *Driver) Sweep(ctx context.Context, prefix string) ([]string, error) {
	if !strings.HasPrefix(prefix, DomainPrefix) {
		return nil, fmt.Errorf("libvirt sweep: prefix %q: must start with %q (only domains maasemu named are swept)", prefix, DomainPrefix)
	}
	live := map[string]bool{}
	d.mu.Lock()
	for name := range d.machines {
		live[name] = true
	}
	d.mu.Unlock()

	var removed []string
	var errs []error
	doms, _, err := call3(ctx, func() ([]golibvirt.Domain, uint32, error) {
		return d.api.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	})
	if err != nil {
		return nil, fmt.Errorf("libvirt sweep: listing domains: %w", err)
	}
	for _, dom := range doms {
		if !strings.HasPrefix(dom.Name, prefix) || live[dom.Name] {
			continue
		}
		dir := ""
		if desc, err := call(ctx, func() (string, error) { return d.api.DomainGetXMLDesc(dom, 0) }); err == nil {
			dir = metadataDir(desc)
		}
		if err := removeDomain(ctx, d.api, dom); err != nil {
			errs = append(errs, err)
			continue
		}
		// Only a directory named for the domain is removed, wherever the metadata says
		// it is: a domain's XML cannot make Sweep delete anything else.
		if dir != "" && filepath.IsAbs(dir) && filepath.Base(dir) == dom.Name {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("libvirt sweep: %w", err))
			}
		}
		removed = append(removed, dom.Name)
		d.log.Info("swept a leftover domain", "domain", dom.Name, "dir", dir)
	}
	entries, err := os.ReadDir(d.opts.WorkDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("libvirt sweep: %w", err))
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || live[e.Name()] {
			continue
		}
		p := filepath.Join(d.opts.WorkDir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("libvirt sweep: %w", err))
			continue
		}
		removed = append(removed, p)
		d.log.Info("swept a leftover work dir", "dir", p)
	}
	return removed, errors.Join(errs...)
}

// metadataDir returns the work directory recorded in a domain XML's maasemu metadata.
func metadataDir(domainXML string) string {
	var doc struct {
		Metadata struct {
			Machine []struct {
				XMLName xml.Name
				Dir     string `xml:"dir,attr"`
			} `xml:",any"`
		} `xml:"metadata"`
	}
	if err := xml.Unmarshal([]byte(domainXML), &doc); err != nil {
		return ""
	}
	for _, m := range doc.Metadata.Machine {
		if m.XMLName.Space == MetadataNamespace && m.XMLName.Local == "machine" {
			return m.Dir
		}
	}
	return ""
}

func call3[A, B any](ctx context.Context, f func() (A, B, error)) (A, B, error) {
	type pair struct {
		a A
		b B
	}
	p, err := call(ctx, func() (pair, error) {
		a, b, err := f()
		return pair{a, b}, err
	})
	return p.a, p.b, err
}
