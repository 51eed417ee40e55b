package libvirt

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// uefiCandidates are OVMF builds without Secure Boot enforcement, best first: Debian and
// Ubuntu's 4 MiB build (what the ovmf package's firmware descriptors prefer), their 2 MiB
// build, then Fedora's and Arch's paths.
var uefiCandidates = []UEFIFirmware{
	{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{Code: "/usr/share/OVMF/OVMF_CODE.fd", Vars: "/usr/share/OVMF/OVMF_VARS.fd"},
	{Code: "/usr/share/edk2/ovmf/OVMF_CODE.fd", Vars: "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
	{Code: "/usr/share/edk2/x64/OVMF_CODE.4m.fd", Vars: "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
}

// FindUEFIFirmware returns the first OVMF code and variable store pair present on this
// host, or an error naming every path tried.
func FindUEFIFirmware() (UEFIFirmware, error) {
	var tried []string
	for _, c := range uefiCandidates {
		if regular(c.Code) && regular(c.Vars) {
			return c, nil
		}
		tried = append(tried, c.Code)
	}
	return UEFIFirmware{}, fmt.Errorf("UEFI firmware: none of %s exists (install Debian's ovmf package)", strings.Join(tried, ", "))
}

// check verifies that both files exist.
func (f UEFIFirmware) check() error {
	for _, p := range []string{f.Code, f.Vars} {
		if !regular(p) {
			return fmt.Errorf("UEFI firmware: %q is not a readable file", p)
		}
	}
	return nil
}

func regular(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// copyFile copies src to a new file dst (which must not exist) with mode perm, and syncs it.
func copyFile(dst, src string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if _, err = io.Copy(out, in); err != nil {
		return err
	}
	return out.Sync()
}
