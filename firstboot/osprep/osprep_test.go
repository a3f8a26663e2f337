package osprep

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/internal/cluster"
)

// fakeRoot makes a directory dpkg accepts as --root: an empty database.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1\tlocalhost\n127.0.1.1\tpine64\n"), 0o644)
	return root
}

// debsRoot is a fake root with the folder the builder bakes .debs into
// (cluster.DebsDir inside it); the test is skipped without dpkg.
func debsRoot(t *testing.T) (root, debs string) {
	t.Helper()
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is missing")
	}
	root = fakeRoot(t)
	debs = filepath.Join(root, cluster.DebsDir)
	if err := os.MkdirAll(debs, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, debs
}

// buildDeb makes a script-free package whose one file proves installation.
func buildDeb(t *testing.T, dir, name, version string, extra ...string) {
	t.Helper()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(src, "usr/share", name), 0o755)
	os.WriteFile(filepath.Join(src, "usr/share", name, "marker"), []byte(version), 0o644)
	ctl := "Package: " + name + "\nVersion: " + version + "\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n" + strings.Join(extra, "")
	os.WriteFile(filepath.Join(src, "DEBIAN/control"), []byte(ctl), 0o644)
	if out, err := exec.Command("dpkg-deb", "--build", "--root-owner-group", src, filepath.Join(dir, name+".deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v %s", err, out)
	}
}

func TestInstallDebsOnceAndHold(t *testing.T) {
	ctx := context.Background()
	root, debs := debsRoot(t)
	buildDeb(t, debs, "hc-test-a", "1.0")
	buildDeb(t, debs, "hc-test-b", "2.0")
	p := &Prep{Root: root}

	got, err := p.InstallDebs(ctx, cluster.DebsDir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "hc-test-a,hc-test-b" {
		t.Fatalf("installed %v", got)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/hc-test-b/marker")); err != nil || string(b) != "2.0" {
		t.Fatalf("package file not in root: %v", err)
	}
	again, err := p.InstallDebs(ctx, cluster.DebsDir)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run reinstalled %v (%v)", again, err)
	}
	held, err := p.Hold(ctx, []string{"hc-test-a", "not-installed-kernel"})
	if err != nil || strings.Join(held, ",") != "hc-test-a" {
		t.Fatalf("Hold = %v, %v", held, err)
	}
	out, _ := exec.Command("dpkg", "--root="+root, "--get-selections", "hc-test-a").Output()
	if !strings.Contains(string(out), "hold") {
		t.Fatalf("hc-test-a not held: %q", out)
	}
}

func TestHostnameAndSwap(t *testing.T) {
	ctx := context.Background()
	root := fakeRoot(t)
	p := &Prep{Root: root}
	for i := 0; i < 2; i++ { // idempotent
		if err := p.Hostname(ctx, "home-node2"); err != nil {
			t.Fatal(err)
		}
		if err := p.SwapOff(ctx); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := os.ReadFile(filepath.Join(root, "etc/hostname"))
	hosts, _ := os.ReadFile(filepath.Join(root, "etc/hosts"))
	if string(h) != "home-node2\n" || strings.Count(string(hosts), "127.0.1.1") != 1 || !strings.Contains(string(hosts), "127.0.1.1\thome-node2") {
		t.Fatalf("hostname %q hosts %q", h, hosts)
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/systemd/system/swap.target")); l != "/dev/null" {
		t.Fatalf("swap.target not masked: %q", l)
	}
}

// Like python3-minimal and python3.11-minimal: a package that sorts
// before what it pre-depends on, which itself pre-depends on a third.
func TestInstallDebsPreDependsOrder(t *testing.T) {
	root, debs := debsRoot(t)
	buildDeb(t, debs, "hc-a", "1", "Pre-Depends: hc-b (>= 1)\n")
	buildDeb(t, debs, "hc-b", "1", "Pre-Depends: hc-c (>= 1)\n", "Depends: hc-d\n")
	buildDeb(t, debs, "hc-c", "1")
	buildDeb(t, debs, "hc-d", "1", "Depends: hc-c\n")
	got, err := (&Prep{Root: root}).InstallDebs(context.Background(), cluster.DebsDir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "hc-a,hc-b,hc-c,hc-d" {
		t.Fatalf("installed %v", got)
	}
}

func TestPreDependRounds(t *testing.T) {
	rounds := preDependRounds([]deb{
		{name: "python3", preDepends: []string{"python3-minimal"}},
		{name: "python3-minimal", preDepends: []string{"python3.11-minimal", "libc6"}},
		{name: "python3.11-minimal"},
		{name: "keepalived"},
	})
	var got []string
	for _, r := range rounds {
		var names []string
		for _, d := range r {
			names = append(names, d.name)
		}
		got = append(got, strings.Join(names, " "))
	}
	if want := "python3.11-minimal keepalived|python3-minimal|python3"; strings.Join(got, "|") != want {
		t.Errorf("rounds %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestRelationNames(t *testing.T) {
	got := strings.Join(relationNames("libc6 (>= 2.34), python3.11-minimal:any (>= 3.11) | foo"), " ")
	if got != "libc6 python3.11-minimal foo" {
		t.Errorf("relationNames = %q", got)
	}
}

// A package dpkg left with its triggers pending (a power cut during an
// initramfs rebuild) is settled by the next run even when every baked
// package is installed already.
func TestInstallDebsSettlesPendingTriggers(t *testing.T) {
	ctx := context.Background()
	root, debs := debsRoot(t)
	buildDeb(t, debs, "hc-test-a", "1.0")
	p := &Prep{Root: root}
	if _, err := p.InstallDebs(ctx, cluster.DebsDir); err != nil {
		t.Fatal(err)
	}
	// Another package (initramfs-tools on a board) is the one left pending.
	other := t.TempDir()
	buildDeb(t, other, "hc-test-c", "3.0")
	if out, err := exec.Command("dpkg", "--root="+root, "-i", filepath.Join(other, "hc-test-c.deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	status := filepath.Join(root, "var/lib/dpkg/status")
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	pending := strings.Replace(string(b), "Package: hc-test-c\nStatus: install ok installed\n", "Package: hc-test-c\nStatus: install ok triggers-pending\nTriggers-Pending: hc-test-interest\n", 1)
	if pending == string(b) {
		t.Fatalf("no installed package in %s:\n%s", status, b)
	}
	if err := os.WriteFile(status, []byte(pending), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := p.installed(ctx, "hc-test-c"); got != "" {
		t.Fatalf("hc-test-c reads as installed (%q) with its triggers pending", got)
	}
	if _, err := p.InstallDebs(ctx, cluster.DebsDir); err != nil {
		t.Fatal(err)
	}
	if got := p.installed(ctx, "hc-test-c"); got != "3.0" {
		out, _ := exec.Command("dpkg", "--root="+root, "--audit").CombinedOutput()
		t.Errorf("hc-test-c after the next run: %q, want 3.0 installed; dpkg --audit:\n%s", got, out)
	}
}
