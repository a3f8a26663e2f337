package qemu

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baseImageEnv points the boot tests at an image other than the cache of
// scripts/make-base-image.
const baseImageEnv = "HOMECLOUD_BASE_IMAGE"

const bootTimeout = 240 * time.Second

var (
	kernelLine = regexp.MustCompile(`Booting Linux on physical CPU`)
	loginLine  = regexp.MustCompile(`login: `)
)

// baseImage is the image scripts/make-base-image built, or the test skips.
func baseImage(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(baseImageEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", baseImageEnv, p, err)
		}
		return p
	}
	script, err := filepath.Abs("../../scripts/make-base-image")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(script, "--print-path").Output()
	if err != nil {
		t.Fatalf("%s --print-path: %v", script, err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: no base image at %s: build it with scripts/make-base-image (or set %s)", p, baseImageEnv)
	}
	return p
}

func bootConfig(t *testing.T, ctx context.Context, name string) Config {
	t.Helper()
	img := baseImage(t)
	kernel, initrd, err := ExtractBoot(ctx, img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return Config{Name: name, Image: img, Kernel: kernel, Initrd: initrd, WorkDir: shortDir(t)}
}

func waitBoot(t *testing.T, ctx context.Context, v *VM, re *regexp.Regexp) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	d, err := v.WaitConsole(ctx, re)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sshBanner reads the server's identification line through a forward,
// retrying while sshd is still starting (slirp accepts and then closes).
func sshBanner(ctx context.Context, port int) (string, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var lastErr error
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil {
				return strings.TrimSpace(line), nil
			}
			err = rerr
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return "", lastErr
}

// TestBootSmoke boots the base image once: console, forwarded sshd, a
// power-cut reset and a second boot, a clean stop.
func TestBootSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots a VM under TCG (minutes)")
	}
	requireQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := bootConfig(t, ctx, "smoke")
	cfg.Forward = map[int]int{22: 0}
	v, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Kill() })

	kern := waitBoot(t, ctx, v, kernelLine)
	login := waitBoot(t, ctx, v, loginLine)
	t.Logf("boot_kernel_line_seconds=%.1f boot_login_seconds=%.1f", kern.Seconds(), login.Seconds())

	sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
	banner, err := sshBanner(sctx, v.HostPort(22))
	scancel()
	if err != nil {
		t.Fatalf("no SSH banner on 127.0.0.1:%d (guest 22): %v", v.HostPort(22), err)
	}
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("guest port 22 answered %q, want an SSH-2.0- banner", banner)
	}

	resetAt := time.Since(v.StartedAt)
	if err := v.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	again := waitBoot(t, ctx, v, loginLine)
	t.Logf("reset_login_seconds=%.1f", (again - resetAt).Seconds())

	pid := v.PID()
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("QEMU pid %d alive after Stop", pid)
	}
}
