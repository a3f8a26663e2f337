package qemu

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireQEMU(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// helloKernel is a bare-metal arm64 program that QEMU's -kernel loads raw:
// it writes msg to the virt machine's PL011 at 0x09000000 and halts in WFI.
// QEMU reruns it on system_reset, so it prints again after Reset.
func helloKernel(msg string) []byte {
	code := []uint32{
		0xD2A12001, // movz x1, #0x0900, lsl #16
		0x10000102, // adr  x2, .+32 (msg)
		0x38401443, // ldrb w3, [x2], #1
		0x34000063, // cbz  w3, .+12 (halt)
		0x39000023, // strb w3, [x1]
		0x17FFFFFD, // b    .-12 (ldrb)
		0xD503207F, // halt: wfi
		0x17FFFFFF, // b    .-4
		0xD503201F, // nop: msg starts at byte 36
	}
	b := make([]byte, 0, 64)
	for _, c := range code {
		b = binary.LittleEndian.AppendUint32(b, c)
	}
	return append(append(b, msg...), 0)
}

// fakeBoot writes a raw disk image, the hello kernel and an initrd.
func fakeBoot(t *testing.T, msg string) (image, kernel, initrd string) {
	t.Helper()
	dir := t.TempDir()
	image, kernel, initrd = filepath.Join(dir, "disk.img"), filepath.Join(dir, "kernel"), filepath.Join(dir, "initrd")
	for f, b := range map[string][]byte{image: make([]byte, 1<<20), kernel: helloKernel(msg), initrd: []byte("initrd")} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return image, kernel, initrd
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestVMLifecycle runs every VM operation against a guest that only prints
// a fake login prompt, so it needs QEMU but no base image and takes seconds.
func TestVMLifecycle(t *testing.T) {
	requireQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	image, kernel, initrd := fakeBoot(t, "hello\r\nnode1 login: ")
	lan, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lan.Close() })
	work := shortDir(t)
	cfg := Config{
		Name: "node1", Image: image, Kernel: kernel, Initrd: initrd, WorkDir: work,
		LAN: lan, Forward: map[int]int{22: 0, 6443: 0},
	}
	v, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Kill() })
	login := regexp.MustCompile(`login: `)

	if _, err := v.WaitConsole(ctx, login); err != nil {
		t.Fatal(err)
	}
	// The prompt was consumed: without a reset there is no second one.
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = v.WaitConsole(short, login)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second WaitConsole before reset: err = %v, want a deadline error", err)
	}

	t.Run("forwards", func(t *testing.T) {
		p22, p6443 := v.HostPort(22), v.HostPort(6443)
		if p22 == 0 || p6443 == 0 || p22 == p6443 {
			t.Fatalf("HostPort(22) = %d, HostPort(6443) = %d: want two distinct ports", p22, p6443)
		}
		if p := v.HostPort(80); p != 0 {
			t.Errorf("HostPort(80) = %d for a port not forwarded", p)
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p22)), 5*time.Second)
		if err != nil {
			t.Fatalf("nothing listens on the forward of guest port 22: %v", err)
		}
		c.Close()
	})

	t.Run("overlay", func(t *testing.T) {
		out, err := exec.Command("qemu-img", "info", "--output=json", "-U", filepath.Join(work, "disk.qcow2")).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Format  string `json:"format"`
			Backing string `json:"full-backing-filename"`
			BFormat string `json:"backing-filename-format"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.Format != "qcow2" || info.Backing != image || info.BFormat != "raw" {
			t.Errorf("overlay is %s over %s (%s), want qcow2 over %s (raw)", info.Format, info.Backing, info.BFormat, image)
		}
	})

	if err := v.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WaitConsole(ctx, login); err != nil {
		t.Fatalf("no login prompt after reset: %v", err)
	}
	if !alive(v.PID()) {
		t.Fatal("QEMU exited on reset")
	}

	st1, _ := os.Stat(filepath.Join(work, "disk.qcow2"))
	pid := v.PID()
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after Stop", pid)
	}
	if _, err := os.Stat(v.p.lanLocal); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LAN port socket left after Stop: %v", err)
	}

	// Started again in the same WorkDir, the VM keeps its disk and its
	// place on the LAN.
	v2, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { v2.Kill() })
	st2, _ := os.Stat(filepath.Join(work, "disk.qcow2"))
	if !os.SameFile(st1, st2) {
		t.Error("restart made a new overlay instead of reusing the disk")
	}
	if _, err := v2.WaitConsole(ctx, login); err != nil {
		t.Fatal(err)
	}
	pid = v2.PID()
	if err := v2.Kill(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after Kill", pid)
	}
	if err := v2.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if _, err := v2.WaitConsole(ctx, regexp.MustCompile("never printed")); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("WaitConsole on a dead VM: err = %v, want one saying QEMU exited", err)
	}
}

// QEMU's own complaint reaches the caller when it rejects the argv.
func TestStartReportsQEMUError(t *testing.T) {
	requireQEMU(t)
	image, kernel, initrd := fakeBoot(t, "x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := Start(ctx, Config{Name: "big", Image: image, Kernel: kernel, Initrd: initrd, WorkDir: shortDir(t), MemMiB: 4 << 20})
	if err == nil {
		v.Kill()
		t.Fatal("Start with 4 TiB of RAM succeeded")
	}
	if !strings.Contains(err.Error(), "qemu.log: ") || !errors.Is(err, errExited) {
		t.Fatalf("err = %v, want QEMU's exit with its log", err)
	}
}

func TestStartMissingFiles(t *testing.T) {
	requireQEMU(t)
	image, kernel, _ := fakeBoot(t, "x")
	_, err := Start(context.Background(), Config{Name: "n", Image: image, Kernel: kernel, Initrd: "/nonexistent/initrd", WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/initrd") {
		t.Fatalf("err = %v, want one naming the missing initrd", err)
	}
}
