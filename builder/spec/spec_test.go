package spec

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fixture is a directory with the files a valid spec refers to.
type fixture struct {
	dir, key, key2, img, imgXZ string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{
		dir:   dir,
		key:   filepath.Join(dir, "id_ed25519.pub"),
		key2:  filepath.Join(dir, "other.pub"),
		img:   filepath.Join(dir, "base.img"),
		imgXZ: filepath.Join(dir, "base.img.xz"),
	}
	write(t, f.key, "# the family admin\n"+pubKey(t, "admin@laptop")+"\n\n")
	write(t, f.key2, pubKey(t, "phone")+"\n")
	img, err := os.Create(f.img)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Truncate(8 << 20); err != nil { // sparse: no disk use
		t.Fatal(err)
	}
	img.Close()
	write(t, f.imgXZ, "\xfd7zXZ\x00rest")
	return f
}

func pubKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func parse(t *testing.T, args ...string) (*Spec, string) {
	t.Helper()
	var stderr bytes.Buffer
	s, err := Parse(args, &stderr)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return s, stderr.String()
}

func TestParseDefaults(t *testing.T) {
	s, stderr := parse(t, "--board", "pine64", "--nodes", "4")
	if s.Board != "pine64" || s.Nodes != 4 {
		t.Errorf("board %q nodes %d", s.Board, s.Nodes)
	}
	if s.Out != "./out" || s.Name != "homecloud" || s.Network != "dhcp" || s.AdminUser != "homecloud" {
		t.Errorf("defaults: out %q name %q network %q admin %q", s.Out, s.Name, s.Network, s.AdminUser)
	}
	for _, name := range KnownServices() {
		if !s.Services[name] {
			t.Errorf("service %s is off by default", name)
		}
	}
	if len(s.Services) != len(KnownServices()) {
		t.Errorf("services = %v", s.Services)
	}
	if stderr != "" {
		t.Errorf("stderr = %q", stderr)
	}
	if got := strings.Join(s.NodeNames(), " "); got != "homecloud-node1 homecloud-node2 homecloud-node3 homecloud-node4" {
		t.Errorf("NodeNames = %s", got)
	}
	if s.NodeAddrs() != nil {
		t.Errorf("dhcp NodeAddrs = %v, want nil", s.NodeAddrs())
	}
}

func TestParseRepeatedFlags(t *testing.T) {
	s, _ := parse(t, "--ssh-key", "a.pub", "--ssh-key", "b.pub", "--services", "nextcloud=off,dnas=on", "--services", "calibre-web=false")
	if got := strings.Join(s.SSHKeys, ","); got != "a.pub,b.pub" {
		t.Errorf("ssh keys = %s", got)
	}
	if s.Services["nextcloud"] || !s.Services["dnas"] || s.Services["calibre-web"] || !s.Services["traefik"] {
		t.Errorf("services = %v", s.Services)
	}
}

func TestConfigFileAndFlagsWin(t *testing.T) {
	f := newFixture(t)
	cfgDir := filepath.Join(f.dir, "conf")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(cfgDir, "cluster.yaml")
	write(t, cfg, `# our cluster
board: pine64
nodes: 3
name: family
network: 192.168.1.0/24
gateway: 192.168.1.1
first-ip: 192.168.1.11
vip: 192.168.1.10
base-image: ../base.img
ssh-key: ../id_ed25519.pub
offline: true
services:
  nextcloud: off
  dnas: on
`)
	t.Run("file alone", func(t *testing.T) {
		s, _ := parse(t, "--config", cfg)
		if s.Nodes != 3 || s.Name != "family" || s.Network != "192.168.1.0/24" || !s.Offline || s.Config != cfg {
			t.Errorf("from file: %+v", s)
		}
		if s.BaseImage != f.img {
			t.Errorf("base-image = %s, want it relative to the file: %s", s.BaseImage, f.img)
		}
		if len(s.SSHKeys) != 1 || s.SSHKeys[0] != f.key {
			t.Errorf("ssh-key = %v, want [%s]", s.SSHKeys, f.key)
		}
		if s.Out != "./out" {
			t.Errorf("out = %s, want the default ./out (not given in the file)", s.Out)
		}
		if s.Services["nextcloud"] || !s.Services["dnas"] || !s.Services["traefik"] {
			t.Errorf("services = %v", s.Services)
		}
		if err := s.Validate(lookup); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	t.Run("flags win", func(t *testing.T) {
		// Flags before and after --config: order must not matter.
		s, _ := parse(t, "--nodes", "5", "--config", cfg, "--ssh-key", f.key2, "--services", "dnas=off", "--offline=false", "--name", "other")
		if s.Nodes != 5 || s.Name != "other" || s.Offline {
			t.Errorf("nodes %d name %s offline %v", s.Nodes, s.Name, s.Offline)
		}
		if len(s.SSHKeys) != 1 || s.SSHKeys[0] != f.key2 {
			t.Errorf("ssh-key = %v, want only the flag's %s", s.SSHKeys, f.key2)
		}
		if s.Services["nextcloud"] || s.Services["dnas"] {
			t.Errorf("services = %v: want nextcloud off (file) and dnas off (flag)", s.Services)
		}
		if s.Gateway != "192.168.1.1" {
			t.Errorf("gateway = %s: keys the flags leave alone come from the file", s.Gateway)
		}
		if got := s.NodeAddrs(); len(got) != 5 || got[4].String() != "192.168.1.15" {
			t.Errorf("NodeAddrs = %v", got)
		}
	})
	t.Run("single key list form", func(t *testing.T) {
		cfg2 := filepath.Join(cfgDir, "list.yaml")
		write(t, cfg2, "ssh-key: [../id_ed25519.pub, "+f.key2+"]\n")
		s, _ := parse(t, "--config", cfg2)
		if len(s.SSHKeys) != 2 || s.SSHKeys[0] != f.key || s.SSHKeys[1] != f.key2 {
			t.Errorf("ssh-key = %v", s.SSHKeys)
		}
	})
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := func(name, body string) string {
		p := filepath.Join(dir, name)
		write(t, p, body)
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--colour", "red"}, "flag provided but not defined: -colour"},
		{"bad int", []string{"--nodes", "four"}, "invalid value \"four\" for flag -nodes"},
		{"positional", []string{"--nodes", "4", "pine64"}, `unexpected argument "pine64"`},
		{"bad service switch", []string{"--services", "nextcloud=maybe"}, `"maybe": want on or off`},
		{"service without value", []string{"--services", "nextcloud"}, "want name=on or name=off"},
		{"missing config", []string{"--config", filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"unknown key", []string{"--config", cfg("unknown.yaml", "board: pine64\nnodez: 4\n")}, `line 2: unknown key "nodez"`},
		{"config in config", []string{"--config", cfg("nested.yaml", "config: other.yaml\n")}, "cannot name another"},
		{"wrong type", []string{"--config", cfg("type.yaml", "nodes: four\n")}, `line 1: nodes: "four" is not a whole number`},
		{"fraction", []string{"--config", cfg("frac.yaml", "nodes: 2.9\n")}, `nodes: "2.9" is not a whole number`},
		{"float notation", []string{"--config", cfg("exp.yaml", "data-disk-node: 1e1\n")}, `data-disk-node: "1e1" is not a whole number`},
		{"wrong type elsewhere", []string{"--config", cfg("list-type.yaml", "offline: maybe\n")}, "cannot unmarshal"},
		{"services left empty", []string{"--config", cfg("services.yaml", "services:\n  # monitoring: off\n")}, `line 1: "services" has no value`},
		{"out left empty", []string{"--config", cfg("out.yaml", "nodes: 2\nout:\n")}, `line 2: "out" has no value`},
		{"not a mapping", []string{"--config", cfg("list.yaml", "- pine64\n")}, "want a mapping"},
		{"empty", []string{"--config", cfg("empty.yaml", "")}, "empty file"},
		{"two documents", []string{"--config", cfg("two.yaml", "nodes: 1\n---\nnodes: 2\n")}, "more than one YAML document"},
		{"bad flag after good config", []string{"--config", cfg("ok.yaml", "nodes: 2\n"), "--nodes", "x"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			s, err := Parse(tt.args, &stderr)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.args, s)
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Errorf("error %T is not a *UsageError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Parse([]string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(-h) err = %v, want flag.ErrHelp", err)
	}
}

func TestTestK3sWarnsLoudly(t *testing.T) {
	_, stderr := parse(t, "--test-k3s", "/tmp/fake-k3s")
	if !strings.Contains(stderr, "WARNING") || !strings.Contains(stderr, "STAND-IN") {
		t.Errorf("stderr = %q, want a loud warning", stderr)
	}
}

func TestAuthorizedKeys(t *testing.T) {
	f := newFixture(t)
	s := &Spec{SSHKeys: Paths{f.key, f.key2, f.key}}
	got, err := s.AuthorizedKeys()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 2 {
		t.Fatalf("authorized_keys has %d lines, want 2 (comments dropped, duplicates once):\n%s", len(lines), got)
	}
	for _, l := range lines {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l)); err != nil {
			t.Errorf("line %q: %v", l, err)
		}
	}
	if !strings.HasSuffix(lines[0], "admin@laptop") || !strings.HasSuffix(lines[1], "phone") {
		t.Errorf("order or comments lost: %q", lines)
	}
}
