package harden

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetKeys(t *testing.T) {
	policy := []Setting{{"UMASK", "027"}, {"PASS_MAX_DAYS", "60"}, {"HOME_MODE", "0750"}}
	tests := []struct {
		name, in, want string
	}{
		{"debian", "# comment UMASK 022\nMAIL_DIR /var/mail\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\n",
			"# comment UMASK 022\nMAIL_DIR /var/mail\nUMASK\t\t027\nPASS_MAX_DAYS\t60\n\n# homecloud hardening (DevSec os_hardening):\nHOME_MODE\t0750\n"},
		{"commented key is added, not uncommented", "#HOME_MODE 0700\n",
			"#HOME_MODE 0700\n\n# homecloud hardening (DevSec os_hardening):\nUMASK\t027\nPASS_MAX_DAYS\t60\nHOME_MODE\t0750\n"},
		{"duplicate is disarmed", "UMASK 022\nUMASK 077\nPASS_MAX_DAYS 60\nHOME_MODE 0750\n",
			"UMASK 027\n# UMASK 077 (homecloud: overridden above)\nPASS_MAX_DAYS 60\nHOME_MODE 0750\n"},
		{"indented and no final newline", "  UMASK   022", "UMASK   027\n\n# homecloud hardening (DevSec os_hardening):\nPASS_MAX_DAYS\t60\nHOME_MODE\t0750\n"},
		{"empty", "", "\n# homecloud hardening (DevSec os_hardening):\nUMASK\t027\nPASS_MAX_DAYS\t60\nHOME_MODE\t0750\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(SetKeys([]byte(tt.in), policy))
			if got != tt.want {
				t.Errorf("SetKeys:\n%q\nwant\n%q", got, tt.want)
			}
			if again := string(SetKeys([]byte(got), policy)); again != got {
				t.Errorf("second run changed the file:\n%q\nto\n%q", got, again)
			}
		})
	}
}

// debianRoot lays out the files Apply touches, as an Armbian base has them.
func debianRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd":               "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
		"etc/group":                "root:x:0:\nshadow:x:42:\n",
		"etc/shadow":               "root:$y$j9T$Y2R6ZDFkZ2VtZQ$MUp6d0xHcWRqN0x1:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n",
		"etc/login.defs":           "MAIL_DIR /var/mail\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nENCRYPT_METHOD SHA512\n",
		"etc/ssh/ssh_host_rsa_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n", "etc/ssh/ssh_host_rsa_key.pub": "ssh-rsa AAAA\n",
		"etc/ssh/ssh_host_ecdsa_key": "x", "etc/ssh/ssh_host_ed25519_key": "node key",
	}
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	return root
}

func requireUsermod(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: usermod --root needs root")
	}
	if _, err := exec.LookPath("usermod"); err != nil {
		t.Skip("skipping: usermod not found in PATH (package passwd)")
	}
}

func TestApply(t *testing.T) {
	requireUsermod(t)
	root := debianRoot(t)
	ctx := context.Background()
	for run := 1; run <= 2; run++ {
		if err := Apply(ctx, Options{Root: root, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		pw, err := shadowPassword(root, "root")
		if err != nil {
			t.Fatal(err)
		}
		if pw != "!*" {
			t.Errorf("run %d: root's password field %q, want !* (locked, no hash)", run, pw)
		}
		if pw, _ := shadowPassword(root, "sshd"); pw != "*" {
			t.Errorf("run %d: sshd's password field changed to %q", run, pw)
		}
		fi, err := os.Stat(filepath.Join(root, "etc/shadow"))
		if err != nil || fi.Mode().Perm()&0o004 != 0 {
			t.Errorf("run %d: /etc/shadow %v %v: world-readable or gone", run, fi.Mode(), err)
		}
		defs, _ := os.ReadFile(filepath.Join(root, LoginDefsPath))
		for _, s := range LoginDefsPolicy() {
			if activeValue(string(defs), s.Key) != s.Value {
				t.Errorf("run %d: login.defs %s = %q, want %q", run, s.Key, activeValue(string(defs), s.Key), s.Value)
			}
		}
		for _, k := range SharedHostKeys() {
			if _, err := os.Stat(filepath.Join(root, k)); !os.IsNotExist(err) {
				t.Errorf("run %d: %s still there (%v)", run, k, err)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); string(b) != "node key" {
			t.Errorf("run %d: the node's own host key changed: %q", run, b)
		}
	}
}

// activeValue is what shadow-utils would read for key: the first
// uncommented line's value.
func activeValue(defs, key string) string {
	for _, l := range strings.Split(defs, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == key {
			return f[1]
		}
	}
	return ""
}

func TestLockRootNamesMissingShadow(t *testing.T) {
	_, err := LockRoot(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "/etc/shadow") {
		t.Fatalf("LockRoot on an empty root: %v, want an error naming /etc/shadow", err)
	}
}
