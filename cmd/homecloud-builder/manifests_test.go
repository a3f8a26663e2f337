package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sshKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "id.pub")
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl family@laptop\n"
	if err := os.WriteFile(p, []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManifests(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	out := filepath.Join(t.TempDir(), "out")
	base := []string{"manifests", "--board", "pine64", "--nodes", "4", "--ssh-key", sshKey(t), "--out", out,
		"--network", "192.168.1.0/24", "--gateway", "192.168.1.1", "--first-ip", "192.168.1.11", "--vip", "192.168.1.250",
		"--domain", "cloud.example.org", "--acme-email", "admin@example.org", "--data-disk", "NAS"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), base, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	dir := filepath.Join(out, ManifestsDir)
	dnas, err := os.ReadFile(filepath.Join(dir, "homecloud-04-dnas.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`kubernetes.io/hostname: "homecloud-node4"`, "/dev/disk/by-label/NAS", "192.168.1.0/24(rw"} {
		if !bytes.Contains(dnas, []byte(want)) {
			t.Errorf("dnas manifest lacks %q", want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "homecloud-05-nextcloud.yaml")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("nextcloud manifest: %v, want a 0600 file", fi)
	}
	secretsBefore, _ := os.ReadFile(filepath.Join(out, "cluster", "stack-secrets.json"))

	// Switched off: its file goes; the passwords stay the cluster's.
	stdout.Reset()
	if code := run(context.Background(), append(base, "--services", "nextcloud=off"), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "homecloud-05-nextcloud.yaml")); !os.IsNotExist(err) {
		t.Errorf("nextcloud manifest still there after nextcloud=off: %v", err)
	}
	secretsAfter, _ := os.ReadFile(filepath.Join(out, "cluster", "stack-secrets.json"))
	if len(secretsBefore) == 0 || !bytes.Equal(secretsBefore, secretsAfter) {
		t.Error("stack secrets changed between runs")
	}

	// A bad flag: exit 2, the flag named.
	stderr.Reset()
	if code := run(context.Background(), append(base, "--nextcloud-size", "big"), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--nextcloud-size") {
		t.Errorf("exit %d, stderr %q: want 2 naming --nextcloud-size", code, stderr.String())
	}
}
