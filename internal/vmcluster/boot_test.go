package vmcluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/homecloud/homecloud/internal/qemu"
)

const baseImageEnv = "HOMECLOUD_BASE_IMAGE"

// The boot test: three images from the builder boot as VMs and make
// themselves a cluster, as the family's boards would. Only k3s is a
// stand-in (cmd/fake-k3s, baked with --test-k3s); keepalived, nftables,
// sshd, systemd and the node service are the real ones.
func TestBootCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots three VMs under TCG (many minutes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (debugfs on images, QEMU's work dirs)")
	}
	if err := qemu.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	base := baseImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()

	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	keyFile := adminKey(t, dir)
	builder, fakeK3s := buildTools(t, ctx, dir)
	// Static addresses on the VMs' own LAN, which reaches nothing else.
	// Longhorn is off: with it the nodes install open-iscsi, whose
	// initramfs rebuild took 4 of a first boot's 11 minutes under TCG
	// (2026-11-27), and fake-k3s runs no Longhorn to use it.
	build := exec.CommandContext(ctx, builder, "--board", "qemu-virt", "--nodes", "3", "--name", "boot",
		"--out", out, "--base-image", base, "--ssh-key", keyFile+".pub", "--test-k3s", fakeK3s,
		"--network", "10.77.0.0/24", "--gateway", "10.77.0.1", "--first-ip", "10.77.0.11", "--vip", "10.77.0.10",
		"--services", "longhorn=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("homecloud-builder: %v\n%s", err, b)
	}
	images, err := Images(out)
	if err != nil {
		t.Fatal(err)
	}
	access, err := LoadAccess("homecloud", keyFile, out)
	if err != nil {
		t.Fatal(err)
	}
	work := shortDir(t)
	c, err := Boot(ctx, Options{Images: images, Work: work, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, v := range c.VMs {
				t.Logf("---- %s console (end)\n%s", v.Name, consoleTail(v))
			}
		}
	})

	// Power cut in the middle of a first boot: node3 is reset while its
	// node service installs the baked .debs (dpkg running), the first
	// step's longest and most fragile part.
	node3 := c.VMs[2]
	if _, err := c.Kernel(ctx, node3); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := node3.Run(ctx, access, "pgrep -x dpkg"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never ran dpkg: %v", node3.Name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	if err := c.Reset(ctx, node3); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s reset while dpkg ran in its first boot", node3.Name)

	var f Figures
	if err := c.WaitBooted(ctx, access, &f); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitServing(ctx, access, &f); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Minute)
	views, holder, err := c.WaitConverged(cctx, access, 3)
	ccancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s, VIP on %s", views[holder].Leader, holder)
	if prog := progress(t, ctx, node3, access); prog.Boots < 2 {
		t.Errorf("%s: %d boots recorded, want 2 (the reset one and the next)", node3.Name, prog.Boots)
	}

	for _, v := range c.VMs {
		hardened(t, ctx, v, access)
	}

	if _, err := c.Failover(ctx, access, holder, &f); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	f.Print(&b, c)
	t.Logf("figures:\n%s", b.String())
}

// hardened checks, from outside as an attacker would, what the image
// promises: no root login, no password login, only the admin's key, and
// the firewall in force, open between the nodes alone.
func hardened(t *testing.T, ctx context.Context, v *VM, a Access) {
	t.Helper()
	for _, try := range []struct {
		user string
		auth ssh.AuthMethod
		what string
	}{
		{"root", ssh.PublicKeys(a.Signer), "root with the admin's key"},
		{"root", ssh.Password("1234"), "root with the base image's password"},
		{a.User, ssh.Password("1234"), "the admin with a password"},
		{a.User, ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
			return []string{"1234"}, nil
		}), "the admin with keyboard-interactive"},
	} {
		if cl, err := v.Dial(ctx, a, try.user, try.auth); err == nil {
			cl.Close()
			t.Errorf("%s: SSH login as %s succeeded", v.Name, try.what)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("%s: SSH login as %s: %v, want an authentication failure", v.Name, try.what, err)
		}
	}
	rules, err := v.Run(ctx, a, "sudo -n nft list table inet homecloud")
	if err != nil {
		t.Errorf("%s: %v", v.Name, err)
	} else {
		if !strings.Contains(string(rules), "policy drop") {
			t.Errorf("%s: the input chain does not drop by default:\n%s", v.Name, rules)
		}
		// Raft, etcd, kubelet, flannel and VRRP are open to exactly the
		// other nodes.
		m := regexp.MustCompile(`set peers4 \{[^}]*elements = \{ ([^}]*) \}`).FindSubmatch(rules)
		if m == nil {
			t.Errorf("%s: no peers in the firewall:\n%s", v.Name, rules)
		} else if got := strings.Join(strings.Fields(strings.ReplaceAll(string(m[1]), ",", " ")), " "); got != peersOf(v.Name) {
			t.Errorf("%s: firewall peers %q, want %q", v.Name, got, peersOf(v.Name))
		}
	}
}

// peersOf are the other nodes' addresses, as the builder numbered them.
func peersOf(name string) string {
	var out []string
	for i, a := range []string{"10.77.0.11", "10.77.0.12", "10.77.0.13"} {
		if !strings.HasSuffix(name, "node"+string(rune('1'+i))) {
			out = append(out, a)
		}
	}
	return strings.Join(out, " ")
}

type progressFile struct {
	Boots int `json:"boots"`
}

func progress(t *testing.T, ctx context.Context, v *VM, a Access) progressFile {
	t.Helper()
	b, err := v.Run(ctx, a, "sudo -n cat /var/lib/homecloud/progress.json")
	if err != nil {
		t.Fatal(err)
	}
	var p progressFile
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s progress.json: %v: %s", v.Name, err, b)
	}
	return p
}

// baseImage is the Debian-built base: $HOMECLOUD_BASE_IMAGE, or the one
// scripts/make-base-image caches.
func baseImage(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(baseImageEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", baseImageEnv, p, err)
		}
		return p
	}
	out, err := exec.Command("../../scripts/make-base-image", "--print-path").Output()
	if err != nil {
		t.Fatalf("scripts/make-base-image --print-path: %v", err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: no base image at %s: build it with scripts/make-base-image (or set %s)", p, baseImageEnv)
	}
	return p
}

// buildTools builds the builder (which embeds the arm64 node service that
// `make payload` built) and the arm64 k3s stand-in.
func buildTools(t *testing.T, ctx context.Context, dir string) (builder, fakeK3s string) {
	t.Helper()
	if _, err := os.Stat("../../builder/payload/homecloud-firstboot"); err != nil {
		t.Fatalf("no arm64 node service to embed: run `make payload` first (%v)", err)
	}
	builder, fakeK3s = filepath.Join(dir, "homecloud-builder"), filepath.Join(dir, "fake-k3s")
	for _, b := range []struct {
		out, pkg string
		env      []string
	}{
		{builder, "./cmd/homecloud-builder", nil},
		{fakeK3s, "./cmd/fake-k3s", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"}},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return builder, fakeK3s
}

// adminKey writes a fresh ed25519 key pair (dir/admin, dir/admin.pub).
func adminKey(t *testing.T, dir string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "boot test")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "admin")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shortDir is a work dir whose unix socket paths fit in 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
