package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/maasemu/maasemu/harness/installer/imagedisk"
)

// The simulated ephemeral's root is a tmpfs the size of the machine's disks plus 64 MiB,
// in its own mount namespace: the host directory stays empty.
func TestMountEphemeralRoot(t *testing.T) {
	if os.Getenv("MAASEMU_TEST_IN_MOUNTNS") == "1" {
		root, disk := os.Getenv("MAASEMU_TEST_ROOT"), os.Getenv("MAASEMU_TEST_DISK")
		// As sandboxDev does first: nothing mounted here propagates to the host.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		if err := mountEphemeralRoot(root, []imagedisk.Disk{{Path: disk}}); err != nil {
			t.Fatal(err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != unix.TMPFS_MAGIC {
			t.Errorf("%s is on filesystem type %#x, want tmpfs", root, st.Type)
		}
		if size := int64(st.Blocks) * st.Bsize; size != 8<<20+64<<20 {
			t.Errorf("tmpfs size %d, want the 8 MiB disk plus 64 MiB", size)
		}
		if err := os.WriteFile(filepath.Join(root, "staged"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs in a new mount namespace needs root")
	}
	root, disk := t.TempDir(), filepath.Join(t.TempDir(), "disk0.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 8<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMountEphemeralRoot$")
	cmd.Env = append(os.Environ(), "MAASEMU_TEST_IN_MOUNTNS=1", "MAASEMU_TEST_ROOT="+root, "MAASEMU_TEST_DISK="+disk)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a mount namespace: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the host directory holds %v: the tmpfs leaked out of the namespace", ents)
	}
}
