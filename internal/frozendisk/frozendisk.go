// Package frozendisk gives tests a disk that stops answering: a small ext4
// filesystem in a file, loop-mounted, that the test freezes with fsfreeze(8)
// (the FIFREEZE ioctl). While it is frozen every write(2) and fsync(2) to it
// blocks in the kernel, uninterruptibly, until it is thawed — what a hung
// disk, a full SAN queue or a stuck NFS server look like to a process. Reads
// of pages already in memory (bbolt's mmap) still work.
//
// It needs CAP_SYS_ADMIN (root) and loop devices. Without them the test is
// skipped, also under CI=true: they are a capability of the machine, not a
// component to install. A missing program (mkfs.ext4, mount, umount,
// fsfreeze) fails the test under CI=true, as internal/testenv does for every
// component.
package frozendisk

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"sekisho/internal/testenv"
)

// watchdogSeconds is when a frozen filesystem is thawed even if the test
// process died without its cleanup (a test timeout): a frozen mount left
// behind would hang every later process that writes to it.
const watchdogSeconds = 120

// Disk is a mounted filesystem a test can freeze.
type Disk struct {
	// Dir is the mount point: files created below it are on the disk.
	Dir string

	t        testing.TB
	fsfreeze string
	watchdog *exec.Cmd // thaws after watchdogSeconds; nil while not frozen
}

// Mount creates a 64 MiB ext4 image in a temporary directory and mounts it
// (mount -o loop: the loop device is released at unmount). The filesystem is
// thawed and unmounted at cleanup.
func Mount(t testing.TB) *Disk {
	t.Helper()
	if reason := missingCapability(); reason != "" {
		t.Skip("frozendisk: " + reason)
	}
	mkfs := testenv.Command(t, "mkfs.ext4", "e2fsprogs")
	mount := testenv.Command(t, "mount", "mount")
	umount := testenv.Command(t, "umount", "mount")
	d := &Disk{t: t, fsfreeze: testenv.Command(t, "fsfreeze", "util-linux")}

	tmp := t.TempDir() // removed after the unmount below (cleanups run last first)
	img := filepath.Join(tmp, "disk.img")
	d.Dir = filepath.Join(tmp, "mnt")
	if err := os.Mkdir(d.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil { // sparse
		t.Fatal(err)
	}
	run(t, mkfs, "-q", "-F", img)
	run(t, mount, "-o", "loop", img, d.Dir)
	t.Cleanup(func() {
		d.Thaw()
		if out, err := exec.Command(umount, d.Dir).CombinedOutput(); err != nil {
			t.Errorf("frozendisk: umount %s: %v\n%s", d.Dir, err, out)
		}
	})
	return d
}

// Freeze freezes the filesystem: from now on writes and fsyncs to it block
// until Thaw (called at cleanup at the latest, before the cleanups registered
// earlier — so register the closing of files on the disk before Freeze).
func (d *Disk) Freeze() {
	d.t.Helper()
	if d.watchdog != nil {
		d.t.Fatal("frozendisk: already frozen")
	}
	// The watchdog is its own process group, so that Thaw can end it and its
	// sleep by the group's id, and it outlives a test process that dies.
	w := exec.Command("sh", "-c", "sleep "+strconv.Itoa(watchdogSeconds)+"; exec \"$0\" -u \"$1\"", d.fsfreeze, d.Dir)
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.watchdog = w
	d.t.Cleanup(d.Thaw)
	run(d.t, d.fsfreeze, "-f", d.Dir)
}

// Thaw unfreezes the filesystem; the blocked writes go on. It does nothing
// if the filesystem is not frozen.
func (d *Disk) Thaw() {
	d.t.Helper()
	if d.watchdog == nil {
		return
	}
	if out, err := exec.Command(d.fsfreeze, "-u", d.Dir).CombinedOutput(); err != nil {
		d.t.Errorf("frozendisk: fsfreeze -u %s: %v\n%s", d.Dir, err, out)
	}
	syscall.Kill(-d.watchdog.Process.Pid, syscall.SIGKILL)
	d.watchdog.Wait()
	d.watchdog = nil
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("frozendisk: %s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// missingCapability says why this machine cannot have a frozen disk, or "".
func missingCapability() string {
	const capSysAdmin = 21
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "no /proc/self/status to read the capabilities from"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil || caps&(1<<capSysAdmin) == 0 {
			return "needs CAP_SYS_ADMIN (root) to mount and freeze a filesystem"
		}
		if _, err := os.Stat("/dev/loop-control"); err != nil {
			return "no loop devices (/dev/loop-control)"
		}
		return ""
	}
	return "no CapEff line in /proc/self/status"
}
